//! Retention: `retention.bytes` and `retention.ms` delete whole segments, oldest first, never the
//! active one; the log start offset moves and persists; readers holding a fetch keep their data.

mod common;

use common::{TestResult, config, make_unclean, now_ms, open, partition_dir, read_all, records_of, segment_files, values};
use runnel::{Acks, Error, Log, Record};

const HOUR_MS: i64 = 3_600_000;

/// 1 KiB segments holding three 300-byte records each, with the given retention settings.
fn topic(log: &Log, retention: &[(&str, &str)]) -> TestResult {
    let mut entries = vec![("segment.bytes", "1024"), ("max.message.bytes", "1024"), ("index.interval.bytes", "64")];
    entries.extend_from_slice(retention);
    log.create_topic("t", 1, config(&entries))?;
    Ok(())
}

/// Appends `n` records of 300 bytes with the given timestamp; returns their values.
fn append(log: &Log, n: usize, timestamp: i64) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let offset = log.log_end_offset("t", 0)?;
        let v = format!("{offset:0>300}");
        log.append("t", Some(0), &[Record::new(v.as_bytes()).with_timestamp(timestamp)], Acks::All)?;
        out.push(v);
    }
    Ok(out)
}

fn out_of_range_below(log: &Log, requested: u64, start: u64) {
    let hw = log.high_watermark("t", 0).unwrap_or_else(|e| panic!("{e}"));
    let r = log.fetch("t", 0, requested, 1 << 20);
    assert!(
        matches!(r, Err(Error::OffsetOutOfRange { requested: q, log_start, high_watermark }) if q == requested && log_start == start && high_watermark == hw),
        "fetch at {requested} with log start {start}: {r:?}"
    );
}

#[test]
fn retention_bytes_deletes_the_oldest_whole_segments_and_advances_the_log_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.bytes", "3000"), ("retention.ms", "-1")])?;
    let sent = append(&log, 40, now_ms())?;
    let pdir = partition_dir(dir.path(), "t", 0);
    let files = segment_files(&pdir)?;
    assert!(files.len() > 5, "{files:?}");
    let total = log.describe_topic("t")?.partitions[0].size_bytes;
    let sealed: u64 = files[..files.len() - 1].iter().map(|f| f.1).sum();
    let active = total - sealed;

    // What Kafka deletes: the oldest segments while the rest still holds retention.bytes.
    let mut sizes: Vec<u64> = files.iter().map(|f| f.1).collect();
    *sizes.last_mut().ok_or("no segment")? = active;
    let mut remaining = total;
    let mut expect_deleted = 0;
    while expect_deleted < files.len() - 1 && remaining - sizes[expect_deleted] >= 3000 {
        remaining -= sizes[expect_deleted];
        expect_deleted += 1;
    }
    assert!(expect_deleted > 0);

    assert_eq!(log.run_retention()?, expect_deleted);
    let start = files[expect_deleted].0;
    assert_eq!(log.log_start_offset("t", 0)?, start);
    let after = segment_files(&pdir)?;
    assert_eq!(after, files[expect_deleted..]);
    for (base, _) in &files[..expect_deleted] {
        for ext in ["log", "index", "timeindex"] {
            assert!(!pdir.join(format!("{base:020}.{ext}")).exists(), "{base:020}.{ext} is still there");
        }
    }
    let d = log.describe_topic("t")?.partitions[0].clone();
    assert_eq!((d.log_start_offset, d.segment_count, d.size_bytes), (start, files.len() - expect_deleted, remaining));
    assert!(d.size_bytes >= 3000, "retention keeps at least retention.bytes");

    out_of_range_below(&log, 0, start);
    out_of_range_below(&log, start - 1, start);
    let rest = read_all(&log, "t", 0)?;
    assert_eq!(rest.first().map(|r| r.offset), Some(start));
    assert_eq!(values(&rest), sent[start as usize..]);
    assert_eq!(log.run_retention()?, 0, "nothing more to delete");
    Ok(())
}

#[test]
fn retention_never_deletes_the_active_segment() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.bytes", "0"), ("retention.ms", "1")])?;
    // A lone active segment is never deleted, however old or large.
    append(&log, 2, 1_000)?;
    assert_eq!(log.run_retention()?, 0);
    assert_eq!(log.log_start_offset("t", 0)?, 0);

    let mut sent = vec![String::new(); 2];
    sent.extend(append(&log, 20, 1_000)?);
    let files = segment_files(&partition_dir(dir.path(), "t", 0))?;
    let (active_base, _) = *files.last().ok_or("no segment")?;
    assert_eq!(log.run_retention()?, files.len() - 1);
    assert_eq!(segment_files(&partition_dir(dir.path(), "t", 0))?.iter().map(|f| f.0).collect::<Vec<_>>(), [active_base]);
    assert_eq!(log.log_start_offset("t", 0)?, active_base);
    assert_eq!(log.describe_topic("t")?.partitions[0].segment_count, 1);
    let rest = read_all(&log, "t", 0)?;
    assert!(!rest.is_empty());
    assert_eq!(values(&rest), sent[active_base as usize..]);
    // Appends go on from the same offsets.
    let at = log.append("t", Some(0), &[Record::new(b"after")], Acks::All)?;
    assert_eq!(at.base_offset, 22);
    Ok(())
}

