//! One partition: its segments, append with group commit, fetch, roll, retention, and the offsets
//! that bound them (log start offset, high watermark, log end offset).
//!
//! Locks, taken in this order: `writer` (appends, rolls, retention), then `sync` (one fsync leader
//! at a time; never held together with `writer` across an fsync), then `segments` (a brief read or
//! write of the segment list). Readers take only a brief read lock on `segments`.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Acks, HighWatermark, IsolationLevel, TopicConfig};
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::batch::{self, BatchHeader, ProducerFields};
use crate::format::txn::{self as txnfmt, MarkerType};
use crate::log::fetch::{Fetched, find_timestamp, select_batches};
use crate::log::producer_state::{self, Check, ProducerStates, Refusal, TxnView};
use crate::storage::OpenSegments;
use crate::storage::prefault::Prefaulter;
use crate::storage::segment::{ActiveSegment, Segment};
use crate::storage::shared_state::{DirState, LockGuard, PartitionState, Published, WriterState};
use crate::storage::vfs::{VFile, Vfs};

/// Where an appended batch landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendResult {
    /// The partition.
    pub partition: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// The log append time for LogAppendTime topics, otherwise -1 (as Kafka reports it).
    pub log_append_time: i64,
}

struct Writer {
    active: ActiveSegment,
    buf: Vec<u8>,
    /// Sealed segments whose data has not been fsync'd yet.
    unsynced: Vec<(Arc<Segment>, Arc<dyn VFile>)>,
    /// A segment file was created since the partition directory was last fsync'd.
    dir_dirty: bool,
    /// Wall-clock time of the first append to the active segment, for `segment.ms`.
    active_since: Option<i64>,
    /// Every producer seen (idempotence, fencing, open transactions).
    producers: ProducerStates,
    /// Producer-state snapshots written since the last sync.
    unsynced_snapshots: Vec<(PathBuf, Arc<dyn VFile>)>,
    /// Shared mode: the writer-state commit this process's view matches, and that state.
    seen: u64,
    view: WriterState,
    /// Shared mode: the publication count and durable offset last taken in.
    seen_published: (u64, u64),
}

/// The writer lock, and in shared mode also the partition's append lock with this process's view
/// brought up to date with what other processes committed.
struct WriterGuard<'a> {
    w: MutexGuard<'a, Writer>,
    _append: Option<LockGuard<'a>>,
}

impl std::ops::Deref for WriterGuard<'_> {
    type Target = Writer;
    fn deref(&self) -> &Writer {
        &self.w
    }
}

impl std::ops::DerefMut for WriterGuard<'_> {
    fn deref_mut(&mut self) -> &mut Writer {
        &mut self.w
    }
}

/// A partition of a topic.
pub struct Partition {
    pub(crate) topic: Arc<str>,
    pub(crate) id: u32,
    dir: Arc<Path>,
    vfs: Arc<dyn Vfs>,
    pub(crate) config: Arc<TopicConfig>,
    cache: Arc<OpenSegments>,
    prefaulter: Option<Prefaulter>,
    leo: AtomicU64,
    hw: AtomicU64,
    durable: AtomicU64,
    log_start: AtomicU64,
    last_sync_ms: AtomicI64,
    poisoned: AtomicBool,
    deleted: AtomicBool,
    closed: AtomicBool,
    segments: RwLock<Arc<Vec<Arc<Segment>>>>,
    writer: Mutex<Writer>,
    sync: Mutex<SyncState>,
    /// Signalled when a sync round ends (waiters check whether they are covered).
    synced: Condvar,
    /// acks=all batches written so far: a gathering leader counts arrivals with it.
    acks_all_batches: AtomicU64,
    /// Open and aborted transactions, for read_committed readers.
    txn: RwLock<TxnView>,
    /// `txn`'s first unstable offset, stored with each change of its open transactions, so the
    /// last stable offset costs a load rather than a lock.
    first_unstable: AtomicU64,
    /// A transaction marker was written: the maintenance thread syncs it at once, so that
    /// read_committed readers see the outcome without waiting for `flush.ms`.
    flush_requested: AtomicBool,
    /// Where readers in other processes learn what they may see (none under a simulated file
    /// system, or when the state file could not be created).
    shared: std::sync::OnceLock<SharedPublisher>,
    /// Shared mode: `Writer::seen`, readable without the writer lock.
    seen_commits: AtomicU64,
}

/// The writer's side of the shared state of one partition.
struct SharedPublisher {
    state: PartitionState,
    dir: Arc<DirState>,
    generation: u64,
    /// Opened in shared mode: other processes append too, under the state file's locks.
    multi: bool,
}

/// What [`Partition::write_batch`] did.
enum Written {
    /// Appended; the new log end offset.
    New(u64),
    /// A retry of a batch already stored there.
    Duplicate(txnfmt::BatchMeta),
}

/// The group-commit state, under `Partition::sync`.
#[derive(Default)]
struct SyncState {
    /// A leader is fsyncing (or gathering).
    leader: bool,
    /// Callers waiting for a round to cover them.
    waiting: u32,
    /// How many callers the last round released: a leader waits (briefly) for as many new
    /// acks=all batches, since callers released by one round usually come straight back.
    last_round: u32,
    /// `acks_all_batches` when the last leader started gathering.
    batches_at_last_round: u64,
}

/// Shared mode, reliability harness: the append that brings this to zero dies half-way through
/// its copy, holding the append lock ([`crate::testing::kill_inside_append`]).
#[cfg(feature = "fault-injection")]
pub(crate) static KILL_INSIDE_APPEND: AtomicU64 = AtomicU64::new(0);

/// Shared mode: the longest a process waiting for another's sync round sleeps before it looks at
/// the sync lock again (the leader may have died mid-round and will wake no one).
const SYNC_WAIT: Duration = Duration::from_millis(2);

/// Shared mode: while armed, a failure (an error return or a panic) with the append lock held and
/// files possibly changed marks the partition for repair by the next holder, as a death would.
struct Unfinished<'a>(Option<&'a PartitionState>);

impl<'a> Unfinished<'a> {
    fn arm(state: Option<&'a PartitionState>) -> Unfinished<'a> {
        Unfinished(state)
    }

    /// The change completed and its writer state is committed.
    fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if let Some(st) = self.0 {
            st.mark_unfinished();
        }
    }
}

/// The longest a group-commit leader waits for the appenders of the previous round to come back.
const GATHER: Duration = Duration::from_micros(100);

/// Nanoseconds since the Unix epoch (one vDSO call). An append reads the clock once: the
/// milliseconds of its timestamps and the nanoseconds that pace its wake-ups of followers.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (t.tv_sec.max(0) as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec.max(0) as u64)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    ms_of(now_ns())
}

