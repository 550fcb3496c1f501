//! The writer's in-memory buffer: decoded rows per sink table, hot-tier
//! chunks, per-partition positions, and the flush that turns them into one
//! fenced commit per table.
//!
//! Source-agnostic: Kafka today, MQTT/Modbus (issue 4) feed the same buffer
//! with their own stream/partition/offset coordinates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use weir_catalog::watermark::Watermarks;
use weir_hot::{HotChunk, HotTier, Origin};

use super::bronze::{Coordinates, DeadLetterBuilder, RawBatchBuilder};
use super::obs::{CommitClock, PartMetrics};
use super::{Flush, SinkFlush, Sinks};
use crate::decode::{DecodeLimits, DecodeOptions, Format, Point, PointBatchBuilder, decode};

/// One source message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub stream: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// The source's own timestamp (e.g. the Kafka record time), µs.
    pub source_ts_micros: Option<i64>,
    pub received_micros: i64,
}

/// When to seal hot chunks and when to flush.
#[derive(Debug, Clone)]
pub struct BufferLimits {
    /// New rows become visible to queries at least this often.
    pub seal_interval: Duration,
    /// Flush when the oldest buffered row is this old...
    pub commit_interval: Duration,
    /// ...or when this many bytes are buffered.
    pub commit_bytes: usize,
    pub max_message_bytes: usize,
    /// What one message may decode to.
    pub decode: DecodeLimits,
}

struct Part {
    stream: Arc<str>,
    partition: i32,
    /// Next offset expected; older offsets are duplicates.
    next: Option<i64>,
    /// Per sink: rows below this offset are already in the table.
    skip: Vec<Option<i64>>,
    /// Per sink: the watermark this writer believes the table has.
    assumed: Vec<Option<i64>>,
    format: Format,
    silver_sink: usize,
    silver: PointBatchBuilder,
    offsets: Vec<i64>,
    touched: bool,
    label: String,
    metrics: PartMetrics,
}

/// Buffered rows of one writer.
pub struct IngestBuffer {
    source: Arc<str>,
    sinks: Sinks,
    hot: Arc<HotTier>,
    limits: BufferLimits,
    parts: HashMap<(Arc<str>, i32), Part>,
    raw: RawBatchBuilder,
    dead: DeadLetterBuilder,
    sealed: Vec<(usize, Arc<HotChunk>)>,
    scratch: Vec<Point>,
    silver_bytes: usize,
    /// Raw/dead rows finished early (at a revoke), flushed with the builders'.
    raw_done: Vec<RecordBatch>,
    dead_done: Vec<RecordBatch>,
    first_row_at: Option<Instant>,
    last_seal: Instant,
    pub stats: BufferStats,
    clock: Arc<CommitClock>,
    duplicates: metrics::Counter,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct BufferStats {
    pub messages: u64,
    pub points: u64,
    pub dead_letters: u64,
    pub duplicates_skipped: u64,
}

impl IngestBuffer {
    pub fn new(source: &str, sinks: Sinks, hot: Arc<HotTier>, limits: BufferLimits) -> Self {
        IngestBuffer {
            source: source.into(),
            sinks,
            hot,
            limits,
            parts: HashMap::new(),
            raw: RawBatchBuilder::new(),
            dead: DeadLetterBuilder::new(),
            sealed: Vec::new(),
            scratch: Vec::new(),
            silver_bytes: 0,
            raw_done: Vec::new(),
            dead_done: Vec::new(),
            first_row_at: None,
            last_seal: Instant::now(),
            stats: BufferStats::default(),
            clock: CommitClock::new(source),
            duplicates: metrics::counter!(crate::metric_names::INGEST_DUPLICATES_SKIPPED_TOTAL, "source" => source.to_string()),
        }
    }

    pub fn sinks(&self) -> &Sinks {
        &self.sinks
    }

    /// When each partition was last committed (lag metrics).
    pub fn clock(&self) -> &Arc<CommitClock> {
        &self.clock
    }

    /// Starts tracking a partition. `marks[s]` is sink `s`'s committed
    /// watermark; returns the offset to read from (the raw table's watermark,
    /// which is committed last).
    pub fn assign(
        &mut self,
        stream: &str,
        partition: i32,
        format: Format,
        silver_sink: usize,
        marks: Vec<Option<i64>>,
    ) -> Option<i64> {
        let start = marks[self.sinks.raw()];
        let stream: Arc<str> = stream.into();
        let label = format!("{}:{stream}/{partition}", self.source);
        let metrics = PartMetrics::new(&self.source, &stream, partition);
        self.clock.track(&stream, partition, start);
        self.hot.acquired(self.origin(&stream, partition));
        self.parts.insert(
            (stream.clone(), partition),
            Part {
                stream,
                partition,
                next: start,
                skip: marks.clone(),
                assumed: marks,
                format,
                silver_sink,
                silver: PointBatchBuilder::with_capacity(1024),
                offsets: Vec::new(),
                touched: false,
                label,
                metrics,
            },
        );
        start
    }

