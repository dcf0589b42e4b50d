//! The producer and consumer clients over the C ABI (chapter 4 of the Kafka primer): a producer
//! whose sends complete through a callback function with user data, and a consumer whose poll
//! returns a set of record views.

use std::ffi::{CString, c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runnel::clients::{
    Consumer, ConsumerConfig, ConsumerRebalanceListener, ConsumerRecords, Producer, ProducerConfig, ProducerRecord, RecordMetadata,
    Subscription, TopicPartition,
};

use super::*;

/// A producer client: batches records in memory and appends them from a sender thread. Thread-safe.
pub struct runnel_producer {
    _private: [u8; 0],
}

/// A consumer client. One thread at a time (as a Kafka consumer).
pub struct runnel_consumer {
    _private: [u8; 0],
}

/// What one consumer poll returned: record views valid until it is freed. One thread at a time.
pub struct runnel_polled {
    _private: [u8; 0],
}

/// Where a sent record went.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_record_metadata {
    /// The topic, valid during the callback.
    pub topic: *const c_char,
    /// The partition.
    pub partition: u32,
    /// The record's offset; -1 with acks=0, which completes before the append.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp: i64,
}

/// Called once per sent record with its outcome: `result` is `RUNNEL_OK` and `metadata` set, or
/// an error code and `error` its message (both valid during the call only). It runs on the
/// producer's sender thread (or the sending thread when the send fails at once), so it must be
/// quick and thread-safe; callbacks of one partition run in offset order.
pub type runnel_send_callback =
    Option<extern "C" fn(user_data: *mut c_void, result: runnel_result, metadata: *const runnel_record_metadata, error: *const c_char)>;

/// A topic and a partition.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_topic_partition {
    /// The topic (valid during the call that hands it out).
    pub topic: *const c_char,
    /// The partition.
    pub partition: u32,
}

/// Called by a subscribed consumer's poll, on the polling thread, when a rebalance takes
/// partitions away (`assigned` 0: save what was processed, in your own store) or gives it some
/// (`assigned` 1). For assigned partitions, writing an offset into `seek_to[i]` (initially -1)
/// makes fetching start there, as a custom offset store does (section 4.2.3). The consumer is
/// inside its poll: a call on it from the callback is refused (`RUNNEL_INVALID_ARGUMENT`), so
/// commit to runnel before the next poll, or enable auto-commit, which commits revoked
/// partitions just before this call.
pub type runnel_rebalance_callback =
    Option<extern "C" fn(user_data: *mut c_void, assigned: c_int, partitions: *const runnel_topic_partition, n: usize, seek_to: *mut i64)>;

/// Called, in a later poll, commit or close of the consumer, with the outcome of an async commit.
pub type runnel_commit_callback = Option<extern "C" fn(user_data: *mut c_void, result: runnel_result, error: *const c_char)>;

/// User data handed back to a callback on another thread.
#[derive(Clone, Copy)]
struct UserData(*mut c_void);

// SAFETY: the pointer is only handed back to the caller's own callback, never dereferenced here;
// the documentation of every function taking one says the callback may run on another thread, so
// making the data safe to use there is the caller's side of the contract.
unsafe impl Send for UserData {}

impl UserData {
    /// The pointer (a method, so that a closure captures the whole `UserData`, which is `Send`).
    fn ptr(self) -> *mut c_void {
        self.0
    }
}

/// Runs `f` on the consumer behind a handle, if no other call holds it.
fn with_consumer<T>(h: *const runnel_consumer, f: impl FnOnce(&mut Consumer) -> Outcome<T>) -> Outcome<T> {
    let arc = consumer_of(h)?;
    let mut g = use_consumer(&arc)?;
    f(&mut g)
}

