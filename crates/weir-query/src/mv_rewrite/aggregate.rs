//! Answering one aggregate from a rollup view: the view's whole buckets
//! unioned with the base rows it does not answer (as one-row partials),
//! re-aggregated, and the original output columns restored.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result as DFResult;
use datafusion::functions::expr_fn::{coalesce, sqrt};
use datafusion::functions_aggregate::expr_fn::{first_value, last_value, max, min, sum};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, LogicalPlanBuilder, cast, lit, when};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use super::shape::{Measure, Merge, Rollup, merge_of, unalias};
use super::{
    Candidate, Delta, TimeRange, col_unq, conform, map_dim_filter, map_group, same_snapshot,
    scan_under, weir_table, with_table,
};
use crate::mv_ranges::{range_filter, span_micros};
use crate::table::WeirTable;

/// Folds constant sub-expressions (casts of literals, intervals).
fn fold(expr: &Expr, schema: &DFSchemaRef) -> DFResult<Expr> {
    let context = SimplifyContext::default().with_schema(schema.clone());
    ExprSimplifier::new(context).simplify(expr.clone())
}

/// `aggregate` answered from `c`, or `None` when the view cannot answer it.
pub(super) fn rewrite_aggregate(
    aggregate: &Aggregate,
    c: &Candidate,
) -> DFResult<Option<LogicalPlan>> {
    let Some((scan, predicates)) = scan_under(&aggregate.input) else {
        return Ok(None);
    };
    match weir_table(scan) {
        Some(t) if same_snapshot(&t, &c.base) => {}
        _ => return Ok(None),
    }
    let input_schema = aggregate.input.schema().clone();
    let rollup = &c.rollup;
    let Some((group, dims_used)) = map_groups(aggregate, rollup, &input_schema)? else {
        return Ok(None);
    };
    let Some((view_filters, range)) = map_filters(&predicates, rollup, &input_schema)? else {
        return Ok(None);
    };
    let Some((merges, needed)) = map_aggregates(aggregate, c)? else {
        return Ok(None);
    };

    // Both sides of the union, column for column.
    let time_field = input_schema.qualified_field_with_unqualified_name(&rollup.time_column)?;
    let time_type = time_field.1.data_type().clone();
    let time_col = Expr::Column(Column::from(time_field));
    let measure_names: BTreeMap<String, String> = needed
        .keys()
        .enumerate()
        .map(|(i, v)| (v.clone(), format!("__m{i}")))
        .collect();
    let sides = Sides {
        aggregate,
        c,
        input_schema: &input_schema,
        dims_used,
        range,
        needed,
        time_type,
        time_col,
        measure_names,
    };
    let view_plan = sides.view_plan(view_filters)?;
    let union = sides.union(view_plan)?;
    sides.reaggregate(union, group, &merges).map(Some)
}

/// Group expressions over the union's columns: `__bucket` and dimensions,
/// with the dimensions they use; `None` when one is neither.
fn map_groups(
    aggregate: &Aggregate,
    rollup: &Rollup,
    input_schema: &DFSchemaRef,
) -> DFResult<Option<(Vec<Expr>, BTreeSet<String>)>> {
    let mut group = Vec::new();
    let mut dims_used = BTreeSet::new();
    for g in &aggregate.group_expr {
        let g = fold(g, input_schema)?;
        let Some(mapped) = map_group(&g, rollup, &mut dims_used) else {
            return Ok(None);
        };
        group.push(mapped);
    }
    Ok(Some((group, dims_used)))
}

/// Filters: on dimensions (as view columns) and time bounds. The view
/// answers the whole buckets inside the time range; partial buckets at
/// its edges are read from the base. `None` when a filter is neither, or
/// no whole bucket is inside the range.
fn map_filters(
    predicates: &[&Expr],
    rollup: &Rollup,
    input_schema: &DFSchemaRef,
) -> DFResult<Option<(Vec<Expr>, TimeRange)>> {
    let mut view_filters = Vec::new();
    let mut range = TimeRange::default();
    for p in predicates {
        let p = fold(p, input_schema)?;
        if let Some(mapped) = map_dim_filter(&p, rollup) {
            view_filters.push(mapped);
        } else if !range.add(&p, rollup) {
            return Ok(None);
        }
    }
    if let (Some(lo), Some(hi)) = (range.lo, range.hi)
        && lo >= hi
    {
        return Ok(None); // no whole bucket inside the range
    }
    Ok(Some((view_filters, range)))
}

