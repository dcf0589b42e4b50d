//! Fuzz target `partition_metadata`: see `checks::partition_metadata` in fuzz/checks.rs for what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::partition_metadata(data));
