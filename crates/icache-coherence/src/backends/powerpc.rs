//! POWER / PowerPC Linux (32- and 64-bit): `dcbst` / `sync` / `icbi` /
//! `sync` / `isync`, with line sizes from the auxiliary vector.
//!
//! Power ISA Book II, "Instruction Storage" (the sequence for modifying
//! instructions): `dcbst` each data block so the new bytes reach storage,
//! `sync` so they are done, `icbi` each instruction block, `sync` so the
//! invalidations are done everywhere, `isync` so this thread refetches.
//! The block sizes come from `AT_DCACHEBSIZE` (19) and `AT_ICACHEBSIZE` (20),
//! which the kernel always supplies on powerpc (arch/powerpc/include/asm/elf.h
//! `ARCH_DLINFO`). When `AT_HWCAP` has `PPC_FEATURE_ICACHE_SNOOP`
//! (0x00002000, POWER5 and later), the instruction cache snoops stores and
//! one `sync; icbi; sync; isync` on any address of the range suffices: this
//! is what Linux's own `flush_icache_range` does for
//! `CPU_FTR_COHERENT_ICACHE` (arch/powerpc/mm/cacheflush.c).
//!
//! Other threads need `pipeline_flush_mt` (membarrier SYNC_CORE, supported
//! on powerpc).

use core::arch::asm;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::Backend;
use crate::error::Error;
use crate::lines::Lines;
use crate::CacheInfo;

const MECHANISM: &str =
    "dcbst / sync / icbi / sync / isync (auxv block sizes; ICACHE_SNOOP shortcut)";

const AT_DCACHEBSIZE: libc::c_ulong = 19;
const AT_ICACHEBSIZE: libc::c_ulong = 20;
const PPC_FEATURE_ICACHE_SNOOP: libc::c_ulong = 0x0000_2000;
/// Used when the auxiliary vector has no size: the smallest block of any
/// PowerPC that Linux supports (8xx), so no block is ever skipped.
const FALLBACK_BLOCK: usize = 16;

/// (data block, instruction block, snoop), packed, 0 = not read yet.
static GEOMETRY: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy)]
struct Geometry {
    dblock: usize,
    iblock: usize,
    snoop: bool,
}

fn block(v: libc::c_ulong) -> usize {
    let v = v as usize;
    if v.is_power_of_two() && v >= FALLBACK_BLOCK {
        v
    } else {
        FALLBACK_BLOCK
    }
}

#[inline]
fn geometry() -> Geometry {
    let mut packed = GEOMETRY.load(Relaxed);
    if packed == 0 {
        // SAFETY: getauxval has no preconditions.
        let (d, i, hw) = unsafe {
            (
                libc::getauxval(AT_DCACHEBSIZE),
                libc::getauxval(AT_ICACHEBSIZE),
                libc::getauxval(libc::AT_HWCAP),
            )
        };
        let (d, i) = (block(d), block(i));
        let snoop = hw & PPC_FEATURE_ICACHE_SNOOP != 0;
        // log2 sizes in bits 0..8 and 8..16, snoop in bit 16, bit 17 = valid.
        packed = d.trailing_zeros() as usize
            | (i.trailing_zeros() as usize) << 8
            | (snoop as usize) << 16
            | 1 << 17;
        GEOMETRY.store(packed, Relaxed);
    }
    Geometry {
        dblock: 1 << (packed & 0xff),
        iblock: 1 << ((packed >> 8) & 0xff),
        snoop: packed & (1 << 16) != 0,
    }
}

/// The Power ISA sequence.
pub(crate) struct Power;

impl Backend for Power {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = crate::membarrier::SYNC_CORE;

    // No fast path (the default): the first call reads the block sizes with
    // `getauxval`, a call, and a fast path that may call would cost every
    // caller a stack frame.

    #[inline]
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let range = core::iter::once((start, len));
        // SAFETY: forwarded from the caller.
        unsafe { sequence(range.clone(), range) };
        Ok(())
    }

    /// Double-mapped code: `dcbst` through the writable alias, `icbi`
    /// through the executable one (the address instruction fetch will use).
    unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
        // SAFETY: forwarded from the caller.
        unsafe { sequence(core::iter::once((write, len)), core::iter::once((exec, len))) };
        Ok(())
    }

    /// A batch: every `dcbst`, one `sync`, every `icbi`, one `sync; isync`.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        // SAFETY: forwarded from the caller.
        unsafe { sequence(ranges.clone(), ranges) };
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
    }

    fn cache_info() -> CacheInfo {
        let g = geometry();
        CacheInfo {
            mechanism: MECHANISM,
            pipeline_flush_mechanism: Self::PIPELINE_MECHANISM,
            cross_modify_mechanism: Self::CROSS_MODIFY_MECHANISM,
            sync_this_thread_mechanism: Self::SYNC_THIS_THREAD_MECHANISM,
            data_line: Some(g.dblock),
            instruction_line: Some(g.iblock),
            needs_clean: !g.snoop,
            needs_invalidate: true,
            pipeline_flush_needed: true,
        }
    }
}

#[inline(always)]
unsafe fn sequence(
    clean: impl Iterator<Item = (usize, usize)>,
    mut invalidate: impl Iterator<Item = (usize, usize)>,
) {
    let g = geometry();
    // No `nomem` on these blocks: the compiler must not sink the caller's
    // code stores past them.
    if g.snoop {
        // One `icbi` on any address of the code discards stale prefetched
        // instructions (the kernel's CPU_FTR_COHERENT_ICACHE path).
        if let Some((exec, _)) = invalidate.next() {
            // SAFETY: `exec` is inside the caller's mapped range.
            unsafe {
                asm!("sync", "icbi 0, {0}", "sync", "isync", in(reg_nonzero) exec, options(nostack, preserves_flags))
            };
        }
        return;
    }
    for (start, len) in clean {
        Lines::covering(start, start + (len - 1), g.dblock).for_each(|b| {
            // SAFETY: `b` overlaps the caller's mapped range.
            unsafe { asm!("dcbst 0, {0}", in(reg_nonzero) b, options(nostack, preserves_flags)) }
        });
    }
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe { asm!("sync", options(nostack, preserves_flags)) };
    for (start, len) in invalidate {
        Lines::covering(start, start + (len - 1), g.iblock).for_each(|b| {
            // SAFETY: `b` overlaps the caller's mapped range.
            unsafe { asm!("icbi 0, {0}", in(reg_nonzero) b, options(nostack, preserves_flags)) }
        });
    }
    // SAFETY: as above.
    unsafe { asm!("sync", "isync", options(nostack, preserves_flags)) };
}

