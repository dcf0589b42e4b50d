//! Fuzz target `producer_snapshot`: see `checks::producer_snapshot` in fuzz/checks.rs for what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::producer_snapshot(data));
