#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (Debian package `postgresql`) are
# installed and prints their directory (e.g. /usr/lib/postgresql/15/bin).
# Idempotent: installs only when no initdb is found. Tests start throwaway
# clusters from there (tests/python/pg_harness.py); no service is used.
set -euo pipefail
find_bin() { { ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V | while read -r d; do if [ -x "$d/initdb" ]; then echo "$d"; fi; done | tail -1; }
if [ -z "$(find_bin)" ]; then
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  { $sudo_cmd apt-get update -q && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; } >&2
fi
bin="$(find_bin)"
[ -n "$bin" ] || { echo "postgres.sh: no initdb after installing postgresql" >&2; exit 1; }
echo "$bin"
