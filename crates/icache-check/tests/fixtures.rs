//! Builds the guest fixtures (`fixtures/jit.c` and `fixtures/dual.c` in each
//! of their variants, and the others), runs them
//! under the `icache-check` runner, and checks that exactly the expected
//! violations are reported.
//!
//! Needs `aarch64-linux-gnu-gcc` (Debian: gcc-aarch64-linux-gnu,
//! libc6-dev-arm64-cross) and `qemu-aarch64` (Debian: qemu-user). Missing tools
//! fail the test with a message; they never make it pass.
//!
//! Every fixture test (this file, `fixtures_*.rs`, `conformance.rs`) runs
//! the runner with the plugin built into it, which the runner picks by the
//! QEMU's version: the QEMU on `PATH`, or the one `ICACHE_CHECK_QEMU_DIR`
//! names (`cargo xtask ci` runs them on QEMU 7.2 and on QEMU 10.0.2).

use std::path::{Path, PathBuf};
use std::process::Command;

// Compiled in rather than linked, as in the runner (see `src/lib.rs`).
#[allow(dead_code)]
#[path = "../src/exit_status.rs"]
mod exit_status;
#[allow(dead_code)]
#[path = "../src/summary.rs"]
mod summary;

use summary::Counts;

const RUNNER: &str = env!("CARGO_BIN_EXE_icache-check");
const EXIT_VIOLATIONS: i32 = exit_status::EXIT_VIOLATIONS as i32;

const NOT_CLEANED: &str = "not cleaned";
const NOT_INVALIDATED: &str = "not invalidated";
const NO_SYNC: &str = "no context synchronization on this vCPU";

fn require(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").output().is_ok();
    assert!(
        found,
        "{tool} is missing: install the Debian package {package} to run the fixture tests"
    );
}

