//! The model of instruction-fetch coherence for 64-bit POWER Linux programs
//! (ppc64le), as pure Rust, and the few instruction encodings it needs.
//!
//! # Rules, with their sources
//!
//! 1. Instruction fetches are not coherent with stores. Power ISA v3.1
//!    Book II, "Instruction Storage", gives the sequence that
//!    makes stored instructions fetchable: `dcbst` each data block the
//!    stores touched, `sync`, `icbi` each instruction block, `sync`,
//!    `isync`. Block sizes are the kernel's `AT_DCACHEBSIZE` (19) and
//!    `AT_ICACHEBSIZE` (20) auxiliary vector entries
//!    (arch/powerpc/include/asm/elf.h `ARCH_DLINFO`).
//! 2. `dcbst` on an address by vCPU V writes its data block, as it stood
//!    when the `dcbst` was issued, to storage. That is done when V next
//!    executes a heavyweight `sync` (`sync 0`, or `ptesync`, which orders
//!    everything `sync` does; Book II, the `sync` description). `lwsync` and
//!    `eieio` do not wait for cache-block operations to be performed, so
//!    they complete nothing.
//! 3. `icbi` on an address by V invalidates the instruction block in the
//!    instruction cache of every processor (Book II, the `icbi`
//!    description), for data that was written
//!    to storage (rule 2) when the `icbi` was issued. It is done when V next
//!    executes a heavyweight `sync`.
//! 4. A thread may still run stale prefetched instructions until it passes
//!    a context synchronizing event after the invalidation was done (Book
//!    III, "Context Synchronization"): its own `isync`; `sc` / `scv`
//!    and the `rfid` / `rfscv` that returns from a system call, so any
//!    return from a system call the kernel really serves; a successful
//!    `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` from any
//!    thread, for every thread (powerpc selects
//!    `ARCH_HAS_MEMBARRIER_SYNC_CORE`; the IPI returns to user mode with
//!    `rfid`). A new thread starts synchronized (it enters user mode with
//!    `rfid`). Another thread's `isync` does nothing for this one: a reader
//!    thread needs its own.
//! 5. The calls powerpc Linux serves from the vDSO without entering the
//!    kernel (`gettimeofday`, `clock_gettime`, `clock_getres`, `time`,
//!    `getcpu`: arch/powerpc/kernel/vdso/vdso64.lds.S) are not context
//!    synchronizing, although QEMU 7.2 makes them real system calls.
//! 6. `PPC_FEATURE_ICACHE_SNOOP` (0x00002000 in `AT_HWCAP`, the kernel's
//!    `CPU_FTR_COHERENT_ICACHE`): the instruction cache snoops stores, so
//!    no `dcbst` is needed, and one `icbi` of any address discards stale
//!    prefetched instructions: the kernel's own sequence is `sync; icbi;
//!    sync; isync` (arch/powerpc/mm/cacheflush.c `flush_coherent_icache`:
//!    "we still need a dummy icbi to purge all the prefetched
//!    instructions ... We also need a sync before the icbi to order the
//!    actual stores"). The model takes a store by V as written to storage
//!    once V executed a heavyweight `sync` after it (or once a `dcbst` of
//!    it was done, rule 2), and an `icbi` of any address as covering
//!    everything written so. The full sequence stays
//!    correct too. QEMU 7.2 sets the bit for none of its ppc64le models
//!    (measured), so only the host tests exercise this rule.
//! 7. A violation is the execution of an instruction whose own bytes the
//!    guest stored and that is not yet coherent for the executing thread.
//!    Every instruction is one aligned word (prefixed POWER10 instructions
//!    are two; each word is checked where it is fetched).
//!
//! # Time
//!
//! Stores are recorded lock-free in the shadow with identities
//! `(count << 16) | vcpu`. A `dcbst` or `icbi` takes a snapshot of the
//! identities of its block's words when issued, and its effect applies at
//! completion only to words that still hold them. Invalidations get an
//! increasing number (`epoch`) when they complete; a thread's context
//! synchronization records the epoch it has seen.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::model::{Class, ClassCounts, Counts, Missing, Violation};
use crate::shadow::{id_count, id_vcpu, Page, Shadow};

