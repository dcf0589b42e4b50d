//! Consumer-group offsets, stored in the internal topic `__consumer_offsets` as Kafka stores them,
//! with an in-memory view rebuilt from that topic when the log opens.
//!
//! One call (a commit, a group delete, a topic's offsets removal) is one batch, so it is atomic.
//! Offsets sent in a transaction are written as that producer's transactional batch and take effect
//! with its commit marker, as in Kafka. The topic is kept small by snapshots (see [`crate::internal`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::Error;
use crate::config::Acks;
use crate::error::Result;
use crate::format::batch::ProducerFields;
use crate::format::batch::{BatchHeader, RecordView};
pub use crate::format::meta::OffsetAndMetadata;
use crate::format::meta::{
    decode_offset_key as decode_key, decode_offset_value as decode_value, encode_offset_key as encode_key,
    encode_offset_value as encode_value,
};
use crate::format::txn::{MarkerType, decode_marker_key};
use crate::internal::{KeyValue, LiveBatch, Table};
use crate::log::partition::{Partition, now_ms};

/// Name of the internal topic that holds committed offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// One offset to commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetCommit<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: u32,
    /// The next offset to consume.
    pub offset: u64,
    /// Free-form text stored with the commit.
    pub metadata: &'a str,
}

/// Lag of a group on one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The committed offset.
    pub committed: u64,
    /// The partition's high watermark.
    pub high_watermark: u64,
    /// `high_watermark - committed` (0 if the commit is ahead).
    pub lag: u64,
}

type Key = (String, u32);
type GroupState = BTreeMap<String, BTreeMap<Key, OffsetAndMetadata>>;
/// Offsets sent in a transaction, applied when its commit marker is written.
type Pending = BTreeMap<i64, (i16, Vec<(String, Key, OffsetAndMetadata)>)>;

/// The committed offsets a replay of `__consumer_offsets` arrives at: the writer's state at open,
/// and what a read-only handle folds in as the writer publishes more.
#[derive(Default)]
pub(crate) struct OffsetsFold {
    pub(crate) state: GroupState,
    pub(crate) pending: Pending,
}

impl OffsetsFold {
    /// Folds in one record of `__consumer_offsets` (control batches included).
    pub(crate) fn fold(&mut self, h: &BatchHeader, r: RecordView<'_>) {
        if h.is_control() {
            let commit = r.key.and_then(decode_marker_key) == Some(MarkerType::Commit);
            if let Some((_, offsets)) = self.pending.remove(&h.producer_id).filter(|_| commit) {
                for (g, k, v) in offsets {
                    apply(&mut self.state, g, k, Some(v));
                }
            }
            return;
        }
        let Some((group, topic, p)) = r.key.and_then(decode_key) else {
            log::warn!("{CONSUMER_OFFSETS_TOPIC}: skipping a record at offset {} with an unreadable key", r.offset);
            return;
        };
        let value = match r.value.map(decode_value) {
            Some(None) => {
                log::warn!("{CONSUMER_OFFSETS_TOPIC}: skipping a record at offset {} with an unreadable value", r.offset);
                return;
            }
            Some(Some(v)) => Some(v),
            None => None,
        };
        if h.is_transactional() {
            let e = self.pending.entry(h.producer_id).or_insert_with(|| (h.producer_epoch, Vec::new()));
            e.1.extend(value.map(|v| (group, (topic, p), v)));
        } else {
            apply(&mut self.state, group, (topic, p), value);
        }
    }

    /// The offset a group committed for a partition.
    pub(crate) fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<OffsetAndMetadata> {
        self.state.get(group).and_then(|g| g.get(&(topic.to_string(), partition)).cloned())
    }

    /// Every offset a group committed.
    pub(crate) fn all_committed(&self, group: &str) -> Vec<(String, u32, OffsetAndMetadata)> {
        self.state.get(group).map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect()).unwrap_or_default()
    }
}

pub(crate) struct Groups {
    table: Table,
    state: Mutex<State>,
    /// Shared mode: `.offsets.lock`, held across a write (with the catch-up before it and a
    /// snapshot), so that a snapshot written by one process never misses another's commits.
    shared: Option<std::fs::File>,
}

