//! The model of instruction-fetch coherence for 32-bit Arm Linux programs
//! (ARMv7-A with the Multiprocessing Extensions, `armv7-unknown-linux-gnueabihf`),
//! as pure Rust, and the few A32 and T32 encodings it needs.
//!
//! # Rules, with their sources
//!
//! 1. Instruction fetches are not coherent with stores: code written as data
//!    must be cleaned from the data cache to the Point of Unification, the
//!    instruction cache invalidated, and the executing processor must then
//!    perform a context synchronization operation (Arm ARM v7-A, DDI 0406C,
//!    "Ordering of cache and branch predictor maintenance operations"; the
//!    README says which section titles were checked against the manual).
//! 2. User code cannot do that maintenance: the CP15 cache operations are
//!    not accessible at PL0 (DDI 0406C, the CP15 c7 register descriptions:
//!    PL1 and above only; the kernel sends SIGILL). It asks the kernel with the
//!    ARM-private `cacheflush(start, end, flags)`, number
//!    `__ARM_NR_BASE + 2` = `0x0f0002` in `r7` (EABI), arguments in
//!    `r0`..`r2` (arch/arm/include/uapi/asm/unistd.h). `do_cache_op`
//!    (arch/arm/kernel/traps.c) fails with `EINVAL` when `end < start` or
//!    `flags != 0`, and otherwise walks the range a page at a time through
//!    `flush_icache_user_range` = `v7_coherent_user_range`
//!    (arch/arm/mm/cache-v7.S): `dccmvau` on every D-cache line, `dsb ishst`,
//!    `icimvau` on every I-cache line, BTB invalidate, `dsb ishst`, `isb`.
//!    On a v7 SMP kernel those operations by address are broadcast to the
//!    inner shareable domain (DDI 0406C, the Multiprocessing Extensions'
//!    broadcast of maintenance operations), so after the call the caches of every core are coherent
//!    for the range: each stored word inside `[start, end)` is "flushed"
//!    for the data it held at the call. The whole range is covered, with no
//!    page or VMA clamp (current kernels; older ones clamped to the first
//!    VMA, see the README).
//! 3. A context synchronization operation is an `isb`, taking an exception
//!    or returning from one (DDI 0406C, Glossary, "Context synchronization
//!    operation"). So the thread that called `cacheflush` is synchronized by
//!    the call's own return, and needs no `isb`; so is any thread at any
//!    `svc` and at the return of any system call. A thread that makes no
//!    system call needs its own `isb` (or, from the JIT thread,
//!    `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`, rule 4)
//!    after the flush before it runs the code.
//! 4. `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` that returns 0
//!    synchronizes every thread of the process: Arm selects
//!    `ARCH_HAS_MEMBARRIER_SYNC_CORE` (arch/arm/Kconfig, Linux 4.16), whose
//!    IPI makes each core running the process take and return from an
//!    exception, and a thread not running returns to user mode through an
//!    exception return when it next runs.
//! 5. A new thread starts with an exception return (from `clone`), so it is
//!    synchronized at its start.
//! 6. A violation is the execution of an instruction whose own bytes the
//!    guest stored and that is either not flushed (rule 2) for the data it
//!    now holds, or flushed but not followed by a context synchronization
//!    of the executing thread (rule 3). An instruction is 2 or 4 bytes
//!    (Thumb) at any 2-byte boundary, so it may cover two shadow words.
//!
//! Interrupts and signal delivery are exception returns too, but a program
//! cannot rely on them: the model counts only those it sees (`svc`, system
//! call returns, thread starts), so it is stricter than hardware there.
//!
//! # Time
//!
//! Each `cacheflush` that flushes anything opens a new epoch. A flushed word
//! records the store identity it was flushed for and the epoch of the first
//! flush of that store
//! ([`crate::shadow::MaintWord`]'s `inval_for` and `inval_at`, which only
//! the AArch64 model uses otherwise); each thread records the epoch of its
//! last context synchronization. A word is coherent for a thread when its
//! current store is the flushed one and the flush's epoch is at most the
//! thread's.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::model::{Class, ClassCounts, Counts, Missing, Violation, PAGE_SIZE};
use crate::shadow::{id_vcpu, Page, Shadow};

