//! I/O error injection at every point (feature `fault-injection`).
//!
//! A fixed workload (topic create, appends that roll segments at every acks level, commits, a
//! second topic created and deleted, partitions added, retention, syncs) runs on [`SimFs`] once to
//! count, per kind of operation (write, sync, allocate, truncate, rename, open, mmap, unlink,
//! mkdir, read), how many the workload performs. Then it runs again for each of those operations
//! in turn with that one operation failing (EIO, ENOSPC, and EINTR for writes and syncs), and then
//! with every operation of the kind failing from that point on. Each time:
//!
//! - nothing panics: every call returns `Ok` or an error whose message says what failed;
//! - the process then "crashes" (the log is abandoned, the page cache survives) and the directory
//!   reopens on a healthy file system;
//! - every append that was acknowledged is there with its offsets and bytes; anything after them
//!   is whole batches of appends that reported an error (a failed append may or may not have
//!   landed, but never in part); offsets are contiguous;
//! - topics and committed offsets are what was acknowledged (or what was in flight);
//! - the reopened log accepts appends again.

mod common;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use runnel::testing::{Fault, Op, SimFs};
use runnel::{Acks, Log, LogOptions, OffsetCommit, Record, TopicConfig};

const DIR: &str = "/data";

fn options() -> LogOptions {
    LogOptions::default().background_maintenance(false).offsets_topic_segment_bytes(64 << 10)
}

fn config() -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [("segment.bytes", "2048"), ("max.message.bytes", "1024"), ("index.interval.bytes", "256"), ("retention.bytes", "8192")] {
        c.set(k, v).expect("config");
    }
    c
}

/// What the workload was told.
#[derive(Default, Debug)]
struct Outcome {
    topics: BTreeMap<String, Option<u32>>,
    /// Acknowledged records by partition and offset.
    acked: BTreeMap<(String, u32), BTreeMap<u64, Vec<u8>>>,
    /// Batches whose append returned an error, by partition.
    failed: BTreeMap<(String, u32), Vec<Vec<Vec<u8>>>>,
    /// The last acknowledged commit per key, and the values of failed commits.
    commits: BTreeMap<(String, u32), (Option<u64>, Vec<u64>)>,
    errors: u64,
}

fn note<T>(o: &mut Outcome, r: runnel::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            o.errors += 1;
            None
        }
    }
}

fn append(log: &Log, o: &mut Outcome, topic: &str, p: u32, n: usize, acks: Acks, seq: &mut u64) {
    let values: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            *seq += 1;
            let mut v = format!("{topic}-{p}-{seq}-").into_bytes();
            v.resize(v.len() + (*seq as usize * 37) % 180, b'v');
            v
        })
        .collect();
    let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
    let key = (topic.to_string(), p);
    match note(o, log.append(topic, Some(p), &records, acks)) {
        Some(at) => {
            let acked = o.acked.entry(key).or_default();
            for (i, v) in values.into_iter().enumerate() {
                acked.insert(at.base_offset + i as u64, v);
            }
        }
        None => o.failed.entry(key).or_default().push(values),
    }
}

fn workload(log: &Log, o: &mut Outcome) {
    let mut seq = 0;
    if note(o, log.create_topic("a", 2, config())).is_some() {
        o.topics.insert("a".into(), Some(2));
    } else {
        o.topics.insert("a".into(), None);
    }
    for i in 0..30u32 {
        let acks = [Acks::All, Acks::One, Acks::Zero][(i % 3) as usize];
        append(log, o, "a", i % 2, 1 + (i as usize % 4), acks, &mut seq);
        if i % 7 == 3 {
            let offset = log.high_watermark("a", 0).unwrap_or(0);
            let committed = note(o, log.commit_offsets("g", &[OffsetCommit { topic: "a", partition: 0, offset, metadata: "" }]));
            let entry = o.commits.entry(("a".into(), 0)).or_default();
            match committed {
                Some(()) => *entry = (Some(offset), Vec::new()),
                None => entry.1.push(offset),
            }
        }
        if i == 10 {
            note(o, log.sync_all());
        }
        if i == 15 {
            let created = note(o, log.create_topic("b", 1, config())).is_some();
            o.topics.insert("b".into(), None);
            if created {
                append(log, o, "b", 0, 2, Acks::All, &mut seq);
                if note(o, log.delete_topic("b")).is_some() {
                    o.topics.insert("b".into(), Some(0));
                    o.acked.retain(|(t, _), _| t != "b");
                    o.failed.retain(|(t, _), _| t != "b");
                }
            }
        }
        if i == 20 && note(o, log.add_partitions("a", 3)).is_some() {
            o.topics.insert("a".into(), Some(3));
        }
        if i == 25 {
            note(o, log.run_retention());
        }
    }
}

