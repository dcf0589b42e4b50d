//! Acknowledged appends survive SIGKILL at random moments.
//!
//! The test binary re-executes itself (the sled pattern): with `RUNNEL_KILL9_CHILD=<dir>` set, the
//! test below runs as a child that opens `<dir>`, creates the topic if needed, and appends with
//! `Acks::All` in a loop, printing `ACK <base> <last>` and flushing stdout after each `append`
//! returns. Every record's key, value and headers are derived from its offset. The parent lets a
//! child run for a random 20-300 ms, kills it with SIGKILL (`Child::kill`), reopens the directory
//! itself (in place on even rounds; on a copy on odd rounds, so that the next child has to recover
//! the killed state on its own) and checks: every acknowledged offset is present with exactly the
//! payload derived from it; offsets are contiguous from 0 and every record decodes (nothing torn);
//! the high watermark equals the log end offset; recovery never quarantines a whole segment nor a
//! run of zeros (preallocated space); the log end offset never moves backwards between rounds; and
//! each child's first append lands exactly where the parent's recovery ended the log.
//! The next round then appends to the same directory.
//!
//! Rounds vary the batch size (1, up to 8, up to 40 records), the checkpoint interval (so the
//! recovery point moves while the child runs) and pauses between appends; every fifth round appends
//! with `Acks::One`, which is documented to survive a process crash as well (and, without an fsync
//! per append, writes many more batches before the kill). Segments are 16 KiB so kills land during
//! rolls. Kills can also land while a child is still recovering or creating the topic. 20 rounds by
//! default; `RUNNEL_TEST_SCALE=<n>` runs 20·n, on a fresh directory every 20 rounds.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Rng, clock_seed, copy_tree, env_u64, scale};
use runnel::{Acks, Header, Log, LogOptions, Record, TopicConfig};

const CHILD_ENV: &str = "RUNNEL_KILL9_CHILD";
const BATCH_ENV: &str = "RUNNEL_KILL9_MAX_BATCH";
const CHECKPOINT_ENV: &str = "RUNNEL_KILL9_CHECKPOINT_MS";
const PAUSE_ENV: &str = "RUNNEL_KILL9_PAUSE";
const ACKS_ENV: &str = "RUNNEL_KILL9_ACKS";
/// The name of the test below, which the child run selects with `--exact`.
const TEST_NAME: &str = "acknowledged_appends_survive_sigkill_at_random_moments";
const TOPIC: &str = "k9";
/// Rounds that share one data directory.
const EPOCH: usize = 20;

/// The key of the record at `offset`: null for every third offset.
fn key_of(offset: u64) -> Option<Vec<u8>> {
    (!offset.is_multiple_of(3)).then(|| format!("key-{}", offset % 17).into_bytes())
}

/// The value of the record at `offset`: `rec-<offset>` padded to a length derived from the offset.
fn value_of(offset: u64) -> Vec<u8> {
    let mut v = format!("rec-{offset}").into_bytes();
    let pad = (offset.wrapping_mul(7919) % 700) as usize;
    v.extend((0..pad).map(|i| (offset as u8).wrapping_add(i as u8)));
    v
}

type OwnedHeaders = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn headers_of(offset: u64) -> OwnedHeaders {
    match offset % 5 {
        0 => vec![(b"offset".to_vec(), Some(offset.to_string().into_bytes()))],
        1 => vec![(b"null".to_vec(), None), (b"empty".to_vec(), Some(Vec::new()))],
        _ => Vec::new(),
    }
}

fn topic_config() -> TopicConfig {
    TopicConfig {
        segment_bytes: 16 << 10,
        max_message_bytes: 64 << 10,
        index_interval_bytes: 512,
        retention_ms: None,
        ..TopicConfig::default()
    }
}

