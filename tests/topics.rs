//! Topics: create, list, describe, delete, add partitions, Kafka's naming rules, topic configs,
//! the directory lock, reopening, and the internal `__consumer_offsets` topic.

mod common;

use common::{TestResult, config, dir_names, open, opts, partition_dir, read_all, values};
use runnel::{Acks, CONSUMER_OFFSETS_TOPIC, Error, HighWatermark, Log, Record, TimestampType, TopicConfig};

#[test]
fn created_topics_are_listed_sorted_with_the_internal_offsets_topic() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("zeta", 1, TopicConfig::default())?;
    log.create_topic("alpha", 2, TopicConfig::default())?;
    log.create_topic("mid.dle_x-1", 3, TopicConfig::default())?;
    assert_eq!(log.list_topics(), [CONSUMER_OFFSETS_TOPIC, "alpha", "mid.dle_x-1", "zeta"]);
    assert_eq!(log.partition_count("alpha")?, 2);
    assert_eq!(log.partition_count("mid.dle_x-1")?, 3);
    for p in 0..3 {
        assert!(partition_dir(dir.path(), "mid.dle_x-1", p).is_dir(), "partition directory {p} exists");
    }
    Ok(())
}

#[test]
fn describe_reports_config_and_each_partitions_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let cfg = config(&[("retention.ms", "60000"), ("segment.bytes", "4096")]);
    log.create_topic("orders", 3, cfg.clone())?;
    log.append("orders", Some(1), &[Record::new(b"a"), Record::new(b"b")], Acks::All)?;

    let d = log.describe_topic("orders")?;
    assert_eq!(d.name, "orders");
    assert!(!d.internal);
    assert_eq!(d.config, cfg);
    assert_eq!(d.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), [0, 1, 2]);
    let p1 = &d.partitions[1];
    assert_eq!((p1.log_start_offset, p1.high_watermark, p1.durable_offset, p1.log_end_offset), (0, 2, 2, 2));
    assert_eq!(p1.segment_count, 1);
    assert!(p1.size_bytes > 0);
    for p in [&d.partitions[0], &d.partitions[2]] {
        assert_eq!((p.log_start_offset, p.high_watermark, p.durable_offset, p.log_end_offset, p.size_bytes), (0, 0, 0, 0, 0));
    }
    Ok(())
}

#[test]
fn delete_topic_removes_its_partition_directories_and_leaves_nothing_behind() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("doomed", 3, TopicConfig::default())?;
    // A topic whose partition directories share the prefix ("doomed-1-0") must survive.
    log.create_topic("doomed-1", 1, TopicConfig::default())?;
    for p in 0..3 {
        log.append("doomed", Some(p), &[Record::new(b"x")], Acks::All)?;
    }
    log.append("doomed-1", Some(0), &[Record::new(b"keep me")], Acks::All)?;
    let before = dir_names(dir.path())?;
    assert!(before.contains(&"doomed-0".to_string()) && before.contains(&"doomed-2".to_string()), "{before:?}");

    log.delete_topic("doomed")?;

    assert!(!log.list_topics().contains(&"doomed".to_string()));
    let after = dir_names(dir.path())?;
    for p in 0..3 {
        assert!(!after.contains(&format!("doomed-{p}")), "doomed-{p} is still there: {after:?}");
    }
    assert!(after.contains(&"doomed-1-0".to_string()), "{after:?}");
    assert!(matches!(log.describe_topic("doomed"), Err(Error::UnknownTopicOrPartition { .. })));
    assert!(matches!(log.fetch("doomed", 0, 0, 1024), Err(Error::UnknownTopicOrPartition { .. })));
    assert!(matches!(log.append("doomed", Some(0), &[Record::new(b"y")], Acks::All), Err(Error::UnknownTopicOrPartition { .. })));
    assert_eq!(values(&read_all(&log, "doomed-1", 0)?), ["keep me"]);

    // Nothing comes back on reopen: not in the catalog, no directory.
    log.close()?;
    let log = open(dir.path())?;
    assert!(!log.list_topics().contains(&"doomed".to_string()));
    let reopened = dir_names(dir.path())?;
    assert!(!reopened.iter().any(|n| n.starts_with("doomed-") && n != "doomed-1-0"), "{reopened:?}");
    assert_eq!(values(&read_all(&log, "doomed-1", 0)?), ["keep me"]);
    log.close()?;
    // Neither the catalog nor the recovery-point checkpoint still names it.
    let catalog = std::fs::read(dir.path().join("catalog"))?;
    assert_eq!(catalog.windows(6).filter(|w| w == b"doomed").count(), 1, "only doomed-1 is catalogued");
    let checkpoint = std::fs::read_to_string(dir.path().join(common::CHECKPOINT_FILE))?;
    assert!(!checkpoint.lines().any(|l| l.starts_with("doomed ")), "{checkpoint}");
    assert!(checkpoint.lines().any(|l| l.starts_with("doomed-1 0 ")), "{checkpoint}");
    Ok(())
}

