//! Compaction and clustering: pick files per partition, rewrite them sorted
//! (by the table's sort order, or in Z-order over chosen columns), commit one
//! `replace` snapshot per group.
//!
//! - compaction bin-packs the *small* files of each partition to the target size;
//! - clustering rewrites *every* file of a partition not yet written in
//!   Z-order (files named `z-…`), in groups of up to `max_group_bytes`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::TryStreamExt;
use iceberg::Runtime;
use iceberg::TableIdent;
use iceberg::arrow::ArrowReaderBuilder;
use iceberg::scan::FileScanTask;
use iceberg::spec::ManifestContentType;
use iceberg::table::Table;
use serde::Serialize;
use weir_catalog::{CatalogError, Lakehouse, commit_replace, write_data_files_named};

use weir_catalog::LeaseKeeper;

use crate::job::{JobContext, JobReport, MaintenanceJob, Report, ScheduledTable, mib};
use crate::merge::Rewrite;
use crate::schedule::{Job, JobError};
use crate::{MaintainError, Result};

/// How rewritten rows are ordered (and which files a run picks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Layout {
    /// Compaction: small files, sorted by the table's sort order.
    #[default]
    SortOrder,
    /// Clustering: all files not yet clustered, in Z-order over these columns.
    ZOrder(Vec<String>),
}

/// Memory a compaction sort uses before it spills (1 GiB): the group's
/// size does not matter beyond it.
pub const DEFAULT_SORT_MEMORY: usize = 1 << 30;

/// File name prefix of files written in Z-order.
pub const ZORDER_PREFIX: &str = "z-";
/// Table property naming the columns `weir maintain cluster` uses by default.
pub const CLUSTER_COLUMNS_PROPERTY: &str = "weir.cluster.columns";
/// Table property: skip partitions that received files more recently than
/// this many seconds (still being written by a streaming writer).
pub const SKIP_RECENT_PROPERTY: &str = "weir.maintenance.skip-recent-seconds";

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Size of the files written (default: the table's
    /// `write.target-file-size-bytes`).
    pub target_file_bytes: Option<u64>,
    /// Row order and file selection.
    pub layout: Layout,
    /// Clustering: most input bytes rewritten together (bounds memory).
    pub max_group_bytes: u64,
    /// Compaction: memory a group's sort may use before it spills sorted
    /// runs to temporary files (default [`DEFAULT_SORT_MEMORY`]).
    pub sort_memory_bytes: usize,
    /// Leave partitions alone that got files within this window (default:
    /// the table's `weir.maintenance.skip-recent-seconds`, else none).
    pub skip_recent: Option<Duration>,
    /// Files smaller than this fraction of the target are candidates.
    pub small_file_ratio: f64,
    /// A group is rewritten only with at least this many files.
    pub min_input_files: usize,
    /// Plan only; change nothing.
    pub dry_run: bool,
    /// Identifies this run (lease owner, snapshot summary).
    pub run_id: String,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_file_bytes: None,
            layout: Layout::SortOrder,
            max_group_bytes: 512 << 20,
            sort_memory_bytes: DEFAULT_SORT_MEMORY,
            skip_recent: None,
            small_file_ratio: 0.75,
            min_input_files: 2,
            dry_run: false,
            run_id: weir_catalog::Leases::holder_id(),
        }
    }
}

/// What one run did (also printed as JSON by `weir maintain --json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactReport {
    pub table: String,
    /// `compact` or `cluster`.
    pub job: String,
    /// Partitions left alone because they received files recently.
    pub partitions_skipped_recent: usize,
    pub files_before: usize,
    pub groups_planned: usize,
    pub groups_committed: usize,
    /// Groups abandoned because another job changed their files meanwhile.
    pub groups_abandoned: usize,
    /// Groups rewritten by the streaming merge of already sorted files
    /// (memory: a batch per file).
    pub groups_merged: usize,
    /// Groups of files out of order sorted under `sort_memory_bytes`
    /// (spilling to disk beyond it).
    pub groups_sorted: usize,
    /// Bytes those sorts spilled to temporary files.
    pub bytes_spilled: u64,
    pub files_in: usize,
    pub files_out: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    pub seconds: f64,
    pub commit_attempts: u32,
}

