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
//! `--smoke` (CI): one CPU model, two sizes, a short patch and flush run; it
//! checks that the harness builds, runs and parses, prints the table, and
//! writes nothing into the repository.

use crate::cmd::{Cmd, Result};
use crate::Workspace;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const GUEST: &str = "icache-bench";
const TARGET: &str = "aarch64-unknown-linux-gnu";
const SYSROOT: &str = "/usr/aarch64-linux-gnu";
const CPUS: [&str; 2] = ["cortex-a72", "a64fx"];
const SIZES: [usize; 5] = [4, 64, 4096, 65536, 1 << 20];
const SMOKE_SIZES: [usize; 2] = [4, 4096];
const PATCH_SITES: usize = 1000;
const RACE_THREADS: usize = 16;
/// The implementations in table order, with the column heading.
const IMPLS: [(&str, &str); 5] = [
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
        (&CPUS[..1], &SMOKE_SIZES, 10)
    } else {
        (&CPUS, &SIZES, PATCH_SITES)
    };
    let mut report = Report::default();
    for &cpu in cpus {
        eprintln!("bench: {cpu}: single calls");
        let run = trace(&guest, cpu, &["single"], sizes)?;
        let singles = single_rows(&run, sizes)?;
        eprintln!("bench: {cpu}: patching {sites} sites");
        let patch = trace(&guest, cpu, &["patch"], &[sites])?;
        eprintln!("bench: {cpu}: pipeline_flush_mt steady state");
        let flush = trace(&guest, cpu, &["flush"], &[3])?;
        let check = if smoke {
            None
        } else {
            Some(cross_check(ws, &guest, cpu, sizes, &run))
        };
        let listing = run
            .cases
            .iter()
            .find(|c| c.name == IMPLS[0].0 && c.size == 4 && c.offset == 0)
            .map(|c| c.listing.clone())
            .unwrap_or_default();
        report.cpus.push(CpuReport {
            cpu: cpu.to_string(),
            lines: run.lines,
            singles,
            listing,
            patch: patch.cases,
            flush: flush.cases,
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
    report.race = Some(race(&guest, RACE_THREADS));
    eprintln!("bench: host x86-64");
    report.host = Some(host(ws));
    report.qemu = qemu_version();
    report.rustc = Cmd::new("rustc")
        .arg("--version")
        .stdout()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    report.commit = commit(ws);
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

// ---------------------------------------------------------------- running

fn build_guest(ws: &Workspace) -> Result<PathBuf> {
    // wasmtime-internal-jit-icache-coherence 50 declares rust-version 1.97
    // but compiles with 1.95; see crates/icache-bench/Cargo.toml.
    Cmd::new("cargo")
        .dir(&ws.root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            GUEST,
            "--target",
            TARGET,
        ])
        .args(["--features", "wasmtime-newest", "--ignore-rust-version"])
        .run()?;
    Ok(ws.target_dir.join(TARGET).join("release").join(GUEST))
}

/// What one run of the guest printed and executed.
#[derive(Debug, Default)]
struct Run {
    /// The `case` lines, each with its bracket's counts.
    cases: Vec<Case>,
    /// Data and instruction line sizes the library read.
    lines: (usize, usize),
    /// `dc` + `ic` executed anywhere in the run (for the cross-check).
    total_maintenance: u64,
}

/// One bracket: its name, size, offset and what ran inside it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Case {
    name: String,
    size: usize,
    offset: usize,
    counts: Counts,
    /// The instructions executed inside the library's wrapper
    /// ([`LISTED_SYMBOL`]), as `in_asm` disassembled them, in execution
    /// order; empty for other brackets and for brackets longer than
    /// [`LISTING_LIMIT`].
    listing: Vec<String>,
}

/// The guest function whose executed instructions are listed: the
/// `#[inline(never)]` wrapper that calls `icache_coherence::clear_cache`
/// (mangled name prefix; qemu names translation blocks by ELF symbol).
const LISTED_SYMBOL: &str = "_ZN12icache_bench4ours17h";
/// Longer listings (the big ranges) are dropped while parsing.
const LISTING_LIMIT: usize = 200;

/// What executed between two markers (the markers' own instructions
/// excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    insns: u64,
    dc: u64,
    ic: u64,
    dsb: u64,
    isb: u64,
    svc: u64,
    /// membarrier system calls: (register SYNC_CORE, SYNC_CORE, other).
    membarrier_register: u64,
    membarrier_sync: u64,
    membarrier_other: u64,
}

/// Instruction classes that matter here (Arm ARM C6.2: SYS, DSB, ISB, SVC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Dc,
    Ic,
    Dsb,
    Isb,
    Svc,
    Other,
}

fn classify(word: u32) -> Class {
    // SYS #op1, C7, Cm, #op2: cache maintenance. CRm 1 and 5 are the IC ops;
    // CRm 6 and 10..14 the DC invalidate/clean ops (AT is CRm 8 and 9).
    if word & 0xfff8_0000 == 0xd508_0000 && (word >> 12) & 0xf == 7 {
        return match (word >> 8) & 0xf {
            1 | 5 => Class::Ic,
            // Not 4: DC ZVA/GVA/GZVA zero memory (libc's memset uses them).
            6 | 10 | 11 | 12 | 13 | 14 => Class::Dc,
            _ => Class::Other,
        };
    }
    match word & 0xffff_f0ff {
        0xd503_309f => return Class::Dsb,
        0xd503_30df => return Class::Isb,
        _ => {}
    }
    if word & 0xffe0_001f == 0xd400_0001 {
        return Class::Svc;
    }
    Class::Other
}

