//! The last-value index (issue 22 item 3): the latest row of every series
//! of a table, kept in memory, so that "last point per device/metric" and
//! "which devices are there" are answered without reading the table.
//!
//! **Declaration.** Two table properties (no new statement needed):
//!
//! ```sql
//! ALTER TABLE silver.points SET TBLPROPERTIES (
//!   'weir.last-value.keys' = 'device_id, metric',  -- the series key columns
//!   'weir.last-value.time' = 'ts')                 -- optional, default `ts`
//! ```
//!
//! Any table may declare it (generic tables name their own columns). A
//! declaration naming a missing column, or a time column that is not a
//! timestamp, date or integer, is ignored (queries take the normal plan).
//! `UNSET TBLPROPERTIES ('weir.last-value.keys')` drops it.
//!
//! **Use.** `last_cache('ns.table')` (InfluxDB 3's name) is a table of the
//! last row per series, all columns. An optimizer rule also answers the
//! usual SQL from the index, so dashboards need no special SQL:
//!
//! - `SELECT k…, last(x, ts), max(ts) FROM t [WHERE …] GROUP BY k…` where
//!   the group columns are *all* the keys: becomes a projection of the
//!   index rows (`last(x, ts)` is `x` of the series' last row, NULL when the
//!   series has no row with a time, as `last` says; `max(ts)` is its time);
//! - the same grouping by *some* of the keys, and `SELECT DISTINCT k… FROM t`
//!   (or `GROUP BY k…` without aggregates): the aggregate stays, over the
//!   index rows instead of the table. The last row of a group of series is
//!   the last of their last rows, and every series has an index row;
//! - the WHERE clause may filter on key columns, and bound the time from
//!   below (`ts > now() - INTERVAL '1 hour'`, `>=`): a series has rows after
//!   the bound exactly when its last row is after it, and then that row is
//!   its last one there. Anything else (other columns, upper time bounds,
//!   other aggregates, `selector_last`, which skips NULL values) keeps the
//!   normal plan. So does a global aggregate (no key grouped or looked
//!   up) under a time bound — `SELECT max(ts) … WHERE ts > now() - …`:
//!   pruning files to the bound reads less than every series' index row.
//!
//! EXPLAIN shows `LastValueIndexExec` with the series count, the hot rows
//! merged in and how the index was brought up to date. `SET
//! weir.last_value_index = false` turns the rewrite off for a session (the
//! results must be, and in tests are, the same).
//!
//! The index rows are only ever a superset of what the operators above
//! keep (filters stay in the plan), which leaves room for two shortcuts: a
//! filter `k = v` / `k IN (…)` / ORs of those on a key column looks the rows
//! up (postings per column, built once per index state), and a listing
//! without filters (`SELECT DISTINCT device_id`) reads one row per distinct
//! value (also cached per state) plus the hot rows.
//!
//! **Exact and fresh.** The index of a table holds the last row per series
//! of one committed snapshot S (ties on the time: any of the tied rows, as
//! for `last`; rows with a NULL time lose to any row with one, so a series
//! whose rows all lack a time is still listed). When a query pins snapshot
//! P (its table is loaded for each statement, so P is the current one):
//!
//! - P = S: used as it is;
//! - S is an ancestor of P and only appends (and `replace` snapshots, which
//!   change no rows: compaction) happened in between: the index folds in the
//!   data files those appends added (read from the appends' own snapshots
//!   when a compaction rewrote files since) and moves to P;
//! - anything else (row-level DELETE/UPDATE/MERGE, INSERT OVERWRITE,
//!   retention, a rollback, a schema change): rebuilt from P;
//! - P older than S (another query moved the index on meanwhile, P an
//!   ancestor of S): S is used, with the hot rows visible over S — a later
//!   state of the table than P, never an inconsistent one.
//!
//! A query brings the index up to date as above; `weir serve` also does it
//! in the background right after each commit of this process's streaming
//! writers (`QueryEngine::follow_commits`, counted by
//! `weir_last_value_refreshes_total{trigger="commit"}`), so dashboards
//! polling the latest values do not pay for reading the appended files.
//!
//! The hot tier's rows visible over the index's snapshot (see
//! `weir_hot::tier`: so every record counts once) are merged at query
//! time: their last row per series replaces the index row when it is later.
//! So a result is the last row per series of (snapshot ∪ hot rows), the same
//! as the normal plan's.
//!
//! **Memory.** Each index costs about its rows' Arrow size plus the encoded
//! keys; gauges `weir_last_value_series` / `weir_last_value_bytes` (per
//! table) report it. An index beyond the engine's budget for all of them
//! (`EngineOptions::last_value_memory`, `weir serve --last-value-memory-mb`,
//! default 512) is not kept: the rule stops using it until a restart (a
//! warning is logged), `last_cache` computes the rows per query.

