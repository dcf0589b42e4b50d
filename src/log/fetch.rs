//! The result of a fetch: a range of complete batches inside one segment mapping, and iterators
//! that read records from it without copying.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::batch::{BatchView, FrameError, RecordIter, RecordView};
use crate::format::txn::AbortedTxn;
use crate::storage::segment::{Segment, SegmentData};

/// Chooses what a fetch returns from a segment's readable bytes: the batch holding `offset`
/// (scanning from `from`, a batch boundary at or before it) and the batches after it, stopping at
/// the first batch at or above `bound` (an offset: the high watermark or last stable offset) or
/// once more would exceed `max_bytes` (the first batch is returned whatever its size). Returns the
/// start and end byte positions and the offset after the last record returned. Every length is
/// checked against `bytes` before it is trusted.
pub(crate) fn select_batches(
    bytes: &[u8],
    from: usize,
    offset: u64,
    bound: u64,
    max_bytes: u64,
    path: &Path,
) -> Result<(usize, usize, u64)> {
    let corrupt = |pos: usize, e: FrameError| Error::corrupt(path, pos as u64, e.to_string());
    let mut pos = from;
    // Skip the batches that end before `offset`.
    while pos < bytes.len() {
        let h = *BatchView::parse(&bytes[pos..]).map_err(|e| corrupt(pos, e))?.header();
        if h.next_offset() > offset {
            break;
        }
        pos += h.total_len();
    }
    let start = pos;
    let mut next_offset = offset;
    while pos < bytes.len() {
        let view = BatchView::parse(&bytes[pos..]).map_err(|e| corrupt(pos, e))?;
        let h = view.header();
        if h.base_offset >= bound || (pos > start && (pos + h.total_len() - start) as u64 > max_bytes) {
            break;
        }
        next_offset = h.next_offset().min(bound);
        pos += h.total_len();
    }
    if pos == start {
        // Below the bound some batch must hold `offset`: returning nothing would leave a consumer
        // polling the same offset forever.
        return Err(Error::corrupt(path, start as u64, format!("no batch holds offset {offset}, below the high watermark {bound}")));
    }
    Ok((start, pos, next_offset))
}

/// Looks in one segment's readable bytes for the first record, below `hw`, with a timestamp at or
/// after `timestamp`. `Break` ends the search (with the record, or `None` once a batch at or past
/// `hw` is reached); `Continue` moves on to the next segment.
pub(crate) fn find_timestamp(
    seg: &Segment,
    data: &SegmentData,
    hw: u64,
    timestamp: i64,
    index_interval: u64,
) -> Result<ControlFlow<Option<(u64, i64)>>> {
    let bytes = data.prefix(seg.visible());
    let mut pos = seg.position_for_timestamp(data, timestamp, index_interval) as usize;
    while pos < bytes.len() {
        let view = BatchView::parse(&bytes[pos..]).map_err(|e| Error::corrupt(seg.log_path(), pos as u64, e.to_string()))?;
        let h = *view.header();
        if h.base_offset >= hw {
            return Ok(ControlFlow::Break(None));
        }
        if h.max_timestamp >= timestamp && !h.is_control() {
            for r in view.records() {
                let r = r.map_err(|e| Error::corrupt(seg.log_path(), pos as u64, e.to_string()))?;
                if r.timestamp >= timestamp {
                    return Ok(ControlFlow::Break(Some((r.offset, r.timestamp))));
                }
            }
        }
        pos += h.total_len();
    }
    Ok(ControlFlow::Continue(()))
}

