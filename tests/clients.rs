//! Chapter 4 of the Kafka primer, example by example, with the producer and consumer clients:
//! async send with and without a callback, sync send, the auto-commit consumer resuming after a
//! restart, commitSync, commitAsync, the custom offset store through a rebalance listener, and the
//! two-interceptor chain. Each test checks the outcome the chapter describes.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestResult, open, read_all, values};
use runnel::clients::{
    Consumer, ConsumerConfig, ConsumerInterceptor, ConsumerRebalanceListener, ConsumerRecords, OffsetResetPolicy, Producer, ProducerConfig,
    ProducerInterceptor, ProducerRecord, RecordMetadata, StringDeserializer, StringSerializer, Subscription, TopicPartition,
};
use runnel::{Error, Log, TopicConfig};

/// The chapter's producer properties: acks=all, batch.size 16384, linger.ms 1, buffer.memory 32 MiB.
fn chapter_producer_config() -> ProducerConfig {
    ProducerConfig::from_pairs([("acks", "all"), ("batch.size", "16384"), ("linger.ms", "1"), ("buffer.memory", "33554432")])
        .expect("the chapter's config")
}

fn string_producer(log: &Log, config: ProducerConfig) -> runnel::Result<Producer<String, String>> {
    Producer::builder(log, config, StringSerializer, StringSerializer).build()
}

fn string_consumer(log: &Log, config: ConsumerConfig) -> runnel::Result<Consumer<String, String>> {
    Consumer::builder(log, config, StringDeserializer, StringDeserializer).build()
}

fn first() -> Subscription {
    Subscription::Topics(vec!["first".into()])
}

/// Every value of every partition of `topic`.
fn all_values(log: &Log, topic: &str) -> Vec<String> {
    let mut v = Vec::new();
    for p in 0..log.partition_count(topic).expect("topic") {
        v.extend(values(&read_all(log, topic, p).expect("read")));
    }
    v.sort_by_key(|s| s.parse::<u64>().unwrap_or(u64::MAX));
    v
}

fn numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Polls until `n` records have arrived (or 10 s pass), returning (offset, key, value).
fn poll_n(consumer: &mut Consumer<String, String>, n: usize) -> runnel::Result<Vec<(TopicPartition, u64, String)>> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while got.len() < n && std::time::Instant::now() < deadline {
        let records = consumer.poll(Duration::from_millis(100))?;
        collect(&records, &mut got)?;
    }
    Ok(got)
}

fn collect(records: &ConsumerRecords<String, String>, out: &mut Vec<(TopicPartition, u64, String)>) -> runnel::Result<()> {
    for r in records.iter() {
        let r = r?;
        out.push((TopicPartition::new(r.topic(), r.partition()), r.offset(), r.value()?.unwrap_or_default()));
    }
    Ok(())
}

// 4.1.2, without a callback: send 100 records, close; all 100 are in the topic.
#[test]
fn async_send_without_callback_stores_every_record_by_close() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 3, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..100 {
        producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
    }
    producer.close(None)?;
    assert_eq!(all_values(&log, "first"), numbers(100));
    // Keyed records went where the default partitioner (murmur2) sends their key.
    for p in 0..3 {
        for r in read_all(&log, "first", p)? {
            let key = r.key.expect("keyed");
            assert_eq!(runnel::partitioner::partition_for_key(&key, 3), p);
        }
    }
    Ok(())
}

// 4.1.2, with a callback: each callback runs once, after the ack, with the record's metadata;
// callbacks of one partition run in offset order.
#[test]
fn async_send_with_callback_reports_each_offset_in_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 2, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    let seen: Arc<Mutex<Vec<RecordMetadata>>> = Arc::default();
    for i in 0..100 {
        let seen = seen.clone();
        producer.send_with_callback(ProducerRecord::with_key("first", i.to_string(), i.to_string()), move |outcome| match outcome {
            Ok(metadata) => seen.lock().expect("lock").push(metadata.clone()),
            Err(e) => panic!("send failed: {e}"),
        });
    }
    producer.close(None)?;
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 100, "one callback per record");
    for p in 0..2u32 {
        let offsets: Vec<u64> = seen.iter().filter(|m| m.partition == p).map(|m| m.offset.expect("acks=all has offsets")).collect();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "partition {p}: callbacks in offset order");
        assert_eq!(log.high_watermark("first", p)?, offsets.len() as u64);
    }
    Ok(())
}

