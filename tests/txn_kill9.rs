//! Transactions are all-or-nothing across SIGKILL at random moments.
//!
//! The test binary re-executes itself (the sled pattern, as in kill9.rs): with
//! `RUNNEL_TXN_KILL9_CHILD=<dir>` set, the test below runs as a child that opens `<dir>` and runs
//! numbered transactions through one transactional producer, one after another, over 2 topics
//! with 5 partitions in all: each writes a few batches to partitions its number picks, sends
//! offsets of group `k9-group` for all 5 partitions (naming the transaction in the metadata), and
//! commits, or aborts about one in five (the number decides). After `commit` or `abort` returns
//! the child prints `COMMITTED <n>` or `ABORTED <n>` and flushes stdout. Every record's value is
//! derived from (transaction number, index, record count of the transaction), so a reader can tell
//! whether a transaction is whole. Every third round a second producer opens a transaction at the
//! start, writes to every partition now and then, and never commits it: it holds every partition's
//! last stable offset back until the kill. Every fourth round pauses between sends, so that more
//! kills land inside a transaction; every other round writes recovery-point checkpoints often.
//!
//! The parent kills the child with SIGKILL after a random 20-300 ms, reopens the directory (in
//! place on even rounds; on a copy on odd rounds, so that the next child has to recover the killed
//! state itself) and checks:
//! - no transaction hangs: on every partition the last stable offset equals the high watermark (and
//!   the log end), also on the internal topics, and no transactional id is left `Ongoing` or
//!   `Prepare*`;
//! - every transaction visible to read_committed is whole: exactly its records, each once, in the
//!   partitions and order its number gives, and nothing torn even under read_uncommitted;
//! - of this round's transactions, exactly those whose `COMMITTED` line was printed are visible,
//!   plus at most the one in flight at the kill (its commit may have become durable without
//!   returning); no aborted one and nothing of the never-committed producer is;
//! - earlier rounds' visible transactions stay exactly as they were;
//! - the group's committed offsets (offset and metadata, on all 5 partitions) are those of the last
//!   visible transaction, or absent when none is.
//!
//! Segments are 16 KiB (rolls write producer-state snapshots) and `__consumer_offsets` is as small
//! as allowed, with bulky metadata, so its snapshots run while transactional offsets are pending.
//! 50 rounds by default, `RUNNEL_TEST_SCALE=<n>` runs 50·n, on a fresh directory every 25 rounds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{KillOnDrop, Rng, clock_seed, copy_tree, env_u64, read_partition, scale};
use runnel::{
    CONSUMER_OFFSETS_TOPIC, IsolationLevel, Log, LogOptions, OffsetCommit, Record, TRANSACTION_STATE_TOPIC, TopicConfig,
    TransactionOptions, TransactionState,
};

const CHILD_ENV: &str = "RUNNEL_TXN_KILL9_CHILD";
const FIRST_ENV: &str = "RUNNEL_TXN_KILL9_FIRST";
const DANGLING_ENV: &str = "RUNNEL_TXN_KILL9_DANGLING";
const PAUSE_ENV: &str = "RUNNEL_TXN_KILL9_PAUSE";
const CHECKPOINT_ENV: &str = "RUNNEL_TXN_KILL9_CHECKPOINT_MS";
/// The name of the test below, which the child run selects with `--exact`.
const TEST_NAME: &str = "transactions_are_whole_or_absent_after_sigkill_at_random_moments";
/// The 5 partitions the transactions write to.
const PARTS: [(&str, u32); 5] = [("ta", 0), ("ta", 1), ("tb", 0), ("tb", 1), ("tb", 2)];
const GROUP: &str = "k9-group";
const MAIN_ID: &str = "k9-main";
const DANGLING_ID: &str = "k9-dangling";
/// Round `r` numbers its transactions from `r * ROUND_SPAN + 1`; its never-committed transaction
/// is `r * ROUND_SPAN + DANGLING`.
const ROUND_SPAN: u64 = 1_000_000;
const DANGLING: u64 = 900_000;
/// Rounds that share one data directory.
const EPOCH: usize = 25;