/// Batches read from one partition, borrowed from the segment's mapping.
///
/// Holding a `Fetched` keeps its segment mapped, even if retention deletes the segment's files
/// meanwhile; records borrow from it and cost no allocation.
///
/// ```
/// # fn main() -> runnel::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
/// # log.create_topic("t", 1, runnel::TopicConfig::default())?;
/// log.append("t", Some(0), &[runnel::Record::new(b"hello")], runnel::Acks::All)?;
/// let fetched = log.fetch("t", 0, 0, 1 << 20)?;
/// for record in fetched.records() {
///     let record = record?;
///     assert_eq!(record.value, Some(&b"hello"[..]));
/// }
/// assert_eq!(fetched.next_offset(), 1);
/// # Ok(()) }
/// ```
pub struct Fetched {
    data: Option<Arc<SegmentData>>,
    path: PathBuf,
    start: usize,
    end: usize,
    offset: u64,
    next_offset: u64,
    high_watermark: u64,
    log_start_offset: u64,
    last_stable_offset: u64,
    /// For read_committed: aborted transactions overlapping the range, by first offset.
    aborted: Vec<AbortedTxn>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("offset", &self.offset)
            .field("next_offset", &self.next_offset)
            .field("bytes", &(self.end - self.start))
            .field("high_watermark", &self.high_watermark)
            .finish()
    }
}

impl Fetched {
    pub(crate) fn empty(offset: u64, high_watermark: u64, log_start_offset: u64) -> Fetched {
        Fetched {
            data: None,
            path: PathBuf::new(),
            start: 0,
            end: 0,
            offset,
            next_offset: offset,
            high_watermark,
            log_start_offset,
            last_stable_offset: high_watermark,
            aborted: Vec::new(),
        }
    }

    #[expect(clippy::too_many_arguments, reason = "a plain constructor for the log's fetch")]
    pub(crate) fn new(
        data: Arc<SegmentData>,
        path: PathBuf,
        start: usize,
        end: usize,
        offset: u64,
        next_offset: u64,
        high_watermark: u64,
        log_start_offset: u64,
    ) -> Fetched {
        Fetched {
            data: Some(data),
            path,
            start,
            end,
            offset,
            next_offset,
            high_watermark,
            log_start_offset,
            last_stable_offset: high_watermark,
            aborted: Vec::new(),
        }
    }

    pub(crate) fn with_last_stable_offset(mut self, lso: u64) -> Fetched {
        self.last_stable_offset = lso;
        self
    }

    pub(crate) fn with_aborted(mut self, mut aborted: Vec<AbortedTxn>) -> Fetched {
        aborted.sort_by_key(|a| a.first_offset);
        self.aborted = aborted;
        self
    }

    /// The partition's last stable offset when the fetch was made: the end of what read_committed
    /// readers may see (the high watermark unless a transaction is open below it).
    pub fn last_stable_offset(&self) -> u64 {
        self.last_stable_offset
    }

    /// For a read_committed fetch, the aborted transactions whose records lie in the fetched range,
    /// by first offset ([`Fetched::records`] skips them; whoever reads [`Fetched::batches`] or
    /// [`Fetched::bytes`] directly skips the transactional batches of `producer_id` from
    /// `first_offset` up to the marker at `last_offset`, as a Kafka consumer does).
    pub fn aborted_transactions(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// The raw bytes of the fetched batches, exactly as stored (what sendfile would send).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Some(d) => d.prefix(self.end as u64).get(self.start..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// The rest of this fetch from `offset` on, sharing its mapping: what a second fetch from
    /// `offset` would return, without looking the offset up again. `None` when `offset` is not
    /// inside the fetched range. (A consumer returns a fetch over several polls this way, as
    /// Kafka's fetcher keeps a completed fetch and hands it out `max.poll.records` at a time.)
    pub(crate) fn rest_from(&self, offset: u64) -> Option<Fetched> {
        if offset < self.offset || offset >= self.next_offset {
            return None;
        }
        let mut pos = 0;
        for b in self.batches() {
            let b = b.ok()?;
            if b.header().next_offset() > offset {
                break;
            }
            pos += b.as_bytes().len();
        }
        Some(Fetched {
            data: self.data.clone(),
            path: self.path.clone(),
            start: self.start + pos,
            end: self.end,
            offset,
            next_offset: self.next_offset,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            last_stable_offset: self.last_stable_offset,
            aborted: self.aborted.clone(),
        })
    }

    /// The segment file and the byte range of the fetched batches in it (for sendfile).
    pub(crate) fn file_range(&self) -> Option<(Arc<dyn crate::storage::vfs::VFile>, u64, u64)> {
        let d = self.data.as_ref()?;
        (self.end > self.start).then(|| (d.file().clone(), self.start as u64, (self.end - self.start) as u64))
    }

    /// Whether no batch was returned (the offset was at the high watermark).
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The offset to fetch from next.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// The partition's high watermark when the fetch was made.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark
    }

