//! The shared read-write mode against the exclusive one, and several processes appending at once.
//!
//! Not a criterion benchmark: it needs several processes. This binary re-executes itself as an
//! appender (`--appender DIR MODE AMOUNT BATCH ACKS PARTITION`): it opens DIR in MODE
//! (`exclusive` or `shared`), waits for a line on stdin (so that every appender starts at once),
//! appends 100-byte records in batches of BATCH to PARTITION (`all`: round-robin over the topic's
//! 4 partitions) until it has appended AMOUNT records (`<n>s`: for n seconds), and prints how
//! many it appended and how long that took. Rates are total records over the slowest appender's
//! time. acks=1 cases append a fixed amount (a few hundred MB: a longer run measures the kernel's
//! writeback throttling, not the appends).
//!
//! `cargo bench --bench shared` prints, with the ratios the issue sets targets for:
//! - one process, 100-byte records at acks=1, 1 and 100 per call: exclusive against shared mode;
//! - 4 processes in shared mode at acks=1 to one partition (and to 4 partitions), against one
//!   exclusive process;
//! - 4 processes at acks=all to one partition, against one process at acks=all (fsyncs shared);
//! - how long the other appenders take to resume after one is killed inside the append lock.
//!
//! Under `cargo test` (`--bench` absent) every case runs for a few milliseconds as a smoke test.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runnel::{Acks, Log, LogOptions, Record, TopicConfig};

const TOPIC: &str = "bench";
const PARTITIONS: u32 = 4;

fn open(dir: &str, mode: &str) -> Log {
    match mode {
        "shared" => Log::open_shared(dir, LogOptions::default()),
        _ => Log::open(dir, LogOptions::default()),
    }
    .expect("open")
}

fn appender(args: &[String]) {
    let [dir, mode, amount, batch, acks, partition] = args else { panic!("appender arguments: {args:?}") };
    let log = open(dir, mode);
    let (limit, secs) = match amount.strip_suffix('s') {
        Some(secs) => (u64::MAX, secs.parse::<f64>().expect("seconds")),
        None => (amount.parse::<u64>().expect("records"), 1e6),
    };
    let batch: usize = batch.parse().expect("batch");
    let acks = if acks == "all" { Acks::All } else { Acks::One };
    let value = [7u8; 100];
    let records = vec![Record::new(&value); batch];
    println!("READY");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("go");
    let kill_inside: u64 = std::env::var("RUNNEL_BENCH_KILL_INSIDE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let report = std::env::var("RUNNEL_BENCH_REPORT").is_ok();
    let threads: u64 = std::env::var("RUNNEL_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let run = || {
        let mut n = 0u64;
        let mut p = 0u32;
        let mut last_print = Instant::now();
        while n < limit / threads && Instant::now() < until {
            let part = if partition == "all" { p } else { partition.parse().expect("partition") };
            for _ in 0..64 {
                log.append(TOPIC, Some(part), &records, acks).expect("append");
                n += batch as u64;
                if kill_inside > 0 && n >= kill_inside {
                    #[cfg(feature = "fault-injection")]
                    runnel::testing::kill_inside_append(1);
                }
                if acks == Acks::All || n >= limit {
                    break;
                }
            }
            if report && last_print.elapsed() > Duration::from_micros(200) {
                // The resume measurement: when this appender's appends went through.
                println!("AT {}", mono_ns());
                std::io::stdout().flush().expect("flush");
                last_print = Instant::now();
            }
            p = (p + 1) % PARTITIONS;
        }
        n
    };
    let n: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|_| s.spawn(run)).collect();
        handles.into_iter().map(|h| h.join().expect("appender thread")).sum()
    });
    println!("COUNT {n} {}", start.elapsed().as_nanos());
    drop(log);
}

fn mono_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

struct Run {
    dir: tempfile::TempDir,
    /// Records per appender, or `<n>s`.
    amount: String,
    /// Threads per appender process.
    threads: usize,
}

impl Run {
    fn new(amount: impl Into<String>) -> Run {
        // Earlier cases' data still being written back would slow this one's fsyncs.
        rustix::fs::sync();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(dir.path(), LogOptions::default()).expect("open");
        log.create_topic(TOPIC, PARTITIONS, TopicConfig::default()).expect("create topic");
        log.close().expect("close");
        Run { dir, amount: amount.into(), threads: 1 }
    }

    fn threads(mut self, n: usize) -> Run {
        self.threads = n;
        self
    }

