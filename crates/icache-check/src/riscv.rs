//! The model of instruction-fetch coherence for RISC-V Linux programs
//! (rv64), as pure Rust, and the few instruction encodings it needs.
//!
//! # Rules, with their sources
//!
//! 1. Instruction fetches are not coherent with stores. A hart's fetches see
//!    a store only after that hart executed `fence.i` after the store
//!    (RISC-V Unprivileged ISA, chapter "Zifencei": "FENCE.I does not ensure
//!    that other RISC-V harts' instruction fetches will observe the local
//!    hart's stores"). There is no user-mode instruction that flushes a
//!    range or another hart, so coherence is per store, not per cache line:
//!    the model has no line sizes.
//! 2. Linux may move a thread to another hart between any two instructions.
//!    So a user `fence.i` keeps a thread coherent only if the kernel
//!    executes `fence.i` when it moves the thread: after
//!    `prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX, PR_RISCV_CTX_SW_FENCEI_ON, scope)`
//!    (Linux 6.10, prctl 71; `riscv_set_icache_flush_ctx` in
//!    arch/riscv/mm/cacheflush.c sets `mm->context.force_icache_flush` for
//!    `PR_RISCV_SCOPE_PER_PROCESS` = 0 and `thread.force_icache_flush` for
//!    `PR_RISCV_SCOPE_PER_THREAD` = 1, and `switch_to` then flushes;
//!    Documentation/arch/riscv/cmodx.rst). Without the opt-in, the model
//!    counts a thread's `fence.i` for nothing durable, and reports an
//!    execution covered only by one as [`Missing::FenceIWithoutOptIn`]. The
//!    uapi header says the same: a user `fence.i` is "not actually viable
//!    when running on Linux because the kernel might schedule a process on
//!    another hart" (arch/riscv/include/uapi/asm/unistd.h). A thread
//!    created by `clone` inherits the per-thread setting of the thread that
//!    called `clone` (the kernel copies `thread_struct`).
//! 3. `riscv_flush_icache(start, end, flags)`, syscall 259
//!    (`__NR_arch_specific_syscall + 15`), ignores the range and calls
//!    `flush_icache_mm(mm, flags & SYS_RISCV_FLUSH_ICACHE_LOCAL)`
//!    (arch/riscv/kernel/sys_riscv.c: "the flush applying to either all
//!    threads or just the caller"). With flags = 0 every thread of the
//!    process is coherent for every store made before the call: the kernel
//!    runs `fence.i` on its own hart, sends an IPI to the other harts
//!    running the process, and marks every other hart stale so it runs
//!    `fence.i` before it next runs the process (arch/riscv/mm/cacheflush.c).
//!    With flags = 1 (`SYS_RISCV_FLUSH_ICACHE_LOCAL`) only the calling
//!    thread is, as documented (the README notes a migration case where the
//!    implementation may not keep even that; it is not modelled). Any other bit makes the kernel fail with `EINVAL`, so those
//!    calls make nothing coherent (QEMU 7.2 answers 0 to every call).
//! 4. `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` that returns 0
//!    makes every thread of the process coherent for the stores made before
//!    it was issued: RISC-V Linux 6.9 added `ARCH_HAS_MEMBARRIER_SYNC_CORE`,
//!    whose IPI handler runs `sync_core_before_usermode()`, a `fence.i`,
//!    and whose `prepare_sync_core_cmd()` marks every hart stale so a hart
//!    that switches to the process runs `fence.i` too
//!    (arch/riscv/include/asm/sync_core.h;
//!    Documentation/features/sched/membarrier-sync-core/arch-support.txt).
//! 5. A return from a system call is not a synchronization: RISC-V returns
//!    to user mode with `sret`, which is not core serializing (the same
//!    `sync_core.h` comment), and the kernel runs no `fence.i` on return.
//! 6. A new thread is coherent for what the process-wide calls of rules 3
//!    and 4 covered before it started (the kernel marked every hart stale),
//!    and for nothing else.
//! 7. A violation is the execution of an instruction whose own bytes the
//!    guest stored and that is not yet coherent for the executing thread.
//!    An instruction is 2 or 4 bytes (the compressed extension), at any
//!    2-byte boundary, so it may cover two shadow words.
//!
//! With `one_hart` (the program runs on one hart, as the library's
//! `one-core` feature assumes) every thread shares that hart's instruction
//! cache: any `fence.i`, and any `riscv_flush_icache`, covers every thread.
//!
//! # Granularity
//!
//! The shadow ([`Shadow`]) records stores per aligned 4-byte word. A store
//! to one 2-byte half of a word marks the whole word, so a compressed
//! instruction that shares a word with a stored one, unchanged itself, is
//! checked as if stored: it can be reported although its bytes are the old
//! ones. A JIT that writes whole functions, as the library's tests do, does
//! not meet this.
//!
//! # Time
//!
//! Stores are recorded lock-free in the shadow with identities
//! `(count << 16) | vcpu` (per-vCPU counts). A synchronization takes a
//! snapshot of every vCPU's last count ([`Shadow::last_count`]); a store is
//! covered by it if its count is at most the snapshot's for its vCPU.
//! Snapshots only grow, so each thread keeps the element-wise maximum of
//! those that covered it.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::model::{Class, ClassCounts, Counts, Missing, Violation};
use crate::shadow::{id_count, id_vcpu, Page, Shadow};

