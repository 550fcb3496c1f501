//! Names of the metrics this crate emits through the `metrics` facade: Flight
//! SQL calls and connections. Their kinds, labels and help texts are in `weir-
//! observe` (`describe.rs`), whose tests check that every name emitted anywhere
//! is one of these constants and is described exactly once.

pub const FLIGHT_REQUESTS_IN_FLIGHT: &str = "weir_flight_requests_in_flight";
pub const FLIGHT_REQUESTS_TOTAL: &str = "weir_flight_requests_total";
pub const QUERY_DURATION_SECONDS: &str = "weir_query_duration_seconds";
pub const QUERY_ERRORS_TOTAL: &str = "weir_query_errors_total";
pub const FLIGHT_CONNECTIONS_REFUSED_TOTAL: &str = "weir_flight_connections_refused_total";
