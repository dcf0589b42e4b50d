//! Section 4.3.2 of the Kafka primer: a producer with a two-interceptor chain. The first puts the
//! send time in front of each value; the second counts successful and failed sends and prints the
//! counts when the producer closes.
//!
//! `cargo run --example interceptors` (writes to ./runnel-data, topic "first").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use runnel::clients::{Producer, ProducerConfig, ProducerInterceptor, ProducerRecord, RecordMetadata, StringSerializer};
use runnel::{Error, Log, LogOptions, TopicConfig};

/// TimeInterceptor: `<milliseconds>,<value>`.
struct TimeInterceptor;

impl ProducerInterceptor<String, String> for TimeInterceptor {
    fn on_send(&self, record: &mut ProducerRecord<'_, String, String>) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        record.value = Some(format!("{now},{}", record.value.take().unwrap_or_default()));
    }
}

/// CounterInterceptor: success and failure counts, printed at close.
#[derive(Default)]
struct CounterInterceptor {
    success: AtomicUsize,
    error: AtomicUsize,
}

impl ProducerInterceptor<String, String> for CounterInterceptor {
    fn on_acknowledgement(&self, outcome: Result<&RecordMetadata, &Error>) {
        let counter = if outcome.is_ok() { &self.success } else { &self.error };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fn close(&self) {
        println!("Successful sent: {}", self.success.load(Ordering::Relaxed));
        println!("Failed sent: {}", self.error.load(Ordering::Relaxed));
    }
}

fn main() -> runnel::Result<()> {
    let log = Log::open("runnel-data", LogOptions::default())?;
    if !log.list_topics().iter().any(|t| t == "first") {
        log.create_topic("first", 1, TopicConfig::default())?;
    }
    let config = ProducerConfig::from_pairs([("acks", "all"), ("batch.size", "16384"), ("linger.ms", "1"), ("buffer.memory", "33554432")])?;
    let producer = Producer::builder(&log, config, StringSerializer, StringSerializer)
        .interceptor(TimeInterceptor)
        .interceptor(CounterInterceptor::default())
        .build()?;
    for i in 0..10 {
        producer.send(ProducerRecord::new("first", format!("message{i}")));
    }
    // Close the producer, or the interceptors' close never runs.
    producer.close(None)
}
