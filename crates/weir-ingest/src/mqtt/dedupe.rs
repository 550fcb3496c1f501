//! Point dedupe on (device_id, metric, ts) for MQTT redeliveries.
//!
//! MQTT has no offsets: a message delivered again (QoS 1 after a reconnect or
//! a crash before its ack) is a new message to the writer. Every point this
//! writer buffered or committed recently is remembered by key; a point whose
//! key is known is skipped. After a restart the memory is rebuilt from the
//! Silver data files added by this broker's last commits — the only commits
//! whose messages can still be unacknowledged (acks go out right after each
//! commit, in order).

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::TimestampMicrosecondType;
use iceberg::spec::{DataContentType, ManifestStatus};
use iceberg::table::Table;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::MqttError;
use crate::decode::Point;
use crate::pipeline::SourceError;

/// A 128-bit hash of (device_id, metric, ts): 32 bytes per remembered key
/// (set + order) instead of two strings; a false match needs a 128-bit
/// collision (about n²/2¹²⁹, negligible for millions of keys).
type Key = u128;

fn key(device_id: &str, metric: &str, ts: i64) -> Key {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        device_id.hash(&mut h);
        metric.hash(&mut h);
        ts.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// The most recent keys, oldest evicted first.
pub struct RecentKeys {
    set: HashSet<Key>,
    order: VecDeque<Key>,
    capacity: usize,
}

impl RecentKeys {
    pub fn new(capacity: usize) -> Self {
        RecentKeys {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Remembers a key; false if it was already known (a duplicate).
    pub fn insert(&mut self, device_id: &str, metric: &str, ts: i64) -> bool {
        let key = key(device_id, metric, ts);
        if self.set.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(key);
        self.order.push_back(key);
        true
    }

    /// Keeps the points not seen before (also within `points`); returns how
    /// many were dropped.
    pub fn retain_new(&mut self, points: &mut Vec<Point>) -> usize {
        let before = points.len();
        points.retain(|p| self.insert(&p.device_id, &p.metric, p.ts_micros));
        before - points.len()
    }
}

/// Loads into `keys` the points of `label` (the Silver `source` value of this
/// broker) in the data files added by the last `commits` snapshots whose
/// summary carries `property` (this broker's watermark key).
pub async fn load_recent(
    table: &Table,
    property: &str,
    label: &str,
    commits: usize,
    keys: &mut RecentKeys,
) -> Result<usize, SourceError> {
    let name = table.identifier().to_string();
    let ice = |source: iceberg::Error| MqttError::Dedupe {
        table: name.clone(),
        source: Box::new(source),
    };
    let metadata = table.metadata();
    let mut snapshots = Vec::new();
    let mut at = metadata.current_snapshot();
    // Walk back at most a bounded number of snapshots (other sources commit too).
    let mut walked = 0;
    while let Some(s) = at {
        if snapshots.len() >= commits || walked > 10_000 {
            break;
        }
        walked += 1;
        if s.summary().additional_properties.contains_key(property) {
            snapshots.push(s.clone());
        }
        at = s
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    let mut loaded = 0;
    for snapshot in snapshots.iter().rev() {
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(ice)?;
        for manifest in list.entries() {
            if manifest.added_snapshot_id != snapshot.snapshot_id() {
                continue;
            }
            let manifest = manifest.load_manifest(table.file_io()).await.map_err(ice)?;
            for entry in manifest.entries() {
                if entry.status() != ManifestStatus::Added
                    || entry.data_file().content_type() != DataContentType::Data
                {
                    continue;
                }
                let path = entry.data_file().file_path();
                let bytes = table
                    .file_io()
                    .new_input(path)
                    .map_err(ice)?
                    .read()
                    .await
                    .map_err(ice)?;
                loaded += read_keys(bytes, label, keys, &format!("{name} ({path})"))?;
            }
        }
    }
    Ok(loaded)
}

/// Remembers the keys of `label`'s rows of one data file (`file` names it
/// in errors).
fn read_keys(
    bytes: bytes::Bytes,
    label: &str,
    keys: &mut RecentKeys,
    file: &str,
) -> Result<usize, MqttError> {
    let table = || file.to_string();
    let parquet = |source| MqttError::DedupeFile {
        table: table(),
        source,
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(parquet)?;
    let schema = builder.parquet_schema();
    let wanted = ["ts", "device_id", "metric", "source"];
    let indices: Vec<usize> = (0..schema.num_columns())
        .filter(|i| wanted.contains(&schema.column(*i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, indices);
    let reader = builder.with_projection(mask).build().map_err(parquet)?;
    let mut n = 0;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|source| MqttError::DedupeBatch {
            table: table(),
            source,
        })?;
        let column = |column: &'static str, problem: &'static str| MqttError::DedupeColumn {
            table: table(),
            column,
            problem,
        };
        let col = |name: &'static str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| column(name, "missing"))
        };
        let ts = col("ts")?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| column("ts", "is not a µs timestamp"))?;
        let device = col("device_id")?
            .as_string_opt::<i32>()
            .ok_or_else(|| column("device_id", "is not a string"))?;
        let metric = col("metric")?
            .as_string_opt::<i32>()
            .ok_or_else(|| column("metric", "is not a string"))?;
        let source = col("source")?
            .as_string_opt::<i32>()
            .ok_or_else(|| column("source", "is not a string"))?;
        for i in 0..batch.num_rows() {
            if source.is_null(i) || source.value(i) != label {
                continue;
            }
            keys.insert(device.value(i), metric.value(i), ts.value(i));
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(d: &str, ts: i64) -> Point {
        Point {
            ts_micros: ts,
            device_id: d.into(),
            metric: "m".into(),
            value: Some(1.0),
            quality: None,
            unit: None,
            labels: vec![],
        }
    }

    #[test]
    fn duplicates_are_dropped_and_old_keys_evicted() {
        let mut k = RecentKeys::new(3);
        let mut pts = vec![point("a", 1), point("a", 1), point("b", 1)];
        assert_eq!(k.retain_new(&mut pts), 1);
        assert_eq!(pts.len(), 2);
        let mut again = vec![point("a", 1), point("a", 2)];
        assert_eq!(k.retain_new(&mut again), 1);
        // capacity 3: ("a",1) is evicted by ("c",1).
        assert!(k.insert("c", "m", 1));
        assert!(k.insert("a", "m", 1));
        assert_eq!(k.len(), 3);
    }
}