// 4.1.3: send(...).get() blocks until the ack; each record is stored when get returns.
#[test]
fn sync_send_is_stored_when_get_returns() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..100u64 {
        let m = producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string())).get()?;
        assert_eq!((m.partition, m.offset), (0, Some(i)));
        // acks=all: durable, so already below the high watermark.
        assert_eq!(log.high_watermark("first", 0)?, i + 1);
    }
    producer.close(None)?;
    Ok(())
}

// 4.2.1: an auto-commit consumer commits as it polls; after a restart (the log closed and opened
// again), a consumer of the same group resumes from the committed offset.
#[test]
fn auto_commit_consumer_resumes_after_restart() -> TestResult {
    let dir = tempfile::tempdir()?;
    {
        let log = open(dir.path())?;
        log.create_topic("first", 2, TopicConfig::default())?;
        let producer = string_producer(&log, chapter_producer_config())?;
        for i in 0..60 {
            producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
        }
        producer.flush();
        let mut config =
            ConsumerConfig::from_pairs([("group.id", "test"), ("enable.auto.commit", "true"), ("auto.commit.interval.ms", "50")])?;
        config.auto_offset_reset = OffsetResetPolicy::Earliest;
        config.max_poll_records = 10;
        let mut consumer = string_consumer(&log, config)?;
        consumer.subscribe(first())?;
        let got = poll_n(&mut consumer, 30)?;
        assert!(got.len() >= 30);
        // Let an interval pass and poll once more, which commits what was returned.
        std::thread::sleep(Duration::from_millis(60));
        consumer.poll(Duration::from_millis(10))?;
        let committed: u64 =
            (0..2).map(|p| consumer.committed(&TopicPartition::new("first", p)).map(|c| c.unwrap_or(0))).sum::<runnel::Result<u64>>()?;
        assert!(committed as usize >= got.len(), "auto-commit covered what poll returned: {committed} < {}", got.len());
        consumer.close()?;
        producer.close(None)?;
        log.close()?;
    }
    let log = open(dir.path())?;
    let committed: Vec<u64> =
        (0..2).map(|p| log.committed("test", "first", p).map(|c| c.map_or(0, |c| c.offset))).collect::<runnel::Result<_>>()?;
    let mut config = ConsumerConfig::group("test");
    config.auto_offset_reset = OffsetResetPolicy::Earliest;
    let mut consumer = string_consumer(&log, config)?;
    consumer.subscribe(first())?;
    let rest = poll_n(&mut consumer, 60 - committed.iter().sum::<u64>() as usize)?;
    for (tp, offset, _) in &rest {
        assert!(*offset >= committed[tp.partition as usize], "{tp}@{offset} was committed before the restart");
    }
    // Together: every record once.
    let before: u64 = committed.iter().sum();
    assert_eq!(before as usize + rest.len(), 60);
    Ok(())
}

