//! Partial aggregation by one string key for input clustered on that key.
//!
//! Telemetry tables hold rows of one series together: Weir writes Silver
//! sorted by device, `weir import` keeps the input's order, and the usual
//! Parquet producers sort by series and time. `GROUP BY tag` over such a
//! table still makes DataFusion 53's partial aggregate hash every row's
//! string to find its group (`GroupValuesBytes`): for "last point per tag"
//! over 172.8 M rows that was 1.86 s of the aggregate's 2.72 s CPU, the
//! reason it trailed DuckDB (issue 21). DataFusion chooses its group-values
//! structure inside `AggregateExec` with no hook (54's dictionary group
//! values would not help either: Weir reads strings, not dictionaries), so
//! this operator takes the *partial* stage of such aggregates over: a row
//! whose key equals the previous row's takes the previous row's group
//! without hashing; a new key is looked up in a hash map. Unclustered input
//! costs one hash lookup per row, as before.
//!
//! Same output as the `AggregateExec(Partial)` it replaces (its schema: the
//! key, then every accumulator's state), with DataFusion's own groups
//! accumulators; the final stage stays DataFusion's. A partial aggregate
//! may emit whenever it likes — the final merges — so when its memory
//! reservation cannot grow it emits what it has and starts over instead of
//! spilling.
//!
//! The rule (`ClusteredKeysRule`) replaces `AggregateExec`s in
//! `Partial` mode grouped by one `Utf8`/`LargeUtf8` expression without
//! grouping sets, limits, input-order requirements or DISTINCT aggregates.
//! `SET weir.clustered_keys = false` keeps DataFusion's operator
//! (results are the same: `tests/slt/clustered_keys.slt`).

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, GenericStringArray, GenericStringBuilder,
    OffsetSizeTrait, RecordBatch,
};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, aggregate_expressions};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties,
};
use futures::StreamExt;

use crate::clustered_filter::PerRun;

/// Replaces eligible partial aggregates with [`ClusteredAggregateExec`].
#[derive(Debug, Default)]
pub(crate) struct ClusteredKeysRule;

impl PhysicalOptimizerRule for ClusteredKeysRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let on = config
            .extensions
            .get::<crate::WeirSessionOptions>()
            .is_none_or(|o| o.clustered_keys);
        if !on {
            return Ok(plan);
        }
        plan.transform_up(|node| {
            if let Some(filter) = node.as_any().downcast_ref::<FilterExec>() {
                return per_run_filter(filter);
            }
            let Some(agg) = node.as_any().downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match ClusteredAggregateExec::try_new(agg)? {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as _)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "weir_clustered_keys"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `filter` with its IN lists and LIKEs over string columns evaluated once
/// per run of equal keys (`clustered_filter`).
fn per_run_filter(filter: &FilterExec) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let schema = filter.input().schema();
    let predicate = Arc::clone(filter.predicate()).transform_up(|e| {
        Ok(match PerRun::wrap(&e, &schema) {
            Some(wrapped) => Transformed::yes(Arc::new(wrapped) as Arc<dyn PhysicalExpr>),
            None => Transformed::no(e),
        })
    })?;
    if !predicate.transformed {
        return Ok(Transformed::no(Arc::new(filter.clone())));
    }
    let exec = FilterExecBuilder::from(filter)
        .with_predicate(predicate.data)
        .build()?;
    Ok(Transformed::yes(Arc::new(exec)))
}

/// `AggregateExec(Partial)` by one string key, for clustered input.
#[derive(Debug)]
pub(crate) struct ClusteredAggregateExec {
    /// The operator replaced: its expressions, schema and display.
    agg: AggregateExec,
    key: Arc<dyn PhysicalExpr>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl ClusteredAggregateExec {
    /// The replacement for `agg`, or None when it is not eligible.
    fn try_new(agg: &AggregateExec) -> Result<Option<Self>> {
        let group = agg.group_expr();
        let eligible = *agg.mode() == AggregateMode::Partial
            && group.expr().len() == 1
            && !group.has_grouping_set()
            && agg.limit_options().is_none()
            && *agg.input_order_mode() == InputOrderMode::Linear
            && agg.required_input_ordering().iter().all(Option::is_none)
            && agg.properties().output_ordering().is_none()
            && agg
                .aggr_expr()
                .iter()
                .all(|a| !a.is_distinct() && !a.order_sensitivity().hard_requires());
        if !eligible {
            return Ok(None);
        }
        let key = Arc::clone(&group.expr()[0].0);
        let input_schema = agg.input().schema();
        if !matches!(
            key.data_type(&input_schema)?,
            DataType::Utf8 | DataType::LargeUtf8
        ) {
            return Ok(None);
        }
        let arguments = aggregate_expressions(agg.aggr_expr(), agg.mode(), 1)?;
        let properties = Arc::clone(agg.properties());
        Ok(Some(Self {
            agg: agg.clone(),
            key,
            arguments,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn accumulators(&self) -> Result<Vec<Box<dyn GroupsAccumulator>>> {
        self.agg
            .aggr_expr()
            .iter()
            .map(|expr| {
                if expr.groups_accumulator_supported() {
                    expr.create_groups_accumulator()
                } else {
                    // As DataFusion's `AggregateExec` does for aggregates
                    // without a groups accumulator.
                    let expr = Arc::clone(expr);
                    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
                        expr.create_accumulator()
                    })) as Box<dyn GroupsAccumulator>)
                }
            })
            .collect()
    }
}

impl DisplayAs for ClusteredAggregateExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Clustered")?;
        self.agg.fmt_as(t, f)
    }
}

