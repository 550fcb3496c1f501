//! The streaming writer: buffered rows → one fenced Iceberg append per table,
//! with the source watermark in each snapshot summary.
//!
//! Exactly once (docs/design.md, "Exactly-once and concurrent commits"):
//! - every commit claims, per source partition, the next offset it covers, and
//!   is fenced on the table still holding the watermark the writer last saw
//!   for those partitions (checked inside the catalog's compare-and-swap), so
//!   two writers can never both commit the same offsets;
//! - tables are committed silver → dead letters → raw; a restart resumes from
//!   the raw table's watermark and skips, per table, rows below that table's
//!   own watermark, so a crash between two commits neither loses nor repeats;
//! - a refused commit makes the writer drop its buffer and resume from the
//!   tables' watermarks (its written files become orphans, removed by age).

pub mod bronze;
pub mod buffer;
mod obs;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use iceberg::TableIdent;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use uuid::Uuid;
use weir_catalog::retry::{Backoff, Retry};
use weir_catalog::watermark::{Watermarks, table_watermarks};
use weir_catalog::{
    AppendOptions, CatalogError, FenceCheck, Lakehouse, append_data_files, find_commit,
    write_data_files, write_data_files_named,
};
use weir_hot::{HotChunk, HotTier};

pub use buffer::{BufferLimits, BufferStats, IngestBuffer, Message};
pub use obs::CommitClock;

/// The tables one writer feeds, in commit order: silver tables first, then
/// `bronze.dead_letters`, then `bronze.raw_messages`.
#[derive(Debug, Clone)]
pub struct Sinks {
    tables: Vec<(TableIdent, String)>,
}

impl Sinks {
    /// `silver` are the distinct Silver tables routes write to.
    pub fn new(silver: &[TableIdent]) -> Self {
        let mut tables: Vec<(TableIdent, String)> =
            silver.iter().map(|t| (t.clone(), t.to_string())).collect();
        for (ns, name) in [("bronze", "dead_letters"), ("bronze", "raw_messages")] {
            let ident = TableIdent::from_strs([ns, name]).expect("static table name");
            tables.push((ident.clone(), ident.to_string()));
        }
        Sinks { tables }
    }
    pub fn len(&self) -> usize {
        self.tables.len()
    }
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
    pub fn ident(&self, sink: usize) -> &TableIdent {
        &self.tables[sink].0
    }
    pub fn name(&self, sink: usize) -> &str {
        &self.tables[sink].1
    }
    pub fn dead(&self) -> usize {
        self.tables.len() - 2
    }
    pub fn raw(&self) -> usize {
        self.tables.len() - 1
    }
    pub fn silver_index(&self, ident: &TableIdent) -> Option<usize> {
        self.tables[..self.dead()]
            .iter()
            .position(|(t, _)| t == ident)
    }

    /// Each table's committed watermarks for `source` (one catalog load per table).
    pub async fn load_watermarks(
        &self,
        lakehouse: &Lakehouse,
        source: &str,
    ) -> Result<Vec<Watermarks>, CatalogError> {
        let catalog = lakehouse.catalog();
        let mut out = Vec::with_capacity(self.len());
        for (ident, name) in &self.tables {
            let table = catalog
                .load_table(ident)
                .await
                .map_err(|e| CatalogError::iceberg(name, e))?;
            out.push(table_watermarks(&table, source));
        }
        Ok(out)
    }
}

/// The rows of one table in a flush and the positions they cover.
#[derive(Debug)]
pub struct SinkFlush {
    pub sink: usize,
    pub batches: Vec<RecordBatch>,
    /// Per partition: the next offset after this commit.
    pub claims: Watermarks,
    /// Per partition: the watermark the table must still hold (fence).
    pub expected: BTreeMap<(String, i32), Option<i64>>,
}

