//! A property test of the producer's accumulator and sender: any sequence of sends (to chosen
//! partitions or the partitioner's, with and without callbacks, of any size), flushes and a close,
//! under any batch.size, linger.ms and acks, delivers every record accepted exactly once, in send
//! order per partition, completes every future, and calls every callback exactly once, in offset
//! order per partition. Sends after the close fail, and their callbacks are told so.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use runnel::clients::{Producer, ProducerConfig, ProducerRecord, SendFuture};
use runnel::{Acks, Error};

const PARTITIONS: u32 = 3;

#[derive(Clone, Debug)]
enum Op {
    Send { partition: Option<u32>, key: bool, size: usize, callback: bool },
    Flush,
    Close,
    Pause,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (proptest::option::of(0..PARTITIONS), any::<bool>(), 0usize..600, any::<bool>())
            .prop_map(|(partition, key, size, callback)| Op::Send { partition, key, size, callback }),
        1 => Just(Op::Flush),
        1 => Just(Op::Pause),
        1 => Just(Op::Close),
    ]
}

/// (id, outcome) for each callback call, in call order.
type Calls = Arc<Mutex<Vec<(u64, Result<(u32, u64), String>)>>>;

fn run(ops: Vec<Op>, batch_size: usize, linger_ms: u64, acks: Acks) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let log = common::open(dir.path()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    log.create_topic("t", PARTITIONS, common::config(&[("high.watermark", "written")])).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let config = ProducerConfig {
        batch_size,
        linger: Duration::from_millis(linger_ms),
        acks,
        enable_idempotence: linger_ms.is_multiple_of(2),
        ..ProducerConfig::default()
    };
    let producer = Producer::new(&log, config).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let calls: Calls = Arc::default();
    let mut futures: Vec<(u64, bool, SendFuture)> = Vec::new();
    let mut callbacks_expected = Vec::new();
    let mut closed = false;
    for (id, op) in ops.into_iter().enumerate() {
        let id = id as u64;
        match op {
            Op::Send { partition, key, size, callback } => {
                let mut value = id.to_le_bytes().to_vec();
                value.resize(8 + size, 0xAB);
                let mut record = ProducerRecord::new("t", value);
                record.partition = partition;
                if key {
                    record.key = Some(format!("key-{}", id % 7).into_bytes());
                }
                let f = if callback {
                    callbacks_expected.push(id);
                    let calls = calls.clone();
                    producer.send_with_callback(record, move |outcome| {
                        let o = outcome.map(|m| (m.partition, m.offset.unwrap_or(u64::MAX))).map_err(|e| e.to_string());
                        calls.lock().expect("lock").push((id, o));
                    })
                } else {
                    producer.send(record)
                };
                futures.push((id, closed, f));
            }
            Op::Flush => producer.flush(),
            Op::Pause => std::thread::sleep(Duration::from_millis(1)),
            Op::Close => {
                producer.close(None).map_err(|e| TestCaseError::fail(e.to_string()))?;
                closed = true;
            }
        }
    }
    producer.close(None).map_err(|e| TestCaseError::fail(e.to_string()))?;
    // Every future completes: Ok before the close, Closed after.
    let mut sent: Vec<Vec<u64>> = vec![Vec::new(); PARTITIONS as usize];
    for (id, after_close, f) in futures {
        match (f.get(), after_close) {
            (Ok(m), false) => {
                if acks != Acks::Zero {
                    let offset = m.offset.ok_or_else(|| TestCaseError::fail("no offset"))?;
                    prop_assert_eq!(offset, sent[m.partition as usize].len() as u64, "record {} out of order", id);
                }
                sent[m.partition as usize].push(id);
            }
            (Err(Error::Closed), true) => {}
            (r, after) => prop_assert!(false, "record {id} (after close: {after}): {r:?}"),
        }
    }
    // The log holds exactly the accepted records, in send order per partition.
    for p in 0..PARTITIONS {
        let stored: Vec<u64> = common::read_all(&log, "t", p)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .iter()
            .map(|r| u64::from_le_bytes(r.value.as_ref().expect("value")[..8].try_into().expect("8 bytes")))
            .collect();
        prop_assert_eq!(&stored, &sent[p as usize], "partition {}", p);
    }
    // Every callback once; in offset order per partition.
    let calls = calls.lock().expect("lock");
    let mut ids: Vec<u64> = calls.iter().map(|c| c.0).collect();
    ids.sort_unstable();
    prop_assert_eq!(&ids, &callbacks_expected, "each callback exactly once");
    if acks != Acks::Zero {
        let mut last = vec![None; PARTITIONS as usize];
        for (id, o) in calls.iter() {
            if let Ok((p, offset)) = o {
                prop_assert!(last[*p as usize] < Some(*offset), "callback of {} ran out of offset order", id);
                last[*p as usize] = Some(*offset);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48 * common::scale() as u32, ..ProptestConfig::default() })]

    #[test]
    fn every_record_once_in_order_with_every_callback_once(
        ops in proptest::collection::vec(op(), 1..120),
        batch_size in 1usize..3000,
        linger_ms in 0u64..4,
        acks in prop_oneof![Just(Acks::Zero), Just(Acks::One), Just(Acks::All)],
    ) {
        run(ops, batch_size, linger_ms, acks)?;
    }
}

/// A batch larger than the topic's max.message.bytes is split until it fits, as Kafka's producer
/// splits a batch the broker refuses as too large; offsets stay in send order.
#[test]
fn an_oversize_batch_is_split() -> common::TestResult {
    let dir = tempfile::tempdir()?;
    let log = common::open(dir.path())?;
    log.create_topic("t", 1, common::config(&[("max.message.bytes", "2000"), ("high.watermark", "written")]))?;
    let config = ProducerConfig { batch_size: 100_000, linger: Duration::from_millis(50), acks: Acks::One, ..ProducerConfig::default() };
    let producer = Producer::new(&log, config)?;
    let futures: Vec<SendFuture> = (0..40u8).map(|i| producer.send(ProducerRecord::new("t", vec![i; 300]))).collect();
    producer.flush();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.get()?.offset, Some(i as u64));
    }
    let stored: Vec<u8> = common::read_all(&log, "t", 0)?.iter().map(|r| r.value.as_ref().expect("value")[0]).collect();
    assert_eq!(stored, (0..40).collect::<Vec<u8>>());
    // A single record above the limit fails alone.
    let too_big = producer.send(ProducerRecord::new("t", vec![0u8; 5000])).get();
    assert!(matches!(too_big, Err(Error::RecordTooLarge { .. })), "{too_big:?}");
    Ok(())
}
