//! The fuzz targets: seed corpora and the promise each decoder keeps.

use std::fmt;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Outcome;
use crate::decode::limits::verify;
use crate::decode::{DecodeLimits, DecodeOptions, Format, Point, decode};
use crate::modbus::registers::{DataType, WordOrder, decode as decode_registers, encode_bytes};
use crate::mqtt::template::{MqttFormat, TopicTemplate, decode_payload};

/// A decoder under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// JSON status and point messages (`Format::Auto`, `JsonStatus`, `JsonPoints`).
    Json,
    /// InfluxDB line protocol.
    LineProtocol,
    /// Modbus register words → values, data-type and word-order names.
    ModbusRegisters,
    /// MQTT topic templates, topics and payloads.
    MqttTemplate,
}

impl Target {
    pub const ALL: [Target; 4] = [
        Target::Json,
        Target::LineProtocol,
        Target::ModbusRegisters,
        Target::MqttTemplate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Json => "json",
            Target::LineProtocol => "line_protocol",
            Target::ModbusRegisters => "modbus",
            Target::MqttTemplate => "mqtt_template",
        }
    }

    /// Realistic inputs the mutations start from.
    pub(super) fn seeds(self) -> Vec<Vec<u8>> {
        let list: &[&str] = match self {
            Target::Json => JSON_SEEDS,
            Target::LineProtocol => LP_SEEDS,
            Target::ModbusRegisters => MODBUS_SEEDS,
            Target::MqttTemplate => MQTT_SEEDS,
        };
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Runs one input; panics when a promise is broken.
    pub(super) fn check(self, input: &[u8], case_seed: u64) -> Outcome {
        let mut rng = StdRng::seed_from_u64(case_seed);
        match self {
            Target::Json => {
                let format =
                    [Format::Auto, Format::JsonStatus, Format::JsonPoints][rng.random_range(0..3)];
                check_decode(format, input, &mut rng)
            }
            Target::LineProtocol => check_decode(Format::LineProtocol, input, &mut rng),
            Target::ModbusRegisters => check_modbus(input),
            Target::MqttTemplate => check_mqtt(input, &mut rng),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!("unknown fuzz target `{s}` (json, line_protocol, modbus, mqtt_template)")
            })
    }
}

/// Small limits, so that mutated seeds reach every limit check.
const TIGHT: DecodeLimits = DecodeLimits {
    labels_per_point: 3,
    points_per_message: 8,
    labels_per_message: 12,
    fields_per_object: 12,
    depth: 3,
    key_bytes: 24,
    value_bytes: 24,
    decoded_bytes: 2048,
};

fn options(rng: &mut StdRng) -> DecodeOptions {
    DecodeOptions {
        max_message_bytes: 1 << 20,
        default_ts_micros: rng.random_bool(0.8).then_some(1_642_780_800_000_000),
        device_id_from_key: rng.random_bool(0.5).then(|| "key-device".to_string()),
        limits: if rng.random_bool(0.5) {
            TIGHT
        } else {
            DecodeLimits::default()
        },
    }
}

/// Points or an error; on error nothing appended; points within limits.
fn check_decode(format: Format, input: &[u8], rng: &mut StdRng) -> Outcome {
    let opts = options(rng);
    let sentinel = sentinel();
    let mut out = vec![sentinel.clone()];
    match decode(format, input, &opts, &mut out) {
        Ok(n) => {
            assert_eq!(n + 1, out.len(), "returned count");
            assert_eq!(out[0], sentinel, "earlier points untouched");
            if let Err(e) = verify(&out[1..], &opts.limits) {
                panic!("decoded output breaks the limits: {e}");
            }
            Outcome::Decoded
        }
        Err(e) => {
            assert_eq!(out, vec![sentinel], "a failed decode appended points");
            assert!(!e.to_string().is_empty(), "empty dead-letter reason");
            Outcome::Rejected
        }
    }
}

fn sentinel() -> Point {
    Point {
        ts_micros: 0,
        device_id: "keep".into(),
        metric: "me".into(),
        value: Some(1.0),
        quality: None,
        unit: None,
        labels: vec![],
    }
}

const TYPES: [DataType; 11] = [
    DataType::Boolean,
    DataType::Int8,
    DataType::UInt8,
    DataType::Int16,
    DataType::UInt16,
    DataType::Int32,
    DataType::UInt32,
    DataType::Int64,
    DataType::UInt64,
    DataType::Float32,
    DataType::Float64,
];
const ORDERS: [WordOrder; 4] = [
    WordOrder::Abcd,
    WordOrder::Dcba,
    WordOrder::Badc,
    WordOrder::Cdab,
];

