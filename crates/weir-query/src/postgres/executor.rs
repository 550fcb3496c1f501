//! Runs the SQL that federation unparsed for one PostgreSQL database.
//!
//! datafusion-table-providers' own executor (`SqlTable`) turns every failure
//! into a string, so a client could not tell a database that is down
//! (`UNAVAILABLE`, retry later) from SQL it rejected (`INVALID_ARGUMENT`).
//! This one uses the same pool and row conversion but keeps that difference.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::LogicalPlan;
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
use tokio_postgres::SimpleQueryMessage;

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

    /// PostgreSQL's own row estimate (`EXPLAIN`) of the largest table the
    /// subplan reads, so DataFusion builds a join's hash table on the small
    /// registry rather than on millions of points. No estimate (e.g. the
    /// database went away) leaves the statistics unknown.
    async fn statistics(&self, plan: &LogicalPlan) -> DFResult<Statistics> {
        let mut stats = Statistics::new_unknown(plan.schema().as_arrow());
        let mut tables = Vec::new();
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                tables.push(scan.table_name.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let Ok(conn) = connect(&self.pool, &self.catalog, &self.endpoint).await else {
            return Ok(stats);
        };
        let mut largest: Option<usize> = None;
        for table in tables {
            let sql = format!(
                "EXPLAIN SELECT 1 FROM {}.{}",
                quote_ident(table.schema().unwrap_or("public")),
                quote_ident(table.table())
            );
            let Ok(messages) = conn.conn.simple_query(&sql).await else {
                return Ok(stats);
            };
            let estimate = messages.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).and_then(explain_rows),
                _ => None,
            });
            match estimate {
                Some(rows) => largest = Some(largest.map_or(rows, |l| l.max(rows))),
                None => return Ok(stats),
            }
        }
        if let Some(rows) = largest {
            stats.num_rows = Precision::Inexact(rows);
        }
        Ok(stats)
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

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The `rows=N` of an `EXPLAIN` line such as
/// `Seq Scan on devices  (cost=0.00..22.70 rows=1270 width=32)`.
fn explain_rows(line: &str) -> Option<usize> {
    let rest = &line[line.find(" rows=")? + " rows=".len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_lines_give_row_estimates() {
        assert_eq!(
            explain_rows("Seq Scan on devices  (cost=0.00..22.70 rows=1270 width=32)"),
            Some(1270)
        );
        assert_eq!(
            explain_rows("Result  (cost=0.00..0.01 rows=1 width=4)"),
            Some(1)
        );
        assert_eq!(explain_rows("Planning Time: 0.1 ms"), None);
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
    }
}
