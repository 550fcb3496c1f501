"""docker-compose.yml stays correct without a Docker engine: Compose itself
validates it (`docker-compose config`), and every Weir service's command and
WEIR_* settings must be ones the binary accepts, so a renamed flag breaks
this test rather than the production stack."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from weir_harness import weir_binary

ROOT = Path(__file__).resolve().parents[2]


def compose_config() -> dict:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is installed by tests/scripts/docker-compose.sh"
    out = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                         text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "WEIR_USERS": "admin:admin:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA"})
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def weir_help(*subcommand: str) -> str:
    out = subprocess.run([str(weir_binary()), *subcommand, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def subcommand_of(command: list[str]) -> list[str]:
    """`["maintain", "schedule", "--maintenance-tick", "30s"]` → `["maintain", "schedule"]`."""
    words = []
    for word in command:
        if word.startswith("-"):
            break
        words.append(word)
    return words


def test_compose_file_is_valid_and_complete():
    cfg = compose_config()
    services = cfg["services"]
    for needed in ("minio", "minio-init", "postgres", "kafka", "mosquitto", "weir-serve", "weir-ingest",
                   "weir-maintain"):
        assert needed in services, f"service {needed} missing"
    weir = {name: svc for name, svc in services.items() if svc.get("image") == "weir:latest"}
    assert set(weir) == {"weir-serve", "weir-ingest", "weir-maintain"}
    assert subcommand_of(weir["weir-maintain"]["command"]) == ["maintain", "schedule"]
    # The shared lakehouse: every Weir process on the same catalog and warehouse.
    shared = {(svc["environment"]["WEIR_CATALOG_URI"], svc["environment"]["WEIR_WAREHOUSE"])
              for svc in weir.values()}
    assert len(shared) == 1 and next(iter(shared))[0].startswith("postgres://")
    assert next(iter(shared))[1].startswith("s3://")
    # The init script and registry DDL the PostgreSQL service mounts exist.
    for volume in services["postgres"]["volumes"]:
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith("/") and "sql/postgres" in source:
            assert Path(source).is_file(), source


def test_users_must_be_given():
    exe = shutil.which("docker-compose")
    out = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode != 0 and "WEIR_USERS" in out.stderr, out.stderr


def test_weir_services_use_settings_the_binary_accepts():
    services = compose_config()["services"]
    for name, svc in services.items():
        if svc.get("image") != "weir:latest":
            continue
        sub = subcommand_of(svc["command"])
        text = weir_help(*sub)
        flags = set(re.findall(r"--[a-z0-9-]+", text))
        envs = set(re.findall(r"env: (WEIR_[A-Z0-9_]+)[=\]]", text))
        for word in svc["command"][len(sub):]:
            if word.startswith("--"):
                assert word.split("=")[0] in flags, f"{name}: `weir {' '.join(sub)}` has no flag {word}"
        for key in svc["environment"]:
            if key.startswith("WEIR_"):
                assert key in envs, f"{name}: `weir {' '.join(sub)}` does not read {key}"
