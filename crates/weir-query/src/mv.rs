//! Materialized views, first increment (issue 6): `CREATE MATERIALIZED VIEW`,
//! `REFRESH MATERIALIZED VIEW` (full), `DROP MATERIALIZED VIEW`.
//!
//! An MV is an Iceberg table whose `weir.mv.definition` property holds its
//! query. A refresh plans that query, pins every Weir table it reads to the
//! snapshot current at planning time *without* the hot tier (an MV reflects
//! committed rows only), runs it, and swaps all of the MV's files for the
//! result in one snapshot whose summary records, per base table,
//! `weir.mv.base-snapshot.<ns.t>` and `weir.mv.base-sequence.<ns.t>` (what
//! retention waits for, and what incremental refresh (`mv_incremental.rs`)
//! and the query rewrite (`mv_rewrite/`) build on; see README.md).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use weir_catalog::{AppendOptions, Lakehouse, append_data_files, commit_replace, write_data_files};

use crate::ddl::{ident, table_creation};
use crate::error::{QueryError, Result};
use crate::mv_incremental;
use crate::mv_ranges::{self, Ranges, span_micros};
use crate::table::WeirTable;

/// Table property holding an MV's query.
pub const DEFINITION: &str = weir_catalog::MV_DEFINITION_PROPERTY;

/// A parsed materialized-view statement.
#[derive(Debug, Clone, PartialEq)]
pub enum MvStatement {
    Create {
        name: String,
        if_not_exists: bool,
        partition: Vec<String>,
        query: String,
    },
    Refresh {
        name: String,
    },
    Drop {
        name: String,
        if_exists: bool,
    },
}

/// Recognises the MV statements (DataFusion's SQL layer has none of them);
/// `None` for any other statement. See `sql_ext.rs`.
pub fn parse(
    dialect: &dyn datafusion::sql::sqlparser::dialect::Dialect,
    sql: &str,
) -> Result<Option<MvStatement>> {
    crate::sql_ext::parse_mv(dialect, sql)
}

/// Runs an MV statement.
pub async fn execute(lakehouse: &Lakehouse, ctx: &SessionContext, stmt: MvStatement) -> Result<()> {
    match stmt {
        MvStatement::Create {
            name,
            if_not_exists,
            partition,
            query,
        } => create(lakehouse, ctx, &name, if_not_exists, &partition, &query).await,
        MvStatement::Refresh { name } => refresh(lakehouse, ctx, &name).await.map(|_| ()),
        MvStatement::Drop { name, if_exists } => drop_view(lakehouse, &name, if_exists).await,
    }
}

async fn create(
    lakehouse: &Lakehouse,
    ctx: &SessionContext,
    name: &str,
    if_not_exists: bool,
    partition: &[String],
    query: &str,
) -> Result<()> {
    let ident = ident(&TableReference::from(name))?;
    let catalog = lakehouse.catalog();
    if catalog.table_exists(&ident).await? {
        return if if_not_exists {
            Ok(())
        } else {
            Err(QueryError::AlreadyExists(format!("table {ident}")))
        };
    }
    let plan = ctx.state().create_logical_plan(query).await?;
    let properties = HashMap::from([
        (DEFINITION.to_string(), query.to_string()),
        (
            "write.parquet.compression-codec".to_string(),
            "zstd".to_string(),
        ),
    ]);
    let creation = table_creation(&ident, plan.schema().as_arrow(), partition, properties)?;
    lakehouse
        .create_table(&ident.namespace().to_url_string(), creation)
        .await?;
    refresh(lakehouse, ctx, name).await.map(|_| ())
}

/// What a refresh read and wrote.
#[derive(Debug, Clone, Default)]
pub struct RefreshReport {
    /// Base table → (snapshot id, sequence number) the MV now reflects.
    pub bases: BTreeMap<String, (i64, i64)>,
    pub rows: u64,
    pub files: usize,
}

