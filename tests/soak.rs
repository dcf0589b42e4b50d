//! Soak: producers, readers, retention, group commits and reopens running concurrently, round after
//! round, until a deadline, with the log's invariants checked throughout and after every reopen.
//!
//! Each round opens the data directory (topic `soak`, 3 partitions, 8 KiB segments and a
//! `retention.bytes` of 48 KiB, so retention deletes segments under the readers' feet) with the
//! background thread on (flushing every 20 ms, applying retention every 10 ms and writing the
//! checkpoint every 500 ms, alongside the test's own threads), and runs: three producers (acks=all,
//! acks=1, and one alternating all/1/0), whose records carry the producer id and a per-producer
//! sequence and are keyed one time in three; two readers that follow every partition from where
//! they stopped (from the log start at first), one of them stalling now and then, jumping to the
//! new log start when retention overtakes them; a thread calling `run_retention`; and a committer
//! that commits the readers' common position for a consumer group. Readers check that the offsets
//! they read are contiguous (apart from jumps past deleted segments), that every record decodes to
//! exactly what its producer wrote (no torn or foreign record), that each producer's sequence
//! increases within a partition, and that the high watermark never moves back and never falls
//! below the log start; the retention thread checks that once retention has deleted from a
//! partition, the partition never holds less than `retention.bytes`.
//!
//! At the end of a round the threads stop, the log is synced and retention applied until nothing
//! more is due, and the log is closed, cleanly or (every other round) followed by deleting the
//! clean-shutdown marker and the recovery-point checkpoint, so that the reopen verifies every
//! segment. After the reopen the test checks that the high watermark is the log end offset before
//! the close and the log start is unchanged; that the offsets from log start to high watermark are
//! contiguous and each holds exactly the record acknowledged there, and that every acknowledged
//! record (acks=all and, since the close syncs, acks=1/0 too) at or above the log start is
//! present, and nothing else; that recovery cut nothing; that the committed offsets are exactly
//! the last ones committed and never went backwards; and that retention never left a partition
//! below `retention.bytes` once it had deleted from it. A second, short test runs two
//! `run_retention` callers against an appender, the race this soak found.
//!
//! The run lasts `RUNNEL_SOAK_SECS` seconds (default 20, so CI stays under a minute); the long run
//! is `RUNNEL_SOAK_SECS=300 cargo test --release --test soak -- --nocapture`. The summary (rounds,
//! records appended and read, retention deletions) is printed with `eprintln!`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use runnel::{Acks, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, Error, Header, Log, LogOptions, OffsetCommit, Record, TopicConfig};

const TOPIC: &str = "soak";
const PARTITIONS: u32 = 3;
const PRODUCERS: u32 = 3;
const READERS: usize = 2;
const GROUP: &str = "soak-readers";
const SEGMENT_BYTES: u64 = 8 << 10;
const RETENTION_BYTES: u64 = 48 << 10;
const ROUND: Duration = Duration::from_millis(2500);

