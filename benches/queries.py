"""The query suite: the same questions for Weir (DataFusion SQL over Flight SQL)
and DuckDB (over the generated Parquet files). `{points}` is the table (Weir)
or the read_parquet(...) call (DuckDB)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from generate import START, sensor_ids


@dataclass
class Query:
    name: str
    weir: str
    duckdb: str
    # A rollup question the Gold views answer (through the MV rewrite).
    rollup: bool = False


def _ts(offset_s: int) -> str:
    return (START + dt.timedelta(seconds=offset_s)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ids(sensors: int, n: int, seed_offset: int) -> str:
    ids = sensor_ids(sensors)
    step = max(1, len(ids) // n)
    chosen = [ids[(seed_offset + i * step) % len(ids)] for i in range(min(n, len(ids)))]
    return ", ".join(f"'{i}'" for i in chosen)


def suite(sensors: int, hours: int) -> list[Query]:
    span = hours * 3600
    day_end = min(span, 86400)
    stats = "count(*) AS n, min(value) AS lo, max(value) AS hi, avg(value) AS mean, var_samp(value) AS var, median(value) AS med"

    def stats_query(n: int, start: int, length: int) -> str:
        return (
            f"SELECT device_id, {stats} FROM {{points}} "
            f"WHERE device_id IN ({_ids(sensors, n, 7)}) "
            f"AND ts >= TIMESTAMPTZ '{_ts(start)}' AND ts < TIMESTAMPTZ '{_ts(start + length)}' "
            "GROUP BY device_id ORDER BY device_id"
        )

    same = lambda sql: (sql, sql)  # noqa: E731
    q = []
    label_day = "1 day" if span >= 86400 else f"{hours} h (whole range)"
    q.append(Query(f"100 sensors x {label_day}: stats", *same(stats_query(100, 0, day_end))))
    q.append(Query("10 sensors x 10 min: stats", *same(stats_query(10, min(1800, span - 600), 600))))
    q.append(Query("100 sensors x 1 h: stats", *same(stats_query(100, 0, min(3600, span)))))
    ten = _ids(sensors, 10, 3)
    window = f"ts >= TIMESTAMPTZ '{_ts(0)}' AND ts < TIMESTAMPTZ '{_ts(min(6 * 3600, span))}'"
    q.append(
        Query(
            "1-min downsampling, 10 sensors x 6 h",
            f"SELECT device_id, date_bin(INTERVAL '1 minute', ts) AS minute, avg(value) AS mean, min(value) AS lo, max(value) AS hi "
            f"FROM {{points}} WHERE device_id IN ({ten}) AND {window} GROUP BY 1, 2 ORDER BY 1, 2",
            f"SELECT device_id, time_bucket(INTERVAL '1 minute', ts) AS minute, avg(value) AS mean, min(value) AS lo, max(value) AS hi "
            f"FROM {{points}} WHERE device_id IN ({ten}) AND {window} GROUP BY 1, 2 ORDER BY 1, 2",
        )
    )
    q.append(
        Query(
            "last point per sensor",
            "SELECT device_id, max(ts) AS last_ts, last_value(value ORDER BY ts) AS last FROM {points} GROUP BY device_id ORDER BY device_id",
            "SELECT device_id, max(ts) AS last_ts, arg_max(value, ts) AS last FROM {points} GROUP BY device_id ORDER BY device_id",
        )
    )
    q.append(
        Query(
            "hourly fleet scan, quality = 0",
            "SELECT date_bin(INTERVAL '1 hour', ts) AS hour, count(*) AS n, avg(value) AS mean, max(value) AS hi "
            "FROM {points} WHERE quality = 0 GROUP BY 1 ORDER BY 1",
            "SELECT time_bucket(INTERVAL '1 hour', ts) AS hour, count(*) AS n, avg(value) AS mean, max(value) AS hi "
            "FROM {points} WHERE quality = 0 GROUP BY 1 ORDER BY 1",
        )
    )
    # Rollups: what dashboards ask all day. Weir answers them from the Gold
    # views (gold.points_1m/1h/1d) through the automatic rewrite.
    hundred = _ids(sensors, 100, 11)
    whole = f"ts >= TIMESTAMPTZ '{_ts(0)}' AND ts < TIMESTAMPTZ '{_ts(day_end)}'"
    q.append(
        Query(
            f"rollup: hourly stats, 100 sensors x {label_day}",
            f"SELECT device_id, date_bin(INTERVAL '1 hour', ts) AS hour, count(*) AS n, avg(value) AS mean, "
            f"min(value) AS lo, max(value) AS hi, stddev(value) AS sd FROM {{points}} "
            f"WHERE device_id IN ({hundred}) AND {whole} GROUP BY 1, 2 ORDER BY 1, 2",
            f"SELECT device_id, time_bucket(INTERVAL '1 hour', ts) AS hour, count(*) AS n, avg(value) AS mean, "
            f"min(value) AS lo, max(value) AS hi, stddev(value) AS sd FROM {{points}} "
            f"WHERE device_id IN ({hundred}) AND {whole} GROUP BY 1, 2 ORDER BY 1, 2",
            rollup=True,
        )
    )
    q.append(
        Query(
            f"rollup: daily stats per sensor, fleet x {label_day}",
            "SELECT device_id, count(*) AS n, avg(value) AS mean, min(value) AS lo, max(value) AS hi, "
            "var_samp(value) AS var FROM {points} GROUP BY 1 ORDER BY 1",
            "SELECT device_id, count(*) AS n, avg(value) AS mean, min(value) AS lo, max(value) AS hi, "
            "var_samp(value) AS var FROM {points} GROUP BY 1 ORDER BY 1",
            rollup=True,
        )
    )
    q.append(
        Query(
            "rollup: fleet average per minute",
            "SELECT date_bin(INTERVAL '1 minute', ts) AS minute, count(*) AS n, avg(value) AS mean "
            "FROM {points} GROUP BY 1 ORDER BY 1",
            "SELECT time_bucket(INTERVAL '1 minute', ts) AS minute, count(*) AS n, avg(value) AS mean "
            "FROM {points} GROUP BY 1 ORDER BY 1",
            rollup=True,
        )
    )
    return q
