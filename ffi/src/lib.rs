//! The C ABI of runnel (`include/runnel.h`, generated from this file by cbindgen).
//!
//! Conventions, after sqlite3.h and rustls-ffi:
//!
//! - One prefix, `runnel_`. Every fallible call returns a [`runnel_result`]; `RUNNEL_OK` is 0.
//!   After a failure, [`runnel_last_error`] gives a message for it (per thread).
//! - Objects are opaque handles created by a `runnel_*_new`/`runnel_open`/`runnel_fetch` call and
//!   released by the matching `*_free`/`runnel_close`. A handle is never dereferenced by this
//!   library: it is looked up in a table of live handles, so NULL, a freed handle, a double free or
//!   a handle of the wrong type is an error code (`RUNNEL_INVALID_HANDLE`), not a crash.
//! - Pointers the caller passes in are read only during the call, unless documented otherwise;
//!   pointers handed out (record views, strings of lists) stay valid until the object they come
//!   from is freed.
//! - No panic crosses the boundary: one would be caught and reported as `RUNNEL_PANIC`.
//! - A `runnel_log` may be used from any number of threads at once; every other handle from one
//!   thread at a time (it may move between threads).

#![allow(non_camel_case_types, reason = "C names, as the header spells them")]

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int};
use std::os::fd::BorrowedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use runnel::{Acks, Error, IsolationLevel, Log, LogOptions, OffsetCommit, Record, TopicConfig};

/// The library's major version.
pub const RUNNEL_VERSION_MAJOR: u32 = 0;
/// The library's minor version.
pub const RUNNEL_VERSION_MINOR: u32 = 1;
/// The library's patch version.
pub const RUNNEL_VERSION_PATCH: u32 = 0;
/// `MAJOR * 1000000 + MINOR * 1000 + PATCH`, as [`runnel_version_number`] returns it.
pub const RUNNEL_VERSION_NUMBER: u32 = RUNNEL_VERSION_MAJOR * 1_000_000 + RUNNEL_VERSION_MINOR * 1000 + RUNNEL_VERSION_PATCH;
/// A record timestamp meaning "now, at append" (Kafka's `NO_TIMESTAMP`).
pub const RUNNEL_NO_TIMESTAMP: i64 = -1;
/// A partition argument meaning "let the default partitioner choose" (murmur2 of the key, or
/// round-robin without one).
pub const RUNNEL_ANY_PARTITION: i64 = -1;
/// acks=0: the append returns once the batch is in the page cache (the engine does the same work
/// as for acks=1).
pub const RUNNEL_ACKS_NONE: i32 = 0;
/// acks=1: the batch is in the OS page cache when the append returns.
pub const RUNNEL_ACKS_LEADER: i32 = 1;
/// acks=all: the batch is fsync'd when the append returns (group commit).
pub const RUNNEL_ACKS_ALL: i32 = -1;
/// Fetch every record below the high watermark.
pub const RUNNEL_READ_UNCOMMITTED: i32 = 0;
/// Fetch only committed records (stop at the last stable offset, skip aborted transactions).
pub const RUNNEL_READ_COMMITTED: i32 = 1;

/// The outcome of a call. Values are stable; new ones may be added.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum runnel_result {
    /// Success.
    RUNNEL_OK = 0,
    /// A required pointer argument was NULL.
    RUNNEL_NULL_ARGUMENT = 1,
    /// A string argument is not valid UTF-8.
    RUNNEL_INVALID_UTF8 = 2,
    /// runnel panicked (a bug); the call had no effect that can be relied on.
    RUNNEL_PANIC = 3,
    /// The handle is not a live object of the expected type (freed, closed, or something else).
    RUNNEL_INVALID_HANDLE = 4,
    /// Another writer holds the data directory.
    RUNNEL_LOCKED = 5,
    /// The topic name breaks Kafka's naming rules.
    RUNNEL_INVALID_TOPIC = 10,
    /// The topic already exists.
    RUNNEL_TOPIC_EXISTS = 11,
    /// The topic or partition does not exist.
    RUNNEL_UNKNOWN_TOPIC_OR_PARTITION = 12,
    /// An argument or setting is not acceptable.
    RUNNEL_INVALID_ARGUMENT = 13,
    /// The offset is outside the log.
    RUNNEL_OFFSET_OUT_OF_RANGE = 14,
    /// A batch is larger than the topic's `max.message.bytes`.
    RUNNEL_RECORD_TOO_LARGE = 15,
    /// Bytes on disk are not what runnel wrote.
    RUNNEL_CORRUPT = 16,
    /// An operating-system call failed.
    RUNNEL_IO = 17,
    /// The partition refuses writes after an earlier I/O failure; reopen the log.
    RUNNEL_POISONED = 18,
    /// The handle is read-only (or the topic is internal).
    RUNNEL_READ_ONLY = 19,
    /// The log was closed.
    RUNNEL_CLOSED = 20,
    /// A newer incarnation of the producer exists.
    RUNNEL_PRODUCER_FENCED = 21,
    /// An idempotent producer's batch skipped a sequence number.
    RUNNEL_OUT_OF_ORDER_SEQUENCE = 22,
    /// The partition has no state for the producer id.
    RUNNEL_UNKNOWN_PRODUCER_ID = 23,
    /// A transactional call out of turn.
    RUNNEL_INVALID_TRANSACTION_STATE = 24,
    /// A call waited as long as it was allowed to.
    RUNNEL_TIMEOUT = 25,
    /// A consumer's commit was refused: the group moved the partition on.
    RUNNEL_COMMIT_FAILED = 26,
    /// An iterator has no more items (not an error).
    RUNNEL_DONE = 100,
}

use runnel_result::*;

fn code_of(e: &Error) -> runnel_result {
    match e {
        Error::Locked { .. } => RUNNEL_LOCKED,
        Error::InvalidTopic { .. } => RUNNEL_INVALID_TOPIC,
        Error::TopicExists { .. } => RUNNEL_TOPIC_EXISTS,
        Error::UnknownTopicOrPartition { .. } => RUNNEL_UNKNOWN_TOPIC_OR_PARTITION,
        Error::InvalidArgument(_) => RUNNEL_INVALID_ARGUMENT,
        Error::OffsetOutOfRange { .. } => RUNNEL_OFFSET_OUT_OF_RANGE,
        Error::RecordTooLarge { .. } => RUNNEL_RECORD_TOO_LARGE,
        Error::Corrupt { .. } => RUNNEL_CORRUPT,
        Error::Io { .. } => RUNNEL_IO,
        Error::Poisoned { .. } => RUNNEL_POISONED,
        Error::ReadOnly(_) => RUNNEL_READ_ONLY,
        Error::Closed => RUNNEL_CLOSED,
        Error::ProducerFenced { .. } => RUNNEL_PRODUCER_FENCED,
        Error::OutOfOrderSequence { .. } => RUNNEL_OUT_OF_ORDER_SEQUENCE,
        Error::UnknownProducerId { .. } => RUNNEL_UNKNOWN_PRODUCER_ID,
        Error::InvalidTransactionState(_) => RUNNEL_INVALID_TRANSACTION_STATE,
        Error::Timeout(_) => RUNNEL_TIMEOUT,
        Error::CommitFailed(_) => RUNNEL_COMMIT_FAILED,
        _ => RUNNEL_INVALID_ARGUMENT,
    }
}