    /// Forgets a partition and its uncommitted rows (another writer owns it now).
    pub fn revoke(&mut self, stream: &str, partition: i32) {
        let key: (Arc<str>, i32) = (stream.into(), partition);
        self.clock.untrack(stream, partition);
        if let Some(mut part) = self.parts.remove(&key) {
            part.metrics.publish();
            let table = self.sinks.name(part.silver_sink).to_string();
            self.hot
                .drop_partition(&table, &self.source, stream, partition);
            self.hot.released(self.origin(stream, partition));
            self.sealed
                .retain(|(_, c)| !(&*c.stream == stream && c.partition == partition));
        }
        // Drop its raw and dead rows now: the partition may come back in the
        // next assignment, and only rows read after that belong to this writer.
        let purge = |done: &mut Vec<RecordBatch>| -> Result<(), arrow::error::ArrowError> {
            for batch in done.iter_mut() {
                *batch = without_partition(batch, stream, partition)?;
            }
            Ok(())
        };
        let raw = self.raw.finish();
        let dead = self.dead.finish();
        match (raw, dead) {
            (Ok(raw), Ok(dead)) => {
                self.raw_done.push(raw);
                self.dead_done.push(dead);
                if let Err(e) = purge(&mut self.raw_done).and_then(|_| purge(&mut self.dead_done)) {
                    tracing::error!(error = %e, "cannot drop rows of a revoked partition; dropping the buffer");
                    self.raw_done.clear();
                    self.dead_done.clear();
                }
            }
            _ => {
                self.raw_done.clear();
                self.dead_done.clear();
            }
        }
    }

    /// Drops everything uncommitted (after a fence refusal): the caller then
    /// re-assigns partitions from the tables' watermarks.
    pub fn reset(&mut self) -> Vec<(Arc<str>, i32)> {
        let parts: Vec<_> = self
            .parts
            .drain()
            .map(|(k, mut p)| {
                p.metrics.publish();
                (k, p.silver_sink)
            })
            .collect();
        for ((stream, partition), sink) in &parts {
            self.clock.untrack(stream, *partition);
            let table = self.sinks.name(*sink).to_string();
            self.hot
                .drop_partition(&table, &self.source, stream, *partition);
            self.hot.released(self.origin(stream, *partition));
        }
        self.raw = RawBatchBuilder::new();
        self.dead = DeadLetterBuilder::new();
        self.sealed.clear();
        self.silver_bytes = 0;
        self.raw_done.clear();
        self.dead_done.clear();
        self.first_row_at = None;
        parts.into_iter().map(|(k, _)| k).collect()
    }

    /// Announces every partition released (an ordered stop, after the
    /// last commit): nothing more is read from them here.
    pub fn release_all(&self) {
        for (stream, partition) in self.parts.keys() {
            self.hot.released(self.origin(stream, *partition));
        }
    }

    fn origin(&self, stream: &str, partition: i32) -> Origin {
        Origin {
            source: self.source.clone(),
            stream: stream.into(),
            partition,
        }
    }

    pub fn is_assigned(&self, stream: &str, partition: i32) -> bool {
        self.parts.contains_key(&(Arc::from(stream), partition))
    }

