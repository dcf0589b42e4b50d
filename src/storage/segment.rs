//! One segment of a partition: its `.log` mapping, its `.index` and `.timeindex`, and the one place
//! where bytes of a mapping are turned into slices.
//!
//! A segment is shared (`Arc`) between the partition that writes it and any number of readers. The
//! writer appends through [`ActiveSegment`] under the partition lock; readers only ever look at
//! `[0, visible)`, a prefix of complete batches that the writer publishes after copying them in.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::format::batch::{BatchHeader, BatchView};
use crate::format::index::{self, OffsetEntry, TimeEntry};
use crate::format::scan::{Scan, scan};
use crate::storage::prefault::Prefaulter;
use crate::storage::vfs::{Mapping, OpenMode, VFile, Vfs};

/// The largest index file worth reading for a segment of `log_size` bytes: an entry per 8 bytes
/// of log at most, and never more than 64 MiB (an index is derivable; a larger one is rebuilt).
pub fn index_limit(log_size: u64) -> u64 {
    (log_size / 8 * 12 + 64).min(64 << 20)
}

/// Batches at least this large are written with write(2) instead of a copy into the mapping.
pub const PWRITE_THRESHOLD: usize = 64 << 10;

/// Disk space for an active segment is reserved in steps of this many bytes.
pub const ALLOCATION_STEP: u64 = 8 << 20;
// Recovery takes up to MAX_PREALLOCATED_TAIL zeros for preallocation; the writer reserves at most
// two steps past its data.
const _: () = assert!(2 * ALLOCATION_STEP <= crate::format::scan::MAX_PREALLOCATED_TAIL);

/// The file name of a segment's log: the base offset as 20 digits.
pub fn log_file_name(base_offset: u64) -> String {
    format!("{base_offset:020}.log")
}

/// Parses `00000000000000000042.log` (or `.index`, `.timeindex`) into 42 and the extension.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// A mapped `.log` file.
pub struct SegmentData {
    map: Option<Box<dyn Mapping>>,
    file: Arc<dyn VFile>,
}

impl SegmentData {
    /// The first `len` bytes of the file.
    ///
    /// Callers pass a length no greater than the segment's visible size, which only ever covers
    /// complete batches that the writer has finished copying in.
    #[expect(unsafe_code, reason = "viewing a prefix of a file mapping as a slice")]
    pub fn prefix(&self, len: u64) -> &[u8] {
        let Some(map) = &self.map else { return &[] };
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(map.len());
        // SAFETY: `[ptr, ptr + len)` lies inside the mapping (clamped above), which lives as long as
        // `self`. Bytes below the visible size are never written again: the writer only writes at
        // or beyond its write position, recovery truncates only before a mapping is handed out, and
        // retention unlinks files without truncating them, so the mapping stays valid and the bytes
        // stay unchanged while the slice lives. Every page below the visible size is backed by the
        // file (the file is never shorter than the visible size), so reading cannot raise SIGBUS.
        // Recovery's `scan_file` maps a file it is about to truncate, but drops this `SegmentData`
        // (and every slice of it) before it returns, so the truncation happens after the borrow.
        // Another process writing the files behind runnel's back is outside the contract (as with
        // SQLite or LMDB): the directory lock keeps other runnel writers out.
        unsafe { std::slice::from_raw_parts(map.as_ptr(), len) }
    }

    /// Faults in `[pos, pos + len)` for writing (advisory).
    pub fn prefault(&self, pos: usize, len: usize) {
        if let Some(map) = &self.map {
            map.prefault(pos, len);
        }
    }

    /// The open file, for sendfile(2).
    pub fn file(&self) -> &Arc<dyn VFile> {
        &self.file
    }
}

/// The in-memory copy of a segment's indexes.
#[derive(Clone, Default)]
struct Indexes {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
}

