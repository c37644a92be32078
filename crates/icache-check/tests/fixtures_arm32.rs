//! Builds `fixtures/armjit.c` in each of its variants for 32-bit Arm (A32
//! and Thumb code), runs it under the `icache-check` runner (which picks
//! `qemu-arm` from the ELF header), and checks that exactly the expected
//! violations are reported.
//!
//! Needs `arm-linux-gnueabihf-gcc` (Debian: gcc-arm-linux-gnueabihf,
//! libc6-dev-armhf-cross) and `qemu-arm` (Debian: qemu-user). Missing tools
//! fail the test with a message; they never make it pass.

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
const NO_SYNC: &str = "no context synchronization on this vCPU";

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} to run the arm fixture tests"
    );
}

fn build(bug: u32, thumb: bool) -> PathBuf {
    require(
        "arm-linux-gnueabihf-gcc",
        "gcc-arm-linux-gnueabihf and libc6-dev-armhf-cross",
    );
    require("qemu-arm", "qemu-user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/armjit.c");
    let thumb = u32::from(thumb);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "armjit-bug{bug}-thumb{thumb}-{}",
        BUILDS.fetch_add(1, Ordering::Relaxed)
    ));
    let status = Command::new("arm-linux-gnueabihf-gcc")
        .args([
            "-O2",
            "-static",
            &format!("-DBUG={bug}"),
            &format!("-DTHUMB={thumb}"),
            "-o",
        ])
        .arg(&out)
        .arg(&src)
        .arg("-lpthread")
        .status()
        .expect("run arm-linux-gnueabihf-gcc");
    assert!(
        status.success(),
        "building armjit.c with BUG={bug} THUMB={thumb} failed"
    );
    out
}

/// Runs variant `bug` (Thumb code if `thumb`) under the runner with
/// `options`; returns the exit status and the sorted, deduplicated (vCPU,
/// missing step) pairs reported.
fn run(bug: u32, thumb: bool, options: &[&str]) -> (i32, Vec<(u32, String)>) {
    let program = build(bug, thumb);
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

/// Both instruction sets give the same result.
fn run_both(bug: u32) -> (i32, Vec<(u32, String)>) {
    let a32 = run(bug, false, &[]);
    let thumb = run(bug, true, &[]);
    assert_eq!(a32, thumb, "A32 and Thumb code disagree for BUG={bug}");
    a32
}

#[test]
fn cacheflush_and_an_isb_in_the_other_thread_report_nothing() {
    assert_eq!(run_both(0), (0, vec![]));
}

#[test]
fn cacheflush_and_membarrier_sync_core_report_nothing() {
    assert_eq!(run_both(3), (0, vec![]));
}

#[test]
fn no_cacheflush_is_reported_on_both_threads() {
    let want = pairs(&[(0, NOT_FLUSHED), (1, NOT_FLUSHED)]);
    assert_eq!(run_both(1), (EXIT_VIOLATIONS, want));
}

#[test]
fn a_thread_without_an_isb_after_the_flush_is_reported_alone() {
    let want = pairs(&[(1, NO_SYNC)]);
    assert_eq!(run_both(2), (EXIT_VIOLATIONS, want));
}

#[test]
fn a_refused_cacheflush_and_a_range_that_skips_the_page_are_reported() {
    let want = pairs(&[(0, NOT_FLUSHED), (1, NOT_FLUSHED)]);
    assert_eq!(run_both(4), (EXIT_VIOLATIONS, want.clone()));
    assert_eq!(run_both(5), (EXIT_VIOLATIONS, want));
}

#[test]
fn cpu_models_other_than_the_default_run_too() {
    for cpu in ["cortex-a7", "cortex-a9"] {
        assert_eq!(run(0, true, &["--cpu", cpu]), (0, vec![]), "{cpu}");
        let want = pairs(&[(1, NO_SYNC)]);
        assert_eq!(
            run(2, false, &["--cpu", cpu]),
            (EXIT_VIOLATIONS, want),
            "{cpu}"
        );
    }
}