/// One send of a transaction: records `first..first + count` of the transaction, as one batch to
/// `PARTS[part]`.
struct Send {
    part: usize,
    first: u32,
    count: u32,
}

/// The sends of transaction `n`: 1 to 4 batches of 1 to 6 records to partitions its number picks.
fn plan(n: u64) -> Vec<Send> {
    let mut rng = Rng(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x0074_786e);
    let mut first = 0;
    (0..1 + rng.below(4))
        .map(|_| {
            let s = Send { part: rng.below(PARTS.len() as u64) as usize, first, count: 1 + rng.below(6) as u32 };
            first += s.count;
            s
        })
        .collect()
}

fn record_count(n: u64) -> u32 {
    plan(n).iter().map(|s| s.count).sum()
}

/// Whether the child aborts transaction `n` (about one in five) rather than committing it.
fn aborts(n: u64) -> bool {
    Rng(n ^ 0xab07_ab07).below(5) == 0
}

fn is_dangling(n: u64) -> bool {
    n % ROUND_SPAN >= DANGLING
}

/// The value of record `i` of transaction `n`, which has `total` records (0 for the
/// never-committed transaction, whose size is open-ended): a readable head, then padding.
fn value_of(n: u64, i: u32, total: u32) -> Vec<u8> {
    let mut v = format!("txn-{n}-{i}/{total}|").into_bytes();
    let pad = (n.wrapping_mul(31).wrapping_add(u64::from(i) * 7919) % 400) as usize;
    v.extend((0..pad).map(|j| (n as u8).wrapping_add(i as u8).wrapping_add(j as u8)));
    v
}

/// (transaction, index, total) of a value, if it is exactly a value [`value_of`] makes.
fn parse_value(v: &[u8]) -> Option<(u64, u32, u32)> {
    let bar = v.iter().position(|&b| b == b'|')?;
    let head = std::str::from_utf8(&v[..bar]).ok()?.strip_prefix("txn-")?;
    let (n, rest) = head.split_once('-')?;
    let (i, total) = rest.split_once('/')?;
    let (n, i, total) = (n.parse().ok()?, i.parse().ok()?, total.parse().ok()?);
    (value_of(n, i, total) == v).then_some((n, i, total))
}

/// The offset transaction `n` commits for the group on `PARTS[k]`.
fn group_offset(n: u64, k: usize) -> u64 {
    n * 10 + k as u64
}

/// The commit metadata of transaction `n`: its number, padded so that `__consumer_offsets` fills
/// quickly and snapshots while transactions are pending.
fn group_metadata(n: u64) -> String {
    format!("txn {n} {}", "m".repeat((n % 64) as usize * 12))
}

fn send_group_offsets(producer: &runnel::TransactionalProducer, n: u64) -> runnel::Result<()> {
    let metadata = group_metadata(n);
    let offsets: Vec<OffsetCommit<'_>> = PARTS
        .iter()
        .enumerate()
        .map(|(k, &(topic, partition))| OffsetCommit { topic, partition, offset: group_offset(n, k), metadata: &metadata })
        .collect();
    producer.send_offsets_to_transaction(GROUP, &offsets)
}

fn child_options() -> LogOptions {
    LogOptions::default().checkpoint_interval(Duration::from_millis(env_u64(CHECKPOINT_ENV, 60_000))).offsets_topic_segment_bytes(64 << 10)
}

fn topic_config() -> TopicConfig {
    TopicConfig { segment_bytes: 16 << 10, index_interval_bytes: 512, retention_ms: None, ..TopicConfig::default() }
}

