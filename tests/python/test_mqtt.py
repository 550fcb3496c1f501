"""MQTT → Bronze/Silver end to end: a real Mosquitto, the real binary, ADBC queries.

Covers issue 4 (MQTT half): wildcard subscriptions and topic templates for
JSON / line protocol / plain-number payloads, dead letters with coordinates,
several brokers, the hot tier before the commit, a broker restart mid-stream,
messages published while Weir is down (persistent session), kill -9 with
redelivery and (device, metric, ts) dedupe, authentication and TLS.
"""

from __future__ import annotations

import subprocess
import threading
import time

from kafka_harness import wait_until
from mqtt_harness import Mosquitto, log_count, point, wait_log
from weir_harness import connect, fetch_rows, fetch_scalar, weir_binary

TEMPLATE = "plant/{site}/{device_id}/{metric}"
FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50", "--maintenance=false"]


def mqtt_args(*brokers: str, client_id: str = "weir-test", extra=()) -> list:
    args = []
    for b in brokers:
        args += ["--mqtt-broker", b]
    return [*args, "--mqtt-subscribe", "plant/+/+/+", "--mqtt-subscribe", "lines/#=1",
            "--mqtt-topic-template", TEMPLATE, "--mqtt-client-id", client_id, *extra]


def raw_count(conn, broker: str) -> int:
    return fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages "
                              f"WHERE source = 'mqtt' AND headers['broker'] = '{broker}'")


def silver_values(conn, broker: str):
    """(rows, distinct values) of JSON points (device dev*) from ``broker``."""
    return fetch_rows(conn, "SELECT count(*), count(DISTINCT value) FROM silver.points "
                            f"WHERE source = 'mqtt:{broker}/0' AND device_id LIKE 'dev%'")[0]


