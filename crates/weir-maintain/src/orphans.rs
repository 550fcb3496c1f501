//! Orphan file removal: files under a table's location that no snapshot,
//! metadata-log entry or statistics file references, older than a safety age.
//!
//! Writers put files in place before they commit (design rule 1), so a young
//! unreferenced file may be part of a commit in flight: only files older than
//! `older_than` are candidates. The listing is taken before the metadata is
//! loaded, so a file committed in between is seen as referenced.
//!
//! Only the table's own files are candidates: files under its location, but
//! not under the location of any other live table of the catalog nested in
//! it (`public."victim/data"` created before Weir kept names one path
//! component lies in `public.victim`'s directory), and not referenced by a
//! table whose location holds this one's. Locations compare as whole path
//! components, so `victim2` is never inside `victim`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use iceberg::TableIdent;
use iceberg::table::Table;
use object_store::ObjectStoreExt;
use serde::Serialize;
use weir_catalog::location::is_within;
use weir_catalog::{CatalogError, Lakehouse};

use crate::job::{JobContext, JobReport, MaintenanceJob, Report, mib};
use crate::reach::{Reach, normalize};
use crate::schedule::{Job, JobError};
use crate::{MaintainError, Result};

/// Default safety age (as Iceberg's `remove_orphan_files`).
pub const DEFAULT_ORPHAN_AGE: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct OrphanOptions {
    pub older_than: Duration,
    pub dry_run: bool,
}

impl Default for OrphanOptions {
    fn default() -> Self {
        Self {
            older_than: DEFAULT_ORPHAN_AGE,
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OrphanReport {
    pub table: String,
    pub dry_run: bool,
    pub files_listed: usize,
    pub files_referenced: usize,
    /// Unreferenced but younger than the safety age: left alone.
    pub too_young: usize,
    /// Under the location of another live table nested in this one's (or
    /// outside this table's location): never touched.
    pub other_tables_files: usize,
    pub orphans_deleted: usize,
    pub bytes_deleted: u64,
    pub seconds: f64,
}

pub async fn remove_orphans(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &OrphanOptions,
) -> Result<OrphanReport> {
    let started = Instant::now();
    let name = ident.to_string();
    let mut report = OrphanReport {
        table: name.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let table = load_table(lakehouse, ident).await?;
    let location = table.metadata().location().to_string();
    // The lakehouse's own object store for the table's location (local
    // files or the S3 bucket, with the configured endpoint and credentials).
    let (store, root) = lakehouse.object_stores().resolve(&location)?;
    let prefix = root.path();
    // 1. List (before loading the metadata we compare against).
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| MaintainError::Rewrite {
            table: name.clone(),
            message: format!("listing {prefix}: {e}"),
        })?;
    report.files_listed = listed.len();
    // 2. Everything the current metadata references.
    let table = load_table(lakehouse, ident).await?;
    let mut referenced = referenced_files(&table).await?;
    report.files_referenced = referenced.len();
    // 3. Other tables' files: everything under the location of a table
    // nested in this one's is that table's; a table whose location holds
    // this one's may keep files here too, so what it references stays.
    let protected = other_tables(lakehouse, ident, &location, &mut referenced).await?;
    let referenced: HashSet<&str> = referenced.iter().map(|p| normalize(p)).collect();
    // Listed keys are relative to the store (no bucket): compare full locations.
    // 4. Unreferenced, this table's own and old enough → delete.
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(opts.older_than).unwrap_or(chrono::Duration::MAX);
    for object in listed {
        let full = root.url_of(object.location.as_ref());
        // Only files under the table's own location (the listing is by
        // path prefix: never a sibling such as `victim2` of `victim`).
        if !is_within(&full, &location) || protected.iter().any(|p| is_within(&full, p)) {
            report.other_tables_files += 1;
            continue;
        }
        if referenced.contains(normalize(&full)) {
            continue;
        }
        if object.last_modified > cutoff {
            report.too_young += 1;
            continue;
        }
        if !opts.dry_run
            && let Err(e) = store.delete(&object.location).await
        {
            tracing::warn!(path = %object.location, error = %e, "could not delete an orphan");
            continue;
        }
        tracing::debug!(path = %object.location, "orphan removed");
        report.orphans_deleted += 1;
        report.bytes_deleted += object.size;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The table `ident` as the catalog has it now.
async fn load_table(lakehouse: &Lakehouse, ident: &TableIdent) -> Result<Table> {
    let table = lakehouse
        .catalog()
        .load_table(ident)
        .await
        .map_err(|e| CatalogError::iceberg(ident.to_string(), e))?;
    Ok(table)
}

/// The roots of the other live tables nested in the `location` of table
/// `ident` (their files are theirs); adds to `referenced` what the tables
/// whose location holds this one's reference.
async fn other_tables(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    location: &str,
    referenced: &mut HashSet<String>,
) -> Result<Vec<String>> {
    let mut protected: Vec<String> = Vec::new();
    for other in lakehouse.table_locations().await? {
        if &other.ident == ident {
            continue;
        }
        for other_root in other.roots() {
            if is_within(&other_root, location) {
                protected.push(other_root);
            } else if is_within(location, &other_root) {
                let other_table =
                    lakehouse
                        .catalog()
                        .load_table(&other.ident)
                        .await
                        .map_err(|e| MaintainError::OverlappingTable {
                            table: ident.to_string(),
                            other: other.ident.to_string(),
                            other_location: other_root.clone(),
                            reason: e.to_string(),
                        })?;
                referenced.extend(referenced_files(&other_table).await?);
            }
        }
    }
    Ok(protected)
}

/// Every file the table's current metadata references: its metadata file
/// and log, statistics files, and what any snapshot reaches (manifest
/// lists, manifests, live data and delete files).
async fn referenced_files(table: &Table) -> Result<HashSet<String>> {
    let metadata = table.metadata();
    let mut referenced: HashSet<String> = HashSet::new();
    if let Some(loc) = table.metadata_location() {
        referenced.insert(loc.to_string());
    }
    referenced.extend(
        metadata
            .metadata_log()
            .iter()
            .map(|m| m.metadata_file.clone()),
    );
    referenced.extend(
        metadata
            .statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    referenced.extend(
        metadata
            .partition_statistics_iter()
            .map(|s| s.statistics_path.clone()),
    );
    let mut reach = Reach::new(table);
    let ids: Vec<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
    referenced.extend(reach.referenced(table, ids).await?);
    Ok(referenced)
}

#[async_trait::async_trait]
impl MaintenanceJob for OrphanOptions {
    fn name(&self) -> &'static str {
        Job::Orphans.name()
    }

    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        Ok(remove_orphans(ctx.lakehouse, ident, self).await?.into())
    }
}

impl Report for OrphanReport {
    fn summary(&self) -> String {
        format!("{} orphans deleted", self.orphans_deleted)
    }

    fn detail(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would delete" } else { "deleted" };
        format!(
            "{}: {verb} {} orphans ({:.1} MiB) of {} files listed, {} referenced, {} too young, {:.2} s",
            self.table,
            self.orphans_deleted,
            mib(self.bytes_deleted),
            self.files_listed,
            self.files_referenced,
            self.too_young,
            self.seconds,
        )
    }
}
