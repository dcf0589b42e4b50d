//! Exactly-once: the transaction coordinator (producer-id allocation and the durable state of
//! each transactional id, in the internal topic `__transaction_state`) and the idempotent and
//! transactional producers built on it.
//!
//! A commit is one round of fsyncs, in parallel: the transaction's data partitions and the
//! coordinator's `PrepareCommit` record, which lists where the transaction's data ends in each
//! partition. Once that round is done the decision is durable and the call returns; the commit
//! markers follow without waiting for a sync. Recovery completes a `PrepareCommit` whose data is
//! all there, aborts one whose data a power loss cut short (its commit never returned), and aborts
//! every other transaction left open. docs/DESIGN.md has the protocol and its proof sketch.

mod producer;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::Acks;
use crate::error::{Error, Result};
use crate::format::batch::{BatchHeader, ProducerFields};
use crate::format::txn::{
    MarkerType, TxnKey, TxnPartition, TxnRecord, TxnStatus, decode_pid_block, decode_txn_key, decode_txn_record, encode_pid_block,
    encode_txn_key, encode_txn_record,
};
use crate::groups::Groups;
use crate::internal::{KeyValue, LiveBatch, Table};
use crate::log::Partition;
use crate::log::partition::now_ms;

pub use crate::format::txn::TxnStatus as TransactionState;
pub use producer::{IdempotentProducer, ProducerBatch, TransactionOptions, TransactionalProducer};

/// Name of the internal topic that holds the coordinator's state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Producer ids are reserved durably in blocks of this many.
const PID_BLOCK: u64 = 1000;
/// Longest `transaction.timeout.ms` accepted (Kafka's `transaction.max.timeout.ms`).
pub const MAX_TRANSACTION_TIMEOUT_MS: u32 = 15 * 60 * 1000;
/// Longest transactional id accepted.
pub const MAX_TRANSACTIONAL_ID_LEN: usize = 1024;

/// A transactional id and where its transaction stands, as [`crate::Log::list_transactions`]
/// reports it (the equivalent of `kafka-transactions.sh describe`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id bound to it.
    pub producer_id: i64,
    /// The current epoch.
    pub producer_epoch: i16,
    /// The state.
    pub state: TransactionState,
    /// `transaction.timeout.ms`.
    pub timeout_ms: u32,
    /// When the open transaction began (ms since the epoch), if one is open.
    pub start_ms: Option<i64>,
    /// The partitions the open transaction has written to, sorted.
    pub partitions: Vec<(String, u32)>,
}

/// The in-memory state of one transactional id, under its own lock: a producer holds it for the
/// whole of each call, so a timeout or a new incarnation never interleaves with a send or commit.
pub(crate) struct TxnInner {
    pub producer_id: i64,
    pub epoch: i16,
    pub status: TxnStatus,
    pub timeout_ms: u32,
    pub started_ms: i64,
    /// Partitions written in the open transaction, with the offset after its data there.
    pub partitions: BTreeMap<(Arc<str>, u32), (Arc<Partition>, u64)>,
    /// The offset after the transaction's offsets in `__consumer_offsets`, if it sent any.
    pub offsets_end: Option<u64>,
    /// Commit markers written but perhaps not durable yet: the partition, the committed
    /// transaction's end offset there, and the offset after the marker. Every durable record of
    /// this id lists them until they are synced, so that recovery can finish those commits.
    pub unmarked: Vec<(Arc<Partition>, TxnPartition, u64)>,
}

