//! Broker addresses (`mqtt://user:pass@host:port#name`, `mqtts://…`), the
//! rumqttc connection options (persistent session, manual acks, TLS with
//! rustls and the ring provider already in the build, credentials) and the
//! task polling the connection.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish,
    SubAck, SubscribeFilter, SubscribeReasonCode, TlsConfiguration, Transport,
};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::mpsc;

use super::MqttError;
use crate::pipeline::SourceError;

/// One configured broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Names the broker in watermarks (`weir.mqtt.<name>.offsets`) and
    /// coordinates: the URL fragment, else `host:port`.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl BrokerAddress {
    /// Parses `mqtt://[user[:pass]@]host[:port][#name]` or `mqtts://…`
    /// (default ports 1883 and 8883).
    pub fn parse(spec: &str) -> Result<Self, SourceError> {
        let bad = |why: String| SourceError::Config(format!("--mqtt-broker `{spec}`: {why}"));
        let url = url::Url::parse(spec).map_err(|e| bad(e.to_string()))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => return Err(bad(format!("scheme `{other}` (expected mqtt or mqtts)"))),
        };
        let host = url
            .host_str()
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = (!url.username().is_empty()).then(|| decode(url.username()));
        let password = url.password().map(decode);
        let name = match url.fragment() {
            Some(f) if !f.is_empty() => f.to_string(),
            _ => format!("{host}:{port}"),
        };
        if name.contains([',', '=']) {
            return Err(bad(format!(
                "broker name `{name}` may not contain `,` or `=`"
            )));
        }
        Ok(BrokerAddress {
            name,
            host,
            port,
            tls,
            username,
            password,
        })
    }
}

/// Connection settings shared by all brokers.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub client_id: String,
    /// Used for brokers whose URL carries no credentials.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificates for `mqtts://` (default: the system roots).
    pub ca_file: Option<std::path::PathBuf>,
    pub keep_alive: Duration,
}

/// rumqttc options for one broker: persistent session (clean_session=false,
/// fixed client id) and manual acks, so unacknowledged QoS 1 messages are
/// redelivered after a crash or reconnect.
pub fn mqtt_options(
    broker: &BrokerAddress,
    opts: &ConnectOptions,
) -> Result<MqttOptions, SourceError> {
    let mut o = MqttOptions::new(opts.client_id.clone(), broker.host.clone(), broker.port);
    o.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(opts.keep_alive.max(Duration::from_secs(5)))
        .set_max_packet_size(16 << 20, 1 << 20);
    let user = broker.username.clone().or_else(|| opts.username.clone());
    let pass = broker.password.clone().or_else(|| opts.password.clone());
    if let Some(user) = user {
        o.set_credentials(user, pass.unwrap_or_default());
    }
    if broker.tls {
        o.set_transport(Transport::tls_with_config(tls_config(opts)?));
    }
    Ok(o)
}

fn tls_config(opts: &ConnectOptions) -> Result<TlsConfiguration, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &opts.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(SourceError::from(MqttError::Tls(format!(
                    "{}: no PEM certificate found",
                    path.display()
                ))));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| MqttError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            // TODO(issue 4): system roots for mqtts:// without --mqtt-ca-file.
            return Err(SourceError::Config(
                "mqtts:// needs --mqtt-ca-file (the PEM CA certificates to trust)".into(),
            ));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
}

/// What the connection task reports.
pub(super) enum Ev {
    Connected { session: u64, session_present: bool },
    Publish { session: u64, publish: Publish },
    Fatal(SourceError),
}

impl Ev {
    fn fatal(e: impl Into<SourceError>) -> Self {
        Ev::Fatal(e.into())
    }
}

