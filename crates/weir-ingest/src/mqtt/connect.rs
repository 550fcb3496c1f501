//! Broker addresses (`mqtt://user:pass@host:port#name`, `mqtts://…`) and
//! the rumqttc connection options: persistent session, manual acks, TLS
//! (rustls with the ring provider already in the build), credentials.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::MqttSourceError;

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
    pub fn parse(spec: &str) -> Result<Self, MqttSourceError> {
        let bad = |why: String| MqttSourceError::Config(format!("--mqtt-broker `{spec}`: {why}"));
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
) -> Result<MqttOptions, MqttSourceError> {
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

fn tls_config(opts: &ConnectOptions) -> Result<TlsConfiguration, MqttSourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &opts.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| MqttSourceError::Tls(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(MqttSourceError::Tls(format!(
                    "{}: no PEM certificate found",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| MqttSourceError::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            // TODO(issue 4): system roots for mqtts:// without --mqtt-ca-file.
            return Err(MqttSourceError::Config(
                "mqtts:// needs --mqtt-ca-file (the PEM CA certificates to trust)".into(),
            ));
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttSourceError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
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