/// Full refresh: recompute the view from pinned base snapshots and swap all
/// of its files for the result in one snapshot.
pub async fn refresh(
    lakehouse: &Lakehouse,
    ctx: &SessionContext,
    name: &str,
) -> Result<RefreshReport> {
    let ident = ident(&TableReference::from(name))?;
    let view = lakehouse.catalog().load_table(&ident).await?;
    let plan = plan_definition(ctx, &ident, &view).await?;
    let Pinned {
        plan: pinned,
        bases,
        base_tables,
    } = pin_bases(lakehouse, &plan, &ident.to_string())?;
    // Incremental when the view has a bucket column and its one base only
    // changed in ways whose buckets the files tell (see mv_incremental).
    let previous: HashMap<String, String> = weir_catalog::mv_last_refresh(view.metadata())
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let single = single_base(&bases, &base_tables, &previous);
    let mut buckets = None;
    if let Some(b) = &single {
        buckets = mv_incremental::plan_buckets(b.table, b.since, b.pinned_at, &plan).await?;
    }
    if buckets.as_ref().is_some_and(|d| d.days.is_empty()) {
        // No appends since the last refresh (at most compactions or
        // manifest merges): the view is current; nothing to write.
        // TODO: record the newer base snapshot (needs a commit
        // without file changes).
        return Ok(RefreshReport {
            bases,
            rows: 0,
            files: 0,
        });
    }
    let target = ViewTarget {
        lakehouse,
        ident: &ident,
        view: &view,
    };
    let work = refresh_plan(ctx, &target, &pinned, buckets.as_ref(), single.as_ref()).await?;
    let fresh = ctx
        .execute_logical_plan(work.fresh)
        .await?
        .collect()
        .await?;
    let kept = match work.kept {
        Some(plan) => ctx.execute_logical_plan(plan).await?.collect().await?,
        None => Vec::new(),
    };
    let rows: u64 = fresh.iter().chain(&kept).map(|b| b.num_rows() as u64).sum();

    // Reload: the view may have been refreshed meanwhile; its live files are
    // what this refresh replaces (a concurrent refresh makes one of the two
    // fail with a conflict instead of mixing results).
    let started_at = view.metadata().current_snapshot_id();
    let view = lakehouse.catalog().load_table(&ident).await?;
    if view.metadata().current_snapshot_id() != started_at {
        return Err(QueryError::Conflict(format!(
            "materialized view {ident} was refreshed concurrently; retry"
        )));
    }
    // Written apart: the recomputed buckets' files then span only those
    // buckets, so the next refresh (which mostly touches the newest
    // buckets again) replaces them, not the files of the kept rows.
    let mut added = write_data_files(&view, &fresh, None).await?;
    added.extend(write_data_files(&view, &kept, None).await?);
    let files = added.len();
    let props = refresh_properties(buckets.as_ref(), work.merging, &bases);
    let live = match work.replaced {
        Some(files) => files,
        None => live_files(&view).await?,
    };
    if !live.is_empty() {
        commit_replace(lakehouse, &ident, &live, added, props).await?;
    } else if !added.is_empty() {
        let opts = AppendOptions {
            snapshot_properties: props,
            ..Default::default()
        };
        append_data_files(lakehouse, &view, added, opts).await?;
    }
    // TODO: a refresh that changes no file (empty result over an
    // empty view, or a base that only had compactions since) commits
    // nothing, so the newer base snapshot is not recorded until rows change.
    Ok(RefreshReport { bases, rows, files })
}

/// The logical plan of `view`'s stored query; an error when `view` is a
/// plain table or its query no longer plans.
async fn plan_definition(
    ctx: &SessionContext,
    ident: &iceberg::TableIdent,
    view: &iceberg::table::Table,
) -> Result<LogicalPlan> {
    let Some(query) = view.metadata().properties().get(DEFINITION).cloned() else {
        return Err(QueryError::Invalid(format!(
            "{ident} is a table, not a materialized view"
        )));
    };
    ctx.state().create_logical_plan(&query).await.map_err(|e| {
        QueryError::Invalid(format!(
            "materialized view {ident}: its query no longer plans against its base tables \
                 ({e}); a column or table it reads was renamed or dropped (by Weir, Spark or \
                 Trino). DROP MATERIALIZED VIEW {ident} and CREATE it again"
        ))
    })
}

/// A view's query with its base tables pinned (see [`pin_bases`]).
struct Pinned {
    plan: LogicalPlan,
    /// Base table → (snapshot id, sequence number) it is pinned to.
    bases: BTreeMap<String, (i64, i64)>,
    base_tables: HashMap<String, iceberg::table::Table>,
}

