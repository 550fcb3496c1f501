//! Snapshot expiry: drop old snapshots from the table metadata, then delete
//! the files only they referenced.
//!
//! A snapshot is kept when any of these holds:
//! - a branch or tag points at it, or it is the current snapshot;
//! - it is among the newest `retain_last` snapshots of the main lineage;
//! - it stopped being the head less than `older_than` ago (so a query that
//!   started within that window, or time travel to any instant in it, still
//!   finds every file) — measured from when its successor was committed, not
//!   from its own timestamp, which may be much older;
//! - it carries the newest watermark of a source partition (the streaming
//!   writer resumes from watermarks; expiring them would re-ingest).
//!
//! The metadata commit comes first; files are deleted only after it landed.
//! A crash in between leaves unreferenced files for orphan cleanup.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use serde::Serialize;
use weir_catalog::Watermarks;
use weir_catalog::watermark::{table_sources, table_watermarks};
use weir_catalog::{Lakehouse, commit_metadata};

use crate::Result;
use crate::job::{JobContext, JobReport, MaintenanceJob, Report, ScheduledTable, mib};
use crate::reach::Reach;
use crate::schedule::{Job, JobError};

/// Iceberg's table properties for expiry; flags override them.
pub const MAX_AGE_PROPERTY: &str = "history.expire.max-snapshot-age-ms";
pub const MIN_KEEP_PROPERTY: &str = "history.expire.min-snapshots-to-keep";
/// Weir's defaults when neither flag nor property is set.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_RETAIN_LAST: usize = 10;

#[derive(Debug, Clone)]
pub struct ExpireOptions {
    /// Keep snapshots superseded less than this long ago (default: table
    /// property, else one day).
    pub older_than: Option<Duration>,
    /// Always keep this many newest snapshots (default: table property, else 10).
    pub retain_last: Option<usize>,
    pub dry_run: bool,
    /// Identifies this run (lease owner).
    pub run_id: String,
}

