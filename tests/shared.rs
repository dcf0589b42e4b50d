//! The shared read-write mode (`Log::open_shared`): several processes append to the same
//! partitions at once, die at random moments (inside the append lock too), and change topics.
//!
//! The test binary re-executes itself as the appending processes (the sled pattern): with
//! `RUNNEL_SHARED_CHILD=<dir>` set, `child_appender` opens `<dir>` in shared mode and appends
//! records tagged `<process>:<sequence>` round-robin over the partitions, printing
//! `ACK <partition> <base offset> <first sequence> <count>` (and flushing) after each append
//! returns. The parent collects the acknowledgements and checks the log afterwards: every
//! acknowledged record is present exactly once at the offset it was acknowledged at, offsets are
//! contiguous, each process's records keep its order within a partition, and no torn batch is
//! visible.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{KillOnDrop, Rng, clock_seed, env_u64, scale};
use runnel::clients::{Consumer, ConsumerConfig, Subscription};
use runnel::{Acks, Error, Log, LogOptions, Record, TopicConfig};

const CHILD_ENV: &str = "RUNNEL_SHARED_CHILD";
const ID_ENV: &str = "RUNNEL_SHARED_ID";
const COUNT_ENV: &str = "RUNNEL_SHARED_COUNT";
const ACKS_ENV: &str = "RUNNEL_SHARED_ACKS_ALL";
const KILL_ENV: &str = "RUNNEL_SHARED_KILL_INSIDE";
const PAUSE_ENV: &str = "RUNNEL_SHARED_PAUSE_US";
const WORKER_ENV: &str = "RUNNEL_SHARED_WORKER";
const GROUP: &str = "workers";
const TOPIC: &str = "shared";
const PARTITIONS: u32 = 3;

fn topic_config() -> TopicConfig {
    // Small segments, so that processes roll them under each other.
    common::config(&[("segment.bytes", "16384"), ("index.interval.bytes", "512")])
}

fn shared_opts() -> LogOptions {
    LogOptions::default()
}

/// The child process: appends `COUNT` records (forever with 0) in batches of 1 to 5.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let id = env_u64(ID_ENV, 0);
    let count = env_u64(COUNT_ENV, 0);
    let acks = if env_u64(ACKS_ENV, 1) == 1 { Acks::All } else { Acks::One };
    let log = Log::open_shared(&dir, shared_opts()).expect("open shared");
    match log.create_topic(TOPIC, PARTITIONS, topic_config()) {
        Ok(()) | Err(Error::TopicExists { .. }) => {}
        Err(e) => panic!("create topic: {e}"),
    }
    let kill_at = env_u64(KILL_ENV, 0);
    if kill_at > 0 {
        runnel::testing::kill_inside_append(kill_at);
    }
    let mut rng = Rng(clock_seed() ^ id);
    let out = std::io::stdout();
    let mut seq = 0u64;
    let mut p = (id % u64::from(PARTITIONS)) as u32;
    while count == 0 || seq < count {
        let n = 1 + rng.below(5);
        let values: Vec<Vec<u8>> = (seq..seq + n).map(|s| format!("{id}:{s}:{}", "x".repeat((s % 40) as usize)).into_bytes()).collect();
        let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
        let at = log.append(TOPIC, Some(p), &records, acks).expect("append");
        let mut o = out.lock();
        writeln!(o, "ACK {p} {} {seq} {n}", at.base_offset).expect("stdout");
        o.flush().expect("flush");
        drop(o);
        seq += n;
        p = (p + 1) % PARTITIONS;
        let pause = env_u64(PAUSE_ENV, 0);
        if pause > 0 {
            std::thread::sleep(Duration::from_micros(pause));
        }
    }
    log.close().expect("close");
    println!("DONE");
}

