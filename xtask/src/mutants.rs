//! `cargo xtask mutants`: seed one fault per copy of the library and check
//! that its test suite, run under the coherence checker, catches it.
//!
//! Each mutant is a copy of `crates/icache-coherence` in a temporary folder
//! with exactly one textual change (the tables below). The copy's tests run
//! for the mutant's target (`aarch64-unknown-linux-gnu` for [`MUTANTS`],
//! `riscv64gc-unknown-linux-gnu` for [`RISCV64_MUTANTS`],
//! `armv7-unknown-linux-gnueabihf` for [`ARM_MUTANTS`],
//! `powerpc64le-unknown-linux-gnu` for [`PPC64LE_MUTANTS`]) with icache-check
//! as the cargo runner; a mutant is caught when the run fails: a test
//! assertion, a crash, or the checker's exit status 86 for a violation. The
//! table at the end says which.
//!
//! Every mutant runs on each QEMU the checker supports (`--qemu both`, the
//! default): its copy is built once, then its suite runs on QEMU 7.2 and on
//! QEMU 10.0.2 (setup's build) from the same build folder. It counts as
//! caught only when every QEMU caught it; the tables show each QEMU's
//! verdicts and catches per architecture.

use crate::checker::{self, Qemu, EXIT_CHECKER_FAILED, EXIT_VIOLATIONS};
use crate::cmd::{Cmd, Result};
use crate::targets::{
    self, cargo_target_var, ARM_CPU, CHECKER_ARM_TARGET, CHECKER_PPC64LE_TARGET,
    CHECKER_RISCV64_TARGET, CHECKER_TARGET, DEFAULT_CPU, PPC64LE_CPU, RISCV64_CPU,
};
use crate::{Workspace, LIB};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A mutant that makes a test loop forever is caught by this limit; the
/// runner then kills cargo, the test binaries and their qemu together.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// One seeded fault: in `file` (relative to the crate), replace the
/// `nth` (0-based) occurrence of `from` with `to`.
pub struct Mutant {
    pub name: &'static str,
    pub file: &'static str,
    pub from: &'static str,
    pub to: &'static str,
    pub nth: usize,
}

const DC: &str = r#"unsafe { asm!("dc cvau, {}", in(reg) line as u64, options(readonly, nostack, preserves_flags)) }"#;
const IC: &str = r#"unsafe { asm!("ic ivau, {}", in(reg) line as u64, options(readonly, nostack, preserves_flags)) }"#;
/// A call of the `dsb ish` helper; occurrences 0 and 1 are the inlined
/// fast path's (`walk_sequence`), which every steady-state call runs.
const DSB: &str = "dsb_ish();";
const ISB: &str = r#"unsafe { asm!("isb", options(readonly, nostack, preserves_flags)) }"#;

pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "no dc cvau",
        file: "src/backends/aarch64.rs",
        from: DC,
        to: "{ let _ = line; }",
        nth: 0,
    },
    Mutant {
        name: "no ic ivau",
        file: "src/backends/aarch64.rs",
        from: IC,
        to: "{ let _ = line; }",
        nth: 0,
    },
    Mutant {
        name: "no first dsb",
        file: "src/backends/aarch64.rs",
        from: DSB,
        to: "",
        nth: 0,
    },
    Mutant {
        name: "no second dsb",
        file: "src/backends/aarch64.rs",
        from: DSB,
        to: "",
        nth: 1,
    },
    Mutant {
        name: "no isb",
        file: "src/backends/aarch64.rs",
        from: ISB,
        to: "{}",
        nth: 0,
    },
    Mutant {
        // The inlined fast path claims the work done: only each process's
        // first call (the out-of-line path) does any maintenance.
        name: "fast path skips the maintenance",
        file: "src/backends/aarch64.rs",
        from: "unsafe { walk_sequence(data, instruction, start, last) };",
        to: "let _ = (data, instruction, start, last);",
        nth: 0,
    },
    Mutant {
        name: "data line size doubled",
        file: "src/ctr_el0.rs",
        from: "4 << ((self.0 >> DMINLINE_SHIFT) & FIELD_MASK)",
        to: "8 << ((self.0 >> DMINLINE_SHIFT) & FIELD_MASK)",
        nth: 0,
    },
    Mutant {
        name: "instruction line size doubled",
        file: "src/ctr_el0.rs",
        from: "4 << ((self.0 >> IMINLINE_SHIFT) & FIELD_MASK)",
        to: "8 << ((self.0 >> IMINLINE_SHIFT) & FIELD_MASK)",
        nth: 0,
    },
    Mutant {
        // The classic `(start..=last).step_by(line)`: the walk starts at the
        // unaligned start, so when the start's offset in its line exceeds
        // the last byte's, it stops one line short.
        name: "start not aligned down",
        file: "src/lines.rs",
        from: "first: start & mask,\n            last: last_byte & mask,",
        to: "first: start,\n            last: start + (last_byte - start) / size * size,",
        nth: 0,
    },
    Mutant {
        name: "last line dropped",
        file: "src/lines.rs",
        from: "last: last_byte & mask,",
        to: "last: (last_byte & mask).saturating_sub(size).max(start & mask),",
        nth: 0,
    },
    Mutant {
        // The same fault in the inlined fast path's walk.
        name: "fast path start not aligned down",
        file: "src/lines.rs",
        from: "let mut addr = start & mask;",
        to: "let mut addr = start;",
        nth: 0,
    },
    Mutant {
        name: "fast path last line dropped",
        file: "src/lines.rs",
        from: "if addr > last {",
        to: "if addr.wrapping_sub(mask) > last {",
        nth: 0,
    },
    Mutant {
        // The out-of-line walk of long ranges loses its one-line remainder
        // block: an odd count of lines ends one line short.
        name: "unrolled walk skips the one-line remainder",
        file: "src/lines.rs",
        from: "for bit in [1, 2, 4, 8, 16] {",
        to: "for bit in [2, 4, 8, 16] {",
        nth: 0,
    },
    Mutant {
        // Bit 31 is RES1: reading IDC and DIC there makes every core look
        // like one that needs neither the clean nor the invalidation.
        name: "IDC/DIC read from the wrong bits",
        file: "src/ctr_el0.rs",
        from: "const IDC_BIT: u64 = 1 << 28;\nconst DIC_BIT: u64 = 1 << 29;",
        to: "const IDC_BIT: u64 = 1 << 31;\nconst DIC_BIT: u64 = 1 << 31;",
        nth: 0,
    },
    Mutant {
        name: "pipeline_flush_mt does nothing",
        file: "src/backends/membarrier_flush.rs",
        from: "    FLUSH.flush(membarrier, android_guard)\n",
        to: "    let _ = &FLUSH;\n    Ok(())\n",
        nth: 0,
    },
    Mutant {
        // The reader-side protocol (issue 10): a reader that sees the epoch
        // move but does not synchronize its own context.
        name: "reader skips sync_this_thread",
        file: "src/publication.rs",
        from: "        Chosen::sync_this_thread();\n",
        to: "",
        nth: 0,
    },
    Mutant {
        // issue 11, item 3: a clock read in place of the reader's context
        // synchronization. Under qemu-user 7.2 clock_gettime is a real system
        // call, but arm64 Linux serves it from the vDSO without an exception,
        // so the checker must not count its return.
        name: "reader reads the clock instead of sync_this_thread",
        file: "src/publication.rs",
        from: "        Chosen::sync_this_thread();\n",
        to: "        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };\n        // SAFETY: `ts` is a valid out-pointer.\n        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };\n",
        nth: 0,
    },
    Mutant {
        // `MP.RF+cachesync+isb-ctrl`: the isb before the read of the
        // publication, which the Arm model allows to fetch stale code.
        name: "reader syncs before reading the entry point",
        file: "tests/common/mod.rs",
        from: "        let slot = self.pin_latest();\n        epoch.sync(seen);\n",
        to: "        epoch.sync(seen);\n        let slot = self.pin_latest();\n",
        nth: 0,
    },
    Mutant {
        // The epoch and the entry point are stored while the invalidation
        // may still be in flight: a reader can sync and fetch before it
        // completes.
        name: "writer publishes before its last dsb",
        file: "tests/common/mod.rs",
        from: "        asm!(\"dsb ish\", options(nostack, preserves_flags)); // completes the invalidation\n        publish();\n",
        to: "        publish();\n        asm!(\"dsb ish\", options(nostack, preserves_flags)); // completes the invalidation\n",
        nth: 0,
    },
    Mutant {
        // A panicking closure leaves the code it added without maintenance.
        name: "batch skips its completion on panic",
        file: "src/batch.rs",
        from: "        if !self.batch.ranges.is_empty() {\n            let _ = self.complete();\n        }\n",
        to: "",
        nth: 0,
    },
    Mutant {
        // Double-mapped code invalidated through the writable view only. A
        // bug where the instruction cache is VIPT (it may alias, so an `ic`
        // through the RW view need not reach lines fetched through the RX
        // view), harmless where it is PIPT: so it runs on a64fx, see
        // `PINNED_CPUS` and icache-check's `src/aliases.rs`.
        name: "clear_cache_dual invalidates the writable view",
        file: "src/backends/aarch64.rs",
        from: "let (clean, invalidate) = (span((write, len)), span((exec, len)));",
        to: "let (clean, invalidate) = (span((write, len)), span((write, len)));",
        nth: 0,
    },
];

