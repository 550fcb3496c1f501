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

use std::time::Duration;

use iceberg::TableIdent;
use rumqttc::QoS;
use tokio::sync::watch;
use weir_catalog::Lakehouse;
use weir_hot::HotTier;

pub use connect::{BrokerAddress, ConnectOptions};
pub use state::BrokerSource;
pub use template::{MqttFormat, TopicTemplate};

use crate::pipeline::{Pipeline, PipelineReport, RunningSource, SourceCounters, SourceError};
use crate::writer::BufferLimits;

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
    pub fn parse(spec: &str, default_qos: QoS) -> Result<Self, SourceError> {
        let (filter, qos) = match spec.rsplit_once('=') {
            Some((f, q)) if matches!(q.trim(), "0" | "1" | "2") => (f.trim(), parse_qos(q)?),
            _ => (spec.trim(), default_qos),
        };
        if filter.is_empty() {
            return Err(SourceError::Config(format!(
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
pub fn parse_qos(s: &str) -> Result<QoS, SourceError> {
    match s.trim() {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        other => Err(SourceError::Config(format!(
            "QoS `{other}`: expected 0 or 1"
        ))),
    }
}

/// Parses the Silver table name, `namespace.table`.
pub fn parse_table(s: &str) -> Result<TableIdent, SourceError> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(SourceError::Config(format!(
            "--mqtt-table `{s}`: expected namespace.table"
        )));
    }
    TableIdent::from_strs(parts).map_err(|e| SourceError::Config(e.to_string()))
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

/// What is specific to the MQTT source's failures.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("MQTT broker {broker} refused the connection: {reason}")]
    Refused { broker: String, reason: String },
    #[error("MQTT broker {broker}: cannot connect: {message}")]
    Connect { broker: String, message: String },
    /// Reading the table's snapshots and manifests for dedupe.
    #[error("loading recent points of {table} for dedupe: {source}")]
    Dedupe {
        table: String,
        source: Box<iceberg::Error>,
    },
    /// Opening or decoding one of those data files (`table` names it).
    #[error("loading recent points of {table} for dedupe: {source}")]
    DedupeFile {
        table: String,
        source: parquet::errors::ParquetError,
    },
    #[error("loading recent points of {table} for dedupe: {source}")]
    DedupeBatch {
        table: String,
        source: arrow::error::ArrowError,
    },
    /// A data file without a key column, or with one of another type.
    #[error("loading recent points of {table} for dedupe: column `{column}` {problem}")]
    DedupeColumn {
        table: String,
        column: &'static str,
        problem: &'static str,
    },
    #[error(
        "commit for MQTT broker {broker} refused: {reason} (is another writer using the same broker name?)"
    )]
    Fenced { broker: String, reason: String },
}

/// Starts the MQTT source on its own task.
pub fn spawn(
    lakehouse: Lakehouse,
    hot: std::sync::Arc<HotTier>,
    opts: MqttSourceOptions,
    shutdown: watch::Receiver<bool>,
) -> RunningSource {
    RunningSource::spawn(
        SOURCE,
        opts.brokers.len(),
        |resumed, brokers| format!("mqtt: {resumed} of {brokers} brokers resumed"),
        |counters| run(lakehouse, hot, opts, counters, shutdown),
    )
}

/// Runs every broker (a pipeline each) until `shutdown` turns true (or one
/// fails: the others then stop too), each flushing, committing and
/// acknowledging what it holds.
pub async fn run(
    lakehouse: Lakehouse,
    hot: std::sync::Arc<HotTier>,
    opts: MqttSourceOptions,
    counters: std::sync::Arc<SourceCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Vec<PipelineReport>, SourceError> {
    if opts.brokers.is_empty() || opts.subscriptions.is_empty() {
        return Err(SourceError::Config(
            "the MQTT source needs --mqtt-broker and --mqtt-subscribe".into(),
        ));
    }
    let mut names: Vec<&str> = opts.brokers.iter().map(|b| b.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(SourceError::Config(
            "two MQTT brokers have the same name; name them with a URL fragment (mqtt://host:port#name)".into(),
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
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
        let pipeline = Pipeline {
            lakehouse: lakehouse.clone(),
            hot: hot.clone(),
            limits: opts.limits.clone(),
            max_buffer_bytes: opts.max_buffer_bytes,
            writer_id: opts.writer_id.clone(),
            counters: counters.clone(),
        };
        let source = BrokerSource::new(opts.clone(), broker);
        tasks.spawn(pipeline.run(source, stop_rx.clone()));
    }
    let mut reports = Vec::new();
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(r)) => reports.push(r),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "MQTT source failed; stopping its other brokers");
                let _ = stop_tx.send(true);
                first_error.get_or_insert(e);
            }
            Err(e) => {
                let _ = stop_tx.send(true);
                first_error
                    .get_or_insert(SourceError::Stopped(format!("an MQTT broker task ({e})")));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(reports),
    }
}

/// The read side's tick: seals and flushes happen on time without traffic.
fn tick(limits: &BufferLimits) -> Duration {
    limits
        .seal_interval
        .min(Duration::from_millis(50))
        .max(Duration::from_millis(5))
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
