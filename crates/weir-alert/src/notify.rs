//! Notifications of committed transitions: MQTT (QoS 1, done at the
//! broker's PUBACK), Kafka (done at the broker's acknowledgement), HTTP
//! webhooks (done at a 2xx answer).
//!
//! At least once: a transition is notified only after `gold.alerts` holds
//! it, each target gets its messages in order from one worker (retrying a
//! failed message with backoff before the next, up to [`GIVE_UP_AFTER`]),
//! and the engine records in its commits how far every target got
//! ([`Notifier::delivered_through`]); after a restart the transitions past
//! that mark are sent again. Receivers deduplicate on `transition_id`
//! (also the `X-Weir-Transition` header, the Kafka key is the alert id).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::mpsc;
use weir_query::alerts::Target;

use crate::AlertError;

/// A failing message is retried this long, then dropped (and counted).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(600);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One transition to send.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: i64,
    /// Kafka key / dedupe id.
    pub alert_id: String,
    pub transition_id: String,
    pub body: Arc<Vec<u8>>,
}

type Queue = mpsc::UnboundedSender<(Message, Arc<Pending>)>;

/// Sends messages to targets; tracks which sequence numbers are done.
#[derive(Clone, Default)]
pub struct Notifier {
    workers: Arc<Mutex<HashMap<String, Queue>>>,
    book: Arc<Mutex<Book>>,
}

/// Sequence numbers handed out and not yet delivered to every target.
#[derive(Default)]
struct Book {
    open: BTreeMap<i64, ()>,
    highest: i64,
}

/// Targets still to reach for one message.
struct Pending {
    seq: i64,
    left: AtomicUsize,
    book: Arc<Mutex<Book>>,
}

impl Pending {
    fn done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.book
                .lock()
                .expect("notify book")
                .open
                .remove(&self.seq);
        }
    }
}

impl Notifier {
    /// Queues `message` for every target (none: done at once).
    pub fn send(&self, targets: &[Target], message: Message) {
        {
            let mut book = self.book.lock().expect("notify book");
            book.highest = book.highest.max(message.seq);
            if targets.is_empty() {
                return;
            }
            book.open.insert(message.seq, ());
        }
        let pending = Arc::new(Pending {
            seq: message.seq,
            left: AtomicUsize::new(targets.len()),
            book: self.book.clone(),
        });
        let mut workers = self.workers.lock().expect("notify workers");
        for target in targets {
            let key = format!("{target:?}");
            let tx = workers
                .entry(key)
                .or_insert_with(|| spawn_worker(target.clone()));
            if tx.send((message.clone(), pending.clone())).is_err() {
                pending.done();
            }
        }
    }

    /// Marks sequence numbers up to `seq` as handed out (after recovery).
    pub fn start_after(&self, seq: i64) {
        let mut book = self.book.lock().expect("notify book");
        book.highest = book.highest.max(seq);
    }

    /// The highest sequence number such that it and every one before it
    /// reached all its targets (or were given up).
    pub fn delivered_through(&self) -> i64 {
        let book = self.book.lock().expect("notify book");
        match book.open.keys().next() {
            Some(first) => first - 1,
            None => book.highest,
        }
    }

    /// Messages still on their way.
    pub fn in_flight(&self) -> usize {
        self.book.lock().expect("notify book").open.len()
    }
}

fn spawn_worker(target: Target) -> Queue {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Message, Arc<Pending>)>();
    tokio::spawn(async move {
        let kind = target.kind();
        let mut sender = match Sender::new(&target) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(target = %describe(&target), error = %e, "alert notification target unusable");
                while let Some((_, pending)) = rx.recv().await {
                    metrics::counter!(crate::metric_names::ALERT_NOTIFICATIONS_TOTAL, "target" => kind, "outcome" => "failed").increment(1);
                    pending.done();
                }
                return;
            }
        };
        while let Some((message, pending)) = rx.recv().await {
            let started = tokio::time::Instant::now();
            let mut delay = Duration::from_millis(250);
            loop {
                match tokio::time::timeout(ATTEMPT_TIMEOUT, sender.send(&message)).await {
                    Ok(Ok(())) => {
                        metrics::counter!(crate::metric_names::ALERT_NOTIFICATIONS_TOTAL, "target" => kind, "outcome" => "sent").increment(1);
                        break;
                    }
                    outcome => {
                        let error = match outcome {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".to_string(),
                        };
                        if started.elapsed() >= GIVE_UP_AFTER {
                            tracing::error!(target = %describe(&target), transition = %message.transition_id, %error,
                                "alert notification given up");
                            metrics::counter!(crate::metric_names::ALERT_NOTIFICATIONS_TOTAL, "target" => kind, "outcome" => "failed").increment(1);
                            break;
                        }
                        tracing::warn!(target = %describe(&target), transition = %message.transition_id, %error,
                            retry_in_ms = delay.as_millis() as u64, "alert notification failed; retrying");
                        metrics::counter!(crate::metric_names::ALERT_NOTIFICATIONS_TOTAL, "target" => kind, "outcome" => "retried").increment(1);
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
            pending.done();
        }
    });
    tx
}

