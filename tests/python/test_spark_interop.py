"""Spark and Weir share one lakehouse: Apache Spark (PySpark, local[2], with the
Iceberg Spark runtime; tests/scripts/spark.sh) opens Weir's embedded SQLite
catalog through Iceberg's JdbcCatalog while Weir serves. Each engine writes,
evolves and deletes in the tables the other reads, and Spark's answer is the
oracle for Weir's: counts, sums, filters (pruning must not lose rows), after
schema evolution, after position deletes / deletion vectors / copy-on-write
rewrites, and after `weir maintain compact`."""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import glob
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
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
        # Tiny tables: skip adaptive re-planning and whole-stage code generation
        # (compiling each new query costs more than running it).
        "spark.sql.adaptive.enabled": "false",
        "spark.sql.codegen.wholeStage": "false",
        "spark.ui.showConsoleProgress": "false",
        # Results reach Python through a local socket that the JVM closes when
        # Python has not connected within this (15 s by default: once hit on a
        # loaded 2-core machine).
        "spark.python.authenticate.socketTimeout": "120s",
    }


@contextlib.contextmanager
def start_spark(conf: dict[str, str], app: str = "weir-spark-interop") -> Iterator:
    """A local[2] SparkSession with `conf` (its JVM ends on exit); skips the
    test when `spark.sh install` was not run. Shared with
    test_spark_s3_postgres.py."""
    install = spark_install()
    if install is None:
        pytest.skip("Spark is not installed: run `tests/scripts/spark.sh install` (tests/run.sh does)")
    pydir, _ = install
    sys.path.insert(0, str(pydir))
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ.pop("SPARK_HOME", None)
    # PySpark turns timestamps into naive datetimes in the process's local time.
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[2]").appName(app)
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    gateway = session.sparkContext._gateway
    try:
        yield session
    finally:
        session.stop()
        # End the JVM this session started (it would otherwise hold its heap
        # until pytest exits): it leaves when its stdin closes.
        from pyspark import SparkContext

        gateway.shutdown()
        gateway.proc.stdin.close()
        try:
            gateway.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            gateway.proc.kill()
            gateway.proc.wait()
        SparkContext._gateway = None
        SparkContext._jvm = None
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


@pytest.fixture(scope="module")
def spark(weir_server):
    install = spark_install()
    if install is None:
        pytest.skip("Spark is not installed: run `tests/scripts/spark.sh install` (tests/run.sh does)")
    with start_spark(spark_conf(weir_server.data_dir, install[1])) as session:
        yield session


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


