//! Exactly-once codecs: transaction markers (control records), producer-state snapshots
//! (`<offset>.snapshot`), and the records of `__transaction_state`. Pure; docs/FORMAT.md has the layouts.

use super::meta::Reader;

/// What a transaction marker says: the transaction committed or aborted (Kafka's ControlRecordType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerType {
    /// Type 0: the producer's records since its previous marker are discarded.
    Abort,
    /// Type 1: the producer's records since its previous marker are committed.
    Commit,
}

const MARKER_KEY_VERSION: u16 = 0;
const MARKER_VALUE_VERSION: u16 = 0;

/// The key of a marker's one record: version u16 (0) | type u16 (0 abort, 1 commit).
pub fn encode_marker_key(t: MarkerType) -> [u8; 4] {
    let ty: u16 = match t {
        MarkerType::Abort => 0,
        MarkerType::Commit => 1,
    };
    let mut k = [0u8; 4];
    k[..2].copy_from_slice(&MARKER_KEY_VERSION.to_le_bytes());
    k[2..].copy_from_slice(&ty.to_le_bytes());
    k
}

/// The value of a marker's record: version u16 (0) | coordinator epoch i32.
pub fn encode_marker_value(coordinator_epoch: i32) -> [u8; 6] {
    let mut v = [0u8; 6];
    v[..2].copy_from_slice(&MARKER_VALUE_VERSION.to_le_bytes());
    v[2..].copy_from_slice(&coordinator_epoch.to_le_bytes());
    v
}

/// Decodes a marker record's key.
pub fn decode_marker_key(k: &[u8]) -> Option<MarkerType> {
    let k: &[u8; 4] = k.try_into().ok()?;
    if u16::from_le_bytes([k[0], k[1]]) != MARKER_KEY_VERSION {
        return None;
    }
    match u16::from_le_bytes([k[2], k[3]]) {
        0 => Some(MarkerType::Abort),
        1 => Some(MarkerType::Commit),
        _ => None,
    }
}

/// `seq + n` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
pub fn seq_add(seq: i32, n: u32) -> i32 {
    ((i64::from(seq) + i64::from(n)) % (i64::from(i32::MAX) + 1)) as i32
}

/// The sequence after a batch of `count` records starting at `seq`.
pub fn seq_after(seq: i32, count: usize) -> i32 {
    seq_add(seq, (count % (1 << 31)) as u32)
}

/// One idempotent batch remembered for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// Sequence of its first record.
    pub first_seq: i32,
    /// Sequence of its last record.
    pub last_seq: i32,
    /// Offset of its first record.
    pub base_offset: u64,
    /// Offset of its last record.
    pub last_offset: u64,
}

/// What a partition remembers of one producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerSnapshotEntry {
    /// Producer id.
    pub producer_id: i64,
    /// Its latest epoch.
    pub epoch: i16,
    /// Wall-clock time of its last append (ms), for `producer.id.expiration.ms`.
    pub last_timestamp: i64,
    /// First offset of its open transaction in this partition.
    pub txn_first_offset: Option<u64>,
    /// Its last batches (at most five), oldest first.
    pub batches: Vec<BatchMeta>,
}

/// A transaction that ended with an abort marker: its records in `[first_offset, last_offset)`
/// from `producer_id` are to be skipped by read_committed consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of the transaction's first batch in the partition.
    pub first_offset: u64,
    /// Offset of the abort marker.
    pub last_offset: u64,
    /// The last stable offset just after the marker: every transaction that began below it had
    /// ended by then (a search for aborted transactions overlapping a range can stop here).
    pub last_stable_offset: u64,
}

/// A partition's producer state as of `offset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// The state covers every batch below this offset.
    pub offset: u64,
    /// Producers, in any order.
    pub producers: Vec<ProducerSnapshotEntry>,
    /// Aborted transactions still in the log, by `last_offset`.
    pub aborted: Vec<AbortedTxn>,
}

/// Magic at the start of a `.snapshot` file.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"RNPS";
/// The snapshot version this build writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 32;
/// Most batches remembered per producer and partition (Kafka keeps five).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
const NO_OFFSET: u64 = u64::MAX;

