"""Gap-filling benchmark (issue 22, item 1): a gap-filled 1-minute series of
10 sensors x 1 day (1 Hz readings with outages: ~20 % of the minutes have no
rows) — Weir's `date_bin_gapfill` with `locf` / `interpolate` over Flight SQL
against DuckDB doing the same with `generate_series`, a cross join of the
sensors and a left join (LOCF and linear interpolation with window
functions), on the same Parquet files. Results are compared (row count and
numeric checksums); prints the median of `--reps` timed runs after a warm-up
and the Weir/DuckDB ratio, and Weir's plain 1-minute aggregate (no filling)
for the cost of the filling itself.

Usage: benches/run.sh gapfill [--sensors 10] [--reps 5]
       ~/.cache/weir/bench-venv/bin/python benches/gapfill.py --weir-bin target/debug/weir
"""

from __future__ import annotations

import argparse
import datetime as dt
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import same_result, start_weir, timed  # noqa: E402

DAY = dt.datetime(2026, 1, 1)
T0, T1 = "2026-01-01T00:00:00", "2026-01-02T00:00:00"


def generate(out: Path, sensors: int, seed: int) -> tuple[int, float]:
    """One Parquet file per sensor: 1 Hz random walk over the day, with
    outages of 1–60 minutes covering about a fifth of the minutes."""
    rng = np.random.default_rng(seed)
    rows, missing = 0, 0
    for s in range(sensors):
        minute_ok = np.ones(1440, bool)
        while (~minute_ok).sum() < 288:
            start = rng.integers(0, 1440)
            minute_ok[start:start + rng.integers(1, 61)] = False
        secs = np.arange(86400)[np.repeat(minute_ok, 60)]
        ts = np.datetime64(DAY, "us") + secs.astype("timedelta64[s]")
        value = rng.normal(0, 0.1, len(secs)).cumsum() + rng.normal(20, 5)
        table = pa.table({"ts": pa.array(ts, pa.timestamp("us")),
                          "device_id": pa.array([f"s{s:02d}"] * len(secs)),
                          "value": value})
        pq.write_table(table, out / f"s{s:02d}.parquet")
        rows += len(secs)
        missing += int((~minute_ok).sum())
    return rows, missing / (1440 * sensors)


WEIR = f"""
SELECT date_bin_gapfill(INTERVAL '1 minute', ts) AS minute, device_id,
       locf(avg(value)) AS v_locf, interpolate(max(value)) AS v_interp, count(*) AS n
FROM public.gf WHERE ts >= '{T0}' AND ts < '{T1}'
GROUP BY minute, device_id ORDER BY device_id, minute
"""

WEIR_PLAIN = f"""
SELECT date_bin(INTERVAL '1 minute', ts) AS minute, device_id, avg(value) AS v, max(value) AS mx, count(*) AS n
FROM public.gf WHERE ts >= '{T0}' AND ts < '{T1}'
GROUP BY minute, device_id ORDER BY device_id, minute
"""

# The same answer in DuckDB: every minute x every sensor with rows in the
# range, left-joined with the aggregate; LOCF = last non-NULL value so far,
# interpolation between the previous and the next minute with rows.
DUCKDB = f"""
WITH agg AS (
  SELECT time_bucket(INTERVAL 1 minute, ts) AS minute, device_id, avg(value) AS a, max(value) AS mx, count(*) AS n
  FROM gf WHERE ts >= TIMESTAMP '{T0}' AND ts < TIMESTAMP '{T1}' GROUP BY ALL
), grid AS (
  SELECT g.minute, d.device_id
  FROM generate_series(TIMESTAMP '{T0}', TIMESTAMP '{T1}' - INTERVAL 1 minute, INTERVAL 1 minute) AS g(minute)
  CROSS JOIN (SELECT DISTINCT device_id FROM agg) AS d
), filled AS (
  SELECT grid.minute, grid.device_id, agg.a, agg.mx, coalesce(agg.n, 0) AS n,
         CASE WHEN agg.n IS NOT NULL THEN grid.minute END AS t_row
  FROM grid LEFT JOIN agg USING (minute, device_id)
), around AS (
  SELECT *,
    last_value(a IGNORE NULLS) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS v_locf,
    last_value(t_row IGNORE NULLS) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS t0,
    last_value(CASE WHEN t_row IS NOT NULL THEN mx END IGNORE NULLS)
      OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS v0,
    first_value(t_row IGNORE NULLS) OVER (w ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS t1,
    first_value(CASE WHEN t_row IS NOT NULL THEN mx END IGNORE NULLS)
      OVER (w ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS v1
  FROM filled WINDOW w AS (PARTITION BY device_id ORDER BY minute)
)
SELECT minute, device_id, v_locf,
  CASE WHEN t_row IS NOT NULL THEN mx
       ELSE v0 + (v1 - v0) * epoch(minute - t0) / epoch(t1 - t0) END AS v_interp,
  n
FROM around ORDER BY device_id, minute
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--weir-bin", type=Path, default=HERE.parent / "target/release/weir")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="weir-bench-gapfill-"))
    src = work / "src"
    src.mkdir()
    try:
        rows, gaps = generate(src, args.sensors, args.seed)
        print(f"{args.sensors} sensors x 1 day at 1 Hz: {rows:,} rows, {gaps:.0%} of the minutes without rows",
              flush=True)
        data = work / "data"
        proc, port = start_weir(args.weir_bin, data, work / "weir.log", ("--maintenance=false",))
        try:
            conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)

            def weir(sql: str) -> pa.Table:
                with conn.cursor() as cur:
                    cur.execute(sql)
                    return cur.fetch_arrow_table()

            weir("CREATE TABLE public.gf (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE)")
            subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data), "--table", "public.gf",
                            *map(str, sorted(src.glob("*.parquet")))], check=True, capture_output=True, text=True)
            duck = duckdb.connect()
            duck.execute(f"CREATE TABLE gf AS SELECT * FROM read_parquet('{src}/*.parquet')")

            wt, wr = timed(lambda: weir(WEIR), args.reps)
            pt, _ = timed(lambda: weir(WEIR_PLAIN), args.reps)
            dtm, dr = timed(lambda: duck.execute(DUCKDB).to_arrow_table(), args.reps)
            conn.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    expected = 1440 * args.sensors
    match = same_result(wr, dr) and wr.num_rows == expected
    weir_ms, plain_ms, duck_ms = (statistics.median(t) * 1e3 for t in (wt, pt, dtm))
    print(f"gap-filled 1-minute series, {args.sensors} sensors x 1 day ({wr.num_rows:,} rows out, "
          f"expected {expected:,}), median of {args.reps}, binary {args.weir_bin}:")
    print(f"  weir date_bin_gapfill + locf + interpolate  {weir_ms:9.1f} ms")
    print(f"  weir date_bin (no filling)                  {plain_ms:9.1f} ms")
    print(f"  duckdb generate_series + left join + windows {duck_ms:8.1f} ms")
    print(f"  ratio weir/duckdb {weir_ms / duck_ms:.2f}  results {'match' if match else 'MISMATCH'}")
    return 0 if match else 1


if __name__ == "__main__":
    sys.exit(main())
