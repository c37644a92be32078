//! `cargo xtask spurious [--runs N] [--cpu MODEL] [--jobs J] [--qemu 7.2|10]`:
//! issue 11, item 5. Runs the library's whole aarch64 suite under the checker
//! N times in a row (default 200) and fails if any run reports a violation. The suite is
//! correct code, so every report is a spurious one (or a library bug).
//!
//! The suite is built once (`cargo test --no-run`, which also builds the
//! example `jit` that CI runs under the checker), then every executable is run
//! by the checker directly, as cargo's runner would run it (the same
//! `QEMU_CPU`, the package folder as working directory), J at a time (default:
//! the number of CPUs). Running them side by side also puts the machine under
//! the load in which the rare "no context synchronization" report on the
//! `jit` test was once seen. A running tally is printed after every run.
//!
//! Two tests of the library's unit-test binary are skipped:
//! [`SKIPPED_PURE_TESTS`], the exhaustive checks of the line arithmetic in
//! `lines.rs`. They take 84 of the suite's 92 s under the checker, and they
//! cannot be reported: they store no code and run no maintenance (`lines.rs`
//! is integer arithmetic behind a closure, with no `unsafe` and no asm), and
//! the whole unit-test binary under the checker shows `0 code stores, 0
//! maintenance ops`. CI still runs them under the checker (cortex-a72 on
//! QEMU 7.2, a64fx on QEMU 10.0.2). Without them a run takes about 8 s, so 200 runs fit in under an
//! hour. Not part of CI all the same.

use crate::checker::{self, Qemu, Summary};
use crate::cmd::{Cmd, Result};
use crate::targets::{CHECKER_TARGET, DEFAULT_CPU};
use crate::{reliability, Workspace, LIB};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DEFAULT_RUNS: u32 = 200;
/// The library's unit-test binary (cargo names it after the crate).
const UNIT_TEST_BINARY: &str = "icache_coherence-";
/// Pure-arithmetic tests skipped in every run (see the module docs).
const SKIPPED_PURE_TESTS: [&str; 2] = [
    "lines::tests::every_byte_is_covered_and_no_outside_line_is_touched",
    "lines::tests::random_ranges_are_covered_exactly_and_never_overflow",
];
/// Far above the slowest binary's time under the checker (about a minute).
const LIMIT: Duration = Duration::from_secs(900);

#[derive(Debug, PartialEq, Eq)]
struct Options {
    runs: u32,
    cpu: String,
    jobs: usize,
    qemu: Qemu,
}

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let o = parse_args(args)?;
    o.qemu.ready(ws)?;
    let checker = checker::built(ws)?;
    let json = checker::runner_env(Cmd::new("cargo").dir(&ws.root), ws, &o.cpu, o.qemu)
        .args(["test", "-p", LIB, "--target", CHECKER_TARGET])
        .args(["--no-run", "--message-format=json"])
        .stdout()?;
    let binaries: Vec<String> = json
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter_map(reliability::executable)
        .collect();
    if binaries.is_empty() {
        return Err("cargo built no test executable".to_string());
    }
    let package_dir = ws.root.join("crates").join(LIB);
    let mut tally = Tally::default();
    for run in 1..=o.runs {
        let start = Instant::now();
        let results = run_all(ws, &checker, &binaries, &o, &package_dir);
        let mut this_run = 0;
        for (binary, result) in binaries.iter().zip(results) {
            let name = binary.rsplit('/').next().unwrap_or(binary);
            match result {
                Ok(outcome) => {
                    this_run += outcome.violations;
                    for line in outcome.reports {
                        println!("spurious: run {run}, {name}: {line}");
                    }
                    if let Some(problem) = outcome.problem {
                        println!("spurious: run {run}, {name}: {problem}");
                        tally.failures += 1;
                    }
                }
                Err(e) => {
                    println!("spurious: run {run}, {name}: {e}");
                    tally.failures += 1;
                }
            }
        }
        tally.runs += 1;
        tally.violations += this_run;
        if this_run > 0 {
            tally.runs_with_violations += 1;
        }
        println!(
            "spurious: run {run}/{} ({} executables, {:.0} s): {this_run} violations; \
             so far {} violations in {} of {} runs, {} other failures",
            o.runs,
            binaries.len(),
            start.elapsed().as_secs_f64(),
            tally.violations,
            tally.runs_with_violations,
            tally.runs,
            tally.failures,
        );
    }
    if tally.violations > 0 || tally.failures > 0 {
        return Err(format!(
            "{} violations in {} of {} runs, {} other failures",
            tally.violations, tally.runs_with_violations, tally.runs, tally.failures
        ));
    }
    println!(
        "spurious: 0 violations in {} consecutive runs of the aarch64 suite on {}, {}",
        tally.runs, o.cpu, o.qemu
    );
    Ok(())
}