/// The worker process of the pool: a consumer of group `workers` that prints
/// `GOT <partition> <offset>` for each record, then commits what it polled and prints `COMMITTED`
/// (or `REFUSED` when a rebalance took a partition first), until its stdin closes.
#[test]
fn child_worker() {
    let Ok(dir) = std::env::var(WORKER_ENV) else { return };
    let log = Log::open_shared(&dir, shared_opts()).expect("open shared");
    let config = ConsumerConfig::from_pairs([("group.id", GROUP), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")])
        .expect("config");
    let mut consumer = Consumer::new(&log, config).expect("consumer");
    consumer.subscribe(Subscription::Topics(vec![TOPIC.into()])).expect("subscribe");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_line(&mut String::new());
        s.store(true, std::sync::atomic::Ordering::Release);
    });
    let out = std::io::stdout();
    while !stop.load(std::sync::atomic::Ordering::Acquire) {
        let records = consumer.poll(Duration::from_millis(20)).expect("poll");
        let mut o = out.lock();
        for r in records.iter() {
            let r = r.expect("record");
            writeln!(o, "GOT {} {}", r.partition(), r.offset()).expect("stdout");
        }
        o.flush().expect("flush");
        drop(o);
        drop(records);
        let verdict = match consumer.commit_sync() {
            Ok(()) => "COMMITTED",
            Err(Error::CommitFailed(_)) => "REFUSED",
            Err(e) => panic!("commit: {e}"),
        };
        let mut o = out.lock();
        writeln!(o, "{verdict}").expect("stdout");
        o.flush().expect("flush");
    }
    consumer.close().expect("close consumer");
    log.close().expect("close");
    println!("BYE");
}

/// One acknowledged append, as a child reported it.
#[derive(Clone, Copy, Debug)]
struct Ack {
    process: u64,
    partition: u32,
    base: u64,
    first_seq: u64,
    count: u64,
}

/// A running child and the thread reading its acknowledgements.
struct Child {
    id: u64,
    proc: KillOnDrop,
}

fn spawn(dir: &Path, id: u64, count: u64, acks_all: bool, kill_inside: u64, tx: &mpsc::Sender<(Ack, Instant)>) -> Child {
    spawn_paced(dir, id, count, acks_all, kill_inside, 0, tx)
}

fn spawn_paced(
    dir: &Path,
    id: u64,
    count: u64,
    acks_all: bool,
    kill_inside: u64,
    pause_us: u64,
    tx: &mpsc::Sender<(Ack, Instant)>,
) -> Child {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["child_appender", "--exact", "--nocapture", "--test-threads=1"])
        .env(PAUSE_ENV, pause_us.to_string())
        .env(CHILD_ENV, dir)
        .env(ID_ENV, id.to_string())
        .env(COUNT_ENV, count.to_string())
        .env(ACKS_ENV, if acks_all { "1" } else { "0" })
        .env(KILL_ENV, kill_inside.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest's "test child_appender ... " may precede the first line.
            let Some(at) = line.find("ACK ") else { continue };
            let f: Vec<&str> = line[at..].split_whitespace().collect();
            if f.first() != Some(&"ACK") || f.len() != 5 {
                continue;
            }
            let n = |i: usize| f[i].parse::<u64>().expect("number");
            let ack = Ack { process: id, partition: n(1) as u32, base: n(2), first_seq: n(3), count: n(4) };
            if tx.send((ack, Instant::now())).is_err() {
                break;
            }
        }
    });
    Child { id, proc: KillOnDrop(child) }
}

/// Reads every partition of the topic and checks the log against the acknowledgements: each
/// acknowledged record at its offset, each record present once, offsets contiguous, each
/// process's sequence increasing within a partition. Returns the records per partition.
fn check(log: &Log, acks: &[Ack]) -> usize {
    let mut total = 0;
    let mut at: HashMap<(u32, u64), (u64, u64)> = HashMap::new();
    for p in 0..PARTITIONS {
        let recs = common::read_all(log, TOPIC, p).expect("read partition");
        let mut seen = HashSet::new();
        let mut last_seq: HashMap<u64, u64> = HashMap::new();
        let start = log.log_start_offset(TOPIC, p).expect("log start");
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset, start + i as u64, "partition {p}: offsets are contiguous");
            let v = String::from_utf8(r.value.clone().expect("value")).expect("utf-8");
            let mut parts = v.split(':');
            let process: u64 = parts.next().and_then(|s| s.parse().ok()).expect("process");
            let seq: u64 = parts.next().and_then(|s| s.parse().ok()).expect("sequence");
            assert_eq!(parts.next().map(str::len), Some((seq % 40) as usize), "record {v} is intact");
            assert!(seen.insert((process, seq)), "partition {p}: {process}:{seq} is stored twice");
            if let Some(&prev) = last_seq.get(&process) {
                assert!(seq > prev, "partition {p}: process {process}'s records are out of order ({prev} then {seq})");
            }
            last_seq.insert(process, seq);
            at.insert((p, r.offset), (process, seq));
        }
        total += recs.len();
    }
    for a in acks {
        for k in 0..a.count {
            let found = at.get(&(a.partition, a.base + k));
            assert_eq!(
                found,
                Some(&(a.process, a.first_seq + k)),
                "acknowledged record {}:{} at {}-{}",
                a.process,
                a.first_seq + k,
                a.partition,
                a.base + k
            );
        }
    }
    total
}

