//! Weir's Arrow Flight SQL server: serves [`weir_query::QueryEngine`] to
//! BI tools, the ADBC Flight SQL driver and `pyarrow.flight`.
//!
//! See the crate README for the supported commands.

mod access;
mod actions;
mod auth;
mod cancel;
mod connections;
mod error;
mod gate;
mod ingest;
mod metadata;
pub mod metric_names;
mod observe;
mod server;
mod service;
mod session_proto;
mod sessions;
mod sql_info;
mod statements;
mod tls;
mod users;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir_query::QueryEngine;

pub use access::{Access, classify, permit, permit_sql};
pub use auth::{AuthMode, AuthOptions, Authenticator, Principal};
pub use connections::ConnectionLimits;
pub use error::{ErrorKind, FlightServeError, error_status, status_from};
pub use metadata::like_match;
pub use service::WeirFlightSqlService;
pub use statements::conform_batch;
pub use tls::TlsFiles;
pub use users::{Role, UserEntry, hash_password};

#[derive(Debug, Clone)]
pub struct FlightOptions {
    /// How long a planned statement waits for its DoGet before it is dropped.
    pub statement_ttl: Duration,
    /// Longest a query may plan, or stream its results, before it is
    /// cancelled with DEADLINE_EXCEEDED (`None`: no limit).
    pub query_timeout: Option<Duration>,
    /// Who may call, and with which role (see `auth.rs`).
    pub auth: AuthOptions,
    /// Serve TLS with this certificate and key (`None`: plain TCP).
    pub tls: Option<TlsFiles>,
    /// How many connections, and how long they may stay without a call.
    pub connections: ConnectionLimits,
}

impl Default for FlightOptions {
    fn default() -> Self {
        Self {
            statement_ttl: Duration::from_secs(10 * 60),
            query_timeout: None,
            auth: AuthOptions::default(),
            tls: None,
            connections: ConnectionLimits::default(),
        }
    }
}

/// Serves Flight SQL on an already-bound listener until `shutdown` resolves
/// (graceful: open calls finish, then connections close).
///
/// Fails before serving when the authentication settings do not fit the
/// listen address (see [`AuthOptions::mode`]) or the TLS files are unusable.
pub async fn serve(
    engine: QueryEngine,
    options: FlightOptions,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightServeError> {
    let (auth, tls) = prepare_security(&options, listener.local_addr()?)?;
    let limits = options.connections;
    let service = WeirFlightSqlService::with_authenticator(engine, options, auth.clone());
    server::serve_service(service, auth, tls, listener, limits, shutdown).await
}

/// Checks the authentication and TLS settings for a server on `listen`
/// (what [`serve`] does first), e.g. to fail a start-up early.
pub fn check_security(
    options: &FlightOptions,
    listen: SocketAddr,
) -> Result<String, FlightServeError> {
    let (auth, tls) = prepare_security(options, listen)?;
    Ok(format!(
        "authentication {}, {}",
        auth.describe(),
        if tls.is_some() { "TLS" } else { "no TLS" }
    ))
}

fn prepare_security(
    options: &FlightOptions,
    listen: SocketAddr,
) -> Result<(Arc<auth::Authenticator>, Option<tokio_rustls::TlsAcceptor>), FlightServeError> {
    let auth = Arc::new(auth::Authenticator::new(&options.auth, listen)?);
    let tls = options.tls.as_ref().map(tls::acceptor).transpose()?;
    Ok((auth, tls))
}

/// Runs `sql` for `principal` the way a Flight SQL statement runs: parsed
/// with the session's dialect, role-checked, then planned (DDL and writes
/// take effect here) within `timeout`. Queries come back unexecuted: the
/// caller streams the frame under the same deadline (the web console).
pub async fn execute_as(
    engine: &QueryEngine,
    ctx: &datafusion::prelude::SessionContext,
    principal: &Principal,
    sql: &str,
    timeout: Option<Duration>,
) -> Result<datafusion::dataframe::DataFrame, tonic::Status> {
    let statement = access::permit_sql(principal, ctx, sql)?;
    statements::within(timeout, async {
        engine
            .execute(ctx, &statement)
            .await
            .map_err(error::status_from)
    })
    .await
}