def weir_maintain(data_dir: Path, *args: str) -> str:
    out = subprocess.run(
        [str(weir_binary()), "maintain", *args, "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


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


# --- Spark evolves the schema while Weir serves -----------------------------------

# name: (columns, partitioning, rows before (a Spark SELECT over range(0, 40) as id),
#        ALTER TABLE clauses, rows after (Spark), a Weir INSERT after, changed column, filters on it,
#        column and filter checked before the change)
EVOLUTIONS = {
    "rename": (
        "id BIGINT, site STRING, reading BIGINT", "",
        "SELECT id, concat('s', id % 3), id * 10",
        ["RENAME COLUMN reading TO value"],
        "SELECT id + 100, 'n', id * 10",
        "(500, 'w', 7)",
        "value", ["value > 150", "value IS NULL", "site = 's1' AND value < 200"],
        "reading", "reading > 150",
    ),
    "drop_and_readd": (
        "id BIGINT, site STRING, reading BIGINT", "",
        "SELECT id, concat('s', id % 3), id * 10",
        ["DROP COLUMN reading", "ADD COLUMN reading BIGINT"],
        "SELECT id + 100, 'n', id * 3",
        "(500, 'w', 7)",
        "reading", ["reading IS NULL", "reading > 5", "reading < 50"],
        "reading", "reading > 150",
    ),
    "int_to_bigint": (
        "id BIGINT, i INT", "",
        "SELECT id, CAST(id * 50000000 AS INT)",
        ["ALTER COLUMN i TYPE BIGINT"],
        "SELECT id + 100, 3000000000 + id",
        "(500, 5000000000)",
        "i", ["i > 1000000000", "i > 2147483647", "i < 100000000"],
        "i", "i > 1000000000",
    ),
    "float_to_double": (
        "id BIGINT, f FLOAT", "",
        "SELECT id, CAST(id AS FLOAT) * CAST(0.5 AS FLOAT)",
        ["ALTER COLUMN f TYPE DOUBLE"],
        "SELECT id + 100, CAST(id AS DOUBLE) / 3",
        "(500, 1.0E300)",
        "f", ["f > 10.5", "f <= 2.5", "f > 1.0E40"],
        "f", "f > 10.5",
    ),
    "add_columns": (
        "id BIGINT, v INT", "",
        "SELECT id, CAST(id AS INT)",
        ["ADD COLUMN score DOUBLE", "ADD COLUMN tag STRING"],
        "SELECT id + 100, CAST(id AS INT), id * 0.25, concat('t', id % 2)",
        "(500, 5, 9.5, 'w')",
        "score", ["score IS NULL", "score > 2", "tag = 't1'"],
        "v", "v > 10",
    ),
    "partition_spec": (
        "id BIGINT, ts TIMESTAMP, v INT", "PARTITIONED BY (days(ts))",
        "SELECT id, timestamp_seconds(1767225600 + id * 7200), CAST(id AS INT)",
        ["ADD PARTITION FIELD bucket(4, id)", "REPLACE PARTITION FIELD ts_day WITH hours(ts)"],
        "SELECT id + 100, timestamp_seconds(1767225600 + id * 5400), CAST(id AS INT)",
        "(500, TIMESTAMP '2026-01-02 03:04:05', 500)",
        "v", ["ts >= TIMESTAMP '2026-01-02 00:00:00' AND ts < TIMESTAMP '2026-01-02 12:00:00'",
              "id IN (3, 103, 500)", "v > 30"],
        "v", "ts >= TIMESTAMP '2026-01-02 00:00:00' AND ts < TIMESTAMP '2026-01-02 12:00:00'",
    ),
    "nested_rename": (
        "id BIGINT, s STRUCT<x: INT, y: STRING>", "",
        "SELECT id, named_struct('x', CAST(id AS INT), 'y', concat('y', id % 2))",
        ["RENAME COLUMN s.x TO x2", "ADD COLUMN s.z BIGINT"],
        "SELECT id + 100, named_struct('x2', CAST(id AS INT), 'y', 'n', 'z', id * 7)",
        "(500, named_struct('x2', 5, 'y', 'w', 'z', 55))",
        "s.x2", ["s.x2 > 30", "s.z IS NULL", "s.y = 'y1'"],
        "s.x", "s.x > 30",
    ),
}


def check_table(conn, spark, table: str, column: str, predicates: list[str]) -> None:
    """Every row, then count/sum/min/max of `column` overall and under each
    filter (one UNION ALL query: each branch is planned, and pruned, alone)."""
    agree(conn, spark, f"SELECT * FROM {table}")
    branches = [f"SELECT 0, count(*), sum({column}), count({column}), min({column}), max({column}) FROM {table}"]
    branches += [
        f"SELECT {i}, count(*), sum({column}), count({column}), min({column}), max({column}) FROM {table} WHERE {p}"
        for i, p in enumerate(predicates, 1)
    ]
    agree(conn, spark, " UNION ALL ".join(branches))


@pytest.mark.parametrize("case", list(EVOLUTIONS))
def test_spark_schema_change_weir_answers(conn, spark, case):
    columns, partitioning, before, alters, after, weir_values, column, predicates, *first = EVOLUTIONS[case]
    table = f"evo.{case}"
    spark_exec(
        spark,
        "CREATE NAMESPACE IF NOT EXISTS evo",
        f"CREATE TABLE {table} ({columns}) USING iceberg {partitioning} TBLPROPERTIES ('format-version' = '2')",
        f"INSERT INTO {table} {before} FROM range(0, 40)",
    )
    check_table(conn, spark, table, first[0], [first[1]])
    for clause in alters:
        spark_exec(spark, f"ALTER TABLE {table} {clause}")
    check_table(conn, spark, table, column, predicates)
    spark_exec(spark, f"INSERT INTO {table} {after} FROM range(0, 40)")
    check_table(conn, spark, table, column, predicates)
    # Weir writes into the evolved table; Spark reads Weir's row back.
    weir_exec(conn, f"INSERT INTO {table} VALUES {weir_values}")
    assert spark_rows(spark, f"SELECT count(*) FROM {table} WHERE id = 500") == [(1,)]
    check_table(conn, spark, table, column, predicates)


# --- Spark deletes, updates and merges; Weir compacts -------------------------------

# name: (format-version, write.delete/update/merge.mode)
ROW_LEVEL_MODES = {
    "merge_on_read_v2": ("2", "merge-on-read"),   # position delete files
    "copy_on_write_v2": ("2", "copy-on-write"),   # rewritten data files
    "merge_on_read_v3": ("3", "merge-on-read"),   # deletion vectors (Puffin)
}


def check_rows(conn, spark, table: str) -> None:
    agree(conn, spark, f"SELECT * FROM {table}")
    agree(conn, spark, f"SELECT count(*) FROM {table}")   # Weir's count from metadata
    agree(
        conn, spark,
        f"SELECT 0, count(*), sum(value), sum(id) FROM {table} "
        f"UNION ALL SELECT 1, count(*), sum(value), sum(id) FROM {table} WHERE id BETWEEN 95 AND 305 "
        f"UNION ALL SELECT 2, count(*), sum(value), sum(id) FROM {table} WHERE device = 'd2' "
        f"UNION ALL SELECT 3, count(*), sum(value), sum(id) FROM {table} "
        f"WHERE ts >= TIMESTAMP '2026-04-02 00:00:00' AND ts < TIMESTAMP '2026-04-03 00:00:00'",
    )


DELETION_VECTORS_UNSUPPORTED = (
    "iceberg-rust 0.10.1 reads no deletion vectors (format-version 3): after Spark's first DELETE, "
    "Weir's query fails with 'Failed to load Parquet metadata ... Corrupt footer' (the Puffin file is "
    "opened as a Parquet position-delete file), and `weir maintain compact` refuses with the same "
    "error, leaving the table as it was"
)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=DELETION_VECTORS_UNSUPPORTED))
        if ROW_LEVEL_MODES[case][0] == "3" else case
        for case in ROW_LEVEL_MODES
    ],
)
def test_spark_row_level_changes_weir_answers(conn, spark, weir_server, case):
    version, mode = ROW_LEVEL_MODES[case]
    table = f"rows.{case}"
    spark_exec(
        spark,
        "CREATE NAMESPACE IF NOT EXISTS rows",
        f"CREATE TABLE {table} (id BIGINT, ts TIMESTAMP_NTZ, device STRING, value DOUBLE) USING iceberg "
        f"PARTITIONED BY (days(ts)) TBLPROPERTIES ('format-version' = '{version}', "
        f"'write.delete.mode' = '{mode}', 'write.update.mode' = '{mode}', 'write.merge.mode' = '{mode}')",
        # Three days, two commits: several data files per day.
        f"INSERT INTO {table} SELECT id, timestamp_seconds(1775001600 + id * 700)::timestamp_ntz, "
        f"concat('d', id % 4), id * 0.5 FROM range(0, 200)",
        f"INSERT INTO {table} SELECT id, timestamp_seconds(1775001600 + id * 700)::timestamp_ntz, "
        f"concat('d', id % 4), id * 0.5 FROM range(200, 360)",
    )
    check_rows(conn, spark, table)

    spark_exec(spark, f"DELETE FROM {table} WHERE id % 7 = 0")
    check_rows(conn, spark, table)
    spark_exec(spark, f"DELETE FROM {table} WHERE id BETWEEN 100 AND 110 OR device = 'd3' AND id > 300")
    check_rows(conn, spark, table)
    spark_exec(spark, f"UPDATE {table} SET value = -value, device = 'upd' WHERE id % 5 = 1")
    check_rows(conn, spark, table)
    spark_exec(
        spark,
        f"MERGE INTO {table} t USING (SELECT id FROM range(340, 380)) s ON t.id = s.id "
        "WHEN MATCHED AND s.id % 2 = 0 THEN DELETE "
        "WHEN MATCHED THEN UPDATE SET t.value = s.id * 1000 "
        "WHEN NOT MATCHED THEN INSERT (id, ts, device, value) "
        "VALUES (s.id, TIMESTAMP_NTZ '2026-04-02 12:00:00', 'merged', s.id * 2.0)",
    )
    check_rows(conn, spark, table)

    content = spark_rows(spark, f"SELECT content, file_format, count(*) FROM {table}.delete_files GROUP BY 1, 2")
    if mode == "merge-on-read":
        # The deletes really are delete files: position deletes (v2), deletion vectors (v3).
        assert content and all(c == 1 for c, _, _ in content), content
        assert {f for _, f, _ in content} == ({"PUFFIN"} if version == "3" else {"PARQUET"}), content
    else:
        assert content == [], content

    maintain_compact(weir_server.data_dir, table)
    check_rows(conn, spark, table)

    # Weir appends to the table Spark changed; Spark reads them back.
    weir_exec(
        conn,
        f"INSERT INTO {table} VALUES (900, TIMESTAMP '2026-04-02 06:00:00', 'weir', 9.5), "
        "(901, TIMESTAMP '2026-04-05 06:00:00', 'weir', 10.5)",
    )
    assert spark_rows(spark, f"SELECT id, value FROM {table} WHERE device = 'weir'") == [(900, 9.5), (901, 10.5)]
    check_rows(conn, spark, table)
    spark_exec(spark, f"DELETE FROM {table} WHERE id = 900 OR id % 3 = 0")
    check_rows(conn, spark, table)