// 4.2.2, commitSync: consume, commit, restart the consumer; it continues exactly after the commit.
#[test]
fn commit_sync_makes_the_next_consumer_continue_exactly() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..50 {
        producer.send(ProducerRecord::new("first", i.to_string()));
    }
    producer.flush();
    let mut config =
        ConsumerConfig::from_pairs([("group.id", "test"), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")])?;
    config.max_poll_records = 20;
    let mut consumer = string_consumer(&log, config.clone())?;
    consumer.subscribe(first())?;
    let got = poll_n(&mut consumer, 20)?;
    assert_eq!(got.len(), 20);
    consumer.commit_sync()?;
    assert_eq!(consumer.committed(&TopicPartition::new("first", 0))?, Some(20));
    // Polled but never committed: redelivered to the next consumer (at-least-once).
    let uncommitted = consumer.poll(Duration::from_secs(1))?;
    assert_eq!(uncommitted.count(), 20);
    drop(uncommitted);
    consumer.close()?;
    let mut next = string_consumer(&log, config)?;
    next.subscribe(first())?;
    let rest = poll_n(&mut next, 30)?;
    assert_eq!(rest.iter().map(|r| r.1).collect::<Vec<_>>(), (20..50).collect::<Vec<_>>());
    Ok(())
}

// 4.2.2, commitAsync: the callback runs (in a later poll or at close) with the offsets and no
// error; the commit is then visible.
#[test]
fn commit_async_calls_back_with_the_offsets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..10 {
        producer.send(ProducerRecord::new("first", i.to_string()));
    }
    producer.flush();
    let config = ConsumerConfig::from_pairs([("group.id", "test"), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")])?;
    let mut consumer = string_consumer(&log, config)?;
    consumer.subscribe(first())?;
    poll_n(&mut consumer, 10)?;
    type Calls = Arc<Mutex<Vec<(Vec<(TopicPartition, u64)>, bool)>>>;
    let calls: Calls = Arc::default();
    let c = calls.clone();
    consumer.commit_async(Some(Box::new(move |offsets: &[(TopicPartition, u64)], err: Option<&Error>| {
        c.lock().expect("lock").push((offsets.to_vec(), err.is_none()));
    })))?;
    // The callback runs in the consumer's thread, within a later call.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while calls.lock().expect("lock").is_empty() && std::time::Instant::now() < deadline {
        consumer.poll(Duration::from_millis(10))?;
    }
    assert_eq!(*calls.lock().expect("lock"), vec![(vec![(TopicPartition::new("first", 0), 10)], true)]);
    assert_eq!(log.committed("test", "first", 0)?.map(|c| c.offset), Some(10));
    Ok(())
}

/// The offsets a member has processed, by partition.
type Current = Arc<Mutex<HashMap<TopicPartition, u64>>>;

/// Section 4.2.3's custom offset store: offsets kept outside runnel, saved on revoke and after
/// each poll, read back with seek on assign.
#[derive(Clone, Default)]
struct OffsetStore(Arc<Mutex<HashMap<TopicPartition, u64>>>);

struct StoreListener {
    store: OffsetStore,
    current: Arc<Mutex<HashMap<TopicPartition, u64>>>,
    events: Arc<Mutex<Vec<String>>>,
}

impl ConsumerRebalanceListener<String, String> for StoreListener {
    fn on_partitions_revoked(&mut self, _consumer: &mut Consumer<String, String>, partitions: &[TopicPartition]) {
        // commitOffset(currentOffset)
        let current = self.current.lock().expect("lock");
        let mut store = self.store.0.lock().expect("lock");
        for tp in partitions {
            if let Some(o) = current.get(tp) {
                store.insert(tp.clone(), *o);
            }
        }
        self.events.lock().expect("lock").push(format!("revoked {}", partitions.len()));
    }
    fn on_partitions_assigned(&mut self, consumer: &mut Consumer<String, String>, partitions: &[TopicPartition]) {
        self.current.lock().expect("lock").clear();
        for tp in partitions {
            // consumer.seek(partition, getOffset(partition))
            let at = self.store.0.lock().expect("lock").get(tp).copied().unwrap_or(0);
            consumer.seek(tp, at).expect("seek an assigned partition");
        }
        self.events.lock().expect("lock").push(format!("assigned {}", partitions.len()));
    }
}

#[test]
fn custom_offset_store_through_the_rebalance_listener() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 4, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..200 {
        producer.send(ProducerRecord::new("first", i.to_string()));
    }
    producer.flush();
    let store = OffsetStore::default();
    let config = ConsumerConfig::from_pairs([("group.id", "test"), ("enable.auto.commit", "false"), ("max.poll.records", "7")])?;
    let make = |events: &Arc<Mutex<Vec<String>>>| -> runnel::Result<(Consumer<String, String>, Current)> {
        let current: Arc<Mutex<HashMap<TopicPartition, u64>>> = Arc::default();
        let mut c = string_consumer(&log, config.clone())?;
        c.subscribe_with_listener(first(), StoreListener { store: store.clone(), current: current.clone(), events: events.clone() })?;
        Ok((c, current))
    };
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let events_a: Arc<Mutex<Vec<String>>> = Arc::default();
    let (mut a, current_a) = make(&events_a)?;
    // The chapter's loop body: process, note the next offset, commitOffset(currentOffset).
    let step = |c: &mut Consumer<String, String>, current: &Arc<Mutex<HashMap<TopicPartition, u64>>>| -> runnel::Result<usize> {
        let records = c.poll(Duration::from_millis(50))?;
        let mut n = 0;
        for r in records.iter() {
            let r = r?;
            seen.lock().expect("lock").push(r.value()?.unwrap_or_default());
            current.lock().expect("lock").insert(TopicPartition::new(r.topic(), r.partition()), r.offset() + 1);
            n += 1;
        }
        let cur = current.lock().expect("lock").clone();
        store.0.lock().expect("lock").extend(cur);
        Ok(n)
    };
    let mut total = 0;
    for _ in 0..5 {
        total += step(&mut a, &current_a)?;
    }
    assert!(total > 0);
    // A second member joins: a rebalance; each gets two partitions, starting from the store.
    let events_b: Arc<Mutex<Vec<String>>> = Arc::default();
    let (mut b, current_b) = make(&events_b)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").len() < 200 && std::time::Instant::now() < deadline {
        step(&mut a, &current_a)?;
        step(&mut b, &current_b)?;
    }
    let mut got = seen.lock().expect("lock").clone();
    got.sort_by_key(|s| s.parse::<u64>().expect("number"));
    assert_eq!(got, numbers(200), "every record exactly once across the rebalance");
    assert_eq!(a.assignment().len(), 2);
    assert_eq!(b.assignment().len(), 2);
    let ea = events_a.lock().expect("lock").clone();
    assert_eq!(ea, ["assigned 4", "revoked 4", "assigned 2"], "the listener's calls come where the chapter puts them");
    assert_eq!(*events_b.lock().expect("lock"), ["assigned 2"]);
    Ok(())
}

