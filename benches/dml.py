"""Row-level DML benchmark (issue 20): on a table of `sensors` x 1 day at 1 Hz
(2,000 sensors: 172.8 M rows), DELETE one device-hour and UPDATE 1 % of the
devices, in Weir — two copies of the table, one copy-on-write, one
merge-on-read (`write.delete.mode` / `write.update.mode`: position delete
files) — and in DuckDB (its own table, same rows): seconds, rows changed,
bytes Weir wrote and removed (snapshot summary), and the query times
before/after each statement beside DuckDB, with results compared.

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

        tables = {"copy-on-write": "public.d_cow", "merge-on-read": "public.d_mor"}
        for mode, table in tables.items():
            weir(f"CREATE TABLE {table} (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE, "
                 "quality INT) PARTITIONED BY (day(ts))")
            if mode == "merge-on-read":
                weir(f"ALTER TABLE {table} SET TBLPROPERTIES ('write.delete.mode' = 'merge-on-read', "
                     "'write.update.mode' = 'merge-on-read')")
            t0 = time.perf_counter()
            subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data), "--table", table,
                            *map(str, sorted(src.glob("*.parquet")))], check=True, capture_output=True, text=True)
            subprocess.run([str(args.weir_bin), "maintain", "compact", table, "--data-dir", str(data), "--json"],
                           check=True, capture_output=True, text=True)
            print(f"loaded {rows:,} rows into {table} ({time.perf_counter() - t0:.1f} s incl. compaction)",
                  flush=True)
        duck = duckdb.connect()
        duck.execute(f"CREATE TABLE d AS SELECT * FROM read_parquet('{src}/*.parquet')")

        def measure(stage: str, mode: str) -> None:
            table = tables[mode]
            for name, sql in queries(args.sensors):
                wt, wr = timed(lambda q=sql.format(t=table): weir(q), args.reps)
                dtm, dr = timed(lambda q=sql.format(t="d"): duck.execute(q).to_arrow_table(), args.reps)
                r = {"stage": stage, "mode": mode, "query": name, "weir_ms": statistics.median(wt) * 1e3,
                     "duckdb_ms": statistics.median(dtm) * 1e3, "match": same_result(wr, dr)}
                r["ratio"] = r["weir_ms"] / r["duckdb_ms"]
                results["queries"].append(r)
                print(f"{stage:24s} {mode:14s} {name:20s} weir {r['weir_ms']:9.1f} ms  "
                      f"duckdb {r['duckdb_ms']:9.1f} ms  ratio {r['ratio']:6.2f}  "
                      f"{'ok' if r['match'] else 'MISMATCH'}", flush=True)

        measure("before", "copy-on-write")
        for name, sql in statements(args.sensors):
            t0 = time.perf_counter()
            duck_changed = duck.execute(sql.format(t="d")).fetchone()[0]
            duck_s = time.perf_counter() - t0
            for mode, table in tables.items():
                t0 = time.perf_counter()
                changed = weir(sql.format(t=table)).column(0)[0].as_py()
                weir_s = time.perf_counter() - t0
                summary = json.loads(weir(f"SELECT summary FROM iceberg_snapshots('{table}') "
                                          "ORDER BY sequence_number DESC LIMIT 1").column(0)[0].as_py())
                r = {"statement": name, "mode": mode, "rows": changed, "duckdb_rows": duck_changed,
                     "weir_s": weir_s, "duckdb_s": duck_s,
                     "bytes_removed": int(summary.get("removed-files-size", 0)),
                     "bytes_added": int(summary.get("added-files-size", 0)),
                     "files_removed": int(summary.get("deleted-data-files", 0)),
                     "files_added": int(summary.get("added-data-files", 0)),
                     "delete_files": int(summary.get("added-delete-files", 0))}
                results["statements"].append(r)
                print(f"{name} [{mode}]: {changed:,} rows (duckdb {duck_changed:,}) weir {weir_s:.2f} s, "
                      f"duckdb {duck_s:.2f} s, data files {r['files_removed']} -> {r['files_added']}, "
                      f"{r['delete_files']} delete files, {r['bytes_removed'] / (1 << 20):.1f} MiB removed, "
                      f"{r['bytes_added'] / (1 << 20):.1f} MiB written", flush=True)
            for mode in tables:
                measure(f"after {name}", mode)
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
        "| statement | mode | rows | Weir s | DuckDB s | data files removed → added | delete files | MiB removed | MiB written |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["statements"]:
        lines.append(f"| {r['statement']} | {r['mode']} | {r['rows']:,} | {r['weir_s']:.2f} | {r['duckdb_s']:.2f} | "
                     f"{r['files_removed']} → {r['files_added']} | {r['delete_files']} | "
                     f"{r['bytes_removed'] / (1 << 20):.1f} | {r['bytes_added'] / (1 << 20):.1f} |")
    lines += ["", "| stage | table | query | Weir ms | DuckDB ms | ratio | same result |",
              "|---|---|---|---:|---:|---:|---|"]
    for r in results["queries"]:
        lines.append(f"| {r['stage']} | {r['mode']} | {r['query']} | {r['weir_ms']:.1f} | {r['duckdb_ms']:.1f} | "
                     f"{r['ratio']:.2f} | {'yes' if r['match'] else 'NO'} |")
    fig, ax = plt.subplots(figsize=(8, 3.5))
    cow = [r for r in results["statements"] if r["mode"] == "copy-on-write"]
    mor = [r for r in results["statements"] if r["mode"] == "merge-on-read"]
    names = [r["statement"] for r in cow]
    xs = range(len(names))
    ax.bar([x - 0.27 for x in xs], [r["weir_s"] for r in cow], 0.27, label="Weir copy-on-write")
    ax.bar(list(xs), [r["weir_s"] for r in mor], 0.27, label="Weir merge-on-read")
    ax.bar([x + 0.27 for x in xs], [r["duckdb_s"] for r in cow], 0.27, label="DuckDB (own table)")
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("seconds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "dml.png", dpi=120)
    lines += ["", "![statement times](dml.png)", ""]
    (out / "report.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
