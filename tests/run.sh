#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh
# machine, builds the workspace once (debug), then runs
#   1. formatting and clippy checks,
#   2. Rust unit tests and the sqllogictest files in tests/slt/,
#   3. the Python end-to-end tests in tests/python/ against the real binary
#      (ADBC Flight SQL driver, pyarrow.flight, PyIceberg, the Arrow Flight SQL
#      JDBC driver, Spark, Trino, the web console in headless Chromium).
# Env: WEIR_TEST_VENV (default ~/.cache/weir/test-venv), WEIR_SKIP_CLIPPY=1.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${WEIR_TEST_VENV:-$HOME/.cache/weir/test-venv}

step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "system packages"
# rdkafka (Kafka source) builds librdkafka with TLS: needs pkg-config, the
# OpenSSL headers and a C toolchain.
missing=()
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

tests/scripts/mosquitto.sh install   # MQTT tests: Debian mosquitto, mosquitto-clients, openssl
tests/scripts/chromium.sh install    # web console tests (test_console.py): Debian chromium, chromium-driver
tests/scripts/postgres.sh >/dev/null  # PostgreSQL server binaries (federation, Modbus registry tests)
tests/scripts/docker-compose.sh       # `docker-compose config` checks docker-compose.yml (no engine)
tests/scripts/kafka.sh install >/dev/null   # Apache Kafka 4 (KRaft) from Maven Central for the Kafka tests (needs java, mvn)
tests/scripts/jdbc.sh install >/dev/null    # Arrow Flight SQL JDBC driver from Maven + javac of tests/jdbc (test_jdbc.py)

step "python test environment: $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
# Apache Spark 4.1 (PySpark, its own cached dir) + the Iceberg Spark runtime and JDBC drivers from
# Maven Central for tests/python/test_spark_interop.py (needs java, mvn; uses the venv's pip, so here)
WEIR_SPARK_PIP="$venv/bin/pip" tests/scripts/spark.sh install >/dev/null
# Trino 476 (its Iceberg connector only, ~280 MB kept) from Maven Central for
# tests/python/test_trino.py; it runs on Java 25 (trino.sh sets JAVA_HOME for Trino alone)
tests/scripts/trino.sh install >/dev/null

step "format"
cargo fmt --all -- --check

step "build"
cargo build --workspace --all-targets --locked

step "rust tests (unit + sqllogictest)"
cargo test --workspace --locked

if [ "${WEIR_SKIP_CLIPPY:-0}" != 1 ]; then
  step "clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

step "python end-to-end tests"
# The binary just built: Cargo's target directory may be elsewhere
# (CARGO_TARGET_DIR, build.target-dir in a Cargo config).
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
WEIR_BIN="$target_dir/debug/weir" "$venv/bin/python" -m pytest tests/python -q

step "all tests passed"
