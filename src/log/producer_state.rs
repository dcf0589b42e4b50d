//! A partition's producer state (Kafka's ProducerStateManager): per producer id, its epoch and last
//! few batches, for duplicate detection, sequence checks and fencing; the open transactions, which
//! bound the last stable offset; and the aborted transactions that read_committed fetches skip.
//!
//! The state is a function of the log: [`ProducerStates::apply`] folds one batch into it, and
//! recovery rebuilds it by folding the batches after the latest `<offset>.snapshot` file.

use std::collections::{BTreeMap, HashMap, VecDeque};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::batch::{BatchHeader, BatchView};
use crate::format::txn::{
    AbortedTxn, BatchMeta, MAX_BATCHES_PER_PRODUCER, MarkerType, ProducerSnapshot, ProducerSnapshotEntry, decode_marker_key,
    decode_snapshot, encode_snapshot, seq_add,
};
use crate::storage::segment::{Segment, parse_segment_file_name};
use crate::storage::vfs::{OpenMode, VFile, Vfs};

/// One producer, as this partition knows it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    pub txn_first_offset: Option<u64>,
    pub last_timestamp: i64,
}

/// Why a batch may not be appended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The batch's epoch is older than one this partition has seen.
    Fenced { current: i16 },
    /// The batch's first sequence is not the one expected.
    OutOfOrder { expected: i32 },
    /// The producer is unknown here (never seen, or expired) and the batch does not start at 0.
    UnknownProducer,
}

/// What to do with a batch from an idempotent producer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    Append,
    /// A retry of a batch already stored at these offsets.
    Duplicate(BatchMeta),
}

/// The part of the state readers use: open transactions (first offset → producer id) and aborted
/// ones (by marker offset). Kept under its own lock, updated by the writer only at transaction
/// boundaries.
///
/// A transaction stops holding readers back as soon as its marker is written, before the marker
/// is below the high watermark: a marker is written only once the outcome can no longer change
/// (a commit's data and decision are durable first; an abort is what recovery does anyway), so a
/// reader that acts on it is never contradicted by a crash.
#[derive(Default)]
pub(crate) struct TxnView {
    pub open: BTreeMap<u64, i64>,
    pub aborted: Vec<AbortedTxn>,
}

impl TxnView {
    /// The first offset a read_committed reader may not pass: the first offset of the earliest
    /// open transaction (`u64::MAX` when none is open).
    pub fn first_unstable(&self) -> u64 {
        self.open.keys().next().copied().unwrap_or(u64::MAX)
    }

    /// Aborted transactions that overlap `[from, to)`, in marker order.
    pub fn aborted_in(&self, from: u64, to: u64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        let mut out = Vec::new();
        for a in &self.aborted[start..] {
            if a.first_offset < to {
                out.push(*a);
            }
            if a.last_stable_offset >= to {
                break;
            }
        }
        out
    }

    /// Forgets aborted transactions whose markers precede `log_start`.
    pub fn prune(&mut self, log_start: u64) {
        let n = self.aborted.partition_point(|a| a.last_offset < log_start);
        self.aborted.drain(..n);
    }
}

/// Hashes a producer id with one multiplication: ids are small integers the log hands out itself
/// (an id that is not one is refused before it reaches the map), and the map is looked up on every
/// idempotent append, where SipHash would cost more than the rest of the check.
#[derive(Clone, Copy, Default)]
pub(crate) struct PidHasher(u64);

