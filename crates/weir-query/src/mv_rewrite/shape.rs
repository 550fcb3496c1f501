//! What a rollup view holds, and how a query's aggregate maps onto it.
//!
//! A view qualifies when its query is one `Aggregate` over one table scan,
//! without a filter, grouping by one time bucket (`date_bin(<divides a
//! day>, ts)` or `date_trunc('second'…'day', ts)`) and plain columns, with
//! aggregates Weir knows how to merge (count, min, max, sum, sum of squares,
//! first/last value ordered by the time column). A query aggregate maps onto
//! it when it groups by view columns and coarser time buckets, filters on
//! view columns and bucket-aligned time ranges, and asks for aggregates that
//! these partials answer exactly.

use std::collections::HashMap;

use datafusion::common::ScalarValue;
use datafusion::logical_expr::expr::{AggregateFunction, Sort};
use datafusion::logical_expr::{Aggregate, BinaryExpr, Expr, LogicalPlan, Operator};

pub(crate) const DAY_NANOS: i128 = 86_400_000_000_000;

/// A partial aggregate a view stores (columns of the base table).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Measure {
    /// `count(*)`
    Rows,
    /// `count(col)`: rows where `col` is not null.
    Count(String),
    Min(String),
    Max(String),
    Sum(String),
    /// `sum(col * col)`
    SumSq(String),
    /// `first_value(col ORDER BY <time>)`
    First(String),
    /// `last_value(col ORDER BY <time>)`
    Last(String),
}

/// The shape of a rollup view's query.
#[derive(Debug, Clone)]
pub(crate) struct Rollup {
    /// Base column the view buckets.
    pub time_column: String,
    /// View column holding the bucket start.
    pub bucket: String,
    /// The bucket expression over the base (to bucket delta rows the same way).
    pub bucket_expr: Expr,
    /// Bucket width in nanoseconds (divides a day).
    pub grain: i128,
    /// Base column → view column, for the plain group columns.
    pub dims: HashMap<String, String>,
    /// Partial → view column.
    pub measures: HashMap<Measure, String>,
}

pub(crate) fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

/// The column `expr` is (through aliases and casts).
pub(crate) fn column_name(expr: &Expr) -> Option<&str> {
    match unalias(expr) {
        Expr::Column(c) => Some(&c.name),
        Expr::Cast(c) => column_name(&c.expr),
        Expr::TryCast(c) => column_name(&c.expr),
        _ => None,
    }
}

/// Nanoseconds of an interval literal without months.
fn interval_nanos(value: &ScalarValue) -> Option<i128> {
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(i128::from(v.days) * DAY_NANOS + i128::from(v.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i128::from(v.days) * DAY_NANOS + i128::from(v.milliseconds) * 1_000_000)
        }
        _ => None,
    }
}

/// Nanoseconds since the epoch of a timestamp literal.
pub(crate) fn timestamp_nanos(value: &ScalarValue) -> Option<i128> {
    Some(match value {
        ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
        ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
        _ => return None,
    })
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match unalias(expr) {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

/// A time bucket over a column: (column, width in ns, origin in ns).
/// Calendar units beyond a day (week, month, …) are day-aligned in UTC:
/// width `None`.
pub(crate) struct Bucket<'a> {
    pub column: &'a str,
    /// `None`: a calendar unit of days or more (week, month, quarter, year).
    pub width: Option<i128>,
    pub origin: i128,
}

/// `date_bin(interval, col[, origin])` or `date_trunc(unit, col)`, with
/// literal arguments (fold constants first).
pub(crate) fn bucket_of(expr: &Expr) -> Option<Bucket<'_>> {
    let Expr::ScalarFunction(f) = unalias(expr) else {
        return None;
    };
    match (f.func.name(), f.args.as_slice()) {
        ("date_bin", [interval, col, rest @ ..]) => {
            let width = interval_nanos(literal(interval)?)?;
            let origin = match rest {
                [] => 0,
                [origin] => timestamp_nanos(literal(origin)?)?,
                _ => return None,
            };
            (width > 0).then_some(Bucket {
                column: column_name(col)?,
                width: Some(width),
                origin,
            })
        }
        ("date_trunc", [unit, col]) => {
            let unit = match literal(unit)? {
                ScalarValue::Utf8(Some(u)) | ScalarValue::LargeUtf8(Some(u)) => u.to_lowercase(),
                ScalarValue::Utf8View(Some(u)) => u.to_lowercase(),
                _ => return None,
            };
            let width = match unit.as_str() {
                "second" => Some(1_000_000_000),
                "minute" => Some(60_000_000_000),
                "hour" => Some(3_600_000_000_000),
                "day" => Some(DAY_NANOS),
                "week" | "month" | "quarter" | "year" => None,
                _ => return None,
            };
            Some(Bucket {
                column: column_name(col)?,
                width,
                origin: 0,
            })
        }
        _ => None,
    }
}

