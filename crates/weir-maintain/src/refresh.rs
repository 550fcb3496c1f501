//! Materialized-view refreshes as a scheduled job. The refresh itself is the
//! query layer's (maintenance does not depend on query): it hands the
//! scheduler a [`Refresher`].

use iceberg::TableIdent;
use serde::Serialize;

use crate::job::{JobContext, JobReport, MaintenanceJob, Report, ScheduledTable};
use crate::schedule::{Job, JobError};

/// A refresher's failure, as the query layer reports it (maintenance does
/// not depend on query, so its error type is not known here).
pub type RefreshError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Refreshes the materialized view named `ns.t`: the query layer provides it
/// (maintenance does not depend on query); `Ok` carries a summary line.
pub type Refresher = std::sync::Arc<
    dyn Fn(TableIdent) -> futures::future::BoxFuture<'static, Result<String, RefreshError>>
        + Send
        + Sync,
>;

/// Refreshes a materialized view through the query layer's [`Refresher`].
pub struct RefreshJob {
    pub refresher: Refresher,
}

impl RefreshJob {
    /// The refresh as the scheduler runs it: `None` without a refresher, or
    /// when the table is no materialized view (or cannot be loaded).
    pub async fn scheduled(on: &ScheduledTable<'_>, refresher: Option<&Refresher>) -> Option<Self> {
        let refresher = refresher?.clone();
        let properties = on.properties().await?;
        properties
            .contains_key(weir_catalog::MV_DEFINITION_PROPERTY)
            .then_some(RefreshJob { refresher })
    }
}

#[async_trait::async_trait]
impl MaintenanceJob for RefreshJob {
    fn name(&self) -> &'static str {
        Job::Refresh.name()
    }

    async fn run(&self, _ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        let summary = (self.refresher)(ident.clone())
            .await
            .map_err(JobError::Refresh)?;
        Ok(RefreshReport {
            table: ident.to_string(),
            summary,
        }
        .into())
    }
}

/// What a refresh did, in the query layer's words.
#[derive(Debug, Clone, Serialize)]
pub struct RefreshReport {
    pub table: String,
    pub summary: String,
}

impl Report for RefreshReport {
    fn summary(&self) -> String {
        self.summary.clone()
    }

    fn detail(&self, _dry_run: bool) -> String {
        format!("{}: refreshed, {}", self.table, self.summary)
    }
}
