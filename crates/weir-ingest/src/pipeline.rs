//! One ingest pipeline for every source.
//!
//! A [`Source`] only reads: it positions its streams at the tables'
//! watermarks, pushes records with their coordinates (stream, partition,
//! offset) into the [`IngestBuffer`], and is told when a flush committed (its
//! raw-table watermark) so it can acknowledge upstream (Kafka group offsets,
//! MQTT PUBACKs). The [`Pipeline`] owns the rest, the same for every source:
//! decode → buffer → hot tier (seal on time) → flush (on age, size or
//! backpressure) → fenced commit with the watermark in the snapshot summary
//! (`writer::commit_flush_with_retry`, one commit in flight and one queued)
//! → hot-tier eviction → acknowledge; a refused commit resets the buffer and
//! repositions the source at the tables' watermarks (or stops it, when the
//! source cannot replay); an ordered stop drains the source and commits what
//! it holds.
//!
//! Exactly-once rules the pipeline keeps for every source:
//! - whatever a source tells the buffer about its streams (assignments,
//!   revokes) inside one `poll` is applied before anything is sealed or
//!   flushed, so a flush never holds rows of a stream the source gave up;
//! - a commit result of an older writer epoch (before a reset) is ignored;
//! - nothing is acknowledged upstream before every table committed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use weir_catalog::Lakehouse;
use weir_catalog::watermark::Watermarks;
use weir_hot::HotTier;

use crate::writer::{
    BufferLimits, BufferStats, Flush, FlushOutcome, IngestBuffer, Sinks, commit_flush_with_retry,
};

/// What stops a source: the failures every source shares, and each
/// source's own.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Catalog(#[from] weir_catalog::CatalogError),
    #[error("building a batch failed: {0}")]
    Batch(#[from] arrow::error::ArrowError),
    #[error("{label}: commits keep failing: {message}")]
    CommitFailed { label: String, message: String },
    #[error("{0} stopped unexpectedly")]
    Stopped(String),
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error(transparent)]
    Modbus(#[from] crate::modbus::ModbusError),
}

/// What one [`Source::poll`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Records (or nothing, after a short wait): the pipeline goes on.
    More,
    /// The source has nothing more to read (its producers ended).
    Ended,
}

/// What the pipeline hands a source when it starts.
#[derive(Clone)]
pub struct Context {
    pub lakehouse: Lakehouse,
    pub sinks: Sinks,
    pub counters: Arc<SourceCounters>,
    /// Flushes sent to the committer and not yet committed (a source that
    /// gives up streams waits for them, so the next owner sees the commit).
    pub inflight: Arc<AtomicUsize>,
}