/// Register words (the input's bytes, big-endian pairs) decode for every
/// type and order when there are enough of them; integers are exact and in
/// range; re-encoding the value's bytes in any order gives the same value.
/// The input's text also goes through the type and order parsers.
fn check_modbus(input: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(input);
    let _ = DataType::from_str(&text);
    let _ = WordOrder::from_str(&text);
    let words: Vec<u16> = input
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
        .collect();
    let mut decoded = false;
    for dtype in TYPES {
        let need = usize::from(dtype.words());
        for order in ORDERS {
            let Some(v) = decode_registers(&words, dtype, order) else {
                assert!(words.len() < need, "{dtype:?} {order} refused {need} words");
                continue;
            };
            decoded = true;
            let (lo, hi) = match dtype {
                DataType::Boolean => (0.0, 1.0),
                DataType::Int8 => (-128.0, 127.0),
                DataType::UInt8 => (0.0, 255.0),
                DataType::Int16 => (-32768.0, 32767.0),
                DataType::UInt16 => (0.0, 65535.0),
                DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
                DataType::UInt32 => (0.0, u32::MAX as f64),
                DataType::Int64 => (i64::MIN as f64, i64::MAX as f64),
                DataType::UInt64 => (0.0, u64::MAX as f64),
                DataType::Float32 | DataType::Float64 => (f64::NEG_INFINITY, f64::INFINITY),
            };
            assert!(
                v.is_nan() || (lo..=hi).contains(&v),
                "{dtype:?} {order}: {v} outside {lo}..={hi}"
            );
            if need > 1 {
                // The value's big-endian bytes, as the device would hold them
                // in ABCD, re-encoded in `order`, decode to the same bits.
                let abcd: Vec<u8> = order_to_abcd(&words[..need], order)
                    .iter()
                    .flat_map(|w| w.to_be_bytes())
                    .collect();
                let again = decode_registers(&encode_bytes(&abcd, order), dtype, order);
                assert_eq!(
                    again.map(f64::to_bits),
                    Some(v.to_bits()),
                    "{dtype:?} {order} round trip"
                );
            }
        }
    }
    if decoded {
        Outcome::Decoded
    } else {
        Outcome::Rejected
    }
}

/// The words of `order` put back in big-endian (ABCD) order.
fn order_to_abcd(words: &[u16], order: WordOrder) -> Vec<u16> {
    let mut w: Vec<u16> = words.to_vec();
    if matches!(order, WordOrder::Cdab | WordOrder::Dcba) {
        w.reverse();
    }
    if matches!(order, WordOrder::Badc | WordOrder::Dcba) {
        for x in &mut w {
            *x = x.swap_bytes();
        }
    }
    w
}

/// `template \0 topic \0 payload`: the template parses or is refused; a
/// matching topic's fields feed the payload decode, whose points respect
/// the limits (the topic's labels included) or which fails cleanly.
fn check_mqtt(input: &[u8], rng: &mut StdRng) -> Outcome {
    let mut parts = input.splitn(3, |b| *b == 0);
    let template = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let topic = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let payload = parts.next().unwrap_or_default();
    let Ok(template) = template.parse::<TopicTemplate>() else {
        return Outcome::Rejected;
    };
    let fields = template.fields(&topic);
    if let Some(f) = &fields {
        assert!(
            f.device_id.as_deref().is_none_or(|d| !d.is_empty())
                && f.metric.as_deref().is_none_or(|m| !m.is_empty()),
            "empty topic field"
        );
    }
    let format = [
        MqttFormat::Auto,
        MqttFormat::Json,
        MqttFormat::LineProtocol,
        MqttFormat::Number,
    ][rng.random_range(0..4)];
    let opts = options(rng);
    let sentinel = sentinel();
    let mut out = vec![sentinel.clone()];
    match decode_payload(format, &topic, fields.as_ref(), payload, 7, &opts, &mut out) {
        Ok(n) => {
            assert_eq!(n + 1, out.len(), "returned count");
            if let Err(e) = verify(&out[1..], &opts.limits) {
                panic!("decoded output breaks the limits: {e}");
            }
            Outcome::Decoded
        }
        Err(e) => {
            assert_eq!(out, vec![sentinel], "a failed decode appended points");
            assert!(!e.is_empty(), "empty dead-letter reason");
            Outcome::Rejected
        }
    }
}

