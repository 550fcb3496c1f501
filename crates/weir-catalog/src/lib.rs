//! Weir's catalog layer: the Iceberg SQL catalog (SQLite by default), the table
//! definitions in `catalog/`, and the commit path used by every writer.
//!
//! Only this crate reads `catalog/`.

mod builtin;
mod error;
mod lakehouse;
pub mod spec;
mod writer;

pub use builtin::builtin_specs;
pub use error::{CatalogError, Result};
pub use lakehouse::{CATALOG_NAME, DEFAULT_NAMESPACE, EnsureReport, Lakehouse, LakehouseOptions};
pub use writer::{AppendOptions, AppendOutcome, append_batches};

pub use iceberg;
