//! runnel: an embedded Kafka-style partitioned log. Open a data directory and get topics,
//! partitions, offsets, retention and consumer-group offsets, with no server to run.
//!
//! The code is layered, each layer using only those below it:
//!
//! | layer | module | job |
//! |-------|--------|-----|
//! | format | [`format`] | pure encoding and decoding of batches, indexes, metadata |
//! | storage | `storage` | the I/O seam, segments and their mappings (the only `unsafe`) |
//! | log | [`log`] | one partition: append, fetch, roll, retention, recovery |
//! | catalog | [`Log`] | the data directory: lock, topics, checkpoints, maintenance |
//! | clients | [`partitioner`], consumer-group offsets, [`transactions`], [`clients`] (Producer, Consumer) | built on the layers below |
//!
//! ```
//! use runnel::{Acks, Log, LogOptions, Record, TopicConfig};
//! # fn main() -> runnel::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! let log = Log::open(dir.path(), LogOptions::default())?;
//! log.create_topic("events", 1, TopicConfig::default())?;
//! log.append("events", Some(0), &[Record::new(b"hello"), Record::new(b"world")], Acks::All)?;
//! let fetched = log.fetch("events", 0, 0, 1 << 20)?;
//! let values: Vec<_> = fetched.records().map(|r| r.map(|r| r.value)).collect::<runnel::Result<_>>()?;
//! assert_eq!(values, [Some(&b"hello"[..]), Some(&b"world"[..])]);
//! # Ok(()) }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod catalog;
pub mod clients;
mod config;
mod error;
pub mod format;
mod groups;
pub mod inspect;
mod internal;
pub mod log;
pub mod partitioner;
mod storage;
pub mod transactions;

pub use catalog::names::{MAX_TOPIC_NAME_LEN, validate_topic_name};
pub use catalog::{
    CATALOG_FILE, CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, LOCK_FILE, Log, MAX_OFFSET_METADATA_BYTES, PartitionDescription, QUARANTINE_DIR,
    SegmentInfo, SendResult, TopicDescription,
};
pub use config::{Acks, HighWatermark, IsolationLevel, LogOptions, TOPIC_CONFIG_KEYS, TimestampType, TopicConfig};
pub use error::{Error, Result};
pub use format::txn::AbortedTxn;
pub use format::{Header, Headers, Record, RecordView};
pub use groups::{CONSUMER_OFFSETS_TOPIC, OffsetAndMetadata, OffsetCommit, PartitionLag};
pub use log::{AppendResult, Fetched, RecoveryReport};
pub use transactions::{
    IdempotentProducer, ProducerBatch, TRANSACTION_STATE_TOPIC, TransactionDescription, TransactionOptions, TransactionState,
    TransactionalProducer,
};

/// The reliability harness's hooks (feature `fault-injection`): the I/O seam's traits, a simulated
/// file system with power loss and fault injection, and [`Log::open_with_vfs`] / [`Log::abandon`].
#[cfg(feature = "fault-injection")]
pub mod testing {
    pub use crate::storage::sim::{Fault, Op, SimFs};
    pub use crate::storage::vfs::{DirEntry, Mapping, OpenMode, OsFs, VFile, Vfs};

    /// Shared mode ([`crate::Log::open_shared`]): the `n`-th append of this process from now
    /// (1: the next) copies half of its batch into the segment while holding the partition's
    /// append lock, then kills the process with SIGKILL, so that tests can place a death inside
    /// the critical section. 0 disarms it.
    pub fn kill_inside_append(n: u64) {
        crate::log::partition::KILL_INSIDE_APPEND.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The README's Rust example is compiled as a doc test so that it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