const JSON_SEEDS: &[&str] = &[
    r#"{"device_id":"srv-01","timestamp":"2026-01-21T10:00:00Z","cpu_usage":45.2,"memory_usage":61.0,"disk_usage":70.1,"network_in":1024,"network_out":2048,"temperature":55.5, "status":"Online", "location":"A1"}"#,
    r#"{"deviceId":"gw-7","ts":1642780800000,"online":true,"alarm":false,"spare":null,"metrics":{"cpu":{"usage":12.5,"cores":4},"memory":{"usage":80}},"fan":{"rpm":1200,"mode":"auto"},"labels":{"site":"sh","rack":3,"hot":true,"none":null},"fw":"1.2.3"}"#,
    r#"{"device_id":"d1","metric_name":"temperature","value":25.6,"timestamp":1642780800000,"unit":"°C","quality":0,"labels":{"line":"A"}}"#,
    r#"[{"device_id":"d","metric":"m","value":"2.5","ts":1642780800,"protocol":"ModbusTcp"},{"id":7,"metric":"n","value":null,"time":"2022-01-21T16:00:00.123456+08:00","quality":"1"}]"#,
    r#"[{"device_id":"a","ts":1,"x":1,"x":2},{"device_id":"b","metric":"m","value":true,"tags":{"k":"v","k":"w"}}]"#,
    r#"{"value": 3, "ts": 1700000000000}"#,
    r#"{"device_id":"dev-1","ts":1642780800,"s0":"on","s1":"on","s2":"on","s3":"on","n0":42,"n1":42,"n2":42,"n3":42}"#,
    r#"{"a":{"b":{"c":{"d":{"e":1}}}},"device_id":"\u00e9\ud83d\ude00","ts":-1e3}"#,
];

const LP_SEEDS: &[&str] = &[
    "device_data,device_id=550e8400-e29b-41d4-a716-446655440000,device_name=PLC-001,tag_name=temperature_1,protocol=ModbusTcp,location=Workshop-A,unit=°C value=25.6,raw_value=256,quality=1i,error_code=0i 1642780800000000000",
    "system_metrics,component=frame_bus,instance=primary,host=gateway-001,metric_type=performance cpu_usage=15.2,memory_usage=89534464i,throughput=1200.5,latency_p99=0.8 1642780800000000000\nalerts,host=gateway-001,severity=warning message=\"Temperature too high\",code=42u 1642780800000000000\n",
    "m,metric=door,unit=bool,id=7 value=t,locked=F 1642780800\r\n# comment\n\ntemperature,site=a value=1",
    r#"my\ meas\,ure,device_id=dev\ 1\,a\=b,tag\ key=v\\x value=1,str\=k="say \"hi\" \\ \n",other="a,b c=d" 1642780800"#,
    "m,id=a,id=b x=1,x=2,x=\"s\" 1642780800\nm,host=h a=-1e3,b=9223372036854775807i,c=18446744073709551615u",
    "cpu value=3",
];

const MODBUS_SEEDS: &[&str] = &[
    "\u{0}\u{1}\u{0}\u{2}",
    "ABCD",
    "Float32",
    "cdab",
    "\u{7f}\u{7f}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}\u{ff}",
    "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
    "Double",
    "uint64",
];

const MQTT_SEEDS: &[&str] = &[
    "plant/{site}/{device_id}/{metric}\u{0}plant/s1/pump-7/temperature\u{0} 21.5\n",
    "plant/{site}/{device_id}/{metric}\u{0}plant/s1/d1/temp\u{0}{\"value\": 3, \"ts\": 1700000000000}",
    "plant/{site}/{device_id}/{metric}\u{0}plant/s1/d1/temp\u{0}env,device_id=d9 humidity=40 1700000000000000000",
    "sensors/{device_id}\u{0}sensors/abc\u{0}{\"device_id\":\"x\",\"ts\":1,\"t\":1,\"s\":\"a\"}",
    "{a}/{b}/{c}/{d}/{metric}\u{0}1/2/3/4/m\u{0}[{\"device_id\":\"d\",\"metric\":\"m\",\"value\":1}]",
    "a/+/b\u{0}a/x/b\u{0}1",
    "\u{0}\u{0}",
];