impl ExecutionPlan for ClusteredAggregateExec {
    fn name(&self) -> &str {
        "ClusteredAggregateExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.agg.input()]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| datafusion::error::DataFusionError::Internal("one child".into()))?;
        let agg = Arc::new(self.agg.clone()).with_new_children(vec![input])?;
        let Some(agg) = agg.as_any().downcast_ref::<AggregateExec>() else {
            return internal_err!("AggregateExec expected");
        };
        match Self::try_new(agg)? {
            Some(exec) => Ok(Arc::new(exec)),
            None => internal_err!("aggregate no longer eligible for clustered grouping"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.agg.input().execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let reservation = MemoryConsumer::new(format!("ClusteredAggregateExec[{partition}]"))
            .register(context.memory_pool());
        let state = State {
            key: Arc::clone(&self.key),
            arguments: self.arguments.clone(),
            filters: self.agg.filter_expr().to_vec(),
            accumulators: self.accumulators()?,
            groups: Groups::default(),
            schema: Arc::clone(&schema),
            batch_size: context.session_config().batch_size(),
            reservation,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            indices: Vec::new(),
        };
        let stream =
            futures::stream::unfold((input, Some(state)), |(mut input, state)| async move {
                let mut state = state?;
                loop {
                    match input.next().await {
                        Some(Ok(batch)) => match state.update(&batch) {
                            Ok(Some(out)) => return Some((Ok(out), (input, Some(state)))),
                            Ok(None) => {}
                            Err(e) => return Some((Err(e), (input, None))),
                        },
                        Some(Err(e)) => return Some((Err(e), (input, None))),
                        None => {
                            let out = state.emit();
                            return Some((out, (input, None)));
                        }
                    }
                }
            })
            .flat_map(|r| futures::stream::iter(split(r)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// One result batch as batches of at most the session's batch size.
fn split(result: Result<(RecordBatch, usize)>) -> Vec<Result<RecordBatch>> {
    match result {
        Err(e) => vec![Err(e)],
        Ok((batch, size)) => {
            let size = size.max(1);
            (0..batch.num_rows())
                .step_by(size)
                .map(|at| Ok(batch.slice(at, size.min(batch.num_rows() - at))))
                .collect()
        }
    }
}

/// The groups seen so far: key → group index, keys in index order.
#[derive(Default)]
struct Groups {
    index: HashMap<Box<str>, u32, rustc_hash::FxBuildHasher>,
    null: Option<u32>,
    keys: Vec<Option<Box<str>>>,
    key_bytes: usize,
}

impl Groups {
    fn len(&self) -> usize {
        self.keys.len()
    }

    fn find_or_add(&mut self, key: Option<&str>) -> u32 {
        let next = self.keys.len() as u32;
        match key {
            None => *self.null.get_or_insert_with(|| {
                self.keys.push(None);
                next
            }),
            Some(k) => {
                if let Some(g) = self.index.get(k) {
                    return *g;
                }
                self.index.insert(k.into(), next);
                self.keys.push(Some(k.into()));
                self.key_bytes += 2 * k.len();
                next
            }
        }
    }

    /// Group indices of `keys`: a row equal to the previous one shares
    /// its group, without hashing.
    fn intern<O: OffsetSizeTrait>(&mut self, keys: &GenericStringArray<O>, out: &mut Vec<usize>) {
        out.clear();
        out.reserve(keys.len());
        let offsets = keys.value_offsets();
        let bytes = keys.value_data();
        let key = |i: usize| &bytes[offsets[i].as_usize()..offsets[i + 1].as_usize()];
        if keys.null_count() == 0 {
            let mut previous: Option<(&[u8], u32)> = None;
            for i in 0..keys.len() {
                let k = key(i);
                let group = match previous {
                    Some((p, g)) if same_key(p, k) => g,
                    _ => {
                        let g = self.find_or_add(Some(keys.value(i)));
                        previous = Some((k, g));
                        g
                    }
                };
                out.push(group as usize);
            }
            return;
        }
        // The previous row: (valid, its bytes, its group).
        let mut previous: Option<(bool, &[u8], u32)> = None;
        for i in 0..keys.len() {
            let valid = keys.is_valid(i);
            let k = key(i);
            let group = match previous {
                Some((v, p, g)) if v == valid && same_key(p, k) => g,
                _ => {
                    let g = self.find_or_add(valid.then(|| keys.value(i)));
                    previous = Some((valid, k, g));
                    g
                }
            };
            out.push(group as usize);
        }
    }

    fn size(&self) -> usize {
        self.index.capacity() * (std::mem::size_of::<(Box<str>, u32)>() + 1)
            + self.keys.capacity() * std::mem::size_of::<Option<Box<str>>>()
            + self.key_bytes
    }

    fn array<O: OffsetSizeTrait>(&self) -> ArrayRef {
        let mut b = GenericStringBuilder::<O>::with_capacity(self.keys.len(), self.key_bytes / 2);
        for k in &self.keys {
            b.append_option(k.as_deref());
        }
        Arc::new(b.finish())
    }
}

/// `a == b`, inlined: it runs once per row and keys are short (a call to
/// `memcmp` per row was 11 % of "last point per tag"). Keys of 8 to 16
/// bytes are two (overlapping) 8-byte compares.
#[inline]
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        let word = |s: &[u8], at: usize| u64::from_ne_bytes(s[at..at + 8].try_into().expect("8"));
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else {
        a == b
    }
}

/// The aggregation state of one partition.
struct State {
    key: Arc<dyn PhysicalExpr>,
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    groups: Groups,
    schema: SchemaRef,
    batch_size: usize,
    reservation: MemoryReservation,
    baseline: BaselineMetrics,
    /// The group index of each row of the batch being folded in (reused).
    indices: Vec<usize>,
}

impl State {
    /// Folds `batch` in; returns the groups so far (to start over) when
    /// the memory they take cannot be reserved.
    fn update(&mut self, batch: &RecordBatch) -> Result<Option<(RecordBatch, usize)>> {
        let time = self.baseline.elapsed_compute().clone();
        let _timer = time.timer();
        let keys = self.key.evaluate(batch)?.into_array(batch.num_rows())?;
        let mut indices = std::mem::take(&mut self.indices);
        match keys.data_type() {
            DataType::Utf8 => self.groups.intern(keys.as_string::<i32>(), &mut indices),
            DataType::LargeUtf8 => self.groups.intern(keys.as_string::<i64>(), &mut indices),
            other => return internal_err!("clustered aggregate over {other}"),
        }
        let total = self.groups.len();
        for ((acc, args), filter) in self
            .accumulators
            .iter_mut()
            .zip(&self.arguments)
            .zip(&self.filters)
        {
            let values = args
                .iter()
                .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
                .collect::<Result<Vec<_>>>()?;
            let filter = match filter {
                Some(f) => Some(f.evaluate(batch)?.into_array(batch.num_rows())?),
                None => None,
            };
            let filter: Option<&BooleanArray> = filter.as_ref().map(|f| f.as_boolean());
            acc.update_batch(&values, &indices, filter, total)?;
        }
        self.indices = indices;
        let size = self.groups.size() + self.accumulators.iter().map(|a| a.size()).sum::<usize>();
        if self.reservation.try_resize(size).is_err() {
            return self.emit().map(Some);
        }
        Ok(None)
    }

    /// The groups so far with their accumulators' states; starts over.
    fn emit(&mut self) -> Result<(RecordBatch, usize)> {
        let time = self.baseline.elapsed_compute().clone();
        let _timer = time.timer();
        let mut columns = vec![match self.schema.field(0).data_type() {
            DataType::LargeUtf8 => self.groups.array::<i64>(),
            _ => self.groups.array::<i32>(),
        }];
        for acc in &mut self.accumulators {
            columns.extend(acc.state(EmitTo::All)?);
        }
        self.groups = Groups::default();
        self.reservation.free();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), columns)?;
        self.baseline.record_output(batch.num_rows());
        Ok((batch, self.batch_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};

    #[test]
    fn same_key_is_equality() {
        let keys: Vec<Vec<u8>> = (0..24)
            .flat_map(|n| {
                let base: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
                let mut variants = vec![base.clone()];
                for at in 0..n {
                    let mut v = base.clone();
                    v[at] = b'#';
                    variants.push(v);
                }
                variants
            })
            .collect();
        for a in &keys {
            for b in &keys {
                assert_eq!(same_key(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    /// A memory pool limiting only this module's operator (DataFusion's
    /// final stage needs more room to spill than the test wants to give).
    #[derive(Debug)]
    struct ClusteredLimit(usize);

    impl datafusion::execution::memory_pool::MemoryPool for ClusteredLimit {
        fn grow(&self, _: &MemoryReservation, _: usize) {}
        fn shrink(&self, _: &MemoryReservation, _: usize) {}
        fn try_grow(&self, r: &MemoryReservation, additional: usize) -> Result<()> {
            if r.consumer().name().starts_with("ClusteredAggregateExec")
                && r.size() + additional > self.0
            {
                return Err(datafusion::error::DataFusionError::ResourcesExhausted(
                    "test limit".into(),
                ));
            }
            Ok(())
        }
        fn reserved(&self) -> usize {
            0
        }
    }

    /// 20,000 keys: runs of 3 rows, then every key again interleaved.
    fn table() -> Arc<MemTable> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]));
        let mut keys = Vec::new();
        for i in 0..20_000 {
            let key = format!("key-{i:05}");
            keys.extend(std::iter::repeat_n(Some(key), 3));
        }
        keys.extend((0..20_000).map(|i| Some(format!("key-{:05}", (i * 7) % 20_000))));
        keys.push(None);
        let values: Vec<f64> = (0..keys.len()).map(|i| (i % 101) as f64).collect();
        let batches = keys
            .chunks(4096)
            .zip(values.chunks(4096))
            .map(|(k, v)| {
                RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![
                        Arc::new(StringArray::from(k.to_vec())),
                        Arc::new(Float64Array::from(v.to_vec())),
                    ],
                )
                .unwrap()
            })
            .collect::<Vec<_>>();
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())
    }

    /// (plan, result, rows the partial stage emitted).
    async fn run(rule: bool, memory: usize) -> (String, Vec<RecordBatch>, usize) {
        let config = SessionConfig::new().with_target_partitions(2);
        let pool = Arc::new(ClusteredLimit(memory));
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::new(
                RuntimeEnvBuilder::new()
                    .with_memory_pool(pool)
                    .build()
                    .unwrap(),
            ))
            .with_default_features();
        if rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(ClusteredKeysRule));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.register_table("t", table()).unwrap();
        let df = ctx
            .sql("SELECT k, count(*), sum(v), max(v) FROM t GROUP BY k ORDER BY k")
            .await
            .unwrap();
        let plan = df.create_physical_plan().await.unwrap();
        let batches = datafusion::physical_plan::collect(Arc::clone(&plan), ctx.task_ctx())
            .await
            .unwrap();
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let mut partial_rows = 0;
        plan.apply(|node| {
            if node.name() == "ClusteredAggregateExec" {
                partial_rows = node.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        (shown, batches, partial_rows)
    }

    /// Under a memory limit the partial stage emits and starts over; the
    /// final stage merges: the same result as DataFusion's operator.
    #[tokio::test]
    async fn same_result_as_datafusion_also_when_memory_runs_out() {
        let (plain_plan, expected, _) = run(false, 64 << 20).await;
        assert!(!plain_plan.contains("Clustered"), "{plain_plan}");
        let expected = arrow::util::pretty::pretty_format_batches(&expected).unwrap();
        let mut emitted = Vec::new();
        for memory in [64 << 20, 256 << 10] {
            let (plan, got, rows) = run(true, memory).await;
            assert!(
                plan.contains("ClusteredAggregateExec: mode=Partial"),
                "{plan}"
            );
            let got = arrow::util::pretty::pretty_format_batches(&got).unwrap();
            assert_eq!(got.to_string(), expected.to_string(), "memory {memory}");
            emitted.push(rows);
        }
        // With room, each partition emits each of its groups once (two
        // partitions, 20,001 groups); without, groups are emitted again.
        assert!(emitted[0] <= 40_002, "{emitted:?}");
        assert!(emitted[1] > emitted[0], "{emitted:?}");
    }
}
