//! Standing alert rules as SQL (issue 22 item 4): `CREATE ALERT`, `DROP
//! ALERT`, `ACKNOWLEDGE ALERT`, and the table function `alert_rules()`.
//!
//! Rules are kept where every Weir process sees them, in the catalog: each
//! is a `weir.alert.rule.<name>` property of `gold.alerts` (the table of
//! their transitions) holding its `CREATE ALERT` text, changed by metadata
//! commits (compare-and-swap on the catalog row). Rules declared in
//! `catalog/alerts/*.toml` are written there by the process that evaluates
//! them (marked `weir.alert.declared.<name>`), so SQL can list but not drop
//! them. The evaluator (`weir-alert`) re-reads the properties as they change.
//!
//! `ACKNOWLEDGE ALERT 'id' [, …]` appends an ACKNOWLEDGED transition for
//! alerts whose latest transition is ACTIVE; anything else is refused with
//! the alert's state. The committed rows are then published on this
//! process's hot-tier feed (table `gold.alerts`), where its evaluator, if it
//! runs one, notifies the rules' targets (`weir_alert::engine`).

pub mod rule;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use iceberg::TableIdent;
use iceberg::table::Table;
use weir_catalog::{AppendOptions, Lakehouse, append_batches};

pub use rule::{AlertRule, Comparison, Condition, Target};

use crate::error::{QueryError, Result};

/// The table of transitions (and home of the rules).
pub const ALERTS_NAMESPACE: &str = "gold";
pub const ALERTS_TABLE: &str = "alerts";
/// Property prefix of a rule's `CREATE ALERT` text.
pub const RULE_PREFIX: &str = "weir.alert.rule.";
/// Property prefix marking a rule declared in `catalog/alerts/`.
pub const DECLARED_PREFIX: &str = "weir.alert.declared.";

/// Transition states.
pub const ACTIVE: &str = "ACTIVE";
pub const ACKNOWLEDGED: &str = "ACKNOWLEDGED";
pub const RESOLVED: &str = "RESOLVED";

pub fn alerts_ident() -> TableIdent {
    TableIdent::from_strs([ALERTS_NAMESPACE, ALERTS_TABLE]).expect("static identifier")
}

/// A parsed alert statement.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertStatement {
    Create {
        rule: Box<AlertRule>,
        if_not_exists: bool,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
    Acknowledge {
        ids: Vec<String>,
    },
}

impl AlertStatement {
    /// Acknowledging is a write; rules are administration.
    pub fn is_write(&self) -> bool {
        matches!(self, AlertStatement::Acknowledge { .. })
    }
}

/// The alert statements; `None` for any other statement.
pub(crate) fn parse(dialect: &dyn Dialect, sql: &str) -> Result<Option<AlertStatement>> {
    let mut parser = Parser::new(dialect)
        .try_with_sql(sql)
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    let first = parser.peek_token().token;
    let Token::Word(first) = first else {
        return Ok(None);
    };
    if first.quote_style.is_some() {
        return Ok(None);
    }
    let second = match parser.peek_nth_token(1).token {
        Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => return Ok(None),
    };
    if second != "ALERT" {
        return Ok(None);
    }
    let statement = match first.value.to_ascii_uppercase().as_str() {
        "CREATE" => {
            parser.next_token();
            parser.next_token();
            let (rule, if_not_exists) = rule::parse_create_body(&mut parser)?;
            AlertStatement::Create {
                rule: Box::new(rule),
                if_not_exists,
            }
        }
        "DROP" => {
            parser.next_token();
            parser.next_token();
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = parser
                .parse_identifier()
                .map_err(|e| QueryError::Syntax(e.to_string()))?
                .value
                .to_ascii_lowercase();
            end(&mut parser)?;
            AlertStatement::Drop { name, if_exists }
        }
        "ACKNOWLEDGE" | "ACK" => {
            parser.next_token();
            parser.next_token();
            let ids = parser
                .parse_comma_separated(Parser::parse_literal_string)
                .map_err(|e| {
                    QueryError::Syntax(format!("ACKNOWLEDGE ALERT 'alert_id' [, …]: {e}"))
                })?;
            end(&mut parser)?;
            AlertStatement::Acknowledge { ids }
        }
        _ => return Ok(None),
    };
    Ok(Some(statement))
}

