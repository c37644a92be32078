//! Running external programs: a small command description that can be printed,
//! run with inherited output, run with a timeout, or run for its output.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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
                    // Kill and reap; the error below is the interesting part.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("`{self}` did not finish within {limit:?}"));
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
