"""Fixtures for the Weir end-to-end tests (see weir_harness.py for the process handling)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from flightsql_client import FlightSqlClient
from weir_harness import LIVE_SERVERS, WeirServer, connect
from kafka_harness import KafkaBroker

# Every weir process of the tests serves /metrics on a free port (the
# defaults, 9090/9091, would collide between processes and test runs).
os.environ.setdefault("WEIR_HTTP_LISTEN", "127.0.0.1:0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in list(LIVE_SERVERS):
            report.sections.append((f"weir server {server.data_dir}", server.logs()))


@pytest.fixture
def weir_factory(tmp_path: Path) -> Iterator[Callable[..., WeirServer]]:
    """Start servers on demand (e.g. to restart on the same data dir); all are
    stopped at teardown.  ``start(data_dir=None, *extra_args)``."""
    started: list[WeirServer] = []

    def start(data_dir: Path | None = None, extra_args: Sequence[str] = ()) -> WeirServer:
        server = WeirServer(data_dir or tmp_path / "data", extra_args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.discard()


@pytest.fixture(scope="module")
def weir_server(tmp_path_factory) -> Iterator[WeirServer]:
    """A fresh server (no demo data) shared by the tests of one module."""
    server = WeirServer(tmp_path_factory.mktemp("weir") / "data")
    yield server
    server.discard()


@pytest.fixture(scope="module")
def adbc_conn(weir_server: WeirServer):
    conn = connect(weir_server.uri)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def flight_sql_client(weir_server: WeirServer) -> Iterator[FlightSqlClient]:
    client = FlightSqlClient(weir_server.uri)
    yield client
    client.close()


@pytest.fixture(scope="session")
def broker(tmp_path_factory) -> Iterator[KafkaBroker]:
    """A Kafka-protocol broker on 127.0.0.1 (tests/scripts/kafka-broker.sh)."""
    b = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    yield b
    b.stop()


@pytest.fixture
def pyarrow_cancel_quirk():
    """pyarrow turns any CANCELLED status it receives into a simulated SIGINT
    in the main thread (SignalStopHandler.__exit__ calls PyErr_SetInterrupt),
    i.e. a KeyboardInterrupt far from the call; record it instead."""
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    yield received
    signal.signal(signal.SIGINT, previous)
