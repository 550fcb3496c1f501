//! One rule's state per series and its transitions.
//!
//! Per series: quiet → (condition holds) pending → (held for `FOR`) ACTIVE →
//! (clear condition holds) RESOLVED → quiet. ACKNOWLEDGED is written by
//! users (`ACKNOWLEDGE ALERT`) and changes nothing here: an acknowledged
//! alert still resolves when its series recovers. Pending is not written:
//! a restart starts it again, the next rows decide.
//!
//! Time: conditions run on event time (the rows' time column), so `FOR`,
//! `rate` and `zscore` mean the same whether rows arrive live or late;
//! absence runs on the clock (no rows arrive to tell the time).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use weir_query::alerts::compile::{Compiled, CompiledRule, Evaluated, Slice, Values};
use weir_query::alerts::{AlertRule, Condition};

/// A transition the evaluator decided (written and notified by the engine).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub series: String,
    /// `ACTIVE` or `RESOLVED`.
    pub state: &'static str,
    pub at_micros: i64,
    pub value: Option<f64>,
    /// The alert's id (one per episode, from its ACTIVE).
    pub alert_id: String,
}

/// An open alert of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub alert_id: String,
    pub since_micros: i64,
}

#[derive(Debug, Default)]
struct Series {
    /// Latest row (event time, measured value) for `rate`.
    last: Option<(i64, f64)>,
    /// Clock time (µs) of the latest row, for absence.
    seen_micros: i64,
    /// Event time of the newest row (absence alerts are named after it).
    newest_micros: Option<i64>,
    /// Event time the condition started to hold.
    pending_since: Option<i64>,
    open: Option<Open>,
    window: Option<Window>,
    /// The partition its latest rows came from (interned by the engine).
    origin: Option<u32>,
    /// Not seen in this process's rows: known from the table (absence's
    /// look at recent series) or from another evaluator's transitions.
    /// Absence fires for it only after the table confirms the silence.
    seeded: bool,
}

/// A row's verdict on a rule: the condition holds, the clear condition
/// holds, and the value reported.
struct Verdict {
    holds: bool,
    cleared: bool,
    value: Option<f64>,
}

impl Verdict {
    /// A row condition's verdict on row `i`; `None` (no decision) when the
    /// test is NULL.
    fn of_row(
        i: usize,
        test: &arrow::array::BooleanArray,
        value: Option<&arrow::array::Float64Array>,
        clear: Option<&Values>,
    ) -> Option<Verdict> {
        if test.is_null(i) {
            return None;
        }
        let holds = test.value(i);
        let cleared = match clear {
            Some(Values::Row { test: c, .. }) => !c.is_null(i) && c.value(i),
            _ => !holds,
        };
        let value = value.and_then(|v| (!v.is_null(i)).then(|| v.value(i)));
        Some(Verdict {
            holds,
            cleared,
            value,
        })
    }
}

impl Series {
    /// A row of this process's at clock time `now` (event time `ts`).
    fn seen(&mut self, now_micros: i64, origin: Option<u32>, ts: Option<i64>) {
        self.seen_micros = now_micros;
        self.origin = origin;
        self.seeded = false;
        if let Some(ts) = ts {
            self.newest_micros = Some(self.newest_micros.map_or(ts, |n| n.max(ts)));
        }
    }

    /// `rate` (per second since the previous row; `zwindow` None) or the
    /// z-score in the rolling window of the value `x` at `ts`; `None` until
    /// there is something to compare with.
    fn measure(&mut self, ts: i64, x: f64, zwindow: Option<Duration>) -> Option<f64> {
        match zwindow {
            None => {
                let prev = self.last;
                if prev.is_none_or(|(t, _)| ts > t) {
                    self.last = Some((ts, x));
                }
                match prev {
                    Some((t, p)) if ts > t => Some((x - p) / ((ts - t) as f64 / 1e6)),
                    _ => None,
                }
            }
            Some(w) => {
                let win = self.window.get_or_insert_with(|| Window::new(w));
                let z = win.score(ts, x);
                win.add(ts, x);
                z
            }
        }
    }