/// A target for logs (credentials of database URLs left out).
fn describe(target: &Target) -> String {
    match target {
        Target::Postgres { url } => crate::registry_pg::redact(url),
        Target::Webhook { url } => url.clone(),
        Target::Mqtt { host, port, topic } => format!("mqtt://{host}:{port}/{topic}"),
        Target::Kafka { brokers, topic } => format!("kafka://{brokers}/{topic}"),
    }
}

enum Sender {
    Mqtt {
        client: AsyncClient,
        topic: String,
        acks: mpsc::UnboundedReceiver<MqttAck>,
    },
    Kafka {
        producer: FutureProducer,
        topic: String,
    },
    Webhook {
        client: reqwest::Client,
        url: String,
    },
    Postgres {
        url: String,
        client: Option<tokio_postgres::Client>,
    },
}

#[derive(Debug)]
enum MqttAck {
    Sent(u16),
    Acked(u16),
}

impl Sender {
    fn new(target: &Target) -> Result<Sender, AlertError> {
        Ok(match target {
            Target::Mqtt { host, port, topic } => {
                let id = format!(
                    "weir-alerts-{}-{}",
                    std::process::id(),
                    uuid::Uuid::now_v7().simple()
                );
                let mut opts = MqttOptions::new(id, host.clone(), *port);
                opts.set_keep_alive(Duration::from_secs(15));
                let (client, mut eventloop) = AsyncClient::new(opts, 64);
                let (tx, acks) = mpsc::unbounded_channel();
                let name = format!("{host}:{port}");
                tokio::spawn(async move {
                    loop {
                        match eventloop.poll().await {
                            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                                let _ = tx.send(MqttAck::Sent(pkid));
                            }
                            Ok(Event::Incoming(Packet::PubAck(ack))) => {
                                let _ = tx.send(MqttAck::Acked(ack.pkid));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                if tx.is_closed() {
                                    return;
                                }
                                tracing::debug!(broker = %name, error = %e, "alert MQTT connection; reconnecting");
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                    }
                });
                Sender::Mqtt {
                    client,
                    topic: topic.clone(),
                    acks,
                }
            }
            Target::Kafka { brokers, topic } => {
                let producer: FutureProducer = ClientConfig::new()
                    .set("bootstrap.servers", brokers)
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", "10000")
                    .create()?;
                Sender::Kafka {
                    producer,
                    topic: topic.clone(),
                }
            }
            Target::Postgres { url } => Sender::Postgres {
                url: url.clone(),
                client: None,
            },
            Target::Webhook { url } => Sender::Webhook {
                client: reqwest::Client::builder()
                    .timeout(ATTEMPT_TIMEOUT)
                    .build()?,
                url: url.clone(),
            },
        })
    }

    async fn send(&mut self, m: &Message) -> Result<(), AlertError> {
        match self {
            Sender::Mqtt {
                client,
                topic,
                acks,
            } => {
                // Acks of an earlier, timed-out attempt are stale.
                while acks.try_recv().is_ok() {}
                client
                    .publish(
                        topic.as_str(),
                        QoS::AtLeastOnce,
                        false,
                        m.body.as_ref().clone(),
                    )
                    .await?;
                // One message at a time: the next PUBLISH out is ours.
                let mut pkid = None;
                while let Some(ev) = acks.recv().await {
                    match (ev, pkid) {
                        (MqttAck::Sent(p), None) => pkid = Some(p),
                        (MqttAck::Acked(p), Some(mine)) if p == mine => return Ok(()),
                        _ => {}
                    }
                }
                Err(AlertError::MqttEnded)
            }
            Sender::Kafka { producer, topic } => {
                let record = FutureRecord::to(topic.as_str())
                    .key(m.alert_id.as_str())
                    .payload(m.body.as_slice());
                producer
                    .send(record, rdkafka::util::Timeout::After(ATTEMPT_TIMEOUT))
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| AlertError::Kafka(e))
            }
            Sender::Postgres { url, client } => {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    *client = Some(crate::registry_pg::connect(url).await?);
                }
                let body: serde_json::Value = serde_json::from_slice(&m.body)?;
                let client = client.as_ref().expect("connected above");
                crate::registry_pg::record(client, &body).await
            }
            Sender::Webhook { client, url } => {
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .header("x-weir-transition", m.transition_id.as_str())
                    .body(m.body.as_ref().clone())
                    .send()
                    .await?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(AlertError::WebhookStatus(response.status()))
                }
            }
        }
    }
}
