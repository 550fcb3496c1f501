"""Issue 7: the warehouse on an S3-compatible server (SeaweedFS on loopback)
and a PostgreSQL catalog shared by several Weir processes.

1. On S3: create, insert, query, compact, query, expire + orphans; PyIceberg
   (pyarrow S3 FileIO with the endpoint) reads the same table.
2. `weir ingest` (Kafka) + `weir serve` (querying) + `weir maintain compact`
   rounds, all at once on one PostgreSQL catalog and the S3 warehouse; then
   every Kafka record exactly once, and PyIceberg reads the table through the
   same PostgreSQL catalog.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, List

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from kafka_harness import KafkaBroker, WeirIngest, assert_exactly_once, produce, wait_until, watermarks
from pg_harness import PASSWORD, USER, PostgresServer
from s3_harness import BUCKET, S3Server
from weir_harness import connect, execute, fetch_rows, fetch_scalar, weir_binary


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch):
    """Credentials in the environment of every process the test starts."""
    for k, v in s3.weir_env().items():
        monkeypatch.setenv(k, v)
    return s3


def maintain(job: str, data: Path, args: List[str], *tables: str, extra=()) -> dict:
    out = subprocess.run([str(weir_binary()), "maintain", job, *tables, "--data-dir", str(data),
                          "--json", *args, *extra], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "testsecret" not in out.stderr + out.stdout
    return {r["table"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


def test_table_lifecycle_on_s3_and_pyiceberg_reads_it(s3_env: S3Server, weir_factory, tmp_path):
    s3 = s3_env
    prefix = f"lake-{uuid.uuid4().hex[:8]}"
    args = s3.weir_args(prefix)
    data = tmp_path / "data"
    server = weir_factory(data, args)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.readings (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, "
                  "value DOUBLE) PARTITIONED BY (day(ts))")
    expected = []
    for batch in range(6):  # six append snapshots: small files to compact
        rows = [(f"2026-01-0{1 + i % 2}T00:{batch:02d}:{i:02d}", f"d{i % 3}", batch * 100.0 + i)
                for i in range(20)]
        expected += rows
        values = ", ".join(f"(TIMESTAMP '{t}', '{d}', {v})" for t, d, v in rows)
        execute(conn, f"INSERT INTO public.readings VALUES {values}")
    total = sum(v for _, _, v in expected)
    query = "SELECT count(*), sum(value), count(DISTINCT value) FROM public.readings"
    assert fetch_rows(conn, query) == [(120, total, 120)]
    per_day = "SELECT CAST(ts AS DATE) AS d, count(*) FROM public.readings GROUP BY 1 ORDER BY 1"
    assert [n for _, n in fetch_rows(conn, per_day)] == [60, 60]

    # Everything the table is made of lives in the bucket, nothing on local disk.
    keys = s3.keys(prefix)
    data_files = [k for k in keys if k.endswith(".parquet")]
    assert len(data_files) >= 12, keys  # 6 inserts x 2 days
    assert any(k.endswith(".metadata.json") for k in keys)
    assert not (data / "warehouse").exists() or not any((data / "warehouse").rglob("*.parquet"))

    # Compaction beside the running server, with the same S3 options from a
    # weir.toml this time (flags, env and file all configure storage).
    config = tmp_path / "weir.toml"
    config.write_text(f'warehouse = "s3://{BUCKET}/{prefix}"\n'
                      f'[storage]\ns3-endpoint = "{s3.endpoint}"\ns3-region = "us-east-1"\n'
                      f's3-path-style = true\n')
    report = maintain("compact", data, ["--config", str(config)], "public.readings")["public.readings"]
    assert report["files_in"] >= 12 and report["files_out"] == 2, report
    assert fetch_rows(conn, query) == [(120, total, 120)]
    assert [n for _, n in fetch_rows(conn, per_day)] == [60, 60]
    explain = "\n".join(str(r) for r in fetch_rows(conn, "EXPLAIN " + query))
    # DataFusion's Parquet scan reads the bucket through the registered store.
    assert "DataSourceExec" in explain and f"{prefix}/public/readings/data/" in explain, explain

    # Expire then orphans: the replaced files go from the bucket; the table stays whole.
    maintain("expire", data, args, "public.readings", extra=["--older-than", "0s", "--retain-last", "1"])
    orphans = maintain("orphans", data, args, "public.readings",
                       extra=["--older-than", "0s", "--allow-short-age"])["public.readings"]
    left = [k for k in s3.keys(prefix) if k.endswith(".parquet")]
    assert len(left) == 2, left
    assert orphans["files_listed"] >= orphans["orphans_deleted"] >= 0
    assert fetch_rows(conn, query) == [(120, total, 120)]
    conn.close()
    server.stop()
    assert "testsecret" not in server.logs()

    # PyIceberg: the SQL catalog file + S3 FileIO (pyarrow) with the endpoint.
    catalog = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db",
                         warehouse=f"s3://{BUCKET}/{prefix}", **s3.pyiceberg_props())
    table = catalog.load_table("public.readings")
    assert table.metadata_location.startswith(f"s3://{BUCKET}/{prefix}/")
    scanned = table.scan().to_arrow()
    assert scanned.num_rows == 120
    assert sorted(scanned.column("value").to_pylist()) == sorted(v for _, _, v in expected)
    assert len(table.inspect.files()) == 2


def pg_sqlalchemy_uri(pg: PostgresServer) -> str:
    return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{pg.port}/registry"


def test_serve_ingest_and_maintain_share_a_postgres_catalog_on_s3(
        s3_env: S3Server, broker: KafkaBroker, weir_factory, tmp_path):
    s3 = s3_env
    pg = PostgresServer()
    try:
        prefix = f"shared-{uuid.uuid4().hex[:8]}"
        shared = ["--catalog-uri", pg.url, *s3.weir_args(prefix)]
        partitions = 3
        topic = broker.create_topic("shared", partitions)
        producer = broker.producer()
        counts = {"good": 0, "bad": 0}
        first = produce(producer, topic, partitions, range(0, 600), poison_every=100)
        counts = {k: counts[k] + first[k] for k in counts}

        # Ingest and serve start at once on a fresh catalog (set-up is serialised).
        started = {}

        def start_ingest():
            started["ingest"] = WeirIngest(
                tmp_path / "ingest", broker, topic,
                extra_args=[*shared, "--commit-interval-ms", "200"], log_dir=tmp_path)

        t = threading.Thread(target=start_ingest)
        t.start()
        server = weir_factory(tmp_path / "serve", [*shared, "--maintenance=false"])
        t.join()
        ingest = started["ingest"]
        conn = connect(server.uri)
        try:
            stop = threading.Event()
            errors: List[BaseException] = []

            def feed():
                try:
                    start = 600
                    while not stop.is_set():
                        c = produce(producer, topic, partitions, range(start, start + 150),
                                    poison_every=100)
                        for k in counts:
                            counts[k] += c[k]
                        start += 150
                        time.sleep(0.2)
                except BaseException as e:  # reported below
                    errors.append(e)

            feeder = threading.Thread(target=feed)
            feeder.start()
            rounds = []
            seen = []
            try:
                deadline = time.monotonic() + 12
                while time.monotonic() < deadline or len(rounds) < 3:
                    seen.append(fetch_scalar(conn, "SELECT count(*) FROM silver.points"))
                    rounds.append(maintain("compact", tmp_path / "maintain", shared,
                                           "silver.points", "bronze.raw_messages"))
            finally:
                stop.set()
                feeder.join()
            assert not errors, errors
            # serve saw the ingest process's commits as they landed.
            assert seen == sorted(seen) and seen[-1] > seen[0], seen
            assert sum(r["silver.points"]["files_in"] for r in rounds) > 0, rounds

            ends = broker.end_offsets(topic, partitions)
            for table in ("bronze.raw_messages", "silver.points"):
                wait_until(lambda: watermarks(conn, table, topic) == ends or
                           watermarks(conn, table, topic), 90, f"{table} catches up")
            assert_exactly_once(conn, topic, counts, ends)
            # One more compaction with everything quiet; still exactly once.
            maintain("compact", tmp_path / "maintain", shared, "silver.points")
            assert_exactly_once(conn, topic, counts, ends)
            good = counts["good"]
            assert fetch_scalar(conn, f"SELECT count(DISTINCT value) FROM silver.points "
                                      f"WHERE source LIKE 'kafka:{topic}/%'") == good
        finally:
            conn.close()
            assert ingest.stop() == 0
            server.stop()
        for log in (server.logs(), ingest.stderr_path.read_text(errors="replace")):
            assert "testsecret" not in log and PASSWORD not in log

        # The catalog rows are in PostgreSQL and point into the bucket.
        rows = pg.psql("SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
                       "WHERE table_name = 'points'")
        assert rows and rows[0][2].startswith(f"s3://{BUCKET}/{prefix}/"), rows
        assert not list((tmp_path / "serve").rglob("*.parquet"))

        catalog = SqlCatalog("weir", uri=pg_sqlalchemy_uri(pg),
                             warehouse=f"s3://{BUCKET}/{prefix}", **s3.pyiceberg_props())
        points = catalog.load_table("silver.points").scan(
            selected_fields=("value", "source")).to_arrow()
        ours = [v for v, src in zip(points.column("value").to_pylist(),
                                    points.column("source").to_pylist())
                if src.startswith(f"kafka:{topic}/")]
        assert len(ours) == len(set(ours)) == good

        # The other way round: a table PyIceberg creates and fills (pyarrow S3
        # writes, a commit on the PostgreSQL catalog) is queryable in Weir.
        ext = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", "c"]})
        created = catalog.create_table("public.from_pyiceberg", schema=ext.schema)
        created.append(ext)
        again = weir_factory(tmp_path / "serve2", [*shared, "--maintenance=false"])
        conn = connect(again.uri)
        try:
            assert fetch_rows(conn, "SELECT id, name FROM public.from_pyiceberg ORDER BY id") == \
                [(1, "a"), (2, "b"), (3, "c")]
            assert fetch_scalar(conn, f"SELECT count(*) FROM silver.points "
                                      f"WHERE source LIKE 'kafka:{topic}/%'") == good
        finally:
            conn.close()
    finally:
        pg.destroy()
