"""Every statement that changes data takes effect exactly once, whether or
not the client reads its result (issue 18, item 0).

The ordinary DBAPI pattern ``cursor.execute("INSERT …")`` with no fetch used
to insert nothing: the statement ran only when the client read its result
stream. Swept here: statement kinds (INSERT VALUES, INSERT SELECT, CTAS,
REFRESH MATERIALIZED VIEW, COPY) × client patterns (ADBC: execute only,
execute + fetch, execute + close, execute with parameters (a prepared
statement), executemany; pyarrow.flight: GetFlightInfo without DoGet, and
with it), each counted afterwards."""

from __future__ import annotations

import itertools
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow.flight as flight
import pytest

from flightsql_proto import command_statement_query
from weir_harness import WeirServer, fetch_scalar

_names = itertools.count()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("write-once")
    export = root / "exports"
    export.mkdir()
    srv = WeirServer(root / "data", ["--export-dir", str(export)])
    srv.export_dir = export
    yield srv
    srv.discard()


def connect(srv):
    return flightsql.connect(srv.uri, autocommit=True)


def count(srv, table: str) -> int:
    with connect(srv) as conn:
        return fetch_scalar(conn, f"SELECT count(*) FROM {table}")


# --- client patterns: each runs `sql` (with `params` where it takes them) ---


def adbc_execute_only(srv, sql, params=None):
    conn = connect(srv)
    cur = conn.cursor()
    cur.execute(sql, params)
    # No fetch: the next statement on the cursor drops the result stream.
    cur.execute("SELECT 1")
    cur.fetchall()
    cur.close()
    conn.close()


def adbc_execute_fetch(srv, sql, params=None):
    with connect(srv) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        cur.fetchall()


def adbc_execute_close(srv, sql, params=None):
    conn = connect(srv)
    cur = conn.cursor()
    cur.execute(sql, params)
    cur.close()
    conn.close()


def flight_info_only(srv, sql, params=None):
    assert params is None
    client = flight.FlightClient(srv.uri)
    try:
        client.get_flight_info(flight.FlightDescriptor.for_command(command_statement_query(sql)))
    finally:
        client.close()


def flight_info_and_get(srv, sql, params=None):
    assert params is None
    client = flight.FlightClient(srv.uri)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command_statement_query(sql)))
        client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        client.close()


PATTERNS = {
    "adbc execute only": adbc_execute_only,
    "adbc execute + fetch": adbc_execute_fetch,
    "adbc execute + close": adbc_execute_close,
    "flight GetFlightInfo only": flight_info_only,
    "flight GetFlightInfo + DoGet": flight_info_and_get,
}


def new_table(srv, rows: int = 0) -> str:
    name = f"public.w{next(_names)}"
    with connect(srv) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {name} (a BIGINT, b VARCHAR)")
        cur.fetchall()
        if rows:
            cur.execute(f"INSERT INTO {name} SELECT value, 'x' FROM range({rows})")
            cur.fetchall()
    return name


@pytest.mark.parametrize("pattern", PATTERNS)
def test_insert_values(server, pattern):
    t = new_table(server)
    PATTERNS[pattern](server, f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')")
    assert count(server, t) == 2


@pytest.mark.parametrize("pattern", PATTERNS)
def test_insert_select(server, pattern):
    src = new_table(server, rows=5)
    t = new_table(server)
    PATTERNS[pattern](server, f"INSERT INTO {t} SELECT * FROM {src}")
    assert count(server, t) == 5


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if p.startswith("adbc")])
def test_prepared_insert_with_parameters(server, pattern):
    t = new_table(server)
    PATTERNS[pattern](server, f"INSERT INTO {t} VALUES (?, ?)", (7, "seven"))
    assert count(server, t) == 1


@pytest.mark.parametrize("pattern", PATTERNS)
def test_ctas(server, pattern):
    name = f"public.ctas_{uuid.uuid4().hex[:8]}"
    PATTERNS[pattern](server, f"CREATE TABLE {name} AS SELECT value AS a FROM range(4)")
    assert count(server, name) == 4


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if p.startswith("adbc")])
def test_prepared_ctas_with_parameters(server, pattern):
    # DDL runs while planned: the values go into the plan first (it used to
    # fail with "Placeholder '$1' was not provided a value").
    name = f"public.ctas_{uuid.uuid4().hex[:8]}"
    PATTERNS[pattern](server, f"CREATE TABLE {name} AS SELECT value AS a FROM range(10) WHERE value < ?", (3,))
    assert count(server, name) == 3


