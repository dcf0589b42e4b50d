//! `runnel`: Kafka's command-line operations (section 2.2 of the Kafka primer) on a data
//! directory: topics, console producer and consumer, consumer groups, dump-log, verify, perf
//! tests and transactions. It calls the library's public API only.
//!
//! Exit codes: 0 success, 1 runtime error, 2 usage error.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use runnel::clients::{
    Consumer, ConsumerConfig, OffsetResetPolicy, Producer, ProducerConfig, ProducerRecord, Subscription, TopicPartition,
};
use runnel::{Error, IsolationLevel, Log, LogOptions, OffsetCommit, TopicConfig};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(name = "runnel", version, about = "Kafka's command-line operations on a runnel data directory", long_about = None)]
struct Cli {
    /// The data directory.
    #[arg(long, global = true, env = "RUNNEL_DIR", default_value = "runnel-data")]
    dir: PathBuf,
    /// Open the directory in shared mode, so that other processes can write to it meanwhile.
    /// Without it, a command joins processes that have it open in shared mode, and otherwise
    /// opens it as its only writer.
    #[arg(long, global = true, env = "RUNNEL_SHARED")]
    shared: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, create, describe, delete topics and add partitions.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// Read lines (or length-prefixed or JSON records) from stdin and append them.
    #[command(after_help = "Example:\n  printf 'k1:hello\\nk2:world\\n' | runnel produce --topic events --key-separator :")]
    Produce(ProduceArgs),
    /// Print records of a topic, from the beginning, an offset or a time; follow new ones.
    #[command(
        after_help = "Examples:\n  runnel consume --topic events --from-beginning\n  runnel consume --topic events --group billing --follow --print-offset"
    )]
    Consume(ConsumeArgs),
    /// List, describe (lag), reset the offsets of, and delete consumer groups.
    #[command(subcommand)]
    Groups(GroupsCmd),
    /// Print a partition's segments batch by batch, as kafka-dump-log does.
    #[command(after_help = "Example:\n  runnel dump-log --topic events --partition 0 --print-data --verify-index")]
    DumpLog(DumpArgs),
    /// Check every segment and index; with --repair, cut torn tails and rebuild indexes.
    #[command(after_help = "Examples:\n  runnel verify\n  runnel verify --repair")]
    Verify(VerifyArgs),
    /// Measure produce or consume throughput and latency (kafka-producer-perf-test).
    #[command(subcommand)]
    Perf(PerfCmd),
    /// List, describe and abort transactions.
    #[command(subcommand)]
    Transactions(TxnCmd),
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum Format {
    #[default]
    Text,
    Json,
}

#[derive(Subcommand)]
enum TopicsCmd {
    /// The topics.
    #[command(after_help = "Example:\n  runnel topics list --format json")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Create a topic.
    #[command(after_help = "Example:\n  runnel topics create --topic events --partitions 3 --config retention.ms=86400000")]
    Create {
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: u32,
        /// Topic configs under Kafka's names, key=value (repeatable).
        #[arg(long = "config", value_parser = key_value)]
        configs: Vec<(String, String)>,
    },
    /// Config, and per partition: log start offset, high watermark, log end offset, segments, bytes.
    #[command(after_help = "Example:\n  runnel topics describe --topic events")]
    Describe {
        #[arg(long)]
        topic: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete a topic and its data.
    #[command(after_help = "Example:\n  runnel topics delete --topic events")]
    Delete {
        #[arg(long)]
        topic: String,
    },
    /// Raise a topic's partition count.
    #[command(after_help = "Example:\n  runnel topics alter --topic events --partitions 6")]
    Alter {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        partitions: u32,
    },
}

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
enum InputFormat {
    /// One record per line.
    #[default]
    Lines,
    /// Each record a 4-byte big-endian length, then that many bytes.
    LengthPrefixed,
    /// One JSON object per line: {"key", "value", "headers": {k: v}, "partition", "timestamp"}.
    Json,
}

#[derive(Args)]
struct ProduceArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: Option<u32>,
    /// Split each line at the first SEP into key and value.
    #[arg(long)]
    key_separator: Option<String>,
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// A header for every record, key=value (repeatable).
    #[arg(long = "header", value_parser = key_value)]
    headers: Vec<(String, String)>,
    #[arg(long, value_enum, default_value_t)]
    format: InputFormat,
}

#[derive(Args)]
struct ConsumeArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the log start (for a group: when it has no committed offset).
    #[arg(long, conflicts_with_all = ["offset", "from_time"])]
    from_beginning: bool,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition", conflicts_with = "from_time")]
    offset: Option<u64>,
    /// Start at the first record at or after this time (milliseconds since the epoch).
    #[arg(long)]
    from_time: Option<i64>,
    /// Consume as a member of this group and commit what was printed.
    #[arg(long)]
    group: Option<String>,
    #[arg(long)]
    max_messages: Option<u64>,
    /// Keep printing new records as they are appended, until interrupted.
    #[arg(long)]
    follow: bool,
    #[arg(long)]
    print_key: bool,
    #[arg(long)]
    print_offset: bool,
    #[arg(long)]
    print_timestamp: bool,
    #[arg(long)]
    print_headers: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_uncommitted", "read_committed"])]
    isolation_level: String,
}