    /// Buffers one message: raw row, then points or a dead letter.
    pub fn push(&mut self, m: Message<'_>, headers: &[(String, String)]) {
        let raw_sink = self.sinks.raw();
        let dead_sink = self.sinks.dead();
        let key: (Arc<str>, i32) = (m.stream.into(), m.partition);
        let Some(part) = self.parts.get_mut(&key) else {
            return; // not (or no longer) ours
        };
        if part.next.is_some_and(|n| m.offset < n) {
            self.duplicates.increment(1);
            self.stats.duplicates_skipped += 1;
            return;
        }
        part.next = Some(m.offset + 1);
        part.touched = true;
        self.stats.messages += 1;
        part.metrics.pending.messages += 1;
        part.metrics.pending.bytes += m.payload.map_or(0, |p| p.len() as u64);
        self.first_row_at.get_or_insert_with(Instant::now);
        let at = Coordinates {
            source: &self.source,
            stream: m.stream,
            partition: m.partition,
            offset: m.offset,
            received_micros: m.received_micros,
        };
        let keep = |sink: usize| part.skip[sink].is_none_or(|s| m.offset >= s);
        if keep(raw_sink) {
            self.raw
                .push(at, m.key, headers, m.payload, part.format.as_str());
        }
        let opts = DecodeOptions {
            max_message_bytes: self.limits.max_message_bytes,
            default_ts_micros: Some(m.source_ts_micros.unwrap_or(m.received_micros)),
            device_id_from_key: m
                .key
                .and_then(|k| std::str::from_utf8(k).ok())
                .map(str::to_string),
            limits: self.limits.decode,
        };
        self.scratch.clear();
        let payload = m.payload.unwrap_or_default();
        match decode(part.format, payload, &opts, &mut self.scratch) {
            Ok(n) => {
                if keep(part.silver_sink) {
                    for p in &self.scratch {
                        part.silver.push(p, &part.label);
                        self.silver_bytes += 48 + p.device_id.len() + p.metric.len();
                    }
                    part.offsets.extend(std::iter::repeat_n(m.offset, n));
                    self.stats.points += n as u64;
                    part.metrics.pending.points += n as u64;
                }
            }
            Err(e) => {
                if keep(dead_sink) {
                    self.dead
                        .push(at, m.key, m.payload, "decode", &e.to_string());
                    self.stats.dead_letters += 1;
                    part.metrics.pending.dead_letters += 1;
                }
            }
        }
    }

    /// Buffers one message the source decoded itself (MQTT applies topic
    /// templates first): a raw row whose `topic` column is `topic`, then
    /// `points` (already deduplicated by the caller) or, on `Err(reason)`, a
    /// dead letter. Returns false when the message was not taken (partition
    /// not assigned, or an offset already seen).
    pub fn push_decoded(
        &mut self,
        m: Message<'_>,
        topic: &str,
        headers: &[(String, String)],
        content_type: &str,
        decoded: Result<&[Point], &str>,
    ) -> bool {
        let (raw_sink, dead_sink) = (self.sinks.raw(), self.sinks.dead());
        let key: (Arc<str>, i32) = (m.stream.into(), m.partition);
        let Some(part) = self.parts.get_mut(&key) else {
            return false;
        };
        if part.next.is_some_and(|n| m.offset < n) {
            self.duplicates.increment(1);
            self.stats.duplicates_skipped += 1;
            return false;
        }
        part.next = Some(m.offset + 1);
        part.touched = true;
        self.stats.messages += 1;
        part.metrics.pending.messages += 1;
        part.metrics.pending.bytes += m.payload.map_or(0, |p| p.len() as u64);
        self.first_row_at.get_or_insert_with(Instant::now);
        let at = Coordinates {
            source: &self.source,
            stream: topic,
            partition: m.partition,
            offset: m.offset,
            received_micros: m.received_micros,
        };
        let keep = |sink: usize| part.skip[sink].is_none_or(|s| m.offset >= s);
        if keep(raw_sink) {
            self.raw.push(at, m.key, headers, m.payload, content_type);
        }
        match decoded {
            Ok(points) => {
                if keep(part.silver_sink) {
                    for p in points {
                        part.silver.push(p, &part.label);
                        self.silver_bytes += 48 + p.device_id.len() + p.metric.len();
                    }
                    part.offsets
                        .extend(std::iter::repeat_n(m.offset, points.len()));
                    self.stats.points += points.len() as u64;
                    part.metrics.pending.points += points.len() as u64;
                }
            }
            Err(reason) => {
                if keep(dead_sink) {
                    self.dead.push(at, m.key, m.payload, "decode", reason);
                    self.stats.dead_letters += 1;
                    part.metrics.pending.dead_letters += 1;
                }
            }
        }
        true
    }

    pub fn seal_due(&self) -> bool {
        self.last_seal.elapsed() >= self.limits.seal_interval
    }

    pub fn flush_due(&self) -> bool {
        self.first_row_at
            .is_some_and(|t| t.elapsed() >= self.limits.commit_interval)
            || self.bytes() >= self.limits.commit_bytes
    }

    pub fn bytes(&self) -> usize {
        self.silver_bytes + self.raw.bytes()
    }