/// Encodes a producer-state snapshot:
///
/// ```text
///  0 magic "RNPS" | 4 version u16 | 6 reserved u16 | 8 offset u64 | 16 producer count u32
/// 20 aborted count u32 | 24 crc u32 (CRC-32 of bytes [0, 24) and [28, end)) | 28 reserved u32
/// 32 producers: id i64 | epoch i16 | batch count u8 | reserved u8 | reserved u32 | last timestamp i64
///               | txn first offset u64 (u64::MAX: none) | batches: first seq i32, last seq i32, base u64, last u64
///    aborted:   producer id i64 | first offset u64 | last offset u64 | last stable offset u64
/// ```
pub fn encode_snapshot(s: &ProducerSnapshot) -> Vec<u8> {
    let mut body = Vec::with_capacity(s.producers.len() * 64 + s.aborted.len() * 32);
    for p in &s.producers {
        body.extend_from_slice(&p.producer_id.to_le_bytes());
        body.extend_from_slice(&p.epoch.to_le_bytes());
        let n = p.batches.len().min(MAX_BATCHES_PER_PRODUCER);
        body.push(n as u8);
        body.extend_from_slice(&[0u8; 5]);
        body.extend_from_slice(&p.last_timestamp.to_le_bytes());
        body.extend_from_slice(&p.txn_first_offset.unwrap_or(NO_OFFSET).to_le_bytes());
        for b in &p.batches[p.batches.len() - n..] {
            body.extend_from_slice(&b.first_seq.to_le_bytes());
            body.extend_from_slice(&b.last_seq.to_le_bytes());
            body.extend_from_slice(&b.base_offset.to_le_bytes());
            body.extend_from_slice(&b.last_offset.to_le_bytes());
        }
    }
    for a in &s.aborted {
        body.extend_from_slice(&a.producer_id.to_le_bytes());
        body.extend_from_slice(&a.first_offset.to_le_bytes());
        body.extend_from_slice(&a.last_offset.to_le_bytes());
        body.extend_from_slice(&a.last_stable_offset.to_le_bytes());
    }
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN + body.len());
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&s.offset.to_le_bytes());
    out.extend_from_slice(&(s.producers.len() as u32).to_le_bytes());
    out.extend_from_slice(&(s.aborted.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&body);
    let crc = snapshot_crc(&out);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// CRC-32 of a snapshot file, skipping its checksum field (bytes 24..28).
fn snapshot_crc(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes.get(..24).unwrap_or(bytes));
    h.update(bytes.get(28..).unwrap_or(&[]));
    h.finalize()
}

/// Decodes a snapshot, checking its checksum, its structure, and that every offset in it lies
/// below its own offset.
pub fn decode_snapshot(bytes: &[u8]) -> Result<ProducerSnapshot, String> {
    let mut r = Reader::new(bytes);
    if r.take(4)? != SNAPSHOT_MAGIC {
        return Err("not a producer-state snapshot (wrong magic)".into());
    }
    let version = r.u16()?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("snapshot version {version} is not supported (this build reads {SNAPSHOT_VERSION})"));
    }
    if r.u16()? != 0 {
        return Err("reserved bytes are not zero".into());
    }
    let offset = r.u64()?;
    let (np, na, crc) = (r.u32()?, r.u32()?, r.u32()?);
    if r.u32()? != 0 {
        return Err("reserved bytes are not zero".into());
    }
    if snapshot_crc(bytes) != crc {
        return Err("checksum mismatch".into());
    }
    // Each producer takes at least 32 bytes and each aborted transaction 32: bound the counts by
    // the bytes present before allocating for them.
    if (u64::from(np) + u64::from(na)) * 32 > r.rest().len() as u64 {
        return Err("counts exceed the file".into());
    }
    let mut producers = Vec::with_capacity(np as usize);
    for _ in 0..np {
        let producer_id = r.u64()? as i64;
        let epoch = r.u16()? as i16;
        let n = r.take(1)?[0];
        if r.take(5)? != [0u8; 5] {
            return Err("reserved bytes are not zero".into());
        }
        if usize::from(n) > MAX_BATCHES_PER_PRODUCER || producer_id < 0 {
            return Err(format!("producer {producer_id} is malformed"));
        }
        let last_timestamp = r.u64()? as i64;
        let first = r.u64()?;
        let txn_first_offset = (first != NO_OFFSET).then_some(first);
        let mut batches = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let b = BatchMeta { first_seq: r.u32()? as i32, last_seq: r.u32()? as i32, base_offset: r.u64()?, last_offset: r.u64()? };
            if b.base_offset > b.last_offset || b.last_offset >= offset || b.first_seq < 0 || b.last_seq < 0 {
                return Err(format!("producer {producer_id} has an impossible batch {b:?}"));
            }
            batches.push(b);
        }
        if txn_first_offset.is_some_and(|f| f >= offset) {
            return Err(format!("producer {producer_id} has a transaction starting past the snapshot"));
        }
        producers.push(ProducerSnapshotEntry { producer_id, epoch, last_timestamp, txn_first_offset, batches });
    }
    let mut aborted = Vec::with_capacity(na as usize);
    for _ in 0..na {
        let a = AbortedTxn { producer_id: r.u64()? as i64, first_offset: r.u64()?, last_offset: r.u64()?, last_stable_offset: r.u64()? };
        if a.first_offset > a.last_offset
            || a.last_offset >= offset
            || aborted.last().is_some_and(|p: &AbortedTxn| p.last_offset >= a.last_offset)
        {
            return Err(format!("aborted transaction {a:?} is out of place"));
        }
        aborted.push(a);
    }
    if !r.rest().is_empty() {
        return Err("bytes after the last entry".into());
    }
    Ok(ProducerSnapshot { offset, producers, aborted })
}

