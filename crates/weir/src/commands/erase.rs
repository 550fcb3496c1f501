//! `weir maintain erase --table T --where PREDICATE`: rows deleted for good.
//!
//! A DELETE alone leaves the rows in the files of older snapshots (time
//! travel reads them) and in the materialized views computed from them. The
//! sequence that really erases (and that the README documents for doing it
//! by hand):
//! 1. `DELETE FROM T WHERE …` (copy-on-write: the files holding the rows are
//!    rewritten without them);
//! 2. `REFRESH MATERIALIZED VIEW` of every view reading T (a refresh after a
//!    delete recomputes the view, so its rollups drop the rows too);
//! 3. rewrite the manifests of T and of those views that still list the
//!    removed files (a DELETED manifest entry keeps the removed file's column
//!    bounds, e.g. the erased device id as a lower bound);
//! 4. expire every snapshot but the current one of T and of those views,
//!    which deletes the files only older snapshots referenced.
//!
//! Rows still in a running writer's hot tier (not committed yet) are not
//! reached: stop the source or run the erase again after its next commit.

use anyhow::Context;
use weir_catalog::iceberg::{NamespaceIdent, TableIdent};
use weir_catalog::{Lakehouse, MV_DEFINITION_PROPERTY};
use weir_config::EraseConfig;
use weir_maintain::{ExpireOptions, expire_snapshots};
use weir_query::{EngineOptions, QueryEngine};

#[derive(Debug, Default, serde::Serialize)]
struct EraseReport {
    table: String,
    dry_run: bool,
    rows_erased: u64,
    views_refreshed: Vec<String>,
    snapshots_expired: usize,
    data_files_deleted: usize,
    bytes_deleted: u64,
    seconds: f64,
}

