//! The shared read-write mode ([`Log::open_shared`]): any number of processes open one data
//! directory for writing at once, as SQLite lets them share a database.
//!
//! Who may be in the directory is decided with file locks, which the kernel releases when a
//! process dies: `.lock` is held exclusively by a writer in exclusive mode and shared by every
//! process in shared mode; `.open.lock` serializes opens and closes, so that the first process in
//! (which recovers the directory and initializes the shared state) and the last one out (which
//! closes it cleanly) are each alone while they do it. Topic changes take `.catalog.lock`, and
//! retention, checkpoints and producer expiry run in whichever process holds
//! `.maintenance.lock` at the time. Appends, the hot path, never make a system call for locking:
//! each partition's append lock is a robust process-shared mutex in its `partition.state` (see
//! `Partition::lock_writer`). docs/DESIGN.md ("Many processes") gives the protocol.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};

use super::{
    CATALOG_FILE, LOCK_FILE, Log, Shared, Topic, TopicMap, config_from, internal_config, lock, names, read_small, seed, validate_catalog,
};
use crate::config::{LogOptions, TopicConfig};
use crate::error::{Error, Result};
use crate::format::meta::{self, Catalog, TopicMeta};
use crate::groups::{CONSUMER_OFFSETS_TOPIC, Groups};
use crate::log::Partition;
use crate::log::partition::{LogEnv, load_shared};
use crate::storage::OpenSegments;
use crate::storage::prefault::Prefaulter;
use crate::storage::shared_state::{DirState, PartitionState};
use crate::storage::vfs::{OsFs, Vfs};

/// Serializes opens and closes of the directory across processes.
pub const OPEN_LOCK_FILE: &str = ".open.lock";
/// Held while a process in shared mode changes the catalog.
pub const CATALOG_LOCK_FILE: &str = ".catalog.lock";
/// Held by a process in shared mode writing to `__consumer_offsets`.
pub const OFFSETS_LOCK_FILE: &str = ".offsets.lock";
/// Held by a process in shared mode allocating a producer id.
pub const PID_LOCK_FILE: &str = ".pid.lock";
/// The next producer id processes in shared mode hand out (u64 little-endian, then its CRC-32).
pub const PID_FILE: &str = "producer-ids";
/// Held by the process in shared mode running a maintenance pass.
pub const MAINTENANCE_LOCK_FILE: &str = ".maintenance.lock";

/// This process's membership of a directory opened in shared mode.
pub(crate) struct Multi {
    /// `.lock`, held shared while this process is a member; taken at close.
    lock: Mutex<Option<File>>,
    pub(crate) dir_state: Arc<DirState>,
    /// The catalog version this process's topic map matches.
    catalog_seen: AtomicU64,
    catalog_lock: File,
    /// Serializes this process's catalog changes: `.catalog.lock` excludes other processes only
    /// (threads share its descriptor).
    changing: Mutex<()>,
    maintenance_lock: File,
    pid_lock: File,
    /// Producer ids this process allocated (an idempotent producer appends from the process that
    /// allocated its id).
    pids: Mutex<std::collections::HashSet<i64>>,
}

/// Opens (creating it) one of the directory's lock files, never through a symbolic link.
pub(crate) fn lock_file(dir: &Path, name: &str) -> Result<File> {
    let path = dir.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))
}

/// Takes `.open.lock`, waiting for another process's open or close to finish.
pub(crate) fn serialize_opens(dir: &Path) -> Result<File> {
    let f = lock_file(dir, OPEN_LOCK_FILE)?;
    f.lock().map_err(|e| Error::io("lock", dir.join(OPEN_LOCK_FILE), e))?;
    Ok(f)
}

/// See [`Log::open_shared`].
pub(crate) fn open(dir: &Path, options: LogOptions) -> Result<Log> {
    options.default_topic_config.validate()?;
    super::create_missing_dirs(&OsFs, dir)?;
    let _serial = serialize_opens(dir)?;
    let dir_lock = lock_file(dir, LOCK_FILE)?;
    let lock_path = dir.join(LOCK_FILE);
    match dir_lock.try_lock() {
        Ok(()) => {
            // Alone: recover as an exclusive writer would, initialize every partition's shared
            // state, then let others in. The conversion to a shared lock is not atomic, but
            // `.open.lock` keeps every other opener out until it is done.
            let log = Log::open_on(dir, options, Arc::new(OsFs), true, true)?;
            dir_lock.lock_shared().map_err(|e| Error::io("lock", &lock_path, e))?;
            let m = log.shared.as_ref().and_then(|s| s.multi.get()).ok_or(Error::Closed)?;
            *lock(&m.lock) = Some(dir_lock);
            Ok(log)
        }
        Err(TryLockError::WouldBlock) => match dir_lock.try_lock_shared() {
            Ok(()) => join(dir, options, dir_lock),
            Err(TryLockError::WouldBlock) => Err(Error::Locked { dir: dir.to_path_buf() }),
            Err(TryLockError::Error(e)) => Err(Error::io("lock", &lock_path, e)),
        },
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &lock_path, e)),
    }
}

