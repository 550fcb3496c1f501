"""Modbus TCP → Bronze/Silver end to end: pymodbus devices (a server no one
here wrote), the real binary, ADBC queries.

Covers issue 4 (Modbus half): exact scaled values for every data type and
byte/word order, deadband suppression, a device answering with exceptions
(quality 3, status Error) next to healthy ones, a device that goes away
(Offline) and comes back (Online again after the backoff reconnect), Bronze
rows with the raw register words, and a restart that writes no point twice.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from pymodbus.client import ModbusTcpClient

from kafka_harness import wait_until
from pg_harness import REGISTRY_DDL, PostgresServer
from weir_harness import connect, fetch_rows, fetch_scalar, weir_binary

SIM = Path(__file__).with_name("modbus_sim.py")
FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50",
        "--modbus-reconnect-min-ms", "200", "--modbus-reconnect-max-ms", "800",
        "--modbus-timeout-ms", "500"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def words(fmt: str, value, order: str = "ABCD") -> list[int]:
    """The registers a device using `order` holds for `value` (struct format)."""
    raw = struct.pack(">" + fmt, value)
    ws = [raw[i:i + 2] for i in range(0, len(raw), 2)]
    if order in ("BADC", "DCBA"):
        ws = [w[::-1] for w in ws]
    if order in ("CDAB", "DCBA"):
        ws.reverse()
    return [int.from_bytes(w, "big") for w in ws]


class Sim:
    """A pymodbus TCP server process on a fixed port (restartable)."""

    def __init__(self, tmp: Path, name: str, spec: dict):
        self.port = free_port()
        self.spec_path = tmp / f"{name}.json"
        self.spec_path.write_text(json.dumps(spec))
        self.log = open(tmp / f"{name}.log", "ab")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, str(SIM), str(self.port), str(self.spec_path)],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"modbus sim exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError as e:
                return str(e)
        wait_until(up, 30, f"modbus sim on {self.port}", interval=0.05)

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.kill()
        self.log.close()


@pytest.fixture
def sims(tmp_path):
    started = []

    def start(name, spec):
        sim = Sim(tmp_path, name, spec)
        started.append(sim)
        return sim
    yield start
    for sim in started:
        sim.close()


# (tag, address, data_type, order, struct format, raw value, scaling, offset)
TYPED = [
    ("t_int16", 0, "Int16", "ABCD", "h", -1234, 0.1, 0.0),
    ("t_uint16", 1, "UInt16", "ABCD", "H", 65000, 1.0, 0.0),
    ("t_int32", 2, "Int32", "ABCD", "i", -123456789, 1.0, 0.0),
    ("t_uint32_cdab", 4, "UInt32", "CDAB", "I", 4000000000, 1.0, 5.0),
    ("t_float32_badc", 6, "Float32", "BADC", "f", 123.456, 1.0, 0.0),
    ("t_float32_dcba", 8, "Float32", "DCBA", "f", -0.5, 2.0, 1.0),
    ("t_float64_cdab", 10, "Float64", "CDAB", "d", math.pi, 1.0, 0.0),
    ("t_int64_dcba", 14, "Int64", "DCBA", "q", -9007199254740991, 1.0, 0.0),
]


def expected(fmt, raw, scaling, offset):
    decoded = struct.unpack(">" + fmt, struct.pack(">" + fmt, raw))[0]  # f32 rounding
    return float(decoded) * scaling + offset


def registry(path: Path, plc: Sim, flaky: Sim) -> Path:
    lines = ["[defaults]", "scan_rate_ms = 200", ""]
    lines += ["[[devices]]", 'id = "plc"', f'endpoint = "127.0.0.1:{plc.port}"', "unit_id = 1", ""]
    for name, addr, dtype, order, _fmt, _raw, scaling, offset in TYPED:
        lines += ["[[devices.tags]]", f'name = "{name}"', f'address = "hr:{addr}"',
                  f'data_type = "{dtype}"', f'order = "{order}"', f"scaling = {scaling}",
                  f"offset = {offset}", 'unit = "u"', ""]
    lines += ["[[devices.tags]]", 'name = "level"', 'address = "40021"', 'data_type = "UInt16"',
              "deadband = 5.0", "",
              "[[devices.tags]]", 'name = "counter"', 'address = "hr:30"', 'data_type = "UInt16"', "",
              "[[devices.tags]]", 'name = "pressure"', 'address = "ir:0"', 'data_type = "UInt16"',
              "scaling = 0.01", "offset = -1.0", 'unit = "bar"', "",
              "[[devices.tags]]", 'name = "running"', "address = 0", 'function = "coil"',
              'data_type = "Boolean"', "",
              "[[devices.tags]]", 'name = "broken"', 'address = "hr:40"', 'data_type = "Float32"', "",
              "[[devices]]", 'id = "bad"', f'endpoint = "127.0.0.1:{plc.port}"', "",
              "[[devices.tags]]", 'name = "missing"', 'address = "hr:5000"', 'data_type = "UInt16"', "",
              "[[devices]]", 'id = "flaky"', f'endpoint = "127.0.0.1:{flaky.port}"', "",
              "[[devices.tags]]", 'name = "value"', 'address = "hr:0"', 'data_type = "UInt16"', ""]
    path.write_text("\n".join(lines))
    return path


def plc_spec() -> dict:
    hr = [0] * 64
    for _name, addr, _dtype, order, fmt, raw, _s, _o in TYPED:
        w = words(fmt, raw, order)
        hr[addr:addr + len(w)] = w
    hr[20] = 100  # level
    hr[30] = 7  # counter
    hr[40:42] = words("f", float("nan"))
    return {"hr": hr, "ir": [2500], "co": [1]}


def count(conn, device, metric) -> int:
    return fetch_scalar(conn, f"SELECT count(*) FROM silver.points "
                              f"WHERE device_id = '{device}' AND metric = '{metric}'")


def statuses(conn, device) -> list:
    return [r[0] for r in fetch_rows(
        conn, f"SELECT labels['status'] FROM silver.points WHERE device_id = '{device}' "
              f"AND metric = 'device_status' ORDER BY ts")]


def raw_watermark(conn, device) -> int:
    rows = fetch_rows(conn, "SELECT next_offset FROM weir_watermarks('bronze.raw_messages') "
                            f"WHERE source = 'modbus' AND stream = '{device}' AND partition = 0")
    return rows[0][0] if rows else 0


def test_modbus_devices_into_bronze_and_silver(sims, weir_factory, tmp_path):
    plc = sims("plc", plc_spec())
    flaky = sims("flaky", {"hr": [42]})
    reg = registry(tmp_path / "devices.toml", plc, flaky)
    data = tmp_path / "data"
    server = weir_factory(data, ["--modbus-registry", str(reg), *FAST])
    conn = connect(server.uri)

    # Exact scaled values for every type and order (first point of each tag).
    want = {name: expected(fmt, raw, s, o) for name, _a, _d, _ord, fmt, raw, s, o in TYPED}
    want.update({"level": 100.0, "counter": 7.0, "pressure": 24.0, "running": 1.0})

    def values():
        rows = fetch_rows(conn, "SELECT metric, value, quality, unit FROM silver.points "
                                "WHERE device_id = 'plc' AND metric <> 'device_status'")
        got = {}
        for metric, value, quality, unit in rows:
            got.setdefault(metric, set()).add((value, quality, unit))
        return got if set(got) >= set(want) | {"broken"} else f"have {sorted(got)}"
    wait_until(lambda: isinstance(values(), dict), 60, "every plc tag polled")
    got = values()
    for name, value in want.items():
        unit = {"pressure": "bar", "level": None, "counter": None, "running": None}.get(name, "u")
        assert got[name] == {(value, 0, unit)}, name
    # NaN registers: value null, quality 2.
    assert got["broken"] == {(None, 2, None)}

    # Deadband: 'level' (deadband 5) is written once while 'counter' (none)
    # is written every poll; a change of 3 stays suppressed, 10 is written.
    wait_until(lambda: count(conn, "plc", "counter") >= 5 or count(conn, "plc", "counter"), 30, "polls")
    assert count(conn, "plc", "level") == 1
    client = ModbusTcpClient("127.0.0.1", port=plc.port)
    assert client.connect()
    assert not client.write_register(20, 103, device_id=1).isError()
    seen = count(conn, "plc", "counter")
    wait_until(lambda: count(conn, "plc", "counter") >= seen + 5 or count(conn, "plc", "counter"),
               30, "more polls")
    assert count(conn, "plc", "level") == 1
    assert not client.write_register(20, 110, device_id=1).isError()
    client.close()
    wait_until(lambda: count(conn, "plc", "level") == 2 or count(conn, "plc", "level"), 30, "level change")
    assert fetch_scalar(conn, "SELECT max(value) FROM silver.points "
                              "WHERE device_id = 'plc' AND metric = 'level'") == 110.0

    # A device answering with exceptions: status Error, quality 3, value null;
    # the healthy device on the same server stays Online.
    wait_until(lambda: statuses(conn, "bad") == ["Error"] or statuses(conn, "bad"), 30, "bad in Error")
    (value, quality, error), = fetch_rows(
        conn, "SELECT value, quality, labels['error'] FROM silver.points "
              "WHERE device_id = 'bad' AND metric = 'missing'")
    assert value is None and quality == 3 and "exception 2" in error.lower(), error
    assert "exception" in fetch_scalar(
        conn, "SELECT labels['error'] FROM silver.points WHERE device_id = 'bad' "
              "AND metric = 'device_status'").lower()
    assert statuses(conn, "plc") == ["Online"]

    # A device that goes away: Offline; back: Online again after reconnect.
    wait_until(lambda: statuses(conn, "flaky") == ["Online"] or statuses(conn, "flaky"), 30, "flaky Online")
    flaky.kill()
    wait_until(lambda: statuses(conn, "flaky") == ["Online", "Offline"] or statuses(conn, "flaky"),
               30, "flaky Offline")
    before = count(conn, "plc", "counter")
    flaky.start()
    wait_until(lambda: statuses(conn, "flaky") == ["Online", "Offline", "Online"] or statuses(conn, "flaky"),
               30, "flaky back Online")
    assert count(conn, "plc", "counter") > before, "other devices kept polling"
    bad_quality = fetch_rows(conn, "SELECT value, quality FROM silver.points "
                                   "WHERE device_id = 'flaky' AND metric = 'value' ORDER BY ts")
    assert bad_quality[0] == (42.0, 0), bad_quality
    assert (None, 4) in bad_quality or (None, 5) in bad_quality, bad_quality
    assert bad_quality[-1] == (42.0, 0)

    # Bronze keeps the raw register words with their coordinates.
    wait_until(lambda: raw_watermark(conn, "plc") > 0 or "no commit yet", 30, "raw committed")
    payload, unit_id, ctype = fetch_rows(
        conn, "SELECT payload, headers['unit_id'], content_type FROM bronze.raw_messages "
              "WHERE source = 'modbus' AND topic = 'plc' AND source_offset = 0")[0]
    assert (unit_id, ctype) == ("1", "modbus_reads_json")
    doc = json.loads(payload)
    hr0 = [r for r in doc["reads"] if r["function"] == 3 and r["address"] == 0][0]
    assert hr0["words"][:2] == [(-1234) & 0xFFFF, 65000]

    # Restart: the ordered stop commits, the poll sequence resumes at the
    # watermark, and no point or raw row is written twice.
    conn.close()
    assert server.stop() == 0
    server = weir_factory(data, ["--modbus-registry", str(reg), *FAST])
    conn = connect(server.uri)
    mark = raw_watermark(conn, "plc")
    assert mark > 0
    wait_until(lambda: raw_watermark(conn, "plc") >= mark + 5 or raw_watermark(conn, "plc"), 60,
               "polls after restart")
    total, distinct = fetch_rows(conn, "SELECT count(*), count(DISTINCT device_id || '/' || metric || '/' "
                                       "|| CAST(ts AS VARCHAR)) FROM silver.points")[0]
    assert total == distinct
    n, d, hi = fetch_rows(conn, "SELECT count(*), count(DISTINCT source_offset), max(source_offset) "
                                "FROM bronze.raw_messages WHERE topic = 'plc'")[0]
    assert n == d == hi + 1 and hi + 1 <= raw_watermark(conn, "plc")
    conn.close()


def test_kill_9_loop_writes_no_point_twice(sims, weir_factory, tmp_path):
    plc = sims("plc", plc_spec())
    flaky = sims("flaky", {"hr": [42]})
    reg = registry(tmp_path / "devices.toml", plc, flaky)
    data = tmp_path / "data"
    args = ["--modbus-registry", str(reg), *[("150" if v == "300" else v) for v in FAST]]
    marks = []
    for _round in range(4):
        server = weir_factory(data, args)
        conn = connect(server.uri)
        start = raw_watermark(conn, "plc")
        marks.append(start)
        wait_until(lambda: raw_watermark(conn, "plc") >= start + 3 or raw_watermark(conn, "plc"), 60,
                   "commits in this round")
        conn.close()
        server.proc.kill()  # kill -9: whatever was buffered is gone, nothing may repeat
        server.discard()
    assert marks == sorted(marks) and marks[-1] > marks[1]
    server = weir_factory(data, args)
    conn = connect(server.uri)
    total, distinct = fetch_rows(conn, "SELECT count(*), count(DISTINCT device_id || '/' || metric || '/' "
                                       "|| CAST(ts AS VARCHAR)) FROM silver.points")[0]
    assert total == distinct and total > 0
    n, d = fetch_rows(conn, "SELECT count(*), count(DISTINCT source_offset) FROM bronze.raw_messages "
                            "WHERE topic = 'plc'")[0]
    assert n == d and n > 0
    conn.close()


# --- PostgreSQL device registry ------------------------------------------------


@pytest.fixture
def postgres():
    pg = PostgresServer()
    yield pg
    pg.destroy()


def test_modbus_registry_from_postgresql(sims, postgres, weir_factory, tmp_path):
    hr = [0] * 16
    hr[0:2] = words("f", 21.5, "CDAB")
    hr[2] = 1234
    sim = sims("pgplc", {"hr": hr, "ir": [0, 800]})
    postgres.psql(REGISTRY_DDL + f"""
        INSERT INTO devices (name, protocol, endpoint, config) VALUES
          ('pg-plc', 'ModbusTcp', '127.0.0.1:{sim.port}',
           '{{"unit_id": 1, "order": "CDAB", "scan_rate_ms": 200}}'),
          ('disabled-plc', 'ModbusTcp', '127.0.0.1:1', '{{}}'),
          ('pg-gone', 'ModbusTcp', '127.0.0.1:{free_port()}', '{{"scan_rate_ms": 200}}'),
          ('mqtt-thing', 'Mqtt', 'tcp://127.0.0.1:1883', '{{}}');
        UPDATE devices SET enabled = false WHERE name = 'disabled-plc';
        INSERT INTO tags (device_id, name, address, data_type, unit, scaling, tag_offset, scan_rate)
        SELECT id, 'temp', '40001', 'Float'::tag_data_type, '°C', 1.0, 0.0, NULL FROM devices WHERE name = 'pg-plc'
        UNION ALL
        SELECT id, 'rpm', 'hr:2', 'UInt16'::tag_data_type, 'rpm', 0.5, 0.0, 200 FROM devices WHERE name = 'pg-plc'
        UNION ALL
        SELECT id, 'speed', '30002', 'Int16'::tag_data_type, 'm/s', 0.01, 0.0, 400 FROM devices WHERE name = 'pg-plc'
        UNION ALL
        SELECT id, 'x', '40001', 'UInt16'::tag_data_type, NULL, 1.0, 0.0, NULL FROM devices WHERE name = 'disabled-plc'
        UNION ALL
        SELECT id, 'v', '40001', 'UInt16'::tag_data_type, NULL, 1.0, 0.0, NULL FROM devices WHERE name = 'pg-gone'
        UNION ALL
        SELECT id, 'y', 'a/b', 'String'::tag_data_type, NULL, 1.0, 0.0, NULL FROM devices WHERE name = 'mqtt-thing';
        INSERT INTO tags (device_id, name, address, data_type, enabled)
        SELECT id, 'off', '40010', 'UInt16', false FROM devices WHERE name = 'pg-plc';
    """)
    server = weir_factory(tmp_path / "data", ["--modbus-registry", postgres.url, *FAST])
    conn = connect(server.uri)

    def latest():
        rows = fetch_rows(conn, "SELECT DISTINCT device_id, metric, value, unit FROM silver.points "
                                "WHERE metric <> 'device_status' AND device_id <> 'pg-gone'")
        return rows if len(rows) >= 3 else f"{rows}"
    wait_until(lambda: isinstance(latest(), list), 60, "points of the PostgreSQL registry's device")
    assert sorted(latest()) == [("pg-plc", "rpm", 617.0, "rpm"), ("pg-plc", "speed", 8.0, "m/s"),
                                ("pg-plc", "temp", 21.5, "°C")]
    assert statuses(conn, "pg-plc") == ["Online"]
    # Status changes are written back to the registry.
    wait_until(lambda: statuses(conn, "pg-gone") == ["Offline"] or statuses(conn, "pg-gone"), 30, "pg-gone Offline")

    def registry_status():
        out = ["|".join(r) for r in postgres.psql(
            "SELECT name, status, last_seen IS NOT NULL FROM devices ORDER BY name")]
        want = ["disabled-plc|Unknown|f", "mqtt-thing|Unknown|f", "pg-gone|Offline|f", "pg-plc|Online|t"]
        return out == want or out
    wait_until(registry_status, 30, "status in the PostgreSQL registry")
    conn.close()


def test_a_bad_postgresql_registry_is_a_clear_error(postgres, tmp_path):
    postgres.psql(REGISTRY_DDL + """
        INSERT INTO devices (name, protocol, endpoint) VALUES ('p', 'ModbusTcp', '127.0.0.1:1');
        INSERT INTO tags (device_id, name, address, data_type)
        SELECT id, 'label', '40001', 'String' FROM devices;
    """)
    proc = subprocess.run([str(weir_binary()), "ingest", "--data-dir", str(tmp_path / "data"),
                           "--modbus-registry", postgres.url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "tag `label`" in proc.stderr and "unsupported data type `String`" in proc.stderr, proc.stderr
