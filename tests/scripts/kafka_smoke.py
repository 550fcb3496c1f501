#!/usr/bin/env python3
"""Smoke check of tests/scripts/kafka.sh: install (timed), start a KRaft broker on a
free port, create a topic, commit a transaction of 1,000 messages and abort one of
ABORTED more, read it back with read_committed (exactly the 1,000) and with
read_uncommitted (the aborted ones are in the log), restart on the same data dir
(the committed data is still there), stop.

usage: kafka_smoke.py [DIR]     (needs confluent-kafka: run it with the test venv's python)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

SCRIPT = Path(__file__).resolve().parent / "kafka.sh"
COMMITTED, ABORTED = 1000, 250


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(what: str, *args: str) -> float:
    t = time.monotonic()
    subprocess.run(["bash", str(SCRIPT), *args], check=True, stdout=subprocess.PIPE)
    dt = time.monotonic() - t
    print(f"{what}: {dt:.2f} s", flush=True)
    return dt


def read_all(bootstrap: str, topic: str, isolation: str) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"smoke-{isolation}-{time.time()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": isolation})
    c.subscribe([topic])
    got, idle_since = [], None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                # done once assigned and at the end for 2 s
                if got and idle_since and time.monotonic() - idle_since > 2:
                    break
                idle_since = idle_since or time.monotonic()
                continue
            if m.error():
                continue  # partition EOF and the like
            idle_since = None
            got.append(m.value())
    finally:
        c.close()
    return got


def main() -> int:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="weir-kafka-"))
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    timed("install (lib present: warm; else cold)", "install")
    timed("install again (warm)", "install")
    timed("broker start (format + start + metadata ok)", "start", str(data), str(port))
    try:
        topic = "smoke"
        t = time.monotonic()
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
            f.result(timeout=30)
        print(f"create topic: {time.monotonic() - t:.2f} s")

        t = time.monotonic()
        p = Producer({"bootstrap.servers": bootstrap, "transactional.id": "weir-smoke",
                      "linger.ms": 5})
        p.init_transactions(30)
        p.begin_transaction()
        for i in range(COMMITTED):
            p.produce(topic, key=str(i).encode(), value=f"committed-{i}".encode())
        p.commit_transaction(30)
        p.begin_transaction()
        for i in range(ABORTED):
            p.produce(topic, key=str(i).encode(), value=f"aborted-{i}".encode())
        p.flush(30)              # the aborted records reach the log before the abort
        p.abort_transaction(30)
        print(f"produce {COMMITTED} committed + {ABORTED} aborted (transactional): "
              f"{time.monotonic() - t:.2f} s")

        t = time.monotonic()
        got = read_all(bootstrap, topic, "read_committed")
        print(f"read_committed: {len(got)} messages in {time.monotonic() - t:.2f} s")
        assert sorted(got) == sorted(f"committed-{i}".encode() for i in range(COMMITTED)), \
            f"read_committed got {len(got)} messages"
        raw = read_all(bootstrap, topic, "read_uncommitted")
        print(f"read_uncommitted: {len(raw)} messages")
        assert len(raw) == COMMITTED + ABORTED, len(raw)

        del p, admin  # no client left reconnecting while the broker is down
        timed("stop (SIGTERM, clean)", "stop", str(data))
        timed("restart on the same data dir", "start", str(data), str(port))
        again = read_all(bootstrap, topic, "read_committed")
        assert len(again) == COMMITTED, len(again)
        print(f"after restart read_committed: {len(again)} messages")
    finally:
        timed("stop", "stop", str(data))
    print("kafka smoke: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
