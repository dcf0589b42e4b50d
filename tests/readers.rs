//! Readers in other processes follow a writer process exactly.
//!
//! The test binary re-executes itself (the sled pattern, as in kill9.rs): with
//! `RUNNEL_READERS_ROLE=writer` the `child_process` test below appends records to topic `f` of
//! the directory in `RUNNEL_READERS_DIR` as fast as it can, in batches of 1 to 8, printing
//! `ACK <last offset>` after each append returns; with `RUNNEL_READERS_ROLE=reader` it opens the
//! directory read-only, prints `READY`, follows partition 0 with `fetch_wait` until it has read
//! `RUNNEL_READERS_COUNT` records, checking that each record has the next offset and exactly the
//! payload the writer derives from that offset, and prints `SAW <n>` at the end. Without the role
//! variable that test does nothing.
//!
//! - `readers_follow_a_writer_at_full_speed`: two reader processes follow a writer process with
//!   acks=1 (visible when written), acks=1 (visible when synced) and acks=all, on small segments
//!   that roll constantly; one run also applies retention under the readers (retention.bytes far
//!   above what a reader lags by). Each reader must see exactly offsets 0..N in order with the right
//!   payloads: no gap, no duplicate, nothing torn.
//! - `a_killed_writer_leaves_readers_a_prefix_and_a_new_writer_continues`: a reader (a thread of
//!   this process, the writer being another process) follows an acks=all writer that is killed
//!   with SIGKILL at a random moment. What it saw is a prefix of what the writer acknowledged (plus
//!   at most the batch in flight); a new writer recovers the directory, appends more, and the same
//!   read-only handle reads on without reopening.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Rng, TestResult, config, env_u64, scale};
use runnel::{Acks, IsolationLevel, Log, LogOptions, Record};

const ROLE: &str = "RUNNEL_READERS_ROLE";
const DIR: &str = "RUNNEL_READERS_DIR";
const COUNT: &str = "RUNNEL_READERS_COUNT";
const ACKS: &str = "RUNNEL_READERS_ACKS";
const RETENTION: &str = "RUNNEL_READERS_RETENTION";
const TOPIC: &str = "f";

fn value_of(offset: u64) -> Vec<u8> {
    let mut v = format!("r{offset}:").into_bytes();
    let pad = (offset.wrapping_mul(2_654_435_761) % 180) as usize;
    v.extend((0..pad).map(|i| (offset as u8) ^ (i as u8)));
    v
}

