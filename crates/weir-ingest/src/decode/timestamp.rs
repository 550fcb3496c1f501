//! Timestamp normalisation: every accepted spelling becomes UTC microseconds
//! since the Unix epoch.
//!
//! * **Numbers** (integers, and floats with a fraction) carry their unit in
//!   their magnitude `v`:
//!
//!   | range                  | unit          | covers dates           |
//!   |------------------------|---------------|------------------------|
//!   | `0 <= v < 1e11`        | seconds       | 1970 .. year 5138      |
//!   | `1e11 <= v < 1e14`     | milliseconds  | 1973 .. year 5138      |
//!   | `1e14 <= v < 1e17`     | microseconds  | 1973 .. year 5138      |
//!   | `v >= 1e17`            | nanoseconds   | 1973 .. year 2262      |
//!
//!   So every real-world "now" is recognised whatever the unit (line protocol
//!   nanoseconds included). Fractions below a microsecond are rounded to the
//!   nearest microsecond for floats and truncated for integer nanoseconds.
//! * **Strings** holding a number (`"1642780800000"`, `"1642780800.5"`) follow
//!   the number rules; any other string must be RFC 3339
//!   (`2026-01-21T10:00:00Z`, `2026-01-21 18:00:00.123+08:00`, ...), and an
//!   offset is converted to UTC. A date-time *without* an offset is rejected
//!   rather than guessed.
//! * Negative values (instants before 1970), non-finite floats and values
//!   beyond the representable range are rejected.
//!
//! The functions return the reason text; callers wrap it in
//! [`DecodeError::BadTimestamp`](super::DecodeError::BadTimestamp) or a line
//! protocol error.

use chrono::{DateTime, NaiveDateTime};

const SECONDS_BELOW: i64 = 100_000_000_000; // 1e11
const MILLIS_BELOW: i64 = 100_000_000_000_000; // 1e14
const MICROS_BELOW: i64 = 100_000_000_000_000_000; // 1e17

/// An integer timestamp in s / ms / µs / ns (by magnitude) to µs.
pub fn from_i64(v: i64) -> Result<i64, String> {
    if v < 0 {
        Err(format!("{v} is negative (before 1970)"))
    } else if v < SECONDS_BELOW {
        Ok(v * 1_000_000)
    } else if v < MILLIS_BELOW {
        Ok(v * 1_000)
    } else if v < MICROS_BELOW {
        Ok(v)
    } else {
        Ok(v / 1_000)
    }
}

/// An unsigned integer timestamp (see [`from_i64`]).
pub fn from_u64(v: u64) -> Result<i64, String> {
    match i64::try_from(v) {
        Ok(v) => from_i64(v),
        Err(_) => Err(format!("{v} is out of range")),
    }
}

/// A float timestamp (unit by magnitude, fraction kept) to µs.
pub fn from_f64(v: f64) -> Result<i64, String> {
    if !v.is_finite() {
        return Err(format!("{} is not a finite number", show(v)));
    }
    if v < 0.0 {
        return Err(format!("{} is negative (before 1970)", show(v)));
    }
    let micros = if v < SECONDS_BELOW as f64 {
        v * 1e6
    } else if v < MILLIS_BELOW as f64 {
        v * 1e3
    } else if v < MICROS_BELOW as f64 {
        v
    } else {
        v / 1e3
    };
    let micros = micros.round();
    // i64::MAX as f64 rounds up to 2^63, which itself does not fit.
    if micros >= i64::MAX as f64 {
        return Err(format!("{} is out of range", show(v)));
    }
    Ok(micros as i64)
}

