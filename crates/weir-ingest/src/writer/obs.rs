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
    pub(super) fn new(source: &str, stream: &str, partition: i32) -> Self {
        let l = labels(source, stream, partition);
        PartMetrics {
            pending: Pending::default(),
            messages: metrics::counter!(crate::metric_names::INGEST_MESSAGES_TOTAL, &l),
            points: metrics::counter!(crate::metric_names::INGEST_POINTS_TOTAL, &l),
            bytes: metrics::counter!(crate::metric_names::INGEST_BYTES_TOTAL, &l),
            dead_letters: metrics::counter!(crate::metric_names::INGEST_DEAD_LETTERS_TOTAL, &l),
        }
    }

    /// Adds the pending counts to the counters.
    pub(super) fn publish(&mut self) {
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
            metrics::gauge!(crate::metric_names::INGEST_COMMITTED_OFFSET, &l).set(next as f64);
        }
        let lag = metrics::gauge!(crate::metric_names::INGEST_LAG_SECONDS, &l);
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
                metrics::gauge!(crate::metric_names::INGEST_COMMITTED_OFFSET, &l).set(next as f64);
                metrics::gauge!(
                    crate::metric_names::INGEST_LAST_COMMIT_TIMESTAMP_SECONDS,
                    &l
                )
                .set(unix);
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
    metrics::counter!(crate::metric_names::INGEST_FLUSHES_TOTAL, "source" => source.to_string(), "outcome" => outcome)
        .increment(1);
    if let Some(s) = seconds {
        metrics::histogram!(crate::metric_names::INGEST_FLUSH_DURATION_SECONDS, "source" => source.to_string())
            .record(s);
    }
}

#[cfg(test)]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

    use super::*;
    use crate::decode::Format;
    use crate::writer::buffer::tests::{buffer, msg};

    /// Every series as (name, partition label or "") → value. The debugging
    /// recorder reports what changed since its previous snapshot.
    fn snapshot(snapshotter: &Snapshotter) -> HashMap<(String, String), f64> {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, v)| {
                let k = key.key();
                let part = k
                    .labels()
                    .find(|l| l.key() == "partition")
                    .map_or(String::new(), |l| l.value().to_string());
                let value = match v {
                    DebugValue::Counter(c) => c as f64,
                    DebugValue::Gauge(g) => g.into_inner(),
                    DebugValue::Histogram(h) => h.len() as f64,
                };
                ((k.name().to_string(), part), value)
            })
            .collect()
    }

    #[test]
    fn counts_are_published_at_each_seal_and_commits_set_the_offsets() {
        const GOOD: &[u8] = br#"{"device_id":"d","metric":"m","value":1,"ts":1700000000000}"#;
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            let (mut b, _hot) = buffer();
            b.assign("t", 0, Format::Auto, 0, vec![None, None, None]);
            b.assign("t", 1, Format::Auto, 0, vec![Some(5), Some(5), Some(5)]);
            b.push(msg(0, 0, GOOD), &[]);
            b.push(msg(0, 1, b"{bad"), &[]);
            b.push(msg(0, 0, GOOD), &[]); // redelivered
            b.push(msg(1, 5, GOOD), &[]);
            let before = snapshot(&snapshotter);
            let at = |m: &HashMap<(String, String), f64>, name: &str, p: &str| {
                m.get(&(name.to_string(), p.to_string())).copied()
            };
            assert_eq!(at(&before, "weir_ingest_messages_total", "0"), Some(0.0));
            // Resumed partitions show their committed offset at once.
            assert_eq!(at(&before, "weir_ingest_committed_offset", "1"), Some(5.0));
            // Skipped redeliveries are counted at once (rare).
            assert_eq!(
                at(&before, "weir_ingest_duplicates_skipped_total", ""),
                Some(1.0)
            );
            b.seal().unwrap();
            let sealed = snapshot(&snapshotter);
            let v = |name| at(&sealed, name, "0");
            assert_eq!(v("weir_ingest_messages_total"), Some(2.0));
            assert_eq!(v("weir_ingest_points_total"), Some(1.0));
            assert_eq!(v("weir_ingest_dead_letters_total"), Some(1.0));
            assert_eq!(v("weir_ingest_bytes_total"), Some((GOOD.len() + 4) as f64));
            assert_eq!(at(&sealed, "weir_ingest_messages_total", "1"), Some(1.0));

            let flush = b.take_flush(0).unwrap().unwrap();
            let raw = &flush.sinks.iter().find(|s| s.sink == 2).unwrap().claims;
            flush.clock.committed(raw);
            let committed = snapshot(&snapshotter);
            let v = |name, p| at(&committed, name, p);
            assert_eq!(v("weir_ingest_committed_offset", "0"), Some(2.0));
            assert_eq!(v("weir_ingest_committed_offset", "1"), Some(6.0));
            assert!(v("weir_ingest_last_commit_timestamp_seconds", "0").unwrap() > 1.7e9);
            assert_eq!(v("weir_ingest_lag_seconds", "0"), Some(0.0));
        });
    }
}