// ---------------------------------------------------------------------------------------------
// Errors: a failure is a code plus a message kept per thread.

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// A failed call: its code and message.
struct Failure(runnel_result, String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure(code_of(&e), e.to_string())
    }
}

type Outcome<T = ()> = Result<T, Failure>;

fn fail<T>(code: runnel_result, msg: impl Into<String>) -> Outcome<T> {
    Err(Failure(code, msg.into()))
}

/// Runs `f`, turning its failure (or a panic) into a result code and the thread's last message.
fn guard(f: impl FnOnce() -> Outcome) -> runnel_result {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return RUNNEL_OK,
        Ok(Err(f)) => f,
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
            Failure(RUNNEL_PANIC, format!("runnel panicked (a bug): {}", what.unwrap_or_default()))
        }
    };
    let msg = CString::new(failure.1.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
    failure.0
}

/// The message of the last call that failed on this thread (empty if none has). Valid until the
/// next call that fails on this thread; never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// The name of a result code, such as `"RUNNEL_LOCKED"` (`"RUNNEL_UNKNOWN"` for a number that is
/// not one); a static string, never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_result_name(result: c_int) -> *const c_char {
    let s: &'static CStr = match result {
        0 => c"RUNNEL_OK",
        1 => c"RUNNEL_NULL_ARGUMENT",
        2 => c"RUNNEL_INVALID_UTF8",
        3 => c"RUNNEL_PANIC",
        4 => c"RUNNEL_INVALID_HANDLE",
        5 => c"RUNNEL_LOCKED",
        10 => c"RUNNEL_INVALID_TOPIC",
        11 => c"RUNNEL_TOPIC_EXISTS",
        12 => c"RUNNEL_UNKNOWN_TOPIC_OR_PARTITION",
        13 => c"RUNNEL_INVALID_ARGUMENT",
        14 => c"RUNNEL_OFFSET_OUT_OF_RANGE",
        15 => c"RUNNEL_RECORD_TOO_LARGE",
        16 => c"RUNNEL_CORRUPT",
        17 => c"RUNNEL_IO",
        18 => c"RUNNEL_POISONED",
        19 => c"RUNNEL_READ_ONLY",
        20 => c"RUNNEL_CLOSED",
        21 => c"RUNNEL_PRODUCER_FENCED",
        22 => c"RUNNEL_OUT_OF_ORDER_SEQUENCE",
        23 => c"RUNNEL_UNKNOWN_PRODUCER_ID",
        24 => c"RUNNEL_INVALID_TRANSACTION_STATE",
        25 => c"RUNNEL_TIMEOUT",
        26 => c"RUNNEL_COMMIT_FAILED",
        100 => c"RUNNEL_DONE",
        _ => c"RUNNEL_UNKNOWN",
    };
    s.as_ptr()
}

/// The library version as a string, such as `"0.1.0"`; static, never NULL.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_version() -> *const c_char {
    const V: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    V.as_ptr()
}

/// The library version as `MAJOR * 1000000 + MINOR * 1000 + PATCH`: compare it with
/// `RUNNEL_VERSION_NUMBER` to check that the header and the library agree.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_version_number() -> u32 {
    RUNNEL_VERSION_NUMBER
}

// ---------------------------------------------------------------------------------------------
// Handles: a table of live objects, by the address handed out.

/// An open data directory. Thread-safe.
pub struct runnel_log {
    _private: [u8; 0],
}
/// The result of a fetch: record views that stay valid until it is freed. One thread at a time.
pub struct runnel_fetched {
    _private: [u8; 0],
}
/// A list of strings (topic or group names). One thread at a time.
pub struct runnel_string_list {
    _private: [u8; 0],
}
/// A topic's description. One thread at a time.
pub struct runnel_topic_description {
    _private: [u8; 0],
}
/// A group's lag per partition. One thread at a time.
pub struct runnel_lag_list {
    _private: [u8; 0],
}
/// An idempotent producer. Thread-safe.
pub struct runnel_idempotent_producer {
    _private: [u8; 0],
}
/// A transactional producer. Thread-safe (calls are serialized).
pub struct runnel_transactional_producer {
    _private: [u8; 0],
}

/// An open log, and whether `runnel_close` has begun (waiters in `runnel_fetch_wait` stop early).
pub(crate) struct LogObject {
    log: Log,
    closing: std::sync::atomic::AtomicBool,
}

impl std::ops::Deref for LogObject {
    type Target = Log;
    fn deref(&self) -> &Log {
        &self.log
    }
}

enum Object {
    Log(Arc<LogObject>),
    Fetch(Arc<FetchObject>),
    Strings(Arc<StringList>),
    Topic(Arc<TopicObject>),
    Lag(Arc<LagObject>),
    Idempotent(Arc<runnel::IdempotentProducer>),
    Transactional(Arc<runnel::TransactionalProducer>),
    Producer(Arc<runnel::clients::Producer>),
    Consumer(Arc<std::sync::Mutex<runnel::clients::Consumer>>),
    Polled(Arc<clients::PolledObject>),
}

static LIVE: LazyLock<RwLock<HashMap<usize, Object>>> = LazyLock::new(Default::default);

/// Registers an object and returns its handle: a number from a counter that never repeats (not an
/// address, which the allocator reuses), so a freed handle can never alias a newer object. It is
/// never dereferenced.
fn register(object: Object) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // Multiples of 16, never 0: they look like the aligned pointers C code expects handles to be.
    let id = (NEXT.fetch_add(1, Ordering::Relaxed) + 1) * 16;
    LIVE.write().unwrap_or_else(|e| e.into_inner()).insert(id, object);
    id
}

macro_rules! lookup {
    ($fn:ident, $variant:ident, $handle:ty, $t:ty, $what:literal) => {
        fn $fn(h: *const $handle) -> Outcome<Arc<$t>> {
            if h.is_null() {
                return fail(RUNNEL_NULL_ARGUMENT, concat!("the ", $what, " handle is NULL"));
            }
            match LIVE.read().unwrap_or_else(|e| e.into_inner()).get(&(h as usize)) {
                Some(Object::$variant(o)) => Ok(o.clone()),
                _ => fail(RUNNEL_INVALID_HANDLE, concat!("not a live ", $what, " handle (freed, closed, or another type)")),
            }
        }
    };
}

lookup!(log_of, Log, runnel_log, LogObject, "runnel_log");
lookup!(fetch_of, Fetch, runnel_fetched, FetchObject, "runnel_fetched");
lookup!(strings_of, Strings, runnel_string_list, StringList, "runnel_string_list");
lookup!(topic_of, Topic, runnel_topic_description, TopicObject, "runnel_topic_description");
lookup!(lag_of, Lag, runnel_lag_list, LagObject, "runnel_lag_list");
lookup!(idempotent_of, Idempotent, runnel_idempotent_producer, runnel::IdempotentProducer, "runnel_idempotent_producer");
lookup!(transactional_of, Transactional, runnel_transactional_producer, runnel::TransactionalProducer, "runnel_transactional_producer");

