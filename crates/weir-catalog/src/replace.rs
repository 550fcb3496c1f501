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

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::TableIdent;
use iceberg::spec::{
    DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary,
};
use iceberg::table::Table;
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::lakehouse::Lakehouse;
use crate::manifests::MergePolicy;
use crate::retry::{Backoff, Retry};
use crate::swap::write_next_metadata;
use crate::watermark::{table_sources, table_watermarks};
use crate::writer::COMMIT_ID_KEY;

/// What a replace commit did.
#[derive(Debug, Clone)]
pub struct ReplaceOutcome {
    pub table: Table,
    pub snapshot_id: i64,
    pub attempts: u32,
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
    let Plan {
        removed,
        added,
        merge,
        changes_rows,
        purge,
        deletes,
        referenced,
    } = plan;
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
        let current = table
            .metadata()
            .current_snapshot()
            .ok_or_else(|| replace_error(&name, "table has no snapshot"))?;
        let list = table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(|e| CatalogError::iceberg(&name, e))?;
        // Rebase the staged manifests onto the new head when only appends
        // landed since they were written (the common case beside a streaming
        // writer: one manifest list per attempt, no manifest rewritten);
        // restage when anything else changed the manifests they were built on.
        let rebased = staged.as_ref().and_then(|s| s.rebase(list.entries()));
        let manifests = match rebased {
            Some(m) => m.map_err(|reason| CatalogError::Fenced {
                table: name.clone(),
                reason,
            })?,
            None => {
                let fresh = Staged::build(
                    &table,
                    list.entries(),
                    Changes {
                        removed,
                        added,
                        deletes,
                        referenced,
                    },
                    merge,
                    purge,
                    commit_id,
                )
                .await?;
                if fresh.is_noop() {
                    return Ok(None);
                }
                let manifests = fresh.manifests();
                staged = Some(fresh);
                manifests
            }
        };
        let s = staged.as_ref().expect("staged above");
        let location = finish(&table, s, manifests, &properties, commit_id, changes_rows).await?;
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

/// Manifests written once for a replace: the base manifests that touched the
/// removed files, rewritten with those entries DELETED, and one manifest of
/// the added files. Sequence numbers are left unassigned (inherited from the
/// manifest list) so the same files serve every attempt.
struct Staged {
    snapshot_id: i64,
    /// Paths of every manifest in the snapshot the staging was built on.
    base: HashSet<String>,
    /// Base manifests carried over untouched.
    kept: Vec<ManifestFile>,
    /// Rewritten manifests and the manifest of added files.
    written: Vec<ManifestFile>,
    deleted_files: u64,
    deleted_rows: u64,
    deleted_bytes: u64,
    added_files: u64,
    added_rows: u64,
    added_bytes: u64,
    added_delete_files: u64,
    added_position_deletes: u64,
    added_delete_bytes: u64,
    /// Base manifests replaced by rewritten ones.
    manifests_replaced: u64,
    /// Live entries copied into rewritten manifests.
    entries_processed: u64,
}

impl Staged {
    fn is_noop(&self) -> bool {
        self.added_files == 0
            && self.deleted_files == 0
            && self.manifests_replaced == 0
            && self.added_delete_files == 0
    }

    fn manifests(&self) -> Vec<ManifestFile> {
        self.kept.iter().chain(&self.written).cloned().collect()
    }

    /// The manifests on top of a newer head, or `None` when the base changed
    /// in a way that needs restaging; `Err` when concurrent delete files may
    /// apply to the rows being rewritten (the group must be abandoned).
    fn rebase(
        &self,
        head: &[ManifestFile],
    ) -> Option<std::result::Result<Vec<ManifestFile>, String>> {
        let head_paths: HashSet<&str> = head.iter().map(|m| m.manifest_path.as_str()).collect();
        if !self.base.iter().all(|p| head_paths.contains(p.as_str())) {
            return None;
        }
        let extra: Vec<&ManifestFile> = head
            .iter()
            .filter(|m| !self.base.contains(&m.manifest_path))
            .collect();
        if extra
            .iter()
            .any(|m| m.content == ManifestContentType::Deletes)
        {
            return Some(Err(
                "delete files were committed meanwhile and may apply to the rewritten rows".into(),
            ));
        }
        let mut manifests = self.manifests();
        manifests.extend(extra.into_iter().cloned());
        Some(Ok(manifests))
    }

