//! The small memory-mapped files through which a writer publishes what readers in other processes
//! may see: `.runnel_state` for the directory (writer generation, catalog version, the futex word
//! followers sleep on) and `partition.state` in each partition directory (high watermark, where it
//! lies, log start offset, last stable offset). docs/FORMAT.md gives the layouts and
//! docs/DESIGN.md the protocol.
//!
//! These files are shared memory, not data: nothing in them is synced or needed for recovery, so
//! they are mapped directly with memmap2 rather than through the [`super::vfs`] seam (the
//! simulated file systems of the reliability harness have no shared memory; under them the writer
//! publishes nothing and no reader can attach).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};

/// Name of the directory's shared state file.
pub const DIR_STATE_FILE: &str = ".runnel_state";
/// Name of a partition's shared state file.
pub const PARTITION_STATE_FILE: &str = "partition.state";

const DIR_MAGIC: u64 = u64::from_le_bytes(*b"RNLSTATE");
const PARTITION_MAGIC: u64 = u64::from_le_bytes(*b"RNLPSTAT");
const VERSION: u32 = 2;
const DIR_LEN: usize = 64;
const PARTITION_LEN: usize = 512;

// Both files begin with a magic (u64 at 0) and a version (u32 at 8).
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = 8;

// `.runnel_state` fields (byte offsets).
const D_GENERATION: usize = 16;
const D_CATALOG: usize = 24;
const D_NOTIFY: usize = 32;
const D_WRITER_OPEN: usize = 36;
const D_WRITER_PID: usize = 40;

// `partition.state` fields.
const P_SEQ: usize = 16;
const P_SLOTS: [usize; 2] = [24, 64];
const P_GENERATION: usize = 104;
// Shared read-write mode: the two process-shared locks, the writers' state (two slots and the
// number of commits, which also selects the current slot), the durable offset, a count of
// acks=all batches, and the repair flags.
const P_APPEND_LOCK: usize = 128;
const P_SYNC_LOCK: usize = 192;
const LOCK_LEN: usize = 64;
const P_W_COMMITS: usize = 256;
const P_W_SLOTS: [usize; 2] = [264, 312];
const P_DURABLE: usize = 360;
const P_ACKS_ALL: usize = 368;
const P_REPAIRS: usize = 376;
const P_REPAIR_NEEDED: usize = 384;
// Futex word bumped after each sync round; processes waiting for their appends to be covered
// sleep on it.
const P_DURABLE_SEQ: usize = 392;
// Wall-clock milliseconds of the last sync round of any process (flush.ms is per partition, not
// per process).
const P_LAST_SYNC_MS: usize = 400;

/// The shortest interval between two futex wakes from appends: a writer appending millions of
/// batches a second does not make a system call for each. A follower that slept through a skipped
/// wake notices within [`FOLLOW_POLL`].
const WAKE_INTERVAL: Duration = Duration::from_micros(50);

/// The longest a follower sleeps before it looks at the state again, whatever woke it or not.
pub const FOLLOW_POLL: Duration = Duration::from_millis(1);

/// A mapped shared state file.
struct Page {
    map: MmapRaw,
    len: usize,
}

impl Page {
    fn open(path: &Path, len: usize, writable: bool) -> io::Result<Page> {
        let mut o = OpenOptions::new();
        o.read(true).custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32);
        if writable {
            o.write(true).create(true);
        }
        let file: File = o.open(path)?;
        let on_disk = file.metadata()?.len();
        if on_disk < len as u64 {
            if !writable {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} bytes, expected {len}", on_disk)));
            }
            // Written out rather than extended sparsely: a store through the mapping into a page
            // the file system has no block for would raise SIGBUS on a full disk.
            std::os::unix::fs::FileExt::write_all_at(&file, &vec![0u8; len], 0)?;
        }
        let mut opts = MmapOptions::new();
        opts.len(len);
        let map = if writable { opts.map_raw(&file)? } else { opts.map_raw_read_only(&file)? };
        Ok(Page { map, len })
    }

    /// Writer side: marks the file as initialized (version, then magic), once.
    fn stamp(&self, magic: u64) {
        if self.u64_at(MAGIC_AT).load(Ordering::Acquire) != magic {
            self.u32_at(VERSION_AT).store(VERSION, Ordering::Relaxed);
            self.u64_at(MAGIC_AT).store(magic, Ordering::Release);
        }
    }

    /// Reader side: fails unless a writer of this version stamped the file with `magic`.
    fn check(&self, magic: u64, path: &Path, unstamped: &str) -> io::Result<()> {
        if self.u64_at(MAGIC_AT).load(Ordering::Acquire) != magic {
            return Err(bad(path, unstamped));
        }
        let version = self.u32_at(VERSION_AT).load(Ordering::Relaxed);
        if version != VERSION {
            return Err(bad(path, &format!("state file version {version}; this runnel reads version {VERSION}")));
        }
        Ok(())
    }

    #[expect(unsafe_code, reason = "viewing an aligned word of a shared mapping as an atomic")]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off.is_multiple_of(8) && off + 8 <= self.len, "a shared-state field is out of place");
        // SAFETY: the mapping is page-aligned and `off` a multiple of 8 inside it (asserted), so the
        // pointer is aligned and valid for 8 bytes for as long as `self` (the mapping) lives. Other
        // processes touch these bytes only through atomic operations of the same width, which is
        // what makes sharing them sound; a mapped file shorter than `len` cannot happen because
        // the file was checked (or extended) to `len` before mapping, and runnel never shrinks it.
        // Readers map the file read-only and only ever load from it: on the supported targets an
        // atomic load is a plain load instruction and never writes to the page.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU64) }
    }

    #[expect(unsafe_code, reason = "viewing an aligned word of a shared mapping as an atomic")]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off.is_multiple_of(4) && off + 4 <= self.len, "a shared-state field is out of place");
        // SAFETY: as in `u64_at`, with 4-byte alignment and width.
        unsafe { &*(self.map.as_ptr().add(off) as *const AtomicU32) }
    }
}