/// Everything buffered at one point, committed table by table.
#[derive(Debug)]
pub struct Flush {
    /// Writer epoch; flushes from before a reset are discarded.
    pub epoch: u64,
    pub sinks: Vec<SinkFlush>,
    /// Hot-tier chunks this flush commits (evicted once committed).
    pub hot_chunks: Vec<Arc<HotChunk>>,
    /// The writer's commit clock (lag metrics), told when the flush lands.
    pub clock: Arc<CommitClock>,
    /// From the first row buffered to the flush: with the rows, the rate
    /// they arrived at (whether sorting them pays, see [`sorts_on_ingest`]).
    pub gathered: Duration,
}

impl Flush {
    pub fn rows(&self, sink: usize) -> usize {
        self.sinks
            .iter()
            .filter(|s| s.sink == sink)
            .flat_map(|s| &s.batches)
            .map(RecordBatch::num_rows)
            .sum()
    }
}

/// How a flush ended.
#[derive(Debug)]
pub enum FlushOutcome {
    /// All tables committed; raw watermark positions for group-offset hints.
    Committed { raw: Watermarks, elapsed: Duration },
    /// Another writer committed some of these offsets first: reset and resume.
    Fenced { table: String, reason: String },
}

/// Commits one flush: a fenced append per table, in sink order (recording
/// the outcome and duration in the ingest metrics).
///
/// A retry (same `written` files) skips the tables an earlier attempt
/// already committed: each table's commit id is derived from its files, so
/// it is found in the table's history. Without that, an error on a later
/// table (e.g. the catalog's conflict retries exhausted by several writers
/// committing at once) made every retry fail on "Cannot add files that are
/// already referenced by table" until the writer gave up.
pub async fn commit_flush(
    lakehouse: &Lakehouse,
    hot: &HotTier,
    source: &str,
    writer_id: &str,
    sinks: &Sinks,
    flush: &Flush,
    written: &mut Vec<Vec<DataFile>>,
) -> Result<FlushOutcome, CatalogError> {
    let span = tracing::debug_span!("flush", source, epoch = flush.epoch);
    let result = tracing::Instrument::instrument(
        commit_flush_inner(lakehouse, hot, source, writer_id, sinks, flush, written),
        span,
    )
    .await;
    match &result {
        Ok(FlushOutcome::Committed { raw, elapsed }) => {
            flush.clock.committed(raw);
            obs::record_flush(source, "committed", Some(elapsed.as_secs_f64()));
        }
        Ok(FlushOutcome::Fenced { .. }) => obs::record_flush(source, "fenced", None),
        Err(_) => obs::record_flush(source, "failed", None),
    }
    result
}

/// [`commit_flush`] until it commits, is fenced, or the flush backoff
/// (`weir_catalog::retry::Backoff::FLUSH`, storage or catalog down) is spent;
/// the files written by the first attempt are committed by every retry.
/// Every source commits its flushes through this.
pub async fn commit_flush_with_retry(
    lakehouse: &Lakehouse,
    hot: &HotTier,
    source: &'static str,
    writer_id: &str,
    sinks: &Sinks,
    flush: &Flush,
) -> Result<FlushOutcome, CatalogError> {
    let mut retry = Retry::new("flush", source, Backoff::FLUSH);
    let mut written = Vec::new();
    loop {
        match commit_flush(
            lakehouse,
            hot,
            source,
            writer_id,
            sinks,
            flush,
            &mut written,
        )
        .await
        {
            Err(e) if retry.again(&e).await => continue,
            other => return other,
        }
    }
}

