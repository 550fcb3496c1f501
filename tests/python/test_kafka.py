"""Kafka → Bronze/Silver end to end: a real broker, the real binary, ADBC queries.

Covers issue 3's proof: decoding and routing, dead letters with coordinates,
watermarks equal to the topic end offsets, the hot tier (rows visible before
any commit, each exactly once while commits land), a kill -9 loop, and two
writers in one consumer group with one killed.
"""

from __future__ import annotations

import random
import threading
import time


from kafka_harness import KafkaBroker, WeirIngest, assert_exactly_once, produce, wait_until, watermarks
from weir_harness import connect, execute, fetch_rows, fetch_scalar

FAST = ["--commit-interval-ms", "300", "--hot-interval-ms", "50"]


def feed_and_watch(conn, broker: KafkaBroker, topic: str, partitions: int, start: int, total: int) -> None:
    """Produces records start..total in batches of 1,000 while counting
    silver.points: never a row twice, never backwards, all in the end."""
    done = threading.Event()

    def feed():
        p = broker.producer()
        for first in range(start, total, 1000):
            produce(p, topic, partitions, range(first, min(first + 1000, total)))
            time.sleep(0.05)
        done.set()

    threading.Thread(target=feed, daemon=True).start()
    seen = []
    while True:
        finished = done.is_set()
        n, distinct = fetch_rows(conn, "SELECT count(*), count(DISTINCT value) FROM silver.points")[0]
        assert n == distinct, f"a record was counted twice: {n} rows, {distinct} distinct"
        seen.append(n)
        if finished and n == total:
            break
        assert len(seen) < 5000, f"stuck at {n}"
    assert seen == sorted(seen), "counts went backwards"


def test_kafka_into_bronze_silver_and_dead_letters(broker: KafkaBroker, weir_factory, tmp_path):
    points = broker.create_topic("points", 3)
    lines = broker.create_topic("lines", 2)
    producer = broker.producer()
    counts = produce(producer, points, 3, range(3000), poison_every=100)
    for i in range(500):
        payload = f"device_data,device_id=plc{i % 5},tag_name=t{i % 3},unit=C value={i}.5,quality=0i {1767225600000000000 + i * 1000}"
        producer.produce(lines, value=payload.encode(), partition=i % 2)
    producer.produce(lines, value=b"device_data,device_id=x value= 12", partition=0)
    producer.flush(30)

    server = weir_factory(tmp_path / "data", [
        "--kafka-brokers", broker.bootstrap, "--kafka-topics", f"{points},{lines}",
        "--kafka-route", f"{lines}=line_protocol", *FAST])
    conn = connect(server.uri)
    ends = broker.end_offsets(points, 3)
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", points) == ends or
               watermarks(conn, "bronze.raw_messages", points), 60, "points committed")
    wait_until(lambda: sum(watermarks(conn, "bronze.raw_messages", lines).values()) == 501 or
               watermarks(conn, "bronze.raw_messages", lines), 60, "lines committed")
    assert_exactly_once(conn, points, counts, ends)

    # Line protocol went through its route: tag_name is the metric, unit kept.
    rows = fetch_rows(conn, f"SELECT count(*), min(value), max(value), min(unit) FROM silver.points "
                            f"WHERE source LIKE 'kafka:{lines}/%'")
    assert rows == [(500, 0.5, 499.5, "C")]
    assert fetch_scalar(conn, f"SELECT count(*) FROM silver.points WHERE source LIKE 'kafka:{lines}/%' "
                              f"AND metric = 't1' AND device_id = 'plc1'") == 34

    # Dead letters keep the reason, the coordinates and the untouched payload.
    dead = fetch_rows(conn, "SELECT topic, source_partition, source_offset, stage, reason, payload "
                            "FROM bronze.dead_letters ORDER BY topic, source_partition, source_offset")
    by_topic = {}
    for topic, part, offset, stage, reason, payload in dead:
        by_topic.setdefault(topic, []).append((part, offset, stage, reason, payload))
        assert stage == "decode" and reason and offset is not None and part is not None
    assert len(by_topic[points]) == counts["bad"]
    assert len(by_topic[lines]) == 1 and "line protocol" in by_topic[lines][0][3]
    assert any(p[4] == b"{not json" and "JSON" in p[3] for p in by_topic[points])

    # Raw keeps payload, key and headers exactly as produced.
    key, seq, payload = fetch_rows(
        conn, f"SELECT key, headers['seq'], payload FROM bronze.raw_messages "
              f"WHERE topic = '{points}' AND source_partition = 1 AND source_offset = 0")[0]
    assert (key, seq) == (b"dev1", "1") and payload.startswith(b'{"device_id": "dev1"')
    conn.close()


