//! Weir's additions to the SQL dialect, read with sqlparser's tokenizer and
//! parser (the session's dialect) rather than by looking for keywords in
//! the text: comments and line breaks anywhere, quoted names and keywords
//! inside strings behave as in any other statement.
//!
//! - `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [PARTITIONED BY (…)] AS
//!   query`, `REFRESH MATERIALIZED VIEW name`, `DROP MATERIALIZED VIEW [IF
//!   EXISTS] name` (DataFusion plans none of them);
//! - `CREATE TABLE … PARTITIONED BY (day(ts), bucket(16, id))`: Iceberg
//!   partition transforms, which DataFusion's parser does not take (it knows
//!   only Hive's `PARTITIONED BY (col type)` for external tables).

use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

use crate::error::{QueryError, Result};
use crate::mv::MvStatement;

fn syntax(e: ParserError) -> QueryError {
    QueryError::Syntax(e.to_string())
}

/// The statement's tokens, without whitespace and comments.
fn significant(dialect: &dyn Dialect, sql: &str) -> Result<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    Ok(tokens
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect())
}

/// The first `n` tokens as upper-case unquoted words ("" for anything else).
fn leading_words(tokens: &[TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .take(n)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect()
}

/// Whether the statement starts with `words` (comments skipped).
pub(crate) fn starts_with(dialect: &dyn Dialect, sql: &str, words: &[&str]) -> Result<bool> {
    let tokens = significant(dialect, sql)?;
    Ok(leading_words(&tokens, words.len()) == words)
}

/// Byte offset in `sql` of a tokenizer location (1-based line and column,
/// columns counted in characters).
fn byte_offset(sql: &str, at: Location) -> usize {
    let mut line = 1u64;
    let mut start = 0usize;
    if at.line > 1 {
        for (i, c) in sql.char_indices() {
            if c == '\n' {
                line += 1;
                if line == at.line {
                    start = i + 1;
                    break;
                }
            }
        }
    }
    let column = at.column.saturating_sub(1) as usize;
    sql[start..]
        .char_indices()
        .nth(column)
        .map_or(sql.len(), |(i, _)| start + i)
}

/// The materialized view statements; `None` for any other statement.
pub(crate) fn parse_mv(dialect: &dyn Dialect, sql: &str) -> Result<Option<MvStatement>> {
    let tokens = significant(dialect, sql)?;
    let words = leading_words(&tokens, 3);
    let kind = match words
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["CREATE", "MATERIALIZED", "VIEW"] => Keyword::CREATE,
        ["REFRESH", "MATERIALIZED", "VIEW"] => Keyword::REFRESH,
        ["DROP", "MATERIALIZED", "VIEW"] => Keyword::DROP,
        _ => return Ok(None),
    };
    let mut parser = Parser::new(dialect).try_with_sql(sql).map_err(syntax)?;
    for _ in 0..3 {
        parser.next_token();
    }
    let statement = match kind {
        Keyword::CREATE => {
            let if_not_exists =
                parser.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
            let name = parser.parse_object_name(false).map_err(syntax)?;
            let mut partition = Vec::new();
            if parser.parse_keywords(&[Keyword::PARTITIONED, Keyword::BY]) {
                parser.expect_token(&Token::LParen).map_err(syntax)?;
                partition = parser
                    .parse_comma_separated(Parser::parse_expr)
                    .map_err(syntax)?
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                parser.expect_token(&Token::RParen).map_err(syntax)?;
            }
            if !parser.parse_keyword(Keyword::AS) {
                return Err(QueryError::Syntax(
                    "CREATE MATERIALIZED VIEW name [PARTITIONED BY (...)] AS SELECT ...".into(),
                ));
            }
            // The query is kept as written (it is planned again at every
            // refresh); parsed here only to report errors now.
            let start = byte_offset(sql, parser.peek_token().span.start);
            parser.parse_query().map_err(syntax)?;
            // Up to the query's last token: a trailing comment or `;` is not
            // part of it.
            let next = parser.peek_token().span.start;
            let after = tokens
                .iter()
                .position(|t| (t.span.start.line, t.span.start.column) >= (next.line, next.column))
                .filter(|_| next.line > 0)
                .unwrap_or(tokens.len());
            let end = tokens
                .get(after.wrapping_sub(1))
                .map_or(sql.len(), |t| byte_offset(sql, t.span.end));
            expect_end(&mut parser)?;
            let query = sql[start..end.max(start)].trim();
            MvStatement::Create {
                name: name.to_string(),
                if_not_exists,
                partition,
                query: query.to_string(),
            }
        }
        Keyword::REFRESH => {
            let name = parser.parse_object_name(false).map_err(syntax)?;
            expect_end(&mut parser)?;
            MvStatement::Refresh {
                name: name.to_string(),
            }
        }
        _ => {
            let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = parser.parse_object_name(false).map_err(syntax)?;
            expect_end(&mut parser)?;
            MvStatement::Drop {
                name: name.to_string(),
                if_exists,
            }
        }
    };
    Ok(Some(statement))
}