def test_formats_templates_dead_letters_and_two_brokers(weir_factory, tmp_path):
    b1 = Mosquitto(tmp_path / "b1")
    b2 = Mosquitto(tmp_path / "b2")
    try:
        server = weir_factory(tmp_path / "data", [
            *mqtt_args(b1.url("b1"), b2.url("b2")), *FAST])
        wait_log(server.stderr_path, "MQTT subscribed", count=2, proc=server.proc)
        msgs = [(f"plant/s1/pump{i % 3}/temperature", f"{20 + i}.5".encode(), 1) for i in range(30)]
        msgs += [("plant/s2/dev-j/pressure", point(i), 1) for i in range(10)]
        msgs += [("plant/s2/dev-s/status", b'{"ts": 1767225600000, "cpu": 3, "mem": 4, "mode": "run"}', 1)]
        msgs += [("lines/hall", b"env,device_id=lp1,unit=pct value=40 1767225600000000000", 1)]
        bad = [("plant/s1/pump0/temperature", b"hot", 1),
               ("plant/s1/dev-x/json", b'{"value": ', 1),
               ("lines/hall", b"\xff\xfe binary", 1),
               ("lines/hall", b"42", 1)]  # a number on a topic the template does not cover
        b1.publish(msgs + bad)
        b2.publish([("plant/s9/far/level", b"7", 1), ("plant/s9/far/level", b"8", 0)])
        conn = connect(server.uri)
        total = len(msgs) + len(bad)
        wait_until(lambda: raw_count(conn, "b1") == total or raw_count(conn, "b1"), 60, "b1 committed")
        wait_until(lambda: raw_count(conn, "b2") == 2 or raw_count(conn, "b2"), 60, "b2 committed")

        # Plain numbers: device and metric from the topic, {site} as a label.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, labels['site'], unit FROM silver.points "
                                "WHERE source = 'mqtt:b1/0' AND metric = 'temperature' ORDER BY value")
        assert rows == [(f"pump{i % 3}", "temperature", 20 + i + 0.5, "s1", None) for i in range(30)]
        # JSON with only a value: the template's metric; the payload's timestamp.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, labels['site'] "
                                "FROM silver.points WHERE metric = 'pressure' ORDER BY value")
        assert rows == [("dev-j", "pressure", float(i), "s2") for i in range(10)]
        assert fetch_scalar(conn, "SELECT min(ts) = TIMESTAMP '2026-01-01T00:00:00.003Z' FROM silver.points "
                                  "WHERE metric = 'pressure' AND value = 3") is True
        # JSON status: several metrics, string fields and topic fields as labels.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, labels['mode'], labels['site'] "
                                "FROM silver.points WHERE device_id = 'dev-s' ORDER BY metric")
        assert rows == [("dev-s", "cpu", 3.0, "run", "s2"), ("dev-s", "mem", 4.0, "run", "s2")]
        # Line protocol on a topic outside the template: the payload names the device.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, unit FROM silver.points "
                                "WHERE device_id = 'lp1'")
        assert rows == [("lp1", "env", 40.0, "pct")]
        # Second broker: its own source label; QoS 0 is delivered too.
        rows = fetch_rows(conn, "SELECT device_id, metric, value, labels['site'] FROM silver.points "
                                "WHERE source = 'mqtt:b2/0' ORDER BY value")
        assert rows == [("far", "level", 7.0, "s9"), ("far", "level", 8.0, "s9")]

        # Dead letters: reason and coordinates (topic, sequence, receive time), payload untouched.
        dead = fetch_rows(conn, "SELECT topic, source, source_partition, source_offset, stage, reason, "
                                "payload, received_at IS NOT NULL FROM bronze.dead_letters ORDER BY source_offset")
        assert [(d[0], d[6]) for d in dead] == [(t, p) for t, p, _ in bad]
        for topic, source, part, offset, stage, reason, payload, has_time in dead:
            assert (source, part, stage, has_time) == ("mqtt", 0, "decode", True)
            assert offset is not None and reason
        reasons = [d[5] for d in dead]
        assert "line protocol" in reasons[0]
        assert "JSON" in reasons[1]
        assert "UTF-8" in reasons[2]
        assert "topic template" in reasons[3]

        # Bronze: every message with broker, topic, QoS, packet id, receive time.
        rows = fetch_rows(conn, "SELECT topic, headers['qos'], headers['packet_id'] IS NOT NULL, "
                                "headers['dup'], content_type, source_offset FROM bronze.raw_messages "
                                "WHERE headers['broker'] = 'b1' ORDER BY source_offset")
        assert [r[0] for r in rows] == [t for t, _, _ in msgs + bad]
        assert {r[1:5] for r in rows} == {("1", True, "false", "auto")}
        assert [r[5] for r in rows] == list(range(total))
        qos = fetch_rows(conn, "SELECT headers['qos'] FROM bronze.raw_messages "
                               "WHERE headers['broker'] = 'b2' ORDER BY source_offset")
        assert qos == [("1",), ("0",)]
        # The sequence watermark of each broker is in the snapshot summaries.
        marks = fetch_rows(conn, "SELECT stream, partition, next_offset FROM weir_watermarks('bronze.raw_messages') "
                                 "WHERE source = 'mqtt' ORDER BY stream")
        assert marks == [("b1", 0, total), ("b2", 0, 2)]
        conn.close()
    finally:
        b1.stop()
        b2.stop()


def test_hot_tier_serves_rows_before_the_commit(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mq")
    try:
        data = tmp_path / "data"
        server = weir_factory(data, [*mqtt_args(broker.url("hot")), "--commit-interval-ms", "600000",
                                     "--hot-interval-ms", "50", "--maintenance=false"])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        conn = connect(server.uri)
        broker.publish([(f"plant/s/dev{i % 7}/t", point(i), 1) for i in range(300)])
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 300, 30,
                   "hot rows visible", interval=0.02)
        assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == 0
        assert fetch_scalar(conn, "SELECT count(DISTINCT value) FROM silver.points") == 300
        conn.close()
        # A clean stop commits (then acks): everything is in Iceberg after a restart.
        assert server.stop() == 0
        server = weir_factory(data, [*mqtt_args(broker.url("hot")), *FAST])
        conn = connect(server.uri)
        assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == 1
        assert silver_values(conn, "hot") == (300, 300)
        conn.close()
    finally:
        broker.stop()


