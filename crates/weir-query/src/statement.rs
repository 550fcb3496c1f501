//! One SQL statement, parsed once: [`WeirStatement`].
//!
//! The role check and the engine read the same parse (issue 24: they used to
//! parse the text separately, the check with the generic dialect and the
//! engine with the session's, so `/* /* */ DROP TABLE t -- */ SELECT 1`
//! under the MySQL dialect was a SELECT to the check and a DROP to the
//! engine). [`WeirStatement::parse`] reads the text with the session's
//! dialect, checks its shape against the limits below, and classifies it
//! ([`Access`]); [`crate::QueryEngine::execute`] runs exactly that parse.
//!
//! Shape limits (a statement over one is INVALID_ARGUMENT, never a crash):
//! - [`MAX_EXPRESSION_DEPTH`] nested expressions (`1+1+…+1` nests one level
//!   per operator; DuckDB's `max_expression_depth` has the same default);
//! - [`MAX_SET_OPERATIONS`] UNION/INTERSECT/EXCEPT in one statement (each
//!   nests the query one level);
//! - the parser's recursion limit (`datafusion.sql_parser.recursion_limit`,
//!   parentheses and subqueries) is capped at [`MAX_PARSER_RECURSION`].
//!
//! Parsing runs on a stack of its own ([`PARSE_STACK_BYTES`], reserved, only
//! touched as used): the parser builds long operator chains without
//! recursion, but dropping a rejected chain of 100,000 terms recurses once
//! per term.

use std::ops::ControlFlow;

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{
    DescribeAlias, Expr, ObjectName, Query, Set, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::{Dialect, dialect_from_str};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{QueryError, Result};
use crate::mv::{self, MvStatement};
use crate::settings;

/// Deepest expression nesting a statement may have.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;
/// Most set operations (UNION, INTERSECT, EXCEPT) in one statement.
pub const MAX_SET_OPERATIONS: usize = 1_000;
/// Highest parser recursion limit a session may set.
pub const MAX_PARSER_RECURSION: usize = 256;
/// Stack reserved for parsing one statement.
const PARSE_STACK_BYTES: usize = 256 << 20;

/// What running a statement needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// SELECT/WITH/VALUES without `INTO`, EXPLAIN (without ANALYZE),
    /// DESCRIBE, SHOW, SET/RESET of the session settings anyone may change
    /// (`settings.rs`), transaction statements (answered UNIMPLEMENTED).
    Read,
    /// INSERT, UPDATE, DELETE, MERGE, TRUNCATE (also inside a query),
    /// `EXPLAIN ANALYZE` of those, and bulk ingestion.
    Write,
    /// Everything else: CREATE/DROP/ALTER, CTAS, `SELECT … INTO`, REFRESH,
    /// COPY TO, CREATE EXTERNAL TABLE, SET of admin-only settings, and any
    /// statement not recognised here.
    Admin,
}

impl Access {
    pub fn describe(self) -> &'static str {
        match self {
            Access::Read => "queries",
            Access::Write => "INSERT/UPDATE/DELETE and ingestion",
            Access::Admin => "DDL, REFRESH, COPY and other administrative statements",
        }
    }
}

/// A parsed statement, ready for [`crate::QueryEngine::execute`].
#[derive(Debug, Clone)]
pub struct WeirStatement {
    text: String,
    pub(crate) parsed: Parsed,
    access: Access,
}

#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    /// CREATE/REFRESH/DROP MATERIALIZED VIEW (Weir's own syntax).
    View(MvStatement),
    /// CREATE/DROP/ACKNOWLEDGE ALERT (`alerts/`).
    Alert(crate::alerts::AlertStatement),
    /// ALTER TABLE, from sqlparser's AST or Weir's reading of the
    /// Spark/Iceberg forms (`alter.rs`).
    Alter(crate::alter::AlterTable),
    /// MERGE INTO (DataFusion plans none; `merge.rs`).
    Merge(crate::merge::Merge),
    /// Anything DataFusion's parser reads; `partition` is the
    /// `PARTITIONED BY` clause of a CREATE TABLE, taken off before parsing;
    /// `column_types` the CREATE TABLE columns of types DataFusion's SQL
    /// planner has none for (MAP), planned as VARCHAR and given their type
    /// when the table is created.
    Sql {
        statement: Box<DfStatement>,
        partition: Vec<String>,
        column_types: Vec<(String, arrow::datatypes::DataType)>,
        /// `INSERT OVERWRITE t PARTITION (a = 1, …)`: the clause as a
        /// predicate (`a = 1 AND …`), taken off the INSERT.
        overwrite_filter: Option<String>,
    },
}

