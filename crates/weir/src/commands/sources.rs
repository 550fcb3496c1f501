//! Starting the configured sources (shared by `weir serve` and `weir ingest`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;
use weir_catalog::Lakehouse;
use weir_config::SourcesConfig;
use weir_hot::HotTier;
use weir_ingest::kafka::{self, KafkaOptions, Route, StartFrom};
use weir_ingest::modbus::{self, ModbusOptions, PollerOptions};
use weir_ingest::mqtt::{self, MqttSourceOptions};
use weir_ingest::writer::BufferLimits;
use weir_ingest::{PipelineReport, RunningSource, SourceError};

/// Running sources; `stop` flushes and commits what they hold.
pub(super) struct Sources {
    pub running: Vec<RunningSource>,
    stop: watch::Sender<bool>,
}

impl Sources {
    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Waits until a source ends by itself (a fatal error) and takes it out
    /// of the list: its name and result. Pending forever without sources.
    pub(super) async fn ended(
        &mut self,
    ) -> (
        &'static str,
        Result<Result<Vec<PipelineReport>, SourceError>, tokio::task::JoinError>,
    ) {
        let running = &mut self.running;
        let (i, result) = std::future::poll_fn(|cx| {
            for (i, source) in running.iter_mut().enumerate() {
                if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut source.task).poll(cx) {
                    return std::task::Poll::Ready((i, r));
                }
            }
            std::task::Poll::Pending
        })
        .await;
        (self.running.remove(i).name, result)
    }

    /// A one-line description for the startup banner.
    pub(super) fn describe(cfg: &SourcesConfig) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(brokers) = &cfg.kafka.kafka_brokers {
            out.push(format!(
                "kafka {brokers} group {} topics {}",
                cfg.kafka.kafka_group,
                cfg.kafka.kafka_topics.join(",")
            ));
        }
        if let Some(registry) = &cfg.modbus.modbus_registry {
            out.push(format!("modbus registry {}", registry.display()));
        }
        if !cfg.mqtt.mqtt_brokers.is_empty() {
            // Credentials in URLs stay out of logs.
            let brokers: Vec<String> = cfg
                .mqtt
                .mqtt_brokers
                .iter()
                .map(|b| match mqtt::BrokerAddress::parse(b) {
                    Ok(a) => a.name,
                    Err(_) => "?".into(),
                })
                .collect();
            out.push(format!(
                "mqtt {} subscribe {}",
                brokers.join(","),
                cfg.mqtt.mqtt_subscribe.join(",")
            ));
        }
        out
    }

    /// Stops every source (ordered: each flushes and commits), returning
    /// whether all ended cleanly.
    pub(super) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        for source in self.running {
            let reports = source
                .task
                .await
                .with_context(|| format!("{} source task", source.name))??;
            for report in reports {
                report.log();
            }
        }
        Ok(())
    }
}

fn writer_id() -> String {
    let host = weir_catalog::leases::hostname().unwrap_or("weir");
    format!("{host}-{}", std::process::id())
}