#[test]
fn retention_keeps_segments_with_records_not_yet_visible() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.bytes", "0"), ("retention.ms", "-1"), ("high.watermark", "durable")])?;
    let payload = [5u8; 300];
    for _ in 0..20 {
        log.append("t", Some(0), &[Record::new(&payload)], Acks::One)?;
    }
    assert_eq!(log.high_watermark("t", 0)?, 0);
    assert_eq!(log.run_retention()?, 0, "unsynced segments hold records above the high watermark");
    assert_eq!(log.log_start_offset("t", 0)?, 0);
    log.sync_all()?;
    assert!(log.run_retention()? > 0);
    Ok(())
}

#[test]
fn retention_ms_deletes_segments_whose_newest_record_is_older() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.ms", &HOUR_MS.to_string()), ("retention.bytes", "-1")])?;
    let now = now_ms();
    let mut sent = append(&log, 14, now - 2 * HOUR_MS)?; // offsets 0..14: expired
    sent.extend(append(&log, 10, now)?); // offsets 14..24: fresh
    let files = segment_files(&partition_dir(dir.path(), "t", 0))?;
    // Kept: the segment holding offset 14 (its newest record is fresh) and everything after.
    let keep_from = files.iter().rposition(|f| f.0 <= 14).ok_or("no segment")?;
    assert!(keep_from > 0, "{files:?}");

    assert_eq!(log.run_retention()?, keep_from);
    let start = files[keep_from].0;
    assert_eq!(log.log_start_offset("t", 0)?, start);
    assert_eq!(segment_files(&partition_dir(dir.path(), "t", 0))?, files[keep_from..]);
    assert_eq!(values(&read_all(&log, "t", 0)?), sent[start as usize..]);
    out_of_range_below(&log, 0, start);
    assert_eq!(log.run_retention()?, 0);
    Ok(())
}

#[test]
fn retention_ms_judges_a_segment_by_its_newest_record_not_its_last() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.ms", &HOUR_MS.to_string()), ("retention.bytes", "-1")])?;
    let now = now_ms();
    // The first segment holds a fresh record between two expired ones; the rest are expired.
    append(&log, 1, now - 2 * HOUR_MS)?;
    append(&log, 1, now)?;
    append(&log, 10, now - 3 * HOUR_MS)?;
    let files = segment_files(&partition_dir(dir.path(), "t", 0))?;
    assert!(files.len() >= 3 && files[1].0 >= 2, "the fresh record is in the first segment: {files:?}");
    // Oldest first, stopping at the first segment to keep: nothing goes.
    assert_eq!(log.run_retention()?, 0);
    assert_eq!(log.log_start_offset("t", 0)?, 0);
    assert_eq!(read_all(&log, "t", 0)?.len(), 12);
    Ok(())
}

#[test]
fn retention_does_nothing_without_limits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.ms", "-1"), ("retention.bytes", "-1")])?;
    append(&log, 20, 1)?;
    let files = segment_files(&partition_dir(dir.path(), "t", 0))?;
    assert_eq!(log.run_retention()?, 0);
    assert_eq!(segment_files(&partition_dir(dir.path(), "t", 0))?, files);
    assert_eq!(read_all(&log, "t", 0)?.len(), 20);
    Ok(())
}

#[test]
fn a_fetch_held_across_retention_still_reads_its_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.bytes", "0"), ("retention.ms", "-1")])?;
    let sent = append(&log, 12, now_ms())?;
    let held = log.fetch("t", 0, 0, 1 << 20)?;
    let held_mid = log.fetch("t", 0, 4, 1 << 20)?;
    let bytes_before = held.bytes().to_vec();
    let records_before = records_of(&held)?;
    assert!(!records_before.is_empty());

    let pdir = partition_dir(dir.path(), "t", 0);
    assert!(log.run_retention()? > 0);
    assert!(!pdir.join(format!("{:020}.log", 0)).exists(), "the first segment's file is gone");
    out_of_range_below(&log, 0, log.log_start_offset("t", 0)?);

    // The held results still read the deleted segments, unchanged.
    assert_eq!(held.bytes(), &bytes_before[..]);
    assert_eq!(records_of(&held)?, records_before);
    assert_eq!(values(&records_before), sent[..records_before.len()]);
    let mid = records_of(&held_mid)?;
    assert_eq!(mid.first().map(|r| r.offset), Some(4));
    assert_eq!(values(&mid), sent[4..4 + mid.len()]);
    Ok(())
}

