//! Why the hot tier of another process cannot be read or served.

/// Why another process's hot tier cannot be read (logged; queries then see
/// committed rows only), configured or served.
#[derive(Debug, thiserror::Error)]
pub enum HotError {
    #[error("hot tier {url}: unsupported scheme {scheme}")]
    Scheme { url: String, scheme: String },
    #[error("hot tier {url}: {source}")]
    Endpoint {
        url: String,
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Connect(tonic::transport::Error),
    #[error(transparent)]
    Flight(#[from] arrow_flight::error::FlightError),
    /// A batch that is not in the feed's layout.
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// The feed server failed (binding is the caller's; this is serving).
    #[error(transparent)]
    Serve(tonic::transport::Error),
}
