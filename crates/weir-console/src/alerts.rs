//! The Alerts page: firing alerts (an alert's latest transition in
//! `gold.alerts` is ACTIVE or ACKNOWLEDGED), the last transitions and the
//! rules of `alert_rules()` — read as the caller through Flight's statement
//! path ([`crate::query::statement`]). Acknowledging runs `ACKNOWLEDGE
//! ALERT` the same way, so the engine's role check (Write) and its refusal
//! of an alert that is not ACTIVE apply, and the user is recorded as the
//! transition's actor.
//!
//! Every page polls, so the answer is kept per metadata location of
//! `gold.alerts`: transitions are appends and rules are table properties,
//! both move that location, and an unchanged location costs one catalog-row
//! lookup instead of three statements.

use std::sync::{Mutex, MutexGuard};

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use weir_flight::Principal;
use weir_observe::HttpResponse;
use weir_query::alerts::{ALERTS_NAMESPACE, ALERTS_TABLE, alerts_ident};

use crate::Inner;
use crate::query::statement;
use crate::web::{ApiError, ok, read_json};

/// Transitions shown (the newest).
pub(crate) const RECENT: usize = 100;
/// Longest alert id accepted (they are UUIDs).
const MAX_ALERT_ID: usize = 128;

/// Orders an alert's transitions at one instant: RESOLVED after
/// ACKNOWLEDGED after ACTIVE (as `ACKNOWLEDGE ALERT` and the evaluator do).
const STATE_ORDER: &str = "CASE state WHEN 'RESOLVED' THEN 2 WHEN 'ACKNOWLEDGED' THEN 1 ELSE 0 END";

fn firing_sql() -> String {
    format!(
        "SELECT alert_id, rule, series, severity, state, value, message, actor, \
           CAST(since AS BIGINT) / 1000 AS since_ms, CAST(at AS BIGINT) / 1000 AS changed_ms \
         FROM ( \
           SELECT *, \
             row_number() OVER (PARTITION BY alert_id ORDER BY at DESC, {STATE_ORDER} DESC) AS n, \
             min(CASE WHEN state = 'ACTIVE' THEN at END) OVER (PARTITION BY alert_id) AS since \
           FROM {ALERTS_NAMESPACE}.{ALERTS_TABLE}) \
         WHERE n = 1 AND state <> 'RESOLVED' \
         ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, \
           since DESC, rule, series"
    )
}

fn recent_sql() -> String {
    format!(
        "SELECT CAST(at AS BIGINT) / 1000 AS at_ms, alert_id, state, rule, series, severity, \
           value, message, actor \
         FROM {ALERTS_NAMESPACE}.{ALERTS_TABLE} \
         ORDER BY at DESC, {STATE_ORDER} DESC, seq DESC NULLS LAST LIMIT {RECENT}"
    )
}

const RULES_SQL: &str =
    "SELECT name, table_name, severity, declared, definition FROM alert_rules() ORDER BY name";

/// The last answer and the metadata location of `gold.alerts` it was read at.
#[derive(Default)]
pub(crate) struct Cache(Mutex<Option<(String, serde_json::Value)>>);

