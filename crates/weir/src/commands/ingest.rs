//! `weir ingest`: run the configured sources against a (shared) lakehouse,
//! without serving SQL. Stops on SIGINT/SIGTERM after committing what it holds.

use std::io::Write;

use anyhow::{Context, bail};
use weir_config::IngestConfig;

use super::observe::Observability;
use super::sources::{self, Sources};

pub(super) async fn run(cfg: IngestConfig, obs: &mut Observability) -> anyhow::Result<()> {
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
    // This process's hot tier: the sources' sealed rows until committed,
    // served to `weir serve --hot-tier-from` with `--hot-listen`.
    let hot = weir_hot::HotTiers::default();
    let running = sources::start(&lakehouse, hot.local(), &cfg.sources)?;
    obs.watch_sources(&running);
    if running.is_empty() {
        bail!(
            "no sources configured (set --kafka-brokers and --kafka-topics, --mqtt-broker and --mqtt-subscribe, or --modbus-registry)"
        );
    }
    let alerts = super::alerts::start(
        &lakehouse,
        &hot,
        &cfg.alerts,
        true,
        std::time::Duration::from_millis(cfg.sources.writer.commit_interval_ms),
    )?;
    // The hot tier for `weir serve --hot-tier-from`, stopped after the
    // sources' final commit (then it is empty: readers lose nothing).
    let feed = HotFeed::start(&cfg, &hot).await?;
    println!(
        "weir: ingesting from {}",
        Sources::describe(&cfg.sources).join("; ")
    );
    std::io::stdout().flush()?;
    let mut running = running;
    // A source that ends by itself (fatal error) ends the process, after the
    // other sources stopped in order.
    let ended = tokio::select! {
        signal = super::serve::shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            None
        }
        (name, result) = running.ended() => Some(
            result
                .map_err(anyhow::Error::from)
                .and_then(|r| r.map(|report| format!("{name}: {report:?}")).map_err(anyhow::Error::from)),
        ),
    };
    obs.readiness.shutting_down();
    if let Some(result) = ended {
        // The finished task is out of the list: stop the rest.
        let stopped = running.stop().await;
        alerts.stop().await;
        feed.stop().await;
        let report = result?;
        stopped?;
        tracing::warn!(report, "a source ended by itself");
        return Ok(());
    }
    let stopped = running.stop().await;
    alerts.stop().await;
    feed.stop().await;
    stopped?;
    println!("weir: ingest stopped");
    Ok(())
}

/// The hot tier served to `weir serve --hot-tier-from` (`--hot-listen`).
struct HotFeed {
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), weir_hot::HotError>>>,
}

impl HotFeed {
    async fn start(cfg: &IngestConfig, hot: &weir_hot::HotTiers) -> anyhow::Result<Self> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let Some(addr) = cfg.hot_listen else {
            return Ok(HotFeed { stop, task: None });
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the hot tier feed to {addr}"))?;
        println!("weir: hot tier served on {}", listener.local_addr()?);
        let task = tokio::spawn(weir_hot::serve_hot_feed(
            hot.local().clone(),
            listener,
            cfg.hot_feed_token.clone(),
            async move {
                let mut rx = stopped;
                let _ = rx.wait_for(|stop| *stop).await;
            },
        ));
        Ok(HotFeed {
            stop,
            task: Some(task),
        })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task {
            match task.await {
                Ok(Err(e)) => tracing::error!(error = %e, "hot tier feed failed"),
                Err(e) => tracing::error!(error = %e, "hot tier feed panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}
