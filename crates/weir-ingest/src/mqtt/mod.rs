//! MQTT source: one rumqttc client per broker feeding the streaming writer.
//!
//! # Guarantee
//!
//! MQTT has no broker offsets, so the writer numbers the messages of each
//! broker itself: stream = broker name, partition 0, offset = a sequence that
//! continues from the highest watermark in the tables
//! (`weir.mqtt.<broker>.offsets` in every snapshot summary). Messages are
//! received with QoS 1 on a persistent session (clean_session=false, fixed
//! client id) with manual acks, and a PUBLISH is acknowledged only after the
//! flush holding it committed all tables. So:
//! - nothing acknowledged is lost: a crash, a broker restart or a Weir stop
//!   leaves the unacknowledged messages with the broker, which redelivers
//!   them (and what was published meanwhile) to the same session;
//! - a redelivered message that was already committed does not become a
//!   second Silver point: points are deduplicated on (device_id, metric, ts)
//!   against the keys buffered or committed recently ([`dedupe`]; after a
//!   restart, rebuilt from the Silver files of this broker's last commits).
//!   Payloads without their own timestamp get the receive time; a DUP
//!   redelivery after a reconnect keeps the first one, but after a Weir
//!   crash it is new: those are at-least-once across crashes (TODO(issue 4)).
//! - Bronze keeps every delivery (a redelivery is a second raw row with the
//!   `dup` header), with broker, topic, QoS, packet id and receive time.
//!
//! QoS 0 subscriptions are at-most-once by definition.

pub mod connect;
pub mod dedupe;
mod state;
pub mod template;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iceberg::TableIdent;
use rumqttc::{AsyncClient, Publish, QoS, SubscribeFilter};
use tokio::sync::{mpsc, watch};
use weir_catalog::Lakehouse;
use weir_catalog::watermark::property_key;

pub use connect::{BrokerAddress, ConnectOptions};
pub use template::{MqttFormat, TopicTemplate};

use crate::decode::Format;
use crate::writer::{BufferLimits, BufferStats, IngestBuffer, Sinks};
use connect::{Ev, connection_loop};
use dedupe::RecentKeys;
use state::State;

/// Watermark namespace of this source in snapshot summaries.
pub const SOURCE: &str = "mqtt";

/// Silver commits of a broker whose points are reloaded for dedupe at start.
const DEDUPE_COMMITS: usize = 4;

/// One subscription: a topic filter (wildcards `+`/`#`) and its QoS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    pub qos: QoS,
}

impl Subscription {
    /// Parses `FILTER` or `FILTER=QOS` (QoS 0 or 1; a suffix that is not a
    /// QoS level is part of the filter).
    pub fn parse(spec: &str, default_qos: QoS) -> Result<Self, MqttSourceError> {
        let (filter, qos) = match spec.rsplit_once('=') {
            Some((f, q)) if matches!(q.trim(), "0" | "1" | "2") => (f.trim(), parse_qos(q)?),
            _ => (spec.trim(), default_qos),
        };
        if filter.is_empty() {
            return Err(MqttSourceError::Config(format!(
                "--mqtt-subscribe `{spec}`: empty topic filter"
            )));
        }
        Ok(Subscription {
            filter: filter.to_string(),
            qos,
        })
    }
}

/// Parses a QoS level (0 or 1; 2 is not needed: dedupe covers redelivery).
pub fn parse_qos(s: &str) -> Result<QoS, MqttSourceError> {
    match s.trim() {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        other => Err(MqttSourceError::Config(format!(
            "QoS `{other}`: expected 0 or 1"
        ))),
    }
}

/// Parses the Silver table name, `namespace.table`.
pub fn parse_table(s: &str) -> Result<TableIdent, MqttSourceError> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(MqttSourceError::Config(format!(
            "--mqtt-table `{s}`: expected namespace.table"
        )));
    }
    TableIdent::from_strs(parts).map_err(|e| MqttSourceError::Config(e.to_string()))
}

