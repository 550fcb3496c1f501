#!/usr/bin/env python3
"""Crash soak: `weir ingest` killed -9 at random moments while a producer writes.

Each cycle starts `weir ingest` on the same data dir and consumer group
(static membership, so the restarted writer takes its partitions back at
once) and kills it with SIGKILL at a random moment: while it starts, right
after its partitions are assigned, or while it consumes and commits. The
producer never pauses. At the end one more writer catches up to the topic's
end offsets, stops cleanly, and Weir's SQL counts every record:

    cycles=100 records=... seconds=... lost=0 dup=0

Exit status 1 if a record was lost or duplicated (or a count is off).

    WEIR_BIN=target/release/weir python benches/kafka_kill_soak.py --cycles 100
    ... --bootstrap 127.0.0.1:9092      # an existing broker (default: one from tests/scripts/kafka.sh)

Uses the test venv (confluent-kafka, adbc-driver-flightsql) and the helpers
of tests/python.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "python"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from kafka_harness import Feeder, KafkaBroker, watermarks  # noqa: E402
from weir_harness import WeirServer, connect, fetch_rows, weir_binary  # noqa: E402

os.environ.setdefault("WEIR_HTTP_LISTEN", "127.0.0.1:0")


class External:
    """An already running broker."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def end_offsets(self, topic: str, partitions: int) -> dict:
        return KafkaBroker.end_offsets(self, topic, partitions)

    def stop(self, kill: bool = False) -> None:
        pass


def wait_log(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=int, default=2000, help="records per second produced")
    ap.add_argument("--max-alive", type=float, default=2.5,
                    help="longest a writer consumes before the kill (seconds)")
    ap.add_argument("--poison-every", type=int, default=50, help="every n-th record is undecodable")
    ap.add_argument("--bootstrap", help="an existing broker (default: start one with kafka.sh)")
    ap.add_argument("--workdir", help="data, logs and the broker's files (default: a temp dir)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="weir-kafka-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    broker = External(args.bootstrap) if args.bootstrap else KafkaBroker(work / "kafka")
    started = time.monotonic()
    try:
        topic = f"soak-{os.getpid()}-{seed}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for fut in admin.create_topics([NewTopic(topic, num_partitions=args.partitions,
                                                 replication_factor=1)]).values():
            fut.result(timeout=30)
        data = work / "data"
        batch = max(1, args.rate // 10)
        # Enough records to outlast the kill cycles; the producer stops once they are done.
        feeder = Feeder(broker.bootstrap, topic, args.partitions, range(10 ** 9), batch=batch,
                        pause=0.1, poison_every=args.poison_every)
        cmd = [str(weir_binary()), "ingest", "--data-dir", str(data), "--kafka-brokers", broker.bootstrap,
               "--kafka-topics", topic, "--kafka-group", f"soak-{topic}", "--commit-interval-ms", "300",
               "--hot-interval-ms", "50", "--kafka-option",
               "group.instance.id=soak-writer,session.timeout.ms=6000"]
        phases = {"starting": 0, "assigned": 0, "consuming": 0}
        for cycle in range(args.cycles):
            log = logs / f"ingest-{cycle:04d}.log"
            with open(log, "wb") as err:
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            roll = rng.random()
            if roll < 0.15:
                phase = "starting"
                time.sleep(rng.uniform(0.0, 0.4))
            elif not wait_log(log, "partition assigned", proc, 120):
                print(f"cycle {cycle}: the writer exited or got no partitions\n{log.read_text()[-3000:]}")
                return 1
            elif roll < 0.3:
                phase = "assigned"
            else:
                phase = "consuming"
                time.sleep(rng.uniform(0.0, args.max_alive))
            if proc.poll() is not None:
                print(f"cycle {cycle}: the writer exited by itself ({proc.returncode})\n{log.read_text()[-3000:]}")
                return 1
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            phases[phase] += 1
            if cycle % 10 == 9:
                print(f"  {cycle + 1} kills, {feeder.delivered} records delivered, "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        # Stop producing: the records handed to the producer so far are the total.
        counts = feeder.stop(600)
        produced = counts["good"] + counts["bad"]
        kill_seconds = time.monotonic() - started

        # One last writer catches up and stops cleanly; Weir's SQL counts.
        final_log = logs / "ingest-final.log"
        with open(final_log, "wb") as err:
            final = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        server = WeirServer(data, ["--maintenance=false"])
        conn = connect(server.uri)
        ends = broker.end_offsets(topic, args.partitions)
        assert sum(ends.values()) == produced, (ends, produced)
        deadline = time.monotonic() + 600
        while watermarks(conn, "bronze.raw_messages", topic) != ends:
            if time.monotonic() > deadline or final.poll() is not None:
                print(f"the final writer did not catch up: {watermarks(conn, 'bronze.raw_messages', topic)} "
                      f"!= {ends}\n{final_log.read_text()[-3000:]}")
                return 1
            time.sleep(0.2)
        final.send_signal(signal.SIGTERM)
        assert final.wait(60) == 0, final_log.read_text()[-3000:]
        silver, silver_distinct = fetch_rows(
            conn, f"SELECT count(*), count(DISTINCT value) FROM silver.points WHERE source LIKE 'kafka:{topic}/%'")[0]
        raw, raw_distinct = fetch_rows(
            conn, f"SELECT count(*), count(DISTINCT source_partition * 1000000000 + source_offset) "
                  f"FROM bronze.raw_messages WHERE topic = '{topic}'")[0]
        dead, dead_distinct = fetch_rows(
            conn, f"SELECT count(*), count(DISTINCT source_partition * 1000000000 + source_offset) "
                  f"FROM bronze.dead_letters WHERE topic = '{topic}'")[0]
        snapshots = fetch_rows(conn, "SELECT count(*) FROM iceberg_snapshots('bronze.raw_messages')")[0][0]
        conn.close()
        server.discard()
        seconds = time.monotonic() - started
        lost = (produced - raw_distinct) + (counts["good"] - silver_distinct) + (counts["bad"] - dead_distinct)
        dup = (raw - raw_distinct) + (silver - silver_distinct) + (dead - dead_distinct)
        print(f"kills by phase: {phases}; seed {seed}; {snapshots} raw commits; work dir {work}")
        print(f"raw {raw}/{produced}, silver {silver}/{counts['good']}, dead letters {dead}/{counts['bad']}")
        print(f"cycles={args.cycles} records={produced} seconds={seconds:.0f} "
              f"(kill phase {kill_seconds:.0f}) lost={lost} dup={dup}")
        ok = lost == 0 and dup == 0 and (raw, silver, dead) == (produced, counts["good"], counts["bad"])
        return 0 if ok else 1
    finally:
        broker.stop(kill=True)


if __name__ == "__main__":
    sys.exit(main())
