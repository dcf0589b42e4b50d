//! What exactly-once costs.
//!
//! * `idempotence_acks1`: 100-byte values, one record per call, `Acks::One`, through
//!   `Log::append` (`plain`) and `Log::append_idempotent` with the next sequence number each call
//!   (`idempotent`): the price of the sequence check and the producer-state update. Topics use
//!   `high.watermark=written`; every 2^22 calls the benchmark moves to a fresh log outside the
//!   timing, as the acks=1 benches in `append.rs` do.
//! * `transaction_acks_all`: 100 records of 100 bytes per iteration. `transaction_4_partitions`:
//!   begin, 25 records to each of 4 partitions, commit (durable: one parallel fsync round).
//!   `append_acks_all_1_partition`: the same 100 records as one acks=all append to one
//!   partition (one fsync): the floor a transaction is measured against.
//!   `append_acks_all_4_partitions`: 25 records to each of 4 partitions, each acks=all, one after
//!   the other (four fsyncs): what a transaction would cost with an fsync per partition.
//!   `transaction_4_partitions_4_producers`: four producers on four threads, each committing such
//!   transactions over the same four partitions; time per transaction (group commit shares fsyncs).
//! * `read_committed`: a partition of 20,000 transactions of 10 records of 100 bytes (10% of them
//!   aborted), read from start to end with read_uncommitted and with read_committed, touching
//!   every value. Throughput counts the records stored (both read the same bytes of log).
//!
//! Under `cargo test` (criterion's test mode) each benchmark runs once.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use runnel::{Acks, HighWatermark, IsolationLevel, Log, LogOptions, ProducerBatch, Record, TopicConfig, TransactionOptions};

use common::{bench_dir, payload};

const TOPIC: &str = "bench";

struct Fixture {
    log: Log,
    _dir: tempfile::TempDir,
}

fn fixture(partitions: u32, config: TopicConfig) -> Fixture {
    let dir = bench_dir("runnel-txn-");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open the log");
    log.create_topic(TOPIC, partitions, config).expect("create the topic");
    Fixture { log, _dir: dir }
}

/// Calls per log in the acks=1 benches (about 600 MiB of log), so dirty pages stay below the
/// kernel's write-back thresholds.
const CALLS_PER_LOG: u64 = 1 << 22;

fn idempotence_acks1(c: &mut Criterion) {
    let mut g = c.benchmark_group("idempotence_acks1");
    g.throughput(Throughput::ElementsAndBytes { elements: 1, bytes: 100 });
    let value = payload(100);
    let written = TopicConfig { segment_bytes: 256 << 20, high_watermark: HighWatermark::Written, ..TopicConfig::default() };
    for idempotent in [false, true] {
        let name = if idempotent { "idempotent" } else { "plain" };
        // (fixture, producer id, next sequence, calls made in this log)
        let mut state: Option<(Fixture, i64, i32, u64)> = None;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let (f, pid, seq, calls) = state.get_or_insert_with(|| {
                        let f = fixture(1, written.clone());
                        let pid = f.log.allocate_producer_id().expect("producer id");
                        (f, pid, 0, 0)
                    });
                    let n = left.min(CALLS_PER_LOG - *calls);
                    let rec = [Record::new(&value)];
                    let t = Instant::now();
                    if idempotent {
                        for _ in 0..n {
                            let batch = ProducerBatch { producer_id: *pid, producer_epoch: 0, base_sequence: *seq };
                            f.log.append_idempotent(TOPIC, Some(0), black_box(&rec), Acks::One, batch).expect("append");
                            *seq = seq.wrapping_add(1) & i32::MAX;
                        }
                    } else {
                        for _ in 0..n {
                            f.log.append(TOPIC, Some(0), black_box(&rec), Acks::One).expect("append");
                        }
                    }
                    total += t.elapsed();
                    *calls += n;
                    left -= n;
                    if *calls >= CALLS_PER_LOG {
                        state = None;
                    }
                }
                total
            });
        });
    }
    g.finish();
}

