#!/usr/bin/env bash
# The Arrow Flight SQL JDBC driver (org.apache.arrow:flight-sql-jdbc-driver, the shaded jar that
# DBeaver, DataGrip and Tableau load) and the Java programs in tests/jdbc/ that run it against Weir.
# tests/python/test_jdbc.py starts the servers and runs them; tests/run.sh calls `install`.
#
#   tests/scripts/jdbc.sh install                  # driver jar from Maven + javac of tests/jdbc (idempotent;
#                                                  # prints the class path)
#   tests/scripts/jdbc.sh smoke URL [USER PW]      # WeirJdbcSmoke against a running server, e.g.
#       tests/scripts/jdbc.sh smoke 'jdbc:arrow-flight-sql://127.0.0.1:50051?useEncryption=false' boss pw
#   tests/scripts/jdbc.sh write-once URL [USER PW] # WeirJdbcWriteOnce: every data-changing statement ×
#                                                  # every JDBC call pattern takes effect exactly once
#                                                  # (env WEIR_JDBC_EXPORT_DIR: the server's --export-dir,
#                                                  # enables the COPY cases)
#
# Env: ARROW_JDBC_VERSION (default: the newest of $candidates that Maven resolves; today 18.3.0,
#      19.0.0 is not served by the registry here), WEIR_JDBC_CACHE (default ~/.cache/weir/jdbc),
#      WEIR_JDBC_MAVEN_ARGS (extra mvn flags), JAVA_HOME (Java 17+; default: java/javac on PATH),
#      WEIR_JDBC_TRACE=1 prints stack traces of failed checks.
# Cache: flight-sql-jdbc-driver-$V.jar, classes/ (the compiled programs, rebuilt when a source or
#      the driver changes), not-served-$V (a version Maven did not resolve; retried after a day).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${WEIR_JDBC_CACHE:-$HOME/.cache/weir/jdbc}
candidates=${ARROW_JDBC_VERSION:-19.0.0 18.3.0}
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
javac=${JAVA_HOME:+$JAVA_HOME/bin/}javac
src_dir=$root/tests/jdbc/src/main/java
dependency_plugin=org.apache.maven.plugins:maven-dependency-plugin:3.11.0

log() { printf 'jdbc.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The driver jar of one version, from Maven; fails (quickly, when remembered) if not served.
fetch_driver() {
  local v=$1 jar=$cache/flight-sql-jdbc-driver-$1.jar
  [ -s "$jar" ] && return 0
  [ -n "$(find "$cache" -maxdepth 1 -name "not-served-$v" -mmin -1440 2>/dev/null)" ] && return 1
  log "org.apache.arrow:flight-sql-jdbc-driver:$v from Maven"
  # shellcheck disable=SC2086
  if mvn -q -B ${WEIR_JDBC_MAVEN_ARGS:-} "$dependency_plugin:copy" \
      -Dartifact="org.apache.arrow:flight-sql-jdbc-driver:$v" -Dmdep.overWriteReleases=true \
      -DoutputDirectory="$cache/tmp-$v" >"$cache/mvn-$v.log" 2>&1 &&
      [ -s "$cache/tmp-$v/flight-sql-jdbc-driver-$v.jar" ]; then
    mv "$cache/tmp-$v/flight-sql-jdbc-driver-$v.jar" "$jar"
    rm -rf "$cache/tmp-$v" "$cache/not-served-$v"
    return 0
  fi
  rm -rf "$cache/tmp-$v"
  if grep -q 'Could not find artifact\|was not found in\|Could not resolve' "$cache/mvn-$v.log"; then
    touch "$cache/not-served-$v"
    log "flight-sql-jdbc-driver:$v is not served by the Maven registry ($cache/mvn-$v.log)"
  else
    log "maven failed for flight-sql-jdbc-driver:$v ($cache/mvn-$v.log)"
  fi
  return 1
}

# Sets $driver_jar: the first candidate version that resolves.
driver() {
  local v
  for v in $candidates; do
    if fetch_driver "$v"; then driver_jar=$cache/flight-sql-jdbc-driver-$v.jar; return 0; fi
  done
  die "no flight-sql-jdbc-driver version resolved (tried: $candidates)"
}

install() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"; flock 9   # two test runs installing at once
  driver
  # The programs, compiled against the driver jar when a source or the jar changed.
  local stamp
  stamp=$( (echo "$driver_jar"; cat "$src_dir"/dev/weir/jdbc/*.java) | sha256sum | cut -c1-16)
  if [ "$(cat "$cache/classes/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$cache/classes.tmp" && mkdir -p "$cache/classes.tmp"
    "$javac" -nowarn -encoding UTF-8 --release 17 -d "$cache/classes.tmp" -cp "$driver_jar" \
      "$src_dir"/dev/weir/jdbc/*.java >&2
    echo "$stamp" >"$cache/classes.tmp/.stamp"
    rm -rf "$cache/classes" && mv "$cache/classes.tmp" "$cache/classes"
  fi
  exec 9>&-
  classpath=$driver_jar:$cache/classes
}

run_main() { # CLASS ARGS...
  local cls=$1
  shift
  [ $# -ge 1 ] || die "usage: jdbc.sh smoke|write-once URL [USER PASSWORD]"
  install
  # Arrow's memory module reads direct buffers' addresses: java.nio must be open to it (Java 17+).
  exec "$java" --add-opens=java.base/java.nio=ALL-UNNAMED -cp "$classpath" "dev.weir.jdbc.$cls" "$@"
}

cmd=${1:-}
shift || true
case $cmd in
  install) install && echo "$classpath" ;;
  smoke | run) run_main WeirJdbcSmoke "$@" ;;
  write-once) run_main WeirJdbcWriteOnce "$@" ;;
  *) die "usage: jdbc.sh install | smoke URL [USER PASSWORD] | write-once URL [USER PASSWORD]" ;;
esac
