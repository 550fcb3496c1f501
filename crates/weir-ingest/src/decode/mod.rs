//! Message decoders: one payload (Kafka record value, MQTT message, ...) in,
//! zero or more canonical Silver points out — or a [`DecodeError`] whose
//! `Display` text is the reason stored in the dead-letter table.
//!
//! # Contract
//!
//! * [`decode`] is **all-or-nothing per message**: on error nothing is
//!   appended to `out`, so one bad line or array element dead-letters the
//!   whole message and never produces a partial write.
//! * Before parsing, a payload larger than [`DecodeOptions::max_message_bytes`]
//!   is rejected ([`DecodeError::TooLarge`]), it must be UTF-8
//!   ([`DecodeError::InvalidUtf8`]), a leading UTF-8 byte-order mark is
//!   skipped, and an empty or whitespace-only payload is
//!   [`DecodeError::Empty`].
//! * Every point has a non-empty `device_id` and `metric`, a finite value
//!   (or no value), and a UTC timestamp in microseconds.
//! * What a message may decode to is bounded by [`DecodeLimits`] (labels per
//!   point, points, points × labels, fields, nesting, key and value lengths,
//!   decoded bytes); the decoders count before they build, and a message over
//!   a limit is a [`DecodeError::Limit`] naming the limit.
//! * Duplicate keys: the **last** occurrence wins (like serde_json maps), at
//!   the position of the first — JSON object members, line-protocol tags and
//!   fields, labels, and status metrics whose flattened names collide.
//!
//! # Formats
//!
//! * [`Format::JsonStatus`] — one object carrying several metrics of one
//!   device; see [`json`] for the mapping.
//! * [`Format::JsonPoints`] — one object per point; see [`json`].
//! * [`Format::LineProtocol`] — InfluxDB line protocol; see [`line_protocol`].
//! * [`Format::Auto`] — sniffs the first non-whitespace character: `{` or `[`
//!   means JSON, anything else line protocol. Each JSON object is then decoded
//!   as a point if it has a `metric_name` or `metric` key *and* a `value` key,
//!   otherwise as a status message (so one array may mix both shapes).
//!
//! # Device id and timestamp (all formats)
//!
//! The device id comes from the payload (keys/tags `device_id`, `deviceId`,
//! `id`, and in line protocol also `host`, in that priority); when the payload
//! has none, [`DecodeOptions::device_id_from_key`] (e.g. the Kafka key) is
//! used. Timestamp rules are in [`timestamp`]; a message without a timestamp
//! gets [`DecodeOptions::default_ts_micros`] (the receive time), or fails with
//! `MissingField("timestamp")` when that is `None`.

pub mod batch;
pub mod json;
mod labels;
pub mod limits;
pub mod line_protocol;
pub mod timestamp;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

pub use batch::{PointBatchBuilder, silver_schema};
pub use limits::DecodeLimits;

/// The payload format of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON object (or array of objects) with several metrics per object.
    JsonStatus,
    /// JSON object (or array of objects) with one point per object.
    JsonPoints,
    /// InfluxDB line protocol, one or more lines per message.
    LineProtocol,
    /// Sniff per message: JSON (points or status per object) or line protocol.
    #[default]
    Auto,
}

impl Format {
    /// The configuration spelling of this format.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::JsonStatus => "json_status",
            Format::JsonPoints => "json_points",
            Format::LineProtocol => "line_protocol",
            Format::Auto => "auto",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    /// Accepts `json_status`, `json_points`, `line_protocol` (alias `influx`)
    /// and `auto`, case-insensitively, with `-` or `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "json_status" | "status" => Ok(Format::JsonStatus),
            "json_points" | "json_point" | "points" => Ok(Format::JsonPoints),
            "line_protocol" | "influx" | "lp" => Ok(Format::LineProtocol),
            "auto" => Ok(Format::Auto),
            _ => Err(format!(
                "unknown message format `{s}` (expected json_status, json_points, line_protocol or auto)"
            )),
        }
    }
}

