//! Automatic query rewrite onto materialized views (issue 6, item 3).
//!
//! An aggregate over a base table that a rollup view can answer (same or
//! coarser time buckets, filters on the view's group columns and on
//! bucket-aligned time ranges, aggregates that merge from the view's
//! partials: count, min, max, sum, avg, variance/stddev, first/last) is
//! answered from
//!
//! ```text
//!   view rows                               (partials as of base snapshot S)
//!   ∪ base rows the view does not hold yet  (as one-row partials)
//! ```
//!
//! re-aggregated, so the answer is exact and as fresh as the base. "Not
//! held yet" is, when only appends happened since S, the files those appends
//! added plus the hot tier; when a compaction rewrote files since S (rows of
//! old and new files mixed), whole days: the days the appends touched are
//! read from the base, the others from the view. Deletes or overwrites since
//! S (retention), or S no longer in the base's history: no rewrite until the
//! next refresh.
//!
//! The rewrite runs on the analyzed plan before DataFusion's optimizer, so
//! filter pushdown and pruning apply to the view scan as to any table.
//! `EXPLAIN` shows `SubqueryAlias: mv_rewrite <view>`; `SET weir.mv_rewrite
//! = false` (or `--mv-rewrite false` for the server) turns it off.

mod shape;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DFResult;
use datafusion::functions::expr_fn::{coalesce, sqrt};
use datafusion::functions_aggregate::expr_fn::{first_value, last_value, max, min, sum};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, Operator,
    TableScan, cast, lit, when,
};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::prelude::SessionContext;
use iceberg::spec::{PrimitiveType, Type};
use weir_catalog::CATALOG_NAME;

use crate::error::Result;
use crate::mv_incremental::{
    added_data_files, changed_data_files, changes_since, day_filter, days_of,
};
use crate::table::WeirTable;
use shape::{Measure, Merge, Rollup, bucket_of, column_name, merge_of, timestamp_nanos, unalias};

/// The rows a view does not hold yet, relative to one base snapshot.
#[derive(Debug, Clone)]
enum Delta {
    /// Only appends since the view's base snapshot: the files they added.
    Files(Arc<HashSet<String>>),
    /// Files were rewritten since: these whole (UTC) days come from the base.
    Days(BTreeSet<i32>),
}

/// A view that may answer aggregates over one base snapshot.
struct Candidate {
    view: TableReference,
    provider: Arc<dyn TableProvider>,
    base: WeirTable,
    rollup: Rollup,
    delta: Delta,
    /// Rows the view holds (its snapshot summary's `total-records`).
    rows: u64,
}

/// Rewrites the aggregates of `plan` that a materialized view answers;
/// returns `plan` unchanged when none does.
pub(crate) async fn rewrite(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    if let LogicalPlan::Explain(explain) = &plan {
        let inner = Box::pin(rewrite(ctx, explain.plan.as_ref().clone())).await?;
        let mut explain = explain.clone();
        explain.plan = Arc::new(inner);
        return Ok(LogicalPlan::Explain(explain));
    }
    let bases = aggregated_tables(&plan)?;
    if bases.is_empty() {
        return Ok(plan);
    }
    let candidates = candidates(ctx, &bases).await?;
    if candidates.is_empty() {
        return Ok(plan);
    }
    let state = ctx.state();
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})?;
    let mut options: Vec<&Candidate> = candidates.iter().collect();
    // The view that answers with the fewest rows is the cheapest source
    // (e.g. a fleet-wide minute rollup before the per-device one); the
    // coarser grain among equals.
    options.sort_by_key(|c| (c.rows, std::cmp::Reverse(c.rollup.grain)));
    Ok(rewrite_aggregates(analyzed, &options)?.unwrap_or(plan))
}

/// `plan` with each aggregate the first of `candidates` that can answers
/// rewritten onto it; `None` when none was.
fn rewrite_aggregates(
    plan: LogicalPlan,
    candidates: &[&Candidate],
) -> DFResult<Option<LogicalPlan>> {
    let mut changed = false;
    let out = plan.transform_up(|node| {
        if let LogicalPlan::Aggregate(aggregate) = &node {
            for candidate in candidates {
                if let Some(new) = rewrite_aggregate(aggregate, candidate)? {
                    changed = true;
                    return Ok(Transformed::yes(new));
                }
            }
        }
        Ok(Transformed::no(node))
    })?;
    if !changed {
        return Ok(None);
    }
    // Parents keep their schemas; recompute them over the new inputs.
    Ok(Some(
        out.data
            .transform_up(|node| node.recompute_schema().map(Transformed::yes))?
            .data,
    ))
}

