//! Rows in a table's sort order, as the Iceberg spec asks writers to do.
//!
//! Telemetry queries name a few devices over a time range; with data files
//! sorted by `(device_id, metric, ts)` every Parquet page holds a short,
//! contiguous run of devices, so page statistics skip most of a file for
//! "these 100 sensors over that day" (measured in crates/weir-query/README.md).
//! Inputs that already arrive sorted (most bulk exports are) are detected with
//! a vectorised comparison of neighbouring rows and written as they are.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::kernels::cmp::{eq, gt, lt};
use arrow::compute::{
    SortColumn, SortOptions, and, concat_batches, lexsort_to_indices, or, take_record_batch,
};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use iceberg::spec::{NullOrder, SortDirection, Transform};
use iceberg::table::Table;

/// The identity fields of `table`'s default sort order, by column name.
pub fn sort_keys(table: &Table) -> Vec<(String, SortOptions)> {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    metadata
        .default_sort_order()
        .fields
        .iter()
        .filter(|f| f.transform == Transform::Identity)
        .filter_map(|f| {
            let name = schema.name_by_field_id(f.source_id)?.to_string();
            Some((
                name,
                SortOptions {
                    descending: f.direction == SortDirection::Descending,
                    nulls_first: f.null_order == NullOrder::First,
                },
            ))
        })
        .collect()
}

/// `batches` (one schema) in the order of `keys`: unchanged when they already
/// are, otherwise concatenated and sorted into one batch. Keys missing from
/// the schema are ignored.
pub fn sort_batches(
    batches: &[RecordBatch],
    keys: &[(String, SortOptions)],
) -> Result<Vec<RecordBatch>, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = first.schema();
    let keys: Vec<(usize, SortOptions)> = keys
        .iter()
        .filter_map(|(name, o)| Some((schema.index_of(name).ok()?, *o)))
        .collect();
    if keys.is_empty() || is_sorted(batches, &keys)? {
        return Ok(batches.to_vec());
    }
    let all = concat_batches(&schema, batches)?;
    let indices = if keys.len() == 1 {
        let columns = [SortColumn {
            values: Arc::clone(all.column(keys[0].0)),
            options: Some(keys[0].1),
        }];
        lexsort_to_indices(&columns, None)?
    } else {
        row_order(&all, &keys)?
    };
    Ok(vec![take_record_batch(&all, &indices)?])
}

/// The order of `batch`'s rows by several keys, compared as arrow-rs row
/// format bytes (what DataFusion's sort does for several columns): one
/// `memcmp` per comparison instead of a dynamically dispatched comparator
/// per column. On a 2 M-row flush sorted by (device_id, metric, ts) this is
/// several times faster than `lexsort_to_indices`.
fn row_order(
    batch: &RecordBatch,
    keys: &[(usize, SortOptions)],
) -> Result<UInt32Array, ArrowError> {
    let fields = keys
        .iter()
        .map(|(i, o)| SortField::new_with_options(batch.schema().field(*i).data_type().clone(), *o))
        .collect();
    let converter = RowConverter::new(fields)?;
    let columns: Vec<ArrayRef> = keys
        .iter()
        .map(|(i, _)| Arc::clone(batch.column(*i)))
        .collect();
    let rows = converter.convert_columns(&columns)?;
    let n = u32::try_from(batch.num_rows())
        .map_err(|_| ArrowError::ComputeError("too many rows to sort in one batch".into()))?;
    let mut order: Vec<u32> = (0..n).collect();
    // Ties keep their input order (row index as the last key).
    order.sort_unstable_by(|&a, &b| {
        rows.row(a as usize)
            .cmp(&rows.row(b as usize))
            .then(a.cmp(&b))
    });
    Ok(UInt32Array::from(order))
}

/// Whether `batches` (one schema, read in this order) are in the order of
/// `keys`; keys missing from the schema are ignored, a null key counts as out
/// of order (the check stays a vectorised comparison).
pub fn in_order(
    batches: &[RecordBatch],
    keys: &[(String, SortOptions)],
) -> Result<bool, ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(true);
    };
    let schema = first.schema();
    let keys: Vec<(usize, SortOptions)> = keys
        .iter()
        .filter_map(|(name, o)| Some((schema.index_of(name).ok()?, *o)))
        .collect();
    is_sorted(batches, &keys)
}

