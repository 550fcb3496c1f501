"""Complete Flight SQL (issue 7): bulk ingest (ADBC adbc_ingest), sessions,
statement timeouts, cancellation, bounded-memory streaming of large results
and a 50-connection soak, against the real `weir serve` binary."""

from __future__ import annotations

import datetime as dt
import threading
import time

import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from flight_complete_helpers import (
    cancel_flight_info_body,
    cancel_query_body,
    connect_with_session,
    cpu_seconds,
    read_in_background,
    rss_bytes,
    running_queries,
    session_options,
    set_session_option,
    wait_until,
)
from flightsql_proto import command_statement_query
from weir_harness import connect, execute, fetch_rows, fetch_scalar

# Runs for minutes unless stopped (generate_series is not folded by the planner).
LONG_QUERY = "SELECT count(*) FROM generate_series(1, 1000000000000) AS t(v) WHERE v % 7 = 3"


def sample_table(start: int, n: int) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"n{i}" if i % 5 else None for i in ids], pa.string()),
            "value": pa.array([i * 0.5 for i in ids], pa.float64()),
            "ok": pa.array([i % 2 == 0 for i in ids], pa.bool_()),
            "ts": pa.array(
                [dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=i) for i in ids],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def vendor_code(excinfo) -> int:
    return getattr(excinfo.value, "vendor_code", None)


# --- ingest ---------------------------------------------------------------------


def test_ingest_modes_round_trip(weir_server, adbc_conn):
    t1 = sample_table(0, 1000)
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("ingest_rt", t1, mode="create") == 1000
        assert cur.adbc_ingest("ingest_rt", sample_table(1000, 500), mode="append") == 500
    got = fetch_rows(adbc_conn, "SELECT count(*), sum(id), count(name), sum(value), sum(CAST(ok AS INT)), min(ts), max(ts) FROM ingest_rt")
    ids = range(1500)
    assert got == [
        (
            1500,
            sum(ids),
            sum(1 for i in ids if i % 5),
            sum(i * 0.5 for i in ids),
            sum(1 for i in ids if i % 2 == 0),
            dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
            dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=1499),
        )
    ]
    # The rows come back exactly as sent.
    back = fetch_rows(adbc_conn, "SELECT id, name, value, ok, ts FROM ingest_rt WHERE id IN (3, 5, 1499) ORDER BY id")
    expected = sample_table(0, 1500).to_pylist()
    assert back == [tuple(expected[i].values()) for i in (3, 5, 1499)]

    # replace: the table is recreated from the new schema and rows.
    replacement = pa.table({"k": pa.array(["a", "b"]), "n": pa.array([1, 2], pa.int32())})
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("ingest_rt", replacement, mode="replace") == 2
    assert fetch_rows(adbc_conn, "SELECT k, n FROM ingest_rt ORDER BY k") == [("a", 1), ("b", 2)]
    # replace also creates a missing table.
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("ingest_replace_new", replacement, mode="replace") == 2
    assert fetch_scalar(adbc_conn, "SELECT sum(n) FROM ingest_replace_new") == 3

    # create_append: creates, then appends.
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("ingest_ca", sample_table(0, 10), mode="create_append") == 10
        assert cur.adbc_ingest("ingest_ca", sample_table(10, 10), mode="create_append") == 10
    assert fetch_rows(adbc_conn, "SELECT count(*), count(DISTINCT id) FROM ingest_ca") == [(20, 20)]
    # Each ingest is one Iceberg append snapshot.
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM iceberg_snapshots('public.ingest_ca')") == 2