/// Polls the rumqttc event loop: forwards PUBLISHes, (re)subscribes when the
/// broker has no session for us, reconnects with backoff, and reports
/// refused connections (bad credentials) as fatal.
pub(super) async fn connection_loop(
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    tx: mpsc::Sender<Ev>,
    name: String,
    session: Arc<AtomicU64>,
) {
    let conn = Connection {
        client,
        filters,
        tx,
        name,
        session,
    };
    let mut delay = Duration::from_millis(100);
    let mut connected_once = false;
    loop {
        let flow = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                connected_once = true;
                delay = Duration::from_millis(100);
                conn.connected(ack.session_present).await
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => conn.forward(publish).await,
            Ok(Event::Incoming(Packet::SubAck(ack))) => conn.subscribed(&ack).await,
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => ControlFlow::Continue(()),
            Err(ConnectionError::ConnectionRefused(code)) => {
                conn.fatal(MqttError::Refused {
                    broker: conn.name.clone(),
                    reason: refusal_reason(code).into(),
                })
                .await
            }
            Err(ConnectionError::RequestsDone) => return,
            Err(ConnectionError::Tls(e)) if !connected_once => {
                conn.fatal(MqttError::Connect {
                    broker: conn.name.clone(),
                    message: format!("TLS: {e}"),
                })
                .await
            }
            Err(e) => {
                tracing::warn!(broker = %conn.name, error = %e, retry_in = ?delay, "MQTT connection lost; reconnecting");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                ControlFlow::Continue(())
            }
        };
        if flow.is_break() {
            return;
        }
    }
}

/// What the connection task needs besides the event loop: the client to
/// subscribe with, the filters, where to report, the broker's name and the
/// session counter.
struct Connection {
    client: AsyncClient,
    filters: Vec<SubscribeFilter>,
    tx: mpsc::Sender<Ev>,
    name: String,
    session: Arc<AtomicU64>,
}

impl Connection {
    /// Handles a CONNACK: starts a new session, subscribes unless the broker
    /// kept our session, and reports the connection.
    async fn connected(&self, session_present: bool) -> ControlFlow<()> {
        let g = self.session.fetch_add(1, Ordering::SeqCst) + 1;
        // A persistent session keeps its subscriptions; subscribing
        // again would redeliver retained messages.
        if !session_present && let Err(e) = self.client.try_subscribe_many(self.filters.clone()) {
            return self
                .fatal(SourceError::Config(format!(
                    "subscribing on {}: {e}",
                    self.name
                )))
                .await;
        }
        let ev = Ev::Connected {
            session: g,
            session_present,
        };
        self.send(ev).await
    }

    /// Forwards a PUBLISH, tagged with the current session.
    async fn forward(&self, publish: Publish) -> ControlFlow<()> {
        let g = self.session.load(Ordering::SeqCst);
        self.send(Ev::Publish {
            session: g,
            publish,
        })
        .await
    }

    /// Handles a SUBACK: a refused subscription is fatal.
    async fn subscribed(&self, ack: &SubAck) -> ControlFlow<()> {
        let filters: Vec<&str> = self.filters.iter().map(|f| f.path.as_str()).collect();
        if ack
            .return_codes
            .iter()
            .any(|c| matches!(c, SubscribeReasonCode::Failure))
        {
            return self
                .fatal(MqttError::Refused {
                    broker: self.name.clone(),
                    reason: format!("subscription to {filters:?} refused (not authorized?)"),
                })
                .await;
        }
        tracing::info!(broker = %self.name, ?filters, "MQTT subscribed");
        ControlFlow::Continue(())
    }

    /// Reports `ev`; stops when nobody listens any more.
    async fn send(&self, ev: Ev) -> ControlFlow<()> {
        match self.tx.send(ev).await {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    }

    /// Reports a fatal error and stops.
    async fn fatal(&self, e: impl Into<SourceError>) -> ControlFlow<()> {
        let _ = self.tx.send(Ev::fatal(e)).await;
        ControlFlow::Break(())
    }
}

/// Why the broker refused the connection, for the fatal error.
fn refusal_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => {
            "not authorized (bad user name or password, or no access)"
        }
        ConnectReturnCode::BadClientId => "client id rejected",
        ConnectReturnCode::RefusedProtocolVersion => "protocol version refused",
        ConnectReturnCode::ServiceUnavailable => "service unavailable",
        ConnectReturnCode::Success => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_broker_urls() {
        let b = BrokerAddress::parse("mqtt://u%40x:p%3Aw@127.0.0.1:1999#plant-a").unwrap();
        assert_eq!(b.name, "plant-a");
        assert_eq!((b.host.as_str(), b.port, b.tls), ("127.0.0.1", 1999, false));
        assert_eq!(b.username.as_deref(), Some("u@x"));
        assert_eq!(b.password.as_deref(), Some("p:w"));
        let b = BrokerAddress::parse("mqtts://broker.local").unwrap();
        assert_eq!(
            (b.name.as_str(), b.port, b.tls),
            ("broker.local:8883", 8883, true)
        );
        assert!(BrokerAddress::parse("http://x").is_err());
        assert!(BrokerAddress::parse("nonsense").is_err());
    }
}
