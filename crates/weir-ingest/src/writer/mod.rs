//! The streaming writer: buffered rows → one fenced Iceberg append per table,
//! with the source watermark in each snapshot summary.
//!
//! Exactly once (design notes, "Exactly-once and concurrent commits"):
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
use weir_catalog::hot::HotChunk;
use weir_catalog::watermark::{Watermarks, table_watermarks};
use weir_catalog::{
    AppendOptions, CatalogError, FenceCheck, Lakehouse, append_data_files, write_data_files_named,
};

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
/// TODO(issue 7): seen once while S3 conditional writes misbehaved: a
/// non-retryable error on one table after an earlier table of the same flush
/// had committed made the retries loop on "Cannot add files that are already
/// referenced by table" instead of recognising the committed part by its
/// commit id. Reproduce with a fault-injecting store and make the retry skip
/// tables whose commit id is already in their history.
pub async fn commit_flush(
    lakehouse: &Lakehouse,
    source: &str,
    writer_id: &str,
    sinks: &Sinks,
    flush: &Flush,
    written: &mut Vec<Vec<DataFile>>,
) -> Result<FlushOutcome, CatalogError> {
    let span = tracing::debug_span!("flush", source, epoch = flush.epoch);
    let result = tracing::Instrument::instrument(
        commit_flush_inner(lakehouse, source, writer_id, sinks, flush, written),
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

async fn commit_flush_inner(
    lakehouse: &Lakehouse,
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
            commit_id: Some(Uuid::now_v7()),
            fence: Some(fence),
        };
        match append_data_files(lakehouse, &table, files.clone(), opts).await {
            Ok(outcome) => {
                if part.sink < sinks.dead() {
                    let marks = table_watermarks(&outcome.table, source);
                    lakehouse.hot().evict_committed(name, source, &marks);
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
            // Rows in arrival order: sorting every flush by the table's sort
            // order cost 13-20 % of ingest throughput (benches/ingest.py,
            // 10 M points); compaction (every 10 min by default) writes the
            // sorted files queries prune on.
            tokio::spawn(async move { write_data_files_named(&table, &batches, None, "").await })
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