// After `lookup!`, which it uses.
mod clients;
pub use clients::*;

/// Number of handles created and not yet freed or closed, of every type: a program (or its test)
/// that checks this is 0 at the end has released everything. The table keeps unreleased objects
/// reachable, so leak checkers cannot see them; this can.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_live_handles() -> usize {
    LIVE.read().unwrap_or_else(|e| e.into_inner()).len()
}

/// Removes a handle from the table: the object goes when the last call using it returns.
fn unregister(h: usize, matches: impl Fn(&Object) -> bool, what: &str) -> Outcome<Object> {
    if h == 0 {
        return fail(RUNNEL_NULL_ARGUMENT, format!("the {what} handle is NULL"));
    }
    let mut live = LIVE.write().unwrap_or_else(|e| e.into_inner());
    match live.get(&h) {
        Some(o) if matches(o) => Ok(live.remove(&h).expect("present")),
        _ => fail(RUNNEL_INVALID_HANDLE, format!("not a live {what} handle (already freed, or another type)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments.

fn out_ptr<T>(p: *mut T, what: &str) -> Outcome<*mut T> {
    if p.is_null() { fail(RUNNEL_NULL_ARGUMENT, format!("{what} is NULL")) } else { Ok(p) }
}

/// Writes `value` through an output pointer checked non-NULL.
fn write_out<T>(p: *mut T, value: T) {
    // SAFETY: `p` is non-NULL (checked by `out_ptr` before any effect) and, by the documented
    // contract of every function with an output argument, points to writable memory for a `T`.
    unsafe { p.write(value) }
}

fn string<'a>(p: *const c_char, what: &str) -> Outcome<&'a str> {
    if p.is_null() {
        return fail(RUNNEL_NULL_ARGUMENT, format!("{what} is NULL"));
    }
    // SAFETY: non-NULL, and by contract a NUL-terminated string that lives for the call.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| Failure(RUNNEL_INVALID_UTF8, format!("{what} is not UTF-8: {e}")))
}

/// A byte buffer argument: NULL means "null" (`None`); a length without a pointer is an error.
fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Outcome<Option<&'a [u8]>> {
    if p.is_null() {
        return if len == 0 { Ok(None) } else { fail(RUNNEL_NULL_ARGUMENT, format!("{what} is NULL with length {len}")) };
    }
    if len > isize::MAX as usize {
        return fail(RUNNEL_INVALID_ARGUMENT, format!("{what} is longer than any buffer can be"));
    }
    // SAFETY: non-NULL, length within isize, and by contract `len` readable bytes that live for
    // the call.
    Ok(Some(unsafe { std::slice::from_raw_parts(p, len) }))
}

/// An array argument of `n` items (NULL allowed when `n` is 0).
fn array<'a, T>(p: *const T, n: usize, what: &str) -> Outcome<&'a [T]> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return fail(RUNNEL_NULL_ARGUMENT, format!("{what} is NULL with {n} items"));
    }
    if n.checked_mul(std::mem::size_of::<T>()).is_none_or(|b| b > isize::MAX as usize) {
        return fail(RUNNEL_INVALID_ARGUMENT, format!("{what}: {n} items is more than memory can hold"));
    }
    // SAFETY: non-NULL, size within isize, and by contract `n` initialized items that live for the
    // call.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// `n` key/value pairs as an array of 2n strings.
fn pairs<'a>(p: *const *const c_char, n: usize, what: &str) -> Outcome<Vec<(&'a str, &'a str)>> {
    let n2 = n.checked_mul(2).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("{what}: too many pairs")))?;
    let items = array(p, n2, what)?;
    items.chunks(2).map(|kv| Ok((string(kv[0], what)?, string(kv[1], what)?))).collect()
}

fn acks_of(acks: i32) -> Outcome<Acks> {
    match acks {
        RUNNEL_ACKS_NONE => Ok(Acks::Zero),
        RUNNEL_ACKS_LEADER => Ok(Acks::One),
        RUNNEL_ACKS_ALL => Ok(Acks::All),
        _ => fail(RUNNEL_INVALID_ARGUMENT, format!("acks must be 0, 1 or -1 (all), not {acks}")),
    }
}

fn isolation_of(i: i32) -> Outcome<IsolationLevel> {
    match i {
        RUNNEL_READ_UNCOMMITTED => Ok(IsolationLevel::ReadUncommitted),
        RUNNEL_READ_COMMITTED => Ok(IsolationLevel::ReadCommitted),
        _ => fail(RUNNEL_INVALID_ARGUMENT, format!("isolation must be RUNNEL_READ_UNCOMMITTED or RUNNEL_READ_COMMITTED, not {i}")),
    }
}

fn partition_of(p: i64) -> Outcome<Option<u32>> {
    match p {
        RUNNEL_ANY_PARTITION => Ok(None),
        0..=0xFFFF_FFFF => Ok(Some(p as u32)),
        _ => fail(RUNNEL_INVALID_ARGUMENT, format!("partition must be RUNNEL_ANY_PARTITION or 0..2^32, not {p}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Opening and closing.

/// Opens the data directory `dir`, creating it if needed, recovering it if it was not closed
/// cleanly. `options` is an array of `n_options` key/value pairs (2 × `n_options` strings; NULL
/// when `n_options` is 0):
///
/// - `"mode"`: `"exclusive"` (the default: this handle is the directory's only writer),
///   `"shared"` (any number of processes open it this way and write at once; see
///   `Log::open_shared`) or `"read_only"`;
/// - `"read_only"`: `"true"` is `"mode": "read_only"`: opens without a lock and without writing a
///   byte, while other processes may write (every mutating call then returns `RUNNEL_READ_ONLY`);
/// - `"background_maintenance"`: `"false"` stops the maintenance thread (flush.ms, retention);
/// - `"max_open_segments"`: how many segment mappings to keep open;
/// - any topic config key (`"segment.bytes"`, `"retention.ms"`, ...): the default for new topics.
///
/// On success `*out` is the handle, to be released with [`runnel_close`]. `RUNNEL_LOCKED` when
/// another writer has the directory (in exclusive mode: any writer; in shared mode: an exclusive
/// one).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_open(
    dir: *const c_char,
    options: *const *const c_char,
    n_options: usize,
    out: *mut *mut runnel_log,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let dir = string(dir, "dir")?;
        let mut mode = "exclusive";
        let mut opts = LogOptions::default();
        let mut defaults = TopicConfig::default();
        for (k, v) in pairs(options, n_options, "options")? {
            let flag = |v: &str| match v {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => fail(RUNNEL_INVALID_ARGUMENT, format!("option {k} must be true or false, not {v:?}")),
            };
            match k {
                "read_only" => {
                    if flag(v)? {
                        mode = "read_only";
                    }
                }
                "mode" => match v {
                    "exclusive" | "shared" | "read_only" => mode = v,
                    _ => return fail(RUNNEL_INVALID_ARGUMENT, format!("mode must be exclusive, shared or read_only, not {v:?}")),
                },
                "background_maintenance" => opts = opts.background_maintenance(flag(v)?),
                "max_open_segments" => {
                    let n = v
                        .parse()
                        .map_err(|_| Failure(RUNNEL_INVALID_ARGUMENT, format!("max_open_segments must be a number, not {v:?}")))?;
                    opts = opts.max_open_segments(n);
                }
                _ => {
                    defaults.set(k, v)?;
                }
            }
        }
        opts = opts.default_topic_config(defaults);
        let log = match mode {
            "read_only" => Log::open_read_only(dir, opts)?,
            "shared" => Log::open_shared(dir, opts)?,
            _ => Log::open(dir, opts)?,
        };
        let arc = Arc::new(LogObject { log, closing: Default::default() });
        let h = register(Object::Log(arc));
        write_out(out, h as *mut runnel_log);
        Ok(())
    })
}

/// Closes the log cleanly (syncs, writes indexes and the clean-shutdown marker) and frees the
/// handle, whatever the result: an error says the close was not clean, and the next open recovers.
/// Waits for calls in flight on other threads to return.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_close(log: *mut runnel_log) -> runnel_result {
    guard(|| {
        let Object::Log(mut arc) = unregister(log as usize, |o| matches!(o, Object::Log(_)), "runnel_log")? else {
            return fail(RUNNEL_INVALID_HANDLE, "not a runnel_log");
        };
        // Calls in flight hold the log for a moment (a waiting fetch notices `closing` within
        // 50 ms); producers and consumers hold only its internals.
        arc.closing.store(true, Ordering::Release);
        let log = loop {
            match Arc::try_unwrap(arc) {
                Ok(o) => break o.log,
                Err(a) => {
                    arc = a;
                    std::thread::sleep(Duration::from_micros(100));
                }
            }
        };
        log.close()?;
        Ok(())
    })
}