def write_equality_deletes(spark, table: str, column: str, values: list[str]) -> None:
    """Commits one equality-delete file (`column` in `values`, a string column
    of an unpartitioned table): Spark's SQL writes position deletes only, so
    the file is written with pyarrow (the column carries its Iceberg field id)
    and committed with Iceberg's Java API (a RowDelta) in Spark's JVM."""
    jvm = spark.sparkContext._jvm
    gateway = spark.sparkContext._gateway
    iceberg = jvm.org.apache.iceberg
    t = iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, table)
    field_id = t.schema().findField(column).fieldId()
    location = f"{t.location()}/data/eq-deletes-{time.time_ns()}.parquet"
    local = Path(location.removeprefix("file://").removeprefix("file:"))
    field = pa.field(column, pa.string(), metadata={b"PARQUET:field_id": str(field_id).encode()})
    pq.write_table(pa.table({column: values}, schema=pa.schema([field])), local)
    ids = gateway.new_array(gateway.jvm.int, 1)
    ids[0] = field_id
    delete_file = (
        iceberg.FileMetadata.deleteFileBuilder(t.spec())
        .ofEqualityDeletes(ids)
        .withPath(location)
        .withFormat(iceberg.FileFormat.PARQUET)
        .withFileSizeInBytes(local.stat().st_size)
        .withRecordCount(len(values))
        .build()
    )
    t.newRowDelta().addDeletes(delete_file).commit()


def test_equality_deletes_weir_answers(conn, spark, weir_server):
    """Equality deletes apply to the rows committed before them, never after."""
    table = "rows.equality"
    spark_exec(
        spark,
        "CREATE NAMESPACE IF NOT EXISTS rows",
        f"CREATE TABLE {table} (id BIGINT, device STRING, value DOUBLE) USING iceberg "
        "TBLPROPERTIES ('format-version' = '2')",
        f"INSERT INTO {table} SELECT id, concat('d', id % 4), id * 0.5 FROM range(0, 100)",
    )
    write_equality_deletes(spark, table, "device", ["d1", "d3"])
    content = spark_rows(spark, f"SELECT content, count(*) FROM {table}.delete_files GROUP BY 1")
    assert content == [(2, 1)], content   # one equality-delete file
    rows = agree(conn, spark, f"SELECT device, count(*), sum(value) FROM {table} GROUP BY device")
    assert [r[0] for r in rows] == ["d0", "d2"]
    # New d1 rows stay: the delete's sequence number is below theirs.
    spark_exec(spark, f"INSERT INTO {table} VALUES (500, 'd1', 1.0), (501, 'd2', 2.0)")
    weir_exec(conn, f"INSERT INTO {table} VALUES (502, 'd3', 3.0)")
    agree(conn, spark, f"SELECT * FROM {table}")
    agree(conn, spark, f"SELECT count(*) FROM {table}")
    agree(conn, spark, f"SELECT count(*), sum(value) FROM {table} WHERE device IN ('d1', 'd3')")
    maintain_compact(weir_server.data_dir, table)
    agree(conn, spark, f"SELECT * FROM {table}")
    agree(conn, spark, f"SELECT count(*), sum(id) FROM {table}")


