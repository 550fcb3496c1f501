"""Hostile input cannot escalate, crash or destroy (issue 24): orphan cleanup
of one table never deletes another table's files, a table that cannot be
read does not break listing its schema, over-long names are refused as
INVALID_ARGUMENT, and the harness finds the binary in CARGO_TARGET_DIR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import adbc_driver_manager
import pytest
from pyiceberg.catalog.sql import SqlCatalog

import weir_harness
from weir_harness import connect, execute, fetch_rows, fetch_scalar, weir_binary

Status = adbc_driver_manager.AdbcStatusCode
GRPC_INVALID_ARGUMENT = 3


def orphans(data: Path, table: str) -> dict:
    out = subprocess.run([str(weir_binary()), "maintain", "orphans", table, "--data-dir", str(data),
                          "--older-than", "1s", "--allow-short-age", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return {r["table"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


def pyiceberg_rows(data: Path, table: str) -> int:
    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    return cat.load_table(table).scan().to_arrow().num_rows


def table_names(conn) -> set[str]:
    return {r[2] for r in fetch_rows(conn, "SHOW TABLES") if r[1] == "public"}


def test_orphan_cleanup_leaves_a_path_named_tables_files(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.victim (id BIGINT, v DOUBLE)")
    execute(conn, 'CREATE TABLE public."victim/data" (id BIGINT, v DOUBLE)')
    execute(conn, "CREATE TABLE public.victim2 (id BIGINT, v DOUBLE)")
    execute(conn, "INSERT INTO public.victim VALUES (1, 1.0), (2, 2.0), (3, 3.0)")
    execute(conn, 'INSERT INTO public."victim/data" VALUES (1, 1.0), (2, 2.0)')
    execute(conn, "INSERT INTO public.victim2 VALUES (1, 1.0)")
    before = {p for p in (data / "warehouse").rglob("*") if p.is_file()}
    time.sleep(1.5)  # every file is older than --older-than 1s

    for table in ("public.victim", "public.victim/data", "public.victim2"):
        report = orphans(data, table)[table]
        assert report["orphans_deleted"] == 0, report

    assert {p for p in (data / "warehouse").rglob("*") if p.is_file()} == before
    assert fetch_scalar(conn, "SELECT count(*) FROM public.victim") == 3
    assert fetch_scalar(conn, 'SELECT count(*) FROM public."victim/data"') == 2
    assert fetch_scalar(conn, "SELECT count(*) FROM public.victim2") == 1
    assert {"victim", "victim/data", "victim2"} <= table_names(conn)
    conn.close()
    assert pyiceberg_rows(data, "public.victim") == 3
    assert pyiceberg_rows(data, "public.victim/data") == 2
    assert pyiceberg_rows(data, "public.victim2") == 1
    # New tables no longer nest: the path-like name is one directory.
    victim_dir = data / "warehouse" / "public" / "victim"
    assert not (victim_dir / "data" / "metadata").exists()


def test_a_table_that_cannot_be_read_does_not_break_its_schema(weir_factory, tmp_path):
    """A table whose files are gone (e.g. deleted by an older Weir's orphan
    cleanup): listed, other tables answer, reading it names it."""
    data = tmp_path / "data"
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.ok (id BIGINT)")
    execute(conn, "CREATE TABLE public.broken (id BIGINT)")
    execute(conn, "INSERT INTO public.ok VALUES (1), (2)")
    execute(conn, "INSERT INTO public.broken VALUES (1)")
    shutil.rmtree(data / "warehouse" / "public" / "broken")
    # A fresh connection and statements after the damage (no cached table).
    server.stop()
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    assert {"ok", "broken"} <= table_names(conn)
    assert fetch_scalar(conn, "SELECT count(*) FROM public.ok") == 2
    with pytest.raises(adbc_driver_manager.Error) as excinfo:
        fetch_rows(conn, "SELECT count(*) FROM public.broken")
    assert "public.broken" in str(excinfo.value), excinfo.value
    assert "metadata" in str(excinfo.value), excinfo.value
    conn.close()


def test_an_over_long_name_is_an_invalid_argument(weir_factory, tmp_path):
    server = weir_factory(tmp_path / "data", ["--maintenance=false"])
    conn = connect(server.uri)
    long = "t" * 5000
    for sql in (f'CREATE TABLE public."{long}" (id BIGINT)',
                f'CREATE SCHEMA "{long}"',
                f'CREATE TABLE "{long}".t (id BIGINT)'):
        with pytest.raises(adbc_driver_manager.Error) as excinfo:
            execute(conn, sql)
        err = excinfo.value
        assert err.status_code == Status.INVALID_ARGUMENT, err
        assert err.vendor_code == GRPC_INVALID_ARGUMENT, err
        assert "5000 bytes" in str(err), err
    # The server is fine, nothing was created.
    execute(conn, "CREATE TABLE public.fine (id BIGINT)")
    assert table_names(conn) == {"fine"}
    conn.close()


def test_the_harness_finds_the_binary_in_cargo_target_dir(monkeypatch, tmp_path):
    binary = tmp_path / "target" / "debug" / "weir"
    binary.parent.mkdir(parents=True)
    binary.write_bytes(b"")
    monkeypatch.delenv("WEIR_BIN", raising=False)
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path / "target"))
    assert weir_harness.weir_binary() == binary
    monkeypatch.setenv("WEIR_BIN", str(binary))
    monkeypatch.setenv("CARGO_TARGET_DIR", str(tmp_path / "elsewhere"))
    assert weir_harness.weir_binary() == binary


def test_run_sh_passes_cargo_target_dir_on():
    """tests/run.sh hands pytest the binary of Cargo's actual target directory."""
    script = (weir_harness.REPO_ROOT / "tests" / "run.sh").read_text()
    assert 'WEIR_BIN="$root/target/debug/weir"' not in script
    assert "target_directory" in script and 'WEIR_BIN="$target_dir/debug/weir"' in script
    if shutil.which("cargo"):
        out = subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"],
                             cwd=weir_harness.REPO_ROOT, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "CARGO_TARGET_DIR": "/tmp/weir-elsewhere"})
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["target_directory"] == "/tmp/weir-elsewhere"
