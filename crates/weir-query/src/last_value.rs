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
//!   normal plan.
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

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{
    cast, concat_batches, filter_record_batch, interleave_record_batch, take_record_batch,
};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue, internal_err};
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, Operator, Projection, TableProviderFilterPushDown,
    TableScan, when,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, execute_stream,
};
use futures::StreamExt;
use iceberg::table::Table;
use weir_catalog::Lakehouse;

use weir_hot::{HotChunk, HotSource, visible_batches};

use crate::mv_incremental::{added_data_files, changes_since};
use crate::table::{WeirTable, conform_batch};

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

/// The time column as i64 (NULLs kept).
fn times(column: &ArrayRef) -> DFResult<ArrayRef> {
    Ok(cast(column, &DataType::Int64)?)
}

fn time_at(times: &ArrayRef, row: usize) -> Option<i64> {
    let t = times.as_primitive::<Int64Type>();
    t.is_valid(row).then(|| t.value(row))
}

/// Whether a row at `new` replaces the series' row at `old` (later wins; a
/// row with a time beats one without; ties: the row seen later).
fn wins(new: Option<i64>, old: Option<i64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n >= o,
        (Some(_), None) | (None, None) => true,
        (None, Some(_)) => false,
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    batch: u32,
    row: u32,
    time: Option<i64>,
}

/// Folds batches into the last row per series.
struct Folder {
    schema: SchemaRef,
    decl: Declaration,
    converter: RowConverter,
    map: HashMap<Box<[u8]>, Slot>,
    batches: Vec<RecordBatch>,
    rows_held: usize,
}

impl Folder {
    fn new(schema: SchemaRef, decl: &Declaration) -> DFResult<Self> {
        Ok(Folder {
            converter: decl.converter(&schema)?,
            schema,
            decl: decl.clone(),
            map: HashMap::new(),
            batches: Vec::new(),
            rows_held: 0,
        })
    }

    fn push(&mut self, batch: RecordBatch) -> DFResult<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys: Vec<ArrayRef> = self
            .decl
            .key_idx
            .iter()
            .map(|&i| batch.column(i).clone())
            .collect();
        let rows = self.converter.convert_columns(&keys)?;
        let t = times(batch.column(self.decl.time_idx))?;
        let b = self.batches.len() as u32;
        let mut used = false;
        for i in 0..n {
            let slot = Slot {
                batch: b,
                row: i as u32,
                time: time_at(&t, i),
            };
            let key = rows.row(i);
            match self.map.get_mut(key.as_ref()) {
                Some(old) => {
                    if wins(slot.time, old.time) {
                        *old = slot;
                        used = true;
                    }
                }
                None => {
                    self.map.insert(key.as_ref().into(), slot);
                    used = true;
                }
            }
        }
        if used {
            self.batches.push(batch);
            self.rows_held += n;
            // Keep memory about the size of the result, not of the input.
            if self.rows_held > 4 * self.map.len() + 65_536 {
                self.compact()?;
            }
        }
        Ok(())
    }

    /// Gathers the winning rows into one batch.
    fn compact(&mut self) -> DFResult<()> {
        let indices: Vec<(usize, usize)> = self
            .map
            .values()
            .map(|s| (s.batch as usize, s.row as usize))
            .collect();
        let batch = if self.batches.is_empty() {
            RecordBatch::new_empty(self.schema.clone())
        } else {
            let refs: Vec<&RecordBatch> = self.batches.iter().collect();
            interleave_record_batch(&refs, &indices)?
        };
        for (i, s) in self.map.values_mut().enumerate() {
            s.batch = 0;
            s.row = i as u32;
        }
        self.rows_held = batch.num_rows();
        self.batches = vec![batch];
        Ok(())
    }

    fn finish(mut self, table: Table, snapshot_id: Option<i64>) -> DFResult<State> {
        self.compact()?;
        let batch = self.batches.pop().expect("compacted");
        let map: HashMap<Box<[u8]>, u32> = self.map.into_iter().map(|(k, s)| (k, s.row)).collect();
        Ok(State::new(
            table,
            snapshot_id,
            self.schema,
            self.decl,
            batch,
            map,
        ))
    }
}

/// The index of one table at one snapshot.
pub(crate) struct State {
    /// The table's metadata at `snapshot_id` (for the hot rows' watermarks).
    table: Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    decl: Declaration,
    /// One row per series.
    batch: RecordBatch,
    /// Encoded key → row of `batch`.
    map: HashMap<Box<[u8]>, u32>,
    bytes: usize,
    /// One row of `batch` per distinct value of some key columns (by
    /// their positions), computed on first use.
    representatives: Mutex<HashMap<Vec<usize>, UInt32Array>>,
    /// Rows of `batch` by the value of one key column (by its position),
    /// built on first use.
    postings: Mutex<HashMap<usize, Arc<Postings>>>,
    /// The hot rows folded so far over this state (queries between two
    /// commits fold only the chunks sealed since the previous query).
    hot: Mutex<Option<HotFold>>,
}

/// The last row per series of some hot chunks, and what it changes in the
/// index.
struct HotFold {
    /// The chunks folded, in the hot tier's order (held, so that a chunk
    /// is never mistaken for a newer one at the same address).
    chunks: Vec<Arc<HotChunk>>,
    folder: Folder,
    /// Visible rows folded.
    rows: usize,
    merge: Option<Arc<HotMerge>>,
}

