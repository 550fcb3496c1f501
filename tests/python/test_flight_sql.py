"""End-to-end tests of Weir's Flight SQL surface via ADBC and raw pyarrow.flight."""

from __future__ import annotations

import datetime as dt

import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import flightsql_proto as proto
from flightsql_client import assert_schemas_equal
from weir_harness import execute, fetch_rows, fetch_scalar, fetch_table

UTC = dt.timezone.utc
Status = adbc_driver_manager.AdbcStatusCode

# gRPC status codes, which the ADBC Flight SQL driver reports as vendor_code.
GRPC_INVALID_ARGUMENT = 3
GRPC_NOT_FOUND = 5

POINTS_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("quality", pa.int32()),
        pa.field("unit", pa.string()),
        pa.field("source", pa.string()),
        pa.field("labels", pa.map_(pa.string(), pa.string())),
    ]
)
POINTS_COLUMNS = POINTS_SCHEMA.names
REQUIRED_SCHEMAS = {"public", "bronze", "silver", "gold"}

# (ts, device_id, metric, value, quality, unit, source) rows written by the tests.
KNOWN_POINTS = [
    (dt.datetime(2024, 5, 1, 0, 0, tzinfo=UTC), "dev-a", "temp", 1.5, 192, "C", "pytest"),
    (dt.datetime(2024, 5, 1, 0, 1, tzinfo=UTC), "dev-a", "temp", 2.5, 192, "C", "pytest"),
    (dt.datetime(2024, 5, 2, 12, 0, tzinfo=UTC), "dev-b", "temp", 10.0, 0, "C", "pytest"),
]
AGG_SQL = (
    "SELECT device_id, min(value) AS min_value, max(value) AS max_value, count(*) AS n "
    "FROM silver.points GROUP BY device_id ORDER BY device_id"
)
EXPECTED_AGG = [("dev-a", 1.5, 2.5, 2), ("dev-b", 10.0, 10.0, 1)]


def sql_literal(value) -> str:
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.strftime('%Y-%m-%dT%H:%M:%S')}Z'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def values_clause(rows) -> str:
    return ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)


@pytest.fixture(scope="module")
def points(adbc_conn):
    """Insert KNOWN_POINTS into silver.points once for the module."""
    execute(
        adbc_conn,
        "INSERT INTO silver.points (ts, device_id, metric, value, quality, unit, source) "
        f"VALUES {values_clause(KNOWN_POINTS)}",
    )
    return KNOWN_POINTS


def assert_adbc_error(excinfo, status, grpc_code) -> None:
    err = excinfo.value
    assert err.status_code == status, f"expected {status!r}, got {err.status_code!r}: {err}"
    assert err.vendor_code == grpc_code, f"expected gRPC code {grpc_code}: {err}"


def assert_points_schema(schema: pa.Schema) -> None:
    assert schema.names == POINTS_COLUMNS
    for expected in POINTS_SCHEMA:
        actual = schema.field(expected.name)
        assert actual.nullable == expected.nullable, f"nullability of {expected.name}"
        if pa.types.is_map(expected.type):
            # Map entry/field names differ between producers; check the shape.
            assert pa.types.is_map(actual.type), actual
            assert actual.type.key_type == pa.string()
            assert actual.type.item_type == pa.string()
        else:
            assert actual.type == expected.type, f"type of {expected.name}: {actual.type}"


def snapshot_ids(conn, table: str) -> list:
    return sorted(
        r[0] for r in fetch_rows(conn, f"SELECT snapshot_id FROM iceberg_snapshots('{table}')")
    )


def table_names_in(conn, schema: str) -> set:
    rows = fetch_rows(
        conn,
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_catalog = 'weir' AND table_schema = '{schema}'",
    )
    return {r[0] for r in rows}


# --- ADBC: queries and DDL/DML ----------------------------------------------------


def test_select_one(adbc_conn):
    assert fetch_rows(adbc_conn, "SELECT 1") == [(1,)]


def test_points_group_by_device(adbc_conn, points):
    rows = fetch_rows(
        adbc_conn,
        "SELECT device_id, count(*) AS n, avg(value) AS avg_value "
        "FROM silver.points GROUP BY device_id ORDER BY device_id",
    )
    assert rows == [("dev-a", 2, 2.0), ("dev-b", 1, 10.0)]


