//! Idempotent producers: a batch retried with the same producer id and sequence is stored once
//! and answered with the offsets of its first write, across rolls and clean and unclean reopens.
//!
//! - "Duplicates" (the acceptance test): producers append to several partitions and retry
//!   a random subset of their batches as if the acknowledgement had been lost (the engine has
//!   nothing to fail by itself), retry older batches among their last five (the original offsets
//!   come back) and older than five (`OutOfOrderSequence`), while the log is reopened at random,
//!   cleanly or not. In the end every record is stored exactly once, in order, at the offsets the
//!   first write returned.
//! - Sequence checks: a gap is refused and writes nothing; an unknown producer must start at 0;
//!   ids the log did not hand out are refused; handed-out ids are never handed out again.
//! - `producer.id.expiration.ms`: an idle producer is forgotten, one with an open transaction is not.
//! - The producer state survives clean and unclean reopens with segment rolls, and is rebuilt from
//!   the log when its `.snapshot` files are deleted or damaged.
//! - [`runnel::IdempotentProducer`] keeps one sequence per partition at every acks level.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::{Rec, Rng, TestResult, config, make_unclean, open, opts, partition_dir, read_all, scale, small_segments};
use runnel::{Acks, AppendResult, Error, IsolationLevel, Log, ProducerBatch, Record, TopicConfig, TransactionOptions};

fn batch(producer_id: i64, base_sequence: i32) -> ProducerBatch {
    ProducerBatch { producer_id, producer_epoch: 0, base_sequence }
}

fn records(values: &[String]) -> Vec<Record<'_>> {
    values.iter().map(|v| Record::new(v.as_bytes())).collect()
}

/// (offset, value) of each record.
fn offsets_and_values(recs: &[Rec]) -> Vec<(u64, String)> {
    recs.iter().map(|r| (r.offset, String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"<null>")).into_owned())).collect()
}

/// Ends `log` as a crashed process would. With feature `fault-injection`, [`Log::abandon`]:
/// nothing is synced, trimmed, snapshotted or marked clean (the page cache survives, as after a
/// process crash). Without it, the closest an ordinary build gets: a close, then the
/// clean-shutdown marker removed.
fn crash(log: Log, dir: &Path) -> TestResult {
    #[cfg(feature = "fault-injection")]
    {
        let _ = dir;
        log.abandon();
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        log.close()?;
        make_unclean(dir)?;
    }
    Ok(())
}

/// How a log is ended before it is opened again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reopen {
    /// `Log::close`.
    Clean,
    /// A process crash (see [`crash`]).
    Crash,
    /// A clean close whose marker is then removed: recovery runs over complete files.
    MarkerRemoved,
}

const REOPENS: [Reopen; 3] = [Reopen::Clean, Reopen::Crash, Reopen::MarkerRemoved];

fn reopen(log: Log, dir: &Path, how: Reopen) -> Result<Log, Box<dyn std::error::Error>> {
    match how {
        Reopen::Clean => log.close()?,
        Reopen::Crash => crash(log, dir)?,
        Reopen::MarkerRemoved => {
            log.close()?;
            make_unclean(dir)?;
        }
    }
    Ok(open(dir)?)
}

/// One batch as its producer sent it.
#[derive(Clone, Debug)]
struct Sent {
    seq: i32,
    values: Vec<String>,
    at: AppendResult,
}

/// What a producer sent to one partition.
#[derive(Default)]
struct Stream {
    next_seq: i32,
    sent: Vec<Sent>,
}

impl Stream {
    fn resend(&self, log: &Log, pid: i64, topic: &str, p: u32, s: &Sent) -> runnel::Result<AppendResult> {
        log.append_idempotent(topic, Some(p), &records(&s.values), Acks::One, batch(pid, s.seq))
    }
}

const ACKS: [Acks; 3] = [Acks::Zero, Acks::One, Acks::All];

