//! Project automation: `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`).
//!
//! - `cargo xtask setup` installs the cross toolchains, qemu-user, mingw-w64,
//!   wine, the Rust targets and nightly components, builds QEMU 10.0.2 with
//!   plugins into `target/qemu-10.0.2/bin` (for the checker; `src/setup/qemu.rs`),
//!   and prepares the wine prefix in `target/wine-prefix`. After it, `cargo test --target <triple>`
//!   works by itself for every target with a runner in `.cargo/config.toml`.
//! - `cargo xtask checker-speed` and `cargo xtask spurious` measure the
//!   checker (`src/speed.rs`, `src/spurious.rs`); not part of CI.
//! - `cargo xtask ci` runs setup and the whole matrix (`src/ci/matrix.rs`),
//!   then prints a summary table (also saved to `target/ci-summary.txt`).
//!   During development, `--only <substring>` (repeatable) runs the steps
//!   whose "step target kind" label contains it, e.g. `--only a64fx`,
//!   `--only wine`, `--only icache-check`; `--no-setup` skips setup.
//!
//! Where things live: platform lists in `src/targets.rs`, installation in
//! `src/setup.rs` (wine in `src/setup/wine.rs`, QEMU 10 in `src/setup/qemu.rs`), the matrix in
//! `src/ci/matrix.rs`, the runner and table in `src/ci.rs`, the benchmark in
//! `src/bench.rs` and `src/bench/` (see its module docs), every fact about
//! the checker in `src/checker.rs`. Every process is started by the one
//! runner in `src/cmd.rs`, whose timeouts kill the whole process tree.
//!
//! Each command is a module with a `main(&Workspace, &[String]) -> Result`;
//! adding one is a new module plus one line in [`COMMANDS`].

mod bench;
mod checker;
mod ci;
mod cmd;
mod mutants;
mod reliability;
mod setup;
mod speed;
mod spurious;
mod targets;

use cmd::Result;
use std::path::PathBuf;
use std::process::ExitCode;

type Command = fn(&Workspace, &[String]) -> Result;

/// The library's package: what CI tests on every target, mutants copy and
/// reliability runs.
pub const LIB: &str = "icache-coherence";

/// Name, entry point and one-line help of every subcommand.
const COMMANDS: &[(&str, Command, &str)] = &[
    (
        "setup",
        setup::main,
        "install qemu, cross gcc, mingw, wine, Rust targets and components; build QEMU 10.0.2 with plugins; prepare the wine prefix",
    ),
    (
        "ci",
        ci::main,
        "run setup, then the whole CI matrix and print a summary table [--only <substring>]... [--no-setup]",
    ),
    (
        "soak",
        reliability::soak_main,
        "long runs: 1,000,000 republishes under icache-check per aarch64 CPU and QEMU, 5,000 first-call races under qemu [--qemu 7.2|10|both]",
    ),
    (
        "reliability",
        reliability::main,
        "one reliability run: sandbox <target> | race <target> <processes> | long-run <cpu> <publishes> [--qemu 7.2|10]",
    ),
    (
        "bench",
        bench::main,
        "count instructions of clear_cache and its peers under qemu; regenerate BENCHMARKS.md [--smoke]",
    ),
    (
        "checker-speed",
        speed::main,
        "the checker's user CPU against plain qemu on a hot JIT loop, alone and beside a spinning thread [--iters N] [--cpu MODEL]",
    ),
    (
        "spurious",
        spurious::main,
        "run the whole aarch64 suite under icache-check N times, fail on any report [--runs N (200)] [--cpu MODEL] [--jobs J] [--qemu 7.2|10]",
    ),
    (
        "mutants",
        mutants::main,
        "seed one fault per copy of the library, run its aarch64, riscv64, armv7 or ppc64le tests under icache-check on each QEMU [--cpu AARCH64_MODEL] [--only <substring>] [--qemu 7.2|10|both]",
    ),
];

/// Where the project lives, as seen by every command.
pub struct Workspace {
    /// The workspace root (the folder with the root Cargo.toml).
    pub root: PathBuf,
    /// Cargo's build folder for the stable toolchain.
    pub target_dir: PathBuf,
}

impl Workspace {
    fn locate() -> Self {
        // `cargo run` sets CARGO_MANIFEST_DIR to xtask's folder at run time;
        // the compile-time value is the fallback for running the binary directly.
        let xtask_dir = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        let root = xtask_dir.parent().map_or(xtask_dir.clone(), PathBuf::from);
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => root.join(dir),
            _ => root.join("target"),
        };
        Workspace { root, target_dir }
    }

    /// A separate build folder for the nightly toolchain, so stable and
    /// nightly builds don't invalidate each other's caches.
    pub fn nightly_target_dir(&self) -> PathBuf {
        self.target_dir.join("nightly")
    }
}

fn usage() -> String {
    let mut s = String::from("usage: cargo xtask <command> [args]\n\ncommands:\n");
    for (name, _, help) in COMMANDS {
        s.push_str(&format!("  {name:<13} {help}\n"));
    }
    s
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprint!("{}", usage());
        return ExitCode::FAILURE;
    };
    if matches!(name.as_str(), "help" | "-h" | "--help") {
        print!("{}", usage());
        return ExitCode::SUCCESS;
    }
    let Some((_, command, _)) = COMMANDS.iter().find(|(n, _, _)| n == name) else {
        eprint!("unknown command `{name}`\n\n{}", usage());
        return ExitCode::FAILURE;
    };
    match command(&Workspace::locate(), &args[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
