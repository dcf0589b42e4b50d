//! Appending and fetching: offsets, record contents, fetch bounds, segment rolls, the partitioner,
//! timestamps, the high watermark and acks, sendfile, concurrency, and reopening.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use common::{
    Rec, TestResult, config, make_unclean, now_ms, open, opts, partition_dir, read_all, read_from, records_of, segment_files,
    small_segments, values,
};
use runnel::{Acks, Error, Header, Log, Record, TopicConfig, partitioner};

/// A deterministic pseudo-random sequence (an LCG), so failures reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn append_returns_contiguous_offsets_from_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    let mut expected_base = 0;
    for n in [3usize, 1, 5, 2] {
        let vals: Vec<String> = (0..n).map(|i| format!("v{expected_base}-{i}")).collect();
        let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
        let at = log.append("t", Some(1), &recs, Acks::All)?;
        assert_eq!(at.partition, 1);
        assert_eq!((at.base_offset, at.last_offset), (expected_base, expected_base + n as u64 - 1));
        assert_eq!(at.log_append_time, -1, "CreateTime topics report -1");
        expected_base += n as u64;
    }
    assert_eq!(log.log_end_offset("t", 1)?, 11);
    assert_eq!(log.high_watermark("t", 1)?, 11);
    assert_eq!(log.log_end_offset("t", 0)?, 0, "the other partition is untouched");
    let got = read_all(&log, "t", 1)?;
    assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..11).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn fetch_returns_exactly_what_was_appended() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let h1 = [Header::new(b"trace", b"abc"), Header { key: b"null-value", value: None }, Header::new(b"", b"")];
    let h2 = [Header::new(b"dup", b"1"), Header::new(b"dup", b"2")];
    let big = vec![0xA5u8; 100_000];
    let batch1 = [
        Record::new(b"plain"),
        Record::new(b"keyed").with_key(b"k1").with_timestamp(1_600_000_000_000),
        Record::tombstone(b"deleted-key").with_timestamp(1_600_000_000_001),
        Record { key: None, value: None, headers: &[], timestamp: Some(5) },
        Record::new(b"").with_key(b"").with_headers(&h1).with_timestamp(0),
    ];
    let batch2 = [Record::new(&big).with_key(b"big").with_headers(&h2).with_timestamp(1_234), Record::new(b"\0\xff binary \n")];
    let before = now_ms();
    log.append("t", Some(0), &batch1, Acks::All)?;
    log.append("t", Some(0), &batch2, Acks::All)?;
    let after = now_ms();

    let got = read_all(&log, "t", 0)?;
    let sent: Vec<&Record<'_>> = batch1.iter().chain(&batch2).collect();
    assert_eq!(got.len(), sent.len());
    for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
        assert_eq!(g.offset, i as u64);
        assert_eq!(g.key.as_deref(), s.key, "key of {i}");
        assert_eq!(g.value.as_deref(), s.value, "value of {i}");
        let headers: Vec<(&[u8], Option<&[u8]>)> = s.headers.iter().map(|h| (h.key, h.value)).collect();
        let got_headers: Vec<(&[u8], Option<&[u8]>)> = g.headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
        assert_eq!(got_headers, headers, "headers of {i}");
        match s.timestamp {
            Some(ts) => assert_eq!(g.timestamp, ts, "timestamp of {i}"),
            None => assert!((before..=after).contains(&g.timestamp), "record {i} without a timestamp gets the append time"),
        }
    }
    // The empty key and empty value are not confused with null ones.
    assert_eq!((got[4].key.as_deref(), got[4].value.as_deref()), (Some(&b""[..]), Some(&b""[..])));
    assert_eq!((got[3].key.as_deref(), got[3].value.as_deref()), (None, None));
    Ok(())
}

#[test]
fn fetch_inside_a_batch_starts_at_the_requested_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let vals: Vec<String> = (0..10).map(|i| format!("r{i}")).collect();
    let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
    log.append("t", Some(0), &recs, Acks::All)?;
    log.append("t", Some(0), &[Record::new(b"r10")], Acks::All)?;
    for start in 0..11u64 {
        let fetched = log.fetch("t", 0, start, 1 << 20)?;
        let got = records_of(&fetched)?;
        assert_eq!(got.first().map(|r| r.offset), Some(start), "fetch at {start}");
        let want: Vec<String> = (start..11).map(|i| format!("r{i}")).collect();
        assert_eq!(values(&got), want);
        assert_eq!(fetched.next_offset(), 11);
    }
    // The raw batches are whole: the first one still begins at its base offset.
    let fetched = log.fetch("t", 0, 4, 1 << 20)?;
    let first = fetched.batches().next().ok_or("no batch")??;
    assert_eq!(first.header().base_offset, 0);
    Ok(())
}

#[test]
fn max_bytes_limits_a_fetch_but_at_least_one_batch_is_returned() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let payload = [7u8; 200];
    for _ in 0..5 {
        let recs = [Record::new(&payload); 4];
        log.append("t", Some(0), &recs, Acks::All)?;
    }
    let all = log.fetch("t", 0, 0, 1 << 20)?;
    let sizes: Vec<usize> = all.batches().map(|b| b.map(|b| b.as_bytes().len())).collect::<runnel::Result<_>>()?;
    assert_eq!(sizes.len(), 5);
    assert_eq!(all.bytes().len(), sizes.iter().sum::<usize>());

    for tiny in [0, 1, 10] {
        let f = log.fetch("t", 0, 0, tiny)?;
        assert_eq!(f.batches().count(), 1, "max_bytes={tiny} still returns one whole batch");
        assert_eq!((records_of(&f)?.len(), f.next_offset()), (4, 4));
    }
    // Inside a batch the whole batch counts, and it is still returned.
    let f = log.fetch("t", 0, 2, 1)?;
    assert_eq!((records_of(&f)?.len(), f.next_offset()), (2, 4));

    let two = (sizes[0] + sizes[1]) as u64;
    for max in [two, two + 1, two + sizes[2] as u64 - 1] {
        let f = log.fetch("t", 0, 0, max)?;
        assert_eq!(f.batches().count(), 2, "max_bytes={max}");
        assert!(f.bytes().len() as u64 <= max);
        assert_eq!(f.next_offset(), 8);
    }
    Ok(())
}

