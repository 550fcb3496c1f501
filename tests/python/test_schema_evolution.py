"""Schema evolution made by PyIceberg while Weir serves: Weir reads data files
by Iceberg field id and answers as PyIceberg's own scan does (the oracle) —
in projection, filters (pruning), aggregates, the file cache, materialized
views and time travel — for rows written before and after each change, by
PyIceberg and by Weir's INSERT."""

from __future__ import annotations

import decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    StructType,
)

from weir_harness import connect, execute, fetch_rows

NS = "evo"


def open_catalog(data_dir: Path) -> SqlCatalog:
    return SqlCatalog(
        "weir",
        uri=f"sqlite:///{data_dir}/catalog.db",
        warehouse=f"file://{data_dir}/warehouse",
    )


@pytest.fixture
def env(weir_factory, tmp_path):
    """A Weir server and PyIceberg on the same SQLite catalog."""
    data_dir = tmp_path / "data"
    server = weir_factory(data_dir)
    conn = connect(server.uri)
    catalog = open_catalog(data_dir)
    catalog.create_namespace(NS)
    try:
        yield conn, catalog, tmp_path
    finally:
        catalog.engine.dispose()
        conn.close()


def oracle_rows(catalog, name, columns, row_filter=None):
    """PyIceberg's scan, as sorted tuples of `columns`."""
    table = catalog.load_table(f"{NS}.{name}")
    scan = table.scan(row_filter=row_filter) if row_filter else table.scan()
    arrow = scan.to_arrow()
    rows = list(zip(*(arrow.column(c).to_pylist() for c in columns)))
    return sorted(rows, key=lambda r: r[0])


def weir_rows(conn, name, columns, where=""):
    cols = ", ".join(columns)
    rows = fetch_rows(conn, f"SELECT {cols} FROM {NS}.{name} {where} ORDER BY {columns[0]}")
    return [tuple(r) for r in rows]


def check(conn, catalog, name, column, *, key="id", predicate=None, py_filter=None):
    """Weir == PyIceberg: SELECT * ordered, sum, a filter, count with filter."""
    table = catalog.load_table(f"{NS}.{name}")
    columns = [f.name for f in table.schema().fields]
    expected = oracle_rows(catalog, name, columns)
    assert weir_rows(conn, name, columns) == expected
    star = [tuple(r) for r in fetch_rows(conn, f"SELECT * FROM {NS}.{name} ORDER BY {key}")]
    assert star == expected
    values = [r[columns.index(column)] for r in expected]
    total = sum(v for v in values if v is not None) if any(v is not None for v in values) else None
    got = fetch_rows(conn, f"SELECT sum({column}) FROM {NS}.{name}")[0][0]
    if isinstance(total, float):
        total = pytest.approx(total)
    assert got == total, (got, total)
    if predicate is not None:
        filtered = oracle_rows(catalog, name, columns, row_filter=py_filter or predicate)
        assert weir_rows(conn, name, columns, f"WHERE {predicate}") == filtered
        count = fetch_rows(conn, f"SELECT count(*) FROM {NS}.{name} WHERE {predicate}")[0][0]
        assert count == len(filtered)
    return expected


# --- rename ---------------------------------------------------------------


RENAME_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "site", StringType(), required=False),
    NestedField(3, "reading", LongType(), required=False),
)


def rename_rows(ids, site, readings, name="reading"):
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "site": pa.array([site] * len(ids), pa.string()),
            name: pa.array(readings, pa.int64()),
        }
    )


