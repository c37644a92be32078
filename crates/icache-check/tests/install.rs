//! The documented install command, `cargo install --path crates/icache-check`,
//! gives a runner that checks a program with nothing beside it: the plugin
//! is built into the runner (`build.rs`), because `cargo install` installs
//! binaries only, never the plugin's `cdylib`.
//!
//! The install builds into a target directory of its own under
//! `CARGO_TARGET_TMPDIR`: the cargo running this test may still hold the
//! lock on the workspace's. It is a full release build the first time
//! (about 20 s on the 2-core project machine) and incremental after that.
//!
//! Needs `aarch64-linux-gnu-gcc` and `qemu-aarch64`; missing tools fail the
//! test with a message.

use std::path::{Path, PathBuf};
use std::process::Command;

// Compiled in rather than linked, as in the runner (see `src/lib.rs`).
#[allow(dead_code)]
#[path = "../src/exit_status.rs"]
mod exit_status;
#[allow(dead_code)]
#[path = "../src/summary.rs"]
mod summary;

use exit_status::EXIT_VIOLATIONS;
use summary::Counts;

/// Runs `cargo install` for this package into a fresh root and returns the
/// installed runner.
fn install() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let root = tmp.join("install-root");
    match std::fs::remove_dir_all(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("cannot remove {}: {e}", root.display()),
    }
    let out = Command::new(env!("CARGO"))
        .args(["install", "--locked", "--path", env!("CARGO_MANIFEST_DIR")])
        .arg("--root")
        .arg(&root)
        .arg("--target-dir")
        .arg(tmp.join("install-target"))
        .output()
        .expect("run cargo install");
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("bin/icache-check")
}

/// Builds `fixtures/memcpy.c`, which runs 256 copied words without any
/// maintenance.
fn memcpy_fixture() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/memcpy.c");
    let program = Path::new(env!("CARGO_TARGET_TMPDIR")).join("install-memcpy");
    let status = Command::new("aarch64-linux-gnu-gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&program)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| {
            panic!("aarch64-linux-gnu-gcc is missing ({e}): install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross")
        });
    assert!(status.success(), "building fixtures/memcpy.c failed");
    program
}

#[test]
fn the_installed_runner_checks_a_program_with_no_plugin_beside_it() {
    let runner = install();
    let bin = runner.parent().expect("bin directory");
    let beside: Vec<_> = std::fs::read_dir(bin)
        .expect("read the install's bin directory")
        .map(|entry| entry.expect("directory entry").file_name())
        .collect();
    assert_eq!(beside, ["icache-check"], "{}", bin.display());

    let program = memcpy_fixture();
    let out = Command::new(&runner)
        .args(["--cpu", "cortex-a72", "--"])
        .arg(&program)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e})", runner.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("memcpy: result=42"),
        "the program did not run to its end ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The summary proves QEMU loaded the plugin; its count proves the plugin
    // checked (256 words copied, each executed once, none maintained).
    let summary = Counts::all_in(&stderr)
        .last()
        .unwrap_or_else(|| panic!("no summary line:\n{stderr}"));
    assert_eq!(summary.violations, 256, "{summary}\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(i32::from(EXIT_VIOLATIONS)),
        "{stderr}"
    );
}