fn build(bug: u32) -> PathBuf {
    require(
        "aarch64-linux-gnu-gcc",
        "gcc-aarch64-linux-gnu and libc6-dev-arm64-cross",
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/jit.c");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("jit-bug{bug}"));
    let status = Command::new("aarch64-linux-gnu-gcc")
        .args(["-O2", "-static", "-pthread", &format!("-DBUG={bug}"), "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run aarch64-linux-gnu-gcc");
    assert!(status.success(), "building fixture variant {bug} failed");
    out
}

/// Runs variant `bug` on `cpu` and returns (exit code, [(vCPU, missing step)]).
fn run(bug: u32, cpu: &str) -> (i32, Vec<(u32, String)>) {
    require("qemu-aarch64", "qemu-user");
    let program = build(bug);
    let out = Command::new(RUNNER)
        .args(["--cpu", cpu])
        .arg("--")
        .arg(&program)
        .output()
        .expect("run icache-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The fixture checks that QEMU ran the new code on both threads.
    assert!(
        stdout.contains("main=21 thread=21"),
        "fixture {bug} misbehaved on {cpu}:\n{stdout}\n{stderr}"
    );
    let mut found = Vec::new();
    let mut summary = None;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("icache-check: violation: vCPU ") {
            let (vcpu, rest) = rest.split_once(' ').unwrap();
            let missing = rest.split_once(": ").unwrap().1;
            let missing = missing.split(" (stored by").next().unwrap();
            found.push((vcpu.parse().unwrap(), missing.to_string()));
        } else if let Some(counts) = Counts::parse_line(line) {
            summary = Some(counts);
        }
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary line for {bug}:\n{stderr}"));
    assert_eq!(
        summary.violations,
        found.len() as u64,
        "{summary} vs {} reports",
        found.len()
    );
    assert_eq!(summary.vcpus, 2, "{summary}");
    (out.status.code().unwrap_or(-1), found)
}

fn expect(bug: u32, want: &[(u32, &str)]) {
    for cpu in ["cortex-a72", "a64fx", "max"] {
        let (code, mut found) = run(bug, cpu);
        found.sort();
        let want: Vec<(u32, String)> = want.iter().map(|&(v, m)| (v, m.to_string())).collect();
        assert_eq!(found, want, "variant {bug} on {cpu}");
        let want_code = if want.is_empty() { 0 } else { EXIT_VIOLATIONS };
        assert_eq!(code, want_code, "exit status of variant {bug} on {cpu}");
    }
}

#[test]
fn correct_sequence_reports_nothing() {
    expect(0, &[]);
}

#[test]
fn missing_clean_is_flagged_on_both_threads() {
    expect(1, &[(0, NOT_CLEANED), (1, NOT_CLEANED)]);
}

#[test]
fn missing_first_dsb_is_flagged_as_not_invalidated() {
    expect(2, &[(0, NOT_INVALIDATED), (1, NOT_INVALIDATED)]);
}

#[test]
fn missing_invalidate_is_flagged() {
    expect(3, &[(0, NOT_INVALIDATED), (1, NOT_INVALIDATED)]);
}

#[test]
fn missing_second_dsb_is_flagged() {
    expect(4, &[(0, NOT_INVALIDATED), (1, NOT_INVALIDATED)]);
}

#[test]
fn missing_isb_is_flagged_on_the_writer_only() {
    expect(5, &[(0, NO_SYNC)]);
}

#[test]
fn missing_pipeline_flush_is_flagged_on_the_second_thread() {
    expect(6, &[(1, NO_SYNC)]);
}

#[test]
fn unaligned_flush_that_misses_a_line_is_flagged() {
    expect(7, &[(0, NOT_CLEANED), (1, NOT_CLEANED)]);
}

#[test]
fn unrolled_correct_flush_reports_nothing() {
    expect(8, &[]);
}

/// The CPU models the runner accepts for `program`'s architecture, from its
/// own error message, so that a model added to the runner is tested too.
fn runner_cpu_models(program: &Path) -> Vec<String> {
    let out = Command::new(RUNNER)
        .args(["--cpu", "no-such-model", "--"])
        .arg(program)
        .output()
        .expect("run icache-check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let list = stderr
        .split("known: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no model list in: {stderr}"));
    list.trim().split(", ").map(str::to_string).collect()
}

/// Builds `fixtures/NAME.c` as a static program.
fn build_fixture(name: &str) -> PathBuf {
    require(
        "aarch64-linux-gnu-gcc",
        "gcc-aarch64-linux-gnu and libc6-dev-arm64-cross",
    );
    require("qemu-aarch64", "qemu-user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/{name}.c"));
    let program = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let status = Command::new("aarch64-linux-gnu-gcc")
        .args(["-O2", "-static", "-o"])
        .arg(&program)
        .arg(&src)
        .status()
        .expect("run aarch64-linux-gnu-gcc");
    assert!(status.success(), "building fixtures/{name}.c failed");
    program
}

#[test]
fn instructions_after_a_faulting_load_in_the_same_block_are_not_counted() {
    let program = build_fixture("fault");
    for cpu in ["cortex-a72", "a64fx"] {
        let out = Command::new(RUNNER)
            .args(["--cpu", cpu])
            .arg("--")
            .arg(&program)
            .output()
            .expect("run icache-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("fault: faulted=1 result=7"),
            "{cpu}:\n{stdout}\n{stderr}"
        );
        let summary = Counts::all_in(&stderr)
            .last()
            .unwrap_or_else(|| panic!("no summary on {cpu}:\n{stderr}"));
        // add + ldr on the faulting call, all four words on the second.
        assert_eq!(summary.violations, 6, "{cpu}: {summary}\n{stderr}");
        assert_eq!(out.status.code(), Some(EXIT_VIOLATIONS), "{cpu}");
    }
}

#[test]
fn code_copied_with_memcpy_and_no_maintenance_is_reported_on_every_cpu_model() {
    let program = build_fixture("memcpy");
    let models = runner_cpu_models(&program);
    assert!(models.len() >= 8, "{models:?}");
    for cpu in models {
        let out = Command::new(RUNNER)
            .args(["--cpu", &cpu])
            .arg("--")
            .arg(&program)
            .output()
            .expect("run icache-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("memcpy: result=42"),
            "{cpu}:\n{stdout}\n{stderr}"
        );
        let summary = Counts::all_in(&stderr)
            .last()
            .unwrap_or_else(|| panic!("no summary on {cpu}:\n{stderr}"));
        // 256 words copied, each executed once, none maintained.
        assert_eq!(summary.violations, 256, "{cpu}: {summary}");
        assert!(stderr.contains(": not cleaned"), "{cpu}:\n{stderr}");
        assert_eq!(out.status.code(), Some(EXIT_VIOLATIONS), "{cpu}");
    }
}

/// The CPU models of the double-mapping tests, with whether QEMU 7.2 reports
/// a PIPT instruction cache for them (CTR_EL0.L1Ip = 0b11: 0x8444_c004 on
/// `cortex-a72`; 0b10, VIPT, on the others).
const DUAL_CPUS: [(&str, bool); 4] = [
    ("cortex-a72", true),
    ("cortex-a53", false),
    ("a64fx", false),
    ("max", false),
];

/// Builds variant `bug` of `fixtures/dual.c` (double-mapped code), runs it on
/// `cpu` and returns (exit code, the missing step of each violation).
fn run_dual(bug: u32, cpu: &str) -> (i32, Vec<String>) {
    require(
        "aarch64-linux-gnu-gcc",
        "gcc-aarch64-linux-gnu and libc6-dev-arm64-cross",
    );
    require("qemu-aarch64", "qemu-user");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dual.c");
    let program = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dual-bug{bug}"));
    let status = Command::new("aarch64-linux-gnu-gcc")
        .args(["-O2", "-static", &format!("-DBUG={bug}"), "-o"])
        .arg(&program)
        .arg(&src)
        .status()
        .expect("run aarch64-linux-gnu-gcc");
    assert!(status.success(), "building dual.c variant {bug} failed");
    let out = Command::new(RUNNER)
        .args(["--cpu", cpu])
        .arg("--")
        .arg(&program)
        .output()
        .expect("run icache-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // QEMU ran the code written through the other view.
    assert!(
        stdout.contains("result=42"),
        "dual.c {bug} misbehaved on {cpu}:\n{stdout}\n{stderr}"
    );
    let found: Vec<String> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("icache-check: violation: vCPU 0 executed "))
        .map(|rest| {
            let missing = rest.split_once(": ").unwrap().1;
            missing.split(" (stored by").next().unwrap().to_string()
        })
        .collect();
    let summary = Counts::all_in(&stderr)
        .last()
        .unwrap_or_else(|| panic!("no summary for dual.c {bug} on {cpu}:\n{stderr}"));
    assert_eq!(
        summary.violations,
        found.len() as u64,
        "{summary}\n{stderr}"
    );
    (out.status.code().unwrap_or(-1), found)
}

/// Variant `bug` reports `want(pipt)` for both of the function's words (a
/// `mov` and a `ret`), or nothing, on every model of [`DUAL_CPUS`].
fn expect_dual(bug: u32, want: impl Fn(bool) -> Option<&'static str>) {
    for (cpu, pipt) in DUAL_CPUS {
        let (code, found) = run_dual(bug, cpu);
        let want = want(pipt);
        let expected: Vec<String> = want
            .iter()
            .flat_map(|m| [m.to_string(), m.to_string()])
            .collect();
        assert_eq!(found, expected, "dual.c variant {bug} on {cpu}");
        let status = if want.is_some() { EXIT_VIOLATIONS } else { 0 };
        assert_eq!(code, status, "exit status of dual.c variant {bug} on {cpu}");
    }
}

#[test]
fn code_cleaned_through_the_rw_view_and_invalidated_through_the_rx_view_is_coherent() {
    expect_dual(0, |_| None);
}

#[test]
fn double_mapped_code_without_a_clean_is_reported() {
    expect_dual(1, |_| Some(NOT_CLEANED));
}

#[test]
fn double_mapped_code_without_an_invalidate_is_reported() {
    expect_dual(2, |_| Some(NOT_INVALIDATED));
}

#[test]
fn double_mapped_code_without_an_isb_is_reported() {
    expect_dual(3, |_| Some(NO_SYNC));
}

#[test]
fn cleaning_through_the_rx_view_is_enough_as_data_caches_are_pipt() {
    expect_dual(4, |_| None);
}

#[test]
fn invalidating_only_through_the_rw_view_is_reported_unless_the_icache_is_pipt() {
    expect_dual(5, |pipt| (!pipt).then_some(NOT_INVALIDATED));
}

#[test]
fn stores_through_a_view_unmapped_since_are_still_the_files_data() {
    expect_dual(6, |_| Some(NOT_CLEANED));
}

#[test]
fn views_through_a_dup_of_the_descriptor_mapped_in_either_order_are_tied() {
    expect_dual(7, |_| None);
}

#[test]
fn invalidating_the_rx_view_at_the_wrong_offset_is_reported() {
    expect_dual(8, |_| Some(NOT_INVALIDATED));
}
