use super::*;

const LP: Format = Format::LineProtocol;

fn lp_err(payload: &str) -> (usize, String) {
    match err(LP, payload) {
        DecodeError::LineProtocol { line, message } => (line, message),
        other => panic!("expected a line protocol error for {payload:?}, got {other:?}"),
    }
}

#[test]
fn seed_device_data_line() {
    let line = "device_data,device_id=550e8400-e29b-41d4-a716-446655440000,device_name=PLC-001,tag_name=temperature_1,protocol=ModbusTcp,location=Workshop-A,unit=°C value=25.6,raw_value=256,quality=1i,error_code=0i 1642780800000000000";
    for format in [LP, Format::Auto] {
        let pts = ok(format, line);
        assert_eq!(
            metrics(&pts),
            vec![
                ("temperature_1", Some(25.6)),
                ("temperature_1.raw_value", Some(256.0)),
                ("temperature_1.error_code", Some(0.0)),
            ]
        );
        let want_labels = labels(&[
            ("device_name", "PLC-001"),
            ("protocol", "ModbusTcp"),
            ("location", "Workshop-A"),
        ]);
        for p in &pts {
            assert_eq!(p.device_id, "550e8400-e29b-41d4-a716-446655440000");
            assert_eq!(p.ts_micros, T);
            assert_eq!(p.quality, Some(1));
            assert_eq!(p.labels, want_labels);
        }
        assert_eq!(pts[0].unit.as_deref(), Some("°C"));
        assert_eq!(
            (pts[1].unit.as_deref(), pts[2].unit.as_deref()),
            (None, None)
        );
    }
}

#[test]
fn seed_system_metrics_and_alert_lines() {
    let msg = "system_metrics,component=frame_bus,instance=primary,host=gateway-001,metric_type=performance cpu_usage=15.2,memory_usage=89534464i,throughput=1200.5,latency_p99=0.8 1642780800000000000\n\
alert_events,rule_id=660e8400-e29b-41d4-a716-446655440001,device_id=550e8400-e29b-41d4-a716-446655440000,tag_id=770e8400-e29b-41d4-a716-446655440002,level=WARNING,status=ACTIVE triggered_value=85.6,threshold_value=80.0,duration=300i,message=\"Temperature too high\" 1642780800000000000\n";
    let pts = ok(LP, msg);
    assert_eq!(
        metrics(&pts),
        vec![
            ("system_metrics.cpu_usage", Some(15.2)),
            ("system_metrics.memory_usage", Some(89534464.0)),
            ("system_metrics.throughput", Some(1200.5)),
            ("system_metrics.latency_p99", Some(0.8)),
            ("alert_events.triggered_value", Some(85.6)),
            ("alert_events.threshold_value", Some(80.0)),
            ("alert_events.duration", Some(300.0)),
        ]
    );
    assert_eq!(pts[0].device_id, "gateway-001");
    assert_eq!(
        pts[0].labels,
        labels(&[
            ("component", "frame_bus"),
            ("instance", "primary"),
            ("metric_type", "performance"),
        ])
    );
    assert_eq!(pts[4].device_id, "550e8400-e29b-41d4-a716-446655440000");
    assert_eq!(
        pts[6].labels,
        labels(&[
            ("rule_id", "660e8400-e29b-41d4-a716-446655440001"),
            ("tag_id", "770e8400-e29b-41d4-a716-446655440002"),
            ("level", "WARNING"),
            ("status", "ACTIVE"),
            ("message", "Temperature too high"),
        ])
    );
    assert!(pts.iter().all(|p| p.ts_micros == T && p.quality.is_none()));
}

#[test]
fn device_and_metric_fallbacks() {
    // No device tag: the measurement; `value` field: metric = measurement.
    let pts = ok(LP, "temperature,site=a value=1 1642780800");
    assert_eq!(pts[0].device_id, "temperature");
    assert_eq!(pts[0].metric, "temperature");
    assert_eq!(pts[0].labels, labels(&[("site", "a")]));
    // The record key beats the measurement, but not a device tag.
    let opts = DecodeOptions {
        device_id_from_key: Some("k-1".into()),
        ..DecodeOptions::default()
    };
    let pts = decode_with(LP, "temperature value=1 1642780800", &opts);
    assert_eq!(pts[0].device_id, "k-1");
    let pts = decode_with(LP, "t,deviceId=dev value=1 1642780800", &opts);
    assert_eq!(pts[0].device_id, "dev");
    // `metric` tag names the point; bools are 1/0; unit only on `value`.
    let pts = ok(
        LP,
        "m,metric=door,unit=bool,id=7 value=t,locked=F 1642780800",
    );
    assert_eq!(
        metrics(&pts),
        vec![("door", Some(1.0)), ("door.locked", Some(0.0))]
    );
    assert_eq!(pts[0].device_id, "7");
    assert_eq!(pts[0].unit.as_deref(), Some("bool"));
    assert!(pts[0].labels.is_empty());
}

