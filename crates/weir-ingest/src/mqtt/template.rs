//! Topic templates and MQTT payload decoding.
//!
//! A template such as `plant/{site}/{device_id}/{metric}` is matched level by
//! level against a topic (`/`-separated, like MQTT itself); `{device_id}` and
//! `{metric}` name the point, every other `{field}` becomes a label. A topic
//! with a different number of levels, or whose literal levels differ, does
//! not match: its payload must then name device and metric itself.
//!
//! Payloads: JSON and line protocol go through [`crate::decode`] with the
//! template's device id as the fallback device id; a JSON object carrying only
//! `value` (decoded as the status metric `value`) takes the template's metric
//! name. Plain numbers (`21.5`) need both `{device_id}` and `{metric}` and get
//! the receive time as their timestamp.
//!
//! The decode limits ([`crate::decode::DecodeLimits`]) cover the topic too:
//! its device id, metric and label levels are checked for length, and its
//! labels count towards labels per point and the message totals.

use std::fmt;
use std::str::FromStr;

use crate::decode::limits::{Budget, check_key, check_value, point_bytes};
use crate::decode::{DecodeError, DecodeLimits, DecodeOptions, Format, Point, decode};

/// Payload format of MQTT messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttFormat {
    /// JSON object or array (points or status objects).
    Json,
    /// InfluxDB line protocol.
    LineProtocol,
    /// A plain decimal number; device and metric come from the topic.
    Number,
    /// A number if the payload parses as one, else JSON or line protocol.
    #[default]
    Auto,
}

impl MqttFormat {
    /// The `content_type` recorded with raw rows.
    pub fn as_str(self) -> &'static str {
        match self {
            MqttFormat::Json => "json",
            MqttFormat::LineProtocol => "line_protocol",
            MqttFormat::Number => "number",
            MqttFormat::Auto => "auto",
        }
    }
}

impl fmt::Display for MqttFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MqttFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "json" => Ok(MqttFormat::Json),
            "lp" | "line_protocol" | "influx" => Ok(MqttFormat::LineProtocol),
            "number" | "plain" => Ok(MqttFormat::Number),
            "auto" => Ok(MqttFormat::Auto),
            _ => Err(format!(
                "unknown MQTT payload format `{s}` (expected json, lp, number or auto)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    Field(String),
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    levels: Vec<Level>,
}

/// What a topic told about its message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicFields {
    pub device_id: Option<String>,
    pub metric: Option<String>,
    /// Other named levels, in template order.
    pub labels: Vec<(String, String)>,
}

impl FromStr for TopicTemplate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut levels = Vec::new();
        let mut names = Vec::new();
        for level in s.split('/') {
            if let Some(name) = level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
                if name.is_empty() || name.contains(['{', '}']) {
                    return Err(format!("topic template `{s}`: bad field `{level}`"));
                }
                if names.contains(&name) {
                    return Err(format!("topic template `{s}`: `{{{name}}}` appears twice"));
                }
                names.push(name);
                levels.push(Level::Field(name.to_string()));
            } else if level.contains(['{', '}', '+', '#']) {
                return Err(format!(
                    "topic template `{s}`: a level is either literal or one whole `{{field}}`, not `{level}`"
                ));
            } else {
                levels.push(Level::Literal(level.to_string()));
            }
        }
        Ok(TopicTemplate { levels })
    }
}

impl TopicTemplate {
    /// The fields of `topic`, or `None` when it does not match the template.
    pub fn fields(&self, topic: &str) -> Option<TopicFields> {
        let mut out = TopicFields::default();
        let mut parts = topic.split('/');
        for level in &self.levels {
            let part = parts.next()?;
            match level {
                Level::Literal(l) if l == part => {}
                Level::Literal(_) => return None,
                Level::Field(_) if part.is_empty() => return None,
                Level::Field(name) => match name.as_str() {
                    "device_id" => out.device_id = Some(part.to_string()),
                    "metric" => out.metric = Some(part.to_string()),
                    _ => out.labels.push((name.clone(), part.to_string())),
                },
            }
        }
        parts.next().is_none().then_some(out)
    }
}

