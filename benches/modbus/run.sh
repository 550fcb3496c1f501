#!/usr/bin/env bash
# Modbus poller scale benchmark (issue 4): DEVICES simulated devices (a
# tokio-modbus server in its own process, one TCP connection per device,
# 10 tags = one 15-register read each) polled at 1 Hz for SECONDS after a 5 s
# warm-up. Prints the poller process's CPU use in cores and its missed polls.
# Target: no missed polls, under half a core at 5,000 devices.
# Usage: benches/modbus/run.sh [DEVICES=5000] [SECONDS=30]
set -euo pipefail
cd "$(dirname "$0")/../.."
devices=${1:-5000}
seconds=${2:-30}
cargo build --release --locked -p weir-ingest --example modbus_bench
bin=target/release/examples/modbus_bench
# One socket per device on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin" serve "$port" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
"$bin" poll "$port" "$devices" "$seconds"
