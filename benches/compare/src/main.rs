//! runnel against what a user would pick instead, on the same machine, in one run: identical
//! workloads against runnel, a bare `write()` loop of the same framed bytes (the hardware limit
//! for appends) and a bare mmap scan (the limit for reads), SQLite used as a queue table (WAL), the
//! `commitlog` crate, fjall (an embedded LSM key-value store keyed by offset), and the `kafko`
//! crate (an in-process log with Kafka-like semantics, async on tokio).
//!
//!     cargo bench --manifest-path benches/compare/Cargo.toml            # full sizes
//!     cargo bench --manifest-path benches/compare/Cargo.toml -- --quick # a smoke run, < 2 min
//!
//! Prints one table (records/s, MB/s, ratio to the hardware baseline) and writes it as JSON to
//! `target/compare.json`. Each system gets its fairest setting for each workload, printed beside
//! it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use commitlog::message::MessageSet;
use serde_json::json;

/// One result row.
struct Row {
    workload: String,
    system: &'static str,
    setting: &'static str,
    records: u64,
    bytes: u64,
    seconds: f64,
}

/// A system under test: appends values in calls of `batch`, reads them back.
trait System {
    fn name(&self) -> &'static str;
    /// The setting used for page-cache appends (acks=1 equivalent) and for durable ones.
    fn setting(&self, durable: bool) -> &'static str;
    /// Appends `values` as one call (one batch / transaction / write).
    fn append(&mut self, values: &[&[u8]], durable: bool);
    /// Reads every record in order, handing each value to `f`; returns the count.
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64;
    /// Reads the record at `offset` (0-based, in append order), handing its value to `f`.
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8]));
    /// Reads the last record (after a reopen), handing its value to `f`.
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8]));
    /// Whether it can make an append durable (fsync) before returning.
    fn can_sync(&self) -> bool {
        true
    }
}

// ---- the hardware baseline: the same framed bytes, written with write(2); read back with mmap.

struct Bare {
    file: File,
    path: std::path::PathBuf,
    buf: Vec<u8>,
    offsets: Vec<(u64, u32)>,
    end: u64,
}

impl Bare {
    fn open(dir: &Path) -> Bare {
        let path = dir.join("bare.log");
        let file = OpenOptions::new().create(true).read(true).append(true).open(&path).expect("open");
        Bare { file, path, buf: Vec::new(), offsets: Vec::new(), end: 0 }
    }
}

impl System for Bare {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let (pos, len) = *self.offsets.last().expect("a record");
        let mut v = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut v, pos).expect("pread");
        f(&v);
    }
    fn name(&self) -> &'static str {
        "bare write()/mmap"
    }
    fn setting(&self, durable: bool) -> &'static str {
        if durable { "write + fdatasync" } else { "write, length-prefixed" }
    }
    fn append(&mut self, values: &[&[u8]], durable: bool) {
        self.buf.clear();
        for v in values {
            self.buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            self.offsets.push((self.end + self.buf.len() as u64 + 4, v.len() as u32));
            self.buf.extend_from_slice(v);
        }
        self.file.write_all(&self.buf).expect("write");
        self.end += self.buf.len() as u64;
        if durable {
            self.file.sync_data().expect("fdatasync");
        }
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let file = File::open(&self.path).expect("open");
        // SAFETY: the benchmark owns the file and nothing truncates it while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.expect("mmap");
        let mut pos = 0usize;
        let mut n = 0;
        while pos + 4 <= map.len() {
            let len = u32::from_le_bytes(map[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            f(&map[pos + 4..pos + 4 + len]);
            pos += 4 + len;
            n += 1;
        }
        n
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let (pos, len) = self.offsets[offset as usize];
        let mut v = vec![0u8; len as usize];
        std::os::unix::fs::FileExt::read_exact_at(&self.file, &mut v, pos).expect("pread");
        f(&v);
    }
}

// ---- runnel

struct Runnel {
    log: runnel::Log,
}

impl Runnel {
    fn open(dir: &Path) -> Runnel {
        let log = runnel::Log::open(dir.join("runnel"), runnel::LogOptions::default().background_maintenance(false)).expect("open");
        let mut c = runnel::TopicConfig::default();
        c.set("high.watermark", "written").expect("config");
        c.set("segment.bytes", &(256u64 << 20).to_string()).expect("config");
        log.create_topic("q", 1, c).expect("create");
        Runnel { log }
    }
}

impl System for Runnel {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let end = self.log.high_watermark("q", 0).expect("hw");
        self.read_at(end - 1, f);
    }
    fn name(&self) -> &'static str {
        "runnel"
    }
    fn setting(&self, durable: bool) -> &'static str {
        if durable { "acks=all" } else { "acks=1, high.watermark=written" }
    }
    fn append(&mut self, values: &[&[u8]], durable: bool) {
        let records: Vec<runnel::Record<'_>> = values.iter().map(|v| runnel::Record::new(v)).collect();
        let acks = if durable { runnel::Acks::All } else { runnel::Acks::One };
        self.log.append("q", Some(0), &records, acks).expect("append");
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let end = self.log.high_watermark("q", 0).expect("hw");
        let (mut offset, mut n) = (0, 0);
        while offset < end {
            let fetched = self.log.fetch("q", 0, offset, 1 << 20).expect("fetch");
            for r in fetched.records() {
                f(r.expect("record").value.unwrap_or_default());
                n += 1;
            }
            offset = fetched.next_offset();
        }
        n
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let fetched = self.log.fetch("q", 0, offset, 1).expect("fetch");
        let r = fetched.records().next().expect("a record").expect("record");
        f(r.value.unwrap_or_default());
    }
}