@pytest.mark.parametrize("pattern", PATTERNS)
def test_delete_update_truncate(server, pattern):
    # Row-level DML (issue 20) runs at GetFlightInfo like the other writes.
    name = new_table(server, rows=6)
    PATTERNS[pattern](server, f"DELETE FROM {name} WHERE a < 2")
    assert count(server, name) == 4
    PATTERNS[pattern](server, f"UPDATE {name} SET b = 'y' WHERE a >= 4")
    with connect(server) as conn:
        assert fetch_scalar(conn, f"SELECT count(*) FROM {name} WHERE b = 'y'") == 2
    PATTERNS[pattern](server, f"TRUNCATE TABLE {name}")
    assert count(server, name) == 0


@pytest.mark.parametrize("pattern", [p for p in PATTERNS if p.startswith("adbc")])
def test_prepared_delete_and_update_with_parameters(server, pattern):
    name = new_table(server, rows=6)
    PATTERNS[pattern](server, f"DELETE FROM {name} WHERE a < ?", (2,))
    assert count(server, name) == 4
    PATTERNS[pattern](server, f"UPDATE {name} SET b = ? WHERE a >= ?", ("z", 4))
    with connect(server) as conn:
        assert fetch_scalar(conn, f"SELECT count(*) FROM {name} WHERE b = 'z'") == 2


@pytest.mark.parametrize("pattern", PATTERNS)
def test_merge(server, pattern):
    # MERGE INTO (issue 20) runs at GetFlightInfo like the other writes:
    # rows 0..5; 4 and 5 updated, 1 deleted, 10 inserted.
    name = new_table(server, rows=6)
    PATTERNS[pattern](
        server,
        f"""MERGE INTO {name} t USING (SELECT 1 AS a, 'd' AS op UNION ALL SELECT 4, 'u'
              UNION ALL SELECT 5, 'u' UNION ALL SELECT 10, 'i') s ON t.a = s.a
            WHEN MATCHED AND s.op = 'd' THEN DELETE
            WHEN MATCHED THEN UPDATE SET b = 'm'
            WHEN NOT MATCHED THEN INSERT (a, b) VALUES (s.a, 'new')""",
    )
    assert count(server, name) == 6
    with connect(server) as conn:
        assert fetch_scalar(conn, f"SELECT count(*) FROM {name} WHERE b = 'm'") == 2
        assert fetch_scalar(conn, f"SELECT count(*) FROM {name} WHERE a = 10 AND b = 'new'") == 1
        assert fetch_scalar(conn, f"SELECT count(*) FROM {name} WHERE a = 1") == 0


@pytest.mark.parametrize("pattern", PATTERNS)
def test_refresh_materialized_view(server, pattern):
    base = new_table(server, rows=3)
    view = f"public.mv_{uuid.uuid4().hex[:8]}"
    with connect(server) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE MATERIALIZED VIEW {view} AS SELECT b, count(*) AS n FROM {base} GROUP BY b")
        cur.fetchall()
        cur.execute(f"INSERT INTO {base} VALUES (10, 'y')")
        cur.fetchall()
    PATTERNS[pattern](server, f"REFRESH MATERIALIZED VIEW {view}")
    with connect(server) as conn:
        # Read the view's own rows (no rewrite involved: the view table itself).
        assert fetch_scalar(conn, f"SELECT count(*) FROM {view}") == 2


@pytest.mark.parametrize("pattern", PATTERNS)
def test_copy(server, pattern):
    target = f"copy_{uuid.uuid4().hex[:8]}.csv"
    PATTERNS[pattern](server, f"COPY (SELECT 1 AS a UNION ALL SELECT 2) TO '{target}' STORED AS CSV")
    lines = (server.export_dir / target).read_text().strip().splitlines()
    assert sorted(lines) == ["1", "2", "a"]


def test_executemany(server):
    t = new_table(server)
    with connect(server) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {t} VALUES (?, ?)", [(i, str(i)) for i in range(6)])
    assert count(server, t) == 6


def test_executemany_then_close_without_reading(server):
    t = new_table(server)
    conn = connect(server)
    cur = conn.cursor()
    cur.executemany(f"INSERT INTO {t} VALUES (?, ?)", [(1, "a"), (2, "b")])
    cur.close()
    conn.close()
    assert count(server, t) == 2


def test_a_failing_insert_inserts_nothing(server):
    t = new_table(server)
    with connect(server) as conn, conn.cursor() as cur:
        with pytest.raises(Exception):
            cur.execute(f"INSERT INTO {t} SELECT CAST(v AS BIGINT), v FROM (VALUES ('1'), ('x')) s(v)")
            cur.fetchall()
    assert count(server, t) == 0
