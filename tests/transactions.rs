//! Transactions: a transactional producer's records in any partitions, and the group offsets it
//! sends, become visible to read_committed readers together when it commits, and never when it
//! aborts, is fenced, times out, is dropped, or the process dies first.
//!
//! Most tests drive the log and a model side by side. The model knows every record (offset, value,
//! the transaction that wrote it), every marker (offset, producer, commit or abort) and every
//! aborted transaction as the log must report it. [`Model::check`] then compares, for each
//! partition: the whole log read uncommitted, batch by batch (every record at its offset, every
//! marker where the model has it) and through `Fetched::records` (markers never returned);
//! read_committed chains from the log start and from random offsets with several `max_bytes`
//! (exactly the committed and plain records, in offset order, each chain ending at the last stable
//! offset, and `Fetched::aborted_transactions` of every fetch exactly the aborted transactions
//! overlapping it); the last stable offset; and the committed group offsets. A single thread drives
//! each such log, so every marker's offset is the log end offset when its transaction ends; the
//! markers recovery writes are matched to the transactions the model has open.
//!
//! - "Atomicity" (the acceptance test): three transactional ids over 3 topics and 10
//!   partitions (`high.watermark` durable and written, one topic rolling every KiB), each
//!   transaction also sending group offsets, committed, aborted, fenced, dropped and aborted by an
//!   operator at random, among plain and idempotent appends, with the log reopened at random
//!   (clean, crash, marker removed). A commit that returns has synced every partition it wrote.
//! - "Fencing" (acceptance): a second producer with the same transactional id aborts the first
//!   one's transaction and every call of the first fails with `ProducerFenced`.
//! - The last stable offset (both high-watermark modes), aborted transactions across segment rolls
//!   and retention (a transaction straddling the new log start), timeouts (the background thread),
//!   `describe_transaction`/`list_transactions`/`abort_transaction`, drop, close, calls out of
//!   turn, offsets-only transactions, a topic deleted under a transaction, snapshots of the two
//!   internal topics with transactions open, and concurrent transactions with readers following
//!   (whatever a reader saw is a prefix of the final committed log).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Rng, TestResult, config, make_unclean, open, partition_dir, read_all, scale, small_segments};
use runnel::format::txn::{MarkerType, decode_marker_key};
use runnel::{
    AbortedTxn, Acks, AppendResult, Error, IdempotentProducer, IsolationLevel, Log, LogOptions, OffsetCommit, Record, TopicConfig,
    TransactionOptions, TransactionState, TransactionalProducer,
};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const GROUP: &str = "g";

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

fn reopen(log: Log, dir: &Path, how: Reopen) -> BoxResult<Log> {
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

fn records(values: &[String]) -> Vec<Record<'_>> {
    values.iter().map(|v| Record::new(v.as_bytes())).collect()
}

fn rec_value(r: &common::Rec) -> String {
    String::from_utf8_lossy(r.value.as_deref().unwrap_or(b"<null>")).into_owned()
}

fn value_of(r: &runnel::RecordView<'_>) -> String {
    String::from_utf8_lossy(r.value.unwrap_or(b"<null>")).into_owned()
}

/// Values read from the log start at an isolation level, chaining fetches until an empty one.
fn read_values(log: &Log, topic: &str, p: u32, isolation: IsolationLevel) -> BoxResult<Vec<String>> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset(topic, p)?;
    loop {
        let f = log.fetch_with(topic, p, offset, 1 << 20, isolation)?;
        if f.is_empty() {
            return Ok(out);
        }
        for r in f.records() {
            out.push(value_of(&r?));
        }
        offset = f.next_offset();
    }
}

fn committed_values(log: &Log, topic: &str, p: u32) -> BoxResult<Vec<String>> {
    read_values(log, topic, p, IsolationLevel::ReadCommitted)
}

fn uncommitted_values(log: &Log, topic: &str, p: u32) -> BoxResult<Vec<String>> {
    read_values(log, topic, p, IsolationLevel::ReadUncommitted)
}

/// Data records (offset, value) and markers (offset, producer id, type) from `from` to the high
/// watermark, read batch by batch.
type Scan = (Vec<(u64, String)>, Vec<(u64, i64, MarkerType)>);

fn scan(log: &Log, topic: &str, p: u32, from: u64) -> BoxResult<Scan> {
    let (mut data, mut markers) = (Vec::new(), Vec::new());
    let mut offset = from;
    let hw = log.high_watermark(topic, p)?;
    while offset < hw {
        let f = log.fetch(topic, p, offset, 64 << 10)?;
        assert!(f.next_offset() > offset, "{topic}-{p}: no progress at {offset}");
        for b in f.batches() {
            let b = b?;
            let h = *b.header();
            if h.is_control() {
                assert_eq!(h.record_count, 1, "{topic}-{p}: a marker batch holds one record");
                let r = b.records().next().ok_or("an empty marker batch")?.map_err(|e| e.to_string())?;
                let ty = r.key.and_then(decode_marker_key).ok_or("a marker with an unreadable key")?;
                markers.push((h.base_offset, h.producer_id, ty));
            } else {
                for r in b.records() {
                    let r = r.map_err(|e| e.to_string())?;
                    data.push((r.offset, value_of(&r)));
                }
            }
        }
        offset = f.next_offset();
    }
    Ok((data, markers))
}

fn assert_fenced<T: std::fmt::Debug>(r: runnel::Result<T>, p: &TransactionalProducer, current: i16, what: &str) {
    let (pid, epoch) = (p.producer_id(), p.epoch());
    assert!(
        matches!(&r, Err(Error::ProducerFenced { producer_id, epoch: e, current_epoch })
            if *producer_id == pid && *e == epoch && *current_epoch == current),
        "{what}: expected ProducerFenced (producer {pid}, epoch {epoch}, current {current}), got {r:?}"
    );
}

fn assert_invalid_state<T: std::fmt::Debug>(r: runnel::Result<T>, what: &str) {
    assert!(matches!(&r, Err(Error::InvalidTransactionState(_))), "{what}: {r:?}");
}

