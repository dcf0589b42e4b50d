//! Consumer groups under churn: members join and leave at random while a producer writes, for
//! each assignment strategy. Checks that every record is delivered, that a record is delivered
//! twice only when the commit after its first delivery was refused (the group had moved the
//! partition on), that no partition is owned by two members in one generation, that committed
//! offsets never go backwards, and that the final assignment is balanced.
//!
//! The schedule is random; the seed is printed, and `RUNNEL_GROUPS_SEED` replays one.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rng, TestResult, clock_seed, env_u64, open, scale};
use runnel::clients::{
    AssignmentStrategy, Consumer, ConsumerConfig, OffsetResetPolicy, Producer, ProducerConfig, ProducerRecord, Subscription, TopicPartition,
};
use runnel::{Error, Log, TopicConfig};

const PARTITIONS: u32 = 6;

#[derive(Default)]
struct Observed {
    /// Value → how many times it was delivered.
    deliveries: HashMap<u64, u32>,
    /// Values whose delivery was followed by a refused commit.
    uncommitted: BTreeSet<u64>,
    /// generation → partition → the members that owned it in that generation.
    owners: BTreeMap<u32, BTreeMap<TopicPartition, BTreeSet<usize>>>,
    commit_failures: usize,
}

fn member(log: &Log, strategy: AssignmentStrategy, id: usize, stop: &AtomicBool, seen: &Mutex<Observed>) -> runnel::Result<()> {
    let mut config = ConsumerConfig::group("workers");
    config.enable_auto_commit = false;
    config.auto_offset_reset = OffsetResetPolicy::Earliest;
    config.partition_assignment_strategy = strategy;
    config.max_poll_records = 50;
    let mut c = Consumer::new(log, config)?;
    c.subscribe(Subscription::Topics(vec!["t".into()]))?;
    while !stop.load(Ordering::Relaxed) {
        let records = c.poll(Duration::from_millis(20))?;
        let mut values = Vec::new();
        for r in records.iter() {
            let r = r?;
            let v: u64 = std::str::from_utf8(r.value_bytes().unwrap_or_default()).ok().and_then(|s| s.parse().ok()).expect("a number");
            values.push(v);
        }
        let generation = c.generation().unwrap_or(0);
        let assignment = c.assignment();
        let committed = c.commit_sync();
        let mut o = seen.lock().expect("lock");
        for tp in assignment {
            o.owners.entry(generation).or_default().entry(tp).or_default().insert(id);
        }
        for v in &values {
            *o.deliveries.entry(*v).or_default() += 1;
        }
        match committed {
            Ok(()) => {}
            Err(Error::CommitFailed(_)) => {
                o.commit_failures += 1;
                o.uncommitted.extend(values);
            }
            Err(e) => return Err(e),
        }
    }
    c.close()
}