/// ppc64 Linux system call numbers the model reacts to
/// (arch/powerpc/kernel/syscalls/syscall.tbl, as in the cross toolchain's
/// asm/unistd_64.h).
pub mod sysno {
    /// `time(t)`.
    pub const TIME: i64 = 13;
    /// `gettimeofday(tv, tz)`.
    pub const GETTIMEOFDAY: i64 = 78;
    /// `mmap(addr, len, prot, flags, fd, off)`.
    pub const MMAP: i64 = 90;
    /// `munmap(addr, len)`.
    pub const MUNMAP: i64 = 91;
    /// `mremap(old, old_len, new_len, flags, new)`.
    pub const MREMAP: i64 = 163;
    /// `clock_gettime(clock, ts)`.
    pub const CLOCK_GETTIME: i64 = 246;
    /// `clock_getres(clock, res)`.
    pub const CLOCK_GETRES: i64 = 247;
    /// `getcpu(cpu, node, cache)`.
    pub const GETCPU: i64 = 302;
    /// `membarrier(cmd, flags, cpu_id)`.
    pub const MEMBARRIER: i64 = 365;
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
    pub const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
    /// The vDSO's calls (rule 5).
    pub const VDSO: [i64; 5] = [TIME, GETTIMEOFDAY, CLOCK_GETTIME, CLOCK_GETRES, GETCPU];
}

/// `PPC_FEATURE_ICACHE_SNOOP` in `AT_HWCAP` (arch/powerpc/include/uapi/asm/cputable.h).
pub const PPC_FEATURE_ICACHE_SNOOP: u64 = 0x0000_2000;

/// The instructions the model needs to see executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PpcInsn {
    /// `dcbst RA,RB`: write a data block to storage.
    Dcbst,
    /// `icbi RA,RB`: invalidate an instruction block everywhere.
    Icbi,
    /// `sync 0` (`hwsync`) or `ptesync`: waits for cache-block operations.
    Sync,
    /// `isync`: context synchronizing for this thread.
    Isync,
    /// `sc` or `scv`: a system call.
    Sc,
    /// Anything else.
    Other,
}

fn primary(word: u32) -> u32 {
    word >> 26
}

/// The extended opcode of X/XL-form instructions (bits 21..30, IBM order).
fn xo(word: u32) -> u32 {
    (word >> 1) & 0x3ff
}

/// The `RA` field (bits 11..15, IBM order).
fn ra(word: u32) -> u32 {
    (word >> 16) & 31
}

/// Decodes one instruction word (Power ISA v3.1 Book I/II opcode maps):
/// `dcbst` 31/54, `icbi` 31/982, `sync` 31/598 with `L` (bits 8..10) 0
/// (`hwsync`) or 2 (`ptesync`), `isync` 19/150, `sc` 17 with bit 30 set,
/// `scv` 17 with bit 31 set.
pub fn decode(word: u32) -> PpcInsn {
    match (primary(word), xo(word)) {
        (31, 54) => PpcInsn::Dcbst,
        (31, 982) => PpcInsn::Icbi,
        (31, 598) if matches!((word >> 21) & 7, 0 | 2) => PpcInsn::Sync,
        (19, 150) => PpcInsn::Isync,
        (17, _) if word & 3 != 0 => PpcInsn::Sc,
        _ => PpcInsn::Other,
    }
}

/// Whether the instruction may write memory, so it needs a store callback:
/// the D/DS/DQ-form stores (primary 36..39 `stw[u]`/`stb[u]`, 44/45
/// `sth[u]`, 47 `stmw`, 52..55 `stfs[u]`/`stfd[u]`, 61 and 62 the
/// `stfdp`/`stxsd`/`stxv`/`std`/`stq` group, 6 `stxvp`), the prefixed
/// (POWER10, primary 1) and every X-form of primary 31 (`st*x`, `st*cx.`,
/// `stvx`, `stxv*x`, `dcbz`...). Over-approximating is harmless: QEMU calls
/// the callback only for real accesses, and the callback ignores loads.
pub fn may_store(word: u32) -> bool {
    matches!(
        primary(word),
        1 | 6 | 31 | 36..=39 | 44 | 45 | 47 | 52..=55 | 61 | 62
    )
}

/// Whether the instruction is a D/DS-form store addressed from the stack
/// pointer (`r1`), `stdu r1,-N(r1)` included. A JIT does not write its code
/// through `r1`, and these are most of the stores of compiled code, so the
/// plugin does not watch them (as on AArch64; see the README's "Overhead").
pub fn is_sp_based_store(word: u32) -> bool {
    matches!(primary(word), 36..=39 | 44 | 45 | 47 | 52..=55 | 62) && ra(word) == 1
}

