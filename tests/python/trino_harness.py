"""A real Trino server (one coordinator that is its own worker, Java 25) on a
free 127.0.0.1 port, started by ``tests/scripts/trino.sh start`` with the
catalog files the test writes, and queried through the ``trino`` DBAPI
client (PyPI).

``TrinoServer(home, {"weir": props})`` writes ``home/weir.properties``,
starts Trino on it and returns once ``GET /v1/info`` says ``"starting":
false``; ``cursor()`` runs SQL in the session time zone UTC; ``stop()``
ends the server (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

from kafka_harness import free_port
from weir_harness import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "scripts" / "trino.sh"


def trino_installed() -> Optional[Path]:
    """The server directory of `trino.sh install`, or None when it was not run."""
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True)
    return Path(out.stdout.strip()) if out.returncode == 0 else None


def properties(props: Dict[str, str]) -> str:
    return "".join(f"{k}={v}\n" for k, v in props.items())


class TrinoServer:
    def __init__(self, home: Path, catalogs: Dict[str, Dict[str, str]], user: str = "weir"):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.catalogs = list(catalogs)
        files: List[str] = []
        for name, props in catalogs.items():
            path = self.home / f"{name}.properties"
            path.write_text(properties(props))
            files.append(str(path))
        self.port = free_port()
        out = subprocess.run(["bash", str(SCRIPT), "start", str(self.home / "server"), str(self.port), *files],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"trino.sh start failed:\n{out.stdout}\n{out.stderr}\n{self.logs()}")
        try:
            info = self.info()
            if info.get("starting") is not False:
                raise RuntimeError(f"Trino still starting after trino.sh start: {info}")
            self._wait_for_worker()
        except BaseException:
            self.stop()
            raise

    def _wait_for_worker(self, timeout: float = 120) -> None:
        """Started is not yet schedulable: the coordinator runs queries once it
        has discovered itself as a worker *with each catalog loaded* (the node's
        announcement lists its catalogs; before it is seen: NO_NODES_AVAILABLE).
        An active node in ``system.runtime.nodes`` is not enough: a query on a
        connector catalog can still fail for a few seconds after it (CI, stop 27),
        so each configured catalog is queried until it answers."""
        import trino

        deadline = time.monotonic() + timeout
        for catalog in self.catalogs:
            while True:
                conn = self.connect(catalog=catalog)
                try:
                    cur = conn.cursor()
                    cur.execute(f'SELECT count(*) FROM "{catalog}".information_schema.schemata')
                    cur.fetchall()
                    break
                except trino.exceptions.TrinoQueryError as e:
                    if e.error_name != "NO_NODES_AVAILABLE":
                        raise
                    last = e.message
                finally:
                    conn.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Trino cannot run queries on catalog {catalog} after {timeout} s ({last}):\n{self.logs()}")
                time.sleep(0.2)

    def info(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/info", timeout=10) as r:
            return json.load(r)

    def connect(self, catalog: str = "weir", schema: Optional[str] = None):
        import trino  # the PyPI client, in tests/python/requirements.txt

        return trino.dbapi.connect(host="127.0.0.1", port=self.port, user=self.user, catalog=catalog,
                                   schema=schema, http_scheme="http", timezone="UTC",
                                   request_timeout=300)

    def logs(self) -> str:
        parts = []
        for path in (self.home / "server" / "trino.out", self.home / "server" / "data" / "var" / "log" / "server.log"):
            if path.exists():
                parts.append(f"--- {path}\n{path.read_text(errors='replace')[-8000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.home / "server")],
                       capture_output=True, text=True, timeout=120)
