//! Consumer-group offsets, stored in the internal topic `__consumer_offsets` as Kafka stores them,
//! with an in-memory view rebuilt from that topic when the log opens.
//!
//! One call (a commit, a group delete, a topic's offsets removal) is one batch, so it is atomic.
//! The topic is kept small by snapshotting: once two segments of commits have accumulated on top of
//! the last snapshot, the store rolls, writes every live offset into the new segment, syncs, and
//! deletes the older segments. Replaying all remaining segments in order therefore always yields
//! the current state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::config::Acks;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::batch::ProducerFields;
pub use crate::format::meta::OffsetAndMetadata;
use crate::format::meta::{
    decode_offset_key as decode_key, decode_offset_value as decode_value, encode_offset_key as encode_key,
    encode_offset_value as encode_value,
};
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
/// A record for the offsets topic: key and value (`None` is a tombstone).
type KeyValue = (Vec<u8>, Option<Vec<u8>>);

pub(crate) struct Groups {
    partition: Arc<Partition>,
    /// Bytes the partition held right after the last snapshot (the live state).
    snapshot_bytes: std::sync::atomic::AtomicU64,
    state: Mutex<BTreeMap<String, BTreeMap<Key, OffsetAndMetadata>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Groups {
    /// Rebuilds the state by replaying the offsets topic.
    /// Offsets of topics for which `topic_exists` is false (left by a crash during a topic
    /// delete) are dropped.
    pub(crate) fn load(partition: Arc<Partition>, topic_exists: impl Fn(&str) -> bool) -> Result<Groups> {
        let mut state: BTreeMap<String, BTreeMap<Key, OffsetAndMetadata>> = BTreeMap::new();
        let mut offset = partition.log_start_offset();
        while offset < partition.high_watermark() {
            let fetched = partition.fetch(offset, 1 << 20)?;
            for r in fetched.records() {
                let r = r?;
                let Some((group, topic, p)) = r.key.and_then(decode_key) else {
                    log::warn!("{CONSUMER_OFFSETS_TOPIC}: skipping a record at offset {} with an unreadable key", r.offset);
                    continue;
                };
                match r.value {
                    None => {
                        if let Some(g) = state.get_mut(&group) {
                            g.remove(&(topic, p));
                            if g.is_empty() {
                                state.remove(&group);
                            }
                        }
                    }
                    Some(v) => match decode_value(v) {
                        Some(v) => {
                            state.entry(group).or_default().insert((topic, p), v);
                        }
                        None => log::warn!("{CONSUMER_OFFSETS_TOPIC}: skipping a record at offset {} with an unreadable value", r.offset),
                    },
                }
            }
            if fetched.next_offset() <= offset {
                break;
            }
            offset = fetched.next_offset();
        }
        for m in state.values_mut() {
            m.retain(|(t, _), _| topic_exists(t));
        }
        state.retain(|_, m| !m.is_empty());
        Ok(Groups { partition, snapshot_bytes: Default::default(), state: Mutex::new(state) })
    }

    /// Appends `records` (key, value-or-tombstone) durably, snapshotting first if the active
    /// segment is full. Called with the state lock held, so the log and the state agree in order.
    fn write(&self, state: &BTreeMap<String, BTreeMap<Key, OffsetAndMetadata>>, records: &[KeyValue]) -> Result<()> {
        let size: u64 = records.iter().map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len) + 32) as u64).sum();
        let cfg = &self.partition.config;
        let recs: Vec<Record<'_>> =
            records.iter().map(|(k, v)| Record { key: Some(k), value: v.as_deref(), headers: &[], timestamp: None }).collect();
        // One call is one batch, so it is atomic; check its size before anything is written.
        let encoded = crate::format::batch::encoded_len(&recs) as u64;
        if encoded > cfg.max_message_bytes {
            return Err(Error::RecordTooLarge { size: encoded, max: cfg.max_message_bytes });
        }
        // Snapshot once two segments' worth of commits have piled up on top of the last snapshot:
        // the topic stays near `snapshot + 2 * segment.bytes`, and each snapshot's cost (the size
        // of the live state) is paid once per two segments of commits.
        let (_, total) = self.partition.segment_stats();
        let last = self.snapshot_bytes.load(std::sync::atomic::Ordering::Relaxed);
        if total + size > last + 2 * cfg.segment_bytes {
            self.snapshot(state)?;
        }
        self.partition.append(&recs, Acks::All, ProducerFields::NONE, false)?;
        Ok(())
    }

    /// Rolls, writes every live offset into the new segment, syncs, and drops older segments.
    fn snapshot(&self, state: &BTreeMap<String, BTreeMap<Key, OffsetAndMetadata>>) -> Result<()> {
        self.partition.force_roll()?;
        let base = self.partition.active_base();
        let all: Vec<KeyValue> =
            state.iter().flat_map(|(g, m)| m.iter().map(move |((t, p), v)| (encode_key(g, t, *p), Some(encode_value(v))))).collect();
        for chunk in chunk_records(&all, self.partition.config.max_message_bytes / 2) {
            let recs: Vec<Record<'_>> =
                chunk.iter().map(|(k, v)| Record { key: Some(k), value: v.as_deref(), headers: &[], timestamp: None }).collect();
            self.partition.append(&recs, Acks::All, ProducerFields::NONE, false)?;
        }
        self.partition.sync()?;
        self.partition.delete_segments_before(base)?;
        self.snapshot_bytes.store(self.partition.segment_stats().1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn commit(&self, group: &str, commits: &[OffsetCommit<'_>]) -> Result<()> {
        let now = now_ms();
        let values: Vec<OffsetAndMetadata> = commits
            .iter()
            .map(|c| OffsetAndMetadata { offset: c.offset, metadata: c.metadata.to_string(), commit_timestamp: now })
            .collect();
        let records: Vec<KeyValue> =
            commits.iter().zip(&values).map(|(c, v)| (encode_key(group, c.topic, c.partition), Some(encode_value(v)))).collect();
        let mut state = lock(&self.state);
        self.write(&state, &records)?;
        let g = state.entry(group.to_string()).or_default();
        for (c, v) in commits.iter().zip(values) {
            g.insert((c.topic.to_string(), c.partition), v);
        }
        Ok(())
    }

    pub(crate) fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<OffsetAndMetadata> {
        lock(&self.state).get(group).and_then(|g| g.get(&(topic.to_string(), partition)).cloned())
    }

    pub(crate) fn all_committed(&self, group: &str) -> Vec<(String, u32, OffsetAndMetadata)> {
        lock(&self.state).get(group).map(|g| g.iter().map(|((t, p), v)| (t.clone(), *p, v.clone())).collect()).unwrap_or_default()
    }

    pub(crate) fn list(&self) -> Vec<String> {
        lock(&self.state).keys().cloned().collect()
    }

    /// Removes a group's offsets. Returns whether it existed.
    pub(crate) fn delete_group(&self, group: &str) -> Result<bool> {
        let mut state = lock(&self.state);
        let Some(g) = state.get(group) else { return Ok(false) };
        let records: Vec<_> = g.keys().map(|(t, p)| (encode_key(group, t, *p), None)).collect();
        self.write(&state, &records)?;
        state.remove(group);
        Ok(true)
    }

    /// Removes every group's offsets for a deleted topic.
    pub(crate) fn forget_topic(&self, topic: &str) -> Result<()> {
        let mut state = lock(&self.state);
        let records: Vec<_> =
            state.iter().flat_map(|(g, m)| m.keys().filter(|(t, _)| t == topic).map(move |(t, p)| (encode_key(g, t, *p), None))).collect();
        if records.is_empty() {
            return Ok(());
        }
        self.write(&state, &records)?;
        for m in state.values_mut() {
            m.retain(|(t, _), _| t != topic);
        }
        state.retain(|_, m| !m.is_empty());
        Ok(())
    }
}

fn chunk_records(records: &[KeyValue], max: u64) -> Vec<&[KeyValue]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut size = 0u64;
    for (i, (k, v)) in records.iter().enumerate() {
        let n = (k.len() + v.as_ref().map_or(0, Vec::len) + 32) as u64;
        if i > start && size + n > max {
            out.push(&records[start..i]);
            start = i;
            size = 0;
        }
        size += n;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}
