//! Exactly-once under simulated power loss and I/O faults (feature `fault-injection`).
//!
//! A seeded workload on [`SimFs`] mixes two transactional producers (transactions over the three
//! partitions of topic `a` and the one of topic `b`, committed or aborted at random, some sending
//! group offsets), two idempotent producers (`append_idempotent` at acks=1 and acks=all, with
//! retries), plain appends at every acks level, syncs and retention (`b` has `retention.bytes`).
//! Segments and the internal topics' segments are small, so segments roll and producer-state
//! snapshots and table snapshots are written all the time. Every record's value names its batch
//! and its place in it, so a read tells exactly which batch each record came from.
//!
//! `power_loss_keeps_transactions_atomic_and_acknowledged_writes_durable`: at a random operation
//! the machine dies, power is lost (only durable state survives, plus a random torn or reordered
//! subset of the rest), the log is reopened, and:
//!
//! - every partition is a prefix of what was written: whole batches at the offsets their appends
//!   returned, every batch made durable (acks=all, a later sync, a commit) present, read
//!   uncommitted shows no torn batch and no record nobody wrote;
//! - no transaction hangs: the last stable offset of every partition equals its high watermark and
//!   no transactional id is left `Ongoing`, `PrepareCommit` or `PrepareAbort`;
//! - under read_committed, every transaction is wholly visible or wholly absent (across all its
//!   partitions), plain and idempotent batches are always visible, a transaction whose `commit()`
//!   returned `Ok` is visible, an aborted or unfinished one is not, and one whose commit was cut
//!   short is either;
//! - group offsets sent in a transaction are committed exactly when its records are visible (the
//!   last visible transaction's offsets and metadata, per partition);
//! - idempotent retries after the reopen return the original offsets for every batch that
//!   survived (acks=all ones always do) and store nothing; a lost batch's retry is stored once.
//!
//! Then the workload continues on the reopened log, with new producer incarnations, and dies
//! again, several times per seed. Half the rounds die at a random operation, half at one inside a
//! commit (so that commits are cut short at every step). `RUNNEL_TEST_SCALE` multiplies the
//! number of seeds. While two engine bugs are open, the workload syncs after each `Ok` commit (see
//! [`WORKAROUND_UNSYNCED_COMMIT_MARKERS`]).
//!
//! `io_errors_during_commit_leave_every_transaction_whole`: the same workload, fixed, runs once
//! per fsync and per write that its commits perform, with that operation failing (EIO or ENOSPC,
//! once or from then on); the application reacts as a real one would (a new producer incarnation
//! after a failed call, which aborts what the old one left open or completes a commit it left in
//! doubt; failed idempotent sends sent again). Then the process crashes (the page cache
//! survives), the directory is reopened on a healthy file system, and every acknowledged append is
//! there, every `Ok` commit is visible, every failed one wholly visible or wholly absent, and the
//! invariants above hold; the reopened log then takes new incarnations, appends and commits.
//!
//! The other tests are regression tests for engine bugs these harnesses found, each explained above it.

#![cfg(feature = "fault-injection")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Rng, scale};

use runnel::testing::{Fault, Op, SimFs};
use runnel::{
    Acks, Error, IsolationLevel, Log, LogOptions, OffsetCommit, ProducerBatch, Record, TopicConfig, TransactionOptions, TransactionState,
    TransactionalProducer,
};

const DIR: &str = "/data";
/// The data partitions: three of `a` (no retention) and one of `b` (retention.bytes).
const PARTS: [(&str, u32); 4] = [("a", 0), ("a", 1), ("a", 2), ("b", 0)];
/// Partitions whose oldest segments retention may delete.
const RETAINED: usize = 3;
const TXN_IDS: [&str; 2] = ["app-0", "app-1"];
const GROUP: &str = "g";
const IDEMPOTENT_PRODUCERS: usize = 2;
const INTERNAL_TOPICS: [&str; 2] = ["__consumer_offsets", "__transaction_state"];

/// While the two bugs reproduced at the end of this file are open (a commit's markers and its
/// `CompleteCommit` record are written without a sync, so a power loss can lose a marker and
/// recovery aborts the committed transaction, or lose the `CompleteCommit` and recovery completes
/// the stale `PrepareCommit` again, committing the producer's next transaction), the power-loss
/// workload syncs, right after each `Ok` commit, the partitions that got a marker and
/// `__transaction_state`, and does not check the transaction whose commit, or that sync, the
/// machine died in. Set to `false` once both are fixed: every `Ok` commit is then checked strictly.
const WORKAROUND_UNSYNCED_COMMIT_MARKERS: bool = true;

/// While the bug reproduced by `a_new_incarnation_after_a_reopen_is_not_fenced_by_epochs_never_persisted`
/// is open (after failed incarnations, a reopened log can hand out an epoch below one its
/// partitions have seen), the fault-injection test lets the first calls after the reopen fail
/// with `ProducerFenced` and starts a new incarnation, until the epochs catch up; it counts them.
/// Set to `false` once the bug is fixed.
const WORKAROUND_EPOCHS_NOT_PERSISTED: bool = true;

fn options() -> LogOptions {
    // Small internal segments, so that `__consumer_offsets` and `__transaction_state` roll and
    // snapshot their tables often.
    LogOptions::default().background_maintenance(false).offsets_topic_segment_bytes(4096)
}

fn topic_config(retention: bool) -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [("segment.bytes", "2048"), ("max.message.bytes", "1024"), ("index.interval.bytes", "256"), ("segment.ms", "-1")] {
        c.set(k, v).expect("config");
    }
    if retention {
        c.set("retention.bytes", "4096").expect("retention");
    }
    c
}

// ---------------------------------------------------------------------------------------------
// The model: what the workload wrote and was told.

/// Who wrote a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Plain,
    /// Idempotent producer `producer` (an index into `World::pids`), first sequence `seq`.
    Idempotent {
        producer: usize,
        seq: i32,
    },
    /// Part of transaction `txn`.
    Transactional(u64),
}

/// One batch written to a partition.
#[derive(Clone, Debug)]
struct Batch {
    id: u64,
    kind: Kind,
    values: Vec<Vec<u8>>,
    /// Offset of its first record, as the append returned it; `None` for an append that failed
    /// (it may have landed, whole, or not).
    base: Option<u64>,
}

/// A partition's batches in the order they were written, and how many of them are durable.
#[derive(Default)]
struct PartModel {
    batches: Vec<Batch>,
    durable: usize,
}

/// What is known of a transaction's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// Begun, not ended: must never be visible.
    Open,
    /// `abort()` returned, or a reopen found it invisible: must never be visible.
    Aborted,
    /// `commit()` failed: visible or not, but as a whole.
    InDoubt,
    /// `commit()` returned `Ok`, or a reopen found it visible: must be visible.
    Committed,
    /// See [`WORKAROUND_UNSYNCED_COMMIT_MARKERS`]: not checked.
    Unchecked,
}