/// The hot rows' effect on the index rows.
#[derive(Debug)]
struct HotMerge {
    /// Visible hot rows (EXPLAIN).
    rows: usize,
    /// Index rows a hot row replaces, ascending.
    beaten: Vec<u32>,
    /// The hot rows that replace one or add a series.
    winners: RecordBatch,
}

/// Encoded value → rows.
type Postings = HashMap<Box<[u8]>, Vec<u32>>;

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("snapshot_id", &self.snapshot_id)
            .field("series", &self.batch.num_rows())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl State {
    fn new(
        table: Table,
        snapshot_id: Option<i64>,
        schema: SchemaRef,
        decl: Declaration,
        batch: RecordBatch,
        map: HashMap<Box<[u8]>, u32>,
    ) -> Self {
        let keys: usize = map.keys().map(|k| k.len() + 32).sum();
        let bytes = batch.get_array_memory_size() + keys;
        State {
            table,
            snapshot_id,
            schema,
            decl,
            batch,
            map,
            bytes,
            representatives: Mutex::default(),
            postings: Mutex::default(),
            hot: Mutex::default(),
        }
    }

    fn copy(&self) -> Self {
        State::new(
            self.table.clone(),
            self.snapshot_id,
            self.schema.clone(),
            self.decl.clone(),
            self.batch.clone(),
            self.map.clone(),
        )
    }

    /// The index with the last rows of later commits (`later`) folded in:
    /// a series' row is replaced where the later one wins, new series are
    /// added at the end (other rows keep their place, so the key map is
    /// only added to).
    fn absorb(
        mut self,
        mut later: Folder,
        table: Table,
        snapshot_id: Option<i64>,
    ) -> DFResult<Self> {
        later.compact()?;
        let new_batch = later.batches.pop().expect("compacted");
        let new_times = times(new_batch.column(self.decl.time_idx))?;
        let old_times = times(self.batch.column(self.decl.time_idx))?;
        let mut indices: Vec<(usize, usize)> = (0..self.batch.num_rows()).map(|r| (0, r)).collect();
        let mut changed = false;
        for (key, slot) in later.map {
            let t = time_at(&new_times, slot.row as usize);
            match self.map.get(&key) {
                Some(&row) => {
                    if wins(t, time_at(&old_times, row as usize)) {
                        indices[row as usize] = (1, slot.row as usize);
                        changed = true;
                    }
                }
                None => {
                    self.map.insert(key, indices.len() as u32);
                    indices.push((1, slot.row as usize));
                    changed = true;
                }
            }
        }
        let batch = if changed {
            interleave_record_batch(&[&self.batch, &new_batch], &indices)?
        } else {
            self.batch
        };
        Ok(State::new(
            table,
            snapshot_id,
            self.schema,
            self.decl,
            batch,
            self.map,
        ))
    }

    /// Rows of `batch`, one per distinct combination of the columns `cols`.
    fn representatives(&self, cols: &[usize]) -> DFResult<UInt32Array> {
        let mut cache = self.representatives.lock().expect("lvi lock");
        if let Some(rows) = cache.get(cols) {
            return Ok(rows.clone());
        }
        let fields = cols
            .iter()
            .map(|&i| SortField::new(self.schema.field(i).data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let columns: Vec<ArrayRef> = cols.iter().map(|&i| self.batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&columns)?;
        let mut seen = HashSet::new();
        let picked: UInt32Array = (0..rows.num_rows())
            .filter(|&i| seen.insert(rows.row(i)))
            .map(|i| i as u32)
            .collect();
        cache.insert(cols.to_vec(), picked.clone());
        Ok(picked)
    }

    /// Rows of `batch` whose key column `col` holds one of `values`; `None`
    /// when a value does not convert to the column's type.
    fn lookup(&self, col: usize, values: &[ScalarValue]) -> DFResult<Option<UInt32Array>> {
        let data_type = self.schema.field(col).data_type();
        let converter = RowConverter::new(vec![SortField::new(data_type.clone())])?;
        let postings = {
            let mut cache = self.postings.lock().expect("lvi lock");
            match cache.get(&col) {
                Some(p) => p.clone(),
                None => {
                    let rows = converter.convert_columns(&[self.batch.column(col).clone()])?;
                    let mut p = Postings::new();
                    for i in 0..rows.num_rows() {
                        let key = rows.row(i);
                        match p.get_mut(key.as_ref()) {
                            Some(list) => list.push(i as u32),
                            None => {
                                p.insert(key.as_ref().into(), vec![i as u32]);
                            }
                        }
                    }
                    let p = Arc::new(p);
                    cache.insert(col, p.clone());
                    p
                }
            }
        };
        let mut out = Vec::new();
        for v in values.iter().filter(|v| !v.is_null()) {
            let Ok(value) = v.cast_to(data_type) else {
                return Ok(None);
            };
            // A lossy cast could miss rows the filter keeps.
            if value.cast_to(&v.data_type()).ok().as_ref() != Some(v) {
                return Ok(None);
            }
            let rows = converter.convert_columns(&[value.to_array_of_size(1)?])?;
            if let Some(found) = postings.get(rows.row(0).as_ref()) {
                out.extend_from_slice(found);
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(Some(UInt32Array::from(out)))
    }

    /// What the hot rows of `chunks` visible over this state change: their
    /// last row per series where it beats the index row. Chunks sealed
    /// since the previous call are folded into its result; anything else
    /// (chunks evicted, another order) folds them all again.
    fn hot_merge(&self, chunks: &[Arc<HotChunk>]) -> DFResult<Arc<HotMerge>> {
        let mut cache = self.hot.lock().expect("lvi lock");
        let reusable = cache.as_ref().is_some_and(|c| {
            c.chunks.len() <= chunks.len()
                && c.chunks.iter().zip(chunks).all(|(a, b)| Arc::ptr_eq(a, b))
        });
        if !reusable {
            *cache = Some(HotFold {
                chunks: Vec::new(),
                folder: Folder::new(self.schema.clone(), &self.decl)?,
                rows: 0,
                merge: None,
            });
        }
        let fold = cache.as_mut().expect("set above");
        let new = &chunks[fold.chunks.len()..];
        if !new.is_empty() || fold.merge.is_none() {
            for batch in visible_batches(new, self.table.metadata(), self.snapshot_id)? {
                if batch.num_rows() > 0 {
                    fold.rows += batch.num_rows();
                    fold.folder.push(conform_batch(batch, &self.schema)?)?;
                }
            }
            fold.chunks.extend(new.iter().cloned());
            fold.merge = Some(Arc::new(self.against_index(&mut fold.folder, fold.rows)?));
        }
        Ok(fold.merge.clone().expect("set above"))
    }

    /// The rows of `folder` that beat the index rows of their series (or
    /// have none).
    fn against_index(&self, folder: &mut Folder, rows: usize) -> DFResult<HotMerge> {
        folder.compact()?;
        let hot_batch = folder.batches.last().expect("compacted").clone();
        let hot_times = times(hot_batch.column(self.decl.time_idx))?;
        let index_times = times(self.batch.column(self.decl.time_idx))?;
        let mut beaten = Vec::new();
        let mut take = Vec::new();
        for (key, slot) in &folder.map {
            let hot_time = time_at(&hot_times, slot.row as usize);
            match self.map.get(key) {
                Some(&row) => {
                    if wins(hot_time, time_at(&index_times, row as usize)) {
                        beaten.push(row);
                        take.push(slot.row);
                    }
                }
                None => take.push(slot.row),
            }
        }
        beaten.sort_unstable();
        Ok(HotMerge {
            rows,
            beaten,
            winners: take_record_batch(&hot_batch, &UInt32Array::from(take))?,
        })
    }

    /// The index rows (only rows `only` of them, if given: the filter above
    /// drops the others) with the hot rows' last row per series merged in.
    fn merged(&self, hot: &HotMerge, only: Option<&UInt32Array>) -> DFResult<RecordBatch> {
        if hot.winners.num_rows() == 0 {
            return Ok(match only {
                Some(rows) => take_record_batch(&self.batch, rows)?,
                None => self.batch.clone(),
            });
        }
        let mut keep = vec![true; self.batch.num_rows()];
        for &row in &hot.beaten {
            keep[row as usize] = false;
        }
        let kept = match only {
            Some(rows) => {
                let rows: UInt32Array = rows
                    .values()
                    .iter()
                    .copied()
                    .filter(|&r| keep[r as usize])
                    .collect();
                take_record_batch(&self.batch, &rows)?
            }
            None => filter_record_batch(&self.batch, &BooleanArray::from(keep))?,
        };
        Ok(concat_batches(&self.schema, [&kept, &hot.winners])?)
    }
}

/// How the index served a scan (EXPLAIN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// At the pinned snapshot (or a later one) already.
    Kept,
    /// Moved forward by reading the files appended since.
    Appended {
        files: usize,
    },
    Rebuilt,
    /// Over the memory budget: computed for this query only.
    Unkept,
}

impl fmt::Display for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Served::Kept => write!(f, "index up to date"),
            Served::Appended { files } => write!(f, "index refreshed from {files} appended files"),
            Served::Rebuilt => write!(f, "index rebuilt"),
            Served::Unkept => write!(f, "over the memory budget: computed for this query"),
        }
    }
}

