//! Weir ingest: sources, decoders and the table writer.
//!
//! Today: message decoders (`decode`) and the device simulator behind
//! `weir serve --demo`, which writes Silver points through the same append
//! path as every other writer.
//! TODO(issue 3): Kafka source, Bronze/Silver writer with watermarks, hot
//! tier, dead letters. TODO(issue 4): MQTT and Modbus.

pub mod decode;
pub mod demo;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("writing to {table} failed: {source}")]
    Write {
        table: String,
        source: weir_catalog::CatalogError,
    },
    #[error("building a batch failed: {0}")]
    Batch(#[from] arrow::error::ArrowError),
}
