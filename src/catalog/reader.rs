//! A data directory opened read-only ([`super::Log::open_read_only`]): the catalog, reread when the
//! writer says it changed, the partitions as [`ReaderPartition`]s, and committed offsets folded
//! from `__consumer_offsets` as the writer publishes them. Takes no lock and writes nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use super::{CATALOG_FILE, config_from, internal_config, read_small, validate_catalog};
use crate::config::{IsolationLevel, LogOptions, TopicConfig};
use crate::error::{Error, Result};
use crate::format::meta;
use crate::groups::{CONSUMER_OFFSETS_TOPIC, OffsetsFold};
use crate::log::Fetched;
use crate::log::reader::ReaderPartition;
use crate::storage::shared_state::{DIR_STATE_FILE, DirState, wait_until};
use crate::storage::vfs::{OsFs, Vfs};

pub(crate) struct ReaderTopic {
    pub(crate) id: u64,
    pub(crate) config: Arc<TopicConfig>,
    pub(crate) internal: bool,
    pub(crate) partitions: Vec<Arc<ReaderPartition>>,
}

#[derive(Default)]
struct Topics {
    /// The writer generation and catalog version this map was read at.
    generation: u64,
    catalog_version: u64,
    map: HashMap<String, Arc<ReaderTopic>>,
}

/// Committed offsets folded up to `upto`, valid while the log start stays `log_start`.
struct Offsets {
    fold: OffsetsFold,
    log_start: u64,
    upto: u64,
}

pub(crate) struct ReaderShared {
    pub(crate) dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    options: LogOptions,
    state: DirState,
    topics: RwLock<Topics>,
    offsets: Mutex<Option<Offsets>>,
    /// This process's consumer groups on the directory, kept while the handle lives.
    pub(crate) clients: std::sync::OnceLock<Arc<crate::clients::GroupCoordinator>>,
}

