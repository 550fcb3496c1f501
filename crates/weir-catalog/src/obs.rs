//! Metrics of the catalog layer, emitted through the `metrics` facade (a
//! no-op unless the binary installed a recorder): commits per table and
//! their latency, and table size gauges (refreshed on commit and by
//! [`refresh_table_metrics`]). Names are listed in `weir-observe`.

use std::time::Instant;

use iceberg::NamespaceIdent;
use iceberg::table::Table;

use crate::lakehouse::Lakehouse;

/// Records one commit attempt's outcome (`ok`, `fenced` or `error`) and latency.
pub(crate) fn record_commit(
    table: &str,
    operation: &'static str,
    started: Instant,
    outcome: &'static str,
) {
    let table = table.to_string();
    ::metrics::counter!(crate::metric_names::COMMITS_TOTAL, "table" => table.clone(), "operation" => operation, "outcome" => outcome)
        .increment(1);
    ::metrics::histogram!(crate::metric_names::COMMIT_DURATION_SECONDS, "table" => table, "operation" => operation)
        .record(started.elapsed().as_secs_f64());
}

/// Rows a commit appended.
pub(crate) fn record_rows(table: &str, rows: u64) {
    ::metrics::counter!(crate::metric_names::COMMIT_ROWS_TOTAL, "table" => table.to_string())
        .increment(rows);
}

/// Sets the size gauges of `table` from its current snapshot's summary
/// (`total-data-files`, `total-files-size`, `total-records`) and metadata.
pub fn record_table(table: &Table) {
    let name = table.identifier().to_string();
    let metadata = table.metadata();
    ::metrics::gauge!(crate::metric_names::TABLE_SNAPSHOTS, "table" => name.clone())
        .set(metadata.snapshots().count() as f64);
    let totals = metadata
        .current_snapshot()
        .map(|s| &s.summary().additional_properties);
    let total = |key: &str| -> f64 {
        match totals {
            Some(props) => props
                .get(key)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0),
            None => 0.0,
        }
    };
    ::metrics::gauge!(crate::metric_names::TABLE_DATA_FILES, "table" => name.clone())
        .set(total("total-data-files"));
    ::metrics::gauge!(crate::metric_names::TABLE_DATA_BYTES, "table" => name.clone())
        .set(total("total-files-size"));
    ::metrics::gauge!(crate::metric_names::TABLE_ROWS, "table" => name).set(total("total-records"));
}

/// Loads every table of `namespaces` and records its size gauges (covers
/// commits made by other processes); tables that fail to load are skipped.
/// TODO(issue 7): the gauges of a dropped table keep their last value until
/// restart (the `metrics` facade cannot remove a series).
pub async fn refresh_table_metrics(lakehouse: &Lakehouse, namespaces: &[&str]) {
    let catalog = lakehouse.catalog();
    for ns in namespaces {
        let Ok(tables) = catalog
            .list_tables(&NamespaceIdent::new(ns.to_string()))
            .await
        else {
            continue;
        };
        for ident in tables {
            match catalog.load_table(&ident).await {
                Ok(table) => record_table(&table),
                Err(e) => tracing::debug!(table = %ident, error = %e, "table metrics: cannot load"),
            }
        }
    }
}
