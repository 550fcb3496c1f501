"""MQTT ingest benchmark: Mosquitto → Weir (Bronze + Silver, ack after commit).

Starts Mosquitto (tests/scripts/mosquitto.sh) and `weir serve` subscribed with
QoS 1, then publishes --messages JSON device-status messages (10 metrics each)
while Weir runs, and times from the first publish until every message is
committed (the raw table's MQTT watermark equals the number sent). Reports
messages/s and points/s end to end (publisher included: one paho-mqtt client).

Usage: python benches/mqtt_ingest.py [--messages N] [--weir PATH]
(default binary: target/release/weir, else $WEIR_BIN; say which in results).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import paho.mqtt.client as mqtt

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(r"weir: Flight SQL listening on 127\.0\.0\.1:(\d+)")
METRICS = ["temperature", "pressure", "flow", "level", "vibration",
           "current", "voltage", "speed", "torque", "humidity"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--weir", default=os.environ.get("WEIR_BIN") or str(ROOT / "target/release/weir"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="weir-mqtt-bench-"))
    script = ROOT / "tests/scripts/mosquitto.sh"
    port = free_port()
    subprocess.run(["bash", str(script), "up", str(work / "mq"), str(port)], check=True,
                   stdout=subprocess.DEVNULL)
    weir = None
    try:
        weir = subprocess.Popen(
            [args.weir, "serve", "--listen", "127.0.0.1:0", "--http-listen", "off", "--data-dir", str(work / "data"),
             "--maintenance=false", "--mqtt-broker", f"mqtt://127.0.0.1:{port}#bench",
             "--mqtt-subscribe", "plant/+/+", "--mqtt-topic-template", "plant/{site}/{device_id}",
             "--mqtt-format", "json", "--commit-interval-ms", "1000"],
            stdout=subprocess.PIPE, stderr=open(work / "weir.log", "wb"), text=True)
        for line in weir.stdout:
            m = READY.search(line)
            if m:
                flight = int(m.group(1))
                break
        log = work / "weir.log"
        while "MQTT subscribed" not in log.read_text(errors="replace"):
            time.sleep(0.02)
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-pub")
        client.max_inflight_messages_set(1000)
        client.connect("127.0.0.1", port)
        client.loop_start()
        base = 1_767_225_600_000
        started = time.monotonic()
        infos = []
        for i in range(args.messages):
            body = {"ts": base + i, **{m: (i * 7 + k) % 1000 / 10 for k, m in enumerate(METRICS)}}
            infos.append(client.publish(f"plant/s{i % 4}/dev{i % 500}", json.dumps(body), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
        published = time.monotonic() - started
        conn = flightsql.connect(f"grpc://127.0.0.1:{flight}", autocommit=True)
        sql = ("SELECT next_offset FROM weir_watermarks('bronze.raw_messages') "
               "WHERE source = 'mqtt' AND stream = 'bench'")
        while True:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall()
            if rows and rows[0][0] >= args.messages:
                break
            time.sleep(0.05)
        committed = time.monotonic() - started
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM silver.points WHERE source = 'mqtt:bench/0'")
            points = cur.fetchall()[0][0]
        conn.close()
        client.disconnect()
        client.loop_stop()
        assert points == args.messages * len(METRICS), points
        print(f"binary: {args.weir}")
        print(f"{args.messages} messages ({points} points): published in {published:.2f} s, "
              f"all committed after {committed:.2f} s")
        print(f"end to end: {args.messages / committed:,.0f} messages/s, {points / committed:,.0f} points/s")
    finally:
        if weir is not None:
            weir.terminate()
            weir.wait(timeout=60)
        subprocess.run(["bash", str(script), "down", str(work / "mq")], stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