struct Txn {
    fate: Fate,
    /// Group offsets sent in it: (partition index, offset).
    offsets: Vec<(usize, u64)>,
}

#[derive(Default)]
struct Stats {
    crashes: u64,
    steps: u64,
    records_checked: u64,
    committed: u64,
    aborted: u64,
    in_doubt_visible: u64,
    in_doubt_absent: u64,
    unchecked: u64,
    retries_deduplicated: u64,
    retries_stored: u64,
    offsets_checked: u64,
    /// Batches retention deleted (below the log start after a reopen).
    retained: u64,
    /// Calls fenced by an epoch the coordinator had lost (see [`WORKAROUND_EPOCHS_NOT_PERSISTED`]).
    fenced: u64,
    errors: u64,
}

/// The log, its producers, and the model of what they were told.
struct World {
    fs: SimFs,
    log: Option<Log>,
    producers: Vec<Option<TransactionalProducer>>,
    /// The open transaction of each transactional producer.
    open: Vec<Option<u64>>,
    pids: Vec<i64>,
    /// Next sequence per idempotent producer and partition.
    next_seq: Vec<[i32; 4]>,
    parts: Vec<PartModel>,
    txns: BTreeMap<u64, Txn>,
    /// The group's committed offset and metadata per partition as of the last reopen.
    group: BTreeMap<usize, (u64, String)>,
    /// Transactions since then that sent offsets and called commit, in order.
    offset_history: Vec<u64>,
    /// With the workaround: the transaction whose commit returned `Ok` but whose markers are not
    /// known to be synced yet.
    unsynced_commit: Option<u64>,
    /// Whether this round's power loss is still to be aimed at a commit.
    aim_at_commit: bool,
    /// Per idempotent producer and partition: the id of a batch whose append failed, to be sent
    /// again (with the same sequence) before anything else, as a producer retries.
    pending_retry: Vec<[Option<u64>; 4]>,
    /// Transactional producers to replace with a new incarnation after an error.
    needs_new_incarnation: Vec<bool>,
    /// With a fault planned: for each commit, the count of matching operations before and after it.
    commit_windows: Vec<(u64, u64)>,
    /// See [`WORKAROUND_EPOCHS_NOT_PERSISTED`].
    tolerate_fencing: bool,
    next_id: u64,
    rng: Rng,
    stats: Stats,
    /// Errors are expected only from a dead machine (power loss) or after an injected fault.
    faults: bool,
}

fn value(id: u64, i: usize, n: usize, pad: usize) -> Vec<u8> {
    let mut v = format!("{id}.{i}.{n}.").into_bytes();
    v.resize(v.len() + pad, b'x');
    v
}

/// (batch id, index in batch, batch length) of a value written by [`value`].
fn parse(v: &[u8]) -> Option<(u64, usize, usize)> {
    let s = std::str::from_utf8(v).ok()?;
    let mut it = s.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn records(values: &[Vec<u8>]) -> Vec<Record<'_>> {
    values.iter().map(|v| Record::new(v)).collect()
}

impl World {
    fn new(seed: u64, faults: bool) -> World {
        World {
            fs: SimFs::new(seed, 16 << 20),
            log: None,
            producers: Vec::new(),
            open: vec![None; TXN_IDS.len()],
            pids: Vec::new(),
            next_seq: vec![[0; 4]; IDEMPOTENT_PRODUCERS],
            parts: (0..PARTS.len()).map(|_| PartModel::default()).collect(),
            txns: BTreeMap::new(),
            group: BTreeMap::new(),
            offset_history: Vec::new(),
            unsynced_commit: None,
            aim_at_commit: false,
            pending_retry: vec![[None; 4]; IDEMPOTENT_PRODUCERS],
            needs_new_incarnation: vec![false; TXN_IDS.len()],
            commit_windows: Vec::new(),
            tolerate_fencing: false,
            next_id: 0,
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            stats: Stats::default(),
            faults,
        }
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("the log is open")
    }

    /// Opens the data directory, creating the topics, the idempotent producers' ids and the
    /// transactional producers on first use.
    fn open(&mut self, when: &str) {
        let log = Log::open_with_vfs(DIR, options(), self.fs.vfs()).unwrap_or_else(|e| panic!("{when}: open failed: {e}"));
        if log.list_topics().iter().all(|t| t != "a") {
            log.create_topic("a", 3, topic_config(false)).expect("create a");
            log.create_topic("b", 1, topic_config(true)).expect("create b");
            self.pids = (0..IDEMPOTENT_PRODUCERS).map(|_| log.allocate_producer_id().expect("allocate producer id")).collect();
        }
        self.log = Some(log);
    }

    fn start_producers(&mut self, when: &str) {
        self.producers = TXN_IDS
            .iter()
            .map(|id| {
                let p = self
                    .log()
                    .transactional_producer(id, TransactionOptions::default().timeout(Duration::from_secs(600)))
                    .unwrap_or_else(|e| panic!("{when}: new incarnation of {id}: {e}"));
                Some(p)
            })
            .collect();
        self.open = vec![None; TXN_IDS.len()];
        self.needs_new_incarnation = vec![false; TXN_IDS.len()];
    }

    /// Drops the log as a crashed process would, then the producers (they find it closed).
    fn crash(&mut self) {
        if let Some(log) = self.log.take() {
            log.abandon();
        }
        self.producers.clear();
    }

    fn new_batch(&mut self, kind: Kind, max_records: u64) -> Batch {
        self.next_id += 1;
        let id = self.next_id;
        let n = 1 + self.rng.below(max_records) as usize;
        let values = (0..n).map(|i| value(id, i, n, self.rng.below(120) as usize)).collect();
        Batch { id, kind, values, base: None }
    }

    /// Notes a failed call: fine on a dead machine or with a fault injected, else a test failure.
    fn failed(&mut self, what: &str, e: &Error) -> bool {
        if self.tolerate_fencing && matches!(e, Error::ProducerFenced { .. }) {
            self.stats.fenced += 1;
            return false;
        }
        assert!(self.faults || self.fs.is_dead(), "{what} failed while the machine was alive: {e}");
        assert!(
            matches!(e, Error::Io { .. } | Error::Poisoned { .. } | Error::InvalidTransactionState(_)),
            "{what} failed with an error no I/O failure explains: {e:?}"
        );
        assert!(!e.to_string().is_empty(), "{what}: an error without a message");
        self.stats.errors += 1;
        false
    }

    /// Records a batch whose append returned `Ok` at `base` (checking the returned range), or the
    /// one in flight (`None`).
    fn push(&mut self, q: usize, mut b: Batch, at: Option<(u64, u64)>) -> usize {
        if let Some((base, last)) = at {
            assert_eq!(last, base + b.values.len() as u64 - 1, "an append returned a range of another length");
            if let Some(prev) = self.parts[q].batches.iter().rev().find_map(|b| b.base) {
                assert!(base > prev, "{}-{}: append at {base}, not after the previous batch at {prev}", PARTS[q].0, PARTS[q].1);
            }
            b.base = Some(base);
        }
        self.parts[q].batches.push(b);
        self.parts[q].batches.len() - 1
    }

