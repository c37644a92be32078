//! Reliability runs that need a host process around an emulated one, and
//! the long runs under the coherence checker:
//!
//! - `sandbox <target>`: the library's `sandbox_child` test for `<target>`
//!   under qemu-user, inside a seccomp filter installed on the host side
//!   (qemu refuses a guest's PR_SET_SECCOMP, but passes membarrier through
//!   to the host kernel, where the filter answers), in each sandbox mode.
//! - `race <target> <processes>`: the first-call race, counted with strace
//!   on the host around qemu-user.
//! - `long-run <cpu> <publishes> [--qemu 7.2|10]`: the 8-reader republishing
//!   test on AArch64 under icache-check, on QEMU 7.2 (default) or 10.
//! - `soak [--qemu 7.2|10|both]`: the long configurations of the last two,
//!   the long runs on each chosen QEMU (default both).
//!
//! The host halves of these are the library's own tests (`tests/sandbox.rs`,
//! `tests/first_call_race.rs`); this file only finds the binaries and
//! passes the qemu command line.

use crate::checker::Qemu;
use crate::cmd::{Cmd, Result};
use crate::targets::{self, AARCH64_CPUS, CHECKER_TARGET, DEFAULT_CPU};
use crate::Workspace;
use crate::{checker, LIB};
use std::path::PathBuf;

const SANDBOX_MODES: [&str; 3] = ["enosys", "eperm", "einval-sync-core"];

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["sandbox", target] => sandbox(ws, target),
        ["race", target, n] => race(ws, target, n),
        ["long-run", cpu, n] => long_run(ws, cpu, n, Qemu::Debian7),
        ["long-run", cpu, n, "--qemu", q] => match Qemu::parse_choice(q)?.as_slice() {
            [one] => long_run(ws, cpu, n, *one),
            _ => Err("a long run is on one QEMU: --qemu 7.2 or 10".to_string()),
        },
        ["soak", rest @ ..] => {
            soak_main(ws, &rest.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        }
        _ => Err(
            "usage: cargo xtask reliability sandbox <target> | race <target> <processes> \
             | long-run <cpu> <publishes> [--qemu 7.2|10] | soak [--qemu 7.2|10|both]"
                .to_string(),
        ),
    }
}

/// `cargo xtask soak [--qemu 7.2|10|both]`: the long configurations; the
/// long runs under the checker on each chosen QEMU (default both).
pub fn soak_main(ws: &Workspace, args: &[String]) -> Result {
    let qemus = match args {
        [] => Qemu::ALL.to_vec(),
        [flag, value] if flag == "--qemu" => Qemu::parse_choice(value)?,
        _ => return Err("usage: cargo xtask soak [--qemu 7.2|10|both]".to_string()),
    };
    soak(ws, &qemus)
}

/// Checks every QEMU first, so that a missing QEMU 10 fails at once rather
/// than after the 7.2 runs.
fn soak(ws: &Workspace, qemus: &[Qemu]) -> Result {
    for qemu in qemus {
        qemu.ready(ws)?;
    }
    for &qemu in qemus {
        for cpu in AARCH64_CPUS {
            eprintln!("soak: long run, 1,000,000 publishes, {cpu}, {qemu}");
            long_run(ws, cpu, "1000000", qemu)?;
        }
    }
    // Plain qemu-user (the `.cargo/config.toml` runner), no checker.
    race(ws, CHECKER_TARGET, "5000")
}

fn sandbox(ws: &Workspace, target: &str) -> Result {
    let host = test_binary(ws, None, "sandbox")?;
    let guest = test_binary(ws, Some(target), "sandbox")?;
    let runner = targets::runner(ws, target)?;
    for mode in SANDBOX_MODES {
        let exec = format!(
            "{} {} --ignored --exact sandbox_child --nocapture",
            runner.join(" "),
            guest.display()
        );
        qemu_env(Cmd::new(&host.display().to_string()), target)
            .args([
                "--ignored",
                "--exact",
                "sandbox_host_launcher",
                "--nocapture",
            ])
            .env("ICACHE_SANDBOX_MODE", mode)
            .env("ICACHE_SANDBOX_EXEC", exec)
            .run()?;
    }
    Ok(())
}

fn race(ws: &Workspace, target: &str, processes: &str) -> Result {
    let host = test_binary(ws, None, "first_call_race")?;
    let guest = test_binary(ws, Some(target), "first_call_race")?;
    let exec = format!(
        "{} {} --ignored --exact first_call_race_child --nocapture",
        targets::runner(ws, target)?.join(" "),
        guest.display()
    );
    qemu_env(Cmd::new(&host.display().to_string()), target)
        .args([
            "--exact",
            "sixteen_first_callers_register_exactly_once_per_process",
            "--nocapture",
        ])
        .env("ICACHE_RACE_EXEC", exec)
        .env("ICACHE_RACE_PROCESSES", processes)
        .run()
}

fn long_run(ws: &Workspace, cpu: &str, publishes: &str, qemu: Qemu) -> Result {
    qemu.ready(ws)?;
    checker::build(ws).run()?;
    checker::runner_env(Cmd::new("cargo").dir(&ws.root), ws, cpu, qemu)
        .env("ICACHE_LONG_RUN_PUBLISHES", publishes)
        .args([
            "test",
            "-p",
            LIB,
            "--target",
            CHECKER_TARGET,
            "--test",
            "long_run",
        ])
        .args(["--", "--ignored", "--nocapture"])
        .run()
}

/// The CPU model for aarch64 targets; none for the others (an aarch64
/// model name in QEMU_CPU makes the other qemu binaries refuse to start).
fn qemu_env(cmd: Cmd, target: &str) -> Cmd {
    if target.starts_with("aarch64") {
        cmd.env("QEMU_CPU", DEFAULT_CPU)
    } else {
        cmd.env_remove("QEMU_CPU")
    }
}

/// Builds one integration test (for `target`, or the host) and returns the
/// path of its executable, from cargo's JSON messages.
fn test_binary(ws: &Workspace, target: Option<&str>, test: &str) -> Result<PathBuf> {
    let mut cmd = Cmd::new("cargo").dir(&ws.root).args([
        "test",
        "-p",
        LIB,
        "--no-run",
        "--message-format=json",
        "--test",
        test,
    ]);
    if let Some(t) = target {
        cmd = cmd.args(["--target", t]);
    }
    let json = cmd.stdout()?;
    json.lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .find_map(executable)
        .map(PathBuf::from)
        .ok_or_else(|| format!("cargo built no executable for test `{test}`"))
}

/// The value of `"executable":"..."` in one cargo JSON message, if any.
pub(crate) fn executable(line: &str) -> Option<String> {
    let rest = line.split(r#""executable":""#).nth(1)?;
    let end = rest.find('"')?;
    Some(rest[..end].replace(r"\\", r"\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_is_found_in_a_cargo_message() {
        let line =
            r#"{"reason":"compiler-artifact","executable":"/t/deps/sandbox-1a2b","fresh":true}"#;
        assert_eq!(executable(line).as_deref(), Some("/t/deps/sandbox-1a2b"));
        assert_eq!(
            executable(r#"{"reason":"compiler-artifact","executable":null}"#),
            None
        );
    }
}