#[test]
fn next_offset_chains_fetches_across_many_segment_rolls_and_returns_each_record_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, small_segments())?;
    let mut rng = Lcg(42);
    let mut sent = Vec::new();
    let mut n = 0u64;
    while n < 2000 {
        let len = 1 + rng.below(7) as usize;
        let vals: Vec<String> = (0..len).map(|i| format!("value-{}-{}", n + i as u64, "x".repeat(rng.below(20) as usize))).collect();
        let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
        let at = log.append("t", Some(0), &recs, Acks::One)?;
        assert_eq!(at.base_offset, n);
        n += len as u64;
        sent.extend(vals);
    }
    log.sync_all()?;
    let segments = log.describe_topic("t")?.partitions[0].segment_count;
    assert!(segments > 50, "only {segments} segments");
    assert_eq!(segment_files(&partition_dir(dir.path(), "t", 0))?.len(), segments);

    for max_bytes in [1, 300, 5000, 1 << 20] {
        let got = read_from(&log, "t", 0, 0, max_bytes)?;
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>(), "max_bytes={max_bytes}");
        assert_eq!(values(&got), sent, "max_bytes={max_bytes}");
    }
    // Starting anywhere, including inside batches, reads the rest exactly once.
    for start in (0..n).step_by(97) {
        let got = read_from(&log, "t", 0, start, 700)?;
        assert_eq!(got.iter().map(|r| r.offset).collect::<Vec<_>>(), (start..n).collect::<Vec<_>>(), "from {start}");
    }
    Ok(())
}

#[test]
fn fetch_outside_the_log_is_offset_out_of_range_with_its_bounds() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("segment.bytes", "1024"), ("retention.bytes", "2048"), ("retention.ms", "-1")]))?;
    let payload = [1u8; 300];
    for _ in 0..40 {
        log.append("t", Some(0), &[Record::new(&payload)], Acks::All)?;
    }
    let hw = log.high_watermark("t", 0)?;
    assert_eq!(hw, 40);
    for requested in [41, 1000, u64::MAX] {
        let r = log.fetch("t", 0, requested, 1024);
        assert!(
            matches!(r, Err(Error::OffsetOutOfRange { requested: q, log_start: 0, high_watermark: 40 }) if q == requested),
            "above: {r:?}"
        );
    }
    assert!(log.run_retention()? > 0);
    let start = log.log_start_offset("t", 0)?;
    assert!(start > 0);
    for requested in [0, start - 1] {
        let r = log.fetch("t", 0, requested, 1024);
        assert!(
            matches!(r, Err(Error::OffsetOutOfRange { requested: q, log_start, high_watermark: 40 }) if q == requested && log_start == start),
            "below: {r:?}"
        );
    }
    let f = log.fetch("t", 0, start, 1024)?;
    assert_eq!(records_of(&f)?.first().map(|r| r.offset), Some(start));
    assert_eq!(f.log_start_offset(), start);
    Ok(())
}

#[test]
fn fetch_at_the_high_watermark_is_empty() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let f = log.fetch("t", 0, 0, 1024)?;
    assert!(f.is_empty() && f.bytes().is_empty());
    assert_eq!((f.next_offset(), f.high_watermark(), f.records().count()), (0, 0, 0));

    log.append("t", Some(0), &[Record::new(b"a"), Record::new(b"b")], Acks::All)?;
    let f = log.fetch("t", 0, 2, 1024)?;
    assert!(f.is_empty() && f.bytes().is_empty());
    assert_eq!((f.next_offset(), f.high_watermark(), f.records().count(), f.batches().count()), (2, 2, 0, 0));
    Ok(())
}

#[test]
fn a_batch_over_max_message_bytes_is_record_too_large_and_nothing_is_appended() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("max.message.bytes", "1024")]))?;
    log.append("t", Some(0), &[Record::new(b"first")], Acks::All)?;
    let describe = log.describe_topic("t")?;

    let just_over = vec![0u8; 1000];
    let huge = vec![0u8; 10_000];
    let small = [0u8; 100];
    let many_small: Vec<Record<'_>> = (0..20).map(|_| Record::new(&small)).collect();
    for (what, recs) in
        [("one record", vec![Record::new(&just_over)]), ("far over", vec![Record::new(&huge)]), ("many records", many_small)]
    {
        let r = log.append("t", Some(0), &recs, Acks::All);
        assert!(matches!(r, Err(Error::RecordTooLarge { size, max: 1024 }) if size > 1024), "{what}: {r:?}");
        assert_eq!(log.log_end_offset("t", 0)?, 1, "{what}");
    }
    assert_eq!(log.describe_topic("t")?, describe, "no bytes were written");
    // The partition still works, with the next offset.
    let at = log.append("t", Some(0), &[Record::new(&[0u8; 500])], Acks::All)?;
    assert_eq!(at.base_offset, 1);
    assert_eq!(read_all(&log, "t", 0)?.len(), 2);
    Ok(())
}

