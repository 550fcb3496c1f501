//! Accumulates decoded [`Point`]s into Arrow batches shaped exactly like
//! `silver.points`.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int32Builder, MapBuilder, MapFieldNames, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use super::Point;

static SILVER_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("device_id", DataType::Utf8, false),
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("quality", DataType::Int32, true),
        Field::new("unit", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("labels", labels_type(), true),
    ]))
});

/// `Map<Utf8, Utf8>` with entries `key_value { key (non-null), value }`,
/// keys not sorted.
fn labels_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
        false,
    )
}

/// The Arrow schema of `silver.points`:
/// `ts` timestamp(µs, "UTC") not null, `device_id` and `metric` Utf8 not null,
/// `value` Float64, `quality` Int32, `unit` Utf8, `source` Utf8 and `labels`
/// Map<Utf8, Utf8> (all nullable).
pub fn silver_schema() -> SchemaRef {
    SILVER_SCHEMA.clone()
}

/// Builds `silver.points` record batches from points.
///
/// A point without labels gets a null `labels` map; `source` is stored as
/// given for every pushed point.
pub struct PointBatchBuilder {
    ts: TimestampMicrosecondBuilder,
    device_id: StringBuilder,
    metric: StringBuilder,
    value: Float64Builder,
    quality: Int32Builder,
    unit: StringBuilder,
    source: StringBuilder,
    labels: MapBuilder<StringBuilder, StringBuilder>,
}

impl Default for PointBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PointBatchBuilder {
    pub fn new() -> Self {
        Self::with_capacity(1024)
    }

    /// A builder with room for `rows` points before reallocating.
    pub fn with_capacity(rows: usize) -> Self {
        let names = MapFieldNames {
            entry: "key_value".into(),
            key: "key".into(),
            value: "value".into(),
        };
        let labels = MapBuilder::new(
            Some(names),
            StringBuilder::with_capacity(rows, rows * 8),
            StringBuilder::with_capacity(rows, rows * 8),
        )
        .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true)));
        PointBatchBuilder {
            ts: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            device_id: StringBuilder::with_capacity(rows, rows * 16),
            metric: StringBuilder::with_capacity(rows, rows * 16),
            value: Float64Builder::with_capacity(rows),
            quality: Int32Builder::with_capacity(rows),
            unit: StringBuilder::with_capacity(rows, rows * 4),
            source: StringBuilder::with_capacity(rows, rows * 8),
            labels,
        }
    }

    /// Appends one point, tagged with `source` (e.g. `kafka:plant-a/3`).
    pub fn push(&mut self, p: &Point, source: &str) {
        self.ts.append_value(p.ts_micros);
        self.device_id.append_value(&p.device_id);
        self.metric.append_value(&p.metric);
        self.value.append_option(p.value);
        self.quality.append_option(p.quality);
        self.unit.append_option(p.unit.as_deref());
        self.source.append_value(source);
        for (k, v) in &p.labels {
            self.labels.keys().append_value(k);
            self.labels.values().append_value(v);
        }
        // Keys and values were appended pairwise, so this cannot fail.
        let _ = self.labels.append(!p.labels.is_empty());
    }

    /// Appends several points with the same `source`.
    pub fn extend<'p>(&mut self, points: impl IntoIterator<Item = &'p Point>, source: &str) {
        for p in points {
            self.push(p, source);
        }
    }

    /// Points pushed since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch of every point pushed so far; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.ts.finish()),
            Arc::new(self.device_id.finish()),
            Arc::new(self.metric.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.quality.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.labels.finish()),
        ];
        RecordBatch::try_new(silver_schema(), columns)
    }
}
