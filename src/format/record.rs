//! Records as the caller hands them to `append`: borrowed key, value, headers and timestamp.

/// One header of a record: a key and a nullable value, as in Kafka.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// The header's key (UTF-8 by convention, as in Kafka; stored as bytes).
    pub key: &'a [u8],
    /// The header's value; `None` is a null value.
    pub value: Option<&'a [u8]>,
}

impl<'a> Header<'a> {
    /// A header with a value.
    pub fn new(key: &'a [u8], value: &'a [u8]) -> Self {
        Header { key, value: Some(value) }
    }
}

/// A record to append: what Kafka calls a `ProducerRecord`, minus topic and partition.
///
/// ```
/// use runnel::{Header, Record};
/// let headers = [Header::new(b"trace", b"42")];
/// let record = Record::new(b"payload").with_key(b"user-7").with_headers(&headers).with_timestamp(1_700_000_000_000);
/// assert_eq!(record.key, Some(&b"user-7"[..]));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key; `None` is a null key (the partitioner then goes round-robin).
    pub key: Option<&'a [u8]>,
    /// The value; `None` is a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers, in order.
    pub headers: &'a [Header<'a>],
    /// Milliseconds since the Unix epoch. `None` means "now" at append. Ignored for topics with
    /// `message.timestamp.type=LogAppendTime`, where the log sets it.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record with this value, no key, no headers, timestamped at append.
    pub fn new(value: &'a [u8]) -> Self {
        Record { value: Some(value), ..Record::default() }
    }

    /// A record with a key and a null value: a tombstone for that key.
    pub fn tombstone(key: &'a [u8]) -> Self {
        Record { key: Some(key), ..Record::default() }
    }

    /// Bytes of key, value and headers: a lower bound of the record's encoded size.
    pub fn payload_len(&self) -> usize {
        self.key.map_or(0, <[u8]>::len)
            + self.value.map_or(0, <[u8]>::len)
            + self.headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len)).sum::<usize>()
    }

    /// Sets the key.
    pub fn with_key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a [Header<'a>]) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the timestamp (milliseconds since the Unix epoch).
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}
