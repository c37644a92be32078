//! Running external programs: a small command description that can be printed,
//! run with inherited output, run with a timeout, or run for its output.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Result type of xtask: errors are messages for a human, printed by `main`.
pub type Result<T = ()> = std::result::Result<T, String>;

/// A program with arguments and extra environment, not yet started.
#[derive(Clone, Debug)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
    dir: Option<PathBuf>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Cmd {
            program: program.to_string(),
            args: Vec::new(),
            env: Vec::new(),
            unset: Vec::new(),
            dir: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Removes `key` from the inherited environment.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.unset.push(key.to_string());
        self
    }

    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        scrub_cargo_run_env(&mut c);
        for k in &self.unset {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c
    }

    /// Runs with inherited stdio; Ok if it exited with status 0.
    pub fn run(&self) -> Result {
        let status = self
            .command()
            .status()
            .map_err(|e| format!("cannot start `{self}`: {e}"))?;
        check_status(self, status)
    }

    /// Like [`Cmd::run`], but kills the program when it has not finished
    /// within `limit`.
    pub fn run_with_timeout(&self, limit: Duration) -> Result {
        let mut child = self
            .command()
            .spawn()
            .map_err(|e| format!("cannot start `{self}`: {e}"))?;
        let start = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return check_status(self, status),
                Ok(None) if start.elapsed() >= limit => {
                    kill_tree(&mut child);
                    return Err(format!(
                        "`{self}` did not finish within {} s and was killed",
                        limit.as_secs()
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(100)),
                Err(e) => return Err(format!("waiting for `{self}`: {e}")),
            }
        }
    }

    /// Runs with captured output and returns stdout, whatever the exit status
    /// (some queries, like `dpkg-query` for unknown packages, exit non-zero
    /// while still printing what we need).
    pub fn stdout_lossy(&self) -> Result<String> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("cannot start `{self}`: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs with captured output; Ok(stdout) only on exit status 0.
    pub fn stdout(&self) -> Result<String> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot start `{self}`: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`{self}` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Kills `child` and every process below it. Killing only `cargo` would
/// leave the test binary (and the qemu running it) behind, and once cargo is
/// gone its children belong to init and can no longer be found, so the tree
/// is collected first and then killed at once, by pid.
fn kill_tree(child: &mut Child) {
    let mut pids = descendants(child.id());
    pids.push(child.id());
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// All processes below `root`, from the parent pids in `/proc/<pid>/stat`.
fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parent_of: Vec<(u32, u32)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, parent_pid(&stat)?))
        })
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

/// The parent pid from a `/proc/<pid>/stat` line: "pid (comm) state ppid ...".
/// The command name may itself contain spaces and parentheses, so fields are
/// counted from the last ')'.
fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn check_status(cmd: &Cmd, status: ExitStatus) -> Result {
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{cmd}` failed ({status})"))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.env {
            write!(f, "{k}={} ", quote(v))?;
        }
        write!(f, "{}", self.program)?;
        for a in &self.args {
            write!(f, " {}", quote(a))?;
        }
        Ok(())
    }
}

/// Quotes for display so a logged command line can be pasted into a shell.
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `cargo xtask` is `cargo run`, which hands xtask the environment of a
/// program being run by cargo: `CARGO` pointing at the *stable* cargo,
/// `RUSTUP_TOOLCHAIN` pinned by the rustup proxy, package metadata, and the
/// host toolchain's library dirs in `LD_LIBRARY_PATH`. Passed on, these make
/// `cargo +nightly miri` call the stable cargo and leak xtask's identity into
/// the builds it starts, so they are removed. A toolchain the user chose
/// explicitly through `RUSTUP_TOOLCHAIN` (source "env") is kept.
fn scrub_cargo_run_env(c: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let from_cargo_run = matches!(
            key,
            "CARGO"
                | "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "RUST_RECURSION_COUNT"
        ) || key.starts_with("CARGO_PKG_");
        if from_cargo_run {
            c.env_remove(key);
        }
    }
    if std::env::var("RUSTUP_TOOLCHAIN_SOURCE").as_deref() != Ok("env") {
        c.env_remove("RUSTUP_TOOLCHAIN");
        c.env_remove("RUSTUP_TOOLCHAIN_SOURCE");
    }
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from);
        let kept: Vec<PathBuf> = std::env::split_paths(&paths)
            .filter(|p| {
                let toolchain = rustup_home
                    .as_ref()
                    .is_some_and(|h| p.starts_with(h.join("toolchains")));
                let build_output = p.ends_with("debug") || p.ends_with("debug/deps");
                !toolchain && !build_output
            })
            .collect();
        if kept.is_empty() {
            c.env_remove("LD_LIBRARY_PATH");
        } else if let Ok(joined) = std::env::join_paths(kept) {
            c.env("LD_LIBRARY_PATH", joined);
        }
    }
}

/// Whether `program` can be found on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_is_read_after_the_command_name() {
        assert_eq!(parent_pid("42 (cargo) S 7 42 42 0"), Some(7));
        assert_eq!(parent_pid("43 (a b) (c)) R 42 43 1"), Some(42));
        assert_eq!(parent_pid("garbage"), None);
    }

    #[test]
    fn a_command_over_its_time_limit_is_killed_with_its_children() {
        let pid_file = std::env::temp_dir().join(format!("xtask-kill-tree-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let start = Instant::now();
        let r = Cmd::new("sh")
            .args(["-c", &script])
            .run_with_timeout(Duration::from_millis(500));
        assert!(r.unwrap_err().contains("did not finish within"));
        assert!(start.elapsed() < Duration::from_secs(10));
        let sleeper = fs::read_to_string(&pid_file).unwrap();
        let _ = fs::remove_file(&pid_file);
        // Killed: gone, or a zombie until init reaps it.
        let stat = format!("/proc/{}/stat", sleeper.trim());
        let alive = (0..50).all(|_| {
            let running = fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            });
            if running {
                thread::sleep(Duration::from_millis(20));
            }
            running
        });
        assert!(!alive, "the shell's child survived");
    }

    #[test]
    fn display_quotes_what_a_shell_would_split() {
        let c = Cmd::new("cargo")
            .env("RUNNER", "/x/icache-check --cpu a64fx --")
            .args(["test", "it's"]);
        assert_eq!(
            c.to_string(),
            r"RUNNER='/x/icache-check --cpu a64fx --' cargo test 'it'\''s'"
        );
    }
}