impl WeirStatement {
    /// Parses one statement with `ctx`'s dialect.
    pub fn parse(ctx: &SessionContext, sql: &str) -> Result<Self> {
        let text = sql.trim().trim_end_matches(';').trim().to_string();
        let (options, dialect_name) = {
            let state = ctx.state();
            let options = state.config_options().sql_parser.clone();
            let name = options.dialect.to_string();
            (options, name)
        };
        let dialect = dialect_from_str(&dialect_name)
            .ok_or_else(|| QueryError::Invalid(format!("unknown SQL dialect {dialect_name}")))?;
        let recursion = options.recursion_limit.min(MAX_PARSER_RECURSION);
        let lowercase = options.enable_ident_normalization;
        if let Some(view) = mv::parse(dialect.as_ref(), &text)? {
            return Ok(WeirStatement {
                text,
                parsed: Parsed::View(view),
                access: Access::Admin,
            });
        }
        if let Some(alert) = crate::alerts::parse(dialect.as_ref(), &text)? {
            let access = if alert.is_write() {
                Access::Write
            } else {
                Access::Admin
            };
            return Ok(WeirStatement {
                text,
                parsed: Parsed::Alert(alert),
                access,
            });
        }
        if crate::sql_ext::starts_with(dialect.as_ref(), &text, &["ALTER"])?
            && let Some(alter) = crate::alter::parse_extension(dialect.as_ref(), &text, lowercase)?
        {
            return Ok(WeirStatement {
                text,
                parsed: Parsed::Alter(alter),
                access: Access::Admin,
            });
        }
        let (body, partition) = crate::sql_ext::split_partition_clause(dialect.as_ref(), &text)?;
        let mut statement = stacker::grow(PARSE_STACK_BYTES, || {
            parse_checked(dialect.as_ref(), &body, recursion, lowercase)
        })?;
        normalize(&mut statement)?;
        let column_types = crate::ddl::take_declared_columns(ctx, &mut statement, lowercase)?;
        let overwrite_filter = take_overwrite_partition(&mut statement)?;
        if let DfStatement::Statement(s) = &statement
            && let Statement::AlterTable(alter) = s.as_ref()
        {
            return Ok(WeirStatement {
                text,
                parsed: Parsed::Alter(crate::alter::from_ast(alter, lowercase)?),
                access: Access::Admin,
            });
        }
        let mut access = classify_df(&statement);
        let default_schema = ctx.state().config_options().catalog.default_schema.clone();
        if changes_pipeline_rows(&statement, &default_schema) {
            access = Access::Admin;
        }
        if let DfStatement::Statement(s) = &statement
            && let Statement::Merge(merge) = s.as_ref()
        {
            return Ok(WeirStatement {
                text,
                parsed: Parsed::Merge(crate::merge::Merge::from_ast(merge, lowercase)?),
                access,
            });
        }
        Ok(WeirStatement {
            text,
            parsed: Parsed::Sql {
                statement: Box::new(statement),
                partition,
                column_types,
                overwrite_filter,
            },
            access,
        })
    }

    /// The access running this statement needs.
    pub fn access(&self) -> Access {
        self.access
    }

    /// The statement's text (trimmed, without a final `;`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `SET name = value`: the setting's name (as DataFusion names it) and
    /// value, for sessions that keep what their statements set.
    pub fn set_variable(&self) -> Option<(String, String)> {
        match &self.parsed {
            Parsed::Sql { statement, .. } => match statement.as_ref() {
                DfStatement::Statement(s) => match s.as_ref() {
                    Statement::Set(set) => set_assignment(set),
                    _ => None,
                },
                _ => None,
            },
            Parsed::View(_) | Parsed::Alter(_) | Parsed::Merge(_) | Parsed::Alert(_) => None,
        }
    }
}

