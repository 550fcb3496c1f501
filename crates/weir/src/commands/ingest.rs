//! `weir ingest`: run the configured sources against a (shared) lakehouse,
//! without serving SQL. Stops on SIGINT/SIGTERM after committing what it holds.

use std::io::Write;

use anyhow::bail;
use weir_config::IngestConfig;

use super::sources::{self, Sources};

pub async fn run(cfg: IngestConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let running = sources::start(&lakehouse, &cfg.sources)?;
    if running.is_empty() {
        bail!(
            "no sources configured (set --kafka-brokers and --kafka-topics, or --modbus-registry)"
        );
    }
    println!(
        "weir: ingesting from {}",
        Sources::describe(&cfg.sources).join("; ")
    );
    std::io::stdout().flush()?;
    let mut running = running;
    // A source that ends by itself (fatal error) ends the process.
    let kafka_ended = async {
        match running.kafka.as_mut() {
            Some((task, _)) => task.await,
            None => std::future::pending().await,
        }
    };
    let modbus_ended = async {
        match running.modbus.as_mut() {
            Some((task, _)) => task.await,
            None => std::future::pending().await,
        }
    };
    // Which source ended, with its report as text (or its error).
    let ended: Option<(&str, anyhow::Result<String>)> = tokio::select! {
        signal = super::serve::shutdown_signal() => { tracing::info!(signal, "shutting down"); None }
        result = kafka_ended => Some(("kafka", result.map_err(anyhow::Error::from).and_then(
            |r| r.map(|report| format!("{report:?}")).map_err(anyhow::Error::from)))),
        result = modbus_ended => Some(("modbus", result.map_err(anyhow::Error::from).and_then(
            |r| r.map(|report| format!("{report:?}")).map_err(anyhow::Error::from)))),
    };
    if let Some((source, result)) = ended {
        match source {
            "kafka" => running.kafka = None,
            _ => running.modbus = None,
        }
        // The other sources still flush and commit what they hold.
        let stopped = running.stop().await;
        let report = result?;
        tracing::warn!(source, report, "source ended");
        return stopped;
    }
    running.stop().await?;
    println!("weir: ingest stopped");
    Ok(())
}