fn soak_secs() -> u64 {
    std::env::var("RUNNEL_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20)
}

/// The background thread flushes, applies retention (next to the soak's retention thread, so
/// that `run_retention` has concurrent callers) and writes the checkpoint often.
fn options() -> LogOptions {
    LogOptions::default()
        .retention_check_interval(Duration::from_millis(10))
        .checkpoint_interval(Duration::from_millis(500))
        .offsets_topic_segment_bytes(64 << 10)
}

fn topic_config() -> TopicConfig {
    let mut c = TopicConfig::default();
    for (k, v) in [
        ("segment.bytes", SEGMENT_BYTES.to_string()),
        ("max.message.bytes", SEGMENT_BYTES.to_string()),
        ("index.interval.bytes", "512".to_string()),
        ("retention.bytes", RETENTION_BYTES.to_string()),
        ("retention.ms", "-1".to_string()),
        ("flush.ms", "20".to_string()),
    ] {
        c.set(k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    c
}

/// A small deterministic PRNG (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The value of producer `p`'s record `seq`: `p<p>:s<seq>:` and a filler derived from both, so a
/// reader can tell a torn or misplaced record from the real one.
fn value_of(p: u32, seq: u64) -> Vec<u8> {
    let mut v = format!("p{p}:s{seq}:").into_bytes();
    let len = ((seq * 31 + u64::from(p) * 7) % 200) as usize;
    v.extend(std::iter::repeat_n(b'a' + ((seq + u64::from(p)) % 26) as u8, len));
    v
}

fn key_of(seq: u64) -> Option<Vec<u8>> {
    seq.is_multiple_of(3).then(|| format!("key-{}", seq % 17).into_bytes())
}

const HEADER_KEY: &[u8] = b"producer";

fn parse_value(v: &[u8]) -> Option<(u32, u64)> {
    let s = std::str::from_utf8(v).ok()?;
    let rest = s.strip_prefix('p')?;
    let (p, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix('s')?;
    let (seq, _) = rest.split_once(':')?;
    Some((p.parse().ok()?, seq.parse().ok()?))
}

/// Checks a record against what its producer wrote; returns (producer, seq).
fn check_record(r: &runnel::RecordView<'_>) -> Result<(u32, u64), String> {
    let value = r.value.ok_or_else(|| format!("offset {}: null value", r.offset))?;
    let (p, seq) =
        parse_value(value).ok_or_else(|| format!("offset {}: value does not decode: {:?}", r.offset, String::from_utf8_lossy(value)))?;
    if value != value_of(p, seq).as_slice() {
        return Err(format!("offset {}: value of p{p} s{seq} is torn or altered", r.offset));
    }
    if r.key.map(<[u8]>::to_vec) != key_of(seq) {
        return Err(format!("offset {}: key of p{p} s{seq} is wrong", r.offset));
    }
    let headers: Vec<_> = r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
    if headers != [(HEADER_KEY.to_vec(), Some(vec![p as u8]))] {
        return Err(format!("offset {}: headers of p{p} s{seq} are wrong: {headers:?}", r.offset));
    }
    Ok((p, seq))
}

/// One acknowledged record.
#[derive(Clone, Copy, Debug)]
struct Acked {
    producer: u32,
    seq: u64,
    acks: Acks,
}

/// What the threads of all rounds share and count.
#[derive(Default)]
struct Stats {
    appended: AtomicU64,
    appended_all: AtomicU64,
    read: AtomicU64,
    jumps: AtomicU64,
    skipped_by_retention: AtomicU64,
    retention_deletions: AtomicU64,
    commits: AtomicU64,
    verified: AtomicU64,
    verified_all: AtomicU64,
}

/// A reader's state, kept across rounds.
struct Reader {
    id: usize,
    /// Next offset to read, per partition.
    positions: Vec<Arc<AtomicU64>>,
    /// Last sequence seen per (partition, producer).
    last_seq: HashMap<(u32, u32), u64>,
}

type Violations = Arc<Mutex<Vec<String>>>;

fn violation(v: &Violations, msg: String) {
    let mut v = v.lock().unwrap_or_else(|e| e.into_inner());
    if v.len() < 50 {
        v.push(msg);
    }
}

fn produce(log: &Log, p: u32, next_seq: &mut u64, round: u64, stop: &AtomicBool, stats: &Stats, v: &Violations) -> Vec<(u32, u64, Acked)> {
    let mut rng = Rng(u64::from(p) << 32 | round);
    let mut acked = Vec::new();
    let mut batch_no = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = 1 + rng.next() % 4;
        let seqs: Vec<u64> = (*next_seq..*next_seq + n).collect();
        let values: Vec<Vec<u8>> = seqs.iter().map(|&s| value_of(p, s)).collect();
        let keys: Vec<Option<Vec<u8>>> = seqs.iter().map(|&s| key_of(s)).collect();
        let pid = [p as u8];
        let headers = [Header::new(HEADER_KEY, &pid)];
        let records: Vec<Record<'_>> = (0..n as usize)
            .map(|i| {
                let r = Record::new(&values[i]).with_headers(&headers);
                match &keys[i] {
                    Some(k) => r.with_key(k),
                    None => r,
                }
            })
            .collect();
        let acks = match p {
            0 => Acks::All,
            1 => Acks::One,
            _ => [Acks::All, Acks::One, Acks::All, Acks::Zero][(batch_no % 4) as usize],
        };
        batch_no += 1;
        match log.append(TOPIC, None, &records, acks) {
            Ok(at) => {
                for (i, &seq) in seqs.iter().enumerate() {
                    acked.push((at.partition, at.base_offset + i as u64, Acked { producer: p, seq, acks }));
                }
                *next_seq += n;
                stats.appended.fetch_add(n, Ordering::Relaxed);
                if acks == Acks::All {
                    stats.appended_all.fetch_add(n, Ordering::Relaxed);
                } else {
                    // acks=all producers are paced by their fsyncs; pace the others a little so
                    // that the readers can keep up with them most of the time.
                    thread::sleep(Duration::from_micros(200));
                }
            }
            Err(e) => {
                violation(v, format!("producer {p}: append failed: {e:?}"));
                break;
            }
        }
    }
    acked
}

fn read(log: &Log, r: &mut Reader, stop: &AtomicBool, stats: &Stats, v: &Violations) {
    let mut last_hw = vec![0u64; PARTITIONS as usize];
    let mut stalls_from = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut progressed = false;
        for p in 0..PARTITIONS {
            let slot = &r.positions[p as usize];
            let pos = slot.load(Ordering::Relaxed);
            let who = format!("reader {} partition {p}", r.id);
            match log.fetch(TOPIC, p, pos, 16 << 10) {
                Ok(f) => {
                    let (hw, start) = (f.high_watermark(), f.log_start_offset());
                    if start > hw || hw < last_hw[p as usize] {
                        violation(v, format!("{who}: log start {start}, high watermark {hw} (before: {})", last_hw[p as usize]));
                    }
                    last_hw[p as usize] = hw;
                    let mut next = pos;
                    for rec in f.records() {
                        let rec = match rec {
                            Ok(rec) => rec,
                            Err(e) => {
                                violation(v, format!("{who}: torn or corrupt record after offset {next}: {e:?}"));
                                break;
                            }
                        };
                        if rec.offset != next {
                            violation(v, format!("{who}: gap: read offset {} where {next} was next", rec.offset));
                        }
                        match check_record(&rec) {
                            Ok((producer, seq)) => {
                                let last = r.last_seq.insert((p, producer), seq);
                                if last.is_some_and(|l| l >= seq) {
                                    violation(
                                        v,
                                        format!("{who}: producer {producer} sequence {seq} after {last:?} at offset {}", rec.offset),
                                    );
                                }
                            }
                            Err(e) => violation(v, format!("{who}: {e}")),
                        }
                        next = rec.offset + 1;
                        stats.read.fetch_add(1, Ordering::Relaxed);
                    }
                    if next > pos {
                        if f.next_offset() != next {
                            violation(v, format!("{who}: next_offset {} after reading up to {next}", f.next_offset()));
                        }
                        slot.store(next, Ordering::Relaxed);
                        progressed = true;
                    } else if pos < hw {
                        violation(v, format!("{who}: fetch at {pos} below the high watermark {hw} returned nothing"));
                    }
                }
                Err(Error::OffsetOutOfRange { requested, log_start, high_watermark }) if requested < log_start => {
                    if log_start > high_watermark {
                        violation(v, format!("{who}: log start {log_start} above the high watermark {high_watermark}"));
                    }
                    stats.jumps.fetch_add(1, Ordering::Relaxed);
                    stats.skipped_by_retention.fetch_add(log_start - requested, Ordering::Relaxed);
                    slot.store(log_start, Ordering::Relaxed);
                    progressed = true;
                }
                Err(e) => violation(v, format!("{who}: fetch at {pos} failed: {e:?}")),
            }
        }
        if !progressed {
            thread::sleep(Duration::from_millis(1));
        }
        // Reader 1 stalls now and then, long enough for retention to delete what it has not read.
        if r.id == 1 && stalls_from.elapsed() >= Duration::from_millis(400) {
            thread::sleep(Duration::from_millis(150));
            stalls_from = Instant::now();
        }
    }
}

/// The readers' common position per partition.
fn common_positions(readers: &[Vec<Arc<AtomicU64>>]) -> Vec<u64> {
    (0..PARTITIONS as usize).map(|p| readers.iter().map(|r| r[p].load(Ordering::Relaxed)).min().unwrap_or(0)).collect()
}

fn commit(log: &Log, positions: &[u64], round: u64) -> runnel::Result<()> {
    let metadata = format!("round {round}");
    let commits: Vec<OffsetCommit<'_>> = positions
        .iter()
        .enumerate()
        .map(|(p, &offset)| OffsetCommit { topic: TOPIC, partition: p as u32, offset, metadata: &metadata })
        .collect();
    log.commit_offsets(GROUP, &commits)
}

/// Reads a whole partition after a reopen and checks it against the acknowledged records.
fn verify_partition(log: &Log, p: u32, acked: &HashMap<(u32, u64), Acked>, stats: &Stats) -> Result<(), String> {
    let start = log.log_start_offset(TOPIC, p).map_err(|e| e.to_string())?;
    let hw = log.high_watermark(TOPIC, p).map_err(|e| e.to_string())?;
    let mut at = start;
    let mut last_seq: HashMap<u32, u64> = HashMap::new();
    while at < hw {
        let f = log.fetch(TOPIC, p, at, 64 << 10).map_err(|e| format!("partition {p}: fetch at {at}: {e:?}"))?;
        let before = at;
        for rec in f.records() {
            let rec = rec.map_err(|e| format!("partition {p}: torn record after {at}: {e:?}"))?;
            if rec.offset != at {
                return Err(format!("partition {p}: offset {} where {at} was next: offsets are not contiguous", rec.offset));
            }
            let (producer, seq) = check_record(&rec).map_err(|e| format!("partition {p}: {e}"))?;
            match acked.get(&(p, rec.offset)) {
                Some(a) if (a.producer, a.seq) == (producer, seq) => {}
                other => {
                    return Err(format!("partition {p}: offset {} holds p{producer} s{seq}, acknowledged there: {other:?}", rec.offset));
                }
            }
            if last_seq.insert(producer, seq).is_some_and(|l| l >= seq) {
                return Err(format!("partition {p}: producer {producer} sequence {seq} out of order at {}", rec.offset));
            }
            at += 1;
        }
        if at == before {
            return Err(format!("partition {p}: fetch at {at} below the high watermark {hw} made no progress"));
        }
    }
    // Every record acknowledged at or above the log start is there (it was compared above), and
    // nothing else is: the acknowledged offsets above the log start are exactly [start, hw).
    let mut kept = 0u64;
    for (&(q, offset), a) in acked {
        if q != p || offset < start {
            continue;
        }
        if offset >= hw {
            return Err(format!("partition {p}: acknowledged {a:?} at offset {offset} is missing (high watermark {hw})"));
        }
        kept += 1;
        stats.verified.fetch_add(1, Ordering::Relaxed);
        if a.acks == Acks::All {
            stats.verified_all.fetch_add(1, Ordering::Relaxed);
        }
    }
    if kept != hw - start {
        return Err(format!("partition {p}: {} records in [{start}, {hw}) but {kept} acknowledged there", hw - start));
    }
    Ok(())
}

#[test]
fn producers_readers_retention_commits_and_reopens_keep_every_invariant() {
    let secs = soak_secs();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let dir = tempfile::tempdir().expect("tempdir");
    let stats = Arc::new(Stats::default());
    let mut log = Log::open(dir.path(), options()).expect("open");
    log.create_topic(TOPIC, PARTITIONS, topic_config()).expect("create topic");

    let mut next_seq = vec![0u64; PRODUCERS as usize];
    let mut readers: Vec<Reader> = (0..READERS)
        .map(|id| Reader { id, positions: (0..PARTITIONS).map(|_| Arc::new(AtomicU64::new(0))).collect(), last_seq: HashMap::new() })
        .collect();
    let mut acked: HashMap<(u32, u64), Acked> = HashMap::new();
    let mut committed: Vec<Option<u64>> = vec![None; PARTITIONS as usize];
    let mut ever_deleted = vec![false; PARTITIONS as usize];
    let mut round = 0u64;
    let mut unclean_rounds = 0;

    while round == 0 || Instant::now() < deadline {
        round += 1;
        let stop = AtomicBool::new(false);
        let violations: Violations = Arc::new(Mutex::new(Vec::new()));
        let round_len = deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(500), ROUND);
        let positions: Vec<Vec<Arc<AtomicU64>>> = readers.iter().map(|r| r.positions.clone()).collect();
        let mut last_commit = committed.clone();

        let new_acked: Vec<(u32, u64, Acked)> = thread::scope(|s| {
            let producers: Vec<_> = next_seq
                .iter_mut()
                .enumerate()
                .map(|(p, seq)| {
                    let (log, stop, stats, v) = (&log, &stop, &*stats, &violations);
                    s.spawn(move || produce(log, p as u32, seq, round, stop, stats, v))
                })
                .collect();
            for r in readers.iter_mut() {
                let (log, stop, stats, v) = (&log, &stop, &*stats, &violations);
                s.spawn(move || read(log, r, stop, stats, v));
            }
            {
                let (log, stop, stats, v) = (&log, &stop, &*stats, &violations);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match log.run_retention() {
                            Ok(n) => {
                                stats.retention_deletions.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) => violation(v, format!("run_retention failed: {e:?}")),
                        }
                        // Retention deletes a segment only while what remains is at least
                        // retention.bytes, and nothing else shrinks a partition: once a partition
                        // has lost a segment, it never holds less than retention.bytes.
                        for p in 0..PARTITIONS {
                            match log.segments(TOPIC, p) {
                                Ok(segs) => {
                                    let size: u64 = segs.iter().map(|s| s.size_bytes).sum();
                                    if segs.first().is_some_and(|s| s.base_offset > 0) && size < RETENTION_BYTES {
                                        violation(
                                            v,
                                            format!(
                                                "partition {p}: retention left {size} bytes in {} segments, below retention.bytes",
                                                segs.len()
                                            ),
                                        );
                                    }
                                }
                                Err(e) => violation(v, format!("segments failed: {e:?}")),
                            }
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                });
            }
            {
                let (log, stop, stats, v, positions, last_commit) = (&log, &stop, &*stats, &violations, &positions, &mut last_commit);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        thread::sleep(Duration::from_millis(20));
                        let common = common_positions(positions);
                        for (p, &c) in common.iter().enumerate() {
                            if last_commit[p].is_some_and(|l| c < l) {
                                violation(
                                    v,
                                    format!("partition {p}: the readers' common position {c} went back from {:?}", last_commit[p]),
                                );
                            }
                        }
                        match commit(log, &common, round) {
                            Ok(()) => {
                                stats.commits.fetch_add(1, Ordering::Relaxed);
                                for (p, &c) in common.iter().enumerate() {
                                    last_commit[p] = Some(c);
                                }
                            }
                            Err(e) => violation(v, format!("commit_offsets failed: {e:?}")),
                        }
                    }
                });
            }
            thread::sleep(round_len);
            stop.store(true, Ordering::Relaxed);
            producers.into_iter().flat_map(|h| h.join().expect("producer thread")).collect()
        });
        let v = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert!(v.is_empty(), "round {round}: violations seen by the threads: {v:#?}");
        for (partition, offset, a) in new_acked {
            assert!(
                acked.insert((partition, offset), a).is_none(),
                "round {round}: offset {offset} of partition {partition} acknowledged twice"
            );
        }

        // A final commit of where the readers stopped.
        let common = common_positions(&positions);
        commit(&log, &common, round).expect("final commit");
        for (p, &c) in common.iter().enumerate() {
            assert!(last_commit[p].is_none_or(|l| c >= l), "round {round}: commit for partition {p} went back");
            last_commit[p] = Some(c);
        }

        // Let the log settle: sync everything and apply retention until nothing more is due, so
        // that the background thread has nothing left to delete either and the log start read
        // here is the one the close leaves.
        log.sync_all().expect("sync_all");
        while log.run_retention().expect("run_retention") > 0 {}

        // Close, cleanly or as a simulated unclean stop, and reopen.
        let before: Vec<(u64, u64)> = (0..PARTITIONS)
            .map(|p| (log.log_start_offset(TOPIC, p).expect("log start"), log.log_end_offset(TOPIC, p).expect("leo")))
            .collect();
        let unclean = round.is_multiple_of(2);
        log.close().expect("close");
        if unclean {
            unclean_rounds += 1;
            for f in [CLEAN_SHUTDOWN_FILE, CHECKPOINT_FILE] {
                std::fs::remove_file(dir.path().join(f)).unwrap_or_else(|e| panic!("round {round}: removing {f}: {e}"));
            }
        }
        log = Log::open(dir.path(), options()).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e:?}"));
        let cut: Vec<_> =
            log.recovery_report().into_iter().filter(|(_, _, r)| r.bytes_quarantined > 0 || r.segments_quarantined > 0).collect();
        assert!(cut.is_empty(), "round {round}: recovery cut data after a clean close: {cut:?}");

        for p in 0..PARTITIONS {
            let (start_before, leo_before) = before[p as usize];
            let start = log.log_start_offset(TOPIC, p).expect("log start");
            let hw = log.high_watermark(TOPIC, p).expect("hw");
            assert_eq!(
                hw, leo_before,
                "round {round} (unclean: {unclean}): partition {p}: everything appended before the close is visible after it"
            );
            assert_eq!(start, start_before, "round {round}: partition {p}: the log start survives the reopen");
            if let Err(e) = verify_partition(&log, p, &acked, &stats) {
                panic!("round {round} (unclean: {unclean}): {e}");
            }
            let c = log.committed(GROUP, TOPIC, p).expect("committed").map(|c| c.offset);
            assert_eq!(c, last_commit[p as usize], "round {round}: partition {p}: the committed offset is the last one committed");
            assert!(
                committed[p as usize].is_none_or(|prev| c.is_some_and(|c| c >= prev)),
                "round {round}: partition {p}: committed offset went back from {:?} to {c:?}",
                committed[p as usize]
            );
            ever_deleted[p as usize] |= start > 0;
            let size: u64 = log.segments(TOPIC, p).expect("segments").iter().map(|s| s.size_bytes).sum();
            assert!(
                !ever_deleted[p as usize] || size >= RETENTION_BYTES,
                "round {round}: partition {p}: retention left {size} bytes, below retention.bytes ({RETENTION_BYTES})"
            );
        }
        committed = last_commit;
        // Records below the log start are gone for good: forget them.
        let starts: Vec<u64> = (0..PARTITIONS).map(|p| log.log_start_offset(TOPIC, p).expect("log start")).collect();
        acked.retain(|&(p, offset), _| offset >= starts[p as usize]);
    }
    log.close().expect("close");

    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak summary ({secs} s): {round} rounds ({unclean_rounds} with an unclean stop), {} records appended ({} acks=all), \
         {} records read by {READERS} readers ({} jumps past {} records deleted under them), {} segments deleted by the retention thread (more by the background thread), \
         {} group commits, {} checks of an acknowledged record after a reopen ({} acks=all)",
        g(&stats.appended),
        g(&stats.appended_all),
        g(&stats.read),
        g(&stats.jumps),
        g(&stats.skipped_by_retention),
        g(&stats.retention_deletions),
        g(&stats.commits),
        g(&stats.verified),
        g(&stats.verified_all),
    );
    assert!(round >= 1 && g(&stats.appended) > 0 && g(&stats.read) > 0);
}

