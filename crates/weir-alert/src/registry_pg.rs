//! The production alert registry: the gateway schema's PostgreSQL `alert_rules`
//! and `alert_history` (docs/seeds/README.md section 2.3,
//! `sql/postgres/alerts.sql`), `--alert-rules postgres://…`.
//!
//! Rules: each enabled `alert_rules` row becomes the rule
//!
//! ```sql
//! CREATE ALERT <name> ON silver.points
//!   WHERE device_id = '<devices.name>' AND metric = '<tags.name>'   -- when set
//!   BY device_id, metric
//!   WHEN (<condition_expression>) <op> <threshold_value>           -- or [NOT] BETWEEN low AND high
//!   FOR <eval_duration> SEVERITY <level> NOTIFY '<this database>'
//! ```
//!
//! (`name` lower-cased with other characters than letters, digits, `_` and
//! `-` made `_`; FATAL is `critical`; `eval_interval` and `cooldown_duration`
//! do not apply: rules run on every row, and hysteresis is `CLEAR WHEN`.)
//! The rows are read again every [`RELOAD`]; a changed row changes the rule.
//!
//! History: the `postgres://` notification target mirrors transitions into
//! `alert_history` with Weir's alert id as its `id`: ACTIVE inserts (`ON
//! CONFLICT DO NOTHING`); ACKNOWLEDGED (`ACKNOWLEDGE ALERT` over Flight SQL
//! or the console) sets the status, `acknowledged_at` and `acknowledged_by`
//! (the user) of a row still ACTIVE; RESOLVED sets `resolved_at`, `duration`
//! and the status whatever it was (`acknowledged_at` stays). All are
//! idempotent, so delivering at least once writes each exactly once. An
//! acknowledgement reaches the registry when the process that ran
//! `ACKNOWLEDGE ALERT` evaluates the rule (see [`crate::engine`]).

use std::time::Duration;

use tokio_postgres::{Client, NoTls, Row};
use weir_query::alerts::AlertRule;

use crate::AlertError;

/// How often the rules are read again.
pub const RELOAD: Duration = Duration::from_secs(30);

/// `alert_rules.name` as a Weir alert name.
pub fn rule_name(name: &str) -> String {
    name.trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) async fn connect(url: &str) -> Result<Client, AlertError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| AlertError::RegistryConnect {
            url: redact(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "alert registry connection ended");
        }
    });
    Ok(client)
}

/// `postgres://user:secret@host/db` without the secret, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// The enabled rules of `alert_rules`.
pub async fn load(url: &str) -> Result<Vec<AlertRule>, AlertError> {
    let failed = |message: String| AlertError::Declared {
        file: redact(url),
        message,
    };
    let client = connect(url).await.map_err(|e| failed(e.to_string()))?;
    let rows = client
        .query(
            "SELECT r.name, r.condition_expression, r.op::text, r.threshold_value, \
                    r.threshold_high, r.threshold_low, r.level::text, \
                    EXTRACT(EPOCH FROM r.eval_duration)::float8, d.name, t.name \
             FROM alert_rules r LEFT JOIN devices d ON d.id = r.device_id \
                  LEFT JOIN tags t ON t.id = r.tag_id \
             WHERE r.enabled ORDER BY r.name",
            &[],
        )
        .await
        .map_err(|e| failed(format!("reading alert_rules: {e}")))?;
    let dialect = datafusion::sql::sqlparser::dialect::GenericDialect {};
    let mut rules = Vec::new();
    for row in rows {
        let row = RuleRow::from_row(&row);
        let Some(when) = row.when() else {
            tracing::warn!(rule = %row.name, op = row.op, "alert_rules row without the thresholds its op needs; skipped");
            continue;
        };
        let sql = row.create_alert(&when, url);
        match weir_query::alerts::rule::parse_create(&dialect, &sql) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                tracing::warn!(rule = %row.name, error = %e, "alert_rules row is not a rule Weir can run; skipped")
            }
        }
    }
    Ok(rules)
}

/// One row of the [`load`] query: an `alert_rules` row with the names of its
/// device and tag.
struct RuleRow {
    name: String,
    /// `condition_expression`.
    expr: String,
    op: String,
    /// `threshold_value`.
    value: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    level: String,
    /// `eval_duration` in seconds.
    hold: Option<f64>,
    device: Option<String>,
    tag: Option<String>,
}

impl RuleRow {
    /// Reads the columns of one row of the [`load`] query.
    fn from_row(row: &Row) -> Self {
        RuleRow {
            name: row.get(0),
            expr: row.get(1),
            op: row.get(2),
            value: row.get(3),
            high: row.get(4),
            low: row.get(5),
            level: row.get(6),
            hold: row.get(7),
            device: row.get(8),
            tag: row.get(9),
        }
    }