#[test]
fn processes_appending_at_once_keep_one_order_with_every_record_once() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = mpsc::channel();
    let per_child = 1500 * scale() as u64;
    // Two processes at acks=all and two at acks=1, all on the same three partitions.
    let mut children: Vec<Child> = (0..4).map(|id| spawn(dir.path(), id, per_child, id < 2, 0, &tx)).collect();
    drop(tx);
    for c in &mut children {
        let status = c.proc.0.wait().expect("wait");
        assert!(status.success(), "child {} failed: {status}", c.id);
    }
    let acks: Vec<Ack> = rx.iter().map(|(a, _)| a).collect();
    let acked: u64 = acks.iter().map(|a| a.count).sum();
    assert!(acked >= 4 * per_child, "every child acknowledged its records ({acked})");
    // The last process out closed the directory cleanly: an exclusive open recovers nothing.
    assert!(dir.path().join(common::CLEAN_SHUTDOWN_MARKER).exists(), "the last process closed cleanly");
    let log = Log::open(dir.path(), common::opts()).expect("open");
    assert!(log.recovery_report().is_empty(), "nothing to recover: {:?}", log.recovery_report());
    let total = check(&log, &acks);
    assert_eq!(total as u64, acked, "the log holds exactly the acknowledged records");
    let segments = log.segments(TOPIC, 0).expect("segments").len();
    assert!(segments > 2, "processes rolled segments under each other ({segments})");
    log.close().expect("close");
}

#[test]
fn processes_killed_at_random_moments_do_not_stop_the_others() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let seed = clock_seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = mpsc::channel::<(Ack, Instant)>();
    let mut next_id = 0u64;
    let mut spawn_next = |rng: &mut Rng, kill_inside: u64| {
        next_id += 1;
        spawn(dir.path(), next_id, 0, rng.below(2) == 0, kill_inside, &tx)
    };
    let mut live: Vec<Child> = (0..3).map(|_| spawn_next(&mut rng, 0)).collect();
    let mut acks = Vec::new();
    let drain = |acks: &mut Vec<(Ack, Instant)>| acks.extend(rx.try_iter());
    let rounds = 8 * scale();
    let mut resumed_within = Vec::new();
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(50 + rng.below(150)));
        drain(&mut acks);
        if round % 2 == 0 {
            // A process armed to die inside the append lock with half a batch copied in.
            let kill_at = 1 + rng.below(300);
            let mut armed = spawn_next(&mut rng, kill_at);
            let status = armed.proc.0.wait().expect("wait");
            let died = Instant::now();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9), "the armed child died by SIGKILL");
            // The survivors go on: each partition takes new appends soon after the death.
            let deadline = died + Duration::from_secs(5);
            let mut resumed: HashSet<u32> = HashSet::new();
            while resumed.len() < PARTITIONS as usize && Instant::now() < deadline {
                if let Ok((a, t)) = rx.recv_timeout(Duration::from_millis(10)) {
                    if t > died && a.process != armed.id && resumed.insert(a.partition) {
                        resumed_within.push(t - died);
                    }
                    acks.push((a, t));
                }
            }
            assert_eq!(resumed.len(), PARTITIONS as usize, "round {round}: the survivors resumed every partition (seed {seed})");
        } else {
            // A process killed from outside at a random moment, and a new one in its place.
            let i = rng.below(live.len() as u64) as usize;
            let victim = live.swap_remove(i);
            drop(victim);
            live.push(spawn_next(&mut rng, 0));
        }
    }
    drop(live);
    drain(&mut acks);
    let worst = resumed_within.iter().max().copied().unwrap_or_default();
    println!("{} appends acknowledged; the survivors resumed within {worst:?} of a death in the lock", acks.len());
    assert!(worst < Duration::from_secs(1), "survivors resumed within a second of a death in the lock ({worst:?}, seed {seed})");
    // What the survivors cut lies in quarantine, with its reason.
    let q = dir.path().join("quarantine");
    let mut reports = 0;
    for d in std::fs::read_dir(&q).expect("quarantine") {
        for f in std::fs::read_dir(d.expect("entry").path()).expect("partition quarantine") {
            let path = f.expect("entry").path();
            if path.extension().is_some_and(|e| e == "report") {
                let text = std::fs::read_to_string(&path).expect("report");
                reports += usize::from(text.contains("died holding the append lock"));
            }
        }
    }
    assert!(reports > 0, "the half-written batches were quarantined by the survivors (seed {seed})");
    // Every process is dead: the next open recovers and finds every acknowledged record.
    let log = Log::open(dir.path(), common::opts()).expect("open");
    let acks: Vec<Ack> = acks.into_iter().map(|(a, _)| a).collect();
    check(&log, &acks);
    log.close().expect("close");
}

