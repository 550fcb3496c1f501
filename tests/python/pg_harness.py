"""A throwaway PostgreSQL cluster for tests (reusable: any test needing a
PostgreSQL can use ``PostgresServer``).

The server binaries come from the Debian package, installed when missing by
``tests/scripts/postgres.sh``. PostgreSQL refuses to run as root, so when the
tests run as root (here and in CI) the cluster is created and run as the
``postgres`` user (made by the Debian package) through ``runuser``, in a
temporary directory that user owns. The server listens on 127.0.0.1 on a free
port with password (SCRAM) authentication; ``url`` is a ready
``postgres://user:pass@host:port/db`` URL.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
USER = "weir"
PASSWORD = "weir-test-pw"
DATABASE = "registry"


def postgres_bin_dir() -> Path:
    """The PostgreSQL bin directory (installs the package if needed)."""
    out = subprocess.run(
        [str(REPO_ROOT / "tests" / "scripts" / "postgres.sh")],
        check=True, capture_output=True, text=True, timeout=900,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One PostgreSQL cluster in a temporary directory; ``stop()``/``start()``
    keep the data and the port, ``destroy()`` removes everything."""

    def __init__(self) -> None:
        self.bin = postgres_bin_dir()
        self.run_as: List[str] = []
        self.dir = Path(tempfile.mkdtemp(prefix="weir-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.run_as = ["runuser", "-u", "postgres", "--"]
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.run_as:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--pwfile", str(pwfile),
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync",
        )
        self.start()
        self.psql_admin(f"CREATE DATABASE {DATABASE}", db="postgres")

    @property
    def url(self) -> str:
        return f"postgres://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}?sslmode=disable"

    def _run(self, *cmd: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [*self.run_as, *cmd], capture_output=True, text=True, timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def start(self) -> None:
        # -w waits until the server accepts connections.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", options, "-w", "start")

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def psql_admin(self, sql: str, db: Optional[str] = None) -> str:
        return self._run(
            str(self.bin / "psql"), "-h", str(self.dir), "-p", str(self.port), "-U", USER,
            "-d", db or DATABASE, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-At", "-c", sql,
        )

    def psql(self, sql: str) -> List[List[str]]:
        """Runs SQL (several statements allowed); rows of the last as lists of text."""
        out = self.psql_admin(sql)
        return [line.split("|") for line in out.splitlines() if line]

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def destroy(self) -> None:
        try:
            self.stop()
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# The device registry (devices, tags) of the gateway schema
# (docs/seeds/README.md, sections 2.1 devices and 2.2 tags),
# used by the federation and the Modbus registry tests.
# One definition of the registry for the tests and docker-compose.yml.
REGISTRY_DDL = (Path(__file__).resolve().parents[2] / "sql" / "postgres" / "registry.sql").read_text()
