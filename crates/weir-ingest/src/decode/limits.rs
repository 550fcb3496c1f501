//! Per-message decode limits: what one message may cost before it is turned
//! into points.
//!
//! A payload is at most [`DecodeOptions::max_message_bytes`](super::DecodeOptions)
//! long, but its *decoded* size is not bounded by that alone: a JSON status
//! object copies every string field as a label onto every numeric field's
//! point, so 42,000 strings × 42,000 numbers (944 KB) would build 1.8e9
//! labels. The decoders therefore count first — labels per point, points,
//! the total labels (points × labels) and the bytes the points would occupy —
//! and only then build. A message over a limit is never decoded partially: it
//! becomes a dead letter whose reason names the limit and its value.
//!
//! The defaults are generous for real devices (a status object with a few
//! hundred metrics and a dozen labels, a line-protocol batch of tens of
//! thousands of lines) and keep the worst case of one 1 MiB message to about
//! 64 MiB of decoded points and 10^6 label copies (≈ 0.1 s of work).

use super::DecodeError;

/// Limits on what one message may decode to (see the module docs).
/// Every limit is also a `weir` flag / `WEIR_DECODE_*` variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Labels one point may carry (after duplicate keys are merged).
    /// Default 64: device metadata (site, line, status, firmware, ...) rarely
    /// needs more, and label maps are stored with every row.
    pub labels_per_point: usize,
    /// Points one message may produce. Default 100,000 (a 1 MiB message of
    /// short line-protocol lines yields ~70,000).
    pub points_per_message: usize,
    /// Labels summed over all points of a message (points × labels, the
    /// work the message causes). Default 1,000,000.
    pub labels_per_message: usize,
    /// Fields of one JSON object (nested members included) or one
    /// line-protocol line (tags and fields). Default 10,000.
    pub fields_per_object: usize,
    /// Nesting depth of JSON (objects and arrays; a top-level object is
    /// depth 1). Default 32 (serde_json itself stops at 128).
    pub depth: usize,
    /// Bytes of a metric name (after flattening nested keys) or label key.
    /// Default 256.
    pub key_bytes: usize,
    /// Bytes of a label value, device id or unit. Default 4,096.
    pub value_bytes: usize,
    /// Approximate heap bytes of the decoded points of one message
    /// ([`point_bytes`]). Default 64 MiB.
    pub decoded_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            labels_per_point: 64,
            points_per_message: 100_000,
            labels_per_message: 1_000_000,
            fields_per_object: 10_000,
            depth: 32,
            key_bytes: 256,
            value_bytes: 4096,
            decoded_bytes: 64 << 20,
        }
    }
}

/// Fixed per-point cost counted by [`point_bytes`] (the `Point` struct).
pub const POINT_OVERHEAD: usize = std::mem::size_of::<super::Point>();
/// Fixed per-label cost counted by [`point_bytes`] (two `String`s).
pub const LABEL_OVERHEAD: usize = 2 * std::mem::size_of::<String>();

/// The approximate heap footprint of one point: its struct, strings and
/// labels.
pub fn point_bytes(
    device_id: usize,
    metric: usize,
    unit: usize,
    labels: &[(String, String)],
) -> usize {
    let labels: usize = labels
        .iter()
        .map(|(k, v)| LABEL_OVERHEAD + k.len() + v.len())
        .sum();
    POINT_OVERHEAD + device_id + metric + unit + labels
}

/// The error for `what` over the limit `name` = `value`.
pub(crate) fn exceeded(what: String, name: &'static str, value: usize) -> DecodeError {
    DecodeError::Limit {
        what,
        limit: name,
        value,
    }
}

/// Checks one key (metric name or label key) against `key_bytes`.
pub(crate) fn check_key(limits: &DecodeLimits, key: &str) -> Result<(), DecodeError> {
    check_len(key, "key", limits.key_bytes, "key_bytes")
}

/// Checks one value (label value, device id, unit) against `value_bytes`.
pub(crate) fn check_value(limits: &DecodeLimits, value: &str) -> Result<(), DecodeError> {
    check_len(value, "value", limits.value_bytes, "value_bytes")
}

fn check_len(s: &str, kind: &str, max: usize, name: &'static str) -> Result<(), DecodeError> {
    if s.len() <= max {
        return Ok(());
    }
    Err(too_long(kind, s, s.len(), max, name))
}

/// The error for a `kind` (key, value) of `len` bytes, shown by its first
/// 32 bytes.
pub(crate) fn too_long(
    kind: &str,
    text: &str,
    len: usize,
    max: usize,
    name: &'static str,
) -> DecodeError {
    let mut end = 32.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    exceeded(
        format!(
            "{kind} `{}…` has {len} bytes: more than the {max} bytes a {kind} may have",
            &text[..end]
        ),
        name,
        max,
    )
}

