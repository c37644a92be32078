//! Everything xtask knows about the coherence checker (`crates/icache-check`),
//! in one place: its package and binary, how cargo runs a target's tests
//! under it, its exit statuses and its summary line. `ci`, `mutants`,
//! `reliability` and `bench` take these from here.
//!
//! The exit statuses and the summary line are the checker's own
//! definitions, compiled in from its source files with `#[path]`: a binary
//! cannot link the checker's library (its plugin entry points need symbols
//! that only QEMU provides), and both files depend on `std` alone. So there
//! is one definition of each, in the checker, and a change there is a
//! change here.

#[path = "../../crates/icache-check/src/exit_status.rs"]
mod exit_status;
/// The runner's reading of `qemu-ARCH --version`, which setup also needs.
#[path = "../../crates/icache-check/src/qemu_version.rs"]
#[allow(dead_code)] // xtask does not choose a plugin
pub mod qemu_version;
#[path = "../../crates/icache-check/src/summary.rs"]
#[allow(dead_code)] // the checker's class line is not used by xtask
mod summary;

use crate::cmd::{Cmd, Result};
use crate::setup::qemu as built_qemu;
use crate::targets::{cargo_target_var, CHECKER_TARGET};
use crate::Workspace;
use std::fmt;
use std::path::PathBuf;

/// The checker's summary line: `icache-check: 0 violations, 1 code stores,
/// 2 maintenance ops, 2 vCPUs` (its formatter and parser are side by side in
/// the checker's `summary.rs`).
pub use summary::Counts as Summary;

/// The checker's package, which is also its binary's name.
pub const PACKAGE: &str = "icache-check";

/// Exit status when the checked program executed code that was not made
/// coherent.
pub const EXIT_VIOLATIONS: i32 = exit_status::EXIT_VIOLATIONS as i32;

/// Exit status when the checker itself could not run or could not trust its
/// results.
pub const EXIT_CHECKER_FAILED: i32 = exit_status::EXIT_CHECKER_FAILED as i32;

/// The runner's variable naming a folder with `qemu-aarch64`,
/// `qemu-riscv64`, `qemu-arm` and `qemu-ppc64le`; unset, it runs the
/// `qemu-ARCH` on PATH. It picks its plugin (QEMU plugin API v1 or v4) from
/// that binary's `--version`.
pub const QEMU_DIR_VAR: &str = "ICACHE_CHECK_QEMU_DIR";

/// The runner's variable naming one exact qemu binary; it wins over
/// [`QEMU_DIR_VAR`], so xtask always removes it: a run labelled with a QEMU
/// version must run that version.
pub const QEMU_BINARY_VAR: &str = "ICACHE_CHECK_QEMU";

/// The QEMU releases the checker runs on (issue 12, item 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qemu {
    /// Debian 12's qemu-user 7.2, the `qemu-ARCH` on PATH (plugin API v1).
    Debian7,
    /// QEMU 10.0.2, built by `cargo xtask setup` into
    /// `target/qemu-10.0.2/bin` (plugin API v4); see `setup/qemu.rs`.
    Built10,
}

impl Qemu {
    /// Every QEMU the checker supports, oldest first.
    pub const ALL: [Qemu; 2] = [Qemu::Debian7, Qemu::Built10];

    /// The version as labels show it.
    pub fn version(self) -> &'static str {
        match self {
            Qemu::Debian7 => "7.2",
            Qemu::Built10 => built_qemu::VERSION,
        }
    }

    /// `--qemu` values: `7.2`, `10` (or `10.0.2`), `both`.
    pub fn parse_choice(value: &str) -> Result<Vec<Qemu>> {
        match value {
            "7.2" | "7" => Ok(vec![Qemu::Debian7]),
            "10" | built_qemu::VERSION => Ok(vec![Qemu::Built10]),
            "both" | "all" => Ok(Qemu::ALL.to_vec()),
            _ => Err(format!("--qemu takes 7.2, 10 or both, not `{value}`")),
        }
    }

    /// Ok when this QEMU can run: Debian's always counts as present (the
    /// run itself says when it is not); the built one must be in
    /// [`qemu_dir`], else the error names `cargo xtask setup`.
    pub fn ready(self, ws: &Workspace) -> Result {
        match self {
            Qemu::Debian7 => Ok(()),
            Qemu::Built10 => built_qemu::check(&qemu_dir(ws)),
        }
    }

    /// `cmd` with the environment that makes the runner use this QEMU.
    pub fn env(self, cmd: Cmd, ws: &Workspace) -> Cmd {
        let cmd = cmd.env_remove(QEMU_BINARY_VAR);
        match self {
            Qemu::Debian7 => cmd.env_remove(QEMU_DIR_VAR),
            Qemu::Built10 => cmd.env(QEMU_DIR_VAR, qemu_dir(ws).display().to_string()),
        }
    }
}