lookup!(producer_of, Producer, runnel_producer, Producer, "runnel_producer");
lookup!(consumer_of, Consumer, runnel_consumer, Mutex<Consumer>, "runnel_consumer");
lookup!(polled_of, Polled, runnel_polled, PolledObject, "runnel_polled");

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The consumer, if no other call holds it: a consumer is for one thread at a time, and a call
/// from inside one of its own poll's callbacks would otherwise wait for itself forever.
fn use_consumer(m: &Mutex<Consumer>) -> Outcome<std::sync::MutexGuard<'_, Consumer>> {
    match m.try_lock() {
        Ok(g) => Ok(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => fail(
            RUNNEL_INVALID_ARGUMENT,
            "the consumer is in use: by a call on another thread, or this is a callback of its own poll (from a rebalance callback, set seek_to instead)",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Producer

/// A producer on `log` with `n_config` settings under Kafka's names (`"acks"`, `"batch.size"`,
/// `"linger.ms"`, `"buffer.memory"`, `"max.block.ms"`, `"enable.idempotence"`,
/// `"transactional.id"`, ...). Free with [`runnel_producer_free`] (which flushes first).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_new(
    log: *const runnel_log,
    config: *const *const c_char,
    n_config: usize,
    out: *mut *mut runnel_producer,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let log = log_of(log)?;
        let mut c = ProducerConfig::default();
        for (k, v) in pairs(config, n_config, "config")? {
            c.set(k, v)?;
        }
        let arc = Arc::new(Producer::new(&log, c)?);
        let h = register(Object::Producer(arc));
        write_out(out, h as *mut runnel_producer);
        Ok(())
    })
}

fn metadata_call(
    cb: extern "C" fn(*mut c_void, runnel_result, *const runnel_record_metadata, *const c_char),
    user: UserData,
    outcome: std::result::Result<&RecordMetadata, &Error>,
) {
    match outcome {
        Ok(m) => {
            let topic = CString::new(m.topic.as_bytes()).unwrap_or_default();
            let meta = runnel_record_metadata {
                topic: topic.as_ptr(),
                partition: m.partition,
                offset: m.offset.map_or(-1, |o| o as i64),
                timestamp: m.timestamp,
            };
            cb(user.0, RUNNEL_OK, &meta, std::ptr::null());
        }
        Err(e) => {
            let msg = CString::new(e.to_string().replace('\0', "\\0")).unwrap_or_default();
            cb(user.0, code_of(e), std::ptr::null(), msg.as_ptr());
        }
    }
}

/// Sends one record (its bytes are copied): returns at once, unless the buffer is full (then it
/// waits up to `max.block.ms`). `callback` (may be NULL) is called once with the outcome, with
/// `user_data`, possibly on the sender thread. If this returns `RUNNEL_NULL_ARGUMENT`,
/// `RUNNEL_INVALID_HANDLE`, `RUNNEL_INVALID_UTF8` or `RUNNEL_INVALID_ARGUMENT` (bad arguments,
/// nothing was sent), the callback is not called; otherwise it is called exactly once, also for a
/// failure known at once (unknown topic, record too large, producer closed), which is returned
/// here too.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_send(
    p: *const runnel_producer,
    topic: *const c_char,
    partition: i64,
    record: *const runnel_record,
    callback: runnel_send_callback,
    user_data: *mut c_void,
) -> runnel_result {
    let user = UserData(user_data);
    guard(|| {
        let p = producer_of(p)?;
        let record = producer_record(topic, partition, record)?;
        let future = match callback {
            Some(cb) => p.send_with_callback(record, move |outcome| metadata_call(cb, user, outcome)),
            None => p.send(record),
        };
        // A failure known at once is this call's result as well.
        if future.is_done()
            && let Ok(Err(e)) = future.get_timeout(Some(Duration::ZERO))
        {
            return Err(e.into());
        }
        Ok(())
    })
}

