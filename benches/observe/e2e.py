"""Streaming ingest with metrics on (the Prometheus recorder, scraped every
second) vs off (``--http-listen off``: the facade is a no-op), alternating.

Usage (test venv, any build): WEIR_BIN=target/debug/weir \\
    ~/.cache/weir/test-venv/bin/python benches/observe/e2e.py [--messages N] [--reps R]

Each run: a fresh data dir, ``weir serve`` on a pre-loaded 4-partition topic
(JSON points, 1 s commits); seconds from the Flight ready line until the
raw table's watermarks reach the topic's end offsets.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "python"))
from kafka_harness import KafkaBroker, produce, watermarks  # noqa: E402
from weir_harness import WeirServer, connect  # noqa: E402


def run_once(broker, topic, ends, work: Path, metrics_on: bool) -> float:
    args = ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
            "--commit-interval-ms", "1000", "--maintenance=false",
            "--http-listen", "127.0.0.1:0" if metrics_on else "off"]
    server = WeirServer(work, args)
    started = time.monotonic()
    stop = threading.Event()
    if metrics_on:  # a Prometheus scraping every second
        port = next(int(l.split(":")[2].split()[0]) for l in server.stdout_tail if "HTTP listening" in l)
        def scraper():
            while not stop.wait(1.0):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
        threading.Thread(target=scraper, daemon=True).start()
    conn = connect(server.uri)
    try:
        while watermarks(conn, "bronze.raw_messages", topic) != ends:
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        stop.set()
        conn.close()
        server.discard()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        broker = KafkaBroker(tmp / "kafka")
        try:
            topic = broker.create_topic("obs-bench", 4)
            produce(broker.producer(), topic, 4, range(a.messages))
            ends = broker.end_offsets(topic, 4)
            times = {True: [], False: []}
            for rep in range(a.reps):
                for on in (False, True):
                    t = run_once(broker, topic, ends, tmp / f"d-{rep}-{on}", on)
                    times[on].append(t)
                    print(f"rep {rep} metrics {'on ' if on else 'off'}: {t:.2f} s "
                          f"({a.messages / t:,.0f} messages/s)", flush=True)
            for on in (False, True):
                med = statistics.median(times[on])
                print(f"median metrics {'on ' if on else 'off'}: {med:.2f} s ({a.messages / med:,.0f} messages/s)")
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