/// Incremental parser of qemu's log (in_asm + exec + strace) and the
/// guest's stdout.
struct Parser {
    words: HashMap<u64, u32>,
    /// Marker addresses, learnt from the first `IN: bench_begin` and `IN:
    /// bench_end` blocks (qemu names each block's symbol, and translates a
    /// block before it first runs it). 0 until then.
    begin: u64,
    end: u64,
    /// The marker whose address the next in_asm line gives.
    naming: Option<Marker>,
    /// QEMU 7.2 prints in_asm words byte-swapped for `-cpu a64fx` (the code
    /// itself runs little-endian). Learnt from the begin marker's `nop`.
    swapped: Option<bool>,
    /// `dc` + `ic` executed before the byte order was known, counted both ways.
    early_maintenance: [u64; 2],
    inside: bool,
    current: Counts,
    brackets: Vec<Counts>,
    total_maintenance: u64,
    /// Whether the current translation block belongs to [`LISTED_SYMBOL`].
    listed_block: bool,
    /// Disassembly of each PC of [`LISTED_SYMBOL`].
    texts: HashMap<u64, String>,
    listing: Vec<String>,
    listings: Vec<Vec<String>>,
}

impl Parser {
    fn new() -> Self {
        Parser {
            words: HashMap::new(),
            begin: 0,
            end: 0,
            naming: None,
            swapped: None,
            early_maintenance: [0; 2],
            inside: false,
            current: Counts::default(),
            brackets: Vec::new(),
            total_maintenance: 0,
            listed_block: false,
            texts: HashMap::new(),
            listing: Vec::new(),
            listings: Vec::new(),
        }
    }

    fn line(&mut self, line: &str) -> Result {
        if let Some(rest) = line.strip_prefix("Trace ") {
            let pc = trace_pc(rest).ok_or_else(|| format!("unparsed trace line: {line}"))?;
            return self.exec(pc);
        }
        if let Some(symbol) = line.strip_prefix("IN: ") {
            self.listed_block = symbol.trim().starts_with(LISTED_SYMBOL);
            self.naming = match symbol.trim() {
                "bench_begin" if self.begin == 0 => Some(Marker::Begin),
                "bench_end" if self.end == 0 => Some(Marker::End),
                _ => None,
            };
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix("0x") {
            // in_asm: `0x550288cc40:  d503201f  nop`
            let mut parts = rest.split_whitespace();
            if let (Some(addr), Some(word)) = (parts.next(), parts.next()) {
                if let (Ok(pc), Ok(w)) = (
                    u64::from_str_radix(addr.trim_end_matches(':'), 16),
                    u32::from_str_radix(word, 16),
                ) {
                    self.words.insert(pc, w);
                    if self.listed_block {
                        let text = rest.split_once(word).map_or("", |(_, t)| t.trim());
                        self.texts.insert(pc, text.to_string());
                    }
                    match self.naming.take() {
                        Some(Marker::Begin) => {
                            self.begin = pc;
                            self.swapped = match w {
                                NOP => Some(false),
                                w if w == NOP.swap_bytes() => Some(true),
                                w => return Err(format!("begin marker is {w:08x}, not a nop")),
                            };
                            self.total_maintenance += self.early_maintenance[usize::from(w != NOP)];
                        }
                        Some(Marker::End) => self.end = pc,
                        None => {}
                    }
                }
            }
            return Ok(());
        }
        if self.inside {
            if let Some(cmd) = membarrier_cmd(line) {
                match cmd {
                    64 => self.current.membarrier_register += 1,
                    32 => self.current.membarrier_sync += 1,
                    _ => self.current.membarrier_other += 1,
                }
            }
        }
        Ok(())
    }

    fn exec(&mut self, pc: u64) -> Result {
        let word = *self
            .words
            .get(&pc)
            .ok_or_else(|| format!("executed {pc:#x} before its in_asm line"))?;
        let is_maintenance = |w| matches!(classify(w), Class::Dc | Class::Ic);
        let class = match self.swapped {
            Some(swapped) => classify(if swapped { word.swap_bytes() } else { word }),
            None => {
                self.early_maintenance[0] += u64::from(is_maintenance(word));
                self.early_maintenance[1] += u64::from(is_maintenance(word.swap_bytes()));
                Class::Other
            }
        };
        if self.swapped.is_some() && matches!(class, Class::Dc | Class::Ic) {
            self.total_maintenance += 1;
        }
        // No PC is 0, so an unknown marker (0) never matches.
        if pc == self.begin {
            if self.inside {
                return Err("nested begin marker".to_string());
            }
            self.inside = true;
            self.current = Counts::default();
            self.listing.clear();
        } else if pc == self.end {
            if !self.inside {
                return Err("end marker without begin".to_string());
            }
            self.inside = false;
            self.brackets.push(self.current);
            self.listings.push(std::mem::take(&mut self.listing));
        }
        // The markers' own bodies: begin is `nop; ret`, end `nop; nop; ret`.
        let in_marker = (self.begin..self.begin + 8).contains(&pc);
        if self.inside && !in_marker {
            if let Some(text) = self.texts.get(&pc) {
                if self.listing.len() < LISTING_LIMIT {
                    self.listing.push(text.clone());
                }
            }
            let c = &mut self.current;
            c.insns += 1;
            match class {
                Class::Dc => c.dc += 1,
                Class::Ic => c.ic += 1,
                Class::Dsb => c.dsb += 1,
                Class::Isb => c.isb += 1,
                Class::Svc => c.svc += 1,
                Class::Other => {}
            }
        }
        Ok(())
    }
}

/// `nop`, the first instruction of the begin marker.
const NOP: u32 = 0xd503_201f;

#[derive(Clone, Copy, Debug)]
enum Marker {
    Begin,
    End,
}

/// The guest PC of a `Trace` line:
/// `0: 0x7f6195800100 [0000000000001001/000000550288cc40/00000001/00000201] sym`.
fn trace_pc(rest: &str) -> Option<u64> {
    let inside = rest.split_once('[')?.1;
    let pc = inside.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// The command of a qemu `-strace` membarrier line: `1007 membarrier(32,0,0,...) = 0`.
fn membarrier_cmd(line: &str) -> Option<u64> {
    let args = line.split_once(" membarrier(")?.1;
    args.split(',').next()?.trim().parse().ok()
}

fn qemu_args(cpu: &str) -> Vec<String> {
    [
        "-L",
        SYSROOT,
        "-cpu",
        cpu,
        "-singlestep",
        "-d",
        "in_asm,exec,nochain,strace",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Runs the guest under qemu with the trace log on stderr, parsing it as it
/// streams.
fn trace(guest: &Path, cpu: &str, mode: &[&str], numbers: &[usize]) -> Result<Run> {
    let mut command = Command::new("qemu-aarch64");
    command
        .args(qemu_args(cpu))
        .arg(guest)
        .args(mode)
        .args(numbers.iter().map(|n| n.to_string()))
        .env_remove("QEMU_CPU")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start qemu-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut parser = Parser::new();
    let mut result = Ok(());
    for line in BufReader::with_capacity(1 << 20, stderr).lines() {
        let line = line.map_err(|e| format!("reading qemu log: {e}"))?;
        if let Err(e) = parser.line(&line) {
            result = Err(e);
            break;
        }
    }
    if result.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|e| format!("waiting for qemu: {e}"))?;
    let stdout = out_thread.join().map_err(|_| "stdout reader panicked")?;
    result?;
    if !status.success() {
        return Err(format!(
            "guest {mode:?} on {cpu} failed: {status}\n{stdout}"
        ));
    }
    assemble(parser, &stdout)
}

/// Matches the parsed brackets with the guest's `case` lines.
fn assemble(parser: Parser, stdout: &str) -> Result<Run> {
    let mut run = Run {
        total_maintenance: parser.total_maintenance,
        ..Run::default()
    };
    let mut names = Vec::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["marks", b, e] => {
                let parse = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16);
                if parse(b) != Ok(parser.begin) || parse(e) != Ok(parser.end) {
                    return Err(format!(
                        "guest markers {b} {e} differ from the log's {:#x} {:#x}",
                        parser.begin, parser.end
                    ));
                }
            }
            ["lines", d, i] => {
                run.lines = (
                    d.parse().map_err(|_| "bad line size")?,
                    i.parse().map_err(|_| "bad line size")?,
                )
            }
            ["case", name, size, offset] => names.push((
                name.to_string(),
                size.parse().map_err(|_| "bad size")?,
                offset.parse().map_err(|_| "bad offset")?,
            )),
            _ => {}
        }
    }
    if names.len() != parser.brackets.len() {
        return Err(format!(
            "{} case lines but {} brackets in the trace",
            names.len(),
            parser.brackets.len()
        ));
    }
    run.cases = names
        .into_iter()
        .zip(parser.brackets.into_iter().zip(parser.listings))
        .map(|((name, size, offset), (counts, listing))| Case {
            name,
            size,
            offset,
            listing: if counts.insns as usize > LISTING_LIMIT {
                Vec::new()
            } else {
                listing
            },
            counts,
        })
        .collect();
    Ok(run)
}