@pytest.mark.parametrize("file_cache", [False, True])
def test_rename(env, file_cache):
    conn, catalog, _ = env
    props = {"weir.file-cache": "true"} if file_cache else {}
    table = catalog.create_table(f"{NS}.ren", schema=RENAME_SCHEMA, properties=props)
    table.append(rename_rows([1, 2, 3], "a", [10, 20, 30]))
    check(conn, catalog, "ren", "reading", predicate="reading > 15")
    execute(conn, f"INSERT INTO {NS}.ren VALUES (4, 'b', 7)")

    with table.update_schema() as update:
        update.rename_column("reading", "value")
    assert fetch_rows(conn, f"SELECT sum(value) FROM {NS}.ren")[0][0] == 67
    check(conn, catalog, "ren", "value", predicate="value > 15")

    # Rows after the rename, by PyIceberg and by Weir.
    table = catalog.load_table(f"{NS}.ren")
    table.append(rename_rows([5], "b", [50], name="value"))
    execute(conn, f"INSERT INTO {NS}.ren (id, site, value) VALUES (6, 'c', 60)")
    rows = check(conn, catalog, "ren", "value", predicate="value >= 20")
    assert [r[2] for r in rows] == [10, 20, 30, 7, 50, 60]
    if file_cache:
        plan = "\n".join(r[1] for r in fetch_rows(conn, f"EXPLAIN SELECT sum(value) FROM {NS}.ren"))
        assert "in memory" in plan, plan
    # Filters on other columns, and the old name is gone.
    assert fetch_rows(conn, f"SELECT count(*), sum(value) FROM {NS}.ren WHERE site = 'b'") == [(2, 57)]
    with pytest.raises(Exception):
        fetch_rows(conn, f"SELECT reading FROM {NS}.ren")


def test_rename_then_reuse_old_name(env):
    """`a` renamed to `b`, then a new `a` added: old files' `a` is `b` now,
    and the new `a` is NULL for them (never the old column's values)."""
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.swap", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2], "a", [10, 20]))
    with table.update_schema() as update:
        update.rename_column("reading", "value")
    with table.update_schema() as update:
        update.add_column("reading", LongType())
    execute(conn, f"INSERT INTO {NS}.swap (id, site, value, reading) VALUES (3, 'b', 30, 300)")
    rows = check(conn, catalog, "swap", "reading", predicate="reading IS NULL")
    assert rows == [(1, "a", 10, None), (2, "a", 20, None), (3, "b", 30, 300)]
    check(conn, catalog, "swap", "value", predicate="value < 25")


# --- drop + re-add ----------------------------------------------------------


def test_drop_and_readd_same_name(env):
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.readd", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2, 3], "a", [10, 20, 30]))
    with table.update_schema() as update:
        update.delete_column("reading")
    with table.update_schema() as update:
        update.add_column("reading", LongType())
    # Before any new row: every value is NULL, in projection, filters and sums.
    rows = check(conn, catalog, "readd", "reading", predicate="reading IS NULL")
    assert [r[2] for r in rows] == [None, None, None]
    assert fetch_rows(conn, f"SELECT count(*) FROM {NS}.readd WHERE reading > 0") == [(0,)]

    table = catalog.load_table(f"{NS}.readd")
    table.append(rename_rows([4], "b", [40]))
    execute(conn, f"INSERT INTO {NS}.readd VALUES (5, 'c', 50)")
    rows = check(conn, catalog, "readd", "reading", predicate="reading > 5")
    assert [r[2] for r in rows] == [None, None, None, 40, 50]
    check(conn, catalog, "readd", "reading", predicate="reading IS NULL")


# --- type promotion, required -> optional, added columns --------------------


def test_type_promotion(env):
    conn, catalog, _ = env
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(2, "i", IntegerType(), required=False),
        NestedField(3, "f", FloatType(), required=False),
        NestedField(4, "d", DecimalType(5, 2), required=False),
    )
    table = catalog.create_table(f"{NS}.promo", schema=schema)
    table.append(
        pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "i": pa.array([7, 2_000_000_000], pa.int32()),
                "f": pa.array([1.5, 2.25], pa.float32()),
                "d": pa.array([decimal.Decimal("1.25"), decimal.Decimal("999.99")], pa.decimal128(5, 2)),
            }
        )
    )
    with table.update_schema() as update:
        update.update_column("i", LongType())
        update.update_column("f", DoubleType())
        update.update_column("d", DecimalType(10, 2))
    table = catalog.load_table(f"{NS}.promo")
    table.append(
        pa.table(
            {
                "id": pa.array([3], pa.int64()),
                "i": pa.array([5_000_000_000], pa.int64()),
                "f": pa.array([0.1], pa.float64()),
                "d": pa.array([decimal.Decimal("12345678.90")], pa.decimal128(10, 2)),
            }
        )
    )
    execute(conn, f"INSERT INTO {NS}.promo VALUES (4, 6000000000, 4.5, 1.00)")
    check(conn, catalog, "promo", "i", predicate="i > 1000000000")
    check(conn, catalog, "promo", "f", predicate="f > 2.0")
    check(conn, catalog, "promo", "d", predicate="d > 100")


