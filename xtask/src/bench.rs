//! `cargo xtask bench`: instruction counts of `clear_cache` and its peers on
//! AArch64 under qemu, written to `BENCHMARKS.md` and `bench/instructions.svg`.
//!
//! Wall-clock time under emulation means nothing, so this counts. The guest
//! program (`crates/icache-bench`) calls each implementation once per case
//! between two marker functions. qemu-aarch64 runs it with `-singlestep -d
//! in_asm,exec,nochain,strace`: one instruction per translation block and no
//! chaining, so every `Trace` line of the log is one executed instruction,
//! the `in_asm` lines give each PC's instruction word, and the `strace`
//! lines show the system calls in order. The log is streamed through a pipe
//! and parsed here; nothing is written to disk.
//!
//! The counts are cross-checked against icache-check's own summary line
//! (its `maintenance ops` are the executed `dc` and `ic` instructions).
//!
//! Where things live (to change a benchmark):
//!
//! - this file: what is run (sizes, sites, readers, the implementations and
//!   their column titles), the calibration, and the checks of a run;
//! - `bench/run.rs`: starting the guest under qemu (its command line comes
//!   from `.cargo/config.toml`), the checker, strace and callgrind;
//! - `bench/log.rs`: parsing qemu's log into brackets, with fixture tests of
//!   real log excerpts in `bench/fixtures/`;
//! - `bench/goals.rs`: each goal, its threshold and how it is evaluated;
//! - `bench/markdown.rs`: the tables and BENCHMARKS.md; its prose is in
//!   `bench/text/*.md`, where every number is a `{placeholder}` filled in
//!   from a measurement or a constant;
//! - `bench/svg.rs`: the plot;
//! - the guest's cases: `crates/icache-bench/src/main.rs`.
//!
//! `--smoke` (CI): one CPU model, two sizes, a short patch and flush run; it
//! checks that the harness builds, runs and parses, prints the table, and
//! writes nothing into the repository.

mod goals;
mod log;
mod markdown;
mod run;
mod svg;

use self::goals::*;
use self::log::*;
use self::markdown::*;
use self::run::*;
use self::svg::*;
use crate::checker;
use crate::cmd::{Cmd, Result};
use crate::targets::{self, AARCH64_CPUS, DEFAULT_CPU};
use crate::Workspace;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

pub const GUEST: &str = "icache-bench";
pub const TARGET: &str = "aarch64-unknown-linux-gnu";
pub const SIZES: [usize; 5] = [4, 64, 4096, 65536, 1 << 20];
pub const SMOKE_SIZES: [usize; 2] = [4, 4096];
pub const PATCH_SITES: usize = 1000;
pub const RACE_THREADS: usize = 16;
/// The two starts of every single-call case: line-aligned, and one
/// instruction past it (the guest's `OFFSETS`).
pub const OFFSETS: [usize; 2] = [0, 4];
/// The size of the call whose instructions are listed.
pub const LISTED_SIZE: usize = 4;
/// Reader threads in the `publish` run (issue 10 asks for at least 3).
pub const PUBLISH_READERS: usize = 3;
/// `pipeline_flush_mt` calls in the steady-state run, one bracket each.
pub const FLUSH_CALLS: usize = 3;
/// The implementations in table order, with the column heading.
pub const IMPLS: [(&str, &str); 5] = [
    ("icache-coherence", "icache-coherence"),
    ("libgcc", "libgcc `__clear_cache`"),
    ("clear-cache", "clear-cache 0.1.3"),
    (
        "wasmtime-newest",
        "wasmtime-internal-jit-icache-coherence 50.0.1",
    ),
    ("wasmtime-21", "wasmtime-jit-icache-coherence 21.0.1"),
];

