//! The conformance suite: litmus tests of the published model of AArch64
//! instruction fetch (Simner, Flur, Pulte et al., ESOP 2020), as maintained in
//! herdtools7's `catalogue/aarch64-ifetch`, each written as a program
//! (`fixtures/litmus.c`) and run under the checker.
//!
//! Each test names its catalogue test and cites the verdict of
//! `catalogue/aarch64-ifetch/tests/kinds.txt` (herdtools7 commit
//! 5feffe4e8f98d93b60144a3cda322eba92dd9723, 2026-08-21): *Allowed*
//! means the model allows the stale fetch, so the checker must report the
//! execution; *Forbidden* means it does not, so the checker must report
//! nothing. Directory `DIC0-IDC0` tests run with CTR_EL0 as QEMU reports it,
//! `DIC0-IDC1` (`IDC1.` names) with `--idc`, `DIC1-IDC1` (`DIC1.` names) with
//! `--idc --dic`.
//!
//! A few tests are this project's variants of a catalogue test, for cases the
//! catalogue does not cover (the `dsb` options, system calls, membarrier,
//! the vDSO). They say so, and give the rule their verdict comes from.
//!
//! Needs `aarch64-linux-gnu-gcc` and `qemu-aarch64`; missing tools fail the
//! tests with a message.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[allow(dead_code)]
#[path = "../src/exit_status.rs"]
mod exit_status;
#[allow(dead_code)]
#[path = "../src/summary.rs"]
mod summary;

use exit_status::EXIT_VIOLATIONS;
use summary::Counts;

const RUNNER: &str = env!("CARGO_BIN_EXE_icache-check");

const NOT_CLEANED: &str = "not cleaned";
const NOT_INVALIDATED: &str = "not invalidated";
const NO_SYNC: &str = "no context synchronization on this vCPU";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Forbidden,
}
use Verdict::*;

/// Builds `fixtures/litmus.c` once for all tests.
fn program() -> &'static Path {
    static PROGRAM: OnceLock<PathBuf> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/litmus.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("litmus");
        let status = Command::new("aarch64-linux-gnu-gcc")
            .args(["-O2", "-static", "-pthread", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .unwrap_or_else(|e| {
                panic!("aarch64-linux-gnu-gcc is missing ({e}): install gcc-aarch64-linux-gnu and libc6-dev-arm64-cross")
            });
        assert!(status.success(), "building fixtures/litmus.c failed");
        out
    })
}

/// What one run reported: violations and allowed patch-site races, each as
/// (vCPU, missing step), plus the exit status and the summary.
struct Outcome {
    violations: Vec<(u32, String)>,
    patch_site_races: usize,
    code: i32,
    summary: Counts,
}

fn parse_report(rest: &str) -> (u32, String) {
    let rest = rest.strip_prefix("vCPU ").expect("vCPU");
    let (vcpu, rest) = rest.split_once(' ').unwrap();
    let missing = rest.split_once(": ").unwrap().1;
    let missing = missing.split(" (stored by").next().unwrap();
    (vcpu.parse().unwrap(), missing.to_string())
}

/// How the test patches its site.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Patch {
    /// `B` to `NOP`, as the catalogue does: on another thread a stale fetch
    /// is an allowed patch-site race (Arm ARM B2.2.5).
    BranchToNop,
    /// `mov w0, #0` to `mov w0, #1`: a stale fetch is a violation anywhere.
    Mov,
}

