//! `GapFillExec` and its planner (after IOx's `iox_query/src/exec/gapfill`,
//! MIT/Apache-2.0): the bounds and the stride are evaluated when the plan
//! is made; the node reads its partition (whole groups: hash-partitioned by
//! the group columns, sorted by them and the time) and emits each group
//! with its missing buckets.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, RecordBatchOptions,
    TimestampNanosecondArray, UInt32Array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{SortOptions, cast, concat_batches, partition, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampNanosecondType};
use async_trait::async_trait;
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue, plan_err};
use datafusion::execution::context::SessionState;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{
    ColumnarValue, LogicalPlan, ScalarFunctionArgs, UserDefinedLogicalNode,
};
use datafusion::physical_expr::{
    EquivalenceProperties, LexOrdering, LexRequirement, OrderingRequirements, PhysicalExpr,
    PhysicalSortExpr, PhysicalSortRequirement,
};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, ExecutionPlanProperties,
    PlanProperties,
};
use datafusion::physical_planner::{ExtensionPlanner, PhysicalPlanner};
use futures::{StreamExt, TryStreamExt};

use super::Fill;
use super::logical::{GapFill, TimeBound};

/// At most this many buckets per group: a finer interval or a longer range
/// is refused rather than filling memory.
const MAX_BUCKETS: i64 = 10_000_000;

const NANOS_PER_DAY: i64 = 86_400_000_000_000;

/// Plans a [`GapFill`] node as a [`GapFillExec`].
#[derive(Debug)]
pub(crate) struct GapFillPlanner;

#[async_trait]
impl ExtensionPlanner for GapFillPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<GapFill>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return Err(DataFusionError::Internal("GapFill has one input".into()));
        };
        let name = node.name;
        let time_type = input.schema().field(node.time).data_type().clone();
        let DataType::Timestamp(_, tz) = &time_type else {
            return plan_err!("{name}: the time must be a timestamp, not {time_type}");
        };
        let eval = Evaluator {
            planner,
            session_state,
        };
        let stride = eval.scalar(&node.stride)?;
        let stride_nanos = stride_nanos(name, &stride)?;
        let extra = node
            .extra
            .iter()
            .map(|e| eval.scalar(e))
            .collect::<Result<Vec<_>>>()?;
        let (lower, upper) = time_range(node, &eval)?;
        let binner = Binner {
            node,
            stride,
            extra,
            tz: tz.clone(),
            config: session_state.config_options().clone(),
        };
        let (first, last) = if lower <= upper {
            (binner.bucket(lower)?, binner.bucket(upper)?)
        } else {
            (1, 0) // an empty range: no buckets
        };
        if first <= last {
            let buckets = (i128::from(last) - i128::from(first)) / i128::from(stride_nanos) + 1;
            if buckets > i128::from(MAX_BUCKETS) {
                return plan_err!(
                    "{name}: {buckets} buckets per group (more than {MAX_BUCKETS}); \
                     use a wider interval or a shorter time range"
                );
            }
        }
        Ok(Some(Arc::new(GapFillExec::new(
            input.clone(),
            Params {
                time: node.time,
                series: node.series.clone(),
                fills: node
                    .fills
                    .iter()
                    .enumerate()
                    .map(|(k, f)| (node.first_aggregate + k, f.clone()))
                    .collect(),
                stride: stride_nanos,
                first,
                last,
            },
        ))))
    }
}

/// Evaluates the node's constant expressions (stride, bounds, the bin
/// function's other arguments) while the plan is made.
struct Evaluator<'a> {
    planner: &'a dyn PhysicalPlanner,
    session_state: &'a SessionState,
}

impl Evaluator<'_> {
    /// The value of constant `e`.
    fn scalar(&self, e: &datafusion::logical_expr::Expr) -> Result<ScalarValue> {
        let empty = DFSchema::empty();
        let physical = self
            .planner
            .create_physical_expr(e, &empty, self.session_state)?;
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::empty()),
            vec![],
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )?;
        match physical.evaluate(&batch)? {
            ColumnarValue::Scalar(v) => Ok(v),
            ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
        }
    }
}