fn ms_of(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every partition of a log shares: the file system, the open-segment cache and the
/// prefault thread.
#[derive(Clone)]
pub(crate) struct LogEnv {
    pub vfs: Arc<dyn Vfs>,
    pub cache: Arc<OpenSegments>,
    pub prefaulter: Option<Prefaulter>,
    /// The directory's shared state and this writer's generation, when readers in other
    /// processes can attach. Set once the open succeeded: an open that fails changes nothing.
    pub shared: Arc<std::sync::OnceLock<(Arc<DirState>, u64)>>,
    /// Opened in shared mode ([`crate::Log::open_shared`]): appends take each partition's
    /// cross-process append lock.
    pub multi: bool,
}

impl LogEnv {
    /// Tells readers in other processes that the catalog changed (call after its rename).
    pub fn catalog_changed(&self) {
        if let Some((d, _)) = self.shared.get() {
            d.catalog_changed();
        }
    }
}

/// Shared mode: the segments of a partition as the committed writer state `s` describes them,
/// oldest first with the active one last, read from the directory without changing anything
/// (other processes are appending). Sealed segments of `known` are reused; `keep` is the active
/// segment when the caller still has it open (then no [`ActiveSegment`] is returned), otherwise
/// the active segment is opened and its committed batches scanned. Also returns the sealed
/// segments not in `known`, with open files for syncing them.
#[expect(clippy::type_complexity, reason = "the three results of one directory listing")]
pub(crate) fn load_committed(
    vfs: &Arc<dyn Vfs>,
    dir: &Arc<Path>,
    config: &TopicConfig,
    s: &WriterState,
    known: &[Arc<Segment>],
    keep: Option<&Arc<Segment>>,
) -> Result<(Vec<Arc<Segment>>, Option<ActiveSegment>, Vec<(Arc<Segment>, Arc<dyn VFile>)>)> {
    use crate::storage::segment::{log_file_name, parse_segment_file_name, scan_file};
    use crate::storage::vfs::OpenMode;
    let entries = vfs.read_dir(dir).map_err(|e| Error::io("read directory", dir.to_path_buf(), e))?;
    let mut bases: Vec<u64> = entries
        .iter()
        .filter_map(|e| e.name.to_str().and_then(parse_segment_file_name))
        .filter(|&(b, ext)| ext == "log" && b >= s.log_start && b <= s.active_base)
        .map(|(b, _)| b)
        .collect();
    bases.sort_unstable();
    if bases.last() != Some(&s.active_base) {
        return Err(Error::corrupt(dir.join(log_file_name(s.active_base)), 0, "the active segment another process committed is missing"));
    }
    let interval = config.index_interval_bytes;
    let mut list = Vec::with_capacity(bases.len());
    let mut fresh = Vec::new();
    for pair in bases.windows(2) {
        let (base, next) = (pair[0], pair[1]);
        if let Some(seg) = known.iter().find(|x| x.base_offset == base && x.is_sealed()) {
            list.push(seg.clone());
            continue;
        }
        let path = dir.join(log_file_name(base));
        let file = vfs.open(&path, OpenMode::Read).map_err(|e| Error::io("open", &path, e))?;
        let size = file.len().map_err(|e| Error::io("stat", &path, e))?;
        let max_ts = crate::log::recovery::sealed_segment_max_timestamp(vfs, dir, base, size, interval);
        let seg = Segment::loaded(vfs.clone(), dir.clone(), base, size, next, max_ts, true);
        fresh.push((seg.clone(), file));
        list.push(seg);
    }
    let active = match keep {
        Some(seg) => {
            list.push(seg.clone());
            None
        }
        None => {
            let path = dir.join(log_file_name(s.active_base));
            let file = vfs.open(&path, OpenMode::Write).map_err(|e| Error::io("open", &path, e))?;
            let scan = scan_file(&file, s.size, s.active_base, interval, false).map_err(|e| Error::io("mmap", &path, e))?;
            if scan.valid_end != s.size || scan.next_offset != s.leo {
                return Err(Error::corrupt(path, scan.valid_end, "the active segment holds less than another process committed"));
            }
            let seg = Segment::loaded(vfs.clone(), dir.clone(), s.active_base, s.size, scan.next_offset, scan.max_timestamp, false);
            let active = ActiveSegment::reopen(seg, config.segment_capacity(), interval, Some(scan))?;
            list.push(active.segment().clone());
            Some(active)
        }
    };
    Ok((list, active, fresh))
}

/// Shared mode: loads a partition as the writer state committed in its state file describes it,
/// holding the append lock meanwhile (a dead holder's leftovers are left for the next appender to
/// repair: they lie past the committed state, which is all this reads). Returns what to build the
/// [`Partition`] from, and the commit it matches.
#[expect(clippy::type_complexity, reason = "what a joining process builds its partition from")]
pub(crate) fn load_shared(
    vfs: &Arc<dyn Vfs>,
    dir: &Arc<Path>,
    config: &TopicConfig,
    state: &PartitionState,
) -> Result<(Loaded, u64, WriterState, Vec<(Arc<Segment>, Arc<dyn VFile>)>)> {
    let path = dir.join(crate::storage::shared_state::PARTITION_STATE_FILE);
    let g = state.lock_append().map_err(|e| Error::io("lock", &path, e))?;
    let s = state.writer_state();
    let commits = state.writer_commits();
    let (segments, active, sealed) = load_committed(vfs, dir, config, &s, &[], None)?;
    let active = active.ok_or_else(|| Error::corrupt(&path, 0, "no active segment"))?;
    let (producers, txn) = producer_state::recover(&**vfs, dir, &segments, s.leo, config.index_interval_bytes)?;
    drop(g);
    // Sealed segments with offsets past the durable one may not be synced yet (their writer may
    // have died first): this process's sync rounds include them.
    let durable = state.durable();
    let unsynced = sealed.into_iter().filter(|(seg, _)| seg.next_offset() > durable).collect();
    Ok((Loaded { segments, active, producers, txn }, commits, s, unsynced))
}

/// What a partition's files were found to hold, ready to build a [`Partition`].
pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    pub active: ActiveSegment,
    pub producers: ProducerStates,
    pub txn: TxnView,
}

impl Partition {
    pub(crate) fn new(topic: Arc<str>, id: u32, dir: Arc<Path>, config: Arc<TopicConfig>, env: &LogEnv, mut loaded: Loaded) -> Partition {
        let (vfs, cache, prefaulter) = (env.vfs.clone(), env.cache.clone(), env.prefaulter.clone());
        loaded.active.set_prefaulter(prefaulter.clone());
        let leo = loaded.active.segment().next_offset();
        let log_start = loaded.segments.first().map_or(leo, |s| s.base_offset);
        let p = Partition {
            topic,
            id,
            dir,
            vfs,
            config,
            cache,
            prefaulter,
            leo: AtomicU64::new(leo),
            hw: AtomicU64::new(leo),
            durable: AtomicU64::new(leo),
            log_start: AtomicU64::new(log_start),
            last_sync_ms: AtomicI64::new(now_ms()),
            poisoned: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            segments: RwLock::new(Arc::new(loaded.segments)),
            writer: Mutex::new(Writer {
                active: loaded.active,
                buf: Vec::new(),
                unsynced: Vec::new(),
                dir_dirty: false,
                active_since: None,
                producers: loaded.producers,
                unsynced_snapshots: Vec::new(),
                seen: 0,
                view: WriterState::default(),
                seen_published: (u64::MAX, u64::MAX),
            }),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            acks_all_batches: AtomicU64::new(0),
            first_unstable: AtomicU64::new(loaded.txn.first_unstable()),
            txn: RwLock::new(loaded.txn),
            flush_requested: AtomicBool::new(false),
            shared: std::sync::OnceLock::new(),
            seen_commits: AtomicU64::new(0),
        };
        if let Some((d, generation)) = env.shared.get().filter(|_| !env.multi) {
            p.attach_shared(d, *generation);
        }
        p
    }