// ---- SQLite as a queue table

struct Sqlite {
    db: rusqlite::Connection,
    durable_mode: Option<bool>,
}

impl Sqlite {
    fn open(dir: &Path) -> Sqlite {
        let db = rusqlite::Connection::open(dir.join("queue.db")).expect("open");
        db.pragma_update(None, "journal_mode", "WAL").expect("wal");
        db.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)", []).expect("create");
        Sqlite { db, durable_mode: None }
    }
}

impl System for Sqlite {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let mut st = self.db.prepare("SELECT payload FROM q ORDER BY id DESC LIMIT 1").expect("prepare");
        let mut rows = st.query([]).expect("query");
        let row = rows.next().expect("row").expect("present");
        f(row.get_ref(0).expect("payload").as_blob().expect("blob"));
    }
    fn name(&self) -> &'static str {
        "SQLite (rusqlite)"
    }
    fn setting(&self, durable: bool) -> &'static str {
        if durable { "WAL, synchronous=FULL, 1 txn/call" } else { "WAL, synchronous=NORMAL, 1 txn/call" }
    }
    fn append(&mut self, values: &[&[u8]], durable: bool) {
        if self.durable_mode != Some(durable) {
            self.db.pragma_update(None, "synchronous", if durable { "FULL" } else { "NORMAL" }).expect("pragma");
            self.durable_mode = Some(durable);
        }
        let tx = self.db.transaction().expect("begin");
        {
            let mut st = tx.prepare_cached("INSERT INTO q (payload) VALUES (?1)").expect("prepare");
            for v in values {
                st.execute([v]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut st = self.db.prepare_cached("SELECT payload FROM q ORDER BY id").expect("prepare");
        let mut rows = st.query([]).expect("query");
        let mut n = 0;
        while let Some(row) = rows.next().expect("row") {
            let v = row.get_ref(0).expect("payload").as_blob().expect("blob");
            f(v);
            n += 1;
        }
        n
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let mut st = self.db.prepare_cached("SELECT payload FROM q WHERE id = ?1").expect("prepare");
        let mut rows = st.query([offset as i64 + 1]).expect("query");
        let row = rows.next().expect("row").expect("present");
        f(row.get_ref(0).expect("payload").as_blob().expect("blob"));
    }
}

// ---- the commitlog crate

struct CommitLog {
    log: commitlog::CommitLog,
}

impl CommitLog {
    fn open(dir: &Path) -> CommitLog {
        let mut opts = commitlog::LogOptions::new(dir.join("commitlog"));
        opts.segment_max_bytes(256 << 20);
        opts.message_max_bytes(1 << 20);
        CommitLog { log: commitlog::CommitLog::new(opts).expect("open") }
    }
}

impl System for CommitLog {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let last = self.log.last_offset().expect("a record");
        self.read_at(last, f);
    }
    fn name(&self) -> &'static str {
        "commitlog 0.2"
    }
    fn setting(&self, _durable: bool) -> &'static str {
        "append (write(2) to the segment)"
    }
    fn can_sync(&self) -> bool {
        // Its `flush` is `File::flush`, which does not reach the disk: no durable append.
        false
    }
    fn append(&mut self, values: &[&[u8]], _durable: bool) {
        if values.len() == 1 {
            self.log.append_msg(values[0]).expect("append");
        } else {
            let mut buf = commitlog::message::MessageBuf::default();
            for v in values {
                buf.push(v).expect("push");
            }
            self.log.append(&mut buf).expect("append");
        }
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let (mut offset, mut n) = (0u64, 0u64);
        let end = self.log.next_offset();
        while offset < end {
            let msgs = self.log.read(offset, commitlog::ReadLimit::max_bytes(1 << 20)).expect("read");
            let mut last = offset;
            for m in msgs.iter() {
                f(m.payload());
                last = m.offset();
                n += 1;
            }
            offset = last + 1;
        }
        n
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let msgs = self.log.read(offset, commitlog::ReadLimit::max_bytes(4096)).expect("read");
        let m = msgs.iter().next().expect("a message");
        f(m.payload());
    }
}