impl fmt::Display for Qemu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QEMU {}", self.version())
    }
}

/// The folder of the QEMU 10 binaries that `cargo xtask setup` builds: the
/// one place CI, mutants and soak take it from.
pub fn qemu_dir(ws: &Workspace) -> PathBuf {
    built_qemu::bin_dir(ws)
}

/// The checker's release build command.
pub fn build(ws: &Workspace) -> Cmd {
    Cmd::new("cargo")
        .dir(&ws.root)
        .args(["build", "-p", PACKAGE, "--release"])
}

/// Where [`build`] puts the binary. It carries its plugin (the checker's
/// `build.rs` embeds it), so it needs no file beside it.
pub fn binary(ws: &Workspace) -> PathBuf {
    ws.target_dir.join("release").join(PACKAGE)
}

/// The environment that makes `cargo test|run --target CHECKER_TARGET` run
/// every binary under the checker with the CPU model `cpu`: the cargo runner
/// variable, and `QEMU_CPU` for anything that runs qemu directly.
pub fn runner_env(cmd: Cmd, ws: &Workspace, cpu: &str, qemu: Qemu) -> Cmd {
    runner_env_for(cmd, ws, CHECKER_TARGET, cpu, qemu)
}

/// [`runner_env`] for another target the checker runs (it reads the
/// architecture from each program's ELF header); `cpu` must be one of that
/// architecture's models.
pub fn runner_env_for(cmd: Cmd, ws: &Workspace, target: &str, cpu: &str, qemu: Qemu) -> Cmd {
    qemu.env(cmd, ws)
        .env(
            &cargo_target_var(target, "RUNNER"),
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

/// The last summary line in `log`: the outermost process's, which exits
/// last.
pub fn last_summary(log: &str) -> Option<Summary> {
    Summary::all_in(log).last()
}

/// Builds the checker and returns its binary.
pub fn built(ws: &Workspace) -> Result<PathBuf> {
    build(ws).run()?;
    Ok(binary(ws))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Workspace {
        Workspace {
            root: PathBuf::from("/ws"),
            target_dir: PathBuf::from("/ws/target"),
        }
    }

    #[test]
    fn qemu_choices_parse_and_anything_else_is_an_error() {
        assert_eq!(Qemu::parse_choice("7.2").unwrap(), [Qemu::Debian7]);
        assert_eq!(Qemu::parse_choice("10").unwrap(), [Qemu::Built10]);
        assert_eq!(Qemu::parse_choice("10.0.2").unwrap(), [Qemu::Built10]);
        assert_eq!(Qemu::parse_choice("both").unwrap(), Qemu::ALL);
        assert!(Qemu::parse_choice("9").is_err());
        assert!(Qemu::parse_choice("").is_err());
    }

    #[test]
    fn the_built_qemu_is_named_by_folder_and_debians_by_nothing() {
        let ws = workspace();
        let built = Qemu::Built10.env(Cmd::new("cargo"), &ws).to_string();
        assert_eq!(
            built,
            "ICACHE_CHECK_QEMU_DIR=/ws/target/qemu-10.0.2/bin cargo"
        );
        let debian = Qemu::Debian7.env(Cmd::new("cargo"), &ws).to_string();
        assert_eq!(debian, "cargo");
        assert_eq!(Qemu::Built10.to_string(), "QEMU 10.0.2");
        assert_eq!(Qemu::Debian7.to_string(), "QEMU 7.2");
    }

    #[test]
    fn the_built_qemu_is_not_ready_without_setup() {
        let e = Qemu::Built10.ready(&workspace()).unwrap_err();
        assert!(e.contains("cargo xtask setup"), "{e}");
        assert!(Qemu::Debian7.ready(&workspace()).is_ok());
    }

    #[test]
    fn the_summary_line_the_checker_prints_parses() {
        // As icache-check's model prints it (its test `summary_line_format`).
        let line = "icache-check: 0 violations, 1 code stores, 2 maintenance ops, 2 vCPUs";
        assert_eq!(
            Summary::parse_line(line),
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
            assert_eq!(Summary::parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn the_last_summary_is_the_outermost_process() {
        let log = "icache-check: 1 violations, 0 code stores, 7 maintenance ops, 1 vCPUs\n\
                   other output\n\
                   icache-check: 0 violations, 4 code stores, 9 maintenance ops, 3 vCPUs\n";
        assert_eq!(last_summary(log).map(|s| s.maintenance_ops), Some(9));
        assert_eq!(last_summary("nothing"), None);
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
