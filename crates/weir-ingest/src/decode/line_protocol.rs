//! InfluxDB line protocol decoder.
//!
//! ```text
//! device_data,device_id=PLC-01,tag_name=temperature,unit=°C,location=A1 value=25.6,raw_value=256,quality=1i,error_code=0i 1642780800000000000
//! ```
//!
//! # Syntax
//!
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, one
//! point-set per line. Blank lines and lines starting with `#` are ignored;
//! `\r\n` line ends are accepted. In the measurement, tag keys, tag values
//! and field keys, `\,` `\=` and `\ ` stand for `,` `=` and a space (any other
//! backslash is literal). Field values are floats (`25.6`, `-1e3`),
//! integers (`1i`), unsigned integers (`1u`), booleans (`t` `T` `true`
//! `True` `TRUE` and `f` `F` `false` `False` `FALSE`) or double-quoted
//! strings (`\"` and `\\` escapes; a string cannot span lines). The
//! timestamp is an integer whose unit is detected by magnitude (nanoseconds
//! for any date after 1973, see [`super::timestamp`]); without one the
//! message's default timestamp applies. Any malformed line fails the whole
//! message with `LineProtocol { line, message }` (lines numbered from 1).
//!
//! # Mapping to points
//!
//! * **device id**: the first of the tags `device_id`, `deviceId`, `id`,
//!   `host`; else [`DecodeOptions::device_id_from_key`]; else the
//!   measurement name.
//! * **base metric name**: the tag `tag_name` (or `metric`, `metric_name`)
//!   if present, else the measurement name.
//! * the field `value` becomes the point `<base>` and gets the `unit` tag as
//!   its unit;
//! * every other numeric or boolean field `f` becomes its own point
//!   `<base>.<f>` without unit (`temperature.raw_value`,
//!   `system_metrics.cpu_usage`); booleans are 1.0 / 0.0;
//! * the field `quality` is not a point: it must be an integer (or an
//!   integral float) in the 32-bit range and sets the quality of every point
//!   of the line;
//! * string fields become labels (`message="Temperature too high"`);
//! * all tags other than the ones used for device id, metric name and unit
//!   become labels on every point of the line (the measurement name itself is
//!   not kept when a metric tag is used).
//!
//! # Duplicate keys and limits
//!
//! A tag key or field key repeated in one line keeps its **last** value
//! (`m x=1,x=2` is one point `m.x` = 2; `m,id=a,id=b v=1` has device `b`); a
//! string field named like a tag replaces that tag's label. Fields per line
//! (tags + fields), key and value lengths, labels per point and the message
//! totals are checked against [`DecodeLimits`](super::DecodeLimits) before
//! the line's points are built.

use std::borrow::Cow;

use super::labels::{LabelSet, Labels, dedupe_last_wins};
use super::limits::{
    self, Budget, DecodeLimits, POINT_OVERHEAD, check_fields, check_key, check_value,
};
use super::{DecodeError, DecodeOptions, Point, default_ts, key_device_id, timestamp};

const DEVICE_TAGS: [&str; 4] = ["device_id", "deviceId", "id", "host"];
const METRIC_TAGS: [&str; 3] = ["tag_name", "metric", "metric_name"];

#[derive(Debug, Clone, PartialEq)]
enum FieldVal<'a> {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Str(Cow<'a, str>),
}

/// One parsed line; the vectors are reused from line to line.
#[derive(Default)]
struct Line<'a> {
    measurement: Cow<'a, str>,
    tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    fields: Vec<(Cow<'a, str>, FieldVal<'a>)>,
    /// Already normalised to microseconds.
    ts: Option<i64>,
}

impl Line<'_> {
    /// Merges repeated tag keys and field keys: the last value wins.
    fn dedupe(&mut self) {
        if self.tags.len() > 1 {
            self.tags = dedupe_last_wins(std::mem::take(&mut self.tags));
        }
        if self.fields.len() > 1 {
            self.fields = dedupe_last_wins(std::mem::take(&mut self.fields));
        }
    }
}

/// Decodes every line of `text` into `out`.
pub(crate) fn decode_lines(
    text: &str,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let mut line = Line::default();
    for (i, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let err = |message| DecodeError::LineProtocol {
            line: i + 1,
            message,
        };
        parse_line(raw, &mut line).map_err(err)?;
        emit(&line, opts, budget, out).map_err(|e| match e {
            Emit::Line(message) => err(message),
            Emit::Decode(e) => e,
        })?;
    }
    Ok(())
}