/// The child: run transactions until killed (a time cap stops orphans).
fn child(dir: &Path) {
    let first = env_u64(FIRST_ENV, 1);
    let pause = env_u64(PAUSE_ENV, 0) == 1;
    let log = Log::open(dir, child_options()).unwrap_or_else(|e| panic!("child: open failed: {e}"));
    let producer = log
        .transactional_producer(MAIN_ID, TransactionOptions::default())
        .unwrap_or_else(|e| panic!("child: creating the transactional producer failed: {e}"));
    let send = |p: &runnel::TransactionalProducer, k: usize, values: &[Vec<u8>]| {
        let records: Vec<Record<'_>> = values.iter().map(|v| Record::new(v)).collect();
        let (topic, partition) = PARTS[k];
        p.send(topic, Some(partition), &records).unwrap_or_else(|e| panic!("child: send to {topic}-{partition} failed: {e}"));
    };
    // The never-committed transaction: open on every partition and in the group before the first
    // transaction of the main producer, and growing now and then.
    let dangling_n = first - 1 + DANGLING;
    let mut dangling_index = 0;
    let dangling = (env_u64(DANGLING_ENV, 0) == 1).then(|| {
        let p = log
            .transactional_producer(DANGLING_ID, TransactionOptions::default())
            .unwrap_or_else(|e| panic!("child: creating the never-committing producer failed: {e}"));
        p.begin().expect("child: begin the never-committed transaction");
        for k in 0..PARTS.len() {
            send(&p, k, &[value_of(dangling_n, dangling_index, 0)]);
            dangling_index += 1;
        }
        send_group_offsets(&p, dangling_n).expect("child: offsets in the never-committed transaction");
        p
    });
    let mut rng = Rng(clock_seed());
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut n = first;
    while started.elapsed() < Duration::from_secs(120) {
        let total = record_count(n);
        producer.begin().unwrap_or_else(|e| panic!("child: begin {n} failed: {e}"));
        for s in plan(n) {
            let values: Vec<Vec<u8>> = (s.first..s.first + s.count).map(|i| value_of(n, i, total)).collect();
            send(&producer, s.part, &values);
            if pause && rng.below(2) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(2000)));
            }
        }
        send_group_offsets(&producer, n).unwrap_or_else(|e| panic!("child: offsets of {n} failed: {e}"));
        let word = if aborts(n) {
            producer.abort().unwrap_or_else(|e| panic!("child: abort {n} failed: {e}"));
            "ABORTED"
        } else {
            producer.commit().unwrap_or_else(|e| panic!("child: commit {n} failed: {e}"));
            "COMMITTED"
        };
        let mut out = stdout.lock();
        writeln!(out, "{word} {n}").expect("child: write stdout");
        out.flush().expect("child: flush stdout");
        drop(out);
        if let Some(p) = &dangling
            && rng.below(3) == 0
        {
            send(p, rng.below(PARTS.len() as u64) as usize, &[value_of(dangling_n, dangling_index, 0)]);
            dangling_index += 1;
        }
        n += 1;
    }
}

/// What one verification found.
struct Verified {
    /// Transactions visible to read_committed.
    visible: BTreeSet<u64>,
    /// Records present but hidden from read_committed (aborted, never committed, or cut off).
    hidden_records: usize,
    /// The log start offset of `__consumer_offsets` (above 0 once a snapshot has trimmed it).
    offsets_log_start: u64,
}

