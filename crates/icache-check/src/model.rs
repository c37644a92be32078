//! The architectural model of AArch64 instruction-cache coherence, as pure Rust.
//!
//! The model is fed a totally ordered stream of events (stores, executed
//! maintenance and barrier instructions, system calls, thread starts) and
//! answers, for each instruction execution it is asked about, whether a real
//! core could have fetched stale bytes. It knows nothing about QEMU; the glue in
//! `plugin.rs` turns QEMU callbacks into calls on [`Model`].
//!
//! # Rules (Arm ARM DDI 0487, B2.4.4 "Concurrent modification and execution of
//! instructions", D7.5.2 "Instruction cache maintenance" and the CTR_EL0
//! description D23.2.34)
//!
//! 1. Each guest store makes the bytes it wrote new data.
//! 2. `dc cvau` / `cvac` / `civac` on a line by vCPU V cleans that line's data
//!    as it stood when the instruction was issued. The clean takes effect at V's
//!    next `dsb` that covers the inner shareable domain ([`DsbOption::completes_maintenance`]).
//! 3. `ic ivau` on a line by V, once it completes at V's next such `dsb`, lets
//!    instruction fetches of that line see only data that was already cleaned
//!    and completed when the `ic` was issued.
//! 4. A vCPU may still fetch stale instructions until it passes a context
//!    synchronization event after the invalidation completed: an `isb` on that
//!    vCPU, a return from a system call on that vCPU (an exception return is
//!    context synchronizing, Arm ARM "Context synchronization event" in the
//!    glossary), or a successful `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`
//!    from any thread, which counts for every vCPU from the moment it was
//!    issued. A new thread starts synchronized.
//! 5. With CTR_EL0.IDC = 1 no clean is needed: a store counts as cleaned once
//!    the storing vCPU passes its next `dsb`. With CTR_EL0.DIC = 1 no
//!    invalidation is needed: data counts as invalidated as soon as its clean
//!    completed. The context synchronization is still required.
//! 6. A violation is the execution of an instruction whose own bytes were
//!    stored by the guest and are not yet coherent for the executing vCPU.
//!    Bytes the guest never stored (the loader's or kernel's code) are
//!    coherent.
//!
//! # Refinements
//!
//! * Shadow state is kept per aligned 4-byte word, not per byte: every A64
//!   instruction is one aligned word (Arm ARM C1.1), so "the instruction's own
//!   bytes" is exactly one word, and a store to any byte of it marks it.
//! * `ic iallu` invalidates only the issuing vCPU's instruction cache; `ic
//!   ialluis` invalidates every vCPU's (C5.3.13, C5.3.14). Both are undefined at
//!   EL0, so Linux programs never complete them.
//! * `munmap`, `mremap` and `mmap` replace the pages they cover with memory the
//!   kernel provides, so the model forgets the guest's stores there.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use crate::decode::{DsbOption, Insn};

/// Size of the shadow pages the model allocates for stored-to memory.
pub const PAGE_SIZE: u64 = 4096;
const WORDS_PER_PAGE: usize = (PAGE_SIZE / 4) as usize;