/// A segment: shared by the writer and readers.
pub struct Segment {
    /// Offset of the first record.
    pub base_offset: u64,
    dir: Arc<Path>,
    vfs: Arc<dyn Vfs>,
    /// Bytes of complete batches written so far (the writer's position; final once sealed).
    size: AtomicU64,
    /// Bytes readers may look at: a batch boundary at or below `size`.
    visible: AtomicU64,
    /// The offset after the last batch in `size`.
    next_offset: AtomicU64,
    /// Largest timestamp in the segment (`i64::MIN` when empty).
    max_timestamp: AtomicI64,
    sealed: AtomicBool,
    /// An index entry was found pointing at the wrong bytes: lookups scan from the start.
    index_distrusted: AtomicBool,
    data: Mutex<Option<Arc<SegmentData>>>,
    indexes: RwLock<Option<Arc<Indexes>>>,
    /// A logical clock value, for the open-segment cache's eviction order.
    pub(crate) last_used: AtomicU64,
    /// Seen by a read-only handle: never writes (rebuilt indexes stay in memory).
    read_only: bool,
    /// Bytes to map (0: the size); a read-only handle maps the segment it follows with room to
    /// grow, so that its readable prefix can advance without a new mapping.
    map_len: u64,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment").field("base_offset", &self.base_offset).field("size", &self.size()).finish()
    }
}

/// Maps the first `len` bytes of `file` read-only and [`scan`]s them. The mapping is dropped before
/// this returns, so the caller may truncate the file afterwards.
pub fn scan_file(file: &Arc<dyn VFile>, len: u64, base_offset: u64, index_interval: u64, verify: bool) -> std::io::Result<Scan> {
    if len == 0 {
        return Ok(scan(&[], base_offset, index_interval, verify));
    }
    let n = usize::try_from(len).map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large to map"))?;
    if file.len()? < len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "file shorter than expected"));
    }
    let data = SegmentData { map: Some(file.map(n, false)?), file: file.clone() };
    Ok(scan(data.prefix(len), base_offset, index_interval, verify))
}

impl Segment {
    fn new(vfs: Arc<dyn Vfs>, dir: Arc<Path>, base_offset: u64, size: u64, next_offset: u64, max_ts: i64) -> Segment {
        Segment {
            base_offset,
            dir,
            vfs,
            size: AtomicU64::new(size),
            visible: AtomicU64::new(size),
            next_offset: AtomicU64::new(next_offset),
            max_timestamp: AtomicI64::new(max_ts),
            sealed: AtomicBool::new(false),
            index_distrusted: AtomicBool::new(false),
            data: Mutex::new(None),
            indexes: RwLock::new(None),
            last_used: AtomicU64::new(0),
            read_only: false,
            map_len: 0,
        }
    }

