//! Decoded data files of small, hot tables, held in memory.
//!
//! Gold rollups are small (a day of 2,000 sensors at 1 h is 48,000 rows) and
//! every dashboard refresh reads them again: opening, pruning and decoding
//! their Parquet was most of a rollup query's time (measured: 8.9 ms of a
//! 12.8 ms query over `gold.points_1h`, 3.0 ms from memory). Tables that
//! ask for it keep their data files decoded here, as Arrow batches of the
//! session's batch size with per-batch min/max, so a scan prunes batches the
//! way Parquet page statistics would and decodes nothing.
//!
//! Which tables: materialized views, unless their `weir.file-cache`
//! property is `false`, and any table whose `weir.file-cache` is `true`.
//! Which files: whole data files without delete files, no larger than the
//! per-file limit. Iceberg data files never change in place, so an entry is
//! never stale: files a refresh or compaction replaced are no longer planned
//! and age out (least recently used first, and after an idle time).
//! `SET weir.file_cache = false` reads a session's tables from Parquet.
//!
//! The size-bounded LRU is moka's; DataFusion caches footers only
//! (`CachedParquetFileReaderFactory`), not decoded data.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch, UInt64Array};
use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Accumulator, Expr};
use datafusion::physical_optimizer::pruning::PruningPredicate;
use datafusion::physical_plan::{ExecutionPlan, collect};
use iceberg::scan::FileScanTask;

use crate::native_scan::FieldIds;

/// The table property that opts a table in (`true`) or out (`false`).
pub const FILE_CACHE_PROPERTY: &str = "weir.file-cache";

/// Limits of the cache (`weir serve --file-cache-mb`, `--file-cache-max-file-mb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCacheOptions {
    /// Decoded bytes held in all (0 turns the cache off).
    pub capacity_bytes: u64,
    /// Largest data file (Parquet bytes) that is cached.
    pub max_file_bytes: u64,
}

impl Default for FileCacheOptions {
    fn default() -> Self {
        FileCacheOptions {
            capacity_bytes: 1 << 30,
            max_file_bytes: 64 << 20,
        }
    }
}

/// Whether a table's files belong in the cache, from its properties.
pub fn table_wants_cache(
    properties: &std::collections::HashMap<String, String>,
    materialized_view: bool,
) -> bool {
    match properties.get(FILE_CACHE_PROPERTY).map(|v| v.trim()) {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => materialized_view,
    }
}

/// One data file, decoded: batches in file order and their statistics.
pub struct DecodedFile {
    batches: Vec<RecordBatch>,
    /// Per batch, per column of the batch schema: min, max, null count.
    stats: Vec<Vec<ColumnStats>>,
    bytes: usize,
}

struct ColumnStats {
    min: ScalarValue,
    max: ScalarValue,
    nulls: u64,
}

impl DecodedFile {
    fn new(batches: Vec<RecordBatch>) -> DFResult<Self> {
        let stats = batches
            .iter()
            .map(|b| b.columns().iter().map(column_stats).collect())
            .collect::<DFResult<Vec<_>>>()?;
        let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
        Ok(DecodedFile {
            batches,
            stats,
            bytes,
        })
    }
}

fn column_stats(array: &ArrayRef) -> DFResult<ColumnStats> {
    let mut min = MinAccumulator::try_new(array.data_type())?;
    let mut max = MaxAccumulator::try_new(array.data_type())?;
    min.update_batch(std::slice::from_ref(array))?;
    max.update_batch(std::slice::from_ref(array))?;
    Ok(ColumnStats {
        min: min.evaluate()?,
        max: max.evaluate()?,
        nulls: array.null_count() as u64,
    })
}

/// Decoded data files by location, bounded by their decoded size.
pub struct FileCache {
    files: moka::future::Cache<String, Arc<DecodedFile>>,
    max_file_bytes: u64,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("files", &self.files.entry_count())
            .field("bytes", &self.files.weighted_size())
            .finish()
    }
}

