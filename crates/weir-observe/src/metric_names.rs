//! Names of the metrics of the process itself, emitted by the binary. The other
//! crates keep the names they emit in their own `metric_names` module;
//! `describe.rs` describes them all, and its tests check that every name
//! emitted anywhere is one of those constants and described exactly once.

pub const BUILD_INFO: &str = "weir_build_info";
