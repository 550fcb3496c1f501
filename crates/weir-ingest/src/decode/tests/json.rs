#![allow(clippy::too_many_lines)] // tests and benchmarks: long tables of cases are fine
use super::*;

const SEED_STATUS: &str = r#"{"device_id":"srv-01","timestamp":"2026-01-21T10:00:00Z","cpu_usage":45.2,"memory_usage":61.0,"disk_usage":70.1,"network_in":1024,"network_out":2048,"temperature":55.5, "status":"Online", "location":"A1"}"#;

#[test]
fn seed_status_message() {
    for format in [Format::JsonStatus, Format::Auto] {
        let pts = ok(format, SEED_STATUS);
        assert_eq!(
            metrics(&pts),
            vec![
                ("cpu_usage", Some(45.2)),
                ("memory_usage", Some(61.0)),
                ("disk_usage", Some(70.1)),
                ("network_in", Some(1024.0)),
                ("network_out", Some(2048.0)),
                ("temperature", Some(55.5)),
            ]
        );
        for p in &pts {
            assert_eq!(p.device_id, "srv-01");
            assert_eq!(p.ts_micros, T2026);
            assert_eq!(
                p.labels,
                labels(&[("status", "Online"), ("location", "A1")])
            );
            assert_eq!((p.unit.as_deref(), p.quality), (None, None));
        }
    }
}

#[test]
fn status_bools_nulls_nesting_and_label_objects() {
    let pts = ok(
        Format::JsonStatus,
        r#"{"deviceId":"gw-7","ts":1642780800000,"online":true,"alarm":false,"spare":null,
            "metrics":{"cpu":{"usage":12.5,"cores":4},"memory":{"usage":80}},
            "fan":{"rpm":1200,"mode":"auto"},
            "labels":{"site":"sh","rack":3,"hot":true,"none":null},"fw":"1.2.3"}"#,
    );
    assert_eq!(
        metrics(&pts),
        vec![
            ("online", Some(1.0)),
            ("alarm", Some(0.0)),
            ("cpu.usage", Some(12.5)),
            ("cpu.cores", Some(4.0)),
            ("memory.usage", Some(80.0)),
            ("fan.rpm", Some(1200.0)),
        ]
    );
    assert!(
        pts.iter()
            .all(|p| p.device_id == "gw-7" && p.ts_micros == T)
    );
    assert_eq!(
        pts[0].labels,
        labels(&[
            ("fan.mode", "auto"),
            ("site", "sh"),
            ("rack", "3"),
            ("hot", "true"),
            ("fw", "1.2.3"),
        ])
    );
}

