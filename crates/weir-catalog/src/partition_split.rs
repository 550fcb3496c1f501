//! Splitting batches by partition for the writers, in runs.
//!
//! iceberg-rust's `RecordBatchPartitionSplitter` turns every row's partition
//! value into an Iceberg `Literal`, groups rows in a SipHash map of those
//! literals (cloning each row's struct) and copies every group out with a
//! filter — even when the whole batch is one partition, the usual case (a
//! batch of a day-partitioned table holds one day; a bulk import sorted by
//! device and time changes day a few times per device). Profiled on `weir
//! import` of a day-partitioned table, that was ~35 % of the CPU, plus the
//! page faults of the copies.
//!
//! [`PartitionSplitter`] computes the partition values with the same
//! vectorised calculator, finds the runs of equal consecutive values (arrow's
//! `partition` kernel) and hands out zero-copy slices, one per run, with the
//! run's key computed from its first row by iceberg-rust's own splitter (so
//! keys are exactly what it would make). Batches whose partition values
//! alternate too often for runs to pay (e.g. unsorted rows over many
//! partitions) go to iceberg-rust's splitter as before.

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::kernels::partition::partition;
use iceberg::arrow::{PartitionValueCalculator, RecordBatchPartitionSplitter};
use iceberg::spec::{PartitionKey, PartitionSpecRef, SchemaRef};
use iceberg::{Error, ErrorKind, Result};

/// Runs per batch above which grouping by value (iceberg-rust's splitter)
/// is cheaper than one slice per run: one run per 1,024 rows, at least 16.
const ROWS_PER_RUN: usize = 1024;
const MIN_RUNS: usize = 16;

pub(crate) struct PartitionSplitter {
    calculator: PartitionValueCalculator,
    grouping: RecordBatchPartitionSplitter,
}

impl PartitionSplitter {
    pub(crate) fn try_new(schema: SchemaRef, spec: PartitionSpecRef) -> Result<Self> {
        Ok(PartitionSplitter {
            calculator: PartitionValueCalculator::try_new(&spec, &schema)?,
            grouping: RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?,
        })
    }

