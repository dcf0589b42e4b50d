//! Model-based test: random sequences of operations on a two-partition topic agree, after every
//! step, with a simple in-memory model.
//!
//! The operations are appends (1-5 records with random keys, null keys, null values, headers and
//! timestamps, with acks 0, 1 or all), fetches at random offsets (inside, below and above the
//! valid range) with random `max_bytes`, rolls (a batch larger than the tiny `segment.bytes`),
//! retention (`run_retention` with a small `retention.bytes`), clean reopens, unclean reopens
//! (close, then delete the clean-shutdown marker), reopens after a simulated crash (no marker, no
//! checkpoint, preallocated zeros after each last segment) and `sync_all`. The topic uses
//! `high.watermark=written`, so every append is visible at once whatever its acks.
//!
//! The model keeps each partition's records, batches and segments (it computes batch sizes itself
//! from the record format, and mirrors the roll and retention rules), its log start offset and its
//! durable offset. After every operation the test checks, for both partitions: log start, high
//! watermark, log end and durable offsets; segment count and bytes; every record from the log start
//! on (offset, timestamp, key, value, headers) read through chained fetches; `offset_for_timestamp`
//! for a few timestamps; and, for a Fetch operation, exactly which batches come back (first batch
//! always, more while within `max_bytes` and the segment), the next offset, and that
//! `OffsetOutOfRange` (with the right bounds) is returned exactly when the model says.
//!
//! 32 cases of up to 80 operations by default; `RUNNEL_TEST_SCALE=<n>` runs 32·n cases.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use runnel::{Acks, Error, HighWatermark, Log, LogOptions, Record, TopicConfig};
use tempfile::TempDir;

const TOPIC: &str = "m";
const PARTITIONS: u32 = 2;
const SEGMENT_BYTES: u64 = 1024;
const MAX_MESSAGE_BYTES: u64 = 4096;
const RETENTION_BYTES: u64 = 3000;
const MARKER: &str = ".runnel_clean_shutdown";
const CHECKPOINT: &str = "recovery-point-offset-checkpoint";

fn scale() -> u32 {
    std::env::var("RUNNEL_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1u32).max(1)
}

type Headers = Vec<(Vec<u8>, Option<Vec<u8>>)>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct MRec {
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Headers,
}

/// How a Fetch picks `max_bytes`: a number, or exactly the size of the next `n` batches from the
/// fetch position plus `delta` (so the limit lands on, just before and just after a boundary).
#[derive(Clone, Copy, Debug)]
enum MaxBytes {
    Raw(u64),
    Batches { n: u8, delta: i8 },
}

#[derive(Clone, Debug)]
enum Op {
    Append {
        partition: u32,
        records: Vec<MRec>,
        acks: u8,
    },
    Fetch {
        partition: u32,
        pick: u8,
        raw: u16,
        max_bytes: MaxBytes,
    },
    Roll {
        partition: u32,
        timestamp: i64,
    },
    Retention,
    Reopen,
    ReopenUnclean,
    /// Close, then make the directory look like a process crash left it: no marker, no
    /// checkpoint, and each partition's last segment followed by preallocated zeros.
    ReopenAfterCrash,
    Sync,
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn record() -> impl Strategy<Value = MRec> {
    (
        0i64..5_000,
        proptest::option::weighted(0.7, bytes(12)),
        proptest::option::weighted(0.85, bytes(300)),
        proptest::collection::vec((bytes(6), proptest::option::of(bytes(6))), 0..3),
    )
        .prop_map(|(ts, key, value, headers)| MRec { timestamp: 1_600_000_000_000 + ts, key, value, headers })
}

fn max_bytes() -> impl Strategy<Value = MaxBytes> {
    prop_oneof![
        (prop_oneof![1u64..200, 200u64..3000, Just(1u64 << 20)]).prop_map(MaxBytes::Raw),
        (1u8..5, -1i8..=1).prop_map(|(n, delta)| MaxBytes::Batches { n, delta }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..PARTITIONS, proptest::collection::vec(record(), 1..6), 0u8..3)
            .prop_map(|(partition, records, acks)| Op::Append { partition, records, acks }),
        4 => (0..PARTITIONS, 0u8..4, any::<u16>(), max_bytes())
            .prop_map(|(partition, pick, raw, max_bytes)| Op::Fetch { partition, pick, raw, max_bytes }),
        2 => (0..PARTITIONS, 0i64..5_000).prop_map(|(partition, ts)| Op::Roll { partition, timestamp: 1_600_000_000_000 + ts }),
        1 => Just(Op::Retention),
        1 => Just(Op::Reopen),
        1 => Just(Op::ReopenUnclean),
        1 => Just(Op::ReopenAfterCrash),
        1 => Just(Op::Sync),
    ]
}

// ---- the record format's sizes, computed independently of the library ----

fn varlong_len(v: i64) -> u64 {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    let mut n = 1;
    while z >= 0x80 {
        z >>= 7;
        n += 1;
    }
    n
}

fn nullable_len(b: Option<&[u8]>) -> u64 {
    b.map_or(1, |b| varlong_len(b.len() as i64) + b.len() as u64)
}

/// Encoded size of a batch of `records`: the 64-byte header and, per record, a length-prefixed body.
fn batch_len(records: &[MRec]) -> u64 {
    let base_ts = records[0].timestamp;
    64 + records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut body = 1 + varlong_len(r.timestamp.wrapping_sub(base_ts)) + varlong_len(i as i64);
            body += nullable_len(r.key.as_deref()) + nullable_len(r.value.as_deref());
            body += varlong_len(r.headers.len() as i64);
            for (k, v) in &r.headers {
                body += varlong_len(k.len() as i64) + k.len() as u64 + nullable_len(v.as_deref());
            }
            varlong_len(body as i64) + body
        })
        .sum::<u64>()
}

