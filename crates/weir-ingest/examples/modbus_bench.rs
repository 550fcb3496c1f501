//! Scale benchmark of the Modbus poller (issue 4): N simulated devices polled
//! at 1 Hz; reports the poller's CPU use (cores) and missed polls.
//!
//! Two processes so the simulator's CPU is not counted against the poller:
//!
//! ```text
//! modbus_bench serve PORT                  # tokio-modbus server: every unit id
//!                                          # answers holding registers
//! modbus_bench poll PORT DEVICES SECONDS   # pollers + IngestBuffer (points,
//!                                          # Bronze rows, hot tier; no commits)
//! ```
//!
//! Each device is its own TCP connection with 10 tags (5 Float32 + 5 Int16,
//! one 15-register read per poll, values changing every second so no
//! deadband hides work). Run by `benches/modbus/run.sh`.

#![allow(clippy::too_many_lines)] // tests and benchmarks: long tables of cases are fine
#![allow(clippy::unwrap_used)] // benchmark example: a failure may panic

use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_modbus::prelude::*;
use tokio_modbus::server::tcp::Server;
use weir_hot::HotTier;
use weir_ingest::decode::Format;
use weir_ingest::modbus::plan::plan;
use weir_ingest::modbus::poller::{Poll, run_device};
use weir_ingest::modbus::registers::{DataType, WordOrder};
use weir_ingest::modbus::registry::{Device, Function, Tag};
use weir_ingest::modbus::source::{default_limits, push};
use weir_ingest::modbus::{PollCounters, PollerOptions};
use weir_ingest::writer::{IngestBuffer, Sinks};

struct Sim;

impl tokio_modbus::server::Service for Sim {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let second = (chrono::Utc::now().timestamp() % 1000) as u16;
        ready(match req {
            Request::ReadHoldingRegisters(addr, n) => Ok(Response::ReadHoldingRegisters(
                (0..n)
                    .map(|i| addr.wrapping_add(i).wrapping_add(second))
                    .collect(),
            )),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// utime + stime of this process, in seconds (from /proc/self/stat).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0 // USER_HZ is 100 on Linux
}

fn device(i: usize, port: u16) -> Device {
    let tags = (0..10u16)
        .map(|t| {
            let float = t < 5;
            Tag {
                name: format!("tag{t}"),
                function: Function::HoldingRegisters,
                address: if float { t * 2 } else { 10 + (t - 5) },
                data_type: if float {
                    DataType::Float32
                } else {
                    DataType::Int16
                },
                order: WordOrder::Abcd,
                unit: None,
                scaling: 0.1,
                offset: 0.0,
                min: None,
                max: None,
                deadband: Some(0.0),
                scan_rate: Duration::from_secs(1),
            }
        })
        .collect();
    Device {
        id: format!("dev{i:05}"),
        name: format!("dev{i:05}"),
        endpoint: format!("127.0.0.1:{port}"),
        unit_id: (i % 247 + 1) as u8,
        location: None,
        timeout: None,
        tags,
    }
}

async fn serve(port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("modbus sim listening on {}", listener.local_addr()?);
    let server = Server::new(listener);
    let on_connected = |stream, _addr| async move { Ok(Some((Sim, stream))) };
    server.serve(&on_connected, |_err| {}).await
}

async fn poll(port: u16, n: usize, seconds: u64) {
    let devices: Vec<Arc<Device>> = (0..n).map(|i| Arc::new(device(i, port))).collect();
    assert_eq!(plan(&devices[0].tags, 8)[0].reads.len(), 1);
    let counters = Arc::new(PollCounters::default());
    let (tx, mut rx) = mpsc::channel::<Poll>(16_384);
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = PollerOptions {
        timeout: Duration::from_secs(1),
        reconnect_min: Duration::from_millis(500),
        reconnect_max: Duration::from_secs(5),
        max_gap: 8,
    };
    for (i, d) in devices.iter().enumerate() {
        tokio::spawn(run_device(
            i,
            d.clone(),
            opts.clone(),
            counters.clone(),
            tx.clone(),
            stop_rx.clone(),
        ));
    }
    drop(tx);
    let silver = iceberg::TableIdent::from_strs(["silver", "points"]).unwrap();
    let mut buffer = IngestBuffer::new(
        "modbus",
        Sinks::new(&[silver]),
        Arc::new(HotTier::default()),
        default_limits(),
    );
    for d in &devices {
        buffer.assign(&d.id, 0, Format::JsonPoints, 0, vec![None, None, None]);
    }
    let headers: Vec<Vec<(String, String)>> = devices.iter().map(|_| Vec::new()).collect();
    let mut seq = vec![0i64; n];
    let warmup = Duration::from_secs(5);
    let started = Instant::now();
    let mut measured: Option<(Instant, f64, u64, u64, u64)> = None;
    let mut flushed_rows = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            p = rx.recv() => match p {
                Some(p) => push(&mut buffer, &devices, &headers, &mut seq, p),
                None => break,
            },
            _ = tick.tick() => {
                if buffer.seal_due() {
                    buffer.seal().unwrap();
                }
                if buffer.flush_due()
                    && let Some(f) = buffer.take_flush(0).unwrap()
                {
                    // No lakehouse here: the flush is built, then dropped.
                    flushed_rows += f.rows(0);
                    for c in &f.hot_chunks {
                        drop(c.clone());
                    }
                }
                if measured.is_none() && started.elapsed() >= warmup {
                    measured = Some((
                        Instant::now(),
                        cpu_seconds(),
                        counters.polls.load(Ordering::Relaxed),
                        counters.missed.load(Ordering::Relaxed),
                        counters.failures.load(Ordering::Relaxed),
                    ));
                }
                if let Some((t0, _, _, _, _)) = measured
                    && t0.elapsed() >= Duration::from_secs(seconds)
                {
                    let _ = stop_tx.send(true);
                }
            }
        }
    }
    let (t0, cpu0, polls0, missed0, fail0) = measured.expect("ran past the warm-up");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let polls = counters.polls.load(Ordering::Relaxed) - polls0;
    let missed = counters.missed.load(Ordering::Relaxed) - missed0;
    let failures = counters.failures.load(Ordering::Relaxed) - fail0;
    println!(
        "devices={n} seconds={wall:.1} polls={polls} expected_polls~{} polls_per_s={:.0} missed={missed} \
         failures={failures} points={} flushed_rows={flushed_rows} cpu_s={cpu:.2} cores={:.3}",
        (n as f64 * wall) as u64,
        polls as f64 / wall,
        buffer.stats.points,
        cpu / wall
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    match arg(1, "").as_str() {
        "serve" => serve(arg(2, "15020").parse().expect("port"))
            .await
            .expect("server"),
        "poll" => {
            poll(
                arg(2, "15020").parse().expect("port"),
                arg(3, "5000").parse().expect("devices"),
                arg(4, "30").parse().expect("seconds"),
            )
            .await
        }
        _ => eprintln!("usage: modbus_bench serve PORT | poll PORT DEVICES SECONDS"),
    }
}