pub(super) fn kafka_options(cfg: &SourcesConfig) -> anyhow::Result<Option<KafkaOptions>> {
    let k = &cfg.kafka;
    let Some(brokers) = k.kafka_brokers.clone() else {
        return Ok(None);
    };
    if k.kafka_topics.is_empty() {
        bail!("--kafka-brokers is set but --kafka-topics is empty");
    }
    let routes = k
        .kafka_route
        .iter()
        .map(|r| Route::parse(r).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client_options = k
        .kafka_option
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .with_context(|| format!("--kafka-option `{o}`: expected key=value"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = match k.kafka_start.as_str() {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        other => bail!("--kafka-start `{other}`: expected earliest or latest"),
    };
    let w = &cfg.writer;
    Ok(Some(KafkaOptions {
        brokers,
        group: k.kafka_group.clone(),
        topics: k.kafka_topics.clone(),
        routes,
        default_format: k.kafka_format.parse().map_err(anyhow::Error::msg)?,
        client_options,
        start,
        limits: BufferLimits {
            seal_interval: Duration::from_millis(w.hot_interval_ms.max(1)),
            commit_interval: Duration::from_millis(w.commit_interval_ms.max(1)),
            commit_bytes: w.commit_target_mb.max(1) << 20,
            max_message_bytes: w.max_message_bytes,
            decode: decode_limits(&w.decode),
        },
        max_buffer_bytes: w.max_buffer_mb.max(1) << 20,
        writer_id: writer_id(),
    }))
}

/// `postgres://...` reads the PostgreSQL registry, anything else is a TOML file.
fn registry_loader(registry: std::path::PathBuf) -> Arc<dyn modbus::RegistryLoader> {
    match registry.to_str() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Arc::new(modbus::PostgresRegistry::new(url))
        }
        _ => Arc::new(modbus::TomlRegistry { path: registry }),
    }
}

pub(super) fn modbus_options(cfg: &SourcesConfig) -> Option<ModbusOptions> {
    let m = &cfg.modbus;
    let registry = m.modbus_registry.clone()?;
    Some(ModbusOptions {
        registry: registry_loader(registry),
        poller: PollerOptions {
            timeout: Duration::from_millis(m.modbus_timeout_ms.max(1)),
            reconnect_min: Duration::from_millis(m.modbus_reconnect_min_ms.max(1)),
            reconnect_max: Duration::from_millis(
                m.modbus_reconnect_max_ms
                    .max(m.modbus_reconnect_min_ms.max(1)),
            ),
            max_gap: m.modbus_max_gap,
        },
        limits: buffer_limits(cfg),
        writer_id: writer_id(),
    })
}

fn buffer_limits(cfg: &SourcesConfig) -> BufferLimits {
    let w = &cfg.writer;
    BufferLimits {
        seal_interval: Duration::from_millis(w.hot_interval_ms.max(1)),
        commit_interval: Duration::from_millis(w.commit_interval_ms.max(1)),
        commit_bytes: w.commit_target_mb.max(1) << 20,
        max_message_bytes: w.max_message_bytes,
        decode: decode_limits(&w.decode),
    }
}

fn decode_limits(d: &weir_config::DecodeLimitsConfig) -> weir_ingest::decode::DecodeLimits {
    weir_ingest::decode::DecodeLimits {
        labels_per_point: d.decode_max_labels_per_point,
        points_per_message: d.decode_max_points_per_message,
        labels_per_message: d.decode_max_labels_per_message,
        fields_per_object: d.decode_max_fields_per_object,
        depth: d.decode_max_depth,
        key_bytes: d.decode_max_key_bytes,
        value_bytes: d.decode_max_value_bytes,
        decoded_bytes: d.decode_max_decoded_mb.saturating_mul(1 << 20),
    }
}

pub(super) fn mqtt_options(cfg: &SourcesConfig) -> anyhow::Result<Option<MqttSourceOptions>> {
    let m = &cfg.mqtt;
    if m.mqtt_brokers.is_empty() {
        return Ok(None);
    }
    if m.mqtt_subscribe.is_empty() {
        bail!("--mqtt-broker is set but --mqtt-subscribe is empty");
    }
    let brokers = m
        .mqtt_brokers
        .iter()
        .map(|b| mqtt::BrokerAddress::parse(b))
        .collect::<Result<Vec<_>, _>>()?;
    let qos = mqtt::parse_qos(&m.mqtt_qos).context("--mqtt-qos")?;
    let subscriptions = m
        .mqtt_subscribe
        .iter()
        .map(|s| mqtt::Subscription::parse(s, qos))
        .collect::<Result<Vec<_>, _>>()?;
    let template = m
        .mqtt_topic_template
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    Ok(Some(MqttSourceOptions {
        brokers,
        subscriptions,
        template,
        format: m.mqtt_format.parse().map_err(anyhow::Error::msg)?,
        connect: mqtt::ConnectOptions {
            client_id: m.mqtt_client_id.clone(),
            username: m.mqtt_username.clone(),
            password: m.mqtt_password.clone(),
            ca_file: m.mqtt_ca_file.clone(),
            keep_alive: m.mqtt_keep_alive,
        },
        table: mqtt::parse_table(&m.mqtt_table)?,
        limits: buffer_limits(cfg),
        max_buffer_bytes: cfg.writer.max_buffer_mb.max(1) << 20,
        dedupe_keys: m.mqtt_dedupe_keys,
        writer_id: writer_id(),
    }))
}

/// Starts every configured source.
/// Their sealed rows wait in `hot` until committed.
pub(super) fn start(
    lakehouse: &Lakehouse,
    hot: &Arc<HotTier>,
    cfg: &SourcesConfig,
) -> anyhow::Result<Sources> {
    let (stop, stopped) = watch::channel(false);
    let mut running = Vec::new();
    if let Some(opts) = kafka_options(cfg)? {
        running.push(kafka::spawn(
            lakehouse.clone(),
            hot.clone(),
            opts,
            stopped.clone(),
        ));
    }
    if let Some(opts) = modbus_options(cfg) {
        running.push(modbus::spawn(
            lakehouse.clone(),
            hot.clone(),
            opts,
            stopped.clone(),
        ));
    }
    if let Some(opts) = mqtt_options(cfg)? {
        running.push(mqtt::spawn(
            lakehouse.clone(),
            hot.clone(),
            opts,
            stopped.clone(),
        ));
    }
    Ok(Sources { running, stop })
}
