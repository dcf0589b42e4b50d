#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit, integration and doc tests, and a compile of
# the benchmarks. This is what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
cargo test --doc
