//! Position delete files applied by DataFusion's own Parquet scan.
//!
//! Merge-on-read writers (Spark, Trino, Weir's DELETE/UPDATE/MERGE with
//! `write.*.mode = merge-on-read`) name deleted rows by data file path and
//! row position. The native scan reads each data file with a
//! [`ParquetAccessPlan`] that selects every row but those: row-group and
//! page pruning, late materialisation and parallel reads keep working, and
//! columns are still matched by field id in Weir's adapter. Before this, any
//! delete file sent the whole table to iceberg-rust's reader, which reads
//! files one stream at a time and cannot null-fill a column added after the
//! file was written when its type is `uuid`, `time`, `fixed`, a list or a map
//! ("unexpected target column type").
//!
//! Equality deletes (Flink) and non-Parquet delete files still go to the
//! Iceberg reader: [`position_deletes`] answers `None` for them.
//!
//! By hand rather than iceberg-rust's `DeleteFileLoader`: that loader is
//! crate-private in 0.10 and produces a filter for its own reader, not a
//! row selection for DataFusion's.

use std::collections::{HashMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::parquet::{ParquetAccessPlan, RowGroupAccess};
use datafusion::parquet::arrow::ProjectionMask;
use datafusion::parquet::arrow::arrow_reader::{
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use iceberg::io::FileIO;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataContentType;

/// Row selections of the data files that have deleted rows.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeletedRows {
    /// Data file path → its access plan and the number of rows it drops.
    plans: HashMap<String, (ParquetAccessPlan, usize)>,
    /// Data files whose delete files were read (with or without a plan: a
    /// delete file may name only other files).
    covered: HashSet<String>,
}

impl DeletedRows {
    /// The access plan for a data file and how many rows it drops, if any.
    pub(crate) fn plan(&self, data_file: &str) -> Option<&(ParquetAccessPlan, usize)> {
        self.plans.get(data_file)
    }

    /// Whether the delete files of `data_file` were read.
    pub(crate) fn covers(&self, data_file: &str) -> bool {
        self.covered.contains(data_file)
    }
}

/// Whether a task's delete files are all Parquet position deletes (what the
/// native scan applies).
pub(crate) fn position_deletes_only(task: &FileScanTask) -> bool {
    task.deletes.iter().all(|d| {
        d.file_type == DataContentType::PositionDeletes && d.file_path.ends_with(".parquet")
    })
}

/// Reads the position delete files of `tasks` and plans each affected data
/// file's row selection (its footer comes from the runtime's metadata cache,
/// where the scan finds it again).
pub(crate) async fn position_deletes(
    state: &dyn Session,
    file_io: &FileIO,
    tasks: &[FileScanTask],
) -> DFResult<DeletedRows> {
    let with_deletes: Vec<&FileScanTask> = tasks.iter().filter(|t| !t.deletes.is_empty()).collect();
    if with_deletes.is_empty() {
        return Ok(DeletedRows::default());
    }
    let wanted: HashSet<&str> = with_deletes
        .iter()
        .map(|t| t.data_file_path.as_str())
        .collect();
    let delete_files: HashSet<&str> = with_deletes
        .iter()
        .flat_map(|t| t.deletes.iter().map(|d| d.file_path.as_str()))
        .collect();
    let mut positions: HashMap<String, Vec<u64>> = HashMap::new();
    for path in delete_files {
        read_positions(file_io, path, &wanted, &mut positions).await?;
    }
    let mut plans = HashMap::new();
    let covered = with_deletes
        .iter()
        .map(|t| t.data_file_path.clone())
        .collect();
    for task in with_deletes {
        let Some(mut rows) = positions.remove(&task.data_file_path) else {
            continue; // its delete files name other data files only
        };
        rows.sort_unstable();
        rows.dedup();
        let row_groups = row_group_sizes(state, task).await?;
        let (plan, dropped) = access_plan(&row_groups, &rows);
        plans.insert(task.data_file_path.clone(), (plan, dropped));
    }
    Ok(DeletedRows { plans, covered })
}

/// Adds the positions a delete file names in the `wanted` data files.
async fn read_positions(
    file_io: &FileIO,
    path: &str,
    wanted: &HashSet<&str>,
    out: &mut HashMap<String, Vec<u64>>,
) -> DFResult<()> {
    let bytes = file_io
        .new_input(path)
        .map_err(|e| external(path, e))?
        .read()
        .await
        .map_err(|e| external(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| DataFusionError::External(format!("delete file {path}: {e}").into()))?;
    // By name as the spec fixes them (`file_path` id 2147483546, `pos` id
    // 2147483545); the optional `row` column is not read.
    let schema = builder.schema().clone();
    let (Ok(file_col), Ok(pos_col)) = (schema.index_of("file_path"), schema.index_of("pos")) else {
        return Err(DataFusionError::External(
            format!("delete file {path} has no file_path/pos columns").into(),
        ));
    };
    let mask = ProjectionMask::roots(builder.parquet_schema(), [file_col, pos_col]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| DataFusionError::External(format!("delete file {path}: {e}").into()))?;
    for batch in reader {
        let batch = batch?;
        let files = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8)?;
        let files = files.as_string::<i32>();
        let pos = arrow::compute::cast(batch.column(1), &arrow::datatypes::DataType::Int64)?;
        let pos = pos.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if files.is_null(i) || pos.is_null(i) {
                continue;
            }
            let file = files.value(i);
            if wanted.contains(file) {
                match out.get_mut(file) {
                    Some(v) => v.push(pos.value(i).max(0) as u64),
                    None => {
                        out.insert(file.to_string(), vec![pos.value(i).max(0) as u64]);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Row counts of a data file's row groups, from its footer.
async fn row_group_sizes(state: &dyn Session, task: &FileScanTask) -> DFResult<Vec<u64>> {
    let (store_url, key) = super::store_and_key(&task.data_file_path)?;
    let store = state.runtime_env().object_store(&store_url)?;
    // The same ObjectMeta the scan's PartitionedFile carries, so the cached
    // footer is valid for both.
    let meta = datafusion::datasource::listing::PartitionedFile::new(key, task.file_size_in_bytes)
        .object_meta;
    let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let metadata = DFParquetMetadata::new(store.as_ref(), &meta)
        .with_file_metadata_cache(Some(cache))
        .fetch_metadata()
        .await?;
    Ok(metadata
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows().max(0) as u64)
        .collect())
}

/// Every row but `deleted` (sorted, distinct), per row group; whole row
/// groups deleted are skipped. Also the number of rows dropped.
fn access_plan(row_groups: &[u64], deleted: &[u64]) -> (ParquetAccessPlan, usize) {
    let mut plan = Vec::with_capacity(row_groups.len());
    let mut dropped = 0usize;
    let mut next = 0usize; // index into `deleted`
    let mut start = 0u64;
    for &rows in row_groups {
        let end = start + rows;
        let mut selectors = Vec::new();
        let mut at = start;
        let mut skipped = 0u64;
        while next < deleted.len() && deleted[next] < end {
            let pos = deleted[next];
            next += 1;
            if pos < at {
                continue;
            }
            if pos > at {
                selectors.push(RowSelector::select((pos - at) as usize));
            }
            selectors.push(RowSelector::skip(1));
            skipped += 1;
            at = pos + 1;
        }
        dropped += skipped as usize;
        plan.push(if skipped == 0 {
            RowGroupAccess::Scan
        } else if skipped == rows {
            RowGroupAccess::Skip
        } else {
            if at < end {
                selectors.push(RowSelector::select((end - at) as usize));
            }
            RowGroupAccess::Selection(RowSelection::from(selectors))
        });
        start = end;
    }
    (ParquetAccessPlan::new(plan), dropped)
}

fn external(path: &str, e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(format!("delete file {path}: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selected(access: &RowGroupAccess) -> String {
        match access {
            RowGroupAccess::Skip => "skip".into(),
            RowGroupAccess::Scan => "scan".into(),
            RowGroupAccess::Selection(s) => format!("{s:?}"),
        }
    }

    #[test]
    fn plans_skip_deleted_positions_per_row_group() {
        // Row groups of 4, 3 and 2 rows; rows 0, 2, 3 | 4, 5, 6 (all) | none.
        let (plan, dropped) = access_plan(&[4, 3, 2], &[0, 2, 3, 4, 5, 6]);
        assert_eq!(dropped, 6);
        let groups = plan.inner();
        assert_eq!(selected(&groups[1]), "skip");
        assert_eq!(selected(&groups[2]), "scan");
        let RowGroupAccess::Selection(s) = &groups[0] else {
            panic!("selection expected");
        };
        assert_eq!(s.row_count(), 1);
        assert_eq!(s.skipped_row_count(), 3);
        // Positions past the file's rows drop nothing.
        let (_, dropped) = access_plan(&[2], &[5]);
        assert_eq!(dropped, 0);
    }
}