    /// Path of the `.log` file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(log_file_name(self.base_offset))
    }

    /// Path of the `.index` file.
    pub fn index_path(&self) -> PathBuf {
        self.dir.join(format!("{:020}.index", self.base_offset))
    }

    /// Path of the `.timeindex` file.
    pub fn time_index_path(&self) -> PathBuf {
        self.dir.join(format!("{:020}.timeindex", self.base_offset))
    }

    /// Bytes of complete batches.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Bytes readers may look at.
    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Raises the visible size to `len` (a batch boundary at or below the size).
    pub fn publish(&self, len: u64) {
        debug_assert!(len <= self.size());
        self.visible.fetch_max(len, Ordering::Release);
    }

    /// The offset after the last batch.
    pub fn next_offset(&self) -> u64 {
        self.next_offset.load(Ordering::Acquire)
    }

    /// Largest timestamp in the segment, `i64::MIN` when it holds no record.
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.load(Ordering::Acquire)
    }

    /// Whether the segment will not grow any more.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// A segment found on disk with `size` bytes of complete batches; the last one of a partition
    /// is not sealed and is reopened for appending through [`ActiveSegment::reopen`].
    pub fn loaded(
        vfs: Arc<dyn Vfs>,
        dir: Arc<Path>,
        base_offset: u64,
        size: u64,
        next_offset: u64,
        max_ts: i64,
        sealed: bool,
    ) -> Arc<Segment> {
        let s = Segment::new(vfs, dir, base_offset, size, next_offset, max_ts);
        s.sealed.store(sealed, Ordering::Release);
        Arc::new(s)
    }

    /// A segment as a read-only handle sees it: `size` readable bytes of complete batches (final
    /// when `sealed`), `next_offset` the offset after them as far as the handle knows, and
    /// `map_len` bytes to map (at least `size`) so that an unsealed segment can grow in place.
    /// Its largest timestamp is not known (lookups by time scan it).
    pub fn for_reader(
        vfs: Arc<dyn Vfs>,
        dir: Arc<Path>,
        base_offset: u64,
        size: u64,
        next_offset: u64,
        sealed: bool,
        map_len: u64,
    ) -> Arc<Segment> {
        let mut s = Segment::new(vfs, dir, base_offset, size, next_offset, i64::MAX);
        s.read_only = true;
        s.map_len = map_len.max(size);
        s.sealed.store(sealed, Ordering::Release);
        Arc::new(s)
    }

    /// A read-only handle learned that `size` bytes (ending before `next_offset`) are readable.
    /// Fails if they lie beyond the mapping, which then has to be replaced.
    pub fn advance_for_reader(&self, size: u64, next_offset: u64) -> bool {
        debug_assert!(self.read_only);
        if self.map_len < size {
            return false;
        }
        self.size.fetch_max(size, Ordering::AcqRel);
        self.visible.fetch_max(size, Ordering::AcqRel);
        self.next_offset.fetch_max(next_offset, Ordering::AcqRel);
        true
    }

    /// The mapping of the `.log`, opening it when it is not open. Returns whether it was opened now
    /// (so the caller can account for it in the open-segment cache).
    pub fn data(&self) -> Result<(Arc<SegmentData>, bool)> {
        let mut slot = self.data.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(d) = &*slot {
            return Ok((d.clone(), false));
        }
        let path = self.log_path();
        let file = self.vfs.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
        let size = self.size();
        let map_len = self.map_len.max(size);
        let map = if map_len == 0 {
            None
        } else {
            let len = usize::try_from(map_len).map_err(|_| Error::corrupt(&path, 0, "segment too large to map"))?;
            let on_disk = file.len().map_err(|e| Error::io("stat", &path, e))?;
            if on_disk < size {
                return Err(Error::corrupt(&path, on_disk, format!("file is shorter ({on_disk} bytes) than the log expects ({size})")));
            }
            Some(file.map(len, false).map_err(|e| Error::io("mmap", &path, e))?)
        };
        let d = Arc::new(SegmentData { map, file });
        *slot = Some(d.clone());
        Ok((d, true))
    }

    /// Drops the cached mapping and indexes of a sealed segment; readers holding them keep theirs.
    pub fn evict(&self) {
        if self.is_sealed() {
            *self.data.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *self.indexes.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Whether the mapping is currently open.
    pub fn is_open(&self) -> bool {
        self.data.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn indexes(&self, data: &SegmentData, index_interval: u64) -> Arc<Indexes> {
        if let Some(ix) = &*self.indexes.read().unwrap_or_else(|e| e.into_inner()) {
            return ix.clone();
        }
        let mut slot = self.indexes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(ix) = &*slot {
            return ix.clone();
        }
        let size = self.size();
        let loaded = self.read_index_files(size);
        let ix = Arc::new(match loaded {
            Some(ix) => ix,
            None => {
                // Missing, stale or damaged: indexes are derivable from the log, so rebuild them.
                let s = scan(data.prefix(size), self.base_offset, index_interval, false);
                let ix = Indexes { offsets: s.offsets, times: s.times };
                if self.is_sealed() && !self.read_only {
                    // Best effort: a failure only means rebuilding again next time.
                    let _ = self.write_index_files(&ix, size);
                }
                ix
            }
        });
        *slot = Some(ix.clone());
        ix
    }

    fn read_index_files(&self, size: u64) -> Option<Indexes> {
        let read = |path: &Path| -> Option<Vec<u8>> {
            let f = self.vfs.open(path, OpenMode::Read).ok()?;
            let len = usize::try_from(f.len().ok()?).ok()?;
            if len as u64 > index_limit(size) {
                return None;
            }
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, 0).ok()?;
            Some(buf)
        };
        let offsets = index::decode_offset_index(&read(&self.index_path())?, self.base_offset, size).ok()?;
        let (_, times) = index::decode_time_index(&read(&self.time_index_path())?, self.base_offset).ok()?;
        if offsets.len() != times.len() {
            return None;
        }
        Some(Indexes { offsets, times })
    }

    fn write_index_files(&self, ix: &Indexes, size: u64) -> Result<()> {
        let write = |path: PathBuf, bytes: Vec<u8>| -> Result<()> {
            let f = self.vfs.open(&path, OpenMode::Create).map_err(|e| Error::io("open", &path, e))?;
            f.set_len(0).map_err(|e| Error::io("truncate", &path, e))?;
            f.write_all_at(&bytes, 0).map_err(|e| Error::io("write", &path, e))?;
            Ok(())
        };
        write(self.index_path(), index::encode_offset_index(self.base_offset, size, &ix.offsets))?;
        write(self.time_index_path(), index::encode_time_index(self.base_offset, self.max_timestamp(), &ix.times))?;
        Ok(())
    }

    /// Byte position in the `.log` where a scan for `offset` may start: the indexed batch at or
    /// before it. The position is checked against the batch found there: an index that names the
    /// wrong batch (damaged or crafted, yet well formed) is distrusted from then on, and the scan
    /// starts at the beginning of the segment.
    pub fn position_for_offset(&self, data: &SegmentData, offset: u64, index_interval: u64) -> u64 {
        let ix = self.indexes(data, index_interval);
        let rel = offset.saturating_sub(self.base_offset).min(u64::from(u32::MAX)) as u32;
        let i = ix.offsets.partition_point(|e| e.relative_offset <= rel);
        match i.checked_sub(1).and_then(|i| ix.offsets.get(i)) {
            Some(e) => self.checked_position(data, *e),
            None => 0,
        }
    }

    /// Byte position where a scan for the first record with timestamp >= `ts` may start (checked
    /// as in [`Segment::position_for_offset`]).
    pub fn position_for_timestamp(&self, data: &SegmentData, ts: i64, index_interval: u64) -> u64 {
        let ix = self.indexes(data, index_interval);
        let i = ix.times.partition_point(|e| e.timestamp < ts);
        if i == 0 {
            return 0;
        }
        let rel = ix.times[i - 1].relative_offset;
        let j = ix.offsets.partition_point(|e| e.relative_offset < rel);
        match ix.offsets.get(j).filter(|e| e.relative_offset == rel) {
            Some(e) => self.checked_position(data, *e),
            None => 0,
        }
    }

    fn checked_position(&self, data: &SegmentData, e: OffsetEntry) -> u64 {
        if self.index_distrusted.load(Ordering::Relaxed) {
            return 0;
        }
        let pos = u64::from(e.position);
        let bytes = data.prefix(self.visible());
        let ok = bytes
            .get(pos as usize..)
            .and_then(|b| BatchView::parse(b).ok())
            .is_some_and(|v| v.header().base_offset == self.base_offset + u64::from(e.relative_offset));
        if ok || pos >= bytes.len() as u64 {
            // Past the visible bytes the batch is not readable yet; the caller stops there anyway.
            return if ok { pos } else { 0 };
        }
        log::warn!(
            "{}: index entry {e:?} does not point at the start of that batch; scanning the segment instead",
            self.log_path().display()
        );
        self.index_distrusted.store(true, Ordering::Relaxed);
        0
    }

    /// Writes the index files of the segment as they stand (clean shutdown of an active segment).
    pub fn flush_indexes(&self) -> Result<()> {
        let ix = self.indexes.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(ix) = ix {
            self.write_index_files(&ix, self.size())?;
        }
        Ok(())
    }

    /// Syncs the index files (before a clean-shutdown marker is written).
    pub fn sync_indexes(&self) -> Result<()> {
        for path in [self.index_path(), self.time_index_path()] {
            if let Ok(f) = self.vfs.open(&path, OpenMode::Read) {
                f.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
            }
        }
        Ok(())
    }

    /// Removes the segment's files. The mapping stays valid for readers holding it.
    pub fn delete_files(&self) -> Result<()> {
        for path in [self.log_path(), self.index_path(), self.time_index_path()] {
            match self.vfs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("unlink", &path, e)),
            }
        }
        Ok(())
    }
}