/// Reopens `dir`, checks the invariants that hold whatever the child did, and returns the
/// transactions visible to read_committed.
fn verify(dir: &Path, round: usize) -> Verified {
    let log = Log::open(dir, LogOptions::default().background_maintenance(false))
        .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL failed: {e}"));
    for t in log.list_transactions() {
        assert!(
            matches!(t.state, TransactionState::Empty | TransactionState::CompleteCommit | TransactionState::CompleteAbort),
            "round {round}: transactional id {:?} is left {:?} after recovery",
            t.transactional_id,
            t.state
        );
    }
    for topic in [CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC] {
        let (lso, hw) = (log.last_stable_offset(topic, 0).expect("lso"), log.high_watermark(topic, 0).expect("hw"));
        assert_eq!(lso, hw, "round {round}: {topic}: a transaction is left open after recovery");
    }
    let offsets_log_start = log.log_start_offset(CONSUMER_OFFSETS_TOPIC, 0).expect("log start");
    // Every visible record, by transaction: (partition, index, total) in the order read.
    let mut by_txn: BTreeMap<u64, Vec<(usize, u32, u32)>> = BTreeMap::new();
    let mut hidden_records = 0;
    for (k, &(topic, p)) in PARTS.iter().enumerate() {
        let (lso, hw, leo) = (
            log.last_stable_offset(topic, p).expect("lso"),
            log.high_watermark(topic, p).expect("hw"),
            log.log_end_offset(topic, p).expect("leo"),
        );
        assert_eq!((lso, hw), (leo, leo), "round {round}: {topic}-{p} after recovery: (last stable offset, high watermark) vs log end");
        let all = read_partition(&log, topic, p, IsolationLevel::ReadUncommitted);
        for (offset, v) in &all {
            assert!(parse_value(v).is_some(), "round {round}: {topic}-{p} offset {offset} holds a value no transaction wrote");
        }
        let committed = read_partition(&log, topic, p, IsolationLevel::ReadCommitted);
        hidden_records += all.len() - committed.len();
        let mut last: Option<(u64, u32)> = None;
        for (offset, v) in &committed {
            let (n, i, total) = parse_value(v).expect("checked above");
            assert!(
                last.is_none_or(|l| l < (n, i)),
                "round {round}: {topic}-{p} offset {offset}: record {i} of transaction {n} follows {last:?}"
            );
            last = Some((n, i));
            by_txn.entry(n).or_default().push((k, i, total));
        }
    }
    for (&n, seen) in &by_txn {
        assert!(!is_dangling(n), "round {round}: the never-committed transaction {n} is visible: {seen:?}");
        assert!(!aborts(n), "round {round}: aborted transaction {n} is visible: {seen:?}");
        let mut expected: Vec<(usize, u32, u32)> = Vec::new();
        let total = record_count(n);
        for s in plan(n) {
            expected.extend((s.first..s.first + s.count).map(|i| (s.part, i, total)));
        }
        let mut seen = seen.clone();
        seen.sort_unstable_by_key(|&(_, i, _)| i);
        assert_eq!(seen, expected, "round {round}: transaction {n} is not whole: (partition, index, total) read vs written");
    }
    // The group's offsets are those of the last visible transaction (they commit with it).
    let last_visible = by_txn.keys().next_back().copied();
    for (k, &(topic, p)) in PARTS.iter().enumerate() {
        let got = log.committed(GROUP, topic, p).expect("committed").map(|c| (c.offset, c.metadata));
        let want = last_visible.map(|n| (group_offset(n, k), group_metadata(n)));
        assert_eq!(got, want, "round {round}: committed offset of {GROUP} on {topic}-{p} (last visible transaction {last_visible:?})");
    }
    log.close().expect("close");
    Verified { visible: by_txn.into_keys().collect(), hidden_records, offsets_log_start }
}

/// A fresh data directory with the two topics.
fn fresh_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Log::open(dir.path(), LogOptions::default().background_maintenance(false)).expect("open");
    log.create_topic("ta", 2, topic_config()).expect("create ta");
    log.create_topic("tb", 3, topic_config()).expect("create tb");
    log.close().expect("close");
    dir
}

/// Runs one child for `run_for`, kills it, and returns the `(committed, n)` lines it printed.
fn run_child(exe: &Path, dir: &Path, round: usize, first: u64, run_for: Duration) -> Vec<(bool, u64)> {
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env(FIRST_ENV, first.to_string())
        .env(DANGLING_ENV, u64::from(round % 3 == 2).to_string())
        .env(PAUSE_ENV, u64::from(round % 4 == 1).to_string())
        .env(CHECKPOINT_ENV, if round.is_multiple_of(2) { "15" } else { "60000" })
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let mut child = KillOnDrop(child);
    let lines: Arc<Mutex<Vec<(bool, u64)>>> = Arc::default();
    let reader = {
        let lines = lines.clone();
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
                let words: Vec<&str> = l.split_whitespace().collect();
                let [.., word, n] = words[..] else { continue };
                let committed = match word {
                    "COMMITTED" => true,
                    "ABORTED" => false,
                    _ => continue,
                };
                let n = n.parse().unwrap_or_else(|_| panic!("bad line {line:?}"));
                lines.lock().unwrap_or_else(|e| e.into_inner()).push((committed, n));
            }
        })
    };
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    std::thread::sleep(run_for);
    child.0.kill().expect("SIGKILL the child");
    let status = child.0.wait().expect("wait for the child");
    reader.join().expect("stdout reader");
    let stderr_text = errors.join().expect("stderr reader");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "round {round}: the child was not killed but exited on its own ({status}); stderr:\n{stderr_text}"
    );
    std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()))
}

