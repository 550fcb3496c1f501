//! Decoder tests: one file per format plus cross-cutting behaviour here.

mod alloc;
mod batch;
mod bench;
mod duplicates;
mod json;
mod limits;
mod line_protocol;

use super::*;

/// 2022-01-21T16:00:00Z, the instant of the seed examples, in µs.
pub(super) const T: i64 = 1_642_780_800_000_000;
/// 2026-01-21T10:00:00Z in µs.
pub(super) const T2026: i64 = 1_768_989_600_000_000;

pub(super) fn decode_with(format: Format, payload: &str, opts: &DecodeOptions) -> Vec<Point> {
    let mut out = Vec::new();
    let n = decode(format, payload.as_bytes(), opts, &mut out)
        .unwrap_or_else(|e| panic!("decoding {payload:?} failed: {e}"));
    assert_eq!(n, out.len());
    out
}

pub(super) fn ok(format: Format, payload: &str) -> Vec<Point> {
    decode_with(format, payload, &DecodeOptions::default())
}

pub(super) fn err_with(format: Format, payload: &[u8], opts: &DecodeOptions) -> DecodeError {
    let sentinel = point("keep", "me", Some(1.0));
    let mut out = vec![sentinel.clone()];
    let e = decode(format, payload, opts, &mut out).expect_err("decoding should fail");
    assert_eq!(out, vec![sentinel], "a failed decode must append nothing");
    e
}

pub(super) fn err(format: Format, payload: &str) -> DecodeError {
    err_with(format, payload.as_bytes(), &DecodeOptions::default())
}

pub(super) fn point(device: &str, metric: &str, value: Option<f64>) -> Point {
    Point {
        ts_micros: T,
        device_id: device.into(),
        metric: metric.into(),
        value,
        quality: None,
        unit: None,
        labels: vec![],
    }
}

pub(super) fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (metric, value) pairs of decoded points, for compact assertions.
pub(super) fn metrics(points: &[Point]) -> Vec<(&str, Option<f64>)> {
    points
        .iter()
        .map(|p| (p.metric.as_str(), p.value))
        .collect()
}

#[test]
fn payload_level_errors() {
    let small = DecodeOptions {
        max_message_bytes: 8,
        ..DecodeOptions::default()
    };
    let e = err_with(Format::Auto, b"m value=1 1", &small);
    assert_eq!(e, DecodeError::TooLarge { size: 11, limit: 8 });
    assert_eq!(
        e.to_string(),
        "message too large: 11 bytes exceeds the limit of 8 bytes"
    );
    // Exactly at the limit is fine.
    let at = DecodeOptions {
        max_message_bytes: 11,
        ..DecodeOptions::default()
    };
    assert_eq!(decode_with(Format::Auto, "m value=1 1", &at).len(), 1);

    let e = err_with(
        Format::Auto,
        b"m value=1 \xff\xfe",
        &DecodeOptions::default(),
    );
    assert_eq!(e, DecodeError::InvalidUtf8);
    assert_eq!(e.to_string(), "payload is not valid UTF-8");

    for payload in ["", "   ", "\n\r\n\t", "\u{feff}", "\u{feff}  \n"] {
        for format in [
            Format::Auto,
            Format::JsonStatus,
            Format::JsonPoints,
            Format::LineProtocol,
        ] {
            assert_eq!(err(format, payload), DecodeError::Empty, "{payload:?}");
        }
    }
    assert_eq!(DecodeError::Empty.to_string(), "empty message");
}

#[test]
fn default_options() {
    let o = DecodeOptions::default();
    assert_eq!(o.max_message_bytes, 1024 * 1024);
    assert_eq!(o.default_ts_micros, None);
    assert_eq!(o.device_id_from_key, None);
}

#[test]
fn auto_sniffs_json_and_line_protocol() {
    let status = ok(Format::Auto, r#"  {"device_id":"d","ts":1642780800,"a":1}"#);
    assert_eq!(metrics(&status), vec![("a", Some(1.0))]);
    let points = ok(
        Format::Auto,
        r#"[{"device_id":"d","metric":"m","value":2,"ts":1642780800}]"#,
    );
    assert_eq!(metrics(&points), vec![("m", Some(2.0))]);
    let lp = ok(Format::Auto, "\u{feff}cpu,host=h value=3 1642780800");
    assert_eq!(metrics(&lp), vec![("cpu", Some(3.0))]);
    assert_eq!(lp[0].device_id, "h");
    // Line protocol under a JSON format is a JSON error, and vice versa.
    assert!(matches!(
        err(Format::JsonStatus, "cpu value=1"),
        DecodeError::Json(_)
    ));
    assert!(matches!(
        err(Format::LineProtocol, r#"{"a":1}"#),
        DecodeError::LineProtocol { line: 1, .. }
    ));
}

#[test]
fn decode_appends_after_existing_points() {
    let mut out = vec![point("x", "y", None)];
    let opts = DecodeOptions::default();
    let n = decode(
        Format::LineProtocol,
        b"m a=1,b=2 1642780800",
        &opts,
        &mut out,
    )
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], point("x", "y", None));
}

#[test]
fn format_names_round_trip() {
    for f in [
        Format::JsonStatus,
        Format::JsonPoints,
        Format::LineProtocol,
        Format::Auto,
    ] {
        assert_eq!(f.to_string().parse::<Format>(), Ok(f));
    }
    assert_eq!("Line-Protocol".parse::<Format>(), Ok(Format::LineProtocol));
    assert_eq!("influx".parse::<Format>(), Ok(Format::LineProtocol));
    assert_eq!(Format::default(), Format::Auto);
    let e = "xml".parse::<Format>().unwrap_err();
    assert!(e.contains("unknown message format `xml`"), "{e}");
}

#[test]
fn error_messages_are_readable() {
    let cases = [
        (DecodeError::Json("x".into()), "invalid JSON: x"),
        (DecodeError::MissingField("value"), "missing field `value`"),
        (DecodeError::EmptyField("metric"), "field `metric` is empty"),
        (
            DecodeError::WrongType {
                field: "unit".into(),
                expected: "a string",
            },
            "field `unit` must be a string",
        ),
        (
            DecodeError::NotFinite {
                field: "value".into(),
            },
            "field `value` is not a finite number",
        ),
        (
            DecodeError::BadTimestamp("nope".into()),
            "bad timestamp: nope",
        ),
        (
            DecodeError::LineProtocol {
                line: 3,
                message: "boom".into(),
            },
            "line protocol error on line 3: boom",
        ),
    ];
    for (e, text) in cases {
        assert_eq!(e.to_string(), text);
    }
}
