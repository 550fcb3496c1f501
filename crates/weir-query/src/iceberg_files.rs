//! The Iceberg reader over *some* files of a snapshot.
//!
//! iceberg-datafusion's `IcebergStaticTableProvider` reads every file of a
//! snapshot that survives the filters; it has no way to name the files.
//! Statements that work file by file (DELETE/UPDATE/MERGE rewrite one file
//! at a time, a materialized view refresh reads the files of the changed
//! days) must read exactly those files — also when they carry delete files
//! and so need the Iceberg reader (which applies them) rather than the
//! Parquet scan. This plans the snapshot's files as iceberg-rust does, keeps
//! the named ones, and reads them with iceberg-rust's `ArrowReader`: the
//! same reader and task planning the provider uses, only the file list is
//! Weir's.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result as DFResult;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::{StreamExt, TryStreamExt};
use iceberg::expr::Predicate;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;

use crate::error::to_df;

/// Reads `files` of `snapshot_id` (columns `columns`, in the snapshot's
/// names), delete files applied; `schema` is what the provider's own scan
/// of the same columns declares.
pub(crate) fn scan(
    table: Table,
    snapshot_id: i64,
    schema: SchemaRef,
    columns: Vec<String>,
    predicate: Option<Predicate>,
    files: Arc<HashSet<String>>,
    limit: Option<usize>,
) -> DFResult<Arc<dyn ExecutionPlan>> {
    let part = Files {
        table,
        snapshot_id,
        schema: schema.clone(),
        columns,
        predicate,
        files,
    };
    Ok(Arc::new(StreamingTableExec::try_new(
        schema,
        vec![Arc::new(part)],
        None,
        Vec::new(),
        false,
        limit,
    )?))
}

#[derive(Debug)]
struct Files {
    table: Table,
    snapshot_id: i64,
    schema: SchemaRef,
    columns: Vec<String>,
    predicate: Option<Predicate>,
    files: Arc<HashSet<String>>,
}

impl PartitionStream for Files {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let table = self.table.clone();
        let snapshot_id = self.snapshot_id;
        let columns = self.columns.clone();
        let predicate = self.predicate.clone();
        let files = self.files.clone();
        let batches = async move {
            let mut builder = table.scan().snapshot_id(snapshot_id).select(columns);
            if let Some(p) = predicate {
                builder = builder.with_filter(p);
            }
            let tasks: Vec<FileScanTask> = builder
                .build()
                .map_err(to_df)?
                .plan_files()
                .await
                .map_err(to_df)?
                .try_filter(|t| futures::future::ready(files.contains(&t.data_file_path)))
                .try_collect()
                .await
                .map_err(to_df)?;
            // One file at a time, in order: a statement rewriting a file keeps
            // its row order.
            let stream = table
                .reader_builder()
                .with_data_file_concurrency_limit(1)
                .build()
                .read(futures::stream::iter(tasks.into_iter().map(Ok)).boxed())
                .map_err(to_df)?
                .stream()
                .map_err(to_df);
            Ok::<_, datafusion::error::DataFusionError>(stream)
        };
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(batches).try_flatten(),
        ))
    }
}
