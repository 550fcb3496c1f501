//! Kafka source: a consumer-group member that feeds the streaming writer.
//!
//! The consumer runs on its own thread (librdkafka's poll loop is blocking,
//! and the rebalance callback must load table watermarks before it assigns
//! partitions); commits run on a tokio task. Partitions start at the raw
//! table's watermark, never at the group's committed offset, which is only
//! written afterwards as a hint for lag monitoring.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use regex::Regex;
use tokio::sync::watch;
use weir_catalog::Lakehouse;
use weir_catalog::watermark::Watermarks;

use crate::decode::Format;
use crate::writer::{
    BufferLimits, BufferStats, FlushOutcome, IngestBuffer, Message, Sinks, commit_flush_with_retry,
};

/// Watermark namespace of this source in snapshot summaries.
pub const SOURCE: &str = "kafka";

/// Where partitions without a watermark start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Earliest,
    Latest,
}

/// Which decoder and Silver table a topic uses.
#[derive(Debug, Clone)]
pub struct Route {
    pattern: TopicPattern,
    pub format: Format,
    pub table: TableIdent,
}

#[derive(Debug, Clone)]
enum TopicPattern {
    Exact(String),
    Regex(Regex),
}

impl TopicPattern {
    fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with('^') {
            Regex::new(s)
                .map(TopicPattern::Regex)
                .map_err(|e| format!("bad topic pattern `{s}`: {e}"))
        } else {
            Ok(TopicPattern::Exact(s.to_string()))
        }
    }
    fn matches(&self, topic: &str) -> bool {
        match self {
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Regex(r) => r.is_match(topic),
        }
    }
}

impl Route {
    /// Parses `PATTERN=FORMAT` or `PATTERN=FORMAT@namespace.table`
    /// (PATTERN is a topic name, or a regex starting with `^`).
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (pattern, rest) = spec
            .rsplit_once('=')
            .ok_or_else(|| format!("route `{spec}`: expected PATTERN=FORMAT[@TABLE]"))?;
        let (format, table) = match rest.split_once('@') {
            Some((f, t)) => (f, Some(t)),
            None => (rest, None),
        };
        let table = match table {
            Some(t) => {
                let parts: Vec<&str> = t.split('.').collect();
                if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
                    return Err(format!("route `{spec}`: table must be namespace.table"));
                }
                TableIdent::from_strs(parts).map_err(|e| e.to_string())?
            }
            None => default_silver(),
        };
        Ok(Route {
            pattern: TopicPattern::parse(pattern.trim())?,
            format: format.parse()?,
            table,
        })
    }
}

fn default_silver() -> TableIdent {
    TableIdent::from_strs(["silver", "points"]).expect("static table name")
}

/// Everything the Kafka source needs.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    pub brokers: String,
    pub group: String,
    /// Topic names, or regexes starting with `^`.
    pub topics: Vec<String>,
    /// Per-topic decoder/table overrides, first match wins.
    pub routes: Vec<Route>,
    pub default_format: Format,
    /// Passed to librdkafka as is (security.protocol, sasl.*, ssl.*, ...).
    pub client_options: Vec<(String, String)>,
    pub start: StartFrom,
    pub limits: BufferLimits,
    /// Most bytes buffered or in flight before consumption pauses.
    pub max_buffer_bytes: usize,
    /// Identifies this writer in snapshot summaries.
    pub writer_id: String,
}

