//! One definition per maintenance job: the [`MaintenanceJob`] trait, which
//! the scheduler (`schedule.rs`) and `weir maintain <job>` both run jobs
//! through, and the [`JobReport`] every run returns.
//!
//! A job is its options type ([`CompactOptions`](crate::CompactOptions) for
//! `compact` and `cluster`, [`ExpireOptions`](crate::ExpireOptions),
//! [`OrphanOptions`](crate::OrphanOptions),
//! [`RetentionOptions`](crate::RetentionOptions),
//! [`ManifestOptions`](crate::ManifestOptions),
//! [`RefreshJob`](crate::refresh::RefreshJob)): it knows its name, how the
//! scheduler builds it from a table's `[policy]` and properties (a
//! `scheduled` constructor beside the type), and how it runs on one table.
//! Its report type implements [`Report`]: the one-line summary the scheduler
//! logs and shows, the line `weir maintain` prints, and the JSON object of
//! `weir maintain --json`.

use std::collections::HashMap;
use std::fmt::Debug;

use iceberg::TableIdent;
use weir_catalog::Lakehouse;

use crate::schedule::{JobError, TablePolicy};
use crate::{Progress, Result};

/// What a job runs with besides its options.
pub struct JobContext<'a> {
    pub lakehouse: &'a Lakehouse,
    /// Progress of jobs that rewrite data (compaction, clustering), for a
    /// progress bar; the scheduler ignores it.
    pub progress: &'a (dyn Fn(&Progress) + Sync),
}

impl<'a> JobContext<'a> {
    /// A context without progress reports.
    pub fn new(lakehouse: &'a Lakehouse) -> Self {
        JobContext {
            lakehouse,
            progress: &|_| {},
        }
    }
}

/// A maintenance job with its options, ready to run on any table.
///
/// To add a job: give it an options type implementing this trait and a
/// report type implementing [`Report`] (in the job's module), a `scheduled`
/// constructor reading the options from a [`ScheduledTable`] if the
/// scheduler runs it (plus a [`Job`](crate::schedule::Job) variant, its
/// default interval and one arm in `Job::for_table`), and a `weir maintain`
/// subcommand that builds the options from its flags and hands them to the
/// CLI's shared runner.
#[async_trait::async_trait]
pub trait MaintenanceJob: Send + Sync {
    /// The job's name: `<name>_every` in a `[policy]`, the `job` label of
    /// `weir_maintenance_runs_total` and the other maintenance metrics, logs.
    fn name(&self) -> &'static str;

    /// Runs the job on one table.
    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError>;
}

/// A table the scheduler is about to run a job on: what the job's
/// `scheduled` constructor reads its options from.
pub struct ScheduledTable<'a> {
    pub lakehouse: &'a Lakehouse,
    pub ident: &'a TableIdent,
    pub policy: &'a TablePolicy,
    /// Identifies the scheduler's runs (lease owner).
    pub run_id: &'a str,
}

impl ScheduledTable<'_> {
    /// The table's properties, or `None` when it cannot be loaded (the job
    /// is then skipped this time).
    pub async fn properties(&self) -> Option<HashMap<String, String>> {
        let table = self.lakehouse.catalog().load_table(self.ident).await.ok()?;
        Some(table.metadata().properties().clone())
    }
}

/// What one run of a job did, as its report type tells it.
pub trait Report: ReportJson + Debug + Send + Sync {
    /// The one-line summary the scheduler logs and keeps as the job's last
    /// outcome.
    fn summary(&self) -> String;

    /// The line `weir maintain <job>` prints for the table (`dry_run`: what
    /// the job would have done).
    fn detail(&self, dry_run: bool) -> String;
}

/// The JSON side of [`Report`], for every serializable report type.
pub trait ReportJson {
    /// One JSON object, as in the array `weir maintain <job> --json` prints.
    fn to_json(&self) -> serde_json::Result<String>;
}

impl<T: serde::Serialize> ReportJson for T {
    fn to_json(&self) -> serde_json::Result<String> {
        serde_json::to_string(self)
    }
}

/// What one run of a [`MaintenanceJob`] did.
#[derive(Debug)]
pub struct JobReport(Box<dyn Report>);

impl<R: Report + 'static> From<R> for JobReport {
    fn from(report: R) -> Self {
        JobReport(Box::new(report))
    }
}

impl JobReport {
    /// See [`Report::summary`].
    pub fn summary(&self) -> String {
        self.0.summary()
    }

    /// See [`Report::detail`].
    pub fn detail(&self, dry_run: bool) -> String {
        self.0.detail(dry_run)
    }

    /// The report as a JSON object.
    pub fn to_json(&self) -> serde_json::Result<String> {
        self.0.to_json()
    }

    /// Reports as the JSON array `weir maintain <job> --json` prints.
    pub fn json_array(reports: &[JobReport]) -> serde_json::Result<String> {
        let objects = reports
            .iter()
            .map(JobReport::to_json)
            .collect::<serde_json::Result<Vec<_>>>()?;
        Ok(format!("[{}]", objects.join(",")))
    }
}

/// Sizes in reports' lines.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ExpireReport, OrphanReport};

    #[test]
    fn json_arrays_read_as_serde_json_writes_them() {
        let reports = vec![
            ExpireReport {
                table: "silver.p".into(),
                seconds: 0.5,
                ..Default::default()
            },
            ExpireReport {
                table: "gold.q".into(),
                ..Default::default()
            },
        ];
        let ours: Vec<JobReport> = reports.iter().cloned().map(JobReport::from).collect();
        assert_eq!(
            JobReport::json_array(&ours).unwrap(),
            serde_json::to_string(&reports).unwrap()
        );
        assert_eq!(JobReport::json_array(&[]).unwrap(), "[]");
        let orphans = JobReport::from(OrphanReport {
            table: "silver.p".into(),
            orphans_deleted: 3,
            ..Default::default()
        });
        assert_eq!(orphans.summary(), "3 orphans deleted");
    }
}
