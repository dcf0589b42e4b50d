//! Helpers of `tests/hostile_dirs.rs` (and of any test of hostile directories): a real data directory
//! built through the API, ways to damage it as a hostile or careless party would, snapshots of the
//! directories next to it (to prove nothing outside the data directory was read into or written),
//! the checks that every fetch returns intact data or `Error::Corrupt`, and a harness that runs
//! each case in a child process with a cap on heap memory and a watchdog, so that an abort, an
//! out-of-memory or a hang fails one test with a clear message instead of taking the run down.

#![allow(dead_code, reason = "each test binary uses a different subset of these helpers")]

use std::collections::BTreeMap;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use runnel::format::BatchView;
use runnel::format::batch::batch_crc;
use runnel::{Acks, Error, Header, Log, LogOptions, Record, TopicConfig};

/// The topic every fixture holds.
pub const TOPIC: &str = "t";
/// Name of the clean-shutdown marker.
pub const MARKER: &str = ".runnel_clean_shutdown";
/// Name of the recovery-point checkpoint.
pub const CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Name of the catalog.
pub const CATALOG: &str = "catalog";
/// Name of the quarantine directory.
pub const QUARANTINE: &str = "quarantine";

/// Heap (RLIMIT_DATA) a case may use: far above what opening a few KiB of log needs, far below
/// what following a hostile length field would allocate. File mappings do not count against it.
pub const CHILD_DATA_LIMIT: u64 = 512 << 20;
/// A case that takes longer than this is reported as a hang (a generous watchdog, not a timing
/// assertion: every case takes well under a second when nothing is wrong).
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(300);
const CHILD_ENV: &str = "RUNNEL_HOSTILE_CHILD";
const DONE: &str = "hostile-case-finished:";

/// Runs `body` in a child process (this test binary, filtered to test `name`), with its heap
/// capped at [`CHILD_DATA_LIMIT`] and a [`CHILD_TIMEOUT`] watchdog. The test fails when the child
/// panics, aborts (an allocation failure is an abort), is killed, or hangs.
pub fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        let limit = rustix::process::Rlimit { current: Some(CHILD_DATA_LIMIT), maximum: Some(CHILD_DATA_LIMIT) };
        rustix::process::setrlimit(rustix::process::Resource::Data, limit).expect("setrlimit(RLIMIT_DATA)");
        body();
        println!("{DONE}{name}");
        return;
    }
    let out = tempfile::tempdir().expect("tempdir for the child's output");
    let log_path = out.path().join("output");
    let log_file = fs::File::create(&log_path).expect("child output file");
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([name, "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("dup"))
        .stderr(log_file)
        .spawn()
        .expect("spawning the child test process");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if started.elapsed() > CHILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = fs::read_to_string(&log_path).unwrap_or_default();
    let tail: String = {
        let lines: Vec<&str> = output.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    };
    match status {
        None => panic!("case {name} hung: no result after {CHILD_TIMEOUT:?}; its output:\n{tail}"),
        Some(s) if !s.success() => {
            use std::os::unix::process::ExitStatusExt;
            let how = match s.signal() {
                Some(sig) => format!("was killed by signal {sig} (6 = abort, e.g. an allocation failure; 9 = the OOM killer)"),
                None => format!("failed ({s})"),
            };
            panic!("case {name} {how}; its output:\n{tail}")
        }
        Some(_) => assert!(output.contains(&format!("{DONE}{name}")), "case {name} did not run in the child; its output:\n{tail}"),
    }
}

/// Runs `f`, turning a panic inside runnel into a test failure that says so.
pub fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            panic!("runnel panicked during {what}: {msg}")
        }
    }
}

/// Options with no background thread, so the tests decide when anything happens.
pub fn opts() -> LogOptions {
    LogOptions::default().background_maintenance(false)
}

/// Opens `dir`, failing the test on a panic.
pub fn try_open(dir: &Path) -> runnel::Result<Log> {
    no_panic("Log::open", || Log::open(dir, opts()))
}

