//! Runs the SQL that federation unparsed for one PostgreSQL database.
//!
//! datafusion-table-providers' own executor (`SqlTable`) turns every failure
//! into a string, so a client could not tell a database that is down
//! (`UNAVAILABLE`, retry later) from SQL it rejected (`INVALID_ARGUMENT`).
//! This one uses the same pool and row conversion but keeps that difference.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::TableReference;
use datafusion::sql::unparser::dialect::{Dialect, PostgreSqlDialect};
use datafusion_federation::sql::SQLExecutor;
use datafusion_table_providers::postgres::DynPostgresConnection;
use datafusion_table_providers::sql::db_connection_pool::dbconnection::{get_schema, query_arrow};
use datafusion_table_providers::sql::db_connection_pool::postgrespool::PostgresConnectionPool;
use futures::TryStreamExt;

use super::{connect, one_line};
use crate::error::{QueryError, to_df};

pub(super) struct PgExecutor {
    /// `postgres:<catalog>`: shown in EXPLAIN.
    name: String,
    catalog: String,
    endpoint: String,
    pool: Arc<PostgresConnectionPool>,
}

impl PgExecutor {
    pub(super) fn new(
        catalog: String,
        endpoint: String,
        pool: Arc<PostgresConnectionPool>,
    ) -> Self {
        PgExecutor {
            name: format!("postgres:{catalog}"),
            catalog,
            endpoint,
            pool,
        }
    }

    /// A failure of a statement sent to PostgreSQL, classified: the server
    /// answered with an SQLSTATE → the query is at fault; no answer → the
    /// database is unavailable.
    fn classify(&self, err: &(dyn std::error::Error + 'static)) -> QueryError {
        let mut source = Some(err);
        while let Some(e) = source {
            if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
                return match pg.as_db_error() {
                    Some(db) => QueryError::Invalid(format!(
                        "PostgreSQL catalog `{}` rejected the query: {} (SQLSTATE {})",
                        self.catalog,
                        db.message(),
                        db.code().code()
                    )),
                    None => QueryError::Unavailable(format!(
                        "PostgreSQL catalog `{}` at {}: {pg}",
                        self.catalog, self.endpoint
                    )),
                };
            }
            source = e.source();
        }
        QueryError::Internal(format!(
            "PostgreSQL catalog `{}`: {}",
            self.catalog,
            one_line(&err.to_string())
        ))
    }
}

#[async_trait]
impl SQLExecutor for PgExecutor {
    fn name(&self) -> &str {
        &self.name
    }

    /// Subplans over tables of the same attached catalog are federated
    /// together (joins between its tables run in PostgreSQL).
    fn compute_context(&self) -> Option<String> {
        Some(format!("{}@{}", self.catalog, self.endpoint))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(PostgreSqlDialect {})
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> DFResult<SendableRecordBatchStream> {
        let pool = self.pool.clone();
        let this = PgExecutor {
            name: self.name.clone(),
            catalog: self.catalog.clone(),
            endpoint: self.endpoint.clone(),
            pool: self.pool.clone(),
        };
        let sql = query.to_string();
        let projected = schema.clone();
        tracing::debug!(catalog = %self.catalog, %sql, "federated query");
        let stream = async move {
            let conn = connect(&pool, &this.catalog, &this.endpoint)
                .await
                .map_err(to_df)?;
            let conn: Box<DynPostgresConnection> = Box::new(conn);
            query_arrow(conn, sql, Some(projected))
                .await
                .map_err(|e| to_df(this.classify(&e)))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(stream).try_flatten(),
        )))
    }

    async fn table_names(&self) -> DFResult<Vec<String>> {
        Err(DataFusionError::NotImplemented(
            "listing tables through the executor; the catalog lists them".into(),
        ))
    }

    async fn get_table_schema(&self, table_name: &str) -> DFResult<SchemaRef> {
        let conn = connect(&self.pool, &self.catalog, &self.endpoint)
            .await
            .map_err(to_df)?;
        let conn: Box<DynPostgresConnection> = Box::new(conn);
        get_schema(conn, &TableReference::from(table_name))
            .await
            .map_err(|e| to_df(self.classify(&e)))
    }
}