/// Pins every Weir table `plan` reads to the snapshot it was planned at,
/// without hot-tier rows: the MV reflects exactly those snapshots. An error
/// when the view (`view_name`) reads itself.
fn pin_bases(lakehouse: &Lakehouse, plan: &LogicalPlan, view_name: &str) -> Result<Pinned> {
    let mut bases: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut base_tables: HashMap<String, iceberg::table::Table> = HashMap::new();
    let pinned = plan
        .clone()
        .transform_up(|node| {
            let LogicalPlan::TableScan(mut scan) = node else {
                return Ok(Transformed::no(node));
            };
            let provider = source_as_provider(&scan.source)?;
            let Some(weir) = provider.as_any().downcast_ref::<WeirTable>() else {
                return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
            };
            let table = weir.table().clone();
            let base = table.identifier().to_string();
            if base == view_name {
                return Err(datafusion::error::DataFusionError::Plan(format!(
                    "materialized view {view_name} cannot read itself"
                )));
            }
            let snapshot = weir.snapshot_id();
            if let Some(id) = snapshot {
                let seq = table
                    .metadata()
                    .snapshot_by_id(id)
                    .map(|s| s.sequence_number())
                    .unwrap_or_default();
                bases.insert(base.clone(), (id, seq));
                base_tables.insert(base, table.clone());
            }
            let committed =
                WeirTable::pinned_in_current_schema(lakehouse.clone(), table, snapshot)?;
            scan.source = provider_as_source(Arc::new(committed));
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })?
        .data;
    Ok(Pinned {
        plan: pinned,
        bases,
        base_tables,
    })
}

/// The one base table of a view that reads one, with the snapshot the last
/// refresh recorded for it: what an incremental refresh starts from.
struct SingleBase<'a> {
    table: &'a iceberg::table::Table,
    /// The base snapshot the last refresh reflected.
    since: i64,
    /// The base snapshot this refresh reads.
    pinned_at: i64,
}

/// The view's base when it reads exactly one Weir table and its last
/// refresh (summary `previous`) recorded that table's snapshot.
fn single_base<'a>(
    bases: &BTreeMap<String, (i64, i64)>,
    base_tables: &'a HashMap<String, iceberg::table::Table>,
    previous: &HashMap<String, String>,
) -> Option<SingleBase<'a>> {
    let bases = bases.iter().collect::<Vec<_>>();
    let [(base, (pinned_at, _))] = bases.as_slice() else {
        return None;
    };
    let since = previous
        .get(&format!("weir.mv.base-snapshot.{base}"))
        .and_then(|v| v.parse::<i64>().ok())?;
    let table = base_tables.get(*base)?;
    Some(SingleBase {
        table,
        since,
        pinned_at: *pinned_at,
    })
}

/// The view a refresh writes.
struct ViewTarget<'a> {
    lakehouse: &'a Lakehouse,
    ident: &'a iceberg::TableIdent,
    view: &'a iceberg::table::Table,
}

impl ViewTarget<'_> {
    /// The view as a table reference and a provider over its current
    /// snapshot: what a refresh reads its stored rows through.
    fn stored(&self) -> Result<(TableReference, Arc<WeirTable>)> {
        let name = TableReference::partial(self.ident.namespace().join("."), self.ident.name());
        let provider = WeirTable::try_new(self.lakehouse.clone(), self.view.clone(), None)?;
        Ok((name, Arc::new(provider)))
    }
}

/// What a refresh computes and replaces.
struct RefreshWork {
    /// The rows recomputed: the whole view, or the buckets of the scope.
    fresh: LogicalPlan,
    /// The replaced files' rows outside the scope, kept as stored.
    kept: Option<LogicalPlan>,
    /// The view's files replaced (`None`: all of them).
    replaced: Option<HashSet<String>>,
    /// `fresh` merges stored partials with the appended files' partials.
    merging: bool,
}

