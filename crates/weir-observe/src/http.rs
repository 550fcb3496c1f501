//! The HTTP endpoint: `/metrics` (Prometheus text format), `/health` (the
//! process is alive: always 200) and `/ready` (200 when every readiness
//! condition holds, else 503 with the reasons).
//!
//! Served with hyper (already in the tree for Flight) rather than the
//! exporter's own listener, which only serves `/metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::error::ObserveError;
use crate::ready::Readiness;

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A bound HTTP listener, not serving yet (bind first, so the address can
/// be printed before the rest of the process starts).
#[derive(Debug)]
pub struct HttpEndpoint {
    listener: TcpListener,
    /// The bound address (the real port when port 0 was asked for).
    pub addr: SocketAddr,
}

impl HttpEndpoint {
    pub async fn bind(addr: SocketAddr) -> Result<Self, ObserveError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ObserveError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ObserveError::Bind { addr, source })?;
        Ok(HttpEndpoint { listener, addr })
    }
}

struct State {
    metrics: PrometheusHandle,
    readiness: Readiness,
}

/// Serves the endpoint until `shutdown` resolves (open requests finish).
pub async fn serve_http(
    endpoint: HttpEndpoint,
    metrics: PrometheusHandle,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let state = Arc::new(State { metrics, readiness });
    let graceful = GracefulShutdown::new();
    let mut upkeep = tokio::time::interval(UPKEEP_EVERY);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = endpoint.listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP endpoint: accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(&req, &state)) }
                });
                let connection = graceful.watch(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "HTTP endpoint connection ended with an error");
                    }
                });
            }
            _ = upkeep.tick() => state.metrics.run_upkeep(),
            () = &mut shutdown => break,
        }
    }
    drop(endpoint.listener);
    graceful.shutdown().await;
}

fn route(req: &Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/health" => text(StatusCode::OK, "ok\n".into()),
        "/ready" => match state.readiness.status() {
            Ok(()) => text(StatusCode::OK, "ready\n".into()),
            Err(reasons) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", reasons.join("; ")),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found (try /metrics, /health, /ready)\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