/// Decodes one MQTT payload into `out` (all-or-nothing); the error text is
/// the dead-letter reason.
pub fn decode_payload(
    format: MqttFormat,
    topic: &str,
    fields: Option<&TopicFields>,
    payload: &[u8],
    received_micros: i64,
    base: &DecodeOptions,
    out: &mut Vec<Point>,
) -> Result<usize, String> {
    let start = out.len();
    let result = decode_inner(format, topic, fields, payload, received_micros, base, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decode_inner(
    format: MqttFormat,
    topic: &str,
    fields: Option<&TopicFields>,
    payload: &[u8],
    received_micros: i64,
    base: &DecodeOptions,
    out: &mut Vec<Point>,
) -> Result<usize, String> {
    let start = out.len();
    if let Some(f) = fields {
        check_topic_fields(f, &base.limits).map_err(|e| e.to_string())?;
    }
    let number = match format {
        MqttFormat::Number => true,
        MqttFormat::Auto => parse_number(payload).is_some(),
        _ => false,
    };
    if number {
        out.push(number_point(topic, fields, payload, received_micros)?);
        return Ok(1);
    }
    let decoder = decoder_format(format, payload)?;
    let opts = DecodeOptions {
        default_ts_micros: Some(received_micros),
        device_id_from_key: fields.and_then(|f| f.device_id.clone()),
        ..base.clone()
    };
    let n = decode(decoder, payload, &opts, out).map_err(|e| e.to_string())?;
    if let Some(f) = fields {
        apply_topic_fields(f, &opts.limits, &mut out[start..])?;
    }
    Ok(n)
}

/// The point of a plain-number payload: device and metric from the topic
/// `fields`, the receive time as timestamp.
fn number_point(
    topic: &str,
    fields: Option<&TopicFields>,
    payload: &[u8],
    received_micros: i64,
) -> Result<Point, String> {
    let value = parse_number(payload).ok_or_else(|| {
        format!(
            "payload is not a plain number: {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(64)])
        )
    })?;
    let (Some(device_id), Some(metric)) = (
        fields.and_then(|f| f.device_id.clone()),
        fields.and_then(|f| f.metric.clone()),
    ) else {
        return Err(format!(
            "a plain-number payload needs a topic template with {{device_id}} and {{metric}} matching topic `{topic}`"
        ));
    };
    Ok(Point {
        ts_micros: received_micros,
        device_id,
        metric,
        value: Some(value),
        quality: None,
        unit: None,
        labels: fields.map(|f| f.labels.clone()).unwrap_or_default(),
    })
}

/// The decoder for a JSON or line-protocol (or auto) payload; a JSON payload
/// must look like an object or array.
fn decoder_format(format: MqttFormat, payload: &[u8]) -> Result<Format, String> {
    Ok(match format {
        MqttFormat::Json => {
            let first = payload
                .iter()
                .copied()
                .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
            if !matches!(first, Some(b'{') | Some(b'[')) && !payload.trim_ascii().is_empty() {
                return Err("payload is not a JSON object or array".into());
            }
            Format::Auto
        }
        MqttFormat::LineProtocol => Format::LineProtocol,
        _ => Format::Auto,
    })
}

/// Gives the decoded `points` the topic's metric (for the status metric
/// `value`) and labels (a point's own label of the same name wins), within
/// the labels per point and the message totals of `limits`.
fn apply_topic_fields(
    f: &TopicFields,
    limits: &DecodeLimits,
    points: &mut [Point],
) -> Result<(), String> {
    let max = limits.labels_per_point;
    for p in points.iter_mut() {
        if p.metric == "value"
            && let Some(m) = &f.metric
        {
            p.metric.clone_from(m);
        }
        for (k, v) in &f.labels {
            if !p.labels.iter().any(|(pk, _)| pk == k) {
                if p.labels.len() >= max {
                    return Err(format!(
                        "a point would carry more than the {max} labels a point may carry \
                         with the topic's labels (decode limit labels_per_point)"
                    ));
                }
                p.labels.push((k.clone(), v.clone()));
            }
        }
    }
    // The topic's labels count towards the message totals too.
    let mut budget = Budget::new(limits);
    for p in points.iter() {
        let unit = p.unit.as_ref().map_or(0, String::len);
        let bytes = point_bytes(p.device_id.len(), p.metric.len(), unit, &p.labels);
        budget
            .reserve(1, p.labels.len(), bytes)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The topic's device id, metric and labels against the decode limits
/// (a topic may be 64 KiB long).
fn check_topic_fields(f: &TopicFields, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if let Some(d) = &f.device_id {
        check_value(limits, d)?;
    }
    if let Some(m) = &f.metric {
        check_key(limits, m)?;
    }
    for (k, v) in &f.labels {
        check_key(limits, k)?;
        check_value(limits, v)?;
    }
    Ok(())
}

/// A finite number, the whole payload (surrounding whitespace allowed).
fn parse_number(payload: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(payload).ok()?.trim();
    let v: f64 = text.parse().ok()?;
    v.is_finite().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl() -> TopicTemplate {
        "plant/{site}/{device_id}/{metric}".parse().unwrap()
    }

    fn opts1024() -> DecodeOptions {
        DecodeOptions {
            max_message_bytes: 1024,
            ..DecodeOptions::default()
        }
    }

    #[test]
    fn template_maps_levels() {
        let f = tpl().fields("plant/s1/pump-7/temperature").unwrap();
        assert_eq!(f.device_id.as_deref(), Some("pump-7"));
        assert_eq!(f.metric.as_deref(), Some("temperature"));
        assert_eq!(f.labels, vec![("site".to_string(), "s1".to_string())]);
        assert!(tpl().fields("plant/s1/pump-7").is_none());
        assert!(tpl().fields("plant/s1/pump-7/t/extra").is_none());
        assert!(tpl().fields("other/s1/pump-7/t").is_none());
        assert!(tpl().fields("plant//pump-7/t").is_none());
        assert!("a/{x}y".parse::<TopicTemplate>().is_err());
        assert!("a/{x}/{x}".parse::<TopicTemplate>().is_err());
        assert!("a/+/b".parse::<TopicTemplate>().is_err());
    }

    #[test]
    fn numbers_json_and_lp_take_topic_fields() {
        let f = tpl().fields("plant/s1/d1/temp").unwrap();
        let mut out = Vec::new();
        let n = decode_payload(
            MqttFormat::Auto,
            "t",
            Some(&f),
            b" 21.5\n",
            7,
            &opts1024(),
            &mut out,
        );
        assert_eq!(n, Ok(1));
        assert_eq!(
            (out[0].device_id.as_str(), out[0].metric.as_str()),
            ("d1", "temp")
        );
        assert_eq!((out[0].value, out[0].ts_micros), (Some(21.5), 7));
        out.clear();
        let json = br#"{"value": 3, "ts": 1700000000000}"#;
        decode_payload(
            MqttFormat::Json,
            "t",
            Some(&f),
            json,
            7,
            &opts1024(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0].metric, "temp");
        assert_eq!(out[0].device_id, "d1");
        assert_eq!(out[0].ts_micros, 1_700_000_000_000_000);
        assert_eq!(out[0].labels, vec![("site".into(), "s1".into())]);
        out.clear();
        let lp = b"env,device_id=d9 humidity=40 1700000000000000000";
        decode_payload(
            MqttFormat::LineProtocol,
            "t",
            Some(&f),
            lp,
            7,
            &opts1024(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0].device_id, "d9", "the payload's own device id wins");
        assert_eq!(out[0].metric, "env.humidity");
    }

    #[test]
    fn bad_payloads_give_reasons() {
        let f = tpl().fields("plant/s1/d1/temp").unwrap();
        let mut out = Vec::new();
        let e = decode_payload(
            MqttFormat::Number,
            "t",
            Some(&f),
            b"abc",
            0,
            &opts1024(),
            &mut out,
        );
        assert!(e.unwrap_err().contains("not a plain number"));
        let e = decode_payload(
            MqttFormat::Number,
            "x/y",
            None,
            b"1",
            0,
            &opts1024(),
            &mut out,
        );
        assert!(e.unwrap_err().contains("topic template"));
        let e = decode_payload(
            MqttFormat::Json,
            "t",
            Some(&f),
            b"1,2",
            0,
            &opts1024(),
            &mut out,
        );
        assert!(e.unwrap_err().contains("not a JSON"));
        let e = decode_payload(
            MqttFormat::Json,
            "t",
            Some(&f),
            b"{\"v\":",
            0,
            &opts1024(),
            &mut out,
        );
        assert!(e.unwrap_err().contains("invalid JSON"));
        let e = decode_payload(
            MqttFormat::Auto,
            "t",
            Some(&f),
            b"NaN",
            0,
            &opts1024(),
            &mut out,
        );
        assert!(e.is_err(), "NaN is not a number and not line protocol");
        assert!(out.is_empty());
    }

    #[test]
    fn topic_labels_count_towards_the_limits() {
        let f = tpl().fields("plant/s1/d1/temp").unwrap();
        let tight = DecodeOptions {
            limits: DecodeLimits {
                labels_per_point: 1,
                ..DecodeLimits::default()
            },
            ..DecodeOptions::default()
        };
        let mut out = Vec::new();
        let json = br#"{"value": 3, "mode": "run"}"#;
        let e = decode_payload(MqttFormat::Json, "t", Some(&f), json, 7, &tight, &mut out);
        assert!(e.unwrap_err().contains("decode limit labels_per_point"));
        assert!(out.is_empty(), "nothing of a rejected message is kept");
        let long = TopicFields {
            device_id: Some("d".repeat(5000)),
            ..f.clone()
        };
        let e = decode_payload(
            MqttFormat::Number,
            "t",
            Some(&long),
            b"1",
            7,
            &tight,
            &mut out,
        );
        assert!(e.unwrap_err().contains("decode limit value_bytes"));
        assert!(out.is_empty());
    }
}
