//! Bounded resources and time-based rolling: a log with thousands of segments opens without
//! scanning after a clean close, keeps its mappings within `max_open_segments` while it is read
//! end to end, and `segment.ms` rolls an old active segment.

mod common;

use common::{TestResult, config, opts};
use runnel::{Acks, Log, Record};

#[test]
fn thousands_of_segments_open_without_a_scan_and_stay_within_the_mapping_bound() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(&[("segment.bytes", "1024"), ("max.message.bytes", "1024"), ("high.watermark", "written")]);
    let value = [7u8; 600];
    {
        let log = Log::open(dir.path(), opts())?;
        log.create_topic("many", 1, cfg)?;
        // 600-byte records in 1 KiB segments: one batch per segment.
        for _ in 0..2000 {
            log.append("many", Some(0), &[Record::new(&value)], Acks::One)?;
        }
        log.sync_all()?;
        assert_eq!(log.segments("many", 0)?.len(), 2000);
        log.close()?;
    }
    let log = Log::open(dir.path(), opts().max_open_segments(16))?;
    assert_eq!(log.recovery_report(), Vec::new(), "a clean open verifies nothing");
    assert_eq!(log.open_segment_count(), 0, "no sealed segment is mapped until it is read");
    let mut offset = 0;
    let mut most_open = 0;
    while offset < log.high_watermark("many", 0)? {
        let f = log.fetch("many", 0, offset, 1 << 20)?;
        for r in f.records() {
            assert_eq!(r?.value, Some(&value[..]));
        }
        offset = f.next_offset();
        most_open = most_open.max(log.open_segment_count());
    }
    assert_eq!(offset, 2000);
    assert!(most_open <= 16, "at most 16 sealed segments mapped at once, saw {most_open}");
    Ok(())
}

#[test]
fn segment_ms_rolls_the_active_segment_once_it_is_old() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), opts())?;
    log.create_topic("timed", 1, config(&[("segment.ms", "1")]))?;
    log.append("timed", Some(0), &[Record::new(b"first")], Acks::All)?;
    assert_eq!(log.segments("timed", 0)?.len(), 1);
    std::thread::sleep(std::time::Duration::from_millis(5));
    log.append("timed", Some(0), &[Record::new(b"second")], Acks::All)?;
    let segs = log.segments("timed", 0)?;
    assert_eq!(segs.iter().map(|s| s.base_offset).collect::<Vec<_>>(), [0, 1], "the second append started a new segment");
    assert!(segs[0].sealed && !segs[1].sealed);
    let f = log.fetch("timed", 0, 0, 1 << 20)?;
    assert_eq!(f.records().map(|r| r.map(|r| r.offset)).collect::<runnel::Result<Vec<_>>>()?, [0]);
    assert_eq!(log.fetch("timed", 0, 1, 1 << 20)?.records().next().transpose()?.and_then(|r| r.value), Some(&b"second"[..]));
    Ok(())
}

#[test]
fn segments_stay_put_without_segment_ms() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), opts())?;
    log.create_topic("untimed", 1, config(&[("segment.ms", "-1")]))?;
    log.append("untimed", Some(0), &[Record::new(b"first")], Acks::All)?;
    std::thread::sleep(std::time::Duration::from_millis(5));
    log.append("untimed", Some(0), &[Record::new(b"second")], Acks::All)?;
    assert_eq!(log.segments("untimed", 0)?.len(), 1);
    Ok(())
}