# --- Weir's row-level DML, read by Spark (issue 20) --------------------------------


def weir_count(conn, sql: str) -> int:
    """The affected-row count Weir answers for a DML statement."""
    rows = fetch_rows(conn, sql)
    assert len(rows) == 1, rows
    return rows[0][0]


def test_weir_dml_spark_reads(conn, spark):
    spark_exec(spark, "USE weir.public")
    weir_exec(
        conn,
        "CREATE TABLE dml_cow (ts TIMESTAMPTZ, dev VARCHAR, v DOUBLE, q INT) PARTITIONED BY (day(ts))",
    )
    # Three appends over three days: several files per partition.
    for k in range(3):
        weir_exec(
            conn,
            f"""INSERT INTO dml_cow SELECT
                  to_timestamp_seconds(1704067200 + value * 2400 + {k}),
                  'd' || (value % 5), CAST(value AS DOUBLE) + {k} * 0.5,
                  CASE WHEN value % 7 = 0 THEN NULL ELSE CAST(value % 7 AS INT) END
                FROM generate_series(0, 99) AS s(value)""",
        )
    full = "SELECT ts, dev, v, q FROM dml_cow"
    stats = "SELECT count(*), sum(v), count(q), min(ts), max(ts) FROM dml_cow"
    assert agree(conn, spark, stats)[0][0] == 300

    # DELETE one device-hour-ish slice; NULL predicate results keep rows.
    expected = spark_rows(spark, "SELECT count(*) FROM dml_cow WHERE dev = 'd1' AND q > 2")[0][0]
    assert weir_count(conn, "DELETE FROM dml_cow WHERE dev = 'd1' AND q > 2") == expected > 0
    agree(conn, spark, full)
    # A predicate matching nothing changes nothing, also one the optimizer folds away.
    before = spark_rows(spark, "SELECT count(*) FROM weir.public.dml_cow.snapshots")[0][0]
    assert weir_count(conn, "DELETE FROM dml_cow WHERE 1 = 0") == 0
    assert weir_count(conn, "DELETE FROM dml_cow WHERE dev = 'nobody'") == 0
    assert spark_rows(spark, "SELECT count(*) FROM weir.public.dml_cow.snapshots")[0][0] == before
    # UPDATE a few rows of one day (one partition rewritten), values and NULLs.
    expected = spark_rows(
        spark, "SELECT count(*) FROM dml_cow WHERE dev = 'd2' AND ts < TIMESTAMP '2024-01-02 00:00:00'"
    )[0][0]
    assert weir_count(
        conn,
        "UPDATE dml_cow SET v = v * 10, q = NULL WHERE dev = 'd2' AND ts < TIMESTAMPTZ '2024-01-02T00:00:00Z'",
    ) == expected > 0
    agree(conn, spark, full)
    # UPDATE that moves rows to another partition (ts changes day).
    moved = weir_count(conn, "UPDATE dml_cow SET ts = ts + INTERVAL '3 days' WHERE dev = 'd3' AND v < 20")
    assert moved > 0
    agree(conn, spark, full)
    agree(conn, spark, "SELECT to_date(ts), count(*) FROM dml_cow GROUP BY to_date(ts)",
          "SELECT to_date(ts), count(*) FROM dml_cow GROUP BY to_date(ts)")
    agree(conn, spark, stats)
    ops = [r[0] for r in spark_rows(spark, "SELECT operation FROM weir.public.dml_cow.snapshots")]
    assert sorted(ops) == sorted(["append"] * 3 + ["overwrite"] * 3), ops

    # Spark deletes merge-on-read (position delete files); Weir's next UPDATE
    # rewrites files with those deletes applied; both engines still agree.
    spark_exec(
        spark,
        "ALTER TABLE dml_cow SET TBLPROPERTIES ('write.delete.mode'='merge-on-read')",
        "DELETE FROM dml_cow WHERE dev = 'd0' AND q = 3",
    )
    agree(conn, spark, full)
    # A materialized view over the table: refreshed after an append to a day
    # whose file carries Spark's delete file, it reads that day's files (and
    # only those) with the deletes applied. (The Iceberg reader Weir falls
    # back to for delete files used to read every file of the table here:
    # the view double-counted, and the UPDATE below rewrote the whole table
    # into each file it changed.)
    weir_exec(
        conn,
        """CREATE MATERIALIZED VIEW dml_cow_1d PARTITIONED BY (day(bucket)) AS
           SELECT date_bin(INTERVAL '1 day', ts) AS bucket, dev, count(*) AS n, sum(v) AS total
           FROM dml_cow GROUP BY 1, 2""",
        "INSERT INTO dml_cow VALUES (TIMESTAMPTZ '2024-01-01T23:00:00Z', 'd0', 0.25, 3)",
        "REFRESH MATERIALIZED VIEW dml_cow_1d",
    )
    view_query = """SELECT date_bin(INTERVAL '1 day', ts), dev, count(*), sum(v) FROM dml_cow GROUP BY 1, 2"""
    assert weir_rows(conn, "SELECT bucket, dev, n, total FROM dml_cow_1d") == weir_rows(conn, view_query)
    rows = spark_rows(spark, "SELECT count(*) FROM dml_cow")[0][0]
    d0 = spark_rows(spark, "SELECT count(*) FROM dml_cow WHERE dev = 'd0'")[0][0]
    assert weir_count(conn, "UPDATE dml_cow SET dev = 'D0' WHERE dev = 'd0'") == d0 > 0
    agree(conn, spark, full)
    assert spark_rows(spark, "SELECT count(*) FROM dml_cow WHERE dev = 'd0'")[0][0] == 0
    assert spark_rows(spark, "SELECT count(*) FROM dml_cow")[0][0] == rows
    weir_exec(conn, "REFRESH MATERIALIZED VIEW dml_cow_1d")
    assert weir_rows(conn, "SELECT bucket, dev, n, total FROM dml_cow_1d") == weir_rows(conn, view_query)
    weir_exec(conn, "DROP MATERIALIZED VIEW dml_cow_1d")

    # INSERT OVERWRITE replaces the days its rows fall into, keeps the others.
    days_before = spark_rows(spark, "SELECT count(DISTINCT to_date(ts)) FROM dml_cow")[0][0]
    assert weir_count(
        conn,
        "INSERT OVERWRITE dml_cow VALUES (TIMESTAMPTZ '2024-01-02T12:00:00Z', 'o1', 1.0, 1), "
        "(TIMESTAMPTZ '2024-01-02T13:00:00Z', 'o2', 2.0, 2)",
    ) == 2
    agree(conn, spark, full)
    assert agree(conn, spark, "SELECT count(*) FROM dml_cow WHERE to_date(ts) = DATE '2024-01-02'") == [(2,)]
    assert spark_rows(spark, "SELECT count(DISTINCT to_date(ts)) FROM dml_cow")[0][0] == days_before

    # MERGE: the same statement run by Spark on a copy of the table (the
    # oracle) and by Weir on the table; both give the same rows. Matched →
    # delete or update, unmatched source rows → insert, target rows of one
    # device without a source row → delete.
    spark_exec(
        spark,
        "CREATE TABLE dml_cow_oracle USING iceberg PARTITIONED BY (days(ts)) AS SELECT * FROM dml_cow",
    )
    weir_exec(
        conn,
        "CREATE TABLE dml_fix (ts TIMESTAMPTZ, dev VARCHAR, v DOUBLE, op VARCHAR)",
        """INSERT INTO dml_fix SELECT ts, dev, v + 1000, CASE WHEN q = 1 THEN 'drop' ELSE 'fix' END
             FROM dml_cow WHERE dev = 'd4' AND v < 150""",
        """INSERT INTO dml_fix VALUES (TIMESTAMPTZ '2024-01-05T00:00:00Z', 'n1', 1.0, 'new'),
             (TIMESTAMPTZ '2024-01-05T01:00:00Z', 'n2', 2.0, 'skip')""",
    )
    merge = """MERGE INTO {target} t USING dml_fix s ON t.dev = s.dev AND t.ts = s.ts
        WHEN MATCHED AND s.op = 'drop' THEN DELETE
        WHEN MATCHED THEN UPDATE SET v = s.v, q = 99
        WHEN NOT MATCHED AND s.op = 'new' THEN INSERT (ts, dev, v, q) VALUES (s.ts, s.dev, s.v, NULL)
        WHEN NOT MATCHED BY SOURCE AND t.dev = 'd3' THEN DELETE"""
    spark_exec(spark, merge.format(target="dml_cow_oracle"))
    changed = weir_count(conn, merge.format(target="dml_cow"))
    assert changed > 10
    oracle = spark_rows(spark, "SELECT ts, dev, v, q FROM dml_cow_oracle")
    assert weir_rows(conn, full) == oracle
    agree(conn, spark, full)
    assert spark_rows(spark, "SELECT count(*) FROM dml_cow WHERE q = 99")[0][0] > 0
    assert spark_rows(spark, "SELECT count(*) FROM dml_cow WHERE dev IN ('d3', 'n1')") == [(1,)]
    spark_exec(spark, "DROP TABLE dml_cow_oracle", "DROP TABLE dml_fix")

    # TRUNCATE empties the table; Spark sees an empty table, later inserts count.
    n = spark_rows(spark, "SELECT count(*) FROM dml_cow")[0][0]
    assert weir_count(conn, "TRUNCATE TABLE dml_cow") == n
    assert agree(conn, spark, "SELECT count(*) FROM dml_cow") == [(0,)]
    weir_exec(conn, "INSERT INTO dml_cow VALUES (TIMESTAMPTZ '2024-02-01T00:00:00Z', 'd9', 1.5, 1)")
    agree(conn, spark, full)


