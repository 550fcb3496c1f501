//! The hot tier: rows a streaming writer has decoded but not yet committed,
//! visible to queries in the same process at once.
//!
//! Each chunk remembers the source partition and offset of every row. A query
//! takes the chunks first and then loads the table, pins that snapshot and keeps
//! only hot rows at or past the snapshot's watermark for their partition
//! ([`visible_batches`]). Writers evict chunks only after the snapshot covering
//! them is committed, so every record is seen exactly once: either it was
//! committed before the table was loaded (then it is in the snapshot and
//! filtered out of the hot rows) or it was still in the hot tier when the chunks
//! were taken.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;

use weir_catalog::watermark::{Watermarks, snapshot_watermarks};

/// Uncommitted rows of one source partition, in offset order.
#[derive(Debug)]
pub struct HotChunk {
    /// Source kind, e.g. `kafka` (the watermark namespace).
    pub source: Arc<str>,
    /// Stream (topic) and partition.
    pub stream: Arc<str>,
    pub partition: i32,
    /// Source offset of each row of `batch`.
    pub offsets: Int64Array,
    /// Rows in the table's Arrow schema.
    pub batch: RecordBatch,
}

impl HotChunk {
    pub fn max_offset(&self) -> Option<i64> {
        (!self.offsets.is_empty()).then(|| self.offsets.value(self.offsets.len() - 1))
    }
    pub fn min_offset(&self) -> Option<i64> {
        (!self.offsets.is_empty()).then(|| self.offsets.value(0))
    }
    pub fn memory_size(&self) -> usize {
        self.batch.get_array_memory_size() + self.offsets.get_array_memory_size()
    }
}

/// A source partition this process's writer reads (a Kafka topic partition,
/// an MQTT topic, a Modbus device): where hot rows come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Source kind, e.g. `kafka`.
    pub source: Arc<str>,
    pub stream: Arc<str>,
    pub partition: i32,
}

/// Rows as a writer sealed them, for evaluators that watch new rows (alert
/// rules, the last-value index): see [`HotTier::subscribe`].
#[derive(Debug, Clone)]
pub struct FeedBatch {
    /// `namespace.table`.
    pub table: Arc<str>,
    pub batch: RecordBatch,
    /// The partition the rows were read from; `None` for rows a writer
    /// commits without a source partition (the demo, INSERT, bulk ingest).
    pub origin: Option<Origin>,
}

/// What the feed carries, in the order the writers did it.
#[derive(Debug, Clone)]
pub enum FeedEvent {
    /// Rows a writer sealed.
    Rows(FeedBatch),
    /// This process now reads the partition (Kafka assignment; MQTT topics
    /// and Modbus devices when their source starts): rows of its series
    /// may have been evaluated by another process until now.
    Acquired(Origin),
    /// This process no longer reads the partition (revoked in a Kafka
    /// rebalance, or reset after a fence refusal): another process may read
    /// its rows from now on.
    Released(Origin),
}

/// Sealed batches a subscriber may fall behind by before it misses some
/// (it is told how many: `broadcast::error::RecvError::Lagged`).
pub const FEED_CAPACITY: usize = 16_384;

/// Hot rows per table (`namespace.table`), shared by writers and the query engine.
#[derive(Debug)]
pub struct HotTier {
    tables: RwLock<HashMap<String, Vec<Arc<HotChunk>>>>,
    feed: tokio::sync::broadcast::Sender<FeedEvent>,
    /// Tables this process's writers committed to (see [`HotTier::committed`]).
    commits: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// Commit announcements a subscriber may fall behind by (it is then told
/// it lagged and treats every table as committed to).
pub const COMMITS_CAPACITY: usize = 1024;

impl Default for HotTier {
    fn default() -> Self {
        HotTier {
            tables: RwLock::default(),
            feed: tokio::sync::broadcast::channel(FEED_CAPACITY).0,
            commits: tokio::sync::broadcast::channel(COMMITS_CAPACITY).0,
        }
    }
}

impl HotTier {
    /// Every batch sealed from now on, by any writer of this process
    /// (through [`HotTier::push`] or [`HotTier::publish`]), and the
    /// partitions its writers acquire and release, in order.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<FeedEvent> {
        self.feed.subscribe()
    }