/// Whether the log was opened in shared mode (`"mode": "shared"`). 0 or 1; -1 for an invalid
/// handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_is_shared(log: *const runnel_log) -> c_int {
    let mut v = -1;
    let _ = guard(|| {
        v = c_int::from(log_of(log)?.is_shared());
        Ok(())
    });
    v
}

/// Whether the log was opened with `"read_only"`. 0 or 1; -1 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_is_read_only(log: *const runnel_log) -> c_int {
    let mut v = -1;
    let _ = guard(|| {
        v = c_int::from(log_of(log)?.is_read_only());
        Ok(())
    });
    v
}

// ---------------------------------------------------------------------------------------------
// Topics.

/// Creates a topic with `partitions` partitions; `config` holds `n_config` key/value pairs of
/// Kafka topic configs (`"retention.ms"`, `"segment.bytes"`, ...), NULL when `n_config` is 0.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_create(
    log: *const runnel_log,
    topic: *const c_char,
    partitions: u32,
    config: *const *const c_char,
    n_config: usize,
) -> runnel_result {
    guard(|| {
        let log = log_of(log)?;
        let topic = string(topic, "topic")?;
        let mut c = TopicConfig::default();
        for (k, v) in pairs(config, n_config, "config")? {
            c.set(k, v)?;
        }
        log.create_topic(topic, partitions, c)?;
        Ok(())
    })
}

/// Deletes a topic and its data.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_delete(log: *const runnel_log, topic: *const c_char) -> runnel_result {
    guard(|| Ok(log_of(log)?.delete_topic(string(topic, "topic")?)?))
}

/// Raises a topic's partition count to `partitions` (it cannot shrink).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_add_partitions(log: *const runnel_log, topic: *const c_char, partitions: u32) -> runnel_result {
    guard(|| Ok(log_of(log)?.add_partitions(string(topic, "topic")?, partitions)?))
}

/// A topic's partition count.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_partition_count(log: *const runnel_log, topic: *const c_char, out: *mut u32) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        write_out(out, log_of(log)?.partition_count(string(topic, "topic")?)?);
        Ok(())
    })
}

/// Strings owned by a list.
struct StringList(Vec<CString>);

fn make_strings(v: Vec<String>, out: *mut *mut runnel_string_list) -> Outcome {
    let list = StringList(v.into_iter().map(|s| CString::new(s).unwrap_or_default()).collect());
    let arc = Arc::new(list);
    let h = register(Object::Strings(arc.clone()));
    write_out(out, h as *mut runnel_string_list);
    Ok(())
}

/// The topics, sorted; free the list with [`runnel_string_list_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_list(log: *const runnel_log, out: *mut *mut runnel_string_list) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        make_strings(log_of(log)?.list_topics(), out)
    })
}

/// Number of strings in a list; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_string_list_len(list: *const runnel_string_list) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = strings_of(list)?.0.len();
        Ok(())
    });
    n
}

/// The `index`th string, valid until the list is freed; NULL when out of range or invalid.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_string_list_get(list: *const runnel_string_list, index: usize) -> *const c_char {
    let mut p = std::ptr::null();
    let _ = guard(|| {
        let l = strings_of(list)?;
        if let Some(s) = l.0.get(index) {
            // The CString's buffer lives in the list's allocation, which the handle table keeps
            // until the list is freed.
            p = s.as_ptr();
        }
        Ok(())
    });
    p
}

/// Frees a list.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_string_list_free(list: *mut runnel_string_list) -> runnel_result {
    guard(|| unregister(list as usize, |o| matches!(o, Object::Strings(_)), "runnel_string_list").map(drop))
}

/// One partition's offsets and size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct runnel_partition_info {
    /// The partition.
    pub partition: u32,
    /// First offset still in the log (the earliest a consumer can read).
    pub log_start_offset: u64,
    /// End of what readers may see (the latest).
    pub high_watermark: u64,
    /// End of what is fsync'd.
    pub durable_offset: u64,
    /// The offset the next record will get.
    pub log_end_offset: u64,
    /// End of what read_committed readers may see.
    pub last_stable_offset: u64,
    /// Segments.
    pub segment_count: u64,
    /// Bytes in all segments.
    pub size_bytes: u64,
}

struct TopicObject {
    partitions: Vec<runnel_partition_info>,
    config: Vec<(CString, CString)>,
    internal: bool,
}

/// Describes a topic: its partitions' offsets and its config. Free with
/// [`runnel_topic_description_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_describe(
    log: *const runnel_log,
    topic: *const c_char,
    out: *mut *mut runnel_topic_description,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let log = log_of(log)?;
        let name = string(topic, "topic")?;
        let d = log.describe_topic(name)?;
        let mut partitions = Vec::new();
        for p in &d.partitions {
            partitions.push(runnel_partition_info {
                partition: p.partition,
                log_start_offset: p.log_start_offset,
                high_watermark: p.high_watermark,
                durable_offset: p.durable_offset,
                log_end_offset: p.log_end_offset,
                last_stable_offset: log.last_stable_offset(name, p.partition).unwrap_or(p.high_watermark),
                segment_count: p.segment_count as u64,
                size_bytes: p.size_bytes,
            });
        }
        let config = d
            .config
            .entries()
            .into_iter()
            .map(|(k, v)| (CString::new(k).unwrap_or_default(), CString::new(v).unwrap_or_default()))
            .collect();
        let arc = Arc::new(TopicObject { partitions, config, internal: d.internal });
        let h = register(Object::Topic(arc.clone()));
        write_out(out, h as *mut runnel_topic_description);
        Ok(())
    })
}

