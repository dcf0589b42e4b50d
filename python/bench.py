"""runnel through the Python package against Python's own sqlite3 used as a queue (one table, WAL
mode), on the same machine, with the same records: 100-byte values.

    python python/bench.py            # full sizes (about a minute)
    python python/bench.py --quick    # small sizes, a smoke run

Each system gets its fairest setting for each workload, printed beside it:
- appends "in the page cache" (survive a process crash, not a power loss): runnel acks=1 with
  high.watermark=written; sqlite WAL with synchronous=NORMAL;
- durable appends (fsync'd when the call returns): runnel acks=all; sqlite WAL with
  synchronous=FULL, one transaction per call;
- batched appends: 100 records per call (runnel) or per transaction (sqlite executemany);
- sequential read of everything, touching every value: runnel fetch in 1 MiB chunks; sqlite
  SELECT by rowid in chunks of 1000.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import runnel

VALUE = bytes(range(100))


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1000:9.1f} k records/s"


def runnel_log(root: Path) -> runnel.Log:
    log = runnel.open(root / "runnel", background_maintenance=False)
    log.create_topic("q", config={"high.watermark": "written"})
    return log


def sqlite_queue(root: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(root / "queue.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)")
    return db


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, n_durable = (2000, 100) if args.quick else (200_000, 2000)
    rows = []
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent / "target") as tmp:
        root = Path(tmp)

        def fresh():
            for p in root.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()

        # One record per call, page cache.
        fresh()
        log = runnel_log(root)
        t = timed(lambda: [log.append("q", [VALUE], partition=0, acks=1) for _ in range(n)])
        rows.append(("append 1/call, page cache", "runnel acks=1", n, t))
        log.close()
        db = sqlite_queue(root, "NORMAL")
        t = timed(lambda: [db.execute("INSERT INTO q (payload) VALUES (?)", (VALUE,)) for _ in range(n)])
        rows.append(("append 1/call, page cache", "sqlite WAL synchronous=NORMAL", n, t))
        db.close()

        # 100 per call.
        fresh()
        log = runnel_log(root)
        batch = [VALUE] * 100
        t = timed(lambda: [log.append("q", batch, partition=0, acks=1) for _ in range(n // 100)])
        rows.append(("append 100/call, page cache", "runnel acks=1", n, t))

        def sqlite_batches(db):
            for _ in range(n // 100):
                db.execute("BEGIN")
                db.executemany("INSERT INTO q (payload) VALUES (?)", [(VALUE,)] * 100)
                db.execute("COMMIT")

        db = sqlite_queue(root, "NORMAL")
        t = timed(lambda: sqlite_batches(db))
        rows.append(("append 100/call, page cache", "sqlite WAL synchronous=NORMAL, 1 txn/100", n, t))

        # Sequential read of everything.
        log.sync()

        def read_runnel():
            off, seen, acc = 0, 0, 0
            end = log.partition_info("q", 0).high_watermark
            while off < end:
                with log.fetch("q", 0, offset=off, max_bytes=1 << 20) as f:
                    for v in f.values():
                        acc += len(v)
                        seen += 1
                    off = f.next_offset
            assert seen == n

        def read_sqlite():
            last, seen, acc = 0, 0, 0
            while True:
                chunk = db.execute("SELECT id, payload FROM q WHERE id > ? ORDER BY id LIMIT 1000", (last,)).fetchall()
                if not chunk:
                    break
                for rid, payload in chunk:
                    acc += len(payload)
                    seen += 1
                last = chunk[-1][0]
            assert seen == n

        rows.append(("sequential read, every value", "runnel fetch, 1 MiB chunks, values()", n, timed(read_runnel)))
        rows.append(("sequential read, every value", "sqlite SELECT by rowid, 1000 per query", n, timed(read_sqlite)))
        log.close()
        db.close()

        # Durable, one per call.
        fresh()
        log = runnel_log(root)
        t = timed(lambda: [log.append("q", [VALUE], partition=0, acks="all") for _ in range(n_durable)])
        rows.append(("durable append 1/call", "runnel acks=all", n_durable, t))
        log.close()
        db = sqlite_queue(root, "FULL")
        t = timed(lambda: [db.execute("INSERT INTO q (payload) VALUES (?)", (VALUE,)) for _ in range(n_durable)])
        rows.append(("durable append 1/call", "sqlite WAL synchronous=FULL", n_durable, t))
        db.close()

    print(f"{'workload':32} {'system and setting':44} {'rate':>22}")
    for workload, system, count, seconds in rows:
        print(f"{workload:32} {system:44} {rate(count, seconds):>22}")


if __name__ == "__main__":
    main()