def test_hot_tier_serves_rows_before_the_commit(broker: KafkaBroker, weir_factory, tmp_path):
    topic = broker.create_topic("hot", 2)
    data = tmp_path / "data"
    server = weir_factory(data, ["--kafka-brokers", broker.bootstrap, "--kafka-topics", topic,
                                 "--commit-interval-ms", "600000", "--hot-interval-ms", "50"])
    conn = connect(server.uri)
    producer = broker.producer()
    produce(producer, topic, 2, range(1000))
    started = time.monotonic()
    wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 1000, 30,
               "hot rows visible", interval=0.02)
    visible_after = time.monotonic() - started
    # Nothing was committed: every row came from the hot tier.
    assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == 0
    plan = "\n".join(str(r) for r in fetch_rows(conn, "EXPLAIN SELECT sum(value) FROM silver.points"))
    assert "WeirHotScan: table=silver.points" in plan
    # count(*) is answered from exact row counts, hot rows included.
    plan = "\n".join(str(r) for r in fetch_rows(conn, "EXPLAIN SELECT count(*) FROM silver.points"))
    assert "1000 as count(*)" in plan
    assert fetch_scalar(conn, "SELECT count(DISTINCT value) FROM silver.points") == 1000
    # A materialized view reflects committed rows only: none yet.
    execute(conn, "CREATE MATERIALIZED VIEW public.per_device AS "
                  "SELECT device_id, count(*) AS n FROM silver.points GROUP BY device_id")
    assert fetch_scalar(conn, "SELECT count(*) FROM public.per_device") == 0
    print(f"hot tier: 1000 rows visible {visible_after * 1000:.0f} ms after the producer flushed")
    conn.close()
    # A clean stop commits the hot rows; after a restart they are all in Iceberg.
    assert server.stop() == 0
    server = weir_factory(data)
    conn = connect(server.uri)
    assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == 1
    assert fetch_rows(conn, "SELECT count(*), count(DISTINCT value) FROM silver.points") == [(1000, 1000)]
    execute(conn, "REFRESH MATERIALIZED VIEW public.per_device")
    assert fetch_scalar(conn, "SELECT sum(n) FROM public.per_device") == 1000
    conn.close()


def test_serve_reads_the_hot_tier_of_a_separate_ingest_process(broker: KafkaBroker, weir_factory, tmp_path):
    """Production shape: `weir ingest --hot-listen` runs the sources, `weir
    serve --hot-tier-from` answers queries; rows are visible before the
    ingest process commits, and each row counts once while commits land."""
    from kafka_harness import free_port
    topic = broker.create_topic("remote-hot", 2)
    data = tmp_path / "data"
    hot = f"127.0.0.1:{free_port()}"
    secret = ["--hot-feed-token", "feed-secret"]
    ingest = WeirIngest(data, broker, topic, ["--hot-listen", hot, "--commit-interval-ms", "600000",
                                              "--hot-interval-ms", "50", *secret])
    assert ingest.hot_addr == hot
    server = weir_factory(data, ["--hot-tier-from", f"grpc://{hot}", "--maintenance=false", *secret])
    stranger = weir_factory(tmp_path / "other", ["--hot-tier-from", f"grpc://{hot}"])
    conn = connect(server.uri)
    produce(broker.producer(), topic, 2, range(1000))
    started = time.monotonic()
    wait_until(lambda: fetch_scalar(conn, "SELECT count(*) FROM silver.points") == 1000, 30,
               "rows of the ingest process visible", interval=0.02)
    visible_after = time.monotonic() - started
    assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") == 0
    assert fetch_scalar(conn, "SELECT count(DISTINCT value) FROM silver.points") == 1000
    # Without the feed's token a server gets nothing from it (and says why).
    other = connect(stranger.uri)
    assert fetch_scalar(other, "SELECT count(*) FROM silver.points") == 0
    other.close()
    assert "hot-feed-token" in stranger.logs()
    print(f"remote hot tier: 1000 rows visible {visible_after * 1000:.0f} ms after the producer flushed")
    # The ingest process stops: it commits, then its feed goes away. The
    # rows are now committed, and the unreachable feed adds nothing.
    assert ingest.stop() == 0
    assert fetch_rows(conn, "SELECT count(*), count(DISTINCT value) FROM silver.points") == [(1000, 1000)]
    assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") >= 1

    # Again with commits landing all the time: never a row twice, never backwards.
    ingest = WeirIngest(data, broker, topic, ["--hot-listen", hot, "--commit-interval-ms", "200",
                                              "--hot-interval-ms", "20", *secret])
    total = 11_000
    feed_and_watch(conn, broker, topic, 2, 1000, total)
    assert fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')") >= 3
    assert ingest.stop() == 0
    assert fetch_rows(conn, "SELECT count(*), count(DISTINCT value) FROM silver.points") == [(total, total)]
    conn.close()


