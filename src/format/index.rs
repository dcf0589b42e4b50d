//! The sparse `.index` (offset → position) and `.timeindex` (timestamp → offset) files of a segment.
//!
//! Both files are a 32-byte header and fixed-size entries, written whole when a segment is sealed
//! or the log is closed cleanly, and always derivable from the `.log` file:
//!
//! ```text
//!  0  magic         [u8; 4]  "RNOI" (.index) or "RNTI" (.timeindex)
//!  4  version       u16      1
//!  6  entry_len     u16      8 (.index) or 12 (.timeindex)
//!  8  base_offset   u64      the segment's base offset
//! 16  extra         u64      .index: size of the .log file the entries describe;
//!                            .timeindex: largest timestamp in the segment (i64)
//! 24  crc           u32      CRC-32 of bytes [0, 24) and of every entry
//! 28  reserved      u32      0
//! 32  entries
//! ```
//!
//! `.index` entries are `(relative_offset u32, position u32)`: the batch starting at
//! `base_offset + relative_offset` begins at byte `position` of the `.log` file. `.timeindex`
//! entries are `(timestamp i64, relative_offset u32)`: `timestamp` is the largest timestamp of the
//! records before that batch in the segment, so a search for the first record at or after time T
//! may start at the last entry whose timestamp is below T. Both are strictly increasing in offset.

/// Size of the header of both index files.
pub const INDEX_HEADER_LEN: usize = 32;
/// Magic of `.index` files.
pub const OFFSET_INDEX_MAGIC: [u8; 4] = *b"RNOI";
/// Magic of `.timeindex` files.
pub const TIME_INDEX_MAGIC: [u8; 4] = *b"RNTI";
/// The version this build writes.
pub const INDEX_VERSION: u16 = 1;

/// An entry of the offset index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset of a batch minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of that batch in the `.log` file.
    pub position: u32,
}

/// An entry of the time index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// The largest timestamp of all records in the segment before the batch.
    pub timestamp: i64,
    /// Offset of the batch minus the segment's base offset.
    pub relative_offset: u32,
}

fn header(magic: [u8; 4], entry_len: u16, base_offset: u64, extra: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN);
    out.extend_from_slice(&magic);
    out.extend_from_slice(&INDEX_VERSION.to_le_bytes());
    out.extend_from_slice(&entry_len.to_le_bytes());
    out.extend_from_slice(&base_offset.to_le_bytes());
    out.extend_from_slice(&extra.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    out
}

fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..24]);
    h.update(&out[INDEX_HEADER_LEN..]);
    let crc = h.finalize();
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Encodes a whole `.index` file.
pub fn encode_offset_index(base_offset: u64, log_size: u64, entries: &[OffsetEntry]) -> Vec<u8> {
    let mut out = header(OFFSET_INDEX_MAGIC, 8, base_offset, log_size);
    for e in entries {
        out.extend_from_slice(&e.relative_offset.to_le_bytes());
        out.extend_from_slice(&e.position.to_le_bytes());
    }
    seal(out)
}

/// Encodes a whole `.timeindex` file.
pub fn encode_time_index(base_offset: u64, max_timestamp: i64, entries: &[TimeEntry]) -> Vec<u8> {
    let mut out = header(TIME_INDEX_MAGIC, 12, base_offset, max_timestamp as u64);
    for e in entries {
        out.extend_from_slice(&e.timestamp.to_le_bytes());
        out.extend_from_slice(&e.relative_offset.to_le_bytes());
    }
    seal(out)
}

fn check_header(bytes: &[u8], magic: [u8; 4], entry_len: usize, base_offset: u64) -> Result<(u64, &[u8]), String> {
    if bytes.len() < INDEX_HEADER_LEN {
        return Err("shorter than its header".into());
    }
    let (h, body) = bytes.split_at(INDEX_HEADER_LEN);
    if h[0..4] != magic {
        return Err("wrong magic".into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[i..i + 8]);
        u64::from_le_bytes(b)
    };
    if u16_at(4) != INDEX_VERSION {
        return Err(format!("unknown version {}", u16_at(4)));
    }
    if usize::from(u16_at(6)) != entry_len || body.len() % entry_len != 0 {
        return Err("entry size does not match".into());
    }
    if h[28..32] != [0, 0, 0, 0] {
        return Err("reserved header bytes are not zero".into());
    }
    if u64_at(8) != base_offset {
        return Err(format!("base offset {} does not match the segment's {base_offset}", u64_at(8)));
    }
    let mut c = crc32fast::Hasher::new();
    c.update(&h[..24]);
    c.update(body);
    if c.finalize().to_le_bytes() != h[24..28] {
        return Err("checksum mismatch".into());
    }
    Ok((u64_at(16), body))
}