/// Where a transaction stands, as the coordinator records it (Kafka's TransactionState).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TxnStatus {
    /// No transaction open (after init, commit or abort).
    Empty,
    /// A transaction is open: records have been sent.
    Ongoing,
    /// Commit decided: every partition's data is durable; markers are being written.
    PrepareCommit,
    /// Abort decided; markers are being written.
    PrepareAbort,
    /// The last transaction committed and every marker is written.
    CompleteCommit,
    /// The last transaction aborted and every marker is written.
    CompleteAbort,
}

impl TxnStatus {
    fn code(self) -> u8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
        }
    }

    fn from_code(c: u8) -> Option<TxnStatus> {
        Some(match c {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            _ => return None,
        })
    }

    /// Kafka's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
        }
    }
}

/// A partition of a transaction and where the transaction's data there ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset after the transaction's last record in the partition.
    pub end_offset: u64,
}

/// The coordinator's record of one transactional id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnRecord {
    /// The producer id bound to the transactional id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The state.
    pub status: TxnStatus,
    /// `transaction.timeout.ms`.
    pub timeout_ms: u32,
    /// When the record was written (ms since the epoch).
    pub updated_ms: i64,
    /// The partitions of the transaction being decided (PrepareCommit/PrepareAbort), else empty.
    pub partitions: Vec<TxnPartition>,
    /// Partitions of earlier committed transactions of this producer whose commit markers may not
    /// be durable yet: recovery writes a commit marker there if the producer's transaction open in
    /// the partition began below `end_offset`.
    pub committed: Vec<TxnPartition>,
}

const TXN_KEY_PID_BLOCK: u8 = 0;
const TXN_KEY_TXN: u8 = 1;
const TXN_VALUE_VERSION: u16 = 0;

/// A key of `__transaction_state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnKey {
    /// The producer-id block record: its value is the first id not yet handed out.
    PidBlock,
    /// A transactional id's record.
    Txn(String),
}

/// Encodes a `__transaction_state` key: type u8 (0 producer-id block, 1 transactional id) | id bytes.
pub fn encode_txn_key(k: &TxnKey) -> Vec<u8> {
    match k {
        TxnKey::PidBlock => vec![TXN_KEY_PID_BLOCK],
        TxnKey::Txn(id) => {
            let mut v = Vec::with_capacity(1 + id.len());
            v.push(TXN_KEY_TXN);
            v.extend_from_slice(id.as_bytes());
            v
        }
    }
}

/// Decodes a `__transaction_state` key.
pub fn decode_txn_key(b: &[u8]) -> Option<TxnKey> {
    match b.split_first()? {
        (&TXN_KEY_PID_BLOCK, []) => Some(TxnKey::PidBlock),
        (&TXN_KEY_TXN, id) => Some(TxnKey::Txn(String::from_utf8(id.to_vec()).ok()?)),
        _ => None,
    }
}

/// Encodes the producer-id block value: version u16 (0) | block end u64.
pub fn encode_pid_block(end: u64) -> Vec<u8> {
    let mut v = TXN_VALUE_VERSION.to_le_bytes().to_vec();
    v.extend_from_slice(&end.to_le_bytes());
    v
}

/// Decodes the producer-id block value.
pub fn decode_pid_block(b: &[u8]) -> Option<u64> {
    let mut r = Reader::new(b);
    if r.u16().ok()? != TXN_VALUE_VERSION {
        return None;
    }
    let end = r.u64().ok()?;
    r.rest().is_empty().then_some(end)
}

/// Encodes a transactional id's record:
/// version u16 (0) | producer id i64 | epoch i16 | state u8 | reserved u8 | timeout ms u32 |
/// updated ms i64 | partition count u32 | per partition: topic (u16 length + bytes), partition u32,
/// end offset u64 | committed count u32 | per committed partition: the same three fields.
pub fn encode_txn_record(t: &TxnRecord) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + t.partitions.len() * 24);
    v.extend_from_slice(&TXN_VALUE_VERSION.to_le_bytes());
    v.extend_from_slice(&t.producer_id.to_le_bytes());
    v.extend_from_slice(&t.epoch.to_le_bytes());
    v.push(t.status.code());
    v.push(0);
    v.extend_from_slice(&t.timeout_ms.to_le_bytes());
    v.extend_from_slice(&t.updated_ms.to_le_bytes());
    for list in [&t.partitions, &t.committed] {
        v.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for p in list {
            v.extend_from_slice(&(p.topic.len() as u16).to_le_bytes());
            v.extend_from_slice(p.topic.as_bytes());
            v.extend_from_slice(&p.partition.to_le_bytes());
            v.extend_from_slice(&p.end_offset.to_le_bytes());
        }
    }
    v
}