impl std::hash::Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_i64(&mut self, v: i64) {
        self.0 = (v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PidMap<V> = HashMap<i64, V, std::hash::BuildHasherDefault<PidHasher>>;

/// The writer's side: every producer seen.
#[derive(Default)]
pub(crate) struct ProducerStates {
    pub producers: PidMap<ProducerEntry>,
}

impl ProducerStates {
    /// Checks a batch of `count` records from `producer_id` at `epoch` starting at sequence `seq`
    /// (-1: no sequence, for the engine's own transactional writes).
    pub fn check(&self, producer_id: i64, epoch: i16, seq: i32, count: u32) -> Result<Check, Refusal> {
        let Some(e) = self.producers.get(&producer_id) else {
            return if seq <= 0 { Ok(Check::Append) } else { Err(Refusal::UnknownProducer) };
        };
        if epoch < e.epoch {
            return Err(Refusal::Fenced { current: e.epoch });
        }
        if seq < 0 {
            return Ok(Check::Append);
        }
        if epoch > e.epoch {
            return if seq == 0 { Ok(Check::Append) } else { Err(Refusal::OutOfOrder { expected: 0 }) };
        }
        let last = seq_add(seq, count - 1);
        if let Some(b) = e.batches.iter().find(|b| b.first_seq == seq && b.last_seq == last) {
            return Ok(Check::Duplicate(*b));
        }
        let expected = e.batches.back().map_or(0, |b| seq_add(b.last_seq, 1));
        if seq == expected { Ok(Check::Append) } else { Err(Refusal::OutOfOrder { expected }) }
    }

    /// Folds a batch written at `h` into the state. For a marker, `marker` gives its type, and the
    /// aborted transaction is returned (to be added to the view by the caller) with the view's
    /// open transactions updated. `now` is the wall-clock time of the append.
    pub fn apply(&mut self, h: &BatchHeader, marker: Option<MarkerType>, now: i64, view: &mut TxnView) -> Option<AbortedTxn> {
        if h.producer_id < 0 {
            return None;
        }
        let e = self.producers.entry(h.producer_id).or_default();
        if h.producer_epoch > e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.last_timestamp = e.last_timestamp.max(now);
        if h.is_control() {
            let first = e.txn_first_offset.take()?;
            let marker_offset = h.base_offset;
            view.open.remove(&first);
            if marker != Some(MarkerType::Abort) {
                return None;
            }
            // Every transaction that began below this is over once the marker is written.
            let lso = view.first_unstable().min(marker_offset + 1);
            return Some(AbortedTxn {
                producer_id: h.producer_id,
                first_offset: first,
                last_offset: marker_offset,
                last_stable_offset: lso,
            });
        }
        if h.base_sequence >= 0 {
            let count = h.last_offset_delta + 1;
            e.batches.push_back(BatchMeta {
                first_seq: h.base_sequence,
                last_seq: seq_add(h.base_sequence, count - 1),
                base_offset: h.base_offset,
                last_offset: h.last_offset(),
            });
            if e.batches.len() > MAX_BATCHES_PER_PRODUCER {
                e.batches.pop_front();
            }
        }
        if h.is_transactional() && e.txn_first_offset.is_none() {
            e.txn_first_offset = Some(h.base_offset);
            view.open.insert(h.base_offset, h.producer_id);
        }
        None
    }

    /// Records that a producer moved to `epoch` without writing anything here (a marker for a
    /// partition the transaction never reached), so later batches of older epochs are fenced.
    pub fn bump_epoch(&mut self, producer_id: i64, epoch: i16, now: i64) {
        let e = self.producers.entry(producer_id).or_default();
        if epoch > e.epoch {
            e.epoch = epoch;
            e.batches.clear();
            e.last_timestamp = now;
        }
    }

    /// Producers with a transaction open here.
    pub fn open_transactions(&self) -> Vec<(i64, i16)> {
        self.producers.iter().filter(|(_, e)| e.txn_first_offset.is_some()).map(|(&id, e)| (id, e.epoch)).collect()
    }

    /// Drops producers idle since before `cutoff` (ms) with no transaction open. Returns how many.
    pub fn expire(&mut self, cutoff: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| e.txn_first_offset.is_some() || e.last_timestamp >= cutoff);
        before - self.producers.len()
    }

    /// The state as a snapshot at `offset` (the log end offset).
    pub fn snapshot(&self, offset: u64, view: &TxnView) -> ProducerSnapshot {
        let mut producers: Vec<ProducerSnapshotEntry> = self
            .producers
            .iter()
            .map(|(&id, e)| ProducerSnapshotEntry {
                producer_id: id,
                epoch: e.epoch,
                last_timestamp: e.last_timestamp,
                txn_first_offset: e.txn_first_offset,
                batches: e.batches.iter().copied().collect(),
            })
            .collect();
        producers.sort_by_key(|p| p.producer_id);
        ProducerSnapshot { offset, producers, aborted: view.aborted.clone() }
    }

    /// Rebuilds the state (and the view) from a snapshot.
    pub fn restore(s: ProducerSnapshot) -> (ProducerStates, TxnView) {
        let mut view = TxnView { open: BTreeMap::new(), aborted: s.aborted };
        let mut producers = PidMap::with_capacity_and_hasher(s.producers.len(), Default::default());
        for p in s.producers {
            if let Some(first) = p.txn_first_offset {
                view.open.insert(first, p.producer_id);
            }
            producers.insert(
                p.producer_id,
                ProducerEntry {
                    epoch: p.epoch,
                    batches: p.batches.into_iter().collect(),
                    txn_first_offset: p.txn_first_offset,
                    last_timestamp: p.last_timestamp,
                },
            );
        }
        (ProducerStates { producers }, view)
    }
}

/// The file name of a producer-state snapshot: the offset it covers up to, as 20 digits.
pub(crate) fn snapshot_file_name(offset: u64) -> String {
    format!("{offset:020}.snapshot")
}

fn snapshot_offsets(vfs: &dyn Vfs, dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = vfs
        .read_dir(dir)
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e.is_file)
                .filter_map(|e| parse_segment_file_name(e.name.to_str()?).filter(|(_, ext)| *ext == "snapshot").map(|(o, _)| o))
                .collect()
        })
        .unwrap_or_default();
    v.sort_unstable();
    v
}

