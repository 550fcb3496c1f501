//! Names of the metrics this crate emits through the `metrics` facade: the file
//! cache and the last-value index. Their kinds, labels and help texts are in
//! `weir-observe` (`describe.rs`), whose tests check that every name emitted
//! anywhere is one of these constants and is described exactly once.

pub const FILE_CACHE_REQUESTS_TOTAL: &str = "weir_file_cache_requests_total";
pub const FILE_CACHE_BYTES: &str = "weir_file_cache_bytes";
pub const FILE_CACHE_EVICTED_BYTES_TOTAL: &str = "weir_file_cache_evicted_bytes_total";
pub const LAST_VALUE_BYTES: &str = "weir_last_value_bytes";
pub const LAST_VALUE_SERIES: &str = "weir_last_value_series";
pub const LAST_VALUE_REFRESHES_TOTAL: &str = "weir_last_value_refreshes_total";
