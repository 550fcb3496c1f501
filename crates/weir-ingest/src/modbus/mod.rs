//! Modbus TCP source: devices polled directly, feeding the same streaming
//! writer (Bronze raw rows, Silver points, hot tier, dead letters) as Kafka.
//!
//! - `registry`, `registry_pg`: devices and tags (TOML file; PostgreSQL);
//! - `registers`: data types × byte/word orders;
//! - `plan`: scan groups and contiguous-register batching;
//! - `poller`: one task per device (timeouts, backoff, quality, status);
//! - `source`: polls → `IngestBuffer` → fenced commits with a per-device
//!   poll sequence as the watermark (`weir.modbus.<device>.offsets = 0=<next>`).

pub mod plan;
pub mod poller;
pub mod registers;
pub mod registry;
pub mod registry_pg;
pub mod source;

use std::path::PathBuf;

pub use poller::{PollCounters, PollerOptions, Status};
pub use registry::{Device, RegistryLoader, Tag, TomlRegistry};
pub use registry_pg::PostgresRegistry;
pub use source::{ModbusOptions, ModbusSource, SOURCE, run, spawn};

/// What is specific to the Modbus source's failures: the registry (these
/// stop the source) and connecting to a device (the poller records these as
/// the device's error and retries).
#[derive(Debug, thiserror::Error)]
pub enum ModbusError {
    #[error("cannot read the device registry {path}: {source}")]
    RegistryRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the device registry from {url}: {source}")]
    RegistryDb {
        url: String,
        source: tokio_postgres::Error,
    },
    #[error("device registry {path}: {message}")]
    RegistryInvalid { path: PathBuf, message: String },
    #[error("the device registry lists no enabled Modbus TCP device with tags")]
    NoDevices,
    #[error("cannot resolve {endpoint}: {source}")]
    Resolve {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("{endpoint} resolves to no address")]
    NoAddress { endpoint: String },
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: std::io::Error,
    },
    #[error("connecting to {endpoint} timed out after {timeout:?}")]
    ConnectTimeout {
        endpoint: String,
        timeout: std::time::Duration,
    },
}
