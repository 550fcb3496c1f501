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
use datafusion::sql::sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, ColumnOption, DataType, Expr, Ident,
    ObjectName, RenameTableNameKind, SqlOption,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use iceberg::TableIdent;
#[cfg(test)]
use iceberg::spec::PrimitiveType;
use iceberg::spec::Type;
use weir_catalog::{CATALOG_NAME, Lakehouse};

use crate::ddl::{CTAS_PENDING, SOURCE_TIME_ZONE};
use crate::error::{QueryError, Result};

mod evolve;

use evolve::apply;
#[cfg(test)]
use evolve::widens;

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

fn ident_value(ident: &Ident, normalize: bool) -> String {
    if ident.quote_style.is_none() && normalize {
        ident.value.to_lowercase()
    } else {
        ident.value.clone()
    }
}

fn name_parts(name: &ObjectName, normalize: bool) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(|i| ident_value(i, normalize))
                .ok_or_else(|| QueryError::Invalid(format!("`{name}` is not a table name")))
        })
        .collect()
}

/// The statement of sqlparser's `ALTER TABLE` AST.
pub(crate) fn from_ast(alter: &ast::AlterTable, normalize: bool) -> Result<AlterTable> {
    if alter.only || alter.on_cluster.is_some() || alter.location.is_some() {
        return Err(QueryError::Unsupported(
            "ALTER TABLE ONLY / ON CLUSTER / LOCATION".into(),
        ));
    }
    let mut ops = Vec::new();
    for op in &alter.operations {
        ops.push(match op {
            AlterTableOperation::AddColumn {
                if_not_exists,
                column_def,
                column_position,
                ..
            } => {
                if column_position.is_some() {
                    return Err(QueryError::Unsupported(
                        "FIRST/AFTER in ADD COLUMN: columns are added last".into(),
                    ));
                }
                for option in &column_def.options {
                    match &option.option {
                        ColumnOption::Null => {}
                        ColumnOption::NotNull => {
                            return Err(QueryError::Invalid(format!(
                                "column {} cannot be added as NOT NULL: rows already written \
                                 have no value for it; add it as an optional column",
                                column_def.name
                            )));
                        }
                        other => {
                            return Err(QueryError::Unsupported(format!(
                                "column option `{other}` in ADD COLUMN (only NULL)"
                            )));
                        }
                    }
                }
                AlterOp::AddColumn {
                    name: ident_value(&column_def.name, normalize),
                    data_type: Box::new(column_def.data_type.clone()),
                    if_not_exists: *if_not_exists,
                }
            }
            AlterTableOperation::DropColumn {
                column_names,
                if_exists,
                drop_behavior,
                ..
            } => {
                if drop_behavior.is_some() {
                    return Err(QueryError::Unsupported(
                        "CASCADE/RESTRICT in DROP COLUMN".into(),
                    ));
                }
                for name in column_names {
                    ops.push(AlterOp::DropColumn {
                        name: ident_value(name, normalize),
                        if_exists: *if_exists,
                    });
                }
                continue;
            }
            AlterTableOperation::RenameColumn {
                old_column_name,
                new_column_name,
            } => AlterOp::RenameColumn {
                from: ident_value(old_column_name, normalize),
                to: ident_value(new_column_name, normalize),
            },
            AlterTableOperation::AlterColumn { column_name, op } => {
                let column = ident_value(column_name, normalize);
                match op {
                    AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    } => {
                        if using.is_some() {
                            return Err(QueryError::Unsupported(
                                "USING in SET DATA TYPE: only widening (int→bigint, \
                                 float→double, decimal precision) is supported"
                                    .into(),
                            ));
                        }
                        AlterOp::SetDataType {
                            column,
                            data_type: Box::new(data_type.clone()),
                        }
                    }
                    AlterColumnOperation::DropNotNull => AlterOp::DropNotNull { column },
                    AlterColumnOperation::SetNotNull => {
                        return Err(QueryError::Invalid(format!(
                            "column {column} cannot be made NOT NULL: Iceberg only lets \
                             required columns become optional"
                        )));
                    }
                    other => {
                        return Err(QueryError::Unsupported(format!(
                            "ALTER COLUMN … {other} (supported: SET DATA TYPE, DROP NOT NULL)"
                        )));
                    }
                }
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::To(name) | RenameTableNameKind::As(name)) = table_name;
                AlterOp::RenameTable {
                    to: name_parts(name, normalize)?,
                }
            }
            AlterTableOperation::SetTblProperties { table_properties } => {
                let mut pairs = Vec::new();
                for option in table_properties {
                    let SqlOption::KeyValue { key, value } = option else {
                        return Err(QueryError::Invalid(format!(
                            "`{option}` is not a 'key' = 'value' property"
                        )));
                    };
                    pairs.push((key.value.clone(), literal_text(value)));
                }
                AlterOp::SetProperties(pairs)
            }
            other => {
                return Err(QueryError::Unsupported(format!(
                    "ALTER TABLE … {other} (see README: ADD/DROP/RENAME COLUMN, ALTER COLUMN, \
                     RENAME TO, SET/UNSET TBLPROPERTIES, ADD/DROP PARTITION FIELD, WRITE ORDERED BY)"
                )));
            }
        });
    }
    if ops.len() > 1 && ops.iter().any(|o| matches!(o, AlterOp::RenameTable { .. })) {
        return Err(QueryError::Invalid(
            "RENAME TO cannot be combined with other changes in one ALTER TABLE".into(),
        ));
    }
    Ok(AlterTable {
        table: name_parts(&alter.name, normalize)?,
        if_exists: alter.if_exists,
        ops,
    })
}

