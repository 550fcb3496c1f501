//! One error enum for the catalog crate; variants say what failed.
//! (iceberg::Error is large, so it is boxed to keep `Result`s small.)

use iceberg::ErrorKind;

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog at {uri}: {source}")]
    Open {
        uri: String,
        source: Box<iceberg::Error>,
    },

    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },

    #[error("storage location {location}: {reason}")]
    StorageLocation { location: String, reason: String },

    #[error("object store {location}: {source}")]
    Storage {
        location: String,
        source: object_store::Error,
    },

    #[error("table definition {file}: {message}")]
    TableSpec { file: String, message: String },

    /// A table definition whose types, partitioning or sort order are refused.
    #[error("table definition {file}: {source}")]
    InvalidSpec {
        file: String,
        source: crate::spec::SpecError,
    },

    /// A namespace or table name Weir does not store (too long for a
    /// path component, control characters, empty).
    #[error("invalid {kind} name `{name}`: {reason}")]
    InvalidName {
        kind: &'static str,
        /// The name as shown (long names cut short).
        name: String,
        reason: String,
    },

    /// A new table's location would be, contain or lie inside another live
    /// table's location (each table owns every file under its location).
    #[error(
        "table {table} cannot be created at {location}: it overlaps the location {other_location} of table {other}"
    )]
    LocationOverlap {
        table: String,
        location: String,
        other: String,
        other_location: String,
    },

    #[error("table {table} not found")]
    TableNotFound { table: String },

    #[error("namespace {namespace} not found")]
    NamespaceNotFound { namespace: String },

    #[error("table {table} already exists")]
    TableExists { table: String },

    #[error("commit to {table} conflicted with a concurrent commit: {source}")]
    CommitConflict {
        table: String,
        source: Box<iceberg::Error>,
    },

    /// A commit fence refused the table state (e.g. another writer already
    /// committed these source offsets); rebuild the commit and try again.
    #[error("commit to {table} refused: {reason}")]
    Fenced { table: String, reason: String },

    /// Every attempt of a replace commit lost the race to other commits.
    #[error("replace commit on {table} lost {attempts} races to concurrent commits")]
    ReplaceContended { table: String, attempts: u32 },

    #[error("replace commit on {table} failed: {reason}")]
    Replace { table: String, reason: String },

    #[error("{context}: {source}")]
    Database {
        context: String,
        source: sqlx::Error,
    },

    #[error("writing data files for {table} failed: {source}")]
    Write {
        table: String,
        source: Box<iceberg::Error>,
    },

    #[error("{context}: {source}")]
    Iceberg {
        context: String,
        source: Box<iceberg::Error>,
    },
}

impl CatalogError {
    /// Wraps an iceberg error, keeping "not found" and "conflict" distinguishable.
    pub fn iceberg(context: impl Into<String>, source: iceberg::Error) -> Self {
        let context = context.into();
        match source.kind() {
            ErrorKind::TableNotFound => CatalogError::TableNotFound { table: context },
            ErrorKind::NamespaceNotFound => CatalogError::NamespaceNotFound { namespace: context },
            ErrorKind::TableAlreadyExists => CatalogError::TableExists { table: context },
            ErrorKind::CatalogCommitConflicts => CatalogError::CommitConflict {
                table: context,
                source: Box::new(source),
            },
            _ => CatalogError::Iceberg {
                context,
                source: Box::new(source),
            },
        }
    }

    /// True when retrying after reloading the table may succeed (commit conflicts).
    pub fn is_retryable(&self) -> bool {
        match self {
            CatalogError::CommitConflict { .. } | CatalogError::ReplaceContended { .. } => true,
            CatalogError::Iceberg { source, .. } | CatalogError::Write { source, .. } => {
                source.retryable()
            }
            _ => false,
        }
    }
}