mod exec;
mod indexes;
mod rule;
mod state;

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result as DFResult;
use weir_catalog::Lakehouse;

use crate::table::WeirTable;

pub use exec::LastValueExec;
use exec::{LastCacheFunction, LastValueTable};
pub use indexes::LastValueIndexes;
use indexes::{Served, entry_key};
use rule::LastValueRule;
use rule::key_lookup;
use state::HotMerge;

/// Table property: the series key columns, comma-separated.
pub const KEYS_PROPERTY: &str = "weir.last-value.keys";
/// Table property: the time column (default `ts`).
pub const TIME_PROPERTY: &str = "weir.last-value.time";
/// Default memory budget of all last-value indexes of an engine.
pub const DEFAULT_MEMORY: usize = 512 << 20;

/// Output batches of the index scan.
const BATCH_ROWS: usize = 8192;

/// A table's declared index: its key and time columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Declaration {
    keys: Vec<String>,
    time: String,
    /// Positions in the table's schema.
    key_idx: Vec<usize>,
    time_idx: usize,
}

impl Declaration {
    /// The declaration of `table`, if it has a valid one.
    pub(crate) fn of(table: &WeirTable) -> Option<Self> {
        let props = table.iceberg_table().metadata().properties();
        let keys: Vec<String> = props
            .get(KEYS_PROPERTY)?
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect();
        let time = props
            .get(TIME_PROPERTY)
            .map(|t| t.trim().to_string())
            .unwrap_or_else(|| "ts".into());
        let schema = TableProvider::schema(table);
        let mut key_idx = Vec::new();
        for k in &keys {
            key_idx.push(schema.index_of(k).ok()?);
        }
        let time_idx = schema.index_of(&time).ok()?;
        let time_ok = matches!(
            schema.field(time_idx).data_type(),
            DataType::Timestamp(..)
                | DataType::Date32
                | DataType::Date64
                | DataType::Int64
                | DataType::Int32
        );
        let sortable: Vec<SortField> = key_idx
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        if keys.is_empty()
            || !time_ok
            || keys.contains(&time)
            || !RowConverter::supports_fields(&sortable)
        {
            return None;
        }
        Some(Declaration {
            keys,
            time,
            key_idx,
            time_idx,
        })
    }

    fn is_key(&self, name: &str) -> bool {
        self.keys.iter().any(|k| k == name)
    }

    fn converter(&self, schema: &SchemaRef) -> DFResult<RowConverter> {
        let fields = self
            .key_idx
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect();
        Ok(RowConverter::new(fields)?)
    }
}

/// Brings the kept indexes of `tables` (`namespace.table`, committed to by
/// this process) up to date in the background, so that the first query
/// after a commit finds them current instead of reading the appended
/// files itself. Tables without a kept index are not loaded. Failures are
/// logged: the next query brings the index up to date anyway.
pub(crate) async fn follow_commits(
    indexes: &LastValueIndexes,
    lakehouse: &Lakehouse,
    hot: &weir_hot::HotTiers,
    tables: &[Arc<str>],
    session: &dyn Session,
) {
    for name in tables {
        if !indexes.is_kept(name) {
            continue;
        }
        let result = async {
            let table = exec::load_with_hot_async(lakehouse, hot, name).await?;
            indexes.follow_commit(&table, session).await
        }
        .await;
        match result {
            Ok(Some(served)) => {
                tracing::debug!(table = %name, %served, "last-value index followed a commit")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(table = %name, error = %e,
                "last-value index not brought up to date after a commit (the next query will)"),
        }
    }
}

/// The tables with an index kept in memory.
pub(crate) fn kept_tables(indexes: &LastValueIndexes) -> Vec<Arc<str>> {
    indexes.kept_tables().into_iter().map(Arc::from).collect()
}

/// Adds `last_cache` and the rewrite rule to a session.
pub(crate) fn register(
    ctx: &datafusion::prelude::SessionContext,
    lakehouse: &Lakehouse,
    hot: &weir_hot::HotTiers,
    indexes: &Arc<LastValueIndexes>,
) {
    ctx.register_udtf(
        "last_cache",
        Arc::new(LastCacheFunction {
            lakehouse: lakehouse.clone(),
            hot: Arc::new(hot.clone()),
            indexes: indexes.clone(),
        }),
    );
    ctx.add_optimizer_rule(Arc::new(LastValueRule {
        indexes: indexes.clone(),
    }));
}
