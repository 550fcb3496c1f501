//! The `GapFill` logical node and the analyzer rule that plans it (after
//! IOx's `iox_query/src/analyzer/handle_gapfill.rs`, MIT/Apache-2.0).

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchemaRef, DataFusionError, Result, plan_err};
use datafusion::config::ConfigOptions;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Between, BinaryExpr, Expr, Extension, LogicalPlan, Operator, Projection, ScalarUDF,
    UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::AnalyzerRule;

use super::{Fill, FillFunction, GapFillBin, misplaced_bin, misplaced_fill};

pub(super) const RULE_NAME: &str = "handle_gapfill";

/// A time bound: the expression and whether it is included.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) struct TimeBound {
    pub expr: Expr,
    pub inclusive: bool,
}

/// Inserts the missing time buckets into its input, an aggregate's rows
/// (group columns, then aggregate columns); same schema as its input.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GapFill {
    pub input: Arc<LogicalPlan>,
    /// `date_bin_gapfill` or `time_bucket_gapfill` (for messages).
    pub name: &'static str,
    /// The bucketing function the aggregate groups by (`date_bin`, …).
    pub bin: Arc<ScalarUDF>,
    pub stride: Expr,
    /// The bin function's arguments after the time (origin, offset).
    pub extra: Vec<Expr>,
    /// The bounds on the time column (all apply: the greatest lower, the
    /// least upper bound when evaluated).
    pub lower: Vec<TimeBound>,
    pub upper: Vec<TimeBound>,
    /// Input column of the bucket.
    pub time: usize,
    /// Input columns of the other group expressions.
    pub series: Vec<usize>,
    /// Per input column from `first_aggregate` on.
    pub fills: Vec<Fill>,
    pub first_aggregate: usize,
}

impl PartialOrd for GapFill {
    /// Plans are compared for the optimizer's fixed point only; two nodes
    /// are ordered by their inputs, otherwise not at all.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.input.partial_cmp(&other.input) {
            Some(Ordering::Equal) if self != other => None,
            o => o,
        }
    }
}

impl UserDefinedLogicalNodeCore for GapFill {
    fn name(&self) -> &str {
        "GapFill"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    /// The constant arguments, so that the optimizer folds them (`now()`,
    /// casts) and parameters are bound into them.
    fn expressions(&self) -> Vec<Expr> {
        let mut out = vec![self.stride.clone()];
        out.extend(self.extra.iter().cloned());
        out.extend(self.lower.iter().map(|b| b.expr.clone()));
        out.extend(self.upper.iter().map(|b| b.expr.clone()));
        out
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.input.schema();
        let name = |i: usize| Column::from(schema.qualified_field(i)).flat_name();
        let series: Vec<String> = self.series.iter().map(|&i| name(i)).collect();
        let fills: Vec<String> = self
            .fills
            .iter()
            .enumerate()
            .map(|(k, fill)| {
                let column = name(self.first_aggregate + k);
                match fill {
                    Fill::Default(v) if v.is_null() => column,
                    Fill::Default(v) => format!("coalesce({column}, {v})"),
                    Fill::Locf | Fill::Interpolate => {
                        format!("{}({column})", fill.function_name())
                    }
                }
            })
            .collect();
        let extra: Vec<String> = self.extra.iter().map(|e| e.to_string()).collect();
        let range: Vec<String> = self
            .lower
            .iter()
            .map(|b| format!("{} {}", if b.inclusive { ">=" } else { ">" }, b.expr))
            .chain(
                self.upper
                    .iter()
                    .map(|b| format!("{} {}", if b.inclusive { "<=" } else { "<" }, b.expr)),
            )
            .collect();
        write!(
            f,
            "GapFill: series=[{}], time={}, bin={}(stride={}{}{}), range=[{}], fill=[{}]",
            series.join(", "),
            name(self.time),
            self.bin.name(),
            self.stride,
            if extra.is_empty() { "" } else { ", " },
            extra.join(", "),
            range.join(", "),
            fills.join(", ")
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let expected = 1 + self.extra.len() + self.lower.len() + self.upper.len();
        let (Ok([input]), true) = (
            <[LogicalPlan; 1]>::try_from(inputs),
            exprs.len() == expected,
        ) else {
            return Err(DataFusionError::Internal(
                "GapFill: wrong number of inputs or expressions".into(),
            ));
        };
        // The optimizer keeps names with aliases; these have none.
        let mut exprs = exprs.iter().map(|e| unalias(e).clone());
        let mut node = self.clone();
        node.input = Arc::new(input);
        node.stride = exprs.next().unwrap_or_else(|| self.stride.clone());
        for e in node.extra.iter_mut() {
            *e = exprs.next().unwrap_or_else(|| e.clone());
        }
        for b in node.lower.iter_mut().chain(node.upper.iter_mut()) {
            b.expr = exprs.next().unwrap_or_else(|| b.expr.clone());
        }
        Ok(node)
    }

    /// Every input column (the output is the input, rows added): lets the
    /// optimizer prune columns below the aggregate.
    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        Some(vec![(0..self.input.schema().fields().len()).collect()])
    }
}

/// The analyzer rule (after type coercion, before the optimizer and the
/// materialized-view rewrite).
#[derive(Debug)]
pub(super) struct HandleGapFill;

impl AnalyzerRule for HandleGapFill {
    fn name(&self) -> &str {
        RULE_NAME
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan.transform_up_with_subqueries(handle_node)?.data)
    }
}

