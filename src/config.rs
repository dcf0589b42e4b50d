//! Options: per-topic configuration under Kafka's names, acks levels, and the options of a data directory.

use std::time::Duration;

use crate::error::{Error, Result};
pub use crate::format::TimestampType;

/// How long an append waits, and so what survives once it returns: Kafka's `acks` on one machine.
///
/// | acks | returns when | survives a process crash | survives an OS crash or power loss |
/// |------|--------------|--------------------------|------------------------------------|
/// | `Zero` | the batch is in the page cache | yes | only once synced (flush.ms, `sync`, or a later acks=all append) |
/// | `One` | the batch is in the page cache | yes | as above |
/// | `All` | the batch is fsync'd (group commit) | yes | yes |
///
/// In the engine an append is one in-process call, so `Zero` and `One` do the same work; they
/// differ in the producer client, where `Zero` completes a send without waiting for the append.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Acks {
    /// acks=0: fire and forget.
    Zero,
    /// acks=1: written to the OS page cache.
    One,
    /// acks=all (-1): fsync'd before the call returns. The default.
    #[default]
    All,
}

impl std::str::FromStr for Acks {
    type Err = Error;
    fn from_str(s: &str) -> Result<Acks> {
        match s {
            "0" => Ok(Acks::Zero),
            "1" => Ok(Acks::One),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(Error::InvalidArgument(format!("acks must be 0, 1 or all, not {s:?}"))),
        }
    }
}

/// Which records a fetch returns, as Kafka's consumer config `isolation.level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IsolationLevel {
    /// Every record below the high watermark, including those of open and aborted transactions.
    /// Kafka's default.
    #[default]
    ReadUncommitted,
    /// Only committed records: stops at the last stable offset (the first offset of the earliest
    /// open transaction) and skips the records of aborted transactions.
    ReadCommitted,
}

impl std::str::FromStr for IsolationLevel {
    type Err = Error;
    fn from_str(s: &str) -> Result<IsolationLevel> {
        match s {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            _ => Err(Error::InvalidArgument(format!("isolation level must be read_committed or read_uncommitted, not {s:?}"))),
        }
    }
}

/// What the high watermark, and so what readers may see, stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HighWatermark {
    /// The high watermark is the end of fsync'd data: a reader never sees a record that an OS
    /// crash or power loss could take back. acks=0/1 records become visible when synced (every
    /// `flush.ms`, on `sync`, or with the next acks=all append). The default.
    #[default]
    Durable,
    /// The high watermark is the log end offset: records are visible as soon as they are in the
    /// page cache. A process crash cannot take them back; a power loss can.
    Written,
}

/// A topic's configuration. Field names mirror Kafka's topic configs (`segment.bytes` is
/// `segment_bytes`); [`TopicConfig::set`] takes the Kafka names as strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// `segment.bytes`: roll to a new segment once the active one would pass this size. Default 1 GiB.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment's first append is this old. Default 7 days.
    pub segment_ms: Option<u64>,
    /// `index.interval.bytes`: bytes of log between two index entries. Default 4096.
    pub index_interval_bytes: u64,
    /// `retention.ms`: delete segments whose newest record is older. `None` keeps forever. Default 168 hours.
    pub retention_ms: Option<u64>,
    /// `retention.bytes`: delete the oldest segments while the partition is larger. `None` (the default) has no limit.
    pub retention_bytes: Option<u64>,
    /// `max.message.bytes`: the largest record batch accepted. Default 1048588, as in Kafka.
    pub max_message_bytes: u64,
    /// `message.timestamp.type`: CreateTime (the default) or LogAppendTime.
    pub message_timestamp_type: TimestampType,
    /// `flush.ms`: how often unsynced data is fsync'd in the background. Default 100.
    pub flush_ms: u64,
    /// `high.watermark`: `durable` (the default) or `written`; see [`HighWatermark`].
    pub high_watermark: HighWatermark,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            retention_ms: Some(168 * 3600 * 1000),
            retention_bytes: None,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            flush_ms: 100,
            high_watermark: HighWatermark::Durable,
        }
    }
}

/// The config keys a topic accepts.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "retention.ms",
    "retention.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "flush.ms",
    "high.watermark",
];

fn parse_u64(key: &str, value: &str) -> Result<u64> {
    value.parse::<u64>().map_err(|_| Error::InvalidArgument(format!("{key} must be a non-negative integer, not {value:?}")))
}

fn parse_optional(key: &str, value: &str) -> Result<Option<u64>> {
    if value == "-1" { Ok(None) } else { parse_u64(key, value).map(Some) }
}

fn optional(v: Option<u64>) -> String {
    v.map_or("-1".to_string(), |v| v.to_string())
}

