//! Gap filling (issue 22): `date_bin_gapfill` with `locf` and `interpolate`
//! in the shape of InfluxDB 3 (IOx's `iox_query` gapfill: the analyzer rule
//! `handle_gapfill.rs`, the `GapFill` node and `GapFillExec`; this is a
//! smaller implementation of the same design, written for Weir), and
//! `time_bucket_gapfill` for TimescaleDB users.
//!
//! ```sql
//! SELECT date_bin_gapfill(INTERVAL '1 minute', ts) AS minute, device,
//!        locf(avg(v)), interpolate(min(v)), count(*)
//! FROM t WHERE ts >= '2026-05-01T00:00:00Z' AND ts < '2026-05-01T01:00:00Z'
//! GROUP BY minute, device
//! ```
//!
//! answers one row per bucket from the bucket of the lower bound to the
//! bucket of the upper bound, for each group (each `device` with rows in the
//! range; without other group columns, the one group, rows or not). Buckets
//! without rows have NULL aggregates (`count` 0), unless wrapped in
//!
//! - `locf(agg)`: the group's last non-NULL value before the bucket (NULL
//!   before the first; a NULL aggregate of a bucket with rows is replaced
//!   too, as in InfluxDB 3);
//! - `interpolate(agg)` (numeric aggregates): linear between the group's
//!   buckets with rows around the gap when both have a value (integers are
//!   truncated toward zero); NULL at the edges.
//!
//! `date_bin_gapfill(interval, ts [, origin])` bins like `date_bin`;
//! `time_bucket_gapfill(interval, ts [, origin | offset])` like `time_bucket`.
//! The interval must be fixed (no months or years). Both time bounds must be
//! in the WHERE clause (`ts >= a AND ts < b`, `>`/`<=`, `BETWEEN`; constant
//! expressions such as `now() - INTERVAL '1 day'`).
//!
//! Planning: `logical.rs` — an analyzer rule turns the aggregate grouping by
//! `date_bin_gapfill(…)` into the same aggregate grouping by `date_bin(…)`
//! (so the materialized-view rewrite applies to it) under a `GapFill` node,
//! and moves the `locf` / `interpolate` of the projection above into the
//! node's fill strategies. `exec.rs` — `GapFillExec` reads the aggregate's
//! rows sorted by group and time and inserts the missing buckets.

mod exec;
mod logical;

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_planner::ExtensionPlanner;
use datafusion::prelude::SessionContext;

pub(crate) use exec::GapFillPlanner;

/// Registers the functions and the analyzer rule with `ctx`. Plans with
/// gap filling also need [`GapFillPlanner`] in the session's query planner.
pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(GapFillBin {
        name: "date_bin_gapfill",
        inner: datafusion::functions::datetime::date_bin(),
    }));
    ctx.register_udf(ScalarUDF::from(GapFillBin {
        name: "time_bucket_gapfill",
        inner: Arc::new(crate::time_series::time_bucket_udf()),
    }));
    for fill in [Fill::Locf, Fill::Interpolate] {
        ctx.register_udf(ScalarUDF::from(FillFunction::new(fill)));
    }
    if !ctx
        .state()
        .analyzer()
        .rules
        .iter()
        .any(|r| r.name() == logical::RULE_NAME)
    {
        ctx.add_analyzer_rule(Arc::new(logical::HandleGapFill));
    }
}

/// The extension planners of this module (for the session's query planner).
pub(crate) fn extension_planners() -> Vec<Arc<dyn ExtensionPlanner + Send + Sync>> {
    vec![Arc::new(GapFillPlanner)]
}

/// How the missing buckets of an aggregate column are filled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub(crate) enum Fill {
    /// NULL, or the aggregate's value over no rows (`count`: 0).
    Default(datafusion::common::ScalarValue),
    /// The group's last non-NULL value.
    Locf,
    /// Linear between the group's values around the gap.
    Interpolate,
}

impl Fill {
    fn function_name(&self) -> &'static str {
        match self {
            Fill::Default(_) => "",
            Fill::Locf => "locf",
            Fill::Interpolate => "interpolate",
        }
    }
}

/// `date_bin_gapfill` / `time_bucket_gapfill`: typed like the function they
/// wrap; never run (the analyzer rule replaces them).
#[derive(Debug, PartialEq, Eq, Hash)]
struct GapFillBin {
    name: &'static str,
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for GapFillBin {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types).map_err(|e| {
            datafusion::common::DataFusionError::Plan(format!(
                "{}: {}",
                self.name,
                e.strip_backtrace()
            ))
        })
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.get(1) {
            Some(DataType::Timestamp(..)) => self.inner.return_type(arg_types),
            _ => plan_err!(
                "{}(interval, ts): the second argument must be a timestamp",
                self.name
            ),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("{}", misplaced_bin(self.name))
    }
}

fn misplaced_bin(name: &str) -> String {
    format!(
        "{name} may only be used as a GROUP BY expression of an aggregate query \
         with a time range in WHERE"
    )
}

fn misplaced_fill(name: &str) -> String {
    format!(
        "{name} may only be used in the SELECT list of a gap-filling query \
         (GROUP BY date_bin_gapfill(…)), around an aggregate: {name}(avg(v))"
    )
}

/// `locf(x)` / `interpolate(x)`: `x`'s type; never run (the analyzer rule
/// moves them into the `GapFill` node).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FillFunction {
    fill: Fill,
    signature: Signature,
}

impl FillFunction {
    fn new(fill: Fill) -> Self {
        FillFunction {
            fill,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for FillFunction {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn name(&self) -> &str {
        self.fill.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match (arg_types, &self.fill) {
            ([t], Fill::Interpolate) if !(t.is_integer() || t.is_floating()) => {
                plan_err!("interpolate needs a numeric (integer or float) argument, got {t}")
            }
            ([t], _) => Ok(t.clone()),
            _ => plan_err!("{} takes 1 argument", self.fill.function_name()),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!("{}", misplaced_fill(self.fill.function_name()))
    }
}
