"""Gap filling over the Gold rollups with the real binary (issue 22, item 1):
a gap-filled query over `silver.points` is answered from `gold.points_1m`
(the aggregate under the GapFill node is rewritten; the rows appended after
the refresh are read from silver) and equals the answer without the rewrite.
SQL semantics are in tests/slt/gapfill.slt."""

from __future__ import annotations

from weir_harness import execute, fetch_rows, fetch_table

QUERY = """
SELECT date_bin_gapfill(INTERVAL '1 minute', ts) AS minute, device_id,
       locf(avg(value)) AS v_locf, interpolate(max(value)) AS v_interp, count(*) AS n
FROM silver.points
WHERE metric = 'temp' AND ts >= '2026-03-01T00:00:00Z' AND ts < '2026-03-01T00:10:00Z'
GROUP BY minute, device_id ORDER BY device_id, minute
"""


def plan_text(conn, sql: str) -> str:
    return "\n".join(str(r[1]) for r in fetch_rows(conn, "EXPLAIN " + sql))


def test_gapfill_over_gold_view(adbc_conn):
    execute(adbc_conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                       "('2026-03-01T00:00:10Z', 'd1', 'temp', 1.0), ('2026-03-01T00:00:50Z', 'd1', 'temp', 3.0), "
                       "('2026-03-01T00:04:00Z', 'd1', 'temp', 8.0), ('2026-03-01T00:02:00Z', 'd2', 'temp', 5.0), "
                       "('2026-03-01T00:03:00Z', 'd2', 'hum', 50.0)")
    execute(adbc_conn, "REFRESH MATERIALIZED VIEW gold.points_1m")
    # Not in the view yet: read from silver by the rewrite.
    execute(adbc_conn, "INSERT INTO silver.points (ts, device_id, metric, value) VALUES "
                       "('2026-03-01T00:08:30Z', 'd2', 'temp', 9.0)")

    plan = plan_text(adbc_conn, QUERY)
    assert "GapFill" in plan and "mv_rewrite gold.points_1m" in plan, plan
    rewritten = fetch_table(adbc_conn, QUERY)

    execute(adbc_conn, "SET weir.mv_rewrite = false")
    try:
        assert "mv_rewrite" not in plan_text(adbc_conn, QUERY)
        base = fetch_table(adbc_conn, QUERY)
    finally:
        execute(adbc_conn, "SET weir.mv_rewrite = true")

    assert rewritten.to_pylist() == base.to_pylist()
    rows = [(r["device_id"], r["minute"].minute, r["v_locf"], r["v_interp"], r["n"]) for r in base.to_pylist()]
    assert len(rows) == 20  # 10 minutes x 2 devices
    d1 = [r for r in rows if r[0] == "d1"]
    assert d1[0] == ("d1", 0, 2.0, 3.0, 2)
    assert d1[1] == ("d1", 1, 2.0, 4.25, 0)  # interpolated 3 -> 8 over 4 minutes
    assert d1[4] == ("d1", 4, 8.0, 8.0, 1)
    assert d1[9] == ("d1", 9, 8.0, None, 0)
    d2 = [r for r in rows if r[0] == "d2"]
    assert d2[0] == ("d2", 0, None, None, 0)
    assert d2[5] == ("d2", 5, 5.0, 7.0, 0)  # 5 at 00:02 -> 9 at 00:08
    assert d2[8] == ("d2", 8, 9.0, 9.0, 1)