/// The writer's side of the segment being appended to.
pub struct ActiveSegment {
    seg: Arc<Segment>,
    file: Arc<dyn VFile>,
    data: Arc<SegmentData>,
    /// Mapping length: the most this segment can hold.
    capacity: u64,
    /// Bytes of the file with disk blocks reserved.
    allocated: u64,
    since_index: u64,
    index_interval: u64,
    prefaulter: Option<Prefaulter>,
}

impl ActiveSegment {
    /// Creates a new, empty segment file.
    pub fn create(vfs: Arc<dyn Vfs>, dir: Arc<Path>, base_offset: u64, capacity: u64, index_interval: u64) -> Result<ActiveSegment> {
        let seg = Arc::new(Segment::new(vfs.clone(), dir, base_offset, 0, base_offset, i64::MIN));
        let path = seg.log_path();
        let file = vfs.open(&path, OpenMode::CreateNew).map_err(|e| Error::io("create", &path, e))?;
        Self::with_file(seg, file, capacity, index_interval, Indexes::default())
    }

    /// Reopens the last segment for appending after it has been checked (`size` bytes of
    /// complete batches, the file already truncated to `size`).
    pub fn reopen(seg: Arc<Segment>, capacity: u64, index_interval: u64, rebuilt: Option<Scan>) -> Result<ActiveSegment> {
        let path = seg.log_path();
        let file = seg.vfs.open(&path, OpenMode::Write).map_err(|e| Error::io("open", &path, e))?;
        let ix = match rebuilt {
            Some(s) => Indexes { offsets: s.offsets, times: s.times },
            None => match seg.read_index_files(seg.size()) {
                Some(ix) => ix,
                None => {
                    let tmp = ActiveSegment::with_file(seg.clone(), file.clone(), capacity, index_interval, Indexes::default())?;
                    let s = scan(tmp.data.prefix(seg.size()), seg.base_offset, index_interval, false);
                    Indexes { offsets: s.offsets, times: s.times }
                }
            },
        };
        Self::with_file(seg, file, capacity, index_interval, ix)
    }