/// Each aggregate with how it merges and the view columns it reads, and
/// the measure the view stores in each of those columns.
type MappedAggregates = (Vec<(Merge, Vec<String>)>, BTreeMap<String, Measure>);

/// Aggregates: how each merges, and the view columns it needs (see
/// [`MappedAggregates`]); `None` when one does not merge from the view's
/// partials.
fn map_aggregates(aggregate: &Aggregate, c: &Candidate) -> DFResult<Option<MappedAggregates>> {
    let rollup = &c.rollup;
    let base_schema = c.base.schema();
    let non_null = |column: &str| {
        base_schema
            .field_with_name(column)
            .is_ok_and(|f| !f.is_nullable())
    };
    let mut merges = Vec::new();
    let mut needed: BTreeMap<String, Measure> = BTreeMap::new();
    for a in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = unalias(a) else {
            return Ok(None);
        };
        let Some(merge) = merge_of(f, &rollup.time_column) else {
            return Ok(None);
        };
        let mut columns = Vec::new();
        for m in merge.measures() {
            let Some(view_col) = rollup.column_of(m, &non_null) else {
                return Ok(None);
            };
            // The measure the view stores in that column (count(*) may
            // stand for count(col) of a column that cannot be null).
            let stored = rollup
                .measures
                .iter()
                .find(|(_, v)| v.as_str() == view_col)
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| m.clone());
            needed.insert(view_col.to_string(), stored);
            columns.push(view_col.to_string());
        }
        merges.push((merge, columns));
    }
    Ok(Some((merges, needed)))
}

/// What both sides of the union share: the aggregate answered, the view
/// answering it, and the union's columns (`__bucket`, the dimensions used,
/// the measures as `__m<i>`).
struct Sides<'a> {
    aggregate: &'a Aggregate,
    c: &'a Candidate,
    input_schema: &'a DFSchemaRef,
    dims_used: BTreeSet<String>,
    range: TimeRange,
    /// View column → the measure it stores.
    needed: BTreeMap<String, Measure>,
    /// Type of the base's time column.
    time_type: DataType,
    /// The base's time column over the aggregate's input.
    time_col: Expr,
    /// View column → its name in the union (`__m<i>`).
    measure_names: BTreeMap<String, String>,
}