// ---- the model ----

#[derive(Clone, Debug)]
struct MBatch {
    base: u64,
    next: u64,
    len: u64,
}

#[derive(Clone, Debug)]
struct MSeg {
    base: u64,
    size: u64,
    batches: Vec<MBatch>,
}

#[derive(Clone, Debug)]
struct PModel {
    /// Every record ever appended; offset = index. Those below `log_start` were deleted.
    records: Vec<MRec>,
    segments: Vec<MSeg>,
    log_start: u64,
    durable: u64,
}

impl PModel {
    fn new() -> PModel {
        PModel { records: Vec::new(), segments: vec![MSeg { base: 0, size: 0, batches: Vec::new() }], log_start: 0, durable: 0 }
    }

    fn leo(&self) -> u64 {
        self.records.len() as u64
    }

    fn append(&mut self, records: &[MRec], acks: Acks) -> u64 {
        let len = batch_len(records);
        assert!(len <= MAX_MESSAGE_BYTES, "the generator keeps batches under max.message.bytes");
        let base = self.leo();
        let capacity = SEGMENT_BYTES.max(MAX_MESSAGE_BYTES);
        let active = self.segments.last().expect("a segment");
        let fits = active.size + len <= capacity && (active.size == 0 || active.size + len <= SEGMENT_BYTES);
        if !fits {
            self.segments.push(MSeg { base, size: 0, batches: Vec::new() });
        }
        let active = self.segments.last_mut().expect("a segment");
        active.size += len;
        active.batches.push(MBatch { base, next: base + records.len() as u64, len });
        self.records.extend_from_slice(records);
        if acks == Acks::All {
            self.durable = self.leo();
        }
        base
    }

    /// `retention.bytes`: drop the oldest sealed segments while the rest still reaches the limit.
    fn retention(&mut self) -> usize {
        let mut total: u64 = self.segments.iter().map(|s| s.size).sum();
        let mut n = 0;
        for s in &self.segments[..self.segments.len() - 1] {
            if total - s.size < RETENTION_BYTES {
                break;
            }
            total -= s.size;
            n += 1;
        }
        self.segments.drain(..n);
        self.log_start = self.segments[0].base;
        n
    }

    /// The byte size of the `n` batches from the one holding `offset` (fewer if the segment ends).
    fn size_of_batches(&self, offset: u64, n: usize) -> u64 {
        let Some(seg) = self.segments.iter().rev().find(|s| s.base <= offset) else { return 0 };
        seg.batches.iter().filter(|b| b.next > offset).take(n).map(|b| b.len).sum()
    }