/// `cargo xtask bench [--smoke]`: see the module docs.
pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let smoke = match args {
        [] => false,
        [a] if a == "--smoke" => true,
        _ => return Err("usage: cargo xtask bench [--smoke]".to_string()),
    };
    let started = Instant::now();
    let guest = build_guest(ws)?;
    let (cpus, sizes, sites): (&[&str], &[usize], usize) = if smoke {
        (&[DEFAULT_CPU], &SMOKE_SIZES, 10)
    } else {
        (AARCH64_CPUS, &SIZES, PATCH_SITES)
    };
    let mut report = Report::default();
    for &cpu in cpus {
        eprintln!("bench: {cpu}: single calls");
        let run = trace(ws, &guest, cpu, &["single"], sizes)?;
        let singles = single_rows(&run, sizes)?;
        eprintln!("bench: {cpu}: patching {sites} sites");
        let patch = trace(ws, &guest, cpu, &["patch"], &[sites])?;
        eprintln!("bench: {cpu}: pipeline_flush_mt steady state");
        let flush = trace(ws, &guest, cpu, &["flush"], &[FLUSH_CALLS])?;
        eprintln!("bench: {cpu}: one publication to {PUBLISH_READERS} readers");
        let publish = publish_rows(&trace(ws, &guest, cpu, &["publish"], &[PUBLISH_READERS])?)?;
        let check = if smoke {
            None
        } else {
            Some(cross_check(ws, &guest, cpu, sizes, &run))
        };
        let listing = run
            .cases
            .iter()
            .find(|c| c.name == IMPLS[0].0 && c.size == LISTED_SIZE && c.offset == OFFSETS[0])
            .map(|c| c.listing.clone())
            .unwrap_or_default();
        report.cpus.push(CpuReport {
            cpu: cpu.to_string(),
            lines: run.lines,
            singles,
            listing,
            patch: patch.cases,
            flush: flush.cases,
            publish,
            check,
        });
    }
    validate(&report, sites)?;
    if smoke {
        print!("{}", tables(&report));
        eprintln!(
            "bench --smoke: harness ran and parsed in {:.0} s; nothing written",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    eprintln!("bench: first-call race of {RACE_THREADS} threads (strace)");
    report.race = Some(race(ws, &guest, RACE_THREADS));
    eprintln!("bench: host x86-64");
    report.host = Some(host(ws));
    report.qemu = qemu_version();
    report.rustc = Cmd::new("rustc")
        .arg("--version")
        .stdout()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    report.commit = commit(ws);
    report.runner = targets::runner(ws, TARGET)?;
    report.seconds = started.elapsed().as_secs();
    let md = markdown(&report);
    std::fs::write(ws.root.join("BENCHMARKS.md"), md)
        .map_err(|e| format!("writing BENCHMARKS.md: {e}"))?;
    std::fs::create_dir_all(ws.root.join("bench")).map_err(|e| format!("bench/: {e}"))?;
    std::fs::write(ws.root.join("bench/instructions.svg"), svg(&report))
        .map_err(|e| format!("writing bench/instructions.svg: {e}"))?;
    print!("{}", tables(&report));
    eprintln!(
        "bench: wrote BENCHMARKS.md and bench/instructions.svg in {} s",
        report.seconds
    );
    Ok(())
}

/// One size and alignment: each implementation's counts, calibrated.
#[derive(Debug, Clone)]
pub struct Row {
    pub size: usize,
    pub offset: usize,
    pub minimum: Counts,
    pub impls: Vec<(String, Counts)>,
}

/// Lines of `line` bytes that overlap `[start, start + len)`.
pub fn lines_overlapping(start: usize, len: usize, line: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    ((start + len - 1) / line - start / line + 1) as u64
}

/// The architectural minimum: one `dc` per data line, one `ic` per
/// instruction line, two `dsb`, one `isb`, and nothing else.
pub fn minimum(offset: usize, size: usize, (dline, iline): (usize, usize)) -> Counts {
    let dc = lines_overlapping(offset, size, dline);
    let ic = lines_overlapping(offset, size, iline);
    Counts {
        insns: dc + ic + 3,
        dc,
        ic,
        dsb: 2,
        isb: 1,
        ..Counts::default()
    }
}

/// Subtracts the harness's own instructions, measured by the `empty` case
/// (whose callee executes exactly one instruction, its `ret`), so that each
/// count is what runs inside the call.
pub fn single_rows(run: &Run, sizes: &[usize]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &size in sizes {
        for offset in OFFSETS {
            let of = |name: &str| {
                run.cases
                    .iter()
                    .find(|c| c.name == name && c.size == size && c.offset == offset)
                    .map(|c| c.counts)
                    .ok_or_else(|| format!("no case {name} {size} {offset}"))
            };
            let empty = of("empty")?;
            if empty.dc + empty.ic + empty.dsb + empty.isb + empty.svc != 0 {
                return Err(format!(
                    "the harness itself executed maintenance: {empty:?}"
                ));
            }
            let harness = empty.insns - 1;
            let mut impls = Vec::new();
            for (name, _) in IMPLS {
                let mut c = of(name)?;
                c.insns -= harness;
                impls.push((name.to_string(), c));
            }
            rows.push(Row {
                size,
                offset,
                minimum: minimum(offset, size, run.lines),
                impls,
            });
        }
    }
    Ok(rows)
}

/// One publication of new code to reader threads (issue 10 item 6),
/// calibrated: the writer's side through `pipeline_flush_mt` and through
/// `CodeEpoch`, and one reader's check of the epoch on both paths.
#[derive(Debug, Clone, Default)]
pub struct Publish {
    pub readers: usize,
    /// `clear_cache`, `pipeline_flush_mt` and the entry-point store.
    pub flush: Counts,
    /// `clear_cache`, `CodeEpoch::advance` and the entry-point store.
    pub epoch: Counts,
    /// A reader's `CodeEpoch::sync` when nothing was published.
    pub reader_unchanged: Counts,
    /// A reader's `CodeEpoch::sync` after a publication (it runs the
    /// context synchronization).
    pub reader_changed: Counts,
}

/// The `publish` run's brackets, calibrated by its `empty` bracket. The
/// writers are called functions, so their `ret` counts (as in
/// [`single_rows`]); the reader's check stands for code inlined into a
/// reader's loop, so the whole calibration bracket, `ret` included, is
/// subtracted (see `reader_check` in crates/icache-bench).
pub fn publish_rows(run: &Run) -> Result<Publish> {
    let of = |name: &str| {
        run.cases
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.size, c.counts))
            .ok_or_else(|| format!("no case {name} in the publish run"))
    };
    let (readers, empty) = of("empty")?;
    let minus = |mut c: Counts, n: u64| -> Result<Counts> {
        c.insns = c
            .insns
            .checked_sub(n)
            .ok_or("a publish bracket ran fewer instructions than the calibration")?;
        Ok(c)
    };
    Ok(Publish {
        readers,
        flush: minus(of("publish-flush")?.1, empty.insns - 1)?,
        epoch: minus(of("publish-epoch")?.1, empty.insns - 1)?,
        reader_unchanged: minus(of("reader-unchanged")?.1, empty.insns)?,
        reader_changed: minus(of("reader-changed")?.1, empty.insns)?,
    })
}

