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
        let _ = writeln!(s, "| {what} | {} |", counts_cells(&p.counts));
    }
    s
}

/// The steady-state flush brackets of `case` (the library's, or upstream's).
pub fn flush_cases<'a>(c: &'a CpuReport, case: &'a str) -> impl Iterator<Item = &'a Case> {
    c.flush.iter().filter(move |f| f.name == case)
}

/// The cells `instructions | dc | ic | dsb | isb | svc | membarrier (SYNC_CORE)`
/// of one bracket, shared by the patch and publication tables.
pub fn counts_cells(k: &Counts) -> String {
    format!(
        "{} | {} | {} | {} | {} | {} | {} ({})",
        thousands(k.insns),
        k.dc,
        k.ic,
        k.dsb,
        k.isb,
        k.svc,
        membarriers(k),
        k.membarrier_sync
    )
}

pub fn flush_line(c: &CpuReport, case: &str) -> String {
    let mut per_call: Vec<String> = flush_cases(c, case)
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
            "| {what} | {} | {unchanged} | {changed} |",
            counts_cells(k)
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
            "\npipeline_flush_mt, steady state, per call: {}; upstream's newest: {}",
            flush_line(c, FLUSH_OURS),
            flush_line(c, FLUSH_UPSTREAM)
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

/// The instructions of one 4-byte call, where they go, and why issue 6's
/// fixed-cost and per-line goals were retired.
pub fn listing_section(report: &Report) -> String {
    let Some(c) = report.cpus.first() else {
        return String::new();
    };
    let mnemonic = |t: &String| t.split_whitespace().next().unwrap_or("").to_string();
    let required = c
        .listing
        .iter()
        .filter(|t| matches!(mnemonic(t).as_str(), "dc" | "ic" | "dsb" | "isb" | "ret"))
        .count();
    let mut s = fill(
        include_str!("text/listing.md"),
        &[
            ("size", LISTED_SIZE.to_string()),
            ("cpu", c.cpu.clone()),
            ("required", required.to_string()),
            ("total", c.listing.len().to_string()),
            ("listing", c.listing.join("\n")),
        ],
    );
    s.push_str(&fill(
        include_str!("text/listing_analysis.md"),
        &[
            ("fixed_goal", RETIRED_FIXED_COST_GOAL.to_string()),
            ("per_line_goal", RETIRED_PER_LINE_GOAL.to_string()),
            (
                "per_line_ratio",
                format!("{:.1}", RETIRED_PER_LINE_GOAL / 2.0),
            ),
        ],
    ));
    s
}

/// The column title of the implementation `name` in [`IMPLS`].
pub fn title(name: &str) -> &'static str {
    IMPLS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("?", |(_, t)| *t)
}

pub fn markdown(report: &Report) -> String {
    let runner = report.runner.join(" ");
    let mut s = fill(
        include_str!("text/intro.md"),
        &[
            ("qemu", report.qemu.clone()),
            (
                "cpus",
                report
                    .cpus
                    .iter()
                    .map(|c| {
                        format!(
                            "`{}` (D-line {} B, I-line {} B)",
                            c.cpu, c.lines.0, c.lines.1
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            ("rustc", report.rustc.clone()),
            ("target", TARGET.to_string()),
            ("commit", report.commit.clone()),
            ("seconds", report.seconds.to_string()),
            ("qemu_runner", runner),
            ("trace_args", TRACE_ARGS.join(" ")),
            (
                "sizes",
                SIZES
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("offset", OFFSETS[1].to_string()),
            ("peer_libgcc", title("libgcc").to_string()),
            (
                "peer_clear_cache",
                format!("the `{}` crate", title("clear-cache")),
            ),
            ("peer_newest", format!("`{}`", title("wasmtime-newest"))),
            ("peer_old", format!("`{}`", title("wasmtime-21"))),
        ],
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
    s.push_str(include_str!("text/patch.md"));
    for c in &report.cpus {
        let _ = writeln!(s, "\n### `-cpu {}`\n", c.cpu);
        s.push_str(&patch_table(c));
    }
    s.push_str("\n## `pipeline_flush_mt`\n\nSteady state (after a first call), per call, between the markers:\n\n");
    for c in &report.cpus {
        let _ = writeln!(
            s,
            "- `-cpu {}`: icache-coherence: {}; {}: {}",
            c.cpu,
            flush_line(c, FLUSH_OURS),
            title("wasmtime-newest"),
            flush_line(c, FLUSH_UPSTREAM)
        );
    }
    if let Some(race) = &report.race {
        let result = match &race.result {
            Ok((query, register, sync)) => format!(
                "**{register} registration** (cmd {MEMBARRIER_REGISTER:#x}), {query} QUERY (cmd {MEMBARRIER_QUERY}), {sync} SYNC_CORE (cmd {MEMBARRIER_SYNC_CORE:#x})."
            ),
            Err(e) => format!("not measured: {e}."),
        };
        s.push_str(&fill(
            include_str!("text/race.md"),
            &[("threads", race.threads.to_string()), ("result", result)],
        ));
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
            Ok(h) => s.push_str(&fill(
                include_str!("text/host.md"),
                &[
                    ("arch", h.arch.clone()),
                    ("ours", h.ours.to_string()),
                    ("empty", h.empty.to_string()),
                    ("difference", (h.ours as i64 - h.empty as i64).to_string()),
                ],
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_with_computed_values() {
        let text = fill(
            "{n} readers, {n} again, {cpu}.",
            &[("n", 3.to_string()), ("cpu", "a64fx".to_string())],
        );
        assert_eq!(text, "3 readers, 3 again, a64fx.");
    }

    #[test]
    #[should_panic(expected = "no value for")]
    fn a_placeholder_without_a_value_is_refused() {
        fill("{unknown}", &[]);
    }

    /// Renders every template through `markdown`, so that a placeholder
    /// the code does not fill fails here rather than in `cargo xtask bench`.
    #[test]
    fn every_prose_template_is_filled_by_the_generator() {
        let counts = Counts {
            insns: 7,
            ..Counts::default()
        };
        let report = Report {
            cpus: vec![CpuReport {
                cpu: "cortex-a72".to_string(),
                lines: (64, 64),
                singles: Vec::new(),
                listing: vec!["ret".to_string()],
                patch: Vec::new(),
                flush: Vec::new(),
                publish: Publish {
                    readers: 3,
                    reader_unchanged: counts,
                    ..Publish::default()
                },
                check: None,
            }],
            race: Some(Race {
                threads: 16,
                result: Ok((1, 1, 16)),
            }),
            host: Some(Host {
                result: Ok(HostCounts {
                    arch: "x86_64".to_string(),
                    ours: 5,
                    empty: 2,
                }),
            }),
            runner: vec!["qemu-aarch64".to_string()],
            ..Report::default()
        };
        let md = markdown(&report);
        assert!(!md.contains('{') && !md.contains('}'), "{md}");
        assert!(md.contains("## One publication to 3 reader threads"));
        assert!(md.contains("**1 registration** (cmd 0x40)"));
        assert!(md.contains("The difference, 3, is"));
    }
}