fn churn(strategy: AssignmentStrategy) -> TestResult {
    let seed = env_u64("RUNNEL_GROUPS_SEED", clock_seed());
    println!("{strategy:?}: seed {seed} (RUNNEL_GROUPS_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", PARTITIONS, common::config(&[("high.watermark", "written")]))?;
    let total = 3000 * scale() as u64;
    let seen = Mutex::new(Observed::default());
    let done_producing = AtomicBool::new(false);
    let watch_stop = AtomicBool::new(false);
    std::thread::scope(|s| -> TestResult {
        // Committed offsets never go backwards.
        let watcher = s.spawn(|| {
            let mut last = vec![0u64; PARTITIONS as usize];
            while !watch_stop.load(Ordering::Relaxed) {
                for p in 0..PARTITIONS {
                    let c = log.committed("workers", "t", p).expect("committed").map_or(0, |c| c.offset);
                    assert!(c >= last[p as usize], "t-{p}: committed offset went back from {} to {c}", last[p as usize]);
                    last[p as usize] = c;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        s.spawn(|| {
            let config = ProducerConfig::from_pairs([("acks", "1"), ("linger.ms", "1")]).expect("config");
            let producer = Producer::new(&log, config).expect("producer");
            for i in 0..total {
                producer.send(ProducerRecord::with_key("t", i.to_le_bytes().to_vec(), i.to_string().into_bytes()));
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            producer.close(None).expect("close");
            done_producing.store(true, Ordering::SeqCst);
        });
        // Members come and go at random until everything is produced, then three stay.
        let mut live: Vec<(Arc<AtomicBool>, std::thread::ScopedJoinHandle<'_, runnel::Result<()>>)> = Vec::new();
        let mut next_id = 0usize;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let churn_for = Duration::from_millis(1500 * scale() as u64);
        while !done_producing.load(Ordering::SeqCst) || live.len() != 3 || started.elapsed() < churn_for {
            assert!(Instant::now() < deadline, "the churn did not settle");
            let settling = done_producing.load(Ordering::SeqCst) && started.elapsed() >= churn_for;
            let join = live.is_empty() || (settling && live.len() < 3) || (!settling && live.len() < 5 && rng.below(2) == 0);
            if join {
                let stop = Arc::new(AtomicBool::new(false));
                let (st, seen, log, id) = (stop.clone(), &seen, &log, next_id);
                next_id += 1;
                live.push((stop, s.spawn(move || member(log, strategy, id, &st, seen))));
            } else {
                let (stop, h) = live.remove(rng.below(live.len() as u64) as usize);
                stop.store(true, Ordering::Relaxed);
                h.join().expect("member thread")?;
            }
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        }
        // Let the last three drain the topic.
        let drain_deadline = Instant::now() + Duration::from_secs(30);
        while seen.lock().expect("lock").deliveries.len() < total as usize {
            assert!(Instant::now() < drain_deadline, "records were never delivered");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Settled: wait for a stable generation that every live member has adopted.
        std::thread::sleep(Duration::from_millis(200));
        let o = seen.lock().expect("lock");
        let last_gen = *o.owners.keys().next_back().expect("generations");
        let mut sizes: BTreeMap<usize, usize> = BTreeMap::new();
        for (_, owners) in o.owners[&last_gen].iter() {
            for m in owners {
                *sizes.entry(*m).or_default() += 1;
            }
        }
        drop(o);
        for (stop, h) in live {
            stop.store(true, Ordering::Relaxed);
            h.join().expect("member thread")?;
        }
        watch_stop.store(true, Ordering::Relaxed);
        watcher.join().expect("watcher");
        let o = seen.lock().expect("lock");
        for v in 0..total {
            let n = o.deliveries.get(&v).copied().unwrap_or(0);
            assert!(n >= 1, "record {v} was never delivered");
            if n > 1 {
                assert!(o.uncommitted.contains(&v), "record {v} was delivered {n} times though its first delivery was committed");
            }
        }
        for (generation, owners) in &o.owners {
            for (tp, members) in owners {
                assert!(members.len() == 1, "generation {generation}: {tp} owned by members {members:?}");
            }
        }
        let counts: Vec<usize> = sizes.values().copied().collect();
        let (min, max) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
        assert_eq!(counts.iter().sum::<usize>(), PARTITIONS as usize, "generation {last_gen}: every partition owned: {sizes:?}");
        assert!(max - min <= 1, "generation {last_gen} is unbalanced: {sizes:?}");
        println!(
            "{strategy:?}: {} members over the run, {} generations, {} refused commits, {} redeliveries",
            next_id,
            o.owners.len(),
            o.commit_failures,
            o.deliveries.values().map(|n| n - 1).sum::<u32>()
        );
        Ok(())
    })?;
    Ok(())
}

#[test]
fn churn_with_range() -> TestResult {
    churn(AssignmentStrategy::Range)
}

#[test]
fn churn_with_round_robin() -> TestResult {
    churn(AssignmentStrategy::RoundRobin)
}

#[test]
fn churn_with_cooperative_sticky() -> TestResult {
    churn(AssignmentStrategy::CooperativeSticky)
}

/// Under the cooperative strategy a member joining takes partitions from the others without them
/// giving up the ones they keep: the listener hears of the moved partitions only.
#[test]
fn cooperative_rebalance_revokes_only_what_moves() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 4, TopicConfig::default())?;
    let config = || ConsumerConfig { partition_assignment_strategy: AssignmentStrategy::CooperativeSticky, ..ConsumerConfig::group("g") };
    let mut a = Consumer::new(&log, config())?;
    a.subscribe(Subscription::Topics(vec!["t".into()]))?;
    a.poll(Duration::from_millis(50))?;
    assert_eq!(a.assignment().len(), 4);
    let before = a.assignment();
    let mut b = Consumer::new(&log, config())?;
    b.subscribe(Subscription::Topics(vec!["t".into()]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (a.assignment().len() != 2 || b.assignment().len() != 2) && Instant::now() < deadline {
        a.poll(Duration::from_millis(5))?;
        b.poll(Duration::from_millis(5))?;
    }
    assert_eq!((a.assignment().len(), b.assignment().len()), (2, 2));
    assert!(a.assignment().iter().all(|tp| before.contains(tp)), "a kept two of its own");
    Ok(())
}

/// A member that stops polling for max.poll.interval.ms is removed: its partitions go to the
/// others, and its late commit is refused.
#[test]
fn a_member_that_stops_polling_is_removed_and_its_commit_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    log.append("t", Some(0), &[runnel::Record::new(b"x")], runnel::Acks::All)?;
    let config = || ConsumerConfig {
        max_poll_interval: Duration::from_millis(200),
        enable_auto_commit: false,
        auto_offset_reset: OffsetResetPolicy::Earliest,
        ..ConsumerConfig::group("g")
    };
    let mut a = Consumer::new(&log, config())?;
    let mut b = Consumer::new(&log, config())?;
    a.subscribe(Subscription::Topics(vec!["t".into()]))?;
    b.subscribe(Subscription::Topics(vec!["t".into()]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (a.assignment().len() != 1 || b.assignment().len() != 1) && Instant::now() < deadline {
        a.poll(Duration::from_millis(5))?;
        b.poll(Duration::from_millis(5))?;
    }
    assert_eq!((a.assignment().len(), b.assignment().len()), (1, 1));
    // a stops polling; b keeps going and takes over both partitions.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.assignment().len() != 2 && Instant::now() < deadline {
        b.poll(Duration::from_millis(20))?;
    }
    assert_eq!(b.assignment().len(), 2);
    let err = a.commit_sync().expect_err("a was removed");
    assert!(matches!(err, Error::CommitFailed(_)), "{err}");
    // Its next poll rejoins; the group rebalances to one partition each again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (a.assignment().len() != 1 || b.assignment().len() != 1) && Instant::now() < deadline {
        a.poll(Duration::from_millis(5))?;
        b.poll(Duration::from_millis(5))?;
    }
    assert_eq!((a.assignment().len(), b.assignment().len()), (1, 1));
    Ok(())
}

/// New partitions and, for a pattern, new topics trigger a rebalance that assigns them.
#[test]
fn new_partitions_and_matching_topics_are_assigned() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("orders-eu", 1, TopicConfig::default())?;
    log.create_topic("audit", 1, TopicConfig::default())?;
    let mut c = Consumer::new(&log, ConsumerConfig::group("g"))?;
    c.subscribe(Subscription::Pattern("orders-.*".into()))?;
    c.poll(Duration::from_millis(50))?;
    assert_eq!(c.assignment(), [TopicPartition::new("orders-eu", 0)]);
    log.add_partitions("orders-eu", 2)?;
    log.create_topic("orders-us", 1, TopicConfig::default())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.assignment().len() != 3 && Instant::now() < deadline {
        c.poll(Duration::from_millis(20))?;
    }
    assert_eq!(
        c.assignment(),
        [TopicPartition::new("orders-eu", 0), TopicPartition::new("orders-eu", 1), TopicPartition::new("orders-us", 0)]
    );
    Ok(())
}

/// Members of one group must agree on the strategy, as Kafka's INCONSISTENT_GROUP_PROTOCOL says.
#[test]
fn a_member_with_another_strategy_cannot_join() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let mut a = Consumer::new(&log, ConsumerConfig::group("g"))?;
    a.subscribe(Subscription::Topics(vec!["t".into()]))?;
    let mut b = Consumer::new(
        &log,
        ConsumerConfig { partition_assignment_strategy: AssignmentStrategy::RoundRobin, ..ConsumerConfig::group("g") },
    )?;
    assert!(matches!(b.subscribe(Subscription::Topics(vec!["t".into()])), Err(Error::InvalidArgument(_))));
    Ok(())
}

/// A round in which one member stops polling still completes for the others once that member
/// is dropped (a review found it could wait forever when the drop happened in a heartbeat that
/// brought no fresh topic metadata).
#[test]
fn a_round_completes_when_a_member_expires_during_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 3, TopicConfig::default())?;
    let config = || ConsumerConfig { max_poll_interval: Duration::from_millis(300), ..ConsumerConfig::group("g") };
    let mut a = Consumer::new(&log, config())?;
    let mut b = Consumer::new(&log, config())?;
    a.subscribe(Subscription::Topics(vec!["t".into()]))?;
    b.subscribe(Subscription::Topics(vec!["t".into()]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (a.assignment().is_empty() || b.assignment().is_empty()) && Instant::now() < deadline {
        a.poll(Duration::from_millis(5))?;
        b.poll(Duration::from_millis(5))?;
    }
    // c joins; b never polls again.
    let mut c = Consumer::new(&log, config())?;
    c.subscribe(Subscription::Topics(vec!["t".into()]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.assignment().len() + c.assignment().len() != 3 && Instant::now() < deadline {
        a.poll(Duration::from_millis(3))?;
        c.poll(Duration::from_millis(3))?;
    }
    assert_eq!(a.assignment().len() + c.assignment().len(), 3, "a and c share all three partitions");
    assert!(!a.assignment().is_empty() && !c.assignment().is_empty());
    Ok(())
}