#[test]
fn appending_no_records_is_an_invalid_argument() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    for p in [Some(0), None] {
        let r = log.append("t", p, &[], Acks::All);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "partition {p:?}: {r:?}");
    }
    assert_eq!((log.log_end_offset("t", 0)?, log.log_end_offset("t", 1)?), (0, 0));
    Ok(())
}

#[test]
fn an_unknown_partition_is_unknown_topic_or_partition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 3, TopicConfig::default())?;
    let r = log.append("t", Some(3), &[Record::new(b"x")], Acks::All);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: Some(3) }) if topic == "t"), "{r:?}");
    let r = log.fetch("t", 7, 0, 1024);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: Some(7) }) if topic == "t"), "{r:?}");
    let r = log.sync_to("t", 3, 1);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { partition: Some(3), .. })), "{r:?}");
    Ok(())
}

#[test]
fn keyed_records_land_on_the_kafka_partition_for_their_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 7, TopicConfig::default())?;
    // Kafka: Utils.toPositive(Utils.murmur2("21".getBytes())) % 7, with murmur2("21") = -973932308.
    assert_eq!(partitioner::partition_for_key(b"21", 7), ((-973_932_308i32 & 0x7fff_ffff) as u32) % 7);
    assert_eq!(partitioner::murmur2(b"foobar"), -790_332_482);
    let mut used = HashSet::new();
    for i in 0..100 {
        let key = format!("customer-{i}");
        let want = partitioner::partition_for_key(key.as_bytes(), 7);
        assert_eq!(log.partition_for("t", Some(key.as_bytes()))?, want);
        let at = log.append("t", None, &[Record::new(b"v").with_key(key.as_bytes())], Acks::One)?;
        assert_eq!(at.partition, want, "{key}");
        used.insert(at.partition);
    }
    assert_eq!(used.len(), 7, "100 keys spread over all 7 partitions");
    Ok(())
}

#[test]
fn the_same_key_always_lands_on_the_same_partition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let partitions = {
        let log = open(dir.path())?;
        log.create_topic("t", 5, TopicConfig::default())?;
        let mut seen = BTreeMap::new();
        for round in 0..10 {
            for key in ["alice", "bob", "carol", "dave"] {
                let at = log.append("t", None, &[Record::new(b"v").with_key(key.as_bytes())], Acks::One)?;
                let first = *seen.entry(key).or_insert(at.partition);
                assert_eq!(at.partition, first, "{key} in round {round}");
            }
        }
        seen
    };
    let log = open(dir.path())?;
    for (key, p) in partitions {
        let at = log.append("t", None, &[Record::new(b"v").with_key(key.as_bytes())], Acks::One)?;
        assert_eq!(at.partition, p, "{key} after reopen");
    }
    Ok(())
}

#[test]
fn records_without_a_key_go_round_robin_and_spread_evenly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 4, TopicConfig::default())?;
    let mut counts = [0u32; 4];
    let mut last: Option<u32> = None;
    for _ in 0..400 {
        let at = log.append("t", None, &[Record::new(b"no key")], Acks::One)?;
        if let Some(prev) = last {
            assert_eq!(at.partition, (prev + 1) % 4, "round-robin goes to the next partition");
        }
        last = Some(at.partition);
        counts[at.partition as usize] += 1;
    }
    assert_eq!(counts, [100; 4]);
    Ok(())
}

#[test]
fn log_append_time_topics_override_record_timestamps() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("message.timestamp.type", "LogAppendTime")]))?;
    let before = now_ms();
    let at = log.append(
        "t",
        Some(0),
        &[Record::new(b"a").with_timestamp(1_000), Record::new(b"b"), Record::new(b"c").with_timestamp(-5)],
        Acks::All,
    )?;
    let after = now_ms();
    assert!((before..=after).contains(&at.log_append_time), "log_append_time {} not in [{before}, {after}]", at.log_append_time);
    let got = read_all(&log, "t", 0)?;
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.timestamp, at.log_append_time, "offset {}", r.offset);
    }
    let f = log.fetch("t", 0, 0, 1 << 20)?;
    let batch = f.batches().next().ok_or("no batch")??;
    assert!(batch.header().is_log_append_time());
    // Searching by time uses the log's timestamps too.
    assert_eq!(log.offset_for_timestamp("t", 0, 1_000)?, Some((0, at.log_append_time)));
    Ok(())
}

#[test]
fn create_time_topics_keep_the_callers_timestamps() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("message.timestamp.type", "CreateTime")]))?;
    let before = now_ms();
    let at = log.append(
        "t",
        Some(0),
        &[Record::new(b"a").with_timestamp(1_000), Record::new(b"b"), Record::new(b"c").with_timestamp(42)],
        Acks::All,
    )?;
    let after = now_ms();
    assert_eq!(at.log_append_time, -1);
    let got = read_all(&log, "t", 0)?;
    assert_eq!(got[0].timestamp, 1_000);
    assert!((before..=after).contains(&got[1].timestamp), "a record without a timestamp gets the append time");
    assert_eq!(got[2].timestamp, 42);
    Ok(())
}

/// The first offset with a timestamp at or after `target`, by brute force.
fn first_at_or_after(timestamps: &[i64], target: i64) -> Option<(u64, i64)> {
    timestamps.iter().enumerate().find(|(_, t)| **t >= target).map(|(i, t)| (i as u64, *t))
}