impl Multi {
    /// This process's membership: `catalog_version` is the version its topic map was read at;
    /// `held` is `.lock` held shared (the first process in converts its lock and sets it later).
    pub(crate) fn new(dir: &Path, dir_state: Arc<DirState>, catalog_version: u64, held: Option<File>) -> Result<Multi> {
        Ok(Multi {
            lock: Mutex::new(held),
            catalog_seen: AtomicU64::new(catalog_version),
            dir_state,
            catalog_lock: lock_file(dir, CATALOG_LOCK_FILE)?,
            changing: Mutex::new(()),
            maintenance_lock: lock_file(dir, MAINTENANCE_LOCK_FILE)?,
            pid_lock: lock_file(dir, PID_LOCK_FILE)?,
            pids: Mutex::default(),
        })
    }

    /// Holds `.catalog.lock` while `f` changes the catalog, after catching up with changes other
    /// processes made; afterwards this process's topic map matches the new version.
    pub(crate) fn changing_catalog<T>(&self, s: &Shared, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _in_process = lock(&self.changing);
        self.catalog_lock.lock().map_err(|e| Error::io("lock", s.dir.join(CATALOG_LOCK_FILE), e))?;
        let result = refresh_catalog(s, true).and_then(|()| f());
        self.catalog_seen.store(self.dir_state.catalog_version(), Ordering::Release);
        let _ = self.catalog_lock.unlock();
        result
    }

    /// Runs `f` if no other process is running maintenance now.
    pub(crate) fn maintaining(&self, f: impl FnOnce()) {
        if self.maintenance_lock.try_lock().is_ok() {
            f();
            let _ = self.maintenance_lock.unlock();
        }
    }

    /// Allocates a producer id no process of the directory handed out before, in any mode: the
    /// next id from `producer-ids`, rewritten durably under `.pid.lock`.
    pub(crate) fn allocate_pid(&self, s: &Shared) -> Result<i64> {
        // The flock excludes other processes only: threads of this one share its descriptor.
        let mut pids = lock(&self.pids);
        self.pid_lock.lock().map_err(|e| Error::io("lock", s.dir.join(PID_LOCK_FILE), e))?;
        let result = read_pid_floor(&*s.vfs, &s.dir).and_then(|next| {
            super::write_atomic(&*s.vfs, &s.dir, PID_FILE, &encode_pid_floor(next + 1))?;
            Ok(next)
        });
        let _ = self.pid_lock.unlock();
        let pid = i64::try_from(result?).map_err(|_| Error::InvalidArgument("producer ids are exhausted".into()))?;
        pids.insert(pid);
        Ok(pid)
    }

    /// Whether this process allocated `pid`.
    pub(crate) fn allocated(&self, pid: i64) -> bool {
        lock(&self.pids).contains(&pid)
    }

    /// Raises the next producer id in `producer-ids` to at least `floor` (the first process in,
    /// from what the transaction coordinator reserved).
    pub(crate) fn raise_pid_floor(&self, s: &Shared, floor: u64) -> Result<()> {
        if read_pid_floor(&*s.vfs, &s.dir)? < floor {
            super::write_atomic(&*s.vfs, &s.dir, PID_FILE, &encode_pid_floor(floor))?;
        }
        Ok(())
    }

    /// Leaves the directory. Returns whether this process was the last one in, in which case it
    /// holds `.open.lock` and `.lock` exclusively until the returned guard drops, and must close
    /// the files cleanly meanwhile.
    pub(crate) fn leave(&self, dir: &Path) -> Result<Option<(File, File)>> {
        let serial = serialize_opens(dir)?;
        let Some(held) = lock(&self.lock).take() else { return Ok(None) };
        match held.try_lock() {
            Ok(()) => Ok(Some((serial, held))),
            Err(_) => Ok(None),
        }
    }
}