fn run(name: &str, flags: &[&str], patch: Patch) -> Outcome {
    let out = Command::new(RUNNER)
        .args(["--cpu", "cortex-a72"])
        .args(flags)
        .arg("--")
        .arg(program())
        .arg(name)
        .args((patch == Patch::Mov).then_some("mov"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run the checker ({e}); is qemu-user installed?"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // QEMU itself always runs the new code; anything else is a broken test.
    let new = if name.starts_with("MP-inst") { 3 } else { 1 };
    assert!(
        stdout.contains(&format!("{name}: result={new}")),
        "{name} misbehaved:\n{stdout}\n{stderr}"
    );
    let mut violations = Vec::new();
    let mut patch_site_races = 0;
    for line in stderr.lines() {
        if let Some(rest) = line.strip_prefix("icache-check: violation: ") {
            violations.push(parse_report(rest));
        } else if line.starts_with("icache-check: allowed patch-site race: ") {
            patch_site_races += 1;
        }
    }
    violations.sort();
    violations.dedup();
    let summary = Counts::all_in(&stderr)
        .last()
        .unwrap_or_else(|| panic!("no summary for {name}:\n{stderr}"));
    Outcome {
        violations,
        patch_site_races,
        code: out.status.code().unwrap_or(-1),
        summary,
    }
}

/// Runs catalogue test `name` with `flags` and checks the checker against
/// the model's `verdict`. For an allowed stale fetch, `want` is the expected
/// violation (vCPU, missing step); a forbidden one must report nothing.
///
/// A test whose stale fetch happens on another thread runs twice: as in the
/// catalogue (`B` patched to `NOP`), where the stale fetch must be reported
/// as an allowed patch-site race and not fail the run, and with a `mov`,
/// where it must be reported as a violation.
fn check(name: &str, flags: &[&str], verdict: Verdict, want: &[(u32, &str)]) {
    assert_eq!(
        verdict == Forbidden,
        want.is_empty(),
        "{name}: a forbidden stale fetch has no report, an allowed one has one"
    );
    let other_thread = want.iter().any(|&(v, _)| v != 0);
    let two_threads = name.starts_with("MP");
    let want: Vec<(u32, String)> = want.iter().map(|&(v, m)| (v, m.to_string())).collect();
    let strict = if two_threads {
        Patch::Mov
    } else {
        Patch::BranchToNop
    };
    let o = run(name, flags, strict);
    assert_eq!(o.violations, want, "{name} {flags:?}: reports");
    assert_eq!(o.patch_site_races, 0, "{name}: no patch-site race expected");
    let code = if verdict == Allowed {
        EXIT_VIOLATIONS as i32
    } else {
        0
    };
    assert_eq!(o.code, code, "{name}: exit status");
    assert_eq!(
        o.summary.violations > 0,
        verdict == Allowed,
        "{name}: summary"
    );
    if two_threads {
        let o = run(name, flags, Patch::BranchToNop);
        assert_eq!(o.violations, [], "{name} {flags:?} (B to NOP): violations");
        assert_eq!(
            o.patch_site_races > 0,
            other_thread,
            "{name} {flags:?} (B to NOP): patch-site races"
        );
        assert_eq!(o.code, 0, "{name} (B to NOP): exit status");
    }
}

// ---- Single thread: every subset of the sequence ----

#[test]
fn sm_b_isb_allowed_is_reported_not_cleaned() {
    // kinds.txt: SM.B+isb Allowed.
    check("SM.B+isb", &[], Allowed, &[(0, NOT_CLEANED)]);
}

#[test]
fn sm_b_dsb_ish_allowed_is_reported_not_cleaned() {
    // kinds.txt: SM.B+dsb.ish Allowed.
    check("SM.B+dsb.ish", &[], Allowed, &[(0, NOT_CLEANED)]);
}

#[test]
fn sm_b_dsb_ish_isb_allowed_is_reported_not_cleaned() {
    // kinds.txt: SM.B+dsb.ish-isb Allowed.
    check("SM.B+dsb.ish-isb", &[], Allowed, &[(0, NOT_CLEANED)]);
}

#[test]
fn sm_b_dc_dsb_allowed_is_reported_not_invalidated() {
    // kinds.txt: SM.B+dc.cvau-dsb.ish Allowed.
    check(
        "SM.B+dc.cvau-dsb.ish",
        &[],
        Allowed,
        &[(0, NOT_INVALIDATED)],
    );
}

#[test]
fn sm_b_dc_dsb_isb_allowed_is_reported_not_invalidated() {
    // kinds.txt: SM.B+dc.cvau-dsb.ish-isb Allowed.
    check(
        "SM.B+dc.cvau-dsb.ish-isb",
        &[],
        Allowed,
        &[(0, NOT_INVALIDATED)],
    );
}

#[test]
fn sm_b_ic_without_clean_allowed_is_reported_not_cleaned() {
    // kinds.txt: SM.B+dsb.ish-ic.ivau-dsb.ish-isb Allowed.
    check(
        "SM.B+dsb.ish-ic.ivau-dsb.ish-isb",
        &[],
        Allowed,
        &[(0, NOT_CLEANED)],
    );
}

#[test]
fn sm_b_cachesync_isb_forbidden_reports_nothing() {
    // kinds.txt: SM.B+cachesync-isb Forbidden (and
    // SM.B+dc.cvau-dsb.ish-ic.vau-dsb.ish, the same code, Forbidden).
    check("SM.B+cachesync-isb", &[], Forbidden, &[]);
}

#[test]
fn sm_b_ic_before_dc_allowed_is_reported_not_invalidated() {
    // kinds.txt: SM.B+badcachesync-isb Allowed.
    check(
        "SM.B+badcachesync-isb",
        &[],
        Allowed,
        &[(0, NOT_INVALIDATED)],
    );
}

/// The first step the Arm ARM's sequence (B2.4.4: dc cvau, dsb ish, ic ivau,
/// dsb ish, isb) misses with only the steps in `mask` (bit 0 dc, 1 dsb, 2 ic,
/// 3 dsb, 4 isb), or `None` for the whole sequence.
fn first_missing(mask: u32) -> Option<&'static str> {
    let has = |bit: u32| mask & (1 << bit) != 0;
    if !has(0) || !(has(1) || has(3)) {
        return Some(NOT_CLEANED); // no clean, or no dsb ever completes it
    }
    if !has(1) || !has(2) || !has(3) {
        // The ic must be issued after the clean completed (the first dsb)
        // and be completed itself (the second).
        return Some(NOT_INVALIDATED);
    }
    (!has(4)).then_some(NO_SYNC)
}

#[test]
fn every_single_thread_subset_of_the_sequence_gets_its_verdict() {
    // Project variants of SM.B+cachesync-isb (Forbidden), one per subset of
    // its five steps; the catalogue's SM.B tests are eight of them, each
    // with the verdict this test expects (SM.B+isb, SM.B+dsb.ish,
    // SM.B+dsb.ish-isb, SM.B+dc.cvau-dsb.ish, SM.B+dc.cvau-dsb.ish-isb,
    // SM.B+dsb.ish-ic.ivau-dsb.ish-isb Allowed; SM.B+cachesync-isb
    // Forbidden; SM.B+badcachesync-isb, whose order differs, is tested
    // above). Only the whole sequence is forbidden.
    for mask in 0..32u32 {
        let out = Command::new(RUNNER)
            .args(["--cpu", "cortex-a72"])
            .arg("--")
            .arg(program())
            .args(["SM.B+subset", &mask.to_string()])
            .output()
            .expect("run icache-check");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stdout.contains("result=1"),
            "mask {mask}:\n{stdout}\n{stderr}"
        );
        let found: Vec<(u32, String)> = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("icache-check: violation: "))
            .map(parse_report)
            .collect();
        let want: Vec<(u32, String)> = first_missing(mask)
            .map(|m| (0, m.to_string()))
            .into_iter()
            .collect();
        assert_eq!(found, want, "mask {mask:#07b}:\n{stderr}");
        let code = if want.is_empty() {
            0
        } else {
            EXIT_VIOLATIONS as i32
        };
        assert_eq!(out.status.code(), Some(code), "mask {mask:#07b}");
    }
}

