//! A commit fence: a check run against the table state a commit is about to
//! replace, inside the catalog's compare-and-swap.
//!
//! iceberg-rust's `Transaction::commit` reloads the table and re-applies its
//! actions when a commit conflicts, so a check made by the caller before
//! committing can go stale. Its commit-level hooks (`TransactionAction`,
//! `TableCommit::builder`) are crate-private, so Weir wraps the catalog instead:
//! `update_table` loads the current table, runs the fence on it and only then
//! hands the commit to the real catalog. That is safe because the commit's own
//! requirement (the main branch still points at the snapshot it was built on)
//! and the catalog's CAS on the metadata location reject any commit that lands
//! between the fence and the swap; the transaction then retries and the fence
//! runs again on the new state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::table::Table;
use iceberg::{
    Catalog, Error, ErrorKind, Namespace, NamespaceIdent, Result, TableCommit, TableCreation,
    TableIdent,
};

/// Returns `Err(reason)` when the commit must not go ahead on this table state.
pub type FenceCheck = Arc<dyn Fn(&Table) -> std::result::Result<(), String> + Send + Sync>;

pub(crate) struct FencedCatalog<'a> {
    inner: &'a dyn Catalog,
    check: FenceCheck,
    /// The reason of the last refusal, so the caller can tell a fence from a failure.
    pub(crate) refused: Mutex<Option<String>>,
}

impl std::fmt::Debug for FencedCatalog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FencedCatalog").finish_non_exhaustive()
    }
}

impl<'a> FencedCatalog<'a> {
    pub(crate) fn new(inner: &'a dyn Catalog, check: FenceCheck) -> Self {
        Self {
            inner,
            check,
            refused: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Catalog for FencedCatalog<'_> {
    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        let current = self.inner.load_table(commit.identifier()).await?;
        if let Err(reason) = (self.check)(&current) {
            *self.refused.lock().expect("fence lock") = Some(reason.clone());
            // Not retryable: the caller must rebuild the commit.
            return Err(Error::new(
                ErrorKind::DataInvalid,
                format!("commit fenced: {reason}"),
            ));
        }
        self.inner.update_table(commit).await
    }

    async fn list_namespaces(
        &self,
        parent: Option<&NamespaceIdent>,
    ) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(&self, namespace: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &NamespaceIdent,
        properties: HashMap<String, String>,
    ) -> Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(&self, namespace: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(
        &self,
        namespace: &NamespaceIdent,
        creation: TableCreation,
    ) -> Result<Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        self.inner.load_table(table).await
    }
    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}
