//! Register decoding: data types and byte/word orders.
//!
//! Hand-written on purpose: tokio-modbus hands back raw `u16` words and no
//! well-kept crate covers the four vendor orders for 32/64-bit values; the
//! decoding is a few lines of `from_be_bytes` once the words are reordered.

use std::fmt;
use std::str::FromStr;

/// The type a tag's registers hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    Boolean,
    /// The low byte of one register.
    Int8,
    /// The low byte of one register.
    UInt8,
    Int16,
    UInt16,
    Int32,
    UInt32,
    Int64,
    UInt64,
    Float32,
    Float64,
}

impl DataType {
    /// Registers (16-bit words) the type spans; bits (coils) count as one.
    pub fn words(self) -> u16 {
        match self {
            DataType::Boolean
            | DataType::Int8
            | DataType::UInt8
            | DataType::Int16
            | DataType::UInt16 => 1,
            DataType::Int32 | DataType::UInt32 | DataType::Float32 => 2,
            DataType::Int64 | DataType::UInt64 | DataType::Float64 => 4,
        }
    }
}

impl FromStr for DataType {
    type Err = String;

    /// Accepts the names and the registry DDL's (`Float` = Float32,
    /// `Double` = Float64), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "boolean" | "bool" => DataType::Boolean,
            "int8" => DataType::Int8,
            "uint8" => DataType::UInt8,
            "int16" => DataType::Int16,
            "uint16" => DataType::UInt16,
            "int32" => DataType::Int32,
            "uint32" => DataType::UInt32,
            "int64" => DataType::Int64,
            "uint64" => DataType::UInt64,
            "float32" | "float" | "real" => DataType::Float32,
            "float64" | "double" => DataType::Float64,
            _ => {
                return Err(format!(
                    "unsupported data type `{s}` (expected Boolean, Int8, UInt8, Int16, UInt16, Int32, UInt32, \
                     Int64, UInt64, Float32/Float or Float64/Double)"
                ));
            }
        })
    }
}

/// Byte and word order of multi-byte values, named by where the bytes of the
/// big-endian value `A B C D` land in the registers: `ABCD` big-endian (the
/// Modbus default), `DCBA` little-endian, `BADC` bytes swapped in each word,
/// `CDAB` words swapped. For 64-bit values the same rule extends to four
/// words (`CDAB` = least significant word first); for 16-bit values only the
/// byte swap (`BADC`, `DCBA`) matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WordOrder {
    #[default]
    Abcd,
    Dcba,
    Badc,
    Cdab,
}

impl WordOrder {
    fn swap_bytes(self) -> bool {
        matches!(self, WordOrder::Badc | WordOrder::Dcba)
    }
    fn reverse_words(self) -> bool {
        matches!(self, WordOrder::Cdab | WordOrder::Dcba)
    }
}

impl FromStr for WordOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "ABCD" | "BIG" | "BE" => Ok(WordOrder::Abcd),
            "DCBA" | "LITTLE" | "LE" => Ok(WordOrder::Dcba),
            "BADC" => Ok(WordOrder::Badc),
            "CDAB" => Ok(WordOrder::Cdab),
            _ => Err(format!(
                "unknown byte/word order `{s}` (expected ABCD, DCBA, BADC or CDAB)"
            )),
        }
    }
}

impl fmt::Display for WordOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WordOrder::Abcd => "ABCD",
            WordOrder::Dcba => "DCBA",
            WordOrder::Badc => "BADC",
            WordOrder::Cdab => "CDAB",
        })
    }
}