/// Opens `dir` and expects success.
pub fn open_ok(dir: &Path) -> Log {
    try_open(dir).unwrap_or_else(|e| panic!("opening {} failed: {e:?}", dir.display()))
}

/// Opens `dir` and expects failure.
pub fn open_err(dir: &Path) -> Error {
    match try_open(dir) {
        Ok(log) => {
            let topics = log.list_topics();
            panic!("opening {} succeeded (topics {topics:?}) but should have been refused", dir.display())
        }
        Err(e) => e,
    }
}

/// Asserts that `e` is `Error::Corrupt` naming `path`.
#[track_caller]
pub fn assert_corrupt_at(e: &Error, path: &Path) {
    match e {
        Error::Corrupt { path: p, .. } if p == path => {}
        other => panic!("expected Error::Corrupt naming {}, got {other:?}", path.display()),
    }
}

/// Asserts that `e` is `Error::Io` naming `path`.
#[track_caller]
pub fn assert_io_at(e: &Error, path: &Path) {
    match e {
        Error::Io { path: p, .. } if p == path => {}
        other => panic!("expected Error::Io naming {}, got {other:?}", path.display()),
    }
}

/// How the fixture's data directory was left before the hostile open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Closed cleanly: marker and checkpoint present, so partitions are trusted after a tail check.
    Clean,
    /// Marker removed, checkpoint kept: sealed segments below the recovery point are trusted.
    NoMarker,
    /// Marker and checkpoint removed: every segment is verified.
    NoMarkerNoCheckpoint,
}

/// Every mode.
pub const MODES: [Mode; 3] = [Mode::Clean, Mode::NoMarker, Mode::NoMarkerNoCheckpoint];

