//! The observability side of a command: the Prometheus recorder and the
//! HTTP endpoint (`/metrics`, `/health`, `/ready`), started first so probes
//! answer (503) while the rest of the process starts, stopped last.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_observe::Readiness;

use super::sources::Sources;

/// How often the table size gauges are refreshed from the catalog (commits
/// of this process refresh them at once).
const TABLE_METRICS_EVERY: Duration = Duration::from_secs(30);

/// A running endpoint (or none when `--http-listen off`).
pub(super) struct Observability {
    pub readiness: Readiness,
    /// The bound address, if serving.
    pub addr: Option<SocketAddr>,
    /// The web console goes here once the engine exists (`weir serve`).
    pub fallback: weir_observe::FallbackSlot,
    /// Renders the metrics (the console reads the source counters from it).
    pub metrics: Option<weir_observe::PrometheusHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Observability {
    /// Binds the endpoint (`--http-listen`, else `default`), installs the
    /// recorder and prints `weir: HTTP listening on ADDR`. Without an
    /// address no recorder is installed: every metric is a no-op.
    pub(super) async fn start(
        cfg: &weir_config::ObserveConfig,
        default: Option<SocketAddr>,
    ) -> anyhow::Result<Self> {
        let readiness = Readiness::new();
        let (stop, stopped) = watch::channel(false);
        let Some(addr) = cfg.http_addr(default) else {
            return Ok(Observability {
                readiness,
                addr: None,
                fallback: weir_observe::FallbackSlot::default(),
                metrics: None,
                stop,
                tasks: Vec::new(),
            });
        };
        let endpoint = weir_observe::HttpEndpoint::bind(addr).await?;
        let handle = weir_observe::install_recorder()?;
        let addr = endpoint.addr;
        let fallback = weir_observe::FallbackSlot::default();
        metrics::gauge!(weir_observe::metric_names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let task = tokio::spawn(weir_observe::serve_http(
            endpoint,
            handle.clone(),
            readiness.clone(),
            fallback.clone(),
            wait_true(stopped),
        ));
        // Scripts and tests find the port here (as with the Flight line).
        println!("weir: HTTP listening on {addr} (/metrics, /health, /ready)");
        std::io::stdout().flush()?;
        tracing::info!(%addr, "HTTP endpoint listening");
        Ok(Observability {
            readiness,
            addr: Some(addr),
            fallback,
            metrics: Some(handle),
            stop,
            tasks: vec![task],
        })
    }

    /// Refreshes the table size gauges periodically (only when serving).
    pub(super) fn refresh_tables(&mut self, lakehouse: &weir_catalog::Lakehouse) {
        if self.addr.is_none() {
            return;
        }
        let lakehouse = lakehouse.clone();
        let mut stopped = self.stop.subscribe();
        self.tasks.push(tokio::spawn(async move {
            let namespaces = ["bronze", "silver", "gold", weir_catalog::DEFAULT_NAMESPACE];
            loop {
                weir_catalog::refresh_table_metrics(&lakehouse, &namespaces).await;
                tokio::select! {
                    _ = tokio::time::sleep(TABLE_METRICS_EVERY) => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
            }
        }));
    }

    /// Readiness waits for every configured source to resume from its
    /// watermarks.
    pub(super) fn watch_sources(&self, sources: &Sources) {
        // A source task that ended (a fatal error) makes the process unready.
        let statuses: Vec<weir_ingest::SourceStatus> =
            sources.running.iter().map(|s| s.status()).collect();
        self.readiness.check("sources", move || {
            let mut waiting: Vec<String> = statuses
                .iter()
                .filter(|s| s.stopped())
                .map(|s| format!("the {} source stopped (see the log)", s.name))
                .collect();
            waiting.extend(statuses.iter().filter_map(|s| s.waiting()));
            if waiting.is_empty() {
                Ok(())
            } else {
                Err(waiting.join(", "))
            }
        });
    }

    /// Stops the endpoint (last thing a command does).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}
