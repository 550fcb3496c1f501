"""Storage benchmark: the same load, queries and compaction with the warehouse
on local files and on an S3-compatible server (SeaweedFS on loopback, started
by tests/scripts/s3-server.sh), SQLite or PostgreSQL catalog.

    WEIR_BIN=target/release/weir ~/.cache/weir/test-venv/bin/python benches/storage.py \
        [--files 20] [--rows 100000] [--reps 5] [--postgres]

For each backend: `weir import` of --files Parquet files of --rows points
(rows/s, one snapshot per file), then over Flight SQL (ADBC) the median of
--reps runs of each query (after one warm-up), then `weir maintain compact`
(seconds, files in/out) and the queries again. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "python"))
from s3_harness import S3Server  # noqa: E402
from weir_harness import WeirServer, connect, fetch_rows, weir_binary  # noqa: E402

QUERIES = {
    "count(*)": "SELECT count(*) FROM silver.points",
    "sum by device (full scan)": "SELECT device_id, sum(value) FROM silver.points GROUP BY 1",
    "10 devices x 1 h": "SELECT device_id, avg(value), max(value) FROM silver.points "
                        "WHERE device_id IN ('d1','d2','d3','d4','d5','d6','d7','d8','d9','d10') "
                        "AND ts >= TIMESTAMP '2026-01-01 01:00:00' AND ts < TIMESTAMP '2026-01-01 02:00:00' "
                        "GROUP BY 1",
}


def make_files(out: Path, files: int, rows: int) -> list[Path]:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    paths = []
    for f in range(files):
        start = f * rows
        ts = [base + dt.timedelta(milliseconds=100 * (start + i)) for i in range(rows)]
        table = pa.table({
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "device_id": pa.array([f"d{(start + i) % 500}" for i in range(rows)]),
            "metric": pa.array(["temperature"] * rows),
            "value": pa.array([float((start + i) % 1000) for i in range(rows)]),
            "quality": pa.array([0] * rows, pa.int32()),
        })
        p = out / f"points-{f:03d}.parquet"
        pq.write_table(table, p)
        paths.append(p)
    return paths


def run(cmd: list[str]) -> dict:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_queries(uri: str, reps: int) -> dict:
    conn = connect(uri)
    try:
        result = {}
        for name, sql in QUERIES.items():
            fetch_rows(conn, sql)
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fetch_rows(conn, sql)
                times.append(time.perf_counter() - t)
            result[name] = statistics.median(times) * 1000
        return result
    finally:
        conn.close()


def bench(name: str, args: list[str], files: list[Path], reps: int, work: Path) -> dict:
    data = work / f"data-{name}"
    load = run([str(weir_binary()), "import", "--table", "silver.points", "--json",
                "--files-per-commit", "1", "--data-dir", str(data), *args, *map(str, files)])
    server = WeirServer(data, [*args, "--maintenance=false"])
    try:
        before = timed_queries(server.uri, reps)
        t = time.perf_counter()
        compact = run([str(weir_binary()), "maintain", "compact", "silver.points", "--json",
                       "--data-dir", str(data), *args])[0]
        compact_s = time.perf_counter() - t
        after = timed_queries(server.uri, reps)
    finally:
        server.stop()
    return {"backend": name, "rows_per_s": load["rows_per_second"], "load_s": load["seconds"],
            "query_ms": before, "compact_s": compact_s, "files_in": compact["files_in"],
            "files_out": compact["files_out"], "query_ms_compacted": after}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--postgres", action="store_true", help="also S3 + a PostgreSQL catalog")
    opts = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="weir-bench-storage-"))
    files = make_files(work, opts.files, opts.rows)
    s3 = S3Server()
    os.environ.update(s3.weir_env())
    pg = None
    try:
        results = [bench("local", [], files, opts.reps, work),
                   bench("s3", s3.weir_args(f"bench-{uuid.uuid4().hex[:8]}"), files, opts.reps, work)]
        if opts.postgres:
            from pg_harness import PostgresServer
            pg = PostgresServer()
            results.append(bench("s3+postgres", ["--catalog-uri", pg.url,
                                                 *s3.weir_args(f"bench-{uuid.uuid4().hex[:8]}")],
                                 files, opts.reps, work))
    finally:
        s3.stop()
        if pg:
            pg.destroy()
    rows = opts.files * opts.rows
    print(f"\n{rows:,} rows in {opts.files} files; median of {opts.reps} runs (ms)\n")
    names = list(QUERIES)
    print("| backend | import rows/s | " + " | ".join(names) + " | compact s (files) | "
          + " | ".join(f"{n} after" for n in names) + " |")
    print("|---" * (3 + 2 * len(names)) + "|")
    for r in results:
        print(f"| {r['backend']} | {r['rows_per_s']:,.0f} | "
              + " | ".join(f"{r['query_ms'][n]:.0f}" for n in names)
              + f" | {r['compact_s']:.1f} ({r['files_in']}→{r['files_out']}) | "
              + " | ".join(f"{r['query_ms_compacted'][n]:.0f}" for n in names) + " |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