    /// Starts publishing to readers in other processes: creates (or takes over) the partition's
    /// state file and publishes the current offsets.
    pub(crate) fn attach_shared(&self, dir: &Arc<DirState>, generation: u64) {
        match PartitionState::create(&self.dir) {
            Ok(state) => {
                let _ = self.shared.set(SharedPublisher { state, dir: dir.clone(), generation, multi: false });
                let _w = lock(&self.writer);
                self.publish_shared(None, None);
            }
            Err(e) => {
                log::warn!(
                    "{}: cannot create the shared state file ({e}); readers in other processes cannot follow it",
                    self.dir.display()
                );
            }
        }
    }

    /// Shared mode: attaches to the partition's state file, whose locks and writer state another
    /// process (or this one, through [`Partition::init_shared`]) initialized.
    /// The partition was loaded from the committed writer state (under the append lock), so
    /// its view matches it; its high watermark and durable offset come from what was published.
    pub(crate) fn attach_multi(
        &self,
        dir: &Arc<DirState>,
        generation: u64,
        state: PartitionState,
        (commits, view): (u64, WriterState),
        unsynced: Vec<(Arc<Segment>, Arc<dyn VFile>)>,
    ) {
        {
            let mut w = lock(&self.writer);
            w.seen = commits;
            w.view = view;
            w.unsynced = unsynced;
            // The directory entries of files others created may not be synced either.
            w.dir_dirty = true;
            self.seen_commits.store(commits, Ordering::Release);
            let leo = self.leo.load(Ordering::Acquire);
            self.durable.store(state.durable().min(leo), Ordering::Release);
            let hw = state.read().map_or(0, |p| p.high_watermark).min(leo);
            self.hw.store(hw, Ordering::Release);
        }
        let _ = self.shared.set(SharedPublisher { state, dir: dir.clone(), generation, multi: true });
    }

    /// Shared mode, a process closing while others stay: syncs what is written, then refuses
    /// further use. Files are left as they are for the others (the last process out trims them).
    pub(crate) fn leave(&self) -> Result<()> {
        let result = if self.poisoned.load(Ordering::Acquire) { Ok(()) } else { self.sync() };
        let _w = lock(&self.writer);
        self.closed.store(true, Ordering::Release);
        result
    }

    /// Shared mode, first process on the directory: initializes the partition's locks and writer
    /// state from what this process recovered, and attaches. No other process can be using the
    /// state file (the caller holds the directory lock exclusively, or the partition directory is
    /// not yet reachable).
    pub(crate) fn init_shared(&self, dir: &Arc<DirState>, generation: u64) -> Result<()> {
        let path = self.dir.join(crate::storage::shared_state::PARTITION_STATE_FILE);
        let state = PartitionState::create(&self.dir).map_err(|e| Error::io("map", &path, e))?;
        {
            let mut w = lock(&self.writer);
            let view = WriterState {
                leo: self.leo.load(Ordering::Acquire),
                active_base: w.active.segment().base_offset,
                size: w.active.segment().size(),
                epoch: 0,
                log_start: self.log_start.load(Ordering::Acquire),
                deleted: false,
            };
            state.init_shared(&view, self.durable.load(Ordering::Acquire)).map_err(|e| Error::io("init lock", &path, e))?;
            w.view = view;
            w.seen = state.writer_commits();
            self.seen_commits.store(w.seen, Ordering::Release);
        }
        let _ = self.shared.set(SharedPublisher { state, dir: dir.clone(), generation, multi: true });
        let _w = lock(&self.writer);
        self.publish_shared(None, None);
        Ok(())
    }