fn handle_node(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let out = match plan {
        LogicalPlan::Aggregate(aggregate) => handle_aggregate(aggregate)?,
        LogicalPlan::Projection(projection) => handle_projection(projection)?,
        other => Transformed::no(other),
    };
    if !out.transformed {
        check_node(&out.data)?;
    }
    Ok(out)
}

fn bin_call(e: &Expr) -> Option<(&ScalarFunction, &GapFillBin)> {
    match e {
        Expr::ScalarFunction(f) => f
            .func
            .inner()
            .as_any()
            .downcast_ref::<GapFillBin>()
            .map(|b| (f, b)),
        _ => None,
    }
}

fn fill_call(e: &Expr) -> Option<(&ScalarFunction, &FillFunction)> {
    match e {
        Expr::ScalarFunction(f) => f
            .func
            .inner()
            .as_any()
            .downcast_ref::<FillFunction>()
            .map(|b| (f, b)),
        _ => None,
    }
}

/// A plan error for any gap-filling function left in `node`'s expressions.
fn check_node(node: &LogicalPlan) -> Result<()> {
    for expr in node.expressions() {
        let mut error = None;
        expr.apply(|e| {
            if let Some((_, bin)) = bin_call(e) {
                error = Some(misplaced_bin(bin.name));
            } else if let Some((_, fill)) = fill_call(e) {
                error = Some(misplaced_fill(fill.fill.function_name()));
            }
            Ok(if error.is_some() {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        if let Some(message) = error {
            return Err(DataFusionError::Plan(message));
        }
    }
    Ok(())
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        e => e,
    }
}

fn has_bin(e: &Expr) -> bool {
    e.exists(|e| Ok(bin_call(e).is_some())).unwrap_or(false)
}

/// An aggregate grouping by `date_bin_gapfill(…)`: the same aggregate
/// grouping by the bin function, under a `GapFill`.
fn handle_aggregate(aggregate: Aggregate) -> Result<Transformed<LogicalPlan>> {
    let with_bin: Vec<usize> = (0..aggregate.group_expr.len())
        .filter(|&i| has_bin(&aggregate.group_expr[i]))
        .collect();
    let time = match with_bin.as_slice() {
        [] => return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
        [i] => *i,
        _ => return plan_err!("a gap-filling query may group by only one date_bin_gapfill(…)"),
    };
    let Some((call, bin)) = bin_call(unalias(&aggregate.group_expr[time])) else {
        return plan_err!(
            "{}",
            "date_bin_gapfill(…) must be a GROUP BY expression of its own \
             (not inside another expression or a GROUPING SET)"
        );
    };
    let name = bin.name;
    let args = call.args.clone();
    let (stride, column, extra) = match args.as_slice() {
        [stride, column, extra @ ..] if extra.len() <= 1 => (stride, column, extra),
        _ => return plan_err!("{name}(interval, ts [, origin]) takes 2 or 3 arguments"),
    };
    for (what, e) in
        std::iter::once(("interval", stride)).chain(extra.iter().map(|e| ("origin", e)))
    {
        check_constant(name, what, e)?;
    }
    let Some(column) = time_column(column) else {
        return plan_err!("{name}: the time argument must be a column");
    };
    let (lower, upper) = required_bounds(name, &aggregate.input, column)?;

    let output = aggregate.schema.field(time).name().clone();
    let mut group_expr = aggregate.group_expr.clone();
    group_expr[time] = bin.inner.call(args.clone()).alias(output);
    let fills = default_fills(&aggregate)?;
    let first_aggregate = group_expr.len();
    let new = Aggregate::try_new(aggregate.input.clone(), group_expr, aggregate.aggr_expr)?;
    let names =
        |s: &DFSchemaRef| -> Vec<String> { s.fields().iter().map(|f| f.name().clone()).collect() };
    if names(&new.schema) != names(&aggregate.schema) {
        return Err(DataFusionError::Internal(format!(
            "{name}: the aggregate's columns changed"
        )));
    }
    let node = GapFill {
        input: Arc::new(LogicalPlan::Aggregate(new)),
        name,
        bin: bin.inner.clone(),
        stride: stride.clone(),
        extra: extra.to_vec(),
        lower,
        upper,
        time,
        series: (0..first_aggregate).filter(|&i| i != time).collect(),
        fills,
        first_aggregate,
    };
    Ok(Transformed::yes(LogicalPlan::Extension(Extension {
        node: Arc::new(node),
    })))
}

/// The lower and upper time bounds on `column` in the WHERE of `input`;
/// an error without both, or when one is not constant.
fn required_bounds(
    name: &str,
    input: &LogicalPlan,
    column: &Column,
) -> Result<(Vec<TimeBound>, Vec<TimeBound>)> {
    let (lower, upper) = match time_range(input, column) {
        (lower, upper) if !lower.is_empty() && !upper.is_empty() => (lower, upper),
        (lower, _) => {
            let missing = if lower.is_empty() { "lower" } else { "upper" };
            let c = &column.name;
            return plan_err!(
                "{name} requires a time range in WHERE: {c} >= … AND {c} < … (no {missing} bound on {c})"
            );
        }
    };
    for b in &lower {
        check_constant(name, "lower time bound", &b.expr)?;
    }
    for b in &upper {
        check_constant(name, "upper time bound", &b.expr)?;
    }
    Ok((lower, upper))
}

/// Each aggregate's value in a filled bucket: its value over no rows
/// (`count` 0, others NULL).
fn default_fills(aggregate: &Aggregate) -> Result<Vec<Fill>> {
    aggregate
        .aggr_expr
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let ty = aggregate
                .schema
                .field(aggregate.group_expr.len() + k)
                .data_type();
            Ok(Fill::Default(match unalias(a) {
                Expr::AggregateFunction(f) => f.func.default_value(ty)?,
                _ => datafusion::common::ScalarValue::try_from(ty)?,
            }))
        })
        .collect::<Result<Vec<_>>>()
}

fn check_constant(name: &str, what: &str, e: &Expr) -> Result<()> {
    let not_constant = e.exists(|e| {
        Ok(matches!(
            e,
            Expr::Column(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::AggregateFunction(_)
                | Expr::WindowFunction(_)
        ))
    })?;
    if not_constant {
        return plan_err!("{name}: the {what} must be a constant expression, got {e}");
    }
    Ok(())
}

/// The column under casts and aliases.
fn time_column(e: &Expr) -> Option<&Column> {
    match e {
        Expr::Column(c) => Some(c),
        Expr::Cast(c) => time_column(&c.expr),
        Expr::TryCast(c) => time_column(&c.expr),
        Expr::Alias(a) => time_column(&a.expr),
        _ => None,
    }
}

/// The bounds on `column` in the filters under an aggregate: through
/// filters, aliases and projections that pass the column on.
fn time_range(plan: &LogicalPlan, column: &Column) -> (Vec<TimeBound>, Vec<TimeBound>) {
    let mut column = column.clone();
    let mut plan = plan;
    let (mut lower, mut upper) = (Vec::new(), Vec::new());
    loop {
        match plan {
            LogicalPlan::Filter(filter) => {
                for conjunct in split_conjunction(&filter.predicate) {
                    add_bound(conjunct, &column, &mut lower, &mut upper);
                }
                plan = &filter.input;
            }
            LogicalPlan::TableScan(scan) => {
                for conjunct in scan.filters.iter().flat_map(split_conjunction) {
                    add_bound(conjunct, &column, &mut lower, &mut upper);
                }
                break;
            }
            LogicalPlan::SubqueryAlias(alias) => {
                column.relation = None;
                plan = &alias.input;
            }
            LogicalPlan::Projection(p) => {
                let Ok(i) = p.schema.index_of_column(&column) else {
                    break;
                };
                match p.expr.get(i).map(unalias) {
                    Some(Expr::Column(c)) => column = c.clone(),
                    _ => break,
                }
                plan = &p.input;
            }
            LogicalPlan::Sort(s) => plan = &s.input,
            LogicalPlan::Limit(l) => plan = &l.input,
            _ => break,
        }
    }
    (lower, upper)
}

fn is_column(e: &Expr, column: &Column) -> bool {
    match time_column(e) {
        Some(c) => {
            c.name == column.name
                && (column.relation.is_none()
                    || c.relation.is_none()
                    || c.relation == column.relation)
        }
        None => false,
    }
}

/// Adds the bound of one conjunct on `column` to `lower` / `upper`.
fn add_bound(
    conjunct: &Expr,
    column: &Column,
    lower: &mut Vec<TimeBound>,
    upper: &mut Vec<TimeBound>,
) {
    let set = |side: &mut Vec<TimeBound>, expr: &Expr, inclusive: bool| {
        let bound = TimeBound {
            expr: expr.clone(),
            inclusive,
        };
        if !side.contains(&bound) {
            side.push(bound);
        }
    };
    match conjunct {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, bound) = if is_column(left, column) {
                (*op, right.as_ref())
            } else if is_column(right, column) {
                match op.swap() {
                    Some(op) => (op, left.as_ref()),
                    None => return,
                }
            } else {
                return;
            };
            match op {
                Operator::GtEq => set(lower, bound, true),
                Operator::Gt => set(lower, bound, false),
                Operator::LtEq => set(upper, bound, true),
                Operator::Lt => set(upper, bound, false),
                _ => {}
            }
        }
        Expr::Between(Between {
            expr,
            negated: false,
            low,
            high,
        }) if is_column(expr, column) => {
            set(lower, low, true);
            set(upper, high, true);
        }
        _ => {}
    }
}

