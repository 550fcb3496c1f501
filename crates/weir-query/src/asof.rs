//! `ASOF JOIN … MATCH_CONDITION (…)` (Snowflake's syntax, which sqlparser
//! reads and DataFusion does not plan), rewritten on the parsed statement
//! into SQL DataFusion plans (issue 22).
//!
//! ```sql
//! SELECT … FROM trades t ASOF JOIN quotes q
//!   MATCH_CONDITION (t.ts >= q.ts) ON t.sym = q.sym
//! ```
//!
//! keeps every left row and joins it with the right row of equal `ON` keys
//! whose time is the closest one allowed by the match condition (`>=`: the
//! latest `q.ts <= t.ts`; `>`: the latest `q.ts < t.ts`; `<=` / `<`: the
//! earliest at or after / after); right columns are NULL when there is
//! none. Right rows whose time is NULL never match; among right rows with
//! the same keys and time, any one.
//!
//! The rewrite gives every right row the next (for `>=`, `>`) or previous
//! (for `<=`, `<`) time of its keys, so that each right row owns the
//! half-open range of left times it answers, and the join becomes a LEFT
//! JOIN on the keys and that range:
//!
//! ```sql
//! FROM trades t LEFT JOIN (
//!     SELECT *, lead(q.ts) OVER (PARTITION BY q.sym ORDER BY q.ts) AS __weir_asof_1
//!     FROM quotes q WHERE q.ts IS NOT NULL) AS q
//!   ON t.sym = q.sym AND q.ts <= t.ts AND (q.__weir_asof_1 IS NULL OR t.ts < q.__weir_asof_1)
//! ```
//!
//! With duplicate times only the last (first) of them in window order gets
//! a non-empty range, so a left row never matches twice. The planner makes
//! it a hash join on the keys with the range as join filter (a nested loop
//! without keys): correct, not a merge-based ASOF operator. `SELECT *` and
//! `q.*` of that SELECT get `EXCLUDE (__weir_asof_N)`; CREATE VIEW stores
//! the rewritten query.
//!
//! Not supported (UNIMPLEMENTED / INVALID_ARGUMENT with the reason): `USING`
//! or `NATURAL` (write `ON l.k = r.k`), `ON` conditions other than
//! equalities joined by AND, unqualified columns in the conditions, a right
//! side without a name or alias.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, ExcludeSelectItem, Expr, Ident, Join, JoinConstraint, JoinOperator, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, TableFactor, TableWithJoins,
    Visit, VisitMut, Visitor, VisitorMut, WildcardAdditionalOptions,
};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::{QueryError, Result};

/// Rewrites every ASOF JOIN of `statement` (queries, subqueries, CTEs,
/// views, INSERT … SELECT, EXPLAIN).
pub(crate) fn rewrite(
    statement: &mut DfStatement,
    dialect: &dyn Dialect,
    lowercase: bool,
) -> Result<()> {
    let mut rewriter = Rewriter {
        dialect,
        lowercase,
        next_id: 1,
    };
    let walked = match statement {
        DfStatement::Statement(s) => s.visit(&mut rewriter),
        DfStatement::Explain(e) => match e.statement.as_mut() {
            DfStatement::Statement(s) => s.visit(&mut rewriter),
            _ => ControlFlow::Continue(()),
        },
        DfStatement::CopyTo(copy) => match &mut copy.source {
            datafusion::sql::parser::CopyToSource::Query(q) => q.visit(&mut rewriter),
            datafusion::sql::parser::CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        _ => ControlFlow::Continue(()),
    };
    match walked {
        ControlFlow::Break(e) => Err(e),
        ControlFlow::Continue(()) => Ok(()),
    }
}

pub(crate) struct Rewriter<'a> {
    dialect: &'a dyn Dialect,
    pub(crate) lowercase: bool,
    pub(crate) next_id: usize,
}

