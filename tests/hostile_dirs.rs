//! Hostile data directories: a directory crafted or mangled by someone else is rejected with a
//! clear error or repaired, and runnel never reads or writes outside it, never panics, never
//! hangs and never allocates what a length field claims.
//!
//! Every case starts from a real log written through the API (topic `t`, one partition, 2 KiB
//! segments, an index entry every 512 bytes), closed cleanly, with a sibling directory `outside/`
//! holding a canary. The case then tampers with the files — a catalog with the wrong magic,
//! version or lengths, a batch header whose length runs 2 GiB past the end of the file, a huge
//! `record_count`, a wrong magic (with valid CRCs where the damage leaves the batch whole), index
//! files with out-of-order or out-of-range entries under a valid CRC or well-formed entries that
//! lie about the log, 1 GiB sparse index files, a 10 GiB sparse segment, symbolic links to outside
//! for a segment, a partition directory, the quarantine directory, the catalog and the other
//! metadata files, directories where files should be, oddly named segment files, garbage
//! `partition.metadata`, catalogs with a valid CRC that name topics `../outside/evil` or with
//! impossible partition counts — and opens the directory in each of three modes: after a clean
//! close (the trusted path), without the clean-shutdown marker but with the recovery-point
//! checkpoint, and without either (the verified path). It then asserts precisely what happens:
//! either `Log::open` fails with `Error::Corrupt` naming the right file (or `Error::Io` naming it,
//! for things that are not files at all), or the log opens and every offset fetched one by one,
//! and a read chained from the log start, returns exactly the records appended or
//! `Error::Corrupt` naming the damaged segment — a fetch that makes no progress below the high
//! watermark, or returns other records, fails the test. Repairs are checked to the byte:
//! the log is cut at the damaged batch, the cut bytes are in `quarantine/` with later segments,
//! and the next append lands at the cut. After every case the tree next to the data directory is
//! compared, entry by entry and byte by byte, with its state before the open.
//!
//! Each case runs in a child process (see `tests/hostile_fixture/mod.rs`) with its heap capped
//! at 512 MiB (`RLIMIT_DATA`; file mappings do not count) and a watchdog, so an allocation sized
//! by a hostile field aborts only that case and is reported as such, as is a hang.

#[macro_use]
mod hostile_fixture;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use hostile_fixture::*;
use runnel::Error;
use runnel::format::index::{OffsetEntry, TimeEntry, decode_offset_index, encode_offset_index, encode_time_index};
use runnel::format::meta::{Catalog, TopicMeta, decode_catalog, encode_catalog};

// ---------------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------------

/// Replaces the catalog with `bytes`, opens, and expects `Error::Corrupt` naming the catalog,
/// with nothing in the data directory or outside it changed.
fn expect_catalog_refused(mode: Mode, bytes: &[u8], what: &str) {
    expect_catalog_refused_in(Fixture::new(mode), bytes, &format!("{what} ({mode:?})"));
}

/// [`expect_catalog_refused`] on a given fixture.
fn expect_catalog_refused_in(mut fx: Fixture, bytes: &[u8], what: &str) {
    fs::write(fx.data.join(CATALOG), bytes).expect("write catalog");
    fx.freeze_outside();
    let before = fx.data_snapshot();
    let result = try_open(&fx.data);
    fx.assert_outside_untouched();
    match result {
        Err(Error::Corrupt { path, .. }) if path == fx.data.join(CATALOG) => {}
        Err(other) => panic!("{what}: expected Corrupt naming the catalog, got {other:?}"),
        Ok(log) => {
            let topics = log.list_topics();
            drop(log);
            let after = fx.data_snapshot();
            let removed: Vec<_> = before.keys().filter(|k| !after.contains_key(*k)).collect();
            panic!("{what}: the open succeeded (topics {topics:?}); it removed from the data directory: {removed:?}")
        }
    }
    assert_same(&before, &fx.data_snapshot(), &format!("{what}: the data directory"));
}

fn real_catalog(fx: &Fixture) -> Vec<u8> {
    fs::read(fx.data.join(CATALOG)).expect("read catalog")
}

hostile_test! {
    fn catalog_with_wrong_magic_or_unknown_version_is_refused_as_corrupt() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let good = real_catalog(&Fixture::new(mode));
            let mut magic = good.clone();
            magic[0] = b'X';
            expect_catalog_refused(mode, &magic, "wrong magic");
            expect_catalog_refused(mode, b"NOTRUNNEL", "another file type");
            expect_catalog_refused(mode, &[], "an empty file");
            for version in [0u32, 2, u32::MAX] {
                let mut v = good.clone();
                v[8..12].copy_from_slice(&version.to_le_bytes());
                expect_catalog_refused(mode, &v, &format!("version {version}"));
            }
        }
    }
}

hostile_test! {
    fn catalog_lengths_past_the_end_are_refused_as_corrupt() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let good = real_catalog(&Fixture::new(mode));
            let body = good[20..].to_vec();
            for len in [u32::MAX, body.len() as u32 + 1, 1 << 30] {
                let mut b = good.clone();
                b[16..20].copy_from_slice(&len.to_le_bytes());
                expect_catalog_refused(mode, &b, &format!("body length {len}"));
            }
            expect_catalog_refused(mode, &good[..good.len() - 3], "a truncated catalog");
            // Inside a body with a valid CRC: a name length running past the end, a config count
            // with no configs behind it, a config value length past the end.
            let cat = decode_catalog(&good).expect("the fixture's catalog decodes");
            let last = cat.topics.last().expect("topics").clone();
            let mut prefix = cat.clone();
            prefix.topics.pop();
            let head = encode_catalog(&prefix)[20..].to_vec();
            let topic_head = |b: &mut Vec<u8>| {
                b[8..12].copy_from_slice(&(cat.topics.len() as u32).to_le_bytes());
                b.extend_from_slice(&last.id.to_le_bytes());
                b.extend_from_slice(&last.partitions.to_le_bytes());
            };
            let mut name_past_end = head.clone();
            topic_head(&mut name_past_end);
            name_past_end.extend_from_slice(&60_000u16.to_le_bytes());
            name_past_end.extend_from_slice(last.name.as_bytes());
            expect_catalog_refused(mode, &catalog_bytes(1, &name_past_end), "a name length past the end (valid CRC)");
            let mut configs_missing = head.clone();
            topic_head(&mut configs_missing);
            configs_missing.extend_from_slice(&(last.name.len() as u16).to_le_bytes());
            configs_missing.extend_from_slice(last.name.as_bytes());
            configs_missing.extend_from_slice(&u16::MAX.to_le_bytes());
            expect_catalog_refused(mode, &catalog_bytes(1, &configs_missing), "65535 configs announced, none present (valid CRC)");
            let mut value_past_end = configs_missing.clone();
            let n = value_past_end.len();
            value_past_end[n - 2..].copy_from_slice(&1u16.to_le_bytes());
            value_past_end.extend_from_slice(&12u16.to_le_bytes());
            value_past_end.extend_from_slice(b"retention.ms");
            value_past_end.extend_from_slice(&u16::MAX.to_le_bytes());
            value_past_end.extend_from_slice(b"1000");
            expect_catalog_refused(mode, &catalog_bytes(1, &value_past_end), "a config value length past the end (valid CRC)");
        }
    }
}