/// A projection over a `GapFill`: its `locf(x)` / `interpolate(x)` become
/// `x` with that fill strategy in the node.
fn handle_projection(projection: Projection) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Extension(Extension { node }) = projection.input.as_ref() else {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    };
    let Some(gapfill) = node.as_any().downcast_ref::<GapFill>() else {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    };
    let mut gapfill = gapfill.clone();
    let schema = gapfill.input.schema().clone();
    let mut changed = false;
    let mut exprs = Vec::with_capacity(projection.expr.len());
    for (i, expr) in projection.expr.iter().enumerate() {
        let rewritten = expr.clone().transform_down(|e| {
            let Some((call, fill)) = fill_call(&e) else {
                return Ok(Transformed::no(e));
            };
            let fname = fill.fill.function_name();
            let column = match call.args.as_slice() {
                [Expr::Column(c)] => c.clone(),
                _ => {
                    return plan_err!(
                        "{}",
                        format!("{fname} must wrap an aggregate: {fname}(avg(v)), got {e}")
                    );
                }
            };
            let index = schema.index_of_column(&column)?;
            let Some(k) = index.checked_sub(gapfill.first_aggregate) else {
                return plan_err!(
                    "{fname} must wrap an aggregate, not the group column {}",
                    column.flat_name()
                );
            };
            match gapfill.fills.get_mut(k) {
                Some(slot @ Fill::Default(_)) => *slot = fill.fill.clone(),
                Some(other) if *other == fill.fill => {}
                _ => {
                    return plan_err!(
                        "{} has two fill strategies ({fname} and another one)",
                        column.flat_name()
                    );
                }
            }
            changed = true;
            Ok(Transformed::new(
                Expr::Column(column),
                true,
                TreeNodeRecursion::Jump,
            ))
        })?;
        let new = rewritten.data;
        let (qualifier, field) = projection.schema.qualified_field(i);
        let new = if rewritten.transformed {
            unalias(&new)
                .clone()
                .alias_qualified(qualifier.cloned(), field.name())
        } else {
            new
        };
        exprs.push(new);
    }
    if !changed {
        return Ok(Transformed::no(LogicalPlan::Projection(projection)));
    }
    let input = Arc::new(LogicalPlan::Extension(Extension {
        node: Arc::new(gapfill),
    }));
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new(exprs, input)?,
    )))
}
