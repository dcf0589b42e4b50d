//! The fuzz targets' invariant checks on the stable toolchain, as part of `cargo test`.
//!
//! cargo-fuzz needs nightly (scripts/fuzz.sh runs it); this file runs the same checks
//! (`fuzz/checks.rs`, included below, so the two cannot drift) on:
//! - every committed corpus file, `fuzz/corpus/<target>/*`;
//! - a few thousand deterministic inputs per target (fewer for the slow end-to-end
//!   `open_segment`), from a seeded generator: random bytes, and corpus files put through
//!   mutations like libFuzzer's (bit flips, interesting values in length fields, truncation,
//!   insertion, deletion, duplication, splicing, zero tails).
//!
//! A failure names the input and prints it in hex; to keep it, write it to
//! `fuzz/artifacts-regressions/<target>/` and add an (ignored, until fixed) test to
//! tests/fuzz_regressions.rs.
//!
//! `generate_seed_corpora` (ignored) rewrites the seed files of the corpora from runnel's own
//! encoders: `cargo test --test fuzz_corpus -- --ignored generate_seed_corpora`.

#[path = "../fuzz/checks.rs"]
mod checks;
mod common;

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use runnel::format::Header;
use runnel::format::batch::{MAX_OFFSET, ProducerFields, encode_batch};
use runnel::format::index::{OffsetEntry, TimeEntry, encode_offset_index, encode_time_index};
use runnel::format::meta::{self, Catalog, OffsetAndMetadata, TopicMeta};
use runnel::format::txn::{
    self, AbortedTxn, BatchMeta, MarkerType, ProducerSnapshot, ProducerSnapshotEntry, TxnKey, TxnPartition, TxnRecord, TxnStatus,
};
use runnel::format::varint::put_varlong;
use runnel::{Acks, Log, LogOptions, OffsetCommit, Record, TimestampType, TransactionOptions};

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

/// The committed corpus of a target, sorted by file name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            (path.file_name().expect("file name").to_string_lossy().into_owned(), fs::read(&path).expect("read corpus file"))
        })
        .collect();
    out.sort();
    out
}

/// The input generator: tests/common's seeded PRNG, plus libFuzzer-like mutations.
struct Gen(common::Rng);

impl Gen {
    fn new(seed: &str) -> Gen {
        // FNV-1a of the target name, so each target gets its own stream.
        Gen(common::Rng(seed.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))))
    }

    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        self.0.bytes(n)
    }

    /// A length, mostly small.
    fn len(&mut self, max: usize) -> usize {
        match self.below(4) {
            0 => self.below(16.min(max + 1)),
            1 => self.below(128.min(max + 1)),
            _ => self.below(max + 1),
        }
    }

    /// One generated input: random bytes, or a corpus file with one to four mutations.
    fn input(&mut self, corpus: &[(String, Vec<u8>)], max_len: usize) -> Vec<u8> {
        if corpus.is_empty() || self.below(8) == 0 {
            let n = self.len(max_len);
            return self.bytes(n);
        }
        let mut b = corpus[self.below(corpus.len())].1.clone();
        for _ in 0..1 + self.below(4) {
            self.mutate(&mut b, corpus);
        }
        b.truncate(max_len);
        b
    }

    fn mutate(&mut self, b: &mut Vec<u8>, corpus: &[(String, Vec<u8>)]) {
        const INTERESTING: [u64; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 52, 64, u64::MAX];
        let pos = self.below(b.len());
        match self.below(10) {
            0 if !b.is_empty() => b[pos] ^= 1 << self.below(8),
            1 if !b.is_empty() => b[pos] = [0, 0xff, 0x7f, 0x80, 0x01, 0xfe][self.below(6)],
            2 if b.len() >= 4 => {
                // An interesting value in a (possible) length or offset field, 4 or 8 bytes wide.
                let v = INTERESTING[self.below(INTERESTING.len())];
                let width = if self.below(2) == 0 { 4 } else { 8 };
                let at = self.below(b.len().saturating_sub(width - 1).max(1));
                let bytes = v.to_le_bytes();
                let end = (at + width).min(b.len());
                b[at..end].copy_from_slice(&bytes[..end - at]);
            }
            3 => b.truncate(pos),
            4 => {
                let n = 1 + self.below(16);
                let ins = self.bytes(n);
                b.splice(pos..pos, ins);
            }
            5 if !b.is_empty() => {
                let end = (pos + 1 + self.below(32)).min(b.len());
                b.drain(pos..end);
            }
            6 if !b.is_empty() => {
                let end = (pos + 1 + self.below(128)).min(b.len());
                let chunk = b[pos..end].to_vec();
                let at = self.below(b.len() + 1);
                b.splice(at..at, chunk);
            }
            7 => {
                let other = &corpus[self.below(corpus.len())].1;
                let from = self.below(other.len());
                b.truncate(pos);
                b.extend_from_slice(&other[from..]);
            }
            8 => {
                let n = self.len(256);
                b.extend(std::iter::repeat_n(0u8, n));
            }
            _ => {
                let n = 1 + self.below(8);
                let tail = self.bytes(n);
                b.extend_from_slice(&tail);
            }
        }
    }
}

