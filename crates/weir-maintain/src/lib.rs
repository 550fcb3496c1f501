//! Weir table maintenance jobs (see README.md).
//!
//! Every job is defined once, as a type implementing [`MaintenanceJob`]
//! (module [`job`]): its name, how it runs on a table and the [`JobReport`]
//! it returns (the scheduler's one-line summary, `weir maintain`'s line and
//! JSON). The scheduler ([`schedule`]) builds jobs from each table's
//! `[policy]` (`Job::for_table`); `weir maintain <job>` builds them from its
//! flags; both run them through [`MaintenanceJob::run`].

pub mod compact;
pub mod expire;
pub mod job;
pub mod manifests;
mod merge;
pub mod metric_names;
pub mod orphans;
mod reach;
pub mod refresh;
pub mod retention;
pub mod schedule;
pub mod zorder;

pub use compact::{
    CLUSTER_COLUMNS_PROPERTY, CompactOptions, CompactReport, Layout, Progress, compact_table,
};
pub use expire::{ExpireOptions, ExpireReport, expire_snapshots};
pub use job::{JobContext, JobReport, MaintenanceJob, Report, ScheduledTable};
pub use manifests::{ManifestOptions, ManifestReport, merge_table_manifests};
pub use orphans::{OrphanOptions, OrphanReport, remove_orphans};
pub use refresh::{RefreshJob, RefreshReport};
pub use retention::{RetentionOptions, RetentionReport, apply_retention};
pub use schedule::{
    Job, JobError, JobOutcome, JobStatus, PolicyError, ScheduleStatus, Scheduler, TablePolicy,
};

#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(transparent)]
    Catalog(#[from] weir_catalog::CatalogError),
    #[error("reading {table}: {source}")]
    Read {
        table: String,
        source: Box<iceberg::Error>,
    },
    #[error("rewriting {table}: {message}")]
    Rewrite { table: String, message: String },
    /// Orphan cleanup cannot tell this table's files from those of a table
    /// whose location holds this one's, as that table cannot be read.
    #[error(
        "orphans of {table}: table {other} keeps files around it ({other_location}) and cannot be read: {reason}; nothing deleted"
    )]
    OverlappingTable {
        table: String,
        other: String,
        other_location: String,
        reason: String,
    },
    #[error("{job} on {table} is already running in another process (lease {lease})")]
    Busy {
        job: &'static str,
        table: String,
        lease: String,
    },
}

pub type Result<T, E = MaintainError> = std::result::Result<T, E>;

/// Records one job run (on one table, or one `weir maintain` command) in the
/// metrics: `weir_maintenance_runs_total{job, outcome}`,
/// `weir_maintenance_duration_seconds{job}`, `weir_maintenance_errors_total{job}`.
pub fn record_job_run(job: &'static str, elapsed: std::time::Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!(crate::metric_names::MAINTENANCE_RUNS_TOTAL, "job" => job, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(crate::metric_names::MAINTENANCE_DURATION_SECONDS, "job" => job)
        .record(elapsed.as_secs_f64());
    if !ok {
        metrics::counter!(crate::metric_names::MAINTENANCE_ERRORS_TOTAL, "job" => job).increment(1);
    }
}