    /// The transition a verdict at `ts` makes, if any: ACTIVE once the
    /// condition held for `hold` µs (the alert named by `new_id`), RESOLVED
    /// when the clear condition holds. The decision's series is left empty.
    fn decide(
        &mut self,
        verdict: Verdict,
        ts: i64,
        hold: i64,
        new_id: impl FnOnce() -> String,
    ) -> Option<Decision> {
        match &self.open {
            None if verdict.holds => {
                let since = *self.pending_since.get_or_insert(ts);
                if ts - since < hold {
                    return None;
                }
                let alert_id = new_id();
                self.open = Some(Open {
                    alert_id: alert_id.clone(),
                    since_micros: ts,
                });
                self.pending_since = None;
                Some(Decision {
                    series: String::new(),
                    state: weir_query::alerts::ACTIVE,
                    at_micros: ts,
                    value: verdict.value,
                    alert_id,
                })
            }
            None => {
                self.pending_since = None;
                None
            }
            Some(open) if verdict.cleared => {
                let d = Decision {
                    series: String::new(),
                    state: weir_query::alerts::RESOLVED,
                    at_micros: ts.max(open.since_micros),
                    value: verdict.value,
                    alert_id: open.alert_id.clone(),
                };
                self.open = None;
                self.pending_since = None;
                Some(d)
            }
            Some(_) => None,
        }
    }
}

/// `zscore`'s rolling window: event time cut in [`SLOTS`] slots with count,
/// sum and sum of squares each, so memory per series is fixed whatever the
/// rate (a window of exact points would hold 600 values per series for 10
/// minutes at 1 Hz, 120 M for 200,000 series).
#[derive(Debug)]
struct Window {
    slot_micros: i64,
    slots: VecDeque<(i64, u64, f64, f64)>,
}

const SLOTS: i64 = 20;
/// Points a window needs before its z-scores count.
pub const ZSCORE_MIN_POINTS: u64 = 10;

impl Window {
    fn new(window: Duration) -> Self {
        Window {
            slot_micros: (window.as_micros() as i64 / SLOTS).max(1),
            slots: VecDeque::new(),
        }
    }

    /// |x − mean| / stddev of the window before `ts` (None until it has
    /// enough points, or when every point is equal).
    fn score(&mut self, ts: i64, x: f64) -> Option<f64> {
        let oldest = ts.div_euclid(self.slot_micros) - SLOTS;
        while self.slots.front().is_some_and(|s| s.0 < oldest) {
            self.slots.pop_front();
        }
        let (n, sum, sq) = self
            .slots
            .iter()
            .filter(|s| s.0 >= oldest)
            .fold((0u64, 0.0, 0.0), |(n, s, q), slot| {
                (n + slot.1, s + slot.2, q + slot.3)
            });
        if n < ZSCORE_MIN_POINTS {
            return None;
        }
        let mean = sum / n as f64;
        let var = (sq / n as f64 - mean * mean).max(0.0) * n as f64 / (n - 1) as f64;
        let sd = var.sqrt();
        (sd > f64::EPSILON * mean.abs().max(1.0)).then(|| (x - mean).abs() / sd)
    }

    fn add(&mut self, ts: i64, x: f64) {
        let slot = ts.div_euclid(self.slot_micros);
        match self.slots.iter_mut().rev().find(|s| s.0 == slot) {
            Some(s) => {
                s.1 += 1;
                s.2 += x;
                s.3 += x * x;
            }
            None => {
                // Rows a little out of order land in their own slot, kept sorted.
                let at = self.slots.partition_point(|s| s.0 < slot);
                self.slots.insert(at, (slot, 1, x, x * x));
            }
        }
    }
}