#[derive(Default)]
struct Entry {
    state: Option<Arc<State>>,
}

/// The engine's last-value indexes, by table and declaration.
#[derive(Default)]
pub struct LastValueIndexes {
    budget: usize,
    entries: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Entry>>>>,
    /// Indexes found too big: the rule leaves their tables alone.
    over_budget: Mutex<HashSet<String>>,
    /// Bytes of every kept index, by entry.
    sizes: Mutex<HashMap<String, usize>>,
}

impl fmt::Debug for LastValueIndexes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LastValueIndexes")
            .field("budget", &self.budget)
            .finish()
    }
}

fn entry_key(table: &WeirTable, decl: &Declaration) -> String {
    format!(
        "{}|{}|{}",
        table.iceberg_table().identifier(),
        decl.keys.join(","),
        decl.time
    )
}

impl LastValueIndexes {
    pub fn new(budget: usize) -> Self {
        LastValueIndexes {
            budget,
            ..Default::default()
        }
    }

    fn is_over_budget(&self, key: &str) -> bool {
        self.over_budget.lock().expect("lvi lock").contains(key)
    }

    /// The index of `table` (pinned to its snapshot), brought up to date.
    async fn state_for(
        &self,
        table: &WeirTable,
        decl: &Declaration,
        session: &dyn Session,
    ) -> DFResult<(Arc<State>, Served)> {
        let key = entry_key(table, decl);
        let entry = self
            .entries
            .lock()
            .expect("lvi lock")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut guard = entry.lock().await;
        let pinned = table.snapshot_id();
        let schema = TableProvider::schema(table);
        let mut start = None;
        if let Some(s) = &guard.state
            && s.schema == schema
            && s.decl == *decl
        {
            if s.snapshot_id == pinned {
                return Ok((s.clone(), Served::Kept));
            }
            if let (Some(p), Some(at)) = (pinned, s.snapshot_id) {
                // The index is ahead of this query: a later state.
                if changes_since(&s.table, p, at).is_some() {
                    return Ok((s.clone(), Served::Kept));
                }
                start = guard.state.take();
            }
        }
        let (state, served) = match start {
            Some(s) => match self.appended(s, table, session).await? {
                Some((state, files)) => (state, Served::Appended { files }),
                None => (rebuild(table, decl, session).await?, Served::Rebuilt),
            },
            None => (rebuild(table, decl, session).await?, Served::Rebuilt),
        };
        let state = Arc::new(state);
        let name = table.iceberg_table().identifier().to_string();
        let others: usize = self
            .sizes
            .lock()
            .expect("lvi lock")
            .iter()
            .filter(|(k, _)| **k != key)
            .map(|(_, v)| *v)
            .sum();
        if others + state.bytes > self.budget {
            tracing::warn!(table = %name, bytes = state.bytes, budget = self.budget,
                "last-value index over the memory budget: not kept, queries take the normal plan");
            guard.state = None;
            self.sizes.lock().expect("lvi lock").remove(&key);
            self.over_budget.lock().expect("lvi lock").insert(key);
            ::metrics::gauge!(crate::metric_names::LAST_VALUE_BYTES, "table" => name.clone())
                .set(0.0);
            ::metrics::gauge!(crate::metric_names::LAST_VALUE_SERIES, "table" => name).set(0.0);
            return Ok((state, Served::Unkept));
        }
        // A changed declaration of the table leaves its old index behind.
        let prefix = format!("{name}|");
        let stale = |k: &String| k.starts_with(&prefix) && *k != key;
        self.sizes
            .lock()
            .expect("lvi lock")
            .retain(|k, _| !stale(k));
        self.entries
            .lock()
            .expect("lvi lock")
            .retain(|k, _| !stale(k));
        self.sizes
            .lock()
            .expect("lvi lock")
            .insert(key, state.bytes);
        ::metrics::gauge!(crate::metric_names::LAST_VALUE_BYTES, "table" => name.clone())
            .set(state.bytes as f64);
        ::metrics::gauge!(crate::metric_names::LAST_VALUE_SERIES, "table" => name)
            .set(state.batch.num_rows() as f64);
        guard.state = Some(state.clone());
        Ok((state, served))
    }