async fn commit_flush_inner(
    lakehouse: &Lakehouse,
    hot: &HotTier,
    source: &str,
    writer_id: &str,
    sinks: &Sinks,
    flush: &Flush,
    written: &mut Vec<Vec<DataFile>>,
) -> Result<FlushOutcome, CatalogError> {
    let started = Instant::now();
    let catalog = lakehouse.catalog();
    let mut raw = Watermarks::new();
    let mut tables = Vec::with_capacity(flush.sinks.len());
    for part in &flush.sinks {
        let name = sinks.name(part.sink);
        tables.push(
            catalog
                .load_table(sinks.ident(part.sink))
                .await
                .map_err(|e| CatalogError::iceberg(name, e))?,
        );
    }
    // Parquet encoding is most of a flush's work: every table's files are
    // written at once (a task each, so all cores share it), then committed
    // one by one in sink order (silver → dead letters → raw), the order
    // exactly-once relies on. A retried flush commits the files written by
    // its first attempt (`written`) instead of writing them again; files of a
    // refused flush become orphans.
    if written.len() != flush.sinks.len() {
        *written = write_flush_files(sinks, flush, &tables).await?;
    }
    for ((part, table), files) in flush.sinks.iter().zip(tables).zip(written.iter()) {
        let name = sinks.name(part.sink);
        let commit_id = files_commit_id(files);
        if let Some(id) = commit_id
            && find_commit(&table, &id).is_some()
        {
            // An earlier attempt of this flush committed this table.
            tracing::debug!(table = name, "committed by an earlier attempt");
            if part.sink < sinks.dead() {
                let marks = table_watermarks(&table, source);
                hot.evict_committed(name, source, &marks);
            }
            if part.sink == sinks.raw() {
                raw = part.claims.clone();
            }
            continue;
        }
        let expected = part.expected.clone();
        let fence_source = source.to_string();
        let fence: FenceCheck = Arc::new(move |current| {
            let marks = table_watermarks(current, &fence_source);
            for ((stream, partition), want) in &expected {
                let have = marks.get(stream, *partition);
                if have != *want {
                    return Err(format!(
                        "{stream}[{partition}] is at {have:?}, this writer expected {want:?}"
                    ));
                }
            }
            Ok(())
        });
        let mut props: HashMap<String, String> =
            part.claims.to_properties(source).into_iter().collect();
        props.insert("weir.writer".into(), writer_id.to_string());
        props.insert("weir.writer.epoch".into(), flush.epoch.to_string());
        let opts = AppendOptions {
            snapshot_properties: props,
            commit_id: Some(commit_id.unwrap_or_else(Uuid::now_v7)),
            fence: Some(fence),
        };
        match append_data_files(lakehouse, &table, files.clone(), opts).await {
            Ok(outcome) => {
                if part.sink < sinks.dead() {
                    let marks = table_watermarks(&outcome.table, source);
                    hot.evict_committed(name, source, &marks);
                } else {
                    hot.committed(name);
                }
                if part.sink == sinks.raw() {
                    raw = part.claims.clone();
                }
            }
            Err(CatalogError::Fenced { table, reason }) => {
                return Ok(FlushOutcome::Fenced { table, reason });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(FlushOutcome::Committed {
        raw,
        elapsed: started.elapsed(),
    })
}

/// The commit id of appending `files`: the same for every attempt with the
/// same files (their paths are unique), so a retry recognises its own commit.
fn files_commit_id(files: &[DataFile]) -> Option<Uuid> {
    use std::hash::{Hash, Hasher};
    let first = files.first()?;
    let mut halves = [0u64; 2];
    for (salt, half) in halves.iter_mut().enumerate() {
        // SipHash with fixed keys: stable within the process (retries run in it).
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (salt, first.file_path(), files.len()).hash(&mut h);
        *half = h.finish();
    }
    Some(Uuid::from_u128(
        (u128::from(halves[0]) << 64) | u128::from(halves[1]),
    ))
}

/// Table property: whether a Silver table's flushes are written in its sort
/// order — `true`, `false`, or unset / `auto` (below
/// [`SORT_MAX_ROWS_PER_SECOND`]).
pub const SORT_ON_INGEST: &str = "weir.ingest.sort";

/// Under `auto`, flushes whose rows arrived faster than this keep arrival
/// order (compaction sorts them later), as do ones of more rows than this
/// per second they took to gather.
pub const SORT_MAX_ROWS_PER_SECOND: usize = 500_000;

/// Flushes this small are sorted whatever their rate (it costs little).
const SORT_ALWAYS_ROWS: usize = 100_000;

/// Whether a flush of `rows` Silver rows gathered over `gathered` is
/// written in `table`'s sort order.
///
/// Until compaction rewrites them (every 10 minutes by default) the newest
/// files are what dashboards read; in arrival order every page holds every
/// device, so "100 devices over the last 15 minutes" decoded all 180 M rows
/// of them at 200,000 points/s (the 1-hour soak: p50 3.7 s). Sorted, page
/// statistics skip the other devices' pages, and compaction merges sorted
/// files as streams instead of sorting them again. The sort costs CPU: ~0.55
/// µs per JSON point (`benches/ingest.py`, 10 M points at 1.4 M points/s:
/// Weir CPU 7.6 → 13.1 s, throughput −26 %), i.e. ~0.11 cores at the
/// scenario's 200,000 points/s but a quarter of the peak rate. So by default
/// only flushes that arrived below [`SORT_MAX_ROWS_PER_SECOND`] are sorted:
/// steady streams get sorted files, catch-up and bulk bursts keep the peak
/// rate. Bronze keeps arrival order (replayed in it; nothing filters it by
/// device).
fn sorts_on_ingest(table: &Table, rows: usize, gathered: Duration) -> bool {
    if table.metadata().default_sort_order().fields.is_empty() {
        return false;
    }
    let setting = table.metadata().properties().get(SORT_ON_INGEST);
    match setting.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        Some("false") => false,
        Some("true") => true,
        _ => {
            let budget = SORT_MAX_ROWS_PER_SECOND as f64 * gathered.as_secs_f64();
            rows <= SORT_ALWAYS_ROWS || (rows as f64) <= budget
        }
    }
}

/// Writes every sink's data files of `flush` at once, one task per table.
async fn write_flush_files(
    sinks: &Sinks,
    flush: &Flush,
    tables: &[Table],
) -> Result<Vec<Vec<DataFile>>, CatalogError> {
    let writes: Vec<_> = flush
        .sinks
        .iter()
        .zip(tables)
        .map(|(part, table)| {
            let (table, batches) = (table.clone(), part.batches.clone());
            let rows = part.batches.iter().map(RecordBatch::num_rows).sum();
            let sorted = part.sink < sinks.dead() && sorts_on_ingest(&table, rows, flush.gathered);
            tokio::spawn(async move {
                if sorted {
                    write_data_files(&table, &batches, None).await
                } else {
                    write_data_files_named(&table, &batches, None, "").await
                }
            })
        })
        .collect();
    let mut written = Vec::with_capacity(writes.len());
    for (write, part) in writes.into_iter().zip(&flush.sinks) {
        let name = sinks.name(part.sink).to_string();
        let files = write
            .await
            .map_err(|e| CatalogError::Write {
                table: name.clone(),
                source: Box::new(iceberg::Error::new(
                    iceberg::ErrorKind::Unexpected,
                    format!("the writer task failed: {e}"),
                )),
            })?
            .map_err(|source| CatalogError::Write {
                table: name,
                source: Box::new(source),
            })?;
        written.push(files);
    }
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::writer::buffer::tests::{buffer, msg};
    use weir_catalog::{LakehouseOptions, builtin_specs};

    /// An embedded lakehouse in `dir` with the declared tables.
    pub(crate) async fn lakehouse(dir: &std::path::Path) -> Lakehouse {
        let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.to_path_buf()))
            .await
            .unwrap();
        lakehouse
            .ensure_tables(&builtin_specs().unwrap())
            .await
            .unwrap();
        lakehouse
    }

    fn records(table: &Table) -> u64 {
        table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-records"))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// A buffer writing silver.points, partition 0 of stream `t` assigned.
    fn assigned_buffer() -> (IngestBuffer, Sinks) {
        let (mut b, _) = buffer();
        let sinks = Sinks::new(&[TableIdent::from_strs(["silver", "points"]).unwrap()]);
        b.assign(
            "t",
            0,
            crate::decode::Format::Auto,
            0,
            vec![None, None, None],
        );
        (b, sinks)
    }

    /// A retried flush whose first attempt committed silver.points and then
    /// failed on a later table (catalog conflict retries exhausted by other
    /// writers) commits the rest, not silver's files a second time.
    #[tokio::test]
    async fn a_retry_skips_the_tables_an_earlier_attempt_committed() {
        let dir = std::env::temp_dir().join(format!("weir-retry-{}", Uuid::now_v7()));
        let lakehouse = lakehouse(&dir).await;
        let (mut b, sinks) = assigned_buffer();
        for o in 0..3 {
            let payload =
                format!(r#"{{"device_id":"d","metric":"m","value":{o},"ts":1700000000000}}"#);
            b.push(msg(0, o, payload.as_bytes()), &[]);
        }
        let flush = b.take_flush(0).unwrap().unwrap();
        let catalog = lakehouse.catalog();
        let load = |sink: usize| {
            let catalog = catalog.clone();
            let ident = sinks.ident(sink).clone();
            async move { catalog.load_table(&ident).await.unwrap() }
        };
        let mut tables = Vec::new();
        for part in &flush.sinks {
            tables.push(load(part.sink).await);
        }
        let mut written = write_flush_files(&sinks, &flush, &tables).await.unwrap();
        // The first attempt: silver commits, then the attempt fails.
        let silver = flush.sinks.iter().position(|p| p.sink == 0).unwrap();
        let opts = AppendOptions {
            snapshot_properties: HashMap::new(),
            commit_id: files_commit_id(&written[silver]),
            fence: None,
        };
        append_data_files(&lakehouse, &tables[silver], written[silver].clone(), opts)
            .await
            .unwrap();
        // The retry with the same files.
        let outcome = commit_flush(
            &lakehouse,
            &HotTier::default(),
            "kafka",
            "w",
            &sinks,
            &flush,
            &mut written,
        )
        .await
        .unwrap();
        assert!(
            matches!(outcome, FlushOutcome::Committed { .. }),
            "{outcome:?}"
        );
        assert_eq!(records(&load(0).await), 3, "silver.points once");
        assert_eq!(records(&load(sinks.raw()).await), 3, "bronze.raw_messages");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Silver flushes are written in the table's sort order when they
    /// arrived at a steady rate, in arrival order when they came in a burst
    /// (or the table says `weir.ingest.sort = false`).
    #[tokio::test]
    async fn steady_flushes_are_sorted_bursts_keep_arrival_order() {
        let dir = std::env::temp_dir().join(format!("weir-sorted-flush-{}", Uuid::now_v7()));
        let lakehouse = lakehouse(&dir).await;
        let catalog = lakehouse.catalog();
        let silver = catalog
            .load_table(&TableIdent::from_strs(["silver", "points"]).unwrap())
            .await
            .unwrap();
        let second = Duration::from_secs(1);
        assert!(
            sorts_on_ingest(&silver, 2_000_000, 10 * second),
            "200,000 rows/s"
        );
        assert!(!sorts_on_ingest(&silver, 2_000_000, second), "2 M rows/s");
        assert!(
            sorts_on_ingest(&silver, 50_000, Duration::ZERO),
            "a small flush"
        );

        // Devices arrive z..a; the file holds them a..z.
        let (mut b, sinks) = assigned_buffer();
        for (o, d) in ["z", "m", "a", "q"].iter().enumerate() {
            let payload =
                format!(r#"{{"device_id":"{d}","metric":"m","value":1,"ts":1700000000000}}"#);
            b.push(msg(0, o as i64, payload.as_bytes()), &[]);
        }
        let flush = b.take_flush(0).unwrap().unwrap();
        let mut tables = Vec::new();
        for part in &flush.sinks {
            tables.push(catalog.load_table(sinks.ident(part.sink)).await.unwrap());
        }
        let written = write_flush_files(&sinks, &flush, &tables).await.unwrap();
        let silver_files = &written[flush.sinks.iter().position(|p| p.sink == 0).unwrap()];
        let path = silver_files[0]
            .file_path()
            .trim_start_matches("file://")
            .to_string();
        let file = std::fs::File::open(&path).unwrap();
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024).unwrap();
        let mut devices = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("device_id").unwrap();
            let strings = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
            let strings = strings
                .as_any()
                .downcast_ref::<arrow::array::StringArray>()
                .unwrap();
            devices.extend(strings.iter().map(|s| s.unwrap().to_string()));
        }
        assert_eq!(devices, ["a", "m", "q", "z"]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