/// One canonical Silver point (a row of `silver.points` minus `source`).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// UTC microseconds since the Unix epoch.
    pub ts_micros: i64,
    pub device_id: String,
    pub metric: String,
    /// `None` for an explicit null reading; never NaN or infinite.
    pub value: Option<f64>,
    /// 0 = good; `None` when the message does not say.
    pub quality: Option<i32>,
    pub unit: Option<String>,
    /// Unique keys, in first-seen order (a later duplicate replaces the value).
    pub labels: Vec<(String, String)>,
}

/// Per-source decoding options.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Larger payloads are rejected before parsing. Default 1 MiB.
    pub max_message_bytes: usize,
    /// Timestamp for messages that carry none (normally the receive time);
    /// `None` makes a missing timestamp an error.
    pub default_ts_micros: Option<i64>,
    /// Device id for messages that carry none (e.g. the Kafka record key).
    pub device_id_from_key: Option<String>,
    /// What one message may decode to.
    pub limits: DecodeLimits,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_message_bytes: 1 << 20,
            default_ts_micros: None,
            device_id_from_key: None,
            limits: DecodeLimits::default(),
        }
    }
}

/// Why a message could not be decoded. `Display` is the dead-letter reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum DecodeError {
    #[error("message too large: {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("payload is not valid UTF-8")]
    InvalidUtf8,
    #[error("empty message")]
    Empty,
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    #[error("field `{0}` is empty")]
    EmptyField(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("field `{field}` is not a finite number")]
    NotFinite { field: String },
    #[error("bad timestamp: {0}")]
    BadTimestamp(String),
    #[error("line protocol error on line {line}: {message}")]
    LineProtocol { line: usize, message: String },
    /// A message over one of the [`DecodeLimits`]; `limit` is the field name.
    #[error("{what} (decode limit {limit})")]
    Limit {
        what: String,
        limit: &'static str,
        value: usize,
    },
}

/// Decodes one message payload, appending its points to `out`.
///
/// Returns the number of points appended. On error `out` is left exactly as
/// it was (all-or-nothing per message).
pub fn decode(
    format: Format,
    payload: &[u8],
    opts: &DecodeOptions,
    out: &mut Vec<Point>,
) -> Result<usize, DecodeError> {
    let start = out.len();
    let result = decode_inner(format, payload, opts, out);
    match result {
        Ok(()) => Ok(out.len() - start),
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

fn decode_inner(
    format: Format,
    payload: &[u8],
    opts: &DecodeOptions,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    if payload.len() > opts.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            limit: opts.max_message_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|_| DecodeError::InvalidUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().as_bytes().first().copied();
    let Some(first) = first else {
        return Err(DecodeError::Empty);
    };
    let mut budget = limits::Budget::new(&opts.limits);
    let b = &mut budget;
    match format {
        Format::JsonStatus => json::decode_json(text, json::JsonMode::Status, opts, b, out),
        Format::JsonPoints => json::decode_json(text, json::JsonMode::Points, opts, b, out),
        Format::LineProtocol => line_protocol::decode_lines(text, opts, b, out),
        Format::Auto if first == b'{' || first == b'[' => {
            json::decode_json(text, json::JsonMode::Auto, opts, b, out)
        }
        Format::Auto => line_protocol::decode_lines(text, opts, b, out),
    }
}

/// The timestamp of a message that has none, or the matching error.
pub(crate) fn default_ts(opts: &DecodeOptions) -> Result<i64, DecodeError> {
    opts.default_ts_micros
        .ok_or(DecodeError::MissingField("timestamp"))
}

/// The device id of a message whose payload has none.
pub(crate) fn key_device_id(opts: &DecodeOptions) -> Option<&str> {
    opts.device_id_from_key.as_deref().filter(|k| !k.is_empty())
}
