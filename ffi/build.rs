//! Gives the shared library the name it is installed under (`librunnel.so.0`), so that programs
//! linked against the installed `librunnel.so` look for `librunnel.so.0` at run time.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,librunnel.so.0");
}