/// Sends one record and waits for its outcome (Kafka's `send(record).get()`): `out` (may be NULL)
/// receives its partition and offset (`base_offset` = `last_offset`; `UINT64_MAX` with acks=0,
/// which completes before the offset is known) and, in `log_append_time`, the record's timestamp.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_send_sync(
    p: *const runnel_producer,
    topic: *const c_char,
    partition: i64,
    record: *const runnel_record,
    out: *mut runnel_append_result,
) -> runnel_result {
    guard(|| {
        let p = producer_of(p)?;
        let record = producer_record(topic, partition, record)?;
        let m = p.send(record).get()?;
        if !out.is_null() {
            let offset = m.offset.unwrap_or(u64::MAX);
            write_out(
                out,
                runnel_append_result { partition: m.partition, base_offset: offset, last_offset: offset, log_append_time: m.timestamp },
            );
        }
        Ok(())
    })
}

fn producer_record(
    topic: *const c_char,
    partition: i64,
    record: *const runnel_record,
) -> Outcome<ProducerRecord<'static, Vec<u8>, Vec<u8>>> {
    let topic = string(topic, "topic")?.to_string();
    let partition = partition_of(partition)?;
    if record.is_null() {
        return fail(RUNNEL_NULL_ARGUMENT, "record is NULL");
    }
    let r = &array(record, 1, "record")?[0];
    let mut headers = Vec::new();
    for h in array(r.headers, r.headers_len, "headers")? {
        let key = bytes(h.key, h.key_len, "header key")?.unwrap_or_default();
        let key = String::from_utf8(key.to_vec()).map_err(|_| Failure(RUNNEL_INVALID_UTF8, "a header key is not UTF-8".into()))?;
        headers.push((key, bytes(h.value, h.value_len, "header value")?.map(<[u8]>::to_vec)));
    }
    Ok(ProducerRecord {
        topic: topic.into(),
        partition,
        key: bytes(r.key, r.key_len, "key")?.map(<[u8]>::to_vec),
        value: bytes(r.value, r.value_len, "value")?.map(<[u8]>::to_vec),
        timestamp: (r.timestamp != RUNNEL_NO_TIMESTAMP).then_some(r.timestamp),
        headers,
    })
}

/// Waits until every record sent before the call is complete, callbacks included. Refused
/// (`RUNNEL_INVALID_ARGUMENT`) from inside one of the producer's callbacks, as are close, free and
/// the transaction calls: they wait for the callbacks.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_flush(p: *const runnel_producer) -> runnel_result {
    guard(|| {
        let p = producer_of(p)?;
        if p.on_sender_thread() {
            return fail(RUNNEL_INVALID_ARGUMENT, "flush cannot run in one of the producer's own callbacks: it waits for them");
        }
        p.flush();
        Ok(())
    })
}

/// Opens a transaction (producers with a `transactional.id`).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_begin_transaction(p: *const runnel_producer) -> runnel_result {
    guard(|| Ok(producer_of(p)?.begin_transaction()?))
}

/// Adds a group's offset to the open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_send_offset_to_transaction(
    p: *const runnel_producer,
    group: *const c_char,
    topic: *const c_char,
    partition: u32,
    offset: u64,
) -> runnel_result {
    guard(|| {
        let commit = OffsetCommit { topic: string(topic, "topic")?, partition, offset, metadata: "" };
        Ok(producer_of(p)?.send_offsets_to_transaction(string(group, "group")?, &[commit])?)
    })
}

/// Flushes, then commits the open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_commit_transaction(p: *const runnel_producer) -> runnel_result {
    guard(|| Ok(producer_of(p)?.commit_transaction()?))
}

/// Flushes, then aborts the open transaction.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_abort_transaction(p: *const runnel_producer) -> runnel_result {
    guard(|| Ok(producer_of(p)?.abort_transaction()?))
}

/// Flushes what was sent, waiting up to `timeout_ms` (0: no limit), and stops the sender; what
/// is still unsent then fails (`RUNNEL_TIMEOUT`). Later sends fail with `RUNNEL_CLOSED`. The
/// handle stays valid until [`runnel_producer_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_close(p: *const runnel_producer, timeout_ms: u64) -> runnel_result {
    guard(|| {
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
        Ok(producer_of(p)?.close(timeout)?)
    })
}

