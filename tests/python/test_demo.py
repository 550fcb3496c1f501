"""``weir serve --demo``: simulated devices continuously append to silver.points."""

from __future__ import annotations

import math
import time
from typing import Callable

import pytest

from weir_harness import WeirServer, connect, fetch_rows, fetch_scalar

POLL_PAUSE_S = 0.2  # keeps polling from hogging the (2-core) machine
COUNT_SQL = "SELECT count(*) FROM silver.points"


@pytest.fixture(scope="module")
def demo_conn(tmp_path_factory):
    server = WeirServer(tmp_path_factory.mktemp("weir-demo") / "data", ["--demo"])
    conn = connect(server.uri)
    yield conn
    conn.close()
    server.discard()


def poll_count(conn, done: Callable[[int], bool], timeout_s: float) -> int:
    """Query the point count until ``done(count)``; bounded by attempts and time."""
    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / POLL_PAUSE_S) + 1):
        count = fetch_scalar(conn, COUNT_SQL)
        if done(count) or time.monotonic() > deadline:
            return count
        time.sleep(POLL_PAUSE_S)
    return count


def test_demo_writes_points(demo_conn):
    count = poll_count(demo_conn, lambda n: n > 0, timeout_s=60)
    assert count > 0, "no demo rows in silver.points after 60 s"

    devices = fetch_scalar(demo_conn, "SELECT count(DISTINCT device_id) FROM silver.points")
    assert devices > 1

    values = [r[0] for r in fetch_rows(demo_conn, "SELECT value FROM silver.points")]
    assert len(values) >= count
    present = [v for v in values if v is not None]
    assert present, "demo rows carry no values"
    assert all(math.isfinite(v) for v in present)

    missing_keys = fetch_scalar(
        demo_conn,
        "SELECT count(*) FROM silver.points "
        "WHERE ts IS NULL OR device_id IS NULL OR metric IS NULL",
    )
    assert missing_keys == 0


def test_demo_keeps_committing(demo_conn):
    first = poll_count(demo_conn, lambda n: n > 0, timeout_s=60)
    assert first > 0
    later = poll_count(demo_conn, lambda n: n > first, timeout_s=30)
    assert later > first, "demo stopped committing new points"
