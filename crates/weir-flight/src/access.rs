//! Roles: which statements a caller may run.
//!
//! A statement is classified from its SQL *before* the engine sees it —
//! `QueryEngine::sql` executes DDL while planning, so checking the planned
//! `LogicalPlan` would be too late. The SQL is parsed with DataFusion's own
//! parser (the one the engine plans with), so the classification sees the
//! statement the engine will run:
//!
//! - [`Access::Read`]: SELECT/WITH/VALUES without `INTO`, EXPLAIN (without
//!   ANALYZE), DESCRIBE, SHOW, SET/RESET of session variables, transaction
//!   statements (which Weir answers UNIMPLEMENTED);
//! - [`Access::Write`]: INSERT, UPDATE, DELETE, MERGE, TRUNCATE (also inside
//!   a query), `EXPLAIN ANALYZE` of those, and bulk ingestion;
//! - [`Access::Admin`]: everything else — CREATE/DROP/ALTER of schemas,
//!   tables and (materialized) views, CTAS, `SELECT … INTO` (creates a
//!   table), REFRESH MATERIALIZED VIEW, COPY TO and CREATE EXTERNAL TABLE
//!   (server files), and any statement not recognised.
//!
//! SQL the parser rejects (Weir's own syntax: materialized views,
//! `PARTITIONED BY`) is classified by its first keyword: SELECT-like words
//! are read (the engine then reports the syntax error), DML words write,
//! anything else admin. Unknown means admin: a new kind of statement is
//! refused to readers until it is classified here.

use std::ops::ControlFlow;

use datafusion::sql::parser::{DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{DescribeAlias, Query, SetExpr, Statement, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tonic::Status;

use crate::auth::Principal;
use crate::users::Role;

/// What running a statement needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    fn required_role(self) -> Role {
        match self {
            Access::Read => Role::Read,
            Access::Write => Role::Write,
            Access::Admin => Role::Admin,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Access::Read => "queries",
            Access::Write => "INSERT/UPDATE/DELETE and ingestion",
            Access::Admin => "DDL, REFRESH and other administrative statements",
        }
    }
}

/// PERMISSION_DENIED unless `principal`'s role allows `access`.
pub(crate) fn permit(principal: &Principal, access: Access) -> Result<(), Status> {
    let needed = access.required_role();
    if principal.role >= needed {
        return Ok(());
    }
    tracing::info!(user = %principal.name, role = %principal.role, ?access, "Flight SQL: permission denied");
    Err(Status::permission_denied(format!(
        "user `{}` has role {} and may not run {}: role {} is needed",
        principal.name,
        principal.role,
        access.describe(),
        needed
    )))
}

/// PERMISSION_DENIED unless `principal` may run `sql`.
pub(crate) fn permit_sql(principal: &Principal, sql: &str) -> Result<(), Status> {
    if principal.role == Role::Admin {
        return Ok(()); // no need to parse
    }
    permit(principal, classify(sql))
}

/// The access `sql` (one or more statements) needs.
pub fn classify(sql: &str) -> Access {
    match DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()
        .and_then(|mut p| p.parse_statements())
    {
        Ok(statements) if !statements.is_empty() => statements
            .iter()
            .map(classify_df)
            .max()
            .unwrap_or(Access::Admin),
        _ => classify_by_keyword(sql),
    }
}

fn classify_df(statement: &DfStatement) -> Access {
    match statement {
        DfStatement::Statement(s) => classify_statement(s),
        DfStatement::Explain(explain) if explain.analyze => classify_df(&explain.statement),
        DfStatement::Explain(_) | DfStatement::Reset(_) => Access::Read,
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
        // Everything else: the strictest of the statement and the statements
        // and `SELECT … INTO`s nested in it (`WITH … INSERT`, subqueries).
        other => {
            let mut visitor = Strictest(Access::Read);
            let _ = other.visit(&mut visitor);
            visitor.0
        }
    }
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
        | Statement::Set(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => Access::Read,
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

/// For SQL the parser rejects: by the first keyword (comments skipped).
fn classify_by_keyword(sql: &str) -> Access {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Access::Admin;
    };
    let first = tokens.iter().find_map(|t| match t {
        Token::Word(w) => Some(w.value.to_ascii_uppercase()),
        Token::Whitespace(_) | Token::LParen => None,
        _ => Some(String::new()),
    });
    match first.as_deref() {
        Some(
            "SELECT" | "WITH" | "VALUES" | "TABLE" | "EXPLAIN" | "DESCRIBE" | "DESC" | "SHOW"
            | "SET" | "RESET",
        ) => Access::Read,
        Some("INSERT" | "UPDATE" | "DELETE" | "MERGE" | "TRUNCATE" | "UPSERT" | "REPLACE") => {
            Access::Write
        }
        _ => Access::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("EXPLAIN INSERT INTO t VALUES (1)", Access::Read),
            ("EXPLAIN ANALYZE INSERT INTO t VALUES (1)", Access::Write),
            ("DESCRIBE silver.points", Access::Read),
            ("SHOW TABLES", Access::Read),
            ("SET weir.mv_rewrite = false", Access::Read),
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
            ("REFRESH MATERIALIZED VIEW gold.points_1h", Access::Admin),
            ("DROP MATERIALIZED VIEW gold.points_1h", Access::Admin),
            ("ALTER TABLE t ADD COLUMN b INT", Access::Admin),
            ("COPY (SELECT 1) TO '/tmp/x.parquet'", Access::Admin),
            (
                "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/'",
                Access::Admin,
            ),
            ("COMPACT silver.points", Access::Admin),
            ("SELECT 1; DROP TABLE t", Access::Admin),
            ("SELEC 1", Access::Admin),
            ("SELECT FROM WHERE", Access::Read),
            ("", Access::Admin),
        ];
        for (sql, expected) in cases {
            assert_eq!(classify(sql), expected, "{sql}");
        }
    }

    #[test]
    fn roles_include_lower_ones() {
        let who = |role| Principal {
            name: "u".into(),
            role,
        };
        assert!(permit(&who(Role::Read), Access::Read).is_ok());
        let denied = permit(&who(Role::Read), Access::Write).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("role write is needed"),
            "{denied}"
        );
        assert!(permit(&who(Role::Write), Access::Write).is_ok());
        assert!(permit(&who(Role::Write), Access::Admin).is_err());
        assert!(permit_sql(&who(Role::Admin), "DROP TABLE t").is_ok());
        assert!(permit_sql(&who(Role::Write), "DROP TABLE t").is_err());
        assert!(permit_sql(&who(Role::Write), "INSERT INTO t VALUES (1)").is_ok());
    }
}