#[test]
fn offset_for_timestamp_finds_the_first_offset_at_or_after_the_target() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut rng = Lcg(7);
    // Mostly rising with jitter, so timestamps go backwards often, across about 40 segments.
    let mut timestamps = Vec::new();
    {
        let log = open(dir.path())?;
        log.create_topic("t", 1, small_segments())?;
        let mut base = 1_000_000i64;
        while timestamps.len() < 600 {
            let n = 1 + rng.below(4) as usize;
            let ts: Vec<i64> = (0..n).map(|_| base + rng.below(5_000) as i64 - 2_500).collect();
            base += 100;
            let recs: Vec<Record<'_>> = ts.iter().map(|t| Record::new(b"0123456789").with_timestamp(*t)).collect();
            log.append("t", Some(0), &recs, Acks::One)?;
            timestamps.extend(ts);
        }
        // One very old record late in the log must not be found for small targets before older offsets.
        log.append("t", Some(0), &[Record::new(b"old").with_timestamp(10)], Acks::One)?;
        timestamps.push(10);
        log.sync_all()?;
        assert!(log.describe_topic("t")?.partitions[0].segment_count > 10);
        check_offsets_for_times(&log, &timestamps, &mut rng)?;
        log.close()?;
    }
    // The same answers after a reopen, from the index files, and after recovery rebuilt them.
    let log = open(dir.path())?;
    check_offsets_for_times(&log, &timestamps, &mut rng)?;
    drop(log);
    make_unclean(dir.path())?;
    std::fs::remove_file(dir.path().join(common::CHECKPOINT_FILE))?;
    let log = open(dir.path())?;
    assert!(!log.recovery_report().is_empty());
    check_offsets_for_times(&log, &timestamps, &mut rng)
}

fn check_offsets_for_times(log: &Log, timestamps: &[i64], rng: &mut Lcg) -> TestResult {
    let max = *timestamps.iter().max().ok_or("empty")?;
    let mut targets: Vec<i64> = vec![i64::MIN, 0, 10, 11, 999_999, max, max - 1];
    targets.extend(timestamps.iter().step_by(13).copied());
    targets.extend((0..200).map(|_| 990_000 + rng.below(80_000) as i64));
    for target in targets {
        assert_eq!(log.offset_for_timestamp("t", 0, target)?, first_at_or_after(timestamps, target), "target {target}");
    }
    assert_eq!(log.offset_for_timestamp("t", 0, max + 1)?, None, "past the newest record");
    assert_eq!(log.offset_for_timestamp("t", 0, i64::MAX)?, None);
    Ok(())
}

#[test]
fn acks_one_is_invisible_until_synced_when_the_high_watermark_is_durable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, config(&[("high.watermark", "durable"), ("segment.bytes", "1024")]))?;
    log.append("t", Some(0), &[Record::new(b"durable").with_timestamp(1_000)], Acks::All)?;
    assert_eq!((log.high_watermark("t", 0)?, log.durable_offset("t", 0)?), (1, 1));

    // Enough acks=1 data to roll segments on the way.
    let payload = [3u8; 300];
    for _ in 0..10 {
        let at = log.append("t", Some(0), &[Record::new(&payload).with_timestamp(2_000)], Acks::One)?;
        assert!(at.base_offset >= 1);
    }
    log.append("t", Some(0), &[Record::new(b"zero").with_timestamp(2_000)], Acks::Zero)?;
    assert_eq!(log.log_end_offset("t", 0)?, 12);
    assert_eq!((log.high_watermark("t", 0)?, log.durable_offset("t", 0)?), (1, 1), "unsynced appends are not visible");
    let f = log.fetch("t", 0, 1, 1 << 20)?;
    assert!(f.is_empty(), "fetch at the old high watermark is empty");
    assert_eq!(values(&read_all(&log, "t", 0)?), ["durable"]);
    let r = log.fetch("t", 0, 5, 1024);
    assert!(matches!(r, Err(Error::OffsetOutOfRange { high_watermark: 1, .. })), "{r:?}");
    assert_eq!(log.offset_for_timestamp("t", 0, 500)?, Some((0, 1_000)));
    assert_eq!(log.offset_for_timestamp("t", 0, 1_500)?, None, "search by time does not see unsynced records");

    log.sync_to("t", 0, 6)?;
    assert!(log.durable_offset("t", 0)? >= 6);
    assert!(log.high_watermark("t", 0)? >= 6);
    log.sync_to("t", 0, 12)?;
    assert_eq!((log.high_watermark("t", 0)?, log.durable_offset("t", 0)?), (12, 12));
    assert_eq!(read_all(&log, "t", 0)?.len(), 12);
    assert_eq!(log.offset_for_timestamp("t", 0, 1_500)?, Some((1, 2_000)));

    // sync_all does the same for every partition.
    log.append("t", Some(1), &[Record::new(b"p1")], Acks::One)?;
    assert_eq!(log.high_watermark("t", 1)?, 0);
    log.sync_all()?;
    assert_eq!((log.high_watermark("t", 1)?, log.durable_offset("t", 1)?), (1, 1));
    assert_eq!(values(&read_all(&log, "t", 1)?), ["p1"]);
    Ok(())
}

#[test]
fn acks_all_is_visible_and_durable_as_soon_as_append_returns() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("high.watermark", "durable")]))?;
    for i in 1..=5u64 {
        log.append("t", Some(0), &[Record::new(b"x")], Acks::All)?;
        assert_eq!((log.high_watermark("t", 0)?, log.durable_offset("t", 0)?, log.log_end_offset("t", 0)?), (i, i, i));
    }
    // An acks=all append also makes earlier acks=1 appends durable and visible.
    log.append("t", Some(0), &[Record::new(b"one")], Acks::One)?;
    assert_eq!(log.high_watermark("t", 0)?, 5);
    log.append("t", Some(0), &[Record::new(b"all")], Acks::All)?;
    assert_eq!((log.high_watermark("t", 0)?, log.durable_offset("t", 0)?), (7, 7));
    assert_eq!(read_all(&log, "t", 0)?.len(), 7);
    Ok(())
}

