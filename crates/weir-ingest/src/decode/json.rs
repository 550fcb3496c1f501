//! JSON decoders. A message is one object or an array of objects; an array
//! is decoded element by element and fails as a whole if any element fails.
//!
//! Common keys (the first present, non-null key in this order wins; the
//! others are ignored and never become metrics or labels):
//! * device id: `device_id`, `deviceId`, `id` — a non-empty string, or an
//!   integer (used as its decimal text);
//! * timestamp: `timestamp`, `ts`, `time` — see [`super::timestamp`].
//!
//! # Status messages ([`Format::JsonStatus`](super::Format::JsonStatus))
//!
//! ```json
//! {"device_id":"srv-01","timestamp":"2026-01-21T10:00:00Z","cpu_usage":45.2,
//!  "network_in":1024,"status":"Online","location":"A1"}
//! ```
//! * every number becomes a point whose metric is the key (`cpu_usage`);
//! * every bool becomes a point with value 1.0 (`true`) or 0.0 (`false`);
//! * every string becomes a label on *all* points of the object (`status`,
//!   `location`); numeric strings are labels too, not values;
//! * `null` fields are ignored;
//! * a nested object is flattened with dotted keys (`"cpu":{"usage":3}` →
//!   metric `cpu.usage`), except that the members of a top-level `metrics`
//!   object are taken without the `metrics.` prefix, and a top-level `labels`
//!   or `tags` object only adds labels (its numbers and bools as text);
//! * an array anywhere inside the object is an error (`WrongType`);
//! * points carry no unit and no quality; an object with no numeric or bool
//!   field yields no points (this is not an error).
//!
//! # Point messages ([`Format::JsonPoints`](super::Format::JsonPoints))
//!
//! ```json
//! {"device_id":"d1","metric_name":"temperature","value":25.6,"timestamp":1642780800000,
//!  "unit":"°C","quality":0,"labels":{"line":"A"}}
//! ```
//! * metric: `metric_name` or `metric` (required, non-empty string);
//! * `value` (required key): a number, a numeric string (`"25.6"`), a bool
//!   (1.0 / 0.0) or `null` (a point without value); NaN or infinite → error;
//! * `unit`: string or null; `quality`: 32-bit integer (or integral numeric
//!   string) or null;
//! * `labels` / `tags`: object of strings (numbers and bools as text, nulls
//!   skipped);
//! * any other scalar member becomes a label too (`"protocol":"ModbusTcp"`);
//!   other nested objects or arrays are an error.
//!
//! # Duplicate keys and limits
//!
//! A key repeated in one object keeps its **last** value (at the position of
//! its first occurrence), so `{"device":"a","x":1,"x":2}` is one point `x` =
//! 2; the same holds for status metrics whose flattened names collide
//! (`{"cpu":{"u":1},"cpu.u":2}`) and for labels. Nesting, fields per object,
//! key and value lengths, labels per point and the message totals are
//! checked against [`DecodeLimits`](super::DecodeLimits) before any point
//! is built.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::labels::{LabelSet, dedupe_last_wins};
use super::limits::{
    self, Budget, DecodeLimits, POINT_OVERHEAD, check_fields, check_key, check_value,
};
use super::{DecodeError, DecodeOptions, Point, default_ts, key_device_id, timestamp};

const DEVICE_KEYS: [&str; 3] = ["device_id", "deviceId", "id"];
const TS_KEYS: [&str; 3] = ["timestamp", "ts", "time"];
const METRIC_KEYS: [&str; 2] = ["metric_name", "metric"];
const LABEL_EXPECTED: &str = "a string, number or bool";

/// How objects are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonMode {
    Status,
    Points,
    /// Points if the object has a metric key and `value`, else status.
    Auto,
}

/// A JSON value borrowing unescaped strings from the payload.
#[derive(Debug)]
enum JVal<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Arr(Vec<JVal<'a>>),
    Obj(Vec<(Cow<'a, str>, JVal<'a>)>),
}

type Obj<'a> = [(Cow<'a, str>, JVal<'a>)];

impl JVal<'_> {
    fn kind(&self) -> &'static str {
        match self {
            JVal::Null => "null",
            JVal::Bool(_) => "a bool",
            JVal::I64(_) | JVal::U64(_) | JVal::F64(_) => "a number",
            JVal::Str(_) => "a string",
            JVal::Arr(_) => "an array",
            JVal::Obj(_) => "an object",
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            JVal::I64(n) => Some(n as f64),
            JVal::U64(n) => Some(n as f64),
            JVal::F64(f) => Some(f),
            JVal::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    /// Label text of a scalar; `None` for null, `Err` for objects/arrays.
    fn label_text(&self) -> Result<Option<Cow<'_, str>>, ()> {
        Ok(Some(match self {
            JVal::Null => return Ok(None),
            JVal::Str(s) => Cow::Borrowed(s.as_ref()),
            JVal::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            JVal::I64(n) => Cow::Owned(n.to_string()),
            JVal::U64(n) => Cow::Owned(n.to_string()),
            JVal::F64(f) => Cow::Owned(f.to_string()),
            JVal::Arr(_) | JVal::Obj(_) => return Err(()),
        }))
    }
}

