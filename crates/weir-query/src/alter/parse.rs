//! Reading `ALTER TABLE`: sqlparser's AST for the forms it reads, and
//! sqlparser's parser (with the session's dialect) for the Spark/Iceberg
//! forms it does not (see `mod.rs`).

use datafusion::sql::sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, ColumnOption, Expr, Ident, ObjectName,
    RenameTableNameKind, SqlOption,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use super::{AlterOp, AlterTable, SortKey};
use crate::error::{QueryError, Result};

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
            } => add_column(column_def, column_position.is_some(), *if_not_exists, normalize)?,
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
                alter_column(ident_value(column_name, normalize), op)?
            }
            AlterTableOperation::RenameTable { table_name } => {
                let (RenameTableNameKind::To(name) | RenameTableNameKind::As(name)) = table_name;
                AlterOp::RenameTable {
                    to: name_parts(name, normalize)?,
                }
            }
            AlterTableOperation::SetTblProperties { table_properties } => {
                set_properties(table_properties)?
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

/// `ADD COLUMN`: added last (no FIRST/AFTER, `positioned`), and optional
/// (rows already written have no value for it).
fn add_column(
    column_def: &ast::ColumnDef,
    positioned: bool,
    if_not_exists: bool,
    normalize: bool,
) -> Result<AlterOp> {
    if positioned {
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
    Ok(AlterOp::AddColumn {
        name: ident_value(&column_def.name, normalize),
        data_type: Box::new(column_def.data_type.clone()),
        if_not_exists,
    })
}

/// `ALTER COLUMN column …`: SET DATA TYPE (widening) or DROP NOT NULL.
fn alter_column(column: String, op: &AlterColumnOperation) -> Result<AlterOp> {
    Ok(match op {
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
    })
}

/// `SET TBLPROPERTIES ('key' = 'value', …)`.
fn set_properties(table_properties: &[SqlOption]) -> Result<AlterOp> {
    let mut pairs = Vec::new();
    for option in table_properties {
        let SqlOption::KeyValue { key, value } = option else {
            return Err(QueryError::Invalid(format!(
                "`{option}` is not a 'key' = 'value' property"
            )));
        };
        pairs.push((key.value.clone(), literal_text(value)));
    }
    Ok(AlterOp::SetProperties(pairs))
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
    let mut parser = Parser::new(dialect).try_with_sql(sql).map_err(syntax)?;
    if !parser.parse_keywords(&[Keyword::ALTER, Keyword::TABLE]) {
        return Ok(None);
    }
    let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
    let Ok(name) = parser.parse_object_name(false) else {
        return Ok(None);
    };
    let op = if parser.parse_keyword(Keyword::UNSET) {
        parse_unset(&mut parser)?
    } else if lookahead(&parser, &["ADD", "PARTITION", "FIELD"])
        || lookahead(&parser, &["DROP", "PARTITION", "FIELD"])
    {
        parse_partition_field(&mut parser, normalize)?
    } else if word(&mut parser, "WRITE") {
        parse_write_order(&mut parser, normalize)?
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

fn syntax(e: ParserError) -> QueryError {
    QueryError::Syntax(e.to_string())
}

/// `UNSET TBLPROPERTIES [IF EXISTS] ('key', …)`, after `UNSET`.
fn parse_unset(parser: &mut Parser) -> Result<AlterOp> {
    if !word(parser, "TBLPROPERTIES") {
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
    Ok(AlterOp::UnsetProperties { keys, if_exists })
}

/// `ADD PARTITION FIELD transform(column) [AS name]` or `DROP PARTITION
/// FIELD transform(column) | name`.
fn parse_partition_field(parser: &mut Parser, normalize: bool) -> Result<AlterOp> {
    let add = word(parser, "ADD");
    if !add {
        word(parser, "DROP");
    }
    word(parser, "PARTITION");
    word(parser, "FIELD");
    let expr = parser.parse_expr().map_err(syntax)?.to_string();
    Ok(if add {
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
    })
}

/// `WRITE [LOCALLY] ORDERED BY (column [ASC|DESC] [NULLS FIRST|LAST], …)`
/// or `WRITE UNORDERED`, after `WRITE`.
fn parse_write_order(parser: &mut Parser, normalize: bool) -> Result<AlterOp> {
    if word(parser, "UNORDERED") {
        return Ok(AlterOp::WriteOrderedBy(Vec::new()));
    }
    word(parser, "LOCALLY");
    if !(word(parser, "ORDERED") && parser.parse_keyword(Keyword::BY)) {
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
    Ok(AlterOp::WriteOrderedBy(sort))
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
