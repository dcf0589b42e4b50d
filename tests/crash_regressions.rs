//! Crash-recovery regression tests, one per bug found in review:
//! - recovery trusted segments below the recovery point's segment, so a segment whose roll was
//!   interrupted (new segment created, old one not yet trimmed) kept its preallocated zeros and
//!   fetches from its last batch failed with `Corrupt` (fixed twice over: a roll now trims before
//!   it creates, and a sealed segment whose `.index` does not match its size is verified);
//! - a second cut at the same position overwrote the first quarantined tail and report;
//! - `Log::open` deleted a catalogued partition's directory when a damaged `partition.metadata`
//!   named another topic id, then recreated it empty (now open fails with `Corrupt`).

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::copy_tree;
use runnel::format::BatchView;
use runnel::{Acks, Header, Log, LogOptions, Record, TopicConfig};
use tempfile::TempDir;

const TOPIC: &str = "t";
const MARKER: &str = ".runnel_clean_shutdown";
const CHECKPOINT: &str = "recovery-point-offset-checkpoint";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    offset: u64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn rec(i: u64, len: usize) -> Rec {
    let headers = if i.is_multiple_of(3) { vec![(b"h".to_vec(), Some(i.to_string().into_bytes()))] } else { Vec::new() };
    let key = i.is_multiple_of(2).then(|| format!("key-{i}").into_bytes());
    Rec { offset: 0, key, value: Some((0..len).map(|j| (i as u8).wrapping_mul(31).wrapping_add(j as u8)).collect()), headers }
}

fn opts() -> LogOptions {
    LogOptions::default().background_maintenance(false)
}

fn open(dir: &Path) -> Log {
    Log::open(dir, opts()).unwrap_or_else(|e| panic!("opening {} failed: {e}", dir.display()))
}

fn append(log: &Log, recs: &[Rec]) -> u64 {
    let headers: Vec<Vec<Header<'_>>> =
        recs.iter().map(|r| r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect()).collect();
    let records: Vec<Record<'_>> = recs
        .iter()
        .zip(&headers)
        .map(|(r, h)| Record { key: r.key.as_deref(), value: r.value.as_deref(), headers: h, timestamp: None })
        .collect();
    log.append(TOPIC, Some(0), &records, Acks::All).unwrap_or_else(|e| panic!("append failed: {e}")).base_offset
}

fn read_all(log: &Log) -> Vec<Rec> {
    let hw = log.high_watermark(TOPIC, 0).expect("hw");
    let mut offset = log.log_start_offset(TOPIC, 0).expect("log start");
    let mut out = Vec::new();
    while offset < hw {
        let f = log.fetch(TOPIC, 0, offset, 1 << 20).unwrap_or_else(|e| panic!("fetch at {offset} failed: {e}"));
        for r in f.records() {
            let r = r.unwrap_or_else(|e| panic!("record after {offset} does not decode: {e}"));
            out.push(Rec {
                offset: r.offset,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
                headers: r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect(),
            });
        }
        assert!(f.next_offset() > offset, "fetch at {offset} did not advance");
        offset = f.next_offset();
    }
    out
}

/// Every regular file under `dir` (recursively), by path relative to it, with its contents.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read directory") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("under dir").to_string_lossy().into_owned();
                out.push((rel, fs::read(&path).expect("read file")));
            }
        }
    }
    out.sort();
    out
}

