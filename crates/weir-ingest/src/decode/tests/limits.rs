//! Decode limits (issue 24): hostile messages are rejected before their
//! points are built, and the reason names the limit.

#![allow(clippy::too_many_lines)] // tests and benchmarks: long tables of cases are fine

use std::time::Instant;

use super::alloc::peak_during;
use super::*;

/// The poison message of issue 24: `strings` string fields and `numbers`
/// numeric fields in one status object (each string a label on every point);
/// 42,000 × 42,000 is 921 KB, like the message of the report.
pub(crate) fn poison(strings: usize, numbers: usize) -> Vec<u8> {
    let mut s = String::from(r#"{"device_id":"dev-1","ts":1642780800"#);
    for i in 0..strings {
        s.push_str(&format!(r#","s{}":"on""#, base36(i)));
    }
    for i in 0..numbers {
        s.push_str(&format!(r#","n{}":42"#, base36(i)));
    }
    s.push('}');
    s.into_bytes()
}

fn base36(mut n: usize) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

fn limit_of(e: &DecodeError) -> &'static str {
    match e {
        DecodeError::Limit { limit, .. } => limit,
        other => panic!("expected a decode limit error, got {other}"),
    }
}

/// Rejects `payload`, returning the error, the time and the peak heap bytes.
fn reject(format: Format, payload: &[u8], opts: &DecodeOptions) -> (DecodeError, f64, usize) {
    let start = Instant::now();
    let (e, peak) = peak_during(|| err_with(format, payload, opts));
    (e, start.elapsed().as_secs_f64(), peak)
}

#[test]
fn poison_2000_by_2000_is_rejected_with_bounded_memory() {
    let payload = poison(2000, 2000);
    assert!(payload.len() < 64 << 10, "{}", payload.len());
    let (e, secs, peak) = reject(Format::Auto, &payload, &DecodeOptions::default());
    assert_eq!(limit_of(&e), "labels_per_point");
    assert_eq!(
        e.to_string(),
        "a point would carry 2000 labels: more than the 64 labels a point may carry \
         (decode limit labels_per_point)"
    );
    // Without the limit this message built 4 M labels (379 MB).
    assert!(peak < 8 << 20, "peak heap {peak} bytes");
    eprintln!(
        "2000 x 2000 ({} KB): rejected in {:.1} ms, peak heap {} KB",
        payload.len() >> 10,
        secs * 1e3,
        peak >> 10
    );
}

#[test]
fn poison_42000_by_42000_is_rejected_quickly() {
    let payload = poison(42_000, 42_000);
    assert!(payload.len() < 1 << 20, "{}", payload.len());
    assert!(payload.len() > 900_000, "{}", payload.len());
    for format in [Format::Auto, Format::JsonStatus] {
        let (e, secs, peak) = reject(format, &payload, &DecodeOptions::default());
        assert_eq!(limit_of(&e), "labels_per_point");
        assert!(e.to_string().contains("42000 labels"), "{e}");
        // The parsed JSON tree is linear in the payload (~10x); 1.8e9 labels
        // (the unlimited decode) would be > 100 GB.
        assert!(peak < 64 << 20, "peak heap {peak} bytes");
        // Milliseconds in release; generous for a debug build on a busy CI.
        assert!(secs < 5.0, "took {secs} s");
        eprintln!(
            "42000 x 42000 ({} KB, {format}): rejected in {:.1} ms, peak heap {} MB",
            payload.len() >> 10,
            secs * 1e3,
            peak >> 20
        );
    }
}

#[test]
fn labels_per_point_is_inclusive() {
    let at = poison(64, 3);
    let points = decode_with(
        Format::Auto,
        std::str::from_utf8(&at).unwrap(),
        &DecodeOptions::default(),
    );
    assert_eq!(points.len(), 3);
    assert_eq!(points[0].labels.len(), 64);
    let over = poison(65, 1);
    let e = err_with(Format::Auto, &over, &DecodeOptions::default());
    assert_eq!(limit_of(&e), "labels_per_point");
    // Duplicates count once (last wins) and nulls not at all.
    let dup = format!(
        r#"{{"device_id":"d","ts":1,{}"n":1}}"#,
        r#""s":"a","#.repeat(100)
    );
    assert_eq!(ok(Format::Auto, &dup)[0].labels, labels(&[("s", "a")]));
    // Line protocol: tags and string fields.
    let tags: String = (0..65).map(|i| format!(",t{i}=v")).collect();
    let e = err(Format::LineProtocol, &format!("m{tags} x=1 1"));
    assert_eq!(limit_of(&e), "labels_per_point");
    let strings: String = (0..65).map(|i| format!("s{i}=\"v\",")).collect();
    let e = err(Format::LineProtocol, &format!("m {strings}x=1 1"));
    assert_eq!(limit_of(&e), "labels_per_point");
    // JSON points: labels object plus scalar members.
    let many: String = (0..65).map(|i| format!(r#""l{i}":"v","#)).collect();
    let e = err(
        Format::JsonPoints,
        &format!(r#"{{"device_id":"d","ts":1,{many}"metric":"m","value":1}}"#),
    );
    assert_eq!(limit_of(&e), "labels_per_point");
}

fn with(limits: DecodeLimits) -> DecodeOptions {
    DecodeOptions {
        limits,
        ..DecodeOptions::default()
    }
}

#[test]
fn points_per_message_counts_the_whole_message() {
    let opts = with(DecodeLimits {
        points_per_message: 4,
        ..DecodeLimits::default()
    });
    assert_eq!(
        decode_with(Format::LineProtocol, "m a=1,b=2 1\nm c=3,d=4 1", &opts).len(),
        4
    );
    let e = err_with(
        Format::LineProtocol,
        b"m a=1,b=2 1\nm c=3,d=4 1\nm e=5 1",
        &opts,
    );
    assert_eq!(limit_of(&e), "points_per_message");
    assert_eq!(
        e.to_string(),
        "message has more than 4 points (at least 5) (decode limit points_per_message)"
    );
    let arr = format!(
        "[{}]",
        [r#"{"device_id":"d","ts":1,"metric":"m","value":1}"#; 5].join(",")
    );
    assert_eq!(
        limit_of(&err_with(Format::Auto, arr.as_bytes(), &opts)),
        "points_per_message"
    );
    let e = err_with(
        Format::JsonStatus,
        br#"{"device_id":"d","ts":1,"a":1,"b":2,"c":3,"d":4,"e":5}"#,
        &opts,
    );
    assert_eq!(limit_of(&e), "points_per_message");
}

#[test]
fn labels_per_message_bounds_points_times_labels() {
    let opts = with(DecodeLimits {
        labels_per_message: 100,
        ..DecodeLimits::default()
    });
    // 10 labels × 10 points = 100: fits; one more point does not.
    assert_eq!(
        decode_with(
            Format::Auto,
            std::str::from_utf8(&poison(10, 10)).unwrap(),
            &opts
        )
        .len(),
        10
    );
    let e = err_with(Format::Auto, &poison(10, 11), &opts);
    assert_eq!(limit_of(&e), "labels_per_message");
    assert!(e.to_string().contains("110 labels"), "{e}");
    // The default: 64 labels on 16,000 points is over 10^6.
    let e = err_with(Format::Auto, &poison(64, 16_000), &DecodeOptions::default());
    assert_eq!(limit_of(&e), "labels_per_message");
}

#[test]
fn decoded_bytes_bounds_long_labels_copied_many_times() {
    // 64 labels of 4 KB (the longest value) on 600 points: ~150 MiB decoded
    // from a 300 KB message.
    let value = "x".repeat(4096);
    let mut s = String::from(r#"{"device_id":"d","ts":1"#);
    for i in 0..64 {
        s.push_str(&format!(r#","s{i}":"{value}""#));
    }
    for i in 0..600 {
        s.push_str(&format!(r#","n{i}":1"#));
    }
    s.push('}');
    let (e, _, peak) = reject(Format::Auto, s.as_bytes(), &DecodeOptions::default());
    assert_eq!(limit_of(&e), "decoded_bytes");
    assert!(peak < 16 << 20, "peak heap {peak} bytes");
}

#[test]
fn fields_depth_and_lengths() {
    let opts = with(DecodeLimits {
        fields_per_object: 5,
        ..DecodeLimits::default()
    });
    let e = err_with(
        Format::JsonStatus,
        br#"{"device_id":"d","ts":1,"a":null,"b":null,"c":{"d":null,"e":null}}"#,
        &opts,
    );
    assert_eq!(limit_of(&e), "fields_per_object");
    assert!(
        e.to_string()
            .starts_with("an object has 7 fields: more than the 5"),
        "{e}"
    );
    let e = err_with(Format::LineProtocol, b"m,a=1,b=2 c=1,d=2,e=3,f=4 1", &opts);
    assert_eq!(limit_of(&e), "fields_per_object");

    // Depth 32 passes (when the layout is otherwise valid), 33 does not.
    let nest = |levels: usize| {
        let mut s = String::from(r#"{"device_id":"d","ts":1,"#);
        for _ in 1..levels {
            s.push_str(r#""a":{"#);
        }
        s.push_str(r#""x":1"#);
        s.push_str(&"}".repeat(levels));
        s
    };
    assert_eq!(
        ok(Format::JsonStatus, &nest(32))[0].metric,
        format!("{}x", "a.".repeat(31))
    );
    let e = err(Format::JsonStatus, &nest(33));
    assert_eq!(limit_of(&e), "depth");
    assert_eq!(
        e.to_string(),
        "message nests 33 levels deep: more than the 32 levels allowed (decode limit depth)"
    );
    // Deeper than serde_json's own limit: still an error, never a crash.
    assert!(matches!(
        err(Format::JsonStatus, &nest(100_000)),
        DecodeError::Json(_)
    ));
    assert!(matches!(
        err(Format::Auto, &"[".repeat(100_000)),
        DecodeError::Json(_)
    ));

    // Keys: flattened names are checked before they are built.
    let long = "k".repeat(200);
    let e = err(
        Format::JsonStatus,
        &format!(r#"{{"device_id":"d","ts":1,"{long}":{{"{long}":1}}}}"#),
    );
    assert_eq!(limit_of(&e), "key_bytes");
    assert!(
        e.to_string()
            .contains("has 401 bytes: more than the 256 bytes a key may have"),
        "{e}"
    );
    let e = err(Format::LineProtocol, &format!("{long} {long}=1 1"));
    assert_eq!(limit_of(&e), "key_bytes");
    // Values: labels, device ids, units.
    let v = "v".repeat(4097);
    for payload in [
        format!(r#"{{"device_id":"d","ts":1,"s":"{v}","x":1}}"#),
        format!(r#"{{"device_id":"{v}","ts":1,"x":1}}"#),
        format!(r#"{{"device_id":"d","ts":1,"metric":"m","value":1,"unit":"{v}"}}"#),
        format!("m,id={v} x=1 1"),
        format!("m s=\"{v}\",x=1 1"),
    ] {
        assert_eq!(
            limit_of(&err(Format::Auto, &payload)),
            "value_bytes",
            "{payload:.40}"
        );
    }
    // A long record key only matters when the payload has no device id.
    let keyed = DecodeOptions {
        device_id_from_key: Some(v.clone()),
        ..DecodeOptions::default()
    };
    assert_eq!(
        decode_with(Format::Auto, r#"{"id":"d","ts":1,"x":1}"#, &keyed).len(),
        1
    );
    assert_eq!(
        limit_of(&err_with(Format::Auto, br#"{"ts":1,"x":1}"#, &keyed)),
        "value_bytes"
    );
}

#[test]
fn a_limit_in_a_later_element_drops_the_whole_message() {
    let opts = with(DecodeLimits {
        labels_per_point: 1,
        ..DecodeLimits::default()
    });
    let payload = br#"[{"device_id":"d","ts":1,"s":"a","x":1},{"device_id":"d","ts":1,"s":"a","t":"b","x":1}]"#;
    assert_eq!(
        limit_of(&err_with(Format::Auto, payload, &opts)),
        "labels_per_point"
    );
    let lp = b"m,a=1 x=1 1\nm,a=1,b=2 x=1 1";
    let e = err_with(Format::LineProtocol, lp, &opts);
    assert_eq!(limit_of(&e), "labels_per_point");
}

#[test]
fn verify_catches_output_over_the_limits() {
    // The fuzz harness relies on `verify` to see a broken promise.
    let limits = DecodeLimits::default();
    let mut p = point("d", "m", Some(1.0));
    assert_eq!(
        crate::decode::limits::verify(std::slice::from_ref(&p), &limits),
        Ok(())
    );
    p.labels = (0..65)
        .map(|i| (format!("k{i}"), "v".to_string()))
        .collect();
    assert!(crate::decode::limits::verify(std::slice::from_ref(&p), &limits).is_err());
    p.labels = labels(&[("k", "a"), ("k", "b")]);
    assert!(crate::decode::limits::verify(std::slice::from_ref(&p), &limits).is_err());
    p.labels.clear();
    p.metric = "m".repeat(257);
    assert!(crate::decode::limits::verify(std::slice::from_ref(&p), &limits).is_err());
    let many = vec![point("d", "m", Some(1.0)); 100_001];
    assert!(crate::decode::limits::verify(&many, &limits).is_err());
}