/// Writes `<offset>.snapshot` (not synced: the caller syncs it, or a torn one is ignored on load
/// in favour of an older one). Returns its path and open file.
pub(crate) fn write_snapshot(vfs: &dyn Vfs, dir: &Path, s: &ProducerSnapshot) -> Result<(PathBuf, Arc<dyn VFile>)> {
    let path = dir.join(snapshot_file_name(s.offset));
    let f = vfs.open(&path, OpenMode::Create).map_err(|e| Error::io("create", &path, e))?;
    let bytes = encode_snapshot(s);
    f.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
    f.write_all_at(&bytes, 0).map_err(|e| Error::io("write", &path, e))?;
    Ok((path, f))
}

/// Keeps the `keep` newest snapshots at or below `newest`. Best effort: a leftover snapshot is
/// only disk space.
pub(crate) fn remove_old_snapshots(vfs: &dyn Vfs, dir: &Path, newest: u64, keep: usize) {
    let offsets: Vec<u64> = snapshot_offsets(vfs, dir).into_iter().filter(|&o| o <= newest).collect();
    for o in &offsets[..offsets.len().saturating_sub(keep)] {
        let _ = vfs.remove_file(&dir.join(snapshot_file_name(*o)));
    }
}

/// Removes snapshots below the log start offset, keeping the newest of them if none is above.
pub(crate) fn remove_snapshots_before(vfs: &dyn Vfs, dir: &Path, log_start: u64) {
    let offsets = snapshot_offsets(vfs, dir);
    let below: Vec<u64> = offsets.iter().copied().filter(|&o| o < log_start).collect();
    let keep_last = offsets.iter().all(|&o| o < log_start);
    let n = if keep_last { below.len().saturating_sub(1) } else { below.len() };
    for o in &below[..n] {
        let _ = vfs.remove_file(&dir.join(snapshot_file_name(*o)));
    }
}

/// Rebuilds a partition's producer state: from the newest readable snapshot at or below the log
/// end offset (removing any above it: they describe batches recovery cut), then by folding in every
/// batch after it.
pub(crate) fn recover(vfs: &dyn Vfs, dir: &Path, segments: &[Arc<Segment>], leo: u64, interval: u64) -> Result<(ProducerStates, TxnView)> {
    let log_start = segments.first().map_or(leo, |s| s.base_offset);
    let (from, (mut states, mut view)) = match newest_snapshot(vfs, dir, leo, true)? {
        Some(s) => (s.offset, ProducerStates::restore(s)),
        None => (log_start, (ProducerStates::default(), TxnView::default())),
    };
    replay(segments, from, leo, interval, &mut states, &mut view)?;
    view.prune(log_start);
    Ok((states, view))
}

/// The newest readable snapshot at or below `at_most`. Snapshots above it are removed when
/// `remove_newer` (recovery), and skipped otherwise (a read-only handle never writes).
pub(crate) fn newest_snapshot(vfs: &dyn Vfs, dir: &Path, at_most: u64, remove_newer: bool) -> Result<Option<ProducerSnapshot>> {
    for o in snapshot_offsets(vfs, dir).into_iter().rev() {
        let path = dir.join(snapshot_file_name(o));
        if o > at_most {
            if remove_newer {
                vfs.remove_file(&path).map_err(|e| Error::io("unlink", &path, e))?;
            }
            continue;
        }
        let bytes = (|| {
            let f = vfs.open(&path, OpenMode::Read).ok()?;
            let len = usize::try_from(f.len().ok()?).ok().filter(|&l| l <= MAX_SNAPSHOT_BYTES)?;
            let mut b = vec![0u8; len];
            f.read_exact_at(&mut b, 0).ok()?;
            Some(b)
        })();
        match bytes.map(|b| decode_snapshot(&b)) {
            Some(Ok(s)) if s.offset == o => return Ok(Some(s)),
            Some(Err(reason)) => log::warn!("{}: ignoring a damaged producer-state snapshot: {reason}", path.display()),
            _ => log::warn!("{}: ignoring an unreadable producer-state snapshot", path.display()),
        }
    }
    Ok(None)
}

