//! Parsing of qemu's log (`-d in_asm,exec,nochain,strace`) and the guest's
//! stdout into brackets of counted instructions.

use super::*;

/// What one run of the guest printed and executed.
#[derive(Debug, Default)]
pub struct Run {
    /// The `case` lines, each with its bracket's counts.
    pub cases: Vec<Case>,
    /// Data and instruction line sizes the library read.
    pub lines: (usize, usize),
    /// `dc` + `ic` executed anywhere in the run (for the cross-check).
    pub total_maintenance: u64,
}

/// One bracket: its name, size, offset and what ran inside it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Case {
    pub name: String,
    pub size: usize,
    pub offset: usize,
    pub counts: Counts,
    /// The instructions executed inside the library's wrapper
    /// ([`LISTED_SYMBOL`]), as `in_asm` disassembled them, in execution
    /// order; empty for other brackets and for brackets longer than
    /// [`LISTING_LIMIT`].
    pub listing: Vec<String>,
}

/// The guest function whose executed instructions are listed: the
/// `#[inline(never)]` wrapper that calls `icache_coherence::clear_cache`
/// (mangled name prefix; qemu names translation blocks by ELF symbol).
pub const LISTED_SYMBOL: &str = "_ZN12icache_bench4ours17h";
/// Longer listings (the big ranges) are dropped while parsing.
pub const LISTING_LIMIT: usize = 200;

/// What executed between two markers (the markers' own instructions
/// excluded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub insns: u64,
    pub dc: u64,
    pub ic: u64,
    pub dsb: u64,
    pub isb: u64,
    pub svc: u64,
    /// membarrier system calls: (register SYNC_CORE, SYNC_CORE, other).
    pub membarrier_register: u64,
    pub membarrier_sync: u64,
    pub membarrier_other: u64,
}

/// Instruction classes that matter here (Arm ARM C6.2: SYS, DSB, ISB, SVC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Dc,
    Ic,
    Dsb,
    Isb,
    Svc,
    Other,
}