    /// One step of the workload. Returns false once a call failed.
    fn step(&mut self) -> bool {
        self.stats.steps += 1;
        let (k, j, q) = (
            self.rng.below(TXN_IDS.len() as u64) as usize,
            self.rng.below(IDEMPOTENT_PRODUCERS as u64) as usize,
            self.rng.below(PARTS.len() as u64) as usize,
        );
        match self.rng.below(20) {
            0..=9 => self.txn_step(k),
            10..=12 => self.idempotent_append(j, q),
            13 => self.idempotent_retry(j, q),
            14..=16 => self.plain_append(q),
            17 => match self.log().sync_all() {
                Ok(()) => {
                    self.all_durable();
                    true
                }
                Err(e) => self.failed("sync_all", &e),
            },
            18 => match self.log().run_retention() {
                Ok(_) => true,
                Err(e) => self.failed("run_retention", &e),
            },
            _ => {
                // A retention run right after a burst to `b`, so that it deletes segments.
                self.plain_append(RETAINED) && self.plain_append(RETAINED)
            }
        }
    }

    fn all_durable(&mut self) {
        for p in &mut self.parts {
            p.durable = p.batches.len();
        }
    }

    fn plain_append(&mut self, q: usize) -> bool {
        let b = self.new_batch(Kind::Plain, 4);
        let acks = [Acks::Zero, Acks::One, Acks::All][self.rng.below(3) as usize];
        let (t, p) = PARTS[q];
        let r = self.log().append(t, Some(p), &records(&b.values), acks);
        match r {
            Ok(at) => {
                let i = self.push(q, b, Some((at.base_offset, at.last_offset)));
                if acks == Acks::All {
                    self.parts[q].durable = i + 1;
                }
                true
            }
            Err(e) => {
                self.push(q, b, None);
                self.failed("append", &e)
            }
        }
    }

    fn idempotent_append(&mut self, j: usize, q: usize) -> bool {
        if let Some(id) = self.pending_retry[j][q] {
            return self.idempotent_resend(j, q, id);
        }
        let seq = self.next_seq[j][q];
        let b = self.new_batch(Kind::Idempotent { producer: j, seq }, 4);
        self.next_seq[j][q] = seq + b.values.len() as i32;
        let acks = if self.rng.below(2) == 0 { Acks::One } else { Acks::All };
        let (t, p) = PARTS[q];
        let fields = ProducerBatch { producer_id: self.pids[j], producer_epoch: 0, base_sequence: seq };
        let r = self.log().append_idempotent(t, Some(p), &records(&b.values), acks, fields);
        match r {
            Ok(at) => {
                let i = self.push(q, b, Some((at.base_offset, at.last_offset)));
                if acks == Acks::All {
                    self.parts[q].durable = i + 1;
                }
                true
            }
            Err(e) => {
                self.pending_retry[j][q] = Some(b.id);
                self.push(q, b, None);
                self.failed("append_idempotent", &e)
            }
        }
    }

    /// Sends again a batch whose append failed: it lands once, whether or not the failed attempt
    /// stored it.
    fn idempotent_resend(&mut self, j: usize, q: usize, id: u64) -> bool {
        let i = self.parts[q].batches.iter().position(|b| b.id == id).expect("the pending batch is in the model");
        let b = self.parts[q].batches[i].clone();
        let Kind::Idempotent { seq, .. } = b.kind else { unreachable!("only idempotent batches are retried") };
        let (t, p) = PARTS[q];
        let fields = ProducerBatch { producer_id: self.pids[j], producer_epoch: 0, base_sequence: seq };
        match self.log().append_idempotent(t, Some(p), &records(&b.values), Acks::All, fields) {
            Ok(at) => {
                assert_eq!(at.last_offset, at.base_offset + b.values.len() as u64 - 1, "a retry returned a range of another length");
                self.parts[q].batches[i].base = Some(at.base_offset);
                self.parts[q].durable = self.parts[q].durable.max(i + 1);
                self.pending_retry[j][q] = None;
                true
            }
            Err(e) => self.failed("idempotent resend", &e),
        }
    }

    /// Resends producer `j`'s last batch to partition `q`, as a client does after a timeout: it
    /// must get the original offsets back and store nothing.
    fn idempotent_retry(&mut self, j: usize, q: usize) -> bool {
        let last = self.parts[q].batches.iter().rev().find(|b| matches!(b.kind, Kind::Idempotent { producer, .. } if producer == j));
        let Some(b) = last.cloned() else { return true };
        let (Kind::Idempotent { seq, .. }, Some(base)) = (b.kind, b.base) else { return true };
        let (t, p) = PARTS[q];
        let log = self.log();
        let leo = log.log_end_offset(t, p).expect("log end offset");
        let fields = ProducerBatch { producer_id: self.pids[j], producer_epoch: 0, base_sequence: seq };
        match log.append_idempotent(t, Some(p), &records(&b.values), Acks::One, fields) {
            Ok(at) => {
                assert_eq!(
                    (at.base_offset, at.last_offset),
                    (base, base + b.values.len() as u64 - 1),
                    "{t}-{p}: a retry got other offsets"
                );
                assert_eq!(log.log_end_offset(t, p).expect("log end offset"), leo, "{t}-{p}: a retry was stored again");
                self.stats.retries_deduplicated += 1;
                true
            }
            Err(e) => self.failed("idempotent retry", &e),
        }
    }

    fn txn_step(&mut self, k: usize) -> bool {
        if self.needs_new_incarnation[k] {
            // After an error the application starts over with a new incarnation, which aborts
            // what the old one left open (or completes a commit it left in doubt).
            let r = self.log().transactional_producer(TXN_IDS[k], TransactionOptions::default().timeout(Duration::from_secs(600)));
            return match r {
                Ok(p) => {
                    self.producers[k] = Some(p);
                    self.needs_new_incarnation[k] = false;
                    true
                }
                Err(e) => self.failed("new incarnation", &e),
            };
        }
        let Some(txn) = self.open[k] else {
            let producer = self.producers[k].as_ref().expect("producer");
            if let Err(e) = producer.begin() {
                self.needs_new_incarnation[k] = true;
                return self.failed("begin", &e);
            }
            self.next_id += 1;
            let id = self.next_id;
            self.txns.insert(id, Txn { fate: Fate::Open, offsets: Vec::new() });
            self.open[k] = Some(id);
            // Every transaction writes to `a`, where retention never hides whether it is visible.
            let q = self.rng.below(3) as usize;
            return self.txn_send(k, id, q);
        };
        match self.rng.below(8) {
            0..=3 => {
                let q = self.rng.below(4) as usize;
                self.txn_send(k, txn, q)
            }
            4 => self.txn_offsets(k, txn),
            5 | 6 => self.txn_commit(k, txn),
            _ => self.txn_abort(k, txn),
        }
    }

