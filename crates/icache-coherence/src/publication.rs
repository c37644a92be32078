//! Publishing code to other threads on the reader's side: a patching epoch.

use core::sync::atomic::{AtomicUsize, Ordering::Acquire};

use crate::backends::{Backend, Chosen};

/// A patching epoch: the writer advances it after making new code coherent,
/// and each reader runs [`sync_this_thread`](crate::sync_this_thread) only
/// when it sees that the epoch moved. No system call, no interrupt of any
/// core, and on the path where nothing changed one load and one compare.
///
/// It is the way to publish code to other threads wherever
/// [`pipeline_flush_mt`](crate::pipeline_flush_mt) cannot give its
/// guarantee (sandboxes that deny `membarrier`, Linux before 4.16, Android
/// before 10, the BSDs, LoongArch and MIPS, bare metal, Apple when a
/// guarantee is needed), and a cheaper one where it can: HotSpot's nmethod
/// entry barriers compare a global patching epoch in the same way and run
/// `isb` on a mismatch (`cross_modify_fence`).
///
/// # The protocol
///
/// Writer, for each batch of new code:
///
/// 1. write the code, then [`clear_cache`](crate::clear_cache) (or a
///    [`batch`](crate::batch) with [`Publish::ThisThread`](crate::Publish));
/// 2. [`advance`](CodeEpoch::advance) the epoch;
/// 3. store the entry point with `Release` (so that it cannot be seen
///    before the new epoch).
///
/// Reader, every time before it runs code it found through a publication:
///
/// 1. load the entry point with `Acquire` (so that the epoch load after it
///    cannot be performed before it);
/// 2. [`sync`](CodeEpoch::sync) with its own last-seen epoch;
/// 3. call the code.
///
/// # Why it is correct
///
/// On AArch64 `clear_cache` completes the whole sequence (`dc cvau`, `dsb
/// ish`, `ic ivau`, `dsb ish`) before it returns, so the epoch store, which
/// comes after it in program order and cannot be performed before the last
/// `dsb` completes, is a flag written after completed maintenance. A reader
/// that reads the new epoch, compares (its next action depends on what it
/// read) and then runs `isb` is the catalogue test `MP.RF+cachesync+ctrlisb`
/// of the published model of AArch64 instruction fetch (Simner et al., ESOP
/// 2020; herdtools7 `catalogue/aarch64-ifetch`), where a stale fetch is
/// forbidden. The same `isb` placed before the read is
/// `MP.RF+cachesync+isb-ctrl`, where a stale fetch is allowed: that is why
/// the reader syncs *after* reading the entry point, never before.
///
/// The writer advances *before* it stores the entry point: the epoch's
/// `Release` orders it after the maintenance, and the reader's `Acquire`
/// load of the epoch comes after its read of the entry point, so a reader
/// that found the new entry point cannot see the old epoch. Had the writer
/// stored the entry point first, a reader could find the new code and still
/// read the old epoch, and skip the `isb`.
///
/// A reader that sees a new epoch before the matching entry point syncs
/// early and later skips the sync for that entry point: that is still
/// correct, because its `isb` came after reading an epoch that was written
/// after the maintenance completed, which is all the catalogue test needs.
///
/// The same reasoning holds for POWER (`isync` after a dependent read), for
/// x86 (a serializing instruction on the executing processor is the SDM's
/// cross-modifying-code step), for RISC-V Linux (the syscall already made
/// every hart `fence.i`; with the prctl opt-in the reader's `fence.i` is
/// valid) and for LoongArch (`ibar 0`).
///
/// ```
/// use core::sync::atomic::{AtomicPtr, Ordering};
/// use icache_coherence::CodeEpoch;
///
/// static EPOCH: CodeEpoch = CodeEpoch::new();
/// static ENTRY: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
///
/// // Writer, after writing the code at `code` and calling clear_cache:
/// # let code = core::ptr::null_mut::<u8>();
/// EPOCH.advance();
/// ENTRY.store(code, Ordering::Release);
///
/// // Each reader keeps its own last-seen epoch:
/// let mut seen = 0;
/// let entry = ENTRY.load(Ordering::Acquire);
/// EPOCH.sync(&mut seen);
/// // ... now call `entry` ...
/// # let _ = entry;
/// ```
#[derive(Debug, Default)]
pub struct CodeEpoch(AtomicUsize);

impl CodeEpoch {
    /// An epoch at 0.
    pub const fn new() -> Self {
        CodeEpoch(AtomicUsize::new(0))
    }

    /// The writer's step, after the new code was made coherent and before
    /// its entry point is stored. One `Release` read-modify-write; no system
    /// call. Returns the new epoch. The epoch wraps after `usize::MAX`
    /// advances, which only matters if a reader sleeps through exactly that
    /// many.
    ///
    /// Concurrent writers may advance the same epoch.
    #[cfg(target_has_atomic = "ptr")]
    #[inline]
    pub fn advance(&self) -> usize {
        self.0
            .fetch_add(1, core::sync::atomic::Ordering::Release)
            .wrapping_add(1)
    }

    /// The writer's step, after the new code was made coherent and before
    /// its entry point is stored: a load and a `Release` store, because this
    /// target has no atomic read-modify-write (ARMv6-M). Concurrent writers
    /// must therefore serialize their advances themselves.
    #[cfg(not(target_has_atomic = "ptr"))]
    #[inline]
    pub fn advance(&self) -> usize {
        let next = self
            .0
            .load(core::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        self.0.store(next, core::sync::atomic::Ordering::Release);
        next
    }

    /// The reader's step, after it read the entry point and before it calls
    /// the code: if the epoch moved since `seen`, run
    /// [`sync_this_thread`](crate::sync_this_thread) and update `seen`.
    /// Returns whether it synchronized. When nothing changed this is one
    /// `Acquire` load and one compare (AArch64: `ldar`, `cmp`, `b.ne`).
    ///
    /// `seen` is the calling thread's own: start it at 0 (or at
    /// [`current`](CodeEpoch::current) read before any code was published)
    /// and keep it across calls. No system call, no lock, no allocation: it
    /// may be called in a signal handler.
    #[inline(always)]
    pub fn sync(&self, seen: &mut usize) -> bool {
        let now = self.0.load(Acquire);
        if now == *seen {
            return false;
        }
        *seen = now;
        Chosen::sync_this_thread();
        true
    }

    /// The epoch now.
    pub fn current(&self) -> usize {
        self.0.load(Acquire)
    }
}
