//! Input mutations: byte flips, inserts and deletes, splices between seeds,
//! repeated chunks (many fields), deep nesting, huge numbers, unicode and
//! tokens that matter to the formats.

use rand::Rng;
use rand::rngs::StdRng;

/// Inputs are kept below this size (a few times the seeds) so that the loop
/// stays fast; the large-message behaviour has its own tests.
const MAX_LEN: usize = 256 << 10;

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "\\",
    "=",
    " ",
    "\n",
    "\r\n",
    "#",
    "null",
    "true",
    "false",
    "t",
    "F",
    "1i",
    "-9u",
    "1e308",
    "1e309",
    "-0",
    "NaN",
    "inf",
    "0x10",
    "\\,",
    "\\=",
    "\\ ",
    "\\\"",
    "\\u0000",
    "\\ud800",
    "\\uDBFF\\uDFFF",
    "\u{feff}",
    "é",
    "€",
    "𝄞",
    "\u{202e}",
    "\u{0}",
    "device_id",
    "deviceId",
    "id",
    "host",
    "ts",
    "timestamp",
    "time",
    "metric",
    "metric_name",
    "value",
    "unit",
    "quality",
    "labels",
    "tags",
    "metrics",
    "tag_name",
    "{x}",
    "{device_id}",
    "{metric}",
    "/",
    "+",
    "#",
];

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1.5",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1e-400",
    "-1e999",
    "4.9e-324",
    "1642780800",
    "1642780800000000000",
    "99999999999999999999999999999999",
    "0.000000000000000000000000000001",
    "2147483648",
];

/// Applies one random mutation to `input`.
pub(super) fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut StdRng) {
    let len = input.len();
    match rng.random_range(0..12) {
        // Flip a bit.
        0 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] ^= 1 << rng.random_range(0..8);
        }
        // Set a random byte.
        1 if len > 0 => {
            let i = rng.random_range(0..len);
            input[i] = rng.random();
        }
        // Delete a range.
        2 if len > 0 => {
            let i = rng.random_range(0..len);
            let n = rng.random_range(1..=(len - i).min(16));
            input.drain(i..i + n);
        }
        // Insert a token.
        3 | 4 => {
            let t = TOKENS[rng.random_range(0..TOKENS.len())];
            insert(input, rng, t.as_bytes());
        }
        // Replace a run of digits with a huge or odd number.
        5 => replace_number(input, rng),
        // Splice: a piece of another seed.
        6 => splice(input, corpus, rng),
        // Repeat a chunk many times (many fields, many lines).
        7 if len > 0 => repeat_chunk(input, rng),
        // Deep nesting around the input or a part of it.
        8 => nest(input, rng),
        // Random unicode scalar.
        9 => {
            let c = char::from_u32(rng.random_range(0x80..0x11_0000)).unwrap_or('\u{fffd}');
            let mut buf = [0u8; 4];
            insert(input, rng, c.encode_utf8(&mut buf).as_bytes());
        }
        // Truncate.
        10 if len > 0 => input.truncate(rng.random_range(0..len)),
        // Swap two bytes.
        _ if len > 1 => {
            let (i, j) = (rng.random_range(0..len), rng.random_range(0..len));
            input.swap(i, j);
        }
        _ => insert(input, rng, b"\""),
    }
    if input.len() > MAX_LEN {
        input.truncate(MAX_LEN);
    }
}

/// Replaces the first run of digits (and dots) of `input` with a huge or odd
/// number, or inserts one where there is none.
fn replace_number(input: &mut Vec<u8>, rng: &mut StdRng) {
    let n = NUMBERS[rng.random_range(0..NUMBERS.len())];
    match input.iter().position(|c| c.is_ascii_digit()) {
        Some(start) => {
            let end = input[start..]
                .iter()
                .position(|c| !c.is_ascii_digit() && *c != b'.')
                .map_or(input.len(), |e| start + e);
            input.splice(start..end, n.bytes());
        }
        None => insert(input, rng, n.as_bytes()),
    }
}

/// Inserts a random piece of a random seed of `corpus`.
fn splice(input: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut StdRng) {
    let other = &corpus[rng.random_range(0..corpus.len())];
    if !other.is_empty() {
        let a = rng.random_range(0..other.len());
        let b = rng.random_range(a..=other.len());
        insert(input, rng, &other[a..b]);
    }
}

/// Inserts a chunk (up to 32 bytes) of the non-empty `input`, repeated a few
/// or, now and then, thousands of times.
fn repeat_chunk(input: &mut Vec<u8>, rng: &mut StdRng) {
    let len = input.len();
    let a = rng.random_range(0..len);
    let b = rng.random_range(a..=len.min(a + 32));
    let chunk = input[a..b].to_vec();
    let times = if rng.random_bool(0.1) {
        rng.random_range(100..5000)
    } else {
        rng.random_range(2..20)
    };
    let mut piece = Vec::with_capacity(chunk.len() * times);
    for _ in 0..times {
        piece.extend_from_slice(&chunk);
    }
    insert(input, rng, &piece);
}

/// Wraps `input` in JSON arrays or objects, a few or, now and then,
/// thousands of levels deep.
fn nest(input: &mut Vec<u8>, rng: &mut StdRng) {
    let depth = if rng.random_bool(0.2) {
        rng.random_range(100..2000)
    } else {
        rng.random_range(2..40)
    };
    let (open, close): (&[u8], &[u8]) = match rng.random_range(0..3) {
        0 => (b"[", b"]"),
        1 => (b"{\"a\":", b"}"),
        _ => (b"{\"metrics\":{\"k\":", b"}}"),
    };
    let mut out = Vec::with_capacity(input.len() + depth * (open.len() + close.len()));
    for _ in 0..depth {
        out.extend_from_slice(open);
    }
    out.extend_from_slice(input);
    for _ in 0..depth {
        out.extend_from_slice(close);
    }
    *input = out;
}

fn insert(input: &mut Vec<u8>, rng: &mut StdRng, bytes: &[u8]) {
    let at = rng.random_range(0..=input.len());
    input.splice(at..at, bytes.iter().copied());
}
