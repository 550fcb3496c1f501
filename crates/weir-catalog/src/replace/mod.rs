//! `replace` commits: remove a set of data files and add their rewritten
//! replacements in one snapshot (compaction, clustering).
//!
//! iceberg-rust 0.10 only appends (its `TableCommit` builder and transaction
//! actions are crate-private), so Weir builds the snapshot itself with the
//! crate's public manifest writers and swaps the catalog row with a
//! compare-and-swap on `metadata_location` — the same row and condition the
//! SQL catalog's own commits use, so replace and append commits serialize.
//! Each attempt reloads the table and validates that every file to remove is
//! still live; appends that landed meanwhile are carried over untouched. A
//! lost race retries; a removed file that vanished aborts (never half-applied).

mod snapshot;
mod staged;

use std::collections::{HashMap, HashSet};

use iceberg::TableIdent;
use iceberg::spec::{DataFile, ManifestFile};
use iceberg::table::Table;
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::lakehouse::Lakehouse;
use crate::manifests::MergePolicy;
use crate::retry::{Backoff, Retry};

use snapshot::finish;
use staged::{Rewrite, Staged};

/// What a replace commit did.
#[derive(Debug, Clone)]
pub struct ReplaceOutcome {
    pub table: Table,
    pub snapshot_id: i64,
    pub attempts: u32,
}

/// Whether `snapshot`, a `replace`, added or removed data files (a
/// compaction: rows moved to other files) rather than only rewriting
/// manifests. A summary without the counts counts as a rewrite.
pub fn rewrote_data_files(snapshot: &iceberg::spec::Snapshot) -> bool {
    let props = &snapshot.summary().additional_properties;
    let count = |key: &str| props.get(key).and_then(|v| v.parse::<u64>().ok());
    count("added-data-files") != Some(0) || count("deleted-data-files") != Some(0)
}

/// Replaces `removed` (data file paths, all live in the current snapshot) by
/// `added` in one `replace` snapshot.
pub async fn commit_replace(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    removed: &HashSet<String>,
    added: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<ReplaceOutcome> {
    swap_files(lakehouse, ident, removed, &added, properties, false).await
}

/// Replaces `removed` by `added` in one snapshot that changes rows (a
/// copy-on-write DELETE/UPDATE): an `overwrite` snapshot, or `delete` when
/// nothing is added. Same validation as [`commit_replace`]: every removed
/// file must still be live ([`CatalogError::Fenced`] otherwise — another
/// writer rewrote it; re-plan and try again); appends that landed meanwhile
/// are kept (Iceberg's `snapshot` isolation).
pub async fn commit_overwrite(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    removed: &HashSet<String>,
    added: Vec<DataFile>,
    properties: HashMap<String, String>,
) -> Result<ReplaceOutcome> {
    swap_files(lakehouse, ident, removed, &added, properties, true).await
}

/// A row-level change: data files removed and added (copy-on-write) and
/// position delete files added (merge-on-read), in one snapshot — an
/// `overwrite`, or a `delete` when it only removes files or adds deletes.
/// Validated as [`commit_overwrite`], and every data file a delete file
/// points at must still be live ([`CatalogError::Fenced`] otherwise).
pub async fn commit_row_changes(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    removed: &HashSet<String>,
    added: Vec<DataFile>,
    deletes: Vec<(i32, DataFile)>,
    properties: HashMap<String, String>,
) -> Result<ReplaceOutcome> {
    let referenced: HashSet<String> = deletes
        .iter()
        .filter_map(|(_, d)| d.referenced_data_file())
        .collect();
    let plan = Plan {
        removed,
        added: &added,
        merge: None,
        changes_rows: true,
        purge: false,
        deletes: &deletes,
        referenced: &referenced,
    };
    commit_plan(lakehouse, ident, plan, properties)
        .await?
        .ok_or_else(|| replace_error(&ident.to_string(), "nothing to commit"))
}

async fn swap_files(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    removed: &HashSet<String>,
    added: &[DataFile],
    properties: HashMap<String, String>,
    changes_rows: bool,
) -> Result<ReplaceOutcome> {
    let plan = Plan {
        removed,
        added,
        merge: None,
        changes_rows,
        purge: false,
        deletes: &[],
        referenced: &HashSet::new(),
    };
    commit_plan(lakehouse, ident, plan, properties)
        .await?
        .ok_or_else(|| replace_error(&ident.to_string(), "nothing to commit"))
}

/// What a rewrite commit does: remove files, add files, and/or merge small
/// data manifests.
pub(crate) struct Plan<'a> {
    pub removed: &'a HashSet<String>,
    pub added: &'a [DataFile],
    /// Also merge data manifests smaller than this policy's target (each
    /// partition spec with at least two of them) into target-size manifests.
    pub merge: Option<MergePolicy>,
    /// The added files hold different rows than the removed ones (an
    /// `overwrite`), not the same rows rewritten (a `replace`).
    pub changes_rows: bool,
    /// Also rewrite every data manifest that still lists removed files
    /// (DELETED entries keep the removed files' column bounds): erasure.
    pub purge: bool,
    /// Position delete files to add (merge-on-read DELETE/UPDATE/MERGE),
    /// with their partition spec id.
    pub deletes: &'a [(i32, DataFile)],
    /// Data files those delete files point at: each must still be live
    /// (a concurrent rewrite of one would resurrect the deleted rows).
    pub referenced: &'a HashSet<String>,
}

