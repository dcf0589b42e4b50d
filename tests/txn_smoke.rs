//! A quick end-to-end pass over idempotence, transactions, fencing and reopen (the thorough tests are in transactions.rs and friends).

use runnel::{Acks, Error, IsolationLevel, Log, LogOptions, OffsetCommit, ProducerBatch, Record, TopicConfig, TransactionOptions};

fn values(log: &Log, t: &str, p: u32, iso: IsolationLevel) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset(t, p).expect("smoke step");
    loop {
        let f = log.fetch_with(t, p, off, 1 << 20, iso).expect("smoke step");
        if f.is_empty() {
            return out;
        }
        for r in f.records() {
            out.push(r.expect("smoke step").value.expect("smoke step").to_vec());
        }
        off = f.next_offset();
    }
}

#[test]
fn smoke() {
    let dir = tempfile::tempdir().expect("smoke step");
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("smoke step");
        log.create_topic("a", 2, TopicConfig::default()).expect("smoke step");
        let pid = log.allocate_producer_id().expect("smoke step");
        let b = |seq| ProducerBatch { producer_id: pid, producer_epoch: 0, base_sequence: seq };
        let r1 = log.append_idempotent("a", Some(0), &[Record::new(b"i0"), Record::new(b"i1")], Acks::All, b(0)).expect("smoke step");
        let r2 = log.append_idempotent("a", Some(0), &[Record::new(b"i0"), Record::new(b"i1")], Acks::All, b(0)).expect("smoke step");
        assert_eq!(r1, r2);
        assert!(matches!(
            log.append_idempotent("a", Some(0), &[Record::new(b"x")], Acks::All, b(5)),
            Err(Error::OutOfOrderSequence { expected: 2, .. })
        ));
        let p = log.transactional_producer("t1", TransactionOptions::default()).expect("smoke step");
        p.begin().expect("smoke step");
        p.send("a", Some(0), &[Record::new(b"c0")]).expect("smoke step");
        p.send("a", Some(1), &[Record::new(b"c1")]).expect("smoke step");
        p.send_offsets_to_transaction("g", &[OffsetCommit { topic: "a", partition: 0, offset: 7, metadata: "" }]).expect("smoke step");
        assert_eq!(values(&log, "a", 0, IsolationLevel::ReadCommitted), vec![b"i0".to_vec(), b"i1".to_vec()]);
        assert!(log.committed("g", "a", 0).expect("smoke step").is_none());
        p.commit().expect("smoke step");
        assert_eq!(values(&log, "a", 0, IsolationLevel::ReadCommitted).len(), 3);
        assert_eq!(log.committed("g", "a", 0).expect("smoke step").expect("smoke step").offset, 7);
        p.begin().expect("smoke step");
        p.send("a", Some(0), &[Record::new(b"ab0")]).expect("smoke step");
        p.abort().expect("smoke step");
        p.begin().expect("smoke step");
        p.send("a", Some(0), &[Record::new(b"c2")]).expect("smoke step");
        p.commit().expect("smoke step");
        assert_eq!(
            values(&log, "a", 0, IsolationLevel::ReadCommitted),
            vec![b"i0".to_vec(), b"i1".to_vec(), b"c0".to_vec(), b"c2".to_vec()]
        );
        assert_eq!(values(&log, "a", 0, IsolationLevel::ReadUncommitted).len(), 5);
        // Left open, then a new incarnation fences it.
        p.begin().expect("smoke step");
        p.send("a", Some(1), &[Record::new(b"open")]).expect("smoke step");
        assert_eq!(log.last_stable_offset("a", 1).expect("smoke step"), 1);
        let p2 = log.transactional_producer("t1", TransactionOptions::default()).expect("smoke step");
        assert!(matches!(p.send("a", Some(1), &[Record::new(b"z")]), Err(Error::ProducerFenced { .. })));
        assert_eq!(values(&log, "a", 1, IsolationLevel::ReadCommitted), vec![b"c1".to_vec()]);
        p2.begin().expect("smoke step");
        p2.send("a", Some(1), &[Record::new(b"left-open")]).expect("smoke step");
        drop(p);
        log.close().expect("smoke step");
        // The producer outlives the log: its transaction stays open on disk.
        assert!(matches!(p2.commit(), Err(Error::Closed)));
        std::mem::forget(p2);
    }
    // Unclean: reopen and the open transaction is aborted.
    let log = Log::open(dir.path(), LogOptions::default()).expect("smoke step");
    assert_eq!(values(&log, "a", 1, IsolationLevel::ReadCommitted), vec![b"c1".to_vec()]);
    assert_eq!(log.last_stable_offset("a", 1).expect("smoke step"), log.high_watermark("a", 1).expect("smoke step"));
    let pid = 0;
    let r = log
        .append_idempotent(
            "a",
            Some(0),
            &[Record::new(b"i0"), Record::new(b"i1")],
            Acks::All,
            ProducerBatch { producer_id: pid, producer_epoch: 0, base_sequence: 0 },
        )
        .expect("smoke step");
    assert_eq!(r.base_offset, 0);
    assert_eq!(log.list_transactions().len(), 1);
}