// ---------------------------------------------------------------- results

/// One size and alignment: each implementation's counts, calibrated.
#[derive(Debug, Clone)]
struct Row {
    size: usize,
    offset: usize,
    minimum: Counts,
    impls: Vec<(String, Counts)>,
}

/// Lines of `line` bytes that overlap `[start, start + len)`.
fn lines_overlapping(start: usize, len: usize, line: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    ((start + len - 1) / line - start / line + 1) as u64
}

/// The architectural minimum: one `dc` per data line, one `ic` per
/// instruction line, two `dsb`, one `isb`, and nothing else.
fn minimum(offset: usize, size: usize, (dline, iline): (usize, usize)) -> Counts {
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
fn single_rows(run: &Run, sizes: &[usize]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &size in sizes {
        for offset in [0, 4] {
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

/// The cross-check: icache-check's count of executed `dc` and `ic` against
/// this parser's count over the same program.
#[derive(Debug, Clone)]
struct CrossCheck {
    ours: u64,
    checker: std::result::Result<u64, String>,
}

fn cross_check(ws: &Workspace, guest: &Path, cpu: &str, sizes: &[usize], run: &Run) -> CrossCheck {
    let checker = (|| {
        Cmd::new("cargo")
            .dir(&ws.root)
            .args(["build", "--quiet", "--release", "-p", "icache-check"])
            .run()?;
        let bin = ws.target_dir.join("release").join("icache-check");
        let out = Command::new(&bin)
            .args(["--cpu", cpu, "--"])
            .arg(guest)
            .arg("single")
            .args(sizes.iter().map(|s| s.to_string()))
            .env("QEMU_LD_PREFIX", SYSROOT)
            .output()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        text.lines()
            .rev()
            .find_map(|l| {
                let rest = l.strip_prefix("icache-check: ")?;
                let field = rest.split(", ").find(|f| f.ends_with(" maintenance ops"))?;
                field.split(' ').next()?.parse::<u64>().ok()
            })
            .ok_or_else(|| format!("no summary line from icache-check ({})", out.status))
    })();
    CrossCheck {
        ours: run.total_maintenance,
        checker,
    }
}

#[derive(Debug, Clone)]
struct CpuReport {
    cpu: String,
    lines: (usize, usize),
    singles: Vec<Row>,
    /// What one aligned 4-byte `clear_cache` call executed, instruction by
    /// instruction.
    listing: Vec<String>,
    patch: Vec<Case>,
    flush: Vec<Case>,
    check: Option<CrossCheck>,
}

/// Host membarrier calls seen by `strace -f` around qemu during the race.
#[derive(Debug, Clone)]
struct Race {
    threads: usize,
    result: std::result::Result<(u64, u64, u64), String>,
}

#[derive(Debug, Clone)]
struct Host {
    result: std::result::Result<HostCounts, String>,
}

/// Instructions executed inside each host function, `ret` included.
#[derive(Debug, Clone)]
struct HostCounts {
    arch: String,
    ours: u64,
    empty: u64,
}

#[derive(Debug, Default)]
struct Report {
    cpus: Vec<CpuReport>,
    race: Option<Race>,
    host: Option<Host>,
    qemu: String,
    rustc: String,
    commit: String,
    seconds: u64,
}

/// Fails when the run did not produce what the tables need: every case
/// present, the harness free of maintenance, the patch and flush brackets
/// present. Goals are reported, never enforced.
fn validate(report: &Report, sites: usize) -> Result {
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

fn race(guest: &Path, threads: usize) -> Race {
    let result = (|| {
        let out = Command::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=membarrier",
                "-e",
                "raw=membarrier",
            ])
            .arg("qemu-aarch64")
            .args(["-L", SYSROOT, "-cpu", "cortex-a72"])
            .arg(guest)
            .args(["race", &threads.to_string()])
            .env_remove("QEMU_CPU")
            .output()
            .map_err(|e| format!("cannot start strace: {e}"))?;
        if !out.status.success() {
            return Err(format!("strace run failed: {}", out.status));
        }
        let log = String::from_utf8_lossy(&out.stderr);
        let count = |cmd: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("membarrier({cmd},")))
                .count() as u64
        };
        Ok((count("0"), count("0x40"), count("0x20")))
    })();
    Race { threads, result }
}