    /// Tells subscribers this process now reads `origin` (call before
    /// pushing its rows).
    pub fn acquired(&self, origin: Origin) {
        self.send(FeedEvent::Acquired(origin));
    }

    /// Tells subscribers this process no longer reads `origin`.
    pub fn released(&self, origin: Origin) {
        self.send(FeedEvent::Released(origin));
    }

    fn send(&self, event: FeedEvent) {
        if self.feed.receiver_count() > 0 {
            // No subscriber left between the check and the send is fine.
            let _ = self.feed.send(event);
        }
    }

    /// The names of the tables (`namespace.table`) this process's writers
    /// commit to from now on, one per commit, announced right after it
    /// (the last-value indexes follow the commits in the background).
    pub fn subscribe_commits(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.commits.subscribe()
    }

    /// Announces a commit to `table` ([`HotTier::subscribe_commits`]).
    /// [`HotTier::evict_committed`] does this itself.
    pub fn committed(&self, table: &str) {
        if self.commits.receiver_count() > 0 {
            // No subscriber left between the check and the send is fine.
            let _ = self.commits.send(table.into());
        }
    }

    /// Tells subscribers about rows a writer commits without holding them
    /// in the hot tier (the demo devices); `push` does this itself.
    pub fn publish(&self, table: &str, batch: &RecordBatch) {
        self.publish_from(table, batch, None);
    }

    fn publish_from(&self, table: &str, batch: &RecordBatch, origin: Option<Origin>) {
        if batch.num_rows() > 0 {
            self.send(FeedEvent::Rows(FeedBatch {
                table: table.into(),
                batch: batch.clone(),
                origin,
            }));
        }
    }

    pub fn push(&self, table: &str, chunk: Arc<HotChunk>) {
        if chunk.batch.num_rows() == 0 {
            return;
        }
        let origin = Origin {
            source: chunk.source.clone(),
            stream: chunk.stream.clone(),
            partition: chunk.partition,
        };
        self.publish_from(table, &chunk.batch, Some(origin));
        gauge_hot(table, std::slice::from_ref(&chunk), 1.0);
        self.write()
            .entry(table.to_string())
            .or_default()
            .push(chunk);
    }

    /// The table's hot chunks right now (take them *before* loading the table).
    pub fn chunks(&self, table: &str) -> Vec<Arc<HotChunk>> {
        self.read().get(table).cloned().unwrap_or_default()
    }

    /// Drops chunks fully below `committed` (call after the commit
    /// succeeded) and announces the commit.
    pub fn evict_committed(&self, table: &str, source: &str, committed: &Watermarks) {
        {
            let mut tables = self.write();
            if let Some(chunks) = tables.get_mut(table) {
                let gone = drain_where(chunks, |c| {
                    &*c.source == source
                        && match (committed.get(&c.stream, c.partition), c.max_offset()) {
                            (Some(wm), Some(max)) => max < wm,
                            _ => false,
                        }
                });
                gauge_hot(table, &gone, -1.0);
            }
        }
        self.committed(table);
    }

    /// Drops every chunk of one partition (revoked, or its rows were discarded).
    pub fn drop_partition(&self, table: &str, source: &str, stream: &str, partition: i32) {
        let mut tables = self.write();
        if let Some(chunks) = tables.get_mut(table) {
            let gone = drain_where(chunks, |c| {
                &*c.source == source && &*c.stream == stream && c.partition == partition
            });
            gauge_hot(table, &gone, -1.0);
        }
    }

