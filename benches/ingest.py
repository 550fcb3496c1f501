"""Streaming ingest benchmark: Kafka → Weir (Bronze + Silver + hot tier).

1. Throughput: pre-loads a 4-partition topic with device-status messages
   (JSON, 10 metrics per message) and another with line protocol (50 lines per
   message), starts `weir serve` on a fresh lakehouse and times until the raw
   table's watermark reaches the topic's end offsets (every point committed to
   Iceberg, Bronze and Silver). Reports points/s and the CPU cores Weir used.
2. Ceiling: pyarrow encoding the same Silver rows to zstd Parquet, rows/s.
3. Freshness: a producer paced at --rate points/s (default 200k) for
   --seconds; a Flight SQL client samples `max(ts)` of recent rows every
   200 ms; lag = sample time - newest visible device timestamp
   (an upper bound on produce → visible). Reports p50/p99.

Writes benches/results/<stamp>-ingest/report.md, results.json and plot.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import BASE_MS, METRICS, messages, status_message  # noqa: E402
ROOT = HERE.parent
READY = re.compile(r"weir: Flight SQL listening on 127\.0\.0\.1:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self):
        self.port = free_port()
        self.env = {**os.environ, "KAFKA_PORT": str(self.port),
                    "KAFKA_HOME": str(Path.home() / ".cache" / "weir" / "bench-kafka")}
        subprocess.run(["bash", str(ROOT / "tests/scripts/kafka-broker.sh"), "up"],
                       env=self.env, check=True, stdout=subprocess.DEVNULL)
        self.bootstrap = f"127.0.0.1:{self.port}"

    def topic(self, name: str, partitions: int = 4) -> str:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for f in admin.create_topics([NewTopic(name, num_partitions=partitions,
                                               replication_factor=1)]).values():
            f.result(30)
        return name

    def ends(self, topic: str, partitions: int = 4) -> dict:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench-probe"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
                    for p in range(partitions)}
        finally:
            c.close()

    def stop(self):
        subprocess.run(["bash", str(ROOT / "tests/scripts/kafka-broker.sh"), "down"],
                       env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def producer(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                     "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000,
                     "compression.type": "lz4"})


def preload(broker: Broker, topic: str, kind: str, points: int, seed: int) -> int:
    """Produces the device-status fleet (generate.py) until `points`."""
    p = producer(broker.bootstrap)
    produced = 0
    for i, (n, value) in enumerate(messages(kind, 2000, seed)):
        if produced >= points:
            break
        while True:
            try:
                p.produce(topic, value=value, partition=i % 4)
                break
            except BufferError:
                p.poll(0.05)
        produced += n
        if i % 10_000 == 0:
            p.poll(0)
    p.flush(120)
    return produced


class Weir:
    def __init__(self, binary: Path, data: Path, args: list[str]):
        self.log = open(data.parent / f"{data.name}.log", "wb")
        self.proc = subprocess.Popen([str(binary), "serve", "--listen", "127.0.0.1:0", "--http-listen", "off",
                                      "--data-dir", str(data), *args],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True)
        for line in self.proc.stdout:
            m = READY.search(line)
            if m:
                self.uri = f"grpc://127.0.0.1:{m.group(1)}"
                break
        else:
            raise RuntimeError("weir did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()
        self.conn = flightsql.connect(self.uri, autocommit=True)

    def scalar(self, sql: str):
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(120)
        self.log.close()


def throughput(binary: Path, broker: Broker, work: Path, kind: str, points: int, seed: int,
               commit_ms: int) -> dict:
    topic = broker.topic(f"bench-{kind}-{int(time.time())}")
    t0 = time.perf_counter()
    produced = preload(broker, topic, kind, points, seed)
    load_s = time.perf_counter() - t0
    ends = broker.ends(topic)
    total_msgs = sum(ends.values())
    fmt = "json_status" if kind == "json" else "line_protocol"
    data = work / f"tp-{kind}"
    start = time.perf_counter()
    weir = Weir(binary, data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
                               "--kafka-format", fmt, "--commit-interval-ms", str(commit_ms),
                               "--commit-target-mb", "256", "--max-buffer-mb", "1024"])
    ready = time.perf_counter()
    cpu0 = weir.cpu_seconds()
    # (time, messages committed to Bronze): every point of a message is
    # committed with it (Silver commits first).
    samples = []
    while True:
        rows = weir.scalar(f"SELECT partition, next_offset FROM weir_watermarks('bronze.raw_messages') "
                           f"WHERE stream = '{topic}'")
        marks = {p: o for p, o in rows}
        samples.append((time.perf_counter(), sum(marks.values())))
        if marks == ends:
            break
        time.sleep(0.1)
    elapsed = time.perf_counter() - start
    cpu = weir.cpu_seconds() - cpu0
    silver = weir.scalar("SELECT count(*) FROM silver.points")[0][0]
    weir.stop()
    assert silver == produced, (silver, produced)
    # Steady state: from the first commit to the last, excluding start-up and
    # the wait for the first commit interval.
    changes = [s for i, s in enumerate(samples) if i == 0 or s[1] != samples[i - 1][1]]
    first = next(s for s in changes if s[1] > 0)
    last = changes[-1]
    steady = ((last[1] - first[1]) / total_msgs * produced / (last[0] - first[0])
              if last[0] > first[0] else float("nan"))
    return {"kind": kind, "points": produced, "messages": total_msgs,
            "seconds": elapsed, "startup_s": ready - start, "points_per_s": produced / elapsed,
            "steady_points_per_s": steady, "commit_interval_ms": commit_ms,
            "cores": cpu / (samples[-1][0] - ready), "producer_load_s": load_s}


def ceiling(points: int, seed: int) -> dict:
    rng = random.Random(seed)
    n = points
    ts = pa.array([BASE_MS * 1000 + (i // 20_000) * 1_000_000 for i in range(n)],
                  pa.timestamp("us", tz="UTC"))
    table = pa.table({
        "ts": ts,
        "device_id": pa.array([f"dev-{(i // 10) % 2000:05d}" for i in range(n)]),
        "metric": pa.array([METRICS[i % 10] for i in range(n)]),
        "value": pa.array([rng.uniform(0, 100) for _ in range(n)]),
        "quality": pa.nulls(n, pa.int32()),
        "unit": pa.nulls(n, pa.string()),
        "source": pa.array(["kafka:bench/0"] * n),
    })
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        pq.write_table(table, f"{d}/x.parquet", compression="zstd")
        secs = time.perf_counter() - t0
    return {"points": n, "seconds": secs, "points_per_s": n / secs}


def freshness(binary: Path, broker: Broker, work: Path, rate: int, seconds: int, seed: int) -> dict:
    topic = broker.topic(f"bench-fresh-{int(time.time())}")
    weir = Weir(binary, work / "fresh", ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
                                         "--kafka-format", "json_status", "--hot-interval-ms", "100",
                                         "--commit-interval-ms", "5000"])
    msgs_per_s = rate // len(METRICS)
    stop = threading.Event()
    sent = [0]

    def produce():
        rng = random.Random(seed)
        p = producer(broker.bootstrap)
        p_conf_linger = 5
        del p_conf_linger
        start = time.time()
        i = 0
        while not stop.is_set():
            now = time.time()
            due = int((now - start) * msgs_per_s)
            ts_ms = int(now * 1000)
            while i < due:
                try:
                    p.produce(topic, value=status_message(rng, i % 20_000, ts_ms), partition=i % 4)
                except BufferError:
                    p.poll(0.01)
                    continue
                i += 1
            p.poll(0)
            time.sleep(0.005)
        p.flush(60)
        sent[0] = i

    th = threading.Thread(target=produce)
    th.start()
    time.sleep(3)  # warm-up
    lags = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.time()
        newest = weir.scalar("SELECT max(ts) FROM silver.points WHERE ts > now() - INTERVAL '20 seconds'")[0][0]
        if newest is not None:
            lags.append(t - newest.timestamp())
        time.sleep(0.2)
    stop.set()
    th.join()
    total_s = seconds + 3
    weir.stop()
    lags.sort()
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
    return {"target_points_per_s": rate, "achieved_points_per_s": sent[0] * len(METRICS) / total_s,
            "samples": len(lags), "p50_s": q(0.5), "p99_s": q(0.99), "max_s": lags[-1]}


def run_ingest(binary: Path, points: int, rate: int, seconds: int, seed: int, commit_ms: int) -> dict:
    """Throughput (JSON, LP), the Parquet-encode ceiling and freshness, on a
    broker of its own."""
    work = Path(tempfile.mkdtemp(prefix="weir-ingest-bench-"))
    broker = Broker()
    try:
        results = {"throughput": [], "cores": os.cpu_count()}
        for kind in ("json", "lp"):
            r = throughput(binary, broker, work, kind, points, seed, commit_ms)
            print(f"{kind:5s}: {r['points']:,} points in {r['seconds']:.2f} s = "
                  f"{r['points_per_s']:,.0f} points/s end to end, {r['steady_points_per_s']:,.0f} steady, "
                  f"{r['cores']:.2f} cores", flush=True)
            results["throughput"].append(r)
        c = ceiling(min(points, 3_000_000), seed)
        print(f"ceiling: pyarrow zstd Parquet encode {c['points_per_s']:,.0f} rows/s", flush=True)
        results["ceiling"] = c
        f = freshness(binary, broker, work, rate, seconds, seed)
        print(f"freshness at {f['achieved_points_per_s']:,.0f} points/s: p50 {f['p50_s'] * 1000:.0f} ms, "
              f"p99 {f['p99_s'] * 1000:.0f} ms ({f['samples']} samples)", flush=True)
        results["freshness"] = f
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return results


def report_lines(results: dict) -> list[str]:
    c, f = results["ceiling"], results["freshness"]
    lines = ["| input | points | seconds | points/s end to end | points/s steady | Weir cores | steady vs ceiling |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results["throughput"]:
        lines.append(f"| {r['kind']} | {r['points']:,} | {r['seconds']:.2f} | {r['points_per_s']:,.0f} | "
                     f"{r['steady_points_per_s']:,.0f} | {r['cores']:.2f} | "
                     f"{r['steady_points_per_s'] / c['points_per_s']:.2f} |")
    lines += ["", "End to end: from starting `weir serve` until the Bronze watermark reaches the topic's end "
              "offsets (start-up and the last commit interval included). Steady: committed points between the "
              f"first and the last commit over that time ({results['throughput'][0]['commit_interval_ms']} ms "
              "commit interval). Cores: Weir's CPU time over the run.",
              "", f"Ceiling (pyarrow, zstd Parquet encode of the same Silver rows): {c['points_per_s']:,.0f} rows/s", "",
              f"Freshness at {f['achieved_points_per_s']:,.0f} points/s (target {f['target_points_per_s']:,}): "
              f"p50 {f['p50_s'] * 1000:.0f} ms, p99 {f['p99_s'] * 1000:.0f} ms, max {f['max_s'] * 1000:.0f} ms "
              f"({f['samples']} samples)", ""]
    return lines


def plot(results: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        c = results["ceiling"]
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = [f"Weir {r['kind']}" for r in results["throughput"]] + ["Parquet encode ceiling"]
        vals = [r["steady_points_per_s"] / 1e6 for r in results["throughput"]] + [c["points_per_s"] / 1e6]
        ax.barh(names, vals, color=["#1f77b4", "#1f77b4", "#999999"])
        ax.axvline(1.0, color="red", linestyle="--", label="target 1M points/s")
        ax.set_xlabel("million points/s, steady (2 cores)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    except Exception as e:  # the plot is a convenience
        print(f"(no plot: {e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000, help="points per throughput run")
    ap.add_argument("--commit-interval-ms", type=int, default=1000, help="throughput runs' commit interval")
    ap.add_argument("--rate", type=int, default=200_000, help="freshness run: points/s")
    ap.add_argument("--seconds", type=int, default=20, help="freshness run length")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/weir")
    args = ap.parse_args()

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-ingest"
    out.mkdir(parents=True, exist_ok=True)
    results = run_ingest(args.binary, args.points, args.rate, args.seconds, args.seed, args.commit_interval_ms)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = ["# Weir streaming ingest", "",
             f"{dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, `benches/run.sh ingest`", "",
             *report_lines(results)]
    (out / "report.md").write_text("\n".join(lines))
    plot(results, out / "plot.png")
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
