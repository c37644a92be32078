//! AArch64 outside Apple and Windows: the user-space maintenance sequence.
//!
//! Arm ARM (DDI 0487), "Concurrent modification and execution of
//! instructions" and the example "Ensuring the visibility of updates to
//! instructions" in the cache maintenance chapter: after writing code,
//!
//! 1. `dc cvau` each data line overlapping the range: clean to the Point of
//!    Unification, where instruction fetch can see it. Skipped when
//!    CTR_EL0.IDC = 1 (the clean is not required for coherence).
//! 2. `dsb ish`: the cleans complete before the invalidations start. Needed
//!    even when IDC skipped step 1, to order the stores themselves.
//! 3. `ic ivau` each instruction line overlapping the range. Skipped when
//!    CTR_EL0.DIC = 1.
//! 4. `dsb ish`: the invalidations complete, for every core in the Inner
//!    Shareable domain (the maintenance is broadcast).
//! 5. `isb`: this core refetches. Other cores need their own context
//!    synchronization: `pipeline_flush_mt` (membarrier SYNC_CORE on Linux).
//!
//! Line sizes come from CTR_EL0, read at EL0 (Linux and the BSDs set
//! SCTLR_EL1.UCT), folded into a process-wide running minimum so that
//! big.LITTLE systems with mismatched line sizes stay safe (see
//! [`crate::ctr_el0::RunningMin`]). Only lines overlapping the range are
//! touched: `dc`/`ic` at EL0 fault on unmapped addresses.
//!
//! Linux cleans a page only the first time it becomes executable
//! (arch/arm64/mm/flush.c, `PG_dcache_clean`), so rewriting code in a page
//! that has already run, as a JIT reusing a code region does, depends on this
//! sequence; mprotect is never a substitute.

use core::arch::asm;
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use super::Backend;
use crate::ctr_el0::{CtrEl0, RunningMin};
use crate::error::Error;
use crate::lines::Lines;
use crate::CacheInfo;

const MECHANISM: &str = "dc cvau / dsb ish / ic ivau / dsb ish / isb (CTR_EL0 line sizes)";

static CTR_MIN: RunningMin = RunningMin::new();

/// This core's CTR_EL0.
#[inline(always)]
fn read_ctr_el0() -> u64 {
    let raw: u64;
    // SAFETY: reading CTR_EL0 at EL0 is allowed on these OSes (SCTLR_EL1.UCT);
    // on Linux with mismatched caches the kernel traps and emulates it.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) raw, options(nomem, nostack, preserves_flags)) };
    raw
}

/// The line sizes and flags to use now, folded into the running minimum.
#[inline(always)]
fn ctr_el0() -> CtrEl0 {
    CTR_MIN.update(read_ctr_el0())
}

/// The AArch64 user-space sequence.
pub(crate) struct Aarch64;

impl Backend for Aarch64 {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = PIPELINE_MECHANISM;

    /// The common case, every call on a core whose CTR_EL0 equals the
    /// running minimum, is one `mrs`, one load and one compare before the
    /// maintenance itself; a core with a value not folded in yet (every
    /// first call, and a big.LITTLE core with other line sizes) goes to the
    /// out-of-line `clear_cache`, whose fold is a compare-and-swap loop. On a
    /// system whose cores report different values (only old kernels let them
    /// differ, see [`crate::ctr_el0::RunningMin`]), the cores with the bigger
    /// lines keep taking that path: a call and a merge, but no atomic write.
    #[inline(always)]
    unsafe fn clear_cache_fast(start: usize, last: usize) -> bool {
        let raw = read_ctr_el0();
        if !CTR_MIN.is_current(raw) {
            return false;
        }
        let range = core::iter::once((start, last));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(CtrEl0(raw), range.clone(), range) };
        true
    }

    #[inline]
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let range = core::iter::once(span((start, len)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(ctr_el0(), range.clone(), range) };
        Ok(())
    }

    /// Double-mapped code: clean by the writable alias, invalidate by the
    /// executable one. AArch64 data caches behave as physically indexed and
    /// tagged (Arm ARM, "Data and unified caches"), so cleaning through
    /// either alias cleans the same line; instruction caches may be
    /// virtually indexed (VIPT or PIPT, and AIVIVT on old cores), so the
    /// invalidation must use the address that will be fetched.
    #[inline]
    unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
        let (clean, invalidate) = (span((write, len)), span((exec, len)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(ctr_el0(), core::iter::once(clean), core::iter::once(invalidate)) };
        Ok(())
    }

    /// A batch: every clean, one `dsb ish`, every invalidate, one `dsb ish`,
    /// one `isb`, instead of the full sequence per range.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        let all = ranges.map(span);
        // SAFETY: forwarded from the caller.
        unsafe { sequence(ctr_el0(), all.clone(), all) };
        Ok(())
    }

    /// Linux and FreeBSD: membarrier SYNC_CORE, which on arm64 forces a context
    /// synchronization event on every other core running the process (the
    /// maintenance itself is already complete and broadcast).
    #[cfg(icache_membarrier)]
    fn pipeline_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
    }

    /// NetBSD, OpenBSD (and bare metal) have no documented broadcast context
    /// synchronization that this crate can rely on, so the guarantee cannot
    /// be given: report it instead of pretending.
    #[cfg(not(icache_membarrier))]
    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "no broadcast context synchronization is implemented for this OS on AArch64; \
             run published code only on the thread that called clear_cache",
        )
        .or_code_epoch())
    }

    // Cross-modifying code (the default, the pipeline flush): Arm ARM,
    // "Concurrent modification and execution of instructions" allows only
    // the listed instructions to be patched while another core may execute
    // them, and that core then needs a context synchronization event to be
    // sure to see the new one.

    fn cache_info() -> CacheInfo {
        let ctr = ctr_el0();
        CacheInfo {
            mechanism: MECHANISM,
            pipeline_flush_mechanism: PIPELINE_MECHANISM,
            cross_modify_mechanism: Self::CROSS_MODIFY_MECHANISM,
            sync_this_thread_mechanism: Self::SYNC_THIS_THREAD_MECHANISM,
            data_line: Some(ctr.dline()),
            instruction_line: Some(ctr.iline()),
            needs_clean: !ctr.idc(),
            needs_invalidate: !ctr.dic(),
            pipeline_flush_needed: true,
        }
    }
}