/// riscv64 mutants (issue 12): the two mistakes a RISC-V JIT makes with
/// threads, both in `src/backends/riscv_linux.rs`.
pub const RISCV64_MUTANTS: &[Mutant] = &[
    Mutant {
        // The crate this project replaces shipped this: the flush covers
        // only the calling thread, and another thread runs the code.
        name: "riscv_flush_icache with flags = 1 (this thread only)",
        file: "src/backends/riscv_linux.rs",
        from: "const FLAGS_ALL_HARTS: libc::c_ulong = 0;",
        to: "const FLAGS_ALL_HARTS: libc::c_ulong = 1;",
        nth: 0,
    },
    Mutant {
        // `clear_cache` as a bare user `fence.i`, without the prctl
        // opt-in: it covers only the hart it ran on, and readers do nothing.
        name: "bare fence.i instead of riscv_flush_icache",
        file: "src/backends/riscv_linux.rs",
        from: "flush_all_harts(start, start.wrapping_add(len))",
        to: "{\n            let _ = (start, len);\n            fence_i();\n            Ok(())\n        }",
        nth: 0,
    },
];

/// 32-bit Arm mutants (issue 12): the `cacheflush` syscall left out, and a
/// range that skips a page, both in `src/backends/arm_linux_cacheflush.rs`.
pub const ARM_MUTANTS: &[Mutant] = &[
    Mutant {
        name: "no cacheflush",
        file: "src/backends/arm_linux_cacheflush.rs",
        from: "unsafe { libc::syscall(ARM_NR_CACHEFLUSH, chunk_start, end, 0) }",
        to: "{\n            let _ = (chunk_start, end);\n            0\n        }",
        nth: 0,
    },
    Mutant {
        // The walk goes from the first 4 KiB chunk straight to the third:
        // the second page of a longer range is never flushed.
        name: "cacheflush range skips a page",
        file: "src/backends/arm_linux_cacheflush.rs",
        from: "chunk_start = chunk_last + 1;",
        to: "chunk_start = chunk_last + 1 + if chunk_start == start { CHUNK } else { 0 };",
        nth: 0,
    },
];

const DCBST: &str =
    r#"unsafe { asm!("dcbst 0, {0}", in(reg_nonzero) b, options(nostack, preserves_flags)) }"#;
const ICBI: &str =
    r#"unsafe { asm!("icbi 0, {0}", in(reg_nonzero) b, options(nostack, preserves_flags)) }"#;