#[test]
fn topic_changes_are_seen_by_every_process() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Two handles stand for two processes: each has its own view, locks and mappings.
    let a = Log::open_shared(dir.path(), common::opts()).expect("open a");
    let b = Log::open_shared(dir.path(), common::opts()).expect("open b");
    assert!(a.is_shared() && b.is_shared());
    assert!(matches!(Log::open(dir.path(), common::opts()), Err(Error::Locked { .. })), "no exclusive writer beside shared ones");
    let reader = Log::open_read_only(dir.path(), common::opts()).expect("read-only");

    a.create_topic("t", 1, TopicConfig::default()).expect("create");
    b.append("t", Some(0), &[Record::new(b"b0")], Acks::All).expect("b sees the new topic");
    a.append("t", Some(0), &[Record::new(b"a1")], Acks::One).expect("append");
    assert!(matches!(b.create_topic("t", 1, TopicConfig::default()), Err(Error::TopicExists { .. })));
    b.add_partitions("t", 3).expect("add partitions");
    assert_eq!(a.partition_count("t").expect("count"), 3);
    a.append("t", Some(2), &[Record::new(b"a-p2")], Acks::All).expect("a writes a partition b added");
    assert_eq!(common::values(&common::read_all(&b, "t", 2).expect("read")), ["a-p2"]);
    a.sync_to("t", 0, 2).expect("sync");
    assert_eq!(common::values(&common::read_all(&b, "t", 0).expect("read")), ["b0", "a1"]);
    assert_eq!(common::values(&common::read_all(&reader, "t", 0).expect("reader")), ["b0", "a1"]);

    b.delete_topic("t").expect("delete");
    assert!(matches!(a.append("t", Some(0), &[Record::new(b"late")], Acks::One), Err(Error::UnknownTopicOrPartition { .. })));
    assert!(!a.list_topics().contains(&"t".to_string()));
    // Not yet in shared mode: refused with a clear error.
    assert!(matches!(a.transactional_producer("t", runnel::TransactionOptions::default()), Err(Error::InvalidArgument(_))));
    // Producer ids are unique across processes, and a retry is stored once whoever appended since.
    a.create_topic("i", 1, TopicConfig::default()).expect("create i");
    let (pa, pb) = (a.allocate_producer_id().expect("pid"), b.allocate_producer_id().expect("pid"));
    assert_ne!(pa, pb);
    let batch = |pid, seq| runnel::ProducerBatch { producer_id: pid, producer_epoch: 0, base_sequence: seq };
    let first = a.append_idempotent("i", Some(0), &[Record::new(b"a0")], Acks::All, batch(pa, 0)).expect("append");
    b.append_idempotent("i", Some(0), &[Record::new(b"b0")], Acks::All, batch(pb, 0)).expect("append");
    let retry = a.append_idempotent("i", Some(0), &[Record::new(b"a0")], Acks::All, batch(pa, 0)).expect("retry");
    assert_eq!(retry.base_offset, first.base_offset, "the retry is found, though b appended since");
    assert!(matches!(b.append_idempotent("i", Some(0), &[Record::new(b"a2")], Acks::All, batch(pa, 2)), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        a.append_idempotent("i", Some(0), &[Record::new(b"a2")], Acks::All, batch(pa, 2)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    assert_eq!(common::values(&common::read_all(&b, "i", 0).expect("read")), ["a0", "b0"]);
    // Committed offsets are shared: one handle commits, the other reads them.
    a.create_topic("o", 1, TopicConfig::default()).expect("create o");
    a.commit_offsets("g", &[runnel::OffsetCommit { topic: "o", partition: 0, offset: 7, metadata: "m" }]).expect("commit");
    assert_eq!(b.committed("g", "o", 0).expect("committed").map(|c| c.offset), Some(7));
    b.commit_offsets("g", &[runnel::OffsetCommit { topic: "o", partition: 0, offset: 9, metadata: "" }]).expect("commit");
    assert_eq!(a.committed("g", "o", 0).expect("committed").map(|c| c.offset), Some(9));
    assert_eq!(a.list_groups(), ["g"]);

    a.create_topic("u", 2, topic_config()).expect("create u");
    for i in 0..200u32 {
        let log = if i % 2 == 0 { &a } else { &b };
        log.append("u", Some(i % 2), &[Record::new(format!("{i}").as_bytes())], Acks::One).expect("append");
    }
    a.close().expect("close a");
    assert!(!dir.path().join(common::CLEAN_SHUTDOWN_MARKER).exists(), "b is still in");
    b.append("u", Some(0), &[Record::new(b"after a left")], Acks::One).expect("b goes on alone");
    b.close().expect("close b");
    assert!(dir.path().join(common::CLEAN_SHUTDOWN_MARKER).exists(), "the last one out closed cleanly");
    let log = Log::open(dir.path(), common::opts()).expect("exclusive open after");
    assert!(log.recovery_report().is_empty());
    let next = log.allocate_producer_id().expect("pid");
    assert!(next > pa.max(pb), "an exclusive writer never hands out an id shared mode handed out ({next})");
    assert_eq!(common::read_all(&log, "u", 0).expect("read").len(), 101);
    assert_eq!(common::read_all(&log, "u", 1).expect("read").len(), 100);
    assert!(matches!(Log::open_shared(dir.path(), common::opts()), Err(Error::Locked { .. })), "no shared writer beside an exclusive one");
    log.close().expect("close");
}

#[test]
fn damaged_shared_state_files_are_rebuilt_by_the_first_process_in() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let a = Log::open_shared(dir.path(), common::opts()).expect("open");
        a.create_topic("t", 1, TopicConfig::default()).expect("create");
        a.append("t", Some(0), &[Record::new(b"one")], Acks::All).expect("append");
        a.close().expect("close");
    }
    // The state files are shared memory, not data: garbage in them between sessions is replaced.
    std::fs::write(dir.path().join("t-0/partition.state"), vec![0xA5u8; 512]).expect("damage");
    std::fs::write(dir.path().join(".runnel_state"), vec![0x5Au8; 64]).expect("damage");
    let a = Log::open_shared(dir.path(), common::opts()).expect("reopen");
    let b = Log::open_shared(dir.path(), common::opts()).expect("join");
    b.append("t", Some(0), &[Record::new(b"two")], Acks::All).expect("append");
    assert_eq!(common::values(&common::read_all(&a, "t", 0).expect("read")), ["one", "two"]);
    a.close().expect("close");
    b.close().expect("close");
}