    /// `from` moved to `table`'s snapshot by folding in the files appended
    /// since; `None` when something else than appends and compactions
    /// happened.
    async fn appended(
        &self,
        from: Arc<State>,
        table: &WeirTable,
        session: &dyn Session,
    ) -> DFResult<Option<(State, usize)>> {
        let (Some(since), Some(until)) = (from.snapshot_id, table.snapshot_id()) else {
            return Ok(None);
        };
        let iceberg = table.iceberg_table();
        let Some(changes) = changes_since(iceberg, since, until) else {
            return Ok(None);
        };
        if !changes.overwrites.is_empty() {
            return Ok(None);
        }
        let mut folder = Folder::new(from.schema.clone(), &from.decl)?;
        let mut count = 0;
        if changes.files_rewritten {
            // A compaction since: read each append's files at its own
            // snapshot (they may be gone from the pinned one).
            for append in changes.appends.iter().rev() {
                let files = added_data_files(iceberg, std::slice::from_ref(append))
                    .await
                    .map_err(crate::error::to_df)?;
                count += files.len();
                let paths = files.iter().map(|f| f.file_path().to_string()).collect();
                let at = WeirTable::pinned_in_current_schema(
                    table.lakehouse().clone(),
                    iceberg.clone(),
                    Some(append.snapshot_id()),
                )?
                .restricted(
                    Some(Arc::new(paths)),
                    false,
                    "last-value index".into(),
                );
                read_into(&mut folder, &at, session).await?;
            }
        } else {
            let files = added_data_files(iceberg, &changes.appends)
                .await
                .map_err(crate::error::to_df)?;
            count = files.len();
            if count > 0 {
                let paths = files.iter().map(|f| f.file_path().to_string()).collect();
                let at = table.restricted(Some(Arc::new(paths)), false, "last-value index".into());
                read_into(&mut folder, &at, session).await?;
            }
        }
        // In place unless a running query still reads the old state.
        let state = Arc::try_unwrap(from).unwrap_or_else(|shared| shared.copy());
        Ok(Some((
            state.absorb(folder, iceberg.clone(), table.snapshot_id())?,
            count,
        )))
    }
}

/// The index of `table`'s snapshot, from all its rows.
async fn rebuild(table: &WeirTable, decl: &Declaration, session: &dyn Session) -> DFResult<State> {
    let mut folder = Folder::new(TableProvider::schema(table), decl)?;
    if table.snapshot_id().is_some() {
        let all = table.restricted(None, false, "last-value index rebuild".into());
        read_into(&mut folder, &all, session).await?;
    }
    folder.finish(table.iceberg_table().clone(), table.snapshot_id())
}