/// The host figure: instructions executed inside `ours_host` (one
/// `clear_cache` and one `pipeline_flush_mt`, errors returned) and inside
/// `empty_host` (same signature, returns `Ok(())`), counted by callgrind
/// with collection switched on only inside each function.
fn host(ws: &Workspace) -> Host {
    let result = (|| {
        Cmd::new("cargo")
            .dir(&ws.root)
            .args(["build", "--quiet", "--release", "-p", GUEST])
            .run()?;
        let bin = ws.target_dir.join("release").join(GUEST);
        let arch = Cmd::new("uname").arg("-m").stdout()?.trim().to_string();
        let mut counts = Vec::new();
        for function in ["ours_host", "empty_host"] {
            let out = ws.target_dir.join(format!("callgrind.{function}.out"));
            Cmd::new("valgrind")
                .args(["--quiet", "--tool=callgrind"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(format!("--toggle-collect={function}"))
                .arg(bin.display().to_string())
                .arg("host")
                .stdout()?;
            let text = std::fs::read_to_string(&out)
                .map_err(|e| format!("reading {}: {e}", out.display()))?;
            let total = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("totals:")
                        .or_else(|| l.strip_prefix("summary:"))
                })
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no totals in {}", out.display()))?;
            counts.push(total);
        }
        Ok(HostCounts {
            arch,
            ours: counts[0],
            empty: counts[1],
        })
    })();
    Host { result }
}

fn qemu_version() -> String {
    Cmd::new("qemu-aarch64")
        .arg("--version")
        .stdout()
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn commit(ws: &Workspace) -> String {
    let head = Cmd::new("git")
        .dir(&ws.root)
        .args(["rev-parse", "--short", "HEAD"])
        .stdout()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let dirty = Cmd::new("git")
        .dir(&ws.root)
        .args(["status", "--porcelain", "--", "crates/icache-coherence"])
        .stdout()
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{head} with uncommitted changes in crates/icache-coherence")
    } else {
        head
    }
}

// ---------------------------------------------------------------- output

fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1024 && s % 1024 == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `insns (dc/ic/dsb/isb)`.
fn cell(c: &Counts) -> String {
    format!(
        "{} ({}/{}/{}/{})",
        thousands(c.insns),
        c.dc,
        c.ic,
        c.dsb,
        c.isb
    )
}

fn single_table(c: &CpuReport) -> String {
    let mut s = String::new();
    s.push_str("| size | start | minimum |");
    for (_, title) in IMPLS {
        let _ = write!(s, " {title} |");
    }
    s.push_str("\n|---|---|---|");
    for _ in IMPLS {
        s.push_str("---|");
    }
    s.push('\n');
    for r in &c.singles {
        let start = if r.offset == 0 {
            "aligned".to_string()
        } else {
            format!("+{}", r.offset)
        };
        let _ = write!(
            s,
            "| {} | {} | {} |",
            size_name(r.size),
            start,
            cell(&r.minimum)
        );
        for (_, counts) in &r.impls {
            let _ = write!(s, " {} |", cell(counts));
        }
        s.push('\n');
    }
    s
}

fn ops(c: &Counts) -> (u64, u64, u64, u64) {
    (c.dc, c.ic, c.dsb, c.isb)
}

fn membarriers(c: &Counts) -> u64 {
    c.membarrier_register + c.membarrier_sync + c.membarrier_other
}

fn patch_table(c: &CpuReport) -> String {
    let mut s = String::from(
        "| method | instructions | dc | ic | dsb | isb | svc | membarrier (SYNC_CORE) |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for p in &c.patch {
        let what = if p.name == "separate" {
            format!("{} × (`clear_cache` + `pipeline_flush_mt`)", p.size)
        } else {
            format!("one `batch(Publish::AllThreads, ..)` of {} `add`s", p.size)
        };
        let k = &p.counts;
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} | {} | {} | {} ({}) |",
            thousands(k.insns),
            k.dc,
            k.ic,
            k.dsb,
            k.isb,
            k.svc,
            membarriers(k),
            k.membarrier_sync
        );
    }
    s
}

fn flush_line(c: &CpuReport) -> String {
    let mut per_call: Vec<String> = c
        .flush
        .iter()
        .map(|f| {
            format!(
                "{} instructions, {} svc, {} membarrier (cmd 32: {})",
                f.counts.insns,
                f.counts.svc,
                membarriers(&f.counts),
                f.counts.membarrier_sync
            )
        })
        .collect();
    per_call.dedup();
    per_call.join("; ")
}