/// Folds every producer batch of `segments` with offsets in `[from, to)` into `states` and `view`.
pub(crate) fn replay(
    segments: &[Arc<Segment>],
    from: u64,
    to: u64,
    interval: u64,
    states: &mut ProducerStates,
    view: &mut TxnView,
) -> Result<()> {
    let now = crate::log::partition::now_ms();
    for seg in segments.iter().filter(|s| s.next_offset() > from && s.base_offset < to && s.size() > 0) {
        let (data, opened) = seg.data()?;
        let bytes = data.prefix(seg.size());
        let mut pos = if from > seg.base_offset { seg.position_for_offset(&data, from, interval) as usize } else { 0 };
        while pos < bytes.len() {
            let view_b = BatchView::parse(&bytes[pos..]).map_err(|e| Error::corrupt(seg.log_path(), pos as u64, e.to_string()))?;
            let h = *view_b.header();
            if h.base_offset >= to {
                break;
            }
            pos += h.total_len();
            if h.next_offset() <= from {
                continue;
            }
            apply_batch(&view_b, now, states, view);
        }
        drop(data);
        if opened && seg.is_sealed() {
            seg.evict();
        }
    }
    Ok(())
}

/// Folds one stored batch into `states` and `view` (nothing for a batch without a producer).
pub(crate) fn apply_batch(batch: &BatchView<'_>, now: i64, states: &mut ProducerStates, view: &mut TxnView) {
    let h = batch.header();
    if h.producer_id < 0 {
        return;
    }
    let marker = if h.is_control() {
        let r = batch.records().next().and_then(|r| r.ok());
        r.and_then(|r| r.key).and_then(decode_marker_key)
    } else {
        None
    };
    let aborted = states.apply(h, marker, now, view);
    view.aborted.extend(aborted);
}

/// Larger snapshot files are not read (about 16 million producers or aborted transactions).
const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::batch::{ProducerFields, encode_batch};
    use crate::format::{Record, TimestampType};

    fn header(base: u64, n: usize, pid: i64, epoch: i16, seq: i32, txn: bool, control: bool) -> BatchHeader {
        let recs = vec![Record::new(b"x"); n];
        let mut out = Vec::new();
        let p = ProducerFields { producer_id: pid, producer_epoch: epoch, base_sequence: seq, transactional: txn };
        encode_batch(&mut out, base, &recs, TimestampType::CreateTime, 0, p, control)
    }

    #[test]
    fn sequences_detect_duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        let mut v = TxnView::default();
        assert_eq!(s.check(1, 0, 3, 1), Err(Refusal::UnknownProducer));
        assert_eq!(s.check(1, 0, 0, 2), Ok(Check::Append));
        s.apply(&header(0, 2, 1, 0, 0, false, false), None, 1, &mut v);
        assert_eq!(s.check(1, 0, 0, 2), Ok(Check::Duplicate(BatchMeta { first_seq: 0, last_seq: 1, base_offset: 0, last_offset: 1 })));
        assert_eq!(s.check(1, 0, 3, 1), Err(Refusal::OutOfOrder { expected: 2 }));
        assert_eq!(s.check(1, 0, 2, 1), Ok(Check::Append));
        assert_eq!(s.check(1, 1, 5, 1), Err(Refusal::OutOfOrder { expected: 0 }));
        s.apply(&header(2, 1, 1, 1, 0, false, false), None, 1, &mut v);
        assert_eq!(s.check(1, 0, 1, 1), Err(Refusal::Fenced { current: 1 }));
        assert_eq!(seq_add(i32::MAX, 1), 0);
    }

    #[test]
    fn aborted_transactions_and_the_first_unstable_offset() {
        let mut s = ProducerStates::default();
        let mut v = TxnView::default();
        s.apply(&header(10, 2, 1, 0, 0, true, false), None, 0, &mut v);
        s.apply(&header(12, 1, 2, 0, 0, true, false), None, 0, &mut v);
        assert_eq!(v.first_unstable(), 10);
        let a = s.apply(&header(13, 1, 1, 0, -1, true, true), Some(MarkerType::Abort), 0, &mut v);
        assert_eq!(a, Some(AbortedTxn { producer_id: 1, first_offset: 10, last_offset: 13, last_stable_offset: 12 }));
        assert_eq!(v.first_unstable(), 12);
        v.aborted.extend(a);
        assert_eq!(v.aborted_in(0, 12).len(), 1);
        assert_eq!(v.aborted_in(14, 20).len(), 0);
        assert_eq!(s.open_transactions(), vec![(2, 0)]);
        let snap = s.snapshot(14, &v);
        let (s2, v2) = ProducerStates::restore(snap.clone());
        assert_eq!(s2.snapshot(14, &v2), snap);
    }
}