/// Whether the rows of `batches`, read in sequence, are in key order
/// (ties allowed). Nulls in a key column count as unsorted (the caller then
/// sorts, which places them as the options say).
fn is_sorted(batches: &[RecordBatch], keys: &[(usize, SortOptions)]) -> Result<bool, ArrowError> {
    for (i, batch) in batches.iter().enumerate() {
        if keys.iter().any(|(k, _)| batch.column(*k).null_count() > 0) {
            return Ok(false);
        }
        let n = batch.num_rows();
        if n > 1 {
            let prev: Vec<ArrayRef> = keys
                .iter()
                .map(|(k, _)| batch.column(*k).slice(0, n - 1))
                .collect();
            let next: Vec<ArrayRef> = keys
                .iter()
                .map(|(k, _)| batch.column(*k).slice(1, n - 1))
                .collect();
            if !pairs_in_order(&prev, &next, keys)? {
                return Ok(false);
            }
        }
        // The seam between this batch and the next non-empty one.
        if let Some(next) = batches[i + 1..].iter().find(|b| b.num_rows() > 0)
            && n > 0
        {
            let prev: Vec<ArrayRef> = keys
                .iter()
                .map(|(k, _)| batch.column(*k).slice(n - 1, 1))
                .collect();
            let next: Vec<ArrayRef> = keys
                .iter()
                .map(|(k, _)| next.column(*k).slice(0, 1))
                .collect();
            if !pairs_in_order(&prev, &next, keys)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Row by row, `prev[r] <= next[r]` lexicographically over the keys.
fn pairs_in_order(
    prev: &[ArrayRef],
    next: &[ArrayRef],
    keys: &[(usize, SortOptions)],
) -> Result<bool, ArrowError> {
    // From the last key backwards: ok = before(k) | (equal(k) & ok(k+1)),
    // with the last key allowing equality.
    let mut ok: Option<BooleanArray> = None;
    for (j, (_, options)) in keys.iter().enumerate().rev() {
        let (a, b) = (&prev[j], &next[j]);
        let before = if options.descending {
            gt(a, b)?
        } else {
            lt(a, b)?
        };
        let equal = eq(a, b)?;
        ok = Some(match ok {
            None => or(&before, &equal)?,
            Some(rest) => or(&before, &and(&equal, &rest)?)?,
        });
    }
    Ok(ok.is_none_or(|ok| ok.null_count() == 0 && ok.false_count() == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(ids: &[&str], ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids.to_vec())),
                Arc::new(Int64Array::from(ts.to_vec())),
            ],
        )
        .unwrap()
    }

    fn keys() -> Vec<(String, SortOptions)> {
        vec![
            ("device_id".into(), SortOptions::default()),
            ("ts".into(), SortOptions::default()),
        ]
    }

    fn rows(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let ts = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
            for r in 0..b.num_rows() {
                out.push((ids.value(r).to_string(), ts.value(r)));
            }
        }
        out
    }

    #[test]
    fn sorted_input_is_passed_through_as_is() {
        let input = vec![
            batch(&["a", "a", "b"], &[1, 2, 1]),
            batch(&["b", "c"], &[1, 0]),
        ];
        let out = sort_batches(&input, &keys()).unwrap();
        assert_eq!(out.len(), 2, "no concatenation when already sorted");
        assert_eq!(rows(&out), rows(&input));
    }

    #[test]
    fn unsorted_rows_within_and_across_batches_are_sorted() {
        // Sorted inside each batch but not across the seam.
        let input = vec![batch(&["a", "c"], &[1, 1]), batch(&["b", "d"], &[5, 0])];
        let out = sort_batches(&input, &keys()).unwrap();
        assert_eq!(
            rows(&out),
            vec![
                ("a".into(), 1),
                ("b".into(), 5),
                ("c".into(), 1),
                ("d".into(), 0)
            ]
        );
        // Second key out of order.
        let input = vec![batch(&["a", "a", "a"], &[3, 1, 2])];
        let out = sort_batches(&input, &keys()).unwrap();
        assert_eq!(
            rows(&out),
            vec![("a".into(), 1), ("a".into(), 2), ("a".into(), 3)]
        );
    }

    #[test]
    fn descending_keys_and_missing_columns() {
        let desc = vec![(
            "ts".to_string(),
            SortOptions {
                descending: true,
                nulls_first: false,
            },
        )];
        let input = vec![batch(&["x", "y", "z"], &[1, 3, 2])];
        let out = sort_batches(&input, &desc).unwrap();
        assert_eq!(
            rows(&out),
            vec![("y".into(), 3), ("z".into(), 2), ("x".into(), 1)]
        );
        // A key the batches lack is ignored; none left = unchanged.
        let out = sort_batches(&input, &[("nope".into(), SortOptions::default())]).unwrap();
        assert_eq!(rows(&out), rows(&input));
    }

    #[test]
    fn row_format_order_equals_lexsort() {
        // Pseudo-random keys with ties and nulls, mixed directions.
        let n = 5_000u64;
        let ids: Vec<Option<String>> = (0..n)
            .map(|i| (i % 97 != 0).then(|| format!("d{}", (i * 7919) % 61)))
            .collect();
        let ts: Vec<Option<i64>> = (0..n)
            .map(|i| (i % 89 != 0).then(|| ((i * 104_729) % 13) as i64))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, true),
            Field::new("ts", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(Int64Array::from(ts)),
            ],
        )
        .unwrap();
        for (desc, nulls_first) in [(false, false), (true, true), (false, true)] {
            let o = SortOptions {
                descending: desc,
                nulls_first,
            };
            let keys = [(0, SortOptions::default()), (1, o)];
            let ours = row_order(&batch, &keys).unwrap();
            let columns: Vec<SortColumn> = keys
                .iter()
                .map(|(i, o)| SortColumn {
                    values: Arc::clone(batch.column(*i)),
                    options: Some(*o),
                })
                .collect();
            let theirs = lexsort_to_indices(&columns, None).unwrap();
            let a = take_record_batch(&batch, &ours).unwrap();
            let b = take_record_batch(&batch, &theirs).unwrap();
            assert_eq!(a, b, "options {o:?}");
        }
    }
}