    fn txn_send(&mut self, k: usize, txn: u64, q: usize) -> bool {
        let b = self.new_batch(Kind::Transactional(txn), 3);
        let (t, p) = PARTS[q];
        let r = self.producers[k].as_ref().expect("producer").send(t, Some(p), &records(&b.values));
        match r {
            Ok(at) => {
                self.push(q, b, Some((at.base_offset, at.last_offset)));
                true
            }
            Err(e) => {
                self.push(q, b, None);
                self.open[k] = None;
                self.needs_new_incarnation[k] = true;
                self.failed("send", &e)
            }
        }
    }

    fn txn_offsets(&mut self, k: usize, txn: u64) -> bool {
        let q = self.rng.below(4) as usize;
        let offset = self.rng.below(1 << 20);
        let (t, p) = PARTS[q];
        let metadata = format!("txn {txn}");
        let commit = OffsetCommit { topic: t, partition: p, offset, metadata: &metadata };
        match self.producers[k].as_ref().expect("producer").send_offsets_to_transaction(GROUP, &[commit]) {
            Ok(()) => {
                self.txns.get_mut(&txn).expect("txn").offsets.push((q, offset));
                true
            }
            Err(e) => {
                self.open[k] = None;
                self.needs_new_incarnation[k] = true;
                self.failed("send_offsets_to_transaction", &e)
            }
        }
    }

