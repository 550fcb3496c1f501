#!/usr/bin/env bash
# Trino (a single coordinator that is also its worker, Java 25) with only its Iceberg connector,
# for tests/python/test_trino.py, installed from Maven Central only.
#
# usage:
#   trino.sh install                   io.trino:trino-server:$VERSION:tar.gz through Maven into
#                                      $WEIR_TRINO_HOME/server: bin/, lib/, plugin/iceberg only (the other
#                                      ~50 connectors are deleted after unpacking, ~280 MB kept of ~900;
#                                      the tarball is removed from the Maven repository afterwards);
#                                      idempotent, a no-op when warm; prints the server dir
#   trino.sh env                       prints the server dir (exit 1 if not installed)
#   trino.sh start DIR PORT CATALOG... one server on 127.0.0.1:PORT; etc/ written to DIR/etc, each
#                                      CATALOG file (NAME.properties) copied to DIR/etc/catalog/ (the
#                                      catalog's name in SQL is NAME), data and logs in DIR/data;
#                                      returns once GET /v1/info says "starting": false
#   trino.sh stop DIR                  SIGTERM (graceful, up to 60 s), then SIGKILL
#
# env: WEIR_TRINO_VERSION (476), WEIR_TRINO_HOME ($HOME/.cache/weir/trino-$VERSION),
#      WEIR_TRINO_JAVA_HOME (Java 25; default: /usr/lib/jvm/temurin-25-jdk-amd64, else the first
#      /usr/lib/jvm/*-25*), WEIR_TRINO_HEAP (2G), WEIR_TRINO_START_TIMEOUT (seconds, 240),
#      WEIR_TRINO_MAVEN_ARGS (extra mvn flags, e.g. -Dmaven.repo.local=...).
# Files in DIR: etc/, data/var/log/server.log (Trino's log), trino.out (stdout/stderr), trino.pid.
#
# Why 476: the newest trino-server tarball Maven Central serves here (483's is not there; Trino
# >= 470 needs Java 24+, hence Java 25 for Trino only: Spark and Kafka keep the default Java 17).
set -euo pipefail

VERSION="${WEIR_TRINO_VERSION:-476}"
THOME="${WEIR_TRINO_HOME:-$HOME/.cache/weir/trino-$VERSION}"
SERVER="$THOME/server"

die() { echo "trino.sh: $*" >&2; exit 1; }

java_home() {
  local j
  for j in "${WEIR_TRINO_JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*-25*; do
    [ -n "$j" ] && [ -x "$j/bin/java" ] && { echo "$j"; return 0; }
  done
  die "no Java 25 found (set WEIR_TRINO_JAVA_HOME): Trino $VERSION needs it"
}

local_repo() {   # where mvn keeps the tarball (so it can be removed after unpacking)
  local r
  # shellcheck disable=SC2086
  r=$(printf '%s\n' ${WEIR_TRINO_MAVEN_ARGS:-} | sed -n 's/^-Dmaven\.repo\.local=//p' | tail -1)
  echo "${r:-$HOME/.m2/repository}"
}

install() {
  [ -f "$SERVER/.complete" ] && return 0
  mkdir -p "$THOME"
  exec 9>"$THOME/.lock"; flock 9          # two test runs installing at once
  [ -f "$SERVER/.complete" ] && return 0
  local dl="$THOME/download"
  rm -rf "$dl" "$SERVER.tmp"; mkdir -p "$dl" "$SERVER.tmp"
  # shellcheck disable=SC2086
  mvn -q -B ${WEIR_TRINO_MAVEN_ARGS:-} \
      org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy \
      -Dartifact="io.trino:trino-server:$VERSION:tar.gz" -DoutputDirectory="$dl" >"$THOME/install.log" 2>&1 \
    || { cat "$THOME/install.log" >&2; die "maven could not fetch io.trino:trino-server:$VERSION:tar.gz"; }
  local tgz="$dl/trino-server-$VERSION.tar.gz"
  [ -f "$tgz" ] || die "trino-server-$VERSION.tar.gz missing after mvn"
  # The ~820 MB tarball stays neither in the Maven repository nor here: only what runs is kept.
  rm -rf "$(local_repo)/io/trino/trino-server/$VERSION"
  # Unpacked whole (the plugins share jars as hard links), then pruned to what runs.
  tar -xzf "$tgz" -C "$dl" || die "could not unpack $tgz"
  rm -f "$tgz"
  local src="$dl/trino-server-$VERSION"
  mv "$src/bin" "$src/lib" "$src/NOTICE" "$SERVER.tmp/"
  mkdir -p "$SERVER.tmp/plugin"; mv "$src/plugin/iceberg" "$SERVER.tmp/plugin/"
  rm -rf "$dl"
  # Not loaded with the tests' catalog: hdfs/ (only with fs.hadoop.enabled; S3 is native), the
  # Snowflake JDBC driver (iceberg.catalog.type=snowflake), RocksDB (the Alluxio file cache).
  rm -rf "$SERVER.tmp/plugin/iceberg/hdfs" "$SERVER.tmp/plugin/iceberg/"net.snowflake_snowflake-jdbc-*.jar \
     "$SERVER.tmp/plugin/iceberg/"org.rocksdb_rocksdbjni-*.jar
  [ -x "$SERVER.tmp/bin/launcher" ] && [ -d "$SERVER.tmp/plugin/iceberg" ] || die "unexpected tarball layout"
  touch "$SERVER.tmp/.complete"
  rm -rf "$SERVER"; mv "$SERVER.tmp" "$SERVER"
}

