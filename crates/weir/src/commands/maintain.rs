//! `weir maintain <job>`: maintenance on demand, with progress bars and a
//! summary (`--json` for scripts). Safe beside running servers and writers.

use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use weir_catalog::Lakehouse;
use weir_catalog::iceberg::TableIdent;
use weir_config::{
    ClusterConfig, CompactConfig, EraseConfig, ExpireConfig, JobRunConfig, ManifestsConfig,
    OrphansConfig, RetentionConfig, ScheduleConfig,
};
use weir_maintain::{
    CLUSTER_COLUMNS_PROPERTY, CompactOptions, ExpireOptions, Job, JobContext, JobReport, Layout,
    MaintenanceJob, ManifestOptions, OrphanOptions, Progress, RetentionOptions,
};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MaintainCommand {
    /// Bin-pack small data files into target-size files, sorted by the
    /// table's sort order (one `replace` snapshot per partition group).
    Compact(CompactConfig),
    /// Rewrite partitions in Z-order over columns such as `device_id,ts`, so
    /// file statistics prune on each of them.
    Cluster(ClusterConfig),
    /// Expire old snapshots (keeping what running queries, time travel and
    /// the streaming writers' watermarks need) and delete their files.
    Expire(ExpireConfig),
    /// Delete files under a table's location that no metadata references.
    Orphans(OrphansConfig),
    /// Erase rows for good: DELETE them, refresh the materialized views
    /// reading the table, expire every older snapshot of both (GDPR).
    Erase(EraseConfig),
    /// Drop partitions older than the table's retention (`retention_days`
    /// policy), once the rollups it requires cover them.
    Retention(RetentionConfig),
    /// Merge small data manifests into target-size ones (one `replace`
    /// snapshot without data change), so planning reads few manifests.
    RewriteManifests(ManifestsConfig),
    /// Run every job on its schedule (each table's `[policy]`), like
    /// `weir serve` does, until SIGTERM: the maintenance process of a
    /// production stack.
    Schedule(ScheduleConfig),
}

pub(super) async fn run(cmd: MaintainCommand) -> anyhow::Result<()> {
    let job = match &cmd {
        // The scheduler records each job it runs.
        MaintainCommand::Schedule(_) => return run_job(cmd).await,
        MaintainCommand::Compact(_) => Job::Compact.name(),
        MaintainCommand::Cluster(_) => Job::Cluster.name(),
        MaintainCommand::Expire(_) => Job::Expire.name(),
        MaintainCommand::Orphans(_) => Job::Orphans.name(),
        MaintainCommand::Erase(_) => "erase",
        MaintainCommand::Retention(_) => Job::Retention.name(),
        MaintainCommand::RewriteManifests(_) => ManifestOptions::NAME,
    };
    let started = std::time::Instant::now();
    let result = run_job(cmd).await;
    weir_maintain::record_job_run(job, started.elapsed(), result.is_ok());
    result
}

async fn run_job(cmd: MaintainCommand) -> anyhow::Result<()> {
    match cmd {
        MaintainCommand::Compact(cfg) => compact(cfg).await,
        MaintainCommand::Cluster(cfg) => cluster(cfg).await,
        MaintainCommand::Expire(cfg) => expire(cfg).await,
        MaintainCommand::Orphans(cfg) => orphans(cfg).await,
        MaintainCommand::Erase(cfg) => super::erase::erase(cfg).await,
        MaintainCommand::Retention(cfg) => retention(cfg).await,
        MaintainCommand::RewriteManifests(cfg) => rewrite_manifests(cfg).await,
        MaintainCommand::Schedule(cfg) => schedule(cfg).await,
    }
}

/// Materialized views refreshed through `engine` (maintenance does not
/// depend on query): for the scheduler and the console's refresh job.
pub(crate) fn refresher(engine: weir_query::QueryEngine) -> weir_maintain::schedule::Refresher {
    std::sync::Arc::new(move |ident| {
        let engine = engine.clone();
        Box::pin(async move {
            engine
                .refresh_materialized_view(&ident.to_string())
                .await
                .map(|r| format!("{} rows from {:?}", r.rows, r.bases))
                .map_err(|e| Box::new(e) as weir_maintain::schedule::RefreshError)
        })
    })
}

/// The scheduler of `weir serve --maintenance` and `weir maintain schedule`:
/// every table of bronze, silver, gold and the default namespace; views are
/// refreshed through the query engine (maintenance does not depend on query).
pub(crate) fn scheduler(
    lakehouse: Lakehouse,
    policies: std::collections::HashMap<String, weir_maintain::TablePolicy>,
    tick: Duration,
    engine: weir_query::QueryEngine,
) -> weir_maintain::Scheduler {
    let mut namespaces: Vec<String> = ["bronze", "silver", "gold", weir_catalog::DEFAULT_NAMESPACE]
        .map(String::from)
        .to_vec();
    namespaces.dedup();
    weir_maintain::Scheduler {
        lakehouse,
        policies,
        tick,
        namespaces,
        refresher: Some(refresher(engine)),
        status: Default::default(),
    }
}