fn decode_partitions(r: &mut Reader<'_>) -> Option<Vec<TxnPartition>> {
    let n = r.u32().ok()?;
    // Each entry takes at least 14 bytes: bound the count by the bytes present before allocating.
    if u64::from(n) * 14 > r.rest().len() as u64 {
        return None;
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        out.push(TxnPartition { topic: r.string().ok()?, partition: r.u32().ok()?, end_offset: r.u64().ok()? });
    }
    Some(out)
}

/// Decodes a transactional id's record.
pub fn decode_txn_record(b: &[u8]) -> Option<TxnRecord> {
    let mut r = Reader::new(b);
    if r.u16().ok()? != TXN_VALUE_VERSION {
        return None;
    }
    let producer_id = r.u64().ok()? as i64;
    let epoch = r.u16().ok()? as i16;
    let status = TxnStatus::from_code(r.take(1).ok()?[0])?;
    if r.take(1).ok()?[0] != 0 || producer_id < 0 || epoch < 0 {
        return None;
    }
    let timeout_ms = r.u32().ok()?;
    let updated_ms = r.u64().ok()? as i64;
    let partitions = decode_partitions(&mut r)?;
    let committed = decode_partitions(&mut r)?;
    r.rest().is_empty().then_some(TxnRecord { producer_id, epoch, status, timeout_ms, updated_ms, partitions, committed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ProducerSnapshot {
        ProducerSnapshot {
            offset: 100,
            producers: vec![
                ProducerSnapshotEntry {
                    producer_id: 7,
                    epoch: 2,
                    last_timestamp: 1_700_000_000_000,
                    txn_first_offset: Some(90),
                    batches: vec![BatchMeta { first_seq: 0, last_seq: 4, base_offset: 90, last_offset: 94 }],
                },
                ProducerSnapshotEntry { producer_id: 8, epoch: 0, last_timestamp: 5, txn_first_offset: None, batches: vec![] },
            ],
            aborted: vec![AbortedTxn { producer_id: 8, first_offset: 10, last_offset: 20, last_stable_offset: 21 }],
        }
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let s = sample();
        let bytes = encode_snapshot(&s);
        assert_eq!(decode_snapshot(&bytes), Ok(s));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x04;
            assert!(decode_snapshot(&b).is_err(), "flip at {i}");
        }
        for len in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..len]).is_err(), "cut at {len}");
        }
    }

    #[test]
    fn snapshot_header_matches_the_documented_layout() {
        let bytes = encode_snapshot(&ProducerSnapshot { offset: 0x0102, producers: vec![], aborted: vec![] });
        assert_eq!(
            bytes,
            [b'R', b'N', b'P', b'S', 1, 0, 0, 0, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77, 0x9e, 0x15, 0x0d, 0, 0, 0, 0]
        );
    }

    #[test]
    fn markers_round_trip() {
        assert_eq!(encode_marker_key(MarkerType::Commit), [0, 0, 1, 0]);
        assert_eq!(decode_marker_key(&encode_marker_key(MarkerType::Abort)), Some(MarkerType::Abort));
        assert_eq!(decode_marker_key(&[0, 0, 2, 0]), None);
        assert_eq!(encode_marker_value(3), [0, 0, 3, 0, 0, 0]);
    }

    #[test]
    fn txn_records_round_trip() {
        let t = TxnRecord {
            producer_id: 5,
            epoch: 1,
            status: TxnStatus::PrepareCommit,
            timeout_ms: 60_000,
            updated_ms: 42,
            partitions: vec![TxnPartition { topic: "a".into(), partition: 3, end_offset: 17 }],
            committed: vec![TxnPartition { topic: "b".into(), partition: 0, end_offset: 5 }],
        };
        let b = encode_txn_record(&t);
        assert_eq!(decode_txn_record(&b), Some(t));
        assert_eq!(decode_txn_record(&b[..b.len() - 1]), None);
        for k in [TxnKey::PidBlock, TxnKey::Txn("app-1".into())] {
            assert_eq!(decode_txn_key(&encode_txn_key(&k)), Some(k));
        }
        assert_eq!(decode_pid_block(&encode_pid_block(1000)), Some(1000));
    }
}