fn end(parser: &mut Parser) -> Result<()> {
    while parser.consume_token(&Token::SemiColon) {}
    match parser.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(QueryError::Syntax(format!(
            "unexpected `{other}` after the statement"
        ))),
    }
}

/// Runs an alert statement; returns the rows it changed (acknowledgements).
pub(crate) async fn execute(
    lakehouse: &Lakehouse,
    ctx: &SessionContext,
    statement: &AlertStatement,
    actor: &str,
) -> Result<u64> {
    match statement {
        AlertStatement::Create {
            rule,
            if_not_exists,
        } => {
            // Rows arrive named `namespace.table`.
            let mut rule = (**rule).clone();
            let parts: Vec<&str> = rule.table.split('.').collect();
            rule.table = match parts.as_slice() {
                [t] => format!(
                    "{}.{t}",
                    ctx.state().config_options().catalog.default_schema
                ),
                [_, ns, t] => format!("{ns}.{t}"),
                _ => rule.table.clone(),
            };
            let rule = &rule;
            check_rule(ctx, rule).await?;
            ensure_alerts_table(lakehouse).await?;
            let key = format!("{RULE_PREFIX}{}", rule.name);
            let text = rule.to_sql();
            let mut exists = false;
            set_properties(lakehouse, |props| {
                if props.contains_key(&key) {
                    exists = true;
                    return None;
                }
                Some((vec![(key.clone(), text.clone())], vec![]))
            })
            .await?;
            if exists && !if_not_exists {
                return Err(QueryError::AlreadyExists(format!("alert {}", rule.name)));
            }
            Ok(0)
        }
        AlertStatement::Drop { name, if_exists } => {
            ensure_alerts_table(lakehouse).await?;
            let key = format!("{RULE_PREFIX}{name}");
            let declared = format!("{DECLARED_PREFIX}{name}");
            let mut state = (false, false);
            set_properties(lakehouse, |props| {
                state = (props.contains_key(&key), props.contains_key(&declared));
                (state.0 && !state.1).then(|| (vec![], vec![key.clone()]))
            })
            .await?;
            match state {
                (_, true) => Err(QueryError::Invalid(format!(
                    "alert {name} is declared in catalog/alerts/; remove it there"
                ))),
                (false, _) if !if_exists => Err(QueryError::NotFound(format!("alert {name}"))),
                _ => Ok(0),
            }
        }
        AlertStatement::Acknowledge { ids } => acknowledge(lakehouse, ctx, ids, actor).await,
    }
}

/// Plans the rule's expressions against its table, so a typo is an error now
/// and not a rule that never fires.
async fn check_rule(ctx: &SessionContext, rule: &AlertRule) -> Result<()> {
    let provider = ctx.table_provider(rule.table.as_str()).await.map_err(|_| {
        QueryError::NotFound(format!("table {} of alert {}", rule.table, rule.name))
    })?;
    let schema = provider.schema();
    let compiled = compile::CompiledRule::new(rule, &schema)?;
    if !compiled.has_time()
        && !matches!(rule.when, Condition::Absent { .. } | Condition::Row { .. })
    {
        return Err(QueryError::Invalid(format!(
            "{} has no timestamp column (`ts`): rate(…) and zscore(…) need one",
            rule.table
        )));
    }
    Ok(())
}

pub mod compile;

/// Creates `gold.alerts` from its built-in definition if it is missing.
pub async fn ensure_alerts_table(lakehouse: &Lakehouse) -> Result<()> {
    let specs = weir_catalog::builtin_specs()?;
    let spec: Vec<_> = specs
        .into_iter()
        .filter(|s| s.qualified_name() == format!("{ALERTS_NAMESPACE}.{ALERTS_TABLE}"))
        .collect();
    for spec in &spec {
        lakehouse.create_if_missing(spec).await?;
    }
    Ok(())
}

