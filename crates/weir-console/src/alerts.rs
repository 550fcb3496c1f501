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
pub const RECENT: usize = 100;
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
pub struct Cache(Mutex<Option<(String, serde_json::Value)>>);

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
pub async fn list(inner: &Inner, principal: &Principal) -> Result<HttpResponse, ApiError> {
    ok(state(inner, principal).await?)
}

/// `GET /api/alerts/summary`: the navigation's badge.
pub async fn summary(inner: &Inner, principal: &Principal) -> Result<HttpResponse, ApiError> {
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
pub async fn acknowledge(
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
    use super::*;

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