impl Cache {
    fn lock(&self) -> MutexGuard<'_, Option<(String, serde_json::Value)>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Firing alerts, recent transitions and rules, as of now.
async fn state(inner: &Inner, principal: &Principal) -> Result<serde_json::Value, ApiError> {
    let location = inner
        .engine
        .lakehouse()
        .metadata_location(&alerts_ident())
        .await
        .map_err(|e| ApiError::internal(format!("looking up gold.alerts: {e}")))?;
    let Some(location) = location else {
        // Created with the built-in tables; absent only in an old catalog.
        return Ok(serde_json::json!({
            "firing": [], "firing_truncated": false, "recent": [], "rules": [],
            "recent_limit": RECENT, "table": false,
        }));
    };
    if let Some((at, value)) = &*inner.alerts.lock()
        && *at == location
    {
        return Ok(value.clone());
    }
    let (firing_sql, recent_sql) = (firing_sql(), recent_sql());
    let run = |sql| statement(&inner.engine, principal, sql, inner.query_timeout);
    let (firing, recent, rules) =
        futures::try_join!(run(&firing_sql), run(&recent_sql), run(RULES_SQL))?;
    let value = serde_json::json!({
        "firing_truncated": firing.truncated,
        "firing": firing.records(),
        "recent": recent.records(),
        "rules": rules.records(),
        "recent_limit": RECENT,
        "table": true,
    });
    *inner.alerts.lock() = Some((location, value.clone()));
    Ok(value)
}

/// `GET /api/alerts`.
pub(crate) async fn list(inner: &Inner, principal: &Principal) -> Result<HttpResponse, ApiError> {
    ok(state(inner, principal).await?)
}

/// `GET /api/alerts/summary`: the navigation's badge.
pub(crate) async fn summary(
    inner: &Inner,
    principal: &Principal,
) -> Result<HttpResponse, ApiError> {
    let value = state(inner, principal).await?;
    let firing = value["firing"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let active = firing.iter().filter(|a| a["state"] == "ACTIVE").count();
    ok(serde_json::json!({
        "firing": firing.len(),
        "active": active,
        "acknowledged": firing.len() - active,
    }))
}

#[derive(Deserialize)]
struct AcknowledgeRequest {
    alert_id: String,
}

/// `ACKNOWLEDGE ALERT 'id'` with `id` quoted as a SQL string literal.
fn acknowledge_sql(alert_id: &str) -> Result<String, ApiError> {
    if alert_id.is_empty() || alert_id.len() > MAX_ALERT_ID {
        return Err(ApiError::bad_request(format!(
            "give the alert id (at most {MAX_ALERT_ID} bytes)"
        )));
    }
    Ok(format!(
        "ACKNOWLEDGE ALERT '{}'",
        alert_id.replace('\'', "''")
    ))
}

/// `POST /api/alerts/acknowledge {alert_id}`: the statement decides the
/// role needed (Write), as an `ACKNOWLEDGE ALERT` over Flight SQL would.
pub(crate) async fn acknowledge(
    inner: &Inner,
    principal: Principal,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: AcknowledgeRequest = read_json(req).await?;
    let sql = acknowledge_sql(&body.alert_id)?;
    let outcome = statement(&inner.engine, &principal, &sql, inner.query_timeout).await?;
    let count = outcome
        .rows
        .first()
        .and_then(|row| row.first())
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    tracing::info!(user = %principal.name, alert_id = %body.alert_id, "console: alert acknowledged");
    ok(serde_json::json!({ "acknowledged": count }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Array, TimestampMicrosecondArray};
    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// A `gold.alerts` row: (at in seconds, alert id, state, seq).
    type Row<'a> = (i64, &'a str, &'a str, Option<i64>);

    async fn alerts_table(rows: &[Row<'_>]) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("alert_id", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("rule", DataType::Utf8, false),
            Field::new("series", DataType::Utf8, false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("message", DataType::Utf8, true),
            Field::new("actor", DataType::Utf8, true),
            Field::new("seq", DataType::Int64, true),
        ]));
        let strings = |f: &dyn Fn(&Row<'_>) -> String| {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as Arc<dyn Array>
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.0 * 1_000_000),
                    )
                    .with_timezone("+00:00"),
                ),
                strings(&|r| r.1.to_string()),
                strings(&|r| r.2.to_string()),
                strings(&|_| "warm".to_string()),
                strings(&|r| format!("device_id={}", r.1)),
                strings(&|r| if r.1 == "c" { "critical" } else { "warning" }.to_string()),
                Arc::new(Float64Array::from_iter(
                    rows.iter().map(|r| Some(r.0 as f64)),
                )),
                Arc::new(StringArray::from_iter(rows.iter().map(|_| None::<&str>))),
                Arc::new(StringArray::from_iter(
                    rows.iter()
                        .map(|r| Some(if r.3.is_some() { "evaluator" } else { "boss" })),
                )),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.sql("CREATE SCHEMA gold").await.unwrap();
        ctx.register_table(
            "gold.alerts",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Vec<serde_json::Value> {
        let frame = ctx.sql(sql).await.unwrap();
        let schema = frame.schema().as_arrow().clone();
        let batches = frame.collect().await.unwrap();
        let mut rows = Vec::new();
        for batch in &batches {
            crate::query::append(batch, &mut rows).unwrap();
        }
        crate::query::Outcome {
            columns: schema
                .fields()
                .iter()
                .map(|f| serde_json::json!({"name": f.name()}))
                .collect(),
            rows,
            truncated: false,
        }
        .records()
    }

    #[tokio::test]
    async fn firing_is_the_latest_transition_active_or_acknowledged() {
        let ctx = alerts_table(&[
            // a: active, then acknowledged at the same instant (ties go to
            // the later state).
            (100, "a", "ACTIVE", Some(1)),
            (100, "a", "ACKNOWLEDGED", None),
            // b: active, acknowledged, resolved: not firing.
            (110, "b", "ACTIVE", Some(2)),
            (120, "b", "ACKNOWLEDGED", None),
            (130, "b", "RESOLVED", Some(3)),
            // c: critical and active, shown first.
            (90, "c", "ACTIVE", Some(4)),
            // d: resolved in the same instant it fired.
            (140, "d", "ACTIVE", Some(5)),
            (140, "d", "RESOLVED", Some(6)),
            // e: active.
            (150, "e", "ACTIVE", Some(7)),
        ])
        .await;
        let firing = run(&ctx, &firing_sql()).await;
        let got: Vec<(&str, &str, i64)> = firing
            .iter()
            .map(|a| {
                (
                    a["alert_id"].as_str().unwrap(),
                    a["state"].as_str().unwrap(),
                    a["since_ms"].as_f64().unwrap() as i64,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("c", "ACTIVE", 90_000),
                ("e", "ACTIVE", 150_000),
                ("a", "ACKNOWLEDGED", 100_000),
            ]
        );
        assert_eq!(firing[2]["actor"], "boss");
        assert_eq!(firing[2]["changed_ms"].as_f64(), Some(100_000.0));

        let recent = run(&ctx, &recent_sql()).await;
        let order: Vec<(&str, &str)> = recent
            .iter()
            .take(4)
            .map(|t| {
                (
                    t["alert_id"].as_str().unwrap(),
                    t["state"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            order,
            vec![
                ("e", "ACTIVE"),
                ("d", "RESOLVED"),
                ("d", "ACTIVE"),
                ("b", "RESOLVED")
            ]
        );
        assert_eq!(recent.len(), 9);
        assert_eq!(recent[0]["at_ms"].as_f64(), Some(150_000.0));
    }

    #[test]
    fn alert_ids_are_quoted() {
        assert_eq!(
            acknowledge_sql("a1").unwrap(),
            "ACKNOWLEDGE ALERT 'a1'".to_string()
        );
        assert_eq!(
            acknowledge_sql("x'; DROP TABLE t; --").unwrap(),
            "ACKNOWLEDGE ALERT 'x''; DROP TABLE t; --'".to_string()
        );
        assert!(acknowledge_sql("").is_err());
        assert!(acknowledge_sql(&"a".repeat(200)).is_err());
    }
}
