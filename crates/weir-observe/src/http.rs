//! The HTTP endpoint: `/metrics` (Prometheus text format), `/health` (the
//! process is alive: always 200) and `/ready` (200 when every readiness
//! condition holds, else 503 with the reasons).
//!
//! Served with hyper (already in the tree for Flight) rather than the
//! exporter's own listener, which only serves `/metrics`.
//!
//! Every other path goes to the [`Fallback`] installed in the endpoint's
//! [`FallbackSlot`] once the rest of the process is up (the web console of
//! `weir serve`), else answers 404.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
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

/// A response of the endpoint.
pub type HttpResponse = Response<Full<Bytes>>;
/// What a [`Fallback`] answers with.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

/// Serves the paths the endpoint does not know itself.
pub trait Fallback: Send + Sync {
    fn handle(&self, req: Request<Incoming>) -> HandlerFuture;
}

/// Where the fallback is installed once it exists (the endpoint starts
/// before the query engine does).
#[derive(Clone, Default)]
pub struct FallbackSlot(Arc<OnceLock<Arc<dyn Fallback>>>);

impl FallbackSlot {
    /// Installs `fallback`; false when one is installed already.
    pub fn set(&self, fallback: Arc<dyn Fallback>) -> bool {
        self.0.set(fallback).is_ok()
    }

    fn get(&self) -> Option<Arc<dyn Fallback>> {
        self.0.get().cloned()
    }
}

impl std::fmt::Debug for FallbackSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FallbackSlot")
            .field(&self.0.get().is_some())
            .finish()
    }
}

struct State {
    metrics: PrometheusHandle,
    readiness: Readiness,
    fallback: FallbackSlot,
}

/// Serves the endpoint until `shutdown` resolves (open requests finish).
pub async fn serve_http(
    endpoint: HttpEndpoint,
    metrics: PrometheusHandle,
    readiness: Readiness,
    fallback: FallbackSlot,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let state = Arc::new(State {
        metrics,
        readiness,
        fallback,
    });
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
                    async move {
                        let path = req.uri().path();
                        let own = matches!(path, "/metrics" | "/health" | "/ready");
                        let response = match state.fallback.get() {
                            Some(fallback) if !own => fallback.handle(req).await,
                            _ => route(&req, &state),
                        };
                        Ok::<_, Infallible>(response)
                    }
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
