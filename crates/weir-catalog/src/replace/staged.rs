//! The manifests of a replace snapshot, written once and rebased onto newer
//! heads while only appends land (see the module above).

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::{
    DataFile, FormatVersion, ManifestContentType, ManifestFile, ManifestWriter,
    ManifestWriterBuilder, PartitionSpec,
};
use iceberg::table::Table;
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::manifests::MergePolicy;

use super::Changes;

/// Manifests written once for a replace: the base manifests that touched the
/// removed files, rewritten with those entries DELETED, and one manifest of
/// the added files. Sequence numbers are left unassigned (inherited from the
/// manifest list) so the same files serve every attempt.
#[derive(Default)]
pub(super) struct Staged {
    pub(super) snapshot_id: i64,
    /// Paths of every manifest in the snapshot the staging was built on.
    base: HashSet<String>,
    /// Base manifests carried over untouched.
    pub(super) kept: Vec<ManifestFile>,
    /// Rewritten manifests and the manifest of added files.
    pub(super) written: Vec<ManifestFile>,
    pub(super) deleted_files: u64,
    pub(super) deleted_rows: u64,
    pub(super) deleted_bytes: u64,
    pub(super) added_files: u64,
    pub(super) added_rows: u64,
    pub(super) added_bytes: u64,
    pub(super) added_delete_files: u64,
    pub(super) added_position_deletes: u64,
    pub(super) added_delete_bytes: u64,
    /// Base manifests replaced by rewritten ones.
    pub(super) manifests_replaced: u64,
    /// Live entries copied into rewritten manifests.
    pub(super) entries_processed: u64,
}

/// How a staging rewrites the base's data manifests.
pub(super) struct Rewrite {
    /// Also merge small data manifests (see `Plan::merge`).
    pub(super) merge: Option<MergePolicy>,
    /// Also rewrite manifests that still list removed files (erasure).
    pub(super) purge: bool,
    pub(super) commit_id: Uuid,
}

impl Staged {
    pub(super) fn is_noop(&self) -> bool {
        self.added_files == 0
            && self.deleted_files == 0
            && self.manifests_replaced == 0
            && self.added_delete_files == 0
    }

    pub(super) fn manifests(&self) -> Vec<ManifestFile> {
        self.kept.iter().chain(&self.written).cloned().collect()
    }

