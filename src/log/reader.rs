//! One partition as a read-only handle sees it, possibly while a writer in another process appends
//! to it: the offsets the writer published in `partition.state`, the segment files listed from the
//! directory and mapped read-only, and fetch. Nothing here writes to the directory.
//!
//! The protocol (docs/DESIGN.md, "Readers in other processes"): the writer publishes the high
//! watermark together with the segment and byte position it lies at, after the bytes below it were
//! written and after any segment below it was created and sealed. A reader therefore reads only
//! bytes below the published position of the published segment, and whole earlier segments, all of
//! which are complete batches.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::config::{IsolationLevel, TopicConfig};
use crate::error::{Error, Result};
use crate::log::fetch::{Fetched, find_timestamp, select_batches};
use crate::log::producer_state::{self, ProducerStates, TxnView};
use crate::storage::segment::{Segment, log_file_name, parse_segment_file_name};
use crate::storage::shared_state::{PartitionState, Published};
use crate::storage::vfs::{OpenMode, Vfs};

/// A partition opened read-only.
pub(crate) struct ReaderPartition {
    pub(crate) topic: Arc<str>,
    pub(crate) id: u32,
    dir: Arc<Path>,
    vfs: Arc<dyn Vfs>,
    pub(crate) config: Arc<TopicConfig>,
    state: PartitionState,
    view: Mutex<View>,
    /// Producer state replayed from the log, for read_committed fetches (built on first use).
    txn: Mutex<Option<Replayed>>,
}

#[derive(Default)]
struct View {
    published: Published,
    /// The segments up to the published one, oldest first. All but the last are sealed; the last
    /// is readable up to the published position.
    segments: Arc<Vec<Arc<Segment>>>,
    /// Where the last fetch ended: (segment base, offset, byte position of the batch holding
    /// it). A follower's next fetch starts there instead of at an index entry.
    cursor: Option<(u64, u64, usize)>,
}

