#!/usr/bin/env bash
# Smoke test of the Arrow Flight SQL JDBC driver (org.apache.arrow:flight-sql-jdbc-driver,
# the jar DBeaver, DataGrip and Tableau load) against Weir: tests/jdbc/.../WeirJdbcSmoke.java.
#
#   tests/scripts/jdbc.sh install            # driver jars into the cache (idempotent)
#   tests/scripts/jdbc.sh run URI [USER PW]  # the smoke against a running server, e.g.
#       tests/scripts/jdbc.sh run 'jdbc:arrow-flight-sql://127.0.0.1:50051?useEncryption=false' boss pw
#   tests/scripts/jdbc.sh serve [WEIR_BIN]   # starts Weir twice on a temp data dir (no users,
#       then with users boss:admin / reader:read, password pw) and runs the smoke against each
#
# Env: WEIR_JDBC_CACHE (default ~/.cache/weir/jdbc), ARROW_JDBC_VERSION (default 19.0.0),
#      JAVA (default java: 11+), WEIR_JDBC_TRACE=1 prints stack traces of failed checks.
#
# Where the driver comes from: first the shaded flight-sql-jdbc-driver jar from Maven Central.
# Where that is not served (the registry here answers "not found" for flight-sql-jdbc-driver,
# flight-sql-jdbc-core and flight-sql 19.0.0, while flight-core, arrow-vector, avatica... are
# served), the same driver is compiled from Apache Arrow Java's sources of that release:
# set ARROW_JAVA_SRC to a checkout of apache/arrow-java at tag v$ARROW_JDBC_VERSION (or
# ARROW_JAVA_GIT to a git dir holding that tag). The modules flight-sql and flight-sql-jdbc-core
# are compiled with javac against their dependencies from Maven (tests/jdbc/driver-deps.pom.xml)
# and FlightSql.proto with Maven's protoc; nothing else is downloaded.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${WEIR_JDBC_CACHE:-$HOME/.cache/weir/jdbc}
version=${ARROW_JDBC_VERSION:-19.0.0}
java=${JAVA:-java}
classpath_file=$cache/classpath-$version
smoke=$root/tests/jdbc/src/main/java/dev/weir/jdbc/WeirJdbcSmoke.java

log() { printf 'jdbc.sh: %s\n' "$*" >&2; }

# 1. The shaded driver jar as published (one try; a "not found" is remembered).
install_published() {
  local dir=$cache/published-$version
  [ -e "$cache/not-served-$version" ] && return 1
  mkdir -p "$dir"
  cat >"$dir/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>dev.weir.tests</groupId><artifactId>jdbc-driver</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.arrow</groupId><artifactId>flight-sql-jdbc-driver</artifactId>
<version>$version</version></dependency></dependencies></project>
EOF
  if mvn -q -B -f "$dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$dir/lib" >"$dir/mvn.log" 2>&1; then
    echo "$dir/lib/*" >"$classpath_file"
    log "driver: org.apache.arrow:flight-sql-jdbc-driver:$version from Maven"
    return 0
  fi
  if grep -q 'Could not find artifact org.apache.arrow:flight-sql-jdbc-driver' "$dir/mvn.log"; then
    touch "$cache/not-served-$version"
    log "org.apache.arrow:flight-sql-jdbc-driver:$version is not served by the registry"
  else
    log "maven failed (see $dir/mvn.log)"
  fi
  return 1
}