pub(crate) struct TxnEntry {
    pub id: String,
    pub inner: Mutex<TxnInner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What is in `__transaction_state`, under the lock that orders writes to it.
#[derive(Default)]
struct Durable {
    block_end: u64,
    records: BTreeMap<String, TxnRecord>,
}

pub(crate) struct Coordinator {
    table: Table,
    durable: Mutex<Durable>,
    /// Producer ids below this have been handed out (appends from others are refused).
    pid_limit: AtomicU64,
    /// The next producer id to hand out, and the transactional ids.
    state: Mutex<(u64, HashMap<String, Arc<TxnEntry>>)>,
}

/// How the coordinator reaches partitions: by name, and the offsets topic through its groups.
pub(crate) trait Partitions {
    fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>>;
    fn all(&self) -> Vec<Arc<Partition>>;
    fn groups(&self) -> &Groups;
}

/// Syncs each partition up to its target offset, all at once: one thread per partition beyond
/// the first, so the round costs about one fsync, not one per partition.
pub(crate) fn sync_parallel(targets: &[(Arc<Partition>, u64)]) -> Result<()> {
    let Some(((first, first_target), rest)) = targets.split_first() else { return Ok(()) };
    let rest: Vec<_> = rest.iter().filter(|(p, t)| p.durable_offset() < *t).collect();
    if rest.is_empty() {
        return first.sync_to(*first_target);
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = rest.iter().map(|(p, t)| s.spawn(move || p.sync_to(*t))).collect();
        let mut result = first.sync_to(*first_target);
        for h in handles {
            let r = h.join().unwrap_or_else(|_| Err(Error::InvalidArgument("a sync thread panicked".into())));
            if result.is_ok() {
                result = r;
            }
        }
        result
    })
}

/// Ends producer `pid`'s transaction in one partition (through the groups for the offsets topic).
fn end_in(parts: &dyn Partitions, p: &Arc<Partition>, pid: i64, epoch: i16, marker: MarkerType) -> Result<bool> {
    if Arc::ptr_eq(p, parts.groups().partition()) {
        parts.groups().end_transaction(pid, epoch, marker)
    } else {
        p.write_marker(pid, epoch, marker)
    }
}

impl Coordinator {
    /// Loads the coordinator's state from `__transaction_state`.
    pub fn load(partition: Arc<Partition>) -> Result<Coordinator> {
        let table = Table::new(partition);
        let mut d = Durable::default();
        table.replay(|_: &BatchHeader, r| match r.key.and_then(decode_txn_key) {
            Some(TxnKey::PidBlock) => {
                if let Some(end) = r.value.and_then(decode_pid_block) {
                    d.block_end = d.block_end.max(end);
                }
            }
            Some(TxnKey::Txn(id)) => match r.value.map(decode_txn_record) {
                None => {
                    d.records.remove(&id);
                }
                Some(Some(rec)) => {
                    d.records.insert(id, rec);
                }
                Some(None) => log::warn!("{TRANSACTION_STATE_TOPIC}: skipping an unreadable record at offset {}", r.offset),
            },
            None => log::warn!("{TRANSACTION_STATE_TOPIC}: skipping a record with an unreadable key at offset {}", r.offset),
        })?;
        // Ids of the last block may have been handed out before a crash: start a fresh block, and
        // accept appends from any id below it (a producer may retry across the crash).
        let next = d.block_end;
        let limit = next;
        let entries = d
            .records
            .iter()
            .map(|(id, r)| {
                let inner = TxnInner {
                    producer_id: r.producer_id,
                    epoch: r.epoch,
                    status: r.status,
                    timeout_ms: r.timeout_ms,
                    started_ms: 0,
                    partitions: BTreeMap::new(),
                    offsets_end: None,
                    unmarked: Vec::new(),
                };
                (id.clone(), Arc::new(TxnEntry { id: id.clone(), inner: Mutex::new(inner) }))
            })
            .collect();
        Ok(Coordinator { table, durable: Mutex::new(d), pid_limit: AtomicU64::new(limit), state: Mutex::new((next, entries)) })
    }

    /// Producer ids below `floor` were handed out elsewhere (by processes in shared mode, which
    /// allocate from the directory's `producer-ids` file): never hand them out again, and accept
    /// appends from them.
    pub fn raise_pid_floor(&self, floor: u64) {
        let mut st = lock(&self.state);
        st.0 = st.0.max(floor);
        self.pid_limit.fetch_max(floor, Ordering::AcqRel);
    }

    /// Every producer id below this may have been handed out (the durable reservation).
    pub fn reserved_pids(&self) -> u64 {
        lock(&self.durable).block_end.max(lock(&self.state).0)
    }

    /// The partition of `__transaction_state`.
    pub fn partition(&self) -> &Arc<Partition> {
        &self.table.partition
    }

