//! Fuzz target `txn_state`: see `checks::txn_state` in fuzz/checks.rs for what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::txn_state(data));