/// Decodes a `.index` file, checking it against the segment it claims to describe: entries must
/// be strictly increasing and point inside `log_size` bytes.
pub fn decode_offset_index(bytes: &[u8], base_offset: u64, log_size: u64) -> Result<Vec<OffsetEntry>, String> {
    let (size, body) = check_header(bytes, OFFSET_INDEX_MAGIC, 8, base_offset)?;
    if size != log_size {
        return Err(format!("written for a log of {size} bytes, the log has {log_size}"));
    }
    let mut out = Vec::with_capacity(body.len() / 8);
    let mut prev: Option<OffsetEntry> = None;
    for c in body.chunks_exact(8) {
        let e = OffsetEntry {
            relative_offset: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            position: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        };
        if u64::from(e.position) >= log_size || e.position == 0 {
            return Err(format!("entry points to position {} outside the log", e.position));
        }
        if prev.is_some_and(|p| p.relative_offset >= e.relative_offset || p.position >= e.position) {
            return Err("entries are not increasing".into());
        }
        prev = Some(e);
        out.push(e);
    }
    Ok(out)
}

/// Decodes a `.timeindex` file: the segment's largest timestamp and the entries.
pub fn decode_time_index(bytes: &[u8], base_offset: u64) -> Result<(i64, Vec<TimeEntry>), String> {
    let (max, body) = check_header(bytes, TIME_INDEX_MAGIC, 12, base_offset)?;
    let mut out = Vec::with_capacity(body.len() / 12);
    let mut prev: Option<TimeEntry> = None;
    for c in body.chunks_exact(12) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&c[..8]);
        let e = TimeEntry { timestamp: i64::from_le_bytes(ts), relative_offset: u32::from_le_bytes([c[8], c[9], c[10], c[11]]) };
        if prev.is_some_and(|p| p.relative_offset >= e.relative_offset || p.timestamp > e.timestamp) {
            return Err("entries are not increasing".into());
        }
        prev = Some(e);
        out.push(e);
    }
    Ok((max as i64, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_round_trips_and_rejects_damage() {
        let entries = [OffsetEntry { relative_offset: 3, position: 100 }, OffsetEntry { relative_offset: 9, position: 4200 }];
        let bytes = encode_offset_index(50, 5000, &entries);
        assert_eq!(decode_offset_index(&bytes, 50, 5000), Ok(entries.to_vec()));
        assert!(decode_offset_index(&bytes, 51, 5000).is_err(), "other segment");
        assert!(decode_offset_index(&bytes, 50, 4999).is_err(), "stale for this log size");
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(decode_offset_index(&b, 50, 5000).is_err(), "flip at {i}");
        }
    }

    #[test]
    fn out_of_order_entries_are_rejected_even_with_a_good_checksum() {
        let entries = [OffsetEntry { relative_offset: 9, position: 100 }, OffsetEntry { relative_offset: 3, position: 200 }];
        let bytes = encode_offset_index(0, 5000, &entries);
        assert!(decode_offset_index(&bytes, 0, 5000).is_err());
        let beyond = encode_offset_index(0, 5000, &[OffsetEntry { relative_offset: 1, position: 5000 }]);
        assert!(decode_offset_index(&beyond, 0, 5000).is_err());
    }

    #[test]
    fn time_index_round_trips() {
        let entries = [TimeEntry { timestamp: 10, relative_offset: 2 }, TimeEntry { timestamp: 10, relative_offset: 5 }];
        let bytes = encode_time_index(7, 99, &entries);
        assert_eq!(decode_time_index(&bytes, 7), Ok((99, entries.to_vec())));
    }
}