/// Polls `cond` every 5 ms until it holds, failing after `limit`.
fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> BoxResult<bool>) -> TestResult {
    let deadline = Instant::now() + limit;
    while !cond()? {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Open,
    Committed,
    Aborted,
}

/// One transaction as the model knows it.
struct Txn {
    pid: i64,
    outcome: Outcome,
    /// Offset of its first record in each partition (by index) it wrote to.
    first: BTreeMap<usize, u64>,
    /// Partitions whose marker for it is written.
    ended: BTreeSet<usize>,
    /// Whether it sent group offsets (one per partition of the model, offset = its number).
    sent_offsets: bool,
}

/// One partition as the model knows it.
#[derive(Default)]
struct Part {
    /// Every data record: offset, value, and the transaction that wrote it (`None`: not transactional).
    records: Vec<(u64, String, Option<usize>)>,
    /// Every marker: offset, producer id, type.
    markers: Vec<(u64, i64, MarkerType)>,
    /// Aborted transactions as the log reports them, in marker order.
    aborted: Vec<AbortedTxn>,
    /// The log end offset.
    leo: u64,
}

struct Model {
    partitions: Vec<(String, u32)>,
    parts: Vec<Part>,
    txns: Vec<Txn>,
    /// Committed offsets of group [`GROUP`] by partition index: (offset, metadata).
    group: BTreeMap<usize, (u64, String)>,
    /// Compare reported aborted transactions without their `last_stable_offset` (after a rebuild
    /// from a log whose start retention cut, it is computed from the first offsets left).
    loose_aborted: bool,
}

impl Model {
    fn new(partitions: &[(&str, u32)]) -> Model {
        Model {
            partitions: partitions.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            parts: partitions.iter().map(|_| Part::default()).collect(),
            txns: Vec::new(),
            group: BTreeMap::new(),
            loose_aborted: false,
        }
    }

    fn tp(&self, pi: usize) -> (&str, u32) {
        let (t, p) = &self.partitions[pi];
        (t.as_str(), *p)
    }

    fn push_records(&mut self, pi: usize, at: &AppendResult, values: &[String], txn: Option<usize>) {
        let part = &mut self.parts[pi];
        assert_eq!(
            (at.base_offset, at.last_offset),
            (part.leo, part.leo + values.len() as u64 - 1),
            "{:?}: offsets of a new batch",
            self.partitions[pi]
        );
        part.records.extend(values.iter().enumerate().map(|(k, v)| (at.base_offset + k as u64, v.clone(), txn)));
        part.leo = at.last_offset + 1;
    }

    fn plain(&mut self, pi: usize, at: &AppendResult, values: &[String]) {
        self.push_records(pi, at, values, None);
    }

    fn begin(&mut self, pid: i64) -> usize {
        self.txns.push(Txn { pid, outcome: Outcome::Open, first: BTreeMap::new(), ended: BTreeSet::new(), sent_offsets: false });
        self.txns.len() - 1
    }

    fn send(&mut self, t: usize, pi: usize, at: &AppendResult, values: &[String]) {
        assert_eq!(self.txns[t].outcome, Outcome::Open);
        self.txns[t].first.entry(pi).or_insert(at.base_offset);
        self.push_records(pi, at, values, Some(t));
    }

    /// Transactions open in partition `pi`: written there, no marker yet.
    fn open_in(&self, pi: usize) -> Vec<usize> {
        (0..self.txns.len()).filter(|&t| self.txns[t].first.contains_key(&pi) && !self.txns[t].ended.contains(&pi)).collect()
    }

    /// Transaction `t`'s marker in partition `pi` at offset `m`.
    fn marker(&mut self, t: usize, pi: usize, m: u64, ty: MarkerType) {
        let first = self.txns[t].first[&pi];
        let others = self.open_in(pi).into_iter().filter(|&o| o != t).map(|o| self.txns[o].first[&pi]).min();
        let pid = self.txns[t].pid;
        let part = &mut self.parts[pi];
        assert_eq!(m, part.leo);
        part.markers.push((m, pid, ty));
        if ty == MarkerType::Abort {
            let last_stable_offset = others.unwrap_or(u64::MAX).min(m + 1);
            part.aborted.push(AbortedTxn { producer_id: pid, first_offset: first, last_offset: m, last_stable_offset });
        }
        part.leo = m + 1;
        self.txns[t].ended.insert(pi);
    }

    /// Ends transaction `t` as one call of a single thread does: a marker at the log end of each
    /// partition it wrote to; the group offsets it sent take effect if it committed.
    fn end(&mut self, t: usize, outcome: Outcome) {
        assert_eq!(self.txns[t].outcome, Outcome::Open);
        let ty = if outcome == Outcome::Committed { MarkerType::Commit } else { MarkerType::Abort };
        let parts: Vec<usize> = self.txns[t].first.keys().copied().collect();
        for pi in parts {
            let m = self.parts[pi].leo;
            self.marker(t, pi, m, ty);
        }
        self.txns[t].outcome = outcome;
        if outcome == Outcome::Committed && self.txns[t].sent_offsets {
            for pi in 0..self.partitions.len() {
                self.group.insert(pi, (t as u64, format!("txn{t}")));
            }
        }
    }

    /// After a reopen, every transaction left open is aborted: matches the markers recovery wrote
    /// (in an order of its choosing) to the open transactions.
    fn recovered(&mut self, log: &Log) -> TestResult {
        for pi in 0..self.partitions.len() {
            let open = self.open_in(pi);
            let (topic, p) = self.tp(pi);
            let (topic, p) = (topic.to_string(), p);
            assert_eq!(
                log.log_end_offset(&topic, p)?,
                self.parts[pi].leo + open.len() as u64,
                "{topic}-{p}: one abort marker per open transaction"
            );
            if open.is_empty() {
                continue;
            }
            let (data, markers) = scan(log, &topic, p, self.parts[pi].leo)?;
            assert!(data.is_empty(), "{topic}-{p}: recovery wrote records {data:?}");
            let pids: BTreeSet<i64> = open.iter().map(|&t| self.txns[t].pid).collect();
            assert_eq!(markers.iter().map(|m| m.1).collect::<BTreeSet<_>>(), pids, "{topic}-{p}: recovery's markers");
            for (m, pid, ty) in markers {
                assert_eq!(ty, MarkerType::Abort, "{topic}-{p}: recovery commits nothing that was not prepared");
                let t = *open.iter().find(|&&t| self.txns[t].pid == pid).ok_or("a marker for no open transaction")?;
                self.marker(t, pi, m, MarkerType::Abort);
            }
        }
        for t in &mut self.txns {
            if t.outcome == Outcome::Open {
                t.outcome = Outcome::Aborted;
            }
        }
        Ok(())
    }

    fn assert_log_ends(&self, log: &Log, what: &str) -> TestResult {
        for (pi, part) in self.parts.iter().enumerate() {
            let (t, p) = self.tp(pi);
            assert_eq!(log.log_end_offset(t, p)?, part.leo, "{what}: log end of {t}-{p}");
        }
        Ok(())
    }

    /// What a producer state rebuilt from a log starting at `start` knows of the aborted
    /// transactions: one begins at its first record left, and one with none left is forgotten.
    fn clip_aborted_to(&mut self, pi: usize, start: u64) {
        let part = &self.parts[pi];
        let clipped: Vec<AbortedTxn> = part
            .aborted
            .iter()
            .filter_map(|a| {
                if a.first_offset >= start {
                    return Some(*a);
                }
                let first = part
                    .records
                    .iter()
                    .filter(|(o, _, t)| *o >= start && *o < a.last_offset && t.is_some_and(|t| self.txns[t].pid == a.producer_id))
                    .map(|r| r.0)
                    .min()?;
                Some(AbortedTxn { first_offset: first, ..*a })
            })
            .collect();
        self.parts[pi].aborted = clipped;
        self.loose_aborted = true;
    }

    /// The first offset read_committed readers may not pass.
    fn lso(&self, pi: usize, hw: u64) -> u64 {
        self.open_in(pi).iter().map(|&t| self.txns[t].first[&pi]).min().unwrap_or(u64::MAX).min(hw)
    }

    fn committed_records(&self, pi: usize, from: u64, lso: u64) -> Vec<(u64, String)> {
        self.parts[pi]
            .records
            .iter()
            .filter(|(o, _, t)| *o >= from && *o < lso && t.is_none_or(|t| self.txns[t].outcome == Outcome::Committed))
            .map(|(o, v, _)| (*o, v.clone()))
            .collect()
    }

    fn aborted_overlapping(&self, pi: usize, from: u64, to: u64) -> Vec<AbortedTxn> {
        let mut v: Vec<AbortedTxn> =
            self.parts[pi].aborted.iter().filter(|a| a.last_offset >= from && a.first_offset < to).copied().collect();
        v.sort_by_key(|a| a.first_offset);
        v
    }

    /// A read_committed chain of fetches from `from` with `max_bytes` returns exactly the committed
    /// records, stops at the last stable offset, and reports the aborted transactions of each range.
    fn check_committed_read(&self, log: &Log, pi: usize, from: u64, max_bytes: u64, lso: u64, hw: u64) -> TestResult {
        let (topic, p) = self.tp(pi);
        let what = format!("{topic}-{p} read_committed from {from} with max_bytes {max_bytes}");
        let mut got = Vec::new();
        let mut offset = from;
        loop {
            let f = log.fetch_with(topic, p, offset, max_bytes, IsolationLevel::ReadCommitted)?;
            assert_eq!((f.last_stable_offset(), f.high_watermark()), (lso, hw), "{what}: at {offset}");
            if f.is_empty() {
                assert_eq!((offset, f.next_offset()), (lso, lso), "{what}: the chain ends at the last stable offset");
                assert!(f.aborted_transactions().is_empty());
                break;
            }
            assert!(f.next_offset() > offset && f.next_offset() <= lso, "{what}: {offset} -> {}", f.next_offset());
            let reported = f.aborted_transactions().to_vec();
            let want = self.aborted_overlapping(pi, offset, f.next_offset());
            if self.loose_aborted {
                let key = |v: &[AbortedTxn]| v.iter().map(|a| (a.producer_id, a.first_offset, a.last_offset)).collect::<Vec<_>>();
                assert_eq!(key(&reported), key(&want), "{what}: aborted transactions of [{offset}, {})", f.next_offset());
            } else {
                assert_eq!(reported, want, "{what}: aborted transactions of [{offset}, {})", f.next_offset());
            }
            for r in f.records() {
                let r = r?;
                got.push((r.offset, value_of(&r)));
            }
            offset = f.next_offset();
        }
        assert_eq!(got, self.committed_records(pi, from, lso), "{what}");
        Ok(())
    }

    /// Everything the log shows matches the model. `offsets_every`: also start read_committed
    /// chains at every this-many offsets.
    fn check(&self, log: &Log, rng: &mut Rng, offsets_every: Option<u64>) -> TestResult {
        log.sync_all()?;
        for pi in 0..self.partitions.len() {
            let (topic, p) = self.tp(pi);
            let part = &self.parts[pi];
            let (start, hw) = (log.log_start_offset(topic, p)?, log.high_watermark(topic, p)?);
            assert_eq!((log.log_end_offset(topic, p)?, hw), (part.leo, part.leo), "{topic}-{p}: synced, the high watermark is the log end");
            // Read uncommitted: every record, never a marker, and the markers where the model has them.
            let (data, markers) = scan(log, topic, p, start)?;
            let want: Vec<(u64, String)> = part.records.iter().filter(|r| r.0 >= start).map(|(o, v, _)| (*o, v.clone())).collect();
            assert_eq!(data, want, "{topic}-{p}: every record, read uncommitted");
            let want_markers: Vec<_> = part.markers.iter().filter(|m| m.0 >= start).copied().collect();
            assert_eq!(markers, want_markers, "{topic}-{p}: markers");
            let recs: Vec<(u64, String)> = read_all(log, topic, p)?.iter().map(|r| (r.offset, rec_value(r))).collect();
            assert_eq!(recs, want, "{topic}-{p}: Fetched::records read uncommitted skips only markers");
            // Read committed.
            let lso = self.lso(pi, hw);
            assert_eq!(log.last_stable_offset(topic, p)?, lso, "{topic}-{p}: last stable offset");
            self.check_committed_read(log, pi, start, 1 << 20, lso, hw)?;
            self.check_committed_read(log, pi, start, 1, lso, hw)?;
            let from = start + rng.below(lso.saturating_sub(start) + 1);
            self.check_committed_read(log, pi, from, 1 + rng.below(2000), lso, hw)?;
            if let Some(every) = offsets_every {
                for from in (start..=lso).step_by(every as usize) {
                    self.check_committed_read(log, pi, from, [1, 700, 1 << 20][(from % 3) as usize], lso, hw)?;
                }
            }
        }
        self.check_group(log)
    }

    fn check_group(&self, log: &Log) -> TestResult {
        for pi in 0..self.partitions.len() {
            let (topic, p) = self.tp(pi);
            let got = log.committed(GROUP, topic, p)?.map(|c| (c.offset, c.metadata));
            assert_eq!(got, self.group.get(&pi).cloned(), "{topic}-{p}: offsets of the last committed transaction");
        }
        Ok(())
    }

    fn offsets(&self, t: usize) -> (Vec<(String, u32)>, String) {
        (self.partitions.clone(), format!("txn{t}"))
    }
}

/// Sends the model's group offsets for transaction `t` (every partition, offset `t`).
fn send_offsets(producer: &TransactionalProducer, model: &mut Model, t: usize) -> TestResult {
    let (parts, metadata) = model.offsets(t);
    let commits: Vec<OffsetCommit<'_>> =
        parts.iter().map(|(topic, p)| OffsetCommit { topic, partition: *p, offset: t as u64, metadata: &metadata }).collect();
    producer.send_offsets_to_transaction(GROUP, &commits)?;
    model.txns[t].sent_offsets = true;
    Ok(())
}

/// One transactional id in the random test: its live producer, if any, and its open transaction.
struct Slot {
    id: String,
    producer: Option<TransactionalProducer>,
    open: Option<usize>,
    pid: Option<i64>,
    /// The state `describe_transaction` must report, when the test knows it.
    state: Option<TransactionState>,
}

const TOPICS: [(&str, u32); 3] = [("durable", 4), ("written", 3), ("rolling", 3)];

fn create_topics(log: &Log) -> TestResult {
    log.create_topic("durable", 4, TopicConfig::default())?;
    log.create_topic("written", 3, config(&[("high.watermark", "written")]))?;
    log.create_topic("rolling", 3, small_segments())?;
    Ok(())
}

fn all_partitions() -> Vec<(&'static str, u32)> {
    TOPICS.iter().flat_map(|&(t, n)| (0..n).map(move |p| (t, p))).collect()
}

struct Counts {
    committed: usize,
    aborted: usize,
    fenced: usize,
    dropped: usize,
    operator: usize,
    reopens: usize,
}

/// One step of a transactional id in the random test.
fn producer_step(log: &Log, model: &mut Model, slot: &mut Slot, rng: &mut Rng, counts: &mut Counts) -> TestResult {
    let Some(producer) = &slot.producer else {
        let p = log.transactional_producer(&slot.id, TransactionOptions::default())?;
        if let Some(pid) = slot.pid {
            assert_eq!(p.producer_id(), pid, "{}: a new incarnation keeps the producer id", slot.id);
        }
        slot.pid = Some(p.producer_id());
        slot.producer = Some(p);
        slot.state = Some(TransactionState::Empty);
        return Ok(());
    };
    let Some(t) = slot.open else {
        producer.begin()?;
        slot.open = Some(model.begin(producer.producer_id()));
        slot.state = Some(TransactionState::Ongoing);
        return Ok(());
    };
    match rng.below(24) {
        0..=12 => {
            let pi = rng.below(model.partitions.len() as u64) as usize;
            let (topic, p) = model.tp(pi);
            let (topic, p) = (topic.to_string(), p);
            let pad = "x".repeat(rng.below(200) as usize);
            let values: Vec<String> = (0..1 + rng.below(3)).map(|k| format!("txn{t}.{k}{pad}")).collect();
            let at = producer.send(&topic, Some(p), &records(&values))?;
            model.send(t, pi, &at, &values);
        }
        13..=14 => send_offsets(producer, model, t)?,
        15..=18 => {
            if !model.txns[t].sent_offsets {
                send_offsets(producer, model, t)?;
            }
            producer.commit()?;
            model.end(t, Outcome::Committed);
            // Ok means durable: the data of every partition is synced, and the offsets applied.
            for &pi in model.txns[t].first.keys() {
                let (topic, p) = model.tp(pi);
                let last = model.parts[pi].records.iter().filter(|r| r.2 == Some(t)).map(|r| r.0).max().ok_or("no record")?;
                assert!(log.durable_offset(topic, p)? > last, "txn{t}: {topic}-{p} synced through {last} on commit");
            }
            model.check_group(log)?;
            slot.open = None;
            slot.state = Some(TransactionState::CompleteCommit);
            counts.committed += 1;
        }
        19..=20 => {
            if !model.txns[t].sent_offsets {
                send_offsets(producer, model, t)?;
            }
            producer.abort()?;
            model.end(t, Outcome::Aborted);
            model.check_group(log)?;
            slot.open = None;
            slot.state = Some(TransactionState::CompleteAbort);
            counts.aborted += 1;
        }
        21 => {
            // A new incarnation fences this one and aborts its transaction.
            let newer = log.transactional_producer(&slot.id, TransactionOptions::default())?;
            model.end(t, Outcome::Aborted);
            let old = slot.producer.replace(newer).ok_or("no producer")?;
            let current = slot.producer.as_ref().map_or(0, |p| p.epoch());
            assert_fenced(old.send("durable", Some(0), &[Record::new(b"zombie")]), &old, current, "send after fencing");
            assert_fenced(old.commit(), &old, current, "commit after fencing");
            drop(old);
            slot.open = None;
            slot.state = Some(TransactionState::Empty);
            counts.fenced += 1;
        }
        22 => {
            // Dropping a producer with an open transaction aborts it.
            slot.producer = None;
            model.end(t, Outcome::Aborted);
            slot.open = None;
            slot.state = Some(TransactionState::CompleteAbort);
            counts.dropped += 1;
        }
        _ => {
            // An operator aborts the hanging transaction, which fences its producer.
            assert!(log.abort_transaction(&slot.id)?);
            model.end(t, Outcome::Aborted);
            let old = slot.producer.take().ok_or("no producer")?;
            let current = log.describe_transaction(&slot.id).ok_or("described")?.producer_epoch;
            assert!(current > old.epoch());
            assert_fenced(old.begin(), &old, current, "begin after an operator's abort");
            slot.open = None;
            slot.state = Some(TransactionState::CompleteAbort);
            counts.operator += 1;
        }
    }
    Ok(())
}

fn check_described(log: &Log, slot: &Slot) {
    let Some(state) = slot.state else { return };
    let d = log.describe_transaction(&slot.id).unwrap_or_else(|| panic!("{} is described", slot.id));
    assert_eq!(d.state, state, "{}: {d:?}", slot.id);
    assert_eq!(d.start_ms.is_some(), state == TransactionState::Ongoing, "{d:?}");
    if let Some(p) = &slot.producer {
        assert_eq!((d.producer_id, d.producer_epoch), (p.producer_id(), p.epoch()), "{d:?}");
    }
}

/// The "Atomicity" acceptance test for one seed.
fn atomicity_run(seed: u64, steps: usize) -> TestResult {
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    create_topics(&log)?;
    let mut model = Model::new(&all_partitions());
    let mut slots: Vec<Slot> =
        (0..3).map(|i| Slot { id: format!("app-{i}"), producer: None, open: None, pid: None, state: None }).collect();
    let mut plain: Option<IdempotentProducer> = None;
    let mut counts = Counts { committed: 0, aborted: 0, fenced: 0, dropped: 0, operator: 0, reopens: 0 };
    let mut n_plain = 0;

    for step in 0..steps {
        let r = rng.below(100);
        if r < 15 {
            // Records of other producers, plain or idempotent, between the transactions'.
            let pi = rng.below(model.partitions.len() as u64) as usize;
            let (topic, p) = model.tp(pi);
            let (topic, p) = (topic.to_string(), p);
            let values = vec![format!("plain{n_plain}")];
            n_plain += 1;
            let acks = if rng.below(2) == 0 { Acks::One } else { Acks::All };
            let at = if r < 8 {
                log.append(&topic, Some(p), &records(&values), acks)?
            } else {
                let producer = match &plain {
                    Some(p) => p,
                    None => plain.insert(log.idempotent_producer()?),
                };
                producer.send(&topic, Some(p), &records(&values), acks)?
            };
            model.plain(pi, &at, &values);
        } else if r < 17 {
            let how = REOPENS[rng.below(3) as usize];
            // The producers outlive the log: their calls now fail with Closed, and dropping them
            // does nothing. Recovery aborts their open transactions.
            log = reopen(log, dir.path(), how)?;
            for slot in &mut slots {
                if let Some(p) = slot.producer.take() {
                    let r = p.begin();
                    assert!(matches!(r, Err(Error::Closed)), "{how:?}: a producer of the closed log: {r:?}");
                }
                slot.open = None;
                slot.state = None;
            }
            plain = None;
            model.recovered(&log)?;
            counts.reopens += 1;
        } else {
            let s = rng.below(slots.len() as u64) as usize;
            producer_step(&log, &mut model, &mut slots[s], &mut rng, &mut counts)?;
            check_described(&log, &slots[s]);
        }
        model.assert_log_ends(&log, &format!("seed {seed} step {step}"))?;
        if rng.below(12) == 0 {
            model.check(&log, &mut rng, None)?;
        }
    }
    model.check(&log, &mut rng, None)?;
    // Dropping the producers aborts their open transactions, in turn; all of it survives a reopen.
    for slot in &mut slots {
        slot.producer = None;
        if let Some(t) = slot.open.take() {
            model.end(t, Outcome::Aborted);
        }
    }
    model.assert_log_ends(&log, "after the producers were dropped")?;
    let log = reopen(log, dir.path(), REOPENS[rng.below(3) as usize])?;
    model.recovered(&log)?;
    model.check(&log, &mut rng, None)?;
    let Counts { committed, aborted, fenced, dropped, operator, reopens } = counts;
    assert!(committed > 3 && aborted > 0 && reopens > 0, "seed {seed}: {committed} {aborted} {fenced} {dropped} {operator} {reopens}");
    Ok(())
}

#[test]
fn transactions_over_ten_partitions_are_all_or_nothing_across_reopens() -> TestResult {
    for seed in 0..(4 * scale() as u64) {
        atomicity_run(0xA70 + seed, 220)?;
    }
    Ok(())
}

#[test]
fn a_new_producer_with_the_same_transactional_id_fences_the_old_one() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("a", 2, TopicConfig::default())?;
    log.create_topic("b", 1, config(&[("high.watermark", "written")]))?;
    let old = log.transactional_producer("app", TransactionOptions::default())?;
    old.begin()?;
    old.send("a", Some(0), &[Record::new(b"old-a0")])?;
    old.send("a", Some(1), &[Record::new(b"old-a1")])?;
    old.send("b", Some(0), &[Record::new(b"old-b0")])?;
    old.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 5, metadata: "old" }])?;
    log.append("a", Some(0), &[Record::new(b"plain")], Acks::All)?;
    let ends = [log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?, log.log_end_offset("b", 0)?];

    let new = log.transactional_producer("app", TransactionOptions::default())?;
    assert_eq!(new.producer_id(), old.producer_id(), "the same producer id, a newer epoch");
    assert!(new.epoch() > old.epoch(), "{} > {}", new.epoch(), old.epoch());
    // The old incarnation's transaction was aborted: one marker in each of its partitions.
    assert_eq!([log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?, log.log_end_offset("b", 0)?], ends.map(|e| e + 1));
    let current = new.epoch();
    assert_fenced(old.send("a", Some(0), &[Record::new(b"zombie")]), &old, current, "send");
    assert_fenced(old.send("a", Some(1), &[Record::new(b"zombie")]), &old, current, "send to another partition");
    let offsets = [OffsetCommit { topic: "a", partition: 0, offset: 9, metadata: "zombie" }];
    assert_fenced(old.send_offsets_to_transaction(GROUP, &offsets), &old, current, "send offsets");
    assert_fenced(old.commit(), &old, current, "commit");
    assert_fenced(old.abort(), &old, current, "abort");
    assert_fenced(old.begin(), &old, current, "begin");
    // The partitions fence the old epoch too, whoever writes with it.
    let r = log.append_idempotent(
        "a",
        Some(0),
        &[Record::new(b"zombie")],
        Acks::All,
        runnel::ProducerBatch { producer_id: old.producer_id(), producer_epoch: old.epoch(), base_sequence: 1 },
    );
    assert!(matches!(&r, Err(Error::ProducerFenced { current_epoch, .. }) if *current_epoch > old.epoch()), "{r:?}");
    assert_eq!([log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?, log.log_end_offset("b", 0)?], ends.map(|e| e + 1));

    log.sync_all()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["plain"], "the old incarnation's records are never visible");
    assert!(committed_values(&log, "a", 1)?.is_empty() && committed_values(&log, "b", 0)?.is_empty());
    assert_eq!(uncommitted_values(&log, "a", 0)?, ["old-a0", "plain"]);
    assert_eq!(log.committed(GROUP, "a", 0)?, None, "nor its offsets");
    for (t, p) in [("a", 0), ("a", 1), ("b", 0)] {
        assert_eq!(log.last_stable_offset(t, p)?, log.high_watermark(t, p)?);
    }

    // The new incarnation works, and the old one's drop does not touch its transaction.
    new.begin()?;
    new.send("a", Some(0), &[Record::new(b"new-a0")])?;
    new.send("a", Some(1), &[Record::new(b"new-a1")])?;
    drop(old);
    assert_eq!(log.describe_transaction("app").map(|d| d.state), Some(TransactionState::Ongoing));
    new.commit()?;
    log.sync_all()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["plain", "new-a0"]);
    assert_eq!(committed_values(&log, "a", 1)?, ["new-a1"]);
    // A third incarnation fences the second even with no transaction open.
    let third = log.transactional_producer("app", TransactionOptions::default())?;
    assert_fenced(new.begin(), &new, third.epoch(), "begin with nothing open");
    Ok(())
}