/// The "Duplicates" acceptance test for one seed.
fn duplicates_run(seed: u64, steps: usize) -> TestResult {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    log.create_topic("big", 4, TopicConfig::default())?;
    log.create_topic("small", 2, small_segments())?;
    log.create_topic("written", 1, config(&[("high.watermark", "written"), ("segment.bytes", "2048")]))?;
    let partitions: Vec<(&str, u32)> = vec![("big", 0), ("big", 1), ("big", 2), ("big", 3), ("small", 0), ("small", 1), ("written", 0)];
    let pids: Vec<i64> = (0..3).map(|_| log.allocate_producer_id()).collect::<runnel::Result<_>>()?;
    let mut streams: BTreeMap<(i64, usize), Stream> = BTreeMap::new();
    let mut want: BTreeMap<usize, Vec<(u64, String)>> = BTreeMap::new();
    let (mut retried, mut old_retried, mut refused, mut reopens) = (0, 0, 0, 0);

    for step in 0..steps {
        let pid = pids[rng.below(pids.len() as u64) as usize];
        let pi = rng.below(partitions.len() as u64) as usize;
        let (topic, p) = partitions[pi];
        let stream = streams.entry((pid, pi)).or_default();
        let n = 1 + rng.below(4) as usize;
        let values: Vec<String> =
            (0..n).map(|k| format!("{pid}/{topic}-{p}/{}/{}", stream.next_seq + k as i32, "x".repeat(rng.below(120) as usize))).collect();
        let leo = log.log_end_offset(topic, p)?;
        let acks = ACKS[rng.below(3) as usize];
        let at = log.append_idempotent(topic, Some(p), &records(&values), acks, batch(pid, stream.next_seq))?;
        assert_eq!((at.partition, at.base_offset, at.last_offset), (p, leo, leo + n as u64 - 1), "step {step}: a new batch");
        want.entry(pi).or_default().extend(values.iter().enumerate().map(|(k, v)| (leo + k as u64, v.clone())));
        stream.sent.push(Sent { seq: stream.next_seq, values, at });
        stream.next_seq += n as i32;

        // The acknowledgement was lost: the producer sends the same batch again.
        if rng.below(3) == 0 {
            let s = stream.sent.last().expect("just sent").clone();
            assert_eq!(stream.resend(&log, pid, topic, p, &s)?, s.at, "step {step}: a retry returns the first write's offsets");
            assert_eq!(log.log_end_offset(topic, p)?, s.at.last_offset + 1, "step {step}: a retry writes nothing");
            retried += 1;
        }
        // A retry of an older batch among the last five arrives late.
        let len = stream.sent.len();
        if len >= 2 && rng.below(4) == 0 {
            let s = stream.sent[len - 1 - rng.below(len.min(5) as u64) as usize].clone();
            let end = log.log_end_offset(topic, p)?;
            assert_eq!(stream.resend(&log, pid, topic, p, &s)?, s.at, "step {step}: a retry of batch seq {} among the last 5", s.seq);
            assert_eq!(log.log_end_offset(topic, p)?, end);
            old_retried += 1;
        }
        // One older than five is no longer remembered: refused, not stored again.
        if len > 5 && rng.below(4) == 0 {
            let s = stream.sent[rng.below(len as u64 - 5) as usize].clone();
            let end = log.log_end_offset(topic, p)?;
            let r = stream.resend(&log, pid, topic, p, &s);
            assert!(
                matches!(&r, Err(Error::OutOfOrderSequence { topic: t, partition, producer_id, expected, received })
                    if t == topic && *partition == p && *producer_id == pid && *expected == stream.next_seq && *received == s.seq),
                "step {step}: a retry older than the last 5 batches: {r:?}"
            );
            assert_eq!(log.log_end_offset(topic, p)?, end);
            refused += 1;
        }
        if rng.below(25) == 0 {
            let how = REOPENS[rng.below(3) as usize];
            log = reopen(log, dir.path(), how)?;
            reopens += 1;
            // The most usual retry of all: the ack was lost because the process died.
            for ((pid, pi), s) in &streams {
                let (topic, p) = partitions[*pi];
                if let Some(last) = s.sent.last() {
                    assert_eq!(s.resend(&log, *pid, topic, p, last)?, last.at, "after a {how:?} reopen, a retry of the last batch");
                }
            }
        }
    }
    log.sync_all()?;
    for (pi, (topic, p)) in partitions.iter().enumerate() {
        let got = offsets_and_values(&read_all(&log, topic, *p)?);
        assert_eq!(got, want.remove(&pi).unwrap_or_default(), "seed {seed}: {topic}-{p} holds each record once, in order");
    }
    assert!(retried > 0 && old_retried > 0 && refused > 0 && reopens > 0, "seed {seed}: {retried} {old_retried} {refused} {reopens}");
    Ok(())
}

