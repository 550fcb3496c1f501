//! `rewrite-manifests`: merge a table's small data manifests on demand.
//! Appends through Weir already merge once a table reaches its
//! `commit.manifest.min-count-to-merge`; this job merges below that (e.g.
//! tables written by other engines, or before a benchmark).

use std::time::Instant;

use iceberg::TableIdent;
use serde::Serialize;
use weir_catalog::{Lakehouse, MergePolicy, rewrite_manifests};

use crate::job::{JobContext, JobReport, MaintenanceJob, Report};
use crate::schedule::JobError;
use crate::{MaintainError, Result};

#[derive(Debug, Clone)]
pub struct ManifestOptions {
    /// Merge a partition spec's small manifests once it has this many (≥ 2).
    pub min_count: usize,
    /// Manifests below this size are merged; merged ones are cut near it
    /// (default: the table's `commit.manifest.target-size-bytes`).
    pub target_bytes: Option<u64>,
    pub dry_run: bool,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        Self {
            min_count: 2,
            target_bytes: None,
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ManifestReport {
    pub table: String,
    pub manifests_before: usize,
    pub manifests_after: usize,
    pub manifests_merged: usize,
    pub snapshot_id: Option<i64>,
    pub dry_run: bool,
    pub seconds: f64,
}

pub async fn merge_table_manifests(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &ManifestOptions,
) -> Result<ManifestReport> {
    let started = Instant::now();
    let name = ident.to_string();
    let read = |e: iceberg::Error| MaintainError::Read {
        table: name.clone(),
        source: Box::new(e),
    };
    let table = lakehouse.catalog().load_table(ident).await.map_err(read)?;
    let mut policy = MergePolicy::for_table(&table).unwrap_or_default();
    policy.min_count = opts.min_count.max(2);
    if let Some(target) = opts.target_bytes {
        policy.target_bytes = target.max(1);
    }
    let count = |t: &iceberg::table::Table| {
        let t = t.clone();
        async move {
            match t.metadata().current_snapshot() {
                Some(s) => t
                    .manifest_list_reader(s)
                    .load()
                    .await
                    .map(|l| (l.entries().len(), policy.mergeable(l.entries()).len())),
                None => Ok((0, 0)),
            }
        }
    };
    let (before, mergeable) = count(&table).await.map_err(read)?;
    let mut report = ManifestReport {
        table: name.clone(),
        manifests_before: before,
        manifests_after: before,
        manifests_merged: 0,
        snapshot_id: None,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run || mergeable == 0 {
        report.manifests_merged = mergeable;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    if let Some(outcome) = rewrite_manifests(lakehouse, ident, policy).await? {
        let summary = outcome
            .table
            .metadata()
            .snapshot_by_id(outcome.snapshot_id)
            .map(|s| s.summary().additional_properties.clone())
            .unwrap_or_default();
        report.manifests_merged = summary
            .get("manifests-replaced")
            .and_then(|v| v.parse().ok())
            .unwrap_or_default();
        report.manifests_after = count(&outcome.table).await.map_err(read)?.0;
        report.snapshot_id = Some(outcome.snapshot_id);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

impl ManifestOptions {
    /// The job's name (`weir maintain rewrite-manifests`; not scheduled).
    pub const NAME: &'static str = "rewrite_manifests";
}

#[async_trait::async_trait]
impl MaintenanceJob for ManifestOptions {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        Ok(merge_table_manifests(ctx.lakehouse, ident, self)
            .await?
            .into())
    }
}

impl Report for ManifestReport {
    fn summary(&self) -> String {
        format!(
            "{} small manifests merged; {} → {} manifests",
            self.manifests_merged, self.manifests_before, self.manifests_after
        )
    }

    fn detail(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would merge" } else { "merged" };
        format!(
            "{}: {verb} {} small manifests; {} → {} manifests, {:.2} s",
            self.table,
            self.manifests_merged,
            self.manifests_before,
            self.manifests_after,
            self.seconds,
        )
    }
}
