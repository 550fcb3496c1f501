"""PostgreSQL federation benchmark: the device registry in a real PostgreSQL
(throwaway cluster, tests/python/pg_harness.py) attached as `pg`, points in
silver.points. Times over Flight SQL (ADBC): a registry aggregate pushed to
PostgreSQL, points joined with the registry by location through federation,
the same join with an Iceberg copy of the registry (federation's cost), and
DuckDB over the same Parquet + registry rows (the peer). Results are compared.

Usage: benches/run.sh federation [--devices 2000] [--points 500] [--reps 5]
       (--weir PATH to time another build, e.g. target/debug/weir)
"""

from __future__ import annotations

import argparse
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "python"))
from run import same_result, start_weir, timed  # noqa: E402
from pg_harness import PostgresServer  # noqa: E402

REGISTRY = """
CREATE TABLE devices (id BIGINT PRIMARY KEY, name TEXT NOT NULL UNIQUE, location TEXT,
                      protocol TEXT NOT NULL, enabled BOOLEAN NOT NULL);
INSERT INTO devices SELECT i, 's' || lpad(i::text, 5, '0'), 'hall-' || (i % 20), 'ModbusTcp', i % 10 <> 0
FROM generate_series(0, {n} - 1) AS i;
ANALYZE devices;
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--points", type=int, default=500, help="points per device")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--weir", type=Path, default=HERE.parent / "target" / "release" / "weir")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="weir-bench-fed-"))
    pg = PostgresServer()
    proc = None
    try:
        pg.psql(REGISTRY.format(n=args.devices))
        rng = np.random.default_rng(7)
        n = args.devices * args.points
        names = np.array([f"s{i:05d}" for i in range(args.devices)])
        points = pa.table({
            "ts": pa.array(np.datetime64("2026-01-01", "us")
                           + np.tile(np.arange(args.points), args.devices).astype("timedelta64[s]"),
                           pa.timestamp("us", tz="UTC")),
            "device_id": np.repeat(names, args.points),
            "metric": np.full(n, "temperature"),
            "value": rng.normal(20, 5, n),
        })
        parquet = work / "points.parquet"
        pq.write_table(points, parquet)
        data = work / "data"
        subprocess.run([str(args.weir), "import", "--data-dir", str(data), "--table", "silver.points",
                        str(parquet)], check=True, capture_output=True)
        proc, port = start_weir(args.weir, data, work / "weir.log",
                                ("--postgres-catalog", f"pg={pg.url}", "--maintenance=false"))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)

        def q(sql):
            def run():
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetch_arrow_table()
            return run

        q("CREATE TABLE public.devices_copy AS SELECT name, location, enabled FROM pg.public.devices")()
        join = ("SELECT d.location, count(*) AS n, avg(p.value) AS mean FROM silver.points p "
                "JOIN {d} d ON p.device_id = d.name WHERE d.enabled GROUP BY d.location ORDER BY d.location")
        registry = pa.table({"name": names, "location": [f"hall-{i % 20}" for i in range(args.devices)],
                             "enabled": [i % 10 != 0 for i in range(args.devices)]})
        duck = duckdb.connect()
        duck.register("registry", registry)
        duck_sql = join.format(d="registry").replace("silver.points", f"read_parquet('{parquet}')")
        cases = [
            ("registry aggregate, pushed to PostgreSQL",
             q("SELECT location, count(*) AS n FROM pg.public.devices WHERE enabled GROUP BY location ORDER BY location"),
             None),
            ("points x pg.public.devices by location", q(join.format(d="pg.public.devices")),
             lambda: duck.execute(duck_sql).to_arrow_table()),
            ("points x Iceberg copy of devices", q(join.format(d="public.devices_copy")), None),
        ]
        print(f"# PostgreSQL federation: {args.devices} devices, {n:,} points, {args.reps} reps, {args.weir}")
        print("| query | Weir min s | Weir median s | DuckDB min s | ratio | same result |")
        print("|---|---|---|---|---|---|")
        results = {}
        for name, weir_fn, duck_fn in cases:
            times, result = timed(weir_fn, args.reps)
            results[name] = result
            dmin, ratio, same = "", "", ""
            if duck_fn:
                dtimes, dres = timed(duck_fn, args.reps)
                dmin = f"{min(dtimes):.4f}"
                ratio = f"{min(times) / min(dtimes):.1f}x"
                same = str(same_result(result, dres))
            print(f"| {name} | {min(times):.4f} | {statistics.median(times):.4f} | {dmin} | {ratio} | {same} |")
        fed, ice = results["points x pg.public.devices by location"], results["points x Iceberg copy of devices"]
        print(f"\nfederated join == Iceberg-copy join: {same_result(fed, ice)}")
        conn.close()
        return 0
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
        pg.destroy()


if __name__ == "__main__":
    sys.exit(main())
