//! x86, x86-64 and s390x: instruction fetch is coherent with data stores in
//! hardware, so there is nothing to do, and it compiles to nothing.
//!
//! Intel SDM vol. 3, 8.1.3 "Handling Self- and Cross-Modifying Code": code
//! written at addresses that no thread is executing needs no maintenance (a
//! jump to it suffices). z/Architecture Principles of Operation, "Storage
//! operand fetch references": instruction fetches observe prior stores of the
//! same CPU, and of other CPUs once those are observed.
//!
//! Rewriting code that another thread may be executing *right now* is
//! cross-modifying code and needs a serializing instruction on the executing
//! thread: that is not `pipeline_flush_mt`'s contract (which, like the crate
//! it replaces, covers publishing code at fresh addresses).

use super::Backend;
use crate::error::Error;

/// Coherent instruction fetch: nothing to do.
pub(crate) struct Coherent;

impl Backend for Coherent {
    const MECHANISM: &'static str = "none needed (coherent instruction fetch)";
    const PIPELINE_MECHANISM: &'static str = "none needed (coherent instruction fetch)";
    const WHOLE_ADDRESS_SPACE: bool = true;
    const MAINTENANCE_NEEDED: bool = false;
    const PIPELINE_FLUSH_NEEDED: bool = false;
    #[cfg(icache_membarrier)]
    const CROSS_MODIFY_MECHANISM: &'static str = super::MEMBARRIER_SYNC_CORE;
    #[cfg(not(icache_membarrier))]
    const CROSS_MODIFY_MECHANISM: &'static str = "unsupported on this OS (returns an error)";

    #[inline(always)]
    unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
        Ok(())
    }

    #[inline(always)]
    fn pipeline_flush_mt() -> Result<(), Error> {
        Ok(())
    }

    /// Cross-modifying code on x86 (Intel SDM vol. 3, 8.1.3) and s390x needs
    /// a serializing instruction on every thread that may be executing the
    /// old code; on Linux, membarrier SYNC_CORE provides exactly that (its
    /// x86 implementation runs `sync_core_before_usermode`). HotSpot uses
    /// SERIALIZE/CPUID for the same purpose on the patching thread itself.
    #[cfg(icache_membarrier)]
    fn cross_modify_flush_mt() -> Result<(), Error> {
        super::linux_membarrier::pipeline_flush_mt()
    }

    /// Elsewhere there is no process-wide serialization this crate can rely on.
    #[cfg(not(icache_membarrier))]
    fn cross_modify_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "cross_modify_flush_mt",
            None,
            "no process-wide serializing mechanism is implemented for this OS",
        )
        .or_code_epoch())
    }
}
