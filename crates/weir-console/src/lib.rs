// The futures of the console's handlers nest the query engine's planning
// (statement → plan → DDL/DML …) deeper than the default layout query
// depth clippy allows (128).
#![recursion_limit = "256"]
//! Weir's web console (issue 23), served by `weir serve` on its HTTP
//! endpoint: the pages (plain ES modules compiled into the binary) and the
//! JSON API they call. See README.md for what the crate owns.
//!
//! Authentication is Flight SQL's: the same users and roles, checked by
//! [`weir_flight::Authenticator`]; a login issues its token as an HttpOnly,
//! SameSite=Strict cookie, and every state-changing call must also carry
//! the session's CSRF token in the `x-weir-csrf` header.

mod alerts;
mod assets;
mod jobs;
mod pipeline;
mod query;
mod session;
mod tables;
mod web;

use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::{Method, Request};
use weir_flight::{Authenticator, Principal, Role};
use weir_observe::{Fallback, HandlerFuture, HttpResponse};
use weir_query::QueryEngine;

use crate::web::ApiError;

/// Most rows a console query returns (the page says so).
pub const MAX_ROWS: usize = 10_000;

/// Renders the process's metrics in the Prometheus text format.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// What the console needs from the process.
pub struct ConsoleOptions {
    pub engine: QueryEngine,
    /// Refreshes a materialized view (the Tables page's refresh job).
    pub refresher: weir_maintain::schedule::Refresher,
    /// Flight's authenticator settings, so both check the same users.
    pub auth: Arc<Authenticator>,
    /// `--query-timeout` (`None`: no limit).
    pub query_timeout: Option<Duration>,
    pub metrics: MetricsSource,
    /// The maintenance scheduler's last and next runs (`None`: maintenance
    /// is off in this process).
    pub schedule: Option<weir_maintain::ScheduleStatus>,
}

/// The console: install it into the endpoint's [`weir_observe::FallbackSlot`].
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    engine: QueryEngine,
    refresher: weir_maintain::schedule::Refresher,
    auth: Arc<Authenticator>,
    query_timeout: Option<Duration>,
    metrics: MetricsSource,
    schedule: Option<weir_maintain::ScheduleStatus>,
    sessions: session::Sessions,
    rates: pipeline::Rates,
    queries: query::Running,
    jobs: jobs::Jobs,
    partitions: tables::PartitionCounts,
    alerts: alerts::Cache,
}

impl Console {
    pub fn new(options: ConsoleOptions) -> Self {
        Console {
            inner: Arc::new(Inner {
                engine: options.engine,
                refresher: options.refresher,
                auth: options.auth,
                query_timeout: options.query_timeout,
                metrics: options.metrics,
                schedule: options.schedule,
                sessions: session::Sessions::default(),
                rates: pipeline::Rates::default(),
                queries: query::Running::default(),
                jobs: jobs::Jobs::default(),
                partitions: tables::PartitionCounts::default(),
                alerts: alerts::Cache::default(),
            }),
        }
    }

    async fn route(&self, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if let Some(asset) = path.strip_prefix("/assets/") {
            return assets::serve(asset);
        }
        match (method, path.as_str()) {
            (Method::GET, "/" | "/index.html") => assets::serve("index.html"),
            (Method::GET, "/api/me") => session::me(&self.inner, &req).await,
            (Method::POST, "/api/login") => session::login(&self.inner, req).await,
            (Method::POST, "/api/logout") => session::logout(&self.inner, &req),
            (Method::GET, "/api/pipeline") => {
                self.reader(&req).await?;
                pipeline::snapshot(&self.inner)
            }
            (Method::GET, "/api/tables") => {
                self.reader(&req).await?;
                tables::list(&self.inner).await
            }
            (Method::GET, "/api/table") => {
                self.reader(&req).await?;
                tables::detail(&self.inner, &req).await
            }
            (Method::GET, "/api/jobs") => {
                self.reader(&req).await?;
                jobs::list(&self.inner)
            }
            (Method::POST, "/api/jobs") => {
                let principal = self.acting(&req, Role::Admin).await?;
                jobs::start(&self.inner, principal, req).await
            }
            (Method::GET, "/api/alerts") => {
                let principal = self.reader(&req).await?;
                alerts::list(&self.inner, &principal).await
            }
            (Method::GET, "/api/alerts/summary") => {
                let principal = self.reader(&req).await?;
                alerts::summary(&self.inner, &principal).await
            }
            (Method::POST, "/api/alerts/acknowledge") => {
                // `ACKNOWLEDGE ALERT` needs the Write role: the statement's
                // check (as over Flight SQL) refuses anyone below.
                let principal = self.acting(&req, Role::Read).await?;
                alerts::acknowledge(&self.inner, principal, req).await
            }
            (Method::POST, "/api/query") => {
                // The statement's own class decides the role needed.
                let principal = self.acting(&req, Role::Read).await?;
                query::run(&self.inner, principal, req).await
            }
            (Method::POST, "/api/query/cancel") => {
                let principal = self.acting(&req, Role::Read).await?;
                query::cancel(&self.inner, &principal, req).await
            }
            (_, p) if p.starts_with("/api/") => Err(ApiError::not_found(format!(
                "no API endpoint {} {p}",
                req.method()
            ))),
            _ => Err(ApiError::not_found(format!("no page {path}"))),
        }
    }

    /// The caller, who may read.
    async fn reader(&self, req: &Request<Incoming>) -> Result<Principal, ApiError> {
        session::caller(&self.inner, req).await
    }

    /// The caller of a state-changing call: session, CSRF header and role.
    async fn acting(&self, req: &Request<Incoming>, role: Role) -> Result<Principal, ApiError> {
        let principal = session::caller(&self.inner, req).await?;
        session::check_csrf(&self.inner, req)?;
        if principal.role < role {
            return Err(ApiError::forbidden(format!(
                "user `{}` has role {} and may not do this: role {role} is needed",
                principal.name, principal.role
            )));
        }
        Ok(principal)
    }
}

impl Fallback for Console {
    fn handle(&self, req: Request<Incoming>) -> HandlerFuture {
        let console = self.clone();
        Box::pin(async move {
            match console.route(req).await {
                Ok(response) => response,
                Err(e) => e.into_response(),
            }
        })
    }
}
