//! Record batches: the unit of append, of atomicity and of checksumming, modelled on Kafka's RecordBatch v2.
//!
//! A batch is a 64-byte header followed by `record_count` records (docs/FORMAT.md has the diagram):
//!
//! ```text
//!  0  base_offset        u64   offset of the first record
//!  8  batch_length       u32   bytes after this field (the whole batch is 12 + batch_length)
//! 12  crc                u32   CRC-32 (IEEE) of bytes [0, 12) and [16, end)
//! 16  magic              u8    2
//! 17  reserved           u8    0
//! 18  attributes         u16   bits 0-2 compression (0 = none), 3 timestamp type, 4 transactional, 5 control
//! 20  last_offset_delta  u32   offset of the last record minus base_offset
//! 24  base_timestamp     i64   timestamp of the first record
//! 32  max_timestamp      i64   largest timestamp in the batch
//! 40  producer_id        i64   -1 when not idempotent
//! 48  producer_epoch     i16   -1 when not idempotent
//! 50  reserved           u16   0
//! 52  base_sequence      i32   -1 when not idempotent
//! 56  record_count       u32
//! 60  reserved           u32   0
//! 64  records...
//! ```
//!
//! A batch is broken, and recovery cuts the log before it, when any of these holds: fewer bytes
//! remain than the header or `batch_length` claims; the magic or a reserved field is wrong; the CRC
//! does not match; its base offset is not the previous batch's next offset; or its records do not
//! decode to exactly `record_count` records with increasing offset deltas ending at
//! `last_offset_delta` and no byte left over.

use super::record::Record;
use super::varint::{get_varint, get_varlong, put_varlong, varlong_len};

/// Size of the fixed batch header.
pub const BATCH_HEADER_LEN: usize = 64;
/// Bytes before `batch_length` counts: `base_offset` and `batch_length` itself.
pub const LOG_OVERHEAD: usize = 12;
/// The record batch format version this build writes and reads.
pub const MAGIC: u8 = 2;

/// Attribute bits, as in Kafka.
pub mod attributes {
    /// Bits 0-2: the compression codec. Only 0 (none) is written or read by this version.
    pub const COMPRESSION_MASK: u16 = 0x07;
    /// Bit 3: set when the log assigned the timestamps (LogAppendTime).
    pub const LOG_APPEND_TIME: u16 = 0x08;
    /// Bit 4: the batch belongs to a transaction.
    pub const TRANSACTIONAL: u16 = 0x10;
    /// Bit 5: a control batch (transaction marker), never returned to applications as records.
    pub const CONTROL: u16 = 0x20;
    /// Bits this version understands; any other set bit makes the batch unreadable.
    pub const KNOWN: u16 = COMPRESSION_MASK | LOG_APPEND_TIME | TRANSACTIONAL | CONTROL;
}

/// "No producer": the value of `producer_id`, `producer_epoch` and `base_sequence` in a plain batch.
pub const NO_PRODUCER_ID: i64 = -1;

/// The decoded fixed header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: u64,
    /// Bytes after the length field.
    pub batch_length: u32,
    /// The stored checksum.
    pub crc: u32,
    /// Attribute bits (see [`attributes`]).
    pub attributes: u16,
    /// Offset of the last record minus `base_offset`.
    pub last_offset_delta: u32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record for this producer and partition, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: u32,
}