/// Everything the MQTT source needs.
#[derive(Debug, Clone)]
pub struct MqttSourceOptions {
    pub brokers: Vec<BrokerAddress>,
    pub subscriptions: Vec<Subscription>,
    pub template: Option<TopicTemplate>,
    pub format: MqttFormat,
    pub connect: ConnectOptions,
    /// Silver table the points go to.
    pub table: TableIdent,
    pub limits: BufferLimits,
    /// Most bytes buffered before a flush is forced.
    pub max_buffer_bytes: usize,
    /// Point keys remembered for dedupe, per broker.
    pub dedupe_keys: usize,
    pub writer_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MqttSourceError {
    #[error("{0}")]
    Config(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("MQTT broker {broker} refused the connection: {reason}")]
    Refused { broker: String, reason: String },
    #[error("MQTT broker {broker}: cannot connect: {message}")]
    Connect { broker: String, message: String },
    #[error(transparent)]
    Catalog(#[from] weir_catalog::CatalogError),
    #[error("building a batch failed: {0}")]
    Batch(#[from] arrow::error::ArrowError),
    #[error("loading recent points of {table} for dedupe: {message}")]
    Dedupe { table: String, message: String },
    #[error(
        "commit for MQTT broker {broker} refused: {reason} (is another writer using the same broker name?)"
    )]
    Fenced { broker: String, reason: String },
    #[error("commits for MQTT broker {broker} keep failing: {message}")]
    CommitFailed { broker: String, message: String },
    #[error("the MQTT connection task of {0} stopped unexpectedly")]
    Task(String),
}

/// Live counters (all brokers), readable while the source runs.
#[derive(Debug, Default)]
pub struct MqttCounters {
    pub messages: AtomicU64,
    pub points: AtomicU64,
    pub dead_letters: AtomicU64,
    pub points_deduped: AtomicU64,
    pub flushes: AtomicU64,
    /// Brokers whose sequence resumed from the tables' watermarks (readiness).
    pub brokers_resumed: std::sync::atomic::AtomicUsize,
}

/// What a run did, per broker.
#[derive(Debug, Default, Clone)]
pub struct MqttReport {
    pub brokers: Vec<BrokerReport>,
}

#[derive(Debug, Default, Clone)]
pub struct BrokerReport {
    pub broker: String,
    pub stats: BufferStats,
    pub points_deduped: u64,
    pub flushes: u64,
    pub reconnects: u64,
}

/// Runs every broker until `shutdown` turns true (or one fails: the others
/// then stop too), each flushing, committing and acknowledging what it holds.
pub async fn run(
    lakehouse: Lakehouse,
    opts: MqttSourceOptions,
    counters: Arc<MqttCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<MqttReport, MqttSourceError> {
    if opts.brokers.is_empty() || opts.subscriptions.is_empty() {
        return Err(MqttSourceError::Config(
            "the MQTT source needs --mqtt-broker and --mqtt-subscribe".into(),
        ));
    }
    let mut names: Vec<&str> = opts.brokers.iter().map(|b| b.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(MqttSourceError::Config(
            "two MQTT brokers have the same name; name them with a URL fragment (mqtt://host:port#name)".into(),
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
            let _ = stop_tx.send(true);
        });
    }
    let mut tasks = tokio::task::JoinSet::new();
    for broker in opts.brokers.clone() {
        let task = BrokerTask::new(
            lakehouse.clone(),
            opts.clone(),
            broker,
            counters.clone(),
            stop_rx.clone(),
        );
        tasks.spawn(task.run());
    }
    let mut report = MqttReport::default();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(r)) => report.brokers.push(r),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "MQTT source failed; stopping its other brokers");
                let _ = stop_tx.send(true);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                first_error.get_or_insert(MqttSourceError::Task(e.to_string()));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

struct BrokerTask {
    lakehouse: Lakehouse,
    opts: MqttSourceOptions,
    broker: BrokerAddress,
    counters: Arc<MqttCounters>,
    stop: watch::Receiver<bool>,
}

impl BrokerTask {
    fn new(
        lakehouse: Lakehouse,
        opts: MqttSourceOptions,
        broker: BrokerAddress,
        counters: Arc<MqttCounters>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        BrokerTask {
            lakehouse,
            opts,
            broker,
            counters,
            stop,
        }
    }

    async fn run(mut self) -> Result<BrokerReport, MqttSourceError> {
        let name = self.broker.name.clone();
        let sinks = Sinks::new(std::slice::from_ref(&self.opts.table));
        let marks = sinks.load_watermarks(&self.lakehouse, SOURCE).await?;
        let per_sink: Vec<Option<i64>> = marks.iter().map(|m| m.get(&name, 0)).collect();
        let mut buffer = IngestBuffer::new(
            SOURCE,
            sinks.clone(),
            self.lakehouse.hot().clone(),
            self.opts.limits.clone(),
        );
        let silver = sinks.silver_index(&self.opts.table).unwrap_or(0);
        buffer.assign(&name, 0, Format::Auto, silver, per_sink.clone());
        self.counters
            .brokers_resumed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Continue after the highest watermark: offsets below a table's own
        // watermark would be skipped for that table, and MQTT sequence
        // numbers are not the same messages after a restart.
        let seq = per_sink.iter().flatten().max().copied().unwrap_or(0);

        let mut keys = RecentKeys::new(self.opts.dedupe_keys);
        let label = format!("{SOURCE}:{name}/0");
        let table = self
            .lakehouse
            .catalog()
            .load_table(&self.opts.table)
            .await
            .map_err(|e| weir_catalog::CatalogError::iceberg(self.opts.table.to_string(), e))?;
        let loaded = dedupe::load_recent(
            &table,
            &property_key(SOURCE, &name),
            &label,
            DEDUPE_COMMITS,
            &mut keys,
        )
        .await?;
        tracing::info!(broker = %name, next_sequence = seq, dedupe_keys_loaded = loaded, "MQTT broker starting");

        let options = connect::mqtt_options(&self.broker, &self.opts.connect)?;
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (tx, mut rx) = mpsc::channel::<Ev>(4096);
        let session = Arc::new(AtomicU64::new(0));
        let filters: Vec<SubscribeFilter> = self
            .opts
            .subscriptions
            .iter()
            .map(|s| SubscribeFilter::new(s.filter.clone(), s.qos))
            .collect();
        let reader = tokio::spawn(connection_loop(
            eventloop,
            client.clone(),
            filters,
            tx,
            name.clone(),
            session.clone(),
        ));
        // Acks go through their own task so a full request channel never
        // blocks the loop that drains incoming messages.
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, Publish)>();
        let acker = {
            let client = client.clone();
            let session = session.clone();
            tokio::spawn(async move {
                while let Some((g, p)) = ack_rx.recv().await {
                    // A reconnect started a new session delivery: the broker
                    // resends what was unacknowledged, acked on its next flush.
                    if g == session.load(Ordering::SeqCst) && client.ack(&p).await.is_err() {
                        break;
                    }
                }
            })
        };