def test_points_rows_round_trip(adbc_conn, points):
    rows = fetch_rows(
        adbc_conn,
        "SELECT ts, device_id, metric, value, quality, unit, source, labels "
        "FROM silver.points ORDER BY ts",
    )
    assert [r[:7] for r in rows] == points
    assert [r[7] for r in rows] == [None] * len(points)


def test_create_insert_select_drop_round_trip(adbc_conn):
    execute(
        adbc_conn,
        "CREATE TABLE public.round_trip (id BIGINT NOT NULL, name VARCHAR, ts TIMESTAMP) "
        "PARTITIONED BY (day(ts))",
    )
    assert "round_trip" in table_names_in(adbc_conn, "public")
    execute(
        adbc_conn,
        "INSERT INTO public.round_trip VALUES "
        "(1, 'one', TIMESTAMP '2024-01-01 10:00:00'), "
        "(2, NULL, TIMESTAMP '2024-01-02 11:30:00'), "
        "(3, 'three', NULL)",
    )
    rows = fetch_rows(adbc_conn, "SELECT id, name, ts FROM public.round_trip ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(1, "one"), (2, None), (3, "three")]
    assert [r[2] and r[2].replace(tzinfo=None) for r in rows] == [
        dt.datetime(2024, 1, 1, 10, 0),
        dt.datetime(2024, 1, 2, 11, 30),
        None,
    ]

    execute(adbc_conn, "DROP TABLE public.round_trip")
    assert "round_trip" not in table_names_in(adbc_conn, "public")
    with pytest.raises(dbapi.ProgrammingError) as excinfo:
        fetch_rows(adbc_conn, "SELECT * FROM public.round_trip")
    assert_adbc_error(excinfo, Status.NOT_FOUND, GRPC_NOT_FOUND)


def test_explain_analyze_shows_weir_metrics(adbc_conn):
    """EXPLAIN ANALYZE over Flight: the insert's writes, the scan's manifest
    pruning (one day of three), and DataFusion's Parquet metrics below it."""
    execute(
        adbc_conn,
        "CREATE TABLE public.explained (ts TIMESTAMP NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))",
    )
    try:
        insert = "\n".join(
            str(r[1])
            for r in fetch_rows(
                adbc_conn,
                "EXPLAIN ANALYZE INSERT INTO public.explained VALUES "
                "('2024-01-01T01:00:00', 1.0), ('2024-01-02T01:00:00', 2.0)",
            )
        )
        assert "files_written=2, rows_written=2" in insert, insert
        execute(adbc_conn, "INSERT INTO public.explained VALUES ('2024-01-03T01:00:00', 3.0)")
        plan = "\n".join(
            str(r[1])
            for r in fetch_rows(
                adbc_conn,
                "EXPLAIN ANALYZE SELECT sum(v) FROM public.explained "
                "WHERE ts >= '2024-01-02T00:00:00' AND ts < '2024-01-03T00:00:00'",
            )
        )
        scan = next(line for line in plan.splitlines() if "WeirScan:" in line)
        assert "files_listed=3, files_pruned=2, files_scanned=1" in scan, plan
        parquet = next(line for line in plan.splitlines() if "DataSourceExec:" in line)
        assert "row_groups_pruned_statistics=" in parquet, plan
    finally:
        execute(adbc_conn, "DROP TABLE public.explained")


def test_create_schema(adbc_conn):
    execute(adbc_conn, "CREATE SCHEMA scratch")
    execute(adbc_conn, "CREATE TABLE scratch.t (id BIGINT)")
    execute(adbc_conn, "INSERT INTO scratch.t VALUES (7), (8)")
    assert fetch_scalar(adbc_conn, "SELECT sum(id) FROM scratch.t") == 15
    schemas = {
        r[0]
        for r in fetch_rows(
            adbc_conn,
            "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = 'weir'",
        )
    }
    assert {"scratch"} | REQUIRED_SCHEMAS <= schemas


def test_declared_tables_exist(adbc_conn):
    assert "points" in table_names_in(adbc_conn, "silver")
    assert {"raw_messages", "dead_letters"} <= table_names_in(adbc_conn, "bronze")
    assert {"points_1m", "points_1h", "points_1d"} <= table_names_in(adbc_conn, "gold")


def test_show_tables_lists_points(adbc_conn):
    table = fetch_table(adbc_conn, "SHOW TABLES")
    triples = set(
        zip(
            table.column("table_catalog").to_pylist(),
            table.column("table_schema").to_pylist(),
            table.column("table_name").to_pylist(),
        )
    )
    assert ("weir", "silver", "points") in triples


def test_information_schema_columns_of_points(adbc_conn):
    rows = fetch_rows(
        adbc_conn,
        "SELECT column_name, is_nullable FROM information_schema.columns "
        "WHERE table_catalog = 'weir' AND table_schema = 'silver' AND table_name = 'points' "
        "ORDER BY ordinal_position",
    )
    assert [r[0] for r in rows] == POINTS_COLUMNS
    assert [r[1] for r in rows] == ["YES" if f.nullable else "NO" for f in POINTS_SCHEMA]


# --- ADBC: metadata -------------------------------------------------------------


def get_objects(conn, depth: str) -> list:
    return conn.adbc_get_objects(depth=depth).read_all().to_pylist()


def find(items, key: str, name: str) -> dict:
    matches = [item for item in items or [] if item[key] == name]
    assert len(matches) == 1, f"{name!r} not found exactly once in {[i[key] for i in items or []]}"
    return matches[0]


def points_entry(catalogs) -> dict:
    weir = find(catalogs, "catalog_name", "weir")
    silver = find(weir["catalog_db_schemas"], "db_schema_name", "silver")
    return find(silver["db_schema_tables"], "table_name", "points")


def test_get_objects_catalogs(adbc_conn):
    catalogs = get_objects(adbc_conn, "catalogs")
    weir = find(catalogs, "catalog_name", "weir")
    assert not weir["catalog_db_schemas"]


def test_get_objects_db_schemas(adbc_conn):
    weir = find(get_objects(adbc_conn, "db_schemas"), "catalog_name", "weir")
    schemas = {s["db_schema_name"]: s for s in weir["catalog_db_schemas"]}
    assert REQUIRED_SCHEMAS <= set(schemas)
    assert all(not s["db_schema_tables"] for s in schemas.values())


def test_get_objects_tables(adbc_conn):
    catalogs = get_objects(adbc_conn, "tables")
    points = points_entry(catalogs)
    assert points["table_type"] == "TABLE"
    assert not points["table_columns"]
    # The Gold rollups are materialized views: listed as views.
    gold = find(find(catalogs, "catalog_name", "weir")["catalog_db_schemas"], "db_schema_name", "gold")
    assert {t["table_name"]: t["table_type"] for t in gold["db_schema_tables"]} == {
        "points_1m": "VIEW", "points_1h": "VIEW", "points_1d": "VIEW", "fleet_1m": "VIEW",
        "alerts": "TABLE"}
    views = adbc_conn.adbc_get_objects(depth="tables", table_types_filter=["VIEW"]).read_all().to_pylist()
    weir = find(views, "catalog_name", "weir")
    names = {(s["db_schema_name"], t["table_name"]) for s in weir["catalog_db_schemas"]
             for t in s["db_schema_tables"] or []}
    assert ("gold", "points_1h") in names and ("silver", "points") not in names


@pytest.mark.parametrize("depth", ["columns", "all"])
def test_get_objects_columns(adbc_conn, depth):
    columns = points_entry(get_objects(adbc_conn, depth))["table_columns"]
    assert [c["column_name"] for c in columns] == POINTS_COLUMNS
    assert [c["ordinal_position"] for c in columns] == list(range(1, len(POINTS_COLUMNS) + 1))


def test_get_table_schema(adbc_conn):
    schema = adbc_conn.adbc_get_table_schema("points", db_schema_filter="silver")
    assert_points_schema(schema)
    assert schema.field("ts").type.tz == "UTC"


def test_get_table_types(adbc_conn):
    table_types = adbc_conn.adbc_get_table_types()
    assert table_types and all(isinstance(t, str) and t for t in table_types)
    points = points_entry(get_objects(adbc_conn, "tables"))
    assert points["table_type"] in table_types


# --- ADBC: prepared statements and schemas ----------------------------------------


def test_prepared_statement_with_parameter(adbc_conn):
    assert fetch_rows(adbc_conn, "SELECT ? + 1 AS x", parameters=(41,)) == [(42,)]


def test_prepared_statement_reexecuted_with_new_parameters(adbc_conn):
    with adbc_conn.cursor() as cur:
        results = []
        for value in (1, 2, 3):
            cur.execute("SELECT ? * 10 AS x", parameters=(value,))
            results.append(cur.fetchall())
    assert results == [[(10,)], [(20,)], [(30,)]]


def test_prepared_query_sees_writes_made_before_it_runs(adbc_conn):
    """A parameterless query is planned when prepared and that plan serves
    its first execution; a commit in between must still be seen."""
    execute(adbc_conn, "CREATE TABLE public.ryw (id BIGINT NOT NULL)")
    execute(adbc_conn, "INSERT INTO public.ryw VALUES (1)")
    sql = "SELECT count(*) AS n FROM public.ryw"
    with adbc_conn.cursor() as cur:
        cur.adbc_prepare(sql)
        execute(adbc_conn, "INSERT INTO public.ryw VALUES (2), (3)")
        cur.execute(sql)  # same text: ADBC executes the prepared statement
        assert cur.fetchall() == [(3,)]
        # Prepared and executed back to back (the reused plan): current too.
        cur.execute(sql)
        assert cur.fetchall() == [(3,)]
    assert fetch_scalar(adbc_conn, sql) == 3


def test_executemany_binds_multiple_rows(adbc_conn):
    execute(adbc_conn, "CREATE TABLE public.p (id BIGINT NOT NULL, name VARCHAR)")
    with adbc_conn.cursor() as cur:
        cur.executemany("INSERT INTO public.p VALUES (?, ?)", [(1, "a"), (2, "b"), (3, "c")])
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM public.p") == 3
    assert fetch_rows(adbc_conn, "SELECT id, name FROM public.p ORDER BY id") == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


def test_aggregate_schema_matches_advertised_schema(adbc_conn, points):
    with adbc_conn.cursor() as cur:
        advertised = cur.adbc_execute_schema(AGG_SQL)
    table = fetch_table(adbc_conn, AGG_SQL)
    assert_schemas_equal(advertised, table.schema, "adbc_execute_schema vs result")
    assert table.column_names == ["device_id", "min_value", "max_value", "n"]
    assert [tuple(r.values()) for r in table.to_pylist()] == EXPECTED_AGG


def test_aggregate_via_raw_flight_matches_adbc(adbc_conn, flight_sql_client, points):
    raw = flight_sql_client.query(AGG_SQL)  # asserts FlightInfo schema == DoGet schema
    adbc_table = fetch_table(adbc_conn, AGG_SQL)
    assert_schemas_equal(raw.table.schema, adbc_table.schema, "raw Flight vs ADBC")
    assert raw.table.to_pylist() == adbc_table.to_pylist()


def test_time_series_functions_over_flight(adbc_conn, points):
    """first/last, selector structs and time_bucket reach ADBC clients as
    Arrow values (the selector as a struct of value and time)."""
    table = fetch_table(
        adbc_conn,
        "SELECT device_id, first(value, ts) AS f, last(value, ts) AS l, "
        "selector_max(value, ts) AS mx, time_bucket(INTERVAL '1 week', max(ts)) AS week "
        "FROM silver.points GROUP BY device_id ORDER BY device_id",
    )
    assert table.schema.field("mx").type == pa.struct(
        [pa.field("value", pa.float64()), pa.field("time", pa.timestamp("us", tz="UTC"))]
    )
    assert table.to_pylist() == [
        {
            "device_id": "dev-a",
            "f": 1.5,
            "l": 2.5,
            "mx": {"value": 2.5, "time": dt.datetime(2024, 5, 1, 0, 1, tzinfo=UTC)},
            "week": dt.datetime(2024, 4, 29, tzinfo=UTC),  # a Monday
        },
        {
            "device_id": "dev-b",
            "f": 10.0,
            "l": 10.0,
            "mx": {"value": 10.0, "time": dt.datetime(2024, 5, 2, 12, 0, tzinfo=UTC)},
            "week": dt.datetime(2024, 4, 29, tzinfo=UTC),
        },
    ]


# --- errors ---------------------------------------------------------------------


def test_syntax_error_is_invalid_argument(adbc_conn):
    with pytest.raises(dbapi.ProgrammingError) as excinfo:
        fetch_rows(adbc_conn, "SELEC 1 FROM")
    assert_adbc_error(excinfo, Status.INVALID_ARGUMENT, GRPC_INVALID_ARGUMENT)


def test_unknown_table_is_not_found(adbc_conn):
    with pytest.raises(dbapi.ProgrammingError) as excinfo:
        fetch_rows(adbc_conn, "SELECT * FROM silver.nope")
    assert_adbc_error(excinfo, Status.NOT_FOUND, GRPC_NOT_FOUND)


BAD_INSERTS = {
    "too_many_columns": "(2, 'b', TIMESTAMP '2024-01-02 00:00:00', 'extra')",
    "type_error": "('not a number', 'b', NULL)",
    "null_in_not_null_column": "(2, 'ok', NULL), (NULL, 'null id', NULL)",
}


@pytest.mark.parametrize("case", sorted(BAD_INSERTS))
def test_failed_insert_commits_nothing(adbc_conn, case):
    table = f"public.failed_{case}"
    execute(adbc_conn, f"CREATE TABLE {table} (id BIGINT NOT NULL, name VARCHAR, ts TIMESTAMP)")
    execute(adbc_conn, f"INSERT INTO {table} VALUES (1, 'a', TIMESTAMP '2024-01-01 00:00:00')")
    before = snapshot_ids(adbc_conn, table)
    assert len(before) == 1

    with pytest.raises(dbapi.Error):
        execute(adbc_conn, f"INSERT INTO {table} VALUES {BAD_INSERTS[case]}")

    assert snapshot_ids(adbc_conn, table) == before
    assert fetch_rows(adbc_conn, f"SELECT id, name FROM {table}") == [(1, "a")]


# --- time travel ----------------------------------------------------------------


def test_snapshots_and_time_travel(adbc_conn):
    execute(adbc_conn, "CREATE TABLE public.tt (id BIGINT NOT NULL, name VARCHAR)")
    execute(adbc_conn, "INSERT INTO public.tt VALUES (1, 'a'), (2, 'b')")
    execute(adbc_conn, "INSERT INTO public.tt VALUES (3, 'c')")

    snaps = fetch_table(
        adbc_conn,
        "SELECT snapshot_id, committed_at, operation, parent_id FROM iceberg_snapshots('public.tt')",
    )
    assert snaps.schema.field("snapshot_id").type == pa.int64()
    assert snaps.schema.field("parent_id").type == pa.int64()
    committed_type = snaps.schema.field("committed_at").type
    assert pa.types.is_timestamp(committed_type) and committed_type.tz == "UTC"

    rows = snaps.to_pylist()
    assert len(rows) == 2
    assert {r["operation"] for r in rows} == {"append"}
    first = find(rows, "parent_id", None)
    second = find(rows, "parent_id", first["snapshot_id"])
    assert first["committed_at"] <= second["committed_at"]

    def ids_at(snapshot_id):
        sql = f"SELECT id FROM iceberg_at_snapshot('public.tt', {snapshot_id}) ORDER BY id"
        return [r[0] for r in fetch_rows(adbc_conn, sql)]

    assert ids_at(first["snapshot_id"]) == [1, 2]
    assert ids_at(second["snapshot_id"]) == [1, 2, 3]
    assert [r[0] for r in fetch_rows(adbc_conn, "SELECT id FROM public.tt ORDER BY id")] == [1, 2, 3]


# --- raw Flight SQL via pyarrow.flight -------------------------------------------

KEY_COLUMNS = [
    ("pk_catalog_name", pa.string(), True),
    ("pk_db_schema_name", pa.string(), True),
    ("pk_table_name", pa.string(), False),
    ("pk_column_name", pa.string(), False),
    ("fk_catalog_name", pa.string(), True),
    ("fk_db_schema_name", pa.string(), True),
    ("fk_table_name", pa.string(), False),
    ("fk_column_name", pa.string(), False),
    ("key_sequence", pa.int32(), False),
    ("fk_key_name", pa.string(), True),
    ("pk_key_name", pa.string(), True),
    ("update_rule", pa.uint8(), False),
    ("delete_rule", pa.uint8(), False),
]
PRIMARY_KEY_COLUMNS = [
    ("catalog_name", pa.string(), True),
    ("db_schema_name", pa.string(), True),
    ("table_name", pa.string(), False),
    ("column_name", pa.string(), False),
    ("key_name", pa.string(), True),
    ("key_sequence", pa.int32(), False),
]


def spec_schema(columns) -> pa.Schema:
    return pa.schema([pa.field(name, typ, nullable=nullable) for name, typ, nullable in columns])


def column(result, name: str) -> list:
    return result.table.column(name).to_pylist()


def test_get_sql_info_all(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_sql_info())
    schema = result.table.schema
    assert schema.field("info_name").type == pa.uint32()
    assert not schema.field("info_name").nullable
    assert pa.types.is_union(schema.field("value").type)
    assert schema.field("value").type.mode == "dense"

    info = dict(zip(column(result, "info_name"), column(result, "value")))
    assert {0, 1, 2, 3, 4, 5, 8} <= set(info)
    assert len(set(info) & set(range(500, 577))) >= 50
    assert isinstance(info[0], str) and info[0]  # FLIGHT_SQL_SERVER_NAME
    assert isinstance(info[1], str) and info[1]  # FLIGHT_SQL_SERVER_VERSION
    assert info[3] is False  # FLIGHT_SQL_SERVER_READ_ONLY: Weir accepts writes


def test_get_sql_info_selected_ids(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_sql_info([0, 8]))
    assert sorted(column(result, "info_name")) == [0, 8]


def test_get_catalogs(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_catalogs())
    assert_schemas_equal(
        spec_schema([("catalog_name", pa.string(), False)]), result.table.schema, "GetCatalogs"
    )
    assert column(result, "catalog_name") == ["weir"]


def test_get_db_schemas(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_db_schemas())
    assert result.table.schema.names == ["catalog_name", "db_schema_name"]
    assert REQUIRED_SCHEMAS <= set(column(result, "db_schema_name"))
    assert set(column(result, "catalog_name")) == {"weir"}


def test_get_db_schemas_with_filter(flight_sql_client):
    command = proto.command_get_db_schemas(catalog="weir", db_schema_filter_pattern="sil%")
    result = flight_sql_client.execute(command)
    assert column(result, "db_schema_name") == ["silver"]


def test_get_tables_with_schema(flight_sql_client):
    command = proto.command_get_tables(
        catalog="weir",
        db_schema_filter_pattern="silver",
        table_name_filter_pattern="points",
        include_schema=True,
    )
    result = flight_sql_client.execute(command)
    assert result.table.schema.names == [
        "catalog_name",
        "db_schema_name",
        "table_name",
        "table_type",
        "table_schema",
    ]
    assert pa.types.is_binary(result.table.schema.field("table_schema").type)
    assert result.table.num_rows == 1
    row = result.table.to_pylist()[0]
    assert (row["catalog_name"], row["db_schema_name"], row["table_name"]) == (
        "weir",
        "silver",
        "points",
    )
    assert row["table_type"]
    assert row["table_schema"]
    assert_points_schema(pa.ipc.read_schema(pa.py_buffer(row["table_schema"])))


@pytest.mark.parametrize(
    "schema, expected",
    [
        ("bronze", {"raw_messages", "dead_letters"}),
        ("gold", {"points_1m", "points_1h", "points_1d", "fleet_1m", "alerts"}),
    ],
)
def test_get_tables_without_schema(flight_sql_client, schema, expected):
    command = proto.command_get_tables(catalog="weir", db_schema_filter_pattern=schema)
    result = flight_sql_client.execute(command)
    assert result.table.schema.names == ["catalog_name", "db_schema_name", "table_name", "table_type"]
    assert set(column(result, "db_schema_name")) == {schema}
    assert expected <= set(column(result, "table_name"))


def test_flight_get_table_types(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_table_types())
    assert_schemas_equal(
        spec_schema([("table_type", pa.string(), False)]), result.table.schema, "GetTableTypes"
    )
    types = column(result, "table_type")
    assert types and all(types)
    tables = flight_sql_client.execute(proto.command_get_tables(db_schema_filter_pattern="silver"))
    assert set(column(tables, "table_type")) <= set(types)


def test_get_xdbc_type_info(flight_sql_client):
    result = flight_sql_client.execute(proto.command_get_xdbc_type_info())
    assert result.table.num_rows > 0
    assert {"type_name", "data_type", "nullable", "sql_data_type"} <= set(result.table.column_names)
    assert all(column(result, "type_name"))

    xdbc_bigint = -5
    filtered = flight_sql_client.execute(proto.command_get_xdbc_type_info(xdbc_bigint))
    assert filtered.table.num_rows > 0
    assert set(column(filtered, "data_type")) == {xdbc_bigint}


@pytest.mark.parametrize(
    "command, columns",
    [
        (proto.command_get_primary_keys("points", "weir", "silver"), PRIMARY_KEY_COLUMNS),
        (proto.command_get_exported_keys("points", "weir", "silver"), KEY_COLUMNS),
        (proto.command_get_imported_keys("points", "weir", "silver"), KEY_COLUMNS),
        (
            proto.command_get_cross_reference(
                pk_table="points", fk_table="points_1m", pk_db_schema="silver", fk_db_schema="gold"
            ),
            KEY_COLUMNS,
        ),
    ],
    ids=["primary_keys", "exported_keys", "imported_keys", "cross_reference"],
)
def test_key_commands_are_empty_with_standard_schema(flight_sql_client, command, columns):
    result = flight_sql_client.execute(command)
    assert_schemas_equal(spec_schema(columns), result.table.schema, "key command")
    assert result.table.num_rows == 0


def test_statement_query_via_raw_flight(flight_sql_client):
    result = flight_sql_client.query("SELECT 40 + 2 AS answer, 'x' AS tag")
    assert result.table.to_pylist() == [{"answer": 42, "tag": "x"}]


def test_raw_flight_error_codes(flight_sql_client):
    with pytest.raises(pa.ArrowInvalid):  # gRPC INVALID_ARGUMENT
        flight_sql_client.query("SELEC 1 FROM")
    with pytest.raises(pa.ArrowKeyError):  # gRPC NOT_FOUND
        flight_sql_client.query("SELECT * FROM silver.nope")
    with pytest.raises(pa.ArrowNotImplementedError):  # gRPC UNIMPLEMENTED
        flight_sql_client.get_flight_info(proto.command_unknown())


def test_handshake_basic_auth_returns_bearer(weir_server):
    client = flight.FlightClient(weir_server.uri)
    try:
        key, value = client.authenticate_basic_token("user", "pass")
        assert key.lower() == b"authorization"
        assert value.startswith(b"Bearer ") and len(value) > len(b"Bearer ")
        options = flight.FlightCallOptions(headers=[(key, value)])
        info = client.get_flight_info(
            flight.FlightDescriptor.for_command(proto.command_get_catalogs()), options
        )
        catalogs = client.do_get(info.endpoints[0].ticket, options).read_all()
        assert catalogs.column("catalog_name").to_pylist() == ["weir"]
    finally:
        client.close()


GRPC_DEADLINE_EXCEEDED = 4


def test_query_timeout_cancels_the_query_and_the_server_stays_up(weir_factory, tmp_path):
    from weir_harness import connect

    server = weir_factory(tmp_path / "data", ["--query-timeout", "1s"])
    conn = connect(server.uri)
    slow = "SELECT sum(value * 2) FROM range(50000000000)"
    with pytest.raises(dbapi.Error) as excinfo:
        fetch_rows(conn, slow)
    assert_adbc_error(excinfo, Status.TIMEOUT, GRPC_DEADLINE_EXCEEDED)
    assert "query timeout (1s" in str(excinfo.value)
    # The server is still there and answers at once.
    assert fetch_scalar(conn, "SELECT 41 + 1") == 42
    conn.close()
