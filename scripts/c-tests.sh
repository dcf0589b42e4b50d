#!/usr/bin/env bash
# Builds the C library (debug) and runs the C test suite (ffi/tests/c/test_runnel.c) and the C
# example, compiled with the system cc under AddressSanitizer and UndefinedBehaviorSanitizer, leak
# checking on: any memory error or leak fails the run. Valgrind is not used: the valgrind of this
# Debian does not know the AVX-512 instructions the CRC code uses on this machine's CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -p runnel-ffi
out="${CARGO_TARGET_DIR:-target}/c-tests"
mkdir -p "$out"
out=$(cd "$out" && pwd)
lib="${CARGO_TARGET_DIR:-target}/debug/librunnel_ffi.a"
cflags=(-std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=address,undefined -fno-omit-frame-pointer -Iinclude)
libs=("$lib" -lgcc_s -lutil -lrt -lpthread -lm -ldl)
cc "${cflags[@]}" ffi/tests/c/test_runnel.c "${libs[@]}" -o "$out/test_runnel"
cc "${cflags[@]}" examples/c/quickstart.c "${libs[@]}" -o "$out/quickstart"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
"$out/test_runnel" "$scratch"
(cd "$scratch" && "$out/quickstart" > quickstart.out && grep -q "offset 0" quickstart.out)
# The packaging: install under a prefix and build the example against the shared library through
# pkg-config, as a C developer would.
bash scripts/install-c.sh "$scratch/prefix" --debug > /dev/null
pc="$scratch/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror examples/c/quickstart.c $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs runnel) \
    -Wl,-rpath,"$scratch/prefix/lib" -o "$scratch/quickstart-shared"
(cd "$scratch" && ./quickstart-shared | grep -q "offset 0")
echo "C tests, the example and the installed library passed (ASan/UBSan for the tests)"
