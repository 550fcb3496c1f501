"""Observability end to end: the real binary with ``--http-listen 127.0.0.1:0``,
a real Kafka broker and ADBC queries; ``/metrics`` parsed with
``prometheus_client.parser`` (issue 7: a scrape asserts the ingest counters move).
"""

from __future__ import annotations

import contextlib
import json
import signal
import urllib.error
import urllib.request
from typing import Dict, FrozenSet, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kafka_harness import (POISON, KafkaBroker, WeirIngest, free_port, point_message, produce,
                           wait_until)
from weir_harness import HTTP_RE, WeirServer, connect, fetch_scalar, http_port

FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50"]

Samples = Dict[Tuple[str, FrozenSet[Tuple[str, str]]], float]


def get(port: int, path: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(port: int) -> Samples:
    status, text = get(port, "/metrics")
    assert status == 200
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and want <= l)


def series(samples: Samples, name: str, **labels: str) -> Dict[FrozenSet, float]:
    want = set(labels.items())
    return {l: v for (n, l), v in samples.items() if n == name and want <= l}


def test_ingest_commit_and_query_metrics_move(broker: KafkaBroker, weir_factory, tmp_path):
    topic = broker.create_topic("obs", 2)
    server = weir_factory(tmp_path / "data", [
        "--http-listen", "127.0.0.1:0", "--kafka-brokers", broker.bootstrap,
        "--kafka-topics", topic, *FAST])
    port = http_port(server)
    assert get(port, "/health") == (200, "ok\n")
    wait_until(lambda: get(port, "/ready")[0] == 200 or get(port, "/ready"), 60, "/ready")

    before = scrape(port)
    # 600 messages round-robin over both partitions, every 50th malformed.
    ids = range(600)
    counts = produce(broker.producer(), topic, 2, ids, poison_every=50)
    sent_bytes = sum(len(POISON[(i // 50) % len(POISON)]) if i % 50 == 49 else len(point_message(i))
                     for i in ids)
    assert counts == {"good": 588, "bad": 12}

    def moved():
        after = scrape(port)
        delta = {name: total(after, name, stream=topic) - total(before, name, stream=topic)
                 for name in ("weir_ingest_messages_total", "weir_ingest_points_total",
                              "weir_ingest_dead_letters_total", "weir_ingest_bytes_total")}
        offsets = series(after, "weir_ingest_committed_offset", stream=topic)
        return (delta == {"weir_ingest_messages_total": 600, "weir_ingest_points_total": 588,
                          "weir_ingest_dead_letters_total": 12, "weir_ingest_bytes_total": sent_bytes}
                and sorted(offsets.values()) == [300, 300]) or (delta, offsets)

    wait_until(moved, 60, "ingest counters and committed offsets")
    ends = broker.end_offsets(topic, 2)
    assert ends == {0: 300, 1: 300}

    after = scrape(port)
    # Per partition, with source/stream/partition labels.
    for p in ("0", "1"):
        assert total(after, "weir_ingest_messages_total", source="kafka", stream=topic, partition=p) \
            - total(before, "weir_ingest_messages_total", source="kafka", stream=topic, partition=p) == 300
    # Every table of the flush committed: counts, rows and a latency histogram.
    for table in ("silver.points", "bronze.dead_letters", "bronze.raw_messages"):
        assert total(after, "weir_commits_total", table=table, operation="append", outcome="ok") > 0
        assert total(after, "weir_commit_duration_seconds_count", table=table, operation="append") > 0
        assert total(after, "weir_commit_duration_seconds_bucket", table=table, le="+Inf") \
            == total(after, "weir_commit_duration_seconds_count", table=table)
    assert total(after, "weir_commit_rows_total", table="bronze.raw_messages") \
        - total(before, "weir_commit_rows_total", table="bronze.raw_messages") == 600
    assert total(after, "weir_commit_rows_total", table="silver.points") \
        - total(before, "weir_commit_rows_total", table="silver.points") == 588
    assert total(after, "weir_ingest_flushes_total", source="kafka", outcome="committed") > 0
    assert total(after, "weir_ingest_flush_duration_seconds_count", source="kafka") > 0
    assert total(after, "weir_table_rows", table="bronze.raw_messages") >= 600
    assert total(after, "weir_table_data_files", table="silver.points") > 0
    assert total(after, "weir_table_snapshots", table="silver.points") > 0
    # Once everything is committed: no lag in messages, nothing left hot.
    wait_until(lambda: (series(scrape(port), "weir_ingest_lag_messages", stream=topic)
                        and all(v == 0 for v in series(scrape(port), "weir_ingest_lag_messages",
                                                       stream=topic).values()))
               or series(scrape(port), "weir_ingest_lag_messages", stream=topic),
               30, "kafka lag 0")
    wait_until(lambda: total(scrape(port), "weir_hot_rows", table="silver.points") == 0
               or total(scrape(port), "weir_hot_rows", table="silver.points"), 30, "hot tier empty")
    lag = series(after, "weir_ingest_lag_seconds", stream=topic)
    assert len(lag) == 2 and all(v >= 0 for v in lag.values())

    # Queries: latency by kind, errors by gRPC status code.
    conn = connect(server.uri)
    q0 = scrape(port)
    assert fetch_scalar(conn, f"SELECT count(*) FROM bronze.raw_messages WHERE topic = '{topic}'") == 600
    with pytest.raises(Exception, match="NOT_FOUND"):
        fetch_scalar(conn, "SELECT * FROM no_such_table")
    with pytest.raises(Exception, match="INVALID_ARGUMENT"):
        fetch_scalar(conn, "SELEC 1")
    conn.close()
    q1 = scrape(port)
    assert total(q1, "weir_query_errors_total", kind="query", code="NOT_FOUND") \
        - total(q0, "weir_query_errors_total", kind="query", code="NOT_FOUND") == 1
    assert total(q1, "weir_query_errors_total", kind="query", code="INVALID_ARGUMENT") \
        - total(q0, "weir_query_errors_total", kind="query", code="INVALID_ARGUMENT") == 1
    assert total(q1, "weir_query_duration_seconds_count", kind="query", method="DoGet") \
        - total(q0, "weir_query_duration_seconds_count", kind="query", method="DoGet") == 1
    assert total(q1, "weir_flight_requests_total", kind="query", method="DoGet", code="OK") \
        - total(q0, "weir_flight_requests_total", kind="query", method="DoGet", code="OK") == 1
    assert total(q1, "weir_flight_requests_in_flight") == 0


def test_ready_waits_for_sources_and_turns_503_at_shutdown(weir_factory, tmp_path):
    # A Kafka source whose broker never answers: alive, serving SQL, not ready.
    nowhere = f"127.0.0.1:{free_port()}"
    server = weir_factory(tmp_path / "a", ["--http-listen", "127.0.0.1:0",
                                           "--kafka-brokers", nowhere, "--kafka-topics", "t"])
    port = http_port(server)
    assert get(port, "/health") == (200, "ok\n")
    status, body = get(port, "/ready")
    assert status == 503 and "kafka is waiting for its partition assignment" in body, body
    conn = connect(server.uri)
    assert fetch_scalar(conn, "SELECT 1") == 1
    conn.close()
    server.discard()

    # A source that stopped (an empty Modbus registry is a fatal error).
    registry = tmp_path / "empty.toml"
    registry.write_text("")
    server = weir_factory(tmp_path / "c", ["--http-listen", "127.0.0.1:0",
                                           "--modbus-registry", str(registry)])
    port = http_port(server)
    wait_until(lambda: get(port, "/ready") == (503, "not ready: sources: the modbus source stopped (see the log)\n")
               or get(port, "/ready"), 30, "/ready names the stopped source")
    server.discard()

    # Ready without sources; during the ordered shutdown (held open here by
    # a result stream still being read) /ready answers 503 again.
    server = weir_factory(tmp_path / "b", ["--http-listen", "127.0.0.1:0"])
    port = http_port(server)
    assert get(port, "/ready") == (200, "ready\n")
    conn = connect(server.uri)
    cur = conn.cursor()
    cur.execute("SELECT * FROM range(1000000000)")
    reader = cur.fetch_record_batch()
    assert reader.read_next_batch().num_rows > 0
    server.proc.send_signal(signal.SIGTERM)
    wait_until(lambda: get(port, "/ready") == (503, "not ready: shutting down\n") or get(port, "/ready"),
               30, "/ready 503 while shutting down")
    assert get(port, "/health") == (200, "ok\n")
    assert server.proc.poll() is None, "the open stream holds the shutdown"
    reader.close()  # the stream ends: the shutdown completes
    assert server.stop() == 0
    for handle in (cur, conn):  # their close calls reach a stopped server
        with contextlib.suppress(Exception):
            handle.close()


def test_json_logs_carry_span_fields(weir_factory, tmp_path):
    server = weir_factory(tmp_path / "data", [
        "--http-listen", "off", "--log-format", "json", "--log", "info,weir_catalog=debug",
        "--demo", "--demo-devices", "2", "--demo-interval-ms", "100"])
    assert not any(HTTP_RE.match(line) for line in server.stdout_tail), "--http-listen off"
    conn = connect(server.uri)
    wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM silver.points") > 0, 30, "demo rows")
    conn.close()
    assert server.stop() == 0
    lines = [line for line in server.stderr_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"timestamp", "level", "fields", "target"} <= e.keys() for e in events)
    commits = [e for e in events if e["fields"].get("message") == "append committed"]
    assert commits, lines[-20:]
    span = commits[0]["span"]
    assert span["name"] == "commit" and span["table"] == "silver.points" and span["operation"] == "append"
    assert span["rows"] > 0 and commits[0]["fields"]["seconds"] >= 0


def test_weir_ingest_serves_metrics_and_readiness(broker: KafkaBroker, tmp_path):
    topic = broker.create_topic("obs-ingest", 1)
    counts = produce(broker.producer(), topic, 1, range(100))
    writer = WeirIngest(tmp_path / "data", broker, topic,
                        ["--http-listen", "127.0.0.1:0", *FAST])
    try:
        port = next(int(m.group(1)) for m in map(HTTP_RE.match, writer.tail) if m)
        wait_until(lambda: get(port, "/ready")[0] == 200 or get(port, "/ready"), 60, "/ready")
        wait_until(lambda: (total(scrape(port), "weir_ingest_messages_total", stream=topic) == 100
                            and total(scrape(port), "weir_ingest_committed_offset", stream=topic) == 100)
                   or total(scrape(port), "weir_ingest_messages_total", stream=topic), 60, "ingested")
        assert total(scrape(port), "weir_ingest_points_total", stream=topic) == counts["good"] == 100
    finally:
        assert writer.stop() == 0
