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

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), FlightServeError> {
    let grpc =
        FlightServiceServer::new(service).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    // Metrics outermost: calls the gate refuses are counted too.
    let hyper_service =
        TowerToHyperService::new(crate::observe::Observed::new(AuthGate::new(grpc, auth)));
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.auto_date_header(false).timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
                }
                let Some(tls) = tls.clone() else {
                    let connection = graceful.watch(
                        http2.serve_connection(TokioIo::new(stream), hyper_service.clone()),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "Flight SQL connection ended with an error");
                        }
                    });
                    continue;
                };
                let (http2, service, watcher) =
                    (http2.clone(), hyper_service.clone(), graceful.watcher());
                tokio::spawn(async move {
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
                    let connection =
                        watcher.watch(http2.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "Flight SQL connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::debug!("Flight SQL: shutting down, waiting for open connections");
    // Sends GOAWAY; running calls finish, idle connections close.
    graceful.shutdown().await;
    Ok(())
}
