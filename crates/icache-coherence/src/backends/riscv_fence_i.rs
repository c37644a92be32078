//! RISC-V bare metal (`no_std`, `target_os = "none"`): `fence.i`.
//!
//! `fence.i` makes this hart's later instruction fetches observe its own
//! earlier stores (RISC-V Unprivileged ISA, "Zifencei"). It says nothing
//! about other harts: on a multi-hart system each hart that will run the code
//! must execute its own `fence.i` (or the firmware's SBI remote `fence.i`)
//! after the stores, which is why there is no pipeline flush here. A
//! hosted program must use the Linux backend instead; a thread can migrate
//! between harts, and the kernel's syscall covers all of them.

use core::arch::asm;

use super::Backend;
use crate::error::Error;

/// `fence.i` on the calling hart.
pub(crate) struct FenceI;

impl Backend for FenceI {
    const MECHANISM: &'static str = "fence.i (this hart only)";
    const PIPELINE_MECHANISM: &'static str = "unsupported (each hart must run fence.i itself)";
    const WHOLE_ADDRESS_SPACE: bool = true;

    #[inline]
    unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
        // No `nomem`: the compiler must not sink the caller's stores past it.
        // SAFETY: a fence has no memory-safety preconditions.
        unsafe { asm!("fence.i", options(nostack, preserves_flags)) };
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "bare-metal RISC-V: every other hart must execute fence.i itself",
        )
        .or_code_epoch())
    }
}
