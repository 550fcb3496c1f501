//! The long fuzz run of the decoders (see `weir_ingest::fuzz`):
//!
//! ```text
//! benches/fuzz_decoders.sh [INPUTS_PER_DECODER] [MAX_SECONDS_PER_DECODER] [SEED] [TARGET...]
//! ```
//!
//! Prints per decoder: inputs tried, decoded, rejected (dead letters),
//! crashes and inputs/s; exits 1 if anything crashed (the first crashing
//! input of each decoder is written to `fuzz-crash-<target>.bin`).

use std::time::Duration;

use weir_ingest::fuzz::{self, Target};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| {
        args.get(i)
            .map(|a| a.replace('_', "").parse::<u64>())
            .transpose()
            .unwrap_or_else(|e| {
                eprintln!("argument {}: {e}", i + 1);
                std::process::exit(2)
            })
            .unwrap_or(default)
    };
    let inputs = num(0, 1_000_000);
    let seconds = num(1, 600);
    let seed = num(2, 24);
    let targets: Vec<Target> = if args.len() > 3 {
        args[3..]
            .iter()
            .map(|t| {
                t.parse().unwrap_or_else(|e| {
                    eprintln!("{e}");
                    std::process::exit(2)
                })
            })
            .collect()
    } else {
        Target::ALL.to_vec()
    };
    println!("fuzzing {inputs} inputs per decoder (at most {seconds} s each), seed {seed}");
    let mut crashed = false;
    for target in targets {
        let stats = fuzz::run(target, inputs, Duration::from_secs(seconds), seed);
        println!("{stats}");
        if let Some((n, input)) = &stats.first_crash {
            crashed = true;
            let path = format!("fuzz-crash-{target}.bin");
            match std::fs::write(&path, input) {
                Ok(()) => eprintln!("{target}: input {n} crashed; saved to {path}"),
                Err(e) => eprintln!("{target}: input {n} crashed; saving it failed: {e}"),
            }
        }
    }
    if crashed {
        std::process::exit(1);
    }
}