/// What a worker of the pool reported.
enum Seen {
    Got(u32, u64),
    Committed,
    Refused,
    Bye,
}

fn spawn_worker(dir: &Path, id: u64, tx: &mpsc::Sender<(u64, Seen, Instant)>) -> KillOnDrop {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["child_worker", "--exact", "--nocapture", "--test-threads=1"])
        .env(WORKER_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn worker");
    let stdout = child.stdout.take().expect("stdout");
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let seen = if let Some(at) = line.find("GOT ") {
                let f: Vec<u64> = line[at + 4..].split_whitespace().map(|x| x.parse().expect("number")).collect();
                Seen::Got(f[0] as u32, f[1])
            } else if line.contains("COMMITTED") {
                Seen::Committed
            } else if line.contains("REFUSED") {
                Seen::Refused
            } else if line.contains("BYE") {
                Seen::Bye
            } else {
                continue;
            };
            if tx.send((id, seen, Instant::now())).is_err() {
                break;
            }
        }
    });
    KillOnDrop(child)
}

/// What the pool's workers reported, folded.
#[derive(Default)]
struct Pool {
    /// Per record, the workers that processed it.
    processed: HashMap<(u32, u64), Vec<u64>>,
    /// Per worker, what it processed since its last successful commit.
    uncommitted: HashMap<u64, Vec<(u32, u64)>>,
    /// Records a worker processed but did not commit before it died or a rebalance refused its
    /// commit: they may be processed again.
    may_repeat: HashSet<(u32, u64)>,
    /// Per partition, the worker that processed it last.
    last_owner: HashMap<u32, u64>,
    /// Dead workers whose partitions no other worker has processed yet, with the time of death.
    waits: Vec<(u64, HashSet<u32>, Instant)>,
    /// How long after a death each of its partitions was processed by another worker.
    resumed: Vec<Duration>,
}