def test_required_to_optional(env):
    conn, catalog, _ = env
    schema = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "r", LongType(), required=True),
    )
    table = catalog.create_table(f"{NS}.req", schema=schema)
    table.append(
        pa.table(
            {"id": pa.array([1, 2], pa.int64()), "r": pa.array([5, 6], pa.int64())},
            schema=pa.schema([pa.field("id", pa.int64(), False), pa.field("r", pa.int64(), False)]),
        )
    )
    with table.update_schema() as update:
        update.make_column_optional("r")
    table = catalog.load_table(f"{NS}.req")
    table.append(
        pa.table(
            {"id": pa.array([3], pa.int64()), "r": pa.array([None], pa.int64())},
            schema=pa.schema([pa.field("id", pa.int64(), False), pa.field("r", pa.int64(), True)]),
        )
    )
    execute(conn, f"INSERT INTO {NS}.req VALUES (4, NULL), (5, 9)")
    rows = check(conn, catalog, "req", "r", predicate="r IS NULL")
    assert [r[1] for r in rows] == [5, 6, None, None, 9]


def test_added_column(env):
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.added", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2], "a", [10, 20]))
    with table.update_schema() as update:
        update.add_column("extra", StringType())
    rows = check(conn, catalog, "added", "reading", predicate="extra IS NULL")
    assert all(r[3] is None for r in rows)
    execute(conn, f"INSERT INTO {NS}.added VALUES (3, 'b', 30, 'x')")
    check(conn, catalog, "added", "reading", predicate="extra = 'x'")


def test_added_column_with_initial_default(env):
    """PyIceberg `add_column(default_value=…)`: rows written before read the
    initial default, in projection, filters and sums."""
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.dflt", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2], "a", [10, 20]))
    with table.update_schema() as update:
        update.add_column("k", LongType(), default_value=7)
    rows = check(conn, catalog, "dflt", "k", predicate="k = 7")
    assert [r[3] for r in rows] == [7, 7]
    execute(conn, f"INSERT INTO {NS}.dflt VALUES (3, 'b', 30, 1)")
    check(conn, catalog, "dflt", "k", predicate="k < 5")


# --- nested struct field rename ---------------------------------------------


def test_nested_struct_field_rename(env):
    conn, catalog, _ = env
    schema = Schema(
        NestedField(1, "id", LongType(), required=False),
        NestedField(
            2,
            "loc",
            StructType(
                NestedField(3, "lat", DoubleType(), required=False),
                NestedField(4, "lon", DoubleType(), required=False),
            ),
            required=False,
        ),
    )
    table = catalog.create_table(f"{NS}.nested", schema=schema)
    loc_type = pa.struct([("lat", pa.float64()), ("lon", pa.float64())])
    table.append(
        pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "loc": pa.array([{"lat": 1.5, "lon": 2.5}, {"lat": 3.5, "lon": 4.5}], loc_type),
            }
        )
    )
    with table.update_schema() as update:
        update.rename_column("loc.lat", "latitude")
    table = catalog.load_table(f"{NS}.nested")
    new_type = pa.struct([("latitude", pa.float64()), ("lon", pa.float64())])
    table.append(
        pa.table(
            {"id": pa.array([3], pa.int64()), "loc": pa.array([{"latitude": 5.5, "lon": 6.5}], new_type)}
        )
    )
    expected = oracle_rows(catalog, "nested", ["id", "loc"])
    assert [r[1]["latitude"] for r in expected] == [1.5, 3.5, 5.5]
    assert [tuple(r) for r in fetch_rows(conn, f"SELECT * FROM {NS}.nested ORDER BY id")] == expected
    lat = fetch_rows(conn, f"SELECT id, loc['latitude'] FROM {NS}.nested WHERE loc['latitude'] > 2 ORDER BY id")
    assert lat == [(2, 3.5), (3, 5.5)]
    assert fetch_rows(conn, f"SELECT sum(loc['latitude']) FROM {NS}.nested") == [(10.5,)]