/// The cross-check: icache-check's count of executed `dc` and `ic` against
/// this parser's count over the same program.
#[derive(Debug, Clone)]
pub struct CrossCheck {
    pub ours: u64,
    pub checker: std::result::Result<u64, String>,
}

#[derive(Debug, Clone)]
pub struct CpuReport {
    pub cpu: String,
    pub lines: (usize, usize),
    pub singles: Vec<Row>,
    /// What one aligned 4-byte `clear_cache` call executed, instruction by
    /// instruction.
    pub listing: Vec<String>,
    pub patch: Vec<Case>,
    pub flush: Vec<Case>,
    pub publish: Publish,
    pub check: Option<CrossCheck>,
}

/// Host membarrier calls seen by `strace -f` around qemu during the race.
#[derive(Debug, Clone)]
pub struct Race {
    pub threads: usize,
    pub result: std::result::Result<(u64, u64, u64), String>,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub result: std::result::Result<HostCounts, String>,
}

/// Instructions executed inside each host function, `ret` included.
#[derive(Debug, Clone)]
pub struct HostCounts {
    pub arch: String,
    pub ours: u64,
    pub empty: u64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub cpus: Vec<CpuReport>,
    pub race: Option<Race>,
    pub host: Option<Host>,
    pub qemu: String,
    pub rustc: String,
    pub commit: String,
    pub seconds: u64,
    /// qemu as `.cargo/config.toml` runs the guest target.
    pub runner: Vec<String>,
}

/// Fails when the run did not produce what the tables need: every case
/// present, the harness free of maintenance, the patch and flush brackets
/// present. Goals are reported, never enforced.
pub fn validate(report: &Report, sites: usize) -> Result {
    for c in &report.cpus {
        if c.lines.0 == 0 || c.lines.1 == 0 {
            return Err(format!("{}: no line sizes from the guest", c.cpu));
        }
        if c.patch.len() != 2 || c.patch.iter().any(|p| p.size != sites) {
            return Err(format!("{}: patch brackets missing", c.cpu));
        }
        if c.flush.is_empty() {
            return Err(format!("{}: flush brackets missing", c.cpu));
        }
        if c.singles.is_empty() {
            return Err(format!("{}: no single-call rows", c.cpu));
        }
        // Two independent counts of the same call: the calibrated bracket
        // and the instructions whose block qemu attributes to the wrapper.
        let counted = c
            .singles
            .iter()
            .find(|r| r.size == 4 && r.offset == 0)
            .map(|r| r.impls[0].1.insns);
        if counted != Some(c.listing.len() as u64) {
            return Err(format!(
                "{}: the 4-byte call counted {counted:?} instructions but its listing has {}",
                c.cpu,
                c.listing.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_overlapping_counts_partial_lines() {
        assert_eq!(lines_overlapping(0, 4, 64), 1);
        assert_eq!(lines_overlapping(4, 64, 64), 2);
        assert_eq!(lines_overlapping(0, 1 << 20, 64), 16384);
        assert_eq!(minimum(0, 1 << 20, (64, 64)).insns, 32_771);
    }

    #[test]
    fn publication_brackets_are_calibrated_writer_with_ret_reader_without() {
        let case = |name: &str, insns| Case {
            name: name.to_string(),
            size: 3,
            counts: Counts {
                insns,
                ..Counts::default()
            },
            ..Case::default()
        };
        let run = Run {
            cases: vec![
                case("empty", 10),
                case("publish-flush", 80),
                case("publish-epoch", 70),
                case("reader-unchanged", 13),
                case("reader-changed", 14),
            ],
            ..Run::default()
        };
        let p = publish_rows(&run).unwrap();
        assert_eq!(p.readers, 3);
        assert_eq!((p.flush.insns, p.epoch.insns), (71, 61));
        assert_eq!((p.reader_unchanged.insns, p.reader_changed.insns), (3, 4));
        let missing = Run {
            cases: run.cases[..4].to_vec(),
            ..Run::default()
        };
        assert!(publish_rows(&missing).is_err());
    }
}