/// Runs one input through a target's check; a failure names the input and prints it in hex.
fn run_one(target: &checks::Target, data: &[u8], what: &str) {
    if let Err(e) = catch_unwind(AssertUnwindSafe(|| (target.check)(data))) {
        let msg = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
        panic!("{}: {what} ({} bytes) failed: {msg}\ninput (hex): {}", target.name, data.len(), checks::hex(data));
    }
}

/// Every committed corpus file of `name`, then `generated` inputs from the seeded generator.
fn run_target(name: &str, generated: usize) {
    let target = checks::TARGETS.iter().find(|t| t.name == name).expect("a target of that name");
    let files = corpus(name);
    assert!(!files.is_empty(), "the corpus of {name} is empty");
    for (file, data) in &files {
        assert!(data.len() <= target.max_len, "corpus file {name}/{file} is longer than the target's max_len");
        run_one(target, data, &format!("corpus file {file}"));
    }
    let mut rng = Gen::new(name);
    for i in 0..generated {
        let input = rng.input(&files, target.max_len);
        run_one(target, &input, &format!("generated input {i}"));
    }
}

#[test]
fn every_target_has_a_test_and_a_corpus() {
    let tested = [
        "batch",
        "scan",
        "index",
        "catalog",
        "checkpoint",
        "partition_metadata",
        "offset_record",
        "varint",
        "open_segment",
        "producer_snapshot",
        "txn_state",
    ];
    let names: Vec<_> = checks::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, tested);
    let bins =
        fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("fuzz_targets")).expect("fuzz/fuzz_targets").count();
    assert_eq!(bins, names.len(), "one fuzz target per check");
}

#[test]
fn batch() {
    run_target("batch", 5000);
}

#[test]
fn scan() {
    run_target("scan", 5000);
}

#[test]
fn index() {
    run_target("index", 5000);
}

#[test]
fn catalog() {
    run_target("catalog", 5000);
}

#[test]
fn checkpoint() {
    run_target("checkpoint", 5000);
}

#[test]
fn partition_metadata() {
    run_target("partition_metadata", 5000);
}

#[test]
fn offset_record() {
    run_target("offset_record", 5000);
}

#[test]
fn varint() {
    run_target("varint", 5000);
}

/// Each input opens, appends to, closes and reopens a data directory: a few milliseconds each in
/// a debug build, so fewer of them.
#[test]
fn open_segment() {
    run_target("open_segment", 2000);
}

#[test]
fn producer_snapshot() {
    run_target("producer_snapshot", 5000);
}

#[test]
fn txn_state() {
    run_target("txn_state", 5000);
}

// ---------------------------------------------------------------------------------------------
// Seed corpora, made with runnel's own encoders.