def test_weir_merge_on_read_spark_reads(conn, spark):
    """Weir's merge-on-read DELETE/UPDATE (position delete files) read by
    Spark equal to Weir, also after Spark's own merge-on-read delete and
    Spark's compaction."""
    spark_exec(spark, "USE weir.public")
    weir_exec(
        conn,
        "CREATE TABLE dml_mor (ts TIMESTAMPTZ, dev VARCHAR, v DOUBLE, q INT) PARTITIONED BY (day(ts))",
        "ALTER TABLE dml_mor SET TBLPROPERTIES ('write.delete.mode' = 'merge-on-read', "
        "'write.update.mode' = 'merge-on-read')",
    )
    for k in range(3):
        weir_exec(
            conn,
            f"""INSERT INTO dml_mor SELECT
                  to_timestamp_seconds(1704067200 + value * 2400 + {k}),
                  'd' || (value % 5), CAST(value AS DOUBLE) + {k} * 0.5, CAST(value % 7 AS INT)
                FROM generate_series(0, 99) AS s(value)""",
        )
    full = "SELECT ts, dev, v, q FROM dml_mor"
    expected = spark_rows(spark, "SELECT count(*) FROM dml_mor WHERE dev = 'd1' AND q > 2")[0][0]
    assert weir_count(conn, "DELETE FROM dml_mor WHERE dev = 'd1' AND q > 2") == expected > 0
    agree(conn, spark, full)
    deletes = spark_rows(spark, "SELECT count(*) FROM weir.public.dml_mor.delete_files")[0][0]
    assert deletes > 0
    data_files = spark_rows(spark, "SELECT count(*) FROM weir.public.dml_mor.data_files")[0][0]
    assert data_files == 9  # nothing rewritten: 3 appends x 3 days
    expected = spark_rows(spark, "SELECT count(*) FROM dml_mor WHERE dev = 'd2'")[0][0]
    assert weir_count(conn, "UPDATE dml_mor SET v = v + 1000 WHERE dev = 'd2'") == expected
    agree(conn, spark, full)
    assert spark_rows(spark, "SELECT count(*) FROM dml_mor WHERE v >= 1000")[0][0] == expected
    # MERGE merge-on-read: the same statement by Spark on a copy (the oracle).
    spark_exec(
        spark,
        "CREATE TABLE dml_mor_oracle USING iceberg PARTITIONED BY (days(ts)) AS SELECT * FROM dml_mor",
    )
    weir_exec(
        conn,
        "ALTER TABLE dml_mor SET TBLPROPERTIES ('write.merge.mode' = 'merge-on-read')",
        "CREATE TABLE dml_mor_fix (ts TIMESTAMPTZ, dev VARCHAR, v DOUBLE, op VARCHAR)",
        """INSERT INTO dml_mor_fix SELECT ts, dev, v * 2, CASE WHEN q = 0 THEN 'drop' ELSE 'fix' END
             FROM dml_mor WHERE dev = 'd0' AND v < 60""",
        "INSERT INTO dml_mor_fix VALUES (TIMESTAMPTZ '2024-01-03T00:00:00Z', 'n1', 1.0, 'new')",
    )
    before_files = spark_rows(spark, "SELECT count(*) FROM weir.public.dml_mor.delete_files")[0][0]
    merge = """MERGE INTO {target} t USING dml_mor_fix s ON t.dev = s.dev AND t.ts = s.ts
        WHEN MATCHED AND s.op = 'drop' THEN DELETE
        WHEN MATCHED THEN UPDATE SET v = s.v
        WHEN NOT MATCHED THEN INSERT (ts, dev, v, q) VALUES (s.ts, s.dev, s.v, 0)"""
    spark_exec(spark, merge.format(target="dml_mor_oracle"))
    assert weir_count(conn, merge.format(target="dml_mor")) > 5
    assert weir_rows(conn, full) == spark_rows(spark, "SELECT ts, dev, v, q FROM dml_mor_oracle")
    agree(conn, spark, full)
    assert spark_rows(spark, "SELECT count(*) FROM weir.public.dml_mor.delete_files")[0][0] > before_files
    spark_exec(spark, "DROP TABLE dml_mor_oracle", "DROP TABLE dml_mor_fix")

    # Spark deletes merge-on-read too; Weir's next DELETE then rewrites the
    # files that carry delete files.
    spark_exec(spark, "DELETE FROM dml_mor WHERE dev = 'd3' AND q = 1")
    agree(conn, spark, full)
    assert weir_count(conn, "DELETE FROM dml_mor WHERE dev = 'd4'") > 0
    agree(conn, spark, full)
    # Spark compacts (applies the deletes); Weir still agrees.
    spark_exec(spark, "CALL weir.system.rewrite_data_files(table => 'public.dml_mor', options => map('min-input-files','1','delete-file-threshold','1'))")
    agree(conn, spark, full)
    agree(conn, spark, "SELECT dev, count(*), sum(v) FROM dml_mor GROUP BY dev")


