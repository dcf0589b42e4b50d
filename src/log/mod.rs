//! One partition's log: append with group commit, fetch, roll, retention, recovery.

pub mod fetch;
pub mod partition;
pub(crate) mod producer_state;
pub(crate) mod reader;
pub(crate) mod recovery;

pub use fetch::{Batches, Fetched, Records};
pub use partition::{AppendResult, Partition};
pub use recovery::RecoveryReport;