/// riscv64 Linux system call numbers the model reacts to (the generic
/// table, include/uapi/asm-generic/unistd.h, and
/// arch/riscv/include/uapi/asm/unistd.h).
pub mod sysno {
    /// `riscv_flush_icache(start, end, flags)`.
    pub const RISCV_FLUSH_ICACHE: u64 = 259;
    /// `SYS_RISCV_FLUSH_ICACHE_LOCAL`: only the calling thread.
    pub const FLUSH_ICACHE_LOCAL: u64 = 1;
    /// `prctl(option, ...)`.
    pub const PRCTL: i64 = 167;
    /// `PR_RISCV_SET_ICACHE_FLUSH_CTX` (include/uapi/linux/prctl.h).
    pub const PR_RISCV_SET_ICACHE_FLUSH_CTX: u64 = 71;
    /// `PR_RISCV_CTX_SW_FENCEI_ON`.
    pub const PR_RISCV_CTX_SW_FENCEI_ON: u64 = 0;
    /// `PR_RISCV_CTX_SW_FENCEI_OFF`.
    pub const PR_RISCV_CTX_SW_FENCEI_OFF: u64 = 1;
    /// `PR_RISCV_SCOPE_PER_PROCESS`.
    pub const PR_RISCV_SCOPE_PER_PROCESS: u64 = 0;
    /// `PR_RISCV_SCOPE_PER_THREAD`.
    pub const PR_RISCV_SCOPE_PER_THREAD: u64 = 1;
    /// `munmap(addr, len)`.
    pub const MUNMAP: i64 = 215;
    /// `mremap(old, old_len, new_len, flags, new)`.
    pub const MREMAP: i64 = 216;
    /// `clone(flags, ...)`.
    pub const CLONE: i64 = 220;
    /// `mmap(addr, len, prot, flags, fd, off)`.
    pub const MMAP: i64 = 222;
    /// `membarrier(cmd, flags, cpu_id)`.
    pub const MEMBARRIER: i64 = 283;
    /// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
    pub const MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: u64 = 32;
    /// `clone3(args, size)`.
    pub const CLONE3: i64 = 435;
}

/// The instructions the model needs to see executed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RvInsn {
    /// `fence.i` (Zifencei).
    FenceI,
    /// `ecall`: the system call, whose number is in `a7`.
    Ecall,
    /// Anything else.
    Other,
}

