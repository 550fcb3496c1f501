"""Row-level DML benchmark (issue 20): on a table of `sensors` x 1 day at 1 Hz
(2,000 sensors: 172.8 M rows), DELETE one device-hour and UPDATE 1 % of the
devices, in Weir (copy-on-write Iceberg) and in DuckDB (its own table, same
rows): seconds, rows changed, bytes Weir rewrote (snapshot summary), and the
query times before/after each statement beside DuckDB, with results compared.

Merge-on-read (position delete files / deletion vectors) is not written by
Weir yet: its rows print as "n/a".

Usage: benches/run.sh dml [--sensors 2000] [--reps 3]
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
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import duckdb

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from maintain import generate  # noqa: E402
from run import same_result, start_weir, timed  # noqa: E402


def queries(sensors: int) -> list[tuple[str, str]]:
    stats = "count(*) AS n, min(value) AS lo, max(value) AS hi, sum(value) AS total"
    ten = ", ".join(f"'s{i:04d}'" for i in range(0, sensors, max(1, sensors // 10)))
    return [
        ("1 sensor x 1 h", f"SELECT {stats} FROM {{t}} WHERE device_id = 's0001' "
                           "AND ts >= '2026-01-01T10:00:00' AND ts < '2026-01-01T11:00:00'"),
        ("10 sensors x 1 day", f"SELECT device_id, {stats} FROM {{t}} WHERE device_id IN ({ten}) "
                               "GROUP BY device_id ORDER BY device_id"),
        ("fleet 1 h", f"SELECT {stats} FROM {{t}} WHERE ts >= '2026-01-01T08:00:00' AND ts < '2026-01-01T09:00:00'"),
    ]


def statements(sensors: int) -> list[tuple[str, str]]:
    one_pct = ", ".join(f"'s{i:04d}'" for i in range(0, sensors, 100)) or "'s0000'"
    return [
        ("DELETE one device-hour",
         "DELETE FROM {t} WHERE device_id = 's0001' AND ts >= '2026-01-01T10:00:00' AND ts < '2026-01-01T11:00:00'"),
        ("UPDATE 1 % of devices", f"UPDATE {{t}} SET value = value + 1 WHERE device_id IN ({one_pct})"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=2000)
    ap.add_argument("--files", type=int, default=24, help="source files (one per hour)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--weir-bin", type=Path, default=HERE.parent / "target/release/weir")
    args = ap.parse_args()

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"{stamp}-dml"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="weir-bench-dml-"))
    src = work / "src"
    src.mkdir()
    results: dict = {"queries": [], "statements": []}
    try:
        print(f"generating {args.sensors} sensors x 1 day at 1 Hz ...", flush=True)
        rows = generate(src, args.files, args.sensors, args.seed)
        data = work / "data"
        proc, port = start_weir(args.weir_bin, data, out / "weir.log", ("--maintenance=false",))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)

        def weir(sql: str):
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table()

        weir("CREATE TABLE public.d (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE, "
             "quality INT) PARTITIONED BY (day(ts))")
        subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data), "--table", "public.d",
                        *map(str, sorted(src.glob("*.parquet")))], check=True, capture_output=True, text=True)
        subprocess.run([str(args.weir_bin), "maintain", "compact", "public.d", "--data-dir", str(data), "--json"],
                       check=True, capture_output=True, text=True)
        files = weir("SELECT count(*) AS n FROM iceberg_snapshots('public.d')").column(0)[0].as_py()
        print(f"loaded {rows:,} rows ({files} snapshots)", flush=True)
        duck = duckdb.connect()
        duck.execute(f"CREATE TABLE d AS SELECT * FROM read_parquet('{src}/*.parquet')")

        def measure(stage: str) -> None:
            for name, sql in queries(args.sensors):
                wt, wr = timed(lambda q=sql.format(t="public.d"): weir(q), args.reps)
                dtm, dr = timed(lambda q=sql.format(t="d"): duck.execute(q).fetch_arrow_table(), args.reps)
                r = {"stage": stage, "query": name, "weir_ms": statistics.median(wt) * 1e3,
                     "duckdb_ms": statistics.median(dtm) * 1e3, "match": same_result(wr, dr)}
                r["ratio"] = r["weir_ms"] / r["duckdb_ms"]
                results["queries"].append(r)
                print(f"{stage:22s} {name:20s} weir {r['weir_ms']:9.1f} ms  duckdb {r['duckdb_ms']:9.1f} ms  "
                      f"ratio {r['ratio']:6.2f}  {'ok' if r['match'] else 'MISMATCH'}", flush=True)

        measure("before")
        for name, sql in statements(args.sensors):
            t0 = time.perf_counter()
            changed = weir(sql.format(t="public.d")).column(0)[0].as_py()
            weir_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            duck_changed = duck.execute(sql.format(t="d")).fetchone()[0]
            duck_s = time.perf_counter() - t0
            summary = json.loads(weir("SELECT summary FROM iceberg_snapshots('public.d') "
                                      "ORDER BY sequence_number DESC LIMIT 1").column(0)[0].as_py())
            r = {"statement": name, "mode": "copy-on-write", "rows": changed, "duckdb_rows": duck_changed,
                 "weir_s": weir_s, "duckdb_s": duck_s,
                 "bytes_removed": int(summary.get("removed-files-size", 0)),
                 "bytes_added": int(summary.get("added-files-size", 0)),
                 "files_removed": int(summary.get("deleted-data-files", 0)),
                 "files_added": int(summary.get("added-data-files", 0))}
            results["statements"].append(r)
            print(f"{name}: {changed:,} rows (duckdb {duck_changed:,}) weir {weir_s:.2f} s, duckdb {duck_s:.2f} s, "
                  f"rewrote {r['files_removed']} files / {r['bytes_removed'] / (1 << 20):.1f} MiB -> "
                  f"{r['files_added']} files / {r['bytes_added'] / (1 << 20):.1f} MiB; merge-on-read: n/a", flush=True)
            measure(f"after {name}")
        conn.close()
        proc.terminate()
        proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["rows"] = rows
    results["args"] = {k: str(v) for k, v in vars(args).items()}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(out, args, rows, results)
    print(f"report: {out / 'report.md'}")
    ok = all(r["match"] for r in results["queries"]) and all(
        r["rows"] == r["duckdb_rows"] for r in results["statements"])
    return 0 if ok else 1


def write_report(out: Path, args, rows: int, results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [
        "# Weir row-level DML",
        "",
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, {rows:,} rows ({args.sensors} sensors x 1 day at 1 Hz), "
        f"binary `{args.weir_bin}`, `benches/run.sh dml`",
        "",
        "| statement | mode | rows | Weir s | DuckDB s | files rewritten | MiB removed | MiB added |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["statements"]:
        lines.append(f"| {r['statement']} | {r['mode']} | {r['rows']:,} | {r['weir_s']:.2f} | {r['duckdb_s']:.2f} | "
                     f"{r['files_removed']} → {r['files_added']} | {r['bytes_removed'] / (1 << 20):.1f} | "
                     f"{r['bytes_added'] / (1 << 20):.1f} |")
        lines.append(f"| {r['statement']} | merge-on-read | n/a | n/a | | | | |")
    lines += ["", "| stage | query | Weir ms | DuckDB ms | ratio | same result |", "|---|---|---:|---:|---:|---|"]
    for r in results["queries"]:
        lines.append(f"| {r['stage']} | {r['query']} | {r['weir_ms']:.1f} | {r['duckdb_ms']:.1f} | "
                     f"{r['ratio']:.2f} | {'yes' if r['match'] else 'NO'} |")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["statement"] for r in results["statements"]]
    xs = range(len(names))
    ax.bar([x - 0.2 for x in xs], [r["weir_s"] for r in results["statements"]], 0.4, label="Weir (copy-on-write)")
    ax.bar([x + 0.2 for x in xs], [r["duckdb_s"] for r in results["statements"]], 0.4, label="DuckDB (own table)")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "dml.png", dpi=120)
    lines += ["", "![statement times](dml.png)", ""]
    (out / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
