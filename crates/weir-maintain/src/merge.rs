//! Compaction in bounded memory. A group of files (up to the target file
//! size of *compressed* input, 128 MiB for `silver.points`: ~43 M rows,
//! 124 M rows of unsorted fresh files at 200,000 points/s) is rewritten as
//! streams into files written batch by batch ([`DataFileSink`]):
//!
//! - files already in the table's sort order (what compaction wrote
//!   before, Bronze in arrival order) are merged: DataFusion's streaming
//!   k-way merge, the one `SortPreservingMergeExec` runs; memory holds one
//!   batch per input file;
//! - files out of order (ingest writes rows in arrival order; other
//!   engines' files) are sorted by DataFusion's `SortExec` under a memory
//!   limit: sorted runs spill to temporary Arrow files (in the OS temporary
//!   directory, `TMPDIR`) and are merged back — DataFusion's external sort,
//!   not one of our own;
//! - tables without a sort order are copied through.
//!
//! Before this, a group was read whole, sorted and concatenated in memory:
//! 3 copies of several GiB. The 1-hour soak at 200,000 points/s
//! (`benches/soak.py`) measured Weir's RSS swinging between 1 and 13.7 GiB
//! on each scheduled compaction of `silver.points`.
//!
//! A merge that finds an input out of order stops; the caller sorts that
//! group instead. Files written by a failed attempt are deleted.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::compute::SortOptions;
use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{
    FairSpillPool, MemoryConsumer, MemoryPool, UnboundedMemoryPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::streaming_merge::StreamingMergeBuilder;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionConfig;
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
    /// The files written (not committed), the rows in them and the bytes
    /// the sort spilled to disk.
    Written {
        files: Vec<DataFile>,
        rows: u64,
        spilled: u64,
    },
    /// An input was not in the sort order: nothing kept, rewrite the group
    /// another way.
    Unsorted,
}

/// How the rows of a group reach the files written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rewrite {
    /// Streams of sorted files merged.
    Merged,
    /// Sorted under a memory limit, spilling to disk when over it.
    Sorted {
        /// Bytes the sort may buffer before it spills.
        memory: usize,
    },
    /// Rows copied in the order read (no sort order).
    Copied,
}

fn rewrite_error(table: &Table) -> impl Fn(String) -> MaintainError + '_ {
    move |message| MaintainError::Rewrite {
        table: table.identifier().to_string(),
        message,
    }
}

/// The table's sort keys as a DataFusion ordering over `schema`.
fn ordering(
    table: &Table,
    schema: &SchemaRef,
    keys: &[(String, SortOptions)],
) -> Result<LexOrdering> {
    LexOrdering::new(keys.iter().filter_map(|(column, options)| {
        let index = schema.index_of(column).ok()?;
        Some(PhysicalSortExpr::new(
            Arc::new(Column::new(column, index)),
            *options,
        ))
    }))
    .ok_or_else(|| rewrite_error(table)("no sort order to sort by".into()))
}

/// The rows of `tasks` (deletes applied), read one file at a time, as
/// batches of the table's Arrow schema.
fn read_stream(
    table: &Table,
    tasks: Vec<FileScanTask>,
    schema: &SchemaRef,
) -> Result<SendableRecordBatchStream> {
    let err = rewrite_error(table);
    let runtime = Runtime::try_current().map_err(|e| err(e.to_string()))?;
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), runtime)
        .with_batch_size(BATCH_ROWS)
        .with_data_file_concurrency_limit(1)
        .build();
    let batches = reader
        .read(Box::pin(futures::stream::iter(tasks.into_iter().map(Ok))))
        .map_err(|e| err(e.to_string()))?
        .stream();
    let target = schema.clone();
    let conformed = batches.map(move |batch| {
        let batch = batch.map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(RecordBatch::try_new(
            target.clone(),
            batch.columns().to_vec(),
        )?)
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(
        schema.clone(),
        conformed,
    )))
}

