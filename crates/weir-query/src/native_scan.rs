//! Reading planned Iceberg data files with DataFusion's own Parquet scan.
//!
//! iceberg-rust plans which files to read (manifest pruning on partition
//! values and column bounds); iceberg-datafusion would then read them through
//! one sequential stream. Handing the planned files to DataFusion's
//! `ParquetSource` instead gives parallel reads across all cores, row-group
//! and page-index pruning, late materialisation of filtered columns when a
//! session turns filter pushdown on (off by default: `scan_defaults`), and
//! the scan metrics `EXPLAIN ANALYZE` reports (row groups pruned, bytes scanned).
//!
//! Columns are matched by Iceberg field id (`field_ids`): renamed columns
//! read their old values, dropped ones never come back under a new column of
//! the same name, columns added later read as NULL (or their initial
//! default), and pruning uses the statistics of the file's column of the
//! right id. Position delete files are applied as row selections
//! (`deletes`); files with equality deletes are not handled here: the caller
//! falls back to the Iceberg reader.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DFResult;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::utils::conjunction;
use datafusion::physical_plan::ExecutionPlan;
use iceberg::scan::FileScanTask;
use iceberg::spec::DataFileFormat;

mod deletes;
mod field_ids;
pub(crate) use deletes::{
    DeletedRows, position_deletes, position_deletes_only as natively_readable_deletes,
};
use field_ids::FieldIdAdapterFactory;
pub(crate) use field_ids::FieldIds;

/// A DataFusion Parquet scan over `tasks`, or `None` when they need the
/// Iceberg reader (equality deletes, non-Parquet files, unregistered
/// stores). `table_schema` is the Arrow form of `field_ids`' Iceberg schema;
/// `deleted` the row selections of the files with position deletes
/// ([`position_deletes`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn parquet_scan(
    state: &dyn Session,
    table_schema: SchemaRef,
    field_ids: &Arc<FieldIds>,
    tasks: &[FileScanTask],
    projection: Option<&Vec<usize>>,
    filters: &[Expr],
    limit: Option<usize>,
    bloom_filters: bool,
    deleted: &DeletedRows,
) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
    let mut files = Vec::with_capacity(tasks.len());
    let mut root: Option<String> = None;
    let mut selections = false;
    for task in tasks {
        if !deletes::position_deletes_only(task)
            || task.data_file_format != DataFileFormat::Parquet
            || (!task.deletes.is_empty() && !deleted.covers(&task.data_file_path))
        {
            return Ok(None);
        }
        // One store per scan (a table's files share its location's store).
        let Some((file_root, path)) = store_key(&task.data_file_path) else {
            return Ok(None);
        };
        match &root {
            Some(r) if *r != file_root => return Ok(None),
            Some(_) => {}
            None => root = Some(file_root),
        }
        let whole = task.start == 0 && task.length == task.file_size_in_bytes;
        let plan = deleted.plan(&task.data_file_path);
        let file = if whole {
            // Row counts from the manifest less the deleted positions: exact
            // for a whole file, so DataFusion answers `count(*)` without
            // reading it.
            let mut stats = Statistics::new_unknown(&table_schema);
            let dropped = plan.map_or(0, |(_, n)| *n);
            stats.num_rows = task.record_count.map_or(Precision::Absent, |n| {
                Precision::Exact((n as usize).saturating_sub(dropped))
            });
            stats.total_byte_size = Precision::Inexact(task.file_size_in_bytes as usize);
            PartitionedFile::new(path, task.file_size_in_bytes).with_statistics(Arc::new(stats))
        } else {
            PartitionedFile::new_with_range(
                path,
                task.file_size_in_bytes,
                task.start as i64,
                (task.start + task.length) as i64,
            )
        };
        files.push(match plan {
            Some((access, _)) => {
                selections = true;
                file.with_extensions(Arc::new(access.clone()))
            }
            None => file,
        });
    }
    // DataFusion's limit pruning replaces the access plan of row groups
    // whose statistics fully match the filter with a plain scan, which would
    // bring deleted rows back; the limit is applied above the scan anyway.
    let limit = if selections { None } else { limit };

    let mut options = TableParquetOptions {
        global: state.config_options().execution.parquet.clone(),
        ..Default::default()
    };
    options.global.bloom_filter_on_read &= bloom_filters;
    // Footers and page indexes from the runtime's file-metadata cache (as
    // DataFusion's own ParquetFormat does): Iceberg data files never change
    // in place, so a cached footer is never stale.
    let store_url = store_url(root.as_deref())?;
    // The warehouse's store is registered by the engine; files elsewhere
    // are read by the Iceberg reader (through the same object stores).
    let Ok(store) = state.runtime_env().object_store(&store_url) else {
        return Ok(None);
    };
    let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
    let mut source = ParquetSource::new(table_schema.clone())
        .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
            store,
            metadata_cache,
        )))
        .with_table_parquet_options(options)
        .with_enable_page_index(true);
    if let Some(expr) = conjunction(filters.iter().map(split_long_in_lists).collect::<Vec<_>>()) {
        let df_schema = DFSchema::try_from(table_schema.as_ref().clone())?;
        source = source.with_predicate(state.create_physical_expr(expr, &df_schema)?);
    }
    let groups = balance(files, state.config().target_partitions());
    let (groups, statistics) = with_statistics(groups, &table_schema)?;
    let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
        .with_file_groups(groups)
        .with_statistics(statistics)
        .with_projection_indices(projection.cloned())?
        .with_limit(limit)
        .with_expr_adapter(Some(Arc::new(FieldIdAdapterFactory(field_ids.clone()))))
        .build();
    Ok(Some(DataSourceExec::from_data_source(config)))
}

