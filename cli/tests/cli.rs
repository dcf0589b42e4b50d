//! The `runnel` binary driven as a user would: every command, its error paths (usage errors,
//! missing topic, bad partition, a locked directory, a corrupt segment for verify), `--follow`
//! while another process writes, and 100,000 lines through produce and consume.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn runnel(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.arg("--dir").arg(dir).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run runnel");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait for runnel")
}

fn ok(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = runnel(dir, args, stdin);
    assert!(out.status.success(), "runnel {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn fails(dir: &Path, args: &[&str], code: i32, needle: &str) {
    let out = runnel(dir, args, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "runnel {args:?}: {err}");
    assert!(err.contains(needle), "runnel {args:?}: expected {needle:?} in {err}");
}

#[test]
fn topics_produce_consume_groups_round_trip() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    assert!(
        ok(dir, &["topics", "create", "--topic", "events", "--partitions", "2", "--config", "retention.ms=86400000"], None)
            .contains("Created")
    );
    assert_eq!(ok(dir, &["topics", "list"], None).lines().filter(|l| *l == "events").count(), 1);
    let summary = ok(dir, &["produce", "--topic", "events", "--key-separator", ":", "--header", "src=cli"], Some(b"a:1\nb:2\nc:3\nd:4\n"));
    assert!(summary.starts_with("4 record(s)"), "{summary}");
    let all = ok(dir, &["consume", "--topic", "events", "--from-beginning", "--print-key", "--print-headers"], None);
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, ["src:cli\ta\t1", "src:cli\tb\t2", "src:cli\tc\t3", "src:cli\td\t4"]);
    // Without --from-beginning the console consumer starts at the end.
    assert_eq!(ok(dir, &["consume", "--topic", "events"], None), "");
    // JSON output, one object per line.
    let json =
        ok(dir, &["consume", "--topic", "events", "--partition", "0", "--offset", "0", "--format", "json", "--max-messages", "1"], None);
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(v["partition"], 0);
    assert_eq!(v["offset"], 0);
    // A group: consumes everything once and commits it.
    assert_eq!(ok(dir, &["consume", "--topic", "events", "--group", "billing", "--from-beginning"], None).lines().count(), 4);
    assert_eq!(ok(dir, &["consume", "--topic", "events", "--group", "billing"], None), "");
    let lag = ok(dir, &["groups", "describe", "--group", "billing", "--format", "json"], None);
    let lag: serde_json::Value = serde_json::from_str(lag.trim()).expect("json");
    assert_eq!(lag.as_array().map(|a| a.iter().map(|p| p["lag"].as_u64().unwrap_or(99)).sum::<u64>()), Some(0));
    assert!(ok(dir, &["groups", "list"], None).contains("billing"));
    // reset-offsets: a dry run changes nothing; --execute does.
    assert!(ok(dir, &["groups", "reset-offsets", "--group", "billing", "--topic", "events", "--to-earliest"], None).contains("Dry run"));
    assert_eq!(ok(dir, &["consume", "--topic", "events", "--group", "billing"], None), "");
    ok(dir, &["groups", "reset-offsets", "--group", "billing", "--topic", "events", "--to-earliest", "--execute"], None);
    assert_eq!(ok(dir, &["consume", "--topic", "events", "--group", "billing"], None).lines().count(), 4);
    ok(dir, &["groups", "delete", "--group", "billing"], None);
    fails(dir, &["groups", "delete", "--group", "billing"], 1, "no committed offsets");
    // describe and alter.
    let described = ok(dir, &["topics", "describe", "--topic", "events"], None);
    assert!(described.contains("retention.ms=86400000") && described.contains("HIGH-WATERMARK"), "{described}");
    ok(dir, &["topics", "alter", "--topic", "events", "--partitions", "3"], None);
    let described = ok(dir, &["topics", "describe", "--topic", "events", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_str(described.trim()).expect("json");
    assert_eq!(v["partitions"].as_array().map(Vec::len), Some(3));
    ok(dir, &["topics", "delete", "--topic", "events"], None);
    assert!(!ok(dir, &["topics", "list"], None).contains("events"));
}

#[test]
fn produce_formats_and_consume_from_time() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "t"], None);
    let mut framed = Vec::new();
    for v in [&b"one"[..], b"", b"three\nwith newline"] {
        framed.extend_from_slice(&(v.len() as u32).to_be_bytes());
        framed.extend_from_slice(v);
    }
    ok(dir, &["produce", "--topic", "t", "--format", "length-prefixed", "--acks", "1"], Some(&framed));
    ok(
        dir,
        &["produce", "--topic", "t", "--format", "json"],
        Some(
            br#"{"key": "k", "value": "json value", "headers": {"h": "v"}, "timestamp": 4102444800000}
"#,
        ),
    );
    let out = ok(dir, &["consume", "--topic", "t", "--from-beginning", "--format", "json"], None);
    let values: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(
        values.iter().map(|v| v["value"].as_str().unwrap_or("?")).collect::<Vec<_>>(),
        ["one", "", "three\nwith newline", "json value"]
    );
    assert_eq!(values[3]["headers"]["h"], "v");
    let late = ok(dir, &["consume", "--topic", "t", "--from-time", "4102444800000"], None);
    assert_eq!(late.trim(), "json value");
    // Input errors name the record.
    let out = runnel(dir, &["produce", "--topic", "t", "--key-separator", ":"], Some(b"no separator here\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1 has no key separator"));
    let out = runnel(dir, &["produce", "--topic", "t", "--format", "json"], Some(b"{not json\n"));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: not JSON"));
}

