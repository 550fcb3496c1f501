use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, MapArray, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use std::sync::Arc;

use super::*;

#[test]
fn silver_schema_is_exact() {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    let want = Schema::new(vec![
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
        Field::new(
            "labels",
            DataType::Map(
                Arc::new(Field::new("key_value", DataType::Struct(entries), false)),
                false,
            ),
            true,
        ),
    ]);
    assert_eq!(*silver_schema(), want);
}

#[test]
fn builder_produces_silver_batches() {
    let mut b = PointBatchBuilder::new();
    assert!(b.is_empty());
    let mut with_all = point("d1", "temperature", Some(25.6));
    with_all.unit = Some("°C".into());
    with_all.quality = Some(0);
    with_all.labels = labels(&[("site", "sh"), ("line", "A")]);
    b.push(&with_all, "kafka:plant/0");
    b.extend(&[point("d2", "door", None)], "mqtt:gw");
    assert_eq!(b.len(), 2);

    let batch = b.finish().unwrap();
    assert_eq!(batch.schema(), silver_schema());
    // The arrays' own types match the schema too (no hidden field-name drift).
    for (col, field) in batch.columns().iter().zip(silver_schema().fields()) {
        assert_eq!(col.data_type(), field.data_type(), "{}", field.name());
    }
    assert_eq!(batch.num_rows(), 2);
    assert!(b.is_empty(), "finish resets the builder");

    let ts = batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(ts.values().to_vec(), vec![T, T]);
    let s = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
    };
    assert_eq!(s(1).value(1), "d2");
    assert_eq!(s(2).value(0), "temperature");
    assert_eq!((s(5).value(0), s(5).is_null(1)), ("°C", true));
    assert_eq!((s(6).value(0), s(6).value(1)), ("kafka:plant/0", "mqtt:gw"));
    let v = batch
        .column(3)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!((v.value(0), v.is_null(1)), (25.6, true));
    let q = batch
        .column(4)
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap();
    assert_eq!((q.value(0), q.is_null(1)), (0, true));
    let m = batch.column(7).as_any().downcast_ref::<MapArray>().unwrap();
    assert!(m.is_valid(0) && m.is_null(1), "no labels -> null map");
    let entries = m.value(0);
    let keys = entries.column(0).as_string::<i32>();
    let vals = entries.column(1).as_string::<i32>();
    assert_eq!(
        (keys.value(0), vals.value(0), keys.value(1), vals.value(1)),
        ("site", "sh", "line", "A")
    );

    // A second batch after finish is independent.
    b.push(&point("d3", "m", Some(1.0)), "s");
    let second = b.finish().unwrap();
    assert_eq!(second.num_rows(), 1);
    assert_eq!(second.schema(), silver_schema());
    // An empty batch is valid too.
    assert_eq!(b.finish().unwrap().num_rows(), 0);
}

#[test]
fn decoded_messages_into_a_batch() {
    let mut out = Vec::new();
    let opts = DecodeOptions::default();
    decode(
        Format::Auto,
        b"device_data,device_id=PLC-01,tag_name=temperature,unit=C,location=A1 value=25.6,quality=0i 1642780800000000000",
        &opts,
        &mut out,
    )
    .unwrap();
    let mut b = PointBatchBuilder::with_capacity(4);
    b.extend(&out, "test");
    let batch = b.finish().unwrap();
    assert_eq!(batch.num_rows(), 1);
    let m = batch.column(7).as_any().downcast_ref::<MapArray>().unwrap();
    assert_eq!(m.value(0).len(), 1);
}
