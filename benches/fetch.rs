//! Fetch-and-iterate throughput: a consumer reading a whole partition from offset 0 to the high
//! watermark with `max_bytes` = 1 MiB per fetch, decoding every record.
//!
//! The partition is pre-filled (outside the timing) with 256 MiB of 1 KiB values or 64 MiB of
//! 100-byte values, appended 100 records per batch, in 64 MiB segments (so the reads cross sealed
//! segments and the active one), then synced so the high watermark covers everything. The data is
//! in the page cache and mapped: this measures the engine and memory, not the disk.
//!
//! Two ways to consume each value:
//! * `sum_bytes`: reads every byte of every value (a wrapping byte sum), as a consumer that
//!   parses or copies its values must;
//! * `black_box_slices`: hands each value slice to `black_box` without reading it, the cost of
//!   fetching and decoding alone.
//!
//! Throughput is records (elements) and value bytes per full pass.
//!
//! Under `cargo test` (criterion's test mode) the partition holds 1 MiB and each benchmark runs once.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use runnel::{Acks, Log, LogOptions, Record, TopicConfig};

use common::{bench_dir, full_run, payload};

const TOPIC: &str = "bench";
const MAX_BYTES: u64 = 1 << 20;
const PER_BATCH: usize = 100;

struct Fixture {
    log: Log,
    end: u64,
    records: u64,
    value_bytes: u64,
    _dir: tempfile::TempDir,
}

fn prefill(value_len: usize, total_value_bytes: u64) -> Fixture {
    let dir = bench_dir("runnel-fetch-");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open the log");
    let config = TopicConfig { segment_bytes: 64 << 20, ..TopicConfig::default() };
    log.create_topic(TOPIC, 1, config).expect("create the topic");
    let value = payload(value_len);
    let batch: Vec<Record<'_>> = (0..PER_BATCH).map(|_| Record::new(&value)).collect();
    let batches = total_value_bytes.div_ceil((value_len * PER_BATCH) as u64);
    for _ in 0..batches {
        log.append(TOPIC, Some(0), &batch, Acks::One).expect("append");
    }
    log.sync_all().expect("sync");
    let end = log.high_watermark(TOPIC, 0).expect("high watermark");
    assert_eq!(end, batches * PER_BATCH as u64);
    Fixture { log, end, records: end, value_bytes: end * value_len as u64, _dir: dir }
}

/// Reads every byte of `v`.
#[inline]
fn byte_sum(v: &[u8]) -> u8 {
    v.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

/// Fetches the whole partition, giving each value to `consume`; returns the records seen.
#[inline]
fn read_all(f: &Fixture, mut consume: impl FnMut(&[u8])) -> u64 {
    let mut offset = 0;
    let mut n = 0u64;
    while offset < f.end {
        let fetched = f.log.fetch(TOPIC, 0, offset, MAX_BYTES).expect("fetch");
        for r in fetched.records() {
            let r = r.expect("record");
            consume(r.value.expect("value"));
            n += 1;
        }
        offset = fetched.next_offset();
    }
    n
}

fn fetch_iterate(c: &mut Criterion) {
    let mut g = c.benchmark_group("fetch_iterate");
    let full = full_run();
    for (value_len, total) in [(1024usize, 256u64 << 20), (100, 64 << 20)] {
        let total = if full { total } else { 1 << 20 };
        let mut fixture: Option<Fixture> = None;
        // The throughput depends on the fixture, which is built lazily (so that a filtered-out
        // benchmark costs nothing); the record count is exact, as every batch is full.
        let batches = total.div_ceil((value_len * PER_BATCH) as u64);
        let records = batches * PER_BATCH as u64;
        g.throughput(Throughput::ElementsAndBytes { elements: records, bytes: records * value_len as u64 });

        g.bench_function(BenchmarkId::new(format!("{value_len}B"), "sum_bytes"), |b| {
            let f = fixture.get_or_insert_with(|| prefill(value_len, total));
            assert_eq!((f.records, f.value_bytes), (records, records * value_len as u64));
            b.iter(|| {
                let mut acc = 0u8;
                let n = read_all(f, |v| acc = acc.wrapping_add(byte_sum(v)));
                assert_eq!(n, f.records);
                acc
            });
        });
        g.bench_function(BenchmarkId::new(format!("{value_len}B"), "black_box_slices"), |b| {
            let f = fixture.get_or_insert_with(|| prefill(value_len, total));
            b.iter(|| {
                let n = read_all(f, |v| {
                    black_box(v);
                });
                assert_eq!(n, f.records);
            });
        });
        drop(fixture);
    }
    g.finish();
}

criterion_group!(benches, fetch_iterate);
criterion_main!(benches);
