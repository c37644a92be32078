//! 32-bit Arm on Linux and Android: the ARM-private `cacheflush` syscall,
//! one page at a time.
//!
//! Cache maintenance from user mode (cp15) raises SIGILL, so the kernel does
//! it: `cacheflush(start, end, flags = 0)`, number `__ARM_NR_cacheflush` =
//! `__ARM_NR_BASE + 2` = `0x0f0002` (arch/arm/include/uapi/asm/unistd.h). It
//! returns EINVAL for non-zero flags and EFAULT for a bad range. Some old
//! kernels flushed only the first page or VMA of a range, so the range is
//! split at 4 KiB boundaries as .NET does: a chunk that never crosses a 4 KiB
//! boundary never crosses a page of any larger size either. The return from
//! the syscall synchronizes the calling thread's context; other threads need
//! `pipeline_flush_mt` (membarrier SYNC_CORE, supported on arm since 4.16).

use super::Backend;
use crate::error::Error;

const ARM_NR_CACHEFLUSH: libc::c_long = 0x0f_0002;
const CHUNK: usize = 4096;

/// The `cacheflush` syscall, one page at a time.
pub(crate) struct ArmCacheflush;

impl Backend for ArmCacheflush {
    const MECHANISM: &'static str = "cacheflush syscall (0x0f0002), per 4 KiB page";
    const PIPELINE_MECHANISM: &'static str = crate::membarrier::SYNC_CORE;

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        // SAFETY: forwarded from the caller.
        unsafe { cacheflush(start, len) }
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
    }
}

unsafe fn cacheflush(start: usize, len: usize) -> Result<(), Error> {
    let last = start + (len - 1);
    let mut chunk_start = start;
    loop {
        // The last byte of this chunk: the page's last byte or the range's.
        let chunk_last = (chunk_start | (CHUNK - 1)).min(last);
        // `end` is exclusive for the kernel; `chunk_last + 1` cannot wrap on
        // a 32-bit address space because the top page is never mapped user
        // memory, but compute it with wrapping to stay panic-free anyway.
        let end = chunk_last.wrapping_add(1);
        // SAFETY: the syscall only reads its integer arguments; the caller
        // guarantees the range is mapped.
        let r = unsafe { libc::syscall(ARM_NR_CACHEFLUSH, chunk_start, end, 0) };
        if r != 0 {
            return Err(Error::os("cacheflush", super::errno(), "the kernel refused to flush the range"));
        }
        if chunk_last == last {
            return Ok(());
        }
        chunk_start = chunk_last + 1;
    }
}