hostile_test! {
    fn catalog_with_a_huge_topic_count_is_refused_without_allocating_for_it() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let good = real_catalog(&Fixture::new(mode));
            let mut body = good[20..].to_vec();
            for count in [u32::MAX, 1 << 28, 3] {
                body[8..12].copy_from_slice(&count.to_le_bytes());
                expect_catalog_refused(mode, &catalog_bytes(1, &body), &format!("topic count {count} (valid CRC)"));
            }
        }
    }
}

hostile_test! {
    fn gigantic_sparse_catalog_is_refused_without_reading_it() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            let f = fs::OpenOptions::new().write(true).open(fx.data.join(CATALOG)).expect("catalog");
            f.set_len(1 << 30).expect("set_len");
            drop(f);
            fx.freeze_outside();
            let e = open_err(&fx.data);
            assert_corrupt_at(&e, &fx.data.join(CATALOG));
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn catalog_as_a_symbolic_link_is_refused_even_to_a_valid_catalog() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            let copy = fx.outside.join("catalog-copy");
            fs::rename(fx.data.join(CATALOG), &copy).expect("move the catalog out");
            symlink(&copy, fx.data.join(CATALOG)).expect("symlink");
            fx.freeze_outside();
            let before = fx.data_snapshot();
            let e = open_err(&fx.data);
            assert_io_at(&e, &fx.data.join(CATALOG));
            assert_same(&before, &fx.data_snapshot(), "the data directory");
            fx.assert_outside_untouched();
            // A dangling link too.
            fs::remove_file(fx.data.join(CATALOG)).expect("unlink");
            symlink(fx.outside.join("no-such-catalog"), fx.data.join(CATALOG)).expect("symlink");
            fx.freeze_outside();
            assert_io_at(&open_err(&fx.data), &fx.data.join(CATALOG));
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn directory_in_place_of_the_catalog_is_refused() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            fs::remove_file(fx.data.join(CATALOG)).expect("unlink");
            fs::create_dir(fx.data.join(CATALOG)).expect("mkdir");
            fs::write(fx.data.join(CATALOG).join("inside"), b"x").expect("file inside");
            fx.freeze_outside();
            let before = fx.data_snapshot();
            assert_io_at(&open_err(&fx.data), &fx.data.join(CATALOG));
            assert_same(&before, &fx.data_snapshot(), "the data directory");
            fx.assert_outside_untouched();
        }
    }
}

/// The fixture's catalog with one more topic.
fn with_topic(cat: &Catalog, name: &str, partitions: u32) -> Catalog {
    let mut c = cat.clone();
    c.topics.push(TopicMeta { id: c.next_topic_id, name: name.to_string(), partitions, config: Vec::new() });
    c.next_topic_id += 1;
    c
}

fn catalog_of(mode: Mode) -> Catalog {
    decode_catalog(&real_catalog(&Fixture::new(mode))).expect("the fixture's catalog decodes")
}

hostile_test! {
    fn catalog_topic_names_that_escape_the_data_directory_are_refused_and_nothing_is_made_outside() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let cat = catalog_of(mode);
            for name in ["../outside/evil", "../evil", "a/b", "..", "."] {
                expect_catalog_refused(mode, &encode_catalog(&with_topic(&cat, name, 1)), &format!("topic name {name:?}"));
            }
            // An absolute name, pointing into this fixture's own outside directory.
            let fx = Fixture::new(mode);
            let name = format!("{}/evil", fx.outside.display());
            let bytes = encode_catalog(&with_topic(&cat, &name, 1));
            expect_catalog_refused_in(fx, &bytes, &format!("topic name {name:?} ({mode:?})"));
        }
    }
}

hostile_test! {
    fn catalog_topic_names_that_break_the_naming_rules_are_refused() {
        let cat = catalog_of(Mode::Clean);
        for name in ["", "a b", "tab\there", "new\nline", &"x".repeat(250), "\u{fc}", "__reserved"] {
            expect_catalog_refused(Mode::Clean, &encode_catalog(&with_topic(&cat, name, 1)), &format!("topic name {name:?}"));
        }
    }
}

hostile_test! {
    fn catalog_with_an_impossible_partition_count_is_refused_without_deleting_or_allocating() {
        // 0 would make the open remove the topic's directory as a leftover; u32::MAX would
        // reserve 32 GiB and create a directory per partition.
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for partitions in [0, 10_001, 1 << 24, u32::MAX] {
                let mut cat = catalog_of(mode);
                cat.topics.iter_mut().find(|t| t.name == TOPIC).expect("t").partitions = partitions;
                expect_catalog_refused(mode, &encode_catalog(&cat), &format!("{partitions} partitions"));
            }
            let mut cat = catalog_of(mode);
            cat.topics.iter_mut().find(|t| t.name == "__consumer_offsets").expect("internal").partitions = 2;
            expect_catalog_refused(mode, &encode_catalog(&cat), "2 partitions for __consumer_offsets");
        }
    }
}

hostile_test! {
    fn catalog_with_an_invalid_topic_config_is_refused_as_corrupt() {
        for (k, v) in [("segment.bytes", "0"), ("no.such.config", "1"), ("retention.ms", "soon")] {
            let mut cat = catalog_of(Mode::Clean);
            cat.topics.iter_mut().find(|t| t.name == TOPIC).expect("t").config.push((k.to_string(), v.to_string()));
            expect_catalog_refused(Mode::Clean, &encode_catalog(&cat), &format!("config {k}={v}"));
        }
    }
}

