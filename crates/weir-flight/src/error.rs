//! Error types of the Flight SQL service and the one explicit mapping from
//! engine errors to gRPC statuses.

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use datafusion::error::DataFusionError;
use tonic::Status;
use weir_query::QueryError;

/// Failures of the crate itself (not of a client's request).
#[derive(Debug, thiserror::Error)]
pub enum FlightServeError {
    /// The listener or a connection failed at the I/O level.
    #[error("Flight SQL I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A configured user is malformed (name, role or password hash).
    #[error("invalid user configuration: {0}")]
    InvalidUser(String),
    /// A role other than read, write or admin.
    #[error("unknown role `{0}` (expected read, write or admin)")]
    UnknownRole(String),
    /// An authentication mode other than required, optional or off.
    #[error("unknown authentication mode `{0}` (expected required, optional or off)")]
    UnknownAuthMode(String),
    /// The authentication settings do not fit the listen address or users.
    #[error("{0}")]
    AuthSetup(String),
    /// Hashing a password failed.
    #[error("hashing the password failed: {0}")]
    Hashing(String),
    /// The TLS certificate or key cannot be read or used.
    #[error("TLS setup: {what} ({path}): {reason}")]
    Tls {
        what: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Maps a classified engine error to the gRPC status a client sees.
///
/// Syntax/Invalid → `INVALID_ARGUMENT`, NotFound → `NOT_FOUND`,
/// AlreadyExists → `ALREADY_EXISTS`, Unsupported → `UNIMPLEMENTED`,
/// ResourcesExhausted → `RESOURCE_EXHAUSTED`, Conflict → `ABORTED`,
/// Unavailable (an attached PostgreSQL is down) → `UNAVAILABLE`,
/// PermissionDenied (COPY outside the export directory) → `PERMISSION_DENIED`,
/// Internal → `INTERNAL`. The message is the error's `Display`.
pub fn status_from(err: QueryError) -> Status {
    let message = err.to_string();
    match err {
        QueryError::Syntax(_) | QueryError::Invalid(_) => Status::invalid_argument(message),
        QueryError::NotFound(_) => Status::not_found(message),
        QueryError::AlreadyExists(_) => Status::already_exists(message),
        QueryError::Unsupported(_) => Status::unimplemented(message),
        QueryError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        QueryError::Conflict(_) => Status::aborted(message),
        QueryError::Unavailable(_) => Status::unavailable(message),
        QueryError::PermissionDenied(_) => Status::permission_denied(message),
        QueryError::Internal(_) => {
            tracing::warn!(error = %message, "internal error returned to Flight SQL client");
            Status::internal(message)
        }
    }
}

/// A DataFusion error (e.g. raised while executing a plan) as a status.
pub(crate) fn status_from_df(err: DataFusionError) -> Status {
    status_from(QueryError::from(err))
}

/// An Arrow error while building a response: a server-side bug.
pub(crate) fn internal(what: &str, err: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %err, "{what}");
    Status::internal(format!("{what}: {err}"))
}

/// An Arrow error while converting query results (e.g. conforming a batch).
pub(crate) fn status_from_arrow(err: ArrowError) -> Status {
    status_from_df(DataFusionError::ArrowError(Box::new(err), None))
}

/// An error while decoding data the client sent (DoPut parameters).
pub(crate) fn status_from_client_data(err: FlightError) -> Status {
    match err {
        FlightError::Tonic(status) => *status,
        other => Status::invalid_argument(format!("invalid Arrow data from client: {other}")),
    }
}

pub(crate) fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!("{what}: not supported by Weir"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn query_errors_map_to_status_codes() {
        let cases = [
            (QueryError::Syntax("s".into()), Code::InvalidArgument),
            (QueryError::Invalid("i".into()), Code::InvalidArgument),
            (QueryError::NotFound("n".into()), Code::NotFound),
            (QueryError::AlreadyExists("a".into()), Code::AlreadyExists),
            (QueryError::Unsupported("u".into()), Code::Unimplemented),
            (
                QueryError::ResourcesExhausted("r".into()),
                Code::ResourceExhausted,
            ),
            (QueryError::Conflict("c".into()), Code::Aborted),
            (QueryError::Unavailable("p".into()), Code::Unavailable),
            (
                QueryError::PermissionDenied("p".into()),
                Code::PermissionDenied,
            ),
            (QueryError::Internal("x".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let display = err.to_string();
            let status = status_from(err);
            assert_eq!(status.code(), code, "{display}");
            assert_eq!(status.message(), display);
        }
    }

    #[test]
    fn datafusion_errors_are_classified() {
        let status = status_from_df(DataFusionError::NotImplemented("x".into()));
        assert_eq!(status.code(), Code::Unimplemented);
        let status = status_from_df(DataFusionError::Plan("table 'a.b' not found".into()));
        assert_eq!(status.code(), Code::NotFound);
    }

    #[test]
    fn client_data_errors_are_invalid_argument() {
        let status = status_from_client_data(FlightError::DecodeError("bad".into()));
        assert_eq!(status.code(), Code::InvalidArgument);
        let status = status_from_client_data(FlightError::Tonic(Box::new(Status::cancelled("c"))));
        assert_eq!(status.code(), Code::Cancelled);
    }
}