/// Rewrites `tasks` as [`Rewrite`] says (the sort order's `keys`) into
/// files of about `rows_per_file` rows named `prefix…`. `Merged` gives
/// [`Merged::Unsorted`] when an input is out of order.
pub(crate) async fn rewrite(
    table: &Table,
    tasks: Vec<FileScanTask>,
    keys: &[(String, SortOptions)],
    how: Rewrite,
    rows_per_file: usize,
    prefix: &str,
) -> Result<Merged> {
    let err = rewrite_error(table);
    let schema = DataFileSink::new(table, Some(usize::MAX), prefix)
        .map_err(|e| err(e.to_string()))?
        .arrow_schema()
        .clone();
    let unsorted = Arc::new(AtomicBool::new(false));
    let mut sorter: Option<Arc<SortExec>> = None;
    let rows: SendableRecordBatchStream = match how {
        Rewrite::Merged => {
            let ordering = ordering(table, &schema, keys)?;
            let streams = tasks
                .into_iter()
                .map(|task| {
                    let one = read_stream(table, vec![task], &schema)?;
                    Ok(checked(one, keys.to_vec(), unsorted.clone()))
                })
                .collect::<Result<Vec<_>>>()?;
            let pool: Arc<dyn MemoryPool> = Arc::new(UnboundedMemoryPool::default());
            let metrics = ExecutionPlanMetricsSet::new();
            StreamingMergeBuilder::new()
                .with_streams(streams)
                .with_schema(schema.clone())
                .with_expressions(&ordering)
                .with_metrics(BaselineMetrics::new(&metrics, 0))
                .with_batch_size(BATCH_ROWS)
                .with_reservation(MemoryConsumer::new("weir compaction merge").register(&pool))
                .build()
                .map_err(|e| err(e.to_string()))?
        }
        Rewrite::Sorted { memory } => {
            let ordering = ordering(table, &schema, keys)?;
            let input = StreamingTableExec::try_new(
                schema.clone(),
                vec![Arc::new(OneStream::new(read_stream(
                    table, tasks, &schema,
                )?))],
                None,
                Vec::<LexOrdering>::new(),
                false,
                None,
            )
            .map_err(|e| err(e.to_string()))?;
            let sort = Arc::new(SortExec::new(ordering, Arc::new(input)));
            sorter = Some(sort.clone());
            // A memory pool of the job's own: the sort spills when it is
            // full, whatever queries the process runs meanwhile.
            let runtime = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(FairSpillPool::new(memory)))
                .build_arc()
                .map_err(|e| err(e.to_string()))?;
            let mut config = SessionConfig::new().with_batch_size(BATCH_ROWS);
            // Spill files compressed: a 10-minute group of `silver.points`
            // is several GiB as Arrow.
            config.options_mut().execution.spill_compression =
                datafusion::common::config::SpillCompression::Lz4Frame;
            // What the sort keeps back for merging its spilled runs: within
            // the limit, however small.
            config.options_mut().execution.sort_spill_reservation_bytes =
                (memory / 4).min(10 << 20);
            let ctx = TaskContext::default()
                .with_session_config(config)
                .with_runtime(runtime);
            sort.execute(0, Arc::new(ctx))
                .map_err(|e| err(e.to_string()))?
        }
        Rewrite::Copied => read_stream(table, tasks, &schema)?,
    };
    match write_stream(table, rows, rows_per_file, prefix).await {
        Ok((files, rows)) => Ok(Merged::Written {
            files,
            rows,
            spilled: sorter
                .and_then(|s| s.metrics())
                .and_then(|m| m.spilled_bytes())
                .unwrap_or(0) as u64,
        }),
        Err(_) if unsorted.load(Ordering::Relaxed) => Ok(Merged::Unsorted),
        Err(e) => Err(e),
    }
}

/// Writes `rows` into files of `rows_per_file` rows; on failure deletes
/// what it wrote (nothing of it is committed; orphan cleanup would, later).
async fn write_stream(
    table: &Table,
    mut rows: SendableRecordBatchStream,
    rows_per_file: usize,
    prefix: &str,
) -> Result<(Vec<DataFile>, u64)> {
    let err = rewrite_error(table);
    let mut written = Vec::new();
    let mut sink: Option<DataFileSink> = None;
    let mut rows_in_file = 0usize;
    let mut total = 0u64;
    let outcome: Result<()> = async {
        while let Some(batch) = rows.next().await {
            let batch = batch.map_err(|e| err(e.to_string()))?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                if rows_in_file >= rows_per_file {
                    if let Some(full) = sink.take() {
                        written.extend(full.close().await.map_err(|e| err(e.to_string()))?);
                    }
                    rows_in_file = 0;
                }
                let open = match &mut sink {
                    Some(s) => s,
                    None => sink.insert(
                        DataFileSink::new(table, Some(usize::MAX), prefix)
                            .map_err(|e| err(e.to_string()))?,
                    ),
                };
                let len = (rows_per_file - rows_in_file).min(batch.num_rows() - offset);
                open.write(&batch.slice(offset, len))
                    .await
                    .map_err(|e| err(e.to_string()))?;
                rows_in_file += len;
                total += len as u64;
                offset += len;
            }
        }
        if let Some(last) = sink.take() {
            written.extend(last.close().await.map_err(|e| err(e.to_string()))?);
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok((written, total)),
        Err(e) => {
            for file in &written {
                let _ = table.file_io().delete(file.file_path()).await;
            }
            Err(e)
        }
    }
}

/// A stream made once into the one partition of a `StreamingTableExec`
/// (the sort's input).
struct OneStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl OneStream {
    fn new(stream: SendableRecordBatchStream) -> Self {
        OneStream {
            schema: stream.schema(),
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl fmt::Debug for OneStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("compaction input")
    }
}

impl PartitionStream for OneStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(stream) => stream,
            None => {
                let error = DataFusionError::Execution("compaction input read twice".into());
                Box::pin(RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::once(async move { Err(error) }),
                ))
            }
        }
    }
}

/// One input file's batches, checked to be in `keys` order (within each
/// batch and across batches); the first row out of order ends the stream
/// with an error and sets `unsorted`: the group is sorted instead.
fn checked(
    batches: SendableRecordBatchStream,
    keys: Vec<(String, SortOptions)>,
    unsorted: Arc<AtomicBool>,
) -> SendableRecordBatchStream {
    let schema = batches.schema();
    let mut last: Option<RecordBatch> = None;
    let stream = batches.map(move |batch| {
        let batch = batch?;
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
    Box::pin(RecordBatchStreamAdapter::new(schema, stream))
}