/// ppc64le mutants (issue 12): one per step of the Power ISA sequence in
/// `src/backends/powerpc.rs` (QEMU 7.2 reports no ICACHE_SNOOP, so the
/// library takes the full sequence).
pub const PPC64LE_MUTANTS: &[Mutant] = &[
    Mutant {
        name: "power: no dcbst",
        file: "src/backends/powerpc.rs",
        from: DCBST,
        to: "{ let _ = b; }",
        nth: 0,
    },
    Mutant {
        name: "power: no sync after the dcbsts",
        file: "src/backends/powerpc.rs",
        from: r#"unsafe { asm!("sync", options(nostack, preserves_flags)) };"#,
        to: "",
        nth: 0,
    },
    Mutant {
        name: "power: no icbi",
        file: "src/backends/powerpc.rs",
        from: ICBI,
        to: "{ let _ = b; }",
        nth: 0,
    },
    Mutant {
        name: "power: no sync after the icbis",
        file: "src/backends/powerpc.rs",
        from: r#"asm!("sync", "isync", options"#,
        to: r#"asm!("isync", options"#,
        nth: 0,
    },
    Mutant {
        name: "power: no isync",
        file: "src/backends/powerpc.rs",
        from: r#"asm!("sync", "isync", options"#,
        to: r#"asm!("sync", options"#,
        nth: 0,
    },
];

/// The mutant tables with the target whose suite runs them and the CPU
/// model it runs on (`None`: the `--cpu` option, aarch64 only).
fn suites() -> [(&'static str, &'static [Mutant], Option<&'static str>); 4] {
    [
        (CHECKER_TARGET, MUTANTS, None),
        (CHECKER_RISCV64_TARGET, RISCV64_MUTANTS, Some(RISCV64_CPU)),
        (CHECKER_ARM_TARGET, ARM_MUTANTS, Some(ARM_CPU)),
        (CHECKER_PPC64LE_TARGET, PPC64LE_MUTANTS, Some(PPC64LE_CPU)),
    ]
}

/// Mutants that are bugs only on some CPU models run on one of those,
/// whatever `--cpu` says: on another model the checker must not report
/// them. QEMU 7.2's `a64fx` reports a VIPT instruction cache (CTR_EL0.L1Ip
/// = 0b10), `cortex-a72` a PIPT one.
const PINNED_CPUS: &[(&str, &str)] = &[("clear_cache_dual invalidates the writable view", "a64fx")];

/// The CPU model mutant `m` runs on: its pinned one, or `default`.
fn cpu_for<'a>(m: &Mutant, default: &'a str) -> &'a str {
    PINNED_CPUS
        .iter()
        .find(|(name, _)| *name == m.name)
        .map_or(default, |&(_, cpu)| cpu)
}