        let mut state = State {
            name: name.clone(),
            buffer,
            keys,
            seq,
            pending: Vec::new(),
            unacked: HashMap::new(),
            session: session.clone(),
            ack_tx,
            scratch: Vec::new(),
            report: BrokerReport {
                broker: name.clone(),
                ..Default::default()
            },
            epoch: 0,
        };
        let tick = self
            .opts
            .limits
            .seal_interval
            .min(Duration::from_millis(50));
        let mut ticker = tokio::time::interval(tick.max(Duration::from_millis(5)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failure = None;
        let mut connected_once = false;
        loop {
            if *self.stop.borrow_and_update() {
                break;
            }
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(Ev::Publish { session, publish }) => {
                        state.push(&self.opts, session, publish, &self.counters);
                        if state.buffer.bytes() >= self.opts.max_buffer_bytes
                            && let Err(e) = state.flush(&self.lakehouse, &self.opts, &sinks, &self.counters).await
                        {
                            failure = Some(e);
                            break;
                        }
                    }
                    Some(Ev::Connected { session, session_present }) => {
                        if connected_once {
                            state.report.reconnects += 1;
                        }
                        connected_once = true;
                        tracing::info!(broker = %name, session_present, generation = session, "MQTT connected");
                    }
                    Some(Ev::Fatal(e)) => {
                        failure = Some(e);
                        break;
                    }
                    None => {
                        failure = Some(MqttSourceError::Task(name.clone()));
                        break;
                    }
                },
                _ = ticker.tick() => {
                    if state.buffer.seal_due()
                        && let Err(e) = state.buffer.seal()
                    {
                        failure = Some(e.into());
                        break;
                    }
                    if state.buffer.flush_due()
                        && let Err(e) = state.flush(&self.lakehouse, &self.opts, &sinks, &self.counters).await
                    {
                        failure = Some(e);
                        break;
                    }
                }
                _ = self.stop.changed() => {}
            }
        }
        // Ordered stop: flush and commit what is buffered, then ack it, then
        // disconnect (queued acks are sent before the DISCONNECT).
        let committed = match &failure {
            Some(MqttSourceError::Fenced { .. }) | Some(MqttSourceError::CommitFailed { .. }) => {
                Ok(())
            }
            _ => {
                state
                    .flush(&self.lakehouse, &self.opts, &sinks, &self.counters)
                    .await
            }
        };
        // Deliveries still arriving are dropped unacknowledged (the broker
        // keeps them for the session); draining them keeps the connection
        // task polling, so the acks and the DISCONNECT go out.
        let drainer = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        drop(state.ack_tx);
        let _ = acker.await;
        let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
        if tokio::time::timeout(Duration::from_secs(5), &mut { reader })
            .await
            .is_err()
        {
            tracing::warn!(broker = %name, "MQTT connection did not close in time");
        }
        drainer.abort();
        state.report.stats = state.buffer.stats;
        match (failure, committed) {
            (Some(e), _) | (None, Err(e)) => Err(e),
            (None, Ok(())) => Ok(state.report),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse_with_optional_qos() {
        let s = Subscription::parse("plant/+/+/+", QoS::AtLeastOnce).unwrap();
        assert_eq!(
            (s.filter.as_str(), s.qos),
            ("plant/+/+/+", QoS::AtLeastOnce)
        );
        let s = Subscription::parse("alarms/#=0", QoS::AtLeastOnce).unwrap();
        assert_eq!((s.filter.as_str(), s.qos), ("alarms/#", QoS::AtMostOnce));
        let s = Subscription::parse("a=b/c", QoS::AtMostOnce).unwrap();
        assert_eq!(s.filter, "a=b/c");
        assert!(
            Subscription::parse("x=2", QoS::AtLeastOnce).is_err(),
            "QoS 2 is refused"
        );
        assert!(Subscription::parse(" =1", QoS::AtLeastOnce).is_err());
        assert!(parse_table("silver.points").is_ok());
        assert!(parse_table("points").is_err());
    }
}
