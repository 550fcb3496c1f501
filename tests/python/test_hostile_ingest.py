"""Hostile input cannot crash ingest (issue 24, ingest part), end to end over MQTT.

The poison message of the report — one JSON status object with 42,000 string
fields and 42,000 numeric fields (~0.9 MB, under the 1 MiB message limit) —
used to copy every string as a label onto every point (1.8e9 labels) until
the allocator aborted; redelivered after the restart, it aborted again. Now
it must land in bronze.dead_letters with the decode limit in its reason,
while the good messages around it land in Silver exactly once and the process
stays up with a bounded footprint.
"""

from __future__ import annotations

import json

from kafka_harness import wait_until
from mqtt_harness import Mosquitto, wait_log
from weir_harness import connect, fetch_rows, fetch_scalar

FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50", "--maintenance=false"]
TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        out = digits[n % 36] + out
        n //= 36
        if n == 0:
            return out


def poison(strings: int, numbers: int) -> bytes:
    fields = [f'"device_id":"evil","ts":{TS}']
    fields += [f'"s{base36(i)}":"on"' for i in range(strings)]
    fields += [f'"n{base36(i)}":42' for i in range(numbers)]
    return ("{" + ",".join(fields) + "}").encode()


def good(i: int) -> bytes:
    return json.dumps({"device_id": f"dev-{i % 3}", "ts": TS + i, "temp": 20 + i,
                       "hum": 50 + i, "site": "s1"}).encode()


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def test_poison_message_is_a_dead_letter_and_ingest_stays_up(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mqtt")
    try:
        server = weir_factory(tmp_path / "data", [
            "--mqtt-broker", broker.url("b1"), "--mqtt-subscribe", "plant/#",
            "--mqtt-client-id", "weir-hostile", *FAST])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        big = poison(42_000, 42_000)
        small = poison(2_000, 2_000)
        assert 900_000 < len(big) < 1 << 20
        msgs = [("plant/good", good(i), 1) for i in range(10)]
        msgs += [("plant/evil", big, 1)]
        msgs += [("plant/good", good(i), 1) for i in range(10, 20)]
        msgs += [("plant/evil", small, 1)]
        # A duplicate key: the last value wins, one point.
        msgs += [("plant/dup", b'{"device_id":"dup","ts":%d,"x":1,"x":2}' % TS, 1)]
        msgs += [("plant/good", good(i), 1) for i in range(20, 30)]
        broker.publish(msgs)

        conn = connect(server.uri)
        total = len(msgs)
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages") == total
                   or fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages"),
                   120, "every message committed to Bronze")
        assert server.proc.poll() is None, "weir exited"

        # The poison messages are dead letters naming the limit, payload kept.
        dead = fetch_rows(conn, "SELECT topic, stage, reason, payload "
                                "FROM bronze.dead_letters ORDER BY source_offset")
        assert [(d[0], d[1], d[3]) for d in dead] == [
            ("plant/evil", "decode", big), ("plant/evil", "decode", small)]
        assert "42000 labels" in dead[0][2], dead[0][2]
        assert "2000 labels" in dead[1][2], dead[1][2]
        for d in dead:
            assert "more than the 64 labels a point may carry" in d[2], d[2]
            assert "(decode limit labels_per_point)" in d[2], d[2]

        # The good messages: every point once, nothing of the poison.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, labels['site'] FROM silver.points "
                                "WHERE device_id LIKE 'dev-%' ORDER BY value, metric")
        expected = sorted([(f"dev-{i % 3}", m, float(v), "s1")
                           for i in range(30) for m, v in (("temp", 20 + i), ("hum", 50 + i))],
                          key=lambda r: (r[2], r[1]))
        assert rows == expected
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points WHERE device_id = 'evil'") == 0
        assert fetch_rows(conn, "SELECT metric, value FROM silver.points WHERE device_id = 'dup'") == [
            ("x", 2.0)]
        dupes = fetch_scalar(conn, "SELECT count(*) FROM (SELECT device_id, metric, ts, count(*) AS n "
                                   "FROM silver.points GROUP BY 1, 2, 3) WHERE n > 1")
        assert dupes == 0

        # Still up, still ingesting, and the poison did not balloon memory
        # (before the limits it grew by 430 MB every 3 s until the abort).
        broker.publish([("plant/good", good(30), 1)])
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM silver.points "
                                              "WHERE device_id LIKE 'dev-%'") == 62,
                   60, "a message after the poison")
        peak = peak_rss_mb(server.proc.pid)
        print(f"weir peak RSS {peak:.0f} MB")
        assert peak < 1500, f"peak RSS {peak:.0f} MB"
        assert server.proc.poll() is None, "weir exited"
        conn.close()
    finally:
        broker.stop()


def test_decode_limits_are_configurable(weir_factory, tmp_path, monkeypatch):
    """A WEIR_DECODE_* variable reaches the decoders of a running source."""
    monkeypatch.setenv("WEIR_DECODE_MAX_LABELS_PER_POINT", "1")
    broker = Mosquitto(tmp_path / "mqtt")
    try:
        server = weir_factory(tmp_path / "data", [
            "--mqtt-broker", broker.url("b1"), "--mqtt-subscribe", "plant/#",
            "--mqtt-client-id", "weir-limits", "--decode-max-points-per-message", "2", *FAST])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        broker.publish([
            ("plant/a", b'{"device_id":"ok","ts":%d,"x":1,"y":2,"site":"s"}' % TS, 1),
            ("plant/a", b'{"device_id":"labels","ts":%d,"x":1,"site":"s","line":"l"}' % TS, 1),
            ("plant/a", b'{"device_id":"points","ts":%d,"x":1,"y":2,"z":3}' % TS, 1),
        ])
        conn = connect(server.uri)
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages") == 3,
                   60, "three messages committed")
        reasons = [r[0] for r in fetch_rows(conn, "SELECT reason FROM bronze.dead_letters "
                                                  "ORDER BY source_offset")]
        assert len(reasons) == 2, reasons
        assert "more than the 1 labels a point may carry (decode limit labels_per_point)" in reasons[0]
        assert "more than 2 points" in reasons[1] and "points_per_message" in reasons[1]
        assert fetch_rows(conn, "SELECT DISTINCT device_id FROM silver.points") == [("ok",)]
        conn.close()
    finally:
        broker.stop()


def test_kafka_poison_message_does_not_crash_loop(broker, weir_factory, tmp_path):
    """The report's path: the poison message on a Kafka topic, then a restart
    that reads the partition again — a dead letter once, no crash, no
    duplicate, and the records after it land."""
    topic = broker.create_topic("hostile", 1)
    producer = broker.producer()
    big = poison(42_000, 42_000)
    for i in range(5):
        producer.produce(topic, value=good(i), partition=0)
    producer.produce(topic, value=big, partition=0)
    for i in range(5, 10):
        producer.produce(topic, value=good(i), partition=0)
    producer.flush(30)
    args = ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic, *FAST]
    data = tmp_path / "data"
    for run in range(2):
        server = weir_factory(data, args)
        conn = connect(server.uri)
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages") == 11,
                   120, f"run {run}: every record committed")
        assert server.proc.poll() is None, "weir exited"
        dead = fetch_rows(conn, "SELECT source_offset, reason FROM bronze.dead_letters")
        assert len(dead) == 1 and dead[0][0] == 5, dead
        assert "(decode limit labels_per_point)" in dead[0][1], dead[0][1]
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points WHERE device_id LIKE 'dev-%'") == 20
        conn.close()
        server.stop()