hostile_test! {
    fn catalog_listing_a_topic_or_an_id_twice_is_refused() {
        let cat = catalog_of(Mode::Clean);
        let t = cat.topics.iter().find(|t| t.name == TOPIC).expect("t").clone();
        let mut twice = cat.clone();
        twice.topics.push(t.clone());
        expect_catalog_refused(Mode::Clean, &encode_catalog(&twice), "topic t listed twice");
        let mut same_id = with_topic(&cat, "other", 1);
        same_id.topics.last_mut().expect("other").id = t.id;
        expect_catalog_refused(Mode::Clean, &encode_catalog(&same_id), "two topics with one id");
    }
}

// ---------------------------------------------------------------------------------------------
// Batch headers
// ---------------------------------------------------------------------------------------------

/// The log was cut at `batch` of segment `seg`: everything before reads back, the rest of that
/// segment is in quarantine with a report, later segments were moved there, and the next append
/// lands at the cut and survives a reopen.
fn assert_repaired(fx: &Fixture, log: runnel::Log, seg: usize, batch: BatchLoc, damaged_file: &[u8], what: &str) {
    let cut = batch.base_offset;
    let report = fx.read_report(&log);
    report.assert_all_intact(cut);
    let later = fx.segments.len() - seg - 1;
    let rr = log.recovery_report();
    let r = &rr.iter().find(|(t, p, _)| t == TOPIC && *p == 0).unwrap_or_else(|| panic!("{what}: no recovery report for t-0: {rr:?}")).2;
    assert_eq!(r.bytes_quarantined, fx.segments[seg].size - batch.pos, "{what}: bytes quarantined");
    assert_eq!(r.segments_quarantined, later, "{what}: later segments quarantined");
    let qdir = fx.data.join(QUARANTINE).join(format!("{TOPIC}-0"));
    let base = fx.segments[seg].base;
    let bin = fs::read(qdir.join(format!("{base:020}-{}.bin", batch.pos))).expect("the quarantined tail");
    assert_eq!(bin, &damaged_file[batch.pos as usize..], "{what}: the quarantined bytes are the cut bytes");
    let report_text = fs::read_to_string(qdir.join(format!("{base:020}-{}.report", batch.pos))).expect("the tail report");
    assert!(report_text.contains("kind=tail") && report_text.contains("reason="), "{what}: {report_text}");
    for s in &fx.segments[seg + 1..] {
        assert!(qdir.join(format!("{:020}-log", s.base)).is_file(), "{what}: segment {} moved to quarantine", s.base);
    }
    append_lands_at(&log, cut);
    log.close().expect("close");
    let mut expected = fx.expected[..cut as usize].to_vec();
    expected.push(Rec {
        offset: cut,
        timestamp: timestamp_of(cut),
        key: None,
        value: Some(b"after recovery".to_vec()),
        headers: Vec::new(),
    });
    let log = open_ok(&fx.data);
    read_report(&log, &expected).assert_all_intact(cut + 1);
    log.close().expect("close");
}

/// The log opened trusting segment `seg`, which holds the damaged `batch`: offsets in that batch
/// fetch as `Corrupt` naming the segment, other offsets of the segment read intact or as
/// `Corrupt`, and every other offset reads intact.
fn assert_trusted_with_damage(fx: &Fixture, log: &runnel::Log, seg: usize, batch: BatchLoc, what: &str) {
    let report = fx.read_report(log);
    let end = fx.end_offset();
    assert_eq!((report.log_start, report.high_watermark, report.log_end), (0, end, end), "{what}: nothing was cut");
    let rr = log.recovery_report();
    assert!(rr.iter().all(|(_, _, r)| r.bytes_quarantined == 0 && r.segments_quarantined == 0), "{what}: nothing was cut: {rr:?}");
    let path = fx.seg_file(seg, "log");
    let s = &fx.segments[seg];
    for (o, got) in &report.per_offset {
        let in_batch = (batch.base_offset..batch.next_offset).contains(o);
        let in_segment = (s.base..s.next_offset()).contains(o);
        let corrupt_here = *got == Got::Corrupt(path.clone());
        if in_batch {
            assert!(corrupt_here, "{what}: offset {o} in the damaged batch fetched as {got:?}, not Corrupt naming {}", path.display());
        } else if in_segment {
            assert!(*got == Got::Intact || corrupt_here, "{what}: offset {o} in the damaged segment fetched as {got:?}");
        } else {
            assert_eq!(*got, Got::Intact, "{what}: offset {o} outside the damaged segment");
        }
    }
    assert_eq!(report.chained_stop, Some(Got::Corrupt(path)), "{what}: the chained read stops at the damaged segment");
    assert!((s.base..=batch.base_offset).contains(&(report.chained.len() as u64)), "{what}: the chained read got up to the damage");
}

/// Damages `batch` of segment `seg`, opens in `mode`, and checks the outcome: repaired when the
/// segment is verified, `Corrupt` on fetch when it is trusted.
fn damaged_batch_case(mode: Mode, seg_of: impl Fn(&Fixture) -> usize, batch_of: impl Fn(&SegLoc) -> BatchLoc, damage: Damage) -> bool {
    let mut fx = Fixture::new(mode);
    let seg = seg_of(&fx);
    let batch = batch_of(&fx.segments[seg]);
    fx.damage(seg, batch, damage);
    let damaged_file = fs::read(fx.seg_file(seg, "log")).expect("read");
    fx.freeze_outside();
    let what = format!("{damage:?} at byte {} of segment {seg} ({mode:?})", batch.pos);
    let log = open_ok(&fx.data);
    let last = seg == fx.segments.len() - 1;
    // Whether the open verifies this segment: always without marker and checkpoint; for the last
    // segment also when the checkpoint's recovery point is in it; and after a clean close when the
    // tail check (from the last index entry) sees the damage.
    let last_index_pos = {
        let ix = fs::read(fx.seg_file(seg, "index")).expect("index");
        decode_offset_index(&ix, fx.segments[seg].base, fx.segments[seg].size).expect("index").last().map_or(0, |e| u64::from(e.position))
    };
    let verified = match mode {
        Mode::NoMarkerNoCheckpoint => true,
        Mode::NoMarker => last,
        Mode::Clean => last && batch.pos >= last_index_pos,
    };
    if verified {
        assert_repaired(&fx, log, seg, batch, &damaged_file, &what);
    } else {
        assert_trusted_with_damage(&fx, &log, seg, batch, &what);
        log.close().expect("close");
    }
    fx.assert_outside_untouched();
    verified
}

fn last_seg(fx: &Fixture) -> usize {
    fx.segments.len() - 1
}