#[test]
fn high_watermark_written_makes_acks_one_visible_immediately() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("high.watermark", "written"), ("segment.bytes", "1024")]))?;
    let payload = [9u8; 300];
    for i in 1..=10u64 {
        log.append("t", Some(0), &[Record::new(&payload)], Acks::One)?;
        assert_eq!(log.high_watermark("t", 0)?, i);
        assert_eq!(read_all(&log, "t", 0)?.len() as u64, i);
    }
    assert!(log.durable_offset("t", 0)? < 10, "nothing forced a sync");
    log.sync_all()?;
    assert_eq!(log.durable_offset("t", 0)?, 10);
    Ok(())
}

fn fill_for_send(log: &Log) -> TestResult {
    log.create_topic("t", 1, config(&[("segment.bytes", "4096")]))?;
    for i in 0..60 {
        let v = format!("record {i} {}", "y".repeat(i * 3));
        log.append("t", Some(0), &[Record::new(v.as_bytes()).with_key(b"k"), Record::new(b"second")], Acks::One)?;
    }
    log.sync_all()?;
    Ok(())
}

#[test]
fn send_to_a_file_copies_exactly_the_fetched_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    fill_for_send(&log)?;
    let hw = log.high_watermark("t", 0)?;
    for (offset, max_bytes) in [(0, 1 << 20), (0, 1), (5, 500), (37, 2000), (hw - 1, 1 << 20)] {
        let fetched = log.fetch("t", 0, offset, max_bytes)?;
        let mut out = tempfile::tempfile()?;
        let sent = log.send_to("t", 0, offset, max_bytes, &out)?;
        let mut copied = Vec::new();
        std::io::Seek::rewind(&mut out)?;
        out.read_to_end(&mut copied)?;
        assert!(!copied.is_empty());
        assert_eq!(copied, fetched.bytes(), "offset {offset} max_bytes {max_bytes}");
        assert_eq!(sent.bytes, copied.len() as u64);
        assert_eq!(sent.next_offset, fetched.next_offset());
    }
    // At the high watermark nothing is sent.
    let out = tempfile::tempfile()?;
    let sent = log.send_to("t", 0, hw, 1 << 20, &out)?;
    assert_eq!((sent.bytes, sent.next_offset, out.metadata()?.len()), (0, hw, 0));
    Ok(())
}

#[test]
fn send_to_a_pipe_copies_exactly_the_fetched_bytes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    fill_for_send(&log)?;
    let mut offset = 0;
    let hw = log.high_watermark("t", 0)?;
    let mut all = Vec::new();
    while offset < hw {
        let fetched = log.fetch("t", 0, offset, 1500)?;
        let (mut reader, writer) = std::io::pipe()?;
        let sent = log.send_to("t", 0, offset, 1500, &writer)?;
        drop(writer);
        let mut copied = Vec::new();
        reader.read_to_end(&mut copied)?;
        assert_eq!(copied, fetched.bytes(), "at {offset}");
        assert_eq!((sent.bytes, sent.next_offset), (copied.len() as u64, fetched.next_offset()));
        all.extend(records_of(&fetched)?);
        offset = sent.next_offset;
    }
    assert_eq!(all.len() as u64, hw);
    let r = log.send_to("t", 0, hw + 1, 1024, std::io::stdout());
    assert!(matches!(r, Err(Error::OffsetOutOfRange { .. })), "{r:?}");
    Ok(())
}

#[test]
fn concurrent_appends_to_different_partitions_all_land_with_contiguous_offsets() -> TestResult {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Log>();
    send_and_sync::<runnel::Fetched>();
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 8, config(&[("segment.bytes", "8192")]))?;
    const PER_THREAD: usize = 150;
    std::thread::scope(|s| -> TestResult {
        let handles: Vec<_> = (0..8u32)
            .map(|p| {
                let log = &log;
                s.spawn(move || -> runnel::Result<Vec<(u64, u64)>> {
                    let mut ranges = Vec::new();
                    for i in 0..PER_THREAD {
                        let vals: Vec<String> = (0..=i % 3).map(|j| format!("p{p}-{i}-{j}")).collect();
                        let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
                        let acks = if i % 10 == 0 { Acks::All } else { Acks::One };
                        let at = log.append("t", Some(p), &recs, acks)?;
                        assert_eq!(at.partition, p);
                        ranges.push((at.base_offset, at.last_offset));
                    }
                    Ok(ranges)
                })
            })
            .collect();
        for (p, h) in handles.into_iter().enumerate() {
            let ranges = h.join().map_err(|_| "thread panicked")??;
            let mut next = 0;
            for (base, last) in ranges {
                assert_eq!(base, next, "partition {p}");
                next = last + 1;
            }
        }
        Ok(())
    })?;
    log.sync_all()?;
    for p in 0..8u32 {
        let want: Vec<String> = (0..PER_THREAD).flat_map(|i| (0..=i % 3).map(move |j| format!("p{p}-{i}-{j}"))).collect();
        assert_eq!(values(&read_all(&log, "t", p)?), want, "partition {p}");
    }
    Ok(())
}

