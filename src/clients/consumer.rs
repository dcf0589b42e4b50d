//! The consumer client (sections 3.3 and 4.2 of the Kafka primer): subscribe or assign, poll,
//! commit, seek, pause; consumer groups through the in-process [`super::group`] coordinator.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::TopicPartition;
use super::assignor::AssignmentStrategy;
use super::group::{Coordinator, Interest, Step};
use super::serde::{BytesDeserializer, Deserializer};
use super::{guarded, parse_bool, parse_num};
use crate::format::Headers;
use crate::{Error, Fetched, IsolationLevel, Log, OffsetCommit, Result};

/// Where a consumer starts in a partition its group has no committed offset for: Kafka's
/// `auto.offset.reset`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffsetResetPolicy {
    /// The log start offset.
    Earliest,
    /// The end: only records appended from now on. Kafka's default.
    #[default]
    Latest,
    /// No reset: `poll` fails with [`Error::InvalidArgument`] naming the partition.
    None,
}

impl std::str::FromStr for OffsetResetPolicy {
    type Err = Error;
    fn from_str(s: &str) -> Result<OffsetResetPolicy> {
        match s {
            "earliest" => Ok(OffsetResetPolicy::Earliest),
            "latest" => Ok(OffsetResetPolicy::Latest),
            "none" => Ok(OffsetResetPolicy::None),
            _ => Err(Error::InvalidArgument(format!("auto.offset.reset must be earliest, latest or none, not {s:?}"))),
        }
    }
}

/// A consumer's settings, under Kafka's names; [`ConsumerConfig::set`] takes them as strings.
///
/// | Kafka name | field | default |
/// |------------|-------|---------|
/// | `group.id` | `group_id` | none |
/// | `enable.auto.commit` | `enable_auto_commit` | `true` |
/// | `auto.commit.interval.ms` | `auto_commit_interval` | 5 s |
/// | `auto.offset.reset` | `auto_offset_reset` | `latest` |
/// | `max.poll.records` | `max_poll_records` | 500 |
/// | `isolation.level` | `isolation_level` | `read_uncommitted` |
/// | `session.timeout.ms` | `session_timeout` | 45 s |
/// | `max.poll.interval.ms` | `max_poll_interval` | 300 s |
/// | `partition.assignment.strategy` | `partition_assignment_strategy` | `range` |
/// | `max.partition.fetch.bytes` | `max_partition_fetch_bytes` | 1 MiB |
/// | `fetch.max.bytes` | `fetch_max_bytes` | 50 MiB |
/// | `client.id` | `client_id` | empty |
///
/// In one process a member's liveness is its polling: a consumer that is dropped leaves its group
/// at once, and one that stops polling is removed after `max.poll.interval.ms`. So
/// `session.timeout.ms` bounds nothing further here; it is accepted so that a Kafka config
/// carries over.
#[derive(Clone, Debug)]
pub struct ConsumerConfig {
    /// The consumer group; needed for `subscribe` and for commits.
    pub group_id: Option<String>,
    /// Commit the positions every `auto_commit_interval` in `poll`, before a rebalance revokes
    /// partitions, and on `close`.
    pub enable_auto_commit: bool,
    /// How often auto-commit commits.
    pub auto_commit_interval: Duration,
    /// Where to start without a committed offset (or when the position fell out of the log).
    pub auto_offset_reset: OffsetResetPolicy,
    /// The most records one `poll` returns.
    pub max_poll_records: usize,
    /// Whether records of open and aborted transactions are returned.
    pub isolation_level: IsolationLevel,
    /// Accepted for Kafka compatibility; see above.
    pub session_timeout: Duration,
    /// A member that does not call `poll` for this long is removed from its group.
    pub max_poll_interval: Duration,
    /// How the group shares partitions. All members of a group must use the same.
    pub partition_assignment_strategy: AssignmentStrategy,
    /// Bytes fetched from one partition per poll (at least one batch).
    pub max_partition_fetch_bytes: u64,
    /// Bytes fetched across partitions per poll.
    pub fetch_max_bytes: u64,
    /// A name for log messages.
    pub client_id: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            group_id: None,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            auto_offset_reset: OffsetResetPolicy::Latest,
            max_poll_records: 500,
            isolation_level: IsolationLevel::ReadUncommitted,
            session_timeout: Duration::from_secs(45),
            max_poll_interval: Duration::from_secs(300),
            partition_assignment_strategy: AssignmentStrategy::Range,
            max_partition_fetch_bytes: 1 << 20,
            fetch_max_bytes: 50 << 20,
            client_id: String::new(),
        }
    }
}