fn lso_test(hw_mode: &str) -> TestResult {
    let what = format!("high.watermark={hw_mode}");
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("high.watermark", hw_mode)]))?;
    log.append("t", Some(0), &[Record::new(b"c0"), Record::new(b"c1")], Acks::All)?;
    let t1 = log.transactional_producer("t1", TransactionOptions::default())?;
    t1.begin()?;
    assert_eq!(t1.send("t", Some(0), &[Record::new(b"t1-a")])?.base_offset, 2);
    let idem = log.idempotent_producer()?;
    assert_eq!(idem.send("t", Some(0), &[Record::new(b"n0")], Acks::All)?.base_offset, 3);
    assert_eq!(log.append("t", Some(0), &[Record::new(b"n1")], Acks::All)?.base_offset, 4);
    assert_eq!((log.high_watermark("t", 0)?, log.last_stable_offset("t", 0)?), (5, 2), "{what}");

    // read_committed stops at the open transaction's first offset.
    let f = log.fetch_with("t", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)?;
    assert_eq!(common::values(&common::records_of(&f)?), ["c0", "c1"], "{what}");
    assert_eq!((f.next_offset(), f.last_stable_offset(), f.high_watermark()), (2, 2, 5), "{what}");
    for offset in 2..=5 {
        let f = log.fetch_with("t", 0, offset, 1 << 20, IsolationLevel::ReadCommitted)?;
        assert!(f.is_empty() && f.records().next().is_none(), "{what}: at {offset}");
        assert_eq!((f.next_offset(), f.last_stable_offset(), f.high_watermark()), (offset, 2, 5), "{what}: at {offset}");
    }
    let r = log.fetch_with("t", 0, 6, 1 << 20, IsolationLevel::ReadCommitted);
    assert!(matches!(r, Err(Error::OffsetOutOfRange { requested: 6, high_watermark: 5, .. })), "{what}: {r:?}");
    // read_uncommitted sees everything at once.
    assert_eq!(uncommitted_values(&log, "t", 0)?, ["c0", "c1", "t1-a", "n0", "n1"], "{what}");

    // A second transaction opened later does not move the bound.
    let t2 = log.transactional_producer("t2", TransactionOptions::default())?;
    t2.begin()?;
    assert_eq!(t2.send("t", Some(0), &[Record::new(b"t2-a")])?.base_offset, 5);
    assert_eq!(log.append("t", Some(0), &[Record::new(b"n2")], Acks::All)?.base_offset, 6);
    assert_eq!(log.last_stable_offset("t", 0)?, 2, "{what}");
    assert_eq!(t1.send("t", Some(0), &[Record::new(b"t1-b")])?.base_offset, 7);

    // The earlier one commits: readers advance to the later one's first offset.
    t1.commit()?;
    assert_eq!(log.log_end_offset("t", 0)?, 9, "{what}: the commit marker at 8");
    assert!(log.durable_offset("t", 0)? >= 8, "{what}: commit syncs the transaction's data");
    assert_eq!(log.last_stable_offset("t", 0)?, 5, "{what}");
    assert_eq!(committed_values(&log, "t", 0)?, ["c0", "c1", "t1-a", "n0", "n1"], "{what}");

    // The later one aborts: everything after it is visible, its record never. With a durable
    // high watermark neither marker is synced yet (the commit synced the data, up to 8): readers
    // already skip the aborted record.
    t2.abort()?;
    let hw = log.high_watermark("t", 0)?;
    assert_eq!(log.last_stable_offset("t", 0)?, hw, "{what}");
    assert_eq!(hw, if hw_mode == "written" { 10 } else { 8 }, "{what}");
    assert_eq!(committed_values(&log, "t", 0)?, ["c0", "c1", "t1-a", "n0", "n1", "n2", "t1-b"], "{what}");
    log.sync_all()?;
    assert_eq!(log.last_stable_offset("t", 0)?, 10);
    let f = log.fetch_with("t", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)?;
    assert_eq!(common::values(&common::records_of(&f)?), ["c0", "c1", "t1-a", "n0", "n1", "n2", "t1-b"], "{what}");
    let pid2 = t2.producer_id();
    assert_eq!(
        f.aborted_transactions(),
        [AbortedTxn { producer_id: pid2, first_offset: 5, last_offset: 9, last_stable_offset: 10 }],
        "{what}"
    );
    assert_eq!(f.next_offset(), 10);
    assert_eq!(uncommitted_values(&log, "t", 0)?, ["c0", "c1", "t1-a", "n0", "n1", "t2-a", "n2", "t1-b"], "{what}");
    Ok(())
}

