//! `Log::open_read_only`: a handle that takes no lock, writes nothing, refuses every mutating call
//! with `ReadOnly`, and sees exactly what the writer published, following it through appends,
//! rolls, retention, topic changes and a writer's restart. The writer and reader here share a
//! process (the protocol is the same through the shared files); tests/readers.rs runs them in
//! separate processes.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestResult, config, open, read_all, values};
use runnel::{Acks, Error, IsolationLevel, Log, LogOptions, OffsetCommit, Record, TopicConfig, TransactionOptions};

fn ro(dir: &Path) -> runnel::Result<Log> {
    Log::open_read_only(dir, LogOptions::default())
}

fn append_values(log: &Log, topic: &str, p: u32, from: u64, n: u64, acks: Acks) -> runnel::Result<()> {
    for i in from..from + n {
        let v = format!("v{i}");
        log.append(topic, Some(p), &[Record::new(v.as_bytes())], acks)?;
    }
    Ok(())
}

/// Every file under `dir` with its length and bytes, to prove a reader wrote nothing.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            let path = e.path();
            if e.file_type().expect("file type").is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("prefix").display().to_string();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn read_only_handle_refuses_every_mutating_call_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let w = open(dir.path())?;
        w.create_topic("t", 2, TopicConfig::default())?;
        append_values(&w, "t", 0, 0, 5, Acks::All)?;
        w.commit_offsets("g", &[OffsetCommit { topic: "t", partition: 0, offset: 3, metadata: "m" }])?;
        w.close()?;
    }
    let before = tree(dir.path());
    let r = ro(dir.path())?;
    assert!(r.is_read_only());
    assert!(!r.writer_active(), "the writer closed cleanly");
    let ro_err = |res: runnel::Result<()>, what: &str| match res {
        Err(Error::ReadOnly(_)) => {}
        other => panic!("{what}: expected ReadOnly, got {other:?}"),
    };
    ro_err(r.create_topic("u", 1, TopicConfig::default()), "create_topic");
    ro_err(r.delete_topic("t"), "delete_topic");
    ro_err(r.add_partitions("t", 3), "add_partitions");
    ro_err(r.append("t", Some(0), &[Record::new(b"x")], Acks::One).map(|_| ()), "append");
    ro_err(r.allocate_producer_id().map(|_| ()), "allocate_producer_id");
    ro_err(r.idempotent_producer().map(|_| ()), "idempotent_producer");
    ro_err(r.transactional_producer("tx", TransactionOptions::default()).map(|_| ()), "transactional_producer");
    ro_err(r.abort_transaction("tx").map(|_| ()), "abort_transaction");
    ro_err(r.sync_to("t", 0, 1), "sync_to");
    ro_err(r.sync_all(), "sync_all");
    ro_err(r.run_retention().map(|_| ()), "run_retention");
    ro_err(r.commit_offsets("g", &[OffsetCommit { topic: "t", partition: 0, offset: 1, metadata: "" }]), "commit_offsets");
    ro_err(r.delete_group("g").map(|_| ()), "delete_group");
    ro_err(r.partition_for("t", Some(b"k")).map(|_| ()), "partition_for");
    let h = r.partition_handle("t", 0)?;
    ro_err(h.append(&[Record::new(b"x")], Acks::One).map(|_| ()), "handle append");
    ro_err(h.sync_to(1), "handle sync_to");

    // What it can do: read everything the writer left.
    let topics = r.list_topics();
    assert!(topics.contains(&"t".to_string()) && topics.contains(&"__consumer_offsets".to_string()), "{topics:?}");
    assert_eq!(values(&read_all(&r, "t", 0)?), (0..5).map(|i| format!("v{i}")).collect::<Vec<_>>());
    assert_eq!(h.high_watermark(), 5);
    assert_eq!(r.committed("g", "t", 0)?.map(|c| (c.offset, c.metadata)), Some((3, "m".to_string())));
    assert_eq!(r.list_groups(), vec!["g"]);
    assert_eq!(r.group_lag("g")?.first().map(|l| l.lag), Some(2));
    assert_eq!(r.describe_topic("t")?.partitions[0].high_watermark, 5);
    assert!(r.offset_for_timestamp("t", 0, 0)?.is_some());
    r.close()?;
    assert!(tree(dir.path()) == before, "a read-only handle changed the directory");
    Ok(())
}

#[test]
fn read_only_open_of_a_directory_no_writer_prepared_fails_clearly() -> TestResult {
    let dir = tempfile::tempdir()?;
    match ro(&dir.path().join("missing")) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected an Io error for a missing directory, got {other:?}"),
    }
    match ro(dir.path()) {
        Err(Error::Corrupt { path, reason, .. }) => {
            assert!(path.ends_with(".runnel_state"), "{path:?}");
            assert!(reason.contains("open it for writing once"), "{reason}");
        }
        other => panic!("expected Corrupt naming .runnel_state, got {other:?}"),
    }
    assert!(std::fs::read_dir(dir.path())?.next().is_none(), "the failed open wrote something");
    Ok(())
}

