"""Configuration precedence: flag > WEIR_* environment variable > weir.toml > default.

Each case starts the real binary with the demo on and reads back the number of
simulated devices it was configured with (every demo commit covers all devices).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from weir_harness import WeirServer, connect, fetch_scalar, weir_binary

DEVICES_SQL = "SELECT count(DISTINCT device_id) FROM silver.points"


def configured_devices(server: WeirServer, timeout_s: float = 60) -> int:
    """Distinct demo devices once the first commit is visible."""
    with connect(server.uri) as conn:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            n = fetch_scalar(conn, DEVICES_SQL)
            if n:
                return n
            time.sleep(0.1)
    raise AssertionError(f"no demo rows within {timeout_s} s\n{server.logs()}")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "weir.toml"
    path.write_text('demo = true\n[demo-settings]\ndemo-devices = 3\ndemo-interval-ms = 100\n')
    return path


def start(weir_factory, tmp_path: Path, *args: str) -> WeirServer:
    return weir_factory(tmp_path / "data", list(args))


def test_config_file_applies(weir_factory, tmp_path, config_file, monkeypatch):
    monkeypatch.delenv("WEIR_DEMO_DEVICES", raising=False)
    server = start(weir_factory, tmp_path, "--config", str(config_file))
    assert configured_devices(server) == 3


def test_env_beats_file(weir_factory, tmp_path, config_file, monkeypatch):
    monkeypatch.setenv("WEIR_DEMO_DEVICES", "2")
    server = start(weir_factory, tmp_path, "--config", str(config_file))
    assert configured_devices(server) == 2


def test_flag_beats_env(weir_factory, tmp_path, config_file, monkeypatch):
    monkeypatch.setenv("WEIR_DEMO_DEVICES", "2")
    server = start(weir_factory, tmp_path, "--config", str(config_file), "--demo-devices", "4")
    assert configured_devices(server) == 4


def test_unknown_setting_is_rejected(tmp_path):
    bad = tmp_path / "weir.toml"
    bad.write_text("lissen = '127.0.0.1:1'\n")
    proc = subprocess.run(
        [str(weir_binary()), "serve", "--config", str(bad), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "unknown setting `lissen`" in proc.stderr