#[test]
fn concurrent_appends_to_one_partition_get_distinct_contiguous_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("segment.bytes", "8192")]))?;
    const PER_THREAD: usize = 120;
    let results: Vec<Vec<(u64, u64, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8usize)
            .map(|t| {
                let log = &log;
                s.spawn(move || -> runnel::Result<Vec<(u64, u64, usize)>> {
                    let mut out = Vec::new();
                    for i in 0..PER_THREAD {
                        let vals: Vec<String> = (0..=i % 4).map(|j| format!("t{t}-{i}-{j}")).collect();
                        let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
                        let acks = if i % 8 == 0 { Acks::All } else { Acks::One };
                        let at = log.append("t", Some(0), &recs, acks)?;
                        assert_eq!(at.last_offset - at.base_offset, (i % 4) as u64);
                        out.push((at.base_offset, at.last_offset, i));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| panic!("append thread panicked"))).collect::<runnel::Result<_>>()
    })?;
    log.sync_all()?;

    // The batches tile [0, total) with no gap and no overlap, and each thread's own appends are
    // in increasing offset order.
    let mut all: Vec<(u64, u64, usize, usize)> = Vec::new();
    for (t, r) in results.iter().enumerate() {
        assert!(r.windows(2).all(|w| w[0].1 < w[1].0), "thread {t} saw its offsets go backwards");
        all.extend(r.iter().map(|&(b, l, i)| (b, l, t, i)));
    }
    all.sort_unstable();
    let mut next = 0;
    for &(base, last, _, _) in &all {
        assert_eq!(base, next);
        next = last + 1;
    }
    let total = next;
    assert_eq!(log.log_end_offset("t", 0)?, total);

    // Each record is where its append said, exactly once.
    let got = read_all(&log, "t", 0)?;
    assert_eq!(got.len() as u64, total);
    let mut seen = HashSet::new();
    for &(base, _, t, i) in &all {
        for j in 0..=(i % 4) {
            let want = format!("t{t}-{i}-{j}");
            assert_eq!(got[(base + j as u64) as usize].value.as_deref(), Some(want.as_bytes()));
            assert!(seen.insert(want));
        }
    }
    Ok(())
}

/// Appends a mix of records over many small segments to two partitions.
fn fill_for_reopen(log: &Log) -> TestResult {
    log.create_topic("t", 2, small_segments())?;
    let headers = [Header::new(b"h", b"v"), Header { key: b"n", value: None }];
    for i in 0..300u32 {
        let v = format!("value {i}");
        let k = format!("key {}", i % 17);
        let p = i % 2;
        let rec = match i % 5 {
            0 => Record::tombstone(k.as_bytes()),
            1 => Record::new(v.as_bytes()).with_headers(&headers).with_timestamp(1_000 + i64::from(i)),
            _ => Record::new(v.as_bytes()).with_key(k.as_bytes()).with_timestamp(5_000 - i64::from(i)),
        };
        let acks = if i % 3 == 0 { Acks::All } else { Acks::One };
        log.append("t", Some(p), &[rec, Record::new(b"second")], acks)?;
    }
    Ok(())
}

/// Every partition's records and the topic's description.
type Snapshot = (Vec<Vec<Rec>>, runnel::TopicDescription);

fn snapshot(log: &Log) -> Result<Snapshot, Box<dyn std::error::Error>> {
    let d = log.describe_topic("t")?;
    Ok(((0..2).map(|p| read_all(log, "t", p)).collect::<runnel::Result<_>>()?, d))
}

#[test]
fn records_survive_close_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let before = {
        let log = open(dir.path())?;
        fill_for_reopen(&log)?;
        log.sync_all()?;
        let s = snapshot(&log)?;
        log.close()?;
        s
    };
    assert_eq!(before.0[0].len(), 300);
    let log = open(dir.path())?;
    let after = snapshot(&log)?;
    assert_eq!(after, before);
    // Appends continue at the log end offset.
    let at = log.append("t", Some(0), &[Record::new(b"next")], Acks::All)?;
    assert_eq!(at.base_offset, 300);
    Ok(())
}

#[test]
fn records_survive_drop_and_an_unclean_reopen_identically() -> TestResult {
    let dir = tempfile::tempdir()?;
    let before = {
        let log = open(dir.path())?;
        fill_for_reopen(&log)?;
        // Dropped, not closed, with acks=1 data unsynced: dropping must not lose it.
        let d = log.describe_topic("t")?;
        let leo: Vec<u64> = d.partitions.iter().map(|p| p.log_end_offset).collect();
        drop(log);
        leo
    };
    make_unclean(dir.path())?;
    let (records, desc) = {
        let log = open(dir.path())?;
        let report = log.recovery_report();
        assert!(report.iter().any(|(t, _, r)| t == "t" && r.segments_verified > 0), "recovery did not run: {report:?}");
        assert!(report.iter().all(|(_, _, r)| r.bytes_quarantined == 0 && r.segments_quarantined == 0), "{report:?}");
        let s = snapshot(&log)?;
        assert_eq!(s.1.partitions.iter().map(|p| p.high_watermark).collect::<Vec<_>>(), before);
        log.close()?;
        s
    };
    assert_eq!(records[0].len(), 300);
    // A clean reopen of the recovered log, and a full recovery without the checkpoint, agree.
    let log = open(dir.path())?;
    assert_eq!(snapshot(&log)?, (records.clone(), desc.clone()));
    drop(log);
    make_unclean(dir.path())?;
    std::fs::remove_file(dir.path().join(common::CHECKPOINT_FILE))?;
    let log = open(dir.path())?;
    let report = log.recovery_report();
    let segments = desc.partitions[0].segment_count;
    assert!(report.iter().any(|(t, p, r)| t == "t" && *p == 0 && r.segments_verified == segments), "{report:?}");
    assert_eq!(snapshot(&log)?, (records, desc));
    let at = log.append("t", Some(1), &[Record::new(b"next")], Acks::All)?;
    assert_eq!(at.base_offset, 300);
    Ok(())
}

