"""An external PostgreSQL (the device registry) attached as the catalog `pg`:
queries, joins with Iceberg, pushdown shown by EXPLAIN, metadata, outages.

A real PostgreSQL cluster (pg_harness) and the real `weir serve` binary;
expected results are computed in Python from the rows loaded into both."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections import defaultdict

import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pg_harness import REGISTRY_DDL, PostgresServer
from weir_harness import WeirServer, connect, execute, fetch_rows, fetch_scalar, weir_binary

GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5
GRPC_UNAVAILABLE = 14


# name, location, protocol, enabled
DEVICES = [
    ("press-01", "hall-a", "ModbusTcp", True),
    ("press-02", "hall-a", "ModbusTcp", True),
    ("oven-01", "hall-b", "OpcUa", True),
    ("oven-02", "hall-b", "OpcUa", False),
    ("pump-01", "yard", "Mqtt", True),
    ("spare-01", None, "Custom", True),
]
METRICS = ["temperature", "pressure"]
POINTS_PER_METRIC = 20


def sql_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"


def point_value(device: str, metric: str, i: int) -> float:
    return float(len(device) * 10 + (3 if metric == "pressure" else 1) * i)


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer()
    values = ", ".join(
        f"({sql_literal(n)}, {sql_literal(loc)}, '{proto}', 'tcp://{n}:502', {sql_literal(en)})"
        for n, loc, proto, en in DEVICES
    )
    server.psql(
        REGISTRY_DDL
        + f"INSERT INTO devices (name, location, protocol, endpoint, enabled) VALUES {values};"
        + "INSERT INTO tags (device_id, name, address, data_type, unit, scan_rate) "
          "SELECT d.id, m, d.name || '/' || m, 'Float', CASE m WHEN 'temperature' THEN 'C' ELSE 'bar' END, 1000 "
          "FROM devices d, (VALUES ('temperature'), ('pressure')) AS t(m) WHERE d.location IS NOT NULL;"
    )
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def weir(pg, tmp_path_factory):
    """silver.points loaded with `weir import`, then a server with `pg` attached."""
    base = tmp_path_factory.mktemp("weir-pg")
    start = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
    rows = defaultdict(list)
    # Points of every registered device plus one the registry does not know.
    for device in [d[0] for d in DEVICES] + ["unregistered-9"]:
        for metric in METRICS:
            for i in range(POINTS_PER_METRIC):
                rows["ts"].append(start + dt.timedelta(seconds=i))
                rows["device_id"].append(device)
                rows["metric"].append(metric)
                rows["value"].append(point_value(device, metric, i))
    parquet = base / "points.parquet"
    pq.write_table(
        pa.table({
            "ts": pa.array(rows["ts"], pa.timestamp("us", tz="UTC")),
            "device_id": rows["device_id"],
            "metric": rows["metric"],
            "value": rows["value"],
        }),
        parquet,
    )
    data_dir = base / "data"
    proc = subprocess.run(
        [str(weir_binary()), "import", "--data-dir", str(data_dir), "--table", "silver.points", str(parquet)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    server = WeirServer(data_dir, ["--postgres-catalog", f"pg={pg.url}", "--maintenance=false"])
    yield server
    server.discard()


@pytest.fixture(scope="module")
def conn(weir):
    c = connect(weir.uri)
    yield c
    c.close()


def explain(conn, sql: str) -> str:
    return "\n".join(str(r[1]) for r in fetch_rows(conn, "EXPLAIN " + sql))


def test_filtered_select_from_pg(conn):
    rows = fetch_rows(
        conn,
        "SELECT name, location FROM pg.public.devices WHERE enabled AND location LIKE 'hall%' ORDER BY name",
    )
    expected = sorted((n, loc) for n, loc, _, en in DEVICES if en and loc and loc.startswith("hall"))
    assert rows == expected


def test_join_iceberg_points_with_pg_devices_by_location(conn):
    rows = fetch_rows(
        conn,
        """SELECT d.location, count(*) AS n, sum(p.value) AS total
           FROM silver.points p JOIN pg.public.devices d ON p.device_id = d.name
           WHERE d.enabled AND p.metric = 'temperature'
           GROUP BY d.location ORDER BY d.location NULLS LAST""",
    )
    expected = defaultdict(lambda: [0, 0.0])
    for name, loc, _, enabled in DEVICES:
        if not enabled:
            continue
        for i in range(POINTS_PER_METRIC):
            expected[loc][0] += 1
            expected[loc][1] += point_value(name, "temperature", i)
    want = sorted(((loc, n, total) for loc, (n, total) in expected.items()),
                  key=lambda r: (r[0] is None, r[0] or ""))
    assert rows == want


def test_explain_shows_filters_and_aggregates_pushed_to_postgres(conn):
    plan = explain(conn, "SELECT location, count(*) FROM pg.public.devices WHERE enabled GROUP BY location")
    assert "VirtualExecutionPlan" in plan, plan
    assert "name=postgres:pg" in plan, plan
    pushed = plan[plan.index("VirtualExecutionPlan"):]
    assert "GROUP BY" in pushed and "WHERE" in pushed and "count(" in pushed.lower(), plan
    # No DataFusion aggregate above it: PostgreSQL did the work.
    assert "AggregateExec" not in plan, plan


def test_join_between_pg_tables_runs_in_postgres(conn):
    sql = """SELECT d.location, count(*) FROM pg.public.devices d JOIN pg.public.tags t ON t.device_id = d.id
             WHERE t.unit = 'bar' GROUP BY d.location ORDER BY d.location"""
    plan = explain(conn, sql)
    assert plan.count("VirtualExecutionPlan") == 1, plan
    assert "JOIN" in plan[plan.index("VirtualExecutionPlan"):], plan
    assert "HashJoinExec" not in plan, plan
    expected = defaultdict(int)
    for _, loc, _, _ in DEVICES:
        if loc:
            expected[loc] += 1
    assert fetch_rows(conn, sql) == sorted(expected.items())


def test_explain_of_cross_source_join_pushes_the_pg_side(conn):
    plan = explain(
        conn,
        "SELECT d.location, avg(p.value) FROM silver.points p JOIN pg.public.devices d "
        "ON p.device_id = d.name WHERE d.protocol = 'OpcUa' GROUP BY d.location",
    )
    # The join runs in DataFusion; PostgreSQL gets the filter and only the
    # columns the join needs.
    assert "HashJoinExec" in plan, plan
    pushed = plan[plan.index("VirtualExecutionPlan"):].splitlines()[0]
    assert "WHERE" in pushed and "OpcUa" in pushed, pushed
    assert "endpoint" not in pushed and "config" not in pushed, pushed


def test_table_created_later_is_queryable_and_listed(pg, conn):
    pg.psql("CREATE SCHEMA plant; CREATE TABLE plant.sites (code TEXT PRIMARY KEY, city TEXT);"
            "INSERT INTO plant.sites VALUES ('hall-a', 'Lyon'), ('hall-b', 'Turin');")
    assert fetch_rows(conn, "SELECT code, city FROM pg.plant.sites ORDER BY code") == [
        ("hall-a", "Lyon"), ("hall-b", "Turin")]
    # Listings re-read the names at most once a second: poll briefly.
    deadline = time.monotonic() + 10
    while True:
        listed = fetch_rows(conn, "SELECT table_schema, table_name FROM pg.information_schema.tables "
                                  "WHERE table_catalog = 'pg' AND table_schema = 'plant'")
        if listed == [("plant", "sites")] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert listed == [("plant", "sites")]


def test_get_objects_lists_pg_catalog_tables_and_columns(conn):
    catalogs = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    by_name = {c["catalog_name"]: c for c in catalogs}
    assert {"weir", "pg"} <= set(by_name)
    schemas = {s["db_schema_name"]: s for s in by_name["pg"]["catalog_db_schemas"]}
    assert "public" in schemas
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert {"devices", "tags"} <= set(tables)
    columns = [c["column_name"] for c in tables["devices"]["table_columns"]]
    assert columns[:5] == ["id", "name", "description", "protocol", "location"]
    # The filter by catalog only returns pg.
    only_pg = conn.adbc_get_objects(depth="tables", catalog_filter="pg").read_all().to_pylist()
    assert [c["catalog_name"] for c in only_pg] == ["pg"]


def test_create_iceberg_table_from_pg_rows(conn):
    execute(conn, "CREATE TABLE public.registry_copy AS "
                  "SELECT name, location FROM pg.public.devices WHERE enabled")
    execute(conn, "INSERT INTO public.registry_copy SELECT name, 'copied' FROM pg.public.devices WHERE NOT enabled")
    rows = fetch_rows(conn, "SELECT name, location FROM public.registry_copy ORDER BY name")
    expected = sorted((n, loc if en else "copied") for n, loc, _, en in DEVICES)
    assert rows == expected
    execute(conn, "DROP TABLE public.registry_copy")


def test_sql_postgres_rejects_is_invalid_argument(conn):
    with pytest.raises(dbapi.Error) as excinfo:
        fetch_rows(conn, "SELECT sum(scan_rate / (scan_rate - scan_rate)) FROM pg.public.tags")
    assert excinfo.value.vendor_code == GRPC_INVALID_ARGUMENT, excinfo.value
    assert "division by zero" in str(excinfo.value)
    with pytest.raises(dbapi.Error) as excinfo:
        fetch_rows(conn, "SELECT * FROM pg.public.no_such_table")
    assert excinfo.value.vendor_code == GRPC_NOT_FOUND, excinfo.value


def test_postgres_down_is_unavailable_and_iceberg_still_answers(pg, weir, conn):
    # Warm the pool so the outage hits established connections too.
    assert fetch_scalar(conn, "SELECT count(*) FROM pg.public.devices") == len(DEVICES)
    pg.stop()
    try:
        for sql in ["SELECT count(*) FROM pg.public.devices",
                    "SELECT count(*) FROM silver.points p JOIN pg.public.devices d ON p.device_id = d.name"]:
            started = time.monotonic()
            with pytest.raises(dbapi.Error) as excinfo:
                fetch_rows(conn, sql)
            assert excinfo.value.vendor_code == GRPC_UNAVAILABLE, excinfo.value
            assert "PostgreSQL catalog `pg`" in str(excinfo.value)
            assert time.monotonic() - started < 15
        assert weir.proc.poll() is None
        total = (len(DEVICES) + 1) * len(METRICS) * POINTS_PER_METRIC
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points") == total
        # Listings leave the unreachable database out instead of failing.
        listed = fetch_rows(conn, "SELECT DISTINCT table_catalog FROM information_schema.columns")
        assert ("weir",) in listed and ("pg",) not in listed
        tables = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
        assert "weir" in {c["catalog_name"] for c in tables}
    finally:
        pg.start()
    # Back up: the same session recovers without a restart of weir.
    assert fetch_scalar(conn, "SELECT count(*) FROM pg.public.devices") == len(DEVICES)


def test_server_starts_while_postgres_is_down(weir_factory, tmp_path):
    """A database that is down at start fails only the queries that need it;
    once it is up the same server reaches it."""
    pg = PostgresServer()
    try:
        pg.psql("CREATE TABLE late (v INT); INSERT INTO late VALUES (1), (2), (3);")
        pg.stop()
        server = weir_factory(tmp_path / "data", ["--postgres-catalog", f"pg={pg.url}", "--maintenance=false"])
        with connect(server.uri) as c:
            assert fetch_scalar(c, "SELECT count(*) FROM silver.points") == 0
            with pytest.raises(dbapi.Error) as excinfo:
                fetch_rows(c, "SELECT sum(v) FROM pg.public.late")
            assert excinfo.value.vendor_code == GRPC_UNAVAILABLE, excinfo.value
            pg.start()
            assert fetch_scalar(c, "SELECT sum(v) FROM pg.public.late") == 6
    finally:
        pg.destroy()