impl KafkaOptions {
    fn route(&self, topic: &str) -> (Format, TableIdent) {
        self.routes
            .iter()
            .find(|r| r.pattern.matches(topic))
            .map(|r| (r.format, r.table.clone()))
            .unwrap_or_else(|| (self.default_format, default_silver()))
    }
    fn silver_tables(&self) -> Vec<TableIdent> {
        let mut out = vec![default_silver()];
        for r in &self.routes {
            if !out.contains(&r.table) {
                out.push(r.table.clone());
            }
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Catalog(#[from] weir_catalog::CatalogError),
    #[error("building a batch failed: {0}")]
    Batch(#[from] arrow::error::ArrowError),
    #[error("the kafka consumer thread stopped unexpectedly")]
    Thread,
}

/// What a run did, for the shutdown summary.
#[derive(Debug, Default, Clone)]
pub struct KafkaReport {
    pub stats: BufferStats,
    pub flushes: u64,
    pub resets: u64,
}

/// Live counters, readable while the source runs.
#[derive(Debug, Default)]
pub struct KafkaCounters {
    pub messages: AtomicU64,
    pub points: AtomicU64,
    pub dead_letters: AtomicU64,
    pub flushes: AtomicU64,
    /// Set once the first partition assignment was positioned at the
    /// tables' watermarks (readiness).
    pub resumed: std::sync::atomic::AtomicBool,
}

enum Event {
    Assigned(Vec<(String, i32, Vec<Option<i64>>)>),
    Revoked(Vec<(String, i32)>),
}

enum Feedback {
    Committed { epoch: u64, raw: Watermarks },
    Fenced { epoch: u64, reason: String },
    Failed(String),
}

struct WeirContext {
    handle: tokio::runtime::Handle,
    lakehouse: Lakehouse,
    sinks: Sinks,
    start: StartFrom,
    events: Mutex<Vec<Event>>,
    inflight: Arc<AtomicUsize>,
    /// Per partition: (log start, high watermark) from librdkafka's statistics.
    offsets: Mutex<HashMap<(String, i32), (i64, i64)>>,
    /// Brokers with an open connection at the last statistics (None: none yet).
    brokers_up: Mutex<Option<usize>>,
}

impl ClientContext for WeirContext {
    /// librdkafka's periodic statistics (`statistics.interval.ms`): keeps each
    /// partition's high watermark for the lag metric.
    fn stats(&self, statistics: rdkafka::Statistics) {
        // Connected brokers (cluster members, not the bootstrap entries):
        // an outage and the recovery are logged once each.
        let up = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.source == "learned" && b.state == "UP")
            .count();
        metrics::gauge!("weir_ingest_kafka_brokers_up").set(up as f64);
        let mut last = self.brokers_up.lock().expect("brokers lock");
        match (*last, up) {
            (Some(n), 0) if n > 0 => {
                tracing::warn!("kafka: no broker reachable; consuming resumes when one is back")
            }
            (Some(0), n) if n > 0 => tracing::info!(brokers = n, "kafka: brokers reachable again"),
            _ => {}
        }
        *last = Some(up);
        drop(last);
        let mut offsets = self.offsets.lock().expect("offsets lock");
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                if partition >= 0 && p.hi_offset >= 0 {
                    offsets.insert(
                        (topic.clone(), partition),
                        (p.lo_offset.max(0), p.hi_offset),
                    );
                }
            }
        }
    }
}

/// Sets `weir_ingest_lag_messages` of every partition the writer holds: the
/// high watermark minus the committed offset (the log start if none).
fn record_lag(consumer: &BaseConsumer<WeirContext>, buffer: &IngestBuffer) {
    let offsets = consumer.context().offsets.lock().expect("offsets lock");
    for (topic, partition, committed) in buffer.clock().committed_offsets() {
        if let Some(&(low, high)) = offsets.get(&(topic.to_string(), partition)) {
            let lag = (high - committed.unwrap_or(low)).max(0);
            metrics::gauge!("weir_ingest_lag_messages", "source" => SOURCE, "stream" => topic.to_string(), "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
}

impl WeirContext {
    /// Each table's watermarks, retried until the catalog answers.
    fn load_marks(&self) -> Vec<Watermarks> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self
                .handle
                .block_on(self.sinks.load_watermarks(&self.lakehouse, SOURCE))
            {
                Ok(m) => return m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load watermarks; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    fn wait_idle(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.inflight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl ConsumerContext for WeirContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let parts: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Position every partition at the raw table's watermark.
                let marks = self.load_marks();
                let mut assigned = Vec::new();
                for (topic, partition) in parts {
                    let per_sink: Vec<Option<i64>> =
                        marks.iter().map(|m| m.get(&topic, partition)).collect();
                    let offset = match per_sink[self.sinks.raw()] {
                        Some(o) => Offset::Offset(o),
                        None if self.start == StartFrom::Latest => Offset::End,
                        None => Offset::Beginning,
                    };
                    if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                        tracing::error!(topic, partition, error = %e, "cannot set start offset");
                    }
                    tracing::info!(topic, partition, ?offset, "partition assigned");
                    assigned.push((topic, partition, per_sink));
                }
                self.events
                    .lock()
                    .expect("events lock")
                    .push(Event::Assigned(assigned));
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Let the commit in flight finish so the next owner sees it.
                self.wait_idle(Duration::from_secs(60));
                for (topic, partition) in &parts {
                    tracing::info!(topic, partition, "partition revoked");
                }
                self.events
                    .lock()
                    .expect("events lock")
                    .push(Event::Revoked(parts));
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
            }
        }
    }
}

/// Runs the Kafka source until `shutdown` turns true, then flushes and
/// commits what it holds.
pub async fn run(
    lakehouse: Lakehouse,
    opts: KafkaOptions,
    counters: Arc<KafkaCounters>,
    shutdown: watch::Receiver<bool>,
) -> Result<KafkaReport, KafkaSourceError> {
    let sinks = Sinks::new(&opts.silver_tables());
    // Every target table must exist before anything is consumed.
    sinks.load_watermarks(&lakehouse, SOURCE).await?;

    let (flush_tx, mut flush_rx) = tokio::sync::mpsc::channel(1);
    let (fb_tx, fb_rx) = mpsc::channel::<Feedback>();
    let epoch = Arc::new(AtomicU64::new(0));
    let inflight = Arc::new(AtomicUsize::new(0));

    let committer = {
        let lakehouse = lakehouse.clone();
        let sinks = sinks.clone();
        let epoch = epoch.clone();
        let inflight = inflight.clone();
        let writer_id = opts.writer_id.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            while let Some(flush) = flush_rx.recv().await {
                let flush: crate::writer::Flush = flush;
                if flush.epoch == epoch.load(Ordering::SeqCst) {
                    let feedback = commit_with_retry(&lakehouse, &writer_id, &sinks, &flush).await;
                    if matches!(feedback, Feedback::Committed { .. }) {
                        counters.flushes.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = fb_tx.send(feedback);
                }
                inflight.fetch_sub(1, Ordering::SeqCst);
            }
        })
    };

    let handle = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_lakehouse = lakehouse.clone();
    std::thread::Builder::new()
        .name("weir-kafka".into())
        .spawn(move || {
            let result = consume(
                handle,
                thread_lakehouse,
                opts,
                sinks,
                counters,
                shutdown,
                flush_tx,
                fb_rx,
                epoch,
                inflight,
            );
            let _ = done_tx.send(result);
        })
        .map_err(|_| KafkaSourceError::Thread)?;
    let result = done_rx.await.map_err(|_| KafkaSourceError::Thread)?;
    let _ = committer.await;
    result
}

async fn commit_with_retry(
    lakehouse: &Lakehouse,
    writer_id: &str,
    sinks: &Sinks,
    flush: &crate::writer::Flush,
) -> Feedback {
    match commit_flush_with_retry(lakehouse, SOURCE, writer_id, sinks, flush).await {
        Ok(FlushOutcome::Committed { raw, elapsed }) => {
            tracing::debug!(?elapsed, raw = %raw, "flush committed");
            Feedback::Committed {
                epoch: flush.epoch,
                raw,
            }
        }
        Ok(FlushOutcome::Fenced { table, reason }) => {
            tracing::warn!(
                table,
                reason,
                "commit refused by the watermark fence; resuming from the tables"
            );
            Feedback::Fenced {
                epoch: flush.epoch,
                reason,
            }
        }
        Err(e) => Feedback::Failed(e.to_string()),
    }
}

#[allow(clippy::too_many_arguments)]
fn consume(
    handle: tokio::runtime::Handle,
    lakehouse: Lakehouse,
    opts: KafkaOptions,
    sinks: Sinks,
    counters: Arc<KafkaCounters>,
    shutdown: watch::Receiver<bool>,
    flush_tx: tokio::sync::mpsc::Sender<crate::writer::Flush>,
    fb_rx: mpsc::Receiver<Feedback>,
    epoch: Arc<AtomicU64>,
    inflight: Arc<AtomicUsize>,
) -> Result<KafkaReport, KafkaSourceError> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Only committed records of transactional producers, never aborted
        // ones (librdkafka's default too; set so the guarantee is explicit).
        .set("isolation.level", "read_committed")
        .set(
            "auto.offset.reset",
            if opts.start == StartFrom::Latest {
                "latest"
            } else {
                "earliest"
            },
        )
        .set("client.id", &opts.writer_id)
        // Throughput defaults (each overridable by --kafka-option): larger
        // fetches per partition than librdkafka's 1 MiB, and a receive limit
        // that tolerates brokers that overshoot the fetch limits (some
        // Kafka-protocol brokers return whole segments; librdkafka's 100 MB
        // default then fails every fetch and consumption stalls).
        .set("max.partition.fetch.bytes", "8388608")
        .set("fetch.max.bytes", "67108864")
        .set("receive.message.max.bytes", "1000000000")
        // High watermarks for the lag metric (weir_ingest_lag_messages).
        .set("statistics.interval.ms", "1000");
    for (k, v) in &opts.client_options {
        config.set(k, v);
    }
    let context = WeirContext {
        handle: handle.clone(),
        lakehouse: lakehouse.clone(),
        sinks: sinks.clone(),
        start: opts.start,
        events: Mutex::new(Vec::new()),
        inflight: inflight.clone(),
        offsets: Mutex::new(HashMap::new()),
        brokers_up: Mutex::new(None),
    };
    let consumer: BaseConsumer<WeirContext> = config.create_with_context(context)?;
    let topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
    if topics.is_empty() {
        return Err(KafkaSourceError::Config(
            "no Kafka topics configured".into(),
        ));
    }
    consumer.subscribe(&topics)?;
    tracing::info!(group = %opts.group, topics = ?opts.topics, "kafka source subscribed");

