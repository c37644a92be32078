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
//! SCTLR_EL1.UCT). big.LITTLE systems can have cores with different line
//! sizes. Linux 4.10 and later sanitise that (every core then reads the
//! same safe value), so there CTR_EL0 is read once per process
//! ([`crate::ctr_el0::Steps`]) and a call reads no system register at all;
//! elsewhere every call folds its core's value into a process-wide running
//! minimum ([`crate::ctr_el0::RunningMin`]). Only lines overlapping the
//! range are touched: `dc`/`ic` at EL0 fault on unmapped addresses.
//!
//! Linux cleans a page only the first time it becomes executable
//! (arch/arm64/mm/flush.c, `PG_dcache_clean`), so rewriting code in a page
//! that has already run, as a JIT reusing a code region does, depends on this
//! sequence; mprotect is never a substitute.

use core::arch::asm;

use super::Backend;
use crate::ctr_el0::{CtrEl0, RunningMin};
#[cfg(linux_kernel)]
use crate::ctr_el0::{Steps, SKIP};
use crate::error::Error;
#[cfg(linux_kernel)]
use crate::lines;
use crate::lines::Lines;
use crate::CacheInfo;

const MECHANISM: &str = "dc cvau / dsb ish / ic ivau / dsb ish / isb (CTR_EL0 line sizes)";

/// Linux 4.10 and later: CTR_EL0 read once (see [`Steps`]).
#[cfg(linux_kernel)]
static STEPS: Steps = Steps::new();
/// Older Linux kernels and the other OSes: the running minimum.
static CTR_MIN: RunningMin = RunningMin::new();

/// Ranges longer than this leave the inlined fast path for the out-of-line
/// one, whose loops handle 32 lines per iteration
/// ([`Lines::for_each_unrolled`]). Below it the plain loops are shorter to
/// set up, and they keep the inlined code small. 4 KiB is 16 lines of
/// A64FX's 256 bytes, 64 of the common 64; and `cmp` encodes it as one
/// immediate (`#1, lsl #12`).
const UNROLL_ABOVE: usize = 4096;

/// This core's CTR_EL0.
#[inline(always)]
fn read_ctr_el0() -> u64 {
    let raw: u64;
    // SAFETY: reading CTR_EL0 at EL0 is allowed on these OSes (SCTLR_EL1.UCT);
    // on Linux with mismatched caches the kernel traps and emulates it.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) raw, options(nomem, nostack, preserves_flags)) };
    raw
}

/// The line sizes and flags to use now, on the out-of-line paths. On Linux
/// the first call decides, once, whether the kernel sanitises CTR_EL0
/// (then it is read once and kept, and the fast path needs no `mrs`);
/// elsewhere, and on older kernels, every call folds this core's value
/// into the running minimum.
#[inline(always)]
fn ctr_el0() -> CtrEl0 {
    #[cfg(linux_kernel)]
    {
        if let Some(settled) = STEPS.ctr() {
            return settled;
        }
        let raw = read_ctr_el0();
        if kernel::sanitises_ctr_el0() {
            return STEPS.settle(CtrEl0(raw));
        }
        CTR_MIN.update(raw)
    }
    #[cfg(not(linux_kernel))]
    CTR_MIN.update(read_ctr_el0())
}

/// The two words of [`STEPS`] in one `ldp` (the data word is 0 until
/// settled). Two relaxed atomic loads would be two `ldr`s: LLVM does not
/// pair atomic accesses. An `ldp` of two aligned 64-bit words is two
/// single-copy atomic reads (Arm ARM, "Single-copy atomicity"), exactly
/// what two relaxed loads promise; `Steps` is `repr(C)` with the data word
/// first.
#[cfg(linux_kernel)]
#[inline(always)]
fn load_steps() -> (usize, usize) {
    #[cfg(target_pointer_width = "64")]
    {
        let (data, instruction): (usize, usize);
        // SAFETY: reads the two adjacent, aligned words of a static.
        unsafe {
            asm!(
                "ldp {d}, {i}, [{p}]",
                p = in(reg) &STEPS,
                d = out(reg) data,
                i = out(reg) instruction,
                options(readonly, nostack, preserves_flags),
            )
        };
        (data, instruction)
    }
    #[cfg(not(target_pointer_width = "64"))]
    STEPS.get().unwrap_or((0, 0))
}

/// The one question the library asks the kernel about CTR_EL0.
#[cfg(linux_kernel)]
mod kernel {
    use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

    /// 0: not asked yet; 1: sanitises; 2: does not.
    static ANSWER: AtomicU8 = AtomicU8::new(0);

