//! `weir serve`: open the lakehouse, make sure the declared tables exist,
//! start sources (the demo for now) and serve Flight SQL.
//!
//! Shutdown order on SIGINT/SIGTERM: stop scheduled maintenance, stop sources
//! and commit what they hold, then stop serving.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;
use weir_config::ServeConfig;
use weir_query::{EngineOptions, QueryEngine};

use super::observe::Observability;

pub(super) async fn run(cfg: ServeConfig, obs: &mut Observability) -> anyhow::Result<()> {
    let flight_options = flight_options(&cfg)?;
    // Refuse to start (before anything else) when authentication or TLS cannot work.
    let security = weir_flight::check_security(&flight_options, cfg.listen)?;
    info!(%security, "Flight SQL security");

    obs.readiness.pending("catalog", "opening the catalog");
    obs.readiness
        .pending("flight", "the Flight SQL server is not listening yet");
    // Bad policies fail the start, not the first scheduled run.
    let policies = super::declared_policies(&cfg.storage)?;
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    // This process's hot tier (its sources, the demo) and the feeds of
    // `weir ingest --hot-listen` processes, read by every query.
    let hot = weir_hot::HotTiers::default()
        .with_feeds(
            &cfg.query.hot_tier_from,
            cfg.query.hot_feed_token.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
    obs.readiness.set_ready("catalog");
    obs.refresh_tables(&lakehouse);
    let engine = open_engine(&cfg, &lakehouse, &hot).await?;

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;

    let background = Background::start(&cfg, obs, &lakehouse, &hot, &engine, policies)?;
    if cfg.console {
        start_console(&cfg, obs, &engine, &flight_options, &background.schedule);
    }

    let (stop_serving, serving_stopped) = watch::channel(false);
    let mut server = tokio::spawn(weir_flight::serve(
        engine,
        flight_options,
        listener,
        async move {
            let mut rx = serving_stopped;
            let _ = rx.wait_for(|stop| *stop).await;
        },
    ));
    obs.readiness.set_ready("flight");
    announce(&cfg, addr)?;

    let early_exit = tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, "shutting down");
            None
        }
        result = &mut server => Some(result),
    };

    obs.readiness.shutting_down();
    background.stop().await;
    let _ = stop_serving.send(true);
    let result = match early_exit {
        Some(result) => result,
        None => server.await,
    };
    result.context("Flight server task")??;
    info!("stopped");
    Ok(())
}

/// The Flight server's options from the command line.
fn flight_options(cfg: &ServeConfig) -> anyhow::Result<weir_flight::FlightOptions> {
    Ok(weir_flight::FlightOptions {
        query_timeout: (!cfg.query.query_timeout.is_zero()).then_some(cfg.query.query_timeout),
        auth: super::security::auth_options(&cfg.auth)?,
        tls: super::security::tls_files(&cfg.auth),
        connections: weir_flight::ConnectionLimits {
            max_connections: cfg.connections.max_connections as usize,
            first_call_timeout: cfg.connections.connection_first_call_timeout,
            idle_timeout: cfg.connections.connection_idle_timeout,
        },
        ..Default::default()
    })
}

/// The query engine every Flight SQL statement (and the console) runs on.
async fn open_engine(
    cfg: &ServeConfig,
    lakehouse: &weir_catalog::Lakehouse,
    hot: &weir_hot::HotTiers,
) -> anyhow::Result<QueryEngine> {
    match cfg.query.query_memory_mb.bytes() {
        Some(bytes) => info!(query_memory_mib = bytes >> 20, "query memory limit"),
        None => tracing::warn!(
            "query memory is unbounded (--query-memory-mb 0): one query can exhaust the server's memory"
        ),
    }
    Ok(QueryEngine::new(
        lakehouse.clone(),
        hot.clone(),
        EngineOptions {
            memory_limit: cfg.query.query_memory_mb.bytes(),
            export_dir: cfg.query.export_dir.clone(),
            target_partitions: (cfg.query.query_parallelism > 0)
                .then_some(cfg.query.query_parallelism),
            mv_rewrite: cfg.query.mv_rewrite,
            file_cache: weir_query::file_cache::FileCacheOptions {
                capacity_bytes: cfg.query.file_cache_mb << 20,
                max_file_bytes: cfg.query.file_cache_max_file_mb << 20,
            },
            postgres_catalogs: cfg
                .query
                .postgres_catalog
                .iter()
                .map(|s| s.parse())
                .collect::<Result<_, _>>()?,
            last_value_memory: (cfg.query.last_value_memory_mb << 20) as usize,
        },
    )
    .await?)
}

/// Everything `weir serve` runs beside the Flight server, stopped in order.
struct Background {
    stop_maintenance: watch::Sender<bool>,
    maintenance: Option<JoinHandle<()>>,
    /// The maintenance scheduler's runs, for the console.
    schedule: weir_maintain::ScheduleStatus,
    stop_sources: watch::Sender<bool>,
    sources: super::sources::Sources,
    demo: Option<JoinHandle<Result<u64, weir_ingest::IngestError>>>,
    alerts: super::alerts::Alerts,
    stop_following: watch::Sender<bool>,
    following: JoinHandle<()>,
}