    async fn build(
        table: &Table,
        list: &[ManifestFile],
        changes: Changes<'_>,
        merge: Option<MergePolicy>,
        purge: bool,
        commit_id: Uuid,
    ) -> Result<Staged> {
        let Changes {
            removed,
            added,
            deletes,
            referenced,
        } = changes;
        let name = table.identifier().to_string();
        let fail = |reason: String| CatalogError::Replace {
            table: name.clone(),
            reason,
        };
        let ice = |e: iceberg::Error| CatalogError::iceberg(name.clone(), e);
        let metadata = table.metadata();
        if metadata.format_version() == FormatVersion::V1 {
            return Err(fail("format v1 tables are not supported".into()));
        }
        let file_io = table.file_io();
        let snapshot_id = new_snapshot_id(table);
        let meta_dir = format!("{}/metadata", metadata.location());
        let attempt = Uuid::now_v7();
        let mut staged = Staged {
            snapshot_id,
            base: list.iter().map(|m| m.manifest_path.clone()).collect(),
            kept: Vec::new(),
            written: Vec::new(),
            deleted_files: 0,
            deleted_rows: 0,
            deleted_bytes: 0,
            added_files: 0,
            added_rows: 0,
            added_bytes: 0,
            added_delete_files: 0,
            added_position_deletes: 0,
            added_delete_bytes: 0,
            manifests_replaced: 0,
            entries_processed: 0,
        };
        // Small data manifests to merge: only specs with at least two.
        let mergeable: HashSet<&str> = match merge {
            Some(policy) => policy.mergeable(list),
            None => HashSet::new(),
        };
        let mut found: HashSet<String> = HashSet::new();
        let mut live_referenced: HashSet<String> = HashSet::new();
        // Touched manifests are merged into one rewritten manifest per
        // partition spec (removed files DELETED, the rest EXISTING), so a
        // compaction of N small appends leaves one manifest, not N.
        // A merged manifest is closed once the manifests it took in reach the
        // merge target; compaction merges without a limit.
        let target = merge.map_or(u64::MAX, |p| p.target_bytes);
        let mut writers: BTreeMap<i32, (ManifestWriter, u64)> = BTreeMap::new();
        let mut rolled = 0u32;
        for manifest in list {
            if manifest.content != ManifestContentType::Data {
                staged.kept.push(manifest.clone());
                continue;
            }
            let merging = mergeable.contains(manifest.manifest_path.as_str());
            let loaded = manifest.load_manifest(file_io).await.map_err(ice)?;
            if !referenced.is_empty() {
                for e in loaded.entries().iter().filter(|e| e.is_alive()) {
                    let path = e.data_file().file_path();
                    if referenced.contains(path) && !removed.contains(path) {
                        live_referenced.insert(path.to_string());
                    }
                }
            }
            let touches = merging
                || (purge && loaded.entries().iter().any(|e| !e.is_alive()))
                || loaded
                    .entries()
                    .iter()
                    .any(|e| e.is_alive() && removed.contains(e.data_file().file_path()));
            if !touches {
                staged.kept.push(manifest.clone());
                continue;
            }
            staged.manifests_replaced += 1;
            let spec_id = manifest.partition_spec_id;
            let size = manifest.manifest_length.max(0) as u64;
            if writers
                .get(&spec_id)
                .is_some_and(|(_, bytes)| bytes + size > target)
            {
                let (full, _) = writers.remove(&spec_id).expect("checked above");
                staged
                    .written
                    .push(full.write_manifest_file().await.map_err(ice)?);
            }
            let (writer, bytes) = match writers.entry(spec_id) {
                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => {
                    let spec = metadata
                        .partition_spec_by_id(spec_id)
                        .ok_or_else(|| fail(format!("unknown partition spec {spec_id}")))?;
                    rolled += 1;
                    let path = format!("{meta_dir}/{commit_id}-{attempt}-r{spec_id}-{rolled}.avro");
                    let out = file_io.new_output(&path).map_err(ice)?;
                    let writer = ManifestWriterBuilder::new(
                        out,
                        Some(snapshot_id),
                        metadata.current_schema().clone(),
                        spec.as_ref().clone(),
                    )
                    .build_v2_data();
                    v.insert((writer, 0))
                }
            };
            *bytes += size;
            for e in loaded.entries().iter().filter(|e| e.is_alive()) {
                let (Some(seq), file_seq) = (e.sequence_number(), e.file_sequence_number) else {
                    return Err(fail("manifest entry without a sequence number".into()));
                };
                let file = e.data_file().clone();
                if removed.contains(file.file_path()) {
                    found.insert(file.file_path().to_string());
                    staged.deleted_files += 1;
                    staged.deleted_rows += file.record_count();
                    staged.deleted_bytes += file.file_size_in_bytes();
                    writer.add_delete_file(file, seq, file_seq).map_err(ice)?;
                } else {
                    staged.entries_processed += 1;
                    let added_by = e.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(file, added_by, seq, file_seq)
                        .map_err(ice)?;
                }
            }
        }
        for (_, (writer, _)) in writers {
            staged
                .written
                .push(writer.write_manifest_file().await.map_err(ice)?);
        }
        if found.len() != removed.len() {
            let missing: Vec<&String> = removed.difference(&found).take(3).collect();
            return Err(CatalogError::Fenced {
                table: name.clone(),
                reason: format!(
                    "{} of the files to replace are no longer live (e.g. {missing:?}); another job changed them",
                    removed.len() - found.len()
                ),
            });
        }
        if live_referenced.len() != referenced.len() {
            return Err(CatalogError::Fenced {
                table: name.clone(),
                reason: format!(
                    "{} of the data files the new delete files point at are no longer live; another job rewrote them",
                    referenced.len() - live_referenced.len()
                ),
            });
        }
        // One delete manifest per partition spec (a position delete file
        // lies in its data file's spec and partition).
        let mut by_spec: BTreeMap<i32, Vec<&DataFile>> = BTreeMap::new();
        for (spec_id, file) in deletes {
            by_spec.entry(*spec_id).or_default().push(file);
        }
        for (spec_id, files) in by_spec {
            let spec = metadata
                .partition_spec_by_id(spec_id)
                .ok_or_else(|| fail(format!("unknown partition spec {spec_id}")))?;
            let path = format!("{meta_dir}/{commit_id}-{attempt}-d{spec_id}.avro");
            let out = file_io.new_output(&path).map_err(ice)?;
            let mut writer = ManifestWriterBuilder::new(
                out,
                Some(snapshot_id),
                metadata.current_schema().clone(),
                spec.as_ref().clone(),
            )
            .build_v2_deletes();
            for file in files {
                staged.added_delete_files += 1;
                staged.added_position_deletes += file.record_count();
                staged.added_delete_bytes += file.file_size_in_bytes();
                writer.add_file(file.clone(), -1).map_err(ice)?;
            }
            staged
                .written
                .push(writer.write_manifest_file().await.map_err(ice)?);
        }
        if !added.is_empty() {
            let path = format!("{meta_dir}/{commit_id}-{attempt}-a.avro");
            let out = file_io.new_output(&path).map_err(ice)?;
            let mut writer = ManifestWriterBuilder::new(
                out,
                Some(snapshot_id),
                metadata.current_schema().clone(),
                metadata.default_partition_spec().as_ref().clone(),
            )
            .build_v2_data();
            for file in added {
                staged.added_files += 1;
                staged.added_rows += file.record_count();
                staged.added_bytes += file.file_size_in_bytes();
                // A negative sequence number leaves it unassigned: readers
                // inherit the snapshot's, whichever attempt lands.
                writer.add_file(file.clone(), -1).map_err(ice)?;
            }
            staged
                .written
                .push(writer.write_manifest_file().await.map_err(ice)?);
        }
        Ok(staged)
    }
}

/// Writes the manifest list and the metadata file of the replace snapshot on
/// top of `table`'s head; returns the new metadata location.
async fn finish(
    table: &Table,
    staged: &Staged,
    manifests: Vec<ManifestFile>,
    properties: &HashMap<String, String>,
    commit_id: Uuid,
    changes_rows: bool,
) -> Result<String> {
    let name = table.identifier().to_string();
    let fail = |reason: &str| replace_error(&name, reason);
    let ice = |e: iceberg::Error| CatalogError::iceberg(name.clone(), e);
    let metadata = table.metadata();
    let current = metadata
        .current_snapshot()
        .ok_or_else(|| fail("table has no snapshot"))?;
    let file_io = table.file_io();
    let snapshot_id = staged.snapshot_id;
    let next_seq = metadata.next_sequence_number();
    let meta_dir = format!("{}/metadata", metadata.location());
    let list_path = format!("{meta_dir}/snap-{snapshot_id}-{next_seq}-{commit_id}.avro");
    let out = file_io.new_output(&list_path).map_err(ice)?;
    let mut list_writer = ManifestListWriter::v2(
        out.writer().await.map_err(ice)?,
        snapshot_id,
        Some(current.snapshot_id()),
        next_seq,
    );
    list_writer
        .add_manifests(manifests.into_iter())
        .map_err(ice)?;
    list_writer.close().await.map_err(ice)?;

    let mut props = properties.clone();
    props.insert(COMMIT_ID_KEY.into(), commit_id.to_string());
    // Carry the source watermarks forward so they survive snapshot expiry.
    for source in table_sources(table) {
        props.extend(table_watermarks(table, &source).to_properties(&source));
    }
    for (k, v) in [
        ("added-data-files", staged.added_files),
        ("deleted-data-files", staged.deleted_files),
        ("added-records", staged.added_rows),
        ("deleted-records", staged.deleted_rows),
        (
            "added-files-size",
            staged.added_bytes + staged.added_delete_bytes,
        ),
        ("removed-files-size", staged.deleted_bytes),
    ] {
        props.insert(k.into(), v.to_string());
    }
    if staged.added_delete_files > 0 {
        for (k, v) in [
            ("added-delete-files", staged.added_delete_files),
            ("added-position-delete-files", staged.added_delete_files),
            ("added-position-deletes", staged.added_position_deletes),
        ] {
            props.insert(k.into(), v.to_string());
        }
    }
    if staged.manifests_replaced > 0 {
        let created = staged.written.len() as u64;
        for (k, v) in [
            ("manifests-created", created),
            ("manifests-replaced", staged.manifests_replaced),
            ("manifests-kept", staged.kept.len() as u64),
            ("entries-processed", staged.entries_processed),
        ] {
            props.insert(k.into(), v.to_string());
        }
    }
    let totals = &current.summary().additional_properties;
    for (k, plus, minus) in [
        ("total-records", staged.added_rows, staged.deleted_rows),
        ("total-data-files", staged.added_files, staged.deleted_files),
        ("total-files-size", staged.added_bytes, staged.deleted_bytes),
    ] {
        if let Some(total) = totals.get(k).and_then(|v| v.parse::<u64>().ok()) {
            props.insert(k.into(), (total + plus).saturating_sub(minus).to_string());
        }
    }
    for (k, plus) in [
        ("total-delete-files", staged.added_delete_files),
        ("total-position-deletes", staged.added_position_deletes),
        ("total-equality-deletes", 0),
    ] {
        let total = totals.get(k).and_then(|v| v.parse::<u64>().ok());
        match total {
            Some(t) => {
                props.insert(k.into(), (t + plus).to_string());
            }
            None if plus > 0 => {
                props.insert(k.into(), plus.to_string());
            }
            None => {}
        }
    }
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(current.snapshot_id()))
        .with_sequence_number(next_seq)
        .with_summary(Summary {
            // Removing files without replacements drops rows (retention);
            // a manifest merge alone is a `replace` without data change.
            operation: if staged.added_files == 0
                && (staged.deleted_files > 0 || staged.added_delete_files > 0)
            {
                Operation::Delete
            } else if changes_rows {
                Operation::Overwrite
            } else {
                Operation::Replace
            },
            additional_properties: props,
        })
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build();

    let current_location = table
        .metadata_location()
        .ok_or_else(|| fail("table has no metadata location"))?;
    let new_metadata = metadata
        .clone()
        .into_builder(Some(current_location.to_string()))
        .add_snapshot(snapshot)
        .and_then(|b| {
            b.set_ref(
                MAIN_BRANCH,
                SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
            )
        })
        .and_then(|b| b.build())
        .map_err(ice)?
        .metadata;
    write_next_metadata(table, &new_metadata).await
}

fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) as i64).wrapping_abs();
        if id > 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}
