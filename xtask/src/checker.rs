//! Everything xtask knows about the coherence checker (`crates/icache-check`),
//! in one place: its package and binary, how cargo runs a target's tests
//! under it, its exit statuses and its summary line. `ci`, `mutants`,
//! `reliability` and `bench` take these from here.
//!
// TODO(lead): take from icache_check once it exports them: the exit statuses
// (`EXIT_VIOLATIONS`, `EXIT_CHECKER_FAILED`, today in its src/main.rs) and
// the summary line's parser (its formatter is `Counts`'s Display in its
// src/model.rs). Until then they are copied here, and only here.

use crate::cmd::{Cmd, Result};
use crate::targets::{cargo_target_var, CHECKER_TARGET};
use crate::Workspace;
use std::path::PathBuf;

/// The checker's package, which is also its binary's name.
pub const PACKAGE: &str = "icache-check";

/// Exit status when the checked program executed code that was not made
/// coherent (icache-check `EXIT_VIOLATIONS`).
pub const EXIT_VIOLATIONS: i32 = 86;

/// Exit status when the checker itself could not run or could not trust its
/// results (icache-check `EXIT_CHECKER_FAILED`).
pub const EXIT_CHECKER_FAILED: i32 = 87;

/// The checker's release build command.
pub fn build(ws: &Workspace) -> Cmd {
    Cmd::new("cargo")
        .dir(&ws.root)
        .args(["build", "-p", PACKAGE, "--release"])
}

/// Where [`build`] puts the binary.
pub fn binary(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("release").join(PACKAGE)
}

/// The environment that makes `cargo test|run --target CHECKER_TARGET` run
/// every binary under the checker with the CPU model `cpu`: the cargo runner
/// variable, and `QEMU_CPU` for anything that runs qemu directly.
pub fn runner_env(cmd: Cmd, ws: &Workspace, cpu: &str) -> Cmd {
    cmd.env(
        &cargo_target_var(CHECKER_TARGET, "RUNNER"),
        format!("{} --cpu {cpu} --", binary(ws).display()),
    )
    .env("QEMU_CPU", cpu)
}

/// Whether a run's output (cargo's and the checker's) shows that the checker
/// reported violations: its own last line, or cargo naming the status.
pub fn reported_violations(output: &str) -> bool {
    output.contains(&format!("violation(s): exiting with {EXIT_VIOLATIONS}"))
        || output.contains(&format!("exit status: {EXIT_VIOLATIONS}"))
}

/// The checker's summary line, printed once per process that ran to its
/// exit: `icache-check: 0 violations, 1 code stores, 2 maintenance ops, 2 vCPUs`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub violations: u64,
    pub code_stores: u64,
    pub maintenance_ops: u64,
    pub vcpus: u64,
}

impl Summary {
    /// Parses one summary line; `None` for any other line.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim_end().strip_prefix("icache-check: ")?;
        let fields: Vec<&str> = rest.split(", ").collect();
        let [v, s, m, c] = fields.as_slice() else {
            return None;
        };
        let number = |field: &str, unit: &str| field.strip_suffix(unit)?.parse().ok();
        Some(Summary {
            violations: number(v, " violations")?,
            code_stores: number(s, " code stores")?,
            maintenance_ops: number(m, " maintenance ops")?,
            vcpus: number(c, " vCPUs")?,
        })
    }

    /// The last summary line in `log`: the outermost process's, which exits
    /// last.
    pub fn last_in(log: &str) -> Option<Summary> {
        log.lines().rev().find_map(Summary::parse)
    }
}

/// Builds the checker and returns its binary.
pub fn built(ws: &Workspace) -> Result<PathBuf> {
    build(ws).run()?;
    Ok(binary(ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_the_checker_prints_parses() {
        // As icache-check's model prints it (its test `summary_line_format`).
        let line = "icache-check: 0 violations, 1 code stores, 2 maintenance ops, 2 vCPUs";
        assert_eq!(
            Summary::parse(line),
            Some(Summary {
                violations: 0,
                code_stores: 1,
                maintenance_ops: 2,
                vcpus: 2
            })
        );
    }

    #[test]
    fn other_checker_lines_are_not_summaries() {
        for line in [
            "icache-check: violation: vCPU 0 executed 0x10: not cleaned",
            "icache-check: error: self-check failed",
            "icache-check: 2 violation(s): exiting with 86 (the program's own status was 0)",
            "icache-check: x violations, 1 code stores, 2 maintenance ops, 2 vCPUs",
        ] {
            assert_eq!(Summary::parse(line), None, "{line}");
        }
    }

    #[test]
    fn the_last_summary_is_the_outermost_process() {
        let log = "icache-check: 1 violations, 0 code stores, 7 maintenance ops, 1 vCPUs\n\
                   other output\n\
                   icache-check: 0 violations, 4 code stores, 9 maintenance ops, 3 vCPUs\n";
        assert_eq!(Summary::last_in(log).map(|s| s.maintenance_ops), Some(9));
        assert_eq!(Summary::last_in("nothing"), None);
    }

    #[test]
    fn violations_are_recognised_from_the_checker_or_from_cargo() {
        assert!(reported_violations(
            "icache-check: 1 violation(s): exiting with 86 (the program's own status was 0)"
        ));
        assert!(reported_violations(
            "error: test failed, to rerun pass `--test x`\n\nCaused by:\n  process didn't exit successfully: `...` (exit status: 86)"
        ));
        assert!(!reported_violations("(exit status: 87)"));
    }
}
