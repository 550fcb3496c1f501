//! Statement state: the ticket cache of planned statements (GetFlightInfo →
//! DoGet), prepared statements with their bound parameters, and the helpers
//! that execute DataFrames and stream them with exactly the advertised schema.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow_flight::FlightData;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use futures::{Stream, StreamExt, TryStreamExt};
use tonic::Status;
use weir_query::{QueryEngine, WeirStatement};

use crate::error::{
    ErrorKind, error_status, status_from, status_from_arrow, status_from_df, status_from_flight,
};

pub(crate) type FlightDataStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps inconsistent.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Planned DataFrames (one per bound parameter row) and the schema promised
/// to the client for their concatenated results.
pub(crate) struct Executable {
    pub schema: SchemaRef,
    pub frames: Vec<DataFrame>,
    /// The user who planned it: only they (or an admin) fetch or cancel it.
    pub owner: Arc<str>,
}

/// Statements planned by GetFlightInfo and waiting for their DoGet.
pub(crate) struct StatementCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Executable)>>,
}

impl StatementCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `exec` under a new handle; expires entries older than the TTL.
    pub(crate) fn insert(&self, exec: Executable) -> String {
        let handle = uuid::Uuid::new_v4().to_string();
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        let before = entries.len();
        entries.retain(|_, (created, _)| now.duration_since(*created) <= self.ttl);
        if entries.len() < before {
            tracing::debug!(
                expired = before - entries.len(),
                "expired unfetched statements"
            );
        }
        entries.insert(handle.clone(), (now, exec));
        handle
    }

    /// Removes and returns the statement (`None` if unknown or expired).
    /// The statement under `handle`, if `caller` planned it (or is an admin).
    pub(crate) fn take(&self, handle: &str, caller: &crate::auth::Principal) -> Option<Executable> {
        let mut entries = lock(&self.entries);
        let (_, exec) = entries.get(handle)?;
        if !caller.may_act_for(&exec.owner) {
            return None;
        }
        let (created, exec) = entries.remove(handle)?;
        (created.elapsed() <= self.ttl).then_some(exec)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// What a prepared statement is, decided when it is prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StatementKind {
    /// Produces a result set.
    Query,
    /// INSERT and other DML: produces a `count`.
    Update,
    /// DDL and other statements that must not run before execution.
    Deferred,
}

#[derive(Clone)]
pub(crate) struct PreparedStatement {
    /// The statement, parsed once when prepared (placeholders numbered).
    pub parsed: WeirStatement,
    pub kind: StatementKind,
    pub dataset_schema: SchemaRef,
    /// Parameter names (`$1`, `$2`, … or `$name`) in binding order.
    pub parameter_names: Vec<String>,
    /// Types inferred by DataFusion, `None` when unknown.
    pub parameter_types: Vec<Option<DataType>>,
    /// Bound parameter rows; `None` until the client binds parameters.
    pub bound: Option<Arc<Vec<Vec<ScalarValue>>>>,
    last_used: Instant,
}

impl PreparedStatement {
    pub(crate) fn sql(&self) -> &str {
        self.parsed.text()
    }