/// Plain-text tables for the terminal (both modes).
fn tables(report: &Report) -> String {
    let mut s = String::new();
    for c in &report.cpus {
        let _ = writeln!(
            s,
            "\n## {} (D-line {} B, I-line {} B): instructions (dc/ic/dsb/isb)\n",
            c.cpu, c.lines.0, c.lines.1
        );
        s.push_str(&single_table(c));
        s.push('\n');
        s.push_str(&patch_table(c));
        let _ = writeln!(
            s,
            "\npipeline_flush_mt, steady state, per call: {}",
            flush_line(c)
        );
    }
    s
}

/// The instructions of one 4-byte call, and why the fixed-cost and
/// per-line goals are out of reach.
fn listing_section(report: &Report) -> String {
    let mut s = String::new();
    let Some(c) = report.cpus.first() else {
        return s;
    };
    let mnemonic = |t: &String| t.split_whitespace().next().unwrap_or("").to_string();
    let required = c
        .listing
        .iter()
        .filter(|t| matches!(mnemonic(t).as_str(), "dc" | "ic" | "dsb" | "isb" | "ret"))
        .count();
    let _ = writeln!(
        s,
        "\n## Inside one 4-byte call\n\n\
         Every instruction one aligned 4-byte `clear_cache` call executed under\n\
         `-cpu {}`, in order, as QEMU disassembled it (the blocks QEMU attributes to\n\
         the wrapper `ours`; `cargo xtask bench` fails if their number differs from\n\
         the calibrated count above). {} of the {} are the maintenance itself and\n\
         the `ret`.\n\n```text\n{}\n```\n",
        c.cpu,
        required,
        c.listing.len(),
        c.listing.join("\n")
    );
    s.push_str(
        "Where the rest goes, and why the goal of 16 is out of reach without giving\n\
         up something the library promises:\n\n\
         - **Range checks** (`cbz`, `adds`, `b.hs`, then `sub` for the last byte):\n  \
           a zero length must touch nothing and a wrapping range must be refused\n  \
           (the bad-input contract). The carry of the one `adds` is the wrap test.\n\
         - **CTR_EL0 and the running minimum** (`mrs`, the address of the static\n  \
           through the GOT, its load, `cmp`, `b.ne`): line sizes are read on every\n  \
           call and compared with the smallest seen so far, so that a big.LITTLE\n  \
           system with mismatched lines is never stepped with the big core's size.\n\
         - **IDC and DIC** (two `tbnz`): skipping a whole half of the maintenance\n  \
           where the core allows it saves far more on real hardware than they cost.\n\
         - **Per loop**: the line size decoded from its CTR_EL0 field, the mask, the\n  \
           first and last line, and per line an `add`, a `cmp` and a `b.ne`. The\n  \
           loops stay general (any line size, any length, up to the top of the\n  \
           address space for bare-metal EL1 code) and plain.\n\n\
         Everything that can call a function (a first call on a core, a wrapping\n\
         range, an error) is behind one branch to one out-of-line function, so the\n\
         call above has no stack frame. The parts listed above that do not depend\n\
         on the range come to 17 (3 range checks, 6 for CTR_EL0 and the minimum, of\n\
         which one loads the static's address from the GOT, 2 flag tests, 5\n\
         maintenance operations, the `ret`) before a single line address is\n\
         computed, and a line address needs the line size, decoded from CTR_EL0,\n\
         first. So 16 cannot be reached even by a special case for ranges inside\n\
         one line. Giving up the running minimum or the bad-input checks to get\n\
         there would trade the library's guarantees for a few adds next to a `dc`,\n\
         an `ic` and three barriers. The best peer (`clear-cache` 0.1.3) reads\n\
         CTR_EL0 on every call too but has no length or wrap check and no running\n\
         minimum.\n\n\
         Per line, 3 instructions (1.5x the minimum of one `dc` and one `ic`) is out\n\
         of reach for any loop with exactly two `dsb`s. Every `dc` must be complete\n\
         before the first `ic` starts, so an address computed for a clean can serve\n\
         the invalidation of the same line only if it stays in a register until\n\
         then: possible, fully unrolled, for the two dozen lines that fit in the\n\
         free registers, not for the 64 lines of 4 KiB at 64 B. `dc cvau` and\n\
         `ic ivau` take a bare register, with no offset or write-back form, and an\n\
         instruction that computes an address writes one register (the loads with\n\
         write-back that write two would read the code, and fault on execute-only\n\
         mappings). So each of the two operations per line needs its own address\n\
         computation: 4 instructions per line before any loop control (2.0x),\n\
         whatever the unrolling. An unrolled loop measured at 6 per line in an\n\
         earlier version\n\
         cost 21 more instructions on every call; the plain loop was kept.\n",
    );
    s
}

struct Goal {
    text: String,
    met: bool,
    measured: String,
    /// Where BENCHMARKS.md explains a goal that is not met.
    why: Option<&'static str>,
}

const WHY_LISTING: &str = "[why](#inside-one-4-byte-call)";
const WHY_HOST: &str = "[why](#host)";