struct Replayed {
    producers: ProducerStates,
    view: TxnView,
    /// Offsets below this are folded in.
    upto: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ReaderPartition {
    /// Attaches to a partition directory. Fails when its state file is missing or not
    /// initialized: no writer of this version has opened the directory since it was made.
    pub(crate) fn open(topic: Arc<str>, id: u32, dir: Arc<Path>, vfs: Arc<dyn Vfs>, config: Arc<TopicConfig>) -> Result<ReaderPartition> {
        let state = PartitionState::open(&dir).map_err(|e| state_error(&dir, e))?;
        state.read().map_err(|e| state_error(&dir, e))?;
        Ok(ReaderPartition { topic, id, dir, vfs, config, state, view: Mutex::new(View::default()), txn: Mutex::new(None) })
    }

    /// What the writer published, and the segments that hold it.
    fn refresh(&self) -> Result<(Published, Arc<Vec<Arc<Segment>>>)> {
        let p = self.state.read().map_err(|e| state_error(&self.dir, e))?;
        let mut v = lock(&self.view);
        if p == v.published && !v.segments.is_empty() {
            return Ok((p, v.segments.clone()));
        }
        let grown = v
            .segments
            .last()
            .filter(|s| s.base_offset == p.segment && !s.is_sealed() && s.size() <= p.position)
            .is_some_and(|s| s.advance_for_reader(p.position, p.high_watermark));
        if !grown {
            v.segments = Arc::new(self.list_segments(&p, &v.segments)?);
            v.cursor = None;
        }
        if v.segments.first().is_some_and(|s| s.is_sealed() && s.next_offset() <= p.log_start) {
            // Retention moved the log start: forget the deleted segments (a fetch holding one keeps
            // its mapping).
            let rest: Vec<_> = v.segments.iter().filter(|s| !s.is_sealed() || s.next_offset() > p.log_start).cloned().collect();
            v.segments = Arc::new(rest);
        }
        v.published = p;
        Ok((p, v.segments.clone()))
    }

    /// Builds the segment list from the directory: every `.log` up to the published segment,
    /// reusing the sealed segments already known.
    fn list_segments(&self, p: &Published, known: &[Arc<Segment>]) -> Result<Vec<Arc<Segment>>> {
        let mut bases: Vec<u64> = self
            .vfs
            .read_dir(&self.dir)
            .map_err(|e| Error::io("read directory", self.dir.to_path_buf(), e))?
            .into_iter()
            .filter(|e| e.is_file)
            .filter_map(|e| e.name.to_str().and_then(parse_segment_file_name).filter(|(_, ext)| *ext == "log").map(|(b, _)| b))
            .filter(|&b| b <= p.segment)
            .collect();
        bases.sort_unstable();
        if bases.last() != Some(&p.segment) {
            return Err(Error::io(
                "open",
                self.dir.join(log_file_name(p.segment)),
                std::io::Error::new(std::io::ErrorKind::NotFound, "the segment the writer published is gone"),
            ));
        }
        let mut out = Vec::with_capacity(bases.len());
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied();
            match next {
                Some(next) if next <= p.log_start => continue,
                Some(next) => {
                    if let Some(s) = known.iter().find(|s| s.base_offset == base && s.is_sealed()) {
                        out.push(s.clone());
                        continue;
                    }
                    // A segment with a successor was trimmed to its batches before the successor was
                    // created, so its length is its size.
                    let path = self.dir.join(log_file_name(base));
                    let len = match self.vfs.open(&path, OpenMode::Read).and_then(|f| f.len()) {
                        Ok(len) => len,
                        // Deleted by retention since the listing.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(Error::io("open", path, e)),
                    };
                    out.push(Segment::for_reader(self.vfs.clone(), self.dir.clone(), base, len, next, true, 0));
                }
                None => {
                    let path = self.dir.join(log_file_name(base));
                    let len = self.vfs.open(&path, OpenMode::Read).and_then(|f| f.len()).map_err(|e| Error::io("open", &path, e))?;
                    if len < p.position {
                        return Err(Error::corrupt(&path, len, format!("shorter than the {} bytes its writer published", p.position)));
                    }
                    // Mapped with room to grow to a whole segment, so following it needs no new mapping.
                    let map_len = len.max(self.config.segment_capacity());
                    out.push(Segment::for_reader(self.vfs.clone(), self.dir.clone(), base, p.position, p.high_watermark, false, map_len));
                }
            }
        }
        Ok(out)
    }

    /// The published offsets.
    pub(crate) fn published(&self) -> Result<Published> {
        self.state.read().map_err(|e| state_error(&self.dir, e))
    }

