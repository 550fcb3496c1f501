//! Z-order (Morton) row order over several columns, so files written in that
//! order have narrow min/max ranges on every one of them, not only the first.
//!
//! Each column is mapped to its rank among the rows being rewritten (any
//! orderable type, skew-free: strings and timestamps alike spread over the
//! whole coordinate range), the ranks are scaled to `64 / columns` bits and
//! their bits interleaved into one `u64` key.

use arrow::array::{RecordBatch, UInt32Array};
use arrow::compute::kernels::rank::rank;
use arrow::compute::take_record_batch;
use arrow::error::ArrowError;

/// `batch` reordered by the Z-order of `columns` (names in the batch).
pub fn z_order(batch: &RecordBatch, columns: &[String]) -> Result<RecordBatch, ArrowError> {
    let n = batch.num_rows();
    if n < 2 || columns.is_empty() {
        return Ok(batch.clone());
    }
    let bits = (64 / columns.len()).min(32) as u32;
    let mut coords: Vec<Vec<u32>> = Vec::with_capacity(columns.len());
    for name in columns {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column `{name}` to cluster by")))?;
        let ranks = rank(column.as_ref(), None)?;
        coords.push(ranks.into_iter().map(|r| scale(r, n, bits)).collect());
    }
    let mut keyed: Vec<(u64, u32)> = (0..n)
        .map(|row| {
            let key = interleave(coords.iter().map(|c| c[row]), bits);
            (key, row as u32)
        })
        .collect();
    keyed.sort_unstable();
    let indices = UInt32Array::from_iter_values(keyed.into_iter().map(|(_, row)| row));
    take_record_batch(batch, &indices)
}

/// Rank 1..=n scaled to `bits` bits.
fn scale(rank: u32, n: usize, bits: u32) -> u32 {
    let top = (1u64 << bits) - 1;
    ((u64::from(rank.saturating_sub(1)) * top) / (n as u64 - 1).max(1)) as u32
}

/// Interleaves the low `bits` bits of each coordinate, most significant first.
fn interleave(coords: impl Iterator<Item = u32> + Clone, bits: u32) -> u64 {
    let mut key = 0u64;
    for bit in (0..bits).rev() {
        for c in coords.clone() {
            key = (key << 1) | u64::from((c >> bit) & 1);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    #[test]
    fn interleaves_bits() {
        // x = 0b11, y = 0b00 with 2 bits each → x1 y1 x0 y0 = 1010.
        assert_eq!(interleave([0b11u32, 0b00].into_iter(), 2), 0b1010);
        assert_eq!(interleave([0b00u32, 0b11].into_iter(), 2), 0b0101);
    }

    #[test]
    fn quadrants_stay_together() {
        // A 4×4 grid of (device, ts): Z-order visits each 2×2 quadrant in turn,
        // so the first four rows cover two devices and two timestamps only.
        let mut devices = Vec::new();
        let mut ts = Vec::new();
        for d in ["d3", "d1", "d0", "d2"] {
            for t in [30i64, 10, 0, 20] {
                devices.push(d);
                ts.push(t);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(devices)),
                Arc::new(Int64Array::from(ts)),
            ],
        )
        .unwrap();
        let out = z_order(&batch, &["device_id".into(), "ts".into()]).unwrap();
        let d = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let t = out.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        for quadrant in 0..4 {
            let rows = quadrant * 4..quadrant * 4 + 4;
            let ds: std::collections::BTreeSet<&str> = rows.clone().map(|i| d.value(i)).collect();
            let tss: std::collections::BTreeSet<i64> = rows.map(|i| t.value(i)).collect();
            assert_eq!((ds.len(), tss.len()), (2, 2), "quadrant {quadrant}");
        }
        assert_eq!((d.value(0), t.value(0)), ("d0", 0));
        assert_eq!((d.value(15), t.value(15)), ("d3", 30));
    }
}