/// A record as appended (and as it must read back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Rec {
    fn of(r: &runnel::RecordView<'_>) -> Rec {
        Rec {
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
            headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// One batch in a segment file.
#[derive(Clone, Copy, Debug)]
pub struct BatchLoc {
    /// Byte position in the `.log`.
    pub pos: u64,
    /// Length in bytes.
    pub len: u64,
    /// First offset.
    pub base_offset: u64,
    /// Offset after the last record.
    pub next_offset: u64,
}

/// One segment as the fixture wrote it.
#[derive(Clone, Debug)]
pub struct SegLoc {
    pub base: u64,
    pub size: u64,
    pub batches: Vec<BatchLoc>,
}

impl SegLoc {
    pub fn next_offset(&self) -> u64 {
        self.batches.last().map_or(self.base, |b| b.next_offset)
    }
}

/// A data directory with topic `t` (one partition, 2 KiB segments, an index entry every 512
/// bytes so that several batches share an index entry), closed cleanly, plus a sibling directory
/// `outside/` holding a canary file.
pub struct Fixture {
    _root: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub outside: PathBuf,
    pub expected: Vec<Rec>,
    pub segments: Vec<SegLoc>,
    outside_before: Option<Snapshot>,
}

/// The fixture topic's config.
pub fn fixture_config() -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [
        ("segment.bytes", "2048"),
        ("index.interval.bytes", "512"),
        ("max.message.bytes", "2048"),
        ("retention.ms", "-1"),
        ("segment.ms", "-1"),
    ] {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// The timestamp of the record at `offset`.
pub fn timestamp_of(offset: u64) -> i64 {
    1_700_000_000_000 + offset as i64 * 10
}

fn value_of(offset: u64) -> Vec<u8> {
    let mut v = format!("value-{offset:05}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (offset % 26) as u8, 20 + (offset as usize * 37) % 90));
    v
}

impl Fixture {
    /// Builds the fixture and leaves it in `mode`.
    pub fn new(mode: Mode) -> Fixture {
        let root_dir = tempfile::tempdir().expect("tempdir");
        let root = root_dir.path().to_path_buf();
        let data = root.join("data");
        let outside = root.join("outside");
        fs::create_dir_all(outside.join("nested")).expect("outside");
        fs::write(outside.join("canary.txt"), b"canary: nothing may change this file").expect("canary");
        fs::write(outside.join("nested").join("inner.bin"), [7u8; 300]).expect("inner");

        let log = Log::open(&data, opts()).expect("open the fixture");
        log.create_topic(TOPIC, 1, fixture_config()).expect("create topic");
        let mut expected = Vec::new();
        let mut i = 0u64;
        loop {
            let n = 1 + (i % 3);
            let base = expected.len() as u64;
            let values: Vec<Vec<u8>> = (base..base + n).map(value_of).collect();
            let keys: Vec<Vec<u8>> = (base..base + n).map(|o| format!("key-{o}").into_bytes()).collect();
            let headers = [Header::new(b"h", b"header value"), Header { key: b"null", value: None }];
            let records: Vec<Record<'_>> = (0..n as usize)
                .map(|j| {
                    let o = base + j as u64;
                    let mut r = Record::new(&values[j]).with_timestamp(timestamp_of(o));
                    if o.is_multiple_of(2) {
                        r = r.with_key(&keys[j]);
                    }
                    if o.is_multiple_of(5) {
                        r = r.with_headers(&headers);
                    }
                    r
                })
                .collect();
            let at = log.append(TOPIC, Some(0), &records, Acks::One).expect("append");
            assert_eq!(at.base_offset, base);
            for (j, r) in records.iter().enumerate() {
                expected.push(Rec {
                    offset: base + j as u64,
                    timestamp: r.timestamp.unwrap_or_default(),
                    key: r.key.map(<[u8]>::to_vec),
                    value: r.value.map(<[u8]>::to_vec),
                    headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
                });
            }
            i += 1;
            let segs = log.segments(TOPIC, 0).expect("segments");
            if segs.len() >= 4 && segs.last().is_some_and(|s| s.size_bytes >= 1300) {
                break;
            }
        }
        log.close().expect("close");
        let mut fx = Fixture { _root: root_dir, root, data, outside, expected, segments: Vec::new(), outside_before: None };
        fx.segments = fx.layout();
        let last = fx.segments.last().expect("segments");
        assert!(last.batches.len() >= 4, "the last segment should hold several batches: {last:?}");
        fx.set_mode(mode);
        fx
    }

    /// Removes the marker (and the checkpoint) as `mode` says.
    pub fn set_mode(&self, mode: Mode) {
        if mode != Mode::Clean {
            let _ = fs::remove_file(self.data.join(MARKER));
        }
        if mode == Mode::NoMarkerNoCheckpoint {
            let _ = fs::remove_file(self.data.join(CHECKPOINT));
        }
    }

    /// The partition directory.
    pub fn pdir(&self) -> PathBuf {
        self.data.join(format!("{TOPIC}-0"))
    }

    /// Path of segment `i`'s file with extension `ext`.
    pub fn seg_file(&self, i: usize, ext: &str) -> PathBuf {
        self.pdir().join(format!("{:020}.{ext}", self.segments[i].base))
    }

    /// The batches of every segment, read from the files.
    fn layout(&self) -> Vec<SegLoc> {
        let mut out = Vec::new();
        let mut names: Vec<String> = fs::read_dir(self.pdir())
            .expect("read partition dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        for name in names {
            let base: u64 = name.trim_end_matches(".log").parse().expect("segment name");
            let bytes = fs::read(self.pdir().join(&name)).expect("read segment");
            let mut batches = Vec::new();
            let mut pos = 0usize;
            while pos < bytes.len() {
                let v = BatchView::parse(&bytes[pos..]).expect("the fixture's batches parse");
                let h = v.header();
                batches.push(BatchLoc {
                    pos: pos as u64,
                    len: h.total_len() as u64,
                    base_offset: h.base_offset,
                    next_offset: h.next_offset(),
                });
                pos += h.total_len();
            }
            out.push(SegLoc { base, size: bytes.len() as u64, batches });
        }
        out
    }

    /// The segment index and batch holding `offset`.
    pub fn locate(&self, offset: u64) -> (usize, BatchLoc) {
        for (i, s) in self.segments.iter().enumerate() {
            for b in &s.batches {
                if (b.base_offset..b.next_offset).contains(&offset) {
                    return (i, *b);
                }
            }
        }
        panic!("offset {offset} is not in the fixture")
    }

    /// The log end offset the fixture was closed with.
    pub fn end_offset(&self) -> u64 {
        self.expected.len() as u64
    }

    /// Records the state of everything next to the data directory (call after the case's setup).
    pub fn freeze_outside(&mut self) {
        self.outside_before = Some(snapshot_except(&self.root, &self.data));
    }

    /// Asserts that nothing next to the data directory changed since [`Fixture::freeze_outside`].
    #[track_caller]
    pub fn assert_outside_untouched(&self) {
        let before = self.outside_before.as_ref().expect("freeze_outside was not called");
        let after = snapshot_except(&self.root, &self.data);
        assert_same(before, &after, "outside the data directory");
    }

    /// A snapshot of the data directory, without the marker and lock files (which open and close
    /// legitimately remove and create).
    pub fn data_snapshot(&self) -> Snapshot {
        let mut s = snapshot(&self.data);
        s.remove(Path::new(MARKER));
        s.remove(Path::new(".lock"));
        s
    }

    /// Overwrites bytes of segment `seg` at `pos`.
    pub fn patch(&self, seg: usize, pos: u64, bytes: &[u8]) {
        patch_file(&self.seg_file(seg, "log"), pos, bytes);
    }

    /// Damages the batch `b` of segment `seg` as `damage` says.
    pub fn damage(&self, seg: usize, b: BatchLoc, damage: Damage) {
        let path = self.seg_file(seg, "log");
        let mut file = fs::read(&path).expect("read segment");
        let batch = &mut file[b.pos as usize..(b.pos + b.len) as usize];
        match damage {
            Damage::LengthPastEnd => batch[8..12].copy_from_slice(&0x7fff_fff0u32.to_le_bytes()),
            Damage::HugeRecordCount => {
                batch[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
                fix_crc(batch);
            }
            Damage::HugeRecordCountConsistent => {
                batch[20..24].copy_from_slice(&(u32::MAX - 1).to_le_bytes());
                batch[56..60].copy_from_slice(&u32::MAX.to_le_bytes());
                fix_crc(batch);
            }
            Damage::WrongMagic => {
                batch[16] = 7;
                fix_crc(batch);
            }
        }
        fs::write(&path, &file).expect("write segment");
    }

    /// Opens the damaged directory, reads every offset, and checks what the reads returned.
    pub fn read_report(&self, log: &Log) -> ReadReport {
        read_report(log, &self.expected)
    }
}

/// How a batch header is damaged. The CRC is recomputed where the damage leaves the batch's bytes
/// all present, so that only the field itself gives the batch away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// `batch_length` says about 2 GiB: the batch runs far past the end of the file.
    LengthPastEnd,
    /// `record_count` is u32::MAX (inconsistent with `last_offset_delta`), CRC valid.
    HugeRecordCount,
    /// `record_count` is u32::MAX and `last_offset_delta` u32::MAX - 1 (consistent), CRC valid.
    HugeRecordCountConsistent,
    /// Magic 7 instead of 2, CRC valid.
    WrongMagic,
}

/// Every kind of damage.
pub const DAMAGES: [Damage; 4] = [Damage::LengthPastEnd, Damage::HugeRecordCount, Damage::HugeRecordCountConsistent, Damage::WrongMagic];

/// Recomputes the CRC of a whole batch in place.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = batch_crc(batch);
    batch[12..16].copy_from_slice(&crc.to_le_bytes());
}

/// Overwrites bytes of a file at `pos`.
pub fn patch_file(path: &Path, pos: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.write_all_at(bytes, pos).expect("patch");
}

/// What one fetch at one offset (followed by reading its records) gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Got {
    /// Records starting exactly at the offset, equal to what was appended, with progress.
    Intact,
    /// `Error::Corrupt` (from the fetch or from iterating its records) naming this file.
    Corrupt(PathBuf),
    /// Anything else: wrong records, no progress below the high watermark, another error.
    Wrong(String),
}

/// Every offset of the partition, read one fetch at a time, and a chained read from log start.
#[derive(Debug)]
pub struct ReadReport {
    pub log_start: u64,
    pub high_watermark: u64,
    pub log_end: u64,
    pub per_offset: Vec<(u64, Got)>,
    /// Records of a read chained from log start by `next_offset`, until the end or an error.
    pub chained: Vec<Rec>,
    /// What stopped the chained read before the high watermark, if anything.
    pub chained_stop: Option<Got>,
}

impl ReadReport {
    /// Offsets whose fetch was not intact.
    pub fn not_intact(&self) -> Vec<&(u64, Got)> {
        self.per_offset.iter().filter(|(_, g)| *g != Got::Intact).collect()
    }

    /// Asserts that every offset below the high watermark reads back intact.
    #[track_caller]
    pub fn assert_all_intact(&self, expected_hw: u64) {
        assert_eq!((self.log_start, self.high_watermark, self.log_end), (0, expected_hw, expected_hw), "log start, HW, LEO");
        let bad = self.not_intact();
        assert!(bad.is_empty(), "offsets that did not read back intact: {bad:?}");
        assert_eq!(self.chained_stop, None, "the chained read stopped early");
        assert_eq!(self.chained.len() as u64, expected_hw, "the chained read returned every record");
    }
}

fn classify(e: Error) -> Got {
    match e {
        Error::Corrupt { path, .. } => Got::Corrupt(path),
        other => Got::Wrong(format!("unexpected error {other:?}")),
    }
}

/// One fetch at `offset` with a small `max_bytes`, its records read and compared.
pub fn fetch_one(log: &Log, expected: &[Rec], offset: u64, max_bytes: u64) -> (Got, Vec<Rec>, u64) {
    let hw = log.high_watermark(TOPIC, 0).expect("hw");
    let fetched = match no_panic("fetch", || log.fetch(TOPIC, 0, offset, max_bytes)) {
        Ok(f) => f,
        Err(e) => return (classify(e), Vec::new(), offset),
    };
    let recs: Result<Vec<Rec>, Error> = no_panic("reading records", || fetched.records().map(|r| r.map(|r| Rec::of(&r))).collect());
    let recs = match recs {
        Ok(r) => r,
        Err(e) => return (classify(e), Vec::new(), offset),
    };
    let next = fetched.next_offset();
    if offset < hw && (recs.is_empty() || next <= offset) {
        return (
            Got::Wrong(format!("fetch at {offset} (HW {hw}) returned {} records and next_offset {next}: no progress", recs.len())),
            recs,
            next,
        );
    }
    for (i, r) in recs.iter().enumerate() {
        let want = offset + i as u64;
        if r.offset != want {
            return (Got::Wrong(format!("fetch at {offset}: record {i} has offset {} instead of {want}", r.offset)), recs, next);
        }
        if expected.get(want as usize) != Some(r) {
            return (Got::Wrong(format!("fetch at {offset}: record at {want} differs from what was appended: {r:?}")), recs, next);
        }
    }
    if let Some(last) = recs.last()
        && next != last.offset + 1
    {
        return (Got::Wrong(format!("fetch at {offset}: next_offset {next} after last record {}", last.offset)), recs, next);
    }
    (Got::Intact, recs, next)
}

/// Reads every offset of partition 0 one by one, and chained from log start.
pub fn read_report(log: &Log, expected: &[Rec]) -> ReadReport {
    let log_start = log.log_start_offset(TOPIC, 0).expect("log start");
    let hw = log.high_watermark(TOPIC, 0).expect("hw");
    let leo = log.log_end_offset(TOPIC, 0).expect("leo");
    let per_offset = (log_start..hw).map(|o| (o, fetch_one(log, expected, o, 1).0)).collect();
    let mut chained = Vec::new();
    let mut chained_stop = None;
    let mut at = log_start;
    while at < hw {
        let (got, recs, next) = fetch_one(log, expected, at, 700);
        if got != Got::Intact {
            chained_stop = Some(got);
            break;
        }
        chained.extend(recs);
        at = next;
    }
    ReadReport { log_start, high_watermark: hw, log_end: leo, per_offset, chained, chained_stop }
}

/// Appends one record and checks it lands at `at`.
pub fn append_lands_at(log: &Log, at: u64) {
    let r = log.append(TOPIC, Some(0), &[Record::new(b"after recovery").with_timestamp(timestamp_of(at))], Acks::All).expect("append");
    assert_eq!(r.base_offset, at, "the next append lands right after the data kept");
}

/// An entry of a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File { len: u64, contents: Option<Vec<u8>> },
    Link(PathBuf),
}

/// A recursive listing of a directory (symbolic links not followed), with the contents of every
/// file up to 16 MiB.
pub type Snapshot = BTreeMap<PathBuf, Entry>;

/// Snapshots `dir`.
pub fn snapshot(dir: &Path) -> Snapshot {
    snapshot_except(dir, Path::new("/nonexistent/never"))
}

/// Snapshots `dir`, leaving out the subtree `except`.
pub fn snapshot_except(dir: &Path, except: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, except: &Path, out: &mut Snapshot) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.expect("dir entry");
            let path = e.path();
            if path == except {
                continue;
            }
            let rel = path.strip_prefix(root).expect("prefix").to_path_buf();
            let md = fs::symlink_metadata(&path).expect("lstat");
            if md.file_type().is_symlink() {
                out.insert(rel, Entry::Link(fs::read_link(&path).expect("readlink")));
            } else if md.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &path, except, out);
            } else {
                let contents = (md.len() <= 16 << 20).then(|| fs::read(&path).expect("read"));
                out.insert(rel, Entry::File { len: md.len(), contents });
            }
        }
    }
    let mut out = Snapshot::new();
    walk(dir, dir, except, &mut out);
    out
}