#[derive(Default)]
struct Tally {
    runs: u32,
    runs_with_violations: u32,
    violations: u64,
    failures: u32,
}

/// Runs every binary once under the checker, `jobs` at a time, and returns
/// their outcomes in the order of `binaries`.
fn run_all(
    ws: &Workspace,
    checker: &Path,
    binaries: &[String],
    o: &Options,
    dir: &Path,
) -> Vec<Result<Outcome>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Outcome>>>> =
        Mutex::new(binaries.iter().map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..o.jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(binary) = binaries.get(i) else { break };
                let cmd = o.qemu.env(Cmd::new(&checker.display().to_string()), ws);
                let out = cmd
                    .args(["--cpu", &o.cpu, "--", binary])
                    .args(test_args(binary))
                    .env("QEMU_CPU", o.cpu.clone())
                    .dir(dir)
                    .output(Some(LIMIT))
                    .map(|out| {
                        let code = out.status.and_then(|s| s.code());
                        outcome(&out.stderr, code)
                    });
                if let Ok(mut r) = results.lock() {
                    r[i] = Some(out);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not run".to_string())))
        .collect()
}

/// What one checked process tree printed and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The sum of the violation counts of every summary line (each process
    /// of the tree prints its own).
    violations: u64,
    /// The checker's violation lines, to show.
    reports: Vec<String>,
    /// Why the run is not a clean pass, other than violations: a failed
    /// test, a checker error, no summary, a time limit.
    problem: Option<String>,
}

fn outcome(stderr: &str, code: Option<i32>) -> Outcome {
    let summaries: Vec<Summary> = Summary::all_in(stderr).collect();
    let violations = summaries.iter().map(|s| s.violations).sum::<u64>();
    let reports = stderr
        .lines()
        .filter(|l| l.starts_with("icache-check: violation"))
        .map(str::to_string)
        .collect();
    let problem = match code {
        None => Some(format!("killed after {} s", LIMIT.as_secs())),
        Some(_) if summaries.is_empty() => Some("the checker printed no summary".to_string()),
        Some(0) => None,
        Some(checker::EXIT_VIOLATIONS) if violations > 0 => None,
        Some(c) => Some(format!(
            "exit status {c}; last lines:\n{}",
            last_lines(stderr, 15)
        )),
    };
    Outcome {
        violations,
        reports,
        problem,
    }
}

