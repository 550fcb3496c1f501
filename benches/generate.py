"""Deterministic generator for the 200,000-sensor scenario at a chosen scale.

Each sensor is sampled at 1 Hz; values are a seeded random walk; about 0.5 %
of samples carry a bad quality code. One Parquet file per hour, sorted by
(device_id, ts) -- the layout the design notes (docs/design.md, "Data
model") measured as best for "N sensors over a day" -- with the
silver.points column names and types.

    python generate.py --sensors 2000 --hours 2 --seed 42 --out DIR

It also generates the device-status fleet for Kafka/MQTT ingest runs: one
message per device and second with ten metrics (cpu, memory, disk, network
in/out, temperature, voltage, current, pressure, humidity), as JSON objects or
InfluxDB line protocol (50 lines per message):

    python generate.py messages --format json --devices 2000 --seconds 60 --out status.jsonl
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("device_id", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("quality", pa.int32()),
        pa.field("unit", pa.string()),
        pa.field("source", pa.string()),
    ]
)


def sensor_ids(n: int) -> list[str]:
    return [f"s{i:06d}" for i in range(n)]


def generate(sensors: int, hours: int, seed: int, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ids = np.array(sensor_ids(sensors), dtype=object)
    level = rng.uniform(20.0, 80.0, sensors)  # where each walk starts
    start_us = int(START.timestamp() * 1_000_000)
    files = []
    for hour in range(hours):
        steps = rng.normal(0.0, 0.05, (sensors, 3600))
        values = level[:, None] + np.cumsum(steps, axis=1)
        level = values[:, -1]
        ts = start_us + (hour * 3600 + np.arange(3600, dtype=np.int64)) * 1_000_000
        quality = np.where(rng.random((sensors, 3600)) < 0.005, 1, 0).astype(np.int32)
        n = sensors * 3600
        table = pa.table(
            {
                "ts": pa.array(np.tile(ts, sensors), pa.timestamp("us", tz="UTC")),
                "device_id": pa.array(np.repeat(ids, 3600), pa.string()),
                "metric": pa.array(["temperature"] * n, pa.string()),
                "value": pa.array(values.reshape(-1), pa.float64()),
                "quality": pa.array(quality.reshape(-1), pa.int32()),
                "unit": pa.array(["°C"] * n, pa.string()),
                "source": pa.array(["bench"] * n, pa.string()),
            },
            schema=SCHEMA,
        )
        path = out / f"points-h{hour:04d}.parquet"
        pq.write_table(
            table,
            path,
            row_group_size=512 * 1024,
            compression="zstd",
            use_dictionary=["device_id", "metric", "unit", "source"],
            column_encoding={"ts": "DELTA_BINARY_PACKED"},
            write_page_index=True,
        )
        files.append(path)
    return files


METRICS = ["cpu_usage", "memory_usage", "disk_usage", "network_in", "network_out",
           "temperature", "voltage", "current", "pressure", "humidity"]
BASE_MS = int(START.timestamp() * 1000)


def status_message(rng: random.Random, device: int, ts_ms: int) -> bytes:
    """One device-status message: ten metrics of one device at one instant (JSON)."""
    body = {"device_id": f"dev-{device:05d}", "timestamp": ts_ms}
    for m in METRICS:
        body[m] = round(rng.uniform(0, 100), 3)
    return json.dumps(body).encode()


def lp_message(rng: random.Random, first_sensor: int, ts_ms: int, lines: int) -> bytes:
    """`lines` line-protocol points (one tag per line, 20 tags per PLC)."""
    out = []
    for k in range(lines):
        s = first_sensor + k
        out.append(f"device_data,device_id=plc-{s // 20:04d},tag_name=tag{s % 20:02d},"
                   f"protocol=ModbusTcp,unit=C value={rng.uniform(0, 100):.3f},quality=0i "
                   f"{ts_ms * 1_000_000}")
    return "\n".join(out).encode()


def messages(fmt: str, devices: int, seed: int):
    """Endless (points, payload) stream: every device (JSON) or every 50
    sensors (LP) once per second of device time, in time order."""
    rng = random.Random(seed)
    i = 0
    per_second = devices if fmt == "json" else max(1, devices * len(METRICS) // 50)
    while True:
        ts = BASE_MS + (i // per_second) * 1000
        if fmt == "json":
            yield len(METRICS), status_message(rng, i % devices, ts)
        else:
            yield 50, lp_message(rng, (i % per_second) * 50, ts, 50)
        i += 1


def messages_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description="device-status messages for ingest runs")
    ap.add_argument("--format", choices=["json", "lp"], default="json")
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True, help="one message per line (LP: blank line between)")
    args = ap.parse_args(argv)
    total = args.devices * len(METRICS) * args.seconds
    points = 0
    with open(args.out, "wb") as f:
        for n, payload in messages(args.format, args.devices, args.seed):
            if points >= total:
                break
            f.write(payload + (b"\n" if args.format == "json" else b"\n\n"))
            points += n
    print(f"wrote {points:,} points to {args.out}")


def main() -> None:
    if sys.argv[1:2] == ["messages"]:
        messages_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensors", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    files = generate(args.sensors, args.hours, args.seed, args.out)
    print(f"wrote {len(files)} files, {args.sensors * args.hours * 3600:,} rows to {args.out}")


if __name__ == "__main__":
    main()
