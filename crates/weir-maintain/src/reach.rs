//! Which files a table's metadata references: manifest lists, manifests and
//! live data/delete files per snapshot. Each manifest is read once, however
//! many snapshots share it.

use std::collections::{HashMap, HashSet};

use iceberg::spec::ManifestFile;
use iceberg::table::Table;

use crate::{MaintainError, Result};

/// What one manifest holds.
#[derive(Debug, Default, Clone)]
pub(crate) struct ManifestFiles {
    /// Files alive (ADDED or EXISTING) in this manifest, with their sizes.
    pub alive: Vec<(String, u64)>,
    /// Files recorded as DELETED by this manifest.
    pub deleted: Vec<(String, u64)>,
}

/// Reads manifest lists and manifests of a table, caching by path.
pub(crate) struct Reach<'a> {
    table: &'a Table,
    manifests: HashMap<String, ManifestFiles>,
}

impl<'a> Reach<'a> {
    pub(crate) fn new(table: &'a Table) -> Self {
        Self {
            table,
            manifests: HashMap::new(),
        }
    }

    fn err(&self, e: iceberg::Error) -> MaintainError {
        MaintainError::Read {
            table: self.table.identifier().to_string(),
            source: Box::new(e),
        }
    }

    /// The manifest list path and manifests of one snapshot of `version`
    /// (the table as loaded at some point; may be older than `self.table`).
    pub(crate) async fn manifest_list(
        &self,
        version: &Table,
        snapshot_id: i64,
    ) -> Result<(String, Vec<ManifestFile>)> {
        let snapshot = version
            .metadata()
            .snapshot_by_id(snapshot_id)
            .ok_or_else(|| MaintainError::Rewrite {
                table: self.table.identifier().to_string(),
                message: format!("snapshot {snapshot_id} not found"),
            })?;
        let list = version
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(|e| self.err(e))?;
        Ok((
            snapshot.manifest_list().to_string(),
            list.entries().to_vec(),
        ))
    }

    /// The files one manifest references (read once, then cached).
    pub(crate) async fn manifest(&mut self, manifest: &ManifestFile) -> Result<&ManifestFiles> {
        if !self.manifests.contains_key(&manifest.manifest_path) {
            let loaded = manifest
                .load_manifest(self.table.file_io())
                .await
                .map_err(|e| self.err(e))?;
            let mut files = ManifestFiles::default();
            for e in loaded.entries() {
                let f = e.data_file();
                let item = (f.file_path().to_string(), f.file_size_in_bytes());
                if e.is_alive() {
                    files.alive.push(item);
                } else {
                    files.deleted.push(item);
                }
            }
            self.manifests.insert(manifest.manifest_path.clone(), files);
        }
        Ok(&self.manifests[&manifest.manifest_path])
    }

    /// Every file path the given snapshots of `version` reference: manifest
    /// lists, manifests and live data/delete files.
    pub(crate) async fn referenced(
        &mut self,
        version: &Table,
        snapshot_ids: impl IntoIterator<Item = i64>,
    ) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        let mut seen = HashSet::new();
        for id in snapshot_ids {
            let (list_path, manifests) = self.manifest_list(version, id).await?;
            out.insert(list_path);
            for m in manifests {
                out.insert(m.manifest_path.clone());
                if seen.insert(m.manifest_path.clone()) {
                    let files = self.manifest(&m).await?;
                    out.extend(files.alive.iter().map(|(p, _)| p.clone()));
                }
            }
        }
        Ok(out)
    }
}

/// A path without its scheme and leading slashes, so `file:///a/b`,
/// `file:/a/b` and an object-store key `a/b` compare equal.
pub(crate) fn normalize(path: &str) -> &str {
    let rest = match path.find("://") {
        Some(i) => &path[i + 3..],
        None => path.strip_prefix("file:").unwrap_or(path),
    };
    rest.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn paths_compare_across_forms() {
        assert_eq!(normalize("file:///tmp/w/a.parquet"), "tmp/w/a.parquet");
        assert_eq!(normalize("file:/tmp/w/a.parquet"), "tmp/w/a.parquet");
        assert_eq!(normalize("tmp/w/a.parquet"), "tmp/w/a.parquet");
        assert_eq!(normalize("s3://bucket/w/a.parquet"), "bucket/w/a.parquet");
    }
}
