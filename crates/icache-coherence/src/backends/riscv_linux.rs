//! RISC-V Linux (rv64 and rv32): the `riscv_flush_icache` syscall with
//! flags = 0, which covers every hart of the process.
//!
//! `fence.i` orders only the local hart's instruction fetches, and a thread
//! can migrate to another hart at any time, so a bare `fence.i` is wrong on a
//! multi-core system. The syscall is `riscv_flush_icache(start, end, flags)`,
//! number 259 (`__NR_arch_specific_syscall + 15`,
//! arch/riscv/include/uapi/asm/unistd.h). flags = 0 flushes every hart;
//! flags = 1 (`SYS_RISCV_FLUSH_ICACHE_LOCAL`) only the calling thread, which
//! is the mistake the crate we replace made. The kernel ignores the range.
//!
//! Why `pipeline_flush_mt` has nothing left to do here (in the default mode): with flags = 0 the
//! kernel (`flush_icache_mm(mm, false)`, arch/riscv/mm/cacheflush.c) executes
//! `fence.i` on the calling hart, sends a synchronous IPI (or SBI remote
//! `fence.i`) to every other hart currently running the process, and marks
//! all remaining harts stale so that they execute `fence.i` before running
//! this process again. When the syscall returns, every thread has therefore
//! passed the fetch synchronization, ordered after the caller's stores.
//!
//! With the `one-core` feature the program runs on one hart by contract, so
//! `clear_cache` is that hart's own `fence.i`, no system call.
//!
//! Under qemu-user 7.2 the syscall is answered inside QEMU (it returns 0 and
//! shows in neither `-strace` nor a plugin's syscall callback).

use core::sync::atomic::{AtomicBool, Ordering::Relaxed};

use super::Backend;
use crate::error::{Error, ErrorKind};
use crate::CacheInfo;

const MECHANISM: &str = "riscv_flush_icache syscall (259), flags = 0 (all harts)";
const PIPELINE_MECHANISM: &str = "none left to do (riscv_flush_icache already covered every hart)";

const NR_RISCV_FLUSH_ICACHE: libc::c_long = 259;
/// Not `SYS_RISCV_FLUSH_ICACHE_LOCAL` (1): every hart of the process.
const FLAGS_ALL_HARTS: libc::c_ulong = 0;

/// `prctl` constants from include/uapi/linux/prctl.h (Linux 6.10+).
const PR_RISCV_SET_ICACHE_FLUSH_CTX: libc::c_int = 71;
const PR_RISCV_CTX_SW_FENCEI_ON: libc::c_ulong = 0;
const PR_RISCV_CTX_SW_FENCEI_OFF: libc::c_ulong = 1;
const PR_RISCV_SCOPE_PER_PROCESS: libc::c_ulong = 0;

/// Set once [`enable_user_fence_i`] succeeded: `clear_cache` is then a
/// user-space `fence.i`, and `pipeline_flush_mt` a membarrier SYNC_CORE.
static USER_FENCE_I: AtomicBool = AtomicBool::new(false);

/// `riscv_flush_icache(flags = 0)`, or `fence.i` after the prctl opt-in.
pub(crate) struct RiscvLinux;

impl Backend for RiscvLinux {
    const MECHANISM: &'static str = MECHANISM;
    const PIPELINE_MECHANISM: &'static str = PIPELINE_MECHANISM;

    // No fast path (the default): the mechanism is a system call, which can
    // fail.

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        if local_fence_i() {
            fence_i();
            return Ok(());
        }
        flush_all_harts(start, start.wrapping_add(len))
    }

    /// A batch: one syscall (the kernel ignores the range and flushes every
    /// hart's whole instruction cache anyway), or one `fence.i`.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        if local_fence_i() {
            fence_i();
            return Ok(());
        }
        let (start, end) = ranges.fold((usize::MAX, 0), |(lo, hi), (start, len)| {
            (lo.min(start), hi.max(start.wrapping_add(len)))
        });
        flush_all_harts(start, end)
    }

    // Double-mapped code (the default, the executable address): both
    // mechanisms flush whole instruction caches, so the aliases need
    // nothing special.

    /// In the default (syscall) mode there is nothing left to do; in the
    /// user-space `fence.i` mode other harts need membarrier SYNC_CORE.
    fn pipeline_flush_mt() -> Result<(), Error> {
        if USER_FENCE_I.load(Relaxed) {
            return super::membarrier_flush::pipeline_flush_mt();
        }
        Ok(())
    }

    /// A reader's own step. In the default mode nothing is left: the
    /// writer's `riscv_flush_icache(flags = 0)` made every hart of the
    /// process execute `fence.i` (or marked it to do so before it runs this
    /// process again) after the writer's stores, before the syscall
    /// returned, so a reader that read the publication afterwards fetches
    /// the new code. After the prctl opt-in the writer only ran a local
    /// `fence.i`, and the kernel keeps a user `fence.i` valid across
    /// migration: the reader runs its own.
    #[inline(always)]
    fn sync_this_thread() {
        if local_fence_i() {
            fence_i();
        }
    }

    const SYNC_THIS_THREAD_MECHANISM: &'static str =
        "nothing after riscv_flush_icache(flags = 0); fence.i after the prctl opt-in";

    // Cross-modifying code (the default, the pipeline flush): the syscall's
    // IPIs already made every hart execute `fence.i` after the stores,
    // which also covers harts executing the modified code right now.

    fn cache_info() -> CacheInfo {
        let user = USER_FENCE_I.load(Relaxed);
        CacheInfo {
            mechanism: if cfg!(feature = "one-core") {
                "fence.i (one-core feature: the only hart)"
            } else if user {
                "fence.i (PR_RISCV_SET_ICACHE_FLUSH_CTX on)"
            } else {
                MECHANISM
            },
            pipeline_flush_mechanism: if user {
                crate::membarrier::SYNC_CORE
            } else {
                PIPELINE_MECHANISM
            },
            cross_modify_mechanism: if user {
                crate::membarrier::SYNC_CORE
            } else {
                PIPELINE_MECHANISM
            },
            sync_this_thread_mechanism: if user {
                "fence.i"
            } else {
                "nothing (riscv_flush_icache already covered every hart)"
            },
            data_line: None,
            instruction_line: None,
            needs_clean: true,
            needs_invalidate: true,
            pipeline_flush_needed: user,
        }
    }
}

/// Whether `clear_cache` is a local `fence.i`: after the prctl opt-in, or
/// always with the `one-core` feature, whose program runs on one hart, so
/// that hart's own `fence.i` is every hart's (the meaning upstream's
/// `one-core` feature gives it too).
#[inline(always)]
fn local_fence_i() -> bool {
    cfg!(feature = "one-core") || USER_FENCE_I.load(Relaxed)
}

fn flush_all_harts(start: usize, end: usize) -> Result<(), Error> {
    // SAFETY: the syscall reads only its integer arguments.
    let r = unsafe { libc::syscall(NR_RISCV_FLUSH_ICACHE, start, end, FLAGS_ALL_HARTS) };
    if r != 0 {
        return Err(Error::os(
            "riscv_flush_icache",
            super::errno(),
            "the kernel refused to flush the instruction caches",
        ));
    }
    Ok(())
}

#[inline(always)]
fn fence_i() {
    // No `nomem`: the compiler must not sink the caller's stores past it.
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe { core::arch::asm!("fence.i", options(nostack, preserves_flags)) };
}

/// Opt-in (Linux 6.10+): make a user-space `fence.i` valid across thread
/// migration with `prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX, ON, PER_PROCESS)`,
/// so `clear_cache` no longer enters the kernel (OpenJDK measured +15%).
/// Other threads then need membarrier SYNC_CORE, so that is registered
/// here too; if either step fails, the library stays on the syscall.
pub(crate) fn enable_user_fence_i() -> Result<(), Error> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe {
        libc::prctl(
            PR_RISCV_SET_ICACHE_FLUSH_CTX,
            PR_RISCV_CTX_SW_FENCEI_ON,
            PR_RISCV_SCOPE_PER_PROCESS,
        )
    };
    if r != 0 {
        let errno = super::errno();
        let kind = if errno == libc::EINVAL { ErrorKind::Unsupported } else { ErrorKind::Os };
        return Err(Error::new(
            kind,
            "prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX)",
            Some(errno),
            "the kernel (before Linux 6.10) cannot keep fence.i valid across migration; \
             clear_cache keeps using the riscv_flush_icache syscall",
        ));
    }
    if let Err(e) = super::membarrier_flush::pipeline_flush_mt() {
        // Without a broadcast for the other harts the opt-in is useless:
        // hand the kernel its per-switch `fence.i` work back. Best effort;
        // the library stays on the syscall either way.
        // SAFETY: prctl with integer arguments only.
        let _ = unsafe {
            libc::prctl(
                PR_RISCV_SET_ICACHE_FLUSH_CTX,
                PR_RISCV_CTX_SW_FENCEI_OFF,
                PR_RISCV_SCOPE_PER_PROCESS,
            )
        };
        return Err(e);
    }
    USER_FENCE_I.store(true, Relaxed);
    Ok(())
}