    /// The partition's log start offset when the fetch was made.
    pub fn log_start_offset(&self) -> u64 {
        self.log_start_offset
    }

    /// The batches, whole (the first may begin before the requested offset).
    pub fn batches(&self) -> Batches<'_> {
        Batches { bytes: self.bytes(), pos: 0, fetched: self }
    }

    /// The records at or after the requested offset, in order, skipping control batches (and, for
    /// a read_committed fetch, the batches of aborted transactions, whole, without decoding them).
    pub fn records(&self) -> Records<'_> {
        Records {
            batches: self.batches(),
            current: None,
            offset: self.offset,
            aborted: &self.aborted,
            next_aborted: 0,
            skipping: Vec::new(),
        }
    }

    fn corrupt(&self, pos: usize, reason: String) -> Error {
        Error::corrupt(self.path.clone(), (self.start + pos) as u64, reason)
    }
}

/// Iterator over the batches of a [`Fetched`].
pub struct Batches<'a> {
    bytes: &'a [u8],
    pos: usize,
    fetched: &'a Fetched,
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<BatchView<'a>>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        match BatchView::parse(&self.bytes[self.pos..]) {
            Ok(v) => {
                self.pos += v.header().total_len();
                Some(Ok(v))
            }
            Err(e) => {
                let pos = self.pos;
                self.pos = self.bytes.len();
                Some(Err(self.fetched.corrupt(pos, e.to_string())))
            }
        }
    }
}

/// Iterator over the records of a [`Fetched`].
pub struct Records<'a> {
    batches: Batches<'a>,
    current: Option<RecordIter<'a>>,
    offset: u64,
    aborted: &'a [AbortedTxn],
    next_aborted: usize,
    /// Aborted transactions being skipped: producer id and marker offset.
    skipping: Vec<(i64, u64)>,
}

impl Records<'_> {
    /// Whether a batch belongs to an aborted transaction (Kafka's consumer-side filter: a
    /// transaction is skipped from its first offset until its abort marker).
    fn is_aborted(&mut self, b: &BatchView<'_>) -> bool {
        if self.aborted.is_empty() {
            return false;
        }
        let h = b.header();
        while let Some(a) = self.aborted.get(self.next_aborted).filter(|a| a.first_offset <= h.base_offset) {
            self.skipping.push((a.producer_id, a.last_offset));
            self.next_aborted += 1;
        }
        self.skipping.retain(|&(_, marker)| marker > h.base_offset);
        h.is_transactional() && self.skipping.iter().any(|&(pid, _)| pid == h.producer_id)
    }
}

impl Records<'_> {
    /// How many records below `end` this iterator would yield, from the batch headers alone: the
    /// records of a batch have consecutive offsets.
    pub(crate) fn count_below(mut self, end: u64) -> Result<u64> {
        let mut n = 0;
        while let Some(b) = self.batches.next() {
            let b = b?;
            let h = *b.header();
            if h.base_offset >= end {
                break;
            }
            if h.is_control() || h.next_offset() <= self.offset || self.is_aborted(&b) {
                continue;
            }
            n += h.next_offset().min(end) - h.base_offset.max(self.offset);
        }
        Ok(n)
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = &mut self.current {
                match it.next() {
                    Some(Ok(r)) if r.offset < self.offset => continue,
                    Some(Ok(r)) => return Some(Ok(r)),
                    Some(Err(e)) => {
                        self.current = None;
                        let pos = self.batches.pos;
                        self.batches.pos = self.batches.bytes.len();
                        return Some(Err(self.batches.fetched.corrupt(pos, e.to_string())));
                    }
                    None => self.current = None,
                }
            }
            match self.batches.next()? {
                Ok(b) if b.header().is_control() => continue,
                Ok(b) if b.header().next_offset() <= self.offset => continue,
                Ok(b) if self.is_aborted(&b) => continue,
                Ok(b) => self.current = Some(b.records()),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
