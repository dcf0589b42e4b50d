//! Consumer-group offsets: commit and read back, persistence (clean and unclean), validation,
//! listing, lag, deleting groups and topics, and the bounded size of `__consumer_offsets`.

mod common;

use std::collections::BTreeMap;

use common::{TestResult, make_unclean, now_ms, open, partition_dir, segment_files};
use runnel::{Acks, CONSUMER_OFFSETS_TOPIC, Error, Log, OffsetAndMetadata, OffsetCommit, PartitionLag, Record, TopicConfig};

fn commit<'a>(topic: &'a str, partition: u32, offset: u64, metadata: &'a str) -> OffsetCommit<'a> {
    OffsetCommit { topic, partition, offset, metadata }
}

fn committed(log: &Log, group: &str, topic: &str, partition: u32) -> Result<Option<(u64, String)>, Error> {
    Ok(log.committed(group, topic, partition)?.map(|c| (c.offset, c.metadata)))
}

#[test]
fn committed_offsets_round_trip_with_metadata() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 3, TopicConfig::default())?;
    let before = now_ms();
    log.commit_offsets("g", &[commit("t", 0, 5, "host-a"), commit("t", 2, 0, ""), commit("t", 1, 1_000_000, "ünïcode ✓")])?;
    let after = now_ms();

    let c = log.committed("g", "t", 0)?.ok_or("nothing committed for t-0")?;
    assert_eq!((c.offset, c.metadata.as_str()), (5, "host-a"));
    assert!((before..=after).contains(&c.commit_timestamp), "commit timestamp {}", c.commit_timestamp);
    assert_eq!(committed(&log, "g", "t", 1)?, Some((1_000_000, "ünïcode ✓".into())), "an offset past the high watermark is kept as is");
    assert_eq!(committed(&log, "g", "t", 2)?, Some((0, String::new())));
    assert_eq!(log.committed("other-group", "t", 0)?, None);

    // A later commit replaces the earlier one for that partition only.
    log.commit_offsets("g", &[commit("t", 0, 9, "host-b")])?;
    assert_eq!(committed(&log, "g", "t", 0)?, Some((9, "host-b".into())));
    assert_eq!(committed(&log, "g", "t", 2)?, Some((0, String::new())));
    // Committing nothing is allowed and changes nothing.
    log.commit_offsets("g", &[])?;
    assert_eq!(committed(&log, "g", "t", 0)?, Some((9, "host-b".into())));
    Ok(())
}

fn commit_some(log: &Log) -> Result<BTreeMap<(String, u32), OffsetAndMetadata>, Box<dyn std::error::Error>> {
    log.create_topic("a", 2, TopicConfig::default())?;
    log.create_topic("b", 1, TopicConfig::default())?;
    log.commit_offsets("g1", &[commit("a", 0, 1, "first"), commit("a", 1, 2, "")])?;
    log.commit_offsets("g2", &[commit("b", 0, 7, "m")])?;
    log.commit_offsets("g1", &[commit("a", 0, 3, "second"), commit("b", 0, 4, "b")])?;
    log.commit_offsets("gone", &[commit("a", 0, 1, "")])?;
    log.delete_group("gone")?;
    let mut all = BTreeMap::new();
    for g in ["g1", "g2"] {
        for (t, p) in [("a", 0), ("a", 1), ("b", 0)] {
            if let Some(c) = log.committed(g, t, p)? {
                all.insert((format!("{g}/{t}"), p), c);
            }
        }
    }
    assert_eq!(all.len(), 4);
    Ok(all)
}

fn all_committed(log: &Log) -> Result<BTreeMap<(String, u32), OffsetAndMetadata>, Box<dyn std::error::Error>> {
    let mut all = BTreeMap::new();
    for g in ["g1", "g2", "gone"] {
        for (t, p) in [("a", 0), ("a", 1), ("b", 0)] {
            if let Some(c) = log.committed(g, t, p)? {
                all.insert((format!("{g}/{t}"), p), c);
            }
        }
    }
    Ok(all)
}

#[test]
fn committed_offsets_survive_close_and_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let want = {
        let log = open(dir.path())?;
        let w = commit_some(&log)?;
        log.close()?;
        w
    };
    let log = open(dir.path())?;
    assert_eq!(all_committed(&log)?, want, "offsets, metadata and commit timestamps all come back");
    assert_eq!(log.list_groups(), ["g1", "g2"]);
    Ok(())
}