impl Pool {
    fn take(&mut self, (w, seen, t): (u64, Seen, Instant)) {
        match seen {
            Seen::Got(p, o) => {
                self.processed.entry((p, o)).or_default().push(w);
                self.uncommitted.entry(w).or_default().push((p, o));
                self.last_owner.insert(p, w);
                for (dead, parts, at) in self.waits.iter_mut() {
                    if *dead != w && parts.remove(&p) {
                        self.resumed.push(t - *at);
                    }
                }
                self.waits.retain(|(_, parts, _)| !parts.is_empty());
            }
            Seen::Committed => {
                self.uncommitted.remove(&w);
            }
            Seen::Refused => {
                let lost = self.uncommitted.remove(&w).unwrap_or_default();
                self.may_repeat.extend(lost);
            }
            Seen::Bye => {}
        }
    }

    fn died(&mut self, dead: u64, at: Instant) {
        let lost = self.uncommitted.remove(&dead).unwrap_or_default();
        self.may_repeat.extend(lost);
        let owned: HashSet<u32> = self.last_owner.iter().filter(|(_, w)| **w == dead).map(|(p, _)| *p).collect();
        self.waits.push((dead, owned, at));
    }
}

#[test]
fn a_pool_of_worker_processes_shares_a_topic_while_workers_die() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let seed = clock_seed();
    println!("seed {seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open_shared(dir.path(), shared_opts()).expect("open");
        log.create_topic(TOPIC, PARTITIONS, topic_config()).expect("create");
        // Stays open for the whole test, so the directory never closes between processes.
        std::mem::forget(log);
    }
    let (ack_tx, ack_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel::<(u64, Seen, Instant)>();
    let mut producer = spawn_paced(dir.path(), 0, 6000 * scale() as u64, true, 0, 500, &ack_tx);
    drop(ack_tx);
    let mut next_worker = 0u64;
    let mut workers: Vec<(u64, KillOnDrop)> = (0..3)
        .map(|_| {
            next_worker += 1;
            (next_worker, spawn_worker(dir.path(), next_worker, &tx))
        })
        .collect();

    let mut pool = Pool::default();
    let kills = 4;
    for _ in 0..kills {
        let until = Instant::now() + Duration::from_millis(150 + rng.below(200));
        while let Ok(m) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            pool.take(m);
        }
        let i = rng.below(workers.len() as u64) as usize;
        let (dead, victim) = workers.swap_remove(i);
        drop(victim); // SIGKILL
        let killed_at = Instant::now();
        while let Ok(m) = rx.try_recv() {
            pool.take(m);
        }
        pool.died(dead, killed_at);
        next_worker += 1;
        workers.push((next_worker, spawn_worker(dir.path(), next_worker, &tx)));
    }
    let status = producer.proc.0.wait().expect("producer");
    assert!(status.success(), "the producer failed: {status}");
    let acks: Vec<Ack> = ack_rx.iter().collect::<Vec<_>>().into_iter().map(|(a, _)| a).collect();
    let expected: HashSet<(u32, u64)> = acks.iter().flat_map(|a| (0..a.count).map(move |k| (a.partition, a.base + k))).collect();
    // Until every record was processed, then the workers stop and leave the group cleanly.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !expected.iter().all(|r| pool.processed.contains_key(r)) && Instant::now() < deadline {
        if let Ok(m) = rx.recv_timeout(Duration::from_millis(50)) {
            pool.take(m);
        }
    }
    for (_, w) in &mut workers {
        drop(w.0.stdin.take());
    }
    for (id, mut w) in workers {
        let status = w.0.wait().expect("worker");
        assert!(status.success(), "worker {id} failed: {status}");
    }
    drop(tx);
    while let Ok(m) = rx.recv() {
        pool.take(m);
    }
    let missing = expected.iter().filter(|r| !pool.processed.contains_key(r)).count();
    assert_eq!(missing, 0, "every record is processed at least once (seed {seed})");
    for (record, by) in &pool.processed {
        if by.len() > 1 {
            assert!(
                pool.may_repeat.contains(record),
                "{record:?} was processed by {by:?}, though its first processing was committed (seed {seed})"
            );
        }
    }
    let repeats = pool.processed.values().filter(|b| b.len() > 1).count();
    let worst = pool.resumed.iter().max().copied().unwrap_or_default();
    println!(
        "{} records, {repeats} processed twice after a death or refused commit; a dead worker's partitions moved within {worst:?}",
        expected.len()
    );
    assert!(worst < Duration::from_secs(2), "a dead worker's partitions were taken over within 2 s ({worst:?}, seed {seed})");
    // The group's committed offsets reached the end of every partition.
    let log = Log::open_shared(dir.path(), shared_opts()).expect("open");
    for p in 0..PARTITIONS {
        let end = log.high_watermark(TOPIC, p).expect("high watermark");
        let committed = log.committed(GROUP, TOPIC, p).expect("committed").map(|c| c.offset);
        assert_eq!(committed, Some(end), "partition {p}: the group committed up to the end (seed {seed})");
    }
}

