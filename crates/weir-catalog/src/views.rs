//! SQL views (`CREATE VIEW`): rows of a `weir_views` table in the catalog
//! database.
//!
//! Why a table of Weir's own and not an Iceberg view: iceberg-rust 0.10's
//! SQL catalog has no view API (its queries only see `iceberg_type = 'TABLE'`
//! rows), and an Iceberg view entry (an `iceberg_type = 'VIEW'` row of the
//! JDBC catalog's V1 layout) needs a view metadata file whose SQL other
//! engines would try to run in their own dialect. A row in the same database
//! is committed atomically with nothing else to write, survives restarts, is
//! seen by every Weir process sharing the catalog, and costs one indexed
//! query per statement. The query layer plans the stored SQL again on every
//! use (DataFusion's `ViewTable`) and lists views as `VIEW` in
//! `information_schema.tables` and Flight SQL `GetTables`.
//!
//! A name is a table or a view, never both: creating either checks the other.

use std::collections::BTreeMap;

use iceberg::{NamespaceIdent, TableIdent};

use crate::error::{CatalogError, Result};
use crate::lakehouse::{CATALOG_NAME, Lakehouse};

/// A stored view: its query and the schema its unqualified names resolve in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDefinition {
    pub sql: String,
    pub default_namespace: String,
}

/// Namespace → view name → definition.
pub type ViewListing = BTreeMap<String, BTreeMap<String, ViewDefinition>>;

pub(crate) const CREATE_VIEWS_TABLE: &str = "CREATE TABLE IF NOT EXISTS weir_views (\
     catalog_name VARCHAR(255) NOT NULL, \
     view_namespace VARCHAR(255) NOT NULL, \
     view_name VARCHAR(255) NOT NULL, \
     definition TEXT NOT NULL, \
     default_namespace VARCHAR(255) NOT NULL, \
     PRIMARY KEY (catalog_name, view_namespace, view_name))";

impl Lakehouse {
    fn sql<'a>(&self, postgres: &'a str, sqlite: &'a str) -> &'a str {
        if self.is_postgres() { postgres } else { sqlite }
    }

    /// Every view of the catalog.
    pub async fn list_views(&self) -> Result<ViewListing> {
        let sql = self.sql(
            "SELECT view_namespace, view_name, definition, default_namespace FROM weir_views WHERE catalog_name = $1",
            "SELECT view_namespace, view_name, definition, default_namespace FROM weir_views WHERE catalog_name = ?",
        );
        let rows: Vec<(String, String, String, String)> = sqlx::query_as(sql)
            .bind(CATALOG_NAME)
            .fetch_all(self.db())
            .await
            .map_err(|e| CatalogError::Database {
                context: "listing views".into(),
                source: e,
            })?;
        let mut listing = ViewListing::new();
        for (namespace, name, sql, default_namespace) in rows {
            listing.entry(namespace).or_default().insert(
                name,
                ViewDefinition {
                    sql,
                    default_namespace,
                },
            );
        }
        Ok(listing)
    }

