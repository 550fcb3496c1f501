//! The correlated "latest row before t" scalar subquery (issue 22 item 2),
//! which DataFusion 53 cannot decorrelate (`ORDER BY … LIMIT 1` inside a
//! correlated subquery: "Physical plan does not support logical expression
//! ScalarSubquery"), rewritten into the ASOF join of `asof.rs`:
//!
//! ```sql
//! SELECT r.ts, r.device,
//!        (SELECT s.value FROM settings s
//!          WHERE s.device = r.device AND s.ts <= r.ts
//!          ORDER BY s.ts DESC LIMIT 1) AS setting
//! FROM readings r
//! ```
//!
//! becomes a LEFT JOIN of `readings r` with the settings, each owning the
//! range of times up to the next setting of its device, and the select item
//! the joined value. The shape recognised (anything else is left to
//! DataFusion): a select item that is exactly the subquery; one table with a
//! name or alias inside; one projected expression; `WHERE` terms joined by
//! AND that are equalities between an inner and an outer column (the keys),
//! exactly one comparison (`<=`, `<`, `>=`, `>`) between the inner and an
//! outer time, and filters over the inner table only; `ORDER BY` the inner
//! time `DESC` for `<=`/`<` (the latest before) or `ASC` for `>=`/`>` (the
//! earliest after); `LIMIT 1`. Columns must be qualified.

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Ident, Join, JoinConstraint, JoinOperator, LimitClause, OrderByKind,
    Query, Select, SelectItem, SetExpr, TableFactor, Value,
};

use crate::asof::{Rewriter, Side, right_alias};
use crate::error::Result;

/// A recognised subquery, ready to become a join.
struct Shape {
    relation: TableFactor,
    alias: Ident,
    value: Expr,
    value_name: String,
    /// (outer, inner) key pairs.
    keys: Vec<(Expr, Expr)>,
    outer_time: Expr,
    /// As `outer op inner`: GtEq/Gt (latest before), LtEq/Lt (earliest after).
    op: BinaryOperator,
    inner_time: Expr,
    filters: Vec<Expr>,
}

impl Rewriter<'_> {
    /// Rewrites the select items of `select` that are such subqueries;
    /// `helpers`: the helper columns `SELECT *` must leave out.
    pub(crate) fn scalar_subqueries(
        &mut self,
        select: &mut Select,
        helpers: &mut Vec<(Ident, Ident)>,
    ) -> Result<()> {
        if select.from.len() != 1 {
            return Ok(());
        }
        for i in 0..select.projection.len() {
            let (expr, name) = match &select.projection[i] {
                SelectItem::UnnamedExpr(e) => (e, None),
                SelectItem::ExprWithAlias { expr, alias } => (expr, Some(alias.clone())),
                _ => continue,
            };
            let Expr::Subquery(query) = expr else {
                continue;
            };
            let Some(shape) = self.shape(query) else {
                continue;
            };
            let names = Names {
                id: self.next_id,
                alias: Ident::new(format!("__weir_sq_{}", self.next_id)),
            };
            self.next_id += 1;
            let alias = &names.alias;
            let join = Join {
                relation: self.parse(&shape.derived_table(&names), |p| p.parse_table_factor())?,
                global: false,
                join_operator: JoinOperator::LeftOuter(JoinConstraint::On(
                    self.parse(&shape.join_on(&names), |p| p.parse_expr())?,
                )),
            };
            select.from[0].joins.push(join);
            let value = self.parse(&format!("{alias}.{}", names.column("v")), |p| {
                p.parse_expr()
            })?;
            select.projection[i] = SelectItem::ExprWithAlias {
                expr: value,
                alias: name.unwrap_or_else(|| Ident::new(shape.value_name.clone())),
            };
            for what in ["v", "t", "h"] {
                helpers.push((alias.clone(), names.column(what)));
            }
            for k in 0..shape.keys.len() {
                helpers.push((alias.clone(), names.column(&format!("k{k}"))));
            }
            let _ = &shape.alias;
        }
        Ok(())
    }

    fn shape(&self, query: &Query) -> Option<Shape> {
        let inner = single_table_select(query)?;
        let relation = inner.from[0].relation.clone();
        if !matches!(relation, TableFactor::Table { .. }) {
            return None;
        }
        let alias = right_alias(&relation).ok()?;
        let side = Side {
            alias: &alias,
            lowercase: self.lowercase,
        };
        let (value, value_name) = match &inner.projection[0] {
            SelectItem::UnnamedExpr(e) => (e.clone(), name_of(e)),
            SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), alias.value.clone()),
            _ => return None,
        };
        let refs = side.refs(&value);
        if refs.other || refs.unqualified {
            return None;
        }
        let Conditions {
            keys,
            time,
            filters,
        } = Conditions::of(&side, inner.selection.as_ref()?)?;
        let (outer_time, op, inner_time) = time?;
        let order = match &query.order_by.as_ref()?.kind {
            OrderByKind::Expressions(list) if list.len() == 1 => &list[0],
            _ => return None,
        };
        if order.expr != inner_time {
            return None;
        }
        let descending = order.options.asc == Some(false);
        let latest_before = matches!(op, BinaryOperator::GtEq | BinaryOperator::Gt);
        if descending != latest_before {
            return None;
        }
        Some(Shape {
            relation,
            alias,
            value,
            value_name,
            keys,
            outer_time,
            op,
            inner_time,
            filters,
        })
    }
}