#[test]
fn errors_have_exit_codes_and_hints() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "t"], None);
    // Usage errors: 2.
    fails(dir, &["consume"], 2, "--topic");
    fails(dir, &["consume", "--topic", "t", "--offset", "3"], 2, "--partition");
    fails(dir, &["produce", "--topic", "t", "--acks", "2"], 2, "acks");
    // Runtime errors: 1, naming what is wrong and how to fix it.
    fails(dir, &["consume", "--topic", "missing", "--from-beginning"], 1, "runnel topics list");
    fails(dir, &["consume", "--topic", "t", "--partition", "5"], 1, "there is no partition 5");
    fails(dir, &["topics", "create", "--topic", "t"], 1, "already exists");
    fails(dir, &["topics", "create", "--topic", "../escape"], 1, "invalid topic name");
    fails(dir, &["topics", "create", "--topic", "x", "--config", "no.such=1"], 1, "no.such");
    fails(dir, &["dump-log", "--topic", "t", "--partition", "3"], 1, "topics describe");
    fails(dir, &["groups", "describe", "--group", "nobody"], 1, "no committed offsets");
    fails(dir, &["groups", "reset-offsets", "--group", "g", "--topic", "t"], 1, "--to-earliest");
    fails(dir, &["transactions", "describe", "--id", "nope"], 1, "no transactional id");
    fails(dir, &["produce", "--topic", "missing"], 1, "unknown topic");
}

#[test]
fn a_locked_directory_is_refused_for_writing_but_readable() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "t"], None);
    ok(dir, &["produce", "--topic", "t"], Some(b"x\ny\n"));
    let writer = runnel::Log::open(dir, runnel::LogOptions::default()).expect("writer");
    fails(dir, &["topics", "create", "--topic", "u"], 1, "locked");
    fails(dir, &["produce", "--topic", "t"], 1, "another process has the directory open for writing");
    fails(dir, &["consume", "--topic", "t", "--group", "g", "--from-beginning"], 1, "consume without --group");
    // Reading needs no lock.
    assert_eq!(ok(dir, &["consume", "--topic", "t", "--from-beginning"], None), "x\ny\n");
    assert!(ok(dir, &["topics", "describe", "--topic", "t"], None).contains("PARTITION"));
    drop(writer);
}

#[test]
fn commands_join_processes_that_have_the_directory_in_shared_mode() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    let app = runnel::Log::open_shared(dir, runnel::LogOptions::default()).expect("shared");
    app.create_topic("t", 1, runnel::TopicConfig::default()).expect("create");
    app.append("t", Some(0), &[runnel::Record::new(b"from the app")], runnel::Acks::All).expect("append");
    // No --shared needed: the command joins the processes already there.
    ok(dir, &["produce", "--topic", "t"], Some(b"from the cli\n"));
    ok(dir, &["topics", "create", "--topic", "u"], None);
    assert!(app.list_topics().contains(&"u".to_string()), "the app sees the topic the CLI created");
    assert_eq!(ok(dir, &["consume", "--topic", "t", "--from-beginning", "--group", "g"], None), "from the app\nfrom the cli\n");
    assert_eq!(app.committed("g", "t", 0).expect("committed").map(|c| c.offset), Some(2));
    drop(app);
    // With --shared the CLI opens it shared even when it is free.
    ok(dir, &["--shared", "produce", "--topic", "t"], Some(b"again\n"));
}

