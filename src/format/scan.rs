//! Walking the batches of a segment's bytes: how recovery verifies a log and rebuilds its indexes.
//! Pure (bytes in, findings out), so it can be fuzzed with arbitrary file contents.

use super::batch::{BatchView, FrameError, LOG_OVERHEAD};
use super::index::{OffsetEntry, TimeEntry};

/// Where a scan of a segment stopped, and what it found on the way.
#[derive(Debug)]
pub struct Scan {
    /// End of the last good batch.
    pub valid_end: u64,
    /// Offset after the last good batch.
    pub next_offset: u64,
    /// Largest timestamp seen (`i64::MIN` when none).
    pub max_timestamp: i64,
    /// Why the scan stopped before the end of the data, if it did.
    pub stop: Option<String>,
    /// Whether everything after `valid_end` is zero bytes (preallocated, never written).
    pub zero_tail: bool,
    /// The offset index entries an append would have made.
    pub offsets: Vec<OffsetEntry>,
    /// The time index entries an append would have made.
    pub times: Vec<TimeEntry>,
}

impl Scan {
    /// A scan result that carries only the end of the data (no index entries).
    pub fn summary(valid_end: u64, next_offset: u64, max_timestamp: i64) -> Scan {
        Scan { valid_end, next_offset, max_timestamp, stop: None, zero_tail: true, offsets: Vec::new(), times: Vec::new() }
    }
}

/// The longest run of zeros after the last batch that is taken for preallocated space. The writer
/// reserves space at most two allocation steps ahead of its data.
pub const MAX_PREALLOCATED_TAIL: u64 = 32 << 20;

/// Walks the batches of `bytes` from the start, checking each (CRC and records when `verify`),
/// and builds the index entries an append would have made.
pub fn scan(bytes: &[u8], base_offset: u64, index_interval: u64, verify: bool) -> Scan {
    let mut pos = 0usize;
    let mut next = base_offset;
    let mut max_ts = i64::MIN;
    let mut since_index = 0u64;
    let mut offsets = Vec::new();
    let mut times = Vec::new();
    let mut stop = None;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() >= LOG_OVERHEAD && rest[..LOG_OVERHEAD].iter().all(|&b| b == 0) {
            // A zero base offset and length: the start of preallocated space, or damage.
            break;
        }
        let view = match BatchView::parse(rest) {
            Ok(v) => v,
            Err(FrameError::Truncated) if rest.len() < LOG_OVERHEAD => {
                stop = Some("a partial batch header at the end".to_string());
                break;
            }
            Err(e) => {
                stop = Some(e.to_string());
                break;
            }
        };
        let h = *view.header();
        if h.base_offset != next {
            stop = Some(format!("batch has base offset {} where {next} was expected", h.base_offset));
            break;
        }
        // Index entries hold 32-bit relative offsets and positions, as in Kafka.
        if h.last_offset() - base_offset > u64::from(u32::MAX) || (pos + h.total_len()) as u64 > u64::from(u32::MAX) {
            stop = Some("batch lies beyond 2^32 offsets or bytes of the segment's start".to_string());
            break;
        }
        if verify {
            if !view.verify_crc() {
                stop = Some("CRC mismatch".to_string());
                break;
            }
            if let Err(e) = view.validate() {
                stop = Some(format!("bad record: {e}"));
                break;
            }
        }
        if since_index >= index_interval && pos > 0 {
            let rel = (h.base_offset - base_offset) as u32;
            offsets.push(OffsetEntry { relative_offset: rel, position: pos as u32 });
            times.push(TimeEntry { timestamp: max_ts, relative_offset: rel });
            since_index = 0;
        }
        since_index += h.total_len() as u64;
        max_ts = max_ts.max(h.max_timestamp);
        next = h.next_offset();
        pos += h.total_len();
    }
    let tail = &bytes[pos..];
    // Preallocation leaves at most a few allocation steps of zeros; a longer tail is not runnel's,
    // and is not read byte by byte (it may be a huge sparse file).
    let zero_tail = tail.len() as u64 <= MAX_PREALLOCATED_TAIL && tail.iter().all(|&b| b == 0);
    if stop.is_none() && !zero_tail {
        stop = Some(if tail.len() as u64 > MAX_PREALLOCATED_TAIL {
            format!("{} bytes after the last batch, more than preallocation leaves", tail.len())
        } else {
            "non-zero bytes after the last batch".to_string()
        });
    }
    Scan { valid_end: pos as u64, next_offset: next, max_timestamp: max_ts, stop, zero_tail, offsets, times }
}
