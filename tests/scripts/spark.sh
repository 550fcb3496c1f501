#!/usr/bin/env bash
# Apache Spark (PySpark, local mode) with the Iceberg runtime for the Spark interop tests
# (tests/python/test_spark_interop.py), installed from PyPI and Maven Central only.
#
# usage:
#   spark.sh install    PySpark into $WEIR_SPARK_HOME/pyspark-$VERSION (a `pip install --target` dir, put on
#                       sys.path by the tests) and the jars Spark loads into $WEIR_SPARK_HOME/jars-$ICEBERG:
#                       iceberg-spark-runtime, sqlite-jdbc (Weir's embedded catalog.db), postgresql (a
#                       PostgreSQL catalog), iceberg-aws-bundle (the AWS SDK that the runtime's S3FileIO
#                       needs: an s3:// warehouse); idempotent, a no-op when warm; prints "PYTHONPATH JARDIR"
#   spark.sh env        prints the same line (exit 1 if not installed)
#
# env: WEIR_SPARK_VERSION (PySpark, 4.1.4), WEIR_ICEBERG_VERSION (1.12.0), WEIR_SPARK_HOME
#      ($HOME/.cache/weir/spark), WEIR_SPARK_PIP (default: the test venv's pip, else pip3),
#      WEIR_SPARK_MAVEN_ARGS (extra mvn flags).
#
# Why not tests/python/requirements.txt: the PySpark distribution carries Spark's own ~400 MB of jars
# and is built from an sdist; keeping it in its own cached directory leaves the test venv small
# for everyone who does not run the Spark tests, and lets its version move with the Iceberg
# runtime (iceberg-spark-runtime-4.1_2.13 is built for Spark 4.1: the minor versions must match).
set -euo pipefail

VERSION="${WEIR_SPARK_VERSION:-4.1.4}"
ICEBERG="${WEIR_ICEBERG_VERSION:-1.12.0}"
SPARK_BINARY="${VERSION%.*}"                # 4.1: the runtime artifact is per Spark minor version
SQLITE_JDBC=3.54.1.0
PG_JDBC=42.7.14
SHOME="${WEIR_SPARK_HOME:-$HOME/.cache/weir/spark}"
PYDIR="$SHOME/pyspark-$VERSION"
JARS="$SHOME/jars-iceberg-$ICEBERG-spark-$SPARK_BINARY"

die() { echo "spark.sh: $*" >&2; exit 1; }

pip_cmd() {
  if [ -n "${WEIR_SPARK_PIP:-}" ]; then echo "$WEIR_SPARK_PIP"
  elif [ -x "$HOME/.cache/weir/test-venv/bin/pip" ]; then echo "$HOME/.cache/weir/test-venv/bin/pip"
  else echo pip3; fi
}

install_pyspark() {
  [ -f "$PYDIR/.complete" ] && return 0
  rm -rf "$PYDIR.tmp"
  "$(pip_cmd)" install -q --disable-pip-version-check --no-warn-script-location \
      --target "$PYDIR.tmp" "pyspark==$VERSION" >"$SHOME/pip.log" 2>&1 \
    || { cat "$SHOME/pip.log" >&2; die "pip could not install pyspark==$VERSION"; }
  [ -d "$PYDIR.tmp/pyspark/jars" ] || die "pyspark installed without its jars"
  touch "$PYDIR.tmp/.complete"
  rm -rf "$PYDIR"; mv "$PYDIR.tmp" "$PYDIR"
}

# Complete and current: a cache made before the AWS bundle joined the list is fetched again.
jars_complete() { [ -f "$JARS/.complete" ] && [ -f "$JARS/iceberg-aws-bundle-$ICEBERG.jar" ]; }

install_jars() {
  jars_complete && return 0
  cat >"$SHOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>weir.tests</groupId><artifactId>spark-jars</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <!-- shaded: Iceberg core, Parquet, the JDBC catalog; Spark itself comes with PySpark -->
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-spark-runtime-${SPARK_BINARY}_2.13</artifactId><version>$ICEBERG</version></dependency>
    <dependency><groupId>org.xerial</groupId><artifactId>sqlite-jdbc</artifactId><version>$SQLITE_JDBC</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.postgresql</groupId><artifactId>postgresql</artifactId><version>$PG_JDBC</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <!-- the AWS SDK, shaded, for org.apache.iceberg.aws.s3.S3FileIO (in the runtime jar, without the SDK) -->
    <dependency><groupId>org.apache.iceberg</groupId><artifactId>iceberg-aws-bundle</artifactId><version>$ICEBERG</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
  </dependencies>
</project>
EOF
  rm -rf "$JARS.tmp"
  # shellcheck disable=SC2086
  mvn -q -B -f "$SHOME/pom.xml" ${WEIR_SPARK_MAVEN_ARGS:-} \
      org.apache.maven.plugins:maven-dependency-plugin:3.11.0:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$JARS.tmp" >"$SHOME/mvn.log" 2>&1 \
    || { cat "$SHOME/mvn.log" >&2; die "maven could not resolve the Spark jars (iceberg $ICEBERG, spark $SPARK_BINARY)"; }
  [ -f "$JARS.tmp/iceberg-spark-runtime-${SPARK_BINARY}_2.13-$ICEBERG.jar" ] || die "iceberg runtime jar missing after mvn"
  [ -f "$JARS.tmp/iceberg-aws-bundle-$ICEBERG.jar" ] || die "iceberg-aws-bundle jar missing after mvn"
  touch "$JARS.tmp/.complete"
  rm -rf "$JARS"; mv "$JARS.tmp" "$JARS"
}

install() {
  if [ -f "$PYDIR/.complete" ] && jars_complete; then return 0; fi
  mkdir -p "$SHOME"
  exec 9>"$SHOME/.lock"; flock 9          # two test runs installing at once
  install_pyspark
  install_jars
}

case "${1:-}" in
  install) install; echo "$PYDIR $JARS" ;;
  env)     [ -f "$PYDIR/.complete" ] && [ -f "$JARS/.complete" ] || exit 1; echo "$PYDIR $JARS" ;;
  *) sed -n '2,19p' "$0" >&2; exit 2 ;;
esac
