//! Incremental refresh by the *buckets* the changes touched (issue 21).
//!
//! `mv_incremental` finds the base data files that changed since the view's
//! last refresh. Their bounds on the time column say which buckets of the
//! view can hold different rows now: only those are recomputed from the
//! base, the view's other rows of the same days are kept as stored. Before,
//! every touched *day* was re-read from the base: at the design scenario
//! (200,000 sensors at 1 Hz) a refresh late in the day re-aggregated up to
//! 17 G rows to add 15 minutes of data; the 1-hour soak showed the work
//! growing through the day (`benches/summaries/2026-12-05-soak.md`).
//!
//! Ranges are aligned to the view's bucket (`date_bin` width or
//! `date_trunc` unit), which divides a day, so a bucket is always recomputed
//! whole and a day boundary is always a bucket boundary.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Column, DataFusionError, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, cast};
use iceberg::spec::{DataFile, ManifestContentType, PrimitiveLiteral, PrimitiveType, Type};
use iceberg::table::Table;

use crate::error::Result;

pub(crate) const DAY_MICROS: i64 = 86_400_000_000;
/// Never recompute more days than this incrementally.
const MAX_DAYS: usize = 400;
/// More separate ranges than this are widened to whole days (a long list
/// of small ranges costs more to filter than it saves).
const MAX_RANGES: usize = 1024;

/// Half-open `[from, to)` time ranges in microseconds since the epoch (UTC),
/// sorted, disjoint and not adjacent.
pub(crate) type Ranges = Vec<(i64, i64)>;

/// The ranges of whole buckets of `width` microseconds (a divisor of a day)
/// that the files' bounds of column `field_id` span, and the UTC days those
/// ranges lie in; `None` when a file has no bounds, holds NULLs in the
/// column (their bucket is NULL: no range says it changed) or too many
/// days are touched.
pub(crate) fn ranges_of(
    files: &[DataFile],
    field_id: i32,
    nanos: bool,
    width: i64,
) -> Option<(Ranges, BTreeSet<i32>)> {
    let mut spans = Vec::with_capacity(files.len());
    for file in files {
        if file
            .null_value_counts()
            .get(&field_id)
            .is_none_or(|&nulls| nulls > 0)
        {
            return None;
        }
        let lo = micros_of(file.lower_bounds().get(&field_id)?.literal(), nanos)?;
        let hi = micros_of(file.upper_bounds().get(&field_id)?.literal(), nanos)?;
        let from = lo.div_euclid(width) * width;
        let to = hi.div_euclid(width).checked_add(1)?.checked_mul(width)?;
        spans.push((from, to));
    }
    let mut ranges = merge(spans);
    let mut days = BTreeSet::new();
    for &(from, to) in &ranges {
        let first = i32::try_from(from.div_euclid(DAY_MICROS)).ok()?;
        let last = i32::try_from((to - 1).div_euclid(DAY_MICROS)).ok()?;
        if usize::try_from(last - first).ok()? >= MAX_DAYS {
            return None;
        }
        days.extend(first..=last);
        if days.len() > MAX_DAYS {
            return None;
        }
    }
    if ranges.len() > MAX_RANGES {
        ranges = day_ranges(&days);
    }
    Some((ranges, days))
}

/// Whole UTC days as ranges.
pub(crate) fn day_ranges(days: &BTreeSet<i32>) -> Ranges {
    merge(
        days.iter()
            .map(|&d| (i64::from(d) * DAY_MICROS, (i64::from(d) + 1) * DAY_MICROS))
            .collect(),
    )
}

/// Sorted, with overlapping and adjacent ranges joined.
fn merge(mut spans: Vec<(i64, i64)>) -> Ranges {
    spans.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(spans.len());
    for (from, to) in spans {
        match out.last_mut() {
            Some((_, end)) if from <= *end => *end = (*end).max(to),
            _ => out.push((from, to)),
        }
    }
    out
}

/// Microseconds covered by `ranges`.
pub(crate) fn span_micros(ranges: &Ranges) -> i64 {
    ranges.iter().map(|(from, to)| to - from).sum()
}

fn micros_of(value: &PrimitiveLiteral, nanos: bool) -> Option<i64> {
    let PrimitiveLiteral::Long(v) = value else {
        return None;
    };
    Some(if nanos { v.div_euclid(1000) } else { *v })
}

/// `column` falls in one of `ranges`, as a filter (`None` unless `column`
/// is a timestamp).
pub(crate) fn range_filter(column: Expr, data_type: &DataType, ranges: &Ranges) -> Option<Expr> {
    let DataType::Timestamp(unit, tz) = data_type else {
        return None;
    };
    let at = |micros: i64| -> ScalarValue {
        match unit {
            TimeUnit::Second => ScalarValue::TimestampSecond(Some(micros / 1_000_000), tz.clone()),
            TimeUnit::Millisecond => {
                ScalarValue::TimestampMillisecond(Some(micros / 1000), tz.clone())
            }
            TimeUnit::Microsecond => ScalarValue::TimestampMicrosecond(Some(micros), tz.clone()),
            TimeUnit::Nanosecond => {
                ScalarValue::TimestampNanosecond(Some(micros * 1000), tz.clone())
            }
        }
    };
    ranges
        .iter()
        .map(|&(from, to)| {
            column
                .clone()
                .gt_eq(Expr::Literal(at(from), None))
                .and(column.clone().lt(Expr::Literal(at(to), None)))
        })
        .reduce(Expr::or)
}