def test_broker_restart_weir_restart_and_kill9_lose_and_repeat_nothing(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mq")
    data = tmp_path / "data"
    args = [*mqtt_args(broker.url("main")), *FAST]
    try:
        server = weir_factory(data, args)
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        conn = connect(server.uri)

        def publish(ids):
            broker.publish([(f"plant/s1/dev{i % 13}/temperature", point(i), 1) for i in ids])

        # 1. The broker restarts mid-stream: Weir reconnects, nothing is lost.
        publish(range(0, 300))
        broker.restart()
        publish(range(300, 600))
        wait_until(lambda: silver_values(conn, "main") == (600, 600) or silver_values(conn, "main"),
                   60, "600 points after the broker restart")
        assert log_count(server.stderr_path, "MQTT connection lost") >= 1

        # 2. Weir is down while messages are published (QoS 1, persistent session).
        conn.close()
        assert server.stop() == 0
        publish(range(600, 900))
        server = weir_factory(data, args)
        conn = connect(server.uri)
        wait_until(lambda: silver_values(conn, "main") == (900, 900) or silver_values(conn, "main"),
                   60, "messages published while Weir was down")

        # 3. Stopped (SIGTERM, then kill -9 twice) mid-stream: unacknowledged
        #    messages come back; none is lost and none becomes a second point.
        next_id = 900
        for round_ in range(3):
            stop = threading.Event()
            sent = []

            def feed(start=next_id):
                i = start
                while not stop.is_set():
                    publish(range(i, i + 50))
                    sent.append(i + 50)
                    i += 50
                    time.sleep(0.02)

            feeder = threading.Thread(target=feed)
            feeder.start()
            time.sleep(0.8 + 0.3 * round_)
            conn.close()
            if round_ == 0:
                # A clean stop under load: flush, commit, ack, drop the rest.
                assert server.stop() == 0
            else:
                server.proc.kill()
                server.proc.wait()
            time.sleep(0.3)
            stop.set()
            feeder.join()
            next_id = sent[-1]
            server = weir_factory(data, args)
            conn = connect(server.uri)
            wait_until(lambda: silver_values(conn, "main") == (next_id, next_id)
                       or silver_values(conn, "main"), 90, f"all {next_id} points after kill -9")
        dups = fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages WHERE headers['dup'] = 'true'")
        print(f"kill -9 rounds: {next_id} points exactly once; {dups} redelivered messages in bronze")

        # 4. A message repeated after a restart (same device, metric, ts) is
        #    recognised from the last commits and does not become a point.
        conn.close()
        assert server.stop() == 0
        server = weir_factory(data, args)
        conn = connect(server.uri)
        before = raw_count(conn, "main")
        publish([next_id - 1, next_id])
        wait_until(lambda: raw_count(conn, "main") == before + 2 or raw_count(conn, "main"), 60,
                   "repeat committed")
        assert silver_values(conn, "main") == (next_id + 1, next_id + 1)
        conn.close()
    finally:
        broker.stop()


def test_numbers_redelivered_after_a_broker_restart_are_not_repeated(weir_factory, tmp_path):
    """Plain numbers carry no timestamp (they get the receive time): a
    redelivery (DUP) after a reconnect keeps the first receive time, so the
    (device, metric, ts) dedupe still recognises it."""
    broker = Mosquitto(tmp_path / "mq")
    data = tmp_path / "data"
    args = [*mqtt_args(broker.url("num")), "--commit-interval-ms", "600000",
            "--hot-interval-ms", "50", "--maintenance=false"]
    try:
        server = weir_factory(data, args)
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        conn = connect(server.uri)
        broker.publish([(f"plant/s/n{i % 5}/level", str(i).encode(), 1) for i in range(50)])
        count = "SELECT count(*) FROM silver.points WHERE source = 'mqtt:num/0'"
        wait_until(lambda: fetch_scalar(conn, count) == 50, 30, "50 hot points")
        # Nothing is committed, so nothing is acknowledged: the restarted
        # broker redelivers all 50, before the marker published afterwards.
        broker.restart()
        wait_log(server.stderr_path, "MQTT connected", count=2, proc=server.proc)
        broker.publish([("plant/s/marker/level", b"1", 1)])
        wait_until(lambda: fetch_scalar(conn, count) == 51 or fetch_scalar(conn, count), 30, "marker")
        time.sleep(0.2)
        assert fetch_scalar(conn, count) == 51
        conn.close()
        assert server.stop() == 0
        server = weir_factory(data, args)
        conn = connect(server.uri)
        assert fetch_scalar(conn, count) == 51
        assert fetch_scalar(conn, "SELECT count(DISTINCT value) FROM silver.points WHERE device_id LIKE 'n%'") == 50
        # Bronze has both deliveries of each message.
        assert fetch_rows(conn, "SELECT headers['dup'], count(*) FROM bronze.raw_messages "
                                "GROUP BY 1 ORDER BY 1") == [("false", 51), ("true", 50)]
        conn.close()
    finally:
        broker.stop()


def run_ingest(tmp_path, *args, timeout=60):
    return subprocess.run([str(weir_binary()), "ingest", "--data-dir", str(tmp_path / "data"), *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def test_auth_failure_is_a_clear_error_and_tls_with_password_works(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mq", users={"weir": "s3cret", "device": "d3v"}, tls=True)
    try:
        # Wrong password: `weir ingest` stops with the broker's reason.
        done = run_ingest(tmp_path, *mqtt_args(broker.url("plain", "weir", "wrong")))
        assert done.returncode != 0
        assert "refused the connection" in done.stderr and "user name or password" in done.stderr, done.stderr
        # No credentials at all on a broker that requires them.
        done = run_ingest(tmp_path, *mqtt_args(broker.url("plain")))
        assert done.returncode != 0 and "refused the connection" in done.stderr, done.stderr
        # TLS with a CA that did not sign the broker's certificate.
        done = run_ingest(tmp_path, *mqtt_args(broker.url("tls", "weir", "s3cret", tls=True)),
                          "--mqtt-ca-file", str(broker.home / "other-ca.pem"))
        assert done.returncode != 0 and "TLS" in done.stderr, done.stderr

        # TLS + password (given by flags here, not in the URL).
        server = weir_factory(tmp_path / "data", [
            *mqtt_args(broker.url("tls", tls=True)), "--mqtt-username", "weir",
            "--mqtt-password", "s3cret", "--mqtt-ca-file", str(broker.home / "ca.pem"), *FAST])
        wait_log(server.stderr_path, "MQTT subscribed", proc=server.proc)
        broker.publish([(f"plant/s/dev{i}/t", point(i), 1) for i in range(20)], "device", "d3v")
        conn = connect(server.uri)
        wait_until(lambda: silver_values(conn, "tls") == (20, 20) or silver_values(conn, "tls"), 60,
                   "points over TLS")
        wait_until(lambda: raw_count(conn, "tls") == 20 or raw_count(conn, "tls"), 60, "raw committed")
        conn.close()
    finally:
        broker.stop()


def test_weir_ingest_runs_mqtt_from_weir_toml(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mq")
    try:
        config = tmp_path / "weir.toml"
        config.write_text(
            "[ingest]\n"
            f'mqtt-broker = "{broker.url("cfg")}"\n'
            'mqtt-subscribe = "plant/+/+/+"\n'
            f'mqtt-topic-template = "{TEMPLATE}"\n'
            'mqtt-client-id = "weir-cfg"\n'
            'mqtt-format = "number"\n'
            "commit-interval-ms = 60000\n")
        log = tmp_path / "ingest.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen([str(weir_binary()), "--config", str(config), "ingest",
                                     "--data-dir", str(tmp_path / "data")],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            try:
                wait_log(log, "MQTT subscribed", proc=proc)
                broker.publish([(f"plant/s/d{i}/rpm", str(i).encode(), 1) for i in range(10)]
                               + [("plant/s/d0/rpm", b"fast", 1)])
                # SIGTERM: flush, commit, then ack (the commit interval is far
                # away); what was not received yet stays queued for the session.
                proc.terminate()
                assert proc.wait(timeout=60) == 0, log.read_text()
            finally:
                if proc.poll() is None:
                    proc.kill()
        # The same session continues in `weir serve` (same config file).
        server = weir_factory(tmp_path / "data", ["--config", str(config), "--commit-interval-ms", "300"])
        conn = connect(server.uri)
        wait_until(lambda: raw_count(conn, "cfg") == 11 or raw_count(conn, "cfg"), 60, "all 11 messages")
        assert fetch_rows(conn, "SELECT count(*), sum(value) FROM silver.points "
                                "WHERE source = 'mqtt:cfg/0' AND metric = 'rpm'") == [(10, 45.0)]
        assert fetch_scalar(conn, "SELECT count(*) FROM bronze.dead_letters WHERE topic = 'plant/s/d0/rpm'") == 1
        conn.close()
    finally:
        broker.stop()
