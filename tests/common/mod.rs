//! Helpers shared by the integration tests: options, small-segment configs, and owned copies of
//! fetched records so that logs can be compared before and after a reopen.

#![allow(dead_code, reason = "each test binary uses a different subset of these helpers")]

use std::path::{Path, PathBuf};

use runnel::{Log, LogOptions, TopicConfig};

/// What every test returns: `?` works on runnel, io and tempfile errors alike.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Name of the marker a clean close leaves in the data directory.
pub const CLEAN_SHUTDOWN_MARKER: &str = ".runnel_clean_shutdown";

/// Name of the recovery-point checkpoint in the data directory.
pub const CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";

/// Options with no background thread, so flushing and retention happen only when a test asks.
pub fn opts() -> LogOptions {
    LogOptions::default().background_maintenance(false)
}

/// Opens `dir` with [`opts`].
pub fn open(dir: &Path) -> runnel::Result<Log> {
    Log::open(dir, opts())
}

/// A config that rolls often: 1 KiB segments, an index entry every 64 bytes, and batches of at
/// most 1 KiB (so that an active segment maps 1 KiB, not the default 1 MiB).
pub fn small_segments() -> TopicConfig {
    let mut c = TopicConfig::default();
    c.set("segment.bytes", "1024").expect("segment.bytes");
    c.set("index.interval.bytes", "64").expect("index.interval.bytes");
    c.set("max.message.bytes", "1024").expect("max.message.bytes");
    c
}

/// Builds a config from Kafka names and values.
pub fn config(entries: &[(&str, &str)]) -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in entries {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// An owned copy of a fetched record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    pub fn of(r: &runnel::RecordView<'_>) -> Rec {
        Rec {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// The records of one fetch, owned.
pub fn records_of(fetched: &runnel::Fetched) -> runnel::Result<Vec<Rec>> {
    fetched.records().map(|r| r.map(|r| Rec::of(&r))).collect()
}

/// Reads a partition from `from` up to its high watermark by chaining `next_offset`, checking that
/// every fetch makes progress.
pub fn read_from(log: &Log, topic: &str, partition: u32, from: u64, max_bytes: u64) -> runnel::Result<Vec<Rec>> {
    let mut out = Vec::new();
    let mut offset = from;
    let hw = log.high_watermark(topic, partition)?;
    while offset < hw {
        let fetched = log.fetch(topic, partition, offset, max_bytes)?;
        assert!(fetched.next_offset() > offset, "fetch at {offset} made no progress (hw {hw})");
        out.extend(records_of(&fetched)?);
        offset = fetched.next_offset();
    }
    Ok(out)
}

/// Reads a whole partition, from its log start offset to its high watermark.
pub fn read_all(log: &Log, topic: &str, partition: u32) -> runnel::Result<Vec<Rec>> {
    let start = log.log_start_offset(topic, partition)?;
    read_from(log, topic, partition, start, 64 << 10)
}

/// Values of a list of records, as UTF-8 strings (`<null>` for a null value).
pub fn values(recs: &[Rec]) -> Vec<String> {
    recs.iter().map(|r| r.value.as_deref().map_or("<null>".to_string(), |v| String::from_utf8_lossy(v).into_owned())).collect()
}

/// Removes the clean-shutdown marker so that the next open takes the recovery path.
pub fn make_unclean(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_file(dir.join(CLEAN_SHUTDOWN_MARKER))
}

/// Names of the entries of a directory, sorted.
pub fn dir_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        v.push(e?.file_name().to_string_lossy().into_owned());
    }
    v.sort();
    Ok(v)
}

/// The `.log` files of a partition directory: (base offset, size in bytes), oldest first.
pub fn segment_files(partition_dir: &Path) -> std::io::Result<Vec<(u64, u64)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(partition_dir)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<u64>()
        {
            v.push((base, e.metadata()?.len()));
        }
    }
    v.sort_unstable();
    Ok(v)
}

/// The directory of partition `p` of `topic` in data directory `dir`.
pub fn partition_dir(dir: &Path, topic: &str, p: u32) -> PathBuf {
    dir.join(format!("{topic}-{p}"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// How much longer than the default to run the scaled tests (`RUNNEL_TEST_SCALE`, default 1).
pub fn scale() -> usize {
    std::env::var("RUNNEL_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1usize).max(1)
}

/// A small deterministic PRNG (SplitMix64), so every run of a seed does the same thing.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Copies a directory tree (regular files and directories).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory") {
        let e = e.expect("directory entry");
        let ty = e.file_type().expect("file type");
        let dst = to.join(e.file_name());
        if ty.is_dir() {
            copy_tree(&e.path(), &dst);
        } else if ty.is_file() {
            std::fs::copy(e.path(), &dst).expect("copy file");
        }
    }
}

/// A seed that differs per run and per process, for tests that explore random schedules (the
/// failing seed is printed by each such test).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) ^ u64::from(std::process::id())
}

/// An integer from the environment (a child process's instructions), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// A child process that is killed (and reaped) if the test panics before it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Values of a partition with their offsets, from the log start up to the end `isolation` sees
/// (the last stable offset or the high watermark), checking that every fetch makes progress and
/// no record is torn.
pub fn read_partition(log: &Log, topic: &str, p: u32, isolation: runnel::IsolationLevel) -> Vec<(u64, Vec<u8>)> {
    let end = match isolation {
        runnel::IsolationLevel::ReadCommitted => log.last_stable_offset(topic, p).expect("last stable offset"),
        runnel::IsolationLevel::ReadUncommitted => log.high_watermark(topic, p).expect("high watermark"),
    };
    let mut offset = log.log_start_offset(topic, p).expect("log start");
    let mut out = Vec::new();
    while offset < end {
        let f = log.fetch_with(topic, p, offset, 64 << 10, isolation).unwrap_or_else(|e| panic!("fetch {topic}-{p} at {offset}: {e}"));
        assert!(f.next_offset() > offset, "{topic}-{p}: {isolation:?} fetch at {offset} made no progress (end {end})");
        for r in f.records() {
            let r = r.unwrap_or_else(|e| panic!("{topic}-{p}: a record after {offset} is torn: {e}"));
            out.push((r.offset, r.value.expect("every record has a value").to_vec()));
        }
        offset = f.next_offset();
    }
    out
}
