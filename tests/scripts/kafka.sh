#!/usr/bin/env bash
# Apache Kafka (the real broker, KRaft mode, one node) for the tests, installed from Maven Central only.
#
# usage:
#   kafka.sh install                 resolve the broker's jars into $WEIR_KAFKA_HOME/lib (idempotent); prints the lib dir
#   kafka.sh start DIR PORT [CPORT]  one broker+controller on 127.0.0.1:PORT (controller on CPORT, default: a free port),
#                                    data in DIR/logs; formats DIR on first start, keeps the data on a restart with the
#                                    same DIR; returns once a metadata request succeeds
#   kafka.sh stop DIR [--kill]       SIGTERM (clean shutdown, up to 60 s, then SIGKILL); --kill: SIGKILL at once
#   kafka.sh run MAINCLASS ARGS...   any main class on the broker's classpath (e.g. kafka.tools.StorageTool info -c ...)
#
# env: WEIR_KAFKA_VERSION (4.4.0), WEIR_KAFKA_HOME ($HOME/.cache/weir/kafka-$VERSION),
#      WEIR_KAFKA_HEAP (-Xms128m -Xmx512m), WEIR_KAFKA_JAVA_OPTS (extra JVM flags), JAVA_HOME (Java 17+),
#      WEIR_KAFKA_PYTHON (a python with confluent_kafka for the readiness probe; default: the test venv),
#      WEIR_KAFKA_START_TIMEOUT (seconds, 90), WEIR_KAFKA_MAVEN_ARGS (extra mvn flags, e.g. -Dmaven.repo.local=...).
# Files in DIR: server.properties, log4j2.properties, server.log (the broker's log), kafka.out (stdout/stderr),
#      kafka.pid, controller.port.
# Main classes (Kafka 4.x, all in kafka_2.13.jar): kafka.Kafka (the server), kafka.tools.StorageTool (format).
set -euo pipefail

VERSION="${WEIR_KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION=2.25.5            # = the log4j-api/-core that kafka-server $VERSION depends on
KHOME="${WEIR_KAFKA_HOME:-$HOME/.cache/weir/kafka-$VERSION}"
LIB="$KHOME/lib"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"

die() { echo "kafka.sh: $*" >&2; exit 1; }

