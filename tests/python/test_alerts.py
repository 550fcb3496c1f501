"""Standing alert rules end to end (issue 22 item 4): a real Mosquitto feeding
Weir's MQTT source, rules made with SQL and declared in TOML, transitions in
``gold.alerts`` read over Flight SQL, notifications received on a real MQTT
topic, a real Kafka topic and an HTTP webhook, kill -9 while an alert fires.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from adbc_driver_manager import ProgrammingError

from kafka_harness import free_port, wait_until
from mqtt_harness import Mosquitto
from weir_harness import connect, execute, fetch_rows, fetch_scalar, http_port

FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50", "--maintenance=false",
        "--http-listen", "127.0.0.1:0"]


def mqtt_source(b: Mosquitto, client_id: str) -> list:
    return ["--mqtt-broker", b.url("plant"), "--mqtt-subscribe", "plant/+/+/+",
            "--mqtt-topic-template", "plant/{site}/{device_id}/{metric}", "--mqtt-client-id", client_id]


class Subscriber:
    """Collects (arrival time, JSON) of messages on one MQTT topic."""

    def __init__(self, port: int, topic: str):
        self.messages: list = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"sub-{uuid.uuid4().hex[:8]}", clean_session=True)
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (time.monotonic(), json.loads(m.payload)))
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        assert subscribed.wait(10), "subscription not acknowledged"

    def states(self):
        return [(m["series"], m["state"]) for _, m in self.messages]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


class Webhook:
    """An HTTP endpoint recording POSTed transitions; the first ``fail``
    requests are answered 503 (the sender must retry)."""

    def __init__(self, fail: int = 0):
        self.received: list = []
        self.fail = fail
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                if hook.fail > 0:
                    hook.fail -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                hook.received.append((self.headers["x-weir-transition"], json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def metric(server, name: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port(server)}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def transitions(conn, rule: str):
    return fetch_rows(conn, "SELECT alert_id, state, series, value FROM gold.alerts "
                            f"WHERE rule = '{rule}' ORDER BY at, seq")


def test_threshold_alert_fires_resolves_notifies_and_survives_kill9(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mqtt")
    hook = Webhook(fail=2)
    sub = Subscriber(broker.port, "alerts/boiler")
    data = tmp_path / "data"
    try:
        server = weir_factory(data, [*mqtt_source(broker, "weir-alerts"), *FAST])
        conn = connect(server.uri)
        execute(conn, f"""
            CREATE ALERT boiler_hot ON silver.points
              WHERE metric = 'temperature'
              BY device_id
              WHEN value > 80 CLEAR WHEN value < 75
              SEVERITY 'critical'
              NOTIFY 'mqtt://127.0.0.1:{broker.port}/alerts/boiler', '{hook.url}'
              MESSAGE 'boiler too hot'""")
        wait_until(lambda: metric(server, "weir_alert_rules") == 1, 30, "rule picked up")

        broker.publish([("plant/s1/boiler-1/temperature", b"70", 1),
                        ("plant/s1/boiler-2/temperature", b"99", 1),   # another metric below
                        ("plant/s1/boiler-2/pressure", b"500", 1)])
        t0 = time.monotonic()
        broker.publish([("plant/s1/boiler-1/temperature", b"85", 1)])
        wait_until(lambda: ("device_id=boiler-1", "ACTIVE") in sub.states(), 10, "ACTIVE on MQTT")
        latency_mqtt = next(t for t, m in sub.messages if m["series"] == "device_id=boiler-1") - t0
        wait_until(lambda: len(transitions(conn, "boiler_hot")) >= 2, 10, "ACTIVE in gold.alerts")
        latency_table = time.monotonic() - t0
        print(f"threshold crossing -> MQTT notification {latency_mqtt * 1000:.0f} ms, "
              f"-> visible in gold.alerts {latency_table * 1000:.0f} ms")
        assert latency_mqtt < 2.0 and latency_table < 2.0

        rows = transitions(conn, "boiler_hot")
        assert sorted((r[1], r[2], r[3]) for r in rows) == [
            ("ACTIVE", "device_id=boiler-1", 85.0), ("ACTIVE", "device_id=boiler-2", 99.0)]
        first = next(r[0] for r in rows if r[2] == "device_id=boiler-1")
        msg = next(m for _, m in sub.messages if m["series"] == "device_id=boiler-1")
        assert msg["alert_id"] == first and msg["severity"] == "critical" and msg["message"] == "boiler too hot"

        # Acknowledge over SQL (Flight): a row, once; a second time is refused.
        assert fetch_scalar(conn, f"ACKNOWLEDGE ALERT '{first}'") == 1
        with pytest.raises(ProgrammingError, match="ACKNOWLEDGED"):
            execute(conn, f"ACKNOWLEDGE ALERT '{first}'")
        with pytest.raises(ProgrammingError, match="not found"):
            execute(conn, "ACKNOWLEDGE ALERT 'no-such-alert'")
        # The acknowledgement is notified too, after the ACTIVE, with its
        # author (the Flight user, the row's actor) and time.
        wait_until(lambda: ("device_id=boiler-1", "ACKNOWLEDGED") in sub.states(), 10, "ACKNOWLEDGED on MQTT")
        ((actor, acked_at),) = fetch_rows(
            conn, f"SELECT actor, at FROM gold.alerts WHERE alert_id = '{first}' AND state = 'ACKNOWLEDGED'")
        assert actor == "anonymous"
        ack = next(m for _, m in sub.messages if m["state"] == "ACKNOWLEDGED")
        assert ack["alert_id"] == first and ack["actor"] == actor and ack["rule"] == "boiler_hot"
        assert ack["transition_id"] == f"{first}:ACKNOWLEDGED" and ack["severity"] == "critical"
        assert datetime.fromisoformat(ack["at"]) == acked_at
        assert ack["seq"] > msg["seq"] and msg["actor"] != actor

        # Hysteresis: 78 neither fires nor clears; 72 resolves.
        broker.publish([("plant/s1/boiler-1/temperature", b"78", 1)])
        broker.publish([("plant/s1/boiler-1/temperature", b"72", 1)])
        wait_until(lambda: ("device_id=boiler-1", "RESOLVED") in sub.states(), 10, "RESOLVED on MQTT")
        states = [r[1] for r in transitions(conn, "boiler_hot") if r[0] == first]
        assert states == ["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]
        assert [m["state"] for _, m in sub.messages if m["alert_id"] == first] == [
            "ACTIVE", "ACKNOWLEDGED", "RESOLVED"]
        # The webhook answered 503 twice: retried, then every transition
        # (boiler-2's ACTIVE; boiler-1's ACTIVE, ACKNOWLEDGED, RESOLVED) arrived once.
        wait_until(lambda: len(hook.received) >= 4, 20, "webhook deliveries")
        assert [b["state"] for _, b in hook.received if b["series"] == "device_id=boiler-1"] == [
            "ACTIVE", "ACKNOWLEDGED", "RESOLVED"]
        assert all(h == f"{b['alert_id']}:{b['state']}" for h, b in hook.received)

        # kill -9 while the second episode fires: after the restart the open
        # alert is known (no second ACTIVE) and resolves once.
        broker.publish([("plant/s1/boiler-1/temperature", b"90", 1)])
        wait_until(lambda: [r[1] for r in transitions(conn, "boiler_hot")].count("ACTIVE") == 3, 10,
                   "second episode ACTIVE")
        conn.close()
        server.proc.kill()
        server.proc.wait()
        broker.publish([("plant/s1/boiler-1/temperature", b"95", 1)])  # while Weir is down
        server = weir_factory(data, [*mqtt_source(broker, "weir-alerts"), *FAST])
        conn = connect(server.uri)
        wait_until(lambda: metric(server, "weir_alert_firing") == 2, 30, "open alerts recovered")
        broker.publish([("plant/s1/boiler-1/temperature", b"96", 1)])
        broker.publish([("plant/s1/boiler-1/temperature", b"60", 1)])
        wait_until(lambda: [r[1] for r in transitions(conn, "boiler_hot")].count("RESOLVED") == 2, 10,
                   "second episode RESOLVED")
        time.sleep(1)  # nothing else may arrive
        rows = transitions(conn, "boiler_hot")
        per_alert = {}
        for alert_id, state, series, _ in rows:
            per_alert.setdefault((series, alert_id), []).append(state)
        assert sorted(per_alert.values()) == [
            ["ACTIVE"], ["ACTIVE", "ACKNOWLEDGED", "RESOLVED"], ["ACTIVE", "RESOLVED"]], per_alert
        # gold.alerts is a table like any other.
        assert fetch_scalar(conn, "SELECT count(DISTINCT alert_id) FROM gold.alerts "
                                  "WHERE state = 'ACTIVE' AND severity = 'critical'") == 3
        assert metric(server, "weir_alert_transitions_total") >= 1
    finally:
        sub.close()
        hook.close()
        broker.stop()


def test_silent_device_raises_the_absence_alert(weir_factory, tmp_path):
    broker = Mosquitto(tmp_path / "mqtt")
    rules = tmp_path / "rules.toml"
    rules.write_text("""