/// Closes (flushing everything) and frees a producer.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_producer_free(p: *mut runnel_producer) -> runnel_result {
    guard(|| {
        if producer_of(p)?.on_sender_thread() {
            return fail(RUNNEL_INVALID_ARGUMENT, "a producer cannot be freed in one of its own callbacks");
        }
        let o = unregister(p as usize, |o| matches!(o, Object::Producer(_)), "runnel_producer")?;
        if let Object::Producer(p) = o {
            p.close(None)?;
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Consumer

/// A consumer on `log` with settings under Kafka's names (`"group.id"`, `"enable.auto.commit"`,
/// `"auto.commit.interval.ms"`, `"auto.offset.reset"`, `"max.poll.records"`, `"isolation.level"`,
/// `"partition.assignment.strategy"`, ...). Free with [`runnel_consumer_free`] (which closes it:
/// commits with auto-commit on, and leaves the group).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_new(
    log: *const runnel_log,
    config: *const *const c_char,
    n_config: usize,
    out: *mut *mut runnel_consumer,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let log = log_of(log)?;
        let mut c = ConsumerConfig::default();
        for (k, v) in pairs(config, n_config, "config")? {
            c.set(k, v)?;
        }
        let arc = Arc::new(Mutex::new(Consumer::new(&log, c)?));
        let h = register(Object::Consumer(arc));
        write_out(out, h as *mut runnel_consumer);
        Ok(())
    })
}

/// The C rebalance callback as a listener.
struct CListener {
    callback: extern "C" fn(*mut c_void, c_int, *const runnel_topic_partition, usize, *mut i64),
    user: UserData,
}

impl CListener {
    fn call(&self, assigned: bool, partitions: &[TopicPartition]) -> Vec<i64> {
        let names: Vec<CString> = partitions.iter().map(|tp| CString::new(tp.topic.as_bytes()).unwrap_or_default()).collect();
        let tps: Vec<runnel_topic_partition> =
            partitions.iter().zip(&names).map(|(tp, n)| runnel_topic_partition { topic: n.as_ptr(), partition: tp.partition }).collect();
        let mut seek = vec![-1i64; partitions.len()];
        (self.callback)(self.user.0, c_int::from(assigned), tps.as_ptr(), tps.len(), seek.as_mut_ptr());
        seek
    }
}

impl ConsumerRebalanceListener<Vec<u8>, Vec<u8>> for CListener {
    fn on_partitions_revoked(&mut self, _consumer: &mut Consumer, partitions: &[TopicPartition]) {
        self.call(false, partitions);
    }
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer, partitions: &[TopicPartition]) {
        let seek = self.call(true, partitions);
        for (tp, at) in partitions.iter().zip(seek) {
            if at >= 0
                && let Err(e) = consumer.seek(tp, at as u64)
            {
                log_error(&format!("seek to {at} on {tp} from a rebalance callback: {e}"));
            }
        }
    }
}

fn log_error(msg: &str) {
    eprintln!("runnel: {msg}");
}

fn topic_list(topics: *const *const c_char, n: usize) -> Outcome<Vec<String>> {
    array(topics, n, "topics")?.iter().map(|&t| Ok(string(t, "topic")?.to_string())).collect()
}

/// Subscribes to `n` topics (the group shares their partitions); `callback` (may be NULL) hears
/// of rebalances, with `user_data`.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_subscribe(
    c: *const runnel_consumer,
    topics: *const *const c_char,
    n: usize,
    callback: runnel_rebalance_callback,
    user_data: *mut c_void,
) -> runnel_result {
    let user = UserData(user_data);
    guard(|| {
        let c = consumer_of(c)?;
        let sub = Subscription::Topics(topic_list(topics, n)?);
        subscribe(&c, sub, callback, user)
    })
}

