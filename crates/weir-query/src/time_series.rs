//! Time-series SQL functions (issue 22): selectors and `time_bucket`.
//!
//! - `first(value, time)` / `last(value, time)` (TimescaleDB): the value of
//!   the row with the least / greatest `time`. Rows whose `time` is NULL are
//!   ignored; a NULL `value` is returned as it is (the row still counts);
//!   ties: any of the tied rows. `time` may be any orderable type.
//! - `selector_first(value, time [, other…])`, `selector_last`,
//!   `selector_min`, `selector_max` (InfluxDB 3, `iox_query`'s
//!   `query_functions::selectors`): a struct `{value, time, other_1, …}` of
//!   the row with the least / greatest `time`, or the least / greatest
//!   `value` (ties: the earliest `time`). Rows with a NULL `value` are
//!   ignored (and for first/last, rows with a NULL `time`); `time` must be a
//!   timestamp. No rows: `{value: NULL, time: NULL}`, as in InfluxDB.
//!   Fields: `selector_last(v, ts)['value']`, `…['time']`.
//!
//! All six are thin wrappers over DataFusion's `first_value(x ORDER BY …)`:
//! the accumulator (and, for primitive values, the group accumulator) *is*
//! DataFusion's, built with the ordering below; the wrapper drops the rows
//! that do not count before handing batches over, packs the selector's
//! struct, and names the state fields. Partial aggregation (state, merge) is
//! DataFusion's, so results are the same with any number of partitions.
//!
//! - `time_bucket(width, ts [, origin | offset])` (TimescaleDB): `date_bin` with
//!   TimescaleDB's default origin — Monday 2000-01-03 00:00 (UTC for
//!   timestamps with a zone) for widths without months, 2000-01-01 for
//!   widths in months or years. For widths that divide a day this equals
//!   `date_bin`'s 1970-01-01 origin; weeks start on Monday (`date_bin`'s
//!   start on Thursday), and multi-day widths align as in TimescaleDB.
//!   An interval as third argument is TimescaleDB's `offset` (the origin
//!   moved by it; not in months); a timestamp is the origin. Planned as
//!   `date_bin(width, ts, origin)` (simplified, so `EXPLAIN` shows
//!   `date_bin` and DataFusion knows it keeps the order of `ts`).

use std::any::Any;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StructArray};
use arrow::compute::kernels::boolean::and;
use arrow::compute::{filter, is_not_null};
use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::arrow::compute::SortOptions;
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::functions_aggregate::first_last::first_value_udaf;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, EmitTo, Expr, GroupsAccumulator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_plan::expressions::format_state_name;
use datafusion::prelude::SessionContext;

mod timed_groups;

/// Registers the functions of this module with `ctx`.
pub(crate) fn register(ctx: &SessionContext) {
    for kind in Kind::ALL {
        ctx.register_udaf(AggregateUDF::from(TimeSelector::new(kind)));
    }
    ctx.register_udf(time_bucket_udf());
    crate::gapfill::register(ctx);
}

/// `time_bucket` (the bucketing of `time_bucket_gapfill`).
pub(crate) fn time_bucket_udf() -> ScalarUDF {
    ScalarUDF::from(TimeBucket::new())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    First,
    Last,
    SelectorFirst,
    SelectorLast,
    SelectorMin,
    SelectorMax,
}

