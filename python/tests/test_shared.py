"""Shared mode from Python: the worker-pool pattern of the README. One process produces while a
``multiprocessing`` pool of worker processes consumes the topic in one group; every record is
processed exactly once (no worker dies here), and the group's offsets end at the end."""

from __future__ import annotations

import multiprocessing
import time

import pytest

import runnel
from runnel import Consumer, Producer

TOPIC = "jobs"
RECORDS = 2000


def work(path: str) -> list[tuple[int, int, bytes]]:
    """One worker: consumes until the topic has been quiet for a second."""
    with runnel.open(path, shared=True) as log:
        config = {"group.id": "pool", "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        with Consumer(log, config) as consumer:
            consumer.subscribe([TOPIC])
            done: list[tuple[int, int, bytes]] = []
            quiet_since = time.monotonic()
            while time.monotonic() - quiet_since < 1.0:
                records = consumer.poll(0.1)
                if records:
                    quiet_since = time.monotonic()
                done += [(r.partition, r.offset, r.value) for r in records]
                consumer.commit()
            return done


def test_a_pool_of_processes_consumes_what_another_produces(tmp_path):
    path = str(tmp_path / "data")
    with runnel.open(path, shared=True) as log:
        assert log.shared and not log.read_only
        log.create_topic(TOPIC, partitions=4)
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            results = pool.map_async(work, [path] * 3)
            with Producer(log, {"acks": "all", "linger.ms": 1}) as producer:
                for i in range(RECORDS):
                    producer.send(TOPIC, f"job-{i}", key=str(i))
            processed = [r for worker in results.get(timeout=60) for r in worker]
        values = sorted(v.decode() for _, _, v in processed)
        assert values == sorted(f"job-{i}" for i in range(RECORDS)), "each job processed exactly once"
        for p in range(4):
            end = log.fetch(TOPIC, p, offset=0, max_bytes=1 << 24).high_watermark
            assert log.committed("pool", TOPIC, p) == end, "the group committed up to the end"


def test_shared_and_read_only_exclude_each_other(tmp_path):
    with pytest.raises(ValueError):
        runnel.open(tmp_path / "d", shared=True, read_only=True)
    with runnel.open(tmp_path / "d", shared=True) as a, runnel.open(tmp_path / "d", shared=True) as b:
        a.create_topic("t", partitions=1)
        b.append("t", [b"from b"], partition=0)
        assert a.fetch("t", 0, offset=0).values() == [b"from b"]
        with pytest.raises(runnel.LockedError):
            runnel.open(tmp_path / "d")