/// The running totals of one message, checked *before* points are built.
#[derive(Debug)]
pub(crate) struct Budget<'l> {
    limits: &'l DecodeLimits,
    points: usize,
    labels: usize,
    bytes: usize,
}

impl<'l> Budget<'l> {
    pub(crate) fn new(limits: &'l DecodeLimits) -> Self {
        Budget {
            limits,
            points: 0,
            labels: 0,
            bytes: 0,
        }
    }

    pub(crate) fn limits(&self) -> &'l DecodeLimits {
        self.limits
    }

    /// Reserves `points` points of `labels` labels and `bytes` bytes each;
    /// fails (reserving nothing) when a message total would go over a limit.
    pub(crate) fn reserve(
        &mut self,
        points: usize,
        labels: usize,
        bytes: usize,
    ) -> Result<(), DecodeError> {
        let l = self.limits;
        if labels > l.labels_per_point {
            return Err(exceeded(
                format!(
                    "a point would carry {labels} labels: more than the {} labels a point may carry",
                    l.labels_per_point
                ),
                "labels_per_point",
                l.labels_per_point,
            ));
        }
        let total_points = self.points.saturating_add(points);
        if total_points > l.points_per_message {
            return Err(exceeded(
                format!(
                    "message has more than {} points (at least {total_points})",
                    l.points_per_message
                ),
                "points_per_message",
                l.points_per_message,
            ));
        }
        let total_labels = self.labels.saturating_add(points.saturating_mul(labels));
        if total_labels > l.labels_per_message {
            return Err(exceeded(
                format!(
                    "message would copy {total_labels} labels onto its points (points × labels): \
                     more than the {} a message may cause",
                    l.labels_per_message
                ),
                "labels_per_message",
                l.labels_per_message,
            ));
        }
        let total_bytes = self.bytes.saturating_add(points.saturating_mul(bytes));
        if total_bytes > l.decoded_bytes {
            return Err(exceeded(
                format!(
                    "message would decode to about {} MiB of points: more than the {} MiB a message may decode to",
                    total_bytes >> 20,
                    l.decoded_bytes >> 20
                ),
                "decoded_bytes",
                l.decoded_bytes,
            ));
        }
        self.points = total_points;
        self.labels = total_labels;
        self.bytes = total_bytes;
        Ok(())
    }
}

/// Checks the count of fields of one object or line against `fields_per_object`.
pub(crate) fn check_fields(
    limits: &DecodeLimits,
    fields: usize,
    what: &str,
) -> Result<(), DecodeError> {
    if fields <= limits.fields_per_object {
        return Ok(());
    }
    Err(exceeded(
        format!(
            "{what} has {fields} fields: more than the {} fields it may have",
            limits.fields_per_object
        ),
        "fields_per_object",
        limits.fields_per_object,
    ))
}

/// Checks that decoded `points` respect `limits` (used by tests and the
/// fuzz harness to assert what the decoders promise).
pub fn verify(points: &[super::Point], limits: &DecodeLimits) -> Result<(), String> {
    if points.len() > limits.points_per_message {
        return Err(format!("{} points", points.len()));
    }
    let mut labels = 0usize;
    let mut bytes = 0usize;
    for p in points {
        if p.labels.len() > limits.labels_per_point {
            return Err(format!("a point has {} labels", p.labels.len()));
        }
        for (i, (k, v)) in p.labels.iter().enumerate() {
            if k.len() > limits.key_bytes || v.len() > limits.value_bytes {
                return Err(format!("label `{k}` is too long"));
            }
            if p.labels[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(format!("label `{k}` appears twice"));
            }
        }
        if p.metric.len() > limits.key_bytes || p.device_id.len() > limits.value_bytes {
            return Err(format!(
                "metric `{}` or its device id is too long",
                p.metric
            ));
        }
        if p.device_id.is_empty() || p.metric.is_empty() {
            return Err("empty device id or metric".into());
        }
        if p.value.is_some_and(|v| !v.is_finite()) {
            return Err(format!("metric `{}` is not finite", p.metric));
        }
        labels += p.labels.len();
        bytes += point_bytes(
            p.device_id.len(),
            p.metric.len(),
            p.unit.as_ref().map_or(0, String::len),
            &p.labels,
        );
    }
    if labels > limits.labels_per_message {
        return Err(format!("{labels} labels in the message"));
    }
    if bytes > limits.decoded_bytes {
        return Err(format!("{bytes} decoded bytes"));
    }
    Ok(())
}
