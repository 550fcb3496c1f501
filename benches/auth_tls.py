"""Flight SQL connection cost: handshake + first query latency over ADBC with
and without TLS and authentication, plus the steady per-query latency on an
open connection (what the token check adds to every call).

Four servers on loopback: plain/open, plain/users, TLS/open, TLS/users.
"New connection" = ADBC connect (TLS handshake; Basic→Bearer Flight
handshake when users exist: one Argon2 verification) + `SELECT 1` fetched.

Usage: benches/run.sh auth [--reps 30]   (--weir PATH to time another build)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "python"))
from tls_certs import make_server_certs  # noqa: E402
import weir_harness  # noqa: E402

TLS_ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


def select_one(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchall() == [(1,)]


def ms(samples) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, int(len(s) * 0.9))]
    return f"{statistics.median(s) * 1e3:8.2f} {p90 * 1e3:8.2f} {s[0] * 1e3:8.2f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--weir", type=Path, default=HERE.parent / "target" / "release" / "weir")
    args = ap.parse_args()
    weir_harness.weir_binary = lambda: args.weir  # the harness starts this build

    work = Path(tempfile.mkdtemp(prefix="weir-bench-auth-"))
    certs = make_server_certs(work / "certs")
    password_hash = subprocess.run(
        [str(args.weir), "hash-password"], input="bench-pw", capture_output=True, text=True,
        check=True,
    ).stdout.strip()
    users = ["--users", f"bench:admin:{password_hash}"]
    tls = ["--tls-cert", str(certs.cert_path), "--tls-key", str(certs.key_path)]
    setups = {
        "plain, open": ([], "grpc", {}),
        "plain, users": (users, "grpc", {"username": "bench", "password": "bench-pw"}),
        "TLS, open": (tls, "grpc+tls", {TLS_ROOT_CERTS: certs.ca_pem}),
        "TLS, users": (
            tls + users,
            "grpc+tls",
            {TLS_ROOT_CERTS: certs.ca_pem, "username": "bench", "password": "bench-pw"},
        ),
    }
    print(f"weir: {args.weir}; {args.reps} reps; times in ms (median, p90, min)")
    print(f"{'setup':<14} {'connect+handshake+SELECT 1':>28}   {'SELECT 1 on open connection':>28}")
    for i, (name, (flags, scheme, kwargs)) in enumerate(setups.items()):
        server = weir_harness.WeirServer(work / f"data-{i}", flags)
        try:
            uri = f"{scheme}://127.0.0.1:{server.port}"
            first = []
            for _ in range(args.reps + 1):
                t0 = time.perf_counter()
                conn = flightsql.connect(uri, db_kwargs=dict(kwargs), autocommit=True)
                select_one(conn)
                first.append(time.perf_counter() - t0)
                conn.close()
            first = first[1:]  # the first connection warms the server up
            steady = []
            with flightsql.connect(uri, db_kwargs=dict(kwargs), autocommit=True) as conn:
                select_one(conn)
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    select_one(conn)
                    steady.append(time.perf_counter() - t0)
            print(f"{name:<14} {ms(first):>28}   {ms(steady):>28}")
        finally:
            server.discard()
    return 0


if __name__ == "__main__":
    sys.exit(main())