impl VisitorMut for Rewriter<'_> {
    type Break = QueryError;

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<QueryError> {
        match self.set_expr(&mut query.body) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

impl Rewriter<'_> {
    /// The SELECTs of a query body (nested queries are visited on their own).
    fn set_expr(&mut self, body: &mut SetExpr) -> Result<()> {
        match body {
            SetExpr::Select(select) => self.select(select),
            SetExpr::SetOperation { left, right, .. } => {
                self.set_expr(left)?;
                self.set_expr(right)
            }
            _ => Ok(()),
        }
    }

    fn select(&mut self, select: &mut Select) -> Result<()> {
        let mut helpers = Vec::new();
        for from in &mut select.from {
            self.joins(from, &mut helpers)?;
        }
        // `(SELECT … ORDER BY t DESC LIMIT 1)` select items (asof_subquery.rs).
        self.scalar_subqueries(select, &mut helpers)?;
        if !helpers.is_empty() {
            exclude_helpers(&mut select.projection, &helpers, self.lowercase);
        }
        Ok(())
    }

    /// Rewrites the ASOF joins of `from` (and of parenthesized joins in
    /// it); `helpers`: (right alias, helper column) of each.
    fn joins(
        &mut self,
        from: &mut TableWithJoins,
        helpers: &mut Vec<(Ident, Ident)>,
    ) -> Result<()> {
        if let TableFactor::NestedJoin {
            table_with_joins, ..
        } = &mut from.relation
        {
            self.joins(table_with_joins, helpers)?;
        }
        for join in &mut from.joins {
            if let TableFactor::NestedJoin {
                table_with_joins, ..
            } = &mut join.relation
            {
                self.joins(table_with_joins, helpers)?;
            }
            if matches!(join.join_operator, JoinOperator::AsOf { .. }) {
                let helper = Ident::new(format!("__weir_asof_{}", self.next_id));
                self.next_id += 1;
                let alias = self.join(join, &helper)?;
                helpers.push((alias, helper));
            }
        }
        Ok(())
    }

    /// One ASOF join into a LEFT JOIN (module docs); returns the right
    /// side's alias.
    fn join(&self, join: &mut Join, helper: &Ident) -> Result<Ident> {
        let JoinOperator::AsOf {
            match_condition,
            constraint,
        } = &join.join_operator
        else {
            unreachable!("checked by the caller");
        };
        let alias = right_alias(&join.relation)?;
        let right = Side {
            alias: &alias,
            lowercase: self.lowercase,
        };
        let (left_time, op, right_time) = right.match_condition(match_condition)?;
        let (on, keys) = match constraint {
            JoinConstraint::On(on) => (Some(on.clone()), right.keys(on)?),
            JoinConstraint::None => (None, Vec::new()),
            JoinConstraint::Using(_) | JoinConstraint::Natural => {
                return Err(QueryError::Unsupported(
                    "ASOF JOIN with USING or NATURAL; write the keys as ON l.k = r.k".into(),
                ));
            }
        };
        // lead: the next right time (for >=, >); lag: the previous (<=, <).
        let (neighbour, right_op, range_op) = match op {
            BinaryOperator::GtEq => ("lead", "<=", "<"),
            BinaryOperator::Gt => ("lead", "<", "<="),
            BinaryOperator::LtEq => ("lag", ">=", ">"),
            BinaryOperator::Lt => ("lag", ">", ">="),
            _ => unreachable!("match_condition checks the operator"),
        };
        let partition = if keys.is_empty() {
            String::new()
        } else {
            let keys: Vec<String> = keys.iter().map(ToString::to_string).collect();
            format!("PARTITION BY {} ", keys.join(", "))
        };
        let derived = format!(
            "(SELECT *, {neighbour}({right_time}) OVER ({partition}ORDER BY {right_time}) AS {helper} \
             FROM {relation} WHERE {right_time} IS NOT NULL) AS {alias}",
            relation = join.relation,
        );
        let mut condition = format!(
            "{right_time} {right_op} {left_time} AND ({alias}.{helper} IS NULL OR {left_time} {range_op} {alias}.{helper})"
        );
        if let Some(on) = on {
            condition = format!("({on}) AND {condition}");
        }
        join.relation = self.parse(&derived, |p| p.parse_table_factor())?;
        join.join_operator = JoinOperator::LeftOuter(JoinConstraint::On(
            self.parse(&condition, |p| p.parse_expr())?,
        ));
        Ok(alias)
    }

    pub(crate) fn parse<T>(
        &self,
        sql: &str,
        f: impl FnOnce(
            &mut Parser,
        )
            -> std::result::Result<T, datafusion::sql::sqlparser::parser::ParserError>,
    ) -> Result<T> {
        let mut parser = Parser::new(self.dialect)
            .try_with_sql(sql)
            .map_err(|e| QueryError::Internal(format!("ASOF JOIN rewrite `{sql}`: {e}")))?;
        f(&mut parser).map_err(|e| QueryError::Internal(format!("ASOF JOIN rewrite `{sql}`: {e}")))
    }
}