async fn read_into(folder: &mut Folder, table: &WeirTable, session: &dyn Session) -> DFResult<()> {
    let plan = table.scan(session, None, &[], None).await?;
    let mut stream = execute_stream(plan, session.task_ctx())?;
    while let Some(batch) = stream.next().await {
        folder.push(batch?)?;
    }
    Ok(())
}

/// The last row per series of a table (with its hot rows): what
/// `last_cache('t')` reads, and what the rewrite puts under aggregates.
pub(crate) struct LastValueTable {
    table: WeirTable,
    decl: Declaration,
    indexes: Arc<LastValueIndexes>,
    /// Only one row per distinct combination of these columns is needed
    /// (a listing without filters: `SELECT DISTINCT device_id`).
    distinct_on: Option<Vec<usize>>,
}

impl fmt::Debug for LastValueTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LastValueTable({:?})", self.table)
    }
}

#[async_trait]
impl TableProvider for LastValueTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        TableProvider::schema(&self.table)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let lookup = key_lookup(filters, &self.decl, &TableProvider::schema(&self.table));
        let (state, served) = self
            .indexes
            .state_for(&self.table, &self.decl, session)
            .await?;
        let hot = state.hot_merge(self.table.hot_chunks())?;
        let schema = match projection {
            Some(p) => Arc::new(state.schema.project(p)?),
            None => state.schema.clone(),
        };
        Ok(Arc::new(LastValueExec {
            table: self.table.iceberg_table().identifier().to_string(),
            distinct_on: self.distinct_on.clone(),
            lookup,
            state,
            served,
            hot,
            projection: projection.cloned(),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// Reads the index rows, with the hot rows merged in.
#[derive(Debug)]
pub struct LastValueExec {
    table: String,
    distinct_on: Option<Vec<usize>>,
    /// A key column and the values the query's filters allow.
    lookup: Option<(usize, Vec<ScalarValue>)>,
    state: Arc<State>,
    served: Served,
    hot: Arc<HotMerge>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for LastValueExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hot = self.hot.rows;
        write!(
            f,
            "LastValueIndexExec: table={}, keys=[{}], time={}, series={}, hot rows={hot}",
            self.table,
            self.state.decl.keys.join(", "),
            self.state.decl.time,
            self.state.batch.num_rows(),
        )?;
        if let Some(cols) = &self.distinct_on {
            let names: Vec<&str> = cols
                .iter()
                .map(|&i| self.state.schema.field(i).name().as_str())
                .collect();
            write!(f, ", one row per distinct [{}]", names.join(", "))?;
        }
        if let Some((col, values)) = &self.lookup {
            write!(
                f,
                ", lookup {} in {} value{}",
                self.state.schema.field(*col).name(),
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            )?;
        }
        write!(f, " ({})", self.served)
    }
}

impl ExecutionPlan for LastValueExec {
    fn name(&self) -> &str {
        "LastValueIndexExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "LastValueIndexExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "LastValueIndexExec has one partition, got {partition}"
            )));
        }
        let merged = match &self.distinct_on {
            // Every distinct value is in the representatives or the hot
            // rows' last rows; the aggregate above removes duplicates.
            Some(cols) => {
                let rows = self.state.representatives(cols)?;
                let reps = take_record_batch(&self.state.batch, &rows)?;
                concat_batches(&self.state.schema, [&reps, &self.hot.winners])?
            }
            None => {
                let only = match &self.lookup {
                    Some((col, values)) => self.state.lookup(*col, values)?,
                    None => None,
                };
                self.state.merged(&self.hot, only.as_ref())?
            }
        };
        let batch = match &self.projection {
            Some(p) => merged.project(p)?,
            None => merged,
        };
        let n = batch.num_rows();
        let slices: Vec<DFResult<RecordBatch>> = (0..n.div_ceil(BATCH_ROWS))
            .map(|i| {
                let at = i * BATCH_ROWS;
                Ok(batch.slice(at, BATCH_ROWS.min(n - at)))
            })
            .collect();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(slices),
        )))
    }
}

/// `last_cache('ns.table')`: the last row per series of a table with a
/// declared index.
#[derive(Debug)]
pub(crate) struct LastCacheFunction {
    pub lakehouse: Lakehouse,
    /// The engine's hot tiers (hot rows first, then the table).
    pub hot: Arc<dyn HotSource>,
    pub indexes: Arc<LastValueIndexes>,
}

impl TableFunctionImpl for LastCacheFunction {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] = args else {
            return Err(DataFusionError::Plan(
                "last_cache('ns.table') takes one table name".into(),
            ));
        };
        let table = load_with_hot(&self.lakehouse, self.hot.as_ref(), name)?;
        let decl = Declaration::of(&table).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{name} has no last-value index: declare one with ALTER TABLE {name} SET TBLPROPERTIES \
                 ('{KEYS_PROPERTY}' = 'key, …', '{TIME_PROPERTY}' = 'ts')"
            ))
        })?;
        Ok(Arc::new(LastValueTable {
            table,
            decl,
            indexes: self.indexes.clone(),
            distinct_on: None,
        }))
    }
}

