//! DataFusion catalog over the Iceberg catalog.
//!
//! iceberg-datafusion's `IcebergCatalogProvider` snapshots the namespace and
//! table lists once at construction and never sees tables created later (by
//! Weir or by another process such as PyIceberg), so Weir keeps its own: names
//! come from a cache refreshed before each statement, and every table lookup
//! loads fresh metadata, pinning one snapshot for the whole query.

use std::any::Any;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use weir_catalog::Lakehouse;
use weir_hot::HotSource;

use crate::error::{QueryError, to_df};
use crate::table::WeirTable;

/// Namespace → table → metadata location, as read before the statement.
type Names = weir_catalog::TableListing;

#[derive(Debug, Clone)]
pub struct WeirCatalogProvider {
    lakehouse: Lakehouse,
    /// Rows streaming writers hold before they commit (this process's and
    /// other processes' feeds).
    hot: Arc<dyn HotSource>,
    names: Arc<RwLock<Names>>,
    /// SQL views (`views.rs`), read with the names.
    views: Arc<RwLock<weir_catalog::ViewListing>>,
    /// How many views deep the statement planning through this provider is.
    view_depth: usize,
}

impl WeirCatalogProvider {
    pub async fn new(lakehouse: Lakehouse, hot: Arc<dyn HotSource>) -> Result<Self, QueryError> {
        let provider = WeirCatalogProvider {
            lakehouse,
            hot,
            names: Arc::default(),
            views: Arc::default(),
            view_depth: 0,
        };
        provider.refresh().await?;
        Ok(provider)
    }

    pub fn lakehouse(&self) -> &Lakehouse {
        &self.lakehouse
    }

    /// Re-reads namespace and table names from the catalog.
    pub async fn refresh(&self) -> Result<(), QueryError> {
        let names = self.lakehouse.list_tables_with_locations().await?;
        let views = self.lakehouse.list_views().await?;
        *self.names.write().expect("catalog name cache poisoned") = names;
        *self.views.write().expect("catalog view cache poisoned") = views;
        Ok(())
    }

    /// The cached table `namespace.name` if it is at the state listed for
    /// this statement (no catalog lookup), with whether it is a materialized
    /// view.
    fn listed_cached(&self, namespace: &str, name: &str) -> Option<(Table, bool)> {
        let location = self
            .names()
            .get(namespace)
            .and_then(|t| t.get(name).cloned().flatten())?;
        let ident = TableIdent::new(NamespaceIdent::new(namespace.to_string()), name.to_string());
        let table = self.lakehouse.cached_at(&ident, &location)?;
        let view = table
            .metadata()
            .properties()
            .contains_key(weir_catalog::MV_DEFINITION_PROPERTY);
        Some((table, view))
    }

    /// `namespace.name` is, as listed for this statement, a table already
    /// cached at that state that is not a materialized view (the rewrite
    /// skips it without a catalog lookup).
    pub(crate) fn known_plain_table(&self, namespace: &str, name: &str) -> bool {
        self.listed_cached(namespace, name)
            .is_some_and(|(_, view)| !view)
    }

    /// The tables and metadata locations of the last refresh.
    pub(crate) fn listing(&self) -> Names {
        self.names().clone()
    }

