//! `ALTER TABLE` on Iceberg tables (issue 20 item 4): schema, property,
//! partition-spec and sort-order evolution, each statement one metadata
//! commit through [`weir_catalog::commit_metadata`]; `RENAME TO` through the
//! catalog.
//!
//! Schema evolution follows Iceberg's rules: an added column gets a fresh id
//! after `last-column-id` (a re-added name is a new column: old files read
//! NULL for it), a dropped column's id is retired, a renamed column keeps
//! its id (old files read their values under the new name), and types only
//! widen (int→bigint, float→double, decimal precision). Readers match files
//! by field id (`native_scan/field_ids.rs`).
//!
//! The forms sqlparser reads (`ADD/DROP/RENAME COLUMN`, `ALTER COLUMN … SET
//! DATA TYPE | DROP NOT NULL`, `RENAME TO`, `SET TBLPROPERTIES`) come from
//! its AST; the Spark/Iceberg forms it does not read (`UNSET TBLPROPERTIES`,
//! `ADD/DROP PARTITION FIELD`, `WRITE [UN]ORDERED BY`) are read here with
//! sqlparser's parser and the session's dialect. Either way the statement is
//! one [`AlterTable`], parsed once.

use std::collections::HashMap;

use datafusion::common::TableReference;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, DataType, Ident, ObjectName};
use iceberg::TableIdent;
#[cfg(test)]
use iceberg::spec::PrimitiveType;
use iceberg::spec::Type;
use weir_catalog::{CATALOG_NAME, Lakehouse};

use crate::ddl::{CTAS_PENDING, SOURCE_TIME_ZONE};
use crate::error::{QueryError, Result};

mod evolve;
mod parse;

use evolve::apply;
#[cfg(test)]
use evolve::widens;
pub(crate) use parse::{from_ast, parse_extension};

