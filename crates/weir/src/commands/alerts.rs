//! Starting and stopping the alert evaluator (shared by `weir serve` and
//! `weir ingest`): it runs where rows are ingested, and stops after the
//! sources (their last rows are evaluated and committed first).

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weir_catalog::Lakehouse;
use weir_config::AlertsConfig;
use weir_hot::HotTiers;

type Task = JoinHandle<Result<weir_alert::AlertReport, weir_alert::AlertError>>;

/// The running evaluator, if any.
pub(super) struct Alerts {
    task: Option<(Task, watch::Sender<bool>)>,
}

/// Starts the evaluator: `--alerts true`, or `auto` when this process
/// ingests rows (sources, the demo).
/// Rows come from `hot`'s local feed.
pub(super) fn start(
    lakehouse: &Lakehouse,
    hot: &HotTiers,
    cfg: &AlertsConfig,
    ingests: bool,
    commit_interval: std::time::Duration,
) -> anyhow::Result<Alerts> {
    let on = match cfg.alerts_enabled {
        weir_config::AlertsMode::True => true,
        weir_config::AlertsMode::False => false,
        weir_config::AlertsMode::Auto => ingests,
    };
    if !on {
        return Ok(Alerts { task: None });
    }
    // A file or directory of TOML rules, or the PostgreSQL alert registry.
    let (declared, registry) = match &cfg.alert_rules {
        Some(path) if path.to_string_lossy().starts_with("postgres") => {
            (Vec::new(), Some(path.to_string_lossy().into_owned()))
        }
        Some(path) => (
            weir_alert::declared::load(path)
                .with_context(|| format!("reading alert rules from {}", path.display()))?,
            None,
        ),
        None => (Vec::new(), None),
    };
    let host = weir_catalog::leases::hostname().unwrap_or("weir");
    let opts = weir_alert::AlertOptions {
        tick: cfg.alert_tick.max(std::time::Duration::from_millis(10)),
        declared,
        registry,
        actor: format!("{host}-{}", std::process::id()),
        // Other writers of the group commit as often as this one (same
        // configuration, as a rule); a rebalance leaves partitions unread
        // for a few seconds.
        others_lag: commit_interval + std::time::Duration::from_secs(10),
        ..Default::default()
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(weir_alert::run(
        lakehouse.clone(),
        hot.clone(),
        opts,
        stopped,
    ));
    Ok(Alerts {
        task: Some((task, stop)),
    })
}

impl Alerts {
    /// Stops the evaluator after it committed what it decided.
    pub(super) async fn stop(self) {
        let Some((task, stop)) = self.task else {
            return;
        };
        let _ = stop.send(true);
        match task.await {
            Ok(Ok(report)) => tracing::info!(
                rules = report.rules,
                transitions = report.transitions,
                rows_evaluated = report.rows_evaluated,
                "alert evaluator stopped"
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "alert evaluator failed"),
            Err(e) => tracing::error!(error = %e, "alert evaluator panicked"),
        }
    }
}