// ---- fjall, keyed by offset

struct Fjall {
    keyspace: fjall::Keyspace,
    part: fjall::PartitionHandle,
    next: u64,
}

impl Fjall {
    fn open(dir: &Path) -> Fjall {
        let keyspace = fjall::Config::new(dir.join("fjall")).open().expect("open");
        let part = keyspace.open_partition("q", fjall::PartitionCreateOptions::default()).expect("partition");
        Fjall { keyspace, part, next: 0 }
    }
}

impl System for Fjall {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let (_, v) = self.part.iter().next_back().expect("a record").expect("kv");
        f(&v);
    }
    fn name(&self) -> &'static str {
        "fjall 2 (key = offset)"
    }
    fn setting(&self, durable: bool) -> &'static str {
        if durable { "batch commit + persist(SyncData)" } else { "batch commit + persist(Buffer)" }
    }
    fn append(&mut self, values: &[&[u8]], durable: bool) {
        let mut batch = self.keyspace.batch();
        for v in values {
            batch.insert(&self.part, self.next.to_be_bytes(), *v);
            self.next += 1;
        }
        batch.commit().expect("commit");
        let mode = if durable { fjall::PersistMode::SyncData } else { fjall::PersistMode::Buffer };
        self.keyspace.persist(mode).expect("persist");
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for kv in self.part.iter() {
            let (_, v) = kv.expect("kv");
            f(&v);
            n += 1;
        }
        n
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let v = self.part.get(offset.to_be_bytes()).expect("get").expect("present");
        f(&v);
    }
}

// ---- kafko, async on tokio: every call driven to completion with `block_on`

/// The tokio runtime kafko's calls are driven on, each flavour built once for the whole run and
/// never inside a timed region. Current-thread for one caller: kafko's partition writer task then
/// runs on the calling thread, where a multi-thread runtime costs a cross-thread wake-up each way
/// per call (measured: 5-10 times slower for one record per call). Multi-thread for the workload
/// where 8 threads call at once.
fn tokio_runtime(multi_thread: bool) -> &'static tokio::runtime::Runtime {
    static CURRENT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static MULTI: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    // kafko's writer task keeps a retention timer, so the runtime needs the time driver.
    if multi_thread {
        MULTI.get_or_init(|| tokio::runtime::Builder::new_multi_thread().enable_time().build().expect("runtime"))
    } else {
        CURRENT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime"))
    }
}

struct Kafko {
    rt: &'static tokio::runtime::Runtime,
    /// The broker and the handles on its one-partition topic `q`; `None` only inside `drop`.
    open: Option<(kafko::Kafko, kafko::Producer, Arc<kafko::Topic>)>,
}