#[test]
fn follow_prints_records_another_process_appends() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "t", "--config", "high.watermark=written"], None);
    let writer = runnel::Log::open(dir, runnel::LogOptions::default()).expect("writer");
    let mut child = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .arg("--dir")
        .arg(dir)
        .args(["consume", "--topic", "t", "--from-beginning", "--follow", "--print-offset"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume --follow");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for i in 0..5u8 {
        writer.append("t", Some(0), &[runnel::Record::new(&[b'a' + i])], runnel::Acks::One).expect("append");
        let started = Instant::now();
        let line = lines.next().expect("a line").expect("read");
        assert_eq!(line, format!("Offset:{i}\t{}", char::from(b'a' + i)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dump_log_and_verify_find_and_repair_damage() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "t", "--config", "segment.bytes=1024", "--config", "index.interval.bytes=64"], None);
    // Ten produce runs: ten batches, over several 1 KiB segments.
    for run in 0..10 {
        let input: String = (0..20).map(|i| format!("record number {}\n", run * 20 + i)).collect();
        ok(dir, &["produce", "--topic", "t"], Some(input.as_bytes()));
    }
    let dump = ok(dir, &["dump-log", "--topic", "t", "--partition", "0", "--verify-index", "--print-data"], None);
    assert!(dump.contains("crcValid: true") && dump.contains("payload: record number 0") && dump.contains("0 invalid"), "{dump}");
    let json = ok(dir, &["dump-log", "--topic", "t", "--partition", "0", "--segment", "0", "--format", "json"], None);
    let first: serde_json::Value = serde_json::from_str(json.lines().next().expect("a batch")).expect("json");
    assert_eq!((first["baseOffset"].as_u64(), first["crcValid"].as_bool()), (Some(0), Some(true)));
    assert!(ok(dir, &["verify"], None).contains("t-0"));

    // Damage the last segment: flip a byte inside its last batch.
    let segs = runnel::inspect::segment_files(dir, "t", 0).expect("segments");
    let last = segs.last().expect("a segment");
    let mut bytes = std::fs::read(&last.log).expect("read");
    let dumped = runnel::inspect::dump_segment(&last.log).expect("dump");
    let b = dumped.batches.last().expect("a batch");
    bytes[(b.position + b.size - 3) as usize] ^= 0xFF;
    std::fs::write(&last.log, &bytes).expect("write");
    let out = runnel(dir, &["verify"], None);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("fails its CRC") || report.contains("stops at byte"), "{report}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify --repair"));
    let dump = ok(dir, &["dump-log", "--topic", "t", "--partition", "0", "--segment", &last.base_offset.to_string()], None);
    assert!(dump.contains("crcValid: false"), "{dump}");
    let repaired = ok(dir, &["verify", "--repair"], None);
    assert!(repaired.contains("into") && repaired.contains("quarantine") && repaired.contains("verifies clean"), "{repaired}");
    assert!(ok(dir, &["verify"], None).contains("OK"));
    // Everything before the damaged batch is still there.
    let left = ok(dir, &["consume", "--topic", "t", "--from-beginning"], None).lines().count();
    assert_eq!(left, 180, "the nine batches before the damaged one");
}

#[test]
fn perf_and_transactions() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "p", "--partitions", "2"], None);
    let out = ok(
        dir,
        &["perf", "produce", "--topic", "p", "--records", "5000", "--record-size", "50", "--threads", "2", "--format", "json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["records"], 5000);
    assert!(v["latency_us"]["p99"].as_u64().is_some());
    let out = ok(dir, &["perf", "consume", "--topic", "p", "--format", "json"], None);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!((v["records"].as_u64(), v["bytes"].as_u64()), (Some(5000), Some(250_000)));
    {
        let log = runnel::Log::open(dir, runnel::LogOptions::default()).expect("open");
        let tx = log.transactional_producer("tx-1", runnel::TransactionOptions::default()).expect("producer");
        tx.begin().expect("begin");
        tx.send("p", Some(0), &[runnel::Record::new(b"in a transaction")]).expect("send");
        tx.commit().expect("commit");
        drop(tx);
        log.close().expect("close");
    }
    let listed = ok(dir, &["transactions", "list"], None);
    assert!(listed.contains("tx-1") && listed.contains("OPEN-FOR (s)"), "{listed}");
    let described = ok(dir, &["transactions", "describe", "--id", "tx-1", "--format", "json"], None);
    assert!(described.contains("\"transactional_id\":\"tx-1\""), "{described}");
    assert!(ok(dir, &["transactions", "abort", "--id", "tx-1"], None).contains("had no open transaction"));
    // read_committed consumption sees the committed record.
    let out = ok(dir, &["consume", "--topic", "p", "--partition", "0", "--offset", "0", "--isolation-level", "read_committed"], None);
    assert!(out.contains("in a transaction"));
}

#[test]
fn a_hundred_thousand_lines_round_trip() {
    let d = tempfile::tempdir().expect("tempdir");
    let dir = d.path();
    ok(dir, &["topics", "create", "--topic", "bulk", "--partitions", "3"], None);
    let input: String = (0..100_000).map(|i| format!("key{i}\tvalue number {i}\n")).collect();
    let summary = ok(dir, &["produce", "--topic", "bulk", "--key-separator", "\t", "--acks", "1"], Some(input.as_bytes()));
    assert!(summary.starts_with("100000 record(s)"), "{summary}");
    let out = ok(dir, &["consume", "--topic", "bulk", "--from-beginning", "--print-key"], None);
    let mut got: Vec<&str> = out.lines().collect();
    got.sort_unstable();
    let mut want: Vec<&str> = input.lines().collect();
    want.sort_unstable();
    assert_eq!(got.len(), 100_000);
    assert!(got == want, "the lines that went in are the lines that came out");
}
