//! `weir import`: bulk-append Parquet files to a table through the same
//! commit path as every writer. Each input file becomes its own data files;
//! groups of `--files-per-commit` inputs land in one snapshot each. Files
//! are read and encoded `--parallel` at a time (one per core by default:
//! decoding, sorting and Parquet encoding are CPU-bound and single-threaded
//! per file). Progress bar while it runs, a summary at the end.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_catalog::iceberg::spec::DataFile;
use weir_catalog::iceberg::table::Table;
use weir_catalog::{AppendOptions, append_data_files, write_data_files};
use weir_config::ImportConfig;

pub(super) async fn run(cfg: ImportConfig) -> anyhow::Result<()> {
    let Some((namespace, name)) = cfg.table.split_once('.') else {
        bail!("--table must be namespace.table, got `{}`", cfg.table);
    };
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let total_bytes: u64 = cfg
        .files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .map(|m| m.len())
                .with_context(|| format!("reading {}", f.display()))
        })
        .sum::<anyhow::Result<u64>>()?;
    let bar = ProgressBar::new(total_bytes).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )?
        .progress_chars("=> "),
    );
    if cfg.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let started = Instant::now();
    let parallel = match cfg.parallel {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n as usize,
    };
    let (mut rows, mut snapshots, mut data_files) = (0u64, 0u64, 0usize);
    for group in cfg.files.chunks(cfg.files_per_commit as usize) {
        let table = lakehouse.load_table(namespace, name).await?;
        // In input order, `parallel` files in flight.
        let written: Vec<DataFile> = futures::stream::iter(group)
            .map(|file| write_file(table.clone(), file.clone(), bar.clone()))
            .buffered(parallel)
            .try_concat()
            .await?;
        let mut opts = AppendOptions::default();
        opts.snapshot_properties
            .insert("weir.import.files".into(), group.len().to_string());
        opts.snapshot_properties.insert(
            "weir.import.first-file".into(),
            group[0].display().to_string(),
        );
        // The table may have changed while the files were written (e.g.
        // schema evolution): reload so the commit builds on the newest state.
        let table = lakehouse.load_table(namespace, name).await?;
        let outcome = append_data_files(&lakehouse, &table, written, opts)
            .await
            .with_context(|| {
                format!(
                    "committing {} files from {}",
                    group.len(),
                    group[0].display()
                )
            })?;
        rows += outcome.rows;
        data_files += outcome.data_files;
        snapshots += u64::from(outcome.snapshot_id.is_some());
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if cfg.json {
        let summary = serde_json::json!({
            "table": cfg.table, "files_in": cfg.files.len(), "rows": rows,
            "bytes_in": total_bytes, "data_files_out": data_files, "snapshots": snapshots,
            "seconds": secs, "rows_per_second": rows as f64 / secs.max(1e-9),
        });
        println!("{summary}");
    } else {
        println!(
            "imported {rows} rows from {} files ({:.1} MiB) into {} as {snapshots} snapshots, {data_files} data files, in {secs:.2} s ({:.0} rows/s)",
            cfg.files.len(),
            total_bytes as f64 / (1 << 20) as f64,
            cfg.table,
            rows as f64 / secs.max(1e-9),
        );
    }
    Ok(())
}

/// Reads `file` and writes its rows as data files of `table` (not
/// committed), on a task of its own so files encode in parallel.
async fn write_file(
    table: Table,
    file: std::path::PathBuf,
    bar: ProgressBar,
) -> anyhow::Result<Vec<DataFile>> {
    let task = tokio::spawn(async move {
        bar.set_message(file.display().to_string());
        let input = file.clone();
        let batches = tokio::task::spawn_blocking(move || read_parquet(&input))
            .await
            .context("the reading task failed")??;
        let written = write_data_files(&table, &batches, None)
            .await
            .with_context(|| format!("writing the rows of {}", file.display()))?;
        bar.inc(std::fs::metadata(&file)?.len());
        anyhow::Ok(written)
    });
    task.await.context("the writing task failed")?
}

fn read_parquet(file: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(file)?)
        .with_context(|| format!("opening {}", file.display()))?
        .with_batch_size(64 * 1024)
        .build()?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading {}", file.display()))
}