    /// The view `ident`, if there is one.
    pub async fn view(&self, ident: &TableIdent) -> Result<Option<ViewDefinition>> {
        let sql = self.sql(
            "SELECT definition, default_namespace FROM weir_views WHERE catalog_name = $1 AND view_namespace = $2 AND view_name = $3",
            "SELECT definition, default_namespace FROM weir_views WHERE catalog_name = ? AND view_namespace = ? AND view_name = ?",
        );
        let row: Option<(String, String)> = sqlx::query_as(sql)
            .bind(CATALOG_NAME)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .fetch_optional(self.db())
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("reading view {ident}"),
                source: e,
            })?;
        Ok(row.map(|(sql, default_namespace)| ViewDefinition {
            sql,
            default_namespace,
        }))
    }

    /// Stores view `ident`; replaces an existing view when `or_replace`.
    /// Fails when a table has that name, or a view does and `!or_replace`.
    pub async fn create_view(
        &self,
        ident: &TableIdent,
        definition: &ViewDefinition,
        or_replace: bool,
    ) -> Result<()> {
        crate::location::validate_name("view", ident.name())?;
        let namespace = ident.namespace();
        let qualified = ident.to_string();
        if !self
            .catalog()
            .namespace_exists(namespace)
            .await
            .map_err(|e| CatalogError::iceberg(&qualified, e))?
        {
            return Err(CatalogError::NamespaceNotFound {
                namespace: namespace.to_url_string(),
            });
        }
        if self.metadata_location(ident).await?.is_some()
            || self
                .catalog()
                .table_exists(ident)
                .await
                .map_err(|e| CatalogError::iceberg(&qualified, e))?
        {
            return Err(CatalogError::TableExists {
                table: format!("{qualified} (a table)"),
            });
        }
        let db = |e| CatalogError::Database {
            context: format!("storing view {qualified}"),
            source: e,
        };
        if or_replace {
            let update = self.sql(
                "UPDATE weir_views SET definition = $1, default_namespace = $2 WHERE catalog_name = $3 AND view_namespace = $4 AND view_name = $5",
                "UPDATE weir_views SET definition = ?, default_namespace = ? WHERE catalog_name = ? AND view_namespace = ? AND view_name = ?",
            );
            let updated = sqlx::query(update)
                .bind(&definition.sql)
                .bind(&definition.default_namespace)
                .bind(CATALOG_NAME)
                .bind(namespace.join("."))
                .bind(ident.name())
                .execute(self.db())
                .await
                .map_err(db)?;
            if updated.rows_affected() == 1 {
                return Ok(());
            }
        } else if self.view(ident).await?.is_some() {
            return Err(CatalogError::TableExists {
                table: format!("view {qualified}"),
            });
        }
        let insert = self.sql(
            "INSERT INTO weir_views (catalog_name, view_namespace, view_name, definition, default_namespace) VALUES ($1, $2, $3, $4, $5)",
            "INSERT INTO weir_views (catalog_name, view_namespace, view_name, definition, default_namespace) VALUES (?, ?, ?, ?, ?)",
        );
        sqlx::query(insert)
            .bind(CATALOG_NAME)
            .bind(namespace.join("."))
            .bind(ident.name())
            .bind(&definition.sql)
            .bind(&definition.default_namespace)
            .execute(self.db())
            .await
            .map_err(|e| match &e {
                // Another process created it between the check and here.
                sqlx::Error::Database(d) if d.is_unique_violation() => CatalogError::TableExists {
                    table: format!("view {qualified}"),
                },
                _ => db(e),
            })?;
        Ok(())
    }

    /// Removes view `ident`; false if there was none.
    pub async fn drop_view(&self, ident: &TableIdent) -> Result<bool> {
        let sql = self.sql(
            "DELETE FROM weir_views WHERE catalog_name = $1 AND view_namespace = $2 AND view_name = $3",
            "DELETE FROM weir_views WHERE catalog_name = ? AND view_namespace = ? AND view_name = ?",
        );
        let deleted = sqlx::query(sql)
            .bind(CATALOG_NAME)
            .bind(ident.namespace().join("."))
            .bind(ident.name())
            .execute(self.db())
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("dropping view {ident}"),
                source: e,
            })?;
        Ok(deleted.rows_affected() > 0)
    }

    /// Removes every view of `namespace` (DROP SCHEMA … CASCADE).
    pub async fn drop_views_in(&self, namespace: &NamespaceIdent) -> Result<u64> {
        let sql = self.sql(
            "DELETE FROM weir_views WHERE catalog_name = $1 AND view_namespace = $2",
            "DELETE FROM weir_views WHERE catalog_name = ? AND view_namespace = ?",
        );
        let deleted = sqlx::query(sql)
            .bind(CATALOG_NAME)
            .bind(namespace.join("."))
            .execute(self.db())
            .await
            .map_err(|e| CatalogError::Database {
                context: format!("dropping the views of {}", namespace.to_url_string()),
                source: e,
            })?;
        Ok(deleted.rows_affected())
    }
}