impl Kafko {
    /// Opens (or recovers) kafko in `dir`, with the segment size fairest for `purpose`: its default
    /// of 1 GiB to append to and reopen, and 64 KiB to read from, because every read of a record
    /// (`Log::read_record_at`, under both `Consumer::next_record` and `Partition::read_record_at`)
    /// copies the whole rest of its segment. Smaller segments read faster still but cost two open
    /// files each: 32 KiB ran out of descriptors (20 000 here) on the full-size fill.
    fn open(dir: &Path, purpose: Purpose, rt: &'static tokio::runtime::Runtime) -> Kafko {
        let segment_size_threshold = match purpose {
            Purpose::Append => kafko::LogConfig::default().segment_size_threshold,
            Purpose::Read => 64 << 10,
        };
        // kafko does not store its LogConfig: a reopen must pass the same one.
        let config = kafko::LogConfig { segment_size_threshold, ..kafko::LogConfig::default() };
        rt.block_on(async {
            let broker = kafko::Kafko::open_with_config(dir.join("kafko"), config).await.expect("open");
            if !broker.has_topic("q").await {
                broker.create_topic("q").await.expect("create");
            }
            let producer = broker.producer_for("q").await.expect("producer");
            let topic = broker.topic("q").await.expect("topic");
            Kafko { rt, open: Some((broker, producer, topic)) }
        })
    }

    fn partition(&self) -> &kafko::Partition {
        self.open.as_ref().expect("open").2.partition(0).expect("partition 0")
    }

    /// One call: `send` for one value, `send_batch` (one atomic append) for more; then, if durable,
    /// `Partition::sync` (fdatasync of the segment and of its index). One thread or eight.
    fn send(&self, values: &[&[u8]], durable: bool) {
        let (_, producer, _) = self.open.as_ref().expect("open");
        self.rt.block_on(async {
            if let [value] = values {
                producer.send(None, bytes::Bytes::copy_from_slice(value)).await.expect("send");
            } else {
                let batch = values.iter().map(|v| (None, bytes::Bytes::copy_from_slice(v))).collect();
                producer.send_batch(batch).await.expect("send_batch");
            }
            if durable {
                self.partition().sync().await.expect("sync");
            }
        });
    }
}

impl Drop for Kafko {
    /// A clean close: `Kafko::shutdown` stops each writer task and fsyncs, but skips a topic that
    /// a handle still points to, so the handles go first.
    fn drop(&mut self) {
        let (broker, producer, topic) = self.open.take().expect("open");
        drop((producer, topic));
        self.rt.block_on(broker.shutdown()).expect("shutdown");
    }
}

impl System for Kafko {
    fn scan_last(&mut self, f: &mut dyn FnMut(&[u8])) {
        let end = self.partition().high_water_mark();
        self.read_at(end - 1, f);
    }
    fn name(&self) -> &'static str {
        "kafko 0.3"
    }
    fn setting(&self, durable: bool) -> &'static str {
        if durable { "send(_batch) + Partition::sync, current-thread rt" } else { "send(_batch), 1 GiB segments, current-thread rt" }
    }
    fn append(&mut self, values: &[&[u8]], durable: bool) {
        self.send(values, durable);
    }
    fn scan(&mut self, f: &mut dyn FnMut(&[u8])) -> u64 {
        let (broker, _, _) = self.open.as_ref().expect("open");
        let end = self.partition().high_water_mark();
        self.rt.block_on(async {
            // An anonymous consumer starts at offset 0; past the end `next_record` would wait.
            let mut consumer = broker.consumer_for("q").await.expect("consumer");
            for _ in 0..end {
                f(consumer.next_record().await.expect("next_record").value());
            }
        });
        end
    }
    fn read_at(&mut self, offset: u64, f: &mut dyn FnMut(&[u8])) {
        let record = self.rt.block_on(self.partition().read_record_at(offset)).expect("read").expect("present");
        f(record.value());
    }
}

