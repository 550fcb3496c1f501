//! The `weir` subcommands.

mod alerts;
mod erase;
mod import;
mod ingest;
mod maintain;
mod observe;
mod security;
mod serve;
mod sources;

use std::path::PathBuf;

use anyhow::Context;
use weir_catalog::spec::TableSpec;
use weir_catalog::{Lakehouse, LakehouseOptions, builtin_specs};

#[derive(Debug, clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // built once at start-up; boxing buys nothing
pub(crate) enum Command {
    /// Serve SQL over Arrow Flight SQL (and run configured sources, or the demo).
    Serve(weir_config::ServeConfig),
    /// Run the configured sources (Kafka, ...) into the lakehouse, without serving SQL.
    Ingest(weir_config::IngestConfig),
    /// Table maintenance jobs (safe while servers and writers run).
    #[command(subcommand)]
    Maintain(maintain::MaintainCommand),
    /// Bulk-append Parquet files to a table (one snapshot per file).
    Import(weir_config::ImportConfig),
    /// Print the Argon2 hash of a password read from stdin, for `[[users]]`
    /// in weir.toml or WEIR_USERS (`printf %s "$PW" | weir hash-password`).
    HashPassword,
}

impl Command {
    pub(crate) async fn run(self, obs: weir_config::ObserveConfig) -> anyhow::Result<()> {
        // A helper that prints to stdout: no endpoint, no extra output.
        if let Command::HashPassword = self {
            return security::hash_password_command();
        }
        // The HTTP endpoint (/metrics, /health, /ready) starts first and
        // stops last; serve and ingest have it on by default.
        let default = match &self {
            Command::Serve(_) => Some(([127, 0, 0, 1], 9090).into()),
            Command::Ingest(_) => Some(([127, 0, 0, 1], 9091).into()),
            Command::Maintain(_) | Command::Import(_) | Command::HashPassword => None,
        };
        let mut obs = observe::Observability::start(&obs, default).await?;
        let result = match self {
            Command::Serve(cfg) => serve::run(cfg, &mut obs).await,
            Command::Import(cfg) => import::run(cfg).await,
            Command::Ingest(cfg) => ingest::run(cfg, &mut obs).await,
            Command::Maintain(cmd) => maintain::run(cmd).await,
            Command::HashPassword => unreachable!("handled above"),
        };
        obs.stop().await;
        result
    }
}

/// The table definitions in use: `--tables-dir`, else the built-in ones.
pub(crate) fn declared_specs(
    storage: &weir_config::StorageConfig,
) -> anyhow::Result<Vec<TableSpec>> {
    Ok(match &storage.tables_dir {
        Some(dir) => TableSpec::load_dir(dir)?,
        None => builtin_specs()?,
    })
}

/// Maintenance policies of the declared tables, by `ns.t` (errors name the table).
pub(crate) fn declared_policies(
    storage: &weir_config::StorageConfig,
) -> anyhow::Result<std::collections::HashMap<String, weir_maintain::TablePolicy>> {
    declared_specs(storage)?
        .iter()
        .map(|spec| {
            let policy = weir_maintain::TablePolicy::from_toml(&spec.policy)
                .map_err(|e| anyhow::anyhow!("table definition {}: {e}", spec.qualified_name()))?;
            Ok((spec.qualified_name(), policy))
        })
        .collect()
}

/// Opens the lakehouse and makes sure the declared tables exist (idempotent).
pub(crate) async fn open_lakehouse(
    storage: &weir_config::StorageConfig,
) -> anyhow::Result<Lakehouse> {
    let lakehouse = Lakehouse::open(&LakehouseOptions {
        data_dir: storage.data_dir.clone(),
        catalog_uri: storage.catalog_uri.clone(),
        warehouse: storage.warehouse.clone(),
        s3: s3_options(&storage.s3),
    })
    .await
    .context("opening the lakehouse")?;
    let specs = declared_specs(storage)?;
    let report = lakehouse
        .ensure_tables(&specs)
        .await
        .context("creating declared tables")?;
    tracing::info!(
        warehouse = lakehouse.warehouse(),
        created = report.created.len(),
        evolved = report.evolved.len(),
        unchanged = report.unchanged.len(),
        "lakehouse ready"
    );
    Ok(lakehouse)
}

/// The object-store options of `--s3-*` / `WEIR_S3_*`.
pub(crate) fn s3_options(cfg: &weir_config::S3Config) -> weir_catalog::S3Options {
    weir_catalog::S3Options {
        endpoint: cfg.s3_endpoint.clone(),
        region: cfg.s3_region.clone(),
        access_key_id: cfg.s3_access_key_id.clone(),
        secret_access_key: cfg.s3_secret_access_key.clone(),
        session_token: cfg.s3_session_token.clone(),
        path_style: cfg.s3_path_style,
        allow_http: cfg.s3_allow_http,
        conditional_writes: cfg.s3_conditional_writes,
    }
}

/// `--config PATH` / `--config=PATH` / `WEIR_CONFIG`, read before clap parses.
pub(crate) fn config_path_from_args() -> Option<PathBuf> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--config") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        })
        .or_else(|| std::env::var("WEIR_CONFIG").ok())
        .map(PathBuf::from)
}

/// Every `WEIR_*` variable the command line understands.
pub(crate) fn known_env(cmd: &clap::Command) -> Vec<String> {
    let mut out: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
        .collect();
    for sub in cmd.get_subcommands() {
        out.extend(known_env(sub));
    }
    out.sort();
    out.dedup();
    out
}
