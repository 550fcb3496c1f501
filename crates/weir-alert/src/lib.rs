//! Standing alert rules, evaluated on rows as this process's writers seal
//! them (issue 22 item 4). See README.md.
//!
//! - rules: `CREATE ALERT` (`weir_query::alerts`) or declared in TOML
//!   ([`declared`]), kept as properties of `gold.alerts`;
//! - [`state`]: per rule and series, the state machine (event time, `FOR`,
//!   hysteresis, rate, z-score, absence);
//! - [`engine`]: the loop: the hot tier's feed of sealed batches, a tick for
//!   absence and commits, recovery from `gold.alerts` after a restart;
//! - [`sync`]: other evaluators' transitions (series handed over in a Kafka
//!   rebalance);
//! - [`notify`]: MQTT, Kafka and webhook notifications, at least once.

pub mod declared;
pub mod engine;
pub mod metric_names;
pub mod notify;
pub mod registry_pg;
pub mod state;
pub mod sync;

pub use engine::{AlertOptions, AlertReport, run};

/// What can go wrong in the evaluator: the first four stop it; the rest are
/// what one notification attempt reports (logged, retried, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert rules: {0}")]
    Rules(#[from] weir_query::QueryError),
    #[error("gold.alerts: {0}")]
    Catalog(#[from] weir_catalog::CatalogError),
    #[error("reading gold.alerts: {0}")]
    Read(String),
    #[error("alert rules file {file}: {message}")]
    Declared { file: String, message: String },
    /// Connecting to a PostgreSQL registry (`url` without its password).
    #[error("{url}: {source}")]
    RegistryConnect {
        url: String,
        source: tokio_postgres::Error,
    },
    /// A statement on the registry's `alert_rules`/`alert_history` failed.
    #[error("{0}")]
    Registry(#[from] tokio_postgres::Error),
    /// A transition names a rule the registry no longer has.
    #[error("no alert_rules row named {0}")]
    NoRegistryRule(String),
    /// A notification body that is not the JSON this crate wrote.
    #[error("{0}")]
    Body(#[from] serde_json::Error),
    /// Publishing to the MQTT broker failed.
    #[error("{0}")]
    MqttPublish(#[from] rumqttc::ClientError),
    /// The MQTT event loop stopped before the broker acknowledged.
    #[error("MQTT connection task ended")]
    MqttEnded,
    /// Creating the Kafka producer or producing failed.
    #[error("{0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Building the webhook client or sending the request failed.
    #[error("{0}")]
    Webhook(#[from] reqwest::Error),
    /// The webhook answered with a status other than 2xx.
    #[error("HTTP {0}")]
    WebhookStatus(reqwest::StatusCode),
}