// ---- The dsb options (project variants of SM.B+cachesync-isb) ----
// Arm ARM B2.4.4 / D7.5.2: a DSB completes cache maintenance for its
// shareability domain and only with both access types; the catalogue has no
// test per option.

#[test]
fn cachesync_with_dsb_sy_reports_nothing() {
    check("SM.B+cachesync.sy-isb", &[], Forbidden, &[]);
}

#[test]
fn cachesync_with_dsb_osh_reports_nothing() {
    check("SM.B+cachesync.osh-isb", &[], Forbidden, &[]);
}

#[test]
fn cachesync_with_dsb_ishst_is_reported_not_cleaned() {
    // Neither dsb completes anything, so the clean is the first step missing.
    check(
        "SM.B+cachesync.ishst-isb",
        &[],
        Allowed,
        &[(0, NOT_CLEANED)],
    );
}

#[test]
fn cachesync_with_dsb_nsh_is_reported_not_cleaned() {
    check("SM.B+cachesync.nsh-isb", &[], Allowed, &[(0, NOT_CLEANED)]);
}

// ---- Context synchronization by system calls (project variants) ----

#[test]
fn cachesync_then_a_system_call_reports_nothing() {
    // An exception return is a context synchronization event (Arm ARM,
    // glossary); the variant of SM.B+cachesync-isb with svc for the isb.
    check("SM.B+cachesync-svc", &[], Forbidden, &[]);
}

