//! Kafka source: a consumer-group member feeding the ingest pipeline
//! (`crate::pipeline`).
//!
//! The consumer and its pipeline run on their own thread (librdkafka's poll
//! is blocking, and the rebalance callback must load table watermarks before
//! it assigns partitions); commits run on the pipeline's tokio task.
//! Partitions start at the raw table's watermark, never at the group's
//! committed offset, which is only written afterwards (`acknowledge`) as a
//! hint for lag monitoring.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use iceberg::TableIdent;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{Headers, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use regex::Regex;
use tokio::sync::watch;
use weir_catalog::Lakehouse;
use weir_catalog::watermark::Watermarks;
use weir_hot::HotTier;

use crate::decode::Format;
use crate::pipeline::{
    Context, Pipeline, PipelineReport, Polled, RunningSource, Source, SourceCounters, SourceError,
    load_marks,
};
use crate::writer::{BufferLimits, IngestBuffer, Message, Sinks};

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

enum Event {
    Assigned(Vec<(String, i32, Vec<Option<i64>>)>),
    Revoked(Vec<(String, i32)>),
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
        metrics::gauge!(crate::metric_names::INGEST_KAFKA_BROKERS_UP).set(up as f64);
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
            metrics::gauge!(crate::metric_names::INGEST_LAG_MESSAGES, "source" => SOURCE, "stream" => topic.to_string(), "partition" => partition.to_string())
                .set(lag as f64);
        }
    }
}

