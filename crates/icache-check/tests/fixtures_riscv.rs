//! Builds `fixtures/rvjit.c` in each of its variants for riscv64, runs it
//! under the `icache-check` runner (which picks `qemu-riscv64` from the ELF
//! header), and checks that exactly the expected violations are reported.
//!
//! Needs `riscv64-linux-gnu-gcc` (Debian: gcc-riscv64-linux-gnu,
//! libc6-dev-riscv64-cross) and `qemu-riscv64` (Debian: qemu-user). Missing
//! tools fail the test with a message; they never make it pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

#[allow(dead_code)]
#[path = "../src/exit_status.rs"]
mod exit_status;

/// Numbers each build, so that two tests building the same variant at
/// once (cargo runs tests in parallel) never write or run the same file.
static BUILDS: AtomicUsize = AtomicUsize::new(0);

const RUNNER: &str = env!("CARGO_BIN_EXE_icache-check");
const EXIT_VIOLATIONS: i32 = exit_status::EXIT_VIOLATIONS as i32;

const NOT_FLUSHED: &str = "not flushed for this thread";
const FENCE_I_ONLY: &str = "only a fence.i without the migration opt-in";

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} to run the riscv64 fixture tests"
    );
}

fn build(bug: u32) -> PathBuf {
    require(
        "riscv64-linux-gnu-gcc",
        "gcc-riscv64-linux-gnu and libc6-dev-riscv64-cross",
    );
    require("qemu-riscv64", "qemu-user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/rvjit.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "rvjit-bug{bug}-{}",
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    let status = Command::new("riscv64-linux-gnu-gcc")
        .args(["-O2", "-static", &format!("-DBUG={bug}"), "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lpthread")
        .status()
        .expect("run riscv64-linux-gnu-gcc");
    assert!(status.success(), "building rvjit.c with BUG={bug} failed");
    out
}

/// Runs variant `bug` under the runner with `options`; returns the exit
/// status and the sorted, deduplicated (vCPU, missing step) pairs reported.
fn run(bug: u32, options: &[&str]) -> (i32, Vec<(u32, String)>) {
    let program = build(bug);
    let out = Command::new(RUNNER)
        .args(options)
        .arg("--")
        .arg(&program)
        .output()
        .expect("run icache-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.trim(),
        "42 42",
        "the program itself failed: {stderr}"
    );
    assert!(
        stderr.contains(" violations, ") && !stderr.contains("icache-check: error"),
        "no summary, or a checker error: {stderr}"
    );
    let mut found: Vec<(u32, String)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("icache-check: violation: vCPU "))
        .map(|rest| {
            let (vcpu, rest) = rest.split_once(' ').unwrap();
            let missing = rest.split_once(": ").unwrap().1;
            let missing = missing.split(" (stored by").next().unwrap();
            (vcpu.parse().unwrap(), missing.to_string())
        })
        .collect();
    found.sort();
    found.dedup();
    (out.status.code().unwrap_or(-1), found)
}

fn pairs(list: &[(u32, &str)]) -> Vec<(u32, String)> {
    list.iter().map(|&(v, m)| (v, m.to_string())).collect()
}

#[test]
fn flush_icache_for_every_thread_reports_nothing() {
    assert_eq!(run(0, &[]), (0, vec![]));
}

#[test]
fn membarrier_sync_core_reports_nothing() {
    assert_eq!(run(4, &[]), (0, vec![]));
}

#[test]
fn flush_icache_local_is_reported_on_the_second_thread_only() {
    let want = pairs(&[(1, NOT_FLUSHED)]);
    assert_eq!(run(1, &[]), (EXIT_VIOLATIONS, want));
}

#[test]
fn a_bare_fence_i_is_reported_on_both_threads() {
    let want = pairs(&[(0, FENCE_I_ONLY), (1, NOT_FLUSHED)]);
    assert_eq!(run(2, &[]), (EXIT_VIOLATIONS, want));
}

#[test]
fn no_flush_and_a_refused_flush_are_reported_on_both_threads() {
    let want = pairs(&[(0, NOT_FLUSHED), (1, NOT_FLUSHED)]);
    assert_eq!(run(3, &[]), (EXIT_VIOLATIONS, want.clone()));
    assert_eq!(run(5, &[]), (EXIT_VIOLATIONS, want));
}

#[test]
fn on_one_hart_a_fence_i_or_a_local_flush_covers_every_thread() {
    assert_eq!(run(2, &["--one-hart"]), (0, vec![]));
    assert_eq!(run(1, &["--one-hart"]), (0, vec![]));
    // Still nothing at all is reported.
    let want = pairs(&[(0, NOT_FLUSHED), (1, NOT_FLUSHED)]);
    assert_eq!(run(3, &["--one-hart"]), (EXIT_VIOLATIONS, want));
}