#[test]
fn transactions_are_whole_or_absent_after_sigkill_at_random_moments() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
        return;
    }
    let rounds = 50 * scale();
    let exe = std::env::current_exe().expect("current exe");
    let seed = clock_seed();
    eprintln!("txn_kill9 seed {seed}");
    let mut rng = Rng(seed);
    let mut dir = fresh_dir();
    // Transactions of earlier rounds (of this directory) found visible.
    let mut known: BTreeSet<u64> = BTreeSet::new();
    let (mut committed_lines, mut aborted_lines, mut completed_by_recovery, mut dangling_rounds) = (0, 0, 0, 0);
    // Visible transactions and hidden records of the directories done with, and of the current one.
    let (mut visible_total, mut hidden_total, mut hidden) = (0, 0, 0);
    // Rounds after which `__consumer_offsets` had been trimmed by a snapshot.
    let (mut offsets_snapshots, mut offsets_log_start) = (0, 0);
    for round in 0..rounds {
        if round > 0 && round % EPOCH == 0 {
            // A fresh directory now and then keeps each verification (which reads everything) bounded.
            visible_total += known.len();
            hidden_total += hidden;
            dir = fresh_dir();
            known.clear();
            offsets_log_start = 0;
        }
        let first = round as u64 * ROUND_SPAN + 1;
        let lines = run_child(&exe, dir.path(), round, first, Duration::from_millis(20 + rng.below(281)));
        dangling_rounds += usize::from(round % 3 == 2);
        for (i, &(committed, n)) in lines.iter().enumerate() {
            assert_eq!(n, first + i as u64, "round {round}: the child's transactions are not numbered in sequence: {lines:?}");
            assert_eq!(committed, !aborts(n), "round {round}: transaction {n} was {}", if committed { "committed" } else { "aborted" });
        }
        committed_lines += lines.iter().filter(|l| l.0).count();
        aborted_lines += lines.iter().filter(|l| !l.0).count();

        let copy;
        let verify_dir: PathBuf = if round % 2 == 0 {
            dir.path().to_path_buf()
        } else {
            copy = tempfile::tempdir().expect("tempdir");
            copy_tree(dir.path(), copy.path());
            copy.path().to_path_buf()
        };
        let v = verify(&verify_dir, round);
        hidden = v.hidden_records;
        offsets_snapshots += usize::from(v.offsets_log_start > offsets_log_start);
        offsets_log_start = v.offsets_log_start;
        let (earlier, this_round): (BTreeSet<u64>, BTreeSet<u64>) = v.visible.iter().partition(|&&n| n < first);
        assert_eq!(earlier, known, "round {round}: the transactions of earlier rounds visible before and after this round differ");
        // This round: every printed commit, plus perhaps the transaction in flight at the kill.
        let next = first + lines.len() as u64;
        let mut expected: BTreeSet<u64> = lines.iter().filter(|l| l.0).map(|l| l.1).collect();
        let in_flight = this_round.contains(&next);
        if in_flight {
            expected.insert(next);
            completed_by_recovery += 1;
        }
        assert_eq!(
            this_round, expected,
            "round {round}: visible transactions vs the committed ones printed (the child was killed during transaction {next})"
        );
        known.extend(this_round);
    }
    visible_total += known.len();
    hidden_total += hidden;
    assert!(committed_lines > 0, "no child committed anything");
    eprintln!(
        "txn_kill9: {rounds} rounds ({dangling_rounds} with a never-committed transaction), {committed_lines} commits and \
         {aborted_lines} aborts returned, {completed_by_recovery} commits in flight at the kill found durable, \
         {visible_total} transactions visible and {hidden_total} records hidden from read_committed at the end, \
         {offsets_snapshots} rounds snapshotted {CONSUMER_OFFSETS_TOPIC}"
    );
}
