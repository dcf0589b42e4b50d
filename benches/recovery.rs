//! Open time of a data directory holding one 256 MiB partition (1 KiB values, 100 per batch, in
//! 64 MiB segments):
//!
//! * `clean`: after `Log::close` (clean-shutdown marker and recovery-point checkpoint present):
//!   only the tail of the last segment after its last index entry is checked;
//! * `unclean_warm`: after deleting `.runnel_clean_shutdown` and
//!   `recovery-point-offset-checkpoint`, as an unclean shutdown leaves it with no checkpoint:
//!   every batch of every segment is CRC-checked and decoded; the files are in the page cache;
//! * `unclean_cold`: the same, with the partition's files first dropped from the page cache
//!   (`posix_fadvise(DONTNEED)`; they are clean after the close), so the scan reads the disk.
//!
//! Throughput is the partition's bytes per open, so the reports read as a scan rate. Only
//! `Log::open` is timed; the close that restores (or the deletes that remove) the marker and
//! checkpoint between opens are not.
//!
//! Under `cargo test` (criterion's test mode) the partition holds 1 MiB and each benchmark runs once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use runnel::{Acks, Log, LogOptions, Record, TopicConfig};

use common::{bench_dir, full_run, payload};

const TOPIC: &str = "bench";
const CLEAN_SHUTDOWN_FILE: &str = ".runnel_clean_shutdown";
const CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";

fn options() -> LogOptions {
    // Without the maintenance thread: its spawn and join are not part of loading the partition.
    LogOptions::default().background_maintenance(false)
}

/// A cleanly closed data directory with one partition of about `bytes` bytes.
struct Fixture {
    dir: tempfile::TempDir,
    partition_bytes: u64,
}

fn build(bytes: u64) -> Fixture {
    let dir = bench_dir("runnel-recovery-");
    let log = Log::open(dir.path(), options()).expect("open the log");
    let config = TopicConfig { segment_bytes: 64 << 20, ..TopicConfig::default() };
    log.create_topic(TOPIC, 1, config).expect("create the topic");
    let value = payload(1024);
    let batch: Vec<Record<'_>> = (0..100).map(|_| Record::new(&value)).collect();
    let mut size = 0;
    while size < bytes {
        log.append(TOPIC, Some(0), &batch, Acks::One).expect("append");
        size = log.describe_topic(TOPIC).expect("describe").partitions[0].size_bytes;
    }
    log.close().expect("close");
    Fixture { partition_bytes: size, dir }
}

fn partition_dir(dir: &Path) -> PathBuf {
    dir.join(format!("{TOPIC}-0"))
}

fn remove_if_present(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", path.display()),
    }
}

/// What an unclean shutdown without a checkpoint leaves: no marker, no recovery point.
fn make_unclean(dir: &Path) {
    remove_if_present(&dir.join(CLEAN_SHUTDOWN_FILE));
    remove_if_present(&dir.join(CHECKPOINT_FILE));
}

/// Drops the partition's files from the page cache (they are clean: the close synced them).
fn drop_from_page_cache(dir: &Path) {
    for e in std::fs::read_dir(partition_dir(dir)).expect("read the partition directory") {
        let path = e.expect("directory entry").path();
        let f = std::fs::File::open(&path).expect("open");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("posix_fadvise");
    }
}

#[derive(Clone, Copy)]
enum Mode {
    Clean,
    UncleanWarm,
    UncleanCold,
}

/// Opens the directory `iters` times, each after putting it in the state `mode` names; returns
/// the time spent in `Log::open` alone.
fn timed_opens(dir: &Path, mode: Mode, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        match mode {
            Mode::Clean => {}
            Mode::UncleanWarm => make_unclean(dir),
            Mode::UncleanCold => {
                make_unclean(dir);
                drop_from_page_cache(dir);
            }
        }
        let t = Instant::now();
        let log = Log::open(dir, options()).expect("open the log");
        total += t.elapsed();
        let verified: usize = log.recovery_report().iter().map(|(_, _, r)| r.segments_verified).sum();
        assert_eq!(verified > 0, !matches!(mode, Mode::Clean), "recovery did not do what the mode expects");
        // Restores the marker and checkpoint for the next clean open.
        log.close().expect("close");
    }
    total
}

fn recovery(c: &mut Criterion) {
    let mut g = c.benchmark_group("recovery_open_256MiB");
    // An unclean open scans the whole partition (tens to hundreds of ms): few, flat samples.
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    let bytes = if full_run() { 256 << 20 } else { 1 << 20 };
    let mut fixture: Option<Fixture> = None;
    g.throughput(Throughput::Bytes(bytes));
    for (name, mode) in [("clean", Mode::Clean), ("unclean_warm", Mode::UncleanWarm), ("unclean_cold", Mode::UncleanCold)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            let f = fixture.get_or_insert_with(|| build(bytes));
            // The fixture stops at the first batch past `bytes`: within one batch of it.
            assert!(f.partition_bytes.abs_diff(bytes) < 200 << 10);
            b.iter_custom(|iters| timed_opens(f.dir.path(), mode, iters));
        });
    }
    drop(fixture);
    g.finish();
}

criterion_group!(benches, recovery);
criterion_main!(benches);