/// Applies `m` to `text`, or says why it cannot (the source changed and the
/// mutant no longer matches: that must fail loudly, not test the original).
pub fn apply(m: &Mutant, text: &str) -> Result<String> {
    let at = text
        .match_indices(m.from)
        .nth(m.nth)
        .map(|(i, _)| i)
        .ok_or_else(|| {
            format!(
                "mutant `{}`: occurrence {} of {:?} not found in {}",
                m.name, m.nth, m.from, m.file
            )
        })?;
    Ok(format!(
        "{}{}{}",
        &text[..at],
        m.to,
        &text[at + m.from.len()..]
    ))
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The checker reported violations (exit 86).
    CaughtByChecker,
    /// A test failed or crashed.
    CaughtByTests(String),
    Missed,
}

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    let mut cpu = DEFAULT_CPU.to_string();
    let mut only: Option<String> = None;
    let mut qemus = Qemu::ALL.to_vec();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--cpu", Some(v)) => cpu = v.clone(),
            ("--only", Some(v)) => only = Some(v.clone()),
            ("--qemu", Some(v)) => qemus = Qemu::parse_choice(v)?,
            _ => {
                return Err("usage: cargo xtask mutants [--cpu AARCH64_MODEL] \
                     [--only <substring>] [--qemu 7.2|10|both]"
                    .to_string())
            }
        }
    }
    let selected: Vec<(&str, &Mutant, &str)> = suites()
        .into_iter()
        .flat_map(|(target, table, model)| {
            let model = model.unwrap_or(cpu.as_str());
            table.iter().map(move |m| (target, m, cpu_for(m, model)))
        })
        .filter(|(_, m, _)| only.as_ref().is_none_or(|o| m.name.contains(o.as_str())))
        .collect();
    if selected.is_empty() {
        return Err("--only matched no mutant".to_string());
    }
    for qemu in &qemus {
        qemu.ready(ws)?;
    }
    checker::build(ws).run()?;
    let original = ws.root.join("crates").join(LIB);
    let scratch = std::env::temp_dir().join(format!("icache-mutants-{}", std::process::id()));
    // One build folder for every copy: the dependencies compile once.
    let build_dir = ws.target_dir.join("mutants");
    let mut rows = Vec::new();
    let start = Instant::now();
    for (i, &(target, m, model)) in selected.iter().enumerate() {
        let linker = targets::linker(ws, target)?;
        let copy = scratch.join(format!("m{i}"));
        copy_crate(&original, &copy, &ws.root.join("Cargo.lock"))?;
        let path = copy.join(m.file);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        fs::write(&path, apply(m, &text)?).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut runs = Vec::new();
        // The first QEMU's run builds the copy; the others reuse that build
        // (the runner and its QEMU are not part of cargo's fingerprint).
        for &qemu in &qemus {
            eprintln!(
                "\n==> mutant {}/{}: {} ({target}, {qemu})",
                i + 1,
                selected.len(),
                m.name
            );
            let t = Instant::now();
            let verdict = run_suite(ws, &copy, &build_dir, &linker, target, model, qemu)?;
            runs.push((verdict, t.elapsed()));
        }
        rows.push(Row {
            name: m.name,
            target,
            model,
            runs,
        });
    }
    let _ = fs::remove_dir_all(&scratch);

    println!("\nmutants under icache-check:\n");
    print!("{}", mutant_table(&rows, &qemus));
    println!("\nmutation score per architecture (a mutant counts as caught when every QEMU caught it):\n");
    let outcomes: Vec<(&str, Vec<bool>)> = rows
        .iter()
        .map(|r| (r.target, r.runs.iter().map(|(v, _)| v.caught()).collect()))
        .collect();
    print!("{}", score_table(&scores(&outcomes, qemus.len()), &qemus));
    let missed = rows.iter().filter(|r| !r.caught()).count();
    println!(
        "\n{} of {} caught in {:.0} s",
        rows.len() - missed,
        rows.len(),
        start.elapsed().as_secs_f64()
    );
    if missed == 0 {
        Ok(())
    } else {
        Err(format!("{missed} mutant(s) MISSED on at least one QEMU"))
    }
}

/// One mutant's runs, one per QEMU in the order asked for.
struct Row<'a> {
    name: &'a str,
    target: &'a str,
    model: &'a str,
    runs: Vec<(Verdict, Duration)>,
}

impl Row<'_> {
    /// Caught only when caught on every QEMU it ran on.
    fn caught(&self) -> bool {
        self.runs.iter().all(|(v, _)| v.caught())
    }
}

impl Verdict {
    fn caught(&self) -> bool {
        *self != Verdict::Missed
    }

    /// How a table cell shows it.
    fn cell(&self) -> String {
        match self {
            Verdict::CaughtByChecker => {
                format!("caught: icache-check violation (exit {EXIT_VIOLATIONS})")
            }
            Verdict::CaughtByTests(how) => format!("caught: {how}"),
            Verdict::Missed => "MISSED".to_string(),
        }
    }
}

/// The Markdown table of every mutant: one column per QEMU, then the
/// verdict over all of them and the seconds of all runs.
fn mutant_table(rows: &[Row], qemus: &[Qemu]) -> String {
    let mut out = String::from("| mutant | target (--cpu) |");
    for q in qemus {
        out.push_str(&format!(" {q} |"));
    }
    out.push_str(" result | seconds |\n|---|---|");
    out.push_str(&"---|".repeat(qemus.len() + 2));
    out.push('\n');
    for r in rows {
        out.push_str(&format!("| {} | {} ({}) |", r.name, r.target, r.model));
        for (verdict, _) in &r.runs {
            out.push_str(&format!(" {} |", verdict.cell()));
        }
        let seconds: f64 = r.runs.iter().map(|(_, t)| t.as_secs_f64()).sum();
        let result = if r.caught() { "caught" } else { "MISSED" };
        out.push_str(&format!(" {result} | {seconds:.0} |\n"));
    }
    out
}

/// One architecture's score: its mutants, how many each QEMU caught (in the
/// order of the runs), and how many every QEMU caught.
#[derive(Debug, PartialEq, Eq)]
struct Score<'a> {
    target: &'a str,
    mutants: usize,
    caught_on: Vec<usize>,
    caught_on_all: usize,
}