/// `name` (`t`, `ns.t` or `catalog.ns.t`) as a query sees it: its hot rows
/// taken first, then the table at its current snapshot (see
/// `weir_hot::tier`). Table functions are synchronous; this blocks the
/// (multi-threaded) runtime worker for the catalog read, as the time-travel
/// functions do.
fn load_with_hot(lakehouse: &Lakehouse, hot: &dyn HotSource, name: &str) -> DFResult<WeirTable> {
    let parts: Vec<&str> = name.split('.').collect();
    let (ns, table) = match parts.as_slice() {
        [t] => (weir_catalog::DEFAULT_NAMESPACE, *t),
        [ns, t] | [_, ns, t] => (*ns, *t),
        _ => {
            return Err(DataFusionError::Plan(format!(
                "`{name}` is not a table name"
            )));
        }
    };
    let ident = iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(ns.to_string()),
        table.to_string(),
    );
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| DataFusionError::Internal("last_cache needs a tokio runtime".into()))?;
    let (hot, loaded) = tokio::task::block_in_place(|| {
        handle.block_on(async {
            let hot = hot.chunks(&ident.to_string()).await;
            (hot, lakehouse.load_table_cached(&ident).await)
        })
    });
    let loaded = loaded.map_err(|e| {
        if e.kind() == iceberg::ErrorKind::TableNotFound {
            crate::error::to_df(crate::QueryError::NotFound(format!("table {name}")))
        } else {
            crate::error::to_df(e)
        }
    })?;
    let hot = hot.map_err(crate::error::to_df)?;
    Ok(WeirTable::try_new(lakehouse.clone(), loaded, None)?.with_hot(hot))
}

/// Answers aggregates of the shapes in the module docs from the index.
#[derive(Debug)]
pub(crate) struct LastValueRule {
    pub indexes: Arc<LastValueIndexes>,
}