/// 32-bit Arm (EABI) Linux system call numbers the model reacts to
/// (arch/arm/tools/syscall.tbl).
pub mod sysno {
    /// `__ARM_NR_BASE`: QEMU 7.2 and Linux answer numbers above it in the
    /// architecture's own handler (`arm_syscall` in traps.c).
    pub const ARM_NR_BASE: u32 = 0x0f_0000;
    /// `__ARM_NR_cacheflush(start, end, flags)`.
    pub const CACHEFLUSH: u32 = ARM_NR_BASE + 2;
    /// `munmap(addr, len)`.
    pub const MUNMAP: i64 = 91;
    /// `mremap(old, old_len, new_len, flags, new)`.
    pub const MREMAP: i64 = 163;
    /// `mmap2(addr, len, prot, flags, fd, pgoff)`.
    pub const MMAP2: i64 = 192;
    /// `membarrier(cmd, flags, cpu_id)`.
    pub const MEMBARRIER: i64 = 389;
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
    pub const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
}

/// The instructions the model needs to see executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArmInsn {
    /// `isb` (A32 or T32).
    Isb,
    /// `svc`: the system call, whose number is in `r7`.
    Svc,
    /// Anything else.
    Other,
}

/// Decodes the instruction of `len` bytes whose bytes, read little-endian,
/// are `bits` (a 2-byte Thumb instruction in the low half; a 4-byte T32
/// instruction has its first halfword in the low half). `thumb`: the
/// instruction is known to be Thumb (the plugin knows it when its block has
/// a 2-byte instruction or one at a PC that is not a multiple of 4: a
/// translation block never changes instruction set, since `bx` and `blx`
/// end it).
///
/// Otherwise a 4-byte instruction may be A32 or T32, and both decodings are
/// tried. Only two words are then misread: the A32 `isb` word read as
/// T32 is a `bl` with one particular offset (about +4.4 MiB), and the T32
/// `isb` read as A32 is `svchi #0x6ff3bf`, which no Linux program uses (see
/// the README, "32-bit Arm").
///
/// * A32 `isb`: `0xf57ff06X`; `X` (option) is `0xf` (SY), the other values
///   are reserved and behave as SY (DDI 0406C, "ISB").
/// * T32 `isb`: `0xf3bf 0x8f6X` ("ISB", encoding T1).
/// * A32 `svc #0`, unconditional: `0xef000000` ("SVC", encoding A1). EABI
///   Linux uses `svc #0` only, the number being in `r7`. A conditional
///   `svc` is not taken as one: the plugin sees an instruction before its
///   condition is evaluated; if one did run, the register self-check fails.
/// * T16 `svc`: `0xdfXX` (encoding T1); Linux ignores the immediate in
///   Thumb state and takes the number from `r7` (entry-common.S).
pub fn decode(bits: u32, len: u64, thumb: bool) -> ArmInsn {
    match len {
        2 if bits & 0xff00 == 0xdf00 => ArmInsn::Svc,
        4 if bits & 0xfff0_ffff == 0x8f60_f3bf => ArmInsn::Isb,
        4 if thumb => ArmInsn::Other,
        4 if bits & 0xffff_fff0 == 0xf57f_f060 => ArmInsn::Isb,
        4 if bits == 0xef00_0000 => ArmInsn::Svc,
        _ => ArmInsn::Other,
    }
}

/// Whether a translation block whose instructions have these `(pc, len)`
/// is Thumb code for certain (see [`decode`]).
pub fn block_is_thumb(insns: impl IntoIterator<Item = (u64, u64)>) -> bool {
    insns.into_iter().any(|(pc, len)| len == 2 || pc % 4 != 0)
}

/// Whether the instruction certainly writes no memory because it is a load,
/// so it needs no store callback (QEMU 7.2 calls a store callback on loads
/// too). Only the plain load classes count, from the A32 and T32 encoding
/// tables (DDI 0406C, "ARM instruction set encoding" and "Thumb instruction
/// set encoding"); anything else, including every word with condition
/// `1111`, every Advanced SIMD access, `ldrd` and `ldrex` in A32, is kept,
/// which only costs time. With `thumb` unknown a 4-byte word counts only
/// when it is a load in both instruction sets, so a store is never left
/// out.
pub fn never_stores(bits: u32, len: u64, thumb: bool) -> bool {
    match len {
        2 => t16_is_load(bits as u16),
        4 if thumb => t32_is_load(bits),
        4 => (!t32_possible(bits) || t32_is_load(bits)) && a32_is_load(bits),
        _ => false,
    }
}

