//! Simulated power loss at random points of random workloads (feature `fault-injection`).
//!
//! A seeded workload creates and deletes topics, appends at every acks level (rolling small
//! segments), syncs, applies retention and commits group offsets, on [`SimFs`], a file system that
//! keeps what was written apart from what was made durable. At a random operation the machine
//! dies: that operation and all later ones fail and take no effect. Then power is lost (only
//! durable state survives, plus a random, possibly torn or reordered, subset of the rest), the log
//! is reopened, and these must hold:
//!
//! - the open succeeds;
//! - every topic whose creation was acknowledged (and whose deletion was not) exists, and every
//!   topic whose deletion was acknowledged does not;
//! - every record acknowledged at acks=all, or covered by a later successful sync, is present with
//!   the same offset and bytes (unless retention, configured on that topic, removed it);
//! - every record present is one that was acknowledged at that offset (no torn or foreign record)
//!   and offsets are contiguous from the log start to the high watermark;
//! - each group's committed offset is the last acknowledged commit (or the one in flight when the
//!   machine died), never older.
//!
//! Then the workload continues on the reopened log, and dies again, several times per seed.
//! `RUNNEL_TEST_SCALE` multiplies the number of seeds.

mod common;

use std::collections::BTreeMap;

use common::{Rng, scale};

use runnel::testing::SimFs;
use runnel::{Acks, Error, Log, LogOptions, OffsetCommit, Record, TopicConfig};

const DIR: &str = "/data";
const TOPICS: [&str; 3] = ["a", "b", "c"];
const GROUPS: [&str; 2] = ["g0", "g1"];

/// A topic and partition.
type Key = (String, u32);
/// A group's commit on a partition: the last acknowledged offset, and one in flight.
type Commit = (Option<u64>, Option<u64>);

/// What the workload was told, and so what must survive.
#[derive(Default)]
struct Model {
    /// Topics whose creation was acknowledged, with their partition count and whether retention
    /// may delete their segments.
    topics: BTreeMap<String, (u32, bool)>,
    /// A topic create or delete that failed because the machine died: either outcome is fine.
    in_flight_topic: Option<String>,
    /// An append that failed because the machine died: it may have landed, whole, or not at all.
    in_flight_append: Option<(Key, Vec<Vec<u8>>)>,
    /// Per partition: every record acknowledged, by offset (the value).
    records: BTreeMap<(String, u32), BTreeMap<u64, Vec<u8>>>,
    /// Per partition: offsets below this are durable (acks=all or a later sync).
    durable: BTreeMap<(String, u32), u64>,
    /// Per group and partition: the last acknowledged commit, and one in flight.
    commits: BTreeMap<(String, String, u32), Commit>,
    seq: u64,
}

struct Stats {
    crashes: u64,
    ops: u64,
    records_checked: u64,
}

fn config(retention: bool, written: bool) -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [("segment.bytes", "2048"), ("max.message.bytes", "1024"), ("index.interval.bytes", "256"), ("segment.ms", "-1")] {
        c.set(k, v).expect("config");
    }
    if retention {
        c.set("retention.bytes", "6144").expect("retention");
    }
    if written {
        c.set("high.watermark", "written").expect("hw");
    }
    c
}

fn options() -> LogOptions {
    LogOptions::default().background_maintenance(false).offsets_topic_segment_bytes(64 << 10)
}

fn open(fs: &SimFs) -> Log {
    match Log::open_with_vfs(DIR, options(), fs.vfs()) {
        Ok(log) => log,
        Err(e) => panic!("reopening after power loss failed: {e}"),
    }
}

