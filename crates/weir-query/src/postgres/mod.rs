//! External PostgreSQL databases attached as DataFusion catalogs
//! (`--postgres-catalog pg=postgres://user:pass@host:port/db`).
//!
//! Tables of the database appear as `pg.<schema>.<table>`. Scans go through
//! datafusion-federation's SQL federation: the optimizer cuts out every
//! subplan that only touches one PostgreSQL (filters, projections, joins
//! between its tables, aggregates, limits), unparses it to PostgreSQL SQL and
//! runs it there (`VirtualExecutionPlan ... sql=...` in `EXPLAIN`); the rest
//! of the plan (a join with an Iceberg table) runs in DataFusion.
//!
//! datafusion-table-providers supplies the connection pool, the type mapping
//! and the row-to-Arrow conversion; Weir adds what it lacks: names refreshed
//! from the database's `information_schema` (its catalog provider lists
//! tables once), a lazy pool so a database that is down at start does not
//! stop the server, timeouts (its pool waits 30 s for a connection), and
//! errors classified for Flight clients (`UNAVAILABLE` when the database
//! cannot be reached, `INVALID_ARGUMENT` when it rejects the SQL).

mod executor;
mod federation;

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::TableReference;
use datafusion::sql::unparser::dialect::PostgreSqlDialect;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use datafusion_table_providers::UnsupportedTypeAction;
use datafusion_table_providers::postgres::DynPostgresConnectionPool;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::postgresconn::PostgresConnection;
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use datafusion_table_providers::sql::sql_provider_datafusion::SqlTable;
use datafusion_table_providers::util::secrets::to_secret_map;

use crate::error::{QueryError, to_df};
use executor::PgExecutor;

/// Longest wait for a connection (the pool itself would wait 30 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Table and schema names are re-read at most this often.
const NAMES_TTL: Duration = Duration::from_secs(1);

/// One `--postgres-catalog NAME=URL` setting.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresCatalogSpec {
    pub name: String,
    pub url: String,
}

impl std::fmt::Debug for PostgresCatalogSpec {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalogSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FromStr for PostgresCatalogSpec {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, QueryError> {
        let invalid = |why: &str| {
            QueryError::Invalid(format!(
                "--postgres-catalog `{}`: {why}; expected NAME=postgres://user:pass@host:port/db",
                s.split('=').next().unwrap_or_default()
            ))
        };
        let (name, url) = s.split_once('=').ok_or_else(|| invalid("missing `=`"))?;
        let name = name.trim();
        let valid_name = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.chars().next().is_some_and(|c| !c.is_ascii_digit());
        if !valid_name {
            return Err(invalid("the name must be a plain identifier"));
        }
        if name == weir_catalog::CATALOG_NAME {
            return Err(invalid("the name is taken by Weir's own catalog"));
        }
        let url = url.trim();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(invalid("the URL must start with postgres://"));
        }
        tokio_postgres::Config::from_str(url).map_err(|e| invalid(&e.to_string()))?;
        Ok(PostgresCatalogSpec {
            name: name.to_string(),
            url: url.to_string(),
        })
    }
}

/// Connection parameters in the form datafusion-table-providers takes.
fn pool_params(url: &str) -> Result<(HashMap<String, String>, String), QueryError> {
    use tokio_postgres::config::{Host, SslMode};
    let config = tokio_postgres::Config::from_str(url)
        .map_err(|e| QueryError::Invalid(format!("PostgreSQL URL: {e}")))?;
    let mut params = HashMap::new();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    params.insert("host".into(), host.clone());
    params.insert("port".into(), port.to_string());
    if let Some(user) = config.get_user() {
        params.insert("user".into(), user.to_string());
    }
    let db = config.get_dbname().unwrap_or("postgres").to_string();
    params.insert("db".into(), db.clone());
    if let Some(pass) = config.get_password() {
        params.insert("pass".into(), String::from_utf8_lossy(pass).into_owned());
    }
    let ssl = match config.get_ssl_mode() {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        _ => "require",
    };
    params.insert("sslmode".into(), ssl.into());
    Ok((params, format!("{host}:{port}/{db}")))
}

type Names = BTreeMap<String, BTreeSet<String>>;

#[derive(Default)]
struct RefreshState {
    /// When the names were last read successfully.
    loaded: Option<Instant>,
    /// The last attempt failed: the database is presumed down.
    down: bool,
}

/// An attached PostgreSQL database: a DataFusion catalog.
pub struct PostgresCatalog {
    name: String,
    /// `host:port/db`, for messages (no credentials).
    endpoint: String,
    params: HashMap<String, String>,
    pool: tokio::sync::Mutex<Option<Arc<PostgresConnectionPool>>>,
    names: RwLock<Names>,
    state: Mutex<RefreshState>,
    refreshing: AtomicBool,
}