/// Moves a futex word in shared memory and wakes every sleeper on it, in any process (a shared,
/// not `FUTEX_PRIVATE`, wake).
fn bump_and_wake(word: &AtomicU32) {
    word.fetch_add(1, Ordering::SeqCst);
    let _ = rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), u32::MAX);
}

/// Sleeps while a futex word in shared memory still holds `seen`, for at most `timeout`.
fn sleep_on(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = rustix::time::Timespec { tv_sec: timeout.as_secs() as i64, tv_nsec: i64::from(timeout.subsec_nanos()) };
    let _ = rustix::thread::futex::wait(word, rustix::thread::futex::Flags::empty(), seen, Some(&ts));
}

fn bad(path: &Path, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

/// The directory's shared state: which writer generation is live, the catalog's version, and the
/// word followers sleep on.
pub struct DirState {
    page: Page,
    writable: bool,
    /// When this process last woke followers (writer side), in monotonic nanoseconds.
    last_wake: AtomicU64,
    /// Threads of this process asleep in [`DirState::wait`] on this mapping (a writer's own
    /// consumers and `fetch_wait` callers). Wakes for them are not paced: they cost a system call
    /// only while someone sleeps, and a consumer polling in the writer's process should see a
    /// record tens of microseconds after it is appended, not up to [`FOLLOW_POLL`] later. Readers
    /// in other processes cannot announce themselves this way, as they never write to the file.
    local_sleepers: AtomicU32,
}

impl DirState {
    /// Opens (creating it if needed) the directory's state file for writing. Called by the writer,
    /// which holds the directory lock.
    pub fn create(dir: &Path) -> io::Result<DirState> {
        let path = dir.join(DIR_STATE_FILE);
        let page = Page::open(&path, DIR_LEN, true)?;
        page.stamp(DIR_MAGIC);
        Ok(DirState { page, writable: true, last_wake: AtomicU64::new(0), local_sleepers: AtomicU32::new(0) })
    }

    /// Opens the directory's state file read-only; `Ok(None)` when there is none (no writer of
    /// this version has opened the directory yet).
    pub fn open(dir: &Path) -> io::Result<Option<DirState>> {
        let path = dir.join(DIR_STATE_FILE);
        let page = match Page::open(&path, DIR_LEN, false) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        page.check(DIR_MAGIC, &path, "not a runnel state file (bad magic)")?;
        Ok(Some(DirState { page, writable: false, last_wake: AtomicU64::new(0), local_sleepers: AtomicU32::new(0) }))
    }

    /// A writer takes over: a new generation, marked open. Returns the generation.
    pub fn begin_writer(&self) -> u64 {
        debug_assert!(self.writable);
        self.page.u32_at(D_WRITER_PID).store(std::process::id(), Ordering::Relaxed);
        self.page.u32_at(D_WRITER_OPEN).store(1, Ordering::Release);
        let g = self.page.u64_at(D_GENERATION).fetch_add(1, Ordering::AcqRel) + 1;
        self.wake(None);
        g
    }

    /// The writer closed cleanly.
    pub fn end_writer(&self) {
        self.page.u32_at(D_WRITER_OPEN).store(0, Ordering::Release);
        self.wake(None);
    }

    /// Which writer incarnation published the state (0: none yet).
    pub fn generation(&self) -> u64 {
        self.page.u64_at(D_GENERATION).load(Ordering::Acquire)
    }

    /// Whether a writer has the directory open (it set the flag, and has not closed cleanly; a
    /// crashed writer leaves it set until the next writer opens).
    pub fn writer_open(&self) -> bool {
        self.page.u32_at(D_WRITER_OPEN).load(Ordering::Acquire) != 0
    }

    /// The catalog changed (after its rename, and after the partition directories it names exist).
    pub fn catalog_changed(&self) {
        self.page.u64_at(D_CATALOG).fetch_add(1, Ordering::AcqRel);
        self.wake(None);
    }

    /// Counts catalog changes.
    pub fn catalog_version(&self) -> u64 {
        self.page.u64_at(D_CATALOG).load(Ordering::Acquire)
    }

    /// The futex word's current value; pass it to [`DirState::wait`].
    pub fn notify_value(&self) -> u32 {
        self.page.u32_at(D_NOTIFY).load(Ordering::Acquire)
    }

    /// Something was published: bumps the futex word and wakes sleeping followers. `paced`: the
    /// publisher's clock reading (ns, any clock it always uses); followers are then woken at most
    /// once per [`WAKE_INTERVAL`], and the word is left alone between wakes (a follower that slept
    /// through a publication looks again within [`FOLLOW_POLL`]). `None`: now.
    pub fn wake(&self, paced: Option<u64>) {
        let word = self.page.u32_at(D_NOTIFY);
        // Dekker with `wait_until`: a local sleeper counts itself, then looks at what was
        // published; the publication came before this fence. Either this load sees the count, or
        // the sleeper's look sees the publication and it does not sleep.
        fence(Ordering::SeqCst);
        if self.local_sleepers.load(Ordering::Relaxed) != 0 {
            bump_and_wake(word);
            return;
        }
        if let Some(now) = paced {
            // Two publishers racing here may both wake: harmless.
            if now.wrapping_sub(self.last_wake.load(Ordering::Relaxed)) < WAKE_INTERVAL.as_nanos() as u64 {
                return;
            }
            self.last_wake.store(now, Ordering::Relaxed);
        }
        // After the publication: a follower that loaded the word before it either sees the word
        // moved or is woken (the sleepers are in other processes).
        bump_and_wake(word);
    }

    /// Sleeps until the futex word differs from `seen`, or `timeout` passes (at most
    /// [`FOLLOW_POLL`], so that a skipped wake costs at most that long).
    pub fn wait(&self, seen: u32, timeout: Duration) {
        sleep_on(self.page.u32_at(D_NOTIFY), seen, timeout.min(FOLLOW_POLL));
    }
}

/// Waits until `ready` answers `true` or `timeout` passes, looking again whenever `state`'s futex
/// word moves (at least every [`FOLLOW_POLL`]; in naps of that length without a state file).
/// Returns the last answer.
pub fn wait_until(state: Option<&DirState>, timeout: Duration, mut ready: impl FnMut() -> crate::Result<bool>) -> crate::Result<bool> {
    let deadline = std::time::Instant::now() + timeout;
    let _sleeper = state.filter(|s| s.writable).map(SleeperGuard::new);
    loop {
        // The word before the check: a publication after this load moves it, so the wait returns.
        let seen = state.map(DirState::notify_value);
        if ready()? {
            return Ok(true);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        match (state, seen) {
            (Some(s), Some(seen)) => s.wait(seen, deadline - now),
            _ => std::thread::sleep((deadline - now).min(FOLLOW_POLL)),
        }
    }
}

/// Counts a thread of the writer's process among the local sleepers (see
/// `DirState::local_sleepers`) for as long as it lives.
struct SleeperGuard<'a>(&'a DirState);

impl<'a> SleeperGuard<'a> {
    fn new(state: &'a DirState) -> SleeperGuard<'a> {
        state.local_sleepers.fetch_add(1, Ordering::Relaxed);
        // Before the sleeper's first look at the published state; pairs with the fence in `wake`.
        fence(Ordering::SeqCst);
        SleeperGuard(state)
    }
}

impl Drop for SleeperGuard<'_> {
    fn drop(&mut self) {
        self.0.local_sleepers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a partition's writer published, read consistently.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Published {
    /// The high watermark.
    pub high_watermark: u64,
    /// Base offset of the segment holding the last offset below the high watermark.
    pub segment: u64,
    /// Bytes of complete batches readers may look at in that segment: every batch below the high
    /// watermark in it ends at or before this position.
    pub position: u64,
    /// The log start offset.
    pub log_start: u64,
    /// The last stable offset.
    pub last_stable: u64,
}

/// A partition's shared state: two slots and a sequence number saying which one is current.
pub struct PartitionState {
    page: Page,
    path: PathBuf,
}

impl PartitionState {
    /// Opens (creating it if needed) a partition's state file for writing.
    pub fn create(dir: &Path) -> io::Result<PartitionState> {
        let path = dir.join(PARTITION_STATE_FILE);
        let page = Page::open(&path, PARTITION_LEN, true)?;
        Ok(PartitionState { page, path })
    }

    /// Shared mode, a process joining: maps (writable, never creating) a state file the first
    /// process in initialized; fails on a file that is not one.
    pub fn attach(dir: &Path) -> io::Result<PartitionState> {
        let path = dir.join(PARTITION_STATE_FILE);
        if std::fs::symlink_metadata(&path)?.len() < PARTITION_LEN as u64 {
            return Err(bad(&path, "not initialized for shared mode"));
        }
        let page = Page::open(&path, PARTITION_LEN, true)?;
        page.check(PARTITION_MAGIC, &path, "not initialized by a writer")?;
        Ok(PartitionState { page, path })
    }

    /// Opens a partition's state file read-only.
    pub fn open(dir: &Path) -> io::Result<PartitionState> {
        let path = dir.join(PARTITION_STATE_FILE);
        let page = Page::open(&path, PARTITION_LEN, false)?;
        Ok(PartitionState { page, path })
    }

    /// Publishes `p` (writer side). The new values go to the slot readers are not directed to, and
    /// only then does the sequence number move to it, so a reader never sees a half-written slot
    /// and a writer that dies mid-publication leaves the previous slot current.
    /// The slots have one writer: callers serialize publications (the partition's writer lock),
    /// which also orders them as the values were loaded.
    pub fn publish(&self, p: &Published, generation: u64) {
        let seq = self.page.u64_at(P_SEQ).load(Ordering::Relaxed);
        let slot = P_SLOTS[((seq + 1) & 1) as usize];
        // Orders the previous publication's sequence store before this one's slot stores: a reader
        // that sees any of the new values in the slot then also sees that the sequence moved on.
        fence(Ordering::Release);
        for (i, v) in [p.high_watermark, p.segment, p.position, p.log_start, p.last_stable].into_iter().enumerate() {
            self.page.u64_at(slot + 8 * i).store(v, Ordering::Relaxed);
        }
        self.page.u64_at(P_GENERATION).store(generation, Ordering::Relaxed);
        self.page.u64_at(P_SEQ).store(seq + 1, Ordering::Release);
        // After the first publication, so a reader never sees a stamped file with an empty slot.
        self.page.stamp(PARTITION_MAGIC);
    }

    /// Reads the current slot (reader side); `Err` when the file was never initialized or is not
    /// a state file of this version.
    pub fn read(&self) -> io::Result<Published> {
        self.page.check(PARTITION_MAGIC, &self.path, "not initialized by a writer")?;
        let seq_word = self.page.u64_at(P_SEQ);
        loop {
            let seq = seq_word.load(Ordering::Acquire);
            let slot = P_SLOTS[(seq & 1) as usize];
            let v: [u64; 5] = std::array::from_fn(|i| self.page.u64_at(slot + 8 * i).load(Ordering::Relaxed));
            // The slot's loads happen before the sequence number is read again: if it has not moved,
            // the writer did not start overwriting this slot (that needs two moves).
            fence(Ordering::Acquire);
            if seq_word.load(Ordering::Relaxed) == seq {
                return Ok(Published { high_watermark: v[0], segment: v[1], position: v[2], log_start: v[3], last_stable: v[4] });
            }
            std::hint::spin_loop();
        }
    }
}

/// A process-shared, robust mutex living in a shared state file (glibc's
/// `PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST`, as LMDB uses): uncontended, locking and
/// unlocking are one atomic instruction each in user space; a waiter sleeps on the mutex's futex;
/// and when a holder's thread dies (its process killed at any instruction) the kernel marks the
/// mutex and hands it to the next locker, which learns it from [`LockGuard::owner_died`].
struct RobustLock<'a> {
    ptr: *mut libc::pthread_mutex_t,
    _page: std::marker::PhantomData<&'a Page>,
}

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= LOCK_LEN);

