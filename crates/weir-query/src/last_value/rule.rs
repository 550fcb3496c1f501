//! The optimizer rule answering last-row aggregates and key listings from
//! the index.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue, internal_err};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, Operator, Projection, TableScan, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use crate::table::WeirTable;

use super::*;

/// Answers aggregates of the shapes in the module docs from the index.
#[derive(Debug)]
pub(crate) struct LastValueRule {
    pub indexes: Arc<LastValueIndexes>,
}

impl OptimizerRule for LastValueRule {
    fn name(&self) -> &str {
        "weir_last_value_index"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        let on = config
            .options()
            .extensions
            .get::<crate::WeirSessionOptions>()
            .is_none_or(|o| o.last_value_index);
        if !on {
            return Ok(Transformed::no(plan));
        }
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.try_rewrite(agg)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What an aggregate expression is, in terms of the index.
pub(super) enum Agg {
    /// `last(x, time)`.
    Last(Expr),
    /// `max(time)`.
    MaxTime,
}

impl LastValueRule {
    pub(super) fn try_rewrite(&self, agg: &Aggregate) -> DFResult<Option<LogicalPlan>> {
        let Some((scan, mut filters)) = scan_under(agg) else {
            return Ok(None);
        };
        if scan.fetch.is_some() {
            return Ok(None);
        }
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(None);
        };
        let Some(table) = provider.as_any().downcast_ref::<WeirTable>() else {
            return Ok(None);
        };
        if table.is_restricted()
            || table.snapshot_id() != table.iceberg_table().metadata().current_snapshot_id()
        {
            return Ok(None);
        }
        let Some(decl) = Declaration::of(table) else {
            return Ok(None);
        };
        if self.is_over_budget(table, &decl) {
            return Ok(None);
        }
        for f in scan.filters.iter() {
            filters.extend(split_conjunction(f).into_iter().cloned());
        }
        if !filters.iter().all(|f| filter_ok(f, &decl)) {
            return Ok(None);
        }
        let Some((grouped, aggs)) = answered(agg, &decl) else {
            return Ok(None);
        };
        if plain_plan_is_faster(&grouped, &aggs, &filters, &decl, table) {
            return Ok(None);
        }
        // A listing without filters needs one row per value.
        let distinct_on =
            (aggs.is_empty() && filters.is_empty() && grouped.len() < decl.keys.len())
                .then(|| group_indices(agg, table));
        let new_scan = LogicalPlan::TableScan(TableScan {
            source: provider_as_source(Arc::new(LastValueTable {
                table: table.clone(),
                decl: decl.clone(),
                indexes: self.indexes.clone(),
                distinct_on,
            })),
            ..scan.clone()
        });
        let input = replace_scan(agg.input.as_ref(), &new_scan)?;
        if grouped.len() == decl.keys.len() {
            return per_series(agg, input, &aggs, &decl).map(Some);
        }
        Ok(Some(LogicalPlan::Aggregate(
            Aggregate::try_new_with_schema(
                Arc::new(input),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
                agg.schema.clone(),
            )?,
        )))
    }

    pub(super) fn is_over_budget(&self, table: &WeirTable, decl: &Declaration) -> bool {
        self.indexes.is_over_budget(&entry_key(table, decl))
    }
}

/// The scan under `agg`, reached through filters and plain column
/// projections, with the conjuncts of those filters; `None` through
/// anything else.
fn scan_under(agg: &Aggregate) -> Option<(&TableScan, Vec<Expr>)> {
    // Down to the scan through filters and plain column projections.
    let mut filters: Vec<Expr> = Vec::new();
    let mut node = agg.input.as_ref();
    loop {
        match node {
            LogicalPlan::Filter(f) => {
                filters.extend(split_conjunction(&f.predicate).into_iter().cloned());
                node = f.input.as_ref();
            }
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                node = p.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
            LogicalPlan::TableScan(_) => break,
            _ => return None,
        }
    }
    let LogicalPlan::TableScan(scan) = node else {
        return None;
    };
    Some((scan, filters))
}

/// The key columns `agg` groups by and what each of its aggregates is;
/// `None` when it groups by anything else or has another aggregate.
fn answered(agg: &Aggregate, decl: &Declaration) -> Option<(HashSet<String>, Vec<Agg>)> {
    // Group columns: keys only.
    let mut grouped = HashSet::new();
    for g in &agg.group_expr {
        match g {
            Expr::Column(c) if decl.is_key(&c.name) => {
                grouped.insert(c.name.clone());
            }
            _ => return None,
        }
    }
    let mut aggs = Vec::new();
    for a in &agg.aggr_expr {
        aggs.push(classify(a, decl)?);
    }
    Some((grouped, aggs))
}

/// Whether the plain plan answers better than the index.
fn plain_plan_is_faster(
    grouped: &HashSet<String>,
    aggs: &[Agg],
    filters: &[Expr],
    decl: &Declaration,
    table: &WeirTable,
) -> bool {
    // A global aggregate (`max(ts)`, `last(x, ts)` with no key grouped
    // or looked up) under a time bound: the plain plan prunes files to
    // the bound and reads the few rows after it, where the index would
    // produce (and merge the hot rows into) every series' row first —
    // the freshness probe `SELECT max(ts) … WHERE ts > now() - 20 s`
    // took 240–520 ms that way during 200 k points/s of ingest, 63–74 ms
    // plainly. Without a time bound the index still saves a full scan.
    grouped.is_empty()
        && !aggs.is_empty()
        && filters
            .iter()
            .any(|f| !f.column_refs().iter().all(|c| decl.is_key(&c.name)))
        && key_lookup(filters, decl, &TableProvider::schema(table)).is_none()
}

/// The table's column indices of `agg`'s group columns.
fn group_indices(agg: &Aggregate, table: &WeirTable) -> Vec<usize> {
    let schema = TableProvider::schema(table);
    agg.group_expr
        .iter()
        .filter_map(|g| match g {
            Expr::Column(c) => schema.index_of(&c.name).ok(),
            _ => None,
        })
        .collect::<Vec<_>>()
}

/// `agg` over `input` (the index) when it groups by every key: one group
/// per series, so its index row is the answer.
fn per_series(
    agg: &Aggregate,
    input: LogicalPlan,
    aggs: &[Agg],
    decl: &Declaration,
) -> DFResult<LogicalPlan> {
    // One group per series: its index row is the answer. The time
    // column is only in the input when an aggregate reads it (a
    // listing `GROUP BY device_id, metric` projects the keys alone).
    let time = if aggs.is_empty() {
        None
    } else {
        Some(time_column(&input, decl)?)
    };
    let mut exprs = Vec::new();
    for (i, (qualifier, field)) in agg.schema.iter().enumerate() {
        let e = if i < agg.group_expr.len() {
            // A column keeps its (qualified) name.
            exprs.push(agg.group_expr[i].clone());
            continue;
        } else {
            let Some(time) = &time else {
                return internal_err!("an aggregate without the time column");
            };
            match &aggs[i - agg.group_expr.len()] {
                Agg::MaxTime => time.clone(),
                Agg::Last(x) => {
                    let null = ScalarValue::try_from(x.get_type(input.schema())?)?;
                    when(time.clone().is_null(), Expr::Literal(null, None)).otherwise(x.clone())?
                }
            }
        };
        exprs.push(e.alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(input),
    )?))
}

