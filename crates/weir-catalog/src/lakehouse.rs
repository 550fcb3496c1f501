//! Opening the lakehouse (catalog + warehouse) and keeping declared tables in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::spec::Schema;
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{SqlBindStyle, SqlCatalog, SqlCatalogBuilder};
use tracing::info;

use crate::error::{CatalogError, Result};

/// Namespace → table → the metadata file its catalog row points at.
pub type TableListing =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Option<String>>>;
use crate::location::{TableLocation, path_component, validate_name};
use crate::spec::TableSpec;
use crate::storage::{ObjectStoreFactory, ObjectStores, S3Options, StoreLocation};

/// The catalog name recorded in the SQL catalog rows (PyIceberg: `SqlCatalog("weir", ...)`).
pub const CATALOG_NAME: &str = "weir";
/// Namespace for ad-hoc tables created without a schema qualifier.
pub const DEFAULT_NAMESPACE: &str = "public";
/// Namespaces that always exist: the medallion layers and the default.
const BUILTIN_NAMESPACES: [&str; 4] = ["bronze", "silver", "gold", DEFAULT_NAMESPACE];

#[derive(Debug, Clone)]
pub struct LakehouseOptions {
    /// Root of the embedded lakehouse (`./weir-data` by default).
    pub data_dir: PathBuf,
    /// Catalog database URI; default `sqlite:<data_dir>/catalog.db`.
    pub catalog_uri: Option<String>,
    /// Warehouse root for table data; default `file://<data_dir>/warehouse`,
    /// or `s3://bucket/prefix` on an S3-compatible store.
    pub warehouse: Option<String>,
    /// Options of the S3 store (endpoint, region, credentials, path style).
    pub s3: S3Options,
}

impl LakehouseOptions {
    /// The embedded default under `data_dir`: a SQLite catalog and a local
    /// warehouse.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        LakehouseOptions {
            data_dir: data_dir.into(),
            catalog_uri: None,
            warehouse: None,
            s3: S3Options::default(),
        }
    }
}

/// The catalog and warehouse, shared by every stage of the pipeline.
#[derive(Clone)]
pub struct Lakehouse {
    catalog: Arc<SqlCatalog>,
    /// Direct access to the catalog database, for Weir's own commits
    /// (replace snapshots) that swap the table row with a compare-and-swap.
    db: sqlx::AnyPool,
    /// The catalog database URI (with credentials: never logged).
    uri: String,
    postgres: bool,
    warehouse: String,
    /// Object stores of the warehouse, shared by Iceberg file IO, DataFusion
    /// scans and maintenance.
    stores: Arc<ObjectStores>,
    /// Loaded tables by name, for readers: reused while the catalog row
    /// still points at the same metadata file, so the table's object cache
    /// (manifest lists, manifests) stays warm across queries.
    tables: Arc<std::sync::Mutex<HashMap<TableIdent, Table>>>,
}

impl std::fmt::Debug for Lakehouse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lakehouse")
            .field("warehouse", &self.warehouse)
            .finish()
    }
}

/// What `ensure_tables` did, for the startup log.
#[derive(Debug, Default, Clone)]
pub struct EnsureReport {
    pub created: Vec<String>,
    pub evolved: Vec<(String, Vec<String>)>,
    pub unchanged: Vec<String>,
}