/// The committed offsets and open transactions' offsets, folded up to `upto`.
struct State {
    committed: GroupState,
    pending: Pending,
    /// Shared mode: the offset of `__consumer_offsets` the fold has reached.
    upto: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Everything live, as batches: committed offsets, then each open transaction's offsets under its
/// producer id (so that its marker still applies to them after a snapshot).
fn live(state: &GroupState, pending: &Pending) -> Vec<LiveBatch> {
    let committed =
        state.iter().flat_map(|(g, m)| m.iter().map(move |((t, p), v)| (encode_key(g, t, *p), Some(encode_value(v))))).collect();
    let mut out = vec![LiveBatch { producer: ProducerFields::NONE, records: committed }];
    for (&pid, (epoch, offsets)) in pending {
        out.push(LiveBatch {
            producer: ProducerFields { producer_id: pid, producer_epoch: *epoch, base_sequence: -1, transactional: true },
            records: offsets.iter().map(|(g, (t, p), v)| (encode_key(g, t, *p), Some(encode_value(v)))).collect(),
        });
    }
    out
}

fn apply(state: &mut GroupState, group: String, key: Key, value: Option<OffsetAndMetadata>) {
    match value {
        Some(v) => {
            state.entry(group).or_default().insert(key, v);
        }
        None => {
            if let Some(g) = state.get_mut(&group) {
                g.remove(&key);
                if g.is_empty() {
                    state.remove(&group);
                }
            }
        }
    }
}

impl Groups {
    /// Rebuilds the state by replaying the offsets topic.
    /// Offsets of topics for which `topic_exists` is false (left by a crash during a topic
    /// delete) are dropped.
    /// `shared`: the directory is open in shared mode (other processes commit too); the lock file
    /// that orders writes.
    pub(crate) fn load(partition: Arc<Partition>, topic_exists: impl Fn(&str) -> bool, shared: Option<std::fs::File>) -> Result<Groups> {
        let table = Table::new(partition);
        let mut folded = OffsetsFold::default();
        let upto = table.replay(|h, r| folded.fold(h, r))?;
        let OffsetsFold { state: mut committed, pending } = folded;
        for m in committed.values_mut() {
            m.retain(|(t, _), _| topic_exists(t));
        }
        committed.retain(|_, m| !m.is_empty());
        Ok(Groups { table, state: Mutex::new(State { committed, pending, upto }), shared })
    }

    /// Shared mode: folds in what other processes wrote since this process last looked (a full
    /// replay when a snapshot removed segments it had not read).
    fn catch_up(&self, st: &mut State) -> Result<()> {
        if self.shared.is_none() {
            return Ok(());
        }
        let p = &self.table.partition;
        let (start, hw) = (p.log_start_offset(), p.high_watermark());
        if st.upto >= hw && st.upto >= start {
            return Ok(());
        }
        let mut fold = OffsetsFold::default();
        let from = if st.upto < start {
            start
        } else {
            fold.state = std::mem::take(&mut st.committed);
            fold.pending = std::mem::take(&mut st.pending);
            st.upto
        };
        let reached = crate::internal::replay(from, hw, &p.path(), |o| p.fetch(o, 1 << 20), |h, r| fold.fold(h, r));
        st.committed = fold.state;
        st.pending = fold.pending;
        st.upto = reached?;
        Ok(())
    }

    /// The state, caught up; for a write in shared mode also `.offsets.lock`, released on drop.
    fn locked(&self, write: bool) -> Result<(std::sync::MutexGuard<'_, State>, Option<FileLock<'_>>)> {
        let mut st = lock(&self.state);
        let file = match (&self.shared, write) {
            (Some(f), true) => {
                f.lock().map_err(|e| Error::io("lock", self.table.partition.path(), e))?;
                Some(FileLock(f))
            }
            _ => None,
        };
        self.catch_up(&mut st)?;
        Ok((st, file))
    }

    /// The partition of `__consumer_offsets`.
    pub(crate) fn partition(&self) -> &Arc<Partition> {
        &self.table.partition
    }

    /// Writes `records` durably as one batch. Called with the state lock held, so the log and the
    /// state agree in order.
    fn write(&self, st: &State, records: &[KeyValue]) -> Result<()> {
        self.table.write(records, ProducerFields::NONE, Acks::All, || live(&st.committed, &st.pending))?;
        Ok(())
    }

