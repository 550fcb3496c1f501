"""A real Kafka-protocol broker on 127.0.0.1 and ``weir ingest`` processes for the tests."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Dict, Optional, Sequence

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from weir_harness import REPO_ROOT, fetch_rows, weir_binary

# Apache Kafka 4 (KRaft, from Maven Central) by default; WEIR_TEST_KAFKA=emulator
# runs the Kafka-protocol emulator the tests used before (kafka-broker.sh).
APACHE_SCRIPT = REPO_ROOT / "tests" / "scripts" / "kafka.sh"
EMULATOR_SCRIPT = REPO_ROOT / "tests" / "scripts" / "kafka-broker.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class KafkaBroker:
    """A broker on a free port with fresh data: Apache Kafka (tests/scripts/kafka.sh)
    unless WEIR_TEST_KAFKA=emulator."""

    def __init__(self, home: Path):
        self.port = free_port()
        self.home = Path(home)
        self.apache = os.environ.get("WEIR_TEST_KAFKA", "apache") != "emulator"
        if self.apache:
            self.start()
        else:
            self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_HOME": str(home)}
            subprocess.run(["bash", str(EMULATOR_SCRIPT), "up"], env=self.env, check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self._topics = 0

    def _run(self, args, check: bool) -> None:
        out = subprocess.run(["bash", str(APACHE_SCRIPT), *args], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"kafka.sh {' '.join(args)} failed:\n{out.stdout}")

    def start(self) -> None:
        """Starts the broker (again: same port, same log dir, data kept)."""
        self._run(["start", str(self.home / "data"), str(self.port)], check=True)

    def stop(self, kill: bool = False) -> None:
        """Clean shutdown (SIGTERM); ``kill``: SIGKILL at once."""
        if self.apache:
            self._run(["stop", str(self.home / "data"), *(["--kill"] if kill else [])], check=False)
        else:
            subprocess.run(["bash", str(EMULATOR_SCRIPT), "down"], env=self.env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def create_topic(self, prefix: str, partitions: int,
                     config: Optional[Dict[str, str]] = None) -> str:
        self._topics += 1
        name = f"{prefix}-{self._topics}-{os.getpid()}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                                 config=dict(config or {}))]).values():
            fut.result(timeout=30)
        return name

    def producer(self) -> Producer:
        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5,
                         "enable.idempotence": True})

    def end_offsets(self, topic: str, partitions: int) -> Dict[int, int]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "weir-test-probe"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    for p in range(partitions)}
        finally:
            c.close()


def point_message(i: int) -> bytes:
    """Message ``i``: a JSON point whose value is ``i`` (unique)."""
    return json.dumps({"device_id": f"dev{i % 97}", "metric": "temperature",
                       "value": i, "ts": 1_767_225_600_000 + i}).encode()


POISON = [b"{not json", b'{"device_id": "d", "metric": "m", "value": "hot", "ts": 1}',
          b"\xff\xfe binary", b"cpu,host=a value=oops 1"]


def produce(producer: Producer, topic: str, partitions: int, ids: Sequence[int],
            poison_every: int = 0) -> Dict[str, int]:
    """Produce messages ``ids`` round-robin over partitions; every
    ``poison_every``-th id is a malformed message instead.  Returns counts."""
    good = bad = 0
    for n, i in enumerate(ids):
        if poison_every and i % poison_every == poison_every - 1:
            value = POISON[(i // poison_every) % len(POISON)]
            bad += 1
        else:
            value = point_message(i)
            good += 1
        producer.produce(topic, value=value, key=f"dev{i % 97}".encode(),
                         partition=i % partitions, headers={"seq": str(i)})
        if n % 5000 == 0:
            producer.poll(0)
    producer.flush(30)
    return {"good": good, "bad": bad}


class WeirIngest:
    """One ``weir ingest`` process (waits for its readiness line)."""

    def __init__(self, data_dir: Path, broker: KafkaBroker, topics: str,
                 extra_args: Sequence[str] = (), log_dir: Optional[Path] = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_dir = log_dir or self.data_dir.parent
        self.stderr_path = log_dir / f"ingest-{time.monotonic_ns()}.log"
        self._stderr = open(self.stderr_path, "wb")
        self.tail: deque = deque(maxlen=100)
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.hot_addr: Optional[str] = None  # `--hot-listen`: the bound address
        self.http_addr: Optional[str] = None  # /metrics, /health, /ready
        cmd = [str(weir_binary()), "ingest", "--data-dir", str(self.data_dir),
               "--kafka-brokers", broker.bootstrap, "--kafka-topics", topics, *extra_args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_for("weir: ingesting from", 120)

    def _drain(self) -> None:
        for line in self.proc.stdout:
            if line.startswith("weir: hot tier served on "):
                self.hot_addr = line.rsplit(" ", 1)[1].strip()
            if line.startswith("weir: HTTP listening on "):
                self.http_addr = line.split()[4]
            self.tail.append(line.rstrip())
            self._lines.put(line.rstrip())
        self._lines.put(None)

    def _wait_for(self, prefix: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"weir ingest: no `{prefix}` line\n{self.logs()}") from None
            if line is None:
                raise RuntimeError(f"weir ingest exited ({self.proc.poll()})\n{self.logs()}")
            if line.startswith(prefix):
                return

    def wait_log(self, text: str, timeout: float = 60) -> None:
        """Waits until the process's log (stderr) contains ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._stderr.flush()
            if text in self.stderr_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise RuntimeError(f"weir ingest: `{text}` not logged\n{self.logs()}")

    def log_count(self, text: str) -> int:
        """How often the process's log (stderr) contains ``text`` so far."""
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace").count(text)

    def metrics(self) -> str:
        """The process's /metrics text (Prometheus)."""
        import urllib.request
        with urllib.request.urlopen(f"http://{self.http_addr}/metrics", timeout=10) as r:
            return r.read().decode()

    def logs(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")[-8000:]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._stderr.close()

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"weir ingest did not stop in time\n{self.logs()}")
        self._stderr.close()
        return self.proc.returncode


