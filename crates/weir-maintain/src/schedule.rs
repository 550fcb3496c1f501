//! Scheduled maintenance inside `weir serve`: per-table policies (the
//! `[policy]` block of `catalog/<ns>/<t>.toml`, defaults for other tables)
//! say how often each job runs. Jobs run one at a time, so maintenance never
//! takes more than one core from queries and ingest; the per-table leases
//! keep them apart from `weir maintain` runs of other processes.
//!
//! ```toml
//! [policy]
//! retention_days = 183
//! retention_requires = ["gold.points_1h"]
//! compact_every = "10m"     # "off" disables a job
//! cluster_every = "6h"      # only tables with weir.cluster.columns
//! expire_every = "1h"
//! orphans_every = "1d"
//! retention_every = "1d"
//! refresh_every = "15m"     # materialized views (tables with weir.mv.definition)
//! skip_recent = "0s"        # compaction/clustering leave younger partitions alone
//! ```

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use iceberg::{NamespaceIdent, TableIdent};
use tokio::sync::watch;
use tokio::time::Instant;
use weir_catalog::Lakehouse;

use crate::job::{JobContext, MaintenanceJob, ScheduledTable};
use crate::refresh::RefreshJob;
pub use crate::refresh::{RefreshError, Refresher};
use crate::{CompactOptions, ExpireOptions, MaintainError, OrphanOptions, RetentionOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    Compact,
    Cluster,
    Expire,
    Orphans,
    Refresh,
    Retention,
}

impl Job {
    /// In the order they run on a tick: a view refresh comes before
    /// retention, which may be waiting for it.
    pub const ALL: [Job; 6] = [
        Job::Compact,
        Job::Cluster,
        Job::Expire,
        Job::Orphans,
        Job::Refresh,
        Job::Retention,
    ];

    /// The job's name in metrics and logs; `<name>_every` in a `[policy]`.
    pub fn name(self) -> &'static str {
        match self {
            Job::Compact => "compact",
            Job::Cluster => "cluster",
            Job::Expire => "expire",
            Job::Orphans => "orphans",
            Job::Refresh => "refresh",
            Job::Retention => "retention",
        }
    }

    /// The job as the scheduler runs it on `on`, with its options read from
    /// the table's policy and properties; `None` when it does not apply to
    /// the table (no clustering columns, not a view, no retention).
    pub async fn for_table(
        self,
        on: &ScheduledTable<'_>,
        refresher: Option<&Refresher>,
    ) -> Option<Box<dyn MaintenanceJob>> {
        fn boxed(job: impl MaintenanceJob + 'static) -> Box<dyn MaintenanceJob> {
            Box::new(job)
        }
        match self {
            Job::Compact => Some(boxed(CompactOptions::scheduled(on))),
            Job::Cluster => CompactOptions::scheduled_clustering(on).await.map(boxed),
            Job::Expire => Some(boxed(ExpireOptions::scheduled(on))),
            Job::Orphans => Some(boxed(OrphanOptions::default())),
            Job::Refresh => RefreshJob::scheduled(on, refresher).await.map(boxed),
            Job::Retention => RetentionOptions::scheduled(on).map(boxed),
        }
    }
}

/// How one table is maintained.
#[derive(Debug, Clone, PartialEq)]
pub struct TablePolicy {
    pub every: BTreeMap<Job, Option<Duration>>,
    pub retention: Option<Duration>,
    pub retention_requires: Vec<String>,
    pub skip_recent: Option<Duration>,
}

impl Default for TablePolicy {
    fn default() -> Self {
        let hours = |h: u64| Some(Duration::from_secs(h * 3600));
        TablePolicy {
            every: BTreeMap::from([
                (Job::Compact, Some(Duration::from_secs(600))),
                (Job::Cluster, hours(6)),
                (Job::Expire, hours(1)),
                (Job::Orphans, hours(24)),
                (Job::Refresh, Some(Duration::from_secs(15 * 60))),
                (Job::Retention, hours(24)),
            ]),
            retention: None,
            retention_requires: Vec::new(),
            skip_recent: None,
        }
    }
}

/// Why a `[policy]` block is refused (the message names the key).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy `{key}` = {value:?}: {source}")]
    BadDuration {
        key: String,
        value: String,
        source: humantime::DurationError,
    },
    #[error("policy `{key}` must be a duration such as \"10m\" or \"off\"")]
    NotADuration { key: String },
    #[error("policy `retention_days` must be a positive number")]
    RetentionDays,
    #[error("policy `retention_requires` must be a list of tables")]
    RetentionRequires,
    #[error("unknown policy key `{0}`")]
    UnknownKey(String),
}

/// Why a scheduled job failed; its `Display` is the job's error line.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Maintain(#[from] MaintainError),
    #[error(transparent)]
    Refresh(RefreshError),
}

/// A job's summary line, or why it failed.
pub type JobOutcome = Result<String, JobError>;

