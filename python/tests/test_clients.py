"""Chapter 4 of the Kafka primer, example by example, in Python: async send without and with a
callback, sync send, the auto-commit consumer resuming after a restart, commitSync, commitAsync,
the custom offset store through a rebalance listener, and the two-interceptor chain."""

from __future__ import annotations

import threading
import time

import pytest

import runnel
from runnel import Consumer, ConsumerInterceptor, Producer, ProducerInterceptor, TopicPartition

CHAPTER = {"acks": "all", "batch.size": 16384, "linger.ms": 1, "buffer.memory": 33554432}


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def log(data):
    with runnel.open(data, background_maintenance=False) as lg:
        lg.create_topic("first", partitions=2)
        yield lg


def all_values(log, topic="first"):
    out = []
    for p in range(log.partition_count(topic)):
        out += log.fetch(topic, p, offset=0, max_bytes=1 << 24).values()
    return sorted(out, key=lambda v: int(v))


def poll_n(consumer, n, timeout=10.0):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        got += consumer.poll(0.1)
    return got


def test_async_send_without_callback(log):
    with Producer(log, CHAPTER) as producer:
        for i in range(100):
            producer.send("first", str(i), key=str(i))
    assert all_values(log) == [str(i).encode() for i in range(100)]


def test_async_send_with_callback_in_offset_order(log):
    seen = []
    lock = threading.Lock()

    def on_completion(metadata, exception):
        assert exception is None
        with lock:
            seen.append(metadata)

    with Producer(log, CHAPTER) as producer:
        for i in range(100):
            producer.send("first", str(i), key=str(i), callback=on_completion)
    assert len(seen) == 100
    for p in (0, 1):
        offsets = [m.offset for m in seen if m.partition == p]
        assert offsets == list(range(len(offsets)))


def test_sync_send_is_durable_when_result_returns(log):
    with Producer(log, CHAPTER) as producer:
        for i in range(20):
            metadata = producer.send("first", str(i), partition=0).result()
            assert (metadata.partition, metadata.offset) == (0, i)
            assert log.partition_info("first", 0).high_watermark == i + 1
        with pytest.raises(runnel.UnknownTopicOrPartitionError):
            producer.send("nope", b"x").result()


def test_auto_commit_consumer_resumes_after_restart(data):
    with runnel.open(data) as log:
        log.create_topic("first", partitions=2)
        with Producer(log, CHAPTER) as producer:
            for i in range(60):
                producer.send("first", str(i), key=str(i))
        with Consumer(log, {"group.id": "test", "enable.auto.commit": True, "auto.commit.interval.ms": 50, "auto.offset.reset": "earliest", "max.poll.records": 10}) as c:
            c.subscribe(["first"])
            first = poll_n(c, 30)
        # Closing with auto-commit on committed what poll returned.
    with runnel.open(data) as log:
        committed = [log.committed("test", "first", p) or 0 for p in (0, 1)]
        assert sum(committed) == len(first)
        with Consumer(log, {"group.id": "test", "auto.offset.reset": "earliest"}) as c:
            c.subscribe(["first"])
            rest = poll_n(c, 60 - len(first))
        assert all(r.offset >= committed[r.partition] for r in rest)
        assert len(first) + len(rest) == 60


def test_commit_sync_then_the_next_consumer_continues_exactly(log):
    with Producer(log, CHAPTER) as producer:
        for i in range(50):
            producer.send("first", str(i), partition=0)
    config = {"group.id": "test", "enable.auto.commit": False, "auto.offset.reset": "earliest", "max.poll.records": 20}
    with Consumer(log, config) as c:
        c.subscribe(["first"])
        got = poll_n(c, 20)
        c.commit()
        assert c.committed(TopicPartition("first", 0)) == 20
        assert len(c.poll(1.0)) == 20  # polled, never committed: redelivered
    with Consumer(log, config) as c:
        c.subscribe(["first"])
        rest = poll_n(c, 30)
    assert [r.offset for r in got] == list(range(20))
    assert [r.offset for r in rest] == list(range(20, 50))