impl Page {
    fn robust_lock(&self, off: usize) -> RobustLock<'_> {
        assert!(off.is_multiple_of(LOCK_LEN) && off + LOCK_LEN <= self.len, "a shared lock is out of place");
        RobustLock { ptr: self.map.as_mut_ptr().wrapping_add(off).cast(), _page: std::marker::PhantomData }
    }
}

/// The error a pthread call returned (`code`, an errno value).
fn pthread_error(code: i32, what: &str) -> io::Error {
    let e = io::Error::from_raw_os_error(code);
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Maps a pthread return code to a result.
fn pthread_result(code: i32, what: &str) -> io::Result<()> {
    if code == 0 { Ok(()) } else { Err(pthread_error(code, what)) }
}

impl<'a> RobustLock<'a> {
    /// Initializes the mutex. Only while no other process can be using it: the caller holds the
    /// directory lock exclusively, or the file is not yet reachable by its final path.
    #[expect(unsafe_code, reason = "initializing a process-shared pthread mutex in shared memory")]
    fn init(&self) -> io::Result<()> {
        // SAFETY: `ptr` points into a writable shared mapping at a 64-byte aligned offset with room
        // for a `pthread_mutex_t` (asserted in `robust_lock` and at compile time); the mapping
        // outlives this call. No other thread or process uses the mutex during initialization (the
        // caller's contract), so (re)initializing it cannot disturb a holder. The attribute object
        // is initialized before use and destroyed after.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            pthread_result(libc::pthread_mutexattr_init(attr.as_mut_ptr()), "pthread_mutexattr_init")?;
            let attr_ptr = attr.as_mut_ptr();
            let set = pthread_result(libc::pthread_mutexattr_setpshared(attr_ptr, libc::PTHREAD_PROCESS_SHARED), "setpshared")
                .and_then(|()| pthread_result(libc::pthread_mutexattr_setrobust(attr_ptr, libc::PTHREAD_MUTEX_ROBUST), "setrobust"))
                .and_then(|()| pthread_result(libc::pthread_mutex_init(self.ptr, attr_ptr), "pthread_mutex_init"));
            libc::pthread_mutexattr_destroy(attr_ptr);
            set
        }
    }

    /// Locks, sleeping while another thread (in any process) holds the lock. The lock is held
    /// for microseconds, so a waiter first retries for a few of them (a holder running on another
    /// core is about to release it) before sleeping on the futex: sleeping and being woken costs a
    /// context switch each way.
    #[expect(unsafe_code, reason = "locking a process-shared pthread mutex in shared memory")]
    fn lock(self) -> io::Result<LockGuard<'a>> {
        const SPINS: u32 = 200;
        let mut r = libc::EBUSY;
        for i in 0..SPINS {
            // SAFETY: as below; trylock reports a dead holder the same way as lock.
            r = unsafe { libc::pthread_mutex_trylock(self.ptr) };
            if r != libc::EBUSY {
                break;
            }
            for _ in 0..(1 << (i / 40).min(4)) {
                std::hint::spin_loop();
            }
        }
        if r == libc::EBUSY {
            // SAFETY: the mutex was initialized as process-shared and robust (by `init`, before
            // any process could reach it) and lives in a mapping that outlives the guard. A robust
            // mutex reports a dead holder as EOWNERDEAD and is then marked consistent at once, so
            // it never becomes unrecoverable; the caller repairs what the dead holder protected
            // (its repair flag tells the next holder if this one dies too).
            r = unsafe { libc::pthread_mutex_lock(self.ptr) };
        }
        self.locked(r)
    }

    /// The guard for a lock or trylock that returned `r`.
    #[expect(unsafe_code, reason = "marking a process-shared pthread mutex consistent")]
    fn locked(self, r: i32) -> io::Result<LockGuard<'a>> {
        let owner_died = match r {
            0 => false,
            libc::EOWNERDEAD => {
                // SAFETY: this thread holds the mutex (EOWNERDEAD means it was acquired).
                let r = unsafe { libc::pthread_mutex_consistent(self.ptr) };
                if r != 0 {
                    // SAFETY: as above; released rather than held forever.
                    unsafe { libc::pthread_mutex_unlock(self.ptr) };
                    return Err(pthread_error(r, "pthread_mutex_consistent"));
                }
                true
            }
            e => return Err(pthread_error(e, "pthread_mutex_lock")),
        };
        Ok(LockGuard { lock: self, owner_died })
    }
}

