//! Row-level DML on Iceberg tables: `DELETE`, `UPDATE`, `TRUNCATE`, by
//! copy-on-write (issue 20).
//!
//! Each data file that may hold a matching row (manifest pruning on the
//! predicate) is read with its delete files applied; a file where no row
//! matches stays; the others are rewritten without the deleted rows (or with
//! the updated values) and swapped in one `overwrite` snapshot (`delete` when
//! nothing is rewritten) through the replace commit, which checks that every
//! file it removes is still live. When another writer rewrote one of them
//! meanwhile (compaction, another DML), the statement is planned again on
//! the new snapshot; appends that landed meanwhile are kept untouched
//! (Iceberg's `snapshot` isolation: they were not there when it started).
//!
//! The statement is taken from DataFusion's *unoptimized* logical plan here,
//! not through `TableProvider::delete_from`: DataFusion 53 collects the
//! predicate from the optimized plan, where `WHERE 1 = 0` has become an empty
//! relation without a filter, i.e. "delete every row".
//!
//! MERGE INTO runs on the same lease, retries and commit (`merge.rs`).
//!
//! TODO(issue 20): merge-on-read (position delete files) chosen by
//! `write.delete.mode`; serializable isolation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, TableReference};
use datafusion::logical_expr::{DmlStatement, Expr, LogicalPlan, WriteOp};
use datafusion::prelude::SessionContext;
use iceberg::TableIdent;
use weir_catalog::{CatalogError, Lakehouse, commit_overwrite, write_data_files};

use crate::error::{QueryError, Result};
use crate::table::{WeirTable, WriteMetrics};

mod attempt;
use attempt::attempt_once;

/// How often a statement is planned again after another writer rewrote
/// files it was rewriting, and the pauses between (jittered, so two
/// statements that collided do not collide again).
const REPLAN: weir_catalog::retry::Backoff = weir_catalog::retry::Backoff {
    attempts: 5,
    min_wait: Duration::from_millis(10),
    max_wait: Duration::from_millis(200),
    total: None,
    exponential: true,
    jitter: true,
    warn: false,
};
/// Name of the per-row "matches the predicate" flag while files are read.
const MATCHED: &str = "__weir_dml_matched";
/// Name of the per-row position (1-based) while files are read.
const POSITION: &str = "__weir_dml_position";

/// What a row-level statement does to the rows its predicate matches.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Delete,
    /// New values (already cast to the column types) by column name.
    Update(Vec<(String, Expr)>),
}

/// A DELETE/UPDATE/TRUNCATE taken from its logical plan (or an INSERT
/// OVERWRITE … PARTITION (…): a DELETE of the partition plus `append`).
#[derive(Debug, Clone)]
pub(crate) struct RowLevel {
    pub table: TableReference,
    /// `None`: every row.
    pub predicate: Option<Expr>,
    pub change: Change,
    /// Rows added in the same snapshot.
    pub append: Vec<RecordBatch>,
}

impl RowLevel {
    /// `None` for DML that is not row-level (INSERT, CTAS).
    pub(crate) fn from_plan(dml: &DmlStatement) -> Result<Option<Self>> {
        let table = dml.table_name.clone();
        let (predicate, change) = match dml.op {
            WriteOp::Truncate => (None, Change::Delete),
            WriteOp::Delete => (predicate_over_scan(&dml.input, &table)?, Change::Delete),
            WriteOp::Update => {
                let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
                    return Err(shape("UPDATE"));
                };
                let mut assignments = Vec::new();
                for expr in &projection.expr {
                    let Expr::Alias(alias) = expr else {
                        return Err(shape("UPDATE"));
                    };
                    let unchanged = matches!(alias.expr.as_ref(),
                        Expr::Column(c) if c.name == alias.name);
                    if !unchanged {
                        assignments.push((alias.name.clone(), unqualified(*alias.expr.clone())?));
                    }
                }
                (
                    predicate_over_scan(&projection.input, &table)?,
                    Change::Update(assignments),
                )
            }
            _ => return Ok(None),
        };
        if let Some(p) = &predicate {
            reject_subqueries(p)?;
        }
        if let Change::Update(assignments) = &change {
            for (_, e) in assignments {
                reject_subqueries(e)?;
            }
        }
        Ok(Some(RowLevel {
            table,
            predicate,
            change,
            append: Vec::new(),
        }))
    }
}