    /// Whether `pid` was handed out by this log.
    pub fn allocated(&self, pid: i64) -> bool {
        pid >= 0 && (pid as u64) < self.pid_limit.load(Ordering::Acquire)
    }

    fn persist(&self, key: TxnKey, record: Option<TxnRecord>, block_end: Option<u64>, acks: Acks) -> Result<u64> {
        let mut d = lock(&self.durable);
        let value = match (&key, &record) {
            (TxnKey::PidBlock, _) => Some(encode_pid_block(block_end.unwrap_or(d.block_end))),
            (TxnKey::Txn(_), Some(r)) => Some(encode_txn_record(r)),
            (TxnKey::Txn(_), None) => None,
        };
        let kv: KeyValue = (encode_txn_key(&key), value);
        let at = self.table.write(&[kv], ProducerFields::NONE, acks, || {
            let mut records = vec![(encode_txn_key(&TxnKey::PidBlock), Some(encode_pid_block(d.block_end)))];
            records.extend(d.records.iter().map(|(id, r)| (encode_txn_key(&TxnKey::Txn(id.clone())), Some(encode_txn_record(r)))));
            vec![LiveBatch { producer: ProducerFields::NONE, records }]
        })?;
        match key {
            TxnKey::PidBlock => d.block_end = block_end.unwrap_or(d.block_end),
            TxnKey::Txn(id) => match record {
                Some(r) => {
                    d.records.insert(id, r);
                }
                None => {
                    d.records.remove(&id);
                }
            },
        }
        Ok(at.last_offset + 1)
    }

    /// Hands out a producer id that was never handed out before, reserving a new block durably
    /// when the current one is used up.
    pub fn allocate_pid(&self) -> Result<i64> {
        let mut st = lock(&self.state);
        let block_end = lock(&self.durable).block_end;
        if st.0 >= block_end {
            let end = st.0 + PID_BLOCK;
            self.persist(TxnKey::PidBlock, None, Some(end), Acks::All)?;
        }
        let pid = st.0;
        st.0 += 1;
        self.pid_limit.fetch_max(st.0, Ordering::AcqRel);
        Ok(pid as i64)
    }

    /// The durable record of `inner` in `status`: also lists the earlier commits whose markers may
    /// not be durable yet (those now durable are dropped from the list first).
    fn record(&self, inner: &mut TxnInner, status: TxnStatus, partitions: Vec<TxnPartition>) -> TxnRecord {
        inner.unmarked.retain(|(p, _, marker_end)| !p.is_deleted() && p.durable_offset() < *marker_end);
        TxnRecord {
            producer_id: inner.producer_id,
            epoch: inner.epoch,
            status,
            timeout_ms: inner.timeout_ms,
            updated_ms: now_ms(),
            partitions,
            committed: inner.unmarked.iter().map(|(_, tp, _)| tp.clone()).collect(),
        }
    }