fn transaction_acks_all(c: &mut Criterion) {
    let mut g = c.benchmark_group("transaction_acks_all");
    g.throughput(Throughput::ElementsAndBytes { elements: 100, bytes: 100 * 100 });
    g.sample_size(20);
    let value = payload(100);
    let quarter: Vec<Record<'_>> = (0..25).map(|_| Record::new(&value)).collect();
    let hundred: Vec<Record<'_>> = (0..100).map(|_| Record::new(&value)).collect();
    let config = TopicConfig { segment_bytes: 1 << 30, ..TopicConfig::default() };

    let f = fixture(4, config.clone());
    let producer = f.log.transactional_producer("bench", TransactionOptions::default()).expect("producer");
    g.bench_function("transaction_4_partitions", |b| {
        b.iter(|| {
            producer.begin().expect("begin");
            for p in 0..4 {
                producer.send(TOPIC, Some(p), black_box(&quarter)).expect("send");
            }
            producer.commit().expect("commit");
        });
    });
    drop(producer);
    drop(f);

    // Four producers committing at once share each partition's fsyncs (group commit).
    let f = fixture(4, config.clone());
    let producers: Vec<_> =
        (0..4).map(|i| f.log.transactional_producer(&format!("bench-{i}"), TransactionOptions::default()).expect("producer")).collect();
    g.bench_function("transaction_4_partitions_4_producers", |b| {
        b.iter_custom(|iters| {
            let per = iters.div_ceil(4);
            let t = Instant::now();
            std::thread::scope(|s| {
                for producer in &producers {
                    let quarter = &quarter;
                    s.spawn(move || {
                        for _ in 0..per {
                            producer.begin().expect("begin");
                            for p in 0..4 {
                                producer.send(TOPIC, Some(p), black_box(quarter)).expect("send");
                            }
                            producer.commit().expect("commit");
                        }
                    });
                }
            });
            // Per transaction: the elapsed time over the transactions committed.
            t.elapsed().mul_f64(iters as f64 / (per * 4) as f64)
        });
    });
    drop(producers);
    drop(f);

    let f = fixture(4, config.clone());
    g.bench_function("append_acks_all_1_partition", |b| {
        b.iter(|| f.log.append(TOPIC, Some(0), black_box(&hundred), Acks::All).expect("append"));
    });
    g.bench_function("append_acks_all_4_partitions", |b| {
        b.iter(|| {
            for p in 0..4 {
                f.log.append(TOPIC, Some(p), black_box(&quarter), Acks::All).expect("append");
            }
        });
    });
    g.finish();
}

/// Transactions in the `read_committed` fixture, and records per transaction.
const TXNS: u64 = 20_000;
const PER_TXN: usize = 10;

fn read_committed(c: &mut Criterion) {
    let f = fixture(1, TopicConfig { segment_bytes: 64 << 20, ..TopicConfig::default() });
    let value = payload(100);
    let batch: Vec<Record<'_>> = (0..PER_TXN).map(|_| Record::new(&value)).collect();
    let producer = f.log.transactional_producer("bench", TransactionOptions::default()).expect("producer");
    for i in 0..TXNS {
        producer.begin().expect("begin");
        producer.send(TOPIC, Some(0), &batch).expect("send");
        if i % 10 == 9 { producer.abort().expect("abort") } else { producer.commit().expect("commit") }
    }
    f.log.sync_all().expect("sync");
    let end = f.log.high_watermark(TOPIC, 0).expect("high watermark");
    let read = |isolation: IsolationLevel| -> u64 {
        let mut offset = 0;
        let mut n = 0u64;
        let mut sum = 0u8;
        while offset < end {
            let fetched = f.log.fetch_with(TOPIC, 0, offset, 1 << 20, isolation).expect("fetch");
            for r in fetched.records() {
                let v = r.expect("record").value.expect("value");
                sum = v.iter().fold(sum, |a, &b| a.wrapping_add(b));
                n += 1;
            }
            offset = fetched.next_offset();
        }
        black_box(sum);
        n
    };
    assert_eq!(read(IsolationLevel::ReadUncommitted), TXNS * PER_TXN as u64);
    assert_eq!(read(IsolationLevel::ReadCommitted), TXNS / 10 * 9 * PER_TXN as u64);

    let mut g = c.benchmark_group("read_committed");
    g.throughput(Throughput::Elements(TXNS * PER_TXN as u64));
    g.bench_function("read_uncommitted", |b| b.iter(|| read(IsolationLevel::ReadUncommitted)));
    g.bench_function("read_committed", |b| b.iter(|| read(IsolationLevel::ReadCommitted)));
    g.finish();
}

criterion_group!(benches, idempotence_acks1, transaction_acks_all, read_committed);
criterion_main!(benches);
