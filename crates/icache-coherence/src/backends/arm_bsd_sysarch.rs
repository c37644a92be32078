//! 32-bit Arm on FreeBSD and NetBSD: `sysarch(ARM_SYNC_ICACHE, &args)`.
//!
//! FreeBSD `<machine/sysarch.h>` and NetBSD `<arm/sysarch.h>` both define
//! `ARM_SYNC_ICACHE` = 0 taking `struct { uintptr_t addr; size_t len; }`;
//! the kernel cleans and invalidates the range. Not built in this project's
//! CI (no Rust target for it here), which is why it is kept this small.

use core::ffi::{c_int, c_void};

use super::Backend;
use crate::error::Error;

const ARM_SYNC_ICACHE: c_int = 0;

#[repr(C)]
struct ArmSyncIcacheArgs {
    addr: usize,
    len: usize,
}

extern "C" {
    fn sysarch(number: c_int, args: *mut c_void) -> c_int;
}

/// `sysarch(ARM_SYNC_ICACHE)`.
pub(crate) struct ArmSysarch;

impl Backend for ArmSysarch {
    const MECHANISM: &'static str = "sysarch(ARM_SYNC_ICACHE)";
    #[cfg(icache_membarrier)]
    const PIPELINE_MECHANISM: &'static str = crate::membarrier::SYNC_CORE;
    #[cfg(not(icache_membarrier))]
    const PIPELINE_MECHANISM: &'static str =
        "unsupported on NetBSD (returns an error); publish with CodeEpoch";

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        let mut args = ArmSyncIcacheArgs { addr: start, len };
        // SAFETY: `args` is a valid ARM_SYNC_ICACHE argument block.
        if unsafe { sysarch(ARM_SYNC_ICACHE, &mut args as *mut _ as *mut c_void) } != 0 {
            return Err(Error::os(
                "sysarch(ARM_SYNC_ICACHE)",
                super::errno(),
                "the kernel refused to flush the range",
            ));
        }
        Ok(())
    }

    /// FreeBSD: membarrier(2) SYNC_CORE.
    #[cfg(icache_membarrier)]
    fn pipeline_flush_mt() -> Result<(), Error> {
        super::membarrier_flush::pipeline_flush_mt()
    }

    /// NetBSD documents no broadcast context synchronization.
    #[cfg(not(icache_membarrier))]
    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            crate::ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "no broadcast context synchronization is implemented for this OS on 32-bit Arm",
        )
        .or_code_epoch())
    }
}
