//! include/runnel.h must be exactly what cbindgen makes of the crate: the header and the Rust side
//! cannot drift apart. `RUNNEL_BLESS=1 cargo test -p runnel-ffi --test header` rewrites it.

use std::path::PathBuf;

#[test]
fn the_header_matches_the_rust_side() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("ffi/cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut generated);
    let path = crate_dir.join("../include/runnel.h");
    if std::env::var_os("RUNNEL_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write include/runnel.h");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/runnel.h is out of date with ffi/src/lib.rs; run `RUNNEL_BLESS=1 cargo test -p runnel-ffi --test header` and commit it"
    );
}