#[test]
fn cachesync_then_clock_gettime_is_not_synchronized() {
    // Real arm64 Linux serves clock_gettime from the vDSO
    // (arch/arm64/kernel/vdso/vdso.lds.S) without an exception, so it is
    // SM.B+dc.cvau-dsb.ish-ic.vau-dsb.ish without the isb: allowed.
    check("SM.B+cachesync-vdso", &[], Allowed, &[(0, NO_SYNC)]);
}

// ---- Message passing: flag read, control dependency, isb ----

#[test]
fn mp_rf_dmb_st_ctrlisb_allowed_is_reported_not_cleaned() {
    // kinds.txt: MP.RF+dmb.st+ctrlisb Allowed.
    check("MP.RF+dmb.st+ctrlisb", &[], Allowed, &[(1, NOT_CLEANED)]);
}

#[test]
fn mp_rf_dsb_ctrlisb_allowed_is_reported_not_cleaned() {
    // Project variant of MP.RF+dmb.st+ctrlisb (Allowed) with dsb ish for
    // the dmb: a dsb does not clean either.
    check("MP.RF+dsb.ish+ctrlisb", &[], Allowed, &[(1, NOT_CLEANED)]);
}

#[test]
fn mp_rf_dmb_st_reader_ic_allowed_is_reported_not_cleaned() {
    // kinds.txt: MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb Allowed.
    check(
        "MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb",
        &[],
        Allowed,
        &[(1, NOT_CLEANED)],
    );
}

#[test]
fn mp_rf_cachesync_ctrlisb_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+dc-dsb-ic-dsb+ctrlisb Forbidden
    // (MP.RF+cachesync+ctrlisb, the same shape, Forbidden).
    check("MP.RF+dc-dsb-ic-dsb+ctrlisb", &[], Forbidden, &[]);
}

#[test]
fn mp_rf_cachesync_addr_allowed_is_reported_no_sync() {
    // kinds.txt: MP.RF+dc-dsb-ic-dsb+addr Allowed.
    check("MP.RF+dc-dsb-ic-dsb+addr", &[], Allowed, &[(1, NO_SYNC)]);
}

#[test]
fn mp_rf_cachesync_switch_ctrl_allowed_is_reported_no_sync() {
    // kinds.txt: MP.RF+cachesync+switch-ctrl Allowed (a control dependency
    // without isb; the reader's spin loop on the flag is that dependency).
    check("MP.RF+cachesync+switch-ctrl", &[], Allowed, &[(1, NO_SYNC)]);
}

#[test]
fn mp_rf_cachesync_switch_ctrlisb_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+cachesync+switch-ctrlisb Forbidden.
    check("MP.RF+cachesync+switch-ctrlisb", &[], Forbidden, &[]);
}

