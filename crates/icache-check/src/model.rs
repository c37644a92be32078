//! The architectural model of AArch64 instruction-cache coherence, as pure Rust.
//!
//! The model is fed a stream of events (stores, executed maintenance and
//! barrier instructions, system calls, thread starts) and
//! answers, for each instruction execution it is asked about, whether a real
//! core could have fetched stale bytes. It knows nothing about QEMU; the glue in
//! `plugin.rs` turns QEMU callbacks into calls on [`Model`].
//!
//! Stores are recorded concurrently and without a lock in the [`Shadow`],
//! each with a unique identity. All other events are serialized by the
//! caller. A `dc` or `ic` takes a snapshot of the store identities in its line
//! when it is issued, and its effect applies at completion only to words that
//! still hold the same identity. That is "the line's data as it stood when the
//! instruction was issued", whatever the stores of other threads do meanwhile.
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
//! 7. Ordering through a `dmb` (catalogue `aarch64-ifetch`:
//!    MP.RF+dc.cvau-dmb.ish+dsb.ish-ic.ivau-dsb.ish-isb and
//!    MP.RF+dc-dmb+addr-ic-dsb-isb Forbidden; with IDC,
//!    IDC1.MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb Forbidden; with IDC and
//!    DIC, DIC1.MP.RF+dmb.st+ctrlisb Forbidden). A `dc` by V followed by a
//!    full `dmb` (`ish`, `osh`, `sy`) of V is ordered before V's later
//!    stores. Another vCPU W that runs a completing `dsb` or an `ic` after
//!    one of those stores may have read it, and then the clean completes at
//!    W's next `dsb` and counts as a clean for W's `ic`s meanwhile. With IDC,
//!    V's stores before a `dmb` that orders stores (`ishst` too) count as
//!    cleaned at such a `dsb` or `ic` of W; with IDC and DIC also at W's
//!    `isb`. The checker does not see which loads read which stores, so it
//!    takes "ran after one of those stores" for "read it": a W that ran its
//!    maintenance at that moment without reading the flag is not reported.
//! 8. A return from a system call that real arm64 Linux serves from the vDSO
//!    (`clock_gettime`, `clock_getres`, `gettimeofday`) is not a context
//!    synchronization event, although QEMU 7.2 makes it a real system call.
//! 9. Fetches are ordered in program order after a fetch that read a store
//!    (catalogue: MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish Forbidden, herd's
//!    jit_example). When vCPU W executes the data of store S by V, every
//!    invalidation completed by V's last completing `dsb` before S counts as
//!    context-synchronized for W from then on. "Completed by" is taken as
//!    "completed no later than, in the emulator's order", which also covers
//!    invalidations another vCPU completed before that `dsb`.
//! 10. Patch sites (Arm ARM B2.2.5): when another vCPU's store replaced an
//!     instruction of the list `B`, `BL`, `NOP`, `BRK`, `SVC`, `HVC`, `SMC`,
//!     `ISB` by another of the list, an execution that is not yet coherent may
//!     run the old or the new one. It is reported as an allowed patch-site
//!     race ([`Class::PatchSite`]), not a violation. The old instruction is
//!     the one last executed from that word while it was coherent; a word
//!     never executed before has no known old instruction and gets no
//!     exemption.
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

mod ordering;
mod views;
mod violation;

use std::collections::HashSet;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

pub use crate::config::Config;
use crate::decode::{is_concurrently_modifiable, DsbOption, Insn};
pub use crate::shadow::PAGE_SIZE;
use crate::shadow::{id_count, id_vcpu, MaintWord, Shadow, WORDS};
pub use crate::summary::{Class, ClassCounts, Counts};
pub use violation::{Missing, Violation};

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
    /// `gettimeofday(tv, tz)`.
    pub const GETTIMEOFDAY: i64 = 169;
    /// `clock_gettime(clock, ts)`.
    pub const CLOCK_GETTIME: i64 = 113;
    /// `clock_getres(clock, res)`.
    pub const CLOCK_GETRES: i64 = 114;
    /// The calls arm64 Linux serves from the vDSO without entering the kernel
    /// (`arch/arm64/kernel/vdso/vdso.lds.S`: `__kernel_clock_gettime`,
    /// `__kernel_gettimeofday`, `__kernel_clock_getres`). QEMU 7.2 has no
    /// vDSO, so they are real system calls under emulation, but on hardware
    /// they return without an exception and synchronize nothing.
    pub const VDSO: [i64; 3] = [CLOCK_GETTIME, CLOCK_GETRES, GETTIMEOFDAY];
}