/// Asserts two snapshots are equal, naming the first differences.
#[track_caller]
pub fn assert_same(before: &Snapshot, after: &Snapshot, what: &str) {
    if before == after {
        return;
    }
    let mut diffs = Vec::new();
    for (k, v) in before {
        match after.get(k) {
            None => diffs.push(format!("removed {}", k.display())),
            Some(w) if w != v => diffs.push(format!("changed {}", k.display())),
            _ => {}
        }
    }
    for k in after.keys() {
        if !before.contains_key(k) {
            diffs.push(format!("created {}", k.display()));
        }
    }
    panic!("{what} changed: {diffs:?}");
}

/// Copies a directory tree (regular files and directories only).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let t = e.file_type().expect("type");
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else if t.is_file() {
            fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A catalog file around `body`, with a valid CRC and body length.
pub fn catalog_bytes(version: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"RUNNELCT");
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Declares a test that runs its body through [`isolated`] (a child process with a heap cap and
/// a watchdog), named after the function.
macro_rules! hostile_test {
    ($(#[$m:meta])* fn $name:ident() $body:block) => {
        $(#[$m])*
        #[test]
        fn $name() {
            hostile_fixture::isolated(stringify!($name), || $body)
        }
    };
}

/// Peak resident set size of this process so far, in bytes (`VmHWM` of `/proc/self/status`):
/// file pages mapped and touched count, so it shows a mapping read end to end.
pub fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("VmHWM value") * 1024
}

/// Resets the peak resident set size to the current one (`echo 5 > /proc/self/clear_refs`).
pub fn reset_peak_rss() {
    fs::write("/proc/self/clear_refs", "5").expect("resetting VmHWM through /proc/self/clear_refs");
}