    /// Moves rows decoded so far into hot-tier chunks, visible to queries.
    pub fn seal(&mut self) -> Result<(), arrow::error::ArrowError> {
        self.last_seal = Instant::now();
        self.clock.refresh();
        for part in self.parts.values_mut() {
            part.metrics.publish();
            if part.silver.is_empty() {
                continue;
            }
            let batch = part.silver.finish()?;
            let offsets = Int64Array::from(std::mem::take(&mut part.offsets));
            let chunk = Arc::new(HotChunk {
                source: self.source.clone(),
                stream: part.stream.clone(),
                partition: part.partition,
                offsets,
                batch,
            });
            self.hot
                .push(self.sinks.name(part.silver_sink), chunk.clone());
            self.sealed.push((part.silver_sink, chunk));
        }
        Ok(())
    }

    /// Everything buffered as one flush (one fenced commit per sink that has
    /// rows), or `None` when nothing was read since the last flush.
    pub fn take_flush(&mut self, epoch: u64) -> Result<Option<Flush>, arrow::error::ArrowError> {
        self.seal()?;
        if !self.parts.values().any(|p| p.touched) {
            return Ok(None);
        }
        let n = self.sinks.len();
        let mut batches: Vec<Vec<RecordBatch>> = vec![Vec::new(); n];
        let mut chunks: Vec<Arc<HotChunk>> = Vec::new();
        for (sink, chunk) in self.sealed.drain(..) {
            batches[sink].push(chunk.batch.clone());
            chunks.push(chunk);
        }
        batches[self.sinks.dead()].append(&mut self.dead_done);
        if !self.dead.is_empty() {
            batches[self.sinks.dead()].push(self.dead.finish()?);
        }
        batches[self.sinks.raw()].append(&mut self.raw_done);
        if !self.raw.is_empty() {
            batches[self.sinks.raw()].push(self.raw.finish()?);
        }
        let mut sinks = Vec::new();
        // Commit order: silver tables, dead letters, raw last (raw's watermark
        // is where a restart resumes, so it must never run ahead of the others).
        for (sink, rows) in batches.into_iter().enumerate() {
            if rows.iter().all(|b| b.num_rows() == 0) {
                continue;
            }
            let mut claims = Watermarks::new();
            let mut expected = BTreeMap::new();
            for part in self.parts.values_mut().filter(|p| p.touched) {
                let Some(next) = part.next else { continue };
                if part.assumed[sink].is_some_and(|a| next <= a) {
                    continue;
                }
                claims.advance(&part.stream, part.partition, next);
                expected.insert(
                    (part.stream.to_string(), part.partition),
                    part.assumed[sink],
                );
                part.assumed[sink] = Some(next);
            }
            sinks.push(SinkFlush {
                sink,
                batches: rows,
                claims,
                expected,
            });
        }
        for part in self.parts.values_mut() {
            part.touched = false;
        }
        self.silver_bytes = 0;
        let gathered = self
            .first_row_at
            .take()
            .map_or(Duration::ZERO, |t| t.elapsed());
        Ok(Some(Flush {
            epoch,
            sinks,
            hot_chunks: chunks,
            clock: self.clock.clone(),
            gathered,
        }))
    }

    /// Raw-table positions of the partitions held (for group-offset hints).
    pub fn positions(&self) -> Vec<(Arc<str>, i32, i64)> {
        let raw = self.sinks.raw();
        self.parts
            .values()
            .filter_map(|p| Some((p.stream.clone(), p.partition, p.assumed[raw]?)))
            .collect()
    }

    /// Buffers one message whose points the source decoded itself (Modbus
    /// polls): its raw row (`content_type` names the payload's shape), then
    /// `points`. Like [`push`](Self::push), offsets below the partition's
    /// position are duplicates, and rows a table already holds are skipped.
    pub fn push_points(
        &mut self,
        m: Message<'_>,
        headers: &[(String, String)],
        content_type: &str,
        points: &[Point],
    ) {
        let topic = m.stream;
        self.push_decoded(m, topic, headers, content_type, Ok(points));
    }
}

/// `batch` without the rows of one partition (raw and dead batches carry
/// `topic` and `source_partition` columns).
fn without_partition(
    batch: &RecordBatch,
    stream: &str,
    partition: i32,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let topics = batch
        .column_by_name("topic")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>());
    let parts = batch
        .column_by_name("source_partition")
        .and_then(|c| c.as_any().downcast_ref::<Int32Array>());
    let (Some(topics), Some(parts)) = (topics, parts) else {
        return Ok(batch.clone());
    };
    let mask: BooleanArray = (0..batch.num_rows())
        .map(|i| Some(!(parts.value(i) == partition && topics.value(i) == stream)))
        .collect();
    filter_record_batch(batch, &mask)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use iceberg::TableIdent;

