//! `weir maintain <job>`: maintenance on demand, with progress bars and a
//! summary (`--json` for scripts). Safe beside running servers and writers.

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use weir_catalog::iceberg::TableIdent;
use weir_config::CompactConfig;
use weir_maintain::{CompactOptions, Progress, compact_table};

#[derive(Debug, clap::Subcommand)]
pub enum MaintainCommand {
    /// Bin-pack small data files into target-size files, sorted by the
    /// table's sort order (one `replace` snapshot per partition group).
    Compact(CompactConfig),
}

pub async fn run(cmd: MaintainCommand) -> anyhow::Result<()> {
    match cmd {
        MaintainCommand::Compact(cfg) => compact(cfg).await,
    }
}

async fn compact(cfg: CompactConfig) -> anyhow::Result<()> {
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let tables: Vec<String> = if cfg.tables.is_empty() {
        let mut all = Vec::new();
        for ns in ["bronze", "silver", "gold"] {
            let ident = weir_catalog::iceberg::NamespaceIdent::new(ns.to_string());
            for t in lakehouse.catalog().list_tables(&ident).await? {
                all.push(t.to_string());
            }
        }
        all
    } else {
        cfg.tables.clone()
    };
    let opts = CompactOptions {
        target_file_bytes: cfg.target_file_mb.max(1) << 20,
        min_input_files: cfg.min_files.max(2),
        dry_run: cfg.dry_run,
        ..Default::default()
    };
    let mut reports = Vec::new();
    for name in &tables {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() != 2 {
            bail!("table `{name}`: expected namespace.table");
        }
        let ident = TableIdent::from_strs(parts)?;
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")?
                .progress_chars("=> "),
        );
        if cfg.json {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar.set_message(format!("compacting {name}"));
        let on_progress = |p: &Progress| {
            bar.set_length(p.bytes_total);
            bar.set_position(p.bytes_done);
        };
        let report = compact_table(&lakehouse, &ident, &opts, &on_progress)
            .await
            .with_context(|| format!("compacting {name}"))?;
        bar.finish_and_clear();
        if !cfg.json {
            let verb = if cfg.dry_run {
                "would rewrite"
            } else {
                "rewrote"
            };
            println!(
                "{name}: {verb} {} of {} files ({:.1} MiB) into {} files ({:.1} MiB), {} rows, {} groups committed, {} abandoned, {:.2} s",
                report.files_in,
                report.files_before,
                report.bytes_in as f64 / (1 << 20) as f64,
                report.files_out,
                report.bytes_out as f64 / (1 << 20) as f64,
                report.rows,
                report.groups_committed,
                report.groups_abandoned,
                report.seconds,
            );
        }
        reports.push(report);
    }
    if cfg.json {
        println!("{}", serde_json::to_string(&reports)?);
    }
    Ok(())
}
