//! Source watermarks carried in Iceberg snapshot summaries.
//!
//! Every streaming commit records, atomically with its data, the next offset to
//! read for each source partition it covers: `weir.<source>.<stream>.offsets` =
//! `partition=next,partition=next`, e.g. `weir.kafka.plant-a.offsets = 0=1200,1=998`.
//! A table's watermark is the per-partition maximum over the current snapshot and
//! its ancestors, so commits by several writers (each owning some partitions)
//! combine, and a snapshot without the key (compaction, SQL inserts) changes
//! nothing. Watermarks only move forward.

use std::collections::BTreeMap;
use std::fmt;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;

/// Next offset to read, per stream (topic) and partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Watermarks {
    streams: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Watermarks {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.values().all(|p| p.is_empty())
    }

    /// The next offset to read for `stream`/`partition`, if anything was committed.
    pub fn get(&self, stream: &str, partition: i32) -> Option<i64> {
        self.streams.get(stream)?.get(&partition).copied()
    }

    /// Raises the watermark of one partition (never lowers it).
    pub fn advance(&mut self, stream: &str, partition: i32, next: i64) {
        let entry = self
            .streams
            .entry(stream.to_string())
            .or_default()
            .entry(partition)
            .or_insert(next);
        *entry = (*entry).max(next);
    }

    /// Per-partition maximum of both.
    pub fn merge(&mut self, other: &Watermarks) {
        for (stream, parts) in &other.streams {
            for (p, next) in parts {
                self.advance(stream, *p, *next);
            }
        }
    }

    pub fn streams(&self) -> impl Iterator<Item = (&str, &BTreeMap<i32, i64>)> {
        self.streams.iter().map(|(s, p)| (s.as_str(), p))
    }

    /// Snapshot summary properties for `source` (one key per stream).
    pub fn to_properties(&self, source: &str) -> Vec<(String, String)> {
        self.streams
            .iter()
            .filter(|(_, parts)| !parts.is_empty())
            .map(|(stream, parts)| {
                let value = parts
                    .iter()
                    .map(|(p, o)| format!("{p}={o}"))
                    .collect::<Vec<_>>()
                    .join(",");
                (property_key(source, stream), value)
            })
            .collect()
    }

    /// Reads the watermarks of `source` recorded in one snapshot summary.
    pub fn from_properties<'a>(
        source: &str,
        props: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let prefix = format!("weir.{source}.");
        let mut out = Watermarks::new();
        for (key, value) in props {
            let Some(stream) = key
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".offsets"))
            else {
                continue;
            };
            for pair in value.split(',').filter(|s| !s.is_empty()) {
                let parsed = pair
                    .split_once('=')
                    .and_then(|(p, o)| Some((p.trim().parse().ok()?, o.trim().parse().ok()?)));
                match parsed {
                    Some((p, o)) => out.advance(stream, p, o),
                    None => tracing::warn!(key, pair, "ignoring malformed watermark entry"),
                }
            }
        }
        out
    }
}

impl fmt::Display for Watermarks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (stream, parts) in &self.streams {
            for (p, o) in parts {
                if !first {
                    write!(f, ", ")?;
                }
                first = false;
                write!(f, "{stream}[{p}]={o}")?;
            }
        }
        Ok(())
    }
}

/// The summary key for one stream of one source.
pub fn property_key(source: &str, stream: &str) -> String {
    format!("weir.{source}.{stream}.offsets")
}

/// Watermarks of `source` as of `snapshot_id` (that snapshot and its ancestors).
pub fn snapshot_watermarks(metadata: &TableMetadata, snapshot_id: i64, source: &str) -> Watermarks {
    let mut out = Watermarks::new();
    let mut next = metadata.snapshot_by_id(snapshot_id);
    while let Some(snapshot) = next {
        out.merge(&Watermarks::from_properties(
            source,
            &snapshot.summary().additional_properties,
        ));
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    out
}

/// Every source with a watermark in the table's current snapshot or its ancestors.
pub fn table_sources(table: &Table) -> Vec<String> {
    let metadata = table.metadata();
    let mut out = std::collections::BTreeSet::new();
    let mut next = metadata.current_snapshot();
    while let Some(snapshot) = next {
        for key in snapshot.summary().additional_properties.keys() {
            if let Some(rest) = key.strip_prefix("weir.")
                && key.ends_with(".offsets")
                && let Some((source, _)) = rest.split_once('.')
            {
                out.insert(source.to_string());
            }
        }
        next = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    out.into_iter().collect()
}

/// Watermarks of `source` as of the table's current snapshot.
pub fn table_watermarks(table: &Table, source: &str) -> Watermarks {
    let metadata = table.metadata();
    match metadata.current_snapshot_id() {
        Some(id) => snapshot_watermarks(metadata, id, source),
        None => Watermarks::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn round_trip_and_merge() {
        let mut w = Watermarks::new();
        w.advance("plant.a", 0, 10);
        w.advance("plant.a", 1, 7);
        w.advance("b", 0, 3);
        w.advance("plant.a", 0, 5); // never backwards
        let props: HashMap<String, String> = w.to_properties("kafka").into_iter().collect();
        assert_eq!(props["weir.kafka.plant.a.offsets"], "0=10,1=7");
        let back = Watermarks::from_properties("kafka", &props);
        assert_eq!(back, w);
        assert!(Watermarks::from_properties("mqtt", &props).is_empty());

        let mut other = Watermarks::new();
        other.advance("plant.a", 1, 9);
        other.advance("c", 2, 1);
        w.merge(&other);
        assert_eq!(w.get("plant.a", 1), Some(9));
        assert_eq!(w.get("plant.a", 0), Some(10));
        assert_eq!(w.get("c", 2), Some(1));
        assert_eq!(w.get("c", 3), None);
        assert_eq!(w.to_string(), "b[0]=3, c[2]=1, plant.a[0]=10, plant.a[1]=9");
    }

    #[test]
    fn malformed_entries_are_skipped() {
        let props: HashMap<String, String> = [(
            "weir.kafka.t.offsets".to_string(),
            "0=4,x=1,2=,3=9".to_string(),
        )]
        .into();
        let w = Watermarks::from_properties("kafka", &props);
        assert_eq!(w.get("t", 0), Some(4));
        assert_eq!(w.get("t", 3), Some(9));
        assert_eq!(w.get("t", 2), None);
    }
}