    /// The manifests on top of a newer head, or `None` when the base changed
    /// in a way that needs restaging; `Err` when concurrent delete files may
    /// apply to the rows being rewritten (the group must be abandoned).
    pub(super) fn rebase(
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

    /// Stages `changes` on top of the snapshot whose manifests are `list`.
    pub(super) async fn build(
        table: &Table,
        list: &[ManifestFile],
        changes: Changes<'_>,
        rewrite: Rewrite,
    ) -> Result<Staged> {
        let out = Outputs::new(table, rewrite.commit_id)?;
        let mut staged = Staged {
            snapshot_id: out.snapshot_id,
            base: list.iter().map(|m| m.manifest_path.clone()).collect(),
            ..Staged::default()
        };
        let live = staged
            .rewrite_data_manifests(&out, list, &changes, &rewrite)
            .await?;
        live.check(&out.name, &changes)?;
        staged.write_deletes(&out, changes.deletes).await?;
        staged.write_added(&out, changes.added).await?;
        Ok(staged)
    }

    /// Carries the data manifests over: untouched ones as they are, the
    /// ones listing removed files (or merged, or purged) rewritten.
    async fn rewrite_data_manifests(
        &mut self,
        out: &Outputs<'_>,
        list: &[ManifestFile],
        changes: &Changes<'_>,
        rewrite: &Rewrite,
    ) -> Result<Live> {
        // Small data manifests to merge: only specs with at least two.
        let mergeable: HashSet<&str> = match rewrite.merge {
            Some(policy) => policy.mergeable(list),
            None => HashSet::new(),
        };
        let mut live = Live::default();
        let mut merged = Merged::new(rewrite.merge);
        for manifest in list {
            if manifest.content != ManifestContentType::Data {
                self.kept.push(manifest.clone());
                continue;
            }
            let loaded = manifest
                .load_manifest(out.table.file_io())
                .await
                .map_err(|e| out.ice(e))?;
            let alive = || loaded.entries().iter().filter(|e| e.is_alive());
            if !changes.referenced.is_empty() {
                for e in alive() {
                    let path = e.data_file().file_path();
                    if changes.referenced.contains(path) && !changes.removed.contains(path) {
                        live.referenced.insert(path.to_string());
                    }
                }
            }
            let touches = mergeable.contains(manifest.manifest_path.as_str())
                || (rewrite.purge && loaded.entries().iter().any(|e| !e.is_alive()))
                || alive().any(|e| changes.removed.contains(e.data_file().file_path()));
            if !touches {
                self.kept.push(manifest.clone());
                continue;
            }
            self.manifests_replaced += 1;
            let writer = merged.writer_for(out, manifest, self).await?;
            for e in alive() {
                let (Some(seq), file_seq) = (e.sequence_number(), e.file_sequence_number) else {
                    return Err(out.fail("manifest entry without a sequence number".into()));
                };
                let file = e.data_file().clone();
                if changes.removed.contains(file.file_path()) {
                    live.found.insert(file.file_path().to_string());
                    self.deleted_files += 1;
                    self.deleted_rows += file.record_count();
                    self.deleted_bytes += file.file_size_in_bytes();
                    writer
                        .add_delete_file(file, seq, file_seq)
                        .map_err(|e| out.ice(e))?;
                } else {
                    self.entries_processed += 1;
                    let added_by = e.snapshot_id().unwrap_or(manifest.added_snapshot_id);
                    writer
                        .add_existing_file(file, added_by, seq, file_seq)
                        .map_err(|e| out.ice(e))?;
                }
            }
        }
        merged.close(out, self).await?;
        Ok(live)
    }

    /// One delete manifest per partition spec (a position delete file lies
    /// in its data file's spec and partition).
    async fn write_deletes(
        &mut self,
        out: &Outputs<'_>,
        deletes: &[(i32, DataFile)],
    ) -> Result<()> {
        let mut by_spec: BTreeMap<i32, Vec<&DataFile>> = BTreeMap::new();
        for (spec_id, file) in deletes {
            by_spec.entry(*spec_id).or_default().push(file);
        }
        for (spec_id, files) in by_spec {
            let spec = out.spec(spec_id)?;
            let mut writer = out
                .writer(&spec, &format!("d{spec_id}"))?
                .build_v2_deletes();
            for file in files {
                self.added_delete_files += 1;
                self.added_position_deletes += file.record_count();
                self.added_delete_bytes += file.file_size_in_bytes();
                writer.add_file(file.clone(), -1).map_err(|e| out.ice(e))?;
            }
            self.written
                .push(writer.write_manifest_file().await.map_err(|e| out.ice(e))?);
        }
        Ok(())
    }

    /// One manifest of the added data files, in the default spec.
    async fn write_added(&mut self, out: &Outputs<'_>, added: &[DataFile]) -> Result<()> {
        if added.is_empty() {
            return Ok(());
        }
        let spec = out.table.metadata().default_partition_spec().clone();
        let mut writer = out.writer(&spec, "a")?.build_v2_data();
        for file in added {
            self.added_files += 1;
            self.added_rows += file.record_count();
            self.added_bytes += file.file_size_in_bytes();
            // A negative sequence number leaves it unassigned: readers
            // inherit the snapshot's, whichever attempt lands.
            writer.add_file(file.clone(), -1).map_err(|e| out.ice(e))?;
        }
        self.written
            .push(writer.write_manifest_file().await.map_err(|e| out.ice(e))?);
        Ok(())
    }
}

/// What the rewritten manifests found still live.
#[derive(Default)]
struct Live {
    /// Files to remove that are live.
    found: HashSet<String>,
    /// Data files the new delete files point at that are live.
    referenced: HashSet<String>,
}

impl Live {
    /// Fenced unless every file to remove, and every data file a new delete
    /// file points at, is still live.
    fn check(&self, table: &str, changes: &Changes<'_>) -> Result<()> {
        let removed = changes.removed;
        if self.found.len() != removed.len() {
            let missing: Vec<&String> = removed.difference(&self.found).take(3).collect();
            return Err(CatalogError::Fenced {
                table: table.to_string(),
                reason: format!(
                    "{} of the files to replace are no longer live (e.g. {missing:?}); another job changed them",
                    removed.len() - self.found.len()
                ),
            });
        }
        if self.referenced.len() != changes.referenced.len() {
            return Err(CatalogError::Fenced {
                table: table.to_string(),
                reason: format!(
                    "{} of the data files the new delete files point at are no longer live; another job rewrote them",
                    changes.referenced.len() - self.referenced.len()
                ),
            });
        }
        Ok(())
    }
}

/// The rewritten data manifests, one open per partition spec: touched
/// manifests are merged into one rewritten manifest per spec (removed files
/// DELETED, the rest EXISTING), so a compaction of N small appends leaves
/// one manifest, not N. A merged manifest is closed once the manifests it
/// took in reach the merge target; compaction merges without a limit.
struct Merged {
    target: u64,
    /// Open writers per spec, with the bytes of the manifests taken in.
    writers: BTreeMap<i32, (ManifestWriter, u64)>,
    rolled: u32,
}

impl Merged {
    fn new(merge: Option<MergePolicy>) -> Self {
        Merged {
            target: merge.map_or(u64::MAX, |p| p.target_bytes),
            writers: BTreeMap::new(),
            rolled: 0,
        }
    }