#[test]
fn committed_offsets_survive_an_unclean_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    let want = {
        let log = open(dir.path())?;
        let w = commit_some(&log)?;
        drop(log);
        w
    };
    make_unclean(dir.path())?;
    let log = open(dir.path())?;
    assert!(
        log.recovery_report().iter().any(|(t, _, r)| t == CONSUMER_OFFSETS_TOPIC && r.segments_verified > 0),
        "the offsets topic went through recovery: {:?}",
        log.recovery_report()
    );
    assert_eq!(all_committed(&log)?, want);
    assert_eq!(log.list_groups(), ["g1", "g2"]);
    Ok(())
}

#[test]
fn committing_for_an_unknown_topic_or_partition_fails_and_commits_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    let r = log.commit_offsets("g", &[commit("missing", 0, 1, "")]);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: None }) if topic == "missing"), "{r:?}");
    let r = log.commit_offsets("g", &[commit("t", 0, 1, ""), commit("t", 2, 1, "")]);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { topic, partition: Some(2) }) if topic == "t"), "{r:?}");
    assert_eq!(log.committed("g", "t", 0)?, None, "a failed call commits none of its offsets");
    assert!(log.list_groups().is_empty());
    let r = log.committed("g", "t", 5);
    assert!(matches!(r, Err(Error::UnknownTopicOrPartition { partition: Some(5), .. })), "{r:?}");
    let r = log.committed("g", "missing", 0);
    assert!(matches!(r, Err(Error::UnknownTopicOrPartition { .. })), "{r:?}");
    Ok(())
}

#[test]
fn an_empty_or_malformed_group_id_is_an_invalid_argument() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let too_long = "g".repeat(256);
    for group in ["", "new\nline", "nul\0", too_long.as_str()] {
        let r = log.commit_offsets(group, &[commit("t", 0, 1, "")]);
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{group:?}: {r:?}");
    }
    assert!(log.list_groups().is_empty());
    log.commit_offsets(&"g".repeat(255), &[commit("t", 0, 1, "")])?;
    Ok(())
}

#[test]
fn list_groups_returns_every_group_with_commits_sorted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    assert!(log.list_groups().is_empty());
    log.create_topic("t", 1, TopicConfig::default())?;
    for g in ["zeta", "alpha", "Mid", "alpha", "beta.1"] {
        log.commit_offsets(g, &[commit("t", 0, 1, "")])?;
    }
    assert_eq!(log.list_groups(), ["Mid", "alpha", "beta.1", "zeta"]);
    Ok(())
}

#[test]
fn group_lag_is_the_high_watermark_minus_the_committed_offset_per_partition() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 3, TopicConfig::default())?;
    log.create_topic("u", 1, TopicConfig::default())?;
    for (p, n) in [(0, 10), (1, 5)] {
        let recs = vec![Record::new(b"x"); n];
        log.append("t", Some(p), &recs, Acks::All)?;
    }
    log.commit_offsets("g", &[commit("t", 0, 4, ""), commit("t", 1, 5, ""), commit("t", 2, 0, ""), commit("u", 0, 3, "")])?;
    type Row = (String, u32, u64, u64, u64);
    let lag = |log: &Log| -> Result<Vec<Row>, Error> {
        Ok(log.group_lag("g")?.into_iter().map(|l: PartitionLag| (l.topic, l.partition, l.committed, l.high_watermark, l.lag)).collect())
    };
    assert_eq!(
        lag(&log)?,
        [("t".into(), 0, 4, 10, 6), ("t".into(), 1, 5, 5, 0), ("t".into(), 2, 0, 0, 0), ("u".into(), 0, 3, 0, 0)],
        "a commit ahead of the high watermark has no lag"
    );
    // Lag follows the visible high watermark: new visible records raise it, invisible ones do not.
    log.append("t", Some(2), &[Record::new(b"y"); 3], Acks::All)?;
    log.append("t", Some(1), &[Record::new(b"z")], Acks::One)?;
    let l = lag(&log)?;
    assert_eq!((l[1].3, l[1].4), (5, 0), "acks=1 records are not visible yet");
    assert_eq!((l[2].3, l[2].4), (3, 3));
    log.sync_all()?;
    assert_eq!(lag(&log)?[1].4, 1);
    assert!(log.group_lag("nobody")?.is_empty());
    Ok(())
}

