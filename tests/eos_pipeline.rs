//! A consume-transform-produce pipeline killed at random moments produces exactly one result per
//! input record.
//!
//! The parent fills topic `eos-in` (3 partitions) with 2000 records in transactions of up to 40
//! records, aborting about one chunk in five (junk the pipeline must never see). The test binary
//! then re-executes itself (the sled pattern, as in kill9.rs): with `RUNNEL_EOS_CHILD=<dir>` set,
//! the test below runs as a child that is the pipeline. It creates the transactional producer
//! `pipeline-1` (fencing the previous incarnation and aborting what it left open), starts each
//! input partition at group `g`'s committed offset (`Log::committed`), and loops: read up to 6
//! records from the input partitions with read_committed, begin, send one derived record per input
//! record to `eos-out` (keyed, 2 partitions; the value names the input partition and offset), send
//! the consumer's next offsets with `send_offsets_to_transaction` (pausing now and then, so that
//! kills land while they are pending), and commit, printing `COMMITTED <next offset per input
//! partition>`; about one transaction in ten is aborted instead and its records read again. When
//! every input partition is consumed it prints `DONE` and exits.
//!
//! The parent kills the child with SIGKILL and starts it again, until it exits on its own: every
//! third round 5-150 ms after starting it (perhaps while it is still recovering), the others 0-4 ms
//! after its n-th line, n random up to 30 (so they make progress, whatever the machine's speed).
//! After every kill it reopens the directory (in place, or on a copy every other pair of rounds, so
//! that the next child has to recover the killed state itself) and checks the exactly-once
//! invariant: under read_committed, `eos-out` holds, for each input partition, one result for each
//! input record below the group's committed offset and nothing else, each with the input's value;
//! committed offsets never move back and are at least those printed; no transaction is left open.
//! At the end every input record has exactly one result, and the aborted and killed attempts left
//! duplicates that only read_uncommitted sees. `RUNNEL_TEST_SCALE=<n>` multiplies the input by n.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Rng, clock_seed, copy_tree, read_partition, scale};
use runnel::{IsolationLevel, Log, LogOptions, OffsetCommit, Record, TopicConfig, TransactionOptions, TransactionState};

const CHILD_ENV: &str = "RUNNEL_EOS_CHILD";
/// The name of the test below, which the child run selects with `--exact`.
const TEST_NAME: &str = "pipeline_killed_at_random_produces_exactly_one_result_per_input";
const INPUT: &str = "eos-in";
const INPUT_PARTITIONS: u32 = 3;
const OUTPUT: &str = "eos-out";
const OUTPUT_PARTITIONS: u32 = 2;
const GROUP: &str = "g";
const TXN_ID: &str = "pipeline-1";
/// Input records: 2000, times `RUNNEL_TEST_SCALE`.
fn records() -> usize {
    2000 * scale()
}
/// Most input records one transaction of the pipeline handles.
const MAX_PER_TXN: u64 = 6;

/// Small segments for the internal topics too, so that every open after a kill scans little.
fn options() -> LogOptions {
    LogOptions::default().offsets_topic_segment_bytes(64 << 10)
}

fn topic_config() -> TopicConfig {
    TopicConfig { segment_bytes: 16 << 10, index_interval_bytes: 256, retention_ms: None, ..TopicConfig::default() }
}

/// The result of input record `value` at `offset` of input partition `p`.
fn output_of(p: u32, offset: u64, value: &[u8]) -> Vec<u8> {
    let mut out = format!("{p}@{offset}:").into_bytes();
    out.extend_from_slice(value);
    out
}

/// (input partition, input offset, input value) of a result.
fn parse_output(v: &[u8]) -> Option<(u32, u64, Vec<u8>)> {
    let colon = v.iter().position(|&b| b == b':')?;
    let (p, offset) = std::str::from_utf8(&v[..colon]).ok()?.split_once('@')?;
    Some((p.parse().ok()?, offset.parse().ok()?, v[colon + 1..].to_vec()))
}