hostile_test! {
    fn damaged_final_batch_of_the_last_segment_is_cut_and_quarantined() {
        for mode in MODES {
            for damage in DAMAGES {
                let verified = damaged_batch_case(mode, last_seg, |s| *s.batches.last().expect("batch"), damage);
                assert!(verified, "the final batch is always verified");
            }
        }
    }
}

hostile_test! {
    fn damaged_first_batch_of_the_last_segment_is_cut_when_verified_and_corrupt_when_trusted() {
        for mode in MODES {
            for damage in DAMAGES {
                let verified = damaged_batch_case(mode, last_seg, |s| s.batches[0], damage);
                assert_eq!(verified, mode != Mode::Clean, "only a clean close trusts the start of the last segment");
            }
        }
    }
}

hostile_test! {
    fn damaged_batch_in_a_sealed_segment_is_cut_when_verified_and_corrupt_on_fetch_when_trusted() {
        // In the second segment: batch 0, batch 1 (not indexed: fetches of the batches after it
        // scan from the segment start and must step over it) and the final batch.
        for mode in MODES {
            for damage in DAMAGES {
                for b in [0, 1, usize::MAX] {
                    let verified = damaged_batch_case(mode, |_| 1, |s| s.batches[b.min(s.batches.len() - 1)], damage);
                    assert_eq!(verified, mode == Mode::NoMarkerNoCheckpoint, "sealed segments below the recovery point are trusted");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Index files
// ---------------------------------------------------------------------------------------------

/// Checks `offset_for_timestamp` for every record (timestamps grow with offsets).
fn assert_timestamps_resolve(fx: &Fixture, log: &runnel::Log, what: &str) {
    for r in &fx.expected {
        for ts in [r.timestamp, r.timestamp - 3] {
            let got = no_panic("offset_for_timestamp", || log.offset_for_timestamp(TOPIC, 0, ts)).expect("offset_for_timestamp");
            assert_eq!(got, Some((r.offset, r.timestamp)), "{what}: offset_for_timestamp({ts})");
        }
    }
    let after = fx.expected.last().expect("records").timestamp + 1;
    assert_eq!(log.offset_for_timestamp(TOPIC, 0, after).expect("offset_for_timestamp"), None, "{what}");
}

/// Asserts that the segment's `.index` on disk is valid for its log: decodes, and every entry
/// names the batch that starts at its position.
fn assert_index_valid_on_disk(fx: &Fixture, seg: usize, what: &str) {
    let s = &fx.segments[seg];
    let bytes = fs::read(fx.seg_file(seg, "index")).expect("index");
    assert!(bytes.len() < 64 << 10, "{what}: the .index was rewritten ({} bytes)", bytes.len());
    let entries = decode_offset_index(&bytes, s.base, s.size).unwrap_or_else(|e| panic!("{what}: the .index on disk is invalid: {e}"));
    for e in entries {
        let b =
            s.batches.iter().find(|b| b.pos == u64::from(e.position)).unwrap_or_else(|| panic!("{what}: entry {e:?} is not at a batch"));
        assert_eq!(b.base_offset, s.base + u64::from(e.relative_offset), "{what}: entry {e:?}");
    }
    let t = fs::metadata(fx.seg_file(seg, "timeindex")).expect("timeindex").len();
    assert!(t < 64 << 10, "{what}: the .timeindex was rewritten ({t} bytes)");
}

/// Valid time entries for the given batches (the largest timestamp before each).
fn time_entries(s: &SegLoc, batches: &[usize]) -> Vec<TimeEntry> {
    batches
        .iter()
        .map(|&i| TimeEntry {
            timestamp: timestamp_of(s.batches[i].base_offset - 1),
            relative_offset: (s.batches[i].base_offset - s.base) as u32,
        })
        .collect()
}

fn entry(s: &SegLoc, i: usize) -> OffsetEntry {
    OffsetEntry { relative_offset: (s.batches[i].base_offset - s.base) as u32, position: s.batches[i].pos as u32 }
}

/// An index variant: what to write as `.index` and `.timeindex` of a segment.
type IndexVariant = (&'static str, fn(&SegLoc) -> (Vec<u8>, Vec<u8>));

fn invalid_index_variants() -> Vec<IndexVariant> {
    vec![
        ("offset entries out of order", |s| {
            (
                encode_offset_index(s.base, s.size, &[entry(s, 3), entry(s, 1)]),
                encode_time_index(s.base, i64::MAX, &time_entries(s, &[1, 3])),
            )
        }),
        ("an offset entry past the end of the log", |s| {
            let beyond = OffsetEntry { relative_offset: entry(s, 3).relative_offset, position: s.size as u32 + 4096 };
            (encode_offset_index(s.base, s.size, &[entry(s, 1), beyond]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[1, 3])))
        }),
        ("an offset entry at u32::MAX", |s| {
            let beyond = OffsetEntry { relative_offset: entry(s, 3).relative_offset, position: u32::MAX };
            (encode_offset_index(s.base, s.size, &[entry(s, 1), beyond]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[1, 3])))
        }),
        ("an offset entry at position 0", |s| {
            let zero = OffsetEntry { relative_offset: 0, position: 0 };
            (encode_offset_index(s.base, s.size, &[zero, entry(s, 2)]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[0, 2])))
        }),
        ("duplicate offset entries", |s| {
            let dup = OffsetEntry { relative_offset: entry(s, 1).relative_offset, position: entry(s, 2).position };
            (encode_offset_index(s.base, s.size, &[entry(s, 1), dup]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[1, 2])))
        }),
        ("an index written for another segment", |s| {
            (encode_offset_index(s.base + 1, s.size, &[entry(s, 2)]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[2])))
        }),
        ("an index written for a longer log", |s| {
            (encode_offset_index(s.base, s.size + 100, &[entry(s, 2)]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[2])))
        }),
        ("time entries out of order", |s| {
            let mut t = time_entries(s, &[1, 3]);
            t.swap(0, 1);
            (encode_offset_index(s.base, s.size, &[entry(s, 1), entry(s, 3)]), encode_time_index(s.base, i64::MAX, &t))
        }),
        ("time entries with falling timestamps", |s| {
            let mut t = time_entries(s, &[1, 3]);
            t[1].timestamp = t[0].timestamp - 1000;
            (encode_offset_index(s.base, s.size, &[entry(s, 1), entry(s, 3)]), encode_time_index(s.base, i64::MAX, &t))
        }),
        ("a time entry for an offset no batch starts at", |s| {
            let t = [TimeEntry { timestamp: timestamp_of(s.batches[1].base_offset - 1), relative_offset: u32::MAX }];
            (encode_offset_index(s.base, s.size, &[entry(s, 1)]), encode_time_index(s.base, i64::MAX, &t))
        }),
        ("more time entries than offset entries", |s| {
            (encode_offset_index(s.base, s.size, &[entry(s, 1)]), encode_time_index(s.base, i64::MAX, &time_entries(s, &[1, 2, 3])))
        }),
        ("garbage", |_| (vec![0xA5; 1000], vec![0x5A; 1200])),
        ("empty files", |_| (Vec::new(), Vec::new())),
    ]
}

