#!/usr/bin/env bash
# Runs every test: formatting and lints, the Rust unit, integration and doc tests (with the
# reliability harness's `fault-injection` feature, which the power-loss and fault-injection tests
# need), a compile of the benchmarks, and the C ABI's header check and C tests. This is what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features fault-injection -- -D warnings
cargo test --all-targets --features fault-injection
cargo test --doc
# The CLI: clippy, then its tests, which drive the built binary as a user would.
cargo clippy -p runnel-cli --all-targets -- -D warnings
cargo test -p runnel-cli
# The C ABI: clippy, the header check (include/runnel.h must match ffi/src/lib.rs), then the C test
# suite under ASan/UBSan, the C example, and an install through pkg-config (scripts/c-tests.sh).
cargo clippy -p runnel-ffi --all-targets -- -D warnings
cargo test -p runnel-ffi
bash scripts/c-tests.sh
# The Python package: installed from scratch into a virtual environment, then its pytest suite.
bash scripts/python-tests.sh
# cargo-fuzz over every parser of bytes from disk, 15 s per target (scripts/fuzz.sh; nightly only:
# without it, it says why and skips). In CI, or locally with RUNNEL_FUZZ=1, so that a local run stays
# fast; the same checks already ran on stable above (tests/fuzz_corpus.rs).
if [ -n "${CI:-}" ] || [ "${RUNNEL_FUZZ:-}" = 1 ]; then
    bash scripts/fuzz.sh --ci
fi