/// Fills the input topic: [`records`] committed records `in-<i>`, and aborted chunks of junk between
/// them. Returns the committed input records by partition and offset.
fn fill_input(dir: &Path) -> BTreeMap<(u32, u64), Vec<u8>> {
    let log = Log::open(dir, options().background_maintenance(false)).expect("open");
    log.create_topic(INPUT, INPUT_PARTITIONS, topic_config()).expect("create input");
    log.create_topic(OUTPUT, OUTPUT_PARTITIONS, topic_config()).expect("create output");
    let loader = log.transactional_producer("loader", TransactionOptions::default()).expect("loader");
    let mut rng = Rng(0x10ad);
    let (mut next, mut chunk, total) = (0, 0, records());
    while next < total {
        let p = rng.below(u64::from(INPUT_PARTITIONS)) as u32;
        let junk = rng.below(5) == 0;
        let n = (1 + rng.below(40) as usize).min(total - next);
        let values: Vec<String> = if junk {
            (0..n).map(|j| format!("junk-{chunk}-{j}")).collect()
        } else {
            (next..next + n).map(|i| format!("in-{i}")).collect()
        };
        let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v.as_bytes())).collect();
        loader.begin().expect("begin");
        loader.send(INPUT, Some(p), &records).expect("send input");
        if junk {
            loader.abort().expect("abort junk");
        } else {
            loader.commit().expect("commit input");
            next += n;
        }
        chunk += 1;
    }
    log.sync_all().expect("sync");
    let mut input = BTreeMap::new();
    let mut junk_seen = 0;
    for p in 0..INPUT_PARTITIONS {
        input.extend(read_partition(&log, INPUT, p, IsolationLevel::ReadCommitted).into_iter().map(|(o, v)| ((p, o), v)));
        junk_seen += read_partition(&log, INPUT, p, IsolationLevel::ReadUncommitted).iter().filter(|(_, v)| v.starts_with(b"junk")).count();
    }
    let mut values: Vec<&[u8]> = input.values().map(Vec::as_slice).collect();
    values.sort_unstable();
    let mut expected: Vec<Vec<u8>> = (0..total).map(|i| format!("in-{i}").into_bytes()).collect();
    expected.sort_unstable();
    assert_eq!(values, expected, "read_committed of the input is exactly the committed records");
    assert!(junk_seen > 0, "the input has aborted records for the pipeline to skip");
    drop(loader);
    log.close().expect("close");
    input
}

/// The child: the pipeline, from the group's committed offsets until the input is consumed (a
/// time cap stops orphans).
fn child(dir: &Path) {
    let log = Log::open(dir, options()).unwrap_or_else(|e| panic!("child: open failed: {e}"));
    // The producer first: creating it aborts what the previous incarnation left open, so the
    // committed offsets read next are settled.
    let producer = log
        .transactional_producer(TXN_ID, TransactionOptions::default())
        .unwrap_or_else(|e| panic!("child: creating the transactional producer failed: {e}"));
    let mut positions: Vec<u64> = (0..INPUT_PARTITIONS)
        .map(|p| match log.committed(GROUP, INPUT, p).expect("child: committed") {
            Some(c) => c.offset,
            None => log.log_start_offset(INPUT, p).expect("child: log start"),
        })
        .collect();
    let mut rng = Rng(clock_seed());
    let stdout = std::io::stdout();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        // Poll: up to `want` records, from the input partitions in turn, from a random one on.
        let want = 1 + rng.below(MAX_PER_TXN) as usize;
        let mut polled: Vec<(u32, u64, Vec<u8>)> = Vec::new();
        let mut next = positions.clone();
        let first = rng.below(u64::from(INPUT_PARTITIONS)) as u32;
        for p in (first..first + INPUT_PARTITIONS).map(|p| p % INPUT_PARTITIONS) {
            let fetched = log
                .fetch_with(INPUT, p, next[p as usize], 2 << 10, IsolationLevel::ReadCommitted)
                .unwrap_or_else(|e| panic!("child: fetch {INPUT}-{p}: {e}"));
            let mut cut = false;
            for r in fetched.records() {
                if polled.len() == want {
                    cut = true;
                    break;
                }
                let r = r.expect("child: record");
                polled.push((p, r.offset, r.value.expect("child: value").to_vec()));
                next[p as usize] = r.offset + 1;
            }
            if !cut {
                // Past aborted batches and markers too.
                next[p as usize] = fetched.next_offset();
            }
        }
        if next == positions {
            let mut out = stdout.lock();
            writeln!(out, "DONE").expect("child: write stdout");
            out.flush().expect("child: flush stdout");
            return;
        }
        // Transform and produce, with the consumer's offsets, in one transaction.
        producer.begin().expect("child: begin");
        for (p, offset, value) in &polled {
            let result = output_of(*p, *offset, value);
            producer.send(OUTPUT, None, &[Record::new(&result).with_key(value)]).unwrap_or_else(|e| panic!("child: send: {e}"));
        }
        let offsets: Vec<OffsetCommit<'_>> = (0..INPUT_PARTITIONS)
            .filter(|&p| next[p as usize] != positions[p as usize])
            .map(|p| OffsetCommit { topic: INPUT, partition: p, offset: next[p as usize], metadata: "" })
            .collect();
        producer.send_offsets_to_transaction(GROUP, &offsets).unwrap_or_else(|e| panic!("child: send offsets: {e}"));
        if rng.below(4) == 0 {
            // A slow consumer: kills often land while the offsets are pending.
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
        }
        let line = if rng.below(10) == 0 {
            producer.abort().unwrap_or_else(|e| panic!("child: abort: {e}"));
            "ABORTED".to_string()
        } else {
            producer.commit().unwrap_or_else(|e| panic!("child: commit: {e}"));
            positions = next;
            format!("COMMITTED {}", positions.iter().map(u64::to_string).collect::<Vec<_>>().join(" "))
        };
        let mut out = stdout.lock();
        writeln!(out, "{line}").expect("child: write stdout");
        out.flush().expect("child: flush stdout");
    }
}

