//! MIPS Linux (32- and 64-bit): the `cacheflush(addr, nbytes, BCACHE)`
//! syscall.
//!
//! `synci` needs a SYNCI_Step from `rdhwr $1`, exists only from R2, and
//! inline asm for MIPS is not stable in Rust; the syscall
//! (arch/mips/mm/cache.c `sys_cacheflush`) works on every revision and
//! flushes both caches for the range. BCACHE = ICACHE | DCACHE = 3
//! (`<asm/cachectl.h>`). Other threads need `pipeline_flush_mt`, which asks
//! membarrier SYNC_CORE and reports the kernel's answer.

use super::Backend;
use crate::error::Error;

const BCACHE: libc::c_long = 3;

/// The `cacheflush(addr, nbytes, BCACHE)` syscall.
pub(crate) struct MipsCacheflush;

impl Backend for MipsCacheflush {
    const MECHANISM: &'static str = "cacheflush syscall, BCACHE";
    const PIPELINE_MECHANISM: &'static str = super::MEMBARRIER_SYNC_CORE;

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        // SAFETY: the caller guarantees the range is mapped.
        let r = unsafe { libc::syscall(libc::SYS_cacheflush, start, len, BCACHE) };
        if r != 0 {
            return Err(Error::os(
                "cacheflush",
                super::errno(),
                "the kernel refused to flush the range",
            ));
        }
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        super::linux_membarrier::pipeline_flush_mt()
    }
}
