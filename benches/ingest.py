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

Before/after: `--compare OLD` runs every measurement (each throughput kind,
the freshness run) with --binary ("after") and OLD ("before"), --reps times
each, alternating the order per repetition (after, before, then before,
after, ...) so that machine noise hits both; it reports both figures (best
over the repetitions: the minimum of times and lags, the maximum of rates)
and the ratio after/before.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

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


def throughput(binary: Path, broker: Broker, data: Path, kind: str, points: int, seed: int,
               commit_ms: int) -> dict:
    topic = broker.topic(f"bench-{kind}-{time.time_ns()}")
    t0 = time.perf_counter()
    produced = preload(broker, topic, kind, points, seed)
    load_s = time.perf_counter() - t0
    ends = broker.ends(topic)
    total_msgs = sum(ends.values())
    fmt = "json_status" if kind == "json" else "line_protocol"
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
            "cores": cpu / (samples[-1][0] - ready), "cpu_s": cpu, "producer_load_s": load_s}


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


def freshness(binary: Path, broker: Broker, data: Path, rate: int, seconds: int, seed: int) -> dict:
    topic = broker.topic(f"bench-fresh-{time.time_ns()}")
    weir = Weir(binary, data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
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


KINDS = ("json", "lp")


def alternate(binaries: dict[str, Path], reps: int) -> Iterator[tuple[int, str, Path]]:
    """(repetition, label, binary) in the order measurements run: every binary
    once per repetition, the order reversed each time (A, B, then B, A, ...)."""
    order = list(binaries)
    for rep in range(reps):
        for label in order if rep % 2 == 0 else order[::-1]:
            yield rep, label, binaries[label]


def run_ingest(binaries: dict[str, Path], reps: int, points: int, rate: int, seconds: int, seed: int,
               commit_ms: int) -> dict:
    """Throughput (JSON, LP), the Parquet-encode ceiling and freshness, on a
    broker of its own. With one binary, one run of each: the single report.
    With several (label -> binary), each measurement `reps` times per binary
    in `alternate` order, under results["runs"][label]."""
    work = Path(tempfile.mkdtemp(prefix="weir-ingest-bench-"))
    broker = Broker()
    compare = len(binaries) > 1
    runs = {label: {"throughput": [], "freshness": []} for label in binaries}

    def measure(key: str, name: str, run) -> Iterator[tuple[str, dict]]:
        for rep, label, binary in alternate(binaries, reps):
            data = work / f"{name}-{label}-{rep}"
            load1 = os.getloadavg()[0]
            r = run(binary, data)
            shutil.rmtree(data, ignore_errors=True)  # a 10 M-point lakehouse per run
            if compare:
                r.update(label=label, rep=rep, load1=load1)
            runs[label][key].append(r)
            yield f"{label}: " if compare else "", r

    try:
        for kind in KINDS:
            for tag, r in measure("throughput", f"tp-{kind}",
                                  lambda b, d: throughput(b, broker, d, kind, points, seed, commit_ms)):
                print(f"{tag}{kind:5s}: {r['points']:,} points in {r['seconds']:.2f} s = "
                      f"{r['points_per_s']:,.0f} points/s end to end, {r['steady_points_per_s']:,.0f} steady, "
                      f"{r['cores']:.2f} cores", flush=True)
        c = ceiling(min(points, 3_000_000), seed)
        print(f"ceiling: pyarrow zstd Parquet encode {c['points_per_s']:,.0f} rows/s", flush=True)
        for tag, f in measure("freshness", "fresh", lambda b, d: freshness(b, broker, d, rate, seconds, seed)):
            print(f"{tag}freshness at {f['achieved_points_per_s']:,.0f} points/s: p50 {f['p50_s'] * 1000:.0f} ms, "
                  f"p99 {f['p99_s'] * 1000:.0f} ms ({f['samples']} samples)", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    if compare:
        return {"cores": os.cpu_count(), "reps": reps, "binaries": {label: str(b) for label, b in binaries.items()},
                "runs": runs, "ceiling": c}
    (only,) = runs.values()
    return {"throughput": only["throughput"], "cores": os.cpu_count(), "ceiling": c,
            "freshness": only["freshness"][0]}


def comparison(runs: dict, after: str = "after", before: str = "before") -> list[dict]:
    """One row per measure: every repetition's figure for both binaries, the
    best of each (min of times and lags, max of rates) and after/before of
    the best and of the medians (a single lucky run moves the best)."""
    rows = []

    def add(measure: str, unit: str, lower_is_better: bool, key: str, pick, scale: float = 1.0) -> None:
        figures = {label: [r[key] * scale for r in pick(runs[label])] for label in (before, after)}

        def summary(pick_one, values: list[float]) -> float:  # steady is NaN when a run committed once
            values = [v for v in values if not math.isnan(v)]
            return pick_one(values) if values else math.nan

        best = min if lower_is_better else max
        b, a = summary(best, figures[before]), summary(best, figures[after])
        rows.append({"measure": measure, "unit": unit, "better": "lower" if lower_is_better else "higher",
                     "before": figures[before], "after": figures[after],
                     "before_best": b, "after_best": a, "ratio": a / b,
                     "ratio_median": summary(statistics.median, figures[after])
                     / summary(statistics.median, figures[before])})

    for kind in KINDS:
        pick = lambda rs, kind=kind: [r for r in rs["throughput"] if r["kind"] == kind]
        add(f"{kind} end to end", "points/s", False, "points_per_s", pick)
        add(f"{kind} steady", "points/s", False, "steady_points_per_s", pick)
        add(f"{kind} Weir CPU", "s", True, "cpu_s", pick)
    fresh = lambda rs: rs["freshness"]
    add("freshness p50", "ms", True, "p50_s", fresh, 1000)
    add("freshness p99", "ms", True, "p99_s", fresh, 1000)
    return rows


def comparison_lines(results: dict) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"

    lines = ["| measure | unit | better | before (each rep) | after (each rep) | before best | after best "
             "| after/before | after/before, medians |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in results["comparison"]:
        lines.append(f"| {row['measure']} | {row['unit']} | {row['better']} | "
                     f"{' / '.join(map(fmt, row['before']))} | {' / '.join(map(fmt, row['after']))} | "
                     f"{fmt(row['before_best'])} | {fmt(row['after_best'])} | {row['ratio']:.3f} | "
                     f"{row['ratio_median']:.3f} |")
    loads = [r["load1"] for runs in results["runs"].values() for key in ("throughput", "freshness")
             for r in runs[key]]
    f = results["runs"]["after"]["freshness"][0]
    lines += ["", f"{results['reps']} repetitions per binary and measure, the order alternating (after, before, "
              "then before, after, ...). Best: the maximum of rates, the minimum of CPU seconds and lags; "
              "after/before of the best, and of the medians; > 1 is better for rates, worse for CPU seconds and lags. End to end and steady as in "
              "the single report; Weir CPU: Weir's CPU seconds over the run; freshness at "
              f"{f['target_points_per_s']:,} points/s. Load average (1 min) at the start of the runs: "
              f"{min(loads):.2f}–{max(loads):.2f}.",
              "", f"Ceiling (pyarrow, zstd Parquet encode, binary-independent): "
              f"{results['ceiling']['points_per_s']:,.0f} rows/s", ""]
    return lines


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
        if "comparison" in results:
            return plot_comparison(plt, results, path)
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


def plot_comparison(plt, results: dict, path: Path) -> None:
    """Steady throughput and freshness lags, before beside after: bars are
    the best repetition, dots every repetition."""
    rows = {row["measure"]: row for row in results["comparison"]}
    panels = [("million points/s, steady (higher is better)", [f"{k} steady" for k in KINDS], 1e-6),
              ("freshness lag, ms (lower is better)", ["freshness p50", "freshness p99"], 1.0)]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, (title, measures, scale) in zip(axes, panels):
        for i, (label, color) in enumerate((("before", "#999999"), ("after", "#1f77b4"))):
            xs = [j + (i - 0.5) * 0.38 for j in range(len(measures))]
            ax.bar(xs, [rows[m][f"{label}_best"] * scale for m in measures], width=0.36, color=color, label=label)
            for x, m in zip(xs, measures):
                ax.plot([x] * len(rows[m][label]), [v * scale for v in rows[m][label]], "k.", markersize=4)
        ax.set_xticks(range(len(measures)), [m.replace(" steady", "") for m in measures])
        ax.set_title(title, fontsize=10)
    for j, m in enumerate(panels[0][1]):
        axes[0].annotate(f"{rows[m]['ratio']:.2f}x", (j + 0.19, rows[m]["after_best"] * 1e-6), ha="center",
                         va="bottom", fontsize=8)
    axes[0].legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=10_000_000, help="points per throughput run")
    ap.add_argument("--commit-interval-ms", type=int, default=1000, help="throughput runs' commit interval")
    ap.add_argument("--rate", type=int, default=200_000, help="freshness run: points/s")
    ap.add_argument("--seconds", type=int, default=20, help="freshness run length")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/weir")
    ap.add_argument("--compare", type=Path, metavar="BINARY",
                    help='a second binary ("before") measured beside --binary ("after")')
    ap.add_argument("--reps", type=int, default=2, help="with --compare: runs per binary and measurement")
    args = ap.parse_args()

    binaries = {"after": args.binary, "before": args.compare} if args.compare else {"weir": args.binary}
    reps = args.reps if args.compare else 1
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-ingest"
    out.mkdir(parents=True, exist_ok=True)
    results = run_ingest(binaries, reps, args.points, args.rate, args.seconds, args.seed, args.commit_interval_ms)
    if args.compare:
        results["comparison"] = comparison(results["runs"])
        body = comparison_lines(results)
        lines = ["# Weir streaming ingest: after vs before", "",
                 f"{dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, "
                 f"`benches/run.sh ingest --binary {args.binary} --compare {args.compare} --reps {reps}`, "
                 f"{args.points:,} points per throughput run", "", *body]
        print("\n".join(body[:len(results["comparison"]) + 2]))
    else:
        lines = ["# Weir streaming ingest", "",
                 f"{dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, `benches/run.sh ingest`", "",
                 *report_lines(results)]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "report.md").write_text("\n".join(lines))
    plot(results, out / "plot.png")
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