/// A protocol feeding the pipeline. A new source is one implementation.
///
/// `poll` must return within a short time (tens of milliseconds) when
/// nothing arrives, so seals and flushes happen on time.
pub trait Source: Send + 'static {
    /// Watermark namespace in snapshot summaries and the metrics' `source`.
    const NAME: &'static str;

    /// Names this source in logs and errors ("kafka", "MQTT broker b1").
    fn label(&self) -> String;

    /// The Silver tables its routes write to (Bronze tables are added).
    fn silver_tables(&self) -> Vec<TableIdent>;

    /// Starts reading, positioning streams known up front at `marks` (each
    /// sink's committed watermarks, `ctx.sinks` order) with
    /// `IngestBuffer::assign`.
    fn start(
        &mut self,
        ctx: &Context,
        buffer: &mut IngestBuffer,
        marks: &[Watermarks],
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Reads what arrived (waiting briefly when nothing did) into `buffer`:
    /// records with their coordinates, and assignment changes (assign,
    /// revoke) before any record that follows them.
    fn poll(
        &mut self,
        buffer: &mut IngestBuffer,
    ) -> impl Future<Output = Result<Polled, SourceError>> + Send;

    /// A flush committed every table; `raw` holds the raw table's new
    /// watermark of each stream it covered. `closing`: the last commits of
    /// an ordered stop.
    fn acknowledge(&mut self, raw: &Watermarks, closing: bool) {
        let _ = (raw, closing);
    }

    /// A commit was refused by the watermark fence (another writer committed
    /// these positions). `None`: reset and resume from the tables
    /// ([`reset`](Self::reset)); `Some(error)`: the source stops.
    fn fenced(&mut self, reason: &str) -> Option<SourceError> {
        let _ = reason;
        None
    }

    /// After a fenced commit the buffer dropped everything uncommitted and
    /// forgot the streams `held`: position them again at `marks`.
    fn reset(
        &mut self,
        buffer: &mut IngestBuffer,
        held: Vec<(Arc<str>, i32)>,
        marks: &[Watermarks],
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Called after each seal (hot-tier visibility): e.g. lag metrics.
    fn sealed(&mut self, buffer: &IngestBuffer) {
        let _ = buffer;
    }

    /// Ordered stop, before the last flush: stop producing and buffer what
    /// was already read.
    fn drain(&mut self, buffer: &mut IngestBuffer) -> impl Future<Output = ()> + Send {
        let _ = buffer;
        async {}
    }

    /// After the last commit (acknowledged): disconnect, and add this
    /// source's own numbers to the report.
    fn close(&mut self, report: &mut PipelineReport) -> impl Future<Output = ()> + Send {
        let _ = report;
        async {}
    }
}

/// Live counters of one source (all its pipelines), readable while it runs.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub messages: AtomicU64,
    pub points: AtomicU64,
    pub dead_letters: AtomicU64,
    pub flushes: AtomicU64,
    /// Pipelines whose streams resumed from the tables' watermarks (readiness).
    pub resumed: AtomicUsize,
}