impl<'a> RobustLock<'a> {
    /// Locks if no one holds the lock.
    #[expect(unsafe_code, reason = "locking a process-shared pthread mutex in shared memory")]
    fn try_lock(self) -> io::Result<Option<LockGuard<'a>>> {
        // SAFETY: as in `lock`.
        let r = unsafe { libc::pthread_mutex_trylock(self.ptr) };
        if r == libc::EBUSY { Ok(None) } else { self.locked(r).map(Some) }
    }
}

/// A held [`RobustLock`]; unlocks when dropped.
pub struct LockGuard<'a> {
    lock: RobustLock<'a>,
    owner_died: bool,
}

impl LockGuard<'_> {
    /// Whether the previous holder died holding the lock (its process was killed): what it
    /// protected may be half-changed.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl Drop for LockGuard<'_> {
    #[expect(unsafe_code, reason = "unlocking a process-shared pthread mutex in shared memory")]
    fn drop(&mut self) {
        // SAFETY: this thread locked the mutex (the guard exists only after a successful lock and
        // is not `Send`, through the raw pointer), and it is still mapped.
        unsafe {
            libc::pthread_mutex_unlock(self.lock.ptr);
        }
    }
}

/// The sync lock of a partition, held by the group-commit leader of every process. Released on
/// drop, whatever the round's outcome, and then the processes waiting for a round are woken.
pub struct SyncLeader<'a> {
    state: &'a PartitionState,
    lock: Option<LockGuard<'a>>,
}

