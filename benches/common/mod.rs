//! Helpers every benchmark shares.

#![allow(dead_code, reason = "each benchmark uses the helpers it needs")]

/// A fresh directory on the real disk (`CARGO_TARGET_TMPDIR`, not a tmpfs `/tmp`) for one benchmark.
pub fn bench_dir(prefix: &str) -> tempfile::TempDir {
    let root = env!("CARGO_TARGET_TMPDIR");
    std::fs::create_dir_all(root).expect("create CARGO_TARGET_TMPDIR");
    tempfile::Builder::new().prefix(prefix).tempdir_in(root).expect("create a bench directory")
}

/// Deterministic, non-constant value bytes.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()
}

/// Whether this is a real benchmark run (`cargo bench`), not criterion's test or list mode.
pub fn full_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}
