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

use crate::error::Error;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "fence.i (this hart only)";
pub(crate) const PIPELINE_MECHANISM: &str = "unsupported (each hart must run fence.i itself)";

#[inline]
pub(crate) unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
    // No `nomem`: the compiler must not sink the caller's stores past it.
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe { asm!("fence.i", options(nostack, preserves_flags)) };
    Ok(())
}

whole_address_space_per_call!();

pub(crate) fn cross_modify_flush_mt() -> Result<(), Error> {
    pipeline_flush_mt()
}

pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    Err(Error::new(
        crate::ErrorKind::Unsupported,
        "pipeline_flush_mt",
        None,
        "bare-metal RISC-V: every other hart must execute fence.i itself",
    ))
}

pub(crate) fn cache_info() -> CacheInfo {
    CacheInfo::without_lines(MECHANISM, PIPELINE_MECHANISM, true, true)
}