/// 4.3.2's first interceptor: the send time, then a comma, in front of the value.
struct TimeInterceptor;

impl ProducerInterceptor<String, String> for TimeInterceptor {
    fn on_send(&self, record: &mut ProducerRecord<'_, String, String>) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
        record.value = Some(format!("{now},{}", record.value.take().unwrap_or_default()));
    }
}

/// 4.3.2's second interceptor: counts successes and failures, and prints them at close.
#[derive(Clone, Default)]
struct CounterInterceptor {
    success: Arc<AtomicUsize>,
    error: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

impl ProducerInterceptor<String, String> for CounterInterceptor {
    fn on_acknowledgement(&self, outcome: Result<&RecordMetadata, &Error>) {
        match outcome {
            Ok(_) => self.success.fetch_add(1, Ordering::SeqCst),
            Err(_) => self.error.fetch_add(1, Ordering::SeqCst),
        };
    }
    fn close(&self) {
        println!("Successful sent: {}", self.success.load(Ordering::SeqCst));
        println!("Failed sent: {}", self.error.load(Ordering::SeqCst));
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn interceptor_chain_prefixes_timestamps_and_counts_outcomes() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let counter = CounterInterceptor::default();
    let producer = Producer::builder(&log, chapter_producer_config(), StringSerializer, StringSerializer)
        .interceptor(TimeInterceptor)
        .interceptor(counter.clone())
        .build()?;
    let before = common::now_ms();
    for i in 0..10 {
        producer.send(ProducerRecord::new("first", format!("message{i}")));
    }
    // One failure for the counter: a topic that does not exist.
    let failed = producer.send(ProducerRecord::new("no-such-topic", "x".to_string())).get();
    assert!(matches!(failed, Err(Error::UnknownTopicOrPartition { .. })), "{failed:?}");
    producer.close(None)?;
    assert_eq!(counter.closed.load(Ordering::SeqCst), 1, "close reached the interceptors once");
    assert_eq!((counter.success.load(Ordering::SeqCst), counter.error.load(Ordering::SeqCst)), (10, 1));
    let stored = values(&read_all(&log, "first", 0)?);
    for (i, v) in stored.iter().enumerate() {
        let (ts, rest) = v.split_once(',').expect("a timestamp prefix");
        assert!(ts.parse::<i64>()? >= before, "{v}");
        assert_eq!(rest, format!("message{i}"));
    }
    assert_eq!(stored.len(), 10);
    Ok(())
}

/// Consumer interceptors see what poll returns and what is committed.
#[derive(Clone, Default)]
struct Tally {
    consumed: Arc<AtomicUsize>,
    commits: Arc<Mutex<Vec<(TopicPartition, u64)>>>,
}

impl ConsumerInterceptor<String, String> for Tally {
    fn on_consume(&self, records: &ConsumerRecords<String, String>) {
        self.consumed.fetch_add(records.count(), Ordering::SeqCst);
    }
    fn on_commit(&self, offsets: &[(TopicPartition, u64)]) {
        self.commits.lock().expect("lock").extend_from_slice(offsets);
    }
}

#[test]
fn consumer_interceptors_see_polls_and_commits() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..25 {
        producer.send(ProducerRecord::new("first", i.to_string()));
    }
    producer.flush();
    let tally = Tally::default();
    let config = ConsumerConfig::from_pairs([("group.id", "g"), ("enable.auto.commit", "false"), ("auto.offset.reset", "earliest")])?;
    let mut consumer = Consumer::builder(&log, config, StringDeserializer, StringDeserializer).interceptor(tally.clone()).build()?;
    consumer.subscribe(first())?;
    poll_n(&mut consumer, 25)?;
    consumer.commit_sync()?;
    assert_eq!(tally.consumed.load(Ordering::SeqCst), 25);
    assert_eq!(*tally.commits.lock().expect("lock"), vec![(TopicPartition::new("first", 0), 25)]);
    Ok(())
}

// Queue and publish/subscribe (section 1.2.2): two groups each receive every record; the two
// members of one group each receive a share, together all of them.
#[test]
fn groups_give_publish_subscribe_and_members_give_a_queue() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 4, TopicConfig::default())?;
    let producer = string_producer(&log, chapter_producer_config())?;
    for i in 0..100 {
        producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
    }
    producer.flush();
    let config = |g: &str| ConsumerConfig::from_pairs([("group.id", g), ("auto.offset.reset", "earliest")]);
    let mut solo = string_consumer(&log, config("audit")?)?;
    solo.subscribe(first())?;
    let mut w1 = string_consumer(&log, config("workers")?)?;
    let mut w2 = string_consumer(&log, config("workers")?)?;
    w1.subscribe(first())?;
    w2.subscribe(first())?;
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while (a.len() < 100 || b.len() + c.len() < 100) && std::time::Instant::now() < deadline {
        collect(&solo.poll(Duration::from_millis(10))?, &mut a)?;
        collect(&w1.poll(Duration::from_millis(10))?, &mut b)?;
        collect(&w2.poll(Duration::from_millis(10))?, &mut c)?;
    }
    assert_eq!(a.len(), 100, "the audit group gets everything");
    assert!(!b.is_empty() && !c.is_empty(), "both workers get a share");
    let mut shared: Vec<String> = b.iter().chain(&c).map(|r| r.2.clone()).collect();
    shared.sort_by_key(|s| s.parse::<u64>().expect("number"));
    assert_eq!(shared, numbers(100), "the workers' shares are disjoint and complete");
    Ok(())
}