impl OptimizerRule for LastValueRule {
    fn name(&self) -> &str {
        "weir_last_value_index"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> DFResult<Transformed<LogicalPlan>> {
        let on = config
            .options()
            .extensions
            .get::<crate::WeirSessionOptions>()
            .is_none_or(|o| o.last_value_index);
        if !on {
            return Ok(Transformed::no(plan));
        }
        let LogicalPlan::Aggregate(agg) = &plan else {
            return Ok(Transformed::no(plan));
        };
        match self.try_rewrite(agg)? {
            Some(new) => Ok(Transformed::yes(new)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What an aggregate expression is, in terms of the index.
enum Agg {
    /// `last(x, time)`.
    Last(Expr),
    /// `max(time)`.
    MaxTime,
}

impl LastValueRule {
    fn try_rewrite(&self, agg: &Aggregate) -> DFResult<Option<LogicalPlan>> {
        // Down to the scan through filters and plain column projections.
        let mut filters: Vec<Expr> = Vec::new();
        let mut node = agg.input.as_ref();
        loop {
            match node {
                LogicalPlan::Filter(f) => {
                    filters.extend(split_conjunction(&f.predicate).into_iter().cloned());
                    node = f.input.as_ref();
                }
                LogicalPlan::Projection(p)
                    if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) =>
                {
                    node = p.input.as_ref();
                }
                LogicalPlan::SubqueryAlias(a) => node = a.input.as_ref(),
                LogicalPlan::TableScan(_) => break,
                _ => return Ok(None),
            }
        }
        let LogicalPlan::TableScan(scan) = node else {
            return Ok(None);
        };
        if scan.fetch.is_some() {
            return Ok(None);
        }
        let Ok(provider) = source_as_provider(&scan.source) else {
            return Ok(None);
        };
        let Some(table) = provider.as_any().downcast_ref::<WeirTable>() else {
            return Ok(None);
        };
        if table.is_restricted()
            || table.snapshot_id() != table.iceberg_table().metadata().current_snapshot_id()
        {
            return Ok(None);
        }
        let Some(decl) = Declaration::of(table) else {
            return Ok(None);
        };
        if self.is_over_budget(table, &decl) {
            return Ok(None);
        }
        for f in scan.filters.iter() {
            filters.extend(split_conjunction(f).into_iter().cloned());
        }
        if !filters.iter().all(|f| filter_ok(f, &decl)) {
            return Ok(None);
        }
        // Group columns: keys only.
        let mut grouped = HashSet::new();
        for g in &agg.group_expr {
            match g {
                Expr::Column(c) if decl.is_key(&c.name) => {
                    grouped.insert(c.name.clone());
                }
                _ => return Ok(None),
            }
        }
        let mut aggs = Vec::new();
        for a in &agg.aggr_expr {
            match classify(a, &decl) {
                Some(x) => aggs.push(x),
                None => return Ok(None),
            }
        }
        // A listing without filters needs one row per value.
        let distinct_on =
            (aggs.is_empty() && filters.is_empty() && grouped.len() < decl.keys.len()).then(|| {
                let schema = TableProvider::schema(table);
                agg.group_expr
                    .iter()
                    .filter_map(|g| match g {
                        Expr::Column(c) => schema.index_of(&c.name).ok(),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            });
        let new_scan = LogicalPlan::TableScan(TableScan {
            source: provider_as_source(Arc::new(LastValueTable {
                table: table.clone(),
                decl: decl.clone(),
                indexes: self.indexes.clone(),
                distinct_on,
            })),
            ..scan.clone()
        });
        let input = replace_scan(agg.input.as_ref(), &new_scan)?;
        if grouped.len() == decl.keys.len() {
            // One group per series: its index row is the answer. The time
            // column is only in the input when an aggregate reads it (a
            // listing `GROUP BY device_id, metric` projects the keys alone).
            let time = if aggs.is_empty() {
                None
            } else {
                Some(time_column(&input, &decl)?)
            };
            let mut exprs = Vec::new();
            for (i, (qualifier, field)) in agg.schema.iter().enumerate() {
                let e = if i < agg.group_expr.len() {
                    // A column keeps its (qualified) name.
                    exprs.push(agg.group_expr[i].clone());
                    continue;
                } else {
                    let Some(time) = &time else {
                        return internal_err!("an aggregate without the time column");
                    };
                    match &aggs[i - agg.group_expr.len()] {
                        Agg::MaxTime => time.clone(),
                        Agg::Last(x) => {
                            let null = ScalarValue::try_from(x.get_type(input.schema())?)?;
                            when(time.clone().is_null(), Expr::Literal(null, None))
                                .otherwise(x.clone())?
                        }
                    }
                };
                exprs.push(e.alias_qualified(qualifier.cloned(), field.name()));
            }
            return Ok(Some(LogicalPlan::Projection(Projection::try_new(
                exprs,
                Arc::new(input),
            )?)));
        }
        Ok(Some(LogicalPlan::Aggregate(
            Aggregate::try_new_with_schema(
                Arc::new(input),
                agg.group_expr.clone(),
                agg.aggr_expr.clone(),
                agg.schema.clone(),
            )?,
        )))
    }

    fn is_over_budget(&self, table: &WeirTable, decl: &Declaration) -> bool {
        self.indexes.is_over_budget(&entry_key(table, decl))
    }
}

/// The time column as the input of the aggregate names it.
fn time_column(input: &LogicalPlan, decl: &Declaration) -> DFResult<Expr> {
    let (qualifier, field) = input
        .schema()
        .qualified_field_with_unqualified_name(&decl.time)?;
    Ok(Expr::Column(Column::new(qualifier.cloned(), field.name())))
}

/// `plan` with its table scan replaced.
fn replace_scan(plan: &LogicalPlan, scan: &LogicalPlan) -> DFResult<LogicalPlan> {
    if matches!(plan, LogicalPlan::TableScan(_)) {
        return Ok(scan.clone());
    }
    let inputs = plan
        .inputs()
        .into_iter()
        .map(|i| replace_scan(i, scan))
        .collect::<DFResult<Vec<_>>>()?;
    plan.with_new_exprs(plan.expressions(), inputs)
}

fn classify(expr: &Expr, decl: &Declaration) -> Option<Agg> {
    let inner = match expr {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(f) = inner else {
        return None;
    };
    let p = &f.params;
    if p.distinct || p.filter.is_some() || !p.order_by.is_empty() || p.null_treatment.is_some() {
        return None;
    }
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == decl.time);
    match (f.func.name(), p.args.as_slice()) {
        ("last", [x, t]) if is_time(t) && matches!(x, Expr::Column(_)) => {
            Some(Agg::Last(x.clone()))
        }
        ("max", [t]) if is_time(t) => Some(Agg::MaxTime),
        _ => None,
    }
}

/// A key column and the values a filter allows it (`k = literal`,
/// `k IN (literal, …)`, ORs of those on one column), for looking rows up
/// rather than scanning them.
fn key_lookup(
    filters: &[Expr],
    decl: &Declaration,
    schema: &SchemaRef,
) -> Option<(usize, Vec<ScalarValue>)> {
    filters
        .iter()
        .flat_map(|f| split_conjunction(f))
        .find_map(|c| allowed_values(c, decl, schema))
}

fn allowed_values(
    e: &Expr,
    decl: &Declaration,
    schema: &SchemaRef,
) -> Option<(usize, Vec<ScalarValue>)> {
    let key = |e: &Expr| match e {
        Expr::Column(c) if decl.is_key(&c.name) => schema.index_of(&c.name).ok(),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(b) if b.op == Operator::Eq => match (b.left.as_ref(), b.right.as_ref()) {
            (k, Expr::Literal(v, _)) | (Expr::Literal(v, _), k) => Some((key(k)?, vec![v.clone()])),
            _ => None,
        },
        Expr::BinaryExpr(b) if b.op == Operator::Or => {
            let (l, mut lv) = allowed_values(&b.left, decl, schema)?;
            let (r, rv) = allowed_values(&b.right, decl, schema)?;
            (l == r).then(|| {
                lv.extend(rv);
                (l, lv)
            })
        }
        Expr::InList(l) if !l.negated => {
            let values = l
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) => Some(v.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some((key(&l.expr)?, values))
        }
        _ => None,
    }
}

/// A filter the index answers the same: on key columns only, or a lower
/// bound on the time.
fn filter_ok(filter: &Expr, decl: &Declaration) -> bool {
    let refs = filter.column_refs();
    if filter.is_volatile() {
        return false;
    }
    if refs.iter().all(|c| decl.is_key(&c.name)) {
        return true;
    }
    let Expr::BinaryExpr(b) = filter else {
        return false;
    };
    let is_time = |e: &Expr| {
        // A cast to another timestamp type keeps the order.
        let e = match e {
            Expr::Cast(c) if matches!(c.data_type, DataType::Timestamp(..)) => c.expr.as_ref(),
            e => e,
        };
        matches!(e, Expr::Column(c) if c.name == decl.time)
    };
    let constant = |e: &Expr| e.column_refs().is_empty();
    match b.op {
        Operator::Gt | Operator::GtEq => is_time(&b.left) && constant(&b.right),
        Operator::Lt | Operator::LtEq => constant(&b.left) && is_time(&b.right),
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Int64, true),
            Field::new("device", DataType::Utf8, true),
            Field::new("v", DataType::Float64, true),
        ]))
    }

    fn decl() -> Declaration {
        Declaration {
            keys: vec!["device".into()],
            time: "ts".into(),
            key_idx: vec![1],
            time_idx: 0,
        }
    }

    fn batch(rows: &[(Option<i64>, Option<&str>, f64)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
                Arc::new(rows.iter().map(|r| r.1).collect::<StringArray>()),
                Arc::new(rows.iter().map(|r| Some(r.2)).collect::<Float64Array>()),
            ],
        )
        .unwrap()
    }

    /// (device, ts, v) sorted by device.
    fn rows(b: &RecordBatch) -> Vec<(Option<String>, Option<i64>, f64)> {
        let t = b.column(0).as_primitive::<Int64Type>();
        let d = b.column(1).as_string::<i32>();
        let v = b.column(2).as_primitive::<arrow::datatypes::Float64Type>();
        let mut out: Vec<_> = (0..b.num_rows())
            .map(|i| {
                (
                    d.is_valid(i).then(|| d.value(i).to_string()),
                    t.is_valid(i).then(|| t.value(i)),
                    v.value(i),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn folder_of(batches: &[RecordBatch]) -> Folder {
        let mut f = Folder::new(schema(), &decl()).unwrap();
        for b in batches {
            f.push(b.clone()).unwrap();
        }
        f
    }

    fn table() -> Table {
        use iceberg::io::FileIO;
        use iceberg::spec::{
            NestedField, PrimitiveType, Schema as IcebergSchema, TableMetadataBuilder,
        };
        let schema = IcebergSchema::builder()
            .with_fields(vec![Arc::new(NestedField::optional(
                1,
                "ts",
                iceberg::spec::Type::Primitive(PrimitiveType::Long),
            ))])
            .build()
            .unwrap();
        let metadata = TableMetadataBuilder::new(
            schema,
            iceberg::spec::PartitionSpec::unpartition_spec(),
            iceberg::spec::SortOrder::unsorted_order(),
            "memory://t".into(),
            iceberg::spec::FormatVersion::V2,
            HashMap::new(),
        )
        .unwrap()
        .build()
        .unwrap()
        .metadata;
        Table::builder()
            .metadata(metadata)
            .identifier(iceberg::TableIdent::from_strs(["ns", "t"]).unwrap())
            .file_io(FileIO::new_with_memory())
            .runtime(iceberg::Runtime::current())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn later_rows_win_and_null_times_lose() {
        let f = folder_of(&[
            batch(&[
                (Some(1), Some("a"), 1.0),
                (Some(5), Some("a"), 5.0),
                (None, Some("a"), 99.0),
            ]),
            batch(&[
                (Some(3), Some("a"), 3.0),
                (None, Some("b"), 7.0),
                (Some(2), None, 2.0),
            ]),
        ]);
        let state = f.finish(table(), None).unwrap();
        assert_eq!(
            rows(&state.batch),
            vec![
                (None, Some(2), 2.0),
                (Some("a".into()), Some(5), 5.0),
                (Some("b".into()), None, 7.0),
            ]
        );
    }

    #[tokio::test]
    async fn compaction_keeps_the_winners() {
        let mut f = Folder::new(schema(), &decl()).unwrap();
        for i in 0..200 {
            let b: Vec<(Option<i64>, Option<&str>, f64)> = (0..1000)
                .map(|j| {
                    (
                        Some(i * 1000 + j),
                        Some(if j % 2 == 0 { "x" } else { "y" }),
                        j as f64,
                    )
                })
                .collect();
            f.push(batch(&b)).unwrap();
        }
        assert!(f.batches.len() < 200, "compacted on the way");
        let state = f.finish(table(), None).unwrap();
        assert_eq!(
            rows(&state.batch),
            vec![
                (Some("x".into()), Some(199_998), 998.0),
                (Some("y".into()), Some(199_999), 999.0),
            ]
        );
    }

    #[tokio::test]
    async fn absorb_and_merge_hot() {
        let state = folder_of(&[batch(&[
            (Some(5), Some("a"), 5.0),
            (Some(5), Some("b"), 5.0),
        ])])
        .finish(table(), None)
        .unwrap();
        let later = folder_of(&[batch(&[
            (Some(4), Some("a"), 4.0),
            (Some(6), Some("b"), 6.0),
            (Some(1), Some("c"), 1.0),
        ])]);
        let state = state.absorb(later, table(), None).unwrap();
        assert_eq!(
            rows(&state.batch),
            vec![
                (Some("a".into()), Some(5), 5.0),
                (Some("b".into()), Some(6), 6.0),
                (Some("c".into()), Some(1), 1.0),
            ]
        );
        // The key map still points at each series' row.
        assert_eq!(state.map.len(), 3);
        let hot = batch(&[
            (Some(9), Some("a"), 9.0),
            (Some(0), Some("c"), 0.0),
            (Some(1), Some("d"), 1.0),
        ]);
        assert_eq!(
            rows(
                &state
                    .merged(
                        &state.against_index(&mut folder_of(&[hot]), 3).unwrap(),
                        None
                    )
                    .unwrap()
            ),
            vec![
                (Some("a".into()), Some(9), 9.0),
                (Some("b".into()), Some(6), 6.0),
                (Some("c".into()), Some(1), 1.0),
                (Some("d".into()), Some(1), 1.0),
            ]
        );
        assert_eq!(state.representatives(&[1]).unwrap().len(), 3);
    }
}