/// The names of one rewritten subquery: its derived table and columns.
struct Names {
    id: usize,
    /// `__weir_sq_<id>`.
    alias: Ident,
}

impl Names {
    /// `__weir_sq_<id>_<what>`.
    fn column(&self, what: &str) -> Ident {
        Ident::new(format!("__weir_sq_{}_{what}", self.id))
    }
}

impl Shape {
    /// The neighbouring time's window function, and the comparisons of the
    /// outer time with the row's time and with its neighbour's.
    fn ops(&self) -> (&'static str, &'static str, &'static str) {
        match self.op {
            BinaryOperator::GtEq => ("lead", "<=", "<"),
            BinaryOperator::Gt => ("lead", "<", "<="),
            BinaryOperator::LtEq => ("lag", ">=", ">"),
            _ => ("lag", ">", ">="),
        }
    }

    /// The derived table joined: the inner rows' value, time, keys and the
    /// neighbouring time of their keys (where their range ends).
    fn derived_table(&self, names: &Names) -> String {
        let column = |what: &str| names.column(what);
        let (neighbour, _, _) = self.ops();
        let mut items = vec![
            format!("{} AS {}", self.value, column("v")),
            format!("{} AS {}", self.inner_time, column("t")),
        ];
        let mut partition = Vec::new();
        for (k, (_, inner)) in self.keys.iter().enumerate() {
            items.push(format!("{inner} AS {}", column(&format!("k{k}"))));
            partition.push(inner.to_string());
        }
        let partition = if partition.is_empty() {
            String::new()
        } else {
            format!("PARTITION BY {} ", partition.join(", "))
        };
        items.push(format!(
            "{neighbour}({t}) OVER ({partition}ORDER BY {t}) AS {h}",
            t = self.inner_time,
            h = column("h")
        ));
        let mut filter = format!("{} IS NOT NULL", self.inner_time);
        for f in &self.filters {
            filter += &format!(" AND ({f})");
        }
        format!(
            "(SELECT {} FROM {} WHERE {filter}) AS {}",
            items.join(", "),
            self.relation,
            names.alias
        )
    }