    /// What a fetch at `offset` returns: `Err(())` for out of range, else the batches and next offset.
    fn fetch(&self, offset: u64, max_bytes: u64) -> Result<(Vec<MBatch>, u64), ()> {
        let hw = self.leo();
        if offset < self.log_start || offset > hw {
            return Err(());
        }
        if offset == hw {
            return Ok((Vec::new(), offset));
        }
        let seg = self.segments.iter().rev().find(|s| s.base <= offset).expect("a segment holds the offset");
        let first = seg.batches.iter().position(|b| b.next > offset).expect("a batch holds the offset");
        let mut out = vec![seg.batches[first].clone()];
        let mut used = seg.batches[first].len;
        for b in &seg.batches[first + 1..] {
            if used + b.len > max_bytes {
                break;
            }
            used += b.len;
            out.push(b.clone());
        }
        let next = out.last().map_or(offset, |b| b.next);
        Ok((out, next))
    }
}

// ---- the system under test ----

fn topic_config() -> TopicConfig {
    TopicConfig {
        segment_bytes: SEGMENT_BYTES,
        max_message_bytes: MAX_MESSAGE_BYTES,
        index_interval_bytes: 128,
        retention_ms: None,
        retention_bytes: Some(RETENTION_BYTES),
        high_watermark: HighWatermark::Written,
        ..TopicConfig::default()
    }
}

fn open(dir: &Path) -> Log {
    Log::open(dir, LogOptions::default().background_maintenance(false)).unwrap_or_else(|e| panic!("open failed: {e}"))
}

fn acks_of(n: u8) -> Acks {
    match n {
        0 => Acks::Zero,
        1 => Acks::One,
        _ => Acks::All,
    }
}

fn append(log: &Log, partition: u32, recs: &[MRec], acks: Acks) -> u64 {
    let headers: Vec<Vec<runnel::Header<'_>>> =
        recs.iter().map(|r| r.headers.iter().map(|(k, v)| runnel::Header { key: k, value: v.as_deref() }).collect()).collect();
    let records: Vec<Record<'_>> = recs
        .iter()
        .zip(&headers)
        .map(|(r, h)| Record { key: r.key.as_deref(), value: r.value.as_deref(), headers: h, timestamp: Some(r.timestamp) })
        .collect();
    let at = log.append(TOPIC, Some(partition), &records, acks).unwrap_or_else(|e| panic!("append to {partition} failed: {e}"));
    assert_eq!(at.partition, partition);
    assert_eq!(at.last_offset, at.base_offset + recs.len() as u64 - 1, "last offset of the append");
    at.base_offset
}

fn to_mrec(r: &runnel::RecordView<'_>) -> MRec {
    MRec {
        timestamp: r.timestamp,
        key: r.key.map(<[u8]>::to_vec),
        value: r.value.map(<[u8]>::to_vec),
        headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
    }
}

