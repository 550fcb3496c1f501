//! Names of the metrics this crate emits through the `metrics` facade: commits,
//! their latency, retries and rows; the tables' sizes. Their kinds, labels and
//! help texts are in `weir-observe` (`describe.rs`), whose tests check that
//! every name emitted anywhere is one of these constants and is described
//! exactly once.

pub const COMMITS_TOTAL: &str = "weir_commits_total";
pub const COMMIT_DURATION_SECONDS: &str = "weir_commit_duration_seconds";
pub const COMMIT_RETRIES_TOTAL: &str = "weir_commit_retries_total";
pub const COMMIT_ROWS_TOTAL: &str = "weir_commit_rows_total";
pub const TABLE_DATA_FILES: &str = "weir_table_data_files";
pub const TABLE_DATA_BYTES: &str = "weir_table_data_bytes";
pub const TABLE_ROWS: &str = "weir_table_rows";
pub const TABLE_SNAPSHOTS: &str = "weir_table_snapshots";