/// Subscribes to every topic whose whole name matches the regular expression `pattern`.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_subscribe_pattern(
    c: *const runnel_consumer,
    pattern: *const c_char,
    callback: runnel_rebalance_callback,
    user_data: *mut c_void,
) -> runnel_result {
    let user = UserData(user_data);
    guard(|| {
        let c = consumer_of(c)?;
        let sub = Subscription::Pattern(string(pattern, "pattern")?.to_string());
        subscribe(&c, sub, callback, user)
    })
}

fn subscribe(c: &Mutex<Consumer>, sub: Subscription, callback: runnel_rebalance_callback, user: UserData) -> Outcome {
    let mut c = use_consumer(c)?;
    match callback {
        Some(cb) => c.subscribe_with_listener(sub, CListener { callback: cb, user })?,
        None => c.subscribe(sub)?,
    }
    Ok(())
}

/// Assigns `n` partitions by hand (no group membership): `topics[i]`, `partitions[i]`.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_assign(
    c: *const runnel_consumer,
    topics: *const *const c_char,
    partitions: *const u32,
    n: usize,
) -> runnel_result {
    guard(|| {
        let c = consumer_of(c)?;
        let names = topic_list(topics, n)?;
        let parts = array(partitions, n, "partitions")?;
        let tps: Vec<TopicPartition> = names.into_iter().zip(parts).map(|(t, &p)| TopicPartition::new(t, p)).collect();
        Ok(use_consumer(&c)?.assign(&tps)?)
    })
}

/// A consumed record: its topic and partition, and views into the log's memory map, valid until
/// the poll result is freed.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct runnel_consumer_record {
    /// The topic.
    pub topic: *const c_char,
    /// The partition.
    pub partition: u32,
    /// The record itself (its `headers_len` is 0: read headers with a fetch if needed).
    pub record: runnel_record_view,
}

/// A polled record: (topic index, partition, offset, timestamp, key, value), the key and value as
/// (address, length) in the mappings the poll result keeps.
type PolledEntry = (usize, u32, u64, i64, Option<Span>, Option<Span>);

pub(crate) struct PolledObject {
    /// Keeps the mappings the views point into.
    _records: ConsumerRecords<Vec<u8>, Vec<u8>>,
    topics: Vec<CString>,
    entries: Vec<PolledEntry>,
    cursor: std::sync::atomic::AtomicUsize,
}

impl PolledObject {
    fn new(records: ConsumerRecords<Vec<u8>, Vec<u8>>) -> Outcome<PolledObject> {
        let mut topics: Vec<CString> = Vec::new();
        let mut entries = Vec::with_capacity(records.count());
        let addr = |s: &[u8]| (s.as_ptr() as usize, s.len());
        for r in records.iter() {
            let r = r?;
            let t = match topics.iter().position(|t| t.as_bytes() == r.topic().as_bytes()) {
                Some(i) => i,
                None => {
                    topics.push(CString::new(r.topic()).unwrap_or_default());
                    topics.len() - 1
                }
            };
            entries.push((t, r.partition(), r.offset(), r.timestamp(), r.key_bytes().map(addr), r.value_bytes().map(addr)));
        }
        Ok(PolledObject { _records: records, topics, entries, cursor: Default::default() })
    }

    fn get(&self, i: usize) -> Option<runnel_consumer_record> {
        let &(t, partition, offset, timestamp, key, value) = self.entries.get(i)?;
        let ptr = |s: Option<(usize, usize)>| s.map_or((std::ptr::null(), 0), |(a, l)| (a as *const u8, l));
        let (key, key_len) = ptr(key);
        let (value, value_len) = ptr(value);
        Some(runnel_consumer_record {
            topic: self.topics[t].as_ptr(),
            partition,
            record: runnel_record_view { offset, timestamp, key, key_len, value, value_len, headers_len: 0, index: i },
        })
    }
}