def test_ingest_into_sql_table_by_name_with_casts(weir_server, adbc_conn):
    execute(adbc_conn, "CREATE SCHEMA IF NOT EXISTS plant")
    execute(adbc_conn, "CREATE TABLE plant.readings (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE, note VARCHAR)")
    # Columns in another order, narrower types, `note` left out (nullable).
    data = pa.table(
        {
            "value": pa.array([1.5, 2.5], pa.float32()),
            "device_id": pa.array(["d1", "d2"], pa.large_string()),
            "ts": pa.array([dt.datetime(2026, 1, 2), dt.datetime(2026, 1, 3)], pa.timestamp("ms")),
        }
    )
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("readings", data, mode="append", db_schema_name="plant") == 2
    assert fetch_rows(adbc_conn, "SELECT device_id, value, note FROM plant.readings ORDER BY device_id") == [
        ("d1", 1.5, None),
        ("d2", 2.5, None),
    ]
    # A NOT NULL column missing, an unknown column: INVALID_ARGUMENT, nothing written.
    with adbc_conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="device_id of table plant.readings is NOT NULL") as e:
            cur.adbc_ingest("readings", data.drop_columns(["device_id"]), mode="append", db_schema_name="plant")
        assert vendor_code(e) == 3
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="column extra does not exist") as e:
            cur.adbc_ingest("readings", data.append_column("extra", pa.array([1, 2])), mode="append", db_schema_name="plant")
        assert vendor_code(e) == 3
    # A value that does not convert, in the second batch: INVALID_ARGUMENT
    # and nothing of the first batch is committed either.
    good = pa.record_batch({"ts": pa.array([dt.datetime(2026, 1, 4)], pa.timestamp("us")), "device_id": ["d3"], "value": ["3.5"]})
    bad = pa.record_batch({"ts": pa.array([dt.datetime(2026, 1, 5)], pa.timestamp("us")), "device_id": ["d4"], "value": ["oops"]})
    with adbc_conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="oops") as e:
            cur.adbc_ingest("readings", pa.Table.from_batches([good, bad]), mode="append", db_schema_name="plant")
        assert vendor_code(e) == 3
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM plant.readings") == 2


def test_ingest_errors(weir_server, adbc_conn):
    t = sample_table(0, 3)
    with adbc_conn.cursor() as cur:
        cur.adbc_ingest("ingest_err", t, mode="create")
        # create on an existing table -> ALREADY_EXISTS (gRPC 6)
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="ALREADY_EXISTS.*public.ingest_err already exists") as e:
            cur.adbc_ingest("ingest_err", t, mode="create")
        assert vendor_code(e) == 6
        # append to a missing table -> NOT_FOUND (5)
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="NOT_FOUND.*public.ingest_missing does not exist") as e:
            cur.adbc_ingest("ingest_missing", t, mode="append")
        assert vendor_code(e) == 5
        # a missing schema -> NOT_FOUND
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="schema nowhere does not exist") as e:
            cur.adbc_ingest("x", t, mode="create", db_schema_name="nowhere")
        assert vendor_code(e) == 5
        # tables that do not accept ingestion -> INVALID_ARGUMENT (3) with the reason
        for schema, table, mode, reason in [
            ("silver", "points", "append", "schema silver is written by Weir's exactly-once pipeline"),
            ("bronze", "raw_messages", "create_append", "schema bronze is written by Weir's exactly-once pipeline"),
            ("bronze", "dead_letters", "replace", "schema bronze is written by Weir's exactly-once pipeline"),
            ("gold", "points_1h", "append", "gold.points_1h is a materialized view"),
        ]:
            with pytest.raises(adbc_driver_manager.ProgrammingError, match=reason) as e:
                cur.adbc_ingest(table, t, mode=mode, db_schema_name=schema)
            assert vendor_code(e) == 3, (schema, table)
        # temporary tables are not supported -> UNIMPLEMENTED (12)
        with pytest.raises(adbc_driver_manager.NotSupportedError) as e:
            cur.adbc_ingest("tmp", t, mode="create", temporary=True)
        assert vendor_code(e) == 12
    # Nothing was written to the refused tables, and the server is fine.
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM silver.points") == 0
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM bronze.dead_letters") == 0
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM ingest_err") == 3