/// Parses exactly one statement, checks its shape and rewrites ASOF JOINs
/// (`asof.rs`). Runs on the parse stack: a rejected AST is dropped here too.
fn parse_checked(
    dialect: &dyn Dialect,
    sql: &str,
    recursion: usize,
    lowercase: bool,
) -> Result<DfStatement> {
    check_set_operations(dialect, sql)?;
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(dialect)
        .with_recursion_limit(recursion)
        .build()?
        .parse_statements()?;
    if statements.len() > 1 {
        return Err(QueryError::Unsupported(
            "more than one statement in a request; send them one at a time".into(),
        ));
    }
    let statement = statements
        .pop_front()
        .ok_or_else(|| QueryError::Syntax("no SQL statement was given".into()))?;
    let mut depth = Depth::default();
    let within = match &statement {
        DfStatement::Statement(s) => s.visit(&mut depth),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) => s.visit(&mut depth),
            _ => ControlFlow::Continue(()),
        },
        DfStatement::CopyTo(copy) => match &copy.source {
            datafusion::sql::parser::CopyToSource::Query(q) => q.visit(&mut depth),
            datafusion::sql::parser::CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    if within.is_break() {
        return Err(QueryError::Invalid(format!(
            "expressions are nested more than {MAX_EXPRESSION_DEPTH} levels deep \
             (a chain of {MAX_EXPRESSION_DEPTH} operators, or nested calls); \
             split the statement or use IN lists"
        )));
    }
    refuse_ignored_clauses(&statement)?;
    let mut statement = statement;
    crate::asof::rewrite(&mut statement, dialect, lowercase)?;
    Ok(statement)
}