#[test]
fn read_committed_stops_at_the_first_offset_of_an_open_transaction() -> TestResult {
    lso_test("durable")?;
    lso_test("written")
}

#[test]
fn aborted_transactions_are_skipped_across_segment_rolls_and_reopens() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    log.create_topic("t", 1, small_segments())?;
    let mut model = Model::new(&[("t", 0)]);
    let mut rng = Rng(0x5E6);
    let mut producers: Vec<TransactionalProducer> =
        (0..3).map(|i| log.transactional_producer(&format!("p{i}"), TransactionOptions::default())).collect::<runnel::Result<_>>()?;
    let mut n_plain = 0;
    for round in 0..4 {
        for _ in 0..8 {
            // Three transactions at a time, interleaved with each other and with plain records.
            let open: Vec<usize> = producers
                .iter()
                .map(|p| {
                    p.begin()?;
                    Ok(model.begin(p.producer_id()))
                })
                .collect::<runnel::Result<_>>()?;
            for _ in 0..12 {
                let i = rng.below(4) as usize;
                let values: Vec<String> =
                    (0..1 + rng.below(3)).map(|k| format!("r{round}.{i}.{k}.{}", "v".repeat(rng.below(150) as usize))).collect();
                if i == 3 {
                    let at = log.append("t", Some(0), &records(&values), Acks::One)?;
                    model.plain(0, &at, &values);
                    n_plain += 1;
                } else {
                    let at = producers[i].send("t", Some(0), &records(&values))?;
                    model.send(open[i], 0, &at, &values);
                }
            }
            for (i, p) in producers.iter().enumerate() {
                if rng.below(2) == 0 {
                    p.commit()?;
                    model.end(open[i], Outcome::Committed);
                } else {
                    p.abort()?;
                    model.end(open[i], Outcome::Aborted);
                }
            }
        }
        model.check(&log, &mut rng, Some(3))?;
        // Leave one transaction open across the reopen: recovery aborts it.
        producers[0].begin()?;
        let t = model.begin(producers[0].producer_id());
        let values = vec![format!("left-open-{round}")];
        let at = producers[0].send("t", Some(0), &records(&values))?;
        model.send(t, 0, &at, &values);
        log = reopen(log, dir.path(), REOPENS[round % 3])?;
        model.recovered(&log)?;
        model.check(&log, &mut rng, Some(5))?;
        producers =
            (0..3).map(|i| log.transactional_producer(&format!("p{i}"), TransactionOptions::default())).collect::<runnel::Result<_>>()?;
    }
    let segments = log.segments("t", 0)?.len();
    let aborted = model.parts[0].aborted.len();
    assert!(segments > 20 && aborted > 20 && n_plain > 20, "{segments} segments, {aborted} aborted transactions, {n_plain} plain batches");
    Ok(())
}

