//! Error types of the Flight SQL service and the one explicit mapping from
//! engine errors to gRPC statuses.

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use datafusion::error::DataFusionError;
use tonic::{Code, Status};
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

/// What went wrong with a request, as the client is told: every status the
/// service returns is built from one of these by [`error_status`], the only
/// place a gRPC code is chosen ([`ErrorKind::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request (SQL, parameters, handle, body) is malformed or invalid.
    InvalidArgument,
    /// A table, statement handle, session or action that does not exist.
    NotFound,
    AlreadyExists,
    /// A feature or RPC Weir does not support.
    Unsupported,
    /// A memory, session or connection limit.
    ResourcesExhausted,
    /// A commit lost a race; retrying may succeed.
    Conflict,
    /// A dependency is down or the server is shutting down.
    Unavailable,
    /// Authenticated, but the role does not allow it.
    PermissionDenied,
    /// No, unknown or expired credentials.
    Unauthenticated,
    /// Cancelled by a client request.
    Cancelled,
    /// The statement ran longer than its timeout.
    TimedOut,
    /// A server-side bug.
    Internal,
}

impl ErrorKind {
    /// The one mapping table from error kinds to gRPC codes.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Unsupported => Code::Unimplemented,
            ErrorKind::ResourcesExhausted => Code::ResourceExhausted,
            ErrorKind::Conflict => Code::Aborted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Cancelled => Code::Cancelled,
            ErrorKind::TimedOut => Code::DeadlineExceeded,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind of a classified engine error (every variant decided here,
    /// so a new one must be given a kind).
    ///
    /// Syntax/Invalid → `INVALID_ARGUMENT`, NotFound → `NOT_FOUND`,
    /// AlreadyExists → `ALREADY_EXISTS`, Unsupported → `UNIMPLEMENTED`,
    /// ResourcesExhausted → `RESOURCE_EXHAUSTED`, Conflict → `ABORTED`,
    /// Unavailable (an attached PostgreSQL is down) → `UNAVAILABLE`,
    /// PermissionDenied (COPY outside the export directory) →
    /// `PERMISSION_DENIED`, Internal → `INTERNAL`.
    pub fn of(err: &QueryError) -> Self {
        match err {
            QueryError::Syntax(_) | QueryError::Invalid(_) => ErrorKind::InvalidArgument,
            QueryError::NotFound(_) => ErrorKind::NotFound,
            QueryError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            QueryError::Unsupported(_) => ErrorKind::Unsupported,
            QueryError::ResourcesExhausted(_) => ErrorKind::ResourcesExhausted,
            QueryError::Conflict(_) => ErrorKind::Conflict,
            QueryError::Unavailable(_) => ErrorKind::Unavailable,
            QueryError::PermissionDenied(_) => ErrorKind::PermissionDenied,
            QueryError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// The status a client sees for an error of `kind`.
pub fn error_status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(kind.code(), message)
}

/// Maps a classified engine error to the gRPC status a client sees (see
/// [`ErrorKind::of`]). The message is the error's `Display`.
pub fn status_from(err: QueryError) -> Status {
    let kind = ErrorKind::of(&err);
    let message = err.to_string();
    if kind == ErrorKind::Internal {
        tracing::warn!(error = %message, "internal error returned to Flight SQL client");
    }
    error_status(kind, message)
}

/// A DataFusion error (e.g. raised while executing a plan) as a status.
pub(crate) fn status_from_df(err: DataFusionError) -> Status {
    status_from(QueryError::from(err))
}

/// An Arrow error while building a response: a server-side bug.
pub(crate) fn internal(what: &str, err: impl std::fmt::Display) -> Status {
    tracing::warn!(error = %err, "{what}");
    error_status(ErrorKind::Internal, format!("{what}: {err}"))
}

/// An Arrow error while converting query results (e.g. conforming a batch).
pub(crate) fn status_from_arrow(err: ArrowError) -> Status {
    status_from_df(DataFusionError::ArrowError(Box::new(err), None))
}

/// An error while decoding data the client sent (DoPut parameters).
pub(crate) fn status_from_client_data(err: FlightError) -> Status {
    match err {
        FlightError::Tonic(status) => *status,
        other => error_status(
            ErrorKind::InvalidArgument,
            format!("invalid Arrow data from client: {other}"),
        ),
    }
}

/// An error while encoding a response stream (arrow-flight's own mapping
/// of its errors, e.g. a status a stream item already carries).
pub(crate) fn status_from_flight(err: FlightError) -> Status {
    Status::from(err)
}

pub(crate) fn unimplemented(what: &str) -> Status {
    error_status(
        ErrorKind::Unsupported,
        format!("{what}: not supported by Weir"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_code() {
        let table = [
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::Unsupported, Code::Unimplemented),
            (ErrorKind::ResourcesExhausted, Code::ResourceExhausted),
            (ErrorKind::Conflict, Code::Aborted),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::Unauthenticated, Code::Unauthenticated),
            (ErrorKind::Cancelled, Code::Cancelled),
            (ErrorKind::TimedOut, Code::DeadlineExceeded),
            (ErrorKind::Internal, Code::Internal),
        ];
        for (kind, code) in table {
            assert_eq!(kind.code(), code, "{kind:?}");
            let status = error_status(kind, "m");
            assert_eq!((status.code(), status.message()), (code, "m"));
        }
    }

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
