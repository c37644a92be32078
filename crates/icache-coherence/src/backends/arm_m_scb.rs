//! Armv7-M and Armv8-M Mainline bare metal (`thumbv7em-none-eabihf`,
//! `thumbv7m-none-eabi`, `thumbv8m.main-none-eabihf`): the System Control
//! Block's memory-mapped cache maintenance registers, with `dsb` and `isb`.
//!
//! M-profile cores have no CP15; their caches (Cortex-M7, M55, M85) are
//! maintained by word writes into the System Control Space (Armv7-M ARM,
//! DDI 0403E, "Cache maintenance operations" and the System Control Block
//! register summary; Cortex-M7 Devices Generic User Guide, DUI 0646,
//! "Cache maintenance operations"):
//!
//! | address | operation |
//! |---|---|
//! | 0xE000ED14 | CCR: DC = bit 16, IC = bit 17 |
//! | 0xE000ED7C | CTR: DminLine, IminLine |
//! | 0xE000EF58 | ICIMVAU: invalidate instruction cache line by address to PoU |
//! | 0xE000EF64 | DCCMVAU: clean data cache line by address to PoU |
//! | 0xE000EF78 | BPIALL: invalidate all branch predictors |
//!
//! The sequence, for each cache CCR reports enabled: DCCMVAU per data line,
//! `dsb`, ICIMVAU per instruction line, BPIALL, `dsb`, `isb`.
//!
//! A core without caches (Cortex-M3, M4, M33 without the option): CCR bits
//! 16 and 17 read as zero (reserved there), and the maintenance addresses
//! are not implemented, so this backend reads CCR first and writes a
//! maintenance register only for a cache that CCR says is on (see
//! [`crate::arm32_cache::m_plan`]); CTR is read only then, too. What such
//! a core needs after writing code is `dsb` and `isb`, which it always
//! gets. Caches outside the core (a vendor's flash accelerator, a system
//! cache on the bus) are not architectural and not covered.
//!
//! The System Control Space is privileged-only: an unprivileged access is a
//! BusFault. The backend checks IPSR and CONTROL.nPRIV (both readable
//! with `mrs` at any privilege) first and returns `PermissionDenied`
//! instead of faulting.

use core::arch::asm;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{compiler_fence, Ordering::SeqCst};

use super::Backend;
use crate::arm32_cache::{ctr_lines, m_plan, m_privileged, MPlan};
use crate::error::{Error, ErrorKind};
use crate::lines::Lines;
use crate::CacheInfo;

const CCR: *const u32 = 0xE000_ED14 as *const u32;
const CTR: *const u32 = 0xE000_ED7C as *const u32;
const ICIMVAU: *mut u32 = 0xE000_EF58 as *mut u32;
const DCCMVAU: *mut u32 = 0xE000_EF64 as *mut u32;
const BPIALL: *mut u32 = 0xE000_EF78 as *mut u32;

const MECHANISM: &str =
    "SCB DCCMVAU / dsb / ICIMVAU / BPIALL / dsb / isb for the caches CCR reports on (privileged); dsb / isb otherwise";
const PIPELINE_MECHANISM: &str =
    "unsupported on bare metal (returns an error): each core runs its own isb; publish with CodeEpoch";

/// The SCB's cache maintenance registers.
pub(crate) struct ArmMScb;

impl Backend for ArmMScb {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = PIPELINE_MECHANISM;

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let range = core::iter::once((start, start + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(range.clone(), range) }
    }

    unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
        let clean = core::iter::once((write, write + (len - 1)));
        let invalidate = core::iter::once((exec, exec + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(clean, invalidate) }
    }

    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        let all = ranges.map(|(start, len)| (start, start + (len - 1)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(all.clone(), all) }
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "bare-metal M profile: every other core must execute isb itself",
        )
        .or_code_epoch())
    }

    fn cache_info() -> CacheInfo {
        let plan = plan().unwrap_or(MPlan {
            clean: false,
            invalidate: false,
        });
        let lines = if plan.clean || plan.invalidate {
            // SAFETY: privileged (checked by `plan`), and CTR exists on a
            // core that has a cache.
            Some(ctr_lines(unsafe { read_volatile(CTR) }))
        } else {
            None
        };
        CacheInfo {
            mechanism: MECHANISM,
            pipeline_flush_mechanism: PIPELINE_MECHANISM,
            cross_modify_mechanism: PIPELINE_MECHANISM,
            sync_this_thread_mechanism: Self::SYNC_THIS_THREAD_MECHANISM,
            data_line: lines.filter(|_| plan.clean).map(|(d, _)| d),
            instruction_line: lines.filter(|_| plan.invalidate).map(|(_, i)| i),
            needs_clean: plan.clean,
            needs_invalidate: plan.invalidate,
            pipeline_flush_needed: true,
        }
    }
}

/// The caller's privilege, then what CCR says to maintain.
fn plan() -> Result<MPlan, Error> {
    let (ipsr, control): (u32, u32);
    // SAFETY: reading IPSR and CONTROL has no side effects, at any privilege.
    unsafe {
        asm!("mrs {}, IPSR", out(reg) ipsr, options(nomem, nostack, preserves_flags));
        asm!("mrs {}, CONTROL", out(reg) control, options(nomem, nostack, preserves_flags));
    }
    if m_privileged(ipsr, control).is_err() {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            "clear_cache",
            None,
            "the M-profile cache maintenance registers are privileged-only; \
             call from Handler mode or privileged Thread mode",
        ));
    }
    // SAFETY: CCR exists on every Armv7-M and Armv8-M core, and the caller
    // is privileged.
    Ok(m_plan(unsafe { read_volatile(CCR) }))
}

/// The sequence of the module docs over non-empty, non-wrapping ranges
/// given as `(start, last)`.
unsafe fn sequence(
    clean: impl Iterator<Item = (usize, usize)>,
    invalidate: impl Iterator<Item = (usize, usize)>,
) -> Result<(), Error> {
    let plan = plan()?;
    compiler_fence(SeqCst);
    if plan.clean || plan.invalidate {
        // SAFETY: privileged, and a cache exists (CCR said so).
        let (dline, iline) = ctr_lines(unsafe { read_volatile(CTR) });
        if plan.clean {
            for (start, last) in clean {
                Lines::covering(start, last, dline).for_each(|line| {
                    // SAFETY: a write-only maintenance register of an
                    // implemented data cache; the address is the operand.
                    unsafe { write_volatile(DCCMVAU, line as u32) }
                });
            }
        }
        // SAFETY: a barrier has no memory-safety preconditions.
        unsafe { asm!("dsb", options(nostack, preserves_flags)) };
        if plan.invalidate {
            for (start, last) in invalidate {
                Lines::covering(start, last, iline).for_each(|line| {
                    // SAFETY: as above, for the instruction cache.
                    unsafe { write_volatile(ICIMVAU, line as u32) }
                });
            }
        }
        // SAFETY: BPIALL ignores the value written; the core has caches, so
        // the SCB implements it (Cortex-M7 ignores the operation itself).
        unsafe { write_volatile(BPIALL, 0) };
    }
    // SAFETY: barriers have no memory-safety preconditions.
    unsafe { asm!("dsb", "isb", options(nostack, preserves_flags)) };
    compiler_fence(SeqCst);
    Ok(())
}