    /// Binds `id` to a producer for a new incarnation: the same producer id with the next epoch
    /// (a new id once the epoch is exhausted), after aborting what the previous incarnation left
    /// open. The previous incarnation is fenced from then on.
    pub fn init(&self, parts: &dyn Partitions, id: &str, timeout_ms: u32) -> Result<(Arc<TxnEntry>, i64, i16)> {
        if id.is_empty() || id.len() > MAX_TRANSACTIONAL_ID_LEN {
            return Err(Error::InvalidTransactionState(format!(
                "a transactional id must be 1 to {MAX_TRANSACTIONAL_ID_LEN} bytes, not {}",
                id.len()
            )));
        }
        if timeout_ms == 0 || timeout_ms > MAX_TRANSACTION_TIMEOUT_MS {
            return Err(Error::InvalidArgument(format!(
                "transaction.timeout.ms must be between 1 and {MAX_TRANSACTION_TIMEOUT_MS}, not {timeout_ms}"
            )));
        }
        let entry = {
            let mut st = lock(&self.state);
            st.1.entry(id.to_string())
                .or_insert_with(|| {
                    let inner = TxnInner {
                        producer_id: -1,
                        epoch: -1,
                        status: TxnStatus::Empty,
                        timeout_ms,
                        started_ms: 0,
                        partitions: BTreeMap::new(),
                        offsets_end: None,
                        unmarked: Vec::new(),
                    };
                    Arc::new(TxnEntry { id: id.to_string(), inner: Mutex::new(inner) })
                })
                .clone()
        };
        let mut inner = lock(&entry.inner);
        if inner.producer_id >= 0 {
            match inner.status {
                // A commit whose fsync round or markers failed: whether its decision is durable is
                // unknown here, so only recovery (which reads what is on disk) may decide it.
                TxnStatus::PrepareCommit => {
                    return Err(Error::InvalidTransactionState(format!(
                        "the last commit of {id:?} failed part way (an I/O error) and is in doubt; reopen the log to resolve it"
                    )));
                }
                TxnStatus::Ongoing | TxnStatus::PrepareAbort => {
                    // Abort with a new epoch, which also fences the old incarnation in those partitions.
                    if inner.epoch < i16::MAX - 1 {
                        inner.epoch += 1;
                    }
                    self.finish(parts, &entry.id, &mut inner, MarkerType::Abort)?;
                }
                _ => {}
            }
        }
        if inner.producer_id < 0 || inner.epoch >= i16::MAX - 1 {
            inner.producer_id = self.allocate_pid()?;
            inner.epoch = 0;
        } else {
            inner.epoch += 1;
        }
        inner.timeout_ms = timeout_ms;
        inner.status = TxnStatus::Empty;
        let rec = self.record(&mut inner, TxnStatus::Empty, Vec::new());
        self.persist(TxnKey::Txn(id.to_string()), Some(rec), None, Acks::All)?;
        let (pid, epoch) = (inner.producer_id, inner.epoch);
        drop(inner);
        Ok((entry, pid, epoch))
    }

    /// Commits the open transaction of `inner`: one parallel round of fsyncs makes its data and
    /// the `PrepareCommit` decision durable, then the markers are written.
    pub fn commit(&self, parts: &dyn Partitions, id: &str, inner: &mut TxnInner) -> Result<()> {
        let mut targets: Vec<(Arc<Partition>, u64)> = Vec::new();
        let mut listed = Vec::new();
        for ((topic, p), (part, end)) in &inner.partitions {
            if part.is_deleted() {
                continue;
            }
            targets.push((part.clone(), *end));
            listed.push(TxnPartition { topic: topic.to_string(), partition: *p, end_offset: *end });
        }
        if let Some(end) = inner.offsets_end {
            let p = parts.groups().partition();
            targets.push((p.clone(), end));
            listed.push(TxnPartition { topic: p.topic.to_string(), partition: 0, end_offset: end });
        }
        if targets.is_empty() {
            inner.status = TxnStatus::CompleteCommit;
            return Ok(());
        }
        let rec = self.record(inner, TxnStatus::PrepareCommit, listed);
        // From here until the markers are written the transaction is in doubt: sends and a second
        // commit are refused, and a reopen decides it.
        inner.status = TxnStatus::PrepareCommit;
        let end = self.persist(TxnKey::Txn(id.to_string()), Some(rec), None, Acks::One)?;
        targets.push((self.partition().clone(), end));
        sync_parallel(&targets)?;
        // The decision is durable: the commit has happened, whatever follows.
        if let Err(e) = self.finish(parts, id, inner, MarkerType::Commit) {
            log::error!("transaction {id:?} committed, but writing its markers failed ({e}); the next open completes it");
        }
        Ok(())
    }

