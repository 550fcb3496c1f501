//! One task per device: connects, polls its scan groups on schedule, turns
//! register words into points, reconnects with exponential backoff and
//! jitter, and reports status changes.
//!
//! Quality codes (the `quality` column of points from this source):
//! `0` good; `1` uncertain: value outside the tag's min/max (value kept);
//! `2` bad: the registers decode to NaN or infinity (value null);
//! `3` bad: the device answered with a Modbus exception (value null, the
//! exception in `labels.error`); `4` bad: communication failed (timeout,
//! connection reset; value null); `5` bad: device offline, not connected.
//! A bad-quality point is written when a tag's quality changes, like any
//! change past the deadband, so an offline device costs one point per tag.
//!
//! Device status is a point too: metric `device_status`, value 1 = Online,
//! 0 = Offline, 2 = Error, `labels.status` the name and `labels.error` the
//! reason, written whenever the status changes (first poll included).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_modbus::client::{Context, Reader};
use tokio_modbus::prelude::*;

use super::ModbusError;
use super::plan::{Read, ScanGroup, plan};
use super::registers::decode;
use super::registry::{Device, Function};
use crate::decode::Point;

pub const QUALITY_GOOD: i32 = 0;
pub const QUALITY_OUT_OF_RANGE: i32 = 1;
pub const QUALITY_NOT_FINITE: i32 = 2;
pub const QUALITY_EXCEPTION: i32 = 3;
pub const QUALITY_COMM_FAILURE: i32 = 4;
pub const QUALITY_OFFLINE: i32 = 5;

/// The metric of device status points.
pub const STATUS_METRIC: &str = "device_status";

/// Device status as recorded in `device_status` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Unknown,
    Online,
    Offline,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Unknown => "Unknown",
            Status::Online => "Online",
            Status::Offline => "Offline",
            Status::Error => "Error",
        }
    }
    fn value(self) -> f64 {
        match self {
            Status::Offline => 0.0,
            Status::Online => 1.0,
            Status::Error => 2.0,
            Status::Unknown => -1.0,
        }
    }
}

/// How pollers behave (shared by every device).
#[derive(Debug, Clone)]
pub struct PollerOptions {
    /// Request and connect timeout of devices without their own.
    pub timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Largest hole (in addresses) bridged when batching reads.
    pub max_gap: u16,
}

/// Live counters over all devices.
#[derive(Debug, Default)]
pub struct PollCounters {
    pub polls: AtomicU64,
    /// Polls that started a whole period or more after they were due.
    pub missed: AtomicU64,
    pub failures: AtomicU64,
    pub reconnects: AtomicU64,
}

/// The outcome of one read of a poll, kept raw for Bronze.
#[derive(Debug, Clone)]
pub struct ReadOutcome {
    pub function: Function,
    pub address: u16,
    pub count: u16,
    pub result: Result<Vec<u16>, String>,
}

/// One poll of one scan group of a device.
#[derive(Debug)]
pub struct Poll {
    /// Index of the device in the list given to the source.
    pub device: usize,
    pub ts_micros: i64,
    pub reads: Vec<ReadOutcome>,
    pub points: Vec<Point>,
}

#[derive(Clone, Copy)]
struct Last {
    value: Option<f64>,
    quality: i32,
}

struct DeviceState {
    device: Arc<Device>,
    index: usize,
    opts: PollerOptions,
    ctx: Option<Context>,
    status: Status,
    backoff: Duration,
    reconnect_at: Instant,
    last: Vec<Option<Last>>,
}

/// Polls one device until `shutdown`, sending each poll to `out`.
pub async fn run_device(
    index: usize,
    device: Arc<Device>,
    opts: PollerOptions,
    counters: Arc<PollCounters>,
    out: mpsc::Sender<Poll>,
    mut shutdown: watch::Receiver<bool>,
) {
    let groups = plan(&device.tags, opts.max_gap);
    if groups.is_empty() {
        return;
    }
    // Spread devices over the first period so 5,000 of them do not all
    // fire in the same millisecond.
    let start = Instant::now() + groups[0].period.mul_f64(rand::random_range(0.0..1.0f64));
    let mut due: Vec<Instant> = vec![start; groups.len()];
    let mut state = DeviceState {
        last: vec![None; device.tags.len()],
        device,
        index,
        backoff: opts.reconnect_min,
        reconnect_at: Instant::now(),
        opts,
        ctx: None,
        status: Status::Unknown,
    };
    loop {
        let (g, at) = due
            .iter()
            .enumerate()
            .min_by_key(|(_, at)| **at)
            .map(|(g, at)| (g, *at))
            .expect("at least one group");
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        let poll = state.poll(&groups[g], &counters).await;
        counters.polls.fetch_add(1, Ordering::Relaxed);
        if let Some(poll) = poll
            && out.send(poll).await.is_err()
        {
            break;
        }
        let period = groups[g].period;
        due[g] += period;
        let now = Instant::now();
        if now >= due[g] {
            let behind = ((now - due[g]).as_nanos() / period.as_nanos().max(1)) as u32 + 1;
            counters
                .missed
                .fetch_add(u64::from(behind), Ordering::Relaxed);
            due[g] += period * behind;
        }
    }
    if let Some(mut ctx) = state.ctx.take() {
        let _ = ctx.disconnect().await;
    }
}

