//! The Explore page's SQL: run through Flight's own path
//! ([`weir_flight::execute_as`]: the same parse, role check, engine and
//! statement timeout), at most [`crate::MAX_ROWS`] rows back as JSON; a
//! running statement can be cancelled by its id (dropping its stream stops
//! the execution).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use weir_flight::Principal;
use weir_observe::HttpResponse;

use crate::web::{ApiError, ok, read_json};
use crate::{Inner, MAX_ROWS};

const MAX_ID: usize = 64;

struct Query {
    owner: Arc<str>,
    task: tokio::task::AbortHandle,
}

/// Running console statements by their client-chosen id.
#[derive(Default)]
pub(crate) struct Running(Mutex<HashMap<String, Query>>);

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Query>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(Deserialize)]
struct RunRequest {
    sql: String,
    /// Names the statement for a cancel.
    #[serde(default)]
    id: Option<String>,
}

pub(crate) struct Outcome {
    pub columns: Vec<serde_json::Value>,
    pub rows: Vec<Vec<serde_json::Value>>,
    pub truncated: bool,
}

impl Outcome {
    /// The rows as objects keyed by column name.
    pub(crate) fn records(self) -> Vec<serde_json::Value> {
        let names: Vec<String> = self
            .columns
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect();
        self.rows
            .into_iter()
            .map(|row| serde_json::Value::Object(names.iter().cloned().zip(row).collect()))
            .collect()
    }
}

/// `POST /api/query {sql, id}`.
pub(crate) async fn run(
    inner: &Inner,
    principal: Principal,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: RunRequest = read_json(req).await?;
    if body.sql.trim().is_empty() {
        return Err(ApiError::bad_request("the SQL statement is empty"));
    }
    let id = body.id.unwrap_or_default();
    if id.len() > MAX_ID {
        return Err(ApiError::bad_request(format!(
            "the query id is longer than {MAX_ID} bytes"
        )));
    }
    let engine = inner.engine.clone();
    let timeout = inner.query_timeout;
    let started = Instant::now();
    let owner = principal.name.clone();
    let task =
        tokio::spawn(async move { statement(&engine, &principal, &body.sql, timeout).await });
    if !id.is_empty() {
        inner.queries.lock().insert(
            id.clone(),
            Query {
                owner,
                task: task.abort_handle(),
            },
        );
    }
    let joined = task.await;
    if !id.is_empty() {
        inner.queries.lock().remove(&id);
    }
    let outcome = match joined {
        Ok(result) => result?,
        Err(e) if e.is_cancelled() => {
            return Err(ApiError::new(
                hyper::StatusCode::CONFLICT,
                "the statement was cancelled",
            ));
        }
        Err(e) => return Err(ApiError::internal(format!("the statement failed: {e}"))),
    };
    ok(serde_json::json!({
        "columns": outcome.columns,
        "rows": outcome.rows,
        "truncated": outcome.truncated,
        "max_rows": MAX_ROWS,
        "elapsed_ms": started.elapsed().as_secs_f64() * 1000.0,
    }))
}

/// Runs `sql` as `principal` through Flight's own path
/// ([`weir_flight::execute_as`]: parse, role check, engine, timeout) and
/// collects at most [`MAX_ROWS`] rows; the statement's author (e.g. of an
/// `ACKNOWLEDGE ALERT`) is the principal.
pub(crate) async fn statement(
    engine: &weir_query::QueryEngine,
    principal: &Principal,
    sql: &str,
    timeout: Option<std::time::Duration>,
) -> Result<Outcome, ApiError> {
    // Planning and streaming share one deadline, as in Flight.
    let work = async {
        let ctx = engine.new_context();
        weir_query::set_actor(&ctx, &principal.name);
        let frame = weir_flight::execute_as(engine, &ctx, principal, sql, timeout)
            .await
            .map_err(|s| ApiError::from_status(&s))?;
        collect(frame).await
    };
    match timeout {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(ApiError::new(
                hyper::StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the statement ran longer than the query timeout ({:.0} s) and was cancelled",
                    limit.as_secs_f64()
                ),
            ))
        }),
    }
}

#[derive(Deserialize)]
struct CancelRequest {
    id: String,
}

/// `POST /api/query/cancel {id}`: the owner (or an admin) stops it.
pub(crate) async fn cancel(
    inner: &Inner,
    principal: &Principal,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: CancelRequest = read_json(req).await?;
    let mut queries = inner.queries.lock();
    match queries.get(&body.id) {
        Some(q) if principal.role == weir_flight::Role::Admin || q.owner == principal.name => {
            q.task.abort();
            queries.remove(&body.id);
            ok(serde_json::json!({ "cancelled": true }))
        }
        _ => Err(ApiError::not_found(
            "no such running statement (it finished, or is not yours)",
        )),
    }
}