def test_each_record_once_while_commits_land(broker: KafkaBroker, weir_factory, tmp_path):
    topic = broker.create_topic("steady", 4)
    server = weir_factory(tmp_path / "data", ["--kafka-brokers", broker.bootstrap,
                                              "--kafka-topics", topic, "--commit-interval-ms", "200",
                                              "--hot-interval-ms", "20"])
    conn = connect(server.uri)
    total = 20_000
    feed_and_watch(conn, broker, topic, 4, 0, total)
    snapshots = fetch_scalar(conn, "SELECT count(*) FROM iceberg_snapshots('silver.points')")
    assert snapshots >= 3, "the test must overlap several commits"
    conn.close()


def test_kill9_loop_loses_and_duplicates_nothing(broker: KafkaBroker, weir_factory, tmp_path):
    partitions = 4
    topic = broker.create_topic("crash", partitions)
    data = tmp_path / "data"
    producer = broker.producer()
    counts = produce(producer, topic, partitions, range(0, 20_000), poison_every=50)
    lock = threading.Lock()

    def feed():
        p = broker.producer()
        for start in range(20_000, 40_000, 2000):
            c = produce(p, topic, partitions, range(start, start + 2000), poison_every=50)
            with lock:
                counts["good"] += c["good"]
                counts["bad"] += c["bad"]
            time.sleep(0.3)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    rng = random.Random(7)
    # Static membership: a restarted writer takes its partitions back at once
    # instead of waiting for the killed member's session to time out.
    group = FAST + ["--kafka-group", "crash", "--kafka-option",
                    "group.instance.id=crash-writer,session.timeout.ms=6000"]
    kills = 0
    for n in range(20):
        ingest = WeirIngest(data, broker, topic, group, log_dir=tmp_path)
        if n % 4 != 3:  # most kills land while consuming and committing
            ingest.wait_log("partition assigned")
        time.sleep(rng.uniform(0.0, 1.2))
        ingest.kill9()
        kills += 1
    feeder.join()
    assert kills >= 20

    final = WeirIngest(data, broker, topic, group, log_dir=tmp_path)
    server = weir_factory(data)
    conn = connect(server.uri)
    ends = broker.end_offsets(topic, partitions)
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == ends or
               watermarks(conn, "bronze.raw_messages", topic), 120, "catch-up after the kills")
    assert final.stop() == 0
    assert_exactly_once(conn, topic, counts, ends)
    conn.close()


def test_two_writers_in_one_group_one_killed(broker: KafkaBroker, weir_factory, tmp_path):
    """Writers A and B split a 4-partition topic; A is killed mid-way and
    restarted with its static member id (the test broker never expires dead
    members, so a takeover by session timeout cannot be staged here); then B
    leaves cleanly and A takes every partition over in a rebalance."""
    partitions = 4
    topic = broker.create_topic("pair", partitions)
    data = tmp_path / "data"
    group = FAST + ["--kafka-group", "pair"]
    static_a = ["--kafka-option", "group.instance.id=writer-a,session.timeout.ms=6000"]
    a = WeirIngest(data, broker, topic, group + static_a, log_dir=tmp_path)
    a.wait_log("partition assigned")
    b = WeirIngest(data, broker, topic, group, log_dir=tmp_path)
    b.wait_log("partition assigned")
    producer = broker.producer()
    counts = {"good": 0, "bad": 0}

    def add(c):
        for k in counts:
            counts[k] += c[k]

    server = weir_factory(data)
    conn = connect(server.uri)

    def writers():
        rows = fetch_rows(conn, "SELECT summary FROM iceberg_snapshots('bronze.raw_messages')")
        return {s.split('"weir.writer": "')[1].split('"')[0] for (s,) in rows if "weir.writer" in s}

    add(produce(producer, topic, partitions, range(0, 20_000), poison_every=40))
    wait_until(lambda: len(writers()) == 2 or writers(), 60, "both writers committing")
    add(produce(producer, topic, partitions, range(20_000, 25_000), poison_every=40))
    a.kill9()  # mid-way: with rows buffered and commits in flight
    add(produce(producer, topic, partitions, range(25_000, 30_000), poison_every=40))
    a2 = WeirIngest(data, broker, topic, group + static_a, log_dir=tmp_path)
    add(produce(producer, topic, partitions, range(30_000, 35_000), poison_every=40))
    assert b.stop() == 0  # leaves the group: A takes all four partitions
    add(produce(producer, topic, partitions, range(35_000, 40_000), poison_every=40))
    ends = broker.end_offsets(topic, partitions)
    wait_until(lambda: watermarks(conn, "bronze.raw_messages", topic) == ends or
               watermarks(conn, "bronze.raw_messages", topic), 120, "A catches up on everything")
    assert a2.stop() == 0
    assert len(writers()) == 3
    assert_exactly_once(conn, topic, counts, ends)
    conn.close()