/// The child: append forever (until killed; a time cap stops orphans).
fn child(dir: &Path) {
    let max_batch = env_u64(BATCH_ENV, 1);
    let checkpoint_ms = env_u64(CHECKPOINT_ENV, 60_000);
    let pause = env_u64(PAUSE_ENV, 0) == 1;
    let acks = if env_u64(ACKS_ENV, 0) == 1 { Acks::One } else { Acks::All };
    let log = Log::open(dir, LogOptions::default().checkpoint_interval(Duration::from_millis(checkpoint_ms)))
        .unwrap_or_else(|e| panic!("child: open failed: {e}"));
    if !log.list_topics().iter().any(|t| t == TOPIC) {
        log.create_topic(TOPIC, 1, topic_config()).unwrap_or_else(|e| panic!("child: create topic failed: {e}"));
    }
    let mut rng = Rng(clock_seed());
    let started = Instant::now();
    let stdout = std::io::stdout();
    while started.elapsed() < Duration::from_secs(120) {
        let next = log.log_end_offset(TOPIC, 0).unwrap_or_else(|e| panic!("child: log end offset: {e}"));
        let n = 1 + rng.below(max_batch);
        let owned: Vec<(Option<Vec<u8>>, Vec<u8>, OwnedHeaders)> =
            (next..next + n).map(|o| (key_of(o), value_of(o), headers_of(o))).collect();
        let headers: Vec<Vec<Header<'_>>> =
            owned.iter().map(|(_, _, h)| h.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect()).collect();
        let records: Vec<Record<'_>> = owned
            .iter()
            .zip(&headers)
            .map(|((k, v, _), h)| Record { key: k.as_deref(), value: Some(v), headers: h, timestamp: None })
            .collect();
        let at = log.append(TOPIC, Some(0), &records, acks).unwrap_or_else(|e| panic!("child: append at {next} failed: {e}"));
        assert_eq!((at.base_offset, at.last_offset), (next, next + n - 1), "child: append landed elsewhere");
        let mut out = stdout.lock();
        writeln!(out, "ACK {} {}", at.base_offset, at.last_offset).expect("child: write stdout");
        out.flush().expect("child: flush stdout");
        drop(out);
        if pause && rng.below(2) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
        }
    }
}

/// Every regular file under `dir` (recursively; none when it does not exist), with its contents.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd {
            let path = e.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.push((path, bytes));
            }
        }
    }
    out
}

/// What one verification found.
struct Verified {
    log_end: u64,
    bytes_quarantined: u64,
    segments: usize,
}

/// Reopens `dir` and checks every record against the payload derived from its offset.
fn verify(dir: &Path, round: usize, max_acked: Option<u64>) -> Option<Verified> {
    let log = Log::open(dir, LogOptions::default().background_maintenance(false))
        .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL failed: {e}"));
    if !log.list_topics().iter().any(|t| t == TOPIC) {
        assert_eq!(max_acked, None, "round {round}: the topic vanished although appends to it were acknowledged");
        log.close().expect("close");
        return None;
    }
    let leo = log.log_end_offset(TOPIC, 0).expect("leo");
    let hw = log.high_watermark(TOPIC, 0).expect("hw");
    assert_eq!(log.log_start_offset(TOPIC, 0).expect("log start"), 0, "round {round}: log start");
    assert_eq!(hw, leo, "round {round}: high watermark after recovery");
    if let Some(m) = max_acked {
        assert!(leo > m, "round {round}: offset {m} was acknowledged but the log ends at {leo}");
    }
    let mut offset = 0;
    while offset < hw {
        let f = log.fetch(TOPIC, 0, offset, 256 << 10).unwrap_or_else(|e| panic!("round {round}: fetch at {offset} failed: {e}"));
        let mut expected = offset;
        for r in f.records() {
            let r = r.unwrap_or_else(|e| panic!("round {round}: record {expected} is torn: {e}"));
            assert_eq!(r.offset, expected, "round {round}: offsets are not contiguous");
            assert_eq!(r.key, key_of(expected).as_deref(), "round {round}: key of {expected}");
            assert!(r.value == Some(&value_of(expected)[..]), "round {round}: value of {expected} differs");
            let headers: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                r.headers.iter().map(|h| (h.key.to_vec(), h.value.map(<[u8]>::to_vec))).collect();
            assert_eq!(headers, headers_of(expected), "round {round}: headers of {expected}");
            expected += 1;
        }
        assert!(expected > offset, "round {round}: fetch at {offset} below {hw} returned nothing");
        assert_eq!(f.next_offset(), expected, "round {round}: next offset of the fetch at {offset}");
        offset = expected;
    }
    let (report, whole_segments) = log
        .recovery_report()
        .into_iter()
        .find(|(t, _, _)| t == TOPIC)
        .map_or((0, 0), |(_, _, r)| (r.bytes_quarantined, r.segments_quarantined));
    // A killed process leaves earlier segments intact: at most a torn tail is cut, never a segment.
    assert_eq!(whole_segments, 0, "round {round}: recovery quarantined whole segments after a process kill");
    // Zeros are preallocated space, not damage: nothing quarantined may be only zeros.
    for (name, bytes) in files_under(&dir.join("quarantine")) {
        assert!(bytes.iter().any(|&b| b != 0), "round {round}: quarantined {} holds only zeros", name.display());
    }
    let segments = log.describe_topic(TOPIC).expect("describe").partitions[0].segment_count;
    log.close().expect("close");
    Some(Verified { log_end: leo, bytes_quarantined: report, segments })
}