/// Polls: returns as soon as records arrive (up to `max.poll.records`), or after `timeout_ms`
/// with an empty result; takes part in the group's rebalances (calling the rebalance callback),
/// auto-commits, and runs the callbacks of finished async commits. Free the result with
/// [`runnel_polled_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_poll(c: *const runnel_consumer, timeout_ms: u64, out: *mut *mut runnel_polled) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let c = consumer_of(c)?;
        let records = use_consumer(&c)?.poll(Duration::from_millis(timeout_ms))?;
        let arc = Arc::new(PolledObject::new(records)?);
        let h = register(Object::Polled(arc));
        write_out(out, h as *mut runnel_polled);
        Ok(())
    })
}

/// Number of records polled; 0 for an invalid handle.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_polled_count(p: *const runnel_polled) -> usize {
    let mut n = 0;
    let _ = guard(|| {
        n = polled_of(p)?.entries.len();
        Ok(())
    });
    n
}

/// The next polled record: `RUNNEL_OK`, or `RUNNEL_DONE` after the last.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_polled_next(p: *mut runnel_polled, out: *mut runnel_consumer_record) -> runnel_result {
    let mut done = false;
    let r = guard(|| {
        let out = out_ptr(out, "out")?;
        let p = polled_of(p)?;
        let i = p.cursor.load(std::sync::atomic::Ordering::Relaxed);
        match p.get(i) {
            Some(r) => {
                p.cursor.store(i + 1, std::sync::atomic::Ordering::Relaxed);
                write_out(out, r);
            }
            None => done = true,
        }
        Ok(())
    });
    if r == RUNNEL_OK && done { RUNNEL_DONE } else { r }
}

/// The polled record at `index`.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_polled_get(p: *const runnel_polled, index: usize, out: *mut runnel_consumer_record) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let p = polled_of(p)?;
        let r = p.get(index).ok_or_else(|| Failure(RUNNEL_INVALID_ARGUMENT, format!("no record at index {index}")))?;
        write_out(out, r);
        Ok(())
    })
}

/// Frees a poll result.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_polled_free(p: *mut runnel_polled) -> runnel_result {
    guard(|| unregister(p as usize, |o| matches!(o, Object::Polled(_)), "runnel_polled").map(drop))
}

/// Commits the positions of everything the consumer owns (Kafka's `commitSync()`).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_commit_sync(c: *const runnel_consumer) -> runnel_result {
    guard(|| with_consumer(c, |c| Ok(c.commit_sync()?)))
}

/// Commits the positions in the background (Kafka's `commitAsync(callback)`); `callback` (may
/// be NULL) runs in a later poll, commit or close of this consumer, on its thread.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_commit_async(
    c: *const runnel_consumer,
    callback: runnel_commit_callback,
    user_data: *mut c_void,
) -> runnel_result {
    let user = UserData(user_data);
    guard(|| {
        let c = consumer_of(c)?;
        let cb: Option<runnel::clients::CommitCallback> = callback.map(|cb| {
            Box::new(move |_offsets: &[(TopicPartition, u64)], err: Option<&Error>| match err {
                None => cb(user.ptr(), RUNNEL_OK, std::ptr::null()),
                Some(e) => {
                    let msg = CString::new(e.to_string().replace('\0', "\\0")).unwrap_or_default();
                    cb(user.ptr(), code_of(e), msg.as_ptr());
                }
            }) as runnel::clients::CommitCallback
        });
        Ok(use_consumer(&c)?.commit_async(cb)?)
    })
}

/// Commits `offset` (the next to consume) for one partition the consumer owns.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_commit_offset(
    c: *const runnel_consumer,
    topic: *const c_char,
    partition: u32,
    offset: u64,
) -> runnel_result {
    guard(|| {
        let tp = TopicPartition::new(string(topic, "topic")?, partition);
        with_consumer(c, |c| Ok(c.commit_offsets_sync(&[(tp, offset)])?))
    })
}