/// Whether the plugin leaves out the store callback of this instruction: a
/// load ([`never_stores`]), or a store addressed from the stack pointer
/// (`r13`). A JIT does not write its code through `sp`, and such stores are
/// most of the stores of compiled code, so, as on AArch64, the plugin does
/// not watch them (the README's "Overhead"). With `thumb` unknown a 4-byte
/// word is left out only when both instruction sets agree.
pub fn skips_store_callback(bits: u32, len: u64, thumb: bool) -> bool {
    let t32 = |b| t32_is_load(b) || t32_is_sp_store(b);
    match len {
        2 => t16_is_load(bits as u16) || t16_is_sp_store(bits as u16),
        4 if thumb => t32(bits),
        4 => (!t32_possible(bits) || t32(bits)) && (a32_is_load(bits) || a32_is_sp_store(bits)),
        _ => false,
    }
}

/// Whether a 4-byte word can be a 32-bit T32 instruction: its first
/// halfword starts with `11101`, `11110` or `11111` (DDI 0406C, "Thumb
/// instruction set encoding"). Any other word of 4 bytes is A32.
pub fn t32_possible(bits: u32) -> bool {
    (bits & 0xffff) >> 11 >= 0b11101
}

/// 16-bit Thumb stores from `sp`: `str rt, [sp, #imm]` and `push`.
fn t16_is_sp_store(hw: u16) -> bool {
    hw & 0xf800 == 0x9000 || hw & 0xfe00 == 0xb400
}

/// 32-bit Thumb stores with base register `sp` (`Rn`, the low four bits of
/// the first halfword): `str*.w`, `stm`/`push.w`, `strd`/`strex*`, and the
/// coprocessor and VFP stores (`vstr`, `vpush`).
fn t32_is_sp_store(bits: u32) -> bool {
    let hw1 = bits & 0xffff;
    let store = (hw1 & 0xfe00 == 0xf800 && hw1 & 0x10 == 0)
        || hw1 & 0xfe10 == 0xe800
        || hw1 & 0xee10 == 0xec00;
    store && hw1 & 0xf == 13
}

/// A32 stores (condition other than `1111`, L clear) with base register
/// `sp` (`Rn`, bits 19:16): `str`/`strb`, `stm`/`push`, the coprocessor and
/// VFP stores, and the extra stores (`strh`, `strd`).
fn a32_is_sp_store(w: u32) -> bool {
    let op = (w >> 25) & 7;
    let extra = op == 0 && w & 0x90 == 0x90 && (w >> 5) & 3 != 0;
    let store = w >> 28 != 0xf
        && w & (1 << 20) == 0
        && (op == 0b010 || op == 0b011 || op == 0b100 || op == 0b110 || extra);
    store && (w >> 16) & 0xf == 13
}

/// 16-bit Thumb loads: `ldr` (literal), the register-offset loads
/// (`0101` with opB `011`..`111`), the immediate-offset and SP-relative
/// loads (`011`, `1000`, `1001` with L set), `ldm` and `pop`.
fn t16_is_load(hw: u16) -> bool {
    let l = hw & 0x0800 != 0;
    hw & 0xf800 == 0x4800
        || (hw & 0xf000 == 0x5000 && (hw >> 9) & 7 >= 3)
        || (hw & 0xe000 == 0x6000 && l)
        || (hw & 0xe000 == 0x8000 && l)
        || (hw & 0xf000 == 0xc000 && l)
        || hw & 0xfe00 == 0xbc00
}

/// 32-bit Thumb loads (first halfword low): the byte, halfword and word
/// loads (`1111 100x xxx1`), `ldm`/`pop` (`1110 100x x0x1`), `ldrd`,
/// `ldrex*` and `tbb`/`tbh` (`1110 100x x1x1`), and the coprocessor and
/// VFP loads (`111x 110x xxx1`).
fn t32_is_load(bits: u32) -> bool {
    let hw1 = bits & 0xffff;
    (hw1 & 0xfe00 == 0xf800 && hw1 & 0x10 != 0) || hw1 & 0xfe10 == 0xe810 || hw1 & 0xee10 == 0xec10
}

/// A32 loads (condition other than `1111`): the word and byte loads
/// (`01x`, L set), `ldm`/`pop` (`100`, L set), the coprocessor and VFP
/// loads (`110`, L set), and `ldrh`/`ldrsb`/`ldrsh` (`000`, bits 7 and 4
/// set, bits 6:5 not `00`, L set).
fn a32_is_load(w: u32) -> bool {
    let l = w & (1 << 20) != 0;
    let op = (w >> 25) & 7;
    let extra = op == 0 && w & 0x90 == 0x90 && (w >> 5) & 3 != 0;
    w >> 28 != 0xf && l && (op == 0b010 || op == 0b011 || op == 0b100 || op == 0b110 || extra)
}

