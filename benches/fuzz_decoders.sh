#!/usr/bin/env bash
# Long fuzz run of the ingest decoders (JSON, line protocol, Modbus registers,
# MQTT topic templates): mutated seed corpora, aiming at 10^6 inputs per
# decoder. Prints per decoder: inputs tried, decoded, rejected (dead letters),
# crashes (must be 0) and inputs/s; exits 1 on a crash (the input is saved
# to fuzz-crash-<decoder>.bin).
#
#   benches/fuzz_decoders.sh [INPUTS_PER_DECODER=1000000] [MAX_SECONDS_PER_DECODER=600] [SEED=24] [DECODER...]
#
# Builds only weir-ingest's example in release (not the workspace).
# The CI-sized run is part of `cargo test -p weir-ingest` (fuzz_decoders_fixed_budget).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p weir-ingest --example fuzz_decoders
exec target/release/examples/fuzz_decoders "$@"