impl Rollup {
    /// The rollup shape of a view's (analyzed) query plan, if it has one.
    pub(crate) fn of_plan(plan: &LogicalPlan) -> Option<Rollup> {
        // Projection (names) over Aggregate over the scan.
        let (names, aggregate): (Vec<(String, &Expr)>, &Aggregate) = match plan {
            LogicalPlan::Projection(p) => {
                let LogicalPlan::Aggregate(a) = p.input.as_ref() else {
                    return None;
                };
                let outputs = output_exprs(a);
                let mut names = Vec::new();
                for (i, e) in p.expr.iter().enumerate() {
                    let inner = column_name(e)?;
                    let source = outputs.iter().find(|(n, _)| n == inner)?.1;
                    names.push((p.schema.field(i).name().clone(), source));
                }
                (names, a)
            }
            LogicalPlan::Aggregate(a) => (output_exprs(a), a),
            _ => return None,
        };
        if !matches!(aggregate.input.as_ref(), LogicalPlan::TableScan(_))
            || aggregate
                .group_expr
                .iter()
                .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return None;
        }
        let mut rollup = Rollup {
            time_column: String::new(),
            bucket: String::new(),
            bucket_expr: Expr::Literal(ScalarValue::Null, None),
            grain: 0,
            dims: HashMap::new(),
            measures: HashMap::new(),
        };
        for (view_col, expr) in &names {
            if let Some(base) = column_name(expr) {
                rollup.dims.insert(base.to_string(), view_col.clone());
            } else if let Some(bucket) = bucket_of(expr) {
                let width = bucket.width?;
                if !rollup.bucket.is_empty() || bucket.origin % width != 0 || DAY_NANOS % width != 0
                {
                    return None;
                }
                rollup.time_column = bucket.column.to_string();
                rollup.bucket = view_col.clone();
                rollup.bucket_expr = unalias(expr).clone();
                rollup.grain = width;
            }
        }
        if rollup.bucket.is_empty() {
            return None;
        }
        // Every group expression must be the bucket or a dimension.
        for g in &aggregate.group_expr {
            let is_dim = column_name(g).is_some_and(|c| rollup.dims.contains_key(c));
            let is_bucket = bucket_of(g).is_some_and(|b| b.column == rollup.time_column);
            if !is_dim && !is_bucket {
                return None;
            }
        }
        for (view_col, expr) in &names {
            if let Expr::AggregateFunction(f) = unalias(expr)
                && let Some(m) = measure_of(f, &rollup.time_column)
            {
                rollup.measures.entry(m).or_insert_with(|| view_col.clone());
            }
        }
        Some(rollup)
    }

    /// The view column holding `m`, also answering `count(col)` from
    /// `count(*)` when `col` cannot be null.
    pub(crate) fn column_of(&self, m: &Measure, non_null: &dyn Fn(&str) -> bool) -> Option<&str> {
        if let Some(c) = self.measures.get(m) {
            return Some(c);
        }
        match m {
            Measure::Count(col) if non_null(col) => self.measures.get(&Measure::Rows),
            _ => None,
        }
        .map(String::as_str)
    }

    /// Whether a query bucket of this kind can be computed from this view's
    /// bucket starts.
    pub(crate) fn answers_bucket(&self, bucket: &Bucket<'_>) -> bool {
        bucket.column == self.time_column
            && match bucket.width {
                Some(w) => w % self.grain == 0 && bucket.origin % self.grain == 0,
                None => DAY_NANOS % self.grain == 0,
            }
    }
}

/// (output name, expression) of an aggregate's columns.
fn output_exprs(a: &Aggregate) -> Vec<(String, &Expr)> {
    a.group_expr
        .iter()
        .chain(a.aggr_expr.iter())
        .enumerate()
        .map(|(i, e)| (a.schema.field(i).name().clone(), e))
        .collect()
}

fn ordered_by_time(order: &[Sort], time_column: &str) -> bool {
    matches!(order, [s] if s.asc && column_name(&s.expr) == Some(time_column))
}