#[test]
fn send_blocks_for_buffer_memory_then_times_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    // A long linger and a large batch: nothing is sent until close, so the buffer fills.
    let config =
        ProducerConfig::from_pairs([("linger.ms", "60000"), ("batch.size", "1000000"), ("buffer.memory", "1000"), ("max.block.ms", "50")])?;
    let producer = Producer::new(&log, config)?;
    let mut futures = Vec::new();
    for _ in 0..3 {
        futures.push(producer.send(ProducerRecord::new("first", vec![7u8; 300])));
    }
    let started = std::time::Instant::now();
    let refused = producer.send(ProducerRecord::new("first", vec![7u8; 300])).get();
    assert!(matches!(refused, Err(Error::Timeout(_))), "{refused:?}");
    assert!(started.elapsed() >= Duration::from_millis(50), "send blocked for max.block.ms first");
    // A record larger than the whole buffer fails at once.
    let too_big = producer.send(ProducerRecord::new("first", vec![7u8; 2000])).get();
    assert!(matches!(too_big, Err(Error::RecordTooLarge { .. })), "{too_big:?}");
    producer.close(None)?;
    for f in futures {
        assert!(f.get()?.offset.is_some());
    }
    assert_eq!(log.high_watermark("first", 0)?, 3);
    // After close, sends fail with Closed.
    assert!(matches!(producer.send(ProducerRecord::new("first", vec![1u8])).get(), Err(Error::Closed)));
    Ok(())
}