/// One `ALTER TABLE` statement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AlterTable {
    /// The table's name parts as written (normalized like DataFusion does).
    pub table: Vec<String>,
    pub if_exists: bool,
    pub ops: Vec<AlterOp>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AlterOp {
    AddColumn {
        name: String,
        data_type: Box<DataType>,
        if_not_exists: bool,
    },
    DropColumn {
        name: String,
        if_exists: bool,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    SetDataType {
        column: String,
        data_type: Box<DataType>,
    },
    DropNotNull {
        column: String,
    },
    RenameTable {
        to: Vec<String>,
    },
    SetProperties(Vec<(String, String)>),
    UnsetProperties {
        keys: Vec<String>,
        if_exists: bool,
    },
    /// `transform(column)` as written, and an optional `AS name`.
    AddPartitionField {
        expr: String,
        name: Option<String>,
    },
    /// `transform(column)` or a partition field name.
    DropPartitionField {
        expr: String,
    },
    /// Empty: `WRITE UNORDERED`.
    WriteOrderedBy(Vec<SortKey>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SortKey {
    pub column: String,
    pub descending: bool,
    pub nulls_first: Option<bool>,
}

/// Table properties Weir manages itself: never set or unset by SQL.
fn internal_property(key: &str) -> bool {
    key.starts_with("weir.mv.") || key == CTAS_PENDING || key.starts_with(SOURCE_TIME_ZONE)
}

/// Runs an `ALTER TABLE`.
pub(crate) async fn execute(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    alter: &AlterTable,
) -> Result<()> {
    let ident = resolve(ctx, &alter.table)?;
    let catalog = lakehouse.catalog();
    if !catalog.table_exists(&ident).await? {
        if lakehouse.view(&ident).await?.is_some() {
            return Err(QueryError::Invalid(format!(
                "{ident} is a view; use CREATE OR REPLACE VIEW to change it"
            )));
        }
        return if alter.if_exists {
            Ok(())
        } else {
            Err(QueryError::NotFound(format!("table {ident}")))
        };
    }
    if let [AlterOp::RenameTable { to }] = alter.ops.as_slice() {
        return rename_table(ctx, lakehouse, &ident, to).await;
    }
    // Column types are DataFusion's reading of the SQL types (as in CREATE
    // TABLE), resolved before the commit loop.
    let mut types = HashMap::new();
    for op in &alter.ops {
        if let AlterOp::AddColumn {
            name, data_type, ..
        }
        | AlterOp::SetDataType {
            column: name,
            data_type,
        } = op
        {
            types.insert(name.clone(), iceberg_type(ctx, name, data_type).await?);
        }
    }
    // A view's query names the columns it reads: renaming or dropping one
    // would leave a view that can never be refreshed.
    let touched: Vec<&String> = alter
        .ops
        .iter()
        .filter_map(|op| match op {
            AlterOp::RenameColumn { from, .. } => Some(from),
            AlterOp::DropColumn { name, .. } => Some(name),
            _ => None,
        })
        .collect();
    if !touched.is_empty() {
        for (view, columns) in crate::mv::views_reading_columns(lakehouse, ctx, &ident).await? {
            if let Some(column) = touched.iter().find(|c| columns.contains(c.as_str())) {
                return Err(QueryError::Invalid(format!(
                    "column {column} of {ident} is read by materialized view {view}; \
                     DROP MATERIALIZED VIEW {view} first and CREATE it again after the change"
                )));
            }
        }
    }
    let name = ident.to_string();
    let mut failure = None;
    let outcome = weir_catalog::commit_metadata(lakehouse, &ident, |table| {
        match apply(
            table.metadata(),
            table.metadata_location(),
            &alter.ops,
            &types,
            &name,
        ) {
            Ok(metadata) => Ok(metadata),
            Err(e) => {
                failure = Some(e);
                Err(weir_catalog::CatalogError::TableSpec {
                    file: name.clone(),
                    message: "ALTER TABLE refused".into(),
                })
            }
        }
    })
    .await;
    if let Some(e) = failure {
        return Err(e);
    }
    outcome?;
    Ok(())
}

fn resolve(ctx: &SessionContext, parts: &[String]) -> Result<TableIdent> {
    let reference = match parts {
        [t] => TableReference::bare(t.as_str()),
        [s, t] => TableReference::partial(s.as_str(), t.as_str()),
        [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
        _ => {
            return Err(QueryError::Invalid(format!(
                "`{}` is not a table name",
                parts.join(".")
            )));
        }
    };
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    let resolved = reference.resolve(&defaults.default_catalog, &defaults.default_schema);
    if resolved.catalog.as_ref() != CATALOG_NAME {
        return Err(QueryError::Unsupported(format!(
            "ALTER TABLE in catalog {}: only Iceberg tables (catalog {CATALOG_NAME}) can be altered",
            resolved.catalog
        )));
    }
    Ok(TableIdent::new(
        iceberg::NamespaceIdent::new(resolved.schema.to_string()),
        resolved.table.to_string(),
    ))
}

async fn rename_table(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    from: &TableIdent,
    to: &[String],
) -> Result<()> {
    // An unqualified new name stays in the table's schema.
    let to = match to {
        [t] => TableIdent::new(from.namespace().clone(), t.clone()),
        other => resolve(ctx, other)?,
    };
    weir_catalog::validate_name("table", to.name())?;
    let table = lakehouse.catalog().load_table(from).await?;
    if table
        .metadata()
        .properties()
        .contains_key(weir_catalog::MV_DEFINITION_PROPERTY)
    {
        return Err(QueryError::Invalid(format!(
            "{from} is a materialized view; DROP and CREATE it under the new name"
        )));
    }
    if lakehouse.catalog().table_exists(&to).await? || lakehouse.view(&to).await?.is_some() {
        return Err(QueryError::AlreadyExists(format!("table or view {to}")));
    }
    if !lakehouse.catalog().namespace_exists(to.namespace()).await? {
        return Err(QueryError::NotFound(format!(
            "schema {}",
            to.namespace().to_url_string()
        )));
    }
    lakehouse.catalog().rename_table(from, &to).await?;
    Ok(())
}

/// The Iceberg type of a SQL type, as CREATE TABLE maps it (DataFusion's
/// planner, then Iceberg's Arrow mapping); primitive types only.
async fn iceberg_type(ctx: &SessionContext, column: &str, data_type: &DataType) -> Result<Type> {
    if matches!(data_type, DataType::Uuid) {
        return Ok(Type::Primitive(iceberg::spec::PrimitiveType::Uuid));
    }
    let create = ast::helpers::stmt_create_table::CreateTableBuilder::new(ObjectName::from(vec![
        Ident::new("__weir_alter_type"),
    ]))
    .columns(vec![ast::ColumnDef {
        name: Ident::with_quote('"', column),
        data_type: data_type.clone(),
        options: vec![],
    }])
    .build();
    let plan = crate::plan_statement(
        ctx,
        DfStatement::Statement(Box::new(ast::Statement::CreateTable(create))),
    )
    .await?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
        return Err(QueryError::Internal(
            "a column definition did not plan as CREATE TABLE".into(),
        ));
    };
    let (compatible, zones) = crate::ddl::iceberg_compatible(create.input.schema().as_arrow());
    if !zones.is_empty() {
        return Err(QueryError::Unsupported(format!(
            "adding column {column} with a time zone other than UTC; use TIMESTAMPTZ (UTC instants)"
        )));
    }
    let schema = iceberg::arrow::arrow_schema_to_schema_auto_assign_ids(&compatible)
        .map_err(|e| QueryError::Invalid(format!("column type {data_type}: {e}")))?;
    let field = schema
        .as_struct()
        .fields()
        .first()
        .ok_or_else(|| QueryError::Internal("a column type planned no column".into()))?;
    if !field.field_type.is_primitive() {
        return Err(QueryError::Unsupported(format!(
            "column {column} of type {data_type}: only primitive types can be added or changed"
        )));
    }
    Ok((*field.field_type).clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn extension(sql: &str) -> Option<AlterTable> {
        parse_extension(&GenericDialect {}, sql, true).unwrap()
    }

    #[test]
    fn reads_the_spark_forms() {
        let t = extension("ALTER TABLE s.T UNSET TBLPROPERTIES IF EXISTS ('a', 'b.c')").unwrap();
        assert_eq!(t.table, vec!["s", "t"]);
        assert_eq!(
            t.ops,
            vec![AlterOp::UnsetProperties {
                keys: vec!["a".into(), "b.c".into()],
                if_exists: true
            }]
        );
        let t = extension("alter table t add partition field bucket(16, id) as shard").unwrap();
        assert_eq!(
            t.ops,
            vec![AlterOp::AddPartitionField {
                expr: "bucket(16, id)".into(),
                name: Some("shard".into())
            }]
        );
        let t = extension("ALTER TABLE t DROP PARTITION FIELD day(ts);").unwrap();
        assert_eq!(
            t.ops,
            vec![AlterOp::DropPartitionField {
                expr: "day(ts)".into()
            }]
        );
        let t = extension("ALTER TABLE t WRITE ORDERED BY (a, b DESC NULLS FIRST)").unwrap();
        assert_eq!(
            t.ops,
            vec![AlterOp::WriteOrderedBy(vec![
                SortKey {
                    column: "a".into(),
                    descending: false,
                    nulls_first: None
                },
                SortKey {
                    column: "b".into(),
                    descending: true,
                    nulls_first: Some(true)
                }
            ])]
        );
        assert_eq!(
            extension("ALTER TABLE t WRITE UNORDERED").unwrap().ops,
            vec![AlterOp::WriteOrderedBy(vec![])]
        );
        // Not these forms: left to DataFusion's parser.
        assert!(extension("ALTER TABLE t ADD COLUMN c INT").is_none());
        assert!(extension("SELECT 1").is_none());
        assert!(extension("/* x */ ALTER TABLE t DROP COLUMN c").is_none());
        assert!(parse_extension(&GenericDialect {}, "ALTER TABLE t WRITE ORDERED", true).is_err());
        assert!(
            parse_extension(
                &GenericDialect {},
                "ALTER TABLE t DROP PARTITION FIELD day(ts) x",
                true
            )
            .is_err()
        );
    }

    #[test]
    fn promotions_are_iceberg_s() {
        use PrimitiveType as P;
        let p = |t| Type::Primitive(t);
        assert!(widens(&p(P::Int), &p(P::Long)));
        assert!(widens(&p(P::Float), &p(P::Double)));
        assert!(widens(
            &p(P::Decimal {
                precision: 10,
                scale: 2
            }),
            &p(P::Decimal {
                precision: 12,
                scale: 2
            })
        ));
        assert!(!widens(
            &p(P::Decimal {
                precision: 10,
                scale: 2
            }),
            &p(P::Decimal {
                precision: 12,
                scale: 3
            })
        ));
        assert!(!widens(&p(P::Long), &p(P::Int)));
        assert!(!widens(&p(P::Int), &p(P::String)));
        assert!(!widens(&p(P::Int), &p(P::Double)));
    }
}