/// The whole query (full refresh); with only appends since and merging
/// aggregates, the view's stored partials of the touched days merged with
/// partials of the appended files; otherwise the buckets the changes
/// touched recomputed from the base. An incremental refresh replaces the
/// view files whose buckets meet what it recomputed and keeps their other
/// rows (`mv_ranges`), whatever the view's partitioning.
async fn refresh_plan(
    ctx: &SessionContext,
    target: &ViewTarget<'_>,
    pinned: &LogicalPlan,
    buckets: Option<&mv_incremental::BucketRefresh>,
    single: Option<&SingleBase<'_>>,
) -> Result<RefreshWork> {
    let Some(d) = buckets else {
        return Ok(RefreshWork {
            fresh: pinned.clone(),
            kept: None,
            replaced: None,
            merging: false,
        });
    };
    let mut merged = None;
    if let (Some(b), Some(&(from, _)), Some(&(_, to))) = (single, d.ranges.first(), d.ranges.last())
    {
        // The merge covers one time range (the rewrite maps one), the span
        // of the touched buckets: every appended row lies in it.
        let span = vec![(from, to)];
        let in_span = restrict_to(pinned.clone(), &d.time_column, &span)?;
        if let Some(plan) = merge_partials(ctx, target, pinned, &in_span, b).await? {
            merged = Some((plan, span));
        }
    }
    let merging = merged.is_some();
    let (fresh, scope) = match merged {
        Some(m) => m,
        None => (
            restrict_to(pinned.clone(), &d.time_column, &d.ranges)?,
            d.ranges.clone(),
        ),
    };
    let replaced = mv_ranges::files_meeting(target.view, &d.view_column, &scope).await?;
    let kept = mv_ranges::kept_rows(
        fresh.schema().as_arrow(),
        target.stored()?,
        &replaced,
        &d.view_column,
        &scope,
    )?;
    Ok(RefreshWork {
        fresh,
        kept,
        replaced: Some(replaced),
        merging,
    })
}

/// The plan merging the view's stored partials of the refreshed days with
/// partials of the base's appended files (`mv_rewrite::merge_plan`); `None`
/// when the view's aggregates do not merge.
async fn merge_partials(
    ctx: &SessionContext,
    target: &ViewTarget<'_>,
    pinned: &LogicalPlan,
    restricted: &LogicalPlan,
    single: &SingleBase<'_>,
) -> Result<Option<LogicalPlan>> {
    let base = WeirTable::pinned_in_current_schema(
        target.lakehouse.clone(),
        single.table.clone(),
        Some(single.pinned_at),
    )?;
    let (name, view_provider) = target.stored()?;
    crate::mv_rewrite::merge_plan(
        ctx,
        pinned,
        restricted,
        name,
        view_provider,
        base,
        single.since,
    )
    .await
}

/// The refresh snapshot's summary properties: how it refreshed, and the
/// base snapshots and sequence numbers the view now reflects.
fn refresh_properties(
    days: Option<&mv_incremental::BucketRefresh>,
    merging: bool,
    bases: &BTreeMap<String, (i64, i64)>,
) -> HashMap<String, String> {
    let mut props: HashMap<String, String> = HashMap::new();
    match days {
        Some(d) => {
            props.insert(
                weir_catalog::MV_REFRESH_SUMMARY.into(),
                "incremental".into(),
            );
            // merge: stored partials + appended files; recompute: the days
            // re-read from the base.
            let how = if merging { "merge" } else { "recompute" };
            props.insert("weir.mv.refresh-by".into(), how.into());
            props.insert("weir.mv.refresh-days".into(), d.days.len().to_string());
            if !merging {
                // The buckets re-read from the base (the days' other rows
                // were kept as stored).
                props.insert("weir.mv.refresh-ranges".into(), d.ranges.len().to_string());
                let seconds = span_micros(&d.ranges) / 1_000_000;
                props.insert("weir.mv.refresh-seconds".into(), seconds.to_string());
            }
        }
        None => {
            props.insert(weir_catalog::MV_REFRESH_SUMMARY.into(), "full".into());
        }
    }
    for (base, (snapshot, seq)) in bases {
        props.insert(
            format!("weir.mv.base-snapshot.{base}"),
            snapshot.to_string(),
        );
        props.insert(format!("weir.mv.base-sequence.{base}"), seq.to_string());
    }
    props
}

/// The view's live data files: what a full refresh replaces.
async fn live_files(view: &iceberg::table::Table) -> Result<HashSet<String>> {
    let Some(id) = view.metadata().current_snapshot_id() else {
        return Ok(HashSet::new());
    };
    Ok(view
        .scan()
        .snapshot_id(id)
        .select_empty()
        .build()?
        .plan_files()
        .await?
        .map_ok(|task| task.data_file_path)
        .try_collect()
        .await?)
}