#[test]
fn linger_sends_a_partial_batch_and_flush_waits_for_it() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 1, TopicConfig::default())?;
    let config = ProducerConfig::from_pairs([("linger.ms", "30"), ("acks", "1")])?;
    let producer = Producer::new(&log, config)?;
    let f = producer.send(ProducerRecord::new("first", b"x".to_vec()));
    // Not sent at once: the batch waits for linger.ms.
    let f = match f.get_timeout(Some(Duration::from_millis(5))) {
        Err(pending) => pending,
        Ok(r) => panic!("completed before linger.ms: {r:?}"),
    };
    assert_eq!(f.get()?.offset, Some(0));
    let g = producer.send(ProducerRecord::new("first", b"y".to_vec()));
    producer.flush();
    assert!(g.is_done(), "flush returns after the record is acknowledged");
    Ok(())
}

#[test]
fn producer_settings_refuse_unknown_names_and_bad_values() {
    let mut c = ProducerConfig::default();
    assert!(matches!(c.set("bootstrap.servers", "x:9092"), Err(Error::InvalidArgument(_))));
    assert!(matches!(c.set("acks", "2"), Err(Error::InvalidArgument(_))));
    assert!(matches!(c.set("linger.ms", "-1"), Err(Error::InvalidArgument(_))));
    let mut c = ConsumerConfig::default();
    assert!(matches!(c.set("auto.offset.reset", "smallest"), Err(Error::InvalidArgument(_))));
    assert!(c.set("partition.assignment.strategy", "org.apache.kafka.clients.consumer.CooperativeStickyAssignor").is_ok());
}

#[test]
fn idempotent_and_transactional_producers_are_settings() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("first", 2, TopicConfig::default())?;
    let mut config = chapter_producer_config();
    config.transactional_id = Some("tx-1".into());
    let producer = string_producer(&log, config)?;
    producer.begin_transaction()?;
    for i in 0..10 {
        producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
    }
    producer.abort_transaction()?;
    producer.begin_transaction()?;
    for i in 10..20 {
        producer.send(ProducerRecord::with_key("first", i.to_string(), i.to_string()));
    }
    producer.commit_transaction()?;
    let config = ConsumerConfig::from_pairs([("group.id", "g"), ("auto.offset.reset", "earliest"), ("isolation.level", "read_committed")])?;
    let mut consumer = string_consumer(&log, config)?;
    consumer.subscribe(first())?;
    let got = poll_n(&mut consumer, 10)?;
    let mut v: Vec<String> = got.into_iter().map(|r| r.2).collect();
    v.sort_by_key(|s| s.parse::<u64>().expect("number"));
    assert_eq!(v, (10..20).map(|i| i.to_string()).collect::<Vec<_>>(), "read_committed skips the aborted transaction");
    assert!(consumer.poll(Duration::from_millis(50))?.is_empty());
    // A send outside a transaction fails through its future.
    let outside = producer.send(ProducerRecord::new("first", "late".to_string())).get();
    assert!(matches!(outside, Err(Error::InvalidTransactionState(_))), "{outside:?}");
    Ok(())
}