/// Table clauses sqlparser reads and DataFusion's planner drops without a
/// word: `TABLESAMPLE`/`SAMPLE` (every row would come back) and
/// `FOR SYSTEM_TIME AS OF` / `TIMESTAMP AS OF` / `VERSION AS OF` (the
/// current snapshot would be read). UNIMPLEMENTED rather than a wrong answer.
fn refuse_ignored_clauses(statement: &DfStatement) -> Result<()> {
    struct Ignored;
    impl Visitor for Ignored {
        type Break = QueryError;

        fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<QueryError> {
            let (sample, version) = match factor {
                TableFactor::Table {
                    sample, version, ..
                } => (sample.is_some(), version.is_some()),
                TableFactor::Derived { sample, .. } => (sample.is_some(), false),
                _ => (false, false),
            };
            if sample {
                return ControlFlow::Break(QueryError::Unsupported(format!(
                    "TABLESAMPLE / SAMPLE (in `{factor}`): Weir reads every row; \
                     sample with a WHERE clause, e.g. `WHERE random() < 0.1`"
                )));
            }
            if version {
                return ControlFlow::Break(QueryError::Unsupported(format!(
                    "time travel clauses (in `{factor}`); use the table functions \
                     iceberg_at_snapshot('ns.t', id), iceberg_at_sequence('ns.t', n) \
                     or iceberg_as_of('ns.t', 'timestamp')"
                )));
            }
            ControlFlow::Continue(())
        }
    }
    let walked = match statement {
        DfStatement::Statement(s) => s.visit(&mut Ignored),
        DfStatement::Explain(e) => match e.statement.as_ref() {
            DfStatement::Statement(s) => s.visit(&mut Ignored),
            _ => ControlFlow::Continue(()),
        },
        DfStatement::CopyTo(copy) => match &copy.source {
            datafusion::sql::parser::CopyToSource::Query(q) => q.visit(&mut Ignored),
            datafusion::sql::parser::CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match walked {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Counts UNION/INTERSECT/EXCEPT before parsing: each nests the query one
/// level, and the parser builds the chain without a limit.
fn check_set_operations(dialect: &dyn Dialect, sql: &str) -> Result<()> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize()
        .map_err(|e| QueryError::Syntax(e.to_string()))?;
    let count = tokens
        .iter()
        .filter(|t| {
            matches!(t, Token::Word(w) if w.quote_style.is_none()
                && matches!(w.keyword, Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::MINUS))
        })
        .count();
    if count > MAX_SET_OPERATIONS {
        return Err(QueryError::Invalid(format!(
            "the statement has {count} UNION/INTERSECT/EXCEPT operations; at most {MAX_SET_OPERATIONS} are allowed"
        )));
    }
    Ok(())
}

/// Tracks expression nesting; breaks as soon as it exceeds the limit, so
/// the walk itself never goes deeper than that.
#[derive(Default)]
struct Depth {
    current: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.leave()
    }

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.leave()
    }
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.current += 1;
        if self.current > MAX_EXPRESSION_DEPTH {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.current = self.current.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

fn classify_df(statement: &DfStatement) -> Access {
    match statement {
        DfStatement::Statement(s) => classify_statement(s),
        DfStatement::Explain(explain) if explain.analyze => classify_df(&explain.statement),
        DfStatement::Explain(_) => Access::Read,
        DfStatement::Reset(reset) => {
            let datafusion::sql::parser::ResetStatement::Variable(name) = reset;
            settings::access(&setting_name(name))
        }
        DfStatement::CreateExternalTable(_) | DfStatement::CopyTo(_) => Access::Admin,
    }
}

fn classify_statement(statement: &Statement) -> Access {
    match statement {
        // EXPLAIN plans without running; DESCRIBE only reads a schema.
        Statement::Explain {
            describe_alias: DescribeAlias::Describe | DescribeAlias::Desc,
            ..
        } => Access::Read,
        Statement::Explain {
            analyze: true,
            statement,
            ..
        } => classify_statement(statement),
        Statement::Explain { .. } => Access::Read,
        Statement::Set(set) => match set_assignment(set) {
            Some((name, _)) => settings::access(&name),
            None => Access::Admin,
        },
        // Everything else: the strictest of the statement and the statements
        // and `SELECT … INTO`s nested in it (`WITH … INSERT`, subqueries).
        other => {
            let mut visitor = Strictest(Access::Read);
            let _ = other.visit(&mut visitor);
            visitor.0
        }
    }
}

/// A setting's name as DataFusion's planner derives it (lower case, the
/// PostgreSQL/MySQL time zone aliases mapped).
fn setting_name(name: &ObjectName) -> String {
    let name = name
        .0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
        .to_lowercase();
    match name.as_str() {
        "timezone" | "time.zone" => "datafusion.execution.time_zone".into(),
        _ => name,
    }
}

/// Rewrites statements DataFusion does not plan into equivalents it does:
/// `SET TIME ZONE 'zone'` (PostgreSQL, SQL standard) becomes
/// `SET datafusion.execution.time_zone = 'zone'` (`LOCAL`/`DEFAULT`: UTC).
fn normalize(statement: &mut DfStatement) -> Result<()> {
    let DfStatement::Statement(s) = statement else {
        return Ok(());
    };
    let Statement::Set(Set::SetTimeZone {
        local: false,
        value,
    }) = s.as_mut()
    else {
        if let Statement::Set(Set::SetTimeZone { local: true, .. }) = s.as_ref() {
            return Err(QueryError::Unsupported(
                "SET LOCAL TIME ZONE (there are no transactions); use SET TIME ZONE".into(),
            ));
        }
        return Ok(());
    };
    let zone = match value {
        Expr::Identifier(i)
            if i.quote_style.is_none()
                && (i.value.eq_ignore_ascii_case("local")
                    || i.value.eq_ignore_ascii_case("default")) =>
        {
            Expr::value(datafusion::sql::sqlparser::ast::Value::SingleQuotedString(
                "UTC".into(),
            ))
        }
        other => other.clone(),
    };
    let variable = ObjectName::from(
        ["datafusion", "execution", "time_zone"]
            .map(datafusion::sql::sqlparser::ast::Ident::new)
            .to_vec(),
    );
    **s = Statement::Set(Set::SingleAssignment {
        scope: None,
        hivevar: false,
        variable,
        values: vec![zone],
    });
    Ok(())
}

fn set_assignment(set: &Set) -> Option<(String, String)> {
    match set {
        Set::SingleAssignment {
            scope: None,
            hivevar: false,
            variable,
            values,
        } if values.len() == 1 => {
            let value = match &values[0] {
                Expr::Value(v) => match &v.value {
                    datafusion::sql::sqlparser::ast::Value::SingleQuotedString(s)
                    | datafusion::sql::sqlparser::ast::Value::DoubleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                Expr::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            };
            Some((setting_name(variable), value))
        }
        _ => None,
    }
}

/// `INSERT OVERWRITE t PARTITION (a = 1, b = 'x') query` (Spark's static
/// overwrite): the clause as a predicate; the INSERT keeps no PARTITION
/// clause (DataFusion plans none). Weir runs it as a DELETE of the rows the
/// predicate matches plus the new rows, in one snapshot.
fn take_overwrite_partition(statement: &mut DfStatement) -> Result<Option<String>> {
    let DfStatement::Statement(s) = statement else {
        return Ok(None);
    };
    let Statement::Insert(insert) = s.as_mut() else {
        return Ok(None);
    };
    let Some(partition) = insert.partitioned.take() else {
        return Ok(None);
    };
    if !insert.overwrite {
        return Err(QueryError::Unsupported(
            "INSERT INTO … PARTITION (…): rows go to the partitions their values fall into; \
             leave the PARTITION clause out"
                .into(),
        ));
    }
    let mut terms = Vec::with_capacity(partition.len());
    for expr in &partition {
        match expr {
            Expr::BinaryOp {
                left,
                op: datafusion::sql::sqlparser::ast::BinaryOperator::Eq,
                right,
            } if matches!(
                left.as_ref(),
                Expr::Identifier(_) | Expr::CompoundIdentifier(_)
            ) =>
            {
                terms.push(format!("{left} = {right}"));
            }
            other => {
                return Err(QueryError::Unsupported(format!(
                    "INSERT OVERWRITE … PARTITION ({other}): only `column = value` terms; \
                     without the clause the partitions the rows fall into are replaced"
                )));
            }
        }
    }
    Ok(Some(terms.join(" AND ")))
}

/// Schemas of the ingest pipeline's tables: their rows are changed by SQL
/// (DELETE, UPDATE, TRUNCATE, MERGE) only by admins.
const PIPELINE_SCHEMAS: [&str; 3] = ["bronze", "silver", "gold"];

/// Whether a row-level statement names a table of a pipeline schema
/// (unqualified names resolve in the session's default schema).
fn changes_pipeline_rows(statement: &DfStatement, default_schema: &str) -> bool {
    let DfStatement::Statement(s) = statement else {
        return false;
    };
    // INSERT OVERWRITE replaces rows too: only its target counts (it may
    // read pipeline tables like any query).
    if let Statement::Insert(insert) = s.as_ref()
        && insert.overwrite
    {
        let datafusion::sql::sqlparser::ast::TableObject::TableName(name) = &insert.table else {
            return true;
        };
        let mut names = Names(default_schema, false);
        let _ = names.pre_visit_relation(name);
        return names.1;
    }
    if !matches!(
        s.as_ref(),
        Statement::Delete(_) | Statement::Update(_) | Statement::Truncate(_) | Statement::Merge(_)
    ) {
        return false;
    }
    struct Names<'a>(&'a str, bool);
    impl Visitor for Names<'_> {
        type Break = ();
        fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p.as_ident() {
                    Some(i) => i.value.to_ascii_lowercase(),
                    None => p.to_string().to_ascii_lowercase(),
                })
                .collect();
            let schema = match parts.as_slice() {
                [_] => self.0.to_ascii_lowercase(),
                [.., schema, _] => schema.clone(),
                [] => String::new(),
            };
            if PIPELINE_SCHEMAS.contains(&schema.as_str()) {
                self.1 = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut names = Names(default_schema, false);
    let _ = s.visit(&mut names);
    names.1
}

/// Collects the strictest access of the statements and queries it visits.
struct Strictest(Access);

impl Visitor for Strictest {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        self.0 = self.0.max(shallow(statement));
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if selects_into(&query.body) {
            self.0 = Access::Admin; // SELECT … INTO creates a table
        }
        ControlFlow::Continue(())
    }
}

/// The access of one statement node, not looking inside it.
fn shallow(statement: &Statement) -> Access {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowFunctions { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowViews { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => Access::Read,
        Statement::Set(set) => match set_assignment(set) {
            Some((name, _)) => settings::access(&name),
            None => Access::Admin,
        },
        Statement::Insert(_)
        | Statement::Update(_)
        | Statement::Delete(_)
        | Statement::Merge(_)
        | Statement::Truncate(_) => Access::Write,
        _ => Access::Admin,
    }
}

fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::too_many_lines)] // tables of cases
mod tests {
    use super::*;

    fn classify(sql: &str) -> Result<Access> {
        let ctx = SessionContext::new();
        WeirStatement::parse(&ctx, sql).map(|s| s.access())
    }

    #[test]
    fn statements_are_classified() {
        let cases = [
            ("SELECT 1", Access::Read),
            (
                "  select * from silver.points where device_id = 'x';",
                Access::Read,
            ),
            ("WITH a AS (SELECT 1) SELECT * FROM a", Access::Read),
            ("VALUES (1), (2)", Access::Read),
            ("EXPLAIN SELECT 1", Access::Read),
            ("DELETE FROM readings WHERE a = 1", Access::Write),
            ("DELETE FROM silver.points WHERE a = 1", Access::Admin),
            (
                "INSERT OVERWRITE silver.points SELECT * FROM t",
                Access::Admin,
            ),
            (
                "INSERT OVERWRITE t SELECT * FROM silver.points",
                Access::Write,
            ),
            ("INSERT INTO silver.points SELECT * FROM t", Access::Write),
            ("UPDATE weir.Bronze.raw_messages SET a = 1", Access::Admin),
            ("TRUNCATE TABLE gold.points_1m", Access::Admin),
            ("UPDATE public.t SET a = 1", Access::Write),
            ("EXPLAIN INSERT INTO t VALUES (1)", Access::Read),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", Access::Write),
            ("DESCRIBE silver.points", Access::Read),
            ("SHOW TABLES", Access::Read),
            ("SET weir.mv_rewrite = false", Access::Read),
            ("SET TIMEZONE = 'Europe/Berlin'", Access::Read),
            ("SET datafusion.sql_parser.dialect = 'MySQL'", Access::Admin),
            (
                "SET datafusion.runtime.memory_limit = '100G'",
                Access::Admin,
            ),
            ("RESET datafusion.execution.batch_size", Access::Read),
            ("RESET datafusion.sql_parser.dialect", Access::Admin),
            (
                "SELECT * FROM iceberg_snapshots('silver.points')",
                Access::Read,
            ),
            ("-- note\nINSERT INTO t VALUES (1)", Access::Write),
            ("INSERT INTO t SELECT * FROM u", Access::Write),
            ("DELETE FROM t WHERE a = 1", Access::Write),
            ("UPDATE t SET a = 1", Access::Write),
            ("TRUNCATE TABLE t", Access::Write),
            ("CREATE TABLE t (a INT)", Access::Admin),
            ("CREATE TABLE t AS SELECT 1", Access::Admin),
            (
                "CREATE TABLE t (ts TIMESTAMP) PARTITIONED BY (day(ts))",
                Access::Admin,
            ),
            ("SELECT 1 AS a INTO t2", Access::Admin),
            ("SELECT 1 INTO t2 UNION SELECT 2", Access::Admin),
            ("CREATE SCHEMA plant", Access::Admin),
            ("DROP TABLE t", Access::Admin),
            ("DROP SCHEMA plant CASCADE", Access::Admin),
            ("CREATE VIEW v AS SELECT 1", Access::Admin),
            ("CREATE MATERIALIZED VIEW v AS SELECT 1", Access::Admin),
            ("CREATE ALERT a ON t WHEN v > 1", Access::Admin),
            ("/* x */ DROP ALERT a", Access::Admin),
            ("ACKNOWLEDGE ALERT 'x', 'y'", Access::Write),
            ("ack alert 'x'", Access::Write),
            ("REFRESH MATERIALIZED VIEW gold.points_1h", Access::Admin),
            ("DROP MATERIALIZED VIEW gold.points_1h", Access::Admin),
            ("ALTER TABLE t ADD COLUMN b INT", Access::Admin),
            ("ALTER TABLE t DROP COLUMN IF EXISTS b", Access::Admin),
            ("ALTER TABLE t RENAME COLUMN a TO b", Access::Admin),
            (
                "ALTER TABLE t ALTER COLUMN a SET DATA TYPE BIGINT",
                Access::Admin,
            ),
            ("ALTER TABLE t ALTER COLUMN a DROP NOT NULL", Access::Admin),
            ("ALTER TABLE t RENAME TO u", Access::Admin),
            ("ALTER TABLE t SET TBLPROPERTIES ('k' = 'v')", Access::Admin),
            ("ALTER TABLE t UNSET TBLPROPERTIES ('k')", Access::Admin),
            ("alter table t add partition field day(ts)", Access::Admin),
            (
                "ALTER TABLE t DROP PARTITION FIELD bucket(16, id)",
                Access::Admin,
            ),
            ("ALTER TABLE t WRITE ORDERED BY (a, b)", Access::Admin),
            ("CREATE OR REPLACE VIEW v AS SELECT * FROM t", Access::Admin),
            ("DROP VIEW v", Access::Admin),
            ("DROP VIEW IF EXISTS s.v", Access::Admin),
            ("SHOW CREATE TABLE t", Access::Read),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", Access::Admin),
            (
                "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/'",
                Access::Admin,
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(classify(sql).unwrap(), expected, "{sql}");
        }
        // Not parsed, so never run: an error, whatever the role.
        for sql in [
            "SELEC 1",
            "",
            "COMPACT silver.points",
            "SELECT 1; DROP TABLE t",
            "ALTER TABLE t ADD COLUMN c INT NOT NULL",
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            "ALTER TABLE t UNSET TBLPROPERTIES",
            "ALTER TABLE t WRITE ORDERED BY",
        ] {
            assert!(classify(sql).is_err(), "{sql}");
        }
    }

    /// The role bypass of issue 24: MySQL does not nest comments, so the
    /// statement is a DROP there; the check must see what the engine runs.
    #[test]
    fn the_session_dialect_decides_what_the_statement_is() {
        let sql = "/* /* */ DROP TABLE public.victim -- */ SELECT 1";
        let ctx = SessionContext::new();
        assert_eq!(classify(sql).unwrap(), Access::Read);
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set("datafusion.sql_parser.dialect", "MySQL")
            .unwrap();
        let statement = WeirStatement::parse(&ctx, sql).unwrap();
        assert_eq!(statement.access(), Access::Admin);
        let copy = "/* /* */ COPY (SELECT 'x' AS a) TO '/tmp/x.csv' STORED AS CSV -- */ SELECT 1";
        assert_eq!(
            WeirStatement::parse(&ctx, copy).unwrap().access(),
            Access::Admin
        );
    }

    #[test]
    fn pathological_shapes_are_refused_not_crashed() {
        let ctx = SessionContext::new();
        let chain = |n: usize, op: &str| {
            format!(
                "SELECT {}",
                std::iter::repeat_n("1", n).collect::<Vec<_>>().join(op)
            )
        };
        assert!(WeirStatement::parse(&ctx, &chain(500, "+")).is_ok());
        for (sql, what) in [
            (chain(2_000, "+"), "2,000 terms"),
            (chain(200_000, "+"), "200,000 terms"),
            (chain(100_000, " AND "), "AND chain"),
            (
                std::iter::repeat_n("SELECT 1", 5_000)
                    .collect::<Vec<_>>()
                    .join(" UNION ALL "),
                "UNION chain",
            ),
            (
                format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000)),
                "parentheses",
            ),
        ] {
            let err = WeirStatement::parse(&ctx, &sql).unwrap_err();
            assert!(
                matches!(err, QueryError::Invalid(_) | QueryError::Syntax(_)),
                "{what}: {err}"
            );
        }
    }
}