    /// Whether the running kernel traps and sanitises mismatched CTR_EL0
    /// values ([`crate::ctr_el0::kernel_sanitises`]), from `uname` once per
    /// process. If `uname` fails, the answer is no: the running minimum is
    /// always safe.
    #[cold]
    pub(super) fn sanitises_ctr_el0() -> bool {
        match ANSWER.load(Relaxed) {
            1 => return true,
            2 => return false,
            _ => {}
        }
        // SAFETY: `uname` writes only into the buffer it is given.
        let answer = unsafe {
            let mut name: libc::utsname = core::mem::zeroed();
            libc::uname(&mut name) == 0 && {
                // `c_char` is `u8` on every AArch64 Linux and Android ABI.
                let release: &[u8] = &name.release;
                let len = release.iter().position(|&b| b == 0).unwrap_or(release.len());
                crate::ctr_el0::kernel_sanitises(&release[..len])
            }
        };
        ANSWER.store(if answer { 1 } else { 2 }, Relaxed);
        answer
    }
}

/// The AArch64 user-space sequence.
pub(crate) struct Aarch64;

impl Backend for Aarch64 {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = PIPELINE_MECHANISM;
    const FAST_PATH_MAX_LEN: usize = UNROLL_ABOVE;

    /// Linux 4.10 and later, every call after the first: one `ldp` of the
    /// two line masks settled by the first call, and no `mrs` at all (see
    /// [`Steps`]); before the first call, on older kernels, and for ranges
    /// over [`UNROLL_ABOVE`], the out-of-line `clear_cache`.
    #[cfg(linux_kernel)]
    #[inline(always)]
    unsafe fn clear_cache_fast(start: usize, len: usize, last: usize) -> bool {
        let _ = len;
        let (data, instruction) = load_steps();
        if data == 0 {
            return false;
        }
        // SAFETY: forwarded from the caller; Linux user addresses are far
        // below the top of the address space (`walk_to_last_byte`).
        unsafe { walk_sequence(data, instruction, start, last) };
        true
    }

    /// Elsewhere (the BSDs, bare metal): every call reads CTR_EL0 and
    /// compares its used fields with the running minimum, one `mrs`, one
    /// load and one compare; a core with a value not folded in yet (every
    /// first call, and a big.LITTLE core with other line sizes) goes to the
    /// out-of-line `clear_cache`, whose fold is a compare-and-swap loop. On
    /// a system whose cores report different line sizes, the cores with the
    /// bigger lines keep taking that path: a call and a merge, but no
    /// atomic write.
    #[cfg(not(linux_kernel))]
    #[inline(always)]
    unsafe fn clear_cache_fast(start: usize, len: usize, last: usize) -> bool {
        let raw = read_ctr_el0();
        let _ = len;
        if !CTR_MIN.is_current(raw) {
            return false;
        }
        let range = core::iter::once((start, last));
        // SAFETY: forwarded from the caller.
        unsafe { sequence::<false>(CtrEl0(raw), range.clone(), range) };
        true
    }

    #[inline]
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let range = core::iter::once(span((start, len)));
        // SAFETY: forwarded from the caller.
        unsafe { sequence::<true>(ctr_el0(), range.clone(), range) };
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
        let (clean, invalidate) = (core::iter::once(clean), core::iter::once(invalidate));
        // SAFETY: forwarded from the caller.
        unsafe { sequence::<true>(ctr_el0(), clean, invalidate) };
        Ok(())
    }

    /// A batch: every clean, one `dsb ish`, every invalidate, one `dsb ish`,
    /// one `isb`, instead of the full sequence per range.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        let all = ranges.map(span);
        // SAFETY: forwarded from the caller.
        unsafe { sequence::<true>(ctr_el0(), all.clone(), all) };
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

// Ordering against the caller's code, by what the Rust Reference
// guarantees ("Inline assembly", options). The stores that wrote the code
// must be performed before the first maintenance instruction, and nothing
// the caller does afterwards (publishing an entry point, say) may be moved
// before the `isb`. The Reference says of `nomem`: "The `asm!` block does
// not read from or write to any memory accessible outside of the `asm!`
// block. This allows the compiler to cache the values of modified global
// variables in registers across execution of the `asm!` block since it
// knows that they are not read or written to by the `asm!`." So a block
// *without* `nomem` may read any memory it can reach, the code bytes
// included (their address is its operand), and the compiler must have
// performed every store to them before it; `readonly` ("does not write to
// any memory accessible outside of the `asm!` block") keeps that while still
// letting the compiler keep unmodified values in registers. Every
// maintenance instruction and barrier below is therefore `readonly`: the
// code stores come before the first of them, and a store after the `isb`
// cannot be moved above a block that may read its location. What it costs
// against `nomem` plus `compiler_fence` (which rested on how rustc lowers
// `asm!` to LLVM today, not on the Reference) is in BENCHMARKS.md.