enum Emit {
    Line(String),
    Decode(DecodeError),
}

/// Turns one parsed line into points in `out`, within the limits and the
/// message's budget.
fn emit(
    line: &Line,
    opts: &DecodeOptions,
    budget: &mut Budget,
    out: &mut Vec<Point>,
) -> Result<(), Emit> {
    let limits = budget.limits();
    let head = Head::of(line, opts, limits)?;

    // Count first: labels and metric names are borrowed from the line; the
    // points are built once the message totals fit.
    let tally = head.tally(line, limits)?;
    let labels = tally.labels.finish();
    let points = tally.points;
    let bytes =
        points * (POINT_OVERHEAD + head.device_id.len() + labels.bytes) + tally.metric_bytes;
    budget
        .reserve(points, labels.len(), bytes)
        .map_err(Emit::Decode)?;
    check_fields(limits, line.tags.len() + line.fields.len(), "a line").map_err(Emit::Decode)?;

    out.reserve(points);
    head.push_points(line, tally.quality, &labels, out);
    Ok(())
}

/// A tag of a line, key and value.
type TagKv<'l> = (Cow<'l, str>, Cow<'l, str>);

/// What a line's tags (or the defaults) give every point of the line.
struct Head<'l> {
    /// The tag naming the device, if any (not a label).
    device_tag: Option<&'l TagKv<'l>>,
    /// The tag naming the metric, if any (not a label).
    metric_tag: Option<&'l TagKv<'l>>,
    device_id: &'l str,
    /// The base metric name.
    base: &'l str,
    unit: Option<&'l str>,
    ts: i64,
}

/// The counting pass over a line: its labels, its quality and the number
/// and metric-name bytes of its points.
struct Tally<'l> {
    labels: LabelSet<'l>,
    quality: Option<i32>,
    points: usize,
    metric_bytes: usize,
}

impl<'l> Head<'l> {
    /// Finds the device, metric and unit tags and the timestamp of `line`
    /// and checks their lengths.
    #[inline]
    fn of(
        line: &'l Line<'l>,
        opts: &'l DecodeOptions,
        limits: &DecodeLimits,
    ) -> Result<Self, Emit> {
        let tag = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| line.tags.iter().find(|(k, _)| k == n))
        };
        let device_tag = tag(&DEVICE_TAGS);
        let metric_tag = tag(&METRIC_TAGS);
        let unit = tag(&["unit"]).map(|(_, v)| v.as_ref());
        let device_id = match device_tag {
            Some((_, v)) => v.as_ref(),
            None => key_device_id(opts).unwrap_or(&line.measurement),
        };
        let base = metric_tag.map_or(line.measurement.as_ref(), |(_, v)| v.as_ref());
        let ts = match line.ts {
            Some(ts) => ts,
            None => default_ts(opts).map_err(Emit::Decode)?,
        };
        check_value(limits, device_id).map_err(Emit::Decode)?;
        check_key(limits, base).map_err(Emit::Decode)?;
        if let Some(unit) = unit {
            check_value(limits, unit).map_err(Emit::Decode)?;
        }
        Ok(Head {
            device_tag,
            metric_tag,
            device_id,
            base,
            unit,
            ts,
        })
    }

    /// Counts the points of `line` and gathers its labels (the tags not used
    /// for device, metric or unit, and the string fields) and its quality,
    /// checking key and value lengths.
    #[inline]
    fn tally(&self, line: &'l Line<'l>, limits: &DecodeLimits) -> Result<Tally<'l>, Emit> {
        let mut tally = Tally {
            labels: LabelSet::default(),
            quality: None,
            points: 0,
            metric_bytes: 0,
        };
        for (k, v) in &line.tags {
            let used = self.device_tag.is_some_and(|(dk, _)| dk == k)
                || self.metric_tag.is_some_and(|(mk, _)| mk == k)
                || k == "unit";
            if !used {
                tally
                    .labels
                    .push(limits, Cow::Borrowed(k), Cow::Borrowed(v))
                    .map_err(Emit::Decode)?;
            }
        }
        let base = self.base;
        for (k, v) in &line.fields {
            match (k.as_ref(), v) {
                (_, FieldVal::Str(s)) => tally
                    .labels
                    .push(limits, Cow::Borrowed(k), Cow::Borrowed(s))
                    .map_err(Emit::Decode)?,
                ("quality", v) => tally.quality = Some(quality(v)?),
                ("value", _) => {
                    tally.points += 1;
                    tally.metric_bytes += base.len() + self.unit.map_or(0, str::len);
                }
                _ => {
                    let len = base.len() + 1 + k.len();
                    if len > limits.key_bytes {
                        let shown = format!("{base}.{k}");
                        let e = limits::too_long("key", &shown, len, limits.key_bytes, "key_bytes");
                        return Err(Emit::Decode(e));
                    }
                    tally.points += 1;
                    tally.metric_bytes += len;
                }
            }
        }
        Ok(tally)
    }

    /// Builds the points of `line`: one per numeric or boolean field other
    /// than `quality`.
    #[inline]
    fn push_points(
        &self,
        line: &Line,
        quality: Option<i32>,
        labels: &Labels,
        out: &mut Vec<Point>,
    ) {
        let base = self.base;
        for (k, v) in &line.fields {
            let value = match *v {
                FieldVal::Float(f) => f,
                FieldVal::Int(n) => n as f64,
                FieldVal::UInt(n) => n as f64,
                FieldVal::Bool(b) => f64::from(u8::from(b)),
                FieldVal::Str(_) => continue,
            };
            if k == "quality" {
                continue;
            }
            let (metric, unit) = if k == "value" {
                (base.to_owned(), self.unit.map(str::to_owned))
            } else {
                (format!("{base}.{k}"), None)
            };
            out.push(Point {
                ts_micros: self.ts,
                device_id: self.device_id.to_owned(),
                metric,
                value: Some(value),
                quality,
                unit,
                labels: labels.to_vec(),
            });
        }
    }
}