#[test]
fn a_transaction_open_past_its_timeout_is_aborted_and_its_producer_fenced() -> TestResult {
    let dir = tempfile::tempdir()?;
    // The background thread (on by default) aborts timed-out transactions and syncs markers.
    let log = Log::open(dir.path(), LogOptions::default())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    let slow = log.transactional_producer("slow", TransactionOptions::default().timeout(Duration::from_millis(100)))?;
    let idle = log.transactional_producer("idle", TransactionOptions::default().timeout(Duration::from_millis(100)))?;
    let patient = log.transactional_producer("patient", TransactionOptions::default())?;
    let before = common::now_ms();
    let begun = Instant::now();
    slow.begin()?;
    slow.send("t", Some(0), &[Record::new(b"slow-0")])?;
    slow.send("t", Some(1), &[Record::new(b"slow-1")])?;
    slow.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "t", partition: 0, offset: 1, metadata: "slow" }])?;
    idle.begin()?;
    patient.begin()?;
    patient.send("t", Some(0), &[Record::new(b"patient")])?;

    let d = log.describe_transaction("slow").ok_or("slow is described")?;
    assert_eq!((d.timeout_ms, d.producer_id), (100, slow.producer_id()));
    // Unless this thread was descheduled for the whole timeout, the transaction is still open.
    if begun.elapsed() < Duration::from_millis(90) {
        assert_eq!((d.state, d.producer_epoch), (TransactionState::Ongoing, slow.epoch()), "{d:?}");
        assert!(d.start_ms.is_some_and(|s| s >= before && s <= common::now_ms()), "{d:?}");
        let want: Vec<(String, u32)> = vec![(runnel::CONSUMER_OFFSETS_TOPIC.into(), 0), ("t".into(), 0), ("t".into(), 1)];
        assert_eq!(d.partitions, want);
    }

    for id in ["slow", "idle"] {
        wait_for(&format!("the timeout of {id}"), Duration::from_secs(10), || {
            Ok(log.describe_transaction(id).is_some_and(|d| d.state == TransactionState::CompleteAbort))
        })?;
    }
    let d = log.describe_transaction("slow").ok_or("slow is described")?;
    assert!(d.producer_epoch > slow.epoch() && d.start_ms.is_none() && d.partitions.is_empty(), "{d:?}");
    assert_fenced(slow.send("t", Some(0), &[Record::new(b"late")]), &slow, d.producer_epoch, "send after the timeout");
    assert_fenced(slow.commit(), &slow, d.producer_epoch, "commit after the timeout");
    let d = log.describe_transaction("idle").ok_or("idle is described")?;
    assert_fenced(idle.commit(), &idle, d.producer_epoch, "a transaction with no records times out too");
    // A transaction within its timeout is left alone.
    assert_eq!(log.describe_transaction("patient").map(|d| d.state), Some(TransactionState::Ongoing));
    patient.commit()?;
    // The background thread syncs the markers: read_committed readers see the end of it.
    for p in 0..2 {
        wait_for("the markers to be synced", Duration::from_secs(10), || {
            Ok(log.high_watermark("t", p)? == log.log_end_offset("t", p)?
                && log.last_stable_offset("t", p)? == log.log_end_offset("t", p)?)
        })?;
    }
    assert_eq!(committed_values(&log, "t", 0)?, ["patient"]);
    assert!(committed_values(&log, "t", 1)?.is_empty());
    assert_eq!(uncommitted_values(&log, "t", 0)?, ["slow-0", "patient"]);
    assert_eq!(log.committed(GROUP, "t", 0)?, None, "the timed-out transaction's offsets are discarded");
    // The id is usable again with a new producer.
    let again = log.transactional_producer("slow", TransactionOptions::default())?;
    assert!(again.epoch() > d.producer_epoch || again.producer_id() != d.producer_id);
    again.begin()?;
    again.send("t", Some(1), &[Record::new(b"again")])?;
    again.commit()?;
    assert_eq!(committed_values(&log, "t", 1)?, ["again"]);
    Ok(())
}

#[test]
fn describe_and_list_transactions_report_each_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    log.create_topic("a", 2, TopicConfig::default())?;
    assert!(log.describe_transaction("x").is_none() && log.list_transactions().is_empty());
    let x = log.transactional_producer("x", TransactionOptions::default().timeout(Duration::from_secs(5)))?;
    let describe = |log: &Log| log.describe_transaction("x").ok_or("x is described");
    let d = describe(&log)?;
    assert_eq!(d.transactional_id, "x");
    assert_eq!((d.producer_id, d.producer_epoch, d.timeout_ms), (x.producer_id(), x.epoch(), 5000));
    assert_eq!((d.state, d.start_ms, d.partitions.len()), (TransactionState::Empty, None, 0));

    let before = common::now_ms();
    x.begin()?;
    let d = describe(&log)?;
    assert_eq!((d.state, d.partitions.len()), (TransactionState::Ongoing, 0));
    assert!(d.start_ms.is_some_and(|s| s >= before), "{d:?}");
    x.send("a", Some(1), &[Record::new(b"1")])?;
    x.send("a", Some(0), &[Record::new(b"0")])?;
    x.send("a", Some(1), &[Record::new(b"1")])?;
    assert_eq!(describe(&log)?.partitions, [("a".to_string(), 0), ("a".to_string(), 1)], "sorted, each once");
    x.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 3, metadata: "" }])?;
    assert_eq!(describe(&log)?.partitions, [(runnel::CONSUMER_OFFSETS_TOPIC.to_string(), 0), ("a".to_string(), 0), ("a".to_string(), 1)]);
    x.commit()?;
    let d = describe(&log)?;
    assert_eq!((d.state, d.start_ms, d.partitions.len()), (TransactionState::CompleteCommit, None, 0));
    x.begin()?;
    x.send("a", Some(0), &[Record::new(b"2")])?;
    x.abort()?;
    assert_eq!(describe(&log)?.state, TransactionState::CompleteAbort);

    let y = log.transactional_producer("y", TransactionOptions::default())?;
    assert_ne!(y.producer_id(), x.producer_id());
    let listed: Vec<(String, TransactionState)> = log.list_transactions().into_iter().map(|d| (d.transactional_id, d.state)).collect();
    assert_eq!(listed, [("x".to_string(), TransactionState::CompleteAbort), ("y".to_string(), TransactionState::Empty)]);

    // The states are durable: a reopen finds them, and the next incarnation keeps the id.
    let (xid, xepoch) = (x.producer_id(), x.epoch());
    drop((x, y));
    log = reopen(log, dir.path(), Reopen::Clean)?;
    let d = describe(&log)?;
    assert_eq!((d.producer_id, d.producer_epoch, d.state), (xid, xepoch, TransactionState::CompleteAbort));
    assert_eq!(log.list_transactions().len(), 2);
    let x = log.transactional_producer("x", TransactionOptions::default())?;
    assert_eq!((x.producer_id(), x.epoch()), (xid, xepoch + 1));
    log = reopen(log, dir.path(), Reopen::Crash)?;
    let d = describe(&log)?;
    assert_eq!((d.producer_id, d.producer_epoch, d.state), (xid, xepoch + 1, TransactionState::Empty));
    Ok(())
}

