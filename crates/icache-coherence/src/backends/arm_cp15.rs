//! 32-bit Arm bare metal, A and R profiles (`armv7a-none-eabi`,
//! `armv7r-none-eabi`, `armv8r-none-eabihf`...): CP15 cache maintenance by
//! address, which needs PL1 (a kernel, a hypervisor, firmware).
//!
//! The sequence of the Arm ARM (DDI 0406C, "Ordering of cache and
//! branch predictor maintenance operations", and the example "Ensuring the
//! visibility of updates to instructions"):
//!
//! 1. DCCMVAU (`mcr p15, 0, r, c7, c11, 1`) each data line overlapping the
//!    range: clean to the Point of Unification;
//! 2. `dsb`: the cleans complete;
//! 3. ICIMVAU (`mcr p15, 0, r, c7, c5, 1`) each instruction line;
//! 4. BPIALL (`mcr p15, 0, r, c7, c5, 6`): the branch predictor may hold
//!    targets of the old code ("Branch predictors": required after
//!    instructions change unless the implementation makes it unnecessary);
//! 5. `dsb`, then `isb`: the maintenance completes and this core refetches.
//!
//! Line sizes come from CTR (`mrc p15, 0, r, c0, c0, 1`, DminLine and
//! IminLine), read on every call: one instruction, and a core with other
//! line sizes (big.LITTLE in AArch32) is then always right for itself.
//! Only lines overlapping the range are touched. The `dsb` is the full
//! system barrier, valid on every A and R profile core. With the
//! Multiprocessing Extensions the cleans and invalidations by address are
//! broadcast to the Inner Shareable domain; BPIALL is this core's own, and
//! other cores still need their own `isb`, which is why there is no
//! pipeline flush here (see `CodeEpoch`).
//!
//! At PL0 (User mode) these CP15 operations are UNDEFINED: the caller's
//! contract says PL1, and a user-mode program on an OS uses its OS's
//! backend (Linux: the `cacheflush` syscall) instead.

use core::arch::asm;
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use super::Backend;
use crate::arm32_cache::ctr_lines;
use crate::error::Error;
use crate::lines::Lines;
use crate::CacheInfo;

const MECHANISM: &str = "CP15 DCCMVAU / dsb / ICIMVAU / BPIALL / dsb / isb (CTR line sizes; PL1)";
const PIPELINE_MECHANISM: &str =
    "unsupported on bare metal (returns an error): each core runs its own isb; publish with CodeEpoch";

/// CP15 maintenance by address.
pub(crate) struct ArmCp15;

/// This core's CTR.
#[inline(always)]
fn read_ctr() -> u32 {
    let ctr: u32;
    // SAFETY: reading CTR at PL1 has no side effects.
    unsafe { asm!("mrc p15, 0, {}, c0, c0, 1", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    ctr
}

impl Backend for ArmCp15 {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = PIPELINE_MECHANISM;

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let range = core::iter::once((start, start + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(range.clone(), range) };
        Ok(())
    }

    unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
        let clean = core::iter::once((write, write + (len - 1)));
        let invalidate = core::iter::once((exec, exec + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(clean, invalidate) };
        Ok(())
    }

    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        let all = ranges.map(|(start, len)| (start, start + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(all.clone(), all) };
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "bare-metal 32-bit Arm: every other core must execute isb itself",
        )
        .or_code_epoch())
    }

    fn cache_info() -> CacheInfo {
        let (dline, iline) = ctr_lines(read_ctr());
        CacheInfo {
            mechanism: MECHANISM,
            pipeline_flush_mechanism: PIPELINE_MECHANISM,
            cross_modify_mechanism: PIPELINE_MECHANISM,
            sync_this_thread_mechanism: Self::SYNC_THIS_THREAD_MECHANISM,
            data_line: Some(dline),
            instruction_line: Some(iline),
            needs_clean: true,
            needs_invalidate: true,
            pipeline_flush_needed: true,
        }
    }
}

/// The sequence of the module docs over non-empty, non-wrapping, mapped
/// ranges given as `(start, last)`. The compiler fences keep the caller's
/// stores before the first clean and its later accesses after the `isb`.
#[inline(always)]
unsafe fn sequence(
    clean: impl Iterator<Item = (usize, usize)>,
    invalidate: impl Iterator<Item = (usize, usize)>,
) {
    let (dline, iline) = ctr_lines(read_ctr());
    compiler_fence(SeqCst);
    for (start, last) in clean {
        Lines::covering(start, last, dline).for_each(|line| {
            // SAFETY: `line` overlaps the caller's mapped range; PL1 by contract.
            unsafe { asm!("mcr p15, 0, {}, c7, c11, 1", in(reg) line, options(nostack, preserves_flags)) }
        });
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb", options(nostack, preserves_flags)) };
    for (start, last) in invalidate {
        Lines::covering(start, last, iline).for_each(|line| {
            // SAFETY: as above.
            unsafe { asm!("mcr p15, 0, {}, c7, c5, 1", in(reg) line, options(nostack, preserves_flags)) }
        });
    }
    // SAFETY: BPIALL ignores its operand (SBZ); PL1 by contract.
    unsafe { asm!("mcr p15, 0, {}, c7, c5, 6", in(reg) 0u32, options(nostack, preserves_flags)) };
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb", "isb", options(nostack, preserves_flags)) };
    compiler_fence(SeqCst);
}