def test_commit_async_calls_back(log):
    log.append("first", [b"a", b"b"], partition=0)
    calls = []
    with Consumer(log, {"group.id": "test", "enable.auto.commit": False, "auto.offset.reset": "earliest"}) as c:
        c.subscribe(["first"])
        poll_n(c, 2)
        c.commit(asynchronous=True, callback=lambda error: calls.append(error))
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            c.poll(0.01)
    assert calls == [None]
    assert log.committed("test", "first", 0) == 2


def test_custom_offset_store_through_the_rebalance_listener(log):
    with Producer(log, CHAPTER) as producer:
        for i in range(200):
            producer.send("first", str(i), key=str(i))
    store: dict = {}  # the external offset store
    seen = []
    events = {"a": [], "b": []}

    def member(name):
        current: dict = {}

        def on_revoke(consumer, partitions):
            events[name].append(("revoked", len(partitions)))
            for tp in partitions:  # commitOffset(currentOffset)
                if tp in current:
                    store[tp] = current[tp]

        def on_assign(consumer, partitions):
            events[name].append(("assigned", len(partitions)))
            current.clear()
            for tp in partitions:  # consumer.seek(partition, getOffset(partition))
                consumer.seek(tp, store.get(tp, 0))

        c = Consumer(log, {"group.id": "test", "enable.auto.commit": False, "max.poll.records": 7})
        c.subscribe(["first"], on_assign=on_assign, on_revoke=on_revoke)
        return c, current

    def step(c, current):
        for r in c.poll(0.05):
            seen.append(r.value)
            current[TopicPartition(r.topic, r.partition)] = r.offset + 1
        store.update(current)

    a, ca = member("a")
    for _ in range(5):
        step(a, ca)
    b, cb = member("b")
    deadline = time.monotonic() + 10
    while len(seen) < 200 and time.monotonic() < deadline:
        step(a, ca)
        step(b, cb)
    assert sorted(seen, key=int) == [str(i).encode() for i in range(200)], "every record exactly once across the rebalance"
    assert events["a"] == [("assigned", 2), ("revoked", 2), ("assigned", 1)]
    assert events["b"] == [("assigned", 1)]
    a.close()
    b.close()


class TimeInterceptor(ProducerInterceptor):
    """Section 4.3.2: the send time, then a comma, in front of the value."""

    def on_send(self, record):
        record.value = f"{int(time.time() * 1000)},{record.value}"
        return record


class CounterInterceptor(ProducerInterceptor):
    """Counts successes and failures; prints them at close."""

    def __init__(self):
        self.success = 0
        self.error = 0
        self.closed = 0

    def on_acknowledgement(self, metadata, exception):
        if exception is None:
            self.success += 1
        else:
            self.error += 1

    def close(self):
        print(f"Successful sent: {self.success}")
        print(f"Failed sent: {self.error}")
        self.closed += 1


def test_interceptor_chain(log):
    counter = CounterInterceptor()
    before = int(time.time() * 1000)
    producer = Producer(log, CHAPTER, interceptors=[TimeInterceptor(), counter])
    for i in range(10):
        producer.send("first", f"message{i}", partition=0)
    with pytest.raises(runnel.UnknownTopicOrPartitionError):
        producer.send("no-such-topic", "x").result()
    producer.close()
    assert (counter.success, counter.error, counter.closed) == (10, 1, 1)
    values = log.fetch("first", 0, offset=0).values()
    assert len(values) == 10
    for i, v in enumerate(values):
        ts, rest = v.decode().split(",", 1)
        assert int(ts) >= before and rest == f"message{i}"


class Tally(ConsumerInterceptor):
    def __init__(self):
        self.consumed = 0
        self.commits = []

    def on_consume(self, records):
        self.consumed += len(records)
        return records

    def on_commit(self, offsets):
        self.commits.append(dict(offsets))