impl FileCache {
    /// `None` when the options turn the cache off.
    pub fn new(options: FileCacheOptions) -> Option<Self> {
        if options.capacity_bytes == 0 || options.max_file_bytes == 0 {
            return None;
        }
        let files = moka::future::Cache::builder()
            .max_capacity(options.capacity_bytes)
            .weigher(|_: &String, file: &Arc<DecodedFile>| {
                u32::try_from(file.bytes).unwrap_or(u32::MAX)
            })
            // Files replaced by a refresh or compaction are never read again.
            .time_to_idle(Duration::from_secs(30 * 60))
            .eviction_listener(|_, file: Arc<DecodedFile>, _| {
                ::metrics::counter!(crate::metric_names::FILE_CACHE_EVICTED_BYTES_TOTAL)
                    .increment(file.bytes as u64);
            })
            .build();
        Some(FileCache {
            files,
            max_file_bytes: options.max_file_bytes,
        })
    }

    /// Whether `task` may be served from memory (a whole file, small
    /// enough; the caller checked the Parquet scan can read it).
    pub fn admits(&self, task: &FileScanTask) -> bool {
        // A file with deleted rows is read with its row selection instead.
        task.deletes.is_empty()
            && task.start == 0
            && task.length == task.file_size_in_bytes
            && task.file_size_in_bytes <= self.max_file_bytes
    }

    /// The decoded file of `task` in the table schema `schema_id`, read with
    /// `read` (a full scan of that one file in that schema) unless it is
    /// cached, and whether it was (`true`: a hit, nothing read). Entries are
    /// per schema: after a rename the same file decodes to other column names.
    pub async fn get(
        &self,
        task: &FileScanTask,
        schema_id: i32,
        read: impl Future<Output = DFResult<Vec<RecordBatch>>>,
    ) -> DFResult<(Arc<DecodedFile>, bool)> {
        let entry = self
            .files
            .entry(format!("{}#schema-{schema_id}", task.data_file_path))
            .or_try_insert_with(async { read.await.and_then(DecodedFile::new).map(Arc::new) })
            .await
            .map_err(|e| DataFusionError::External(Box::new(SharedError(e))))?;
        let hit = !entry.is_fresh();
        let outcome = if hit { "hit" } else { "miss" };
        ::metrics::counter!(crate::metric_names::FILE_CACHE_REQUESTS_TOTAL, "outcome" => outcome)
            .increment(1);
        ::metrics::gauge!(crate::metric_names::FILE_CACHE_BYTES)
            .set(self.files.weighted_size() as f64);
        Ok((entry.into_value(), hit))
    }
}

/// A load error shared by every query that waited for the same file.
#[derive(Debug)]
struct SharedError(Arc<DataFusionError>);

impl std::fmt::Display for SharedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading a data file into the file cache: {}", self.0)
    }
}

impl std::error::Error for SharedError {}

/// Reads one whole data file (all columns of `table_schema`, no filters).
pub async fn read_whole_file(
    state: &dyn Session,
    table_schema: SchemaRef,
    field_ids: &Arc<FieldIds>,
    task: &FileScanTask,
) -> DFResult<Vec<RecordBatch>> {
    let plan = crate::native_scan::parquet_scan(
        state,
        table_schema,
        field_ids,
        std::slice::from_ref(task),
        None,
        &[],
        None,
        false,
        &crate::native_scan::DeletedRows::default(),
    )?
    .ok_or_else(|| {
        DataFusionError::Internal(format!(
            "data file {} cannot be read by the Parquet scan",
            task.data_file_path
        ))
    })?;
    let batches = collect(plan, state.task_ctx()).await?;
    Ok(batches.into_iter().filter(|b| b.num_rows() > 0).collect())
}