    /// `batch` as (partition, rows) pairs, rows in their order. A partition
    /// may come back more than once (one slice per run of its rows).
    pub(crate) fn split(&self, batch: &RecordBatch) -> Result<Vec<(PartitionKey, RecordBatch)>> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(Vec::new());
        }
        let values = self.calculator.calculate(batch)?;
        let Some(values) = values.as_struct_opt() else {
            return self.grouping.split(batch);
        };
        let runs = partition(values.columns())
            .map_err(|e| {
                Error::new(ErrorKind::Unexpected, "finding partition runs").with_source(e)
            })?
            .ranges();
        if runs.len() > MIN_RUNS.max(rows / ROWS_PER_RUN) {
            return self.grouping.split(batch);
        }
        runs.into_iter()
            .map(|run| {
                let key = self.key_of_row(batch, run.start)?;
                Ok((key, batch.slice(run.start, run.end - run.start)))
            })
            .collect()
    }

    /// The partition key of row `row`, as iceberg-rust's splitter makes it.
    fn key_of_row(&self, batch: &RecordBatch, row: usize) -> Result<PartitionKey> {
        self.grouping
            .split(&batch.slice(row, 1))?
            .pop()
            .map(|(key, _)| key)
            .ok_or_else(|| Error::new(ErrorKind::Unexpected, "no partition for a row"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use iceberg::arrow::schema_to_arrow_schema;
    use iceberg::spec::{
        NestedField, PartitionSpec, PrimitiveType, Schema, Transform, Type, UnboundPartitionField,
    };

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(
            Schema::builder()
                .with_fields(vec![
                    NestedField::required(1, "ts", Type::Primitive(PrimitiveType::Timestamptz))
                        .into(),
                    NestedField::optional(2, "tag", Type::Primitive(PrimitiveType::String)).into(),
                    NestedField::required(3, "n", Type::Primitive(PrimitiveType::Long)).into(),
                ])
                .build()
                .unwrap(),
        )
    }

    fn spec(schema: &SchemaRef, fields: &[(i32, &str, Transform)]) -> PartitionSpecRef {
        let mut b = PartitionSpec::builder(schema.clone()).with_spec_id(1);
        for (source_id, name, transform) in fields {
            b = b
                .add_unbound_field(UnboundPartitionField {
                    source_id: *source_id,
                    field_id: None,
                    name: name.to_string(),
                    transform: *transform,
                })
                .unwrap();
        }
        Arc::new(b.build().unwrap())
    }

    fn batch(schema: &SchemaRef, ts: Vec<i64>, tags: Vec<Option<&str>>) -> RecordBatch {
        let arrow = Arc::new(schema_to_arrow_schema(schema).unwrap());
        let n = ts.len() as i64;
        RecordBatch::try_new(
            arrow,
            vec![
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
                Arc::new(StringArray::from(tags)),
                Arc::new(Int64Array::from_iter_values(0..n)),
            ],
        )
        .unwrap()
    }

    /// Rows per partition key (their `n` values), from either splitter.
    fn grouped(parts: Vec<(PartitionKey, RecordBatch)>) -> HashMap<String, Vec<i64>> {
        let mut out: HashMap<String, Vec<i64>> = HashMap::new();
        for (key, part) in parts {
            let n = part.column(2).as_primitive::<arrow::datatypes::Int64Type>();
            out.entry(format!("{:?}", key.data()))
                .or_default()
                .extend(n.values().iter().copied());
        }
        out
    }

    fn check(fields: &[(i32, &str, Transform)], ts: Vec<i64>, tags: Vec<Option<&str>>) -> usize {
        let schema = schema();
        let spec = spec(&schema, fields);
        let b = batch(&schema, ts, tags);
        let ours = PartitionSplitter::try_new(schema.clone(), spec.clone()).unwrap();
        let theirs =
            RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec).unwrap();
        let parts = ours.split(&b).unwrap();
        let slices = parts.len();
        assert_eq!(grouped(parts), grouped(theirs.split(&b).unwrap()));
        slices
    }

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn one_partition_is_one_slice() {
        let ts = (0..5000).map(|i| 3 * DAY + i * 1_000_000).collect();
        assert_eq!(
            check(&[(1, "d", Transform::Day)], ts, vec![Some("a"); 5000]),
            1
        );
    }

    #[test]
    fn runs_are_slices_and_keys_match_icebergs() {
        // Sorted by tag, then time: each tag crosses a day boundary.
        let mut ts = Vec::new();
        let mut tags = Vec::new();
        for tag in ["a", "b", "c"] {
            for i in 0..2000 {
                ts.push(DAY - 1000 * 1_000_000 + i * 1_000_000);
                tags.push(Some(tag));
            }
        }
        // Two day runs per tag, the same two keys again and again.
        assert_eq!(
            check(&[(1, "d", Transform::Day)], ts.clone(), tags.clone()),
            6
        );
        // Two partition fields, one of them nullable.
        tags[10] = None;
        check(
            &[(1, "d", Transform::Day), (2, "t", Transform::Identity)],
            ts,
            tags,
        );
    }

    #[test]
    fn alternating_partitions_are_grouped_instead() {
        let ts: Vec<i64> = (0..4000).map(|i| (i % 2) * DAY).collect();
        // Grouped by value: one batch per partition.
        assert_eq!(
            check(&[(1, "d", Transform::Day)], ts, vec![Some("x"); 4000]),
            2
        );
    }

    #[test]
    fn bucket_partitions_match() {
        let tags: Vec<String> = (0..3000).map(|i| format!("dev{}", i / 100)).collect();
        let tags = tags.iter().map(|t| Some(t.as_str())).collect();
        check(
            &[(2, "b", Transform::Bucket(8)), (1, "h", Transform::Hour)],
            (0..3000).map(|i| i * 10_000_000).collect(),
            tags,
        );
    }
}
