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
        bail!("no sources configured (set --kafka-brokers and --kafka-topics)");
    }
    println!(
        "weir: ingesting from {}",
        Sources::describe(&cfg.sources).join("; ")
    );
    std::io::stdout().flush()?;
    let mut running = running;
    // A source that ends by itself (fatal error) ends the process.
    let early = match running.kafka.as_mut() {
        Some((task, _)) => tokio::select! {
            signal = super::serve::shutdown_signal() => { tracing::info!(signal, "shutting down"); None }
            result = task => Some(result),
        },
        None => None,
    };
    if let Some(result) = early {
        running.kafka = None;
        let report = result??;
        tracing::warn!(?report, "kafka source ended");
        return Ok(());
    }
    running.stop().await?;
    println!("weir: ingest stopped");
    Ok(())
}