#[test]
fn recreating_a_deleted_topic_starts_at_offset_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    log.append("t", Some(0), &[Record::new(b"old-1"), Record::new(b"old-2"), Record::new(b"old-3")], Acks::All)?;
    log.delete_topic("t")?;

    log.create_topic("t", 1, TopicConfig::default())?;
    assert_eq!(log.partition_count("t")?, 1);
    assert_eq!((log.log_start_offset("t", 0)?, log.high_watermark("t", 0)?, log.log_end_offset("t", 0)?), (0, 0, 0));
    let at = log.append("t", Some(0), &[Record::new(b"new")], Acks::All)?;
    assert_eq!((at.base_offset, at.last_offset), (0, 0));
    assert_eq!(values(&read_all(&log, "t", 0)?), ["new"]);

    log.close()?;
    let log = open(dir.path())?;
    assert_eq!(values(&read_all(&log, "t", 0)?), ["new"]);
    assert_eq!(log.partition_count("t")?, 1);
    Ok(())
}

#[test]
fn add_partitions_adds_usable_partitions_that_survive_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("grow", 2, TopicConfig::default())?;
    log.append("grow", Some(1), &[Record::new(b"before")], Acks::All)?;

    log.add_partitions("grow", 5)?;
    assert_eq!(log.partition_count("grow")?, 5);
    assert_eq!(log.describe_topic("grow")?.partitions.len(), 5);
    for p in 2..5 {
        assert!(partition_dir(dir.path(), "grow", p).is_dir());
        let at = log.append("grow", Some(p), &[Record::new(format!("p{p}").as_bytes())], Acks::All)?;
        assert_eq!((at.partition, at.base_offset), (p, 0));
    }
    assert_eq!(values(&read_all(&log, "grow", 4)?), ["p4"]);

    log.close()?;
    let log = open(dir.path())?;
    assert_eq!(log.partition_count("grow")?, 5);
    assert_eq!(values(&read_all(&log, "grow", 1)?), ["before"]);
    for p in 2..5 {
        assert_eq!(values(&read_all(&log, "grow", p)?), [format!("p{p}")]);
    }
    Ok(())
}

#[test]
fn add_partitions_refuses_a_lower_or_equal_count() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("fixed", 3, TopicConfig::default())?;
    for n in [0, 1, 2, 3] {
        let r = log.add_partitions("fixed", n);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "add_partitions(fixed, {n}): {r:?}");
    }
    assert_eq!(log.partition_count("fixed")?, 3);
    assert!(!partition_dir(dir.path(), "fixed", 3).exists());
    let r = log.add_partitions("missing", 4);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: None }) if topic == "missing"), "{r:?}");
    Ok(())
}

#[test]
fn topic_names_follow_kafka_rules() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let longest = "x".repeat(249);
    let good = ["a", "orders", "a.b_c-d", "A9", "...", "x..y", "-lead", "_single", longest.as_str()];
    for name in good {
        runnel::validate_topic_name(name)?;
        log.create_topic(name, 1, TopicConfig::default())?;
        log.append(name, Some(0), &[Record::new(b"ok")], Acks::All)?;
        assert_eq!(values(&read_all(&log, name, 0)?), ["ok"], "{name}");
    }
    assert_eq!(runnel::MAX_TOPIC_NAME_LEN, 249);

    let too_long = "x".repeat(250);
    let bad = ["", ".", "..", "../x", "a/b", "/abs", "a b", "ü", "a\0b", "tab\t", too_long.as_str()];
    for name in bad {
        let r = log.create_topic(name, 1, TopicConfig::default());
        assert!(matches!(&r, Err(Error::InvalidTopic { name: n, .. }) if n == name), "{name:?}: {r:?}");
        assert!(matches!(runnel::validate_topic_name(name), Err(Error::InvalidTopic { .. })), "{name:?}");
    }
    // Nothing escaped the data directory or was created for a rejected name.
    assert!(!dir.path().join("..").join("x-0").exists());
    assert!(!dir.path().join("a").join("b-0").exists());
    let mut listed = log.list_topics();
    listed.retain(|t| t != CONSUMER_OFFSETS_TOPIC);
    let mut want: Vec<String> = good.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(listed, want);
    Ok(())
}

