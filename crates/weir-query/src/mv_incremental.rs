//! Incremental refresh of the buckets the changes touched (issue 6 by day,
//! issue 21 by bucket, any partitioning: `mv_ranges`).
//!
//! A rollup view with a bucket column `bucket = date_bin(<≤ 1 day>, ts)`
//! (or `date_trunc('minute'|'hour'|'day', ts)`) over one base table holds
//! in each bucket exactly what the base rows of that bucket produce. When
//! the base only gained appends, row-level changes or compactions since the
//! view's base snapshot, only the buckets the changed files span need
//! recomputing: from the *current* base snapshot, so files compacted in the
//! meantime do not matter. Anything else (retention, equality deletes, an
//! expired base snapshot, no bucket column) is a full refresh.

use std::collections::BTreeSet;

use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNode;
use datafusion::logical_expr::{Expr, LogicalPlan};
use iceberg::spec::{
    DataContentType, DataFile, ManifestStatus, Operation, PrimitiveLiteral, PrimitiveType,
    SnapshotRef, Type,
};
use iceberg::table::Table;

use crate::error::Result;
use crate::mv_ranges::{DAY_MICROS, Ranges, ranges_of};

/// What an incremental refresh recomputes: the buckets in `ranges` (whole
/// buckets of the view, see `mv_ranges`), which lie in `days`; the view's
/// files whose buckets meet them are replaced.
#[derive(Debug, Clone)]
pub(crate) struct BucketRefresh {
    pub days: BTreeSet<i32>,
    pub ranges: Ranges,
    /// The base column that decides a row's bucket.
    pub time_column: String,
    /// The view's bucket column.
    pub view_column: String,
}

