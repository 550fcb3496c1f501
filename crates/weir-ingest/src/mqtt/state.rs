//! One MQTT broker as a pipeline source: connect, decode, dedupe, then
//! acknowledge what the pipeline committed.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use iceberg::TableIdent;
use rumqttc::{AsyncClient, Publish, QoS, SubscribeFilter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use weir_catalog::watermark::{Watermarks, property_key};

use super::connect::{self, BrokerAddress, Ev, connection_loop};
use super::dedupe::{self, RecentKeys};
use super::{DEDUPE_COMMITS, MqttError, MqttSourceOptions, SOURCE, template};
use crate::decode::{DecodeOptions, Format, Point};
use crate::pipeline::{Context, PipelineReport, Polled, Source, SourceError};
use crate::writer::{IngestBuffer, Message};

/// One broker: stream = broker name, partition 0, offsets = a sequence
/// numbered by the writer.
pub struct BrokerSource {
    opts: MqttSourceOptions,
    broker: BrokerAddress,
    name: String,
    keys: RecentKeys,
    seq: i64,
    /// QoS 1 messages buffered and not yet committed, in sequence order:
    /// (offset, connection generation, ack).
    pending: VecDeque<(i64, u64, Publish)>,
    ack_tx: Option<mpsc::UnboundedSender<(u64, Publish)>>,
    scratch: Vec<Point>,
    points_deduped: u64,
    reconnects: u64,
    connected_once: bool,
    /// Receive time of each unacknowledged QoS 1 packet id, with a hash of
    /// its topic and payload: a redelivery (DUP) of the same message after a
    /// reconnect keeps its first receive time, so points timestamped with it
    /// dedupe too.
    unacked: HashMap<u16, (u64, i64)>,
    session: Arc<AtomicU64>,
    rx: Option<mpsc::Receiver<Ev>>,
    client: Option<AsyncClient>,
    reader: Option<JoinHandle<()>>,
    acker: Option<JoinHandle<()>>,
    ticker: tokio::time::Interval,
}

impl BrokerSource {
    pub fn new(opts: MqttSourceOptions, broker: BrokerAddress) -> Self {
        let mut ticker = tokio::time::interval(super::tick(&opts.limits));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        BrokerSource {
            keys: RecentKeys::new(opts.dedupe_keys),
            name: broker.name.clone(),
            opts,
            broker,
            seq: 0,
            pending: VecDeque::new(),
            ack_tx: None,
            scratch: Vec::new(),
            points_deduped: 0,
            reconnects: 0,
            connected_once: false,
            unacked: HashMap::new(),
            session: Arc::new(AtomicU64::new(0)),
            rx: None,
            client: None,
            reader: None,
            acker: None,
            ticker,
        }
    }

    /// Connects: the connection task forwards deliveries, the ack task
    /// sends PUBACKs (so a full request channel never blocks the reader).
    fn connect(&mut self) -> Result<(), SourceError> {
        let options = connect::mqtt_options(&self.broker, &self.opts.connect)?;
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (tx, rx) = mpsc::channel::<Ev>(4096);
        let filters: Vec<SubscribeFilter> = self
            .opts
            .subscriptions
            .iter()
            .map(|s| SubscribeFilter::new(s.filter.clone(), s.qos))
            .collect();
        self.reader = Some(tokio::spawn(connection_loop(
            eventloop,
            client.clone(),
            filters,
            tx,
            self.name.clone(),
            self.session.clone(),
        )));
        let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<(u64, Publish)>();
        let acker = {
            let client = client.clone();
            let session = self.session.clone();
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
        self.acker = Some(acker);
        self.ack_tx = Some(ack_tx);
        self.client = Some(client);
        self.rx = Some(rx);
        Ok(())
    }

    fn push(&mut self, buffer: &mut IngestBuffer, session: u64, p: Publish) {
        let opts = &self.opts;
        let mut received = chrono::Utc::now().timestamp_micros();
        if p.qos != QoS::AtMostOnce {
            let hash = message_hash(&p.topic, &p.payload);
            if p.dup
                && let Some(&(h, first)) = self.unacked.get(&p.pkid)
                && h == hash
            {
                received = first;
            }
            if self.unacked.len() >= 1 << 20 {
                self.unacked.clear(); // bounded; only a fallback for number payloads
            }
            self.unacked.insert(p.pkid, (hash, received));
        }
        let fields = opts.template.as_ref().and_then(|t| t.fields(&p.topic));
        self.scratch.clear();
        let decoded = template::decode_payload(
            opts.format,
            &p.topic,
            fields.as_ref(),
            &p.payload,
            received,
            &DecodeOptions {
                max_message_bytes: opts.limits.max_message_bytes,
                limits: opts.limits.decode,
                ..DecodeOptions::default()
            },
            &mut self.scratch,
        );
        if decoded.is_ok() {
            self.points_deduped += self.keys.retain_new(&mut self.scratch) as u64;
        }
        let headers = [
            ("broker".to_string(), self.name.clone()),
            ("qos".to_string(), (p.qos as u8).to_string()),
            ("packet_id".to_string(), p.pkid.to_string()),
            ("dup".to_string(), p.dup.to_string()),
            ("retain".to_string(), p.retain.to_string()),
        ];
        let msg = Message {
            stream: &self.name,
            partition: 0,
            offset: self.seq,
            key: None,
            payload: Some(&p.payload),
            source_ts_micros: None,
            received_micros: received,
        };
        let points = &self.scratch[..];
        buffer.push_decoded(
            msg,
            &p.topic,
            &headers,
            opts.format.as_str(),
            decoded.as_ref().map(|_| points).map_err(String::as_str),
        );
        let offset = self.seq;
        self.seq += 1;
        if p.qos != QoS::AtMostOnce {
            // Only qos and packet id matter for the PUBACK.
            let ack = Publish {
                dup: false,
                qos: p.qos,
                retain: false,
                topic: String::new(),
                pkid: p.pkid,
                payload: Default::default(),
            };
            self.pending.push_back((offset, session, ack));
        }
    }
}

impl Source for BrokerSource {
    const NAME: &'static str = SOURCE;

    fn label(&self) -> String {
        format!("MQTT broker {}", self.name)
    }

    fn silver_tables(&self) -> Vec<TableIdent> {
        vec![self.opts.table.clone()]
    }

    async fn start(
        &mut self,
        ctx: &Context,
        buffer: &mut IngestBuffer,
        marks: &[Watermarks],
    ) -> Result<(), SourceError> {
        let name = self.name.clone();
        let per_sink: Vec<Option<i64>> = marks.iter().map(|m| m.get(&name, 0)).collect();
        let silver = ctx.sinks.silver_index(&self.opts.table).unwrap_or(0);
        buffer.assign(&name, 0, Format::Auto, silver, per_sink.clone());
        ctx.counters.resumed.fetch_add(1, Ordering::SeqCst);
        // Continue after the highest watermark: offsets below a table's own
        // watermark would be skipped for that table, and MQTT sequence
        // numbers are not the same messages after a restart.
        self.seq = per_sink.iter().flatten().max().copied().unwrap_or(0);

        let label = format!("{SOURCE}:{name}/0");
        let table = ctx
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
            &mut self.keys,
        )
        .await?;
        tracing::info!(broker = %name, next_sequence = self.seq, dedupe_keys_loaded = loaded, "MQTT broker starting");
        self.connect()
    }

    async fn poll(&mut self, buffer: &mut IngestBuffer) -> Result<Polled, SourceError> {
        let Some(rx) = self.rx.as_mut() else {
            return Ok(Polled::Ended);
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Ev::Publish { session, publish }) => self.push(buffer, session, publish),
                Some(Ev::Connected { session, session_present }) => {
                    if self.connected_once {
                        self.reconnects += 1;
                    }
                    self.connected_once = true;
                    tracing::info!(broker = %self.name, session_present, generation = session, "MQTT connected");
                }
                Some(Ev::Fatal(e)) => return Err(e),
                None => {
                    return Err(SourceError::Stopped(format!(
                        "the MQTT connection task of {}",
                        self.name
                    )));
                }
            },
            _ = self.ticker.tick() => {}
        }
        Ok(Polled::More)
    }

    /// Acknowledges the messages the commit covered (offsets below the raw
    /// table's new watermark).
    fn acknowledge(&mut self, raw: &Watermarks, _closing: bool) {
        let Some(next) = raw.get(&self.name, 0) else {
            return;
        };
        let current = self.session.load(Ordering::SeqCst);
        let n = self
            .pending
            .iter()
            .take_while(|(offset, _, _)| *offset < next)
            .count();
        for (_, session, ack) in self.pending.drain(..n) {
            if session == current {
                self.unacked.remove(&ack.pkid);
            }
            if let Some(tx) = &self.ack_tx {
                let _ = tx.send((session, ack));
            }
        }
    }

    /// Sequence numbers are this writer's own: a refused commit means
    /// another writer uses the same broker name, which nothing can repair.
    fn fenced(&mut self, reason: &str) -> Option<SourceError> {
        Some(
            MqttError::Fenced {
                broker: self.name.clone(),
                reason: reason.to_string(),
            }
            .into(),
        )
    }

    async fn reset(
        &mut self,
        _buffer: &mut IngestBuffer,
        _held: Vec<(Arc<str>, i32)>,
        _marks: &[Watermarks],
    ) -> Result<(), SourceError> {
        Ok(()) // never reached: `fenced` stops the source
    }

    /// Sends the queued acks, then disconnects (the acks go out before the
    /// DISCONNECT).
    async fn close(&mut self, report: &mut PipelineReport) {
        // Deliveries still arriving are dropped unacknowledged (the broker
        // keeps them for the session); draining them keeps the connection
        // task polling, so the acks and the DISCONNECT go out.
        let drainer = self
            .rx
            .take()
            .map(|mut rx| tokio::spawn(async move { while rx.recv().await.is_some() {} }));
        drop(self.ack_tx.take());
        if let Some(acker) = self.acker.take() {
            let _ = acker.await;
        }
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect()).await;
        }
        if let Some(reader) = self.reader.take()
            && tokio::time::timeout(Duration::from_secs(5), reader)
                .await
                .is_err()
        {
            tracing::warn!(broker = %self.name, "MQTT connection did not close in time");
        }
        if let Some(d) = drainer {
            d.abort();
        }
        report.detail = vec![
            ("points_deduped", self.points_deduped),
            ("reconnects", self.reconnects),
        ];
    }
}

fn message_hash(topic: &str, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}