#[test]
fn a_log_with_hundreds_of_segments_reads_everything_with_few_segments_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let value = [b'v'; 200];
    let mut expected = 0u64;
    {
        let log = open(dir.path())?;
        log.create_topic("t", 1, small_segments())?;
        while log.describe_topic("t")?.partitions[0].segment_count < 300 {
            for _ in 0..20 {
                let ts = 1_000_000 + expected as i64;
                log.append("t", Some(0), &[Record::new(&value).with_timestamp(ts), Record::new(&value).with_timestamp(ts + 1)], Acks::One)?;
                expected += 2;
            }
        }
        log.close()?;
    }
    let log = Log::open(dir.path(), opts().max_open_segments(8))?;
    let segments = log.describe_topic("t")?.partitions[0].segment_count;
    assert!(segments >= 300, "{segments} segments");
    assert!(log.open_segment_count() <= 8);
    let mut offset = 0;
    let mut n = 0;
    while offset < expected {
        let f = log.fetch("t", 0, offset, 4096)?;
        for r in f.records() {
            let r = r?;
            assert_eq!((r.offset, r.value), (n, Some(&value[..])));
            n += 1;
        }
        assert!(log.open_segment_count() <= 8, "{} segments open", log.open_segment_count());
        offset = f.next_offset();
    }
    assert_eq!(n, expected);
    // Searching by time walks the segments too, within the same bound.
    for target in [1_000_000, 1_000_000 + expected as i64 / 2, 1_000_000 + expected as i64 - 1] {
        let want = (target - 1_000_000) as u64;
        assert_eq!(log.offset_for_timestamp("t", 0, target)?, Some((want, target)));
        assert!(log.open_segment_count() <= 8);
    }
    Ok(())
}

const CRASH_CHILD_ENV: &str = "RUNNEL_TEST_CRASH_CHILD_DIR";

/// Runs test `name` of this binary in a child process with `CRASH_CHILD_ENV` set to `dir`, and
/// checks that it reached its crash point.
fn run_crashing_child(name: &str, dir: &std::path::Path) -> TestResult {
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, dir)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("child-crashing-now"), "the child did not reach its crash: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Ends the child process at once, as a crash would: no destructor runs, so the log is not closed.
fn crash() -> ! {
    use std::io::Write;
    println!("child-crashing-now");
    let _ = std::io::stdout().flush();
    std::process::exit(0)
}

#[test]
fn records_appended_before_a_process_crash_survive_recovery() -> TestResult {
    if let Some(d) = std::env::var_os(CRASH_CHILD_ENV) {
        let log = open(std::path::Path::new(&d))?;
        log.create_topic("big", 1, TopicConfig::default())?;
        log.create_topic("small", 1, small_segments())?;
        for i in 0..50u32 {
            let v = format!("big-{i}");
            log.append("big", Some(0), &[Record::new(v.as_bytes())], if i % 2 == 0 { Acks::All } else { Acks::One })?;
            let v = format!("small-{i}-{}", "s".repeat(100));
            log.append("small", Some(0), &[Record::new(v.as_bytes()), Record::new(b"pair")], Acks::One)?;
        }
        crash();
    }
    let dir = tempfile::tempdir()?;
    run_crashing_child("records_appended_before_a_process_crash_survive_recovery", dir.path())?;
    // The active segment was preallocated past its data: recovery trims the zeros and keeps every
    // record, acks=1 ones included (a process crash does not lose the page cache).
    let log = open(dir.path())?;
    let report = log.recovery_report();
    assert!(report.iter().any(|(t, _, r)| t == "big" && r.segments_verified > 0), "{report:?}");
    assert!(report.iter().all(|(_, _, r)| r.bytes_quarantined == 0 && r.segments_quarantined == 0), "zeros are not damage: {report:?}");
    assert_eq!(values(&read_all(&log, "big", 0)?), (0..50).map(|i| format!("big-{i}")).collect::<Vec<_>>());
    let small = values(&read_all(&log, "small", 0)?);
    let want: Vec<String> = (0..50).flat_map(|i| [format!("small-{i}-{}", "s".repeat(100)), "pair".to_string()]).collect();
    assert_eq!(small, want);
    assert!(log.describe_topic("small")?.partitions[0].segment_count > 5);
    let at = log.append("big", Some(0), &[Record::new(b"after")], Acks::All)?;
    assert_eq!(at.base_offset, 50);
    log.close()?;
    let log = open(dir.path())?;
    assert_eq!(read_all(&log, "big", 0)?.len(), 51);
    Ok(())
}