/// The length in bytes of the instruction whose first 16-bit parcel is
/// `low`, from its low bits (Unprivileged ISA, "Base Instruction-Length
/// Encoding"): 2 when bits 1:0 are not `11`, 4 when they are and bits 4:2
/// are not `111`. Longer encodings (48 bits and up) are used by no ratified
/// extension: `None`.
pub fn insn_len(low: u16) -> Option<u64> {
    if low & 0b11 != 0b11 {
        Some(2)
    } else if low & 0b1_1100 != 0b1_1100 {
        Some(4)
    } else {
        None
    }
}

const OPCODE_MASK: u32 = 0x7f;
const MISC_MEM: u32 = 0b000_1111;
const STORE: u32 = 0b010_0011;
const STORE_FP: u32 = 0b010_0111;
const AMO: u32 = 0b010_1111;

fn funct3(bits: u32) -> u32 {
    (bits >> 12) & 7
}

/// Decodes the instruction of `len` bytes whose bits are `bits` (a 2-byte
/// instruction in the low half).
///
/// `fence.i` is MISC-MEM (`0001111`) with funct3 `001`; its `imm`, `rs1`
/// and `rd` fields are reserved for future use and ignored by current
/// harts, so any value of them is still `fence.i` (Zifencei chapter).
/// `ecall` is the one word `0x00000073` (SYSTEM, funct12 0). Neither has a
/// compressed form.
pub fn decode(bits: u32, len: u64) -> RvInsn {
    if len != 4 {
        RvInsn::Other
    } else if bits & OPCODE_MASK == MISC_MEM && funct3(bits) == 0b001 {
        RvInsn::FenceI
    } else if bits == 0x0000_0073 {
        RvInsn::Ecall
    } else {
        RvInsn::Other
    }
}

/// Whether the instruction may write memory, so it needs a store callback.
/// RV64GC writes memory with STORE, STORE-FP (the vector stores share it)
/// and AMO, and with the compressed stores (quadrant 0 funct3 `100`..`111`,
/// which includes Zcb's `c.sb`/`c.sh`; quadrant 2 funct3 `101`..`111`).
/// MISC-MEM counts too, for Zicbo's `cbo.zero`. Over-approximating is
/// harmless: QEMU calls the callback only for real accesses, and the
/// callback ignores loads.
pub fn may_store(bits: u32, len: u64) -> bool {
    if len == 2 {
        let quadrant = bits & 0b11;
        let f3 = (bits >> 13) & 7;
        return match quadrant {
            0b00 => f3 >= 0b100,
            0b10 => f3 >= 0b101,
            _ => false,
        };
    }
    matches!(bits & OPCODE_MASK, STORE | STORE_FP | AMO | MISC_MEM)
}

/// Whether the instruction is a store addressed from the stack pointer
/// (`x2`): `c.swsp`/`c.sdsp`/`c.fsdsp`, or a STORE / STORE-FP with
/// `rs1 = x2`. A JIT does not write its code through `sp`, and such stores
/// are most of the stores of compiled code, so the plugin does not watch
/// them (as on AArch64; see the README's "Overhead").
pub fn is_sp_based_store(bits: u32, len: u64) -> bool {
    if len == 2 {
        return bits & 0b11 == 0b10 && (bits >> 13) & 7 >= 0b101;
    }
    matches!(bits & OPCODE_MASK, STORE | STORE_FP) && (bits >> 15) & 31 == 2
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
    /// The stores this thread is coherent for.
    synced: Snapshot,
    /// The stores this thread ran `fence.i` after without the opt-in: not
    /// coherent (rule 2), but the report says so.
    fenced: Snapshot,
    /// `PR_RISCV_SET_ICACHE_FLUSH_CTX` on for this thread.
    fencei_on: bool,
    /// Arguments of the system call in progress.
    syscall_args: [u64; 3],
    /// membarrier SYNC_CORE in progress: the stores made before it.
    membarrier: Option<Snapshot>,
}