impl ConsumerConfig {
    /// Kafka's names this config takes.
    pub const KEYS: &'static [&'static str] = &[
        "group.id",
        "enable.auto.commit",
        "auto.commit.interval.ms",
        "auto.offset.reset",
        "max.poll.records",
        "isolation.level",
        "session.timeout.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "max.partition.fetch.bytes",
        "fetch.max.bytes",
        "client.id",
    ];

    /// A config for `group`, otherwise the defaults.
    pub fn group(group: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig { group_id: Some(group.into()), ..ConsumerConfig::default() }
    }

    /// Sets one setting by its Kafka name. Unknown names are refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        let ms = |v: &str| parse_num::<u64>(key, v).map(Duration::from_millis);
        match key {
            "group.id" => self.group_id = Some(value.to_string()),
            "enable.auto.commit" => self.enable_auto_commit = parse_bool(key, value)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = ms(value)?,
            "auto.offset.reset" => self.auto_offset_reset = value.parse()?,
            "max.poll.records" => self.max_poll_records = parse_num(key, value)?,
            "isolation.level" => self.isolation_level = value.parse()?,
            "session.timeout.ms" => self.session_timeout = ms(value)?,
            "max.poll.interval.ms" => self.max_poll_interval = ms(value)?,
            "partition.assignment.strategy" => self.partition_assignment_strategy = value.parse()?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse_num(key, value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse_num(key, value)?,
            "client.id" => self.client_id = value.to_string(),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "unknown consumer setting {key:?}; runnel's consumer takes {}",
                    Self::KEYS.join(", ")
                )));
            }
        }
        Ok(self)
    }

    /// A config from `(name, value)` pairs, over the defaults.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<ConsumerConfig> {
        let mut c = ConsumerConfig::default();
        for (k, v) in pairs {
            c.set(k, v)?;
        }
        Ok(c)
    }

    fn validate(&self) -> Result<()> {
        if self.max_poll_records == 0 || self.max_partition_fetch_bytes == 0 || self.fetch_max_bytes == 0 {
            return Err(Error::InvalidArgument("max.poll.records, max.partition.fetch.bytes and fetch.max.bytes must be positive".into()));
        }
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            return Err(Error::InvalidArgument("auto.commit.interval.ms must be positive".into()));
        }
        if self.group_id.as_deref() == Some("") {
            return Err(Error::InvalidArgument("group.id must not be empty".into()));
        }
        Ok(())
    }
}

/// What to subscribe to.
#[derive(Clone, Debug)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches this regular expression (internal `__` topics
    /// excepted), now and as topics are created.
    Pattern(String),
}

/// Hears of partitions moving in and out of a consumer in a rebalance: Kafka's
/// `ConsumerRebalanceListener`. Both calls run inside `poll`, in the consumer's thread, and get
/// the consumer so that they can commit, seek or look up positions (section 4.2.3's custom offset
/// store).
pub trait ConsumerRebalanceListener<K, V>: Send {
    /// Before a rebalance takes `partitions` away (all of them under an eager strategy, only those
    /// that move under the cooperative one), while this consumer may still commit them. With
    /// auto-commit on, their positions are committed just before this call.
    fn on_partitions_revoked(&mut self, consumer: &mut Consumer<K, V>, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
    /// After a rebalance gives `partitions` to this consumer (all it now owns under an eager
    /// strategy, the new ones under the cooperative one), before any is fetched: a seek here sets
    /// where fetching starts.
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer<K, V>, partitions: &[TopicPartition]) {
        let _ = (consumer, partitions);
    }
    /// When the group dropped this consumer (it did not poll in time), so `partitions` may already
    /// belong to another member and can no longer be committed. Calls `on_partitions_revoked` by
    /// default, as Kafka does.
    fn on_partitions_lost(&mut self, consumer: &mut Consumer<K, V>, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(consumer, partitions);
    }
}

/// Sees what a consumer returns and commits, in the order of the chain: Kafka's
/// `ConsumerInterceptor`. runnel's records are zero-copy views of the log, so `on_consume`
/// observes them rather than replacing them. A panic is logged and the chain goes on.
pub trait ConsumerInterceptor<K, V>: Send {
    /// Called with what `poll` is about to return.
    fn on_consume(&self, records: &ConsumerRecords<K, V>) {
        let _ = records;
    }
    /// Called after offsets are committed: each partition with its committed offset.
    fn on_commit(&self, offsets: &[(TopicPartition, u64)]) {
        let _ = offsets;
    }
    /// Called when the consumer closes.
    fn close(&self) {}
}

struct Deser<K, V> {
    key: Box<dyn Deserializer<K>>,
    value: Box<dyn Deserializer<V>>,
}

/// One record a poll returned: a view into the log's memory map, deserialized on demand.
pub struct ConsumerRecord<'a, K, V> {
    topic: &'a str,
    partition: u32,
    view: crate::RecordView<'a>,
    deser: &'a Deser<K, V>,
}

impl<K, V> std::fmt::Debug for ConsumerRecord<'_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRecord")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.view.offset)
            .finish()
    }
}

impl<'a, K, V> ConsumerRecord<'a, K, V> {
    /// The topic.
    pub fn topic(&self) -> &'a str {
        self.topic
    }
    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }
    /// The offset.
    pub fn offset(&self) -> u64 {
        self.view.offset
    }
    /// Milliseconds since the Unix epoch (CreateTime or LogAppendTime, per the topic).
    pub fn timestamp(&self) -> i64 {
        self.view.timestamp
    }
    /// The key's bytes, without a copy.
    pub fn key_bytes(&self) -> Option<&'a [u8]> {
        self.view.key
    }
    /// The value's bytes, without a copy.
    pub fn value_bytes(&self) -> Option<&'a [u8]> {
        self.view.value
    }
    /// The headers.
    pub fn headers(&self) -> Headers<'a> {
        self.view.headers
    }
    /// The key, through the key deserializer (`None` for a null key).
    pub fn key(&self) -> Result<Option<K>> {
        self.view.key.map(|k| self.deser.key.deserialize(self.topic, k)).transpose()
    }
    /// The value, through the value deserializer (`None` for a null value).
    pub fn value(&self) -> Result<Option<V>> {
        self.view.value.map(|v| self.deser.value.deserialize(self.topic, v)).transpose()
    }
    /// The record as the engine's view.
    pub fn view(&self) -> &crate::RecordView<'a> {
        &self.view
    }
}

struct Chunk {
    topic: Arc<str>,
    partition: u32,
    fetched: Fetched,
    end: u64,
    count: u64,
}