/// Checks everything observable about `partition` against the model.
fn check_partition(log: &Log, p: u32, m: &PModel, step: &str) {
    let leo = m.leo();
    assert_eq!(log.log_start_offset(TOPIC, p).expect("log start"), m.log_start, "{step}: log start of {p}");
    assert_eq!(log.log_end_offset(TOPIC, p).expect("leo"), leo, "{step}: log end of {p}");
    assert_eq!(log.high_watermark(TOPIC, p).expect("hw"), leo, "{step}: high watermark of {p}");
    assert_eq!(log.durable_offset(TOPIC, p).expect("durable"), m.durable, "{step}: durable offset of {p}");
    let d = &log.describe_topic(TOPIC).expect("describe").partitions[p as usize];
    assert_eq!(d.segment_count, m.segments.len(), "{step}: segments of {p}");
    assert_eq!(d.size_bytes, m.segments.iter().map(|s| s.size).sum::<u64>(), "{step}: bytes of {p}");

    let mut offset = m.log_start;
    while offset < leo {
        let f = log.fetch(TOPIC, p, offset, 1 << 20).unwrap_or_else(|e| panic!("{step}: fetch {p}@{offset} failed: {e}"));
        let got: Vec<(u64, MRec)> =
            f.records().map(|r| r.map(|r| (r.offset, to_mrec(&r)))).collect::<runnel::Result<_>>().expect("records decode");
        assert!(!got.is_empty(), "{step}: fetch {p}@{offset} returned nothing below {leo}");
        for (o, r) in &got {
            assert_eq!(*o, offset, "{step}: offsets of {p} are not contiguous");
            assert_eq!(r, &m.records[offset as usize], "{step}: record {p}@{offset}");
            offset += 1;
        }
        assert_eq!(f.next_offset(), offset, "{step}: next offset");
    }

    let visible = &m.records[m.log_start as usize..];
    for ts in [i64::MIN, 1_600_000_000_000, 1_600_000_001_000, 1_600_000_002_500, 1_600_000_004_999, i64::MAX] {
        let expected = visible.iter().enumerate().find(|(_, r)| r.timestamp >= ts).map(|(i, r)| (m.log_start + i as u64, r.timestamp));
        assert_eq!(
            log.offset_for_timestamp(TOPIC, p, ts).expect("offset_for_timestamp"),
            expected,
            "{step}: offset_for_timestamp({ts}) on {p}"
        );
    }
}

fn check_fetch(log: &Log, p: u32, m: &PModel, offset: u64, max_bytes: u64, step: &str) {
    let got = log.fetch(TOPIC, p, offset, max_bytes);
    match (m.fetch(offset, max_bytes), got) {
        (Err(()), Err(Error::OffsetOutOfRange { requested, log_start, high_watermark })) => {
            assert_eq!((requested, log_start, high_watermark), (offset, m.log_start, m.leo()), "{step}: out-of-range bounds");
        }
        (Err(()), Err(e)) => panic!("{step}: expected OffsetOutOfRange, got {e}"),
        (Err(()), Ok(f)) => panic!("{step}: expected OffsetOutOfRange for {offset} outside [{}, {}], got {f:?}", m.log_start, m.leo()),
        (Ok(_), Err(e)) => panic!("{step}: fetch {p}@{offset} (max {max_bytes}) failed: {e}"),
        (Ok((batches, next)), Ok(f)) => {
            assert_eq!(f.next_offset(), next, "{step}: next offset of fetch {p}@{offset} max {max_bytes}");
            assert_eq!(f.high_watermark(), m.leo(), "{step}: fetch's high watermark");
            assert_eq!(f.log_start_offset(), m.log_start, "{step}: fetch's log start");
            assert_eq!(f.is_empty(), batches.is_empty(), "{step}: emptiness");
            let got_batches: Vec<(u64, u64, u64)> = f
                .batches()
                .map(|b| b.map(|b| (b.header().base_offset, b.header().next_offset(), b.header().total_len() as u64)))
                .collect::<runnel::Result<_>>()
                .expect("batches parse");
            let want: Vec<(u64, u64, u64)> = batches.iter().map(|b| (b.base, b.next, b.len)).collect();
            assert_eq!(got_batches, want, "{step}: batches of fetch {p}@{offset} max {max_bytes}");
            assert_eq!(f.bytes().len() as u64, want.iter().map(|b| b.2).sum::<u64>(), "{step}: fetched bytes");
            let got: Vec<(u64, MRec)> =
                f.records().map(|r| r.map(|r| (r.offset, to_mrec(&r)))).collect::<runnel::Result<_>>().expect("records decode");
            let expected: Vec<(u64, MRec)> = (offset..next).map(|o| (o, m.records[o as usize].clone())).collect();
            assert_eq!(got, expected, "{step}: records of fetch {p}@{offset} max {max_bytes}");
        }
    }
}

/// What a run did, for the summary line.
#[derive(Default)]
struct Stats {
    cases: usize,
    ops: usize,
    appends: usize,
    rolls: usize,
    fetches: usize,
    out_of_range: usize,
    retention_runs: usize,
    segments_deleted: usize,
    reopens: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.ops += o.ops;
        self.appends += o.appends;
        self.rolls += o.rolls;
        self.fetches += o.fetches;
        self.out_of_range += o.out_of_range;
        self.retention_runs += o.retention_runs;
        self.segments_deleted += o.segments_deleted;
        self.reopens += o.reopens;
    }
}

