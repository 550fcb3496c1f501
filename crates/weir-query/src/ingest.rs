//! Bulk ingestion of Arrow record batches into an Iceberg table (Flight SQL
//! `CommandStatementIngest`, ADBC `adbc_ingest`).
//!
//! The rows go through the same write path as SQL `INSERT` (the table's
//! `insert_into`, i.e. `WeirInsertExec` and one append snapshot): the
//! client's stream is a one-shot streaming table, projected onto the target
//! table's columns by name with casts, and written with
//! `DataFrame::write_table`. Nothing is committed if the stream fails
//! part-way.
//!
//! Which tables accept ingestion: every table except
//! - materialized views (their rows come from `REFRESH MATERIALIZED VIEW`),
//! - tables of the pipeline schemas `bronze`, `silver` and `gold`, which
//!   Weir's exactly-once writers own (their snapshots carry source
//!   watermarks that a bulk append would bypass),
//!
//! unless the table property `weir.ingest.allowed` says otherwise (`true`
//! opts a pipeline table in, `false` opts any table out). Tables created by
//! ingestion get `weir.ingest.allowed = true`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::compute::can_cast_types;
use arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use iceberg::{NamespaceIdent, TableIdent};
use weir_catalog::{CATALOG_NAME, MV_DEFINITION_PROPERTY};

use crate::QueryEngine;
use crate::ddl::table_creation;
use crate::error::{QueryError, Result};
use crate::table::WeirTable;

/// Table property that allows (`true`) or refuses (`false`) bulk ingestion.
pub const INGEST_ALLOWED_PROPERTY: &str = "weir.ingest.allowed";

/// Schemas written by Weir's own pipeline: closed to ingestion by default.
pub const PIPELINE_SCHEMAS: [&str; 3] = ["bronze", "silver", "gold"];

/// What to do when the target table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfExists {
    Fail,
    Append,
    /// Drop the table and create it again from the incoming schema.
    Replace,
}

/// What to do when the target table does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMissing {
    Fail,
    Create,
}

/// Where and how to ingest.
#[derive(Debug, Clone)]
pub struct IngestTarget {
    /// The schema (Iceberg namespace); the session's default schema if None.
    pub schema: Option<String>,
    pub table: String,
    pub if_exists: IfExists,
    pub if_missing: IfMissing,
}

impl IngestTarget {
    /// The ADBC mode name, for messages.
    fn mode(&self) -> &'static str {
        match (self.if_missing, self.if_exists) {
            (IfMissing::Fail, IfExists::Fail) => "create (fail if missing)",
            (IfMissing::Create, IfExists::Fail) => "create",
            (IfMissing::Fail, IfExists::Append) => "append",
            (IfMissing::Create, IfExists::Append) => "create_append",
            (_, IfExists::Replace) => "replace",
        }
    }
}

impl QueryEngine {
    /// Writes `input` into the target table in one append snapshot, creating
    /// or replacing the table as `target` says. Returns the rows written.
    pub async fn ingest(
        &self,
        ctx: &SessionContext,
        target: &IngestTarget,
        input: SendableRecordBatchStream,
    ) -> Result<u64> {
        let namespace = match &target.schema {
            Some(s) if !s.is_empty() => s.clone(),
            _ => ctx.state().config_options().catalog.default_schema.clone(),
        };
        let ident = TableIdent::new(NamespaceIdent::new(namespace.clone()), target.table.clone());
        let name = format!("{namespace}.{}", target.table);
        let catalog = self.lakehouse().catalog();
        if !catalog.namespace_exists(ident.namespace()).await? {
            return Err(QueryError::NotFound(format!(
                "schema {namespace} does not exist (CREATE SCHEMA {namespace} first)"
            )));
        }
        let incoming = input.schema();
        let exists = catalog.table_exists(&ident).await?;
        match (exists, target.if_exists, target.if_missing) {
            (true, IfExists::Fail, _) => {
                return Err(QueryError::AlreadyExists(format!(
                    "table {name} already exists (ingest mode {}; use append, replace or create_append)",
                    target.mode()
                )));
            }
            (true, IfExists::Append, _) => {}
            (true, IfExists::Replace, _) => {
                self.check_ingest_allowed(ctx, &namespace, &target.table)
                    .await?;
                // The catalog entry goes; data files are left to orphan
                // cleanup, as with DROP TABLE (readers may still scan them).
                // TODO(issue 7): replace atomically (one metadata swap)
                // instead of drop + create.
                catalog.drop_table(&ident).await?;
                self.create_ingest_table(&ident, &incoming).await?;
            }
            (false, _, IfMissing::Fail) => {
                return Err(QueryError::NotFound(format!(
                    "table {name} does not exist (ingest mode {}; use create or create_append)",
                    target.mode()
                )));
            }
            (false, _, IfMissing::Create) => {
                match self.create_ingest_table(&ident, &incoming).await {
                    // A concurrent ingest created it first: append to it.
                    Err(QueryError::AlreadyExists(_)) if target.if_exists == IfExists::Append => {}
                    other => other?,
                }
            }
        }
        self.refresh().await?;
        let (table_schema, file_schema) = self
            .check_ingest_allowed(ctx, &namespace, &target.table)
            .await?;
        let projection = project_by_name(&incoming, &table_schema, &file_schema, &name)?;
        let source =
            StreamingTable::try_new(incoming.clone(), vec![Arc::new(OneShot::new(input))])?;
        let df = ctx.read_table(Arc::new(source))?.select(projection)?;
        let qualified = TableReference::full(CATALOG_NAME, namespace, target.table.clone());
        let written = df
            .write_table(&qualified.to_string(), DataFrameWriteOptions::new())
            .await?;
        let rows = count_column(&written)?;
        tracing::debug!(table = %name, rows, mode = target.mode(), "ingested");
        Ok(rows)
    }