    /// The rule's `WHEN` condition; `None` when the row lacks the thresholds
    /// its op needs (or the op is unknown).
    fn when(&self) -> Option<String> {
        let (expr, op) = (&self.expr, self.op.as_str());
        let cmp = |o: &str| self.value.map(|v| format!("({expr}) {o} {v}"));
        match op {
            "GT" => cmp(">"),
            "GTE" => cmp(">="),
            "LT" => cmp("<"),
            "LTE" => cmp("<="),
            "EQ" => cmp("="),
            "NE" => cmp("<>"),
            "BETWEEN" | "NOT_BETWEEN" => match (self.low, self.high) {
                (Some(l), Some(h)) => Some(format!(
                    "({expr}) {}BETWEEN {l} AND {h}",
                    if op == "NOT_BETWEEN" { "NOT " } else { "" }
                )),
                _ => None,
            },
            _ => None,
        }
    }

    /// The `CREATE ALERT` statement of the rule with condition `when`,
    /// notifying the registry at `url`.
    fn create_alert(&self, when: &str, url: &str) -> String {
        let mut filters = Vec::new();
        if let Some(d) = &self.device {
            filters.push(format!("device_id = {}", quote(d)));
        }
        if let Some(t) = &self.tag {
            filters.push(format!("metric = {}", quote(t)));
        }
        let mut sql = format!("CREATE ALERT {} ON silver.points", rule_name(&self.name));
        if !filters.is_empty() {
            sql += &format!(" WHERE {}", filters.join(" AND "));
        }
        sql += &format!(" BY device_id, metric WHEN {when}");
        if let Some(h) = self.hold.filter(|h| *h > 0.0) {
            sql += &format!(
                " FOR INTERVAL '{} milliseconds'",
                (h * 1000.0).round() as u64
            );
        }
        let severity = match self.level.as_str() {
            "INFO" => "info",
            "WARNING" => "warning",
            _ => "critical",
        };
        sql += &format!(" SEVERITY '{severity}' NOTIFY {}", quote(url));
        sql += &format!(" MESSAGE {}", quote(&self.name));
        sql
    }
}

/// Writes one transition into `alert_history` (idempotent).
pub(crate) async fn record(client: &Client, body: &serde_json::Value) -> Result<(), AlertError> {
    let text = |k: &str| {
        body.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (id, state, rule, at) = (text("alert_id"), text("state"), text("rule"), text("at"));
    let value = body.get("value").and_then(|v| v.as_f64());
    match state.as_str() {
        "ACTIVE" => {
            // The rule's row, found by its Weir name.
            let rules = client
                .query(
                    "SELECT id::text, name, device_id::text, tag_id::text, threshold_value, level::text \
                     FROM alert_rules",
                    &[],
                )
                .await?;
            let Some(r) = rules
                .iter()
                .find(|r| rule_name(r.get::<_, &str>(1)) == rule)
            else {
                return Err(AlertError::NoRegistryRule(rule));
            };
            let (rule_id, device, tag, threshold, level): (
                String,
                Option<String>,
                Option<String>,
                Option<f64>,
                String,
            ) = (r.get(0), r.get(2), r.get(3), r.get(4), r.get(5));
            client
                .execute(
                    "INSERT INTO alert_history (id, rule_id, device_id, tag_id, fired_at, \
                       triggered_value, threshold_value, level, status, message, details) \
                     VALUES ($1::text::uuid, $2::text::uuid, $3::text::uuid, $4::text::uuid, \
                       $5::text::timestamptz, $6, $7, $8::text::alert_level, 'ACTIVE', $9, \
                       jsonb_build_object('series', $10::text)) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &id,
                        &rule_id,
                        &device,
                        &tag,
                        &at,
                        &value,
                        &threshold,
                        &level,
                        &text("message"),
                        &text("series"),
                    ],
                )
                .await?;
        }
        "ACKNOWLEDGED" => {
            // Only an ACTIVE row: a late or repeated delivery leaves a
            // RESOLVED (or already acknowledged) row as it is.
            client
                .execute(
                    "UPDATE alert_history SET status = 'ACKNOWLEDGED', \
                       acknowledged_at = greatest(fired_at, $2::text::timestamptz), \
                       acknowledged_by = left($3::text, 255) \
                     WHERE id = $1::text::uuid AND status = 'ACTIVE'",
                    &[&id, &at, &text("actor")],
                )
                .await?;
        }
        "RESOLVED" => {
            client
                .execute(
                    "UPDATE alert_history SET status = 'RESOLVED', \
                       resolved_at = greatest(fired_at, $2::text::timestamptz), \
                       duration = greatest(fired_at, $2::text::timestamptz) - fired_at \
                     WHERE id = $1::text::uuid AND status <> 'RESOLVED'",
                    &[&id, &at],
                )
                .await?;
        }
        _ => {}
    }
    Ok(())
}