#[test]
fn an_operator_abort_ends_the_transaction_and_fences_its_producer() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("a", 1, TopicConfig::default())?;
    assert!(!log.abort_transaction("nobody")?, "an unknown id: nothing to abort");
    let p = log.transactional_producer("hung", TransactionOptions::default())?;
    assert!(!log.abort_transaction("hung")?, "nothing open");
    p.begin()?;
    p.send("a", Some(0), &[Record::new(b"never")])?;
    p.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 1, metadata: "" }])?;
    assert_eq!(log.last_stable_offset("a", 0)?, 0);
    assert!(log.abort_transaction("hung")?);
    let d = log.describe_transaction("hung").ok_or("described")?;
    assert_eq!(d.state, TransactionState::CompleteAbort);
    assert_fenced(p.commit(), &p, d.producer_epoch, "commit after an operator's abort");
    assert!(!log.abort_transaction("hung")?, "already aborted");
    assert_eq!(log.log_end_offset("a", 0)?, 2, "one record and its abort marker");
    log.append("a", Some(0), &[Record::new(b"after")], Acks::All)?;
    assert_eq!(log.last_stable_offset("a", 0)?, 3);
    assert_eq!(committed_values(&log, "a", 0)?, ["after"]);
    assert_eq!(log.committed(GROUP, "a", 0)?, None);

    // With nothing open, the producer is not fenced.
    let q = log.transactional_producer("quiet", TransactionOptions::default())?;
    assert!(!log.abort_transaction("quiet")?);
    q.begin()?;
    q.send("a", Some(0), &[Record::new(b"quiet")])?;
    q.commit()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["after", "quiet"]);
    Ok(())
}

#[test]
fn dropping_a_producer_with_an_open_transaction_aborts_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("a", 2, TopicConfig::default())?;
    let p = log.transactional_producer("d", TransactionOptions::default())?;
    let (pid, epoch) = (p.producer_id(), p.epoch());
    p.begin()?;
    p.send("a", Some(0), &[Record::new(b"dropped-0")])?;
    p.send("a", Some(1), &[Record::new(b"dropped-1")])?;
    p.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 1, offset: 8, metadata: "" }])?;
    drop(p);
    assert_eq!((log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?), (2, 2), "an abort marker in each partition");
    assert_eq!(log.describe_transaction("d").map(|d| d.state), Some(TransactionState::CompleteAbort));
    log.sync_all()?;
    for p in 0..2 {
        assert!(committed_values(&log, "a", p)?.is_empty());
        assert_eq!(log.last_stable_offset("a", p)?, 2);
    }
    assert_eq!(log.committed(GROUP, "a", 1)?, None);
    // Dropping one with nothing open writes nothing.
    let q = log.transactional_producer("d", TransactionOptions::default())?;
    assert_eq!((q.producer_id(), q.epoch()), (pid, epoch + 1));
    q.begin()?;
    q.send("a", Some(0), &[Record::new(b"kept")])?;
    q.commit()?;
    drop(q);
    assert_eq!(log.log_end_offset("a", 0)?, 4);
    log.sync_all()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["kept"]);
    Ok(())
}

#[test]
fn calls_out_of_turn_and_bad_arguments_are_refused_and_write_nothing() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("a", 1, TopicConfig::default())?;
    let p = log.transactional_producer("e", TransactionOptions::default())?;
    let offsets = [OffsetCommit { topic: "a", partition: 0, offset: 1, metadata: "" }];
    assert_invalid_state(p.send("a", Some(0), &[Record::new(b"x")]), "send without begin");
    assert_invalid_state(p.send_offsets_to_transaction(GROUP, &offsets), "offsets without begin");
    assert_invalid_state(p.commit(), "commit without begin");
    assert_invalid_state(p.abort(), "abort without begin");
    p.begin()?;
    assert_invalid_state(p.begin(), "begin twice");
    // Refused sends leave the transaction open and usable.
    for internal in [runnel::CONSUMER_OFFSETS_TOPIC, runnel::TRANSACTION_STATE_TOPIC] {
        let r = p.send(internal, Some(0), &[Record::new(b"x")]);
        assert!(matches!(&r, Err(Error::ReadOnly(_))), "{internal}: {r:?}");
    }
    let r = p.send("missing", Some(0), &[Record::new(b"x")]);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { partition: None, .. })), "{r:?}");
    let r = p.send("a", Some(7), &[Record::new(b"x")]);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { partition: Some(7), .. })), "{r:?}");
    let r = p.send("a", Some(0), &[]);
    assert!(matches!(&r, Err(Error::InvalidArgument(_))), "{r:?}");
    let r = p.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "missing", partition: 0, offset: 1, metadata: "" }]);
    assert!(matches!(&r, Err(Error::UnknownTopicOrPartition { .. })), "{r:?}");
    let r = p.send_offsets_to_transaction("", &offsets);
    assert!(matches!(&r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(log.log_end_offset("a", 0)?, 0, "nothing written");
    assert_eq!(log.describe_transaction("e").map(|d| (d.state, d.partitions.len())), Some((TransactionState::Ongoing, 0)));
    p.send("a", Some(0), &[Record::new(b"ok")])?;
    p.commit()?;
    assert_invalid_state(p.commit(), "commit twice");
    assert_invalid_state(p.abort(), "abort after commit");
    p.begin()?;
    p.abort()?;
    assert_invalid_state(p.abort(), "abort twice");
    assert_invalid_state(p.send("a", Some(0), &[Record::new(b"x")]), "send after abort");
    log.sync_all()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["ok"]);

    // Transactional ids: 1 to 1024 bytes.
    let long = "i".repeat(runnel::transactions::MAX_TRANSACTIONAL_ID_LEN);
    assert_invalid_state(log.transactional_producer("", TransactionOptions::default()), "an empty id");
    assert_invalid_state(log.transactional_producer(&format!("{long}i"), TransactionOptions::default()), "an id of 1025 bytes");
    log.transactional_producer(&long, TransactionOptions::default())?;
    // Timeouts: 1 ms to 15 minutes.
    let max = Duration::from_millis(u64::from(runnel::transactions::MAX_TRANSACTION_TIMEOUT_MS));
    for bad in [Duration::ZERO, max + Duration::from_millis(1), Duration::from_secs(3600 * 24 * 365)] {
        let r = log.transactional_producer("timeouts", TransactionOptions::default().timeout(bad));
        assert!(matches!(&r, Err(Error::InvalidArgument(_))), "{bad:?}: {r:?}");
    }
    log.transactional_producer("timeouts", TransactionOptions::default().timeout(max))?;
    Ok(())
}

#[test]
fn producer_calls_after_close_fail_with_closed_and_the_reopened_log_aborts_what_was_open() -> TestResult {
    for how in REOPENS {
        let dir = tempfile::tempdir()?;
        let log = open(dir.path())?;
        log.create_topic("a", 2, TopicConfig::default())?;
        let committed = log.transactional_producer("c", TransactionOptions::default())?;
        committed.begin()?;
        committed.send("a", Some(0), &[Record::new(b"kept")])?;
        committed.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 4, metadata: "c" }])?;
        committed.commit()?;
        let p = log.transactional_producer("o", TransactionOptions::default())?;
        p.begin()?;
        p.send("a", Some(0), &[Record::new(b"open-0")])?;
        p.send("a", Some(1), &[Record::new(b"open-1")])?;
        p.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 9, metadata: "o" }])?;
        let leo = (log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?);
        match how {
            Reopen::Clean => log.close()?,
            Reopen::Crash => crash(log, dir.path())?,
            Reopen::MarkerRemoved => {
                log.close()?;
                make_unclean(dir.path())?;
            }
        }
        for (what, r) in [("send", p.send("a", Some(0), &[Record::new(b"x")]).map(|_| ())), ("commit", p.commit()), ("abort", p.abort())] {
            assert!(matches!(r, Err(Error::Closed)), "{how:?}: {what} after close: {r:?}");
        }
        // The directory is free although the producer is alive.
        let log = open(dir.path())?;
        drop(p);
        assert_eq!((log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?), (leo.0 + 1, leo.1 + 1), "{how:?}: abort markers");
        log.sync_all()?;
        assert_eq!(committed_values(&log, "a", 0)?, ["kept"], "{how:?}");
        assert!(committed_values(&log, "a", 1)?.is_empty(), "{how:?}");
        assert_eq!(log.last_stable_offset("a", 0)?, log.high_watermark("a", 0)?);
        assert_eq!(log.committed(GROUP, "a", 0)?.map(|c| (c.offset, c.metadata)), Some((4, "c".to_string())), "{how:?}");
        let p = log.transactional_producer("o", TransactionOptions::default())?;
        p.begin()?;
        p.send("a", Some(1), &[Record::new(b"later")])?;
        p.commit()?;
        assert_eq!(committed_values(&log, "a", 1)?, ["later"], "{how:?}");
    }
    Ok(())
}

#[test]
fn a_transaction_of_only_group_offsets_commits_and_aborts_them() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("a", 2, TopicConfig::default())?;
    log.commit_offsets(GROUP, &[OffsetCommit { topic: "a", partition: 1, offset: 1, metadata: "plain" }])?;
    let p = log.transactional_producer("offsets-only", TransactionOptions::default())?;
    let offsets = |o: u64| {
        [
            OffsetCommit { topic: "a", partition: 0, offset: o, metadata: "t" },
            OffsetCommit { topic: "a", partition: 1, offset: o, metadata: "t" },
        ]
    };
    p.begin()?;
    p.send_offsets_to_transaction(GROUP, &offsets(10))?;
    assert_eq!(log.committed(GROUP, "a", 0)?, None, "not before the commit");
    p.commit()?;
    let got = |p: u32| -> BoxResult<Option<u64>> { Ok(log.committed(GROUP, "a", p)?.map(|c| c.offset)) };
    assert_eq!((got(0)?, got(1)?), (Some(10), Some(10)));
    p.begin()?;
    p.send_offsets_to_transaction(GROUP, &offsets(20))?;
    p.abort()?;
    assert_eq!((got(0)?, got(1)?), (Some(10), Some(10)), "aborted offsets are discarded");
    assert_eq!((log.log_end_offset("a", 0)?, log.log_end_offset("a", 1)?), (0, 0), "no data partition touched");
    // An empty transaction commits too.
    p.begin()?;
    p.commit()?;
    assert_eq!(log.describe_transaction("offsets-only").map(|d| d.state), Some(TransactionState::CompleteCommit));
    Ok(())
}