#[test]
fn mp_rf_isb_before_the_flag_read_is_reported_no_sync() {
    // Project variant of MP.RF+dc-dsb-ic-dsb+ctrlisb (Forbidden) with the
    // isb before the flag read instead of after it: the isb is not ordered
    // after the maintenance, as in MP.RF+dc-dsb-ic-dsb+addr (Allowed).
    check("MP.RF+cachesync+isb-ctrl", &[], Allowed, &[(1, NO_SYNC)]);
}

#[test]
fn mp_rf_cachesync_dsb_ld_isb_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+dc-dsb-ic-dsb+dsb.ld-isb Forbidden.
    check("MP.RF+dc-dsb-ic-dsb+dsb.ld-isb", &[], Forbidden, &[]);
}

#[test]
fn mp_rf_membarrier_forbidden_reports_nothing() {
    // Project variant of MP.RF+dc-dsb-ic-dsb+addr (Allowed) with the
    // writer's membarrier(PRIVATE_EXPEDITED_SYNC_CORE) before the flag: the
    // kernel makes every thread of the process pass a context
    // synchronization event (Documentation/scheduler/membarrier.rst).
    check("MP.RF+cachesync-membarrier+addr", &[], Forbidden, &[]);
}

#[test]
fn mp_rf_dc_dmb_reader_dsb_ic_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+dc.cvau-dmb.ish+dsb.ish-ic.ivau-dsb.ish-isb Forbidden:
    // the dmb orders the clean before the flag, the reader's dsb after it.
    check(
        "MP.RF+dc.cvau-dmb.ish+dsb.ish-ic.ivau-dsb.ish-isb",
        &[],
        Forbidden,
        &[],
    );
}

// ---- dc and ic on different threads ----

#[test]
fn mp_rf_dc_dmb_then_reader_ic_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+dc-dmb+addr-ic-dsb-isb Forbidden.
    check("MP.RF+dc-dmb+addr-ic-dsb-isb", &[], Forbidden, &[]);
}

#[test]
fn mp_rf_dc_dsb_then_reader_ic_forbidden_reports_nothing() {
    // kinds.txt: MP.RF+dc-dsb+addr-ic-dsb-isb Forbidden.
    check("MP.RF+dc-dsb+addr-ic-dsb-isb", &[], Forbidden, &[]);
}

// ---- IDC = 1 (catalogue directory DIC0-IDC1) ----

#[test]
fn idc1_sm_b_dsb_isb_allowed_is_reported_not_invalidated() {
    // kinds.txt: IDC1.SM.B+dsb.ish-isb Allowed.
    check(
        "SM.B+dsb.ish-isb",
        &["--idc"],
        Allowed,
        &[(0, NOT_INVALIDATED)],
    );
}

#[test]
fn idc1_sm_b_dsb_ic_dsb_isb_forbidden_reports_nothing() {
    // kinds.txt: IDC1.SM.B+dsb.ish-ic.ivau-dsb.ish-isb Forbidden.
    check(
        "SM.B+dsb.ish-ic.ivau-dsb.ish-isb",
        &["--idc"],
        Forbidden,
        &[],
    );
}

#[test]
fn idc1_sm_b_isb_allowed_is_reported_not_cleaned() {
    // kinds.txt: IDC1.SM.B+isb Allowed (no dsb: the store is not complete).
    check("SM.B+isb", &["--idc"], Allowed, &[(0, NOT_CLEANED)]);
}

#[test]
fn idc1_mp_rf_dmb_st_reader_ic_forbidden_reports_nothing() {
    // kinds.txt: IDC1.MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb Forbidden.
    check(
        "MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb",
        &["--idc"],
        Forbidden,
        &[],
    );
}

#[test]
fn idc1_mp_rf_dmb_st_ctrlisb_allowed_is_reported_not_cleaned() {
    // kinds.txt: IDC1.MP.RF+dmb.st+ctrlisb Allowed.
    check(
        "MP.RF+dmb.st+ctrlisb",
        &["--idc"],
        Allowed,
        &[(1, NOT_CLEANED)],
    );
}

// ---- DIC = 1 and IDC = 1 (catalogue directory DIC1-IDC1) ----