impl BatchHeader {
    /// Whole size of the batch in bytes.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> u64 {
        self.base_offset + u64::from(self.last_offset_delta)
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }

    /// Whether timestamps were set by the log (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & attributes::LOG_APPEND_TIME != 0
    }

    /// Whether this is a control batch (a transaction marker).
    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    /// Decodes and checks the fixed header at the front of `bytes` (the CRC is not checked here).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, FrameError> {
        let h: &[u8; BATCH_HEADER_LEN] = match bytes.get(..BATCH_HEADER_LEN).and_then(|s| s.try_into().ok()) {
            Some(h) => h,
            None => return Err(FrameError::Truncated),
        };
        let header = BatchHeader {
            base_offset: u64_at(h, 0),
            batch_length: u32_at(h, 8),
            crc: u32_at(h, 12),
            attributes: u16::from_le_bytes([h[18], h[19]]),
            last_offset_delta: u32_at(h, 20),
            base_timestamp: u64_at(h, 24) as i64,
            max_timestamp: u64_at(h, 32) as i64,
            producer_id: u64_at(h, 40) as i64,
            producer_epoch: i16::from_le_bytes([h[48], h[49]]),
            base_sequence: u32_at(h, 52) as i32,
            record_count: u32_at(h, 56),
        };
        if h[16] != MAGIC {
            return Err(FrameError::Invalid(format!("unknown batch magic {} (this version reads {MAGIC})", h[16])));
        }
        if h[17] != 0 || h[50] != 0 || h[51] != 0 || u32_at(h, 60) != 0 {
            return Err(FrameError::Invalid("reserved header bytes are not zero".into()));
        }
        if (header.batch_length as usize) < BATCH_HEADER_LEN - LOG_OVERHEAD {
            return Err(FrameError::Invalid(format!("batch length {} is shorter than the header", header.batch_length)));
        }
        if header.attributes & !attributes::KNOWN != 0 {
            return Err(FrameError::Invalid(format!("unknown attribute bits {:#06x}", header.attributes)));
        }
        if header.attributes & attributes::COMPRESSION_MASK != 0 {
            return Err(FrameError::Invalid(format!(
                "compression codec {} is not supported",
                header.attributes & attributes::COMPRESSION_MASK
            )));
        }
        if header.record_count == 0 || u64::from(header.record_count) > u64::from(header.last_offset_delta) + 1 {
            return Err(FrameError::Invalid(format!(
                "record count {} does not fit last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        if header.base_offset > MAX_OFFSET - u64::from(header.last_offset_delta) {
            return Err(FrameError::Invalid("offsets overflow".into()));
        }
        Ok(header)
    }
}

/// The largest offset runnel will assign (Kafka's offsets are signed 64-bit).
pub const MAX_OFFSET: u64 = i64::MAX as u64 - 1;

/// Why a byte range is not a good batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes end before the batch does (a torn write).
    Truncated,
    /// The bytes are there but are not a valid batch.
    Invalid(String),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => f.write_str("batch extends past the end of the data"),
            FrameError::Invalid(reason) => f.write_str(reason),
        }
    }
}

#[inline]
fn u64_at(b: &[u8; BATCH_HEADER_LEN], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

#[inline]
fn u32_at(b: &[u8; BATCH_HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Computes the checksum of a whole encoded batch (the CRC field itself is skipped).
pub fn batch_crc(batch: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(batch.get(..12).unwrap_or(batch));
    hasher.update(batch.get(16..).unwrap_or(&[]));
    hasher.finalize()
}

/// What the producer side of a batch says: idempotence and transaction fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerFields {
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// First sequence number, or -1.
    pub base_sequence: i32,
    /// Whether the batch is part of a transaction.
    pub transactional: bool,
}

impl ProducerFields {
    /// A batch from no particular producer.
    pub const NONE: ProducerFields =
        ProducerFields { producer_id: NO_PRODUCER_ID, producer_epoch: -1, base_sequence: -1, transactional: false };
}

/// How timestamps are assigned: by the caller (CreateTime) or by the log (LogAppendTime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamp, or the append time when the record has none.
    #[default]
    CreateTime,
    /// The time of the append, for every record.
    LogAppendTime,
}

/// Encoded size of the records of a batch plus its header, without encoding anything.
pub fn encoded_len(records: &[Record<'_>]) -> usize {
    // Timestamp deltas are unknown until encoding; assume the worst case (10 bytes) for
    // explicit timestamps, 1 byte for "now". Exactness is not needed: this bounds allocations.
    BATCH_HEADER_LEN
        + records
            .iter()
            .map(|r| {
                let body = record_body_len(r, if r.timestamp.is_some() { i64::MAX } else { 0 }, 0);
                body + varlong_len(body as i64)
            })
            .sum::<usize>()
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varlong_len(b.len() as i64) + b.len(),
        None => 1,
    }
}

#[inline]
fn record_body_len(r: &Record<'_>, ts_delta: i64, offset_delta: u32) -> usize {
    let mut n = 1 + varlong_len(ts_delta) + varlong_len(i64::from(offset_delta));
    n += nullable_len(r.key);
    n += nullable_len(r.value);
    n += varlong_len(r.headers.len() as i64);
    for h in r.headers {
        n += varlong_len(h.key.len() as i64) + h.key.len();
        n += nullable_len(h.value);
    }
    n
}

#[inline]
fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
        None => put_varlong(out, -1),
    }
}