    let mut buffer = IngestBuffer::new(
        SOURCE,
        sinks.clone(),
        lakehouse.hot().clone(),
        opts.limits.clone(),
    );
    let mut routes: HashMap<String, (Format, usize)> = HashMap::new();
    let mut report = KafkaReport::default();
    let mut failure: Option<String> = None;
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut last_log = Instant::now();

    let route_for = |topic: &str, routes: &mut HashMap<String, (Format, usize)>| {
        *routes.entry(topic.to_string()).or_insert_with(|| {
            let (format, table) = opts.route(topic);
            (format, sinks.silver_index(&table).unwrap_or(0))
        })
    };

    loop {
        // 1. Commit results.
        while let Ok(fb) = fb_rx.try_recv() {
            match fb {
                Feedback::Committed { epoch: e, raw } if e == epoch.load(Ordering::SeqCst) => {
                    report.flushes += 1;
                    commit_group_offsets(&consumer, &raw, CommitMode::Async);
                }
                Feedback::Fenced { epoch: e, reason } if e == epoch.load(Ordering::SeqCst) => {
                    report.resets += 1;
                    epoch.fetch_add(1, Ordering::SeqCst);
                    tracing::warn!(reason, "resetting the writer from the tables' watermarks");
                    reset(
                        &consumer,
                        &mut buffer,
                        &sinks,
                        &handle,
                        &lakehouse,
                        &opts,
                        &mut routes,
                    )?;
                }
                Feedback::Failed(e) => failure = Some(e),
                _ => {}
            }
        }
        if failure.is_some() {
            break;
        }
        // 2. Rebalance events (before any message of a new assignment).
        let events: Vec<Event> =
            std::mem::take(&mut *consumer.context().events.lock().expect("events lock"));
        for event in events {
            match event {
                Event::Assigned(parts) => {
                    for (topic, partition, marks) in parts {
                        let (format, silver) = route_for(&topic, &mut routes);
                        buffer.assign(&topic, partition, format, silver, marks);
                    }
                    counters.resumed.store(true, Ordering::SeqCst);
                }
                Event::Revoked(parts) => {
                    for (topic, partition) in parts {
                        buffer.revoke(&topic, partition);
                    }
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        // 3. Backpressure: a slow object store pauses consumption.
        if buffer.bytes() >= opts.max_buffer_bytes {
            std::thread::sleep(Duration::from_millis(5));
            maybe_flush(&mut buffer, &epoch, &inflight, &flush_tx)?;
            continue;
        }
        // 4. Next message.
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                headers.clear();
                if let Some(h) = m.headers() {
                    for header in h.iter() {
                        let value = header
                            .value
                            .map(|v| String::from_utf8_lossy(v).into_owned());
                        headers.push((header.key.to_string(), value.unwrap_or_default()));
                    }
                }
                let now = chrono::Utc::now().timestamp_micros();
                let msg = Message {
                    stream: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    payload: m.payload(),
                    source_ts_micros: m.timestamp().to_millis().map(|ms| ms * 1000),
                    received_micros: now,
                };
                buffer.push(msg, &headers);
            }
            Some(Err(e)) => {
                let code = e
                    .rdkafka_error_code()
                    .map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
                metrics::counter!("weir_ingest_source_errors_total", "source" => SOURCE, "error" => code)
                    .increment(1);
                tracing::warn!(error = %e, "kafka consumer error");
            }
            None => {}
        }
        // A rebalance callback ran inside this poll: apply it (a revoke drops
        // the revoked partitions' rows) before anything is flushed, or a
        // flush would commit rows of partitions another writer now owns and
        // that writer's first commit would be refused by the fence.
        if !consumer
            .context()
            .events
            .lock()
            .expect("events lock")
            .is_empty()
        {
            continue;
        }
        // 5. Seal hot chunks / flush.
        if buffer.seal_due() {
            buffer.seal()?;
            publish(&counters, &buffer.stats);
            record_lag(&consumer, &buffer);
        }
        if buffer.flush_due() {
            maybe_flush(&mut buffer, &epoch, &inflight, &flush_tx)?;
        }
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let s = buffer.stats;
            tracing::info!(
                messages = s.messages,
                points = s.points,
                dead_letters = s.dead_letters,
                flushes = report.flushes,
                "kafka source progress"
            );
        }
    }