    /// The join condition: equal keys, and the outer time inside the row's
    /// range.
    fn join_on(&self, names: &Names) -> String {
        let (alias, column) = (&names.alias, |what: &str| names.column(what));
        let (_, right_op, range_op) = self.ops();
        let mut on = vec![];
        for (k, (outer, _)) in self.keys.iter().enumerate() {
            on.push(format!("{outer} = {alias}.{}", column(&format!("k{k}"))));
        }
        on.push(format!(
            "{alias}.{t} {right_op} {o} AND ({alias}.{h} IS NULL OR {o} {range_op} {alias}.{h})",
            t = column("t"),
            h = column("h"),
            o = self.outer_time
        ));
        on.join(" AND ")
    }
}

/// The subquery's one `SELECT` of one table with one item, without
/// DISTINCT, GROUP BY, HAVING or WITH, and `LIMIT 1`.
fn single_table_select(query: &Query) -> Option<&Select> {
    if query.with.is_some() || query.fetch.is_some() {
        return None;
    }
    match &query.limit_clause {
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(v)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() && matches!(&v.value, Value::Number(n, _) if n == "1") => {}
        _ => return None,
    }
    let SetExpr::Select(inner) = query.body.as_ref() else {
        return None;
    };
    if inner.from.len() != 1
        || !inner.from[0].joins.is_empty()
        || inner.projection.len() != 1
        || inner.distinct.is_some()
        || inner.having.is_some()
        || !matches!(&inner.group_by, datafusion::sql::sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return None;
    }
    Some(inner)
}

/// The subquery's `WHERE` terms, sorted out.
struct Conditions {
    /// (outer, inner) key pairs.
    keys: Vec<(Expr, Expr)>,
    /// (outer time, op as outer-op-inner, inner time).
    time: Option<(Expr, BinaryOperator, Expr)>,
    /// Filters over the inner table only.
    filters: Vec<Expr>,
}

impl Conditions {
    /// The terms (joined by AND) of `selection`; `None` when one is neither
    /// a key, the one time comparison, nor a filter on the inner table.
    fn of(side: &Side<'_>, selection: &Expr) -> Option<Self> {
        let mut keys = Vec::new();
        let mut time = None;
        let mut filters = Vec::new();
        let mut pending = vec![selection];
        while let Some(e) = pending.pop() {
            match e {
                Expr::Nested(e) => pending.push(e),
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::And,
                    right,
                } => {
                    pending.push(right);
                    pending.push(left);
                }
                Expr::BinaryOp { left, op, right } => {
                    let (l, r) = (side.refs(left), side.refs(right));
                    if l.unqualified || r.unqualified {
                        return None;
                    }
                    if !l.other && !r.other {
                        filters.push(e.clone());
                        continue;
                    }
                    // (outer, op as outer-op-inner, inner)
                    let (outer, op, inner_e) = match (l.right && !l.other, r.right && !r.other) {
                        (false, true) if !l.right => (left, op.clone(), right),
                        (true, false) if !r.right => (right, flip(op)?, left),
                        _ => return None,
                    };
                    match op {
                        BinaryOperator::Eq => {
                            keys.push((outer.as_ref().clone(), inner_e.as_ref().clone()))
                        }
                        BinaryOperator::GtEq
                        | BinaryOperator::Gt
                        | BinaryOperator::LtEq
                        | BinaryOperator::Lt
                            if time.is_none() =>
                        {
                            time = Some((outer.as_ref().clone(), op, inner_e.as_ref().clone()));
                        }
                        _ => return None,
                    }
                }
                other => {
                    let refs = side.refs(other);
                    if refs.other || refs.unqualified {
                        return None;
                    }
                    filters.push(other.clone());
                }
            }
        }
        Some(Conditions {
            keys,
            time,
            filters,
        })
    }
}

/// `a op b` as `b op' a`.
fn flip(op: &BinaryOperator) -> Option<BinaryOperator> {
    Some(match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        _ => return None,
    })
}

/// The column name DataFusion would give a projected column expression.
fn name_of(e: &Expr) -> String {
    match e {
        Expr::CompoundIdentifier(parts) => {
            parts.last().map(|p| p.value.clone()).unwrap_or_default()
        }
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}