/// The group's committed offset for a partition; `RUNNEL_DONE` when it has none.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_committed(
    c: *const runnel_consumer,
    topic: *const c_char,
    partition: u32,
    offset: *mut u64,
) -> runnel_result {
    let mut none = false;
    let r = guard(|| {
        let out = out_ptr(offset, "offset")?;
        let tp = TopicPartition::new(string(topic, "topic")?, partition);
        match with_consumer(c, |c| Ok(c.committed(&tp)?))? {
            Some(o) => write_out(out, o),
            None => none = true,
        }
        Ok(())
    });
    if r == RUNNEL_OK && none { RUNNEL_DONE } else { r }
}

/// The offset of the next record poll will return from an owned partition.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_position(
    c: *const runnel_consumer,
    topic: *const c_char,
    partition: u32,
    offset: *mut u64,
) -> runnel_result {
    guard(|| {
        let out = out_ptr(offset, "offset")?;
        let tp = TopicPartition::new(string(topic, "topic")?, partition);
        write_out(out, with_consumer(c, |c| Ok(c.position(&tp)?))?);
        Ok(())
    })
}

/// Makes the next poll read an owned partition from `offset` (Kafka's `seek`).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_seek(c: *const runnel_consumer, topic: *const c_char, partition: u32, offset: u64) -> runnel_result {
    guard(|| {
        let tp = TopicPartition::new(string(topic, "topic")?, partition);
        with_consumer(c, |c| Ok(c.seek(&tp, offset)?))
    })
}

/// Seeks an owned partition to its beginning (`to_end` 0) or its end (`to_end` 1).
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_seek_to(c: *const runnel_consumer, topic: *const c_char, partition: u32, to_end: c_int) -> runnel_result {
    guard(|| {
        let tp = [TopicPartition::new(string(topic, "topic")?, partition)];
        let c = consumer_of(c)?;
        let mut c = use_consumer(&c)?;
        if to_end != 0 {
            c.seek_to_end(&tp)?
        } else {
            c.seek_to_beginning(&tp)?
        }
        Ok(())
    })
}

/// Pauses (`paused` 1) or resumes (`paused` 0) fetching from an owned partition.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_pause(c: *const runnel_consumer, topic: *const c_char, partition: u32, paused: c_int) -> runnel_result {
    guard(|| {
        let tp = [TopicPartition::new(string(topic, "topic")?, partition)];
        let c = consumer_of(c)?;
        let mut c = use_consumer(&c)?;
        if paused != 0 {
            c.pause(&tp)?
        } else {
            c.resume(&tp)?
        }
        Ok(())
    })
}

/// The partitions the consumer owns, as "topic-partition" strings in a list; free with
/// [`runnel_string_list_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_assignment(c: *const runnel_consumer, out: *mut *mut runnel_string_list) -> runnel_result {
    guard(|| {
        let out = out_ptr(out, "out")?;
        let a = with_consumer(c, |c| Ok(c.assignment()))?;
        make_strings(a.iter().map(ToString::to_string).collect(), out)
    })
}

/// Closes the consumer: waits for async commits, commits with auto-commit on, leaves the group.
/// The handle stays valid until [`runnel_consumer_free`].
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_close(c: *const runnel_consumer) -> runnel_result {
    guard(|| with_consumer(c, |c| Ok(c.close()?)))
}

/// Closes and frees a consumer.
#[unsafe(no_mangle)]
pub extern "C" fn runnel_consumer_free(c: *mut runnel_consumer) -> runnel_result {
    guard(|| {
        // Refused, before anything changes, while the consumer is in use (from one of its own
        // poll's callbacks, or on another thread).
        let arc = consumer_of(c)?;
        drop(use_consumer(&arc)?);
        drop(arc);
        let o = unregister(c as usize, |o| matches!(o, Object::Consumer(_)), "runnel_consumer")?;
        if let Object::Consumer(c) = o {
            lock(&c).close()?;
        }
        Ok(())
    })
}