hostile_test! {
    fn index_files_with_invalid_entries_under_a_valid_crc_are_rebuilt_and_fetch_is_correct() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for (name, make) in invalid_index_variants() {
                for seg in [1, usize::MAX] {
                    let mut fx = Fixture::new(mode);
                    let seg = seg.min(fx.segments.len() - 1);
                    let (ix, tix) = make(&fx.segments[seg]);
                    fs::write(fx.seg_file(seg, "index"), ix).expect("write index");
                    fs::write(fx.seg_file(seg, "timeindex"), tix).expect("write timeindex");
                    fx.freeze_outside();
                    let what = format!("{name} in segment {seg} ({mode:?})");
                    let log = open_ok(&fx.data);
                    let report = fx.read_report(&log);
                    assert!(report.not_intact().is_empty(), "{what}: {:?}", report.not_intact());
                    report.assert_all_intact(fx.end_offset());
                    assert_timestamps_resolve(&fx, &log, &what);
                    log.close().expect("close");
                    assert_index_valid_on_disk(&fx, seg, &what);
                    fx.assert_outside_untouched();
                }
            }
        }
    }
}

/// Writes a `.index` with `entries`, and a valid `.timeindex` with as many entries, for `seg`.
fn write_index(fx: &Fixture, seg: usize, entries: &[OffsetEntry]) {
    let s = &fx.segments[seg];
    let times: Vec<TimeEntry> = entries
        .iter()
        .map(|e| TimeEntry { timestamp: i64::MIN + 1 + i64::from(e.relative_offset), relative_offset: e.relative_offset })
        .collect();
    fs::write(fx.seg_file(seg, "index"), encode_offset_index(s.base, s.size, entries)).expect("write index");
    fs::write(fx.seg_file(seg, "timeindex"), encode_time_index(s.base, timestamp_of(s.next_offset() - 1), &times))
        .expect("write timeindex");
}

hostile_test! {
    fn well_formed_index_entries_that_lie_about_the_log_do_not_change_what_fetch_returns() {
        // Entries that decode (increasing, inside the log, valid CRC) but name the wrong offset
        // for a batch, or a position inside a batch: a fetch must not skip records or fail.
        type Lie = fn(&SegLoc) -> OffsetEntry;
        let lies: [(&str, Lie); 3] = [
            ("an entry naming batch 1's offset at batch 3's position", |s| OffsetEntry { relative_offset: entry(s, 1).relative_offset, position: entry(s, 3).position }),
            ("an entry naming batch 3's offset at batch 1's position", |s| OffsetEntry { relative_offset: entry(s, 3).relative_offset, position: entry(s, 1).position }),
            ("an entry pointing 5 bytes into batch 2", |s| OffsetEntry { relative_offset: entry(s, 2).relative_offset, position: entry(s, 2).position + 5 }),
        ];
        for mode in [Mode::Clean, Mode::NoMarker] {
            for (name, lie) in lies {
                for seg in [1, usize::MAX] {
                    let mut fx = Fixture::new(mode);
                    let seg = seg.min(fx.segments.len() - 1);
                    let s = fx.segments[seg].clone();
                    write_index(&fx, seg, &[lie(&s)]);
                    assert!(decode_offset_index(&fs::read(fx.seg_file(seg, "index")).expect("index"), s.base, s.size).is_ok(), "well formed");
                    fx.freeze_outside();
                    let what = format!("{name} in segment {seg} ({mode:?})");
                    let log = open_ok(&fx.data);
                    let report = fx.read_report(&log);
                    assert!(report.not_intact().is_empty(), "{what}: {:?}", report.not_intact());
                    report.assert_all_intact(fx.end_offset());
                    assert_timestamps_resolve(&fx, &log, &what);
                    log.close().expect("close");
                    fx.assert_outside_untouched();
                }
            }
        }
    }
}

hostile_test! {
    fn gigantic_sparse_index_files_are_rebuilt_without_being_read() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            let last = fx.segments.len() - 1;
            for seg in [1, last] {
                for ext in ["index", "timeindex"] {
                    let f = fs::OpenOptions::new().write(true).open(fx.seg_file(seg, ext)).expect("index");
                    f.set_len(1 << 30).expect("set_len 1 GiB");
                }
            }
            fx.freeze_outside();
            let what = format!("1 GiB index files ({mode:?})");
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            assert_timestamps_resolve(&fx, &log, &what);
            log.close().expect("close");
            for seg in [1, last] {
                assert_index_valid_on_disk(&fx, seg, &what);
            }
            fx.assert_outside_untouched();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gigantic segment files
// ---------------------------------------------------------------------------------------------

hostile_test! {
    fn zero_tail_of_preallocation_size_is_dropped_without_a_report() {
        // 16 MiB of zeros after the data: within what preallocation leaves (two 8 MiB steps).
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for seg in [1, usize::MAX] {
                let mut fx = Fixture::new(mode);
                let seg = seg.min(fx.segments.len() - 1);
                fs::OpenOptions::new().write(true).open(fx.seg_file(seg, "log")).and_then(|f| f.set_len(16 << 20)).expect("set_len");
                fx.freeze_outside();
                let log = open_ok(&fx.data);
                fx.read_report(&log).assert_all_intact(fx.end_offset());
                let rr = log.recovery_report();
                assert!(rr.iter().all(|(_, _, r)| r.bytes_quarantined == 0 && r.segments_quarantined == 0), "zeros are not data: {rr:?}");
                assert_eq!(fs::metadata(fx.seg_file(seg, "log")).expect("log").len(), fx.segments[seg].size, "the zeros were dropped at open");
                append_lands_at(&log, fx.end_offset());
                log.close().expect("close");
                assert!(!fx.data.join(QUARANTINE).exists(), "nothing was quarantined");
                fx.assert_outside_untouched();
            }
        }
    }
}