/// The name the right side's columns are qualified with.
pub(crate) fn right_alias(relation: &TableFactor) -> Result<Ident> {
    match relation {
        TableFactor::Table { alias: Some(a), .. }
        | TableFactor::Derived { alias: Some(a), .. }
        | TableFactor::Function { alias: Some(a), .. }
        | TableFactor::UNNEST { alias: Some(a), .. } => {
            if !a.columns.is_empty() {
                return Err(QueryError::Unsupported(
                    "ASOF JOIN: column aliases on the right side; rename the columns in a subquery"
                        .into(),
                ));
            }
            Ok(a.name.clone())
        }
        TableFactor::Table {
            name, alias: None, ..
        } => name
            .0
            .last()
            .and_then(|part| part.as_ident())
            .cloned()
            .ok_or_else(|| QueryError::Invalid(format!("ASOF JOIN: cannot name {name}"))),
        other => Err(QueryError::Unsupported(format!(
            "ASOF JOIN: give the right side ({other}) an alias"
        ))),
    }
}

/// Tells expressions over the right side from the others.
pub(crate) struct Side<'a> {
    pub(crate) alias: &'a Ident,
    pub(crate) lowercase: bool,
}

#[derive(Default)]
pub(crate) struct Refs {
    pub(crate) right: bool,
    pub(crate) other: bool,
    pub(crate) unqualified: bool,
}

