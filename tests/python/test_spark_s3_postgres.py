"""Spark on the production layout (issue 18): Weir's catalog in PostgreSQL, its
warehouse on S3 (SeaweedFS on loopback), one `weir serve` on them, and Spark
(local[2], Iceberg JdbcCatalog on the same PostgreSQL database, S3FileIO on the
same bucket; README "When one machine is not enough"). Spark's answer is the
oracle: Weir writes a partitioned table, Spark reads it; Spark inserts, deletes
(merge-on-read position deletes) and renames a column, Weir reads it; Weir
appends, Spark reads; `weir maintain compact` from the CLI, both agree."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from pg_harness import PASSWORD, USER, PostgresServer
from s3_harness import ACCESS_KEY, BUCKET, REGION, SECRET_KEY, S3Server
from test_spark_interop import agree, spark_conf, spark_exec, spark_install, spark_rows, start_spark, weir_exec, weir_rows
from weir_harness import WeirServer, connect, weir_binary

CATALOG_DB = "weir"
TABLE = "lake.readings"


class Lakehouse:
    """The shared layout: PostgreSQL catalog URL, S3 warehouse flags, credentials env."""

    def __init__(self, s3: S3Server, pg: PostgresServer, prefix: str, work: Path):
        self.s3, self.pg, self.prefix, self.work = s3, pg, prefix, work
        self.catalog_uri = f"postgres://{USER}:{PASSWORD}@127.0.0.1:{pg.port}/{CATALOG_DB}?sslmode=disable"
        self.warehouse = f"s3://{BUCKET}/{prefix}"
        self.args = ["--catalog-uri", self.catalog_uri, *s3.weir_args(prefix)]

    def spark_conf(self, jar_dir: Path) -> dict[str, str]:
        """test_spark_interop's settings with the catalog in PostgreSQL and the
        warehouse on S3 (the `--conf` lines of the README)."""
        conf = spark_conf(Path("/nonexistent"), jar_dir)
        conf.update({
            "spark.sql.catalog.weir.uri": f"jdbc:postgresql://127.0.0.1:{self.pg.port}/{CATALOG_DB}",
            "spark.sql.catalog.weir.jdbc.user": USER,
            "spark.sql.catalog.weir.jdbc.password": PASSWORD,
            "spark.sql.catalog.weir.warehouse": self.warehouse,
            "spark.sql.catalog.weir.io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
            "spark.sql.catalog.weir.s3.endpoint": self.s3.endpoint,
            "spark.sql.catalog.weir.s3.path-style-access": "true",
            "spark.sql.catalog.weir.s3.access-key-id": ACCESS_KEY,
            "spark.sql.catalog.weir.s3.secret-access-key": SECRET_KEY,
            "spark.sql.catalog.weir.client.region": REGION,
        })
        return conf

    def maintain(self, job: str, *args: str) -> dict:
        """`weir maintain JOB` with the server's catalog, warehouse and S3 env."""
        out = subprocess.run(
            [str(weir_binary()), "maintain", job, *args, "--data-dir", str(self.work / "maintain"),
             *self.args, "--json"],
            capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return {r["table"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Iterator[Lakehouse]:
    install = spark_install()
    if install is None or not (install[1] / "iceberg-aws-bundle-1.12.0.jar").is_file():
        pytest.skip("Spark with the AWS bundle is not installed: run `tests/scripts/spark.sh install`")
    # Credentials through the environment of every weir process (as in production).
    saved = {k: os.environ.get(k) for k in ("WEIR_S3_ACCESS_KEY_ID", "WEIR_S3_SECRET_ACCESS_KEY")}
    s3 = S3Server()
    pg = None
    try:
        os.environ.update(s3.weir_env())
        pg = PostgresServer()
        pg.psql_admin(f"CREATE DATABASE {CATALOG_DB}", db="postgres")
        yield Lakehouse(s3, pg, f"spark-{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("lake"))
    finally:
        if pg is not None:
            pg.destroy()
        s3.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def server(lake: Lakehouse, tmp_path_factory) -> Iterator[WeirServer]:
    s = WeirServer(tmp_path_factory.mktemp("weir-serve") / "data", [*lake.args, "--maintenance=false"])
    yield s
    s.discard()
    assert "testsecret" not in s.logs() and PASSWORD not in s.logs()


@pytest.fixture(scope="module")
def conn(server: WeirServer):
    c = connect(server.uri)
    yield c
    c.close()


@pytest.fixture(scope="module")
def spark(lake: Lakehouse, server: WeirServer):
    with start_spark(lake.spark_conf(spark_install()[1]), app="weir-spark-s3-postgres") as session:
        yield session


FULL = f"SELECT ts, device_id, value, n FROM {TABLE}"


def test_weir_writes_spark_reads(lake, conn, spark):
    weir_exec(
        conn,
        "CREATE SCHEMA lake",
        f"CREATE TABLE {TABLE} (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, "
        "value DOUBLE, n BIGINT) PARTITIONED BY (day(ts), bucket(4, device_id))",
        # 400 rows over five days, every 17 minutes, five devices; two commits.
        f"INSERT INTO {TABLE} SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value FROM generate_series(0, 249)",
        f"INSERT INTO {TABLE} SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value FROM generate_series(250, 399)",
        f"INSERT INTO {TABLE} VALUES (TIMESTAMP '2026-01-03 12:00:00', 'dev-9', NULL, NULL)",
    )
    rows = agree(conn, spark, f"SELECT count(*), sum(value), sum(n), count(value), min(ts), max(ts) FROM {TABLE}")
    assert rows[0][0] == 401
    agree(conn, spark, f"SELECT device_id, count(*), sum(value), max(n) FROM {TABLE} GROUP BY device_id")
    agree(conn, spark, f"SELECT count(*), sum(n) FROM {TABLE} "
          "WHERE ts >= TIMESTAMP '2026-01-02 00:00:00' AND ts < TIMESTAMP '2026-01-03 12:00:00'")
    agree(conn, spark, f"SELECT count(*), sum(value) FROM {TABLE} WHERE device_id = 'dev-3' AND n > 100")
    agree(conn, spark, FULL)
    # Spark reads Weir's partitions, and every file is in the bucket.
    by_day = spark_rows(spark, f"SELECT partition.ts_day, sum(record_count) FROM {TABLE}.partitions GROUP BY 1")
    assert by_day == weir_rows(conn, f"SELECT CAST(ts AS DATE), count(*) FROM {TABLE} GROUP BY 1")
    paths = [p for (p,) in spark_rows(spark, f"SELECT file_path FROM {TABLE}.files")]
    assert paths and all(p.startswith(f"{lake.warehouse}/") for p in paths), paths
    assert set(lake.s3.keys(lake.prefix)) >= {p.removeprefix("s3://") for p in paths}
    # The catalog row Spark loaded from is Weir's, in PostgreSQL.
    rows = lake.pg.psql_admin("SELECT metadata_location FROM iceberg_tables WHERE table_name = 'readings'",
                              db=CATALOG_DB).split()
    assert len(rows) == 1 and rows[0].startswith(f"{lake.warehouse}/lake/readings/metadata/"), rows


def test_spark_inserts_deletes_renames_weir_reads(lake, conn, spark):
    props = dict(spark_rows(spark, f"SHOW TBLPROPERTIES {TABLE}"))
    assert props.get("format-version") == "2", props
    spark_exec(
        spark,
        f"ALTER TABLE {TABLE} SET TBLPROPERTIES ('write.delete.mode' = 'merge-on-read', "
        "'write.update.mode' = 'merge-on-read')",
        f"INSERT INTO {TABLE} SELECT CAST(timestamp_seconds(1767225600 + id * 1020) AS TIMESTAMP_NTZ), "
        "concat('dev-', id % 5), id * 0.5, id FROM range(400, 520)",
    )
    agree(conn, spark, f"SELECT count(*), sum(value), sum(n), max(ts) FROM {TABLE}")
    spark_exec(spark, f"DELETE FROM {TABLE} WHERE device_id = 'dev-2' AND n % 3 = 0")
    deletes = spark_rows(spark, f"SELECT content, file_path FROM {TABLE}.delete_files")
    assert deletes and all(c == 1 and p.startswith(f"{lake.warehouse}/") for c, p in deletes), deletes
    rows = agree(conn, spark, f"SELECT count(*), sum(value), sum(n) FROM {TABLE}")
    assert rows[0][0] == 521 - len([n for n in range(520) if n % 5 == 2 and n % 3 == 0]), rows
    agree(conn, spark, f"SELECT device_id, count(*), sum(n) FROM {TABLE} GROUP BY device_id")
    agree(conn, spark, FULL)

    spark_exec(spark, f"ALTER TABLE {TABLE} RENAME COLUMN value TO reading")
    cols = [f.name for f in spark.table(TABLE).schema.fields]
    assert cols == ["ts", "device_id", "reading", "n"], cols
    agree(conn, spark, f"SELECT ts, device_id, reading, n FROM {TABLE}")
    agree(conn, spark, f"SELECT device_id, count(reading), sum(reading) FROM {TABLE} "
          "WHERE reading > 100 GROUP BY device_id")
    assert weir_rows(conn, f"SELECT count(*) FROM {TABLE} WHERE reading IS NULL") == [(1,)]


def test_weir_appends_spark_reads(conn, spark):
    weir_exec(
        conn,
        f"INSERT INTO {TABLE} (ts, device_id, reading, n) SELECT to_timestamp_seconds(1767225600 + value * 1020), "
        "concat('dev-', value % 5), value * 0.5, value FROM generate_series(520, 599)",
    )
    rows = agree(conn, spark, f"SELECT count(*), sum(reading), sum(n), min(ts), max(ts) FROM {TABLE}")
    assert rows[0][2] == sum(range(600)) - sum(n for n in range(520) if n % 5 == 2 and n % 3 == 0), rows
    agree(conn, spark, f"SELECT device_id, count(*), sum(reading) FROM {TABLE} GROUP BY device_id")
    agree(conn, spark, f"SELECT ts, device_id, reading, n FROM {TABLE}")


def test_weir_maintain_compact_both_agree(lake, server, conn, spark):
    full = f"SELECT ts, device_id, reading, n FROM {TABLE}"
    before = agree(conn, spark, full)
    files_before = len(spark_rows(spark, f"SELECT file_path FROM {TABLE}.files"))
    report = lake.maintain("compact", TABLE)[TABLE]
    assert report["files_in"] > report["files_out"] >= 1, report
    files_after = len(spark_rows(spark, f"SELECT file_path FROM {TABLE}.files"))
    assert files_after < files_before, (files_before, files_after, report)
    assert agree(conn, spark, full) == before
    agree(conn, spark, f"SELECT count(*), sum(reading), sum(n), min(ts), max(ts) FROM {TABLE}")
    agree(conn, spark, f"SELECT device_id, count(*), sum(reading) FROM {TABLE} "
          "WHERE ts >= TIMESTAMP '2026-01-03 00:00:00' GROUP BY device_id")
    # Spark writes on after Weir's rewrite; Weir reads it.
    spark_exec(spark, f"DELETE FROM {TABLE} WHERE n >= 590")
    rows = agree(conn, spark, f"SELECT count(*), sum(n) FROM {TABLE}")
    assert rows[0][0] == len(before) - 10, rows
    # Every file of the table is in the bucket; nothing went to local disk.
    assert not list(server.data_dir.rglob("*.parquet")) and not list((lake.work / "maintain").rglob("*.parquet"))
    assert any(k.endswith(".parquet") for k in lake.s3.keys(f"{lake.prefix}/lake/readings/data"))