#[test]
fn seek_pause_resume_and_positions() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 2, TopicConfig::default())?;
    for p in 0..2 {
        let recs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i]).collect();
        let records: Vec<runnel::Record<'_>> = recs.iter().map(|v| runnel::Record::new(v)).collect();
        log.append("t", Some(p), &records, runnel::Acks::One)?;
    }
    log.sync_all()?;
    let (t0, t1) = (TopicPartition::new("t", 0), TopicPartition::new("t", 1));
    let mut c = Consumer::new(&log, ConsumerConfig { auto_offset_reset: OffsetResetPolicy::Earliest, ..ConsumerConfig::default() })?;
    c.assign(&[t0.clone(), t1.clone()])?;
    c.pause(std::slice::from_ref(&t1))?;
    let r = c.poll(Duration::from_millis(100))?;
    assert_eq!(r.partitions(), std::slice::from_ref(&t0), "a paused partition is not fetched");
    assert_eq!(c.position(&t0)?, 10);
    assert_eq!(c.position(&t1)?, 0);
    c.resume(std::slice::from_ref(&t1))?;
    c.seek(&t0, 7)?;
    let r = c.poll(Duration::from_millis(100))?;
    let offsets: BTreeMap<u32, Vec<u64>> = r.iter().try_fold(BTreeMap::new(), |mut m: BTreeMap<u32, Vec<u64>>, rec| {
        let rec = rec?;
        m.entry(rec.partition()).or_default().push(rec.offset());
        Ok::<_, Error>(m)
    })?;
    assert_eq!(offsets[&0], [7, 8, 9]);
    assert_eq!(offsets[&1], (0..10).collect::<Vec<_>>());
    c.seek_to_beginning(std::slice::from_ref(&t0))?;
    assert_eq!(c.position(&t0)?, 0);
    c.seek_to_end(&[t0.clone(), t1.clone()])?;
    assert!(c.poll(Duration::from_millis(20))?.is_empty());
    // Commits need a group.id.
    assert!(matches!(c.commit_sync(), Err(Error::InvalidArgument(_))));
    assert!(matches!(c.seek(&TopicPartition::new("t", 5), 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(c.assign(&[TopicPartition::new("t", 5)]), Err(Error::UnknownTopicOrPartition { .. })));
    Ok(())
}

#[test]
fn poll_wakes_as_soon_as_a_record_is_appended() -> TestResult {
    let dir = tempfile::tempdir()?;
    let log = open(dir.path())?;
    log.create_topic("t", 1, common::config(&[("high.watermark", "written")]))?;
    let mut c = Consumer::new(&log, ConsumerConfig::default())?;
    c.assign(&[TopicPartition::new("t", 0)])?;
    assert_eq!(c.position(&TopicPartition::new("t", 0))?, 0);
    std::thread::scope(|s| -> TestResult {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            log.append("t", Some(0), &[runnel::Record::new(b"late")], runnel::Acks::One).expect("append");
        });
        let started = std::time::Instant::now();
        let r = c.poll(Duration::from_secs(10))?;
        assert_eq!(r.count(), 1);
        // Woken by the append, not by the 10 s timeout (a generous bound: this is no benchmark).
        assert!(started.elapsed() < Duration::from_secs(5));
        Ok(())
    })?;
    Ok(())
}
