"""Hostile input against the Flight SQL server (issue 24): role bypass,
crashes from pathological SQL, memory exhaustion, other users' queries,
timeouts, idle connections, CTAS left half done, COPY to any path.

Everything runs against one server started with ``--users`` (plus a few
with special flags); the module ends by checking that the shared server is
still the same process, i.e. survived the whole suite without restart."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import pyarrow.flight as flight
import pytest
from adbc_driver_flightsql import DatabaseOptions

from flight_complete_helpers import cancel_flight_info_body, read_in_background, rss_bytes, wait_until
from flightsql_proto import command_statement_query
from test_auth import PASSWORDS, ROLES, hash_password
from weir_harness import WeirServer, execute, fetch_rows, fetch_scalar

Status = adbc_driver_manager.AdbcStatusCode
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8

LONG_QUERY = "SELECT count(*) FROM range(100000000000) a WHERE a.value % 7 = 3"


@pytest.fixture(scope="module")
def users_flag() -> str:
    return ";".join(f"{n}:{ROLES[n]}:{hash_password(pw)}" for n, pw in PASSWORDS.items())


@pytest.fixture(scope="module")
def server(tmp_path_factory, users_flag):
    srv = WeirServer(
        tmp_path_factory.mktemp("hostile") / "data",
        ["--users", users_flag, "--query-timeout", "20s"],
    )
    srv.start_pid = srv.proc.pid
    yield srv
    srv.discard()


def connect(srv, user: str, session: bool = False):
    kwargs = {"username": user, "password": PASSWORDS[user]}
    if session:
        kwargs[DatabaseOptions.WITH_COOKIE_MIDDLEWARE.value] = "true"
    return flightsql.connect(srv.uri, db_kwargs=kwargs, autocommit=True)


TOKENS: dict = {}


def flight_client(srv, user: str) -> flight.FlightClient:
    client = flight.FlightClient(srv.uri)
    TOKENS[id(client)] = client.authenticate_basic_token(user, PASSWORDS[user])
    return client


def call_options(client) -> flight.FlightCallOptions:
    return flight.FlightCallOptions(headers=[TOKENS[id(client)]])


def expect_error(conn, sql: str, vendor_code: int, text: str | None = None) -> str:
    with pytest.raises(dbapi.Error) as excinfo:
        fetch_rows(conn, sql)
    err = excinfo.value
    assert err.vendor_code == vendor_code, f"{sql[:80]!r}: expected gRPC {vendor_code}, got {err}"
    if text is not None:
        assert text in str(err), f"{text!r} not in {err}"
    return str(err)


def set_option(conn, name: str, value: str) -> None:
    conn.adbc_connection.set_options(**{"adbc.flight.sql.session.option." + name: value})


def assert_alive(srv) -> None:
    assert srv.proc.poll() is None, "the server died:\n" + srv.logs()
    with connect(srv, "reader") as conn:
        assert fetch_scalar(conn, "SELECT 1") == 1


@pytest.fixture(scope="module")
def victim(server):
    with connect(server, "boss") as conn:
        execute(conn, "CREATE TABLE public.victim (a INT)")
        execute(conn, "INSERT INTO public.victim VALUES (1), (2), (3)")
    return "public.victim"


# --- 1. role bypass ---------------------------------------------------------------


BYPASSES = [
    "/* /* */ DROP TABLE public.victim -- */ SELECT 1",
    "/* /* */ INSERT INTO public.victim VALUES (99) -- */ SELECT 1",
    "/* /* */ COPY (SELECT 'x' AS a) TO '/tmp/weir_reader_wrote.csv' STORED AS CSV -- */ SELECT 1",
]


def test_reader_cannot_switch_the_dialect(server, victim):  # runs before the MySQL test
    """The attack: MySQL does not nest comments, so under it the texts above
    are a DROP/INSERT/COPY while the generic dialect sees SELECT 1."""
    with connect(server, "reader", session=True) as conn:
        with pytest.raises(dbapi.Error):
            set_option(conn, "datafusion.sql_parser.dialect", "MySQL")
        expect_error(conn, "SET datafusion.sql_parser.dialect = 'MySQL'", PERMISSION_DENIED, "may not run")
        for sql in BYPASSES:
            # Still the generic dialect: these are SELECT 1 and run as such.
            assert fetch_scalar(conn, sql) == 1
    with connect(server, "boss") as conn:
        assert fetch_scalar(conn, "SELECT count(*) FROM public.victim") == 3
    assert not Path("/tmp/weir_reader_wrote.csv").exists()


def test_under_mysql_the_check_sees_what_runs(server, victim):
    """An admin's MySQL session: the text is what MySQL makes of it, for the
    role check and the engine alike (the unit test
    `the_session_dialect_decides_what_the_statement_is` checks the class)."""
    with connect(server, "boss", session=True) as conn:
        set_option(conn, "datafusion.sql_parser.dialect", "MySQL")
        # Under MySQL this is an INSERT, and it runs as one (admin may).
        execute(conn, "/* /* */ INSERT INTO public.victim VALUES (4) -- */ SELECT 1")
        assert fetch_scalar(conn, "SELECT count(*) FROM public.victim") == 4
    with connect(server, "writer", session=True) as conn:
        with pytest.raises(dbapi.Error):
            set_option(conn, "datafusion.sql_parser.dialect", "MySQL")


# --- 2. pathological statements ---------------------------------------------------


def chain(n: int, op: str) -> str:
    return "SELECT " + op.join(["1"] * n)


PATHOLOGICAL = [
    ("flat + chain, 2,000 terms", chain(2_000, "+"), INVALID_ARGUMENT),
    ("flat + chain, 200,000 terms", chain(200_000, "+"), INVALID_ARGUMENT),
    ("AND chain", "SELECT 1 WHERE " + " AND ".join(["true"] * 50_000), INVALID_ARGUMENT),
    ("OR chain", "SELECT 1 WHERE " + " OR ".join(["1 = 2"] * 20_000), INVALID_ARGUMENT),
    ("string concat chain", "SELECT " + " || ".join(["'a'"] * 20_000), INVALID_ARGUMENT),
    ("nested parentheses", "SELECT " + "(" * 5_000 + "1" + ")" * 5_000, INVALID_ARGUMENT),
    ("nested function calls", "SELECT " + "abs(" * 3_000 + "1" + ")" * 3_000, INVALID_ARGUMENT),
    ("nested CASE", "SELECT " + "CASE WHEN true THEN " * 2_000 + "1" + " END" * 2_000, INVALID_ARGUMENT),
    ("UNION chain", " UNION ALL ".join(["SELECT 1"] * 20_000), INVALID_ARGUMENT),
    ("nested subqueries", "SELECT " + "(SELECT " * 2_000 + "1" + ")" * 2_000, INVALID_ARGUMENT),
    ("unary minus chain", "SELECT " + "- " * 10_000 + "1", INVALID_ARGUMENT),
    ("NOT chain", "SELECT " + "NOT " * 10_000 + "true", INVALID_ARGUMENT),
    ("two statements", "SELECT 1; DROP TABLE public.victim", 12),
]


@pytest.mark.parametrize("name,sql,code", PATHOLOGICAL, ids=[p[0] for p in PATHOLOGICAL])
def test_pathological_sql_is_refused_not_fatal(server, victim, name, sql, code):
    with connect(server, "reader") as conn:
        expect_error(conn, sql, code)
    assert_alive(server)


BIG_BUT_FINE = [
    ("flat chain of 500", chain(500, "+"), 500),
    ("IN list of 100,000", "SELECT count(*) FROM range(10) WHERE value IN (" + ",".join(map(str, range(100_000))) + ")", 10),
    ("huge literal", "SELECT length('" + "x" * 3_000_000 + "')", 3_000_000),
    ("VALUES of 20,000 rows", "SELECT count(*) FROM (VALUES " + ",".join(f"({i}, -{i}.5)" for i in range(20_000)) + ")", 20_000),
]


@pytest.mark.parametrize("name,sql,expected", BIG_BUT_FINE, ids=[p[0] for p in BIG_BUT_FINE])
def test_big_but_ordinary_statements_still_run(server, name, sql, expected):
    with connect(server, "reader") as conn:
        assert fetch_scalar(conn, sql) == expected


def test_recursive_cte_is_bounded_by_the_timeout(server):
    with connect(server, "reader", session=True) as conn:
        set_option(conn, "statement_timeout", "1500")
        started = time.monotonic()
        expect_error(
            conn,
            "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
            DEADLINE_EXCEEDED,
        )
        assert time.monotonic() - started < 15
    assert_alive(server)


# --- 4. memory ----------------------------------------------------------------------


def test_default_query_memory_is_bounded(server):
    logs = re.sub(r"\x1b\[[0-9;]*m", "", server.logs())
    logged = re.search(r"query memory limit.*query_memory_mib=(\d+)", logs)
    assert logged, "the server logs its query memory limit"
    total_kib = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
    assert 0 < int(logged.group(1)) <= total_kib // 1024


@pytest.mark.parametrize("value", ["4000000000", "0", "-1", "lots"])
def test_batch_size_is_bounded(server, value):
    with connect(server, "reader", session=True) as conn:
        with pytest.raises(dbapi.Error):
            set_option(conn, "datafusion.execution.batch_size", value)
        expect_error(conn, f"SET datafusion.execution.batch_size = '{value}'", INVALID_ARGUMENT)
    with connect(server, "boss", session=True) as conn:
        # Bounds hold for admins too.
        with pytest.raises(dbapi.Error):
            set_option(conn, "datafusion.execution.batch_size", value)


def test_a_session_cannot_lift_the_memory_limit(server):
    with connect(server, "boss") as conn:
        expect_error(conn, "SET datafusion.runtime.memory_limit = '100G'", INVALID_ARGUMENT, "server setting")


def test_memory_hungry_queries_fail_cleanly(weir_factory, tmp_path, users_flag):
    srv = weir_factory(tmp_path / "mem", ["--users", users_flag, "--query-memory-mb", "256"])
    with connect(srv, "reader", session=True) as conn:
        expect_error(conn, "SELECT array_length(array_agg(value)) FROM range(1500000000)", RESOURCE_EXHAUSTED)
        # count(DISTINCT) becomes a grouped aggregate that spills to disk under
        # the limit: it either fails cleanly or runs into the timeout, with
        # the server's memory bounded all along.
        set_option(conn, "statement_timeout", "20s")
        peak = {"rss": 0}
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak["rss"] = max(peak["rss"], rss_bytes(srv.proc.pid))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            with pytest.raises(dbapi.Error) as excinfo:
                fetch_rows(conn, "SELECT count(DISTINCT value) FROM range(2000000000)")
            assert excinfo.value.vendor_code in (DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED), excinfo.value
        finally:
            done.set()
            watcher.join()
        assert peak["rss"] < 2 << 30, f"peak RSS {peak['rss'] >> 20} MiB under a 256 MiB query limit"
    assert_alive(srv)


# --- 6. other users' queries, timeouts ----------------------------------------------


def _start_long_query(srv, user):
    client = flight_client(srv, user)
    info = client.get_flight_info(
        flight.FlightDescriptor.for_command(command_statement_query(LONG_QUERY)), call_options(client)
    )
    worker, outcome = read_in_background(client.do_get(info.endpoints[0].ticket, call_options(client)))
    return client, info, worker, outcome


def running(client) -> list:
    return [json.loads(r.body.to_pybytes()) for r in client.do_action(("weir.running_queries", b""), call_options(client))]


def test_readers_see_and_cancel_only_their_own_queries(server, pyarrow_cancel_quirk):
    boss, info, worker, outcome = _start_long_query(server, "boss")
    reader = flight_client(server, "reader")
    try:
        wait_until(lambda: len(running(boss)) == 1, 30, "the admin's query to run")
        assert running(boss)[0]["user"] == "boss"
        assert running(reader) == [], "a reader sees no one else's queries"
        # NOT_FOUND reaches pyarrow as ArrowKeyError.
        with pytest.raises((flight.FlightError, KeyError)) as excinfo:
            list(reader.do_action(("CancelFlightInfo", cancel_flight_info_body(info)), call_options(reader)))
        assert "not running" in str(excinfo.value)
        time.sleep(0.3)
        assert len(running(boss)) == 1, "the admin's query still runs"
        list(boss.do_action(("CancelFlightInfo", cancel_flight_info_body(info)), call_options(boss)))
        worker.join(30)
        assert "error" in outcome
    finally:
        reader.close()
        boss.close()


def test_readers_cannot_lift_the_server_timeout(weir_factory, tmp_path, users_flag):
    srv = weir_factory(tmp_path / "timeout", ["--users", users_flag, "--query-timeout", "2s"])
    with connect(srv, "reader", session=True) as conn:
        set_option(conn, "statement_timeout", "0")
        started = time.monotonic()
        expect_error(conn, LONG_QUERY, DEADLINE_EXCEEDED)
        assert time.monotonic() - started < 20


# --- 6. connections -------------------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_idle_connections_cannot_lock_others_out(weir_factory, tmp_path, users_flag):
    srv = weir_factory(
        tmp_path / "conns",
        ["--users", users_flag, "--max-connections", "64", "--connection-first-call-timeout", "1s"],
    )
    before = open_fds(srv.proc.pid)
    sockets = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", srv.port))
            # A valid HTTP/2 preface and nothing else: a client that never calls.
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            sockets.append(s)
        assert open_fds(srv.proc.pid) < before + 100, "at most --max-connections are held"
        # The idle ones are closed after the first-call timeout ...
        def closed(s) -> bool:
            s.settimeout(0.01)
            try:
                while True:
                    data = s.recv(65536)
                    if not data:
                        return True
            except (socket.timeout, BlockingIOError):
                return False
            except OSError:
                return True

        wait_until(lambda: all(closed(s) for s in sockets), 30, "idle connections to be closed")
        # ... and everyone else gets in.
        with connect(srv, "reader") as conn:
            assert fetch_scalar(conn, "SELECT 2") == 2
        wait_until(lambda: open_fds(srv.proc.pid) < before + 10, 10, "file descriptors to be freed")
    finally:
        for s in sockets:
            s.close()


# --- 6. CTAS, COPY, names -----------------------------------------------------------


def test_failed_ctas_leaves_no_table(server):
    with connect(server, "boss") as conn:
        expect_error(
            conn,
            "CREATE TABLE public.ctas_fails AS SELECT CAST(v AS INT) AS a FROM (VALUES ('1'), ('x')) s(v)",
            INVALID_ARGUMENT,
        )
        execute(conn, "CREATE TABLE public.ctas_fails AS SELECT 1 AS a")
        assert fetch_scalar(conn, "SELECT count(*) FROM public.ctas_fails") == 1


def test_ctas_cut_short_is_replaced_on_rerun(server):
    """A CTAS killed between creating its table and committing its rows
    leaves the table with the pending marker; the rerun replaces it."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.schema import Schema
    from pyiceberg.types import IntegerType, NestedField

    data = server.data_dir
    catalog = SqlCatalog(
        "weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse"
    )
    catalog.create_table(
        "public.ctas_killed",
        Schema(NestedField(1, "a", IntegerType(), required=False)),
        properties={"weir.ctas.pending": "true"},
    )
    with connect(server, "boss") as conn:
        execute(conn, "CREATE TABLE public.ctas_killed AS SELECT 7 AS a")
        assert fetch_rows(conn, "SELECT a FROM public.ctas_killed") == [(7,)]
        # A finished CTAS is never replaced.
        expect_error(conn, "CREATE TABLE public.ctas_killed AS SELECT 8 AS a", 6)
    props = catalog.load_table("public.ctas_killed").properties
    assert "weir.ctas.pending" not in props


