#!/usr/bin/env bash
# Install + start/stop a Mosquitto MQTT broker (Debian package) for the tests.
# usage:
#   mosquitto.sh install              apt-get install mosquitto mosquitto-clients (skipped when present)
#   mosquitto.sh up DIR PORT [TLS_PORT]   start on 127.0.0.1 with config/data/log in DIR (persistence on,
#                                     so queued QoS 1 messages of persistent sessions survive a restart);
#                                     DIR/passwd (mosquitto_passwd) enables authentication when present,
#                                     DIR/ca.pem + DIR/server.pem + DIR/server.key add a TLS listener on TLS_PORT
#   mosquitto.sh down DIR             stop it (SIGTERM: the broker saves its persistence file)
set -euo pipefail

install() {
  # openssl: the TLS test makes its own CA and server certificate.
  local missing=()
  { [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null; } || missing+=(mosquitto)
  command -v mosquitto_passwd >/dev/null || missing+=(mosquitto)
  command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
  command -v openssl >/dev/null || missing+=(openssl)
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

mosquitto_bin() {
  command -v mosquitto || echo /usr/sbin/mosquitto
}

up() {
  local dir=$1 port=$2 tls_port=${3:-}
  mkdir -p "$dir/data"
  {
    echo "per_listener_settings false"
    # As root, mosquitto would switch to the `mosquitto` user, which cannot
    # read test directories: keep the invoking user.
    [ "$(id -u)" = 0 ] && echo "user root"
    echo "persistence true"
    echo "persistence_location $dir/data/"
    echo "autosave_interval 1"
    # Weir acknowledges a message only once it is committed: let the broker
    # keep any number of messages in flight and queued for the session.
    echo "max_inflight_messages 0"
    echo "max_queued_messages 0"
    echo "log_dest file $dir/mosquitto.log"
    echo "log_type error"
    echo "log_type warning"
    echo "log_type notice"
    echo "log_type information"
    echo "listener $port 127.0.0.1"
    if [ -f "$dir/passwd" ]; then
      echo "allow_anonymous false"
      echo "password_file $dir/passwd"
    else
      echo "allow_anonymous true"
    fi
    if [ -n "$tls_port" ]; then
      echo "listener $tls_port 127.0.0.1"
      echo "cafile $dir/ca.pem"
      echo "certfile $dir/server.pem"
      echo "keyfile $dir/server.key"
    fi
  } > "$dir/mosquitto.conf"
  "$(mosquitto_bin)" -c "$dir/mosquitto.conf" -d
  for _ in $(seq 1 100); do   # wait up to 10 s for the listener
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      pgrep -n -f "mosquitto -c $dir/mosquitto.conf" > "$dir/pid" || true
      echo "mosquitto ready on 127.0.0.1:$port"; exit 0
    fi
    sleep 0.1
  done
  echo "mosquitto did not start; log:" >&2; cat "$dir/mosquitto.log" >&2 || true; exit 1
}

down() {
  local dir=$1
  [ -s "$dir/pid" ] || exit 0
  local pid; pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || exit 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/pid"; exit 0; }
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  install) install ;;
  up) install; up "$2" "$3" "${4:-}" ;;
  down) down "$2" ;;
  *) echo "usage: $0 install | up DIR PORT [TLS_PORT] | down DIR" >&2; exit 2 ;;
esac
