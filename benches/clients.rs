//! The producer and consumer clients against the core calls they are built on, measured side by
//! side in one run:
//!
//! * `producer`: 100-byte records through `Producer::send` with default settings except acks=1
//!   (batch.size 16 KiB, linger.ms 5, idempotence on), timed from the first send to the end of
//!   `flush`; against the core's raw batched append (`Log::append`, 100 records per call, acks=1),
//!   the rate the target is relative to. Also the producer without idempotence.
//! * `consumer`: poll-and-iterate over a prefilled partition of 100-byte records, reading every
//!   value byte, with default settings (max.poll.records 500) and with max.poll.records 10 000;
//!   against the core's `Log::fetch` loop reading the same bytes.
//! * `latency`: end to end, send to a polling consumer in the same process, linger.ms=0, acks=1,
//!   `high.watermark=written`: one thread sends a record and polls until it arrives, 20 000 times
//!   (Kafka's `EndToEndLatency` tool does the same); median, 99th percentile and max.
//!
//! Topics use `high.watermark=written` so that acks=1 records are visible without an fsync. Each
//! run gets a fresh log, after a `sync(2)` so that no run pays for the write-back of another.
//! `cargo bench --bench clients` runs the full sizes; under `cargo test` (no `--bench`) a smoke run
//! with small sizes checks that everything works.

mod common;

use std::time::{Duration, Instant};

use common::{bench_dir, full_run, payload};
use runnel::clients::{BytesSerializer, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, TopicPartition};
use runnel::{Acks, Log, LogOptions, Record, TopicConfig};

const TOPIC: &str = "bench";

fn fresh() -> (tempfile::TempDir, Log) {
    // Every run starts with no dirty pages of an earlier one: otherwise the kernel's write-back
    // throttling lands on whichever run comes later, and the comparison measures the order.
    rustix::fs::sync();
    let dir = bench_dir("runnel-clients-");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open");
    let mut c = TopicConfig::default();
    c.set("high.watermark", "written").expect("config");
    c.set("segment.bytes", &(256u64 << 20).to_string()).expect("config");
    log.create_topic(TOPIC, 1, c).expect("create");
    (dir, log)
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn best_of(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    (0..runs).map(|_| f()).min().expect("at least one run")
}

fn raw_append(n: u64) -> Duration {
    let (_dir, log) = fresh();
    let v = payload(100);
    let batch: Vec<Record<'_>> = (0..100).map(|_| Record::new(&v)).collect();
    let started = Instant::now();
    for _ in 0..n / 100 {
        log.append(TOPIC, Some(0), &batch, Acks::One).expect("append");
    }
    let d = started.elapsed();
    assert_eq!(log.high_watermark(TOPIC, 0).expect("hw"), n / 100 * 100);
    d
}

fn producer(n: u64, idempotence: bool) -> Duration {
    let (_dir, log) = fresh();
    let config = ProducerConfig { acks: Acks::One, enable_idempotence: idempotence, ..ProducerConfig::default() };
    // Byte slices sent as they are (Kafka's ByteArraySerializer): the value is borrowed, and the
    // producer's copy into its batch is the only one.
    let p: Producer<&[u8], &[u8]> = Producer::builder(&log, config, BytesSerializer, BytesSerializer).build().expect("producer");
    let v: &'static [u8] = Box::leak(payload(100).into_boxed_slice());
    let started = Instant::now();
    for _ in 0..n {
        p.send(ProducerRecord::new(TOPIC, v).partition(0));
    }
    p.flush();
    let d = started.elapsed();
    p.close(None).expect("close");
    assert_eq!(log.high_watermark(TOPIC, 0).expect("hw"), n);
    d
}

fn prefilled(n: u64) -> (tempfile::TempDir, Log) {
    let (dir, log) = fresh();
    let v = payload(100);
    let batch: Vec<Record<'_>> = (0..100).map(|_| Record::new(&v)).collect();
    for _ in 0..n / 100 {
        log.append(TOPIC, Some(0), &batch, Acks::One).expect("append");
    }
    (dir, log)
}

fn byte_sum(v: &[u8]) -> u8 {
    v.iter().fold(0u8, |a, &b| a.wrapping_add(b))
}

fn core_fetch(log: &Log, n: u64) -> Duration {
    let started = Instant::now();
    let (mut offset, mut seen, mut acc) = (0, 0u64, 0u8);
    while offset < n {
        let f = log.fetch(TOPIC, 0, offset, 1 << 20).expect("fetch");
        for r in f.records() {
            acc = acc.wrapping_add(byte_sum(r.expect("record").value.expect("value")));
            seen += 1;
        }
        offset = f.next_offset();
    }
    std::hint::black_box(acc);
    assert_eq!(seen, n);
    started.elapsed()
}

fn consumer_poll(log: &Log, n: u64, max_poll_records: usize) -> Duration {
    let config = ConsumerConfig { max_poll_records, ..ConsumerConfig::default() };
    let mut c = Consumer::new(log, config).expect("consumer");
    let tp = TopicPartition::new(TOPIC, 0);
    c.assign(std::slice::from_ref(&tp)).expect("assign");
    c.seek(&tp, 0).expect("seek");
    let started = Instant::now();
    let (mut seen, mut acc) = (0u64, 0u8);
    while seen < n {
        let records = c.poll(Duration::from_secs(1)).expect("poll");
        for r in records.iter() {
            acc = acc.wrapping_add(byte_sum(r.expect("record").value_bytes().expect("value")));
            seen += 1;
        }
    }
    std::hint::black_box(acc);
    assert_eq!(seen, n);
    started.elapsed()
}

fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn latency(n: usize) -> Vec<u64> {
    let (_dir, log) = fresh();
    let config = ProducerConfig { acks: Acks::One, linger: Duration::ZERO, ..ProducerConfig::default() };
    let p = Producer::new(&log, config).expect("producer");
    let mut c = Consumer::new(&log, ConsumerConfig::default()).expect("consumer");
    let tp = TopicPartition::new(TOPIC, 0);
    c.assign(std::slice::from_ref(&tp)).expect("assign");
    c.seek(&tp, 0).expect("seek");
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = mono_ns();
        p.send(ProducerRecord::new(TOPIC, sent.to_le_bytes().to_vec()).partition(0));
        loop {
            let records = c.poll(Duration::from_secs(5)).expect("poll");
            if !records.is_empty() {
                samples.push(mono_ns() - sent);
                assert_eq!(records.count(), 1);
                break;
            }
        }
    }
    samples.sort_unstable();
    samples
}