    /// The writer lock for a query: in shared mode caught up when that succeeds (a failure shows
    /// again on the next append), this process's last view otherwise.
    fn writer_view(&self) -> WriterGuard<'_> {
        match self.lock_writer() {
            Ok(w) => w,
            Err(_) => WriterGuard { w: lock(&self.writer), _append: None },
        }
    }

    /// The shared state in shared mode.
    fn multi(&self) -> Option<&PartitionState> {
        self.shared.get().filter(|s| s.multi).map(|s| &s.state)
    }

    /// Takes the writer lock; in shared mode also the append lock, repairing what a holder that
    /// died left and catching up with what other processes committed.
    fn lock_writer(&self) -> Result<WriterGuard<'_>> {
        let mut w = lock(&self.writer);
        let Some(st) = self.multi() else { return Ok(WriterGuard { w, _append: None }) };
        let g = st.lock_append().map_err(|e| Error::io("lock", self.dir.join("partition.state"), e))?;
        if st.repair_needed() {
            self.repair_dead_holder(&mut w, st)?;
            st.repaired();
        }
        self.catch_up(&mut w, st)?;
        Ok(WriterGuard { w, _append: Some(g) })
    }

    /// Shared mode: commits this process's writer state for the others (under the append lock).
    fn commit_view(&self, w: &mut Writer) {
        let Some(st) = self.multi() else { return };
        let seg = w.active.segment();
        let view = WriterState {
            leo: self.leo.load(Ordering::Acquire),
            active_base: seg.base_offset,
            size: seg.size(),
            epoch: w.view.epoch,
            log_start: self.log_start.load(Ordering::Acquire),
            deleted: w.view.deleted,
        };
        st.set_writer_state(&view);
        w.view = view;
        w.seen = st.writer_commits();
        self.seen_commits.store(w.seen, Ordering::Release);
    }

    /// Shared mode: brings this process's view up to date with the writer state other processes
    /// committed: batches appended in place are taken in from the file; anything else (a roll,
    /// retention, a repair) reloads the segment list from the directory.
    fn catch_up(&self, w: &mut Writer, st: &PartitionState) -> Result<()> {
        let commits = st.writer_commits();
        if commits != w.seen {
            let s = st.writer_state();
            if s.deleted {
                self.deleted.store(true, Ordering::Release);
                return Err(Error::unknown(&self.topic, Some(self.id)));
            }
            // A segment grown past this process's mapping (another process runs with a larger
            // `segment.bytes`) is mapped afresh at its size.
            let same_active =
                s.active_base == w.active.segment().base_offset && s.size >= w.active.segment().size() && s.size <= w.active.capacity();
            if same_active && s.epoch != w.view.epoch {
                // A repair may have trimmed the active file; retention may have removed segments.
                w.active.refresh_allocation()?;
            }
            if same_active {
                // The producer state follows the batches taken in; transactions are rare, so the
                // view's lock is taken only for a transactional batch.
                let now = now_ms();
                let Writer { active, producers, .. } = &mut *w;
                active.adopt(s.size, |batch| {
                    if batch.header().producer_id < 0 {
                        return;
                    }
                    let mut view = self.txn.write().unwrap_or_else(|e| e.into_inner());
                    producer_state::apply_batch(batch, now, producers, &mut view);
                    self.first_unstable.store(view.first_unstable(), Ordering::Release);
                })?;
            }
            if !same_active || s.epoch != w.view.epoch {
                self.reload_segments(w, &s, same_active)?;
            }
            self.leo.store(s.leo, Ordering::Release);
            self.log_start.store(s.log_start, Ordering::Release);
            w.view = s;
            w.seen = commits;
            self.seen_commits.store(commits, Ordering::Release);
        }
        self.follow_published(w);
        Ok(())
    }

    /// Shared mode: rebuilds the segment list from the directory as `s` describes it. Sealed
    /// segments this process already knows are kept; those sealed by another process since this
    /// one last looked are queued for this process's next sync round too (their writer may die
    /// before syncing them). `keep_active`: the active segment is the one this process has open
    /// (already caught up); otherwise it is reopened and its batches scanned.
    fn reload_segments(&self, w: &mut Writer, s: &WriterState, keep_active: bool) -> Result<()> {
        let old = self.segments();
        let keep = keep_active.then(|| w.active.segment().clone());
        let (list, active, sealed) = load_committed(&self.vfs, &self.dir, &self.config, s, &old, keep.as_ref())?;
        let old_active = w.active.segment().base_offset;
        for (seg, file) in sealed {
            if seg.base_offset >= old_active {
                w.unsynced.push((seg, file));
                w.dir_dirty = true;
            }
        }
        if let Some(mut active) = active {
            active.set_prefaulter(self.prefaulter.clone());
            w.active = active;
            w.active_since = None;
        }
        *self.segments.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list.clone());
        let (producers, txn) = producer_state::recover(&*self.vfs, &self.dir, &list, s.leo, self.config.index_interval_bytes)?;
        w.producers = producers;
        self.first_unstable.store(txn.first_unstable(), Ordering::Release);
        *self.txn.write().unwrap_or_else(|e| e.into_inner()) = txn;
        Ok(())
    }

    /// Shared mode: takes in the high watermark and the durable offset other processes published:
    /// every segment below the published position becomes visible.
    fn follow_published(&self, w: &mut Writer) {
        let Some(sh) = self.shared.get().filter(|s| s.multi) else { return };
        let seen = (sh.state.published_seq(), sh.state.durable());
        if seen == w.seen_published {
            return;
        }
        w.seen_published = seen;
        self.durable.fetch_max(seen.1.min(self.leo.load(Ordering::Acquire)), Ordering::AcqRel);
        let Ok(p) = sh.state.read() else { return };
        if p.high_watermark <= self.hw.load(Ordering::Acquire) {
            return;
        }
        for seg in self.segments().iter().rev() {
            if seg.base_offset > p.segment {
                continue;
            }
            if seg.base_offset == p.segment {
                seg.publish(p.position.min(seg.size()));
            } else if seg.visible() < seg.size() {
                seg.publish(seg.size());
            } else {
                break;
            }
        }
        self.hw.fetch_max(p.high_watermark.min(self.leo.load(Ordering::Acquire)), Ordering::AcqRel);
    }

    /// Shared mode: the previous holder of the append lock died holding it. The committed writer
    /// state describes complete batches only; whatever it left past that is cut. Non-zero bytes
    /// past the committed size of the active segment (a half-copied batch) are copied to
    /// `quarantine/` with a report and zeroed; segment files past the committed active segment (a
    /// roll it did not commit) are moved there. The epoch moves, so every process reloads.
    fn repair_dead_holder(&self, w: &mut Writer, st: &PartitionState) -> Result<()> {
        let s = st.writer_state();
        log::warn!("{}: an appender died holding the append lock; cutting what it left past offset {}", self.dir.display(), s.leo);
        let data_dir = self.dir.parent().unwrap_or(&self.dir);
        let quarantine = data_dir.join(crate::catalog::QUARANTINE_DIR);
        let ctx = crate::log::recovery::LoadContext {
            vfs: &self.vfs,
            dir: self.dir.clone(),
            topic: &self.topic,
            partition: self.id,
            config: &self.config,
            recovery_point: None,
            clean: false,
            quarantine_dir: &quarantine,
        };
        crate::log::recovery::cut_after_dead_appender(&ctx, s.active_base, s.size)?;
        let mut next = s;
        next.epoch += 1;
        st.set_writer_state(&next);
        let _ = w;
        Ok(())
    }

    /// Publishes the partition's offsets to readers in other processes: the high watermark, the
    /// segment and byte position it lies at, the log start offset and the last stable offset.
    /// Each value is loaded after those it depends on were published in this process (the high
    /// watermark before the segment list and the segment's visible size, which the writer raises
    /// first), so what is published is as consistent as what a fetch in this process sees.
    /// Callers hold the writer lock, which serializes publications and so publishes values in
    /// the order they were loaded. `at`: the segment base and visible size holding the high
    /// watermark, when the caller (an append) knows them, which spares the segment-list lookup.
    /// `paced`: an append's clock reading (ns): followers are then woken at most every 50 µs;
    /// `None` wakes them now.
    fn publish_shared(&self, paced: Option<u64>, at: Option<(u64, u64)>) {
        let Some(sh) = self.shared.get() else { return };
        let hw = self.hw.load(Ordering::Acquire);
        let (segment, position) = at.unwrap_or_else(|| {
            let segs = self.segments();
            let seg = segs.iter().rev().find(|s| s.base_offset < hw).or(segs.first());
            seg.map_or((hw, 0), |s| (s.base_offset, s.visible()))
        });
        let published = Published {
            high_watermark: hw,
            segment,
            position,
            log_start: self.log_start.load(Ordering::Acquire),
            last_stable: self.last_stable_offset_below(hw),
        };
        sh.state.publish(&published, sh.generation);
        sh.dir.wake(paced);
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self) -> u64 {
        self.refresh();
        self.leo.load(Ordering::Acquire)
    }

    /// The end of what readers may see.
    pub fn high_watermark(&self) -> u64 {
        self.refresh();
        self.hw.load(Ordering::Acquire)
    }

    /// The end of what is fsync'd.
    pub fn durable_offset(&self) -> u64 {
        self.refresh();
        self.durable.load(Ordering::Acquire)
    }

    /// The first offset still in the log.
    pub fn log_start_offset(&self) -> u64 {
        self.refresh();
        self.log_start.load(Ordering::Acquire)
    }

    /// Shared mode: catches up with other processes if they committed or published anything
    /// since this process last looked (a few loads when nothing changed). Errors show on the next
    /// append or fetch.
    fn refresh(&self) {
        let Some(st) = self.multi() else { return };
        let hw = self.hw.load(Ordering::Acquire);
        let stale = st.writer_commits() != self.seen_commits.load(Ordering::Acquire)
            || st.read().is_ok_and(|p| p.high_watermark > hw)
            || st.durable() > self.durable.load(Ordering::Acquire);
        if stale {
            let _ = self.lock_writer();
        }
    }

    /// A snapshot of the segment list, oldest first.
    pub fn segments(&self) -> Arc<Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Refuses all further use, and waits for an append in flight to finish.
    pub(crate) fn mark_deleted(&self) {
        if self.multi().is_some()
            && let Ok(mut w) = self.lock_writer()
        {
            // Other processes' appends fail from their next catch-up on.
            w.view.deleted = true;
            self.commit_view(&mut w);
        }
        self.deleted.store(true, Ordering::Release);
        drop(lock(&self.writer));
    }

    /// Whether the partition's topic was deleted.
    pub(crate) fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn check_writable(&self) -> Result<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::unknown(&self.topic, Some(self.id)));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned { topic: self.topic.to_string(), partition: self.id });
        }
        Ok(())
    }

    fn poison(&self, e: Error) -> Error {
        self.poisoned.store(true, Ordering::Release);
        log::error!("{}-{}: refusing further writes after: {e}", self.topic, self.id);
        e
    }

    /// Appends `records` as one batch. See [`crate::Log::append`]. A batch from an idempotent
    /// producer (`producer.producer_id >= 0`) is checked against the producer's state: a retry of
    /// one of its last five batches returns where that batch was stored and writes nothing.
    pub fn append(&self, records: &[Record<'_>], acks: Acks, producer: ProducerFields) -> Result<AppendResult> {
        if records.is_empty() {
            return Err(Error::InvalidArgument("a batch needs at least one record".into()));
        }
        if records.len() > u32::MAX as usize / 2 {
            return Err(Error::InvalidArgument("too many records in one batch".into()));
        }
        // A cheap bound before encoding, so that an absurd batch is refused without allocating it.
        let raw: u64 = records.iter().map(|r| r.payload_len() as u64).sum();
        let max = self.config.max_message_bytes;
        if raw > max {
            return Err(Error::RecordTooLarge { size: raw, max });
        }
        self.check_writable()?;
        let now_ns = now_ns();
        let now = ms_of(now_ns);
        let (base, next) = match self.write_batch(records, now_ns, producer, max)? {
            Written::New(next) => (next - records.len() as u64, next),
            Written::Duplicate(b) => (b.base_offset, b.last_offset + 1),
        };
        if acks == Acks::All {
            match self.multi() {
                Some(st) => {
                    st.count_acks_all();
                }
                None => {
                    self.acks_all_batches.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.sync_to(next)?;
        }
        Ok(AppendResult {
            partition: self.id,
            base_offset: base,
            last_offset: next - 1,
            log_append_time: if self.config.message_timestamp_type == crate::format::TimestampType::LogAppendTime { now } else { -1 },
        })
    }

    fn refusal(&self, r: Refusal, producer: &ProducerFields) -> Error {
        match r {
            Refusal::Fenced { current } => {
                Error::ProducerFenced { producer_id: producer.producer_id, epoch: producer.producer_epoch, current_epoch: current }
            }
            Refusal::OutOfOrder { expected } => Error::OutOfOrderSequence {
                topic: self.topic.to_string(),
                partition: self.id,
                producer_id: producer.producer_id,
                expected,
                received: producer.base_sequence,
            },
            Refusal::UnknownProducer => Error::UnknownProducerId {
                topic: self.topic.to_string(),
                partition: self.id,
                producer_id: producer.producer_id,
                sequence: producer.base_sequence,
            },
        }
    }

    /// Checks, encodes and copies one batch in under the writer lock.
    fn write_batch(&self, records: &[Record<'_>], now_ns: u64, producer: ProducerFields, max: u64) -> Result<Written> {
        let now = ms_of(now_ns);
        let mut w = self.lock_writer()?;
        self.check_writable()?;
        if producer.producer_id >= 0 {
            match w.producers.check(producer.producer_id, producer.producer_epoch, producer.base_sequence, records.len() as u32) {
                Ok(Check::Append) => {}
                Ok(Check::Duplicate(b)) => return Ok(Written::Duplicate(b)),
                Err(r) => return Err(self.refusal(r, &producer)),
            }
        }
        let base = self.leo.load(Ordering::Relaxed);
        if base.saturating_add(records.len() as u64) > batch::MAX_OFFSET {
            return Err(Error::InvalidArgument("the partition has run out of offsets".into()));
        }
        let Writer { buf, .. } = &mut *w;
        let header = batch::encode_batch(buf, base, records, self.config.message_timestamp_type, now, producer, false);
        if w.buf.len() as u64 > max {
            return Err(Error::RecordTooLarge { size: w.buf.len() as u64, max });
        }
        self.write_buffered(&mut w, &header, now_ns, None).map(Written::New)
    }

    /// Writes a transaction marker for `producer_id` if it has a transaction open here, and
    /// returns whether it did. Without an open transaction it only records the epoch, so that
    /// later batches of older epochs are fenced.
    pub(crate) fn write_marker(&self, producer_id: i64, epoch: i16, marker: MarkerType) -> Result<bool> {
        let mut w = self.lock_writer()?;
        self.check_writable()?;
        let now_ns = now_ns();
        let now = ms_of(now_ns);
        let open = match w.producers.producers.get(&producer_id) {
            Some(e) if epoch < e.epoch => {
                return Err(Error::ProducerFenced { producer_id, epoch, current_epoch: e.epoch });
            }
            Some(e) => e.txn_first_offset.is_some(),
            None => false,
        };
        if !open {
            w.producers.bump_epoch(producer_id, epoch, now);
            return Ok(false);
        }
        let base = self.leo.load(Ordering::Relaxed);
        let (key, value) = (txnfmt::encode_marker_key(marker), txnfmt::encode_marker_value(0));
        let rec = [Record { key: Some(&key), value: Some(&value), headers: &[], timestamp: None }];
        let fields = ProducerFields { producer_id, producer_epoch: epoch, base_sequence: -1, transactional: true };
        let Writer { buf, .. } = &mut *w;
        let header = batch::encode_batch(buf, base, &rec, self.config.message_timestamp_type, now, fields, true);
        self.write_buffered(&mut w, &header, now_ns, Some(marker))?;
        self.flush_requested.store(true, Ordering::Release);
        // The last stable offset may have moved up to the high watermark.
        self.publish_shared(None, None);
        Ok(true)
    }

    /// Copies the batch encoded in `w.buf` in at the log end (rolling first if it does not fit),
    /// folds it into the producer state, and publishes it. Returns the new log end offset.
    fn write_buffered(&self, w: &mut Writer, header: &BatchHeader, now_ns: u64, marker: Option<MarkerType>) -> Result<u64> {
        let now = ms_of(now_ns);
        let too_old = match (self.config.segment_ms, w.active_since) {
            (Some(ms), Some(since)) => now.saturating_sub(since) >= ms as i64,
            _ => false,
        };
        if !w.active.fits(w.buf.len() as u64, header.last_offset(), self.config.segment_bytes) || (too_old && w.active.segment().size() > 0)
        {
            self.roll(w)?;
        }
        let Writer { active, buf, .. } = &mut *w;
        // A full disk fails here, before anything is written: the partition stays usable and
        // appends succeed again once space is freed.
        active.reserve(buf.len())?;
        let unfinished = Unfinished::arm(self.multi());
        #[cfg(feature = "fault-injection")]
        if self.multi().is_some()
            && KILL_INSIDE_APPEND.load(Ordering::Relaxed) > 0
            && KILL_INSIDE_APPEND.fetch_sub(1, Ordering::Relaxed) == 1
        {
            // The reliability harness: die holding the append lock with half a batch copied in.
            active.write_torn(&buf[..buf.len() / 2]);
            let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        }
        if let Err(e) = active.append(buf, header) {
            return Err(self.poison(e));
        }
        if w.active_since.is_none() {
            w.active_since = Some(now);
        }
        if header.producer_id >= 0 {
            if header.is_transactional() {
                // Before the log end offset moves: a reader that sees the high watermark pass this
                // batch must also see the transaction it opens.
                let mut view = self.txn.write().unwrap_or_else(|e| e.into_inner());
                let aborted = w.producers.apply(header, marker, now, &mut view);
                view.aborted.extend(aborted);
                self.first_unstable.store(view.first_unstable(), Ordering::Release);
            } else {
                w.producers.apply(header, None, now, &mut TxnView::default());
            }
        }
        let next = header.next_offset();
        self.leo.store(next, Ordering::Release);
        self.commit_view(w);
        unfinished.done();
        if self.config.high_watermark == HighWatermark::Written {
            let seg = w.active.segment();
            seg.publish(seg.size());
            self.hw.store(next, Ordering::Release);
            self.publish_shared(Some(now_ns), Some((seg.base_offset, seg.size())));
        }
        Ok(next)
    }

    /// Seals the active segment and starts a new one at the log end offset. Holds the writer lock.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let unfinished = Unfinished::arm(self.multi());
        let base = self.leo.load(Ordering::Relaxed);
        // Seal (trim, write indexes) before the next segment exists: a crash in between then
        // leaves the old segment last, where recovery expects preallocated zeros, never zeros in
        // the middle of the log.
        w.active.seal().map_err(|e| self.poison(e))?;
        let new = ActiveSegment::create(
            self.vfs.clone(),
            self.dir.clone(),
            base,
            self.config.segment_capacity(),
            self.config.index_interval_bytes,
        )
        .map_err(|e| self.poison(e))?;
        let mut new = new;
        new.set_prefaulter(self.prefaulter.clone());
        let new_seg = new.segment().clone();
        // The producer state as of the new segment's base, so that recovery replays at most the
        // segments after it.
        let snapshot = w.producers.snapshot(base, &self.txn.read().unwrap_or_else(|e| e.into_inner()));
        let file = producer_state::write_snapshot(&*self.vfs, &self.dir, &snapshot).map_err(|e| self.poison(e))?;
        w.unsynced_snapshots.push(file);
        producer_state::remove_old_snapshots(&*self.vfs, &self.dir, base, 2);
        let old = std::mem::replace(&mut w.active, new);
        let (sealed, file) = old.into_parts();
        w.unsynced.push((sealed.clone(), file));
        w.dir_dirty = true;
        w.active_since = None;
        {
            // Publish the new list before the high watermark can move into the new segment.
            let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
            let mut list: Vec<_> = segs.iter().cloned().collect();
            list.push(new_seg);
            *segs = Arc::new(list);
        }
        self.cache.opened(&sealed);
        self.commit_view(w);
        unfinished.done();
        Ok(())
    }

    /// Rolls to a new segment now, even if the active one has room (used by the offsets store
    /// before it writes a snapshot). Does nothing if the active segment is empty.
    pub(crate) fn force_roll(&self) -> Result<()> {
        self.check_writable()?;
        let mut w = self.lock_writer()?;
        if w.active.segment().size() == 0 {
            return Ok(());
        }
        self.roll(&mut w)
    }

    /// Base offset of the active segment.
    pub(crate) fn active_base(&self) -> u64 {
        lock(&self.writer).active.segment().base_offset
    }

    /// Waits until every offset below `target` is fsync'd, syncing if no one else is.
    ///
    /// Group commit: one caller at a time is the leader and fsyncs everything written so far;
    /// the others wait on a condition variable and return as soon as a round covers them. Before
    /// it snapshots, a leader waits up to 100 µs for as many new acks=all batches as the previous
    /// round released callers (they usually come straight back with their next append), so that
    /// they share its fsync instead of each starting their own. A lone appender never waits.
    pub fn sync_to(&self, target: u64) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        if let Some(st) = self.multi()
            && st.durable() >= target
        {
            // Another process's sync round covered it.
            self.durable.fetch_max(target, Ordering::AcqRel);
            return Ok(());
        }
        let mut st = lock(&self.sync);
        loop {
            if self.durable.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            self.check_writable()?;
            if !st.leader {
                break;
            }
            st.waiting += 1;
            st = self.synced.wait(st).unwrap_or_else(|e| e.into_inner());
            st.waiting -= 1;
        }
        st.leader = true;
        let (want, since) = (u64::from(st.last_round), st.batches_at_last_round);
        drop(st);
        if want > 1 {
            // Gather: give the appenders released by the last round the chance to write their next
            // batch before this round's snapshot. Yielding (rather than sleeping) hands the CPU to
            // exactly those threads.
            let deadline = Instant::now() + GATHER;
            while self.acks_all_count().saturating_sub(since) < want && Instant::now() < deadline {
                std::thread::yield_now();
            }
        }
        let batches = self.acks_all_count();
        let result = self.sync_now();
        let mut st = lock(&self.sync);
        st.leader = false;
        st.last_round = st.waiting + 1;
        st.batches_at_last_round = batches;
        drop(st);
        self.synced.notify_all();
        result
    }

    /// One sync round: fsyncs the sealed segments not yet synced, the active segment and, if a
    /// file was created, the directory; then publishes the new durable offset (and high watermark).
    fn sync_now(&self) -> Result<()> {
        self.check_writable()?;
        // Shared mode: one sync leader across processes; the others queue on the lock and most
        // find what this process appended so far covered when they get it.
        let appended = self.leo.load(Ordering::Acquire);
        let leader = match self.multi() {
            Some(st) => {
                // Wait for a round of any process to cover this process's appends, or lead one:
                // waiters sleep on the round counter, not on the lock, so a round releases them
                // all at once.
                let g = loop {
                    let seen = st.durable_seq();
                    if st.durable() >= appended {
                        self.durable.fetch_max(appended, Ordering::AcqRel);
                        return Ok(());
                    }
                    match st.try_lock_sync() {
                        Ok(Some(g)) => break Ok(g),
                        Ok(None) => st.wait_durable(seen, SYNC_WAIT),
                        Err(e) => break Err(e),
                    }
                };
                let g = g.map_err(|e| Error::io("lock", self.dir.join("partition.state"), e))?;
                if st.durable() >= appended {
                    self.durable.fetch_max(appended, Ordering::AcqRel);
                    return Ok(());
                }
                // No gathering here, unlike within one process: measured, waiting even 10 µs for
                // the processes the last round released costs more than it gathers (waking a
                // process takes longer than waking a thread), while the natural batching of
                // appends that arrive during a round's fsync already shares it.
                Some(g)
            }
            None => None,
        };
        let (leo, active, file, size, unsynced, dir_dirty, snapshots) = {
            let mut w = self.lock_writer()?;
            let unsynced = std::mem::take(&mut w.unsynced);
            let snapshots = std::mem::take(&mut w.unsynced_snapshots);
            let dir_dirty = std::mem::replace(&mut w.dir_dirty, false);
            let seg = w.active.segment().clone();
            (self.leo.load(Ordering::Acquire), seg.clone(), w.active.file().clone(), seg.size(), unsynced, dir_dirty, snapshots)
        };
        let covered = self.multi().is_some_and(|st| st.durable() >= leo);
        if covered {
            // Another process's round synced everything up to `leo`, including the segments sealed
            // before it (it had caught up to `leo` itself).
            self.durable.fetch_max(leo, Ordering::AcqRel);
            return Ok(());
        }
        for (seg, f) in &unsynced {
            f.sync_data().map_err(|e| self.poison(Error::io("fdatasync", seg.log_path(), e)))?;
        }
        for (path, f) in &snapshots {
            f.sync_data().map_err(|e| self.poison(Error::io("fdatasync", path.clone(), e)))?;
        }
        file.sync_data().map_err(|e| self.poison(Error::io("fdatasync", active.log_path(), e)))?;
        if dir_dirty {
            self.vfs.sync_dir(&self.dir).map_err(|e| self.poison(Error::io("fsync", self.dir.to_path_buf(), e)))?;
        }
        let synced_at = now_ms();
        self.durable.fetch_max(leo, Ordering::AcqRel);
        self.last_sync_ms.store(synced_at, Ordering::Relaxed);
        if self.config.high_watermark == HighWatermark::Durable {
            for (seg, _) in &unsynced {
                seg.publish(seg.size());
            }
            active.publish(size);
            self.hw.fetch_max(leo, Ordering::AcqRel);
            let _w = self.lock_writer()?;
            self.publish_shared(None, None);
        }
        // Shared mode: `durable` moves only after the high watermark was published, so a process
        // whose append this round covers, and that returns at once, finds its records readable.
        if let Some(st) = self.multi() {
            st.set_last_sync_ms(synced_at);
            st.raise_durable(leo);
        }
        // Shared mode: the high watermark is published before the next leader looks.
        drop(leader);
        Ok(())
    }

    /// acks=all batches written so far (by every process, in shared mode).
    fn acks_all_count(&self) -> u64 {
        match self.multi() {
            Some(st) => st.acks_all(),
            None => self.acks_all_batches.load(Ordering::Relaxed),
        }
    }

    /// Syncs everything written so far.
    pub fn sync(&self) -> Result<()> {
        self.sync_to(self.leo.load(Ordering::Acquire))
    }

    /// Syncs if there is unsynced data and `flush.ms` has passed since the last sync.
    pub(crate) fn maybe_flush(&self, now: i64) -> Result<()> {
        // In shared mode the last round of any process counts: each process's maintenance thread
        // looks, one of them syncs.
        let last = self.last_sync_ms.load(Ordering::Relaxed).max(self.multi().map_or(i64::MIN, PartitionState::last_sync_ms));
        let due = now.saturating_sub(last) >= self.config.flush_ms as i64 || self.flush_requested.swap(false, Ordering::AcqRel);
        if due && self.durable.load(Ordering::Acquire) < self.leo.load(Ordering::Acquire) && !self.poisoned.load(Ordering::Acquire) {
            self.sync()?;
        }
        Ok(())
    }

    /// The last stable offset: the end of what read_committed readers may see, the high
    /// watermark unless a transaction is open below it.
    pub fn last_stable_offset(&self) -> u64 {
        self.refresh();
        // The high watermark first: a transaction is in the view before its first batch can be
        // below the high watermark.
        self.last_stable_offset_below(self.hw.load(Ordering::Acquire))
    }

    /// The last stable offset given a high watermark loaded before it.
    fn last_stable_offset_below(&self, hw: u64) -> u64 {
        hw.min(self.first_unstable.load(Ordering::Acquire))
    }

    /// Reads from `offset` (read_uncommitted). See [`crate::Log::fetch`].
    pub fn fetch(&self, offset: u64, max_bytes: u64) -> Result<Fetched> {
        self.fetch_isolated(offset, max_bytes, IsolationLevel::ReadUncommitted)
    }

    /// Reads from `offset` at an isolation level. See [`crate::Log::fetch_with`].
    pub fn fetch_isolated(&self, offset: u64, max_bytes: u64, isolation: IsolationLevel) -> Result<Fetched> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(Error::unknown(&self.topic, Some(self.id)));
        }
        self.refresh();
        // Load the high watermark before the segment list: a roll publishes the new list before
        // the high watermark can move into the new segment.
        let hw = self.hw.load(Ordering::Acquire);
        let lso = self.last_stable_offset_below(hw);
        let bound = match isolation {
            IsolationLevel::ReadUncommitted => hw,
            IsolationLevel::ReadCommitted => lso,
        };
        let segs = self.segments();
        let log_start = self.log_start.load(Ordering::Acquire);
        if offset < log_start || offset > hw {
            return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark: hw });
        }
        if offset >= bound {
            return Ok(Fetched::empty(offset, hw, log_start).with_last_stable_offset(lso));
        }
        // From here on `hw` bounds the batches returned: for read_committed, the last stable offset.
        let (hw, high_watermark) = (bound, hw);
        let i = segs.partition_point(|s| s.base_offset <= offset);
        let Some(seg) = i.checked_sub(1).and_then(|i| segs.get(i)) else {
            return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark: hw });
        };
        let data = match seg.data() {
            Ok((data, opened)) => {
                if opened && seg.is_sealed() {
                    self.cache.opened(seg);
                } else {
                    self.cache.touch(seg);
                }
                data
            }
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Retention deleted the segment after the list was read.
                let log_start = self.log_start.load(Ordering::Acquire);
                return Err(Error::OffsetOutOfRange { requested: offset, log_start, high_watermark });
            }
            Err(e) => return Err(e),
        };
        let bytes = data.prefix(seg.visible());
        let from = seg.position_for_offset(&data, offset, self.config.index_interval_bytes) as usize;
        let (start, pos, next_offset) = select_batches(bytes, from, offset, hw, max_bytes, &seg.log_path())?;
        let aborted = match isolation {
            IsolationLevel::ReadUncommitted => Vec::new(),
            IsolationLevel::ReadCommitted => self.txn.read().unwrap_or_else(|e| e.into_inner()).aborted_in(offset, next_offset),
        };
        Ok(Fetched::new(data, seg.log_path(), start, pos, offset, next_offset, high_watermark, log_start)
            .with_last_stable_offset(lso)
            .with_aborted(aborted))
    }

    /// The first offset whose record has a timestamp at or after `timestamp`, with that
    /// timestamp; `None` when every visible record is older.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(u64, i64)>> {
        self.refresh();
        let hw = self.hw.load(Ordering::Acquire);
        let segs = self.segments();
        for seg in segs.iter() {
            if seg.base_offset >= hw {
                break;
            }
            if seg.max_timestamp() < timestamp {
                continue;
            }
            let (data, opened) = seg.data()?;
            if opened && seg.is_sealed() {
                self.cache.opened(seg);
            }
            if let ControlFlow::Break(found) = find_timestamp(seg, &data, hw, timestamp, self.config.index_interval_bytes)? {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Deletes whole segments past `retention.ms` / `retention.bytes`, oldest first, never the
    /// active one nor any holding records at or above the high watermark. Returns how many.
    pub fn apply_retention(&self, now: i64) -> Result<usize> {
        let (ms, bytes) = (self.config.retention_ms, self.config.retention_bytes);
        if ms.is_none() && bytes.is_none() {
            return Ok(0);
        }
        let segs = self.segments();
        let hw = self.hw.load(Ordering::Acquire);
        let mut total: u64 = segs.iter().map(|s| s.size()).sum();
        let mut n = 0usize;
        for seg in segs.iter() {
            if !seg.is_sealed() || seg.next_offset() > hw {
                break;
            }
            let expired = ms.is_some_and(|ms| seg.max_timestamp() < now.saturating_sub(ms as i64));
            let oversize = bytes.is_some_and(|b| total.saturating_sub(seg.size()) >= b);
            if !(expired || oversize) {
                break;
            }
            total -= seg.size();
            n += 1;
        }
        match n.checked_sub(1).and_then(|i| segs.get(i)) {
            Some(last) => self.delete_through(last.next_offset()),
            None => Ok(0),
        }
    }

    /// Deletes every sealed segment whose records all precede `offset`.
    pub(crate) fn delete_segments_before(&self, offset: u64) -> Result<usize> {
        self.delete_through(offset)
    }

    /// Deletes the oldest segments whose records all precede `end`, as the list stands under the
    /// writer lock (so two retention runs deciding from the same snapshot delete each segment once
    /// and nothing their policy did not choose), never the active segment nor any segment holding
    /// offsets at or above the high watermark. Returns how many.
    fn delete_through(&self, end: u64) -> Result<usize> {
        let mut w = self.lock_writer()?;
        let hw = self.hw.load(Ordering::Acquire);
        let removed: Vec<Arc<Segment>> = {
            let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
            let n = segs.iter().take_while(|s| s.is_sealed() && s.next_offset() <= end && s.next_offset() <= hw).count();
            let n = n.min(segs.len().saturating_sub(1));
            if n == 0 {
                return Ok(0);
            }
            let removed = segs[..n].to_vec();
            let rest = segs[n..].to_vec();
            if let Some(first) = rest.first() {
                self.log_start.store(first.base_offset, Ordering::Release);
            }
            *segs = Arc::new(rest);
            removed
        };
        // Other processes reload their segment lists.
        w.view.epoch += 1;
        self.commit_view(&mut w);
        // Readers in other processes learn the new log start before the files go, so one that finds
        // a file missing finds the reason too.
        self.publish_shared(None, None);
        // Readers holding a removed segment keep its mapping; the files go now.
        for seg in &removed {
            seg.delete_files()?;
            seg.evict();
        }
        let log_start = self.log_start.load(Ordering::Acquire);
        self.txn.write().unwrap_or_else(|e| e.into_inner()).prune(log_start);
        producer_state::remove_snapshots_before(&*self.vfs, &self.dir, log_start);
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("fsync", self.dir.to_path_buf(), e))?;
        Ok(removed.len())
    }

    /// Clean shutdown: syncs, trims the active segment and writes its indexes.
    pub(crate) fn close(&self) -> Result<()> {
        // A partition that left shared mode ([`Partition::leave`]) was synced then.
        if !self.poisoned.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire) {
            self.sync()?;
        }
        let mut w = self.lock_writer()?;
        // After this, appends (through a handle that outlived the log) fail with `Closed` instead
        // of writing past the trimmed end of the file.
        self.closed.store(true, Ordering::Release);
        // Shared mode: segments and snapshots other processes sealed or wrote (and perhaps died
        // before syncing) are synced before the clean marker vouches for them.
        for (seg, f) in std::mem::take(&mut w.unsynced) {
            f.sync_data().map_err(|e| Error::io("fdatasync", seg.log_path(), e))?;
        }
        for (path, f) in std::mem::take(&mut w.unsynced_snapshots) {
            f.sync_data().map_err(|e| Error::io("fdatasync", path, e))?;
        }
        for seg in self.segments().iter().filter(|s| s.is_sealed()) {
            seg.sync_indexes()?;
        }
        let active = w.active.segment().clone();
        let path = active.log_path();
        let file = w.active.file().clone();
        file.set_len(active.size()).map_err(|e| Error::io("truncate", &path, e))?;
        file.sync_data().map_err(|e| Error::io("fdatasync", &path, e))?;
        active.flush_indexes()?;
        active.sync_indexes()?;
        // The producer state at the log end, so that the next open replays nothing.
        let leo = self.leo.load(Ordering::Acquire);
        let snapshot = w.producers.snapshot(leo, &self.txn.read().unwrap_or_else(|e| e.into_inner()));
        let (snap_path, f) = producer_state::write_snapshot(&*self.vfs, &self.dir, &snapshot)?;
        f.sync_data().map_err(|e| Error::io("fdatasync", snap_path, e))?;
        producer_state::remove_old_snapshots(&*self.vfs, &self.dir, leo, 2);
        self.vfs.sync_dir(&self.dir).map_err(|e| Error::io("fsync", self.dir.to_path_buf(), e))?;
        Ok(())
    }

    /// Producers with a transaction open in this partition, with their epochs.
    pub(crate) fn open_transactions(&self) -> Vec<(i64, i16)> {
        self.writer_view().producers.open_transactions()
    }

    /// The latest epoch of `producer_id` this partition has seen.
    pub(crate) fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.writer_view().producers.producers.get(&producer_id).map(|e| e.epoch)
    }

    /// The first offset of `producer_id`'s transaction open in this partition, if one is.
    pub(crate) fn open_transaction_start(&self, producer_id: i64) -> Option<u64> {
        self.writer_view().producers.producers.get(&producer_id).and_then(|e| e.txn_first_offset)
    }

    /// Forgets producers idle since before `cutoff` (ms) that have no transaction open.
    pub(crate) fn expire_producers(&self, cutoff: i64) -> usize {
        self.writer_view().producers.expire(cutoff)
    }

    /// How many producers this partition remembers.
    pub fn producer_count(&self) -> usize {
        self.writer_view().producers.producers.len()
    }

    /// Number of segments and their total size in bytes.
    pub fn segment_stats(&self) -> (usize, u64) {
        let segs = self.segments();
        (segs.len(), segs.iter().map(|s| s.size()).sum())
    }

    /// Path of the partition directory.
    pub fn path(&self) -> PathBuf {
        self.dir.to_path_buf()
    }
}
