//! The producer's record accumulator (Kafka's `RecordAccumulator`): per-partition queues of
//! batches that `send` fills and the sender thread drains, with the memory limit that makes `send`
//! block (`buffer.memory`, `max.block.ms`) and the counters `flush` waits on.
//!
//! One mutex guards it all. `send` holds it for a copy of the record's bytes; the sender holds it
//! to pick the ready batches and again to account for them once appended, never across an append.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::producer::{BatchDone, Callback};
use crate::{Error, Header, Record};

/// How long the sender spins for more work before it sleeps. Bounded, so an idle producer costs
/// nothing; long enough to cover the gap between batches under steady traffic.
const SPIN: Duration = Duration::from_micros(50);

/// Bytes a record costs in the accumulator beyond its key, value and headers (its bookkeeping,
/// about what its framing costs in a batch).
pub const RECORD_OVERHEAD: usize = 24;

/// One record waiting in a batch: ranges into the batch's buffer.
struct Pending {
    key: Option<Range<u32>>,
    value: Option<Range<u32>>,
    headers: Range<u32>,
    timestamp: i64,
}

/// Records for one partition, appended as one batch.
pub struct Batch {
    pub topic: Arc<str>,
    pub partition: u32,
    data: Vec<u8>,
    records: Vec<Pending>,
    headers: Vec<(Range<u32>, Option<Range<u32>>)>,
    /// Callbacks, by index of their record in the batch.
    pub callbacks: Vec<(u32, Callback)>,
    pub done: Arc<BatchDone>,
    created: Instant,
    /// Accounted bytes (payload plus [`RECORD_OVERHEAD`] per record).
    pub bytes: usize,
}

/// The buffers of a finished batch, kept for the next one: a steady stream of batches then
/// allocates nothing. (Freeing a batch's buffers in the sender thread and allocating new ones in
/// the sending thread made the allocator grow and trim its heap, which takes the process's memory
/// map lock for writing, for every batch: the sender then queued behind the prefault thread's
/// page faulting.)
pub struct Spare {
    data: Vec<u8>,
    records: Vec<Pending>,
    headers: Vec<(Range<u32>, Option<Range<u32>>)>,
}

/// How many finished batches' buffers are kept.
const SPARES: usize = 16;

/// Scratch space the sender builds each batch's [`Record`]s in, kept across batches.
#[derive(Default)]
pub struct RecordScratch {
    records: Vec<Record<'static>>,
    headers: Vec<Header<'static>>,
}

