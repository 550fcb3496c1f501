#!/usr/bin/env bash
# PostgreSQL server binaries for the Modbus device-registry test
# (tests/python/test_modbus.py starts a throwaway cluster with initdb/pg_ctl).
# Idempotent: does nothing when initdb is already installed.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  exit 0
fi
sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -q
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