    pub(crate) fn commit(&self, group: &str, commits: &[OffsetCommit<'_>]) -> Result<()> {
        let (records, values) = encode_commits(group, commits);
        let (mut st, _file) = self.locked(true)?;
        self.write(&st, &records)?;
        for (c, v) in commits.iter().zip(values) {
            apply(&mut st.committed, group.to_string(), (c.topic.to_string(), c.partition), Some(v));
        }
        Ok(())
    }

    /// Writes offsets as part of producer `producer_id`'s transaction (not synced: the commit
    /// syncs). They take effect when the commit marker is written. Returns the offset after them.
    pub(crate) fn commit_in_transaction(&self, producer_id: i64, epoch: i16, group: &str, commits: &[OffsetCommit<'_>]) -> Result<u64> {
        let (records, values) = encode_commits(group, commits);
        let (mut st, _file) = self.locked(true)?;
        let fields = ProducerFields { producer_id, producer_epoch: epoch, base_sequence: -1, transactional: true };
        let at = self.table.write(&records, fields, Acks::One, || live(&st.committed, &st.pending))?;
        let e = st.pending.entry(producer_id).or_insert_with(|| (epoch, Vec::new()));
        e.0 = epoch;
        e.1.extend(commits.iter().zip(values).map(|(c, v)| (group.to_string(), (c.topic.to_string(), c.partition), v)));
        Ok(at.last_offset + 1)
    }

    /// Ends producer `producer_id`'s transaction here: writes the marker and applies (commit) or
    /// drops (abort) the offsets it sent. Returns whether a marker was written.
    pub(crate) fn end_transaction(&self, producer_id: i64, epoch: i16, marker: MarkerType) -> Result<bool> {
        let (mut st, _file) = self.locked(true)?;
        let wrote = self.table.partition.write_marker(producer_id, epoch, marker)?;
        if let Some((_, offsets)) = st.pending.remove(&producer_id)
            && marker == MarkerType::Commit
        {
            for (g, k, v) in offsets {
                apply(&mut st.committed, g, k, Some(v));
            }
        }
        Ok(wrote)
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<OffsetAndMetadata>> {
        let (st, _) = self.locked(false)?;
        Ok(st.committed.get(group).and_then(|g| g.get(&(topic.to_string(), partition)).cloned()))
    }

    pub(crate) fn all_committed(&self, group: &str) -> Result<Vec<(String, u32, OffsetAndMetadata)>> {
        let (st, _) = self.locked(false)?;
        Ok(st.committed.get(group).map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect()).unwrap_or_default())
    }

    pub(crate) fn list(&self) -> Result<Vec<String>> {
        let (st, _) = self.locked(false)?;
        Ok(st.committed.keys().cloned().collect())
    }

    /// Removes a group's offsets. Returns whether it existed.
    pub(crate) fn delete_group(&self, group: &str) -> Result<bool> {
        let (mut st, _file) = self.locked(true)?;
        let Some(g) = st.committed.get(group) else { return Ok(false) };
        let records: Vec<_> = g.keys().map(|(t, p)| (encode_key(group, t, *p), None)).collect();
        self.write(&st, &records)?;
        st.committed.remove(group);
        Ok(true)
    }

    /// Removes every group's offsets for a deleted topic.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let (mut st, _file) = self.locked(true)?;
        let records: Vec<_> = st
            .committed
            .iter()
            .flat_map(|(g, m)| m.keys().filter(|(t, _)| t == topic).map(move |(t, p)| (encode_key(g, t, *p), None)))
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.write(&st, &records)?;
        for m in st.committed.values_mut() {
            m.retain(|(t, _), _| t != topic);
        }
        st.committed.retain(|_, m| !m.is_empty());
        Ok(())
    }
}

/// A held `flock`, released on drop.
struct FileLock<'a>(&'a std::fs::File);

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn encode_commits(group: &str, commits: &[OffsetCommit<'_>]) -> (Vec<KeyValue>, Vec<OffsetAndMetadata>) {
    let now = now_ms();
    let values: Vec<OffsetAndMetadata> =
        commits.iter().map(|c| OffsetAndMetadata { offset: c.offset, metadata: c.metadata.to_string(), commit_timestamp: now }).collect();
    let records = commits.iter().zip(&values).map(|(c, v)| (encode_key(group, c.topic, c.partition), Some(encode_value(v)))).collect();
    (records, values)
}