impl Drop for SyncLeader<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.state.wake_durable();
    }
}

/// What the appenders of a partition opened in shared mode have written: committed under the
/// append lock, in one of two slots, by a single store of the commit count, so a holder killed
/// mid-update leaves the previous state current.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterState {
    /// The log end offset: the offset the next batch gets.
    pub leo: u64,
    /// Base offset of the active segment.
    pub active_base: u64,
    /// Bytes of complete batches in the active segment.
    pub size: u64,
    /// Bumped by every change other than an append in place: a roll, retention, a repair. A
    /// process whose view has another epoch reloads the partition from its files.
    pub epoch: u64,
    /// The log start offset.
    pub log_start: u64,
    /// The topic was deleted.
    pub deleted: bool,
}

impl PartitionState {
    /// Initializes the two locks and the writers' state: a shared-mode open that found no other
    /// process on the directory (it holds the directory lock exclusively), or a new partition not
    /// yet reachable by its final name.
    pub fn init_shared(&self, state: &WriterState, durable: u64) -> io::Result<()> {
        self.page.robust_lock(P_APPEND_LOCK).init()?;
        self.page.robust_lock(P_SYNC_LOCK).init()?;
        for f in [P_REPAIR_NEEDED, P_DURABLE_SEQ, P_LAST_SYNC_MS] {
            self.page.u64_at(f).store(0, Ordering::Relaxed);
        }
        self.page.u64_at(P_DURABLE).store(durable, Ordering::Relaxed);
        self.set_writer_state(state);
        Ok(())
    }