struct JValVisitor;

impl<'de> Visitor<'de> for JValVisitor {
    type Value = JVal<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<JVal<'de>, E> {
        Ok(JVal::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<JVal<'de>, E> {
        Ok(JVal::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<JVal<'de>, E> {
        Ok(JVal::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<JVal<'de>, E> {
        Ok(JVal::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JVal<'de>, E> {
        Ok(JVal::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<JVal<'de>, E> {
        Ok(JVal::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<JVal<'de>, E> {
        Ok(JVal::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<JVal<'de>, E> {
        Ok(JVal::Null)
    }
    fn visit_none<E>(self) -> Result<JVal<'de>, E> {
        Ok(JVal::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JVal<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(JVal::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JVal<'de>, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(12));
        while let Some(Key(k)) = map.next_key()? {
            entries.push((k, map.next_value()?));
        }
        Ok(JVal::Obj(dedupe_last_wins(entries)))
    }
}

impl<'de> Deserialize<'de> for JVal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JValVisitor)
    }
}

/// An object key, borrowed from the payload unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Decodes a JSON message (object or array of objects) into `out`.
pub(crate) fn decode_json(
    text: &str,
    mode: JsonMode,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let root: JVal = serde_json::from_str(text).map_err(|e| DecodeError::Json(e.to_string()))?;
    let max_depth = opts.limits.depth;
    let d = depth(&root);
    if d > max_depth {
        return Err(limits::exceeded(
            format!("message nests {d} levels deep: more than the {max_depth} levels allowed"),
            "depth",
            max_depth,
        ));
    }
    match &root {
        JVal::Obj(obj) => decode_object(obj, mode, opts, budget, out),
        JVal::Arr(items) => {
            for (i, item) in items.iter().enumerate() {
                let JVal::Obj(obj) = item else {
                    return Err(DecodeError::Json(format!(
                        "array element {i} is {}, expected an object",
                        item.kind()
                    )));
                };
                decode_object(obj, mode, opts, budget, out)?;
            }
            Ok(())
        }
        other => Err(DecodeError::Json(format!(
            "expected an object or an array of objects, found {}",
            other.kind()
        ))),
    }
}

/// Nesting depth (a scalar is 0, `{}` and `[]` are 1). The recursion is
/// bounded by serde_json's own limit of 128 levels.
fn depth(v: &JVal) -> usize {
    match v {
        JVal::Arr(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        JVal::Obj(members) => 1 + members.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// Members of an object, nested members included.
fn count_fields(obj: &Obj) -> usize {
    obj.iter()
        .map(|(_, v)| match v {
            JVal::Obj(inner) => 1 + count_fields(inner),
            _ => 1,
        })
        .sum()
}

fn decode_object(
    obj: &Obj,
    mode: JsonMode,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let is_point = match mode {
        JsonMode::Points => true,
        JsonMode::Status => false,
        JsonMode::Auto => {
            get(obj, "value").is_some() && METRIC_KEYS.iter().any(|k| get(obj, k).is_some())
        }
    };
    if is_point {
        decode_point(obj, opts, budget, out)
    } else {
        decode_status(obj, opts, budget, out)
    }
}

/// The member `key` (keys are unique: duplicates were merged at parse time).
fn get<'v, 'a>(obj: &'v Obj<'a>, key: &str) -> Option<&'v JVal<'a>> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The first of `keys` present with a non-null value.
fn lookup<'v, 'a>(obj: &'v Obj<'a>, keys: &[&'static str]) -> Option<(&'static str, &'v JVal<'a>)> {
    keys.iter().find_map(|k| {
        get(obj, k)
            .filter(|v| !matches!(v, JVal::Null))
            .map(|v| (*k, v))
    })
}

fn device_id(obj: &Obj, opts: &DecodeOptions) -> Result<String, DecodeError> {
    let id = match lookup(obj, &DEVICE_KEYS) {
        Some((_, JVal::Str(s))) if s.trim().is_empty() => {
            return Err(DecodeError::EmptyField("device_id"));
        }
        Some((_, JVal::Str(s))) => s.as_ref().to_owned(),
        Some((_, JVal::I64(n))) => n.to_string(),
        Some((_, JVal::U64(n))) => n.to_string(),
        Some((key, _)) => {
            return Err(DecodeError::WrongType {
                field: key.into(),
                expected: "a string",
            });
        }
        None => key_device_id(opts)
            .map(str::to_owned)
            .ok_or(DecodeError::MissingField("device_id"))?,
    };
    check_value(&opts.limits, &id)?;
    Ok(id)
}

fn timestamp(obj: &Obj, opts: &DecodeOptions) -> Result<i64, DecodeError> {
    let Some((key, v)) = lookup(obj, &TS_KEYS) else {
        return default_ts(opts);
    };
    match v {
        JVal::I64(n) => timestamp::from_i64(*n),
        JVal::U64(n) => timestamp::from_u64(*n),
        JVal::F64(f) => timestamp::from_f64(*f),
        JVal::Str(s) => timestamp::from_str(s),
        _ => {
            return Err(DecodeError::WrongType {
                field: key.into(),
                expected: "a number or a string",
            });
        }
    }
    .map_err(DecodeError::BadTimestamp)
}

fn is_reserved(key: &str) -> bool {
    DEVICE_KEYS.contains(&key) || TS_KEYS.contains(&key)
}

fn collect_labels<'v>(
    limits: &DecodeLimits,
    parent: &str,
    obj: &'v Obj,
    labels: &mut LabelSet<'v>,
) -> Result<(), DecodeError> {
    for (k, v) in obj {
        match v.label_text() {
            Ok(Some(text)) => labels.push(limits, Cow::Borrowed(k.as_ref()), text)?,
            Ok(None) => {}
            Err(()) => {
                return Err(DecodeError::WrongType {
                    field: format!("{parent}.{k}"),
                    expected: LABEL_EXPECTED,
                });
            }
        }
    }
    Ok(())
}

fn decode_status(
    obj: &Obj,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let limits = budget.limits();
    let device_id = device_id(obj, opts)?;
    let ts = timestamp(obj, opts)?;
    // Count first: metric names and labels are borrowed from the payload
    // (linear in its size); points are built only once the totals fit.
    let mut labels = LabelSet::default();
    let mut metrics: Vec<(Cow<str>, f64)> = Vec::new();
    for (k, v) in obj {
        if is_reserved(k) {
            continue;
        }
        match (k.as_ref(), v) {
            ("metrics", JVal::Obj(inner)) => {
                for (k2, v2) in inner {
                    status_field(limits, Cow::Borrowed(k2), v2, &mut metrics, &mut labels)?;
                }
            }
            ("labels" | "tags", JVal::Obj(inner)) => {
                collect_labels(limits, k, inner, &mut labels)?;
            }
            _ => status_field(limits, Cow::Borrowed(k), v, &mut metrics, &mut labels)?,
        }
    }
    let labels = labels.finish();
    let metrics = dedupe_last_wins(metrics);
    if metrics.iter().any(|(m, _)| m.is_empty()) {
        return Err(DecodeError::EmptyField("metric"));
    }
    let per_point = POINT_OVERHEAD + device_id.len() + labels.bytes;
    let bytes = metrics.iter().map(|(m, _)| per_point + m.len()).sum();
    budget.reserve(metrics.len(), labels.len(), bytes)?;
    check_fields(limits, count_fields(obj), "an object")?;
    out.reserve(metrics.len());
    for (metric, value) in metrics {
        out.push(Point {
            ts_micros: ts,
            device_id: device_id.clone(),
            metric: metric.into_owned(),
            value: Some(value),
            quality: None,
            unit: None,
            labels: labels.to_vec(),
        });
    }
    Ok(())
}

fn status_field<'v>(
    limits: &DecodeLimits,
    name: Cow<'v, str>,
    v: &'v JVal,
    metrics: &mut Vec<(Cow<'v, str>, f64)>,
    labels: &mut LabelSet<'v>,
) -> Result<(), DecodeError> {
    match v {
        JVal::Null => {}
        JVal::Str(s) => labels.push(limits, name, Cow::Borrowed(s.as_ref()))?,
        JVal::Obj(inner) => {
            for (k, v2) in inner {
                // Checked before the dotted name is allocated: deep nesting
                // of long keys would otherwise build ever longer names.
                let len = name.len() + 1 + k.len();
                if len > limits.key_bytes {
                    let shown = format!("{name}.{}", truncate(k, 32));
                    return Err(limits::too_long(
                        "key",
                        &shown,
                        len,
                        limits.key_bytes,
                        "key_bytes",
                    ));
                }
                status_field(
                    limits,
                    Cow::Owned(format!("{name}.{k}")),
                    v2,
                    metrics,
                    labels,
                )?;
            }
        }
        JVal::Arr(_) => {
            return Err(DecodeError::WrongType {
                field: name.into_owned(),
                expected: "a number, bool, string, null or object",
            });
        }
        _ => {
            check_key(limits, &name)?;
            metrics.push((name, v.as_f64().unwrap_or_default()));
        }
    }
    Ok(())
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn decode_point(
    obj: &Obj,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let limits = budget.limits();
    let device_id = device_id(obj, opts)?;
    let ts = timestamp(obj, opts)?;
    let metric = point_metric(obj, limits)?;
    let value = match get(obj, "value") {
        None => return Err(DecodeError::MissingField("value")),
        Some(v) => point_value(v)?,
    };
    let unit = match get(obj, "unit") {
        None | Some(JVal::Null) => None,
        Some(JVal::Str(s)) if s.is_empty() => None,
        Some(JVal::Str(s)) => Some(s.as_ref()),
        Some(_) => {
            return Err(DecodeError::WrongType {
                field: "unit".into(),
                expected: "a string",
            });
        }
    };
    if let Some(unit) = unit {
        check_value(limits, unit)?;
    }
    let quality = match get(obj, "quality") {
        None | Some(JVal::Null) => None,
        Some(v) => Some(quality(v).ok_or_else(|| DecodeError::WrongType {
            field: "quality".into(),
            expected: "a 32-bit integer",
        })?),
    };
    let labels = point_labels(obj, limits)?.finish();
    let bytes =
        POINT_OVERHEAD + device_id.len() + metric.len() + unit.map_or(0, str::len) + labels.bytes;
    budget.reserve(1, labels.len(), bytes)?;
    check_fields(limits, count_fields(obj), "an object")?;
    out.push(Point {
        ts_micros: ts,
        device_id,
        metric: metric.to_owned(),
        value,
        quality,
        unit: unit.map(str::to_owned),
        labels: labels.to_vec(),
    });
    Ok(())
}

/// The metric name of a point object (`metric_name` or `metric`, a
/// non-empty string), checked for length.
#[inline]
fn point_metric<'v>(obj: &'v Obj, limits: &DecodeLimits) -> Result<&'v str, DecodeError> {
    let metric = match lookup(obj, &METRIC_KEYS) {
        Some((_, JVal::Str(s))) if s.trim().is_empty() => {
            return Err(DecodeError::EmptyField("metric"));
        }
        Some((_, JVal::Str(s))) => s.as_ref(),
        Some((key, _)) => {
            return Err(DecodeError::WrongType {
                field: key.into(),
                expected: "a string",
            });
        }
        None => return Err(DecodeError::MissingField("metric")),
    };
    check_key(limits, metric)?;
    Ok(metric)
}

/// The labels of a point object: the members of `labels` / `tags` and every
/// other scalar member that is not a common key, metric, `value`, `unit` or
/// `quality`.
#[inline]
fn point_labels<'v>(obj: &'v Obj, limits: &DecodeLimits) -> Result<LabelSet<'v>, DecodeError> {
    let mut labels = LabelSet::default();
    for (k, v) in obj {
        let key = k.as_ref();
        if is_reserved(key)
            || METRIC_KEYS.contains(&key)
            || matches!(key, "value" | "unit" | "quality")
        {
            continue;
        }
        match (key, v) {
            ("labels" | "tags", JVal::Obj(inner)) => {
                collect_labels(limits, key, inner, &mut labels)?;
            }
            _ => match v.label_text() {
                Ok(Some(text)) => labels.push(limits, Cow::Borrowed(key), text)?,
                Ok(None) => {}
                Err(()) => {
                    return Err(DecodeError::WrongType {
                        field: key.into(),
                        expected: LABEL_EXPECTED,
                    });
                }
            },
        }
    }
    Ok(labels)
}

fn point_value(v: &JVal) -> Result<Option<f64>, DecodeError> {
    let parsed = match v {
        JVal::Null => return Ok(None),
        JVal::Str(s) => s.trim().parse::<f64>().ok(),
        other => other.as_f64(),
    };
    match parsed {
        Some(f) if f.is_finite() => Ok(Some(f)),
        Some(_) => Err(DecodeError::NotFinite {
            field: "value".into(),
        }),
        None => Err(DecodeError::WrongType {
            field: "value".into(),
            expected: "a number, numeric string, bool or null",
        }),
    }
}

fn quality(v: &JVal) -> Option<i32> {
    match v {
        JVal::I64(n) => i32::try_from(*n).ok(),
        JVal::U64(n) => i32::try_from(*n).ok(),
        JVal::F64(f) if f.fract() == 0.0 && (i32::MIN as f64..=i32::MAX as f64).contains(f) => {
            Some(*f as i32)
        }
        JVal::Str(s) => s.trim().parse().ok(),
        _ => None,
    }
}