impl std::fmt::Debug for PostgresCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresCatalog")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl PostgresCatalog {
    /// Attaches the database; it is contacted on first use, so a database
    /// that is down now only fails the queries that need it.
    pub fn new(spec: &PostgresCatalogSpec) -> Result<Arc<Self>, QueryError> {
        let (params, endpoint) = pool_params(&spec.url)?;
        Ok(Arc::new(PostgresCatalog {
            name: spec.name.clone(),
            endpoint,
            params,
            pool: tokio::sync::Mutex::new(None),
            names: RwLock::default(),
            state: Mutex::default(),
            refreshing: AtomicBool::new(false),
        }))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn unavailable(&self, what: impl std::fmt::Display) -> QueryError {
        QueryError::Unavailable(format!(
            "PostgreSQL catalog `{}` at {}: {what}",
            self.name, self.endpoint
        ))
    }

    /// The connection pool, created on first success.
    async fn pool(&self) -> Result<Arc<PostgresConnectionPool>, QueryError> {
        let mut slot = self.pool.lock().await;
        if let Some(pool) = slot.as_ref() {
            return Ok(pool.clone());
        }
        let params = to_secret_map(self.params.clone());
        let pool = tokio::time::timeout(CONNECT_TIMEOUT, PostgresConnectionPool::new(params))
            .await
            .map_err(|_| self.unavailable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| self.unavailable(one_line(&e.to_string())))?;
        // jsonb (e.g. device config) and other types without an Arrow
        // mapping are read as their text form rather than refusing the table.
        let pool = Arc::new(pool.with_unsupported_type_action(UnsupportedTypeAction::String));
        *slot = Some(pool.clone());
        Ok(pool)
    }

    /// A pooled connection, or `Unavailable` within [`CONNECT_TIMEOUT`].
    async fn connect(&self) -> Result<PostgresConnection, QueryError> {
        // Listings leave the database out until it answers again.
        let mark_down = || self.state.lock().expect("pg refresh state poisoned").down = true;
        let pool = self.pool().await.inspect_err(|_| mark_down())?;
        let conn = connect(&pool, &self.name, &self.endpoint).await;
        if conn.is_err() {
            mark_down();
            // The pool retries with a growing back-off and may keep failing
            // for a while after the database is back: start over with a new
            // one (it connects at once) on the next statement.
            let mut slot = self.pool.lock().await;
            if slot.as_ref().is_some_and(|p| Arc::ptr_eq(p, &pool)) {
                *slot = None;
            }
        }
        conn
    }

    /// Re-reads schema and table names when they are older than the TTL.
    /// Never fails: while the database is down the read runs in the
    /// background so statements on other catalogs are not delayed.
    pub async fn refresh(self: &Arc<Self>) {
        let (fresh, down) = {
            let state = self.state.lock().expect("pg refresh state poisoned");
            (
                state.loaded.is_some_and(|t| t.elapsed() < NAMES_TTL),
                state.down,
            )
        };
        if fresh {
            return;
        }
        if down {
            if !self.refreshing.swap(true, Ordering::AcqRel) {
                let this = self.clone();
                tokio::spawn(async move {
                    this.load_names().await;
                    this.refreshing.store(false, Ordering::Release);
                });
            }
            return;
        }
        self.load_names().await;
    }

    async fn load_names(&self) {
        let outcome = self.read_names().await;
        let mut state = self.state.lock().expect("pg refresh state poisoned");
        match outcome {
            Ok(names) => {
                *self.names.write().expect("pg name cache poisoned") = names;
                state.loaded = Some(Instant::now());
                state.down = false;
            }
            Err(e) => {
                if !state.down {
                    tracing::warn!(catalog = %self.name, error = %e, "cannot list PostgreSQL tables");
                }
                state.down = true;
            }
        }
    }

    async fn read_names(&self) -> Result<Names, QueryError> {
        let conn = self.connect().await?;
        let rows = conn
            .conn
            .query(
                "SELECT s.schema_name::text, t.table_name::text \
                 FROM information_schema.schemata s \
                 LEFT JOIN information_schema.tables t ON t.table_schema = s.schema_name \
                 WHERE s.schema_name NOT IN ('information_schema', 'pg_catalog') \
                   AND s.schema_name NOT LIKE 'pg\\_%'",
                &[],
            )
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut names = Names::new();
        for row in rows {
            let schema: String = row.get(0);
            let tables = names.entry(schema).or_default();
            if let Some(table) = row.get::<_, Option<String>>(1) {
                tables.insert(table);
            }
        }
        Ok(names)
    }

    /// Looks the table up in the database now (a table created a moment ago
    /// is found) and builds its federated provider.
    /// TODO: cache providers for a few seconds (today every lookup
    /// costs two round trips: existence, then the columns).
    async fn table(
        &self,
        schema: &str,
        table: &str,
    ) -> Result<Option<Arc<dyn TableProvider>>, QueryError> {
        let conn = self.connect().await?;
        let exists = conn
            .conn
            .query_opt(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2",
                &[&schema, &table],
            )
            .await
            .map_err(|e| self.unavailable(e))?
            .is_some();
        drop(conn);
        if !exists {
            return Ok(None);
        }
        let pool = self.pool().await?;
        let dyn_pool: Arc<DynPostgresConnectionPool> = pool.clone();
        let reference = TableReference::partial(schema, table);
        let sql_table = tokio::time::timeout(
            CONNECT_TIMEOUT,
            SqlTable::new("postgres", &dyn_pool, reference.clone()),
        )
        .await
        .map_err(|_| self.unavailable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| {
            QueryError::Invalid(format!(
                "PostgreSQL table {}.{schema}.{table}: {}",
                self.name,
                one_line(&e.to_string())
            ))
        })?
        .with_dialect(Arc::new(PostgreSqlDialect {}));
        let schema_ref = sql_table.schema();
        let executor = Arc::new(PgExecutor::new(
            self.name.clone(),
            self.endpoint.clone(),
            pool,
        ));
        let source = Arc::new(SQLTableSource::new_with_schema(
            Arc::new(SQLFederationProvider::new(executor)),
            RemoteTableRef::from(reference),
            schema_ref,
        ));
        Ok(Some(Arc::new(
            FederatedTableProviderAdaptor::new_with_provider(source, Arc::new(sql_table)),
        )))
    }
}