    fn names(&self) -> std::sync::RwLockReadGuard<'_, Names> {
        self.names.read().expect("catalog name cache poisoned")
    }

    /// The SQL view `namespace.name`, as listed for this statement.
    fn view(&self, namespace: &str, name: &str) -> Option<weir_catalog::ViewDefinition> {
        self.views
            .read()
            .expect("catalog view cache poisoned")
            .get(namespace)
            .and_then(|v| v.get(name).cloned())
    }

    fn view_names(&self, namespace: &str) -> Vec<String> {
        self.views
            .read()
            .expect("catalog view cache poisoned")
            .get(namespace)
            .map(|v| v.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl CatalogProvider for WeirCatalogProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema_names(&self) -> Vec<String> {
        self.names().keys().cloned().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        self.names().contains_key(name).then(|| {
            Arc::new(WeirSchemaProvider {
                catalog: self.clone(),
                namespace: name.to_string(),
            }) as Arc<dyn SchemaProvider>
        })
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> DFResult<Option<Arc<dyn SchemaProvider>>> {
        // CREATE SCHEMA is executed by Weir's DDL path, which creates the
        // Iceberg namespace; here we only need the name to be visible.
        self.names
            .write()
            .expect("catalog name cache poisoned")
            .entry(name.to_string())
            .or_default();
        Ok(None)
    }
}

#[derive(Debug)]
pub(crate) struct WeirSchemaProvider {
    catalog: WeirCatalogProvider,
    namespace: String,
}

#[async_trait]
impl SchemaProvider for WeirSchemaProvider {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .catalog
            .names()
            .get(&self.namespace)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        names.extend(self.catalog.view_names(&self.namespace));
        names
    }

    async fn table(&self, name: &str) -> DFResult<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.catalog.view(&self.namespace, name) {
            let deeper = WeirCatalogProvider {
                view_depth: self.catalog.view_depth + 1,
                ..self.catalog.clone()
            };
            return crate::views::view_table(
                deeper,
                &self.namespace,
                name,
                &view,
                self.catalog.view_depth,
            )
            .await
            .map(Some);
        }
        let ident = TableIdent::new(
            NamespaceIdent::new(self.namespace.clone()),
            name.to_string(),
        );
        // Hot rows first, then the table: see weir_hot::tier for why this
        // order makes every streamed record visible exactly once.
        let hot = self
            .catalog
            .hot
            .chunks(&ident.to_string())
            .await
            .map_err(to_df)?;
        // Materialized views take no streamed rows, so the catalog row read
        // with the names at the start of the statement serves them (the
        // rewrite looks at every view of a base table); other tables read
        // their row again after their hot rows.
        if let Some((table, true)) = self.catalog.listed_cached(&self.namespace, name) {
            return Ok(Some(Arc::new(
                WeirTable::try_new(self.catalog.lakehouse.clone(), table, None)?.with_hot(hot),
            )));
        }
        match self.catalog.lakehouse.load_table_cached(&ident).await {
            Ok(table) => Ok(Some(Arc::new(
                WeirTable::try_new(self.catalog.lakehouse.clone(), table, None)?.with_hot(hot),
            ))),
            Err(e) if e.kind() == iceberg::ErrorKind::TableNotFound => Ok(None),
            // Only a statement that reads this table fails (listings skip
            // it: see `table_type`), with the table and its metadata file.
            Err(e) => {
                let metadata = self
                    .catalog
                    .names()
                    .get(&self.namespace)
                    .and_then(|t| t.get(name).cloned().flatten())
                    .unwrap_or_else(|| "unknown".into());
                Err(to_df(weir_catalog::CatalogError::iceberg(
                    format!("table {ident} (metadata {metadata}) cannot be read"),
                    e,
                )))
            }
        }
    }

    /// The type without failing the listing: `SHOW TABLES` and
    /// `information_schema.tables` list a table whose metadata cannot be
    /// read (a base table, with a warning); reading it reports why.
    async fn table_type(&self, name: &str) -> DFResult<Option<TableType>> {
        if self.catalog.view(&self.namespace, name).is_some() {
            return Ok(Some(TableType::View));
        }
        match self.table(name).await {
            Ok(table) => Ok(table.map(|t| t.table_type())),
            Err(e) => {
                tracing::warn!(
                    schema = %self.namespace,
                    table = name,
                    error = %e,
                    "cannot load table; listed as a base table"
                );
                Ok(Some(TableType::Base))
            }
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.catalog
            .names()
            .get(&self.namespace)
            .is_some_and(|t| t.contains_key(name))
            || self.catalog.view(&self.namespace, name).is_some()
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> DFResult<Option<Arc<dyn TableProvider>>> {
        Err(DataFusionError::NotImplemented(format!(
            "registering `{name}` as an in-memory table or view is not supported; use CREATE TABLE to create an Iceberg table"
        )))
    }
}
