"""Spark and Weir share one lakehouse: Apache Spark (PySpark, local[2], with the
Iceberg Spark runtime; tests/scripts/spark.sh) opens Weir's embedded SQLite
catalog through Iceberg's JdbcCatalog while Weir serves. Each engine writes,
evolves and deletes in the tables the other reads, and Spark's answer is the
oracle for Weir's: counts, sums, filters (pruning must not lose rows), after
schema evolution, after position deletes / deletion vectors / copy-on-write
rewrites, and after `weir maintain compact`."""

from __future__ import annotations

import datetime as dt
import decimal
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from weir_harness import REPO_ROOT, connect, execute, fetch_rows, weir_binary

SPARK_SH = REPO_ROOT / "tests" / "scripts" / "spark.sh"
UTC = dt.timezone.utc


def spark_install() -> tuple[Path, Path] | None:
    """(PySpark dir, jar dir) of `spark.sh install`, or None when it was not run."""
    out = subprocess.run([str(SPARK_SH), "env"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    pydir, jars = out.stdout.split()
    return Path(pydir), Path(jars)


def spark_conf(data_dir: Path, jar_dir: Path) -> dict[str, str]:
    """The Spark settings that open Weir's embedded lakehouse (README: "Sharing
    tables with Spark")."""
    return {
        "spark.jars": ",".join(sorted(glob.glob(f"{jar_dir}/*.jar"))),
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        "spark.sql.catalog.weir": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.catalog.weir.type": "jdbc",
        "spark.sql.catalog.weir.uri": f"jdbc:sqlite:{data_dir}/catalog.db",
        "spark.sql.catalog.weir.jdbc.schema-version": "V1",
        "spark.sql.catalog.weir.warehouse": f"file://{data_dir}/warehouse",
        # Weir commits while Spark runs: load the table on every query.
        "spark.sql.catalog.weir.cache-enabled": "false",
        "spark.sql.defaultCatalog": "weir",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        # Small and local: nothing listens beyond 127.0.0.1.
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.driver.memory": "1g",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.default.parallelism": "2",
        "spark.sql.adaptive.coalescePartitions.enabled": "true",
    }


@pytest.fixture(scope="module")
def spark(weir_server):
    install = spark_install()
    if install is None:
        pytest.skip("Spark is not installed: run `tests/scripts/spark.sh install` (tests/run.sh does)")
    pydir, jar_dir = install
    sys.path.insert(0, str(pydir))
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.pop("SPARK_HOME", None)
    # PySpark turns timestamps into naive datetimes in the process's local time.
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName("weir-spark-interop")
    for key, value in spark_conf(weir_server.data_dir, jar_dir).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


@pytest.fixture(scope="module")
def conn(weir_server):
    c = connect(weir_server.uri)
    yield c
    c.close()


# --- comparing answers ----------------------------------------------------------


def norm(value):
    """One form for both engines' Python values (Spark: Row, dict for maps;
    ADBC: dict for structs, list of pairs for maps)."""
    if hasattr(value, "asDict"):
        return {k: norm(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: norm(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [norm(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, decimal.Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def rows_of(rows) -> list[tuple]:
    return sorted((tuple(norm(v) for v in row) for row in rows), key=repr)


def spark_rows(spark, sql: str) -> list[tuple]:
    return rows_of(spark.sql(sql).collect())


def weir_rows(conn, sql: str) -> list[tuple]:
    return rows_of(fetch_rows(conn, sql))


def agree(conn, spark, sql, spark_sql: str | None = None) -> list[tuple]:
    """Weir's rows (sorted) equal Spark's for the same query; returns them."""
    expected = spark_rows(spark, spark_sql or sql)
    got = weir_rows(conn, sql)
    assert got == expected, f"{sql}\n  weir:  {got[:20]}\n  spark: {expected[:20]}"
    return got


def spark_exec(spark, *statements: str) -> None:
    for sql in statements:
        spark.sql(sql).collect()


def weir_exec(conn, *statements: str) -> None:
    for sql in statements:
        execute(conn, sql)


def maintain_compact(data_dir: Path, table: str) -> str:
    out = subprocess.run(
        [str(weir_binary()), "maintain", "compact", table, "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


# --- Weir writes, Spark reads -----------------------------------------------------


def test_weir_writes_spark_reads(conn, spark):
    weir_exec(
        conn,
        "CREATE SCHEMA ws",
        "CREATE TABLE ws.readings (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, "
        "value DOUBLE, n BIGINT) PARTITIONED BY (day(ts), bucket(4, device_id))",
        # 500 rows over six days, every 17 minutes, five devices; two commits.
        "INSERT INTO ws.readings SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value FROM generate_series(0, 299)",
        "INSERT INTO ws.readings SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value FROM generate_series(300, 499)",
        "INSERT INTO ws.readings VALUES (TIMESTAMP '2026-01-03 12:00:00', 'dev-9', NULL, NULL)",
        "CREATE TABLE ws.per_device AS SELECT device_id, count(*) AS n, sum(value) AS total "
        "FROM ws.readings GROUP BY device_id",
    )
    rows = agree(conn, spark, "SELECT count(*), sum(value), sum(n), count(value), min(ts), max(ts) FROM ws.readings")
    assert rows[0][0] == 501
    agree(conn, spark, "SELECT device_id, count(*), sum(value), max(n) FROM ws.readings GROUP BY device_id")
    # Filters on the partition source columns (day and bucket pruning).
    rows = agree(
        conn, spark,
        "SELECT count(*), sum(n) FROM ws.readings "
        "WHERE ts >= TIMESTAMP '2026-01-03 00:00:00' AND ts < TIMESTAMP '2026-01-04 12:00:00'",
    )
    assert rows[0][0] > 0
    agree(conn, spark, "SELECT count(*), sum(value) FROM ws.readings WHERE device_id = 'dev-3' AND n > 100")
    agree(conn, spark, "SELECT count(*) FROM ws.readings WHERE device_id IN ('dev-1', 'dev-9')")
    agree(conn, spark, "SELECT count(*) FROM ws.readings WHERE value IS NULL")
    agree(conn, spark, "SELECT * FROM ws.per_device")
    # Spark sees Weir's partitions: rows per day from Spark's metadata == Weir's rows per day.
    by_day = spark_rows(spark, "SELECT partition.ts_day, sum(record_count) FROM ws.readings.partitions GROUP BY 1")
    assert by_day == weir_rows(conn, "SELECT CAST(ts AS DATE), count(*) FROM ws.readings GROUP BY 1")
    assert sum(n for _, n in by_day) == 501


def test_weir_silver_points_spark_reads(conn, spark):
    """The pipeline's own Silver table (timestamptz, day(ts), a map column)."""
    weir_exec(
        conn,
        "INSERT INTO silver.points (ts, device_id, metric, value, quality, unit, source, labels) "
        "SELECT to_timestamp_seconds(1772323200 + value * 617), concat('pump-', value % 7), "
        "CASE WHEN value % 2 = 0 THEN 'temperature' ELSE 'pressure' END, value * 0.25, "
        "CAST(value % 3 AS INT), 'u', 'sql', "
        "CASE WHEN value % 2 = 0 THEN map(['site'], ['s0']) ELSE map(['site'], ['s1']) END "
        "FROM generate_series(0, 399)",
    )
    rows = agree(conn, spark, "SELECT count(*), sum(value), min(ts), max(ts) FROM silver.points")
    assert rows[0][0] == 400
    agree(conn, spark, "SELECT metric, device_id, count(*), sum(value), sum(quality) FROM silver.points GROUP BY 1, 2")
    agree(
        conn, spark,
        "SELECT count(*), sum(value) FROM silver.points "
        "WHERE ts >= TIMESTAMP '2026-03-02 00:00:00+00:00' AND ts < TIMESTAMP '2026-03-03 06:00:00+00:00'",
        "SELECT count(*), sum(value) FROM silver.points "
        "WHERE ts >= TIMESTAMP '2026-03-02 00:00:00' AND ts < TIMESTAMP '2026-03-03 06:00:00'",
    )
    agree(conn, spark, "SELECT labels['site'], count(*) FROM silver.points WHERE quality = 0 GROUP BY 1")


# --- Spark writes, Weir reads -----------------------------------------------------


def test_spark_writes_weir_reads(conn, spark):
    spark_exec(
        spark,
        "CREATE NAMESPACE sw",
        "CREATE TABLE sw.events (id BIGINT, ts TIMESTAMP, device STRING, value DOUBLE, "
        "attrs STRUCT<site: STRING, line: INT>) USING iceberg PARTITIONED BY (days(ts)) "
        "TBLPROPERTIES ('format-version' = '2')",
        "INSERT INTO sw.events SELECT id, timestamp_seconds(1769904000 + id * 700), concat('d', id % 4), "
        "id * 1.5, named_struct('site', concat('s', id % 3), 'line', CAST(id % 5 AS INT)) FROM range(0, 400)",
        "INSERT INTO sw.events VALUES (1000, TIMESTAMP '2026-02-02 10:00:00', 'd9', NULL, NULL)",
    )
    agree(conn, spark, "SELECT count(*), sum(value), min(ts), max(ts), count(attrs) FROM sw.events")
    agree(conn, spark, "SELECT device, count(*), sum(value) FROM sw.events GROUP BY device")
    agree(conn, spark, "SELECT count(*) FROM sw.events WHERE ts < TIMESTAMP '2026-02-03 00:00:00+00:00'",
          "SELECT count(*) FROM sw.events WHERE ts < TIMESTAMP '2026-02-03 00:00:00'")
    agree(conn, spark, "SELECT id, attrs FROM sw.events WHERE id < 10 OR id >= 1000")
    agree(conn, spark, "SELECT get_field(attrs, 'site'), sum(id) FROM sw.events GROUP BY 1",
          "SELECT attrs.site, sum(id) FROM sw.events GROUP BY 1")

    # INSERT OVERWRITE, dynamic: replaces the days the query writes, keeps the others.
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        spark_exec(
            spark,
            "INSERT OVERWRITE sw.events SELECT id + 5000, ts, device, -value, attrs FROM sw.events "
            "WHERE ts >= TIMESTAMP '2026-02-02 00:00:00' AND ts < TIMESTAMP '2026-02-03 00:00:00'",
        )
    finally:
        spark.conf.unset("spark.sql.sources.partitionOverwriteMode")
    rows = agree(conn, spark, "SELECT count(*), sum(id), sum(value) FROM sw.events")
    agree(conn, spark, "SELECT device, count(*), sum(value) FROM sw.events WHERE id > 5000 GROUP BY device")
    assert rows[0][0] == 401

    # MERGE INTO (copy-on-write, the default): updates, inserts.
    spark_exec(
        spark,
        "MERGE INTO sw.events t USING (SELECT id, id * 100.0 AS v FROM range(390, 420)) s ON t.id = s.id "
        "WHEN MATCHED THEN UPDATE SET t.value = s.v "
        "WHEN NOT MATCHED THEN INSERT (id, ts, device, value, attrs) "
        "VALUES (s.id, TIMESTAMP '2026-02-06 00:00:00', 'merged', s.v, NULL)",
    )
    agree(conn, spark, "SELECT count(*), sum(id), sum(value) FROM sw.events")
    agree(conn, spark, "SELECT id, device, value FROM sw.events WHERE id BETWEEN 385 AND 425")

    # Unpartitioned: a static INSERT OVERWRITE replaces everything.
    spark_exec(
        spark,
        "CREATE TABLE sw.flat (k STRING, n INT) USING iceberg",
        "INSERT INTO sw.flat VALUES ('a', 1), ('b', 2), ('c', 3)",
    )
    agree(conn, spark, "SELECT k, n FROM sw.flat")
    spark_exec(spark, "INSERT OVERWRITE sw.flat VALUES ('x', 10), ('y', 20)")
    assert agree(conn, spark, "SELECT k, n FROM sw.flat") == [("x", 10), ("y", 20)]