# 2. The same driver compiled from the release's sources.
install_from_source() {
  local src=$cache/src-$version lib=$cache/lib-$version out=$cache/build-$version
  local jar=$cache/flight-sql-jdbc-core-$version-from-source.jar
  if [ ! -d "$src/flight/flight-sql-jdbc-core" ]; then
    rm -rf "$src" && mkdir -p "$src"
    local paths=(flight/flight-sql/src/main flight/flight-sql-jdbc-core/src/main arrow-format/FlightSql.proto)
    if [ -n "${ARROW_JAVA_SRC:-}" ]; then
      (cd "$ARROW_JAVA_SRC" && tar -cf - "${paths[@]}") | tar -xf - -C "$src"
    elif [ -n "${ARROW_JAVA_GIT:-}" ]; then
      git --git-dir="$ARROW_JAVA_GIT" archive "v$version" "${paths[@]}" | tar -xf - -C "$src"
    else
      rm -rf "$src"
      log "the published driver is not available: set ARROW_JAVA_SRC (a checkout of apache/arrow-java"
      log "at tag v$version) or ARROW_JAVA_GIT (a git dir with that tag) to build it from source"
      return 1
    fi
  fi
  log "dependencies from Maven (tests/jdbc/driver-deps.pom.xml) into $lib"
  rm -rf "$lib"
  mvn -q -B -f "$root/tests/jdbc/driver-deps.pom.xml" -Darrow.version="$version" \
    dependency:copy-dependencies -DoutputDirectory="$lib" >&2
  local pb
  pb=$(basename "$(ls "$lib"/protobuf-java-4*.jar | head -1)" .jar)
  pb=${pb#protobuf-java-}
  mvn -q -B dependency:copy -Dartifact="com.google.protobuf:protoc:$pb:exe:linux-x86_64" \
    -DoutputDirectory="$cache/protoc" >&2
  local protoc=$cache/protoc/protoc-$pb-linux-x86_64.exe
  chmod +x "$protoc"
  rm -rf "$out" && mkdir -p "$out/wkt" "$out/gen" "$out/classes"
  (cd "$out/wkt" && unzip -q "$lib/protobuf-java-$pb.jar" 'google/protobuf/*.proto')
  "$protoc" -I"$out/wkt" -I"$src/arrow-format" --java_out="$out/gen" "$src/arrow-format/FlightSql.proto"
  # The demo app needs commons-cli; module-info files are not used on the class path.
  find "$src/flight" "$out/gen" -name '*.java' ! -name FlightSqlClientDemoApp.java ! -name module-info.java >"$out/sources.txt"
  log "javac $(wc -l <"$out/sources.txt") files"
  javac -nowarn -encoding UTF-8 --release 11 -proc:none -d "$out/classes" -cp "$lib/*" @"$out/sources.txt" 2>&1 |
    grep -v '^Note:' >&2 || true
  cp -r "$src/flight/flight-sql-jdbc-core/src/main/resources/." "$out/classes/"
  sed -i "s/\${project.name}/Arrow Flight SQL JDBC Driver/; s/\${project.groupId}/org.apache.arrow/;
          s/\${project.artifactId}/flight-sql-jdbc-core/; s/\${project.version}/$version/g" \
    "$out/classes/properties/flight.properties"
  jar cf "$jar" -C "$out/classes" .
  echo "$jar:$lib/*" >"$classpath_file"
  log "driver: flight-sql-jdbc-core $version compiled from source -> $jar"
}

install() {
  mkdir -p "$cache"
  if [ -s "$classpath_file" ]; then
    local first
    first=$(cut -d: -f1 "$classpath_file")
    if [ -e "${first%/\*}" ]; then return 0; fi
  fi
  install_published || install_from_source
}

run() {
  [ $# -ge 1 ] || { log "usage: jdbc.sh run URI [USER PASSWORD]"; exit 2; }
  install
  "$java" --add-opens=java.base/java.nio=ALL-UNNAMED -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
    -cp "$(cat "$classpath_file")" "$smoke" "$@"
}

serve() {
  local bin=${1:-$root/target/debug/weir}
  install
  local tmp rc=0
  tmp=$(mktemp -d)
  start() { # data-dir log [--users ...]
    local data=$1 logf=$2
    shift 2
    "$bin" serve --listen 127.0.0.1:0 --data-dir "$data" --http-listen off --log debug "$@" >"$logf.out" 2>"$logf.err" &
    server_pid=$!
    for _ in $(seq 100); do
      port=$(sed -n 's/^weir: Flight SQL listening on 127.0.0.1:\([0-9]*\)$/\1/p' "$logf.out")
      [ -n "$port" ] && return 0
      sleep 0.2
    done
    log "weir did not start: $(tail -5 "$logf.err")"
    kill "$server_pid"
    return 1
  }
  local server_pid port hash
  start "$tmp/data-anon" "$tmp/anon"
  log "anonymous (no users) on port $port; server log $tmp/anon.err"
  run "jdbc:arrow-flight-sql://127.0.0.1:$port?useEncryption=false" || rc=1
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  hash=$(printf %s pw | "$bin" hash-password)
  start "$tmp/data-users" "$tmp/users" --users "boss:admin:$hash;reader:read:$hash"
  log "user boss (admin) on port $port; server log $tmp/users.err"
  run "jdbc:arrow-flight-sql://127.0.0.1:$port?useEncryption=false" boss pw || rc=1
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  return $rc
}

cmd=${1:-}
shift || true
case $cmd in
  install) install ;;
  run) run "$@" ;;
  serve) serve "$@" ;;
  *) log "usage: jdbc.sh install | run URI [USER PASSWORD] | serve [WEIR_BIN]"; exit 2 ;;
esac
