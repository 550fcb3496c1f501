//! Manifest merging: iceberg-rust 0.10's fast append writes one manifest per
//! commit and never merges them (Java's `MergeAppend` does), so a table fed by
//! a streaming writer would plan every query over thousands of tiny manifests
//! and every commit would rewrite an ever longer manifest list. Weir merges
//! them itself, after appends and on demand, with the standard Iceberg table
//! properties:
//!
//! - `commit.manifest-merge.enabled` (default true),
//! - `commit.manifest.min-count-to-merge` (default 100): merge once a
//!   partition spec has this many small data manifests,
//! - `commit.manifest.target-size-bytes` (default 8 MiB): manifests below it
//!   are small, merged manifests are cut near it.
//!
//! A merge is a `replace` snapshot without data change (entries kept as
//! EXISTING with their original snapshot and sequence numbers), committed with
//! the same compare-and-swap and rebase as compaction.

use std::collections::{HashMap, HashSet};

use iceberg::TableIdent;
use iceberg::spec::{ManifestContentType, ManifestFile};
use iceberg::table::Table;

use crate::error::{CatalogError, Result};
use crate::lakehouse::Lakehouse;
use crate::replace::{Plan, ReplaceOutcome, commit_plan};

pub const MERGE_ENABLED: &str = "commit.manifest-merge.enabled";
pub const MIN_COUNT_TO_MERGE: &str = "commit.manifest.min-count-to-merge";
pub const TARGET_SIZE_BYTES: &str = "commit.manifest.target-size-bytes";

/// When and how small manifests are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergePolicy {
    /// Merge a partition spec's small manifests once there are this many (≥ 2).
    pub min_count: usize,
    /// Manifests below this size are small; merged ones are cut near it.
    pub target_bytes: u64,
}

impl Default for MergePolicy {
    fn default() -> Self {
        Self {
            min_count: 100,
            target_bytes: 8 << 20,
        }
    }
}

impl MergePolicy {
    /// The table's policy, or `None` when merging is disabled for it.
    pub fn for_table(table: &Table) -> Option<Self> {
        let props = table.metadata().properties();
        let enabled = props
            .get(MERGE_ENABLED)
            .is_none_or(|v| !v.eq_ignore_ascii_case("false"));
        if !enabled {
            return None;
        }
        let default = Self::default();
        let parse = |key: &str| props.get(key).and_then(|v| v.trim().parse::<u64>().ok());
        Some(Self {
            min_count: parse(MIN_COUNT_TO_MERGE)
                .map_or(default.min_count, |n| n as usize)
                .max(2),
            target_bytes: parse(TARGET_SIZE_BYTES)
                .unwrap_or(default.target_bytes)
                .max(1),
        })
    }

    /// Paths of the manifests in `list` this policy merges: small data
    /// manifests of every partition spec that has at least `min_count`.
    pub fn mergeable<'a>(&self, list: &'a [ManifestFile]) -> HashSet<&'a str> {
        let mut by_spec: HashMap<i32, Vec<&str>> = HashMap::new();
        for m in list {
            if m.content == ManifestContentType::Data
                && (m.manifest_length.max(0) as u64) < self.target_bytes
            {
                by_spec
                    .entry(m.partition_spec_id)
                    .or_default()
                    .push(m.manifest_path.as_str());
            }
        }
        by_spec
            .into_values()
            .filter(|paths| paths.len() >= self.min_count.max(2))
            .flatten()
            .collect()
    }
}

/// Merges the small data manifests of `ident` per `policy` in one `replace`
/// snapshot; `None` when there was nothing to merge.
pub async fn rewrite_manifests(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    policy: MergePolicy,
) -> Result<Option<ReplaceOutcome>> {
    let none = HashSet::new();
    let plan = Plan {
        removed: &none,
        added: &[],
        merge: Some(policy),
        changes_rows: false,
        purge: false,
        deletes: &[],
        referenced: &none,
    };
    let props = HashMap::from([(
        "weir.maintenance.job".to_string(),
        "rewrite-manifests".to_string(),
    )]);
    commit_plan(lakehouse, ident, plan, props).await
}

/// Rewrites the current snapshot's data manifests that still list removed
/// files (an Iceberg manifest keeps a DELETED entry, with the removed file's
/// column bounds, until it is rewritten): the first step of erasing rows for
/// good, before the older snapshots expire. `None` when none lists any.
pub async fn purge_removed_entries(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
) -> Result<Option<ReplaceOutcome>> {
    let none = HashSet::new();
    let plan = Plan {
        removed: &none,
        added: &[],
        merge: None,
        changes_rows: false,
        purge: true,
        deletes: &[],
        referenced: &none,
    };
    let props = HashMap::from([(
        "weir.maintenance.job".to_string(),
        "purge-removed-entries".to_string(),
    )]);
    commit_plan(lakehouse, ident, plan, props).await
}

/// After a commit to `table`: merges its small manifests when the table's
/// policy says so. Cheap when it doesn't (one manifest-list read).
pub async fn merge_manifests_if_needed(
    lakehouse: &Lakehouse,
    table: &Table,
) -> Result<Option<ReplaceOutcome>> {
    let Some(policy) = MergePolicy::for_table(table) else {
        return Ok(None);
    };
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok(None);
    };
    let name = table.identifier().to_string();
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(|e| CatalogError::iceberg(&name, e))?;
    if policy.mergeable(list.entries()).is_empty() {
        return Ok(None);
    }
    rewrite_manifests(lakehouse, table.identifier(), policy).await
}