/// Applies a property change to `gold.alerts` (`None`: nothing to do):
/// properties to set and keys to remove.
pub async fn set_properties<F>(lakehouse: &Lakehouse, mut change: F) -> Result<()>
where
    F: FnMut(&HashMap<String, String>) -> Option<(Vec<(String, String)>, Vec<String>)>,
{
    let ident = alerts_ident();
    let name = ident.to_string();
    weir_catalog::commit_metadata(lakehouse, &ident, |table| {
        let Some((set, remove)) = change(table.metadata().properties()) else {
            return Ok(None);
        };
        let mut builder = table
            .metadata()
            .clone()
            .into_builder(table.metadata_location().map(str::to_string));
        if !set.is_empty() {
            builder = builder
                .set_properties(set.into_iter().collect())
                .map_err(|e| weir_catalog::CatalogError::iceberg(&name, e))?;
        }
        if !remove.is_empty() {
            builder = builder
                .remove_properties(&remove)
                .map_err(|e| weir_catalog::CatalogError::iceberg(&name, e))?;
        }
        let metadata = builder
            .build()
            .map_err(|e| weir_catalog::CatalogError::iceberg(&name, e))?
            .metadata;
        Ok(Some(metadata))
    })
    .await?;
    Ok(())
}

/// The rules stored on `gold.alerts`, with whether each is declared; a rule
/// whose text no longer parses is reported and skipped.
pub fn stored_rules(table: &Table) -> Vec<(AlertRule, bool)> {
    let props = table.metadata().properties();
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut out: Vec<(AlertRule, bool)> = props
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(RULE_PREFIX)?;
            match rule::parse_create(&dialect, v) {
                Ok(rule) => Some((rule, props.contains_key(&format!("{DECLARED_PREFIX}{name}")))),
                Err(e) => {
                    tracing::warn!(rule = name, error = %e, "stored alert rule does not parse; skipped");
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    out
}

/// The latest transition of each of the alerts `ids` (those that exist):
/// alert id → state, rule, series, severity, value, message (as text).
async fn latest_transitions(
    ctx: &SessionContext,
    ids: &[String],
) -> Result<HashMap<String, [Option<String>; 6]>> {
    let list = ids
        .iter()
        .map(|id| format!("'{}'", id.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    // The latest transition of each alert (an acknowledgement carries no
    // seq, so the time orders it; ties go to the later state).
    let sql = format!(
        "SELECT alert_id, state, rule, series, severity, value, message FROM ( \
           SELECT *, row_number() OVER (PARTITION BY alert_id ORDER BY at DESC, \
             CASE state WHEN 'RESOLVED' THEN 2 WHEN 'ACKNOWLEDGED' THEN 1 ELSE 0 END DESC) AS n \
           FROM {ALERTS_NAMESPACE}.{ALERTS_TABLE} WHERE alert_id IN ({list})) WHERE n = 1"
    );
    let batches = ctx.sql(&sql).await?.collect().await?;
    let mut latest: HashMap<String, [Option<String>; 6]> = HashMap::new();
    for b in &batches {
        let col = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .map_err(|e| QueryError::Internal(e.to_string()))
        };
        let cols = (0..7).map(col).collect::<Result<Vec<_>>>()?;
        let s = |c: &ArrayRef, i: usize| {
            let a = c.as_any().downcast_ref::<StringArray>()?;
            (!a.is_null(i)).then(|| a.value(i).to_string())
        };
        for i in 0..b.num_rows() {
            let Some(id) = s(&cols[0], i) else { continue };
            latest.insert(
                id,
                [
                    s(&cols[1], i),
                    s(&cols[2], i),
                    s(&cols[3], i),
                    s(&cols[4], i),
                    s(&cols[5], i),
                    s(&cols[6], i),
                ],
            );
        }
    }
    Ok(latest)
}

async fn acknowledge(
    lakehouse: &Lakehouse,
    ctx: &SessionContext,
    ids: &[String],
    actor: &str,
) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let latest = latest_transitions(ctx, ids).await?;
    let mut rows = Vec::new();
    for id in ids {
        let Some([state, rule, series, severity, value, message]) = latest.get(id) else {
            return Err(QueryError::NotFound(format!("alert {id}")));
        };
        match state.as_deref() {
            Some(ACTIVE) => rows.push((
                id.clone(),
                rule.clone().unwrap_or_default(),
                series.clone().unwrap_or_default(),
                severity.clone().unwrap_or_default(),
                value.as_deref().and_then(|v| v.parse::<f64>().ok()),
                message.clone(),
            )),
            Some(other) => {
                return Err(QueryError::Invalid(format!(
                    "alert {id} is {other}; only an ACTIVE alert can be acknowledged"
                )));
            }
            None => return Err(QueryError::NotFound(format!("alert {id}"))),
        }
    }
    let table = lakehouse.load_table(ALERTS_NAMESPACE, ALERTS_TABLE).await?;
    let now = chrono::Utc::now().timestamp_micros();
    let n = rows.len();
    let batch = transitions_batch(
        &table,
        &rows
            .into_iter()
            .map(|(id, rule, series, severity, value, message)| Transition {
                at_micros: now,
                alert_id: id,
                state: ACKNOWLEDGED,
                rule,
                series,
                severity,
                value,
                message,
                actor: actor.to_string(),
                seq: None,
            })
            .collect::<Vec<_>>(),
    )?;
    let mut opts = AppendOptions::default();
    opts.snapshot_properties
        .insert("weir.source".into(), "acknowledge".into());
    append_batches(lakehouse, &table, std::slice::from_ref(&batch), opts).await?;
    // The evaluator of this process notifies the rules' targets of the
    // acknowledgement: committed rows of `gold.alerts` on the hot tier's
    // feed, as INSERTs publish theirs (a no-op without an evaluator).
    if let Some(hot) = ctx.state().config().get_extension::<weir_hot::HotTier>() {
        hot.publish(&format!("{ALERTS_NAMESPACE}.{ALERTS_TABLE}"), &batch);
    }
    Ok(n as u64)
}

/// One row of `gold.alerts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub at_micros: i64,
    pub alert_id: String,
    pub state: &'static str,
    pub rule: String,
    pub series: String,
    pub severity: String,
    pub value: Option<f64>,
    pub message: Option<String>,
    pub actor: String,
    pub seq: Option<i64>,
}

/// Transitions as a batch of `gold.alerts`' Arrow schema (with its field ids).
pub fn transitions_batch(table: &Table, rows: &[Transition]) -> Result<RecordBatch> {
    let schema = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(|e| QueryError::Internal(format!("gold.alerts schema: {e}")))?;
    let schema = Arc::new(schema);
    let mut columns: Vec<ArrayRef> = Vec::new();
    for field in schema.fields() {
        let column: ArrayRef = match field.name().as_str() {
            "at" => Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.at_micros))
                    .with_timezone("+00:00"),
            ),
            "alert_id" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.alert_id.as_str()),
            )),
            "state" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.state))),
            "rule" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.rule.as_str()),
            )),
            "series" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.series.as_str()),
            )),
            "severity" => Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.severity.as_str()),
            )),
            "value" => Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.value))),
            "message" => Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.message.as_deref()),
            )),
            "actor" => Arc::new(StringArray::from_iter(
                rows.iter().map(|r| Some(r.actor.as_str())),
            )),
            "seq" => Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.seq))),
            // A column added to the table later: NULL.
            _ => arrow::array::new_null_array(field.data_type(), rows.len()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema, columns).map_err(|e| QueryError::Internal(e.to_string()))
}
