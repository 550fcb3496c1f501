"""Last-value benchmark (issue 22 item 3): the last point per series and the
key listings of dashboards, from Weir's last-value index, beside DuckDB
(`arg_max`) and chDB (`argMax`) over the same rows, in one run.

For each series count (default 2,000 and 200,000: devices x 10 metrics),
`--points` readings per series at 1/min with jitter, written as 4 Parquet
files by time (so last rows lie in every file), are imported into
`public.lv (ts TIMESTAMPTZ, device_id, metric, value)` with
`weir.last-value.keys = 'device_id, metric'`; DuckDB and chDB hold the same
rows in memory tables. Queries, each run once to warm up and then `--reps`
times (p50 / p99 in ms):

- `last all`: last value and time of every series (`last(value, ts)`,
  `max(ts)` … `GROUP BY device_id, metric`; DuckDB `arg_max`, chDB `argMax`);
- `last one device`: the same for one device (10 series);
- `devices` / `metrics`: `SELECT DISTINCT device_id` / `metric`;
- each Weir query also with `SET weir.last_value_index = false` (the normal
  plan over the Parquet files), for what the index saves.

Then freshness: `--appends` times, 1,000 new readings are appended through
Flight SQL bulk ingest (and to the peers) and `last all` runs at once (the
index folds in the appended file): its latency, and that the result still
equals DuckDB's. Results of all engines are compared (rows and numeric
checksums). Weir answers over Flight SQL (the transfer of 200,000 rows is in
its figures); the peers run in-process.

Writes `benches/results/<stamp>-last-value/{report.md,results.json,plot.png}`.

Usage: benches/run.sh last_value [--series 2000,200000] [--points 20] [--reps 50]
       ~/.cache/weir/bench-venv/bin/python benches/last_value.py --weir-bin target/debug/weir
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import same_result, start_weir  # noqa: E402

T0 = np.datetime64("2026-01-01T00:00:00", "us")
METRICS = ["temp", "hum", "press", "flow", "volt", "amp", "rpm", "vib", "level", "co2"]
FILES = 4

QUERIES = {
    "last all": {
        "weir": "SELECT device_id, metric, last(value, ts) AS value, max(ts) AS ts FROM public.lv "
                "GROUP BY device_id, metric",
        "duckdb": "SELECT device_id, metric, arg_max(value, ts) AS value, max(ts) AS ts FROM lv GROUP BY ALL",
        "chdb": "SELECT device_id, metric, argMax(value, ts) AS v, max(ts) AS t FROM lv "
                "GROUP BY device_id, metric",
    },
    "last one device": {
        "weir": "SELECT device_id, metric, last(value, ts) AS value, max(ts) AS ts FROM public.lv "
                "WHERE device_id = '{dev}' GROUP BY device_id, metric",
        "duckdb": "SELECT device_id, metric, arg_max(value, ts) AS value, max(ts) AS ts FROM lv "
                  "WHERE device_id = '{dev}' GROUP BY ALL",
        "chdb": "SELECT device_id, metric, argMax(value, ts) AS v, max(ts) AS t FROM lv "
                "WHERE device_id = '{dev}' GROUP BY device_id, metric",
    },
    "devices": {
        "weir": "SELECT DISTINCT device_id FROM public.lv",
        "duckdb": "SELECT DISTINCT device_id FROM lv",
        "chdb": "SELECT DISTINCT device_id FROM lv",
    },
    "metrics": {
        "weir": "SELECT DISTINCT metric FROM public.lv",
        "duckdb": "SELECT DISTINCT metric FROM lv",
        "chdb": "SELECT DISTINCT metric FROM lv",
    },
}


def device(i: int) -> str:
    return f"dev{i:07d}"


def generate(out: Path, series: int, points: int, seed: int) -> list[Path]:
    """FILES Parquet files of `series` x `points` readings, by time."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    devices = np.array([device(i) for i in range(series // len(METRICS))], dtype=object)
    ids = np.arange(series)
    dev = devices[ids // len(METRICS)]
    met = np.array(METRICS, dtype=object)[ids % len(METRICS)]
    files = []
    per_file = max(1, points // FILES)
    for f in range(FILES):
        ks = range(f * per_file, points if f == FILES - 1 else (f + 1) * per_file)
        cols = {"ts": [], "device_id": [], "metric": [], "value": []}
        for k in ks:
            jitter = rng.integers(0, 59_000_000, series).astype("timedelta64[us]")
            cols["ts"].append(T0 + np.timedelta64(k * 60, "s") + jitter)
            cols["device_id"].append(dev)
            cols["metric"].append(met)
            cols["value"].append(rng.normal(20, 5, series))
        if not cols["ts"]:
            continue
        table = pa.table({
            "ts": pa.array(np.concatenate(cols["ts"]), pa.timestamp("us", tz="UTC")),
            "device_id": pa.array(np.concatenate(cols["device_id"]), pa.string()),
            "metric": pa.array(np.concatenate(cols["metric"]), pa.string()),
            "value": pa.array(np.concatenate(cols["value"]), pa.float64()),
        })
        path = out / f"part-{f}.parquet"
        pq.write_table(table, path, compression="zstd")
        files.append(path)
    return files


def percentiles(times: list[float]) -> tuple[float, float]:
    ms = sorted(t * 1e3 for t in times)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    return statistics.median(ms), p99


def timed(fn, reps: int):
    result = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times, result


def run_scale(args, series: int, out: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="weir-bench-lv-"))
    src, data = work / "src", work / "data"
    files = generate(src, series, args.points, args.seed)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    print(f"{series:,} series x {args.points} points: {rows:,} rows", flush=True)
    res: dict = {"series": series, "rows": rows, "queries": [], "appends": {}}
    proc = None
    try:
        proc, port = start_weir(args.weir_bin, data, out / f"weir-{series}.log", ("--maintenance=false",))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
        plain = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)

        def on(c):
            def q(sql: str) -> pa.Table:
                with c.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetch_arrow_table()
            return q

        weir, weir_plain = on(conn), on(plain)
        weir("CREATE TABLE public.lv (ts TIMESTAMPTZ, device_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, "
             "value DOUBLE)")
        subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data), "--table", "public.lv",
                        *map(str, files)], check=True, capture_output=True, text=True)
        weir("ALTER TABLE public.lv SET TBLPROPERTIES ('weir.last-value.keys' = 'device_id, metric', "
             "'weir.last-value.time' = 'ts')")
        weir_plain("SET weir.last_value_index = false")
        t0 = time.perf_counter()
        weir(QUERIES["last all"]["weir"])
        res["index_build_ms"] = (time.perf_counter() - t0) * 1e3
        plan = weir("EXPLAIN " + QUERIES["last all"]["weir"]).column("plan").to_pylist()
        res["explain"] = plan[-1]
        print(f"  first query (builds the index): {res['index_build_ms']:.0f} ms", flush=True)

        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(f"CREATE TABLE lv AS SELECT * FROM read_parquet('{src}/*.parquet')")
        engines = {"duckdb": lambda q: duck.execute(q).to_arrow_table()}
        try:
            from chdb import session as chs  # noqa: PLC0415 (optional peer)

            sess = chs.Session()
            sess.query(f"CREATE TABLE lv ENGINE = Memory AS SELECT * FROM file('{src}/*.parquet', Parquet)")
            engines["chdb"] = lambda q: sess.query(q, "ArrowTable")
        except Exception as e:  # noqa: BLE001
            print(f"  chDB skipped: {e}", flush=True)

        # The floor of any query over Flight SQL (planning, two round trips).
        times, _ = timed(lambda: weir("SELECT 1"), args.reps)
        res["floor_p50"], res["floor_p99"] = percentiles(times)
        print(f"  SELECT 1: p50 {res['floor_p50']:.1f} ms, p99 {res['floor_p99']:.1f} ms", flush=True)
        dev = device(series // len(METRICS) // 2)
        for name, q in QUERIES.items():
            r: dict = {"query": name}
            peers = {}
            for peer, run in engines.items():
                times, out_rows = timed(lambda run=run, sql=q[peer].format(dev=dev): run(sql), args.reps)
                r[f"{peer}_p50"], r[f"{peer}_p99"] = percentiles(times)
                peers[peer] = out_rows
            for label, fn in (("weir", weir), ("weir_noindex", weir_plain)):
                reps = args.reps if label == "weir" else max(3, args.reps // 10)
                times, out_rows = timed(lambda fn=fn, sql=q["weir"].format(dev=dev): fn(sql), reps)
                r[f"{label}_p50"], r[f"{label}_p99"] = percentiles(times)
                r[f"{label}_match"] = same_result(out_rows, peers["duckdb"])
            r["rows_out"] = peers["duckdb"].num_rows
            best = min(r[f"{p}_p50"] for p in engines)
            r["ratio"] = r["weir_p50"] / best
            res["queries"].append(r)
            line = (f"  {name:16s} rows {r['rows_out']:>7,}  weir p50 {r['weir_p50']:8.1f} p99 {r['weir_p99']:8.1f}"
                    f"  no index p50 {r['weir_noindex_p50']:8.1f}")
            for p in engines:
                line += f"  {p} p50 {r[f'{p}_p50']:7.1f} p99 {r[f'{p}_p99']:7.1f}"
            line += f"  weir/best {r['ratio']:.2f}"
            line += "" if r["weir_match"] and r["weir_noindex_match"] else "  MISMATCH"
            print(line, flush=True)

        # Freshness: append, then ask at once.
        rng = np.random.default_rng(args.seed + 1)
        fresh, matches = [], True
        for a in range(args.appends):
            ids = rng.choice(series, 1000, replace=False)
            new = pa.table({
                "ts": pa.array(T0 + np.timedelta64(args.points * 60 + 60 * (a + 1), "s")
                               + np.zeros(1000, "timedelta64[us]"), pa.timestamp("us", tz="UTC")),
                "device_id": pa.array([device(i // len(METRICS)) for i in ids], pa.string()),
                "metric": pa.array([METRICS[i % len(METRICS)] for i in ids], pa.string()),
                "value": pa.array(rng.normal(100, 1, 1000), pa.float64()),
            })
            with conn.cursor() as cur:
                cur.adbc_ingest("lv", new, mode="append", db_schema_name="public")
            duck.register("new_rows", new)
            duck.execute("INSERT INTO lv SELECT * FROM new_rows")
            duck.unregister("new_rows")
            t0 = time.perf_counter()
            got = weir(QUERIES["last all"]["weir"])
            fresh.append(time.perf_counter() - t0)
            want = duck.execute(QUERIES["last all"]["duckdb"]).to_arrow_table()
            matches = matches and same_result(got, want)
        if fresh:
            res["appends"] = {"count": len(fresh), "p50": percentiles(fresh)[0], "max": max(fresh) * 1e3,
                              "match": matches}
            print(f"  after an append of 1,000 rows: last all p50 {res['appends']['p50']:.1f} ms, "
                  f"max {res['appends']['max']:.1f} ms, results {'match' if matches else 'MISMATCH'}", flush=True)
        conn.close()
        plain.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return res


def write_report(out: Path, results: dict) -> None:
    lines = [f"# Last-value index: {results['points']} points per series, binary `{results['binary']}`", "",
             "p50 / p99 of the timed runs, ms (Weir over Flight SQL, peers in-process); "
             "ratio = Weir p50 / best peer p50.", ""]
    for s in results["scales"]:
        peers = [p for p in ("duckdb", "chdb") if f"{p}_p50" in s["queries"][0]]
        lines += [f"## {s['series']:,} series ({s['rows']:,} rows)", "",
                  f"First query (builds the index): {s['index_build_ms']:,.0f} ms; `SELECT 1` (the floor of a "
                  f"Flight SQL query): p50 {s['floor_p50']:,.1f} ms, p99 {s['floor_p99']:,.1f} ms. Plan of `last all`:",
                  "", "```", s["explain"].strip(), "```", "",
                  "| query | rows | Weir p50 | Weir p99 | Weir without index p50 | "
                  + " | ".join(f"{p} p50 | {p} p99" for p in peers) + " | ratio |",
                  "|" + "---|" * (6 + 2 * len(peers))]
        for r in s["queries"]:
            ok = "" if r["weir_match"] and r["weir_noindex_match"] else " (MISMATCH)"
            cells = [r["query"], f"{r['rows_out']:,}", f"{r['weir_p50']:,.1f}", f"{r['weir_p99']:,.1f}",
                     f"{r['weir_noindex_p50']:,.1f}"]
            for p in peers:
                cells += [f"{r[f'{p}_p50']:,.1f}", f"{r[f'{p}_p99']:,.1f}"]
            cells.append(f"{r['ratio']:.2f}{ok}")
            lines.append("| " + " | ".join(cells) + " |")
        if s["appends"]:
            a = s["appends"]
            lines += ["", f"After each of {a['count']} appends of 1,000 rows, `last all` at once: p50 {a['p50']:,.1f} ms, "
                      f"max {a['max']:,.1f} ms; results {'equal DuckDB' if a['match'] else 'MISMATCH'}."]
        lines.append("")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, axes = plt.subplots(1, len(results["scales"]), figsize=(6 * len(results["scales"]), 4.5), squeeze=False)
        for ax, s in zip(axes[0], results["scales"]):
            names = [r["query"] for r in s["queries"]]
            series = [("Weir", "weir_p50"), ("Weir, no index", "weir_noindex_p50")]
            series += [(p, f"{p}_p50") for p in ("duckdb", "chdb") if f"{p}_p50" in s["queries"][0]]
            width = 0.8 / len(series)
            for i, (label, key) in enumerate(series):
                ax.bar([j + i * width for j in range(len(names))], [r[key] for r in s["queries"]], width, label=label)
            ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(names))])
            ax.set_xticklabels(names, rotation=15, ha="right", fontsize=8)
            ax.set_title(f"{s['series']:,} series")
            ax.set_ylabel("ms (p50)")
            ax.set_yscale("log")
            ax.axhline(10, color="grey", linestyle=":", linewidth=1)
            ax.axhline(s["floor_p50"], color="tab:blue", linestyle="--", linewidth=1, label="Weir SELECT 1")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "plot.png", dpi=110)
    except ImportError:
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="2000,200000", help="comma-separated series counts (multiples of 10)")
    ap.add_argument("--points", type=int, default=20, help="readings per series")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--appends", type=int, default=5)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--weir-bin", type=Path,
                    default=Path(os.environ.get("WEIR_BIN", HERE.parent / "target/release/weir")))
    args = ap.parse_args()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = HERE / "results" / f"{stamp}-last-value"
    out.mkdir(parents=True, exist_ok=True)
    results = {"points": args.points, "binary": str(args.weir_bin), "scales": []}
    for series in (int(s) for s in args.series.split(",")):
        results["scales"].append(run_scale(args, series, out))
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, results)
    print(f"report: {out / 'report.md'}")
    ok = all(r["weir_match"] and r["weir_noindex_match"] for s in results["scales"] for r in s["queries"])
    ok = ok and all(s["appends"].get("match", True) for s in results["scales"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