/// The value of the field `quality`: an integer, or an integral float, in
/// the 32-bit range.
#[inline]
fn quality(v: &FieldVal) -> Result<i32, Emit> {
    let q = match *v {
        FieldVal::Int(n) => i32::try_from(n).ok(),
        FieldVal::UInt(n) => i32::try_from(n).ok(),
        FieldVal::Float(f) if f.fract() == 0.0 && f.abs() <= i32::MAX as f64 => Some(f as i32),
        _ => None,
    };
    q.ok_or_else(|| Emit::Line("field `quality` must be an integer in the 32-bit range".into()))
}

/// Parses one non-empty, non-comment line into `line`.
fn parse_line<'a>(s: &'a str, line: &mut Line<'a>) -> Result<(), String> {
    line.tags.clear();
    line.fields.clear();
    line.ts = None;
    let b = s.as_bytes();
    let mut pos = 0;

    let (measurement, mut stop) = scan_ident(s, &mut pos, b", ");
    if measurement.is_empty() {
        return Err("missing measurement name".into());
    }
    line.measurement = measurement;
    while stop == Some(b',') {
        let (key, st) = scan_ident(s, &mut pos, b"=, ");
        if key.is_empty() {
            return Err("empty tag key".into());
        }
        if st != Some(b'=') {
            return Err(format!("tag `{key}` has no `=value`"));
        }
        let (value, st) = scan_ident(s, &mut pos, b", ");
        if value.is_empty() {
            return Err(format!("tag `{key}` has an empty value"));
        }
        line.tags.push((key, value));
        stop = st;
    }
    skip_spaces(b, &mut pos);
    if pos >= b.len() {
        return Err(
            "missing fields (expected `measurement[,tag=value] field=value [timestamp]`)".into(),
        );
    }

    loop {
        let (key, st) = scan_ident(s, &mut pos, b"=, ");
        if key.is_empty() {
            return Err("empty field key".into());
        }
        if st != Some(b'=') {
            return Err(format!("field `{key}` has no `=value`"));
        }
        let value = parse_field_value(s, &mut pos, &key)?;
        line.fields.push((key, value));
        match b.get(pos) {
            Some(b',') => pos += 1,
            Some(_) => break, // a space
            None => {
                line.dedupe();
                return Ok(());
            }
        }
    }
    line.dedupe();

    skip_spaces(b, &mut pos);
    if pos >= b.len() {
        return Ok(());
    }
    let start = pos;
    while pos < b.len() && b[pos] != b' ' {
        pos += 1;
    }
    let token = &s[start..pos];
    skip_spaces(b, &mut pos);
    if pos < b.len() {
        return Err(format!(
            "unexpected text `{}` after the timestamp",
            &s[pos..]
        ));
    }
    let ts = match token.parse::<i64>() {
        Ok(v) => v,
        Err(_) if token.bytes().all(|c| c.is_ascii_digit()) => {
            return Err(format!("bad timestamp: `{token}` is out of range"));
        }
        Err(_) => return Err(format!("invalid timestamp `{token}`")),
    };
    line.ts = Some(timestamp::from_i64(ts).map_err(|e| format!("bad timestamp: {e}"))?);
    Ok(())
}