    /// The table's client schema if it accepts ingestion (see module docs).
    async fn check_ingest_allowed(
        &self,
        ctx: &SessionContext,
        namespace: &str,
        table: &str,
    ) -> Result<(SchemaRef, SchemaRef)> {
        let reference = TableReference::full(CATALOG_NAME, namespace, table);
        let provider = ctx.table_provider(reference).await?;
        let weir = provider
            .as_any()
            .downcast_ref::<WeirTable>()
            .ok_or_else(|| {
                QueryError::Internal(format!("{namespace}.{table} is not a Weir table"))
            })?;
        let properties = weir.table().metadata().properties();
        if properties.contains_key(MV_DEFINITION_PROPERTY) {
            return Err(QueryError::Invalid(format!(
                "{namespace}.{table} is a materialized view and does not accept bulk ingestion: its rows come from REFRESH MATERIALIZED VIEW; ingest into its base table instead"
            )));
        }
        let allowed = match properties.get(INGEST_ALLOWED_PROPERTY).map(String::as_str) {
            Some("true") => true,
            Some("false") => {
                return Err(QueryError::Invalid(format!(
                    "{namespace}.{table} does not accept bulk ingestion (table property {INGEST_ALLOWED_PROPERTY} = false)"
                )));
            }
            _ => !PIPELINE_SCHEMAS.contains(&namespace),
        };
        if !allowed {
            return Err(QueryError::Invalid(format!(
                "{namespace}.{table} does not accept bulk ingestion: schema {namespace} is written by Weir's exactly-once pipeline, which a bulk append would bypass; ingest into a table of another schema (e.g. public), or set the table property {INGEST_ALLOWED_PROPERTY} = true"
            )));
        }
        Ok((provider.schema(), weir.file_schema()))
    }

    async fn create_ingest_table(&self, ident: &TableIdent, schema: &Schema) -> Result<()> {
        let properties = HashMap::from([(INGEST_ALLOWED_PROPERTY.to_string(), "true".to_string())]);
        let creation = table_creation(ident, schema, &[], properties)?;
        self.lakehouse()
            .create_table(&ident.namespace().to_url_string(), creation)
            .await?;
        Ok(())
    }
}