    pub(crate) fn parameter_schema(&self) -> Schema {
        Schema::new(
            self.parameter_names
                .iter()
                .zip(&self.parameter_types)
                .map(|(name, ty)| Field::new(name, ty.clone().unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        )
    }
}

/// Open prepared statements, by handle.
pub(crate) struct PreparedStatements {
    idle_limit: Duration,
    entries: Mutex<HashMap<String, PreparedStatement>>,
    /// Plans made while preparing, for the first execution that follows.
    planned: Mutex<HashMap<String, Planned>>,
}

/// A query planned by CreatePreparedStatement (parameterless queries only).
/// Clients (ADBC, JDBC) prepare and execute right away: its first
/// GetFlightInfo takes this plan instead of parsing, planning and rewriting
/// the SQL again, when it comes within [`PLAN_REUSE`], under the same session
/// options, and no table was committed to since (a write between preparing
/// and executing is always seen). Hot-tier rows are those of planning time,
/// as for a plan between GetFlightInfo and DoGet.
pub(crate) struct Planned {
    pub frame: DataFrame,
    pub options: crate::sessions::Options,
    pub catalog: weir_query::CatalogState,
    pub at: Instant,
}

/// How long a plan made while preparing stays usable for the first execution.
pub(crate) const PLAN_REUSE: Duration = Duration::from_secs(1);

impl PreparedStatements {
    pub(crate) fn new(idle_limit: Duration) -> Self {
        Self {
            idle_limit,
            entries: Mutex::new(HashMap::new()),
            planned: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a statement (and the plan made while preparing it); drops
    /// statements idle for longer than the limit and plans too old to use.
    pub(crate) fn insert(&self, statement: PreparedStatement, planned: Option<Planned>) -> String {
        let handle = uuid::Uuid::new_v4().to_string();
        let now = Instant::now();
        {
            let mut entries = lock(&self.entries);
            entries.retain(|_, s| now.duration_since(s.last_used) <= self.idle_limit);
            entries.insert(handle.clone(), statement);
        }
        let mut plans = lock(&self.planned);
        plans.retain(|_, p| now.duration_since(p.at) <= PLAN_REUSE);
        if let Some(planned) = planned {
            plans.insert(handle.clone(), planned);
        }
        handle
    }

    /// The plan made while preparing `handle`, once, if still usable under
    /// the request's session `options` and the catalog as it is now.
    pub(crate) async fn take_planned(
        &self,
        handle: &[u8],
        options: &crate::sessions::Options,
        engine: &QueryEngine,
    ) -> Result<Option<DataFrame>, Status> {
        let Some(planned) = std::str::from_utf8(handle)
            .ok()
            .and_then(|h| lock(&self.planned).remove(h))
        else {
            return Ok(None);
        };
        if planned.at.elapsed() > PLAN_REUSE || planned.options != *options {
            return Ok(None);
        }
        engine.refresh().await.map_err(status_from)?;
        Ok((engine.catalog_state() == planned.catalog).then_some(planned.frame))
    }

    /// A snapshot of the statement (marks it used).
    pub(crate) fn get(&self, handle: &[u8]) -> Result<PreparedStatement, Status> {
        let handle = std::str::from_utf8(handle).map_err(|_| unknown_handle())?;
        let mut entries = lock(&self.entries);
        let statement = entries.get_mut(handle).ok_or_else(unknown_handle)?;
        statement.last_used = Instant::now();
        Ok(statement.clone())
    }

    pub(crate) fn bind(
        &self,
        handle: &[u8],
        rows: Option<Vec<Vec<ScalarValue>>>,
    ) -> Result<(), Status> {
        let handle = std::str::from_utf8(handle).map_err(|_| unknown_handle())?;
        let mut entries = lock(&self.entries);
        let statement = entries.get_mut(handle).ok_or_else(unknown_handle)?;
        statement.bound = rows.map(Arc::new);
        statement.last_used = Instant::now();
        lock(&self.planned).remove(handle);
        Ok(())
    }

    pub(crate) fn remove(&self, handle: &[u8]) -> bool {
        match std::str::from_utf8(handle) {
            Ok(handle) => {
                lock(&self.planned).remove(handle);
                lock(&self.entries).remove(handle).is_some()
            }
            Err(_) => false,
        }
    }
}

fn unknown_handle() -> Status {
    error_status(
        ErrorKind::NotFound,
        "prepared statement handle is unknown, closed or expired",
    )
}

/// The one-column result of DDL (`count UInt64 NOT NULL`), as `QueryEngine::sql` returns it.
pub(crate) fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// Rewrites JDBC/ODBC-style `?` placeholders to DataFusion's `$1`, `$2`, …
/// (in order of appearance; `?3` becomes `$3`). String literals, quoted
/// identifiers and comments are left alone (the SQL tokenizer finds the
/// placeholders). SQL that does not tokenize is returned unchanged.
pub(crate) fn number_placeholders(sql: &str) -> String {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

    if !sql.contains('?') {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize_with_location() else {
        return sql.to_string();
    };
    // (line, column) of each placeholder, its text and its replacement.
    let mut targets = Vec::new();
    let mut next = 0usize;
    for t in tokens {
        if let Token::Placeholder(p) = &t.token
            && let Some(digits) = p.strip_prefix('?')
        {
            let n = match digits.parse::<usize>() {
                Ok(n) => n,
                Err(_) => {
                    next += 1;
                    next
                }
            };
            targets.push((
                (t.span.start.line, t.span.start.column),
                p.len(),
                format!("${n}"),
            ));
        }
    }
    // Locations count characters; lines are separated by '\n'.
    let mut out = String::with_capacity(sql.len() + targets.len() * 2);
    let mut targets = targets.into_iter().peekable();
    let (mut line, mut col) = (1u64, 1u64);
    let mut skip_until = 0usize;
    for (byte, ch) in sql.char_indices() {
        if byte >= skip_until {
            match targets.peek() {
                Some(((l, c), len, replacement)) if (*l, *c) == (line, col) => {
                    out.push_str(replacement);
                    skip_until = byte + len;
                    targets.next();
                }
                _ => out.push(ch),
            }
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    out
}

/// Plans a parsed statement without executing anything: decides its kind,
/// result schema and parameter types. A query without parameters comes
/// with its plan (rewritten to materialized views), for the execution that
/// follows.
pub(crate) async fn prepare(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    parsed: WeirStatement,
) -> Result<
    (
        PreparedStatement,
        Option<(DataFrame, weir_query::CatalogState)>,
    ),
    Status,
> {
    engine.refresh().await.map_err(status_from)?;
    // Taken before planning: the plan reads tables at least this new, so an
    // unchanged state at execution means the plan is current.
    let catalog = engine.catalog_state();
    let mut frame = None;
    let (kind, dataset_schema, parameters) = match engine
        .logical_plan(ctx, &parsed)
        .await
        .map_err(status_from)?
    {
        Some(plan) => {
            let kind = match &plan {
                LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => StatementKind::Deferred,
                // Row-level DML runs while planned (weir-query dml.rs), like DDL.
                LogicalPlan::Dml(d)
                    if matches!(
                        d.op,
                        datafusion::logical_expr::WriteOp::Delete
                            | datafusion::logical_expr::WriteOp::Update
                            | datafusion::logical_expr::WriteOp::Truncate
                    ) =>
                {
                    StatementKind::Deferred
                }
                LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => StatementKind::Update,
                _ => StatementKind::Query,
            };
            let schema = match kind {
                StatementKind::Deferred => count_schema(),
                _ => Arc::new(plan.schema().as_arrow().clone()),
            };
            let parameters = plan.get_parameter_types().map_err(status_from_df)?;
            if kind == StatementKind::Query && parameters.is_empty() {
                let planned = engine.query_frame(ctx, plan).await.map_err(status_from)?;
                frame = Some((planned, catalog));
            }
            (kind, schema, parameters)
        }
        // Weir's own statements (materialized views) run at execution.
        None => (StatementKind::Deferred, count_schema(), HashMap::new()),
    };
    let (parameter_names, parameter_types) = order_parameters(parameters);
    let statement = PreparedStatement {
        parsed,
        kind,
        dataset_schema,
        parameter_names,
        parameter_types,
        bound: None,
        last_used: Instant::now(),
    };
    Ok((statement, frame))
}

/// Positional parameters (`$1`, `$2`, …) in numeric order, then named ones by name.
/// Gaps in the numbering (`$1`, `$3`) are filled with untyped parameters.
fn order_parameters(
    parameters: HashMap<String, Option<DataType>>,
) -> (Vec<String>, Vec<Option<DataType>>) {
    let mut positional: Vec<(usize, Option<DataType>)> = Vec::new();
    let mut named: Vec<(String, Option<DataType>)> = Vec::new();
    for (name, ty) in parameters {
        match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
            Some(n) if n >= 1 => positional.push((n, ty)),
            _ => named.push((name, ty)),
        }
    }
    let max = positional.iter().map(|(n, _)| *n).max().unwrap_or(0);
    let mut names: Vec<String> = (1..=max).map(|n| format!("${n}")).collect();
    let mut types: Vec<Option<DataType>> = vec![None; max];
    for (n, ty) in positional {
        types[n - 1] = ty;
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, ty) in named {
        names.push(name);
        types.push(ty);
    }
    (names, types)
}

/// Turns a row of client values into DataFusion parameter values, cast to
/// the inferred parameter types.
fn param_values(statement: &PreparedStatement, row: &[ScalarValue]) -> Result<ParamValues, Status> {
    let expected = statement.parameter_names.len();
    if row.len() != expected {
        return Err(error_status(
            ErrorKind::InvalidArgument,
            format!(
                "statement has {expected} parameter(s) but {} value(s) were bound",
                row.len()
            ),
        ));
    }
    let mut values = Vec::with_capacity(row.len());
    for (i, value) in row.iter().enumerate() {
        let value = match statement.parameter_types.get(i).and_then(|t| t.as_ref()) {
            Some(ty) if value.data_type() != *ty => {
                if value.is_null() {
                    ScalarValue::try_from(ty).map_err(status_from_df)?
                } else {
                    value.cast_to(ty).map_err(|e| {
                        error_status(
                            ErrorKind::InvalidArgument,
                            format!(
                                "parameter {} ({value:?}) cannot be converted to {ty}: {e}",
                                statement.parameter_names[i]
                            ),
                        )
                    })?
                }
            }
            _ => value.clone(),
        };
        values.push(value);
    }
    let all_positional = statement.parameter_names.iter().all(|n| {
        n.strip_prefix('$')
            .is_some_and(|d| d.parse::<usize>().is_ok())
    });
    Ok(if all_positional {
        ParamValues::from(values)
    } else {
        ParamValues::Map(
            statement
                .parameter_names
                .iter()
                .map(|n| n.trim_start_matches('$').to_string())
                .zip(values.into_iter().map(Into::into))
                .collect(),
        )
    })
}

/// Runs the prepared statement: one DataFrame per bound row (or one
/// without parameters). DDL runs here, as with `QueryEngine::execute`, and
/// so do writes (each row's), whether or not the client reads the counts.
pub(crate) async fn run_prepared(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    statement: &PreparedStatement,
) -> Result<Executable, Status> {
    if statement.kind == StatementKind::Deferred && !statement.parameter_names.is_empty() {
        return run_deferred_with_parameters(engine, ctx, statement).await;
    }
    let planned = engine
        .plan(ctx, &statement.parsed)
        .await
        .map_err(status_from)?;
    let df = planned.frame;
    let mut frames = match &statement.bound {
        None if !statement.parameter_names.is_empty() => {
            return Err(error_status(
                ErrorKind::InvalidArgument,
                format!(
                    "statement has {} parameter(s) but none were bound",
                    statement.parameter_names.len()
                ),
            ));
        }
        None => vec![df.clone()],
        Some(rows) => rows
            .iter()
            .map(|row| {
                let values = param_values(statement, row)?;
                df.clone().with_param_values(values).map_err(status_from_df)
            })
            .collect::<Result<Vec<_>, Status>>()?,
    };
    if planned.writes {
        let mut done = Vec::with_capacity(frames.len());
        for frame in frames {
            done.push(
                weir_query::run_write(ctx, frame)
                    .await
                    .map_err(status_from)?,
            );
        }
        frames = done;
    }
    let schema = frames
        .first()
        .map(|f| f.schema().as_arrow().clone())
        .unwrap_or_else(|| df.schema().as_arrow().clone());
    Ok(Executable {
        schema: Arc::new(schema),
        frames,
        owner: Arc::from(""),
    })
}

/// DDL with parameters (CTAS … WHERE x < $1) runs while it is planned: the
/// values of each bound row go into the plan first, one run per row.
async fn run_deferred_with_parameters(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    statement: &PreparedStatement,
) -> Result<Executable, Status> {
    let Some(rows) = &statement.bound else {
        return Err(error_status(
            ErrorKind::InvalidArgument,
            format!(
                "statement has {} parameter(s) but none were bound",
                statement.parameter_names.len()
            ),
        ));
    };
    let mut frames = Vec::with_capacity(rows.len());
    for row in rows.iter() {
        let values = param_values(statement, row)?;
        let planned = engine
            .plan_bound(ctx, &statement.parsed, Some(values))
            .await
            .map_err(status_from)?;
        frames.push(if planned.writes {
            weir_query::run_write(ctx, planned.frame)
                .await
                .map_err(status_from)?
        } else {
            planned.frame
        });
    }
    let schema = frames
        .first()
        .map(|f| Arc::new(f.schema().as_arrow().clone()))
        .unwrap_or_else(|| statement.dataset_schema.clone());
    Ok(Executable {
        schema,
        frames,
        owner: Arc::from(""),
    })
}

/// Reads the parameter rows a client bound with DoPut. A batch without
/// columns means "no parameters".
pub(crate) fn rows_from_batches(
    batches: &[RecordBatch],
) -> Result<Option<Vec<Vec<ScalarValue>>>, Status> {
    if batches.iter().all(|b| b.num_columns() == 0) {
        return Ok(None);
    }
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|col| ScalarValue::try_from_array(col, row))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    error_status(
                        ErrorKind::InvalidArgument,
                        format!("invalid parameter value: {e}"),
                    )
                })?;
            rows.push(values);
        }
    }
    Ok(Some(rows))
}

/// Executes the frames one after another and returns the affected row
/// count: the sum of their `count` columns (0 if there is none).
pub(crate) async fn execute_update(frames: Vec<DataFrame>) -> Result<i64, Status> {
    let mut total = 0i64;
    for df in frames {
        let batches = df.collect().await.map_err(status_from_df)?;
        total = total.saturating_add(count_rows(&batches).map_err(status_from_arrow)?);
    }
    Ok(total)
}

/// Sum of the `count` column of a DML/DDL result.
pub(crate) fn count_rows(batches: &[RecordBatch]) -> Result<i64, ArrowError> {
    let mut total = 0i64;
    for batch in batches {
        let Some(col) = batch.column_by_name("count") else {
            continue;
        };
        let col = cast(col, &DataType::Int64)?;
        let col = col.as_primitive::<Int64Type>();
        total = col.iter().flatten().fold(total, i64::saturating_add);
    }
    Ok(total)
}

/// Rebuilds `batch` with exactly `schema` (names, nullability, metadata);
/// columns whose type differs (e.g. nested field names) are cast.
pub fn conform_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    if batch.num_columns() != schema.fields().len() {
        return Err(ArrowError::SchemaError(format!(
            "result has {} columns but {} were advertised",
            batch.num_columns(),
            schema.fields().len()
        )));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(col, field)| {
            if col.data_type() == field.data_type() {
                Ok(col.clone())
            } else {
                cast(col, field.data_type())
            }
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// Executes the frames lazily, in order, and encodes their batches with the
/// advertised schema (sent even when there are no rows).
pub(crate) fn stream_executable(exec: Executable) -> FlightDataStream {
    let Executable { schema, frames, .. } = exec;
    let target = schema.clone();
    let batches = futures::stream::iter(frames)
        .then(|df| async move { df.execute_stream().await })
        .try_flatten()
        .map(move |batch| {
            batch
                .map_err(status_from_df)
                .and_then(|b| conform_batch(b, &target).map_err(status_from_arrow))
                .map_err(|status| FlightError::Tonic(Box::new(status)))
        });
    // A panic inside DataFusion while the query runs (a bug there, e.g.
    // `overlay('abc' placing 'x' from -5)` in DataFusion 53) ends the stream
    // with INTERNAL and the panic's message instead of a reset stream
    // (CANCELLED, no message).
    let batches = std::panic::AssertUnwindSafe(batches)
        .catch_unwind()
        .map(|item| {
            item.unwrap_or_else(|panic| Err(FlightError::Tonic(Box::new(panicked(panic)))))
        });
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(batches)
        .map_err(status_from_flight);
    Box::pin(encoded)
}

fn panicked(panic: Box<dyn std::any::Any + Send>) -> Status {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    tracing::warn!(panic = %message, "a query panicked while running");
    error_status(
        ErrorKind::Internal,
        format!("the query failed inside the engine (a bug): {message}"),
    )
}

/// `stream`, cut off with DEADLINE_EXCEEDED once `timeout` has passed
/// (dropping the query's stream cancels its execution).
pub(crate) fn with_deadline(
    stream: FlightDataStream,
    timeout: Option<std::time::Duration>,
) -> FlightDataStream {
    let Some(limit) = timeout else {
        return stream;
    };
    let sleep = Box::pin(tokio::time::sleep(limit));
    Box::pin(futures::stream::unfold(
        Some((stream, sleep)),
        move |state| async move {
            let (mut stream, mut sleep) = state?;
            tokio::select! {
                item = stream.next() => item.map(|i| (i, Some((stream, sleep)))),
                _ = &mut sleep => Some((Err(deadline(limit)), None)),
            }
        },
    ))
}

/// Runs `work` (planning, DDL, DML) within `timeout`.
pub(crate) async fn within<T>(
    timeout: Option<std::time::Duration>,
    work: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .unwrap_or_else(|_| Err(deadline(limit))),
    }
}

fn deadline(limit: std::time::Duration) -> Status {
    error_status(
        ErrorKind::TimedOut,
        format!(
            "the statement ran longer than its query timeout ({}; the session option statement_timeout, else the server's --query-timeout) and was cancelled",
            humantime::format_duration(limit)
        ),
    )
}

/// Encodes an in-memory result (metadata commands).
pub(crate) fn stream_batch(batch: RecordBatch) -> FlightDataStream {
    let schema = batch.schema();
    let encoded = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::iter([Ok(batch)]))
        .map_err(status_from_flight);
    Box::pin(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, UInt64Array};

    #[test]
    fn conform_changes_only_nullability() {
        let physical = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("min_value", DataType::Float64, false),
        ]));
        let batch = RecordBatch::try_new(
            physical,
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Float64Array::from(vec![1.5, 2.5])),
            ],
        )
        .unwrap();
        let advertised = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("min_value", DataType::Float64, true),
        ]));
        let out = conform_batch(batch, &advertised).unwrap();
        assert_eq!(out.schema(), advertised);
        assert_eq!(out.num_rows(), 2);
    }

    #[test]
    fn conform_to_non_nullable_when_data_has_no_nulls() {
        let physical = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let batch =
            RecordBatch::try_new(physical, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let advertised = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        assert_eq!(
            conform_batch(batch, &advertised).unwrap().schema(),
            advertised
        );
    }

    #[test]
    fn conform_casts_and_rejects_wrong_width() {
        let physical = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, true)]));
        let batch = RecordBatch::try_new(
            physical,
            vec![Arc::new(arrow::array::Int32Array::from(vec![1, 2]))],
        )
        .unwrap();
        let advertised = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        let out = conform_batch(batch.clone(), &advertised).unwrap();
        assert_eq!(out.column(0).data_type(), &DataType::Int64);
        let two = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Int32, true),
        ]));
        assert!(conform_batch(batch, &two).is_err());
    }

    #[test]
    fn count_rows_sums_count_columns() {
        let schema = count_schema();
        let b1 = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt64Array::from(vec![2u64]))],
        )
        .unwrap();
        let b2 =
            RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![3u64]))]).unwrap();
        assert_eq!(count_rows(&[b1, b2]).unwrap(), 5);
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
            vec![Arc::new(Int64Array::from(vec![7]))],
        )
        .unwrap();
        assert_eq!(count_rows(&[other]).unwrap(), 0);
    }

    #[test]
    fn parameters_are_ordered_numerically() {
        let mut p = HashMap::new();
        p.insert("$10".to_string(), Some(DataType::Int64));
        p.insert("$2".to_string(), None);
        p.insert("$1".to_string(), Some(DataType::Utf8));
        let (names, types) = order_parameters(p);
        assert_eq!(names.len(), 10);
        assert_eq!(names[0], "$1");
        assert_eq!(names[9], "$10");
        assert_eq!(types[0], Some(DataType::Utf8));
        assert_eq!(types[1], None);
        assert_eq!(types[9], Some(DataType::Int64));
    }

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(number_placeholders("SELECT ? + 1"), "SELECT $1 + 1");
        assert_eq!(
            number_placeholders("INSERT INTO t VALUES (?, ?)"),
            "INSERT INTO t VALUES ($1, $2)"
        );
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\", ? -- ?\nFROM t WHERE x = ?"),
            "SELECT '?', \"a?\", $1 -- ?\nFROM t WHERE x = $2"
        );
        assert_eq!(number_placeholders("SELECT 'ü', ?"), "SELECT 'ü', $1");
        assert_eq!(number_placeholders("SELECT ?2, ?1"), "SELECT $2, $1");
        assert_eq!(number_placeholders("SELECT $1"), "SELECT $1");
        assert_eq!(
            number_placeholders("SELECT 'unterminated ?"),
            "SELECT 'unterminated ?"
        );
    }

    #[test]
    fn statement_cache_take_removes() {
        let cache = StatementCache::new(Duration::from_secs(60));
        let ctx = datafusion::prelude::SessionContext::new();
        let df = futures::executor::block_on(ctx.sql("SELECT 1")).unwrap();
        let handle = cache.insert(Executable {
            schema: count_schema(),
            frames: vec![df],
            owner: "alice".into(),
        });
        assert_eq!(cache.len(), 1);
        let who = |name: &str, role| crate::auth::Principal {
            name: name.into(),
            role,
        };
        let reader = crate::users::Role::Read;
        assert!(cache.take(&handle, &who("mallory", reader)).is_none());
        assert!(cache.take(&handle, &who("alice", reader)).is_some());
        assert!(cache.take(&handle, &who("alice", reader)).is_none());
        assert!(cache.take("nope", &who("alice", reader)).is_none());
    }

    #[test]
    fn statement_cache_expires() {
        let cache = StatementCache::new(Duration::ZERO);
        let handle = cache.insert(Executable {
            schema: count_schema(),
            frames: vec![],
            owner: "alice".into(),
        });
        std::thread::sleep(Duration::from_millis(5));
        let admin = crate::auth::Principal {
            name: "root".into(),
            role: crate::users::Role::Admin,
        };
        assert!(cache.take(&handle, &admin).is_none());
        cache.insert(Executable {
            schema: count_schema(),
            frames: vec![],
            owner: "alice".into(),
        });
        std::thread::sleep(Duration::from_millis(5));
        cache.insert(Executable {
            schema: count_schema(),
            frames: vec![],
            owner: "alice".into(),
        });
        assert_eq!(cache.len(), 1, "older entries expire on insert");
    }
}

