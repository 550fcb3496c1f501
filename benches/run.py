"""Benchmark runner: Weir (over Flight SQL) beside DuckDB on the same data.

Generates the sensor data (cached per scale), bulk-loads it into a fresh Weir
lakehouse with `weir import`, serves it with `weir serve`, then runs the
query suite on both engines: one warm-up, then --reps timed runs each,
reporting min/median and the Weir/DuckDB ratio. Results of the two engines
are compared (row count and numeric checksums) so a fast wrong answer shows.
Before the suite the Gold views (gold.points_1m/1h/1d) are refreshed
(timed) and every query also runs on a second server started with
`--mv-rewrite=false`: the rollup queries show the materialized-view
speed-up (target >= 50x). Then streams the device-status fleet (JSON and line protocol) through Kafka
into `weir serve` (points/s, freshness p50/p99; see ingest.py) unless
--no-ingest. Writes benches/results/<stamp>/report.md, plot.png and
ingest.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from generate import generate
from ingest import plot as ingest_plot
from ingest import report_lines as ingest_report_lines
from ingest import run_ingest
from queries import suite

HERE = Path(__file__).resolve().parent
READY = re.compile(r"weir: Flight SQL listening on 127\.0\.0\.1:(\d+)")


def timed(fn, reps: int) -> tuple[list[float], pa.Table]:
    result = fn()  # warm-up (and the result we compare)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, result


def checksum(table: pa.Table) -> tuple[int, list[float]]:
    sums = []
    for col in table.columns:
        if pa.types.is_floating(col.type) or pa.types.is_integer(col.type):
            sums.append(float(sum(v for v in col.to_pylist() if v is not None)))
    return table.num_rows, sums


def same_result(a: pa.Table, b: pa.Table) -> bool:
    (na, sa), (nb, sb) = checksum(a), checksum(b)
    return na == nb and len(sa) == len(sb) and all(math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6) for x, y in zip(sa, sb))


def start_weir(weir: Path, data_dir: Path, log: Path, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [str(weir), "serve", "--listen", "127.0.0.1:0", "--http-listen", "off", "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=open(log, "wb"), text=True,
    )
    for line in proc.stdout:
        m = READY.search(line)
        if m:
            return proc, int(m.group(1))
    raise RuntimeError(f"weir serve exited before it was ready; see {log}")


def parquet_encode_rate(files: list[Path]) -> float:
    """Rows/s of pyarrow writing the same rows to Parquet (zstd): the ceiling."""
    table = pq.read_table(files[0])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pq.write_table(table, Path(tmp) / "x.parquet", compression="zstd")
        return table.num_rows / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--weir-bin", type=Path, default=HERE.parent / "target/release/weir")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/weir/bench-data")
    ap.add_argument("--no-ingest", action="store_true", help="skip the streaming-ingest runs")
    ap.add_argument("--ingest-points", type=int, default=10_000_000, help="points per streaming throughput run")
    args = ap.parse_args()

    data = args.cache / f"s{args.sensors}-h{args.hours}-seed{args.seed}"
    if not (data / "DONE").exists():
        shutil.rmtree(data, ignore_errors=True)
        print(f"generating {args.sensors} sensors x {args.hours} h ...", flush=True)
        generate(args.sensors, args.hours, args.seed, data)
        (data / "DONE").write_text("ok")
    files = sorted(data.glob("*.parquet"))
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="weir-bench-"))
    try:
        print("bulk load: weir import ...", flush=True)
        imp = subprocess.run(
            [str(args.weir_bin), "import", "--json", "--data-dir", str(work), "--table", "silver.points", *map(str, files)],
            check=True, capture_output=True, text=True,
        )
        load = json.loads(imp.stdout.strip().splitlines()[-1])
        ceiling = parquet_encode_rate(files)
        proc, port = start_weir(args.weir_bin, work, out / "weir.log", ("--maintenance=false",))
        plain, plain_port = start_weir(args.weir_bin, work, out / "weir-no-rewrite.log",
                                       ("--maintenance=false", "--mv-rewrite=false"))
        try:
            conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
            conn_plain = flightsql.connect(f"grpc://127.0.0.1:{plain_port}", autocommit=True)
            refresh = {}
            for view in ("gold.points_1m", "gold.points_1h", "gold.points_1d", "gold.fleet_1m"):
                t0 = time.perf_counter()
                with conn.cursor() as cur:
                    cur.execute(f"REFRESH MATERIALIZED VIEW {view}")
                    cur.fetch_arrow_table()
                refresh[view] = time.perf_counter() - t0
                print(f"refresh {view}: {refresh[view]:.1f} s", flush=True)
            load["refresh_seconds"] = refresh
            duck = duckdb.connect()
            points_duck = "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"
            results = []
            for q in suite(args.sensors, args.hours):
                def run_weir(sql=q.weir.format(points="silver.points"), c=conn):
                    with c.cursor() as cur:
                        cur.execute(sql)
                        return cur.fetch_arrow_table()

                def run_plain(sql=q.weir.format(points="silver.points")):
                    return run_weir(sql, conn_plain)

                def run_duck(sql=q.duckdb.format(points=points_duck)):
                    return duck.execute(sql).to_arrow_table()

                wt, wr = timed(run_weir, args.reps)
                dtimes, dr = timed(run_duck, args.reps)
                # Without the rewrite: slow for rollups, so fewer runs.
                pt, pr = timed(run_plain, args.reps if not q.rollup else max(1, args.reps // 2))
                with conn.cursor() as cur:
                    cur.execute("EXPLAIN " + q.weir.format(points="silver.points"))
                    rewritten = "mv_rewrite" in str(cur.fetch_arrow_table().to_pylist())
                r = {
                    "query": q.name, "rewritten": rewritten,
                    "plain_median_ms": statistics.median(pt) * 1e3,
                    "weir_min_ms": min(wt) * 1e3, "weir_median_ms": statistics.median(wt) * 1e3,
                    "duckdb_min_ms": min(dtimes) * 1e3, "duckdb_median_ms": statistics.median(dtimes) * 1e3,
                    "rows": wr.num_rows, "match": same_result(wr, dr) and same_result(wr, pr),
                }
                r["ratio"] = r["weir_median_ms"] / r["duckdb_median_ms"]
                r["mv_speedup"] = r["plain_median_ms"] / r["weir_median_ms"]
                results.append(r)
                print(f"{q.name:45s} weir {r['weir_median_ms']:9.1f} ms  duckdb {r['duckdb_median_ms']:9.1f} ms  "
                      f"ratio {r['ratio']:5.2f}  no-rewrite {r['plain_median_ms']:9.1f} ms "
                      f"({r['mv_speedup']:.1f}x{', MV' if rewritten else ''})  "
                      f"{'ok' if r['match'] else 'MISMATCH'}", flush=True)
            conn.close()
            conn_plain.close()
        finally:
            for p in (proc, plain):
                p.terminate()
                p.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ingest = None
    if not args.no_ingest:
        print("streaming ingest: Kafka -> weir serve ...", flush=True)
        ingest = run_ingest(args.weir_bin, args.ingest_points, 200_000, 20, args.seed, 1000)
        ingest_plot(ingest, out / "ingest.png")
    write_report(out, args, rows, load, ceiling, results, ingest)
    print(f"report: {out / 'report.md'}")
    return 0 if all(r["match"] for r in results) else 1


def write_report(out: Path, args, rows: int, load: dict, ceiling: float, results: list[dict],
                 ingest: dict | None) -> None:
    lines = [
        f"# Weir vs DuckDB: {args.sensors} sensors x {args.hours} h at 1 Hz ({rows:,} rows)",
        "",
        f"Machine: {os.cpu_count()} cores. {args.reps} timed runs after one warm-up; Weir over Flight SQL (ADBC), "
        "DuckDB in-process over the same Parquet files. Ratio = Weir median / DuckDB median (< 1: Weir faster).",
        "",
        "Gold views refreshed before the suite (" + ", ".join(
            f"{v} {s:.1f} s" for v, s in load.get("refresh_seconds", {}).items()) + "). "
        "'MV' = answered from a view by the automatic rewrite; 'no rewrite' = the same query on a second server "
        "started with `--mv-rewrite=false`; MV speed-up = no rewrite / Weir.",
        "",
        "| query | Weir min ms | Weir median ms | DuckDB min ms | DuckDB median ms | ratio | no rewrite median ms | MV speed-up | rows | results equal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['query']}{' (MV)' if r['rewritten'] else ''} | {r['weir_min_ms']:.1f} | {r['weir_median_ms']:.1f} | "
            f"{r['duckdb_min_ms']:.1f} | {r['duckdb_median_ms']:.1f} | {r['ratio']:.2f} | {r['plain_median_ms']:.1f} | "
            f"{r['mv_speedup']:.1f}x | {r['rows']} | {'yes' if r['match'] else 'NO'} |"
        )
    lines += [
        "",
        "## Ingest",
        "",
        f"- Bulk load (`weir import`, {load['files_in']} files -> {load['data_files_out']} data files, {load['snapshots']} snapshots): "
        f"{load['rows_per_second']:,.0f} rows/s ({load['seconds']:.1f} s)",
        f"- Ceiling, pyarrow Parquet encode (zstd) of the same rows: {ceiling:,.0f} rows/s",
        "",
    ]
    if ingest:
        lines += ["Streaming (Kafka -> Bronze + Silver + hot tier, device-status fleet from generate.py):", "",
                  *ingest_report_lines(ingest)]
    else:
        lines += ["Streaming ingest: skipped (--no-ingest)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps({"load": load, "ceiling_rows_per_s": ceiling, "queries": results,
                                                  "ingest": ingest}, indent=2))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        names = [r["query"] for r in results]
        ys = range(len(names))
        fig, ax = plt.subplots(figsize=(10, 0.6 * len(names) + 1.5))
        ax.barh([y + 0.2 for y in ys], [r["weir_median_ms"] for r in results], height=0.4, label="Weir (Flight SQL)")
        ax.barh([y - 0.2 for y in ys], [r["duckdb_median_ms"] for r in results], height=0.4, label="DuckDB (Parquet)")
        ax.set_yticks(list(ys), names)
        ax.set_xscale("log")
        ax.set_xlabel("median query time, ms (log)")
        ax.set_title(f"{args.sensors} sensors x {args.hours} h ({rows:,} rows)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "plot.png", dpi=110)
    except ImportError:
        print("matplotlib missing: no plot", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
