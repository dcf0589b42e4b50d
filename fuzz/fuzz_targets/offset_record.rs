//! Fuzz target `offset_record`: see `checks::offset_record` in fuzz/checks.rs for what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::offset_record(data));