# --- Weir evolves tables (ALTER TABLE), Spark reads and writes -------------------------


def test_weir_alter_table_spark_agrees(conn, spark):
    spark_exec(spark, "USE weir.public")
    weir_exec(
        conn,
        "CREATE TABLE alter_ev (ts TIMESTAMPTZ, dev VARCHAR, n INT, f REAL, d DECIMAL(9, 2))",
        """INSERT INTO alter_ev SELECT
              to_timestamp_seconds(1704067200 + value * 3600), 'd' || (value % 3),
              CAST(value AS INT), CAST(value AS REAL) / 4, CAST(value AS DECIMAL(9, 2)) / 8
            FROM generate_series(0, 47) AS s(value)""",
    )
    full = "SELECT * FROM alter_ev"
    agree(conn, spark, full)

    # Columns: add, rename (old files keep their values), drop, re-add the
    # dropped name (old rows read NULL), widen types, drop NOT NULL.
    weir_exec(
        conn,
        "ALTER TABLE alter_ev ADD COLUMN note VARCHAR",
        "ALTER TABLE alter_ev RENAME COLUMN dev TO device",
        "ALTER TABLE alter_ev DROP COLUMN f",
        "ALTER TABLE alter_ev ADD COLUMN f DOUBLE",
        "ALTER TABLE alter_ev ALTER COLUMN n SET DATA TYPE BIGINT",
        "ALTER TABLE alter_ev ALTER COLUMN d SET DATA TYPE DECIMAL(12, 2)",
        "ALTER TABLE alter_ev SET TBLPROPERTIES ('team' = 'plant', 'write.parquet.compression-codec' = 'zstd')",
    )
    spark_cols = [(f.name, f.dataType.simpleString()) for f in spark.table("alter_ev").schema.fields]
    assert spark_cols == [
        ("ts", "timestamp"), ("device", "string"), ("n", "bigint"), ("d", "decimal(12,2)"),
        ("note", "string"), ("f", "double"),
    ], spark_cols
    props = dict(spark_rows(spark, "SHOW TBLPROPERTIES alter_ev"))
    assert props["team"] == "plant" and props["write.parquet.compression-codec"] == "zstd"
    counts = agree(conn, spark, "SELECT count(*), count(f), count(note), sum(n), sum(d) FROM alter_ev")
    assert counts[0][:4] == (48, 0, 0, sum(range(48))), counts
    agree(conn, spark, "SELECT device, count(*) FROM alter_ev GROUP BY device")

    # Partition evolution: Weir's new files go to day partitions.
    weir_exec(
        conn,
        "ALTER TABLE alter_ev ADD PARTITION FIELD day(ts)",
        "INSERT INTO alter_ev VALUES (TIMESTAMPTZ '2024-03-01T00:00:00Z', 'd9', 5000000000, 1.25, 'weir', 0.5)",
    )
    specs = spark_rows(spark, "SELECT DISTINCT spec_id FROM weir.public.alter_ev.files")
    assert len(specs) == 2, specs
    partitions = spark_rows(spark, "SELECT partition.ts_day FROM weir.public.alter_ev.files WHERE spec_id > 0")
    assert partitions == [(dt.date(2024, 3, 1),)], partitions
    agree(conn, spark, full)
    agree(conn, spark, "SELECT * FROM alter_ev WHERE ts >= TIMESTAMP '2024-01-02 00:00:00'")

    # Spark writes after Weir's changes; Weir reads them.
    spark_exec(
        spark,
        "INSERT INTO alter_ev VALUES (TIMESTAMP '2024-03-02 12:00:00', 'd8', 7, 2.5, 'spark', 0.25)",
    )
    agree(conn, spark, full)
    assert weir_rows(conn, "SELECT device, n, note, f FROM alter_ev WHERE ts >= TIMESTAMPTZ '2024-03-01T00:00:00Z'") == [
        ("d8", 7, "spark", 0.25), ("d9", 5000000000, "weir", 0.5)
    ]
    # Spark's view of the evolved spec matches what SHOW CREATE TABLE prints.
    definition = weir_rows(conn, "SHOW CREATE TABLE alter_ev")[0][3]
    assert "PARTITIONED BY (day(ts))" in definition, definition


