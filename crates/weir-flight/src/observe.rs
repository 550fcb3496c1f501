//! Metrics and a tracing span for every Flight SQL call, as a wrapper around
//! the gRPC service (so the handlers only mark what kind of call they are).
//!
//! - `weir_flight_requests_in_flight`: calls running, until the response
//!   stream ends (a DoGet counts while its batches stream);
//! - `weir_query_duration_seconds{method, kind}`: latency to the end of the
//!   response stream;
//! - `weir_flight_requests_total{method, kind, code}` and
//!   `weir_query_errors_total{kind, code}` by gRPC status (`grpc-status` of
//!   a trailers-only response, else of the trailers; a stream dropped before
//!   its status counts as CANCELLED).
//!
//! Kind: `query` when a statement handler marks it ([`mark_query`]), else by
//! method: GetFlightInfo/DoGet/GetSchema `metadata`, DoPut `update`, the
//! rest (Handshake, DoAction, ...) `other`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower_service::Service;

/// Request extension a handler sets to label its call a query.
#[derive(Clone, Default)]
struct QueryMark(Arc<AtomicBool>);

/// Labels the call of `request` as kind `query` (statement execution,
/// planning or parameter binding) in the Flight metrics.
pub(crate) fn mark_query<T>(request: &tonic::Request<T>) {
    if let Some(mark) = request.extensions().get::<QueryMark>() {
        mark.0.store(true, Ordering::Relaxed);
    }
}

/// The gRPC service with metrics around every call.
#[derive(Clone)]
pub(crate) struct Observed<S> {
    inner: S,
}

impl<S> Observed<S> {
    pub(crate) fn new(inner: S) -> Self {
        Observed { inner }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Observed<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let method = method_name(request.uri().path());
        let mark = QueryMark::default();
        request.extensions_mut().insert(mark.clone());
        let mut call = CallGuard {
            method,
            mark,
            started: Instant::now(),
            code: None,
        };
        metrics::gauge!(crate::metric_names::FLIGHT_REQUESTS_IN_FLIGHT).increment(1.0);
        let span = tracing::debug_span!("flight", method);
        let future = tracing::Instrument::instrument(self.inner.call(request), span);
        Box::pin(async move {
            let response = future.await?;
            call.code = grpc_status(response.headers());
            Ok(response.map(|inner| ObservedBody {
                inner,
                call: Some(call),
            }))
        })
    }
}

/// The response body; records the call when it ends or is dropped.
pub(crate) struct ObservedBody<B> {
    inner: B,
    call: Option<CallGuard>,
}

impl<B: Body + Unpin> Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = self.call.as_mut()
                {
                    call.code = Some(code);
                }
            }
            Poll::Ready(None) => drop(self.call.take()),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct CallGuard {
    method: &'static str,
    mark: QueryMark,
    started: Instant,
    code: Option<i32>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let seconds = self.started.elapsed().as_secs_f64();
        let kind = if self.mark.0.load(Ordering::Relaxed) {
            "query"
        } else {
            default_kind(self.method)
        };
        // No status by the end: the client went away mid-stream.
        let code = code_name(self.code.unwrap_or(1));
        metrics::gauge!(crate::metric_names::FLIGHT_REQUESTS_IN_FLIGHT).decrement(1.0);
        metrics::histogram!(crate::metric_names::QUERY_DURATION_SECONDS, "method" => self.method, "kind" => kind)
            .record(seconds);
        metrics::counter!(crate::metric_names::FLIGHT_REQUESTS_TOTAL, "method" => self.method, "kind" => kind, "code" => code)
            .increment(1);
        if code != "OK" {
            metrics::counter!(crate::metric_names::QUERY_ERRORS_TOTAL, "kind" => kind, "code" => code)
                .increment(1);
        }
        tracing::debug!(method = self.method, kind, code, seconds, "Flight SQL call");
    }
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

fn method_name(path: &str) -> &'static str {
    match path.rsplit('/').next().unwrap_or_default() {
        "Handshake" => "Handshake",
        "ListFlights" => "ListFlights",
        "GetFlightInfo" => "GetFlightInfo",
        "PollFlightInfo" => "PollFlightInfo",
        "GetSchema" => "GetSchema",
        "DoGet" => "DoGet",
        "DoPut" => "DoPut",
        "DoExchange" => "DoExchange",
        "DoAction" => "DoAction",
        "ListActions" => "ListActions",
        _ => "unknown",
    }
}

fn default_kind(method: &str) -> &'static str {
    match method {
        "GetFlightInfo" | "PollFlightInfo" | "DoGet" | "GetSchema" => "metadata",
        "DoPut" => "update",
        _ => "other",
    }
}

/// The canonical gRPC status names (as in the gRPC spec and other exporters).
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_kinds_and_codes() {
        assert_eq!(
            method_name("/arrow.flight.protocol.FlightService/DoGet"),
            "DoGet"
        );
        assert_eq!(method_name("/x.Y/Nope"), "unknown");
        assert_eq!(default_kind("GetFlightInfo"), "metadata");
        assert_eq!(default_kind("DoPut"), "update");
        assert_eq!(default_kind("Handshake"), "other");
        assert_eq!(code_name(3), "INVALID_ARGUMENT");
        assert_eq!(code_name(99), "UNKNOWN");
        let mut h = HeaderMap::new();
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(grpc_status(&h), Some(5));
    }
}
