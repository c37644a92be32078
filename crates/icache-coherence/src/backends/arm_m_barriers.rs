//! Armv6-M and Armv8-M Baseline bare metal (`thumbv6m-none-eabi`,
//! `thumbv8m.base-none-eabi`): `dsb` and `isb`, nothing per line.
//!
//! These profiles have no caches in the architecture (Armv6-M ARM, DDI
//! 0419, "The system address map": no cache maintenance operations are
//! defined; Armv8-M ARM, DDI 0553, defines the cache maintenance registers
//! for the Main Extension only), so there is no line to clean or
//! invalidate. What a core still needs after writing code is that the
//! stores complete (`dsb`) and that it refetches (`isb`): Armv6-M ARM, "ISB",
//! "... ensures that the effects of context-altering operations ... are
//! visible to the instructions fetched after the ISB". Caches outside the
//! core (a vendor's flash accelerator, a system cache on the bus) are not
//! architectural and not covered.

use core::arch::asm;

use super::Backend;
use crate::error::{Error, FailureKind};

/// `dsb; isb`.
pub(crate) struct ArmMBarriers;

impl Backend for ArmMBarriers {
    const MECHANISM: &'static str = "dsb / isb (Armv6-M and Armv8-M Baseline have no caches)";
    const PIPELINE_MECHANISM: &'static str =
        "unsupported on bare metal (returns an error): each core runs its own isb; publish with CodeEpoch";
    const WHOLE_ADDRESS_SPACE: bool = true;
    /// No caches: only the pipeline needs the barriers.
    const MAINTENANCE_NEEDED: bool = false;

    #[inline]
    unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
        // No `nomem`: the Rust Reference then requires the caller's code
        // stores to be performed before the block, which may read them.
        // SAFETY: barriers have no memory-safety preconditions.
        unsafe { asm!("dsb", "isb", options(readonly, nostack, preserves_flags)) };
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            FailureKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "bare-metal M profile: every other core must execute isb itself",
        )
        .or_code_epoch())
    }
}