#[test]
fn garbage_in_the_shared_state_while_processes_run_is_an_error_not_a_crash() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Log::open_shared(dir.path(), common::opts()).expect("open a");
    let b = Log::open_shared(dir.path(), common::opts()).expect("open b");
    a.create_topic("t", 1, TopicConfig::default()).expect("create");
    a.append("t", Some(0), &[Record::new(b"kept")], Acks::All).expect("append");
    // Another program scribbles over the writer state both processes map (a fault injected into
    // the shared state file): both slots say the active segment is one that does not exist.
    let state = std::fs::OpenOptions::new().write(true).open(dir.path().join("t-0/partition.state")).expect("state file");
    for slot in [264u64, 312] {
        state.write_all_at(&(1u64 << 40).to_le_bytes(), slot).expect("leo");
        state.write_all_at(&(1u64 << 40).to_le_bytes(), slot + 8).expect("active base");
    }
    // The commit count moves, as a real commit's would, so the next append catches up.
    state.write_all_at(&1_000u64.to_le_bytes(), 256).expect("commits");
    let e = b.append("t", Some(0), &[Record::new(b"refused")], Acks::All).expect_err("a clear error");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    // Garbage in the groups' state: group calls fail with an error, nothing panics.
    let groups = std::fs::OpenOptions::new().write(true).open(dir.path().join(".groups.state")).expect("groups");
    groups.write_all_at(&[0xEE; 64], 4096).expect("slot 0");
    groups.write_all_at(&[0xEE; 64], 4096 + (1 << 20)).expect("slot 1");
    groups.write_all_at(&64u64.to_le_bytes(), 144).expect("len 0");
    groups.write_all_at(&64u64.to_le_bytes(), 152).expect("len 1");
    let mut consumer = Consumer::new(&a, ConsumerConfig::group("g")).expect("consumer");
    assert!(consumer.subscribe(Subscription::Topics(vec!["t".into()])).is_err(), "joining a group with a damaged state fails");
    drop(consumer);
    drop(a);
    drop(b);
    // Everyone left: the next process in rebuilds the shared state from the files; nothing that
    // was acknowledged is lost.
    let c = Log::open_shared(dir.path(), common::opts()).expect("reopen");
    assert_eq!(common::values(&common::read_all(&c, "t", 0).expect("read")), ["kept"]);
    c.append("t", Some(0), &[Record::new(b"after")], Acks::All).expect("append");
    let mut consumer = Consumer::new(&c, ConsumerConfig::group("g")).expect("consumer");
    consumer.subscribe(Subscription::Topics(vec!["t".into()])).expect("subscribe after the rebuild");
}

#[test]
fn producer_ids_are_unique_across_threads_and_handles() {
    if std::env::var(CHILD_ENV).is_ok() || std::env::var(WORKER_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Log::open_shared(dir.path(), common::opts()).expect("open a");
    let b = Log::open_shared(dir.path(), common::opts()).expect("open b");
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let log = if i % 2 == 0 { &a } else { &b };
                s.spawn(move || (0..25).map(|_| log.allocate_producer_id().expect("pid")).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let unique: HashSet<i64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "every producer id handed out once");
}
