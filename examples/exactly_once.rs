//! Exactly-once consume-transform-produce: read `orders` from where group `billing` left off,
//! write one receipt per order to `receipts`, and commit the receipts together with the group's
//! offsets, in one transaction. A crash at any point leaves either both or neither, so a restart
//! never skips an order nor bills it twice. Each run adds a few orders and bills only the new ones.
//!
//! `cargo run --example exactly_once [DIR]` (DIR defaults to ./runnel-data-eos).

use runnel::{Acks, IsolationLevel, Log, LogOptions, OffsetCommit, Record, TopicConfig, TransactionOptions};

fn main() -> runnel::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "runnel-data-eos".to_string());
    let log = Log::open(&dir, LogOptions::default())?;
    for topic in ["orders", "receipts"] {
        if !log.list_topics().iter().any(|t| t == topic) {
            log.create_topic(topic, 2, TopicConfig::default())?;
        }
    }

    // Some input: five new orders, keyed by customer.
    let known: u64 = (0..2).map(|p| log.log_end_offset("orders", p)).sum::<runnel::Result<u64>>()?;
    for (i, customer) in ["alice", "bob", "carol", "alice", "dave"].iter().enumerate() {
        let order = format!("order {} from {customer}", known + i as u64);
        log.append("orders", None, &[Record::new(order.as_bytes()).with_key(customer.as_bytes())], Acks::All)?;
    }

    // Creating the producer fences an earlier incarnation with the same id and aborts whatever it
    // left open, so the committed offsets read below are settled.
    let producer = log.transactional_producer("billing-1", TransactionOptions::default())?;
    for p in 0..log.partition_count("orders")? {
        let mut offset = log.committed("billing", "orders", p)?.map_or(0, |c| c.offset);
        while offset < log.last_stable_offset("orders", p)? {
            let fetched = log.fetch_with("orders", p, offset, 64 << 10, IsolationLevel::ReadCommitted)?;
            // If anything below fails, `?` drops the producer, which aborts the transaction.
            producer.begin()?;
            for order in fetched.records() {
                let order = order?;
                let receipt = format!("receipt for {}", String::from_utf8_lossy(order.value.unwrap_or_default()));
                let mut record = Record::new(receipt.as_bytes());
                record.key = order.key;
                producer.send("receipts", None, &[record])?;
                println!("orders-{p}@{}: {receipt}", order.offset);
            }
            offset = fetched.next_offset();
            producer.send_offsets_to_transaction("billing", &[OffsetCommit { topic: "orders", partition: p, offset, metadata: "" }])?;
            producer.commit()?;
        }
        println!("orders-{p}: group billing committed up to offset {offset}");
    }

    let mut receipts = 0;
    for p in 0..log.partition_count("receipts")? {
        let mut offset = log.log_start_offset("receipts", p)?;
        while offset < log.last_stable_offset("receipts", p)? {
            let fetched = log.fetch_with("receipts", p, offset, 64 << 10, IsolationLevel::ReadCommitted)?;
            receipts += fetched.records().count();
            offset = fetched.next_offset();
        }
    }
    println!("{receipts} receipts in {dir}, one per order");
    log.close()
}
