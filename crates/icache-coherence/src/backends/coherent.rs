//! x86, x86-64 and s390x: instruction fetch is coherent with data stores in
//! hardware, so `clear_cache` has nothing to do and compiles to nothing.
//!
//! What `pipeline_flush_mt` does here, and what that rests on. It does
//! nothing. That is what every x86 JIT does in practice when it publishes
//! code at addresses no thread is executing, and what the crate we replace
//! does; it is practice, not a guarantee of the Intel SDM. The SDM (vol. 3,
//! "Handling Self- and Cross-Modifying Code", 9.1.3; 8.1.3 in older
//! editions) gives its guarantee for code written by one processor and run
//! by another only if the executing processor runs a serializing
//! instruction ("Serializing Instructions", 9.3; 8.3 in older editions)
//! between: "jump to the new code" is its self-modifying case. The two ways
//! to get the SDM's guarantee from this crate are `sync_this_thread` on
//! each reader (SERIALIZE or CPUID; see `CodeEpoch`) and
//! `cross_modify_flush_mt` from the writer (membarrier SYNC_CORE on Linux).
//!
//! s390x: z/Architecture Principles of Operation, "Storage operand fetch
//! references" and "CPU Serialization": instruction fetches observe prior
//! stores of the same CPU; for another CPU's stores, a serializing
//! operation discards prefetched instructions (`sync_this_thread` runs
//! `bcr 15,0`).

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
    const CROSS_MODIFY_MECHANISM: &'static str = crate::membarrier::SYNC_CORE;
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

    /// x86: nothing is maintained, but JITs still want the line size (to
    /// keep a patched instruction inside one line, which the SDM's
    /// cross-modifying rules make atomic for fetch): CPUID leaf 1's CLFLUSH
    /// line size ([`crate::line_sizes::clflush_line`]).
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    fn line_sizes() -> (Option<usize>, Option<usize>) {
        #[cfg(target_arch = "x86")]
        use core::arch::x86::__cpuid;
        #[cfg(target_arch = "x86_64")]
        use core::arch::x86_64::__cpuid;
        let leaf1 = __cpuid(1);
        let line = crate::line_sizes::clflush_line(leaf1.ebx, leaf1.edx);
        (line, line)
    }

    /// Cross-modifying code on x86 (Intel SDM vol. 3, 9.1.3) and s390x needs
    /// a serializing instruction on every thread that may be executing the
    /// old code; on Linux, membarrier SYNC_CORE provides exactly that (its
    /// x86 implementation runs `sync_core_before_usermode`). HotSpot uses
    /// SERIALIZE/CPUID for the same purpose on the patching thread itself.
    #[cfg(icache_membarrier)]
    fn cross_modify_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
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
