//! Maintenance started from the Tables page (admin): compaction, snapshot
//! expiry and a materialized view's refresh — the same [`MaintenanceJob`]s
//! `weir maintain` and the scheduler run (leases keep them apart) — with
//! their progress and outcome for the page to poll.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use weir_flight::Principal;
use weir_maintain::{
    CompactOptions, ExpireOptions, JobContext, JobReport, MaintenanceJob, Progress, RefreshJob,
};
use weir_observe::HttpResponse;

use crate::Inner;
use crate::tables::ident_of;
use crate::web::{ApiError, ok, read_json};

/// Finished jobs remembered for the page.
const REMEMBERED: usize = 200;

#[derive(Default)]
pub(crate) struct Jobs(Arc<Mutex<JobList>>);

#[derive(Default)]
struct JobList {
    next_id: u64,
    jobs: VecDeque<serde_json::Map<String, serde_json::Value>>,
}

fn lock(list: &Mutex<JobList>) -> MutexGuard<'_, JobList> {
    list.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Jobs {
    fn update(&self, id: u64, fields: serde_json::Value) {
        let mut list = lock(&self.0);
        if let Some(job) = list
            .jobs
            .iter_mut()
            .find(|j| j.get("id").and_then(|v| v.as_u64()) == Some(id))
            && let serde_json::Value::Object(fields) = fields
        {
            job.extend(fields);
        }
    }

    /// The jobs on `table`, newest first.
    pub(crate) fn for_table(&self, table: &str) -> Vec<serde_json::Value> {
        lock(&self.0)
            .jobs
            .iter()
            .rev()
            .filter(|j| j.get("table").and_then(|v| v.as_str()) == Some(table))
            .map(|j| serde_json::Value::Object(j.clone()))
            .collect()
    }
}

/// `GET /api/jobs`: newest first.
pub(crate) fn list(inner: &Inner) -> Result<HttpResponse, ApiError> {
    let jobs: Vec<serde_json::Value> = lock(&inner.jobs.0)
        .jobs
        .iter()
        .rev()
        .map(|j| serde_json::Value::Object(j.clone()))
        .collect();
    ok(serde_json::json!({ "jobs": jobs }))
}

#[derive(Deserialize)]
struct StartRequest {
    namespace: String,
    table: String,
    /// `compact`, `expire` or `refresh`.
    kind: String,
}

/// `POST /api/jobs {namespace, table, kind}` (admin): starts the job and
/// answers with its id at once.
pub(crate) async fn start(
    inner: &Inner,
    principal: Principal,
    req: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let body: StartRequest = read_json(req).await?;
    let ident = ident_of(&body.namespace, &body.table)?;
    let job: Box<dyn MaintenanceJob> = match body.kind.as_str() {
        "compact" => Box::new(CompactOptions::default()),
        "expire" => Box::new(ExpireOptions::default()),
        "refresh" => Box::new(RefreshJob {
            refresher: inner.refresher.clone(),
        }),
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown job {other:?} (compact, expire or refresh)"
            )));
        }
    };
    let kind = job.name();
    let lakehouse = inner.engine.lakehouse().clone();
    lakehouse
        .load_table_cached(&ident)
        .await
        .map_err(|e| ApiError::not_found(format!("no table {ident}: {e}")))?;
    let id = {
        let mut list = lock(&inner.jobs.0);
        list.next_id += 1;
        let id = list.next_id;
        let mut job = serde_json::Map::new();
        job.insert("id".into(), id.into());
        job.insert("table".into(), ident.to_string().into());
        job.insert("kind".into(), kind.into());
        job.insert("user".into(), principal.name.to_string().into());
        job.insert("state".into(), "running".into());
        job.insert("started_ms".into(), now_ms().into());
        list.jobs.push_back(job);
        while list.jobs.len() > REMEMBERED {
            list.jobs.pop_front();
        }
        id
    };
    tracing::info!(user = %principal.name, job = kind, table = %ident, "console: maintenance job started");
    let jobs = Jobs(inner.jobs.0.clone());
    tokio::spawn(async move {
        let started = Instant::now();
        let progress = |p: &Progress| {
            jobs.update(
                id,
                serde_json::json!({"progress": {
                    "groups_done": p.groups_done, "groups_total": p.groups_total,
                    "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
                }}),
            )
        };
        let ctx = JobContext {
            lakehouse: &lakehouse,
            progress: &progress,
        };
        let outcome = job
            .run(&ctx, &ident)
            .await
            .map_err(|e| e.to_string())
            .and_then(|r: JobReport| report_json(&r).map_err(|e| e.to_string()));
        weir_maintain::record_job_run(kind, started.elapsed(), outcome.is_ok());
        let fields = match outcome {
            Ok(report) => serde_json::json!({
                "state": "succeeded", "report": report, "finished_ms": now_ms(),
            }),
            Err(error) => {
                tracing::warn!(job = kind, table = %ident, %error, "console: maintenance job failed");
                serde_json::json!({"state": "failed", "error": error, "finished_ms": now_ms()})
            }
        };
        jobs.update(id, fields);
    });
    ok(serde_json::json!({ "id": id }))
}

/// A job's report as the JSON object the page shows.
fn report_json(report: &JobReport) -> serde_json::Result<serde_json::Value> {
    serde_json::from_str(&report.to_json()?)
}
