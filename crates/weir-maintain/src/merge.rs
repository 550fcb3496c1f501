//! Compaction in bounded memory: a group's files, each already in the
//! table's sort order (Weir's writers sort every file they write), are read
//! as one stream per file and merged — DataFusion's streaming k-way merge,
//! the one `SortPreservingMergeExec` runs — into files written batch by
//! batch ([`DataFileSink`]). Memory holds one batch per input file and the
//! output files' open row groups, whatever the group's size.
//!
//! Before this, a group (up to the target file size of *compressed* input,
//! 128 MiB for `silver.points`: ~43 M rows) was read whole, sorted and
//! concatenated in memory: 3 copies of several GiB. The 1-hour soak at
//! 200,000 points/s measured Weir's RSS swinging between 1 and 13.6 GiB on
//! each scheduled compaction (`benches/soak.py`).
//!
//! An input found out of order while merging (files written by another
//! engine without the sort order) stops the merge: the caller rewrites that
//! group the old way (sorted in memory), and the files written so far are
//! deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::array::RecordBatch;
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, UnboundedMemoryPool};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet};
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use iceberg::Runtime;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use weir_catalog::DataFileSink;

use crate::{MaintainError, Result};

/// Rows per batch read from each input and written out.
const BATCH_ROWS: usize = 8192;

/// What a merge produced.
pub(crate) enum Merged {
    /// The files written (not committed) and the rows in them.
    Written { files: Vec<DataFile>, rows: u64 },
    /// An input was not in the sort order: nothing kept, rewrite the group
    /// another way.
    Unsorted,
}

/// Merges `tasks` (one per file, each in `keys` order) into files of about
/// `rows_per_file` rows named `prefix…`.
pub(crate) async fn merge_sorted(
    table: &Table,
    tasks: Vec<FileScanTask>,
    keys: &[(String, SortOptions)],
    rows_per_file: usize,
    prefix: &str,
) -> Result<Merged> {
    let name = table.identifier().to_string();
    let rewrite = |message: String| MaintainError::Rewrite {
        table: name.clone(),
        message,
    };
    let sink =
        DataFileSink::new(table, Some(usize::MAX), prefix).map_err(|e| rewrite(e.to_string()))?;
    let schema = sink.arrow_schema().clone();
    let ordering = LexOrdering::new(keys.iter().filter_map(|(column, options)| {
        let index = schema.index_of(column).ok()?;
        Some(PhysicalSortExpr::new(
            Arc::new(Column::new(column, index)),
            *options,
        ))
    }))
    .ok_or_else(|| rewrite("no sort order to merge by".into()))?;
    let unsorted = Arc::new(AtomicBool::new(false));
    let runtime = Runtime::try_current().map_err(|e| rewrite(e.to_string()))?;
    let streams = tasks
        .into_iter()
        .map(|task| {
            let reader = ArrowReaderBuilder::new(table.file_io().clone(), runtime.clone())
                .with_batch_size(BATCH_ROWS)
                .with_data_file_concurrency_limit(1)
                .build();
            let one = futures::stream::iter([Ok(task)]);
            let batches = reader
                .read(Box::pin(one))
                .map_err(|e| rewrite(e.to_string()))?
                .stream();
            Ok(checked(
                batches,
                schema.clone(),
                keys.to_vec(),
                unsorted.clone(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
    let metrics = ExecutionPlanMetricsSet::new();
    let mut merged = StreamingMergeBuilder::new()
        .with_streams(streams)
        .with_schema(schema.clone())
        .with_expressions(&ordering)
        .with_metrics(BaselineMetrics::new(&metrics, 0))
        .with_batch_size(BATCH_ROWS)
        .with_reservation(MemoryConsumer::new("weir compaction merge").register(&pool))
        .build()
        .map_err(|e| rewrite(e.to_string()))?;

    let mut written = Vec::new();
    let mut sink = Some(sink);
    let mut rows_in_file = 0usize;
    let mut rows = 0u64;
    let outcome: Result<()> = async {
        while let Some(batch) = merged.next().await {
            let batch = batch.map_err(|e| rewrite(e.to_string()))?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                if rows_in_file >= rows_per_file {
                    if let Some(full) = sink.take() {
                        written.extend(full.close().await.map_err(|e| rewrite(e.to_string()))?);
                    }
                    rows_in_file = 0;
                }
                let open = match &mut sink {
                    Some(s) => s,
                    None => sink.insert(
                        DataFileSink::new(table, Some(usize::MAX), prefix)
                            .map_err(|e| rewrite(e.to_string()))?,
                    ),
                };
                let len = (rows_per_file - rows_in_file).min(batch.num_rows() - offset);
                open.write(&batch.slice(offset, len))
                    .await
                    .map_err(|e| rewrite(e.to_string()))?;
                rows_in_file += len;
                rows += len as u64;
                offset += len;
            }
        }
        if let Some(last) = sink.take() {
            written.extend(last.close().await.map_err(|e| rewrite(e.to_string()))?);
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(Merged::Written {
            files: written,
            rows,
        }),
        Err(e) => {
            // Nothing of this attempt is committed: remove what it wrote
            // (orphan cleanup would, later).
            for file in &written {
                let _ = table.file_io().delete(file.file_path()).await;
            }
            if unsorted.load(Ordering::Relaxed) {
                Ok(Merged::Unsorted)
            } else {
                Err(e)
            }
        }
    }
}

/// One input file's batches in the table's Arrow schema, checked to be in
/// `keys` order (within each batch and across batches); the first row out
/// of order (or a batch not of the table's types) ends the stream with an
/// error and sets `unsorted`: the group is rewritten the other way.
fn checked(
    batches: iceberg::scan::ArrowRecordBatchStream,
    schema: SchemaRef,
    keys: Vec<(String, SortOptions)>,
    unsorted: Arc<AtomicBool>,
) -> SendableRecordBatchStream {
    let out_schema = schema.clone();
    let mut last: Option<RecordBatch> = None;
    let stream = batches.map(move |batch| {
        let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
        let batch = match RecordBatch::try_new(schema.clone(), batch.columns().to_vec()) {
            Ok(b) => b,
            Err(e) => {
                unsorted.store(true, Ordering::Relaxed);
                return Err(e.into());
            }
        };
        let window: Vec<RecordBatch> = last.iter().cloned().chain([batch.clone()]).collect();
        if !weir_catalog::sort::in_order(&window, &keys)? {
            unsorted.store(true, Ordering::Relaxed);
            return Err(DataFusionError::Execution(
                "compaction input is not in the table's sort order".into(),
            ));
        }
        if batch.num_rows() > 0 {
            last = Some(batch.slice(batch.num_rows() - 1, 1));
        }
        Ok(batch)
    });
    Box::pin(RecordBatchStreamAdapter::new(out_schema, stream))
}