/// An incremental refresh by merging: `restricted` (the view's query over
/// the pinned base, limited to the days to refresh) answered from the view's
/// own stored partials of those days plus the files appended to the base
/// since `since` — the rewrite with the view as its own candidate. `None`
/// when the view's aggregates do not merge, or files were rewritten since
/// (rows moved between files: re-read the days instead).
pub(crate) async fn merge_plan(
    ctx: &SessionContext,
    full: &LogicalPlan,
    restricted: &LogicalPlan,
    view: TableReference,
    provider: Arc<WeirTable>,
    base: WeirTable,
    since: i64,
) -> Result<Option<LogicalPlan>> {
    let state = ctx.state();
    let analyze = |plan: &LogicalPlan| {
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
    };
    let Some(rollup) = Rollup::of_plan(&analyze(full)?) else {
        return Ok(None);
    };
    let Some(delta @ Delta::Files(_)) = delta(&base, since, &rollup.time_column).await? else {
        return Ok(None);
    };
    let candidate = Candidate {
        view,
        provider,
        base,
        rollup,
        delta,
        rows: 0,
    };
    Ok(rewrite_aggregates(analyze(restricted)?, &[&candidate])?)
}

/// The Weir tables read directly by an aggregate (through filters and
/// aliases), at the snapshot the query reads.
fn aggregated_tables(plan: &LogicalPlan) -> DFResult<Vec<WeirTable>> {
    let mut out: Vec<WeirTable> = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Aggregate(a) = node
            && a.aggr_expr.iter().all(might_merge)
            && let Some((scan, _)) = scan_under(&a.input)
            && let Some(table) = weir_table(scan)
            && !out.iter().any(|t| same_snapshot(t, &table))
        {
            out.push(table);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(out)
}

/// A cheap first look (no view is loaded for aggregates that fail it): an
/// aggregate call partials may answer (see `shape::merge_of`).
fn might_merge(expr: &Expr) -> bool {
    let Expr::AggregateFunction(f) = unalias(expr) else {
        return false;
    };
    let p = &f.params;
    !p.distinct
        && p.filter.is_none()
        && matches!(
            f.func.name(),
            "count"
                | "min"
                | "max"
                | "sum"
                | "avg"
                | "mean"
                | "var"
                | "var_samp"
                | "var_sample"
                | "var_pop"
                | "stddev"
                | "stddev_samp"
                | "stddev_pop"
                | "first_value"
                | "last_value"
        )
}

/// The rollup shape and base table of a view's query, by query text (a pure
/// function of it: planning and analysing it on every query cost
/// milliseconds).
fn cached_shape(definition: &str) -> Option<Shape> {
    SHAPES.lock().ok()?.get(definition).cloned()
}

/// A view's rollup shape and the base table it reads (`None`: no rollup).
type Shape = Option<(Rollup, String)>;

static SHAPES: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Shape>>> =
    std::sync::LazyLock::new(Default::default);

async fn shape_of(ctx: &SessionContext, definition: &str) -> Result<Shape> {
    if let Some(shape) = cached_shape(definition) {
        return Ok(shape);
    }
    let state = ctx.state();
    let Ok(plan) = state.create_logical_plan(definition).await else {
        return Ok(None); // a view whose query no longer plans answers nothing (not cached)
    };
    let plan = state
        .analyzer()
        .execute_and_check(plan, state.config_options(), |_, _| {})?;
    let shape = Rollup::of_plan(&plan).zip(single_scan(&plan));
    if let Ok(mut shapes) = SHAPES.lock() {
        shapes.insert(definition.to_string(), shape.clone());
    }
    Ok(shape)
}

fn same_snapshot(a: &WeirTable, b: &WeirTable) -> bool {
    a.table().identifier() == b.table().identifier() && a.snapshot_id() == b.snapshot_id()
}

/// The table scan under filters and aliases, with the filters' predicates.
fn scan_under(plan: &LogicalPlan) -> Option<(&TableScan, Vec<&Expr>)> {
    let mut predicates = Vec::new();
    let mut at = plan;
    loop {
        match at {
            LogicalPlan::Filter(f) => {
                predicates.extend(split_conjunction(&f.predicate));
                at = &f.input;
            }
            LogicalPlan::SubqueryAlias(a) => at = &a.input,
            LogicalPlan::TableScan(scan)
                if scan.filters.is_empty() && scan.fetch.is_none() && scan.projection.is_none() =>
            {
                return Some((scan, predicates));
            }
            _ => return None,
        }
    }
}

/// The scan's table when it is a Weir table read at its current snapshot.
fn weir_table(scan: &TableScan) -> Option<WeirTable> {
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.as_any().downcast_ref::<WeirTable>()?;
    let current = table.table().metadata().current_snapshot_id();
    (table.snapshot_id().is_some() && table.snapshot_id() == current).then(|| table.clone())
}

/// The views over `bases` with a rollup shape, and what each lacks.
async fn candidates(ctx: &SessionContext, bases: &[WeirTable]) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    let Some(catalog) = ctx.catalog(CATALOG_NAME) else {
        return Ok(out);
    };
    let weir = catalog
        .as_any()
        .downcast_ref::<crate::catalog::WeirCatalogProvider>();
    for namespace in catalog.schema_names() {
        let Some(schema) = catalog.schema(&namespace) else {
            continue;
        };
        for name in schema.table_names() {
            if weir.is_some_and(|w| w.known_plain_table(&namespace, &name)) {
                continue;
            }
            // A table that cannot be read is no usable view; it must not
            // fail queries on other tables.
            let provider = match schema.table(&name).await {
                Ok(Some(provider)) => provider,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(schema = %namespace, table = %name, error = %e, "cannot load table; not considered as a view");
                    continue;
                }
            };
            let Some(view) = provider.as_any().downcast_ref::<WeirTable>() else {
                continue;
            };
            let metadata = view.table().metadata();
            let Some(definition) = metadata.properties().get(crate::mv::DEFINITION) else {
                continue;
            };
            let summary = match metadata.current_snapshot() {
                Some(s) => s.summary().additional_properties.clone(),
                None => continue, // never refreshed
            };
            let rows = summary
                .get("total-records")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            let Some((rollup, base_ident)) = shape_of(ctx, definition).await? else {
                continue;
            };
            for base in bases
                .iter()
                .filter(|b| b.table().identifier().to_string() == base_ident)
            {
                let Some(since) = summary
                    .get(&format!("weir.mv.base-snapshot.{base_ident}"))
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    continue;
                };
                let Some(delta) = delta(base, since, &rollup.time_column).await? else {
                    continue;
                };
                out.push(Candidate {
                    view: TableReference::partial(namespace.as_str(), name.as_str()),
                    provider: provider.clone(),
                    base: base.clone(),
                    rollup: rollup.clone(),
                    delta,
                    rows,
                });
            }
        }
    }
    Ok(out)
}