fn skip_spaces(b: &[u8], pos: &mut usize) {
    while *pos < b.len() && b[*pos] == b' ' {
        *pos += 1;
    }
}

/// Scans up to (and past) the first unescaped byte of `stops`, returning the
/// unescaped text and the stop byte (`None` at the end of the line).
fn scan_ident<'a>(s: &'a str, pos: &mut usize, stops: &[u8]) -> (Cow<'a, str>, Option<u8>) {
    let b = s.as_bytes();
    let start = *pos;
    let mut escaped = false;
    let mut i = start;
    let stop = loop {
        let Some(&c) = b.get(i) else { break None };
        if c == b'\\' && matches!(b.get(i + 1), Some(b',' | b'=' | b' ')) {
            escaped = true;
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            break Some(c);
        }
        i += 1;
    };
    let raw = &s[start..i];
    *pos = if stop.is_some() { i + 1 } else { i };
    let text = if escaped {
        Cow::Owned(
            raw.replace("\\,", ",")
                .replace("\\=", "=")
                .replace("\\ ", " "),
        )
    } else {
        Cow::Borrowed(raw)
    };
    (text, stop)
}

/// Parses a field value at `pos`, leaving `pos` on the following `,`, space
/// or end of line.
fn parse_field_value<'a>(s: &'a str, pos: &mut usize, key: &str) -> Result<FieldVal<'a>, String> {
    let b = s.as_bytes();
    if b.get(*pos) == Some(&b'"') {
        let start = *pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            match b.get(i) {
                None => return Err(format!("unterminated string in field `{key}`")),
                Some(b'\\') if matches!(b.get(i + 1), Some(b'"' | b'\\')) => {
                    escaped = true;
                    i += 2;
                }
                Some(b'"') => break,
                Some(_) => i += 1,
            }
        }
        let raw = &s[start..i];
        *pos = i + 1;
        if !matches!(b.get(*pos), None | Some(b',' | b' ')) {
            return Err(format!(
                "unexpected character after the string of field `{key}`"
            ));
        }
        let text = if escaped {
            Cow::Owned(unescape_string(raw))
        } else {
            Cow::Borrowed(raw)
        };
        return Ok(FieldVal::Str(text));
    }
    let start = *pos;
    while *pos < b.len() && !matches!(b[*pos], b',' | b' ') {
        *pos += 1;
    }
    let t = &s[start..*pos];
    if t.is_empty() {
        return Err(format!("field `{key}` has no value"));
    }
    if let Some(n) = t.strip_suffix('i') {
        return n
            .parse()
            .map(FieldVal::Int)
            .map_err(|_| format!("invalid integer `{t}` in field `{key}`"));
    }
    if let Some(n) = t.strip_suffix('u') {
        return n
            .parse()
            .map(FieldVal::UInt)
            .map_err(|_| format!("invalid unsigned integer `{t}` in field `{key}`"));
    }
    match t {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldVal::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldVal::Bool(false)),
        _ => {}
    }
    let numeric = t
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'));
    match t.parse::<f64>() {
        Ok(f) if numeric && f.is_finite() => Ok(FieldVal::Float(f)),
        Ok(_) if numeric => Err(format!("field `{key}` is not a finite number (`{t}`)")),
        _ => Err(format!("invalid value `{t}` in field `{key}`")),
    }
}

fn unescape_string(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.clone().next() {
                Some(n @ ('"' | '\\')) => {
                    out.push(n);
                    chars.next();
                }
                _ => out.push(c),
            }
        } else {
            out.push(c);
        }
    }
    out
}
