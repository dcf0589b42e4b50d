//! Chapter 4 of the Kafka primer in one program: a producer sends 100 records asynchronously with
//! a callback (4.1.2), then one synchronously (4.1.3); two consumer groups read them, one with a
//! single member (publish/subscribe: it gets every record) and one with two members sharing the
//! partitions (a queue: each gets a share), committing as they go (4.2).
//!
//! `cargo run --example producer_consumer` (writes to ./runnel-data, topic "orders").

use std::time::Duration;

use runnel::clients::{
    Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord, StringDeserializer, StringSerializer, Subscription,
};
use runnel::{Log, LogOptions, TopicConfig};

fn main() -> runnel::Result<()> {
    let log = Log::open("runnel-data", LogOptions::default())?;
    if !log.list_topics().iter().any(|t| t == "orders") {
        log.create_topic("orders", 3, TopicConfig::default())?;
    }

    let producer = Producer::builder(&log, ProducerConfig::default(), StringSerializer, StringSerializer).build()?;
    for i in 0..100 {
        producer.send_with_callback(ProducerRecord::with_key("orders", i.to_string(), i.to_string()), |outcome| match outcome {
            Ok(metadata) => println!("success->{}-{} offset {}", metadata.topic, metadata.partition, metadata.offset.unwrap_or_default()),
            Err(e) => eprintln!("send failed: {e}"),
        });
    }
    let at = producer.send(ProducerRecord::with_key("orders", "sync".to_string(), "sync".to_string())).get()?;
    println!("synchronous send stored at partition {} offset {}", at.partition, at.offset.unwrap_or_default());
    producer.close(None)?;

    let config =
        |group: &str| ConsumerConfig::from_pairs([("group.id", group), ("auto.offset.reset", "earliest"), ("enable.auto.commit", "false")]);
    let string_consumer = |config| Consumer::builder(&log, config, StringDeserializer, StringDeserializer).build();
    let mut audit = string_consumer(config("audit")?)?;
    let mut worker_a = string_consumer(config("workers")?)?;
    let mut worker_b = string_consumer(config("workers")?)?;
    for c in [&mut audit, &mut worker_a, &mut worker_b] {
        c.subscribe(Subscription::Topics(vec!["orders".into()]))?;
    }
    let mut counts = [0usize; 3];
    for _ in 0..50 {
        for (i, c) in [&mut audit, &mut worker_a, &mut worker_b].into_iter().enumerate() {
            let records = c.poll(Duration::from_millis(20))?;
            for record in records.iter() {
                let record = record?;
                let _value: Option<String> = record.value()?;
                counts[i] += 1;
            }
            c.commit_sync()?;
        }
    }
    println!("group audit (one member) read {} records; group workers read {} + {}", counts[0], counts[1], counts[2]);
    Ok(())
}