/// A rule with its series.
#[derive(Debug)]
pub struct RuleState {
    pub rule: AlertRule,
    /// `column = 'text'` its filter requires ([`AlertRule::equality_key`]).
    key: Option<(String, String)>,
    /// The rule planned per batch schema (tables evolve).
    compiled: Vec<(arrow::datatypes::SchemaRef, CompiledRule)>,
    /// Per series (the text of its BY values). Looked up for every row of
    /// every rule: Fx hashing, not SipHash (the keys are our own texts).
    series: rustc_hash::FxHashMap<std::sync::Arc<str>, Series>,
}

impl RuleState {
    pub fn new(rule: AlertRule) -> Self {
        RuleState {
            key: rule.equality_key(),
            rule,
            compiled: Vec::new(),
            series: Default::default(),
        }
    }

    /// Carries the series of `old` over (the rule's text changed in a way
    /// that keeps its meaning per series, or was re-read unchanged).
    pub fn adopt(&mut self, old: RuleState) {
        self.series = old.series;
    }

    /// Marks `series` as having an open alert (from `gold.alerts`: after a
    /// restart, or written by another evaluator).
    pub fn recover(&mut self, series: &str, open: Open, now_micros: i64) {
        let s = self.entry(series, now_micros);
        s.open = Some(open);
    }

    fn entry(&mut self, series: &str, now_micros: i64) -> &mut Series {
        self.series.entry(series.into()).or_insert_with(|| Series {
            seen_micros: now_micros,
            seeded: true,
            ..Series::default()
        })
    }

    /// Series known to be alive (absence watches them) without an alert.
    pub fn know(&mut self, series: &str, seen_micros: i64) {
        let s = self.entry(series, seen_micros);
        s.seen_micros = s.seen_micros.max(seen_micros);
    }

    /// The open alert of `series`, if any.
    pub fn open_of(&self, series: &str) -> Option<&Open> {
        self.series.get(series).and_then(|s| s.open.as_ref())
    }

    /// Ends the open alert `alert_id` of `series` without a decision
    /// (another evaluator resolved it); true when it was open here.
    pub fn close(&mut self, series: &str, alert_id: &str) -> bool {
        match self.series.get_mut(series) {
            Some(s) if s.open.as_ref().is_some_and(|o| o.alert_id == alert_id) => {
                s.open = None;
                s.pending_since = None;
                true
            }
            _ => false,
        }
    }

    /// Whether this process's rows carry `series` (it decides for it).
    pub fn owns(&self, series: &str) -> bool {
        self.series.get(series).is_some_and(|s| !s.seeded)
    }

    /// Forgets the series whose latest rows came from `origin` (another
    /// process reads that partition now and decides for them); returns how
    /// many. Their open alerts stay known (as another evaluator's are):
    /// the new owner resolves them, and should the partition come back,
    /// this process carries them on.
    pub fn release(&mut self, origin: u32, now_micros: i64) -> usize {
        let mut released = 0;
        self.series.retain(|_, s| {
            if s.origin != Some(origin) {
                return true;
            }
            released += 1;
            match s.open.take() {
                Some(open) => {
                    *s = Series {
                        open: Some(open),
                        seen_micros: now_micros,
                        seeded: true,
                        ..Series::default()
                    };
                    true
                }
                None => false,
            }
        });
        released
    }

    pub fn open_alerts(&self) -> usize {
        self.series.values().filter(|s| s.open.is_some()).count()
    }

