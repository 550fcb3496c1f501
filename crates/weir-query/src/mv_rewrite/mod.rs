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

mod aggregate;
mod shape;

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, ExprSchemable, LogicalPlan, Operator, TableScan, cast,
};
use datafusion::prelude::SessionContext;
use iceberg::spec::{PrimitiveType, Type};
use weir_catalog::CATALOG_NAME;

use crate::error::Result;
use crate::mv_incremental::{added_data_files, changed_data_files, changes_since};
use crate::mv_ranges::{DAY_MICROS, Ranges, ranges_of};
use crate::table::WeirTable;
use aggregate::rewrite_aggregate;
use shape::{Rollup, bucket_of, column_name, timestamp_nanos, unalias};

/// The rows a view does not hold yet, relative to one base snapshot.
#[derive(Debug, Clone)]
enum Delta {
    /// Only appends since the view's base snapshot (and, for a refresh's
    /// merge, compactions, which change no row): the files they added.
    Files(Vec<Appended>),
    /// Files were rewritten since: the rows in these time ranges (whole
    /// buckets of the view, `mv_ranges`) come from the base.
    Ranges(Ranges),
}

/// Files appended since a view's base snapshot, and a base snapshot in
/// which all of them are live (they are read there: a compaction since may
/// have replaced them in later snapshots, but their rows are the same and
/// the files stay until that snapshot expires).
#[derive(Debug, Clone)]
struct Appended {
    snapshot: i64,
    files: Arc<HashSet<String>>,
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
    let Some(delta) = appended_since(&base, since).await? else {
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
            // What the view's rows reflect (compactions of the view since
            // change no row); its size from the current snapshot.
            let mut summary = match weir_catalog::mv_last_refresh(metadata) {
                Some(s) => s.summary().additional_properties.clone(),
                None => continue, // never refreshed
            };
            if let Some(total) = metadata
                .current_snapshot()
                .and_then(|s| s.summary().additional_properties.get("total-records"))
            {
                summary.insert("total-records".into(), total.clone());
            }
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
                let Some(delta) = delta(base, since, &rollup).await? else {
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
async fn delta(base: &WeirTable, since: i64, rollup: &Rollup) -> Result<Option<Delta>> {
    let time_column = rollup.time_column.as_str();
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
        return Ok(Some(Delta::Files(vec![Appended {
            snapshot: until,
            files: Arc::new(paths),
        }])));
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
    // The view's buckets, as microseconds (a day when the grain is finer).
    let width = match i64::try_from(rollup.grain / 1000) {
        Ok(w) if w > 0 && rollup.grain % 1000 == 0 => w,
        _ => DAY_MICROS,
    };
    Ok(ranges_of(&files, field.id, nanos, width).map(|(ranges, _)| Delta::Ranges(ranges)))
}

/// The files appended since `since` up to the base's pinned snapshot, each
/// with a snapshot it is live in, when nothing but appends and compactions
/// (`replace`) happened in between: what a refresh merges into the view's
/// stored partials. Walking back from the pinned snapshot, appends are read
/// there until a compaction that rewrote files; the appends before it are
/// read in the snapshot just before it, and so on. `None` after a row-level
/// change or retention (rows went away: merging cannot tell), or when
/// `since` is no ancestor.
async fn appended_since(base: &WeirTable, since: i64) -> Result<Option<Delta>> {
    let Some(until) = base.snapshot_id() else {
        return Ok(None);
    };
    let table = base.table();
    let mut segments: Vec<(i64, Vec<iceberg::spec::SnapshotRef>)> = vec![(until, Vec::new())];
    let mut reached = false;
    for snapshot in iceberg::util::snapshot::ancestors_of(&table.metadata_ref(), until) {
        if snapshot.snapshot_id() == since {
            reached = true;
            break;
        }
        match snapshot.summary().operation {
            iceberg::spec::Operation::Append => {
                if let Some((_, appends)) = segments.last_mut() {
                    appends.push(snapshot.clone());
                }
            }
            iceberg::spec::Operation::Replace => {
                if weir_catalog::rewrote_data_files(&snapshot)
                    && let Some(before) = snapshot.parent_snapshot_id()
                {
                    segments.push((before, Vec::new()));
                }
            }
            iceberg::spec::Operation::Overwrite | iceberg::spec::Operation::Delete => {
                return Ok(None);
            }
        }
    }
    if !reached {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (snapshot, appends) in segments {
        if appends.is_empty() {
            continue;
        }
        let files = added_data_files(table, &appends).await?;
        let paths = files.iter().map(|f| f.file_path().to_string()).collect();
        out.push(Appended {
            snapshot,
            files: Arc::new(paths),
        });
    }
    Ok(Some(Delta::Files(out)))
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
