//! Reliability runs that need a host process around an emulated one, and
//! the long runs under the coherence checker:
//!
//! - `sandbox <target>`: the library's `sandbox_child` test for `<target>`
//!   under qemu-user, inside a seccomp filter installed on the host side
//!   (qemu refuses a guest's PR_SET_SECCOMP, but passes membarrier through
//!   to the host kernel, where the filter answers), in each sandbox mode.
//! - `race <target> <processes>`: the first-call race, counted with strace
//!   on the host around qemu-user.
//! - `long-run <cpu> <publishes>`: the 8-reader republishing test on AArch64
//!   under icache-check.
//! - `soak`: the long configurations of the last two.
//!
//! The host halves of these are the library's own tests (`tests/sandbox.rs`,
//! `tests/first_call_race.rs`); this file only finds the binaries and
//! passes the qemu command line.

use crate::cmd::{Cmd, Result};
use crate::targets::{AARCH64_CPUS, CHECKER_TARGET};
use crate::Workspace;
use std::path::PathBuf;

const LIB: &str = "icache-coherence";
const SANDBOX_MODES: [&str; 3] = ["enosys", "eperm", "einval-sync-core"];

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["sandbox", target] => sandbox(ws, target),
        ["race", target, n] => race(ws, target, n),
        ["long-run", cpu, n] => long_run(ws, cpu, n),
        ["soak"] => soak(ws),
        _ => Err(
            "usage: cargo xtask reliability sandbox <target> | race <target> <processes> \
             | long-run <cpu> <publishes> | soak"
                .to_string(),
        ),
    }
}

/// `cargo xtask soak`: the long configurations.
pub fn soak_main(ws: &Workspace, args: &[String]) -> Result {
    if !args.is_empty() {
        return Err("usage: cargo xtask soak".to_string());
    }
    soak(ws)
}

fn soak(ws: &Workspace) -> Result {
    for cpu in AARCH64_CPUS {
        long_run(ws, cpu, "1000000")?;
    }
    race(ws, CHECKER_TARGET, "5000")
}

fn sandbox(ws: &Workspace, target: &str) -> Result {
    let host = test_binary(ws, None, "sandbox")?;
    let guest = test_binary(ws, Some(target), "sandbox")?;
    let runner = runner(ws, target)?;
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
        runner(ws, target)?.join(" "),
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

fn long_run(ws: &Workspace, cpu: &str, publishes: &str) -> Result {
    let checker = ws.target_dir.join("release").join("icache-check");
    Cmd::new("cargo")
        .dir(&ws.root)
        .args(["build", "-p", "icache-check", "--release"])
        .run()?;
    let var = CHECKER_TARGET.to_uppercase().replace('-', "_");
    Cmd::new("cargo")
        .dir(&ws.root)
        .env(
            &format!("CARGO_TARGET_{var}_RUNNER"),
            format!("{} --cpu {cpu} --", checker.display()),
        )
        .env("QEMU_CPU", cpu)
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
        cmd.env("QEMU_CPU", AARCH64_CPUS[0])
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
fn executable(line: &str) -> Option<String> {
    let rest = line.split(r#""executable":""#).nth(1)?;
    let end = rest.find('"')?;
    Some(rest[..end].replace(r"\\", r"\"))
}

/// The qemu runner of `target`, read from `.cargo/config.toml` so that the
/// command line has one source of truth.
fn runner(ws: &Workspace, target: &str) -> Result<Vec<String>> {
    let path = ws.root.join(".cargo").join("config.toml");
    let config = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_runner(&config, target)
        .ok_or_else(|| format!("no runner for {target} in {}", path.display()))
}

fn parse_runner(config: &str, target: &str) -> Option<Vec<String>> {
    let header = format!("[target.{target}]");
    let section = config.split(&header).nth(1)?;
    let section = section.split("\n[").next()?;
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with("runner"))?;
    let list = line.split_once('[')?.1.rsplit_once(']')?.0;
    Some(
        list.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_is_read_from_the_target_section() {
        let config = "[target.a]\nlinker = \"x\"\nrunner = [\"qemu-a\", \"-L\", \"/usr/a\"]\n\n\
                      [target.b]\nrunner = [\"qemu-b\"]\n";
        assert_eq!(
            parse_runner(config, "a").unwrap(),
            ["qemu-a", "-L", "/usr/a"]
        );
        assert_eq!(parse_runner(config, "b").unwrap(), ["qemu-b"]);
        assert_eq!(parse_runner(config, "c"), None);
    }

    #[test]
    fn every_qemu_target_has_a_runner_in_the_real_config() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
        for (target, _) in crate::targets::QEMU_LINUX {
            let r = parse_runner(&config, target).unwrap_or_else(|| panic!("{target}"));
            assert!(r[0].starts_with("qemu-"), "{target}: {r:?}");
        }
    }

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