/// A batch written field by field (not with `encode_batch`), for what the encoder never writes:
/// offset gaps, record attributes, overlong varints. `records` are
/// (attributes, timestamp delta, offset delta, key, value, headers).
#[allow(clippy::type_complexity, reason = "a test helper's literal tables")]
fn raw_batch(
    base: u64,
    attributes: u16,
    last_offset_delta: u32,
    timestamps: (i64, i64),
    records: &[(u8, i64, i64, Option<&[u8]>, Option<&[u8]>, &[(&[u8], Option<&[u8]>)])],
    overlong: bool,
) -> Vec<u8> {
    let mut body = Vec::new();
    let var = |out: &mut Vec<u8>, v: i64| {
        if overlong && (0..64).contains(&v) {
            // The same value in two bytes: a non-canonical encoding runnel accepts.
            out.extend_from_slice(&[((v << 1) as u8) | 0x80, 0]);
        } else {
            put_varlong(out, v);
        }
    };
    for &(attr, ts, off, key, value, headers) in records {
        let mut r = vec![attr];
        var(&mut r, ts);
        var(&mut r, off);
        for f in [key, value] {
            match f {
                Some(b) => {
                    var(&mut r, b.len() as i64);
                    r.extend_from_slice(b);
                }
                None => put_varlong(&mut r, -1),
            }
        }
        var(&mut r, headers.len() as i64);
        for (k, v) in headers {
            var(&mut r, k.len() as i64);
            r.extend_from_slice(k);
            match v {
                Some(v) => {
                    var(&mut r, v.len() as i64);
                    r.extend_from_slice(v);
                }
                None => put_varlong(&mut r, -1),
            }
        }
        var(&mut body, r.len() as i64);
        body.extend_from_slice(&r);
    }
    let mut b = Vec::new();
    b.extend_from_slice(&base.to_le_bytes());
    b.extend_from_slice(&((52 + body.len()) as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&[2, 0]);
    b.extend_from_slice(&attributes.to_le_bytes());
    b.extend_from_slice(&last_offset_delta.to_le_bytes());
    b.extend_from_slice(&timestamps.0.to_le_bytes());
    b.extend_from_slice(&timestamps.1.to_le_bytes());
    b.extend_from_slice(&(-1i64).to_le_bytes());
    b.extend_from_slice(&(-1i16).to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&(-1i32).to_le_bytes());
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&body);
    checks::fix_batch_crc(&mut b);
    b
}

fn encode(base: u64, records: &[Record<'_>], ts: TimestampType, producer: ProducerFields, control: bool) -> Vec<u8> {
    let mut out = Vec::new();
    encode_batch(&mut out, base, records, ts, 1_700_000_000_000, producer, control);
    out
}

/// Batches of several shapes, at `base` and contiguous.
fn seed_batches(base: u64) -> Vec<Vec<u8>> {
    let headers = [Header::new(b"trace", b"42"), Header { key: b"h2", value: None }];
    let plain = ProducerFields::NONE;
    let mut out = Vec::new();
    let mut next = base;
    let push = |b: Vec<u8>, out: &mut Vec<Vec<u8>>| {
        let v = runnel::format::BatchView::parse(&b).expect("seed batch parses");
        assert!(v.verify_crc() && v.validate().is_ok(), "seed batch is good");
        out.push(b);
    };
    let b = encode(next, &[Record::new(b"v").with_key(b"k").with_timestamp(1000)], TimestampType::CreateTime, plain, false);
    next += 1;
    push(b, &mut out);
    let recs = [
        Record::new(b"hello").with_key(b"key").with_timestamp(1_700_000_000_005),
        Record::tombstone(b"gone").with_headers(&headers).with_timestamp(1_700_000_000_001),
        Record::default().with_timestamp(1_699_999_999_000),
    ];
    push(encode(next, &recs, TimestampType::CreateTime, plain, false), &mut out);
    next += 3;
    push(encode(next, &[Record::new(b"a"), Record::new(b"bb")], TimestampType::LogAppendTime, plain, false), &mut out);
    next += 2;
    let txn = ProducerFields { producer_id: 42, producer_epoch: 3, base_sequence: 100, transactional: true };
    push(
        encode(next, &[Record::new(b"\x00\x00\x00\x01").with_key(b"\x00\x00").with_timestamp(5)], TimestampType::CreateTime, txn, true),
        &mut out,
    );
    next += 1;
    let gap: &[(&[u8], Option<&[u8]>)] = &[(b"h", Some(b"x")), (b"", None)];
    let b = raw_batch(
        next,
        0,
        5,
        (2000, 2010),
        &[(0, 0, 0, Some(b"a"), Some(b"1"), &[]), (0, 10, 2, None, Some(b"2"), gap), (0, -5, 5, Some(b""), None, &[])],
        false,
    );
    push(b, &mut out);
    next += 6;
    push(raw_batch(next, 0, 1, (7, 7), &[(1, 0, 0, Some(b"k"), Some(b"attr"), &[]), (0, 0, 1, None, None, &[])], true), &mut out);
    out
}

/// Two good batches of one record each whose offset deltas are the largest a record can hold
/// (2^31 - 1): a segment whose offsets approach 2^32 within two batches.
fn wide_offsets() -> Vec<u8> {
    let gap = i64::from(i32::MAX);
    let first = raw_batch(0, 0, gap as u32, (1, 1), &[(0, 0, gap, None, Some(b"a"), &[])], false);
    let second = raw_batch(gap as u64 + 1, 0, gap as u32, (2, 2), &[(0, 0, gap, Some(b"k"), Some(b"b"), &[])], false);
    [first, second].concat()
}

fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    fs::create_dir_all(&dir).expect("create corpus directory");
    fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
}