    /// Takes the append lock: held for one append (or roll, or retention's list change), never
    /// across an fsync. If the previous holder died holding it, what it protected may be
    /// half-changed: the partition is marked for repair ([`PartitionState::repair_needed`]), which
    /// survives this holder's death too.
    pub fn lock_append(&self) -> io::Result<LockGuard<'_>> {
        let g = self.page.robust_lock(P_APPEND_LOCK).lock()?;
        if g.owner_died() {
            self.mark_unfinished();
        }
        Ok(g)
    }

    /// Takes the sync lock if it is free: the holder is the group-commit leader of every process.
    pub fn try_lock_sync(&self) -> io::Result<Option<SyncLeader<'_>>> {
        Ok(self.page.robust_lock(P_SYNC_LOCK).try_lock()?.map(|g| SyncLeader { state: self, lock: Some(g) }))
    }

    /// The futex word sync rounds bump; pass it to [`PartitionState::wait_durable`].
    pub fn durable_seq(&self) -> u32 {
        self.page.u32_at(P_DURABLE_SEQ).load(Ordering::SeqCst)
    }

    /// A sync round ended (the durable offset was raised first): wakes the processes waiting.
    fn wake_durable(&self) {
        bump_and_wake(self.page.u32_at(P_DURABLE_SEQ));
    }

    /// Sleeps until a sync round ends after `seen` was loaded, or `timeout` passes (a leader
    /// that died mid-round wakes no one: the sleeper then looks at the lock again).
    pub fn wait_durable(&self, seen: u32, timeout: Duration) {
        sleep_on(self.page.u32_at(P_DURABLE_SEQ), seen, timeout);
    }

    /// How many writer states were committed: one load, for a cheap "has anything changed?".
    pub fn writer_commits(&self) -> u64 {
        self.page.u64_at(P_W_COMMITS).load(Ordering::Acquire)
    }

    /// The current writer state. Under the append lock (no commit can race with it).
    pub fn writer_state(&self) -> WriterState {
        let n = self.page.u64_at(P_W_COMMITS).load(Ordering::Acquire);
        let slot = P_W_SLOTS[(n & 1) as usize];
        let v: [u64; 6] = std::array::from_fn(|i| self.page.u64_at(slot + 8 * i).load(Ordering::Relaxed));
        WriterState { leo: v[0], active_base: v[1], size: v[2], epoch: v[3], log_start: v[4], deleted: v[5] != 0 }
    }

    /// Commits a new writer state (under the append lock): the other slot, then the count.
    pub fn set_writer_state(&self, s: &WriterState) {
        let n = self.page.u64_at(P_W_COMMITS).load(Ordering::Relaxed);
        let slot = P_W_SLOTS[((n + 1) & 1) as usize];
        for (i, v) in [s.leo, s.active_base, s.size, s.epoch, s.log_start, u64::from(s.deleted)].into_iter().enumerate() {
            self.page.u64_at(slot + 8 * i).store(v, Ordering::Relaxed);
        }
        self.page.u64_at(P_W_COMMITS).store(n + 1, Ordering::Release);
    }

    /// The offset below which every process's appends are fsync'd.
    pub fn durable(&self) -> u64 {
        self.page.u64_at(P_DURABLE).load(Ordering::Acquire)
    }

    /// Raises the durable offset to `offset` (a sync round of any process covered it).
    pub fn raise_durable(&self, offset: u64) {
        self.page.u64_at(P_DURABLE).fetch_max(offset, Ordering::AcqRel);
    }

    /// Counts an acks=all batch (a group-commit leader of any process gathers by it).
    pub fn count_acks_all(&self) -> u64 {
        self.page.u64_at(P_ACKS_ALL).fetch_add(1, Ordering::Relaxed) + 1
    }

    /// acks=all batches counted so far.
    pub fn acks_all(&self) -> u64 {
        self.page.u64_at(P_ACKS_ALL).load(Ordering::Relaxed)
    }

    /// What a dead or failed holder left has been repaired.
    pub fn repaired(&self) {
        self.page.u64_at(P_REPAIR_NEEDED).store(0, Ordering::Release);
        self.page.u64_at(P_REPAIRS).fetch_add(1, Ordering::Relaxed);
    }

    /// When the last sync round of any process ended (wall-clock ms).
    pub fn last_sync_ms(&self) -> i64 {
        self.page.u64_at(P_LAST_SYNC_MS).load(Ordering::Relaxed) as i64
    }

    /// A sync round ended at `ms`.
    pub fn set_last_sync_ms(&self, ms: i64) {
        self.page.u64_at(P_LAST_SYNC_MS).fetch_max(ms.max(0) as u64, Ordering::Relaxed);
    }

    /// The publication count: moves with every [`PartitionState::publish`].
    pub fn published_seq(&self) -> u64 {
        self.page.u64_at(P_SEQ).load(Ordering::Acquire)
    }

    /// A holder died, or failed part-way through changing files (an error or a panic inside the
    /// append lock): the next holder repairs what it left.
    pub fn mark_unfinished(&self) {
        self.page.u64_at(P_REPAIR_NEEDED).store(1, Ordering::Release);
    }

    /// Whether a dead holder's leftovers still need repairing.
    pub fn repair_needed(&self) -> bool {
        self.page.u64_at(P_REPAIR_NEEDED).load(Ordering::Acquire) != 0
    }
}