impl Sides<'_> {
    /// The view's side: its rows matching `view_filters`, in whole buckets
    /// inside the time range and outside the days read from the base.
    fn view_plan(&self, view_filters: Vec<Expr>) -> DFResult<LogicalPlan> {
        let c = self.c;
        let rollup = &c.rollup;
        let view_schema = c.provider.schema();
        let view_field = |name: &str| view_schema.field_with_name(name).cloned();
        let view_df_schema = DFSchema::try_from_qualified_schema(c.view.clone(), &view_schema)?;
        let mut view_cols = vec![
            conform(col_unq(&rollup.bucket), &view_df_schema, &self.time_type)?.alias("__bucket"),
        ];
        for d in &self.dims_used {
            let ty = self
                .input_schema
                .qualified_field_with_unqualified_name(d)?
                .1
                .data_type()
                .clone();
            view_cols.push(conform(col_unq(&rollup.dims[d]), &view_df_schema, &ty)?.alias(d));
        }
        for (view_col, name) in &self.measure_names {
            view_cols.push(col_unq(view_col).alias(name));
        }
        let mut view_plan =
            LogicalPlanBuilder::scan(c.view.clone(), provider_as_source(c.provider.clone()), None)?;
        let mut view_predicate = view_filters;
        view_predicate.extend(
            self.range
                .inner(&col_unq(&rollup.bucket), &self.time_type)?,
        );
        if let Delta::Ranges(ranges) = &c.delta
            && let Some(in_ranges) = range_filter(
                col_unq(&rollup.bucket),
                view_field(&rollup.bucket)?.data_type(),
                ranges,
            )
        {
            view_predicate.push(Expr::Not(Box::new(in_ranges)));
        }
        if let Some(p) = datafusion::logical_expr::utils::conjunction(view_predicate) {
            view_plan = view_plan.filter(p)?;
        }
        view_plan.project(view_cols)?.build()
    }

    /// Base rows as one-row partials, bucketed like the view: the union's
    /// columns over the aggregate's input.
    fn base_columns(&self) -> DFResult<Vec<Expr>> {
        let rollup = &self.c.rollup;
        let time = rollup.time_column.as_str();
        let input_schema = self.input_schema;
        let bucket_expr = rollup
            .bucket_expr
            .clone()
            .transform(|e| match e {
                Expr::Column(c) if c.name == time => Ok(Transformed::yes(self.time_col.clone())),
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let mut base_cols =
            vec![conform(bucket_expr, input_schema, &self.time_type)?.alias("__bucket")];
        for d in &self.dims_used {
            base_cols.push(
                Expr::Column(Column::from(
                    input_schema.qualified_field_with_unqualified_name(d)?,
                ))
                .alias(d),
            );
        }
        let view_schema = self.c.provider.schema();
        for (view_col, name) in &self.measure_names {
            let ty = view_schema.field_with_name(view_col)?.data_type().clone();
            let e = partial_of(&self.needed[view_col], input_schema)?;
            base_cols.push(conform(e, input_schema, &ty)?.alias(name));
        }
        Ok(base_cols)
    }

    /// The view's side unioned with each base branch (as partials), under
    /// the alias `mv_rewrite <view>`.
    fn union(&self, view_plan: LogicalPlan) -> DFResult<LogicalPlan> {
        let base_cols = self.base_columns()?;
        let base_branches = base_branches(
            self.aggregate,
            self.c,
            &self.range,
            &self.time_col,
            &self.time_type,
        )?;
        let mut union = LogicalPlanBuilder::from(view_plan);
        for branch in base_branches {
            let branch = LogicalPlanBuilder::from(branch)
                .project(base_cols.clone())?
                .build()?;
            union = union.union(branch)?;
        }
        union
            .alias(TableReference::bare(format!("mv_rewrite {}", self.c.view)))?
            .build()
    }

    /// Re-aggregate the partials by `group`, then restore the original
    /// output columns.
    fn reaggregate(
        &self,
        union: LogicalPlan,
        group: Vec<Expr>,
        merges: &[(Merge, Vec<String>)],
    ) -> DFResult<LogicalPlan> {
        let aggregate = self.aggregate;
        let mut aggs = Vec::new();
        let mut finals = Vec::new();
        for (merge, columns) in merges {
            let partial = |i: usize| col_unq(&self.measure_names[&columns[i]]);
            finals.push(merged(merge, &partial, &mut aggs)?);
        }
        let merged = LogicalPlanBuilder::from(union)
            .aggregate(group, aggs)?
            .build()?;
        let merged_schema = merged.schema().clone();
        let original = aggregate.schema.clone();
        let mut outputs = Vec::new();
        for i in 0..aggregate.group_expr.len() {
            outputs.push(Expr::Column(Column::from(merged_schema.qualified_field(i))));
        }
        outputs.extend(finals);
        let projection = outputs
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let (qualifier, field) = original.qualified_field(i);
                Ok(conform(e, &merged_schema, field.data_type())?
                    .alias_qualified(qualifier.cloned(), field.name()))
            })
            .collect::<DFResult<Vec<_>>>()?;
        LogicalPlanBuilder::from(merged)
            .project(projection)?
            .build()
    }
}

