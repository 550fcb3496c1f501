//! The index's data: the last row per series folded from batches (`Folder`)
//! and one table's index at one snapshot (`State`), with the hot rows merged.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array};
use arrow::compute::{
    cast, concat_batches, filter_record_batch, interleave_record_batch, take_record_batch,
};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DFResult;
use iceberg::table::Table;

use weir_hot::{HotChunk, visible_batches};

use crate::table::conform_batch;

use super::*;

/// The time column as i64 (NULLs kept).
pub(super) fn times(column: &ArrayRef) -> DFResult<ArrayRef> {
    Ok(cast(column, &DataType::Int64)?)
}

pub(super) fn time_at(times: &ArrayRef, row: usize) -> Option<i64> {
    let t = times.as_primitive::<Int64Type>();
    t.is_valid(row).then(|| t.value(row))
}

/// Whether a row at `new` replaces the series' row at `old` (later wins; a
/// row with a time beats one without; ties: the row seen later).
pub(super) fn wins(new: Option<i64>, old: Option<i64>) -> bool {
    match (new, old) {
        (Some(n), Some(o)) => n >= o,
        (Some(_), None) | (None, None) => true,
        (None, Some(_)) => false,
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) batch: u32,
    pub(super) row: u32,
    pub(super) time: Option<i64>,
}

/// Folds batches into the last row per series.
pub(super) struct Folder {
    pub(super) schema: SchemaRef,
    pub(super) decl: Declaration,
    pub(super) converter: RowConverter,
    pub(super) map: HashMap<Box<[u8]>, Slot>,
    pub(super) batches: Vec<RecordBatch>,
    pub(super) rows_held: usize,
}

impl Folder {
    pub(super) fn new(schema: SchemaRef, decl: &Declaration) -> DFResult<Self> {
        Ok(Folder {
            converter: decl.converter(&schema)?,
            schema,
            decl: decl.clone(),
            map: HashMap::new(),
            batches: Vec::new(),
            rows_held: 0,
        })
    }

    pub(super) fn push(&mut self, batch: RecordBatch) -> DFResult<()> {
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
    pub(super) fn compact(&mut self) -> DFResult<()> {
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

    pub(super) fn finish(mut self, table: Table, snapshot_id: Option<i64>) -> DFResult<State> {
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
    pub(super) table: Table,
    pub(super) snapshot_id: Option<i64>,
    pub(super) schema: SchemaRef,
    pub(super) decl: Declaration,
    /// One row per series.
    pub(super) batch: RecordBatch,
    /// Encoded key → row of `batch`.
    pub(super) map: HashMap<Box<[u8]>, u32>,
    pub(super) bytes: usize,
    /// One row of `batch` per distinct value of some key columns (by
    /// their positions), computed on first use.
    pub(super) representatives: Mutex<HashMap<Vec<usize>, UInt32Array>>,
    /// Rows of `batch` by the value of one key column (by its position),
    /// built on first use.
    pub(super) postings: Mutex<HashMap<usize, Arc<Postings>>>,
    /// The hot rows folded so far over this state (queries between two
    /// commits fold only the chunks sealed since the previous query).
    pub(super) hot: Mutex<Option<HotFold>>,
}

/// The last row per series of some hot chunks, and what it changes in the
/// index.
pub(super) struct HotFold {
    /// The chunks folded, in the hot tier's order (held, so that a chunk
    /// is never mistaken for a newer one at the same address).
    pub(super) chunks: Vec<Arc<HotChunk>>,
    pub(super) folder: Folder,
    /// Visible rows folded.
    pub(super) rows: usize,
    pub(super) merge: Option<Arc<HotMerge>>,
}

/// The hot rows' effect on the index rows.
#[derive(Debug)]
pub(super) struct HotMerge {
    /// Visible hot rows (EXPLAIN).
    pub(super) rows: usize,
    /// Index rows a hot row replaces, ascending.
    pub(super) beaten: Vec<u32>,
    /// The hot rows that replace one or add a series.
    pub(super) winners: RecordBatch,
}

/// Encoded value → rows.
pub(super) type Postings = HashMap<Box<[u8]>, Vec<u32>>;

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
    pub(super) fn new(
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

    pub(super) fn copy(&self) -> Self {
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
    pub(super) fn absorb(
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
    pub(super) fn representatives(&self, cols: &[usize]) -> DFResult<UInt32Array> {
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
    pub(super) fn lookup(
        &self,
        col: usize,
        values: &[ScalarValue],
    ) -> DFResult<Option<UInt32Array>> {
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
    pub(super) fn hot_merge(&self, chunks: &[Arc<HotChunk>]) -> DFResult<Arc<HotMerge>> {
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
    pub(super) fn against_index(&self, folder: &mut Folder, rows: usize) -> DFResult<HotMerge> {
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
    pub(super) fn merged(
        &self,
        hot: &HotMerge,
        only: Option<&UInt32Array>,
    ) -> DFResult<RecordBatch> {
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
