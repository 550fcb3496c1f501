"""Exactly once on Apache Kafka under the conditions that break consumers
(issue 18, item 2): consumer-group rebalances between three `weir ingest`
processes, broker restarts (clean and kill -9) mid-stream, a compacted topic,
and a topic written by a transactional producer with aborted transactions.
Every test checks exact counts afterwards through Weir's SQL: no row lost,
none duplicated, dead letters counted separately.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_harness import (KafkaBroker, Feeder, WeirIngest, assert_exactly_once, point_message,
                           wait_until, watermarks)
from weir_harness import REPO_ROOT, connect, fetch_rows, fetch_scalar

FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50"]
# A member that dies without leaving is noticed after 6 s (the broker's minimum).
GROUP_OPTS = ["--kafka-option", "session.timeout.ms=6000,heartbeat.interval.ms=500"]


@pytest.fixture
def ingests(tmp_path):
    """Starts `weir ingest` processes (logs in tmp_path); kills leftovers at teardown."""
    started = []

    def start(data, broker, topics, args):
        w = WeirIngest(data, broker, topics, args, log_dir=tmp_path)
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            w.kill9()


def writers(conn) -> set:
    rows = fetch_rows(conn, "SELECT summary FROM iceberg_snapshots('bronze.raw_messages')")
    return {s.split('"weir.writer": "')[1].split('"')[0] for (s,) in rows if "weir.writer" in s}


def wait_caught_up(conn, broker: KafkaBroker, topic: str, partitions: int, timeout: float = 180) -> dict:
    ends = broker.end_offsets(topic, partitions)
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == ends or
               watermarks(conn, "bronze.raw_messages", topic), timeout, f"{topic} caught up to {ends}")
    return ends


def test_three_writers_in_one_group_through_rebalances(broker: KafkaBroker, weir_factory, ingests, tmp_path):
    """6 partitions, up to 3 processes in one group while 60,000 records
    arrive: the 2nd and 3rd join, one is killed -9, one leaves cleanly, the
    killed one comes back. Every rebalance moves partitions between writers
    with rows buffered and commits in flight."""
    partitions, total = 6, 60_000
    topic = broker.create_topic("rebalance", partitions)
    data = tmp_path / "data"
    args = FAST + ["--kafka-group", f"group-{topic}", *GROUP_OPTS]
    a = ingests(data, broker, topic, args)
    a.wait_log("partition assigned")
    server = weir_factory(data)
    conn = connect(server.uri)
    feeder = Feeder(broker.bootstrap, topic, partitions, range(total), batch=2000, pause=0.4,
                    poison_every=50)
    feeder.wait_delivered(8_000)
    b = ingests(data, broker, topic, args)
    b.wait_log("partition assigned")
    feeder.wait_delivered(16_000)
    c = ingests(data, broker, topic, args)
    c.wait_log("partition assigned")
    # All three hold partitions and commit.
    wait_until(lambda: len(writers(conn)) == 3 or writers(conn), 90, "three writers committing")
    b.kill9()  # its partitions stall until the session times out, then move
    feeder.wait_delivered(30_000)
    assert c.stop() == 0  # leaves the group: an immediate rebalance
    feeder.wait_delivered(40_000)
    b2 = ingests(data, broker, topic, args)  # the killed one restarts
    b2.wait_log("partition assigned")
    counts = feeder.join()
    ends = wait_caught_up(conn, broker, topic, partitions)
    assert sum(ends.values()) == total
    for w in (a, b2):
        assert w.proc.poll() is None, w.logs()
    assert a.stop() == 0 and b2.stop() == 0
    # A revoke is applied before the next flush: no writer commits rows of
    # partitions it lost, so no commit is refused by the fence (before the
    # fix, each rebalance cost refused commits and whole-writer resets).
    refused = sum(w.log_count("commit refused by the watermark fence") for w in (a, b, c, b2))
    assert refused == 0
    assert len(writers(conn)) == 4
    assert_exactly_once(conn, topic, counts, ends)
    raw_commits = fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('bronze.raw_messages')")
    print(f"rebalance: {total} records ({counts['bad']} dead letters), 4 writers, {raw_commits} raw commits")
    conn.close()


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


OUTAGE_LOG = "kafka consumer error"


def committed(conn, topic: str) -> int:
    """Records of ``topic`` committed to the raw table (its watermarks' sum)."""
    return sum(watermarks(conn, "bronze.raw_messages", topic).values())


def test_broker_restart_and_kill_mid_stream(weir_factory, ingests, tmp_path):
    """The broker stops cleanly, later is killed -9, each time mid-stream,
    and comes back on the same port and log dir: the same `weir ingest`
    process carries on, reports each outage, and every record lands once."""
    own = KafkaBroker(tmp_path / "kafka")
    try:
        partitions, total = 3, 30_000
        topic = own.create_topic("outage", partitions)
        data = tmp_path / "data"
        ingest = ingests(data, own, topic, FAST + ["--kafka-group", "outage", *GROUP_OPTS])
        ingest.wait_log("partition assigned")
        server = weir_factory(data)
        conn = connect(server.uri)
        # Batch by batch, each acknowledged before the next: production stalls
        # while the broker is down and resumes after it.
        feeder = Feeder(own.bootstrap, topic, partitions, range(total), batch=600, pause=0.4,
                        poison_every=100, sync=True)
        feeder.wait_delivered(5_000)
        wait_until(lambda: committed(conn, topic) >= 3_000 or committed(conn, topic), 90,
                   "weir committing")
        for kill in (False, True):
            # Offsets at or past these (+ one batch in flight) reach the broker after the restart.
            before = own.end_offsets(topic, partitions)
            assert sum(before.values()) + 6_000 < total, "the outage must come mid-stream"
            reported = ingest.log_count(OUTAGE_LOG)
            own.stop(kill=kill)
            # Weir notices the outage by itself (logs and the error counter).
            wait_until(lambda: ingest.log_count(OUTAGE_LOG) > reported or ingest.log_count(OUTAGE_LOG),
                       60, "the outage in weir's log")
            own.start()
            # Weir consumes and commits records produced after the restart.
            wait_until(lambda: all(o >= before[p] + 500 for p, o in
                                   watermarks(conn, "bronze.raw_messages", topic).items())
                       or watermarks(conn, "bronze.raw_messages", topic), 90,
                       f"records after the restart committed (ends before it: {before})")
        counts = feeder.join()
        ends = wait_caught_up(conn, own, topic, partitions)
        assert sum(ends.values()) == total
        assert ingest.proc.poll() is None, "weir ingest exited"
        wait_until(lambda: metric_sum(ingest.metrics(), "weir_ingest_kafka_brokers_up") == 1, 30,
                   "weir_ingest_kafka_brokers_up = 1")
        metrics = ingest.metrics()
        errors = metric_sum(metrics, "weir_ingest_source_errors_total")
        assert errors >= 2, metrics
        assert 'weir_ingest_source_errors_total{source="kafka",error="AllBrokersDown"}' in metrics
        assert ingest.log_count("kafka: no broker reachable") >= 1
        assert ingest.log_count("kafka: brokers reachable again") >= 1
        assert ingest.stop() == 0
        assert_exactly_once(conn, topic, counts, ends)
        print(f"broker outages: {total} records, {errors:.0f} source errors reported, one ingest process")
        conn.close()
    finally:
        own.stop(kill=True)


def read_all(broker: KafkaBroker, topic: str, partitions: int) -> dict:
    """Every record of the topic now (read_committed): (partition, offset) → (key, value)."""
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"probe-{topic}",
                  "isolation.level": "read_committed", "enable.auto.commit": False,
                  "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out, done = {}, set()
    try:
        while len(done) < partitions:
            m = c.poll(10)
            assert m is not None, "no record nor end of partition within 10 s"
            if m.error():
                assert m.error().code() == -191, m.error()  # _PARTITION_EOF
                done.add(m.partition())
                continue
            out[(m.partition(), m.offset())] = (m.key(), m.value())
    finally:
        c.close()
    return out


def test_compacted_topic(broker: KafkaBroker, weir_factory, tmp_path):
    """`cleanup.policy=compact`: Weir reads what the log holds after the
    cleaner ran (offsets with gaps), keys kept in Bronze, tombstones too."""
    partitions = 2
    topic = broker.create_topic("compacted", partitions, {
        "cleanup.policy": "compact", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
        "min.compaction.lag.ms": "0", "delete.retention.ms": "86400000"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True,
                         "linger.ms": 5})
    keys, rounds = 50, 10
    n = 0
    for r in range(rounds):
        for k in range(keys):
            producer.produce(topic, key=f"sensor-{k}".encode(), value=point_message(n),
                             partition=k % partitions)
            n += 1
        producer.flush(30)
    for k in range(0, keys, 10):  # tombstones: these keys are deleted
        producer.produce(topic, key=f"sensor-{k}".encode(), value=None, partition=k % partitions)
    producer.flush(30)
    produced = n + keys // 10
    # Records with new keys roll segments (segment.ms) until the cleaner has
    # left one record per sensor key (so a later pass removes nothing more);
    # the roll keys are unique, so none of them is compacted away.
    rolls = 0

    def compacted():
        nonlocal rolls
        for p in range(partitions):
            producer.produce(topic, key=f"roll-{rolls}".encode(), value=point_message(10_000 + rolls),
                             partition=p)
            rolls += 1
        producer.flush(30)
        sensors = sum(k.startswith(b"sensor-") for (k, _) in read_all(broker, topic, partitions).values())
        return sensors == keys or sensors

    wait_until(compacted, 120, "the log cleaner compacted the topic", interval=0.3)
    expected = read_all(broker, topic, partitions)
    values = [v for v in expected.values() if v[1] is not None]
    tombstones = len(expected) - len(values)
    # Each live key once, with its last value; each deleted key by its tombstone.
    live = {k: v for (k, v) in expected.values() if k.startswith(b"sensor-")}
    assert len(live) == keys and sum(v is None for v in live.values()) == keys // 10
    assert max(o for (_, o) in expected) > len(expected) // partitions  # offsets have gaps

    server = weir_factory(tmp_path / "data", ["--kafka-brokers", broker.bootstrap,
                                              "--kafka-topics", topic, *FAST])
    conn = connect(server.uri)
    wait_until(lambda: fetch_scalar(conn, f"SELECT count(*) FROM bronze.raw_messages "
                                          f"WHERE topic = '{topic}'") == len(expected)
               or fetch_scalar(conn, f"SELECT count(*) FROM bronze.raw_messages WHERE topic = '{topic}'"),
               60, "the compacted log in bronze")
    raw = fetch_rows(conn, f"SELECT source_partition, source_offset, key, payload FROM bronze.raw_messages "
                           f"WHERE topic = '{topic}'")
    got = {(p, o): (k, v) for p, o, k, v in raw}
    assert len(got) == len(raw) == len(expected)
    assert got == expected
    points = fetch_rows(conn, f"SELECT count(*), count(DISTINCT value) FROM silver.points "
                              f"WHERE source LIKE 'kafka:{topic}/%'")[0]
    assert points == (len(values), len(values))
    want = sorted(json.loads(v)["value"] for (_, v) in expected.values() if v is not None)
    assert [r[0] for r in fetch_rows(conn, f"SELECT value FROM silver.points WHERE source LIKE "
                                           f"'kafka:{topic}/%' ORDER BY value")] == want
    dead = fetch_rows(conn, f"SELECT count(*) FROM bronze.dead_letters WHERE topic = '{topic}'")[0][0]
    assert dead == tombstones
    print(f"compacted: {produced + rolls} produced, {len(expected)} left by the cleaner "
          f"({tombstones} tombstones), all in bronze with keys")
    conn.close()


def test_transactional_producer_committed_records_only(broker: KafkaBroker, weir_factory, ingests, tmp_path):
    """A transactional producer commits some transactions and aborts others,
    interleaved with a plain producer: Weir ingests exactly the committed
    records, no aborted one and no control record."""
    partitions = 3
    topic = broker.create_topic("txn", partitions)
    data = tmp_path / "data"
    ingest = ingests(data, broker, topic, FAST + ["--kafka-group", f"group-{topic}"])
    ingest.wait_log("partition assigned")
    tx = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": f"weir-test-{topic}",
                   "linger.ms": 5})
    plain = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True})
    tx.init_transactions(30)
    committed, aborted, i = [], [], 0
    for t in range(40):
        tx.begin_transaction()
        ids = list(range(i, i + 250))
        i += 250
        for n in ids:
            tx.produce(topic, value=point_message(n), partition=n % partitions)
        if t % 3 == 1:
            tx.flush(30)  # on the broker before the abort (else the abort just drops them)
            tx.abort_transaction(30)
            aborted += ids
        else:
            tx.commit_transaction(30)
            committed += ids
        for n in range(i, i + 10):  # outside any transaction
            plain.produce(topic, value=point_message(n), partition=n % partitions)
        committed += list(range(i, i + 10))
        i += 10
        plain.flush(30)
    # The log holds every record, aborted ones too, and a marker per
    # transaction and partition.
    ends = broker.end_offsets(topic, partitions)
    assert sum(ends.values()) == len(committed) + len(aborted) + 40 * partitions
    server = weir_factory(data)
    conn = connect(server.uri)
    # Done when every partition's watermark passed its last data record.
    last = {}
    for (p, o) in read_all(broker, topic, partitions):
        last[p] = max(last.get(p, -1), o)
    want_marks = {p: o + 1 for p, o in last.items()}
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == want_marks
               or watermarks(conn, "bronze.raw_messages", topic), 90, f"watermarks {want_marks}")
    assert ingest.stop() == 0
    total, distinct = fetch_rows(conn, f"SELECT count(*), count(DISTINCT value) FROM silver.points "
                                       f"WHERE source LIKE 'kafka:{topic}/%'")[0]
    raw = fetch_scalar(conn, f"SELECT count(*) FROM bronze.raw_messages WHERE topic = '{topic}'")
    dead = fetch_scalar(conn, f"SELECT count(*) FROM bronze.dead_letters WHERE topic = '{topic}'")
    leaked = fetch_scalar(conn, f"SELECT count(*) FROM silver.points WHERE source LIKE 'kafka:{topic}/%' "
                                f"AND value IN ({','.join(str(n) for n in aborted[::25])})")
    assert (total, distinct, raw, dead, leaked) == (len(committed), len(committed), len(committed), 0, 0)
    got = sorted(int(r[0]) for r in fetch_rows(conn, f"SELECT value FROM silver.points "
                                                     f"WHERE source LIKE 'kafka:{topic}/%'"))
    assert got == sorted(committed)
    print(f"transactions: {len(committed)} committed records in, {len(aborted)} aborted ones out")
    conn.close()


def test_kill_soak_short(broker: KafkaBroker, tmp_path):
    """benches/kafka_kill_soak.py with a few cycles (the bench runs >= 100)."""
    out = subprocess.run([sys.executable, str(REPO_ROOT / "benches" / "kafka_kill_soak.py"),
                          "--cycles", "5", "--bootstrap", broker.bootstrap, "--workdir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-6000:]
    assert "lost=0 dup=0" in out.stdout, out.stdout[-6000:]