/// `threads` threads each make `per_thread` durable one-record appends to `system`; the seconds
/// from the first to the last.
fn durable_threads(dir: &Path, system: &str, threads: u64, per_thread: u64) -> f64 {
    let value = payload(100, 3);
    let barrier = std::sync::Barrier::new(threads as usize);
    let run = |work: &(dyn Fn() + Sync)| {
        let started = std::sync::Mutex::new(None::<Instant>);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        started.lock().expect("lock").get_or_insert_with(Instant::now);
                        for _ in 0..per_thread {
                            work();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("thread");
            }
            started.lock().expect("lock").expect("started").elapsed().as_secs_f64()
        })
    };
    match system {
        "bare write()/mmap" => {
            let file = std::sync::Mutex::new(OpenOptions::new().create(true).append(true).open(dir.join("bare.log")).expect("open"));
            let mut framed = (value.len() as u32).to_le_bytes().to_vec();
            framed.extend_from_slice(&value);
            run(&|| {
                let mut f = file.lock().expect("lock");
                f.write_all(&framed).expect("write");
                f.sync_data().expect("fdatasync");
            })
        }
        "runnel" => {
            let r = Runnel::open(dir);
            run(&|| {
                r.log.append("q", Some(0), &[runnel::Record::new(&value)], runnel::Acks::All).expect("append");
            })
        }
        "SQLite (rusqlite)" => {
            drop(Sqlite::open(dir));
            let path = dir.join("queue.db");
            thread_local! {
                static CONN: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
            }
            run(&|| {
                CONN.with(|c| {
                    let mut c = c.borrow_mut();
                    let db = c.get_or_insert_with(|| {
                        let db = rusqlite::Connection::open(&path).expect("open");
                        db.busy_timeout(std::time::Duration::from_secs(30)).expect("busy timeout");
                        db.pragma_update(None, "synchronous", "FULL").expect("pragma");
                        db
                    });
                    db.execute("INSERT INTO q (payload) VALUES (?1)", [&value]).expect("insert");
                })
            })
        }
        "fjall 2 (key = offset)" => {
            let f = Fjall::open(dir);
            let next = std::sync::atomic::AtomicU64::new(0);
            run(&|| {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                f.part.insert(k.to_be_bytes(), value.as_slice()).expect("insert");
                f.keyspace.persist(fjall::PersistMode::SyncData).expect("persist");
            })
        }
        "kafko 0.3" => {
            let k = Kafko::open(dir, Purpose::Append, tokio_runtime(true));
            run(&|| k.send(&[&value], true))
        }
        other => panic!("no 8-thread durable workload for {other}"),
    }
}

/// What the systems are opened for, for a system whose fairest setting differs between the two.
#[derive(Clone, Copy)]
enum Purpose {
    /// The append workloads, and the log that the recovery workload reopens.
    Append,
    /// A fill that is then read back.
    Read,
}

fn systems(dir: &Path, purpose: Purpose) -> Vec<Box<dyn System>> {
    vec![
        Box::new(Bare::open(dir)),
        Box::new(Runnel::open(dir)),
        Box::new(Sqlite::open(dir)),
        Box::new(CommitLog::open(dir)),
        Box::new(Fjall::open(dir)),
        Box::new(Kafko::open(dir, purpose, tokio_runtime(false))),
    ]
}

fn payload(len: usize, i: u64) -> Vec<u8> {
    (0..len).map(|j| (i as usize).wrapping_mul(31).wrapping_add(j) as u8).collect()
}

/// A directory on the real disk (target/, not a tmpfs /tmp), after a sync so that no run pays for
/// the write-back of the one before.
fn fresh_dir() -> tempfile::TempDir {
    rustix::fs::sync();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/compare-tmp");
    std::fs::create_dir_all(&root).expect("create target/compare-tmp");
    tempfile::tempdir_in(root).expect("tempdir")
}

/// The child of the recovery workload: fills `system` in `dir` with `bytes` of 1 KiB records, 100
/// per call, then either closes it cleanly or exits without closing anything (an unclean
/// shutdown: nothing is flushed or marked, as after a crash of the process).
fn write_child(system: &str, dir: &Path, bytes: u64, clean: bool) {
    let values: Vec<Vec<u8>> = (0..100).map(|i| payload(1024, i)).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    let mut s = systems(dir, Purpose::Append).into_iter().find(|s| s.name() == system).expect("a system");
    for _ in 0..bytes / (100 * 1024) {
        s.append(&refs, false);
    }
    if clean {
        drop(s);
        std::process::exit(0);
    }
    // Unclean: no destructor runs.
    std::mem::forget(s);
    std::process::exit(0);
}