/// `[start, start + len)` as `(start, last)`; non-empty and not wrapping by
/// the contract of `backends`.
#[inline(always)]
fn span((start, len): (usize, usize)) -> (usize, usize) {
    (start, start + (len - 1))
}

/// The maintenance sequence over any set of non-empty, non-wrapping, mapped
/// ranges, each given as `(start, last)`: the cleans of `clean`, `dsb ish`,
/// the invalidations of `invalidate`, `dsb ish`, `isb`, with the line sizes
/// and IDC/DIC of one CTR_EL0 value for every range.
///
/// Ordering against the caller's code. The stores that wrote the code must
/// be emitted before the first `dc cvau`, and nothing the caller does
/// afterwards (publishing an entry point, say) may be moved before the
/// `isb`. The two `compiler_fence`s give exactly that: no memory access
/// crosses them, and rustc lowers every non-`pure` asm block here to
/// `asm sideeffect` with `memory(inaccessiblemem: readwrite)`, which LLVM
/// never moves across a fence either, nor past another such block. So
/// the asm blocks themselves can be `nomem`. That matters for the fixed
/// cost: LLVM's shrink-wrapping treats an asm block that may touch memory as
/// a possible access to the caller's stack frame, which then has to be
/// built on entry, before the fast path, in every caller whose own slow
/// path takes the address of a local (dropping or formatting the error
/// does): five more instructions per call.
#[inline(always)]
unsafe fn sequence(
    ctr: CtrEl0,
    clean: impl Iterator<Item = (usize, usize)>,
    invalidate: impl Iterator<Item = (usize, usize)>,
) {
    compiler_fence(SeqCst);
    if !ctr.idc() {
        for (start, last) in clean {
            Lines::covering(start, last, ctr.dline()).for_each(|line| {
                // SAFETY: `line` overlaps the caller's mapped range. The
                // operand is 64 bits on every AArch64 target: on ILP32 the
                // upper bits of a smaller `in(reg)` value are undefined (Rust
                // Reference, "Register operands").
                unsafe { asm!("dc cvau, {}", in(reg) line as u64, options(nomem, nostack, preserves_flags)) }
            });
        }
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nomem, nostack, preserves_flags)) };
    if !ctr.dic() {
        for (start, last) in invalidate {
            Lines::covering(start, last, ctr.iline()).for_each(|line| {
                // SAFETY: `line` overlaps the caller's mapped range.
                unsafe { asm!("ic ivau, {}", in(reg) line as u64, options(nomem, nostack, preserves_flags)) }
            });
        }
        // SAFETY: as above.
        unsafe { asm!("dsb ish", options(nomem, nostack, preserves_flags)) };
    }
    // SAFETY: as above.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    compiler_fence(SeqCst);
}

#[cfg(icache_membarrier)]
const PIPELINE_MECHANISM: &str = crate::membarrier::SYNC_CORE;
#[cfg(not(icache_membarrier))]
const PIPELINE_MECHANISM: &str = "unsupported on this OS (returns an error); publish with CodeEpoch";