impl Lakehouse {
    pub async fn open(opts: &LakehouseOptions) -> Result<Self> {
        let data_dir = absolute(&opts.data_dir)?;
        std::fs::create_dir_all(&data_dir).map_err(|source| CatalogError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let uri = opts.catalog_uri.clone().unwrap_or_else(|| {
            format!("sqlite:{}?mode=rwc", data_dir.join("catalog.db").display())
        });
        let shown = redact_uri(&uri);
        let warehouse = opts
            .warehouse
            .clone()
            .unwrap_or_else(|| format!("file://{}", data_dir.join("warehouse").display()));
        let warehouse = warehouse.trim_end_matches('/').to_string();
        let root = StoreLocation::parse(&warehouse)?;
        if root.bucket.is_none() {
            let path = format!("/{}", root.key);
            std::fs::create_dir_all(&path).map_err(|source| CatalogError::DataDir {
                path: path.clone(),
                source,
            })?;
        }
        let stores = Arc::new(ObjectStores::new(opts.s3.clone()));
        let postgres = uri.starts_with("postgres");
        let bind = if postgres {
            SqlBindStyle::DollarNumeric
        } else {
            SqlBindStyle::QMark
        };
        // Several processes may open a new PostgreSQL catalog at once; its
        // `CREATE TABLE IF NOT EXISTS` statements race there, so the set-up
        // runs under an advisory lock.
        let lock = ddl_lock(&uri, postgres).await?;
        let catalog = SqlCatalogBuilder::default()
            .uri(uri.clone())
            .warehouse_location(warehouse.clone())
            .sql_bind_style(bind)
            .with_storage_factory(Arc::new(ObjectStoreFactory::new(stores.clone())))
            .load(CATALOG_NAME, HashMap::new())
            .await
            .map_err(|source| CatalogError::Open {
                uri: shown.clone(),
                source: Box::new(source),
            })?;
        let db = sqlx::any::AnyPoolOptions::new()
            .max_connections(4)
            .connect(&uri)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("connecting to {shown}"),
                source: e,
            })?;
        sqlx::query(crate::leases::CREATE_LEASES_TABLE)
            .execute(&db)
            .await
            .map_err(|e| CatalogError::Database {
                context: "creating the lease table".into(),
                source: e,
            })?;
        sqlx::query(crate::views::CREATE_VIEWS_TABLE)
            .execute(&db)
            .await
            .map_err(|e| CatalogError::Database {
                context: "creating the view table".into(),
                source: e,
            })?;
        let lakehouse = Lakehouse {
            catalog: Arc::new(catalog),
            db,
            uri,
            postgres,
            warehouse,
            stores,
            tables: Arc::default(),
        };
        for ns in BUILTIN_NAMESPACES {
            lakehouse.ensure_namespace(ns).await?;
        }
        release(lock).await;
        Ok(lakehouse)
    }

    /// The object stores of the warehouse (one client per bucket), for
    /// readers and maintenance that address files directly.
    pub fn object_stores(&self) -> &Arc<ObjectStores> {
        &self.stores
    }

    pub(crate) fn db(&self) -> &sqlx::AnyPool {
        &self.db
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// The catalog database holds several processes (PostgreSQL).
    pub fn shared_catalog(&self) -> bool {
        self.postgres
    }

    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    /// Every top-level namespace with its tables and the metadata file each
    /// table's catalog row points at, in one round trip. (iceberg-catalog-sql
    /// asks 1 + 2n queries for the same names: `list_namespaces`, then
    /// `namespace_exists` + `list_tables` per namespace; the query layer
    /// re-reads names before every statement.) Same visibility rules as those
    /// calls: tables of nested namespaces are not listed.
    pub async fn list_tables_with_locations(&self) -> Result<TableListing> {
        let sql = if self.postgres {
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
             UNION ALL \
             SELECT DISTINCT namespace, NULL, NULL FROM iceberg_namespace_properties \
             WHERE catalog_name = $2"
        } else {
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) \
             UNION ALL \
             SELECT DISTINCT namespace, NULL, NULL FROM iceberg_namespace_properties \
             WHERE catalog_name = ?"
        };
        let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(sql)
            .bind(CATALOG_NAME)
            .bind(CATALOG_NAME)
            .fetch_all(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: "listing namespaces and tables".into(),
                source: e,
            })?;
        let mut listing = TableListing::new();
        for (namespace, table, location) in rows {
            let top = namespace.split('.').next().unwrap_or_default().to_string();
            let tables = listing.entry(top.clone()).or_default();
            if let Some(table) = table
                && top == namespace
            {
                tables.insert(table, location);
            }
        }
        Ok(listing)
    }

    /// The cached table, if it is at metadata file `location` (a catalog
    /// row the caller has just read, e.g. from
    /// [`Self::list_tables_with_locations`]): no lookup at all.
    pub fn cached_at(&self, ident: &TableIdent, location: &str) -> Option<Table> {
        self.tables
            .lock()
            .expect("table cache lock")
            .get(ident)
            .filter(|t| t.metadata_location() == Some(location))
            .cloned()
    }

    /// The table's current state, for reading: one catalog-row lookup, and
    /// the metadata file is only read again when the row moved (a cached
    /// `Table` also keeps its parsed manifests). Writers load fresh.
    pub async fn load_table_cached(&self, ident: &TableIdent) -> iceberg::Result<Table> {
        let cached = self
            .tables
            .lock()
            .expect("table cache lock")
            .get(ident)
            .cloned();
        if let Some(table) = cached {
            match self.metadata_location(ident).await {
                Ok(Some(location)) if table.metadata_location() == Some(location.as_str()) => {
                    return Ok(table);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(table = %ident, error = %e, "table cache lookup failed"),
            }
        }
        let table = self.catalog.load_table(ident).await?;
        let mut tables = self.tables.lock().expect("table cache lock");
        // Bounded: a lakehouse has few tables; clear rather than track use.
        if tables.len() >= 1024 {
            tables.clear();
        }
        tables.insert(ident.clone(), table.clone());
        Ok(table)
    }

    /// The metadata location the catalog row points at, if the table exists.
    pub async fn metadata_location(&self, ident: &TableIdent) -> Result<Option<String>> {
        let sql = if self.postgres {
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3"
        } else {
            "SELECT metadata_location FROM iceberg_tables \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?"
        };
        let row: Option<(Option<String>,)> = sqlx::query_as(sql)
            .bind(CATALOG_NAME)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .fetch_optional(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("reading the metadata location of {ident}"),
                source: e,
            })?;
        Ok(row.and_then(|(l,)| l))
    }

    /// Compare-and-swap of a table's metadata location on the catalog row.
    /// Returns false when the row no longer points at `expected`.
    pub async fn swap_metadata(
        &self,
        ident: &TableIdent,
        expected: &str,
        new: &str,
    ) -> Result<bool> {
        let sql = if self.postgres {
            "UPDATE iceberg_tables SET metadata_location = $1, previous_metadata_location = $2 \
             WHERE catalog_name = $3 AND table_namespace = $4 AND table_name = $5 AND metadata_location = $6"
        } else {
            "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
             WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? AND metadata_location = ?"
        };
        let result = sqlx::query(sql)
            .bind(new)
            .bind(expected)
            .bind(CATALOG_NAME)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .bind(expected)
            .execute(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("swapping the metadata of {ident}"),
                source: e,
            })?;
        Ok(result.rows_affected() == 1)
    }

    /// The named leases in the catalog database (one job per table at a time).
    pub fn leases(&self) -> crate::leases::Leases {
        crate::leases::Leases::new(self.db.clone(), self.postgres)
    }

    pub fn warehouse(&self) -> &str {
        &self.warehouse
    }

    pub async fn ensure_namespace(&self, name: &str) -> Result<bool> {
        let ns = NamespaceIdent::new(name.to_string());
        let exists = self
            .catalog
            .namespace_exists(&ns)
            .await
            .map_err(|e| CatalogError::iceberg(name, e))?;
        if !exists {
            self.create_namespace(name).await?;
        }
        Ok(!exists)
    }

    /// Creates a namespace; every namespace Weir creates goes through here,
    /// so its name is checked first ([`validate_name`]).
    pub async fn create_namespace(&self, name: &str) -> Result<()> {
        validate_name("namespace", name)?;
        self.catalog
            .create_namespace(&NamespaceIdent::new(name.to_string()), HashMap::new())
            .await
            .map_err(|e| CatalogError::iceberg(name, e))?;
        Ok(())
    }

    pub async fn load_table(&self, namespace: &str, name: &str) -> Result<Table> {
        let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), name.to_string());
        self.catalog
            .load_table(&ident)
            .await
            .map_err(|e| CatalogError::iceberg(format!("{namespace}.{name}"), e))
    }

    /// Creates every declared table that is missing and adds columns that a
    /// definition gained since (Iceberg schema evolution: metadata only).
    pub async fn ensure_tables(&self, specs: &[TableSpec]) -> Result<EnsureReport> {
        // Processes starting together on one PostgreSQL catalog take turns.
        let lock = self.ddl_lock().await?;
        let report = self.ensure_tables_locked(specs).await;
        release(lock).await;
        report
    }

    /// Creates one declared table if it does not exist (without
    /// [`Lakehouse::ensure_tables`]'s DDL lock, whose future is not `Send`
    /// the way request handlers need; another process creating it at the
    /// same moment is fine). Returns whether it was created here.
    pub async fn create_if_missing(&self, spec: &TableSpec) -> Result<bool> {
        let (qualified, ident, schema) = spec_parts(spec)?;
        if self.table_exists(&qualified, &ident).await? {
            return Ok(false);
        }
        self.ensure_namespace(&spec.namespace).await?;
        match self.create_from_spec(spec, schema).await {
            Ok(_) => Ok(true),
            Err(e) => {
                if self.table_exists(&qualified, &ident).await? {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn table_exists(&self, qualified: &str, ident: &TableIdent) -> Result<bool> {
        self.catalog
            .table_exists(ident)
            .await
            .map_err(|e| CatalogError::iceberg(qualified, e))
    }

    async fn ddl_lock(&self) -> Result<Option<sqlx::AnyConnection>> {
        ddl_lock(&self.uri, self.postgres).await
    }

    async fn ensure_tables_locked(&self, specs: &[TableSpec]) -> Result<EnsureReport> {
        let mut report = EnsureReport::default();
        for spec in specs {
            self.ensure_namespace(&spec.namespace).await?;
            let (qualified, ident, schema) = spec_parts(spec)?;
            if !self.table_exists(&qualified, &ident).await? {
                self.create_from_spec(spec, schema).await?;
                info!(table = %qualified, "created declared table");
                report.created.push(qualified);
                continue;
            }
            let table = self.load_table(&spec.namespace, &spec.name).await?;
            let mut added = self.evolve(&table, &schema).await?;
            added.extend(self.sync_properties(spec).await?);
            if added.is_empty() {
                report.unchanged.push(qualified);
            } else {
                info!(table = %qualified, columns = ?added, "evolved declared table");
                report.evolved.push((qualified, added));
            }
        }
        Ok(report)
    }

    /// Sets the declared properties an existing table lacks or holds with
    /// another value (e.g. a changed view query); never removes any.
    async fn sync_properties(&self, spec: &TableSpec) -> Result<Vec<String>> {
        let qualified = spec.qualified_name();
        let table = self.load_table(&spec.namespace, &spec.name).await?;
        let current = table.metadata().properties();
        let changed: HashMap<String, String> = spec
            .properties
            .iter()
            .filter(|(k, v)| current.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if changed.is_empty() {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = changed.keys().map(|k| format!("property {k}")).collect();
        names.sort();
        let tx = Transaction::new(&table);
        let action = changed
            .into_iter()
            .fold(tx.update_table_properties(), |a, (k, v)| a.set(k, v));
        let tx = action
            .apply(tx)
            .map_err(|e| CatalogError::iceberg(&qualified, e))?;
        tx.commit(self.catalog.as_ref())
            .await
            .map_err(|e| CatalogError::iceberg(&qualified, e))?;
        Ok(names)
    }

    async fn create_from_spec(&self, spec: &TableSpec, schema: Schema) -> Result<Table> {
        let err = |source| CatalogError::InvalidSpec {
            file: spec.qualified_name(),
            source,
        };
        let partition = spec.partition_spec(&schema).map_err(err)?;
        let sort = spec.sort_order(&schema).map_err(err)?;
        let mut properties: HashMap<String, String> = spec.properties.clone().into_iter().collect();
        if let Some(doc) = &spec.doc {
            properties.insert("comment".into(), doc.clone());
        }
        let creation = TableCreation::builder()
            .name(spec.name.clone())
            .schema(schema)
            .partition_spec(partition)
            .sort_order(sort)
            .properties(properties)
            .build();
        self.create_table(&spec.namespace, creation).await
    }

    /// Creates a table; every table Weir creates (declared tables, `CREATE
    /// TABLE`, ingestion, materialized views) goes through here. The names
    /// are checked ([`validate_name`]); without an explicit location the
    /// table goes to `<namespace location>/<name>` with the name kept one
    /// path component ([`path_component`]); a location that is, contains or
    /// lies inside another live table's location is refused.
    pub async fn create_table(
        &self,
        namespace: &str,
        mut creation: TableCreation,
    ) -> Result<Table> {
        validate_name("namespace", namespace)?;
        validate_name("table", &creation.name)?;
        let qualified = format!("{namespace}.{}", creation.name);
        let ns = NamespaceIdent::new(namespace.to_string());
        let location = match creation.location.take() {
            Some(location) => location,
            None => self.default_location(&ns, &creation.name).await?,
        };
        let location = location.trim_end_matches('/').to_string();
        let ident = TableIdent::new(ns.clone(), creation.name.clone());
        for other in self.table_locations().await? {
            if other.ident == ident {
                continue;
            }
            if let Some(root) = other
                .roots()
                .into_iter()
                .find(|r| crate::location::overlaps(&location, r))
            {
                return Err(CatalogError::LocationOverlap {
                    table: qualified,
                    location,
                    other: other.ident.to_string(),
                    other_location: root,
                });
            }
        }
        creation.location = Some(location);
        self.catalog
            .create_table(&ns, creation)
            .await
            .map_err(|e| CatalogError::iceberg(qualified, e))
    }

    /// `<namespace location>/<table>`: the namespace's `location` property
    /// (as the SQL catalog honours it) or `<warehouse>/<namespace>`, each
    /// name one path component.
    async fn default_location(&self, ns: &NamespaceIdent, table: &str) -> Result<String> {
        let name = ns.to_url_string();
        let namespace = self
            .catalog
            .get_namespace(ns)
            .await
            .map_err(|e| CatalogError::iceberg(&name, e))?;
        let parent = match namespace.properties().get("location") {
            Some(location) => location.trim_end_matches('/').to_string(),
            None => format!(
                "{}/{}",
                self.warehouse,
                ns.iter()
                    .map(|part| path_component(part))
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        };
        Ok(format!("{parent}/{}", path_component(table)))
    }

    /// Where every live table of the catalog keeps its files, in every
    /// namespace (nested ones too), for checks that must not touch another
    /// table's files (orphan cleanup, new table locations). A table whose
    /// metadata cannot be read is listed with the location derived from its
    /// metadata path (and a warning).
    pub async fn table_locations(&self) -> Result<Vec<TableLocation>> {
        let sql = if self.postgres {
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = $1"
        } else {
            "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables \
             WHERE catalog_name = ?"
        };
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(sql)
            .bind(CATALOG_NAME)
            .fetch_all(&self.db)
            .await
            .map_err(|e| CatalogError::Database {
                context: "listing table locations".into(),
                source: e,
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for (namespace, name, metadata_location) in rows {
            let ident = TableIdent::new(NamespaceIdent::new(namespace), name);
            let Some(metadata_location) = metadata_location else {
                // Not a table Weir or PyIceberg wrote (no metadata yet).
                tracing::warn!(table = %ident, "catalog row without a metadata location");
                continue;
            };
            let location = match self.load_table_cached(&ident).await {
                Ok(table) => Some(table.metadata().location().to_string()),
                Err(e) => {
                    tracing::warn!(
                        table = %ident,
                        metadata = %metadata_location,
                        error = %e,
                        "cannot read the table metadata; its location is taken from the metadata path"
                    );
                    None
                }
            };
            out.push(TableLocation {
                ident,
                metadata_location,
                location,
            });
        }
        Ok(out)
    }

    /// Adds the top-level columns of `declared` missing from the table, as
    /// optional columns (existing rows read them as null; no data rewrite).
    async fn evolve(&self, table: &Table, declared: &Schema) -> Result<Vec<String>> {
        let current = table.metadata().current_schema();
        let missing: Vec<_> = declared
            .as_struct()
            .fields()
            .iter()
            .filter(|f| current.field_by_name(&f.name).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(vec![]);
        }
        let qualified = table.identifier().to_string();
        let tx = Transaction::new(table);
        let mut action = tx.update_schema();
        for field in &missing {
            let mut add = AddColumn::optional(&field.name, (*field.field_type).clone());
            if let Some(doc) = &field.doc {
                add = AddColumn::builder()
                    .name(field.name.clone())
                    .field_type((*field.field_type).clone())
                    .doc(doc.clone())
                    .build();
            }
            action = action.add_column(add);
        }
        let tx = action
            .apply(tx)
            .map_err(|e| CatalogError::iceberg(&qualified, e))?;
        tx.commit(self.catalog.as_ref())
            .await
            .map_err(|e| CatalogError::iceberg(&qualified, e))?;
        Ok(missing.iter().map(|f| f.name.clone()).collect())
    }
}

/// Key of the advisory lock serialising catalog set-up (arbitrary, fixed).
const DDL_LOCK_KEY: i64 = 0x5745_4952_4444_4c00; // "WEIRDDL\0"

/// On PostgreSQL, a connection holding the set-up advisory lock (released
/// by `release`, or by the server when the connection drops).
async fn ddl_lock(uri: &str, postgres: bool) -> Result<Option<sqlx::AnyConnection>> {
    use sqlx::Connection;
    if !postgres {
        return Ok(None);
    }
    sqlx::any::install_default_drivers();
    let db = |context: &str, source| CatalogError::Database {
        context: format!("{context} ({})", redact_uri(uri)),
        source,
    };
    let mut conn = sqlx::AnyConnection::connect(uri)
        .await
        .map_err(|e| db("connecting to the catalog", e))?;
    // `DO` so no result column (pg_advisory_lock returns `void`, which the
    // `Any` driver cannot decode) comes back.
    sqlx::raw_sql(&format!(
        "DO $$ BEGIN PERFORM pg_advisory_lock({DDL_LOCK_KEY}); END $$"
    ))
    .execute(&mut conn)
    .await
    .map_err(|e| db("locking the catalog for set-up", e))?;
    Ok(Some(conn))
}

async fn release(lock: Option<sqlx::AnyConnection>) {
    use sqlx::Connection;
    if let Some(conn) = lock
        && let Err(e) = conn.close().await
    {
        tracing::debug!(error = %e, "closing the catalog set-up lock connection");
    }
}

/// A database URI with its password replaced, for messages and logs.
pub(crate) fn redact_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => uri.to_string(),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|source| CatalogError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

/// A declared table's qualified name, identifier and schema.
fn spec_parts(spec: &TableSpec) -> Result<(String, TableIdent, Schema)> {
    let qualified = spec.qualified_name();
    let schema = spec.schema().map_err(|source| CatalogError::InvalidSpec {
        file: qualified.clone(),
        source,
    })?;
    let ident = TableIdent::new(
        NamespaceIdent::new(spec.namespace.clone()),
        spec.name.clone(),
    );
    Ok((qualified, ident, schema))
}

#[cfg(test)]
mod tests {
    use super::redact_uri;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact_uri("postgres://weir:s3cret@127.0.0.1:5432/lake?sslmode=disable"),
            "postgres://weir:***@127.0.0.1:5432/lake?sslmode=disable"
        );
        assert_eq!(
            redact_uri("sqlite:/tmp/c.db?mode=rwc"),
            "sqlite:/tmp/c.db?mode=rwc"
        );
    }
}