async fn schedule(cfg: ScheduleConfig) -> anyhow::Result<()> {
    use std::io::Write;
    // Bad policies fail the start, not the first scheduled run.
    let policies = super::declared_policies(&cfg.storage)?;
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let engine = weir_query::QueryEngine::new(
        lakehouse.clone(),
        // No streaming writers in this process: no hot rows.
        weir_hot::HotTiers::default(),
        weir_query::EngineOptions {
            memory_limit: (cfg.query_memory_mb > 0).then_some(cfg.query_memory_mb << 20),
            // Refreshes read each view once per run: nothing to keep.
            file_cache: weir_query::file_cache::FileCacheOptions {
                capacity_bytes: 0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task =
        tokio::spawn(scheduler(lakehouse, policies, cfg.maintenance_tick, engine).run(stopped));
    // The readiness line scripts and tests wait for.
    println!(
        "weir: maintenance scheduled (tick {})",
        humantime::format_duration(cfg.maintenance_tick)
    );
    std::io::stdout().flush()?;
    let signal = super::serve::shutdown_signal().await;
    // The running job finishes its current commit; nothing is cut mid-way.
    tracing::info!(signal, "stopping maintenance after the running job");
    let _ = stop.send(true);
    task.await.context("maintenance task")?;
    tracing::info!("stopped");
    Ok(())
}

/// The tables named on the command line, or every table of the lakehouse's
/// bronze, silver and gold namespaces.
pub(super) async fn resolve_tables(
    lakehouse: &Lakehouse,
    names: &[String],
) -> anyhow::Result<Vec<TableIdent>> {
    if names.is_empty() {
        let mut all = Vec::new();
        for ns in ["bronze", "silver", "gold"] {
            let ident = weir_catalog::iceberg::NamespaceIdent::new(ns.to_string());
            all.extend(lakehouse.catalog().list_tables(&ident).await?);
        }
        return Ok(all);
    }
    names
        .iter()
        .map(|name| {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() != 2 {
                bail!("table `{name}`: expected namespace.table");
            }
            Ok(TableIdent::from_strs(parts)?)
        })
        .collect()
}

pub(super) fn spinner(message: String, json: bool) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}")?);
    if json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    } else {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar.set_message(message);
    Ok(bar)
}

/// Sizes are given in MiB; fractions are allowed (at least 4 KiB).
fn mib_to_bytes(mb: f64) -> u64 {
    ((mb * (1 << 20) as f64) as u64).max(4096)
}

/// How `weir maintain <job>` shows a job running on a table.
#[derive(Clone, Copy)]
enum Show {
    /// A bar of the bytes rewritten, labelled `<verb> <table>` (also what
    /// an error says the job was doing).
    Bar(&'static str),
    /// A spinner labelled `<activity> <table>`; errors read `<failure>
    /// <table>: …`.
    Spinner {
        activity: &'static str,
        failure: &'static str,
    },
}

/// The same job on each table.
fn on_each<J: Clone>(tables: Vec<TableIdent>, job: J) -> Vec<(TableIdent, anyhow::Result<J>)> {
    tables.into_iter().map(|t| (t, Ok(job.clone()))).collect()
}

/// Runs each table's job, one table after the other, shown as `show` says,
/// and prints each report's line, or all reports as one JSON array at the
/// end. A table whose job could not be set up stops the run there.
async fn run_jobs<J: MaintenanceJob>(
    lakehouse: &Lakehouse,
    jobs: Vec<(TableIdent, anyhow::Result<J>)>,
    show: Show,
    run: &JobRunConfig,
) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for (ident, job) in jobs {
        let job = job?;
        let (bar, failure) = match show {
            Show::Bar(verb) => {
                let bar = ProgressBar::new(0).with_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )?
                    .progress_chars("=> "),
                );
                if run.json {
                    bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                }
                bar.set_message(format!("{verb} {ident}"));
                (bar, verb)
            }
            Show::Spinner { activity, failure } => {
                (spinner(format!("{activity} {ident}"), run.json)?, failure)
            }
        };
        let on_progress = |p: &Progress| {
            if let Show::Bar(_) = show {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
            }
        };
        let ctx = JobContext {
            lakehouse,
            progress: &on_progress,
        };
        let report = job
            .run(&ctx, &ident)
            .await
            .with_context(|| format!("{failure} {ident}"))?;
        bar.finish_and_clear();
        if !run.json {
            println!("{}", report.detail(run.dry_run));
        }
        reports.push(report);
    }
    if run.json {
        println!("{}", JobReport::json_array(&reports)?);
    }
    Ok(())
}

async fn compact(cfg: CompactConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables = resolve_tables(&lakehouse, &cfg.tables).await?;
    let opts = CompactOptions {
        target_file_bytes: cfg.target_file_mb.map(mib_to_bytes),
        min_input_files: cfg.min_files.max(2),
        sort_memory_bytes: cfg.sort_memory_mb.max(16) << 20,
        skip_recent: cfg.skip_recent,
        dry_run: cfg.run.dry_run,
        ..Default::default()
    };
    let jobs = on_each(tables, opts);
    run_jobs(&lakehouse, jobs, Show::Bar("compacting"), &cfg.run).await
}