    // Ordered stop: flush what is buffered, wait for the commits, record the
    // group offsets, leave the group.
    if failure.is_none() {
        maybe_flush(&mut buffer, &epoch, &inflight, &flush_tx)?;
    }
    drop(flush_tx);
    while inflight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    while let Ok(fb) = fb_rx.try_recv() {
        match fb {
            Feedback::Committed { raw, .. } => {
                report.flushes += 1;
                commit_group_offsets(&consumer, &raw, CommitMode::Sync);
            }
            Feedback::Failed(e) => failure = Some(e),
            Feedback::Fenced { .. } => report.resets += 1,
        }
    }
    publish(&counters, &buffer.stats);
    report.stats = buffer.stats;
    consumer.unsubscribe();
    match failure {
        Some(e) => Err(KafkaSourceError::Config(format!(
            "commits keep failing: {e}"
        ))),
        None => Ok(report),
    }
}

fn publish(counters: &KafkaCounters, stats: &BufferStats) {
    counters.messages.store(stats.messages, Ordering::Relaxed);
    counters.points.store(stats.points, Ordering::Relaxed);
    counters
        .dead_letters
        .store(stats.dead_letters, Ordering::Relaxed);
}

fn maybe_flush(
    buffer: &mut IngestBuffer,
    epoch: &AtomicU64,
    inflight: &AtomicUsize,
    flush_tx: &tokio::sync::mpsc::Sender<crate::writer::Flush>,
) -> Result<(), KafkaSourceError> {
    if let Some(flush) = buffer.take_flush(epoch.load(Ordering::SeqCst))? {
        inflight.fetch_add(1, Ordering::SeqCst);
        // Blocks while a commit is in flight and another is queued.
        if flush_tx.blocking_send(flush).is_err() {
            inflight.fetch_sub(1, Ordering::SeqCst);
            return Err(KafkaSourceError::Thread);
        }
    }
    Ok(())
}