impl Background {
    /// Starts sources, the demo, alert rules, scheduled maintenance and the
    /// last-value indexes' following of this process's commits.
    fn start(
        cfg: &ServeConfig,
        obs: &mut Observability,
        lakehouse: &weir_catalog::Lakehouse,
        hot: &weir_hot::HotTiers,
        engine: &QueryEngine,
        policies: std::collections::HashMap<String, weir_maintain::TablePolicy>,
    ) -> anyhow::Result<Self> {
        let sources = super::sources::start(lakehouse, hot.local(), &cfg.sources)?;
        obs.watch_sources(&sources);
        let (stop_sources, sources_stopped) = watch::channel(false);
        let demo = cfg.demo.demo.then(|| {
            tokio::spawn(weir_ingest::demo::run(
                lakehouse.clone(),
                hot.local().clone(),
                weir_ingest::demo::DemoOptions {
                    devices: cfg.demo.demo_devices,
                    interval: Duration::from_millis(cfg.demo.demo_interval_ms.max(10)),
                    seed: 42,
                },
                sources_stopped,
            ))
        });
        // Declared alert rules fail the start, not the first evaluation.
        let alerts = super::alerts::start(
            lakehouse,
            hot,
            &cfg.alerts,
            !sources.is_empty() || cfg.demo.demo,
            Duration::from_millis(cfg.sources.writer.commit_interval_ms),
        )?;
        let (stop_maintenance, maintenance_stopped) = watch::channel(false);
        let schedule = weir_maintain::ScheduleStatus::default();
        let maintenance = cfg.maintenance.enabled.then(|| {
            let mut scheduler = super::maintain::scheduler(
                lakehouse.clone(),
                policies,
                cfg.maintenance.maintenance_tick,
                engine.clone(),
            );
            scheduler.status = schedule.clone();
            tokio::spawn(scheduler.run(maintenance_stopped))
        });
        // Last-value indexes follow this process's commits in the background.
        let (stop_following, following_stopped) = watch::channel(false);
        let following = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.follow_commits(following_stopped).await })
        };
        Ok(Background {
            stop_maintenance,
            maintenance,
            schedule,
            stop_sources,
            sources,
            demo,
            alerts,
            stop_following,
            following,
        })
    }

    /// Order: maintenance (finishes its current commit), sources (flush
    /// and commit what they hold), alert rules (evaluate those last rows,
    /// commit), the last-value following; serving stops after.
    async fn stop(self) {
        let _ = self.stop_maintenance.send(true);
        if let Some(task) = self.maintenance
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "maintenance task panicked");
        }
        let _ = self.stop_sources.send(true);
        if let Err(e) = self.sources.stop().await {
            tracing::error!(error = %e, "a source failed to stop cleanly");
        }
        if let Some(demo) = self.demo {
            match demo.await {
                Ok(Ok(rows)) => info!(rows, "demo flushed"),
                Ok(Err(e)) => tracing::error!(error = %e, "demo failed to flush"),
                Err(e) => tracing::error!(error = %e, "demo task panicked"),
            }
        }
        self.alerts.stop().await;
        let _ = self.stop_following.send(true);
        if let Err(e) = self.following.await {
            tracing::error!(error = %e, "last-value index task panicked");
        }
    }
}

/// The web console on the HTTP endpoint, when there is one.
fn start_console(
    cfg: &ServeConfig,
    obs: &mut Observability,
    engine: &QueryEngine,
    flight_options: &weir_flight::FlightOptions,
    schedule: &weir_maintain::ScheduleStatus,
) {
    let (Some(addr), Some(metrics)) = (obs.addr, obs.metrics.clone()) else {
        return;
    };
    // Flight's rules, checked against the more exposed of the two
    // addresses: a loopback Flight port must not leave a public HTTP
    // port open without authentication.
    let exposed = if cfg.listen.ip().is_loopback() {
        addr
    } else {
        cfg.listen
    };
    match weir_flight::Authenticator::new(&flight_options.auth, exposed) {
        Ok(auth) => {
            let console = weir_console::Console::new(weir_console::ConsoleOptions {
                engine: engine.clone(),
                refresher: super::maintain::refresher(engine.clone()),
                auth: std::sync::Arc::new(auth),
                query_timeout: flight_options.query_timeout,
                schedule: cfg.maintenance.enabled.then(|| schedule.clone()),
                metrics: std::sync::Arc::new(move || metrics.render()),
            });
            obs.fallback.set(std::sync::Arc::new(console));
            println!("weir: console at http://{addr}/");
        }
        Err(e) => {
            tracing::warn!(error = %e, "the web console is off");
            println!("weir: console off: {e}");
        }
    }
}

/// The readiness line end-to-end tests and scripts wait for, and what runs.
fn announce(cfg: &ServeConfig, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    println!("weir: Flight SQL listening on {addr}");
    std::io::stdout().flush()?;
    for source in super::sources::Sources::describe(&cfg.sources) {
        println!("weir: ingesting from {source}");
    }
    if cfg.demo.demo {
        println!(
            "weir: demo devices are writing to silver.points; try: SELECT device_id, metric, avg(value) FROM silver.points GROUP BY 1, 2"
        );
        std::io::stdout().flush()?;
    }
    Ok(())
}

pub(crate) async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