#[test]
fn deleting_a_topic_under_an_open_transaction_leaves_the_rest_of_it_committable() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("keep", 1, TopicConfig::default())?;
    log.create_topic("gone", 1, TopicConfig::default())?;
    let p = log.transactional_producer("t", TransactionOptions::default())?;
    p.begin()?;
    p.send("keep", Some(0), &[Record::new(b"k")])?;
    p.send("gone", Some(0), &[Record::new(b"g")])?;
    log.delete_topic("gone")?;
    p.commit()?;
    assert_eq!(committed_values(&log, "keep", 0)?, ["k"]);
    log.create_topic("gone", 1, TopicConfig::default())?;
    assert_eq!(log.log_end_offset("gone", 0)?, 0, "the new topic has no marker of the old transaction");
    p.begin()?;
    p.send("keep", Some(0), &[Record::new(b"k2")])?;
    p.commit()?;
    assert_eq!(committed_values(&log, "keep", 0)?, ["k", "k2"]);
    Ok(())
}

/// The producers key their sequences by topic name and partition: after a topic is deleted and
/// created again under the same name, they send the old topic's next sequence to a partition that
/// never saw them, which refuses it as `UnknownProducerId`, on every later send.
#[test]
fn a_topic_created_again_under_the_same_name_accepts_the_producers_next_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let txn = log.transactional_producer("t", TransactionOptions::default())?;
    let idem = log.idempotent_producer()?;
    txn.begin()?;
    txn.send("t", Some(0), &[Record::new(b"old")])?;
    txn.commit()?;
    idem.send("t", Some(0), &[Record::new(b"old")], Acks::All)?;
    log.delete_topic("t")?;
    log.create_topic("t", 1, TopicConfig::default())?;
    let r = idem.send("t", Some(0), &[Record::new(b"idempotent")], Acks::All);
    assert!(r.is_ok(), "idempotent producer: {r:?}");
    txn.begin()?;
    let r = txn.send("t", Some(0), &[Record::new(b"transactional")]);
    assert!(r.is_ok(), "transactional producer: {r:?}");
    txn.commit()?;
    assert_eq!(committed_values(&log, "t", 0)?, ["idempotent", "transactional"]);
    Ok(())
}

/// A transactional producer's sequence in a partition outlives the partition's memory of it:
/// once the producer has been idle there past `producer.id.expiration.ms` (with no transaction
/// open), the partition has forgotten it and refuses its next sequence as `UnknownProducerId`, so
/// the producer can never write to that partition again.
#[test]
fn a_transactional_producer_idle_past_expiration_can_write_again() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = Log::open(dir.path(), common::opts().producer_id_expiration(Duration::from_millis(20)))?;
    log.create_topic("a", 1, TopicConfig::default())?;
    let p = log.transactional_producer("t", TransactionOptions::default())?;
    p.begin()?;
    p.send("a", Some(0), &[Record::new(b"first")])?;
    p.commit()?;
    std::thread::sleep(Duration::from_millis(60));
    log.run_retention()?;
    p.begin()?;
    let r = p.send("a", Some(0), &[Record::new(b"second")]);
    assert!(r.is_ok(), "{r:?}");
    p.commit()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["first", "second"]);
    Ok(())
}

#[test]
fn retention_of_segments_holding_aborted_transactions_keeps_read_committed_exact() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut log = open(dir.path())?;
    let mut cfg = small_segments();
    cfg.set("retention.bytes", "3072")?;
    log.create_topic("t", 1, cfg)?;
    let mut model = Model::new(&[("t", 0)]);
    let mut rng = Rng(0x7E7);
    let pad = |rng: &mut Rng| "p".repeat(100 + rng.below(100) as usize);
    // A long transaction that begins before everything retention will delete and aborts after it.
    let long = log.transactional_producer("long", TransactionOptions::default())?;
    long.begin()?;
    let lt = model.begin(long.producer_id());
    let short = log.transactional_producer("short", TransactionOptions::default())?;
    for i in 0..40 {
        if i % 8 == 0 || i >= 37 {
            let values = vec![format!("long{i}{}", pad(&mut rng))];
            let at = long.send("t", Some(0), &records(&values))?;
            model.send(lt, 0, &at, &values);
        }
        short.begin()?;
        let t = model.begin(short.producer_id());
        for k in 0..2 {
            let values = vec![format!("short{i}.{k}{}", pad(&mut rng))];
            let at = short.send("t", Some(0), &records(&values))?;
            model.send(t, 0, &at, &values);
            let values = vec![format!("plain{i}.{k}")];
            let at = log.append("t", Some(0), &records(&values), Acks::One)?;
            model.plain(0, &at, &values);
        }
        if i % 3 == 0 {
            short.abort()?;
            model.end(t, Outcome::Aborted);
        } else {
            short.commit()?;
            model.end(t, Outcome::Committed);
        }
    }
    long.abort()?;
    model.end(lt, Outcome::Aborted);
    log.sync_all()?;
    let deleted = log.run_retention()?;
    let start = log.log_start_offset("t", 0)?;
    let long_marker = model.parts[0].markers.last().map_or(0, |m| m.0);
    assert!(deleted > 5 && start > model.txns[lt].first[&0] && start < long_marker, "{deleted} segments deleted, log start {start}");
    let aborted_before_start = model.parts[0].aborted.iter().filter(|a| a.last_offset < start).count();
    assert!(aborted_before_start > 3, "retention removed segments with whole aborted transactions");
    let long_left = model.parts[0].records.iter().filter(|r| r.2 == Some(lt) && r.0 >= start).count();
    assert!(long_left >= 2, "records of the long transaction are left after the log start, to be skipped");
    model.check(&log, &mut rng, Some(2))?;

    for (how, drop_snapshots) in [(Reopen::Clean, false), (Reopen::Crash, false), (Reopen::MarkerRemoved, true), (Reopen::Crash, true)] {
        match how {
            Reopen::Clean => log.close()?,
            Reopen::Crash => crash(log, dir.path())?,
            Reopen::MarkerRemoved => {
                log.close()?;
                make_unclean(dir.path())?;
            }
        }
        if drop_snapshots {
            let pdir = partition_dir(dir.path(), "t", 0);
            for name in common::dir_names(&pdir)?.into_iter().filter(|n| n.ends_with(".snapshot")) {
                std::fs::remove_file(pdir.join(name))?;
            }
            // Rebuilt from the log start, the long transaction begins at the first of its records
            // retention left.
            model.clip_aborted_to(0, start);
        }
        log = open(dir.path())?;
        assert_eq!(log.log_start_offset("t", 0)?, start, "{how:?}");
        model.check(&log, &mut rng, Some(3))?;
    }
    Ok(())
}

#[test]
fn internal_topic_snapshots_keep_pending_offsets_and_transaction_state() -> TestResult {
    let dir = tempfile::tempdir()?;
    // 64 KiB segments for both internal topics: each snapshots (rewrites its live state and drops
    // older segments) every 128 KiB of writes.
    let options = || common::opts().offsets_topic_segment_bytes(64 << 10);
    let mut log = Log::open(dir.path(), options())?;
    log.create_topic("a", 8, TopicConfig::default())?;
    let meta = "m".repeat(2000);
    let mut bulk: BTreeMap<u32, u64> = BTreeMap::new();
    let mut n_bulk = 0u64;
    let mut bulk_commits = |log: &Log, n: usize| -> TestResult {
        for _ in 0..n {
            let p = (n_bulk % 8) as u32;
            log.commit_offsets("bulk", &[OffsetCommit { topic: "a", partition: p, offset: n_bulk, metadata: &meta }])?;
            bulk.insert(p, n_bulk);
            n_bulk += 1;
        }
        for (&p, &o) in &bulk {
            assert_eq!(log.committed("bulk", "a", p)?.map(|c| c.offset), Some(o));
        }
        Ok(())
    };
    let offsets_of =
        |log: &Log, p: u32| -> BoxResult<Option<(u64, String)>> { Ok(log.committed(GROUP, "a", p)?.map(|c| (c.offset, c.metadata))) };

    let t1 = log.transactional_producer("t1", TransactionOptions::default())?;
    let t2 = log.transactional_producer("t2", TransactionOptions::default())?;
    t1.begin()?;
    t1.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 0, offset: 100, metadata: "t1" }])?;
    t1.send("a", Some(0), &[Record::new(b"t1")])?;
    t2.begin()?;
    t2.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 1, offset: 200, metadata: "t2" }])?;
    bulk_commits(&log, 200)?;
    assert!(log.log_start_offset(runnel::CONSUMER_OFFSETS_TOPIC, 0)? > 0, "the offsets topic snapshotted with two transactions open");
    t2.abort()?;
    t1.commit()?;
    assert_eq!(offsets_of(&log, 0)?, Some((100, "t1".to_string())), "committed after snapshots");
    assert_eq!(offsets_of(&log, 1)?, None, "aborted after snapshots");

    // Enough transactions to snapshot __transaction_state too.
    let mut pids = BTreeSet::new();
    for i in 0..400 {
        let p = log.transactional_producer(&format!("many-{}", i % 7), TransactionOptions::default())?;
        pids.insert(p.producer_id());
        p.begin()?;
        p.send("a", Some(2), &[Record::new(format!("many{i}").as_bytes())])?;
        p.commit()?;
    }
    assert!(log.log_start_offset(runnel::TRANSACTION_STATE_TOPIC, 0)? > 0, "the transaction state topic snapshotted");
    let t3 = log.transactional_producer("t3", TransactionOptions::default())?;
    t3.begin()?;
    t3.send_offsets_to_transaction(GROUP, &[OffsetCommit { topic: "a", partition: 1, offset: 300, metadata: "t3" }])?;
    t3.send("a", Some(1), &[Record::new(b"t3")])?;
    bulk_commits(&log, 200)?;
    let before = log.list_transactions();

    for how in REOPENS {
        match how {
            Reopen::Clean => log.close()?,
            Reopen::Crash => crash(log, dir.path())?,
            Reopen::MarkerRemoved => {
                log.close()?;
                make_unclean(dir.path())?;
            }
        }
        log = Log::open(dir.path(), options())?;
        assert_eq!(offsets_of(&log, 0)?, Some((100, "t1".to_string())), "{how:?}");
        assert_eq!(offsets_of(&log, 1)?, None, "{how:?}: t3 was open, recovery aborted it");
        bulk_commits(&log, 0)?;
        let after = log.list_transactions();
        assert_eq!(after.len(), before.len(), "{how:?}");
        for (a, b) in after.iter().zip(&before) {
            assert_eq!(
                (&a.transactional_id, a.producer_id, a.producer_epoch),
                (&b.transactional_id, b.producer_id, b.producer_epoch),
                "{how:?}"
            );
        }
        let fresh = log.allocate_producer_id()?;
        assert!(after.iter().all(|d| d.producer_id < fresh) && !pids.contains(&fresh), "{how:?}: {fresh} was never handed out");
        pids.insert(fresh);
    }
    log.sync_all()?;
    assert_eq!(committed_values(&log, "a", 0)?, ["t1"]);
    assert!(committed_values(&log, "a", 1)?.is_empty());
    assert_eq!(committed_values(&log, "a", 2)?.len(), 400);
    Ok(())
}

