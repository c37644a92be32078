//! The one process runner of xtask: every program xtask starts is a [`Cmd`],
//! started here, in a process group of its own.
//!
//! Why a group: a timeout that kills only the program it started (`cargo`)
//! leaves that program's children (the test binary, the `qemu` running it)
//! running, holding the output pipes open, and, once their parent is gone,
//! owned by init where nobody finds them. Each child is therefore made the
//! leader of a new process group (`setpgid(0, 0)`, POSIX), and a timeout
//! kills the whole group with `kill(-pgid, SIGKILL)` (kill(2): a negative pid
//! signals every process of the group), plus any descendant that moved to a
//! group of its own. Because the children are no longer in the terminal's
//! foreground group, Ctrl-C would reach only xtask: xtask therefore forwards
//! SIGINT, SIGTERM and SIGHUP to every group it started before it dies.
//! Children get no stdin (`/dev/null`): a background group that reads the
//! terminal is stopped by SIGTTIN, which would look like a hang.

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;
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

/// What a program printed, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    /// `None` when the time limit killed it.
    pub status: Option<ExitStatus>,
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

    /// The program and its arguments, to be run by another program (strace).
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.clone())
            .chain(self.args.iter().cloned())
            .collect()
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
        c.stdin(Stdio::null()).process_group(0);
        c
    }

    /// Starts the program in a process group of its own, with the given
    /// stdout and stderr.
    pub fn spawn(&self, stdout: Stdio, stderr: Stdio) -> Result<Running> {
        install_signal_forwarding();
        let child = self
            .command()
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start `{self}`: {e}"))?;
        let pgid = child.id() as i32;
        let slot = register(pgid);
        Ok(Running {
            child,
            pgid,
            slot,
            shown: self.to_string(),
            done: false,
            killed: false,
        })
    }

    /// Runs with inherited stdout and stderr; Ok if it exited with status 0.
    pub fn run(&self) -> Result {
        let mut running = self.spawn(Stdio::inherit(), Stdio::inherit())?;
        let status = running.wait(None)?;
        check_status(self, status)
    }

    /// Like [`Cmd::run`], but kills the program and everything it started
    /// when it has not finished within `limit`.
    pub fn run_with_timeout(&self, limit: Duration) -> Result {
        let mut running = self.spawn(Stdio::inherit(), Stdio::inherit())?;
        let status = running.wait(Some(limit))?;
        check_status(self, status)
    }

    /// Runs with captured stdout and stderr, whatever the exit status. With a
    /// `limit`, the whole process tree is killed when it is reached
    /// (`status` is then `None`); the output read until then is returned.
    pub fn output(&self, limit: Option<Duration>) -> Result<Output> {
        let mut running = self.spawn(Stdio::piped(), Stdio::piped())?;
        let out = read_in_background(running.child.stdout.take());
        let err = read_in_background(running.child.stderr.take());
        let status = match running.wait(limit) {
            Ok(status) => Some(status),
            Err(_) if running.killed => None,
            Err(e) => return Err(e),
        };
        Ok(Output {
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
            status,
        })
    }

    /// Runs with captured output and returns stdout, whatever the exit status
    /// (some queries, like `dpkg-query` for unknown packages, exit non-zero
    /// while still printing what we need).
    pub fn stdout_lossy(&self) -> Result<String> {
        Ok(self.output(None)?.stdout)
    }

    /// Runs with captured output; Ok(stdout) only on exit status 0.
    pub fn stdout(&self) -> Result<String> {
        let out = self.output(None)?;
        match out.status {
            Some(s) if s.success() => Ok(out.stdout),
            status => Err(format!(
                "`{self}` failed ({}): {}",
                status.map_or("killed".to_string(), |s| s.to_string()),
                out.stderr.trim()
            )),
        }
    }
}

/// A started program (the leader of its own process group). Dropping it
/// before it was waited for kills the group.
pub struct Running {
    child: Child,
    pgid: i32,
    slot: Option<usize>,
    shown: String,
    done: bool,
    /// Whether [`Running::kill`] ended it (a time limit, an error, a drop).
    killed: bool,
}

