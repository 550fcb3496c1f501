"""Last-value index end to end with the real binary (issue 22 item 3):
`silver.points` declares `weir.last-value.keys`; the last point per
device/metric and the device listing come from the index (EXPLAIN shows
`LastValueIndexExec`) and equal the answers without it, after appends, a
DELETE, and with MQTT rows still in the hot tier (not committed yet).
`last_cache('silver.points')` returns whole rows (labels map included), and
`/metrics` reports the index size. SQL semantics are in
tests/slt/last_value.slt."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request

from mqtt_harness import Mosquitto, wait_log
from weir_harness import WeirServer, connect, execute, fetch_rows, fetch_table, http_port, weir_binary

LAST = ("SELECT device_id, metric, last(value, ts) AS value, max(ts) AS ts FROM silver.points "
        "GROUP BY device_id, metric ORDER BY device_id, metric")
DEVICES = "SELECT DISTINCT device_id FROM silver.points ORDER BY device_id"
DECLARE = ("ALTER TABLE silver.points SET TBLPROPERTIES "
           "('weir.last-value.keys' = 'device_id, metric', 'weir.last-value.time' = 'ts')")


def plan_text(conn, sql: str) -> str:
    return "\n".join(str(r[1]) for r in fetch_rows(conn, "EXPLAIN " + sql))


def both_ways(conn, plain, sql: str):
    """The answer with the index (checked to be used) and without."""
    assert "LastValueIndexExec" in plan_text(conn, sql)
    assert "LastValueIndexExec" not in plan_text(plain, sql)
    return fetch_table(conn, sql).to_pylist(), fetch_table(plain, sql).to_pylist()


def test_last_values_committed_appended_deleted(adbc_conn, weir_server):
    execute(adbc_conn, "INSERT INTO silver.points (ts, device_id, metric, value, labels) VALUES "
                       "('2026-03-01T00:00:10Z', 'd1', 'temp', 1.0, MAP {'site': 'a'}), "
                       "('2026-03-01T00:00:50Z', 'd1', 'temp', 3.0, MAP {'site': 'b'}), "
                       "('2026-03-01T00:01:00Z', 'd2', 'temp', 5.0, MAP {'site': 'a'}), "
                       "('2026-03-01T00:03:00Z', 'd2', 'hum', 50.0, MAP {'site': 'a'})")
    execute(adbc_conn, DECLARE)
    plain = connect(weir_server.uri)
    try:
        execute(plain, "SET weir.last_value_index = false")
        indexed, base = both_ways(adbc_conn, plain, LAST)
        assert indexed == base
        assert [(r["device_id"], r["metric"], r["value"]) for r in indexed] == [
            ("d1", "temp", 3.0), ("d2", "hum", 50.0), ("d2", "temp", 5.0)]

        rows = fetch_table(adbc_conn, "SELECT device_id, metric, value, labels FROM last_cache('silver.points') "
                                      "ORDER BY device_id, metric").to_pylist()
        assert rows[0]["device_id"] == "d1" and rows[0]["value"] == 3.0
        assert dict(rows[0]["labels"]) == {"site": "b"}

        # An append: read from the new file only, fresh at once.
        execute(adbc_conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                           "('2026-03-01T00:05:00Z', 'd1', 'temp', 7.0), ('2026-03-01T00:05:00Z', 'd3', 'temp', 1.0)")
        assert "appended" in plan_text(adbc_conn, LAST)
        indexed, base = both_ways(adbc_conn, plain, LAST)
        assert indexed == base and len(indexed) == 4
        assert both_ways(adbc_conn, plain, DEVICES)[0] == [{"device_id": d} for d in ("d1", "d2", "d3")]

        # A DELETE of the latest rows: the earlier ones are last again.
        execute(adbc_conn, "DELETE FROM silver.points WHERE ts >= '2026-03-01T00:05:00Z'")
        indexed, base = both_ways(adbc_conn, plain, LAST)
        assert indexed == base
        assert [(r["device_id"], r["metric"], r["value"]) for r in indexed] == [
            ("d1", "temp", 3.0), ("d2", "hum", 50.0), ("d2", "temp", 5.0)]
        assert both_ways(adbc_conn, plain, DEVICES)[0] == [{"device_id": d} for d in ("d1", "d2")]
    finally:
        plain.close()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


@contextlib.contextmanager
def mqtt_weir(tmp_path, commit_ms: int):
    """A Mosquitto broker and a Weir server subscribed to `plant/<device>/<metric>`,
    committing every `commit_ms`; both stopped afterwards."""
    broker = Mosquitto(tmp_path / "mq")
    server = None
    try:
        server = WeirServer(tmp_path / "data", [
            "--http-listen", "127.0.0.1:0", "--mqtt-broker", broker.url("plant"),
            "--mqtt-subscribe", "plant/+/+", "--mqtt-topic-template", "plant/{device_id}/{metric}",
            "--commit-interval-ms", str(commit_ms), "--hot-interval-ms", "50", "--maintenance=false"])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        yield broker, server
    finally:
        if server:
            server.discard()
        broker.stop()


def test_hot_rows_are_merged(tmp_path):
    """MQTT rows still in the hot tier (commits every 10 minutes) are in the
    last values at once, with and without the index."""
    with mqtt_weir(tmp_path, 600_000) as (broker, server):
        conn, plain = connect(server.uri), connect(server.uri)
        try:
            execute(plain, "SET weir.last_value_index = false")
            execute(conn, DECLARE)
            execute(conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                          "('2026-03-01T00:00:00Z', 'pump1', 'temperature', 1.0), "
                          "('2026-03-01T00:00:00Z', 'pump9', 'temperature', 9.0)")
            broker.publish([("plant/pump1/temperature", b"21.5", 1), ("plant/pump2/pressure", b"3.25", 1)])
            deadline = time.monotonic() + 30
            while True:
                rows = fetch_table(conn, LAST).to_pylist()
                if len(rows) == 3 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert [(r["device_id"], r["metric"], r["value"]) for r in rows] == [
                ("pump1", "temperature", 21.5), ("pump2", "pressure", 3.25), ("pump9", "temperature", 9.0)]
            plan = plan_text(conn, LAST)
            assert "LastValueIndexExec" in plan and "hot rows=2" in plan, plan
            assert fetch_table(plain, LAST).to_pylist() == rows
            assert "weir_last_value_series" in scrape(http_port(server))
        finally:
            conn.close()
            plain.close()


def commit_refreshes(port: int) -> float:
    """weir_last_value_refreshes_total{table="silver.points",trigger="commit"}."""
    for line in scrape(port).splitlines():
        if (line.startswith("weir_last_value_refreshes_total{") and 'table="silver.points"' in line
                and 'trigger="commit"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_index_follows_commits_in_the_background(tmp_path):
    """After a streaming commit the index is brought up to date in the
    background (`trigger="commit"`): the next query finds it current (no
    files to read) with the committed rows in it, none left hot."""
    with mqtt_weir(tmp_path, 200) as (broker, server):
        port = http_port(server)
        conn, plain = connect(server.uri), connect(server.uri)
        try:
            execute(plain, "SET weir.last_value_index = false")
            # silver.points declares its index by default; the first query builds it.
            execute(conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                          "('2026-03-01T00:00:00Z', 'pump9', 'temperature', 9.0)")
            assert [r["device_id"] for r in fetch_table(conn, LAST).to_pylist()] == ["pump9"]
            assert commit_refreshes(port) == 0
            broker.publish([("plant/pump1/temperature", b"21.5", 1)])
            deadline = time.monotonic() + 30
            while commit_refreshes(port) < 1:
                assert time.monotonic() < deadline, "no background refresh after the MQTT commit"
                time.sleep(0.05)
            plan = plan_text(conn, LAST)
            assert "index up to date" in plan and "hot rows=0" in plan and "series=2" in plan, plan
            rows = fetch_table(conn, LAST).to_pylist()
            assert [(r["device_id"], r["value"]) for r in rows] == [("pump1", 21.5), ("pump9", 9.0)]
            assert fetch_table(plain, LAST).to_pylist() == rows
        finally:
            conn.close()
            plain.close()


def test_index_over_the_memory_budget_is_not_kept(tmp_path):
    """With no memory for indexes the queries take the normal plan (same
    answers); last_cache computes its rows per query."""
    server = WeirServer(tmp_path / "data", ["--last-value-memory-mb", "0", "--maintenance=false"])
    try:
        conn = connect(server.uri)
        try:
            execute(conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                          "('2026-03-01T00:00:00Z', 'd1', 'temp', 1.0), ('2026-03-01T00:01:00Z', 'd1', 'temp', 2.0)")
            execute(conn, DECLARE)
            rows = fetch_table(conn, "SELECT device_id, value FROM last_cache('silver.points')").to_pylist()
            assert rows == [{"device_id": "d1", "value": 2.0}]
            plan = plan_text(conn, LAST)
            assert "LastValueIndexExec" not in plan, plan
            assert [(r["device_id"], r["value"]) for r in fetch_table(conn, LAST).to_pylist()] == [("d1", 2.0)]
            assert "over the memory budget" in server.logs()
        finally:
            conn.close()
    finally:
        server.discard()


def test_appends_around_a_compaction(adbc_conn, weir_server):
    """Appends, then `weir maintain compact` rewrites their files (a
    `replace` snapshot), then more appends: the index reads each append's
    files at its own snapshot and stays equal to the normal plan."""
    table = "public.lvc"
    last = (f"SELECT device_id, metric, last(value, ts) AS value, max(ts) AS ts FROM {table} "
            "GROUP BY device_id, metric ORDER BY device_id, metric")
    execute(adbc_conn, f"CREATE TABLE {table} (ts TIMESTAMPTZ, device_id VARCHAR, metric VARCHAR, value DOUBLE)")
    execute(adbc_conn, f"ALTER TABLE {table} SET TBLPROPERTIES ('weir.last-value.keys' = 'device_id, metric')")

    def append(minute: int, value: float) -> None:
        execute(adbc_conn, f"INSERT INTO {table} VALUES "
                           f"('2026-03-01T00:{minute:02d}:00Z', 'd{minute % 3}', 'temp', {value}), "
                           f"('2026-03-01T00:{minute:02d}:30Z', 'd9', 'hum', {value + 0.5})")

    plain = connect(weir_server.uri)
    try:
        execute(plain, "SET weir.last_value_index = false")
        for minute in range(4):
            append(minute, float(minute))
        assert fetch_table(adbc_conn, last).to_pylist() == fetch_table(plain, last).to_pylist()
        append(10, 10.0)
        append(11, 11.0)
        out = subprocess.run([str(weir_binary()), "maintain", "compact", table, "--data-dir",
                              str(weir_server.data_dir), "--json"], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        report = json.loads(out.stdout.strip().splitlines()[-1])
        assert next(r for r in report if r["table"] == table)["files_in"] > 0, report
        append(12, 12.0)
        plan = plan_text(adbc_conn, last)
        assert "index refreshed from 3 appended files" in plan, plan
        indexed = fetch_table(adbc_conn, last).to_pylist()
        assert indexed == fetch_table(plain, last).to_pylist()
        assert [(r["device_id"], r["value"]) for r in indexed] == [
            ("d0", 12.0), ("d1", 10.0), ("d2", 11.0), ("d9", 12.5)]
    finally:
        plain.close()
