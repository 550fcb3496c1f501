//! Nanoseconds per metrics call, the way Weir's crates make them, without a
//! recorder (`--http-listen off`: the facade is a no-op) and with the
//! Prometheus recorder installed (the default). Prints one line per case.
//!
//! - `handle.increment`: a counter handle made once per partition, as
//!   `IngestBuffer::push` uses (3 per message: messages, bytes, points);
//! - `counter!(labels).increment`: the macro with a registry lookup, as the
//!   per-commit and per-hot-chunk metrics use;
//! - `histogram.record`: a commit/query latency sample;
//! - `render`: one `/metrics` scrape of the series registered here.

use std::hint::black_box;
use std::time::Instant;

const N: u64 = 10_000_000;

/// The best of 5 runs (the machine is shared: the minimum is the cost).
fn per_call(name: &str, n: u64, f: impl Fn(u64)) -> f64 {
    f(0); // warm up (registration)
    let mut best = f64::MAX;
    for _ in 0..5 {
        let started = Instant::now();
        for i in 0..n {
            f(black_box(i));
        }
        best = best.min(started.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("{name:<58} {best:>8.2} ns/call");
    best
}

fn cases(mode: &str) {
    let handle = metrics::counter!("weir_ingest_messages_total", "source" => "kafka", "stream" => "t", "partition" => "0");
    per_call(&format!("[{mode}] handle.increment"), N, |_| {
        handle.increment(1)
    });
    per_call(
        &format!("[{mode}] counter!(3 labels).increment"),
        N / 10,
        |_| {
            metrics::counter!("weir_commits_total", "table" => "silver.points", "operation" => "append", "outcome" => "ok")
            .increment(1)
        },
    );
    per_call(
        &format!("[{mode}] counter!(owned String label).increment"),
        N / 10,
        |_| {
            metrics::counter!("weir_commit_rows_total", "table" => "silver.points".to_string())
                .increment(1)
        },
    );
    // What IngestBuffer does per message: plain adds, published per seal
    // (here every 1,000 messages; a seal holds far more at high rates).
    let pending = std::cell::Cell::new(0u64);
    per_call(
        &format!("[{mode}] pending add, publish per 1,000"),
        N,
        |i| {
            pending.set(pending.get() + 1);
            if i % 1000 == 999 {
                handle.increment(pending.replace(0));
            }
        },
    );
    let histogram = metrics::histogram!("weir_commit_duration_seconds", "table" => "silver.points");
    per_call(&format!("[{mode}] histogram.record"), N / 10, |i| {
        histogram.record((i % 1000) as f64 * 1e-4)
    });
    // Two threads on one handle (two writers would have their own).
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..N / 2 {
                    handle.increment(black_box(1));
                }
            });
        }
    });
    println!(
        "{:<58} {:>8.2} ns/call",
        format!("[{mode}] handle.increment, 2 threads, one counter"),
        started.elapsed().as_nanos() as f64 / N as f64
    );
}

fn main() {
    cases("no recorder");
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[0.001, 0.01, 0.1, 1.0, 10.0],
        )
        .expect("buckets")
        .install_recorder()
        .expect("recorder");
    cases("prometheus");
    // A scrape with 5,000 per-partition series x 4 ingest counters (a
    // 5,000-device Modbus source).
    for d in 0..5_000 {
        for name in [
            "weir_ingest_messages_total",
            "weir_ingest_points_total",
            "weir_ingest_bytes_total",
            "weir_ingest_dead_letters_total",
        ] {
            metrics::counter!(name, "source" => "modbus", "stream" => format!("plc-{d}"), "partition" => "0").increment(1);
        }
    }
    let started = Instant::now();
    let text = prometheus.render();
    println!(
        "{:<58} {:>8.2} ms ({} bytes)",
        "[prometheus] render /metrics, 20,000 series",
        started.elapsed().as_secs_f64() * 1e3,
        text.len()
    );
}