#[test]
fn reader_sees_only_the_high_watermark_and_follows_appends_rolls_and_retention() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = open(dir.path())?;
    let cfg = config(&[("segment.bytes", "1024"), ("index.interval.bytes", "64"), ("retention.bytes", "4096")]);
    w.create_topic("t", 1, cfg)?;
    let r = ro(dir.path())?;
    assert!(r.writer_active());
    assert_eq!(r.high_watermark("t", 0)?, 0);
    // acks=1 with the durable high watermark: invisible until synced, to the reader as in-process.
    append_values(&w, "t", 0, 0, 10, Acks::One)?;
    assert_eq!(r.high_watermark("t", 0)?, 0);
    assert!(r.fetch("t", 0, 0, 1 << 20)?.records().next().is_none());
    w.sync_all()?;
    assert_eq!(r.high_watermark("t", 0)?, 10);
    let mut seen = Vec::new();
    let mut next = 0;
    let mut total = 10;
    for round in 0..40 {
        append_values(&w, "t", 0, total, 25, Acks::All)?;
        total += 25;
        if round % 5 == 4 {
            w.run_retention()?;
        }
        loop {
            match r.fetch("t", 0, next, 300) {
                Ok(f) => {
                    for rec in f.records() {
                        let rec = rec?;
                        seen.push((rec.offset, String::from_utf8_lossy(rec.value.unwrap_or_default()).into_owned()));
                    }
                    if f.next_offset() == next {
                        break;
                    }
                    next = f.next_offset();
                }
                Err(e) => panic!("fetch at {next}: {e}"),
            }
        }
        assert_eq!(next, total, "round {round}: the reader stopped short of the high watermark");
    }
    let expected: Vec<(u64, String)> = (0..total).map(|i| (i, format!("v{i}"))).collect();
    assert_eq!(seen, expected);
    let start = r.log_start_offset("t", 0)?;
    assert!(start > 0, "retention deleted nothing");
    assert_eq!(start, w.log_start_offset("t", 0)?);
    match r.fetch("t", 0, 0, 100) {
        Err(Error::OffsetOutOfRange { log_start, .. }) => assert_eq!(log_start, start),
        other => panic!("expected OffsetOutOfRange below the log start, got {other:?}"),
    }
    assert_eq!(r.segments("t", 0)?.len(), w.segments("t", 0)?.len());
    assert_eq!(r.segments("t", 0)?.first().map(|s| s.base_offset), Some(start));
    Ok(())
}

#[test]
fn a_fetch_held_across_retention_keeps_its_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = open(dir.path())?;
    w.create_topic("t", 1, config(&[("segment.bytes", "1024"), ("retention.bytes", "1")]))?;
    append_values(&w, "t", 0, 0, 200, Acks::All)?;
    let r = ro(dir.path())?;
    let held = r.fetch("t", 0, 0, 200)?;
    w.run_retention()?;
    assert!(r.log_start_offset("t", 0)? > 0);
    let vals: Vec<_> = held.records().map(|x| x.map(|x| x.value.map(<[u8]>::to_vec))).collect::<runnel::Result<_>>()?;
    assert!(!vals.is_empty());
    for (i, v) in vals.iter().enumerate() {
        assert_eq!(v.as_deref(), Some(format!("v{i}").as_bytes()));
    }
    Ok(())
}

#[test]
fn reader_follows_topic_create_delete_and_added_partitions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = open(dir.path())?;
    w.create_topic("a", 1, TopicConfig::default())?;
    let r = ro(dir.path())?;
    assert!(matches!(r.fetch("b", 0, 0, 100), Err(Error::UnknownTopicOrPartition { .. })));
    w.create_topic("b", 1, TopicConfig::default())?;
    append_values(&w, "b", 0, 0, 3, Acks::All)?;
    assert_eq!(values(&read_all(&r, "b", 0)?), vec!["v0", "v1", "v2"]);
    w.add_partitions("b", 3)?;
    append_values(&w, "b", 2, 0, 1, Acks::All)?;
    assert_eq!(r.partition_count("b")?, 3);
    assert_eq!(values(&read_all(&r, "b", 2)?), vec!["v0"]);
    let held = r.fetch("b", 0, 0, 1 << 20)?;
    w.delete_topic("b")?;
    assert!(matches!(r.fetch("b", 0, 0, 100), Err(Error::UnknownTopicOrPartition { .. })));
    assert!(!r.list_topics().contains(&"b".to_string()));
    // A fetch taken before the delete still reads its records.
    assert_eq!(held.records().count(), 3);
    w.create_topic("b", 1, TopicConfig::default())?;
    append_values(&w, "b", 0, 0, 1, Acks::All)?;
    assert_eq!(values(&read_all(&r, "b", 0)?), vec!["v0"]);
    Ok(())
}