    /// The series with an open alert.
    pub fn open_series(&self) -> Vec<(String, Open)> {
        self.series
            .iter()
            .filter_map(|(k, s)| s.open.clone().map(|o| (k.to_string(), o)))
            .collect()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn compiled_for(&mut self, batch: &RecordBatch) -> weir_query::Result<&CompiledRule> {
        let schema = batch.schema();
        let at = match self
            .compiled
            .iter()
            .position(|(s, _)| std::sync::Arc::ptr_eq(s, &schema) || **s == *schema)
        {
            Some(i) => i,
            None => {
                let c = CompiledRule::new(&self.rule, &schema)?;
                // Few schemas per table; keep the latest few.
                if self.compiled.len() >= 4 {
                    self.compiled.remove(0);
                }
                self.compiled.push((schema, c));
                self.compiled.len() - 1
            }
        };
        Ok(&self.compiled[at].1)
    }

    /// Runs the rule over a batch of its table; returns the transitions.
    pub fn apply(
        &mut self,
        batch: &RecordBatch,
        origin: Option<u32>,
        now_micros: i64,
        new_id: &mut dyn FnMut(&str, &str, i64) -> String,
    ) -> weir_query::Result<Vec<Decision>> {
        self.apply_sliced(batch, &mut HashMap::new(), origin, now_micros, new_id)
    }

    /// [`RuleState::apply`] with the slices other rules prepared from the
    /// same batch (same filter and BY columns: same rows, same series).
    fn apply_sliced(
        &mut self,
        batch: &RecordBatch,
        slices: &mut HashMap<String, Slice>,
        origin: Option<u32>,
        now_micros: i64,
        new_id: &mut dyn FnMut(&str, &str, i64) -> String,
    ) -> weir_query::Result<Vec<Decision>> {
        let hold = self.rule.hold.as_micros() as i64;
        let zwindow = match &self.rule.when {
            Condition::ZScore { window, .. } => Some(*window),
            _ => None,
        };
        let absent = matches!(self.rule.when, Condition::Absent { .. });
        let compiled = self.compiled_for(batch)?;
        let when = compiled.when.clone();
        let clear = compiled.clear.clone();
        let slice = match slices.get(compiled.slice_key()) {
            Some(slice) => slice.clone(),
            None => {
                let slice = compiled.prepare(batch)?;
                slices.insert(compiled.slice_key().to_string(), slice.clone());
                slice
            }
        };
        let ev: Evaluated = compiled.conditions(&slice)?;
        let mut out = Vec::new();
        for (i, key) in ev.series.iter().enumerate() {
            let ts = match &ev.ts {
                Some(t) if !t.is_null(i) => t.value(i),
                Some(_) => continue,
                None => now_micros,
            };
            let s = self.series.entry(key.clone()).or_default();
            let key: &str = key;
            s.seen(now_micros, origin, ev.ts.is_some().then_some(ts));
            if absent {
                // A row ends the series' absence.
                if let Some(open) = s.open.take() {
                    out.push(Decision {
                        series: key.to_string(),
                        state: weir_query::alerts::RESOLVED,
                        at_micros: now_micros,
                        value: None,
                        alert_id: open.alert_id,
                    });
                }
                continue;
            }
            let verdict = match (&when, &ev.when) {
                (Compiled::Row { .. }, Values::Row { test, value }) => {
                    Verdict::of_row(i, test, value.as_ref(), ev.clear.as_ref())
                }
                (Compiled::Measure { op, limit, .. }, Values::Measure(values)) => {
                    let x = (!values.is_null(i)).then(|| values.value(i));
                    x.and_then(|x| s.measure(ts, x, zwindow)).map(|m| {
                        let holds = op.holds(m, *limit);
                        let cleared = match &clear {
                            Some(Compiled::Measure { op, limit, .. }) => op.holds(m, *limit),
                            _ => !holds,
                        };
                        Verdict {
                            holds,
                            cleared,
                            value: Some(m),
                        }
                    })
                }
                _ => None,
            };
            if let Some(verdict) = verdict
                && let Some(d) = s.decide(verdict, ts, hold, || new_id(&self.rule.name, key, ts))
            {
                out.push(Decision {
                    series: key.to_string(),
                    ..d
                });
            }
        }
        Ok(out)
    }

    /// Absence: series of this process's rows silent for the rule's
    /// interval get an alert. Also returns the silent series it only knows
    /// from the table or other evaluators ([`RuleState::confirm_silence`]
    /// decides for them once the table was asked).
    pub fn check_silence(
        &mut self,
        now_micros: i64,
        new_id: &mut dyn FnMut(&str, &str, i64) -> String,
    ) -> (Vec<Decision>, Vec<String>) {
        let Condition::Absent { after } = self.rule.when else {
            return (Vec::new(), Vec::new());
        };
        let after = after.as_micros() as i64;
        let mut out = Vec::new();
        let mut unconfirmed = Vec::new();
        for (key, s) in &mut self.series {
            if s.open.is_none() && now_micros - s.seen_micros >= after {
                if s.seeded {
                    unconfirmed.push(key.to_string());
                    continue;
                }
                // Named after the newest row's time, as another evaluator
                // that knows the series from the table names it.
                let at = s.newest_micros.map_or(now_micros, |n| n + after);
                out.push(open_absent(&self.rule.name, key, s, at, now_micros, new_id));
            }
        }
        (out, unconfirmed)
    }

    /// Absence for series this process does not read: `latest` holds the
    /// newest row time the table (committed and hot, every process) has of
    /// each recent series. A series with rows within the interval plus
    /// `lag` (how late another process commits) is alive; one without has
    /// been silent since its last row, and its alert's id and time derive
    /// from that row alone, so two evaluators that both decide it write the
    /// same transition.
    pub fn confirm_silence(
        &mut self,
        series: &[String],
        latest: &HashMap<String, i64>,
        lag: Duration,
        now_micros: i64,
        new_id: &mut dyn FnMut(&str, &str, i64) -> String,
    ) -> Vec<Decision> {
        let Condition::Absent { after } = self.rule.when else {
            return Vec::new();
        };
        let after = after.as_micros() as i64;
        let mut out = Vec::new();
        for key in series {
            let Some(s) = self.series.get_mut(key.as_str()) else {
                continue;
            };
            if let Some(seen) = latest.get(key) {
                s.seen_micros = s.seen_micros.max(*seen);
            }
            let lag = lag.as_micros() as i64;
            if !s.seeded || s.open.is_some() || now_micros - s.seen_micros < after + lag {
                continue;
            }
            let at = s.seen_micros + after;
            out.push(open_absent(&self.rule.name, key, s, at, now_micros, new_id));
        }
        out
    }
}

/// Opens the absence alert of series `key` as of `at` (its id derives from
/// the rule, the series and `at`); the value is the silence so far (s).
fn open_absent(
    rule: &str,
    key: &str,
    s: &mut Series,
    at: i64,
    now_micros: i64,
    new_id: &mut dyn FnMut(&str, &str, i64) -> String,
) -> Decision {
    let alert_id = new_id(rule, key, at);
    s.open = Some(Open {
        alert_id: alert_id.clone(),
        since_micros: at,
    });
    Decision {
        series: key.to_string(),
        state: weir_query::alerts::ACTIVE,
        at_micros: at,
        value: Some((now_micros - s.seen_micros) as f64 / 1e6),
        alert_id,
    }
}

/// Runs `rules` (all of one table) over a batch: a rule whose filter requires
/// `column = 'text'` gets only the rows with that value (the batch is grouped
/// once per such column), the others get every row. Returns each rule's
/// transitions (by position in `rules`) and the errors.
pub fn evaluate_batch(
    rules: &mut [&mut RuleState],
    batch: &RecordBatch,
    origin: Option<u32>,
    now_micros: i64,
    new_id: &mut dyn FnMut(&str, &str, i64) -> String,
) -> Vec<(usize, weir_query::Result<Vec<Decision>>)> {
    use arrow::array::{StringArray, UInt32Array};
    // column → value → row indices, for string columns only.
    let mut groups: HashMap<String, Option<HashMap<String, Vec<u32>>>> = HashMap::new();
    // The rows of one value, taken once for every rule that wants them.
    let mut taken: HashMap<(String, String), RecordBatch> = HashMap::new();
    // Rules with one filter and BY columns share their slice (one batch,
    // one schema here).
    let mut slices: HashMap<String, Slice> = HashMap::new();
    let mut out = Vec::new();
    for (i, rule) in rules.iter_mut().enumerate() {
        let routed = rule.key.as_ref().and_then(|(column, value)| {
            let grouped = groups.entry(column.clone()).or_insert_with(|| {
                let array = batch.column_by_name(column)?;
                if !matches!(
                    array.data_type(),
                    arrow::datatypes::DataType::Utf8
                        | arrow::datatypes::DataType::LargeUtf8
                        | arrow::datatypes::DataType::Utf8View
                        | arrow::datatypes::DataType::Dictionary(..)
                ) {
                    return None;
                }
                let text = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8).ok()?;
                let text = text.as_any().downcast_ref::<StringArray>()?.clone();
                let mut map: HashMap<String, Vec<u32>> = HashMap::new();
                for (row, v) in text.iter().enumerate() {
                    if let Some(v) = v {
                        match map.get_mut(v) {
                            Some(rows) => rows.push(row as u32),
                            None => {
                                map.insert(v.to_string(), vec![row as u32]);
                            }
                        }
                    }
                }
                Some(map)
            });
            grouped.as_ref().map(|g| g.get(value))
        });
        let result = match routed {
            // No row has the value: nothing to evaluate.
            Some(None) => continue,
            Some(Some(rows)) if rows.len() < batch.num_rows() => {
                let key = rule.key.clone().expect("routed rules have a key");
                let sub = match taken.get(&key) {
                    Some(sub) => Ok(sub.clone()),
                    None => {
                        let indices = UInt32Array::from(rows.clone());
                        arrow::compute::take_record_batch(batch, &indices)
                            .map_err(|e| weir_query::QueryError::Internal(e.to_string()))
                            .inspect(|sub| {
                                taken.insert(key, sub.clone());
                            })
                    }
                };
                sub.and_then(|sub| rule.apply_sliced(&sub, &mut slices, origin, now_micros, new_id))
            }
            _ => rule.apply_sliced(batch, &mut slices, origin, now_micros, new_id),
        };
        out.push((i, result));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn rule(sql: &str) -> RuleState {
        RuleState::new(weir_query::alerts::rule::parse_create(&GenericDialect {}, sql).unwrap())
    }

    /// Rows (device_id, ts in seconds, value).
    pub(crate) fn batch(rows: &[(&str, i64, f64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("device_id", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                false,
            ),
            Field::new("value", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        rows.iter().map(|r| r.1 * 1_000_000),
                    )
                    .with_timezone("+00:00"),
                ),
                Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2))),
            ],
        )
        .unwrap()
    }

    fn ids() -> impl FnMut(&str, &str, i64) -> String {
        |rule: &str, series: &str, at: i64| format!("{rule}/{series}/{at}")
    }

    fn states(d: &[Decision]) -> Vec<(String, &'static str, i64)> {
        d.iter()
            .map(|d| (d.series.clone(), d.state, d.at_micros / 1_000_000))
            .collect()
    }

    #[test]
    fn threshold_with_hold_and_hysteresis() {
        let mut r = rule(
            "CREATE ALERT hot ON t BY device_id WHEN value > 80 CLEAR WHEN value < 75 FOR INTERVAL '2 seconds'",
        );
        let mut id = ids();
        let d = r
            .apply(
                &batch(&[
                    ("a", 1, 81.0),
                    ("b", 1, 90.0),
                    ("a", 2, 82.0),
                    ("a", 3, 85.0),
                ]),
                None,
                0,
                &mut id,
            )
            .unwrap();
        assert_eq!(states(&d), [("device_id=a".into(), "ACTIVE", 3)]);
        // 78 is neither hot nor cleared (hysteresis); 74 clears.
        let d = r
            .apply(
                &batch(&[("a", 4, 78.0), ("a", 5, 74.0), ("b", 5, 70.0)]),
                None,
                0,
                &mut id,
            )
            .unwrap();
        assert_eq!(states(&d), [("device_id=a".into(), "RESOLVED", 5)]);
        // b was hot once only (1 s < FOR): never fired.
        assert_eq!(r.open_alerts(), 0);
    }

    #[test]
    fn rate_and_zscore() {
        let mut r = rule("CREATE ALERT jump ON t BY device_id WHEN rate(value) > 5");
        let mut id = ids();
        let d = r
            .apply(
                &batch(&[
                    ("a", 0, 10.0),
                    ("a", 1, 12.0),
                    ("a", 2, 30.0),
                    ("a", 3, 31.0),
                ]),
                None,
                0,
                &mut id,
            )
            .unwrap();
        assert_eq!(
            states(&d),
            [
                ("device_id=a".into(), "ACTIVE", 2),
                ("device_id=a".into(), "RESOLVED", 3)
            ]
        );
        let mut z = rule(
            "CREATE ALERT odd ON t BY device_id WHEN zscore(value, INTERVAL '100 seconds') > 4",
        );
        let rows: Vec<(&str, i64, f64)> = (0..50)
            .map(|i| ("a", i, 10.0 + if i % 2 == 0 { 0.5 } else { -0.5 }))
            .chain([("a", 50, 40.0), ("a", 51, 10.0)])
            .collect();
        let d = z.apply(&batch(&rows), None, 0, &mut id).unwrap();
        assert_eq!(
            states(&d),
            [
                ("device_id=a".into(), "ACTIVE", 50),
                ("device_id=a".into(), "RESOLVED", 51)
            ]
        );
    }

    #[test]
    fn absence_fires_on_the_clock_and_resolves_on_data() {
        let mut r = rule("CREATE ALERT quiet ON t BY device_id WHEN absent(INTERVAL '30 seconds')");
        let mut id = ids();
        let s = 1_000_000;
        assert!(
            r.apply(&batch(&[("a", 0, 1.0), ("b", 0, 1.0)]), None, 0, &mut id)
                .unwrap()
                .is_empty()
        );
        assert!(
            r.apply(&batch(&[("b", 20, 1.0)]), None, 20 * s, &mut id)
                .unwrap()
                .is_empty()
        );
        let (d, unconfirmed) = r.check_silence(31 * s, &mut id);
        // Named after a's newest row (t=0) plus the interval.
        assert_eq!(states(&d), [("device_id=a".into(), "ACTIVE", 30)]);
        assert!(unconfirmed.is_empty());
        assert!(r.check_silence(32 * s, &mut id).0.is_empty(), "fires once");
        let d = r
            .apply(&batch(&[("a", 40, 1.0)]), None, 40 * s, &mut id)
            .unwrap();
        assert_eq!(states(&d), [("device_id=a".into(), "RESOLVED", 40)]);
    }

    #[test]
    fn recovered_alerts_resolve_and_do_not_fire_again() {
        let mut r = rule("CREATE ALERT hot ON t BY device_id WHEN value > 80");
        let mut id = ids();
        r.recover(
            "device_id=a",
            Open {
                alert_id: "x".into(),
                since_micros: 0,
            },
            0,
        );
        assert!(
            r.apply(&batch(&[("a", 1, 90.0)]), None, 0, &mut id)
                .unwrap()
                .is_empty()
        );
        let d = r
            .apply(&batch(&[("a", 2, 10.0)]), None, 0, &mut id)
            .unwrap();
        assert_eq!(d[0].alert_id, "x");
        assert_eq!(d[0].state, "RESOLVED");
    }
}
