"""Weir and pyiceberg share one SQLite catalog + warehouse and read each other's tables."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

from weir_harness import connect, execute, fetch_rows

UTC = dt.timezone.utc


def open_catalog(data_dir: Path) -> SqlCatalog:
    return SqlCatalog(
        "weir",
        uri=f"sqlite:///{data_dir}/catalog.db",
        warehouse=f"file://{data_dir}/warehouse",
    )


def naive_utc(value):
    """Compare timestamps regardless of whether a side reports them tz-aware."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def normalized(rows):
    return sorted((r[0], r[1], naive_utc(r[2])) for r in rows)


def test_weir_table_is_readable_by_pyiceberg(weir_factory, tmp_path):
    data_dir = tmp_path / "data"
    server = weir_factory(data_dir)
    conn = connect(server.uri)
    try:
        execute(
            conn,
            "CREATE TABLE public.t (id BIGINT NOT NULL, name VARCHAR, ts TIMESTAMP) "
            "PARTITIONED BY (day(ts))",
        )
        execute(
            conn,
            "INSERT INTO public.t VALUES "
            "(1, 'alpha', TIMESTAMP '2024-03-01 08:00:00'), "
            "(2, 'beta', TIMESTAMP '2024-03-02 09:15:00')",
        )
        execute(conn, "INSERT INTO public.t VALUES (3, NULL, NULL)")
        via_weir = fetch_rows(conn, "SELECT id, name, ts FROM public.t ORDER BY id")
    finally:
        conn.close()
    server.stop()
    assert not server.killed, "weir did not exit within 30 s of SIGTERM"

    expected = [
        (1, "alpha", dt.datetime(2024, 3, 1, 8, 0)),
        (2, "beta", dt.datetime(2024, 3, 2, 9, 15)),
        (3, None, None),
    ]
    assert normalized(via_weir) == expected

    catalog = open_catalog(data_dir)
    try:
        assert {("public",), ("bronze",), ("silver",), ("gold",)} <= set(catalog.list_namespaces())
        table = catalog.load_table("public.t")
        assert [f.name for f in table.schema().fields] == ["id", "name", "ts"]
        assert len(table.snapshots()) == 2
        scanned = table.scan().to_arrow()
        rows = zip(*(scanned.column(c).to_pylist() for c in ("id", "name", "ts")))
        assert normalized(rows) == expected

        points = catalog.load_table("silver.points")
        assert [f.name for f in points.schema().fields] == [
            "ts", "device_id", "metric", "value", "quality", "unit", "source", "labels",
        ]
    finally:
        catalog.engine.dispose()


PY_SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=False),
    NestedField(2, "name", StringType(), required=False),
    NestedField(3, "ts", TimestamptzType(), required=False),
)
PY_ROWS = [
    (i, f"row-{i}", dt.datetime(2024, 6, 1, tzinfo=UTC) + dt.timedelta(hours=i))
    for i in range(1, 6)
]


def py_rows_table() -> pa.Table:
    ids, names, stamps = zip(*PY_ROWS)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array(names, pa.string()),
            "ts": pa.array(stamps, pa.timestamp("us", tz="UTC")),
        }
    )


def test_pyiceberg_table_is_readable_by_weir(weir_factory, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "warehouse").mkdir()
    catalog = open_catalog(data_dir)
    try:
        catalog.create_namespace("interop")
        table = catalog.create_table("interop.from_py", schema=PY_SCHEMA)
        table.append(py_rows_table())
        assert len(catalog.load_table("interop.from_py").scan().to_arrow()) == len(PY_ROWS)
    finally:
        catalog.engine.dispose()

    server = weir_factory(data_dir)
    conn = connect(server.uri)
    try:
        assert fetch_rows(conn, "SELECT count(*), sum(id) FROM interop.from_py") == [
            (len(PY_ROWS), sum(r[0] for r in PY_ROWS))
        ]
        assert fetch_rows(conn, "SELECT id, name, ts FROM interop.from_py ORDER BY id") == PY_ROWS
        # Weir's own declared tables are still created next to the foreign one.
        assert fetch_rows(conn, "SELECT count(*) FROM silver.points") == [(0,)]
    finally:
        conn.close()


