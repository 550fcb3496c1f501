//! Names of the metrics this crate emits through the `metrics` facade:
//! maintenance job runs. Their kinds, labels and help texts are in `weir-
//! observe` (`describe.rs`), whose tests check that every name emitted anywhere
//! is one of these constants and is described exactly once.

pub const MAINTENANCE_RUNS_TOTAL: &str = "weir_maintenance_runs_total";
pub const MAINTENANCE_DURATION_SECONDS: &str = "weir_maintenance_duration_seconds";
pub const MAINTENANCE_ERRORS_TOTAL: &str = "weir_maintenance_errors_total";