/// The live data files of `view`'s current snapshot whose bounds on its
/// bucket column `column` meet `scope`: all the view's rows in `scope` lie in
/// them. Files without bounds on it count as meeting.
pub(crate) async fn files_meeting(
    view: &Table,
    column: &str,
    scope: &Ranges,
) -> Result<HashSet<String>> {
    let metadata = view.metadata();
    let mut out = HashSet::new();
    let Some(snapshot) = metadata.current_snapshot() else {
        return Ok(out);
    };
    let bounds = metadata
        .current_schema()
        .field_by_name(column)
        .and_then(|f| match f.field_type.as_ref() {
            Type::Primitive(PrimitiveType::Timestamp | PrimitiveType::Timestamptz) => {
                Some((f.id, false))
            }
            Type::Primitive(PrimitiveType::TimestampNs | PrimitiveType::TimestamptzNs) => {
                Some((f.id, true))
            }
            _ => None,
        });
    let list = view.manifest_list_reader(snapshot).load().await?;
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data {
            continue;
        }
        let loaded = manifest.load_manifest(view.file_io()).await?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            let span = bounds.and_then(|(id, nanos)| {
                let lo = micros_of(file.lower_bounds().get(&id)?.literal(), nanos)?;
                let hi = micros_of(file.upper_bounds().get(&id)?.literal(), nanos)?;
                Some((lo, hi))
            });
            let meets =
                span.is_none_or(|(lo, hi)| scope.iter().any(|&(from, to)| lo < to && hi >= from));
            if meets {
                out.insert(file.file_path().to_string());
            }
        }
    }
    Ok(out)
}

/// The rows the view stores in `files` (read through `view`'s provider at
/// the snapshot the refresh started from) outside `scope`, cast to
/// `columns`: what an incremental refresh keeps of the files it replaces.
/// `None` when `files` is empty or the bucket column is no timestamp.
pub(crate) fn kept_rows(
    columns: &arrow::datatypes::Schema,
    view: (TableReference, Arc<crate::table::WeirTable>),
    files: &HashSet<String>,
    view_column: &str,
    scope: &Ranges,
) -> Result<Option<LogicalPlan>> {
    if files.is_empty() {
        return Ok(None);
    }
    let (name, provider) = view;
    let provider = Arc::new(provider.restricted(
        Some(Arc::new(files.clone())),
        false,
        "rows kept by the refresh".into(),
    ));
    let schema = datafusion::catalog::TableProvider::schema(provider.as_ref());
    let bucket_type = schema
        .field_with_name(view_column)
        .map_err(DataFusionError::from)?
        .data_type()
        .clone();
    let bucket = Expr::Column(Column::new_unqualified(view_column));
    let Some(in_scope) = range_filter(bucket.clone(), &bucket_type, scope) else {
        return Ok(None);
    };
    let projection = columns
        .fields()
        .iter()
        .map(|f| {
            cast(
                Expr::Column(Column::new_unqualified(f.name())),
                f.data_type().clone(),
            )
            .alias(f.name())
        })
        .collect::<Vec<_>>();
    // A NULL bucket is outside every range (`NOT (NULL …)` would drop it).
    let outside = bucket.is_null().or(Expr::Not(Box::new(in_scope)));
    let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?
        .filter(outside)?
        .project(projection)?
        .build()?;
    Ok(Some(plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn spans_become_whole_buckets_merged() {
        let day = 20_000 * DAY_MICROS;
        let spans = vec![
            (day + 5 * HOUR + 10, day + 5 * HOUR + 20),
            (day + 6 * HOUR, day + 6 * HOUR + 1),
            (day + 9 * HOUR + 1, day + 9 * HOUR + 2),
        ];
        let aligned = spans
            .into_iter()
            .map(|(lo, hi)| (lo.div_euclid(HOUR) * HOUR, (hi.div_euclid(HOUR) + 1) * HOUR))
            .collect();
        assert_eq!(
            merge(aligned),
            vec![
                (day + 5 * HOUR, day + 7 * HOUR),
                (day + 9 * HOUR, day + 10 * HOUR)
            ]
        );
    }

    #[test]
    fn days_as_ranges() {
        let days = BTreeSet::from([3, 4, 7]);
        assert_eq!(
            day_ranges(&days),
            vec![
                (3 * DAY_MICROS, 5 * DAY_MICROS),
                (7 * DAY_MICROS, 8 * DAY_MICROS)
            ]
        );
        assert_eq!(span_micros(&day_ranges(&days)), 3 * DAY_MICROS);
    }
}