/// Checks a log opened over segment `seg` extended to `huge` bytes (zeros after its batches):
/// the log is cut at the end of that segment's batches, the oversized file was moved to
/// quarantine whole (a rename: 10 GiB are neither copied nor allocated), its batches were written
/// back in its place, later segments were moved to quarantine, and the peak resident memory of
/// the open stayed far below the file's size.
fn assert_cut_by_moving_the_file(fx: &Fixture, log: runnel::Log, seg: usize, huge: u64, rss_growth: u64, what: &str) {
    let s = &fx.segments[seg];
    assert!(rss_growth < 1 << 30, "{what}: the peak RSS grew by {} MiB during open: the zeros were read", rss_growth >> 20);
    fx.read_report(&log).assert_all_intact(s.next_offset());
    let rr = log.recovery_report();
    let r = &rr.iter().find(|(t, p, _)| t == TOPIC && *p == 0).unwrap_or_else(|| panic!("{what}: no report for t-0: {rr:?}")).2;
    assert_eq!(r.bytes_quarantined, huge - s.size, "{what}: bytes quarantined");
    assert_eq!(r.segments_quarantined, fx.segments.len() - seg - 1, "{what}: later segments quarantined");
    assert_eq!(fs::metadata(fx.seg_file(seg, "log")).expect("log").len(), s.size, "{what}: the batches are back in place");
    let qdir = fx.data.join(QUARANTINE).join(format!("{TOPIC}-0"));
    let moved = qdir.join(format!("{:020}-{}-whole.log", s.base, s.size));
    assert_eq!(fs::metadata(&moved).unwrap_or_else(|e| panic!("{what}: {}: {e}", moved.display())).len(), huge, "{what}: moved whole");
    let report = fs::read_to_string(qdir.join(format!("{:020}-{}.report", s.base, s.size))).expect("report");
    assert!(report.contains("reason="), "{what}: {report}");
    for later in &fx.segments[seg + 1..] {
        assert!(qdir.join(format!("{:020}-log", later.base)).is_file(), "{what}: segment {} moved to quarantine", later.base);
    }
    append_lands_at(&log, s.next_offset());
    log.close().expect("close");
}

hostile_test! {
    fn sparse_10_gib_segment_is_cut_by_moving_the_file_not_by_reading_or_copying_it() {
        let huge = 10u64 << 30;
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for seg in [1, usize::MAX] {
                let mut fx = Fixture::new(mode);
                let seg = seg.min(fx.segments.len() - 1);
                fs::OpenOptions::new().write(true).open(fx.seg_file(seg, "log")).and_then(|f| f.set_len(huge)).expect("set_len 10 GiB");
                fx.freeze_outside();
                reset_peak_rss();
                let rss = peak_rss();
                let log = open_ok(&fx.data);
                let grown = peak_rss().saturating_sub(rss);
                assert_cut_by_moving_the_file(&fx, log, seg, huge, grown, &format!("10 GiB segment {seg} ({mode:?})"));
                fx.assert_outside_untouched();
            }
        }
    }
}

hostile_test! {
    fn index_vouching_for_a_10_gib_segment_does_not_make_open_allocate_or_read_it() {
        // After a clean close the last segment's tail is checked from its last index entry; here
        // the .index (valid CRC) claims the 10 GiB size of the sparse file.
        let mut fx = Fixture::new(Mode::Clean);
        let last = fx.segments.len() - 1;
        let s = fx.segments[last].clone();
        let huge = 10u64 << 30;
        let entries = decode_offset_index(&fs::read(fx.seg_file(last, "index")).expect("index"), s.base, s.size).expect("index");
        fs::OpenOptions::new().write(true).open(fx.seg_file(last, "log")).and_then(|f| f.set_len(huge)).expect("set_len 10 GiB");
        fs::write(fx.seg_file(last, "index"), encode_offset_index(s.base, huge, &entries)).expect("write index");
        fx.freeze_outside();
        reset_peak_rss();
        let rss = peak_rss();
        let log = open_ok(&fx.data);
        let grown = peak_rss().saturating_sub(rss);
        assert_cut_by_moving_the_file(&fx, log, last, huge, grown, "an index vouching for 10 GiB");
        fx.assert_outside_untouched();
    }
}

// ---------------------------------------------------------------------------------------------
// Symbolic links and directories where files belong
// ---------------------------------------------------------------------------------------------

hostile_test! {
    fn segment_file_symlinked_outside_is_refused_as_corrupt() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for (seg, ext) in [(usize::MAX, "log"), (1, "log"), (1, "index"), (usize::MAX, "timeindex")] {
                let mut fx = Fixture::new(mode);
                let seg = seg.min(fx.segments.len() - 1);
                let path = fx.seg_file(seg, ext);
                let target = fx.outside.join(format!("segment-copy.{ext}"));
                fs::rename(&path, &target).expect("move out");
                // A zero tail outside: recovery following the link would truncate it.
                if ext == "log" {
                    let f = fs::OpenOptions::new().write(true).open(&target).expect("copy");
                    f.set_len(fx.segments[seg].size + 8192).expect("zero tail");
                }
                symlink(&target, &path).expect("symlink");
                fx.freeze_outside();
                let before = fx.data_snapshot();
                let e = open_err(&fx.data);
                assert_corrupt_at(&e, &path);
                assert_same(&before, &fx.data_snapshot(), "the data directory");
                fx.assert_outside_untouched();
            }
        }
    }
}

hostile_test! {
    fn partition_directory_symlinked_outside_is_refused_and_the_target_untouched() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for (dir, relative) in [("t-0", false), ("t-0", true), ("__consumer_offsets-0", false)] {
                let mut fx = Fixture::new(mode);
                let pdir = fx.data.join(dir);
                let copy = fx.outside.join(format!("{dir}-copy"));
                copy_tree(&pdir, &copy);
                // Make following the link tempting: a zero tail to trim, indexes to rebuild.
                if dir == "t-0" {
                    let last = fx.segments.len() - 1;
                    let name = format!("{:020}", fx.segments[last].base);
                    let f = fs::OpenOptions::new().write(true).open(copy.join(format!("{name}.log"))).expect("copy");
                    f.set_len(fx.segments[last].size + 8192).expect("zero tail");
                    fs::remove_file(copy.join(format!("{name}.index"))).expect("unlink index");
                }
                fs::remove_dir_all(&pdir).expect("remove");
                if relative {
                    symlink(Path::new("../outside").join(format!("{dir}-copy")), &pdir).expect("symlink");
                } else {
                    symlink(&copy, &pdir).expect("symlink");
                }
                fx.freeze_outside();
                let before = fx.data_snapshot();
                let e = open_err(&fx.data);
                assert_corrupt_at(&e, &pdir);
                assert_same(&before, &fx.data_snapshot(), "the data directory");
                fx.assert_outside_untouched();
            }
        }
    }
}