alive() { kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

# "starting": false in GET /v1/info (the server has loaded its catalogs and accepts queries).
started() {
  python3 - "$1" <<'PY'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/info", timeout=5) as r:
        sys.exit(0 if json.load(r).get("starting") is False else 1)
except Exception:
    sys.exit(1)
PY
}

write_etc() {
  local dir="$1" port="$2"; shift 2
  local etc="$dir/etc"
  rm -rf "$etc"; mkdir -p "$etc/catalog" "$dir/data"
  cat >"$etc/node.properties" <<EOF
node.environment=weir_test
node.id=weir-test-$port
node.data-dir=$dir/data
node.bind-ip=127.0.0.1
node.internal-address=127.0.0.1
EOF
  # Sized for a 2-core test machine: a modest heap, small code cache, UTC (timestamps without zone).
  cat >"$etc/jvm.config" <<EOF
-server
-Xmx${WEIR_TRINO_HEAP:-2G}
-XX:+UseG1GC
-XX:G1HeapRegionSize=32M
-XX:+ExplicitGCInvokesConcurrent
-XX:+ExitOnOutOfMemoryError
-XX:-OmitStackTraceInFastThrow
-XX:ReservedCodeCacheSize=256M
-XX:PerMethodRecompilationCutoff=10000
-XX:PerBytecodeRecompilationCutoff=10000
-XX:+EnableDynamicAgentLoading
-Djdk.attach.allowAttachSelf=true
-Djdk.nio.maxCachedBufferSize=2000000
-Dfile.encoding=UTF-8
-Duser.timezone=UTC
EOF
  cat >"$etc/config.properties" <<EOF
coordinator=true
node-scheduler.include-coordinator=true
http-server.http.port=$port
discovery.uri=http://127.0.0.1:$port
query.max-memory=1GB
query.max-memory-per-node=1GB
task.concurrency=2
EOF
  echo "io.trino=INFO" >"$etc/log.properties"
  local f
  for f in "$@"; do
    [ -f "$f" ] || die "no catalog file $f"
    cp "$f" "$etc/catalog/"
  done
}

start() {
  local dir="${1:-}" port="${2:-}"
  [ -n "$dir" ] && [ -n "$port" ] && [ $# -ge 3 ] || die "usage: trino.sh start DIR PORT CATALOG.properties..."
  shift 2
  [ -f "$SERVER/.complete" ] || die "Trino is not installed: run \`trino.sh install\`"
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  if [ -f "$dir/trino.pid" ] && alive "$(cat "$dir/trino.pid")"; then die "already running in $dir"; fi
  write_etc "$dir" "$port" "$@"
  local jh; jh="$(java_home)"
  # `launcher run`: Trino in the foreground of this background job (its pid is the JVM's).
  JAVA_HOME="$jh" PATH="$jh/bin:$PATH" setsid "$SERVER/bin/launcher" run \
      --etc-dir "$dir/etc" --data-dir "$dir/data" >"$dir/trino.out" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/trino.pid"
  local deadline=$((SECONDS + ${WEIR_TRINO_START_TIMEOUT:-240}))
  until started "$port"; do
    if ! alive "$pid"; then
      tail -50 "$dir/trino.out" >&2; die "Trino exited during startup (log: $dir/trino.out)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -50 "$dir/trino.out" >&2; stop "$dir"; die "Trino not started within ${WEIR_TRINO_START_TIMEOUT:-240} s"
    fi
    sleep 0.5   # a poll interval, not a wait for something to happen
  done
  echo "$pid"
}

stop() {
  local dir="$1" pid
  [ -f "$dir/trino.pid" ] || return 0
  pid="$(cat "$dir/trino.pid")"
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 600); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/trino.pid"
}

case "${1:-}" in
  install) install; echo "$SERVER" ;;
  env)     [ -f "$SERVER/.complete" ] || exit 1; echo "$SERVER" ;;
  start)   shift; start "$@" ;;
  stop)    [ -n "${2:-}" ] || die "usage: trino.sh stop DIR"; stop "$2" ;;
  *) sed -n '2,25p' "$0" >&2; exit 2 ;;
esac