impl Default for ExpireOptions {
    fn default() -> Self {
        ExpireOptions {
            older_than: None,
            retain_last: None,
            dry_run: false,
            run_id: weir_catalog::Leases::holder_id(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ExpireReport {
    pub table: String,
    pub dry_run: bool,
    pub snapshots_before: usize,
    pub snapshots_expired: usize,
    pub manifest_lists_deleted: usize,
    pub manifests_deleted: usize,
    pub data_files_deleted: usize,
    pub bytes_deleted: u64,
    pub seconds: f64,
}

/// Expires snapshots of one table; one run per table at a time (lease).
pub async fn expire_snapshots(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &ExpireOptions,
) -> Result<ExpireReport> {
    let lease = format!("expire:{ident}");
    let ttl = Duration::from_secs(600);
    if !lakehouse
        .leases()
        .acquire(&lease, &opts.run_id, ttl)
        .await?
    {
        return Err(crate::MaintainError::Busy {
            job: "expiry",
            table: ident.to_string(),
            lease,
        });
    }
    let result = run(lakehouse, ident, opts).await;
    lakehouse.leases().release(&lease, &opts.run_id).await?;
    result
}

async fn run(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &ExpireOptions,
) -> Result<ExpireReport> {
    let started = Instant::now();
    let mut report = ExpireReport {
        table: ident.to_string(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut before: Option<Table> = None;
    let mut expired: Vec<i64> = Vec::new();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let change = |table: &Table| -> weir_catalog::Result<Option<TableMetadata>> {
        let ids = choose(table, opts, now_ms);
        before = Some(table.clone());
        expired = ids.clone();
        if ids.is_empty() || opts.dry_run {
            return Ok(None);
        }
        let metadata = table
            .metadata()
            .clone()
            .into_builder(table.metadata_location().map(str::to_string))
            .remove_snapshots(&ids)
            .build()
            .map_err(|e| weir_catalog::CatalogError::iceberg(ident.to_string(), e))?
            .metadata;
        Ok(Some(metadata))
    };
    let after = commit_metadata(lakehouse, ident, change).await?;
    let before = before.expect("the change ran at least once");
    report.snapshots_before = before.metadata().snapshots().len();
    report.snapshots_expired = expired.len();
    if expired.is_empty() {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    // Files referenced only by expired snapshots. With --dry-run nothing was
    // committed; count against the metadata as it would have been.
    let after = after.unwrap_or_else(|| before.clone());
    let doomed = doomed_files(&before, &after, &expired).await?;
    let io = after.file_io();
    for (path, (size, kind)) in &doomed {
        if !opts.dry_run
            && let Err(e) = io.delete(path).await
        {
            // Left for orphan cleanup; expiry itself already committed.
            tracing::warn!(path, error = %e, "could not delete an expired file");
            continue;
        }
        report.bytes_deleted += size;
        match kind {
            Kind::List => report.manifest_lists_deleted += 1,
            Kind::Manifest => report.manifests_deleted += 1,
            Kind::Data => report.data_files_deleted += 1,
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The files (with their sizes and kinds) that the `expired` snapshots of
/// `before` reference and no snapshot of `after` does.
async fn doomed_files(
    before: &Table,
    after: &Table,
    expired: &[i64],
) -> Result<HashMap<String, (u64, Kind)>> {
    let kept: Vec<i64> = after
        .metadata()
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| !expired.contains(id))
        .collect();
    let mut reach = Reach::new(after);
    let live = reach.referenced(after, kept.iter().copied()).await?;
    let mut doomed: HashMap<String, (u64, Kind)> = HashMap::new();
    for id in expired {
        let (list, manifests) = reach.manifest_list(before, *id).await?;
        doomed.insert(list, (0, Kind::List));
        for m in manifests {
            if live.contains(&m.manifest_path) {
                continue;
            }
            doomed.insert(
                m.manifest_path.clone(),
                (m.manifest_length as u64, Kind::Manifest),
            );
            let files = reach.manifest(&m).await?;
            for (path, size) in files.alive.iter().chain(&files.deleted) {
                doomed.insert(path.clone(), (*size, Kind::Data));
            }
        }
    }
    doomed.retain(|path, _| !live.contains(path));
    Ok(doomed)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    List,
    Manifest,
    Data,
}

/// Snapshot ids to expire.
fn choose(table: &Table, opts: &ExpireOptions, now_ms: i64) -> Vec<i64> {
    let metadata = table.metadata();
    let props = metadata.properties();
    let max_age = opts
        .older_than
        .or_else(|| {
            props
                .get(MAX_AGE_PROPERTY)
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis)
        })
        .unwrap_or(DEFAULT_MAX_AGE);
    let retain_last = opts
        .retain_last
        .or_else(|| props.get(MIN_KEEP_PROPERTY).and_then(|v| v.parse().ok()))
        .unwrap_or(DEFAULT_RETAIN_LAST)
        .max(1);
    let cutoff = now_ms - max_age.as_millis() as i64;

    let mut keep: HashSet<i64> = ref_heads(metadata);
    keep.extend(metadata.current_snapshot_id());
    // Main lineage, newest first.
    let mut lineage = Vec::new();
    let mut next = metadata.current_snapshot();
    while let Some(s) = next {
        lineage.push(s.clone());
        next = s
            .parent_snapshot_id()
            .and_then(|p| metadata.snapshot_by_id(p));
    }
    let mut superseded_at: HashMap<i64, i64> = HashMap::new();
    for pair in lineage.windows(2) {
        superseded_at.insert(pair[1].snapshot_id(), pair[0].timestamp_ms());
    }
    keep.extend(lineage.iter().take(retain_last).map(|s| s.snapshot_id()));
    for s in metadata.snapshots() {
        let when = superseded_at
            .get(&s.snapshot_id())
            .copied()
            .unwrap_or(s.timestamp_ms());
        if when >= cutoff {
            keep.insert(s.snapshot_id());
        }
    }
    // Watermarks are read by walking parents from the head, so the lineage
    // is kept unbroken down to the newest snapshot carrying each partition's
    // watermark (Weir's own commits carry the full set, so that is usually
    // the head itself).
    let mut deepest = 0;
    for source in table_sources(table) {
        let merged = table_watermarks(table, &source);
        let mut wanted: BTreeSet<(String, i32)> = merged
            .streams()
            .flat_map(|(stream, parts)| parts.keys().map(move |p| (stream.to_string(), *p)))
            .collect();
        for (depth, s) in lineage.iter().enumerate() {
            if wanted.is_empty() {
                break;
            }
            let marks = Watermarks::from_properties(&source, &s.summary().additional_properties);
            let before = wanted.len();
            wanted.retain(|(stream, p)| marks.get(stream, *p).is_none());
            if wanted.len() < before {
                deepest = deepest.max(depth);
            }
        }
    }
    keep.extend(lineage.iter().take(deepest + 1).map(|s| s.snapshot_id()));
    let mut out: Vec<i64> = metadata
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| !keep.contains(id))
        .collect();
    out.sort_unstable();
    out
}

/// Snapshots that branches and tags point at. iceberg-rust 0.10 keeps the
/// refs map private (only `snapshot_for_ref(name)`), so the names are read
/// from the metadata's JSON form.
fn ref_heads(metadata: &TableMetadata) -> HashSet<i64> {
    let json = serde_json::to_value(metadata).unwrap_or_default();
    json.get("refs")
        .and_then(|r| r.as_object())
        .map(|refs| {
            refs.keys()
                .filter_map(|name| metadata.snapshot_for_ref(name))
                .map(|s| s.snapshot_id())
                .collect()
        })
        .unwrap_or_default()
}

impl ExpireOptions {
    /// Expiry as the scheduler runs it: the table's (else Weir's) ages.
    pub fn scheduled(on: &ScheduledTable<'_>) -> Self {
        ExpireOptions {
            run_id: on.run_id.to_string(),
            ..Default::default()
        }
    }
}

#[async_trait::async_trait]
impl MaintenanceJob for ExpireOptions {
    fn name(&self) -> &'static str {
        Job::Expire.name()
    }

    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        Ok(expire_snapshots(ctx.lakehouse, ident, self).await?.into())
    }
}

impl Report for ExpireReport {
    fn summary(&self) -> String {
        format!(
            "{} snapshots expired, {} data files deleted",
            self.snapshots_expired, self.data_files_deleted
        )
    }

    fn detail(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would expire" } else { "expired" };
        format!(
            "{}: {verb} {} of {} snapshots; deleted {} manifest lists, {} manifests, {} data files ({:.1} MiB), {:.2} s",
            self.table,
            self.snapshots_expired,
            self.snapshots_before,
            self.manifest_lists_deleted,
            self.manifests_deleted,
            self.data_files_deleted,
            mib(self.bytes_deleted),
            self.seconds,
        )
    }
}
