//! Passes the target triple to the crate, only so that an unsupported target
//! fails to compile with its name in the message (see `src/backends.rs`).
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=ICACHE_COHERENCE_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