#[derive(Default)]
struct Thread {
    /// The epoch of this thread's last context synchronization.
    synced: u64,
    /// Arguments of the system call in progress.
    syscall_args: [u64; 3],
    /// membarrier SYNC_CORE in progress: the epoch when it was issued.
    membarrier: Option<u64>,
}

/// The 32-bit Arm model. Stores go to the lock-free [`Shadow`]
/// ([`Arm32Model::shadow`]); every other event needs `&mut`, so the plugin
/// serializes them with a lock, and that order is the model's order.
pub struct Arm32Model {
    shadow: Arc<Shadow>,
    threads: Vec<Thread>,
    /// The number of flushes so far (rule 2): the current epoch.
    epoch: u64,
    counted_stores: HashSet<u64>,
    counts: Counts,
    classes: ClassCounts,
}

impl Default for Arm32Model {
    fn default() -> Self {
        Self::new()
    }
}

impl Arm32Model {
    /// A model with nothing stored and no threads.
    pub fn new() -> Arm32Model {
        Arm32Model {
            shadow: Arc::new(Shadow::new()),
            threads: Vec::new(),
            epoch: 0,
            counted_stores: HashSet::new(),
            counts: Counts::default(),
            classes: ClassCounts::default(),
        }
    }

    /// The shadow memory, for recording stores without the model's lock.
    pub fn shadow(&self) -> Arc<Shadow> {
        Arc::clone(&self.shadow)
    }

    /// The counters so far.
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// The reports so far, per class.
    pub fn class_counts(&self) -> ClassCounts {
        self.classes
    }

    fn thread(&mut self, v: u32) -> &mut Thread {
        let i = v as usize;
        if i >= self.threads.len() {
            self.threads.resize_with(i + 1, Thread::default);
        }
        &mut self.threads[i]
    }

    /// Thread `v` performs a context synchronization operation (rule 3).
    fn synchronize(&mut self, v: u32) {
        let epoch = self.epoch;
        self.thread(v).synced = epoch;
    }

    /// A thread (vCPU `v`) starts, synchronized (rule 5). QEMU reuses the
    /// index of an exited thread, so the lock-free coherent-vCPU bits the
    /// old one left are cleared: the new thread earns its own.
    pub fn vcpu_start(&mut self, v: u32) {
        if (v as usize) < self.threads.len() && v < 64 {
            self.shadow.for_each_page(|page| {
                for m in page.maint().into_iter().flatten() {
                    m.coherent_vcpus.fetch_and(!(1 << v), Relaxed);
                }
            });
        }
        *self.thread(v) = Thread::default();
        self.synchronize(v);
        self.counts.vcpus += 1;
    }

    /// vCPU `v` executed `isb` (rule 3).
    pub fn isb(&mut self, v: u32) {
        self.synchronize(v);
    }

    /// vCPU `v` executed `svc` with `r7` = `num` and `r0`..`r2` = `args`.
    /// Taking the exception synchronizes the thread (rule 3). QEMU 7.2
    /// answers `cacheflush` in its `cpu_loop` without a system call
    /// callback, so the plugin reports every `svc` here and the model acts
    /// on that one (rule 2); the return from it synchronizes the caller.
    pub fn svc(&mut self, v: u32, num: u32, args: [u32; 3]) {
        self.synchronize(v);
        if num != sysno::CACHEFLUSH {
            return;
        }
        self.counts.maintenance_ops += 1;
        let [start, end, flags] = args;
        if flags != 0 || end < start {
            return; // EINVAL
        }
        self.flush(u64::from(start), u64::from(end));
        self.synchronize(v);
    }

    /// Marks every stored word that overlaps `[start, end)` flushed for its
    /// current data, in a new epoch.
    fn flush(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        self.epoch += 1;
        let epoch = self.epoch;
        let mut page_start = start & !(PAGE_SIZE - 1);
        while page_start < end {
            if self.shadow.page_is_stored(page_start) {
                let from = start.max(page_start) & !3;
                let to = end.min(page_start + PAGE_SIZE);
                let mut a = from;
                while a < to {
                    if let Some((page, w)) = self.shadow.page(a) {
                        let id = page.id(w);
                        // Keep the first flush of these bytes: a thread
                        // synchronized after it is coherent, whatever
                        // flushes of the same bytes come later.
                        if id != 0 {
                            let m = &page.maint_or_create()[w];
                            if m.inval_for.load(Relaxed) != id {
                                m.inval_for.store(id, Relaxed);
                                m.inval_at.store(epoch, Relaxed);
                            }
                        }
                    }
                    a += 4;
                }
            }
            page_start += PAGE_SIZE;
        }
    }