/// The partial an aggregate call computes, for the view's own aggregates.
pub(crate) fn measure_of(f: &AggregateFunction, time_column: &str) -> Option<Measure> {
    let p = &f.params;
    if p.distinct || p.filter.is_some() || p.null_treatment.is_some() {
        return None;
    }
    let name = f.func.name();
    let plain = p.order_by.is_empty();
    match (name, p.args.as_slice()) {
        ("count", []) if plain => Some(Measure::Rows),
        ("count", [arg]) if plain => match literal(arg) {
            Some(v) if !v.is_null() => Some(Measure::Rows),
            Some(_) => None,
            None => Some(Measure::Count(column_name(arg)?.to_string())),
        },
        ("min", [arg]) => Some(Measure::Min(column_name(arg)?.to_string())),
        ("max", [arg]) => Some(Measure::Max(column_name(arg)?.to_string())),
        ("sum", [arg]) if plain => match unalias(arg) {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Multiply,
                right,
            }) => {
                let (l, r) = (column_name(left)?, column_name(right)?);
                (l == r).then(|| Measure::SumSq(l.to_string()))
            }
            other => Some(Measure::Sum(column_name(other)?.to_string())),
        },
        ("first_value", [arg]) if ordered_by_time(&p.order_by, time_column) => {
            Some(Measure::First(column_name(arg)?.to_string()))
        }
        ("last_value", [arg]) if ordered_by_time(&p.order_by, time_column) => {
            Some(Measure::Last(column_name(arg)?.to_string()))
        }
        _ => None,
    }
}

/// How a query aggregate is computed from partials.
#[derive(Debug, Clone)]
pub(crate) enum Merge {
    /// `count(*)`, `count(col)`: sum of counts, 0 when there are none.
    Count(Measure),
    Min(Measure),
    Max(Measure),
    Sum(Measure),
    /// sum / count
    Avg {
        sum: Measure,
        count: Measure,
    },
    /// From sum, sum of squares and count; `sample`: n - 1, `sqrt`: stddev.
    Variance {
        sum: Measure,
        sum_sq: Measure,
        count: Measure,
        sample: bool,
        sqrt: bool,
    },
    /// first/last value ordered by the first/last time of each partial.
    First {
        value: Measure,
        at: Measure,
    },
    Last {
        value: Measure,
        at: Measure,
    },
}

impl Merge {
    pub(crate) fn measures(&self) -> Vec<&Measure> {
        match self {
            Merge::Count(m) | Merge::Min(m) | Merge::Max(m) | Merge::Sum(m) => vec![m],
            Merge::Avg { sum, count } => vec![sum, count],
            Merge::Variance {
                sum, sum_sq, count, ..
            } => vec![sum, sum_sq, count],
            Merge::First { value, at } | Merge::Last { value, at } => vec![value, at],
        }
    }
}

/// How a query's aggregate call is answered from partials (over base
/// columns), or `None`.
pub(crate) fn merge_of(f: &AggregateFunction, time_column: &str) -> Option<Merge> {
    let p = &f.params;
    if p.distinct || p.filter.is_some() || p.null_treatment.is_some() {
        return None;
    }
    let name = f.func.name();
    let col = || -> Option<String> {
        match p.args.as_slice() {
            [arg] => column_name(arg).map(str::to_string),
            _ => None,
        }
    };
    let time = time_column.to_string();
    Some(match name {
        "count" | "min" | "max" | "sum" | "first_value" | "last_value" => {
            match measure_of(f, time_column)? {
                m @ (Measure::Rows | Measure::Count(_)) => Merge::Count(m),
                m @ Measure::Min(_) => Merge::Min(m),
                m @ Measure::Max(_) => Merge::Max(m),
                m @ (Measure::Sum(_) | Measure::SumSq(_)) => Merge::Sum(m),
                Measure::First(c) => Merge::First {
                    value: Measure::First(c),
                    at: Measure::Min(time),
                },
                Measure::Last(c) => Merge::Last {
                    value: Measure::Last(c),
                    at: Measure::Max(time),
                },
            }
        }
        "avg" | "mean" if p.order_by.is_empty() => {
            let c = col()?;
            Merge::Avg {
                sum: Measure::Sum(c.clone()),
                count: Measure::Count(c),
            }
        }
        "var" | "var_samp" | "var_sample" | "var_pop" | "stddev" | "stddev_samp" | "stddev_pop"
            if p.order_by.is_empty() =>
        {
            let c = col()?;
            Merge::Variance {
                sum: Measure::Sum(c.clone()),
                sum_sq: Measure::SumSq(c.clone()),
                count: Measure::Count(c),
                sample: !name.ends_with("_pop"),
                sqrt: name.starts_with("stddev"),
            }
        }
        _ => return None,
    })
}