#[test]
fn field_types() {
    let pts = ok(
        LP,
        "m a=1,b=-2.5e2,c=3i,d=-4i,e=5u,f=true,g=True,h=TRUE,i=f,j=False,k=FALSE,l=T,n=.5,o=+1 1642780800",
    );
    let values: Vec<f64> = pts.iter().map(|p| p.value.unwrap()).collect();
    assert_eq!(
        values,
        vec![
            1.0, -250.0, 3.0, -4.0, 5.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.5, 1.0
        ]
    );
    // A float quality is accepted when integral.
    assert_eq!(ok(LP, "m value=1,quality=0 1642780800")[0].quality, Some(0));
    assert_eq!(
        ok(LP, "m value=1,quality=2u 1642780800")[0].quality,
        Some(2)
    );
    // A line with only string fields yields no points.
    assert!(ok(LP, "m s=\"x\" 1642780800").is_empty());
}

#[test]
fn escaping() {
    let pts = ok(
        LP,
        r#"my\ meas\,ure,device_id=dev\ 1\,a\=b,tag\ key=v\\x value=1,str\=k="say \"hi\" \\ \n",other="a,b c=d" 1642780800"#,
    );
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].device_id, "dev 1,a=b");
    assert_eq!(pts[0].metric, r"my meas,ure");
    assert_eq!(
        pts[0].labels,
        labels(&[
            ("tag key", r"v\\x"),
            ("str=k", r#"say "hi" \ \n"#),
            ("other", "a,b c=d"),
        ])
    );
}

#[test]
fn timestamps_and_layout() {
    // Every unit by magnitude, optional timestamp, comments, blank lines,
    // CRLF, leading/trailing spaces.
    let msg = "# header\r\n\r\n  m value=1 1642780800\r\nm value=2 1642780800000\n\n\
               m value=3 1642780800000000\nm value=4   1642780800000000000  \n   # note\nm value=5\n";
    let opts = DecodeOptions {
        default_ts_micros: Some(T),
        ..DecodeOptions::default()
    };
    let pts = decode_with(LP, msg, &opts);
    assert_eq!(pts.len(), 5);
    assert!(pts.iter().all(|p| p.ts_micros == T));
    assert!(ok(LP, "# only a comment\n\n").is_empty());
    assert_eq!(ok(LP, "m value=1 0")[0].ts_micros, 0);
    assert_eq!(
        err(LP, "m value=1\n"),
        DecodeError::MissingField("timestamp")
    );
}

#[test]
fn bad_line_fails_the_whole_message() {
    let msg = "m value=1 1642780800\nm value=oops 1642780800\nm value=3 1642780800";
    assert_eq!(
        lp_err(msg),
        (2, "invalid value `oops` in field `value`".into())
    );
    let e = err(LP, msg);
    assert_eq!(
        e.to_string(),
        "line protocol error on line 2: invalid value `oops` in field `value`"
    );
}

#[test]
fn syntax_errors() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "m",
            1,
            "missing fields (expected `measurement[,tag=value] field=value [timestamp]`)",
        ),
        (
            "m,t=a",
            1,
            "missing fields (expected `measurement[,tag=value] field=value [timestamp]`)",
        ),
        (
            "m   ",
            1,
            "missing fields (expected `measurement[,tag=value] field=value [timestamp]`)",
        ),
        (",t=a v=1", 1, "missing measurement name"),
        (" \nm,=a v=1", 2, "empty tag key"),
        ("m,t v=1", 1, "tag `t` has no `=value`"),
        ("m,t= v=1", 1, "tag `t` has an empty value"),
        (
            "m,t=a,u=b",
            1,
            "missing fields (expected `measurement[,tag=value] field=value [timestamp]`)",
        ),
        ("m =1", 1, "empty field key"),
        ("m v", 1, "field `v` has no `=value`"),
        ("m v=1,w", 1, "field `w` has no `=value`"),
        ("m v=", 1, "field `v` has no value"),
        ("m v=1,", 1, "empty field key"),
        ("m v=\"abc", 1, "unterminated string in field `v`"),
        (
            "m v=\"abc\"x",
            1,
            "unexpected character after the string of field `v`",
        ),
        ("m v=1.5i", 1, "invalid integer `1.5i` in field `v`"),
        ("m v=-1u", 1, "invalid unsigned integer `-1u` in field `v`"),
        (
            "m v=99999999999999999999i",
            1,
            "invalid integer `99999999999999999999i` in field `v`",
        ),
        ("m v=NaN", 1, "invalid value `NaN` in field `v`"),
        ("m v=inf", 1, "invalid value `inf` in field `v`"),
        ("m v=1e999", 1, "field `v` is not a finite number (`1e999`)"),
        ("m v=yes", 1, "invalid value `yes` in field `v`"),
        ("m v=1 abc", 1, "invalid timestamp `abc`"),
        ("m v=1 1.5", 1, "invalid timestamp `1.5`"),
        ("m v=1 1 2", 1, "unexpected text `2` after the timestamp"),
        ("m v=1 -5", 1, "bad timestamp: -5 is negative (before 1970)"),
        (
            "m v=1 99999999999999999999",
            1,
            "bad timestamp: `99999999999999999999` is out of range",
        ),
        (
            "m value=1,quality=1.5 1",
            1,
            "field `quality` must be an integer in the 32-bit range",
        ),
        (
            "m value=1,quality=5000000000i 1",
            1,
            "field `quality` must be an integer in the 32-bit range",
        ),
        (
            "m value=1,quality=t 1",
            1,
            "field `quality` must be an integer in the 32-bit range",
        ),
    ];
    for (payload, line, message) in cases {
        assert_eq!(lp_err(payload), (*line, message.to_string()), "{payload:?}");
    }
}