pub fn classify(word: u32) -> Class {
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
pub struct Parser {
    pub words: HashMap<u64, u32>,
    /// Marker addresses, learnt from the first `IN: bench_begin` and `IN:
    /// bench_end` blocks (qemu names each block's symbol, and translates a
    /// block before it first runs it). 0 until then.
    pub begin: u64,
    pub end: u64,
    /// The marker whose address the next in_asm line gives.
    pub naming: Option<Marker>,
    /// QEMU 7.2 prints in_asm words byte-swapped for `-cpu a64fx` (the code
    /// itself runs little-endian). Learnt from the begin marker's `nop`.
    pub swapped: Option<bool>,
    /// `dc` + `ic` executed before the byte order was known, counted both ways.
    pub early_maintenance: [u64; 2],
    pub inside: bool,
    pub current: Counts,
    pub brackets: Vec<Counts>,
    pub total_maintenance: u64,
    /// Whether the current translation block belongs to [`LISTED_SYMBOL`].
    pub listed_block: bool,
    /// Disassembly of each PC of [`LISTED_SYMBOL`].
    pub texts: HashMap<u64, String>,
    pub listing: Vec<String>,
    pub listings: Vec<Vec<String>>,
}

impl Parser {
    pub fn new() -> Self {
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

    pub fn line(&mut self, line: &str) -> Result {
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
                    MEMBARRIER_REGISTER => self.current.membarrier_register += 1,
                    MEMBARRIER_SYNC_CORE => self.current.membarrier_sync += 1,
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

/// membarrier(2) commands (include/uapi/linux/membarrier.h): QUERY,
/// PRIVATE_EXPEDITED_SYNC_CORE and REGISTER_PRIVATE_EXPEDITED_SYNC_CORE.
pub const MEMBARRIER_QUERY: u64 = 0;
pub const MEMBARRIER_SYNC_CORE: u64 = 1 << 5;
pub const MEMBARRIER_REGISTER: u64 = 1 << 6;

/// `nop`, the first instruction of the begin marker.
pub const NOP: u32 = 0xd503_201f;

#[derive(Clone, Copy, Debug)]
pub enum Marker {
    Begin,
    End,
}

/// The guest PC of a `Trace` line:
/// `0: 0x7f6195800100 [0000000000001001/000000550288cc40/00000001/00000201] sym`.
pub fn trace_pc(rest: &str) -> Option<u64> {
    let inside = rest.split_once('[')?.1;
    let pc = inside.split('/').nth(1)?;
    u64::from_str_radix(pc, 16).ok()
}

/// The command of a qemu `-strace` membarrier line: `1007 membarrier(32,0,0,...) = 0`.
pub fn membarrier_cmd(line: &str) -> Option<u64> {
    let args = line.split_once(" membarrier(")?.1;
    args.split(',').next()?.trim().parse().ok()
}

/// Matches the parsed brackets with the guest's `case` lines.
pub fn assemble(parser: Parser, stdout: &str) -> Result<Run> {
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
    fn log_lines_parse() {
        let t = "0: 0x7f6195800100 [0000000000001001/000000550288cc40/00000001/00000201] ";
        assert_eq!(trace_pc(t), Some(0x55_0288_cc40));
        assert_eq!(
            membarrier_cmd("1007 membarrier(32,0,0,365072497062,365072685488,10) = 0"),
            Some(32)
        );
        assert_eq!(membarrier_cmd("1007 write(1,0x719b0,32) = 32"), None);
    }

    /// What the guest printed for `flush 1` (both CPU models; the fixtures
    /// below are from the same binary).
    fn flush_stdout(line: usize) -> String {
        format!(
            "marks 0x550000c3ac 0x550000c3b4\nlines {line} {line}\ncase pipeline_flush_mt 0 0\n"
        )
    }

    /// Parses a fixture: an excerpt of a real qemu log of
    /// `icache-bench flush 1` (`-singlestep -d in_asm,exec,nochain,strace`),
    /// cut to the steady-state bracket and the `in_asm` lines of every PC it
    /// executes, in their original order.
    fn parse_fixture(log: &str, line: usize) -> Run {
        let mut parser = Parser::new();
        for l in log.lines() {
            parser.line(l).unwrap();
        }
        assemble(parser, &flush_stdout(line)).unwrap()
    }

    #[test]
    fn a_real_pipeline_flush_mt_bracket_counts_one_svc_and_one_sync_core() {
        let run = parse_fixture(include_str!("fixtures/flush-cortex-a72.log"), 64);
        assert_eq!(run.lines, (64, 64));
        let [case] = run.cases.as_slice() else {
            panic!("{} brackets", run.cases.len());
        };
        assert_eq!(case.name, "pipeline_flush_mt");
        let c = case.counts;
        // The bracket's 25 Trace lines less the markers' own 3.
        assert_eq!(c.insns, 22);
        assert_eq!((c.svc, c.membarrier_sync, c.membarrier_register), (1, 1, 0));
        assert_eq!((c.dc, c.ic, c.dsb, c.isb), (0, 0, 0, 0));
    }

    #[test]
    fn a64fx_byte_swapped_in_asm_words_give_the_same_counts() {
        // QEMU 7.2 prints `-cpu a64fx`'s in_asm words byte-swapped; the
        // parser learns it from the begin marker's nop.
        let log = include_str!("fixtures/flush-a64fx.log");
        assert!(
            log.contains("1f2003d5"),
            "the fixture shows the swapped nop"
        );
        let a64fx = parse_fixture(log, 256);
        let a72 = parse_fixture(include_str!("fixtures/flush-cortex-a72.log"), 64);
        assert_eq!(a64fx.cases[0].counts, a72.cases[0].counts);
    }

    #[test]
    fn a_log_that_executes_an_untranslated_pc_is_an_error() {
        let log = include_str!("fixtures/flush-cortex-a72.log");
        let trace = log.lines().find(|l| l.starts_with("Trace ")).unwrap();
        let mut parser = Parser::new();
        assert!(parser.line(trace).is_err());
    }

    #[test]
    fn brackets_and_case_lines_must_match() {
        let mut parser = Parser::new();
        for l in include_str!("fixtures/flush-cortex-a72.log").lines() {
            parser.line(l).unwrap();
        }
        let two_cases = flush_stdout(64) + "case pipeline_flush_mt 0 0\n";
        assert!(assemble(parser, &two_cases).is_err());
    }
}