/// Garbage over the final batch of the last segment, so that any open must quarantine it.
fn garbage_tail(fx: &Fixture) {
    let last = fx.segments.len() - 1;
    let b = *fx.segments[last].batches.last().expect("batch");
    fx.patch(last, b.pos + 20, &[0xEE; 30]);
}

hostile_test! {
    fn quarantine_symlinked_outside_is_refused_before_anything_is_cut() {
        for mode in MODES {
            let mut fx = Fixture::new(mode);
            garbage_tail(&fx);
            let target = fx.outside.join("q");
            fs::create_dir(&target).expect("mkdir");
            symlink(&target, fx.data.join(QUARANTINE)).expect("symlink");
            fx.freeze_outside();
            let before = fx.data_snapshot();
            let e = open_err(&fx.data);
            assert_io_at(&e, &fx.data.join(QUARANTINE));
            assert_eq!(fs::read_dir(&target).expect("read").count(), 0, "nothing was written to the link's target");
            assert_same(&before, &fx.data_snapshot(), "the data directory (nothing cut without its quarantine copy)");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn partition_quarantine_directory_symlinked_outside_is_refused() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            garbage_tail(&fx);
            let target = fx.outside.join("q");
            fs::create_dir(&target).expect("mkdir");
            fs::create_dir(fx.data.join(QUARANTINE)).expect("mkdir");
            let link = fx.data.join(QUARANTINE).join(format!("{TOPIC}-0"));
            symlink(&target, &link).expect("symlink");
            fx.freeze_outside();
            let before = fx.data_snapshot();
            let e = open_err(&fx.data);
            assert_io_at(&e, &link);
            assert_eq!(fs::read_dir(&target).expect("read").count(), 0, "nothing was written to the link's target");
            assert_same(&before, &fx.data_snapshot(), "the data directory");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn quarantine_file_names_taken_by_symlinks_are_skipped_not_followed() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            garbage_tail(&fx);
            let last = fx.segments.len() - 1;
            let b = *fx.segments[last].batches.last().expect("batch");
            let qdir = fx.data.join(QUARANTINE).join(format!("{TOPIC}-0"));
            fs::create_dir_all(&qdir).expect("mkdir");
            let stem = format!("{:020}-{}", fx.segments[last].base, b.pos);
            symlink(fx.outside.join("canary.txt"), qdir.join(format!("{stem}.report"))).expect("symlink");
            symlink(fx.outside.join("not-there.bin"), qdir.join(format!("{stem}.bin"))).expect("symlink");
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(b.base_offset);
            log.close().expect("close");
            assert!(qdir.join(format!("{stem}-1.bin")).is_file(), "the cut went to the next free name");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn quarantine_symlinked_outside_with_only_whole_segments_to_move_is_refused() {
        // The final batch of the second segment is zeroed: recovery drops the zeros (no tail to
        // quarantine) but must move every later segment to quarantine, which is a link.
        let mut fx = Fixture::new(Mode::NoMarkerNoCheckpoint);
        let b = *fx.segments[1].batches.last().expect("batch");
        fx.patch(1, b.pos, &vec![0u8; b.len as usize]);
        let target = fx.outside.join("q");
        fs::create_dir(&target).expect("mkdir");
        symlink(&target, fx.data.join(QUARANTINE)).expect("symlink");
        fx.freeze_outside();
        let later: Vec<_> = (2..fx.segments.len()).map(|i| (fx.seg_file(i, "log"), fs::read(fx.seg_file(i, "log")).expect("read"))).collect();
        let e = open_err(&fx.data);
        assert_io_at(&e, &fx.data.join(QUARANTINE));
        assert_eq!(fs::read_dir(&target).expect("read").count(), 0, "nothing was written to the link's target");
        for (path, bytes) in later {
            assert_eq!(fs::read(&path).expect("later segments stay in place"), bytes);
        }
        fx.assert_outside_untouched();
    }
}

hostile_test! {
    fn metadata_files_as_symlinks_are_never_followed() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            // The lock file: refused.
            let mut fx = Fixture::new(mode);
            let _ = fs::remove_file(fx.data.join(".lock"));
            symlink(fx.outside.join("canary.txt"), fx.data.join(".lock")).expect("symlink");
            fx.freeze_outside();
            assert_io_at(&open_err(&fx.data), &fx.data.join(".lock"));
            fx.assert_outside_untouched();

            // The checkpoint: ignored at open (every segment verified), replaced at close.
            let mut fx = Fixture::new(mode);
            let copy = fx.outside.join("checkpoint-copy");
            fs::write(&copy, b"0\n1\nt 0 999999\n").expect("write");
            let _ = fs::remove_file(fx.data.join(CHECKPOINT));
            symlink(&copy, fx.data.join(CHECKPOINT)).expect("symlink");
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            assert!(fs::symlink_metadata(fx.data.join(CHECKPOINT)).expect("checkpoint").is_file(), "replaced by a file");
            fx.assert_outside_untouched();

            // The clean-shutdown marker: the link is removed, its target is not.
            let mut fx = Fixture::new(mode);
            let _ = fs::remove_file(fx.data.join(MARKER));
            symlink(fx.outside.join("canary.txt"), fx.data.join(MARKER)).expect("symlink");
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            fx.assert_outside_untouched();

            // A stale catalog.<pid>.tmp (the temporary file is named for the writing process):
            // not removed at open (it is not a file), and creating a topic fails on it rather
            // than writing through it.
            let mut fx = Fixture::new(mode);
            let tmp = format!("catalog.{}.tmp", std::process::id());
            symlink(fx.outside.join("canary.txt"), fx.data.join(&tmp)).expect("symlink");
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            let e = log.create_topic("u", 1, fixture_config()).expect_err("creating a topic writes the temporary catalog");
            assert_io_at(&e, &fx.data.join(&tmp));
            assert!(!fx.data.join("u-0").exists(), "the failed create left no partition directory");
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn directory_in_place_of_a_segment_file_is_refused_as_corrupt() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            for (seg, ext) in [(usize::MAX, "log"), (1, "log"), (1, "index"), (usize::MAX, "timeindex")] {
                let mut fx = Fixture::new(mode);
                let seg = seg.min(fx.segments.len() - 1);
                let path = fx.seg_file(seg, ext);
                fs::remove_file(&path).expect("unlink");
                fs::create_dir(&path).expect("mkdir");
                fx.freeze_outside();
                let before = fx.data_snapshot();
                assert_corrupt_at(&open_err(&fx.data), &path);
                assert_same(&before, &fx.data_snapshot(), "the data directory");
                fx.assert_outside_untouched();
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Odd names and partition.metadata
// ---------------------------------------------------------------------------------------------

hostile_test! {
    fn segment_files_with_unexpected_names_are_ignored_and_left_alone() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            let seg0 = fs::read(fx.seg_file(0, "log")).expect("read");
            let names = [
                "abc.log",
                "000.log",
                "000000000000000000001.log",
                "99999999999999999999.log",
                "00000000000000000000.log.bak",
                "0000000000000000000x.log",
                "+0000000000000000001.log",
                ".log",
                "abc.index",
                "000.timeindex",
            ];
            for n in names {
                fs::write(fx.pdir().join(n), &seg0).expect("write");
            }
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            for n in names {
                assert_eq!(fs::read(fx.pdir().join(n)).expect("still there"), seg0, "{n} left alone");
            }
            fx.assert_outside_untouched();
        }
    }
}

/// Turns `partition.metadata` at the given path into something else.
type MakeMetadata = Box<dyn Fn(&Path)>;

hostile_test! {
    fn garbage_partition_metadata_costs_no_data() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let variants: [(&str, MakeMetadata); 6] = [
                ("random bytes", Box::new(|p| fs::write(p, [0x9Fu8, 0, 0xFF, 10, 13, 0x80]).expect("write"))),
                ("empty", Box::new(|p| fs::write(p, b"").expect("write"))),
                ("an unknown version", Box::new(|p| fs::write(p, b"version: 9\ntopic_id: 2\n").expect("write"))),
                ("a huge topic id", Box::new(|p| fs::write(p, b"version: 0\ntopic_id: 99999999999999999999999\n").expect("write"))),
                ("1 GiB sparse", Box::new(|p| fs::File::create(p).and_then(|f| f.set_len(1 << 30)).expect("set_len"))),
                ("a directory", Box::new(|p| fs::remove_file(p).and_then(|()| fs::create_dir(p)).expect("mkdir"))),
            ];
            for (name, make) in &variants {
                let mut fx = Fixture::new(mode);
                make(&fx.pdir().join("partition.metadata"));
                fx.freeze_outside();
                let log = open_ok(&fx.data);
                let report = fx.read_report(&log);
                assert!(report.not_intact().is_empty(), "{name}: {:?}", report.not_intact());
                report.assert_all_intact(fx.end_offset());
                log.close().expect("close");
                fx.assert_outside_untouched();
            }
        }
    }
}