/// Runs one step of the workload. Returns false once the machine is dead.
fn step(log: &Log, fs: &SimFs, m: &mut Model, rng: &mut Rng) -> bool {
    let topic = TOPICS[rng.below(TOPICS.len() as u64) as usize].to_string();
    match rng.below(20) {
        0 => {
            if m.topics.contains_key(&topic) {
                return true;
            }
            let (partitions, retention, written) = (1 + rng.below(2) as u32, rng.below(3) == 0, rng.below(2) == 0);
            m.in_flight_topic = Some(topic.clone());
            match log.create_topic(&topic, partitions, config(retention, written)) {
                Ok(()) => {
                    m.topics.insert(topic.clone(), (partitions, retention));
                    for p in 0..partitions {
                        m.records.insert((topic.clone(), p), BTreeMap::new());
                        m.durable.insert((topic.clone(), p), 0);
                    }
                    m.in_flight_topic = None;
                }
                Err(e) => return expect_dead(fs, &e),
            }
        }
        1 => {
            if !m.topics.contains_key(&topic) || rng.below(3) != 0 {
                return true;
            }
            m.in_flight_topic = Some(topic.clone());
            match log.delete_topic(&topic) {
                Ok(()) => forget(m, &topic),
                Err(e) => return expect_dead(fs, &e),
            }
        }
        2 => match log.sync_all() {
            Ok(()) => {
                for (key, d) in m.durable.iter_mut() {
                    *d = m.records.get(key).and_then(|r| r.keys().next_back()).map_or(*d, |o| o + 1);
                }
            }
            Err(e) => return expect_dead(fs, &e),
        },
        3 => {
            if let Err(e) = log.run_retention() {
                return expect_dead(fs, &e);
            }
        }
        4 | 5 => {
            let Some(&(partitions, _)) = m.topics.get(&topic) else { return true };
            let p = rng.below(u64::from(partitions)) as u32;
            let group = GROUPS[rng.below(2) as usize].to_string();
            let hw = match log.high_watermark(&topic, p) {
                Ok(hw) => hw,
                Err(e) => return expect_dead(fs, &e),
            };
            let offset = rng.below(hw + 1);
            let key = (group.clone(), topic.clone(), p);
            m.commits.entry(key.clone()).or_default().1 = Some(offset);
            match log.commit_offsets(&group, &[OffsetCommit { topic: &topic, partition: p, offset, metadata: "m" }]) {
                Ok(()) => {
                    m.commits.insert(key, (Some(offset), None));
                }
                Err(e) => return expect_dead(fs, &e),
            }
        }
        _ => {
            let Some(&(partitions, _)) = m.topics.get(&topic) else { return true };
            let p = rng.below(u64::from(partitions)) as u32;
            let n = 1 + rng.below(4) as usize;
            let values: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    m.seq += 1;
                    let mut v = format!("{topic}-{p}-{}-", m.seq).into_bytes();
                    v.resize(v.len() + rng.below(150) as usize, b'x');
                    v
                })
                .collect();
            let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
            let acks = [Acks::Zero, Acks::One, Acks::All][rng.below(3) as usize];
            match log.append(&topic, Some(p), &records, acks) {
                Ok(at) => {
                    let recs = m.records.entry((topic.clone(), p)).or_default();
                    for (i, v) in values.into_iter().enumerate() {
                        recs.insert(at.base_offset + i as u64, v);
                    }
                    if acks == Acks::All {
                        m.durable.insert((topic, p), at.last_offset + 1);
                    }
                }
                Err(e) => {
                    m.in_flight_append = Some(((topic, p), values));
                    return expect_dead(fs, &e);
                }
            }
        }
    }
    true
}

fn expect_dead(fs: &SimFs, e: &Error) -> bool {
    assert!(fs.is_dead(), "an operation failed while the machine was alive: {e}");
    false
}

fn forget(m: &mut Model, topic: &str) {
    m.topics.remove(topic);
    m.records.retain(|(t, _), _| t != topic);
    m.durable.retain(|(t, _), _| t != topic);
    m.commits.retain(|(_, t, _), _| t != topic);
    m.in_flight_topic = None;
}

