//! Readers in other processes: how long after a writer's append returns a follower in another
//! process sees the record, and how fast a read-only handle reads a log.
//!
//! Not a criterion benchmark: the latency needs two processes. This binary re-executes itself as
//! the writer (`--writer DIR N GAP_US ACKS`): it appends N single-record batches, one every GAP_US
//! microseconds, each record's value starting with the CLOCK_MONOTONIC time (ns) at which it is
//! appended; the follower subtracts it from the time it sees the record. Both processes read the
//! same clock, so the figure is the whole path: append, publication, wake-up, fetch.
//!
//! `cargo bench --bench follow` prints median, 99th percentile and max follow latency for
//! `high.watermark=written` (visible as soon as the append returns) and `durable` with acks=all
//! (visible once fsync'd), then the read throughput of a read-only handle over 1 million 100-byte
//! records. Under `cargo test` (`--bench` absent) it runs a few records as a smoke test.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runnel::{Acks, IsolationLevel, Log, LogOptions, Record, TopicConfig};

fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn writer(dir: &str, n: u64, gap_us: u64, acks_all: bool) {
    let log = Log::open(dir, LogOptions::default()).expect("writer: open");
    let acks = if acks_all { Acks::All } else { Acks::One };
    for _ in 0..n {
        let mut v = [0u8; 100];
        v[..8].copy_from_slice(&mono_ns().to_le_bytes());
        log.append("lat", Some(0), &[Record::new(&v)], acks).expect("writer: append");
        let until = Instant::now() + Duration::from_micros(gap_us);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_micros(gap_us.min(200)));
        }
    }
    log.close().expect("writer: close");
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn latency(n: u64, gap_us: u64, hw: &str, acks_all: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8 path").to_string();
    {
        let log = Log::open(&path, LogOptions::default()).expect("open");
        let mut c = TopicConfig::default();
        c.set("high.watermark", hw).expect("config");
        log.create_topic("lat", 1, c).expect("create");
        log.close().expect("close");
    }
    let reader = Log::open_read_only(&path, LogOptions::default()).expect("open read-only");
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(["--writer", &path, &n.to_string(), &gap_us.to_string(), if acks_all { "all" } else { "1" }])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn writer");
    let mut lat = Vec::with_capacity(n as usize);
    let mut next = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while next < n && Instant::now() < deadline {
        let f =
            reader.fetch_wait("lat", 0, next, 1 << 20, IsolationLevel::ReadUncommitted, Duration::from_millis(100)).expect("fetch_wait");
        let now = mono_ns();
        for r in f.records() {
            let r = r.expect("record");
            let v = r.value.expect("value");
            let sent = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
            lat.push(now.saturating_sub(sent));
            next = r.offset + 1;
        }
    }
    child.wait().expect("writer exit");
    assert_eq!(next, n, "the follower did not see every record");
    lat.sort_unstable();
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "follow latency, {hw} high watermark, acks={}: {n} records, one every {gap_us} µs: median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        if acks_all { "all" } else { "1" },
        us(percentile(&lat, 0.5)),
        us(percentile(&lat, 0.99)),
        us(*lat.last().unwrap_or(&0)),
    );
}

fn throughput(records: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        log.create_topic("tp", 1, TopicConfig::default()).expect("create");
        let v = [7u8; 100];
        let batch: Vec<Record<'_>> = (0..100).map(|_| Record::new(&v)).collect();
        for _ in 0..records / 100 {
            log.append("tp", Some(0), &batch, Acks::One).expect("append");
        }
        log.close().expect("close");
    }
    let reader = Log::open_read_only(dir.path(), LogOptions::default()).expect("open read-only");
    let t0 = Instant::now();
    let (mut next, mut bytes, mut n, mut sum) = (0u64, 0u64, 0u64, 0u64);
    while next < records {
        let f = reader.fetch("tp", 0, next, 1 << 20).expect("fetch");
        for r in f.records() {
            let r = r.expect("record");
            let v = r.value.unwrap_or_default();
            sum = sum.wrapping_add(v.iter().map(|&b| u64::from(b)).sum::<u64>());
            bytes += v.len() as u64;
            n += 1;
        }
        next = f.next_offset();
    }
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(n, records);
    assert_eq!(sum, 7 * bytes, "read back other bytes than were written");
    println!(
        "read-only handle, sequential read touching every byte: {records} × 100 B in {:.3} s: {:.1} M records/s, {:.0} MB/s",
        secs,
        n as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--writer") {
        let n = args[3].parse().expect("n");
        let gap = args[4].parse().expect("gap");
        writer(&args[2], n, gap, args[5] == "all");
        return;
    }
    let bench = args.iter().any(|a| a == "--bench");
    if bench {
        latency(5000, 500, "written", false);
        latency(2000, 1000, "durable", true);
        throughput(1_000_000);
    } else {
        latency(50, 200, "written", false);
        throughput(10_000);
    }
}