# --- files without field ids (add_files + name mapping) ---------------------


def test_add_files_without_field_ids(env):
    conn, catalog, tmp_path = env
    table = catalog.create_table(f"{NS}.imported", schema=RENAME_SCHEMA)
    path = tmp_path / "data" / "warehouse" / "external-1.parquet"
    # Plain pyarrow: no field ids in the Parquet schema.
    pq.write_table(rename_rows([1, 2, 3], "a", [10, 20, 30]), path)
    assert pq.read_schema(path).field("reading").metadata in (None, {})
    table.add_files([f"file://{path}"])
    table = catalog.load_table(f"{NS}.imported")
    assert "schema.name-mapping.default" in table.properties
    check(conn, catalog, "imported", "reading", predicate="reading >= 20")

    # A rename keeps the old name in the mapping: the file still maps.
    with table.update_schema() as update:
        update.rename_column("reading", "value")
    execute(conn, f"INSERT INTO {NS}.imported (id, site, value) VALUES (4, 'b', 40)")
    rows = check(conn, catalog, "imported", "value", predicate="value >= 20")
    assert [r[2] for r in rows] == [10, 20, 30, 40]


# --- materialized view and time travel --------------------------------------


def test_materialized_view_over_renamed_column(env):
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.mvbase", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2, 3], "a", [10, 20, 30]))
    table.append(rename_rows([4], "b", [5]))
    with table.update_schema() as update:
        update.rename_column("reading", "value")
    execute(
        conn,
        f"CREATE MATERIALIZED VIEW {NS}.mv AS "
        f"SELECT site, count(*) AS n, sum(value) AS total FROM {NS}.mvbase GROUP BY site",
    )
    assert fetch_rows(conn, f"SELECT site, n, total FROM {NS}.mv ORDER BY site") == [("a", 3, 60), ("b", 1, 5)]
    execute(conn, f"INSERT INTO {NS}.mvbase (id, site, value) VALUES (5, 'b', 50)")
    execute(conn, f"REFRESH MATERIALIZED VIEW {NS}.mv")
    assert fetch_rows(conn, f"SELECT site, n, total FROM {NS}.mv ORDER BY site") == [("a", 3, 60), ("b", 2, 55)]


def test_time_travel_reads_the_snapshot_schema(env):
    """As PyIceberg's scan(snapshot_id=…): an older snapshot reads in its own
    schema (the old name), the current table in the current one."""
    conn, catalog, _ = env
    table = catalog.create_table(f"{NS}.tt", schema=RENAME_SCHEMA)
    table.append(rename_rows([1, 2], "a", [10, 20]))
    first = catalog.load_table(f"{NS}.tt").current_snapshot().snapshot_id
    with table.update_schema() as update:
        update.rename_column("reading", "value")
    table = catalog.load_table(f"{NS}.tt")
    table.append(rename_rows([3], "b", [30], name="value"))
    old = table.scan(snapshot_id=first).to_arrow()
    assert old.column_names == ["id", "site", "reading"]
    assert fetch_rows(conn, f"SELECT id, reading FROM iceberg_at_snapshot('{NS}.tt', {first}) ORDER BY id") == list(
        zip(old.column("id").to_pylist(), old.column("reading").to_pylist())
    )
    assert fetch_rows(conn, f"SELECT sum(value) FROM {NS}.tt") == [(60,)]