impl Side<'_> {
    fn same(&self, a: &Ident, b: &Ident) -> bool {
        let norm = |i: &Ident| {
            if self.lowercase && i.quote_style.is_none() {
                i.value.to_lowercase()
            } else {
                i.value.clone()
            }
        };
        norm(a) == norm(b)
    }

    pub(crate) fn refs(&self, expr: &Expr) -> Refs {
        struct Collect<'a, 'b> {
            side: &'a Side<'b>,
            refs: Refs,
        }
        impl Visitor for Collect<'_, '_> {
            type Break = ();
            fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                match expr {
                    Expr::Identifier(_) => self.refs.unqualified = true,
                    Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                        if self.side.same(&parts[parts.len() - 2], self.side.alias) {
                            self.refs.right = true;
                        } else {
                            self.refs.other = true;
                        }
                    }
                    _ => {}
                }
                ControlFlow::Continue(())
            }
        }
        let mut collect = Collect {
            side: self,
            refs: Refs::default(),
        };
        let _ = expr.visit(&mut collect);
        collect.refs
    }

    /// `(left, right)` of a comparison with one operand over the right side
    /// only and the other not over it; `flipped` when the right side is on
    /// the left of the operator.
    fn operands<'e>(
        &self,
        a: &'e Expr,
        b: &'e Expr,
        what: &str,
    ) -> Result<(&'e Expr, &'e Expr, bool)> {
        let (ra, rb) = (self.refs(a), self.refs(b));
        if ra.unqualified || rb.unqualified {
            return Err(QueryError::Invalid(format!(
                "ASOF JOIN: qualify the columns of {what} with their table or alias (e.g. l.ts >= r.ts)"
            )));
        }
        match (ra.right && !ra.other, rb.right && !rb.other) {
            (false, true) if !ra.right => Ok((a, b, false)),
            (true, false) if !rb.right => Ok((b, a, true)),
            _ => Err(QueryError::Invalid(format!(
                "ASOF JOIN: {what} must compare a column of the left side with one of the right side ({})",
                self.alias
            ))),
        }
    }

    /// (left time, operator as `left op right`, right time).
    fn match_condition(&self, condition: &Expr) -> Result<(Expr, BinaryOperator, Expr)> {
        let mut condition = condition;
        while let Expr::Nested(inner) = condition {
            condition = inner;
        }
        let Expr::BinaryOp { left, op, right } = condition else {
            return Err(QueryError::Invalid(format!(
                "ASOF JOIN: MATCH_CONDITION must be one comparison (>=, >, <=, <), got {condition}"
            )));
        };
        if !matches!(
            op,
            BinaryOperator::GtEq | BinaryOperator::Gt | BinaryOperator::LtEq | BinaryOperator::Lt
        ) {
            return Err(QueryError::Invalid(format!(
                "ASOF JOIN: MATCH_CONDITION compares with >=, >, <= or <, not {op}"
            )));
        }
        let (l, r, flipped) = self.operands(left, right, "MATCH_CONDITION")?;
        let op = if flipped {
            match op {
                BinaryOperator::GtEq => BinaryOperator::LtEq,
                BinaryOperator::Gt => BinaryOperator::Lt,
                BinaryOperator::LtEq => BinaryOperator::GtEq,
                _ => BinaryOperator::Gt,
            }
        } else {
            op.clone()
        };
        Ok((l.clone(), op, r.clone()))
    }

    /// The right side's key expressions of `ON a = b AND …`.
    fn keys(&self, on: &Expr) -> Result<Vec<Expr>> {
        let mut keys = Vec::new();
        let mut pending = vec![on];
        while let Some(expr) = pending.pop() {
            match expr {
                Expr::Nested(inner) => pending.push(inner),
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And,
                    right,
                } => {
                    pending.push(right);
                    pending.push(left);
                }
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => {
                    let (_, r, _) = self.operands(left, right, "ON")?;
                    keys.push(r.clone());
                }
                other => {
                    return Err(QueryError::Unsupported(format!(
                        "ASOF JOIN: ON takes equalities joined by AND (the keys), not {other}; \
                         filter in WHERE or in a subquery"
                    )));
                }
            }
        }
        Ok(keys)
    }
}

/// `SELECT *` and `r.*` leave out the helper columns.
fn exclude_helpers(projection: &mut [SelectItem], helpers: &[(Ident, Ident)], lowercase: bool) {
    for item in projection {
        let (options, wanted): (&mut WildcardAdditionalOptions, Vec<Ident>) = match item {
            SelectItem::Wildcard(options) => {
                (options, helpers.iter().map(|(_, h)| h.clone()).collect())
            }
            SelectItem::QualifiedWildcard(
                SelectItemQualifiedWildcardKind::ObjectName(name),
                options,
            ) => {
                let Some(qualifier) = name.0.last().and_then(|p| p.as_ident()) else {
                    continue;
                };
                let side = |alias: &Ident| Side { alias, lowercase }.same(qualifier, alias);
                let wanted: Vec<Ident> = helpers
                    .iter()
                    .filter(|(alias, _)| side(alias))
                    .map(|(_, h)| h.clone())
                    .collect();
                (options, wanted)
            }
            _ => continue,
        };
        if wanted.is_empty() {
            continue;
        }
        let mut columns = match options.opt_exclude.take() {
            None => Vec::new(),
            Some(ExcludeSelectItem::Single(c)) => vec![c],
            Some(ExcludeSelectItem::Multiple(cs)) => cs,
        };
        columns.extend(wanted);
        options.opt_exclude = Some(ExcludeSelectItem::Multiple(columns));
    }
}
