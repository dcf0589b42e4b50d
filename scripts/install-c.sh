#!/usr/bin/env bash
# Builds the C library and installs it under a prefix (default /usr/local):
#   PREFIX/include/runnel.h
#   PREFIX/lib/librunnel.so.0, librunnel.so -> librunnel.so.0, librunnel.a
#   PREFIX/lib/pkgconfig/runnel.pc
# Usage: bash scripts/install-c.sh [PREFIX] [--debug]
# Then: cc app.c $(PKG_CONFIG_PATH=PREFIX/lib/pkgconfig pkg-config --cflags --libs runnel)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=/usr/local
profile=release
for a in "$@"; do
    case "$a" in
        --debug) profile=debug ;;
        *) prefix="$a" ;;
    esac
done
if [ "$profile" = release ]; then
    cargo build --release -p runnel-ffi
else
    cargo build -p runnel-ffi
fi
target="${CARGO_TARGET_DIR:-target}/$profile"
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' ffi/Cargo.toml | head -1)
mkdir -p "$prefix/include" "$prefix/lib/pkgconfig"
install -m 644 include/runnel.h "$prefix/include/runnel.h"
install -m 755 "$target/librunnel_ffi.so" "$prefix/lib/librunnel.so.0"
ln -sf librunnel.so.0 "$prefix/lib/librunnel.so"
install -m 644 "$target/librunnel_ffi.a" "$prefix/lib/librunnel.a"
cat > "$prefix/lib/pkgconfig/runnel.pc" <<PC
prefix=$prefix
includedir=\${prefix}/include
libdir=\${prefix}/lib

Name: runnel
Description: An embedded Kafka-style partitioned log
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lrunnel
Libs.private: -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
PC
echo "installed runnel $version under $prefix"