    /// `report`: print when appends went through (the resume measurement's survivor; read only
    /// at the end, so only for short runs: a full pipe would stall the appender).
    fn spawn(&self, mode: &str, batch: usize, acks: &str, partition: &str, kill_inside: u64, report: bool) -> Child {
        let exe = std::env::current_exe().expect("bench binary");
        let mut cmd = Command::new(exe);
        cmd.env("RUNNEL_BENCH_THREADS", self.threads.to_string());
        if report {
            cmd.env("RUNNEL_BENCH_REPORT", "1");
        }
        let mut child = cmd
            .arg("--appender")
            .arg(self.dir.path())
            .args([mode, &self.amount, &batch.to_string(), acks, partition])
            .env("RUNNEL_BENCH_KILL_INSIDE", kill_inside.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn appender");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "READY", "appender did not start");
        child.stdout = Some(out.into_inner());
        child
    }

    /// Starts `n` appenders at once and returns their total rate (records/s).
    fn rate(&self, n: usize, mode: &str, batch: usize, acks: &str, partition: &str) -> f64 {
        let mut children: Vec<Child> = (0..n).map(|_| self.spawn(mode, batch, acks, partition, 0, false)).collect();
        for c in &mut children {
            writeln!(c.stdin.as_mut().expect("stdin"), "go").expect("go");
        }
        let (mut total, mut slowest) = (0u64, 0u64);
        for c in children {
            let out = c.wait_with_output().expect("appender");
            assert!(out.status.success(), "appender failed");
            let text = String::from_utf8_lossy(&out.stdout);
            let line = text.lines().find_map(|l| l.strip_prefix("COUNT ")).expect("count");
            let mut f = line.split_whitespace().map(|x| x.parse::<u64>().expect("number"));
            total += f.next().expect("count");
            slowest = slowest.max(f.next().expect("elapsed"));
        }
        total as f64 / (slowest as f64 / 1e9)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 { format!("{:.2} M/s", r / 1e6) } else { format!("{:.1} k/s", r / 1e3) }
}

/// Two appenders at acks=1 on one partition; the first is killed inside the append lock. Returns
/// how long after its death the second's appends went through again.
#[cfg(feature = "fault-injection")]
fn resume_after_death(secs: f64) -> Option<Duration> {
    let run = Run::new(format!("{secs}s"));
    let mut victim = run.spawn("shared", 1, "one", "0", 20_000, false);
    let mut survivor = run.spawn("shared", 1, "one", "0", 0, true);
    for c in [&mut victim, &mut survivor] {
        writeln!(c.stdin.as_mut().expect("stdin"), "go").expect("go");
    }
    let status = victim.wait().expect("victim");
    let died = mono_ns();
    if std::os::unix::process::ExitStatusExt::signal(&status) != Some(9) {
        eprintln!("victim: {status}");
        return None;
    }
    let out = survivor.wait_with_output().expect("survivor");
    let text = String::from_utf8_lossy(&out.stdout);
    let next = text.lines().filter_map(|l| l.strip_prefix("AT ")).filter_map(|t| t.trim().parse::<u64>().ok()).find(|&t| t > died)?;
    Some(Duration::from_nanos(next - died))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--appender") {
        appender(&args[2..]);
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    // Records per appender at acks=1 (4 appenders share the amount), and seconds at acks=all.
    let (records, secs) = if full { (2_000_000u64, 3.0) } else { (2_000, 0.05) };
    println!("shared mode against exclusive mode, 100-byte records");

    // acks=1 rates move with the kernel's writeback of earlier runs: best of three.
    let best = |n: usize, mode: &str, amount: &str, batch: usize, partition: &str| {
        (0..3).map(|_| Run::new(amount).rate(n, mode, batch, "one", partition)).fold(0.0f64, f64::max)
    };
    for batch in [1usize, 100] {
        let n = (records * if batch == 1 { 1 } else { 5 }).to_string();
        let ex = best(1, "exclusive", &n, batch, "0");
        let sh = best(1, "shared", &n, batch, "0");
        println!(
            "1 process, acks=1, {batch:>3} per call: exclusive {}, shared {} ({:+.1}%) [shared the default if within 10%]",
            fmt_rate(ex),
            fmt_rate(sh),
            (sh / ex - 1.0) * 100.0
        );
    }
    let ex = best(1, "exclusive", &records.to_string(), 1, "0");
    let quarter = (records / 4).to_string();
    let one = best(4, "shared", &quarter, 1, "0");
    let spread = best(4, "shared", &quarter, 1, "all");
    println!(
        "4 processes, acks=1, 1 per call: one partition {} ({:.2}x one exclusive process), each round-robin over 4 partitions {} ({:.2}x) [target >= 0.5x]",
        fmt_rate(one),
        one / ex,
        fmt_rate(spread),
        spread / ex
    );
    let timed = format!("{secs}s");
    let single = Run::new(timed.clone()).rate(1, "shared", 1, "all", "0");
    let four = Run::new(timed.clone()).rate(4, "shared", 1, "all", "0");
    let threads = Run::new(timed).threads(4).rate(1, "exclusive", 1, "all", "0");
    println!(
        "acks=all, 1 per call, one partition: 1 process {}, 4 processes {} ({:.2}x) [target >= 3x]; for comparison 4 threads of one exclusive process {} ({:.2}x)",
        fmt_rate(single),
        fmt_rate(four),
        four / single,
        fmt_rate(threads),
        threads / single
    );
    #[cfg(feature = "fault-injection")]
    match resume_after_death(0.5) {
        Some(d) => println!("a killed lock holder: the other appender resumed {d:?} after its death"),
        None => println!("a killed lock holder: not measured (the victim did not die inside the lock)"),
    }
    #[cfg(not(feature = "fault-injection"))]
    println!("a killed lock holder: run with --features fault-injection to measure the resume time");
}
