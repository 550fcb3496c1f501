//! Fuzzing the decoders: a mutation loop over seed corpora, used by a
//! fixed-budget test in `cargo test -p weir-ingest` and by the long run
//! `benches/fuzz_decoders.sh` (the `fuzz_decoders` example).
//!
//! Why a hand-written loop and not cargo-fuzz or proptest: cargo-fuzz needs
//! nightly Rust, libFuzzer and its own build, and cannot run inside the
//! stable `cargo test` that CI runs; proptest is not a dependency of the
//! workspace (and builds offline only if vendored). The decoders take bytes
//! and promise "points or a `DecodeError`", which a seeded `rand` loop over
//! realistic messages, mutated by byte flips, splices, deep nesting, huge
//! numbers, unicode and many fields, checks well: it is deterministic per
//! seed (a failure names seed and input number), fast (about 10^5–10^6
//! inputs/s per decoder in release), and has no dependency beyond `rand`.
//!
//! Each input must either decode — and the points then respect the
//! [`DecodeLimits`](crate::decode::DecodeLimits) (see
//! [`verify`](crate::decode::limits::verify)) — or be rejected with an error,
//! leaving the output untouched. A panic, or a broken promise (which panics
//! inside the target), counts as a crash.

mod mutate;
mod targets;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use targets::Target;

/// What a target did with one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded into points (or a value), all promises kept.
    Decoded,
    /// Rejected with an error (a dead letter, for message decoders).
    Rejected,
}

/// The result of one fuzz run of one target.
#[derive(Debug, Clone)]
pub struct Stats {
    pub target: Target,
    pub seed: u64,
    pub inputs: u64,
    pub decoded: u64,
    pub rejected: u64,
    pub crashes: u64,
    pub elapsed: Duration,
    /// The first input that crashed, with its number.
    pub first_crash: Option<(u64, Vec<u8>)>,
}

impl Stats {
    pub fn inputs_per_sec(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<14} inputs {:>9}  decoded {:>9}  rejected {:>9}  crashes {}  {:>9.0} inputs/s  ({:.1} s, seed {})",
            self.target.name(),
            self.inputs,
            self.decoded,
            self.rejected,
            self.crashes,
            self.inputs_per_sec(),
            self.elapsed.as_secs_f64(),
            self.seed
        )
    }
}

/// Runs `target` on mutated seeds until `max_inputs` inputs were tried or
/// `max_time` has passed, whichever comes first.
pub fn run(target: Target, max_inputs: u64, max_time: Duration, seed: u64) -> Stats {
    let corpus = target.seeds();
    let mut rng = StdRng::seed_from_u64(seed ^ target as u64);
    let mut stats = Stats {
        target,
        seed,
        inputs: 0,
        decoded: 0,
        rejected: 0,
        crashes: 0,
        elapsed: Duration::ZERO,
        first_crash: None,
    };
    let start = Instant::now();
    let mut input = Vec::new();
    while stats.inputs < max_inputs {
        // The clock is read every 256 inputs only.
        if stats.inputs.is_multiple_of(256) && start.elapsed() >= max_time {
            break;
        }
        input.clear();
        let base = &corpus[rng.random_range(0..corpus.len())];
        input.extend_from_slice(base);
        let rounds = rng.random_range(0..=4);
        for _ in 0..rounds {
            mutate::mutate(&mut input, &corpus, &mut rng);
        }
        let case_seed = rng.random::<u64>();
        stats.inputs += 1;
        match catch_unwind(AssertUnwindSafe(|| target.check(&input, case_seed))) {
            Ok(Outcome::Decoded) => stats.decoded += 1,
            Ok(Outcome::Rejected) => stats.rejected += 1,
            Err(_) => {
                stats.crashes += 1;
                if stats.first_crash.is_none() {
                    stats.first_crash = Some((stats.inputs, input.clone()));
                }
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CI run: a fixed budget per decoder (inputs or seconds, whichever
    /// ends first). `benches/fuzz_decoders.sh` is the long run.
    #[test]
    fn fuzz_decoders_fixed_budget() {
        for target in Target::ALL {
            let stats = run(target, 100_000, Duration::from_secs(3), 24);
            eprintln!("{stats}");
            if let Some((n, input)) = &stats.first_crash {
                panic!(
                    "{target}: input {n} of seed 24 crashed: {:?}",
                    String::from_utf8_lossy(input)
                );
            }
            assert_eq!(stats.crashes, 0);
            assert!(stats.inputs >= 1000, "{stats}");
            assert!(stats.decoded > 0 && stats.rejected > 0, "{stats}");
        }
    }
}
