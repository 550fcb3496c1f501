//! Filters on one string column, evaluated once per run of equal keys.
//!
//! `WHERE tag IN ('…', … 100 tags)` makes DataFusion's `InListExpr` hash
//! every row's string; `tag LIKE 'line-4/%'` matches every row's. Over a
//! table that keeps a series' rows together (see `clustered_agg`) most rows
//! repeat the previous row's key, so [`PerRun`] finds the runs of equal keys
//! in a batch, evaluates the wrapped expression on one row per run and
//! spreads the answers over the runs. Batches with short runs (unclustered
//! input: more than one run per eight rows) are evaluated as before. The
//! wrapped expression does the evaluating, so NULL keys and lists with NULL
//! answer as they do without the wrapper.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, AsArray, GenericStringArray, OffsetSizeTrait, RecordBatch, UInt32Array};
use arrow::compute::{take, take_record_batch};
use arrow::datatypes::{DataType, Schema};
use datafusion::common::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, InListExpr, LikeExpr};
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr_common::physical_expr::is_volatile;

use crate::clustered_agg::same_key;

/// `inner`, whose only column is the string column `column`, evaluated
/// once per run of equal keys.
#[derive(Debug, Eq)]
pub(crate) struct PerRun {
    inner: Arc<dyn PhysicalExpr>,
    column: usize,
}

impl Hash for PerRun {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.column.hash(state);
    }
}

impl PartialEq for PerRun {
    fn eq(&self, other: &Self) -> bool {
        self.column == other.column && self.inner.as_ref() == other.inner.as_ref()
    }
}

impl PerRun {
    /// `expr` wrapped when it is an IN list or LIKE over a string column of
    /// `schema`.
    pub(crate) fn wrap(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Option<Self> {
        let column = operand(expr)?;
        let field = schema.fields().get(column)?;
        matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8).then(|| PerRun {
            inner: Arc::clone(expr),
            column,
        })
    }
}

/// The column an IN list or LIKE tests, when it is the only column the
/// expression reads (`tag IN (other_column, …)` varies within a run of
/// `tag`) and nothing in it is volatile (`random()`).
fn operand(expr: &Arc<dyn PhysicalExpr>) -> Option<usize> {
    let any = expr.as_any();
    let operand = if let Some(e) = any.downcast_ref::<InListExpr>() {
        e.expr()
    } else if let Some(e) = any.downcast_ref::<LikeExpr>() {
        e.expr()
    } else {
        return None;
    };
    let column = operand.as_any().downcast_ref::<Column>()?;
    let only = collect_columns(expr).len() == 1 && !is_volatile(expr);
    only.then(|| column.index())
}

/// The first row of each run of equal keys, or None when runs are short.
fn run_starts<O: OffsetSizeTrait>(keys: &GenericStringArray<O>) -> Option<Vec<u32>> {
    let n = keys.len();
    let offsets = keys.value_offsets();
    let bytes = keys.value_data();
    let key = |i: usize| &bytes[offsets[i].as_usize()..offsets[i + 1].as_usize()];
    let valid = |i: usize| keys.is_valid(i);
    let mut starts = vec![0];
    for i in 1..n {
        if valid(i) != valid(i - 1) || !same_key(key(i - 1), key(i)) {
            starts.push(i as u32);
            if starts.len() > n / 8 + 1 {
                return None;
            }
        }
    }
    Some(starts)
}

impl PhysicalExpr for PerRun {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let n = batch.num_rows();
        let keys = batch.column(self.column);
        let starts = match keys.data_type() {
            DataType::Utf8 if n > 0 => run_starts(keys.as_string::<i32>()),
            DataType::LargeUtf8 if n > 0 => run_starts(keys.as_string::<i64>()),
            _ => None,
        };
        let Some(starts) = starts else {
            return self.inner.evaluate(batch);
        };
        let firsts = take_record_batch(batch, &UInt32Array::from(starts.clone()))?;
        let answers = self.inner.evaluate(&firsts)?.into_array(starts.len())?;
        // Row i takes the answer of the run it is in.
        let mut run_of_row = Vec::with_capacity(n);
        for (run, bounds) in starts.windows(2).enumerate() {
            run_of_row.extend(std::iter::repeat_n(
                run as u32,
                (bounds[1] - bounds[0]) as usize,
            ));
        }
        let last = starts.len() - 1;
        run_of_row.extend(std::iter::repeat_n(last as u32, n - starts[last] as usize));
        Ok(ColumnarValue::Array(take(
            &answers,
            &UInt32Array::from(run_of_row),
            None,
        )?))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let inner = children
            .into_iter()
            .next()
            .unwrap_or_else(|| Arc::clone(&self.inner));
        Ok(match operand(&inner) {
            Some(column) => Arc::new(PerRun { inner, column }),
            None => inner,
        })
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

impl fmt::Display for PerRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "per_run({})", self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, StringArray};
    use arrow::datatypes::Field;
    use datafusion::common::ScalarValue;
    use datafusion::physical_expr::expressions::{in_list, like, lit};

    fn batch(keys: Vec<Option<&str>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Utf8, true)]));
        let keys: ArrayRef = Arc::new(StringArray::from(keys));
        RecordBatch::try_new(schema, vec![keys]).unwrap()
    }

    /// Clustered keys with NULL runs, and interleaved keys (the fallback).
    #[test]
    fn answers_equal_the_wrapped_expression() {
        let mut clustered = Vec::new();
        for (key, n) in [
            (Some("a"), 300),
            (None, 200),
            (Some("bb"), 250),
            (Some("a"), 250),
        ] {
            clustered.extend(std::iter::repeat_n(key, n));
        }
        let interleaved: Vec<Option<&str>> = (0..1000)
            .map(|i| [Some("a"), Some("bb"), None][i % 3])
            .collect();
        let schema = batch(vec![]).schema();
        let k: Arc<dyn PhysicalExpr> = Arc::new(Column::new("k", 0));
        let list = |values: &[Option<&str>]| {
            values
                .iter()
                .map(|v| lit(ScalarValue::Utf8(v.map(str::to_string))))
                .collect::<Vec<_>>()
        };
        let exprs = [
            in_list(Arc::clone(&k), list(&[Some("a")]), &false, &schema).unwrap(),
            in_list(Arc::clone(&k), list(&[Some("bb"), None]), &true, &schema).unwrap(),
            like(false, false, Arc::clone(&k), lit("b%"), &schema).unwrap(),
        ];
        // A list or pattern reading another column is not per run.
        let two = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("o", DataType::Utf8, true),
        ]);
        let o: Arc<dyn PhysicalExpr> = Arc::new(Column::new("o", 1));
        let other = in_list(Arc::clone(&k), vec![Arc::clone(&o)], &false, &two).unwrap();
        assert!(PerRun::wrap(&other, &two).is_none());
        let pattern = like(false, false, Arc::clone(&k), o, &two).unwrap();
        assert!(PerRun::wrap(&pattern, &two).is_none());
        for (keys, runs) in [(clustered, true), (interleaved, false)] {
            let b = batch(keys);
            assert_eq!(run_starts(b.column(0).as_string::<i32>()).is_some(), runs);
            for e in &exprs {
                let wrapped = PerRun::wrap(e, &schema).expect("wrapped");
                let want = e.evaluate(&b).unwrap().into_array(b.num_rows()).unwrap();
                let got = wrapped
                    .evaluate(&b)
                    .unwrap()
                    .into_array(b.num_rows())
                    .unwrap();
                assert_eq!(got.as_ref(), want.as_ref(), "{e}");
            }
        }
    }
}
