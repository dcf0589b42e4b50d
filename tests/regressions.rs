//! Regression tests, one per bug found in review of the core engine:
//! - `create_topic` ignored `LogOptions::default_topic_config` for keys left at Kafka's defaults;
//! - `TopicConfig::set` kept a value that `validate()` rejected;
//! - quarantine file names embedded the topic name and passed NAME_MAX for 249-character topics,
//!   so recovery (and `Log::open`) failed;
//! - `commit_offsets` split one call into several batches, so a failure (or a crash) part way
//!   left some offsets of the call committed.

mod common;

use common::{TestResult, config, make_unclean, open, opts, partition_dir, read_all, values};
use runnel::{Acks, Error, Log, OffsetCommit, Record, TopicConfig};

/// `Log::create_topic` says: "Keys of `config` left at their defaults take the log's default topic
/// config." A topic created with `TopicConfig::default()` in a log whose default topic config sets
/// `retention.ms` and `segment.bytes` should get those values, now and after a reopen.
#[test]
fn keys_left_at_their_defaults_take_the_logs_default_topic_config() -> TestResult {
    let dir = tempfile::tempdir()?;
    let defaults = config(&[("retention.ms", "1000"), ("segment.bytes", "65536")]);
    let check = |log: &Log| -> TestResult {
        assert_eq!(log.describe_topic("inherits")?.config, defaults);
        assert_eq!(log.describe_topic("overrides")?.config, TopicConfig { flush_ms: 7, ..defaults.clone() });
        Ok(())
    };
    {
        let log = Log::open(dir.path(), opts().default_topic_config(defaults.clone()))?;
        log.create_topic("inherits", 1, TopicConfig::default())?;
        log.create_topic("overrides", 1, config(&[("flush.ms", "7")]))?;
        check(&log)?;
    }
    let log = Log::open(dir.path(), opts().default_topic_config(defaults.clone()))?;
    check(&log)
}

/// A setter that refuses a value should not keep it: after the error the config must still be
/// the valid one it was.
#[test]
fn a_rejected_config_value_leaves_the_config_unchanged() {
    for (k, v) in [("segment.bytes", "100"), ("max.message.bytes", "10"), ("index.interval.bytes", "0"), ("segment.ms", "0")] {
        let mut c = TopicConfig::default();
        let r = c.set(k, v);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{k}={v}: {r:?}");
        assert_eq!(c, TopicConfig::default(), "{k}={v} was refused but kept");
        assert!(c.validate().is_ok(), "{k}={v} left an invalid config behind");
    }
}

/// 249 characters is a legal topic name, so a partition of such a topic must be recoverable like
/// any other: a damaged tail is cut and quarantined, and the log opens.
#[test]
fn a_topic_with_a_249_character_name_recovers_from_a_damaged_tail() -> TestResult {
    let dir = tempfile::tempdir()?;
    let name = "x".repeat(249);
    {
        let log = open(dir.path())?;
        log.create_topic(&name, 1, TopicConfig::default())?;
        log.append(&name, Some(0), &[Record::new(b"kept")], Acks::All)?;
        log.close()?;
    }
    make_unclean(dir.path())?;
    let segment = partition_dir(dir.path(), &name, 0).join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&segment)?;
    bytes.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&segment, &bytes)?;

    let log = open(dir.path())?;
    let report = log.recovery_report();
    assert!(report.iter().any(|(t, _, r)| *t == name && r.bytes_quarantined == 100), "{report:?}");
    assert_eq!(values(&read_all(&log, &name, 0)?), ["kept"]);
    Ok(())
}

/// `Log::commit_offsets` says: "durably and atomically: after a crash either every offset of the
/// call is committed or none is". A call that fails must leave nothing behind, in memory or on
/// disk: after a reopen its offsets must not appear.
#[test]
fn a_failed_commit_leaves_no_offset_behind_even_after_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let big = "m".repeat(1_100_000);
    {
        let log = open(dir.path())?;
        log.create_topic("t", 2, TopicConfig::default())?;
        let r = log.commit_offsets(
            "g",
            &[
                OffsetCommit { topic: "t", partition: 0, offset: 5, metadata: "" },
                OffsetCommit { topic: "t", partition: 1, offset: 6, metadata: &big },
            ],
        );
        assert!(r.is_err(), "the call fails (its metadata does not fit a batch)");
        assert_eq!(log.committed("g", "t", 0)?, None);
        assert!(log.list_groups().is_empty());
        log.close()?;
    }
    let log = open(dir.path())?;
    assert_eq!(log.committed("g", "t", 0)?, None, "an offset of a failed call came back after reopen");
    assert_eq!(log.committed("g", "t", 1)?, None);
    assert!(log.list_groups().is_empty(), "{:?}", log.list_groups());
    Ok(())
}
