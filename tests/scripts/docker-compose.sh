#!/usr/bin/env bash
# Install docker-compose (Debian's 1.29, the Python one: `config` validates a
# compose file against the Compose schema without a Docker engine) for
# tests/python/test_compose.py. No engine is installed (no recommends).
set -euo pipefail
command -v docker-compose >/dev/null && exit 0
sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -q
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose
