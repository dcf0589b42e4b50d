//! Serializers and deserializers for record keys and values: Kafka's `key.serializer` and
//! `value.deserializer`, as traits with byte and string implementations.

use crate::{Error, Result};

/// Turns a key or value into bytes. Runs in the thread that calls [`super::Producer::send`].
///
/// ```
/// use runnel::clients::Serializer;
/// struct Celsius;
/// impl Serializer<f64> for Celsius {
///     fn serialize(&self, _topic: &str, value: &f64, out: &mut Vec<u8>) -> runnel::Result<()> {
///         out.extend_from_slice(&value.to_le_bytes());
///         Ok(())
///     }
/// }
/// ```
pub trait Serializer<T: ?Sized>: Send + Sync {
    /// Appends the encoding of `value` to `out`, which may already hold other bytes (append to
    /// it; do not clear it). An error fails the send.
    fn serialize(&self, topic: &str, value: &T, out: &mut Vec<u8>) -> Result<()>;
}

/// Turns the bytes of a key or value back into a value. Runs when a [`super::ConsumerRecord`]'s
/// `key()` or `value()` is called, in the consumer's thread.
pub trait Deserializer<T>: Send + Sync {
    /// Decodes `bytes`. An error is returned from the `key()` or `value()` call that asked.
    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<T>;
}

/// Keys and values that are bytes already (`Vec<u8>`, `&[u8]`, `String`, anything `AsRef<[u8]>`).
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesSerializer;

impl<T: AsRef<[u8]> + ?Sized> Serializer<T> for BytesSerializer {
    fn serialize(&self, _topic: &str, value: &T, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(value.as_ref());
        Ok(())
    }
}

/// Strings as UTF-8 (Kafka's `StringSerializer`).
#[derive(Clone, Copy, Debug, Default)]
pub struct StringSerializer;

impl<T: AsRef<str> + ?Sized> Serializer<T> for StringSerializer {
    fn serialize(&self, _topic: &str, value: &T, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(value.as_ref().as_bytes());
        Ok(())
    }
}

/// Bytes as a `Vec<u8>` (a copy; [`super::ConsumerRecord::value_bytes`] borrows them instead).
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesDeserializer;

impl Deserializer<Vec<u8>> for BytesDeserializer {
    fn deserialize(&self, _topic: &str, bytes: &[u8]) -> Result<Vec<u8>> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 bytes as a `String` (Kafka's `StringDeserializer`); other bytes are an
/// [`Error::InvalidArgument`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StringDeserializer;

impl Deserializer<String> for StringDeserializer {
    fn deserialize(&self, topic: &str, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| Error::InvalidArgument(format!("a record of topic {topic:?} is not UTF-8: {e}")))
    }
}