    /// The writer taking in `manifest`'s entries: its spec's open one, or a
    /// new one when that would pass the target (the full one is written).
    async fn writer_for(
        &mut self,
        out: &Outputs<'_>,
        manifest: &ManifestFile,
        staged: &mut Staged,
    ) -> Result<&mut ManifestWriter> {
        let spec_id = manifest.partition_spec_id;
        let size = manifest.manifest_length.max(0) as u64;
        if self
            .writers
            .get(&spec_id)
            .is_some_and(|(_, bytes)| bytes + size > self.target)
            && let Some((full, _)) = self.writers.remove(&spec_id)
        {
            staged
                .written
                .push(full.write_manifest_file().await.map_err(|e| out.ice(e))?);
        }
        let (writer, bytes) = match self.writers.entry(spec_id) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let spec = out.spec(spec_id)?;
                self.rolled += 1;
                let suffix = format!("r{spec_id}-{}", self.rolled);
                v.insert((out.writer(&spec, &suffix)?.build_v2_data(), 0))
            }
        };
        *bytes += size;
        Ok(writer)
    }

    /// Writes the open manifests.
    async fn close(self, out: &Outputs<'_>, staged: &mut Staged) -> Result<()> {
        for (_, (writer, _)) in self.writers {
            staged
                .written
                .push(writer.write_manifest_file().await.map_err(|e| out.ice(e))?);
        }
        Ok(())
    }
}

/// Where one attempt writes its manifests, and its errors.
struct Outputs<'a> {
    table: &'a Table,
    name: String,
    snapshot_id: i64,
    /// `<metadata dir>/<commit id>-<attempt>`: every manifest of one attempt.
    prefix: String,
}

impl<'a> Outputs<'a> {
    fn new(table: &'a Table, commit_id: Uuid) -> Result<Self> {
        let name = table.identifier().to_string();
        let metadata = table.metadata();
        if metadata.format_version() == FormatVersion::V1 {
            return Err(CatalogError::Replace {
                table: name,
                reason: "format v1 tables are not supported".into(),
            });
        }
        Ok(Outputs {
            table,
            snapshot_id: new_snapshot_id(table),
            prefix: format!(
                "{}/metadata/{commit_id}-{}",
                metadata.location(),
                Uuid::now_v7()
            ),
            name,
        })
    }

    fn fail(&self, reason: String) -> CatalogError {
        CatalogError::Replace {
            table: self.name.clone(),
            reason,
        }
    }

    fn ice(&self, e: iceberg::Error) -> CatalogError {
        CatalogError::iceberg(self.name.clone(), e)
    }

    fn spec(&self, spec_id: i32) -> Result<iceberg::spec::PartitionSpecRef> {
        self.table
            .metadata()
            .partition_spec_by_id(spec_id)
            .cloned()
            .ok_or_else(|| self.fail(format!("unknown partition spec {spec_id}")))
    }

    /// A manifest writer in `spec` for `<prefix>-<suffix>.avro`.
    fn writer(&self, spec: &PartitionSpec, suffix: &str) -> Result<ManifestWriterBuilder> {
        let path = format!("{}-{suffix}.avro", self.prefix);
        let out = self
            .table
            .file_io()
            .new_output(&path)
            .map_err(|e| self.ice(e))?;
        Ok(ManifestWriterBuilder::new(
            out,
            Some(self.snapshot_id),
            self.table.metadata().current_schema().clone(),
            spec.clone(),
        ))
    }
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