const ASC: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};
const DESC: SortOptions = SortOptions {
    descending: true,
    nulls_first: false,
};

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::First,
        Kind::Last,
        Kind::SelectorFirst,
        Kind::SelectorLast,
        Kind::SelectorMin,
        Kind::SelectorMax,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::First => "first",
            Kind::Last => "last",
            Kind::SelectorFirst => "selector_first",
            Kind::SelectorLast => "selector_last",
            Kind::SelectorMin => "selector_min",
            Kind::SelectorMax => "selector_max",
        }
    }

    fn is_selector(self) -> bool {
        !matches!(self, Kind::First | Kind::Last)
    }

    /// The `ORDER BY` of the `first_value` doing the work: (argument, order).
    /// NULLS LAST: among equal values, a row with a time beats one without.
    fn ordering(self) -> &'static [(usize, SortOptions)] {
        match self {
            Kind::First | Kind::SelectorFirst => &[(1, ASC)],
            Kind::Last | Kind::SelectorLast => &[(1, DESC)],
            Kind::SelectorMin => &[(0, ASC), (1, ASC)],
            Kind::SelectorMax => &[(0, DESC), (1, ASC)],
        }
    }

    /// Arguments whose NULL takes the row out of the aggregate.
    fn required(self) -> &'static [usize] {
        match self {
            Kind::First | Kind::Last => &[1],
            Kind::SelectorFirst | Kind::SelectorLast => &[0, 1],
            Kind::SelectorMin | Kind::SelectorMax => &[0],
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeSelector {
    kind: Kind,
    signature: Signature,
}

impl TimeSelector {
    fn new(kind: Kind) -> Self {
        TimeSelector {
            kind,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// The arguments of the `first_value` this call stands for.
    fn inner_args<'a>(
        &self,
        args: &AccumulatorArgs<'a>,
        order_bys: &'a [PhysicalSortExpr],
    ) -> Result<AccumulatorArgs<'a>> {
        if !args.order_bys.is_empty() || args.is_distinct || args.ignore_nulls {
            return plan_err!(
                "{} takes no ORDER BY, DISTINCT or IGNORE NULLS",
                self.kind.name()
            );
        }
        Ok(AccumulatorArgs {
            return_field: Arc::clone(&args.return_field),
            schema: args.schema,
            ignore_nulls: false,
            order_bys,
            is_reversed: false,
            name: args.name,
            is_distinct: false,
            exprs: &args.exprs[..1],
            expr_fields: &args.expr_fields[..1],
        })
    }

    fn order_bys(&self, args: &AccumulatorArgs) -> Vec<PhysicalSortExpr> {
        self.kind
            .ordering()
            .iter()
            .map(|(i, options)| PhysicalSortExpr {
                expr: Arc::clone(&args.exprs[*i]),
                options: *options,
            })
            .collect()
    }

    fn struct_fields(&self, return_field: &FieldRef) -> Option<Fields> {
        match return_field.data_type() {
            DataType::Struct(fields) if self.kind.is_selector() => Some(fields.clone()),
            _ => None,
        }
    }
}

impl AggregateUDFImpl for TimeSelector {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let name = self.kind.name();
        if self.kind.is_selector() {
            if arg_types.len() < 2 {
                return plan_err!(
                    "{name}(value, time [, other…]) takes at least 2 arguments, got {}",
                    arg_types.len()
                );
            }
            if !matches!(arg_types[1], DataType::Timestamp(_, _)) {
                return plan_err!(
                    "{name}: the second argument must be a timestamp, got {}",
                    arg_types[1]
                );
            }
        } else {
            if arg_types.len() != 2 {
                return plan_err!(
                    "{name}(value, time) takes 2 arguments, got {}",
                    arg_types.len()
                );
            }
            if arg_types[1].is_nested() {
                return plan_err!(
                    "{name}: the second argument must be orderable (a time), got {}",
                    arg_types[1]
                );
            }
        }
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        if !self.kind.is_selector() {
            return Ok(arg_types[0].clone());
        }
        let mut fields = vec![
            Field::new("value", arg_types[0].clone(), true),
            Field::new("time", arg_types[1].clone(), true),
        ];
        fields.extend(
            arg_types[2..]
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("other_{}", i + 1), t.clone(), true)),
        );
        Ok(DataType::Struct(fields.into()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let order_bys = self.order_bys(&args);
        let inner = first_value_udaf().accumulator(self.inner_args(&args, &order_bys)?)?;
        Ok(Box::new(SelectorAccumulator {
            kind: self.kind,
            fields: self.struct_fields(&args.return_field),
            inner,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // first_value's state: [value, ordering columns…, is_set]; the
        // ordering columns are named after this aggregate (unique in the
        // partial aggregate's output).
        let ordering_fields: Vec<FieldRef> = self
            .kind
            .ordering()
            .iter()
            .enumerate()
            .map(|(n, (i, _))| {
                Arc::new(Field::new(
                    format_state_name(args.name, &format!("order_{n}")),
                    args.input_fields[*i].data_type().clone(),
                    true,
                ))
            })
            .collect();
        first_value_udaf().state_fields(StateFieldsArgs {
            name: args.name,
            input_fields: &args.input_fields[..1],
            return_field: Arc::clone(&args.return_field),
            ordering_fields: &ordering_fields,
            is_distinct: false,
        })
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        let order_bys = self.order_bys(&args);
        !self.kind.is_selector()
            && self
                .inner_args(&args, &order_bys)
                .is_ok_and(|inner| first_value_udaf().groups_accumulator_supported(inner))
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let order_bys = self.order_bys(&args);
        let fast = match (self.kind, args.expr_fields) {
            (Kind::First | Kind::Last, [value, time]) => {
                timed_groups::try_new(self.kind == Kind::Last, value.data_type(), time.data_type())
            }
            _ => None,
        };
        let inner = match fast {
            Some(fast) => fast,
            None => {
                first_value_udaf().create_groups_accumulator(self.inner_args(&args, &order_bys)?)?
            }
        };
        Ok(Box::new(SelectorGroupsAccumulator {
            kind: self.kind,
            inner,
        }))
    }
}

/// `[value, ordering columns…]` as `first_value` reads them, from the call's
/// arguments: the selector's struct packed, the ordering picked.
fn inner_columns(
    kind: Kind,
    fields: Option<&Fields>,
    values: &[ArrayRef],
) -> Result<Vec<ArrayRef>> {
    let value = match fields {
        Some(fields) => {
            Arc::new(StructArray::try_new(fields.clone(), values.to_vec(), None)?) as ArrayRef
        }
        None => Arc::clone(&values[0]),
    };
    let mut columns = vec![value];
    columns.extend(kind.ordering().iter().map(|(i, _)| Arc::clone(&values[*i])));
    Ok(columns)
}

/// The rows that count (`Kind::required` not NULL); `None`: all of them.
fn counted_rows(kind: Kind, values: &[ArrayRef]) -> Result<Option<BooleanArray>> {
    let mut mask: Option<BooleanArray> = None;
    for i in kind.required() {
        let column = &values[*i];
        if column.null_count() == 0 {
            continue;
        }
        let present = is_not_null(column)?;
        mask = Some(match mask {
            Some(m) => and(&m, &present)?,
            None => present,
        });
    }
    Ok(mask)
}

#[derive(Debug)]
struct SelectorAccumulator {
    kind: Kind,
    /// The selector's struct fields (`None` for first/last).
    fields: Option<Fields>,
    inner: Box<dyn Accumulator>,
}

impl Accumulator for SelectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let mut columns = inner_columns(self.kind, self.fields.as_ref(), values)?;
        if let Some(mask) = counted_rows(self.kind, values)? {
            columns = columns
                .iter()
                .map(|c| filter(c, &mask))
                .collect::<Result<_, _>>()?;
        }
        self.inner.update_batch(&columns)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let value = self.inner.evaluate()?;
        match &self.fields {
            // No row: a struct of NULLs, as InfluxDB's selectors answer.
            Some(fields) if value.is_null() => {
                let children = fields
                    .iter()
                    .map(|f| arrow::array::new_null_array(f.data_type(), 1))
                    .collect();
                Ok(ScalarValue::Struct(Arc::new(StructArray::try_new(
                    fields.clone(),
                    children,
                    None,
                )?)))
            }
            _ => Ok(value),
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.inner.size()
    }
}

/// first/last over primitive values: DataFusion's group accumulator, with
/// the rows that do not count masked out through the filter it takes.
struct SelectorGroupsAccumulator {
    kind: Kind,
    inner: Box<dyn GroupsAccumulator>,
}

impl GroupsAccumulator for SelectorGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        let columns = inner_columns(self.kind, None, values)?;
        let mask = match (counted_rows(self.kind, values)?, opt_filter) {
            (Some(m), Some(f)) => Some(and(&m, f)?),
            (Some(m), None) => Some(m),
            (None, f) => f.cloned(),
        };
        self.inner
            .update_batch(&columns, group_indices, mask.as_ref(), total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        self.inner.evaluate(emit_to)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}

/// `time_bucket(width, ts [, origin | offset])`: `date_bin` with
/// TimescaleDB's default origin (module docs).
#[derive(Debug, PartialEq, Eq, Hash)]
struct TimeBucket {
    date_bin: Arc<ScalarUDF>,
    signature: Signature,
}

/// 2000-01-03T00:00:00Z (a Monday) and 2000-01-01T00:00:00Z in nanoseconds.
const ORIGIN_DAYS: i64 = 946_857_600_000_000_000;
const ORIGIN_MONTHS: i64 = 946_684_800_000_000_000;
const NANOS_PER_DAY: i64 = 86_400_000_000_000;

impl TimeBucket {
    fn new() -> Self {
        TimeBucket {
            date_bin: datafusion::functions::datetime::date_bin(),
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// `date_bin`'s arguments for this call: the origin added when there is
    /// none (or moved by the offset); `None` when `date_bin` takes the
    /// arguments as they are (`TIME` input, a width that is not a constant).
    fn origin(
        &self,
        width: &ScalarValue,
        ts: &DataType,
        third: Option<&ScalarValue>,
    ) -> Result<Option<ScalarValue>> {
        let offset = match third {
            None => 0,
            Some(ScalarValue::IntervalMonthDayNano(Some(v))) => {
                if v.months != 0 {
                    return plan_err!("time_bucket: an offset in months is not supported");
                }
                v.days as i64 * NANOS_PER_DAY + v.nanoseconds
            }
            Some(ScalarValue::IntervalMonthDayNano(None)) => {
                return plan_err!("time_bucket: the offset is NULL");
            }
            Some(_) => return Ok(None),
        };
        Ok(default_origin(width, ts).map(|origin| match origin {
            ScalarValue::TimestampNanosecond(Some(o), tz) => {
                ScalarValue::TimestampNanosecond(Some(o + offset), tz)
            }
            other => other,
        }))
    }
}

/// TimescaleDB's origin for `width` over `ts`, as a timestamp of the same
/// zone-ness as `ts` (what `date_bin`'s signature wants); `None` for other
/// input (`TIME` values: `date_bin`'s own midnight origin) or a width that is
/// not a constant interval (`date_bin` refuses those).
fn default_origin(width: &ScalarValue, ts: &DataType) -> Option<ScalarValue> {
    let DataType::Timestamp(_, tz) = ts else {
        return None;
    };
    let months = match width {
        ScalarValue::IntervalMonthDayNano(Some(v)) => v.months != 0,
        ScalarValue::IntervalYearMonth(Some(m)) => *m != 0,
        ScalarValue::IntervalDayTime(Some(_)) => false,
        _ => return None,
    };
    let origin = if months { ORIGIN_MONTHS } else { ORIGIN_DAYS };
    Some(ScalarValue::TimestampNanosecond(
        Some(origin),
        tz.as_ref().map(|_| Arc::from("+00:00")),
    ))
}

impl ScalarUDFImpl for TimeBucket {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        "time_bucket"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// `date_bin`'s coercions; a third argument that is an interval is
    /// TimescaleDB's `offset`.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let usage = "time_bucket(width, ts [, origin | offset])";
        let (bin, offset) = match arg_types {
            [w, ts, DataType::Interval(_)] => (vec![w.clone(), ts.clone()], true),
            [_, _] | [_, _, _] => (arg_types.to_vec(), false),
            _ => return plan_err!("{usage} takes 2 or 3 arguments, got {}", arg_types.len()),
        };
        let fields: Vec<FieldRef> = bin
            .into_iter()
            .map(|t| Arc::new(Field::new("a", t, true)))
            .collect();
        let coerced = fields_with_udf(&fields, self.date_bin.as_ref())
            .map_err(|e| DataFusionError::Plan(format!("{usage}: {}", e.strip_backtrace())))?;
        let mut types: Vec<DataType> = coerced.iter().map(|f| f.data_type().clone()).collect();
        if offset {
            types.push(DataType::Interval(
                arrow::datatypes::IntervalUnit::MonthDayNano,
            ));
        }
        Ok(types)
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.date_bin.inner().return_type(&arg_types[..2])
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ColumnarValue::Scalar(width) = &args.args[0] else {
            return exec_err!("time_bucket: the bucket width must be a constant interval");
        };
        let third = match args.args.get(2) {
            Some(ColumnarValue::Scalar(v)) => Some(v),
            Some(ColumnarValue::Array(_)) => {
                return exec_err!("time_bucket: the origin or offset must be a constant");
            }
            None => None,
        };
        if let Some(origin) = self.origin(width, args.arg_fields[1].data_type(), third)? {
            args.args.truncate(2);
            args.arg_fields.truncate(2);
            args.arg_fields
                .push(Arc::new(Field::new("origin", origin.data_type(), true)));
            args.args.push(ColumnarValue::Scalar(origin));
        }
        self.date_bin.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        let third = match args.get(2) {
            Some(Expr::Literal(v, _)) => Some(v),
            Some(_) => return Ok(ExprSimplifyResult::Original(args)),
            None => None,
        };
        if let (Some(Expr::Literal(width, _)), Some(ts)) = (args.first(), args.get(1))
            && let Ok(ts_type) = info.get_data_type(ts)
        {
            if let Some(origin) = self.origin(width, &ts_type, third)? {
                let mut args = args;
                args.truncate(2);
                args.push(Expr::Literal(origin, None));
                return Ok(ExprSimplifyResult::Simplified(self.date_bin.call(args)));
            }
            if third.is_some() {
                return Ok(ExprSimplifyResult::Simplified(self.date_bin.call(args)));
            }
        }
        Ok(ExprSimplifyResult::Original(args))
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.date_bin.output_ordering(input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;

    #[test]
    fn origins_are_timescaledb_defaults() {
        // 2000-01-03 is a Monday, 10,959 days after the epoch.
        assert_eq!(ORIGIN_DAYS, 10_959 * 86_400 * 1_000_000_000);
        assert_eq!(ORIGIN_MONTHS, 10_957 * 86_400 * 1_000_000_000);
        let week = ScalarValue::new_interval_mdn(0, 7, 0);
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(
            default_origin(&week, &ts),
            Some(ScalarValue::TimestampNanosecond(Some(ORIGIN_DAYS), None))
        );
        let quarter = ScalarValue::new_interval_mdn(3, 0, 0);
        let tstz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            default_origin(&quarter, &tstz),
            Some(ScalarValue::TimestampNanosecond(
                Some(ORIGIN_MONTHS),
                Some("+00:00".into())
            ))
        );
        assert_eq!(
            default_origin(&week, &DataType::Time64(TimeUnit::Microsecond)),
            None
        );
    }
}