#[test]
fn delete_group_removes_it_and_stays_deleted_after_reopen() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = open(dir.path())?;
        log.create_topic("t", 2, TopicConfig::default())?;
        log.commit_offsets("doomed", &[commit("t", 0, 3, "x"), commit("t", 1, 4, "y")])?;
        log.commit_offsets("kept", &[commit("t", 0, 1, "k")])?;
        assert!(log.delete_group("doomed")?);
        assert!(!log.delete_group("doomed")?, "a second delete finds nothing");
        assert!(!log.delete_group("never-existed")?);
        assert_eq!(log.list_groups(), ["kept"]);
        assert_eq!(log.committed("doomed", "t", 0)?, None);
        assert!(log.group_lag("doomed")?.is_empty());
        log.close()?;
    }
    for unclean in [false, true] {
        if unclean {
            make_unclean(dir.path())?;
        }
        let log = open(dir.path())?;
        assert_eq!(log.list_groups(), ["kept"], "unclean={unclean}");
        assert_eq!((log.committed("doomed", "t", 0)?, log.committed("doomed", "t", 1)?), (None, None));
        assert_eq!(committed(&log, "kept", "t", 0)?, Some((1, "k".into())));
        log.close()?;
    }
    // A deleted group can start again.
    let log = open(dir.path())?;
    log.commit_offsets("doomed", &[commit("t", 1, 8, "")])?;
    assert_eq!((committed(&log, "doomed", "t", 1)?, log.committed("doomed", "t", 0)?), (Some((8, String::new())), None));
    Ok(())
}

#[test]
fn deleting_a_topic_removes_its_committed_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = open(dir.path())?;
        log.create_topic("gone", 2, TopicConfig::default())?;
        log.create_topic("stays", 1, TopicConfig::default())?;
        log.commit_offsets("both", &[commit("gone", 0, 5, ""), commit("gone", 1, 6, ""), commit("stays", 0, 7, "s")])?;
        log.commit_offsets("only-gone", &[commit("gone", 1, 2, "")])?;
        log.delete_topic("gone")?;

        assert_eq!(log.list_groups(), ["both"], "a group left with no offsets disappears");
        let lag = log.group_lag("both")?;
        assert_eq!(lag.iter().map(|l| (l.topic.as_str(), l.partition, l.committed)).collect::<Vec<_>>(), [("stays", 0, 7)]);
        // A new topic with the same name starts with no committed offsets.
        log.create_topic("gone", 2, TopicConfig::default())?;
        assert_eq!(log.committed("both", "gone", 0)?, None);
        assert_eq!(log.committed("only-gone", "gone", 1)?, None);
        log.close()?;
    }
    let log = open(dir.path())?;
    assert_eq!(log.list_groups(), ["both"]);
    assert_eq!(log.committed("both", "gone", 0)?, None);
    assert_eq!(log.committed("both", "gone", 1)?, None);
    assert_eq!(committed(&log, "both", "stays", 0)?, Some((7, "s".into())));
    Ok(())
}

/// Options whose `__consumer_offsets` rolls and snapshots every 64 KiB.
fn small_offsets_topic() -> runnel::LogOptions {
    common::opts().offsets_topic_segment_bytes(64 << 10)
}