/// After a refused commit: drop everything uncommitted, reload the tables'
/// watermarks and seek every held partition back to them.
fn reset(
    consumer: &BaseConsumer<WeirContext>,
    buffer: &mut IngestBuffer,
    sinks: &Sinks,
    handle: &tokio::runtime::Handle,
    lakehouse: &Lakehouse,
    opts: &KafkaOptions,
    routes: &mut HashMap<String, (Format, usize)>,
) -> Result<(), KafkaSourceError> {
    let held = buffer.reset();
    let marks = consumer.context().load_marks();
    let _ = (handle, lakehouse);
    for (topic, partition) in held {
        let per_sink: Vec<Option<i64>> = marks.iter().map(|m| m.get(&topic, partition)).collect();
        let (format, silver) = *routes.entry(topic.to_string()).or_insert_with(|| {
            let (format, table) = opts.route(&topic);
            (format, sinks.silver_index(&table).unwrap_or(0))
        });
        let start = buffer.assign(&topic, partition, format, silver, per_sink);
        let offset = match start {
            Some(o) => Offset::Offset(o),
            None if opts.start == StartFrom::Latest => Offset::End,
            None => Offset::Beginning,
        };
        if let Err(e) = consumer.seek(&topic, partition, offset, Duration::from_secs(10)) {
            tracing::error!(%topic, partition, error = %e, "seek after reset failed");
            return Err(e.into());
        }
    }
    Ok(())
}

fn commit_group_offsets(consumer: &BaseConsumer<WeirContext>, raw: &Watermarks, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for (topic, parts) in raw.streams() {
        for (p, next) in parts {
            let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(*next));
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, mode)
    {
        tracing::debug!(error = %e, "group offset commit failed (only a hint)");
    }
}