#[test]
fn reader_keeps_working_across_a_writer_restart_and_crash() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = open(dir.path())?;
    w.create_topic("t", 1, config(&[("segment.bytes", "2048")]))?;
    append_values(&w, "t", 0, 0, 50, Acks::All)?;
    let r = ro(dir.path())?;
    assert_eq!(read_all(&r, "t", 0)?.len(), 50);
    w.close()?;
    assert!(!r.writer_active());
    assert_eq!(read_all(&r, "t", 0)?.len(), 50, "a closed writer's records stay readable");
    let w = open(dir.path())?;
    assert!(r.writer_active());
    append_values(&w, "t", 0, 50, 50, Acks::All)?;
    assert_eq!(values(&read_all(&r, "t", 0)?), (0..100).map(|i| format!("v{i}")).collect::<Vec<_>>());
    // Dropped without a clean close; the directory is then recovered by the next writer.
    drop(w);
    let w = open(dir.path())?;
    append_values(&w, "t", 0, 100, 10, Acks::All)?;
    assert_eq!(values(&read_all(&r, "t", 0)?), (0..110).map(|i| format!("v{i}")).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn read_committed_on_a_reader_skips_aborted_transactions_and_stops_at_the_lso() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = Log::open(dir.path(), LogOptions::default())?;
    w.create_topic("t", 1, config(&[("segment.bytes", "1024")]))?;
    let r = ro(dir.path())?;
    let p = w.transactional_producer("tx", TransactionOptions::default())?;
    let mut committed = Vec::new();
    for i in 0..30u32 {
        p.begin()?;
        let v = format!("t{i}");
        p.send("t", Some(0), &[Record::new(v.as_bytes()), Record::new(v.as_bytes())])?;
        if i % 3 == 0 {
            p.abort()?;
        } else {
            p.commit()?;
            committed.push(v.clone());
            committed.push(v);
        }
        append_values(&w, "t", 0, u64::from(i), 1, Acks::All)?;
        committed.push(format!("v{i}"));
    }
    // An open transaction holds the last stable offset back.
    p.begin()?;
    p.send("t", Some(0), &[Record::new(b"open")])?;
    w.sync_all()?;
    let lso = r.last_stable_offset("t", 0)?;
    assert_eq!(lso, w.last_stable_offset("t", 0)?);
    assert!(lso < r.high_watermark("t", 0)?);
    let mut got = Vec::new();
    let mut next = 0;
    loop {
        let f = r.fetch_with("t", 0, next, 512, IsolationLevel::ReadCommitted)?;
        for rec in f.records() {
            got.push(String::from_utf8_lossy(rec?.value.unwrap_or_default()).into_owned());
        }
        if f.next_offset() == next {
            break;
        }
        next = f.next_offset();
    }
    assert_eq!(next, lso);
    assert_eq!(got, committed);
    p.abort()?;
    w.sync_all()?;
    assert_eq!(r.last_stable_offset("t", 0)?, r.high_watermark("t", 0)?);
    Ok(())
}

#[test]
fn fetch_wait_returns_when_the_writer_publishes_and_times_out_otherwise() -> TestResult {
    let dir = tempfile::tempdir()?;
    let w = Log::open(dir.path(), LogOptions::default())?;
    w.create_topic("t", 1, TopicConfig::default())?;
    let r = ro(dir.path())?;
    let t0 = Instant::now();
    let f = r.fetch_wait("t", 0, 0, 1 << 20, IsolationLevel::ReadUncommitted, Duration::from_millis(50))?;
    assert!(f.records().next().is_none());
    assert!(t0.elapsed() >= Duration::from_millis(50), "returned early with nothing");
    std::thread::scope(|s| -> TestResult {
        let waiter = s.spawn(|| r.fetch_wait("t", 0, 0, 1 << 20, IsolationLevel::ReadUncommitted, Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(20));
        w.append("t", Some(0), &[Record::new(b"wake")], Acks::All)?;
        let f = waiter.join().map_err(|_| "waiter panicked")??;
        assert_eq!(f.records().next().transpose()?.and_then(|x| x.value), Some(&b"wake"[..]));
        Ok(())
    })?;
    // The writer's own handle waits the same way.
    let f = w.fetch_wait("t", 0, 1, 1 << 20, IsolationLevel::ReadUncommitted, Duration::from_millis(10))?;
    assert!(f.records().next().is_none());
    Ok(())
}