/// The big-endian bytes of `words` after undoing `order`.
fn be_bytes<const N: usize>(words: &[u16], order: WordOrder) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N / 2;
    for i in 0..n {
        let w = if order.reverse_words() {
            words[n - 1 - i]
        } else {
            words[i]
        };
        let w = if order.swap_bytes() {
            w.swap_bytes()
        } else {
            w
        };
        out[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Decodes one raw value from registers (or a coil as 0/1 in `words[0]`).
///
/// Returns `None` when `words` is shorter than the type needs. The value may
/// be NaN or infinite for float types; the caller decides what that means.
pub fn decode(words: &[u16], dtype: DataType, order: WordOrder) -> Option<f64> {
    if words.len() < dtype.words() as usize {
        return None;
    }
    Some(match dtype {
        DataType::Boolean => f64::from(u8::from(words[0] != 0)),
        DataType::Int8 => f64::from(be_bytes::<2>(words, order)[1] as i8),
        DataType::UInt8 => f64::from(be_bytes::<2>(words, order)[1]),
        DataType::Int16 => f64::from(i16::from_be_bytes(be_bytes::<2>(words, order))),
        DataType::UInt16 => f64::from(u16::from_be_bytes(be_bytes::<2>(words, order))),
        DataType::Int32 => f64::from(i32::from_be_bytes(be_bytes::<4>(words, order))),
        DataType::UInt32 => f64::from(u32::from_be_bytes(be_bytes::<4>(words, order))),
        DataType::Float32 => f64::from(f32::from_be_bytes(be_bytes::<4>(words, order))),
        // 64-bit integers beyond 2^53 lose precision in a double (the Silver
        // value column); that is the documented cost of one value column.
        DataType::Int64 => i64::from_be_bytes(be_bytes::<8>(words, order)) as f64,
        DataType::UInt64 => u64::from_be_bytes(be_bytes::<8>(words, order)) as f64,
        DataType::Float64 => f64::from_be_bytes(be_bytes::<8>(words, order)),
    })
}

/// The registers a device using `order` holds for the big-endian bytes
/// `bytes` (the inverse of [`decode`]; used by tests and the benchmark's
/// simulated devices).
pub fn encode_bytes(bytes: &[u8], order: WordOrder) -> Vec<u16> {
    let mut words: Vec<u16> = bytes
        .chunks(2)
        .map(|c| {
            let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
            if order.swap_bytes() {
                w.swap_bytes()
            } else {
                w
            }
        })
        .collect();
    if order.reverse_words() {
        words.reverse();
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Dcba,
        WordOrder::Badc,
        WordOrder::Cdab,
    ];

    #[test]
    fn float32_in_every_order_matches_known_registers() {
        // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79.
        let cases = [
            (WordOrder::Abcd, [0x42F6, 0xE979]),
            (WordOrder::Dcba, [0x79E9, 0xF642]),
            (WordOrder::Badc, [0xF642, 0x79E9]),
            (WordOrder::Cdab, [0xE979, 0x42F6]),
        ];
        for (order, words) in cases {
            let v = decode(&words, DataType::Float32, order).unwrap();
            assert_eq!(v, f64::from(123.456f32), "{order}");
        }
    }

    #[test]
    fn every_type_round_trips_in_every_order() {
        for order in ORDERS {
            let check = |dtype: DataType, bytes: &[u8], want: f64| {
                let words = encode_bytes(bytes, order);
                assert_eq!(words.len(), dtype.words() as usize);
                let got = decode(&words, dtype, order).unwrap();
                assert_eq!(got, want, "{dtype:?} {order}");
            };
            check(DataType::Int16, &(-1234i16).to_be_bytes(), -1234.0);
            check(DataType::UInt16, &65000u16.to_be_bytes(), 65000.0);
            check(
                DataType::Int32,
                &(-123_456_789i32).to_be_bytes(),
                -123_456_789.0,
            );
            check(DataType::UInt32, &4_000_000_000u32.to_be_bytes(), 4e9);
            check(DataType::Float32, &(-0.5f32).to_be_bytes(), -0.5);
            check(
                DataType::Int64,
                &(-9_007_199_254_740_991i64).to_be_bytes(),
                -9_007_199_254_740_991.0,
            );
            check(
                DataType::UInt64,
                &(1u64 << 52).to_be_bytes(),
                (1u64 << 52) as f64,
            );
            check(
                DataType::Float64,
                &std::f64::consts::PI.to_be_bytes(),
                std::f64::consts::PI,
            );
        }
    }

    #[test]
    fn int64_cdab_puts_the_least_significant_word_first() {
        let words = [0x0004, 0x0003, 0x0002, 0x0001];
        let v = decode(&words, DataType::Int64, WordOrder::Cdab).unwrap();
        assert_eq!(v, 0x0001_0002_0003_0004i64 as f64);
    }

    #[test]
    fn booleans_short_input_and_names() {
        assert_eq!(decode(&[0], DataType::Boolean, WordOrder::Abcd), Some(0.0));
        assert_eq!(decode(&[7], DataType::Boolean, WordOrder::Abcd), Some(1.0));
        assert_eq!(decode(&[1], DataType::Float32, WordOrder::Abcd), None);
        assert_eq!(
            decode(&[0x12FE], DataType::Int8, WordOrder::Abcd),
            Some(-2.0)
        );
        assert_eq!(
            decode(&[0x12FE], DataType::UInt8, WordOrder::Abcd),
            Some(254.0)
        );
        assert_eq!(
            decode(&[0xFE12], DataType::UInt8, WordOrder::Badc),
            Some(254.0)
        );
        assert_eq!("double".parse::<DataType>(), Ok(DataType::Float64));
        assert_eq!("Float".parse::<DataType>(), Ok(DataType::Float32));
        assert!("String".parse::<DataType>().is_err());
        assert_eq!("cdab".parse::<WordOrder>(), Ok(WordOrder::Cdab));
        assert!("ACBD".parse::<WordOrder>().is_err());
    }
}