impl TopicConfig {
    /// Sets one config by its Kafka name, e.g. `set("retention.ms", "3600000")`. `-1` means
    /// "no limit" for `retention.ms`, `retention.bytes` and `segment.ms`.
    /// A rejected value leaves the config unchanged.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let mut next = self.clone();
        next.set_unchecked(key, value)?;
        next.validate()?;
        *self = next;
        Ok(())
    }

    fn set_unchecked(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "segment.bytes" => self.segment_bytes = parse_u64(key, value)?,
            "segment.ms" => self.segment_ms = parse_optional(key, value)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_u64(key, value)?,
            "retention.ms" => self.retention_ms = parse_optional(key, value)?,
            "retention.bytes" => self.retention_bytes = parse_optional(key, value)?,
            "max.message.bytes" => self.max_message_bytes = parse_u64(key, value)?,
            "message.timestamp.type" => {
                self.message_timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "message.timestamp.type must be CreateTime or LogAppendTime, not {value:?}"
                        )));
                    }
                }
            }
            "flush.ms" => self.flush_ms = parse_u64(key, value)?,
            "high.watermark" => {
                self.high_watermark = match value {
                    "durable" => HighWatermark::Durable,
                    "written" => HighWatermark::Written,
                    _ => return Err(Error::InvalidArgument(format!("high.watermark must be durable or written, not {value:?}"))),
                }
            }
            "cleanup.policy" if value == "delete" => {}
            "cleanup.policy" => return Err(Error::InvalidArgument("cleanup.policy=compact is not supported; only delete".into())),
            _ => return Err(Error::InvalidArgument(format!("unknown topic config {key:?} (known: {})", TOPIC_CONFIG_KEYS.join(", ")))),
        }
        Ok(())
    }

    /// The configs of `self` that differ from Kafka's defaults ([`TopicConfig::default`]), by name.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let defaults = TopicConfig::default().entries();
        self.entries().into_iter().zip(defaults).filter(|(set, default)| set != default).map(|(set, _)| set).collect()
    }

    /// Every config as `(kafka.name, value)`, in a fixed order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", optional(self.segment_ms)),
            ("index.interval.bytes", self.index_interval_bytes.to_string()),
            ("retention.ms", optional(self.retention_ms)),
            ("retention.bytes", optional(self.retention_bytes)),
            ("max.message.bytes", self.max_message_bytes.to_string()),
            (
                "message.timestamp.type",
                match self.message_timestamp_type {
                    TimestampType::CreateTime => "CreateTime",
                    TimestampType::LogAppendTime => "LogAppendTime",
                }
                .to_string(),
            ),
            ("flush.ms", self.flush_ms.to_string()),
            (
                "high.watermark",
                match self.high_watermark {
                    HighWatermark::Durable => "durable",
                    HighWatermark::Written => "written",
                }
                .to_string(),
            ),
        ]
    }

    /// Checks the values against each other and the format's limits.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        // Positions in the index are 32-bit, as in Kafka.
        if self.segment_bytes < 1024 || self.segment_bytes > i32::MAX as u64 {
            return bad(format!("segment.bytes must be between 1024 and {}, not {}", i32::MAX, self.segment_bytes));
        }
        if self.max_message_bytes < 128 || self.max_message_bytes > i32::MAX as u64 {
            return bad(format!("max.message.bytes must be between 128 and {}, not {}", i32::MAX, self.max_message_bytes));
        }
        if self.index_interval_bytes == 0 {
            return bad("index.interval.bytes must be positive".into());
        }
        if self.segment_ms == Some(0) {
            return bad("segment.ms must be positive or -1".into());
        }
        Ok(())
    }

    /// The most bytes one segment file can hold: a segment takes one batch past `segment.bytes`
    /// only when it is empty.
    pub fn segment_capacity(&self) -> u64 {
        self.segment_bytes.max(self.max_message_bytes)
    }
}

/// Options for opening a data directory, as a builder.
///
/// ```
/// let options = runnel::LogOptions::default().max_open_segments(64);
/// ```
#[derive(Clone, Debug)]
pub struct LogOptions {
    pub(crate) default_topic_config: TopicConfig,
    pub(crate) background: bool,
    pub(crate) max_open_segments: usize,
    pub(crate) retention_check_interval: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) offsets_topic_segment_bytes: u64,
    pub(crate) producer_id_expiration: Duration,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            default_topic_config: TopicConfig::default(),
            background: true,
            max_open_segments: 256,
            retention_check_interval: Duration::from_secs(300),
            checkpoint_interval: Duration::from_secs(60),
            offsets_topic_segment_bytes: 32 << 20,
            producer_id_expiration: Duration::from_secs(24 * 3600),
        }
    }
}

impl LogOptions {
    /// Options with Kafka's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The config a topic gets for keys its creator does not set.
    pub fn default_topic_config(mut self, config: TopicConfig) -> Self {
        self.default_topic_config = config;
        self
    }

    /// Whether a background thread flushes (flush.ms), applies retention and writes checkpoints.
    /// Default true. Without it, call [`crate::Log::sync_all`] and [`crate::Log::run_retention`] yourself.
    pub fn background_maintenance(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// How many sealed segments may be mapped at once (open files and mappings stay bounded).
    /// Default 256.
    pub fn max_open_segments(mut self, n: usize) -> Self {
        self.max_open_segments = n;
        self
    }

    /// `log.retention.check.interval.ms`: how often the background thread applies retention. Default 5 minutes.
    pub fn retention_check_interval(mut self, d: Duration) -> Self {
        self.retention_check_interval = d;
        self
    }

    /// `offsets.topic.segment.bytes`: segment size of `__consumer_offsets`, which is snapshotted
    /// and trimmed each time a segment fills. Default 32 MiB, at least 64 KiB.
    pub fn offsets_topic_segment_bytes(mut self, n: u64) -> Self {
        self.offsets_topic_segment_bytes = n.max(64 << 10);
        self
    }

    /// `producer.id.expiration.ms`: a partition forgets an idempotent producer that has not
    /// appended to it for this long (and has no transaction open), so memory does not grow with
    /// every producer ever seen. A producer that comes back later gets
    /// [`crate::Error::UnknownProducerId`] for a sequence other than 0. Checked with retention.
    /// Default 1 day.
    pub fn producer_id_expiration(mut self, d: Duration) -> Self {
        self.producer_id_expiration = d;
        self
    }

    /// How often the background thread writes the recovery-point checkpoint. Default 60 seconds.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }
}
