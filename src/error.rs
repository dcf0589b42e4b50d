//! The one public error type: every variant says what went wrong and where, so a caller can act on it.

use std::io;
use std::path::PathBuf;

/// Shorthand for `Result<T, runnel::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in runnel.
///
/// New variants may be added in later versions; match with a wildcard arm.
/// [`Error::code`] gives a stable number for each variant, which the C ABI uses.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another handle, in this process or another, holds the data directory for writing.
    #[error("data directory {dir} is locked by another writer")]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// A topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The topic already exists.
    #[error("topic {topic:?} already exists")]
    TopicExists {
        /// The topic.
        topic: String,
    },
    /// The topic, or the partition within it, does not exist.
    #[error("unknown topic or partition: {topic:?} partition {partition:?}")]
    UnknownTopicOrPartition {
        /// The topic.
        topic: String,
        /// The partition, when one was named.
        partition: Option<u32>,
    },
    /// A partition count, config key or value, or argument is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The requested offset is outside `[log_start, high_watermark]`.
    #[error("offset {requested} is out of range: log start offset is {log_start}, high watermark is {high_watermark}")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The first offset still in the log.
        log_start: u64,
        /// The end of what readers may see.
        high_watermark: u64,
    },
    /// A batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    RecordTooLarge {
        /// The encoded size of the batch.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Bytes read from disk are not what runnel wrote.
    #[error("corrupt data in {path} at byte {position}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte position in the file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// An operating-system call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (open, write, fdatasync, rename, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A write or sync failed earlier, so this partition refuses appends until the log is reopened:
    /// a retried fsync can report success for pages the kernel already dropped.
    #[error("partition {topic}-{partition} refuses writes after an earlier I/O failure; reopen the log")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
    },
    /// The handle was opened read-only, or the topic is internal and written only by runnel.
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
    /// A newer incarnation of this producer exists (its transactional id was initialised again, or
    /// its transaction timed out and was aborted): this one may no longer write.
    #[error("producer {producer_id} at epoch {epoch} is fenced: epoch {current_epoch} has taken over")]
    ProducerFenced {
        /// The producer id.
        producer_id: i64,
        /// The epoch of the refused call.
        epoch: i16,
        /// The epoch now in charge.
        current_epoch: i16,
    },
    /// A batch from an idempotent producer does not continue its sequence: a batch before it is
    /// missing. Nothing was written.
    #[error("out-of-order sequence from producer {producer_id} on {topic}-{partition}: expected {expected}, received {received}")]
    OutOfOrderSequence {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: i64,
        /// The sequence the partition expects next.
        expected: i32,
        /// The batch's first sequence.
        received: i32,
    },
    /// The partition has no state for this producer (it never wrote here, or its state expired
    /// after `producer.id.expiration.ms`), and the batch does not start at sequence 0.
    #[error("unknown producer id {producer_id} on {topic}-{partition} for sequence {sequence}")]
    UnknownProducerId {
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The producer id.
        producer_id: i64,
        /// The batch's first sequence.
        sequence: i32,
    },
    /// A transactional call out of turn: send or commit without `begin`, `begin` twice, a
    /// transactional id that is not valid.
    #[error("invalid transaction state: {0}")]
    InvalidTransactionState(String),
    /// A call waited as long as it was allowed to: a producer's `send` for buffer space
    /// (`max.block.ms`), or `close` and `flush` for their timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A consumer's offset commit was refused because the consumer no longer owns the partition:
    /// the group rebalanced (or dropped the member after `max.poll.interval.ms`) since it was
    /// assigned. Poll again to rejoin; the records after the last commit will be redelivered to
    /// whichever member owns the partition now (Kafka's `CommitFailedException`).
    #[error("commit failed: {0}")]
    CommitFailed(String),
}

/// A copy of the error for each of the many places one failure is reported (a failed batch fails
/// the future and the callback of every record in it). An [`Error::Io`] copy keeps the OS error
/// number and message.
impl Clone for Error {
    fn clone(&self) -> Error {
        match self {
            Error::Locked { dir } => Error::Locked { dir: dir.clone() },
            Error::InvalidTopic { name, reason } => Error::InvalidTopic { name: name.clone(), reason },
            Error::TopicExists { topic } => Error::TopicExists { topic: topic.clone() },
            Error::UnknownTopicOrPartition { topic, partition } => {
                Error::UnknownTopicOrPartition { topic: topic.clone(), partition: *partition }
            }
            Error::InvalidArgument(s) => Error::InvalidArgument(s.clone()),
            Error::OffsetOutOfRange { requested, log_start, high_watermark } => {
                Error::OffsetOutOfRange { requested: *requested, log_start: *log_start, high_watermark: *high_watermark }
            }
            Error::RecordTooLarge { size, max } => Error::RecordTooLarge { size: *size, max: *max },
            Error::Corrupt { path, position, reason } => Error::Corrupt { path: path.clone(), position: *position, reason: reason.clone() },
            Error::Io { op, path, source } => {
                let source = match source.raw_os_error() {
                    Some(n) => io::Error::from_raw_os_error(n),
                    None => io::Error::new(source.kind(), source.to_string()),
                };
                Error::Io { op, path: path.clone(), source }
            }
            Error::Poisoned { topic, partition } => Error::Poisoned { topic: topic.clone(), partition: *partition },
            Error::ReadOnly(s) => Error::ReadOnly(s.clone()),
            Error::Closed => Error::Closed,
            Error::ProducerFenced { producer_id, epoch, current_epoch } => {
                Error::ProducerFenced { producer_id: *producer_id, epoch: *epoch, current_epoch: *current_epoch }
            }
            Error::OutOfOrderSequence { topic, partition, producer_id, expected, received } => Error::OutOfOrderSequence {
                topic: topic.clone(),
                partition: *partition,
                producer_id: *producer_id,
                expected: *expected,
                received: *received,
            },
            Error::UnknownProducerId { topic, partition, producer_id, sequence } => {
                Error::UnknownProducerId { topic: topic.clone(), partition: *partition, producer_id: *producer_id, sequence: *sequence }
            }
            Error::InvalidTransactionState(s) => Error::InvalidTransactionState(s.clone()),
            Error::Timeout(s) => Error::Timeout(s.clone()),
            Error::CommitFailed(s) => Error::CommitFailed(s.clone()),
        }
    }
}

impl Error {
    /// A stable number for this kind of error. Never renumbered; the C ABI exposes the same values.
    pub fn code(&self) -> u32 {
        match self {
            Error::Locked { .. } => 5,
            Error::InvalidTopic { .. } => 10,
            Error::TopicExists { .. } => 11,
            Error::UnknownTopicOrPartition { .. } => 12,
            Error::InvalidArgument(_) => 13,
            Error::OffsetOutOfRange { .. } => 14,
            Error::RecordTooLarge { .. } => 15,
            Error::Corrupt { .. } => 16,
            Error::Io { .. } => 17,
            Error::Poisoned { .. } => 18,
            Error::ReadOnly(_) => 19,
            Error::Closed => 20,
            Error::ProducerFenced { .. } => 21,
            Error::OutOfOrderSequence { .. } => 22,
            Error::UnknownProducerId { .. } => 23,
            Error::InvalidTransactionState(_) => 24,
            Error::Timeout(_) => 25,
            Error::CommitFailed(_) => 26,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Error {
        Error::Corrupt { path: path.into(), position, reason: reason.into() }
    }

    pub(crate) fn unknown(topic: &str, partition: Option<u32>) -> Error {
        Error::UnknownTopicOrPartition { topic: topic.to_string(), partition }
    }
}