#[test]
fn names_starting_with_two_underscores_are_reserved() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    for name in ["__mine", "__consumer_offsets", "__", "__transaction_state"] {
        let r = log.create_topic(name, 1, TopicConfig::default());
        assert!(matches!(&r, Err(Error::InvalidTopic { name: n, .. }) if n == name), "{name:?}: {r:?}");
    }
    assert_eq!(log.list_topics(), [CONSUMER_OFFSETS_TOPIC]);
    log.create_topic("_one_underscore", 1, TopicConfig::default())?;
    Ok(())
}

#[test]
fn creating_an_existing_topic_fails_with_topic_exists_and_keeps_the_original() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("dup", 2, TopicConfig::default())?;
    log.append("dup", Some(0), &[Record::new(b"original")], Acks::All)?;

    let r = log.create_topic("dup", 4, TopicConfig::default());
    assert!(matches!(&r, Err(Error::TopicExists { topic }) if topic == "dup"), "{r:?}");
    assert_eq!(log.partition_count("dup")?, 2);
    assert_eq!(values(&read_all(&log, "dup", 0)?), ["original"]);

    log.close()?;
    let log = open(dir.path())?;
    let r = log.create_topic("dup", 1, TopicConfig::default());
    assert!(matches!(&r, Err(Error::TopicExists { topic }) if topic == "dup"), "after reopen: {r:?}");
    assert_eq!(values(&read_all(&log, "dup", 0)?), ["original"]);
    Ok(())
}

#[test]
fn unknown_topics_and_partitions_are_unknown_topic_or_partition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let unknown_topic = |r: Result<(), Error>, what: &str| {
        assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: None }) if topic == "nope"), "{what}: {r:?}");
    };
    unknown_topic(log.describe_topic("nope").map(drop), "describe");
    unknown_topic(log.delete_topic("nope"), "delete");
    unknown_topic(log.partition_count("nope").map(drop), "partition_count");
    unknown_topic(log.append("nope", Some(0), &[Record::new(b"x")], Acks::All).map(drop), "append");
    unknown_topic(log.append("nope", None, &[Record::new(b"x")], Acks::All).map(drop), "append without partition");
    unknown_topic(log.partition_for("nope", Some(b"k")).map(drop), "partition_for");

    log.create_topic("two", 2, TopicConfig::default())?;
    let unknown_partition = |r: Result<(), Error>, what: &str| {
        assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: Some(2) }) if topic == "two"), "{what}: {r:?}");
    };
    unknown_partition(log.append("two", Some(2), &[Record::new(b"x")], Acks::All).map(drop), "append");
    unknown_partition(log.fetch("two", 2, 0, 1024).map(drop), "fetch");
    unknown_partition(log.high_watermark("two", 2).map(drop), "high_watermark");
    unknown_partition(log.log_start_offset("two", 2).map(drop), "log_start_offset");
    unknown_partition(log.log_end_offset("two", 2).map(drop), "log_end_offset");
    unknown_partition(log.offset_for_timestamp("two", 2, 0).map(drop), "offset_for_timestamp");
    Ok(())
}

#[test]
fn a_topic_needs_between_one_and_ten_thousand_partitions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    for n in [0, 10_001] {
        let r = log.create_topic("t", n, TopicConfig::default());
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{n} partitions: {r:?}");
    }
    assert_eq!(log.list_topics(), [CONSUMER_OFFSETS_TOPIC]);
    assert!(!partition_dir(dir.path(), "t", 0).exists());
    Ok(())
}

