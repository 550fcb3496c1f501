"""`weir import`: Parquet files bulk-appended to silver.points, one snapshot per file."""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq

from weir_harness import connect, fetch_rows, weir_binary


def write_points(path, device: str, n: int) -> None:
    start = dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc)
    pq.write_table(
        pa.table(
            {
                "ts": pa.array([start + dt.timedelta(seconds=i) for i in range(n)], pa.timestamp("us", tz="UTC")),
                "device_id": [device] * n,
                "metric": ["temperature"] * n,
                "value": [float(i) for i in range(n)],
            }
        ),
        path,
    )


def test_import_appends_files_in_commit_groups(weir_factory, tmp_path):
    data_dir = tmp_path / "data"
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"]
    write_points(files[0], "dev-a", 100)
    write_points(files[1], "dev-b", 50)
    write_points(files[2], "dev-c", 10)
    proc = subprocess.run(
        [str(weir_binary()), "import", "--json", "--data-dir", str(data_dir), "--table", "silver.points",
         "--files-per-commit", "2", *map(str, files)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["rows"], summary["files_in"], summary["snapshots"]) == (160, 3, 2)
    # Every input file keeps its own data file.
    assert summary["data_files_out"] == 3

    server = weir_factory(data_dir)
    with connect(server.uri) as conn:
        assert fetch_rows(conn, "SELECT device_id, count(*), sum(value) FROM silver.points GROUP BY 1 ORDER BY 1") == [
            ("dev-a", 100, float(sum(range(100)))),
            ("dev-b", 50, float(sum(range(50)))),
            ("dev-c", 10, float(sum(range(10)))),
        ]
        assert fetch_rows(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == [(2,)]
    # The table's write.parquet.compression-codec (zstd) is honoured.
    written = list((data_dir / "warehouse" / "silver" / "points" / "data").rglob("*.parquet"))
    assert len(written) == 3
    for f in written:
        meta = pq.ParquetFile(f).metadata
        assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {"ZSTD"}


def test_import_rejects_a_file_missing_required_columns(tmp_path):
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"value": [1.0]}), bad)
    proc = subprocess.run(
        [str(weir_binary()), "import", "--data-dir", str(tmp_path / "d"), "--table", "silver.points", str(bad)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "required column `ts` is missing" in proc.stderr
