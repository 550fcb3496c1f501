//! A rule's SQL expressions planned by DataFusion against a table's Arrow
//! schema into physical expressions, evaluated batch by batch (the
//! evaluator sees rows as writers seal them, not through a query).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Schema, TimeUnit};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, ExprSchemable, cast};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::rule::{AlertRule, Comparison, Condition};
use crate::error::{QueryError, Result};

/// The column a rule reads event time from: `ts` if it is a timestamp, else
/// the first timestamp column.
pub fn time_column(schema: &Schema) -> Option<String> {
    schema
        .fields()
        .iter()
        .find(|f| f.name() == "ts" && matches!(f.data_type(), DataType::Timestamp(..)))
        .or_else(|| {
            schema
                .fields()
                .iter()
                .find(|f| matches!(f.data_type(), DataType::Timestamp(..)))
        })
        .map(|f| f.name().clone())
}

/// A condition ready to evaluate.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// A boolean per row, and the reported value.
    Row {
        test: Arc<dyn PhysicalExpr>,
        value: Option<Arc<dyn PhysicalExpr>>,
    },
    /// `rate(value)`/`zscore(value, …)` compared with `limit`.
    Measure {
        value: Arc<dyn PhysicalExpr>,
        op: Comparison,
        limit: f64,
    },
    Absent,
}

/// A rule planned against one schema.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: AlertRule,
    /// Rules with equal keys (filter, BY columns) share their slice of a
    /// batch ([`CompiledRule::prepare`]).
    slice_key: String,
    filter: Option<Arc<dyn PhysicalExpr>>,
    keys: Vec<(String, Arc<dyn PhysicalExpr>)>,
    time: Option<Arc<dyn PhysicalExpr>>,
    pub when: Compiled,
    pub clear: Option<Compiled>,
}

/// What rules with the same filter and BY columns share over one batch:
/// the rows the filter keeps, their series and event time. Preparing it is
/// most of a rule's cost (a text per series); ten rules on one metric
/// prepare it once.
#[derive(Debug, Clone)]
pub struct Slice {
    batch: RecordBatch,
    series: Arc<[Arc<str>]>,
    ts: Option<Int64Array>,
}

/// One batch through a rule: the rows it keeps, in batch order.
#[derive(Debug)]
pub struct Evaluated {
    /// Series key text per row (`device_id=d1,metric=m`).
    pub series: Arc<[Arc<str>]>,
    /// Event time (µs since the epoch) per row; None without a time column.
    pub ts: Option<Int64Array>,
    pub when: Values,
    pub clear: Option<Values>,
}

/// A condition's result per row.
#[derive(Debug)]
pub enum Values {
    Row {
        test: BooleanArray,
        value: Option<Float64Array>,
    },
    Measure(Float64Array),
    Absent,
}

fn invalid(rule: &AlertRule, what: &str, e: impl std::fmt::Display) -> QueryError {
    QueryError::Invalid(format!("alert {}: {what}: {e}", rule.name))
}

/// Plans a rule's expressions over the schema of the batches it sees.
struct RulePlanner<'a> {
    ctx: &'a SessionContext,
    df: &'a DFSchema,
    rule: &'a AlertRule,
}

