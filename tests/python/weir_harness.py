"""Start/stop the ``weir`` binary and small ADBC query helpers for the tests."""

from __future__ import annotations

import itertools
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, List, Optional, Sequence

import adbc_driver_flightsql.dbapi as flightsql_dbapi
import pyarrow as pa

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120.0
SHUTDOWN_TIMEOUT_S = 30.0
READY_RE = re.compile(r"weir: Flight SQL listening on 127\.0\.0\.1:(\d+)")

# Servers whose logs are attached to the report of a failing test.
LIVE_SERVERS: "set[WeirServer]" = set()
_counter = itertools.count()


def weir_binary() -> Path:
    """The binary under test: `WEIR_BIN`, else `debug/weir` in Cargo's target
    directory (`CARGO_TARGET_DIR`, relative to the repository when relative,
    as Cargo reads it; default `target/`)."""
    path = Path(os.environ.get("WEIR_BIN") or default_target_dir() / "debug" / "weir")
    if not path.is_file():
        raise RuntimeError(
            f"weir binary not found at {path}: build it with `cargo build` "
            "or point WEIR_BIN at it"
        )
    return path


def hash_password(password: str) -> str:
    """An Argon2 hash for ``--users`` (``weir hash-password``)."""
    out = subprocess.run(
        [str(weir_binary()), "hash-password"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def default_target_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    return REPO_ROOT / target if target else REPO_ROOT / "target"


class WeirServer:
    """One running ``weir serve`` process bound to an ephemeral port."""

    def __init__(self, data_dir: Path, extra_args: Sequence[str] = ()):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.data_dir.parent / f"weir-{next(_counter)}.stderr.log"
        self.stdout_tail: deque = deque(maxlen=200)
        self.killed = False
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._stderr_file = open(self.stderr_path, "wb")
        cmd = [
            str(weir_binary()),
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(self.data_dir),
            *extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr_file,
            text=True,
            bufsize=1,
        )
        LIVE_SERVERS.add(self)
        self._reader = threading.Thread(target=self._drain_stdout, daemon=True)
        self._reader.start()
        try:
            self.port = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.uri = f"grpc://127.0.0.1:{self.port}"

    def _drain_stdout(self) -> None:
        # Runs for the whole life of the process so the pipe never fills up.
        for line in self.proc.stdout:
            line = line.rstrip("\r\n")
            self.stdout_tail.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self) -> int:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RuntimeError(self._startup_failure("not ready in time"))
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                raise RuntimeError(self._startup_failure("not ready in time")) from None
            if line is None:
                raise RuntimeError(self._startup_failure("stdout closed before ready line"))
            match = READY_RE.fullmatch(line.strip())
            if match:
                return int(match.group(1))

    def _startup_failure(self, why: str) -> str:
        return f"weir failed to start ({why}); exit code {self.proc.poll()}\n{self.logs()}"

    def logs(self) -> str:
        if not self._stderr_file.closed:
            self._stderr_file.flush()
        stderr = self.stderr_path.read_text(errors="replace")[-20000:]
        stdout = "\n".join(self.stdout_tail)
        return f"--- weir stdout (tail)\n{stdout}\n--- weir stderr ({self.stderr_path})\n{stderr}"

    def stop(self) -> Optional[int]:
        """SIGTERM, wait up to 30 s, then SIGKILL.  Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        self._stderr_file.close()
        return self.proc.returncode

    def discard(self) -> None:
        self.stop()
        LIVE_SERVERS.discard(self)


# --- ADBC helpers --------------------------------------------------------------


def connect(uri: str):
    return flightsql_dbapi.connect(uri, autocommit=True)


def fetch_table(conn, sql: str, parameters: Any = None) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetch_arrow_table()


def fetch_rows(conn, sql: str, parameters: Any = None) -> List[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, parameters)
        return cur.fetchall()


def fetch_scalar(conn, sql: str, parameters: Any = None) -> Any:
    rows = fetch_rows(conn, sql, parameters)
    assert len(rows) == 1 and len(rows[0]) == 1, f"expected one value from {sql!r}, got {rows}"
    return rows[0][0]


def execute(conn, sql: str) -> None:
    """Run a DDL/DML statement and consume whatever result it returns."""
    with conn.cursor() as cur:
        cur.execute(sql)
        cur.fetchall()


HTTP_RE = re.compile(r"weir: HTTP listening on 127\.0\.0\.1:(\d+) ")


def http_port(server: WeirServer) -> int:
    """The endpoint's port, from the line printed before the Flight one."""
    for line in server.stdout_tail:
        m = HTTP_RE.match(line)
        if m:
            return int(m.group(1))
    raise AssertionError(f"no HTTP listening line\n{server.logs()}")