def test_consumer_interceptors_and_queue_versus_publish_subscribe(log):
    with Producer(log, CHAPTER) as producer:
        for i in range(100):
            producer.send("first", str(i), key=str(i))
    tally = Tally()
    audit = Consumer(log, {"group.id": "audit", "auto.offset.reset": "earliest"}, interceptors=[tally], value_deserializer=bytes.decode)
    w1 = Consumer(log, {"group.id": "workers", "auto.offset.reset": "earliest"})
    w2 = Consumer(log, {"group.id": "workers", "auto.offset.reset": "earliest"})
    for c in (audit, w1, w2):
        c.subscribe(["first"])
    a, b, c2 = [], [], []
    deadline = time.monotonic() + 10
    while (len(a) < 100 or len(b) + len(c2) < 100) and time.monotonic() < deadline:
        a += audit.poll(0.01)
        b += w1.poll(0.01)
        c2 += w2.poll(0.01)
    assert sorted((r.value for r in a), key=int) == [str(i) for i in range(100)]  # deserialized to str
    assert b and c2 and sorted([r.value for r in b + c2], key=int) == [str(i).encode() for i in range(100)]
    audit.commit()
    assert tally.consumed == 100 and sum(tally.commits[-1].values()) == 100
    for c in (audit, w1, w2):
        c.close()


def test_transactional_producer_and_read_committed_consumer(log):
    producer = Producer(log, {"transactional.id": "tx-1"})
    producer.begin_transaction()
    for i in range(5):
        producer.send("first", f"aborted{i}", partition=0)
    producer.abort_transaction()
    producer.begin_transaction()
    for i in range(5):
        producer.send("first", f"committed{i}", partition=0)
    producer.send_offsets_to_transaction({TopicPartition("first", 1): 0}, "g2")
    producer.commit_transaction()
    producer.close()
    with Consumer(log, {"group.id": "g", "auto.offset.reset": "earliest", "isolation.level": "read_committed"}) as c:
        c.subscribe(["first"])
        got = poll_n(c, 5)
        assert [r.value for r in got] == [f"committed{i}".encode() for i in range(5)]
        assert c.poll(0.05) == []


def test_assign_seek_pause_and_pattern(log):
    log.append("first", [b"0", b"1", b"2"], partition=1)
    c = Consumer(log, {"auto.offset.reset": "earliest"})
    c.assign([TopicPartition("first", 1)])
    assert [r.value for r in c.poll(1.0)] == [b"0", b"1", b"2"]
    c.seek(TopicPartition("first", 1), 1)
    assert c.position(TopicPartition("first", 1)) == 1
    c.pause([TopicPartition("first", 1)])
    assert c.poll(0.05) == []
    c.resume([TopicPartition("first", 1)])
    assert [r.offset for r in c.poll(1.0)] == [1, 2]
    with pytest.raises(runnel.InvalidArgumentError):
        c.commit()  # no group.id
    c.close()
    log.create_topic("orders-eu")
    p = Consumer(log, {"group.id": "pat"})
    p.subscribe("^orders-.*")
    p.poll(0.2)
    assert p.assignment() == [TopicPartition("orders-eu", 0)]
    p.close()


def test_a_producer_dropped_without_close_is_flushed_and_does_not_crash(log):
    import gc

    def send_and_forget():
        producer = Producer(log, {"linger.ms": 200, "acks": 1})
        for i in range(50):
            producer.send("first", str(i), partition=0, callback=lambda m, e: None)

    send_and_forget()
    gc.collect()  # the producer is unreachable; its callbacks must still find what they need
    deadline = time.monotonic() + 10
    while log.partition_info("first", 0).log_end_offset < 50 and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert log.partition_info("first", 0).log_end_offset == 50


def test_a_failing_deserializer_loses_no_record(log):
    log.append("first", [b"1", b"not a number", b"3"], partition=0)

    def strict(b):
        return int(b)

    with Consumer(log, {"group.id": "strict", "auto.offset.reset": "earliest"}, value_deserializer=strict) as c:
        c.subscribe(["first"])
        with pytest.raises(ValueError):
            poll_n(c, 3)
        # Nothing of the failed poll was delivered or committed past: it is all still there.
        assert c.position(TopicPartition("first", 0)) == 0
        assert c.committed(TopicPartition("first", 0)) is None