#[test]
fn dic1_mp_rf_dmb_st_ctrlisb_forbidden_reports_nothing() {
    // kinds.txt: DIC1.MP.RF+dmb.st+ctrlisb Forbidden.
    check("MP.RF+dmb.st+ctrlisb", &["--idc", "--dic"], Forbidden, &[]);
}

#[test]
fn dic1_sm_b_dsb_isb_forbidden_reports_nothing() {
    // kinds.txt: DIC1.SM.B+dsb.ish-isb Forbidden.
    check("SM.B+dsb.ish-isb", &["--idc", "--dic"], Forbidden, &[]);
}

#[test]
fn dic1_sm_b_dsb_allowed_is_reported_no_sync() {
    // kinds.txt: DIC1.SM.B+dsb.ish Allowed.
    check(
        "SM.B+dsb.ish",
        &["--idc", "--dic"],
        Allowed,
        &[(0, NO_SYNC)],
    );
}

#[test]
fn dic1_sm_b_isb_allowed_is_reported_not_cleaned() {
    // kinds.txt: DIC1.SM.B+isb Allowed.
    check(
        "SM.B+isb",
        &["--idc", "--dic"],
        Allowed,
        &[(0, NOT_CLEANED)],
    );
}

#[test]
fn dic1_mp_rf_cachesync_addr_allowed_is_reported_no_sync() {
    // kinds.txt: DIC1.MP.RF+dc-dsb-ic-dsb+addr Allowed.
    check(
        "MP.RF+dc-dsb-ic-dsb+addr",
        &["--idc", "--dic"],
        Allowed,
        &[(1, NO_SYNC)],
    );
}

// ---- MP-inst and patch sites ----

/// MP-inst: vCPU 1 runs the flag instruction (Lself01) until it sees the new
/// one, then the target (Lself00). The target must never be reported; the
/// flag, patched without maintenance, is an allowed patch-site race.
fn check_mp_inst(name: &str) {
    let o = run(name, &[], Patch::BranchToNop);
    assert_eq!(o.violations, [], "{name}: violations");
    assert!(
        o.patch_site_races > 0,
        "{name}: the flag is a patch-site race"
    );
    assert_eq!(o.code, 0, "{name}: exit status");
    assert_eq!(o.summary.violations, 0, "{name}: summary");
}

#[test]
fn mp_inst_forbidden_reports_only_the_allowed_patch_site_race() {
    // kinds.txt: MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish Forbidden.
    check_mp_inst("MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish");
}

#[test]
fn mp_inst_with_isb_forbidden_reports_only_the_allowed_patch_site_race() {
    // kinds.txt: MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish+isb Forbidden.
    check_mp_inst("MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish+isb");
}

#[test]
fn fail_on_patch_site_makes_a_patch_site_race_fail() {
    // The runner's --fail-on chooses the classes that fail the run.
    let out = Command::new(RUNNER)
        .args(["--cpu", "cortex-a72", "--fail-on", "patch-site"])
        .arg("--")
        .arg(program())
        .arg("MP.RF+dmb.st+ctrlisb")
        .output()
        .expect("run icache-check");
    assert_eq!(out.status.code(), Some(EXIT_VIOLATIONS as i32));
}

#[test]
fn fail_on_maintenance_ignores_a_missing_context_synchronization() {
    let out = Command::new(RUNNER)
        .args(["--cpu", "cortex-a72", "--fail-on", "maintenance"])
        .arg("--")
        .arg(program())
        .args(["MP.RF+dc-dsb-ic-dsb+addr", "mov"])
        .output()
        .expect("run icache-check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(NO_SYNC), "{stderr}");
    assert!(
        stderr.contains("icache-check: by class: 0 maintenance, 1 sync, 0 patch-site"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The same run fails by default.
    assert_eq!(
        run("MP.RF+dc-dsb-ic-dsb+addr", &[], Patch::Mov).code,
        EXIT_VIOLATIONS as i32
    );
}
