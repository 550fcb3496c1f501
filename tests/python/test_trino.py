"""Trino on the production layout (issue 18): Weir's catalog in PostgreSQL, its
warehouse on S3 (SeaweedFS on loopback), and a real Trino server (476, Java
25; tests/scripts/trino.sh) whose Iceberg connector opens the same catalog
rows (`iceberg.catalog.type=jdbc`) and the same bucket (native S3): the
catalog file of README "When one machine is not enough".

Trino's answer is the oracle. Weir writes — the pipeline's own tables
(MQTT ingest into bronze/silver, the Gold materialized views refreshed), a
partitioned table of SQL INSERTs and a materialized view over it, then
copy-on-write DELETE/UPDATE, ALTER TABLE, `weir maintain compact` — and
Trino reads every one with the same counts, sums, per-group aggregates and
filtered answers (partition columns, timestamptz ranges). Then Trino writes
— INSERT, DELETE and UPDATE (merge-on-read position deletes), RENAME/ADD
COLUMN, CREATE TABLE AS, `optimize`, `expire_snapshots`, rows into
silver.points under the Gold views — and Weir answers as Trino does after
each change, its materialized views included."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Iterator

import pyarrow.parquet as pq
import pytest
from trino.exceptions import TrinoQueryError

from kafka_harness import wait_until
from mqtt_harness import Mosquitto, wait_log
from pg_harness import PASSWORD, USER, PostgresServer
from s3_harness import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, S3Server
from test_spark_interop import rows_of, weir_rows
from trino_harness import TrinoServer, trino_installed
from weir_harness import WeirServer, connect, execute, fetch_rows, weir_binary

CATALOG_DB = "weir"
TABLE = "lake.readings"
GOLD = ("gold.points_1m", "gold.points_1h", "gold.points_1d", "gold.fleet_1m")
DAY_MS = 86_400_000
BASE_MS = 1_767_225_600_000          # 2026-01-01T00:00:00Z


class Lakehouse:
    """The shared layout: PostgreSQL catalog, S3 warehouse, Weir's flags and
    Trino's catalog properties for both."""

    def __init__(self, s3: S3Server, pg: PostgresServer, prefix: str, work: Path):
        self.s3, self.pg, self.prefix, self.work = s3, pg, prefix, work
        self.warehouse = f"s3://{BUCKET}/{prefix}"
        self.args = [
            "--catalog-uri", f"postgres://{USER}:{PASSWORD}@127.0.0.1:{pg.port}/{CATALOG_DB}?sslmode=disable",
            *s3.weir_args(prefix),
        ]

    def trino_catalog(self) -> dict[str, str]:
        """etc/catalog/weir.properties (README: "When one machine is not enough")."""
        return {
            "connector.name": "iceberg",
            "iceberg.catalog.type": "jdbc",
            "iceberg.jdbc-catalog.driver-class": "org.postgresql.Driver",
            "iceberg.jdbc-catalog.connection-url": f"jdbc:postgresql://127.0.0.1:{self.pg.port}/{CATALOG_DB}",
            "iceberg.jdbc-catalog.connection-user": USER,
            "iceberg.jdbc-catalog.connection-password": PASSWORD,
            # The catalog_name of Weir's rows in iceberg_tables.
            "iceberg.jdbc-catalog.catalog-name": "weir",
            "iceberg.jdbc-catalog.schema-version": "V1",
            "iceberg.jdbc-catalog.default-warehouse-dir": self.warehouse,
            "fs.native-s3.enabled": "true",
            "s3.endpoint": self.s3.endpoint,
            "s3.path-style-access": "true",
            "s3.region": REGION,
            "s3.aws-access-key": ACCESS_KEY,
            "s3.aws-secret-key": SECRET_KEY,
            # expire_snapshots(retention_threshold => '0s') in a test (default minimum: 7d).
            "iceberg.expire-snapshots.min-retention": "0s",
        }

    def maintain(self, job: str, *args: str) -> dict:
        out = subprocess.run(
            [str(weir_binary()), "maintain", job, *args, "--data-dir", str(self.work / "maintain"),
             *self.args, "--json"],
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return {r["table"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Lakehouse]:
    if trino_installed() is None:
        pytest.skip("Trino is not installed: run `tests/scripts/trino.sh install` (tests/run.sh does)")
    saved = {k: os.environ.get(k) for k in ("WEIR_S3_ACCESS_KEY_ID", "WEIR_S3_SECRET_ACCESS_KEY")}
    s3 = S3Server()
    pg = None
    try:
        os.environ.update(s3.weir_env())
        pg = PostgresServer()
        pg.psql_admin(f"CREATE DATABASE {CATALOG_DB}", db="postgres")
        yield Lakehouse(s3, pg, f"trino-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("lake"))
    finally:
        if pg is not None:
            pg.destroy()
        s3.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- the pipeline: MQTT into bronze/silver, then the Gold views ----------------------

# 120 JSON points (device and metric from the topic, the payload's timestamp: hourly over five
# days), 6 JSON status messages of two metrics each, 4 line-protocol lines, 3 undecodable.
POINTS = [(f"plant/s{i % 2}/pump{i % 3}/{('temperature', 'pressure')[i % 2]}",
           json.dumps({"value": i * 0.25, "ts": BASE_MS + i * 3_600_000 + (i % 7) * 60_000}).encode(), 1)
          for i in range(120)]
STATUS = [("plant/s2/dev-s/status",
           json.dumps({"ts": BASE_MS + DAY_MS + j * 600_000, "cpu": j, "mem": 10 + j,
                       "mode": ("run", "idle")[j % 2]}).encode(), 1) for j in range(6)]
LINES = [("lines/hall", f"env,device_id=lp1,unit=pct value={40 + j} {(BASE_MS + 2 * DAY_MS + j * 1000) * 1_000_000}"
          .encode(), 1) for j in range(4)]
BAD = [("plant/s1/pump0/temperature", b"hot", 1), ("plant/s1/dev-x/json", b'{"value": ', 1),
       ("lines/hall", b"42", 1)]
MESSAGES = POINTS + STATUS + LINES + BAD
SILVER_ROWS = len(POINTS) + 2 * len(STATUS) + len(LINES)


@pytest.fixture(scope="module")
def pipeline(lake: Lakehouse, tmp_path_factory) -> None:
    """Weir ingests MQTT into bronze/silver (`weir serve` with an MQTT source)
    until every message is committed, then stops: the module's server reads
    committed rows only (no hot tier)."""
    home = tmp_path_factory.mktemp("mqtt")
    broker = Mosquitto(home / "broker")
    try:
        server = WeirServer(home / "weir" / "data", [
            *lake.args, "--mqtt-broker", broker.url("b1"), "--mqtt-subscribe", "plant/+/+/+",
            "--mqtt-subscribe", "lines/#=1", "--mqtt-topic-template", "plant/{site}/{device_id}/{metric}",
            "--mqtt-client-id", "weir-trino", "--commit-interval-ms", "300", "--maintenance=false",
        ])
        try:
            wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
            broker.publish(MESSAGES)
            conn = connect(server.uri)

            def committed():
                marks = fetch_rows(conn, "SELECT next_offset FROM weir_watermarks('bronze.raw_messages') "
                                         "WHERE source = 'mqtt' AND stream = 'b1'")
                return marks == [(len(MESSAGES),)] or marks

            wait_until(committed, 90, "every MQTT message committed to bronze.raw_messages")
            conn.close()
        finally:
            server.discard()
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def server(lake: Lakehouse, pipeline, tmp_path_factory) -> Iterator[WeirServer]:
    s = WeirServer(tmp_path_factory.mktemp("weir-serve") / "data", [*lake.args, "--maintenance=false"])
    yield s
    s.discard()
    assert SECRET_KEY not in s.logs() and PASSWORD not in s.logs()


@pytest.fixture(scope="module")
def conn(server: WeirServer):
    c = connect(server.uri)
    yield c
    c.close()


@pytest.fixture(scope="module")
def trino(lake: Lakehouse, server: WeirServer, tmp_path_factory):
    t = TrinoServer(tmp_path_factory.mktemp("trino"), {"weir": lake.trino_catalog()})
    try:
        c = t.connect()
        yield c
        c.close()
        assert SECRET_KEY not in t.logs() and PASSWORD not in t.logs()
    finally:
        t.stop()


# --- comparing answers -------------------------------------------------------------


def trino_fetch(trino, sql: str) -> list:
    """Runs one statement in Trino. NO_NODES_AVAILABLE (Trino has not yet seen
    its own node announce a catalog; the harness waits for that, but a catalog's
    node list is refreshed every 5 s) is retried for a while, any other error is not."""
    deadline = time.monotonic() + 30
    while True:
        cur = trino.cursor()
        try:
            cur.execute(sql)
            return cur.fetchall()
        except TrinoQueryError as e:
            if e.error_name != "NO_NODES_AVAILABLE" or time.monotonic() > deadline:
                raise
        finally:
            cur.close()
        time.sleep(0.5)


def trino_rows(trino, sql: str) -> list[tuple]:
    return rows_of(trino_fetch(trino, sql))


def trino_exec(trino, *statements: str) -> list:
    """Runs each statement; the row counts Trino reports for DML."""
    counts = []
    for sql in statements:
        rows = trino_fetch(trino, sql)
        counts.append(rows[0][0] if rows and len(rows[0]) == 1 else None)
    return counts


def weir_exec(conn, *statements: str) -> None:
    for sql in statements:
        execute(conn, sql)


def agree(conn, trino, sql: str, trino_sql: str | None = None) -> list[tuple]:
    """Weir's rows (sorted, normalized) equal Trino's for the same question; returns them."""
    expected = trino_rows(trino, trino_sql or sql)
    got = weir_rows(conn, sql)
    assert got == expected, f"{sql}\n  weir:  {got[:20]}\n  trino: {expected[:20]}"
    return got


def utc(ts: str) -> tuple[str, str]:
    """A timestamptz literal in Weir's and in Trino's spelling."""
    return f"TIMESTAMP '{ts}+00:00'", f"TIMESTAMP '{ts} UTC'"


def plan(conn, sql: str) -> str:
    """Weir's EXPLAIN (logical and physical plans) as one text."""
    return "\n".join(str(v) for row in fetch_rows(conn, f"EXPLAIN {sql}") for v in row)


def files(trino, table: str) -> list[tuple]:
    """(content, path) of every live file: 0 data, 1 position deletes, 2 equality deletes."""
    ns, name = table.split(".")
    return trino_rows(trino, f'SELECT content, file_path FROM {ns}."{name}$files"')


# --- Weir writes, Trino reads --------------------------------------------------------


def test_pipeline_bronze_silver_trino_reads(conn, trino):
    # Bronze: every message, payloads byte for byte, headers, coordinates.
    rows = agree(conn, trino,
                 "SELECT count(*), count(DISTINCT topic), sum(octet_length(CAST(payload AS VARCHAR))), min(source_offset), "
                 "max(source_offset), min(received_at), max(received_at) FROM bronze.raw_messages",
                 "SELECT count(*), count(DISTINCT topic), sum(length(payload)), min(source_offset), "
                 "max(source_offset), min(received_at), max(received_at) FROM bronze.raw_messages")
    assert rows[0][0] == len(MESSAGES) and rows[0][2] == sum(len(p) for _, p, _ in MESSAGES), rows
    agree(conn, trino, "SELECT topic, count(*), sum(source_offset) FROM bronze.raw_messages GROUP BY topic")
    agree(conn, trino, "SELECT source_offset, topic, payload, headers['qos'], content_type FROM bronze.raw_messages "
          "WHERE source_offset >= 118",
          "SELECT source_offset, topic, payload, element_at(headers, 'qos'), content_type "
          "FROM bronze.raw_messages WHERE source_offset >= 118")
    now_w, now_t = utc("2026-01-01 00:00:00")
    agree(conn, trino, f"SELECT count(*) FROM bronze.raw_messages WHERE received_at >= {now_w}",
          f"SELECT count(*) FROM bronze.raw_messages WHERE received_at >= {now_t}")
    dead = agree(conn, trino, "SELECT topic, source, stage, source_offset, payload, reason FROM bronze.dead_letters")
    assert sorted(d[4] for d in dead) == sorted(p for _, p, _ in BAD), dead

    # Silver: the decoded points (timestamptz partitioned by day, a map of labels).
    rows = agree(conn, trino, "SELECT count(*), sum(value), count(DISTINCT device_id), min(ts), max(ts) "
                 "FROM silver.points")
    assert rows[0][0] == SILVER_ROWS, rows
    assert rows[0][1] == pytest.approx(sum(i * 0.25 for i in range(120)) + sum(j + 10 + j for j in range(6))
                                       + sum(40 + j for j in range(4))), rows
    agree(conn, trino, "SELECT device_id, metric, count(*), sum(value), sum(quality), min(ts), max(ts), "
          "max(unit) FROM silver.points GROUP BY 1, 2")
    agree(conn, trino, "SELECT ts, device_id, metric, value, quality, unit, source FROM silver.points")
    lo_w, lo_t = utc("2026-01-02 00:00:00")
    hi_w, hi_t = utc("2026-01-03 06:00:00")
    rows = agree(conn, trino,
                 f"SELECT count(*), sum(value) FROM silver.points WHERE ts >= {lo_w} AND ts < {hi_w}",
                 f"SELECT count(*), sum(value) FROM silver.points WHERE ts >= {lo_t} AND ts < {hi_t}")
    assert 0 < rows[0][0] < SILVER_ROWS, rows
    agree(conn, trino, "SELECT labels['site'], labels['mode'], count(*), sum(value) FROM silver.points GROUP BY 1, 2",
          "SELECT element_at(labels, 'site'), element_at(labels, 'mode'), count(*), sum(value) "
          "FROM silver.points GROUP BY 1, 2")
    agree(conn, trino, "SELECT CAST(ts AS DATE), count(*) FROM silver.points GROUP BY 1",
          "SELECT CAST(ts AS DATE), count(*) FROM silver.points GROUP BY 1")
    # Trino reads Weir's day partitions.
    by_day = trino_rows(trino, 'SELECT partition.ts_day, sum(record_count) FROM silver."points$partitions" GROUP BY 1')
    assert by_day == weir_rows(conn, "SELECT CAST(ts AS DATE), count(*) FROM silver.points GROUP BY 1")


# The Gold columns against the rollup Trino computes itself from silver.points.
ROLLUP = {
    "gold.points_1m": ("minute", "device_id, metric"),
    "gold.points_1h": ("hour", "device_id, metric"),
    "gold.points_1d": ("day", "device_id, metric"),
    "gold.fleet_1m": ("minute", "metric"),
}


def check_gold(conn, trino, view: str) -> None:
    unit, keys = ROLLUP[view]
    per_device = keys != "metric"
    firsts = ", first_ts, last_ts, first_value, last_value" if per_device else ""
    trino_firsts = ", min(ts), max(ts), min_by(value, ts), max_by(value, ts)" if per_device else ""
    stored = trino_rows(trino, f'SELECT bucket, {keys}, "count", value_count, min_value, max_value, sum_value, '
                               f"sum_sq{firsts} FROM {view}")
    computed = trino_rows(trino, f"SELECT date_trunc('{unit}', ts), {keys}, count(*), count(value), min(value), "
                                 f"max(value), sum(value), sum(value * value){trino_firsts} "
                                 f"FROM silver.points GROUP BY 1, {keys}")
    assert stored == computed, f"{view}\n  stored:   {stored[:10]}\n  computed: {computed[:10]}"
    agree(conn, trino, f'SELECT bucket, {keys}, "count", sum_value{firsts} FROM {view}')
    # Weir answers the rollup from silver.points (rewritten onto the fresh view) as Trino does.
    rollup = (f"SELECT date_trunc('{unit}', ts), {keys}, count(*), min(value), max(value), sum(value) "
              f"FROM silver.points GROUP BY 1, {keys}")
    assert f"mv_rewrite {view}" in plan(conn, rollup), plan(conn, rollup)
    agree(conn, trino, rollup)


def test_gold_views_trino_reads(conn, trino):
    for view in GOLD:
        execute(conn, f"REFRESH MATERIALIZED VIEW {view}")
    for view in GOLD:
        rows = agree(conn, trino, f'SELECT count(*), sum("count"), sum(sum_value), min(bucket), max(bucket) FROM {view}')
        assert rows[0][1] == SILVER_ROWS, (view, rows)
        check_gold(conn, trino, view)


def test_weir_writes_partitioned_table_trino_reads(lake, conn, trino):
    weir_exec(
        conn,
        "CREATE SCHEMA lake",
        f"CREATE TABLE {TABLE} (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE, n BIGINT, "
        "at TIMESTAMPTZ) PARTITIONED BY (day(ts), bucket(4, device_id))",
        # 400 rows over five days, every 17 minutes, five devices; three commits.
        f"INSERT INTO {TABLE} SELECT to_timestamp_seconds(1767225600 + value * 1020), concat('dev-', value % 5), "
        "value * 0.5, value, to_timestamp_seconds(1767225600 + value * 60) FROM generate_series(0, 199)",
        f"INSERT INTO {TABLE} SELECT to_timestamp_seconds(1767225600 + value * 1020), concat('dev-', value % 5), "
        "value * 0.5, value, to_timestamp_seconds(1767225600 + value * 60) FROM generate_series(200, 399)",
        f"INSERT INTO {TABLE} VALUES (TIMESTAMP '2026-01-03 12:00:00', 'dev-9', NULL, NULL, NULL)",
        f"CREATE MATERIALIZED VIEW lake.readings_1h PARTITIONED BY (day(bucket)) AS "
        f"SELECT date_bin(INTERVAL '1 hour', ts) AS bucket, device_id, count(*) AS rows, sum(value) AS total "
        f"FROM {TABLE} GROUP BY 1, 2",
        "REFRESH MATERIALIZED VIEW lake.readings_1h",
    )
    rows = agree(conn, trino, f"SELECT count(*), sum(value), sum(n), count(value), min(ts), max(ts), min(at), "
                 f"max(at) FROM {TABLE}")
    assert rows[0][0] == 401 and rows[0][2] == sum(range(400)), rows
    check_readings(conn, trino)
    # Trino reads Weir's partitions (day and bucket): rows per day from its metadata == Weir's rows.
    by_day = trino_rows(trino, f'SELECT partition.ts_day, sum(record_count) FROM lake."readings$partitions" GROUP BY 1')
    assert by_day == weir_rows(conn, f"SELECT CAST(ts AS DATE), count(*) FROM {TABLE} GROUP BY 1")
    buckets = trino_rows(trino, 'SELECT DISTINCT partition.device_id_bucket FROM lake."readings$partitions"')
    assert len(buckets) > 1, buckets
    # Every file is in the bucket, the catalog row is Weir's.
    paths = [p for _, p in files(trino, TABLE)]
    assert paths and all(p.startswith(f"{lake.warehouse}/lake/readings/data/") for p in paths), paths
    assert set(lake.s3.keys(f"{lake.prefix}/lake/readings")) >= {p.removeprefix("s3://") for p in paths}
    check_mv(conn, trino)


def check_readings(conn, trino, value: str = "value", n: str = "n") -> None:
    """The table's answers: totals, per device, and filters on the partition
    sources (day and bucket pruning) and on the timestamptz column."""
    agree(conn, trino, f"SELECT device_id, count(*), sum({value}), max({n}), min(ts) FROM {TABLE} GROUP BY device_id")
    lo_w, lo_t = utc("2026-01-01 02:00:00")
    hi_w, hi_t = utc("2026-01-01 05:00:00")
    rows = agree(
        conn, trino,
        f"SELECT 0, count(*), sum({n}), sum({value}) FROM {TABLE} "
        f"UNION ALL SELECT 1, count(*), sum({n}), sum({value}) FROM {TABLE} "
        "WHERE ts >= TIMESTAMP '2026-01-03 00:00:00' AND ts < TIMESTAMP '2026-01-04 12:00:00' "
        f"UNION ALL SELECT 2, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE device_id = 'dev-3' AND {n} > 100 "
        f"UNION ALL SELECT 3, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE device_id IN ('dev-1', 'dev-9') "
        f"UNION ALL SELECT 4, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE {value} IS NULL "
        f"UNION ALL SELECT 5, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE at >= {lo_w} AND at < {hi_w}",
        f"SELECT 0, count(*), sum({n}), sum({value}) FROM {TABLE} "
        f"UNION ALL SELECT 1, count(*), sum({n}), sum({value}) FROM {TABLE} "
        "WHERE ts >= TIMESTAMP '2026-01-03 00:00:00' AND ts < TIMESTAMP '2026-01-04 12:00:00' "
        f"UNION ALL SELECT 2, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE device_id = 'dev-3' AND {n} > 100 "
        f"UNION ALL SELECT 3, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE device_id IN ('dev-1', 'dev-9') "
        f"UNION ALL SELECT 4, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE {value} IS NULL "
        f"UNION ALL SELECT 5, count(*), sum({n}), sum({value}) FROM {TABLE} WHERE at >= {lo_t} AND at < {hi_t}",
    )
    assert all(r[1] > 0 for r in rows), rows


def check_mv(conn, trino, value: str = "value") -> None:
    """Trino reads the view's table == Trino's own hourly rollup of the base; Weir's
    rollup of the base (answered from the view where it may) == Trino's."""
    stored = trino_rows(trino, "SELECT bucket, device_id, rows, total FROM lake.readings_1h")
    computed = trino_rows(trino, f"SELECT date_trunc('hour', ts), device_id, count(*), sum({value}) "
                                 f"FROM {TABLE} GROUP BY 1, 2")
    assert stored == computed, f"stored: {stored[:10]}\ncomputed: {computed[:10]}"
    agree(conn, trino, f"SELECT date_trunc('hour', ts), device_id, count(*), sum({value}) FROM {TABLE} GROUP BY 1, 2")
    agree(conn, trino, f"SELECT date_trunc('day', ts), count(*), sum({value}) FROM {TABLE} GROUP BY 1")


def test_weir_delete_update_trino_reads(conn, trino):
    before = files(trino, TABLE)
    weir_exec(conn,
              f"DELETE FROM {TABLE} WHERE device_id = 'dev-2' AND n % 3 = 0",
              f"UPDATE {TABLE} SET value = value * 10 WHERE device_id = 'dev-4' AND n < 200")
    # Copy-on-write: rewritten data files, no delete files.
    after = files(trino, TABLE)
    assert {c for c, _ in after} == {0} and after != before, after
    rows = agree(conn, trino, f"SELECT count(*), sum(value), sum(n) FROM {TABLE}")
    deleted = [n for n in range(400) if n % 5 == 2 and n % 3 == 0]
    assert rows[0][0] == 401 - len(deleted) and rows[0][2] == sum(range(400)) - sum(deleted), rows
    assert rows[0][1] == pytest.approx(sum(n * 0.5 * (10 if n % 5 == 4 and n < 200 else 1)
                                           for n in range(400) if n not in deleted)), rows
    check_readings(conn, trino)
    agree(conn, trino, f"SELECT ts, device_id, value, n, at FROM {TABLE}")
    # The view: stale until refreshed; Weir must not answer from deleted rows.
    agree(conn, trino, f"SELECT date_trunc('hour', ts), device_id, count(*), sum(value) FROM {TABLE} GROUP BY 1, 2")
    execute(conn, "REFRESH MATERIALIZED VIEW lake.readings_1h")
    check_mv(conn, trino)


def test_weir_alters_trino_reads(conn, trino):
    weir_exec(
        conn,
        f"ALTER TABLE {TABLE} ADD COLUMN note VARCHAR",
        f"ALTER TABLE {TABLE} RENAME COLUMN n TO seq",
        f"INSERT INTO {TABLE} (ts, device_id, value, seq, at, note) SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value, to_timestamp_seconds(1767225600 + value * 60), "
        "concat('w', value % 2) FROM generate_series(400, 439)",
        # A table renamed: Trino finds it under the new name only.
        "CREATE TABLE lake.scratch (k VARCHAR, v BIGINT)",
        "INSERT INTO lake.scratch VALUES ('a', 1), ('b', 2), ('c', 3)",
        "ALTER TABLE lake.scratch RENAME TO lake.renamed",
    )
    cols = [r[0] for r in trino_rows(trino, "SELECT column_name, ordinal_position FROM information_schema.columns "
                                            "WHERE table_schema = 'lake' AND table_name = 'readings'")]
    assert sorted(cols) == sorted(["ts", "device_id", "value", "seq", "at", "note"]), cols
    check_readings(conn, trino, n="seq")
    agree(conn, trino, f"SELECT note, count(*), sum(seq) FROM {TABLE} GROUP BY note")
    agree(conn, trino, f"SELECT ts, device_id, value, seq, at, note FROM {TABLE}")
    tables = trino_rows(trino, "SHOW TABLES FROM lake")
    assert ("renamed",) in tables and ("scratch",) not in tables, tables
    assert agree(conn, trino, "SELECT k, v FROM lake.renamed") == [("a", 1), ("b", 2), ("c", 3)]


def test_weir_compact_trino_reads(lake, conn, trino):
    full = f"SELECT ts, device_id, value, seq, at, note FROM {TABLE}"
    before = agree(conn, trino, full)
    files_before = files(trino, TABLE)
    report = lake.maintain("compact", TABLE)[TABLE]
    assert report["files_in"] > report["files_out"] >= 1, report
    files_after = files(trino, TABLE)
    assert len(files_after) < len(files_before), (files_before, files_after, report)
    assert agree(conn, trino, full) == before
    check_readings(conn, trino, n="seq")


# --- Trino writes, Weir reads --------------------------------------------------------


def test_trino_inserts_deletes_updates_weir_reads(conn, trino):
    inserted = trino_exec(
        trino,
        f"INSERT INTO {TABLE} (ts, device_id, value, seq, at, note) "
        "SELECT CAST(from_unixtime(1767225600 + x * 1020) AS TIMESTAMP(6)), 'dev-' || CAST(x % 5 AS VARCHAR), "
        "x * 0.5, x, from_unixtime(1767225600 + x * 60), 'trino' FROM UNNEST(sequence(440, 519)) AS t(x)",
    )
    assert inserted == [80], inserted
    rows = agree(conn, trino, f"SELECT count(*), sum(seq), max(ts), max(at) FROM {TABLE}")
    check_readings(conn, trino, n="seq")

    # Trino's DELETE and UPDATE write position delete files (merge-on-read).
    deleted = trino_exec(trino, f"DELETE FROM {TABLE} WHERE device_id = 'dev-1' AND seq % 4 = 1")
    assert deleted[0] > 0, deleted
    assert any(c == 1 for c, _ in files(trino, TABLE)), files(trino, TABLE)
    after = agree(conn, trino, f"SELECT count(*), sum(seq) FROM {TABLE}")
    assert after[0][0] == rows[0][0] - deleted[0], (rows, after, deleted)
    updated = trino_exec(trino, f"UPDATE {TABLE} SET value = -value, note = 'upd' WHERE device_id = 'dev-0' "
                                "AND ts >= TIMESTAMP '2026-01-02 00:00:00' AND ts < TIMESTAMP '2026-01-03 00:00:00'")
    assert updated[0] > 0, updated
    rows = agree(conn, trino, f"SELECT count(*), sum(value), count(*) FILTER (WHERE note = 'upd') FROM {TABLE}",
                 f"SELECT count(*), sum(value), count_if(note = 'upd') FROM {TABLE}")
    assert rows[0][0] == after[0][0] and rows[0][2] == updated[0], (rows, updated)
    check_readings(conn, trino, n="seq")
    agree(conn, trino, f"SELECT ts, device_id, value, seq, at, note FROM {TABLE}")
    # The view over the table (stale after Trino's commits): Weir's rollup still equals Trino's.
    agree(conn, trino, f"SELECT date_trunc('hour', ts), device_id, count(*), sum(value) FROM {TABLE} GROUP BY 1, 2")
    agree(conn, trino, f"SELECT date_trunc('day', ts), count(*), sum(value) FROM {TABLE} GROUP BY 1")
    # Weir writes after Trino's deletes (its own DML reads Trino's delete files); Trino reads it.
    weir_exec(conn, f"DELETE FROM {TABLE} WHERE device_id = 'dev-3' AND seq >= 500",
              f"UPDATE {TABLE} SET note = 'weir' WHERE device_id = 'dev-1' AND seq < 20")
    agree(conn, trino, f"SELECT note, count(*), sum(seq), sum(value) FROM {TABLE} GROUP BY note")
    agree(conn, trino, f"SELECT ts, device_id, value, seq, at, note FROM {TABLE}")


def test_trino_alters_weir_reads(conn, trino):
    trino_exec(trino, f"ALTER TABLE {TABLE} RENAME COLUMN note TO remark",
               f"ALTER TABLE {TABLE} ADD COLUMN quality INTEGER")
    cols = [r[0] for r in weir_rows(conn, "SELECT column_name, ordinal_position FROM information_schema.columns "
                                          "WHERE table_schema = 'lake' AND table_name = 'readings'")]
    assert sorted(cols) == sorted(["ts", "device_id", "value", "seq", "at", "remark", "quality"]), cols
    trino_exec(trino, f"INSERT INTO {TABLE} (ts, device_id, value, seq, at, remark, quality) VALUES "
                      "(TIMESTAMP '2026-01-05 01:00:00', 'dev-2', 1.25, 900, TIMESTAMP '2026-01-01 09:00:00 UTC', "
                      "'q', 3), (TIMESTAMP '2026-01-05 02:00:00', 'dev-2', 2.5, 901, NULL, 'q', 0)")
    rows = agree(conn, trino, f"SELECT count(quality), sum(quality), count(value), sum(value) FROM {TABLE}")
    assert rows[0][:2] == (2, 3), rows
    # The renamed column keeps the values of the files written before (same field id).
    notes = agree(conn, trino, f"SELECT remark, count(*) FROM {TABLE} GROUP BY remark")
    assert {"w0", "w1", "trino", "upd", "weir", "q", None} <= {r[0] for r in notes}, notes
    check_readings(conn, trino, n="seq")
    agree(conn, trino, f"SELECT ts, device_id, value, seq, at, remark, quality FROM {TABLE}")
    # Weir writes the new columns; Trino reads them back.
    weir_exec(conn, f"INSERT INTO {TABLE} (ts, device_id, value, seq, remark, quality) VALUES "
                    "(TIMESTAMP '2026-01-05 03:00:00', 'dev-3', 7.5, 902, 'w', 7)")
    assert trino_rows(trino, f"SELECT value, quality FROM {TABLE} WHERE seq = 902") == [(7.5, 7)]
    agree(conn, trino, f"SELECT quality, count(*), sum(value) FROM {TABLE} GROUP BY quality")


def test_trino_optimize_expire_weir_reads(lake, conn, trino):
    full = f"SELECT ts, device_id, value, seq, at, remark, quality FROM {TABLE}"
    before = agree(conn, trino, full)
    files_before = files(trino, TABLE)
    assert any(c == 1 for c, _ in files_before), files_before
    trino_exec(trino, f"ALTER TABLE {TABLE} EXECUTE optimize")
    files_after = files(trino, TABLE)
    # Deletes applied: fewer data files, and a position delete file Trino keeps only names
    # files it removed (dangling: Weir must not apply it to anything).
    data_before = [p for c, p in files_before if c == 0]
    live = {p for c, p in files_after if c == 0}
    assert len(live) < len(data_before), files_after
    for content, path in files_after:
        if content == 1:
            refs = pq.read_table(path.removeprefix("s3://"), filesystem=lake.s3.fs).column("file_path")
            assert not set(refs.to_pylist()) & live, (path, refs)
    assert agree(conn, trino, full) == before
    check_readings(conn, trino, n="seq")

    snapshots = trino_rows(trino, f'SELECT snapshot_id FROM lake."readings$snapshots"')
    assert len(snapshots) > 5, snapshots
    trino_exec(trino, f"ALTER TABLE {TABLE} EXECUTE expire_snapshots(retention_threshold => '0s')")
    left = trino_rows(trino, f'SELECT snapshot_id FROM lake."readings$snapshots"')
    assert len(left) == 1, left
    assert weir_rows(conn, f"SELECT snapshot_id FROM iceberg_snapshots('{TABLE}')") == left
    assert agree(conn, trino, full) == before
    # The view's base snapshot is gone: Weir's rollups and its refresh still answer as Trino does.
    agree(conn, trino, f"SELECT date_trunc('hour', ts), device_id, count(*), sum(value) FROM {TABLE} GROUP BY 1, 2")
    execute(conn, "REFRESH MATERIALIZED VIEW lake.readings_1h")
    check_mv(conn, trino)
    # Weir appends on Trino's metadata; Trino reads it.
    weir_exec(conn, f"INSERT INTO {TABLE} (ts, device_id, value, seq) VALUES "
                    "(TIMESTAMP '2026-01-06 00:00:00', 'dev-4', 100.0, 1000)")
    rows = agree(conn, trino, f"SELECT count(*), sum(seq), max(ts) FROM {TABLE}")
    assert rows[0][0] == len(before) + 1, rows
    assert len(trino_rows(trino, f'SELECT snapshot_id FROM lake."readings$snapshots"')) == 2


def test_trino_creates_table_weir_reads(conn, trino):
    trino_exec(
        trino,
        "CREATE TABLE lake.trino_made WITH (partitioning = ARRAY['day(ts)', 'bucket(device, 3)'], "
        "format_version = 2) AS "
        "SELECT x AS id, from_unixtime(1769904000 + x * 700) AS ts, 'd' || CAST(x % 4 AS VARCHAR) AS device, "
        "CAST(x AS DOUBLE) * 1.5 AS value, CAST(ROW(x % 3, 'l' || CAST(x % 2 AS VARCHAR)) "
        "AS ROW(site INTEGER, line VARCHAR)) AS attrs FROM UNNEST(sequence(0, 299)) AS t(x)",
    )
    agree(conn, trino, "SELECT count(*), sum(value), min(ts), max(ts), count(attrs) FROM lake.trino_made")
    agree(conn, trino, "SELECT device, count(*), sum(id) FROM lake.trino_made GROUP BY device")
    lo_w, lo_t = utc("2026-02-02 00:00:00")
    agree(conn, trino, f"SELECT count(*), sum(id) FROM lake.trino_made WHERE ts < {lo_w} AND device = 'd2'",
          f"SELECT count(*), sum(id) FROM lake.trino_made WHERE ts < {lo_t} AND device = 'd2'")
    agree(conn, trino, "SELECT get_field(attrs, 'site'), count(*), sum(value) FROM lake.trino_made GROUP BY 1",
          "SELECT attrs.site, count(*), sum(value) FROM lake.trino_made GROUP BY 1")
    weir_exec(conn, "INSERT INTO lake.trino_made VALUES (1000, TIMESTAMP '2026-02-10 00:00:00+00:00', 'd9', 1.0, NULL)")
    assert trino_rows(trino, "SELECT id, device FROM lake.trino_made WHERE id = 1000") == [(1000, "d9")]


def test_trino_changes_silver_weir_rollups_agree(conn, trino):
    """Trino appends to and deletes from silver.points under the (not yet
    refreshed) Gold views: Weir's rollups answer as Trino's, then its refresh
    makes the views equal to Trino's rollup again."""
    rollups = [f"SELECT date_trunc('{unit}', ts), {keys}, count(*), min(value), max(value), sum(value) "
               f"FROM silver.points GROUP BY 1, {keys}"
               for unit, keys in (("hour", "device_id, metric"), ("day", "device_id, metric"), ("minute", "metric"))]
    inserted = trino_exec(
        trino,
        "INSERT INTO silver.points (ts, device_id, metric, value, quality, unit, source, labels) "
        "SELECT from_unixtime(1767225600 + x * 2000), 'pump' || CAST(x % 3 AS VARCHAR), "
        "'temperature', x * 0.5, 0, 'C', 'trino', MAP(ARRAY['site'], ARRAY['s7']) "
        "FROM UNNEST(sequence(0, 59)) AS t(x)",
    )
    assert inserted == [60], inserted
    rows = agree(conn, trino, "SELECT count(*), sum(value), min(ts), max(ts) FROM silver.points")
    assert rows[0][0] == SILVER_ROWS + 60, rows
    agree(conn, trino, "SELECT labels['site'], source, count(*) FROM silver.points GROUP BY 1, 2",
          "SELECT element_at(labels, 'site'), source, count(*) FROM silver.points GROUP BY 1, 2")
    # Trino's append only: the views answer, with Trino's new files read from the base.
    for sql in rollups:
        text = plan(conn, sql)
        assert "mv_rewrite gold." in text and "rows not yet in gold." in text, text
        agree(conn, trino, sql)

    deleted = trino_exec(trino, "DELETE FROM silver.points WHERE device_id = 'pump1' AND metric = 'pressure'")
    assert deleted[0] > 0, deleted
    rows = agree(conn, trino, "SELECT count(*), sum(value), min(ts), max(ts) FROM silver.points")
    assert rows[0][0] == SILVER_ROWS + 60 - deleted[0], rows
    # A delete Weir did not make: no view answers from rows Trino deleted.
    for sql in rollups:
        agree(conn, trino, sql)
    for view in GOLD:
        execute(conn, f"REFRESH MATERIALIZED VIEW {view}")
    for view in GOLD:
        check_gold(conn, trino, view)


def test_uuid_columns_both_ways(conn, trino):
    """Trino's `uuid` type and Weir's UUID columns are one Iceberg `uuid`: Trino
    writes, deletes (position delete files) and adds a uuid column later; Weir
    reads the values as text; Weir writes, Trino reads them as uuids."""
    ids = [str(uuid.UUID(int=(i + 1) * 0x10001)) for i in range(6)]
    weir_exec(conn, "CREATE SCHEMA IF NOT EXISTS lake")
    trino_exec(trino, "CREATE TABLE lake.uuids (id uuid, n bigint) WITH (format_version = 2)",
               "INSERT INTO lake.uuids VALUES " + ", ".join(f"(UUID '{u}', {i})" for i, u in enumerate(ids)),
               "DELETE FROM lake.uuids WHERE n = 1",
               "ALTER TABLE lake.uuids ADD COLUMN parent uuid",
               "ALTER TABLE lake.uuids ADD COLUMN at time(6)",
               f"INSERT INTO lake.uuids VALUES (UUID '{ids[0]}', 10, UUID '{ids[2]}', TIME '12:34:56.789')")
    agree(conn, trino, "SELECT id, n, parent, at FROM lake.uuids",
          "SELECT CAST(id AS VARCHAR), n, CAST(parent AS VARCHAR), at FROM lake.uuids")
    agree(conn, trino, f"SELECT n FROM lake.uuids WHERE id = '{ids[0]}'",
          f"SELECT n FROM lake.uuids WHERE id = UUID '{ids[0]}'")
    weir_exec(conn, f"INSERT INTO lake.uuids (id, n, parent) VALUES ('{ids[5].upper()}', 20, '{ids[4]}')",
              f"UPDATE lake.uuids SET parent = '{ids[3]}' WHERE n = 2",
              f"DELETE FROM lake.uuids WHERE id = '{ids[4]}'")
    rows = agree(conn, trino, "SELECT id, n, parent FROM lake.uuids",
                 "SELECT CAST(id AS VARCHAR), n, CAST(parent AS VARCHAR) FROM lake.uuids")
    assert len(rows) == 6, rows
    assert trino_rows(trino, f"SELECT n FROM lake.uuids WHERE parent = UUID '{ids[3]}'") == [(2,)]