hostile_test! {
    fn partition_metadata_naming_another_topic_id_is_refused_as_corrupt() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            let meta = fx.pdir().join("partition.metadata");
            fs::write(&meta, b"version: 0\ntopic_id: 999\n").expect("write");
            fx.freeze_outside();
            let before = fx.data_snapshot();
            assert_corrupt_at(&open_err(&fx.data), &meta);
            assert_same(&before, &fx.data_snapshot(), "the data directory");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn stray_partition_like_entries_are_removed_or_left_alone_without_following_links() {
        for mode in [Mode::Clean, Mode::NoMarkerNoCheckpoint] {
            let mut fx = Fixture::new(mode);
            // A leftover of an unknown topic id, holding links to outside: removed, links and all,
            // without following them.
            let stray = fx.data.join("zzz-0");
            fs::create_dir(&stray).expect("mkdir");
            fs::write(stray.join("partition.metadata"), b"version: 0\ntopic_id: 999\n").expect("write");
            symlink(&fx.outside, stray.join("link-to-outside")).expect("symlink");
            symlink(fx.outside.join("canary.txt"), stray.join("00000000000000000000.log")).expect("symlink");
            // A partition-like link to a directory outside that looks like a leftover: never
            // followed, so neither removed nor read.
            let fake = fx.outside.join("fake-partition");
            fs::create_dir(&fake).expect("mkdir");
            fs::write(fake.join("partition.metadata"), b"version: 0\ntopic_id: 999\n").expect("write");
            fs::write(fake.join("keep.txt"), b"keep").expect("write");
            symlink(&fake, fx.data.join("zzz-1")).expect("symlink");
            // A directory that is not runnel's (no partition.metadata): left alone.
            fs::create_dir(fx.data.join("yyy-0")).expect("mkdir");
            fs::write(fx.data.join("yyy-0").join("mine.txt"), b"mine").expect("write");
            fx.freeze_outside();
            let log = open_ok(&fx.data);
            fx.read_report(&log).assert_all_intact(fx.end_offset());
            log.close().expect("close");
            assert!(!stray.exists(), "the leftover of an unknown topic was removed");
            assert!(fs::symlink_metadata(fx.data.join("zzz-1")).expect("link").file_type().is_symlink(), "the link was left alone");
            assert_eq!(fs::read(fx.data.join("yyy-0").join("mine.txt")).expect("left alone"), b"mine");
            fx.assert_outside_untouched();
        }
    }
}

hostile_test! {
    fn catalog_naming_a_topic_whose_directory_is_missing_recreates_it_inside() {
        // The benign counterpart of the escaping names above: a valid name whose directory is
        // gone gets a fresh, empty partition inside the data directory.
        let mut fx = Fixture::new(Mode::Clean);
        let mut cat = decode_catalog(&real_catalog(&fx)).expect("decode");
        let id = cat.next_topic_id;
        cat.topics.push(TopicMeta { id, name: "fresh".into(), partitions: 2, config: Vec::new() });
        cat.next_topic_id += 1;
        fs::write(fx.data.join(CATALOG), encode_catalog(&cat)).expect("write catalog");
        fx.freeze_outside();
        let log = open_ok(&fx.data);
        assert_eq!(log.partition_count("fresh").expect("fresh"), 2);
        assert_eq!(log.high_watermark("fresh", 1).expect("hw"), 0);
        fx.read_report(&log).assert_all_intact(fx.end_offset());
        log.close().expect("close");
        assert!(fx.data.join("fresh-1").is_dir());
        fx.assert_outside_untouched();
    }
}