/// Number of partitions described; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_partitions(d: *const runnel_topic_description) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = topic_of(d)?.partitions.len();
        Ok(())
    });
    n
}

/// The `index`th partition's offsets.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_partition(
    d: *const runnel_topic_description,
    index: usize,
    out: *mut runnel_partition_info,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let t = topic_of(d)?;
        let p = t.partitions.get(index).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no partition at index {index}")))?;
        write_out(out, *p);
        Ok(())
    })
}

/// Number of config entries; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_config_len(d: *const runnel_topic_description) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = topic_of(d)?.config.len();
        Ok(())
    });
    n
}

/// The `index`th config entry: Kafka name and value, valid until the description is freed.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_config(
    d: *const runnel_topic_description,
    index: usize,
    key: *mut *const c_char,
    value: *mut *const c_char,
) -> runnel_result {
    guard(|| {
        let (key, value) = (out_ptr(key, "key")?, out_ptr(value, "value")?);
        let t = topic_of(d)?;
        let (k, v) = t.config.get(index).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no config entry at index {index}")))?;
        write_out(key, k.as_ptr());
        write_out(value, v.as_ptr());
        Ok(())
    })
}

/// Whether the topic is internal (owned by runnel). 0 or 1; -1 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_internal(d: *const runnel_topic_description) -> c_int {
    let mut v = -1;
    let _ = guard(|| {
        v = c_int::from(topic_of(d)?.internal);
        Ok(())
    });
    v
}

/// Frees a description.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_topic_description_free(d: *mut runnel_topic_description) -> runnel_result {
    guard(|| unregister(d as usize, |o| matches!(o, Object::Topic(_)), "runnel_topic_description").map(drop))
}

/// One partition's offsets and size.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_partition_offsets(
    log: *const runnel_log,
    topic: *const c_char,
    partition: u32,
    out: *mut runnel_partition_info,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let log = log_of(log)?;
        let t = string(topic, "topic")?;
        let segments = log.segments(t, partition)?;
        write_out(
            out,
            runnel_partition_info {
                partition,
                log_start_offset: log.log_start_offset(t, partition)?,
                high_watermark: log.high_watermark(t, partition)?,
                durable_offset: log.durable_offset(t, partition)?,
                log_end_offset: log.log_end_offset(t, partition)?,
                last_stable_offset: log.last_stable_offset(t, partition)?,
                segment_count: segments.len() as u64,
                size_bytes: segments.iter().map(|s| s.size_bytes).sum(),
            },
        );
        Ok(())
    })
}

/// The first offset whose timestamp is at or after `timestamp` (Kafka's `offsetsForTimes`), and
/// that record's timestamp; `RUNNEL_DONE` when no record is that late.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_offset_for_timestamp(
    log: *const runnel_log,
    topic: *const c_char,
    partition: u32,
    timestamp: i64,
    offset: *mut u64,
    found_timestamp: *mut i64,
) -> runnel_result {
    let mut done = false;
    let r = guard(|| {
        let (offset, found_timestamp) = (out_ptr(offset, "offset")?, out_ptr(found_timestamp, "found_timestamp")?);
        match log_of(log)?.offset_for_timestamp(string(topic, "topic")?, partition, timestamp)? {
            Some((o, t)) => {
                write_out(offset, o);
                write_out(found_timestamp, t);
            }
            None => done = true,
        }
        Ok(())
    });
    if r == RUNNEL_OK && done { RUNNEL_DONE } else { r }
}

// ---------------------------------------------------------------------------------------------
// Append.

/// A record header. `value` NULL is a null value.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_header {
    /// The key's bytes (UTF-8 by convention).
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The value's bytes, or NULL for a null value.
    pub value: *const u8,
    /// Its length.
    pub value_len: usize,
}

/// A record to append. `key` NULL is a null key (the default partitioner then goes round-robin);
/// `value` NULL is a null value (a tombstone); `timestamp` `RUNNEL_NO_TIMESTAMP` means "now".
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_record {
    /// The key's bytes, or NULL.
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The value's bytes, or NULL.
    pub value: *const u8,
    /// Its length.
    pub value_len: usize,
    /// Headers, or NULL when `headers_len` is 0.
    pub headers: *const runnel_header,
    /// Number of headers.
    pub headers_len: usize,
    /// Milliseconds since the Unix epoch, or `RUNNEL_NO_TIMESTAMP`.
    pub timestamp: i64,
}

/// Where an append went.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct runnel_append_result {
    /// The partition.
    pub partition: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
    /// The log append time for LogAppendTime topics, otherwise -1.
    pub log_append_time: i64,
}

/// Checks the arguments every batch append takes (topic, partition, `n` records), appends
/// through `append`, and writes where the batch went to `out` (may be NULL).
fn append_with(
    topic: *const c_char,
    partition: i64,
    records: *const runnel_record,
    n: usize,
    out: *mut runnel_append_result,
    append: impl FnOnce(&str, Option<u32>, &[Record<'_>]) -> runnel::Result<runnel::AppendResult>,
) -> Outcome {
    let topic = string(topic, "topic")?;
    let partition = partition_of(partition)?;
    let records = array(records, n, "records")?;
    let mut headers = Vec::new();
    let records = convert(records, &mut headers)?;
    write_append(out, append(topic, partition, &records)?);
    Ok(())
}

/// The engine's records for an append; `headers` holds their headers for the call.
fn convert<'a>(records: &'a [runnel_record], headers: &'a mut Vec<Vec<runnel::Header<'a>>>) -> Outcome<Vec<Record<'a>>> {
    for r in records {
        let hs = array(r.headers, r.headers_len, "headers")?;
        let mut v = Vec::with_capacity(hs.len());
        for h in hs {
            let key = bytes(h.key, h.key_len, "header key")?.unwrap_or_default();
            v.push(runnel::Header { key, value: bytes(h.value, h.value_len, "header value")? });
        }
        headers.push(v);
    }
    let mut out = Vec::with_capacity(records.len());
    for (r, h) in records.iter().zip(headers.iter()) {
        out.push(Record {
            key: bytes(r.key, r.key_len, "key")?,
            value: bytes(r.value, r.value_len, "value")?,
            headers: h,
            timestamp: (r.timestamp != RUNNEL_NO_TIMESTAMP).then_some(r.timestamp),
        });
    }
    Ok(out)
}

fn write_append(out: *mut runnel_append_result, a: runnel::AppendResult) {
    if !out.is_null() {
        write_out(
            out,
            runnel_append_result {
                partition: a.partition,
                base_offset: a.base_offset,
                last_offset: a.last_offset,
                log_append_time: a.log_append_time,
            },
        );
    }
}

/// Appends `n` records as one batch to `partition` (or `RUNNEL_ANY_PARTITION` for the default
/// partitioner's choice by the first record's key) with `acks` (`RUNNEL_ACKS_NONE`,
/// `RUNNEL_ACKS_LEADER`, `RUNNEL_ACKS_ALL`). `out` (may be NULL) receives where it went. The
/// batch is appended whole or not at all.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_append(
    log: *const runnel_log,
    topic: *const c_char,
    partition: i64,
    records: *const runnel_record,
    n: usize,
    acks: i32,
    out: *mut runnel_append_result,
) -> runnel_result {
    guard(|| {
        let log = log_of(log)?;
        let acks = acks_of(acks)?;
        append_with(topic, partition, records, n, out, |t, p, r| log.append(t, p, r, acks))
    })
}