install() {
  [ -f "$LIB/.complete" ] && return 0
  mkdir -p "$KHOME"
  exec 9>"$KHOME/.lock"; flock 9          # two test runs installing at once
  [ -f "$LIB/.complete" ] && return 0
  cat >"$KHOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>weir.tests</groupId><artifactId>kafka-broker</artifactId><version>$VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$VERSION</version></dependency>
    <!-- the slf4j 1.x API that kafka uses, routed to log4j2 (as in Kafka's own libs/) -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$LIB.tmp"
  # shellcheck disable=SC2086
  mvn -q -B -f "$KHOME/pom.xml" ${WEIR_KAFKA_MAVEN_ARGS:-} \
      org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIB.tmp" >"$KHOME/install.log" 2>&1 \
    || { cat "$KHOME/install.log" >&2; die "maven could not resolve kafka_2.13:$VERSION"; }
  [ -f "$LIB.tmp/kafka_2.13-$VERSION.jar" ] || die "kafka_2.13-$VERSION.jar missing after mvn"
  touch "$LIB.tmp/.complete"
  rm -rf "$LIB"; mv "$LIB.tmp" "$LIB"
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

probe_python() {
  local p
  for p in "${WEIR_KAFKA_PYTHON:-}" "$HOME/.cache/weir/test-venv/bin/python" python3; do
    [ -n "$p" ] && command -v "$p" >/dev/null 2>&1 && "$p" -c 'import confluent_kafka' 2>/dev/null \
      && { echo "$p"; return 0; }
  done
  return 1
}

alive() {   # a process, not a zombie (a broker killed by the start that spawned it)
  kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

running() { [ -f "$1/kafka.pid" ] && alive "$(cat "$1/kafka.pid")"; }

start() {
  local dir="$1" port="$2" cport="${3:-}"
  [ -n "$dir" ] && [ -n "$port" ] || die "usage: kafka.sh start DIR PORT [CONTROLLER_PORT]"
  install
  mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"
  running "$dir" && die "a broker is already running from $dir (pid $(cat "$dir/kafka.pid"))"
  if [ -z "$cport" ]; then
    if [ -f "$dir/controller.port" ]; then cport="$(cat "$dir/controller.port")"; else cport="$(free_port)"; fi
  fi
  echo "$cport" >"$dir/controller.port"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/logs
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.backoff.ms=500
EOF
  cat >"$dir/log4j2.properties" <<EOF
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.raft.name = org.apache.kafka.raft
logger.raft.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
EOF
  # shellcheck disable=SC2206
  local jvm=(${WEIR_KAFKA_HEAP:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20
             -Djava.awt.headless=true -Dlog4j2.configurationFile="$dir/log4j2.properties"
             ${WEIR_KAFKA_JAVA_OPTS:-})
  if [ ! -f "$dir/logs/meta.properties" ]; then
    local cluster
    # A cluster id that starts with "-" reads as an option to StorageTool
    # (1 run in 64 failed): draw again.
    cluster="$(python3 -c '
import base64, os
while True:
    c = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    if not c.startswith("-"):
        print(c)
        break')"
    "$JAVA" "${jvm[@]}" -cp "$LIB/*" kafka.tools.StorageTool format -t "$cluster" \
        -c "$dir/server.properties" >"$dir/format.out" 2>&1 \
      || { cat "$dir/format.out" >&2; die "storage format failed"; }
  fi
  "$JAVA" "${jvm[@]}" -cp "$LIB/*" kafka.Kafka "$dir/server.properties" \
      </dev/null >>"$dir/kafka.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"
  local deadline=$((SECONDS + ${WEIR_KAFKA_START_TIMEOUT:-90}))
  until port_open "$port"; do
    alive "$pid" || { tail -50 "$dir/kafka.out" "$dir/server.log" >&2 2>/dev/null; die "broker exited"; }
    [ $SECONDS -lt $deadline ] || { stop "$dir" --kill; die "port $port not open in time"; }
    sleep 0.1
  done
  local py
  if py="$(probe_python)"; then
    # a metadata request that names this broker (the listener may open before the broker is ready)
    "$py" - "127.0.0.1:$port" $((deadline - SECONDS)) <<'EOF' || { stop "$dir" --kill; die "no metadata from the broker"; }
import sys, time
from confluent_kafka.admin import AdminClient
bootstrap, budget = sys.argv[1], max(1, int(sys.argv[2]))
end = time.time() + budget
admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
while True:
    try:
        md = admin.list_topics(timeout=2)
        if md.brokers and md.controller_id >= 0:
            break
    except Exception:
        if time.time() > end:
            raise
    time.sleep(0.1)
EOF
  else
    until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; do
      alive "$pid" || die "broker exited"
      [ $SECONDS -lt $deadline ] || { stop "$dir" --kill; die "broker not started in time"; }
      sleep 0.1
    done
  fi
  echo "kafka $VERSION ready on 127.0.0.1:$port (controller $cport, pid $pid, dir $dir)"
}

stop() {
  local dir="$1" how="${2:-}"
  [ -f "$dir/kafka.pid" ] || return 0
  local pid; pid="$(cat "$dir/kafka.pid")"
  if alive "$pid"; then
    if [ "$how" = "--kill" ]; then kill -KILL "$pid" 2>/dev/null || true
    else
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 600); do alive "$pid" || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    while alive "$pid"; do sleep 0.05; done
  fi
  rm -f "$dir/kafka.pid"
}

case "${1:-}" in
  install) install; echo "$LIB" ;;
  start)   shift; start "${1:-}" "${2:-}" "${3:-}" ;;
  stop)    shift; [ -n "${1:-}" ] || die "usage: kafka.sh stop DIR [--kill]"; stop "$1" "${2:-}" ;;
  run)     shift; install; exec "$JAVA" -cp "$LIB/*" "$@" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac
