//! The producer client (sections 4.1.1 to 4.1.3 and 4.3 of the Kafka primer): `send` returns at
//! once with a future; a sender thread appends batches from the accumulator and completes futures,
//! interceptors and callbacks.

use std::borrow::Cow;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::accumulator::{Accepted, Accumulator, Batch, Choice, RECORD_OVERHEAD, RecordScratch, Refused, Staged, Work};
use super::serde::{BytesSerializer, Serializer};
use super::{guarded, parse_bool, parse_num};
use crate::log::partition::now_ms;
use crate::{Acks, Error, IdempotentProducer, Log, OffsetCommit, Result, TransactionOptions, TransactionalProducer};

/// A record to send: Kafka's `ProducerRecord`. Without a partition the producer's
/// [`Partitioner`] picks one; without a timestamp the producer stamps it with the time of `send`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerRecord<'a, K, V> {
    /// The topic.
    pub topic: Cow<'a, str>,
    /// The partition, or `None` for the partitioner's choice.
    pub partition: Option<u32>,
    /// The key (`None`: a null key).
    pub key: Option<K>,
    /// The value (`None`: a null value, a tombstone).
    pub value: Option<V>,
    /// Milliseconds since the Unix epoch, or `None` for the time of `send`.
    pub timestamp: Option<i64>,
    /// Headers: keys and values (`None`: a null value).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl<'a, K, V> ProducerRecord<'a, K, V> {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<Cow<'a, str>>, value: V) -> Self {
        ProducerRecord { topic: topic.into(), partition: None, key: None, value: Some(value), timestamp: None, headers: Vec::new() }
    }

    /// A record with a key and a value.
    pub fn with_key(topic: impl Into<Cow<'a, str>>, key: K, value: V) -> Self {
        ProducerRecord { key: Some(key), ..Self::new(topic, value) }
    }

    /// Sends to this partition rather than the partitioner's choice.
    pub fn partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the timestamp.
    pub fn timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
}

/// Where a sent record went: Kafka's `RecordMetadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: u32,
    /// The record's offset; `None` with acks=0, which completes before the append.
    pub offset: Option<u64>,
    /// The record's timestamp: the one it was sent with (CreateTime), or the log's append time
    /// for topics with `message.timestamp.type=LogAppendTime`.
    pub timestamp: i64,
}

/// A function called once with the outcome of one `send`: Kafka's `Callback.onCompletion`. It runs
/// in the producer's sender thread (or in the caller's thread when `send` fails at once), so it
/// should be quick; callbacks of one partition run in offset order.
pub type Callback = Box<dyn FnOnce(std::result::Result<&RecordMetadata, &Error>) + Send>;

/// A custom partitioner: topic, key and partition count in, a partition below the count out.
pub type PartitionFn = Arc<dyn Fn(&str, Option<&[u8]>, u32) -> u32 + Send + Sync>;

/// How the producer picks a partition for a record sent without one.
#[derive(Clone, Default)]
pub enum Partitioner {
    /// Kafka's default: murmur2 of the key modulo the partition count for a keyed record (the
    /// same choice as [`crate::partitioner::partition_for_key`]); for a record without a key, one
    /// partition until its batch is full, then another (the sticky partitioner of KIP-480).
    #[default]
    Default,
    /// Every record to the next partition in turn, key or not.
    RoundRobin,
    /// A function of topic, key and partition count returning a partition below the count.
    Custom(PartitionFn),
}

impl std::fmt::Debug for Partitioner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Partitioner::Default => "Default",
            Partitioner::RoundRobin => "RoundRobin",
            Partitioner::Custom(_) => "Custom",
        })
    }
}

/// A producer's settings, under Kafka's names. Build it with the fields or with
/// [`ProducerConfig::set`] from `"key" = "value"` strings.
///
/// | Kafka name | field | default |
/// |------------|-------|---------|
/// | `acks` | `acks` | `all` |
/// | `batch.size` | `batch_size` (bytes) | 16384 |
/// | `linger.ms` | `linger` | 5 ms (Kafka 4.0's default) |
/// | `buffer.memory` | `buffer_memory` (bytes) | 32 MiB |
/// | `max.block.ms` | `max_block` | 60 s |
/// | `max.request.size` | `max_request_size` (bytes) | 1 MiB |
/// | `enable.idempotence` | `enable_idempotence` | `true` |
/// | `transactional.id` | `transactional_id` | none |
/// | `transaction.timeout.ms` | `transaction_timeout` | 60 s |
/// | `partitioner.class` | `partitioner` | `Default` (`set` takes `default` or `round_robin`) |
/// | `client.id` | `client_id` | empty |
#[derive(Clone, Debug)]
pub struct ProducerConfig {
    /// What a send waits for before it completes.
    pub acks: Acks,
    /// A batch is sent once its records' bytes reach this.
    pub batch_size: usize,
    /// A partial batch is sent this long after its first record.
    pub linger: Duration,
    /// Bytes of records the producer holds before `send` blocks.
    pub buffer_memory: usize,
    /// How long `send` blocks for buffer space before it fails with [`Error::Timeout`].
    pub max_block: Duration,
    /// The largest record `send` accepts (its key, value and headers).
    pub max_request_size: usize,
    /// Each batch carries a producer id and sequence, so a batch is stored once.
    pub enable_idempotence: bool,
    /// Makes the producer transactional (implies idempotence).
    pub transactional_id: Option<String>,
    /// How long a transaction may stay open before it is aborted.
    pub transaction_timeout: Duration,
    /// The partition for records sent without one.
    pub partitioner: Partitioner,
    /// A name for log messages and the sender thread.
    pub client_id: String,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            batch_size: 16384,
            linger: Duration::from_millis(5),
            buffer_memory: 32 << 20,
            max_block: Duration::from_secs(60),
            max_request_size: 1 << 20,
            enable_idempotence: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            partitioner: Partitioner::Default,
            client_id: String::new(),
        }
    }
}

impl ProducerConfig {
    /// Kafka's names this config takes.
    pub const KEYS: &'static [&'static str] = &[
        "acks",
        "batch.size",
        "linger.ms",
        "buffer.memory",
        "max.block.ms",
        "max.request.size",
        "enable.idempotence",
        "transactional.id",
        "transaction.timeout.ms",
        "partitioner.class",
        "client.id",
    ];

    /// Sets one setting by its Kafka name. Unknown names are refused, settings that need a
    /// broker (such as `bootstrap.servers`) included, so that a typo does not pass silently.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "acks" => self.acks = value.parse()?,
            "batch.size" => self.batch_size = parse_num(key, value)?,
            "linger.ms" => self.linger = Duration::from_millis(parse_num(key, value)?),
            "buffer.memory" => self.buffer_memory = parse_num(key, value)?,
            "max.block.ms" => self.max_block = Duration::from_millis(parse_num(key, value)?),
            "max.request.size" => self.max_request_size = parse_num(key, value)?,
            "enable.idempotence" => self.enable_idempotence = parse_bool(key, value)?,
            "transactional.id" => self.transactional_id = Some(value.to_string()),
            "transaction.timeout.ms" => self.transaction_timeout = Duration::from_millis(parse_num(key, value)?),
            "partitioner.class" => {
                self.partitioner = match value {
                    "default" => Partitioner::Default,
                    "round_robin" => Partitioner::RoundRobin,
                    _ => return Err(Error::InvalidArgument(format!("partitioner.class must be default or round_robin, not {value:?}"))),
                }
            }
            "client.id" => self.client_id = value.to_string(),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown producer setting {key:?}; runnel's producer takes {}",
                    Self::KEYS.join(", ")
                )));
            }
        }
        Ok(self)
    }

    /// A config from `(name, value)` pairs, over the defaults.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<ProducerConfig> {
        let mut c = ProducerConfig::default();
        for (k, v) in pairs {
            c.set(k, v)?;
        }
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.buffer_memory == 0 || self.max_request_size == 0 {
            return Err(Error::InvalidArgument("batch.size, buffer.memory and max.request.size must be positive".into()));
        }
        if self.transactional_id.is_some() && self.acks != Acks::All {
            return Err(Error::InvalidArgument("a transactional producer needs acks=all, as in Kafka".into()));
        }
        Ok(())
    }
}

/// Sees every record a producer sends, in the order of the chain: Kafka's `ProducerInterceptor`.
/// A panic in an interceptor is logged and the chain goes on, as Kafka does with exceptions.
pub trait ProducerInterceptor<K, V>: Send + Sync {
    /// Called in `send`, before serialization and partitioning; may change the record (best not
    /// its topic or partition).
    fn on_send(&self, record: &mut ProducerRecord<'_, K, V>) {
        let _ = record;
    }
    /// Called once per record with the outcome, before its callback, in the sender thread.
    fn on_acknowledgement(&self, outcome: std::result::Result<&RecordMetadata, &Error>) {
        let _ = outcome;
    }
    /// Called when the producer closes.
    fn close(&self) {}
}

/// How a batch went: shared by the futures of its records. A batch split on the way in (see
/// `send_batch`) has one outcome per part, each for the records from its first index on.
#[derive(Default)]
pub struct BatchDone {
    state: Mutex<DoneState>,
    cv: Condvar,
}

#[derive(Default)]
struct DoneState {
    parts: Option<Vec<Part>>,
    /// Futures waiting in `get`: the sender wakes them (a system call) only if there are any.
    waiters: usize,
}

/// One appended part of a batch: the index of its first record, and how its append went.
type Part = (u32, std::result::Result<Outcome, Error>);

#[derive(Clone)]
struct Outcome {
    topic: Arc<str>,
    partition: u32,
    base_offset: Option<u64>,
    log_append_time: Option<i64>,
}

impl BatchDone {
    /// Waits until the batch is done or `deadline` passes (`None`: no limit); whether it is done.
    pub fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.waiters += 1;
        let done = loop {
            if st.parts.is_some() {
                break true;
            }
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break false;
                    }
                    self.cv.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        };
        st.waiters -= 1;
        done
    }

    fn set(&self, parts: Vec<Part>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.parts = Some(parts);
        let wake = st.waiters > 0;
        drop(st);
        if wake {
            self.cv.notify_all();
        }
    }
}

/// The metadata (or error) of record `index` of a batch whose parts went as `parts`.
fn resolve(parts: &[Part], index: u32, timestamp: i64) -> Result<RecordMetadata> {
    let at = parts.partition_point(|(start, _)| *start <= index).saturating_sub(1);
    match parts.get(at) {
        Some((start, Ok(o))) => Ok(RecordMetadata {
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.base_offset.map(|b| b + u64::from(index - start)),
            timestamp: o.log_append_time.unwrap_or(timestamp),
        }),
        Some((_, Err(e))) => Err(e.clone()),
        None => Err(Error::InvalidArgument("a record outside its batch".into())),
    }
}

/// The pending outcome of one `send`: Kafka's `Future<RecordMetadata>`. [`SendFuture::get`] waits
/// for it, which is the synchronous send of section 4.1.3.
pub struct SendFuture {
    state: FutureState,
}

enum FutureState {
    Pending { done: Arc<BatchDone>, index: u32, timestamp: i64 },
    Ready(Result<RecordMetadata>),
}

impl std::fmt::Debug for SendFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture").field("done", &self.is_done()).finish()
    }
}

impl SendFuture {
    fn ready(r: Result<RecordMetadata>) -> SendFuture {
        SendFuture { state: FutureState::Ready(r) }
    }

    /// Whether the outcome is known.
    pub fn is_done(&self) -> bool {
        match &self.state {
            FutureState::Pending { done, .. } => done.state.lock().unwrap_or_else(|e| e.into_inner()).parts.is_some(),
            FutureState::Ready(_) => true,
        }
    }

    /// Waits for the outcome.
    pub fn get(self) -> Result<RecordMetadata> {
        self.get_timeout(None).unwrap_or_else(|_| Err(Error::Timeout("unreachable".into())))
    }

    /// Waits up to `timeout` (forever with `None`); gives the future back if it is still pending.
    pub fn get_timeout(self, timeout: Option<Duration>) -> std::result::Result<Result<RecordMetadata>, SendFuture> {
        let (done, index, timestamp) = match self.state {
            FutureState::Ready(r) => return Ok(r),
            FutureState::Pending { ref done, index, timestamp } => (done.clone(), index, timestamp),
        };
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut g = done.state.lock().unwrap_or_else(|e| e.into_inner());
        g.waiters += 1;
        let result = loop {
            if let Some(parts) = g.parts.as_ref() {
                break Some(resolve(parts, index, timestamp));
            }
            g = match deadline {
                None => done.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break None;
                    }
                    done.cv.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        };
        g.waiters -= 1;
        drop(g);
        result.ok_or(self)
    }
}

/// How the sender appends: the plain, idempotent or transactional path of the engine.
enum Sink {
    Plain(Log),
    Idempotent(Log, IdempotentProducer),
    Transactional(Log, Arc<TransactionalProducer>),
}

impl Sink {
    fn log(&self) -> &Log {
        match self {
            Sink::Plain(l) | Sink::Idempotent(l, _) | Sink::Transactional(l, _) => l,
        }
    }

    fn append(&self, b: &Batch, range: std::ops::Range<usize>, acks: Acks, scratch: &mut RecordScratch) -> Result<crate::AppendResult> {
        b.with_records(range, scratch, |records| match self {
            Sink::Plain(log) => log.append(&b.topic, Some(b.partition), records, acks),
            Sink::Idempotent(_, p) => p.send(&b.topic, Some(b.partition), records, acks),
            Sink::Transactional(_, p) => p.send(&b.topic, Some(b.partition), records),
        })
    }
}

struct Inner<K, V> {
    /// The sender thread, once it runs: calls that wait for the sender refuse to run on it.
    sender_thread: std::sync::OnceLock<std::thread::ThreadId>,
    sink: Sink,
    acc: Accumulator,
    config: ProducerConfig,
    key_serializer: Box<dyn Serializer<K>>,
    value_serializer: Box<dyn Serializer<V>>,
    interceptors: Vec<Box<dyn ProducerInterceptor<K, V>>>,
}

/// The producer: Kafka's `KafkaProducer`. `send` never waits for the disk: it copies the record
/// into a per-partition batch and returns a [`SendFuture`]; a sender thread appends full batches
/// (`batch.size`), or partial ones after `linger.ms`, and completes futures, interceptors and
/// callbacks in offset order per partition.
///
/// `Send + Sync`: share it between threads. [`Producer::close`] (or drop) flushes and stops the
/// sender. With `enable.idempotence` (the default) a batch is stored once even if the append is
/// retried; with a `transactional.id` the `*_transaction` methods group sends into transactions.
///
/// ```
/// use runnel::clients::{Producer, ProducerConfig, ProducerRecord, StringSerializer};
/// # fn main() -> runnel::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
/// # log.create_topic("first", 2, runnel::TopicConfig::default())?;
/// let producer = Producer::builder(&log, ProducerConfig::default(), StringSerializer, StringSerializer).build()?;
/// for i in 0..100 {
///     producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
/// }
/// // Synchronous send: wait on the future.
/// let at = producer.send(ProducerRecord::with_key("first", "k".to_string(), "v".to_string())).get()?;
/// assert!(at.offset.is_some());
/// producer.close(None)?;
/// # Ok(()) }
/// ```
pub struct Producer<K = Vec<u8>, V = Vec<u8>> {
    inner: Arc<Inner<K, V>>,
    sender: Mutex<Option<JoinHandle<()>>>,
}

impl<K, V> std::fmt::Debug for Producer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("client_id", &self.inner.config.client_id).finish()
    }
}

/// Builds a [`Producer`]: its log, config, serializers and interceptors.
pub struct ProducerBuilder<K, V> {
    log: Log,
    config: ProducerConfig,
    key_serializer: Box<dyn Serializer<K>>,
    value_serializer: Box<dyn Serializer<V>>,
    interceptors: Vec<Box<dyn ProducerInterceptor<K, V>>>,
}

impl<K: 'static, V: 'static> ProducerBuilder<K, V> {
    /// Adds an interceptor at the end of the chain.
    pub fn interceptor(mut self, i: impl ProducerInterceptor<K, V> + 'static) -> Self {
        self.interceptors.push(Box::new(i));
        self
    }

    /// Starts the producer: allocates its producer id when idempotent, initialises its
    /// transactional id when transactional (which fences an earlier producer with the same id
    /// and aborts what it left open: Kafka's `initTransactions`), and starts the sender thread.
    pub fn build(self) -> Result<Producer<K, V>> {
        self.config.validate()?;
        let sink = match (&self.config.transactional_id, self.config.enable_idempotence) {
            (Some(id), _) => {
                let p = self.log.transactional_producer(id, TransactionOptions::default().timeout(self.config.transaction_timeout))?;
                Sink::Transactional(self.log, Arc::new(p))
            }
            (None, true) => {
                let p = self.log.idempotent_producer()?;
                Sink::Idempotent(self.log, p)
            }
            (None, false) => {
                if self.log.is_read_only() {
                    return Err(Error::ReadOnly("this handle was opened read-only".into()));
                }
                Sink::Plain(self.log)
            }
        };
        let acc = Accumulator::new(self.config.batch_size, self.config.linger, self.config.buffer_memory);
        let inner = Arc::new(Inner {
            sender_thread: std::sync::OnceLock::new(),
            sink,
            acc,
            config: self.config,
            key_serializer: self.key_serializer,
            value_serializer: self.value_serializer,
            interceptors: self.interceptors,
        });
        let name = if inner.config.client_id.is_empty() {
            "runnel-producer".to_string()
        } else {
            format!("runnel-producer-{}", inner.config.client_id)
        };
        let worker = inner.clone();
        let sender = std::thread::Builder::new()
            .name(name)
            .spawn(move || sender_loop(&worker))
            .map_err(|e| Error::io("spawn the producer's sender thread", "", e))?;
        Ok(Producer { inner, sender: Mutex::new(Some(sender)) })
    }
}

impl Producer<Vec<u8>, Vec<u8>> {
    /// A producer of byte keys and values with `config`.
    pub fn new(log: &Log, config: ProducerConfig) -> Result<Producer<Vec<u8>, Vec<u8>>> {
        Producer::builder(log, config, BytesSerializer, BytesSerializer).build()
    }
}

impl<K: 'static, V: 'static> Producer<K, V> {
    /// A builder for a producer writing to `log` with these serializers.
    pub fn builder(
        log: &Log,
        config: ProducerConfig,
        key_serializer: impl Serializer<K> + 'static,
        value_serializer: impl Serializer<V> + 'static,
    ) -> ProducerBuilder<K, V> {
        ProducerBuilder {
            log: log.view(),
            config,
            key_serializer: Box::new(key_serializer),
            value_serializer: Box::new(value_serializer),
            interceptors: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Sends a record: Kafka's `send(record)`. Returns at once (unless the buffer is full, when it
    /// blocks up to `max.block.ms`); the future completes when the record is appended (acks=1),
    /// fsync'd (acks=all), or accepted (acks=0).
    pub fn send(&self, record: ProducerRecord<'_, K, V>) -> SendFuture {
        self.send_inner(record, None)
    }

    /// Sends a record and calls `callback` with its outcome: Kafka's `send(record, callback)`.
    pub fn send_with_callback(
        &self,
        record: ProducerRecord<'_, K, V>,
        callback: impl FnOnce(std::result::Result<&RecordMetadata, &Error>) + Send + 'static,
    ) -> SendFuture {
        self.send_inner(record, Some(Box::new(callback)))
    }

    fn send_inner(&self, mut record: ProducerRecord<'_, K, V>, callback: Option<Callback>) -> SendFuture {
        let inner = &*self.inner;
        for i in &inner.interceptors {
            guarded("a producer interceptor's on_send", || i.on_send(&mut record));
        }
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        // acks=0 completes as soon as the record is taken in; the append follows.
        let (callback, at_once) = if inner.config.acks == Acks::Zero { (None, callback) } else { (callback, None) };
        match self.enqueue(&record, timestamp, callback) {
            Ok((done, index, partition)) => {
                if inner.config.acks == Acks::Zero {
                    let meta = RecordMetadata { topic: Arc::from(&*record.topic), partition, offset: None, timestamp };
                    inner.acknowledge(Ok(&meta));
                    if let Some(cb) = at_once {
                        guarded("a send callback", || cb(Ok(&meta)));
                    }
                    return SendFuture::ready(Ok(meta));
                }
                SendFuture { state: FutureState::Pending { done, index, timestamp } }
            }
            Err((e, callback)) => {
                inner.acknowledge(Err(&e));
                if let Some(cb) = callback.or(at_once) {
                    guarded("a send callback", || cb(Err(&e)));
                }
                SendFuture::ready(Err(e))
            }
        }
    }

    fn enqueue(
        &self,
        record: &ProducerRecord<'_, K, V>,
        timestamp: i64,
        callback: Option<Callback>,
    ) -> std::result::Result<Accepted, Refused> {
        thread_local! {
            /// Where keys and values are serialized on their way into a batch: one buffer per
            /// sending thread, reused, so that a send allocates nothing.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                scratch.clear();
                let r = self.enqueue_with(record, timestamp, callback, &mut scratch);
                if scratch.capacity() > 1 << 20 {
                    *scratch = Vec::new();
                }
                r
            }
            // A serializer that sends from inside serialize: a buffer of its own.
            Err(_) => self.enqueue_with(record, timestamp, callback, &mut Vec::new()),
        })
    }

    fn enqueue_with(
        &self,
        record: &ProducerRecord<'_, K, V>,
        timestamp: i64,
        callback: Option<Callback>,
        scratch: &mut Vec<u8>,
    ) -> std::result::Result<Accepted, Refused> {
        let inner = &*self.inner;
        let log = inner.sink.log();
        let topic = &*record.topic;
        if let Some(k) = &record.key
            && let Err(e) = inner.key_serializer.serialize(topic, k, scratch)
        {
            return Err((e, callback));
        }
        let key_len = scratch.len();
        if let Some(v) = &record.value
            && let Err(e) = inner.value_serializer.serialize(topic, v, scratch)
        {
            return Err((e, callback));
        }
        let (key, value) = scratch.split_at(key_len);
        let key = record.key.as_ref().map(|_| key);
        let value = record.value.as_ref().map(|_| value);
        let payload = key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + record.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum::<usize>();
        if payload > inner.config.max_request_size || payload + RECORD_OVERHEAD > inner.config.buffer_memory {
            let max = inner.config.max_request_size.min(inner.config.buffer_memory.saturating_sub(RECORD_OVERHEAD));
            return Err((Error::RecordTooLarge { size: payload as u64, max: max as u64 }, callback));
        }
        let choice = match record.partition {
            Some(p) => Choice::Fixed(p),
            None => match (&inner.config.partitioner, key) {
                (Partitioner::Default, Some(k)) => Choice::Hash(crate::partitioner::key_hash(k)),
                (Partitioner::Default, None) => Choice::Sticky,
                (Partitioner::RoundRobin, _) => Choice::RoundRobin,
                (Partitioner::Custom(f), _) => {
                    let n = match log.partition_count(topic) {
                        Ok(n) => n,
                        Err(e) => return Err((e, callback)),
                    };
                    let p = f(topic, key, n);
                    if p >= n {
                        let e = Error::InvalidArgument(format!("the custom partitioner chose partition {p} of a {n}-partition topic"));
                        return Err((e, callback));
                    }
                    Choice::Fixed(p)
                }
            },
        };
        let staged = Staged { key, value, headers: &record.headers, timestamp, size: payload + RECORD_OVERHEAD };
        inner.acc.append(topic, choice, &staged, callback, inner.config.max_block, &|| log.partition_count(topic))
    }

    /// Waits until every record sent before the call is complete, callbacks included: Kafka's
    /// `flush()`. Called from one of this producer's own callbacks (which run on its sender
    /// thread) it returns at once: the sender cannot wait for itself.
    pub fn flush(&self) {
        if !self.on_sender_thread() {
            self.inner.acc.flush(None);
        }
    }

    /// Whether the calling thread is this producer's sender thread, where its callbacks run.
    /// `close` and the transaction calls refuse to run there, as they wait for the sender.
    pub fn on_sender_thread(&self) -> bool {
        self.inner.sender_thread.get() == Some(&std::thread::current().id())
    }

    fn not_on_sender_thread(&self, what: &str) -> Result<()> {
        if self.on_sender_thread() {
            return Err(Error::InvalidArgument(format!("{what} cannot run in one of the producer's own callbacks: it waits for them")));
        }
        Ok(())
    }

    /// Opens a transaction (transactional producers only): Kafka's `beginTransaction`.
    pub fn begin_transaction(&self) -> Result<()> {
        self.transactional()?.begin()
    }

    /// Adds a group's offsets to the open transaction: Kafka's `sendOffsetsToTransaction`.
    pub fn send_offsets_to_transaction(&self, group: &str, offsets: &[OffsetCommit<'_>]) -> Result<()> {
        self.transactional()?.send_offsets_to_transaction(group, offsets)
    }

    /// Flushes, then commits the open transaction: Kafka's `commitTransaction`. Durable when it
    /// returns.
    pub fn commit_transaction(&self) -> Result<()> {
        self.not_on_sender_thread("commit_transaction")?;
        let p = self.transactional()?;
        self.inner.acc.flush(None);
        p.commit()
    }

    /// Flushes, then aborts the open transaction: Kafka's `abortTransaction`. Records sent in it
    /// are appended and then aborted, so their futures succeed but read_committed consumers never
    /// see them.
    pub fn abort_transaction(&self) -> Result<()> {
        self.not_on_sender_thread("abort_transaction")?;
        let p = self.transactional()?;
        self.inner.acc.flush(None);
        p.abort()
    }

    fn transactional(&self) -> Result<&TransactionalProducer> {
        match &self.inner.sink {
            Sink::Transactional(_, p) => Ok(p),
            _ => Err(Error::InvalidTransactionState("this producer has no transactional.id".into())),
        }
    }

    /// Flushes what was sent and stops the sender: Kafka's `close(timeout)`. Waits up to
    /// `timeout` (forever with `None`); what is still unsent then fails with [`Error::Timeout`]
    /// and `close` returns that error. Interceptors' `close` run last. Later sends fail with
    /// [`Error::Closed`].
    pub fn close(&self, timeout: Option<Duration>) -> Result<()> {
        self.not_on_sender_thread("close")?;
        let Some(handle) = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(());
        };
        self.inner.acc.close();
        let drained = self.inner.acc.flush(timeout);
        if !drained {
            self.inner.acc.abandon();
        }
        let _ = handle.join();
        for i in &self.inner.interceptors {
            guarded("a producer interceptor's close", || i.close());
        }
        if drained { Ok(()) } else { Err(Error::Timeout("close: records still unsent were failed".into())) }
    }
}

impl<K, V> Drop for Producer<K, V> {
    fn drop(&mut self) {
        let Some(handle) = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        self.inner.acc.close();
        if self.inner.sender_thread.get() == Some(&std::thread::current().id()) {
            // Dropped by one of its own callbacks: the sender drains what is queued and ends on
            // its own; it cannot wait for itself.
            drop(handle);
            return;
        }
        self.inner.acc.flush(None);
        let _ = handle.join();
        for i in &self.inner.interceptors {
            guarded("a producer interceptor's close", || i.close());
        }
    }
}

impl<K, V> Inner<K, V> {
    fn acknowledge(&self, outcome: std::result::Result<&RecordMetadata, &Error>) {
        for i in &self.interceptors {
            guarded("a producer interceptor's on_acknowledgement", || i.on_acknowledgement(outcome));
        }
    }

    /// Appends a batch (split in halves when the topic finds it too large, as Kafka splits a batch
    /// a broker refuses as too large) and completes its records.
    fn send_batch(&self, mut b: Batch, scratch: &mut RecordScratch) {
        let n = b.len();
        let acks = self.config.acks;
        let mut outcomes: Vec<(std::ops::Range<usize>, Result<crate::AppendResult>)> = Vec::new();
        // The parts still to append, as (start, end): a stack, first part on top.
        let mut todo: Vec<(usize, usize)> = vec![(0, n)];
        while let Some((start, end)) = todo.pop() {
            let r = start..end;
            match self.sink.append(&b, r.clone(), acks, scratch) {
                Err(Error::RecordTooLarge { .. }) if r.len() > 1 => {
                    let mid = start + r.len() / 2;
                    todo.push((mid, end));
                    todo.push((start, mid));
                }
                res => outcomes.push((r, res)),
            }
        }
        if acks == Acks::Zero {
            for (_, res) in &outcomes {
                if let Err(e) = res {
                    log::error!("acks=0 send to {}-{} failed after completing: {e}", b.topic, b.partition);
                }
            }
            // The futures completed at send; the batch is done for flush.
            b.done.set(Vec::new());
            self.acc.complete(b);
            return;
        }
        let parts: Vec<Part> = outcomes
            .into_iter()
            .map(|(range, res)| {
                let o = res.map(|a| Outcome {
                    topic: b.topic.clone(),
                    partition: b.partition,
                    base_offset: Some(a.base_offset),
                    log_append_time: (a.log_append_time >= 0).then_some(a.log_append_time),
                });
                (range.start as u32, o)
            })
            .collect::<Vec<_>>();
        let mut parts = parts;
        parts.sort_by_key(|(start, _)| *start);
        let mut callbacks = std::mem::take(&mut b.callbacks).into_iter().peekable();
        if !self.interceptors.is_empty() || callbacks.peek().is_some() {
            for i in 0..n {
                let meta = resolve(&parts, i as u32, b.timestamp(i));
                self.acknowledge(meta.as_ref());
                while callbacks.peek().is_some_and(|(idx, _)| *idx as usize == i) {
                    let (_, cb) = callbacks.next().expect("peeked");
                    guarded("a send callback", || cb(meta.as_ref()));
                }
            }
        }
        b.done.set(parts);
        self.acc.complete(b);
    }
}

fn sender_loop<K, V>(inner: &Inner<K, V>) {
    let _ = inner.sender_thread.set(std::thread::current().id());
    let mut scratch = RecordScratch::default();
    loop {
        match inner.acc.next_work() {
            Work::Stop => return,
            Work::Batches(batches) => {
                for b in batches {
                    inner.send_batch(b, &mut scratch);
                }
            }
            Work::Abandon(batches) => {
                for mut b in batches {
                    let e = Error::Timeout("the producer closed before this record was sent".into());
                    let callbacks = std::mem::take(&mut b.callbacks);
                    if inner.config.acks != Acks::Zero {
                        for _ in 0..b.len() {
                            inner.acknowledge(Err(&e));
                        }
                        for (_, cb) in callbacks {
                            guarded("a send callback", || cb(Err(&e)));
                        }
                    }
                    b.done.set(vec![(0, Err(e))]);
                    inner.acc.complete(b);
                }
            }
        }
    }
}
