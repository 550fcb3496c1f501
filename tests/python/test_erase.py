"""`weir maintain erase` (issue 20 item 3): after it, no file in the
warehouse holds the erased rows — not the table's current files, not the
files of older snapshots, not the materialized views computed from them;
Bronze included. Every Parquet file is read back with pyarrow (values are
compressed on disk) and every other file (manifests, metadata) is searched
byte for byte."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from weir_harness import WeirServer, connect, execute, fetch_scalar, weir_binary

VICTIM = "victim-7f3a"


def files_holding(root: Path, needle: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            text = json.dumps(table.to_pylist(), default=repr)
            if needle in text:
                found.append(str(path))
        elif needle.encode() in path.read_bytes():
            found.append(str(path))
    return found


def erase(data_dir: Path, table: str, predicate: str, *flags: str) -> dict:
    out = subprocess.run(
        [str(weir_binary()), "maintain", "erase", "--table", table, "--where", predicate,
         "--data-dir", str(data_dir), "--json", *flags],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_erase_leaves_no_file_with_the_rows(tmp_path):
    data = tmp_path / "data"
    server = WeirServer(data)
    try:
        conn = connect(server.uri)
        # Several appends (several files, several snapshots), three devices, two days.
        for k in range(3):
            execute(
                conn,
                f"""INSERT INTO silver.points (ts, device_id, metric, value, quality, unit, source, labels)
                    SELECT to_timestamp_seconds(1767225600 + value * 600 + {k}),
                           CASE value % 3 WHEN 0 THEN '{VICTIM}' WHEN 1 THEN 'pump-1' ELSE 'pump-2' END,
                           'temperature', CAST(value AS DOUBLE), 0, 'C', 'sql',
                           CASE value % 3 WHEN 0 THEN map(['owner'], ['owner-of-{VICTIM}']) ELSE map(['owner'], ['plant']) END
                    FROM generate_series(0, 299) AS s(value)""",
            )
            execute(
                conn,
                f"""INSERT INTO bronze.raw_messages (received_at, source, topic, payload, content_type)
                    SELECT to_timestamp_seconds(1767225600 + value * 600 + {k}), 'mqtt',
                           'plant/' || CASE value % 3 WHEN 0 THEN '{VICTIM}' ELSE 'pump-1' END || '/status',
                           CAST('{{"device":"' || CASE value % 3 WHEN 0 THEN '{VICTIM}' ELSE 'pump-1' END || '"}}' AS BYTEA),
                           'json-status'
                    FROM generate_series(0, 299) AS s(value)""",
            )
        execute(conn, "REFRESH MATERIALIZED VIEW gold.points_1h")
        total = fetch_scalar(conn, "SELECT count(*) FROM silver.points")
        victim = fetch_scalar(conn, f"SELECT count(*) FROM silver.points WHERE device_id = '{VICTIM}'")
        assert (total, victim) == (900, 300)
        assert fetch_scalar(conn, f"SELECT count(*) FROM gold.points_1h WHERE device_id = '{VICTIM}'") > 0
        warehouse = data / "warehouse"
        assert files_holding(warehouse, VICTIM), "the test data is not where the test looks"

        # Dry run: counts, changes nothing.
        dry = erase(data, "silver.points", f"device_id = '{VICTIM}'", "--dry-run")
        assert dry["rows_erased"] == 300
        assert "gold.points_1h" in dry["views_refreshed"]
        assert fetch_scalar(conn, f"SELECT count(*) FROM silver.points WHERE device_id = '{VICTIM}'") == 300

        silver = erase(data, "silver.points", f"device_id = '{VICTIM}'")
        assert silver["rows_erased"] == 300
        assert silver["views_refreshed"] == dry["views_refreshed"]
        bronze = erase(data, "bronze.raw_messages", f"topic LIKE '%{VICTIM}%'")
        assert bronze["rows_erased"] == 300
        # Other rows untouched, the victim gone everywhere, also from the view.
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 600
        assert fetch_scalar(conn, f"SELECT count(*) FROM silver.points WHERE device_id = '{VICTIM}'") == 0
        assert fetch_scalar(conn, "SELECT count(*) FROM bronze.raw_messages") == 600
        assert fetch_scalar(conn, f"SELECT count(*) FROM gold.points_1h WHERE device_id = '{VICTIM}'") == 0
        assert fetch_scalar(
            conn, "SELECT sum(count) FROM gold.points_1h"
        ) == fetch_scalar(conn, "SELECT count(*) FROM silver.points WHERE metric = 'temperature'")
        assert files_holding(warehouse, VICTIM) == []
        # The tables keep working.
        execute(conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES (now(), 'pump-3', 'temperature', 1.0)")
        assert fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 601
        conn.close()
    finally:
        server.discard()