async fn collect(frame: datafusion::dataframe::DataFrame) -> Result<Outcome, ApiError> {
    let schema = frame.schema().as_arrow().clone();
    let columns = schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "kind": kind(f.data_type()),
            })
        })
        .collect();
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| ApiError::bad_request(e.to_string()))?;
        let room = MAX_ROWS - rows.len();
        if batch.num_rows() > room {
            truncated = true;
        }
        append(&batch.slice(0, batch.num_rows().min(room)), &mut rows)?;
        if rows.len() >= MAX_ROWS {
            // Dropping the stream stops the query.
            truncated = truncated || stream.next().await.is_some();
            break;
        }
    }
    Ok(Outcome {
        columns,
        rows,
        truncated,
    })
}

/// How the page treats a column: `time` (x axis), `number` (series) or `text`.
fn kind(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 => "time",
        t if t.is_numeric() => "number",
        DataType::Boolean => "bool",
        _ => "text",
    }
}

pub(crate) fn append(
    batch: &RecordBatch,
    rows: &mut Vec<Vec<serde_json::Value>>,
) -> Result<(), ApiError> {
    let failed = |e: arrow::error::ArrowError| ApiError::internal(format!("encoding results: {e}"));
    let options = FormatOptions::default().with_null("");
    let start = rows.len();
    rows.extend((0..batch.num_rows()).map(|_| Vec::with_capacity(batch.num_columns())));
    for column in batch.columns() {
        let values = values(column, &options).map_err(failed)?;
        for (row, value) in rows[start..].iter_mut().zip(values) {
            row.push(value);
        }
    }
    Ok(())
}

fn values(
    column: &ArrayRef,
    options: &FormatOptions,
) -> Result<Vec<serde_json::Value>, arrow::error::ArrowError> {
    let n = column.len();
    match column.data_type() {
        t if t.is_numeric() => {
            let floats = cast(column, &DataType::Float64)?;
            let floats = floats
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .ok_or_else(|| arrow::error::ArrowError::CastError("not float64".into()))?;
            Ok((0..n)
                .map(|i| {
                    if floats.is_null(i) {
                        serde_json::Value::Null
                    } else {
                        serde_json::Number::from_f64(floats.value(i))
                            .map_or(serde_json::Value::Null, serde_json::Value::Number)
                    }
                })
                .collect())
        }
        DataType::Boolean => {
            let bools = column
                .as_any()
                .downcast_ref::<arrow::array::BooleanArray>()
                .ok_or_else(|| arrow::error::ArrowError::CastError("not boolean".into()))?;
            Ok((0..n)
                .map(|i| {
                    if bools.is_null(i) {
                        serde_json::Value::Null
                    } else {
                        bools.value(i).into()
                    }
                })
                .collect())
        }
        _ => {
            let formatter = ArrayFormatter::try_new(column.as_ref(), options)?;
            Ok((0..n)
                .map(|i| {
                    if column.is_null(i) {
                        serde_json::Value::Null
                    } else {
                        formatter.value(i).to_string().into()
                    }
                })
                .collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use arrow::datatypes::{Field, Schema, TimeUnit};

    use super::*;

    #[test]
    fn results_become_json_values() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int64Array::from(vec![Some(7), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), Some(f64::NAN)])),
                Arc::new(StringArray::from(vec![Some("<b>x</b>"), None])),
                Arc::new(BooleanArray::from(vec![Some(true), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_767_225_600_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .unwrap();
        let mut rows = Vec::new();
        append(&batch, &mut rows).unwrap();
        assert_eq!(rows[0][0], serde_json::json!(7.0));
        assert_eq!(rows[0][1], serde_json::json!(1.5));
        assert_eq!(rows[0][2], serde_json::json!("<b>x</b>"));
        assert_eq!(rows[0][3], serde_json::json!(true));
        assert_eq!(rows[0][4], serde_json::json!("2026-01-01T00:00:00Z"));
        // NaN and nulls are JSON null.
        assert!(rows[1].iter().all(|v| v.is_null()), "{:?}", rows[1]);
        assert_eq!(kind(batch.schema().field(4).data_type()), "time");
        assert_eq!(kind(&DataType::Int64), "number");
        assert_eq!(kind(&DataType::Utf8), "text");
    }
}