/// Appends `n` values (no keys, no headers, timestamps "now") as one batch: value `i` is the next
/// `value_lens[i]` bytes of `data`, which holds them back to back. The same as [`runnel_append`]
/// for the commonest case, for callers (such as the Python package) for whom one buffer is much
/// cheaper to hand over than `n` records.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_append_packed(
    log: *const runnel_log,
    topic: *const c_char,
    partition: i64,
    data: *const u8,
    data_len: usize,
    value_lens: *const usize,
    n: usize,
    acks: i32,
    out: *mut runnel_append_result,
) -> runnel_result {
    guard(|| {
        let log = log_of(log)?;
        let topic = string(topic, "topic")?;
        let partition = partition_of(partition)?;
        let acks = acks_of(acks)?;
        let data = bytes(data, data_len, "data")?.unwrap_or_default();
        let lens = array(value_lens, n, "value_lens")?;
        let mut records = Vec::with_capacity(n);
        let mut at = 0usize;
        for &len in lens {
            let end = at.checked_add(len).filter(|&e| e <= data.len());
            let Some(end) = end else {
                return fail(RUNNEL_INVALID_ARGUMENT, format!("value_lens add up to more than the {} bytes of data", data.len()));
            };
            records.push(Record::new(&data[at..end]));
            at = end;
        }
        if at != data.len() {
            return fail(RUNNEL_INVALID_ARGUMENT, format!("value_lens add up to {at} bytes, data has {}", data.len()));
        }
        write_append(out, log.append(topic, partition, &records, acks)?);
        Ok(())
    })
}

/// Syncs every partition: everything appended so far is durable when this returns.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_sync(log: *const runnel_log) -> runnel_result {
    guard(|| Ok(log_of(log)?.sync_all()?))
}

/// Applies retention now (`retention.ms`, `retention.bytes`); `deleted` (may be NULL) receives
/// the number of segments deleted.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_run_retention(log: *const runnel_log, deleted: *mut usize) -> runnel_result {
    guard(|| {
        let n = log_of(log)?.run_retention()?;
        if !deleted.is_null() {
            write_out(deleted, n);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Fetch.

/// A fetched record: pointers into the log's memory map, valid until the fetch is freed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_record_view {
    /// The record's offset.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key's bytes, or NULL for a null key.
    pub key: *const u8,
    /// Its length.
    pub key_len: usize,
    /// The value's bytes, or NULL for a null value.
    pub value: *const u8,
    /// Its length.
    pub value_len: usize,
    /// Number of headers ([`runnel_fetched_header`] reads them).
    pub headers_len: usize,
    /// The record's index in its fetch.
    pub index: usize,
}

/// A byte range (start, length) in the fetched bytes.
pub(crate) type Span = (usize, usize);

/// Where a record's parts lie in the fetched bytes.
struct Entry {
    offset: u64,
    timestamp: i64,
    key: Option<(usize, usize)>,
    value: Option<(usize, usize)>,
    headers: (usize, usize),
}

struct FetchObject {
    fetched: runnel::Fetched,
    entries: Vec<Entry>,
    /// Header (key, value) byte ranges of every record, in order.
    headers: Vec<(Span, Option<Span>)>,
    cursor: AtomicUsize,
}

impl FetchObject {
    fn new(fetched: runnel::Fetched) -> Outcome<FetchObject> {
        let base = fetched.bytes().as_ptr() as usize;
        let range = |s: &[u8]| (s.as_ptr() as usize - base, s.len());
        let mut entries = Vec::new();
        let mut headers = Vec::new();
        for r in fetched.records() {
            let r = r?;
            let first = headers.len();
            for h in r.headers.iter() {
                headers.push((range(h.key), h.value.map(range)));
            }
            entries.push(Entry {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(range),
                value: r.value.map(range),
                headers: (first, headers.len() - first),
            });
        }
        Ok(FetchObject { fetched, entries, headers, cursor: AtomicUsize::new(0) })
    }

    fn ptr(&self, r: Option<(usize, usize)>) -> (*const u8, usize) {
        match r {
            Some((start, len)) => (self.fetched.bytes()[start..start + len].as_ptr(), len),
            None => (std::ptr::null(), 0),
        }
    }

    fn view(&self, index: usize) -> Option<runnel_record_view> {
        let e = self.entries.get(index)?;
        let (key, key_len) = self.ptr(e.key);
        let (value, value_len) = self.ptr(e.value);
        Some(runnel_record_view {
            offset: e.offset,
            timestamp: e.timestamp,
            key,
            key_len,
            value,
            value_len,
            headers_len: e.headers.1,
            index,
        })
    }
}

fn make_fetch(fetched: runnel::Fetched, out: *mut *mut runnel_fetched) -> Outcome {
    let arc = Arc::new(FetchObject::new(fetched)?);
    let h = register(Object::Fetch(arc.clone()));
    write_out(out, h as *mut runnel_fetched);
    Ok(())
}

/// Fetches complete batches from `offset` on, up to about `max_bytes` (at least one batch when
/// any is available), at `isolation` (`RUNNEL_READ_UNCOMMITTED` or `RUNNEL_READ_COMMITTED`).
/// Free the result with [`runnel_fetched_free`]; its record views point into the log's memory map
/// and stay valid until then, even if retention deletes the segment meanwhile.
/// `RUNNEL_OFFSET_OUT_OF_RANGE` outside `[log start offset, high watermark]`.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetch(
    log: *const runnel_log,
    topic: *const c_char,
    partition: u32,
    offset: u64,
    max_bytes: u64,
    isolation: i32,
    out: *mut *mut runnel_fetched,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let f = log_of(log)?.fetch_with(string(topic, "topic")?, partition, offset, max_bytes, isolation_of(isolation)?)?;
        make_fetch(f, out)
    })
}

/// As [`runnel_fetch`], first waiting up to `timeout_ms` for records at `offset` if there are
/// none yet; returns as soon as the writer (in this process or another) publishes them. An empty
/// fetch when the time runs out.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetch_wait(
    log: *const runnel_log,
    topic: *const c_char,
    partition: u32,
    offset: u64,
    max_bytes: u64,
    isolation: i32,
    timeout_ms: u64,
    out: *mut *mut runnel_fetched,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let log = log_of(log)?;
        let (topic, isolation) = (string(topic, "topic")?, isolation_of(isolation)?);
        let deadline = std::time::Instant::now().checked_add(Duration::from_millis(timeout_ms));
        // In slices of at most 50 ms, so that a runnel_close on another thread is not held up.
        loop {
            let left = deadline.map_or(Duration::from_millis(50), |d| d.saturating_duration_since(std::time::Instant::now()));
            let f = log.fetch_wait(topic, partition, offset, max_bytes, isolation, left.min(Duration::from_millis(50)))?;
            if !f.is_empty() || left.is_zero() || log.closing.load(Ordering::Acquire) {
                return make_fetch(f, out);
            }
        }
    })
}

