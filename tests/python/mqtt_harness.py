"""A real Mosquitto broker on 127.0.0.1 (tests/scripts/mosquitto.sh) and helpers
to publish to it (paho-mqtt) and to wait on Weir's MQTT log lines."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

import paho.mqtt.client as mqtt

from kafka_harness import free_port
from weir_harness import REPO_ROOT

SCRIPT = REPO_ROOT / "tests" / "scripts" / "mosquitto.sh"


def _run(*args: str) -> None:
    subprocess.run(["bash", str(SCRIPT), *args], check=True,
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


class Mosquitto:
    """Mosquitto with persistence in ``home``; optional users (password file)
    and a TLS listener with a CA made for the test."""

    def __init__(self, home: Path, users: Optional[Dict[str, str]] = None, tls: bool = False):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        _run("install")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.users = users or {}
        if self.users:
            passwd = self.home / "passwd"
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-c"] if i == 0 else []
                subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, password],
                               check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if tls:
            make_certs(self.home)
        self.start()

    def start(self) -> None:
        args = ["up", str(self.home), str(self.port)]
        if self.tls_port:
            args.append(str(self.tls_port))
        _run(*args)

    def stop(self) -> None:
        _run("down", str(self.home))

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, name: str, user: str = "", password: str = "", tls: bool = False) -> str:
        auth = f"{user}:{password}@" if user else ""
        if tls:
            return f"mqtts://{auth}127.0.0.1:{self.tls_port}#{name}"
        return f"mqtt://{auth}127.0.0.1:{self.port}#{name}"

    def publish(self, messages: Iterable[Tuple[str, bytes, int]], user: str = "",
                password: str = "") -> int:
        """Publishes (topic, payload, qos) in order; returns once the broker
        acknowledged every QoS 1 message."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"pub-{uuid.uuid4().hex[:8]}", clean_session=True)
        client.max_inflight_messages_set(200)
        if user:
            client.username_pw_set(user, password)
        client.connect("127.0.0.1", self.port)
        client.loop_start()
        try:
            infos = [client.publish(t, p, qos=q) for t, p, q in messages]
            for info in infos:
                info.wait_for_publish(timeout=30)
                assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
            return len(infos)
        finally:
            client.disconnect()
            client.loop_stop()


def make_certs(home: Path) -> None:
    """A CA (ca.pem) and a server certificate for 127.0.0.1 signed by it."""
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=home,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=weir-test-ca",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1")
    (home / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    # A second, unrelated CA: trusting it must fail the handshake.
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key",
         "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=someone-else")


def point(i: int, device: str = "", metric: str = "") -> bytes:
    """JSON point ``i`` (value i, a unique timestamp); device/metric from the
    topic template unless given."""
    body = {"value": i, "ts": 1_767_225_600_000 + i}
    if device:
        body["device_id"] = device
    if metric:
        body["metric"] = metric
    return json.dumps(body).encode()


def log_count(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text)


def wait_log(path: Path, text: str, count: int = 1, timeout: float = 60, proc=None) -> None:
    """Waits until ``text`` appears ``count`` times in the log at ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_count(path, text) >= count:
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"`{text}` not logged {count}x in {path}:\n"
                         f"{path.read_text(errors='replace')[-6000:]}")
