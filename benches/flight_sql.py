"""Flight SQL benchmark (issue 7): bulk-ingest throughput through ADBC
`adbc_ingest` (rows/s, one append snapshot per call) and query latency
p50/p95 of N concurrent ADBC connections that ingest and query at once.

Usage: python benches/flight_sql.py [--rows 1000000] [--connections 50]
       [--rounds 5] [--weir target/release/weir]
(run with the test venv, ~/.cache/weir/test-venv/bin/python; the results
of every query are checked, a wrong answer fails the run)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))
from flight_complete_helpers import connect_with_session, set_session_option  # noqa: E402
from weir_harness import WeirServer, connect, execute, fetch_rows, fetch_scalar  # noqa: E402


def points(start: int, n: int) -> pa.Table:
    ids = pa.array(range(start, start + n), pa.int64())
    return pa.table(
        {
            "ts": pa.array(range(start * 1_000_000, (start + n) * 1_000_000, 1_000_000), pa.timestamp("us", tz="UTC")),
            "device_id": pa.array([f"d{i % 2000:05d}" for i in range(start, start + n)]),
            "metric": pa.array(["temp"] * n),
            "value": pa.compute.multiply(ids.cast(pa.float64()), 0.25),
            "id": ids,
        }
    )


def bench_ingest(uri: str, rows: int) -> dict:
    conn = connect(uri)
    try:
        # Batches of 64 Ki rows: the Go driver sends each batch as one gRPC
        # message and refuses messages over 16 MiB.
        data = pa.Table.from_batches(points(0, rows).to_batches(max_chunksize=65536))
        with conn.cursor() as cur:
            cur.adbc_ingest("bench_warmup", points(0, 1000), mode="replace")
            start = time.perf_counter()
            written = cur.adbc_ingest("bench_ingest", data, mode="replace")
            seconds = time.perf_counter() - start
        assert written == rows, written
        assert fetch_rows(conn, "SELECT count(*), sum(id) FROM bench_ingest") == [(rows, rows * (rows - 1) // 2)]
        return {"rows": rows, "seconds": seconds, "rows_per_s": rows / seconds, "mb": data.nbytes / 2**20}
    finally:
        conn.close()


def bench_soak(uri: str, connections: int, rounds: int) -> dict:
    setup = connect(uri)
    execute(setup, "CREATE SCHEMA IF NOT EXISTS soak")
    with setup.cursor() as cur:
        cur.adbc_ingest("shared", points(0, 100_000), mode="replace", db_schema_name="soak")
    setup.close()
    latencies: list = []
    errors: list = []
    lock = threading.Lock()
    barrier = threading.Barrier(connections)
    expected_shared = fetch_shared_expected()

    def worker(i: int) -> None:
        try:
            conn = connect_with_session(uri)
            try:
                set_session_option(conn, "schema", "soak")
                barrier.wait(120)
                for r in range(rounds):
                    with conn.cursor() as cur:
                        cur.adbc_ingest(f"c{i}", points(i * 1_000_000 + r * 1000, 1000), mode="create_append" if r else "replace")
                    t0 = time.perf_counter()
                    got = fetch_scalar(conn, f"SELECT count(*) FROM c{i}")
                    t1 = time.perf_counter()
                    shared = fetch_rows(conn, "SELECT device_id, count(*), sum(id) FROM shared WHERE device_id < 'd00010' GROUP BY 1 ORDER BY 1")
                    t2 = time.perf_counter()
                    assert got == (r + 1) * 1000, (i, r, got)
                    assert shared == expected_shared, (i, r)
                    with lock:
                        latencies.extend([t1 - t0, t2 - t1])
            finally:
                conn.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"connection {i}: {e!r}")

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit("soak failed:\n" + "\n".join(errors[:10]))
    latencies.sort()
    return {
        "connections": connections,
        "queries": len(latencies),
        "p50_ms": statistics.median(latencies) * 1000,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1000,
        "max_ms": latencies[-1] * 1000,
        "wall_s": wall,
    }


def fetch_shared_expected() -> list:
    t = points(0, 100_000).to_pydict()
    acc: dict = {}
    for d, i in zip(t["device_id"], t["id"]):
        if d < "d00010":
            n, s = acc.get(d, (0, 0))
            acc[d] = (n + 1, s + i)
    return [(d, n, s) for d, (n, s) in sorted(acc.items())]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--weir", type=Path, default=HERE.parent / "target" / "release" / "weir")
    args = ap.parse_args()
    import os

    os.environ["WEIR_BIN"] = str(args.weir.resolve())
    server = WeirServer(Path(tempfile.mkdtemp(prefix="weir-bench-flight-")) / "data")
    try:
        ingest = bench_ingest(server.uri, args.rows)
        print(
            f"adbc_ingest: {ingest['rows']:,} rows ({ingest['mb']:.0f} MiB Arrow) in {ingest['seconds']:.2f} s "
            f"= {ingest['rows_per_s']:,.0f} rows/s"
        )
        soak = bench_soak(server.uri, args.connections, args.rounds)
        print(
            f"soak: {soak['connections']} connections, {soak['queries']} queries (each connection also ingesting): "
            f"p50 {soak['p50_ms']:.0f} ms, p95 {soak['p95_ms']:.0f} ms, max {soak['max_ms']:.0f} ms, wall {soak['wall_s']:.1f} s"
        )
    finally:
        server.stop()
    print(f"binary: {args.weir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
