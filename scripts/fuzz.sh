#!/usr/bin/env bash
# Fuzzes every parser of bytes read from disk with cargo-fuzz (libFuzzer, nightly toolchain): the
# targets in fuzz/fuzz_targets/, whose invariant checks (fuzz/checks.rs) tests/fuzz_corpus.rs also
# runs on the stable toolchain as part of `cargo test`.
#
#   scripts/fuzz.sh                 every target for 60 s
#   scripts/fuzz.sh --ci            every target for 15 s (what CI runs, from scripts/test.sh)
#   scripts/fuzz.sh --time 300 scan one target for 300 s
#   scripts/fuzz.sh --grow          also merge inputs that add coverage into fuzz/corpus/<target>
#
# Each run starts from the committed corpus, fuzz/corpus/<target>/, and writes what it finds to a
# scratch copy under fuzz/target/ (ignored by git), so the committed corpora stay small and the
# work tree stays clean; --grow merges (libFuzzer -merge=1: only inputs that add coverage) into the
# committed corpus. Crashes are saved under fuzz/artifacts/<target>/ (ignored by git): keep each
# as fuzz/artifacts-regressions/<target>/<name> with a test in tests/fuzz_regressions.rs.
#
# Without a nightly toolchain this prints why and exits 0. cargo-fuzz is installed if missing.
# Prints, per target, libFuzzer's executions (stat::number_of_executed_units) and exits non-zero if
# any target failed.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=60
grow=0
only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --ci) secs=15 ;;
        --grow) grow=1 ;;
        --time)
            secs="${2:?--time needs a number of seconds}"
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        -*)
            echo "fuzz.sh: unknown option $1 (try --help)" >&2
            exit 2
            ;;
        *) only="$1" ;;
    esac
    shift
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: skipping the cargo-fuzz run: no nightly toolchain (\`cargo +nightly\` fails), and cargo-fuzz needs"
    echo "fuzz.sh: nightly (-Zsanitizer). The same checks ran on stable in \`cargo test --test fuzz_corpus\`."
    exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# "name max_len" per target, from the one table in fuzz/checks.rs.
targets=$(sed -n 's/.*Target { name: "\([a-z_]*\)", check: [a-z_]*, max_len: \([0-9]*\) }.*/\1 \2/p' fuzz/checks.rs)
if [ -z "$targets" ]; then
    echo "fuzz.sh: found no targets in fuzz/checks.rs" >&2
    exit 1
fi
if [ -n "$only" ]; then
    targets=$(echo "$targets" | awk -v t="$only" '$1 == t')
    if [ -z "$targets" ]; then
        echo "fuzz.sh: unknown target $only" >&2
        exit 2
    fi
fi

start=$(date +%s)
cargo +nightly fuzz build
built=$(date +%s)
echo "fuzz.sh: built the fuzz targets in $((built - start)) s"

scratch=fuzz/target/fuzz-runs
summary=""
failed=0
while read -r t max_len; do
    work="$scratch/corpus/$t"
    rm -rf "$work"
    mkdir -p "$work" "$scratch/logs"
    log="$scratch/logs/$t.log"
    echo "fuzz.sh: $t for $secs s (max_len $max_len)"
    result=ok
    if ! cargo +nightly fuzz run "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -malloc_limit_mb=512 -max_len="$max_len" -timeout=10 \
        -print_final_stats=1 >"$log" 2>&1; then
        result=FAILED
        failed=1
        grep -E "panicked at|^thread .* panicked|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY|Test unit written|^Base64" "$log" | head -20 || true
        echo "fuzz.sh: $t failed; the whole log is $log"
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\)[[:space:]]*DONE.*/\1/p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    added=$(sed -n 's/^stat::new_units_added: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    line=$(printf '%-20s %6s %12s %9s %10s  %s' "$t" "$secs" "${execs:--}" "${rate:--}" "${added:--}" "$result")
    echo "fuzz.sh: $line"
    summary="$summary$line"$'\n'
    if [ "$grow" = 1 ] && [ "$result" = ok ]; then
        before=$(find "fuzz/corpus/$t" -type f | wc -l)
        cargo +nightly fuzz run "$t" "fuzz/corpus/$t" "$work" -- -merge=1 -max_len="$max_len" >>"$log" 2>&1
        echo "fuzz.sh: $t: merged into fuzz/corpus/$t ($before -> $(find "fuzz/corpus/$t" -type f | wc -l) files)"
    fi
done <<<"$targets"

echo
echo "fuzz.sh: summary (libFuzzer's final stats; build $((built - start)) s, total $(($(date +%s) - start)) s)"
printf 'fuzz.sh: %-20s %6s %12s %9s %10s  %s\n' target seconds executions exec/s new-units result
printf '%s' "$summary" | sed 's/^/fuzz.sh: /'
exit "$failed"
