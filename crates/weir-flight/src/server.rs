//! The gRPC listener loop.
//!
//! `tonic::transport::Server` cannot turn off hyper's automatic `date`
//! response header. The ADBC Flight SQL driver turns every non-gRPC response
//! header into an error detail, and with details present the gRPC status
//! code no longer reaches clients as the ADBC `vendor_code`. So connections
//! are served with hyper's HTTP/2 builder directly (date header off); the
//! tonic-generated `FlightServiceServer` is the service, as with tonic's
//! own server.
//!
//! With TLS configured each accepted TCP connection first completes a rustls
//! handshake (ALPN `h2`) on its own task, so a slow client cannot stall the
//! accept loop. Every call passes the [`AuthGate`] before the service.
//! Connection limits and idle timeouts: `connections.rs`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::connections::{ConnectionLimits, KEEP_ALIVE, serve_connection};
use crate::error::FlightServeError;
use crate::gate::AuthGate;
use crate::service::WeirFlightSqlService;

/// Largest gRPC message accepted from clients (parameter batches).
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Longest a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) async fn serve_service(
    service: WeirFlightSqlService,
    auth: Arc<Authenticator>,
    tls: Option<TlsAcceptor>,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightServeError> {
    let sessions = service.clone();
    let grpc =
        FlightServiceServer::new(service).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    // Metrics outermost: calls the gate refuses are counted too.
    let hyper_service =
        TowerToHyperService::new(crate::observe::Observed::new(AuthGate::new(grpc, auth)));
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2
        .auto_date_header(false)
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEP_ALIVE))
        .keep_alive_timeout(KEEP_ALIVE);
    // One permit per open connection; shutdown waits until all are back.
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "Flight SQL: accepting a connection failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max, "Flight SQL: connection limit reached; closing the new connection");
                    metrics::counter!(crate::metric_names::FLIGHT_CONNECTIONS_REFUSED_TOTAL).increment(1);
                    drop(stream);
                    continue;
                };
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let (http2, service, stopped) = (http2.clone(), hyper_service.clone(), stopped.clone());
                let tls = tls.clone();
                let sessions = sessions.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let Some(tls) = tls else {
                        serve_connection(http2, stream, service, limits, stopped, peer, sessions).await;
                        return;
                    };
                    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "Flight SQL: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::info!(%peer, "Flight SQL: TLS handshake timed out");
                            return;
                        }
                    };
                    serve_connection(http2, stream, service, limits, stopped, peer, sessions).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::debug!("Flight SQL: shutting down, waiting for open connections");
    // GOAWAY to every connection; running calls finish, idle connections close.
    let _ = stop.send(true);
    let _all = slots.acquire_many(max as u32).await;
    Ok(())
}