def test_copy_is_off_without_an_export_dir(server, tmp_path):
    target = tmp_path / "admin_wrote.csv"
    with connect(server, "boss") as conn:
        expect_error(conn, f"COPY (SELECT 1 AS a) TO '{target}' STORED AS CSV", PERMISSION_DENIED, "--export-dir")
    assert not target.exists()


def test_copy_stays_in_the_export_dir(weir_factory, tmp_path, users_flag):
    export = tmp_path / "exports"
    export.mkdir()
    srv = weir_factory(tmp_path / "copy", ["--users", users_flag, "--export-dir", str(export)])
    with connect(srv, "boss") as conn:
        assert fetch_scalar(conn, "COPY (SELECT 1 AS a) TO 'out.csv' STORED AS CSV") == 1
        assert (export / "out.csv").read_text().strip().splitlines() == ["a", "1"]
        for bad in [str(tmp_path / "outside.csv"), "../outside.csv", "s3://bucket/x.csv"]:
            expect_error(conn, f"COPY (SELECT 1 AS a) TO '{bad}' STORED AS CSV", PERMISSION_DENIED)
        assert not (tmp_path / "outside.csv").exists()
    with connect(srv, "writer") as conn:
        expect_error(conn, "COPY (SELECT 1 AS a) TO 'w.csv' STORED AS CSV", PERMISSION_DENIED, "may not run")


def test_the_shared_server_survived_everything(server):
    assert server.proc.pid == server.start_pid
    assert_alive(server)