impl RulePlanner<'_> {
    /// The expression `text` (the rule's `what` clause) as a physical
    /// expression: cast to DOUBLE when `as_double` (an error when it is not
    /// a number), else a test (an error when it is not true/false, BY
    /// aside).
    fn plan(&self, text: &str, what: &str, as_double: bool) -> Result<Arc<dyn PhysicalExpr>> {
        let (ctx, df, rule) = (self.ctx, self.df, self.rule);
        let mut expr = ctx
            .parse_sql_expr(text, df)
            .map_err(|e| invalid(rule, what, e))?;
        if as_double {
            let t = expr.get_type(df).map_err(|e| invalid(rule, what, e))?;
            if !t.is_numeric() {
                return Err(invalid(
                    rule,
                    what,
                    format!("`{text}` is {t}, not a number"),
                ));
            }
            expr = cast(expr, DataType::Float64);
        } else if let Ok(t) = expr.get_type(df)
            && what != "BY"
            && t != DataType::Boolean
        {
            return Err(invalid(
                rule,
                what,
                format!("`{text}` is {t}, not true/false"),
            ));
        }
        ctx.create_physical_expr(expr, df)
            .map_err(|e| invalid(rule, what, e))
    }

    /// A WHEN or CLEAR WHEN condition (`what`).
    fn condition(&self, c: &Condition, what: &str) -> Result<Compiled> {
        Ok(match c {
            Condition::Row { expr, value } => Compiled::Row {
                test: self.plan(expr, what, false)?,
                value: match value {
                    Some(v) => self.plan(v, what, true).ok(),
                    None => None,
                },
            },
            Condition::Rate { value, op, limit }
            | Condition::ZScore {
                value, op, limit, ..
            } => Compiled::Measure {
                value: self.plan(value, what, true)?,
                op: *op,
                limit: *limit,
            },
            Condition::Absent { .. } => Compiled::Absent,
        })
    }

    /// The event time (as UTC microseconds) when `schema` has a time column.
    fn time(&self, schema: &Schema) -> Result<Option<Arc<dyn PhysicalExpr>>> {
        Ok(match time_column(schema) {
            Some(name) => {
                let e = cast(
                    Expr::Column(datafusion::common::Column::from_name(name)),
                    DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                );
                Some(
                    self.ctx
                        .create_physical_expr(e, self.df)
                        .map_err(|e| invalid(self.rule, "time column", e))?,
                )
            }
            None => None,
        })
    }

    /// The BY columns as text, by name.
    fn keys(&self) -> Result<Vec<(String, Arc<dyn PhysicalExpr>)>> {
        let (ctx, df, rule) = (self.ctx, self.df, self.rule);
        rule.by
            .iter()
            .map(|k| {
                let e = ctx
                    .parse_sql_expr(&format!("\"{}\"", k.replace('"', "\"\"")), df)
                    .map_err(|e| invalid(rule, "BY", e))?;
                let e = cast(e, DataType::Utf8);
                Ok((
                    k.clone(),
                    ctx.create_physical_expr(e, df)
                        .map_err(|e| invalid(rule, "BY", e))?,
                ))
            })
            .collect::<Result<Vec<_>>>()
    }
}

impl CompiledRule {
    pub fn new(rule: &AlertRule, schema: &Schema) -> Result<Self> {
        let ctx = SessionContext::new();
        let df = DFSchema::try_from(schema.clone()).map_err(|e| invalid(rule, "schema", e))?;
        let planner = RulePlanner {
            ctx: &ctx,
            df: &df,
            rule,
        };
        let time = planner.time(schema)?;
        let keys = planner.keys()?;
        Ok(CompiledRule {
            rule: rule.clone(),
            slice_key: format!("{:?}\u{1f}{:?}", rule.filter, rule.by),
            filter: match &rule.filter {
                Some(f) => Some(planner.plan(f, "WHERE", false)?),
                None => None,
            },
            keys,
            time,
            when: planner.condition(&rule.when, "WHEN")?,
            clear: match &rule.clear {
                Some(c) => Some(planner.condition(c, "CLEAR WHEN")?),
                None => None,
            },
        })
    }

    pub fn has_time(&self) -> bool {
        self.time.is_some()
    }

