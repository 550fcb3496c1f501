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
use std::sync::Arc;

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
use iceberg::spec::{
    FormatVersion, NestedField, NestedFieldRef, NullOrder, PrimitiveType, Schema, SortDirection,
    SortField, SortOrder, TableMetadata, TableMetadataBuilder, Transform, Type,
    UnboundPartitionField, UnboundPartitionSpec,
};
use weir_catalog::spec::{build_partition_spec, parse_partition_expr};
use weir_catalog::{CATALOG_NAME, Lakehouse};

use crate::ddl::{CTAS_PENDING, SOURCE_TIME_ZONE};
use crate::error::{QueryError, Result};

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

fn invalid(e: iceberg::Error) -> QueryError {
    QueryError::Invalid(e.message().to_string())
}

/// The table's next metadata with `ops` applied; `None` when nothing changes.
fn apply(
    metadata: &TableMetadata,
    location: Option<&str>,
    ops: &[AlterOp],
    types: &HashMap<String, Type>,
    table: &str,
) -> Result<Option<TableMetadata>> {
    let is_mv = metadata
        .properties()
        .contains_key(weir_catalog::MV_DEFINITION_PROPERTY);
    let current = metadata.current_schema();
    let mut fields: Vec<NestedFieldRef> = current.as_struct().fields().to_vec();
    let identifier: Vec<i32> = current.identifier_field_ids().collect();
    let mut last_id = metadata.last_column_id();
    let mut properties = metadata.properties().clone();
    let mut spec: Vec<UnboundPartitionField> = metadata
        .default_partition_spec()
        .as_ref()
        .clone()
        .into_unbound()
        .fields()
        .to_vec();
    let mut sort: Vec<SortField> = metadata.default_sort_order().fields.clone();
    let (mut schema_changed, mut spec_changed, mut sort_changed) = (false, false, false);
    let position =
        |fields: &[NestedFieldRef], name: &str| fields.iter().position(|f| f.name == name);
    let missing = |column: &str| QueryError::NotFound(format!("column {column} in table {table}"));
    for op in ops {
        let changes_shape = !matches!(
            op,
            AlterOp::SetProperties(_) | AlterOp::UnsetProperties { .. }
        );
        if is_mv && changes_shape {
            return Err(QueryError::Invalid(format!(
                "{table} is a materialized view: its columns, partitioning and order follow its \
                 query; DROP and CREATE it again"
            )));
        }
        match op {
            AlterOp::AddColumn {
                name,
                if_not_exists,
                ..
            } => {
                if position(&fields, name).is_some() {
                    if *if_not_exists {
                        continue;
                    }
                    return Err(QueryError::AlreadyExists(format!(
                        "column {name} in table {table}"
                    )));
                }
                let ty = types
                    .get(name)
                    .cloned()
                    .ok_or_else(|| QueryError::Internal(format!("no type for column {name}")))?;
                last_id += 1;
                fields.push(Arc::new(NestedField::optional(last_id, name, ty)));
                schema_changed = true;
            }
            AlterOp::DropColumn { name, if_exists } => {
                let Some(at) = position(&fields, name) else {
                    if *if_exists {
                        continue;
                    }
                    return Err(missing(name));
                };
                let id = fields[at].id;
                if identifier.contains(&id) {
                    return Err(QueryError::Invalid(format!(
                        "column {name} is an identifier field of {table} and cannot be dropped"
                    )));
                }
                if let Some(field) = spec.iter().find(|f| f.source_id == id) {
                    return Err(QueryError::Invalid(format!(
                        "column {name} is the source of partition field {} ({}({name})) of {table}; \
                         drop the partition field first (ALTER TABLE … DROP PARTITION FIELD {}({name}))",
                        field.name, field.transform, field.transform
                    )));
                }
                if metadata
                    .partition_specs_iter()
                    .any(|s| s.fields().iter().any(|f| f.source_id == id))
                {
                    return Err(QueryError::Invalid(format!(
                        "column {name} is the source of a partition field of an earlier partition \
                         spec of {table}: files written under that spec are partitioned by it, so it \
                         cannot be dropped"
                    )));
                }
                if sort.iter().any(|f| f.source_id == id) {
                    return Err(QueryError::Invalid(format!(
                        "column {name} is in the sort order of {table}; change it first \
                         (ALTER TABLE … WRITE ORDERED BY … / WRITE UNORDERED)"
                    )));
                }
                if fields.len() == 1 {
                    return Err(QueryError::Invalid(format!(
                        "column {name} is the only column of {table}"
                    )));
                }
                fields.remove(at);
                properties.remove(&format!("{SOURCE_TIME_ZONE}{name}"));
                schema_changed = true;
            }
            AlterOp::RenameColumn { from, to } => {
                let at = position(&fields, from).ok_or_else(|| missing(from))?;
                if from == to {
                    continue;
                }
                if position(&fields, to).is_some() {
                    return Err(QueryError::AlreadyExists(format!(
                        "column {to} in table {table}"
                    )));
                }
                let mut field = fields[at].as_ref().clone();
                field.name = to.clone();
                fields[at] = Arc::new(field);
                if let Some(zone) = properties.remove(&format!("{SOURCE_TIME_ZONE}{from}")) {
                    properties.insert(format!("{SOURCE_TIME_ZONE}{to}"), zone);
                }
                schema_changed = true;
            }
            AlterOp::SetDataType { column, .. } => {
                let at = position(&fields, column).ok_or_else(|| missing(column))?;
                let to = types
                    .get(column)
                    .cloned()
                    .ok_or_else(|| QueryError::Internal(format!("no type for column {column}")))?;
                let from = fields[at].field_type.as_ref().clone();
                if from == to {
                    continue;
                }
                if !widens(&from, &to) {
                    return Err(QueryError::Invalid(format!(
                        "column {column} of {table} cannot change from {from} to {to}: Iceberg only \
                         widens int to bigint, float to double and decimal(P, S) to decimal(P', S) \
                         with P' ≥ P"
                    )));
                }
                let mut field = fields[at].as_ref().clone();
                field.field_type = Box::new(to);
                fields[at] = Arc::new(field);
                schema_changed = true;
            }
            AlterOp::DropNotNull { column } => {
                let at = position(&fields, column).ok_or_else(|| missing(column))?;
                if !fields[at].required {
                    continue;
                }
                if identifier.contains(&fields[at].id) {
                    return Err(QueryError::Invalid(format!(
                        "column {column} is an identifier field of {table}; identifier fields are required"
                    )));
                }
                let mut field = fields[at].as_ref().clone();
                field.required = false;
                fields[at] = Arc::new(field);
                schema_changed = true;
            }
            AlterOp::RenameTable { .. } => {
                return Err(QueryError::Invalid(
                    "RENAME TO cannot be combined with other changes in one ALTER TABLE".into(),
                ));
            }
            AlterOp::SetProperties(pairs) => {
                for (key, value) in pairs {
                    refuse_internal(key)?;
                    properties.insert(key.clone(), value.clone());
                }
            }
            AlterOp::UnsetProperties { keys, if_exists } => {
                for key in keys {
                    refuse_internal(key)?;
                    if properties.remove(key).is_none() && !if_exists {
                        return Err(QueryError::NotFound(format!(
                            "table property {key} of {table} (UNSET TBLPROPERTIES IF EXISTS ignores missing ones)"
                        )));
                    }
                }
            }
            AlterOp::AddPartitionField { expr, name } => {
                require_v2(metadata, table)?;
                let schema = schema_of(&fields, &identifier)?;
                let built = build_partition_spec(&schema, std::slice::from_ref(expr))?;
                let mut field = built.fields()[0].clone();
                if let Some(name) = name {
                    field.name = name.clone();
                }
                if spec
                    .iter()
                    .any(|f| f.source_id == field.source_id && f.transform == field.transform)
                {
                    return Err(QueryError::AlreadyExists(format!(
                        "partition field {expr} of {table}"
                    )));
                }
                if spec.iter().any(|f| f.name == field.name) {
                    return Err(QueryError::AlreadyExists(format!(
                        "a partition field named {} in {table}; name it with AS",
                        field.name
                    )));
                }
                spec.push(field);
                spec_changed = true;
            }
            AlterOp::DropPartitionField { expr } => {
                require_v2(metadata, table)?;
                let at = if expr.contains('(') {
                    let (transform, column) = parse_partition_expr(expr)?;
                    let id = fields
                        .iter()
                        .find(|f| f.name == column)
                        .map(|f| f.id)
                        .ok_or_else(|| missing(&column))?;
                    spec.iter()
                        .position(|f| f.source_id == id && f.transform == transform)
                } else {
                    let name = expr.trim_matches('"');
                    spec.iter().position(|f| f.name == name)
                };
                let at = at.ok_or_else(|| {
                    QueryError::NotFound(format!("partition field {expr} of {table}"))
                })?;
                spec.remove(at);
                spec_changed = true;
            }
            AlterOp::WriteOrderedBy(keys) => {
                let mut order = Vec::new();
                for key in keys {
                    let at = position(&fields, &key.column).ok_or_else(|| missing(&key.column))?;
                    let direction = if key.descending {
                        SortDirection::Descending
                    } else {
                        SortDirection::Ascending
                    };
                    // Spark's defaults: NULLS FIRST ascending, NULLS LAST descending.
                    let nulls_first = key.nulls_first.unwrap_or(!key.descending);
                    order.push(SortField {
                        source_id: fields[at].id,
                        transform: Transform::Identity,
                        direction,
                        null_order: if nulls_first {
                            NullOrder::First
                        } else {
                            NullOrder::Last
                        },
                    });
                }
                sort = order;
                sort_changed = true;
            }
        }
    }
    let properties_changed = &properties != metadata.properties();
    if !(schema_changed || spec_changed || sort_changed || properties_changed) {
        return Ok(None);
    }
    let mut builder = metadata.clone().into_builder(location.map(str::to_string));
    if schema_changed {
        let schema = Schema::builder()
            .with_schema_id(current.schema_id())
            .with_identifier_field_ids(identifier.clone())
            .with_fields(fields)
            .build()
            .map_err(invalid)?;
        debug_assert!(schema.highest_field_id() <= last_id);
        builder = builder.add_current_schema(schema).map_err(invalid)?;
    }
    if properties_changed {
        let removed: Vec<String> = metadata
            .properties()
            .keys()
            .filter(|k| !properties.contains_key(*k))
            .cloned()
            .collect();
        let set: HashMap<String, String> = properties
            .iter()
            .filter(|(k, v)| metadata.properties().get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !set.is_empty() {
            builder = builder.set_properties(set).map_err(invalid)?;
        }
        if !removed.is_empty() {
            builder = builder.remove_properties(&removed).map_err(invalid)?;
        }
    }
    if spec_changed {
        let unbound = UnboundPartitionSpec::builder()
            .add_partition_fields(spec)
            .map_err(invalid)?
            .build();
        builder = builder
            .add_partition_spec(unbound)
            .map_err(invalid)?
            .set_default_partition_spec(TableMetadataBuilder::LAST_ADDED)
            .map_err(invalid)?;
    }
    if sort_changed {
        let order = if sort.is_empty() {
            SortOrder::unsorted_order()
        } else {
            SortOrder::builder()
                .with_order_id(1)
                .with_fields(sort)
                .build_unbound()
                .map_err(invalid)?
        };
        builder = builder
            .add_sort_order(order)
            .map_err(invalid)?
            .set_default_sort_order(TableMetadataBuilder::LAST_ADDED as i64)
            .map_err(invalid)?;
    }
    Ok(Some(builder.build().map_err(invalid)?.metadata))
}

fn refuse_internal(key: &str) -> Result<()> {
    if internal_property(key) {
        return Err(QueryError::Invalid(format!(
            "table property {key} is managed by Weir (weir.mv.*, {CTAS_PENDING}, \
             {SOURCE_TIME_ZONE}*) and cannot be changed with SQL"
        )));
    }
    Ok(())
}

fn require_v2(metadata: &TableMetadata, table: &str) -> Result<()> {
    if metadata.format_version() < FormatVersion::V2 {
        return Err(QueryError::Unsupported(format!(
            "partition evolution of {table}: a format-version 1 table"
        )));
    }
    Ok(())
}

fn schema_of(fields: &[NestedFieldRef], identifier: &[i32]) -> Result<Schema> {
    Schema::builder()
        .with_identifier_field_ids(identifier.to_vec())
        .with_fields(fields.to_vec())
        .build()
        .map_err(invalid)
}

/// Iceberg's type promotions.
fn widens(from: &Type, to: &Type) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (Type::Primitive(P::Int), Type::Primitive(P::Long))
        | (Type::Primitive(P::Float), Type::Primitive(P::Double)) => true,
        (
            Type::Primitive(P::Decimal {
                precision: p1,
                scale: s1,
            }),
            Type::Primitive(P::Decimal {
                precision: p2,
                scale: s2,
            }),
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
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