/// Name of the file holding the consumer groups' coordination state in shared mode.
pub const GROUPS_STATE_FILE: &str = ".groups.state";
const GROUPS_MAGIC: u64 = u64::from_le_bytes(*b"RNLGROUP");
const G_LOCK: usize = 64;
const G_NOTIFY: usize = 128;
const G_COMMITS: usize = 136;
const G_LENS: [usize; 2] = [144, 152];
const G_SLOTS_AT: usize = 4096;
/// Bytes of each of the two slots: room for thousands of members and their assignments.
pub const GROUPS_SLOT_LEN: usize = 1 << 20;
const GROUPS_LEN: usize = G_SLOTS_AT + 2 * GROUPS_SLOT_LEN;

/// A blob of state every process of a directory in shared mode reads and replaces under one
/// robust lock, with a futex word that moves when it changes: the consumer groups' membership
/// and assignments. Replaced in two slots, so a holder killed mid-write leaves the previous
/// state current.
pub struct SharedBlob {
    page: Page,
    path: PathBuf,
}

/// The lock over a [`SharedBlob`], with the current bytes.
pub struct BlobGuard<'a> {
    blob: &'a SharedBlob,
    _lock: LockGuard<'a>,
}

impl SharedBlob {
    /// Creates (or resets) the file and initializes its lock: the first process in, alone.
    pub fn init(dir: &Path) -> io::Result<()> {
        let path = dir.join(GROUPS_STATE_FILE);
        let page = Page::open(&path, GROUPS_LEN, true)?;
        page.robust_lock(G_LOCK).init()?;
        for f in [G_COMMITS, G_LENS[0], G_LENS[1]] {
            page.u64_at(f).store(0, Ordering::Relaxed);
        }
        page.u64_at(MAGIC_AT).store(0, Ordering::Relaxed);
        page.u32_at(VERSION_AT).store(VERSION, Ordering::Relaxed);
        page.u64_at(MAGIC_AT).store(GROUPS_MAGIC, Ordering::Release);
        Ok(())
    }