#[test]
fn retried_batches_are_stored_exactly_once_in_order_across_reopens() -> TestResult {
    for seed in 0..(3 * scale() as u64) {
        duplicates_run(0x1D3 + seed, 160)?;
    }
    Ok(())
}

#[test]
fn a_sequence_gap_is_refused_and_writes_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    let pid = log.allocate_producer_id()?;
    let v = |s: &str| s.to_string();
    let at = log.append_idempotent("t", Some(0), &records(&[v("a"), v("b")]), Acks::All, batch(pid, 0))?;
    assert_eq!((at.base_offset, at.last_offset), (0, 1));

    let out_of_order = |r: runnel::Result<AppendResult>, exp: i32, rec: i32| {
        assert!(
            matches!(&r, Err(Error::OutOfOrderSequence { topic, partition: 0, producer_id, expected, received })
                if topic == "t" && *producer_id == pid && *expected == exp && *received == rec),
            "expected {exp}, received {rec}: {r:?}"
        );
    };
    // A gap: sequence 2 is missing.
    out_of_order(log.append_idempotent("t", Some(0), &records(&[v("d")]), Acks::All, batch(pid, 3)), 2, 3);
    // Overlapping the stored batch without being that batch.
    out_of_order(log.append_idempotent("t", Some(0), &records(&[v("b")]), Acks::All, batch(pid, 1)), 2, 1);
    out_of_order(log.append_idempotent("t", Some(0), &records(&[v("a"), v("b"), v("c")]), Acks::All, batch(pid, 0)), 2, 0);
    // Far ahead, and wrapped around.
    out_of_order(log.append_idempotent("t", Some(0), &records(&[v("z")]), Acks::All, batch(pid, i32::MAX)), 2, i32::MAX);
    assert_eq!(log.log_end_offset("t", 0)?, 2, "refused batches write nothing");

    let at = log.append_idempotent("t", Some(0), &records(&[v("c")]), Acks::All, batch(pid, 2))?;
    assert_eq!(at.base_offset, 2, "the expected sequence is still accepted");
    // Sequences are per partition: partition 1 starts at 0 for the same producer.
    let at = log.append_idempotent("t", Some(1), &records(&[v("p1")]), Acks::All, batch(pid, 0))?;
    assert_eq!((at.partition, at.base_offset), (1, 0));
    assert_eq!(values_of(&log, "t", 0)?, ["a", "b", "c"]);
    assert_eq!(values_of(&log, "t", 1)?, ["p1"]);
    Ok(())
}

fn values_of(log: &Log, topic: &str, p: u32) -> runnel::Result<Vec<String>> {
    Ok(common::values(&read_all(log, topic, p)?))
}

#[test]
fn an_unknown_producer_must_start_at_sequence_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    let pid = log.allocate_producer_id()?;
    log.append_idempotent("t", Some(0), &[Record::new(b"a")], Acks::All, batch(pid, 0))?;
    // Known on partition 0, never seen on partition 1.
    let r = log.append_idempotent("t", Some(1), &[Record::new(b"b")], Acks::All, batch(pid, 5));
    assert!(
        matches!(&r, Err(Error::UnknownProducerId { topic, partition: 1, producer_id, sequence: 5 }) if topic == "t" && *producer_id == pid),
        "{r:?}"
    );
    let other = log.allocate_producer_id()?;
    let r = log.append_idempotent("t", Some(0), &[Record::new(b"c")], Acks::All, batch(other, 1));
    assert!(matches!(&r, Err(Error::UnknownProducerId { partition: 0, sequence: 1, .. })), "{r:?}");
    assert_eq!((log.log_end_offset("t", 0)?, log.log_end_offset("t", 1)?), (1, 0), "nothing written");
    let at = log.append_idempotent("t", Some(1), &[Record::new(b"b")], Acks::All, batch(pid, 0))?;
    assert_eq!((at.partition, at.base_offset), (1, 0));
    Ok(())
}