    fn with_file(seg: Arc<Segment>, file: Arc<dyn VFile>, capacity: u64, index_interval: u64, ix: Indexes) -> Result<ActiveSegment> {
        let path = seg.log_path();
        // A segment written under a larger segment.bytes stays readable (and is rolled at once).
        let capacity = capacity.max(seg.size());
        let len = usize::try_from(capacity).map_err(|_| Error::InvalidArgument("segment too large to map".into()))?;
        let map = file.map(len, true).map_err(|e| Error::io("mmap", &path, e))?;
        let data = Arc::new(SegmentData { map: Some(map), file: file.clone() });
        *seg.data.lock().unwrap_or_else(|e| e.into_inner()) = Some(data.clone());
        let size = seg.size();
        let since_index = ix.offsets.last().map_or(size, |e| size - u64::from(e.position));
        *seg.indexes.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(ix));
        let allocated = file.len().map_err(|e| Error::io("stat", &path, e))?;
        Ok(ActiveSegment { seg, file, data, capacity, allocated, since_index, index_interval, prefaulter: None })
    }

    /// Has `prefaulter` fault in allocated space ahead of the writer.
    pub fn set_prefaulter(&mut self, prefaulter: Option<Prefaulter>) {
        self.prefaulter = prefaulter;
    }

    /// The shared segment.
    pub fn segment(&self) -> &Arc<Segment> {
        &self.seg
    }

    /// Bytes this segment can hold in its mapping.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The open file (for fdatasync).
    pub fn file(&self) -> &Arc<dyn VFile> {
        &self.file
    }

    /// Whether a batch of `len` bytes ending at `last_offset` fits without passing `segment_bytes`
    /// (an empty segment takes any batch that fits its mapping).
    pub fn fits(&self, len: u64, last_offset: u64, segment_bytes: u64) -> bool {
        let size = self.seg.size();
        let end = size + len;
        // Index entries hold offsets relative to the base as 32 bits, as in Kafka.
        let relative_ok = last_offset - self.seg.base_offset <= u64::from(u32::MAX);
        end <= self.capacity && (size == 0 || end <= segment_bytes) && relative_ok
    }

    /// Reserves disk space for a batch of `len` bytes at the write position (fallocate), so that
    /// writing it cannot fail for lack of space. On failure (a full disk) nothing was written and
    /// the segment is unchanged. Also keeps one allocation step reserved ahead of the writer, on a
    /// best-effort basis, for the prefault thread to fault in.
    pub fn reserve(&mut self, len: usize) -> Result<()> {
        let end = self.seg.size() + len as u64;
        let large = len >= PWRITE_THRESHOLD;
        if end > self.allocated {
            let target = (end.div_ceil(ALLOCATION_STEP) * ALLOCATION_STEP).max(end).min(self.capacity);
            let path = self.seg.log_path();
            if let Err(e) = self.file.allocate(target) {
                // A full disk may still have room for exactly this batch.
                self.file.allocate(end).map_err(|_| Error::io("fallocate", &path, e))?;
                self.allocated = end;
                return Ok(());
            }
            if !large {
                // Small batches are copied through the mapping: fault the new pages in once, here,
                // rather than one trap per page in the copies that follow.
                self.data.prefault(self.allocated as usize, (target - self.allocated) as usize);
            }
            self.allocated = target;
        }
        if !large && end + ALLOCATION_STEP > self.allocated && self.allocated < self.capacity {
            // Keep one step allocated ahead of the writer and have the prefault thread fault it
            // in meanwhile, so the copies into it find their pages ready. Best effort: on a full
            // disk the step is simply not reserved yet.
            if let Some(p) = &self.prefaulter {
                let target = (self.allocated + ALLOCATION_STEP).min(self.capacity);
                if self.file.allocate(target).is_ok() {
                    p.request(self.data.clone(), self.allocated as usize, (target - self.allocated) as usize);
                    self.allocated = target;
                }
            }
        }
        Ok(())
    }

    /// Copies an encoded batch in at the write position. The caller checked [`ActiveSegment::fits`],
    /// reserved the space with [`ActiveSegment::reserve`], and that `header` describes `batch`. Readers do not see it until [`Segment::publish`].
    pub fn append(&mut self, batch: &[u8], header: &BatchHeader) -> Result<()> {
        let pos = self.seg.size();
        let end = pos + batch.len() as u64;
        let large = batch.len() >= PWRITE_THRESHOLD;
        if end > self.allocated {
            return Err(Error::InvalidArgument(format!("append of {} bytes at {pos} without reserved space", batch.len())));
        }
        if large {
            // Large batches go through write(2): the kernel copies whole pages into the page cache
            // without zero-filling them first, about twice as fast as faulting them in and
            // copying. The shared mapping sees the same page cache.
            let path = self.seg.log_path();
            self.file.write_all_at(batch, pos).map_err(|e| Error::io("write", &path, e))?;
        } else if let Some(map) = &self.data.map {
            map.write(pos as usize, batch);
        }
        self.note_batch(pos, batch.len() as u64, header);
        Ok(())
    }

    /// Copies `bytes` in at the write position without accounting for them: the reliability
    /// harness's torn batch.
    #[cfg(feature = "fault-injection")]
    pub fn write_torn(&mut self, bytes: &[u8]) {
        if let Some(map) = &self.data.map {
            map.write(self.seg.size() as usize, bytes);
        }
    }

    /// Accounts for a batch of `len` bytes now at `pos`: index entries, largest timestamp, next
    /// offset, then the size (release: the bytes were stored before).
    fn note_batch(&mut self, pos: u64, len: u64, header: &BatchHeader) {
        if self.since_index >= self.index_interval && pos > 0 {
            let rel = (header.base_offset - self.seg.base_offset) as u32;
            let mut slot = self.seg.indexes.write().unwrap_or_else(|e| e.into_inner());
            let ix = Arc::make_mut_or_clone(&mut slot);
            ix.offsets.push(OffsetEntry { relative_offset: rel, position: pos as u32 });
            ix.times.push(TimeEntry { timestamp: self.seg.max_timestamp(), relative_offset: rel });
            self.since_index = 0;
        }
        self.since_index += len;
        self.seg.max_timestamp.fetch_max(header.max_timestamp, Ordering::AcqRel);
        self.seg.next_offset.store(header.next_offset(), Ordering::Release);
        self.seg.size.store(pos + len, Ordering::Release);
    }

    /// Takes in the complete batches another process appended after this segment's size, up to
    /// `to` bytes (shared mode): their bytes are in the file already (the same page cache), only
    /// this process's account of them (size, index entries, timestamps) moves.
    /// `each` sees every batch taken in (the producer state follows them).
    pub fn adopt(&mut self, to: u64, mut each: impl FnMut(&BatchView<'_>)) -> Result<()> {
        let path = self.seg.log_path();
        if to > self.capacity {
            return Err(Error::corrupt(&path, to, "another process wrote past this segment's capacity"));
        }
        let data = self.data.clone();
        let bytes = data.prefix(to);
        let mut pos = self.seg.size();
        while pos < to {
            let batch = BatchView::parse(&bytes[pos as usize..to as usize]).map_err(|e| Error::corrupt(&path, pos, e.to_string()))?;
            let h = *batch.header();
            let len = h.total_len() as u64;
            each(&batch);
            self.note_batch(pos, len, &h);
            pos += len;
        }
        if to > self.allocated {
            // Another process reserved this space: the file's length says how far (one stat per
            // allocation step, not per batch, and no prefault of space the other process faults).
            self.allocated = self.file.len().map_err(|e| Error::io("stat", &path, e))?.clamp(to, self.capacity);
        }
        Ok(())
    }

    /// Rereads how much of the file has space reserved (shared mode: another process may have
    /// trimmed it, sealing it in a roll it did not finish).
    pub fn refresh_allocation(&mut self) -> Result<()> {
        let path = self.seg.log_path();
        self.allocated = self.file.len().map_err(|e| Error::io("stat", &path, e))?.min(self.capacity);
        Ok(())
    }

    /// Seals the segment before a new one takes over: trims the file to its data, writes the
    /// indexes and marks it sealed. The data is not synced here; the partition's sync leader does
    /// that with the file from [`ActiveSegment::into_parts`].
    pub fn seal(&mut self) -> Result<()> {
        let size = self.seg.size();
        let path = self.seg.log_path();
        self.file.set_len(size).map_err(|e| Error::io("truncate", &path, e))?;
        self.allocated = size;
        self.seg.sealed.store(true, Ordering::Release);
        self.seg.flush_indexes()
    }

    /// The shared segment and its open file.
    pub fn into_parts(self) -> (Arc<Segment>, Arc<dyn VFile>) {
        (self.seg, self.file)
    }
}

/// `Arc::make_mut` for a slot that holds `Option<Arc<T>>`, cloning only when shared.
trait MakeMutOrClone<T> {
    fn make_mut_or_clone(slot: &mut Option<Arc<T>>) -> &mut T;
}

impl<T: Default + Clone> MakeMutOrClone<T> for Arc<T> {
    fn make_mut_or_clone(slot: &mut Option<Arc<T>>) -> &mut T {
        Arc::make_mut(slot.get_or_insert_with(Default::default))
    }
}
