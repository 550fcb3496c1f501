//! Arrow builders for `bronze.raw_messages` and `bronze.dead_letters`.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, MapBuilder, MapFieldNames,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

/// Where a message came from: the coordinates kept with raw and dead rows.
#[derive(Debug, Clone, Copy)]
pub struct Coordinates<'a> {
    pub source: &'a str,
    pub stream: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub received_micros: i64,
}

fn ts_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

fn map_names() -> MapFieldNames {
    MapFieldNames {
        entry: "key_value".into(),
        key: "key".into(),
        value: "value".into(),
    }
}

/// Rows of `bronze.raw_messages`.
pub struct RawBatchBuilder {
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    key: BinaryBuilder,
    headers: MapBuilder<StringBuilder, StringBuilder>,
    payload: BinaryBuilder,
    content_type: StringBuilder,
    bytes: usize,
}

impl Default for RawBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RawBatchBuilder {
    pub fn new() -> Self {
        RawBatchBuilder {
            received_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            source: StringBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            key: BinaryBuilder::new(),
            headers: MapBuilder::new(
                Some(map_names()),
                StringBuilder::new(),
                StringBuilder::new(),
            )
            .with_values_field(Arc::new(Field::new("value", DataType::Utf8, true))),
            payload: BinaryBuilder::new(),
            content_type: StringBuilder::new(),
            bytes: 0,
        }
    }

    pub fn push(
        &mut self,
        at: Coordinates<'_>,
        key: Option<&[u8]>,
        headers: &[(String, String)],
        payload: Option<&[u8]>,
        content_type: &str,
    ) {
        self.received_at.append_value(at.received_micros);
        self.source.append_value(at.source);
        self.topic.append_value(at.stream);
        self.partition.append_value(at.partition);
        self.offset.append_value(at.offset);
        self.key.append_option(key);
        for (k, v) in headers {
            self.headers.keys().append_value(k);
            self.headers.values().append_value(v);
        }
        let _ = self.headers.append(!headers.is_empty());
        self.payload.append_option(payload);
        self.content_type.append_value(content_type);
        self.bytes += 64 + payload.map_or(0, <[u8]>::len) + key.map_or(0, <[u8]>::len);
    }

    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate bytes buffered (for flush decisions).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.bytes = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.received_at.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.content_type.finish()),
        ];
        let fields: Vec<Field> = columns
            .iter()
            .zip([
                "received_at",
                "source",
                "topic",
                "source_partition",
                "source_offset",
                "key",
                "headers",
                "payload",
                "content_type",
            ])
            .map(|(c, name)| {
                if name == "received_at" {
                    ts_field(name)
                } else {
                    Field::new(name, c.data_type().clone(), name != "source")
                }
            })
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
    }
}

/// Rows of `bronze.dead_letters`.
pub struct DeadLetterBuilder {
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    key: BinaryBuilder,
    payload: BinaryBuilder,
    stage: StringBuilder,
    reason: StringBuilder,
}

impl Default for DeadLetterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadLetterBuilder {
    pub fn new() -> Self {
        DeadLetterBuilder {
            received_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            source: StringBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            key: BinaryBuilder::new(),
            payload: BinaryBuilder::new(),
            stage: StringBuilder::new(),
            reason: StringBuilder::new(),
        }
    }

    pub fn push(
        &mut self,
        at: Coordinates<'_>,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        stage: &str,
        reason: &str,
    ) {
        self.received_at.append_value(at.received_micros);
        self.source.append_value(at.source);
        self.topic.append_value(at.stream);
        self.partition.append_value(at.partition);
        self.offset.append_value(at.offset);
        self.key.append_option(key);
        self.payload.append_option(payload);
        self.stage.append_value(stage);
        self.reason.append_value(reason);
    }

    pub fn len(&self) -> usize {
        self.offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            ts_field("received_at"),
            Field::new("source", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, true),
            Field::new("source_partition", DataType::Int32, true),
            Field::new("source_offset", DataType::Int64, true),
            Field::new("key", DataType::Binary, true),
            Field::new("payload", DataType::Binary, true),
            Field::new("stage", DataType::Utf8, true),
            Field::new("reason", DataType::Utf8, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.received_at.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.key.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.stage.finish()),
            Arc::new(self.reason.finish()),
        ];
        RecordBatch::try_new(schema, columns)
    }
}