/// What one pipeline did, for the shutdown summary.
#[derive(Debug, Default, Clone)]
pub struct PipelineReport {
    pub source: &'static str,
    pub label: String,
    pub stats: BufferStats,
    pub flushes: u64,
    pub resets: u64,
    /// The source's own numbers (MQTT reconnects, Modbus polls, ...).
    pub detail: Vec<(&'static str, u64)>,
}

impl PipelineReport {
    /// One log line.
    pub fn log(&self) {
        let s = self.stats;
        let detail: Vec<String> = self
            .detail
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        tracing::info!(
            source = self.source,
            stream = self.label,
            messages = s.messages,
            points = s.points,
            dead_letters = s.dead_letters,
            duplicates_skipped = s.duplicates_skipped,
            flushes = self.flushes,
            resets = self.resets,
            detail = detail.join(" "),
            "{} source stopped",
            self.source
        );
    }
}

/// How the pipeline writes.
#[derive(Clone)]
pub struct Pipeline {
    pub lakehouse: Lakehouse,
    /// This process's hot tier: sealed rows wait here until committed.
    pub hot: Arc<HotTier>,
    pub limits: BufferLimits,
    /// Most bytes buffered before reading pauses (flush first).
    pub max_buffer_bytes: usize,
    /// Identifies this writer in snapshot summaries.
    pub writer_id: String,
    pub counters: Arc<SourceCounters>,
}

/// Why the loop ended.
enum Stop {
    /// Shutdown, or the source ended: flush and commit what is buffered.
    Clean,
    /// The source failed: flush what is buffered, then report the error.
    Source(SourceError),
    /// Commits failed or were refused, or a batch could not be built:
    /// nothing more is committed.
    Fatal(SourceError),
}

impl Pipeline {
    /// Runs `source` until `shutdown` turns true (or it ends or fails), then
    /// drains it, commits what is buffered and acknowledges it.
    pub async fn run<S: Source>(
        self,
        mut source: S,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<PipelineReport, SourceError> {
        let sinks = Sinks::new(&source.silver_tables());
        // Every target table must exist before anything is read.
        let marks = sinks.load_watermarks(&self.lakehouse, S::NAME).await?;
        let mut buffer = IngestBuffer::new(
            S::NAME,
            sinks.clone(),
            self.hot.clone(),
            self.limits.clone(),
        );
        let mut committer = Committer::spawn::<S>(&self, &sinks, source.label());
        let ctx = Context {
            lakehouse: self.lakehouse.clone(),
            sinks: sinks.clone(),
            counters: self.counters.clone(),
            inflight: committer.inflight.clone(),
        };
        source.start(&ctx, &mut buffer, &marks).await?;
        let mut report = PipelineReport {
            source: S::NAME,
            label: source.label(),
            ..Default::default()
        };
        let mut published = BufferStats::default();
        let stop = self
            .read(
                &mut source,
                &mut buffer,
                &mut committer,
                &mut report,
                &mut published,
                &mut shutdown,
            )
            .await;

        // Ordered stop: the source buffers what it already read, the last
        // flush is committed, its positions acknowledged.
        source.drain(&mut buffer).await;
        let mut failure = match stop {
            Stop::Clean => committer.send(&mut buffer).await.err(),
            Stop::Source(e) => {
                let _ = committer.send(&mut buffer).await;
                Some(e)
            }
            Stop::Fatal(e) => Some(e),
        };
        for feedback in committer.finish().await {
            match feedback {
                Feedback::Committed { raw, .. } => {
                    report.flushes += 1;
                    source.acknowledge(&raw, true);
                }
                Feedback::Fenced { reason, .. } => match source.fenced(&reason) {
                    Some(e) => {
                        failure.get_or_insert(e);
                    }
                    None => report.resets += 1,
                },
                Feedback::Failed(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        // Nothing more is read here: evaluators of these rows (alert rules)
        // stop expecting them before the source closes (leaving a Kafka
        // group takes seconds, and a quiet partition is not a silent device).
        buffer.release_all();
        source.close(&mut report).await;
        publish(&self.counters, &buffer.stats, &mut published);
        report.stats = buffer.stats;
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// The read loop: commit results, backpressure, next records, seal, flush.
    async fn read<S: Source>(
        &self,
        source: &mut S,
        buffer: &mut IngestBuffer,
        committer: &mut Committer,
        report: &mut PipelineReport,
        published: &mut BufferStats,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Stop {
        let mut last_log = Instant::now();
        loop {
            // 1. Commit results: acknowledge, or reset after a refusal.
            while let Some(feedback) = committer.try_feedback() {
                if let Err(stop) = self
                    .on_feedback(source, buffer, committer, report, feedback)
                    .await
                {
                    return stop;
                }
            }
            if *shutdown.borrow() {
                return Stop::Clean;
            }
            // 2. Backpressure: a slow object store pauses reading.
            if buffer.bytes() >= self.max_buffer_bytes {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if let Err(e) = committer.send(buffer).await {
                    return Stop::Fatal(e);
                }
                continue;
            }
            // 3. Next records (assignment changes applied first).
            let polled = tokio::select! {
                biased;
                polled = source.poll(buffer) => polled,
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return Stop::Clean;
                    }
                    continue;
                }
            };
            match polled {
                Ok(Polled::More) => {}
                Ok(Polled::Ended) => return Stop::Clean,
                Err(e) => return Stop::Source(e),
            }
            // 4. Seal hot chunks / flush.
            if buffer.seal_due() {
                if let Err(e) = buffer.seal() {
                    return Stop::Fatal(e.into());
                }
                publish(&self.counters, &buffer.stats, published);
                source.sealed(buffer);
            }
            if buffer.flush_due()
                && let Err(e) = committer.send(buffer).await
            {
                return Stop::Fatal(e);
            }
            if last_log.elapsed() >= Duration::from_secs(10) {
                last_log = Instant::now();
                let s = buffer.stats;
                tracing::info!(
                    source = S::NAME,
                    stream = report.label,
                    messages = s.messages,
                    points = s.points,
                    dead_letters = s.dead_letters,
                    flushes = report.flushes,
                    "{} source progress",
                    S::NAME
                );
            }
        }
    }

    async fn on_feedback<S: Source>(
        &self,
        source: &mut S,
        buffer: &mut IngestBuffer,
        committer: &mut Committer,
        report: &mut PipelineReport,
        feedback: Feedback,
    ) -> Result<(), Stop> {
        let current = committer.epoch.load(Ordering::SeqCst);
        match feedback {
            Feedback::Committed { epoch, raw } if epoch == current => {
                report.flushes += 1;
                source.acknowledge(&raw, false);
            }
            Feedback::Fenced { epoch, reason } if epoch == current => {
                report.resets += 1;
                if let Some(e) = source.fenced(&reason) {
                    return Err(Stop::Fatal(e));
                }
                committer.epoch.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(
                    source = S::NAME,
                    reason,
                    "resetting the writer from the tables' watermarks"
                );
                let held = buffer.reset();
                let marks = load_marks(&self.lakehouse, buffer.sinks(), S::NAME).await;
                source
                    .reset(buffer, held, &marks)
                    .await
                    .map_err(Stop::Fatal)?;
            }
            Feedback::Failed(e) => return Err(Stop::Fatal(e)),
            _ => {}
        }
        Ok(())
    }
}

/// Adds what `stats` counted since the last call to the shared counters
/// (several pipelines, e.g. MQTT brokers, share them).
fn publish(counters: &SourceCounters, stats: &BufferStats, published: &mut BufferStats) {
    counters
        .messages
        .fetch_add(stats.messages - published.messages, Ordering::Relaxed);
    counters
        .points
        .fetch_add(stats.points - published.points, Ordering::Relaxed);
    counters.dead_letters.fetch_add(
        stats.dead_letters - published.dead_letters,
        Ordering::Relaxed,
    );
    *published = *stats;
}

/// Each table's watermarks for `source`, retried until the catalog answers.
pub async fn load_marks(lakehouse: &Lakehouse, sinks: &Sinks, source: &str) -> Vec<Watermarks> {
    let mut delay = Duration::from_millis(100);
    loop {
        match sinks.load_watermarks(lakehouse, source).await {
            Ok(m) => return m,
            Err(e) => {
                tracing::warn!(source, error = %e, "cannot load watermarks; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// How a flush ended, back from the committer.
enum Feedback {
    Committed { epoch: u64, raw: Watermarks },
    Fenced { epoch: u64, reason: String },
    Failed(SourceError),
}

/// The commit task: one flush in flight, one queued; flushes of an older
/// epoch (before a reset) are dropped.
struct Committer {
    tx: Option<mpsc::Sender<Flush>>,
    feedback: mpsc::UnboundedReceiver<Feedback>,
    epoch: Arc<AtomicU64>,
    inflight: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Committer {
    fn spawn<S: Source>(pipeline: &Pipeline, sinks: &Sinks, label: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<Flush>(1);
        let (fb_tx, feedback) = mpsc::unbounded_channel();
        let epoch = Arc::new(AtomicU64::new(0));
        let inflight = Arc::new(AtomicUsize::new(0));
        let task = {
            let (lakehouse, hot, sinks) = (
                pipeline.lakehouse.clone(),
                pipeline.hot.clone(),
                sinks.clone(),
            );
            let (epoch, inflight) = (epoch.clone(), inflight.clone());
            let (writer_id, counters) = (pipeline.writer_id.clone(), pipeline.counters.clone());
            tokio::spawn(async move {
                while let Some(flush) = rx.recv().await {
                    if flush.epoch == epoch.load(Ordering::SeqCst) {
                        let outcome = commit_flush_with_retry(
                            &lakehouse,
                            &hot,
                            S::NAME,
                            &writer_id,
                            &sinks,
                            &flush,
                        )
                        .await;
                        let feedback = match outcome {
                            Ok(FlushOutcome::Committed { raw, elapsed }) => {
                                tracing::debug!(source = S::NAME, ?elapsed, raw = %raw, "flush committed");
                                counters.flushes.fetch_add(1, Ordering::Relaxed);
                                Feedback::Committed {
                                    epoch: flush.epoch,
                                    raw,
                                }
                            }
                            Ok(FlushOutcome::Fenced { table, reason }) => {
                                tracing::warn!(
                                    source = S::NAME,
                                    table,
                                    reason,
                                    "commit refused by the watermark fence"
                                );
                                Feedback::Fenced {
                                    epoch: flush.epoch,
                                    reason,
                                }
                            }
                            Err(e) => Feedback::Failed(SourceError::CommitFailed {
                                label: label.clone(),
                                message: e.to_string(),
                            }),
                        };
                        let _ = fb_tx.send(feedback);
                    }
                    inflight.fetch_sub(1, Ordering::SeqCst);
                }
            })
        };
        Committer {
            tx: Some(tx),
            feedback,
            epoch,
            inflight,
            task,
        }
    }

    fn try_feedback(&mut self) -> Option<Feedback> {
        self.feedback.try_recv().ok()
    }

    /// Takes everything buffered as a flush and queues it (waits while one
    /// commit is in flight and another queued).
    async fn send(&mut self, buffer: &mut IngestBuffer) -> Result<(), SourceError> {
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        if let Some(flush) = buffer.take_flush(self.epoch.load(Ordering::SeqCst))? {
            self.inflight.fetch_add(1, Ordering::SeqCst);
            if tx.send(flush).await.is_err() {
                self.inflight.fetch_sub(1, Ordering::SeqCst);
                return Err(SourceError::Stopped("the commit task".into()));
            }
        }
        Ok(())
    }

    /// Waits for the queued commits; their results.
    async fn finish(mut self) -> Vec<Feedback> {
        drop(self.tx.take());
        let _ = (&mut self.task).await;
        let mut out = Vec::new();
        while let Ok(f) = self.feedback.try_recv() {
            out.push(f);
        }
        out
    }
}

/// A source's task: one report per pipeline (MQTT: per broker).
pub type SourceTask = JoinHandle<Result<Vec<PipelineReport>, SourceError>>;

/// One running source, whatever its protocol.
pub struct RunningSource {
    pub name: &'static str,
    pub task: SourceTask,
    pub counters: Arc<SourceCounters>,
    /// Pipelines that resume before the source is ready (MQTT: one per broker).
    pipelines: usize,
    /// Readiness text while `resumed < pipelines`: (resumed, pipelines).
    waiting: fn(usize, usize) -> String,
}

impl RunningSource {
    /// Spawns `run` with fresh counters.
    pub fn spawn<F, Fut>(
        name: &'static str,
        pipelines: usize,
        waiting: fn(usize, usize) -> String,
        run: F,
    ) -> Self
    where
        F: FnOnce(Arc<SourceCounters>) -> Fut,
        Fut: Future<Output = Result<Vec<PipelineReport>, SourceError>> + Send + 'static,
    {
        let counters = Arc::new(SourceCounters::default());
        RunningSource {
            name,
            task: tokio::spawn(run(counters.clone())),
            counters,
            pipelines,
            waiting,
        }
    }

    /// What readiness checks, without holding the task.
    pub fn status(&self) -> SourceStatus {
        SourceStatus {
            name: self.name,
            task: self.task.abort_handle(),
            counters: self.counters.clone(),
            pipelines: self.pipelines,
            waiting: self.waiting,
        }
    }
}

/// A running source's readiness.
#[derive(Clone)]
pub struct SourceStatus {
    pub name: &'static str,
    task: tokio::task::AbortHandle,
    counters: Arc<SourceCounters>,
    pipelines: usize,
    waiting: fn(usize, usize) -> String,
}

impl SourceStatus {
    /// The task ended (a fatal error, or a stop).
    pub fn stopped(&self) -> bool {
        self.task.is_finished()
    }

    /// Why the source is not ready yet (still resuming from the tables).
    pub fn waiting(&self) -> Option<String> {
        let resumed = self.counters.resumed.load(Ordering::SeqCst);
        (resumed < self.pipelines && !self.stopped())
            .then(|| (self.waiting)(resumed, self.pipelines))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::decode::Format;
    use crate::writer::Message;
    use crate::writer::tests::lakehouse;

    /// A scripted source: one stream, a log of `payloads` (offset = index)
    /// read from the position the pipeline gives it, then idle.
    struct Script {
        payloads: Vec<Vec<u8>>,
        next: i64,
        /// Start as a stale writer would: as if no table held a watermark.
        stale: bool,
        /// The raw watermark of each acknowledgement.
        acked: Arc<Mutex<Vec<Option<i64>>>>,
        resets: Arc<AtomicUsize>,
        /// Cannot replay (like MQTT): a refused commit stops it.
        fail_on_fence: bool,
    }

    const STREAM: &str = "s";

    impl Script {
        fn new(len: i64, stale: bool) -> Self {
            Script {
                payloads: (0..len)
                    .map(|v| {
                        format!(
                            r#"{{"device_id":"d","metric":"m","value":{v},"ts":{}}}"#,
                            1_700_000_000_000i64 + v
                        )
                        .into_bytes()
                    })
                    .collect(),
                next: 0,
                stale,
                acked: Arc::default(),
                resets: Arc::default(),
                fail_on_fence: false,
            }
        }
    }

    impl Source for Script {
        const NAME: &'static str = "script";

        fn label(&self) -> String {
            "script".into()
        }

        fn silver_tables(&self) -> Vec<TableIdent> {
            vec![TableIdent::from_strs(["silver", "points"]).unwrap()]
        }

        async fn start(
            &mut self,
            _ctx: &Context,
            buffer: &mut IngestBuffer,
            marks: &[Watermarks],
        ) -> Result<(), SourceError> {
            let per_sink = if self.stale {
                vec![None; marks.len()]
            } else {
                marks.iter().map(|m| m.get(STREAM, 0)).collect()
            };
            self.next = buffer
                .assign(STREAM, 0, Format::Auto, 0, per_sink)
                .unwrap_or(0);
            Ok(())
        }

        async fn poll(&mut self, buffer: &mut IngestBuffer) -> Result<Polled, SourceError> {
            match self.payloads.get(self.next as usize) {
                Some(payload) => {
                    buffer.push(
                        Message {
                            stream: STREAM,
                            partition: 0,
                            offset: self.next,
                            key: None,
                            payload: Some(payload),
                            source_ts_micros: None,
                            received_micros: 0,
                        },
                        &[],
                    );
                    self.next += 1;
                }
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
            Ok(Polled::More)
        }

        fn acknowledge(&mut self, raw: &Watermarks, _closing: bool) {
            self.acked.lock().unwrap().push(raw.get(STREAM, 0));
        }

        fn fenced(&mut self, reason: &str) -> Option<SourceError> {
            self.fail_on_fence
                .then(|| SourceError::Config(format!("fenced: {reason}")))
        }

        async fn reset(
            &mut self,
            buffer: &mut IngestBuffer,
            held: Vec<(Arc<str>, i32)>,
            marks: &[Watermarks],
        ) -> Result<(), SourceError> {
            assert_eq!(held, vec![(Arc::from(STREAM), 0)]);
            self.resets.fetch_add(1, Ordering::SeqCst);
            self.stale = false;
            let per_sink = marks.iter().map(|m| m.get(STREAM, 0)).collect();
            self.next = buffer
                .assign(STREAM, 0, Format::Auto, 0, per_sink)
                .unwrap_or(0);
            Ok(())
        }
    }

    fn pipeline(lakehouse: &Lakehouse) -> Pipeline {
        let mut limits = crate::modbus::source::default_limits();
        limits.seal_interval = Duration::from_millis(10);
        limits.commit_interval = Duration::from_millis(50);
        Pipeline {
            lakehouse: lakehouse.clone(),
            hot: Arc::default(),
            limits,
            max_buffer_bytes: 64 << 20,
            writer_id: "test".into(),
            counters: Arc::default(),
        }
    }

    /// Runs `source` until a commit acknowledged `until`, then stops it.
    async fn run_until(lakehouse: &Lakehouse, source: Script, until: i64) -> PipelineReport {
        let acked = source.acked.clone();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(pipeline(lakehouse).run(source, stopped));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !acked.lock().unwrap().contains(&Some(until)) {
            assert!(Instant::now() < deadline, "never acknowledged {until}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap().unwrap()
    }

    async fn silver_rows(lakehouse: &Lakehouse) -> u64 {
        let ident = TableIdent::from_strs(["silver", "points"]).unwrap();
        let table = lakehouse.catalog().load_table(&ident).await.unwrap();
        table
            .metadata()
            .current_snapshot()
            .and_then(|s| s.summary().additional_properties.get("total-records"))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// Records are committed with the watermark, then acknowledged; a
    /// restart resumes at the watermark.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_then_acknowledges_and_resumes_at_the_watermark() {
        let dir = std::env::temp_dir().join(format!("weir-pipeline-{}", uuid::Uuid::now_v7()));
        let lakehouse = lakehouse(&dir).await;
        let report = run_until(&lakehouse, Script::new(3, false), 3).await;
        assert_eq!(report.stats.messages, 3);
        assert_eq!(report.stats.points, 3);
        assert!(report.flushes >= 1);
        assert_eq!(report.resets, 0);
        assert_eq!(silver_rows(&lakehouse).await, 3);
        // A second run starts at offset 3.
        let source = Script::new(5, false);
        let acked = source.acked.clone();
        let report = run_until(&lakehouse, source, 5).await;
        assert_eq!(report.stats.messages, 2);
        assert_eq!(silver_rows(&lakehouse).await, 5);
        assert!(
            acked
                .lock()
                .unwrap()
                .iter()
                .all(|n| n.is_some_and(|n| n > 3))
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A writer that starts behind the tables is refused by the fence: the
    /// pipeline resets it from the tables' watermarks, nothing is written
    /// twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_commit_resets_the_source_from_the_tables() {
        let dir = std::env::temp_dir().join(format!("weir-pipeline-{}", uuid::Uuid::now_v7()));
        let lakehouse = lakehouse(&dir).await;
        run_until(&lakehouse, Script::new(3, false), 3).await;
        // Stale: offsets 0.. again, as if nothing were committed. Its first
        // flush is refused; after the reset it reads on from offset 3.
        let source = Script::new(8, true);
        let resets = source.resets.clone();
        let report = run_until(&lakehouse, source, 8).await;
        assert_eq!(resets.load(Ordering::SeqCst), 1);
        assert_eq!(report.resets, 1);
        assert_eq!(silver_rows(&lakehouse).await, 8, "each point once");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A source that cannot replay stops at a refused commit, acknowledging
    /// nothing of it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_commit_stops_a_source_that_cannot_replay() {
        let dir = std::env::temp_dir().join(format!("weir-pipeline-{}", uuid::Uuid::now_v7()));
        let lakehouse = lakehouse(&dir).await;
        run_until(&lakehouse, Script::new(3, false), 3).await;
        let mut source = Script::new(5, true);
        source.fail_on_fence = true;
        let acked = source.acked.clone();
        let (_stop, stopped) = watch::channel(false);
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            pipeline(&lakehouse).run(source, stopped),
        )
        .await
        .expect("the source stops by itself");
        let err = result.expect_err("refused").to_string();
        assert!(err.starts_with("fenced: "), "{err}");
        assert!(acked.lock().unwrap().is_empty());
        assert_eq!(silver_rows(&lakehouse).await, 3);
        let _ = std::fs::remove_dir_all(dir);
    }
}
