//! Pure encoding and decoding of everything runnel writes: record batches, varints, index entries
//! and the small metadata files. No I/O happens here, so every parser can be fuzzed directly.

pub mod batch;
pub mod index;
pub mod meta;
pub mod record;
pub mod scan;
pub mod txn;
pub mod varint;

pub use batch::{BatchHeader, BatchView, Headers, RecordView, TimestampType};
pub use record::{Header, Record};