def test_ingest_allowed_table_property(weir_server, adbc_conn):
    """`weir.ingest.allowed` (set here with PyIceberg on the same catalog)
    opts a pipeline table in and any table out."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog(
        "weir",
        uri=f"sqlite:///{weir_server.data_dir}/catalog.db",
        warehouse=f"file://{weir_server.data_dir}/warehouse",
    )
    with adbc_conn.cursor() as cur:
        cur.adbc_ingest("prop_t", pa.table({"x": [1]}), mode="create")
    table = catalog.load_table("public.prop_t")
    assert table.properties["weir.ingest.allowed"] == "true"  # set on tables ingest creates
    with table.transaction() as tx:
        tx.set_properties({"weir.ingest.allowed": "false"})
    dead = pa.table(
        {
            "received_at": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC")),
            "source": ["backfill"],
            "reason": ["imported from the old system"],
        }
    )
    with adbc_conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="weir.ingest.allowed = false") as e:
            cur.adbc_ingest("prop_t", pa.table({"x": [2]}), mode="append")
        assert vendor_code(e) == 3
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="schema bronze"):
            cur.adbc_ingest("dead_letters", dead, mode="append", db_schema_name="bronze")
    with catalog.load_table("bronze.dead_letters").transaction() as tx:
        tx.set_properties({"weir.ingest.allowed": "true"})
    with adbc_conn.cursor() as cur:
        assert cur.adbc_ingest("dead_letters", dead, mode="append", db_schema_name="bronze") == 1
    assert fetch_rows(adbc_conn, "SELECT source, reason, topic FROM bronze.dead_letters") == [
        ("backfill", "imported from the old system", None)
    ]
    assert fetch_scalar(adbc_conn, "SELECT sum(x) FROM prop_t") == 1
    with catalog.load_table("bronze.dead_letters").transaction() as tx:
        tx.remove_properties("weir.ingest.allowed")


# --- sessions -------------------------------------------------------------------


def test_session_options_apply_to_later_statements(weir_server):
    setup = connect(weir_server.uri)
    execute(setup, "CREATE SCHEMA IF NOT EXISTS sess")
    execute(setup, "CREATE TABLE sess.only_here (a BIGINT)")
    execute(setup, "INSERT INTO sess.only_here VALUES (41), (1)")

    conn = connect_with_session(weir_server.uri)
    other = connect_with_session(weir_server.uri)
    try:
        opts = session_options(conn)
        assert opts["catalog"] == "weir" and opts["schema"] == "public"
        assert opts["weir.mv_rewrite"] is True

        # schema: unqualified names resolve in it, for this connection only.
        set_session_option(conn, "schema", "sess")
        assert conn.adbc_current_db_schema == "sess"
        assert fetch_scalar(conn, "SELECT sum(a) FROM only_here") == 42
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="only_here"):
            fetch_scalar(other, "SELECT sum(a) FROM only_here")
        # ... and ingest goes there too.
        with conn.cursor() as cur:
            assert cur.adbc_ingest("ingested_here", pa.table({"x": [1, 2, 3]}), mode="create") == 3
        assert fetch_scalar(setup, "SELECT sum(x) FROM sess.ingested_here") == 6

        # datafusion.* settings, as a session option and as SQL SET.
        set_session_option(conn, "datafusion.execution.batch_size", "1234")
        setting = "SELECT value FROM information_schema.df_settings WHERE name = '{}'"
        assert fetch_scalar(conn, setting.format("datafusion.execution.batch_size")) == "1234"
        execute(conn, "SET datafusion.execution.target_partitions = 3")
        assert fetch_scalar(conn, setting.format("datafusion.execution.target_partitions")) == "3"
        assert fetch_scalar(other, setting.format("datafusion.execution.batch_size")) == "8192"
        assert fetch_scalar(other, setting.format("datafusion.execution.target_partitions")) != "3"

        # weir.mv_rewrite: a view answers aggregates unless the session turns it off.
        execute(setup, "CREATE TABLE sess.r (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE) PARTITIONED BY (day(ts))")
        execute(setup, "INSERT INTO sess.r VALUES ('2026-05-01T01:10:00', 'a', 1.0), ('2026-05-01T02:20:00', 'b', 2.0)")
        execute(
            setup,
            "CREATE MATERIALIZED VIEW sess.r_1h PARTITIONED BY (day(bucket)) AS SELECT date_bin(INTERVAL '1 hour', ts) AS bucket, "
            "device_id, count(*) AS count, sum(value) AS sum_value FROM sess.r GROUP BY 1, 2",
        )
        explain = "EXPLAIN SELECT device_id, date_bin(INTERVAL '1 hour', ts) AS h, count(*) FROM sess.r GROUP BY 1, 2"
        plan = lambda c: "\n".join(str(r) for r in fetch_rows(c, explain))  # noqa: E731
        assert "mv_rewrite" in plan(other)
        set_session_option(conn, "weir.mv_rewrite", "false", boolean=True)
        assert session_options(conn)["weir.mv_rewrite"] is False
        assert "mv_rewrite" not in plan(conn)
        assert "mv_rewrite" in plan(other)

        # Unknown names and bad values are refused, nothing changes.
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="bogus.*invalid name"):
            set_session_option(conn, "bogus", "1")
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="invalid value"):
            set_session_option(conn, "datafusion.execution.batch_size", "many")
        with pytest.raises(adbc_driver_manager.ProgrammingError, match="invalid value"):
            set_session_option(conn, "catalog", "nope")
        assert session_options(conn)["datafusion.execution.batch_size"] == "1234"
    finally:
        conn.close()
        other.close()
        setup.close()


class _CookieJar(flight.ClientMiddlewareFactory):
    """Keeps `set-cookie` values and sends them back (what ADBC's cookie
    middleware does), so raw pyarrow.flight calls share one session."""

    def __init__(self):
        self.cookies = {}

    def start_call(self, info):
        jar = self

        class _Middleware(flight.ClientMiddleware):
            def sending_headers(self):
                if not jar.cookies:
                    return {}
                return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.cookies.items())}

            def received_headers(self, headers):
                for value in headers.get("set-cookie", []):
                    name, _, rest = value.partition("=")
                    jar.cookies[name] = rest.split(";")[0]

        return _Middleware()


def test_close_session_forgets_it(weir_server):
    jar = _CookieJar()
    client = flight.FlightClient(weir_server.uri, middleware=[jar])
    try:
        # SetSessionOptionsRequest{session_options = {"schema": {string_value = "sess2"}}}
        from flightsql_proto import _len_field, _string

        entry = _string(1, "schema") + _len_field(2, _string(1, "sess2"))
        list(client.do_action(("SetSessionOptions", _len_field(1, entry))))
        assert "arrow_flight_session_id" in jar.cookies
        options = list(client.do_action(("GetSessionOptions", b"")))[0].body.to_pybytes()
        assert b"sess2" in options
        closed = list(client.do_action(("CloseSession", b"")))[0].body.to_pybytes()
        assert closed == b"\x08\x01"  # CloseSessionResult{status = CLOSED}
        with pytest.raises((flight.FlightError, KeyError), match="session unknown, closed or expired"):
            list(client.do_action(("GetSessionOptions", b"")))
    finally:
        client.close()


# --- timeouts and cancellation ----------------------------------------------------


def test_statement_timeout_session_option(weir_server):
    conn = connect_with_session(weir_server.uri)
    try:
        set_session_option(conn, "statement_timeout", "700ms")
        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.OperationalError, match="ran longer than its query timeout") as e:
            fetch_rows(conn, LONG_QUERY)
        assert vendor_code(e) == 4  # DEADLINE_EXCEEDED
        assert time.monotonic() - started < 30
        wait_until(lambda: running_queries(weir_server.uri) == [], 10, "the timed-out query to be freed")
        # The connection and the server keep working; 0 lifts the limit.
        assert fetch_scalar(conn, "SELECT 40 + 2") == 42
        set_session_option(conn, "statement_timeout", "0")
        assert fetch_scalar(conn, "SELECT count(*) FROM generate_series(1, 2000000)") == 2000000
    finally:
        conn.close()


def test_statement_timeout_server_flag(weir_factory, tmp_path):
    server = weir_factory(tmp_path / "timeout-data", ["--statement-timeout", "1s"])
    conn = connect(server.uri)
    try:
        with pytest.raises(adbc_driver_manager.OperationalError, match=r"ran longer than its query timeout \(1s") as e:
            fetch_rows(conn, LONG_QUERY)
        assert vendor_code(e) == 4
        assert fetch_scalar(conn, "SELECT 1") == 1
        assert server.proc.poll() is None
    finally:
        conn.close()


def _cpu_rate(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def test_adbc_cancel_stops_the_query(weir_server):
    conn = connect(weir_server.uri)
    outcome = {}
    cur = conn.cursor()

    def run():
        try:
            cur.execute(LONG_QUERY)
            outcome["rows"] = cur.fetchall()
        except Exception as e:  # noqa: BLE001 - the cancellation is the expected outcome
            outcome["error"] = e

    worker = threading.Thread(target=run)
    worker.start()
    try:
        wait_until(lambda: len(running_queries(weir_server.uri)) == 1, 30, "the query to run")
        assert _cpu_rate(weir_server.proc.pid, 0.5) > 0.5, "the query should be burning CPU"
        cur.adbc_cancel()
        worker.join(30)
        assert not worker.is_alive()
        assert "rows" not in outcome and "error" in outcome, outcome
        # The server freed it: deregistered, and no more CPU spent on it.
        wait_until(lambda: running_queries(weir_server.uri) == [], 10, "the cancelled query to be freed")
        wait_until(lambda: _cpu_rate(weir_server.proc.pid, 0.5) < 0.2, 10, "the server to go idle")
        assert fetch_scalar(conn, "SELECT 1") == 1
    finally:
        worker.join(30)
        cur.close()
        conn.close()


@pytest.mark.parametrize("action", ["CancelFlightInfo", "CancelQuery"])
def test_cancel_actions_stop_a_running_query(weir_server, action, pyarrow_cancel_quirk):
    client = flight.FlightClient(weir_server.uri)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command_statement_query(LONG_QUERY)))
        worker, outcome = read_in_background(client.do_get(info.endpoints[0].ticket))
        wait_until(lambda: len(running_queries(weir_server.uri)) == 1, 30, "the query to run")
        body = cancel_flight_info_body(info) if action == "CancelFlightInfo" else cancel_query_body(info)
        result = list(client.do_action((action, body)))[0].body.to_pybytes()
        # CancelFlightInfoResult / ActionCancelQueryResult (Any): status CANCELLED = 1
        assert result.endswith(b"\x08\x01"), result
        worker.join(30)
        assert not worker.is_alive()
        assert isinstance(outcome.get("error"), flight.FlightCancelledError), outcome
        assert "cancelled by a client request" in str(outcome["error"])
        wait_until(lambda: running_queries(weir_server.uri) == [], 10, "the cancelled query to be freed")
        # Cancelling again: NOT_FOUND.
        with pytest.raises((flight.FlightError, KeyError), match="not running"):
            list(client.do_action((action, body)))
    finally:
        client.close()


def test_cancel_before_fetch_drops_the_statement(weir_server):
    client = flight.FlightClient(weir_server.uri)
    try:
        info = client.get_flight_info(flight.FlightDescriptor.for_command(command_statement_query("SELECT 1")))
        list(client.do_action(("CancelFlightInfo", cancel_flight_info_body(info))))
        with pytest.raises((flight.FlightError, KeyError), match="unknown, already fetched, cancelled or expired"):
            client.do_get(info.endpoints[0].ticket).read_all()
    finally:
        client.close()


# --- large results ----------------------------------------------------------------


def test_large_result_streams_with_bounded_memory(weir_server):
    """50 M rows x 2 BIGINT columns (800 MB of values) read slowly: the
    server's RSS stays far below the result size."""
    n = 50_000_000
    conn = connect(weir_server.uri)
    pid = weir_server.proc.pid
    try:
        baseline = rss_bytes(pid)
        peak = baseline
        rows = 0
        total = 0
        with conn.cursor() as cur:
            cur.execute(f"SELECT v, v * 2 AS w FROM generate_series(1, {n}) AS t(v)")
            reader = cur.fetch_record_batch()
            for i, batch in enumerate(reader):
                rows += batch.num_rows
                total += pa.compute.sum(batch.column(0)).as_py() or 0
                if i < 40:
                    # A slow reader at first: the server must wait, not run ahead and buffer.
                    time.sleep(0.05)
                    peak = max(peak, rss_bytes(pid))
                elif i % 200 == 0:
                    peak = max(peak, rss_bytes(pid))
        assert rows == n
        assert total == n * (n + 1) // 2
        growth = peak - baseline
        print(f"server RSS: baseline {baseline / 2**20:.0f} MiB, peak {peak / 2**20:.0f} MiB while streaming 800 MB")
        assert growth < 300 * 2**20, f"server RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        conn.close()