/// The identifier of the one Weir table a view's plan reads.
fn single_scan(plan: &LogicalPlan) -> Option<String> {
    let mut found = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found.push(source_as_provider(&scan.source).ok().and_then(|p| {
                p.as_any()
                    .downcast_ref::<WeirTable>()
                    .map(|t| t.table().identifier().to_string())
            }));
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    match found.as_slice() {
        [Some(ident)] => Some(ident.clone()),
        _ => None,
    }
}

/// What the view (at base snapshot `since`) lacks of `base`'s snapshot.
async fn delta(base: &WeirTable, since: i64, time_column: &str) -> Result<Option<Delta>> {
    let Some(until) = base.snapshot_id() else {
        return Ok(None);
    };
    let table = base.table();
    let Some(changes) = changes_since(table, since, until) else {
        return Ok(None);
    };
    if !changes.files_rewritten {
        let files = added_data_files(table, &changes.appends).await?;
        let paths = files.iter().map(|f| f.file_path().to_string()).collect();
        return Ok(Some(Delta::Files(Arc::new(paths))));
    }
    let Some(files) = changed_data_files(table, &changes).await? else {
        return Ok(None);
    };
    let Some(field) = table.metadata().current_schema().field_by_name(time_column) else {
        return Ok(None);
    };
    let nanos = match field.field_type.as_ref() {
        Type::Primitive(PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => false,
        Type::Primitive(PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs) => true,
        _ => return Ok(None),
    };
    Ok(days_of(&files, field.id, nanos).map(Delta::Days))
}

/// Folds constant sub-expressions (casts of literals, intervals).
fn fold(expr: &Expr, schema: &DFSchemaRef) -> DFResult<Expr> {
    let context = SimplifyContext::default().with_schema(schema.clone());
    ExprSimplifier::new(context).simplify(expr.clone())
}

/// `aggregate` answered from `c`, or `None` when the view cannot answer it.
fn rewrite_aggregate(aggregate: &Aggregate, c: &Candidate) -> DFResult<Option<LogicalPlan>> {
    let Some((scan, predicates)) = scan_under(&aggregate.input) else {
        return Ok(None);
    };
    match weir_table(scan) {
        Some(t) if same_snapshot(&t, &c.base) => {}
        _ => return Ok(None),
    }
    let input_schema = aggregate.input.schema().clone();
    let rollup = &c.rollup;
    let time = rollup.time_column.as_str();
    let view_schema = c.provider.schema();

    // Group expressions over the union's columns: `__bucket` and dimensions.
    let mut group = Vec::new();
    let mut dims_used = BTreeSet::new();
    for g in &aggregate.group_expr {
        let g = fold(g, &input_schema)?;
        let Some(mapped) = map_group(&g, rollup, &mut dims_used) else {
            return Ok(None);
        };
        group.push(mapped);
    }

    // Filters: on dimensions (as view columns) and time bounds. The view
    // answers the whole buckets inside the time range; partial buckets at
    // its edges are read from the base.
    let mut view_filters = Vec::new();
    let mut range = TimeRange::default();
    for p in &predicates {
        let p = fold(p, &input_schema)?;
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

    // Aggregates: how each merges, and the view columns it needs.
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
        let Some(merge) = merge_of(f, time) else {
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

    // Both sides of the union, column for column.
    let time_field = input_schema.qualified_field_with_unqualified_name(time)?;
    let time_type = time_field.1.data_type().clone();
    let view_field = |name: &str| view_schema.field_with_name(name).cloned();
    let measure_names: BTreeMap<String, String> = needed
        .keys()
        .enumerate()
        .map(|(i, v)| (v.clone(), format!("__m{i}")))
        .collect();

    let view_df_schema = DFSchema::try_from_qualified_schema(c.view.clone(), &view_schema)?;
    let mut view_cols =
        vec![conform(col_unq(&rollup.bucket), &view_df_schema, &time_type)?.alias("__bucket")];
    for d in &dims_used {
        let ty = input_schema
            .qualified_field_with_unqualified_name(d)?
            .1
            .data_type()
            .clone();
        view_cols.push(conform(col_unq(&rollup.dims[d]), &view_df_schema, &ty)?.alias(d));
    }
    for (view_col, name) in &measure_names {
        view_cols.push(col_unq(view_col).alias(name));
    }
    let mut view_plan =
        LogicalPlanBuilder::scan(c.view.clone(), provider_as_source(c.provider.clone()), None)?;
    let mut view_predicate = view_filters;
    view_predicate.extend(range.inner(&col_unq(&rollup.bucket), &time_type)?);
    if let Delta::Days(days) = &c.delta
        && let Some(in_days) = day_filter(
            col_unq(&rollup.bucket),
            view_field(&rollup.bucket)?.data_type(),
            days,
        )
    {
        view_predicate.push(Expr::Not(Box::new(in_days)));
    }
    if let Some(p) = datafusion::logical_expr::utils::conjunction(view_predicate) {
        view_plan = view_plan.filter(p)?;
    }
    let view_plan = view_plan.project(view_cols)?.build()?;

    // Base rows as one-row partials, bucketed like the view.
    let time_col = Expr::Column(Column::from(time_field));
    let bucket_expr = rollup
        .bucket_expr
        .clone()
        .transform(|e| match e {
            Expr::Column(c) if c.name == time => Ok(Transformed::yes(time_col.clone())),
            other => Ok(Transformed::no(other)),
        })?
        .data;
    let mut base_cols = vec![conform(bucket_expr, &input_schema, &time_type)?.alias("__bucket")];
    for d in &dims_used {
        base_cols.push(
            Expr::Column(Column::from(
                input_schema.qualified_field_with_unqualified_name(d)?,
            ))
            .alias(d),
        );
    }
    for (view_col, name) in &measure_names {
        let ty = view_field(view_col)?.data_type().clone();
        let e = partial_of(&needed[view_col], &input_schema)?;
        base_cols.push(conform(e, &input_schema, &ty)?.alias(name));
    }
    let base_branches = base_branches(aggregate, c, &range, &time_col, &time_type)?;
    let mut union = LogicalPlanBuilder::from(view_plan);
    for branch in base_branches {
        let branch = LogicalPlanBuilder::from(branch)
            .project(base_cols.clone())?
            .build()?;
        union = union.union(branch)?;
    }
    let union = union
        .alias(TableReference::bare(format!("mv_rewrite {}", c.view)))?
        .build()?;

    // Re-aggregate the partials, then restore the original output columns.
    let mut aggs = Vec::new();
    let mut finals = Vec::new();
    for (merge, columns) in &merges {
        let partial = |i: usize| col_unq(&measure_names[&columns[i]]);
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
    Ok(Some(
        LogicalPlanBuilder::from(merged)
            .project(projection)?
            .build()?,
    ))
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
        Delta::Files(files) if files.is_empty() => {}
        Delta::Files(files) => {
            let appended = c.base.restricted(
                Some(files.clone()),
                false,
                format!("{label_since}: appended files"),
            );
            base_branches.push(restrict(
                with_table(&aggregate.input, appended)?,
                vec![inner.clone()],
            )?);
        }
        Delta::Days(days) if days.is_empty() => {}
        Delta::Days(days) => {
            let label = format!("{label_since}: {} day(s) with rewritten files", days.len());
            let committed = c.base.restricted(None, false, label);
            base_branches.push(restrict(
                with_table(&aggregate.input, committed)?,
                vec![day_filter(time_col.clone(), time_type, days), inner.clone()],
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

/// `expr` as `to` (a cast only when its type differs).
fn conform(expr: Expr, schema: &DFSchema, to: &DataType) -> DFResult<Expr> {
    Ok(if &expr.get_type(schema)? == to {
        expr
    } else {
        cast(expr, to.clone())
    })
}

fn col_unq(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// `input` (filters and aliases over a scan) reading `table` instead.
fn with_table(input: &LogicalPlan, table: WeirTable) -> DFResult<LogicalPlan> {
    let source = provider_as_source(Arc::new(table));
    Ok(input
        .clone()
        .transform_up(|node| match node {
            LogicalPlan::TableScan(mut scan) => {
                scan.source = source.clone();
                Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// A query group expression over the union's columns (`__bucket` for the
/// time column inside a coarser bucket, dimension names as they are).
fn map_group(g: &Expr, rollup: &Rollup, dims_used: &mut BTreeSet<String>) -> Option<Expr> {
    let time = rollup.time_column.as_str();
    if let Some(bucket) = bucket_of(g)
        && !rollup.answers_bucket(&bucket)
    {
        return None;
    }
    let in_bucket = bucket_of(g).is_some();
    let mut ok = true;
    let mapped = g
        .clone()
        .transform(|e| match e {
            Expr::Column(c) if c.name == time && in_bucket => {
                Ok(Transformed::yes(col_unq("__bucket")))
            }
            Expr::Column(c) if rollup.dims.contains_key(&c.name) => {
                dims_used.insert(c.name.clone());
                Ok(Transformed::yes(col_unq(&c.name)))
            }
            Expr::Column(c) => {
                ok = false;
                Ok(Transformed::no(Expr::Column(c)))
            }
            other => Ok(Transformed::no(other)),
        })
        .ok()?
        .data;
    ok.then_some(mapped)
}

/// A filter conjunct on dimensions only, over the view's columns.
fn map_dim_filter(p: &Expr, rollup: &Rollup) -> Option<Expr> {
    if !p
        .column_refs()
        .iter()
        .all(|c| rollup.dims.contains_key(&c.name))
    {
        return None;
    }
    p.clone()
        .transform(|e| match e {
            Expr::Column(c) => Ok(Transformed::yes(col_unq(&rollup.dims[&c.name]))),
            other => Ok(Transformed::no(other)),
        })
        .ok()
        .map(|t| t.data)
}

/// The whole buckets inside a query's time bounds: `[lo, hi)` in ns, on
/// bucket boundaries (`None`: unbounded), and whether rows outside it (in
/// partial buckets at the edges) still match the query.
#[derive(Debug, Default)]
struct TimeRange {
    lo: Option<i128>,
    hi: Option<i128>,
    edges: bool,
}

impl TimeRange {
    /// Narrows the range by a bound on the time column (`false`: `p` is
    /// not one).
    fn add(&mut self, p: &Expr, rollup: &Rollup) -> bool {
        let time = rollup.time_column.as_str();
        let g = rollup.grain;
        let floor = |v: i128| v.div_euclid(g) * g;
        let ceil = |v: i128| floor(v + g - 1);
        let value = |e: &Expr| match unalias(e) {
            Expr::Literal(v, _) => timestamp_nanos(v),
            _ => None,
        };
        let (lo, hi, exact) = match p {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (op, v) = match (column_name(left), column_name(right)) {
                    (Some(c), None) if c == time => (*op, value(right)),
                    (None, Some(c)) if c == time => match op.swap() {
                        Some(op) => (op, value(left)),
                        None => return false,
                    },
                    _ => return false,
                };
                let Some(v) = v else { return false };
                match op {
                    Operator::GtEq => (Some(ceil(v)), None, v % g == 0),
                    Operator::Gt => (Some(floor(v) + g), None, false),
                    Operator::Lt => (None, Some(floor(v)), v % g == 0),
                    Operator::LtEq => (None, Some(floor(v)), false),
                    _ => return false,
                }
            }
            Expr::Between(b) if !b.negated && column_name(&b.expr) == Some(time) => {
                let (Some(lo), Some(hi)) = (value(&b.low), value(&b.high)) else {
                    return false;
                };
                (Some(ceil(lo)), Some(floor(hi)), false)
            }
            _ => return false,
        };
        if let Some(lo) = lo {
            self.lo = Some(self.lo.map_or(lo, |x| x.max(lo)));
        }
        if let Some(hi) = hi {
            self.hi = Some(self.hi.map_or(hi, |x| x.min(hi)));
        }
        self.edges |= !exact;
        true
    }

    /// `column` inside the whole buckets.
    fn inner(&self, column: &Expr, ty: &DataType) -> DFResult<Option<Expr>> {
        let mut parts = Vec::new();
        if let Some(lo) = self.lo {
            parts.push(column.clone().gt_eq(timestamp_literal(lo, ty)?));
        }
        if let Some(hi) = self.hi {
            parts.push(column.clone().lt(timestamp_literal(hi, ty)?));
        }
        Ok(datafusion::logical_expr::utils::conjunction(parts))
    }

    /// `column` outside the whole buckets (the query's own bounds still
    /// apply on top).
    fn outer(&self, column: &Expr, ty: &DataType) -> DFResult<Option<Expr>> {
        let mut parts = Vec::new();
        if let Some(lo) = self.lo {
            parts.push(column.clone().lt(timestamp_literal(lo, ty)?));
        }
        if let Some(hi) = self.hi {
            parts.push(column.clone().gt_eq(timestamp_literal(hi, ty)?));
        }
        Ok(datafusion::logical_expr::utils::disjunction(parts))
    }
}

/// A literal of timestamp type `ty` at `nanos` since the epoch.
fn timestamp_literal(nanos: i128, ty: &DataType) -> DFResult<Expr> {
    use arrow::datatypes::TimeUnit;
    let DataType::Timestamp(unit, tz) = ty else {
        return Err(datafusion::error::DataFusionError::Internal(format!(
            "time column of type {ty}"
        )));
    };
    let tz = tz.clone();
    let v = |div: i128| i64::try_from(nanos.div_euclid(div)).ok();
    Ok(Expr::Literal(
        match unit {
            TimeUnit::Second => ScalarValue::TimestampSecond(v(1_000_000_000), tz),
            TimeUnit::Millisecond => ScalarValue::TimestampMillisecond(v(1_000_000), tz),
            TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(v(1_000), tz),
            TimeUnit::Nanosecond => ScalarValue::TimestampNanosecond(v(1), tz),
        },
        None,
    ))
}