/// Encodes `records` as one batch at `base_offset` into `out` (cleared first), CRC included, and
/// returns its header. `now` is the append time in milliseconds. `records` must not be empty.
pub fn encode_batch(
    out: &mut Vec<u8>,
    base_offset: u64,
    records: &[Record<'_>],
    timestamp_type: TimestampType,
    now: i64,
    producer: ProducerFields,
    control: bool,
) -> BatchHeader {
    debug_assert!(!records.is_empty());
    out.clear();
    out.reserve(BATCH_HEADER_LEN + records.iter().map(|r| r.payload_len() + 16).sum::<usize>());
    out.resize(BATCH_HEADER_LEN, 0);
    let ts_of = |r: &Record<'_>| match timestamp_type {
        TimestampType::LogAppendTime => now,
        TimestampType::CreateTime => r.timestamp.unwrap_or(now),
    };
    let base_timestamp = records.first().map_or(now, ts_of);
    let mut max_timestamp = base_timestamp;
    for (i, r) in records.iter().enumerate() {
        let ts = ts_of(r);
        max_timestamp = max_timestamp.max(ts);
        let ts_delta = ts.wrapping_sub(base_timestamp);
        let offset_delta = i as u32;
        let body = record_body_len(r, ts_delta, offset_delta);
        put_varlong(out, body as i64);
        out.push(0); // record attributes, unused as in Kafka
        put_varlong(out, ts_delta);
        put_varlong(out, i64::from(offset_delta));
        put_nullable(out, r.key);
        put_nullable(out, r.value);
        put_varlong(out, r.headers.len() as i64);
        for h in r.headers {
            put_varlong(out, h.key.len() as i64);
            out.extend_from_slice(h.key);
            put_nullable(out, h.value);
        }
    }
    let last_offset_delta = (records.len() - 1) as u32;
    let mut attrs = 0u16;
    if timestamp_type == TimestampType::LogAppendTime {
        attrs |= attributes::LOG_APPEND_TIME;
    }
    if producer.transactional {
        attrs |= attributes::TRANSACTIONAL;
    }
    if control {
        attrs |= attributes::CONTROL;
    }
    let batch_length = (out.len() - LOG_OVERHEAD) as u32;
    let h = &mut out[..BATCH_HEADER_LEN];
    h[0..8].copy_from_slice(&base_offset.to_le_bytes());
    h[8..12].copy_from_slice(&batch_length.to_le_bytes());
    h[16] = MAGIC;
    h[18..20].copy_from_slice(&attrs.to_le_bytes());
    h[20..24].copy_from_slice(&last_offset_delta.to_le_bytes());
    h[24..32].copy_from_slice(&base_timestamp.to_le_bytes());
    h[32..40].copy_from_slice(&max_timestamp.to_le_bytes());
    h[40..48].copy_from_slice(&producer.producer_id.to_le_bytes());
    h[48..50].copy_from_slice(&producer.producer_epoch.to_le_bytes());
    h[52..56].copy_from_slice(&producer.base_sequence.to_le_bytes());
    h[56..60].copy_from_slice(&(records.len() as u32).to_le_bytes());
    let crc = batch_crc(out);
    out[12..16].copy_from_slice(&crc.to_le_bytes());
    BatchHeader {
        base_offset,
        batch_length,
        crc,
        attributes: attrs,
        last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
        record_count: records.len() as u32,
    }
}

/// A batch in a byte slice: its header and a way to walk its records without copying.
#[derive(Clone, Copy, Debug)]
pub struct BatchView<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> BatchView<'a> {
    /// Reads the batch at the front of `bytes`: checks the header and that the whole batch is
    /// present. The CRC is checked by [`BatchView::verify_crc`], the records as they are walked.
    pub fn parse(bytes: &'a [u8]) -> Result<BatchView<'a>, FrameError> {
        let header = BatchHeader::parse(bytes)?;
        let bytes = bytes.get(..header.total_len()).ok_or(FrameError::Truncated)?;
        Ok(BatchView { header, bytes })
    }

    /// The fixed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The raw bytes of the whole batch.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether the stored CRC matches the bytes.
    pub fn verify_crc(&self) -> bool {
        batch_crc(self.bytes) == self.header.crc
    }

    /// Iterates over the records.
    pub fn records(&self) -> RecordIter<'a> {
        RecordIter {
            rest: self.bytes.get(BATCH_HEADER_LEN..).unwrap_or(&[]),
            remaining: self.header.record_count,
            base_offset: self.header.base_offset,
            base_timestamp: self.header.base_timestamp,
            log_append_time: self.header.is_log_append_time().then_some(self.header.max_timestamp),
            last_delta: None,
            last_offset_delta: self.header.last_offset_delta,
        }
    }

    /// Decodes every record once, to prove the batch well formed (recovery does this).
    pub fn validate(&self) -> Result<(), FrameError> {
        let mut it = self.records();
        for r in &mut it {
            r?;
        }
        it.finish()
    }
}

