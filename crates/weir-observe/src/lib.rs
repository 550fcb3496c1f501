//! Weir observability: the Prometheus recorder behind the `metrics` facade,
//! the HTTP endpoint serving `/metrics`, `/health` and `/ready`, readiness
//! conditions, and log setup (text or JSON).
//!
//! The library crates that emit never depend on this one: they emit through
//! the `metrics` facade (`metrics::counter!`, ...), which is a no-op until the
//! binary installs the recorder here, naming each metric by a constant of
//! their own `metric_names` module. This crate depends on them for those
//! names only: [`describe`] lists every metric by its constant, with its
//! meaning (as does the binary's README).

mod describe;
mod error;
mod http;
mod logs;
pub mod metric_names;
mod ready;

pub use describe::{METRICS, describe};
pub use error::ObserveError;
pub use http::{Fallback, FallbackSlot, HandlerFuture, HttpEndpoint, HttpResponse, serve_http};
pub use logs::init_logging;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use ready::Readiness;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Histogram buckets (seconds) of every `*_seconds` histogram: from a fast
/// metadata call (1 ms) to a long commit or maintenance job (10 min).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls fail)
/// and registers the descriptions of Weir's metrics.
pub fn install_recorder() -> Result<PrometheusHandle, ObserveError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}
