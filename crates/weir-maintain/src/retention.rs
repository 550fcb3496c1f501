//! Retention: drop whole partitions older than a table's retention, as one
//! `delete` snapshot of the files in them — only the part the table's
//! rollups already cover.
//!
//! A file goes when the time range of its partition (the `year`/`month`/
//! `day`/`hour` partition field) ends before `now - retention`. When the
//! policy names rollup tables (silver points → gold 1 min/1 h/1 day), each
//! must have been refreshed past the file: its newest refresh records the
//! base table's sequence number it reflects (`weir.mv.base-sequence.<ns.t>`,
//! written by materialized-view refreshes), and only files with a sequence
//! number at or below every rollup's are dropped. A rollup that never
//! recorded one holds retention back, and the report says so.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use iceberg::TableIdent;
use iceberg::spec::{Literal, ManifestContentType, PartitionSpec, PrimitiveLiteral, Transform};
use iceberg::table::Table;
use serde::Serialize;
use weir_catalog::{CatalogError, Lakehouse, commit_replace};

use crate::job::{JobContext, JobReport, MaintenanceJob, Report, ScheduledTable, mib};
use crate::schedule::{Job, JobError};
use crate::{MaintainError, Result};

/// Summary key a rollup refresh writes: base table → sequence number reflected.
pub fn base_sequence_key(base: &str) -> String {
    format!("weir.mv.base-sequence.{base}")
}