/// One record read from the log, borrowing its key, value and headers from the segment mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The record's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch (CreateTime or LogAppendTime, per the topic).
    pub timestamp: i64,
    /// The key, or `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value, or `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The headers.
    pub headers: Headers<'a>,
}

/// The headers of a [`RecordView`], decoded lazily.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers<'a> {
    bytes: &'a [u8],
    count: u32,
}

impl<'a> Headers<'a> {
    /// Number of headers.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates over the headers in order.
    pub fn iter(&self) -> HeaderIter<'a> {
        HeaderIter { rest: self.bytes, remaining: self.count }
    }
}

impl<'a> IntoIterator for Headers<'a> {
    type Item = crate::format::Header<'a>;
    type IntoIter = HeaderIter<'a>;
    fn into_iter(self) -> HeaderIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Headers`]. The headers were validated when their record was decoded.
#[derive(Clone, Debug)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = crate::format::Header<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let (key, rest) = take_bytes(self.rest).ok()?;
        let (value, rest) = take_nullable(rest).ok()?;
        self.rest = rest;
        Some(crate::format::Header { key, value })
    }
}

fn take_bytes(b: &[u8]) -> Result<(&[u8], &[u8]), FrameError> {
    match take_nullable(b)? {
        (Some(v), rest) => Ok((v, rest)),
        (None, _) => Err(FrameError::Invalid("null header key".into())),
    }
}

#[inline]
fn take_nullable(b: &[u8]) -> Result<(Option<&[u8]>, &[u8]), FrameError> {
    let (len, n) = get_varint(b).ok_or_else(|| bad("bad length varint"))?;
    let rest = &b[n..];
    if len == -1 {
        return Ok((None, rest));
    }
    let len = usize::try_from(len).map_err(|_| bad("negative length"))?;
    if len > rest.len() {
        return Err(bad("field extends past its record"));
    }
    let (v, rest) = rest.split_at(len);
    Ok((Some(v), rest))
}

fn bad(reason: &str) -> FrameError {
    FrameError::Invalid(reason.to_string())
}

/// Iterator over the records of one batch.
#[derive(Clone, Debug)]
pub struct RecordIter<'a> {
    rest: &'a [u8],
    remaining: u32,
    base_offset: u64,
    base_timestamp: i64,
    log_append_time: Option<i64>,
    last_delta: Option<u32>,
    last_offset_delta: u32,
}

impl<'a> RecordIter<'a> {
    /// After the iterator is exhausted: checks that the batch held nothing more.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.remaining != 0 {
            return Err(bad("fewer records than the header's count"));
        }
        if !self.rest.is_empty() {
            return Err(bad("bytes left over after the last record"));
        }
        if self.last_delta != Some(self.last_offset_delta) {
            return Err(bad("last record's offset delta does not match the header"));
        }
        Ok(())
    }

    fn decode(&mut self) -> Result<RecordView<'a>, FrameError> {
        let (len, n) = get_varint(self.rest).ok_or_else(|| bad("bad record length"))?;
        let len = usize::try_from(len).map_err(|_| bad("negative record length"))?;
        let body = self.rest.get(n..n + len).ok_or_else(|| bad("record extends past its batch"))?;
        self.rest = &self.rest[n + len..];
        let b = body.get(1..).ok_or_else(|| bad("empty record"))?;
        let (ts_delta, n) = get_varlong(b).ok_or_else(|| bad("bad timestamp delta"))?;
        let b = &b[n..];
        let (offset_delta, n) = get_varint(b).ok_or_else(|| bad("bad offset delta"))?;
        let b = &b[n..];
        let offset_delta = u32::try_from(offset_delta).map_err(|_| bad("negative offset delta"))?;
        if self.last_delta.is_some_and(|d| offset_delta <= d) || offset_delta > self.last_offset_delta {
            return Err(bad("offset deltas not increasing within the batch"));
        }
        self.last_delta = Some(offset_delta);
        let (key, b) = take_nullable(b)?;
        let (value, b) = take_nullable(b)?;
        let (count, n) = get_varint(b).ok_or_else(|| bad("bad header count"))?;
        let count = u32::try_from(count).map_err(|_| bad("negative header count"))?;
        let headers_bytes = &b[n..];
        // Validate the headers now so that iterating them later cannot fail.
        let mut h = headers_bytes;
        for _ in 0..count {
            let (_, rest) = take_bytes(h)?;
            let (_, rest) = take_nullable(rest)?;
            h = rest;
        }
        if !h.is_empty() {
            return Err(bad("bytes left over after the headers"));
        }
        let timestamp = self.log_append_time.unwrap_or(self.base_timestamp.wrapping_add(ts_delta));
        Ok(RecordView {
            offset: self.base_offset + u64::from(offset_delta),
            timestamp,
            key,
            value,
            headers: Headers { bytes: headers_bytes, count },
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, FrameError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let r = self.decode();
        if r.is_err() {
            self.remaining = 0;
        }
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Header;

    fn encode(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_batch(&mut out, 7, records, TimestampType::CreateTime, 1000, ProducerFields::NONE, false);
        out
    }

    #[test]
    fn round_trips_keys_values_headers_and_nulls() {
        let headers = [Header::new(b"h1", b"v1"), Header { key: b"h2", value: None }];
        let records = [
            Record::new(b"hello").with_key(b"k").with_timestamp(990),
            Record::tombstone(b"gone").with_headers(&headers),
            Record::default(),
        ];
        let mut bytes = Vec::new();
        let returned = encode_batch(&mut bytes, 7, &records, TimestampType::CreateTime, 1000, ProducerFields::NONE, false);
        let view = BatchView::parse(&bytes).expect("parses");
        assert_eq!(*view.header(), returned, "the returned header is the one encoded");
        assert!(view.verify_crc());
        assert_eq!(view.header().base_offset, 7);
        assert_eq!(view.header().last_offset(), 9);
        assert_eq!(view.header().base_timestamp, 990);
        assert_eq!(view.header().max_timestamp, 1000);
        view.validate().expect("valid");
        let got: Vec<_> = view.records().map(|r| r.expect("record")).collect();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].offset, got[0].timestamp, got[0].key, got[0].value), (7, 990, Some(&b"k"[..]), Some(&b"hello"[..])));
        assert_eq!((got[1].offset, got[1].key, got[1].value), (8, Some(&b"gone"[..]), None));
        let hs: Vec<_> = got[1].headers.iter().collect();
        assert_eq!(hs, headers);
        assert_eq!((got[2].offset, got[2].timestamp, got[2].key, got[2].value), (9, 1000, None, None));
    }

    #[test]
    fn matches_the_test_vector_in_format_md() {
        // One record, key "k", value "v", timestamp 1000, at base offset 7, CreateTime.
        let mut out = Vec::new();
        encode_batch(
            &mut out,
            7,
            &[Record::new(b"v").with_key(b"k").with_timestamp(1000)],
            TimestampType::CreateTime,
            5,
            ProducerFields::NONE,
            false,
        );
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            concat!(
                "0700000000000000",
                "3d000000",
                "4528f5b5",
                "02",
                "00",
                "0000",
                "00000000",
                "e803000000000000",
                "e803000000000000",
                "ffffffffffffffff",
                "ffff",
                "0000",
                "ffffffff",
                "01000000",
                "00000000",
                "10",
                "00",
                "00",
                "00",
                "02",
                "6b",
                "02",
                "76",
                "00"
            )
        );
    }

    #[test]
    fn log_append_time_overrides_record_timestamps() {
        let mut out = Vec::new();
        encode_batch(&mut out, 0, &[Record::new(b"a").with_timestamp(1)], TimestampType::LogAppendTime, 555, ProducerFields::NONE, false);
        let view = BatchView::parse(&out).expect("parses");
        assert!(view.header().is_log_append_time());
        assert_eq!(view.records().next().map(|r| r.map(|r| r.timestamp)), Some(Ok(555)));
    }

    #[test]
    fn flipping_any_byte_is_detected() {
        let bytes = encode(&[Record::new(b"value").with_key(b"key")]);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            let ok = BatchView::parse(&b).map(|v| v.verify_crc() && v.validate().is_ok()).unwrap_or(false);
            assert!(!ok, "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let bytes = encode(&[Record::new(b"value"), Record::new(b"second")]);
        for len in 0..bytes.len() {
            assert!(BatchView::parse(&bytes[..len]).is_err(), "truncated at {len}");
        }
    }
}