/// A segment written through the real API (fixed timestamps, so the bytes are reproducible).
fn api_segment() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open");
    log.create_topic("t", 1, checks::segment_config()).expect("create topic");
    let headers = [Header::new(b"h", b"v")];
    let ts = 1_700_000_000_000;
    let batches: [&[Record<'_>]; 5] = [
        &[Record::new(b"first").with_key(b"a").with_timestamp(ts)],
        &[
            Record::new(b"x").with_timestamp(ts + 5),
            Record::tombstone(b"b").with_timestamp(ts + 1),
            Record::default().with_timestamp(ts + 9),
        ],
        &[Record::new(&[7u8; 100]).with_headers(&headers).with_timestamp(ts + 20)],
        &[Record::new(b"y").with_key(b"c").with_timestamp(ts - 50)],
        &[Record::new(b"last").with_timestamp(ts + 30), Record::new(b"").with_timestamp(ts + 31)],
    ];
    for b in batches {
        log.append("t", Some(0), b, Acks::All).expect("append");
    }
    log.close().expect("close");
    fs::read(dir.path().join("t-0").join(format!("{:020}.log", 0))).expect("read segment")
}

/// A record of an internal topic: key and value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// A fixed wall-clock time for the seeds, so that regenerating them reproduces the same bytes.
const SEED_TIME_MS: i64 = 1_700_000_000_000;

