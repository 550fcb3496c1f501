//! Query errors, classified by what went wrong so the Flight layer can pick
//! the right status code (explicit conversion, no string guessing there).

use datafusion::error::DataFusionError;
use weir_catalog::CatalogError;

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

#[derive(Debug, Clone, thiserror::Error)]
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
    /// Classifies by the deepest DataFusion error of the chain
    /// ([`DataFusionError::find_root`]): the planner, optimizer and execution
    /// wrap user errors in `Context`, `Diagnostic`, `Shared`, `External` and
    /// Arrow's `ExternalError`, and report several at once as `Collection`
    /// (whose root is its first error). Only what no class below claims is
    /// `Internal`, with the whole chain as its message.
    fn from(e: DataFusionError) -> Self {
        classify_df(e.find_root()).unwrap_or_else(|| QueryError::Internal(e.to_string()))
    }
}

fn classify_df(e: &DataFusionError) -> Option<QueryError> {
    Some(match e {
        DataFusionError::SQL(e, _) => QueryError::Syntax(e.to_string()),
        DataFusionError::Plan(m) => classify_plan_message(m.clone()),
        DataFusionError::SchemaError(e, _) => QueryError::Invalid(e.to_string()),
        DataFusionError::NotImplemented(m) => QueryError::Unsupported(m.clone()),
        DataFusionError::ResourcesExhausted(m) => QueryError::ResourcesExhausted(m.clone()),
        DataFusionError::Configuration(m) => QueryError::Invalid(m.clone()),
        DataFusionError::Execution(m) if m.contains("not found") => QueryError::NotFound(m.clone()),
        DataFusionError::Execution(m) => QueryError::Invalid(m.clone()),
        DataFusionError::ArrowError(e, _) => return classify_arrow(e),
        DataFusionError::External(inner) => return classify_external(inner.as_ref()),
        // Wrappers `find_root` looks through; kept for a root that is one.
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            return classify_df(inner.find_root());
        }
        DataFusionError::Shared(inner) => return classify_df(inner.find_root()),
        DataFusionError::Collection(errors) => return classify_df(errors.first()?.find_root()),
        _ => return None,
    })
}

/// Arrow kernels fail on the data they are given (casts, parsing, overflow,
/// regular expressions, division by zero): the query's fault, not Weir's.
fn classify_arrow(e: &arrow::error::ArrowError) -> Option<QueryError> {
    use arrow::error::ArrowError as A;
    Some(match e {
        A::CastError(m)
        | A::InvalidArgumentError(m)
        | A::ParseError(m)
        | A::ComputeError(m)
        | A::ArithmeticOverflow(m)
        | A::CsvError(m)
        | A::JsonError(m) => QueryError::Invalid(m.clone()),
        A::DivideByZero => QueryError::Invalid("division by zero".into()),
        A::NotYetImplemented(m) => QueryError::Unsupported(m.clone()),
        A::MemoryError(m) => QueryError::ResourcesExhausted(m.clone()),
        A::ExternalError(inner) => return classify_external(inner.as_ref()),
        _ => return None,
    })
}