/// Number of records fetched; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_count(fetch: *const runnel_fetched) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = fetch_of(fetch)?.entries.len();
        Ok(())
    });
    n
}

/// The offset to fetch from next; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_next_offset(fetch: *const runnel_fetched) -> u64 {
    let mut n = 0;
    let _ = guard(|| {
        n = fetch_of(fetch)?.fetched.next_offset();
        Ok(())
    });
    n
}

/// The raw bytes of the fetched batches, exactly as stored (what [`runnel_send_to_fd`] would
/// send): every record view's key and value lie inside them. Valid until the fetch is freed.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_bytes(fetch: *const runnel_fetched, bytes: *mut *const u8, len: *mut usize) -> runnel_result {
    guard(|| {
        let (bytes, len) = (out_ptr(bytes, "bytes")?, out_ptr(len, "len")?);
        let f = fetch_of(fetch)?;
        let b = f.fetched.bytes();
        write_out(bytes, b.as_ptr());
        write_out(len, b.len());
        Ok(())
    })
}

/// Every record's layout in one call, for callers that slice [`runnel_fetched_bytes`] themselves
/// (the Python package): for record `i`, `out[6i..6i+6]` holds its offset, its timestamp (as the
/// bits of an `int64_t`), the start of its key in the fetched bytes (`UINT64_MAX` for a null key),
/// the key's length, the start of its value (`UINT64_MAX` for null) and the value's length.
/// Fills `min(cap, count)` records; `written` (may be NULL) receives how many.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_spans(fetch: *const runnel_fetched, out: *mut u64, cap: usize, written: *mut usize) -> runnel_result {
    guard(|| {
        let f = fetch_of(fetch)?;
        let n = cap.min(f.entries.len());
        if n > 0 {
            let out = out_ptr(out, "out")?;
            if n.checked_mul(6).is_none_or(|w| w > isize::MAX as usize / 8) {
                return fail(RUNNEL_INVALID_ARGUMENT, "cap is larger than memory can hold");
            }
            // SAFETY: non-NULL, and by contract `out` has room for `cap` × 6 values; n ≤ cap.
            let out = unsafe { std::slice::from_raw_parts_mut(out, n * 6) };
            let span = |r: Option<Span>| r.map_or((u64::MAX, 0), |(s, l)| (s as u64, l as u64));
            for (e, o) in f.entries.iter().zip(out.chunks_exact_mut(6)) {
                let (ks, kl) = span(e.key);
                let (vs, vl) = span(e.value);
                o.copy_from_slice(&[e.offset, e.timestamp as u64, ks, kl, vs, vl]);
            }
        }
        if !written.is_null() {
            write_out(written, n);
        }
        Ok(())
    })
}

/// The partition's high watermark when the fetch was made; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_high_watermark(fetch: *const runnel_fetched) -> u64 {
    let mut n = 0;
    let _ = guard(|| {
        n = fetch_of(fetch)?.fetched.high_watermark();
        Ok(())
    });
    n
}

/// The next record of the fetch (the first on the first call): `RUNNEL_OK` and `*out` filled, or
/// `RUNNEL_DONE` after the last.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_next(fetch: *mut runnel_fetched, out: *mut runnel_record_view) -> runnel_result {
    let mut done = false;
    let r = guard(|| {
        let out = out_ptr(out, "out")?;
        let f = fetch_of(fetch)?;
        let i = f.cursor.load(Ordering::Relaxed);
        match f.view(i) {
            Some(v) => {
                f.cursor.store(i + 1, Ordering::Relaxed);
                write_out(out, v);
            }
            None => done = true,
        }
        Ok(())
    });
    if r == RUNNEL_OK && done { RUNNEL_DONE } else { r }
}

/// The record at `index` (0 ≤ index < [`runnel_fetched_count`]).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_get(fetch: *const runnel_fetched, index: usize, out: *mut runnel_record_view) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let f = fetch_of(fetch)?;
        let v =
            f.view(index).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no record at index {index} of {}", f.entries.len())))?;
        write_out(out, v);
        Ok(())
    })
}

/// Header `header` of record `record` of the fetch (pointers valid until the fetch is freed).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_header(
    fetch: *const runnel_fetched,
    record: usize,
    header: usize,
    out: *mut runnel_header,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let f = fetch_of(fetch)?;
        let e = f.entries.get(record).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no record at index {record}")))?;
        if header >= e.headers.1 {
            return fail(RUNNEL_INVALID_ARGUMENT, format!("record {record} has {} headers, not {}", e.headers.1, header + 1));
        }
        let (k, v) = f.headers[e.headers.0 + header];
        let (key, key_len) = f.ptr(Some(k));
        let (value, value_len) = f.ptr(v);
        write_out(out, runnel_header { key, key_len, value, value_len });
        Ok(())
    })
}

/// Frees a fetch; its record views are invalid afterwards.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_fetched_free(fetch: *mut runnel_fetched) -> runnel_result {
    guard(|| unregister(fetch as usize, |o| matches!(o, Object::Fetch(_)), "runnel_fetched").map(drop))
}

/// Copies the raw batches a fetch with the same arguments would return to the file descriptor
/// `fd` with sendfile(2) (zero-copy); `bytes` and `next_offset` (each may be NULL) receive what was
/// sent and where to continue. `fd` should be in blocking mode.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_send_to_fd(
    log: *const runnel_log,
    topic: *const c_char,
    partition: u32,
    offset: u64,
    max_bytes: u64,
    fd: c_int,
    bytes: *mut u64,
    next_offset: *mut u64,
) -> runnel_result {
    guard(|| {
        let log = log_of(log)?;
        let topic = string(topic, "topic")?;
        if fd < 0 {
            return fail(RUNNEL_INVALID_ARGUMENT, format!("{fd} is not a file descriptor"));
        }
        // SAFETY: the descriptor is only used for the duration of this call, during which the
        // caller keeps it open (the documented contract); a descriptor that is not open makes
        // sendfile fail with EBADF, which is reported, not undefined behaviour.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let r = log.send_to(topic, partition, offset, max_bytes, fd)?;
        if !bytes.is_null() {
            write_out(bytes, r.bytes);
        }
        if !next_offset.is_null() {
            write_out(next_offset, r.next_offset);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Consumer groups.

/// Commits `offset` (the next offset to consume) for `group` on a partition; `metadata` may be
/// NULL. Durable when it returns.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_commit_offset(
    log: *const runnel_log,
    group: *const c_char,
    topic: *const c_char,
    partition: u32,
    offset: u64,
    metadata: *const c_char,
) -> runnel_result {
    guard(|| {
        let metadata = if metadata.is_null() { "" } else { string(metadata, "metadata")? };
        let commit = OffsetCommit { topic: string(topic, "topic")?, partition, offset, metadata };
        Ok(log_of(log)?.commit_offsets(string(group, "group")?, &[commit])?)
    })
}

/// The group's committed offset for a partition; `RUNNEL_DONE` when it has none.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_committed(
    log: *const runnel_log,
    group: *const c_char,
    topic: *const c_char,
    partition: u32,
    offset: *mut u64,
) -> runnel_result {
    let mut none = false;
    let r = guard(|| {
        let out = out_ptr(offset, "offset")?;
        match log_of(log)?.committed(string(group, "group")?, string(topic, "topic")?, partition)? {
            Some(c) => write_out(out, c.offset),
            None => none = true,
        }
        Ok(())
    });
    if r == RUNNEL_OK && none { RUNNEL_DONE } else { r }
}

/// The groups with committed offsets, sorted; free with [`runnel_string_list_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_group_list(log: *const runnel_log, out: *mut *mut runnel_string_list) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        make_strings(log_of(log)?.list_groups(), out)
    })
}

