//! The data directory: its lock, the topic catalog, partition directories, the recovery-point
//! checkpoint, the clean-shutdown marker, and the background maintenance thread. [`Log`] lives here.

mod multi;
pub mod names;
mod reader;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{Acks, HighWatermark, IsolationLevel, LogOptions, TopicConfig};
use crate::error::{Error, Result};
use crate::format::Record;
use crate::format::batch::ProducerFields;
use crate::format::meta::{self, Catalog, TopicMeta};
use crate::groups::{self, CONSUMER_OFFSETS_TOPIC, Groups, OffsetAndMetadata, OffsetCommit, PartitionLag};
use crate::log::partition::{Loaded, LogEnv, now_ms};
use crate::log::reader as reader_partition;
use crate::log::recovery::{LoadContext, RecoveryReport, load_partition};
use crate::log::{AppendResult, Fetched, Partition};
use crate::partitioner;
use crate::storage::OpenSegments;
use crate::storage::prefault::Prefaulter;
use crate::storage::shared_state::{DIR_STATE_FILE, DirState, wait_until};
use crate::storage::vfs::{OpenMode, OsFs, VFile, Vfs};
use crate::transactions::{
    self, Coordinator, IdempotentProducer, ProducerBatch, TRANSACTION_STATE_TOPIC, TransactionDescription, TransactionOptions,
    TransactionalProducer,
};

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = ".lock";
/// Name of the catalog file.
pub const CATALOG_FILE: &str = "catalog";
/// Name of the recovery-point checkpoint (as Kafka names it).
pub const CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Name of the clean-shutdown marker.
pub const CLEAN_SHUTDOWN_FILE: &str = ".runnel_clean_shutdown";
/// Name of the directory that receives what recovery cuts.
pub const QUARANTINE_DIR: &str = "quarantine";
/// Name of the file in each partition directory that records its topic's id.
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Largest metadata string a committed offset may carry (Kafka's `offset.metadata.max.bytes`).
pub const MAX_OFFSET_METADATA_BYTES: usize = 4096;
/// Most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

pub(crate) struct Topic {
    name: Arc<str>,
    id: u64,
    config: Arc<TopicConfig>,
    internal: bool,
    partitions: RwLock<Arc<Vec<Arc<Partition>>>>,
    round_robin: AtomicU32,
}

impl Topic {
    fn partitions(&self) -> Arc<Vec<Arc<Partition>>> {
        self.partitions.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn partition(&self, p: u32) -> Result<Arc<Partition>> {
        let parts = self.partitions.read().unwrap_or_else(|e| e.into_inner());
        parts.get(p as usize).cloned().ok_or_else(|| Error::unknown(&self.name, Some(p)))
    }
}

/// FNV-1a: topic names are short and chosen by the application, so a simple hash beats SipHash
/// on the append path (a lookup per call) without a denial-of-service concern.
#[derive(Clone, Copy, Default)]
pub(crate) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 { 0xcbf2_9ce4_8422_2325 } else { self.0 };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }
}

type TopicMap = HashMap<String, Arc<Topic>, std::hash::BuildHasherDefault<Fnv>>;

/// A topic and its partitions' offsets, as `describe` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicDescription {
    /// The topic.
    pub name: String,
    /// Whether runnel owns the topic (such as `__consumer_offsets`).
    pub internal: bool,
    /// Its configuration.
    pub config: TopicConfig,
    /// One entry per partition.
    pub partitions: Vec<PartitionDescription>,
}

/// One partition in a [`TopicDescription`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionDescription {
    /// The partition.
    pub partition: u32,
    /// First offset still in the log.
    pub log_start_offset: u64,
    /// End of what readers may see.
    pub high_watermark: u64,
    /// End of what is fsync'd.
    pub durable_offset: u64,
    /// Offset the next record will get.
    pub log_end_offset: u64,
    /// Number of segments.
    pub segment_count: usize,
    /// Bytes in all segments.
    pub size_bytes: u64,
}

/// One partition of a topic, from [`Log::partition_handle`]: the same calls as on [`Log`], without
/// the lookup of topic and partition. Cheap to clone; `Send + Sync`. From a read-only handle its
/// appends and syncs fail with [`Error::ReadOnly`], and its offsets are those the writer published.
#[derive(Clone)]
pub struct PartitionHandle {
    part: HandlePart,
    internal: bool,
}

#[derive(Clone)]
enum HandlePart {
    Writer(Arc<Partition>),
    Reader(Arc<reader_partition::ReaderPartition>),
}

impl std::fmt::Debug for PartitionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionHandle").field("topic", &self.topic()).field("partition", &self.partition()).finish()
    }
}

impl PartitionHandle {
    /// The topic.
    pub fn topic(&self) -> &str {
        match &self.part {
            HandlePart::Writer(p) => &p.topic,
            HandlePart::Reader(p) => &p.topic,
        }
    }

    /// The partition number.
    pub fn partition(&self) -> u32 {
        match &self.part {
            HandlePart::Writer(p) => p.id,
            HandlePart::Reader(p) => p.id,
        }
    }

    fn writer(&self) -> Result<&Arc<Partition>> {
        match &self.part {
            HandlePart::Writer(p) => Ok(p),
            HandlePart::Reader(_) => Err(Error::ReadOnly("this handle was opened read-only".into())),
        }
    }

    /// What the writer last published (read-only handles).
    fn published(p: &reader_partition::ReaderPartition) -> crate::storage::shared_state::Published {
        p.published_or_last()
    }

    /// Appends `records` as one batch; see [`Log::append`].
    pub fn append(&self, records: &[Record<'_>], acks: Acks) -> Result<AppendResult> {
        let part = self.writer()?;
        if self.internal {
            return Err(Error::ReadOnly(format!("internal topic {}", part.topic)));
        }
        part.append(records, acks, ProducerFields::NONE)
    }

    /// Reads from `offset`; see [`Log::fetch`].
    pub fn fetch(&self, offset: u64, max_bytes: u64) -> Result<Fetched> {
        self.fetch_with(offset, max_bytes, IsolationLevel::ReadUncommitted)
    }

    /// Reads from `offset` at an isolation level; see [`Log::fetch_with`].
    pub fn fetch_with(&self, offset: u64, max_bytes: u64, isolation: IsolationLevel) -> Result<Fetched> {
        match &self.part {
            HandlePart::Writer(p) => p.fetch_isolated(offset, max_bytes, isolation),
            HandlePart::Reader(p) => p.fetch_isolated(offset, max_bytes, isolation),
        }
    }

    /// The end of what read_committed readers may see; see [`Log::last_stable_offset`].
    pub fn last_stable_offset(&self) -> u64 {
        match &self.part {
            HandlePart::Writer(p) => p.last_stable_offset(),
            HandlePart::Reader(p) => {
                let s = Self::published(p);
                s.last_stable.min(s.high_watermark)
            }
        }
    }

    /// Waits until every offset below `offset` is fsync'd; see [`Log::sync_to`].
    pub fn sync_to(&self, offset: u64) -> Result<()> {
        let part = self.writer()?;
        part.sync_to(offset.min(part.log_end_offset()))
    }

    /// The first offset still in the partition.
    pub fn log_start_offset(&self) -> u64 {
        match &self.part {
            HandlePart::Writer(p) => p.log_start_offset(),
            HandlePart::Reader(p) => Self::published(p).log_start,
        }
    }

    /// The end of what readers may see.
    pub fn high_watermark(&self) -> u64 {
        match &self.part {
            HandlePart::Writer(p) => p.high_watermark(),
            HandlePart::Reader(p) => Self::published(p).high_watermark,
        }
    }

    /// The end of what is fsync'd (the high watermark, for a read-only handle).
    pub fn durable_offset(&self) -> u64 {
        match &self.part {
            HandlePart::Writer(p) => p.durable_offset(),
            HandlePart::Reader(p) => Self::published(p).high_watermark,
        }
    }

    /// The offset the next appended record will get (the high watermark, for a read-only handle).
    pub fn log_end_offset(&self) -> u64 {
        match &self.part {
            HandlePart::Writer(p) => p.log_end_offset(),
            HandlePart::Reader(p) => Self::published(p).high_watermark,
        }
    }
}

/// One segment of a partition, as [`Log::segments`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Offset of its first record (the file name).
    pub base_offset: u64,
    /// Offset after its last record.
    pub next_offset: u64,
    /// Bytes of complete batches.
    pub size_bytes: u64,
    /// Largest record timestamp, `None` when empty.
    pub max_timestamp: Option<i64>,
    /// `false` for the active segment, the one appends go to.
    pub sealed: bool,
}

/// What sendfile copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendResult {
    /// Bytes written to the descriptor.
    pub bytes: u64,
    /// The offset to continue from.
    pub next_offset: u64,
}