async fn connect(
    pool: &PostgresConnectionPool,
    catalog: &str,
    endpoint: &str,
) -> Result<PostgresConnection, QueryError> {
    let unavailable = |what: String| {
        QueryError::Unavailable(format!(
            "PostgreSQL catalog `{catalog}` at {endpoint}: {what}"
        ))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, pool.connect_direct())
        .await
        .map_err(|_| unavailable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| unavailable(one_line(&e.to_string())))
        .map(|c| c.with_unsupported_type_action(UnsupportedTypeAction::String))
}

/// datafusion-table-providers puts advice on extra lines; keep the first.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(|l| l.trim().trim_end_matches('.'))
        .filter(|l| !l.is_empty())
        .take(2)
        .collect::<Vec<_>>()
        .join(": ")
}

/// The DataFusion face of a [`PostgresCatalog`].
#[derive(Debug, Clone)]
pub struct PostgresCatalogProvider(pub Arc<PostgresCatalog>);

impl CatalogProvider for PostgresCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.0
            .names
            .read()
            .expect("pg name cache poisoned")
            .keys()
            .cloned()
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Any name resolves: table lookups ask the database itself, so a
        // schema created a moment ago works before the next listing, and a
        // database that is down fails with UNAVAILABLE, not NOT_FOUND.
        Some(Arc::new(PostgresSchemaProvider {
            catalog: self.0.clone(),
            schema: name.to_string(),
        }))
    }
}

#[derive(Debug)]
struct PostgresSchemaProvider {
    catalog: Arc<PostgresCatalog>,
    schema: String,
}

#[async_trait]
impl SchemaProvider for PostgresSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        // While the database is down its tables are left out of listings
        // (information_schema, GetTables), which would otherwise fail whole.
        if self
            .catalog
            .state
            .lock()
            .expect("pg refresh state poisoned")
            .down
        {
            return Vec::new();
        }
        self.catalog
            .names
            .read()
            .expect("pg name cache poisoned")
            .get(&self.schema)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        self.catalog.table(&self.schema, name).await.map_err(to_df)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog
            .names
            .read()
            .expect("pg name cache poisoned")
            .get(&self.schema)
            .is_some_and(|t| t.contains(name))
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        // TODO: INSERT INTO pg.… through the library's table writer.
        Err(DataFusionError::NotImplemented(format!(
            "creating `{name}` in the PostgreSQL catalog `{}`: attached databases are read-only",
            self.catalog.name
        )))
    }
}

/// A session whose planner federates PostgreSQL subplans (see federation.rs).
pub(crate) fn federated_context(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_optimizer_rules(federation::optimizer_rules())
        .with_query_planner(Arc::new(federation::WeirFederatedQueryPlanner))
        .with_physical_optimizer_rule(Arc::new(crate::clustered_agg::ClusteredKeysRule))
        .build();
    SessionContext::new_with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_reject() {
        let spec: PostgresCatalogSpec =
            "pg=postgres://u:p@127.0.0.1:5433/registry".parse().unwrap();
        assert_eq!(spec.name, "pg");
        assert!(!format!("{spec:?}").contains("u:p"));
        let (params, endpoint) = pool_params(&spec.url).unwrap();
        assert_eq!(endpoint, "127.0.0.1:5433/registry");
        assert_eq!(params["user"], "u");
        assert_eq!(params["pass"], "p");
        assert_eq!(params["sslmode"], "prefer");
        let (params, _) = pool_params("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(params["sslmode"], "disable");
        assert_eq!(params["port"], "5432");
        for bad in [
            "pg",
            "=postgres://h/db",
            "1pg=postgres://h/db",
            "weir=postgres://h/db",
            "pg=mysql://h/db",
            "pg=postgres://h:notaport/db",
        ] {
            assert!(
                matches!(
                    bad.parse::<PostgresCatalogSpec>(),
                    Err(QueryError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_keep_their_first_lines() {
        assert_eq!(
            one_line("PostgreSQL connection failed.\nerror connecting\n\nFor details ..."),
            "PostgreSQL connection failed: error connecting"
        );
    }
}
