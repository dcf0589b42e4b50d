"""The Python package over the C ABI: the behaviours the C tests cover, in Python terms
(exceptions, context managers, iteration, memoryviews), plus a child process killed in the middle
of acks=all appends."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import runnel


@pytest.fixture
def log(tmp_path):
    with runnel.open(tmp_path / "data", background_maintenance=False) as lg:
        yield lg


def test_version():
    assert runnel.version() == "0.1.0"


def test_open_errors_map_to_exceptions(tmp_path):
    with runnel.open(tmp_path / "d") as first:
        with pytest.raises(runnel.LockedError) as e:
            runnel.open(tmp_path / "d")
        assert e.value.name == "RUNNEL_LOCKED" and "locked" in str(e.value)
        assert not first.read_only
    with pytest.raises(runnel.InvalidArgumentError):
        runnel.open(tmp_path / "d", default_topic_config={"segment.bytes": "-1"})
    with pytest.raises(runnel.InvalidArgumentError):
        runnel.open("bad\0path")
    with pytest.raises(TypeError):
        runnel.open(tmp_path / "d").create_topic(b"bytes-name")  # type: ignore[arg-type]


def test_closed_log_raises_and_close_is_idempotent(tmp_path):
    lg = runnel.open(tmp_path / "d")
    lg.close()
    lg.close()
    with pytest.raises(runnel.ClosedError):
        lg.list_topics()


def test_topics(log):
    log.create_topic("orders", partitions=3, config={"retention.ms": 3600000})
    with pytest.raises(runnel.TopicExistsError):
        log.create_topic("orders")
    with pytest.raises(runnel.InvalidTopicError):
        log.create_topic("../escape")
    with pytest.raises(runnel.InvalidArgumentError):
        log.create_topic("x", config={"no.such.key": 1})
    assert log.list_topics() == ["__consumer_offsets", "orders"]
    log.add_partitions("orders", 5)
    assert log.partition_count("orders") == 5
    config, parts = log.describe_topic("orders")
    assert config["retention.ms"] == "3600000"
    assert [p.partition for p in parts] == [0, 1, 2, 3, 4]
    assert all(p.high_watermark == 0 and p.segment_count == 1 for p in parts)
    with pytest.raises(runnel.UnknownTopicOrPartitionError):
        log.partition_count("nope")
    log.delete_topic("orders")
    assert "orders" not in log.list_topics()


def test_append_and_fetch_round_trip(log):
    log.create_topic("t", partitions=2, config={"max.message.bytes": 1000})
    at = log.append(
        "t",
        [
            runnel.Record(key=b"k1", value=b"v1", headers=[("trace", b"abc"), ("empty", None)], timestamp=1_700_000_000_000),
            runnel.Record(value="no key"),
            runnel.Record(key=b"tomb", value=None),
            runnel.Record(key=b"", value=b""),
        ],
        partition=0,
    )
    assert (at.partition, at.base_offset, at.last_offset, at.log_append_time) == (0, 0, 3, -1)
    log.append("t", [b"keyed"], acks=1)
    log.append("t", [b"fire"], partition=1, acks=0)
    with pytest.raises(runnel.InvalidArgumentError):
        log.append("t", [b"x"], acks=2)
    with pytest.raises(runnel.UnknownTopicOrPartitionError):
        log.append("t", [b"x"], partition=7)
    with pytest.raises(runnel.RecordTooLargeError):
        log.append("t", [b"x" * 5000], partition=0)
    with pytest.raises(TypeError):
        log.append("t", [12345], partition=0)  # type: ignore[list-item]
    log.sync()

    with log.fetch("t", 0, offset=0) as f:
        records = list(f)
        assert len(f) == len(records) >= 4
        r0, r1, r2, r3 = records[:4]
        assert (r0.offset, r0.key, r0.value, r0.timestamp) == (0, b"k1", b"v1", 1_700_000_000_000)
        assert r0.headers == [("trace", b"abc"), ("empty", None)]
        assert (r1.key, r1.value) == (None, b"no key")
        assert (r2.key, r2.value) == (b"tomb", None)
        assert (r3.key, r3.value) == (b"", b"")
        assert f.next_offset == len(records)
    info = log.partition_info("t", 0)
    with pytest.raises(runnel.OffsetOutOfRangeError):
        log.fetch("t", 0, offset=info.high_watermark + 1)
    with pytest.raises(runnel.InvalidArgumentError):
        log.fetch("t", 0, offset=0, isolation="read_some")
    # Waiting for records that do not come returns an empty fetch after the timeout.
    with log.fetch("t", 0, offset=info.high_watermark, timeout=0.02, isolation="read_committed") as f:
        assert len(f) == 0
    assert log.offset_for_timestamp("t", 0, 1_600_000_000_000) == (0, 1_700_000_000_000)
    assert log.offset_for_timestamp("t", 0, 2**62) is None


def test_memoryviews_are_zero_copy_and_safe_after_close(log):
    log.create_topic("t")
    log.append("t", [runnel.Record(value=b"x" * 64, headers=[("h", b"v")])], partition=0)
    f = log.fetch("t", 0, offset=0)
    view = next(iter(f)).value_view
    assert isinstance(view, memoryview) and view.readonly and bytes(view) == b"x" * 64
    f.close()
    del f
    gc.collect()
    # The view keeps the mapping alive: reading it after the fetch is closed is safe.
    assert bytes(view) == b"x" * 64
    with pytest.raises(runnel.ClosedError):
        g = log.fetch("t", 0, offset=0)
        r = next(iter(g))
        g.close()
        r.headers  # noqa: B018  (the header lookup needs the handle)
    del view
    gc.collect()


def test_send_to_a_file_descriptor(log, tmp_path):
    log.create_topic("t")
    log.append("t", [b"a", b"b", b"c"], partition=0)
    with open(tmp_path / "out.bin", "wb") as out:
        sent, nxt = log.send_to("t", 0, 0, out.fileno())
    assert sent == os.path.getsize(tmp_path / "out.bin") > 0 and nxt == 3
    with pytest.raises(runnel.InvalidArgumentError):
        log.send_to("t", 0, 0, -1)


def test_groups_and_retention(log):
    log.create_topic("t", config={"segment.bytes": 4096, "retention.bytes": 8192})
    for _ in range(100):
        log.append("t", [b"v" * 299], partition=0, acks=1)
    log.sync()
    log.commit_offset("g", "t", 0, 60, metadata="meta")
    log.commit_offset("h", "t", 0, 10)
    assert log.committed("g", "t", 0) == 60
    assert log.committed("none", "t", 0) is None
    with pytest.raises(runnel.UnknownTopicOrPartitionError):
        log.commit_offset("g", "t", 5, 1)
    assert log.list_groups() == ["g", "h"]
    assert log.group_lag("g") == [runnel.PartitionLag("t", 0, 60, 100, 40)]
    assert log.delete_group("h") is True
    assert log.delete_group("h") is False
    assert log.run_retention() > 0
    assert log.partition_info("t", 0).log_start_offset > 0
    with pytest.raises(runnel.OffsetOutOfRangeError):
        log.fetch("t", 0, offset=0)


def test_read_only_handle_follows_a_writer(tmp_path):
    with runnel.open(tmp_path / "d", background_maintenance=False) as w:
        w.create_topic("t", config={"high.watermark": "written"})
        w.append("t", [b"one"], partition=0, acks=1)
        with runnel.open(tmp_path / "d", read_only=True) as ro:
            assert ro.read_only
            with pytest.raises(runnel.ReadOnlyError):
                ro.append("t", [b"x"], partition=0)
            with pytest.raises(runnel.ReadOnlyError):
                ro.commit_offset("g", "t", 0, 0)
            assert [r.value for r in ro.fetch("t", 0, offset=0)] == [b"one"]

            def later():
                time.sleep(0.05)
                w.append("t", [b"two"], partition=0, acks=1)

            threading.Thread(target=later).start()
            with ro.fetch("t", 0, offset=1, timeout=5.0) as f:
                assert [r.value for r in f] == [b"two"]


def test_idempotent_and_transactional_producers(log):
    log.create_topic("t", partitions=2)
    p = log.idempotent_producer()
    assert p.producer_id >= 0
    assert p.send("t", [b"once"], partition=0).base_offset == 0
    tx = log.transactional_producer("app-1")
    with pytest.raises(runnel.InvalidTransactionStateError):
        tx.send("t", [b"x"], partition=1)
    tx.begin()
    tx.send("t", [b"aborted"], partition=1)
    tx.abort()
    tx.begin()
    tx.send("t", [runnel.Record(key=b"k", value=b"committed")], partition=1)
    tx.send_offset("g", "t", 0, 1)
    tx.commit()
    assert log.committed("g", "t", 0) == 1
    assert [r.value for r in log.fetch("t", 1, offset=0, isolation="read_committed")] == [b"committed"]
    assert len(list(log.fetch("t", 1, offset=0))) >= 2  # read_uncommitted sees the aborted one too
    tx2 = log.transactional_producer("app-1")
    with pytest.raises(runnel.ProducerFencedError):
        tx.begin()
    del tx, tx2


def test_threads_share_a_log(log):
    log.create_topic("t")

    def work(i):
        for j in range(100):
            log.append("t", [f"{i}-{j}"], partition=0, acks="all" if j % 10 == 0 else 1)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.sync()
    values = sorted(r.value for r in log.fetch("t", 0, offset=0, max_bytes=1 << 24))
    assert values == sorted(f"{i}-{j}".encode() for i in range(4) for j in range(100))


CHILD = textwrap.dedent(
    """
    import sys, runnel
    log = runnel.open(sys.argv[1], background_maintenance=False)
    i = 0
    while True:
        at = log.append("t", [b"%08d" % i], partition=0, acks="all")
        # Acknowledged: the offset and value are durable now.
        print(at.base_offset, i, flush=True)
        i += 1
    """
)


def test_killed_child_loses_no_acknowledged_append(tmp_path):
    data = tmp_path / "d"
    with runnel.open(data) as lg:
        lg.create_topic("t")
    for _round in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(data)], stdout=subprocess.PIPE, text=True)
        acked = []
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while len(acked) < 20 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(tuple(int(x) for x in line.split()))
        time.sleep(0.005 * (_round + 1))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert len(acked) >= 20, "the child did not get going"
        with runnel.open(data, background_maintenance=False) as lg:
            stored = {r.offset: r.value for r in lg.fetch("t", 0, offset=0, max_bytes=1 << 26)}
            for offset, i in acked:
                assert stored.get(offset) == b"%08d" % i, f"acknowledged offset {offset} lost after SIGKILL"
            assert sorted(stored) == list(range(len(stored))), "offsets are contiguous"


def test_plain_values_and_records_take_their_own_paths_and_agree(log):
    log.create_topic("t")
    log.append("t", [b"a", b"", b"ccc"], partition=0)  # values only: the packed path
    log.append("t", [b"d", runnel.Record(value=b"e", key=b"k")], partition=0)  # records
    with log.fetch("t", 0, offset=0) as f:
        assert f.values() == [b"a", b"", b"ccc", b"d", b"e"]
        assert [r.key for r in f] == [None, None, None, None, b"k"]
        assert [r.offset for r in f] == [0, 1, 2, 3, 4]
    log.append("t", [runnel.Record(value=None, key=b"tomb")], partition=0)
    assert log.fetch("t", 0, offset=5).values() == [None]