fn check(log: &Log, o: &Outcome, when: &str) {
    for (t, want) in &o.topics {
        let exists = log.list_topics().contains(t);
        match want {
            Some(0) => assert!(!exists, "{when}: deleted topic {t} is back"),
            Some(n) => assert!(exists && log.partition_count(t).ok() >= Some(*n), "{when}: topic {t} lost"),
            None => {}
        }
    }
    let Ok(parts) = log.partition_count("a") else {
        assert!(matches!(o.topics.get("a"), None | Some(None)), "{when}: topic a missing");
        return;
    };
    for p in 0..parts {
        let key = ("a".to_string(), p);
        let acked = o.acked.get(&key).cloned().unwrap_or_default();
        let failed: Vec<Vec<Vec<u8>>> = o.failed.get(&key).cloned().unwrap_or_default();
        let start = log.log_start_offset("a", p).expect("start");
        let hw = log.high_watermark("a", p).expect("hw");
        let last_acked = acked.keys().next_back().map_or(0, |o| o + 1);
        assert!(hw >= last_acked, "{when}: a-{p} ends at {hw}, before acknowledged offset {last_acked}");
        let mut got = Vec::new();
        let mut offset = start;
        while offset < hw {
            let f = log.fetch("a", p, offset, 1 << 16).unwrap_or_else(|e| panic!("{when}: fetch a-{p}@{offset}: {e}"));
            for r in f.records() {
                let r = r.unwrap_or_else(|e| panic!("{when}: torn record in a-{p}: {e}"));
                assert_eq!(r.offset, offset, "{when}: contiguous offsets");
                got.push((r.offset, r.value.map(<[u8]>::to_vec).unwrap_or_default()));
                offset += 1;
            }
        }
        for (off, v) in &got {
            if let Some(want) = acked.get(off) {
                assert_eq!(v, want, "{when}: a-{p}@{off} bytes");
            }
        }
        for (off, want) in acked.range(start..) {
            assert!(got.iter().any(|(o2, v)| o2 == off && v == want), "{when}: acknowledged a-{p}@{off} missing");
        }
        // Records past the acknowledged ones come from failed appends, whole batches in order.
        let mut extra: &[(u64, Vec<u8>)] = &got[got.iter().position(|(o2, _)| *o2 >= last_acked).unwrap_or(got.len())..];
        while let Some((_, first)) = extra.first() {
            let batch =
                failed.iter().find(|b| b.first() == Some(first)).unwrap_or_else(|| panic!("{when}: a-{p} holds a record no append wrote"));
            assert!(extra.len() >= batch.len(), "{when}: a-{p} holds part of a failed batch");
            for (i, v) in batch.iter().enumerate() {
                assert_eq!(&extra[i].1, v, "{when}: a-{p} failed batch landed in part");
            }
            extra = &extra[batch.len()..];
        }
    }
    for ((t, p), (acked, failed)) in &o.commits {
        let got = log.committed("g", t, *p).expect("committed").map(|c| c.offset);
        assert!(got == *acked || got.is_some_and(|g| failed.contains(&g)), "{when}: committed {got:?}, acknowledged {acked:?}");
    }
}

fn run(fault: Option<Fault>) -> (u64, u64) {
    let fs = SimFs::new(7, 16 << 20);
    let mut o = Outcome::default();
    let opened = {
        if let Some(f) = &fault {
            fs.inject(f.clone());
        }
        Log::open_with_vfs(DIR, options(), fs.vfs())
    };
    let matched;
    match opened {
        Ok(log) => {
            let r = catch_unwind(AssertUnwindSafe(|| workload(&log, &mut o)));
            assert!(r.is_ok(), "the workload panicked under {fault:?}");
            matched = fs.matched();
            log.abandon();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            matched = fs.matched();
        }
    }
    let injected = fs.faults_injected();
    fs.clear_faults();
    let when = format!("after {fault:?}");
    let log = Log::open_with_vfs(DIR, options(), fs.vfs()).unwrap_or_else(|e| panic!("{when}: reopen failed: {e}"));
    check(&log, &o, &when);
    if log.list_topics().iter().any(|t| t == "a") {
        log.append("a", Some(0), &[Record::new(b"after")], Acks::All).unwrap_or_else(|e| panic!("{when}: append after reopen: {e}"));
    }
    log.close().unwrap_or_else(|e| panic!("{when}: close: {e}"));
    (matched, injected)
}

#[test]
fn every_failing_operation_leaves_a_consistent_recoverable_log() {
    let scale = common::scale() as u64;
    let kinds = [Op::Write, Op::Sync, Op::Allocate, Op::SetLen, Op::Rename, Op::Open, Op::Mmap, Op::Remove, Op::Mkdir, Op::Read];
    let (mut runs, mut injected) = (0u64, 0u64);
    for op in kinds {
        // Count the operations of this kind the workload performs.
        let (count, _) = run(Some(Fault { ops: vec![op], nth: u64::MAX, errno: 5, persistent: false }));
        assert!(count > 0 || matches!(op, Op::Remove), "the workload performs no {op:?}");
        let step = (count / (15 * scale)).max(1);
        let errnos: &[i32] = if matches!(op, Op::Write | Op::Sync) { &[5, 28, 4] } else { &[5, 28] };
        for nth in (0..count).step_by(step as usize) {
            for &errno in errnos {
                for persistent in [false, true] {
                    let (_, n) = run(Some(Fault { ops: vec![op], nth, errno, persistent }));
                    runs += 1;
                    injected += n;
                }
            }
        }
    }
    eprintln!("fault injection: {runs} runs, {injected} faults injected");
    assert!(injected >= runs, "every run injected at least one fault");
}