#[test]
fn topic_config_set_takes_kafka_names() -> TestResult {
    let mut c = TopicConfig::default();
    c.set("segment.bytes", "2048")?;
    c.set("segment.ms", "-1")?;
    c.set("index.interval.bytes", "128")?;
    c.set("retention.ms", "3600000")?;
    c.set("retention.bytes", "1048576")?;
    c.set("max.message.bytes", "4096")?;
    c.set("message.timestamp.type", "LogAppendTime")?;
    c.set("flush.ms", "5")?;
    c.set("high.watermark", "written")?;
    c.set("cleanup.policy", "delete")?;
    assert_eq!(
        c,
        TopicConfig {
            segment_bytes: 2048,
            segment_ms: None,
            index_interval_bytes: 128,
            retention_ms: Some(3_600_000),
            retention_bytes: Some(1_048_576),
            max_message_bytes: 4096,
            message_timestamp_type: TimestampType::LogAppendTime,
            flush_ms: 5,
            high_watermark: HighWatermark::Written,
        }
    );
    // Every entry names a known key and reads back to the same config.
    let mut again = TopicConfig::default();
    for (k, v) in c.entries() {
        assert!(runnel::TOPIC_CONFIG_KEYS.contains(&k), "{k}");
        again.set(k, &v)?;
    }
    assert_eq!(again, c);
    c.set("retention.ms", "-1")?;
    c.set("retention.bytes", "-1")?;
    assert_eq!((c.retention_ms, c.retention_bytes), (None, None));
    Ok(())
}

#[test]
fn topic_config_set_rejects_unknown_keys_and_bad_values() {
    let cases = [
        ("retention.size", "1"),
        ("segment.byte", "1024"),
        ("", ""),
        ("segment.bytes", "abc"),
        ("segment.bytes", "-5"),
        ("segment.bytes", "100"),
        ("segment.bytes", "4294967296"),
        ("max.message.bytes", "10"),
        ("index.interval.bytes", "0"),
        ("segment.ms", "0"),
        ("retention.ms", "-2"),
        ("retention.bytes", "lots"),
        ("flush.ms", "1.5"),
        ("message.timestamp.type", "createtime"),
        ("message.timestamp.type", "Now"),
        ("high.watermark", "maybe"),
        ("cleanup.policy", "compact"),
        ("cleanup.policy", "compact,delete"),
    ];
    for (k, v) in cases {
        let mut c = TopicConfig::default();
        let r = c.set(k, v);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{k}={v}: {r:?}");
    }
}

#[test]
fn create_topic_rejects_an_invalid_config() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let bad = TopicConfig { segment_bytes: 10, ..TopicConfig::default() };
    let r = log.create_topic("t", 1, bad);
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert!(!log.list_topics().contains(&"t".to_string()));
    assert!(!partition_dir(dir.path(), "t", 0).exists());
    Ok(())
}

#[test]
fn topic_config_persists_across_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(&[
        ("retention.ms", "-1"),
        ("retention.bytes", "5000000"),
        ("segment.bytes", "65536"),
        ("max.message.bytes", "2048"),
        ("message.timestamp.type", "LogAppendTime"),
        ("high.watermark", "written"),
        ("flush.ms", "250"),
    ]);
    {
        let log = open(dir.path())?;
        log.create_topic("configured", 2, cfg.clone())?;
        log.create_topic("plain", 1, TopicConfig::default())?;
        log.close()?;
    }
    let log = open(dir.path())?;
    assert_eq!(log.describe_topic("configured")?.config, cfg);
    assert_eq!(log.describe_topic("plain")?.config, TopicConfig::default());
    // The reloaded config is in force, not just reported.
    let at = log.append("configured", Some(0), &[Record::new(b"x").with_timestamp(1)], Acks::One)?;
    assert_ne!(at.log_append_time, -1, "LogAppendTime applies after reopen");
    assert_eq!(log.high_watermark("configured", 0)?, 1, "high.watermark=written applies after reopen");
    let r = log.append("configured", Some(1), &[Record::new(&[0u8; 4096])], Acks::All);
    assert!(matches!(r, Err(Error::RecordTooLarge { max: 2048, .. })), "max.message.bytes applies after reopen: {r:?}");
    Ok(())
}

#[test]
fn a_second_open_of_an_open_directory_is_locked() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let r = Log::open(dir.path(), opts());
    assert!(matches!(&r, Err(Error::Locked { dir: d }) if d == dir.path()), "{:?}", r.as_ref().map(|_| ()));
    // The first handle is unaffected by the refused open.
    log.append("t", Some(0), &[Record::new(b"still mine")], Acks::All)?;
    log.close()?;
    let log = open(dir.path())?;
    assert_eq!(values(&read_all(&log, "t", 0)?), ["still mine"]);
    Ok(())
}