/// Adds `time_column in ranges` above the (single) base scan.
fn restrict_to(plan: LogicalPlan, time_column: &str, ranges: &Ranges) -> Result<LogicalPlan> {
    let out = plan.transform_up(|node| {
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(Transformed::no(node));
        };
        let schema = scan.source.schema();
        let field = schema.field_with_name(time_column)?;
        let column = Expr::Column(Column::new(
            Some(scan.table_name.clone()),
            time_column.to_string(),
        ));
        let Some(predicate) = mv_ranges::range_filter(column, field.data_type(), ranges) else {
            return Ok(Transformed::no(LogicalPlan::TableScan(scan)));
        };
        let filter = Filter::try_new(predicate, Arc::new(LogicalPlan::TableScan(scan)))?;
        Ok(Transformed::new(
            LogicalPlan::Filter(filter),
            true,
            TreeNodeRecursion::Jump,
        ))
    })?;
    Ok(out.data)
}

async fn drop_view(lakehouse: &Lakehouse, name: &str, if_exists: bool) -> Result<()> {
    let ident = ident(&TableReference::from(name))?;
    let catalog = lakehouse.catalog();
    if !catalog.table_exists(&ident).await? {
        return if if_exists {
            Ok(())
        } else {
            Err(QueryError::NotFound(format!("materialized view {ident}")))
        };
    }
    let table = catalog.load_table(&ident).await?;
    if !table.metadata().properties().contains_key(DEFINITION) {
        return Err(QueryError::Invalid(format!(
            "{ident} is a table, not a materialized view: use DROP TABLE"
        )));
    }
    catalog.drop_table(&ident).await?;
    Ok(())
}

/// The materialized views whose query reads columns of `base`, each with
/// the columns it reads (from the optimized plan's projections). Views whose
/// query no longer plans are left out (their refresh says why).
pub(crate) async fn views_reading_columns(
    lakehouse: &Lakehouse,
    ctx: &SessionContext,
    base: &iceberg::TableIdent,
) -> Result<Vec<(iceberg::TableIdent, std::collections::BTreeSet<String>)>> {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let catalog = lakehouse.catalog();
    let mut found = Vec::new();
    for ns in catalog.list_namespaces(None).await? {
        for table in catalog.list_tables(&ns).await? {
            let Ok(loaded) = catalog.load_table(&table).await else {
                continue;
            };
            let Some(query) = loaded.metadata().properties().get(DEFINITION).cloned() else {
                continue;
            };
            let state = ctx.state();
            let Ok(plan) = state.create_logical_plan(&query).await else {
                continue;
            };
            let Ok(plan) = state.optimize(&plan) else {
                continue;
            };
            let mut columns = std::collections::BTreeSet::new();
            plan.apply(|node| {
                if let LogicalPlan::TableScan(scan) = node {
                    let name = scan.table_name.table();
                    let schema = scan.table_name.schema();
                    if name == base.name()
                        && schema.is_none_or(|s| s == base.namespace().to_url_string())
                    {
                        columns.extend(
                            scan.projected_schema
                                .fields()
                                .iter()
                                .map(|f| f.name().clone()),
                        );
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
            if !columns.is_empty() {
                found.push((table, columns));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    #[test]
    fn parses_the_three_statements() {
        assert_eq!(
            parse(
                &GenericDialect {},
                "create materialized view if not exists gold.m PARTITIONED BY (day(b)) AS SELECT 1"
            )
            .unwrap(),
            Some(MvStatement::Create {
                name: "gold.m".into(),
                if_not_exists: true,
                partition: vec!["day(b)".into()],
                query: "SELECT 1".into(),
            })
        );
        assert_eq!(
            parse(&GenericDialect {}, "REFRESH MATERIALIZED VIEW gold.m").unwrap(),
            Some(MvStatement::Refresh {
                name: "gold.m".into()
            })
        );
        assert_eq!(
            parse(&GenericDialect {}, "DROP MATERIALIZED VIEW IF EXISTS m").unwrap(),
            Some(MvStatement::Drop {
                name: "m".into(),
                if_exists: true
            })
        );
        assert_eq!(parse(&GenericDialect {}, "SELECT 1").unwrap(), None);
        assert_eq!(
            parse(&GenericDialect {}, "CREATE VIEW v AS SELECT 1").unwrap(),
            None
        );
        assert!(parse(&GenericDialect {}, "CREATE MATERIALIZED VIEW m SELECT 1").is_err());
        assert!(parse(&GenericDialect {}, "REFRESH MATERIALIZED VIEW").is_err());
        assert!(parse(&GenericDialect {}, "REFRESH MATERIALIZED VIEW m now").is_err());
    }
}