fn segment_logs(pdir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(pdir)
        .expect("read partition directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// A cleanly closed directory with `batches` batches of 1-3 records in partition 0 of `config`.
fn build(config: TopicConfig, batches: u64) -> (TempDir, Vec<Rec>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path());
    log.create_topic(TOPIC, 1, config).expect("create topic");
    let mut records = Vec::new();
    let mut i = 0;
    for b in 0..batches {
        let batch: Vec<Rec> = (0..1 + b % 3)
            .map(|_| {
                i += 1;
                rec(i, 20 + (i as usize * 37) % 90)
            })
            .collect();
        let base = append(&log, &batch);
        records.extend(batch.into_iter().enumerate().map(|(j, r)| Rec { offset: base + j as u64, ..r }));
    }
    log.close().expect("close");
    (dir, records)
}

fn segmented_config() -> TopicConfig {
    TopicConfig { segment_bytes: 1024, index_interval_bytes: 64, retention_ms: None, ..TopicConfig::default() }
}

/// A SIGKILL inside `Partition::roll`, after `ActiveSegment::create` made the new (empty) segment
/// file but before `ActiveSegment::seal` trimmed the old one, leaves the old segment with its
/// preallocated zeros. Every record was synced before the roll, so the maintenance thread may
/// already have checkpointed the recovery point at the log end, i.e. at the new segment's base.
#[test]
fn a_kill_during_a_roll_with_the_recovery_point_at_the_log_end_leaves_no_zeros_in_a_sealed_segment() {
    let (pristine, records) = build(segmented_config(), 30);
    let leo = records.len() as u64;
    let work = tempfile::tempdir().expect("tempdir");
    copy_tree(pristine.path(), work.path());
    let pdir = work.path().join(format!("{TOPIC}-0"));
    let old = segment_logs(&pdir).pop().expect("a segment");
    let old_len = fs::metadata(&old).expect("stat").len();
    let sizes: u64 = segment_logs(&pdir).iter().map(|p| fs::metadata(p).expect("stat").len()).sum();
    fs::OpenOptions::new().write(true).open(&old).expect("open").set_len(1 << 20).expect("preallocate");
    fs::write(pdir.join(format!("{leo:020}.log")), b"").expect("the new, empty segment");
    fs::remove_file(work.path().join(MARKER)).expect("remove marker");
    fs::write(work.path().join(CHECKPOINT), format!("0\n1\n{TOPIC} 0 {leo}\n")).expect("checkpoint at the log end");

    let log = open(work.path());
    assert_eq!(log.log_end_offset(TOPIC, 0).expect("leo"), leo, "log end");
    // Observed: a fetch from any offset of the old segment's last batch fails with
    // "corrupt data in .../<old>.log at byte <end of data>: unknown batch magic 0".
    for r in &records {
        let f = log.fetch(TOPIC, 0, r.offset, 1 << 20).unwrap_or_else(|e| panic!("fetch at {} failed: {e}", r.offset));
        assert!(f.records().all(|x| x.is_ok()), "records after {} decode", r.offset);
    }
    assert_eq!(read_all(&log), records, "every record");
    // Observed: 1 MiB more than the data (the zeros count as segment bytes, and retention.bytes with them).
    assert_eq!(log.describe_topic(TOPIC).expect("describe").partitions[0].size_bytes, sizes, "partition size counts data only");
    log.close().expect("close");
    assert_eq!(fs::metadata(&old).expect("stat").len(), old_len, "the sealed segment is trimmed to its data");
}

/// Recovery quarantines a torn tail as `<topic>-<p>-<base>-<position>.bin`; when a later crash
/// tears the batch written at the same position again (a producer retrying after a crash, killed
/// again), the second quarantine overwrites the first, and the first cut bytes are lost.
#[test]
fn repeated_cuts_at_the_same_position_keep_every_quarantined_tail() {
    let (pristine, records) = build(TopicConfig { segment_bytes: 64 << 10, max_message_bytes: 64 << 10, ..TopicConfig::default() }, 6);
    let work = tempfile::tempdir().expect("tempdir");
    copy_tree(pristine.path(), work.path());
    let log_path = segment_logs(&work.path().join(format!("{TOPIC}-0"))).pop().expect("a segment");
    // Cut inside the last batch, as a torn write of it would.
    let bytes = fs::read(&log_path).expect("read");
    let mut start = 0;
    let mut leo = 0;
    while start < bytes.len() {
        let h = *BatchView::parse(&bytes[start..]).expect("pristine batch").header();
        if start + h.total_len() == bytes.len() {
            leo = h.base_offset;
            break;
        }
        start += h.total_len();
    }
    let mut cuts = Vec::new();
    for round in 0..3u64 {
        let bytes = fs::read(&log_path).expect("read");
        let total = BatchView::parse(&bytes[start..]).expect("a batch at the cut").header().total_len();
        let torn = &bytes[..start + total / 2];
        cuts.push(torn[start..].to_vec());
        fs::write(&log_path, torn).expect("tear");
        fs::remove_file(work.path().join(MARKER)).expect("remove marker");
        let log = open(work.path());
        assert_eq!(log.log_end_offset(TOPIC, 0).expect("leo"), leo, "round {round}: cut at the torn batch");
        assert_eq!(read_all(&log), records[..leo as usize], "round {round}: records before the cut");
        // The producer retries with different data, which lands at the same position.
        let batch: Vec<Rec> = (0..=round).map(|i| rec(100 + round * 10 + i, 60)).collect();
        assert_eq!(append(&log, &batch), leo, "round {round}: retry lands at the cut");
        log.close().expect("close");
    }
    let q = files_under(&work.path().join("quarantine"));
    // Observed: only the last cut is there; the first two were overwritten.
    for (i, cut) in cuts.iter().enumerate() {
        assert!(
            q.iter().any(|(n, c)| n.ends_with(".bin") && c == cut),
            "the tail cut by recovery {i} is no longer in the quarantine (files: {:?})",
            q.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
    }
    assert_eq!(q.iter().filter(|(n, _)| n.ends_with(".report")).count(), cuts.len(), "one report per cut");
}

/// `partition.metadata` carries no checksum. When damage turns the topic id into another number,
/// open takes the live partition for one left behind by an interrupted create or delete, deletes
/// its directory, and starts the partition empty: every record is gone, silently.
#[test]
fn a_partition_metadata_naming_another_topic_id_does_not_delete_the_partition() {
    let (pristine, records) = build(segmented_config(), 12);
    let original = fs::read(pristine.path().join(format!("{TOPIC}-0")).join("partition.metadata")).expect("read");
    let text = String::from_utf8(original.clone()).expect("UTF-8");
    let digits = text.find("topic_id: ").expect("a topic id") + "topic_id: ".len();
    for mask in [0x01u8, 0x02, 0x04] {
        let mut b = original.clone();
        b[digits] ^= mask;
        let what = format!("partition.metadata {:?}", String::from_utf8_lossy(&b));
        let work = tempfile::tempdir().expect("tempdir");
        copy_tree(pristine.path(), work.path());
        fs::write(work.path().join(format!("{TOPIC}-0")).join("partition.metadata"), &b).expect("write");
        // Either refusing to open or opening with the data is fine; deleting the data is not.
        if let Ok(log) = Log::open(work.path(), opts()) {
            let got = read_all(&log);
            log.close().expect("close");
            // Observed: 0 records left, and the partition directory was recreated empty.
            assert!(got == records, "{what}: open succeeded but the partition lost its records ({} of {} left)", got.len(), records.len());
        }
    }
}

/// A lost `catalog` used to make open delete every partition directory as an uncommitted
/// leftover. Now open refuses, naming the catalog; only the internal topic's directory (left by a
/// crash during the very first open) is cleared without a catalog.
#[test]
fn a_missing_catalog_with_partition_directories_fails_the_open_instead_of_deleting_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        log.create_topic(TOPIC, 1, TopicConfig::default()).expect("create");
        log.append(TOPIC, Some(0), &[Record::new(b"keep me")], Acks::All).expect("append");
        log.close().expect("close");
    }
    fs::remove_file(dir.path().join("catalog")).expect("remove catalog");
    match Log::open(dir.path(), LogOptions::default()) {
        Err(runnel::Error::Corrupt { path, .. }) => assert!(path.ends_with("catalog"), "{path:?}"),
        other => panic!("expected Corrupt naming the catalog, got {other:?}"),
    }
    assert!(dir.path().join(format!("{TOPIC}-0")).join("00000000000000000000.log").exists(), "the data is still there");

    // Only the internal topic's directory: a crash during the first open. That opens.
    fs::remove_dir_all(dir.path().join(format!("{TOPIC}-0"))).expect("remove partition");
    let log = Log::open(dir.path(), LogOptions::default()).expect("a first-open leftover is cleared");
    assert_eq!(log.list_topics(), ["__consumer_offsets"]);
}
