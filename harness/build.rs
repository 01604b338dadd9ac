//! Makes `cargo test` see new scenario files without a code change.
fn main() {
    println!("cargo::rerun-if-changed=../scenarios");
}