#[test]
fn many_large_commits_keep_the_latest_value_per_key_and_the_offsets_topic_bounded() -> TestResult {
    let dir = tempfile::tempdir()?;
    let odir = partition_dir(dir.path(), CONSUMER_OFFSETS_TOPIC, 0);
    let mut latest: BTreeMap<(String, u32), (u64, String)> = BTreeMap::new();
    let mut max_segments = 0;
    {
        let log = Log::open(dir.path(), small_offsets_topic())?;
        log.create_topic("t", 4, TopicConfig::default())?;
        // About 480 commits of 4 KB: some 2 MB through a 64 KiB-segment offsets topic.
        let pad = "m".repeat(4000);
        for i in 0..480u64 {
            let group = format!("group-{}", i % 3);
            let p = (i % 4) as u32;
            let metadata = format!("{i}:{pad}");
            log.commit_offsets(&group, &[commit("t", p, i, &metadata)])?;
            latest.insert((group, p), (i, metadata));
            if i % 40 == 0 {
                max_segments = max_segments.max(segment_files(&odir)?.len());
            }
        }
        for ((g, p), want) in &latest {
            assert_eq!(committed(&log, g, "t", *p)?.as_ref(), Some(want), "{g} t-{p} before reopen");
        }
        log.close()?;
    }
    let log = Log::open(dir.path(), small_offsets_topic())?;
    assert_eq!(latest.len(), 12);
    for ((g, p), want) in &latest {
        assert_eq!(committed(&log, g, "t", *p)?.as_ref(), Some(want), "{g} t-{p} after reopen");
    }
    let files = segment_files(&odir)?;
    let bytes: u64 = files.iter().map(|f| f.1).sum();
    assert!(files.len() <= 4 && max_segments <= 4, "{} segments now, at most {max_segments} along the way", files.len());
    assert!(bytes <= 3 * (64 << 10), "__consumer_offsets-0 holds {bytes} bytes");
    let d = log.describe_topic(CONSUMER_OFFSETS_TOPIC)?;
    assert!(d.partitions[0].log_start_offset > 0, "old segments were dropped: {:?}", d.partitions[0]);
    Ok(())
}

#[test]
fn commits_deletes_and_snapshots_match_a_model_across_reopens() -> TestResult {
    type Model = BTreeMap<String, BTreeMap<(String, u32), (u64, String)>>;
    fn check(log: &Log, model: &Model, topics: &[&str], when: &str) -> TestResult {
        assert_eq!(log.list_groups(), model.keys().cloned().collect::<Vec<_>>(), "{when}");
        for g in ["g0", "g1", "g2", "g3"] {
            for t in topics {
                for p in 0..2 {
                    let want = model.get(g).and_then(|m| m.get(&(t.to_string(), p))).cloned();
                    assert_eq!(committed(log, g, t, p)?, want, "{when}: {g} {t}-{p}");
                }
            }
        }
        Ok(())
    }
    let dir = tempfile::tempdir()?;
    let topics = ["a", "b", "c"];
    let mut model: Model = BTreeMap::new();
    let mut state = 12345u64;
    let mut rand = |n: u64| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % n
    };
    let pad = "p".repeat(3_000);
    let mut log = Log::open(dir.path(), small_offsets_topic())?;
    for t in topics {
        log.create_topic(t, 2, TopicConfig::default())?;
    }
    for step in 0..700u64 {
        let g = format!("g{}", rand(4));
        match rand(40) {
            0 => {
                let existed = log.delete_group(&g)?;
                assert_eq!(existed, model.remove(&g).is_some(), "step {step}: delete_group {g}");
            }
            1 => {
                let t = topics[rand(3) as usize];
                log.delete_topic(t)?;
                log.create_topic(t, 2, TopicConfig::default())?;
                for m in model.values_mut() {
                    m.retain(|(topic, _), _| topic != t);
                }
                model.retain(|_, m| !m.is_empty());
            }
            2 | 3 => {
                let unclean = rand(2) == 0;
                drop(log);
                if unclean {
                    make_unclean(dir.path())?;
                }
                log = Log::open(dir.path(), small_offsets_topic())?;
                check(&log, &model, &topics, &format!("step {step}, reopen unclean={unclean}"))?;
            }
            _ => {
                let n = 1 + rand(3) as usize;
                let metas: Vec<String> = (0..n).map(|i| format!("{step}-{i}-{}", &pad[..rand(3_000) as usize])).collect();
                let commits: Vec<OffsetCommit<'_>> =
                    metas.iter().map(|m| commit(topics[rand(3) as usize], rand(2) as u32, step, m)).collect();
                log.commit_offsets(&g, &commits)?;
                for c in &commits {
                    model.entry(g.clone()).or_default().insert((c.topic.to_string(), c.partition), (c.offset, c.metadata.to_string()));
                }
            }
        }
    }
    check(&log, &model, &topics, "end")?;
    let d = log.describe_topic(CONSUMER_OFFSETS_TOPIC)?;
    assert!(d.partitions[0].log_start_offset > 0, "the run snapshotted: {:?}", d.partitions[0]);
    log.close()?;
    let log = Log::open(dir.path(), small_offsets_topic())?;
    check(&log, &model, &topics, "final reopen")
}