/// Per target, in order of first appearance; `outcomes` holds each mutant's
/// target and whether each of the `qemus` runs caught it.
fn scores<'a>(outcomes: &[(&'a str, Vec<bool>)], qemus: usize) -> Vec<Score<'a>> {
    let mut out: Vec<Score> = Vec::new();
    for (target, caught) in outcomes {
        let i = match out.iter().position(|s| s.target == *target) {
            Some(i) => i,
            None => {
                out.push(Score {
                    target,
                    mutants: 0,
                    caught_on: vec![0; qemus],
                    caught_on_all: 0,
                });
                out.len() - 1
            }
        };
        let score = &mut out[i];
        score.mutants += 1;
        for (n, &c) in score.caught_on.iter_mut().zip(caught) {
            *n += usize::from(c);
        }
        score.caught_on_all += usize::from(caught.iter().all(|&c| c));
    }
    out
}

/// The Markdown score table: per architecture, the catches on each QEMU
/// and the score, which counts only mutants every QEMU caught.
fn score_table(scores: &[Score], qemus: &[Qemu]) -> String {
    let mut out = String::from("| target | mutants |");
    for q in qemus {
        out.push_str(&format!(" caught on {q} |"));
    }
    out.push_str(" caught on every QEMU | score |\n|---|---|");
    out.push_str(&"---|".repeat(qemus.len() + 2));
    out.push('\n');
    for s in scores {
        out.push_str(&format!("| {} | {} |", s.target, s.mutants));
        for n in &s.caught_on {
            out.push_str(&format!(" {n} |"));
        }
        out.push_str(&format!(
            " {} | {:.0}% |\n",
            s.caught_on_all,
            100.0 * s.caught_on_all as f64 / s.mutants as f64
        ));
    }
    out
}

/// Copies the crate (sources, tests, examples, manifest, build script) and
/// the workspace's lock file, so the copy resolves the same dependencies.
fn copy_crate(from: &Path, to: &Path, lock: &Path) -> Result {
    let _ = fs::remove_dir_all(to);
    copy_dir(from, to)?;
    fs::copy(lock, to.join("Cargo.lock")).map_err(|e| format!("copying the lock file: {e}"))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let dest: PathBuf = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
    }
    Ok(())
}

