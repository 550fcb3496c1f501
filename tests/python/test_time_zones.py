"""Time zones and session settings over Flight SQL (issue 20 item 5).

- `TIMESTAMP WITH TIME ZONE` in DDL creates an Iceberg `timestamptz` (PyIceberg
  is the oracle for the table's schema);
- a pandas/pyarrow frame with a `Europe/Berlin` or `+01:00` column creates a
  table through ADBC bulk ingest: the column becomes UTC `timestamptz` and
  the zone is kept as a table property;
- SQL `SET` (incl. `SET TIME ZONE`) as the first statement of a connection
  applies to that connection's later statements, with or without the ADBC
  cookie middleware, and to no other connection.
"""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import TimestamptzType, TimestampType, TimeType

from flight_complete_helpers import connect_with_session
from weir_harness import connect, execute, fetch_rows, fetch_scalar


@pytest.fixture(scope="module")
def catalog(weir_server):
    data = weir_server.data_dir
    return SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}")


def _table(catalog, name):
    return catalog.load_table(f"public.{name}")


def test_timestamptz_ddl_is_iceberg_timestamptz(adbc_conn, catalog):
    execute(adbc_conn, "CREATE TABLE tz_ddl (a TIMESTAMP WITH TIME ZONE, b TIMESTAMPTZ, c TIMESTAMP, d TIME)")
    execute(adbc_conn, "INSERT INTO tz_ddl VALUES ('2024-01-01T10:00:00+01:00', '2024-01-01T09:00:00Z', '2024-01-01T10:00:00', '12:00:00')")
    schema = _table(catalog, "tz_ddl").schema()
    types = {f.name: f.field_type for f in schema.fields}
    assert types["a"] == TimestamptzType()
    assert types["b"] == TimestamptzType()
    assert types["c"] == TimestampType()
    assert types["d"] == TimeType()
    # PyIceberg reads the instant Weir wrote.
    rows = _table(catalog, "tz_ddl").scan().to_arrow().to_pylist()
    assert rows[0]["a"] == dt.datetime(2024, 1, 1, 9, 0, tzinfo=dt.timezone.utc)
    assert rows[0]["d"] == dt.time(12, 0)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "+01:00"])
def test_zoned_frame_ingests_as_utc_timestamptz(adbc_conn, catalog, zone):
    name = "tz_ingest_" + ("berlin" if "/" in zone else "offset")
    local = [dt.datetime(2024, 1, 1, 12, 0), dt.datetime(2024, 7, 1, 12, 0)]
    frame = pa.table(
        {"ts": pa.array(local, pa.timestamp("us")).cast(pa.timestamp("us", tz="UTC")), "v": [1.0, 2.0]}
    ).cast(pa.schema([("ts", pa.timestamp("us", tz=zone)), ("v", pa.float64())]))
    with adbc_conn.cursor() as cur:
        cur.adbc_ingest(name, frame, mode="create")
    table = _table(catalog, name)
    assert table.schema().find_field("ts").field_type == TimestamptzType()
    assert table.properties.get("weir.source-time-zone.ts") == zone
    # Same instants as the frame had (UTC 12:00 stays UTC 12:00 whatever the zone label).
    got = [r[0] for r in fetch_rows(adbc_conn, f"SELECT ts FROM {name} ORDER BY ts")]
    assert got == [t.replace(tzinfo=dt.timezone.utc) for t in local]
    assert table.scan().to_arrow().column("ts").to_pylist() == got


@pytest.mark.parametrize("cookies", [False, True], ids=["no-cookie-middleware", "cookie-middleware"])
def test_set_on_first_statement_applies_to_the_connection(weir_server, cookies):
    open_conn = (lambda: connect_with_session(weir_server.uri)) if cookies else (lambda: connect(weir_server.uri))
    conn, other = open_conn(), open_conn()
    try:
        execute(conn, "SET TIME ZONE 'Europe/Berlin'")
        assert fetch_scalar(conn, "SELECT arrow_typeof(now())") == 'Timestamp(ns, "Europe/Berlin")'
        assert (
            fetch_scalar(conn, "SELECT CAST(TIMESTAMPTZ '2024-01-01T09:00:00Z' AS VARCHAR)")
            == "2024-01-01T10:00:00+01:00"
        )
        execute(conn, "SET datafusion.execution.batch_size = 1234")
        assert fetch_scalar(
            conn, "SELECT value FROM information_schema.df_settings WHERE name = 'datafusion.execution.batch_size'"
        ) == "1234"
        # Another connection has its own settings.
        assert fetch_scalar(other, "SELECT arrow_typeof(now())") == "Timestamp(ns)"
        # A refused SET changes nothing.
        with pytest.raises(Exception, match="unknown time zone"):
            execute(conn, "SET TIME ZONE 'Mars/Olympus'")
        assert fetch_scalar(conn, "SELECT arrow_typeof(now())") == 'Timestamp(ns, "Europe/Berlin")'
    finally:
        conn.close()
        other.close()
    # A new connection starts from the server's defaults.
    fresh = open_conn()
    try:
        assert fetch_scalar(fresh, "SELECT arrow_typeof(now())") == "Timestamp(ns)"
    finally:
        fresh.close()