impl WeirContext {
    /// Each table's watermarks, retried until the catalog answers (on the
    /// runtime's workers: this thread is inside the pipeline's `block_on`).
    fn load_marks(&self) -> Vec<Watermarks> {
        let (tx, rx) = mpsc::channel();
        let (lakehouse, sinks) = (self.lakehouse.clone(), self.sinks.clone());
        self.handle.spawn(async move {
            let _ = tx.send(load_marks(&lakehouse, &sinks, SOURCE).await);
        });
        rx.recv()
            .expect("the runtime stopped while loading watermarks")
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

/// Starts the Kafka source (its consumer thread).
pub fn spawn(
    lakehouse: Lakehouse,
    hot: Arc<HotTier>,
    opts: KafkaOptions,
    shutdown: watch::Receiver<bool>,
) -> RunningSource {
    RunningSource::spawn(
        SOURCE,
        1,
        |_, _| "kafka is waiting for its partition assignment".into(),
        |counters| async move {
            run(lakehouse, hot, opts, counters, shutdown)
                .await
                .map(|r| vec![r])
        },
    )
}

/// Runs the Kafka source until `shutdown` turns true, then flushes and
/// commits what it holds. The pipeline runs on the consumer's own thread:
/// librdkafka's poll blocks, and its rebalance callbacks must apply
/// assignments to the buffer before the next flush.
pub async fn run(
    lakehouse: Lakehouse,
    hot: Arc<HotTier>,
    opts: KafkaOptions,
    counters: Arc<SourceCounters>,
    shutdown: watch::Receiver<bool>,
) -> Result<PipelineReport, SourceError> {
    let handle = tokio::runtime::Handle::current();
    let pipeline = Pipeline {
        lakehouse,
        hot,
        limits: opts.limits.clone(),
        max_buffer_bytes: opts.max_buffer_bytes,
        writer_id: opts.writer_id.clone(),
        counters,
    };
    let source = KafkaSource::new(opts, handle.clone());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let stopped = || SourceError::Stopped("the kafka consumer thread".into());
    std::thread::Builder::new()
        .name("weir-kafka".into())
        .spawn(move || {
            let _ = done_tx.send(handle.block_on(pipeline.run(source, shutdown)));
        })
        .map_err(|_| stopped())?;
    done_rx.await.map_err(|_| stopped())?
}

/// The Kafka side of the pipeline: a consumer-group member.
pub struct KafkaSource {
    opts: KafkaOptions,
    handle: tokio::runtime::Handle,
    consumer: Option<BaseConsumer<WeirContext>>,
    /// Per topic: its decoder and Silver sink.
    routes: HashMap<String, (Format, usize)>,
    sinks: Option<Sinks>,
    counters: Arc<SourceCounters>,
    headers: Vec<(String, String)>,
}

impl KafkaSource {
    pub fn new(opts: KafkaOptions, handle: tokio::runtime::Handle) -> Self {
        KafkaSource {
            opts,
            handle,
            consumer: None,
            routes: HashMap::new(),
            sinks: None,
            counters: Arc::default(),
            headers: Vec::new(),
        }
    }

    fn client_config(&self) -> ClientConfig {
        let opts = &self.opts;
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
        config
    }

    /// The decoder and Silver sink of `topic`.
    fn route(&mut self, topic: &str) -> (Format, usize) {
        let sinks = self.sinks.as_ref().expect("started");
        route_for(&mut self.routes, &self.opts, sinks, topic)
    }
}

fn route_for(
    routes: &mut HashMap<String, (Format, usize)>,
    opts: &KafkaOptions,
    sinks: &Sinks,
    topic: &str,
) -> (Format, usize) {
    *routes.entry(topic.to_string()).or_insert_with(|| {
        let (format, table) = opts.route(topic);
        (format, sinks.silver_index(&table).unwrap_or(0))
    })
}

impl Source for KafkaSource {
    const NAME: &'static str = SOURCE;

    fn label(&self) -> String {
        SOURCE.to_string()
    }

    fn silver_tables(&self) -> Vec<TableIdent> {
        self.opts.silver_tables()
    }

    async fn start(
        &mut self,
        ctx: &Context,
        _buffer: &mut IngestBuffer,
        _marks: &[Watermarks],
    ) -> Result<(), SourceError> {
        self.sinks = Some(ctx.sinks.clone());
        self.counters = ctx.counters.clone();
        let context = WeirContext {
            handle: self.handle.clone(),
            lakehouse: ctx.lakehouse.clone(),
            sinks: ctx.sinks.clone(),
            start: self.opts.start,
            events: Mutex::new(Vec::new()),
            inflight: ctx.inflight.clone(),
            offsets: Mutex::new(HashMap::new()),
            brokers_up: Mutex::new(None),
        };
        let consumer: BaseConsumer<WeirContext> =
            self.client_config().create_with_context(context)?;
        let topics: Vec<&str> = self.opts.topics.iter().map(String::as_str).collect();
        if topics.is_empty() {
            return Err(SourceError::Config("no Kafka topics configured".into()));
        }
        consumer.subscribe(&topics)?;
        tracing::info!(group = %self.opts.group, topics = ?self.opts.topics, "kafka source subscribed");
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn poll(&mut self, buffer: &mut IngestBuffer) -> Result<Polled, SourceError> {
        let KafkaSource {
            opts,
            consumer,
            routes,
            sinks,
            counters,
            headers,
            ..
        } = self;
        let (Some(consumer), Some(sinks)) = (consumer.as_ref(), sinks.as_ref()) else {
            return Ok(Polled::Ended);
        };
        let polled = consumer.poll(Duration::from_millis(20));
        // A rebalance callback ran inside this poll: apply it (a revoke drops
        // the revoked partitions' rows) before its records and before
        // anything is flushed, or a flush would commit rows of partitions
        // another writer now owns and that writer's first commit would be
        // refused by the fence.
        let events: Vec<Event> =
            std::mem::take(&mut *consumer.context().events.lock().expect("events lock"));
        for event in events {
            match event {
                Event::Assigned(parts) => {
                    for (topic, partition, marks) in parts {
                        let (format, silver) = route_for(routes, opts, sinks, &topic);
                        buffer.assign(&topic, partition, format, silver, marks);
                    }
                    counters.resumed.fetch_max(1, Ordering::SeqCst);
                }
                Event::Revoked(parts) => {
                    for (topic, partition) in parts {
                        buffer.revoke(&topic, partition);
                    }
                }
            }
        }
        match polled {
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
                let msg = Message {
                    stream: m.topic(),
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key(),
                    payload: m.payload(),
                    source_ts_micros: m.timestamp().to_millis().map(|ms| ms * 1000),
                    received_micros: chrono::Utc::now().timestamp_micros(),
                };
                buffer.push(msg, headers);
            }
            Some(Err(e)) => {
                let code = e
                    .rdkafka_error_code()
                    .map_or_else(|| "other".to_string(), |c| format!("{c:?}"));
                metrics::counter!(crate::metric_names::INGEST_SOURCE_ERRORS_TOTAL, "source" => SOURCE, "error" => code)
                    .increment(1);
                tracing::warn!(error = %e, "kafka consumer error");
            }
            None => {}
        }
        Ok(Polled::More)
    }

    /// Records the group offsets (only a hint for lag monitoring: partitions
    /// start at the tables' watermarks).
    fn acknowledge(&mut self, raw: &Watermarks, closing: bool) {
        if let Some(consumer) = &self.consumer {
            let mode = if closing {
                CommitMode::Sync
            } else {
                CommitMode::Async
            };
            commit_group_offsets(consumer, raw, mode);
        }
    }

    /// Seeks every held partition back to the tables' watermarks.
    async fn reset(
        &mut self,
        buffer: &mut IngestBuffer,
        held: Vec<(Arc<str>, i32)>,
        marks: &[Watermarks],
    ) -> Result<(), SourceError> {
        for (topic, partition) in held {
            let per_sink: Vec<Option<i64>> =
                marks.iter().map(|m| m.get(&topic, partition)).collect();
            let (format, silver) = self.route(&topic);
            let start = buffer.assign(&topic, partition, format, silver, per_sink);
            let offset = match start {
                Some(o) => Offset::Offset(o),
                None if self.opts.start == StartFrom::Latest => Offset::End,
                None => Offset::Beginning,
            };
            let consumer = self.consumer.as_ref().expect("started");
            if let Err(e) = consumer.seek(&topic, partition, offset, Duration::from_secs(10)) {
                tracing::error!(%topic, partition, error = %e, "seek after reset failed");
                return Err(e.into());
            }
        }
        Ok(())
    }

    fn sealed(&mut self, buffer: &IngestBuffer) {
        if let Some(consumer) = &self.consumer {
            record_lag(consumer, buffer);
        }
    }

    /// Leaves the group (after the last commits).
    async fn close(&mut self, _report: &mut PipelineReport) {
        if let Some(consumer) = &self.consumer {
            consumer.unsubscribe();
        }
    }
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