/// Checks the reopened log against the model, then makes the model match what survived (records
/// that were never durable may be gone).
fn check_and_adopt(log: &Log, m: &mut Model, stats: &mut Stats, when: &str) {
    let listed = log.list_topics();
    let in_flight = m.in_flight_topic.clone();
    // A topic create or delete in flight may have gone either way.
    if let Some(t) = m.in_flight_topic.take() {
        let exists = listed.contains(&t);
        if exists && !m.topics.contains_key(&t) {
            let d = log.describe_topic(&t).expect("describe");
            let n = d.partitions.len() as u32;
            let retention = d.config.retention_bytes.is_some();
            m.topics.insert(t.clone(), (n, retention));
            for p in 0..n {
                assert_eq!(d.partitions[p as usize].log_end_offset, 0, "{when}: a topic created in flight is empty");
                m.records.insert((t.clone(), p), BTreeMap::new());
                m.durable.insert((t.clone(), p), 0);
            }
        } else if !exists && m.topics.contains_key(&t) {
            forget(m, &t);
        }
    }
    for t in TOPICS {
        assert_eq!(listed.iter().any(|l| l == t), m.topics.contains_key(t), "{when}: topic {t} existence");
    }
    for (t, &(partitions, retention)) in &m.topics.clone() {
        assert_eq!(log.partition_count(t).expect("count"), partitions, "{when}: {t} partitions");
        for p in 0..partitions {
            let key = (t.clone(), p);
            let start = log.log_start_offset(t, p).expect("start");
            let hw = log.high_watermark(t, p).expect("hw");
            assert_eq!(hw, log.log_end_offset(t, p).expect("leo"), "{when}: {t}-{p} after recovery HW = LEO");
            let durable = m.durable.get(&key).copied().unwrap_or(0);
            assert!(retention || start == 0, "{when}: {t}-{p} log start {start} moved without retention");
            assert!(hw >= durable, "{when}: {t}-{p} lost durable records: end {hw} < durable {durable}");
            let in_flight = m.in_flight_append.as_ref().filter(|(k, _)| *k == key).map(|(_, v)| v.clone());
            let expected = m.records.entry(key.clone()).or_default();
            let acked_end = expected.keys().next_back().map_or(0, |o| o + 1);
            if let Some(batch) = in_flight {
                // If the failed append landed, it sits right after the acknowledged records.
                for (i, v) in batch.into_iter().enumerate() {
                    expected.entry(acked_end + i as u64).or_insert(v);
                }
            }
            let mut offset = start;
            while offset < hw {
                let f = log.fetch(t, p, offset, 1 << 16).unwrap_or_else(|e| panic!("{when}: fetch {t}-{p}@{offset}: {e}"));
                for r in f.records() {
                    let r = r.unwrap_or_else(|e| panic!("{when}: torn record in {t}-{p}: {e}"));
                    assert_eq!(r.offset, offset, "{when}: {t}-{p} offsets contiguous");
                    let want = expected.get(&r.offset).unwrap_or_else(|| panic!("{when}: {t}-{p}@{} was never acknowledged", r.offset));
                    assert_eq!(r.value, Some(&want[..]), "{when}: {t}-{p}@{} holds other bytes", r.offset);
                    offset += 1;
                    stats.records_checked += 1;
                }
                assert_eq!(f.next_offset(), offset, "{when}: {t}-{p} next offset");
            }
            if let Some((k, batch)) = &m.in_flight_append
                && *k == key
            {
                assert!(hw <= acked_end || hw >= acked_end + batch.len() as u64, "{when}: {t}-{p} holds part of a failed batch");
            }
            // What did not survive was not durable; forget it (the offsets will be reused).
            expected.retain(|&o, _| o < hw);
            expected.retain(|&o, _| o >= start);
            m.durable.insert(key, hw);
        }
    }
    for ((g, t, p), (acked, in_flight_commit)) in &m.commits {
        let got = log.committed(g, t, *p).expect("committed").map(|c| c.offset);
        // A topic delete forgets the topic's offsets before it commits the catalog change.
        let deleting = in_flight.as_deref() == Some(t.as_str()) && got.is_none();
        let ok = got == *acked || (in_flight_commit.is_some() && got == *in_flight_commit) || deleting;
        assert!(ok, "{when}: {g} {t}-{p} committed {got:?}, acknowledged {acked:?}");
    }
    m.in_flight_append = None;
    m.commits = m
        .commits
        .keys()
        .map(|(g, t, p)| ((g.clone(), t.clone(), *p), (log.committed(g, t, *p).expect("committed").map(|c| c.offset), None)))
        .collect();
}

fn run_seed(seed: u64, stats: &mut Stats) {
    let fs = SimFs::new(seed, 16 << 20);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut m = Model::default();
    let mut log = open(&fs);
    for round in 0..4 {
        let budget = fs.ops() + 1 + rng.below(600);
        fs.crash_at(budget);
        let mut steps = 0;
        while steps < 200 && step(&log, &fs, &mut m, &mut rng) {
            steps += 1;
        }
        stats.ops += steps;
        log.abandon();
        fs.power_loss();
        stats.crashes += 1;
        log = open(&fs);
        check_and_adopt(&log, &mut m, stats, &format!("seed {seed} round {round}"));
    }
    log.abandon();
}

#[test]
fn acknowledged_data_survives_power_loss_at_random_points() {
    let scale = scale() as u64;
    let mut stats = Stats { crashes: 0, ops: 0, records_checked: 0 };
    for seed in 1..=30 * scale {
        run_seed(seed, &mut stats);
    }
    eprintln!("power loss: {} crashes, {} workload steps, {} records checked", stats.crashes, stats.ops, stats.records_checked);
    assert!(stats.records_checked > 1000, "the workload checked too little: {}", stats.records_checked);
}