/// What a concurrent reader saw, per partition: (offset, value) in the order read.
type Seen = Vec<Vec<(u64, String)>>;

fn follow(log: &Log, parts: &[(&str, u32)], isolation: IsolationLevel, stop: &std::sync::atomic::AtomicBool) -> BoxResult<Seen> {
    let mut seen: Seen = vec![Vec::new(); parts.len()];
    let mut offsets = vec![0u64; parts.len()];
    loop {
        let stopping = stop.load(std::sync::atomic::Ordering::Acquire);
        let mut progressed = false;
        for (i, (t, p)) in parts.iter().enumerate() {
            let f = log.fetch_with(t, *p, offsets[i], 4096, isolation)?;
            if !f.is_empty() {
                progressed = true;
                for r in f.records() {
                    let r = r?;
                    seen[i].push((r.offset, value_of(&r)));
                }
                offsets[i] = f.next_offset();
            }
        }
        if stopping && !progressed {
            return Ok(seen);
        }
        if !progressed {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn concurrent_readers_never_see_records_of_open_or_aborted_transactions() -> TestResult {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir()?;
    // The background thread syncs (flush.ms) so that durable high watermarks move.
    let log = Log::open(dir.path(), LogOptions::default())?;
    log.create_topic("d", 2, config(&[("flush.ms", "5")]))?;
    log.create_topic("w", 2, config(&[("high.watermark", "written")]))?;
    let parts: Vec<(&str, u32)> = vec![("d", 0), ("d", 1), ("w", 0), ("w", 1)];
    let stop = AtomicBool::new(false);
    let per_writer = 60 * scale();
    let (committed, aborted, committed_seen, uncommitted_seen) = std::thread::scope(|s| -> BoxResult<_> {
        let readers: Vec<_> = [IsolationLevel::ReadCommitted, IsolationLevel::ReadCommitted, IsolationLevel::ReadUncommitted]
            .into_iter()
            .map(|iso| {
                let (log, parts, stop) = (&log, &parts, &stop);
                s.spawn(move || follow(log, parts, iso, stop).map_err(|e| e.to_string()))
            })
            .collect();
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (log, parts) = (&log, &parts);
                s.spawn(move || -> Result<(Vec<String>, Vec<String>), String> {
                    let mut rng = Rng(0xC0C0 + w);
                    let p = log.transactional_producer(&format!("w{w}"), TransactionOptions::default()).map_err(|e| e.to_string())?;
                    let (mut committed, mut aborted) = (Vec::new(), Vec::new());
                    for n in 0..per_writer {
                        p.begin().map_err(|e| e.to_string())?;
                        let mut values = Vec::new();
                        for k in 0..1 + rng.below(4) {
                            let (t, part) = parts[rng.below(parts.len() as u64) as usize];
                            let v = format!("w{w}-{n}-{k}");
                            p.send(t, Some(part), &[Record::new(v.as_bytes())]).map_err(|e| e.to_string())?;
                            values.push(v);
                        }
                        if rng.below(3) == 0 {
                            p.abort().map_err(|e| e.to_string())?;
                            aborted.extend(values);
                        } else {
                            p.commit().map_err(|e| e.to_string())?;
                            committed.extend(values);
                        }
                    }
                    Ok((committed, aborted))
                })
            })
            .collect();
        let plain = {
            let (log, parts) = (&log, &parts);
            s.spawn(move || -> Result<Vec<String>, String> {
                let mut out = Vec::new();
                for n in 0..100 * scale() {
                    let (t, p) = parts[n % parts.len()];
                    let v = format!("plain-{n}");
                    log.append(t, Some(p), &[Record::new(v.as_bytes())], Acks::One).map_err(|e| e.to_string())?;
                    out.push(v);
                    std::thread::sleep(Duration::from_micros(300));
                }
                Ok(out)
            })
        };
        let (mut committed, mut aborted) = (Vec::new(), Vec::new());
        for w in writers {
            let (c, a) = w.join().map_err(|_| "a writer panicked")??;
            committed.extend(c);
            aborted.extend(a);
        }
        committed.extend(plain.join().map_err(|_| "the plain writer panicked")??);
        log.sync_all()?;
        stop.store(true, Ordering::Release);
        let mut seen = Vec::new();
        for r in readers {
            seen.push(r.join().map_err(|_| "a reader panicked")??);
        }
        let uncommitted = seen.pop().ok_or("no reader")?;
        Ok((committed, aborted, seen, uncommitted))
    })?;

    let mut all_committed = Vec::new();
    for (i, (t, p)) in parts.iter().enumerate() {
        assert_eq!(log.last_stable_offset(t, *p)?, log.high_watermark(t, *p)?, "{t}-{p}: nothing left open");
        let f: Vec<(u64, String)> = {
            let mut out = Vec::new();
            let mut offset = 0;
            loop {
                let f = log.fetch_with(t, *p, offset, 1 << 20, IsolationLevel::ReadCommitted)?;
                if f.is_empty() {
                    break out;
                }
                for r in f.records() {
                    let r = r?;
                    out.push((r.offset, value_of(&r)));
                }
                offset = f.next_offset();
            }
        };
        // Whatever a reader saw at any moment is a prefix of the final committed log: it never saw
        // a record that later turned out aborted, nor skipped one that later turned out committed.
        for (r, seen) in committed_seen.iter().enumerate() {
            assert_eq!(seen[i].as_slice(), &f[..seen[i].len().min(f.len())], "{t}-{p}: read_committed reader {r}");
            assert_eq!(seen[i].len(), f.len(), "{t}-{p}: reader {r} read to the end");
        }
        let everything: Vec<(u64, String)> = read_all(&log, t, *p)?.iter().map(|r| (r.offset, rec_value(r))).collect();
        assert_eq!(uncommitted_seen[i], everything, "{t}-{p}: the read_uncommitted reader saw every record, in order");
        all_committed.extend(f.into_iter().map(|(_, v)| v));
    }
    all_committed.sort();
    let mut committed = committed;
    committed.sort();
    assert_eq!(all_committed, committed, "exactly the committed records, each once");
    assert!(!aborted.is_empty() && aborted.iter().all(|v| !all_committed.contains(v)));
    Ok(())
}

/// `Fetched::last_stable_offset` is documented as the partition's last stable offset; a
/// read_uncommitted fetch reports the high watermark instead (`Partition::fetch_isolated` sets
/// the bound it reads to as the last stable offset), so a read_uncommitted reader cannot learn
/// how far read_committed readers are held back.
#[test]
fn a_read_uncommitted_fetch_reports_the_last_stable_offset() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, config(&[("high.watermark", "written")]))?;
    log.append("t", Some(0), &[Record::new(b"a")], Acks::One)?;
    let p = log.transactional_producer("x", TransactionOptions::default())?;
    p.begin()?;
    p.send("t", Some(0), &[Record::new(b"open")])?;
    log.append("t", Some(0), &[Record::new(b"b")], Acks::One)?;
    assert_eq!((log.last_stable_offset("t", 0)?, log.high_watermark("t", 0)?), (1, 3));
    let f = log.fetch_with("t", 0, 0, 1 << 20, IsolationLevel::ReadUncommitted)?;
    assert_eq!(f.last_stable_offset(), 1, "read_uncommitted from 0");
    let f = log.fetch("t", 0, 3, 1 << 20)?;
    assert_eq!(f.last_stable_offset(), 1, "read_uncommitted at the high watermark");
    Ok(())
}
