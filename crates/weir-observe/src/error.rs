//! The crate's error type.

/// What failed while setting up observability.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The Prometheus recorder could not be built or installed (e.g. a
    /// recorder is already installed).
    #[error("installing the Prometheus recorder: {0}")]
    Recorder(#[from] metrics_exporter_prometheus::BuildError),
    /// The HTTP listener could not bind its address.
    #[error("binding the HTTP listener on {addr} (--http-listen): {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// `--log` is not a valid tracing filter.
    #[error("bad log filter `{filter}` (--log): {message}")]
    LogFilter { filter: String, message: String },
    /// A global tracing subscriber was already set.
    #[error("setting up logging: {0}")]
    Logging(String),
}