/// `dc cvau`: clean the data line holding `line` to the Point of
/// Unification.
///
/// # Safety
///
/// `line` is in a mapped page (`dc` at EL0 faults otherwise).
#[inline(always)]
unsafe fn clean(line: usize) {
    // SAFETY: by the caller. The operand is 64 bits on every AArch64
    // target: on ILP32 the upper bits of a smaller `in(reg)` value are
    // undefined (Rust Reference, "Register operands").
    unsafe { asm!("dc cvau, {}", in(reg) line as u64, options(readonly, nostack, preserves_flags)) }
}

/// `ic ivau`: invalidate the instruction line holding `line` to the Point
/// of Unification, on every core of the Inner Shareable domain.
///
/// # Safety
///
/// As for [`clean`].
#[inline(always)]
unsafe fn invalidate(line: usize) {
    // SAFETY: by the caller; 64-bit operand as in `clean`.
    unsafe { asm!("ic ivau, {}", in(reg) line as u64, options(readonly, nostack, preserves_flags)) }
}

/// `dsb ish`: every earlier store and maintenance completes for the Inner
/// Shareable domain.
#[inline(always)]
fn dsb_ish() {
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe { asm!("dsb ish", options(readonly, nostack, preserves_flags)) }
}

/// `isb`: this core refetches everything after it.
#[inline(always)]
fn isb() {
    // SAFETY: as for `dsb_ish`.
    unsafe { asm!("isb", options(readonly, nostack, preserves_flags)) }
}

/// The inlined sequence of the fast path, for one range `[start, last]`,
/// with the two words of [`Steps`]: each a line mask, or [`SKIP`] where
/// CTR_EL0.IDC / DIC make that half unnecessary. The `dsb` after the cleans
/// stays even when IDC skipped them: it orders the code stores before the
/// invalidations. The one after the invalidations goes with them.
///
/// # Safety
///
/// `[start, last]` is mapped, and its last line is not the top line of the
/// address space ([`lines::walk_to_last_byte`]).
#[cfg(linux_kernel)]
#[inline(always)]
unsafe fn walk_sequence(data: usize, instruction: usize, start: usize, last: usize) {
    if data & SKIP == 0 {
        // SAFETY: every line overlaps the caller's mapped range.
        lines::walk_to_last_byte(start, last, data, |line| unsafe { clean(line) });
    }
    dsb_ish();
    if instruction & SKIP == 0 {
        // SAFETY: as above.
        lines::walk_to_last_byte(start, last, instruction, |line| unsafe { invalidate(line) });
        dsb_ish();
    }
    isb();
}

/// The maintenance sequence over any set of non-empty, non-wrapping, mapped
/// ranges, each given as `(start, last)`: the cleans of `clean_ranges`,
/// `dsb ish`, the invalidations of `invalidate_ranges`, `dsb ish`, `isb`,
/// with the line sizes and IDC/DIC of one CTR_EL0 value for every range.
/// `UNROLLED` picks [`Lines::for_each_unrolled`] (the out-of-line paths)
/// or [`Lines::for_each`] (the inlined fast path off Linux).
///
/// # Safety
///
/// Every range is mapped.
#[inline(always)]
unsafe fn sequence<const UNROLLED: bool>(
    ctr: CtrEl0,
    clean_ranges: impl Iterator<Item = (usize, usize)>,
    invalidate_ranges: impl Iterator<Item = (usize, usize)>,
) {
    fn walk<const UNROLLED: bool>(lines: Lines, f: impl FnMut(usize)) {
        if UNROLLED {
            lines.for_each_unrolled(f)
        } else {
            lines.for_each(f)
        }
    }
    if !ctr.idc() {
        for (start, last) in clean_ranges {
            // SAFETY: every line overlaps the caller's mapped range.
            walk::<UNROLLED>(Lines::covering(start, last, ctr.dline()), |line| unsafe {
                clean(line)
            });
        }
    }
    dsb_ish();
    if !ctr.dic() {
        for (start, last) in invalidate_ranges {
            // SAFETY: as above.
            walk::<UNROLLED>(Lines::covering(start, last, ctr.iline()), |line| unsafe {
                invalidate(line)
            });
        }
        dsb_ish();
    }
    isb();
}

#[cfg(icache_membarrier)]
const PIPELINE_MECHANISM: &str = crate::membarrier::SYNC_CORE;
#[cfg(not(icache_membarrier))]
const PIPELINE_MECHANISM: &str = "unsupported on this OS (returns an error); publish with CodeEpoch";