async fn cluster(cfg: ClusterConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let explicit = !cfg.tables.is_empty();
    let mut jobs = Vec::new();
    for ident in resolve_tables(&lakehouse, &cfg.tables).await? {
        let columns = if cfg.columns.is_empty() {
            let table = lakehouse.catalog().load_table(&ident).await?;
            let declared = table
                .metadata()
                .properties()
                .get(CLUSTER_COLUMNS_PROPERTY)
                .cloned();
            match declared {
                Some(list) => list
                    .split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
                None if explicit => bail!(
                    "{ident} declares no `{CLUSTER_COLUMNS_PROPERTY}`: pass --columns, e.g. --columns device_id,ts"
                ),
                None => continue,
            }
        } else {
            cfg.columns.clone()
        };
        let opts = CompactOptions {
            target_file_bytes: cfg.target_file_mb.map(mib_to_bytes),
            layout: Layout::ZOrder(columns),
            max_group_bytes: cfg.max_group_mb.max(1) << 20,
            skip_recent: cfg.skip_recent,
            dry_run: cfg.run.dry_run,
            ..Default::default()
        };
        jobs.push((ident, Ok(opts)));
    }
    run_jobs(&lakehouse, jobs, Show::Bar("clustering"), &cfg.run).await
}

async fn expire(cfg: ExpireConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables = resolve_tables(&lakehouse, &cfg.tables).await?;
    let opts = ExpireOptions {
        older_than: cfg.older_than,
        retain_last: cfg.retain_last,
        dry_run: cfg.run.dry_run,
        ..Default::default()
    };
    let show = Show::Spinner {
        activity: "expiring snapshots of",
        failure: "expiring snapshots of",
    };
    run_jobs(&lakehouse, on_each(tables, opts), show, &cfg.run).await
}

async fn orphans(cfg: OrphansConfig) -> anyhow::Result<()> {
    if cfg.older_than < Duration::from_secs(3600) && !cfg.allow_short_age {
        bail!(
            "--older-than {} is under one hour: files of commits still in flight could be deleted \
             (pass --allow-short-age if no writer or maintenance job is running)",
            humantime::format_duration(cfg.older_than)
        );
    }
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables = resolve_tables(&lakehouse, &cfg.tables).await?;
    let opts = OrphanOptions {
        older_than: cfg.older_than,
        dry_run: cfg.run.dry_run,
    };
    let show = Show::Spinner {
        activity: "looking for orphans of",
        failure: "removing orphans of",
    };
    run_jobs(&lakehouse, on_each(tables, opts), show, &cfg.run).await
}

async fn rewrite_manifests(cfg: ManifestsConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables = resolve_tables(&lakehouse, &cfg.tables).await?;
    let opts = ManifestOptions {
        min_count: cfg.min_count,
        target_bytes: cfg
            .target_manifest_mb
            .map(|mb| (mb * (1 << 20) as f64) as u64),
        dry_run: cfg.run.dry_run,
    };
    let show = Show::Spinner {
        activity: "merging manifests of",
        failure: "merging the manifests of",
    };
    run_jobs(&lakehouse, on_each(tables, opts), show, &cfg.run).await
}

async fn retention(cfg: RetentionConfig) -> anyhow::Result<()> {
    let policies = super::declared_policies(&cfg.storage)?;
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables: Vec<TableIdent> = if cfg.tables.is_empty() {
        let mut names: Vec<&String> = policies
            .iter()
            .filter(|(_, p)| p.retention.is_some())
            .map(|(n, _)| n)
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| TableIdent::from_strs(n.split('.')))
            .collect::<Result<_, _>>()?
    } else {
        resolve_tables(&lakehouse, &cfg.tables).await?
    };
    // A table without a retention stops the run when its turn comes.
    let options = |ident: &TableIdent| -> anyhow::Result<RetentionOptions> {
        let policy = policies
            .get(&ident.to_string())
            .cloned()
            .unwrap_or_default();
        let retention = match (cfg.days, policy.retention) {
            (Some(days), _) if days > 0.0 => Duration::from_secs_f64(days * 86400.0),
            (Some(_), _) => bail!("--days must be positive"),
            (None, Some(r)) => r,
            (None, None) => bail!("{ident} has no retention policy: pass --days"),
        };
        Ok(RetentionOptions {
            retention,
            requires: policy.retention_requires,
            dry_run: cfg.run.dry_run,
        })
    };
    let jobs = tables
        .into_iter()
        .map(|ident| {
            let opts = options(&ident);
            (ident, opts)
        })
        .collect();
    let show = Show::Spinner {
        activity: "applying retention to",
        failure: "applying retention to",
    };
    run_jobs(&lakehouse, jobs, show, &cfg.run).await
}