/// A word as a `dc`/`ic` saw it when issued: its address and store identity.
type Snapshot = Vec<(u64, u64)>;

#[derive(Default)]
struct Vcpu {
    /// Cleans issued by this vCPU and not yet completed: the words of the line
    /// as they stood at issue.
    pending_cleans: Vec<Snapshot>,
    /// Invalidations issued and not yet completed: the words of the line at
    /// issue, each with whether its data was already cleaned then.
    pending_invals: Vec<Vec<(u64, u64, bool)>>,
    /// For each of `pending_invals`: the guest page the `ic` went through,
    /// when it counts only for fetches through that page
    /// ([`Model::maintenance_via`]).
    pending_inval_via: Vec<Option<u64>>,
    /// Issue time of a pending `ic iallu`.
    pending_iallu: Option<u64>,
    /// Issue time of a pending `ic ialluis`.
    pending_ialluis: Option<u64>,
    /// With IDC: (store count, time) at each of this vCPU's completing `dsb`s.
    idc_marks: Vec<(u64, u64)>,
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
    /// Inside a system call whose return will synchronize it (also true
    /// after `exit`, which never returns).
    in_syncing_syscall: bool,
    /// (store count, time) at this vCPU's completing `dsb`s, one per store
    /// count, for rule 9.
    dsb_marks: Vec<(u64, u64)>,
    /// Invalidations completed at or before this time count as synchronized
    /// for this vCPU (rule 9).
    fetch_sync: u64,
    /// Cleans by other vCPUs that this vCPU observed through a
    /// [`Publication`]: they complete at this vCPU's next `dsb`, and an `ic`
    /// issued before it already counts them as cleans (rule 7).
    observed_cleans: Vec<(u64, u64)>,
}

/// The coherence model. Stores go to the lock-free [`Shadow`] (see
/// [`Model::shadow`]); every other event needs `&mut Model`, so the plugin
/// serializes them with a lock, and that order is the model's global order.
pub struct Model {
    cfg: Config,
    now: u64,
    shadow: Arc<Shadow>,
    vcpus: Vec<Vcpu>,
    counted_stores: HashSet<u64>,
    counts: Counts,
    classes: ClassCounts,
    publications: Vec<ordering::Publication>,
    /// Invalidations that count only for fetches through one guest page.
    via_invals: views::ViewInvals,
}

impl Model {
    /// A model with nothing stored and no vCPUs.
    pub fn new(cfg: Config) -> Model {
        Model {
            cfg,
            now: 0,
            shadow: Arc::new(Shadow::new()),
            vcpus: Vec::new(),
            counted_stores: HashSet::new(),
            publications: Vec::new(),
            counts: Counts::default(),
            classes: ClassCounts::default(),
            via_invals: views::ViewInvals::default(),
        }
    }

