//! The producer and consumer clients of chapter 4 of the Kafka primer, over an open [`Log`]:
//!
//! - [`Producer`]: `send` puts a record in a per-partition accumulator and returns a
//!   [`SendFuture`] at once; a sender thread appends full batches (or partial ones after
//!   `linger.ms`) and completes the futures and callbacks, in offset order per partition.
//!   Idempotent and transactional producers are the same `Producer` with settings.
//! - [`Consumer`]: `subscribe` (to topics or a pattern, with a [`ConsumerRebalanceListener`]) or
//!   `assign`, then `poll`, which returns as soon as records arrive; commits automatically or by
//!   hand. Consumers of one group in this process share the partitions of their subscriptions
//!   through an in-process group coordinator with Kafka's rebalance protocol (generations,
//!   Range, RoundRobin and CooperativeSticky assignment).
//! - Interceptor chains on both ([`ProducerInterceptor`], [`ConsumerInterceptor`]) and
//!   serializers for keys and values ([`Serializer`], [`Deserializer`]).
//!
//! Configuration uses Kafka's names: typed fields on [`ProducerConfig`] and [`ConsumerConfig`],
//! or `set("linger.ms", "5")` where a string map is more natural.
//!
//! [`Log`]: crate::Log

mod accumulator;
mod assignor;
mod consumer;
mod group;
mod producer;
mod serde;

pub use assignor::AssignmentStrategy;
pub use consumer::{
    CommitCallback, Consumer, ConsumerBuilder, ConsumerConfig, ConsumerInterceptor, ConsumerRebalanceListener, ConsumerRecord,
    ConsumerRecords, OffsetResetPolicy, Subscription,
};
pub(crate) use group::Coordinator as GroupCoordinator;
pub use producer::{
    Callback, PartitionFn, Partitioner, Producer, ProducerBuilder, ProducerConfig, ProducerInterceptor, ProducerRecord, RecordMetadata,
    SendFuture,
};
pub use serde::{BytesDeserializer, BytesSerializer, Deserializer, Serializer, StringDeserializer, StringSerializer};

use std::fmt;

/// A topic and a partition: what consumers are assigned, and what offsets are committed for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`-`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> TopicPartition {
        TopicPartition { topic: topic.into(), partition }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Parses a boolean config value as Kafka does.
fn parse_bool(key: &str, value: &str) -> crate::Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(crate::Error::InvalidArgument(format!("{key} must be true or false, not {value:?}"))),
    }
}

/// Parses a number config value.
fn parse_num<T: std::str::FromStr>(key: &str, value: &str) -> crate::Result<T> {
    value.parse().map_err(|_| crate::Error::InvalidArgument(format!("{key} must be a non-negative integer, not {value:?}")))
}

/// Runs user code (an interceptor, a callback, a listener) and turns a panic in it into a logged
/// error, as Kafka logs an exception from an interceptor and goes on.
fn guarded(what: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("{what} panicked; the client carries on");
    }
}
