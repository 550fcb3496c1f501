#!/usr/bin/env bash
# One command for the benchmark: builds Weir (release), makes a venv with the
# peers (DuckDB from PyPI), generates data (cached), runs the suite.
# Usage: benches/run.sh [--sensors N] [--hours H] [--reps R] [--seed S]
#        benches/run.sh ingest [--points N] [--rate P] [--seconds S]   (streaming ingest)
#        benches/run.sh maintain [--files N] [--sensors N]              (compaction, Z-order)
#        benches/run.sh dml [--sensors N] [--reps R]                    (DELETE/UPDATE vs DuckDB)
#        benches/run.sh generic [--sensors N] [--hours H] [--reps R] [--no-queries]  (plain table vs DuckDB, chDB; bulk paths)
#        benches/run.sh last_value [--series 2000,200000] [--reps R]    (last-value index vs DuckDB, chDB)
#        benches/run.sh soak [--rate P] [--minutes M]                   (1-hour ingest soak, maintenance on)
#        benches/run.sh mqtt [--messages N]                             (MQTT ingest, Mosquitto)
#        benches/run.sh federation [--devices N] [--points P]           (PostgreSQL federation)
#        benches/run.sh auth [--reps R]                                 (TLS + auth connection cost)
#        benches/run.sh gapfill [--sensors N] [--reps R]                (gap filling vs DuckDB)
#        benches/run.sh alerts [--rules N] [--points N]                 (alert rule evaluation cost)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${WEIR_BENCH_VENV:-$HOME/.cache/weir/bench-venv}
export WEIR_HTTP_LISTEN=${WEIR_HTTP_LISTEN:-127.0.0.1:0}  # /metrics on a free port (no clash on 9090)
cargo build --release --locked -p weir
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r benches/requirements.txt
if [ "${1:-}" = last_value ]; then
  shift
  exec "$venv/bin/python" benches/last_value.py "$@"
fi
if [ "${1:-}" = ingest ]; then
  shift
  exec "$venv/bin/python" benches/ingest.py "$@"
fi
if [ "${1:-}" = soak ]; then
  shift
  exec "$venv/bin/python" benches/soak.py "$@"
fi
if [ "${1:-}" = federation ]; then
  shift
  exec "$venv/bin/python" benches/federation.py "$@"
fi
if [ "${1:-}" = auth ]; then
  shift
  exec "$venv/bin/python" benches/auth_tls.py "$@"
fi
if [ "${1:-}" = maintain ]; then
  shift
  exec "$venv/bin/python" benches/maintain.py "$@"
fi
if [ "${1:-}" = dml ]; then
  shift
  exec "$venv/bin/python" benches/dml.py "$@"
fi
if [ "${1:-}" = generic ]; then
  shift
  exec "$venv/bin/python" benches/generic.py "$@"
fi
if [ "${1:-}" = gapfill ]; then
  shift
  exec "$venv/bin/python" benches/gapfill.py "$@"
fi
if [ "${1:-}" = alerts ]; then
  shift
  cargo build --release --locked -p weir-alert --example rule_bench
  exec "$venv/bin/python" benches/alerts.py "$@"
fi
if [ "${1:-}" = mqtt ]; then
  shift
  exec "$venv/bin/python" benches/mqtt_ingest.py "$@"
fi
exec "$venv/bin/python" benches/run.py "$@"