/// Errors boxed into `External`: Weir's own (already classified), the
/// catalog's, DataFusion's and Arrow's, and a regular expression that does
/// not compile (`regexp_replace` and the optimizer report the `regex`
/// crates' errors as they are).
fn classify_external(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<QueryError> {
    if let Some(q) = e.downcast_ref::<QueryError>() {
        Some(q.clone())
    } else if let Some(c) = e.downcast_ref::<CatalogError>() {
        Some(classify_catalog(c))
    } else if let Some(df) = e.downcast_ref::<DataFusionError>() {
        classify_df(df.find_root())
    } else if let Some(a) = e.downcast_ref::<arrow::error::ArrowError>() {
        classify_arrow(a)
    } else if let Some(r) = e.downcast_ref::<regex::Error>() {
        Some(QueryError::Invalid(format!(
            "invalid regular expression: {r}"
        )))
    } else {
        // The optimizer parses `~` / `regexp_like` patterns to simplify them.
        e.downcast_ref::<regex_syntax::Error>()
            .map(|r| QueryError::Invalid(format!("invalid regular expression: {r}")))
    }
}

/// DataFusion reports unknown tables as plan errors; tell them apart here,
/// the one place that knows DataFusion's wording. An unknown table function
/// (`table function 'f' not found`) is an unknown function, INVALID_ARGUMENT
/// like an unknown scalar or aggregate function (`Invalid function 'f'`).
fn classify_plan_message(m: String) -> QueryError {
    let lower = m.to_ascii_lowercase();
    if lower.starts_with("table function") {
        QueryError::Invalid(m)
    } else if (lower.contains("table") || lower.contains("schema") || lower.contains("catalog"))
        && (lower.contains("not found") || lower.contains("does not exist"))
    {
        QueryError::NotFound(m)
    } else if lower.contains("already exists") {
        QueryError::AlreadyExists(m)
    } else {
        QueryError::Invalid(m)
    }
}

/// A hot tier a query reads cannot answer (another process's feed);
/// retrying later may succeed.
impl From<weir_hot::HotError> for QueryError {
    fn from(e: weir_hot::HotError) -> Self {
        QueryError::Unavailable(e.to_string())
    }
}

impl From<CatalogError> for QueryError {
    fn from(e: CatalogError) -> Self {
        classify_catalog(&e)
    }
}

fn classify_catalog(e: &CatalogError) -> QueryError {
    match e {
        CatalogError::TableNotFound { .. } | CatalogError::NamespaceNotFound { .. } => {
            QueryError::NotFound(e.to_string())
        }
        CatalogError::TableExists { .. } => QueryError::AlreadyExists(e.to_string()),
        CatalogError::CommitConflict { .. }
        | CatalogError::Fenced { .. }
        | CatalogError::ReplaceContended { .. } => QueryError::Conflict(e.to_string()),
        CatalogError::TableSpec { .. }
        | CatalogError::InvalidSpec { .. }
        | CatalogError::InvalidName { .. }
        | CatalogError::LocationOverlap { .. } => QueryError::Invalid(e.to_string()),
        CatalogError::Write { source, .. } if source.kind() == iceberg::ErrorKind::DataInvalid => {
            QueryError::Invalid(e.to_string())
        }
        _ => QueryError::Internal(e.to_string()),
    }
}

/// A refused column type, partition transform or sort order: the
/// statement's fault.
impl From<weir_catalog::spec::SpecError> for QueryError {
    fn from(e: weir_catalog::spec::SpecError) -> Self {
        QueryError::Invalid(e.to_string())
    }
}

impl From<iceberg::Error> for QueryError {
    fn from(e: iceberg::Error) -> Self {
        QueryError::from(CatalogError::iceberg("iceberg", e))
    }
}

/// Carries a classified error through DataFusion APIs that want a DataFusionError.
pub(crate) fn to_df(e: impl Into<QueryError>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::error::ArrowError;

    fn kind(e: DataFusionError) -> String {
        let q = QueryError::from(e);
        format!("{q:?}").split('(').next().unwrap().to_string()
    }

    #[test]
    fn the_root_of_a_chain_decides() {
        // Several unknown names at once: DataFusion collects them.
        let collected = DataFusionError::Collection(vec![
            DataFusionError::Plan("Invalid function 'a'".into()),
            DataFusionError::Plan("Invalid function 'b'".into()),
        ]);
        assert_eq!(kind(collected), "Invalid");
        // The optimizer's regex simplification wraps the parser's error.
        let regex = regex_syntax::Parser::new().parse("(").unwrap_err();
        let wrapped = DataFusionError::Context(
            "Optimizer rule 'simplify_expressions' failed".into(),
            Box::new(DataFusionError::Context(
                "Invalid regex".into(),
                Box::new(DataFusionError::External(Box::new(regex))),
            )),
        );
        let q = QueryError::from(wrapped);
        assert!(
            matches!(&q, QueryError::Invalid(m) if m.contains("regular expression")),
            "{q:?}"
        );
        let pattern = String::from("[");
        let regex = regex::Regex::new(&pattern).unwrap_err();
        assert_eq!(kind(DataFusionError::External(Box::new(regex))), "Invalid");
        // Arrow errors that carry a DataFusion error, and shared errors.
        let arrow = DataFusionError::ArrowError(
            Box::new(ArrowError::ExternalError(Box::new(DataFusionError::Plan(
                "x".into(),
            )))),
            None,
        );
        assert_eq!(kind(arrow), "Invalid");
        let shared = DataFusionError::Shared(Arc::new(DataFusionError::NotImplemented("x".into())));
        assert_eq!(kind(shared), "Unsupported");
        let overflow = DataFusionError::ArrowError(
            Box::new(ArrowError::ArithmeticOverflow("abs".into())),
            None,
        );
        assert_eq!(kind(overflow), "Invalid");
        // Weir's own errors keep their class under any wrapping.
        let ours = DataFusionError::Context(
            "ctx".into(),
            Box::new(DataFusionError::External(Box::new(QueryError::Conflict(
                "c".into(),
            )))),
        );
        assert_eq!(kind(ours), "Conflict");
    }

    #[test]
    fn internal_stays_internal_with_its_context() {
        let e = DataFusionError::Context(
            "while doing x".into(),
            Box::new(DataFusionError::Internal("bug".into())),
        );
        let q = QueryError::from(e);
        assert!(
            matches!(&q, QueryError::Internal(m) if m.contains("while doing x") && m.contains("bug")),
            "{q:?}"
        );
    }

    #[test]
    fn refused_table_definitions_are_invalid() {
        let spec = weir_catalog::spec::parse_partition_expr("bogus(x)").unwrap_err();
        let text = spec.to_string();
        assert_eq!(text, "partition `bogus(x)`: unknown transform `bogus`");
        assert!(matches!(QueryError::from(spec), QueryError::Invalid(m) if m == text));
        let catalog = CatalogError::InvalidSpec {
            file: "a.b".into(),
            source: weir_catalog::spec::SpecError::SortColumn("nope".into()),
        };
        assert!(matches!(
            QueryError::from(catalog),
            QueryError::Invalid(m) if m == "table definition a.b: sort column `nope` is not in the schema"
        ));
    }

    #[test]
    fn unknown_tables_and_table_functions() {
        assert_eq!(
            kind(DataFusionError::Plan(
                "table 'weir.public.x' not found".into()
            )),
            "NotFound"
        );
        assert_eq!(
            kind(DataFusionError::Plan("table function 'f' not found".into())),
            "Invalid"
        );
    }
}