fn arrow_err(e: arrow::error::ArrowError) -> QueryError {
    QueryError::from(datafusion::error::DataFusionError::from(e))
}

fn shape(what: &str) -> QueryError {
    QueryError::Unsupported(format!(
        "this form of {what}: only single-table statements with a WHERE clause on the \
         table's own columns are supported (no FROM/USING joins)"
    ))
}

/// The predicate of `[Filter] -> [SubqueryAlias] -> TableScan(table)`.
fn predicate_over_scan(plan: &LogicalPlan, table: &TableReference) -> Result<Option<Expr>> {
    let (predicate, below) = match plan {
        LogicalPlan::Filter(filter) => {
            (Some(unqualified(filter.predicate.clone())?), &filter.input)
        }
        other => (None, &Arc::new(other.clone())),
    };
    let scan = match below.as_ref() {
        LogicalPlan::SubqueryAlias(alias) => alias.input.as_ref(),
        other => other,
    };
    match scan {
        LogicalPlan::TableScan(scan) if scan.table_name.resolved_eq(table) => Ok(predicate),
        _ => Err(shape("DELETE/UPDATE")),
    }
}

/// Column references without their table qualifier (the statement reads one
/// table; its files are read without one).
fn unqualified(expr: Expr) -> Result<Expr> {
    Ok(expr
        .transform(|e| match &e {
            Expr::Column(c) if c.relation.is_some() => Ok(Transformed::yes(Expr::Column(
                Column::new_unqualified(c.name.clone()),
            ))),
            _ => Ok(Transformed::no(e)),
        })?
        .data)
}

