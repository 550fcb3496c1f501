//! The group accumulator of `first(value, time)` / `last(value, time)` for
//! a primitive value and a 64-bit time (timestamps, `bigint`, `date64`).
//!
//! DataFusion's `first_value(… ORDER BY …)` group accumulator, which these
//! functions otherwise wrap, is written for any number of ordering columns:
//! it compares rows through a dynamic lexicographic comparator, once per
//! batch and once more against each group's state (16 % of the CPU of "last
//! point per tag" over 172.8 M rows, benches/generic.py). With one 64-bit
//! ordering column the comparison is one `i64` compare per row. The state is
//! `first_value`'s (`[value, time, is_set]`), so a partial stage of either
//! kind feeds a final stage of either kind.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array, PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::common::Result;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};

/// The accumulator for these types, or `None` when the generic one must do.
pub(super) fn try_new(
    last: bool,
    value_type: &DataType,
    time_type: &DataType,
) -> Option<Box<dyn GroupsAccumulator>> {
    if !matches!(
        time_type,
        DataType::Timestamp(_, _) | DataType::Int64 | DataType::Date64
    ) {
        return None;
    }
    macro_rules! timed {
        ($t:ty) => {
            Some(Box::new(Timed::<$t>::new(
                last,
                value_type.clone(),
                time_type.clone(),
            )))
        };
    }
    match value_type {
        DataType::Float64 => timed!(Float64Type),
        DataType::Float32 => timed!(Float32Type),
        DataType::Int64 => timed!(Int64Type),
        DataType::Int32 => timed!(Int32Type),
        DataType::Int16 => timed!(Int16Type),
        DataType::Int8 => timed!(Int8Type),
        DataType::UInt64 => timed!(UInt64Type),
        DataType::UInt32 => timed!(UInt32Type),
        DataType::UInt16 => timed!(UInt16Type),
        DataType::UInt8 => timed!(UInt8Type),
        DataType::Date32 => timed!(Date32Type),
        DataType::Date64 => timed!(Date64Type),
        DataType::Decimal128(_, _) => timed!(Decimal128Type),
        DataType::Timestamp(TimeUnit::Second, _) => timed!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => timed!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => timed!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => timed!(TimestampNanosecondType),
        _ => None,
    }
}

/// Per group: the value and time of the winning row so far.
#[derive(Debug)]
struct Timed<V: ArrowPrimitiveType> {
    /// Greatest time wins (`last`) or least (`first`); ties keep the row
    /// seen first.
    last: bool,
    value_type: DataType,
    time_type: DataType,
    values: Vec<V::Native>,
    /// The winning row's value is not NULL.
    valid: Vec<bool>,
    times: Vec<i64>,
    /// The group has a row.
    set: Vec<bool>,
}

impl<V: ArrowPrimitiveType> Timed<V> {
    fn new(last: bool, value_type: DataType, time_type: DataType) -> Self {
        Timed {
            last,
            value_type,
            time_type,
            values: Vec::new(),
            valid: Vec::new(),
            times: Vec::new(),
            set: Vec::new(),
        }
    }

    fn resize(&mut self, groups: usize) {
        self.values.resize(groups, V::Native::default());
        self.valid.resize(groups, false);
        self.times.resize(groups, 0);
        self.set.resize(groups, false);
    }

    /// Offers each row to its group; rows where `keep` is false or NULL and
    /// rows without a time take no part.
    fn offer(
        &mut self,
        values: &ArrayRef,
        times: &ArrayRef,
        group_indices: &[usize],
        keep: Option<&BooleanArray>,
    ) -> Result<()> {
        let values = values.as_primitive::<V>();
        let times = cast(times, &DataType::Int64)?;
        let times = times.as_primitive::<Int64Type>();
        let keep = match (keep, times.nulls()) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(nulls)) => Some(BooleanArray::from(nulls.inner().clone())),
            (None, None) => None,
        };
        let t = times.values();
        let v = values.values();
        let value_nulls = values.nulls();
        let Some(keep) = keep else {
            // Every row takes part: the winner of each run of rows of one
            // group (clustered input: `clustered_agg`) is offered once.
            let mut row = 0;
            while row < group_indices.len() {
                let g = group_indices[row];
                let end = row
                    + group_indices[row..]
                        .iter()
                        .position(|&h| h != g)
                        .unwrap_or(group_indices.len() - row);
                let best = row + self.winner(&t[row..end]);
                self.offer_row(
                    g,
                    t[best],
                    v[best],
                    value_nulls.is_none_or(|n| n.is_valid(best)),
                );
                row = end;
            }
            return Ok(());
        };
        for (row, &g) in group_indices.iter().enumerate() {
            if keep.is_valid(row) && keep.value(row) && times.is_valid(row) {
                let valid = value_nulls.is_none_or(|n| n.is_valid(row));
                self.offer_row(g, t[row], v[row], valid);
            }
        }
        Ok(())
    }

    /// The index of the winning time of a run (ties: the first).
    fn winner(&self, times: &[i64]) -> usize {
        let mut best = 0;
        let mut best_time = times[0];
        for (i, &time) in times.iter().enumerate().skip(1) {
            if if self.last {
                time > best_time
            } else {
                time < best_time
            } {
                best = i;
                best_time = time;
            }
        }
        best
    }

    /// Offers one row to group `g`.
    fn offer_row(&mut self, g: usize, time: i64, value: V::Native, valid: bool) {
        let wins = !self.set[g]
            || if self.last {
                time > self.times[g]
            } else {
                time < self.times[g]
            };
        if wins {
            self.set[g] = true;
            self.times[g] = time;
            self.values[g] = value;
            self.valid[g] = valid;
        }
    }

    fn value_array(&self, values: Vec<V::Native>, present: Vec<bool>) -> ArrayRef {
        Arc::new(
            PrimitiveArray::<V>::new(values.into(), Some(NullBuffer::from(present)))
                .with_data_type(self.value_type.clone()),
        )
    }
}

