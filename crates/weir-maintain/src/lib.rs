//! Weir table maintenance jobs (see README.md).

pub mod compact;
pub mod expire;
pub mod manifests;
pub mod orphans;
mod reach;
pub mod retention;
pub mod schedule;
pub mod zorder;

pub use compact::{
    CLUSTER_COLUMNS_PROPERTY, CompactOptions, CompactReport, Layout, Progress, compact_table,
};
pub use expire::{ExpireOptions, ExpireReport, expire_snapshots};
pub use manifests::{ManifestOptions, ManifestReport, merge_table_manifests};
pub use orphans::{OrphanOptions, OrphanReport, remove_orphans};
pub use retention::{RetentionOptions, RetentionReport, apply_retention};
pub use schedule::{
    JobError, JobOutcome, JobStatus, PolicyError, ScheduleStatus, Scheduler, TablePolicy,
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

/// `host-pid-uuid`: identifies a maintenance run; a lease held by a dead
/// process on this host can be taken over at once.
pub fn run_id() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        uuid::Uuid::now_v7()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Takes the named lease, or takes it over when its holder is a process of
/// this host that no longer runs (e.g. killed with -9). Other holders keep it
/// until it expires.
pub async fn take_lease(
    lakehouse: &weir_catalog::Lakehouse,
    name: &str,
    run_id: &str,
    ttl: std::time::Duration,
) -> Result<bool> {
    if lakehouse.try_lease(name, run_id, ttl).await? {
        return Ok(true);
    }
    let Some(owner) = lakehouse.lease_owner(name).await? else {
        return Ok(lakehouse.try_lease(name, run_id, ttl).await?);
    };
    let prefix = format!("{}-", hostname());
    let dead = owner
        .strip_prefix(&prefix)
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
    if dead {
        tracing::warn!(
            lease = name,
            owner,
            "taking over the lease of a dead process"
        );
        return Ok(lakehouse.steal_lease(name, &owner, run_id, ttl).await?);
    }
    Ok(false)
}

/// Renews a held lease in the background (every quarter of its TTL) while a
/// long job runs, so a slow group never lets it lapse; `lost()` turns true
/// when a renewal was refused (someone took the lease over), and the job
/// must not commit. Stops renewing when dropped.
pub(crate) struct LeaseKeeper {
    lost: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseKeeper {
    pub(crate) fn start(
        lakehouse: &weir_catalog::Lakehouse,
        name: &str,
        run_id: &str,
        ttl: std::time::Duration,
    ) -> Self {
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (lakehouse, name, run_id, flag) = (
            lakehouse.clone(),
            name.to_string(),
            run_id.to_string(),
            lost.clone(),
        );
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 4);
            tick.tick().await;
            loop {
                tick.tick().await;
                match lakehouse.try_lease(&name, &run_id, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(lease = name, "lease taken over by another run");
                        flag.store(true, std::sync::atomic::Ordering::SeqCst);
                        return;
                    }
                    // A failed renewal is retried; the lease only lapses
                    // after its TTL.
                    Err(e) => tracing::warn!(lease = name, error = %e, "renewing the lease failed"),
                }
            }
        });
        LeaseKeeper { lost, task }
    }

    pub(crate) fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records one job run (on one table, or one `weir maintain` command) in the
/// metrics: `weir_maintenance_runs_total{job, outcome}`,
/// `weir_maintenance_duration_seconds{job}`, `weir_maintenance_errors_total{job}`.
pub fn record_job_run(job: &'static str, elapsed: std::time::Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("weir_maintenance_runs_total", "job" => job, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("weir_maintenance_duration_seconds", "job" => job)
        .record(elapsed.as_secs_f64());
    if !ok {
        metrics::counter!("weir_maintenance_errors_total", "job" => job).increment(1);
    }
}
