//! The duplicate-key rule: the last occurrence wins, at the position of the
//! first (like serde_json's ordered maps).

use super::*;

#[test]
fn json_status_duplicate_metric_is_one_point() {
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","ts":1642780800,"x":1,"x":2}"#,
    );
    assert_eq!(metrics(&p), vec![("x", Some(2.0))]);
    // Order of first occurrence is kept.
    let p = ok(
        Format::Auto,
        r#"{"device_id":"a","ts":1642780800,"x":1,"y":5,"x":2}"#,
    );
    assert_eq!(metrics(&p), vec![("x", Some(2.0)), ("y", Some(5.0))]);
    // A metric that changes type: the last (a string) makes it a label.
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","ts":1642780800,"x":1,"x":"on","y":3}"#,
    );
    assert_eq!(metrics(&p), vec![("y", Some(3.0))]);
    assert_eq!(p[0].labels, labels(&[("x", "on")]));
    // Flattened names that collide, and a `metrics` member against a
    // top-level one: still one point, the last value.
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","ts":1642780800,"cpu":{"u":1},"cpu.u":2}"#,
    );
    assert_eq!(metrics(&p), vec![("cpu.u", Some(2.0))]);
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","ts":1642780800,"x":1,"metrics":{"x":3}}"#,
    );
    assert_eq!(metrics(&p), vec![("x", Some(3.0))]);
}

#[test]
fn json_duplicate_device_timestamp_and_labels() {
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","device_id":"b","ts":1,"ts":1642780800,"x":1}"#,
    );
    assert_eq!((p[0].device_id.as_str(), p[0].ts_micros), ("b", T));
    let p = ok(
        Format::JsonStatus,
        r#"{"device_id":"a","ts":1642780800,"s":"1","labels":{"s":"2","t":"x","t":"y"},"x":1}"#,
    );
    assert_eq!(p[0].labels, labels(&[("s", "2"), ("t", "y")]));
    let p = ok(
        Format::JsonPoints,
        r#"{"device_id":"a","ts":1642780800,"metric":"m","metric":"n","value":1,"value":2,"k":"1","k":"2"}"#,
    );
    assert_eq!(metrics(&p), vec![("n", Some(2.0))]);
    assert_eq!(p[0].labels, labels(&[("k", "2")]));
    // Many duplicates (the hashed path): still one point per distinct key.
    let body: String = (0..1000)
        .map(|i| format!(r#""m{}":{i},"#, i % 10))
        .collect();
    let p = ok(
        Format::JsonStatus,
        &format!(r#"{{{body}"device_id":"a","ts":1642780800}}"#),
    );
    assert_eq!(p.len(), 10);
    assert_eq!(p[3].metric, "m3");
    assert_eq!(p[3].value, Some(993.0));
}

#[test]
fn line_protocol_duplicate_fields_and_tags() {
    let p = ok(Format::LineProtocol, "m x=1,x=2 1642780800");
    assert_eq!(metrics(&p), vec![("m.x", Some(2.0))]);
    let p = ok(
        Format::LineProtocol,
        "m,id=a,id=b value=1,value=3 1642780800",
    );
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].device_id.as_str(), p[0].value), ("b", Some(3.0)));
    let p = ok(Format::LineProtocol, "m,site=a,id=d,site=b x=1 1642780800");
    assert_eq!(p[0].labels, labels(&[("site", "b")]));
    // A string field named like a tag replaces the tag's label (fields come
    // after tags); a field changing type follows the last value.
    let p = ok(
        Format::LineProtocol,
        "m,id=d,site=a site=\"b\",x=1,x=\"s\",y=2 1642780800",
    );
    assert_eq!(metrics(&p), vec![("m.y", Some(2.0))]);
    assert_eq!(p[0].labels, labels(&[("site", "b"), ("x", "s")]));
}