    /// The partitions (indexes) transaction `txn` wrote to, with the index of its last batch there.
    fn txn_parts(&self, txn: u64) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (q, p) in self.parts.iter().enumerate() {
            if let Some(i) = p.batches.iter().rposition(|b| b.kind == Kind::Transactional(txn)) {
                out.push((q, i));
            }
        }
        out
    }

    fn txn_commit(&mut self, k: usize, txn: u64) -> bool {
        self.open[k] = None;
        let t = self.txns.get_mut(&txn).expect("txn");
        t.fate = Fate::InDoubt;
        if !t.offsets.is_empty() {
            self.offset_history.push(txn);
        }
        if self.aim_at_commit && self.rng.below(3) == 0 {
            // This round's power loss: within the commit's dozen or so operations (or just after).
            self.fs.crash_at(self.fs.ops() + 1 + self.rng.below(12));
            self.aim_at_commit = false;
        }
        let before = self.fs.matched();
        let r = self.producers[k].as_ref().expect("producer").commit();
        self.commit_windows.push((before, self.fs.matched()));
        match r {
            Ok(()) => {
                self.txns.get_mut(&txn).expect("txn").fate = Fate::Committed;
                self.stats.committed += 1;
                // Durable: the transaction's data, and everything before it in those partitions.
                for (q, i) in self.txn_parts(txn) {
                    self.parts[q].durable = self.parts[q].durable.max(i + 1);
                }
                // A machine that died inside `commit()` after its sync round never wrote the
                // `CompleteCommit` record: recovery must complete the commit (no workaround needed).
                if WORKAROUND_UNSYNCED_COMMIT_MARKERS && !self.faults && !self.fs.is_dead() {
                    // Make the markers and the `CompleteCommit` record durable.
                    self.unsynced_commit = Some(txn);
                    let mut marked: Vec<(&str, u32)> = self.txn_parts(txn).iter().map(|&(q, _)| PARTS[q]).collect();
                    if !self.txns[&txn].offsets.is_empty() {
                        marked.push((INTERNAL_TOPICS[0], 0));
                    }
                    marked.push((INTERNAL_TOPICS[1], 0));
                    for (t, p) in marked {
                        let r = self.log().log_end_offset(t, p).and_then(|leo| self.log().sync_to(t, p, leo));
                        if let Err(e) = r {
                            return self.failed("sync after a commit", &e);
                        }
                    }
                    self.unsynced_commit = None;
                    for (q, _) in self.txn_parts(txn) {
                        self.parts[q].durable = self.parts[q].batches.len();
                    }
                }
                true
            }
            Err(e) => {
                self.needs_new_incarnation[k] = true;
                self.failed("commit", &e)
            }
        }
    }

    fn txn_abort(&mut self, k: usize, txn: u64) -> bool {
        self.open[k] = None;
        self.txns.get_mut(&txn).expect("txn").fate = Fate::Aborted;
        self.stats.aborted += 1;
        match self.producers[k].as_ref().expect("producer").abort() {
            Ok(()) => true,
            Err(e) => {
                self.needs_new_incarnation[k] = true;
                self.failed("abort", &e)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checking a reopened log against the model.

/// Reads `[from, to)` of a partition at an isolation level: (offset, value) of every record.
fn read(log: &Log, t: &str, p: u32, from: u64, to: u64, iso: IsolationLevel, when: &str) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < to {
        let f = log.fetch_with(t, p, offset, 1 << 16, iso).unwrap_or_else(|e| panic!("{when}: {t}-{p}: {iso:?} fetch at {offset}: {e}"));
        for r in f.records() {
            let r = r.unwrap_or_else(|e| panic!("{when}: {t}-{p}: a torn record at or after {offset} ({iso:?}): {e}"));
            assert!(r.offset >= offset && r.offset < to, "{when}: {t}-{p}: record at {} outside [{offset}, {to})", r.offset);
            assert!(out.last().is_none_or(|(o, _)| *o < r.offset), "{when}: {t}-{p}: offsets not increasing");
            out.push((r.offset, r.value.map(<[u8]>::to_vec).unwrap_or_default()));
        }
        assert!(f.next_offset() > offset, "{when}: {t}-{p}: {iso:?} fetch at {offset} made no progress (up to {to})");
        offset = f.next_offset();
    }
    out
}

/// What became of a model batch after a reopen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    /// Below the log start: retention deleted it.
    Retained,
    /// In the log at this base offset, visible to read_committed or not.
    Present { base: u64, visible: bool },
    /// Not in the log.
    Missing,
}

/// Checks one partition against its model and says what became of each of its batches: whole
/// batches at the offsets their appends returned, no record nobody wrote, every durable batch
/// present (with `all_acknowledged`, every batch whose append returned `Ok`), no acknowledged
/// batch missing below one present (a partition loses only a suffix), every batch wholly visible
/// or wholly hidden under read_committed, plain and idempotent batches visible, LSO = HW.
fn observe(log: &Log, q: usize, m: &PartModel, all_acknowledged: bool, stats: &mut Stats, when: &str) -> Vec<Seen> {
    let (t, p) = PARTS[q];
    let start = log.log_start_offset(t, p).expect("log start");
    let hw = log.high_watermark(t, p).expect("high watermark");
    assert_eq!(hw, log.log_end_offset(t, p).expect("log end"), "{when}: {t}-{p}: high watermark != log end after recovery");
    assert_eq!(log.last_stable_offset(t, p).expect("lso"), hw, "{when}: {t}-{p}: a transaction hangs after recovery (LSO < HW)");
    let ru = read(log, t, p, start, hw, IsolationLevel::ReadUncommitted, when);
    let rc = read(log, t, p, start, hw, IsolationLevel::ReadCommitted, when);
    let ru_map: BTreeMap<u64, &Vec<u8>> = ru.iter().map(|(o, v)| (*o, v)).collect();
    for (o, v) in &rc {
        assert_eq!(ru_map.get(o), Some(&v), "{when}: {t}-{p}@{o}: read_committed shows a record read_uncommitted does not");
    }
    let visible: BTreeSet<u64> = rc.iter().map(|(o, _)| *o).collect();

    // Group the records into batches: each batch whole, its records at consecutive offsets.
    let mut found: BTreeMap<u64, u64> = BTreeMap::new(); // batch id -> base
    let mut expect_next: Option<(u64, usize, usize, u64)> = None; // (id, next index, n, next offset)
    for (o, v) in &ru {
        let (id, i, n) = parse(v).unwrap_or_else(|| panic!("{when}: {t}-{p}@{o}: a record nobody wrote: {:?}", String::from_utf8_lossy(v)));
        match expect_next {
            Some((eid, ei, en, eo)) => {
                assert!(
                    id == eid && i == ei && n == en && *o == eo,
                    "{when}: {t}-{p}@{o}: batch {eid} is torn (record {i} of {n} of {id} next)"
                );
            }
            None => {
                assert_eq!(i, 0, "{when}: {t}-{p}@{o}: batch {id} starts at its record {i}");
                assert!(found.insert(id, *o).is_none(), "{when}: {t}-{p}@{o}: batch {id} is in the log twice");
            }
        }
        expect_next = (i + 1 < n).then_some((id, i + 1, n, o + 1));
        stats.records_checked += 1;
    }
    assert!(expect_next.is_none(), "{when}: {t}-{p}: the last batch is torn");

    let mut seen = Vec::with_capacity(m.batches.len());
    for (i, b) in m.batches.iter().enumerate() {
        let Some(base) = found.remove(&b.id) else {
            let retained = b.base.is_some_and(|base| base + (b.values.len() as u64) <= start);
            assert!(!retained || q == RETAINED, "{when}: {t}-{p}: log start {start} moved without retention");
            if !retained && let Some(base) = b.base {
                assert!(i >= m.durable, "{when}: {t}-{p}: durable batch {} (at {base}) lost", b.id);
                assert!(!all_acknowledged, "{when}: {t}-{p}: acknowledged batch {} (at {base}) lost", b.id);
            }
            stats.retained += u64::from(retained);
            seen.push(if retained { Seen::Retained } else { Seen::Missing });
            continue;
        };
        if let Some(want) = b.base {
            assert_eq!(base, want, "{when}: {t}-{p}: batch {} at {base}, acknowledged at {want}", b.id);
        }
        for (k, v) in b.values.iter().enumerate() {
            assert_eq!(ru_map.get(&(base + k as u64)), Some(&v), "{when}: {t}-{p}: batch {} record {k} has other bytes", b.id);
        }
        let shown = (0..b.values.len() as u64).filter(|k| visible.contains(&(base + k))).count();
        assert!(shown == 0 || shown == b.values.len(), "{when}: {t}-{p}: batch {} partly visible to read_committed", b.id);
        let vis = shown > 0;
        if !matches!(b.kind, Kind::Transactional(_)) {
            assert!(vis, "{when}: {t}-{p}: {:?} batch {} at {base} hidden from read_committed", b.kind, b.id);
        }
        seen.push(Seen::Present { base, visible: vis });
    }
    assert!(found.is_empty(), "{when}: {t}-{p}: batches nobody wrote, or written before a loss: {found:?}");
    // A partition loses a suffix: no acknowledged batch is missing below one that is present.
    let lowest_missing = m.batches.iter().zip(&seen).filter(|(_, s)| **s == Seen::Missing).filter_map(|(b, _)| b.base).min();
    if let Some(missing) = lowest_missing {
        for s in &seen {
            if let Seen::Present { base, .. } = s {
                assert!(*base < missing, "{when}: {t}-{p}: the acknowledged batch at {missing} is missing below one at {base}");
            }
        }
    }
    seen
}

/// Whether a transaction's data is visible, checked against its fate: `Some(true)` wholly
/// visible, `Some(false)` wholly absent (`None` if none of its batches can be seen any more).
fn txn_visibility(world: &World, obs: &[Vec<Seen>], txn: u64, fate: Fate, when: &str) -> Option<bool> {
    let mut seen = Vec::new();
    let mut missing = Vec::new();
    for (q, m) in world.parts.iter().enumerate() {
        for (b, s) in m.batches.iter().zip(&obs[q]) {
            if b.kind != Kind::Transactional(txn) {
                continue;
            }
            match *s {
                Seen::Present { visible, .. } => seen.push((q, b.id, visible)),
                Seen::Missing => missing.push((q, b.id)),
                Seen::Retained => {}
            }
        }
    }
    let any = seen.iter().any(|s| s.2);
    let all = seen.iter().all(|s| s.2) && missing.is_empty();
    let desc = || format!("{when}: transaction {txn} ({fate:?}): visible {seen:?}, lost {missing:?}");
    match fate {
        Fate::Unchecked => {
            return if all && any {
                Some(true)
            } else if !any {
                Some(false)
            } else {
                None
            };
        }
        Fate::Committed => assert!(all, "{}: a committed transaction is not wholly visible", desc()),
        Fate::Open | Fate::Aborted => assert!(!any, "{}: an aborted or unfinished transaction is visible", desc()),
        Fate::InDoubt => assert!(all || !any, "{}: visible in part", desc()),
    }
    if seen.is_empty() && missing.is_empty() { None } else { Some(any) }
}

impl World {
    /// Checks the reopened log against the model, then makes the model what survived. Returns the
    /// idempotent batches that were lost, per producer and partition, for the retries.
    fn check_and_adopt(&mut self, when: &str) -> BTreeMap<(usize, usize), Vec<Batch>> {
        let log = self.log.take().expect("the log is open");
        for d in log.list_transactions() {
            assert!(
                !matches!(d.state, TransactionState::Ongoing | TransactionState::PrepareCommit | TransactionState::PrepareAbort),
                "{when}: transaction {} left {:?} after recovery",
                d.transactional_id,
                d.state
            );
            assert_eq!(d.start_ms, None, "{when}: transaction {} still has a start time", d.transactional_id);
        }
        for t in INTERNAL_TOPICS {
            if let Ok(hw) = log.high_watermark(t, 0) {
                assert_eq!(log.last_stable_offset(t, 0).expect("internal lso"), hw, "{when}: {t}: a transaction hangs");
            }
        }
        let obs: Vec<Vec<Seen>> = (0..PARTS.len()).map(|q| observe(&log, q, &self.parts[q], self.faults, &mut self.stats, when)).collect();

        // Transactions: each whole, with its fate; resolve those in doubt.
        let mut resolved: BTreeMap<u64, Option<bool>> = BTreeMap::new();
        for (&id, t) in &self.txns {
            resolved.insert(id, txn_visibility(self, &obs, id, t.fate, when));
        }
        // Group offsets: the last visible transaction's, else what was there at the last reopen.
        // A failed commit that turned out visible was completed later (by a new incarnation or
        // by recovery), so its offsets may also have landed after those of later commits.
        for (q, &(t, p)) in PARTS.iter().enumerate() {
            let mut last = self.group.get(&q).cloned();
            let mut floating = Vec::new();
            for txn in &self.offset_history {
                let Some(&(_, offset)) = self.txns[txn].offsets.iter().rev().find(|(oq, _)| *oq == q) else { continue };
                let v = Some((offset, format!("txn {txn}")));
                match (self.txns[txn].fate, resolved[txn]) {
                    (Fate::Unchecked, _) => floating.push(v),
                    (Fate::InDoubt, Some(true)) => {
                        floating.push(v.clone());
                        last = v;
                    }
                    (_, Some(true)) => last = v,
                    _ => {}
                }
            }
            let mut allowed = vec![last];
            allowed.extend(floating);
            let got = log.committed(GROUP, t, p).expect("committed").map(|c| (c.offset, c.metadata));
            assert!(allowed.contains(&got), "{when}: {GROUP} {t}-{p}: committed {got:?}, expected one of {allowed:?}");
            self.stats.offsets_checked += 1;
            match got {
                Some(g) => self.group.insert(q, g),
                None => self.group.remove(&q),
            };
        }
        self.offset_history.clear();
        for (id, t) in &mut self.txns {
            t.fate = match (t.fate, resolved[id]) {
                (Fate::Unchecked, _) => Fate::Unchecked,
                (Fate::InDoubt, Some(true)) => {
                    self.stats.in_doubt_visible += 1;
                    Fate::Committed
                }
                (Fate::InDoubt, _) => {
                    self.stats.in_doubt_absent += 1;
                    Fate::Aborted
                }
                (Fate::Open, _) => Fate::Aborted,
                (f, _) => f,
            };
        }

        // Adopt what survived: the present batches (those whose appends failed with their
        // offsets), all durable now; keep the lost idempotent ones for the retries.
        let mut lost: BTreeMap<(usize, usize), Vec<Batch>> = BTreeMap::new();
        for (q, seen) in obs.iter().enumerate() {
            let m = &mut self.parts[q];
            let mut kept = Vec::new();
            for (mut b, s) in std::mem::take(&mut m.batches).into_iter().zip(seen) {
                match *s {
                    Seen::Present { base, .. } => {
                        b.base = Some(base);
                        kept.push(b);
                    }
                    Seen::Missing => {
                        if let Kind::Idempotent { producer, .. } = b.kind {
                            lost.entry((producer, q)).or_default().push(b);
                        }
                    }
                    Seen::Retained => {}
                }
            }
            kept.sort_by_key(|b| b.base);
            m.batches = kept;
            m.durable = m.batches.len();
        }
        self.pending_retry = vec![[None; 4]; IDEMPOTENT_PRODUCERS];
        self.log = Some(log);
        lost
    }

    /// Retries, as a producer would after a reopen, the last two surviving batches of each
    /// idempotent producer in each partition (deduplicated: their original offsets, nothing
    /// stored) and then every lost one (stored once, at the log end).
    fn retry_idempotent(&mut self, mut lost: BTreeMap<(usize, usize), Vec<Batch>>, when: &str) {
        for j in 0..IDEMPOTENT_PRODUCERS {
            for (q, &(t, p)) in PARTS.iter().enumerate() {
                let mine: Vec<Batch> = self.parts[q]
                    .batches
                    .iter()
                    .filter(|b| matches!(b.kind, Kind::Idempotent { producer, .. } if producer == j))
                    .cloned()
                    .collect();
                let mut again = lost.remove(&(j, q)).unwrap_or_default();
                again.sort_by_key(|b| match b.kind {
                    Kind::Idempotent { seq, .. } => seq,
                    _ => unreachable!("only idempotent batches are kept"),
                });
                for b in &mine[mine.len().saturating_sub(2)..] {
                    let (Kind::Idempotent { seq, .. }, Some(base)) = (b.kind, b.base) else { unreachable!("adopted batches have offsets") };
                    let leo = self.log().log_end_offset(t, p).expect("log end");
                    let fields = ProducerBatch { producer_id: self.pids[j], producer_epoch: 0, base_sequence: seq };
                    let at = self
                        .log()
                        .append_idempotent(t, Some(p), &records(&b.values), Acks::All, fields)
                        .unwrap_or_else(|e| panic!("{when}: {t}-{p}: retrying surviving batch {} (seq {seq}) of producer {j}: {e}", b.id));
                    assert_eq!(
                        (at.base_offset, at.last_offset),
                        (base, base + b.values.len() as u64 - 1),
                        "{when}: {t}-{p}: the retry of surviving batch {} got other offsets",
                        b.id
                    );
                    assert_eq!(
                        self.log().log_end_offset(t, p).expect("log end"),
                        leo,
                        "{when}: {t}-{p}: a surviving batch was stored twice"
                    );
                    self.stats.retries_deduplicated += 1;
                }
                for mut b in again {
                    let Kind::Idempotent { seq, .. } = b.kind else { unreachable!("only idempotent batches are kept") };
                    let leo = self.log().log_end_offset(t, p).expect("log end");
                    let fields = ProducerBatch { producer_id: self.pids[j], producer_epoch: 0, base_sequence: seq };
                    let at = self
                        .log()
                        .append_idempotent(t, Some(p), &records(&b.values), Acks::All, fields)
                        .unwrap_or_else(|e| panic!("{when}: {t}-{p}: retrying lost batch {} (seq {seq}) of producer {j}: {e}", b.id));
                    assert_eq!(at.base_offset, leo, "{when}: {t}-{p}: the retry of lost batch {} did not land at the log end", b.id);
                    b.base = None;
                    self.push(q, b, Some((at.base_offset, at.last_offset)));
                    self.parts[q].durable = self.parts[q].batches.len();
                    self.stats.retries_stored += 1;
                }
            }
        }
    }
}

fn run_power_loss_seed(seed: u64, stats: &mut Stats) {
    let mut w = World::new(seed, false);
    w.open(&format!("seed {seed}: first open"));
    w.start_producers("first open");
    for round in 0..4 {
        // Half the rounds die at a random operation, half within a commit.
        w.aim_at_commit = w.rng.below(2) == 0;
        if !w.aim_at_commit {
            let budget = w.fs.ops() + 1 + w.rng.below(700);
            w.fs.crash_at(budget);
        }
        let mut steps = 0;
        while steps < 250 && w.step() {
            steps += 1;
        }
        if let Some(txn) = w.unsynced_commit.take() {
            w.txns.get_mut(&txn).expect("txn").fate = Fate::Unchecked;
            w.stats.unchecked += 1;
        }
        w.crash();
        w.fs.power_loss();
        w.stats.crashes += 1;
        let when = format!("seed {seed} round {round}");
        w.open(&when);
        let lost = w.check_and_adopt(&when);
        w.retry_idempotent(lost, &when);
        w.start_producers(&when);
    }
    w.crash();
    let s = &w.stats;
    for (a, b) in [
        (&mut stats.crashes, s.crashes),
        (&mut stats.steps, s.steps),
        (&mut stats.records_checked, s.records_checked),
        (&mut stats.committed, s.committed),
        (&mut stats.aborted, s.aborted),
        (&mut stats.in_doubt_visible, s.in_doubt_visible),
        (&mut stats.in_doubt_absent, s.in_doubt_absent),
        (&mut stats.unchecked, s.unchecked),
        (&mut stats.retries_deduplicated, s.retries_deduplicated),
        (&mut stats.retries_stored, s.retries_stored),
        (&mut stats.offsets_checked, s.offsets_checked),
        (&mut stats.retained, s.retained),
        (&mut stats.errors, s.errors),
    ] {
        *a += b;
    }
}

#[test]
fn power_loss_keeps_transactions_atomic_and_acknowledged_writes_durable() {
    let mut stats = Stats::default();
    for seed in 1..=12 * scale() as u64 {
        run_power_loss_seed(seed, &mut stats);
    }
    let s = &stats;
    eprintln!(
        "txn power loss: {} crashes, {} steps, {} records checked, {} commits and {} aborts acknowledged, in doubt: {} visible \
         {} absent, {} unchecked (workaround), idempotent retries: {} deduplicated {} stored, {} group offsets checked, {} batches \
         deleted by retention",
        s.crashes,
        s.steps,
        s.records_checked,
        s.committed,
        s.aborted,
        s.in_doubt_visible,
        s.in_doubt_absent,
        s.unchecked,
        s.retries_deduplicated,
        s.retries_stored,
        s.offsets_checked,
        s.retained
    );
    assert!(s.committed > 50 && s.aborted > 10, "the workload ended too few transactions: {} commits, {} aborts", s.committed, s.aborted);
    assert!(s.in_doubt_visible + s.in_doubt_absent > 0, "no commit was ever cut short");
    assert!(s.retries_deduplicated > 50, "too few idempotent retries: {}", s.retries_deduplicated);
    assert!(s.retained > 0, "retention never deleted a segment");
}

// ---------------------------------------------------------------------------------------------
// I/O errors during commits.

/// Steps of the fault-injection workload (about ten commits).
const FAULT_STEPS: usize = 80;
/// The fault-injection workload's seed (`RUNNEL_TEST_SCALE` adds the following ones).
const FAULT_SEED: u64 = 11;

/// Runs the fault-injection workload with `fault` planned once the log is set up, crashes the
/// process, reopens on a healthy file system and checks everything; then the log must take a new
/// incarnation, appends and commits again. Returns the workload's commit windows (matching
/// operations before and after each commit) and the number of faults injected.
fn run_with_fault(seed: u64, fault: Fault, stats: &mut Stats) -> (Vec<(u64, u64)>, u64) {
    let when = format!("seed {seed}, after {fault:?}");
    let mut w = World::new(seed, true);
    w.open(&when);
    w.start_producers(&when);
    w.fs.inject(fault);
    for _ in 0..FAULT_STEPS {
        w.step();
    }
    let injected = w.fs.faults_injected();
    let windows = std::mem::take(&mut w.commit_windows);
    // The process crashes: the page cache survives, so every acknowledged append must too.
    w.crash();
    w.fs.clear_faults();
    w.open(&when);
    let lost = w.check_and_adopt(&when);
    w.retry_idempotent(lost, &when);
    w.start_producers(&when);
    // A healthy log again: no call may fail from here on.
    w.faults = false;
    w.tolerate_fencing = WORKAROUND_EPOCHS_NOT_PERSISTED;
    let committed = w.stats.committed;
    let mut steps = 0;
    while w.stats.committed < committed + 2 {
        assert!(w.step() || w.tolerate_fencing, "{when}: the reopened log refused work");
        steps += 1;
        assert!(steps < 500, "{when}: no commit in 500 steps");
    }
    let after = format!("{when}, then healthy");
    w.crash();
    w.open(&after);
    w.faults = true;
    w.check_and_adopt(&after);
    w.crash();
    stats.crashes += 2;
    for (a, b) in [
        (&mut stats.steps, w.stats.steps),
        (&mut stats.records_checked, w.stats.records_checked),
        (&mut stats.committed, w.stats.committed),
        (&mut stats.aborted, w.stats.aborted),
        (&mut stats.in_doubt_visible, w.stats.in_doubt_visible),
        (&mut stats.in_doubt_absent, w.stats.in_doubt_absent),
        (&mut stats.retries_deduplicated, w.stats.retries_deduplicated),
        (&mut stats.retries_stored, w.stats.retries_stored),
        (&mut stats.fenced, w.stats.fenced),
        (&mut stats.errors, w.stats.errors),
    ] {
        *a += b;
    }
    (windows, injected)
}

#[test]
fn io_errors_during_commit_leave_every_transaction_whole() {
    let mut stats = Stats::default();
    let mut runs = 0u64;
    let mut injected = 0u64;
    for seed in FAULT_SEED..FAULT_SEED + scale() as u64 {
        for op in [Op::Sync, Op::Write] {
            // Count the operations of this kind, and which of them happen inside a commit.
            let (windows, _) = run_with_fault(seed, Fault { ops: vec![op], nth: u64::MAX, errno: 5, persistent: false }, &mut stats);
            let inside: Vec<u64> = windows.iter().flat_map(|&(a, b)| a..b).collect();
            assert!(inside.len() > 5, "the workload's commits perform too few {op:?} operations: {windows:?}");
            for &nth in inside.iter().step_by((inside.len() / 20).max(1)) {
                for errno in [5, 28] {
                    for persistent in [false, true] {
                        let (_, n) = run_with_fault(seed, Fault { ops: vec![op], nth, errno, persistent }, &mut stats);
                        assert!(n > 0, "no fault injected at {op:?} {nth}");
                        runs += 1;
                        injected += n;
                    }
                }
            }
        }
    }
    let s = &stats;
    eprintln!(
        "txn faults: {runs} runs, {injected} faults injected, {} errors seen; {} commits and {} aborts acknowledged, failed commits: \
         {} visible {} absent; {} records checked; {} calls fenced after a reopen (workaround)",
        s.errors, s.committed, s.aborted, s.in_doubt_visible, s.in_doubt_absent, s.records_checked, s.fenced
    );
    assert!(s.in_doubt_visible > 0 && s.in_doubt_absent > 0, "failed commits never went both ways");
}

// ---------------------------------------------------------------------------------------------
// Engine bugs found by the harness above, each reproduced on its own.

/// Values of a partition under read_committed, from its log start.
fn committed_values(log: &Log, t: &str, p: u32) -> Vec<String> {
    let start = log.log_start_offset(t, p).expect("log start");
    let lso = log.last_stable_offset(t, p).expect("lso");
    read(log, t, p, start, lso, IsolationLevel::ReadCommitted, "committed_values")
        .into_iter()
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
        .collect()
}

/// A data directory on a fresh [`SimFs`] with topic `a` (two partitions, small segments).
fn small_world(seed: u64) -> (SimFs, Log) {
    let fs = SimFs::new(seed, 16 << 20);
    let log = Log::open_with_vfs(DIR, options(), fs.vfs()).expect("open");
    log.create_topic("a", 2, topic_config(false)).expect("create topic");
    (fs, log)
}

fn power_cycle(fs: &SimFs, log: Log) -> Log {
    log.abandon();
    fs.power_loss();
    Log::open_with_vfs(DIR, options(), fs.vfs()).expect("reopen after power loss")
}

/// `commit()` returns once the data and the `PrepareCommit` record are synced; the commit markers
/// and the `CompleteCommit` record are then written without a sync (`Coordinator::finish`). A
/// power loss can keep the `CompleteCommit` record and lose a marker. Regression: recovery used to
/// see no decision to complete, find the transaction open in that partition, and abort it, losing
/// (or tearing) an acknowledged commit. Every record of the id now lists such partitions as
/// committed until their markers are synced (FORMAT.md, `__transaction_state`).
#[test]
fn commit_markers_are_durable_before_the_coordinator_forgets_the_commit() {
    let mut lost = Vec::new();
    for seed in 1..=40 {
        let (fs, log) = small_world(seed);
        let producer = log.transactional_producer("app", TransactionOptions::default()).expect("producer");
        producer.begin().expect("begin");
        producer.send("a", Some(0), &[Record::new(b"x0")]).expect("send");
        producer.send("a", Some(1), &[Record::new(b"x1")]).expect("send");
        producer.commit().expect("commit");
        let log = power_cycle(&fs, log);
        drop(producer);
        let got = (committed_values(&log, "a", 0), committed_values(&log, "a", 1));
        if got != (vec!["x0".to_string()], vec!["x1".to_string()]) {
            lost.push((seed, got));
        }
        log.abandon();
    }
    assert!(lost.is_empty(), "acknowledged commits not visible after power loss (seed, [a-0, a-1] read_committed): {lost:?}");
}

/// After a commit, the coordinator's durable record for the transactional id is still the
/// `PrepareCommit` (the `CompleteCommit` that replaces it is not synced). If the producer then
/// sends in a new transaction and power is lost, recovery completes that stale `PrepareCommit`
/// again (`Coordinator::recover`). Regression: its commit markers used to land after the new
/// transaction's data and commit it in the partitions the two shared, while the others aborted it,
/// so a transaction that never committed became visible in part. A marker is now written only
/// where the producer's open transaction began below the recorded end offset.
#[test]
fn recovery_does_not_commit_the_next_transaction_with_a_stale_prepare_commit() {
    let mut wrong = Vec::new();
    for seed in 1..=40 {
        let (fs, log) = small_world(seed);
        let producer = log.transactional_producer("app", TransactionOptions::default()).expect("producer");
        producer.begin().expect("begin");
        producer.send("a", Some(0), &[Record::new(b"t1")]).expect("send");
        producer.commit().expect("commit");
        // The first transaction's marker is durable: only the coordinator's record is not.
        log.sync_to("a", 0, log.log_end_offset("a", 0).expect("leo")).expect("sync a-0");
        producer.begin().expect("begin");
        producer.send("a", Some(0), &[Record::new(b"t2-0")]).expect("send");
        producer.send("a", Some(1), &[Record::new(b"t2-1")]).expect("send");
        for p in 0..2 {
            log.sync_to("a", p, log.log_end_offset("a", p).expect("leo")).expect("sync");
        }
        // Power is lost with the second transaction open: it must be aborted everywhere.
        let log = power_cycle(&fs, log);
        drop(producer);
        let got = (committed_values(&log, "a", 0), committed_values(&log, "a", 1));
        if got != (vec!["t1".to_string()], vec![]) {
            wrong.push((seed, got));
        }
        log.abandon();
    }
    assert!(wrong.is_empty(), "an unfinished transaction became visible (seed, [a-0, a-1] read_committed): {wrong:?}");
}

/// When a new incarnation cannot finish aborting what the old one left open (here a partition is
/// poisoned by a failed fsync), `Coordinator::init` has already raised the epoch in memory and
/// written it to the other partitions (abort markers, and `ProducerStates::bump_epoch`, which the
/// next producer-state snapshot records), but never persisted it in `__transaction_state`. Each
/// retry raises it again. Regression: after a reopen the coordinator used to hand out an epoch
/// below the one the partitions had seen, and every send of the new incarnation failed with
/// `ProducerFenced`. Recovery now raises each id's epoch to the highest any partition has seen.
#[test]
fn a_new_incarnation_after_a_reopen_is_not_fenced_by_epochs_never_persisted() {
    let (fs, log) = small_world(1);
    let producer = log.transactional_producer("app", TransactionOptions::default()).expect("producer");
    producer.begin().expect("begin");
    producer.send("a", Some(0), &[Record::new(b"x")]).expect("send");
    producer.send("a", Some(1), &[Record::new(b"y")]).expect("send");
    // An fsync of a-1 fails: a-1 refuses writes until the log is reopened.
    fs.inject(Fault { ops: vec![Op::Sync], nth: 0, errno: 5, persistent: false });
    assert!(log.sync_to("a", 1, log.log_end_offset("a", 1).expect("leo")).is_err(), "the injected fsync failure");
    fs.clear_faults();
    // New incarnations cannot abort the open transaction in a-1; each attempt fails.
    for _ in 0..3 {
        assert!(log.transactional_producer("app", TransactionOptions::default()).is_err(), "a-1 is poisoned");
    }
    drop(producer);
    // a-0 rolls, and its producer-state snapshot records the epoch of the last attempt.
    let big = [b'v'; 900];
    for _ in 0..3 {
        log.append("a", Some(0), &[Record::new(&big)], Acks::All).expect("append to a-0");
    }
    // The process crashes; the directory reopens on a healthy disk.
    log.abandon();
    let log = Log::open_with_vfs(DIR, options(), fs.vfs()).expect("reopen");
    let producer = log.transactional_producer("app", TransactionOptions::default()).expect("a new incarnation");
    producer.begin().expect("begin");
    let sent = producer.send("a", Some(0), &[Record::new(b"z")]);
    assert!(sent.is_ok(), "the new incarnation (epoch {}) cannot send: {sent:?}", producer.epoch());
    producer.commit().expect("commit");
    assert_eq!(committed_values(&log, "a", 0), vec!["v".repeat(900), "v".repeat(900), "v".repeat(900), "z".to_string()]);
    drop(producer);
    log.abandon();
}