/// Deletes a group's committed offsets; `existed` (may be NULL) receives 1 if it had any.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_group_delete(log: *const runnel_log, group: *const c_char, existed: *mut c_int) -> runnel_result {
    guard(|| {
        let e = log_of(log)?.delete_group(string(group, "group")?)?;
        if !existed.is_null() {
            write_out(existed, c_int::from(e));
        }
        Ok(())
    })
}

/// A group's lag on one partition.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_partition_lag {
    /// The topic, valid until the lag list is freed.
    pub topic: *const c_char,
    /// The partition.
    pub partition: u32,
    /// The committed offset.
    pub committed: u64,
    /// The high watermark.
    pub high_watermark: u64,
    /// `high_watermark - committed` (0 if the commit is ahead).
    pub lag: u64,
}

struct LagObject(Vec<(CString, runnel::PartitionLag)>);

/// A group's lag on every partition it has committed for; free with [`runnel_lag_list_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_group_lag(log: *const runnel_log, group: *const c_char, out: *mut *mut runnel_lag_list) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let lag = log_of(log)?.group_lag(string(group, "group")?)?;
        let arc = Arc::new(LagObject(lag.into_iter().map(|l| (CString::new(l.topic.clone()).unwrap_or_default(), l)).collect()));
        let h = register(Object::Lag(arc.clone()));
        write_out(out, h as *mut runnel_lag_list);
        Ok(())
    })
}

/// Number of entries; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_lag_list_len(list: *const runnel_lag_list) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = lag_of(list)?.0.len();
        Ok(())
    });
    n
}

/// The `index`th entry.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_lag_list_get(list: *const runnel_lag_list, index: usize, out: *mut runnel_partition_lag) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let l = lag_of(list)?;
        let (topic, lag) = l.0.get(index).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no entry at index {index}")))?;
        write_out(
            out,
            runnel_partition_lag {
                topic: topic.as_ptr(),
                partition: lag.partition,
                committed: lag.committed,
                high_watermark: lag.high_watermark,
                lag: lag.lag,
            },
        );
        Ok(())
    })
}

/// Frees a lag list.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_lag_list_free(list: *mut runnel_lag_list) -> runnel_result {
    guard(|| unregister(list as usize, |o| matches!(o, Object::Lag(_)), "runnel_lag_list").map(drop))
}

// ---------------------------------------------------------------------------------------------
// Idempotent and transactional producers.

/// An idempotent producer: a new producer id; each append carries the next sequence number per
/// partition, so a retried append is stored once. Free with [`runnel_idempotent_producer_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_idempotent_producer_new(log: *const runnel_log, out: *mut *mut runnel_idempotent_producer) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let arc = Arc::new(log_of(log)?.idempotent_producer()?);
        let h = register(Object::Idempotent(arc.clone()));
        write_out(out, h as *mut runnel_idempotent_producer);
        Ok(())
    })
}

/// The producer id; -1 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_idempotent_producer_id(p: *const runnel_idempotent_producer) -> i64 {
    let mut id = -1;
    let _ = guard(|| {
        id = idempotent_of(p)?.producer_id();
        Ok(())
    });
    id
}

/// Appends `n` records as one batch, as [`runnel_append`] does, with the next sequence number.
/// After an error, sending the same records again is safe.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_idempotent_producer_send(
    p: *const runnel_idempotent_producer,
    topic: *const c_char,
    partition: i64,
    records: *const runnel_record,
    n: usize,
    acks: i32,
    out: *mut runnel_append_result,
) -> runnel_result {
    guard(|| {
        let p = idempotent_of(p)?;
        let acks = acks_of(acks)?;
        append_with(topic, partition, records, n, out, |t, part, r| p.send(t, part, r, acks))
    })
}

/// Frees an idempotent producer.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_idempotent_producer_free(p: *mut runnel_idempotent_producer) -> runnel_result {
    guard(|| unregister(p as usize, |o| matches!(o, Object::Idempotent(_)), "runnel_idempotent_producer").map(drop))
}

/// A transactional producer for `transactional_id` (Kafka's `initTransactions`): fences an
/// earlier producer with the same id and aborts what it left open. `timeout_ms` is
/// `transaction.timeout.ms` (0 for the default, 60 s). Free with
/// [`runnel_transactional_producer_free`], which aborts an open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transactional_producer_new(
    log: *const runnel_log,
    transactional_id: *const c_char,
    timeout_ms: u64,
    out: *mut *mut runnel_transactional_producer,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let mut options = runnel::TransactionOptions::default();
        if timeout_ms > 0 {
            options = options.timeout(Duration::from_millis(timeout_ms));
        }
        let arc = Arc::new(log_of(log)?.transactional_producer(string(transactional_id, "transactional_id")?, options)?);
        let h = register(Object::Transactional(arc.clone()));
        write_out(out, h as *mut runnel_transactional_producer);
        Ok(())
    })
}

/// Opens a transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transaction_begin(p: *const runnel_transactional_producer) -> runnel_result {
    guard(|| Ok(transactional_of(p)?.begin()?))
}

/// Appends `n` records as one batch in the open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transaction_send(
    p: *const runnel_transactional_producer,
    topic: *const c_char,
    partition: i64,
    records: *const runnel_record,
    n: usize,
    out: *mut runnel_append_result,
) -> runnel_result {
    guard(|| {
        let p = transactional_of(p)?;
        append_with(topic, partition, records, n, out, |t, part, r| p.send(t, part, r))
    })
}

/// Adds a group's offset for a partition to the open transaction (Kafka's
/// `sendOffsetsToTransaction`).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transaction_send_offset(
    p: *const runnel_transactional_producer,
    group: *const c_char,
    topic: *const c_char,
    partition: u32,
    offset: u64,
) -> runnel_result {
    guard(|| {
        let commit = OffsetCommit { topic: string(topic, "topic")?, partition, offset, metadata: "" };
        Ok(transactional_of(p)?.send_offsets_to_transaction(string(group, "group")?, &[commit])?)
    })
}

/// Commits the open transaction; durable when it returns.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transaction_commit(p: *const runnel_transactional_producer) -> runnel_result {
    guard(|| Ok(transactional_of(p)?.commit()?))
}

/// Aborts the open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transaction_abort(p: *const runnel_transactional_producer) -> runnel_result {
    guard(|| Ok(transactional_of(p)?.abort()?))
}

/// Frees a transactional producer (aborting an open transaction).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_transactional_producer_free(p: *mut runnel_transactional_producer) -> runnel_result {
    guard(|| unregister(p as usize, |o| matches!(o, Object::Transactional(_)), "runnel_transactional_producer").map(drop))
}