pub(crate) struct Shared {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    options: LogOptions,
    env: LogEnv,
    /// The held `.lock`; released when the log closes, even while handles (producers, partition
    /// handles) outlive it.
    lock_file: Mutex<Option<Arc<dyn VFile>>>,
    catalog: Mutex<Catalog>,
    topics: RwLock<TopicMap>,
    pub(crate) groups: Groups,
    /// The transaction coordinator, once `__transaction_state` exists.
    coordinator: OnceLock<Arc<Coordinator>>,
    /// Serializes the coordinator's lazy creation (its reads need no lock).
    coordinator_init: Mutex<()>,
    closed: AtomicBool,
    stop: (Mutex<bool>, Condvar),
    recovery: Mutex<Vec<(String, u32, RecoveryReport)>>,
    /// This process's consumer groups on the directory, kept while the log lives.
    clients: std::sync::OnceLock<Arc<crate::clients::GroupCoordinator>>,
    /// Shared mode: this process's membership of the directory.
    multi: OnceLock<multi::Multi>,
}

/// An open data directory: topics, their partitioned logs, and consumer-group offsets.
///
/// `Log` is `Send + Sync`; share it between threads with `Arc` or scoped threads. Appends to
/// different partitions run in parallel; readers never wait for a writer's fsync.
///
/// ```
/// use runnel::{Acks, Log, LogOptions, Record, TopicConfig};
/// # fn main() -> runnel::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), LogOptions::default())?;
/// log.create_topic("orders", 3, TopicConfig::default())?;
/// let at = log.append("orders", None, &[Record::new(b"one").with_key(b"customer-7")], Acks::All)?;
/// let fetched = log.fetch("orders", at.partition, at.base_offset, 1 << 20)?;
/// assert_eq!(fetched.records().next().transpose()?.and_then(|r| r.value), Some(&b"one"[..]));
/// log.close()?;
/// # Ok(()) }
/// ```
pub struct Log {
    /// The writer's state; `None` for a handle opened read-only.
    shared: Option<Arc<Shared>>,
    /// The read-only handle's state; `None` for a writer.
    reader: Option<Arc<reader::ReaderShared>>,
    maintenance: Option<JoinHandle<()>>,
    prefault: Option<JoinHandle<()>>,
    /// `false` for a [`Log::view`]: dropping it closes nothing.
    owner: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates `dir` and its missing ancestors.
fn create_missing_dirs(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for a in dir.ancestors() {
        if a.as_os_str().is_empty() || vfs.exists(a) {
            break;
        }
        missing.push(a);
    }
    for a in missing.into_iter().rev() {
        vfs.create_dir(a).map_err(|e| Error::io("create directory", a, e))?;
    }
    Ok(())
}

/// Writes a small file atomically: temp file, fsync, rename over the target, fsync the directory.
fn write_atomic(vfs: &dyn Vfs, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    // Named for the process: in shared mode two processes may write the same file at once (each
    // rename is atomic; the last one wins). Open removes leftovers.
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let path = dir.join(name);
    let f = vfs.open(&tmp, OpenMode::Create).map_err(|e| Error::io("create", &tmp, e))?;
    f.set_len(0).map_err(|e| Error::io("truncate", &tmp, e))?;
    f.write_all_at(bytes, 0).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_data().map_err(|e| Error::io("fdatasync", &tmp, e))?;
    drop(f);
    vfs.rename(&tmp, &path).map_err(|e| Error::io("rename", &tmp, e))?;
    vfs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))
}

fn read_small(vfs: &dyn Vfs, path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let f = match vfs.open(path, OpenMode::Read) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let len = f.len().map_err(|e| Error::io("stat", path, e))?;
    if len > limit {
        return Err(Error::corrupt(path, 0, format!("{len} bytes is larger than such a file can be")));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, 0).map_err(|e| Error::io("read", path, e))?;
    Ok(Some(buf))
}

/// Checks what a catalog says before anything acts on it: a catalog with a valid checksum may still
/// have been written by someone else, and its names become paths.
fn validate_catalog(catalog: &Catalog, defaults: &TopicConfig) -> std::result::Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut ids = std::collections::HashSet::new();
    for t in &catalog.topics {
        let internal = t.name == CONSUMER_OFFSETS_TOPIC || t.name == TRANSACTION_STATE_TOPIC;
        if !internal {
            names::validate_topic_name(&t.name).map_err(|e| format!("topic {:?}: {e}", t.name))?;
            if names::is_internal(&t.name) {
                return Err(format!("topic {:?} uses the reserved \"__\" prefix", t.name));
            }
        }
        if t.partitions == 0 || t.partitions > MAX_PARTITIONS || (internal && t.partitions != 1) {
            return Err(format!("topic {:?} has {} partitions", t.name, t.partitions));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(format!("topic {:?} is listed twice", t.name));
        }
        if !ids.insert(t.id) {
            return Err(format!("topic id {} is used twice", t.id));
        }
        if !internal {
            config_from(t, defaults).map_err(|e| format!("topic {:?}: {e}", t.name))?;
        }
    }
    Ok(())
}

fn config_from(meta: &TopicMeta, defaults: &TopicConfig) -> Result<TopicConfig> {
    let mut c = defaults.clone();
    for (k, v) in &meta.config {
        c.set(k, v)?;
    }
    Ok(c)
}

fn internal_config(options: &LogOptions) -> TopicConfig {
    TopicConfig {
        segment_bytes: options.offsets_topic_segment_bytes,
        max_message_bytes: 8 << 20,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        high_watermark: HighWatermark::Durable,
        ..TopicConfig::default()
    }
}