/// One expression per table column: the incoming column of the same name
/// (exact, else case-insensitive), cast to the table's type; NULL for
/// nullable columns the client did not send. 16-byte values for an Iceberg
/// `uuid` column (`table` shows it as text, `files` as bytes) go as hex
/// text, which the writer parses back.
fn project_by_name(
    incoming: &Schema,
    table: &Schema,
    files: &Schema,
    name: &str,
) -> Result<Vec<Expr>> {
    let find = |wanted: &str| {
        incoming
            .fields()
            .iter()
            .find(|f| f.name() == wanted)
            .or_else(|| {
                incoming
                    .fields()
                    .iter()
                    .find(|f| f.name().eq_ignore_ascii_case(wanted))
            })
    };
    for field in incoming.fields() {
        if table
            .fields()
            .iter()
            .all(|t| !t.name().eq_ignore_ascii_case(field.name()))
        {
            return Err(QueryError::Invalid(format!(
                "column {} does not exist in table {name} (columns: {})",
                field.name(),
                column_list(table)
            )));
        }
    }
    table
        .fields()
        .iter()
        .zip(files.fields())
        .map(|(target, stored)| match find(target.name()) {
            Some(source)
                if source.data_type() == &DataType::FixedSizeBinary(16)
                    && stored.data_type() == &DataType::FixedSizeBinary(16)
                    && target.data_type() == &DataType::Utf8 =>
            {
                let column = col(datafusion::common::Column::new_unqualified(source.name()));
                Ok(datafusion::functions::expr_fn::encode(
                    cast(column, DataType::Binary),
                    lit("hex"),
                )
                .alias(target.name()))
            }
            Some(source) => {
                if !can_cast_types(source.data_type(), target.data_type()) {
                    return Err(QueryError::Invalid(format!(
                        "column {} of table {name} is {}; {} values cannot be converted",
                        target.name(),
                        target.data_type(),
                        source.data_type()
                    )));
                }
                let column = col(datafusion::common::Column::new_unqualified(source.name()));
                Ok(cast(column, target.data_type().clone()).alias(target.name()))
            }
            None if target.is_nullable() => {
                let null = ScalarValue::try_from(target.data_type())?;
                Ok(lit(null).alias(target.name()))
            }
            None => Err(QueryError::Invalid(format!(
                "column {} of table {name} is NOT NULL but was not sent",
                target.name()
            ))),
        })
        .collect()
}

/// Sum of the `count` column an insert returns.
fn count_column(batches: &[arrow::array::RecordBatch]) -> Result<u64> {
    use arrow::array::AsArray;
    use arrow::datatypes::UInt64Type;
    let mut rows = 0u64;
    for batch in batches {
        let Some(count) = batch.column_by_name("count") else {
            continue;
        };
        let count = arrow::compute::cast(count, &arrow::datatypes::DataType::UInt64)
            .map_err(|e| QueryError::Internal(format!("insert count: {e}")))?;
        rows += count
            .as_primitive::<UInt64Type>()
            .iter()
            .flatten()
            .sum::<u64>();
    }
    Ok(rows)
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A partition that hands out the client's stream once.
struct OneShot {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl OneShot {
    fn new(stream: SendableRecordBatchStream) -> Self {
        OneShot {
            schema: stream.schema(),
            stream: Mutex::new(Some(stream)),
        }
    }
}

impl std::fmt::Debug for OneShot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneShot").finish_non_exhaustive()
    }
}

impl PartitionStream for OneShot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self
            .stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match taken {
            Some(stream) => stream,
            None => {
                let error =
                    DataFusionError::Execution("the ingested stream can only be read once".into());
                Box::pin(
                    datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                        self.schema.clone(),
                        futures::stream::once(async move { Err(error) }),
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::{DataType, Field};

    fn table() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("value", DataType::Float64, true),
        ])
    }

    #[test]
    fn columns_match_by_name_in_table_order() {
        let incoming = Schema::new(vec![
            Field::new("VALUE", DataType::Float32, true),
            Field::new("id", DataType::Int32, true),
        ]);
        let exprs = project_by_name(&incoming, &table(), &table(), "t").unwrap();
        let names: Vec<String> = exprs.iter().map(|e| e.schema_name().to_string()).collect();
        assert_eq!(names, ["id", "name", "value"]);
        let text = format!("{exprs:?}");
        assert!(text.contains("VALUE"), "{text}");
    }

    #[test]
    fn unknown_missing_and_unconvertible_columns_are_refused() {
        let extra = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("extra", DataType::Int64, true),
        ]);
        let e = project_by_name(&extra, &table(), &table(), "t").unwrap_err();
        assert!(
            e.to_string()
                .contains("column extra does not exist in table t"),
            "{e}"
        );
        let no_id = Schema::new(vec![Field::new("name", DataType::Utf8, true)]);
        let e = project_by_name(&no_id, &table(), &table(), "t").unwrap_err();
        assert!(e.to_string().contains("id of table t is NOT NULL"), "{e}");
        let list = Schema::new(vec![Field::new(
            "id",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            false,
        )]);
        let e = project_by_name(&list, &table(), &table(), "t").unwrap_err();
        assert!(matches!(e, QueryError::Invalid(_)), "{e}");
    }
}