    /// A Kafka buffer for silver.points (also used by the metrics tests).
    pub(crate) fn buffer() -> (IngestBuffer, Arc<HotTier>) {
        let hot = Arc::new(HotTier::default());
        let sinks = Sinks::new(&[TableIdent::from_strs(["silver", "points"]).unwrap()]);
        let limits = BufferLimits {
            seal_interval: Duration::from_millis(100),
            commit_interval: Duration::from_secs(10),
            commit_bytes: 1 << 30,
            max_message_bytes: 1024,
            decode: DecodeLimits::default(),
        };
        (IngestBuffer::new("kafka", sinks, hot.clone(), limits), hot)
    }

    /// A message of stream `t` (also used by the metrics tests).
    pub(crate) fn msg(partition: i32, offset: i64, payload: &[u8]) -> Message<'_> {
        Message {
            stream: "t",
            partition,
            offset,
            key: None,
            payload: Some(payload),
            source_ts_micros: None,
            received_micros: 1_000_000,
        }
    }

    const GOOD: &[u8] = br#"{"device_id":"d","metric":"m","value":1,"ts":1700000000000}"#;

    #[test]
    fn flush_claims_positions_per_table_and_skips_committed_rows() {
        let (mut b, hot) = buffer();
        // silver already has offsets < 3 of partition 0 (crash between commits).
        assert_eq!(
            b.assign("t", 0, Format::Auto, 0, vec![Some(3), None, Some(1)]),
            Some(1)
        );
        assert_eq!(
            b.assign("t", 1, Format::Auto, 0, vec![None, None, None]),
            None
        );
        for o in 1..6 {
            b.push(msg(0, o, GOOD), &[]);
        }
        b.push(msg(0, 2, GOOD), &[]); // duplicate delivery
        b.push(msg(1, 0, b"{bad"), &[]);
        b.seal().unwrap();
        assert_eq!(hot.rows("silver.points"), 3, "offsets 3, 4, 5 are hot");
        let flush = b.take_flush(0).unwrap().unwrap();
        assert_eq!(b.stats.duplicates_skipped, 1);
        assert_eq!(flush.rows(0), 3);
        assert_eq!(flush.rows(1), 1);
        assert_eq!(flush.rows(2), 6);
        let silver = flush.sinks.iter().find(|s| s.sink == 0).unwrap();
        assert_eq!(silver.claims.get("t", 0), Some(6));
        assert_eq!(silver.claims.get("t", 1), Some(1));
        assert_eq!(silver.expected[&("t".to_string(), 0)], Some(3));
        assert_eq!(silver.expected[&("t".to_string(), 1)], None);
        let raw = flush.sinks.iter().find(|s| s.sink == 2).unwrap();
        assert_eq!(raw.expected[&("t".to_string(), 0)], Some(1));
        // The next flush expects what this one claimed.
        b.push(msg(0, 6, GOOD), &[]);
        let next = b.take_flush(1).unwrap().unwrap();
        let silver = next.sinks.iter().find(|s| s.sink == 0).unwrap();
        assert_eq!(silver.expected[&("t".to_string(), 0)], Some(6));
        assert!(b.take_flush(2).unwrap().is_none(), "nothing new, no flush");
    }

    #[test]
    fn revoked_partition_rows_are_dropped_even_if_it_comes_back() {
        let (mut b, hot) = buffer();
        b.assign("t", 0, Format::Auto, 0, vec![None, None, None]);
        b.assign("t", 1, Format::Auto, 0, vec![None, None, None]);
        b.push(msg(0, 0, GOOD), &[]);
        b.push(msg(1, 0, GOOD), &[]);
        b.push(msg(1, 1, b"nope nope"), &[]);
        b.seal().unwrap();
        b.revoke("t", 1);
        assert_eq!(hot.rows("silver.points"), 1);
        b.assign("t", 1, Format::Auto, 0, vec![Some(1), Some(2), Some(2)]);
        b.push(msg(1, 2, GOOD), &[]);
        let flush = b.take_flush(0).unwrap().unwrap();
        assert_eq!(
            flush.rows(0),
            2,
            "partition 0 offset 0 and partition 1 offset 2"
        );
        assert_eq!(
            flush.rows(1),
            0,
            "the dead letter of the revoked partition is gone"
        );
        assert_eq!(flush.rows(2), 2);
        let raw = flush.sinks.iter().find(|s| s.sink == 2).unwrap();
        assert_eq!(raw.claims.get("t", 1), Some(3));
        assert_eq!(raw.expected[&("t".to_string(), 1)], Some(2));
    }
}
