//! `weir ingest`: run the configured sources against a (shared) lakehouse,
//! without serving SQL. Stops on SIGINT/SIGTERM after committing what it holds.

use std::io::Write;

use anyhow::{Context, bail};
use weir_config::IngestConfig;

use super::observe::Observability;
use super::sources::{self, Sources};

pub async fn run(cfg: IngestConfig, obs: &mut Observability) -> anyhow::Result<()> {
    if let Some(addr) = cfg.hot_listen
        && !addr.ip().is_loopback()
        && cfg.hot_feed_token.is_none()
    {
        bail!(
            "--hot-listen {addr} is not loopback: set --hot-feed-token (WEIR_HOT_FEED_TOKEN) so only `weir serve` with the same token reads uncommitted rows"
        );
    }
    obs.readiness.pending("catalog", "opening the catalog");
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    obs.readiness.set_ready("catalog");
    obs.refresh_tables(&lakehouse);
    let running = sources::start(&lakehouse, &cfg.sources)?;
    obs.watch_sources(&running, &cfg.sources);
    if running.is_empty() {
        bail!(
            "no sources configured (set --kafka-brokers and --kafka-topics, --mqtt-broker and --mqtt-subscribe, or --modbus-registry)"
        );
    }
    let alerts = super::alerts::start(&lakehouse, &cfg.alerts, true)?;
    // The hot tier for `weir serve --hot-tier-from`, stopped after the
    // sources' final commit (then it is empty: readers lose nothing).
    let (stop_feed, feed_stopped) = tokio::sync::watch::channel(false);
    let feed = match cfg.hot_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the hot tier feed to {addr}"))?;
            println!("weir: hot tier served on {}", listener.local_addr()?);
            Some(tokio::spawn(weir_catalog::hot_feed::serve_hot_feed(
                lakehouse.hot().clone(),
                listener,
                cfg.hot_feed_token.clone(),
                async move {
                    let mut rx = feed_stopped;
                    let _ = rx.wait_for(|stop| *stop).await;
                },
            )))
        }
        None => None,
    };
    let stop_feed = move || async move {
        let _ = stop_feed.send(true);
        if let Some(feed) = feed {
            match feed.await {
                Ok(Err(e)) => tracing::error!(error = %e, "hot tier feed failed"),
                Err(e) => tracing::error!(error = %e, "hot tier feed panicked"),
                Ok(Ok(())) => {}
            }
        }
    };
    println!(
        "weir: ingesting from {}",
        Sources::describe(&cfg.sources).join("; ")
    );
    std::io::stdout().flush()?;
    let mut running = running;
    // A source that ends by itself (fatal error) ends the process, after the
    // other sources stopped in order.
    let has = (
        running.kafka.is_some(),
        running.mqtt.is_some(),
        running.modbus.is_some(),
    );
    let ended: Option<anyhow::Result<String>> = {
        let kafka = running.kafka.as_mut().map(|(task, _)| task);
        let mqtt = running.mqtt.as_mut().map(|(task, _)| task);
        let modbus = running.modbus.as_mut().map(|(task, _)| task);
        tokio::select! {
            signal = super::serve::shutdown_signal() => {
                tracing::info!(signal, "shutting down");
                None
            }
            result = async { kafka.expect("guarded").await }, if has.0 => Some(
                result
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map(|report| format!("kafka: {report:?}")).map_err(anyhow::Error::from)),
            ),
            result = async { mqtt.expect("guarded").await }, if has.1 => Some(
                result
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map(|report| format!("mqtt: {report:?}")).map_err(anyhow::Error::from)),
            ),
            result = async { modbus.expect("guarded").await }, if has.2 => Some(
                result
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map(|report| format!("modbus: {report:?}")).map_err(anyhow::Error::from)),
            ),
        }
    };
    obs.readiness.shutting_down();
    if let Some(result) = ended {
        // The finished task is done: take it out before stopping the rest.
        if running.kafka.as_ref().is_some_and(|(t, _)| t.is_finished()) {
            running.kafka = None;
        }
        if running.mqtt.as_ref().is_some_and(|(t, _)| t.is_finished()) {
            running.mqtt = None;
        }
        if running
            .modbus
            .as_ref()
            .is_some_and(|(t, _)| t.is_finished())
        {
            running.modbus = None;
        }
        let stopped = running.stop().await;
        alerts.stop().await;
        stop_feed().await;
        let report = result?;
        stopped?;
        tracing::warn!(report, "a source ended by itself");
        return Ok(());
    }
    let stopped = running.stop().await;
    alerts.stop().await;
    stop_feed().await;
    stopped?;
    println!("weir: ingest stopped");
    Ok(())
}