    /// Whether the model needs every execution of `insn` (the plugin asks at
    /// translation). A store-release matters only with IDC, and is frequent
    /// in compiled code, so it is watched only then.
    pub fn needs_execution(&self, insn: Insn) -> bool {
        match insn {
            Insn::StoreRelease => self.cfg.idc,
            _ => insn.is_interesting(),
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

    /// The reports so far, per class.
    pub fn class_counts(&self) -> ClassCounts {
        self.classes
    }

    /// The shadow memory, for recording stores without the model's lock.
    pub fn shadow(&self) -> Arc<Shadow> {
        Arc::clone(&self.shadow)
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

    /// Whether the instruction at `pc` is already known to be coherent for
    /// `v` ([`Shadow::known_coherent`]); then [`Model::execute`] would return
    /// `None`. Needs no `&mut`, so the plugin calls it without the lock.
    pub fn known_coherent(&self, v: u32, pc: u64) -> bool {
        self.shadow.known_coherent(v, pc)
    }

    /// Whether the guest has stored to the page holding `addr` (and the model
    /// still tracks it). The plugin decides at translation time, with this,
    /// which instructions to watch.
    pub fn page_is_stored(&self, addr: u64) -> bool {
        self.shadow.page_is_stored(addr)
    }

    /// vCPU `v` stored `size` bytes at `addr` with the instruction at `pc`.
    /// The same as [`Shadow::store`] on [`Model::shadow`].
    pub fn store(&self, v: u32, addr: u64, size: u64, pc: u64) {
        self.shadow.store(v, addr, size, pc);
    }

    /// When the data of store `id` was cleaned (completed), if it was.
    fn clean_time(&self, m: Option<&MaintWord>, id: u64) -> Option<u64> {
        let explicit = m
            .filter(|m| m.cleaned_for.load(Acquire) == id)
            .map(|m| m.cleaned_at.load(Relaxed));
        // With IDC the store is clean once its vCPU completes a dsb. The
        // earlier of that and an explicit clean counts: a later redundant
        // `dc` must not move the clean (found by `reference_tests`).
        let idc = if self.cfg.idc {
            self.vcpus.get(id_vcpu(id) as usize).and_then(|vc| {
                let marks = &vc.idc_marks;
                let i = marks.partition_point(|&(count, _)| count < id_count(id));
                marks.get(i).map(|&(_, at)| at)
            })
        } else {
            None
        };
        match (explicit, idc) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The words of the line of `len` bytes at `line` that the guest stored
    /// to, with their store identities.
    fn snapshot(&self, line: u64, len: u64) -> Snapshot {
        let Some((page, first)) = self.shadow.page(line) else {
            return Vec::new();
        };
        let n = ((len / 4) as usize).min(WORDS - first);
        (first..first + n)
            .filter_map(|w| {
                let id = page.id(w);
                (id != 0).then(|| (line + 4 * (w - first) as u64, id))
            })
            .collect()
    }

    /// vCPU `v` executed `insn`; `operand` is the value of its address
    /// register, for the instructions that have one.
    pub fn maintenance(&mut self, v: u32, insn: Insn, operand: u64) {
        self.maintenance_via(v, insn, operand, None);
    }

    /// [`Model::maintenance`]; with `via`, an `ic ivau` through guest page
    /// `via` of double-mapped memory (`operand` is then physical) that
    /// counts only for fetches through that page ([`Model::execute_via`]).
    pub fn maintenance_via(&mut self, v: u32, insn: Insn, operand: u64, via: Option<u64>) {
        let now = self.tick();
        match insn {
            Insn::DcClean { .. } => {
                self.counts.maintenance_ops += 1;
                let dline = self.cfg.dline;
                let snap = self.snapshot(operand & !(dline - 1), dline);
                self.vcpu(v).pending_cleans.push(snap);
            }
            Insn::IcIvau { .. } => {
                self.counts.maintenance_ops += 1;
                self.observe(v, now);
                let iline = self.cfg.iline;
                let observed = &self.vcpus[v as usize].observed_cleans;
                let snap: Vec<_> = self
                    .snapshot(operand & !(iline - 1), iline)
                    .into_iter()
                    .map(|(a, id)| {
                        let m = self.shadow.page(a).and_then(|(p, w)| Some(&p.maint()?[w]));
                        let clean = self.clean_time(m, id).is_some() || observed.contains(&(a, id));
                        (a, id, clean)
                    })
                    .collect();
                let vc = self.vcpu(v);
                vc.pending_invals.push(snap);
                vc.pending_inval_via.push(via);
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
            Insn::Dmb(opt) => self.dmb(v, opt),
            // With IDC, a store-release orders the earlier stores before its
            // own store as `dmb ishst; str` does (Arm ARM B2.3.7), and issue
            // 11 lists it beside `dmb ishst`. Without IDC it publishes no
            // clean: whether it orders an earlier `dc` is not taken (stricter).
            Insn::StoreRelease if self.cfg.idc => self.dmb(v, DsbOption(0b1010)),
            Insn::Isb => {
                if self.cfg.idc && self.cfg.dic {
                    // Rule 7 with IDC and DIC: an observed store needs only
                    // the observer's context synchronization.
                    self.observe(v, now);
                    let later = self.tick();
                    self.sync(v, later);
                } else {
                    self.sync(v, now);
                }
            }
            Insn::Svc | Insn::StoreRelease | Insn::Other => {}
        }
    }

    fn dsb(&mut self, v: u32, opt: DsbOption, now: u64) {
        if !opt.completes_maintenance() {
            return;
        }
        let dic = self.cfg.dic;
        self.observe(v, now);
        if self.cfg.idc {
            let count = self.shadow.last_count(v);
            let marks = &mut self.vcpu(v).idc_marks;
            // An observer's mark (rule 7) for the same count is earlier.
            if marks.last().is_none_or(|&(last, _)| last < count) {
                marks.push((count, now));
            }
        }
        let count = self.shadow.last_count(v);
        let marks = &mut self.vcpu(v).dsb_marks;
        match marks.last_mut() {
            Some(last) if last.0 == count => last.1 = now,
            _ => marks.push((count, now)),
        }
        // This dsb completes everything `v` published.
        self.publications.retain(|p| p.vcpu != v);
        let vc = self.vcpu(v);
        let observed = std::mem::take(&mut vc.observed_cleans);
        let mut cleans = std::mem::take(&mut vc.pending_cleans);
        cleans.push(observed);
        let invals = std::mem::take(&mut vc.pending_invals);
        let vias = std::mem::take(&mut vc.pending_inval_via);
        let iallu = vc.pending_iallu.take();
        let ialluis = vc.pending_ialluis.take();

        for (addr, id) in cleans.into_iter().flatten() {
            let Some((page, w)) = self.shadow.page(addr) else {
                continue;
            };
            if page.id(w) != id {
                continue; // stored again after the dc: that data is not cleaned
            }
            let m = &page.maint_or_create()[w];
            if m.cleaned_for.load(Relaxed) != id {
                m.cleaned_at.store(now, Relaxed);
                m.cleaned_for.store(id, Release);
            }
        }
        if dic {
            // DIC: data is invalidated as soon as its clean completed, so
            // invalidation state is derived in `inval_time`.
        } else {
            let invals = invals.into_iter().zip(vias);
            let words = invals.flat_map(|(snap, via)| snap.into_iter().map(move |w| (w, via)));
            for ((addr, id, was_clean), via) in words {
                let Some((page, w)) = self.shadow.page(addr) else {
                    continue;
                };
                if page.id(w) != id {
                    continue;
                }
                let m = &page.maint_or_create()[w];
                if !was_clean {
                    m.early_for.store(id, Relaxed);
                } else if let Some(via) = via {
                    self.via_invals.record(addr, id, via, now);
                } else if m.inval_for.load(Relaxed) != id {
                    m.inval_at.store(now, Relaxed);
                    m.inval_for.store(id, Release);
                }
            }
            if let Some(issued) = ialluis {
                let shadow = Arc::clone(&self.shadow);
                shadow.for_each_page(|page| {
                    for w in 0..WORDS {
                        let id = page.id(w);
                        if id == 0 {
                            continue;
                        }
                        let m = page.maint().map(|m| &m[w]);
                        if self.clean_time(m, id).is_some_and(|t| t < issued) {
                            let m = &page.maint_or_create()[w];
                            if m.inval_for.load(Relaxed) != id {
                                m.inval_at.store(now, Relaxed);
                                m.inval_for.store(id, Release);
                            }
                        }
                    }
                });
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
        vc.in_syncing_syscall = !sysno::VDSO.contains(&num);
        vc.membarrier_issued = (num == sysno::MEMBARRIER
            && args[0] == sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
            .then_some(now);
    }

    /// vCPU `v` returns from system call `num` with result `ret`. The return
    /// is a context synchronization event for `v`, except for the calls real
    /// Linux serves from the vDSO ([`sysno::VDSO`]).
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        let now = self.tick();
        let vc = self.vcpu(v);
        vc.in_syncing_syscall = false;
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
                sysno::MUNMAP => self.shadow.forget_pages(args[0], args[1]),
                sysno::MMAP => self.shadow.forget_pages(ret as u64, args[1]),
                sysno::MREMAP => {
                    self.shadow.forget_pages(args[0], args[1]);
                    self.shadow.forget_pages(ret as u64, args[2]);
                }
                _ => {}
            }
        }
        if !sysno::VDSO.contains(&num) {
            self.sync(v, now);
        }
    }

    /// vCPU `v` executes the instruction `word` at `pc`. Returns a report if
    /// its bytes could be stale for `v`: a violation, or an allowed
    /// patch-site race ([`Class::PatchSite`]).
    pub fn execute(&mut self, v: u32, pc: u64, word: u32) -> Option<Violation> {
        self.execute_via(v, pc, None, word)
    }

    /// [`Model::execute`]; with `via`, a fetch through guest page `via` of
    /// double-mapped memory (`pc` is then physical, as in the report), for
    /// which only invalidations through that page count.
    pub fn execute_via(
        &mut self,
        v: u32,
        pc: u64,
        via: Option<u64>,
        word: u32,
    ) -> Option<Violation> {
        let _ = self.tick();
        let shadow = Arc::clone(&self.shadow);
        let (page, w) = shadow.page(pc)?;
        let id = page.id(w);
        if id == 0 {
            return None;
        }
        let store_pc = page.pc(w);
        self.count_code_store(page, w, id);
        self.vcpu(v);
        let m = page.maint().map(|m| &m[w]);
        let early_ic = m.is_some_and(|m| m.early_for.load(Relaxed) == id);
        let via = via.map(|page| (pc & !3, page));
        let Some(missing) = self.missing_via(v, m, id, via) else {
            // Coherent: remember the instruction as the one caches may hold.
            let m = &page.maint_or_create()[w];
            m.set_fetched(word);
            // The lock-free answer is per word, not per view.
            if via.is_none() {
                m.set_coherent(id, v);
            }
            self.order_later_fetches(v, id);
            return None;
        };
        let old = m.map_or(0, |m| m.fetched.load(Relaxed));
        let patch_site = id_vcpu(id) != v
            && old != 0
            && is_concurrently_modifiable(old as u32)
            && is_concurrently_modifiable(word);
        let class = if patch_site {
            // Either instruction may run; if the new one did, rule 9 holds.
            self.order_later_fetches(v, id);
            Class::PatchSite
        } else if missing == Missing::NoContextSync {
            Class::Sync
        } else {
            Class::Maintenance
        };
        self.classes.add(class, 1);
        let hint = if patch_site {
            Some("both the old and the new instruction are on the Arm ARM's list of concurrently modifiable instructions, so either may run")
        } else {
            self.hint(id, pc, missing, early_ic)
        };
        if !patch_site {
            self.counts.violations += 1;
        }
        Some(Violation {
            vcpu: v,
            pc,
            missing,
            store_pc,
            store_vcpu: id_vcpu(id),
            hint,
            class,
        })
    }

    /// Counts store `id` as a code store the first time one of its words runs
    /// (a hash only once per word and store).
    fn count_code_store(&mut self, page: &crate::shadow::Page, w: usize, id: u64) {
        let counted = &page.maint_or_create()[w].counted_for;
        if counted.load(Relaxed) != id {
            counted.store(id, Relaxed);
            if self.counted_stores.insert(id) {
                self.counts.code_stores += 1;
            }
        }
    }

    /// The first missing step for vCPU `v` and the data of store `id`, whose
    /// word has maintenance state `m`; `None` if it is coherent for `v`.
    fn missing(&self, v: u32, m: Option<&MaintWord>, id: u64) -> Option<Missing> {
        self.missing_via(v, m, id, None)
    }

    /// [`Model::missing`] for a fetch of word `via.0` through page `via.1`.
    fn missing_via(
        &self,
        v: u32,
        m: Option<&MaintWord>,
        id: u64,
        via: Option<(u64, u64)>,
    ) -> Option<Missing> {
        let cleaned = self.clean_time(m, id);
        // Invalidations through a view are only in `via_invals`; the word's
        // own record then holds those of every line (`ic ialluis`).
        let through_view = via.and_then(|(addr, page)| self.via_invals.time(addr, id, page));
        let inval = if self.cfg.dic {
            cleaned
        } else {
            let own = m
                .filter(|m| m.inval_for.load(Acquire) == id)
                .map(|m| m.inval_at.load(Relaxed));
            match (own, through_view) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let never_started = Vcpu::default();
        let vc = self.vcpus.get(v as usize).unwrap_or(&never_started);
        match (cleaned, inval) {
            (None, _) => Some(Missing::NotCleaned),
            (Some(c), None) if c >= vc.iallu_done.0 => Some(Missing::NotInvalidated),
            (Some(c), i) => {
                let synced_by_iallu = c < vc.iallu_synced;
                let synced = i.is_some_and(|i| i < vc.last_sync || i <= vc.fetch_sync);
                (!synced_by_iallu && !synced).then_some(Missing::NoContextSync)
            }
        }
    }

    /// Whether the instruction `word` at `pc` is coherent for every vCPU
    /// started so far, and so for every vCPU until the next store to it (a
    /// vCPU started later starts synchronized). A vCPU inside a system call
    /// (or exited in one) counts as coherent: it returns through a context
    /// synchronization event, after the maintenance, before it can run
    /// anything; the vDSO calls of rule 8 are not such calls. The plugin asks this when it
    /// translates a block: such an instruction needs no execution callback,
    /// because QEMU retranslates the page's blocks at the next store to it
    /// (see `plugin.rs`). The word then counts as run: it is recorded as the
    /// old instruction of a patch site and its store as a code store.
    pub fn coherent_for_every_vcpu(&mut self, pc: u64, word: u32) -> bool {
        let shadow = Arc::clone(&self.shadow);
        let Some((page, w)) = shadow.page(pc) else {
            return true;
        };
        let id = page.id(w);
        if id == 0 {
            return true;
        }
        let m = page.maint().map(|m| &m[w]);
        let stale_somewhere = (0..self.vcpus.len())
            .any(|v| !self.vcpus[v].in_syncing_syscall && self.missing(v as u32, m, id).is_some());
        if self.vcpus.is_empty() || stale_somewhere {
            return false;
        }
        self.count_code_store(page, w, id);
        page.maint_or_create()[w].set_fetched(word);
        true
    }
}

#[cfg(test)]
mod tests;