/// The interval `stride` in nanoseconds: positive, without months or years
/// (buckets of one length).
fn stride_nanos(name: &str, stride: &ScalarValue) -> Result<i64> {
    let stride_nanos = match stride {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => i64::from(v.days)
            .checked_mul(NANOS_PER_DAY)
            .and_then(|d| d.checked_add(v.nanoseconds)),
        ScalarValue::IntervalDayTime(Some(v)) => i64::from(v.days)
            .checked_mul(NANOS_PER_DAY)
            .and_then(|d| d.checked_add(i64::from(v.milliseconds) * 1_000_000)),
        ScalarValue::IntervalMonthDayNano(Some(_)) | ScalarValue::IntervalYearMonth(Some(_)) => {
            return plan_err!(
                "{name}: the interval must not have months or years (buckets of one length)"
            );
        }
        other => return plan_err!("{name}: the interval must be an interval, got {other}"),
    };
    match stride_nanos {
        Some(n) if n > 0 => Ok(n),
        _ => plan_err!("{name}: the interval must be positive, got {stride}"),
    }
}

/// The time range to fill, in nanoseconds (inclusive; exclusive bounds
/// moved by one nanosecond).
fn time_range(node: &GapFill, eval: &Evaluator<'_>) -> Result<(i64, i64)> {
    let name = node.name;
    let bound = |b: &TimeBound, what: &str, step: i64| -> Result<i64> {
        let nanos = timestamp_nanos(&eval.scalar(&b.expr)?).ok_or_else(|| {
            plan_datafusion(format!(
                "{name}: the {what} time bound {} is not a timestamp (or NULL)",
                b.expr
            ))
        })?;
        Ok(if b.inclusive {
            nanos
        } else {
            nanos.saturating_add(step)
        })
    };
    // Every bound applies: the greatest lower and the least upper one.
    let mut lower = i64::MIN;
    for b in &node.lower {
        lower = lower.max(bound(b, "lower", 1)?);
    }
    let mut upper = i64::MAX;
    for b in &node.upper {
        upper = upper.min(bound(b, "upper", -1)?);
    }
    Ok((lower, upper))
}

/// The node's bucketing function with its stride and other arguments.
struct Binner<'a> {
    node: &'a GapFill,
    stride: ScalarValue,
    /// The arguments after the time (origin, offset).
    extra: Vec<ScalarValue>,
    /// The time column's zone.
    tz: Option<Arc<str>>,
    config: Arc<datafusion::config::ConfigOptions>,
}

impl Binner<'_> {
    /// The start (ns) of the bucket holding `ts`.
    fn bucket(&self, ts: i64) -> Result<i64> {
        let (name, tz) = (self.node.name, &self.tz);
        let mut args = vec![
            ColumnarValue::Scalar(self.stride.clone()),
            ColumnarValue::Scalar(ScalarValue::TimestampNanosecond(Some(ts), tz.clone())),
        ];
        args.extend(self.extra.iter().cloned().map(ColumnarValue::Scalar));
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type(), true)))
            .collect();
        let out = self.node.bin.invoke_with_args(ScalarFunctionArgs {
            args,
            arg_fields,
            number_rows: 1,
            return_field: Arc::new(Field::new(
                "r",
                DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()),
                true,
            )),
            config_options: self.config.clone(),
        })?;
        let value = match out {
            ColumnarValue::Scalar(v) => v,
            ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
        };
        timestamp_nanos(&value)
            .ok_or_else(|| plan_datafusion(format!("{name}: no bucket for {ts}")))
    }
}