#[test]
fn acknowledged_appends_survive_sigkill_at_random_moments() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let rounds = 20 * scale();
    let mut dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let seed = clock_seed();
    eprintln!("kill9 seed {seed}");
    let mut rng = Rng(seed);
    let mut max_acked: Option<u64> = None;
    let mut last_end = 0u64;
    let (mut acked_batches, mut rounds_without_ack, mut rounds_with_torn_tail, mut segments) = (0usize, 0usize, 0usize, 0usize);
    let mut total_records = 0u64;
    let mut last_segments = 0usize;
    for round in 0..rounds {
        if round > 0 && round % EPOCH == 0 {
            // A fresh directory every EPOCH rounds keeps each verification (which reads everything)
            // bounded, so scaled runs cost linear time.
            total_records += last_end;
            segments += last_segments;
            dir = tempfile::tempdir().expect("tempdir");
            (max_acked, last_end) = (None, 0);
        }
        let max_batch = [1u64, 8, 40][round % 3];
        let checkpoint_ms = if round % 2 == 0 { 15 } else { 60_000 };
        let pause = u64::from(round % 4 == 3);
        // Every fifth round uses acks=1, documented to survive a process crash too: without an fsync
        // per append the child writes many more batches, so the kill lands at many more points.
        let acks_one = u64::from(round % 5 == 4);
        let mut child = Command::new(&exe)
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(BATCH_ENV, max_batch.to_string())
            .env(CHECKPOINT_ENV, checkpoint_ms.to_string())
            .env(PAUSE_ENV, pause.to_string())
            .env(ACKS_ENV, acks_one.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let mut child = KillOnDrop(child);
        let acks: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let reader = {
            let acks = acks.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = String::new();
                loop {
                    line.clear();
                    match r.read_line(&mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    // A line cut short by the kill has no newline and was never fully acknowledged.
                    // The first ack shares its line with libtest's "test <name> ... ".
                    let Some(rest) = line.strip_suffix('\n').and_then(|l| l.split_once("ACK ")).map(|(_, r)| r) else { continue };
                    let mut it = rest.split(' ').map(|x| x.parse::<u64>().expect("numeric ack"));
                    let (Some(base), Some(last)) = (it.next(), it.next()) else { panic!("bad ack line {line:?}") };
                    acks.lock().unwrap_or_else(|e| e.into_inner()).push((base, last));
                }
            })
        };
        let errors = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(281)));
        child.0.kill().expect("SIGKILL the child");
        let status = child.0.wait().expect("wait for the child");
        reader.join().expect("stdout reader");
        let stderr_text = errors.join().expect("stderr reader");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child was not killed but exited on its own ({status}); stderr:\n{stderr_text}"
        );
        let acks = std::mem::take(&mut *acks.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(&(first, _)) = acks.first() {
            assert_eq!(first, last_end, "round {round}: the child's recovery and the parent's disagree on the log end");
        }
        for w in acks.windows(2) {
            assert_eq!(w[1].0, w[0].1 + 1, "round {round}: acknowledged batches are not contiguous");
        }
        if let Some(&(_, last)) = acks.last() {
            max_acked = Some(last);
        } else {
            rounds_without_ack += 1;
        }
        acked_batches += acks.len();

        let copy;
        let verify_dir: PathBuf = if round % 2 == 0 {
            dir.path().to_path_buf()
        } else {
            copy = tempfile::tempdir().expect("tempdir");
            copy_tree(dir.path(), copy.path());
            copy.path().to_path_buf()
        };
        if let Some(v) = verify(&verify_dir, round, max_acked) {
            assert!(v.log_end >= last_end, "round {round}: the log end moved back from {last_end} to {}", v.log_end);
            last_end = v.log_end;
            rounds_with_torn_tail += usize::from(v.bytes_quarantined > 0);
            last_segments = v.segments;
        }
    }
    assert!(max_acked.is_some(), "no child acknowledged anything in the last rounds");
    total_records += last_end;
    segments += last_segments;
    eprintln!(
        "kill9: {rounds} rounds, {acked_batches} acknowledged batches, {total_records} records in {segments} segments at the end, \
         {rounds_without_ack} rounds killed before the first ack, {rounds_with_torn_tail} recoveries quarantined a torn tail"
    );
}
