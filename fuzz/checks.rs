//! The invariant checks behind every fuzz target, shared by the cargo-fuzz targets
//! (`fuzz/fuzz_targets/*.rs`, nightly, libFuzzer) and the stable-toolchain test
//! (`tests/fuzz_corpus.rs`), which both include this file with `#[path]` so that they cannot drift.
//!
//! Each check takes arbitrary bytes and panics (an `assert!`) when runnel breaks an invariant:
//! beyond "does not panic", decoders must agree with an independent reference decoder written
//! from docs/FORMAT.md, what decodes must re-encode to the same value (or the same bytes where
//! the encoding is canonical), and recovery must keep exactly the batches a verifying scan accepts.
//!
//! Inputs that need parameters (a scan's base offset and index interval) take them from a short
//! prefix of the input. Checksums are a wall for mutation-based fuzzing, so the batch, index,
//! catalog and producer_snapshot checks also run each input a second time with its checksum
//! recomputed ("fixed up"),
//! and scan (when a bit of its prefix says so) and open_segment (for inputs of even length) fix up
//! every batch's CRC first: mutations then reach the code behind the checksum.

#![allow(dead_code, reason = "each fuzz target uses one check; the corpus test uses them all")]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use runnel::format::batch::{self, BATCH_HEADER_LEN, BatchHeader, BatchView, FrameError, MAX_OFFSET, ProducerFields, encode_batch};
use runnel::format::index::{self, INDEX_HEADER_LEN};
use runnel::format::meta;
use runnel::format::scan::{MAX_PREALLOCATED_TAIL, scan as scan_segment};
use runnel::format::txn::{
    self, AbortedTxn, BatchMeta, MarkerType, ProducerSnapshot, ProducerSnapshotEntry, TxnKey, TxnPartition, TxnRecord, TxnStatus,
};
use runnel::format::varint::{MAX_VARLONG_LEN, get_varint, get_varlong, put_varlong, varlong_len};
use runnel::format::{Header, Record, TimestampType};
use runnel::{Acks, Error, Log, LogOptions, TopicConfig};

/// A fuzz target: its name (the cargo-fuzz target and the corpus directory `fuzz/corpus/<name>`),
/// its check and the largest input worth trying (libFuzzer's `-max_len`).
pub struct Target {
    /// Name of the target and of its corpus directory.
    pub name: &'static str,
    /// The invariant check.
    pub check: fn(&[u8]),
    /// The largest input to generate.
    pub max_len: usize,
}

/// Every target, in the order scripts/fuzz.sh runs them.
pub const TARGETS: &[Target] = &[
    Target { name: "batch", check: batch, max_len: 4096 },
    Target { name: "scan", check: scan, max_len: 8192 },
    Target { name: "index", check: index, max_len: 2048 },
    Target { name: "catalog", check: catalog, max_len: 4096 },
    Target { name: "checkpoint", check: checkpoint, max_len: 2048 },
    Target { name: "partition_metadata", check: partition_metadata, max_len: 256 },
    Target { name: "offset_record", check: offset_record, max_len: 1024 },
    Target { name: "varint", check: varint, max_len: 64 },
    Target { name: "open_segment", check: open_segment, max_len: 4096 },
    Target { name: "producer_snapshot", check: producer_snapshot, max_len: 2048 },
    Target { name: "txn_state", check: txn_state, max_len: 1024 },
];

// ---------------------------------------------------------------------------------------------
// Small independent helpers: CRC-32 and little-endian reads, so that the checks do not trust the
// code they check.

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (IEEE) of the concatenation of `parts`.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        for &b in *p {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Recomputes the CRC of the batch at the front of `b` (over its claimed length, or over all of
/// `b` when the header does not parse or the batch runs past the end).
pub fn fix_batch_crc(b: &mut [u8]) {
    if b.len() < 16 {
        return;
    }
    let end = BatchHeader::parse(b).map_or(b.len(), |h| h.total_len().min(b.len()));
    let crc = crc32(&[&b[..12], &b[16..end]]);
    put_u32(b, 12, crc);
}

/// Recomputes the CRC of every batch of a segment, walking the batches by their headers.
pub fn fix_segment_crcs(b: &mut [u8]) {
    let mut pos = 0;
    while let Ok(h) = BatchHeader::parse(&b[pos..]) {
        let end = pos + h.total_len();
        if end > b.len() {
            break;
        }
        fix_batch_crc(&mut b[pos..end]);
        pos = end;
    }
}

/// `bytes` as hex, for messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// A reference decoder for the records of a batch, written from docs/FORMAT.md ("Record") rather
// than from src/format/batch.rs. Varints follow runnel's reading (at most ten bytes; bits past 64
// are ignored); whether each one was written canonically is recorded, to know when re-encoding
// must reproduce the bytes exactly.

/// One record as the reference decoder sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefRecord {
    /// The record's attributes byte.
    pub attributes: u8,
    /// The raw timestamp delta.
    pub timestamp_delta: i64,
    /// The raw offset delta.
    pub offset_delta: u32,
    /// Key, `None` when null.
    pub key: Option<Vec<u8>>,
    /// Value, `None` when null.
    pub value: Option<Vec<u8>>,
    /// Headers: key and nullable value.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Every varint of the record was written as `put_varlong` writes it.
    pub canonical: bool,
}

struct Cursor<'a> {
    b: &'a [u8],
    canonical: bool,
}

impl<'a> Cursor<'a> {
    fn varlong(&mut self) -> Result<i64, &'static str> {
        let mut z: u64 = 0;
        for i in 0..self.b.len().min(10) {
            let byte = self.b[i];
            z |= u64::from(byte & 0x7f).checked_shl(7 * i as u32).unwrap_or(0);
            if byte < 0x80 {
                let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
                let mut canon = Vec::new();
                put_varlong(&mut canon, v);
                self.canonical &= canon[..] == self.b[..=i];
                self.b = &self.b[i + 1..];
                return Ok(v);
            }
        }
        Err("truncated or overlong varint")
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        i32::try_from(self.varlong()?).map_err(|_| "varint does not fit in 32 bits")
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.b.len() {
            return Err("field runs past its record");
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }

    fn nullable(&mut self) -> Result<Option<Vec<u8>>, &'static str> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < 0 => Err("negative length"),
            n => Ok(Some(self.bytes(n as usize)?.to_vec())),
        }
    }
}

/// Decodes the records of a batch whose header has already been checked: exactly `record_count`
/// records, offset deltas increasing and ending at `last_offset_delta`, nothing left over.
pub fn reference_records(batch: &[u8], record_count: u32, last_offset_delta: u32) -> Result<Vec<RefRecord>, &'static str> {
    let mut c = Cursor { b: batch.get(BATCH_HEADER_LEN..).ok_or("short batch")?, canonical: true };
    let mut out: Vec<RefRecord> = Vec::new();
    for _ in 0..record_count {
        c.canonical = true;
        let len = c.varint()?;
        let len = usize::try_from(len).map_err(|_| "negative record length")?;
        let body = c.bytes(len)?;
        let length_canonical = c.canonical;
        let (&attributes, rest) = body.split_first().ok_or("empty record")?;
        let mut r = Cursor { b: rest, canonical: length_canonical };
        let timestamp_delta = r.varlong()?;
        let offset_delta = u32::try_from(r.varint()?).map_err(|_| "negative offset delta")?;
        if offset_delta > last_offset_delta || out.last().is_some_and(|p| p.offset_delta >= offset_delta) {
            return Err("offset deltas not increasing");
        }
        let key = r.nullable()?;
        let value = r.nullable()?;
        let count = r.varint()?;
        if count < 0 {
            return Err("negative header count");
        }
        let mut headers = Vec::new();
        for _ in 0..count {
            let k = r.nullable()?.ok_or("null header key")?;
            let v = r.nullable()?;
            headers.push((k, v));
        }
        if !r.b.is_empty() {
            return Err("bytes left over in the record");
        }
        out.push(RefRecord { attributes, timestamp_delta, offset_delta, key, value, headers, canonical: r.canonical });
    }
    if !c.b.is_empty() {
        return Err("bytes left over after the last record");
    }
    if out.last().map(|r| r.offset_delta) != Some(last_offset_delta) {
        return Err("last offset delta does not match");
    }
    Ok(out)
}

