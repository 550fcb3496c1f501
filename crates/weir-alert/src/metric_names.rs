//! Names of the metrics this crate emits through the `metrics` facade: the
//! alert evaluator and its notifications. Their kinds, labels and help texts
//! are in `weir-observe` (`describe.rs`), whose tests check that every name
//! emitted anywhere is one of these constants and is described exactly once.

pub const ALERT_RULES: &str = "weir_alert_rules";
pub const ALERT_FIRING: &str = "weir_alert_firing";
pub const ALERT_ROWS_EVALUATED_TOTAL: &str = "weir_alert_rows_evaluated_total";
pub const ALERT_TRANSITIONS_TOTAL: &str = "weir_alert_transitions_total";
pub const ALERT_NOTIFICATIONS_TOTAL: &str = "weir_alert_notifications_total";
pub const ALERT_EVALUATION_ERRORS_TOTAL: &str = "weir_alert_evaluation_errors_total";
pub const ALERT_COMMIT_FAILURES_TOTAL: &str = "weir_alert_commit_failures_total";
pub const ALERT_FEED_LAGGED_TOTAL: &str = "weir_alert_feed_lagged_total";
pub const ALERT_HANDOVERS_TOTAL: &str = "weir_alert_handovers_total";
