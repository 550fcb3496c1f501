//! Ingest metrics, through the `metrics` facade (a no-op unless the binary
//! installed a recorder). Per source partition (Kafka topic/partition, MQTT
//! broker, Modbus device): messages, points, bytes and dead letters read;
//! the committed offset, the time of the last commit covering it and the
//! lag since then; Kafka's high watermark lag. Counter handles are made once
//! per partition, so counting a message is an atomic add.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge};
use weir_catalog::watermark::Watermarks;

fn labels(source: &str, stream: &str, partition: i32) -> [(&'static str, String); 3] {
    [
        ("source", source.to_string()),
        ("stream", stream.to_string()),
        ("partition", partition.to_string()),
    ]
}

/// Counts of one source partition not yet added to its counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pending {
    pub messages: u64,
    pub points: u64,
    pub bytes: u64,
    pub dead_letters: u64,
}

/// The counters of one source partition. A message adds to plain fields
/// (`pending`); [`publish`](Self::publish) moves them to the counters at
/// every seal (each hot interval), since even an atomic add per message is
/// measurable at a million messages per second (`benches/observe`).
#[derive(Debug, Clone)]
pub(crate) struct PartMetrics {
    pub pending: Pending,
    messages: Counter,
    points: Counter,
    bytes: Counter,
    dead_letters: Counter,
}

impl PartMetrics {
    pub fn new(source: &str, stream: &str, partition: i32) -> Self {
        let l = labels(source, stream, partition);
        PartMetrics {
            pending: Pending::default(),
            messages: metrics::counter!("weir_ingest_messages_total", &l),
            points: metrics::counter!("weir_ingest_points_total", &l),
            bytes: metrics::counter!("weir_ingest_bytes_total", &l),
            dead_letters: metrics::counter!("weir_ingest_dead_letters_total", &l),
        }
    }

    /// Adds the pending counts to the counters.
    pub fn publish(&mut self) {
        let p = std::mem::take(&mut self.pending);
        for (counter, n) in [
            (&self.messages, p.messages),
            (&self.points, p.points),
            (&self.bytes, p.bytes),
            (&self.dead_letters, p.dead_letters),
        ] {
            if n > 0 {
                counter.increment(n);
            }
        }
    }
}

#[derive(Debug)]
struct Tracked {
    /// Last commit covering the partition (or when tracking started).
    since: Instant,
    committed: Option<i64>,
    lag: Gauge,
}

/// When each partition of one writer was last committed; shared by the
/// writer's buffer (which refreshes the lag gauges as it seals) and its
/// flushes (which record their commits).
#[derive(Debug)]
pub struct CommitClock {
    source: Arc<str>,
    parts: Mutex<HashMap<(Arc<str>, i32), Tracked>>,
}

impl CommitClock {
    pub fn new(source: &str) -> Arc<Self> {
        Arc::new(CommitClock {
            source: source.into(),
            parts: Mutex::new(HashMap::new()),
        })
    }

    /// Starts tracking a partition resumed at `committed`.
    pub(crate) fn track(&self, stream: &Arc<str>, partition: i32, committed: Option<i64>) {
        let l = labels(&self.source, stream, partition);
        if let Some(next) = committed {
            metrics::gauge!("weir_ingest_committed_offset", &l).set(next as f64);
        }
        let lag = metrics::gauge!("weir_ingest_lag_seconds", &l);
        lag.set(0.0);
        self.parts.lock().expect("commit clock lock").insert(
            (stream.clone(), partition),
            Tracked {
                since: Instant::now(),
                committed,
                lag,
            },
        );
    }

    /// Stops tracking a partition (revoked): its lag reads 0.
    pub(crate) fn untrack(&self, stream: &str, partition: i32) {
        let key: (Arc<str>, i32) = (stream.into(), partition);
        if let Some(t) = self.parts.lock().expect("commit clock lock").remove(&key) {
            t.lag.set(0.0);
        }
    }

    /// A flush committed every table up to `raw` (the raw table's claims).
    pub(crate) fn committed(&self, raw: &Watermarks) {
        let now = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let mut parts = self.parts.lock().expect("commit clock lock");
        for (stream, offsets) in raw.streams() {
            for (&partition, &next) in offsets {
                let l = labels(&self.source, stream, partition);
                metrics::gauge!("weir_ingest_committed_offset", &l).set(next as f64);
                metrics::gauge!("weir_ingest_last_commit_timestamp_seconds", &l).set(unix);
                let key: (Arc<str>, i32) = (stream.into(), partition);
                if let Some(t) = parts.get_mut(&key) {
                    t.since = now;
                    t.committed = Some(next);
                    t.lag.set(0.0);
                }
            }
        }
    }

    /// Sets every tracked partition's `weir_ingest_lag_seconds`.
    pub(crate) fn refresh(&self) {
        for t in self.parts.lock().expect("commit clock lock").values() {
            t.lag.set(t.since.elapsed().as_secs_f64());
        }
    }

    /// The committed (next) offset of every tracked partition.
    pub fn committed_offsets(&self) -> Vec<(Arc<str>, i32, Option<i64>)> {
        self.parts
            .lock()
            .expect("commit clock lock")
            .iter()
            .map(|((s, p), t)| (s.clone(), *p, t.committed))
            .collect()
    }
}

/// Records a flush's outcome (`committed`, `fenced`, `failed`) and duration.
pub(crate) fn record_flush(source: &str, outcome: &'static str, seconds: Option<f64>) {
    metrics::counter!("weir_ingest_flushes_total", "source" => source.to_string(), "outcome" => outcome)
        .increment(1);
    if let Some(s) = seconds {
        metrics::histogram!("weir_ingest_flush_duration_seconds", "source" => source.to_string())
            .record(s);
    }
}
