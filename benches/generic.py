"""Generic-table benchmark (issue 21): a plain user table, no views, beside
DuckDB and chDB reading the same Parquet files, in one run.

The table is the issue's: `sensors` x `hours` at 1 Hz, columns `tag` string,
`tag_id` int, `ts` timestamptz, `type` string, `quality` int, `value` double,
generated as 8 Parquet files sorted by (tag_id, ts) (zstd, 1 M-row row
groups, page index), as a user's exporter would write them. Weir reads it in
two layouts:

- **own**: `CREATE TABLE public.sensors (...) PARTITIONED BY (day(ts))` and
  `weir import` of the files (Weir writes its own files);
- **same**: the generator's files registered unchanged with PyIceberg
  `add_files` (`public.sensors_raw`): the peers' bytes, so layout and engine
  separate.

Each query runs once to warm up, then `--reps` times; the minimum is
reported (ms) with the ratio to the best peer; results of all engines are
compared (rows and numeric checksums). Writes
`benches/results/<stamp>-generic/{report.md,results.json,plot.png}`.

Usage: benches/run.sh generic [--sensors 2000] [--hours 24] [--reps 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
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
from run import same_result, start_weir, timed  # noqa: E402

DAY0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
TYPES = ["temperature", "pressure", "flow", "vibration", "current"]
FILES = 8
# At most this many sensors per generated file (memory of the generator:
# 20,000 sensors x 1 day is 1.7 B rows).
SENSORS_PER_FILE = 250


def tag(i: int) -> str:
    return f"sensor_{i:06d}"


def generate(out: Path, sensors: int, hours: int, seed: int) -> list[Path]:
    """FILES Parquet files (more for large fleets) of `sensors` x `hours` x
    3600 rows, by tag ranges."""
    out.mkdir(parents=True, exist_ok=True)
    done = out / "DONE"
    if done.exists():
        return sorted(out.glob("*.parquet"))
    rng = np.random.default_rng(seed)
    seconds = hours * 3600
    start_us = int(DAY0.timestamp()) * 1_000_000
    nfiles = max(FILES, -(-sensors // SENSORS_PER_FILE))
    per_file = -(-sensors // nfiles)
    paths = []
    for f in range(nfiles):
        ids = np.arange(f * per_file, min(sensors, (f + 1) * per_file), dtype=np.int32)
        if len(ids) == 0:
            break
        n = len(ids) * seconds
        tag_id = np.repeat(ids, seconds)
        ts = np.tile(start_us + np.arange(seconds, dtype=np.int64) * 1_000_000, len(ids))
        walk = rng.normal(0, 0.05, size=(len(ids), seconds)).cumsum(axis=1)
        base = rng.uniform(10, 90, size=(len(ids), 1))
        value = (base + walk).reshape(-1)
        quality = np.where(rng.random(n) < 0.005, rng.integers(1, 3, n), 0).astype(np.int32)
        tags = pa.array([tag(i) for i in ids]).take(pa.array(np.repeat(np.arange(len(ids)), seconds)))
        types = pa.array(TYPES).take(pa.array(tag_id % len(TYPES)))
        table = pa.table({
            "tag": tags,
            "tag_id": pa.array(tag_id),
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "type": types,
            "quality": pa.array(quality),
            "value": pa.array(value),
        })
        path = out / f"part-{f:03d}.parquet"
        pq.write_table(table, path, compression="zstd", row_group_size=1_000_000, write_page_index=True)
        paths.append(path)
        print(f"  {path.name}: {n:,} rows", flush=True)
    done.write_text("ok")
    return paths


def queries(sensors: int, hours: int) -> list[dict]:
    """(name, Weir SQL, DuckDB SQL, chDB SQL) with `{t}` for the table."""
    step = max(1, sensors // 100)
    hundred = ", ".join(f"'{tag(i)}'" for i in range(0, sensors, step)[:100])
    ten = ", ".join(f"'{tag(i)}'" for i in range(0, sensors, max(1, sensors // 10))[:10])
    end_h = min(hours, 24)

    def ts(h: float) -> str:
        return (DAY0 + dt.timedelta(hours=h)).strftime("%Y-%m-%d %H:%M:%S")

    def rng_w(a: float, b: float) -> str:
        return f"ts >= TIMESTAMP '{ts(a)}+00:00' AND ts < TIMESTAMP '{ts(b)}+00:00'"

    def rng_d(a: float, b: float) -> str:
        return f"ts >= TIMESTAMPTZ '{ts(a)}+00:00' AND ts < TIMESTAMPTZ '{ts(b)}+00:00'"

    def rng_c(a: float, b: float) -> str:
        return f"ts >= toDateTime64('{ts(a)}', 6, 'UTC') AND ts < toDateTime64('{ts(b)}', 6, 'UTC')"

    def stats(tags: str, a: float, b: float) -> tuple[str, str, str]:
        w = (f"SELECT tag, count(*), min(value), max(value), avg(value), var_samp(value), median(value) "
             f"FROM {{t}} WHERE tag IN ({tags}) AND {rng_w(a, b)} GROUP BY tag ORDER BY tag")
        d = (f"SELECT tag, count(*), min(value), max(value), avg(value), var_samp(value), median(value) "
             f"FROM {{t}} WHERE tag IN ({tags}) AND {rng_d(a, b)} GROUP BY tag ORDER BY tag")
        c = (f"SELECT tag, count(*), min(value), max(value), avg(value), varSamp(value), "
             f"quantileExactInclusive(0.5)(value) FROM {{t}} WHERE tag IN ({tags}) AND {rng_c(a, b)} "
             f"GROUP BY tag ORDER BY tag")
        return w, d, c

    q = []
    for name, tags, a, b in [
        ("100 tags x 1 day: stats", hundred, 0, end_h),
        ("10 tags x 10 min: stats", ten, 1, 1 + 1 / 6),
        ("100 tags x 1 h: stats", hundred, 2, 3),
    ]:
        w, d, c = stats(tags, a, b)
        q.append({"name": name, "weir": w, "duckdb": d, "chdb": c})
    six = min(6, end_h)
    q.append({
        "name": "1-min avg/min/max, 10 tags x 6 h",
        "weir": f"SELECT tag, date_trunc('minute', ts) AS m, avg(value), min(value), max(value) FROM {{t}} "
                f"WHERE tag IN ({ten}) AND {rng_w(0, six)} GROUP BY 1, 2 ORDER BY 1, 2",
        "duckdb": f"SELECT tag, date_trunc('minute', ts) AS m, avg(value), min(value), max(value) FROM {{t}} "
                  f"WHERE tag IN ({ten}) AND {rng_d(0, six)} GROUP BY 1, 2 ORDER BY 1, 2",
        "chdb": f"SELECT tag, toStartOfMinute(ts) AS m, avg(value), min(value), max(value) FROM {{t}} "
                f"WHERE tag IN ({ten}) AND {rng_c(0, six)} GROUP BY 1, 2 ORDER BY 1, 2",
    })
    q.append({
        "name": f"last point per tag (all {sensors:,})",
        "weir": "SELECT tag, max(ts), last(value, ts) FROM {t} GROUP BY tag ORDER BY tag",
        "duckdb": "SELECT tag, max(ts), arg_max(value, ts) FROM {t} GROUP BY tag ORDER BY tag",
        "chdb": "SELECT tag, max(ts), argMax(value, ts) FROM {t} GROUP BY tag ORDER BY tag",
    })
    q.append({
        "name": "hourly fleet avg + count(quality = 0), 1 day",
        "weir": f"SELECT date_trunc('hour', ts) AS h, avg(value), count(*) FILTER (WHERE quality = 0) "
                f"FROM {{t}} WHERE {rng_w(0, end_h)} GROUP BY 1 ORDER BY 1",
        "duckdb": f"SELECT date_trunc('hour', ts) AS h, avg(value), count(*) FILTER (WHERE quality = 0) "
                  f"FROM {{t}} WHERE {rng_d(0, end_h)} GROUP BY 1 ORDER BY 1",
        "chdb": f"SELECT toStartOfHour(ts) AS h, avg(value), countIf(quality = 0) "
                f"FROM {{t}} WHERE {rng_c(0, end_h)} GROUP BY 1 ORDER BY 1",
    })
    return q


def register_same_bytes(data: Path, files: list[Path]) -> None:
    """The generator's files added unchanged to Weir's catalog (PyIceberg)."""
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.transforms import DayTransform
    from pyiceberg.types import DoubleType, IntegerType, NestedField, StringType, TimestamptzType

    catalog = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    try:
        schema = Schema(
            NestedField(1, "tag", StringType(), required=False),
            NestedField(2, "tag_id", IntegerType(), required=False),
            NestedField(3, "ts", TimestamptzType(), required=False),
            NestedField(4, "type", StringType(), required=False),
            NestedField(5, "quality", IntegerType(), required=False),
            NestedField(6, "value", DoubleType(), required=False),
        )
        spec = PartitionSpec(PartitionField(source_id=3, field_id=1000, transform=DayTransform(), name="ts_day"))
        table = catalog.create_table("public.sensors_raw", schema=schema, partition_spec=spec)
        table.add_files([f"file://{p}" for p in files])
    finally:
        catalog.engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", default="2000",
                    help="fleet size, or several (2000,20000): one run each plus the growth table")
    ap.add_argument("--hours", type=int, default=24, help="at most 24: one day partition")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--weir-bin", type=Path, default=HERE.parent / "target/release/weir")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/weir/bench-data")
    ap.add_argument("--layouts", default="own,same")
    ap.add_argument("--bulk", action=argparse.BooleanOptionalAction, default=True,
                    help="measure adbc_ingest and the pyarrow encode ceiling (issue 21 item 4)")
    ap.add_argument("--queries", action=argparse.BooleanOptionalAction, default=True,
                    help="run the query suite (--no-queries: loads and bulk paths only)")
    args = ap.parse_args()
    args.hours = max(1, min(24, args.hours))
    sizes = [int(x) for x in str(args.sensors).split(",") if x]
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "results" / f"{stamp}-generic"
    out.mkdir(parents=True, exist_ok=True)
    wanted = [x for x in args.layouts.split(",") if x in LAYOUTS]
    runs = []
    for sensors in sizes:
        sub = out / f"{sensors}" if len(sizes) > 1 else out
        sub.mkdir(parents=True, exist_ok=True)
        results = run_size(args, sensors, sub, wanted)
        (sub / "results.json").write_text(json.dumps(results, indent=2))
        write_report(sub, results, wanted)
        print(f"report: {sub / 'report.md'}", flush=True)
        runs.append(results)
    if len(runs) > 1:
        write_growth(out, runs, wanted)
        print(f"growth: {out / 'growth.md'}")
    return 0 if all(r.get(f"weir_{x}_match", True) for res in runs for r in res["queries"] for x in wanted) else 1


LAYOUTS = {"own": "public.sensors", "same": "public.sensors_raw"}


def run_size(args, sensors: int, out: Path, wanted: list[str]) -> dict:
    src = args.cache / f"generic-{sensors}x{args.hours}h-s{args.seed}"
    print(f"data: {sensors:,} sensors x {args.hours} h at 1 Hz in {src}", flush=True)
    files = generate(src, sensors, args.hours, args.seed)
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    src_bytes = sum(p.stat().st_size for p in files)
    work = Path(tempfile.mkdtemp(prefix="weir-bench-generic-"))
    data = work / "data"
    layouts = LAYOUTS
    results: dict = {"rows": rows, "source_bytes": src_bytes, "sensors": sensors, "hours": args.hours,
                     "load": {}, "queries": []}
    proc = None
    try:
        # Create the lakehouse (and the declared tables) once, then register
        # the raw files while no server runs.
        proc, port = start_weir(args.weir_bin, data, out / "weir-init.log", ("--maintenance=false",))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE public.sensors (tag VARCHAR NOT NULL, tag_id INT NOT NULL, "
                        "ts TIMESTAMPTZ NOT NULL, type VARCHAR, quality INT, value DOUBLE) PARTITIONED BY (day(ts))")
            cur.fetchall()
        conn.close()
        proc.terminate()
        proc.wait(timeout=60)
        proc = None
        if "same" in wanted:
            t0 = time.perf_counter()
            register_same_bytes(data, files)
            results["load"]["same"] = {"seconds": time.perf_counter() - t0}
        if "own" in wanted:
            t0 = time.perf_counter()
            imp = subprocess.run([str(args.weir_bin), "import", "--json", "--data-dir", str(data),
                                  "--table", "public.sensors", *map(str, files)],
                                 check=True, capture_output=True, text=True)
            secs = time.perf_counter() - t0
            summary = json.loads(imp.stdout.strip().splitlines()[-1])
            results["load"]["own"] = {"seconds": secs, "rows_per_s": rows / secs, "summary": summary}
            print(f"weir import: {rows:,} rows in {secs:.1f} s ({rows / secs:,.0f} rows/s)", flush=True)

        proc, port = start_weir(args.weir_bin, data, out / "weir.log", ("--maintenance=false",))
        conn = flightsql.connect(f"grpc://127.0.0.1:{port}", autocommit=True)

        def weir(sql: str) -> pa.Table:
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table()

        if args.bulk:
            results["bulk"] = bulk_paths(conn, files[0])

        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.execute(f"CREATE VIEW src AS SELECT * FROM read_parquet('{src}/*.parquet')")
        import chdb  # noqa: PLC0415 (optional peer, in benches/requirements.txt)

        chdb_src = f"file('{src}/*.parquet', Parquet)"
        engines = {
            "duckdb": lambda q: duck.execute(q.format(t="src")).to_arrow_table(),
            "chdb": lambda q: chdb.query(q.format(t=chdb_src), "ArrowTable"),
        }
        for q in queries(sensors, args.hours) if args.queries else []:
            r = {"query": q["name"]}
            peers = {}
            for name, run in engines.items():
                times, res = timed(lambda run=run, sql=q[name]: run(sql), args.reps)
                r[f"{name}_ms"] = min(times) * 1e3
                peers[name] = res
            best = min(r["duckdb_ms"], r["chdb_ms"])
            for layout in wanted:
                sql = q["weir"].format(t=layouts[layout])
                times, res = timed(lambda sql=sql: weir(sql), args.reps)
                r[f"weir_{layout}_ms"] = min(times) * 1e3
                r[f"weir_{layout}_ratio"] = r[f"weir_{layout}_ms"] / best
                r[f"weir_{layout}_match"] = same_result(res, peers["duckdb"])
            r["chdb_match"] = same_result(peers["chdb"], peers["duckdb"])
            results["queries"].append(r)
            line = f"{q['name']:48s} duckdb {r['duckdb_ms']:8.0f}  chdb {r['chdb_ms']:8.0f}"
            for layout in wanted:
                line += (f"  weir/{layout} {r[f'weir_{layout}_ms']:8.0f} ({r[f'weir_{layout}_ratio']:.2f}x"
                         f"{'' if r[f'weir_{layout}_match'] else ' MISMATCH'})")
            print(line, flush=True)
        conn.close()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        # Weir's bytes on disk (both layouts' tables, metadata, catalog).
        results["weir_bytes"] = sum(f.stat().st_size for f in data.rglob("*")
                                    if f.is_file() and "sensors_adbc" not in str(f))
        shutil.rmtree(work, ignore_errors=True)
    return results


def bulk_paths(conn, path: Path) -> dict:
    """Issue 21 item 4: the bulk paths against the encode ceiling, on the
    same rows in the same run: pyarrow writing them as zstd Parquet (one
    thread, in memory to a local file) beside `adbc_ingest` into a new Weir
    table (Flight SQL DoPut: decode, conform, encode, commit)."""
    table = pq.read_table(path)
    n = table.num_rows
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        pq.write_table(table, f"{d}/x.parquet", compression="zstd")
        ceiling = time.perf_counter() - t0
    with conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.adbc_ingest("sensors_adbc", table, mode="create", db_schema_name="public")
        adbc = time.perf_counter() - t0
        cur.execute("SELECT count(*) FROM public.sensors_adbc")
        assert cur.fetchone()[0] == n
    r = {"rows": n, "ceiling_rows_per_s": n / ceiling, "adbc_rows_per_s": n / adbc}
    print(f"bulk: {n:,} rows; pyarrow zstd encode {r['ceiling_rows_per_s']:,.0f} rows/s, "
          f"adbc_ingest {r['adbc_rows_per_s']:,.0f} rows/s", flush=True)
    return r


def write_growth(out: Path, runs: list[dict], layouts: list[str]) -> None:
    """How each query's time grows with the table (first size = 1)."""
    base = runs[0]
    sizes = " / ".join(f"{r['sensors']:,}" for r in runs)
    lines = [f"# Generic table: growth with the fleet ({sizes} sensors x {base['hours']} h)", "",
             "Time in ms at each size, and the factor over the first size; the table grows "
             + ", ".join(f"{r['rows'] / base['rows']:.0f}x" for r in runs[1:]) + " in rows.", ""]
    engines = [("DuckDB", "duckdb_ms"), ("chDB", "chdb_ms")] + [(f"Weir {x}", f"weir_{x}_ms") for x in layouts]
    lines += ["| query | " + " | ".join(e for e, _ in engines) + " |", "|---|" + "---:|" * len(engines)]
    for i, q in enumerate(base["queries"]):
        cells = [q["query"]]
        for _, key in engines:
            vals = [r["queries"][i][key] for r in runs]
            cells.append(" → ".join(f"{v:,.0f}" for v in vals)
                         + "".join(f" ({v / vals[0]:.1f}x)" for v in vals[1:]))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Ratios to the best peer per size:", "",
              "| query | " + " | ".join(f"{x} @ {r['sensors']:,}" for r in runs for x in layouts) + " |",
              "|---|" + "---:|" * (len(runs) * len(layouts))]
    for i, q in enumerate(base["queries"]):
        cells = [q["query"]] + [f"{r['queries'][i][f'weir_{x}_ratio']:.2f}" for r in runs for x in layouts]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Weir's bytes on disk (both layouts): "
              + ", ".join(f"{r['sensors']:,} sensors {r.get('weir_bytes', 0) / 2**30:.1f} GiB" for r in runs)]
    (out / "growth.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        fig, axes = plt.subplots(1, len(base["queries"]), figsize=(3 * len(base["queries"]), 3.5))
        xs = [r["rows"] / 1e6 for r in runs]
        for i, ax in enumerate(axes):
            for label, key in engines:
                ax.plot(xs, [r["queries"][i][key] for r in runs], marker="o", label=label)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(base["queries"][i]["query"], fontsize=7)
            ax.set_xlabel("M rows", fontsize=7)
        axes[0].set_ylabel("ms (min)")
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(out / "growth.png", dpi=110)
    except ImportError:
        pass


def write_report(out: Path, results: dict, layouts: list[str]) -> None:
    lines = [f"# Generic table: {results['sensors']:,} sensors x {results['hours']} h at 1 Hz "
             f"({results['rows']:,} rows, {results['source_bytes'] / 2**20:,.0f} MiB of Parquet)", ""]
    if "own" in results["load"]:
        own = results["load"]["own"]
        lines += [f"`weir import`: {own['seconds']:.1f} s ({own['rows_per_s']:,.0f} rows/s)", ""]
    if "bulk" in results:
        b = results["bulk"]
        ceiling = b["ceiling_rows_per_s"]
        lines += [f"Bulk paths vs the encode ceiling (pyarrow zstd Parquet encode of {b['rows']:,} of the same rows, "
                  f"one thread): ceiling {ceiling:,.0f} rows/s; `adbc_ingest` {b['adbc_rows_per_s']:,.0f} rows/s "
                  f"({b['adbc_rows_per_s'] / ceiling:.0%})"
                  + (f"; `weir import` {own['rows_per_s']:,.0f} rows/s ({own['rows_per_s'] / ceiling:.0%})"
                     if "own" in results["load"] else "") + ".", ""]
    head = "| query | DuckDB | chDB | " + " | ".join(f"Weir {x} | ratio" for x in layouts) + " |"
    lines += ["Minimum of the timed runs, ms; ratio = Weir / best peer.", "", head,
              "|" + "---|" * (3 + 2 * len(layouts))]
    for r in results["queries"]:
        cells = [r["query"], f"{r['duckdb_ms']:,.0f}", f"{r['chdb_ms']:,.0f}"]
        for x in layouts:
            mark = "" if r[f"weir_{x}_match"] else " (MISMATCH)"
            cells += [f"{r[f'weir_{x}_ms']:,.0f}", f"{r[f'weir_{x}_ratio']:.2f}{mark}"]
        lines.append("| " + " | ".join(cells) + " |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415

        if not results["queries"]:
            plot_bulk(plt, out, results)
            return
        names = [r["query"] for r in results["queries"]]
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / (2 + len(layouts))
        series = [("DuckDB", "duckdb_ms"), ("chDB", "chdb_ms")] + [(f"Weir {x}", f"weir_{x}_ms") for x in layouts]
        for i, (label, key) in enumerate(series):
            ax.bar([j + i * width for j in range(len(names))], [r[key] for r in results["queries"]], width,
                   label=label)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(names))])
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=7)
        ax.set_ylabel("ms (min)")
        ax.set_yscale("log")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "plot.png", dpi=110)
    except ImportError:
        pass



def plot_bulk(plt, out: Path, results: dict) -> None:
    """Without the query suite: the bulk paths beside the encode ceiling."""
    bars = {}
    if "bulk" in results:
        bars["pyarrow zstd encode\n(ceiling, 1 thread)"] = results["bulk"]["ceiling_rows_per_s"]
    if "own" in results["load"]:
        bars["weir import"] = results["load"]["own"]["rows_per_s"]
    if "bulk" in results:
        bars["adbc_ingest"] = results["bulk"]["adbc_rows_per_s"]
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(list(bars), [v / 1e6 for v in bars.values()], color=["grey", "tab:blue", "tab:orange"][: len(bars)])
    ceiling = results.get("bulk", {}).get("ceiling_rows_per_s")
    for i, v in enumerate(bars.values()):
        label = f"{v / 1e6:.1f} M" + (f"\n{v / ceiling:.0%}" if ceiling and i else "")
        ax.text(i, v / 1e6, label, ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, max(bars.values()) / 1e6 * 1.2)
    ax.set_ylabel("M rows/s")
    ax.set_title(f"bulk paths, {results['rows']:,} rows", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "plot.png", dpi=110)


if __name__ == "__main__":
    sys.exit(main())