#[derive(Subcommand)]
enum GroupsCmd {
    /// The groups with committed offsets.
    #[command(after_help = "Example:\n  runnel groups list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Per partition: committed offset, high watermark, lag.
    #[command(after_help = "Example:\n  runnel groups describe --group billing")]
    Describe {
        #[arg(long)]
        group: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Move a group's committed offsets; a dry run unless --execute.
    #[command(after_help = "Example:\n  runnel groups reset-offsets --group billing --topic events --to-earliest --execute")]
    ResetOffsets {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<u64>,
        #[arg(long, group = "to")]
        to_time: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group's offsets.
    #[command(after_help = "Example:\n  runnel groups delete --group billing")]
    Delete {
        #[arg(long)]
        group: String,
    },
}

#[derive(Args)]
struct DumpArgs {
    #[arg(long)]
    topic: String,
    #[arg(long)]
    partition: u32,
    /// Only the segment with this base offset.
    #[arg(long)]
    segment: Option<u64>,
    /// Print every record.
    #[arg(long)]
    print_data: bool,
    /// Check every index entry against the batches.
    #[arg(long)]
    verify_index: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Args)]
struct VerifyArgs {
    /// Cut torn tails (into quarantine/) and rebuild indexes, saying what changed.
    #[arg(long)]
    repair: bool,
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Subcommand)]
enum PerfCmd {
    /// Produce N records of B bytes and report throughput and send-to-ack latency.
    #[command(after_help = "Example:\n  runnel perf produce --topic events --records 1000000 --record-size 100 --acks all --threads 4")]
    Produce {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        records: u64,
        #[arg(long, default_value_t = 100)]
        record_size: usize,
        /// batch.size in bytes.
        #[arg(long, default_value_t = 16384)]
        batch: usize,
        #[arg(long, default_value = "1", value_parser = ["0", "1", "all", "-1"])]
        acks: String,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Read N records (default: all) from the beginning of every partition and report throughput.
    #[command(after_help = "Example:\n  runnel perf consume --topic events")]
    Consume {
        #[arg(long)]
        topic: String,
        #[arg(long)]
        records: Option<u64>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum TxnCmd {
    /// Transactional ids and their state.
    #[command(after_help = "Example:\n  runnel transactions list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// One transactional id.
    #[command(after_help = "Example:\n  runnel transactions describe --id enricher-1")]
    Describe {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Abort a transactional id's open transaction and fence its producer.
    #[command(after_help = "Example:\n  runnel transactions abort --id enricher-1")]
    Abort {
        #[arg(long)]
        id: String,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// A failure to report: the message, with a hint at the fix when there is one.
struct Failure(String);

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let hint = match &e {
            Error::Locked { .. } => {
                "\nhint: another process has the directory open for writing, as its only writer; stop it (or have it open the directory in shared mode), or read with `consume` (which opens read-only when locked)"
            }
            Error::UnknownTopicOrPartition { .. } => {
                "\nhint: `runnel topics list` shows the topics; `runnel topics create --topic T` makes one"
            }
            Error::OffsetOutOfRange { .. } => "\nhint: `runnel topics describe --topic T` shows each partition's range",
            Error::Corrupt { .. } => "\nhint: `runnel verify` reports the damage; `runnel verify --repair` cuts it away",
            _ => "",
        };
        Failure(format!("{e}{hint}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure(e.to_string())
    }
}

type Outcome<T = ()> = Result<T, Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("runnel: {msg}");
            ExitCode::from(1)
        }
    }
}

/// `--shared` was given.
static SHARED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A writer: in shared mode with `--shared`; otherwise the directory's only writer if it is free,
/// or one more writer if other processes have it open in shared mode.
fn open_writer(dir: &Path) -> runnel::Result<Log> {
    if SHARED.load(std::sync::atomic::Ordering::Relaxed) {
        return Log::open_shared(dir, LogOptions::default());
    }
    match Log::open(dir, LogOptions::default()) {
        Err(Error::Locked { .. }) => Log::open_shared(dir, LogOptions::default()),
        other => other,
    }
}

fn open(dir: &Path) -> Outcome<Log> {
    Ok(open_writer(dir)?)
}

/// A writer as [`open`] opens one, or a read-only handle while an exclusive writer has the
/// directory.
fn open_for_reading(dir: &Path) -> Outcome<Log> {
    match open_writer(dir) {
        Err(Error::Locked { .. }) => Ok(Log::open_read_only(dir, LogOptions::default())?),
        other => Ok(other?),
    }
}

fn run(cli: Cli) -> Outcome {
    SHARED.store(cli.shared, std::sync::atomic::Ordering::Relaxed);
    let dir = cli.dir;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Topics(c) => topics(&dir, c, &mut out),
        Command::Produce(a) => produce(&dir, a, &mut out),
        Command::Consume(a) => consume(&dir, a, &mut out),
        Command::Groups(c) => groups(&dir, c, &mut out),
        Command::DumpLog(a) => dump_log(&dir, a, &mut out),
        Command::Verify(a) => verify(&dir, a, &mut out),
        Command::Perf(c) => perf(&dir, c, &mut out),
        Command::Transactions(c) => transactions(&dir, c, &mut out),
    }
}

fn print_json(out: &mut impl Write, v: &Value) -> Outcome {
    writeln!(out, "{v}")?;
    Ok(())
}

/// A text table: a header row and rows, columns padded.
fn table(out: &mut impl Write, head: &[&str], rows: &[Vec<String>]) -> Outcome {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<String>| cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ");
    writeln!(out, "{}", line(head.iter().map(|s| s.to_string()).collect()).trim_end())?;
    for r in rows {
        writeln!(out, "{}", line(r.clone()).trim_end())?;
    }
    Ok(())
}

/// A list of names: one per line, or a JSON array.
fn print_names(out: &mut impl Write, format: Format, names: Vec<String>) -> Outcome {
    match format {
        Format::Json => print_json(out, &json!(names)),
        Format::Text => {
            for n in names {
                writeln!(out, "{n}")?;
            }
            Ok(())
        }
    }
}

// ---- topics

fn topics(dir: &Path, cmd: TopicsCmd, out: &mut impl Write) -> Outcome {
    match cmd {
        TopicsCmd::List { format } => {
            let log = open_for_reading(dir)?;
            print_names(out, format, log.list_topics())
        }
        TopicsCmd::Create { topic, partitions, configs } => {
            let log = open(dir)?;
            let mut c = TopicConfig::default();
            for (k, v) in &configs {
                c.set(k, v)?;
            }
            log.create_topic(&topic, partitions, c)?;
            writeln!(out, "Created topic {topic} with {partitions} partition(s).")?;
            Ok(log.close()?)
        }
        TopicsCmd::Describe { topic, format } => {
            let log = open_for_reading(dir)?;
            let d = log.describe_topic(&topic)?;
            let config: BTreeMap<&str, String> = d.config.overrides().into_iter().collect();
            match format {
                Format::Json => print_json(
                    out,
                    &json!({
                        "topic": d.name, "internal": d.internal, "config": config,
                        "partitions": d.partitions.iter().map(|p| json!({
                            "partition": p.partition, "log_start_offset": p.log_start_offset, "high_watermark": p.high_watermark,
                            "log_end_offset": p.log_end_offset, "durable_offset": p.durable_offset, "segments": p.segment_count, "bytes": p.size_bytes,
                        })).collect::<Vec<_>>(),
                    }),
                ),
                Format::Text => {
                    let cfg: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    writeln!(out, "Topic: {}\tPartitions: {}\tConfigs: {}", d.name, d.partitions.len(), cfg.join(","))?;
                    let rows: Vec<Vec<String>> = d
                        .partitions
                        .iter()
                        .map(|p| {
                            vec![
                                p.partition.to_string(),
                                p.log_start_offset.to_string(),
                                p.high_watermark.to_string(),
                                p.log_end_offset.to_string(),
                                p.segment_count.to_string(),
                                p.size_bytes.to_string(),
                            ]
                        })
                        .collect();
                    table(out, &["PARTITION", "LOG-START", "HIGH-WATERMARK", "LOG-END", "SEGMENTS", "BYTES"], &rows)
                }
            }
        }
        TopicsCmd::Delete { topic } => {
            let log = open(dir)?;
            log.delete_topic(&topic)?;
            writeln!(out, "Deleted topic {topic}.")?;
            Ok(log.close()?)
        }
        TopicsCmd::Alter { topic, partitions } => {
            let log = open(dir)?;
            log.add_partitions(&topic, partitions)?;
            writeln!(out, "Topic {topic} now has {partitions} partitions.")?;
            Ok(log.close()?)
        }
    }
}

// ---- produce

fn produce(dir: &Path, a: ProduceArgs, out: &mut impl Write) -> Outcome {
    let log = open(dir)?;
    log.partition_count(&a.topic)?;
    let mut config = ProducerConfig::default();
    config.set("acks", &a.acks)?;
    let producer = Producer::new(&log, config)?;
    let failures: Arc<Mutex<(u64, Option<String>)>> = Arc::default();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let started = Instant::now();
    let mut send = |key: Option<Vec<u8>>,
                    value: Option<Vec<u8>>,
                    partition: Option<u32>,
                    timestamp: Option<i64>,
                    extra: Vec<(String, Option<Vec<u8>>)>| {
        let mut headers: Vec<(String, Option<Vec<u8>>)> =
            a.headers.iter().map(|(k, v)| (k.clone(), Some(v.clone().into_bytes()))).collect();
        headers.extend(extra);
        bytes += key.as_ref().map_or(0, Vec::len) as u64 + value.as_ref().map_or(0, Vec::len) as u64;
        count += 1;
        let record = ProducerRecord { topic: a.topic.clone().into(), partition: partition.or(a.partition), key, value, timestamp, headers };
        let failures = failures.clone();
        producer.send_with_callback(record, move |outcome| {
            if let Err(e) = outcome {
                let mut f = failures.lock().unwrap_or_else(|e| e.into_inner());
                f.0 += 1;
                f.1.get_or_insert_with(|| e.to_string());
            }
        });
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    // Records read from the input so far, for error messages.
    let mut read = 0u64;
    match a.format {
        InputFormat::Lines => {
            let mut line = Vec::new();
            loop {
                line.clear();
                if input.read_until(b'\n', &mut line)? == 0 {
                    break;
                }
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                read += 1;
                let (key, value) = match &a.key_separator {
                    Some(sep) => match find(&line, sep.as_bytes()) {
                        Some(i) => (Some(line[..i].to_vec()), line[i + sep.len()..].to_vec()),
                        None => return Err(Failure(format!("line {read} has no key separator {sep:?}"))),
                    },
                    None => (None, line.clone()),
                };
                send(key, Some(value), None, None, Vec::new());
            }
        }
        InputFormat::LengthPrefixed => loop {
            let mut len = [0u8; 4];
            match input.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            read += 1;
            let mut v = vec![0u8; u32::from_be_bytes(len) as usize];
            input.read_exact(&mut v).map_err(|e| Failure(format!("record {read}: {e} (truncated input?)")))?;
            send(None, Some(v), None, None, Vec::new());
        },
        InputFormat::Json => {
            for (n, line) in input.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).map_err(|e| Failure(format!("line {}: not JSON: {e}", n + 1)))?;
                let field = |k: &str| -> Option<Vec<u8>> { v.get(k).and_then(|x| if x.is_null() { None } else { Some(json_bytes(x)) }) };
                let headers = v
                    .get("headers")
                    .and_then(Value::as_object)
                    .map(|h| h.iter().map(|(k, x)| (k.clone(), (!x.is_null()).then(|| json_bytes(x)))).collect())
                    .unwrap_or_default();
                let partition = v.get("partition").and_then(Value::as_u64).map(|p| p as u32);
                let timestamp = v.get("timestamp").and_then(Value::as_i64);
                send(field("key"), field("value"), partition, timestamp, headers);
            }
        }
    }
    producer.close(None)?;
    log.close()?;
    let (failed, first) = failures.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    writeln!(
        out,
        "{} record(s), {bytes} bytes appended to {} in {:.3} s ({:.0} records/s){}",
        count - failed,
        a.topic,
        secs,
        (count - failed) as f64 / secs,
        if failed > 0 { format!("; {failed} failed") } else { String::new() }
    )?;
    match first {
        Some(e) => Err(Failure(format!("{failed} record(s) were not appended: {e}"))),
        None => Ok(()),
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- consume

fn consume(dir: &Path, a: ConsumeArgs, out: &mut impl Write) -> Outcome {
    let log = open_for_reading(dir)?;
    if a.group.is_some() && log.is_read_only() {
        return Err(Failure(
            "another process has the directory open as its only writer, and consuming with --group commits offsets; stop the writer (or have it open the directory in shared mode), or consume without --group".into(),
        ));
    }
    let partitions = log.partition_count(&a.topic)?;
    if let Some(p) = a.partition
        && p >= partitions
    {
        return Err(Failure(format!("topic {} has {partitions} partition(s); there is no partition {p}", a.topic)));
    }
    let mut config = ConsumerConfig { enable_auto_commit: false, ..ConsumerConfig::default() };
    config.group_id = a.group.clone();
    config.isolation_level = a.isolation_level.parse()?;
    config.auto_offset_reset = if a.from_beginning || a.offset.is_some() || a.from_time.is_some() || a.group.is_none() {
        OffsetResetPolicy::Earliest
    } else {
        OffsetResetPolicy::Latest
    };
    let mut consumer = Consumer::new(&log, config)?;
    let tps: Vec<TopicPartition> = match a.partition {
        Some(p) => vec![TopicPartition::new(&a.topic, p)],
        None => (0..partitions).map(|p| TopicPartition::new(&a.topic, p)).collect(),
    };
    if a.group.is_some() && a.partition.is_none() {
        consumer.subscribe(Subscription::Topics(vec![a.topic.clone()]))?;
    } else {
        consumer.assign(&tps)?;
        if let Some(o) = a.offset {
            consumer.seek(&tps[0], o)?;
        } else if a.group.is_none() && !a.from_beginning && a.from_time.is_none() {
            // Kafka's console consumer starts at the end without --from-beginning.
            consumer.seek_to_end(&tps)?;
        }
    }
    let mut pending_time = a.from_time;
    let mut printed = 0u64;
    let isolation: IsolationLevel = a.isolation_level.parse()?;
    loop {
        let records = consumer.poll(Duration::from_millis(200))?;
        if let Some(ts) = pending_time
            && !consumer.assignment().is_empty()
        {
            // --from-time: once partitions are assigned, seek each to the first record that late.
            for tp in consumer.assignment() {
                let at = match log.offset_for_timestamp(&tp.topic, tp.partition, ts)? {
                    Some((o, _)) => o,
                    None => end_of(&log, &tp, isolation)?,
                };
                consumer.seek(&tp, at)?;
            }
            pending_time = None;
            continue;
        }
        for r in records.iter() {
            if a.max_messages.is_some_and(|m| printed >= m) {
                break;
            }
            let r = r?;
            print_record(out, &a, &r)?;
            printed += 1;
            if a.group.is_some() {
                let tp = TopicPartition::new(r.topic(), r.partition());
                consumer.commit_offsets_sync(&[(tp, r.offset() + 1)])?;
            }
        }
        out.flush()?;
        if a.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        if !a.follow && records.is_empty() && caught_up(&log, &mut consumer, isolation)? {
            break;
        }
    }
    consumer.close()?;
    eprintln!("Processed a total of {printed} messages");
    Ok(())
}

fn end_of(log: &Log, tp: &TopicPartition, isolation: IsolationLevel) -> Outcome<u64> {
    Ok(match isolation {
        IsolationLevel::ReadCommitted => log.last_stable_offset(&tp.topic, tp.partition)?,
        _ => log.high_watermark(&tp.topic, tp.partition)?,
    })
}

/// Whether every assigned partition has been read to its end.
fn caught_up(log: &Log, consumer: &mut Consumer, isolation: IsolationLevel) -> Outcome<bool> {
    let assigned = consumer.assignment();
    if assigned.is_empty() {
        return Ok(false);
    }
    for tp in assigned {
        if consumer.position(&tp)? < end_of(log, &tp, isolation)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn text(b: Option<&[u8]>) -> String {
    b.map_or_else(|| "null".to_string(), |b| String::from_utf8_lossy(b).into_owned())
}

fn json_value(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_string()),
            Err(_) => json!({ "base64": base64(b) }),
        },
    }
}

fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn print_record(out: &mut impl Write, a: &ConsumeArgs, r: &runnel::clients::ConsumerRecord<'_, Vec<u8>, Vec<u8>>) -> Outcome {
    let headers: Vec<(String, Option<Vec<u8>>)> =
        r.headers().iter().map(|h| (String::from_utf8_lossy(h.key).into_owned(), h.value.map(<[u8]>::to_vec))).collect();
    match a.format {
        Format::Json => print_json(
            out,
            &json!({
                "topic": r.topic(), "partition": r.partition(), "offset": r.offset(), "timestamp": r.timestamp(),
                "key": json_value(r.key_bytes()), "value": json_value(r.value_bytes()),
                "headers": headers.iter().map(|(k, v)| (k.clone(), json_value(v.as_deref()))).collect::<serde_json::Map<_, _>>(),
            }),
        ),
        Format::Text => {
            let mut fields = Vec::new();
            if a.print_offset {
                fields.push(format!("Offset:{}", r.offset()));
            }
            if a.print_timestamp {
                fields.push(format!("CreateTime:{}", r.timestamp()));
            }
            if a.print_headers {
                let h: Vec<String> = headers.iter().map(|(k, v)| format!("{k}:{}", text(v.as_deref()))).collect();
                fields.push(if h.is_empty() { "NO_HEADERS".to_string() } else { h.join(",") });
            }
            if a.print_key {
                fields.push(text(r.key_bytes()));
            }
            fields.push(text(r.value_bytes()));
            writeln!(out, "{}", fields.join("\t"))?;
            Ok(())
        }
    }
}

// ---- groups

fn groups(dir: &Path, cmd: GroupsCmd, out: &mut impl Write) -> Outcome {
    match cmd {
        GroupsCmd::List { format } => {
            let log = open_for_reading(dir)?;
            print_names(out, format, log.list_groups())
        }
        GroupsCmd::Describe { group, format } => {
            let log = open_for_reading(dir)?;
            let lag = log.group_lag(&group)?;
            if lag.is_empty() {
                return Err(Failure(format!("group {group:?} has no committed offsets; `runnel groups list` shows the groups")));
            }
            match format {
                Format::Json => print_json(
                    out,
                    &json!(
                        lag.iter()
                            .map(|l| json!({"group": group, "topic": l.topic, "partition": l.partition,
                        "committed": l.committed, "high_watermark": l.high_watermark, "lag": l.lag}))
                            .collect::<Vec<_>>()
                    ),
                ),
                Format::Text => {
                    let rows: Vec<Vec<String>> = lag
                        .iter()
                        .map(|l| {
                            vec![
                                group.clone(),
                                l.topic.clone(),
                                l.partition.to_string(),
                                l.committed.to_string(),
                                l.high_watermark.to_string(),
                                l.lag.to_string(),
                            ]
                        })
                        .collect();
                    table(out, &["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "HIGH-WATERMARK", "LAG"], &rows)
                }
            }
        }
        GroupsCmd::ResetOffsets { group, topic, to_earliest, to_latest, to_offset, to_time, execute } => {
            if !(to_earliest || to_latest || to_offset.is_some() || to_time.is_some()) {
                return Err(Failure("say where to: --to-earliest, --to-latest, --to-offset N or --to-time TS".into()));
            }
            let log = open(dir)?;
            let mut rows = Vec::new();
            let mut commits = Vec::new();
            for p in 0..log.partition_count(&topic)? {
                let start = log.log_start_offset(&topic, p)?;
                let end = log.high_watermark(&topic, p)?;
                let target = if to_earliest {
                    start
                } else if to_latest {
                    end
                } else if let Some(o) = to_offset {
                    o.clamp(start, end)
                } else {
                    log.offset_for_timestamp(&topic, p, to_time.unwrap_or_default())?.map_or(end, |(o, _)| o)
                };
                let current = log.committed(&group, &topic, p)?.map_or("-".to_string(), |c| c.offset.to_string());
                rows.push(vec![group.clone(), topic.clone(), p.to_string(), current, target.to_string()]);
                commits.push((p, target));
            }
            table(out, &["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"], &rows)?;
            if execute {
                let c: Vec<OffsetCommit<'_>> =
                    commits.iter().map(|&(partition, offset)| OffsetCommit { topic: &topic, partition, offset, metadata: "" }).collect();
                log.commit_offsets(&group, &c)?;
                writeln!(out, "Offsets reset.")?;
            } else {
                writeln!(out, "Dry run: nothing changed; add --execute to reset.")?;
            }
            Ok(log.close()?)
        }
        GroupsCmd::Delete { group } => {
            let log = open(dir)?;
            if !log.delete_group(&group)? {
                return Err(Failure(format!("group {group:?} has no committed offsets; nothing to delete")));
            }
            writeln!(out, "Deleted group {group}.")?;
            Ok(log.close()?)
        }
    }
}

// ---- dump-log and verify

fn dump_log(dir: &Path, a: DumpArgs, out: &mut impl Write) -> Outcome {
    let segments = runnel::inspect::segment_files(dir, &a.topic, a.partition)
        .map_err(|e| Failure(format!("{e}\nhint: `runnel topics describe --topic {}` shows its partitions", a.topic)))?;
    let segments: Vec<_> = segments.into_iter().filter(|s| a.segment.is_none_or(|b| b == s.base_offset)).collect();
    if segments.is_empty() {
        return Err(Failure(format!(
            "{}-{} has no segment{}",
            a.topic,
            a.partition,
            a.segment.map_or(String::new(), |b| format!(" with base offset {b}"))
        )));
    }
    for s in segments {
        let d = runnel::inspect::dump_segment(&s.log)?;
        if a.format == Format::Text {
            writeln!(out, "Dumping {}", s.log.display())?;
            writeln!(out, "Log starting offset: {}", s.base_offset)?;
        }
        for (i, b) in d.batches.iter().enumerate() {
            match a.format {
                Format::Json => print_json(
                    out,
                    &json!({"segment": s.base_offset, "baseOffset": b.base_offset, "lastOffset": b.last_offset, "count": b.record_count,
                        "position": b.position, "size": b.size, "crcValid": b.crc_valid, "firstTimestamp": b.first_timestamp,
                        "maxTimestamp": b.max_timestamp, "logAppendTime": b.log_append_time, "producerId": b.producer_id,
                        "producerEpoch": b.producer_epoch, "baseSequence": b.base_sequence, "isTransactional": b.transactional,
                        "isControl": b.control}),
                )?,
                Format::Text => writeln!(
                    out,
                    "baseOffset: {} lastOffset: {} count: {} position: {} size: {} crcValid: {} {}: {} producerId: {} producerEpoch: {} baseSequence: {} isTransactional: {} isControl: {}",
                    b.base_offset,
                    b.last_offset,
                    b.record_count,
                    b.position,
                    b.size,
                    b.crc_valid,
                    if b.log_append_time { "LogAppendTime" } else { "CreateTime" },
                    b.max_timestamp,
                    b.producer_id,
                    b.producer_epoch,
                    b.base_sequence,
                    b.transactional,
                    b.control
                )?,
            }
            if a.print_data {
                for r in d.records(i)? {
                    match a.format {
                        Format::Json => print_json(
                            out,
                            &json!({"offset": r.offset, "timestamp": r.timestamp, "key": json_value(r.key), "value": json_value(r.value)}),
                        )?,
                        Format::Text => writeln!(
                            out,
                            "| offset: {} CreateTime: {} keySize: {} valueSize: {} key: {} payload: {}",
                            r.offset,
                            r.timestamp,
                            r.key.map_or(-1, |k| k.len() as i64),
                            r.value.map_or(-1, |v| v.len() as i64),
                            text(r.key),
                            text(r.value)
                        )?,
                    }
                }
            }
        }
        if let Some(why) = &d.stop {
            writeln!(out, "Stopped before the end of the file: {why} (valid bytes: {} of {})", d.valid_end, d.file_len)?;
        }
        if a.verify_index {
            match runnel::inspect::check_index(&s, &d) {
                Ok(entries) => {
                    let bad = entries.iter().filter(|e| !e.valid).count();
                    writeln!(out, "Index {}: {} entries, {} invalid", s.index.display(), entries.len(), bad)?;
                    for e in &entries {
                        let status = if e.valid { "" } else { "  INVALID: no batch of that offset starts there" };
                        writeln!(out, "offset: {} position: {}{status}", e.offset, e.position)?;
                    }
                }
                Err(e) => writeln!(out, "Index: {e} (the active segment's index is written at close)")?,
            }
        }
    }
    Ok(())
}

fn verify(dir: &Path, a: VerifyArgs, out: &mut impl Write) -> Outcome {
    let before = runnel::inspect::verify(dir)?;
    let problems: usize = before.iter().map(|p| p.problems.len()).sum();
    if a.format == Format::Json && !a.repair {
        print_json(
            out,
            &json!(
                before
                    .iter()
                    .map(|p| json!({"topic": p.topic, "partition": p.partition, "segments": p.segments,
                "batches": p.batches, "bytes": p.bytes, "problems": p.problems}))
                    .collect::<Vec<_>>()
            ),
        )?;
    } else {
        for p in &before {
            let status = if p.problems.is_empty() { "OK".to_string() } else { format!("{} problem(s)", p.problems.len()) };
            writeln!(out, "{}-{}: {} segment(s), {} batch(es), {} bytes: {status}", p.topic, p.partition, p.segments, p.batches, p.bytes)?;
            for pr in &p.problems {
                writeln!(out, "  {pr}")?;
            }
        }
    }
    if !a.repair {
        return if problems == 0 {
            Ok(())
        } else {
            Err(Failure(format!("{problems} problem(s) found; `runnel verify --repair` fixes what can be fixed")))
        };
    }
    let report = runnel::inspect::repair(dir)?;
    writeln!(out, "Repair: every segment re-verified.")?;
    for (topic, p, r) in report {
        if r.bytes_quarantined > 0 || r.segments_quarantined > 0 {
            writeln!(
                out,
                "  {topic}-{p}: cut {} byte(s) and {} whole segment(s) into {}/quarantine/",
                r.bytes_quarantined,
                r.segments_quarantined,
                dir.display()
            )?;
        }
    }
    let after = runnel::inspect::verify(dir)?;
    for (b, aft) in before.iter().zip(&after) {
        for pr in b.problems.iter().filter(|pr| pr.contains(".index") || pr.starts_with("index:")) {
            if !aft.problems.contains(pr) {
                writeln!(out, "  {}-{}: rebuilt the index ({pr})", b.topic, b.partition)?;
            }
        }
    }
    let left: usize = after.iter().map(|p| p.problems.len()).sum();
    if left == 0 {
        writeln!(out, "The log verifies clean.")?;
        Ok(())
    } else {
        for p in &after {
            for pr in &p.problems {
                writeln!(out, "  still: {pr}")?;
            }
        }
        Err(Failure(format!("{left} problem(s) remain after the repair")))
    }
}

// ---- perf

fn progress(total: u64) -> Option<indicatif::ProgressBar> {
    std::io::stdout().is_terminal().then(|| indicatif::ProgressBar::new(total))
}

fn perf(dir: &Path, cmd: PerfCmd, out: &mut impl Write) -> Outcome {
    match cmd {
        PerfCmd::Produce { topic, records, record_size, batch, acks, threads, format } => {
            let log = open(dir)?;
            log.partition_count(&topic)?;
            let mut config = ProducerConfig { batch_size: batch, ..ProducerConfig::default() };
            config.set("acks", &acks)?;
            let producer = Producer::new(&log, config)?;
            let latencies: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::with_capacity(records as usize)));
            let bar = progress(records);
            let value = vec![b'x'; record_size];
            let started = Instant::now();
            let threads = threads.max(1) as u64;
            std::thread::scope(|s| {
                for t in 0..threads {
                    let (producer, latencies, value, topic, bar) = (&producer, latencies.clone(), &value, &topic, &bar);
                    s.spawn(move || {
                        let n = records / threads + u64::from(t < records % threads);
                        for i in 0..n {
                            let sent = Instant::now();
                            let lat = latencies.clone();
                            producer.send_with_callback(ProducerRecord::new(topic.as_str(), value.clone()), move |o| {
                                if o.is_ok() {
                                    lat.lock().unwrap_or_else(|e| e.into_inner()).push(sent.elapsed().as_micros() as u64);
                                }
                            });
                            if let Some(b) = bar
                                && i % 1024 == 0
                            {
                                b.inc(1024.min(n - i));
                            }
                        }
                    });
                }
            });
            producer.flush();
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            producer.close(None)?;
            log.close()?;
            let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
            l.sort_unstable();
            let pct = |p: f64| l.get(((l.len().max(1) - 1) as f64 * p) as usize).copied().unwrap_or(0);
            let (rate, mb) = (l.len() as f64 / secs, l.len() as f64 * record_size as f64 / secs / 1e6);
            match format {
                Format::Json => print_json(
                    out,
                    &json!({"records": l.len(), "seconds": secs, "records_per_sec": rate, "mb_per_sec": mb,
                        "latency_us": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "max": pct(1.0)}}),
                ),
                Format::Text => {
                    writeln!(
                        out,
                        "{} records sent, {rate:.1} records/sec ({mb:.2} MB/sec), latency p50 {} us, p95 {} us, p99 {} us, max {} us.",
                        l.len(),
                        pct(0.5),
                        pct(0.95),
                        pct(0.99),
                        pct(1.0)
                    )?;
                    Ok(())
                }
            }
        }
        PerfCmd::Consume { topic, records, format } => {
            let log = open_for_reading(dir)?;
            let n = log.partition_count(&topic)?;
            let total: u64 =
                (0..n).map(|p| Ok(log.high_watermark(&topic, p)? - log.log_start_offset(&topic, p)?)).sum::<runnel::Result<u64>>()?;
            let want = records.unwrap_or(total).min(total);
            let mut c = Consumer::new(
                &log,
                ConsumerConfig { auto_offset_reset: OffsetResetPolicy::Earliest, max_poll_records: 10_000, ..ConsumerConfig::default() },
            )?;
            c.assign(&(0..n).map(|p| TopicPartition::new(&topic, p)).collect::<Vec<_>>())?;
            let bar = progress(want);
            let started = Instant::now();
            let (mut seen, mut bytes, mut checksum) = (0u64, 0u64, 0u8);
            while seen < want {
                let r = c.poll(Duration::from_secs(1))?;
                for rec in r.iter() {
                    let rec = rec?;
                    // Every value byte is read, as a consumer would.
                    let v = rec.value_bytes().unwrap_or_default();
                    checksum = v.iter().fold(checksum, |a, &b| a.wrapping_add(b));
                    bytes += v.len() as u64;
                    seen += 1;
                }
                if let Some(b) = &bar {
                    b.set_position(seen.min(want));
                }
                if r.is_empty() {
                    break;
                }
            }
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            std::hint::black_box(checksum);
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let (rate, mb) = (seen as f64 / secs, bytes as f64 / secs / 1e6);
            match format {
                Format::Json => {
                    print_json(out, &json!({"records": seen, "bytes": bytes, "seconds": secs, "records_per_sec": rate, "mb_per_sec": mb}))
                }
                Format::Text => {
                    writeln!(out, "{seen} records, {bytes} bytes read in {secs:.3} s: {rate:.1} records/sec ({mb:.2} MB/sec).")?;
                    Ok(())
                }
            }
        }
    }
}

// ---- transactions

fn transactions(dir: &Path, cmd: TxnCmd, out: &mut impl Write) -> Outcome {
    let describe = |t: &runnel::TransactionDescription| {
        json!({"transactional_id": t.transactional_id, "producer_id": t.producer_id, "epoch": t.producer_epoch,
            "state": format!("{:?}", t.state), "timeout_ms": t.timeout_ms, "start_ms": t.start_ms,
            "partitions": t.partitions.iter().map(|(tp, p)| format!("{tp}-{p}")).collect::<Vec<_>>()})
    };
    match cmd {
        TxnCmd::List { format } => {
            let log = open(dir)?;
            let all = log.list_transactions();
            match format {
                Format::Json => print_json(out, &json!(all.iter().map(describe).collect::<Vec<_>>()))?,
                Format::Text => {
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
                    let rows: Vec<Vec<String>> = all
                        .iter()
                        .map(|t| {
                            // How long the open transaction has been open: what an operator looks for.
                            let age = t.start_ms.map_or("-".to_string(), |s| format!("{:.1}", (now - s).max(0) as f64 / 1000.0));
                            vec![
                                t.transactional_id.clone(),
                                t.producer_id.to_string(),
                                t.producer_epoch.to_string(),
                                format!("{:?}", t.state),
                                age,
                            ]
                        })
                        .collect();
                    table(out, &["TRANSACTIONAL-ID", "PRODUCER-ID", "EPOCH", "STATE", "OPEN-FOR (s)"], &rows)?;
                }
            }
            Ok(log.close()?)
        }
        TxnCmd::Describe { id, format } => {
            let log = open(dir)?;
            let t = log
                .describe_transaction(&id)
                .ok_or_else(|| Failure(format!("no transactional id {id:?}; `runnel transactions list` shows them")))?;
            match format {
                Format::Json => print_json(out, &describe(&t))?,
                Format::Text => {
                    for (k, v) in describe(&t).as_object().into_iter().flatten() {
                        writeln!(out, "{k}: {v}")?;
                    }
                }
            }
            Ok(log.close()?)
        }
        TxnCmd::Abort { id } => {
            let log = open(dir)?;
            let aborted = log.abort_transaction(&id)?;
            writeln!(
                out,
                "{}",
                if aborted { format!("Aborted the open transaction of {id}.") } else { format!("{id} had no open transaction.") }
            )?;
            Ok(log.close()?)
        }
    }
}
