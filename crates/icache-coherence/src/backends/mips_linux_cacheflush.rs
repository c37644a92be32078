//! MIPS Linux (32- and 64-bit): the `cacheflush(addr, nbytes, BCACHE)`
//! syscall.
//!
//! `synci` needs a SYNCI_Step from `rdhwr $1`, exists only from R2, and
//! inline asm for MIPS is not stable in Rust; the syscall
//! (arch/mips/mm/cache.c `sys_cacheflush`) works on every revision and
//! flushes both caches for the range. BCACHE = ICACHE | DCACHE = 3
//! (`<asm/cachectl.h>`). Other threads: `pipeline_flush_mt` asks membarrier
//! SYNC_CORE, which no Linux kernel implements on MIPS so far, so it returns
//! `Unsupported`; the way that works is `CodeEpoch`, whose readers run their
//! own `jr.hb`.

use super::Backend;
use crate::error::Error;

const BCACHE: libc::c_long = 3;

/// The `cacheflush(addr, nbytes, BCACHE)` syscall.
pub(crate) struct MipsCacheflush;

impl Backend for MipsCacheflush {
    const MECHANISM: &'static str = "cacheflush syscall, BCACHE";
    /// No Linux kernel implements membarrier SYNC_CORE on MIPS
    /// (Documentation/features/sched/membarrier-sync-core/arch-support.txt),
    /// so the call reports the kernel's refusal.
    const PIPELINE_MECHANISM: &'static str =
        "membarrier SYNC_CORE: Unsupported on every Linux kernel so far; publish with CodeEpoch (jr.hb on the readers)";

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
        super::membarrier_flush::pipeline_flush_mt()
    }
}