    /// What the writer published, or what this handle last saw if the state file became
    /// unreadable (only damage by someone else does that; fetches then report it).
    pub(crate) fn published_or_last(&self) -> Published {
        match self.published() {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{}: {e}", self.dir.display());
                lock(&self.view).published
            }
        }
    }

    /// The high watermark.
    pub(crate) fn high_watermark(&self) -> Result<u64> {
        Ok(self.published()?.high_watermark)
    }

    /// The log start offset.
    pub(crate) fn log_start_offset(&self) -> Result<u64> {
        Ok(self.published()?.log_start)
    }

    /// The last stable offset.
    pub(crate) fn last_stable_offset(&self) -> Result<u64> {
        let p = self.published()?;
        Ok(p.last_stable.min(p.high_watermark))
    }

    /// The segments as this handle sees them.
    pub(crate) fn segments(&self) -> Result<Arc<Vec<Arc<Segment>>>> {
        Ok(self.refresh()?.1)
    }

    /// Reads from `offset`, as [`crate::log::Partition::fetch_isolated`] does in the writer.
    pub(crate) fn fetch_isolated(&self, offset: u64, max_bytes: u64, isolation: IsolationLevel) -> Result<Fetched> {
        let (p, segs) = self.refresh()?;
        let (hw, log_start) = (p.high_watermark, p.log_start);
        let lso = p.last_stable.min(hw);
        let bound = match isolation {
            IsolationLevel::ReadUncommitted => hw,
            IsolationLevel::ReadCommitted => lso,
        };
        if offset < log_start || offset > hw {
            return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark: hw });
        }
        if offset >= bound {
            return Ok(Fetched::empty(offset, hw, log_start).with_last_stable_offset(lso));
        }
        let i = segs.partition_point(|s| s.base_offset <= offset);
        let Some(seg) = i.checked_sub(1).and_then(|i| segs.get(i)) else {
            return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark: hw });
        };
        let data = match seg.data() {
            Ok((data, _)) => data,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Retention deleted the segment after the list was read; the writer published the
                // new log start before it deleted the file.
                let log_start = self.published()?.log_start;
                return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark: hw });
            }
            Err(e) => return Err(e),
        };
        let bytes = data.prefix(seg.visible());
        let mut from = seg.position_for_offset(&data, offset, self.config.index_interval_bytes) as usize;
        if let Some((base, at, pos)) = lock(&self.view).cursor
            && base == seg.base_offset
            && at <= offset
            && pos > from
            && pos <= bytes.len()
        {
            from = pos;
        }
        let (start, end, next_offset) = select_batches(bytes, from, offset, bound, max_bytes, &seg.log_path())?;
        lock(&self.view).cursor = Some((seg.base_offset, next_offset, end));
        let aborted = match isolation {
            IsolationLevel::ReadUncommitted => Vec::new(),
            IsolationLevel::ReadCommitted => self.aborted_in(&segs, offset, next_offset, hw)?,
        };
        Ok(Fetched::new(data, seg.log_path(), start, end, offset, next_offset, hw, log_start)
            .with_last_stable_offset(lso)
            .with_aborted(aborted))
    }

    /// Aborted transactions overlapping `[from, to)`, from the producer state replayed up to the
    /// high watermark `hw`: from the newest producer-state snapshot the first time, then only the
    /// batches published since.
    fn aborted_in(&self, segs: &[Arc<Segment>], from: u64, to: u64, hw: u64) -> Result<Vec<crate::format::txn::AbortedTxn>> {
        let mut slot = lock(&self.txn);
        let interval = self.config.index_interval_bytes;
        let stale = slot.as_ref().is_none_or(|r| r.upto > hw);
        if stale {
            let log_start = segs.first().map_or(hw, |s| s.base_offset);
            let (upto, (producers, view)) = match producer_state::newest_snapshot(&*self.vfs, &self.dir, hw, false)? {
                Some(s) if s.offset >= log_start => (s.offset, ProducerStates::restore(s)),
                _ => (log_start, (ProducerStates::default(), TxnView::default())),
            };
            *slot = Some(Replayed { producers, view, upto });
        }
        let Some(r) = slot.as_mut() else { return Ok(Vec::new()) };
        if r.upto < hw {
            producer_state::replay(segs, r.upto, hw, interval, &mut r.producers, &mut r.view)?;
            r.upto = hw;
        }
        Ok(r.view.aborted_in(from, to))
    }

    /// The first offset whose record has a timestamp at or after `timestamp`.
    pub(crate) fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        let (p, segs) = self.refresh()?;
        let hw = p.high_watermark;
        for seg in segs.iter() {
            if seg.base_offset >= hw {
                break;
            }
            let data = match seg.data() {
                Ok((d, _)) => d,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if let ControlFlow::Break(found) = find_timestamp(seg, &data, hw, timestamp, self.config.index_interval_bytes)? {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Path of the partition directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

fn state_error(dir: &Path, e: std::io::Error) -> Error {
    let path = dir.join(crate::storage::shared_state::PARTITION_STATE_FILE);
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::corrupt(
            &path,
            0,
            "missing: no writer of this runnel version has opened the directory since the partition was made; open it for writing once",
        ),
        std::io::ErrorKind::InvalidData => Error::corrupt(&path, 0, e.to_string()),
        _ => Error::io("open", path, e),
    }
}
