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
//! Why `pipeline_flush_mt` has nothing left to do here: with flags = 0 the
//! kernel (`flush_icache_mm(mm, false)`, arch/riscv/mm/cacheflush.c) executes
//! `fence.i` on the calling hart, sends a synchronous IPI (or SBI remote
//! `fence.i`) to every other hart currently running the process, and marks
//! all remaining harts stale so that they execute `fence.i` before running
//! this process again. When the syscall returns, every thread has therefore
//! passed the fetch synchronization, ordered after the caller's stores.
//!
//! Under qemu-user 7.2 the syscall is answered inside QEMU (it returns 0 and
//! shows in neither `-strace` nor a plugin's syscall callback).

use crate::error::Error;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "riscv_flush_icache syscall (259), flags = 0 (all harts)";
pub(crate) const PIPELINE_MECHANISM: &str = "none left to do (riscv_flush_icache already covered every hart)";

const NR_RISCV_FLUSH_ICACHE: libc::c_long = 259;
/// Not `SYS_RISCV_FLUSH_ICACHE_LOCAL` (1): every hart of the process.
const FLAGS_ALL_HARTS: libc::c_ulong = 0;

pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    let end = start.wrapping_add(len);
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
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    Ok(())
}

pub(crate) fn cache_info() -> CacheInfo {
    CacheInfo {
        mechanism: MECHANISM,
        pipeline_flush_mechanism: PIPELINE_MECHANISM,
        data_line: None,
        instruction_line: None,
        needs_clean: true,
        needs_invalidate: true,
        pipeline_flush_needed: false,
    }
}