/// DataFusion behaviour the prepared-statement code relies on.
#[cfg(test)]
mod datafusion_tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    fn params(plan: &LogicalPlan) -> (Vec<String>, Vec<Option<DataType>>) {
        order_parameters(plan.get_parameter_types().unwrap())
    }

    #[tokio::test]
    async fn question_mark_placeholders_are_numbered_and_typed() {
        let ctx = SessionContext::new();
        let plan = ctx
            .state()
            .create_logical_plan(&number_placeholders("SELECT ? + 1 AS x, ? * 10 AS y"))
            .await
            .unwrap();
        let (names, types) = params(&plan);
        assert_eq!(names, ["$1", "$2"]);
        assert_eq!(types, [Some(DataType::Int64), Some(DataType::Int64)]);
        let df = ctx.execute_logical_plan(plan).await.unwrap();
        let df = df
            .with_param_values(vec![
                ScalarValue::Int64(Some(41)),
                ScalarValue::Int64(Some(2)),
            ])
            .unwrap();
        let batches = df.collect().await.unwrap();
        let x = batches[0].column(0).as_primitive::<Int64Type>().value(0);
        let y = batches[0].column(1).as_primitive::<Int64Type>().value(0);
        assert_eq!((x, y), (42, 20));
    }

    #[tokio::test]
    async fn insert_values_placeholders_take_the_table_types() {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![0])),
                Arc::new(StringArray::from(vec!["z"])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("p", Arc::new(table)).unwrap();
        let plan = ctx
            .state()
            .create_logical_plan(&number_placeholders("INSERT INTO p VALUES (?, ?)"))
            .await
            .unwrap();
        assert!(matches!(plan, LogicalPlan::Dml(_)));
        let (names, types) = params(&plan);
        assert_eq!(names, ["$1", "$2"]);
        assert_eq!(types, [Some(DataType::Int64), Some(DataType::Utf8)]);

        let statement = PreparedStatement {
            parsed: WeirStatement::parse(&ctx, "INSERT INTO p VALUES ($1, $2)").unwrap(),
            kind: StatementKind::Update,
            dataset_schema: count_schema(),
            parameter_names: names,
            parameter_types: types,
            bound: None,
            last_used: Instant::now(),
        };
        let df = ctx.execute_logical_plan(plan).await.unwrap();
        let mut frames = Vec::new();
        // Client sends Int32 and LargeUtf8: cast to the table types.
        for (id, name) in [(1, "a"), (2, "b")] {
            let row = [
                ScalarValue::Int32(Some(id)),
                ScalarValue::LargeUtf8(Some(name.into())),
            ];
            frames.push(
                df.clone()
                    .with_param_values(param_values(&statement, &row).unwrap())
                    .unwrap(),
            );
        }
        assert_eq!(execute_update(frames).await.unwrap(), 2);
        let n = ctx
            .sql("SELECT count(*) FROM p")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(n[0].column(0).as_primitive::<Int64Type>().value(0), 3);

        let wrong = [ScalarValue::Int64(Some(1))];
        assert_eq!(
            param_values(&statement, &wrong).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
