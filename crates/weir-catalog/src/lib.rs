//! Weir's catalog layer: the Iceberg SQL catalog (SQLite by default), the table
//! definitions in `catalog/`, storage, the commit path used by every writer,
//! and the leases that keep jobs on one table apart.
//!
//! Only this crate reads `catalog/`.

mod builtin;
mod error;
mod fence;
mod lakehouse;
pub mod leases;
pub mod location;
pub mod manifests;
pub mod metric_names;
mod obs;
pub mod parquet_props;
mod partition_split;
pub mod position_deletes;
pub mod replace;
pub mod retry;
pub mod sort;
pub mod spec;
pub mod storage;
mod swap;
pub mod uuid_columns;
mod views;
pub mod watermark;
mod writer;

pub use builtin::{MV_DEFINITION_PROPERTY, MV_REFRESH_SUMMARY, builtin_specs, mv_last_refresh};
pub use error::{CatalogError, Result};
pub use fence::FenceCheck;
pub use lakehouse::{
    CATALOG_NAME, DEFAULT_NAMESPACE, EnsureReport, Lakehouse, LakehouseOptions, TableListing,
};
pub use leases::{LeaseKeeper, Leases};
pub use location::{MAX_NAME_BYTES, TableLocation, validate_name};
pub use manifests::{
    MergePolicy, merge_manifests_if_needed, purge_removed_entries, rewrite_manifests,
};
pub use obs::{record_table, refresh_table_metrics};
pub use position_deletes::write_position_deletes;
pub use replace::{
    ReplaceOutcome, commit_overwrite, commit_replace, commit_row_changes, rewrote_data_files,
};
pub use storage::{ObjectStores, S3Options, StoreLocation};
pub use swap::commit_metadata;
pub use views::{ViewDefinition, ViewListing};
pub use watermark::Watermarks;
pub use writer::{
    AppendOptions, AppendOutcome, COMMIT_ID_KEY, DataFileSink, append_batches, append_data_files,
    find_commit, write_data_files, write_data_files_named, write_data_files_parallel,
};

pub use iceberg;