#[test]
fn concurrent_retention_runs_never_delete_below_retention_bytes() {
    // Two threads calling run_retention next to an appender (the soak's retention thread and the
    // background thread, made deterministic enough to fail in a fraction of a second when both
    // runs delete by count from one snapshot, as they once did).
    const RETENTION: u64 = 8 << 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open");
    let mut c = TopicConfig::default();
    for (k, v) in [("segment.bytes", "1024"), ("max.message.bytes", "1024"), ("retention.bytes", "8192"), ("high.watermark", "written")] {
        c.set(k, v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
    }
    log.create_topic("r", 1, c).expect("create");
    let stop = AtomicBool::new(false);
    let violations: Violations = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(3);
    let deleted = AtomicU64::new(0);
    thread::scope(|s| {
        s.spawn(|| {
            let value = [b'x'; 100];
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = log.append("r", Some(0), &[Record::new(&value)], Acks::One) {
                    violation(&violations, format!("append failed: {e:?}"));
                    stop.store(true, Ordering::Relaxed);
                }
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match log.run_retention() {
                        Ok(n) => {
                            deleted.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) => violation(&violations, format!("run_retention failed: {e:?}")),
                    }
                    let segs = log.segments("r", 0).expect("segments");
                    let size: u64 = segs.iter().map(|s| s.size_bytes).sum();
                    let (start, hw) = (log.log_start_offset("r", 0).expect("start"), log.high_watermark("r", 0).expect("hw"));
                    if segs.first().is_some_and(|s| s.base_offset > 0) && size < RETENTION {
                        violation(
                            &violations,
                            format!("{size} bytes left in {} segments, below retention.bytes ({RETENTION})", segs.len()),
                        );
                        stop.store(true, Ordering::Relaxed);
                    }
                    if start > hw {
                        violation(&violations, format!("log start {start} above the high watermark {hw}"));
                        stop.store(true, Ordering::Relaxed);
                    }
                    if Instant::now() > deadline {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let v = violations.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(v.is_empty(), "{v:?}");
    assert!(deleted.load(Ordering::Relaxed) > 10, "retention deleted segments while the test ran");
}