/// DataFusion's pruning turns `c IN (list)` into per-value range checks on
/// row-group and page statistics only for lists of at most 20 values
/// (`MAX_LIST_VALUE_SIZE_REWRITE`, not configurable); "these 100 sensors"
/// then prunes nothing. `c IN (list) AND (c IN (20) OR c IN (20) …)` says the
/// same: pruning uses the OR (pages of files sorted or clustered by `c`); the
/// filter above the scan evaluates the original list once per row. (With
/// filter pushdown on, the row filter evaluates the OR as well: a hash
/// lookup per list of 20 per row.)
const PRUNABLE_IN_LIST: usize = 20;

fn split_long_in_lists(expr: &Expr) -> Expr {
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::expr::InList;
    expr.clone()
        .transform(|e| {
            Ok(match e {
                Expr::InList(InList {
                    expr,
                    list,
                    negated: false,
                }) if list.len() > PRUNABLE_IN_LIST
                    && list.iter().all(|v| matches!(v, Expr::Literal(..))) =>
                {
                    let parts = list.chunks(PRUNABLE_IN_LIST).map(|chunk| {
                        Expr::InList(InList::new(expr.clone(), chunk.to_vec(), false))
                    });
                    let split = datafusion::logical_expr::utils::disjunction(parts);
                    let original = Expr::InList(InList::new(expr, list, false));
                    match split {
                        Some(split) => Transformed::yes(original.and(split)),
                        None => Transformed::no(original),
                    }
                }
                other => Transformed::no(other),
            })
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| expr.clone())
}

/// Per-group and total statistics from the files' own (what DataFusion's
/// `compute_all_files_statistics` does; that function is not re-exported by
/// the `datafusion` crate). A group with a file of unknown statistics is
/// unknown as a whole, never a partial sum.
fn with_statistics(
    groups: Vec<FileGroup>,
    schema: &SchemaRef,
) -> DFResult<(Vec<FileGroup>, Statistics)> {
    let merge = |stats: Vec<&Statistics>| -> DFResult<Statistics> {
        Statistics::try_merge_iter(stats, schema)
    };
    let mut out = Vec::with_capacity(groups.len());
    let mut known = true;
    for group in groups {
        let stats: Option<Vec<&Statistics>> =
            group.iter().map(|f| f.statistics.as_deref()).collect();
        match stats {
            Some(stats) if !stats.is_empty() => {
                let merged = merge(stats)?;
                out.push(group.with_statistics(Arc::new(merged)));
            }
            _ => {
                known = false;
                out.push(group);
            }
        }
    }
    let total = if known {
        merge(out.iter().filter_map(|g| g.file_statistics(None)).collect())?
    } else {
        Statistics::new_unknown(schema)
    };
    Ok((out, total))
}

/// Whether the Parquet scan can read `task` on its own: Parquet position deletes only, a
/// Parquet file, in a store the engine registered. Otherwise the Iceberg
/// reader reads the table.
pub(crate) fn natively_readable(state: &dyn Session, task: &FileScanTask) -> bool {
    deletes::position_deletes_only(task)
        && task.data_file_format == DataFileFormat::Parquet
        && store_key(&task.data_file_path)
            .and_then(|(root, _)| store_url(Some(&root)).ok())
            .is_some_and(|url| state.runtime_env().object_store(&url).is_ok())
}

/// The DataFusion object-store URL and key of a data file location.
fn store_and_key(location: &str) -> DFResult<(ObjectStoreUrl, String)> {
    let (root, key) = store_key(location).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("not a storage location: {location}"))
    })?;
    Ok((store_url(Some(&root))?, key))
}

