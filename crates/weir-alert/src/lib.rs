//! Standing alert rules, evaluated on rows as this process's writers seal
//! them (issue 22 item 4). See README.md.
//!
//! - rules: `CREATE ALERT` (`weir_query::alerts`) or declared in TOML
//!   ([`declared`]), kept as properties of `gold.alerts`;
//! - [`state`]: per rule and series, the state machine (event time, `FOR`,
//!   hysteresis, rate, z-score, absence);
//! - [`engine`]: the loop: the hot tier's feed of sealed batches, a tick for
//!   absence and commits, recovery from `gold.alerts` after a restart;
//! - [`notify`]: MQTT, Kafka and webhook notifications, at least once.

pub mod declared;
pub mod engine;
pub mod notify;
pub mod registry_pg;
pub mod state;

pub use engine::{AlertOptions, AlertReport, run};

/// What can stop the evaluator.
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
}