struct Sut {
    dir: TempDir,
    log: Option<Log>,
}

impl Sut {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn reopen(&mut self, clean: bool, crash: bool) {
        self.log.take().expect("open").close().expect("close");
        if !clean {
            std::fs::remove_file(self.dir.path().join(MARKER)).expect("remove the clean-shutdown marker");
        }
        if crash {
            std::fs::remove_file(self.dir.path().join(CHECKPOINT)).expect("remove the checkpoint");
            for p in 0..PARTITIONS {
                let pdir = self.dir.path().join(format!("{TOPIC}-{p}"));
                let mut logs: Vec<_> = std::fs::read_dir(&pdir)
                    .expect("read partition directory")
                    .map(|e| e.expect("entry").path())
                    .filter(|p| p.extension().is_some_and(|x| x == "log"))
                    .collect();
                logs.sort();
                let last = logs.pop().expect("a segment");
                let f = std::fs::OpenOptions::new().write(true).open(&last).expect("open last segment");
                f.set_len(SEGMENT_BYTES.max(MAX_MESSAGE_BYTES)).expect("preallocate");
            }
        }
        self.log = Some(open(self.dir.path()));
        for (t, p, r) in self.log().recovery_report() {
            assert!(r.bytes_quarantined == 0 && r.segments_quarantined == 0, "recovery of a cleanly written {t}-{p} cut data: {r:?}");
        }
    }
}

fn run(ops: &[Op]) -> Stats {
    let mut stats = Stats { ops: ops.len(), ..Stats::default() };
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.create_topic(TOPIC, PARTITIONS, topic_config()).expect("create topic");
    let mut sut = Sut { dir, log: Some(log) };
    let mut model: Vec<PModel> = (0..PARTITIONS).map(|_| PModel::new()).collect();
    for (i, op) in ops.iter().enumerate() {
        let step = format!("step {i} ({op:?})");
        match op {
            Op::Append { partition, records, acks } => {
                let acks = acks_of(*acks);
                stats.appends += 1;
                let expected = model[*partition as usize].append(records, acks);
                assert_eq!(append(sut.log(), *partition, records, acks), expected, "{step}: base offset");
            }
            Op::Roll { partition, timestamp } => {
                // One record bigger than segment.bytes: it rolls, and the append after it rolls again.
                let r = MRec { timestamp: *timestamp, key: Some(b"roll".to_vec()), value: Some(vec![0xAB; 1100]), headers: Vec::new() };
                let recs = [r];
                stats.rolls += 1;
                let expected = model[*partition as usize].append(&recs, Acks::All);
                assert_eq!(append(sut.log(), *partition, &recs, Acks::All), expected, "{step}: base offset");
            }
            Op::Fetch { partition, pick, raw, max_bytes } => {
                let m = &model[*partition as usize];
                let (start, hw, raw) = (m.log_start, m.leo(), u64::from(*raw));
                let offset = match pick {
                    0 => start + raw % (hw - start + 1),
                    1 => raw % (hw + 3),
                    2 => start.saturating_sub(1 + raw % 3),
                    _ => hw + raw % 3,
                };
                stats.fetches += 1;
                stats.out_of_range += usize::from(m.fetch(offset, 1).is_err());
                let max_bytes = match *max_bytes {
                    MaxBytes::Raw(n) => n,
                    MaxBytes::Batches { n, delta } => m.size_of_batches(offset, n.into()).saturating_add_signed(delta.into()).max(1),
                };
                check_fetch(sut.log(), *partition, m, offset, max_bytes, &step);
            }
            Op::Retention => {
                let expected: usize = model.iter_mut().map(PModel::retention).sum();
                stats.retention_runs += 1;
                stats.segments_deleted += expected;
                assert_eq!(sut.log().run_retention().expect("retention"), expected, "{step}: segments deleted");
            }
            Op::Reopen | Op::ReopenUnclean | Op::ReopenAfterCrash => {
                stats.reopens += 1;
                sut.reopen(matches!(op, Op::Reopen), matches!(op, Op::ReopenAfterCrash));
                for m in &mut model {
                    m.durable = m.leo();
                }
            }
            Op::Sync => {
                sut.log().sync_all().expect("sync");
                for m in &mut model {
                    m.durable = m.leo();
                }
            }
        }
        for (p, m) in model.iter().enumerate() {
            check_partition(sut.log(), p as u32, m, &step);
        }
    }
    sut.log.take().expect("open").close().expect("final close");
    stats
}

