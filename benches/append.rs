//! Append throughput of one partition.
//!
//! * `append_acks1`: `Acks::One` (the batch is in the page cache when the call returns), 100-byte
//!   and 1 KiB values, 1 and 100 records per call. The topic uses `high.watermark=written`, so
//!   every append also publishes its batch to readers (the more expensive of the two settings,
//!   and the one a consumer needs to see acks=1 records without an fsync). `segment.bytes` is
//!   256 MiB: rolls are rare but do happen. Every 1 GiB written the benchmark switches to a fresh
//!   log outside the timing, so that the kernel's dirty-page write-back throttling stays out of
//!   the figures (see [`ACKS1_LOG_BUDGET`]): this is the page-cache speed of the append path.
//! * `append_acks1_sustained`: 1 KiB values, 100 per call, into one log that grows for the whole
//!   run: the rate the disk's write-back sustains.
//! * `append_acks_all`: `Acks::All` (fsync'd before the call returns) from 1 thread and from 8
//!   threads appending to the same partition (group commit: one fsync leader syncs everyone's
//!   batches), reported as aggregate records/s; plus `baseline_pwrite_fdatasync`, one 100-byte
//!   `pwrite` at the end of a growing file followed by `fdatasync`, the cost acks=all should beat.
//!
//! Throughput is records (elements) and value bytes per iteration. Each benchmark gets its own
//! data directory under `CARGO_TARGET_TMPDIR` (the real disk, not a tmpfs `/tmp`), created on first
//! use and removed (after the log's closing sync, which is not timed) when the benchmark ends.
//!
//! Under `cargo test` (criterion's test mode, no `--bench` argument) each benchmark runs once.

mod common;

use std::hint::black_box;
use std::io::Write;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use runnel::{Acks, HighWatermark, Log, LogOptions, Record, TopicConfig};

use common::{bench_dir, payload};

const TOPIC: &str = "bench";

/// An open log with one single-partition topic, in its own directory.
struct Fixture {
    log: Log,
    // Dropped after `log` (fields drop in order): the log closes, then the directory goes.
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new(config: TopicConfig) -> Fixture {
        let dir = bench_dir("runnel-append-");
        // No background maintenance: its flusher would fsync acks=1 data every flush.ms (100 ms)
        // in the middle of the measurement, and its timer thread competes for the 2 cores. The
        // acks=all benches sync on every append themselves, so they lose nothing by it either.
        let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open the log");
        log.create_topic(TOPIC, 1, config).expect("create the topic");
        Fixture { log, _dir: dir }
    }
}

fn acks1_config() -> TopicConfig {
    TopicConfig { segment_bytes: ACKS1_SEGMENT_BYTES, high_watermark: HighWatermark::Written, ..TopicConfig::default() }
}

fn acks_all_config() -> TopicConfig {
    // The default high.watermark=durable: acks=all batches become visible when their fsync ends.
    TopicConfig { segment_bytes: 1 << 30, ..TopicConfig::default() }
}

fn throughput(records: usize, value_len: usize) -> Throughput {
    Throughput::ElementsAndBytes { elements: records as u64, bytes: (records * value_len) as u64 }
}

/// Segment size of the acks=1 benches: large, so rolls are rare (one per ~2,600 appends of
/// 100 KiB), but several happen in every log of [`ACKS1_LOG_BUDGET`].
const ACKS1_SEGMENT_BYTES: u64 = 256 << 20;
/// Bytes an acks=1 benchmark writes to one log before it closes it and starts a fresh one,
/// outside the timing. This keeps dirty page-cache data well below the kernel's writeback
/// thresholds (`vm.dirty_background_ratio`, 10% of RAM): past them the kernel throttles the
/// writer to the disk's write-back speed, and the benchmark would measure the disk instead of
/// the append path. `append_acks1_sustained` measures that regime on purpose.
const ACKS1_LOG_BUDGET: u64 = 1 << 30;