/// A record owned, as an application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    /// Offset.
    pub offset: u64,
    /// Timestamp.
    pub timestamp: i64,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    fn of(r: &runnel::RecordView<'_>) -> Rec {
        Rec {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// batch

/// `BatchView::parse`, `verify_crc`, `validate`, `records()` and each record's headers, checked
/// against the reference decoder; a good batch re-encodes with `encode_batch` to the same records,
/// and to the same bytes when its encoding is canonical.
pub fn batch(data: &[u8]) {
    check_batch(data);
    let mut fixed = data.to_vec();
    fix_batch_crc(&mut fixed);
    if fixed != data {
        check_batch(&fixed);
    }
}

/// Checks one batch at the front of `data`; returns whether it is good (parses, CRC, validates).
pub fn check_batch(data: &[u8]) -> bool {
    let view = match BatchView::parse(data) {
        Ok(v) => v,
        Err(FrameError::Truncated) => {
            let claimed = u32_at(data, 8).map_or(0, |l| 12 + l as usize);
            assert!(data.len() < BATCH_HEADER_LEN || data.len() < claimed, "Truncated for a complete batch");
            return false;
        }
        Err(FrameError::Invalid(_)) => {
            assert!(data.len() >= BATCH_HEADER_LEN, "Invalid (not Truncated) for a partial header");
            return false;
        }
    };
    let h = *view.header();
    // The header is what the bytes say, and within the format's limits.
    assert_eq!(u64_at(data, 0), Some(h.base_offset));
    assert_eq!(u32_at(data, 8), Some(h.batch_length));
    assert_eq!(u32_at(data, 12), Some(h.crc));
    assert_eq!(data[16], batch::MAGIC);
    assert_eq!(view.as_bytes(), &data[..h.total_len()], "the view is the batch's own bytes");
    assert!(h.total_len() >= BATCH_HEADER_LEN);
    assert!(h.record_count >= 1 && u64::from(h.record_count) <= u64::from(h.last_offset_delta) + 1);
    assert!(h.last_offset() <= MAX_OFFSET && h.next_offset() == h.last_offset() + 1);
    assert_eq!(h.attributes & !batch::attributes::KNOWN, 0);
    let crc_ok = view.verify_crc();
    assert_eq!(crc_ok, crc32(&[&data[..12], &data[16..h.total_len()]]) == h.crc, "verify_crc disagrees with CRC-32");

    // Walk the records: offsets inside the batch and increasing, nothing after an error.
    let mut walked = Vec::new();
    let mut failed = false;
    let mut it = view.records();
    for r in &mut it {
        assert!(!failed, "the record iterator yielded after an error");
        match r {
            Ok(r) => {
                assert!(r.offset >= h.base_offset && r.offset <= h.last_offset(), "record offset {} outside its batch", r.offset);
                assert!(walked.last().is_none_or(|p: &Rec| p.offset < r.offset), "record offsets not increasing");
                if h.is_log_append_time() {
                    assert_eq!(r.timestamp, h.max_timestamp, "LogAppendTime record without the batch's time");
                }
                let headers: Vec<Header<'_>> = r.headers.iter().collect();
                assert_eq!(headers.len(), r.headers.len(), "header iterator and count disagree");
                assert_eq!(r.headers.is_empty(), headers.is_empty());
                walked.push(Rec::of(&r));
            }
            Err(_) => failed = true,
        }
    }
    assert!(walked.len() + usize::from(failed) <= h.record_count as usize, "more records than the header's count");
    assert!(it.next().is_none(), "the record iterator resumed after its end");
    let valid = view.validate();
    if valid.is_ok() {
        assert!(!failed && walked.len() == h.record_count as usize, "validate() accepted a batch whose records fail");
        assert_eq!(walked.last().map(|r| r.offset), Some(h.last_offset()), "last record is not at the last offset");
    }

    // The reference decoder must agree, record by record.
    let reference = reference_records(view.as_bytes(), h.record_count, h.last_offset_delta);
    match (&valid, &reference) {
        (Ok(()), Ok(refs)) => {
            let expected: Vec<Rec> = refs
                .iter()
                .map(|r| Rec {
                    offset: h.base_offset + u64::from(r.offset_delta),
                    timestamp: if h.is_log_append_time() { h.max_timestamp } else { h.base_timestamp.wrapping_add(r.timestamp_delta) },
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r.headers.clone(),
                })
                .collect();
            assert_eq!(walked, expected, "runnel and the reference decoder read different records");
        }
        (Err(e), Ok(_)) => panic!("validate() rejects ({e}) a batch the format accepts"),
        (Ok(()), Err(e)) => panic!("validate() accepts a batch the format rejects ({e})"),
        (Err(_), Err(_)) => {}
    }
    if let (Ok(()), Ok(refs), true) = (valid, reference, crc_ok) {
        check_reencode(&view, &walked, &refs);
        return true;
    }
    false
}

/// Re-encodes a good batch with `encode_batch`: the result is a good batch with the same records
/// (offsets renumbered without gaps), and the same bytes when nothing in the original is
/// non-canonical (varints, record attributes, offset gaps, timestamps `encode_batch` derives).
fn check_reencode(view: &BatchView<'_>, records: &[Rec], refs: &[RefRecord]) {
    let h = view.header();
    let headers: Vec<Vec<Header<'_>>> =
        records.iter().map(|r| r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect()).collect();
    let input: Vec<Record<'_>> = records
        .iter()
        .zip(&headers)
        .map(|(r, hs)| Record { key: r.key.as_deref(), value: r.value.as_deref(), headers: hs, timestamp: Some(r.timestamp) })
        .collect();
    let lat = h.is_log_append_time();
    let producer = ProducerFields {
        producer_id: h.producer_id,
        producer_epoch: h.producer_epoch,
        base_sequence: h.base_sequence,
        transactional: h.is_transactional(),
    };
    let ts_type = if lat { TimestampType::LogAppendTime } else { TimestampType::CreateTime };
    let mut out = Vec::new();
    let returned = encode_batch(&mut out, h.base_offset, &input, ts_type, h.max_timestamp, producer, h.is_control());
    let again = BatchView::parse(&out).expect("a re-encoded batch parses");
    assert_eq!(*again.header(), returned, "encode_batch returned a header other than the one it wrote");
    assert!(again.verify_crc(), "a re-encoded batch fails its CRC");
    again.validate().expect("a re-encoded batch validates");
    let rh = again.header();
    assert_eq!(
        (rh.base_offset, rh.attributes, rh.producer_id, rh.producer_epoch, rh.base_sequence, rh.record_count),
        (h.base_offset, h.attributes, h.producer_id, h.producer_epoch, h.base_sequence, h.record_count),
        "re-encoding changed header fields"
    );
    let back: Vec<Rec> = again.records().map(|r| Rec::of(&r.expect("a re-encoded record decodes"))).collect();
    let renumbered: Vec<Rec> = records.iter().enumerate().map(|(i, r)| Rec { offset: h.base_offset + i as u64, ..r.clone() }).collect();
    assert_eq!(back, renumbered, "re-encoding changed the records");

    let contiguous = refs.iter().enumerate().all(|(i, r)| r.offset_delta as usize == i);
    let plain = refs.iter().all(|r| r.canonical && r.attributes == 0);
    let timestamps = if lat {
        h.base_timestamp == h.max_timestamp && refs.iter().all(|r| r.timestamp_delta == 0)
    } else {
        refs[0].timestamp_delta == 0 && records.iter().map(|r| r.timestamp).max() == Some(h.max_timestamp)
    };
    if contiguous && plain && timestamps {
        assert!(out == view.as_bytes(), "a canonical batch re-encodes differently:\n  was {}\n  now {}", hex(view.as_bytes()), hex(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// scan

/// The parameters of a scan input: `[interval u16][mode u8][arg u8]` then the segment bytes.
/// mode bit 0: base offset = `arg` (else the first batch's own base offset, so that valid
/// segments scan); bit 1: base offset = MAX_OFFSET - `arg`; bit 2: fix every batch's CRC first.
pub fn scan_params(data: &[u8]) -> (u64, u64, bool, &[u8]) {
    let (p, bytes) = data.split_at(data.len().min(4));
    let interval = u64::from(u16::from_le_bytes([p.first().copied().unwrap_or(0), p.get(1).copied().unwrap_or(0)]));
    let mode = p.get(2).copied().unwrap_or(0);
    let arg = u64::from(p.get(3).copied().unwrap_or(0));
    let base = if mode & 2 != 0 {
        MAX_OFFSET - arg
    } else if mode & 1 != 0 {
        arg
    } else {
        u64_at(bytes, 0).unwrap_or(0)
    };
    (base, interval, mode & 4 != 0, bytes)
}

/// `format::scan::scan` with and without verification: the valid prefix is a chain of batches
/// (good ones when verifying) that the scan's figures and index entries describe exactly, the scan
/// stops only at a bad batch, and it stops without a reason only before zeros.
pub fn scan(data: &[u8]) {
    let (base, interval, fix, bytes) = scan_params(data);
    let mut owned;
    let bytes = if fix {
        owned = bytes.to_vec();
        fix_segment_crcs(&mut owned);
        &owned[..]
    } else {
        bytes
    };
    let loose = check_scan(bytes, base, interval, false);
    let strict = check_scan(bytes, base, interval, true);
    assert!(strict <= loose, "verification accepted more ({strict}) than the header walk ({loose})");
}

/// A segment holds batches only within 2^32 offsets and bytes of its start, so that index entries
/// (32-bit relative offsets and positions, as in Kafka) can address them.
fn within_32_bits(h: &BatchHeader, pos: usize, base: u64) -> bool {
    h.last_offset() - base <= u64::from(u32::MAX) && (pos + h.total_len()) as u64 <= u64::from(u32::MAX)
}

/// Checks one scan; returns its `valid_end`.
pub fn check_scan(bytes: &[u8], base: u64, interval: u64, verify: bool) -> u64 {
    let s = scan_segment(bytes, base, interval, verify);
    let end = usize::try_from(s.valid_end).expect("valid_end fits");
    assert!(end <= bytes.len(), "valid_end {end} past the data ({})", bytes.len());
    let tail = &bytes[end..];
    let tail_zero = tail.len() as u64 <= MAX_PREALLOCATED_TAIL && tail.iter().all(|&b| b == 0);
    assert_eq!(s.zero_tail, tail_zero, "zero_tail is wrong");
    if s.stop.is_none() {
        assert!(tail_zero, "stopped without a reason before non-zero bytes");
    }
    // Walk [0, valid_end) independently and rebuild what the scan should have found.
    let (mut pos, mut next, mut max_ts, mut since) = (0usize, base, i64::MIN, 0u64);
    let mut expected_index: Vec<(u64, usize, i64)> = Vec::new();
    while pos < end {
        let v = BatchView::parse(&bytes[pos..end]).unwrap_or_else(|e| panic!("batch at {pos} inside valid_end {end} does not parse: {e}"));
        let h = *v.header();
        assert_eq!(h.base_offset, next, "batch at {pos} inside the valid range is not contiguous");
        assert!(within_32_bits(&h, pos, base), "batch at {pos} lies beyond 2^32 offsets or bytes of the segment's start");
        if verify {
            assert!(v.verify_crc(), "batch at {pos} inside the verified range fails its CRC");
            assert!(v.validate().is_ok(), "batch at {pos} inside the verified range does not validate");
        }
        if since >= interval && pos > 0 {
            expected_index.push((h.base_offset - base, pos, max_ts));
            since = 0;
        }
        since += h.total_len() as u64;
        max_ts = max_ts.max(h.max_timestamp);
        next = h.next_offset();
        pos += h.total_len();
    }
    assert_eq!(pos, end, "valid_end is not a batch boundary");
    assert_eq!(s.next_offset, next, "next_offset is wrong");
    assert_eq!(s.max_timestamp, max_ts, "max_timestamp is wrong");
    // The scan stops only where the next batch is bad.
    if end < bytes.len() {
        let rest = &bytes[end..];
        let zeros = rest.len() >= 12 && rest[..12].iter().all(|&b| b == 0);
        let good = !zeros
            && BatchView::parse(rest).is_ok_and(|v| {
                v.header().base_offset == next
                    && within_32_bits(v.header(), end, base)
                    && (!verify || (v.verify_crc() && v.validate().is_ok()))
            });
        assert!(!good, "scan stopped at {end} before a good batch");
    }
    // Index entries: strictly increasing, inside the valid range, and exactly what an append makes.
    assert_eq!(s.offsets.len(), s.times.len(), "offset and time index differ in length");
    for w in s.offsets.windows(2) {
        assert!(w[0].relative_offset < w[1].relative_offset && w[0].position < w[1].position, "offset index not increasing: {w:?}");
    }
    for w in s.times.windows(2) {
        assert!(w[0].relative_offset < w[1].relative_offset && w[0].timestamp <= w[1].timestamp, "time index not increasing: {w:?}");
    }
    assert_eq!(s.offsets.len(), expected_index.len(), "wrong number of index entries");
    for ((o, t), &(rel, p, ts)) in s.offsets.iter().zip(&s.times).zip(&expected_index) {
        assert!(o.position > 0 && (o.position as usize) < end, "index position {} outside (0, {end})", o.position);
        assert_eq!((u64::from(o.relative_offset), o.position as usize), (rel, p), "wrong offset index entry");
        assert_eq!((u64::from(t.relative_offset), t.timestamp), (rel, ts), "wrong time index entry");
    }
    s.valid_end
}

// ---------------------------------------------------------------------------------------------
// index

/// `decode_offset_index` and `decode_time_index` with the base offset and log size the input's
/// header names: what decodes re-encodes to the same bytes and satisfies the documented order.
pub fn index(data: &[u8]) {
    check_index(data);
    if data.len() >= INDEX_HEADER_LEN {
        let mut fixed = data.to_vec();
        let crc = crc32(&[&fixed[..24], &fixed[INDEX_HEADER_LEN..]]);
        put_u32(&mut fixed, 24, crc);
        if fixed != data {
            check_index(&fixed);
        }
    }
}

fn check_index(data: &[u8]) {
    let base = u64_at(data, 8).unwrap_or(0);
    let extra = u64_at(data, 16).unwrap_or(0);
    if let Ok(entries) = index::decode_offset_index(data, base, extra) {
        assert_eq!(data.len(), INDEX_HEADER_LEN + 8 * entries.len());
        for (i, e) in entries.iter().enumerate() {
            assert!(e.position > 0 && u64::from(e.position) < extra, "entry outside the log");
            if i > 0 {
                let p = entries[i - 1];
                assert!(p.relative_offset < e.relative_offset && p.position < e.position, "entries not increasing");
            }
        }
        assert!(index::encode_offset_index(base, extra, &entries) == data, "offset index re-encodes differently");
        assert!(index::decode_offset_index(data, base.wrapping_add(1), extra).is_err(), "accepted for another segment");
        assert!(index::decode_offset_index(data, base, extra.wrapping_add(1)).is_err(), "accepted for another log size");
    }
    if let Ok((max, entries)) = index::decode_time_index(data, base) {
        assert_eq!(data.len(), INDEX_HEADER_LEN + 12 * entries.len());
        assert_eq!(max, extra as i64);
        for w in entries.windows(2) {
            assert!(w[0].relative_offset < w[1].relative_offset && w[0].timestamp <= w[1].timestamp, "entries not increasing");
        }
        assert!(index::encode_time_index(base, max, &entries) == data, "time index re-encodes differently");
        assert!(index::decode_time_index(data, base.wrapping_add(1)).is_err(), "accepted for another segment");
    }
}

// ---------------------------------------------------------------------------------------------
// metadata files

/// `decode_catalog`: a catalog that decodes re-encodes to the same bytes (the format has no
/// slack) and to the same catalog; topic ids are below the next id.
pub fn catalog(data: &[u8]) {
    check_catalog(data);
    if data.len() >= 20 {
        let mut fixed = data.to_vec();
        put_u32(&mut fixed, 16, (data.len() - 20) as u32);
        let crc = crc32(&[&fixed[20..]]);
        put_u32(&mut fixed, 12, crc);
        if fixed != data {
            check_catalog(&fixed);
        }
    }
}

fn check_catalog(data: &[u8]) {
    if let Ok(c) = meta::decode_catalog(data) {
        assert!(c.topics.iter().all(|t| t.id < c.next_topic_id), "a topic id not below next_topic_id");
        let again = meta::encode_catalog(&c);
        assert!(again == data, "catalog re-encodes differently");
        assert_eq!(meta::decode_catalog(&again), Ok(c));
    }
}

/// `decode_checkpoint`: decode(encode(decode(x))) == decode(x).
pub fn checkpoint(data: &[u8]) {
    if let Ok(entries) = meta::decode_checkpoint(data) {
        for (t, _, _) in &entries {
            assert!(!t.contains(' ') && !t.contains('\n'), "a topic field with a separator: {t:?}");
        }
        let again = meta::encode_checkpoint(&entries);
        assert_eq!(meta::decode_checkpoint(&again), Ok(entries), "checkpoint does not round trip");
    }
}

/// `decode_partition_metadata`: decode(encode(decode(x))) == decode(x).
pub fn partition_metadata(data: &[u8]) {
    if let Some(id) = meta::decode_partition_metadata(data) {
        assert_eq!(meta::decode_partition_metadata(&meta::encode_partition_metadata(id)), Some(id));
    }
}

/// `decode_offset_key` and `decode_offset_value`: what decodes re-encodes to the same bytes.
pub fn offset_record(data: &[u8]) {
    if let Some((group, topic, partition)) = meta::decode_offset_key(data) {
        let again = meta::encode_offset_key(&group, &topic, partition);
        assert!(again == data, "offset key re-encodes differently");
        assert_eq!(meta::decode_offset_key(&again), Some((group, topic, partition)));
    }
    if let Some(v) = meta::decode_offset_value(data) {
        let again = meta::encode_offset_value(&v);
        assert!(again == data, "offset value re-encodes differently");
        assert_eq!(meta::decode_offset_value(&again), Some(v));
    }
}

// ---------------------------------------------------------------------------------------------
// producer_snapshot

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// A reference decoder for `<offset>.snapshot` files, written from docs/FORMAT.md
/// ("Producer-state snapshots") rather than from src/format/txn.rs. Besides what FORMAT.md states
/// (magic, version 1, zero reserved fields, the CRC, producer ids >= 0, at most five batches,
/// aborted transactions in increasing `last_offset` order, every batch offset, open-transaction
/// offset and abort-marker offset below the snapshot's own offset, nothing after the last entry),
/// it applies the consistency rules runnel's decoder also enforces and FORMAT.md leaves implicit:
/// a batch's sequences are >= 0 and its `base_offset <= last_offset`; an aborted transaction's
/// `first_offset <= last_offset`. `last_stable_offset` is not bounded (it may be the marker's
/// offset + 1, which can be the snapshot's own offset).
pub fn reference_snapshot(b: &[u8]) -> Result<ProducerSnapshot, &'static str> {
    const NONE: u64 = u64::MAX;
    if b.len() < 32 {
        return Err("shorter than the header");
    }
    if &b[..4] != b"RNPS" {
        return Err("magic");
    }
    if u16_at(b, 4) != Some(1) || u16_at(b, 6) != Some(0) || u32_at(b, 28) != Some(0) {
        return Err("version or reserved header field");
    }
    let offset = u64_at(b, 8).ok_or("header")?;
    let (np, na) = (u32_at(b, 16).ok_or("header")?, u32_at(b, 20).ok_or("header")?);
    if u32_at(b, 24) != Some(crc32(&[&b[..24], &b[28..]])) {
        return Err("crc");
    }
    let mut pos = 32;
    let mut producers = Vec::new();
    for _ in 0..np {
        let e = b.get(pos..pos + 32).ok_or("producer runs past the end")?;
        let producer_id = u64_at(e, 0).ok_or("producer")? as i64;
        let epoch = u16_at(e, 8).ok_or("producer")? as i16;
        let n = usize::from(e[10]);
        if producer_id < 0 || n > 5 || e[11..16] != [0; 5] {
            return Err("producer id, batch count or reserved bytes");
        }
        let last_timestamp = u64_at(e, 16).ok_or("producer")? as i64;
        let first = u64_at(e, 24).ok_or("producer")?;
        if first != NONE && first >= offset {
            return Err("open transaction at or past the snapshot");
        }
        pos += 32;
        let mut batches = Vec::new();
        for _ in 0..n {
            let m = b.get(pos..pos + 24).ok_or("batch runs past the end")?;
            let bm = BatchMeta {
                first_seq: u32_at(m, 0).ok_or("batch")? as i32,
                last_seq: u32_at(m, 4).ok_or("batch")? as i32,
                base_offset: u64_at(m, 8).ok_or("batch")?,
                last_offset: u64_at(m, 16).ok_or("batch")?,
            };
            if bm.first_seq < 0 || bm.last_seq < 0 || bm.base_offset > bm.last_offset || bm.last_offset >= offset {
                return Err("impossible batch");
            }
            batches.push(bm);
            pos += 24;
        }
        producers.push(ProducerSnapshotEntry {
            producer_id,
            epoch,
            last_timestamp,
            txn_first_offset: (first != NONE).then_some(first),
            batches,
        });
    }
    let mut aborted: Vec<AbortedTxn> = Vec::new();
    for _ in 0..na {
        let e = b.get(pos..pos + 32).ok_or("aborted transaction runs past the end")?;
        let a = AbortedTxn {
            producer_id: u64_at(e, 0).ok_or("aborted")? as i64,
            first_offset: u64_at(e, 8).ok_or("aborted")?,
            last_offset: u64_at(e, 16).ok_or("aborted")?,
            last_stable_offset: u64_at(e, 24).ok_or("aborted")?,
        };
        if a.first_offset > a.last_offset || a.last_offset >= offset || aborted.last().is_some_and(|p| p.last_offset >= a.last_offset) {
            return Err("aborted transaction out of place");
        }
        aborted.push(a);
        pos += 32;
    }
    if pos != b.len() {
        return Err("bytes after the last entry");
    }
    Ok(ProducerSnapshot { offset, producers, aborted })
}

/// `decode_snapshot` against the reference decoder; what decodes re-encodes with
/// `encode_snapshot` to the same bytes (the encoding is canonical) and decodes again to the same
/// snapshot. Inputs are also tried with their CRC recomputed, so mutations reach the body.
pub fn producer_snapshot(data: &[u8]) {
    check_snapshot(data);
    if data.len() >= 28 {
        let mut fixed = data.to_vec();
        let crc = crc32(&[&fixed[..24], &fixed[28..]]);
        put_u32(&mut fixed, 24, crc);
        if fixed != data {
            check_snapshot(&fixed);
        }
    }
}

fn check_snapshot(data: &[u8]) {
    let got = txn::decode_snapshot(data);
    match (&got, reference_snapshot(data)) {
        (Ok(s), Ok(r)) => assert_eq!(*s, r, "decode_snapshot and the reference read different snapshots"),
        (Ok(_), Err(e)) => panic!("decode_snapshot accepts a snapshot the format rejects ({e})"),
        (Err(e), Ok(_)) => panic!("decode_snapshot rejects ({e}) a snapshot the format accepts"),
        (Err(e), Err(_)) => assert!(!e.is_empty(), "an error without a reason"),
    }
    if let Ok(s) = got {
        let again = txn::encode_snapshot(&s);
        assert!(again == data, "a snapshot re-encodes differently: {} vs {}", hex(&again), hex(data));
        assert_eq!(txn::decode_snapshot(&again), Ok(s), "a snapshot does not round trip");
    }
}

// ---------------------------------------------------------------------------------------------
// txn_state: the records of __transaction_state and the keys of transaction markers

/// A `__transaction_state` key per docs/FORMAT.md: `0x00` alone, or `0x01` and a UTF-8 id.
/// FORMAT.md says an id has 1 to 1024 bytes; runnel's decoder leaves that rule to the coordinator
/// (which enforces it when a producer is created), so `(lenient)` reports an id outside it.
pub fn reference_txn_key(b: &[u8]) -> (Option<TxnKey>, bool) {
    match b.split_first() {
        Some((0, [])) => (Some(TxnKey::PidBlock), false),
        Some((1, id)) => match std::str::from_utf8(id) {
            Ok(id) if (1..=1024).contains(&id.len()) => (Some(TxnKey::Txn(id.to_string())), false),
            Ok(_) => (None, true),
            Err(_) => (None, false),
        },
        _ => (None, false),
    }
}

/// The producer-id block value per docs/FORMAT.md: version u16 = 0, block end u64, nothing more.
pub fn reference_pid_block(b: &[u8]) -> Option<u64> {
    (b.len() == 10 && u16_at(b, 0) == Some(0)).then(|| u64_at(b, 2)).flatten()
}

/// A transactional id's record per docs/FORMAT.md, plus a rule runnel enforces and FORMAT.md does
/// not state: the producer id and epoch are >= 0.
pub fn reference_txn_record(b: &[u8]) -> Option<TxnRecord> {
    if u16_at(b, 0)? != 0 || *b.get(13)? != 0 {
        return None;
    }
    let producer_id = u64_at(b, 2)? as i64;
    let epoch = u16_at(b, 10)? as i16;
    let status = match b[12] {
        0 => TxnStatus::Empty,
        1 => TxnStatus::Ongoing,
        2 => TxnStatus::PrepareCommit,
        3 => TxnStatus::PrepareAbort,
        4 => TxnStatus::CompleteCommit,
        5 => TxnStatus::CompleteAbort,
        _ => return None,
    };
    if producer_id < 0 || epoch < 0 {
        return None;
    }
    let timeout_ms = u32_at(b, 14)?;
    let updated_ms = u64_at(b, 18)? as i64;
    // Two lists of the same entries: the partitions being decided, then earlier commits' partitions.
    let mut pos = 26;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = u32_at(b, pos)?;
        pos += 4;
        for _ in 0..n {
            let len = usize::from(u16_at(b, pos)?);
            let topic = std::str::from_utf8(b.get(pos + 2..pos + 2 + len)?).ok()?.to_string();
            pos += 2 + len;
            list.push(TxnPartition { topic, partition: u32_at(b, pos)?, end_offset: u64_at(b, pos + 4)? });
            pos += 12;
        }
    }
    let [partitions, committed] = lists;
    (pos == b.len()).then_some(TxnRecord { producer_id, epoch, status, timeout_ms, updated_ms, partitions, committed })
}

/// A marker record's key per docs/FORMAT.md: version u16 = 0, type u16 (0 abort, 1 commit).
pub fn reference_marker_key(b: &[u8]) -> Option<MarkerType> {
    if b.len() != 4 || u16_at(b, 0)? != 0 {
        return None;
    }
    match u16_at(b, 2)? {
        0 => Some(MarkerType::Abort),
        1 => Some(MarkerType::Commit),
        _ => None,
    }
}

/// `decode_txn_key`, `decode_pid_block`, `decode_txn_record` and `decode_marker_key` on the same
/// bytes, each against a reference decoder written from docs/FORMAT.md; whatever decodes
/// re-encodes to the same bytes and decodes again to the same value.
pub fn txn_state(data: &[u8]) {
    let key = txn::decode_txn_key(data);
    match reference_txn_key(data) {
        (None, true) => assert!(matches!(&key, Some(TxnKey::Txn(id)) if id.len() == data.len() - 1), "an id of any length is a key"),
        (reference, _) => assert_eq!(key, reference, "decode_txn_key disagrees with the reference"),
    }
    if let Some(k) = key {
        let again = txn::encode_txn_key(&k);
        assert!(again == data, "a transaction-state key re-encodes differently");
        assert_eq!(txn::decode_txn_key(&again), Some(k));
    }

    let block = txn::decode_pid_block(data);
    assert_eq!(block, reference_pid_block(data), "decode_pid_block disagrees with the reference");
    if let Some(end) = block {
        assert!(txn::encode_pid_block(end) == data, "a producer-id block re-encodes differently");
    }

    let record = txn::decode_txn_record(data);
    assert_eq!(record, reference_txn_record(data), "decode_txn_record disagrees with the reference");
    if let Some(r) = record {
        let again = txn::encode_txn_record(&r);
        assert!(again == data, "a transaction record re-encodes differently: {} vs {}", hex(&again), hex(data));
        assert_eq!(txn::decode_txn_record(&again), Some(r), "a transaction record does not round trip");
    }

    let marker = txn::decode_marker_key(data);
    assert_eq!(marker, reference_marker_key(data), "decode_marker_key disagrees with the reference");
    if let Some(m) = marker {
        assert!(txn::encode_marker_key(m) == data, "a marker key re-encodes differently");
    }
}

// ---------------------------------------------------------------------------------------------
// varint

/// `get_varlong` / `get_varint` on every suffix of the input, against a reference decoding, and
/// round trips through `put_varlong`.
pub fn varint(data: &[u8]) {
    for start in 0..data.len().min(16) {
        check_varint(&data[start..]);
    }
    check_varint(&[]);
}

fn check_varint(b: &[u8]) {
    // Reference: up to ten 7-bit groups, little-endian, the last without the high bit.
    let end = b.iter().take(MAX_VARLONG_LEN).position(|&x| x < 0x80);
    let got = get_varlong(b);
    let Some(n) = end.map(|i| i + 1) else {
        assert_eq!(got, None, "decoded a varint with no final byte in ten");
        assert_eq!(get_varint(b), None);
        return;
    };
    let wide: u128 = b[..n].iter().enumerate().map(|(i, &x)| u128::from(x & 0x7f) << (7 * i)).sum();
    let z = wide as u64;
    let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
    assert_eq!(got, Some((v, n)), "get_varlong disagrees with the reference");
    let mut out = Vec::new();
    put_varlong(&mut out, v);
    assert_eq!(out.len(), varlong_len(v), "varlong_len disagrees with put_varlong");
    assert!(out.len() <= n, "the canonical encoding is longer than one that decoded");
    assert_eq!(get_varlong(&out), Some((v, out.len())), "put_varlong does not round trip");
    let overflow = wide >> 64 != 0;
    let padded = n > 1 && b[n - 1] == 0;
    if !overflow && !padded {
        assert_eq!(out, &b[..n], "a canonical encoding re-encodes differently");
    }
    assert_eq!(get_varint(b), i32::try_from(v).ok().map(|v| (v, n)), "get_varint disagrees with get_varlong");
}

// ---------------------------------------------------------------------------------------------
// open_segment: recovery end to end on arbitrary file contents

/// Topic of the segment check.
pub const TOPIC: &str = "t";
/// Index interval of the segment check's topic (small, so that index entries occur).
pub const SEGMENT_INDEX_INTERVAL: u64 = 64;

/// The topic config of the segment check: 1 KiB segments and batches, an index entry every 64 bytes.
pub fn segment_config() -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [("segment.bytes", "1024"), ("max.message.bytes", "1024"), ("index.interval.bytes", "64")] {
        c.set(k, v).expect("valid config");
    }
    c
}

fn options() -> LogOptions {
    LogOptions::default().background_maintenance(false)
}

/// Files of a data directory made by the real API (one topic, closed cleanly), kept in memory.
fn template() -> &'static [(PathBuf, Vec<u8>)] {
    static TEMPLATE: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_dir();
        let log = Log::open(dir.path(), options()).expect("open a new log");
        log.create_topic(TOPIC, 1, segment_config()).expect("create topic");
        log.close().expect("close");
        let mut files = Vec::new();
        walk(dir.path(), dir.path(), &mut files);
        files
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for e in fs::read_dir(dir).expect("read directory") {
        let e = e.expect("directory entry");
        let path = e.path();
        if e.file_type().expect("file type").is_dir() {
            walk(root, &path, out);
        } else {
            out.push((path.strip_prefix(root).expect("under root").to_path_buf(), fs::read(&path).expect("read file")));
        }
    }
}

/// A temporary directory, on tmpfs when there is one (recovery fsyncs a lot).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("runnel-fuzz-").tempdir_in(shm);
    match builder {
        Ok(d) => d,
        Err(_) => tempfile::Builder::new().prefix("runnel-fuzz-").tempdir().expect("tempdir"),
    }
}

/// What a verifying scan says recovery must keep of `file` (a segment with base offset 0): the
/// valid length, the next offset and the records (control batches skipped), and batch headers.
struct Expected {
    valid_end: usize,
    next_offset: u64,
    zero_tail: bool,
    records: Vec<Rec>,
    batches: Vec<BatchHeader>,
}

fn expected_recovery(file: &[u8]) -> Expected {
    let s = scan_segment(file, 0, SEGMENT_INDEX_INTERVAL, true);
    let valid_end = s.valid_end as usize;
    let (mut records, mut batches, mut pos) = (Vec::new(), Vec::new(), 0);
    while pos < valid_end {
        let v = BatchView::parse(&file[pos..]).expect("scanned batch parses");
        batches.push(*v.header());
        if !v.header().is_control() {
            records.extend(v.records().map(|r| Rec::of(&r.expect("scanned record decodes"))));
        }
        pos += v.header().total_len();
    }
    Expected { valid_end, next_offset: s.next_offset, zero_tail: s.zero_tail, records, batches }
}

/// Reads the partition from its log start to its high watermark, twice (large fetches, then one
/// batch per fetch), checking every fetch advances and every record decodes.
fn read_partition(log: &Log) -> Vec<Rec> {
    let start = log.log_start_offset(TOPIC, 0).expect("log start");
    let hw = log.high_watermark(TOPIC, 0).expect("high watermark");
    let mut passes = Vec::new();
    for max_bytes in [1 << 20, 1] {
        let (mut offset, mut out) = (start, Vec::<Rec>::new());
        while offset < hw {
            let f = log.fetch(TOPIC, 0, offset, max_bytes).unwrap_or_else(|e| panic!("fetch at {offset} below hw {hw}: {e}"));
            for r in f.records() {
                let r = r.unwrap_or_else(|e| panic!("a record fetched at {offset} does not decode: {e}"));
                assert!(r.offset >= offset && r.offset < hw, "record offset {} outside [{offset}, {hw})", r.offset);
                assert!(out.last().is_none_or(|p| p.offset < r.offset), "fetched offsets not increasing");
                out.push(Rec::of(&r));
            }
            assert!(f.next_offset() > offset, "fetch at {offset} (hw {hw}) did not advance");
            offset = f.next_offset();
        }
        passes.push(out);
    }
    let second = passes.pop().expect("two passes");
    let first = passes.pop().expect("two passes");
    assert_eq!(first, second, "reading in one fetch and batch by batch differ");
    first
}

/// What `offset_for_timestamp` must answer: the first record, in offset order, of a non-control
/// batch whose header's max_timestamp reaches `ts`, with a timestamp at or after `ts`.
fn expected_offset_for_timestamp(file: &[u8], e: &Expected, hw: u64, ts: i64) -> Option<(u64, i64)> {
    let mut pos = 0;
    for h in &e.batches {
        let at = pos;
        pos += h.total_len();
        if h.base_offset >= hw {
            return None;
        }
        if h.is_control() || h.max_timestamp < ts {
            continue;
        }
        let v = BatchView::parse(&file[at..]).expect("scanned batch parses");
        for r in v.records() {
            let r = r.expect("scanned record decodes");
            if r.timestamp >= ts {
                return Some((r.offset, r.timestamp));
            }
        }
    }
    None
}

/// End-to-end recovery of a segment holding `data`: in a data directory made by the real API,
/// the fuzz input replaces the topic's only `.log` (its indexes and the clean-shutdown marker
/// removed, so recovery verifies it). The open must succeed and keep exactly the batches a
/// verifying scan accepts, quarantine a damaged tail byte for byte, serve every kept record
/// through fetch and offset_for_timestamp, take a new append and survive a clean reopen.
/// Inputs of even length have their batch CRCs fixed first, so that mutations get past the CRC.
pub fn open_segment(data: &[u8]) {
    let mut file = data.to_vec();
    if data.len().is_multiple_of(2) {
        fix_segment_crcs(&mut file);
    }
    let dir = scratch_dir();
    for (rel, bytes) in template() {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
        fs::write(&path, bytes).expect("write template file");
    }
    let pdir = dir.path().join(format!("{TOPIC}-0"));
    let seg = pdir.join(format!("{:020}.log", 0));
    for name in [format!("{:020}.index", 0), format!("{:020}.timeindex", 0)] {
        let _ = fs::remove_file(pdir.join(name));
    }
    let _ = fs::remove_file(dir.path().join(runnel::CLEAN_SHUTDOWN_FILE));
    fs::write(&seg, &file).expect("write the segment");

    let e = expected_recovery(&file);
    let log = Log::open(dir.path(), options()).unwrap_or_else(|err| panic!("open failed on a damaged segment: {err}"));
    let hw = log.high_watermark(TOPIC, 0).expect("high watermark");
    assert_eq!(hw, e.next_offset, "recovery kept a different log end than a verifying scan");
    assert_eq!(log.log_end_offset(TOPIC, 0).expect("leo"), hw);
    assert_eq!(log.log_start_offset(TOPIC, 0).expect("log start"), 0);
    let on_disk = fs::read(&seg).expect("read the recovered segment");
    assert!(on_disk == file[..e.valid_end], "the recovered segment is not the valid prefix ({} of {} bytes)", on_disk.len(), e.valid_end);
    let cut = &file[e.valid_end..];
    let qfile = dir.path().join(runnel::QUARANTINE_DIR).join(format!("{TOPIC}-0")).join(format!("{:020}-{}.bin", 0, e.valid_end));
    let report = log.recovery_report().into_iter().find(|(t, p, _)| t == TOPIC && *p == 0).map(|(_, _, r)| r).unwrap_or_default();
    if e.zero_tail {
        assert!(!qfile.exists(), "zeros after the valid data were quarantined");
        assert_eq!(report.bytes_quarantined, 0);
    } else {
        assert!(fs::read(&qfile).ok().as_deref() == Some(cut), "the quarantined tail differs from the cut bytes");
        assert_eq!(report.bytes_quarantined, cut.len() as u64);
    }
    let records = read_partition(&log);
    assert_eq!(records, e.records, "fetched records differ from the segment's");

    // offset_for_timestamp against the reference, for a few timestamps.
    let mut stamps: Vec<i64> = records.iter().map(|r| r.timestamp).take(4).collect();
    stamps.extend([i64::MIN, i64::MAX]);
    stamps.extend(e.batches.iter().take(2).map(|h| h.max_timestamp));
    for ts in stamps {
        let got = log.offset_for_timestamp(TOPIC, 0, ts).unwrap_or_else(|err| panic!("offset_for_timestamp({ts}): {err}"));
        assert_eq!(got, expected_offset_for_timestamp(&file, &e, hw, ts), "offset_for_timestamp({ts})");
    }

    // A new append lands at the recovered end, and both survive a clean reopen.
    let new = Record::new(b"after recovery").with_key(b"k").with_timestamp(1_700_000_000_000);
    let mut all = records;
    match log.append(TOPIC, Some(0), &[new], Acks::All) {
        Ok(r) => {
            assert_eq!(r.base_offset, hw, "the append did not land at the recovered end");
            all.push(Rec {
                offset: hw,
                timestamp: 1_700_000_000_000,
                key: Some(b"k".to_vec()),
                value: Some(b"after recovery".to_vec()),
                headers: vec![],
            });
        }
        Err(Error::InvalidArgument(_)) if hw >= MAX_OFFSET => {}
        Err(err) => panic!("append after recovery failed: {err}"),
    }
    assert_eq!(read_partition(&log), all, "the log after the append");
    log.close().expect("close after recovery");
    let log = Log::open(dir.path(), options()).unwrap_or_else(|err| panic!("reopen after recovery failed: {err}"));
    assert!(log.recovery_report().is_empty(), "a clean reopen recovered something: {:?}", log.recovery_report());
    assert_eq!(read_partition(&log), all, "the log after a clean reopen");
    log.close().expect("close after reopen");
}
