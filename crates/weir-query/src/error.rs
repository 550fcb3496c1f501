//! Query errors, classified by what went wrong so the Flight layer can pick
//! the right status code (explicit conversion, no string guessing there).

use datafusion::error::DataFusionError;
use weir_catalog::CatalogError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL text does not parse.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// Parsed, but cannot be planned (unknown column, type mismatch, ...).
    #[error("invalid query: {0}")]
    Invalid(String),
    /// A table, schema or snapshot that does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Something that already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// A feature Weir does not support (yet).
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The statement reaches outside what the server allows anyone (COPY
    /// outside the export directory).
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// Out of memory or another limit.
    #[error("resources exhausted: {0}")]
    ResourcesExhausted(String),
    /// A commit lost a race; retrying the statement may succeed.
    #[error("commit conflict: {0}")]
    Conflict(String),
    /// An external system a query needs (an attached PostgreSQL) cannot be
    /// reached; retrying later may succeed.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an I/O failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl QueryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueryError::Conflict(_))
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        match e {
            DataFusionError::SQL(e, _) => QueryError::Syntax(e.to_string()),
            DataFusionError::Plan(m) => classify_plan_message(m),
            DataFusionError::SchemaError(e, _) => QueryError::Invalid(e.to_string()),
            DataFusionError::NotImplemented(m) => QueryError::Unsupported(m),
            DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m),
            DataFusionError::Configuration(m) => QueryError::Invalid(m),
            DataFusionError::Context(ctx, inner) => match QueryError::from(*inner) {
                QueryError::Internal(m) => QueryError::Internal(format!("{ctx}: {m}")),
                other => other,
            },
            DataFusionError::Diagnostic(_, inner) => QueryError::from(*inner),
            DataFusionError::Shared(inner) => {
                QueryError::from(DataFusionError::External(Box::new(inner)))
            }
            DataFusionError::External(inner) => match inner.downcast::<QueryError>() {
                Ok(q) => *q,
                Err(inner) => match inner.downcast::<CatalogError>() {
                    Ok(c) => QueryError::from(*c),
                    Err(inner) => match inner.downcast::<DataFusionError>() {
                        Ok(df) => QueryError::from(*df),
                        Err(other) => QueryError::Internal(other.to_string()),
                    },
                },
            },
            DataFusionError::ArrowError(e, _) => match *e {
                arrow::error::ArrowError::CastError(m)
                | arrow::error::ArrowError::InvalidArgumentError(m)
                | arrow::error::ArrowError::ParseError(m) => QueryError::Invalid(m),
                arrow::error::ArrowError::DivideByZero => {
                    QueryError::Invalid("division by zero".into())
                }
                other => QueryError::Internal(other.to_string()),
            },
            DataFusionError::Execution(m) if m.contains("not found") => QueryError::NotFound(m),
            DataFusionError::Execution(m) => QueryError::Invalid(m),
            other => QueryError::Internal(other.to_string()),
        }
    }
}

/// DataFusion reports unknown tables as plan errors; tell them apart here,
/// the one place that knows DataFusion's wording.
fn classify_plan_message(m: String) -> QueryError {
    let lower = m.to_ascii_lowercase();
    if (lower.contains("table") || lower.contains("schema") || lower.contains("catalog"))
        && (lower.contains("not found") || lower.contains("does not exist"))
    {
        QueryError::NotFound(m)
    } else if lower.contains("already exists") {
        QueryError::AlreadyExists(m)
    } else {
        QueryError::Invalid(m)
    }
}

impl From<CatalogError> for QueryError {
    fn from(e: CatalogError) -> Self {
        match &e {
            CatalogError::TableNotFound { .. } | CatalogError::NamespaceNotFound { .. } => {
                QueryError::NotFound(e.to_string())
            }
            CatalogError::TableExists { .. } => QueryError::AlreadyExists(e.to_string()),
            CatalogError::CommitConflict { .. }
            | CatalogError::Fenced { .. }
            | CatalogError::ReplaceContended { .. } => QueryError::Conflict(e.to_string()),
            CatalogError::TableSpec { .. }
            | CatalogError::InvalidName { .. }
            | CatalogError::LocationOverlap { .. } => QueryError::Invalid(e.to_string()),
            CatalogError::Write { source, .. }
                if source.kind() == iceberg::ErrorKind::DataInvalid =>
            {
                QueryError::Invalid(e.to_string())
            }
            _ => QueryError::Internal(e.to_string()),
        }
    }
}

impl From<iceberg::Error> for QueryError {
    fn from(e: iceberg::Error) -> Self {
        QueryError::from(CatalogError::iceberg("iceberg", e))
    }
}

/// Carries a classified error through DataFusion APIs that want a DataFusionError.
pub fn to_df(e: impl Into<QueryError>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}