/// aarch64 Linux system call numbers the model reacts to
/// (`include/uapi/asm-generic/unistd.h`).
pub mod sysno {
    /// `munmap(addr, len)`.
    pub const MUNMAP: i64 = 215;
    /// `mremap(old, old_len, new_len, flags, new)`.
    pub const MREMAP: i64 = 216;
    /// `mmap(addr, len, prot, flags, fd, off)`.
    pub const MMAP: i64 = 222;
    /// `membarrier(cmd, flags, cpu_id)`.
    pub const MEMBARRIER: i64 = 283;
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE` (`include/uapi/linux/membarrier.h`).
    pub const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
}

/// The cache geometry and feature bits the model checks against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Smallest data cache line in bytes (CTR_EL0.DminLine).
    pub dline: u64,
    /// Smallest instruction cache line in bytes (CTR_EL0.IminLine).
    pub iline: u64,
    /// CTR_EL0.IDC: cleaning to the Point of Unification is not required.
    pub idc: bool,
    /// CTR_EL0.DIC: invalidating the instruction cache is not required.
    pub dic: bool,
}

impl Config {
    /// Decodes a CTR_EL0 value (Arm ARM D23.2.34): IminLine is bits \[3:0\],
    /// DminLine bits \[19:16\], each a log2 of the number of 4-byte words;
    /// IDC is bit 28 and DIC bit 29.
    pub fn from_ctr_el0(ctr: u64) -> Config {
        Config {
            iline: 4 << (ctr & 0xf),
            dline: 4 << ((ctr >> 16) & 0xf),
            idc: ctr & (1 << 28) != 0,
            dic: ctr & (1 << 29) != 0,
        }
    }
}

/// The step a violation was missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Missing {
    /// The stored data was never cleaned to the Point of Unification, or the
    /// clean never completed (no `dsb` after it).
    NotCleaned,
    /// No completed instruction-cache invalidation covers the data: the `ic`
    /// is missing, came before the clean completed, or was not completed by a
    /// `dsb`.
    NotInvalidated,
    /// The executing vCPU passed no context synchronization event after the
    /// invalidation completed.
    NoContextSync,
}

impl Missing {
    /// The phrase used in reports; the integration tests and users match on it.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::NotCleaned => "not cleaned",
            Missing::NotInvalidated => "not invalidated",
            Missing::NoContextSync => "no context synchronization on this vCPU",
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution of an instruction that a real core could have fetched stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The vCPU that executed it.
    pub vcpu: u32,
    /// The instruction's address.
    pub pc: u64,
    /// The first step of the sequence that is missing for it.
    pub missing: Missing,
    /// The PC of the store that last wrote the instruction's bytes.
    pub store_pc: u64,
    /// The vCPU that made that store.
    pub store_vcpu: u32,
    /// A likely cause, when the model can tell more than `missing`.
    pub hint: Option<&'static str>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "icache-check: violation: vCPU {} executed {:#x}: {} (stored by pc {:#x} on vCPU {})",
            self.vcpu, self.pc, self.missing, self.store_pc, self.store_vcpu
        )?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Counters printed in the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Instruction executions reported as violations.
    pub violations: u64,
    /// Distinct guest stores at least one of whose words was later executed.
    pub code_stores: u64,
    /// Executed cache maintenance instructions (`dc` cleans and `ic`).
    pub maintenance_ops: u64,
    /// vCPUs (guest threads) started.
    pub vcpus: u64,
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "icache-check: {} violations, {} code stores, {} maintenance ops, {} vCPUs",
            self.violations, self.code_stores, self.maintenance_ops, self.vcpus
        )
    }
}

/// Shadow state of one 4-byte word. Times are event sequence numbers; 0 means
/// "never".
#[derive(Clone, Copy, Default)]
struct Word {
    /// When the guest last stored to the word.
    stored: u64,
    /// PC of that store.
    store_pc: u64,
    /// When a clean covering that store completed.
    cleaned: u64,
    /// When an invalidation covering the cleaned data completed.
    invalidated: u64,
    /// vCPU of the store.
    store_vcpu: u32,
    /// An `ic` on this word's line completed before the clean did.
    early_ic: bool,
}

type Page = Box<[Word; WORDS_PER_PAGE]>;

/// A cheap hasher for page numbers (Fibonacci hashing); the default SipHash
/// costs more than the rest of a store callback.
#[derive(Default)]
struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type PageMap = HashMap<u64, Page, BuildHasherDefault<PageHasher>>;

#[derive(Default)]
struct Vcpu {
    /// Lines cleaned by this vCPU and not yet completed: (line address, issue time).
    pending_cleans: Vec<(u64, u64)>,
    /// Lines invalidated by this vCPU and not yet completed.
    pending_invals: Vec<(u64, u64)>,
    /// Issue time of a pending `ic iallu`.
    pending_iallu: Option<u64>,
    /// Issue time of a pending `ic ialluis`.
    pending_ialluis: Option<u64>,
    /// With IDC: pages this vCPU stored to since its last completing `dsb`.
    dirty_pages: HashSet<u64>,
    /// Time of the last context synchronization event.
    last_sync: u64,
    /// Issue time of the latest completed `ic iallu` and when it completed.
    iallu_done: (u64, u64),
    /// Issue time of the latest `ic iallu` that was followed by a context
    /// synchronization event.
    iallu_synced: u64,
    /// `membarrier(SYNC_CORE)` in progress: its issue time.
    membarrier_issued: Option<u64>,
    /// Arguments of the system call in progress (for the `mmap` family).
    syscall_args: [u64; 3],
}

/// The coherence model. Not thread-safe by itself; the plugin serializes
/// events with a lock, and that order is the model's global order.
pub struct Model {
    cfg: Config,
    now: u64,
    pages: PageMap,
    vcpus: Vec<Vcpu>,
    counted_stores: HashSet<u64>,
    counts: Counts,
}

impl Model {
    /// A model with nothing stored and no vCPUs.
    pub fn new(cfg: Config) -> Model {
        Model {
            cfg,
            now: 0,
            pages: PageMap::default(),
            vcpus: Vec::new(),
            counted_stores: HashSet::new(),
            counts: Counts::default(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> Config {
        self.cfg
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    fn tick(&mut self) -> u64 {
        self.now += 1;
        self.now
    }

    fn vcpu(&mut self, v: u32) -> &mut Vcpu {
        let i = v as usize;
        if i >= self.vcpus.len() {
            self.vcpus.resize_with(i + 1, Vcpu::default);
        }
        &mut self.vcpus[i]
    }

    /// A vCPU (guest thread) starts. It starts context-synchronized. QEMU
    /// reuses the index of a finished thread, so the state is reset.
    pub fn vcpu_start(&mut self, v: u32) {
        let now = self.tick();
        *self.vcpu(v) = Vcpu {
            last_sync: now,
            ..Vcpu::default()
        };
        self.counts.vcpus += 1;
    }

    /// Whether the guest has stored to the page holding `addr` (and the model
    /// still tracks it). The plugin decides at translation time, with this,
    /// which instructions to watch.
    pub fn page_is_stored(&self, addr: u64) -> bool {
        self.pages.contains_key(&(addr / PAGE_SIZE))
    }

    /// vCPU `v` stored `size` bytes at `addr` with the instruction at `pc`.
    pub fn store(&mut self, v: u32, addr: u64, size: u64, pc: u64) {
        let now = self.tick();
        let first = addr & !3;
        let last = addr.wrapping_add(size.max(1) - 1) & !3;
        let mut word_addr = first;
        loop {
            let page = self
                .pages
                .entry(word_addr / PAGE_SIZE)
                .or_insert_with(|| Box::new([Word::default(); WORDS_PER_PAGE]));
            let w = &mut page[((word_addr % PAGE_SIZE) / 4) as usize];
            *w = Word {
                stored: now,
                store_pc: pc,
                store_vcpu: v,
                ..Word::default()
            };
            if word_addr == last {
                break;
            }
            word_addr = word_addr.wrapping_add(4);
        }
        if self.cfg.idc {
            let (p0, p1) = (first / PAGE_SIZE, last / PAGE_SIZE);
            let dirty = &mut self.vcpu(v).dirty_pages;
            dirty.insert(p0);
            dirty.insert(p1);
        }
    }

    /// vCPU `v` executed `insn` (at `pc`); `operand` is the value of its
    /// address register, for the instructions that have one.
    pub fn maintenance(&mut self, v: u32, insn: Insn, operand: u64) {
        let now = self.tick();
        match insn {
            Insn::DcClean { .. } => {
                self.counts.maintenance_ops += 1;
                let line = operand & !(self.cfg.dline - 1);
                self.vcpu(v).pending_cleans.push((line, now));
            }
            Insn::IcIvau { .. } => {
                self.counts.maintenance_ops += 1;
                let line = operand & !(self.cfg.iline - 1);
                self.vcpu(v).pending_invals.push((line, now));
            }
            Insn::IcIallu => {
                self.counts.maintenance_ops += 1;
                self.vcpu(v).pending_iallu = Some(now);
            }
            Insn::IcIalluis => {
                self.counts.maintenance_ops += 1;
                self.vcpu(v).pending_ialluis = Some(now);
            }
            Insn::Dsb(opt) => self.dsb(v, opt, now),
            Insn::Isb => self.sync(v, now),
            Insn::Svc | Insn::Other => {}
        }
    }

    fn words_in(&mut self, line: u64, len: u64) -> impl Iterator<Item = &mut Word> {
        // Lines are at most 2 KiB (CTR_EL0 fields are 4 bits: 4 << 9), so a line
        // never spans two 4 KiB shadow pages.
        let page = self.pages.get_mut(&(line / PAGE_SIZE));
        let start = ((line % PAGE_SIZE) / 4) as usize;
        let n = (len / 4) as usize;
        page.into_iter()
            .flat_map(move |p| p[start..(start + n).min(WORDS_PER_PAGE)].iter_mut())
    }

    fn dsb(&mut self, v: u32, opt: DsbOption, now: u64) {
        if !opt.completes_maintenance() {
            return;
        }
        let (dline, iline, dic) = (self.cfg.dline, self.cfg.iline, self.cfg.dic);
        let vc = self.vcpu(v);
        let cleans = std::mem::take(&mut vc.pending_cleans);
        let invals = std::mem::take(&mut vc.pending_invals);
        let dirty = std::mem::take(&mut vc.dirty_pages);
        let iallu = vc.pending_iallu.take();
        let ialluis = vc.pending_ialluis.take();

        let clean = |w: &mut Word, issued: u64| {
            if w.stored != 0 && w.stored < issued && w.cleaned == 0 {
                w.cleaned = now;
                if dic {
                    w.invalidated = now;
                }
            }
        };
        for &(line, issued) in &cleans {
            for w in self.words_in(line, dline) {
                clean(w, issued);
            }
        }
        for page in dirty {
            if let Some(p) = self.pages.get_mut(&page) {
                for w in p.iter_mut().filter(|w| w.store_vcpu == v) {
                    clean(w, now);
                }
            }
        }
        if !dic {
            for &(line, issued) in &invals {
                for w in self.words_in(line, iline) {
                    invalidate(w, issued, now);
                }
            }
            if let Some(issued) = ialluis {
                for p in self.pages.values_mut() {
                    for w in p.iter_mut() {
                        invalidate(w, issued, now);
                    }
                }
            }
            if let Some(issued) = iallu {
                self.vcpu(v).iallu_done = (issued, now);
            }
        }
    }

    fn sync(&mut self, v: u32, at: u64) {
        let vc = self.vcpu(v);
        vc.last_sync = vc.last_sync.max(at);
        if vc.iallu_done.1 != 0 && vc.iallu_done.1 < at {
            vc.iallu_synced = vc.iallu_synced.max(vc.iallu_done.0);
        }
    }

    /// vCPU `v` enters system call `num` with its first three arguments.
    pub fn syscall(&mut self, v: u32, num: i64, args: [u64; 3]) {
        let now = self.tick();
        let vc = self.vcpu(v);
        vc.syscall_args = args;
        vc.membarrier_issued = (num == sysno::MEMBARRIER
            && args[0] == sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
            .then_some(now);
    }

    /// vCPU `v` returns from system call `num` with result `ret`. The return
    /// is a context synchronization event for `v`.
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        let now = self.tick();
        let vc = self.vcpu(v);
        let args = vc.syscall_args;
        let membarrier = vc.membarrier_issued.take();
        // Linux returns -errno in [-4095, -1] (include/linux/err.h, MAX_ERRNO).
        let ok = !(-4095..0).contains(&ret);
        if let (Some(issued), true) = (membarrier, ret == 0) {
            for i in 0..self.vcpus.len() {
                self.sync(i as u32, issued);
            }
        }
        if ok {
            match num {
                sysno::MUNMAP => self.forget(args[0], args[1]),
                sysno::MMAP => self.forget(ret as u64, args[1]),
                sysno::MREMAP => {
                    self.forget(args[0], args[1]);
                    self.forget(ret as u64, args[2]);
                }
                _ => {}
            }
        }
        self.sync(v, now);
    }

    /// Forgets the guest's stores to the pages in `[addr, addr + len)`. The
    /// kernel rounds the length of `mmap`, `munmap` and `mremap` up to whole
    /// pages (mm/mmap.c), so a partial last page goes too.
    fn forget(&mut self, addr: u64, len: u64) {
        let first = addr / PAGE_SIZE;
        let end = addr.saturating_add(len).div_ceil(PAGE_SIZE);
        if end.saturating_sub(first) > self.pages.len() as u64 {
            self.pages.retain(|&p, _| p < first || p >= end);
        } else {
            for p in first..end {
                self.pages.remove(&p);
            }
        }
    }

    /// vCPU `v` executes the instruction at `pc`. Returns the violation, if
    /// its bytes could be stale for `v`.
    pub fn execute(&mut self, v: u32, pc: u64) -> Option<Violation> {
        let _ = self.tick();
        let w = *self
            .pages
            .get(&(pc / PAGE_SIZE))?
            .get(((pc % PAGE_SIZE) / 4) as usize)?;
        if w.stored == 0 {
            return None;
        }
        if self.counted_stores.insert(w.stored) {
            self.counts.code_stores += 1;
        }
        let vc = self.vcpu(v);
        let by_iallu = w.cleaned != 0 && w.cleaned < vc.iallu_done.0;
        let synced_by_iallu = w.cleaned != 0 && w.cleaned < vc.iallu_synced;
        let missing = if w.cleaned == 0 {
            Missing::NotCleaned
        } else if w.invalidated == 0 && !by_iallu {
            Missing::NotInvalidated
        } else if synced_by_iallu || (w.invalidated != 0 && w.invalidated < vc.last_sync) {
            return None;
        } else {
            Missing::NoContextSync
        };
        let hint = self.hint(&w, missing, pc);
        self.counts.violations += 1;
        Some(Violation {
            vcpu: v,
            pc,
            missing,
            store_pc: w.store_pc,
            store_vcpu: w.store_vcpu,
            hint,
        })
    }

    fn hint(&self, w: &Word, missing: Missing, pc: u64) -> Option<&'static str> {
        let dline = pc & !(self.cfg.dline - 1);
        let iline = pc & !(self.cfg.iline - 1);
        let pending = |f: fn(&Vcpu) -> &Vec<(u64, u64)>, line: u64| {
            self.vcpus
                .iter()
                .any(|vc| f(vc).iter().any(|&(l, t)| l == line && t > w.stored))
        };
        match missing {
            Missing::NotCleaned if pending(|vc| &vc.pending_cleans, dline) => {
                Some("a dc clean of this line was issued but no dsb completed it")
            }
            Missing::NotCleaned => Some("no dc clean covered this line after the store"),
            Missing::NotInvalidated if w.early_ic => {
                Some("an ic ivau ran before the clean completed (missing dsb between dc and ic?)")
            }
            Missing::NotInvalidated if pending(|vc| &vc.pending_invals, iline) => {
                Some("an ic ivau of this line was issued but no dsb completed it")
            }
            Missing::NotInvalidated => Some("no ic ivau covered this line after the clean"),
            Missing::NoContextSync => {
                Some("needs an isb here, or membarrier SYNC_CORE from the writer")
            }
        }
    }
}

fn invalidate(w: &mut Word, issued: u64, now: u64) {
    if w.stored == 0 || w.stored > issued || w.invalidated != 0 {
        return;
    }
    if w.cleaned != 0 && w.cleaned < issued {
        w.invalidated = now;
    } else {
        w.early_ic = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{DcOp, DsbOption};

    const CODE: u64 = 0x10_0000;
    const STORE_PC: u64 = 0x4000;
    const LINE: u64 = 64;
    const A72: Config = Config {
        dline: LINE,
        iline: LINE,
        idc: false,
        dic: false,
    };

    /// One scripted event; `V` is the vCPU.
    #[derive(Clone, Copy)]
    enum E {
        Start(u32),
        Store(u32, u64),
        Dc(u32, u64),
        Ic(u32, u64),
        IcAllu(u32),
        IcAlluIs(u32),
        Dsb(u32),
        DsbOpt(u32, u8),
        Isb(u32),
        Syscall(u32, i64, [u64; 3], i64),
        Exec(u32, u64),
    }
    use E::*;

    fn run(cfg: Config, script: &[E]) -> Vec<Violation> {
        let mut m = Model::new(cfg);
        let mut out = Vec::new();
        for &e in script {
            match e {
                Start(v) => m.vcpu_start(v),
                Store(v, a) => m.store(v, a, 4, STORE_PC),
                Dc(v, a) => m.maintenance(
                    v,
                    Insn::DcClean {
                        op: DcOp::Cvau,
                        rt: 0,
                    },
                    a,
                ),
                Ic(v, a) => m.maintenance(v, Insn::IcIvau { rt: 0 }, a),
                IcAllu(v) => m.maintenance(v, Insn::IcIallu, 0),
                IcAlluIs(v) => m.maintenance(v, Insn::IcIalluis, 0),
                Dsb(v) => m.maintenance(v, Insn::Dsb(DsbOption(0b1011)), 0),
                DsbOpt(v, crm) => m.maintenance(v, Insn::Dsb(DsbOption(crm)), 0),
                Isb(v) => m.maintenance(v, Insn::Isb, 0),
                Syscall(v, num, args, ret) => {
                    m.syscall(v, num, args);
                    m.syscall_return(v, num, ret);
                }
                Exec(v, pc) => out.extend(m.execute(v, pc)),
            }
        }
        assert_eq!(m.counts().violations, out.len() as u64);
        out
    }

    /// The full sequence on one line, for vCPU `v`, with `skip` left out.
    fn sequence(v: u32, addr: u64, skip: &str) -> Vec<E> {
        let steps = [
            ("clean", Dc(v, addr)),
            ("dsb1", Dsb(v)),
            ("ic", Ic(v, addr)),
            ("dsb2", Dsb(v)),
            ("isb", Isb(v)),
        ];
        steps
            .into_iter()
            .filter(|(name, _)| *name != skip)
            .map(|(_, e)| e)
            .collect()
    }

    fn script(skip: &str) -> Vec<E> {
        let mut s = vec![Start(0), Store(0, CODE)];
        s.extend(sequence(0, CODE, skip));
        s.push(Exec(0, CODE));
        s
    }

    fn only(v: &[Violation]) -> (Missing, u64) {
        assert_eq!(v.len(), 1, "expected exactly one violation: {v:?}");
        (v[0].missing, v[0].pc)
    }

    #[test]
    fn correct_sequence_reports_nothing() {
        assert_eq!(run(A72, &script("")), vec![]);
    }

    #[test]
    fn missing_clean_is_reported() {
        assert_eq!(
            only(&run(A72, &script("clean"))),
            (Missing::NotCleaned, CODE)
        );
    }

    #[test]
    fn missing_first_dsb_is_reported_as_not_invalidated() {
        let v = run(A72, &script("dsb1"));
        assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
        assert!(v[0].hint.unwrap().contains("before the clean completed"));
    }

    #[test]
    fn missing_invalidate_is_reported() {
        assert_eq!(
            only(&run(A72, &script("ic"))),
            (Missing::NotInvalidated, CODE)
        );
    }

    #[test]
    fn missing_second_dsb_is_reported() {
        let v = run(A72, &script("dsb2"));
        assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
        assert!(v[0].hint.unwrap().contains("no dsb completed it"));
    }

    #[test]
    fn missing_isb_is_reported() {
        assert_eq!(
            only(&run(A72, &script("isb"))),
            (Missing::NoContextSync, CODE)
        );
    }

    #[test]
    fn violation_names_the_store_and_both_vcpus() {
        let v = run(A72, &[Start(0), Start(1), Store(1, CODE), Exec(0, CODE)]);
        assert_eq!(v[0].vcpu, 0);
        assert_eq!(v[0].store_vcpu, 1);
        assert_eq!(v[0].store_pc, STORE_PC);
        let text = v[0].to_string();
        assert!(
            text.contains("vCPU 0 executed 0x100000: not cleaned"),
            "{text}"
        );
        assert!(text.contains("stored by pc 0x4000 on vCPU 1"), "{text}");
    }

    #[test]
    fn every_stale_execution_counts() {
        let v = run(
            A72,
            &[Start(0), Store(0, CODE), Exec(0, CODE), Exec(0, CODE)],
        );
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn code_never_stored_is_coherent() {
        assert_eq!(
            run(A72, &[Start(0), Store(0, CODE), Exec(0, CODE + 4)]),
            vec![]
        );
        assert_eq!(run(A72, &[Start(0), Exec(0, 0x40_0000)]), vec![]);
    }

    #[test]
    fn unchanged_instruction_next_to_a_rewritten_one_is_not_reported() {
        let mut s = vec![Start(0), Store(0, CODE), Store(0, CODE + 4)];
        s.extend(sequence(0, CODE, ""));
        // Rewrite only the first word and skip the whole sequence.
        s.extend([Store(0, CODE), Exec(0, CODE), Exec(0, CODE + 4)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
    }

    #[test]
    fn store_after_the_clean_needs_a_new_clean() {
        let mut s = vec![Start(0), Dc(0, CODE), Store(0, CODE)];
        s.extend([Dsb(0), Ic(0, CODE), Dsb(0), Isb(0), Exec(0, CODE)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
    }

    #[test]
    fn clean_is_per_line() {
        let mut s = vec![Start(0), Store(0, CODE + LINE)];
        s.extend(sequence(0, CODE, ""));
        s.push(Exec(0, CODE + LINE));
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE + LINE));
    }

    #[test]
    fn unaligned_range_that_misses_the_last_line_is_reported() {
        // Code straddles a line boundary; the flush loop starts at the
        // unaligned address and steps one line, so it never reaches line 2.
        let start = CODE + LINE - 4;
        let mut s = vec![Start(0), Store(0, start), Store(0, start + 4)];
        s.extend([Dc(0, start), Dsb(0), Ic(0, start), Dsb(0), Isb(0)]);
        s.extend([Exec(0, start), Exec(0, start + 4)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, start + 4));
        // Aligning the start down and covering both lines is correct.
        let mut s = vec![Start(0), Store(0, start), Store(0, start + 4)];
        s.extend([Dc(0, CODE), Dc(0, CODE + LINE), Dsb(0)]);
        s.extend([Ic(0, CODE), Ic(0, CODE + LINE), Dsb(0), Isb(0)]);
        s.extend([Exec(0, start), Exec(0, start + 4)]);
        assert_eq!(run(A72, &s), vec![]);
    }

    #[test]
    fn other_thread_without_pipeline_flush_is_reported() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE)];
        s.extend(sequence(0, CODE, ""));
        s.extend([Exec(0, CODE), Exec(1, CODE)]);
        let v = run(A72, &s);
        assert_eq!(only(&v), (Missing::NoContextSync, CODE));
        assert_eq!(v[0].vcpu, 1);
    }

    const SYNC_CORE: [u64; 3] = [sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0];

    #[test]
    fn membarrier_sync_core_synchronizes_every_vcpu() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE)];
        s.extend(sequence(0, CODE, ""));
        s.extend([Syscall(0, sysno::MEMBARRIER, SYNC_CORE, 0), Exec(1, CODE)]);
        assert_eq!(run(A72, &s), vec![]);
    }

    #[test]
    fn failed_membarrier_does_not_synchronize() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE)];
        s.extend(sequence(0, CODE, ""));
        s.extend([Syscall(0, sysno::MEMBARRIER, SYNC_CORE, -1), Exec(1, CODE)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
    }

    #[test]
    fn membarrier_before_the_invalidation_completed_does_not_count() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
        s.extend([
            Ic(0, CODE),
            Syscall(0, sysno::MEMBARRIER, SYNC_CORE, 0),
            Dsb(0),
        ]);
        s.push(Exec(1, CODE));
        assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
    }

    #[test]
    fn other_membarrier_commands_do_not_synchronize() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE)];
        s.extend(sequence(0, CODE, ""));
        s.extend([Syscall(0, sysno::MEMBARRIER, [8, 0, 0], 0), Exec(1, CODE)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
    }

    #[test]
    fn syscall_return_synchronizes_only_the_caller() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE)];
        s.extend(sequence(0, CODE, "isb"));
        s.extend([Syscall(0, 64, [1, 0, 0], 1), Exec(0, CODE), Exec(1, CODE)]);
        let v = run(A72, &s);
        assert_eq!(only(&v), (Missing::NoContextSync, CODE));
        assert_eq!(v[0].vcpu, 1);
    }

    #[test]
    fn new_thread_starts_synchronized() {
        let mut s = vec![Start(0), Store(0, CODE)];
        s.extend(sequence(0, CODE, "isb"));
        s.extend([Start(1), Exec(1, CODE)]);
        assert_eq!(run(A72, &s), vec![]);
    }

    #[test]
    fn clean_by_another_vcpu_completes_at_that_vcpus_dsb() {
        // vCPU 1 cleans, but only vCPU 0 runs a dsb: the clean is not complete.
        let s = [
            Start(0),
            Start(1),
            Store(0, CODE),
            Dc(1, CODE),
            Dsb(0),
            Ic(0, CODE),
            Dsb(0),
            Isb(0),
            Exec(0, CODE),
        ];
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
    }

    #[test]
    fn store_by_another_vcpu_before_the_clean_is_covered() {
        let mut s = vec![Start(0), Start(1), Store(1, CODE)];
        s.extend(sequence(0, CODE, ""));
        s.push(Exec(0, CODE));
        assert_eq!(run(A72, &s), vec![]);
    }

    #[test]
    fn dsb_ishst_and_nsh_do_not_complete_maintenance() {
        for crm in [0b1010, 0b0111] {
            let s = [
                Start(0),
                Store(0, CODE),
                Dc(0, CODE),
                DsbOpt(0, crm),
                Ic(0, CODE),
                Dsb(0),
                Isb(0),
                Exec(0, CODE),
            ];
            assert_eq!(
                only(&run(A72, &s)),
                (Missing::NotInvalidated, CODE),
                "{crm:#b}"
            );
        }
    }

    #[test]
    fn dsb_sy_completes_maintenance() {
        let s = [
            Start(0),
            Store(0, CODE),
            Dc(0, CODE),
            DsbOpt(0, 0b1111),
            Ic(0, CODE),
            DsbOpt(0, 0b1111),
            Isb(0),
            Exec(0, CODE),
        ];
        assert_eq!(run(A72, &s), vec![]);
    }

    const IDC: Config = Config { idc: true, ..A72 };
    const DIC: Config = Config { dic: true, ..A72 };

    #[test]
    fn with_idc_the_clean_is_not_needed() {
        assert_eq!(run(IDC, &script("clean")), vec![]);
    }

    #[test]
    fn with_idc_a_missing_dsb_is_still_reported() {
        let s = [
            Start(0),
            Store(0, CODE),
            Ic(0, CODE),
            Dsb(0),
            Isb(0),
            Exec(0, CODE),
        ];
        assert_eq!(only(&run(IDC, &s)), (Missing::NotInvalidated, CODE));
    }

    #[test]
    fn with_dic_the_invalidate_is_not_needed() {
        let s = [
            Start(0),
            Store(0, CODE),
            Dc(0, CODE),
            Dsb(0),
            Isb(0),
            Exec(0, CODE),
        ];
        assert_eq!(run(DIC, &s), vec![]);
    }

    #[test]
    fn with_dic_a_missing_isb_is_still_reported() {
        let s = [Start(0), Store(0, CODE), Dc(0, CODE), Dsb(0), Exec(0, CODE)];
        assert_eq!(only(&run(DIC, &s)), (Missing::NoContextSync, CODE));
    }

    #[test]
    fn with_dic_a_missing_clean_is_still_reported() {
        let s = [Start(0), Store(0, CODE), Dsb(0), Isb(0), Exec(0, CODE)];
        assert_eq!(only(&run(DIC, &s)), (Missing::NotCleaned, CODE));
    }

    #[test]
    fn ic_iallu_invalidates_only_the_issuing_vcpu() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
        s.extend([IcAllu(0), Dsb(0), Isb(0), Exec(0, CODE), Exec(1, CODE)]);
        let v = run(A72, &s);
        assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
        assert_eq!(v[0].vcpu, 1);
    }

    #[test]
    fn ic_iallu_still_needs_an_isb() {
        let s = [
            Start(0),
            Store(0, CODE),
            Dc(0, CODE),
            Dsb(0),
            IcAllu(0),
            Dsb(0),
            Exec(0, CODE),
        ];
        assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
    }

    #[test]
    fn ic_ialluis_invalidates_every_vcpu() {
        let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
        s.extend([
            IcAlluIs(0),
            Dsb(0),
            Isb(0),
            Isb(1),
            Exec(0, CODE),
            Exec(1, CODE),
        ]);
        assert_eq!(run(A72, &s), vec![]);
    }

    #[test]
    fn munmap_and_mmap_forget_the_stores() {
        let gone = [CODE, PAGE_SIZE, 0];
        let s = [
            Start(0),
            Store(0, CODE),
            Syscall(0, sysno::MUNMAP, gone, 0),
            Exec(0, CODE),
        ];
        assert_eq!(run(A72, &s), vec![]);
        let fresh = [0, PAGE_SIZE, 7];
        let s = [
            Start(0),
            Store(0, CODE),
            Syscall(0, sysno::MMAP, fresh, CODE as i64),
            Exec(0, CODE),
        ];
        assert_eq!(run(A72, &s), vec![]);
        // A length that is not a multiple of the page size covers the last page.
        let short = [CODE, 100, 0];
        let s = [
            Start(0),
            Store(0, CODE + 200),
            Syscall(0, sysno::MUNMAP, short, 0),
            Exec(0, CODE + 200),
        ];
        assert_eq!(run(A72, &s), vec![]);
        // A failed munmap forgets nothing.
        let s = [
            Start(0),
            Store(0, CODE),
            Syscall(0, sysno::MUNMAP, gone, -22),
            Exec(0, CODE),
        ];
        assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
    }

    #[test]
    fn page_is_stored_tracks_stores_and_unmaps() {
        let mut m = Model::new(A72);
        m.vcpu_start(0);
        assert!(!m.page_is_stored(CODE));
        m.store(0, CODE + 8, 8, STORE_PC);
        assert!(m.page_is_stored(CODE));
        m.syscall(0, sysno::MUNMAP, [CODE, PAGE_SIZE, 0]);
        m.syscall_return(0, sysno::MUNMAP, 0);
        assert!(!m.page_is_stored(CODE));
    }

    #[test]
    fn wide_store_marks_every_word_it_covers() {
        let mut m = Model::new(A72);
        m.vcpu_start(0);
        m.store(0, CODE + 2, 8, STORE_PC); // bytes 2..10 -> words 0, 4, 8
        for off in [0, 4, 8] {
            assert_eq!(
                m.execute(0, CODE + off).map(|v| v.missing),
                Some(Missing::NotCleaned)
            );
        }
        assert_eq!(m.execute(0, CODE + 12), None);
    }

    #[test]
    fn store_across_a_page_boundary_marks_both_pages() {
        let mut m = Model::new(A72);
        m.vcpu_start(0);
        m.store(0, CODE + PAGE_SIZE - 4, 8, STORE_PC);
        assert!(m.page_is_stored(CODE) && m.page_is_stored(CODE + PAGE_SIZE));
    }

    #[test]
    fn summary_counts_code_stores_maintenance_and_vcpus() {
        let mut m = Model::new(A72);
        m.vcpu_start(0);
        m.vcpu_start(1);
        m.store(0, CODE, 8, STORE_PC); // one store, two instructions
        m.store(0, CODE + 0x800, 4, STORE_PC); // never executed
        for e in sequence(0, CODE, "") {
            if let Dc(v, a) = e {
                m.maintenance(
                    v,
                    Insn::DcClean {
                        op: DcOp::Civac,
                        rt: 3,
                    },
                    a,
                );
            } else if let Ic(v, a) = e {
                m.maintenance(v, Insn::IcIvau { rt: 3 }, a);
            } else if let Dsb(v) = e {
                m.maintenance(v, Insn::Dsb(DsbOption(0b1011)), 0);
            } else if let Isb(v) = e {
                m.maintenance(v, Insn::Isb, 0);
            }
        }
        assert_eq!(m.execute(0, CODE), None);
        assert_eq!(m.execute(0, CODE + 4), None);
        let want = "icache-check: 0 violations, 1 code stores, 2 maintenance ops, 2 vCPUs";
        assert_eq!(m.counts().to_string(), want);
    }

    #[test]
    fn ctr_el0_values_decode_to_line_sizes_and_flags() {
        let table = [
            (0x8444_c004, 64, 64, false, false), // cortex-a72 under QEMU 7.2
            (0x8444_8004, 64, 64, false, false), // cortex-a53
            (0x8666_8006, 256, 256, false, false), // a64fx
            (0x8003_8003, 32, 32, false, false), // max
            (0xb444_c004, 64, 64, true, true),   // neoverse-n1 silicon
            (0x9444_8004, 64, 64, true, false),  // cortex-a55 silicon
        ];
        for (ctr, dline, iline, idc, dic) in table {
            let want = Config {
                dline,
                iline,
                idc,
                dic,
            };
            assert_eq!(Config::from_ctr_el0(ctr), want, "{ctr:#x}");
        }
    }
}
