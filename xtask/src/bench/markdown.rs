//! BENCHMARKS.md and the terminal tables.

use super::*;

// ---------------------------------------------------------------- output

pub fn size_name(size: usize) -> String {
    match size {
        s if s >= 1 << 20 && s % (1 << 20) == 0 => format!("{} MiB", s >> 20),
        s if s >= 1024 && s % 1024 == 0 => format!("{} KiB", s >> 10),
        s => format!("{s} B"),
    }
}

pub fn thousands(n: u64) -> String {
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
pub fn cell(c: &Counts) -> String {
    format!(
        "{} ({}/{}/{}/{})",
        thousands(c.insns),
        c.dc,
        c.ic,
        c.dsb,
        c.isb
    )
}

pub fn single_table(c: &CpuReport) -> String {
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

pub fn ops(c: &Counts) -> (u64, u64, u64, u64) {
    (c.dc, c.ic, c.dsb, c.isb)
}

pub fn membarriers(c: &Counts) -> u64 {
    c.membarrier_register + c.membarrier_sync + c.membarrier_other
}

pub fn patch_table(c: &CpuReport) -> String {
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

pub fn flush_line(c: &CpuReport) -> String {
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

/// One publication to the readers: both methods side by side.
pub fn publish_table(c: &CpuReport) -> String {
    let p = &c.publish;
    let mut s = String::from(
        "| publication | writer instructions | dc | ic | dsb | isb | svc | membarrier (SYNC_CORE) | reader, unchanged path | reader, changed path |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    let rows = [
        (
            "`clear_cache` + `pipeline_flush_mt`",
            &p.flush,
            "nothing".to_string(),
            "nothing".to_string(),
        ),
        (
            "`clear_cache` + `CodeEpoch::advance`",
            &p.epoch,
            cell(&p.reader_unchanged),
            cell(&p.reader_changed),
        ),
    ];
    for (what, k, unchanged, changed) in rows {
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} | {} | {} | {} | {} ({}) | {unchanged} | {changed} |",
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

/// Fills `{name}` placeholders of a prose template with computed values, so
/// that no number in the prose is typed by hand. Panics on a placeholder
/// without a value: the templates are part of xtask, and a test fills each.
pub fn fill(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map(|i| open + i);
        let name = close.map(|c| &rest[open + 1..c]);
        match values.iter().find(|(k, _)| Some(*k) == name) {
            Some((_, v)) => {
                out.push_str(v);
                rest = &rest[close.unwrap_or(open) + 1..];
            }
            None => panic!("prose template: no value for {:?}", name),
        }
    }
    out.push_str(rest);
    out
}

/// Plain-text tables for the terminal (both modes).
pub fn tables(report: &Report) -> String {
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
        let _ = writeln!(
            s,
            "\none publication to {} readers: instructions (dc/ic/dsb/isb)\n",
            c.publish.readers
        );
        s.push_str(&publish_table(c));
    }
    s
}

/// The instructions of one 4-byte call, and why the fixed-cost and
/// per-line goals are out of reach.
pub fn listing_section(report: &Report) -> String {
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

pub fn markdown(report: &Report) -> String {
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
    if let Some(c) = report.cpus.first() {
        s.push_str(&fill(
            include_str!("text/publish.md"),
            &[("readers", c.publish.readers.to_string())],
        ));
        for c in &report.cpus {
            let _ = writeln!(s, "\n### `-cpu {}`\n", c.cpu);
            s.push_str(&publish_table(c));
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
