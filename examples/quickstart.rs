//! The quick start: open a data directory, create a topic, append, read back, commit an offset.
//!
//! `cargo run --release --example quickstart [DIR]` (DIR defaults to ./runnel-data).

use runnel::{Acks, Header, Log, LogOptions, OffsetCommit, Record, TopicConfig};

fn main() -> runnel::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "runnel-data".to_string());
    let log = Log::open(&dir, LogOptions::default())?;
    if !log.list_topics().iter().any(|t| t == "quickstart") {
        log.create_topic("quickstart", 3, TopicConfig::default())?;
        println!("created topic quickstart with 3 partitions in {dir}");
    }

    // Keyed records land on the partition Kafka's default partitioner would pick.
    let headers = [Header::new(b"source", b"example")];
    for (i, user) in ["alice", "bob", "carol", "alice"].iter().enumerate() {
        let value = format!("event {i} for {user}");
        let rec = Record::new(value.as_bytes()).with_key(user.as_bytes()).with_headers(&headers);
        let at = log.append("quickstart", None, &[rec], Acks::All)?;
        println!("appended {value:?} to partition {} at offset {}", at.partition, at.base_offset);
    }

    // A batch of 1000 records in one atomic, fsync'd append.
    let values: Vec<String> = (0..1000).map(|i| format!("bulk-{i}")).collect();
    let batch: Vec<Record<'_>> = values.iter().map(|v| Record::new(v.as_bytes())).collect();
    let at = log.append("quickstart", Some(0), &batch, Acks::All)?;
    println!("appended 1000 records to partition 0 at offsets {}..={}", at.base_offset, at.last_offset);

    // Read partition 0 from where the group left off, then commit.
    let start = log.committed("readers", "quickstart", 0)?.map_or(log.log_start_offset("quickstart", 0)?, |c| c.offset);
    let fetched = log.fetch("quickstart", 0, start, 64 << 10)?;
    let mut n = 0;
    for r in fetched.records() {
        let r = r?;
        if n < 3 {
            println!("  offset {} key {:?} value {:?}", r.offset, r.key.map(String::from_utf8_lossy), r.value.map(String::from_utf8_lossy));
        }
        n += 1;
    }
    println!("read {n} records of partition 0 from offset {start}; high watermark {}", fetched.high_watermark());
    log.commit_offsets("readers", &[OffsetCommit { topic: "quickstart", partition: 0, offset: fetched.next_offset(), metadata: "" }])?;
    for lag in log.group_lag("readers")? {
        println!("group readers: {}-{} committed {} lag {}", lag.topic, lag.partition, lag.committed, lag.lag);
    }
    for p in log.describe_topic("quickstart")?.partitions {
        println!(
            "partition {}: log start {} high watermark {} log end {} ({} segments, {} bytes)",
            p.partition, p.log_start_offset, p.high_watermark, p.log_end_offset, p.segment_count, p.size_bytes
        );
    }
    log.close()
}