#[test]
fn run_retention_returns_the_number_of_segments_deleted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    topic(&log, &[("retention.bytes", "2500"), ("retention.ms", "-1")])?;
    log.create_topic("other", 1, config(&[("segment.bytes", "1024"), ("retention.bytes", "0")]))?;
    let pdir = partition_dir(dir.path(), "t", 0);
    let odir = partition_dir(dir.path(), "other", 0);
    let mut total = 0;
    for round in 0..3 {
        append(&log, 15, now_ms())?;
        for _ in 0..5 {
            log.append("other", Some(0), &[Record::new(&[0u8; 400])], Acks::All)?;
        }
        let before = segment_files(&pdir)?.len() + segment_files(&odir)?.len();
        let n = log.run_retention()?;
        let after = segment_files(&pdir)?.len() + segment_files(&odir)?.len();
        assert!(n > 0, "round {round}");
        assert_eq!(n, before - after, "round {round}: returned {n}, files went from {before} to {after}");
        assert_eq!(log.run_retention()?, 0, "round {round}: a second run finds nothing");
        total += n;
    }
    assert!(total >= 6);
    Ok(())
}

#[test]
fn the_log_start_offset_persists_across_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (start, hw, sent) = {
        let log = open(dir.path())?;
        topic(&log, &[("retention.bytes", "2000"), ("retention.ms", "-1")])?;
        let sent = append(&log, 30, now_ms())?;
        assert!(log.run_retention()? > 0);
        let start = log.log_start_offset("t", 0)?;
        assert!(start > 0);
        let hw = log.high_watermark("t", 0)?;
        log.close()?;
        (start, hw, sent)
    };
    for unclean in [false, true] {
        if unclean {
            make_unclean(dir.path())?;
        }
        let log = open(dir.path())?;
        assert_eq!(log.log_start_offset("t", 0)?, start, "unclean={unclean}");
        assert_eq!(log.high_watermark("t", 0)?, hw, "unclean={unclean}");
        out_of_range_below(&log, 0, start);
        assert_eq!(values(&read_all(&log, "t", 0)?), sent[start as usize..], "unclean={unclean}");
        assert_eq!(log.run_retention()?, 0, "unclean={unclean}");
        log.close()?;
    }
    Ok(())
}

#[test]
fn retention_ms_uses_the_timestamps_found_on_reopen() -> TestResult {
    for unclean in [false, true] {
        let dir = tempfile::tempdir()?;
        let (files, sent) = {
            let log = open(dir.path())?;
            topic(&log, &[("retention.ms", &HOUR_MS.to_string()), ("retention.bytes", "-1")])?;
            let now = now_ms();
            let mut sent = append(&log, 15, now - 5 * HOUR_MS)?;
            sent.extend(append(&log, 6, now + HOUR_MS)?);
            log.close()?;
            (segment_files(&partition_dir(dir.path(), "t", 0))?, sent)
        };
        if unclean {
            make_unclean(dir.path())?;
            std::fs::remove_file(dir.path().join(common::CHECKPOINT_FILE))?;
        }
        let log = open(dir.path())?;
        let keep_from = files.iter().rposition(|f| f.0 <= 15).ok_or("no segment")?;
        assert_eq!(log.run_retention()?, keep_from, "unclean={unclean}");
        let start = files[keep_from].0;
        assert_eq!(log.log_start_offset("t", 0)?, start);
        assert_eq!(values(&read_all(&log, "t", 0)?), sent[start as usize..], "unclean={unclean}");
    }
    Ok(())
}

#[test]
fn background_maintenance_applies_retention() -> TestResult {
    let dir = tempfile::tempdir()?;
    let options = runnel::LogOptions::default().retention_check_interval(std::time::Duration::from_millis(5));
    let log = Log::open(dir.path(), options)?;
    topic(&log, &[("retention.bytes", "0"), ("retention.ms", "-1")])?;
    append(&log, 12, now_ms())?;
    let active_base = segment_files(&partition_dir(dir.path(), "t", 0))?.last().ok_or("no segment")?.0;
    assert!(active_base > 0);
    // No run_retention call: the maintenance thread must apply it. Poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while segment_files(&partition_dir(dir.path(), "t", 0))?.len() > 1 {
        assert!(std::time::Instant::now() < deadline, "background retention never ran");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(log.log_start_offset("t", 0)?, active_base);
    out_of_range_below(&log, 0, active_base);
    Ok(())
}