const CHILD_DIR_ENV: &str = "RUNNEL_TEST_LOCK_CHILD_DIR";
const CHILD_SAW_LOCKED: &str = "child-open-was-locked";

#[test]
fn a_second_open_from_another_process_is_locked() -> TestResult {
    if let Some(d) = std::env::var_os(CHILD_DIR_ENV) {
        // Child mode: the parent holds the directory open.
        let r = Log::open(&d, opts());
        assert!(matches!(r, Err(Error::Locked { .. })), "child: {:?}", r.as_ref().map(|_| ()));
        println!("{CHILD_SAW_LOCKED}");
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "a_second_open_from_another_process_is_locked", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(CHILD_SAW_LOCKED), "the child did not run its check: {stdout}");
    drop(log);
    Ok(())
}

#[test]
fn reopen_after_close_keeps_topics_partitions_configs_and_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cfg = config(&[("retention.ms", "86400000")]);
    let (desc_a, desc_b) = {
        let log = open(dir.path())?;
        log.create_topic("a", 3, cfg.clone())?;
        log.create_topic("b", 1, TopicConfig::default())?;
        for p in 0..3 {
            for i in 0..=p {
                log.append("a", Some(p), &[Record::new(format!("a{p}-{i}").as_bytes())], Acks::All)?;
            }
        }
        log.append("b", Some(0), &[Record::new(b"b0"), Record::tombstone(b"gone")], Acks::All)?;
        let d = (log.describe_topic("a")?, log.describe_topic("b")?);
        log.close()?;
        d
    };
    let log = open(dir.path())?;
    assert_eq!(log.list_topics(), [CONSUMER_OFFSETS_TOPIC, "a", "b"]);
    assert_eq!(log.describe_topic("a")?, desc_a);
    assert_eq!(log.describe_topic("b")?, desc_b);
    for p in 0..3 {
        let want: Vec<String> = (0..=p).map(|i| format!("a{p}-{i}")).collect();
        assert_eq!(values(&read_all(&log, "a", p)?), want);
    }
    assert_eq!(values(&read_all(&log, "b", 0)?), ["b0", "<null>"]);
    assert!(log.recovery_report().is_empty(), "a clean reopen recovers nothing: {:?}", log.recovery_report());
    Ok(())
}

#[test]
fn the_internal_offsets_topic_is_listed_and_described_as_internal() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    assert_eq!(log.list_topics(), [CONSUMER_OFFSETS_TOPIC]);
    assert_eq!(CONSUMER_OFFSETS_TOPIC, "__consumer_offsets");
    let d = log.describe_topic(CONSUMER_OFFSETS_TOPIC)?;
    assert!(d.internal);
    assert_eq!(d.partitions.len(), 1);
    assert!(partition_dir(dir.path(), CONSUMER_OFFSETS_TOPIC, 0).is_dir());
    Ok(())
}

#[test]
fn the_internal_offsets_topic_is_read_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    let before = log.log_end_offset(CONSUMER_OFFSETS_TOPIC, 0)?;
    for p in [Some(0), None] {
        let r = log.append(CONSUMER_OFFSETS_TOPIC, p, &[Record::new(b"forged").with_key(b"k")], Acks::All);
        assert!(matches!(r, Err(Error::ReadOnly(_))), "append to partition {p:?}: {r:?}");
    }
    assert_eq!(log.log_end_offset(CONSUMER_OFFSETS_TOPIC, 0)?, before);
    let r = log.delete_topic(CONSUMER_OFFSETS_TOPIC);
    assert!(matches!(r, Err(Error::ReadOnly(_))), "delete: {r:?}");
    let r = log.add_partitions(CONSUMER_OFFSETS_TOPIC, 4);
    assert!(matches!(r, Err(Error::ReadOnly(_))), "add_partitions: {r:?}");
    assert!(log.list_topics().contains(&CONSUMER_OFFSETS_TOPIC.to_string()));
    assert!(partition_dir(dir.path(), CONSUMER_OFFSETS_TOPIC, 0).is_dir());
    assert_eq!(log.partition_count(CONSUMER_OFFSETS_TOPIC)?, 1);
    Ok(())
}