/// The RISC-V model. Stores go to the lock-free [`Shadow`]
/// ([`RiscvModel::shadow`]); every other event needs `&mut`, so the plugin
/// serializes them with a lock, and that order is the model's order.
pub struct RiscvModel {
    one_hart: bool,
    shadow: Arc<Shadow>,
    threads: Vec<Thread>,
    /// The stores every thread, present and future, is coherent for (rules
    /// 3, 4 and 6).
    global: Snapshot,
    /// `PR_RISCV_SET_ICACHE_FLUSH_CTX` on for the whole process.
    process_fencei_on: bool,
    /// The per-thread setting a thread being created inherits.
    clone_fencei_on: bool,
    counted_stores: HashSet<u64>,
    counts: Counts,
    classes: ClassCounts,
}

impl RiscvModel {
    /// A model with nothing stored and no threads. `one_hart`: the program
    /// runs on a single hart.
    pub fn new(one_hart: bool) -> RiscvModel {
        RiscvModel {
            one_hart,
            shadow: Arc::new(Shadow::new()),
            threads: Vec::new(),
            global: Vec::new(),
            process_fencei_on: false,
            clone_fencei_on: false,
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

    /// Every vCPU's last store count: the stores made so far.
    fn snapshot(&self) -> Snapshot {
        (0..self.threads.len() as u32)
            .map(|v| self.shadow.last_count(v))
            .collect()
    }

    /// Every thread, present and future, becomes coherent for `snap`.
    fn sync_all(&mut self, snap: &Snapshot) {
        merge(&mut self.global, snap);
        for t in &mut self.threads {
            merge(&mut t.synced, snap);
        }
    }

    fn fencei_on(&self, v: u32) -> bool {
        self.process_fencei_on || self.threads.get(v as usize).is_some_and(|t| t.fencei_on)
    }

    /// A thread (vCPU `v`) starts; QEMU reuses the index of an exited one,
    /// so its state is reset (rule 6), and so are the lock-free
    /// coherent-vCPU bits the old thread left ([`Shadow::known_coherent`]):
    /// unlike on AArch64, a new thread does not start synchronized.
    pub fn vcpu_start(&mut self, v: u32) {
        if (v as usize) < self.threads.len() && v < 64 {
            self.shadow.for_each_page(|page| {
                for m in page.maint().into_iter().flatten() {
                    m.coherent_vcpus.fetch_and(!(1 << v), Relaxed);
                }
            });
        }
        let t = Thread {
            synced: self.global.clone(),
            fencei_on: self.clone_fencei_on,
            ..Thread::default()
        };
        *self.thread(v) = t;
        self.counts.vcpus += 1;
    }

    /// vCPU `v` executed `fence.i` (rules 1 and 2).
    pub fn fence_i(&mut self, v: u32) {
        self.counts.maintenance_ops += 1;
        let snap = self.snapshot();
        if self.one_hart {
            self.sync_all(&snap);
        } else if self.fencei_on(v) {
            merge(&mut self.thread(v).synced, &snap);
        } else {
            merge(&mut self.thread(v).fenced, &snap);
        }
    }

    /// vCPU `v` executed `ecall` with `a7` = `num`; `args` are `a0`..`a2`.
    /// QEMU 7.2 answers `riscv_flush_icache` without a system call callback,
    /// so the plugin reports every `ecall` here and the model acts on that
    /// one (rule 3).
    pub fn ecall(&mut self, v: u32, num: u64, args: [u64; 3]) {
        if num != sysno::RISCV_FLUSH_ICACHE {
            return;
        }
        self.counts.maintenance_ops += 1;
        let snap = self.snapshot();
        match args[2] {
            0 => self.sync_all(&snap),
            sysno::FLUSH_ICACHE_LOCAL if self.one_hart => self.sync_all(&snap),
            sysno::FLUSH_ICACHE_LOCAL => merge(&mut self.thread(v).synced, &snap),
            _ => {} // EINVAL on Linux
        }
    }

    /// vCPU `v` enters system call `num` (one QEMU reports) with its first
    /// three arguments.
    pub fn syscall(&mut self, v: u32, num: i64, args: [u64; 3]) {
        let snap = (num == sysno::MEMBARRIER
            && args[0] == sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)
            .then(|| self.snapshot());
        if num == sysno::CLONE || num == sysno::CLONE3 {
            self.clone_fencei_on = self.thread(v).fencei_on;
        }
        let t = self.thread(v);
        t.syscall_args = args;
        t.membarrier = snap;
    }

    /// vCPU `v` returns from system call `num` with result `ret`. Not a
    /// synchronization (rule 5).
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        let t = self.thread(v);
        let args = t.syscall_args;
        let membarrier = t.membarrier.take();
        if let (Some(snap), 0) = (membarrier, ret) {
            self.sync_all(&snap);
        }
        // Linux returns -errno in [-4095, -1] (include/linux/err.h).
        if (-4095..0).contains(&ret) {
            return;
        }
        match num {
            sysno::PRCTL if args[0] == sysno::PR_RISCV_SET_ICACHE_FLUSH_CTX => {
                let on = match args[1] {
                    sysno::PR_RISCV_CTX_SW_FENCEI_ON => true,
                    sysno::PR_RISCV_CTX_SW_FENCEI_OFF => false,
                    _ => return,
                };
                match args[2] {
                    sysno::PR_RISCV_SCOPE_PER_PROCESS => self.process_fencei_on = on,
                    sysno::PR_RISCV_SCOPE_PER_THREAD => self.thread(v).fencei_on = on,
                    _ => {}
                }
            }
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

    /// vCPU `v` executes the instruction of `len` bytes at `pc`. Returns a
    /// report if its bytes could be stale for `v` (rule 7).
    pub fn execute(&mut self, v: u32, pc: u64, len: u64) -> Option<Violation> {
        let shadow = Arc::clone(&self.shadow);
        self.thread(v);
        let mut stale = None;
        for (page, w, id) in shadow.stored_words(pc, len) {
            self.count_code_store(page, w, id);
            if covers(&self.threads[v as usize].synced, id) {
                page.maint_or_create()[w].set_coherent(id, v);
            } else if stale.is_none() {
                stale = Some((page.pc(w), id));
            }
        }
        let (store_pc, id) = stale?;
        let t = &self.threads[v as usize];
        let fenced = covers(&t.fenced, id);
        let elsewhere = self.threads.iter().any(|t| covers(&t.synced, id));
        let (missing, hint) = if fenced {
            (
                Missing::FenceIWithoutOptIn,
                "without prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX) the kernel may move this thread \
                 to a hart that did not run the fence.i; use riscv_flush_icache(flags = 0)",
            )
        } else if elsewhere {
            (
                Missing::NotFlushed,
                "a riscv_flush_icache(flags = 1) or fence.i covered only the thread that ran \
                 it; use flags = 0, or membarrier SYNC_CORE after the stores",
            )
        } else {
            (
                Missing::NotFlushed,
                "no fence.i, riscv_flush_icache or membarrier SYNC_CORE after the store",
            )
        };
        let class = if elsewhere {
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
            store_pc,
            store_vcpu: id_vcpu(id),
            hint: Some(hint),
            class,
        })
    }

    /// Whether the instruction of `len` bytes at `pc` is coherent for every
    /// thread, present and future, and so stays coherent until the next
    /// store to it: only a process-wide flush (rules 3, 4, 6) gives that,
    /// since a thread started later is coherent for nothing else. The plugin
    /// asks at translation: such an instruction needs no execution callback.
    /// Its stores then count as code stores.
    pub fn coherent_for_every_vcpu(&mut self, pc: u64, len: u64) -> bool {
        let shadow = Arc::clone(&self.shadow);
        let words = shadow.stored_words(pc, len);
        if !words.iter().all(|&(_, _, id)| covers(&self.global, id)) {
            return false;
        }
        for (page, w, id) in words {
            self.count_code_store(page, w, id);
        }
        true
    }
}

#[cfg(test)]
mod tests;
