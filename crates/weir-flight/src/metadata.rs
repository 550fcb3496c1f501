//! Catalog metadata commands: GetCatalogs, GetDbSchemas, GetTables,
//! GetTableTypes and the (always empty) key commands.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTableTypes, CommandGetTables};
use datafusion::catalog::information_schema::INFORMATION_SCHEMA;
use datafusion::common::TableReference;
use datafusion::datasource::TableType;
use datafusion::prelude::SessionContext;
use once_cell::sync::Lazy;
use tonic::Status;
use weir_query::QueryEngine;

use crate::error::{internal, status_from};

pub(crate) const TABLE_TYPE_TABLE: &str = "TABLE";
pub(crate) const TABLE_TYPE_VIEW: &str = "VIEW";
/// Sorted, as GetTableTypes requires.
pub(crate) const TABLE_TYPES: [&str; 2] = [TABLE_TYPE_TABLE, TABLE_TYPE_VIEW];

/// SQL `LIKE` as Flight SQL filter patterns use it: `%` matches any run of
/// characters, `_` exactly one, and `\` escapes the next character.
pub fn like_match(pattern: &str, value: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let value: Vec<char> = value.chars().collect();
    // Greedy matching with backtracking to the last `%` (linear-ish, no recursion).
    let (mut p, mut v) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while v < value.len() {
        match tokens.get(p) {
            Some(Tok::One) => {
                p += 1;
                v += 1;
            }
            Some(Tok::Lit(c)) if *c == value[v] => {
                p += 1;
                v += 1;
            }
            Some(Tok::Any) => {
                star = Some((p, v));
                p += 1;
            }
            _ => match star {
                Some((sp, sv)) => {
                    p = sp + 1;
                    v = sv + 1;
                    star = Some((sp, sv + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|t| *t == Tok::Any)
}

fn matches(pattern: Option<&str>, value: &str) -> bool {
    pattern.is_none_or(|p| like_match(p, value))
}

/// The table type a table of `schema` is reported with.
fn table_type_of(schema: &str) -> &'static str {
    if schema == INFORMATION_SCHEMA {
        TABLE_TYPE_VIEW
    } else {
        TABLE_TYPE_TABLE
    }
}

/// Schema names of the Weir catalog, `information_schema` included, sorted.
fn schema_names(ctx: &SessionContext, catalog: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ctx
        .catalog(catalog)
        .map(|c| c.schema_names().into_iter().collect())
        .unwrap_or_default();
    names.insert(INFORMATION_SCHEMA.to_string());
    names
}

pub(crate) fn catalogs(engine: &QueryEngine) -> Result<RecordBatch, Status> {
    let mut builder = GetCatalogsBuilder::new();
    for catalog in engine.catalog_names() {
        builder.append(catalog);
    }
    builder
        .build()
        .map_err(|e| internal("building GetCatalogs result", e))
}

pub(crate) async fn db_schemas(
    engine: &QueryEngine,
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    engine.refresh().await.map_err(status_from)?;
    let ctx = engine.new_context();
    let mut builder = query.into_builder();
    for catalog in engine.catalog_names() {
        for schema in schema_names(&ctx, &catalog) {
            builder.append(&catalog, schema);
        }
    }
    // The builder applies the catalog and LIKE filters and sorts.
    builder
        .build()
        .map_err(|e| internal("building GetDbSchemas result", e))
}

pub(crate) fn db_schemas_schema() -> SchemaRef {
    GetDbSchemasBuilder::new(None::<String>, None::<String>).schema()
}

pub(crate) fn tables_schema(include_schema: bool) -> SchemaRef {
    GetTablesBuilder::new(
        None::<String>,
        None::<String>,
        None::<String>,
        Vec::<String>::new(),
        include_schema,
    )
    .schema()
}

pub(crate) async fn tables(
    engine: &QueryEngine,
    query: CommandGetTables,
) -> Result<RecordBatch, Status> {
    engine.refresh().await.map_err(status_from)?;
    let ctx = engine.new_context();
    let include_schema = query.include_schema;
    let schema_pattern = query.db_schema_filter_pattern.clone();
    let table_pattern = query.table_name_filter_pattern.clone();
    let table_types = query.table_types.clone();
    let catalog_filter = query.catalog.clone();
    let mut builder = query.into_builder();
    let empty = Schema::empty();
    let state = ctx.state();

    for catalog in engine.catalog_names() {
        if catalog_filter.as_deref().is_some_and(|c| c != catalog) {
            continue;
        }
        let catalog = catalog.as_str();
        for schema_name in schema_names(&ctx, catalog) {
            if !matches(schema_pattern.as_deref(), &schema_name) {
                continue;
            }
            let provider = match state.schema_for_ref(TableReference::full(
                catalog,
                schema_name.as_str(),
                "_",
            )) {
                Ok(provider) => provider,
                Err(e) => {
                    tracing::warn!(schema = %schema_name, error = %e, "schema vanished while listing tables");
                    continue;
                }
            };
            let mut names = provider.table_names();
            names.sort();
            for table_name in names {
                if !matches(table_pattern.as_deref(), &table_name) {
                    continue;
                }
                // Loaded for its type (materialized views are views) and schema.
                let table = if schema_name == INFORMATION_SCHEMA && !include_schema {
                    None
                } else {
                    match provider.table(&table_name).await {
                        Ok(Some(table)) => Some(table),
                        Ok(None) => continue, // dropped concurrently
                        Err(e) => {
                            tracing::warn!(schema = %schema_name, table = %table_name, error = %e, "cannot load table; skipped in GetTables");
                            continue;
                        }
                    }
                };
                let table_type = match &table {
                    Some(t) if t.table_type() == TableType::View => TABLE_TYPE_VIEW,
                    _ => table_type_of(&schema_name),
                };
                if !(table_types.is_empty() || table_types.iter().any(|t| t == table_type)) {
                    continue;
                }
                let table_schema = match (&table, include_schema) {
                    (Some(t), true) => t.schema(),
                    _ => Arc::new(empty.clone()),
                };
                builder
                    .append(
                        catalog,
                        &schema_name,
                        &table_name,
                        table_type,
                        &table_schema,
                    )
                    .map_err(|e| internal("encoding a table schema", e))?;
            }
        }
    }
    builder
        .build()
        .map_err(|e| internal("building GetTables result", e))
}

pub(crate) fn table_types(query: CommandGetTableTypes) -> Result<RecordBatch, Status> {
    let mut builder = query.into_builder();
    for t in TABLE_TYPES {
        builder.append(t);
    }
    builder
        .build()
        .map_err(|e| internal("building GetTableTypes result", e))
}

pub(crate) fn table_types_schema() -> SchemaRef {
    CommandGetTableTypes {}.into_builder().schema()
}

/// `CommandGetPrimaryKeys` result schema (FlightSql.proto).
pub(crate) static PRIMARY_KEYS_SCHEMA: Lazy<SchemaRef> = Lazy::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
});

/// Result schema of `CommandGetExportedKeys`, `CommandGetImportedKeys` and
/// `CommandGetCrossReference` (FlightSql.proto).
pub(crate) static FOREIGN_KEYS_SCHEMA: Lazy<SchemaRef> = Lazy::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
});

