"""`weir maintain compact` end to end: replace commits while the streaming
writer appends, kill -9 in the middle of compaction, PyIceberg reading the
result. (Issue 5; the long ≥5-minute soak runs with WEIR_SOAK_SECONDS=300.)"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pyiceberg.catalog.sql import SqlCatalog

from kafka_harness import KafkaBroker, assert_exactly_once, produce, wait_until, watermarks
from weir_harness import connect, execute, fetch_rows, fetch_scalar, weir_binary


def maintain(job: str, data: Path, *tables: str, extra=()) -> dict:
    """Runs `weir maintain <job> --json`; returns the reports by table."""
    out = subprocess.run([str(weir_binary()), "maintain", job, *tables, "--data-dir", str(data),
                          "--json", *extra], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, "\n".join(l for l in out.stderr.splitlines() if not l.lstrip().startswith(("at ", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9")))[-3000:]
    return {r["table"]: r for r in json.loads(out.stdout.strip().splitlines()[-1])}


def compact(data: Path, *tables: str, extra=()) -> dict:
    return maintain("compact", data, *tables, extra=extra)


def files_on_disk(data: Path, table: str) -> set[str]:
    ns, name = table.split(".")
    return {str(p) for p in (data / "warehouse" / ns / name / "data").rglob("*.parquet")}


def live_files(data: Path, table: str) -> list[str]:
    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    t = cat.load_table(table)
    return [task.file.file_path for task in t.scan().plan_files()]


def pyiceberg_totals(data: Path, table: str, column: str) -> tuple[int, float]:
    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    arrow = cat.load_table(table).scan(selected_fields=(column,)).to_arrow()
    return arrow.num_rows, float(sum(v for v in arrow.column(column).to_pylist() if v is not None))


def declare_table(tables_dir: Path, name: str, partition: bool = True, policy: str = "",
                  properties: str = "") -> None:
    """Writes `<tables_dir>/public/<name>.toml`: a (ts, v) table, optionally
    day-partitioned, with `[policy]` / `[properties]` lines."""
    folder = tables_dir / "public"
    folder.mkdir(parents=True, exist_ok=True)
    text = (f'namespace = "public"\nname = "{name}"\n' + ('partition = ["day(ts)"]\n' if partition else "") +
            '[[columns]]\nname = "ts"\ntype = "timestamptz"\nrequired = true\n'
            '[[columns]]\nname = "v"\ntype = "double"\n')
    if policy:
        text += "[policy]\n" + policy.strip() + "\n"
    if properties:
        text += "[properties]\n" + properties.strip() + "\n"
    (folder / f"{name}.toml").write_text(text)


def test_compaction_while_the_streaming_writer_appends(broker: KafkaBroker, weir_factory, tmp_path):
    partitions = 4
    topic = broker.create_topic("compact", partitions)
    data = tmp_path / "data"
    server = weir_factory(data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
                                 "--commit-interval-ms", "150", "--hot-interval-ms", "50"])
    conn = connect(server.uri)
    soak = float(os.environ.get("WEIR_SOAK_SECONDS", "20"))
    counts = {"good": 0, "bad": 0}
    stop = threading.Event()

    def feed():
        p = broker.producer()
        start = 0
        while not stop.is_set():
            c = produce(p, topic, partitions, range(start, start + 200), poison_every=100)
            counts["good"] += c["good"]
            counts["bad"] += c["bad"]
            start += 200
            time.sleep(0.1)

    feeder = threading.Thread(target=feed)
    feeder.start()
    rounds = []
    deadline = time.monotonic() + soak
    try:
        while time.monotonic() < deadline or len(rounds) < 3:
            time.sleep(2)
            rounds.append(compact(data, "silver.points", "bronze.raw_messages",
                                  extra=["--target-file-mb", "4"]))
    finally:
        stop.set()
        feeder.join()
    assert sum(r["silver.points"]["files_in"] for r in rounds) > 0, rounds
    ends = broker.end_offsets(topic, partitions)
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == ends or
               watermarks(conn, "bronze.raw_messages", topic), 60, "the writer catches up")
    wait_until(lambda: watermarks(conn, "silver.points", topic) == ends or
               watermarks(conn, "silver.points", topic), 60, "silver catches up")
    # Every record once, in Bronze, Silver and the dead letters.
    assert_exactly_once(conn, topic, counts, ends)
    good = counts["good"]
    expected_sum = float(fetch_scalar(conn, "SELECT sum(value) FROM silver.points"))
    conn.close()
    assert server.stop() == 0
    # One more round with the writer stopped, then check files and PyIceberg.
    compact(data, "silver.points", extra=["--target-file-mb", "4"])
    files = live_files(data, "silver.points")
    assert len(files) == len(set(files)), "a data file is referenced twice"
    assert all(Path(f.removeprefix("file://")).exists() for f in files), "a referenced file is missing"
    rows, total = pyiceberg_totals(data, "silver.points", "value")
    assert rows == good
    assert total == pytest.approx(expected_sum)
    assert total == pytest.approx(float(sum(range(0, counts["good"] + counts["bad"]))) -
                                  sum(i for i in range(counts["good"] + counts["bad"]) if i % 100 == 99))
    # Compaction made the files fewer: after the last round, one per
    # partition (day x device bucket), and the rounds rewrote many.
    assert len(files) == len({Path(f).parent for f in files}), files
    assert sum(r["silver.points"]["files_in"] for r in rounds) > sum(r["silver.points"]["files_out"] for r in rounds)
    # Expire everything expirable: the files left on disk are the live ones,
    # and the watermarks survive (a restarted writer re-ingests nothing).
    expired = maintain("expire", data, "silver.points", "bronze.raw_messages",
                       extra=["--older-than", "0s", "--retain-last", "1"])
    assert expired["silver.points"]["snapshots_expired"] > 0
    assert expired["silver.points"]["data_files_deleted"] > 0
    # Files of commits that lost a race (a flush refused after a partial
    # commit, an abandoned compaction group) are orphans: collected now that
    # no writer runs. Then only live files are left.
    maintain("orphans", data, "silver.points", extra=["--older-than", "0s", "--allow-short-age"])
    assert files_on_disk(data, "silver.points") == {f.removeprefix("file://") for f in live_files(data, "silver.points")}
    assert pyiceberg_totals(data, "silver.points", "value") == (rows, total)
    server = weir_factory(data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic])
    conn = connect(server.uri)
    assert watermarks(conn, "silver.points", topic) == ends
    assert watermarks(conn, "bronze.raw_messages", topic) == ends
    extra_batch = produce(broker.producer(), topic, partitions,
                          range(counts["good"] + counts["bad"], counts["good"] + counts["bad"] + 100),
                          poison_every=100)
    counts["good"] += extra_batch["good"]
    counts["bad"] += extra_batch["bad"]
    ends = broker.end_offsets(topic, partitions)
    wait_until(lambda: watermarks(conn, "silver.points", topic) == ends, 60, "the restarted writer catches up")
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == ends, 60, "bronze catches up")
    assert_exactly_once(conn, topic, counts, ends)
    conn.close()


def test_kill9_during_compaction_leaves_table_whole(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.m (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE) "
                  "PARTITIONED BY (day(ts))")
    for i in range(60):
        rows = ", ".join(f"('2026-01-0{1 + (i + k) % 4}T00:{k:02d}:{i:02d}', 'd{(i * 7 + k) % 13}', {i * 100 + k})"
                         for k in range(50))
        execute(conn, f"INSERT INTO public.m VALUES {rows}")
    before = fetch_rows(conn, "SELECT count(*), sum(value) FROM public.m")[0]
    files_before = len(live_files(data, "public.m"))
    rng = random.Random(3)
    outcomes = set()
    for _ in range(8):
        proc = subprocess.Popen([str(weir_binary()), "maintain", "compact", "public.m", "--data-dir",
                                 str(data), "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.1, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Unchanged or compacted group by group, never in between: same rows.
        assert fetch_rows(conn, "SELECT count(*), sum(value) FROM public.m")[0] == before
        files = live_files(data, "public.m")
        assert len(files) == len(set(files))
        outcomes.add(len(files))
    report = compact(data, "public.m")["public.m"]
    assert fetch_rows(conn, "SELECT count(*), sum(value) FROM public.m")[0] == before
    files_after = live_files(data, "public.m")
    assert len(files_after) <= 4 < files_before
    assert report["groups_abandoned"] == 0
    ops = [r[0] for r in fetch_rows(conn, "SELECT operation FROM iceberg_snapshots('public.m')")]
    assert "replace" in ops
    # PyIceberg sees the same rows.
    assert pyiceberg_totals(data, "public.m", "value") == (before[0], float(before[1]))
    # The killed runs left written-but-uncommitted files: orphan cleanup
    # collects them (a safety age under an hour needs an explicit flag).
    refused = subprocess.run([str(weir_binary()), "maintain", "orphans", "public.m", "--data-dir", str(data),
                              "--older-than", "0s"], capture_output=True, text=True)
    assert refused.returncode != 0 and "--allow-short-age" in refused.stderr
    maintain("expire", data, "public.m", extra=["--older-than", "0s", "--retain-last", "1"])
    # Whether a kill left data files depends on when it hit; whatever is on
    # disk and not live must go.
    stray = files_on_disk(data, "public.m") - {f.removeprefix("file://") for f in live_files(data, "public.m")}
    orphans = maintain("orphans", data, "public.m", extra=["--older-than", "0s", "--allow-short-age"])
    assert orphans["public.m"]["orphans_deleted"] >= len(stray), (orphans, stray)
    assert files_on_disk(data, "public.m") == {f.removeprefix("file://") for f in live_files(data, "public.m")}
    assert fetch_rows(conn, "SELECT count(*), sum(value) FROM public.m")[0] == before
    assert pyiceberg_totals(data, "public.m", "value") == (before[0], float(before[1]))
    conn.close()


def test_compaction_is_exclusive_per_table(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.x (ts TIMESTAMP NOT NULL, v DOUBLE)")
    for i in range(3):
        execute(conn, f"INSERT INTO public.x VALUES ('2026-01-01T00:00:0{i}', {i})")
    conn.close()
    # A lease held by a live process blocks a second run; a dead holder's is taken over.
    import sqlite3
    db = sqlite3.connect(data / "catalog.db")
    db.execute("CREATE TABLE IF NOT EXISTS weir_leases (name VARCHAR(255) PRIMARY KEY, owner VARCHAR(255) NOT NULL, expires_at BIGINT NOT NULL)")
    host = Path("/etc/hostname").read_text().strip()
    db.execute("INSERT INTO weir_leases VALUES ('compact:public.x', ?, ?)",
               (f"{host}-{os.getpid()}-test", int(time.time() * 1000) + 600_000))
    db.commit()
    out = subprocess.run([str(weir_binary()), "maintain", "compact", "public.x", "--data-dir", str(data)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "already running" in out.stderr
    db.execute("UPDATE weir_leases SET owner = ? WHERE name = 'compact:public.x'", (f"{host}-999999999-dead",))
    db.commit()
    db.close()
    assert compact(data, "public.x")["public.x"]["files_in"] == 3


def test_expiry_keeps_recent_history_and_orphans_respect_age(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.e (ts TIMESTAMP NOT NULL, v DOUBLE)")
    for i in range(12):
        execute(conn, f"INSERT INTO public.e VALUES ('2026-01-01T00:00:{i:02d}', {i})")
    snaps = [r[0] for r in fetch_rows(conn, "SELECT snapshot_id FROM iceberg_snapshots('public.e') ORDER BY sequence_number")]
    assert len(snaps) == 12
    # Default policy (1 day): nothing is old enough; a dry run changes nothing.
    assert maintain("expire", data, "public.e")["public.e"]["snapshots_expired"] == 0
    dry = maintain("expire", data, "public.e", extra=["--older-than", "0s", "--retain-last", "3", "--dry-run"])
    assert dry["public.e"]["snapshots_expired"] == 9 and dry["public.e"]["data_files_deleted"] == 0
    assert len(fetch_rows(conn, "SELECT snapshot_id FROM iceberg_snapshots('public.e')")) == 12
    # Appends only: expiring old snapshots deletes their manifest lists but no
    # data file (every file is still live).
    done = maintain("expire", data, "public.e", extra=["--older-than", "0s", "--retain-last", "3"])["public.e"]
    assert (done["snapshots_expired"], done["data_files_deleted"], done["manifest_lists_deleted"]) == (9, 0, 9)
    left = [r[0] for r in fetch_rows(conn, "SELECT snapshot_id FROM iceberg_snapshots('public.e') ORDER BY sequence_number")]
    assert left == snaps[-3:]
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.e")[0] == (12, float(sum(range(12))))
    # Time travel to a kept snapshot works; to an expired one it is an error.
    assert fetch_scalar(conn, f"SELECT count(*) FROM iceberg_at_snapshot('public.e', {snaps[-3]})") == 10
    with pytest.raises(Exception):
        fetch_scalar(conn, f"SELECT count(*) FROM iceberg_at_snapshot('public.e', {snaps[0]})")
    conn.close()
    # Orphans: an old stray file goes, a young one stays.
    table_dir = data / "warehouse" / "public" / "e" / "data"
    old, young = table_dir / "stray-old.parquet", table_dir / "stray-young.parquet"
    old.write_bytes(b"x" * 10)
    young.write_bytes(b"y" * 10)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    report = maintain("orphans", data, "public.e", extra=["--older-than", "1h"])["public.e"]
    assert (report["orphans_deleted"], report["too_young"]) == (1, 1)
    assert not old.exists() and young.exists()
    assert pyiceberg_totals(data, "public.e", "v") == (12, float(sum(range(12))))


def test_zorder_clustering_prunes_on_both_columns(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.z (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE)")
    # Streaming-style files: each covers every device over a short time span.
    rng = random.Random(7)
    for f in range(24):
        rows = ", ".join(f"('2026-01-01T{f:02d}:{m:02d}:00', 'd{d:03d}', {rng.random()})"
                         for m in range(0, 60, 6) for d in rng.sample(range(200), 40))
        execute(conn, f"INSERT INTO public.z VALUES {rows}")
    before = fetch_rows(conn, "SELECT count(*), sum(value), count(DISTINCT device_id) FROM public.z")[0]
    predicate = ("device_id IN ('d010', 'd011') AND "
                 "ts >= '2026-01-01T05:00:00' AND ts < '2026-01-01T09:00:00'")
    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")

    def files_for(pred: str) -> tuple[int, int]:
        from pyiceberg.expressions import parser
        t = cat.load_table("public.z")
        return len(list(t.scan(row_filter=parser.parse(pred)).plan_files())), len(list(t.scan().plan_files()))

    pred = predicate
    scanned_before, total_before = files_for(pred)
    # Without declared columns clustering needs --columns.
    out = subprocess.run([str(weir_binary()), "maintain", "cluster", "public.z", "--data-dir", str(data)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "--columns" in out.stderr
    report = maintain("cluster", data, "public.z",
                      extra=["--columns", "device_id,ts", "--target-file-mb", "0.003"])["public.z"]
    assert report["job"] == "cluster" and report["files_in"] == total_before
    assert report["files_out"] >= 8
    # A second run finds nothing left to cluster.
    again = maintain("cluster", data, "public.z", extra=["--columns", "device_id,ts"])["public.z"]
    assert again["files_in"] == 0
    after = fetch_rows(conn, "SELECT count(*), sum(value), count(DISTINCT device_id) FROM public.z")[0]
    # The float sum may differ in its last bits: files are summed in another order.
    assert (after[0], after[2]) == (before[0], before[2]) and after[1] == pytest.approx(before[1], rel=1e-12)
    assert fetch_rows(conn, f"SELECT count(*) FROM public.z WHERE {predicate}")[0][0] > 0
    scanned_after, total_after = files_for(pred)
    assert total_after == report["files_out"]
    # Before: every file holds both devices (time pruning only). After, in
    # Z-order, min/max bounds prune on both columns.
    assert scanned_after / total_after < scanned_before / total_before, (scanned_before, total_before, scanned_after, total_after)
    conn.close()


def test_retention_drops_old_partitions_once_rollups_cover_them(weir_factory, tmp_path):
    data = tmp_path / "data"
    server = weir_factory(data)
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.r (ts TIMESTAMP NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
    execute(conn, "INSERT INTO public.r VALUES ('2026-01-01T01:00:00', 1), ('2026-01-02T01:00:00', 2), "
                  "('2026-01-03T01:00:00', 3)")
    execute(conn, "INSERT INTO public.r VALUES (now(), 10), (now(), 20)")
    dry = maintain("retention", data, "public.r", extra=["--days", "30", "--dry-run"])["public.r"]
    assert (dry["files_dropped"], dry["rows_dropped"]) == (3, 3)
    assert fetch_scalar(conn, "SELECT count(*) FROM public.r") == 5
    done = maintain("retention", data, "public.r", extra=["--days", "30"])["public.r"]
    assert (done["files_dropped"], done["rows_dropped"], done["files_held"]) == (3, 3, 0)
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.r")[0] == (2, 30.0)
    ops = [r[0] for r in fetch_rows(conn, "SELECT operation FROM iceberg_snapshots('public.r') ORDER BY sequence_number")]
    assert ops[-1] == "delete"
    assert pyiceberg_totals(data, "public.r", "v") == (2, 30.0)
    # Declared policy: silver.points keeps 183 days, and only drops what the
    # gold rollups cover; none has been refreshed, so nothing goes.
    execute(conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                  "('2025-01-01T00:00:00Z', 'd1', 'temp', 1.0), ('2025-01-02T00:00:00Z', 'd1', 'temp', 2.0)")
    held = maintain("retention", data, "silver.points")["silver.points"]
    assert held["files_dropped"] == 0 and held["files_held"] == 2
    assert any("gold.points_1m" in reason for reason in held["held_because"])
    assert fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 2
    # Refreshing the Gold materialized views records the silver snapshot
    # they cover: now the old partitions go, and the rollups keep them.
    for view in ("gold.points_1m", "gold.points_1h", "gold.points_1d", "gold.fleet_1m"):
        execute(conn, f"REFRESH MATERIALIZED VIEW {view}")
    done = maintain("retention", data, "silver.points")["silver.points"]
    assert (done["files_dropped"], done["files_held"]) == (2, 0), done
    assert fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 0
    assert fetch_rows(conn, "SELECT count(*), sum(sum_value) FROM gold.points_1d")[0] == (2, 3.0)
    conn.close()


def test_serve_runs_maintenance_on_its_schedule(weir_factory, tmp_path):
    declare_table(tmp_path / "tables", "s", policy='''
compact_every = "1s"
expire_every = "off"
orphans_every = "off"
''')
    data = tmp_path / "data"
    server = weir_factory(data, ["--tables-dir", str(tmp_path / "tables"), "--maintenance-tick", "1s"])
    conn = connect(server.uri)
    for i in range(6):
        execute(conn, f"INSERT INTO public.s VALUES ('2026-01-01T00:00:0{i}Z', {i})")
    wait_until(lambda: "replace" in [r[0] for r in fetch_rows(
        conn, "SELECT operation FROM iceberg_snapshots('public.s')")], 60, "a scheduled compaction")
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.s")[0] == (6, 15.0)
    assert len(live_files(data, "public.s")) == 1
    conn.close()
    # A bad policy stops the server at start with a clear message.
    toml = tmp_path / "tables" / "public" / "s.toml"
    toml.write_text(toml.read_text().replace("compact_every", "compact_evry"))
    out = subprocess.run([str(weir_binary()), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d2"),
                          "--tables-dir", str(tmp_path / "tables")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "compact_evry" in out.stderr


def test_maintain_schedule_runs_as_its_own_process(weir_factory, tmp_path):
    """Production shape: `weir serve --maintenance=false` answers queries and
    `weir maintain schedule` compacts on the tables' policies beside it."""
    declare_table(tmp_path / "tables", "sched", policy='''
compact_every = "1s"
expire_every = "off"
orphans_every = "off"
''')
    data = tmp_path / "data"
    decl = ["--tables-dir", str(tmp_path / "tables")]
    server = weir_factory(data, [*decl, "--maintenance=false"])
    conn = connect(server.uri)
    for i in range(6):
        execute(conn, f"INSERT INTO public.sched VALUES ('2026-01-01T00:00:0{i}Z', {i})")
    assert len(live_files(data, "public.sched")) == 6
    proc = subprocess.Popen([str(weir_binary()), "maintain", "schedule", "--data-dir", str(data), *decl,
                             "--maintenance-tick", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        # (The HTTP endpoint's line may come first: the tests turn it on everywhere.)
        for _ in range(5):
            line = proc.stdout.readline()
            if not line or line.startswith("weir: maintenance scheduled"):
                break
        assert line.startswith("weir: maintenance scheduled (tick 1s)"), line
        wait_until(lambda: "replace" in [r[0] for r in fetch_rows(
            conn, "SELECT operation FROM iceberg_snapshots('public.sched')")], 60, "a scheduled compaction")
        assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.sched")[0] == (6, 15.0)
        assert len(live_files(data, "public.sched")) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    conn.close()


def manifest_count(data: Path, table: str) -> int:
    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    t = cat.load_table(table)
    return len(t.current_snapshot().manifests(t.io))


def test_small_manifests_are_merged_on_append_and_on_demand(weir_factory, tmp_path):
    declare_table(tmp_path / "tables", "auto", properties='"commit.manifest.min-count-to-merge" = "5"')
    data = tmp_path / "data"
    server = weir_factory(data, ["--tables-dir", str(tmp_path / "tables"), "--maintenance=false"])
    conn = connect(server.uri)
    # Appends: every fast append adds a manifest; the fifth small one
    # triggers a merge (a `replace` snapshot without data change).
    for i in range(12):
        execute(conn, f"INSERT INTO public.auto VALUES ('2026-01-0{1 + i % 3}T00:00:0{i % 10}Z', {i})")
        assert manifest_count(data, "public.auto") < 5
    snaps = fetch_rows(conn, "SELECT operation, summary FROM iceberg_snapshots('public.auto') ORDER BY sequence_number")
    assert [op for op, _ in snaps].count("replace") == 2
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.auto")[0] == (12, 66.0)
    assert pyiceberg_totals(data, "public.auto", "v") == (12, 66.0)

    # On demand: a table below its merge threshold.
    execute(conn, "CREATE TABLE public.m (ts TIMESTAMP NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
    for i in range(6):
        execute(conn, f"INSERT INTO public.m VALUES ('2026-01-0{1 + i % 2}T00:00:00', {i})")
    assert manifest_count(data, "public.m") == 6
    dry = maintain("rewrite-manifests", data, "public.m", extra=["--dry-run"])["public.m"]
    assert (dry["manifests_merged"], dry["manifests_after"], dry["snapshot_id"]) == (6, 6, None)
    done = maintain("rewrite-manifests", data, "public.m")["public.m"]
    assert (done["manifests_before"], done["manifests_merged"], done["manifests_after"]) == (6, 6, 1)
    assert manifest_count(data, "public.m") == 1
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.m")[0] == (6, 15.0)
    assert pyiceberg_totals(data, "public.m", "v") == (6, 15.0)
    # Nothing left to merge: no new snapshot.
    again = maintain("rewrite-manifests", data, "public.m")["public.m"]
    assert (again["manifests_merged"], again["snapshot_id"]) == (0, None)
    # Compaction still works on merged manifests (entries are EXISTING).
    compact(data, "public.m")
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.m")[0] == (6, 15.0)
    assert len(live_files(data, "public.m")) == 2
    conn.close()


def test_retention_waits_for_the_rollup_to_cover_the_partitions(weir_factory, tmp_path):
    """The positive side of the gate: once the rollup's snapshot records a
    base sequence number (written here by PyIceberg, as MV refresh will), the
    partitions committed up to that sequence go, and later ones stay."""
    declare_table(tmp_path / "tables", "raw", policy='''
retention_days = 30
retention_requires = ["public.roll"]
compact_every = "off"
expire_every = "off"
orphans_every = "off"
retention_every = "off"
''')
    declare_table(tmp_path / "tables", "roll", partition=False)
    data = tmp_path / "data"
    server = weir_factory(data, ["--tables-dir", str(tmp_path / "tables")])
    conn = connect(server.uri)
    execute(conn, "INSERT INTO public.raw VALUES ('2025-01-01T01:00:00Z', 1), ('2025-01-02T01:00:00Z', 2)")
    covered_seq = fetch_scalar(conn, "SELECT max(sequence_number) FROM iceberg_snapshots('public.raw')")
    execute(conn, "INSERT INTO public.raw VALUES ('2025-01-03T01:00:00Z', 3)")
    decl = ["--tables-dir", str(tmp_path / "tables")]
    held = maintain("retention", data, "public.raw", extra=decl)["public.raw"]
    assert (held["files_dropped"], held["files_held"]) == (0, 3)
    assert any("public.roll has not been refreshed" in r for r in held["held_because"])

    cat = SqlCatalog("weir", uri=f"sqlite:///{data}/catalog.db", warehouse=f"file://{data}/warehouse")
    roll = cat.load_table("public.roll")
    import datetime as dt
    import pyarrow as pa
    row = pa.table({"ts": pa.array([dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)], pa.timestamp("us", "UTC")),
                    "v": pa.array([3.0])}, schema=roll.schema().as_arrow())
    roll.append(row, snapshot_properties={"weir.mv.base-sequence.public.raw": str(covered_seq)})

    done = maintain("retention", data, "public.raw", extra=decl)["public.raw"]
    assert (done["files_dropped"], done["rows_dropped"], done["files_held"]) == (2, 2, 1)
    assert fetch_rows(conn, "SELECT count(*), sum(v) FROM public.raw")[0] == (1, 3.0)
    conn.close()


def test_serve_refreshes_materialized_views_on_their_schedule(weir_factory, tmp_path):
    declare_table(tmp_path / "tables", "base", policy='compact_every = "off"\nexpire_every = "off"\n'
                                                      'orphans_every = "off"')
    (tmp_path / "tables" / "public" / "base_stats.toml").write_text(
        'namespace = "public"\nname = "base_stats"\n'
        '[[columns]]\nname = "n"\ntype = "long"\nrequired = true\n'
        '[[columns]]\nname = "total"\ntype = "double"\n'
        '[properties]\n"weir.mv.definition" = "SELECT count(*) AS n, sum(v) AS total FROM public.base"\n'
        '[policy]\nrefresh_every = "1s"\ncompact_every = "off"\nexpire_every = "off"\norphans_every = "off"\n')
    data = tmp_path / "data"
    server = weir_factory(data, ["--tables-dir", str(tmp_path / "tables"), "--maintenance-tick", "1s"])
    conn = connect(server.uri)
    execute(conn, "INSERT INTO public.base VALUES ('2026-01-01T00:00:00Z', 1), ('2026-01-01T00:00:01Z', 2)")
    wait_until(lambda: fetch_rows(conn, "SELECT n, total FROM public.base_stats") == [(2, 3.0)], 60,
               "a scheduled refresh")
    execute(conn, "INSERT INTO public.base VALUES ('2026-01-02T00:00:00Z', 4)")
    wait_until(lambda: fetch_rows(conn, "SELECT n, total FROM public.base_stats") == [(3, 7.0)], 60,
               "the next scheduled refresh")
    conn.close()


def test_incremental_refresh_survives_compaction_in_between(weir_factory, tmp_path):
    """A compaction between two refreshes rewrites new and old rows into one
    file; the refresh still merges the view's stored partials with partials
    of the appended files, read in the snapshot before the compaction (where
    they are live; the compaction changed no row), so the view still equals
    its query without re-reading the base."""
    data = tmp_path / "data"
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.t (ts TIMESTAMP NOT NULL, d VARCHAR NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
    for i in range(4):
        execute(conn, f"INSERT INTO public.t VALUES ('2026-03-0{1 + i % 2}T0{i}:00:00', 'x', {i}), "
                      f"('2026-03-0{1 + i % 2}T0{i}:30:00', 'y', {10 * i})")
    query = ("SELECT date_bin(INTERVAL '1 hour', ts) AS bucket, d, count(*) AS n, sum(v) AS s, "
             "min(v) AS lo, max(v) AS hi FROM public.t GROUP BY 1, 2")
    execute(conn, f"CREATE MATERIALIZED VIEW public.t_1h PARTITIONED BY (day(bucket)) AS {query}")
    execute(conn, "INSERT INTO public.t VALUES ('2026-03-01T05:00:00', 'x', 100), ('2026-03-03T01:00:00', 'z', 7)")
    report = compact(data, "public.t")["public.t"]
    assert report["files_in"] > 0
    # An append after the compaction: read in the current snapshot.
    execute(conn, "INSERT INTO public.t VALUES ('2026-03-02T07:00:00', 'x', 5)")
    execute(conn, "REFRESH MATERIALIZED VIEW public.t_1h")
    summary = fetch_scalar(conn, "SELECT summary FROM iceberg_snapshots('public.t_1h') "
                                 "ORDER BY sequence_number DESC LIMIT 1")
    assert '"weir.mv.refresh": "incremental"' in summary and '"weir.mv.refresh-days": "3"' in summary, summary
    assert '"weir.mv.refresh-by": "merge"' in summary, summary
    view = sorted(fetch_rows(conn, "SELECT bucket, d, n, s, lo, hi FROM public.t_1h"))
    base = sorted(fetch_rows(conn, query))
    assert view == base and len(base) == 11
    conn.close()


def test_view_compaction_leaves_the_newest_refresh_to_the_next_one(weir_factory, tmp_path):
    """A view partitioned by month refreshes by the touched days, replacing
    only the view files whose buckets meet them. Compaction leaves the files
    of the newest refresh alone (they hold the buckets the next refresh
    recomputes): merged into the older files, the next refresh would have to
    rewrite those too."""
    data = tmp_path / "data"
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.m (ts TIMESTAMP NOT NULL, d VARCHAR NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
    execute(conn, "INSERT INTO public.m VALUES ('2026-03-01T00:10:00', 'x', 1), ('2026-03-01T02:10:00', 'y', 2)")
    query = "SELECT date_bin(INTERVAL '1 hour', ts) AS bucket, d, count(*) AS n, sum(v) AS s FROM public.m GROUP BY 1, 2"
    execute(conn, f"CREATE MATERIALIZED VIEW public.m_1h PARTITIONED BY (month(bucket)) AS {query}")

    def refresh() -> str:
        execute(conn, "REFRESH MATERIALIZED VIEW public.m_1h")
        return fetch_scalar(conn, "SELECT summary FROM iceberg_snapshots('public.m_1h') "
                                  "ORDER BY sequence_number DESC LIMIT 1")

    for day in (2, 3):
        execute(conn, f"INSERT INTO public.m VALUES ('2026-03-0{day}T01:00:00', 'x', {day})")
        summary = refresh()
        # Days 2 and 3 meet no file of the view: nothing replaced.
        assert '"weir.mv.refresh": "incremental"' in summary and "deleted-data-files" not in summary, summary
    assert len(live_files(data, "public.m_1h")) == 3
    report = compact(data, "public.m_1h")["public.m_1h"]
    assert report["files_in"] == 2 and report["files_out"] == 1, report
    # The compaction's snapshot records no refresh: queries still read the
    # view (what it reflects is its newest refresh's).
    rollup = "SELECT date_bin(INTERVAL '1 hour', ts) AS b, count(*) FROM public.m GROUP BY 1"
    plan = "\n".join(r[1] for r in fetch_rows(conn, "EXPLAIN " + rollup))
    assert "mv_rewrite public.m_1h" in plan, plan
    execute(conn, "INSERT INTO public.m VALUES ('2026-03-03T01:30:00', 'y', 9)")
    summary = refresh()
    # The new row's hour is in the last refresh's file: only that file is
    # replaced, not the compacted one.
    assert '"deleted-data-files": "1"' in summary and '"total-data-files": "2"' in summary, summary
    assert sorted(fetch_rows(conn, "SELECT bucket, d, n, s FROM public.m_1h")) == sorted(fetch_rows(conn, query))
    conn.close()


def test_rewrite_after_compaction_reads_the_touched_days_from_the_base(weir_factory, tmp_path):
    """Queries an MV answers stay exact between refreshes: appends read from
    the files they added, and once a compaction mixed new and old rows in
    one file, the buckets the appends touched are read from the base and the
    others from the view."""
    data = tmp_path / "data"
    server = weir_factory(data, ["--maintenance=false"])
    conn = connect(server.uri)
    execute(conn, "CREATE TABLE public.t (ts TIMESTAMP NOT NULL, d VARCHAR NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
    rows = []

    def insert(values):
        rows.extend(values)
        execute(conn, "INSERT INTO public.t VALUES " + ", ".join(f"('{ts}', '{d}', {v})" for ts, d, v in values))

    for i in range(4):
        insert([(f"2026-03-0{1 + i % 2}T0{i}:00:00", "x", float(i)), (f"2026-03-0{1 + i % 2}T0{i}:30:00", "y", 10.0 * i)])
    execute(conn, "CREATE MATERIALIZED VIEW public.t_1h PARTITIONED BY (day(bucket)) AS "
                  "SELECT date_bin(INTERVAL '1 hour', ts) AS bucket, d, count(*) AS n, count(v) AS nv, "
                  "sum(v) AS s, sum(v * v) AS q, min(v) AS lo, max(v) AS hi FROM public.t GROUP BY 1, 2")
    query = ("SELECT d, date_trunc('day', ts) AS day, count(*), sum(v), min(v), max(v), round(avg(v), 9) "
             "FROM public.t GROUP BY 1, 2 ORDER BY 1, 2")

    def expected():
        groups = {}
        for ts, d, v in rows:
            groups.setdefault((d, ts[:10]), []).append(v)
        return [(d, day, len(vs), sum(vs), min(vs), max(vs), round(sum(vs) / len(vs), 9))
                for (d, day), vs in sorted(groups.items())]

    def answer():
        return [(d, day.strftime("%Y-%m-%d"), n, s, lo, hi, avg)
                for d, day, n, s, lo, hi, avg in fetch_rows(conn, query)]

    def plan():
        return "\n".join(r[1] for r in fetch_rows(conn, "EXPLAIN " + query))

    assert "mv_rewrite public.t_1h" in plan()
    assert answer() == expected()
    insert([("2026-03-01T05:00:00", "x", 100.0), ("2026-03-03T01:00:00", "z", 7.0)])
    assert "appended files" in plan()
    assert answer() == expected()
    assert compact(data, "public.t")["public.t"]["files_in"] > 0
    text = plan()
    # One hour on each of two days: those buckets from the base, the rest of
    # both days from the view.
    assert "mv_rewrite public.t_1h" in text and "120 min of buckets with rewritten files" in text, text
    assert answer() == expected()
    conn.close()

    # The server default turns it off (`SET weir.mv_rewrite` per session).
    server.stop()
    server = weir_factory(data, ["--maintenance=false", "--mv-rewrite=false"])
    conn = connect(server.uri)
    assert "mv_rewrite" not in plan()
    assert answer() == expected()
    conn.close()