    /// Writes `marker` to every partition of the open transaction and records the outcome, syncing
    /// nothing: a lost abort marker is what recovery does anyway, and a lost commit marker is
    /// rewritten by recovery from the durable `PrepareCommit`, or from the `committed` list that
    /// every later record of this id carries until the markers are synced.
    pub fn finish(&self, parts: &dyn Partitions, id: &str, inner: &mut TxnInner, marker: MarkerType) -> Result<()> {
        let (pid, epoch) = (inner.producer_id, inner.epoch);
        let mut touched: Vec<(Arc<Partition>, TxnPartition)> = inner
            .partitions
            .iter()
            .map(|((t, p), (part, end))| (part.clone(), TxnPartition { topic: t.to_string(), partition: *p, end_offset: *end }))
            .collect();
        if let Some(end) = inner.offsets_end {
            let g = parts.groups().partition();
            touched.push((g.clone(), TxnPartition { topic: g.topic.to_string(), partition: 0, end_offset: end }));
        }
        let mut first_err = None;
        for (p, tp) in touched {
            if p.is_deleted() {
                continue;
            }
            match end_in(parts, &p, pid, epoch, marker) {
                Ok(true) if marker == MarkerType::Commit => {
                    let marker_end = p.log_end_offset();
                    inner.unmarked.push((p, tp, marker_end));
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        inner.partitions.clear();
        inner.offsets_end = None;
        let status = match marker {
            MarkerType::Commit => TxnStatus::CompleteCommit,
            MarkerType::Abort => TxnStatus::CompleteAbort,
        };
        inner.status = status;
        // Not synced, and safe whenever it becomes durable: it still lists the commits whose
        // markers are not synced yet.
        let rec = self.record(inner, status, Vec::new());
        self.persist(TxnKey::Txn(id.to_string()), Some(rec), None, Acks::One)?;
        Ok(())
    }

    /// Aborts the open transaction of `id` and bumps its epoch, fencing the producer that opened
    /// it (a timeout, or an operator's `abort`). Returns whether a transaction was open.
    pub fn abort_and_fence(&self, parts: &dyn Partitions, id: &str, inner: &mut TxnInner) -> Result<bool> {
        if inner.status != TxnStatus::Ongoing {
            return Ok(false);
        }
        if inner.epoch >= i16::MAX - 1 {
            // Out of epochs: markers with the current epoch; the producer id is retired at the next init.
            self.finish(parts, id, inner, MarkerType::Abort)?;
            return Ok(true);
        }
        inner.epoch += 1;
        self.finish(parts, id, inner, MarkerType::Abort)?;
        Ok(true)
    }

    /// Aborts (and fences) transactions open longer than their timeout.
    pub fn abort_expired(&self, parts: &dyn Partitions, now: i64) {
        let entries: Vec<Arc<TxnEntry>> = lock(&self.state).1.values().cloned().collect();
        for e in entries {
            // A producer in the middle of a call holds the lock: it is not idle.
            let Ok(mut inner) = e.inner.try_lock() else { continue };
            if inner.status == TxnStatus::Ongoing && now.saturating_sub(inner.started_ms) >= i64::from(inner.timeout_ms) {
                log::warn!("transaction {:?} timed out after {} ms; aborting it", e.id, inner.timeout_ms);
                if let Err(err) = self.abort_and_fence(parts, &e.id, &mut inner) {
                    log::error!("aborting timed-out transaction {:?}: {err}", e.id);
                }
            }
        }
    }

    /// The entry of a transactional id.
    pub fn entry(&self, id: &str) -> Option<Arc<TxnEntry>> {
        lock(&self.state).1.get(id).cloned()
    }

    /// Every transactional id, sorted.
    pub fn describe_all(&self) -> Vec<TransactionDescription> {
        let mut entries: Vec<Arc<TxnEntry>> = lock(&self.state).1.values().cloned().collect();
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        entries.iter().filter_map(|e| describe(e)).collect()
    }

    /// Completes or aborts what a crash left, from the durable records: commits listed as
    /// committed whose markers are missing are finished; a `PrepareCommit` whose data is all present
    /// is completed, one whose data a power loss cut short is aborted (its commit never returned);
    /// then every other transaction still open in any partition is aborted. A marker is written
    /// only where the producer's open transaction began below the recorded end offset, so a stale
    /// record never ends a later transaction. Syncs the markers, then records the outcomes.
    pub fn recover(&self, parts: &dyn Partitions) -> Result<()> {
        let records: Vec<(String, TxnRecord)> = lock(&self.durable).records.iter().map(|(id, r)| (id.clone(), r.clone())).collect();
        // Epochs reach partitions (in markers, and in snapshots of fenced epochs) before, or
        // without, a durable record of them: the coordinator continues from the highest seen.
        let all = parts.all();
        let mut touched: Vec<Arc<Partition>> = Vec::new();
        let mut outcomes = Vec::new();
        for (id, mut rec) in records {
            let pid = rec.producer_id;
            let seen = all.iter().filter_map(|p| p.producer_epoch(pid)).max().unwrap_or(rec.epoch);
            let raised = seen > rec.epoch;
            rec.epoch = rec.epoch.max(seen);
            if !raised && rec.committed.is_empty() && !matches!(rec.status, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort) {
                continue;
            }
            let mut end = |tp: &TxnPartition, marker: MarkerType| -> Result<()> {
                let Some(p) = parts.partition(&tp.topic, tp.partition) else { return Ok(()) };
                if p.open_transaction_start(pid).is_some_and(|first| first < tp.end_offset) {
                    end_in(parts, &p, pid, rec.epoch, marker)?;
                    touched.push(p);
                }
                Ok(())
            };
            for tp in &rec.committed {
                end(tp, MarkerType::Commit)?;
            }
            let status = match rec.status {
                TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => {
                    let complete = rec.status == TxnStatus::PrepareCommit
                        && rec
                            .partitions
                            .iter()
                            .all(|tp| parts.partition(&tp.topic, tp.partition).is_none_or(|p| p.log_end_offset() >= tp.end_offset));
                    let marker = if complete { MarkerType::Commit } else { MarkerType::Abort };
                    log::info!("transaction {id:?} was {} when the log closed; completing it as {marker:?}", rec.status.name());
                    for tp in &rec.partitions {
                        end(tp, marker)?;
                    }
                    if complete { TxnStatus::CompleteCommit } else { TxnStatus::CompleteAbort }
                }
                other => other,
            };
            outcomes.push((id, TxnRecord { status, partitions: Vec::new(), committed: Vec::new(), updated_ms: now_ms(), ..rec }));
        }
        touched.extend(abort_open_transactions(parts)?);
        // The markers first: a record that no longer lists a commit must not be durable before
        // the commit's markers are.
        let targets: Vec<(Arc<Partition>, u64)> = touched.into_iter().map(|p| (p.clone(), p.log_end_offset())).collect();
        sync_parallel(&targets)?;
        for (id, rec) in outcomes {
            let (status, epoch) = (rec.status, rec.epoch);
            self.persist(TxnKey::Txn(id.clone()), Some(rec), None, Acks::One)?;
            if let Some(e) = self.entry(&id) {
                let mut inner = lock(&e.inner);
                inner.status = status;
                inner.epoch = epoch;
            }
        }
        self.partition().sync()
    }
}

/// Aborts every transaction open in any partition (at open, no producer of an earlier process is
/// alive to finish one). Returns the partitions that got a marker.
pub(crate) fn abort_open_transactions(parts: &dyn Partitions) -> Result<Vec<Arc<Partition>>> {
    let mut touched = Vec::new();
    for p in parts.all() {
        let open = p.open_transactions();
        for (pid, epoch) in &open {
            log::info!("{}-{}: aborting the transaction of producer {pid} left open", p.topic, p.id);
            end_in(parts, &p, *pid, *epoch, MarkerType::Abort)?;
        }
        if !open.is_empty() {
            touched.push(p);
        }
    }
    Ok(touched)
}

fn describe(e: &TxnEntry) -> Option<TransactionDescription> {
    let inner = lock(&e.inner);
    if inner.producer_id < 0 {
        return None;
    }
    let open = matches!(inner.status, TxnStatus::Ongoing | TxnStatus::PrepareCommit | TxnStatus::PrepareAbort);
    let mut partitions: Vec<(String, u32)> = inner.partitions.keys().map(|(t, p)| (t.to_string(), *p)).collect();
    if inner.offsets_end.is_some() {
        partitions.push((crate::groups::CONSUMER_OFFSETS_TOPIC.to_string(), 0));
    }
    partitions.sort();
    Some(TransactionDescription {
        transactional_id: e.id.clone(),
        producer_id: inner.producer_id,
        producer_epoch: inner.epoch,
        state: inner.status,
        timeout_ms: inner.timeout_ms,
        start_ms: open.then_some(inner.started_ms),
        partitions,
    })
}

impl TxnEntry {
    pub(crate) fn describe(&self) -> Option<TransactionDescription> {
        describe(self)
    }
}