#[test]
fn status_id_key_priority_and_key_fallback() {
    // `device_id` beats `id`; the unused id key is neither metric nor label.
    let pts = ok(
        Format::JsonStatus,
        r#"{"id":42,"device_id":"real","time":1642780800,"v":1}"#,
    );
    assert_eq!(pts, vec![point("real", "v", Some(1.0))]);
    // Integer ids are accepted as text.
    let pts = ok(Format::JsonStatus, r#"{"id":42,"time":1642780800,"v":1}"#);
    assert_eq!(pts[0].device_id, "42");
    // No id in the payload: the record key, else an error.
    let opts = DecodeOptions {
        device_id_from_key: Some("from-key".into()),
        ..DecodeOptions::default()
    };
    let pts = decode_with(Format::JsonStatus, r#"{"ts":1642780800,"v":1}"#, &opts);
    assert_eq!(pts[0].device_id, "from-key");
    // A null id counts as missing.
    let pts = decode_with(
        Format::JsonStatus,
        r#"{"device_id":null,"ts":1642780800,"v":1}"#,
        &opts,
    );
    assert_eq!(pts[0].device_id, "from-key");
    assert_eq!(
        err(Format::JsonStatus, r#"{"ts":1642780800,"v":1}"#),
        DecodeError::MissingField("device_id")
    );
}

#[test]
fn status_without_metrics_yields_nothing() {
    assert!(
        ok(
            Format::JsonStatus,
            r#"{"device_id":"d","ts":1,"status":"Online"}"#
        )
        .is_empty()
    );
    assert!(ok(Format::Auto, "[]").is_empty());
}

#[test]
fn seed_point_message_and_optional_members() {
    let pts = ok(
        Format::JsonPoints,
        r#"{"device_id":"d1","metric_name":"temperature","value":25.6,"timestamp":1642780800000}"#,
    );
    assert_eq!(pts, vec![point("d1", "temperature", Some(25.6))]);

    let pts = ok(
        Format::Auto,
        r#"{"device_id":"d1","metric":"temperature","value":"25.6","unit":"°C","quality":1,
            "timestamp":"2022-01-21T16:00:00Z","tags":{"line":"A","n":7},"protocol":"ModbusTcp","raw":256}"#,
    );
    let mut want = point("d1", "temperature", Some(25.6));
    want.unit = Some("°C".into());
    want.quality = Some(1);
    want.labels = labels(&[
        ("line", "A"),
        ("n", "7"),
        ("protocol", "ModbusTcp"),
        ("raw", "256"),
    ]);
    assert_eq!(pts, vec![want]);
}

#[test]
fn point_value_kinds() {
    let one = |v: &str| {
        let msg = format!(r#"{{"device_id":"d","metric":"m","ts":1642780800,"value":{v}}}"#);
        ok(Format::JsonPoints, &msg)[0].value
    };
    assert_eq!(one("-3"), Some(-3.0));
    assert_eq!(one("18446744073709551615"), Some(u64::MAX as f64));
    assert_eq!(one("1.5e3"), Some(1500.0));
    assert_eq!(one("\" 7.25 \""), Some(7.25));
    assert_eq!(one("true"), Some(1.0));
    assert_eq!(one("false"), Some(0.0));
    assert_eq!(one("null"), None);
    // quality and unit may be null; quality may be an integral float/string.
    let pts = ok(
        Format::JsonPoints,
        r#"{"device_id":"d","metric":"m","ts":1642780800,"value":1,"quality":"0","unit":null}"#,
    );
    assert_eq!((pts[0].quality, pts[0].unit.clone()), (Some(0), None));
    let pts = ok(
        Format::JsonPoints,
        r#"{"device_id":"d","metric":"m","ts":1642780800,"value":1,"quality":2.0}"#,
    );
    assert_eq!(pts[0].quality, Some(2));
}

#[test]
fn arrays_of_points_and_mixed_shapes() {
    let pts = ok(
        Format::Auto,
        r#"[{"device_id":"a","metric_name":"t","value":1,"ts":1642780800},
            {"device_id":"b","ts":1642780800,"x":2,"y":3},
            {"device_id":"c","metric":"p","value":null,"ts":1642780800}]"#,
    );
    assert_eq!(
        pts,
        vec![
            point("a", "t", Some(1.0)),
            point("b", "x", Some(2.0)),
            point("b", "y", Some(3.0)),
            point("c", "p", None),
        ]
    );
}

#[test]
fn timestamps_in_every_unit() {
    for ts in [
        "1642780800",
        "1642780800000",
        "1642780800000000",
        "1642780800000000000",
        "1642780800.0",
        "\"1642780800000\"",
        "\"2022-01-21T16:00:00Z\"",
        "\"2022-01-22T00:00:00+08:00\"",
    ] {
        let msg = format!(r#"{{"device_id":"d","timestamp":{ts},"v":1}}"#);
        assert_eq!(ok(Format::JsonStatus, &msg)[0].ts_micros, T, "{ts}");
    }
    let msg = r#"{"device_id":"d","ts":1642780800.123456,"v":1}"#;
    assert_eq!(ok(Format::JsonStatus, msg)[0].ts_micros, T + 123_456);
    // Missing timestamp: the receive time, or an error.
    let opts = DecodeOptions {
        default_ts_micros: Some(42),
        ..DecodeOptions::default()
    };
    let pts = decode_with(Format::JsonStatus, r#"{"device_id":"d","v":1}"#, &opts);
    assert_eq!(pts[0].ts_micros, 42);
    assert_eq!(
        err(Format::JsonStatus, r#"{"device_id":"d","v":1}"#),
        DecodeError::MissingField("timestamp")
    );
}

#[test]
fn json_errors() {
    use DecodeError::*;
    let p = |rest: &str| format!(r#"{{"device_id":"d","ts":1642780800{rest}}}"#);
    let wrong = |field: &str, expected: &'static str| WrongType {
        field: field.into(),
        expected,
    };
    let cases: Vec<(Format, String, DecodeError)> = vec![
        (
            Format::JsonStatus,
            r#"{"device_id":"d","#.into(),
            Json("EOF while parsing a value at line 1 column 17".into()),
        ),
        (
            Format::JsonPoints,
            "42".into(),
            Json("expected an object or an array of objects, found a number".into()),
        ),
        (
            Format::Auto,
            r#"[{"device_id":"d","ts":1,"v":1}, "x"]"#.into(),
            Json("array element 1 is a string, expected an object".into()),
        ),
        (
            Format::JsonPoints,
            p(r#","value":1"#),
            MissingField("metric"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m""#),
            MissingField("value"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":" ","value":1"#),
            EmptyField("metric"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":5,"value":1"#),
            wrong("metric", "a string"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":"warm""#),
            wrong("value", "a number, numeric string, bool or null"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":[1]"#),
            wrong("value", "a number, numeric string, bool or null"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":"NaN""#),
            NotFinite {
                field: "value".into(),
            },
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":"-inf""#),
            NotFinite {
                field: "value".into(),
            },
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":1,"quality":3000000000"#),
            wrong("quality", "a 32-bit integer"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":1,"quality":0.5"#),
            wrong("quality", "a 32-bit integer"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":1,"unit":1"#),
            wrong("unit", "a string"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":1,"extra":{"a":1}"#),
            wrong("extra", "a string, number or bool"),
        ),
        (
            Format::JsonPoints,
            p(r#","metric":"m","value":1,"labels":{"a":[1]}"#),
            wrong("labels.a", "a string, number or bool"),
        ),
        (
            Format::JsonStatus,
            p(r#","arr":[1,2]"#),
            wrong("arr", "a number, bool, string, null or object"),
        ),
        (
            Format::JsonStatus,
            p(r#","metrics":{"cpu":{"per_core":[1,2]}}"#),
            wrong("cpu.per_core", "a number, bool, string, null or object"),
        ),
        (Format::JsonStatus, p(r#","":1"#), EmptyField("metric")),
        (
            Format::JsonStatus,
            r#"{"device_id":"","ts":1,"v":1}"#.into(),
            EmptyField("device_id"),
        ),
        (
            Format::JsonStatus,
            r#"{"device_id":true,"ts":1,"v":1}"#.into(),
            wrong("device_id", "a string"),
        ),
        (
            Format::JsonStatus,
            r#"{"deviceId":1.5,"ts":1,"v":1}"#.into(),
            wrong("deviceId", "a string"),
        ),
        (
            Format::JsonStatus,
            r#"{"device_id":"d","ts":true,"v":1}"#.into(),
            wrong("ts", "a number or a string"),
        ),
        (
            Format::JsonStatus,
            r#"{"device_id":"d","ts":-5,"v":1}"#.into(),
            BadTimestamp("-5 is negative (before 1970)".into()),
        ),
        (
            Format::JsonStatus,
            r#"{"device_id":"d","time":"2026-01-21T10:00:00","v":1}"#.into(),
            BadTimestamp("`2026-01-21T10:00:00` has no UTC offset (append `Z` or `+hh:mm`)".into()),
        ),
        (
            Format::JsonStatus,
            r#"{"device_id":"d","timestamp":1e300,"v":1}"#.into(),
            BadTimestamp("1e300 is out of range".into()),
        ),
    ];
    for (format, payload, want) in cases {
        assert_eq!(err(format, &payload), want, "{payload}");
    }
    // serde_json rejects NaN/Infinity literals and huge numbers itself.
    assert!(matches!(
        err(Format::JsonStatus, r#"{"device_id":"d","ts":1,"v":NaN}"#),
        Json(_)
    ));
    assert!(matches!(
        err(Format::JsonStatus, r#"{"device_id":"d","ts":1,"v":1e999}"#),
        Json(_)
    ));
}

#[test]
fn json_array_is_all_or_nothing() {
    let msg = r#"[{"device_id":"a","metric":"m","value":1,"ts":1642780800},
                  {"device_id":"b","metric":"m","value":"x","ts":1642780800}]"#;
    assert!(matches!(
        err(Format::JsonPoints, msg),
        DecodeError::WrongType { .. }
    ));
}

#[test]
fn escaped_strings_are_unescaped() {
    let pts = ok(
        Format::JsonPoints,
        r#"{"device_id":"d\u0031","metric":"t\"q","value":1,"ts":1642780800,"lab\nel":"a\\b"}"#,
    );
    assert_eq!(pts[0].device_id, "d1");
    assert_eq!(pts[0].metric, "t\"q");
    assert_eq!(pts[0].labels, labels(&[("lab\nel", "a\\b")]));
}
