//! Connection limits and timeouts (issue 24: 1,100 idle unauthenticated
//! HTTP/2 connections held every file descriptor forever and locked
//! everyone out).
//!
//! - At most [`ConnectionLimits::max_connections`] connections at once; one
//!   more is closed as soon as it is accepted (its file descriptor is freed
//!   at once instead of waiting in the backlog).
//! - A connection must make an authenticated call within
//!   [`ConnectionLimits::first_call_timeout`] of being accepted, and is
//!   closed after [`ConnectionLimits::idle_timeout`] without one. Calls the
//!   authentication gate refuses do not count. Closing is HTTP/2's graceful
//!   GOAWAY: calls in flight (a long result stream) finish, and gRPC
//!   clients reconnect on their next call as they do after any GOAWAY. A
//!   connection that never made a call is dropped outright if it has not
//!   closed [`ConnectionLimits::first_call_timeout`] after its GOAWAY.
//! - HTTP/2 keep-alive pings find dead peers (no answer in 20 s).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::sessions::ConnectionId;

/// Connection limits of the Flight SQL listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub first_call_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 512,
            first_call_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// Interval of HTTP/2 keep-alive pings (and how long an answer may take).
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(20);

/// When a connection last made an authenticated call.
#[derive(Clone)]
pub(crate) struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last authenticated call.
    last_call_ms: Arc<AtomicU64>,
    called: Arc<AtomicBool>,
    /// Calls whose response has not been produced yet (a long GetFlightInfo
    /// that runs a CTAS); a connection is never closed under one.
    answering: Arc<AtomicUsize>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_call_ms: Arc::new(AtomicU64::new(0)),
            called: Arc::new(AtomicBool::new(false)),
            answering: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn record_call(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_call_ms.store(ms, Ordering::Relaxed);
        self.called.store(true, Ordering::Relaxed);
    }

    fn ever_called(&self) -> bool {
        self.called.load(Ordering::Relaxed)
    }

    /// Time since the last authenticated call (or since the connection was
    /// accepted, before the first).
    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_call_ms.load(Ordering::Relaxed));
        self.opened.elapsed().saturating_sub(last)
    }

    fn answering(&self) -> bool {
        self.answering.load(Ordering::Relaxed) > 0
    }

    fn should_close(&self, limits: &ConnectionLimits) -> bool {
        if self.answering() {
            false
        } else if self.ever_called() {
            self.quiet_for() > limits.idle_timeout
        } else {
            self.quiet_for() > limits.first_call_timeout
        }
    }
}

/// The per-connection service: records authenticated calls.
#[derive(Clone)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Activity,
    connection: ConnectionId,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// gRPC status code UNAUTHENTICATED.
const UNAUTHENTICATED: &str = "16";

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<B>, S::Error>>;

    fn call(&self, mut request: http::Request<Incoming>) -> Self::Future {
        // Names the connection's session for clients without cookies.
        request.extensions_mut().insert(self.connection);
        let activity = self.activity.clone();
        activity.answering.fetch_add(1, Ordering::Relaxed);
        let answered = Answered(activity.answering.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            drop(answered);
            let response = response?;
            let refused = response
                .headers()
                .get("grpc-status")
                .is_some_and(|v| v.as_bytes() == UNAUTHENTICATED.as_bytes());
            if !refused {
                activity.record_call();
            }
            Ok(response)
        })
    }
}

/// Counts a call as answered when dropped (also when the call is dropped
/// unanswered: the client went away).
struct Answered(Arc<AtomicUsize>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sessions of a server, told when a connection ends.
pub(crate) type SessionsHandle = crate::service::WeirFlightSqlService;

static NEXT_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

struct ConnectionEnded(ConnectionId, SessionsHandle);

impl Drop for ConnectionEnded {
    fn drop(&mut self) {
        self.1.sessions().connection_closed(self.0);
    }
}

/// Serves one connection until it ends, closing it when idle (see the
/// module docs) or when `stop` turns true (server shutdown).
pub(crate) async fn serve_connection<I, S, B>(
    http2: hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor>,
    io: I,
    service: S,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    peer: std::net::SocketAddr,
    sessions: SessionsHandle,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let activity = Activity::new();
    let connection = ConnectionId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
    // Whichever way the connection ends, its session goes with it.
    let _ended = ConnectionEnded(connection, sessions);
    let tracked = Tracked {
        inner: service,
        activity: activity.clone(),
        connection,
    };
    let connection = http2.serve_connection(TokioIo::new(io), tracked);
    tokio::pin!(connection);
    let check_every =
        (limits.first_call_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(50));
    let mut tick = tokio::time::interval(check_every);
    let mut closing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "Flight SQL connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if closing_since.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing_since = Some(Instant::now());
            }
            _ = tick.tick() => match closing_since {
                None if activity.should_close(&limits) => {
                    tracing::debug!(%peer, called = activity.ever_called(), "Flight SQL: closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    closing_since = Some(Instant::now());
                }
                Some(since) if !activity.ever_called() && !activity.answering()
                    && since.elapsed() > limits.first_call_timeout => {
                    tracing::debug!(%peer, "Flight SQL: dropping a connection that never made a call");
                    return;
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rules() {
        let limits = ConnectionLimits {
            max_connections: 1,
            first_call_timeout: Duration::from_millis(20),
            idle_timeout: Duration::from_millis(60),
        };
        let a = Activity::new();
        assert!(!a.should_close(&limits));
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            a.should_close(&limits),
            "no call within the first-call timeout"
        );
        a.record_call();
        assert!(!a.should_close(&limits));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!a.should_close(&limits), "called, not idle for long yet");
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.should_close(&limits));
        // Never under a call that is still being answered.
        a.answering.fetch_add(1, Ordering::Relaxed);
        assert!(!a.should_close(&limits));
    }
}