fn goals(report: &Report) -> Vec<Goal> {
    let mut goals = Vec::new();
    let ours = |r: &Row| r.impls[0].1;
    let best_peer_4b = report
        .cpus
        .iter()
        .flat_map(|c| c.singles.iter().filter(|r| r.size == 4))
        .flat_map(|r| r.impls[1..4].iter().map(|(_, k)| k.insns))
        .min()
        .unwrap_or(0);
    for c in &report.cpus {
        let mismatched: Vec<String> = c
            .singles
            .iter()
            .filter(|r| ops(&ours(r)) != ops(&r.minimum))
            .map(|r| format!("{} +{}: {}", size_name(r.size), r.offset, cell(&ours(r))))
            .collect();
        goals.push(Goal {
            text: format!(
                "{}: `dc`, `ic`, `dsb` and `isb` exactly the architectural minimum at every size and alignment",
                c.cpu
            ),
            met: mismatched.is_empty(),
            measured: if mismatched.is_empty() {
                "equal in all rows".to_string()
            } else {
                format!("differs: {}", mismatched.join(", "))
            },
            why: None,
        });
        let four: Vec<u64> = c
            .singles
            .iter()
            .filter(|r| r.size == 4)
            .map(|r| ours(r).insns)
            .collect();
        let worst = four.iter().copied().max().unwrap_or(0);
        goals.push(Goal {
            text: format!(
                "{}: a 4-byte call costs at most 16 instructions (best peer: {best_peer_4b})",
                c.cpu
            ),
            met: worst <= 16,
            measured: format!("{worst} instructions"),
            why: Some(WHY_LISTING),
        });
        // A "line" is one data line and one instruction line (equal sizes
        // here): the minimum is 2 instructions per line, so 3 is 1.5x.
        let per_line: Vec<(usize, usize, f64, f64)> = c
            .singles
            .iter()
            .filter(|r| r.size >= 4096)
            .map(|r| {
                let lines = r.minimum.dc.max(r.minimum.ic).max(1);
                let insns = ours(r).insns as f64;
                (
                    r.size,
                    r.offset,
                    insns / lines as f64,
                    insns / r.minimum.insns as f64,
                )
            })
            .collect();
        let worst = per_line.iter().map(|p| p.2).fold(0.0, f64::max);
        goals.push(Goal {
            text: format!(
                "{}: from 4 KiB up, at most 3 instructions per line (dc and ic together; 1.5x the minimum)",
                c.cpu
            ),
            met: !per_line.is_empty() && worst <= 3.0,
            measured: per_line
                .iter()
                .map(|(s, o, v, x)| format!("{} +{o}: {v:.2} ({x:.2}x)", size_name(*s)))
                .collect::<Vec<_>>()
                .join(", "),
            why: Some(WHY_LISTING),
        });
        if let Some(b) = c.patch.iter().find(|p| p.name == "batch") {
            let k = b.counts;
            goals.push(Goal {
                text: format!(
                    "{}: batching {} sites: one `isb`, two `dsb`, at most one membarrier",
                    c.cpu, b.size
                ),
                met: k.isb == 1 && k.dsb == 2 && membarriers(&k) <= 1,
                measured: format!(
                    "{} isb, {} dsb, {} membarrier ({} dc, {} ic)",
                    k.isb,
                    k.dsb,
                    membarriers(&k),
                    k.dc,
                    k.ic
                ),
                why: None,
            });
        }
    }
    if let Some(Host { result }) = &report.host {
        let (met, measured) = match result {
            Ok(h) => (
                h.ours <= h.empty,
                format!(
                    "{} instructions against {} for an empty function (callgrind)",
                    h.ours, h.empty
                ),
            ),
            Err(e) => (false, format!("not measured: {e}")),
        };
        goals.push(Goal {
            text: "host x86-64: `clear_cache` + `pipeline_flush_mt` cost zero instructions beyond the call".to_string(),
            met,
            measured,
            why: Some(WHY_HOST),
        });
    }
    goals
}