/// Commits `plan` in one snapshot; `None` when it turned out to have nothing
/// to do (a manifest merge that found fewer than two small manifests).
/// Records the commit's outcome and latency (`weir_commits_total`, ...).
pub(crate) async fn commit_plan(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    plan: Plan<'_>,
    properties: HashMap<String, String>,
) -> Result<Option<ReplaceOutcome>> {
    let name = ident.to_string();
    let started = std::time::Instant::now();
    let span = tracing::debug_span!("commit", table = %name, operation = "replace");
    let result = tracing::Instrument::instrument(
        commit_plan_inner(lakehouse, ident, plan, properties),
        span,
    )
    .await;
    match &result {
        Ok(Some(outcome)) => {
            crate::obs::record_commit(&name, "replace", started, "ok");
            crate::obs::record_table(&outcome.table);
        }
        Ok(None) => {}
        Err(CatalogError::Fenced { .. }) => {
            crate::obs::record_commit(&name, "replace", started, "fenced")
        }
        Err(_) => crate::obs::record_commit(&name, "replace", started, "error"),
    }
    result
}

async fn commit_plan_inner(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    plan: Plan<'_>,
    properties: HashMap<String, String>,
) -> Result<Option<ReplaceOutcome>> {
    let name = ident.to_string();
    let commit_id = Uuid::now_v7();
    let mut staged: Option<Staged> = None;
    let mut retry = Retry::new("replace", &name, Backoff::RACE);
    loop {
        let attempt = retry.attempt();
        let table = lakehouse
            .catalog()
            .load_table(ident)
            .await
            .map_err(|e| CatalogError::iceberg(&name, e))?;
        if crate::writer::find_commit(&table, &commit_id).is_some() {
            // An earlier attempt landed although its reply was lost.
            let snapshot_id = table.metadata().current_snapshot_id().unwrap_or_default();
            return Ok(Some(ReplaceOutcome {
                table,
                snapshot_id,
                attempts: attempt,
            }));
        }
        let Some(manifests) = stage(&table, &mut staged, &plan, commit_id).await? else {
            return Ok(None);
        };
        let s = staged.as_ref().expect("staged above");
        let location = finish(
            &table,
            s,
            manifests,
            &properties,
            commit_id,
            plan.changes_rows,
        )
        .await?;
        let current_location = table
            .metadata_location()
            .ok_or_else(|| replace_error(&name, "table has no metadata location"))?
            .to_string();
        if lakehouse
            .swap_metadata(ident, &current_location, &location)
            .await?
        {
            let table = lakehouse
                .catalog()
                .load_table(ident)
                .await
                .map_err(|e| CatalogError::iceberg(&name, e))?;
            return Ok(Some(ReplaceOutcome {
                table,
                snapshot_id: s.snapshot_id,
                attempts: attempt,
            }));
        }
        // The rebase makes an attempt cheap: short jittered pauses, so the
        // commit wins as soon as it lands between two writer commits.
        retry.follow_table(table.metadata().properties());
        if !retry.again(&"another commit landed first").await {
            return Err(CatalogError::ReplaceContended {
                table: name,
                attempts: attempt,
            });
        }
    }
}

/// The manifests of an attempt on `table`'s head: the staged ones rebased
/// when only appends landed since they were written (the common case beside
/// a streaming writer: one manifest list per attempt, no manifest
/// rewritten), or staged afresh when anything else changed the manifests
/// they were built on. `None`: the plan has nothing to do.
async fn stage(
    table: &Table,
    staged: &mut Option<Staged>,
    plan: &Plan<'_>,
    commit_id: Uuid,
) -> Result<Option<Vec<ManifestFile>>> {
    let name = table.identifier().to_string();
    let current = table
        .metadata()
        .current_snapshot()
        .ok_or_else(|| replace_error(&name, "table has no snapshot"))?;
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(|e| CatalogError::iceberg(&name, e))?;
    if let Some(rebased) = staged.as_ref().and_then(|s| s.rebase(list.entries())) {
        return rebased.map(Some).map_err(|reason| CatalogError::Fenced {
            table: name,
            reason,
        });
    }
    let changes = Changes {
        removed: plan.removed,
        added: plan.added,
        deletes: plan.deletes,
        referenced: plan.referenced,
    };
    let rewrite = Rewrite {
        merge: plan.merge,
        purge: plan.purge,
        commit_id,
    };
    let fresh = Staged::build(table, list.entries(), changes, rewrite).await?;
    if fresh.is_noop() {
        return Ok(None);
    }
    Ok(Some(staged.insert(fresh).manifests()))
}

fn replace_error(table: &str, reason: &str) -> CatalogError {
    CatalogError::Replace {
        table: table.to_string(),
        reason: reason.to_string(),
    }
}

/// The files a commit removes and adds.
struct Changes<'a> {
    removed: &'a HashSet<String>,
    added: &'a [DataFile],
    deletes: &'a [(i32, DataFile)],
    referenced: &'a HashSet<String>,
}