#[derive(Debug, Clone, Default)]
pub struct RetentionOptions {
    /// Keep partitions newer than this.
    pub retention: Duration,
    /// Tables (`ns.t`) that must cover a file before it is dropped.
    pub requires: Vec<String>,
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionReport {
    pub table: String,
    pub dry_run: bool,
    pub retention_days: f64,
    pub cutoff: String,
    pub files_dropped: usize,
    pub rows_dropped: u64,
    pub bytes_dropped: u64,
    /// Expired files kept because a rollup does not cover them yet.
    pub files_held: usize,
    /// Why files were held back, e.g. a rollup never refreshed.
    pub held_because: Vec<String>,
    pub seconds: f64,
}

pub async fn apply_retention(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    opts: &RetentionOptions,
) -> Result<RetentionReport> {
    let started = Instant::now();
    let name = ident.to_string();
    let cutoff =
        Utc::now() - chrono::Duration::from_std(opts.retention).unwrap_or(chrono::Duration::MAX);
    let mut report = RetentionReport {
        table: name.clone(),
        dry_run: opts.dry_run,
        retention_days: opts.retention.as_secs_f64() / 86400.0,
        cutoff: cutoff.to_rfc3339(),
        ..Default::default()
    };
    let covered = covered_by_rollups(lakehouse, &name, &opts.requires, &mut report).await?;
    let table = lakehouse
        .catalog()
        .load_table(ident)
        .await
        .map_err(|e| CatalogError::iceberg(&name, e))?;
    let removed = expired_files(&table, cutoff, covered, &mut report).await?;
    if !removed.is_empty() && !opts.dry_run {
        let props = std::collections::HashMap::from([(
            "weir.maintenance".to_string(),
            "retention".to_string(),
        )]);
        match commit_replace(lakehouse, ident, &removed, Vec::new(), props).await {
            Ok(_) => {}
            Err(CatalogError::Fenced { reason, .. }) => {
                // Compaction rewrote some of them meanwhile: the next run retries.
                report
                    .held_because
                    .push(format!("concurrent rewrite: {reason}"));
                report.files_dropped = 0;
                report.rows_dropped = 0;
                report.bytes_dropped = 0;
            }
            Err(e) => return Err(e.into()),
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The highest sequence number of `table` (`ns.t`) every rollup in
/// `requires` has been refreshed from (`i64::MIN` when one never was: the
/// reason goes to the report).
async fn covered_by_rollups(
    lakehouse: &Lakehouse,
    table: &str,
    requires: &[String],
    report: &mut RetentionReport,
) -> Result<i64> {
    let mut covered = i64::MAX;
    for rollup in requires {
        let rollup_ident = TableIdent::from_strs(rollup.split('.'))
            .map_err(|e| CatalogError::iceberg(rollup, e))?;
        let loaded = lakehouse
            .catalog()
            .load_table(&rollup_ident)
            .await
            .map_err(|e| CatalogError::iceberg(rollup, e))?;
        let seq = weir_catalog::mv_last_refresh(loaded.metadata())
            .and_then(|s| {
                s.summary()
                    .additional_properties
                    .get(&base_sequence_key(table))
                    .cloned()
            })
            .and_then(|v| v.parse::<i64>().ok());
        match seq {
            Some(seq) => covered = covered.min(seq),
            None => {
                covered = i64::MIN;
                report
                    .held_because
                    .push(format!("{rollup} has not been refreshed from {table}"));
            }
        }
    }
    Ok(covered)
}

/// The live data files of `table` whose time partition ended by `cutoff`
/// and that rollups cover (sequence number ≤ `covered`), counted in the
/// report; expired files the rollups do not cover yet are counted as held.
async fn expired_files(
    table: &Table,
    cutoff: DateTime<Utc>,
    covered: i64,
    report: &mut RetentionReport,
) -> Result<HashSet<String>> {
    let read_err = |e: iceberg::Error| MaintainError::Read {
        table: table.identifier().to_string(),
        source: Box::new(e),
    };
    let metadata = table.metadata();
    let mut removed: HashSet<String> = HashSet::new();
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(removed);
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(read_err)?;
    let mut unpartitioned = false;
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data {
            continue;
        }
        let Some(spec) = metadata.partition_spec_by_id(manifest.partition_spec_id) else {
            continue;
        };
        let Some((index, transform)) = time_field(spec) else {
            unpartitioned = true;
            continue;
        };
        let loaded = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(read_err)?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            let value = file.partition().fields().get(index).cloned().flatten();
            let Some(end) = value.and_then(|v| partition_end(transform, &v)) else {
                continue;
            };
            if end > cutoff {
                continue;
            }
            if entry.sequence_number().unwrap_or(i64::MAX) > covered {
                report.files_held += 1;
                continue;
            }
            removed.insert(file.file_path().to_string());
            report.files_dropped += 1;
            report.rows_dropped += file.record_count();
            report.bytes_dropped += file.file_size_in_bytes();
        }
    }
    if unpartitioned {
        report
            .held_because
            .push("files without a time partition (year/month/day/hour) are never dropped".into());
    }
    Ok(removed)
}

/// The position and transform of a spec's time partition field.
fn time_field(spec: &PartitionSpec) -> Option<(usize, Transform)> {
    spec.fields()
        .iter()
        .enumerate()
        .find(|(_, f)| {
            matches!(
                f.transform,
                Transform::Year | Transform::Month | Transform::Day | Transform::Hour
            )
        })
        .map(|(i, f)| (i, f.transform))
}

/// The instant a time partition's range ends.
fn partition_end(transform: Transform, value: &Literal) -> Option<DateTime<Utc>> {
    let Literal::Primitive(PrimitiveLiteral::Int(v)) = value else {
        return None;
    };
    let v = i64::from(*v);
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = match transform {
        Transform::Hour => return DateTime::from_timestamp((v + 1) * 3600, 0),
        Transform::Day => epoch.checked_add_days(chrono::Days::new(u64::try_from(v + 1).ok()?))?,
        Transform::Month => {
            let months = v + 1;
            NaiveDate::from_ymd_opt(
                1970 + (months.div_euclid(12)) as i32,
                (months.rem_euclid(12) + 1) as u32,
                1,
            )?
        }
        Transform::Year => NaiveDate::from_ymd_opt(1970 + (v + 1) as i32, 1, 1)?,
        _ => return None,
    };
    debug_assert!(date.year() >= 1970);
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

impl RetentionOptions {
    /// Retention as the scheduler runs it: the policy's `retention_days` and
    /// `retention_requires`; `None` for tables without a retention.
    pub fn scheduled(on: &ScheduledTable<'_>) -> Option<Self> {
        Some(RetentionOptions {
            retention: on.policy.retention?,
            requires: on.policy.retention_requires.clone(),
            dry_run: false,
        })
    }
}

#[async_trait::async_trait]
impl MaintenanceJob for RetentionOptions {
    fn name(&self) -> &'static str {
        Job::Retention.name()
    }

    async fn run(&self, ctx: &JobContext<'_>, ident: &TableIdent) -> Result<JobReport, JobError> {
        Ok(apply_retention(ctx.lakehouse, ident, self).await?.into())
    }
}

impl Report for RetentionReport {
    fn summary(&self) -> String {
        format!(
            "{} files dropped, {} held ({})",
            self.files_dropped,
            self.files_held,
            self.held_because.join("; ")
        )
    }

    fn detail(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would drop" } else { "dropped" };
        format!(
            "{}: {verb} {} files ({} rows, {:.1} MiB) older than {}; {} expired files held{}{}",
            self.table,
            self.files_dropped,
            self.rows_dropped,
            mib(self.bytes_dropped),
            self.cutoff,
            self.files_held,
            if self.held_because.is_empty() {
                ""
            } else {
                ": "
            },
            self.held_because.join("; "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ranges_end_where_the_next_begins() {
        let lit = |v: i32| Literal::Primitive(PrimitiveLiteral::Int(v));
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            partition_end(Transform::Day, &lit(0)),
            Some(at("1970-01-02T00:00:00Z"))
        );
        assert_eq!(
            partition_end(Transform::Hour, &lit(25)),
            Some(at("1970-01-02T02:00:00Z"))
        );
        assert_eq!(
            partition_end(Transform::Month, &lit(11)),
            Some(at("1971-01-01T00:00:00Z"))
        );
        assert_eq!(
            partition_end(Transform::Month, &lit(671)),
            Some(at("2026-01-01T00:00:00Z"))
        );
        assert_eq!(
            partition_end(Transform::Year, &lit(56)),
            Some(at("2027-01-01T00:00:00Z"))
        );
    }
}