/// Runs the copy's `target` suite under the checker on CPU model `cpu`. The
/// copy lives outside the workspace, so the linker and runner come from the
/// environment rather than `.cargo/config.toml`.
fn run_suite(
    ws: &Workspace,
    copy: &Path,
    build_dir: &Path,
    linker: &str,
    target: &str,
    cpu: &str,
    qemu: Qemu,
) -> Result<Verdict> {
    let cargo = Cmd::new("cargo")
        .dir(copy)
        // The integration tests only: they run generated code, so it is the
        // checker (or a crash) that must catch the fault. The unit tests of
        // the pure arithmetic would catch some mutants without it.
        .args(["test", "--target", target, "--no-fail-fast", "--test", "*"])
        .env("CARGO_TARGET_DIR", build_dir.display().to_string())
        .env(&cargo_target_var(target, "LINKER"), linker);
    let out = checker::runner_env_for(cargo, ws, target, cpu, qemu)
        .env("ICACHE_LONG_RUN_PUBLISHES", "2000")
        .output(Some(RUN_LIMIT))?;
    let code = out.status.and_then(|s| s.code());
    let text = format!("{}{}", out.stdout, out.stderr);
    if code == Some(0) {
        return Ok(Verdict::Missed);
    }
    if checker::reported_violations(&text) {
        return Ok(Verdict::CaughtByChecker);
    }
    // The checker could not do its job: that catches nothing.
    if text.contains(&format!("exit status: {EXIT_CHECKER_FAILED}")) {
        return Err(format!(
            "icache-check failed (exit {EXIT_CHECKER_FAILED}) on {qemu} under {}:\n{}",
            copy.display(),
            out.stderr
        ));
    }
    let how = if code.is_none() {
        "a crash, a hang or a timeout".to_string()
    } else if text.contains("panicked") {
        "a failing test assertion".to_string()
    } else {
        "a failing test binary".to_string()
    };
    Ok(Verdict::CaughtByTests(how))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every mutant must still match the library's source: a mutant that
    /// silently stops applying would "test" the original code.
    #[test]
    fn every_mutant_applies_to_the_current_library_source() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/icache-coherence");
        for m in MUTANTS
            .iter()
            .chain(RISCV64_MUTANTS)
            .chain(ARM_MUTANTS)
            .chain(PPC64LE_MUTANTS)
        {
            let text = fs::read_to_string(root.join(m.file)).unwrap();
            let mutated = apply(m, &text).unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(mutated, text, "{} changes nothing", m.name);
        }
    }

    #[test]
    fn every_pinned_cpu_names_a_mutant_and_a_model_the_suites_run_on() {
        for (name, cpu) in PINNED_CPUS {
            assert!(MUTANTS.iter().any(|m| m.name == *name), "{name}");
            assert!(targets::AARCH64_CPUS.contains(cpu), "{cpu}");
        }
        let pinned = MUTANTS.iter().find(|m| m.name == PINNED_CPUS[0].0).unwrap();
        assert_eq!(cpu_for(pinned, "cortex-a72"), PINNED_CPUS[0].1);
        assert_eq!(cpu_for(&MUTANTS[0], "cortex-a72"), "cortex-a72");
    }

    #[test]
    fn a_mutant_that_no_longer_matches_is_an_error() {
        let m = Mutant {
            name: "x",
            file: "f",
            from: "abc",
            to: "",
            nth: 1,
        };
        assert!(apply(&m, "abc").is_err());
        assert_eq!(apply(&m, "abc abc").unwrap(), "abc ");
    }

    #[test]
    fn scores_are_counted_per_target_and_per_qemu_in_order_of_first_appearance() {
        let outcomes = [
            ("aarch64", vec![true, true]),
            ("riscv64", vec![false, true]),
            ("aarch64", vec![true, false]),
            ("riscv64", vec![true, true]),
            ("aarch64", vec![false, false]),
        ];
        assert_eq!(
            scores(&outcomes, 2),
            [
                Score {
                    target: "aarch64",
                    mutants: 3,
                    caught_on: vec![2, 1],
                    caught_on_all: 1
                },
                Score {
                    target: "riscv64",
                    mutants: 2,
                    caught_on: vec![1, 2],
                    caught_on_all: 1
                },
            ]
        );
        assert!(scores(&[], 2).is_empty());
    }

    #[test]
    fn a_mutant_missed_on_one_qemu_is_missed() {
        let row = |second| Row {
            name: "no isb",
            target: "aarch64-unknown-linux-gnu",
            model: "cortex-a72",
            runs: vec![
                (Verdict::CaughtByChecker, Duration::from_secs(5)),
                (second, Duration::from_secs(4)),
            ],
        };
        assert!(row(Verdict::CaughtByTests("a crash".to_string())).caught());
        assert!(!row(Verdict::Missed).caught());
        let table = mutant_table(&[row(Verdict::Missed)], &Qemu::ALL);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| mutant | target (--cpu) | QEMU 7.2 | QEMU 10.0.2 | result | seconds |"
        );
        assert_eq!(lines[1].matches('|').count(), lines[0].matches('|').count());
        assert_eq!(
            lines[2],
            "| no isb | aarch64-unknown-linux-gnu (cortex-a72) | caught: icache-check violation (exit 86) | MISSED | MISSED | 9 |"
        );
    }

    #[test]
    fn the_score_table_has_a_column_per_qemu_and_scores_only_catches_on_every_qemu() {
        let s = [Score {
            target: "powerpc64le-unknown-linux-gnu",
            mutants: 4,
            caught_on: vec![4, 3],
            caught_on_all: 3,
        }];
        let table = score_table(&s, &Qemu::ALL);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "| target | mutants | caught on QEMU 7.2 | caught on QEMU 10.0.2 | caught on every QEMU | score |"
        );
        assert_eq!(lines[1].matches('|').count(), lines[0].matches('|').count());
        assert_eq!(
            lines[2],
            "| powerpc64le-unknown-linux-gnu | 4 | 4 | 3 | 3 | 75% |"
        );
    }
}
