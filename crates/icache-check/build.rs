//! Builds the QEMU plugins (this package's own library, as a `cdylib`, once
//! per plugin API version: see `src/qemu_api.rs`) so that the runner can
//! carry them inside its executable and pick one by QEMU's version.
//!
//! Why: `cargo install` installs binaries only, never a `cdylib`, so a runner
//! that looked for `libicache_check.so` next to itself would be installed
//! without its plugin. Stable cargo has no way for a binary to depend on a
//! `cdylib` artifact (artifact dependencies are `-Z bindeps`, unstable), so
//! this script runs a second cargo that builds the library into a target
//! directory of its own under `OUT_DIR`, and hands the `.so`'s path to
//! `src/main.rs` (`ICACHE_CHECK_PLUGIN_V1`, `ICACHE_CHECK_PLUGIN_V4`), which
//! embeds it with `include_bytes!`. The API 1 plugin reads registers in a
//! way only x86-64 hosts allow, so other hosts get the API 4 plugin alone.
//!
//! The nested cargo builds this very package, so it runs this script again;
//! [`NESTED`] tells that run to do nothing. A separate target directory keeps
//! the nested cargo off the build-directory lock the outer cargo holds.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// Set in the nested cargo's environment: this script, run again inside it,
/// returns at once instead of starting a third cargo.
const NESTED: &str = "ICACHE_CHECK_NESTED_PLUGIN_BUILD";

fn main() -> ExitCode {
    println!("cargo:rerun-if-env-changed={NESTED}");
    if env::var_os(NESTED).is_some() {
        return ExitCode::SUCCESS;
    }
    let x86_64 = env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "x86_64");
    let apis: &[(&str, &str)] = if x86_64 {
        &[("V1", "qemu-api-v1"), ("V4", "qemu-api-v4")]
    } else {
        &[("V4", "qemu-api-v4")]
    };
    for &(name, feature) in apis {
        match build_plugin(feature) {
            Ok(so) => println!(
                "cargo:rustc-env=ICACHE_CHECK_PLUGIN_{name}={}",
                so.display()
            ),
            Err(e) => {
                eprintln!("icache-check build script: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Cargo sets these for every build script
/// (<https://doc.rust-lang.org/cargo/reference/environment-variables.html>).
fn var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|e| format!("cargo did not set {name}: {e}"))
}

/// Builds the library as a `cdylib` with the plugin API `feature`, for the
/// same target and profile as the runner, and returns the `.so`'s path.
fn build_plugin(feature: &str) -> Result<PathBuf, String> {
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let target = var("TARGET")?;
    // `PROFILE` is "release" for the release profile and for `cargo install`,
    // "debug" otherwise: the embedded plugin is as optimised as the runner,
    // like the `.so` that `cargo build` puts next to it.
    let release = var("PROFILE")? == "release";
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

    // The plugin is this package's library: its sources, its manifest and
    // the workspace's lock file (which pins qemu-plugin). Everything else in
    // the package (tests, fixtures) does not change it.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("Cargo.toml").display()
    );
    if let Some(lock) = workspace_lock(&manifest_dir) {
        println!("cargo:rerun-if-changed={}", lock.display());
    }

    let target_dir = out_dir.join(feature);
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--lib")
        .arg("--manifest-path")
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(&target)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--no-default-features")
        .arg("--features")
        .arg(feature)
        .env(NESTED, "1")
        // `cargo clippy` reaches this script with clippy-driver as the
        // workspace wrapper; the plugin should be compiled, not linted again.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // Cargo's stdout belongs to this script's `cargo:` instructions.
        .stdout(Stdio::null());
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !status.success() {
        return Err(format!(
            "building the plugin with `{cmd:?}` failed ({status}); its errors are above"
        ));
    }
    let profile_dir = if release { "release" } else { "debug" };
    let so = target_dir
        .join(&target)
        .join(profile_dir)
        .join("libicache_check.so");
    if !so.is_file() {
        return Err(format!(
            "the plugin build succeeded but left no {}",
            so.display()
        ));
    }
    Ok(so)
}

/// The workspace's `Cargo.lock`: the first one in this package's directory
/// or above it.
fn workspace_lock(manifest_dir: &Path) -> Option<PathBuf> {
    manifest_dir
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|lock| lock.is_file())
}