#[test]
fn a_crash_after_a_clean_reopen_recovers_from_the_checkpoint() -> TestResult {
    if let Some(d) = std::env::var_os(CRASH_CHILD_ENV) {
        let log = open(std::path::Path::new(&d))?;
        for i in 100..150u32 {
            let v = format!("v{i}-{}", "z".repeat(150));
            log.append("t", Some(0), &[Record::new(v.as_bytes())], Acks::One)?;
        }
        crash();
    }
    let dir = tempfile::tempdir()?;
    let want: Vec<String> = (0..150u32).map(|i| format!("v{i}-{}", "z".repeat(150))).collect();
    let segments_before = {
        let log = open(dir.path())?;
        log.create_topic("t", 1, small_segments())?;
        for v in &want[..100] {
            log.append("t", Some(0), &[Record::new(v.as_bytes())], Acks::One)?;
        }
        let n = log.describe_topic("t")?.partitions[0].segment_count;
        log.close()?;
        n
    };
    run_crashing_child("a_crash_after_a_clean_reopen_recovers_from_the_checkpoint", dir.path())?;
    let log = open(dir.path())?;
    let report = log.recovery_report();
    let verified = report.iter().find(|(t, _, _)| t == "t").map(|(_, _, r)| r.segments_verified).ok_or("t was not recovered")?;
    let total = log.describe_topic("t")?.partitions[0].segment_count;
    assert!(verified > 0 && verified < total, "verified {verified} of {total} segments: only those after the checkpoint");
    assert!(verified <= total - segments_before + 1, "verified {verified}, {segments_before} segments were checkpointed");
    assert_eq!(values(&read_all(&log, "t", 0)?), want);
    Ok(())
}

#[test]
fn readers_see_every_visible_record_exactly_once_while_appends_roll_segments() -> TestResult {
    for hw_mode in ["written", "durable"] {
        let dir = tempfile::tempdir()?;
        let log = open(dir.path())?;
        log.create_topic("t", 1, config(&[("high.watermark", hw_mode), ("segment.bytes", "1024"), ("index.interval.bytes", "64")]))?;
        const TOTAL: u64 = 1500;
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| -> TestResult {
            let writer = s.spawn(|| -> runnel::Result<()> {
                let mut n = 0u64;
                while n < TOTAL {
                    let k = (n % 3 + 1).min(TOTAL - n);
                    let vals: Vec<String> = (n..n + k).map(|i| format!("rec-{i}")).collect();
                    let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v.as_bytes())).collect();
                    let acks = if n.is_multiple_of(50) { Acks::All } else { Acks::One };
                    log.append("t", Some(0), &recs, acks)?;
                    n += k;
                    if n.is_multiple_of(30) {
                        log.sync_to("t", 0, n)?;
                    }
                }
                log.sync_all()?;
                done.store(true, std::sync::atomic::Ordering::Release);
                Ok(())
            });
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| -> runnel::Result<u64> {
                        let mut next = 0u64;
                        loop {
                            let finished = done.load(std::sync::atomic::Ordering::Acquire);
                            let f = log.fetch("t", 0, next, 700)?;
                            assert!(f.next_offset() <= f.high_watermark());
                            for r in f.records() {
                                let r = r?;
                                assert_eq!(r.offset, next, "{hw_mode}: records in order, none skipped or repeated");
                                assert_eq!(r.value, Some(format!("rec-{next}").as_bytes()));
                                next += 1;
                            }
                            assert_eq!(f.next_offset(), next);
                            if finished && next == TOTAL {
                                return Ok(next);
                            }
                            if f.is_empty() {
                                std::thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            writer.join().map_err(|_| "writer panicked")??;
            for r in readers {
                assert_eq!(r.join().map_err(|_| "reader panicked")??, TOTAL);
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[test]
fn background_flushing_makes_acks_one_records_visible_without_a_sync() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), runnel::LogOptions::default())?;
    log.create_topic("t", 1, config(&[("high.watermark", "durable"), ("flush.ms", "5")]))?;
    log.append("t", Some(0), &[Record::new(b"a"), Record::new(b"b")], Acks::One)?;
    // No sync call: the maintenance thread must flush within a few flush.ms. Poll, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while log.high_watermark("t", 0)? < 2 {
        assert!(std::time::Instant::now() < deadline, "the background flush never ran");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(log.durable_offset("t", 0)?, 2);
    assert_eq!(values(&read_all(&log, "t", 0)?), ["a", "b"]);
    Ok(())
}

#[test]
fn a_partition_handle_appends_and_fetches_like_the_log_and_fails_cleanly_once_stale() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("h", 2, TopicConfig::default())?;
    let p1 = log.partition_handle("h", 1)?;
    assert_eq!((p1.topic(), p1.partition()), ("h", 1));
    let at = p1.append(&[Record::new(b"a"), Record::new(b"b")], Acks::All)?;
    assert_eq!((at.partition, at.base_offset, at.last_offset), (1, 0, 1));
    assert_eq!(log.high_watermark("h", 1)?, 2, "the log sees what the handle appended");
    let got: Vec<_> = p1.fetch(1, 1 << 20)?.records().map(|r| r.map(|r| r.value.map(<[u8]>::to_vec))).collect::<runnel::Result<_>>()?;
    assert_eq!(got, [Some(b"b".to_vec())]);
    assert!(matches!(log.partition_handle("h", 2), Err(Error::UnknownTopicOrPartition { partition: Some(2), .. })));
    assert!(matches!(log.partition_handle("__consumer_offsets", 0)?.append(&[Record::new(b"x")], Acks::All), Err(Error::ReadOnly(_))));

    log.delete_topic("h")?;
    assert!(matches!(p1.append(&[Record::new(b"c")], Acks::All), Err(Error::UnknownTopicOrPartition { .. })));
    assert!(matches!(p1.fetch(0, 1 << 20), Err(Error::UnknownTopicOrPartition { .. })));

    log.create_topic("g", 1, TopicConfig::default())?;
    let g0 = log.partition_handle("g", 0)?;
    g0.append(&[Record::new(b"before close")], Acks::One)?;
    log.close()?;
    assert!(matches!(g0.append(&[Record::new(b"after close")], Acks::One), Err(Error::Closed)), "no write past the trimmed file");
    let log = open(dir.path())?;
    assert_eq!(log.high_watermark("g", 0)?, 1);
    Ok(())
}