#[test]
fn producer_ids_the_log_did_not_hand_out_are_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let invalid = |r: runnel::Result<AppendResult>, what: &str| {
        assert!(matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("allocate_producer_id")), "{what}: {r:?}");
    };
    let rec = [Record::new(b"x")];
    invalid(log.append_idempotent("t", Some(0), &rec, Acks::All, batch(0, 0)), "before any id was handed out");
    let pid = log.allocate_producer_id()?;
    for bad in [-1, -2, i64::MIN, 1_000_000, i64::MAX] {
        invalid(log.append_idempotent("t", Some(0), &rec, Acks::All, batch(bad, 0)), &format!("id {bad}"));
    }
    let b = ProducerBatch { producer_id: pid, producer_epoch: -1, base_sequence: 0 };
    invalid(log.append_idempotent("t", Some(0), &rec, Acks::All, b), "a negative epoch");
    invalid(log.append_idempotent("t", Some(0), &rec, Acks::All, batch(pid, -1)), "a negative sequence");
    assert_eq!(log.log_end_offset("t", 0)?, 0, "nothing written");
    // Internal topics are written by runnel only.
    for internal in [runnel::CONSUMER_OFFSETS_TOPIC, runnel::TRANSACTION_STATE_TOPIC] {
        let r = log.append_idempotent(internal, Some(0), &rec, Acks::All, batch(pid, 0));
        assert!(matches!(&r, Err(Error::ReadOnly(_))), "{internal}: {r:?}");
    }
    assert_eq!(log.append_idempotent("t", Some(0), &rec, Acks::All, batch(pid, 0))?.base_offset, 0);
    Ok(())
}

/// A producer id inside the block the log reserved, but not yet handed out, is accepted; the
/// next `allocate_producer_id` then hands it out, and the new holder's first batch is taken for a
/// retry of the squatter's and silently dropped.
#[test]
fn an_id_reserved_but_not_yet_handed_out_is_refused() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let first = log.allocate_producer_id()?;
    let r = log.append_idempotent("t", Some(0), &[Record::new(b"squatter")], Acks::All, batch(first + 1, 0));
    if r.is_ok() {
        // What follows from accepting it: the legitimate holder's first batch is lost.
        let next = log.allocate_producer_id()?;
        assert_eq!(next, first + 1);
        let at = log.append_idempotent("t", Some(0), &[Record::new(b"legit")], Acks::All, batch(next, 0))?;
        assert_eq!(at.base_offset, 1, "the new holder's first batch is stored, not answered as a duplicate of offset 0");
    }
    assert!(matches!(&r, Err(Error::InvalidArgument(_))), "{r:?}");
    Ok(())
}

#[test]
fn producer_ids_are_never_handed_out_twice_across_reopens() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let mut all: Vec<i64> = Vec::new();
    // More than one reserved block (1000 ids), and every kind of reopen, including crashes in
    // the middle of a block.
    for (round, how) in [Reopen::Clean, Reopen::Crash, Reopen::MarkerRemoved, Reopen::Crash, Reopen::Clean].into_iter().enumerate() {
        for _ in 0..(if round == 0 { 1100 } else { 30 }) {
            all.push(log.allocate_producer_id()?);
        }
        all.push(log.idempotent_producer()?.producer_id());
        all.push(log.transactional_producer(&format!("txn-{round}"), TransactionOptions::default())?.producer_id());
        // The first id still works after each reopen: it continues its sequence.
        let at = log.append_idempotent("t", Some(0), &[Record::new(b"x")], Acks::All, batch(all[0], round as i32))?;
        assert_eq!(at.base_offset, round as u64);
        log = reopen(log, dir.path(), how)?;
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "every id handed out once");
    assert!(all.windows(2).all(|w| w[0] < w[1]), "ids only grow: {:?}", &all[all.len() - 70..]);
    assert!(all.iter().all(|&id| id >= 0));
    Ok(())
}

