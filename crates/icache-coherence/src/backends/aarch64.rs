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

use crate::ctr_el0::{CtrEl0, RunningMin};
use crate::error::Error;
use crate::lines::Lines;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "dc cvau / dsb ish / ic ivau / dsb ish / isb (CTR_EL0 line sizes)";

static CTR_MIN: RunningMin = RunningMin::new();

#[inline(always)]
fn ctr_el0() -> CtrEl0 {
    let raw: u64;
    // SAFETY: reading CTR_EL0 at EL0 is allowed on these OSes (SCTLR_EL1.UCT);
    // on Linux with mismatched caches the kernel traps and emulates it.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) raw, options(nomem, nostack, preserves_flags)) };
    CTR_MIN.update(raw)
}

/// The contract of `backends`: `[start, start + len)` is non-empty, does not
/// wrap, and is mapped.
#[inline]
pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    let ctr = ctr_el0();
    let last = start + (len - 1);
    // The asm blocks below have no `nomem`: the compiler must treat them as
    // reading memory, so it cannot sink the caller's code stores past them.
    if !ctr.idc() {
        Lines::covering(start, last, ctr.dline()).for_each(|line| {
            // SAFETY: `line` overlaps the caller's mapped range.
            unsafe { asm!("dc cvau, {}", in(reg) line, options(nostack, preserves_flags)) }
        });
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    if !ctr.dic() {
        Lines::covering(start, last, ctr.iline()).for_each(|line| {
            // SAFETY: `line` overlaps the caller's mapped range.
            unsafe { asm!("ic ivau, {}", in(reg) line, options(nostack, preserves_flags)) }
        });
        // SAFETY: as above.
        unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
    }
    // SAFETY: as above.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
    Ok(())
}

#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
pub(crate) use super::linux_membarrier::pipeline_flush_mt;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const PIPELINE_MECHANISM: &str = super::MEMBARRIER_SYNC_CORE;

/// The BSDs (and bare metal) have no documented broadcast context synchronization that this
/// crate can rely on (FreeBSD 14.1 added a membarrier(2), not yet used here),
/// so the guarantee cannot be given: report it instead of pretending.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    Err(Error::new(
        crate::ErrorKind::Unsupported,
        "pipeline_flush_mt",
        None,
        "no broadcast context synchronization is implemented for this OS on AArch64; \
         run published code only on the thread that called clear_cache",
    ))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const PIPELINE_MECHANISM: &str = "unsupported on this OS (returns an error)";

pub(crate) fn cache_info() -> CacheInfo {
    let ctr = ctr_el0();
    CacheInfo {
        mechanism: MECHANISM,
        pipeline_flush_mechanism: PIPELINE_MECHANISM,
        data_line: Some(ctr.dline()),
        instruction_line: Some(ctr.iline()),
        needs_clean: !ctr.idc(),
        needs_invalidate: !ctr.dic(),
        pipeline_flush_needed: true,
    }
}