/// What a child printed.
#[derive(Default)]
struct Printed {
    /// Next offsets per input partition after each commit that returned.
    commits: Vec<Vec<u64>>,
    aborts: usize,
    done: bool,
}

/// When the parent kills a child.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// This long after starting it (perhaps while it is still opening the log).
    FromStart(Duration),
    /// This long after its n-th line (so it is under way, whatever the machine's speed).
    AfterLines(usize, Duration),
}

/// Runs one child until `kill_at`, killing it if it has not finished. Returns what it printed and
/// whether it was killed.
fn run_child(exe: &Path, dir: &Path, round: usize, kill_at: KillAt) -> (Printed, bool) {
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let mut child = KillOnDrop(child);
    let printed: Arc<Mutex<Printed>> = Arc::default();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    let reader = {
        let printed = printed.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // A line cut short by the kill has no newline and does not count. The first line
                // starts with libtest's "test <name> ... ".
                let Some(l) = line.strip_suffix('\n') else { continue };
                let mut printed = printed.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((_, rest)) = l.split_once("COMMITTED ") {
                    printed.commits.push(rest.split(' ').map(|x| x.parse().expect("numeric offset")).collect());
                } else if l.ends_with("ABORTED") {
                    printed.aborts += 1;
                } else if l.ends_with("DONE") {
                    printed.done = true;
                }
                let _ = line_tx.send(());
            }
        })
    };
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = match kill_at {
        KillAt::FromStart(d) => Instant::now() + d,
        KillAt::AfterLines(n, d) => {
            // Stops waiting at once if the child exits first.
            for _ in 0..n {
                if line_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                    break;
                }
            }
            Instant::now() + d
        }
    };
    while Instant::now() < deadline && child.0.try_wait().expect("try_wait").is_none() {
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.0.kill();
    let status = child.0.wait().expect("wait for the child");
    reader.join().expect("stdout reader");
    let stderr_text = errors.join().expect("stderr reader");
    let killed = status.signal() == Some(libc::SIGKILL);
    assert!(killed || status.success(), "round {round}: the child failed ({status}); stderr:\n{stderr_text}");
    let printed = std::mem::take(&mut *printed.lock().unwrap_or_else(|e| e.into_inner()));
    assert!(killed || printed.done, "round {round}: the child exited without saying DONE; stderr:\n{stderr_text}");
    (printed, killed)
}

