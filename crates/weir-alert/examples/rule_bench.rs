//! Cost of evaluating alert rules on sealed rows (issue 22: "rule
//! evaluation cost per 1 M points/s (cores) with 1,000 rules").
//!
//! Feeds Silver-shaped batches (device_id, metric, ts, value, quality) of
//! `--series` series through `--rules` rules of every kind, one thread, and
//! prints rows/s and the cores 1 M points/s would need. Run by
//! `benches/run.sh alerts` (release build).
//!
//! Rules: 70 % thresholds, 10 % rate, 10 % z-score, 10 % absence, each on
//! one metric (`WHERE metric = 'm…'`, as rules are written), `BY device_id`.

#![allow(clippy::too_many_lines)] // tests and benchmarks: long tables of cases are fine
#![allow(clippy::unwrap_used)] // benchmark example: a failure may panic

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use weir_alert::state::RuleState;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rules_n = arg("--rules", 1000);
    let series = arg("--series", 200_000);
    let points = arg("--points", 10_000_000);
    let batch_rows = arg("--batch", 8192);
    let metrics_n = 100usize.min(series);
    let devices = series / metrics_n;

    let mut rules: Vec<RuleState> = (0..rules_n)
        .map(|i| {
            let m = i % metrics_n;
            let when = match i % 10 {
                0 => "rate(value) > 50".to_string(),
                1 => "zscore(value, INTERVAL '10 minutes') > 4".to_string(),
                2 => "absent(INTERVAL '30 seconds')".to_string(),
                _ => format!("value > {}", 90 + i % 7),
            };
            let sql = format!(
                "CREATE ALERT r{i} ON silver.points WHERE metric = 'm{m}' BY device_id WHEN {when}"
            );
            RuleState::new(
                weir_query::alerts::rule::parse_create(&GenericDialect {}, &sql).unwrap(),
            )
        })
        .collect();

    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            false,
        ),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("quality", DataType::Int32, true),
    ]));
    let device_names: Vec<String> = (0..devices).map(|d| format!("dev-{d:06}")).collect();
    let metric_names: Vec<String> = (0..metrics_n).map(|m| format!("m{m}")).collect();
    // 1 Hz per series: row r is series r % series at second r / series.
    let make = |start: usize| -> RecordBatch {
        let rows = start..start + batch_rows;
        let ts = TimestampMicrosecondArray::from_iter_values(
            rows.clone()
                .map(|r| 1_767_225_600_000_000 + (r / series) as i64 * 1_000_000),
        )
        .with_timezone("+00:00");
        let device = StringArray::from_iter_values(
            rows.clone()
                .map(|r| device_names[(r % series) / metrics_n].as_str()),
        );
        let metric = StringArray::from_iter_values(
            rows.clone().map(|r| metric_names[r % metrics_n].as_str()),
        );
        let value = Float64Array::from_iter_values(
            rows.clone()
                .map(|r| 50.0 + ((r * 7919) % 1000) as f64 / 25.0),
        );
        let quality = Int32Array::from_iter_values(rows.map(|_| 0));
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(ts),
                Arc::new(device),
                Arc::new(metric),
                Arc::new(value),
                Arc::new(quality),
            ],
        )
        .unwrap()
    };
    // Warm-up: every rule compiles, every series exists.
    let mut id = |r: &str, s: &str, at: i64| format!("{r}/{s}/{at}");
    let warm = series.div_ceil(batch_rows) * batch_rows;
    let mut at = 0;
    while at < warm {
        let b = make(at);
        let mut all: Vec<&mut RuleState> = rules.iter_mut().collect();
        for (_, r) in weir_alert::state::evaluate_batch(&mut all, &b, None, 0, &mut id) {
            r.unwrap();
        }
        at += batch_rows;
    }
    let batches: Vec<RecordBatch> = (0..points / batch_rows)
        .map(|i| make(warm + i * batch_rows))
        .collect();
    let started = Instant::now();
    let mut transitions = 0usize;
    for b in &batches {
        let mut all: Vec<&mut RuleState> = rules.iter_mut().collect();
        for (_, r) in weir_alert::state::evaluate_batch(&mut all, b, None, 0, &mut id) {
            transitions += r.unwrap().len();
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rows = (batches.len() * batch_rows) as f64;
    let per_core = rows / elapsed;
    println!(
        "{{\"rules\": {rules_n}, \"series\": {series}, \"points\": {rows}, \"batch_rows\": {batch_rows}, \
         \"seconds\": {elapsed:.3}, \"points_per_s_per_core\": {per_core:.0}, \
         \"cores_for_1m_points_per_s\": {:.2}, \"transitions\": {transitions}}}",
        1e6 / per_core
    );
}