/// The base rows the view does not answer, as plans over the aggregate's
/// input: the partial buckets at the edges of the time range, the rows
/// committed since the view's snapshot, the hot tier.
fn base_branches(
    aggregate: &Aggregate,
    c: &Candidate,
    range: &TimeRange,
    time_col: &Expr,
    time_type: &DataType,
) -> DFResult<Vec<LogicalPlan>> {
    let label_since = format!("rows not yet in {}", c.view);
    let inner = range.inner(time_col, time_type)?;
    let restrict = |plan: LogicalPlan, filters: Vec<Option<Expr>>| -> DFResult<LogicalPlan> {
        let mut builder = LogicalPlanBuilder::from(plan);
        if let Some(f) = datafusion::logical_expr::utils::conjunction(filters.into_iter().flatten())
        {
            builder = builder.filter(f)?;
        }
        builder.build()
    };
    let mut base_branches = Vec::new();
    if range.edges {
        let all = c
            .base
            .restricted(None, false, "edges of the time range".into());
        base_branches.push(restrict(
            with_table(&aggregate.input, all)?,
            vec![range.outer(time_col, time_type)?],
        )?);
    }
    match &c.delta {
        Delta::Files(segments) => {
            for segment in segments.iter().filter(|s| !s.files.is_empty()) {
                let label = format!("{label_since}: appended files");
                let appended = if Some(segment.snapshot) == c.base.snapshot_id() {
                    c.base.restricted(Some(segment.files.clone()), false, label)
                } else {
                    // Replaced by a compaction since: read where they were live.
                    WeirTable::pinned_in_current_schema(
                        c.base.lakehouse().clone(),
                        c.base.table().clone(),
                        Some(segment.snapshot),
                    )?
                    .restricted(
                        Some(segment.files.clone()),
                        false,
                        format!("{label} (compacted since)"),
                    )
                };
                base_branches.push(restrict(
                    with_table(&aggregate.input, appended)?,
                    vec![inner.clone()],
                )?);
            }
        }
        Delta::Ranges(ranges) if ranges.is_empty() => {}
        Delta::Ranges(ranges) => {
            let minutes = span_micros(ranges) / 60_000_000;
            let label = format!("{label_since}: {minutes} min of buckets with rewritten files");
            let committed = c.base.restricted(None, false, label);
            base_branches.push(restrict(
                with_table(&aggregate.input, committed)?,
                vec![
                    range_filter(time_col.clone(), time_type, ranges),
                    inner.clone(),
                ],
            )?);
        }
    }
    if c.base.has_hot() {
        let hot = c
            .base
            .restricted(Some(Arc::new(HashSet::new())), true, "hot tier".into());
        base_branches.push(with_table(&aggregate.input, hot)?);
    }
    Ok(base_branches)
}

/// One base row as a partial of `measure`, as the view stores it.
fn partial_of(measure: &Measure, input_schema: &DFSchema) -> DFResult<Expr> {
    let value = |column: &str| -> DFResult<Expr> {
        Ok(Expr::Column(Column::from(
            input_schema.qualified_field_with_unqualified_name(column)?,
        )))
    };
    Ok(match measure {
        Measure::Rows => lit(1i64),
        Measure::Count(x) => when(value(x)?.is_null(), lit(0i64)).otherwise(lit(1i64))?,
        Measure::SumSq(x) => value(x)? * value(x)?,
        Measure::Min(x)
        | Measure::Max(x)
        | Measure::Sum(x)
        | Measure::First(x)
        | Measure::Last(x) => value(x)?,
    })
}

/// The original aggregate's value from the partials (`partial(i)`: its
/// i-th measure column): the aggregates it needs are pushed onto `aggs`
/// (named `__aN`), the expression over them is returned.
fn merged(merge: &Merge, partial: &dyn Fn(usize) -> Expr, aggs: &mut Vec<Expr>) -> DFResult<Expr> {
    let m = partial;
    let mut agg = |e: Expr| {
        let name = format!("__a{}", aggs.len());
        aggs.push(e.alias(&name));
        col_unq(&name)
    };
    let f64 = |e: Expr| cast(e, DataType::Float64);
    Ok(match merge {
        Merge::Count(_) => coalesce(vec![agg(sum(m(0))), lit(0i64)]),
        Merge::Min(_) => agg(min(m(0))),
        Merge::Max(_) => agg(max(m(0))),
        Merge::Sum(_) => agg(sum(m(0))),
        Merge::Avg { .. } => {
            let s = agg(sum(m(0)));
            let n = agg(sum(m(1)));
            f64(s) / f64(n)
        }
        Merge::Variance {
            sample, sqrt: root, ..
        } => {
            let s = f64(agg(sum(m(0))));
            let q = f64(agg(sum(m(1))));
            let n = f64(agg(sum(m(2))));
            let divisor = if *sample {
                n.clone() - lit(1.0)
            } else {
                n.clone()
            };
            let spread = q - s.clone() * s / n.clone();
            // Rounding can make a zero spread slightly negative.
            let spread = when(spread.clone().lt(lit(0.0)), lit(0.0)).otherwise(spread)?;
            let var = when(divisor.clone().gt(lit(0.0)), spread / divisor)
                .otherwise(lit(ScalarValue::Float64(None)))?;
            if *root { sqrt(var) } else { var }
        }
        Merge::First { .. } => agg(first_value(m(0), vec![m(1).sort(true, false)])),
        Merge::Last { .. } => agg(last_value(m(0), vec![m(1).sort(true, false)])),
    })
}