#[test]
fn random_operations_agree_with_the_in_memory_model() {
    let config = ProptestConfig { cases: 32 * scale(), failure_persistence: None, ..ProptestConfig::default() };
    let stats = std::cell::RefCell::new(Stats::default());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..80), |ops| {
        let s = run(&ops);
        let mut t = stats.borrow_mut();
        t.cases += 1;
        t.add(&s);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let t = stats.into_inner();
    assert!(t.cases >= 32, "every case ran");
    eprintln!(
        "model: {} cases, {} operations: {} appends ({} rolls), {} fetches ({} out of range), {} retention runs deleting {} segments, {} reopens",
        t.cases, t.ops, t.appends, t.rolls, t.fetches, t.out_of_range, t.retention_runs, t.segments_deleted, t.reopens
    );
}

#[test]
fn model_batch_sizes_match_the_format_test_vector() {
    // docs/FORMAT.md's vector: one record, key "k", value "v", timestamp 1000 is a 73-byte batch.
    let r = MRec { timestamp: 1000, key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), headers: Vec::new() };
    assert_eq!(batch_len(&[r]), 73);
}

#[test]
fn a_fixed_sequence_covering_every_operation_agrees_with_the_model() {
    let rec = |ts: i64, v: usize| MRec { timestamp: 1_600_000_000_000 + ts, key: None, value: Some(vec![7; v]), headers: Vec::new() };
    let mut ops = Vec::new();
    for i in 0..6 {
        ops.push(Op::Append { partition: 0, records: vec![rec(i, 250), rec(i + 1, 10)], acks: (i % 3) as u8 });
        ops.push(Op::Roll { partition: 0, timestamp: i * 10 });
        ops.push(Op::Fetch { partition: 0, pick: 0, raw: i as u16 * 5, max_bytes: MaxBytes::Batches { n: 2, delta: 0 } });
    }
    ops.extend([
        Op::Retention,
        Op::Fetch { partition: 0, pick: 2, raw: 0, max_bytes: MaxBytes::Raw(100) },
        Op::ReopenUnclean,
        Op::Sync,
        Op::Reopen,
        Op::ReopenAfterCrash,
    ]);
    ops.push(Op::Append { partition: 1, records: vec![rec(3, 5)], acks: 1 });
    ops.push(Op::Fetch { partition: 1, pick: 3, raw: 1, max_bytes: MaxBytes::Raw(100) });
    let s = run(&ops);
    assert!(s.segments_deleted > 0, "the fixed sequence exercises retention");
}

#[test]
fn retention_deletes_a_segment_exactly_when_the_rest_still_reaches_retention_bytes() {
    // Single-record batches of exactly RETENTION_BYTES / 3 bytes: each fills a segment of its own.
    let size = RETENTION_BYTES / 3;
    let value_len = (0..size as usize)
        .find(|&n| batch_len(&[MRec { timestamp: 0, key: None, value: Some(vec![0; n]), headers: Vec::new() }]) == size)
        .expect("a value length that makes the batch exactly the size wanted");
    let rec = MRec { timestamp: 1_600_000_000_000, key: None, value: Some(vec![1; value_len]), headers: Vec::new() };
    let append = |partition| Op::Append { partition, records: vec![rec.clone()], acks: 2 };
    // Partition 0: three sealed segments and the active one, 4·size bytes: the oldest goes, as the
    // other three still make exactly retention.bytes. Partition 1: one segment fewer, none goes.
    let ops = vec![append(0), append(0), append(0), append(0), append(1), append(1), append(1), Op::Retention, Op::Retention];
    let s = run(&ops);
    assert_eq!(s.segments_deleted, 1, "exactly one segment goes, on the first run");
}