enum Failure {
    Exception(String),
    Comm(String),
}

impl DeviceState {
    fn timeout(&self) -> Duration {
        self.device.timeout.unwrap_or(self.opts.timeout)
    }

    async fn connect(&mut self) -> Result<(), ModbusError> {
        let timeout = self.timeout();
        let endpoint = self.device.endpoint.clone();
        let unit = Slave(self.device.unit_id);
        let attempt = async move {
            let looked_up = tokio::net::lookup_host(endpoint.as_str())
                .await
                .map(|mut addrs| addrs.next());
            let addr = match looked_up {
                Ok(addr) => addr,
                Err(source) => return Err(ModbusError::Resolve { endpoint, source }),
            };
            let Some(addr) = addr else {
                return Err(ModbusError::NoAddress { endpoint });
            };
            tokio_modbus::client::tcp::connect_slave(addr, unit)
                .await
                .map_err(|source| ModbusError::Connect { endpoint, source })
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(ctx)) => {
                self.ctx = Some(ctx);
                self.backoff = self.opts.reconnect_min;
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ModbusError::ConnectTimeout {
                endpoint: self.device.endpoint.clone(),
                timeout,
            }),
        }
    }

    /// Drops the connection and schedules the next attempt (exponential
    /// backoff with ±20 % jitter).
    fn disconnect(&mut self) {
        self.ctx = None;
        let jitter = rand::random_range(0.8..1.2f64);
        self.reconnect_at = Instant::now() + self.backoff.mul_f64(jitter);
        self.backoff = (self.backoff * 2).min(self.opts.reconnect_max);
    }

    async fn read(&mut self, r: &Read) -> Result<Vec<u16>, Failure> {
        let timeout = self.timeout();
        let ctx = self.ctx.as_mut().expect("connected");
        let (a, n) = (r.address, r.count);
        let call = async {
            match r.function {
                Function::HoldingRegisters => ctx.read_holding_registers(a, n).await,
                Function::InputRegisters => ctx.read_input_registers(a, n).await,
                Function::Coils => ctx
                    .read_coils(a, n)
                    .await
                    .map(|r| r.map(|bits| bits.into_iter().map(u16::from).collect())),
                Function::DiscreteInputs => ctx
                    .read_discrete_inputs(a, n)
                    .await
                    .map(|r| r.map(|bits| bits.into_iter().map(u16::from).collect())),
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(Ok(words))) if words.len() >= n as usize => Ok(words),
            Ok(Ok(Ok(words))) => Err(Failure::Comm(format!(
                "short answer: {} of {n} values",
                words.len()
            ))),
            Ok(Ok(Err(exception))) => Err(Failure::Exception(format!(
                "Modbus exception {} ({exception})",
                u8::from(exception)
            ))),
            Ok(Err(e)) => Err(Failure::Comm(format!("request failed: {e}"))),
            Err(_) => Err(Failure::Comm(format!(
                "request timed out after {timeout:?}"
            ))),
        }
    }

    /// Polls one group; `None` when nothing new is worth a message.
    async fn poll(&mut self, group: &ScanGroup, counters: &PollCounters) -> Option<Poll> {
        let ts_micros = chrono::Utc::now().timestamp_micros();
        let mut points = Vec::new();
        let mut reads = Vec::with_capacity(group.reads.len());
        let mut status = Status::Online;
        let mut error: Option<String> = None;
        if self.ctx.is_none() {
            if Instant::now() < self.reconnect_at {
                for r in &group.reads {
                    self.bad(r, QUALITY_OFFLINE, None, ts_micros, &mut points);
                }
                return self.finish(ts_micros, reads, points, self.status_if_offline(), None);
            }
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.connect().await {
                let e = e.to_string();
                counters.failures.fetch_add(1, Ordering::Relaxed);
                self.disconnect();
                for r in &group.reads {
                    self.bad(r, QUALITY_OFFLINE, Some(&e), ts_micros, &mut points);
                }
                return self.finish(ts_micros, reads, points, Status::Offline, Some(e));
            }
        }
        for r in &group.reads {
            if self.ctx.is_none() {
                // An earlier read of this poll lost the connection.
                self.bad(
                    r,
                    QUALITY_COMM_FAILURE,
                    error.as_deref(),
                    ts_micros,
                    &mut points,
                );
                continue;
            }
            match self.read(r).await {
                Ok(words) => {
                    self.good(r, &words, ts_micros, &mut points);
                    reads.push(ReadOutcome {
                        function: r.function,
                        address: r.address,
                        count: r.count,
                        result: Ok(words),
                    });
                }
                Err(failure) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    let (quality, message) = match failure {
                        Failure::Exception(m) => {
                            if status == Status::Online {
                                status = Status::Error;
                            }
                            (QUALITY_EXCEPTION, m)
                        }
                        Failure::Comm(m) => {
                            // The transaction may still be answered late: never
                            // reuse the connection after a timeout.
                            status = Status::Offline;
                            self.disconnect();
                            (QUALITY_COMM_FAILURE, m)
                        }
                    };
                    self.bad(r, quality, Some(&message), ts_micros, &mut points);
                    reads.push(ReadOutcome {
                        function: r.function,
                        address: r.address,
                        count: r.count,
                        result: Err(message.clone()),
                    });
                    error.get_or_insert(message);
                }
            }
        }
        self.finish(ts_micros, reads, points, status, error)
    }

    fn status_if_offline(&self) -> Status {
        if self.status == Status::Unknown {
            Status::Offline
        } else {
            self.status
        }
    }

    fn finish(
        &mut self,
        ts_micros: i64,
        reads: Vec<ReadOutcome>,
        mut points: Vec<Point>,
        status: Status,
        error: Option<String>,
    ) -> Option<Poll> {
        if status != self.status {
            let d = &self.device;
            tracing::info!(device = %d.id, from = self.status.as_str(), to = status.as_str(), error = error.as_deref().unwrap_or(""), "device status");
            let mut labels = vec![
                ("status".to_string(), status.as_str().to_string()),
                ("endpoint".to_string(), d.endpoint.clone()),
            ];
            if let Some(e) = &error {
                labels.push(("error".to_string(), e.clone()));
            }
            points.push(Point {
                ts_micros,
                device_id: d.id.clone(),
                metric: STATUS_METRIC.to_string(),
                value: Some(status.value()),
                quality: Some(QUALITY_GOOD),
                unit: None,
                labels,
            });
            self.status = status;
        }
        if points.is_empty() && reads.iter().all(|r| r.result.is_err()) {
            return None;
        }
        Some(Poll {
            device: self.index,
            ts_micros,
            reads,
            points,
        })
    }

    /// Points for the tags of a read that came back.
    fn good(&mut self, r: &Read, words: &[u16], ts_micros: i64, out: &mut Vec<Point>) {
        for &i in &r.tags {
            let tag = &self.device.tags[i];
            let at = (tag.address - r.address) as usize;
            let Some(raw) = decode(&words[at..], tag.data_type, tag.order) else {
                continue; // cannot happen: reads cover every tag's span
            };
            let v = raw * tag.scaling + tag.offset;
            let (value, quality) = if !v.is_finite() {
                (None, QUALITY_NOT_FINITE)
            } else if tag.min.is_some_and(|m| v < m) || tag.max.is_some_and(|m| v > m) {
                (Some(v), QUALITY_OUT_OF_RANGE)
            } else {
                (Some(v), QUALITY_GOOD)
            };
            if let Some(p) = self.changed(i, value, quality, None, ts_micros) {
                out.push(p);
            }
        }
    }

    /// Bad-quality points (value null) for the tags of a read that failed.
    fn bad(&mut self, r: &Read, quality: i32, error: Option<&str>, ts: i64, out: &mut Vec<Point>) {
        for &i in &r.tags {
            if let Some(p) = self.changed(i, None, quality, error, ts) {
                out.push(p);
            }
        }
    }

    /// The point to write for tag `i`, or `None` when the deadband (or an
    /// unchanged bad quality) suppresses it.
    fn changed(
        &mut self,
        i: usize,
        value: Option<f64>,
        quality: i32,
        error: Option<&str>,
        ts_micros: i64,
    ) -> Option<Point> {
        let tag = &self.device.tags[i];
        if let Some(last) = self.last[i]
            && last.quality == quality
        {
            match (last.value, value, tag.deadband) {
                (None, None, _) => return None,
                (Some(a), Some(b), Some(db)) if (b - a).abs() <= db => {
                    return None;
                }
                _ => {}
            }
        }
        self.last[i] = Some(Last { value, quality });
        Some(Point {
            ts_micros,
            device_id: self.device.id.clone(),
            metric: tag.name.clone(),
            value,
            quality: Some(quality),
            unit: tag.unit.clone(),
            labels: error
                .map(|e| vec![("error".to_string(), e.to_string())])
                .unwrap_or_default(),
        })
    }
}
