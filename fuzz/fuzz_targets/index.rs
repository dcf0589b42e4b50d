//! Fuzz target `index`: see `checks::index` in fuzz/checks.rs for what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::index(data));
