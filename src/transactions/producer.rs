//! The idempotent and transactional producers: the engine-level handles that carry a producer id,
//! epoch and per-partition sequence numbers (the producer client of issue 10 builds on them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Coordinator, TxnEntry, TxnInner, lock};
use crate::catalog::Shared;
use crate::config::Acks;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::batch::ProducerFields;
use crate::format::txn::{MarkerType, TxnStatus, seq_after};
use crate::groups::OffsetCommit;
use crate::log::partition::now_ms;
use crate::log::{AppendResult, Partition};

/// The producer fields of a batch for [`crate::Log::append_idempotent`]: who sends it and the
/// sequence number of its first record in that partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// A producer id from [`crate::Log::allocate_producer_id`].
    pub producer_id: i64,
    /// The producer's epoch (0 for an id from `allocate_producer_id`).
    pub producer_epoch: i16,
    /// Sequence of the batch's first record: 0 for the producer's first batch in the partition,
    /// then the previous batch's first sequence plus its record count (wrapping after `i32::MAX`).
    pub base_sequence: i32,
}

/// Options of a transactional producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransactionOptions {
    pub(crate) timeout: Duration,
}

impl Default for TransactionOptions {
    fn default() -> Self {
        TransactionOptions { timeout: Duration::from_secs(60) }
    }
}

impl TransactionOptions {
    /// `transaction.timeout.ms`: a transaction open longer than this is aborted by the log and
    /// its producer fenced, so an abandoned transaction never holds read_committed readers back
    /// for longer. Default 60 s, at most 15 minutes.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
}

type Sequences = HashMap<(Arc<str>, u32), i32>;

/// Appends with the producer's sequence; if the partition no longer knows the producer (its state
/// expired after `producer.id.expiration.ms`, or the topic was deleted and created again), starts
/// the partition's sequence again at 0, as Kafka's producer does (KIP-360): the partition has
/// nothing left to detect duplicates against. Returns where the batch went and the sequence used.
fn append_resetting(part: &Partition, records: &[Record<'_>], acks: Acks, mut fields: ProducerFields) -> Result<(AppendResult, i32)> {
    match part.append(records, acks, fields) {
        Err(Error::UnknownProducerId { .. }) => {
            fields.base_sequence = 0;
            Ok((part.append(records, acks, fields)?, 0))
        }
        other => Ok((other?, fields.base_sequence)),
    }
}

/// A producer whose retried sends are stored once: Kafka's `enable.idempotence=true`.
///
/// Each send carries the producer id and a sequence number per partition; a send that is retried
/// after an error (with the same records) returns the offsets where the first attempt was stored,
/// if it was, and stores nothing. Sends from one handle are serialized. `Send + Sync`.
///
/// ```
/// # fn main() -> runnel::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
/// # log.create_topic("t", 1, runnel::TopicConfig::default())?;
/// let producer = log.idempotent_producer()?;
/// let at = producer.send("t", Some(0), &[runnel::Record::new(b"once")], runnel::Acks::All)?;
/// assert_eq!(at.base_offset, 0);
/// # Ok(()) }
/// ```
pub struct IdempotentProducer {
    shared: Arc<Shared>,
    producer_id: i64,
    sequences: Mutex<Sequences>,
}

impl std::fmt::Debug for IdempotentProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotentProducer").field("producer_id", &self.producer_id).finish()
    }
}

impl IdempotentProducer {
    pub(crate) fn new(shared: Arc<Shared>, producer_id: i64) -> IdempotentProducer {
        IdempotentProducer { shared, producer_id, sequences: Mutex::new(HashMap::new()) }
    }

    /// The producer id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// Appends `records` as one batch, as [`crate::Log::append`] does, with the next sequence
    /// number for the partition. After an error, sending the same records again is safe.
    pub fn send(&self, topic: &str, partition: Option<u32>, records: &[Record<'_>], acks: Acks) -> Result<AppendResult> {
        let part = self.shared.resolve(topic, partition, records)?;
        let mut seqs = lock(&self.sequences);
        let key = (part.topic.clone(), part.id);
        let seq = seqs.get(&key).copied().unwrap_or(0);
        let fields = ProducerFields { producer_id: self.producer_id, producer_epoch: 0, base_sequence: seq, transactional: false };
        let (at, seq) = append_resetting(&part, records, acks, fields)?;
        seqs.insert(key, seq_after(seq, records.len()));
        Ok(at)
    }
}

/// A transactional producer: Kafka's producer with a `transactional.id`. Its records in any
/// topics and partitions, and the consumer offsets it sends, become visible together when it
/// commits, and never if it aborts or the process dies first.
///
/// Creating it ([`crate::Log::transactional_producer`]) aborts whatever an earlier producer with
/// the same transactional id left open and fences that producer. `Send + Sync`; calls are
/// serialized. Dropping it with a transaction open aborts the transaction.
///
/// ```
/// use runnel::{Acks, IsolationLevel, Record, TransactionOptions};
/// # fn main() -> runnel::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
/// # log.create_topic("a", 2, runnel::TopicConfig::default())?;
/// let producer = log.transactional_producer("app-1", TransactionOptions::default())?;
/// producer.begin()?;
/// producer.send("a", Some(0), &[Record::new(b"x")])?;
/// producer.send("a", Some(1), &[Record::new(b"y")])?;
/// assert!(log.fetch_with("a", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)?.is_empty());
/// producer.commit()?;
/// let fetched = log.fetch_with("a", 0, 0, 1 << 20, IsolationLevel::ReadCommitted)?;
/// assert_eq!(fetched.records().count(), 1);
/// # Ok(()) }
/// ```
pub struct TransactionalProducer {
    shared: Arc<Shared>,
    coordinator: Arc<Coordinator>,
    entry: Arc<TxnEntry>,
    producer_id: i64,
    epoch: i16,
    sequences: Mutex<Sequences>,
}

impl std::fmt::Debug for TransactionalProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalProducer")
            .field("transactional_id", &self.entry.id)
            .field("producer_id", &self.producer_id)
            .field("epoch", &self.epoch)
            .finish()
    }
}

