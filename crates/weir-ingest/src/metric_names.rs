//! Names of the metrics this crate emits through the `metrics` facade: the
//! sources and the streaming writer. Their kinds, labels and help texts are in
//! `weir-observe` (`describe.rs`), whose tests check that every name emitted
//! anywhere is one of these constants and is described exactly once.

pub const INGEST_MESSAGES_TOTAL: &str = "weir_ingest_messages_total";
pub const INGEST_POINTS_TOTAL: &str = "weir_ingest_points_total";
pub const INGEST_BYTES_TOTAL: &str = "weir_ingest_bytes_total";
pub const INGEST_DEAD_LETTERS_TOTAL: &str = "weir_ingest_dead_letters_total";
pub const INGEST_DUPLICATES_SKIPPED_TOTAL: &str = "weir_ingest_duplicates_skipped_total";
pub const INGEST_COMMITTED_OFFSET: &str = "weir_ingest_committed_offset";
pub const INGEST_LAST_COMMIT_TIMESTAMP_SECONDS: &str = "weir_ingest_last_commit_timestamp_seconds";
pub const INGEST_LAG_SECONDS: &str = "weir_ingest_lag_seconds";
pub const INGEST_LAG_MESSAGES: &str = "weir_ingest_lag_messages";
pub const INGEST_SOURCE_ERRORS_TOTAL: &str = "weir_ingest_source_errors_total";
pub const INGEST_KAFKA_BROKERS_UP: &str = "weir_ingest_kafka_brokers_up";
pub const INGEST_FLUSHES_TOTAL: &str = "weir_ingest_flushes_total";
pub const INGEST_FLUSH_DURATION_SECONDS: &str = "weir_ingest_flush_duration_seconds";
