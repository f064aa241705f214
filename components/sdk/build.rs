//! Rebuilds the bindings when the WIT changes (`wit_bindgen::generate!`
//! reads `../../wit` at compile time, outside this crate's sources).
fn main() {
    println!("cargo:rerun-if-changed=../../wit");
}