impl TransactionalProducer {
    pub(crate) fn new(shared: Arc<Shared>, coordinator: Arc<Coordinator>, entry: Arc<TxnEntry>, producer_id: i64, epoch: i16) -> Self {
        TransactionalProducer { shared, coordinator, entry, producer_id, epoch, sequences: Mutex::new(HashMap::new()) }
    }

    /// The transactional id.
    pub fn transactional_id(&self) -> &str {
        &self.entry.id
    }

    /// The producer id bound to the transactional id.
    pub fn producer_id(&self) -> i64 {
        self.producer_id
    }

    /// This incarnation's epoch.
    pub fn epoch(&self) -> i16 {
        self.epoch
    }

    /// Locks the transaction's state, after checking that the log is open and that this producer
    /// is still the current incarnation.
    fn guard(&self) -> Result<MutexGuard<'_, TxnInner>> {
        let inner = lock(&self.entry.inner);
        self.shared.check_open()?;
        if inner.producer_id != self.producer_id || inner.epoch != self.epoch {
            return Err(Error::ProducerFenced { producer_id: self.producer_id, epoch: self.epoch, current_epoch: inner.epoch });
        }
        Ok(inner)
    }

    fn ongoing(inner: &TxnInner, what: &str) -> Result<()> {
        match inner.status {
            TxnStatus::Ongoing => Ok(()),
            TxnStatus::PrepareCommit | TxnStatus::PrepareAbort => Err(Error::InvalidTransactionState(format!(
                "cannot {what}: the last commit is in doubt after an I/O error; reopen the log to resolve it"
            ))),
            _ => Err(Error::InvalidTransactionState(format!("cannot {what}: no transaction is open; call begin first"))),
        }
    }

    /// Opens a transaction.
    pub fn begin(&self) -> Result<()> {
        let mut inner = self.guard()?;
        match inner.status {
            TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
                inner.status = TxnStatus::Ongoing;
                inner.started_ms = now_ms();
                Ok(())
            }
            TxnStatus::Ongoing => Err(Error::InvalidTransactionState("a transaction is already open".into())),
            _ => Self::ongoing(&inner, "begin"),
        }
    }

    /// Appends `records` as one batch in the open transaction, to `partition` or the one the
    /// default partitioner picks. The records are written now (not synced) and become visible to
    /// read_committed readers when the transaction commits.
    pub fn send(&self, topic: &str, partition: Option<u32>, records: &[Record<'_>]) -> Result<AppendResult> {
        let mut inner = self.guard()?;
        Self::ongoing(&inner, "send")?;
        let part = self.shared.resolve(topic, partition, records)?;
        let mut seqs = lock(&self.sequences);
        let key = (part.topic.clone(), part.id);
        let seq = seqs.get(&key).copied().unwrap_or(0);
        let fields = ProducerFields { producer_id: self.producer_id, producer_epoch: self.epoch, base_sequence: seq, transactional: true };
        let (at, seq) = append_resetting(&part, records, Acks::One, fields)?;
        seqs.insert(key.clone(), seq_after(seq, records.len()));
        let slot = inner.partitions.entry(key).or_insert_with(|| (part.clone(), 0));
        slot.1 = slot.1.max(at.last_offset + 1);
        Ok(at)
    }

    /// Adds a consumer group's offsets to the open transaction (Kafka's
    /// `sendOffsetsToTransaction`): they are committed with the transaction's records, or not at all.
    pub fn send_offsets_to_transaction(&self, group: &str, offsets: &[OffsetCommit<'_>]) -> Result<()> {
        let mut inner = self.guard()?;
        Self::ongoing(&inner, "send offsets")?;
        self.shared.check_offset_commits(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let end = self.shared.groups.commit_in_transaction(self.producer_id, self.epoch, group, offsets)?;
        inner.offsets_end = Some(inner.offsets_end.unwrap_or(0).max(end));
        Ok(())
    }

    /// Commits the open transaction. When this returns `Ok` the transaction is durable (one
    /// parallel round of fsyncs, whatever the topics' acks) and will be visible to read_committed
    /// readers as a whole, within about one more fsync.
    pub fn commit(&self) -> Result<()> {
        let mut inner = self.guard()?;
        Self::ongoing(&inner, "commit")?;
        self.coordinator.commit(&*self.shared, &self.entry.id, &mut inner)
    }

    /// Aborts the open transaction: none of its records or offsets will ever be visible to
    /// read_committed readers.
    pub fn abort(&self) -> Result<()> {
        let mut inner = self.guard()?;
        Self::ongoing(&inner, "abort")?;
        self.coordinator.finish(&*self.shared, &self.entry.id, &mut inner, MarkerType::Abort)
    }
}

impl Drop for TransactionalProducer {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.guard()
            && inner.status == TxnStatus::Ongoing
            && let Err(e) = self.coordinator.finish(&*self.shared, &self.entry.id, &mut inner, MarkerType::Abort)
        {
            log::error!("aborting the open transaction of {:?} on drop: {e}", self.entry.id);
        }
    }
}
