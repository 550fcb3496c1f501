//! Log setup: `tracing` events to stderr as text or one JSON object per line.

use tracing_subscriber::EnvFilter;

use crate::error::ObserveError;

/// Installs the global subscriber: `filter` in `EnvFilter` syntax (e.g.
/// `info,weir_query=debug`); `json` writes one JSON object per event with
/// the fields of the event and of its spans (`table`, `source`, ...).
pub fn init_logging(filter: &str, json: bool) -> Result<(), ObserveError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| ObserveError::LogFilter {
        filter: filter.to_string(),
        message: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| ObserveError::Logging(e.to_string()))
}
