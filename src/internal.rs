//! A key → value table kept in a one-partition internal topic (`__consumer_offsets`,
//! `__transaction_state`): replayed when the log opens, one batch per write, and kept small by
//! snapshots.
//!
//! Snapshotting: once two segments of writes have piled up on top of the last snapshot, the table
//! rolls, writes its live state into the new segment, syncs, and deletes the older segments.
//! Replaying all remaining segments in order therefore always yields the current state, and each
//! snapshot's cost (the size of the live state) is paid once per two segments of writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Acks;
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::batch::RecordView;
use crate::format::batch::{BatchHeader, ProducerFields, encoded_len};
use crate::log::{AppendResult, Partition};

/// A record of the table: key and value (`None` is a tombstone).
pub(crate) type KeyValue = (Vec<u8>, Option<Vec<u8>>);

/// Records to write as one batch, with the producer fields of that batch.
pub(crate) struct LiveBatch {
    pub producer: ProducerFields,
    pub records: Vec<KeyValue>,
}

pub(crate) struct Table {
    pub partition: Arc<Partition>,
    /// Bytes the partition held right after the last snapshot (the live state).
    snapshot_bytes: AtomicU64,
}

fn as_records(records: &[KeyValue]) -> Vec<Record<'_>> {
    records.iter().map(|(k, v)| Record { key: Some(k), value: v.as_deref(), headers: &[], timestamp: None }).collect()
}

impl Table {
    pub fn new(partition: Arc<Partition>) -> Table {
        Table { partition, snapshot_bytes: AtomicU64::new(0) }
    }

    /// Calls `f` with every record of every batch, oldest first, control batches included.
    /// Returns the offset reached.
    pub fn replay(&self, f: impl FnMut(&BatchHeader, RecordView<'_>)) -> Result<u64> {
        let p = &self.partition;
        replay(p.log_start_offset(), p.high_watermark(), &p.path(), |o| p.fetch(o, 1 << 20), f)
    }

    /// Appends `records` as one batch (so atomically), snapshotting first with the batches
    /// `live` gives if enough has piled up. Callers hold the lock that orders their writes, so the
    /// log and their in-memory state agree.
    pub fn write(
        &self,
        records: &[KeyValue],
        producer: ProducerFields,
        acks: Acks,
        live: impl FnOnce() -> Vec<LiveBatch>,
    ) -> Result<AppendResult> {
        let size: u64 = records.iter().map(|(k, v)| (k.len() + v.as_ref().map_or(0, Vec::len) + 32) as u64).sum();
        let cfg = &self.partition.config;
        let recs = as_records(records);
        // One call is one batch, so it is atomic; check its size before anything is written.
        let encoded = encoded_len(&recs) as u64;
        if encoded > cfg.max_message_bytes {
            return Err(Error::RecordTooLarge { size: encoded, max: cfg.max_message_bytes });
        }
        let (_, total) = self.partition.segment_stats();
        let last = self.snapshot_bytes.load(Ordering::Relaxed);
        if total + size > last + 2 * cfg.segment_bytes {
            self.snapshot(live())?;
        }
        self.partition.append(&recs, acks, producer)
    }

    /// Rolls, writes the live state into the new segment, syncs, and drops older segments.
    fn snapshot(&self, live: Vec<LiveBatch>) -> Result<()> {
        self.partition.force_roll()?;
        let base = self.partition.active_base();
        for batch in live {
            for chunk in chunk_records(&batch.records, self.partition.config.max_message_bytes / 2) {
                self.partition.append(&as_records(chunk), Acks::One, batch.producer)?;
            }
        }
        self.partition.sync()?;
        self.partition.delete_segments_before(base)?;
        self.snapshot_bytes.store(self.partition.segment_stats().1, Ordering::Relaxed);
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

/// Calls `f` with every record in `[from, to)`, oldest first, control batches included, reading
/// through `fetch` (the writer's partition or a read-only handle's). Returns the offset reached.
pub(crate) fn replay(
    from: u64,
    to: u64,
    path: &std::path::Path,
    mut fetch: impl FnMut(u64) -> Result<crate::log::Fetched>,
    mut f: impl FnMut(&BatchHeader, RecordView<'_>),
) -> Result<u64> {
    let mut offset = from;
    while offset < to {
        let fetched = fetch(offset)?;
        for b in fetched.batches() {
            let b = b?;
            for r in b.records() {
                let r = r.map_err(|e| Error::corrupt(path, 0, e.to_string()))?;
                if r.offset >= offset && r.offset < to {
                    f(b.header(), r);
                }
            }
        }
        if fetched.next_offset() <= offset {
            break;
        }
        offset = fetched.next_offset().min(to);
    }
    Ok(offset)
}
