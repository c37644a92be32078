//! `cargo xtask ci`: setup, then every step of [`matrix`], then a summary.
//!
//! A failed step doesn't stop the run: the table at the end shows every
//! step, and the exit status is non-zero if any failed.

mod matrix;

use crate::checker::Qemu;
use crate::cmd::{Cmd, Result};
use crate::{setup, Workspace};
use std::fmt;
use std::time::{Duration, Instant};

/// A step that takes longer has hung (a deadlocked threaded test under qemu,
/// say): it is killed and FAILS, and the run goes on. The slowest step, the
/// aarch64 suite under icache-check, takes about 6 minutes here.
const STEP_LIMIT: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Setup,
    Build,
    Test,
    Check,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Setup => "setup",
            Kind::Build => "build",
            Kind::Test => "test",
            Kind::Check => "check",
        })
    }
}

pub struct Step {
    name: String,
    target: String,
    kind: Kind,
    cmd: Cmd,
    /// Index of a step whose output this one runs (the checker binary). When
    /// that step failed, this one is reported as failed without running, so
    /// a stale binary from an earlier build is never used.
    needs: Option<usize>,
    /// The QEMU the step runs the checker on: when it is not ready (QEMU 10
    /// not built), the step fails without running, naming `cargo xtask
    /// setup`, rather than failing somewhere inside the checker.
    qemu: Option<Qemu>,
}

impl Step {
    fn new(name: &str, target: &str, kind: Kind, cmd: Cmd) -> Self {
        Step {
            name: name.to_string(),
            target: target.to_string(),
            kind,
            cmd,
            needs: None,
            qemu: None,
        }
    }

    fn needs(mut self, step: usize) -> Self {
        self.needs = Some(step);
        self
    }

    fn on(mut self, qemu: Qemu) -> Self {
        self.qemu = Some(qemu);
        self
    }

    /// The text `--only` matches against.
    fn label(&self) -> String {
        format!("{} {} {}", self.name, self.target, self.kind)
    }
}

struct Outcome {
    name: String,
    target: String,
    kind: Kind,
    result: Result,
    time: Duration,
}

struct Options {
    only: Vec<String>,
    setup: bool,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        only: Vec::new(),
        setup: true,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => match args.next() {
                Some(s) => opts.only.push(s.clone()),
                None => return Err("--only needs a substring".to_string()),
            },
            "--no-setup" => opts.setup = false,
            _ => {
                return Err(format!(
                    "unknown argument `{arg}` (try --only <substring>, --no-setup)"
                ))
            }
        }
    }
    Ok(opts)
}

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let opts = parse(args)?;
    let all = matrix::steps(ws);
    let selected: Vec<usize> = (0..all.len())
        .filter(|&i| {
            opts.only.is_empty()
                || opts
                    .only
                    .iter()
                    .any(|s| all[i].label().contains(s.as_str()))
        })
        .collect();
    if selected.is_empty() {
        let labels: Vec<String> = all.iter().map(Step::label).collect();
        return Err(format!(
            "--only matched no step; steps are:\n  {}",
            labels.join("\n  ")
        ));
    }

    let start = Instant::now();
    let mut outcomes = Vec::new();
    if opts.setup {
        banner("[setup] cargo xtask setup");
        let t = Instant::now();
        let result = setup::run(ws);
        outcomes.push(Outcome {
            name: "setup".to_string(),
            target: "host".to_string(),
            kind: Kind::Setup,
            result,
            time: t.elapsed(),
        });
    }

    // Results by index into `all`, for `needs`.
    let mut passed = vec![None::<bool>; all.len()];
    for (n, &i) in selected.iter().enumerate() {
        let step = &all[i];
        banner(&format!(
            "[{}/{}] {} {} ({}): {}",
            n + 1,
            selected.len(),
            step.name,
            step.target,
            step.kind,
            step.cmd
        ));
        let t = Instant::now();
        let result = match step.needs.and_then(|d| passed[d].map(|ok| (d, ok))) {
            Some((d, false)) => Err(format!(
                "not run: it needs `{} {}`, which failed",
                all[d].name, all[d].target
            )),
            _ => match step.qemu.map_or(Ok(()), |q| q.ready(ws)) {
                Ok(()) => step.cmd.run_with_timeout(STEP_LIMIT),
                Err(e) => Err(format!("not run: {e}")),
            },
        };
        if let Err(e) = &result {
            eprintln!("FAILED: {e}");
        }
        passed[i] = Some(result.is_ok());
        outcomes.push(Outcome {
            name: step.name.clone(),
            target: step.target.clone(),
            kind: step.kind,
            result,
            time: t.elapsed(),
        });
    }

    let table = summary(&outcomes, start.elapsed());
    println!("\n{table}");
    // Kept for CI systems that show or archive files rather than logs.
    let saved = ws.target_dir.join("ci-summary.txt");
    if let Err(e) =
        std::fs::create_dir_all(&ws.target_dir).and_then(|()| std::fs::write(&saved, &table))
    {
        eprintln!("could not save the summary to {}: {e}", saved.display());
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} of {} steps FAILED", outcomes.len()))
    }
}

