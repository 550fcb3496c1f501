"""Helpers for the "complete Flight SQL" tests and benchmarks: ADBC
connections with sessions, the raw Flight actions Weir adds, and process
statistics of the server (RSS, CPU time) from /proc."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable, List

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow.flight as flight
from adbc_driver_flightsql import DatabaseOptions

from flightsql_proto import _bytes, _len_field, pack_any

SESSION_OPTION = "adbc.flight.sql.session.option."
BOOL_SESSION_OPTION = "adbc.flight.sql.session.optionbool."
SESSION_OPTIONS = "adbc.flight.sql.session.options"


def connect_with_session(uri: str):
    """An ADBC connection that keeps the server's session cookie."""
    return flightsql_dbapi.connect(
        uri,
        db_kwargs={DatabaseOptions.WITH_COOKIE_MIDDLEWARE.value: "true"},
        autocommit=True,
    )


def set_session_option(conn, name: str, value: str, *, boolean: bool = False) -> None:
    prefix = BOOL_SESSION_OPTION if boolean else SESSION_OPTION
    conn.adbc_connection.set_options(**{prefix + name: value})


def session_options(conn) -> dict:
    return json.loads(conn.adbc_connection.get_option(SESSION_OPTIONS))


def running_queries(uri: str) -> List[dict]:
    """Weir's `weir.running_queries` action: one JSON object per query."""
    client = flight.FlightClient(uri)
    try:
        return [json.loads(r.body.to_pybytes()) for r in client.do_action(("weir.running_queries", b""))]
    finally:
        client.close()


def cancel_flight_info_body(info: flight.FlightInfo) -> bytes:
    """CancelFlightInfoRequest{info = 1}."""
    return _len_field(1, info.serialize())


def cancel_query_body(info: flight.FlightInfo) -> bytes:
    """Legacy ActionCancelQueryRequest{info = 1 (serialized FlightInfo)}, as Any."""
    return pack_any("ActionCancelQueryRequest", _bytes(1, info.serialize()))


def read_in_background(reader) -> tuple:
    """Reads a DoGet stream to its end on a thread: (thread, outcome), where
    outcome gets "table" or the FlightError as "error"."""
    outcome = {}

    def read():
        try:
            outcome["table"] = reader.read_all()
        except flight.FlightError as e:
            outcome["error"] = e

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    return worker, outcome


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Polls `predicate` until true; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for: {what}")
        time.sleep(interval)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