/// The DataFusion object-store URL of a store root (`None`: local files).
fn store_url(root: Option<&str>) -> DFResult<ObjectStoreUrl> {
    match root {
        None | Some("file://") => Ok(ObjectStoreUrl::local_filesystem()),
        Some(root) => ObjectStoreUrl::parse(root),
    }
}

/// The store (`file://`, `s3://bucket`) and key of a data file location.
fn store_key(location: &str) -> Option<(String, String)> {
    let loc = weir_catalog::StoreLocation::parse(location).ok()?;
    Some((loc.root, loc.key))
}

/// Spreads files over `n` groups, largest first onto the lightest group.
fn balance(mut files: Vec<PartitionedFile>, n: usize) -> Vec<FileGroup> {
    let n = n.max(1).min(files.len().max(1));
    files.sort_by_key(|f| std::cmp::Reverse(f.object_meta.size));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..n).map(|_| (0, vec![])).collect();
    for file in files {
        let lightest = groups
            .iter_mut()
            .min_by_key(|(bytes, _)| *bytes)
            .expect("at least one group");
        lightest.0 += file.object_meta.size;
        lightest.1.push(file);
    }
    groups
        .into_iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(_, f)| FileGroup::new(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_in_lists_become_prunable_ors() {
        use datafusion::logical_expr::{col, lit};
        let ids: Vec<Expr> = (0..45).map(|i| lit(format!("s{i:03}"))).collect();
        let split = split_long_in_lists(
            &col("device_id")
                .in_list(ids.clone(), false)
                .and(col("q").eq(lit(0))),
        );
        let text = split.to_string();
        assert_eq!(text.matches(" IN (").count(), 4, "{text}");
        assert!(
            text.contains(" OR ") && text.contains("q = Int32(0)"),
            "{text}"
        );
        // Short lists and NOT IN stay as they are.
        let short = col("device_id").in_list(ids[..20].to_vec(), false);
        assert_eq!(split_long_in_lists(&short), short);
        let not_in = col("device_id").in_list(ids, true);
        assert_eq!(split_long_in_lists(&not_in), not_in);
    }

    #[test]
    fn files_map_to_store_and_key() {
        let key = |l: &str| store_key(l).map(|(r, k)| format!("{r} {k}"));
        assert_eq!(
            key("file:///tmp/a.parquet").unwrap(),
            "file:// tmp/a.parquet"
        );
        assert_eq!(key("/tmp/a.parquet").unwrap(), "file:// tmp/a.parquet");
        assert_eq!(
            key("s3://bucket/w/a.parquet").unwrap(),
            "s3://bucket w/a.parquet"
        );
        assert_eq!(key("gs://bucket/a.parquet"), None);
    }

    #[test]
    fn balances_by_size() {
        let files = [100u64, 90, 10, 10, 5]
            .iter()
            .enumerate()
            .map(|(i, s)| PartitionedFile::new(format!("f{i}"), *s))
            .collect();
        let groups = balance(files, 2);
        let sizes: Vec<u64> = groups
            .iter()
            .map(|g| g.iter().map(|f| f.object_meta.size).sum())
            .collect();
        assert_eq!(sizes, vec![110, 105]);
    }
}
