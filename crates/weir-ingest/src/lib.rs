//! Weir ingest: sources, decoders and the table writer.
//!
//! - `decode`: JSON status, JSON points, line protocol → canonical points;
//! - `pipeline`: the [`Source`] trait and the one loop every source runs in
//!   (buffer → hot tier → flush → fenced commit → acknowledge);
//! - `writer`: buffered rows → fenced Iceberg appends with source watermarks,
//!   hot-tier chunks, dead letters (source-agnostic);
//! - `kafka`: the Kafka consumer-group source feeding the writer;
//! - `modbus`: the Modbus TCP source (device registry, pollers) feeding it;
//! - `mqtt`: the MQTT source (persistent sessions, ack after commit, dedupe);
//! - `demo`: the device simulator behind `weir serve --demo`;
//! - `fuzz`: the decoders' fuzz harness (tests and `benches/fuzz_decoders.sh`).
//!

pub mod decode;
pub mod demo;
pub mod fuzz;
pub mod kafka;
pub mod metric_names;
pub mod modbus;
pub mod mqtt;
pub mod pipeline;
pub mod writer;

pub use pipeline::{
    Pipeline, PipelineReport, RunningSource, Source, SourceCounters, SourceError, SourceStatus,
};

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