pub(super) async fn erase(cfg: EraseConfig) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let lakehouse = super::open_lakehouse(&cfg.storage).await?;
    let ident = super::maintain::resolve_tables(&lakehouse, std::slice::from_ref(&cfg.table))
        .await?
        .remove(0);
    let engine = QueryEngine::new(
        lakehouse.clone(),
        // No streaming writers in this process: no hot rows.
        weir_hot::HotTiers::default(),
        EngineOptions {
            file_cache: weir_query::file_cache::FileCacheOptions {
                capacity_bytes: 0,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await?;
    let ctx = engine.new_context();
    let name = quoted(&ident);
    let mut report = EraseReport {
        table: ident.to_string(),
        dry_run: cfg.run.dry_run,
        ..Default::default()
    };
    let bar = super::maintain::spinner(format!("erasing rows of {ident}"), cfg.run.json)?;
    let count_sql = if cfg.run.dry_run {
        format!("SELECT count(*) FROM {name} WHERE {}", cfg.predicate)
    } else {
        format!("DELETE FROM {name} WHERE {}", cfg.predicate)
    };
    report.rows_erased = single_count(&engine, &count_sql)
        .await
        .with_context(|| format!("running {count_sql}"))?;
    let views = views_reading(&lakehouse, &ident).await?;
    if !cfg.run.dry_run {
        for view in &views {
            bar.set_message(format!("refreshing {view}"));
            let sql = format!("REFRESH MATERIALIZED VIEW {}", quoted(view));
            engine
                .sql(&ctx, &sql)
                .await
                .with_context(|| format!("refreshing {view}"))?
                .collect()
                .await?;
        }
        for table in std::iter::once(&ident).chain(&views) {
            purge_and_expire(&lakehouse, table, &bar, &mut report).await?;
        }
    }
    report.views_refreshed = views.iter().map(ToString::to_string).collect();
    report.seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    report.print(cfg.run.json)
}

/// Steps 3 and 4 on `table`: manifests without the removed files, every
/// snapshot but the current one expired.
async fn purge_and_expire(
    lakehouse: &Lakehouse,
    table: &TableIdent,
    bar: &indicatif::ProgressBar,
    report: &mut EraseReport,
) -> anyhow::Result<()> {
    let expire = ExpireOptions {
        older_than: Some(std::time::Duration::ZERO),
        retain_last: Some(1),
        ..Default::default()
    };
    bar.set_message(format!("rewriting the manifests of {table}"));
    weir_catalog::purge_removed_entries(lakehouse, table)
        .await
        .with_context(|| format!("rewriting the manifests of {table}"))?;
    bar.set_message(format!("expiring older snapshots of {table}"));
    let r = expire_snapshots(lakehouse, table, &expire)
        .await
        .with_context(|| format!("expiring snapshots of {table}"))?;
    report.snapshots_expired += r.snapshots_expired;
    report.data_files_deleted += r.data_files_deleted;
    report.bytes_deleted += r.bytes_deleted;
    Ok(())
}

impl EraseReport {
    /// The JSON object (`--json`) or the summary line.
    fn print(&self, json: bool) -> anyhow::Result<()> {
        let table = &self.table;
        if json {
            println!("{}", serde_json::to_string(self)?);
        } else if self.dry_run {
            println!(
                "{table}: would erase {} rows; views reading it: {}",
                self.rows_erased,
                list(&self.views_refreshed)
            );
        } else {
            println!(
                "{table}: erased {} rows; refreshed {}; expired {} snapshots, deleted {} data files ({:.1} MiB), {:.2} s",
                self.rows_erased,
                list(&self.views_refreshed),
                self.snapshots_expired,
                self.data_files_deleted,
                self.bytes_deleted as f64 / (1 << 20) as f64,
                self.seconds,
            );
        }
        Ok(())
    }
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no views".into()
    } else {
        names.join(", ")
    }
}

/// `"namespace"."table"` for SQL (names may need quoting).
fn quoted(ident: &TableIdent) -> String {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    format!(
        "{}.{}",
        q(&ident.namespace().to_url_string()),
        q(ident.name())
    )
}

/// The single `count` value a statement answers.
async fn single_count(engine: &QueryEngine, sql: &str) -> anyhow::Result<u64> {
    use arrow::array::{Array, Int64Array, UInt64Array};
    let ctx = engine.new_context();
    let batches = engine.sql(&ctx, sql).await?.collect().await?;
    let mut total = 0u64;
    for batch in batches {
        let column = batch.column(0);
        if let Some(a) = column.as_any().downcast_ref::<UInt64Array>() {
            total += a.iter().flatten().sum::<u64>();
        } else if let Some(a) = column.as_any().downcast_ref::<Int64Array>() {
            total += a.iter().flatten().map(|v| v.max(0) as u64).sum::<u64>();
        } else {
            anyhow::bail!("{sql}: unexpected result type {}", column.data_type());
        }
    }
    Ok(total)
}

/// Materialized views whose last refresh read `base` (views never
/// refreshed hold no rows).
async fn views_reading(
    lakehouse: &Lakehouse,
    base: &TableIdent,
) -> anyhow::Result<Vec<TableIdent>> {
    let key = format!("weir.mv.base-snapshot.{base}");
    let catalog = lakehouse.catalog();
    let mut views = Vec::new();
    for ns in catalog.list_namespaces(None).await? {
        for table in catalog
            .list_tables(&NamespaceIdent::from_vec(ns.inner())?)
            .await?
        {
            let Ok(loaded) = catalog.load_table(&table).await else {
                continue; // unreadable metadata: not a view we could refresh
            };
            // A view's refresh records the base snapshots it read in its
            // snapshot summary.
            let metadata = loaded.metadata();
            let reads_base = weir_catalog::mv_last_refresh(metadata)
                .is_some_and(|s| s.summary().additional_properties.contains_key(&key));
            if metadata.properties().contains_key(MV_DEFINITION_PROPERTY) && reads_base {
                views.push(table);
            }
        }
    }
    Ok(views)
}