# --- Spark maintains a table while Weir appends to it (issue 18) ----------------------


class WeirAppender(threading.Thread):
    """Appends batches of ROWS rows (ids batch * 1000 + 0..ROWS-1, over three
    days) to `table` through its own connection until stopped, and after each
    append checks read-your-writes: Weir's count(*) == the rows committed."""

    ROWS = 20

    def __init__(self, uri: str, table: str, first_batch: int):
        super().__init__(daemon=True)
        self.uri, self.table, self.batch = uri, table, first_batch
        self.committed: list[int] = []   # batches whose INSERT returned
        self.rows = 0                    # rows committed (before this thread: set by the caller)
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        c = connect(self.uri)
        try:
            while not self.stop.is_set() and len(self.committed) < 2000:
                b = self.batch
                try:
                    execute(
                        c,
                        f"INSERT INTO {self.table} SELECT {b} * 1000 + value, {b}, "
                        f"to_timestamp_seconds(1775001600 + ({b} % 3) * 86400 + value * 60), "
                        f"concat('d', value % 4), value * 0.25 + {b} FROM generate_series(0, {self.ROWS - 1})",
                    )
                except Exception as e:  # noqa: BLE001 - recorded, asserted by the test
                    self.errors.append(f"INSERT batch {b}: {e}")
                    self.batch += 1
                    continue
                self.committed.append(b)
                self.rows += self.ROWS
                self.batch += 1
                n = fetch_rows(c, f"SELECT count(*) FROM {self.table}")[0][0]
                if n != self.rows:
                    self.errors.append(f"after batch {b}: count(*) = {n}, committed rows = {self.rows}")
        except Exception as e:  # noqa: BLE001
            self.errors.append(f"appender: {e}")
        finally:
            c.close()

    def wait_for(self, batches: int, timeout: float = 30) -> None:
        """Polls until `batches` more batches committed (or the thread failed)."""
        target = len(self.committed) + batches
        deadline = time.monotonic() + timeout
        while len(self.committed) < target:
            assert self.is_alive() and not self.errors, self.errors
            assert time.monotonic() < deadline, f"appender committed {len(self.committed)}/{target} batches"
            self.stop.wait(0.05)