#[test]
fn idle_producers_expire_but_not_while_their_transaction_is_open() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), opts().producer_id_expiration(Duration::from_millis(50)))?;
    log.create_topic("t", 1, config(&[("high.watermark", "written")]))?;
    let pid = log.allocate_producer_id()?;
    let sent: Vec<AppendResult> = (0..3)
        .map(|i| log.append_idempotent("t", Some(0), &[Record::new(format!("a{i}").as_bytes())], Acks::One, batch(pid, i)))
        .collect::<runnel::Result<_>>()?;
    let written = std::time::Instant::now();
    let txn = log.transactional_producer("long", TransactionOptions::default())?;
    txn.begin()?;
    let t0 = txn.send("t", Some(0), &[Record::new(b"t0")])?;
    assert_eq!(t0.base_offset, 3);
    // Before the expiry (unless this thread was descheduled for 50 ms), a retry is recognised.
    if written.elapsed() < Duration::from_millis(40) {
        log.run_retention()?;
        assert_eq!(log.append_idempotent("t", Some(0), &[Record::new(b"a1")], Acks::One, batch(pid, 1))?, sent[1]);
    }

    std::thread::sleep(Duration::from_millis(120));
    log.run_retention()?;
    // The idle producer is forgotten: its retries are no longer recognised, and a sequence other
    // than 0 is refused as unknown.
    for seq in [1, 2, 3] {
        let r = log.append_idempotent("t", Some(0), &[Record::new(b"late")], Acks::One, batch(pid, seq));
        assert!(matches!(&r, Err(Error::UnknownProducerId { sequence, .. }) if *sequence == seq), "seq {seq}: {r:?}");
    }
    assert_eq!(log.log_end_offset("t", 0)?, 4);
    // Sequence 0 starts the producer afresh: a retry of its first batch is now a new write.
    let again = log.append_idempotent("t", Some(0), &[Record::new(b"a0")], Acks::One, batch(pid, 0))?;
    assert_eq!(again.base_offset, 4, "{again:?} vs the first write {:?}", sent[0]);

    // The transactional producer, idle as long but with its transaction open, is remembered: its
    // sequence continues and its transaction still holds read_committed readers back.
    assert_eq!(log.last_stable_offset("t", 0)?, 3);
    let t1 = txn.send("t", Some(0), &[Record::new(b"t1")])?;
    assert_eq!(t1.base_offset, 5);
    txn.commit()?;
    let committed = log.fetch_with("t", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)?;
    let got: Vec<String> = common::values(&common::records_of(&committed)?);
    assert_eq!(got, ["a0", "a1", "a2", "t0", "a0", "t1"]);
    Ok(())
}

/// Kafka's producers recover from an expired producer id (KIP-360: they reset the sequence and
/// carry on); an [`runnel::IdempotentProducer`] keeps sending the next sequence to a partition
/// that forgot it, and is refused there for good.
#[test]
fn an_idempotent_producer_idle_past_expiration_can_send_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), opts().producer_id_expiration(Duration::from_millis(20)))?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let producer = log.idempotent_producer()?;
    producer.send("t", Some(0), &[Record::new(b"before")], Acks::All)?;
    std::thread::sleep(Duration::from_millis(60));
    log.run_retention()?;
    let first = producer.send("t", Some(0), &[Record::new(b"after")], Acks::All);
    let second = producer.send("t", Some(0), &[Record::new(b"after")], Acks::All);
    assert!(first.is_ok() || second.is_ok(), "a producer stays usable after its id expired: {first:?} then {second:?}");
    Ok(())
}

/// What to do to the `.snapshot` files before a reopen.
#[derive(Clone, Copy, Debug)]
enum SnapshotDamage {
    None,
    /// Every snapshot removed: the state is rebuilt from the whole log.
    Deleted,
    /// A byte flipped in every snapshot.
    AllCorrupted,
    /// A byte flipped in the newest snapshot only: an older one is used, then the log after it.
    NewestCorrupted,
}

