//! Weir's Arrow Flight SQL server: serves [`weir_query::QueryEngine`] to
//! BI tools, the ADBC Flight SQL driver and `pyarrow.flight`.
//!
//! See the crate README for the supported commands.

mod auth;
mod error;
mod metadata;
mod observe;
mod server;
mod service;
mod sql_info;
mod statements;

use std::future::Future;
use std::time::Duration;

use weir_query::QueryEngine;

pub use error::{FlightServeError, status_from};
pub use metadata::like_match;
pub use service::WeirFlightSqlService;
pub use statements::conform_batch;

#[derive(Debug, Clone)]
pub struct FlightOptions {
    /// How long a planned statement waits for its DoGet before it is dropped.
    pub statement_ttl: Duration,
    /// Longest a query may plan, or stream its results, before it is
    /// cancelled with DEADLINE_EXCEEDED (`None`: no limit).
    pub query_timeout: Option<Duration>,
}

impl Default for FlightOptions {
    fn default() -> Self {
        Self {
            statement_ttl: Duration::from_secs(10 * 60),
            query_timeout: None,
        }
    }
}

/// Serves Flight SQL on an already-bound listener until `shutdown` resolves
/// (graceful: open calls finish, then connections close).
pub async fn serve(
    engine: QueryEngine,
    options: FlightOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightServeError> {
    let service = WeirFlightSqlService::new(engine, options);
    server::serve_service(service, listener, shutdown).await
}
