//! Names of the metrics this crate emits through the `metrics` facade: the hot
//! tier's size. Their kinds, labels and help texts are in `weir-observe`
//! (`describe.rs`), whose tests check that every name emitted anywhere is one
//! of these constants and is described exactly once.

pub const HOT_ROWS: &str = "weir_hot_rows";
pub const HOT_BYTES: &str = "weir_hot_bytes";