/// The cache geometry the guest sees (its auxiliary vector).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// `AT_DCACHEBSIZE`.
    pub dblock: u64,
    /// `AT_ICACHEBSIZE`.
    pub iblock: u64,
    /// `PPC_FEATURE_ICACHE_SNOOP` in `AT_HWCAP`.
    pub snoop: bool,
}

/// Per storing vCPU, the highest store count covered.
type Snapshot = Vec<u64>;

fn merge(into: &mut Snapshot, from: &Snapshot) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, &b) in into.iter_mut().zip(from) {
        *a = (*a).max(b);
    }
}

fn covers(snap: &Snapshot, id: u64) -> bool {
    snap.get(id_vcpu(id) as usize)
        .is_some_and(|&count| count >= id_count(id))
}

#[derive(Default)]
struct Thread {
    /// `dcbst`s issued and not yet done: (word address, identity).
    pending_cleans: Vec<(u64, u64)>,
    /// `icbi`s issued and not yet done: (word address, identity, written to
    /// storage at issue).
    pending_invals: Vec<(u64, u64, bool)>,
    /// Snoop mode: what the `icbi`s issued and not yet done cover: the
    /// stores written by their thread's `sync`, and the `dcbst`s done (up
    /// to a clean number).
    pending_snoop_inval: Option<Seen>,
    /// The invalidations done when this thread last context-synchronized.
    seen: Seen,
    /// Arguments of the system call in progress.
    syscall_args: [u64; 3],
    /// membarrier SYNC_CORE in progress: the invalidations done at issue.
    membarrier: Option<Seen>,
}

/// The invalidations done at some moment: what a context synchronization
/// then makes a thread coherent for.
#[derive(Clone, Default)]
struct Seen {
    /// Invalidations of blocks: those with an `inval_at` up to this.
    epoch: u64,
    /// Snoop mode: the stores written by their thread's `sync` that a done
    /// `icbi` covered.
    snoop: Snapshot,
    /// Snoop mode: the `dcbst`s (by number, `cleaned_at`) a done `icbi`
    /// covered.
    snoop_cleans: u64,
}

impl Seen {
    fn merge(&mut self, other: &Seen) {
        self.epoch = self.epoch.max(other.epoch);
        merge(&mut self.snoop, &other.snoop);
        self.snoop_cleans = self.snoop_cleans.max(other.snoop_cleans);
    }
}

/// The POWER model. Stores go to the lock-free [`Shadow`]
/// ([`PowerModel::shadow`]); every other event needs `&mut`, so the plugin
/// serializes them with a lock, and that order is the model's order.
pub struct PowerModel {
    geometry: Geometry,
    shadow: Arc<Shadow>,
    threads: Vec<Thread>,
    /// Invalidations done so far.
    epoch: u64,
    /// Snoop mode: per vCPU, its stores made before its last `sync`.
    snoop_written: Snapshot,
    /// Snoop mode: what the done `icbi`s covered.
    snoop_invalidated: Seen,
    /// `dcbst`s done so far; each word's `cleaned_at` is its number.
    cleans: u64,
    counted_stores: HashSet<u64>,
    counts: Counts,
    classes: ClassCounts,
}