/// An empty vector of `Record`s of another lifetime, in the same allocation (the standard
/// library collects a vector's `into_iter()` in place when the element layout is the same).
#[expect(clippy::unnecessary_filter_map, reason = "the element type changes, which `filter` cannot do")]
fn relabel<'a, 'b>(mut v: Vec<Record<'a>>) -> Vec<Record<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

#[expect(clippy::unnecessary_filter_map, reason = "the element type changes, which `filter` cannot do")]
fn relabel_headers<'a, 'b>(mut v: Vec<Header<'a>>) -> Vec<Header<'b>> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

impl Batch {
    fn new(topic: Arc<str>, partition: u32, capacity: usize, records: usize, spare: Option<Spare>) -> Batch {
        let (data, recs, headers) = match spare {
            Some(s) => (s.data, s.records, s.headers),
            None => (Vec::with_capacity(capacity), Vec::with_capacity(records), Vec::new()),
        };
        Batch {
            topic,
            partition,
            data,
            records: recs,
            headers,
            callbacks: Vec::new(),
            done: Arc::new(BatchDone::default()),
            created: Instant::now(),
            bytes: 0,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The record's timestamp.
    pub fn timestamp(&self, i: usize) -> i64 {
        self.records[i].timestamp
    }

    fn push_bytes(&mut self, b: &[u8]) -> Range<u32> {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(b);
        start..self.data.len() as u32
    }

    /// Copies a record in; returns its index.
    fn push(&mut self, r: &Staged<'_>) -> u32 {
        let key = r.key.map(|k| self.push_bytes(k));
        let value = r.value.map(|v| self.push_bytes(v));
        let first = self.headers.len() as u32;
        for (k, v) in r.headers {
            let k = self.push_bytes(k.as_bytes());
            let v = v.as_deref().map(|v| self.push_bytes(v));
            self.headers.push((k, v));
        }
        self.records.push(Pending { key, value, headers: first..self.headers.len() as u32, timestamp: r.timestamp });
        self.bytes += r.size;
        (self.records.len() - 1) as u32
    }

    /// The batch's records as the engine takes them, built in `scratch` and handed to `f`.
    pub fn with_records<T>(&self, range: Range<usize>, scratch: &mut RecordScratch, f: impl FnOnce(&[Record<'_>]) -> T) -> T {
        let slice = |r: &Range<u32>| &self.data[r.start as usize..r.end as usize];
        let mut headers = relabel_headers(std::mem::take(&mut scratch.headers));
        headers.extend(self.headers.iter().map(|(k, v)| Header { key: slice(k), value: v.as_ref().map(slice) }));
        let mut records = relabel(std::mem::take(&mut scratch.records));
        records.extend(self.records[range].iter().map(|p| Record {
            key: p.key.as_ref().map(slice),
            value: p.value.as_ref().map(slice),
            headers: &headers[p.headers.start as usize..p.headers.end as usize],
            timestamp: Some(p.timestamp),
        }));
        let out = f(&records);
        scratch.records = relabel(records);
        scratch.headers = relabel_headers(headers);
        out
    }

    /// The batch's buffers, emptied, for a later batch.
    fn into_spare(self) -> Spare {
        let (mut data, mut records, mut headers) = (self.data, self.records, self.headers);
        data.clear();
        records.clear();
        headers.clear();
        Spare { data, records, headers }
    }
}

/// A serialized record on its way into a batch.
pub struct Staged<'a> {
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(String, Option<Vec<u8>>)],
    pub timestamp: i64,
    /// Accounted bytes.
    pub size: usize,
}

/// One topic's queues, with what the producer knows of the topic.
struct TopicQueues {
    topic: Arc<str>,
    /// The partition count, looked up when the topic is first seen and again whenever a record
    /// starts a new batch or names a partition beyond it.
    partitions: u32,
    queues: Vec<VecDeque<Batch>>,
    /// The default partitioner's sticky partition for records without a key.
    sticky: Option<u32>,
    round_robin: u32,
}

#[derive(Default)]
struct State {
    topics: HashMap<Box<str>, TopicQueues, std::hash::BuildHasherDefault<crate::catalog::Fnv>>,
    buffered: usize,
    /// Records accepted, and records whose futures and callbacks are done.
    enqueued: u64,
    completed: u64,
    /// `flush` calls waiting: every batch is ready.
    flushing: usize,
    closing: bool,
    /// Close ran out of time: fail what is left.
    abandon: bool,
    sender_idle: bool,
    /// Buffers of finished batches (see [`Spare`]).
    spares: Vec<Spare>,
    /// The completions of the batches the sender has taken and not finished.
    in_flight: Vec<Arc<BatchDone>>,
    /// Threads waiting on `progress` (flushes, sends blocked for buffer space): the sender
    /// notifies (a system call) only if there are any.
    progress_waiters: usize,
}

/// What the sender takes in one round.
pub enum Work {
    Batches(Vec<Batch>),
    /// Close ran out of time: these batches are to be failed.
    Abandon(Vec<Batch>),
    Stop,
}

pub struct Accumulator {
    state: Mutex<State>,
    /// Bumped by `append` when it has work for a sender that is spinning rather than asleep
    /// (see [`SPIN`]): the sender notices without a system call on either side.
    hint: AtomicU64,
    wake_sender: Condvar,
    progress: Condvar,
    pub batch_size: usize,
    pub linger: Duration,
    pub buffer_memory: usize,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A record taken in: its batch's completion, its index in the batch, and its partition.
pub type Accepted = (Arc<BatchDone>, u32, u32);
/// A record refused, with its callback handed back to be told.
pub type Refused = (Error, Option<Callback>);

/// How a record's partition is chosen. Inside the lock, where the topic's partition count is kept.
pub enum Choice {
    /// This partition.
    Fixed(u32),
    /// The default partitioner with a key: this key hash ([`crate::partitioner`]) modulo the count.
    Hash(u32),
    /// The default partitioner without a key: the topic's sticky partition.
    Sticky,
    /// The next partition in turn.
    RoundRobin,
}

impl Accumulator {
    pub fn new(batch_size: usize, linger: Duration, buffer_memory: usize) -> Accumulator {
        Accumulator {
            state: Mutex::new(State::default()),
            hint: AtomicU64::new(0),
            wake_sender: Condvar::new(),
            progress: Condvar::new(),
            batch_size: batch_size.max(1),
            linger,
            buffer_memory,
        }
    }

    /// Adds a record, waiting up to `max_block` for buffer space. Returns the batch's completion,
    /// the record's index in it, and the partition. `partition_count` looks the topic up in the
    /// log: when it is first seen, and at most once per new batch after that.
    pub fn append(
        &self,
        topic: &str,
        choice: Choice,
        record: &Staged<'_>,
        callback: Option<Callback>,
        max_block: Duration,
        partition_count: &dyn Fn() -> crate::Result<u32>,
    ) -> Result<Accepted, Refused> {
        let mut st = lock(&self.state);
        if st.closing {
            return Err((Error::Closed, callback));
        }
        if st.buffered + record.size > self.buffer_memory {
            let deadline = Instant::now().checked_add(max_block).unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
            while st.buffered + record.size > self.buffer_memory && !st.closing {
                let now = Instant::now();
                if now >= deadline {
                    let msg = format!(
                        "no room for a {}-byte record in buffer.memory ({} bytes) within max.block.ms ({} ms)",
                        record.size,
                        self.buffer_memory,
                        max_block.as_millis()
                    );
                    return Err((Error::Timeout(msg), callback));
                }
                st.progress_waiters += 1;
                st = self.progress.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                st.progress_waiters -= 1;
            }
            if st.closing {
                return Err((Error::Closed, callback));
            }
        }
        let st = &mut *st;
        let t = match st.topics.get_mut(topic) {
            Some(t) => t,
            None => {
                let partitions = match partition_count() {
                    Ok(n) => n,
                    Err(e) => return Err((e, callback)),
                };
                let t = TopicQueues { topic: Arc::from(topic), partitions, queues: Vec::new(), sticky: None, round_robin: 0 };
                st.topics.entry(topic.into()).or_insert(t)
            }
        };
        let partition = match choice {
            Choice::Fixed(p) => {
                if p >= t.partitions {
                    // Partitions may have been added since the count was looked up.
                    t.partitions = partition_count().unwrap_or(t.partitions);
                    if p >= t.partitions {
                        return Err((Error::unknown(topic, Some(p)), callback));
                    }
                }
                p
            }
            Choice::Hash(h) => h % t.partitions.max(1),
            Choice::RoundRobin => {
                t.round_robin = t.round_robin.wrapping_add(1);
                t.round_robin % t.partitions.max(1)
            }
            Choice::Sticky => match t.sticky {
                // Kafka's sticky partitioner (KIP-480): stay while the partition's open batch has
                // room; once it is full or has been sent, move to another partition.
                Some(p) if p < t.partitions => {
                    let open = t.queues.get(p as usize).and_then(|q| q.back()).is_some_and(|b| b.bytes + record.size <= self.batch_size);
                    if open { p } else { *t.sticky.insert(next_sticky(Some(p), t.partitions)) }
                }
                _ => *t.sticky.insert(next_sticky(None, t.partitions)),
            },
        };
        if t.queues.len() <= partition as usize {
            t.queues.resize_with(partition as usize + 1, VecDeque::new);
        }
        let fits = t.queues[partition as usize].back().is_some_and(|b| b.bytes + record.size <= self.batch_size);
        let mut notify = st.flushing > 0 || self.linger.is_zero();
        if !fits {
            // A new batch: look at the topic again (it may have gained partitions, or be gone).
            match partition_count() {
                Ok(n) => t.partitions = n.max(t.partitions),
                Err(e) => return Err((e, callback)),
            }
            let queue = &mut t.queues[partition as usize];
            let capacity = queue.back().map_or(self.batch_size.min(1 << 20), |b| b.data.len().max(64));
            let records = queue.back().map_or(16, |b| b.records.len());
            let spare = st.spares.pop();
            queue.push_back(Batch::new(t.topic.clone(), partition, capacity, records, spare));
            // A first batch gives the sender a new deadline to sleep to.
            notify = true;
        }
        let queue = &mut t.queues[partition as usize];
        let batch = queue.back_mut().expect("a batch was just ensured");
        let index = batch.push(record);
        if batch.bytes >= self.batch_size {
            notify = true;
        }
        if let Some(cb) = callback {
            batch.callbacks.push((index, cb));
        }
        let done = batch.done.clone();
        st.buffered += record.size;
        st.enqueued += 1;
        if notify {
            if st.sender_idle {
                st.sender_idle = false;
                self.wake_sender.notify_one();
            } else {
                self.hint.fetch_add(1, Ordering::Release);
            }
        }
        Ok((done, index, partition))
    }

    /// The sender's wait for work: the ready batches, in queue order per partition.
    pub fn next_work(&self) -> Work {
        let mut st = lock(&self.state);
        let mut spun = false;
        loop {
            if st.abandon {
                let all: Vec<Batch> = st.topics.values_mut().flat_map(|t| t.queues.iter_mut().flat_map(|q| q.drain(..))).collect();
                if all.is_empty() {
                    return Work::Stop;
                }
                st.in_flight.extend(all.iter().map(|b| b.done.clone()));
                return Work::Abandon(all);
            }
            let now = Instant::now();
            let all_ready = st.flushing > 0 || st.closing || self.linger.is_zero();
            let mut ready = Vec::new();
            let mut next_deadline: Option<Instant> = None;
            for t in st.topics.values_mut() {
                for q in t.queues.iter_mut() {
                    while let Some(front) = q.front() {
                        let due = front.created + self.linger;
                        if all_ready || q.len() > 1 || front.bytes >= self.batch_size || due <= now {
                            ready.extend(q.pop_front());
                        } else {
                            next_deadline = Some(next_deadline.map_or(due, |d: Instant| d.min(due)));
                            break;
                        }
                    }
                }
            }
            if !ready.is_empty() {
                st.in_flight.extend(ready.iter().map(|b| b.done.clone()));
                return Work::Batches(ready);
            }
            if st.closing && st.enqueued == st.completed {
                return Work::Stop;
            }
            if !spun && !st.closing {
                // Before sleeping, spin a little: under steady traffic the next batch is ready
                // within microseconds, and a futex wake (on the sending side) and a context switch
                // (on this one) for every batch would cost more than the batch's own append.
                spun = true;
                let seen = self.hint.load(Ordering::Acquire);
                drop(st);
                let until = Instant::now() + SPIN;
                while self.hint.load(Ordering::Acquire) == seen && Instant::now() < until {
                    for _ in 0..64 {
                        std::hint::spin_loop();
                    }
                }
                st = lock(&self.state);
                continue;
            }
            spun = false;
            st.sender_idle = true;
            st = match next_deadline {
                Some(d) => self.wake_sender.wait_timeout(st, d.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0,
                None => self.wake_sender.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
            st.sender_idle = false;
        }
    }

    /// The sender finished `batch`: its futures and callbacks are done.
    pub fn complete(&self, batch: Batch) {
        let (records, bytes) = (batch.len() as u64, batch.bytes);
        let done = batch.done.clone();
        let spare = (batch.data.capacity() <= 4 * self.batch_size.max(1 << 12)).then(|| batch.into_spare());
        let mut st = lock(&self.state);
        st.in_flight.retain(|d| !Arc::ptr_eq(d, &done));
        st.completed += records;
        st.buffered -= bytes;
        if let Some(spare) = spare
            && st.spares.len() < SPARES
        {
            st.spares.push(spare);
        }
        let wake = st.progress_waiters > 0;
        drop(st);
        if wake {
            self.progress.notify_all();
        }
    }

    /// Waits until every record accepted before the call is complete (its batch appended and its
    /// callbacks run), or `timeout` passes. It waits for those batches themselves, queued or in the
    /// sender's hands, not for a count: the sender may complete later records first.
    pub fn flush(&self, timeout: Option<Duration>) -> bool {
        let mut st = lock(&self.state);
        let pending: Vec<Arc<BatchDone>> = st
            .topics
            .values()
            .flat_map(|t| t.queues.iter().flat_map(|q| q.iter().map(|b| b.done.clone())))
            .chain(st.in_flight.iter().cloned())
            .collect();
        if pending.is_empty() {
            return true;
        }
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        st.flushing += 1;
        if st.sender_idle {
            st.sender_idle = false;
            self.wake_sender.notify_one();
        }
        drop(st);
        let done = pending.iter().all(|d| d.wait(deadline));
        lock(&self.state).flushing -= 1;
        done
    }

    /// Stops taking records; the sender drains what is queued and stops.
    pub fn close(&self) {
        let mut st = lock(&self.state);
        st.closing = true;
        st.sender_idle = false;
        self.wake_sender.notify_one();
        drop(st);
        self.progress.notify_all();
    }

    /// After a close ran out of time: the sender fails what is still queued.
    pub fn abandon(&self) {
        let mut st = lock(&self.state);
        st.abandon = true;
        self.wake_sender.notify_one();
    }
}

/// A partition for the sticky partitioner: any but `current`, spread by a cheap counter-based
/// choice (the partitions a topic has, not randomness, is what matters for balance).
fn next_sticky(current: Option<u32>, n: u32) -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    if n <= 1 {
        return 0;
    }
    let mut p = NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(2_654_435_761) % n;
    if Some(p) == current {
        p = (p + 1) % n;
    }
    p
}
