#!/usr/bin/env bash
# The cost of a metrics call without and with the Prometheus recorder
# (issue 7). Release build of a standalone crate (only the metrics crates).
set -euo pipefail
cd "$(dirname "$0")"
cargo run --release --quiet