[[alert]]
name = "device_silent"
on = "silver.points"
by = ["device_id"]
when = "absent(INTERVAL '2 seconds')"
severity = "warning"
""")
    try:
        server = weir_factory(tmp_path / "data", [*mqtt_source(broker, "weir-absent"), *FAST,
                                                  "--alert-rules", str(rules)])
        conn = connect(server.uri)
        # Declared in TOML: listed, not droppable over SQL.
        assert fetch_rows(conn, "SELECT name, declared FROM alert_rules()") == [("device_silent", True)]
        with pytest.raises(ProgrammingError, match="declared"):
            execute(conn, "DROP ALERT device_silent")
        wait_until(lambda: metric(server, "weir_alert_rules") == 1, 30, "rule loaded")

        stop = time.monotonic() + 5
        broker.publish([("plant/s1/quiet/v", b"1", 1)])
        while time.monotonic() < stop:   # `chatty` keeps talking, `quiet` said one thing
            broker.publish([("plant/s1/chatty/v", b"1", 1)])
            time.sleep(0.25)
        wait_until(lambda: [r[1:3] for r in transitions(conn, "device_silent")] ==
                   [("ACTIVE", "device_id=quiet")], 10, "absence alert")
        broker.publish([("plant/s1/quiet/v", b"2", 1)])
        wait_until(lambda: [r[1] for r in transitions(conn, "device_silent")] == ["ACTIVE", "RESOLVED"],
                   10, "absence resolved")
        # After a restart the rule knows the series from the table: `quiet`,
        # silent again, raises its alert without sending anything new.
        conn.close()
        server.stop()
        server = weir_factory(tmp_path / "data", [*mqtt_source(broker, "weir-absent"), *FAST,
                                                  "--alert-rules", str(rules)])
        conn = connect(server.uri)
        stop = time.monotonic() + 4
        while time.monotonic() < stop:
            broker.publish([("plant/s1/chatty/v", b"1", 1)])
            time.sleep(0.25)
        # Known from the table only, its silence is confirmed there first,
        # allowing for other writers' commits (interval + commit + 10 s).
        wait_until(lambda: [r[1] for r in transitions(conn, "device_silent") if r[2] == "device_id=quiet"][2:] ==
                   ["ACTIVE"], 25, "absence alert after the restart")
    finally:
        broker.stop()


def test_kafka_notifications_and_dropping_a_rule(weir_factory, tmp_path, broker):
    from confluent_kafka import Consumer
    topic = broker.create_topic("alerts", 1)
    server = weir_factory(tmp_path / "data", ["--demo", "--demo-devices", "2", "--demo-interval-ms", "200",
                                              *FAST])
    conn = connect(server.uri)
    execute(conn, f"""CREATE ALERT warm ON silver.points WHERE metric = 'temperature'
                      BY device_id, metric WHEN value > -100 SEVERITY 'info'
                      NOTIFY 'kafka://{broker.bootstrap}/{topic}'""")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"g-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and m.error() is None:
                got.append((m.key().decode(), json.loads(m.value())))
        assert sorted(b["series"] for _, b in got) == [
            "device_id=sim-0001,metric=temperature", "device_id=sim-0002,metric=temperature"]
        assert all(k == b["alert_id"] and b["state"] == "ACTIVE" for k, b in got)
        # Rule and definition listed; a bad rule is refused with the reason.
        (definition,) = fetch_rows(conn, "SELECT definition FROM alert_rules() WHERE name = 'warm'")[0]
        assert definition.startswith("CREATE ALERT warm ON silver.points WHERE metric = 'temperature'")
        with pytest.raises(ProgrammingError, match="no_such_column"):
            execute(conn, "CREATE ALERT bad ON silver.points WHEN no_such_column > 1")
        with pytest.raises(ProgrammingError, match="already exists"):
            execute(conn, "CREATE ALERT warm ON silver.points WHEN value > 1")
        # Dropping the rule resolves its open alerts.
        execute(conn, "DROP ALERT warm")
        wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM gold.alerts WHERE rule = 'warm' "
                                              "AND state = 'RESOLVED' AND message = 'rule dropped'") == 2,
                   15, "open alerts resolved by the drop")
        assert fetch_rows(conn, "SELECT name FROM alert_rules()") == []
    finally:
        consumer.close()


def test_rules_from_the_postgresql_alert_registry(weir_factory, tmp_path):
    """The gateway schema's alert_rules (sql/postgres/alerts.sql) are rules;
    transitions land in gold.alerts and, with the same id, in alert_history."""
    from pg_harness import REGISTRY_DDL, PostgresServer
    alerts_ddl = (Path(__file__).resolve().parents[2] / "sql" / "postgres" / "alerts.sql").read_text()
    pg = PostgresServer()
    broker = Mosquitto(tmp_path / "mqtt")
    try:
        pg.psql(REGISTRY_DDL + alerts_ddl + """
            INSERT INTO devices (name, protocol, endpoint) VALUES ('boiler-9', 'Mqtt', 'tcp://x');
            INSERT INTO tags (device_id, name, address, data_type)
              SELECT id, 'temperature', 't', 'Double' FROM devices WHERE name = 'boiler-9';
            INSERT INTO alert_rules (name, device_id, tag_id, condition_expression, op, threshold_value, level)
              SELECT 'Boiler 9 hot', d.id, t.id, 'value', 'GT', 80, 'CRITICAL'
              FROM devices d JOIN tags t ON t.device_id = d.id;
            INSERT INTO alert_rules (name, condition_expression, op, threshold_low, threshold_high, level, enabled)
              VALUES ('off', 'value', 'BETWEEN', 1, 2, 'INFO', false);""")
        server = weir_factory(tmp_path / "data", [*mqtt_source(broker, "weir-pgrules"), *FAST,
                                                  "--alert-rules", pg.url])
        conn = connect(server.uri)
        wait_until(lambda: metric(server, "weir_alert_rules") == 1, 30, "registry rule loaded")
        (name, declared, definition) = fetch_rows(conn, "SELECT name, declared, definition FROM alert_rules()")[0]
        assert (name, declared) == ("boiler_9_hot", True)
        assert "WHERE device_id = 'boiler-9' AND metric = 'temperature'" in definition
        assert "WHEN (value) > 80" in definition and "SEVERITY 'critical'" in definition

        broker.publish([("plant/s1/boiler-9/temperature", b"90", 1),
                        ("plant/s1/boiler-8/temperature", b"99", 1)])   # another device: no rule
        wait_until(lambda: pg.psql("SELECT count(*) FROM alert_history")[0][0] == "1", 15, "alert_history row")
        (alert_id,) = fetch_rows(conn, "SELECT alert_id FROM gold.alerts WHERE state = 'ACTIVE'")[0]
        row = pg.psql("SELECT h.id, h.status, h.triggered_value, h.threshold_value, h.level, r.name "
                      "FROM alert_history h JOIN alert_rules r ON r.id = h.rule_id")[0]
        assert row == [alert_id, "ACTIVE", "90", "80", "CRITICAL", "Boiler 9 hot"]
        assert pg.psql("SELECT acknowledged_at IS NULL, acknowledged_by IS NULL FROM alert_history") == [
            ["t", "t"]]
        # An acknowledgement over Flight SQL shows in alert_history: status,
        # who (the row's actor) and when (the row's time).
        assert fetch_scalar(conn, f"ACKNOWLEDGE ALERT '{alert_id}'") == 1
        (actor, acked_us) = fetch_rows(
            conn, "SELECT actor, CAST(at AS BIGINT) FROM gold.alerts "
                  "WHERE state = 'ACKNOWLEDGED'")[0]
        wait_until(lambda: pg.psql("SELECT status FROM alert_history")[0][0] == "ACKNOWLEDGED", 15,
                   "alert_history acknowledged")
        assert pg.psql("SELECT acknowledged_by, "
                       "(EXTRACT(EPOCH FROM acknowledged_at) * 1000000)::bigint, "
                       "acknowledged_at >= fired_at, resolved_at IS NULL FROM alert_history") == [
            [actor, str(acked_us), "t", "t"]]
        assert actor == "anonymous"
        broker.publish([("plant/s1/boiler-9/temperature", b"70", 1)])
        wait_until(lambda: pg.psql("SELECT status FROM alert_history")[0][0] == "RESOLVED", 15,
                   "alert_history resolved")
        assert pg.psql("SELECT resolved_at >= fired_at AND duration IS NOT NULL FROM alert_history") == [["t"]]
        # Resolving keeps the acknowledgement.
        assert pg.psql("SELECT acknowledged_by, (EXTRACT(EPOCH FROM acknowledged_at) * 1000000)::bigint "
                       "FROM alert_history") == [[actor, str(acked_us)]]
    finally:
        broker.stop()
        pg.destroy()


def test_rules_on_a_user_table_fed_by_insert_and_bulk_ingest(weir_factory, tmp_path):
    """`--alerts true` on a server without sources: rows written by INSERT and
    by ADBC bulk ingestion go through the rules of their table."""
    import pyarrow as pa
    server = weir_factory(tmp_path / "data", [*FAST, "--alerts", "true"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.tank (ts TIMESTAMP, tank VARCHAR, level DOUBLE)")
    execute(conn, "CREATE ALERT low_level ON tank BY tank WHEN level < 10 CLEAR WHEN level > 20")
    wait_until(lambda: metric(server, "weir_alert_rules") == 1, 30, "rule picked up")
    execute(conn, "INSERT INTO public.tank VALUES (now(), 't1', 50), (now(), 't2', 5)")
    wait_until(lambda: [r[1:3] for r in transitions(conn, "low_level")] == [("ACTIVE", "tank=t2")], 10,
               "ACTIVE from INSERT")
    with conn.cursor() as cur:
        cur.adbc_ingest("tank", pa.table({
            "ts": pa.array([time.time_ns() // 1000] * 2, pa.timestamp("us")),
            "tank": ["t2", "t1"], "level": [25.0, 3.0]}), mode="append", db_schema_name="public")
    wait_until(lambda: sorted(r[1:3] for r in transitions(conn, "low_level")) ==
               [("ACTIVE", "tank=t1"), ("ACTIVE", "tank=t2"), ("RESOLVED", "tank=t2")], 10,
               "transitions from bulk ingestion")