fn markdown(report: &Report) -> String {
    let mut s = String::new();
    s.push_str(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` (source: `xtask/src/bench.rs`, guest program\n\
         `crates/icache-bench`); do not edit by hand. Nothing here is a timed test.\n\n",
    );
    let _ = writeln!(
        s,
        "- QEMU: `{}`, user mode, CPU models {}.\n- Compiler: `{}`, release profile, target `{TARGET}`.\n- Library: commit {}.\n- Run time of `cargo xtask bench`: {} s, including any builds it needed.\n",
        report.qemu,
        report
            .cpus
            .iter()
            .map(|c| format!("`{}` (D-line {} B, I-line {} B)", c.cpu, c.lines.0, c.lines.1))
            .collect::<Vec<_>>()
            .join(" and "),
        report.rustc,
        report.commit,
        report.seconds
    );
    s.push_str(
        "## Method\n\n\
         Wall-clock time under emulation means nothing, so the benchmark counts\n\
         executed guest instructions. The guest program calls each implementation\n\
         once per case through a function pointer, between two `#[inline(never)]`\n\
         marker functions, after one warm-up call outside the markers (so one-time\n\
         work such as reading `CTR_EL0` into a cache is not counted). It runs as\n\n\
         ```sh\n\
         qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu <model> -singlestep -d in_asm,exec,nochain,strace \\\n    \
         target/aarch64-unknown-linux-gnu/release/icache-bench single 4 64 4096 65536 1048576\n\
         ```\n\n\
         (`-singlestep` is QEMU 7.2's spelling of `-one-insn-per-tb`). With one\n\
         instruction per translation block and no chaining, each `Trace` line of the\n\
         log is one executed instruction; the `in_asm` lines give the instruction word\n\
         at each PC, which classifies it as `dc`, `ic`, `dsb`, `isb` or `svc`; the\n\
         `strace` lines give each system call with its arguments. xtask streams the\n\
         log through a pipe and counts per bracket. The harness's own instructions\n\
         (loading the arguments, the indirect call) are measured with a callee that\n\
         only returns and subtracted, so each count is exactly what runs inside the\n\
         call, including the callee's `ret` and the thin `#[inline(never)]` wrapper\n\
         that adapts each peer's signature (libgcc: computing `end`; the others:\n\
         discarding the result; for icache-coherence that is the check and drop\n\
         of the `io::Result`, which a caller using `?` pays as well). Starts: a page-aligned address (\"aligned\") and the\n\
         same plus 4 bytes (\"+4\"). Cells read `instructions (dc/ic/dsb/isb)`.\n\n\
         The **minimum** column is computed from the line sizes the library reads\n\
         (`cache_info()`): one `dc` per data line and one `ic` per instruction line\n\
         overlapping the range, two `dsb` and one `isb`, and no other instruction.\n\n\
         Peers: libgcc's `__clear_cache` from the cross toolchain (the gcc driver\n\
         resolves it from `libgcc_s.so.1`, so its counts include the 4-instruction\n\
         PLT stub); the `clear-cache` crate 0.1.3; upstream's newest,\n\
         `wasmtime-internal-jit-icache-coherence` 50.0.1, which declares\n\
         `rust-version = 1.97` but compiles with rustc 1.95, so it is built with\n\
         `--ignore-rust-version` (behind the `wasmtime-newest` feature of\n\
         `icache-bench`, so workspace builds never see it); and\n\
         `wasmtime-jit-icache-coherence` 21.0.1, the crate this library replaces,\n\
         which does no maintenance at all on AArch64 Linux: that column shows what\n\
         correctness costs.\n\n\
         Real cores spend far more time in a `dc` or `ic` (a cache-maintenance\n\
         broadcast to the point of unification) and in `dsb`/`isb` than in an\n\
         add, so for real-world speed the operation counts, the fixed cost per\n\
         call, skipping the maintenance where `CTR_EL0.IDC`/`DIC` allow, and\n\
         batching matter most; the per-line loop overhead matters least. Note that\n\
         QEMU's models report IDC = DIC = 0, so these runs always do both halves.\n\n",
    );
    s.push_str("## Goals\n\n| goal | status | measured |\n|---|---|---|\n");
    for g in goals(report) {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            g.text,
            match (g.met, g.why) {
                (true, _) => "met".to_string(),
                (false, Some(why)) => format!("**not met** ({why})"),
                (false, None) => "**not met**".to_string(),
            },
            g.measured
        );
    }
    s.push_str("\n![instructions per call against range size](bench/instructions.svg)\n");
    for c in &report.cpus {
        let _ = writeln!(
            s,
            "\n## Single `clear_cache` calls, `-cpu {}` (D-line {} B, I-line {} B)\n",
            c.cpu, c.lines.0, c.lines.1
        );
        s.push_str(&single_table(c));
    }
    s.push_str(&listing_section(report));
    s.push_str(
        "\n## Patching separate 8-byte sites\n\n\
         The sites are 256 bytes apart, so each one is its own line on both models.\n\
         One `pipeline_flush_mt` runs before the brackets, so the one-time\n\
         registration is not counted here (see the race below). Counts are for the\n\
         whole loop between the markers, the guest's loop and `Vec` handling\n\
         included; membarrier calls come from QEMU's `-strace` lines inside the\n\
         bracket.\n",
    );
    for c in &report.cpus {
        let _ = writeln!(s, "\n### `-cpu {}`\n", c.cpu);
        s.push_str(&patch_table(c));
    }
    s.push_str("\n## `pipeline_flush_mt`\n\nSteady state (after a first call), per call, between the markers:\n\n");
    for c in &report.cpus {
        let _ = writeln!(s, "- `-cpu {}`: {}", c.cpu, flush_line(c));
    }
    if let Some(race) = &report.race {
        let _ = write!(
            s,
            "\nFirst calls racing: {} threads wait on a `Barrier`, then each makes its\n\
             first `pipeline_flush_mt` call. Counted on the host with\n\
             `strace -f -e trace=membarrier -e raw=membarrier qemu-aarch64 ... race {}`\n\
             (qemu passes membarrier through to the host kernel): ",
            race.threads, race.threads
        );
        match &race.result {
            Ok((query, register, sync)) => {
                let _ = writeln!(
                    s,
                    "**{register} registration** (cmd 0x40), {query} QUERY (cmd 0), {sync} SYNC_CORE (cmd 0x20)."
                );
            }
            Err(e) => {
                let _ = writeln!(s, "not measured: {e}.");
            }
        }
    }
    if let Some(Host { result }) = &report.host {
        s.push_str("\n## Host\n\n");
        match result {
            Ok(h) => {
                let _ = writeln!(
                    s,
                    "On the host ({}), counted with `valgrind --tool=callgrind --toggle-collect=<function>`\n\
                     on an x86-64 release build of `icache-bench host`: `ours_host` (one `clear_cache`\n\
                     of 64 bytes and one `pipeline_flush_mt`, errors returned with `?`) executes\n\
                     **{} instructions**; `empty_host`, the same signature returning `Ok(())`,\n\
                     executes {}. The difference, {}, is what the two calls cost on this host.\n\n\
                     Nothing of it is cache maintenance: x86 needs none, and `pipeline_flush_mt`\n\
                     compiles to nothing. It is the refusal of a range that wraps past the end of\n\
                     the address space, which the library promises on every target (`InvalidInput`,\n\
                     not a silent `Ok`): one `add` whose carry is tested by one branch, plus the\n\
                     `mov` that keeps `ptr` intact. That promise and the goal of zero instructions\n\
                     cannot both hold; the library keeps the promise, because a JIT developed on\n\
                     x86 should see the same error it would get on AArch64.",
                    h.arch,
                    h.ours,
                    h.empty,
                    h.ours as i64 - h.empty as i64
                );
            }
            Err(e) => {
                let _ = writeln!(s, "Not measured: {e}.");
            }
        }
    }
    s.push_str("\n## Cross-check with icache-check\n\n");
    for c in &report.cpus {
        match &c.check {
            Some(CrossCheck {
                ours,
                checker: Ok(n),
            }) => {
                let _ = writeln!(
                    s,
                    "- `-cpu {}`: this parser counted {} `dc` + `ic` over the whole `single` run; \
                     `target/release/icache-check --cpu {} -- icache-bench single ...` reported {} maintenance ops: {}.",
                    c.cpu,
                    ours,
                    c.cpu,
                    n,
                    if ours == n { "they agree" } else { "**they differ**" }
                );
            }
            Some(CrossCheck {
                ours,
                checker: Err(e),
            }) => {
                let _ = writeln!(
                    s,
                    "- `-cpu {}`: this parser counted {ours} `dc` + `ic`; the checker did not run: {e}.",
                    c.cpu
                );
            }
            None => {}
        }
    }
    s
}

// ---------------------------------------------------------------- plot

/// A plotted line: title, colour, dashed, (size, instructions) points.
type Series = (String, &'static str, bool, Vec<(usize, u64)>);

const COLORS: [&str; 5] = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b"];

/// Log-log plot of instructions per call against range size (aligned
/// starts), one panel per CPU model, the minimum dashed.
fn svg(report: &Report) -> String {
    let (pw, ph, ml, mt, mb) = (420.0, 300.0, 60.0, 40.0, 50.0);
    let width = ml + (pw + ml) * report.cpus.len() as f64 + 320.0;
    let height = mt + ph + mb;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let (xmin, xmax) = (4f64.log10(), ((1u64 << 20) as f64).log10());
    let (ymin, ymax) = (0.0, 6.0); // 1 .. 1,000,000 instructions
    for (p, c) in report.cpus.iter().enumerate() {
        let x0 = ml + p as f64 * (pw + ml);
        let xs = |size: usize| x0 + ((size as f64).log10() - xmin) / (xmax - xmin) * pw;
        let ys = |n: u64| mt + ph - (((n.max(1)) as f64).log10() - ymin) / (ymax - ymin) * ph;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">-cpu {} (D {} B, I {} B lines)</text>",
            x0 + pw / 2.0,
            mt - 15.0,
            c.cpu,
            c.lines.0,
            c.lines.1
        );
        let _ = writeln!(
            s,
            "<rect x=\"{x0}\" y=\"{mt}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
        );
        for e in 0..=6 {
            let y = ys(10u64.pow(e));
            let _ = writeln!(
                s,
                "<line x1=\"{x0}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text>",
                x0 + pw,
                x0 - 4.0,
                y + 4.0
            );
        }
        for &size in &SIZES {
            let x = xs(size);
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{mt}\" x2=\"{x}\" y2=\"{}\" stroke=\"#eee\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                mt + ph,
                mt + ph + 14.0,
                size_name(size)
            );
        }
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">range size (aligned start)</text>",
            x0 + pw / 2.0,
            mt + ph + 34.0
        );
        let rows: Vec<&Row> = c.singles.iter().filter(|r| r.offset == 0).collect();
        let mut series: Vec<Series> = vec![(
            "architectural minimum".to_string(),
            "#000",
            true,
            rows.iter().map(|r| (r.size, r.minimum.insns)).collect(),
        )];
        for (i, (name, title)) in IMPLS.iter().enumerate() {
            let pts = rows
                .iter()
                .filter_map(|r| {
                    r.impls
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, k)| (r.size, k.insns))
                })
                .collect();
            series.push((title.replace('`', ""), COLORS[i], false, pts));
        }
        for (_, color, dashed, pts) in &series {
            let d: Vec<String> = pts
                .iter()
                .map(|&(size, n)| format!("{:.1},{:.1}", xs(size), ys(n)))
                .collect();
            let _ =
                writeln!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\"{}/>",
                d.join(" "),
                if *dashed { 1.5 } else { 2.0 },
                if *dashed { " stroke-dasharray=\"6,4\"" } else { "" }
            );
            for &(size, n) in pts {
                let _ = writeln!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
                    xs(size),
                    ys(n)
                );
            }
        }
        if p == report.cpus.len() - 1 {
            let lx = x0 + pw + 15.0;
            for (i, (title, color, dashed, _)) in series.iter().enumerate() {
                let y = mt + 10.0 + i as f64 * 18.0;
                let _ = writeln!(
                    s,
                    "<line x1=\"{lx}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"2\"{}/><text x=\"{}\" y=\"{}\">{}</text>",
                    lx + 20.0,
                    if *dashed { " stroke-dasharray=\"6,4\"" } else { "" },
                    lx + 25.0,
                    y + 4.0,
                    title
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">instructions per call</text>",
        mt + ph / 2.0,
        mt + ph / 2.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_and_barrier_words_classify() {
        assert_eq!(classify(0xd50b_7b20), Class::Dc); // dc cvau, x0
        assert_eq!(classify(0xd50b_7523), Class::Ic); // ic ivau, x3
        assert_eq!(classify(0xd503_3b9f), Class::Dsb); // dsb ish
        assert_eq!(classify(0xd503_3fdf), Class::Isb); // isb
        assert_eq!(classify(0xd400_0001), Class::Svc); // svc #0
        assert_eq!(classify(0xd503_201f), Class::Other); // nop
        assert_eq!(classify(0xd503_3bbf), Class::Other); // dmb ish
    }

    #[test]
    fn lines_overlapping_counts_partial_lines() {
        assert_eq!(lines_overlapping(0, 4, 64), 1);
        assert_eq!(lines_overlapping(4, 64, 64), 2);
        assert_eq!(lines_overlapping(0, 1 << 20, 64), 16384);
        assert_eq!(minimum(0, 1 << 20, (64, 64)).insns, 32_771);
    }

    #[test]
    fn log_lines_parse() {
        let t = "0: 0x7f6195800100 [0000000000001001/000000550288cc40/00000001/00000201] ";
        assert_eq!(trace_pc(t), Some(0x55_0288_cc40));
        assert_eq!(
            membarrier_cmd("1007 membarrier(32,0,0,365072497062,365072685488,10) = 0"),
            Some(32)
        );
        assert_eq!(membarrier_cmd("1007 write(1,0x719b0,32) = 32"), None);
    }
}