fn reject_subqueries(expr: &Expr) -> Result<()> {
    let mut found = false;
    expr.apply(|e| {
        if matches!(
            e,
            Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)
        ) {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if found {
        return Err(QueryError::Unsupported(
            "subqueries in DELETE/UPDATE; list the values (WHERE id IN (1, 2, 3))".into(),
        ));
    }
    Ok(())
}

/// What a statement did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Outcome {
    /// Rows deleted or updated.
    pub rows: u64,
    pub files_removed: usize,
    pub files_added: usize,
    /// Position delete files written (merge-on-read).
    pub delete_files: usize,
    pub attempts: u32,
}

/// How long a statement waits for a compaction of its table to finish.
const LEASE_WAIT: Duration = Duration::from_secs(120);
/// The lease a statement holds; released at the end, expired if the
/// process dies.
const LEASE_TTL: Duration = Duration::from_secs(600);

/// A row-level statement: DELETE/UPDATE/TRUNCATE or MERGE.
#[derive(Debug, Clone)]
pub(crate) enum Job {
    RowLevel(RowLevel),
    Merge(crate::merge::Merge),
}

/// Runs `job` on `ident` (current snapshot, without the hot tier).
///
/// Holds the table's `compact:<table>` lease meanwhile — the one compaction
/// and clustering hold while they rewrite its files — so the statement and
/// a compaction don't keep invalidating each other's rewrites (each would
/// otherwise lose whenever the other commits first).
pub(crate) async fn execute(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    job: &Job,
) -> Result<Outcome> {
    let lease = format!("compact:{ident}");
    let owner = format!("dml-{}", uuid::Uuid::new_v4());
    let leases = lakehouse.leases();
    let waited = Instant::now();
    while !leases.try_acquire(&lease, &owner, LEASE_TTL).await? {
        if waited.elapsed() > LEASE_WAIT {
            return Err(QueryError::Conflict(format!(
                "{ident} is being compacted (lease {lease} held by {}); try again later",
                leases.owner(&lease).await?.unwrap_or_default()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let result = execute_leased(ctx, lakehouse, ident, job).await;
    if let Err(e) = leases.release(&lease, &owner).await {
        tracing::warn!(table = %ident, error = %e, "could not release the DML lease; it expires on its own");
    }
    result
}

async fn execute_leased(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    job: &Job,
) -> Result<Outcome> {
    // The one retry loop of the commits (weir_catalog::retry): here an
    // attempt plans the statement again against the table as it is now.
    let mut retry = weir_catalog::retry::Retry::new("dml", ident.to_string(), REPLAN);
    loop {
        let target = Target::load(ctx, lakehouse, ident).await?;
        let tried = match job {
            Job::RowLevel(statement) => attempt_once(&target, ident, statement).await?,
            Job::Merge(merge) => crate::merge::merge_once(ctx, &target, ident, merge).await?,
        };
        match tried {
            Ok(mut outcome) => {
                outcome.attempts = retry.attempt();
                return Ok(outcome);
            }
            Err(reason) => {
                tracing::info!(table = %ident, attempt = retry.attempt(), %reason,
                    "DML lost a race with another writer; planning again");
                if !retry.again(&reason).await {
                    return Err(QueryError::from(CatalogError::ReplaceContended {
                        table: ident.to_string(),
                        attempts: retry.attempt(),
                    }));
                }
            }
        }
    }
}

/// What `job` would do, as EXPLAIN shows it: the table, the change, and
/// the data files it would read (after manifest and statistics pruning) of
/// all the snapshot's. Reads metadata only: no data file, no source query.
pub(crate) async fn explain(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    job: &Job,
) -> Result<String> {
    let target = Target::load(ctx, lakehouse, ident).await?;
    let total = file_paths(&target.base, &[]).await?.len();
    let mut out = String::new();
    match job {
        Job::RowLevel(statement) => {
            let (op, change) = match &statement.change {
                Change::Delete if statement.predicate.is_none() => ("truncate", String::new()),
                Change::Delete => ("delete", String::new()),
                Change::Update(assignments) => (
                    "update",
                    assignments
                        .iter()
                        .map(|(c, e)| format!("{c} = {e}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            let predicate = match &statement.predicate {
                Some(p) => Some(simplified(&target.base, p.clone())?),
                None => None,
            };
            let filters: Vec<Expr> = predicate.iter().cloned().collect();
            let read = file_paths(&target.base, &filters).await?.len();
            let mode = Mode::of(&target.table, &statement.change);
            out.push_str(&format!(
                "RowLevelDml: op={op} mode={} table={ident}\n",
                mode.name()
            ));
            if !change.is_empty() {
                out.push_str(&format!("  set: {change}\n"));
            }
            if let Some(p) = predicate {
                out.push_str(&format!("  predicate: {p}\n"));
            }
            out.push_str(&format!(
                "  files: {read} of {total} read (manifest and statistics pruning); {}\n",
                match mode {
                    Mode::CopyOnWrite => "those with a matching row rewritten",
                    Mode::MergeOnRead => "matching rows named in position delete files (files with delete files already: rewritten)",
                }
            ));
        }
        Job::Merge(merge) => {
            out.push_str(&format!(
                "Merge: mode={} table={ident}\n{}",
                Mode::from_property(&target.table, "write.merge.mode").name(),
                merge.describe()
            ));
            out.push_str(&format!(
                "  files: up to {total} read, pruned when it runs by the source's range of each t.a = s.b key; those with a changed row rewritten\n"
            ));
        }
    }
    out.push_str(&format!(
        "  commit: one overwrite snapshot (append when only rows are inserted), under lease compact:{ident}"
    ));
    Ok(out)
}

/// The table one attempt works on: its current snapshot, and a session that
/// reads each file in one stream, in its row order, so a rewritten file
/// keeps the layout (sort order, tight statistics) the old one had.
pub(crate) struct Target {
    pub lakehouse: Lakehouse,
    pub table: iceberg::table::Table,
    pub base: WeirTable,
    pub ctx: SessionContext,
}

impl Target {
    async fn load(ctx: &SessionContext, lakehouse: &Lakehouse, ident: &TableIdent) -> Result<Self> {
        let table = lakehouse.catalog().load_table(ident).await?;
        let base = WeirTable::try_new(lakehouse.clone(), table.clone(), None)?;
        if base.is_materialized_view() {
            return Err(QueryError::Invalid(format!(
                "{ident} is a materialized view: its rows come from its query (REFRESH MATERIALIZED VIEW)"
            )));
        }
        let ctx = {
            let mut state = ctx.state();
            state.config_mut().options_mut().execution.target_partitions = 1;
            SessionContext::new_with_state(state)
        };
        Ok(Target {
            lakehouse: lakehouse.clone(),
            table,
            base,
            ctx,
        })
    }
}

/// `expr` over `base`'s columns with constant sub-expressions folded
/// (`v < CAST(20 AS DOUBLE)` → `v < 20.0`), as the optimizer does before a
/// scan's filters reach manifest pruning.
fn simplified(base: &WeirTable, expr: Expr) -> Result<Expr> {
    let schema = datafusion::common::DFSchema::try_from(
        datafusion::catalog::TableProvider::schema(base)
            .as_ref()
            .clone(),
    )?;
    let context = datafusion::logical_expr::simplify::SimplifyContext::default()
        .with_schema(Arc::new(schema));
    Ok(datafusion::optimizer::simplify_expressions::ExprSimplifier::new(context).simplify(expr)?)
}

/// A data file a statement may change.
#[derive(Debug, Clone)]
pub(crate) struct FileRef {
    pub path: String,
    /// Delete files apply to it.
    pub has_deletes: bool,
    pub partition: Option<iceberg::spec::Struct>,
    pub spec: Option<Arc<iceberg::spec::PartitionSpec>>,
}

impl FileRef {
    /// `base` restricted to this file (no hot tier).
    pub(crate) fn table(&self, base: &WeirTable, label: &str) -> WeirTable {
        base.restricted(
            Some(Arc::new(HashSet::from([self.path.clone()]))),
            false,
            label.into(),
        )
    }

    /// Its partition when `mode` changes it by position deletes: merge-on-read
    /// needs each row's position, read without delete files (a file that
    /// has some is rewritten instead).
    pub(crate) fn positional(&self, mode: Mode) -> Option<iceberg::spec::Struct> {
        match (mode, &self.partition) {
            (Mode::MergeOnRead, Some(p)) if !self.has_deletes => Some(p.clone()),
            _ => None,
        }
    }

    /// Writes a position delete file naming `positions` of this file.
    pub(crate) async fn write_deletes(
        &self,
        table: &iceberg::table::Table,
        partition: &iceberg::spec::Struct,
        positions: &[i64],
        ident: &TableIdent,
    ) -> Result<(i32, iceberg::spec::DataFile)> {
        let spec = self
            .spec
            .clone()
            .unwrap_or_else(|| table.metadata().default_partition_spec().clone());
        let file =
            weir_catalog::write_position_deletes(table, &self.path, &spec, partition, positions)
                .await
                .map_err(|e| CatalogError::iceberg(ident.to_string(), e))?;
        Ok((spec.spec_id(), file))
    }
}

/// The data files of `base` that may hold rows matching `filters`
/// (manifest and file statistics pruning), each once.
pub(crate) async fn file_paths(base: &WeirTable, filters: &[Expr]) -> Result<Vec<FileRef>> {
    let filters = filters
        .iter()
        .map(|f| simplified(base, f.clone()))
        .collect::<Result<Vec<_>>>()?;
    let tasks = base.plan_files_for(&filters).await?;
    // iceberg-rust attaches a position delete file to every data file of its
    // partition; the file it names is the one it applies to.
    let targets = if tasks.iter().any(|t| {
        t.deletes
            .iter()
            .any(|d| d.file_type == iceberg::spec::DataContentType::PositionDeletes)
    }) {
        position_delete_targets(base).await?
    } else {
        std::collections::HashMap::new()
    };
    let mut seen = HashSet::new();
    Ok(tasks
        .into_iter()
        .filter(|t| seen.insert(t.data_file_path.clone()))
        .map(|t| FileRef {
            has_deletes: t.deletes.iter().any(|d| {
                d.file_type != iceberg::spec::DataContentType::PositionDeletes
                    || targets
                        .get(&d.file_path)
                        .is_none_or(|target| target == &t.data_file_path)
            }),
            partition: t.partition.clone(),
            spec: t.partition_spec.clone(),
            path: t.data_file_path,
        })
        .collect())
}

/// The data file each live position delete file of `base`'s snapshot names
/// (its `referenced_data_file`, or equal bounds on `file_path`); files that
/// name several are absent (they may apply anywhere in their partition).
async fn position_delete_targets(
    base: &WeirTable,
) -> Result<std::collections::HashMap<String, String>> {
    let table = base.iceberg_table();
    let mut targets = std::collections::HashMap::new();
    let Some(snapshot) = base
        .snapshot_id()
        .and_then(|id| table.metadata().snapshot_by_id(id))
    else {
        return Ok(targets);
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    for manifest in list.entries() {
        if manifest.content != iceberg::spec::ManifestContentType::Deletes {
            continue;
        }
        let loaded = manifest.load_manifest(table.file_io()).await?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            if let Some(target) = crate::mv_incremental::referenced_data_file(file) {
                targets.insert(file.file_path().to_string(), target);
            }
        }
    }
    Ok(targets)
}

/// Refuses rows that put NULL into a required (NOT NULL) column.
pub(crate) fn check_required(
    schema: &arrow::datatypes::Schema,
    batches: &[RecordBatch],
    ident: &TableIdent,
) -> Result<()> {
    for (i, field) in schema.fields().iter().enumerate() {
        if field.is_nullable() {
            continue;
        }
        if batches
            .iter()
            .any(|b| b.num_columns() > i && b.column(i).null_count() > 0)
        {
            return Err(QueryError::Invalid(format!(
                "column {} of {ident} is NOT NULL; the statement would store NULL in it",
                field.name()
            )));
        }
    }
    Ok(())
}

/// A commit fence refused an attempt: another writer rewrote a file this
/// statement was rewriting, so the statement is planned again. The reason
/// is the fence's, for the log.
#[derive(Debug)]
pub(crate) struct LostRace {
    pub(crate) reason: String,
}

impl std::fmt::Display for LostRace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The files one attempt changes.
#[derive(Debug, Default)]
pub(crate) struct FileChanges {
    /// Data files replaced whole (copy-on-write).
    pub removed: HashSet<String>,
    /// Data files written.
    pub added: Vec<iceberg::spec::DataFile>,
    /// Position delete files written (merge-on-read), with their partition
    /// spec ids.
    pub deletes: Vec<(i32, iceberg::spec::DataFile)>,
}

impl FileChanges {
    /// Commits one attempt: `removed` replaced by `added` (and the delete
    /// files) in one `overwrite` snapshot (an `append` when nothing is
    /// removed). `Ok(Err(LostRace))` when another writer rewrote a removed
    /// file meanwhile (plan again).
    pub(crate) async fn commit(
        self,
        target: &Target,
        ident: &TableIdent,
        properties: std::collections::HashMap<String, String>,
    ) -> Result<std::result::Result<(), LostRace>> {
        let FileChanges {
            removed,
            added,
            deletes,
        } = self;
        let landed = if !deletes.is_empty() {
            weir_catalog::commit_row_changes(
                &target.lakehouse,
                ident,
                &removed,
                added,
                deletes,
                properties,
            )
            .await
        } else if removed.is_empty() {
            let opts = weir_catalog::AppendOptions {
                snapshot_properties: properties,
                ..Default::default()
            };
            weir_catalog::append_data_files(&target.lakehouse, &target.table, added, opts).await?;
            return Ok(Ok(()));
        } else {
            commit_overwrite(&target.lakehouse, ident, &removed, added, properties).await
        };
        match landed {
            Ok(_) => Ok(Ok(())),
            Err(CatalogError::Fenced { reason, .. }) => Ok(Err(LostRace { reason })),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes rows of `file`: by a position delete file naming `positions`
    /// when `positional` holds its partition (merge-on-read), else by
    /// replacing the whole file (copy-on-write).
    pub(crate) async fn remove_rows(
        &mut self,
        table: &iceberg::table::Table,
        file: &FileRef,
        positional: Option<iceberg::spec::Struct>,
        positions: &[i64],
        ident: &TableIdent,
    ) -> Result<()> {
        match positional {
            Some(partition) => {
                self.deletes.push(
                    file.write_deletes(table, &partition, positions, ident)
                        .await?,
                );
            }
            None => {
                self.removed.insert(file.path.clone());
            }
        }
        Ok(())
    }

    /// Writes `rows` as new data files of `table`.
    pub(crate) async fn write(
        &mut self,
        table: &iceberg::table::Table,
        rows: &[RecordBatch],
        ident: &TableIdent,
    ) -> Result<()> {
        self.added.extend(
            write_data_files(table, rows, None)
                .await
                .map_err(|e| CatalogError::iceberg(ident.to_string(), e))?,
        );
        Ok(())
    }

    /// Nothing to commit.
    pub(crate) fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.deletes.is_empty() && self.added.is_empty()
    }
}

/// The snapshot summary of a row-level statement: its operation, the rows
/// it changed, and how (copy-on-write or merge-on-read).
pub(crate) fn summary(
    operation: &str,
    rows: u64,
    mode: Mode,
) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([
        ("weir.dml".to_string(), operation.to_string()),
        ("weir.dml.rows".to_string(), rows.to_string()),
        ("weir.dml.mode".to_string(), mode.name().to_string()),
    ])
}

/// How a statement changes rows of a file (Iceberg's `write.delete.mode`,
/// `write.update.mode`, `write.merge.mode`; copy-on-write by default, as in
/// Iceberg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    CopyOnWrite,
    /// Position delete files name the deleted (or replaced) rows; updated
    /// rows are appended. Files that already carry delete files are
    /// rewritten (copy-on-write) instead: their positions would need the
    /// deletes applied and counted, which iceberg-rust 0.10's reader does
    /// not expose (no `_pos` column).
    MergeOnRead,
}

impl Mode {
    fn of(table: &iceberg::table::Table, change: &Change) -> Self {
        let key = match change {
            Change::Delete => "write.delete.mode",
            Change::Update(_) => "write.update.mode",
        };
        Self::from_property(table, key)
    }

    pub(crate) fn from_property(table: &iceberg::table::Table, key: &str) -> Self {
        match table.metadata().properties().get(key).map(String::as_str) {
            Some("merge-on-read")
                if table.metadata().format_version() >= iceberg::spec::FormatVersion::V2 =>
            {
                Mode::MergeOnRead
            }
            _ => Mode::CopyOnWrite,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::CopyOnWrite => "copy-on-write",
            Mode::MergeOnRead => "merge-on-read",
        }
    }
}

/// `INSERT OVERWRITE t <query>`: dynamic partition overwrite (as Iceberg
/// recommends and Trino does; Spark's static default would silently empty
/// the rest of the table): the partitions the new rows fall into are
/// replaced, the others kept; an unpartitioned table is replaced whole. One
/// `overwrite` snapshot; appends committed meanwhile are kept.
pub(crate) async fn insert_overwrite(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    batches: &[RecordBatch],
    metrics: &WriteMetrics,
) -> Result<u64> {
    use iceberg::spec::ManifestContentType;
    let table = lakehouse.catalog().load_table(ident).await?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    let added = write_data_files(&table, batches, None)
        .await
        .map_err(|e| CatalogError::iceberg(ident.to_string(), e))?;
    metrics.record_files(&added);
    let metadata = table.metadata();
    let spec = metadata.default_partition_spec();
    let partitions: HashSet<&iceberg::spec::Struct> = added.iter().map(|f| f.partition()).collect();
    let mut removed = HashSet::new();
    if let Some(snapshot) = metadata.current_snapshot() {
        let list = table.manifest_list_reader(snapshot).load().await?;
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data {
                continue;
            }
            let loaded = manifest.load_manifest(table.file_io()).await?;
            for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                let file = entry.data_file();
                let replaced = if spec.is_unpartitioned() {
                    true
                } else if manifest.partition_spec_id != spec.spec_id() {
                    return Err(QueryError::Unsupported(format!(
                        "INSERT OVERWRITE on {ident}: it has files of an older partition spec \
                         ({}); compact the table first (weir maintain compact)",
                        manifest.partition_spec_id
                    )));
                } else {
                    partitions.contains(file.partition())
                };
                if replaced {
                    removed.insert(file.file_path().to_string());
                }
            }
        }
    }
    if removed.is_empty() && added.is_empty() {
        return Ok(0);
    }
    let properties =
        std::collections::HashMap::from([("weir.dml".to_string(), "insert-overwrite".to_string())]);
    let started = Instant::now();
    commit_overwrite(lakehouse, ident, &removed, added, properties).await?;
    metrics.commit_time.add_elapsed(started);
    Ok(rows)
}