impl PowerModel {
    /// A model with nothing stored and no threads.
    pub fn new(geometry: Geometry) -> PowerModel {
        PowerModel {
            geometry,
            shadow: Arc::new(Shadow::new()),
            threads: Vec::new(),
            epoch: 0,
            snoop_written: Vec::new(),
            snoop_invalidated: Seen::default(),
            cleans: 0,
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

    /// The invalidations done so far.
    fn seen(&self) -> Seen {
        Seen {
            epoch: self.epoch,
            ..self.snoop_invalidated.clone()
        }
    }

    /// Thread `v` context-synchronizes after the invalidations `seen`.
    fn context_sync(&mut self, v: u32, seen: &Seen) {
        self.thread(v).seen.merge(seen);
    }

    /// A thread (vCPU `v`) starts, synchronized (rule 4). QEMU reuses the
    /// index of an exited thread, so its state is reset. The exited thread
    /// left through the kernel's context switch, which runs a `sync`
    /// (arch/powerpc/kernel/entry_64.S `_switch`: so that a task moved to
    /// another CPU sees its own stores), so its pending `dcbst`s and
    /// `icbi`s are done first.
    pub fn vcpu_start(&mut self, v: u32) {
        if (v as usize) < self.threads.len() {
            self.sync(v);
        }
        *self.thread(v) = Thread::default();
        let seen = self.seen();
        self.context_sync(v, &seen);
        self.counts.vcpus += 1;
    }

    /// The stored words of the block of `size` bytes around `addr`, with
    /// their identities.
    fn block_words(&self, addr: u64, size: u64) -> Vec<(u64, u64)> {
        let start = addr & !(size - 1);
        (start..start + size)
            .step_by(4)
            .filter_map(|a| {
                let (page, w) = self.shadow.page(a)?;
                let id = page.id(w);
                (id != 0).then_some((a, id))
            })
            .collect()
    }

    /// Whether the data of store `id` at word `a` was written to storage.
    fn written(&self, a: u64, id: u64) -> bool {
        let by_dcbst = self.shadow.page(a).is_some_and(|(page, w)| {
            page.maint()
                .is_some_and(|m| m[w].cleaned_for.load(Relaxed) == id)
        });
        by_dcbst || (self.geometry.snoop && covers(&self.snoop_written, id))
    }

    /// vCPU `v` executed `insn` whose effective address (for `dcbst` and
    /// `icbi`) is `ea`.
    pub fn execute_op(&mut self, v: u32, insn: PpcInsn, ea: u64) {
        match insn {
            PpcInsn::Dcbst => {
                self.counts.maintenance_ops += 1;
                let words = self.block_words(ea, self.geometry.dblock);
                self.thread(v).pending_cleans.extend(words);
            }
            PpcInsn::Icbi => {
                self.counts.maintenance_ops += 1;
                let words: Vec<_> = self
                    .block_words(ea, self.geometry.iblock)
                    .into_iter()
                    .map(|(a, id)| (a, id, self.written(a, id)))
                    .collect();
                // Snoop mode: any `icbi` covers every store written to
                // storage by now, by its thread's `sync` or by a `dcbst`.
                let snoop = self.geometry.snoop.then(|| Seen {
                    epoch: 0,
                    snoop: self.snoop_written.clone(),
                    snoop_cleans: self.cleans,
                });
                let t = self.thread(v);
                t.pending_invals.extend(words);
                if let Some(s) = snoop {
                    t.pending_snoop_inval
                        .get_or_insert_with(Seen::default)
                        .merge(&s);
                }
            }
            PpcInsn::Sync => self.sync(v),
            PpcInsn::Isync => {
                let seen = self.seen();
                self.context_sync(v, &seen);
            }
            PpcInsn::Sc | PpcInsn::Other => {}
        }
    }

    /// A heavyweight `sync` of vCPU `v` (rules 2, 3 and 6).
    fn sync(&mut self, v: u32) {
        let t = self.thread(v);
        let cleans = std::mem::take(&mut t.pending_cleans);
        let invals = std::mem::take(&mut t.pending_invals);
        let snoop_inval = t.pending_snoop_inval.take();
        for (a, id) in cleans {
            if let Some((page, w)) = self.shadow.page(a) {
                let m = &page.maint_or_create()[w];
                // The earliest clean of this data counts: keep its number.
                if page.id(w) == id && m.cleaned_for.load(Relaxed) != id {
                    self.cleans += 1;
                    m.cleaned_for.store(id, Relaxed);
                    m.cleaned_at.store(self.cleans, Relaxed);
                }
            }
        }
        if !invals.is_empty() || snoop_inval.is_some() {
            self.epoch += 1;
        }
        for (a, id, written) in invals {
            if let Some((page, w)) = self.shadow.page(a) {
                let m = &page.maint_or_create()[w];
                if written && page.id(w) == id && m.inval_for.load(Relaxed) != id {
                    m.inval_for.store(id, Relaxed);
                    m.inval_at.store(self.epoch, Relaxed);
                }
            }
        }
        if let Some(s) = snoop_inval {
            self.snoop_invalidated.merge(&s);
        }
        if self.geometry.snoop {
            let count = self.shadow.last_count(v);
            let i = v as usize;
            if self.snoop_written.len() <= i {
                self.snoop_written.resize(i + 1, 0);
            }
            self.snoop_written[i] = self.snoop_written[i].max(count);
        }
    }

    /// vCPU `v` enters system call `num` with its first three arguments.
    pub fn syscall(&mut self, v: u32, num: i64, args: [u64; 3]) {
        let at_issue = (num == sysno::MEMBARRIER
            && args[0] == sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
            .then(|| self.seen());
        let t = self.thread(v);
        t.syscall_args = args;
        t.membarrier = at_issue;
    }

    /// vCPU `v` returns from system call `num` with result `ret`: a context
    /// synchronization of `v` unless the vDSO serves the call (rules 4, 5).
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        let t = self.thread(v);
        let args = t.syscall_args;
        if let (Some(seen), 0) = (t.membarrier.take(), ret) {
            for u in 0..self.threads.len() as u32 {
                self.context_sync(u, &seen);
            }
        }
        if !sysno::VDSO.contains(&num) {
            let seen = self.seen();
            self.context_sync(v, &seen);
        }
        // Linux returns -errno in [-4095, -1] (include/linux/err.h).
        if (-4095..0).contains(&ret) {
            return;
        }
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

    fn count_code_store(&mut self, page: &Page, w: usize, id: u64) {
        let counted = &page.maint_or_create()[w].counted_for;
        if counted.load(Relaxed) != id {
            counted.store(id, Relaxed);
            if self.counted_stores.insert(id) {
                self.counts.code_stores += 1;
            }
        }
    }

    /// What vCPU `v` still misses for the data of store `id` at word `a`.
    fn missing(&self, v: u32, page: &Page, w: usize, a: u64, id: u64) -> Option<Missing> {
        let t = &self.threads[v as usize];
        if self.invalidated_before(page, w, id, &t.seen) {
            return None;
        }
        Some(if self.invalidated_before(page, w, id, &self.seen()) {
            Missing::NoContextSync
        } else if self.written(a, id) {
            Missing::NotInvalidated
        } else {
            Missing::NotCleaned
        })
    }

    /// Whether the data of store `id` in word `w` of `page` is among the
    /// invalidations `seen`.
    fn invalidated_before(&self, page: &Page, w: usize, id: u64, seen: &Seen) -> bool {
        let Some(m) = page.maint().map(|m| &m[w]) else {
            return covers(&seen.snoop, id);
        };
        let block = m.inval_for.load(Relaxed) == id && m.inval_at.load(Relaxed) <= seen.epoch;
        let cleaned = m.cleaned_for.load(Relaxed) == id;
        let snoop_clean = cleaned && m.cleaned_at.load(Relaxed) <= seen.snoop_cleans;
        block || covers(&seen.snoop, id) || (self.geometry.snoop && snoop_clean)
    }

    /// vCPU `v` executes the instruction word at `pc`. Returns a report if
    /// its bytes could be stale for `v` (rule 7).
    pub fn execute(&mut self, v: u32, pc: u64) -> Option<Violation> {
        let shadow = Arc::clone(&self.shadow);
        self.thread(v);
        let a = pc & !3;
        let (page, w) = shadow.page(a)?;
        let id = page.id(w);
        if id == 0 {
            return None;
        }
        self.count_code_store(page, w, id);
        let Some(missing) = self.missing(v, page, w, a, id) else {
            page.maint_or_create()[w].set_coherent(id, v);
            return None;
        };
        let hint = match missing {
            Missing::NotCleaned => "no dcbst of this block completed by a sync after the store",
            Missing::NotInvalidated => {
                "no icbi of this block after the dcbst's sync, completed by a sync"
            }
            _ => "this thread needs its own isync after the icbi's sync (or membarrier SYNC_CORE)",
        };
        let class = if missing == Missing::NoContextSync {
            Class::Sync
        } else {
            Class::Maintenance
        };
        self.classes.add(class, 1);
        self.counts.violations += 1;
        Some(Violation {
            vcpu: v,
            pc,
            missing,
            store_pc: page.pc(w),
            store_vcpu: id_vcpu(id),
            hint: Some(hint),
            class,
        })
    }

    /// Whether the instruction word at `pc` is coherent for every thread,
    /// present and future, and so stays coherent until the next store to
    /// it. The plugin asks at translation: such an instruction needs no
    /// execution callback.
    pub fn coherent_for_every_vcpu(&mut self, pc: u64) -> bool {
        let shadow = Arc::clone(&self.shadow);
        let a = pc & !3;
        let Some((page, w)) = shadow.page(a) else {
            return true;
        };
        let id = page.id(w);
        if id == 0 {
            return true;
        }
        let all = (0..self.threads.len() as u32).all(|v| self.missing(v, page, w, a, id).is_none());
        // A thread started later is synchronized (rule 4), so it is coherent
        // for anything invalidated by now.
        let future = self.invalidated_before(page, w, id, &self.seen());
        if all && future {
            self.count_code_store(page, w, id);
        }
        all && future
    }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