fn banner(text: &str) {
    eprintln!("\n==> {text}");
}

fn summary(outcomes: &[Outcome], total: Duration) -> String {
    let header = ["step", "target", "kind", "result", "seconds"];
    let mut rows: Vec<[String; 5]> = outcomes
        .iter()
        .map(|o| {
            [
                o.name.clone(),
                o.target.clone(),
                o.kind.to_string(),
                if o.result.is_ok() { "ok" } else { "FAILED" }.to_string(),
                format!("{:.1}", o.time.as_secs_f64()),
            ]
        })
        .collect();
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    rows.push([
        "total".to_string(),
        match outcomes.len() {
            1 => "1 step".to_string(),
            n => format!("{n} steps"),
        },
        String::new(),
        if failed == 0 {
            "ok".to_string()
        } else {
            format!("{failed} FAILED")
        },
        format!("{:.1}", total.as_secs_f64()),
    ]);
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        format!(
            "| {:<w0$} | {:<w1$} | {:<w2$} | {:<w3$} | {:>w4$} |\n",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4],
        )
    };
    let rule = {
        let dashes: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        format!("|-{}-|\n", dashes.join("-|-"))
    };
    let mut out = line(header);
    out.push_str(&rule);
    let (total_row, step_rows) = rows.split_last().expect("rows has the total row");
    for row in step_rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out.push_str(&rule);
    out.push_str(&line(total_row.each_ref().map(String::as_str)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn workspace() -> Workspace {
        Workspace {
            root: PathBuf::from("/ws"),
            target_dir: PathBuf::from("/ws/target"),
        }
    }

    #[test]
    fn only_can_be_repeated_and_setup_skipped() {
        let o = parse(&args(&["--only", "miri", "--no-setup", "--only", "wine"])).unwrap();
        assert_eq!(o.only, ["miri", "wine"]);
        assert!(!o.setup);
    }

    #[test]
    fn only_without_a_value_and_unknown_flags_are_errors() {
        assert!(parse(&args(&["--only"])).is_err());
        assert!(parse(&args(&["--fast"])).is_err());
    }

    #[test]
    fn checker_runs_wait_for_the_checker_build() {
        let steps = matrix::steps(&workspace());
        let checked: Vec<&Step> = steps.iter().filter(|s| s.needs.is_some()).collect();
        // test + example for aarch64 (one CPU model per QEMU), riscv64,
        // armv7 and ppc64le (issue 12), each on QEMU 7.2 and 10, and
        // riscv64's one-core suite on one hart.
        assert_eq!(checked.len(), 17);
        let (mut riscv, mut one_core, mut arm, mut power) = (0, 0, 0, 0);
        for s in checked {
            let build = &steps[s.needs.unwrap()];
            assert_eq!(build.label(), "build icache-check build");
            let shown = s.cmd.to_string();
            let aarch64 = "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER='/ws/target/release/icache-check --cpu ";
            let riscv64 = "CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER='/ws/target/release/icache-check --cpu rv64 --'";
            let one_hart = "CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_GNU_RUNNER='/ws/target/release/icache-check --cpu rv64 --one-hart --'";
            let armv7 = "CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER='/ws/target/release/icache-check --cpu cortex-a15 --'";
            let ppc64le = "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_RUNNER='/ws/target/release/icache-check --cpu power9 --'";
            if shown.contains(armv7) {
                assert!(
                    shown.contains("--target armv7-unknown-linux-gnueabihf"),
                    "{shown}"
                );
                arm += 1;
            } else if shown.contains(ppc64le) {
                assert!(
                    shown.contains("--target powerpc64le-unknown-linux-gnu"),
                    "{shown}"
                );
                power += 1;
            } else if shown.contains(one_hart) {
                assert!(shown.contains("--features one-core"), "{shown}");
                one_core += 1;
            } else if shown.contains(riscv64) {
                assert!(
                    shown.contains("--target riscv64gc-unknown-linux-gnu"),
                    "{shown}"
                );
                riscv += 1;
            } else {
                assert!(shown.contains(aarch64), "{shown}");
            }
        }
        assert_eq!((riscv, one_core, arm, power), (4, 1, 4, 4));
    }

    #[test]
    fn every_qemu_runs_every_architecture_under_the_checker_once() {
        let steps = matrix::steps(&workspace());
        let targets = [
            crate::targets::CHECKER_TARGET,
            crate::targets::CHECKER_RISCV64_TARGET,
            crate::targets::CHECKER_ARM_TARGET,
            crate::targets::CHECKER_PPC64LE_TARGET,
        ];
        for qemu in Qemu::ALL {
            for target in targets {
                let names: Vec<&str> = steps
                    .iter()
                    .filter(|s| {
                        s.needs.is_some()
                            && s.target.starts_with(&format!("{target} (icache-check "))
                            && s.target.ends_with(&format!(", {qemu})"))
                            && !s.target.contains("one-core")
                    })
                    .map(|s| s.name.as_str())
                    .collect();
                assert_eq!(names, ["test", "example jit"], "{target} on {qemu}");
            }
        }
        // Both aarch64 line sizes stay covered under the checker.
        for cpu in crate::targets::AARCH64_CPUS {
            let prefix = format!("aarch64-unknown-linux-gnu (icache-check {cpu}, ");
            assert!(steps.iter().any(|s| s.target.starts_with(&prefix)), "{cpu}");
        }
    }

    #[test]
    fn steps_on_qemu_10_point_the_checker_at_the_built_qemu_and_check_it_first() {
        let steps = matrix::steps(&workspace());
        let dir = "ICACHE_CHECK_QEMU_DIR=/ws/target/qemu-10.0.2/bin ";
        let on_10: Vec<&Step> = steps
            .iter()
            .filter(|s| s.qemu == Some(Qemu::Built10))
            .collect();
        // 4 architectures x (suite + example), the checker's own tests, the
        // long run and the mutants.
        assert_eq!(on_10.len(), 11);
        for s in &on_10 {
            assert!(s.label().contains("QEMU 10.0.2"), "{}", s.label());
            let shown = s.cmd.to_string();
            let xtask_run = shown.contains(" mutants ") || shown.contains(" long-run ");
            assert!(xtask_run || shown.starts_with(dir), "{shown}");
        }
        assert!(on_10
            .iter()
            .any(|s| s.cmd.to_string() == format!("{dir}cargo test -p icache-check --test '*'")));
        for s in steps.iter().filter(|s| s.qemu != Some(Qemu::Built10)) {
            assert!(!s.cmd.to_string().contains(dir), "{}", s.cmd);
        }
    }

    #[test]
    fn a_step_on_a_missing_qemu_10_fails_naming_setup() {
        let e = Qemu::Built10.ready(&workspace()).unwrap_err();
        assert!(e.contains("cargo xtask setup"), "{e}");
    }

    #[test]
    fn every_aarch64_cpu_model_runs_the_suite_and_the_example_under_qemu() {
        let steps = matrix::steps(&workspace());
        for cpu in crate::targets::AARCH64_CPUS {
            let label = format!("aarch64-unknown-linux-gnu (qemu {cpu})");
            let names: Vec<&str> = steps
                .iter()
                .filter(|s| s.target == label)
                .map(|s| s.name.as_str())
                .collect();
            assert_eq!(names, ["test", "example jit"], "{label}");
        }
    }

    #[test]
    fn step_labels_are_unique() {
        let steps = matrix::steps(&workspace());
        let mut labels: Vec<String> = steps.iter().map(Step::label).collect();
        labels.sort();
        let n = labels.len();
        labels.dedup();
        assert_eq!(labels.len(), n);
    }

    #[test]
    fn summary_marks_failures_and_totals() {
        let outcomes = [
            Outcome {
                name: "fmt".into(),
                target: "host".into(),
                kind: Kind::Check,
                result: Ok(()),
                time: Duration::from_millis(1500),
            },
            Outcome {
                name: "test".into(),
                target: "x86_64-pc-windows-gnu (wine)".into(),
                kind: Kind::Test,
                result: Err("boom".into()),
                time: Duration::from_secs(2),
            },
        ];
        let table = summary(&outcomes, Duration::from_secs(4));
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[2].contains("| fmt ")
                && lines[2].contains("| ok ")
                && lines[2].ends_with("1.5 |")
        );
        assert!(lines[3].contains("| FAILED ") && lines[3].ends_with("2.0 |"));
        assert!(
            lines[5].contains("| 2 steps ")
                && lines[5].contains("| 1 FAILED ")
                && lines[5].ends_with("4.0 |")
        );
        // All rows are equally wide.
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }
}