/// A scan of decoded files: batches whose statistics cannot match `filters`
/// are skipped, the rest conformed to `table_schema` and spread over the
/// session's partitions. (The filters are applied row by row above the scan.)
pub fn memory_scan(
    state: &dyn Session,
    table_schema: &SchemaRef,
    files: &[Arc<DecodedFile>],
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
    conform: impl Fn(RecordBatch) -> DFResult<RecordBatch>,
) -> DFResult<(Arc<dyn ExecutionPlan>, BatchCounts)> {
    let containers: Vec<(&DecodedFile, usize)> = files
        .iter()
        .flat_map(|f| (0..f.batches.len()).map(move |i| (f.as_ref(), i)))
        .collect();
    // Long IN lists are not split here (as they are for Parquet pruning):
    // `contained` below checks each batch against the list's values directly,
    // which costs microseconds where 100 OR-ed range checks cost milliseconds.
    let keep = match conjunction(filters.iter().cloned()) {
        Some(expr) => {
            let df_schema = DFSchema::try_from(table_schema.as_ref().clone())?;
            let predicate = state.create_physical_expr(expr, &df_schema)?;
            let pruning = PruningPredicate::try_new(predicate, table_schema.clone())?;
            pruning.prune(&Containers(&containers))?
        }
        None => vec![true; containers.len()],
    };
    let partitions = state.config().target_partitions().max(1);
    let mut groups: Vec<Vec<RecordBatch>> = vec![Vec::new(); partitions];
    let mut counts = BatchCounts {
        files: files.len(),
        total: containers.len(),
        ..Default::default()
    };
    for ((file, i), keep) in containers.iter().zip(keep) {
        if keep {
            groups[counts.matched % partitions].push(conform(file.batches[*i].clone())?);
            counts.matched += 1;
        }
    }
    groups.retain(|g| !g.is_empty());
    if groups.is_empty() {
        groups.push(Vec::new());
    }
    let source = MemorySourceConfig::try_new(&groups, table_schema.clone(), projection.cloned())?
        .with_limit(limit);
    Ok((DataSourceExec::from_data_source(source), counts))
}

/// What a memory scan read, for `EXPLAIN`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchCounts {
    pub files: usize,
    pub total: usize,
    pub matched: usize,
}

/// Batches of decoded files as pruning containers (columns by name).
struct Containers<'a>(&'a [(&'a DecodedFile, usize)]);

impl Containers<'_> {
    fn values(
        &self,
        column: &Column,
        pick: impl Fn(&ColumnStats) -> ScalarValue,
    ) -> Option<ArrayRef> {
        let mut out = Vec::with_capacity(self.0.len());
        for (file, i) in self.0 {
            let index = file.batches[*i].schema().index_of(&column.name).ok()?;
            out.push(pick(&file.stats[*i][index]));
        }
        ScalarValue::iter_to_array(out).ok()
    }
}

impl PruningStatistics for Containers<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.min.clone())
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| s.max.clone())
    }

    fn num_containers(&self) -> usize {
        self.0.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |s| ScalarValue::UInt64(Some(s.nulls)))
    }

    fn row_counts(&self, _column: &Column) -> Option<ArrayRef> {
        let rows = self
            .0
            .iter()
            .map(|(file, i)| file.batches[*i].num_rows() as u64);
        Some(Arc::new(UInt64Array::from_iter_values(rows)))
    }

    /// `false` for a batch none of `values` can be in (outside its
    /// min..max, or the column is all null there), unknown otherwise.
    fn contained(&self, column: &Column, values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        let mut out = Vec::with_capacity(self.0.len());
        for (file, i) in self.0 {
            let index = file.batches[*i].schema().index_of(&column.name).ok()?;
            let stats = &file.stats[*i][index];
            let possible = if stats.min.is_null() || stats.max.is_null() {
                false
            } else {
                values.iter().any(|v| {
                    !v.is_null()
                        && !matches!(stats.min.partial_cmp(v), Some(std::cmp::Ordering::Greater))
                        && !matches!(stats.max.partial_cmp(v), Some(std::cmp::Ordering::Less))
                })
            };
            out.push(if possible { None } else { Some(false) });
        }
        Some(BooleanArray::from(out))
    }
}
