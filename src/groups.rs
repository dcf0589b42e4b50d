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
use crate::log::partition::{Partition, now_ms};

/// Name of the internal topic that holds committed offsets.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A committed offset, as Kafka's `OffsetAndMetadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset the group will consume.
    pub offset: u64,
    /// Free-form text stored with the commit.
    pub metadata: String,
    /// When it was committed (milliseconds since the Unix epoch).
    pub commit_timestamp: i64,
}

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

const KEY_VERSION: u16 = 1;
const VALUE_VERSION: u16 = 1;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Key: version u16 | group (u16 length + bytes) | topic (u16 length + bytes) | partition u32.
pub(crate) fn encode_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + group.len() + topic.len());
    k.extend_from_slice(&KEY_VERSION.to_le_bytes());
    put_str(&mut k, group);
    put_str(&mut k, topic);
    k.extend_from_slice(&partition.to_le_bytes());
    k
}

/// Value: version u16 | offset u64 | commit timestamp i64 | metadata (u32 length + bytes).
pub(crate) fn encode_value(v: &OffsetAndMetadata) -> Vec<u8> {
    let mut out = Vec::with_capacity(22 + v.metadata.len());
    out.extend_from_slice(&VALUE_VERSION.to_le_bytes());
    out.extend_from_slice(&v.offset.to_le_bytes());
    out.extend_from_slice(&v.commit_timestamp.to_le_bytes());
    out.extend_from_slice(&(v.metadata.len() as u32).to_le_bytes());
    out.extend_from_slice(v.metadata.as_bytes());
    out
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if b.len() < n {
        return None;
    }
    let (h, t) = b.split_at(n);
    *b = t;
    Some(h)
}

fn take_str(b: &mut &[u8]) -> Option<String> {
    let n = take(b, 2)?;
    let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
    String::from_utf8(take(b, n)?.to_vec()).ok()
}

pub(crate) fn decode_key(mut b: &[u8]) -> Option<(String, String, u32)> {
    let v = take(&mut b, 2)?;
    if u16::from_le_bytes([v[0], v[1]]) != KEY_VERSION {
        return None;
    }
    let group = take_str(&mut b)?;
    let topic = take_str(&mut b)?;
    let p = take(&mut b, 4)?;
    b.is_empty().then(|| (group, topic, u32::from_le_bytes([p[0], p[1], p[2], p[3]])))
}

pub(crate) fn decode_value(mut b: &[u8]) -> Option<OffsetAndMetadata> {
    let v = take(&mut b, 2)?;
    if u16::from_le_bytes([v[0], v[1]]) != VALUE_VERSION {
        return None;
    }
    let u64_of = |b: &mut &[u8]| -> Option<u64> {
        let mut x = [0u8; 8];
        x.copy_from_slice(take(b, 8)?);
        Some(u64::from_le_bytes(x))
    };
    let offset = u64_of(&mut b)?;
    let commit_timestamp = u64_of(&mut b)? as i64;
    let n = take(&mut b, 4)?;
    let n = u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize;
    let metadata = String::from_utf8(take(&mut b, n)?.to_vec()).ok()?;
    b.is_empty().then_some(OffsetAndMetadata { offset, metadata, commit_timestamp })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let k = encode_key("g", "orders", 3);
        assert_eq!(decode_key(&k), Some(("g".into(), "orders".into(), 3)));
        let v = OffsetAndMetadata { offset: 42, metadata: "m".into(), commit_timestamp: 7 };
        assert_eq!(decode_value(&encode_value(&v)), Some(v));
        assert_eq!(decode_key(&k[..k.len() - 1]), None);
    }
}