/// The time column as the input of the aggregate names it.
pub(super) fn time_column(input: &LogicalPlan, decl: &Declaration) -> DFResult<Expr> {
    let (qualifier, field) = input
        .schema()
        .qualified_field_with_unqualified_name(&decl.time)?;
    Ok(Expr::Column(Column::new(qualifier.cloned(), field.name())))
}

/// `plan` with its table scan replaced.
pub(super) fn replace_scan(plan: &LogicalPlan, scan: &LogicalPlan) -> DFResult<LogicalPlan> {
    if matches!(plan, LogicalPlan::TableScan(_)) {
        return Ok(scan.clone());
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .map(|i| replace_scan(i, scan))
        .collect::<DFResult<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}

pub(super) fn classify(expr: &Expr, decl: &Declaration) -> Option<Agg> {
    let inner = match expr {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(f) = inner else {
        return None;
    };
    let p = &f.params;
    if p.distinct || p.filter.is_some() || !p.order_by.is_empty() || p.null_treatment.is_some() {
        return None;
    }
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == decl.time);
    match (f.func.name(), p.args.as_slice()) {
        ("last", [x, t]) if is_time(t) && matches!(x, Expr::Column(_)) => {
            Some(Agg::Last(x.clone()))
        }
        ("max", [t]) if is_time(t) => Some(Agg::MaxTime),
        _ => None,
    }
}

/// A key column and the values a filter allows it (`k = literal`,
/// `k IN (literal, …)`, ORs of those on one column), for looking rows up
/// rather than scanning them.
pub(super) fn key_lookup(
    filters: &[Expr],
    decl: &Declaration,
    schema: &SchemaRef,
) -> Option<(usize, Vec<ScalarValue>)> {
    filters
        .iter()
        .flat_map(|f| split_conjunction(f))
        .find_map(|c| allowed_values(c, decl, schema))
}

pub(super) fn allowed_values(
    e: &Expr,
    decl: &Declaration,
    schema: &SchemaRef,
) -> Option<(usize, Vec<ScalarValue>)> {
    let key = |e: &Expr| match e {
        Expr::Column(c) if decl.is_key(&c.name) => schema.index_of(&c.name).ok(),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => match (b.left.as_ref(), b.right.as_ref()) {
            (k, Expr::Literal(v, _)) | (Expr::Literal(v, _), k) => Some((key(k)?, vec![v.clone()])),
            _ => None,
        },
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let (l, mut lv) = allowed_values(&b.left, decl, schema)?;
            let (r, rv) = allowed_values(&b.right, decl, schema)?;
            (l == r).then(|| {
                lv.extend(rv);
                (l, lv)
            })
        }
        Expr::InList(l) if !l.negated => {
            let values = l
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) => Some(v.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some((key(&l.expr)?, values))
        }
        _ => None,
    }
}

/// A filter the index answers the same: on key columns only, or a lower
/// bound on the time.
pub(super) fn filter_ok(filter: &Expr, decl: &Declaration) -> bool {
    let refs = filter.column_refs();
    if filter.is_volatile() {
        return false;
    }
    if refs.iter().all(|c| decl.is_key(&c.name)) {
        return true;
    }
    let Expr::BinaryExpr(b) = filter else {
        return false;
    };
    let is_time = |e: &Expr| {
        // A cast to another timestamp type keeps the order.
        let e = match e {
            Expr::Cast(c) if matches!(c.data_type, DataType::Timestamp(..)) => c.expr.as_ref(),
            e => e,
        };
        matches!(e, Expr::Column(c) if c.name == decl.time)
    };
    let constant = |e: &Expr| e.column_refs().is_empty();
    match b.op {
        Operator::Gt | Operator::GtEq => is_time(&b.left) && constant(&b.right),
        Operator::Lt | Operator::LtEq => constant(&b.left) && is_time(&b.right),
        _ => false,
    }
}