/// Roughly what one append of `records` adds to the log: the 64-byte batch header, and per
/// record the value and about 8 bytes of framing.
fn batch_bytes(records: &[Record<'_>]) -> u64 {
    64 + records.iter().map(|r| r.value.map_or(0, <[u8]>::len) as u64 + 8).sum::<u64>()
}

/// Times `iters` acks=1 appends of `records`, moving to a fresh log (untimed) every
/// [`ACKS1_LOG_BUDGET`] bytes.
/// With `handle`, appends go through a `PartitionHandle` (no topic lookup per call).
fn bounded_appends(fixture: &mut Option<(Fixture, u64)>, records: &[Record<'_>], iters: u64, handle: bool) -> Duration {
    let per_call = batch_bytes(records);
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let (f, written) = fixture.get_or_insert_with(|| (Fixture::new(acks1_config()), 0));
        let n = left.min(((ACKS1_LOG_BUDGET - *written) / per_call).max(1));
        let p = f.log.partition_handle(TOPIC, 0).expect("handle");
        let t = Instant::now();
        if handle {
            for _ in 0..n {
                p.append(black_box(records), Acks::One).expect("append");
            }
        } else {
            for _ in 0..n {
                f.log.append(TOPIC, Some(0), black_box(records), Acks::One).expect("append");
            }
        }
        total += t.elapsed();
        *written += n * per_call;
        left -= n;
        if *written >= ACKS1_LOG_BUDGET {
            // Closes the log (syncing what it holds) and removes its directory.
            *fixture = None;
        }
    }
    total
}

fn append_acks1(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_acks1");
    for value_len in [100usize, 1024] {
        let value = payload(value_len);
        for per_call in [1usize, 100] {
            let records: Vec<Record<'_>> = (0..per_call).map(|_| Record::new(&value)).collect();
            g.throughput(throughput(per_call, value_len));
            let mut fixture: Option<(Fixture, u64)> = None;
            g.bench_function(BenchmarkId::new(format!("{value_len}B"), format!("{per_call}_per_call")), |b| {
                b.iter_custom(|iters| bounded_appends(&mut fixture, &records, iters, false));
            });
            drop(fixture);
        }
    }
    g.finish();

    // The same single-record appends through a PartitionHandle, as a hot loop would make them.
    let mut g = c.benchmark_group("append_acks1_handle");
    for value_len in [100usize, 1024] {
        let value = payload(value_len);
        let records = [Record::new(&value)];
        g.throughput(throughput(1, value_len));
        let mut fixture: Option<(Fixture, u64)> = None;
        g.bench_function(BenchmarkId::new(format!("{value_len}B"), "1_per_call"), |b| {
            b.iter_custom(|iters| bounded_appends(&mut fixture, &records, iters, true));
        });
        drop(fixture);
    }
    g.finish();

    // One log that grows for the whole run: once dirty data passes the kernel's thresholds, the
    // appender is throttled to the speed at which the disk absorbs write-back.
    let mut g = c.benchmark_group("append_acks1_sustained");
    let value = payload(1024);
    let records: Vec<Record<'_>> = (0..100).map(|_| Record::new(&value)).collect();
    g.throughput(throughput(100, 1024));
    let mut fixture: Option<Fixture> = None;
    g.bench_function("1024B/100_per_call", |b| {
        let f = fixture.get_or_insert_with(|| Fixture::new(acks1_config()));
        b.iter(|| f.log.append(TOPIC, Some(0), black_box(&records), Acks::One).expect("append"));
    });
    drop(fixture);
    g.finish();
}

/// `threads` threads each append `iters` times; returns the wall time from their common start to
/// the last one's finish.
fn appends_from_threads(log: &Log, records: &[Record<'_>], threads: usize, iters: u64) -> Duration {
    let start = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                start.wait();
                for _ in 0..iters {
                    log.append(TOPIC, Some(0), records, Acks::All).expect("append");
                }
            });
        }
        start.wait();
        Instant::now()
    })
    // `scope` joins every thread before it returns.
    .elapsed()
}

fn append_acks_all(c: &mut Criterion) {
    let mut g = c.benchmark_group("append_acks_all");
    // An fsync costs ~100-200 µs, so a few seconds give thousands of appends per sample: keep the
    // run short and the samples few (this overrides --measurement-time / --warm-up-time).
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));

    for (value_len, per_call) in [(100usize, 1usize), (1024, 1), (100, 100)] {
        let value = payload(value_len);
        let records: Vec<Record<'_>> = (0..per_call).map(|_| Record::new(&value)).collect();
        for threads in [1usize, 8] {
            if per_call > 1 && threads > 1 {
                continue;
            }
            // One iteration is one append from each thread.
            g.throughput(throughput(per_call * threads, value_len));
            let mut fixture: Option<Fixture> = None;
            let id = BenchmarkId::new(format!("{value_len}B_{per_call}_per_call"), format!("{threads}_threads"));
            g.bench_function(id, |b| {
                let f = fixture.get_or_insert_with(|| Fixture::new(acks_all_config()));
                if threads == 1 {
                    b.iter(|| f.log.append(TOPIC, Some(0), black_box(&records), Acks::All).expect("append"));
                } else {
                    b.iter_custom(|iters| appends_from_threads(&f.log, &records, threads, iters));
                }
            });
            drop(fixture);
        }
    }

    // What acks=all should at least match: one small write at the end of a growing file, then
    // fdatasync (the file's size changes every time, so each sync also commits metadata).
    g.throughput(throughput(1, 100));
    let mut file: Option<(std::fs::File, tempfile::TempDir)> = None;
    let value = payload(100);
    g.bench_function("baseline_pwrite_fdatasync/100B", |b| {
        let (f, _) = file.get_or_insert_with(|| {
            let dir = bench_dir("runnel-fsync-");
            let f = std::fs::File::create(dir.path().join("file")).expect("create");
            (f, dir)
        });
        b.iter(|| {
            f.write_all(&value).expect("write");
            f.sync_data().expect("fdatasync");
        });
    });
    drop(file);
    g.finish();
}

criterion_group!(benches, append_acks1, append_acks_all);
criterion_main!(benches);