    /// The rule over one batch: rows the filter keeps, with their series,
    /// time and condition values.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<Evaluated> {
        self.conditions(&self.prepare(batch)?)
    }

    /// Equal for rules whose [`CompiledRule::prepare`] gives equal slices
    /// of a batch (same filter, same BY columns; same schema is the
    /// caller's part).
    pub fn slice_key(&self) -> &str {
        &self.slice_key
    }

    /// The rows the filter keeps, with their series and time.
    pub fn prepare(&self, batch: &RecordBatch) -> Result<Slice> {
        let run = |e: &Arc<dyn PhysicalExpr>, b: &RecordBatch| -> Result<ArrayRef> {
            e.evaluate(b)
                .and_then(|v| v.into_array(b.num_rows()))
                .map_err(|e| invalid(&self.rule, "evaluating", e))
        };
        let batch = match &self.filter {
            Some(f) => {
                let mask = run(f, batch)?;
                let mask = mask
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .ok_or_else(|| invalid(&self.rule, "WHERE", "not a boolean"))?;
                // Rows routed by the filter's `column = 'text'` all pass.
                if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
                    batch.clone()
                } else {
                    arrow::compute::filter_record_batch(batch, mask)
                        .map_err(|e| invalid(&self.rule, "WHERE", e))?
                }
            }
            None => batch.clone(),
        };
        let batch = &batch;
        let n = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|(name, e)| Ok((name, run(e, batch)?)))
            .collect::<Result<Vec<_>>>()?;
        let keys: Vec<(&String, Option<&arrow::array::StringArray>)> = keys
            .iter()
            .map(|(name, a)| {
                (
                    *name,
                    a.as_any().downcast_ref::<arrow::array::StringArray>(),
                )
            })
            .collect();
        // One text per distinct key in the batch, shared by its rows.
        if let [(name, Some(a))] = keys.as_slice() {
            let mut known: std::collections::HashMap<Option<&str>, Arc<str>> =
                std::collections::HashMap::new();
            let series = a
                .iter()
                .map(|v| {
                    known
                        .entry(v)
                        .or_insert_with(|| format!("{name}={}", v.unwrap_or_default()).into())
                        .clone()
                })
                .collect();
            return self.slice(batch, series);
        }
        let mut known: std::collections::HashMap<Vec<Option<&str>>, Arc<str>> =
            std::collections::HashMap::new();
        let series = (0..n)
            .map(|i| {
                let values: Vec<Option<&str>> = keys
                    .iter()
                    .map(|(_, a)| a.and_then(|a| (!a.is_null(i)).then(|| a.value(i))))
                    .collect();
                if let Some(text) = known.get(&values) {
                    return text.clone();
                }
                let text: Arc<str> = keys
                    .iter()
                    .zip(&values)
                    .map(|((name, _), v)| format!("{name}={}", v.unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(",")
                    .into();
                known.insert(values, text.clone());
                text
            })
            .collect();
        self.slice(batch, series)
    }

    fn slice(&self, batch: &RecordBatch, series: Vec<Arc<str>>) -> Result<Slice> {
        let ts = match &self.time {
            Some(t) => {
                let a = t
                    .evaluate(batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| invalid(&self.rule, "evaluating", e))?;
                let a = arrow::compute::cast(&a, &DataType::Int64)
                    .map_err(|e| invalid(&self.rule, "time column", e))?;
                a.as_any().downcast_ref::<Int64Array>().cloned()
            }
            None => None,
        };
        Ok(Slice {
            batch: batch.clone(),
            series: series.into(),
            ts,
        })
    }

    /// The rule's conditions over a slice [`CompiledRule::prepare`]d by it
    /// or by a rule with the same [`CompiledRule::slice_key`].
    pub fn conditions(&self, slice: &Slice) -> Result<Evaluated> {
        let run = |e: &Arc<dyn PhysicalExpr>, b: &RecordBatch| -> Result<ArrayRef> {
            e.evaluate(b)
                .and_then(|v| v.into_array(b.num_rows()))
                .map_err(|e| invalid(&self.rule, "evaluating", e))
        };
        let batch = &slice.batch;
        let (series, ts) = (slice.series.clone(), slice.ts.clone());
        let values = |c: &Compiled| -> Result<Values> {
            Ok(match c {
                Compiled::Row { test, value } => Values::Row {
                    test: run(test, batch)?
                        .as_any()
                        .downcast_ref::<BooleanArray>()
                        .cloned()
                        .ok_or_else(|| invalid(&self.rule, "WHEN", "not a boolean"))?,
                    value: match value {
                        Some(v) => run(v, batch)?
                            .as_any()
                            .downcast_ref::<Float64Array>()
                            .cloned(),
                        None => None,
                    },
                },
                Compiled::Measure { value, .. } => Values::Measure(
                    run(value, batch)?
                        .as_any()
                        .downcast_ref::<Float64Array>()
                        .cloned()
                        .ok_or_else(|| invalid(&self.rule, "WHEN", "not a number"))?,
                ),
                Compiled::Absent => Values::Absent,
            })
        };
        Ok(Evaluated {
            series,
            ts,
            when: values(&self.when)?,
            clear: self.clear.as_ref().map(values).transpose()?,
        })
    }
}