/// Short text of a float (scientific notation for huge magnitudes).
fn show(v: f64) -> String {
    if v.is_finite() && v.abs() >= 1e21 {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

/// A string timestamp: a number (see above) or RFC 3339 with an offset.
pub fn from_str(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty string".into());
    }
    let b = t.as_bytes();
    if b.iter().all(u8::is_ascii_digit) {
        return match t.parse::<u64>() {
            Ok(v) => from_u64(v),
            Err(_) => Err(format!("`{t}` is out of range")),
        };
    }
    let numeric = b
        .iter()
        .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'));
    if numeric
        && (b[0].is_ascii_digit() || b[0] == b'-' || b[0] == b'.')
        && let Ok(v) = t.parse::<f64>()
    {
        return from_f64(v);
    }
    match DateTime::parse_from_rfc3339(t) {
        Ok(dt) => {
            let micros = dt.timestamp_micros();
            if micros < 0 {
                Err(format!("`{t}` is before 1970"))
            } else {
                Ok(micros)
            }
        }
        Err(e) => {
            let naive = NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f"));
            if naive.is_ok() {
                Err(format!("`{t}` has no UTC offset (append `Z` or `+hh:mm`)"))
            } else {
                Err(format!(
                    "`{t}` is neither an epoch number nor an RFC 3339 date-time ({e})"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_642_780_800; // 2022-01-21T16:00:00Z
    const US: i64 = S * 1_000_000;

    #[test]
    fn integer_units_by_magnitude() {
        assert_eq!(from_i64(S), Ok(US));
        assert_eq!(from_i64(S * 1_000), Ok(US));
        assert_eq!(from_i64(US), Ok(US));
        assert_eq!(from_i64(US * 1_000), Ok(US));
        assert_eq!(from_i64(US * 1_000 + 999), Ok(US)); // ns truncated
        assert_eq!(from_u64(US as u64 * 1_000), Ok(US));
        assert_eq!(from_i64(0), Ok(0));
        // Threshold edges.
        assert_eq!(from_i64(99_999_999_999), Ok(99_999_999_999_000_000));
        assert_eq!(from_i64(100_000_000_000), Ok(100_000_000_000_000));
        assert_eq!(from_i64(99_999_999_999_999), Ok(99_999_999_999_999_000));
        assert_eq!(from_i64(100_000_000_000_000), Ok(100_000_000_000_000));
        assert_eq!(from_i64(100_000_000_000_000_000), Ok(100_000_000_000_000));
        assert_eq!(from_i64(i64::MAX), Ok(i64::MAX / 1000));
    }

    #[test]
    fn integer_errors() {
        assert_eq!(from_i64(-1), Err("-1 is negative (before 1970)".into()));
        assert_eq!(
            from_u64(u64::MAX),
            Err("18446744073709551615 is out of range".into())
        );
    }

    #[test]
    fn floats_keep_fractions() {
        assert_eq!(from_f64(S as f64 + 0.25), Ok(US + 250_000));
        assert_eq!(from_f64(S as f64 * 1e3 + 0.5), Ok(US + 500));
        assert_eq!(from_f64(US as f64), Ok(US));
        assert_eq!(from_f64(US as f64 * 1e3), Ok(US));
        assert!(from_f64(f64::NAN).unwrap_err().contains("not a finite"));
        assert!(from_f64(f64::INFINITY).is_err());
        assert!(from_f64(-0.5).unwrap_err().contains("negative"));
        assert!(from_f64(1e30).unwrap_err().contains("out of range"));
    }

    #[test]
    fn strings() {
        assert_eq!(from_str("1642780800"), Ok(US));
        assert_eq!(from_str("1642780800000"), Ok(US));
        assert_eq!(from_str(" 1642780800000000000 "), Ok(US));
        assert_eq!(from_str("1642780800.5"), Ok(US + 500_000));
        assert_eq!(from_str("2022-01-21T16:00:00Z"), Ok(US));
        assert_eq!(from_str("2022-01-21T16:00:00.123456Z"), Ok(US + 123_456));
        assert_eq!(from_str("2022-01-22T00:00:00+08:00"), Ok(US));
        assert_eq!(from_str("2022-01-21T11:00:00-05:00"), Ok(US));
        assert_eq!(from_str("2022-01-21 16:00:00Z"), Ok(US));
        assert_eq!(from_str("2022-01-21T16:00:00.0000009Z"), Ok(US));
    }

    #[test]
    fn string_errors() {
        assert_eq!(from_str(""), Err("empty string".into()));
        assert_eq!(
            from_str("2022-01-21T16:00:00"),
            Err("`2022-01-21T16:00:00` has no UTC offset (append `Z` or `+hh:mm`)".into())
        );
        assert!(from_str("yesterday").unwrap_err().contains("neither"));
        assert!(from_str("NaN").unwrap_err().contains("neither"));
        assert!(from_str("-5").unwrap_err().contains("negative"));
        assert!(
            from_str("1969-12-31T23:59:59Z")
                .unwrap_err()
                .contains("before 1970")
        );
        assert!(
            from_str("99999999999999999999")
                .unwrap_err()
                .contains("out of range")
        );
    }
}