fn snapshot_files(partition_dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut v: Vec<_> =
        common::dir_names(partition_dir)?.into_iter().filter(|n| n.ends_with(".snapshot")).map(|n| partition_dir.join(n)).collect();
    v.sort();
    Ok(v)
}

fn flip_byte(path: &Path, at: usize) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    let at = at.min(bytes.len() - 1);
    bytes[at] ^= 0x5A;
    std::fs::write(path, bytes)
}

fn state_after_reopen(how: Reopen, damage: SnapshotDamage) -> TestResult {
    let what = format!("{how:?} reopen, snapshots {damage:?}");
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("s", 1, small_segments())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let pid = log.allocate_producer_id()?;
    let mut streams: BTreeMap<&str, Stream> = BTreeMap::new();
    for i in 0..40 {
        for topic in ["s", "t"] {
            let s = streams.entry(topic).or_default();
            let n = 1 + i % 3;
            let values: Vec<String> = (0..n).map(|k| format!("{topic}{}-{}", s.next_seq + k as i32, "v".repeat(60))).collect();
            let at = log.append_idempotent(topic, Some(0), &records(&values), ACKS[i % 3], batch(pid, s.next_seq))?;
            s.sent.push(Sent { seq: s.next_seq, values, at });
            s.next_seq += n as i32;
        }
    }
    let pdir = partition_dir(dir.path(), "s", 0);
    assert!(log.segments("s", 0)?.len() > 5, "{what}: the small-segment topic rolled");
    let log = reopen_damaged(log, dir.path(), how, damage, &pdir, &what)?;

    for (topic, s) in &streams {
        let len = s.sent.len();
        for k in 0..5 {
            let old = &s.sent[len - 1 - k];
            assert_eq!(s.resend(&log, pid, topic, 0, old)?, old.at, "{what}: {topic}: a retry of the batch {k} before the last");
        }
        let old = &s.sent[len - 6];
        let r = s.resend(&log, pid, topic, 0, old);
        assert!(
            matches!(&r, Err(Error::OutOfOrderSequence { expected, received, .. }) if *expected == s.next_seq && *received == old.seq),
            "{what}: {topic}: the sixth batch back is forgotten: {r:?}"
        );
        let leo = log.log_end_offset(topic, 0)?;
        let r = log.append_idempotent(topic, Some(0), &[Record::new(b"gap")], Acks::All, batch(pid, s.next_seq + 1));
        assert!(matches!(&r, Err(Error::OutOfOrderSequence { expected, .. }) if *expected == s.next_seq), "{what}: {r:?}");
        let at = log.append_idempotent(topic, Some(0), &[Record::new(b"next")], Acks::All, batch(pid, s.next_seq))?;
        assert_eq!(at.base_offset, leo, "{what}: {topic}: the next sequence is appended");
        let mut want: Vec<String> = s.sent.iter().flat_map(|b| b.values.iter().cloned()).collect();
        want.push("next".into());
        assert_eq!(values_of(&log, topic, 0)?, want, "{what}: {topic}: each record once");
    }
    log.close()?;
    Ok(())
}

fn reopen_damaged(
    log: Log,
    dir: &Path,
    how: Reopen,
    damage: SnapshotDamage,
    pdir: &Path,
    what: &str,
) -> Result<Log, Box<dyn std::error::Error>> {
    match how {
        Reopen::Clean => log.close()?,
        Reopen::Crash => crash(log, dir)?,
        Reopen::MarkerRemoved => {
            log.close()?;
            make_unclean(dir)?;
        }
    }
    let snaps = snapshot_files(pdir)?;
    assert!(!snaps.is_empty(), "{what}: rolls wrote snapshots");
    match damage {
        SnapshotDamage::None => {}
        SnapshotDamage::Deleted => {
            for s in &snaps {
                std::fs::remove_file(s)?;
            }
        }
        SnapshotDamage::AllCorrupted => {
            for (i, s) in snaps.iter().enumerate() {
                // In the header for some, in a producer's batches for others.
                flip_byte(s, if i % 2 == 0 { 12 } else { 60 })?;
            }
        }
        SnapshotDamage::NewestCorrupted => flip_byte(snaps.last().expect("a snapshot"), 60)?,
    }
    Ok(open(dir)?)
}

