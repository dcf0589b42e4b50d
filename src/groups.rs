//! Consumer-group offsets, stored in the internal topic `__consumer_offsets` as Kafka stores them,
//! with an in-memory view rebuilt from that topic when the log opens.
//!
//! One call (a commit, a group delete, a topic's offsets removal) is one batch, so it is atomic.
//! Offsets sent in a transaction are written as that producer's transactional batch and take effect
//! with its commit marker, as in Kafka. The topic is kept small by snapshots (see [`crate::internal`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

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
    state: Mutex<(GroupState, Pending)>,
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
    pub(crate) fn load(partition: Arc<Partition>, topic_exists: impl Fn(&str) -> bool) -> Result<Groups> {
        let table = Table::new(partition);
        let mut folded = OffsetsFold::default();
        table.replay(|h, r| folded.fold(h, r))?;
        let OffsetsFold { mut state, pending } = folded;
        for m in state.values_mut() {
            m.retain(|(t, _), _| topic_exists(t));
        }
        state.retain(|_, m| !m.is_empty());
        Ok(Groups { table, state: Mutex::new((state, pending)) })
    }

    /// The partition of `__consumer_offsets`.
    pub(crate) fn partition(&self) -> &Arc<Partition> {
        &self.table.partition
    }

    /// Writes `records` durably as one batch. Called with the state lock held, so the log and the
    /// state agree in order.
    fn write(&self, st: &(GroupState, Pending), records: &[KeyValue]) -> Result<()> {
        self.table.write(records, ProducerFields::NONE, Acks::All, || live(&st.0, &st.1))?;
        Ok(())
    }

    pub(crate) fn commit(&self, group: &str, commits: &[OffsetCommit<'_>]) -> Result<()> {
        let (records, values) = encode_commits(group, commits);
        let mut st = lock(&self.state);
        self.write(&st, &records)?;
        for (c, v) in commits.iter().zip(values) {
            apply(&mut st.0, group.to_string(), (c.topic.to_string(), c.partition), Some(v));
        }
        Ok(())
    }

    /// Writes offsets as part of producer `producer_id`'s transaction (not synced: the commit
    /// syncs). They take effect when the commit marker is written. Returns the offset after them.
    pub(crate) fn commit_in_transaction(&self, producer_id: i64, epoch: i16, group: &str, commits: &[OffsetCommit<'_>]) -> Result<u64> {
        let (records, values) = encode_commits(group, commits);
        let mut st = lock(&self.state);
        let fields = ProducerFields { producer_id, producer_epoch: epoch, base_sequence: -1, transactional: true };
        let at = self.table.write(&records, fields, Acks::One, || live(&st.0, &st.1))?;
        let e = st.1.entry(producer_id).or_insert_with(|| (epoch, Vec::new()));
        e.0 = epoch;
        e.1.extend(commits.iter().zip(values).map(|(c, v)| (group.to_string(), (c.topic.to_string(), c.partition), v)));
        Ok(at.last_offset + 1)
    }

    /// Ends producer `producer_id`'s transaction here: writes the marker and applies (commit) or
    /// drops (abort) the offsets it sent. Returns whether a marker was written.
    pub(crate) fn end_transaction(&self, producer_id: i64, epoch: i16, marker: MarkerType) -> Result<bool> {
        let mut st = lock(&self.state);
        let wrote = self.table.partition.write_marker(producer_id, epoch, marker)?;
        if let Some((_, offsets)) = st.1.remove(&producer_id)
            && marker == MarkerType::Commit
        {
            for (g, k, v) in offsets {
                apply(&mut st.0, g, k, Some(v));
            }
        }
        Ok(wrote)
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<OffsetAndMetadata> {
        lock(&self.state).0.get(group).and_then(|g| g.get(&(topic.to_string(), partition)).cloned())
    }

    pub(crate) fn all_committed(&self, group: &str) -> Vec<(String, u32, OffsetAndMetadata)> {
        lock(&self.state).0.get(group).map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect()).unwrap_or_default()
    }

    pub(crate) fn list(&self) -> Vec<String> {
        lock(&self.state).0.keys().cloned().collect()
    }

    /// Removes a group's offsets. Returns whether it existed.
    pub(crate) fn delete_group(&self, group: &str) -> Result<bool> {
        let mut st = lock(&self.state);
        let Some(g) = st.0.get(group) else { return Ok(false) };
        let records: Vec<_> = g.keys().map(|(t, p)| (encode_key(group, t, *p), None)).collect();
        self.write(&st, &records)?;
        st.0.remove(group);
        Ok(true)
    }

    /// Removes every group's offsets for a deleted topic.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let mut st = lock(&self.state);
        let records: Vec<_> =
            st.0.iter().flat_map(|(g, m)| m.keys().filter(|(t, _)| t == topic).map(move |(t, p)| (encode_key(g, t, *p), None))).collect();
        if records.is_empty() {
            return Ok(());
        }
        self.write(&st, &records)?;
        for m in st.0.values_mut() {
            m.retain(|(t, _), _| t != topic);
        }
        st.0.retain(|_, m| !m.is_empty());
        Ok(())
    }
}

fn encode_commits(group: &str, commits: &[OffsetCommit<'_>]) -> (Vec<KeyValue>, Vec<OffsetAndMetadata>) {
    let now = now_ms();
    let values: Vec<OffsetAndMetadata> =
        commits.iter().map(|c| OffsetAndMetadata { offset: c.offset, metadata: c.metadata.to_string(), commit_timestamp: now }).collect();
    let records = commits.iter().zip(&values).map(|(c, v)| (encode_key(group, c.topic, c.partition), Some(encode_value(v)))).collect();
    (records, values)
}