impl<V: ArrowPrimitiveType + Send + Sync> GroupsAccumulator for Timed<V> {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        self.offer(&values[0], &values[1], group_indices, opt_filter)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.resize(total_num_groups);
        // State: [value, time, is_set].
        let is_set = values[2].as_boolean();
        let keep = match opt_filter {
            Some(f) => arrow::compute::kernels::boolean::and(f, is_set)?,
            None => is_set.clone(),
        };
        self.offer(&values[0], &values[1], group_indices, Some(&keep))
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let values = emit_to.take_needed(&mut self.values);
        let valid = emit_to.take_needed(&mut self.valid);
        let set = emit_to.take_needed(&mut self.set);
        emit_to.take_needed(&mut self.times);
        let present = valid.iter().zip(&set).map(|(v, s)| *v && *s).collect();
        Ok(self.value_array(values, present))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let values = emit_to.take_needed(&mut self.values);
        let valid = emit_to.take_needed(&mut self.valid);
        let set = emit_to.take_needed(&mut self.set);
        let times = emit_to.take_needed(&mut self.times);
        let present = valid.iter().zip(&set).map(|(v, s)| *v && *s).collect();
        let times = Int64Array::new(times.into(), Some(NullBuffer::from(set.clone())));
        Ok(vec![
            self.value_array(values, present),
            cast(&(Arc::new(times) as ArrayRef), &self.time_type)?,
            Arc::new(BooleanArray::from(set)),
        ])
    }

    fn size(&self) -> usize {
        self.values.capacity() * size_of::<V::Native>()
            + self.valid.capacity()
            + self.times.capacity() * size_of::<i64>()
            + self.set.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, TimestampMicrosecondArray};

    /// Values, times and group indices of one batch.
    type Batch = (Vec<Option<f64>>, Vec<Option<i64>>, Vec<usize>);

    fn run(last: bool, batches: &[Batch]) -> ArrayRef {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut acc = try_new(last, &DataType::Float64, &ts).unwrap();
        for (v, t, g) in batches {
            let v: ArrayRef = Arc::new(Float64Array::from(v.clone()));
            let t: ArrayRef =
                Arc::new(TimestampMicrosecondArray::from(t.clone()).with_timezone("UTC"));
            acc.update_batch(&[v, t], g, None, 2).unwrap();
        }
        acc.evaluate(EmitTo::All).unwrap()
    }

    #[test]
    fn latest_row_per_group_nulls_kept_and_timeless_rows_ignored() {
        let got = run(
            true,
            &[
                (
                    vec![Some(1.0), Some(2.0), None, Some(9.0)],
                    vec![Some(10), Some(5), Some(20), None],
                    vec![0, 1, 1, 0],
                ),
                (vec![Some(3.0)], vec![Some(11)], vec![0]),
            ],
        );
        let got = got.as_primitive::<Float64Type>();
        // Group 0: the row at 11 (3.0); group 1: the row at 20 has no value.
        assert_eq!(got.value(0), 3.0);
        assert!(got.is_null(1));
    }

    /// Runs of one group: the greatest (least) time of the run wins, ties
    /// keep the row seen first, also against the group's earlier rows.
    #[test]
    fn runs_of_a_group_ties_keep_the_first_row() {
        let last = run(
            true,
            &[
                (
                    vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0), Some(5.0)],
                    vec![Some(5), Some(7), Some(7), Some(3), Some(1)],
                    vec![0, 0, 0, 0, 1],
                ),
                (
                    vec![Some(6.0), Some(7.0)],
                    vec![Some(7), Some(2)],
                    vec![0, 1],
                ),
            ],
        );
        let last = last.as_primitive::<Float64Type>();
        assert_eq!((last.value(0), last.value(1)), (2.0, 7.0));
        let first = run(
            false,
            &[
                (
                    vec![Some(1.0), Some(2.0), Some(3.0), Some(4.0)],
                    vec![Some(5), Some(3), Some(3), Some(9)],
                    vec![1, 1, 1, 1],
                ),
                (vec![Some(5.0)], vec![Some(3)], vec![1]),
            ],
        );
        assert_eq!(first.as_primitive::<Float64Type>().value(1), 2.0);
    }

    #[test]
    fn first_and_state_round_trip() {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let mut partial = try_new(false, &DataType::Float64, &ts).unwrap();
        let v: ArrayRef = Arc::new(Float64Array::from(vec![Some(1.0), Some(2.0)]));
        let t: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![Some(7), Some(3)]).with_timezone("UTC"));
        // Group 2 never sees a row.
        partial.update_batch(&[v, t], &[0, 0], None, 3).unwrap();
        let state = partial.state(EmitTo::All).unwrap();
        assert_eq!(state[1].data_type(), &ts);
        let mut fin = try_new(false, &DataType::Float64, &ts).unwrap();
        let v: ArrayRef = Arc::new(Float64Array::from(vec![Some(5.0)]));
        let t: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![Some(4)]).with_timezone("UTC"));
        fin.update_batch(&[v, t], &[1], None, 3).unwrap();
        fin.merge_batch(&state, &[0, 1, 2], None, 3).unwrap();
        let got = fin.evaluate(EmitTo::All).unwrap();
        let got = got.as_primitive::<Float64Type>();
        assert_eq!(got.value(0), 2.0);
        assert_eq!(got.value(1), 5.0);
        assert!(got.is_null(2));
    }
}