/// Reads, decodes and checks the catalog; `None` when there is none.
pub(crate) fn read_catalog(vfs: &dyn Vfs, dir: &Path, defaults: &TopicConfig) -> Result<Option<Catalog>> {
    let Some(b) = read_small(vfs, &dir.join(CATALOG_FILE), 64 << 20)? else { return Ok(None) };
    let catalog = meta::decode_catalog(&b).map_err(|r| Error::corrupt(dir.join(CATALOG_FILE), 0, r))?;
    validate_catalog(&catalog, defaults).map_err(|r| Error::corrupt(dir.join(CATALOG_FILE), 0, r))?;
    Ok(Some(catalog))
}

/// A later process in: loads the directory as the others left it, changing nothing on disk.
fn join(dir: &Path, options: LogOptions, held: File) -> Result<Log> {
    let vfs: Arc<dyn Vfs> = Arc::new(OsFs);
    // No topic is created or deleted while this process loads them.
    let catalog_lock = lock_file(dir, CATALOG_LOCK_FILE)?;
    catalog_lock.lock_shared().map_err(|e| Error::io("lock", dir.join(CATALOG_LOCK_FILE), e))?;
    let state_path = dir.join(crate::storage::shared_state::DIR_STATE_FILE);
    let dir_state = Arc::new(DirState::create(dir).map_err(|e| Error::io("map", &state_path, e))?);
    // The version before the catalog: a change after this load is noticed again later.
    let catalog_version = dir_state.catalog_version();
    let catalog = read_catalog(&*vfs, dir, &options.default_topic_config)?.ok_or_else(|| {
        Error::corrupt(dir.join(CATALOG_FILE), 0, "another process has the directory open in shared mode, but there is no catalog")
    })?;
    let cache = Arc::new(OpenSegments::new(options.max_open_segments));
    let (prefaulter, prefault) = Prefaulter::start().map_err(|e| Error::io("spawn thread", dir, e))?;
    let env = LogEnv { vfs: vfs.clone(), cache, prefaulter: Some(prefaulter), shared: Arc::default(), multi: true };
    let _ = env.shared.set((dir_state.clone(), dir_state.generation()));
    let mut topics = TopicMap::default();
    for t in &catalog.topics {
        topics.insert(t.name.clone(), joined_topic(&vfs, &env, dir, &options, t)?);
    }
    let offsets = topics
        .get(CONSUMER_OFFSETS_TOPIC)
        .map(|t| t.partition(0))
        .ok_or_else(|| Error::corrupt(dir.join(CATALOG_FILE), 0, "no __consumer_offsets topic"))??;
    let groups = Groups::load(offsets, |t| topics.contains_key(t), Some(lock_file(dir, OFFSETS_LOCK_FILE)?))?;
    let multi = Multi::new(dir, dir_state, catalog_version, Some(held))?;
    drop(catalog_lock);
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        vfs,
        options,
        env,
        lock_file: Mutex::new(None),
        catalog: Mutex::new(catalog),
        topics: RwLock::new(topics),
        groups,
        coordinator: OnceLock::new(),
        coordinator_init: Mutex::new(()),
        closed: Default::default(),
        stop: (Mutex::new(false), Condvar::new()),
        recovery: Mutex::new(Vec::new()),
        clients: Default::default(),
        multi: OnceLock::from(multi),
    });
    Log::writer(shared, prefault)
}

fn topic_config(options: &LogOptions, t: &TopicMeta) -> Result<Arc<TopicConfig>> {
    Ok(Arc::new(if names::is_internal(&t.name) { internal_config(options) } else { config_from(t, &options.default_topic_config)? }))
}

fn joined_topic(vfs: &Arc<dyn Vfs>, env: &LogEnv, dir: &Path, options: &LogOptions, t: &TopicMeta) -> Result<Arc<Topic>> {
    let config = topic_config(options, t)?;
    let name: Arc<str> = Arc::from(t.name.as_str());
    let parts = (0..t.partitions).map(|p| joined_partition(vfs, env, dir, &name, p, &config)).collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Topic {
        name,
        id: t.id,
        config,
        internal: names::is_internal(&t.name),
        partitions: RwLock::new(Arc::new(parts)),
        round_robin: AtomicU32::new(seed()),
    }))
}