def test_weir_sees_pyiceberg_changes_while_running(weir_factory, tmp_path):
    """PyIceberg creates a table, appends, then deletes rows (a copy-on-write
    overwrite snapshot) while Weir is serving: Weir sees each state at once,
    and time travel still reads the snapshot before the delete."""
    data_dir = tmp_path / "data"
    server = weir_factory(data_dir)
    conn = connect(server.uri)
    catalog = open_catalog(data_dir)
    try:
        catalog.create_namespace("live")
        table = catalog.create_table("live.t", schema=PY_SCHEMA)
        table.append(py_rows_table())
        assert fetch_rows(conn, "SELECT count(*) FROM live.t") == [(5,)]

        table = catalog.load_table("live.t")
        table.delete(delete_filter="id IN (2, 4)")
        assert sorted(r[0] for r in fetch_rows(conn, "SELECT id FROM live.t")) == [1, 3, 5]
        ops = fetch_rows(conn, "SELECT operation FROM iceberg_snapshots('live.t') ORDER BY sequence_number")
        assert ops[0] == ("append",) and ops[-1][0] in ("overwrite", "delete"), ops
        assert fetch_rows(conn, "SELECT count(*) FROM iceberg_at_sequence('live.t', 1)") == [(5,)]
    finally:
        catalog.engine.dispose()
        conn.close()


def test_uuid_columns_both_ways(weir_factory, tmp_path):
    """An Iceberg `uuid` column written by PyIceberg reads in Weir as canonical
    text; Weir's INSERT, UPDATE and ADBC bulk ingest (text and pyarrow's
    `pa.uuid()`) write 16-byte uuids PyIceberg reads back as the same values."""
    import uuid

    from pyiceberg.types import UUIDType

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "warehouse").mkdir()
    py_ids = [uuid.UUID(int=i * 0x1111) for i in range(1, 4)] + [uuid.uuid4()]
    catalog = open_catalog(data_dir)
    try:
        catalog.create_namespace("interop")
        schema = Schema(
            NestedField(1, "id", UUIDType(), required=False),
            NestedField(2, "n", LongType(), required=False),
        )
        table = catalog.create_table("interop.uuids", schema=schema)
        table.append(pa.table({
            "id": pa.array([u.bytes for u in py_ids], pa.uuid()),
            "n": pa.array(range(len(py_ids)), pa.int64()),
        }))
    finally:
        catalog.engine.dispose()

    server = weir_factory(data_dir)
    conn = connect(server.uri)
    weir_ids = [uuid.uuid4() for _ in range(3)]
    try:
        assert fetch_rows(conn, "SELECT id, n FROM interop.uuids ORDER BY n") == [
            (str(u), i) for i, u in enumerate(py_ids)
        ]
        assert fetch_rows(conn, f"SELECT n FROM interop.uuids WHERE id = '{py_ids[2]}'") == [(2,)]
        execute(conn, f"INSERT INTO interop.uuids VALUES ('{str(weir_ids[0]).upper()}', 10)")
        execute(conn, f"UPDATE interop.uuids SET id = '{weir_ids[1].hex}' WHERE n = 0")
        cur = conn.cursor()
        try:
            cur.adbc_ingest("uuids", pa.table({
                "id": pa.array([weir_ids[2].bytes, None], pa.uuid()),
                "n": pa.array([11, 12], pa.int64()),
            }), mode="append", db_schema_name="interop")
            cur.adbc_ingest("uuids", pa.table({
                "id": pa.array([str(py_ids[3])], pa.string()),
                "n": pa.array([13], pa.int64()),
            }), mode="append", db_schema_name="interop")
        finally:
            cur.close()
        via_weir = fetch_rows(conn, "SELECT n, id FROM interop.uuids ORDER BY n")
    finally:
        conn.close()

    expected = [(0, weir_ids[1]), (1, py_ids[1]), (2, py_ids[2]), (3, py_ids[3]), (10, weir_ids[0]),
                (11, weir_ids[2]), (12, None), (13, py_ids[3])]
    assert via_weir == [(n, None if u is None else str(u)) for n, u in expected]
    catalog = open_catalog(data_dir)
    try:
        table = catalog.load_table("interop.uuids")
        assert isinstance(table.schema().find_field("id").field_type, UUIDType)
        scanned = table.scan().to_arrow().sort_by("n")
        got = [(n, b if b is None or isinstance(b, uuid.UUID) else uuid.UUID(bytes=bytes(b)))
               for n, b in zip(scanned.column("n").to_pylist(), scanned.column("id").to_pylist())]
        assert got == expected
    finally:
        catalog.engine.dispose()