fn expect_end(parser: &mut Parser) -> Result<()> {
    while parser.consume_token(&Token::SemiColon) {}
    match parser.peek_token().token {
        Token::EOF => Ok(()),
        other => Err(QueryError::Syntax(format!(
            "unexpected `{other}` after the statement"
        ))),
    }
}

/// Takes the `PARTITIONED BY (transform, …)` clause off a CREATE TABLE:
/// the statement without it, and the transforms (`day(ts)`, `bucket(16,
/// id)`, `device_id`) as written. Other statements are returned unchanged.
pub(crate) fn split_partition_clause(
    dialect: &dyn Dialect,
    sql: &str,
) -> Result<(String, Vec<String>)> {
    let tokens = significant(dialect, sql)?;
    let words = leading_words(&tokens, 4);
    let creates_table = words.get(..2) == Some(&["CREATE".to_string(), "TABLE".to_string()][..])
        || words == ["CREATE", "OR", "REPLACE", "TABLE"];
    if !creates_table {
        return Ok((sql.to_string(), Vec::new()));
    }
    let mut depth = 0i32;
    for (i, t) in tokens.iter().enumerate() {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            // The query of CREATE TABLE … AS starts here: no clause after it.
            Token::Word(w) if depth == 0 && w.quote_style.is_none() && w.keyword == Keyword::AS => {
                break;
            }
            Token::Word(w)
                if depth == 0 && w.quote_style.is_none() && w.keyword == Keyword::PARTITIONED =>
            {
                let by = matches!(tokens.get(i + 1).map(|t| &t.token),
                    Some(Token::Word(w)) if w.keyword == Keyword::BY);
                let open = tokens.get(i + 2).filter(|t| t.token == Token::LParen);
                let (true, Some(open)) = (by, open) else {
                    return Err(QueryError::Syntax(
                        "PARTITIONED BY must be followed by `(`".into(),
                    ));
                };
                let mut level = 0i32;
                let close = tokens[i + 2..].iter().find(|t| {
                    match t.token {
                        Token::LParen => level += 1,
                        Token::RParen => level -= 1,
                        _ => {}
                    }
                    level == 0
                });
                let Some(close) = close else {
                    return Err(QueryError::Syntax(
                        "unbalanced parentheses in PARTITIONED BY".into(),
                    ));
                };
                let start = byte_offset(sql, t.span.start);
                let inner = byte_offset(sql, open.span.start) + 1;
                let end = byte_offset(sql, close.span.start);
                let transforms = Parser::new(dialect)
                    .try_with_sql(&sql[inner..end])
                    .map_err(syntax)?
                    .parse_comma_separated(Parser::parse_expr)
                    .map_err(syntax)?
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                return Ok((format!("{} {}", &sql[..start], &sql[end + 1..]), transforms));
            }
            _ => {}
        }
    }
    Ok((sql.to_string(), Vec::new()))
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    #[test]
    fn partition_clause_is_found_by_tokens() {
        let d = GenericDialect {};
        let (sql, parts) = split_partition_clause(
            &d,
            "-- a comment\ncreate table t (ts TIMESTAMP, s VARCHAR DEFAULT 'PARTITIONED BY (x)')\n  \
             PARTITIONED  BY (day(ts), bucket(16, s))",
        )
        .unwrap();
        assert_eq!(parts, vec!["day(ts)", "bucket(16, s)"]);
        assert!(!sql.contains("bucket"), "{sql}");
        let (same, none) = split_partition_clause(&d, "SELECT 'PARTITIONED BY (x)'").unwrap();
        assert_eq!(same, "SELECT 'PARTITIONED BY (x)'");
        assert!(none.is_empty());
        let (_, none) =
            split_partition_clause(&d, "CREATE TABLE t AS SELECT 1 AS partitioned").unwrap();
        assert!(none.is_empty());
        assert!(split_partition_clause(&d, "CREATE TABLE t (a INT) PARTITIONED BY a").is_err());
    }

    #[test]
    fn views_are_parsed_after_comments() {
        let d = GenericDialect {};
        let sql = "/* dashboard */ CREATE MATERIALIZED VIEW IF NOT EXISTS \"Plant\".v\n\
                   PARTITIONED BY (day(bucket)) AS\n  SELECT 1 AS x -- tail\n;";
        let Some(MvStatement::Create {
            name,
            if_not_exists,
            partition,
            query,
        }) = parse_mv(&d, sql).unwrap()
        else {
            panic!("not a CREATE");
        };
        assert_eq!(name, "\"Plant\".v");
        assert!(if_not_exists);
        assert_eq!(partition, vec!["day(bucket)"]);
        assert_eq!(query, "SELECT 1 AS x");
        assert!(matches!(
            parse_mv(&d, "-- x\nrefresh materialized view a.b").unwrap(),
            Some(MvStatement::Refresh { name }) if name == "a.b"
        ));
        assert!(parse_mv(&d, "DROP MATERIALIZED VIEW a.b extra").is_err());
        assert!(parse_mv(&d, "CREATE VIEW v AS SELECT 1").unwrap().is_none());
    }
}
