//! Regression tests for the bugs the fuzz checks (fuzz/checks.rs) caught, one test each, run on
//! the inputs kept in `fuzz/artifacts-regressions/<target>/` (the last one reproduces through the
//! public API alone). A new bug gets its input kept there and a test here, `//! until it is fixed. Both of these were fixed in e9d4268:
//!
//! - index wrap: `format::scan` built index entries with `(h.base_offset - base_offset) as u32`
//!   (src/format/scan.rs), and `ActiveSegment::append` did the same (src/storage/segment.rs), so
//!   in a segment whose offsets spanned more than 2^32 the entries wrapped and were out of order;
//!   recovery kept them, and a fetch from the segment's start silently skipped records. Appends
//!   assign contiguous offsets, so only a damaged or foreign segment with good CRCs and offset
//!   gaps (a batch may cover up to 2^31 offsets with one record), or an append after recovering
//!   one, got there. Now a segment never spans more than 2^32 offsets or bytes: recovery cuts
//!   before such a batch, and an append that would pass the limit rolls.
//! - over capacity: `ActiveSegment::with_file` (src/storage/segment.rs) mapped only the topic's
//!   segment capacity, `max(segment.bytes, max.message.bytes)`, even when the recovered segment was
//!   larger, and `SegmentData::prefix` clamps reads to the mapping, so fetches past the capacity
//!   failed with `Error::Corrupt` although the data was intact. Reopening a data directory with a
//!   smaller default `segment.bytes` / `max.message.bytes` was enough to get there.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::PathBuf;

use runnel::{Acks, Log, LogOptions, Record, TopicConfig};

fn artifact(target: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("artifacts-regressions").join(target).join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Three batches of one record each with `last_offset_delta` = 2^31 - 1 (offsets 2^31 - 1,
/// 2^32 - 1, 3 * 2^31 - 1), scanned with an index interval of 64: the index entries came out as
/// (2^31, 76), (0, 152), not increasing. Now the scan stops before the third batch.
#[test]
fn scan_index_entries_of_a_segment_spanning_more_than_2_pow_32_offsets() {
    checks::scan(&artifact("scan", "index-relative-offset-wrap"));
}

/// The same segment recovered by `Log::open`: a fetch from offset 0 returned only the third
/// batch's record, skipping the first two.
#[test]
fn recovered_segment_spanning_more_than_2_pow_32_offsets_reads_back() {
    checks::open_segment(&artifact("open_segment", "index-relative-offset-wrap"));
}

/// Two good batches with offsets 2^31 - 1 and 2^32 - 1 (offset gaps): recovery was right, but the
/// next append, at offset 2^32, got the index entry (0, 153) after the rebuilt entry (2^31, 76),
/// and a fetch from offset 0 then returned only the appended record (and the `.index` written at
/// the clean close did not decode, so the clean reopen verified the segment again).
#[test]
fn append_past_2_pow_32_offsets_into_a_recovered_segment_reads_back() {
    checks::open_segment(&artifact("open_segment", "append-relative-offset-wrap"));
}

/// One good 1074-byte batch as the segment of a topic with 1 KiB segment capacity: recovery kept
/// it, and the fetch at offset 0 failed with "batch extends past the end of the data".
#[test]
fn recovered_segment_larger_than_the_segment_capacity_reads_back() {
    checks::open_segment(&artifact("open_segment", "segment-over-capacity"));
}

/// The same bug through the public API only: a topic that inherits `segment.bytes` from the log's
/// default topic config, reopened (cleanly) with a smaller default, could not read its last segment.
#[test]
fn reopening_with_a_smaller_default_segment_size_keeps_the_last_segment_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LogOptions::default().background_maintenance(false);
    let log = Log::open(dir.path(), opts.clone()).expect("open");
    log.create_topic("t", 1, TopicConfig::default()).expect("create topic");
    for i in 0..20u8 {
        log.append("t", Some(0), &[Record::new(&[i; 200])], Acks::All).expect("append");
    }
    log.close().expect("close");

    let log = Log::open(dir.path(), opts.default_topic_config(checks::segment_config())).expect("reopen with 1 KiB segments");
    let mut offset = 0;
    let mut values = Vec::new();
    while offset < 20 {
        let f = log.fetch("t", 0, offset, 1 << 20).unwrap_or_else(|e| panic!("fetch at {offset}: {e}"));
        for r in f.records() {
            values.push(r.unwrap_or_else(|e| panic!("record after {offset}: {e}")).value.map(<[u8]>::to_vec));
        }
        offset = f.next_offset();
    }
    let expected: Vec<_> = (0..20u8).map(|i| Some(vec![i; 200])).collect();
    assert_eq!(values, expected);
}
