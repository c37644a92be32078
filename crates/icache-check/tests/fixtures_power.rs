//! Builds `fixtures/ppcjit.c` in each of its variants for ppc64le, runs it
//! under the `icache-check` runner (which picks `qemu-ppc64le` from the ELF
//! header), and checks that exactly the expected violations are reported.
//!
//! Needs `powerpc64le-linux-gnu-gcc` (Debian: gcc-powerpc64le-linux-gnu,
//! libc6-dev-ppc64el-cross) and `qemu-ppc64le` (Debian: qemu-user). Missing
//! tools fail the test with a message; they never make it pass.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

#[allow(dead_code)]
#[path = "../src/exit_status.rs"]
mod exit_status;

const RUNNER: &str = env!("CARGO_BIN_EXE_icache-check");
const EXIT_VIOLATIONS: i32 = exit_status::EXIT_VIOLATIONS as i32;

const NOT_CLEANED: &str = "not cleaned";
const NOT_INVALIDATED: &str = "not invalidated";
const NO_ISYNC: &str = "no context synchronization on this vCPU";

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} to run the ppc64le fixture tests"
    );
}

/// Variants already built by this test binary. Tests run in parallel and
/// some share a variant: building it once, under the lock, keeps one test
/// from running a file another is still writing.
static BUILT: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn build(bug: u32) -> PathBuf {
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    require(
        "powerpc64le-linux-gnu-gcc",
        "gcc-powerpc64le-linux-gnu and libc6-dev-ppc64el-cross",
    );
    require("qemu-ppc64le", "qemu-user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ppcjit.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ppcjit-bug{bug}"));
    if built.contains(&bug) {
        return out;
    }
    let status = Command::new("powerpc64le-linux-gnu-gcc")
        .args(["-O2", "-static", &format!("-DBUG={bug}"), "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-lpthread")
        .status()
        .expect("run powerpc64le-linux-gnu-gcc");
    assert!(status.success(), "building ppcjit.c with BUG={bug} failed");
    built.push(bug);
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
fn the_full_sequence_with_the_readers_own_isync_reports_nothing() {
    assert_eq!(run(0, &[]), (0, vec![]));
}

#[test]
fn membarrier_sync_core_stands_in_for_the_readers_isync() {
    assert_eq!(run(7, &[]), (0, vec![]));
}

#[test]
fn every_cpu_model_runs_the_correct_variant_clean() {
    // The models the runner accepts (src/main.rs `PPC64LE_CPU_MODELS`).
    let models = [
        "power8",
        "power8e",
        "power8nvl",
        "power9",
        "power9_v2.0",
        "power10",
        "power10_v2.0",
    ];
    for cpu in models {
        assert_eq!(run(0, &["--cpu", cpu]), (0, vec![]), "{cpu}");
    }
}

#[test]
fn a_missing_dcbst_is_reported_on_both_threads() {
    let want = pairs(&[(0, NOT_CLEANED), (1, NOT_CLEANED)]);
    assert_eq!(run(1, &[]), (EXIT_VIOLATIONS, want));
}

#[test]
fn a_missing_sync_or_icbi_is_reported_as_not_invalidated_on_both_threads() {
    let want = pairs(&[(0, NOT_INVALIDATED), (1, NOT_INVALIDATED)]);
    for bug in [2, 3, 4] {
        assert_eq!(run(bug, &[]), (EXIT_VIOLATIONS, want.clone()), "BUG={bug}");
    }
}

#[test]
fn a_missing_isync_is_reported_on_its_thread_only() {
    assert_eq!(run(5, &[]), (EXIT_VIOLATIONS, pairs(&[(0, NO_ISYNC)])));
    assert_eq!(run(6, &[]), (EXIT_VIOLATIONS, pairs(&[(1, NO_ISYNC)])));
}