impl TablePolicy {
    /// Reads a `[policy]` block; unknown keys are an error (typos must not
    /// silently disable retention).
    pub fn from_toml(policy: &BTreeMap<String, toml::Value>) -> Result<Self, PolicyError> {
        let mut out = TablePolicy::default();
        let duration = |key: &str, v: &toml::Value| -> Result<Option<Duration>, PolicyError> {
            match v.as_str() {
                Some("off") => Ok(None),
                Some(s) => humantime::parse_duration(s).map(Some).map_err(|source| {
                    PolicyError::BadDuration {
                        key: key.to_string(),
                        value: s.to_string(),
                        source,
                    }
                }),
                None => Err(PolicyError::NotADuration {
                    key: key.to_string(),
                }),
            }
        };
        for (key, value) in policy {
            let every = key.strip_suffix("_every");
            if let Some(job) = Job::ALL.into_iter().find(|j| Some(j.name()) == every) {
                out.every.insert(job, duration(key, value)?);
                continue;
            }
            match key.as_str() {
                "retention_days" => {
                    let days = value
                        .as_integer()
                        .map(|d| d as f64)
                        .or_else(|| value.as_float())
                        .filter(|d| *d > 0.0)
                        .ok_or(PolicyError::RetentionDays)?;
                    out.retention = Some(Duration::from_secs_f64(days * 86400.0));
                }
                "retention_requires" => {
                    out.retention_requires = value
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_str().map(str::to_string))
                                .collect()
                        })
                        .ok_or(PolicyError::RetentionRequires)?;
                }
                "skip_recent" => out.skip_recent = duration(key, value)?,
                other => return Err(PolicyError::UnknownKey(other.to_string())),
            }
        }
        Ok(out)
    }
}

/// The last run and next due time of one job on one table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobStatus {
    /// Unix milliseconds.
    pub next_due_ms: Option<u64>,
    pub last_started_ms: Option<u64>,
    pub last_finished_ms: Option<u64>,
    pub last_ok: Option<bool>,
    /// The run's summary line, or its error.
    pub last_outcome: Option<String>,
}

/// What the scheduler did and will do, by table (`ns.t`) and job name, for
/// the web console. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct ScheduleStatus(
    std::sync::Arc<std::sync::Mutex<HashMap<String, BTreeMap<&'static str, JobStatus>>>>,
);

impl ScheduleStatus {
    fn update(&self, table: &str, job: Job, change: impl FnOnce(&mut JobStatus)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        change(
            map.entry(table.to_string())
                .or_default()
                .entry(job.name())
                .or_default(),
        );
    }

    /// The jobs of `table` (`ns.t`) the scheduler knows of, by job name.
    pub fn table(&self, table: &str) -> BTreeMap<&'static str, JobStatus> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(table).cloned().unwrap_or_default()
    }
}