    /// Maps the file another process initialized.
    pub fn open(dir: &Path) -> io::Result<SharedBlob> {
        let path = dir.join(GROUPS_STATE_FILE);
        let page = Page::open(&path, GROUPS_LEN, true)?;
        page.check(GROUPS_MAGIC, &path, "not initialized by the first process in shared mode")?;
        Ok(SharedBlob { page, path })
    }

    /// Takes the lock.
    pub fn lock(&self) -> io::Result<BlobGuard<'_>> {
        Ok(BlobGuard { blob: self, _lock: self.page.robust_lock(G_LOCK).lock()? })
    }

    /// The futex word's value; pass it to [`SharedBlob::wait`].
    pub fn notify_value(&self) -> u32 {
        self.page.u32_at(G_NOTIFY).load(Ordering::SeqCst)
    }

    /// Sleeps until the state changes after `seen` was loaded, or `timeout` passes.
    pub fn wait(&self, seen: u32, timeout: Duration) {
        sleep_on(self.page.u32_at(G_NOTIFY), seen, timeout);
    }
}

impl BlobGuard<'_> {
    #[expect(unsafe_code, reason = "viewing a slot of a shared mapping as bytes")]
    fn slot(&self, i: usize) -> *mut u8 {
        let _ = &self.blob.page;
        // Bounds: the slot lies inside the mapping (GROUPS_LEN covers both slots).
        debug_assert!(G_SLOTS_AT + (i + 1) * GROUPS_SLOT_LEN <= self.blob.page.len);
        // SAFETY: the offset is inside the mapping (see above), which lives as long as the blob.
        unsafe { self.blob.page.map.as_mut_ptr().add(G_SLOTS_AT + i * GROUPS_SLOT_LEN) }
    }

    /// The current state's bytes (empty before the first write).
    #[expect(unsafe_code, reason = "copying a slot of a shared mapping")]
    pub fn read(&self) -> Vec<u8> {
        let n = self.blob.page.u64_at(G_COMMITS).load(Ordering::Acquire);
        let i = (n & 1) as usize;
        let len = (self.blob.page.u64_at(G_LENS[i]).load(Ordering::Relaxed) as usize).min(GROUPS_SLOT_LEN);
        let mut out = vec![0u8; len];
        // SAFETY: `len` bytes from the slot's start lie inside the slot (clamped). The slot is
        // written only by a holder of the lock, which this guard is, so nothing writes it now.
        unsafe { std::ptr::copy_nonoverlapping(self.slot(i), out.as_mut_ptr(), len) };
        out
    }

    /// Replaces the state with `bytes` (the other slot, then the commit count) and wakes the
    /// processes waiting for a change.
    #[expect(unsafe_code, reason = "copying into a slot of a shared mapping")]
    pub fn write(&self, bytes: &[u8]) -> io::Result<()> {
        if bytes.len() > GROUPS_SLOT_LEN {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "{}: the consumer groups' state needs {} bytes, more than {GROUPS_SLOT_LEN}",
                    self.blob.path.display(),
                    bytes.len()
                ),
            ));
        }
        let n = self.blob.page.u64_at(G_COMMITS).load(Ordering::Relaxed);
        let i = ((n + 1) & 1) as usize;
        // SAFETY: `bytes.len()` fits the slot (checked above); the slot is not the current one,
        // which readers (holders of the lock, only) read; this guard holds the lock.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.slot(i), bytes.len()) };
        self.blob.page.u64_at(G_LENS[i]).store(bytes.len() as u64, Ordering::Relaxed);
        self.blob.page.u64_at(G_COMMITS).store(n + 1, Ordering::Release);
        bump_and_wake(self.blob.page.u32_at(G_NOTIFY));
        Ok(())
    }
}