/// The arguments for one test binary: the unit-test binary skips
/// [`SKIPPED_PURE_TESTS`], each matched exactly.
fn test_args(binary: &str) -> Vec<String> {
    let name = binary.rsplit(['/', '\\']).next().unwrap_or(binary);
    if !name.starts_with(UNIT_TEST_BINARY) {
        return Vec::new();
    }
    let mut args = vec!["--exact".to_string()];
    for t in SKIPPED_PURE_TESTS {
        args.extend(["--skip".to_string(), t.to_string()]);
    }
    args
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn parse_args(args: &[String]) -> Result<Options> {
    let usage = || {
        "usage: cargo xtask spurious [--runs N] [--cpu MODEL] [--jobs J] [--qemu 7.2|10]"
            .to_string()
    };
    let mut o = Options {
        runs: DEFAULT_RUNS,
        cpu: DEFAULT_CPU.to_string(),
        jobs: std::thread::available_parallelism().map_or(1, usize::from),
        qemu: Qemu::Debian7,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next().ok_or_else(usage)?;
        match a.as_str() {
            "--runs" => o.runs = value.parse().ok().filter(|&n| n > 0).ok_or_else(usage)?,
            "--jobs" => o.jobs = value.parse().ok().filter(|&n| n > 0).ok_or_else(usage)?,
            "--cpu" => o.cpu = value.clone(),
            "--qemu" => match Qemu::parse_choice(value)?.as_slice() {
                [one] => o.qemu = *one,
                _ => return Err("spurious runs on one QEMU: --qemu 7.2 or 10".to_string()),
            },
            _ => return Err(usage()),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_default_to_200_runs_and_are_read() {
        let o = parse_args(&[]).unwrap();
        assert_eq!((o.runs, o.cpu.as_str()), (200, DEFAULT_CPU));
        assert_eq!(o.qemu, Qemu::Debian7);
        let o = parse_args(&args(&[
            "--runs", "3", "--cpu", "a64fx", "--jobs", "1", "--qemu", "10",
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                runs: 3,
                cpu: "a64fx".to_string(),
                jobs: 1,
                qemu: Qemu::Built10,
            }
        );
        for bad in [
            &["--runs", "0"][..],
            &["--qemu", "both"],
            &["--qemu", "8"],
            &["--runs"],
            &["--jobs", "x"],
            &["-n", "1"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_the_unit_test_binary_skips_the_pure_arithmetic_tests() {
        let unit = test_args("/t/aarch64/debug/deps/icache_coherence-0123abcd");
        assert_eq!(unit[0], "--exact");
        assert_eq!(unit.len(), 1 + 2 * SKIPPED_PURE_TESTS.len());
        assert!(unit.contains(&SKIPPED_PURE_TESTS[1].to_string()));
        assert!(test_args("/t/aarch64/debug/deps/jit-0123abcd").is_empty());
        assert!(test_args("/t/aarch64/debug/examples/jit").is_empty());
    }

    const CLEAN: &str = "running 3 tests\n\
        icache-check: 0 violations, 4 code stores, 6 maintenance ops, 2 vCPUs\n\
        icache-check: by class: 0 maintenance, 0 sync, 0 patch-site\n";

    #[test]
    fn a_clean_run_has_no_violations_and_no_problem() {
        assert_eq!(
            outcome(CLEAN, Some(0)),
            Outcome {
                violations: 0,
                reports: vec![],
                problem: None
            }
        );
    }

    #[test]
    fn violations_of_every_process_are_counted_and_shown() {
        let log = "icache-check: violation: vCPU 1 executed 0x10: no context synchronization on this vCPU\n\
            icache-check: 1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs\n\
            icache-check: 2 violations, 1 code stores, 2 maintenance ops, 1 vCPUs\n";
        let o = outcome(log, Some(checker::EXIT_VIOLATIONS));
        assert_eq!(o.violations, 3);
        assert_eq!(o.reports.len(), 1);
        assert_eq!(o.problem, None);
    }

    #[test]
    fn failed_tests_missing_summaries_and_time_limits_are_problems() {
        assert!(outcome(CLEAN, Some(101)).problem.unwrap().contains("101"));
        assert!(outcome("running 3 tests\n", Some(0)).problem.is_some());
        assert!(outcome(CLEAN, None).problem.unwrap().contains("killed"));
        // 86 without a violation in any summary is not a clean pass either.
        assert!(outcome(CLEAN, Some(checker::EXIT_VIOLATIONS))
            .problem
            .is_some());
    }
}