def test_spark_maintenance_while_weir_appends(conn, spark, weir_server):
    """Spark's rewrite_data_files, rewrite_manifests and expire_snapshots run
    while Weir keeps appending: every Weir append lands exactly once, Weir reads
    its writes throughout, both engines agree; then `weir maintain compact` and
    `weir maintain expire` on the table Spark maintained."""
    table = "public.spark_maint"
    weir_exec(
        conn,
        f"CREATE TABLE {table} (id BIGINT NOT NULL, batch INT NOT NULL, ts TIMESTAMP NOT NULL, "
        "dev VARCHAR, v DOUBLE) PARTITIONED BY (day(ts))",
    )
    t0 = time.monotonic()
    appender = WeirAppender(weir_server.uri, table, first_batch=0)
    # Small files first: a dozen appends (before Spark runs).
    appender.start()
    appender.wait_for(12)
    full = f"SELECT id, batch, ts, dev, v FROM {table}"

    def spark_count_between() -> int:
        lo = appender.rows
        n = spark_rows(spark, f"SELECT count(*) FROM {table}")[0][0]
        hi = appender.rows + WeirAppender.ROWS   # an append may commit before its INSERT returns
        assert lo <= n <= hi and n % WeirAppender.ROWS == 0, (lo, n, hi)
        return n

    # Spark reads while Weir appends: whole batches, never fewer than committed.
    spark_count_between()
    before = len(appender.committed)
    rewritten = spark.sql(
        f"CALL weir.system.rewrite_data_files(table => '{table}', options => map('rewrite-all', 'true'))"
    ).collect()[0].asDict()
    assert rewritten["rewritten_data_files_count"] >= 12 and rewritten["failed_data_files_count"] == 0, rewritten
    spark_count_between()
    manifests = spark.sql(f"CALL weir.system.rewrite_manifests(table => '{table}')").collect()[0].asDict()
    assert manifests["added_manifests_count"] >= 1, manifests
    ops = [r[0] for r in spark_rows(spark, f"SELECT operation FROM {table}.snapshots")]
    assert ops.count("replace") == 2, ops   # rewrite_data_files, rewrite_manifests
    # Expire everything up to a Weir append after the rewrites (retain_last 1
    # keeps the newest): the small files the rewrite replaced go.
    appender.wait_for(1)
    cutoff = dt.datetime.now(UTC).replace(tzinfo=None)
    expired = spark.sql(
        f"CALL weir.system.expire_snapshots(table => '{table}', "
        f"older_than => TIMESTAMP '{cutoff:%Y-%m-%d %H:%M:%S.%f}', retain_last => 1)"
    ).collect()[0].asDict()
    assert expired["deleted_data_files_count"] >= 12, expired
    spark_count_between()
    during = len(appender.committed) - before
    # Weir kept appending while Spark maintained (and after: more appends land on the new files).
    appender.wait_for(5)
    assert during > 0, "no Weir append happened while Spark's procedures ran"

    assert [r[0] for r in spark_rows(spark, f"SELECT operation FROM {table}.snapshots")] == ["append"] * len(
        spark_rows(spark, f"SELECT 1 FROM {table}.snapshots")
    )   # expired: the replace snapshots and every earlier one
    t_spark = time.monotonic()

    # Weir's CLI maintenance on the table Spark maintained, the appender still running.
    compact = weir_maintain(weir_server.data_dir, "compact", table)
    expire = weir_maintain(weir_server.data_dir, "expire", table, "--older-than", "1s", "--retain-last", "1")
    t_weir = time.monotonic()
    appender.wait_for(3)
    appender.stop.set()
    appender.join(timeout=60)
    assert not appender.is_alive()
    assert not appender.errors, appender.errors

    # Every batch Weir committed is there exactly once, nothing else is.
    rows = agree(conn, spark, f"SELECT batch, count(*), count(DISTINCT id), sum(v) FROM {table} GROUP BY batch")
    assert sorted(r[0] for r in rows) == sorted(appender.committed), (rows, appender.committed)
    assert all(r[1] == r[2] == WeirAppender.ROWS for r in rows), rows
    total = agree(conn, spark, f"SELECT count(*), sum(id), sum(v), min(ts), max(ts) FROM {table}")
    assert total[0][0] == appender.rows == len(appender.committed) * WeirAppender.ROWS, (total, appender.rows)
    assert total[0][1] == sum(b * 1000 * 20 + sum(range(20)) for b in appender.committed)
    agree(conn, spark, f"SELECT count(*) FROM {table}")
    agree(conn, spark, full)
    agree(conn, spark, f"SELECT dev, count(*), sum(v) FROM {table} "
          "WHERE ts >= TIMESTAMP '2026-04-02 00:00:00' AND ts < TIMESTAMP '2026-04-03 00:00:00' GROUP BY dev")
    print(f"\nSpark phase {t_spark - t0:.1f} s, weir maintain {t_weir - t_spark:.1f} s, checks "
          f"{time.monotonic() - t_weir:.1f} s; {len(appender.committed)} Weir appends ({during} during Spark's procedures); "
          f"rewrite_data_files {rewritten}; rewrite_manifests {manifests}; expire_snapshots {expired}; "
          f"weir maintain compact {compact.strip()[:300]}; expire {expire.strip()[:300]}")