class Feeder:
    """Produces records ``ids`` (``point_message``, round-robin over the
    partitions, every ``poison_every``-th a malformed one) in the background,
    ``batch`` at a time with ``pause`` seconds between batches, through broker
    outages (an idempotent producer retries until ``message.timeout.ms``).
    ``delivered`` counts the acknowledged records; ``join`` (``stop``: after
    the current batch) checks that every record produced was acknowledged
    and returns the good/bad counts. ``sync``: each batch is acknowledged
    before the next one is produced (production stalls while the broker is
    down instead of queueing up)."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, ids: Sequence[int],
                 batch: int = 1000, pause: float = 0.1, poison_every: int = 0, sync: bool = False):
        self.sync = sync
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                                  "enable.idempotence": True, "message.timeout.ms": 300_000,
                                  "log_level": 0})
        self.topic, self.partitions = topic, partitions
        self.ids = ids if isinstance(ids, range) else list(ids)
        self.batch, self.pause, self.poison_every = batch, pause, poison_every
        self.counts = {"good": 0, "bad": 0}
        self.delivered = 0
        self.errors: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_delivery(self, err, msg) -> None:
        with self._lock:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.delivered += 1

    def _run(self) -> None:
        pe = self.poison_every
        for first in range(0, len(self.ids), self.batch):
            if self._stop.is_set():
                break
            for i in self.ids[first:first + self.batch]:
                if pe and i % pe == pe - 1:
                    value = POISON[(i // pe) % len(POISON)]
                    self.counts["bad"] += 1
                else:
                    value = point_message(i)
                    self.counts["good"] += 1
                while True:
                    try:
                        self.producer.produce(self.topic, value=value, key=f"dev{i % 97}".encode(),
                                              partition=i % self.partitions, headers={"seq": str(i)},
                                              on_delivery=self._on_delivery)
                        break
                    except BufferError:  # local queue full (e.g. the broker is down)
                        self.producer.poll(0.1)
            self.producer.poll(0)
            while self.sync and self.producer.flush(1) > 0:
                pass
            time.sleep(self.pause)
        while self.producer.flush(1) > 0:
            pass

    def wait_delivered(self, n: int, timeout: float = 120) -> None:
        wait_until(lambda: self.delivered >= n or self.delivered, timeout, f"{n} records delivered")

    def join(self, timeout: float = 400) -> Dict[str, int]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert not self.errors, self.errors[:5]
        produced = self.counts["good"] + self.counts["bad"]
        if not self._stop.is_set():
            assert produced == len(self.ids), (produced, len(self.ids))
        assert self.delivered == produced, (self.delivered, produced)
        return dict(self.counts)

    def stop(self, timeout: float = 400) -> Dict[str, int]:
        self._stop.set()
        return self.join(timeout)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last is True:
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def watermarks(conn, table: str, topic: str) -> dict:
    rows = fetch_rows(conn, f"SELECT partition, next_offset FROM weir_watermarks('{table}') "
                            f"WHERE source = 'kafka' AND stream = '{topic}'")
    return {p: o for p, o in rows}


def assert_exactly_once(conn, topic: str, counts: dict, ends: dict):
    good, bad = counts["good"], counts["bad"]
    total, distinct = fetch_rows(
        conn, f"SELECT count(*), count(DISTINCT value) FROM silver.points "
              f"WHERE source LIKE 'kafka:{topic}/%'")[0]
    assert (total, distinct) == (good, good)
    dead, dead_distinct = fetch_rows(
        conn, f"SELECT count(*), count(DISTINCT source_partition * 1000000000 + source_offset) "
              f"FROM bronze.dead_letters WHERE topic = '{topic}'")[0]
    assert (dead, dead_distinct) == (bad, bad)
    raw, raw_distinct = fetch_rows(
        conn, f"SELECT count(*), count(DISTINCT source_partition * 1000000000 + source_offset) "
              f"FROM bronze.raw_messages WHERE topic = '{topic}'")[0]
    assert (raw, raw_distinct) == (good + bad, good + bad)
    for table in ("bronze.raw_messages", "silver.points"):
        assert watermarks(conn, table, topic) == ends, table