/// Opens `system` in `dir` (as the program's next start would) and reads its last record: the
/// time a user waits before the log is usable.
fn time_open(system: &str, dir: &Path) -> f64 {
    let rt = tokio_runtime(false); // built before the clock starts
    let started = Instant::now();
    let mut s = match system {
        "runnel" => {
            let log = runnel::Log::open(dir.join("runnel"), runnel::LogOptions::default().background_maintenance(false)).expect("open");
            Box::new(Runnel { log }) as Box<dyn System>
        }
        "SQLite (rusqlite)" => {
            let db = rusqlite::Connection::open(dir.join("queue.db")).expect("open");
            Box::new(Sqlite { db, durable_mode: None })
        }
        "commitlog 0.2" => {
            let mut opts = commitlog::LogOptions::new(dir.join("commitlog"));
            opts.segment_max_bytes(256 << 20);
            opts.message_max_bytes(1 << 20);
            Box::new(CommitLog { log: commitlog::CommitLog::new(opts).expect("open") })
        }
        "fjall 2 (key = offset)" => Box::new(Fjall::open(dir)),
        "kafko 0.3" => Box::new(Kafko::open(dir, Purpose::Append, rt)),
        other => panic!("no recovery workload for {other}"),
    };
    let mut last = 0;
    s.scan_last(&mut |v| last = v.len());
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(last, 1024, "{system}: the last record after the reopen");
    secs
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--write-child") {
        let bytes = args[i + 3].parse().expect("bytes");
        write_child(&args[i + 1], Path::new(&args[i + 2]), bytes, args[i + 4] == "clean");
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let scale: u64 = if quick { 1 } else { 10 };
    let mut rows: Vec<Row> = Vec::new();

    // Appends to the page cache: 100 B and 1 KiB values, 1 and 100 per call.
    for (size, per_call, total) in [(100usize, 1usize, 100_000u64), (100, 100, 1_000_000), (1024, 1, 50_000), (1024, 100, 200_000)] {
        let total = total * scale;
        let values: Vec<Vec<u8>> = (0..per_call as u64).map(|i| payload(size, i)).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let n_systems = systems(fresh_dir().path(), Purpose::Append).len();
        for i in 0..n_systems {
            let dir = fresh_dir();
            let mut s = systems(dir.path(), Purpose::Append).swap_remove(i);
            let started = Instant::now();
            for _ in 0..total / per_call as u64 {
                s.append(&refs, false);
            }
            let secs = started.elapsed().as_secs_f64();
            let records = total / per_call as u64 * per_call as u64;
            rows.push(Row {
                workload: format!("append {size} B, {per_call}/call, page cache"),
                system: s.name(),
                setting: s.setting(false),
                records,
                bytes: records * size as u64,
                seconds: secs,
            });
        }
    }

    // Durable appends, one 100 B record per call from one thread.
    let durable = if quick { 300 } else { 3_000 };
    let value = payload(100, 7);
    for i in 0..systems(fresh_dir().path(), Purpose::Append).len() {
        let dir = fresh_dir();
        let mut s = systems(dir.path(), Purpose::Append).swap_remove(i);
        if !s.can_sync() {
            continue;
        }
        let started = Instant::now();
        for _ in 0..durable {
            s.append(&[&value], true);
        }
        let secs = started.elapsed().as_secs_f64();
        rows.push(Row {
            workload: "durable append 100 B, 1/call, 1 thread".into(),
            system: s.name(),
            setting: s.setting(true),
            records: durable,
            bytes: durable * 100,
            seconds: secs,
        });
    }

    // Durable appends from 8 threads at once, one 100 B record per call each: what group commit
    // buys. Each system shared the way its documentation says to share it.
    let per_thread = if quick { 100 } else { 1_000 };
    for (name, setting) in [
        ("bare write()/mmap", "one file under a mutex: write + fdatasync per call"),
        ("runnel", "one Log shared by the threads, acks=all"),
        ("SQLite (rusqlite)", "a connection per thread, WAL, synchronous=FULL, busy_timeout"),
        ("fjall 2 (key = offset)", "one keyspace shared, insert + persist(SyncData)"),
        ("kafko 0.3", "one Kafko shared, multi-thread rt: send + Partition::sync"),
    ] {
        let dir = fresh_dir();
        let secs = durable_threads(dir.path(), name, 8, per_thread);
        let records = 8 * per_thread;
        rows.push(Row {
            workload: "durable append 100 B, 1/call, 8 threads".into(),
            system: name,
            setting,
            records,
            bytes: records * 100,
            seconds: secs,
        });
    }

    // Reads: fill each system with 100 B records, 100 per call, then read them all in order,
    // touching every byte, and at random offsets.
    let fill = 200_000 * scale;
    let values: Vec<Vec<u8>> = (0..100).map(|i| payload(100, i)).collect();
    let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
    for i in 0..systems(fresh_dir().path(), Purpose::Read).len() {
        let dir = fresh_dir();
        let mut s = systems(dir.path(), Purpose::Read).swap_remove(i);
        for _ in 0..fill / 100 {
            s.append(&refs, false);
        }
        let mut sum = 0u64;
        let started = Instant::now();
        let n = s.scan(&mut |v| sum = v.iter().fold(sum, |a, &b| a.wrapping_add(u64::from(b))));
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(n, fill, "{} read back {n} of {fill} records", s.name());
        std::hint::black_box(sum);
        let setting = match s.name() {
            "runnel" => "fetch 1 MiB at a time",
            "bare write()/mmap" => "mmap, walk the length prefixes",
            "SQLite (rusqlite)" => "SELECT ... ORDER BY id",
            "commitlog 0.2" => "read 1 MiB at a time",
            "kafko 0.3" => "Consumer::next_record, 64 KiB segments",
            _ => "iterate the partition",
        };
        rows.push(Row {
            workload: "sequential read 100 B, every byte".into(),
            system: s.name(),
            setting,
            records: n,
            bytes: n * 100,
            seconds: secs,
        });
        let reads = fill / 20;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let started = Instant::now();
        for _ in 0..reads {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.read_at(x % fill, &mut |v| sum = sum.wrapping_add(v.len() as u64));
        }
        let secs = started.elapsed().as_secs_f64();
        std::hint::black_box(sum);
        rows.push(Row {
            workload: "random-offset read 100 B".into(),
            system: s.name(),
            setting: if s.name() == "kafko 0.3" { "Partition::read_record_at, 64 KiB segments" } else { "one record per read" },
            records: reads,
            bytes: reads * 100,
            seconds: secs,
        });
    }

    // Open and recovery time of a log of 1 GiB (64 MiB with --quick) of 1 KiB records, after a
    // clean close and after the writing process exited without closing (a crash: nothing flushed
    // to user-space buffers is lost here, as the page cache survives a process exit).
    let gib: u64 = if quick { 64 << 20 } else { 1 << 30 };
    let exe = std::env::current_exe().expect("current exe");
    for clean in [true, false] {
        for name in ["runnel", "SQLite (rusqlite)", "commitlog 0.2", "fjall 2 (key = offset)", "kafko 0.3"] {
            let dir = fresh_dir();
            let status = std::process::Command::new(&exe)
                .args(["--write-child", name, &dir.path().display().to_string(), &gib.to_string(), if clean { "clean" } else { "crash" }])
                .status()
                .expect("run the writer");
            assert!(status.success(), "the {name} writer failed");
            rustix::fs::sync();
            let secs = time_open(name, dir.path());
            let records = gib / 1024;
            rows.push(Row {
                workload: format!("open {} MiB after a {} shutdown", gib >> 20, if clean { "clean" } else { "process-crash" }),
                system: name,
                setting: if name == "kafko 0.3" {
                    "open (CRC-scans the last segment), then read the last record"
                } else {
                    "open, then read the last record"
                },
                records,
                bytes: gib,
                seconds: secs,
            });
        }
    }

    // The table, with each row's ratio to the hardware baseline of its workload.
    println!(
        "{:<44} {:<24} {:<40} {:>14} {:>10} {:>8} {:>10}",
        "workload", "system", "setting", "records/s", "MB/s", "vs bare", "time (ms)"
    );
    let mut json_rows = Vec::new();
    for r in &rows {
        let rate = r.records as f64 / r.seconds;
        let base = rows.iter().find(|b| b.workload == r.workload && b.system == "bare write()/mmap").map(|b| b.records as f64 / b.seconds);
        let ratio = base.map_or(f64::NAN, |b| rate / b);
        println!(
            "{:<44} {:<24} {:<40} {:>14.0} {:>10.1} {:>8.2} {:>10.1}",
            r.workload,
            r.system,
            r.setting,
            rate,
            r.bytes as f64 / r.seconds / 1e6,
            ratio,
            r.seconds * 1e3
        );
        json_rows.push(json!({"workload": r.workload, "system": r.system, "setting": r.setting, "records": r.records,
            "seconds": r.seconds, "records_per_sec": rate, "mb_per_sec": r.bytes as f64 / r.seconds / 1e6, "ratio_to_bare": ratio}));
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/compare.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json_rows).expect("json")).expect("write compare.json");
    println!("written to {}", out.display());
}