impl Running {
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the program to exit. With a `limit`, kills its process tree
    /// when the limit is reached and returns an error saying so.
    pub fn wait(&mut self, limit: Option<Duration>) -> Result<ExitStatus> {
        let start = Instant::now();
        let status = loop {
            let Some(limit) = limit else {
                break self
                    .child
                    .wait()
                    .map_err(|e| format!("waiting for `{}`: {e}", self.shown))?;
            };
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if start.elapsed() >= limit => {
                    self.kill();
                    return Err(format!(
                        "`{}` did not finish within {} s and was killed",
                        self.shown,
                        limit.as_secs()
                    ));
                }
                Ok(None) => thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("waiting for `{}`: {e}", self.shown)),
            }
        };
        self.finish();
        Ok(status)
    }

    /// Kills the program, its process group and any descendant that left
    /// the group, then reaps the program.
    pub fn kill(&mut self) {
        if self.done {
            return;
        }
        kill_tree(self.child.id(), self.pgid);
        let _ = self.child.wait();
        self.finish();
        self.killed = true;
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(slot) = self.slot.take() {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Process groups started and not yet reaped, for the signal handler. A
/// fixed table of atomics, because a signal handler may not lock or
/// allocate (signal-safety(7)); xtask never runs more than a few at once.
static GROUPS: [AtomicI32; 32] = [const { AtomicI32::new(0) }; 32];

fn register(pgid: i32) -> Option<usize> {
    (0..GROUPS.len()).find(|&i| {
        GROUPS[i]
            .compare_exchange(0, pgid, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })
}

/// On SIGINT, SIGTERM or SIGHUP: kill every registered group, then die of
/// the same signal. `kill`, `signal` and `raise` are async-signal-safe.
extern "C" fn forward(signal: libc::c_int) {
    for g in &GROUPS {
        let pgid = g.load(Ordering::SeqCst);
        if pgid > 0 {
            // SAFETY: kill(2) with a negative pid signals a process group.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
    // SAFETY: restores the default action and re-raises, so xtask's own
    // exit status still says which signal ended it.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

fn install_signal_forwarding() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `forward` only makes async-signal-safe calls.
            unsafe { libc::signal(signal, forward as *const () as libc::sighandler_t) };
        }
    });
}

/// Kills the group `pgid` and every process below `root`. The descendants
/// are collected first: once `root` is gone its children belong to init
/// and can no longer be found.
fn kill_tree(root: u32, pgid: i32) {
    let below = descendants(root);
    // SAFETY: kill(2) on a process group we created, then on single pids.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
        for pid in below {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
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

    /// Whether `pid` still runs (a zombie waiting for init counts as gone),
    /// polled for up to a second so that the kernel can finish the kill.
    fn still_running(pid: &str) -> bool {
        let stat = format!("/proc/{}/stat", pid.trim());
        (0..50).all(|_| {
            let running = fs::read_to_string(&stat).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            });
            if running {
                thread::sleep(Duration::from_millis(20));
            }
            running
        })
    }

    /// The kill tests run one at a time: on a loaded machine a parallel
    /// test's children only blur what each one measures.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// Starts `sh -c script` (which writes a grandchild's pid into the file
    /// named where the script says `{}`), waits until the pid is written,
    /// then lets `wait` hit its limit at once. Returns the grandchild's pid.
    fn kill_at_limit(name: &str, script: &str) -> String {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let pids = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let _ = fs::remove_file(&pids);
        let script = script.replace("{}", &pids.display().to_string());
        let mut running = Cmd::new("sh")
            .args(["-c", &script])
            .spawn(Stdio::null(), Stdio::null())
            .unwrap();
        let start = Instant::now();
        let pid = loop {
            match fs::read_to_string(&pids) {
                Ok(p) if p.ends_with('\n') => break p.trim().to_string(),
                _ if start.elapsed() > Duration::from_secs(60) => panic!("no pid from sh"),
                _ => thread::sleep(Duration::from_millis(20)),
            }
        };
        let _ = fs::remove_file(&pids);
        let r = running.wait(Some(Duration::ZERO));
        assert!(r.unwrap_err().contains("did not finish within"));
        pid
    }

    #[test]
    fn a_command_over_its_time_limit_is_killed_with_its_grandchildren() {
        // The shell's child `sleep` is the grandchild a kill of the shell
        // alone would leave running (as killing `cargo` left `qemu`).
        let sleeper = kill_at_limit("kill-tree", "sleep 1000 & echo $! > {}; sleep 1000");
        assert!(!still_running(&sleeper), "the shell's child survived");
    }

    #[test]
    fn a_descendant_that_left_the_process_group_is_killed_too() {
        // setsid(1) puts the sleeper in a session and group of its own, out
        // of reach of the group kill; it is found through /proc instead.
        let sleeper = kill_at_limit(
            "kill-setsid",
            "setsid sleep 1000 & echo $! > {}; sleep 1000",
        );
        assert!(!still_running(&sleeper), "the setsid child survived");
    }

    #[test]
    fn captured_output_returns_at_the_limit_although_a_grandchild_holds_the_pipe() {
        // Before the one runner, `cargo xtask mutants` read the pipes of a
        // killed `cargo` until EOF, which never came while `qemu` lived.
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let start = Instant::now();
        let out = Cmd::new("sh")
            .args(["-c", "echo started; sleep 1000 & sleep 1000"])
            .output(Some(Duration::from_secs(2)))
            .unwrap();
        assert!(start.elapsed() < Duration::from_secs(30));
        assert_eq!(out.status, None);
        assert!("started\n".starts_with(&out.stdout), "{:?}", out.stdout);
    }

    #[test]
    fn captured_output_keeps_both_streams_and_the_status() {
        let out = Cmd::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .output(None)
            .unwrap();
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            ("out\n", "err\n")
        );
        assert_eq!(out.status.and_then(|s| s.code()), Some(3));
        assert!(Cmd::new("sh").args(["-c", "exit 3"]).stdout().is_err());
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