/// Loads one partition as the committed writer state in its `partition.state` describes it.
fn joined_partition(
    vfs: &Arc<dyn Vfs>,
    env: &LogEnv,
    dir: &Path,
    topic: &Arc<str>,
    p: u32,
    config: &Arc<TopicConfig>,
) -> Result<Arc<Partition>> {
    let pdir: Arc<Path> = Arc::from(dir.join(format!("{topic}-{p}")));
    if !vfs.is_dir(&pdir) {
        return Err(Error::corrupt(pdir.to_path_buf(), 0, "a partition directory of a catalogued topic is missing or not a directory"));
    }
    let state_path: PathBuf = pdir.join(crate::storage::shared_state::PARTITION_STATE_FILE);
    let state = PartitionState::attach(&pdir).map_err(|e| Error::io("map", &state_path, e))?;
    let (loaded, commits, view, unsynced) = load_shared(vfs, &pdir, config, &state)?;
    let part = Arc::new(Partition::new(topic.clone(), p, pdir, config.clone(), env, loaded));
    let (d, generation) = env.shared.get().ok_or(Error::Closed)?;
    part.attach_multi(d, *generation, state, (commits, view), unsynced);
    Ok(part)
}

/// Catches this process's topic map up with topic changes other processes made: one load when
/// nothing changed. Unless `wait`, skipped while a thread of this process holds the catalog (it
/// is changing it, and may be the caller).
pub(crate) fn refresh_catalog(s: &Shared, wait: bool) -> Result<()> {
    let Some(m) = s.multi.get() else { return Ok(()) };
    let version = m.dir_state.catalog_version();
    if version == m.catalog_seen.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut catalog = if wait {
        lock(&s.catalog)
    } else {
        match s.catalog.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        }
    };
    if version == m.catalog_seen.load(Ordering::Acquire) {
        return Ok(());
    }
    // Under `.catalog.lock` shared, so that no topic is created or deleted while this process
    // loads it; a caller changing the catalog (`wait`) holds it exclusively already (taking it
    // shared on the same descriptor would convert that lock).
    let _shared_lock = if wait {
        None
    } else {
        let f = lock_file(&s.dir, CATALOG_LOCK_FILE)?;
        f.lock_shared().map_err(|e| Error::io("lock", s.dir.join(CATALOG_LOCK_FILE), e))?;
        Some(f)
    };
    let Some(next) = read_catalog(&*s.vfs, &s.dir, &s.options.default_topic_config)? else {
        return Err(Error::corrupt(s.dir.join(CATALOG_FILE), 0, "the catalog disappeared"));
    };
    let current: Vec<(String, Arc<Topic>)> =
        s.topics.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut map = TopicMap::default();
    for t in &next.topics {
        match current.iter().find(|(name, old)| *name == t.name && old.id == t.id) {
            Some((_, old)) => {
                let have = old.partitions().len() as u32;
                if t.partitions > have {
                    let mut list = old.partitions().as_ref().clone();
                    for p in have..t.partitions {
                        list.push(joined_partition(&s.vfs, &s.env, &s.dir, &old.name, p, &old.config)?);
                    }
                    *old.partitions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
                }
                map.insert(t.name.clone(), old.clone());
            }
            None => {
                map.insert(t.name.clone(), joined_topic(&s.vfs, &s.env, &s.dir, &s.options, t)?);
            }
        }
    }
    for (name, old) in &current {
        if map.get(name).is_none_or(|t| !Arc::ptr_eq(t, old)) {
            for p in old.partitions().iter() {
                p.mark_deleted();
            }
        }
    }
    *s.topics.write().unwrap_or_else(|e| e.into_inner()) = map;
    *catalog = next;
    m.catalog_seen.store(version, Ordering::Release);
    Ok(())
}

fn encode_pid_floor(next: u64) -> Vec<u8> {
    let mut b = next.to_le_bytes().to_vec();
    b.extend_from_slice(&crc32fast::hash(&next.to_le_bytes()).to_le_bytes());
    b
}

/// The next producer id shared mode hands out (0 without the file).
pub(crate) fn read_pid_floor(vfs: &dyn Vfs, dir: &Path) -> Result<u64> {
    let path = dir.join(PID_FILE);
    let Some(b) = read_small(vfs, &path, 64)? else { return Ok(0) };
    let (next, crc) = match (b.get(..8), b.get(8..12)) {
        (Some(n), Some(c)) if b.len() == 12 => (n, c),
        _ => return Err(Error::corrupt(path, 0, format!("{} bytes, expected 12", b.len()))),
    };
    if crc32fast::hash(next) != u32::from_le_bytes(crc.try_into().unwrap_or_default()) {
        return Err(Error::corrupt(path, 8, "checksum mismatch"));
    }
    Ok(u64::from_le_bytes(next.try_into().unwrap_or_default()))
}