/// Reopens `dir` and checks the exactly-once invariant. Returns the group's committed offset of
/// each input partition and the number of results, committed and uncommitted.
fn verify(dir: &Path, round: usize, input: &BTreeMap<(u32, u64), Vec<u8>>) -> (Vec<u64>, usize, usize) {
    let log = Log::open(dir, options().background_maintenance(false))
        .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL failed: {e}"));
    for t in log.list_transactions() {
        assert!(
            matches!(t.state, TransactionState::Empty | TransactionState::CompleteCommit | TransactionState::CompleteAbort),
            "round {round}: transactional id {:?} is left {:?} after recovery",
            t.transactional_id,
            t.state
        );
    }
    let committed: Vec<u64> =
        (0..INPUT_PARTITIONS).map(|p| log.committed(GROUP, INPUT, p).expect("committed").map_or(0, |c| c.offset)).collect();
    let mut results: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut uncommitted = 0;
    for q in 0..OUTPUT_PARTITIONS {
        let hw = log.high_watermark(OUTPUT, q).expect("hw");
        assert_eq!(log.last_stable_offset(OUTPUT, q).expect("lso"), hw, "round {round}: {OUTPUT}-{q}: a transaction is left open");
        for (offset, v) in read_partition(&log, OUTPUT, q, IsolationLevel::ReadCommitted) {
            let (p, o, value) = parse_output(&v).unwrap_or_else(|| panic!("round {round}: {OUTPUT}-{q} offset {offset}: not a result"));
            assert_eq!(input.get(&(p, o)), Some(&value), "round {round}: {OUTPUT}-{q} offset {offset}: the result of {INPUT}-{p}@{o}");
            assert!(results.insert((p, o)), "round {round}: {INPUT}-{p}@{o} has two results (the second at {OUTPUT}-{q} offset {offset})");
        }
        uncommitted += read_partition(&log, OUTPUT, q, IsolationLevel::ReadUncommitted).len();
    }
    let expected: BTreeSet<(u32, u64)> = input.keys().filter(|&&(p, o)| o < committed[p as usize]).copied().collect();
    let missing: Vec<_> = expected.difference(&results).take(5).collect();
    let extra: Vec<_> = results.difference(&expected).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "round {round}: results vs the input below the committed offsets {committed:?}: missing {missing:?}, unexpected {extra:?}"
    );
    log.close().expect("close");
    (committed, results.len(), uncommitted)
}

#[test]
fn pipeline_killed_at_random_produces_exactly_one_result_per_input() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let input = fill_input(dir.path());
    let exe = std::env::current_exe().expect("current exe");
    let seed = clock_seed();
    eprintln!("eos_pipeline seed {seed}");
    let mut rng = Rng(seed);
    let mut committed = vec![0; INPUT_PARTITIONS as usize];
    let (mut kills, mut commits, mut aborts) = (0, 0, 0);
    let max_rounds = 400 * scale();
    for round in 0.. {
        assert!(round < max_rounds, "the pipeline did not finish in {max_rounds} rounds (committed {committed:?})");
        // A third of the rounds kill at any moment, perhaps while the child is still recovering;
        // the others once it has finished a few transactions, so that they make progress.
        let kill_at = if round % 3 == 0 {
            KillAt::FromStart(Duration::from_millis(5 + rng.below(146)))
        } else {
            KillAt::AfterLines(1 + rng.below(30) as usize, Duration::from_micros(rng.below(4000)))
        };
        let (printed, killed) = run_child(&exe, dir.path(), round, kill_at);
        kills += usize::from(killed);
        commits += printed.commits.len();
        aborts += printed.aborts;
        let copy;
        let verify_dir: PathBuf = if round % 4 < 2 {
            dir.path().to_path_buf()
        } else {
            copy = tempfile::tempdir().expect("tempdir");
            copy_tree(dir.path(), copy.path());
            copy.path().to_path_buf()
        };
        let (now, results, uncommitted) = verify(&verify_dir, round, &input);
        for p in 0..INPUT_PARTITIONS as usize {
            assert!(
                now[p] >= committed[p],
                "round {round}: the committed offset of {INPUT}-{p} moved back from {} to {}",
                committed[p],
                now[p]
            );
            if let Some(last) = printed.commits.last() {
                assert!(
                    now[p] >= last[p],
                    "round {round}: {INPUT}-{p}: committed offset {} is behind the last commit printed, {}",
                    now[p],
                    last[p]
                );
            }
        }
        committed = now;
        if !killed {
            let ends: Vec<u64> =
                (0..INPUT_PARTITIONS).map(|p| input.keys().filter(|k| k.0 == p).map(|k| k.1 + 1).max().unwrap_or(0)).collect();
            for p in 0..INPUT_PARTITIONS as usize {
                assert!(committed[p] >= ends[p], "the child said DONE but {INPUT}-{p} is committed up to {} only", committed[p]);
            }
            assert_eq!(results, input.len(), "every input record has exactly one result");
            assert!(uncommitted > results, "aborted and killed transactions left results only read_uncommitted sees");
            eprintln!(
                "eos_pipeline: {} inputs, {} rounds ({kills} killed), {commits} commits and {aborts} aborts returned, \
                 {results} results committed, {} duplicates hidden from read_committed",
                input.len(),
                round + 1,
                uncommitted - results
            );
            return;
        }
    }
}