/// Iceberg tables have no primary or foreign keys: every key command is empty.
pub(crate) fn empty_batch(schema: &SchemaRef) -> Result<RecordBatch, Status> {
    RecordBatch::try_new_with_options(
        schema.clone(),
        schema
            .fields()
            .iter()
            .map(|f| arrow::array::new_empty_array(f.data_type()))
            .collect(),
        &RecordBatchOptions::new().with_row_count(Some(0)),
    )
    .map_err(|e| internal("building an empty key result", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like_match("sil%", "silver"));
        assert!(like_match("%", ""));
        assert!(like_match("%", "anything"));
        assert!(like_match("s_lver", "silver"));
        assert!(!like_match("s_lver", "slver"));
        assert!(like_match("%ver", "silver"));
        assert!(like_match("%l%e%", "silver"));
        assert!(!like_match("gold", "golden"));
        assert!(like_match("gold%", "golden"));
        assert!(!like_match("sil", "silver"));
        assert!(like_match("points\\_1m", "points_1m"));
        assert!(!like_match("points\\_1m", "pointsx1m"));
        assert!(like_match("100\\%", "100%"));
        assert!(!like_match("100\\%", "1000"));
        assert!(like_match("a%b%c", "aXbYbZc"));
        assert!(!like_match("a%b%c", "aXbYbZ"));
        assert!(like_match("", ""));
        assert!(!like_match("", "x"));
        assert!(like_match("ünï_ode", "ünïcode"));
    }

    #[test]
    fn key_results_are_empty_with_spec_schemas() {
        let batch = empty_batch(&PRIMARY_KEYS_SCHEMA).unwrap();
        assert_eq!(batch.num_rows(), 0);
        assert_eq!(batch.num_columns(), 6);
        let batch = empty_batch(&FOREIGN_KEYS_SCHEMA).unwrap();
        assert_eq!(batch.num_columns(), 13);
        assert!(
            !batch
                .schema()
                .field_with_name("update_rule")
                .unwrap()
                .is_nullable()
        );
    }

    #[test]
    fn table_types_are_sorted() {
        let batch = table_types(CommandGetTableTypes {}).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let mut sorted = TABLE_TYPES;
        sorted.sort();
        assert_eq!(sorted, TABLE_TYPES);
    }
}