    /// vCPU `v` enters system call `num` (one QEMU reports) with its first
    /// three arguments.
    pub fn syscall(&mut self, v: u32, num: i64, args: [u64; 3]) {
        let membarrier = (num == sysno::MEMBARRIER
            && args[0] as u32 as u64 == sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
            .then_some(self.epoch);
        let t = self.thread(v);
        t.syscall_args = args.map(|a| a as u32 as u64);
        t.membarrier = membarrier;
    }

    /// vCPU `v` returns from system call `num` with result `ret`: an
    /// exception return, so a synchronization (rule 3).
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        self.synchronize(v);
        let t = self.thread(v);
        let args = t.syscall_args;
        let membarrier = t.membarrier.take();
        // QEMU reports the 32-bit result sign-extended.
        let ret = ret as i32;
        if let (Some(epoch), 0) = (membarrier, ret) {
            for t in &mut self.threads {
                t.synced = t.synced.max(epoch);
            }
        }
        // Linux returns -errno in [-4095, -1] (include/linux/err.h).
        if (-4095..0).contains(&ret) {
            return;
        }
        match num {
            sysno::MUNMAP => self.shadow.forget_pages(args[0], args[1]),
            sysno::MMAP2 => self.shadow.forget_pages(u64::from(ret as u32), args[1]),
            sysno::MREMAP => {
                self.shadow.forget_pages(args[0], args[1]);
                self.shadow.forget_pages(u64::from(ret as u32), args[2]);
            }
            _ => {}
        }
    }

    fn count_code_store(&mut self, page: &Page, w: usize, id: u64) {
        let counted = &page.maint_or_create()[w].counted_for;
        if counted.load(Relaxed) != id {
            counted.store(id, Relaxed);
            if self.counted_stores.insert(id) {
                self.counts.code_stores += 1;
            }
        }
    }

    /// The epoch of the flush that covers store `id` in word `w`, if any.
    fn flushed_at(page: &Page, w: usize, id: u64) -> Option<u64> {
        let m = &page.maint()?[w];
        (m.inval_for.load(Relaxed) == id).then(|| m.inval_at.load(Relaxed))
    }

    /// vCPU `v` executes the instruction of `len` bytes at `pc`. Returns a
    /// report if its bytes could be stale for `v` (rule 6).
    pub fn execute(&mut self, v: u32, pc: u64, len: u64) -> Option<Violation> {
        let shadow = Arc::clone(&self.shadow);
        let synced = self.thread(v).synced;
        let mut stale = None;
        for (page, w, id) in shadow.stored_words(pc, len) {
            self.count_code_store(page, w, id);
            match Self::flushed_at(page, w, id) {
                Some(at) if at <= synced => page.maint_or_create()[w].set_coherent(id, v),
                flushed => {
                    if stale.is_none() {
                        stale = Some((page.pc(w), id, flushed.is_some()));
                    }
                }
            }
        }
        let (store_pc, id, flushed) = stale?;
        let (missing, hint, class) = if flushed {
            (
                Missing::NoContextSync,
                "a cacheflush covered the code, but this thread made no isb, system call or \
                 membarrier SYNC_CORE since; other threads need one of them",
                Class::Sync,
            )
        } else {
            (
                Missing::NotFlushed,
                "no cacheflush (0x0f0002) with flags = 0 covered these bytes after the store",
                Class::Maintenance,
            )
        };
        self.classes.add(class, 1);
        self.counts.violations += 1;
        Some(Violation {
            vcpu: v,
            pc,
            missing,
            store_pc,
            store_vcpu: id_vcpu(id),
            hint: Some(hint),
            class,
        })
    }

    /// Whether the instruction of `len` bytes at `pc` is coherent for every
    /// thread, present and future (a thread started later is synchronized
    /// at its start, rule 5), and so stays coherent until the next store to
    /// it. The plugin asks at translation: such an instruction needs no
    /// execution callback. Its stores then count as code stores.
    pub fn coherent_for_every_vcpu(&mut self, pc: u64, len: u64) -> bool {
        let shadow = Arc::clone(&self.shadow);
        let words = shadow.stored_words(pc, len);
        let oldest = self.threads.iter().map(|t| t.synced).min();
        let all = words.iter().all(|&(page, w, id)| {
            Self::flushed_at(page, w, id).is_some_and(|at| oldest.is_none_or(|o| at <= o))
        });
        if !all {
            return false;
        }
        for (page, w, id) in words {
            self.count_code_store(page, w, id);
        }
        true
    }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