fn writer(dir: &Path) {
    let count = env_u64(COUNT, 0);
    let acks = match env_u64(ACKS, 0) {
        2 => Acks::All,
        _ => Acks::One,
    };
    let retention = env_u64(RETENTION, 0) == 1;
    let log = Log::open(dir, LogOptions::default()).unwrap_or_else(|e| panic!("writer: open: {e}"));
    let mut rng = Rng(u64::from(std::process::id()));
    let out = std::io::stdout();
    let mut next = log.log_end_offset(TOPIC, 0).unwrap_or_else(|e| panic!("writer: {e}"));
    let started = Instant::now();
    let mut appends = 0u64;
    while (count == 0 || next < count) && started.elapsed() < Duration::from_secs(120) {
        let n = (1 + rng.below(8)).min(if count == 0 { u64::MAX } else { count - next });
        let vals: Vec<Vec<u8>> = (next..next + n).map(value_of).collect();
        let recs: Vec<Record<'_>> = vals.iter().map(|v| Record::new(v)).collect();
        let at = log.append(TOPIC, Some(0), &recs, acks).unwrap_or_else(|e| panic!("writer: append at {next}: {e}"));
        assert_eq!(at.base_offset, next, "writer: append landed elsewhere");
        next += n;
        appends += 1;
        if count == 0 {
            let mut o = out.lock();
            writeln!(o, "ACK {}", at.last_offset).expect("stdout");
            o.flush().expect("stdout");
        }
        if retention && appends.is_multiple_of(64) {
            log.run_retention().unwrap_or_else(|e| panic!("writer: retention: {e}"));
            // Retention must not outrun the readers: they are checked for gaps, not for keeping up.
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    log.close().unwrap_or_else(|e| panic!("writer: close: {e}"));
    println!("DONE {next}");
}

/// Follows partition 0 from offset 0 until `count` records were read, checking each. Returns how
/// many were read, or a description of the first violation.
fn follow(log: &Log, from: u64, count: u64, deadline: Instant) -> Result<u64, String> {
    let mut next = from;
    while next < count {
        if Instant::now() > deadline {
            return Err(format!("timed out at offset {next} of {count}"));
        }
        let f = log
            .fetch_wait(TOPIC, 0, next, 64 << 10, IsolationLevel::ReadUncommitted, Duration::from_millis(500))
            .map_err(|e| format!("fetch at {next}: {e}"))?;
        for r in f.records() {
            let r = r.map_err(|e| format!("record after {next}: {e}"))?;
            if r.offset != next {
                return Err(format!("expected offset {next}, got {}", r.offset));
            }
            if r.value != Some(&value_of(next)[..]) {
                return Err(format!("offset {next}: payload differs (torn or foreign)"));
            }
            next += 1;
        }
    }
    Ok(next)
}

fn reader(dir: &Path) {
    let count = env_u64(COUNT, 0);
    let log = Log::open_read_only(dir, LogOptions::default()).unwrap_or_else(|e| panic!("reader: open: {e}"));
    println!("READY");
    std::io::stdout().flush().expect("stdout");
    match follow(&log, 0, count, Instant::now() + Duration::from_secs(120)) {
        Ok(n) => println!("SAW {n}"),
        Err(e) => println!("VIOLATION {e}"),
    }
}

#[test]
fn child_process() {
    let Ok(role) = std::env::var(ROLE) else { return };
    let dir = std::env::var(DIR).expect("RUNNEL_READERS_DIR");
    match role.as_str() {
        "writer" => writer(Path::new(&dir)),
        "reader" => reader(Path::new(&dir)),
        other => panic!("unknown role {other}"),
    }
}

fn spawn(role: &str, dir: &Path, count: u64, acks: u64, retention: bool) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .env(COUNT, count.to_string())
        .env(ACKS, acks.to_string())
        .env(RETENTION, if retention { "1" } else { "0" })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

fn prepare(dir: &Path, retention: bool, high_watermark: &str) -> TestResult {
    let log = Log::open(dir, LogOptions::default())?;
    let mut entries = vec![("segment.bytes", "16384"), ("index.interval.bytes", "1024"), ("high.watermark", high_watermark)];
    if retention {
        entries.push(("retention.bytes", "4194304"));
    }
    log.create_topic(TOPIC, 1, config(&entries))?;
    log.close()?;
    Ok(())
}

/// Lines a child printed, each as it comes, until it exits.
fn lines(child: &mut Child) -> Vec<String> {
    let Some(out) = child.stdout.take() else { return Vec::new() };
    BufReader::new(out).lines().map_while(Result::ok).collect()
}

#[test]
fn readers_follow_a_writer_at_full_speed() -> TestResult {
    // (acks, high watermark, retention): acks=1 visible when written, acks=1 visible when
    // synced, acks=all, and acks=1 with retention deleting segments under the readers.
    let runs: [(u64, &str, bool, u64); 4] =
        [(1, "written", false, 60_000), (1, "durable", false, 40_000), (2, "durable", false, 4_000), (1, "written", true, 120_000)];
    for (acks, hw, retention, n) in runs {
        let n = n * scale() as u64;
        let dir = tempfile::tempdir()?;
        prepare(dir.path(), retention, hw)?;
        let mut readers: Vec<Child> = (0..2).map(|_| spawn("reader", dir.path(), n, acks, retention)).collect::<Result<_, _>>()?;
        // Start the writer once both readers are attached, so they see it all happen.
        let mut outs = Vec::new();
        for r in &mut readers {
            let out = r.stdout.take().ok_or("no stdout")?;
            let mut br = BufReader::new(out);
            let mut line = String::new();
            // libtest prints its own lines first.
            while !line.contains("READY") {
                line.clear();
                if br.read_line(&mut line)? == 0 {
                    return Err("a reader exited before it was ready".into());
                }
            }
            outs.push(br);
        }
        let t0 = Instant::now();
        let mut w = spawn("writer", dir.path(), n, acks, retention)?;
        let wl = lines(&mut w);
        assert!(w.wait()?.success(), "writer failed: {wl:?}");
        assert!(wl.iter().any(|l| l.contains(&format!("DONE {n}"))), "writer said {wl:?}");
        let wrote = t0.elapsed();
        for (mut r, br) in readers.into_iter().zip(outs) {
            let rest: Vec<String> = br.lines().map_while(Result::ok).collect();
            assert!(r.wait()?.success(), "reader failed: {rest:?}");
            assert!(
                rest.iter().any(|l| l.contains(&format!("SAW {n}"))),
                "acks={acks} hw={hw} retention={retention}: reader reported {rest:?}"
            );
        }
        if retention {
            let log = Log::open_read_only(dir.path(), LogOptions::default())?;
            assert!(log.log_start_offset(TOPIC, 0)? > 0, "retention deleted nothing under the readers");
        }
        eprintln!("acks={acks} hw={hw} retention={retention}: {n} records followed by 2 reader processes (writer {wrote:?})");
    }
    Ok(())
}

#[test]
fn a_killed_writer_leaves_readers_a_prefix_and_a_new_writer_continues() -> TestResult {
    let rounds = 3 * scale();
    let mut rng = Rng(0x5eed ^ u64::from(std::process::id()));
    for round in 0..rounds {
        let dir = tempfile::tempdir()?;
        prepare(dir.path(), false, "durable")?;
        let reader = Log::open_read_only(dir.path(), LogOptions::default())?;
        let mut w = spawn("writer", dir.path(), 0, 2, false)?;
        let out = w.stdout.take().ok_or("no stdout")?;
        let acked = std::thread::spawn(move || -> Option<u64> {
            BufReader::new(out).lines().map_while(Result::ok).filter_map(|l| l.strip_prefix("ACK ").and_then(|x| x.parse().ok())).last()
        });
        // Follow while the writer runs, then kill it mid-stream.
        let kill_at = Instant::now() + Duration::from_millis(100 + rng.below(300));
        let mut seen = 0u64;
        while Instant::now() < kill_at {
            let f = reader.fetch_wait(TOPIC, 0, seen, 64 << 10, IsolationLevel::ReadUncommitted, Duration::from_millis(20))?;
            for r in f.records() {
                let r = r?;
                assert_eq!(r.offset, seen, "round {round}");
                assert_eq!(r.value, Some(&value_of(seen)[..]), "round {round}: offset {seen}");
                seen += 1;
            }
        }
        w.kill()?;
        w.wait()?;
        let last_acked = acked.join().map_err(|_| "stdout thread panicked")?;
        // What the reader saw is durable (acks=all: the high watermark only covers fsync'd data),
        // and at most the batch in flight (8 records) beyond the last acknowledgement.
        let acked_end = last_acked.map_or(0, |a| a + 1);
        assert!(seen <= acked_end + 8, "round {round}: reader saw {seen} records, writer acknowledged {acked_end}");
        assert!(seen > 0, "round {round}: the reader saw nothing in the time the writer ran");
        // Readers are not stuck: the same handle keeps reading once a new writer recovered.
        let log = Log::open(dir.path(), LogOptions::default())?;
        let hw = log.high_watermark(TOPIC, 0)?;
        assert!(hw >= acked_end && hw >= seen, "round {round}: recovery kept {hw}, acknowledged {acked_end}, seen {seen}");
        for o in hw..hw + 100 {
            log.append(TOPIC, Some(0), &[Record::new(&value_of(o))], Acks::One)?;
        }
        log.sync_all()?;
        let end = follow(&reader, seen, hw + 100, Instant::now() + Duration::from_secs(30)).map_err(|e| format!("round {round}: {e}"))?;
        assert_eq!(end, hw + 100);
        log.close()?;
        eprintln!("round {round}: reader saw {seen} before the kill, writer acknowledged {acked_end}, recovered {hw}");
    }
    Ok(())
}
