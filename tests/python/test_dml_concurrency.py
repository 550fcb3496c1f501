"""Row-level DML racing the streaming writer, SQL appends and compaction
(issue 20): a DELETE/UPDATE never resurrects, loses or duplicates a row.

`weir serve --demo` keeps committing simulated points to silver.points (the
streaming writer's commit path) while this test appends its own rows to the
same table over SQL from another thread, `weir maintain compact` rewrites the
table's files in a loop, and DELETE/UPDATE run on the test's rows. Afterwards
the test's rows are exactly what the statements must leave: every kept row
once, updated; no deleted row; and the demo's rows were never touched."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from weir_harness import WeirServer, connect, execute, fetch_rows, fetch_scalar, weir_binary

BATCHES = 24
ROWS = 50  # per batch; ids batch*ROWS + i


def insert_batch(conn, batch: int) -> None:
    execute(
        conn,
        f"""INSERT INTO silver.points (ts, device_id, metric, value, quality, source)
            SELECT to_timestamp_seconds(1767225600 + {batch} * {ROWS} + value),
                   CASE WHEN value % 2 = 0 THEN 'dml-keep' ELSE 'dml-drop' END,
                   'id', CAST({batch} * {ROWS} + value AS DOUBLE), 0, 'dml-test'
            FROM generate_series(0, {ROWS - 1}) AS s(value)""",
    )


@pytest.mark.parametrize("mode", ["copy-on-write", "merge-on-read"])
def test_dml_during_streaming_appends_and_compaction(tmp_path, mode):
    # merge-on-read: position delete files pointing at data files that the
    # compactor rewrites meanwhile (the commit checks they are still live).
    data = tmp_path / "data"
    server = WeirServer(data, ["--demo"])
    stop = threading.Event()
    errors: list[BaseException] = []
    try:
        conn = connect(server.uri)
        writer_conn = connect(server.uri)
        # The demo writer is committing before the race starts.
        deadline = time.monotonic() + 60
        while fetch_scalar(conn, "SELECT count(*) FROM silver.points WHERE source <> 'dml-test' OR source IS NULL") == 0:
            assert time.monotonic() < deadline, "no demo rows"
            time.sleep(0.2)

        execute(
            conn,
            f"ALTER TABLE silver.points SET TBLPROPERTIES ('write.delete.mode' = '{mode}', "
            f"'write.update.mode' = '{mode}')",
        )

        def appender():
            try:
                for b in range(BATCHES):
                    insert_batch(writer_conn, b)
            except BaseException as e:  # noqa: BLE001 (reported below)
                errors.append(e)

        def compactor():
            runs = 0
            while not stop.is_set():
                out = subprocess.run(
                    [str(weir_binary()), "maintain", "compact", "silver.points", "--data-dir", str(data),
                     "--min-files", "2"],
                    capture_output=True, text=True, timeout=300,
                )
                # While a statement holds the table's lease, compaction is
                # busy (and says so); it must never fail otherwise.
                if out.returncode != 0 and "lease" not in out.stderr:
                    errors.append(AssertionError(out.stderr[-2000:]))
                    return
                runs += 1
            compactions.append(runs)

        compactions: list[int] = []
        threads = [threading.Thread(target=appender), threading.Thread(target=compactor)]
        for t in threads:
            t.start()
        deleted = updated = 0
        statements = 0
        while threads[0].is_alive():
            deleted += fetch_rows(conn, "DELETE FROM silver.points WHERE device_id = 'dml-drop'")[0][0]
            updated += fetch_rows(
                conn, "UPDATE silver.points SET quality = 1 WHERE device_id = 'dml-keep' AND quality = 0"
            )[0][0]
            statements += 2
        threads[0].join()
        # Rows appended after the last statement began are handled by one more pass.
        deleted += fetch_rows(conn, "DELETE FROM silver.points WHERE device_id = 'dml-drop'")[0][0]
        updated += fetch_rows(
            conn, "UPDATE silver.points SET quality = 1 WHERE device_id = 'dml-keep' AND quality = 0"
        )[0][0]
        stop.set()
        threads[1].join()
        assert not errors, errors

        total = BATCHES * ROWS
        assert (deleted, updated) == (total // 2, total // 2), (deleted, updated, statements)
        rows = fetch_rows(
            conn, "SELECT CAST(value AS BIGINT), device_id, quality FROM silver.points WHERE source = 'dml-test'"
        )
        ids = sorted(r[0] for r in rows)
        assert ids == list(range(0, total, 2)), "kept rows lost or duplicated"
        assert {(r[1], r[2]) for r in rows} == {("dml-keep", 1)}
        # The demo's rows were never touched by the statements.
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points WHERE device_id LIKE 'dml-%' AND source <> 'dml-test'") == 0
        assert compactions and compactions[0] >= 1
        if mode == "merge-on-read":
            assert fetch_scalar(
                conn,
                "SELECT count(*) FROM iceberg_snapshots('silver.points') "
                "WHERE summary LIKE '%\"added-position-deletes\"%'",
            ) > 0, "no statement wrote position deletes"
        print(f"{mode}: {statements} DML statements, {compactions[0]} compactions, {total} rows appended")
        writer_conn.close()
        conn.close()
    finally:
        stop.set()
        server.discard()