/// `Some` when the view whose query is `plan` (reading only `base` at
/// snapshot `until`) can be refreshed by recomputing the buckets the
/// changes after `since` up to `until` touched.
pub(crate) async fn plan_buckets(
    base: &Table,
    since: i64,
    until: i64,
    plan: &LogicalPlan,
) -> Result<Option<BucketRefresh>> {
    let Some((view_column, (time_column, width))) = plan
        .schema()
        .fields()
        .iter()
        .find_map(|f| Some((f.name().clone(), bucket_source(plan, f.name())?)))
    else {
        return Ok(None);
    };
    let metadata = base.metadata();
    let Some(field) = metadata.current_schema().field_by_name(&time_column) else {
        return Ok(None);
    };
    let nanos = match field.field_type.as_ref() {
        Type::Primitive(PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => false,
        Type::Primitive(PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs) => true,
        _ => return Ok(None),
    };
    let field_id = field.id;
    let Some(changes) = changes_since(base, since, until) else {
        return Ok(None);
    };
    let Some(files) = changed_data_files(base, &changes).await? else {
        return Ok(None);
    };
    let Some((ranges, days)) = ranges_of(&files, field_id, nanos, width) else {
        return Ok(None);
    };
    Ok(Some(BucketRefresh {
        days,
        ranges,
        time_column,
        view_column,
    }))
}

/// The snapshots of `base` after `since` up to `until`.
pub(crate) struct Changes {
    /// The appends among them.
    pub appends: Vec<SnapshotRef>,
    /// The `overwrite` and `delete` snapshots among them (row-level DML,
    /// INSERT OVERWRITE, retention): rows went away or changed in the days
    /// of the files they removed and added.
    pub overwrites: Vec<SnapshotRef>,
    /// Whether a `replace` among them rewrote data files (compaction, as
    /// opposed to a manifest merge) or an overwrite changed rows: the
    /// view's stored rows of the touched days are stale, and a merge of
    /// appended files' partials is not enough.
    pub files_rewritten: bool,
}

/// `None` unless only appends, replaces (which change no rows), overwrites
/// and deletes happened since `since`, and `since` is an ancestor of
/// `until`.
pub(crate) fn changes_since(base: &Table, since: i64, until: i64) -> Option<Changes> {
    let mut changes = Changes {
        appends: Vec::new(),
        overwrites: Vec::new(),
        files_rewritten: false,
    };
    for snapshot in iceberg::util::snapshot::ancestors_of(&base.metadata_ref(), until) {
        if snapshot.snapshot_id() == since {
            return Some(changes);
        }
        match snapshot.summary().operation {
            Operation::Append => changes.appends.push(snapshot.clone()),
            // Retention drops whole days: as before, a full refresh and no
            // rewrite until then (what views should keep of dropped days is
            // the retention policy's business, not the refresh's).
            Operation::Delete
                if snapshot
                    .summary()
                    .additional_properties
                    .get("weir.maintenance")
                    .is_some_and(|job| job == "retention") =>
            {
                return None;
            }
            Operation::Overwrite | Operation::Delete => {
                changes.overwrites.push(snapshot.clone());
                changes.files_rewritten = true;
            }
            Operation::Replace => {
                changes.files_rewritten |= weir_catalog::rewrote_data_files(&snapshot);
            }
        }
    }
    // `since` is not an ancestor (expired or rolled back).
    None
}

/// The data files whose days changed: those the appends added, those the
/// overwrites added or removed (from the manifests each wrote), and those
/// the overwrites' position delete files point at (merge-on-read: the
/// deleted rows lie within their data file's bounds). `None` when an
/// overwrite added equality deletes (which rows they hide is not told by
/// bounds on the time column) or a position delete file whose data file
/// cannot be told.
pub(crate) async fn changed_data_files(
    base: &Table,
    changes: &Changes,
) -> Result<Option<Vec<DataFile>>> {
    let mut files = added_data_files(base, &changes.appends).await?;
    for snapshot in &changes.overwrites {
        let mut referenced = std::collections::HashSet::new();
        for (status, file) in written_by(base, snapshot).await? {
            if status == ManifestStatus::Existing {
                continue;
            }
            match file.content_type() {
                DataContentType::Data => files.push(file),
                DataContentType::PositionDeletes if status == ManifestStatus::Added => {
                    match referenced_data_file(&file) {
                        Some(path) => {
                            referenced.insert(path);
                        }
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            }
        }
        if referenced.is_empty() {
            continue;
        }
        let mut found = 0;
        let list = base.manifest_list_reader(snapshot).load().await?;
        for manifest in list.entries() {
            if manifest.content != iceberg::spec::ManifestContentType::Data {
                continue;
            }
            let loaded = manifest.load_manifest(base.file_io()).await?;
            for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
                if referenced.contains(entry.data_file().file_path()) {
                    found += 1;
                    files.push(entry.data_file().clone());
                }
            }
        }
        if found != referenced.len() {
            return Ok(None);
        }
    }
    Ok(Some(files))
}

/// The one data file a position delete file points at: its
/// `referenced_data_file`, else equal bounds on its `file_path` column.
pub(crate) fn referenced_data_file(file: &DataFile) -> Option<String> {
    if let Some(path) = file.referenced_data_file() {
        return Some(path);
    }
    let id = iceberg::metadata_columns::RESERVED_FIELD_ID_DELETE_FILE_PATH;
    let (lo, hi) = (file.lower_bounds().get(&id)?, file.upper_bounds().get(&id)?);
    match (lo.literal(), hi.literal()) {
        (PrimitiveLiteral::String(a), PrimitiveLiteral::String(b)) if a == b => Some(a.clone()),
        _ => None,
    }
}

/// The data files `appends` added (read from their own manifests, so later
/// manifest merges do not matter).
pub(crate) async fn added_data_files(
    base: &Table,
    appends: &[SnapshotRef],
) -> Result<Vec<DataFile>> {
    let mut files = Vec::new();
    for snapshot in appends {
        for (status, file) in written_by(base, snapshot).await? {
            if status == ManifestStatus::Added && file.content_type() == DataContentType::Data {
                files.push(file);
            }
        }
    }
    Ok(files)
}

/// The entries `snapshot` itself added or deleted, from the manifests it
/// wrote (status and file; `Existing` entries it only carried over are
/// skipped).
async fn written_by(
    base: &Table,
    snapshot: &SnapshotRef,
) -> Result<Vec<(ManifestStatus, DataFile)>> {
    let mut out = Vec::new();
    let list = base.manifest_list_reader(snapshot).load().await?;
    for manifest in list.entries() {
        if manifest.added_snapshot_id != snapshot.snapshot_id() {
            continue;
        }
        let loaded = manifest.load_manifest(base.file_io()).await?;
        for entry in loaded.entries() {
            let own = entry.status() == ManifestStatus::Added
                || (entry.status() == ManifestStatus::Deleted
                    && entry.snapshot_id() == Some(snapshot.snapshot_id()));
            if own {
                out.push((entry.status(), entry.data_file().clone()));
            }
        }
    }
    Ok(out)
}

/// The base column `column` of the view's query buckets and the bucket's
/// width (µs), when the query is one aggregate over one table scan grouping
/// by a bucket of at most a day.
fn bucket_source(plan: &LogicalPlan, column: &str) -> Option<(String, i64)> {
    let mut scans = 0;
    let mut others = false;
    plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(_) => scans += 1,
            LogicalPlan::Join(_) | LogicalPlan::Union(_) | LogicalPlan::Window(_) => others = true,
            _ => {}
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    })
    .ok()?;
    if scans != 1 || others {
        return None;
    }
    let index = plan.schema().index_of_column_by_name(None, column)?;
    let (aggregate, group_name) = match plan {
        LogicalPlan::Projection(p) => {
            let expr = unalias(&p.expr[index]);
            let Expr::Column(c) = expr else {
                return None;
            };
            let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
                return None;
            };
            (a, c.name.clone())
        }
        LogicalPlan::Aggregate(a) => (a, a.schema.field(index).name().clone()),
        _ => return None,
    };
    let position = (0..aggregate.group_expr.len())
        .find(|&j| aggregate.schema.field(j).name() == &group_name)?;
    day_bucket_of(unalias(&aggregate.group_expr[position]))
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// `date_bin(<interval dividing a day>, col)` or
/// `date_trunc('second'|'minute'|'hour'|'day', col)`: the column and the
/// bucket's width in microseconds (a day when the interval is not a whole
/// number of microseconds: still a bucket boundary).
fn day_bucket_of(expr: &Expr) -> Option<(String, i64)> {
    let Expr::ScalarFunction(f) = expr else {
        return None;
    };
    let column = |e: &Expr| match unalias(e) {
        Expr::Column(c) => Some(c.name.clone()),
        _ => None,
    };
    match (f.func.name(), f.args.as_slice()) {
        ("date_bin", [Expr::Literal(interval, _), col]) => {
            let nanos = match interval {
                ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.nanoseconds)
                }
                ScalarValue::IntervalDayTime(Some(v)) => {
                    i128::from(v.days) * 86_400_000_000_000 + i128::from(v.milliseconds) * 1_000_000
                }
                _ => return None,
            };
            (nanos > 0 && 86_400_000_000_000 % nanos == 0).then_some(())?;
            let width = if nanos % 1000 == 0 {
                i64::try_from(nanos / 1000).ok()?
            } else {
                DAY_MICROS
            };
            Some((column(col)?, width))
        }
        ("date_trunc", [Expr::Literal(ScalarValue::Utf8(Some(unit)), _), col]) => {
            let width = match unit.to_ascii_lowercase().as_str() {
                "second" => 1_000_000,
                "minute" => 60_000_000,
                "hour" => 3_600_000_000,
                "day" => DAY_MICROS,
                _ => return None,
            };
            Some((column(col)?, width))
        }
        _ => None,
    }
}