fn literal_text(value: &Expr) -> String {
    match value {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

/// The Spark/Iceberg `ALTER TABLE` forms sqlparser does not read; `None`
/// for any other text (DataFusion's parser reads it, or reports it).
pub(crate) fn parse_extension(
    dialect: &dyn Dialect,
    sql: &str,
    normalize: bool,
) -> Result<Option<AlterTable>> {
    let syntax =
        |e: datafusion::sql::sqlparser::parser::ParserError| QueryError::Syntax(e.to_string());
    let mut parser = Parser::new(dialect).try_with_sql(sql).map_err(syntax)?;
    if !parser.parse_keywords(&[Keyword::ALTER, Keyword::TABLE]) {
        return Ok(None);
    }
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let Ok(name) = parser.parse_object_name(false) else {
        return Ok(None);
    };
    let op = if parser.parse_keyword(Keyword::UNSET) {
        if !word(&mut parser, "TBLPROPERTIES") {
            return Err(QueryError::Syntax(
                "expected UNSET TBLPROPERTIES [IF EXISTS] ('key', …)".into(),
            ));
        }
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        parser.expect_token(&Token::LParen).map_err(syntax)?;
        let keys = parser
            .parse_comma_separated(Parser::parse_literal_string)
            .map_err(syntax)?;
        parser.expect_token(&Token::RParen).map_err(syntax)?;
        AlterOp::UnsetProperties { keys, if_exists }
    } else if lookahead(&parser, &["ADD", "PARTITION", "FIELD"])
        || lookahead(&parser, &["DROP", "PARTITION", "FIELD"])
    {
        let add = word(&mut parser, "ADD");
        if !add {
            word(&mut parser, "DROP");
        }
        word(&mut parser, "PARTITION");
        word(&mut parser, "FIELD");
        let expr = parser.parse_expr().map_err(syntax)?.to_string();
        if add {
            let name = if parser.parse_keyword(Keyword::AS) {
                Some(ident_value(
                    &parser.parse_identifier().map_err(syntax)?,
                    normalize,
                ))
            } else {
                None
            };
            AlterOp::AddPartitionField { expr, name }
        } else {
            AlterOp::DropPartitionField { expr }
        }
    } else if word(&mut parser, "WRITE") {
        if word(&mut parser, "UNORDERED") {
            AlterOp::WriteOrderedBy(Vec::new())
        } else {
            word(&mut parser, "LOCALLY");
            if !(word(&mut parser, "ORDERED") && parser.parse_keyword(Keyword::BY)) {
                return Err(QueryError::Syntax(
                    "expected WRITE ORDERED BY (column [ASC|DESC] [NULLS FIRST|LAST], …) or WRITE UNORDERED"
                        .into(),
                ));
            }
            let parenthesised = parser.consume_token(&Token::LParen);
            let keys = parser
                .parse_comma_separated(Parser::parse_order_by_expr)
                .map_err(syntax)?;
            if parenthesised {
                parser.expect_token(&Token::RParen).map_err(syntax)?;
            }
            let mut sort = Vec::new();
            for key in keys {
                let Expr::Identifier(column) = &key.expr else {
                    return Err(QueryError::Unsupported(format!(
                        "sorting by `{}`: only columns (identity) are supported",
                        key.expr
                    )));
                };
                sort.push(SortKey {
                    column: ident_value(column, normalize),
                    descending: key.options.asc == Some(false),
                    nulls_first: key.options.nulls_first,
                });
            }
            AlterOp::WriteOrderedBy(sort)
        }
    } else {
        return Ok(None);
    };
    let _ = parser.consume_token(&Token::SemiColon);
    if parser.peek_token().token != Token::EOF {
        return Err(QueryError::Syntax(format!(
            "unexpected `{}` at the end of ALTER TABLE",
            parser.peek_token().token
        )));
    }
    Ok(Some(AlterTable {
        table: name_parts(&name, normalize)?,
        if_exists,
        ops: vec![op],
    }))
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn word(parser: &mut Parser, expected: &str) -> bool {
    if is_word(&parser.peek_token().token, expected) {
        parser.next_token();
        true
    } else {
        false
    }
}

fn lookahead(parser: &Parser, words: &[&str]) -> bool {
    words
        .iter()
        .enumerate()
        .all(|(i, w)| is_word(&parser.peek_nth_token(i).token, w))
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
