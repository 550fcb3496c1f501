//! Throughput figure, not a timed assertion:
//! `cargo test -p weir-ingest --release -- --ignored --nocapture decode_throughput`

use std::hint::black_box;
use std::time::Instant;

use super::*;

fn run(name: &str, format: Format, messages: &[Vec<u8>], rounds: usize) {
    let opts = DecodeOptions::default();
    let mut out = Vec::with_capacity(4096);
    let mut builder = PointBatchBuilder::with_capacity(8192);
    let (mut points, mut bytes) = (0usize, 0usize);
    let start = Instant::now();
    for _ in 0..rounds {
        for m in messages {
            points += decode(format, m, &opts, &mut out).unwrap();
            bytes += m.len();
            if out.len() >= 4096 {
                out.clear();
            }
        }
    }
    let decode_secs = start.elapsed().as_secs_f64();
    // Decode + Arrow batch building.
    let start = Instant::now();
    let mut built = 0usize;
    for _ in 0..rounds {
        for m in messages {
            out.clear();
            decode(format, m, &opts, &mut out).unwrap();
            builder.extend(&out, "bench");
            if builder.len() >= 8192 {
                built += black_box(builder.finish().unwrap()).num_rows();
            }
        }
    }
    built += builder.finish().unwrap().num_rows();
    let total_secs = start.elapsed().as_secs_f64();
    assert_eq!(built, points);
    println!(
        "{name:<14} decode: {:>6.2} M points/s ({:>6.1} MB/s) | decode+batch: {:>6.2} M points/s",
        points as f64 / decode_secs / 1e6,
        bytes as f64 / decode_secs / 1e6,
        points as f64 / total_secs / 1e6,
    );
}

#[test]
#[ignore = "throughput figure; run in release with --ignored --nocapture"]
fn decode_throughput() {
    let n = 2_000;
    let status: Vec<Vec<u8>> = (0..n)
        .map(|i| format!(r#"{{"device_id":"srv-{i:04}","timestamp":"2026-01-21T10:00:{:02}Z","cpu_usage":{}.2,"memory_usage":61.0,"disk_usage":70.1,"network_in":{i},"network_out":2048,"temperature":55.5,"status":"Online","location":"A1"}}"#, i % 60, i % 100).into_bytes())
        .collect();
    let points: Vec<Vec<u8>> = (0..n / 20)
        .map(|i| {
            let items: Vec<String> = (0..20)
                .map(|j| format!(r#"{{"device_id":"d{i}","metric_name":"m{j}","value":{}.5,"timestamp":{},"unit":"°C","quality":0}}"#, i + j, 1642780800000u64 + j))
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        })
        .collect();
    let lines: Vec<Vec<u8>> = (0..n / 20)
        .map(|i| {
            (0..20)
                .map(|j| format!("device_data,device_id=PLC-{i:03},tag_name=t{j},protocol=ModbusTcp,location=A1,unit=C value={}.6,raw_value=256,quality=1i,error_code=0i {}\n", i + j, 1642780800000000000u64 + j))
                .collect::<String>()
                .into_bytes()
        })
        .collect();
    let rounds = 50;
    run("json_status", Format::JsonStatus, &status, rounds);
    run("json_points", Format::JsonPoints, &points, rounds);
    run("line_protocol", Format::LineProtocol, &lines, rounds);
    run("auto (lp)", Format::Auto, &lines, rounds);
}