#[test]
fn producer_state_survives_reopens_and_is_rebuilt_without_its_snapshots() -> TestResult {
    for how in REOPENS {
        for damage in [SnapshotDamage::None, SnapshotDamage::Deleted, SnapshotDamage::AllCorrupted, SnapshotDamage::NewestCorrupted] {
            state_after_reopen(how, damage)?;
        }
    }
    Ok(())
}

#[test]
fn an_idempotent_producer_keeps_one_sequence_per_partition_at_every_acks_level() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 3, config(&[("max.message.bytes", "1000")]))?;
    let producer = log.idempotent_producer()?;
    let other = log.idempotent_producer()?;
    assert_ne!(producer.producer_id(), other.producer_id());
    let pid = producer.producer_id();
    let mut rng = Rng(7);
    let mut sent: BTreeMap<u32, Vec<(i32, Vec<String>, AppendResult)>> = BTreeMap::new();
    let mut next: BTreeMap<u32, i32> = BTreeMap::new();
    for i in 0..30 {
        let p = rng.below(3) as u32;
        let n = 1 + rng.below(3) as usize;
        let values: Vec<String> = (0..n).map(|k| format!("{p}:{i}.{k}")).collect();
        let acks = ACKS[i % 3];
        let leo = log.log_end_offset("t", p)?;
        let at = producer.send("t", Some(p), &records(&values), acks)?;
        assert_eq!((at.partition, at.base_offset, at.last_offset), (p, leo, leo + n as u64 - 1));
        if acks == Acks::All {
            assert_eq!(log.high_watermark("t", p)?, at.last_offset + 1, "acks=all: durable and visible on return");
        } else {
            assert!(log.high_watermark("t", p)? <= at.base_offset, "acks={acks:?}: visible once synced");
        }
        let seq = next.entry(p).or_default();
        sent.entry(p).or_default().push((*seq, values, at));
        *seq += n as i32;
        // A failed send consumes no sequence number.
        if i % 10 == 0 {
            let big = vec![b'x'; 2000];
            let r = producer.send("t", Some(p), &[Record::new(&big)], Acks::All);
            assert!(matches!(r, Err(Error::RecordTooLarge { .. })), "{r:?}");
            let r = producer.send("t", Some(9), &[Record::new(b"nowhere")], Acks::All);
            assert!(matches!(r, Err(Error::UnknownTopicOrPartition { partition: Some(9), .. })), "{r:?}");
        }
    }
    // The other producer has its own sequences.
    assert_eq!(other.send("t", Some(0), &[Record::new(b"other")], Acks::All)?.base_offset, log.log_end_offset("t", 0)? - 1);
    // Without a partition, the key picks it, and the sequence of that partition moves on.
    let p = log.partition_for("t", Some(b"key-1"))?;
    let at = producer.send("t", None, &[Record::new(b"keyed").with_key(b"key-1")], Acks::All)?;
    assert_eq!(at.partition, p);
    let seq = next.entry(p).or_default();
    sent.entry(p).or_default().push((*seq, vec!["keyed".into()], at));
    *seq += 1;

    log.sync_all()?;
    for (p, batches) in &sent {
        // The producer used exactly the sequences a gap check expects...
        let r = log.append_idempotent("t", Some(*p), &[Record::new(b"probe")], Acks::All, batch(pid, next[p] + 7));
        assert!(matches!(&r, Err(Error::OutOfOrderSequence { expected, .. }) if *expected == next[p]), "t-{p}: {r:?}");
        // ...and a retry of its last batch there, with its sequence, is recognised.
        let (seq, values, at) = batches.last().expect("a batch");
        assert_eq!(log.append_idempotent("t", Some(*p), &records(values), Acks::All, batch(pid, *seq))?, *at);
        let mine: Vec<String> = values_of(&log, "t", *p)?.into_iter().filter(|v| v != "other").collect();
        let want: Vec<String> = batches.iter().flat_map(|b| b.1.iter().cloned()).collect();
        assert_eq!(mine, want, "t-{p}");
    }
    Ok(())
}