fn unix_ms(at: std::time::SystemTime) -> Option<u64> {
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Runs the jobs of every table when they are due, until `stop` turns true.
pub struct Scheduler {
    pub lakehouse: Lakehouse,
    /// Policies of declared tables by `ns.t`; other tables get the default.
    pub policies: HashMap<String, TablePolicy>,
    /// How often to look for due jobs.
    pub tick: Duration,
    /// Namespaces whose tables are maintained.
    pub namespaces: Vec<String>,
    /// Refreshes materialized views; without it `refresh_every` is ignored.
    pub refresher: Option<Refresher>,
    /// Last and next run of each job, for whoever shows them.
    pub status: ScheduleStatus,
}

impl Scheduler {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let run_id = weir_catalog::Leases::holder_id();
        // Each job first runs one interval after start (a restart loop must
        // not turn into a maintenance storm).
        let started = Instant::now();
        let mut last: HashMap<(String, Job), Instant> = HashMap::new();
        loop {
            for ident in self.tables().await {
                let name = ident.to_string();
                let policy = self.policies.get(&name).cloned().unwrap_or_default();
                for job in Job::ALL {
                    if *stop.borrow() {
                        return;
                    }
                    let Some(every) = policy.every.get(&job).copied().flatten() else {
                        continue;
                    };
                    let since = last.get(&(name.clone(), job)).copied().unwrap_or(started);
                    if since.elapsed() < every {
                        let due = std::time::SystemTime::now() + (every - since.elapsed());
                        self.status
                            .update(&name, job, |s| s.next_due_ms = unix_ms(due));
                        continue;
                    }
                    last.insert((name.clone(), job), Instant::now());
                    let begun = std::time::SystemTime::now();
                    // A job stops at the next group/commit boundary when the
                    // server shuts down: racing it against `stop` would drop
                    // the future mid-commit, which is safe but wasteful.
                    let outcome = self.run_job(&ident, job, &policy, &run_id).await;
                    let finished = std::time::SystemTime::now();
                    self.status.update(&name, job, |s| {
                        s.next_due_ms = unix_ms(finished + every);
                        if let Some(outcome) = outcome {
                            s.last_started_ms = unix_ms(begun);
                            s.last_finished_ms = unix_ms(finished);
                            s.last_ok = Some(outcome.is_ok());
                            s.last_outcome = Some(match outcome {
                                Ok(summary) => summary,
                                Err(e) => e.to_string(),
                            });
                        }
                    });
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn tables(&self) -> Vec<TableIdent> {
        let mut out = Vec::new();
        for ns in &self.namespaces {
            match self
                .lakehouse
                .catalog()
                .list_tables(&NamespaceIdent::new(ns.clone()))
                .await
            {
                Ok(tables) => out.extend(tables),
                Err(e) => tracing::debug!(namespace = ns, error = %e, "cannot list tables"),
            }
        }
        out
    }

    /// Runs `job` on `ident`: its summary or error, or `None` when the job
    /// does not apply to the table.
    async fn run_job(
        &self,
        ident: &TableIdent,
        job: Job,
        policy: &TablePolicy,
        run_id: &str,
    ) -> Option<JobOutcome> {
        let started = std::time::Instant::now();
        let on = ScheduledTable {
            lakehouse: &self.lakehouse,
            ident,
            policy,
            run_id,
        };
        let task = job.for_table(&on, self.refresher.as_ref()).await?;
        let outcome = task
            .run(&JobContext::new(&self.lakehouse), ident)
            .await
            .map(|report| report.summary());
        let elapsed = started.elapsed();
        crate::record_job_run(task.name(), elapsed, outcome.is_ok());
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match &outcome {
            Ok(summary) => {
                tracing::info!(table = %ident, job = ?job, elapsed_ms, summary, "scheduled maintenance")
            }
            Err(error) => {
                tracing::warn!(table = %ident, job = ?job, elapsed_ms, error = %error, "scheduled maintenance failed")
            }
        }
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_errors_read_as_their_source() {
        let busy = JobError::from(MaintainError::Busy {
            job: "compact",
            table: "silver.p".into(),
            lease: "h-1-x".into(),
        });
        assert!(matches!(
            busy,
            JobError::Maintain(MaintainError::Busy { .. })
        ));
        assert_eq!(
            busy.to_string(),
            "compact on silver.p is already running in another process (lease h-1-x)"
        );
        let refresh = JobError::Refresh(Box::new(std::io::Error::other("view gone")));
        assert_eq!(refresh.to_string(), "view gone");
        let typo: BTreeMap<String, toml::Value> = toml::from_str("expire_every = 3").unwrap();
        assert!(matches!(
            TablePolicy::from_toml(&typo),
            Err(PolicyError::NotADuration { key }) if key == "expire_every"
        ));
    }

    #[test]
    fn jobs_are_named_as_their_policy_keys() {
        use crate::{Layout, ManifestOptions};
        let cluster = CompactOptions {
            layout: Layout::ZOrder(vec!["device_id".into()]),
            ..Default::default()
        };
        let named: [(&dyn MaintenanceJob, Job); 5] = [
            (&CompactOptions::default(), Job::Compact),
            (&cluster, Job::Cluster),
            (&ExpireOptions::default(), Job::Expire),
            (&OrphanOptions::default(), Job::Orphans),
            (&RetentionOptions::default(), Job::Retention),
        ];
        for (job, scheduled) in named {
            assert_eq!(job.name(), scheduled.name());
        }
        assert_eq!(ManifestOptions::default().name(), "rewrite_manifests");
        for job in Job::ALL {
            let key = format!("{}_every", job.name());
            let policy: BTreeMap<String, toml::Value> =
                toml::from_str(&format!("{key} = \"off\"")).unwrap();
            assert_eq!(TablePolicy::from_toml(&policy).unwrap().every[&job], None);
        }
    }

    #[test]
    fn policies_parse_with_defaults_and_reject_typos() {
        let policy: BTreeMap<String, toml::Value> = toml::from_str(
            "retention_days = 183\nretention_requires = [\"gold.points_1h\"]\ncompact_every = \"5m\"\ncluster_every = \"off\"",
        )
        .unwrap();
        let p = TablePolicy::from_toml(&policy).unwrap();
        assert_eq!(p.retention, Some(Duration::from_secs(183 * 86400)));
        assert_eq!(p.retention_requires, vec!["gold.points_1h".to_string()]);
        assert_eq!(p.every[&Job::Compact], Some(Duration::from_secs(300)));
        assert_eq!(p.every[&Job::Cluster], None);
        assert_eq!(p.every[&Job::Expire], Some(Duration::from_secs(3600)));
        let typo: BTreeMap<String, toml::Value> = toml::from_str("retention_dys = 3").unwrap();
        assert!(
            TablePolicy::from_toml(&typo)
                .unwrap_err()
                .to_string()
                .contains("retention_dys")
        );
    }
}