/// What one `poll` returned: Kafka's `ConsumerRecords`. It holds the fetched memory maps, not the
/// consumer, so the consumer can commit or seek while it is alive. Iterating decodes the records
/// in place; an error means a record failed to decode (a corrupt log).
pub struct ConsumerRecords<K, V> {
    chunks: Vec<Chunk>,
    count: u64,
    deser: Arc<Deser<K, V>>,
}

impl<K, V> std::fmt::Debug for ConsumerRecords<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerRecords").field("count", &self.count).finish()
    }
}

impl<K, V> ConsumerRecords<K, V> {
    /// Number of records.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The partitions with records, in the order they are iterated.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        self.chunks.iter().filter(|c| c.count > 0).map(|c| TopicPartition::new(&*c.topic, c.partition)).collect()
    }

    /// Every record, partition by partition, in offset order within each.
    pub fn iter(&self) -> impl Iterator<Item = Result<ConsumerRecord<'_, K, V>>> + '_ {
        self.chunks.iter().flat_map(move |c| self.chunk_records(c))
    }

    /// The records of one partition.
    pub fn records(&self, tp: &TopicPartition) -> impl Iterator<Item = Result<ConsumerRecord<'_, K, V>>> + '_ {
        let tp = tp.clone();
        self.chunks.iter().filter(move |c| *c.topic == *tp.topic && c.partition == tp.partition).flat_map(move |c| self.chunk_records(c))
    }

    fn chunk_records<'a>(&'a self, c: &'a Chunk) -> impl Iterator<Item = Result<ConsumerRecord<'a, K, V>>> + 'a {
        let deser = &*self.deser;
        c.fetched
            .records()
            .take_while(move |r| r.as_ref().map_or(true, |r| r.offset < c.end))
            .map(move |r| r.map(|view| ConsumerRecord { topic: &c.topic, partition: c.partition, view, deser }))
    }
}

#[derive(Debug, Default)]
struct PartState {
    /// The next offset to return; `None` until looked up (committed offset or reset policy).
    position: Option<u64>,
    paused: bool,
    /// The offset last committed by this consumer, to skip commits that change nothing.
    committed: Option<u64>,
    /// The last fetch, whose records past the position the next polls hand out before fetching
    /// again (a poll returns at most `max.poll.records`; a fetch holds up to
    /// `max.partition.fetch.bytes`).
    buffered: Option<Fetched>,
}

impl Clone for PartState {
    /// A copy without the buffered fetch (it is cheap to make again).
    fn clone(&self) -> PartState {
        PartState { position: self.position, paused: self.paused, committed: self.committed, buffered: None }
    }
}

enum Mode {
    None,
    /// Subscribed, with what the group coordinator is told (kept to rejoin after a removal).
    Subscribed {
        subscription: Subscription,
        interest: Interest,
    },
    Assigned,
}

struct Membership {
    coordinator: Arc<Coordinator>,
    group: String,
    id: u64,
    generation: u32,
}

/// A finished async commit: its offsets, its error, its callback.
type CommitDone = (Vec<(TopicPartition, u64)>, Option<Error>, Option<CommitCallback>);

/// What `commit_async` calls back: the offsets, and the error if the commit failed.
pub type CommitCallback = Box<dyn FnOnce(&[(TopicPartition, u64)], Option<&Error>) + Send>;

struct AsyncCommit {
    group: String,
    offsets: Vec<(TopicPartition, u64)>,
    check: Option<(Arc<Coordinator>, u64, u32)>,
    callback: Option<CommitCallback>,
}

/// The thread behind `commit_async`: commits in order; results go back to the consumer, whose
/// next `poll` (or `commit_sync`, or `close`) runs the callbacks.
struct Committer {
    tx: Option<mpsc::Sender<AsyncCommit>>,
    done: mpsc::Receiver<CommitDone>,
    in_flight: usize,
    thread: Option<JoinHandle<()>>,
}

/// The consumer: Kafka's `KafkaConsumer`. Not `Sync` (one thread polls it, as in Kafka); `Send`.
///
/// ```
/// use runnel::clients::{Consumer, ConsumerConfig, OffsetResetPolicy, Subscription};
/// # fn main() -> runnel::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let log = runnel::Log::open(dir.path(), runnel::LogOptions::default())?;
/// # log.create_topic("first", 1, runnel::TopicConfig::default())?;
/// # log.append("first", Some(0), &[runnel::Record::new(b"hello")], runnel::Acks::All)?;
/// let mut config = ConsumerConfig::group("test");
/// config.auto_offset_reset = OffsetResetPolicy::Earliest;
/// let mut consumer = Consumer::new(&log, config)?;
/// consumer.subscribe(Subscription::Topics(vec!["first".into()]))?;
/// let records = consumer.poll(std::time::Duration::from_secs(1))?;
/// for record in records.iter() {
///     let record = record?;
///     println!("offset = {}, value = {:?}", record.offset(), record.value_bytes());
/// }
/// consumer.commit_sync()?;
/// # Ok(()) }
/// ```
pub struct Consumer<K = Vec<u8>, V = Vec<u8>> {
    log: Log,
    config: ConsumerConfig,
    deser: Arc<Deser<K, V>>,
    interceptors: Vec<Box<dyn ConsumerInterceptor<K, V>>>,
    listener: Option<Box<dyn ConsumerRebalanceListener<K, V>>>,
    mode: Mode,
    owned: BTreeMap<TopicPartition, PartState>,
    member: Option<Membership>,
    metadata: BTreeMap<String, u32>,
    metadata_at: Option<Instant>,
    next_auto_commit: Instant,
    committer: Option<Committer>,
    /// Where the next poll starts among the owned partitions, so that none starves.
    rotate: usize,
    /// Partitions being revoked while the listener runs (see `adopt`).
    revoking: Vec<TopicPartition>,
    closed: bool,
}

impl<K, V> std::fmt::Debug for Consumer<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("group_id", &self.config.group_id)
            .field("assignment", &self.owned.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `now + d`, or a time far enough away to mean "never" when `d` is that long.
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// How often a subscribed consumer looks for new topics and partitions (Kafka refreshes its
/// metadata every `metadata.max.age.ms`; in one process looking is cheap).
const METADATA_REFRESH: Duration = Duration::from_millis(100);

/// Builds a [`Consumer`] with deserializers and interceptors.
pub struct ConsumerBuilder<K, V> {
    log: Log,
    config: ConsumerConfig,
    deser: Deser<K, V>,
    interceptors: Vec<Box<dyn ConsumerInterceptor<K, V>>>,
}

impl<K: 'static, V: 'static> ConsumerBuilder<K, V> {
    /// Adds an interceptor at the end of the chain.
    pub fn interceptor(mut self, i: impl ConsumerInterceptor<K, V> + 'static) -> Self {
        self.interceptors.push(Box::new(i));
        self
    }

    /// The consumer.
    pub fn build(self) -> Result<Consumer<K, V>> {
        self.config.validate()?;
        Ok(Consumer {
            log: self.log,
            next_auto_commit: later(self.config.auto_commit_interval),
            config: self.config,
            deser: Arc::new(self.deser),
            interceptors: self.interceptors,
            listener: None,
            mode: Mode::None,
            owned: BTreeMap::new(),
            member: None,
            metadata: BTreeMap::new(),
            metadata_at: None,
            committer: None,
            rotate: 0,
            revoking: Vec::new(),
            closed: false,
        })
    }
}

impl Consumer<Vec<u8>, Vec<u8>> {
    /// A consumer of byte keys and values.
    pub fn new(log: &Log, config: ConsumerConfig) -> Result<Consumer<Vec<u8>, Vec<u8>>> {
        Consumer::builder(log, config, BytesDeserializer, BytesDeserializer).build()
    }
}

impl<K: 'static, V: 'static> Consumer<K, V> {
    /// A builder for a consumer reading `log` with these deserializers.
    pub fn builder(
        log: &Log,
        config: ConsumerConfig,
        key_deserializer: impl Deserializer<K> + 'static,
        value_deserializer: impl Deserializer<V> + 'static,
    ) -> ConsumerBuilder<K, V> {
        ConsumerBuilder {
            log: log.view(),
            config,
            deser: Deser { key: Box::new(key_deserializer), value: Box::new(value_deserializer) },
            interceptors: Vec::new(),
        }
    }
}

impl<K, V> Consumer<K, V> {
    /// The settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    fn check_open(&self) -> Result<()> {
        if self.closed { Err(Error::Closed) } else { Ok(()) }
    }

    fn group_id(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| Error::InvalidArgument("this consumer has no group.id".into()))
    }

    fn refresh_metadata(&mut self, force: bool) -> bool {
        if !force && self.metadata_at.is_some_and(|t| t.elapsed() < METADATA_REFRESH) {
            return false;
        }
        let mut md = BTreeMap::new();
        for t in self.log.list_topics() {
            if let Ok(n) = self.log.partition_count(&t) {
                md.insert(t, n);
            }
        }
        self.metadata = md;
        self.metadata_at = Some(Instant::now());
        true
    }

    /// Subscribes to topics or a pattern: the group shares their partitions among its members,
    /// and rebalances as members come and go. Replaces an earlier subscription; refused while
    /// partitions are assigned by hand.
    pub fn subscribe(&mut self, subscription: Subscription) -> Result<()> {
        self.subscribe_inner(subscription, None)
    }

    /// Subscribes, with a listener called as partitions are revoked and assigned.
    pub fn subscribe_with_listener(
        &mut self,
        subscription: Subscription,
        listener: impl ConsumerRebalanceListener<K, V> + 'static,
    ) -> Result<()> {
        self.subscribe_inner(subscription, Some(Box::new(listener)))
    }

    fn subscribe_inner(&mut self, subscription: Subscription, listener: Option<Box<dyn ConsumerRebalanceListener<K, V>>>) -> Result<()> {
        self.check_open()?;
        if matches!(self.mode, Mode::Assigned) {
            return Err(Error::InvalidArgument("this consumer has partitions assigned by hand; unsubscribe first".into()));
        }
        let group = self.group_id()?.to_string();
        let interest = match &subscription {
            Subscription::Topics(t) => {
                for name in t {
                    crate::validate_topic_name(name)?;
                }
                Interest::Topics(t.iter().cloned().collect())
            }
            Subscription::Pattern(p) => Interest::Pattern(
                regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| Error::InvalidArgument(format!("bad topic pattern {p:?}: {e}")))?,
            ),
        };
        self.listener = listener;
        match &self.member {
            Some(m) => m.coordinator.resubscribe(&m.group, m.id, interest.clone())?,
            None => {
                let coordinator = self.log.group_coordinator()?;
                let id =
                    coordinator.join(&group, interest.clone(), self.config.partition_assignment_strategy, self.config.max_poll_interval)?;
                self.member = Some(Membership { coordinator, group, id, generation: 0 });
            }
        }
        self.mode = Mode::Subscribed { subscription, interest };
        Ok(())
    }

    /// The subscription, if any.
    pub fn subscription(&self) -> Option<&Subscription> {
        match &self.mode {
            Mode::Subscribed { subscription, .. } => Some(subscription),
            _ => None,
        }
    }

    /// Assigns partitions by hand (no group membership, no rebalancing): Kafka's `assign`.
    /// Positions start at the group's committed offsets (with a `group.id`) or by
    /// `auto.offset.reset`. Replaces an earlier assignment; refused while subscribed.
    pub fn assign(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.check_open()?;
        if matches!(self.mode, Mode::Subscribed { .. }) {
            return Err(Error::InvalidArgument("this consumer is subscribed; unsubscribe before assigning partitions".into()));
        }
        for tp in partitions {
            let n = self.log.partition_count(&tp.topic)?;
            if tp.partition >= n {
                return Err(Error::unknown(&tp.topic, Some(tp.partition)));
            }
        }
        let old = std::mem::take(&mut self.owned);
        self.owned = partitions.iter().map(|tp| (tp.clone(), old.get(tp).cloned().unwrap_or_default())).collect();
        self.mode = if partitions.is_empty() { Mode::None } else { Mode::Assigned };
        Ok(())
    }

    /// Drops the subscription (leaving the group, after committing with auto-commit on) or the
    /// manual assignment.
    pub fn unsubscribe(&mut self) -> Result<()> {
        self.check_open()?;
        let result = self.leave_group();
        self.owned.clear();
        self.mode = Mode::None;
        result
    }

    fn leave_group(&mut self) -> Result<()> {
        let mut result = Ok(());
        if self.member.is_some() {
            let owned: Vec<TopicPartition> = self.owned.keys().cloned().collect();
            if self.config.enable_auto_commit {
                result = self.commit_positions();
            }
            if !owned.is_empty() {
                self.call_listener(|l, c| l.on_partitions_revoked(c, &owned));
            }
        }
        if let Some(m) = self.member.take() {
            self.refresh_metadata(true);
            m.coordinator.leave(&m.group, m.id, &self.metadata);
        }
        result
    }

    /// The partitions this consumer owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.owned.keys().cloned().collect()
    }

    /// The group generation this consumer's assignment belongs to (0 before its first).
    pub fn generation(&self) -> Option<u32> {
        self.member.as_ref().map(|m| m.generation)
    }

    fn call_listener(&mut self, f: impl FnOnce(&mut dyn ConsumerRebalanceListener<K, V>, &mut Consumer<K, V>)) {
        if let Some(mut l) = self.listener.take() {
            guarded("a rebalance listener", || f(&mut *l, self));
            self.listener = Some(l);
        }
    }

    /// Runs the group protocol until this consumer holds an assignment for the group's current
    /// generation, or `deadline` passes.
    fn sync_group(&mut self, deadline: Instant) -> Result<()> {
        loop {
            if self.member.is_none() {
                return Ok(());
            }
            let refreshed = self.refresh_metadata(false);
            let Some(m) = &self.member else { return Ok(()) };
            let (coordinator, group, id, generation) = (m.coordinator.clone(), m.group.clone(), m.id, m.generation);
            // Before the heartbeat: a change after it wakes the wait below.
            let token = coordinator.change_token();
            let step = coordinator.heartbeat(&group, id, generation, refreshed.then_some(&self.metadata));
            match step {
                Step::Stable => return Ok(()),
                Step::Assign { generation, partitions } => self.adopt(generation, partitions),
                Step::Rejoin => {
                    self.drain_async_commits(true);
                    let cooperative = self.config.partition_assignment_strategy.is_cooperative();
                    if !cooperative && !self.owned.is_empty() {
                        // Eager: give everything back before rejoining.
                        if self.config.enable_auto_commit
                            && let Err(e) = self.commit_positions()
                        {
                            log::warn!("auto-commit before a rebalance failed: {e}");
                        }
                        let revoked: Vec<TopicPartition> = self.owned.keys().cloned().collect();
                        self.call_listener(|l, c| l.on_partitions_revoked(c, &revoked));
                        self.owned.clear();
                    }
                    self.refresh_metadata(true);
                    let owned = self.owned.keys().cloned().collect();
                    coordinator.rejoin(&group, id, owned, &self.metadata);
                }
                Step::Waiting => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(());
                    }
                    coordinator.wait(token, (deadline - now).min(Duration::from_millis(10)));
                }
                Step::Removed => {
                    // Dropped by the group: what it owned may be someone else's now.
                    let lost: Vec<TopicPartition> = self.owned.keys().cloned().collect();
                    if !lost.is_empty() {
                        self.call_listener(|l, c| l.on_partitions_lost(c, &lost));
                    }
                    self.owned.clear();
                    let Mode::Subscribed { interest, .. } = &self.mode else { return Ok(()) };
                    let interest = interest.clone();
                    let new_id =
                        coordinator.join(&group, interest, self.config.partition_assignment_strategy, self.config.max_poll_interval)?;
                    self.member = Some(Membership { coordinator, group, id: new_id, generation: 0 });
                }
            }
        }
    }

    /// Takes the assignment of a new generation: revokes what left (cooperative), assigns what
    /// is new.
    fn adopt(&mut self, generation: u32, partitions: Vec<TopicPartition>) {
        if let Some(m) = &mut self.member {
            m.generation = generation;
        }
        let revoked: Vec<TopicPartition> = self.owned.keys().filter(|tp| !partitions.contains(tp)).cloned().collect();
        if !revoked.is_empty() {
            self.drain_async_commits(true);
            if self.config.enable_auto_commit {
                let offsets = self.positions_of(&revoked);
                // The group moved on a generation, so the check would refuse these: they were
                // ours in the generation that just ended, and nobody has them yet (the
                // cooperative protocol withholds a moving partition for a generation).
                if let Err(e) = self.commit_unchecked(&offsets) {
                    log::warn!("auto-commit of revoked partitions failed: {e}");
                }
            }
            // The listener may commit what it processed of them: they were this member's in the
            // generation that just ended and nobody has them yet (the cooperative protocol
            // withholds a moving partition for a generation), so such commits skip the check.
            self.revoking = revoked.clone();
            self.call_listener(|l, c| l.on_partitions_revoked(c, &revoked));
            self.revoking.clear();
            for tp in &revoked {
                self.owned.remove(tp);
            }
        }
        let added: Vec<TopicPartition> = partitions.iter().filter(|tp| !self.owned.contains_key(*tp)).cloned().collect();
        for tp in &added {
            self.owned.insert(tp.clone(), PartState::default());
        }
        if !added.is_empty() {
            self.call_listener(|l, c| l.on_partitions_assigned(c, &added));
        }
    }

    /// Fetches records: Kafka's `poll(timeout)`. Returns as soon as any assigned partition has
    /// records (up to `max.poll.records`), otherwise waits up to `timeout` without spinning and
    /// returns an empty set. Takes part in the group's rebalances, auto-commits when due, and runs
    /// the callbacks of finished `commit_async` calls.
    pub fn poll(&mut self, timeout: Duration) -> Result<ConsumerRecords<K, V>> {
        self.check_open()?;
        let deadline = later(timeout);
        self.drain_async_commits(false);
        if matches!(self.mode, Mode::None) {
            return Err(Error::InvalidArgument("this consumer is neither subscribed nor assigned any partition".into()));
        }
        loop {
            self.sync_group(deadline)?;
            if self.config.enable_auto_commit && self.config.group_id.is_some() && Instant::now() >= self.next_auto_commit {
                self.next_auto_commit = later(self.config.auto_commit_interval);
                // After the async commits in flight, so that a commit never goes back.
                self.drain_async_commits(true);
                if let Err(e) = self.commit_positions() {
                    log::warn!("auto-commit failed: {e}");
                }
            }
            let records = self.fetch_once()?;
            if !records.is_empty() {
                for i in &self.interceptors {
                    guarded("a consumer interceptor's on_consume", || i.on_consume(&records));
                }
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(records);
            }
            // Sleep until a partition has more, the group needs this member, or the deadline;
            // looking at the group at least every 10 ms.
            let wanted: Vec<(TopicPartition, u64)> =
                self.owned.iter().filter(|(_, s)| !s.paused).filter_map(|(tp, s)| s.position.map(|p| (tp.clone(), p))).collect();
            let refs: Vec<(&str, u32, u64)> = wanted.iter().map(|(tp, p)| (tp.topic.as_str(), tp.partition, *p)).collect();
            let member = self.member.as_ref().map(|m| (m.coordinator.clone(), m.group.clone(), m.id, m.generation));
            let wait = (deadline - now).min(if member.is_some() { Duration::from_millis(10) } else { Duration::from_millis(100) });
            let mut group_check = Instant::now();
            self.log.wait_any(&refs, self.config.isolation_level, wait, || match &member {
                Some((c, g, id, generation)) if group_check.elapsed() >= Duration::from_millis(1) => {
                    group_check = Instant::now();
                    c.needs_attention(g, *id, *generation)
                }
                _ => false,
            })?;
        }
    }

    /// One pass over the owned, unpaused partitions.
    fn fetch_once(&mut self) -> Result<ConsumerRecords<K, V>> {
        let mut chunks = Vec::new();
        let mut budget = self.config.max_poll_records as u64;
        let mut bytes = 0u64;
        let n = self.owned.len();
        let keys: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        let start = if n == 0 { 0 } else { self.rotate % n };
        self.rotate = self.rotate.wrapping_add(1);
        let mut total = 0;
        for i in 0..n {
            if budget == 0 || bytes >= self.config.fetch_max_bytes {
                break;
            }
            let tp = &keys[(start + i) % n];
            let state = &self.owned[tp];
            if state.paused {
                continue;
            }
            let (position, buffered) = match state.position {
                Some(p) => (p, state.buffered.as_ref().and_then(|f| f.rest_from(p))),
                None => {
                    let p = self.initial_position(tp)?;
                    self.set_position(tp, p);
                    (p, None)
                }
            };
            let max = self.config.max_partition_fetch_bytes.min(self.config.fetch_max_bytes - bytes);
            let fetched = match buffered {
                Some(f) => f,
                None => match self.log.fetch_with(&tp.topic, tp.partition, position, max, self.config.isolation_level) {
                    Ok(f) => f,
                    Err(Error::OffsetOutOfRange { log_start, high_watermark, .. }) => {
                        let p = match self.config.auto_offset_reset {
                            OffsetResetPolicy::Earliest => log_start,
                            OffsetResetPolicy::Latest => self.end_offset(tp).unwrap_or(high_watermark),
                            OffsetResetPolicy::None => {
                                return Err(Error::OffsetOutOfRange { requested: position, log_start, high_watermark });
                            }
                        };
                        log::info!("{tp}: position {position} is out of range; resetting to {p}");
                        self.set_position(tp, p);
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            if fetched.next_offset() <= position {
                continue;
            }
            let end = fetched.next_offset().min(position + budget);
            let count = fetched.records().count_below(end)?;
            bytes += fetched.bytes().len() as u64;
            self.set_position(tp, end);
            if let Some(s) = self.owned.get_mut(tp) {
                s.buffered = (end < fetched.next_offset()).then(|| fetched.rest_from(end)).flatten();
            }
            budget = budget.saturating_sub(count.max(1));
            total += count;
            if count > 0 {
                chunks.push(Chunk { topic: Arc::from(tp.topic.as_str()), partition: tp.partition, fetched, end, count });
            }
        }
        Ok(ConsumerRecords { chunks, count: total, deser: self.deser.clone() })
    }

    fn set_position(&mut self, tp: &TopicPartition, p: u64) {
        if let Some(s) = self.owned.get_mut(tp) {
            s.position = Some(p);
        }
    }

    /// Where fetching starts in a partition without a position: the committed offset, else the
    /// reset policy.
    fn initial_position(&mut self, tp: &TopicPartition) -> Result<u64> {
        if let Some(group) = &self.config.group_id
            && let Some(c) = self.log.committed(group, &tp.topic, tp.partition)?
        {
            if let Some(s) = self.owned.get_mut(tp) {
                s.committed = Some(c.offset);
            }
            return Ok(c.offset);
        }
        self.reset_position(tp)
    }

    fn reset_position(&self, tp: &TopicPartition) -> Result<u64> {
        match self.config.auto_offset_reset {
            OffsetResetPolicy::Earliest => self.log.log_start_offset(&tp.topic, tp.partition),
            OffsetResetPolicy::Latest => self.end_offset(tp),
            OffsetResetPolicy::None => Err(Error::InvalidArgument(format!(
                "{tp} has no committed offset for group {:?} and auto.offset.reset is none",
                self.config.group_id.as_deref().unwrap_or("")
            ))),
        }
    }

    /// The end of what this consumer may read: the high watermark, or the last stable offset
    /// under read_committed.
    fn end_offset(&self, tp: &TopicPartition) -> Result<u64> {
        match self.config.isolation_level {
            IsolationLevel::ReadUncommitted => self.log.high_watermark(&tp.topic, tp.partition),
            IsolationLevel::ReadCommitted => self.log.last_stable_offset(&tp.topic, tp.partition),
        }
    }

    fn owned_state(&mut self, tp: &TopicPartition) -> Result<&mut PartState> {
        self.owned.get_mut(tp).ok_or_else(|| Error::InvalidArgument(format!("{tp} is not assigned to this consumer")))
    }

    /// The offset of the next record `poll` will return from `tp` (looked up now if it has not
    /// been yet).
    pub fn position(&mut self, tp: &TopicPartition) -> Result<u64> {
        if let Some(p) = self.owned_state(tp)?.position {
            return Ok(p);
        }
        let p = self.initial_position(tp)?;
        self.set_position(tp, p);
        Ok(p)
    }

    /// Makes the next `poll` read `tp` from `offset`: Kafka's `seek`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<()> {
        self.owned_state(tp)?.position = Some(offset);
        Ok(())
    }

    /// Seeks to the log start offset of each partition.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            let p = self.log.log_start_offset(&tp.topic, tp.partition)?;
            self.owned_state(tp)?.position = Some(p);
        }
        Ok(())
    }

    /// Seeks to the end of each partition (the high watermark, or the last stable offset under
    /// read_committed).
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            let p = self.end_offset(tp)?;
            self.owned_state(tp)?.position = Some(p);
        }
        Ok(())
    }

    /// Stops fetching from these partitions until [`Consumer::resume`]; they stay assigned.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.owned_state(tp)?.paused = true;
        }
        Ok(())
    }

    /// Fetches from these partitions again.
    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            self.owned_state(tp)?.paused = false;
        }
        Ok(())
    }

    /// The paused partitions.
    pub fn paused(&self) -> Vec<TopicPartition> {
        self.owned.iter().filter(|(_, s)| s.paused).map(|(tp, _)| tp.clone()).collect()
    }

    /// The group's committed offset for `tp`, if any.
    pub fn committed(&self, tp: &TopicPartition) -> Result<Option<u64>> {
        let group = self.group_id()?;
        Ok(self.log.committed(group, &tp.topic, tp.partition)?.map(|c| c.offset))
    }

    fn positions_of(&self, partitions: &[TopicPartition]) -> Vec<(TopicPartition, u64)> {
        partitions
            .iter()
            .filter_map(|tp| {
                let s = self.owned.get(tp)?;
                let p = s.position?;
                (s.committed != Some(p)).then(|| (tp.clone(), p))
            })
            .collect()
    }

    /// Commits the positions of every owned partition (those that moved since the last commit).
    fn commit_positions(&mut self) -> Result<()> {
        let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        let offsets = self.positions_of(&all);
        self.commit_checked(&offsets)
    }

    /// Commits the positions of everything this consumer owns (what the last `poll` returned is
    /// then consumed): Kafka's `commitSync()`. Durable when it returns. Fails with
    /// [`Error::CommitFailed`] if the group has rebalanced the partitions away since.
    pub fn commit_sync(&mut self) -> Result<()> {
        self.check_open()?;
        self.drain_async_commits(true);
        self.commit_positions()
    }

    /// Commits these offsets (each the next offset to consume): Kafka's
    /// `commitSync(offsets)`.
    pub fn commit_offsets_sync(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        self.check_open()?;
        self.drain_async_commits(true);
        self.commit_checked(offsets)
    }

    /// Commits the positions of everything this consumer owns in the background: Kafka's
    /// `commitAsync(callback)`. Commits apply in the order they were made; `callback` runs in a
    /// later `poll`, `commit_sync` or `close` of this consumer, with the offsets and the error if
    /// it failed. It is not retried (a later commit supersedes it).
    pub fn commit_async(&mut self, callback: Option<CommitCallback>) -> Result<()> {
        let all: Vec<TopicPartition> = self.owned.keys().cloned().collect();
        let offsets = self.positions_of(&all);
        self.commit_offsets_async(offsets, callback)
    }

    /// Commits these offsets in the background: Kafka's `commitAsync(offsets, callback)`.
    pub fn commit_offsets_async(&mut self, offsets: Vec<(TopicPartition, u64)>, callback: Option<CommitCallback>) -> Result<()> {
        self.check_open()?;
        let group = self.group_id()?.to_string();
        let check = self.member.as_ref().map(|m| (m.coordinator.clone(), m.id, m.generation));
        let committer = match &mut self.committer {
            Some(c) => c,
            None => self.committer.insert(spawn_committer(self.log.view())?),
        };
        committer.in_flight += 1;
        let request = AsyncCommit { group, offsets, check, callback };
        if let Some(tx) = &committer.tx
            && let Err(mpsc::SendError(r)) = tx.send(request)
        {
            committer.in_flight -= 1;
            if let Some(cb) = r.callback {
                guarded("a commit callback", || cb(&r.offsets, Some(&Error::Closed)));
            }
        }
        Ok(())
    }

    /// Runs the callbacks of finished async commits; with `wait`, first waits for every one in
    /// flight.
    fn drain_async_commits(&mut self, wait: bool) {
        let Some(c) = &mut self.committer else { return };
        let mut finished = Vec::new();
        while c.in_flight > 0 {
            let next = if wait { c.done.recv().ok() } else { c.done.try_recv().ok() };
            let Some(done) = next else { break };
            c.in_flight -= 1;
            finished.push(done);
        }
        for (offsets, err, cb) in finished {
            if err.is_none() {
                for (tp, p) in &offsets {
                    if let Some(s) = self.owned.get_mut(tp) {
                        s.committed = Some(s.committed.map_or(*p, |c| c.max(*p)));
                    }
                }
                for i in &self.interceptors {
                    guarded("a consumer interceptor's on_commit", || i.on_commit(&offsets));
                }
            }
            if let Some(cb) = cb {
                guarded("a commit callback", || cb(&offsets, err.as_ref()));
            }
        }
    }

    /// Commits after checking that the group still gives these partitions to this consumer.
    fn commit_checked(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group_id()?.to_string();
        let commits: Vec<OffsetCommit<'_>> =
            offsets.iter().map(|(tp, p)| OffsetCommit { topic: &tp.topic, partition: tp.partition, offset: *p, metadata: "" }).collect();
        let commit = || self.log.commit_offsets(&group, &commits);
        match &self.member {
            Some(m) => {
                let tps: Vec<&TopicPartition> = offsets.iter().map(|(tp, _)| tp).filter(|tp| !self.revoking.contains(tp)).collect();
                if tps.is_empty() { commit()? } else { m.coordinator.check_commit(&m.group, m.id, m.generation, &tps, commit)? }
            }
            None => commit()?,
        }
        self.note_committed(offsets);
        Ok(())
    }

    fn commit_unchecked(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group = self.group_id()?.to_string();
        let commits: Vec<OffsetCommit<'_>> =
            offsets.iter().map(|(tp, p)| OffsetCommit { topic: &tp.topic, partition: tp.partition, offset: *p, metadata: "" }).collect();
        self.log.commit_offsets(&group, &commits)?;
        self.note_committed(offsets);
        Ok(())
    }

    /// Records a successful commit in the consumer's state and tells the interceptors.
    fn note_committed(&mut self, offsets: &[(TopicPartition, u64)]) {
        for (tp, p) in offsets {
            if let Some(s) = self.owned.get_mut(tp) {
                s.committed = Some(*p);
            }
        }
        for i in &self.interceptors {
            guarded("a consumer interceptor's on_commit", || i.on_commit(offsets));
        }
    }

    /// Leaves the group (committing first with auto-commit on; the revoke listener runs), waits
    /// for async commits, and runs the interceptors' `close`. Later calls fail with
    /// [`Error::Closed`].
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.drain_async_commits(true);
        let result = self.leave_group();
        self.owned.clear();
        self.closed = true;
        self.drain_async_commits(true);
        if let Some(mut c) = self.committer.take() {
            c.tx.take();
            if let Some(t) = c.thread.take() {
                let _ = t.join();
            }
        }
        for i in &self.interceptors {
            guarded("a consumer interceptor's close", || i.close());
        }
        result
    }
}

impl<K, V> Drop for Consumer<K, V> {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::warn!("closing a consumer: {e}");
        }
    }
}

fn spawn_committer(log: Log) -> Result<Committer> {
    let (tx, rx) = mpsc::channel::<AsyncCommit>();
    let (done_tx, done) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("runnel-committer".into())
        .spawn(move || {
            for r in rx {
                let commits: Vec<OffsetCommit<'_>> = r
                    .offsets
                    .iter()
                    .map(|(tp, p)| OffsetCommit { topic: &tp.topic, partition: tp.partition, offset: *p, metadata: "" })
                    .collect();
                let commit = || log.commit_offsets(&r.group, &commits);
                let result = match &r.check {
                    Some((c, id, generation)) => {
                        let tps: Vec<&TopicPartition> = r.offsets.iter().map(|(tp, _)| tp).collect();
                        c.check_commit(&r.group, *id, *generation, &tps, commit)
                    }
                    None => commit(),
                };
                drop(commits);
                if done_tx.send((r.offsets, result.err(), r.callback)).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| Error::io("spawn the consumer's commit thread", "", e))?;
    Ok(Committer { tx: Some(tx), done, in_flight: 0, thread: Some(thread) })
}