/// Progress of a run, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub groups_total: usize,
    pub groups_done: usize,
    pub bytes_total: u64,
    pub bytes_done: u64,
}

#[derive(Debug, Clone)]
struct Candidate {
    path: String,
    size: u64,
    /// Commit time of the snapshot that added the file.
    added_ms: i64,
}

/// Compacts one table. Safe beside running writers and queries.
pub async fn compact_table(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &CompactOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<CompactReport> {
    let name = ident.to_string();
    // One lease for both jobs: they rewrite the same files.
    let lease = format!("compact:{name}");
    let ttl = Duration::from_secs(60);
    if !opts.dry_run
        && !lakehouse
            .leases()
            .acquire(&lease, &opts.run_id, ttl)
            .await?
    {
        return Err(MaintainError::Busy {
            job: "compaction",
            table: name,
            lease,
        });
    }
    let keeper = (!opts.dry_run).then(|| lakehouse.leases().keep(&lease, &opts.run_id, ttl));
    let result = run(lakehouse, ident, opts, progress, keeper.as_ref()).await;
    drop(keeper);
    if !opts.dry_run {
        lakehouse.leases().release(&lease, &opts.run_id).await?;
    }
    result
}

async fn run(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &CompactOptions,
    progress: &(dyn Fn(&Progress) + Sync),
    keeper: Option<&LeaseKeeper>,
) -> Result<CompactReport> {
    let started = Instant::now();
    let name = ident.to_string();
    let table = lakehouse
        .catalog()
        .load_table(ident)
        .await
        .map_err(|e| CatalogError::iceberg(&name, e))?;
    let mut report = CompactReport {
        table: name.clone(),
        job: match opts.layout {
            Layout::SortOrder => "compact".into(),
            Layout::ZOrder(_) => "cluster".into(),
        },
        ..Default::default()
    };
    let (target, skip_recent) = settings(&table, opts)?;
    let plan = plan(&table, opts, target, skip_recent).await?;
    let (groups, files_before) = (plan.groups, plan.live);
    report.partitions_skipped_recent = plan.skipped_recent;
    report.files_before = files_before;
    report.groups_planned = groups.len();
    let mut state = Progress {
        groups_total: groups.len(),
        bytes_total: groups.iter().flatten().map(|c| c.size).sum(),
        ..Default::default()
    };
    progress(&state);
    if opts.dry_run || groups.is_empty() {
        report.files_in = groups.iter().map(Vec::len).sum();
        report.bytes_in = state.bytes_total;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let tasks = scan_tasks(&table).await?;
    let run = GroupRun {
        lakehouse,
        ident,
        table: &table,
        opts,
        target,
        keeper,
        job: report.job.clone(),
    };
    for group in groups {
        let group_bytes: u64 = group.iter().map(|c| c.size).sum();
        match run.rewrite(&group, &tasks).await? {
            Some(done) => report.add(done),
            None => report.groups_abandoned += 1,
        }
        state.groups_done += 1;
        state.bytes_done += group_bytes;
        progress(&state);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The target file size and the "skip recent partitions" age of a run:
/// the options', else the table's properties. Checks Z-order columns.
fn settings(table: &Table, opts: &CompactOptions) -> Result<(u64, Option<Duration>)> {
    let target = opts.target_file_bytes.unwrap_or_else(|| {
        table
            .metadata()
            .table_properties()
            .map(|p| p.write_target_file_size_bytes as u64)
            .unwrap_or(128 << 20)
    });
    let skip_recent = opts.skip_recent.or_else(|| {
        table
            .metadata()
            .properties()
            .get(SKIP_RECENT_PROPERTY)
            .and_then(|v| v.parse().ok())
            .map(Duration::from_secs)
    });
    if let Layout::ZOrder(columns) = &opts.layout {
        let schema = table.metadata().current_schema();
        if let Some(missing) = columns.iter().find(|c| schema.field_by_name(c).is_none()) {
            return Err(MaintainError::Rewrite {
                table: table.identifier().to_string(),
                message: format!("no column `{missing}` to cluster by"),
            });
        }
    }
    Ok((target, skip_recent))
}

/// What rewriting one group committed.
struct GroupDone {
    how: Option<Rewrite>,
    spilled: u64,
    attempts: u32,
    files_in: usize,
    files_out: usize,
    bytes_in: u64,
    bytes_out: u64,
    rows: u64,
}

impl CompactReport {
    fn add(&mut self, done: GroupDone) {
        self.groups_committed += 1;
        match done.how {
            Some(Rewrite::Merged) => self.groups_merged += 1,
            Some(Rewrite::Sorted { .. }) => self.groups_sorted += 1,
            Some(Rewrite::Copied) | None => {}
        }
        self.bytes_spilled += done.spilled;
        self.commit_attempts += done.attempts;
        self.files_in += done.files_in;
        self.files_out += done.files_out;
        self.bytes_in += done.bytes_in;
        self.bytes_out += done.bytes_out;
        self.rows += done.rows;
    }
}

/// One run's groups rewritten and committed one by one.
struct GroupRun<'a> {
    lakehouse: &'a Lakehouse,
    ident: &'a TableIdent,
    table: &'a Table,
    opts: &'a CompactOptions,
    target: u64,
    keeper: Option<&'a LeaseKeeper>,
    /// `compact` or `cluster`.
    job: String,
}

impl GroupRun<'_> {
    /// Rewrites `group` and commits it; `None` when the group was abandoned
    /// (files gone from the snapshot, rewritten by someone else, or every
    /// commit race lost: the next run picks them up again).
    async fn rewrite(
        &self,
        group: &[Candidate],
        tasks: &HashMap<String, FileScanTask>,
    ) -> Result<Option<GroupDone>> {
        let name = self.ident.to_string();
        let busy = || MaintainError::Busy {
            job: "compaction",
            table: name.clone(),
            lease: format!("compact:{name}"),
        };
        if self.keeper.is_some_and(LeaseKeeper::lost) {
            return Err(busy());
        }
        let bytes_in: u64 = group.iter().map(|c| c.size).sum();
        let group_tasks: Vec<FileScanTask> = group
            .iter()
            .filter_map(|c| tasks.get(&c.path).cloned())
            .collect();
        if group_tasks.len() != group.len() {
            return Ok(None);
        }
        let (added, rows, how, spilled) = rewrite_group(
            self.table,
            group_tasks,
            bytes_in,
            self.target,
            &self.opts.layout,
            self.opts.sort_memory_bytes,
        )
        .await?;
        let removed: HashSet<String> = group.iter().map(|c| c.path.clone()).collect();
        let bytes_out: u64 = added.iter().map(|f| f.file_size_in_bytes()).sum();
        let files_out = added.len();
        let props = HashMap::from([
            ("weir.maintenance".to_string(), self.job.clone()),
            ("weir.maintenance.run".to_string(), self.opts.run_id.clone()),
        ]);
        // The lease is renewed in the background; if another run took it
        // over meanwhile, leave the table to it (the files become orphans).
        if self.keeper.is_some_and(LeaseKeeper::lost) {
            return Err(busy());
        }
        match commit_replace(self.lakehouse, self.ident, &removed, added, props).await {
            Ok(outcome) => Ok(Some(GroupDone {
                how,
                spilled,
                attempts: outcome.attempts,
                files_in: removed.len(),
                files_out,
                bytes_in,
                bytes_out,
                rows,
            })),
            Err(CatalogError::Fenced { reason, .. }) => {
                // Its files were rewritten or deleted by someone else: the
                // written files become orphans, the table is untouched.
                tracing::warn!(table = %name, reason, "compaction group abandoned");
                Ok(None)
            }
            Err(e) if e.is_retryable() => {
                // Lost every race: the next run picks the files up again.
                tracing::warn!(table = %name, error = %e, "compaction group abandoned");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

struct Plan {
    groups: Vec<Vec<Candidate>>,
    /// Live data files in the snapshot planned from.
    live: usize,
    skipped_recent: usize,
}

/// Groups of files to rewrite together, per partition.
async fn plan(
    table: &Table,
    opts: &CompactOptions,
    target: u64,
    skip_recent: Option<Duration>,
) -> Result<Plan> {
    let name = table.identifier().to_string();
    let read_err = |e: iceberg::Error| MaintainError::Read {
        table: name.clone(),
        source: Box::new(e),
    };
    let mut out = Plan {
        groups: Vec::new(),
        live: 0,
        skipped_recent: 0,
    };
    let metadata = table.metadata();
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(out);
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(read_err)?;
    let mut by_partition: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    let refreshed = last_refresh(table);
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data {
            continue;
        }
        let loaded = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(read_err)?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            out.live += 1;
            if refreshed.is_some() && entry.snapshot_id() == refreshed {
                continue;
            }
            let file = entry.data_file();
            let added_ms = entry
                .snapshot_id()
                .and_then(|id| metadata.snapshot_by_id(id))
                .map_or(i64::MAX, |s| s.timestamp_ms());
            let key = format!("{}/{:?}", manifest.partition_spec_id, file.partition());
            by_partition.entry(key).or_default().push(Candidate {
                path: file.file_path().to_string(),
                size: file.file_size_in_bytes(),
                added_ms,
            });
        }
    }
    let recent_cutoff = skip_recent
        .map(|d| chrono::Utc::now().timestamp_millis() - d.as_millis() as i64)
        .unwrap_or(i64::MAX);
    for (_, files) in by_partition {
        if files.iter().any(|c| c.added_ms > recent_cutoff) {
            out.skipped_recent += 1;
            continue;
        }
        match &opts.layout {
            Layout::SortOrder => {
                let small = (target as f64 * opts.small_file_ratio) as u64;
                let files = files.into_iter().filter(|c| c.size < small).collect();
                out.groups
                    .extend(bin_pack(files, target, opts.min_input_files));
            }
            Layout::ZOrder(_) => {
                let clustered = |c: &Candidate| {
                    let base = c.path.rsplit('/').next().unwrap_or(&c.path);
                    base.starts_with(ZORDER_PREFIX)
                };
                if files.iter().all(clustered) {
                    continue;
                }
                out.groups.extend(bin_pack(files, opts.max_group_bytes, 1));
            }
        }
    }
    Ok(out)
}

/// The newest refresh snapshot of a materialized view (`None` for a
/// table). Compaction leaves the files it wrote alone: they hold the
/// newest buckets, which the next refresh recomputes, and it replaces every
/// file whose buckets meet what it recomputes — merged into the older files,
/// those would be rewritten whole on every refresh. They are compacted once
/// a later refresh has written newer ones.
fn last_refresh(table: &Table) -> Option<i64> {
    let metadata = table.metadata();
    if !metadata
        .properties()
        .contains_key(weir_catalog::MV_DEFINITION_PROPERTY)
    {
        return None;
    }
    weir_catalog::mv_last_refresh(metadata).map(|s| s.snapshot_id())
}

/// Packs files (smallest first) into groups of at most `max_bytes`; groups
/// with fewer than `min_files` files are dropped.
fn bin_pack(mut files: Vec<Candidate>, max_bytes: u64, min_files: usize) -> Vec<Vec<Candidate>> {
    files.sort_by_key(|c| c.size);
    let mut groups = Vec::new();
    let mut bin: Vec<Candidate> = Vec::new();
    let mut bin_bytes = 0;
    for file in files {
        if !bin.is_empty() && bin_bytes + file.size > max_bytes {
            if bin.len() >= min_files {
                groups.push(std::mem::take(&mut bin));
            }
            bin.clear();
            bin_bytes = 0;
        }
        bin_bytes += file.size;
        bin.push(file);
    }
    if bin.len() >= min_files {
        groups.push(bin);
    }
    groups
}

/// One group's files rewritten (not committed), in bounded memory for the
/// sort order (see `merge.rs`): merged when every file is already sorted,
/// else sorted with spilling past `sort_memory` bytes, or copied through
/// when the table has no sort order. Z-order sorts in memory (its groups
/// are bounded by `max_group_bytes`). Returns the files written, their
/// rows and how they were written (`None`: in memory).
async fn rewrite_group(
    table: &Table,
    tasks: Vec<FileScanTask>,
    group_bytes: u64,
    target: u64,
    layout: &Layout,
    sort_memory: usize,
) -> Result<(Vec<iceberg::spec::DataFile>, u64, Option<Rewrite>, u64)> {
    use crate::merge::{Merged, rewrite};
    let name = table.identifier().to_string();
    let files_out = group_bytes.div_ceil(target.max(1)).max(1);
    if *layout == Layout::SortOrder {
        let keys = weir_catalog::sort::sort_keys(table);
        let rows_in: u64 = tasks.iter().filter_map(|t| t.record_count).sum();
        let rows_per_file = rows_in.div_ceil(files_out).max(1) as usize;
        let mut how = if keys.is_empty() {
            Rewrite::Copied
        } else {
            Rewrite::Merged
        };
        loop {
            match rewrite(table, tasks.clone(), &keys, how, rows_per_file, "").await? {
                Merged::Written {
                    files,
                    rows,
                    spilled,
                } => return Ok((files, rows, Some(how), spilled)),
                Merged::Unsorted if matches!(how, Rewrite::Merged) => {
                    tracing::debug!(table = %name, "compaction input not in sort order: sorting the group");
                    how = Rewrite::Sorted {
                        memory: sort_memory,
                    };
                }
                Merged::Unsorted => {
                    return Err(MaintainError::Rewrite {
                        table: name,
                        message: "the sorted rewrite reported unsorted input".into(),
                    });
                }
            }
        }
    }
    let batches = read(table, tasks).await?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    // Sorting is CPU-bound: keep it off the async workers (inside
    // `weir serve` they also answer queries).
    let prefix = match layout {
        Layout::SortOrder => "",
        Layout::ZOrder(_) => ZORDER_PREFIX,
    };
    let (t, layout) = (table.clone(), layout.clone());
    let sorted = tokio::task::spawn_blocking(move || match &layout {
        Layout::SortOrder => sort_by_table_order(&t, &batches),
        Layout::ZOrder(columns) => z_order_batches(&t, &batches, columns),
    })
    .await
    .map_err(|e| MaintainError::Rewrite {
        table: name.clone(),
        message: format!("sort task failed: {e}"),
    })??;
    let added = write_sized(table, &sorted, group_bytes, target, prefix)
        .await
        .map_err(|e| MaintainError::Rewrite {
            table: name.clone(),
            message: e.to_string(),
        })?;
    Ok((added, rows, None, 0))
}

/// Scan tasks (with their delete files) of the current snapshot, by path.
async fn scan_tasks(table: &Table) -> Result<HashMap<String, FileScanTask>> {
    let name = table.identifier().to_string();
    let err = |e: iceberg::Error| MaintainError::Read {
        table: name.clone(),
        source: Box::new(e),
    };
    let scan = table.scan().select_all().build().map_err(err)?;
    let tasks: Vec<FileScanTask> = scan
        .plan_files()
        .await
        .map_err(err)?
        .try_collect()
        .await
        .map_err(err)?;
    Ok(tasks
        .into_iter()
        .map(|t| (t.data_file_path.clone(), t))
        .collect())
}

/// Reads files with the Iceberg reader (applies their delete files).
async fn read(table: &Table, tasks: Vec<FileScanTask>) -> Result<Vec<RecordBatch>> {
    let name = table.identifier().to_string();
    let err = |e: iceberg::Error| MaintainError::Read {
        table: name.clone(),
        source: Box::new(e),
    };
    let runtime = Runtime::try_current().map_err(err)?;
    let reader = ArrowReaderBuilder::new(table.file_io().clone(), runtime).build();
    let stream = futures::stream::iter(tasks.into_iter().map(Ok));
    reader
        .read(Box::pin(stream))
        .map_err(err)?
        .stream()
        .try_collect()
        .await
        .map_err(err)
}

/// Rows in the table's sort order (identity fields), as one batch, so files
/// get tight min/max statistics on the leading sort columns.
fn sort_by_table_order(table: &Table, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let rewrite = |e: arrow::error::ArrowError| MaintainError::Rewrite {
        table: table.identifier().to_string(),
        message: e.to_string(),
    };
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let keys = weir_catalog::sort::sort_keys(table);
    let sorted = weir_catalog::sort::sort_batches(batches, &keys).map_err(rewrite)?;
    Ok(vec![
        concat_batches(&first.schema(), &sorted).map_err(rewrite)?,
    ])
}

/// Rows in Z-order over `columns`.
fn z_order_batches(
    table: &Table,
    batches: &[RecordBatch],
    columns: &[String],
) -> Result<Vec<RecordBatch>> {
    let rewrite = |e: arrow::error::ArrowError| MaintainError::Rewrite {
        table: table.identifier().to_string(),
        message: e.to_string(),
    };
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let all = concat_batches(&first.schema(), batches).map_err(rewrite)?;
    Ok(vec![
        crate::zorder::z_order(&all, columns).map_err(rewrite)?,
    ])
}

/// Writes the ordered rows in files of about `target` bytes. The Parquet
/// writer's rolling size counts buffered rows uncompressed, so its files come
/// out several times smaller than the target (and would look "small" to the
/// next compaction); instead the rows are cut into equal runs by the input's
/// compressed size, and each run is written as one file.
async fn write_sized(
    table: &Table,
    sorted: &[RecordBatch],
    bytes_in: u64,
    target: u64,
    prefix: &str,
) -> iceberg::Result<Vec<iceberg::spec::DataFile>> {
    let rows: usize = sorted.iter().map(RecordBatch::num_rows).sum();
    let files = bytes_in.div_ceil(target.max(1)).max(1) as usize;
    let per_file = rows.div_ceil(files).max(1);
    let mut out = Vec::new();
    for batch in sorted {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = per_file.min(batch.num_rows() - offset);
            let run = batch.slice(offset, len);
            out.extend(write_data_files_named(table, &[run], Some(usize::MAX), prefix).await?);
            offset += len;
        }
    }
    Ok(out)
}

impl CompactOptions {
    /// Compaction as the scheduler runs it: the table's defaults, leaving
    /// partitions younger than the policy's `skip_recent` alone.
    pub fn scheduled(on: &ScheduledTable<'_>) -> Self {
        CompactOptions {
            layout: Layout::SortOrder,
            skip_recent: on.policy.skip_recent,
            run_id: on.run_id.to_string(),
            ..Default::default()
        }
    }

    /// Clustering as the scheduler runs it: over the table's
    /// `weir.cluster.columns`; `None` for tables without them (or that
    /// cannot be loaded).
    pub async fn scheduled_clustering(on: &ScheduledTable<'_>) -> Option<Self> {
        let properties = on.properties().await?;
        let columns = properties.get(CLUSTER_COLUMNS_PROPERTY)?;
        Some(CompactOptions {
            layout: Layout::ZOrder(columns.split(',').map(|c| c.trim().to_string()).collect()),
            ..CompactOptions::scheduled(on)
        })
    }
}

#[async_trait::async_trait]
impl MaintenanceJob for CompactOptions {
    fn name(&self) -> &'static str {
        match self.layout {
            Layout::SortOrder => Job::Compact.name(),
            Layout::ZOrder(_) => Job::Cluster.name(),
        }
    }

    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        Ok(compact_table(ctx.lakehouse, ident, self, ctx.progress)
            .await?
            .into())
    }
}

impl Report for CompactReport {
    fn summary(&self) -> String {
        let spilled = if self.bytes_spilled > 0 {
            format!(", {} MiB spilled by the sort", self.bytes_spilled >> 20)
        } else {
            String::new()
        };
        format!(
            "{} files → {}, {} rows, {:.1} s{spilled}",
            self.files_in, self.files_out, self.rows, self.seconds
        )
    }

    fn detail(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would rewrite" } else { "rewrote" };
        format!(
            "{} ({}): {verb} {} of {} files ({:.1} MiB) into {} files ({:.1} MiB), {} rows, {} groups committed, {} abandoned, {} recent partitions skipped, {:.2} s ({:.1} MiB/s)",
            self.table,
            self.job,
            self.files_in,
            self.files_before,
            mib(self.bytes_in),
            self.files_out,
            mib(self.bytes_out),
            self.rows,
            self.groups_committed,
            self.groups_abandoned,
            self.partitions_skipped_recent,
            self.seconds,
            mib(self.bytes_in) / self.seconds.max(1e-9),
        )
    }
}
