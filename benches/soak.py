"""Streaming ingest soak (issue 21 item 3): `weir serve` consuming a Kafka
topic paced at --rate points/s (default 200,000: the source scenario's
200,000 sensors at 1 Hz, as 20,000 devices x 10 metrics of device-status
JSON) for --minutes (default 60) with the default maintenance schedule
running (compaction, snapshot expiry, orphan cleanup, Gold refresh).

Samples, over the whole run:
- freshness every second: a Flight SQL client asks `max(ts)` of recent
  Silver rows; lag = time the answer arrived - newest visible device
  timestamp (an upper bound on produce -> queryable, hot tier and the
  query's own time included);
- every 10 s: Weir's RSS and CPU time, the lakehouse's bytes and files on
  disk, the Kafka backlog (end offsets - Bronze watermark);
- every 30 s: a dashboard query ("stats of 100 devices over the last 15
  minutes"), its latency;
- the scheduled maintenance jobs Weir ran (its log).

The producer runs in a process of its own on the same 2 cores (its CPU is
reported). Writes benches/results/<stamp>-soak/report.md, results.json and
plot.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from generate import METRICS, status_message  # noqa: E402
from ingest import Broker, Weir, free_port, producer  # noqa: E402

ROOT = HERE.parent
MAINT = re.compile(r"scheduled maintenance.*")


def produce(bootstrap: str, topic: str, rate: int, devices: int, seconds: float, seed: int,
            sent, cpu) -> None:
    """Paced producer (own process): one message per device per second of
    wall time, `rate` points/s in all."""
    rng = random.Random(seed)
    p = producer(bootstrap)
    msgs_per_s = rate // len(METRICS)
    start = time.time()
    i = 0
    while True:
        now = time.time()
        if now - start >= seconds:
            break
        due = int((now - start) * msgs_per_s)
        ts_ms = int(now * 1000)
        while i < due:
            try:
                p.produce(topic, value=status_message(rng, i % devices, ts_ms), partition=i % 4)
            except BufferError:
                p.poll(0.01)
                continue
            i += 1
            if i % 2000 == 0:
                sent.value = i
        p.poll(0)
        time.sleep(0.005)
    p.flush(120)
    sent.value = i
    t = os.times()
    cpu.value = t.user + t.system


class ApacheKafka(Broker):
    """The real broker (tests/scripts/kafka.sh: Apache Kafka from Maven
    Central, KRaft, one node) instead of ingest.py's light one: an hour at
    20,000 messages/s is what a plant's broker sees."""

    def __init__(self, work: Path):
        self.port = free_port()
        self.dir = work / "kafka"
        self.dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "WEIR_KAFKA_PYTHON": sys.executable}
        subprocess.run(["bash", str(ROOT / "tests/scripts/kafka.sh"), "start", str(self.dir), str(self.port)],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.pid = int((self.dir / "kafka.pid").read_text().strip())

    def stop(self):
        subprocess.run(["bash", str(ROOT / "tests/scripts/kafka.sh"), "stop", str(self.dir)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def disk(path: Path) -> tuple[int, int]:
    total = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                total += os.stat(os.path.join(root, n)).st_size
                files += n.endswith(".parquet")
            except FileNotFoundError:
                pass  # removed by maintenance while walking
    return total, files


def live_tables(data: Path) -> dict[str, dict]:
    """Each table's live data files at its current snapshot (PyIceberg, the
    catalog Weir wrote): what stays on disk once expiry has removed the
    files compaction replaced."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    out = {}
    try:
        for ns in catalog.list_namespaces():
            for ident in catalog.list_tables(ns):
                files = catalog.load_table(ident).inspect.files()
                out[".".join(ident)] = {
                    "files": files.num_rows,
                    "bytes": int(sum(files.column("file_size_in_bytes").to_pylist())),
                    "rows": int(sum(files.column("record_count").to_pylist())),
                }
    except Exception as e:  # a report without the table sizes is still a report
        print(f"(no table sizes: {e})")
    finally:
        catalog.engine.dispose()
    return out


def quantile(xs: list[float], f: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))]


def run(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="weir-soak-", dir=args.work_dir))
    broker = ApacheKafka(work)
    try:
        topic = broker.topic(f"soak-{int(time.time())}")
        data = work / "lake"
        weir = Weir(args.binary, data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
                                        "--kafka-format", "json_status", *args.weir_arg])
        sent, pcpu = mp.Value("q", 0), mp.Value("d", 0.0)
        seconds = args.minutes * 60
        prod = mp.Process(target=produce, args=(broker.bootstrap, topic, args.rate, args.devices,
                                                seconds, args.seed, sent, pcpu))
        t0 = time.time()
        prod.start()
        fresh: list[tuple[float, float]] = []      # (t, lag s)
        system: list[dict] = []                    # every 10 s
        dash: list[tuple[float, float]] = []       # (t, ms)
        cpu0 = weir.cpu_seconds()
        kcpu0 = cpu_of(broker.pid)
        next_sys = next_dash = t0
        devices = [f"dev-{d:05d}" for d in random.Random(args.seed).sample(range(args.devices), 100)]
        dash_sql = ("SELECT device_id, metric, count(*), min(value), max(value), avg(value) "
                    "FROM silver.points WHERE ts > now() - INTERVAL '15 minutes' AND device_id IN ("
                    + ", ".join(f"'{d}'" for d in devices) + ") GROUP BY device_id, metric")
        while prod.is_alive() or time.time() - t0 < seconds:
            t = time.time()
            newest = weir.scalar("SELECT max(ts) FROM silver.points WHERE ts > now() - INTERVAL '60 seconds'")[0][0]
            # The answer's time, not the question's: rows produced while the
            # query ran may be in it, so only the time after it bounds the
            # delay from produce to queryable from above.
            answered = time.time()
            if newest is not None and t - t0 > 5:
                fresh.append((t - t0, answered - newest.timestamp()))
            if t >= next_sys:
                next_sys += 10
                marks = weir.scalar("SELECT partition, next_offset FROM weir_watermarks('bronze.raw_messages') "
                                    f"WHERE stream = '{topic}'")
                committed = sum(o for _, o in marks)
                size, files = disk(data)
                system.append({"t": t - t0, "rss": rss_bytes(weir.proc.pid), "cpu": weir.cpu_seconds() - cpu0,
                               "disk": size, "files": files, "sent_msgs": sent.value,
                               "committed_msgs": committed})
                s = system[-1]
                print(f"{s['t']:6.0f} s  sent {s['sent_msgs'] * len(METRICS):,} pts  committed "
                      f"{committed * len(METRICS):,}  lag {fresh[-1][1] if fresh else float('nan'):.2f} s  "
                      f"rss {s['rss'] / 2**20:,.0f} MiB  disk {size / 2**30:.2f} GiB ({files} files)", flush=True)
            if t >= next_dash and t - t0 > 60:
                next_dash += 30
                q0 = time.perf_counter()
                weir.scalar(dash_sql)
                dash.append((t - t0, (time.perf_counter() - q0) * 1000))
            time.sleep(max(0.0, 1.0 - (time.time() - t)))
            if not prod.is_alive() and time.time() - t0 >= seconds:
                break
        prod.join()
        broker_cores = (cpu_of(broker.pid) - kcpu0) / (time.time() - t0)
        # Drain: until every produced message is committed (or 120 s).
        total_msgs = sum(broker.ends(topic).values())
        drain0 = time.time()
        while time.time() - drain0 < 120:
            marks = weir.scalar("SELECT partition, next_offset FROM weir_watermarks('bronze.raw_messages') "
                                f"WHERE stream = '{topic}'")
            if sum(o for _, o in marks) >= total_msgs:
                break
            time.sleep(1)
        drain_s = time.time() - drain0
        points = weir.scalar("SELECT count(*) FROM silver.points")[0][0]
        refreshes = gold_refreshes(weir, t0)
        weir.stop()
        tables = live_tables(data)
        # Without the terminal's colour codes (tracing writes them).
        log = re.sub(r"\x1b\[[0-9;]*m", "", (data.parent / f"{data.name}.log").read_text(errors="replace"))
        jobs: dict[str, int] = {}
        job_ms: dict[str, list[float]] = {}
        for line in log.splitlines():
            if "scheduled maintenance" in line:
                m = re.search(r"table=(\S+) job=(\w+)", line)
                failed = "failed" in line
                key = (f"{m.group(2)} {m.group(1)}" if m else "?") + (" (failed)" if failed else "")
                jobs[key] = jobs.get(key, 0) + 1
                ms = re.search(r"elapsed_ms=(\d+)", line)
                if ms:
                    job_ms.setdefault(key, []).append(float(ms.group(1)))
        lags = [x for _, x in fresh]
        return {
            "rate": args.rate, "devices": args.devices, "minutes": args.minutes,
            "sent_points": sent.value * len(METRICS), "silver_points": points,
            "achieved_points_per_s": sent.value * len(METRICS) / seconds,
            "producer_cores": pcpu.value / seconds, "broker_cores": broker_cores, "drain_s": drain_s,
            "freshness": {"p50_s": quantile(lags, 0.5), "p99_s": quantile(lags, 0.99),
                          "max_s": max(lags) if lags else float("nan"), "samples": len(lags)},
            "dashboard_ms": {"p50": quantile([x for _, x in dash], 0.5),
                             "p99": quantile([x for _, x in dash], 0.99), "samples": len(dash)},
            "maintenance_jobs": jobs, "job_ms": job_ms, "refreshes": refreshes, "tables": tables,
            "fresh": fresh, "system": system, "dash": dash,
        }
    finally:
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def gold_refreshes(weir, t0: float) -> list[dict]:
    """Every refresh snapshot of the Gold views: when, how (full, merge or
    recompute), how much base time it re-read, the view's rows after it."""
    out = []
    for view in ("gold.points_1m", "gold.points_1h", "gold.points_1d", "gold.fleet_1m"):
        rows = weir.scalar(f"SELECT committed_at, summary FROM iceberg_snapshots('{view}') "
                           "ORDER BY sequence_number")
        for committed_at, summary in rows:
            props = json.loads(summary)
            if "weir.mv.refresh" not in props:
                continue
            out.append({
                "view": view, "minute": (committed_at.timestamp() - t0) / 60,
                "refresh": props["weir.mv.refresh"], "by": props.get("weir.mv.refresh-by", ""),
                "seconds": int(props.get("weir.mv.refresh-seconds", 0) or 0),
                "days": int(props.get("weir.mv.refresh-days", 0) or 0),
                "rows": int(props.get("total-records", 0) or 0),
                # The view files the refresh replaced, and the view's files after.
                "replaced": int(props.get("deleted-data-files", 0) or 0),
                "files": int(props.get("total-data-files", 0) or 0),
            })
    return out


def report(r: dict) -> list[str]:
    sysl = r["system"]
    lines = [f"Rate {r['rate']:,} points/s target ({r['devices']:,} devices x {len(METRICS)} metrics, JSON), "
             f"{r['minutes']} minutes; sent {r['sent_points']:,} points "
             f"({r['achieved_points_per_s']:,.0f}/s), Silver holds {r['silver_points']:,} "
             f"({'all' if r['silver_points'] == r['sent_points'] else 'MISMATCH'}); drain after the producer "
             f"stopped {r['drain_s']:.1f} s; on the same 2 cores: the producer {r['producer_cores']:.2f} cores, "
             f"Apache Kafka {r['broker_cores']:.2f} cores.", "",
             f"Freshness (answer time - newest visible device time, every second): p50 "
             f"{r['freshness']['p50_s'] * 1000:,.0f} ms, p99 {r['freshness']['p99_s'] * 1000:,.0f} ms, "
             f"max {r['freshness']['max_s'] * 1000:,.0f} ms ({r['freshness']['samples']:,} samples).", "",
             f"Dashboard query (100 devices x 15 min stats, every 30 s): p50 {r['dashboard_ms']['p50']:,.0f} ms, "
             f"p99 {r['dashboard_ms']['p99']:,.0f} ms ({r['dashboard_ms']['samples']} samples).", "",
             f"Weir RSS (every 10 s): max {max(x['rss'] for x in sysl) / 2**20:,.0f} MiB, p50 "
             f"{quantile([x['rss'] for x in sysl], 0.5) / 2**20:,.0f} MiB; Weir cores over the run "
             f"{sysl[-1]['cpu'] / max(1e-9, sysl[-1]['t']):.2f}; disk at the end {sysl[-1]['disk'] / 2**30:.2f} GiB "
             f"({sysl[-1]['disk'] / max(1, r['silver_points']):.1f} bytes per point, Bronze + Silver + Gold, "
             f"before snapshot expiry removes the compacted files).", "",
             "Live data files at the end (current snapshots): " + "; ".join(
                 f"{name} {t['files']} files, {t['bytes'] / 2**20:,.0f} MiB, {t['rows']:,} rows"
                 + (f" ({t['bytes'] / t['rows']:.2f} B/row)" if t["rows"] else "")
                 for name, t in sorted(r.get("tables", {}).items())) + ".", "",
             "Scheduled maintenance jobs run: " + (", ".join(f"{k} x{v}" for k, v in sorted(r["maintenance_jobs"].items()))
                                                   or "none"), "",
             "| minute | Weir RSS MiB | Weir cores | disk GiB | Parquet files | Kafka backlog (points) | freshness p99 ms |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    step = max(1, len(sysl) // 12)
    for i in range(step, len(sysl), step):
        s = sysl[i]
        prev = sysl[i - step] if i >= step else {"t": 0, "cpu": 0}
        cores = (s["cpu"] - prev["cpu"]) / max(1e-9, s["t"] - prev["t"])
        window = [x for t, x in r["fresh"] if prev["t"] <= t < s["t"]]
        backlog = max(0, s["sent_msgs"] - s["committed_msgs"]) * len(METRICS)
        lines.append(f"| {s['t'] / 60:.1f} | {s['rss'] / 2**20:,.0f} | {cores:.2f} | {s['disk'] / 2**30:.2f} | "
                     f"{s['files']:,} | {backlog:,} | {quantile(window, 0.99) * 1000:,.0f} |")
    lines += ["", "Backlog: points sent but not yet committed to Iceberg (they are queryable from the hot tier "
              "before that); the commit interval bounds it when ingest keeps up."]
    if r.get("job_ms"):
        lines += ["", "| scheduled job | runs | p50 s | max s |", "|---|---:|---:|---:|"]
        for key, ms in sorted(r["job_ms"].items()):
            lines.append(f"| {key} | {len(ms)} | {quantile(ms, 0.5) / 1000:.1f} | {max(ms) / 1000:.1f} |")
    if r.get("refreshes"):
        lines += ["", "Gold refreshes (`iceberg_snapshots`): how each recomputed, the base time it re-read "
                  "(`weir.mv.refresh-seconds`; a merge reads only the appended files), the view files it "
                  "replaced of those live before, the view's rows after.", "",
                  "| minute | view | refresh | by | base re-read | days | files replaced | view rows |",
                  "|---:|---|---|---|---:|---:|---:|---:|"]
        for x in r["refreshes"]:
            reread = f"{x['seconds'] / 60:.0f} min" if x["by"] == "recompute" else "—"
            replaced = f"{x.get('replaced', 0)} → {x.get('files', 0)} live"
            lines.append(f"| {x['minute']:.1f} | {x['view']} | {x['refresh']} | {x['by']} | {reread} | "
                         f"{x['days']} | {replaced} | {x['rows']:,} |")
    return lines


def plot(r: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
        ft = [t / 60 for t, _ in r["fresh"]]
        axes[0].plot(ft, [x for _, x in r["fresh"]], linewidth=0.5)
        axes[0].set_ylabel("freshness s")
        s = r["system"]
        st = [x["t"] / 60 for x in s]
        axes[1].plot(st, [x["rss"] / 2**20 for x in s])
        axes[1].set_ylabel("Weir RSS MiB")
        axes[2].plot(st, [x["disk"] / 2**30 for x in s])
        axes[2].set_ylabel("disk GiB")
        axes[3].plot(st, [max(0, x["sent_msgs"] - x["committed_msgs"]) * len(METRICS) / 1e6 for x in s])
        axes[3].set_ylabel("uncommitted M pts")
        axes[3].set_xlabel("minutes")
        fig.suptitle(f"Weir soak: {r['achieved_points_per_s']:,.0f} points/s, maintenance on (2 cores)")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    except Exception as e:  # the plot is a convenience
        print(f"(no plot: {e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=200_000, help="points/s")
    ap.add_argument("--devices", type=int, default=20_000, help="devices (x 10 metrics = series)")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--binary", type=Path, default=ROOT / "target/release/weir")
    ap.add_argument("--work-dir", type=Path, default=None, help="where the lakehouse goes (default: /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the lakehouse afterwards")
    ap.add_argument("--weir-arg", action="append", default=[], help="extra `weir serve` argument")
    args = ap.parse_args()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-soak"
    out.mkdir(parents=True, exist_ok=True)
    r = run(args)
    (out / "results.json").write_text(json.dumps(r))
    lines = ["# Weir streaming soak", "",
             f"{dt.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, `benches/run.sh soak "
             f"--rate {args.rate} --minutes {args.minutes:g}`", "", *report(r)]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot(r, out / "plot.png")
    print("\n".join(lines))
    print(f"report: {out / 'report.md'}")


if __name__ == "__main__":
    main()
