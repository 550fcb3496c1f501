"""Maintenance benchmark: a table of 2,000 small files (as a streaming writer
leaves them) → query time and files scanned before compaction, after
compaction and after Z-order clustering, beside DuckDB over the same live
Parquet files at each stage; compaction and clustering throughput in MB/s.

Usage: benches/run.sh maintain [--files 2000] [--sensors 200] [--reps 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import parser

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import same_result, start_weir, timed  # noqa: E402

DAY = dt.datetime(2026, 1, 1)


def generate(out: Path, files: int, sensors: int, seed: int) -> int:
    """`files` Parquet files, each all sensors at 1 Hz over 1/files of a day."""
    rng = np.random.default_rng(seed)
    span = 86400 // files
    devices = np.array([f"s{i:04d}" for i in range(sensors)])
    level = rng.normal(20, 5, sensors)
    rows = 0
    for k in range(files):
        secs = np.arange(k * span, (k + 1) * span)
        ts = np.repeat(np.datetime64(DAY, "us") + secs.astype("timedelta64[s]"), sensors)
        dev = np.tile(devices, len(secs))
        steps = rng.normal(0, 0.1, (len(secs), sensors)).cumsum(axis=0) + level
        level = steps[-1]
        table = pa.table({"ts": pa.array(ts, pa.timestamp("us")), "device_id": dev,
                          "value": steps.reshape(-1), "quality": pa.array(np.zeros(len(ts), np.int32))})
        pq.write_table(table, out / f"part-{k:05d}.parquet", compression="zstd")
        rows += table.num_rows
    return rows


def queries(sensors: int) -> list[tuple[str, str, str]]:
    """(name, SQL over {t}, PyIceberg row filter)."""
    ten = ", ".join(f"'s{i:04d}'" for i in range(0, sensors, max(1, sensors // 10)))
    t0, t1 = "2026-01-01T08:00:00", "2026-01-01T10:00:00"
    stats = "count(*) AS n, min(value) AS lo, max(value) AS hi, avg(value) AS mean"
    return [
        ("10 sensors x 2 h stats",
         f"SELECT device_id, {stats} FROM {{t}} WHERE device_id IN ({ten}) AND ts >= '{t0}' AND ts < '{t1}' "
         f"GROUP BY device_id ORDER BY device_id",
         f"device_id IN ({ten}) AND ts >= '{t0}' AND ts < '{t1}'"),
        ("10 sensors x 1 day stats",
         f"SELECT device_id, {stats} FROM {{t}} WHERE device_id IN ({ten}) GROUP BY device_id ORDER BY device_id",
         f"device_id IN ({ten})"),
        ("1 sensor x 10 min",
         f"SELECT ts, value FROM {{t}} WHERE device_id = 's0001' AND ts >= '2026-01-01T12:00:00' "
         f"AND ts < '2026-01-01T12:10:00' ORDER BY ts",
         "device_id = 's0001' AND ts >= '2026-01-01T12:00:00' AND ts < '2026-01-01T12:10:00'"),
        ("fleet 1 h stats",
         f"SELECT {stats} FROM {{t}} WHERE ts >= '{t0}' AND ts < '2026-01-01T09:00:00'",
         f"ts >= '{t0}' AND ts < '2026-01-01T09:00:00'"),
    ]


def maintain(weir: Path, work: Path, job: str, *extra: str) -> dict:
    out = subprocess.run([str(weir), "maintain", job, "public.m", "--data-dir", str(work), "--json", *extra],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--sensors", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--files-per-commit", type=int, default=20)
    ap.add_argument("--cluster-file-mb", type=float, default=4.0)
    ap.add_argument("--weir-bin", type=Path, default=HERE.parent / "target/release/weir")
    args = ap.parse_args()

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"{stamp}-maintain"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="weir-bench-maint-"))
    src = work / "src"
    src.mkdir()
    try:
        print(f"generating {args.files} small files ({args.sensors} sensors, 1 day at 1 Hz) ...", flush=True)
        rows = generate(src, args.files, args.sensors, args.seed)
        data = work / "data"
        jobs: dict = {}
        # Scheduled maintenance off: the stages are driven by hand.
        proc, port = start_weir(args.weir_bin, data, out / "weir.log", ("--maintenance=false",))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE public.m (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, "
                        "value DOUBLE, quality INT) PARTITIONED BY (day(ts))")
        # Like a streaming writer's commits: a few files per snapshot, many
        # snapshots; appends merge small manifests as they go.
        print(f"loading: weir import ({args.files_per_commit} files per snapshot) ...", flush=True)
        imp = subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data), "--table", "public.m",
                              "--files-per-commit", str(args.files_per_commit),
                              *map(str, sorted(src.glob("*.parquet")))], check=True, capture_output=True, text=True)
        jobs["import"] = json.loads(imp.stdout.strip().splitlines()[-1])
        print(f"imported {jobs['import']['rows']:,} rows as {jobs['import']['snapshots']} snapshots in "
              f"{jobs['import']['seconds']:.1f} s", flush=True)
        catalog = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
        duck = duckdb.connect()
        stages = []

        def measure(stage: str) -> None:
            table = catalog.load_table("public.m")
            live = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
            duck_src = "read_parquet([" + ", ".join(f"'{f}'" for f in live) + "])"
            for name, sql, row_filter in queries(args.sensors):
                scanned = len(list(table.scan(row_filter=parser.parse(row_filter)).plan_files()))

                def run_weir(q=sql.format(t="public.m")):
                    with conn.cursor() as cur:
                        cur.execute(q)
                        return cur.fetch_arrow_table()

                def run_duck(q=sql.format(t=duck_src)):
                    return duck.execute(q).to_arrow_table()

                wt, wr = timed(run_weir, args.reps)
                dtm, dr = timed(run_duck, args.reps)
                r = {"stage": stage, "query": name, "files": len(live), "files_scanned": scanned,
                     "weir_median_ms": statistics.median(wt) * 1e3, "duckdb_median_ms": statistics.median(dtm) * 1e3,
                     "match": same_result(wr, dr)}
                r["ratio"] = r["weir_median_ms"] / r["duckdb_median_ms"]
                stages.append(r)
                print(f"{stage:10s} {name:26s} files {scanned:5d}/{len(live):5d}  weir {r['weir_median_ms']:8.1f} ms  "
                      f"duckdb {r['duckdb_median_ms']:8.1f} ms  ratio {r['ratio']:5.2f}  "
                      f"{'ok' if r['match'] else 'MISMATCH'}", flush=True)

        measure("small")
        jobs["compact"] = maintain(args.weir_bin, data, "compact")
        measure("compacted")
        jobs["cluster"] = maintain(args.weir_bin, data, "cluster", "--columns", "device_id,ts",
                                   "--target-file-mb", str(args.cluster_file_mb))
        measure("z-ordered")
        for job, r in jobs.items():
            if job == "import":
                continue
            r["mb_per_s"] = r["bytes_in"] / (1 << 20) / max(r["seconds"], 1e-9)
            print(f"{job}: {r['files_in']} files ({r['bytes_in'] / (1 << 20):.1f} MiB) -> {r['files_out']} in "
                  f"{r['seconds']:.1f} s = {r['mb_per_s']:.1f} MiB/s", flush=True)
        conn.close()
        proc.terminate()
        proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "results.json").write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
                                                  "queries": stages, "jobs": jobs}, indent=2))
    write_report(out, args, rows, stages, jobs)
    print(f"report: {out / 'report.md'}")
    return 0 if all(r["match"] for r in stages) else 1


def write_report(out: Path, args, rows: int, stages: list[dict], jobs: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "# Weir table maintenance",
        "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {rows:,} rows in {args.files} small files "
        f"({args.sensors} sensors x 1 day at 1 Hz), `benches/run.sh maintain`",
        "",
        f"Loaded with `weir import --files-per-commit {args.files_per_commit}`: "
        f"{jobs['import']['snapshots']} snapshots in {jobs['import']['seconds']:.1f} s "
        f"({jobs['import']['rows_per_second']:,.0f} rows/s); appends merge small manifests as they go.",
        "",
        "| stage | query | files scanned / live | Weir median ms | DuckDB median ms | ratio |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in stages:
        lines.append(f"| {r['stage']} | {r['query']} | {r['files_scanned']} / {r['files']} | "
                     f"{r['weir_median_ms']:.1f} | {r['duckdb_median_ms']:.1f} | {r['ratio']:.2f} |")
    lines += ["", "| job | files in | files out | MiB in | seconds | MiB/s |", "|---|---:|---:|---:|---:|---:|"]
    for job, r in jobs.items():
        if job == "import":
            continue
        lines.append(f"| {job} | {r['files_in']} | {r['files_out']} | {r['bytes_in'] / (1 << 20):.1f} | "
                     f"{r['seconds']:.1f} | {r['mb_per_s']:.1f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")

    names = list(dict.fromkeys(r["query"] for r in stages))
    stage_names = list(dict.fromkeys(r["stage"] for r in stages))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(stage_names)
    for i, stage in enumerate(stage_names):
        ys = [next(r["weir_median_ms"] for r in stages if r["stage"] == stage and r["query"] == q) for q in names]
        ax.bar([x + i * width for x in range(len(names))], ys, width, label=f"Weir, {stage}")
    ax.set_xticks([x + width * (len(stage_names) - 1) / 2 for x in range(len(names))], names, fontsize=8)
    ax.set_ylabel("median ms (log)")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Query time before/after compaction and Z-order")
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