fn plan_datafusion(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

/// A timestamp scalar in nanoseconds since the epoch.
fn timestamp_nanos(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

/// What the node does, evaluated.
#[derive(Debug, Clone)]
struct Params {
    time: usize,
    series: Vec<usize>,
    /// (input column, fill) of each aggregate column.
    fills: Vec<(usize, Fill)>,
    /// Bucket width, first and last bucket (inclusive), in nanoseconds.
    stride: i64,
    first: i64,
    last: i64,
}

#[derive(Debug)]
pub(crate) struct GapFillExec {
    input: Arc<dyn ExecutionPlan>,
    params: Params,
    properties: Arc<PlanProperties>,
}

impl GapFillExec {
    fn new(input: Arc<dyn ExecutionPlan>, params: Params) -> Self {
        let schema = input.schema();
        let ordering = LexOrdering::new(Self::ordering(&schema, &params));
        let eq = match ordering {
            Some(o) => EquivalenceProperties::new_with_orderings(schema.clone(), [o]),
            None => EquivalenceProperties::new(schema.clone()),
        };
        let properties = PlanProperties::new(
            eq,
            input.output_partitioning().clone(),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        GapFillExec {
            input,
            params,
            properties: Arc::new(properties),
        }
    }

    /// Group columns, then the time (NULLs first).
    fn ordering(schema: &SchemaRef, params: &Params) -> Vec<PhysicalSortExpr> {
        let column = |i: usize| -> Arc<dyn PhysicalExpr> {
            Arc::new(Column::new(schema.field(i).name(), i))
        };
        params
            .series
            .iter()
            .map(|&i| PhysicalSortExpr::new(column(i), SortOptions::default()))
            .chain(std::iter::once(PhysicalSortExpr::new(
                column(params.time),
                SortOptions {
                    descending: false,
                    nulls_first: true,
                },
            )))
            .collect()
    }
}

impl DisplayAs for GapFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.input.schema();
        let name = |i: usize| format!("{}@{i}", schema.field(i).name());
        let series: Vec<String> = self.params.series.iter().map(|&i| name(i)).collect();
        let fills: Vec<String> = self
            .params
            .fills
            .iter()
            .filter_map(|(i, fill)| match fill {
                Fill::Default(v) if v.is_null() => None,
                Fill::Default(v) => Some(format!("coalesce({}, {v})", name(*i))),
                _ => Some(format!("{}({})", fill.function_name(), name(*i))),
            })
            .collect();
        let ts = |n: i64| {
            chrono::DateTime::from_timestamp_nanos(n)
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.f")
                .to_string()
        };
        write!(
            f,
            "GapFillExec: series=[{}], time={}, stride={}ns, buckets=[{}, {}], fill=[{}]",
            series.join(", "),
            name(self.params.time),
            self.params.stride,
            ts(self.params.first),
            ts(self.params.last),
            fills.join(", ")
        )
    }
}

impl ExecutionPlan for GapFillExec {
    fn name(&self) -> &str {
        "GapFillExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        if self.params.series.is_empty() {
            vec![Distribution::SinglePartition]
        } else {
            let schema = self.input.schema();
            vec![Distribution::HashPartitioned(
                self.params
                    .series
                    .iter()
                    .map(|&i| Arc::new(Column::new(schema.field(i).name(), i)) as _)
                    .collect(),
            )]
        }
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        let requirement = LexRequirement::new(
            Self::ordering(&self.input.schema(), &self.params)
                .into_iter()
                .map(PhysicalSortRequirement::from),
        );
        vec![requirement.map(OrderingRequirements::new)]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("GapFillExec needs one child".into()))?;
        Ok(Arc::new(GapFillExec::new(input, self.params.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let schema = self.schema();
        let input = self.input.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("GapFillExec[{partition}]"))
            .register(context.memory_pool());
        let params = self.params.clone();
        let batch_size = context.session_config().batch_size();
        let out_schema = schema.clone();
        let stream = futures::stream::once(async move {
            let mut batches = Vec::new();
            let mut input = input;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                reservation.try_grow(batch.get_array_memory_size())?;
                batches.push(batch);
            }
            let all = concat_batches(&out_schema, &batches)?;
            drop(batches);
            let filler = Filler::new(all, params, batch_size, reservation)?;
            Ok::<_, DataFusionError>(futures::stream::iter(filler))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Emits the groups of `input` (sorted, whole) with their gaps filled, a
/// few groups per batch.
struct Filler {
    input: RecordBatch,
    params: Params,
    /// Input times in nanoseconds.
    times: TimestampNanosecondArray,
    /// Input row ranges of the groups not emitted yet (reversed).
    groups: Vec<std::ops::Range<usize>>,
    batch_size: usize,
    _reservation: MemoryReservation,
}

impl Filler {
    fn new(
        input: RecordBatch,
        params: Params,
        batch_size: usize,
        reservation: MemoryReservation,
    ) -> Result<Self> {
        let time = input.column(params.time);
        let DataType::Timestamp(_, tz) = time.data_type() else {
            return Err(DataFusionError::Internal(
                "GapFillExec: time is not a timestamp".into(),
            ));
        };
        if input.num_rows() > u32::MAX as usize {
            return Err(DataFusionError::ResourcesExhausted(
                "GapFillExec: more than 2^32 rows in one partition".into(),
            ));
        }
        let times = cast(time, &DataType::Timestamp(TimeUnit::Nanosecond, tz.clone()))?
            .as_primitive::<TimestampNanosecondType>()
            .clone();
        // Without group columns, the one group (in the one partition) has
        // its buckets even without rows.
        let mut groups = if params.series.is_empty() {
            std::iter::once(0..input.num_rows()).collect()
        } else {
            let keys: Vec<ArrayRef> = params
                .series
                .iter()
                .map(|&i| input.column(i).clone())
                .collect();
            partition(&keys)?.ranges()
        };
        groups.reverse();
        Ok(Filler {
            input,
            params,
            times,
            groups,
            batch_size,
            _reservation: reservation,
        })
    }

    /// Output rows of one group: (input row or None for a gap, time).
    fn fill_group(&self, rows: std::ops::Range<usize>, out: &mut Rows) {
        let p = &self.params;
        let start = out.source.len();
        let key = rows.start;
        let mut next = Some(p.first).filter(|&g| g <= p.last);
        let mut i = rows.start;
        loop {
            let input_time =
                (i < rows.end).then(|| self.times.is_valid(i).then(|| self.times.value(i)));
            match (input_time, next) {
                (None, None) => break,
                // Input rows without a time, before the next bucket or after
                // the last one, as they are.
                (Some(None), _) => {
                    out.push(Some(i), key, None);
                    i += 1;
                }
                (Some(Some(t)), Some(g)) if t > g => {
                    out.push(None, key, Some(g));
                    next = advance(g, p);
                }
                (Some(Some(t)), g) => {
                    out.push(Some(i), key, Some(t));
                    if g == Some(t) {
                        next = advance(t, p);
                    }
                    i += 1;
                }
                (None, Some(g)) => {
                    out.push(None, key, Some(g));
                    next = advance(g, p);
                }
            }
        }
        out.groups.push(start..out.source.len());
    }

    fn build(&self, rows: Rows) -> Result<RecordBatch> {
        let input = &self.input;
        let source = UInt32Array::from(rows.source.clone());
        let keys = UInt32Array::from(rows.key.clone());
        let gaps = BooleanArray::from(
            rows.source
                .iter()
                .map(|s| s.is_none())
                .collect::<Vec<bool>>(),
        );
        let mut columns = Vec::with_capacity(input.num_columns());
        for (i, column) in input.columns().iter().enumerate() {
            let out: ArrayRef = if i == self.params.time {
                let DataType::Timestamp(_, tz) = column.data_type() else {
                    return Err(DataFusionError::Internal("time is not a timestamp".into()));
                };
                let nanos =
                    TimestampNanosecondArray::from(rows.time.clone()).with_timezone_opt(tz.clone());
                cast(&nanos, column.data_type())?
            } else if self.params.series.contains(&i) {
                take(column.as_ref(), &keys, None)?
            } else {
                let values = if input.num_rows() == 0 {
                    arrow::array::new_null_array(column.data_type(), rows.source.len())
                } else {
                    take(column.as_ref(), &source, None)?
                };
                let fill = self
                    .params
                    .fills
                    .iter()
                    .find(|(c, _)| *c == i)
                    .map(|(_, f)| f);
                match fill {
                    None => values,
                    Some(Fill::Default(v)) if v.is_null() => values,
                    Some(Fill::Default(v)) => zip(&gaps, &v.to_scalar()?, &values)?,
                    Some(Fill::Locf) => locf(&values, &rows.groups)?,
                    Some(Fill::Interpolate) => interpolate(&values, &rows)?,
                }
            };
            columns.push(out);
        }
        Ok(RecordBatch::try_new(input.schema(), columns)?)
    }
}

fn advance(g: i64, p: &Params) -> Option<i64> {
    g.checked_add(p.stride).filter(|&n| n <= p.last)
}

impl Iterator for Filler {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut rows = Rows::default();
        while rows.source.len() < self.batch_size {
            let Some(group) = self.groups.pop() else {
                break;
            };
            self.fill_group(group, &mut rows);
        }
        if rows.source.is_empty() {
            return None;
        }
        Some(self.build(rows))
    }
}

/// Output rows of some whole groups.
#[derive(Default)]
struct Rows {
    /// Input row of each output row; None for a gap.
    source: Vec<Option<u32>>,
    /// An input row of the output row's group (its group columns).
    key: Vec<u32>,
    time: Vec<Option<i64>>,
    /// Output row ranges of the groups.
    groups: Vec<std::ops::Range<usize>>,
}

impl Rows {
    fn push(&mut self, source: Option<usize>, key: usize, time: Option<i64>) {
        // Input rows fit in u32 (arrow's take indices): one batch of an
        // aggregate's output per partition.
        self.source.push(source.map(|s| s as u32));
        self.key.push(key as u32);
        self.time.push(time);
    }
}

/// The group's last non-NULL value for each NULL.
fn locf(values: &ArrayRef, groups: &[std::ops::Range<usize>]) -> Result<ArrayRef> {
    let mut index: Vec<Option<u32>> = Vec::with_capacity(values.len());
    for group in groups {
        let mut last = None;
        for r in group.clone() {
            if values.is_valid(r) {
                last = Some(r as u32);
            }
            index.push(last);
        }
    }
    Ok(take(values.as_ref(), &UInt32Array::from(index), None)?)
}

/// Gaps between two input rows with values: linear in time.
fn interpolate(values: &ArrayRef, rows: &Rows) -> Result<ArrayRef> {
    let as_f64 = cast(values, &DataType::Float64)?;
    let v = as_f64.as_primitive::<arrow::datatypes::Float64Type>();
    let mut out: Vec<Option<f64>> = (0..v.len())
        .map(|r| v.is_valid(r).then(|| v.value(r)))
        .collect();
    for group in &rows.groups {
        // The previous input row (time, value) of each gap, then the next.
        let mut before: Vec<Option<(i64, Option<f64>)>> = vec![None; group.len()];
        let mut prev = None;
        for (k, r) in group.clone().enumerate() {
            if rows.source[r].is_some() {
                prev = rows.time[r].map(|t| (t, out[r]));
            } else {
                before[k] = prev;
            }
        }
        let mut next: Option<(i64, Option<f64>)> = None;
        for (k, r) in group.clone().enumerate().rev() {
            if rows.source[r].is_some() {
                next = rows.time[r].map(|t| (t, out[r]));
                continue;
            }
            if let (Some((t0, Some(v0))), Some((t1, Some(v1))), Some(t)) =
                (before[k], next, rows.time[r])
                && t1 > t0
            {
                let share = (i128::from(t) - i128::from(t0)) as f64
                    / (i128::from(t1) - i128::from(t0)) as f64;
                out[r] = Some(v0 + (v1 - v0) * share);
            }
        }
    }
    let filled: ArrayRef = Arc::new(Float64Array::from(out));
    Ok(cast(&filled, values.data_type())?)
}