# --- soak -------------------------------------------------------------------------


def test_fifty_connections_soak(weir_server):
    """50 ADBC connections in threads: ingests into their own tables, queries
    of their own and a shared table, a session option; every result checked."""
    n_conn, rounds, rows_per_ingest = 50, 3, 200
    setup = connect(weir_server.uri)
    execute(setup, "CREATE SCHEMA IF NOT EXISTS soak")
    with setup.cursor() as cur:
        cur.adbc_ingest("shared", pa.table({"v": pa.array(range(10_000), pa.int64())}), mode="create", db_schema_name="soak")
    setup.close()
    errors = []
    latencies = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_conn)

    def worker(i: int):
        try:
            conn = connect_with_session(weir_server.uri)
            try:
                set_session_option(conn, "schema", "soak")
                barrier.wait(60)
                for r in range(rounds):
                    start = i * 1_000_000 + r * rows_per_ingest
                    data = pa.table({"id": pa.array(range(start, start + rows_per_ingest), pa.int64()), "who": [i] * rows_per_ingest})
                    with conn.cursor() as cur:
                        assert cur.adbc_ingest(f"t{i}", data, mode="create_append") == rows_per_ingest
                    t0 = time.monotonic()
                    got = fetch_rows(conn, f"SELECT count(*), sum(id), min(who), max(who) FROM t{i}")
                    shared = fetch_rows(conn, "SELECT count(*), sum(v) FROM shared WHERE v % 3 = 0")
                    elapsed = time.monotonic() - t0
                    n = (r + 1) * rows_per_ingest
                    first = i * 1_000_000
                    expected_sum = sum(first + k * rows_per_ingest + j for k in range(r + 1) for j in range(rows_per_ingest))
                    assert got == [(n, expected_sum, i, i)], (i, r, got)
                    assert shared == [(3334, sum(v for v in range(10_000) if v % 3 == 0))], shared
                    with lock:
                        latencies.append(elapsed / 2)
            finally:
                conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append((i, repr(e)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_conn)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert not any(t.is_alive() for t in threads), "soak threads hung"
    assert errors == [], errors[:5]
    assert len(latencies) == n_conn * rounds
    check = connect(weir_server.uri)
    try:
        total = fetch_scalar(check, "SELECT count(*) FROM (" + " UNION ALL ".join(f"SELECT id FROM soak.t{i}" for i in range(n_conn)) + ")")
        assert total == n_conn * rounds * rows_per_ingest
    finally:
        check.close()
    latencies.sort()
    print(f"soak query latency p50 {latencies[len(latencies) // 2] * 1000:.0f} ms, p95 {latencies[int(len(latencies) * 0.95)] * 1000:.0f} ms")
