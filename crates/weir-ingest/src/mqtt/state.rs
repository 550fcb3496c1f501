//! The buffer side of one MQTT broker: decode, dedupe, buffer, then commit
//! and acknowledge.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rumqttc::{Publish, QoS};
use tokio::sync::mpsc;
use weir_catalog::Lakehouse;

use super::dedupe::RecentKeys;
use super::{BrokerReport, MqttCounters, MqttSourceError, MqttSourceOptions, SOURCE, template};
use crate::decode::DecodeOptions;
use crate::decode::Point;
use crate::writer::{Flush, FlushOutcome, IngestBuffer, Message, Sinks, commit_flush_with_retry};

/// The buffer side of one broker.
pub(super) struct State {
    pub(super) name: String,
    pub(super) buffer: IngestBuffer,
    pub(super) keys: RecentKeys,
    pub(super) seq: i64,
    /// QoS 1 messages buffered since the last flush: (connection generation, ack).
    pub(super) pending: Vec<(u64, Publish)>,
    pub(super) ack_tx: mpsc::UnboundedSender<(u64, Publish)>,
    pub(super) scratch: Vec<Point>,
    pub(super) report: BrokerReport,
    pub(super) epoch: u64,
    /// Receive time of each unacknowledged QoS 1 packet id, with a hash of
    /// its topic and payload: a redelivery (DUP) of the same message after a
    /// reconnect keeps its first receive time, so points timestamped with it
    /// dedupe too.
    pub(super) unacked: HashMap<u16, (u64, i64)>,
    pub(super) session: Arc<AtomicU64>,
}

impl State {
    pub(super) fn push(
        &mut self,
        opts: &MqttSourceOptions,
        session: u64,
        p: Publish,
        counters: &MqttCounters,
    ) {
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
            let dropped = self.keys.retain_new(&mut self.scratch) as u64;
            self.report.points_deduped += dropped;
            counters
                .points_deduped
                .fetch_add(dropped, Ordering::Relaxed);
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
        let taken = self.buffer.push_decoded(
            msg,
            &p.topic,
            &headers,
            opts.format.as_str(),
            decoded.as_ref().map(|_| points).map_err(String::as_str),
        );
        self.seq += 1;
        if taken {
            counters.messages.fetch_add(1, Ordering::Relaxed);
            match &decoded {
                Ok(_) => counters
                    .points
                    .fetch_add(points.len() as u64, Ordering::Relaxed),
                Err(_) => counters.dead_letters.fetch_add(1, Ordering::Relaxed),
            };
        }
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
            self.pending.push((session, ack));
        }
    }

    /// Commits everything buffered, then acknowledges its messages.
    pub(super) async fn flush(
        &mut self,
        lakehouse: &Lakehouse,
        opts: &MqttSourceOptions,
        sinks: &Sinks,
        counters: &MqttCounters,
    ) -> Result<(), MqttSourceError> {
        let Some(flush) = self.buffer.take_flush(self.epoch)? else {
            return Ok(());
        };
        let acks = std::mem::take(&mut self.pending);
        self.commit(lakehouse, opts, sinks, &flush).await?;
        self.report.flushes += 1;
        counters.flushes.fetch_add(1, Ordering::Relaxed);
        let current = self.session.load(Ordering::SeqCst);
        for (session, ack) in &acks {
            if *session == current {
                self.unacked.remove(&ack.pkid);
            }
        }
        for ack in acks {
            let _ = self.ack_tx.send(ack);
        }
        Ok(())
    }

    async fn commit(
        &mut self,
        lakehouse: &Lakehouse,
        opts: &MqttSourceOptions,
        sinks: &Sinks,
        flush: &Flush,
    ) -> Result<(), MqttSourceError> {
        match commit_flush_with_retry(lakehouse, SOURCE, &opts.writer_id, sinks, flush).await {
            Ok(FlushOutcome::Committed { elapsed, .. }) => {
                tracing::debug!(broker = %self.name, ?elapsed, "MQTT flush committed");
                Ok(())
            }
            Ok(FlushOutcome::Fenced { reason, .. }) => Err(MqttSourceError::Fenced {
                broker: self.name.clone(),
                reason,
            }),
            Err(e) => Err(MqttSourceError::CommitFailed {
                broker: self.name.clone(),
                message: e.to_string(),
            }),
        }
    }
}

fn message_hash(topic: &str, payload: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut h);
    payload.hash(&mut h);
    h.finish()
}