impl Log {
    /// Opens the data directory `dir`, creating it if needed, and recovers it if it was not closed
    /// cleanly. Fails with [`Error::Locked`] when another handle (in this process or another)
    /// has it open.
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        Self::open_on(dir.as_ref(), options, Arc::new(OsFs), true, false)
    }

    /// Opens the data directory `dir` for writing in shared mode: any number of processes (and
    /// handles) may have it open this way at once, each appending, fetching and changing topics,
    /// while an exclusive writer ([`Log::open`]) is kept out and read-only handles
    /// ([`Log::open_read_only`]) may follow as usual. Creates and recovers the directory when this
    /// is the first process in.
    ///
    /// Appends from every process to a partition land in one total order with contiguous
    /// offsets, each batch atomic; acks mean what they mean in one process, and acks=all
    /// appenders of different processes share fsyncs. Each partition's append lock is a robust
    /// mutex in shared memory, held for the copy only: a process killed while holding it is
    /// detected by the next appender, which cuts what it left half-written (to `quarantine/`)
    /// and goes on. Topic changes are seen by the other processes at their next call. The last
    /// process to close closes the directory cleanly.
    ///
    /// Not yet in shared mode: idempotent and transactional producers, and consumer-group offsets
    /// (those calls fail with [`Error::InvalidArgument`]). Fails with [`Error::Locked`] while an
    /// exclusive writer has the directory open.
    ///
    /// ```
    /// # fn main() -> runnel::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use runnel::{Acks, Log, LogOptions, Record, TopicConfig};
    /// let a = Log::open_shared(dir.path(), LogOptions::default())?;
    /// let b = Log::open_shared(dir.path(), LogOptions::default())?; // another process, typically
    /// a.create_topic("jobs", 1, TopicConfig::default())?;
    /// b.append("jobs", Some(0), &[Record::new(b"from b")], Acks::All)?;
    /// a.append("jobs", Some(0), &[Record::new(b"from a")], Acks::All)?;
    /// let fetched = a.fetch("jobs", 0, 0, 1 << 20)?;
    /// let values: Vec<_> = fetched.records().map(|r| r.map(|r| r.value.unwrap().to_vec())).collect::<Result<_, _>>()?;
    /// assert_eq!(values, [b"from b".to_vec(), b"from a".to_vec()]);
    /// # Ok(()) }
    /// ```
    pub fn open_shared(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        multi::open(dir.as_ref(), options)
    }

    /// Whether this handle was opened with [`Log::open_shared`].
    pub fn is_shared(&self) -> bool {
        self.shared.as_ref().is_some_and(|s| s.multi.get().is_some())
    }

    /// Opens the data directory `dir` read-only, whether or not a writer (in this process or
    /// another) has it open: no lock is taken and nothing in the directory is ever written.
    ///
    /// The handle sees what the writer published: complete batches below each partition's high
    /// watermark, topics as the catalog lists them, committed offsets. It follows the writer as it
    /// appends, rolls segments, applies retention and changes topics, and across the writer's
    /// restarts (a new writer's recovery included); [`Log::fetch_wait`] sleeps until the writer
    /// publishes more. Every call that would change the directory fails with [`Error::ReadOnly`].
    /// The directory must have been opened for writing by this version of runnel at least once
    /// (the writer keeps the shared state files readers follow); otherwise the open fails with
    /// [`Error::Corrupt`] naming the missing file.
    ///
    /// ```
    /// # fn main() -> runnel::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use runnel::{Acks, Log, LogOptions, Record, TopicConfig};
    /// let writer = Log::open(dir.path(), LogOptions::default())?;
    /// writer.create_topic("events", 1, TopicConfig::default())?;
    /// let reader = Log::open_read_only(dir.path(), LogOptions::default())?; // another process, typically
    /// writer.append("events", Some(0), &[Record::new(b"hello")], Acks::All)?;
    /// let fetched = reader.fetch("events", 0, 0, 1 << 20)?;
    /// assert_eq!(fetched.records().next().transpose()?.and_then(|r| r.value), Some(&b"hello"[..]));
    /// assert!(matches!(reader.create_topic("x", 1, TopicConfig::default()), Err(runnel::Error::ReadOnly(_))));
    /// # Ok(()) }
    /// ```
    pub fn open_read_only(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        options.default_topic_config.validate()?;
        let reader = reader::ReaderShared::open(dir.as_ref(), options)?;
        Ok(Log { shared: None, reader: Some(Arc::new(reader)), maintenance: None, prefault: None, owner: true })
    }

    /// Whether this handle was opened with [`Log::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.reader.is_some()
    }

    /// For a read-only handle: whether a writer has the directory open, as its shared state says
    /// (a writer that crashed still counts until the next writer opens). A writer's handle: `true`
    /// until it is closed.
    pub fn writer_active(&self) -> bool {
        match (&self.shared, &self.reader) {
            (Some(s), _) => !s.closed.load(Ordering::Acquire),
            (None, Some(r)) => r.writer_open(),
            (None, None) => false,
        }
    }

    /// The writer's state, or [`Error::ReadOnly`] for a read-only handle.
    /// Another handle on the same open log, for the clients (producers, consumers) that need one
    /// of their own: it reads and writes as `self` does, and closing or dropping it does nothing.
    /// Once the owning handle closes, its calls fail with [`Error::Closed`] (a read-only view keeps
    /// reading, as the read-only handle it shares would).
    pub(crate) fn view(&self) -> Log {
        Log { shared: self.shared.clone(), reader: self.reader.clone(), maintenance: None, prefault: None, owner: false }
    }

    /// The coordinator of this directory's consumer groups: one per directory in a process (a
    /// writer and read-only handles share it), alive while a handle on the directory is; in
    /// shared mode its state is shared with the other processes.
    pub(crate) fn group_coordinator(&self) -> Result<Arc<crate::clients::GroupCoordinator>> {
        let cell = match (&self.shared, &self.reader) {
            (Some(s), _) => &s.clients,
            (None, Some(r)) => &r.clients,
            (None, None) => unreachable!("a log is a writer or a reader"),
        };
        if let Some(c) = cell.get() {
            return Ok(c.clone());
        }
        let c = crate::clients::GroupCoordinator::for_dir(self.dir(), self.is_shared())?;
        Ok(cell.get_or_init(|| c).clone())
    }

    fn w(&self) -> Result<&Arc<Shared>> {
        match &self.shared {
            Some(s) => Ok(s),
            None => Err(Error::ReadOnly("this handle was opened read-only".into())),
        }
    }

    /// Opens `dir` on another file system (feature `fault-injection`): the reliability harness
    /// passes a [`crate::testing::SimFs`].
    #[cfg(feature = "fault-injection")]
    pub fn open_with_vfs(dir: impl AsRef<Path>, options: LogOptions, vfs: Arc<dyn Vfs>) -> Result<Log> {
        Self::open_on(dir.as_ref(), options, vfs, false, false)
    }

    /// Drops the log as a crashed process would (feature `fault-injection`): background threads
    /// stop, nothing is synced, trimmed or marked clean.
    #[cfg(feature = "fault-injection")]
    pub fn abandon(mut self) {
        let Some(s) = self.shared.clone() else { return };
        s.closed.store(true, Ordering::Release);
        self.stop_threads();
        lock(&s.lock_file).take();
    }

    /// `publish`: keep the shared state files readers in other processes follow (the OS file
    /// system only: a simulated one has no shared memory).
    /// `publish`: keep the shared state files (the OS file system). `multi`: the first process
    /// of shared mode, which holds `.lock` and `.open.lock` already.
    fn open_on(dir: &Path, options: LogOptions, vfs: Arc<dyn Vfs>, publish: bool, multi: bool) -> Result<Log> {
        options.default_topic_config.validate()?;
        create_missing_dirs(&*vfs, dir)?;
        let lock_file = if multi {
            None
        } else {
            let lock_path = dir.join(LOCK_FILE);
            let lock_file = vfs.open(&lock_path, OpenMode::Create).map_err(|e| Error::io("open", &lock_path, e))?;
            // Not while a process of shared mode is between its exclusive and shared lock.
            let _serial = if publish { Some(multi::serialize_opens(dir)?) } else { None };
            if !lock_file.try_lock().map_err(|e| Error::io("lock", &lock_path, e))? {
                return Err(Error::Locked { dir: dir.to_path_buf() });
            }
            Some(lock_file)
        };
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = vfs.exists(&marker);
        if clean {
            vfs.remove_file(&marker).map_err(|e| Error::io("unlink", &marker, e))?;
            vfs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
        }
        let stored = read_small(&*vfs, &dir.join(CATALOG_FILE), 64 << 20)?;
        // Without a catalog, only the internal topic's directory may be present (a crash during
        // the very first open); any other partition directory means the catalog was lost.
        let catalog_missing = stored.is_none();
        let catalog = match stored {
            Some(b) => meta::decode_catalog(&b).map_err(|r| Error::corrupt(dir.join(CATALOG_FILE), 0, r))?,
            None => Catalog { next_topic_id: 1, topics: Vec::new() },
        };
        validate_catalog(&catalog, &options.default_topic_config).map_err(|r| Error::corrupt(dir.join(CATALOG_FILE), 0, r))?;
        let checkpoint: HashMap<(String, u32), u64> = match read_small(&*vfs, &dir.join(CHECKPOINT_FILE), 256 << 20) {
            Ok(Some(b)) => match meta::decode_checkpoint(&b) {
                Ok(entries) => entries.into_iter().map(|(t, p, o)| ((t, p), o)).collect(),
                Err(reason) => {
                    log::warn!("{}: ignoring a damaged recovery-point checkpoint ({reason}); verifying every segment", dir.display());
                    HashMap::new()
                }
            },
            _ => HashMap::new(),
        };
        let cache = Arc::new(OpenSegments::new(options.max_open_segments));
        let (prefaulter, prefault) = Prefaulter::start().map_err(|e| Error::io("spawn thread", dir, e))?;
        let env = LogEnv { vfs: vfs.clone(), cache: cache.clone(), prefaulter: Some(prefaulter), shared: Arc::default(), multi };
        let quarantine = dir.join(QUARANTINE_DIR);

        // Partition directories: keep those of catalogued topics, remove those a crashed create or
        // delete left behind (their partition.metadata names a topic id the catalog lacks), and
        // leave anything else alone.
        let by_name: HashMap<&str, &TopicMeta> = catalog.topics.iter().map(|t| (t.name.as_str(), t)).collect();
        for e in vfs.read_dir(dir).map_err(|e| Error::io("read directory", dir, e))? {
            let Some(name) = e.name.to_str() else { continue };
            if name.ends_with(".tmp") && e.is_file {
                let _ = vfs.remove_file(&dir.join(name));
                continue;
            }
            if name.ends_with(CREATING_SUFFIX) && e.is_dir {
                // A partition directory whose creation a crash interrupted: it never held data.
                vfs.remove_dir_all(&dir.join(name)).map_err(|e| Error::io("remove directory", dir.join(name), e))?;
                continue;
            }
            let Some((topic, p)) = names::parse_partition_dir(name) else { continue };
            if !e.is_dir {
                continue;
            }
            let path = dir.join(name);
            let id = read_small(&*vfs, &path.join(PARTITION_METADATA_FILE), 4096)
                .ok()
                .flatten()
                .and_then(|b| meta::decode_partition_metadata(&b));
            let Some(id) = id else { continue };
            if let Some(t) = by_name.get(topic).filter(|t| t.id != id && p < t.partitions) {
                // A crashed create or delete never leaves a directory under a live topic's name
                // with another id: this is damage, and deleting it could destroy data.
                return Err(Error::corrupt(
                    path.join(PARTITION_METADATA_FILE),
                    0,
                    format!("names topic id {id}, but the catalog gives topic {topic:?} id {}", t.id),
                ));
            }
            if catalog_missing && !names::is_internal(topic) {
                return Err(Error::corrupt(
                    dir.join(CATALOG_FILE),
                    0,
                    format!("the catalog is missing but partition directory {name} exists; restore the catalog or move the directory away"),
                ));
            }
            let live = by_name.get(topic).is_some_and(|t| t.id == id && p < t.partitions);
            if !live {
                log::info!("{}: removing {name}, left behind by an interrupted topic create or delete", dir.display());
                vfs.remove_dir_all(&path).map_err(|e| Error::io("remove directory", &path, e))?;
                vfs.sync_dir(dir).map_err(|e| Error::io("fsync", dir, e))?;
            }
        }

        let mut topics = TopicMap::default();
        let mut reports = Vec::new();
        for t in &catalog.topics {
            let internal = names::is_internal(&t.name);
            let config = Arc::new(if internal { internal_config(&options) } else { config_from(t, &options.default_topic_config)? });
            let name: Arc<str> = Arc::from(t.name.as_str());
            let mut parts = Vec::with_capacity(t.partitions as usize);
            for p in 0..t.partitions {
                let pdir: Arc<Path> = Arc::from(dir.join(format!("{}-{p}", t.name)));
                if !vfs.exists(&pdir) {
                    log::warn!("{}: partition directory is missing; starting it empty", pdir.display());
                    create_partition_dir(&*vfs, dir, &pdir, t.id)?;
                } else if !vfs.is_dir(&pdir) {
                    // Never follow a link out of the data directory.
                    return Err(Error::corrupt(pdir.to_path_buf(), 0, "a partition directory that is not a directory (a symbolic link?)"));
                }
                let ctx = LoadContext {
                    vfs: &vfs,
                    dir: pdir.clone(),
                    topic: &t.name,
                    partition: p,
                    config: &config,
                    recovery_point: checkpoint.get(&(t.name.clone(), p)).copied(),
                    clean,
                    quarantine_dir: &quarantine,
                };
                let (loaded, report) = load_partition(&ctx)?;
                if report != RecoveryReport::default() {
                    reports.push((t.name.clone(), p, report));
                }
                parts.push(Arc::new(Partition::new(name.clone(), p, pdir, config.clone(), &env, loaded)));
            }
            topics.insert(
                t.name.clone(),
                Arc::new(Topic {
                    name,
                    id: t.id,
                    config,
                    internal,
                    partitions: RwLock::new(Arc::new(parts)),
                    round_robin: AtomicU32::new(seed()),
                }),
            );
        }
        let mut catalog = catalog;
        if !topics.contains_key(CONSUMER_OFFSETS_TOPIC) {
            let config = Arc::new(internal_config(&options));
            let t = create_topic_files(&*vfs, &vfs, dir, &mut catalog, CONSUMER_OFFSETS_TOPIC, 1, &config, &[], &env)?;
            topics.insert(CONSUMER_OFFSETS_TOPIC.to_string(), t);
        }
        let offsets_partition =
            topics.get(CONSUMER_OFFSETS_TOPIC).map(|t| t.partition(0)).ok_or_else(|| Error::unknown(CONSUMER_OFFSETS_TOPIC, Some(0)))??;
        let offsets_lock = if multi { Some(multi::lock_file(dir, multi::OFFSETS_LOCK_FILE)?) } else { None };
        let groups = Groups::load(offsets_partition, |t| topics.contains_key(t), offsets_lock)?;
        // Transactions a crash left open or half-committed are decided now: no producer of an
        // earlier process is alive to finish them.
        let coordinator = match topics.get(TRANSACTION_STATE_TOPIC).map(|t| t.partition(0)) {
            Some(p) => {
                let c = Coordinator::load(p?)?;
                // Ids processes in shared mode handed out are never handed out again.
                c.raise_pid_floor(multi::read_pid_floor(&*vfs, dir)?);
                Some(Arc::new(c))
            }
            None => None,
        };
        {
            let view = OpenView { topics: &topics, groups: &groups };
            match &coordinator {
                Some(c) => c.recover(&view)?,
                None => {
                    let touched = transactions::abort_open_transactions(&view)?;
                    let targets: Vec<_> = touched.into_iter().map(|p| (p.clone(), p.log_end_offset())).collect();
                    transactions::sync_parallel(&targets)?;
                }
            }
        }

        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            vfs,
            options,
            env,
            lock_file: Mutex::new(lock_file),
            catalog: Mutex::new(catalog),
            topics: RwLock::new(topics),
            groups,
            coordinator: coordinator.map(OnceLock::from).unwrap_or_default(),
            coordinator_init: Mutex::new(()),
            closed: AtomicBool::new(false),
            stop: (Mutex::new(false), Condvar::new()),
            recovery: Mutex::new(reports),
            clients: Default::default(),
            multi: OnceLock::new(),
        });
        if publish {
            // Readers in other processes: each partition publishes its offsets, then a new writer
            // generation tells them to look again at what this open recovered. Only now, so that a
            // failed open leaves the directory as it found it.
            match DirState::create(dir) {
                Ok(d) => {
                    let d = Arc::new(d);
                    let generation = d.generation() + 1;
                    let _ = shared.env.shared.set((d.clone(), generation));
                    for t in shared.topics.read().unwrap_or_else(|e| e.into_inner()).values() {
                        for p in t.partitions().iter() {
                            if multi {
                                p.init_shared(&d, generation)?;
                            } else {
                                p.attach_shared(&d, generation);
                            }
                        }
                    }
                    if multi {
                        let m = multi::Multi::new(dir, d.clone(), d.catalog_version(), None)?;
                        if let Some(c) = shared.coordinator.get() {
                            m.raise_pid_floor(&shared, c.reserved_pids())?;
                        }
                        let _ = shared.multi.set(m);
                        crate::storage::shared_state::SharedBlob::init(dir)
                            .map_err(|e| Error::io("map", dir.join(crate::storage::shared_state::GROUPS_STATE_FILE), e))?;
                    }
                    d.begin_writer();
                }
                Err(e) if multi => return Err(Error::io("map", dir.join(DIR_STATE_FILE), e)),
                Err(e) => log::warn!("{}: cannot create {DIR_STATE_FILE} ({e}); readers in other processes cannot attach", dir.display()),
            }
        }
        Log::writer(shared, prefault)
    }

    /// A writer's handle on `shared`, with its maintenance thread started (unless the options
    /// turn it off) and its prefault thread.
    fn writer(shared: Arc<Shared>, prefault: JoinHandle<()>) -> Result<Log> {
        let maintenance = if shared.options.background {
            let s = shared.clone();
            Some(
                std::thread::Builder::new()
                    .name("runnel-maintenance".into())
                    .spawn(move || maintenance_loop(&s))
                    .map_err(|e| Error::io("spawn thread", &shared.dir, e))?,
            )
        } else {
            None
        };
        Ok(Log { shared: Some(shared), reader: None, maintenance, prefault: Some(prefault), owner: true })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        match (&self.shared, &self.reader) {
            (Some(s), _) => &s.dir,
            (None, Some(r)) => &r.dir,
            (None, None) => Path::new(""),
        }
    }

    /// What recovery found and cut when this handle opened the directory, per partition (empty
    /// after a clean shutdown or when nothing needed repair).
    pub fn recovery_report(&self) -> Vec<(String, u32, RecoveryReport)> {
        self.shared.as_ref().map(|s| lock(&s.recovery).clone()).unwrap_or_default()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.w()?.topic_map()?.get(name).cloned().ok_or_else(|| Error::unknown(name, None))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let topics = self.w()?.topic_map()?;
        topics.get(topic).ok_or_else(|| Error::unknown(topic, None))?.partition(partition)
    }

    /// Creates a topic with `partitions` partitions. Keys of `config` that differ from Kafka's
    /// defaults ([`TopicConfig::default`]) are the topic's own; the others follow the log's default
    /// topic config ([`LogOptions::default_topic_config`]). The topic's metadata is durable when
    /// this returns.
    pub fn create_topic(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<()> {
        names::validate_topic_name(name)?;
        if names::is_internal(name) {
            return Err(Error::InvalidTopic {
                name: name.to_string(),
                reason: "names starting with \"__\" are reserved for internal topics",
            });
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(Error::InvalidArgument(format!("partition count must be between 1 and {MAX_PARTITIONS}, not {partitions}")));
        }
        config.validate()?;
        let s = self.w()?;
        s.changing_catalog(|| self.create_topic_locked(name, partitions, config))
    }

    fn create_topic_locked(&self, name: &str, partitions: u32, config: TopicConfig) -> Result<()> {
        let s = self.w()?;
        let mut catalog = lock(&s.catalog);
        if s.topics.read().unwrap_or_else(|e| e.into_inner()).contains_key(name) {
            return Err(Error::TopicExists { topic: name.to_string() });
        }
        // Keys the caller changed from Kafka's defaults override the log's default topic config;
        // only those are stored, so the topic follows the log's defaults for the rest.
        let overrides: Vec<(String, String)> = config.overrides().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let meta = TopicMeta { id: 0, name: name.to_string(), partitions, config: overrides.clone() };
        let effective = config_from(&meta, &s.options.default_topic_config)?;
        let topic = create_topic_files(&*s.vfs, &s.vfs, &s.dir, &mut catalog, name, partitions, &Arc::new(effective), &overrides, &s.env)?;
        s.topics.write().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), topic);
        // A checkpoint entry left by an earlier topic of the same name must not vouch for this one.
        write_checkpoint(s)
    }

    /// Deletes a topic: its partitions' files and its committed offsets. Nothing of it remains.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        self.w()?.changing_catalog(|| self.delete_topic_locked(name))
    }

    fn delete_topic_locked(&self, name: &str) -> Result<()> {
        let s = self.w()?;
        let mut catalog = lock(&s.catalog);
        let topic = s.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned().ok_or_else(|| Error::unknown(name, None))?;
        if topic.internal {
            return Err(Error::ReadOnly(format!("internal topic {name}")));
        }
        // Forget the committed offsets first: a crash between the two steps then leaves the topic
        // without offsets rather than offsets that outlive the topic.
        s.groups.forget_topic(name)?;
        let mut next = catalog.clone();
        next.topics.retain(|t| t.name != name);
        write_atomic(&*s.vfs, &s.dir, CATALOG_FILE, &meta::encode_catalog(&next))?;
        *catalog = next;
        s.env.catalog_changed();
        s.topics.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        for p in topic.partitions().iter() {
            p.mark_deleted();
            let dir = p.path();
            s.vfs.remove_dir_all(&dir).map_err(|e| Error::io("remove directory", &dir, e))?;
        }
        s.vfs.sync_dir(&s.dir).map_err(|e| Error::io("fsync", &s.dir, e))?;
        write_checkpoint(s)
    }

    /// Names of all topics, internal ones included, sorted.
    pub fn list_topics(&self) -> Vec<String> {
        let Some(shared) = &self.shared else {
            return self.reader.as_ref().and_then(|r| r.topic_names().ok()).unwrap_or_default();
        };
        let mut v: Vec<String> = shared.topic_map_or_last().keys().cloned().collect();
        v.sort();
        v
    }

    /// A topic's configuration and each partition's offsets and size.
    pub fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        if let Some(r) = &self.reader {
            let t = r.topic(name)?;
            let mut partitions = Vec::with_capacity(t.partitions.len());
            for p in &t.partitions {
                let published = p.published()?;
                let segs = p.segments()?;
                partitions.push(PartitionDescription {
                    partition: p.id,
                    log_start_offset: published.log_start,
                    // A reader knows only what the writer published.
                    high_watermark: published.high_watermark,
                    durable_offset: published.high_watermark,
                    log_end_offset: published.high_watermark,
                    segment_count: segs.len(),
                    size_bytes: segs.iter().map(|s| s.size()).sum(),
                });
            }
            return Ok(TopicDescription { name: name.to_string(), internal: t.internal, config: (*t.config).clone(), partitions });
        }
        let t = self.topic(name)?;
        let partitions = t
            .partitions()
            .iter()
            .map(|p| {
                let (segment_count, size_bytes) = p.segment_stats();
                PartitionDescription {
                    partition: p.id,
                    log_start_offset: p.log_start_offset(),
                    high_watermark: p.high_watermark(),
                    durable_offset: p.durable_offset(),
                    log_end_offset: p.log_end_offset(),
                    segment_count,
                    size_bytes,
                }
            })
            .collect();
        Ok(TopicDescription { name: name.to_string(), internal: t.internal, config: (*t.config).clone(), partitions })
    }

    /// Number of partitions of a topic.
    pub fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(r) = &self.reader {
            return Ok(r.topic(topic)?.partitions.len() as u32);
        }
        Ok(self.topic(topic)?.partitions().len() as u32)
    }

    /// Raises a topic's partition count to `partitions`. Kafka cannot decrease it and neither
    /// can runnel: a lower or equal count is refused.
    pub fn add_partitions(&self, name: &str, partitions: u32) -> Result<()> {
        self.w()?.changing_catalog(|| self.add_partitions_locked(name, partitions))
    }

    fn add_partitions_locked(&self, name: &str, partitions: u32) -> Result<()> {
        let s = self.w()?;
        let mut catalog = lock(&s.catalog);
        let topic = s.topics.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned().ok_or_else(|| Error::unknown(name, None))?;
        if topic.internal {
            return Err(Error::ReadOnly(format!("internal topic {name}")));
        }
        let current = topic.partitions().len() as u32;
        if partitions <= current {
            return Err(Error::InvalidArgument(format!(
                "topic {name} has {current} partitions; the count can only be increased, not set to {partitions}"
            )));
        }
        if partitions > MAX_PARTITIONS {
            return Err(Error::InvalidArgument(format!("partition count must be at most {MAX_PARTITIONS}")));
        }
        let mut new_parts = Vec::new();
        for p in current..partitions {
            new_parts.push(new_partition(&*s.vfs, &s.vfs, &s.dir, &topic.name, topic.id, p, &topic.config, &s.env)?);
        }
        s.vfs.sync_dir(&s.dir).map_err(|e| Error::io("fsync", &s.dir, e))?;
        let mut next = catalog.clone();
        if let Some(t) = next.topics.iter_mut().find(|t| t.name == name) {
            t.partitions = partitions;
        }
        write_atomic(&*s.vfs, &s.dir, CATALOG_FILE, &meta::encode_catalog(&next))?;
        *catalog = next;
        s.env.catalog_changed();
        let mut list = topic.partitions().as_ref().clone();
        list.extend(new_parts);
        *topic.partitions.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(list);
        Ok(())
    }

    /// The partition the default partitioner picks for a record with this key: murmur2 of the key
    /// (the same partition number Kafka would pick), or round-robin without a key. Without a key
    /// this takes the next turn of the topic's round-robin, as an append would.
    pub fn partition_for(&self, topic: &str, key: Option<&[u8]>) -> Result<u32> {
        let t = self.topic(topic)?;
        Ok(choose_partition(&t, key))
    }

    /// Appends `records` as one batch to one partition, atomically: after any crash either the
    /// whole batch is in the log or none of it is.
    ///
    /// The partition is `partition` when given; otherwise the default partitioner applies to the
    /// first record's key (see [`Log::partition_for`]). `acks` says when the call returns and so
    /// what survives a crash (see [`Acks`]).
    pub fn append(&self, topic: &str, partition: Option<u32>, records: &[Record<'_>], acks: Acks) -> Result<AppendResult> {
        let part = {
            let topics = self.w()?.topic_map()?;
            let t = topics.get(topic).ok_or_else(|| Error::unknown(topic, None))?;
            if t.internal {
                return Err(Error::ReadOnly(format!("internal topic {topic}")));
            }
            let p = match partition {
                Some(p) => p,
                None => choose_partition(t, records.first().and_then(|r| r.key)),
            };
            t.partition(p)?
        };
        part.append(records, acks, ProducerFields::NONE)
    }

    /// Appends `records` as one batch from an idempotent producer, at the producer's sequence
    /// number (Kafka's produce request with `enable.idempotence`). A retry of one of the
    /// producer's last five batches to the partition returns the offsets where it was stored and
    /// stores nothing; a batch that skips sequence numbers is refused with
    /// [`Error::OutOfOrderSequence`], one from an older epoch with [`Error::ProducerFenced`].
    /// [`Log::idempotent_producer`] keeps the sequence numbers for you.
    pub fn append_idempotent(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &[Record<'_>],
        acks: Acks,
        producer: ProducerBatch,
    ) -> Result<AppendResult> {
        let s = self.w()?;
        let allocated = match s.multi.get() {
            Some(m) => m.allocated(producer.producer_id),
            None => s.coordinator.get().is_some_and(|c| c.allocated(producer.producer_id)),
        };
        if !allocated || producer.producer_epoch < 0 || producer.base_sequence < 0 {
            return Err(Error::InvalidArgument(format!(
                "producer id {} (epoch {}, sequence {}) was not allocated by this log; use allocate_producer_id",
                producer.producer_id, producer.producer_epoch, producer.base_sequence
            )));
        }
        let part = self.w()?.resolve(topic, partition, records)?;
        let fields = ProducerFields {
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
            base_sequence: producer.base_sequence,
            transactional: false,
        };
        part.append(records, acks, fields)
    }

    /// Allocates a producer id for [`Log::append_idempotent`] (epoch 0): never handed out before
    /// by this data directory, across restarts and crashes.
    pub fn allocate_producer_id(&self) -> Result<i64> {
        let s = self.w()?;
        match s.multi.get() {
            Some(m) => m.allocate_pid(s),
            None => s.coordinator()?.allocate_pid(),
        }
    }

    /// An idempotent producer: its retried sends are stored once (Kafka's `enable.idempotence`).
    pub fn idempotent_producer(&self) -> Result<IdempotentProducer> {
        let pid = self.allocate_producer_id()?;
        Ok(IdempotentProducer::new(self.w()?.clone(), pid))
    }

    /// A transactional producer for `transactional_id`: the same producer id as its previous
    /// incarnation with the next epoch. Whatever that incarnation left open is aborted, and the
    /// incarnation is fenced: its next call fails with [`Error::ProducerFenced`].
    pub fn transactional_producer(&self, transactional_id: &str, options: TransactionOptions) -> Result<TransactionalProducer> {
        let coordinator = self.w()?.coordinator()?;
        let timeout = u32::try_from(options.timeout.as_millis()).unwrap_or(u32::MAX);
        let (entry, pid, epoch) = coordinator.init(&**self.w()?, transactional_id, timeout)?;
        Ok(TransactionalProducer::new(self.w()?.clone(), coordinator, entry, pid, epoch))
    }

    /// Every transactional id this log knows, with its state, sorted (the equivalent of
    /// `kafka-transactions.sh list`). Empty on a read-only handle: an open transaction's state
    /// lives in the writer's coordinator and is recorded in `__transaction_state` only when it is
    /// decided, so a reader could not tell open transactions apart (Kafka's tool likewise asks the
    /// coordinator, not the log).
    pub fn list_transactions(&self) -> Vec<TransactionDescription> {
        let Some(shared) = &self.shared else { return Vec::new() };
        shared.coordinator.get().map(|c| c.describe_all()).unwrap_or_default()
    }

    /// One transactional id's state, or `None` if the log has never seen it (always `None` on a
    /// read-only handle; see [`Log::list_transactions`]).
    pub fn describe_transaction(&self, transactional_id: &str) -> Option<TransactionDescription> {
        self.shared.as_ref()?.coordinator.get().and_then(|c| c.entry(transactional_id)).and_then(|e| e.describe())
    }

    /// Aborts a transactional id's open transaction and fences its producer, as an operator does
    /// with `kafka-transactions.sh abort` for a hanging transaction. Waits for a call of that
    /// producer in progress to finish. Returns whether a transaction was open.
    pub fn abort_transaction(&self, transactional_id: &str) -> Result<bool> {
        let Some(c) = self.w()?.coordinator.get().cloned() else { return Ok(false) };
        let Some(entry) = c.entry(transactional_id) else { return Ok(false) };
        let mut inner = entry.inner.lock().unwrap_or_else(|e| e.into_inner());
        c.abort_and_fence(&**self.w()?, transactional_id, &mut inner)
    }

    /// A handle on one partition. Appends and fetches through it skip the topic lookup, which
    /// matters in a loop of small appends. The handle stays valid while the topic exists and the
    /// log is open; afterwards its calls fail with [`Error::UnknownTopicOrPartition`] or
    /// [`Error::Closed`].
    ///
    /// ```
    /// # fn main() -> runnel::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
    /// # log.create_topic("t", 2, runnel::TopicConfig::default())?;
    /// let p1 = log.partition_handle("t", 1)?;
    /// for i in 0..10u8 {
    ///     p1.append(&[runnel::Record::new(&[i])], runnel::Acks::One)?;
    /// }
    /// p1.sync_to(p1.log_end_offset())?;
    /// assert_eq!(p1.high_watermark(), 10);
    /// # Ok(()) }
    /// ```
    pub fn partition_handle(&self, topic: &str, partition: u32) -> Result<PartitionHandle> {
        if let Some(r) = &self.reader {
            let t = r.topic(topic)?;
            let part = t.partitions.get(partition as usize).cloned().ok_or_else(|| Error::unknown(topic, Some(partition)))?;
            return Ok(PartitionHandle { part: HandlePart::Reader(part), internal: t.internal });
        }
        let topics = self.w()?.topic_map()?;
        let t = topics.get(topic).ok_or_else(|| Error::unknown(topic, None))?;
        Ok(PartitionHandle { part: HandlePart::Writer(t.partition(partition)?), internal: t.internal })
    }

    /// Reads complete batches from `offset` on, up to about `max_bytes` (at least one batch is
    /// returned when any is available), as zero-copy views. `offset` may point inside a batch.
    /// Only records below the high watermark are returned. An offset outside
    /// `[log start offset, high watermark]` is [`Error::OffsetOutOfRange`].
    pub fn fetch(&self, topic: &str, partition: u32, offset: u64, max_bytes: u64) -> Result<Fetched> {
        self.fetch_with(topic, partition, offset, max_bytes, IsolationLevel::ReadUncommitted)
    }

    /// Fetches as [`Log::fetch_with`] does, first waiting up to `timeout` for records at `offset`
    /// if there are none yet (Kafka's `fetch.max.wait.ms`). Returns as soon as the writer
    /// publishes them, in this process or another; an empty [`Fetched`] when the time runs out.
    ///
    /// In a read-only handle the wait sleeps on a futex in the directory's shared state file,
    /// which the writer wakes when it publishes (at most every 50 µs while it appends; a wake
    /// skipped then is noticed within 1 ms). A writer opened with [`Log::open`] waits on the same
    /// word, and wakes its own process's waiters at every publication, unpaced.
    pub fn fetch_wait(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u64,
        isolation: IsolationLevel,
        timeout: std::time::Duration,
    ) -> Result<Fetched> {
        self.wait_any(&[(topic, partition, offset)], isolation, timeout, || false)?;
        self.fetch_with(topic, partition, offset, max_bytes, isolation)
    }

    /// Waits until one of `wanted` (topic, partition, offset) has records at or after its offset
    /// visible at `isolation`, `stop` answers `true`, or `timeout` passes; whichever process
    /// writes. A partition that is gone counts as ready (the fetch that follows reports it).
    pub(crate) fn wait_any(
        &self,
        wanted: &[(&str, u32, u64)],
        isolation: IsolationLevel,
        timeout: std::time::Duration,
        mut stop: impl FnMut() -> bool,
    ) -> Result<bool> {
        if let Some(r) = &self.reader {
            return r.wait_any(wanted, isolation, timeout, stop);
        }
        let s = self.w()?;
        let parts: Vec<(Option<Arc<Partition>>, u64)> = wanted.iter().map(|&(t, p, o)| (self.partition(t, p).ok(), o)).collect();
        wait_until(s.env.shared.get().map(|(d, _)| &**d), timeout, || {
            for (p, offset) in &parts {
                let Some(p) = p else { return Ok(true) };
                let end = match isolation {
                    IsolationLevel::ReadUncommitted => p.high_watermark(),
                    IsolationLevel::ReadCommitted => p.last_stable_offset(),
                };
                if end > *offset || p.is_deleted() {
                    return Ok(true);
                }
            }
            Ok(stop())
        })
    }

    /// Copies the raw bytes of the batches a [`Log::fetch`] with the same arguments would return
    /// to `out` with sendfile(2), without passing them through user space.
    ///
    /// `out` should be in blocking mode: if sendfile fails part way (for example `EAGAIN` on a
    /// non-blocking socket) the call returns the error and part of the range may have been sent.
    pub fn send_to(&self, topic: &str, partition: u32, offset: u64, max_bytes: u64, out: impl AsFd) -> Result<SendResult> {
        let fetched = self.fetch(topic, partition, offset, max_bytes)?;
        let (file, start, len) = match fetched.file_range() {
            Some(r) => r,
            None => return Ok(SendResult { bytes: 0, next_offset: fetched.next_offset() }),
        };
        let fd = file.fd().ok_or_else(|| Error::InvalidArgument("this file system has no descriptors for sendfile".into()))?;
        let mut pos = start;
        let end = start + len;
        while pos < end {
            let want = (end - pos) as usize;
            let n = rustix::fs::sendfile(out.as_fd(), fd, Some(&mut pos), want)
                .map_err(|e| Error::io("sendfile", self.dir().join(format!("{topic}-{partition}")), e.into()))?;
            if n == 0 {
                break;
            }
        }
        Ok(SendResult { bytes: pos - start, next_offset: fetched.next_offset() })
    }

    /// Reads as [`Log::fetch`] does, at an isolation level. With
    /// [`IsolationLevel::ReadCommitted`] only committed records are returned: the fetch stops at
    /// the last stable offset (an offset between it and the high watermark gives an empty result,
    /// not an error), and [`Fetched::records`] skips the records of aborted transactions.
    pub fn fetch_with(&self, topic: &str, partition: u32, offset: u64, max_bytes: u64, isolation: IsolationLevel) -> Result<Fetched> {
        if let Some(r) = &self.reader {
            return r.fetch(topic, partition, offset, max_bytes, isolation);
        }
        self.partition(topic, partition)?.fetch_isolated(offset, max_bytes, isolation)
    }

    /// The last stable offset: the end of what read_committed readers may see (the high
    /// watermark, unless a transaction is open below it). Kafka's "latest" for read_committed.
    pub fn last_stable_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.last_stable_offset();
        }
        Ok(self.partition(topic, partition)?.last_stable_offset())
    }

    /// The partition's segments, oldest first.
    pub fn segments(&self, topic: &str, partition: u32) -> Result<Vec<SegmentInfo>> {
        let segs = match &self.reader {
            Some(r) => r.partition(topic, partition)?.segments()?,
            None => self.partition(topic, partition)?.segments(),
        };
        Ok(segs
            .iter()
            .map(|s| SegmentInfo {
                base_offset: s.base_offset,
                next_offset: s.next_offset(),
                size_bytes: s.size(),
                max_timestamp: (s.max_timestamp() != i64::MIN).then(|| s.max_timestamp()),
                sealed: s.is_sealed(),
            })
            .collect())
    }

    /// The first offset still in the partition (Kafka's "earliest").
    pub fn log_start_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.log_start_offset();
        }
        Ok(self.partition(topic, partition)?.log_start_offset())
    }

    /// The end of what readers may see (Kafka's "latest").
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.high_watermark();
        }
        Ok(self.partition(topic, partition)?.high_watermark())
    }

    /// The offset the next appended record will get.
    pub fn log_end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.high_watermark();
        }
        Ok(self.partition(topic, partition)?.log_end_offset())
    }

    /// The end of what is fsync'd: offsets below it survive a power loss.
    pub fn durable_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.high_watermark();
        }
        Ok(self.partition(topic, partition)?.durable_offset())
    }

    /// The first offset whose timestamp is at or after `timestamp` (ms since the epoch), with its
    /// timestamp; `None` when every visible record is older (Kafka's offsetsForTimes).
    pub fn offset_for_timestamp(&self, topic: &str, partition: u32, timestamp: i64) -> Result<Option<(u64, i64)>> {
        if let Some(r) = &self.reader {
            return r.partition(topic, partition)?.offset_for_timestamp(timestamp);
        }
        self.partition(topic, partition)?.offset_for_timestamp(timestamp)
    }

    /// Waits until every offset below `offset` in the partition is fsync'd, syncing if needed:
    /// acks=1 writers use it to pick their own moment to make a run of appends durable.
    pub fn sync_to(&self, topic: &str, partition: u32, offset: u64) -> Result<()> {
        let p = self.partition(topic, partition)?;
        p.sync_to(offset.min(p.log_end_offset()))
    }

    /// Syncs every partition with unsynced data.
    pub fn sync_all(&self) -> Result<()> {
        self.w()?;
        for p in self.all_partitions() {
            p.sync()?;
        }
        Ok(())
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let Some(shared) = &self.shared else { return Vec::new() };
        let topics = shared.topic_map_or_last();
        topics.values().flat_map(|t| t.partitions().iter().cloned().collect::<Vec<_>>()).collect()
    }

    /// Applies `retention.ms` and `retention.bytes` now, and forgets producers idle longer than
    /// `producer.id.expiration.ms` (the background thread does both every
    /// `log.retention.check.interval.ms`). Returns the number of segments deleted.
    pub fn run_retention(&self) -> Result<usize> {
        let n = run_retention(self.w()?)?;
        expire_producers(self.w()?, now_ms());
        Ok(n)
    }

    /// Commits offsets for a consumer group, durably (fsync'd) and atomically: after a crash
    /// either every offset of the call is committed or none is.
    pub fn commit_offsets(&self, group: &str, offsets: &[OffsetCommit<'_>]) -> Result<()> {
        // Under the catalog lock, so that a topic cannot be deleted between the check and the write.
        let _catalog = lock(&self.w()?.catalog);
        self.w()?.check_offset_commits(group, offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        self.w()?.groups.commit(group, offsets)
    }

    /// The offset a group last committed for a partition.
    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<OffsetAndMetadata>> {
        if let Some(r) = &self.reader {
            r.partition(topic, partition)?;
            return r.with_offsets(|o| o.committed(group, topic, partition));
        }
        self.partition(topic, partition)?;
        self.w()?.groups.committed(group, topic, partition)
    }

    /// Groups with committed offsets, sorted.
    pub fn list_groups(&self) -> Vec<String> {
        match (&self.shared, &self.reader) {
            (Some(s), _) => s.groups.list().unwrap_or_default(),
            (None, Some(r)) => r.with_offsets(|o| o.state.keys().cloned().collect()).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// For each partition a group has committed: the committed offset, the high watermark and
    /// the lag between them.
    pub fn group_lag(&self, group: &str) -> Result<Vec<PartitionLag>> {
        let mut out = Vec::new();
        let committed = match &self.reader {
            Some(r) => r.with_offsets(|o| o.all_committed(group))?,
            None => self.w()?.groups.all_committed(group)?,
        };
        for (topic, partition, c) in committed {
            let Ok(hw) = self.high_watermark(&topic, partition) else { continue };
            out.push(PartitionLag { topic, partition, committed: c.offset, high_watermark: hw, lag: hw.saturating_sub(c.offset) });
        }
        Ok(out)
    }

    /// Deletes a group's committed offsets. Returns whether the group existed.
    pub fn delete_group(&self, group: &str) -> Result<bool> {
        names::validate_group(group)?;
        self.w()?.groups.delete_group(group)
    }

    /// Number of sealed segments currently mapped (bounded by `max_open_segments`).
    pub fn open_segment_count(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.env.cache.len())
    }

    /// Closes the log cleanly: syncs every partition, trims active segments, writes indexes, the
    /// recovery-point checkpoint and the clean-shutdown marker, so the next open needs no scan.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn stop_threads(&mut self) {
        let Some(s) = self.shared.clone() else { return };
        {
            let (m, cv) = &s.stop;
            *lock(m) = true;
            cv.notify_all();
        }
        if let Some(h) = self.maintenance.take() {
            let _ = h.join();
        }
        if let Some(p) = &s.env.prefaulter {
            p.stop();
        }
        if let Some(h) = self.prefault.take() {
            let _ = h.join();
        }
    }

    fn shutdown(&mut self) -> Result<()> {
        if !self.owner {
            return Ok(());
        }
        let Some(shared) = self.shared.clone() else { return Ok(()) };
        if shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_threads();
        if let Some(m) = shared.multi.get() {
            // Shared mode: the last process out closes the files cleanly; the others only sync
            // what they wrote and leave. Stop appending and sync first: the last process may trim the files once this one
            // has left.
            let mut first_err = None;
            for p in self.all_partitions() {
                if let Err(e) = p.leave() {
                    first_err.get_or_insert(e);
                }
            }
            if let Some(_alone) = m.leave(&shared.dir)? {
                let result = self.close_files();
                m.dir_state.end_writer();
                result?;
            }
            return first_err.map_or(Ok(()), Err);
        }
        let result = self.close_files();
        if let Some((d, _)) = shared.env.shared.get() {
            d.end_writer();
        }
        // Handles that outlive the log (producers, partition handles) refuse further use; the
        // directory is free for the next opener either way.
        lock(&shared.lock_file).take();
        result
    }

    fn close_files(&mut self) -> Result<()> {
        let s = self.w()?;
        let mut first_err = None;
        for p in self.all_partitions() {
            if let Err(e) = p.close() {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        write_checkpoint(s)?;
        let marker = s.dir.join(CLEAN_SHUTDOWN_FILE);
        let f = s.vfs.open(&marker, OpenMode::Create).map_err(|e| Error::io("create", &marker, e))?;
        f.sync_data().map_err(|e| Error::io("fdatasync", &marker, e))?;
        s.vfs.sync_dir(&s.dir).map_err(|e| Error::io("fsync", &s.dir, e))
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.dir()).field("read_only", &self.is_read_only()).finish_non_exhaustive()
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("{}: closing the log failed: {e}; the next open will recover", self.dir().display());
        }
    }
}

impl Shared {
    /// The topic map; in shared mode first caught up with topic changes of other processes (an
    /// error doing so, such as a damaged catalog or shared state, is the caller's).
    fn topic_map(&self) -> Result<std::sync::RwLockReadGuard<'_, TopicMap>> {
        multi::refresh_catalog(self, false)?;
        Ok(self.topics.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The topic map as far as this process could follow it (for calls that cannot fail).
    fn topic_map_or_last(&self) -> std::sync::RwLockReadGuard<'_, TopicMap> {
        if let Err(e) = multi::refresh_catalog(self, false) {
            log::error!("{}: cannot follow the topic changes of other processes: {e}", self.dir.display());
        }
        self.topics.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses what shared mode does not do yet.
    fn single_process(&self, what: &str) -> Result<()> {
        if self.multi.get().is_some() {
            return Err(Error::InvalidArgument(format!("{what} is not available in shared mode yet (open the directory with Log::open)")));
        }
        Ok(())
    }

    /// Runs a catalog change: in shared mode under `.catalog.lock`, after catching up.
    fn changing_catalog<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match self.multi.get() {
            Some(m) => m.changing_catalog(self, f),
            None => f(),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    fn lookup(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let topics = self.topic_map()?;
        topics.get(topic).ok_or_else(|| Error::unknown(topic, None))?.partition(partition)
    }

    /// The partition an append goes to: `partition`, or the default partitioner's choice for the
    /// first record's key. Internal topics are refused.
    pub(crate) fn resolve(&self, topic: &str, partition: Option<u32>, records: &[Record<'_>]) -> Result<Arc<Partition>> {
        self.check_open()?;
        let topics = self.topic_map()?;
        let t = topics.get(topic).ok_or_else(|| Error::unknown(topic, None))?;
        if t.internal {
            return Err(Error::ReadOnly(format!("internal topic {topic}")));
        }
        let p = match partition {
            Some(p) => p,
            None => choose_partition(t, records.first().and_then(|r| r.key)),
        };
        t.partition(p)
    }

    /// Checks a group's offsets before they are committed: the group name, that each partition
    /// exists, and the metadata size.
    pub(crate) fn check_offset_commits(&self, group: &str, offsets: &[OffsetCommit<'_>]) -> Result<()> {
        names::validate_group(group)?;
        for c in offsets {
            self.lookup(c.topic, c.partition)?;
            if c.metadata.len() > MAX_OFFSET_METADATA_BYTES {
                return Err(Error::InvalidArgument(format!(
                    "offset metadata of {} bytes exceeds offset.metadata.max.bytes ({MAX_OFFSET_METADATA_BYTES})",
                    c.metadata.len()
                )));
            }
        }
        Ok(())
    }

    /// The transaction coordinator, creating `__transaction_state` on first use (as Kafka does).
    pub(crate) fn coordinator(&self) -> Result<Arc<Coordinator>> {
        self.check_open()?;
        self.single_process("an idempotent or transactional producer")?;
        if let Some(c) = self.coordinator.get() {
            return Ok(c.clone());
        }
        let _creating = lock(&self.coordinator_init);
        if let Some(c) = self.coordinator.get() {
            return Ok(c.clone());
        }
        let mut catalog = lock(&self.catalog);
        let config = Arc::new(internal_config(&self.options));
        let t = create_topic_files(&*self.vfs, &self.vfs, &self.dir, &mut catalog, TRANSACTION_STATE_TOPIC, 1, &config, &[], &self.env)?;
        let c = Arc::new(Coordinator::load(t.partition(0)?)?);
        c.raise_pid_floor(multi::read_pid_floor(&*self.vfs, &self.dir)?);
        self.topics.write().unwrap_or_else(|e| e.into_inner()).insert(TRANSACTION_STATE_TOPIC.to_string(), t);
        let _ = self.coordinator.set(c.clone());
        Ok(c)
    }
}

impl transactions::Partitions for Shared {
    fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        self.lookup(topic, partition).ok()
    }
    fn all(&self) -> Vec<Arc<Partition>> {
        shared_partitions(self)
    }
    fn groups(&self) -> &Groups {
        &self.groups
    }
}

/// The partitions of a log being opened, for the coordinator's recovery.
struct OpenView<'a> {
    topics: &'a TopicMap,
    groups: &'a Groups,
}

impl transactions::Partitions for OpenView<'_> {
    fn partition(&self, topic: &str, partition: u32) -> Option<Arc<Partition>> {
        self.topics.get(topic)?.partition(partition).ok()
    }
    fn all(&self) -> Vec<Arc<Partition>> {
        self.topics.values().flat_map(|t| t.partitions().iter().cloned().collect::<Vec<_>>()).collect()
    }
    fn groups(&self) -> &Groups {
        self.groups
    }
}

fn seed() -> u32 {
    // A varying start for round-robin, as Kafka's partitioner starts at a random number.
    (now_ms() as u32).wrapping_mul(2_654_435_761)
}

fn choose_partition(t: &Topic, key: Option<&[u8]>) -> u32 {
    let n = t.partitions.read().unwrap_or_else(|e| e.into_inner()).len() as u32;
    match key {
        Some(k) => partitioner::partition_for_key(k, n),
        None => t.round_robin.fetch_add(1, Ordering::Relaxed) % n.max(1),
    }
}

/// Suffix of a partition directory being built: `+` cannot appear in a topic name, and one byte
/// keeps `<249-character topic>-<partition up to 9999>+` within the 255-byte limit of a name.
const CREATING_SUFFIX: &str = "+";

/// Makes a partition directory that always holds its `partition.metadata`: it is built under a
/// temporary name and renamed into place, so a crash never leaves `<topic>-<p>` without one.
fn create_partition_dir(vfs: &dyn Vfs, data_dir: &Path, pdir: &Path, topic_id: u64) -> Result<()> {
    if vfs.exists(pdir) {
        return Err(Error::InvalidArgument(format!("{} already exists and is not a partition of this topic", pdir.display())));
    }
    let mut tmp = pdir.as_os_str().to_owned();
    tmp.push(CREATING_SUFFIX);
    let tmp = PathBuf::from(tmp);
    if vfs.exists(&tmp) {
        vfs.remove_dir_all(&tmp).map_err(|e| Error::io("remove directory", &tmp, e))?;
    }
    vfs.create_dir(&tmp).map_err(|e| Error::io("create directory", &tmp, e))?;
    write_atomic(vfs, &tmp, PARTITION_METADATA_FILE, &meta::encode_partition_metadata(topic_id))?;
    vfs.rename(&tmp, pdir).map_err(|e| Error::io("rename", &tmp, e))?;
    vfs.sync_dir(data_dir).map_err(|e| Error::io("fsync", data_dir, e))
}

#[expect(clippy::too_many_arguments, reason = "the pieces of the data directory a new partition needs")]
fn new_partition(
    vfs: &dyn Vfs,
    vfs_arc: &Arc<dyn Vfs>,
    data_dir: &Path,
    topic: &Arc<str>,
    topic_id: u64,
    p: u32,
    config: &Arc<TopicConfig>,
    env: &LogEnv,
) -> Result<Arc<Partition>> {
    let pdir: Arc<Path> = Arc::from(data_dir.join(format!("{topic}-{p}")));
    create_partition_dir(vfs, data_dir, &pdir, topic_id)?;
    let ctx = LoadContext {
        vfs: vfs_arc,
        dir: pdir.clone(),
        topic,
        partition: p,
        config,
        recovery_point: Some(0),
        clean: false,
        quarantine_dir: &data_dir.join(QUARANTINE_DIR),
    };
    let (loaded, _): (Loaded, _) = load_partition(&ctx)?;
    let part = Arc::new(Partition::new(topic.clone(), p, pdir, config.clone(), env, loaded));
    if env.multi
        && let Some((d, generation)) = env.shared.get()
    {
        // Before the catalog names it: no other process can be using its state file yet.
        part.init_shared(d, *generation)?;
    }
    Ok(part)
}

/// Creates a topic's directories, then commits it to the catalog (the commit point).
#[expect(clippy::too_many_arguments, reason = "the pieces of the data directory a new topic needs")]
fn create_topic_files(
    vfs: &dyn Vfs,
    vfs_arc: &Arc<dyn Vfs>,
    dir: &Path,
    catalog: &mut Catalog,
    name: &str,
    partitions: u32,
    config: &Arc<TopicConfig>,
    overrides: &[(String, String)],
    env: &LogEnv,
) -> Result<Arc<Topic>> {
    let id = catalog.next_topic_id;
    let tname: Arc<str> = Arc::from(name);
    let mut parts = Vec::new();
    let mut result = Ok(());
    for p in 0..partitions {
        match new_partition(vfs, vfs_arc, dir, &tname, id, p, config, env) {
            Ok(part) => parts.push(part),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let mut next = catalog.clone();
    next.next_topic_id = id + 1;
    next.topics.push(TopicMeta { id, name: name.to_string(), partitions, config: overrides.to_vec() });
    let result = result.and_then(|()| write_atomic(vfs, dir, CATALOG_FILE, &meta::encode_catalog(&next)));
    if let Err(e) = result {
        // Not committed: remove what was made (a reopen would remove it too).
        for p in &parts {
            let _ = vfs.remove_dir_all(&p.path());
        }
        return Err(e);
    }
    *catalog = next;
    env.catalog_changed();
    Ok(Arc::new(Topic {
        name: tname,
        id,
        config: config.clone(),
        internal: names::is_internal(name),
        partitions: RwLock::new(Arc::new(parts)),
        round_robin: AtomicU32::new(seed()),
    }))
}

fn shared_partitions(s: &Shared) -> Vec<Arc<Partition>> {
    let topics = s.topic_map_or_last();
    topics.values().flat_map(|t| t.partitions().iter().cloned().collect::<Vec<_>>()).collect()
}

fn run_retention(s: &Shared) -> Result<usize> {
    let now = now_ms();
    let mut n = 0;
    for p in shared_partitions(s) {
        if names::is_internal(&p.topic) {
            continue;
        }
        n += p.apply_retention(now)?;
    }
    Ok(n)
}

/// Forgets producers idle longer than `producer.id.expiration.ms` in every partition.
fn expire_producers(s: &Shared, now: i64) {
    let cutoff = now.saturating_sub(i64::try_from(s.options.producer_id_expiration.as_millis()).unwrap_or(i64::MAX));
    for p in shared_partitions(s) {
        p.expire_producers(cutoff);
    }
}

fn write_checkpoint(s: &Shared) -> Result<()> {
    let mut entries: Vec<(String, u32, u64)> =
        shared_partitions(s).iter().map(|p| (p.topic.to_string(), p.id, p.durable_offset())).collect();
    entries.sort();
    write_atomic(&*s.vfs, &s.dir, CHECKPOINT_FILE, &meta::encode_checkpoint(&entries))
}

fn maintenance_loop(s: &Shared) {
    let tick = Duration::from_millis(10);
    let mut last_retention = Instant::now();
    let mut last_checkpoint = Instant::now();
    loop {
        {
            let (m, cv) = &s.stop;
            let stopped = lock(m);
            if *stopped {
                return;
            }
            let (stopped, _) = cv.wait_timeout(stopped, tick).unwrap_or_else(|e| e.into_inner());
            if *stopped {
                return;
            }
        }
        let now = now_ms();
        for p in shared_partitions(s) {
            if let Err(e) = p.maybe_flush(now) {
                log::error!("background flush of {}-{}: {e}", p.topic, p.id);
            }
        }
        if let Some(c) = s.coordinator.get().cloned() {
            c.abort_expired(s, now);
        }
        let due_retention = last_retention.elapsed() >= s.options.retention_check_interval;
        let due_checkpoint = last_checkpoint.elapsed() >= s.options.checkpoint_interval;
        if !(due_retention || due_checkpoint) {
            continue;
        }
        // In shared mode, one process at a time; another process's pass counts for this one.
        let pass = || {
            if due_retention {
                if let Err(e) = run_retention(s) {
                    log::error!("background retention: {e}");
                }
                expire_producers(s, now);
            }
            if due_checkpoint && let Err(e) = write_checkpoint(s) {
                log::error!("writing the recovery-point checkpoint: {e}");
            }
        };
        match s.multi.get() {
            Some(m) => m.maintaining(pass),
            None => pass(),
        }
        if due_retention {
            last_retention = Instant::now();
        }
        if due_checkpoint {
            last_checkpoint = Instant::now();
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Log>();
    is::<Fetched>();
    let _ = groups::CONSUMER_OFFSETS_TOPIC;
}
