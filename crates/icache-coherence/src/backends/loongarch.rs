//! LoongArch64 Linux: `ibar 0` after the stores.
//!
//! LoongArch keeps the instruction cache coherent with data stores in
//! hardware; what remains is the pipeline: `ibar 0` makes this core's later
//! instruction fetches observe the earlier stores (LoongArch Reference Manual
//! vol. 1, "IBAR"; arch/loongarch/include/asm/cacheflush.h: "LoongArch
//! maintains ICache/DCache coherency by hardware, we just need ibar").
//! Other threads: `pipeline_flush_mt` asks membarrier SYNC_CORE, which no
//! Linux kernel implements on LoongArch so far, so it returns `Unsupported`;
//! the way that works is `CodeEpoch`, whose readers run their own `ibar 0`.

use core::arch::asm;

use super::Backend;
use crate::error::Error;

/// `ibar 0`.
pub(crate) struct LoongArch;

impl Backend for LoongArch {
    const MECHANISM: &'static str = "ibar 0";
    /// No Linux kernel implements membarrier SYNC_CORE on LoongArch
    /// (Documentation/features/sched/membarrier-sync-core/arch-support.txt),
    /// so the call reports the kernel's refusal.
    const PIPELINE_MECHANISM: &'static str =
        "membarrier SYNC_CORE: Unsupported on every Linux kernel so far; publish with CodeEpoch (ibar 0 on the readers)";
    const WHOLE_ADDRESS_SPACE: bool = true;
    /// The caches are coherent in hardware; only the pipeline needs `ibar`.
    const MAINTENANCE_NEEDED: bool = false;

    #[inline]
    unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
        // No `nomem`: the compiler must not move the caller's stores past it.
        // SAFETY: a barrier has no memory-safety preconditions.
        unsafe { asm!("ibar 0", options(nostack, preserves_flags)) };
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
    }
}