impl ReaderShared {
    pub(crate) fn open(dir: &Path, options: LogOptions) -> Result<ReaderShared> {
        let vfs: Arc<dyn Vfs> = Arc::new(OsFs);
        if !vfs.is_dir(dir) {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such data directory");
            return Err(Error::io("open", dir, e));
        }
        let path = dir.join(DIR_STATE_FILE);
        let state = match DirState::open(dir) {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(Error::corrupt(
                    &path,
                    0,
                    "missing: no writer of this runnel version has opened the directory; open it for writing once",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(Error::corrupt(&path, 0, e.to_string())),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let r = ReaderShared {
            dir: dir.to_path_buf(),
            vfs,
            options,
            state,
            topics: RwLock::new(Topics::default()),
            offsets: Mutex::new(None),
            clients: Default::default(),
        };
        r.reload()?;
        Ok(r)
    }

    /// Rereads the catalog if the writer changed it or a new writer took over since it was read.
    fn current(&self) -> Result<()> {
        let fresh = {
            let t = self.topics.read().unwrap_or_else(|e| e.into_inner());
            t.generation == self.state.generation() && t.catalog_version == self.state.catalog_version() && t.generation != 0
        };
        if fresh { Ok(()) } else { self.reload() }
    }

    fn reload(&self) -> Result<()> {
        // The catalog is replaced by rename, so a read sees one version whole; but the partition
        // directories it names may be removed (topic deleted) while this runs: try again then.
        let mut attempt = 0;
        loop {
            let generation = self.state.generation();
            let version = self.state.catalog_version();
            match self.read_catalog(generation) {
                Ok(map) => {
                    let mut t = self.topics.write().unwrap_or_else(|e| e.into_inner());
                    *t = Topics { generation, catalog_version: version, map };
                    return Ok(());
                }
                Err(e) => {
                    attempt += 1;
                    let changed = self.state.generation() != generation || self.state.catalog_version() != version;
                    if !changed || attempt >= 10 {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn read_catalog(&self, generation: u64) -> Result<HashMap<String, Arc<ReaderTopic>>> {
        let path = self.dir.join(CATALOG_FILE);
        let bytes = read_small(&*self.vfs, &path, 64 << 20)?.ok_or_else(|| Error::corrupt(&path, 0, "the catalog is missing"))?;
        let catalog = meta::decode_catalog(&bytes).map_err(|r| Error::corrupt(&path, 0, r))?;
        validate_catalog(&catalog, &self.options.default_topic_config).map_err(|r| Error::corrupt(&path, 0, r))?;
        let old = self.topics.read().unwrap_or_else(|e| e.into_inner());
        // Partitions are kept across catalog changes of the same writer; a new writer may have
        // repaired the files, so everything is looked at afresh then.
        let keep = old.generation == generation;
        let mut map = HashMap::new();
        for t in &catalog.topics {
            let internal = super::names::is_internal(&t.name);
            let config =
                Arc::new(if internal { internal_config(&self.options) } else { config_from(t, &self.options.default_topic_config)? });
            let before = old.map.get(&t.name).filter(|o| keep && o.id == t.id);
            let name: Arc<str> = Arc::from(t.name.as_str());
            let mut partitions = Vec::with_capacity(t.partitions as usize);
            for p in 0..t.partitions {
                if let Some(existing) = before.and_then(|o| o.partitions.get(p as usize)) {
                    partitions.push(existing.clone());
                    continue;
                }
                let pdir: Arc<Path> = Arc::from(self.dir.join(format!("{}-{p}", t.name)));
                if !self.vfs.is_dir(&pdir) {
                    return Err(Error::corrupt(
                        pdir.to_path_buf(),
                        0,
                        "a partition directory the catalog names is missing or not a directory",
                    ));
                }
                partitions.push(Arc::new(ReaderPartition::open(name.clone(), p, pdir, self.vfs.clone(), config.clone())?));
            }
            map.insert(t.name.clone(), Arc::new(ReaderTopic { id: t.id, config, internal, partitions }));
        }
        Ok(map)
    }

    pub(crate) fn topic(&self, name: &str) -> Result<Arc<ReaderTopic>> {
        self.current()?;
        self.topics.read().unwrap_or_else(|e| e.into_inner()).map.get(name).cloned().ok_or_else(|| Error::unknown(name, None))
    }

    pub(crate) fn partition(&self, topic: &str, partition: u32) -> Result<Arc<ReaderPartition>> {
        self.topic(topic)?.partitions.get(partition as usize).cloned().ok_or_else(|| Error::unknown(topic, Some(partition)))
    }

    pub(crate) fn topic_names(&self) -> Result<Vec<String>> {
        self.current()?;
        let mut v: Vec<String> = self.topics.read().unwrap_or_else(|e| e.into_inner()).map.keys().cloned().collect();
        v.sort();
        Ok(v)
    }

    /// Whether a writer has the directory open.
    pub(crate) fn writer_open(&self) -> bool {
        self.state.writer_open()
    }

    /// Runs `f` on the committed offsets as of the writer's latest publication.
    pub(crate) fn with_offsets<T>(&self, f: impl FnOnce(&OffsetsFold) -> T) -> Result<T> {
        let p = self.partition(CONSUMER_OFFSETS_TOPIC, 0)?;
        let (log_start, hw) = (p.log_start_offset()?, p.high_watermark()?);
        let mut slot = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        // The writer snapshots the offsets topic by rolling and deleting what came before: a new
        // log start means starting over from it.
        if slot.as_ref().is_none_or(|o| o.log_start != log_start || o.upto > hw) {
            *slot = Some(Offsets { fold: OffsetsFold::default(), log_start, upto: log_start });
        }
        let Some(o) = slot.as_mut() else { return Ok(f(&OffsetsFold::default())) };
        if o.upto < hw {
            let fetch = |offset| p.fetch_isolated(offset, 1 << 20, IsolationLevel::ReadUncommitted);
            match crate::internal::replay(o.upto, hw, p.dir(), fetch, |h, r| o.fold.fold(h, r)) {
                Ok(reached) => o.upto = reached,
                Err(e) => {
                    *slot = None;
                    return Err(e);
                }
            }
        }
        Ok(f(&o.fold))
    }

    /// Waits until one of `wanted` (topic, partition, offset) has records at or after its offset
    /// visible at `isolation`, `stop` answers `true`, or `timeout` passes. A partition that is
    /// gone counts as ready: the fetch that follows reports it. Returns whether one was ready.
    pub(crate) fn wait_any(
        &self,
        wanted: &[(&str, u32, u64)],
        isolation: IsolationLevel,
        timeout: Duration,
        mut stop: impl FnMut() -> bool,
    ) -> Result<bool> {
        wait_until(Some(&self.state), timeout, || {
            for &(topic, partition, offset) in wanted {
                let Ok(p) = self.partition(topic, partition) else { return Ok(true) };
                let end = match isolation {
                    IsolationLevel::ReadUncommitted => p.high_watermark()?,
                    IsolationLevel::ReadCommitted => p.last_stable_offset()?,
                };
                if end > offset {
                    return Ok(true);
                }
            }
            Ok(stop())
        })
    }

    pub(crate) fn fetch(&self, topic: &str, partition: u32, offset: u64, max_bytes: u64, isolation: IsolationLevel) -> Result<Fetched> {
        self.partition(topic, partition)?.fetch_isolated(offset, max_bytes, isolation)
    }
}