    // A writer that panicked while holding the lock left whole chunks (the
    // map is only ever changed by one push or one drain): keep using it.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Vec<Arc<HotChunk>>>> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Vec<Arc<HotChunk>>>> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rows currently held for `table`.
    pub fn rows(&self, table: &str) -> usize {
        self.chunks(table).iter().map(|c| c.batch.num_rows()).sum()
    }
}

/// Removes and returns the chunks matching `gone` (keeping the others' order).
fn drain_where(
    chunks: &mut Vec<Arc<HotChunk>>,
    gone: impl Fn(&HotChunk) -> bool,
) -> Vec<Arc<HotChunk>> {
    let mut removed = Vec::new();
    chunks.retain(|c| {
        if gone(c) {
            removed.push(c.clone());
            false
        } else {
            true
        }
    });
    removed
}

/// Moves the `weir_hot_rows`/`weir_hot_bytes` gauges of `table` by the
/// chunks added (`sign` 1) or removed (-1).
fn gauge_hot(table: &str, chunks: &[Arc<HotChunk>], sign: f64) {
    if chunks.is_empty() {
        return;
    }
    let rows: usize = chunks.iter().map(|c| c.batch.num_rows()).sum();
    let bytes: usize = chunks.iter().map(|c| c.memory_size()).sum();
    ::metrics::gauge!(crate::metric_names::HOT_ROWS, "table" => table.to_string())
        .increment(sign * rows as f64);
    ::metrics::gauge!(crate::metric_names::HOT_BYTES, "table" => table.to_string())
        .increment(sign * bytes as f64);
}

/// The hot rows a query pinned to `snapshot_id` must add: rows at or past the
/// snapshot's watermark of their partition.
pub fn visible_batches(
    chunks: &[Arc<HotChunk>],
    metadata: &iceberg::spec::TableMetadata,
    snapshot_id: Option<i64>,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let mut marks: HashMap<&str, Watermarks> = HashMap::new();
    let mut out = Vec::new();
    for chunk in chunks {
        let wm = marks
            .entry(&chunk.source)
            .or_insert_with(|| match snapshot_id {
                Some(id) => snapshot_watermarks(metadata, id, &chunk.source),
                None => Watermarks::new(),
            });
        let Some(from) = wm.get(&chunk.stream, chunk.partition) else {
            out.push(chunk.batch.clone());
            continue;
        };
        match (chunk.min_offset(), chunk.max_offset()) {
            (Some(min), _) if min >= from => out.push(chunk.batch.clone()),
            (_, Some(max)) if max < from => {}
            _ => {
                let mask: BooleanArray =
                    chunk.offsets.iter().map(|o| o.map(|o| o >= from)).collect();
                out.push(filter_record_batch(&chunk.batch, &mask)?);
            }
        }
    }
    Ok(out)
}

/// Gathers small batches of one schema into batches of about `rows` rows
/// (batches of `rows / 2` or more pass through uncopied, arrow's
/// `BatchCoalescer`): a Modbus fleet seals one tiny hot chunk per device and
/// poll, which would otherwise cost per-batch overhead in every scan and a
/// gRPC message each on the hot-tier feed.
pub fn coalesce_batches(
    batches: Vec<RecordBatch>,
    rows: usize,
) -> Result<Vec<RecordBatch>, arrow::error::ArrowError> {
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    if batches.len() < 2 {
        return Ok(batches);
    }
    let mut coalescer = arrow::compute::BatchCoalescer::new(first.schema(), rows)
        .with_biggest_coalesce_batch_size(Some(rows / 2));
    let mut out = Vec::new();
    for batch in batches {
        coalescer.push_batch(batch)?;
        while let Some(done) = coalescer.next_completed_batch() {
            out.push(done);
        }
    }
    coalescer.finish_buffered_batch()?;
    while let Some(done) = coalescer.next_completed_batch() {
        out.push(done);
    }
    Ok(out)
}