/// Whether the workload `name` runs: all of them, or those named after `--` (`cargo bench --bench
/// clients -- producer latency`).
fn selected(name: &str) -> bool {
    let names: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    names.is_empty() || names.iter().any(|n| n == name)
}

fn main() {
    let full = full_run();
    let (n, runs, lat_n) = if full { (5_000_000u64, 3, 20_000) } else { (20_000, 1, 200) };

    if selected("producer") {
        producer_figures(n, runs);
    }
    if selected("consumer") {
        consumer_figures(n, runs);
    }
    if selected("latency") {
        latency_figures(lat_n);
    }
}

fn producer_figures(n: u64, runs: usize) {
    let raw = best_of(runs, || raw_append(n));
    let prod = best_of(runs, || producer(n, true));
    let plain = best_of(runs, || producer(n, false));
    println!("producer, 100 B records, acks=1 ({n} records, best of {runs}):");
    println!("  core Log::append, 100 per call   {:>6.2} M records/s", rate(n, raw) / 1e6);
    println!(
        "  Producer, default settings       {:>6.2} M records/s  ({:.0}% of the core; target 80%)",
        rate(n, prod) / 1e6,
        100.0 * raw.as_secs_f64() / prod.as_secs_f64()
    );
    println!(
        "  Producer, enable.idempotence=false {:>4.2} M records/s  ({:.0}% of the core)",
        rate(n, plain) / 1e6,
        100.0 * raw.as_secs_f64() / plain.as_secs_f64()
    );
}

fn consumer_figures(n: u64, runs: usize) {
    let (_dir, log) = prefilled(n);
    let core = best_of(runs, || core_fetch(&log, n));
    let poll_default = best_of(runs, || consumer_poll(&log, n, 500));
    let poll_large = best_of(runs, || consumer_poll(&log, n, 10_000));
    println!("consumer, 100 B records, every value byte read ({n} records, best of {runs}):");
    println!("  core Log::fetch loop             {:>6.2} M records/s", rate(n, core) / 1e6);
    println!(
        "  poll, max.poll.records=500       {:>6.2} M records/s  ({:.0}% of the core; target 80%)",
        rate(n, poll_default) / 1e6,
        100.0 * core.as_secs_f64() / poll_default.as_secs_f64()
    );
    println!(
        "  poll, max.poll.records=10000     {:>6.2} M records/s  ({:.0}% of the core)",
        rate(n, poll_large) / 1e6,
        100.0 * core.as_secs_f64() / poll_large.as_secs_f64()
    );
}

fn latency_figures(lat_n: usize) {
    let s = latency(lat_n);
    let pct = |p: f64| s[((s.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    println!("end-to-end latency, send to poll in one process, linger.ms=0, acks=1 ({lat_n} records):");
    println!("  median {:.1} µs, p99 {:.1} µs, max {:.1} µs (target: median under 50 µs)", pct(0.5), pct(0.99), pct(1.0));
}