/// Exactly-once state written through the real API: idempotent and transactional producers
/// (commits, an abort, offsets sent in a transaction, a transaction left open) on a topic whose
/// small segments roll. Returns the producer-state snapshots of its partitions (their wall-clock
/// fields set to [`SEED_TIME_MS`]) and the key/value records of `__transaction_state` (the same).
fn api_txn_state() -> (Vec<ProducerSnapshot>, Vec<KeyValue>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || LogOptions::default().background_maintenance(false);
    let log = Log::open(dir.path(), options()).expect("open");
    log.create_topic("t", 2, checks::segment_config()).expect("create topic");
    let idempotent = log.idempotent_producer().expect("idempotent producer");
    let producer = log.transactional_producer("app-1", TransactionOptions::default()).expect("transactional producer");
    let value = [b'v'; 100];
    for round in 0..12u32 {
        idempotent.send("t", Some(round % 2), &[Record::new(&value), Record::new(b"i")], Acks::One).expect("idempotent send");
        producer.begin().expect("begin");
        producer.send("t", Some(0), &[Record::new(&value)]).expect("send");
        producer.send("t", Some(1), &[Record::new(b"x"), Record::new(b"y")]).expect("send");
        if round % 4 == 3 {
            producer.abort().expect("abort");
        } else {
            let offsets = [OffsetCommit { topic: "t", partition: 0, offset: u64::from(round), metadata: "m" }];
            producer.send_offsets_to_transaction("group", &offsets).expect("send offsets");
            producer.commit().expect("commit");
        }
    }
    producer.begin().expect("begin");
    producer.send("t", Some(1), &[Record::new(b"left open")]).expect("send");
    std::mem::forget(producer);
    drop(idempotent);
    log.close().expect("close");

    let mut snapshots = Vec::new();
    for p in 0..2 {
        let pdir = common::partition_dir(dir.path(), "t", p);
        for name in common::dir_names(&pdir).expect("list the partition directory") {
            if name.ends_with(".snapshot") {
                let bytes = fs::read(pdir.join(&name)).expect("read snapshot");
                let mut s = txn::decode_snapshot(&bytes).expect("a snapshot the log wrote decodes");
                for e in &mut s.producers {
                    e.last_timestamp = SEED_TIME_MS;
                }
                snapshots.push(s);
            }
        }
    }
    let log = Log::open(dir.path(), options()).expect("reopen");
    let mut records = Vec::new();
    let hw = log.high_watermark("__transaction_state", 0).expect("high watermark");
    let mut offset = log.log_start_offset("__transaction_state", 0).expect("log start");
    while offset < hw {
        let f = log.fetch("__transaction_state", 0, offset, 1 << 20).expect("fetch");
        for r in f.records() {
            let r = r.expect("record");
            let (Some(k), Some(v)) = (r.key, r.value) else { continue };
            let v = match txn::decode_txn_record(v) {
                Some(rec) => txn::encode_txn_record(&TxnRecord { updated_ms: SEED_TIME_MS, ..rec }),
                None => v.to_vec(),
            };
            records.push((k.to_vec(), v));
        }
        offset = f.next_offset();
    }
    log.close().expect("close");
    (snapshots, records)
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand when the formats change"]
fn generate_seed_corpora() {
    // batch
    let batches = seed_batches(7);
    let names = ["test-vector", "headers-nulls-tombstone", "log-append-time", "control-transactional", "offset-gaps", "overlong-varints"];
    for (b, name) in batches.iter().zip(names) {
        write_seed("batch", name, b);
    }
    let high = encode(
        MAX_OFFSET - 2,
        &[Record::new(b"1"), Record::new(b"2"), Record::new(b"3")],
        TimestampType::CreateTime,
        ProducerFields::NONE,
        false,
    );
    write_seed("batch", "max-offset", &high);

    // scan: [interval u16][mode][arg] + segment
    let segment: Vec<u8> = seed_batches(0).concat();
    let with = |interval: u16, mode: u8, arg: u8, seg: &[u8]| -> Vec<u8> {
        let mut v = interval.to_le_bytes().to_vec();
        v.extend_from_slice(&[mode, arg]);
        v.extend_from_slice(seg);
        v
    };
    let mut zeros = segment.clone();
    zeros.extend_from_slice(&[0; 100]);
    write_seed("scan", "interval-64-zero-tail", &with(64, 0, 0, &zeros));
    write_seed("scan", "interval-0-base-1000", &with(0, 0, 0, &seed_batches(1000).concat()));
    let mut garbage = segment.clone();
    garbage.extend_from_slice(b"\x01garbage after the last batch");
    write_seed("scan", "interval-1-garbage-tail", &with(1, 0, 0, &garbage));
    let mut torn = segment.clone();
    torn.truncate(segment.len() - 10);
    write_seed("scan", "torn-last-batch-fixed-crcs", &with(100, 4, 0, &torn));
    let mut bad_crc = segment.clone();
    bad_crc[80] ^= 0x20;
    write_seed("scan", "bad-crc-second-batch", &with(64, 0, 0, &bad_crc));
    write_seed("scan", "wrong-base", &with(64, 1, 3, &segment));
    write_seed("scan", "api-segment", &with(64, 0, 0, &api_segment()));
    write_seed("scan", "wide-offsets", &with(64, 0, 0, &wide_offsets()));

    // index
    let offsets = [OffsetEntry { relative_offset: 3, position: 100 }, OffsetEntry { relative_offset: 9, position: 420 }];
    write_seed("index", "offset-index", &encode_offset_index(50, 500, &offsets));
    write_seed("index", "offset-index-empty", &encode_offset_index(0, 0, &[]));
    let times = [
        TimeEntry { timestamp: 10, relative_offset: 2 },
        TimeEntry { timestamp: 10, relative_offset: 5 },
        TimeEntry { timestamp: 99, relative_offset: 6 },
    ];
    write_seed("index", "time-index", &encode_time_index(7, 99, &times));
    write_seed("index", "time-index-empty", &encode_time_index(0, i64::MIN, &[]));

    // catalog
    write_seed("catalog", "empty", &meta::encode_catalog(&Catalog { next_topic_id: 1, topics: vec![] }));
    let topic = |id, name: &str, partitions, config: &[(&str, &str)]| TopicMeta {
        id,
        name: name.into(),
        partitions,
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    let c = Catalog {
        next_topic_id: 4,
        topics: vec![
            topic(1, "__consumer_offsets", 1, &[]),
            topic(2, "orders", 4, &[("retention.ms", "1000"), ("segment.bytes", "1048576")]),
            topic(3, "é", 1, &[("message.timestamp.type", "LogAppendTime")]),
        ],
    };
    write_seed("catalog", "three-topics", &meta::encode_catalog(&c));

    // checkpoint
    write_seed("checkpoint", "empty", &meta::encode_checkpoint(&[]));
    let entries =
        vec![("orders".to_string(), 0, 5), ("orders".to_string(), 3, 18_446_744_073_709_551_615), ("__consumer_offsets".to_string(), 0, 0)];
    write_seed("checkpoint", "three-entries", &meta::encode_checkpoint(&entries));

    // partition.metadata
    write_seed("partition_metadata", "id-42", &meta::encode_partition_metadata(42));
    write_seed("partition_metadata", "id-max", &meta::encode_partition_metadata(u64::MAX));

    // offset records
    write_seed("offset_record", "key", &meta::encode_offset_key("group", "orders", 3));
    write_seed("offset_record", "key-empty-names", &meta::encode_offset_key("", "", u32::MAX));
    let v = OffsetAndMetadata { offset: 42, metadata: "checkpoint 7".into(), commit_timestamp: 1_700_000_000_000 };
    write_seed("offset_record", "value", &meta::encode_offset_value(&v));
    let v = OffsetAndMetadata { offset: u64::MAX, metadata: String::new(), commit_timestamp: -1 };
    write_seed("offset_record", "value-empty-metadata", &meta::encode_offset_value(&v));

    // varint
    let mut all = Vec::new();
    for v in [0, -1, 1, 63, -64, 64, 300, i32::MAX as i64, i32::MIN as i64, i64::MAX, i64::MIN] {
        put_varlong(&mut all, v);
    }
    write_seed("varint", "edge-values", &all);
    write_seed("varint", "overlong", &[0x80, 0x80, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);

    // open_segment: whole segment files
    let api = api_segment();
    assert!(api.len() <= 1024, "the API segment fits one 1 KiB segment");
    write_seed("open_segment", "empty", &[]);
    write_seed("open_segment", "api-segment", &api);
    let mut pre = api.clone();
    pre.extend_from_slice(&[0; 300]);
    write_seed("open_segment", "api-segment-zero-tail", &pre);
    let mut garbage = api.clone();
    garbage.extend_from_slice(b"\x00\x00\x00garbage");
    write_seed("open_segment", "api-segment-garbage-tail", &garbage);
    write_seed("open_segment", "api-segment-torn", &api[..api.len() - 7]);
    let mut shapes = seed_batches(0).concat();
    if shapes.len().is_multiple_of(2) {
        // Odd length: recovery sees the file exactly as written (CRCs not fixed up).
        shapes.push(0);
    }
    write_seed("open_segment", "batch-shapes", &shapes);
    write_seed("open_segment", "wide-offsets", &wide_offsets());
    let mut full = Vec::new();
    let value = [b'v'; 900];
    encode_batch(
        &mut full,
        0,
        &[Record::new(&value).with_key(b"big").with_timestamp(9)],
        TimestampType::CreateTime,
        0,
        ProducerFields::NONE,
        false,
    );
    write_seed("open_segment", "one-batch-near-capacity", &full);

    // producer_snapshot: made by hand, at the format's limits, and written by the log itself
    write_seed("producer_snapshot", "empty", &txn::encode_snapshot(&ProducerSnapshot::default()));
    let batch = |first_seq: i32, base_offset: u64, n: u64| BatchMeta {
        first_seq,
        last_seq: txn::seq_add(first_seq, n as u32 - 1),
        base_offset,
        last_offset: base_offset + n - 1,
    };
    let by_hand = ProducerSnapshot {
        offset: 1000,
        producers: vec![
            ProducerSnapshotEntry {
                producer_id: 0,
                epoch: 3,
                last_timestamp: SEED_TIME_MS,
                txn_first_offset: Some(990),
                batches: (0..5).map(|i| batch(i * 10, 900 + u64::from(i as u32) * 10, 10)).collect(),
            },
            ProducerSnapshotEntry { producer_id: i64::MAX, epoch: -1, last_timestamp: -1, txn_first_offset: None, batches: vec![] },
            ProducerSnapshotEntry {
                producer_id: 7,
                epoch: 0,
                last_timestamp: 0,
                txn_first_offset: None,
                batches: vec![batch(i32::MAX - 1, 10, 3)],
            },
        ],
        aborted: vec![
            AbortedTxn { producer_id: 7, first_offset: 0, last_offset: 5, last_stable_offset: 6 },
            AbortedTxn { producer_id: 0, first_offset: 6, last_offset: 999, last_stable_offset: 1000 },
        ],
    };
    write_seed("producer_snapshot", "limits", &txn::encode_snapshot(&by_hand));
    let (snapshots, records) = api_txn_state();
    assert!(snapshots.len() >= 3, "the API run wrote too few snapshots: {}", snapshots.len());
    for (i, s) in snapshots.iter().take(6).enumerate() {
        write_seed("producer_snapshot", &format!("api-{i}-offset-{}", s.offset), &txn::encode_snapshot(s));
    }

    // txn_state: keys, values, producer-id blocks and marker keys
    write_seed("txn_state", "key-pid-block", &txn::encode_txn_key(&TxnKey::PidBlock));
    write_seed("txn_state", "key-txn", &txn::encode_txn_key(&TxnKey::Txn("app-1".into())));
    write_seed("txn_state", "pid-block", &txn::encode_pid_block(1000));
    write_seed("txn_state", "marker-commit", &txn::encode_marker_key(MarkerType::Commit));
    write_seed("txn_state", "marker-abort", &txn::encode_marker_key(MarkerType::Abort));
    let prepare = TxnRecord {
        producer_id: 5,
        epoch: 2,
        status: TxnStatus::PrepareCommit,
        timeout_ms: 60_000,
        updated_ms: SEED_TIME_MS,
        partitions: vec![
            TxnPartition { topic: "orders".into(), partition: 3, end_offset: 17 },
            TxnPartition { topic: "__consumer_offsets".into(), partition: 0, end_offset: u64::MAX },
            TxnPartition { topic: "é".into(), partition: u32::MAX, end_offset: 0 },
        ],
        committed: vec![TxnPartition { topic: "orders".into(), partition: 1, end_offset: 9 }],
    };
    write_seed("txn_state", "record-prepare-commit", &txn::encode_txn_record(&prepare));
    let empty = TxnRecord { status: TxnStatus::Empty, partitions: vec![], committed: vec![], ..prepare };
    write_seed("txn_state", "record-empty", &txn::encode_txn_record(&empty));
    let mut seen = std::collections::BTreeSet::new();
    for (k, v) in records {
        let name = match (txn::decode_txn_key(&k), txn::decode_txn_record(&v)) {
            (Some(TxnKey::PidBlock), _) => "api-pid-block".to_string(),
            (_, Some(r)) => format!("api-record-{}", r.status.name()),
            _ => continue,
        };
        if seen.insert(name.clone()) {
            write_seed("txn_state", &name, &v);
        }
    }
    assert!(seen.len() >= 3, "the API run wrote too few kinds of transaction records: {seen:?}");
}
