//! 32-bit Arm on FreeBSD and NetBSD: `sysarch(ARM_SYNC_ICACHE, &args)`.
//!
//! FreeBSD `<machine/sysarch.h>` and NetBSD `<arm/sysarch.h>` both define
//! `ARM_SYNC_ICACHE` = 0 taking `struct { uintptr_t addr; size_t len; }`;
//! the kernel cleans and invalidates the range. Not built in this project's
//! CI (no Rust target for it here), which is why it is kept this small.

use core::ffi::{c_int, c_void};

use crate::error::Error;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "sysarch(ARM_SYNC_ICACHE)";
pub(crate) const PIPELINE_MECHANISM: &str = "unsupported on this OS (returns an error)";

const ARM_SYNC_ICACHE: c_int = 0;

#[repr(C)]
struct ArmSyncIcacheArgs {
    addr: usize,
    len: usize,
}

extern "C" {
    fn sysarch(number: c_int, args: *mut c_void) -> c_int;
}

pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    let mut args = ArmSyncIcacheArgs { addr: start, len };
    // SAFETY: `args` is a valid ARM_SYNC_ICACHE argument block.
    if unsafe { sysarch(ARM_SYNC_ICACHE, &mut args as *mut _ as *mut c_void) } != 0 {
        return Err(Error::os("sysarch(ARM_SYNC_ICACHE)", super::errno(), "the kernel refused to flush the range"));
    }
    Ok(())
}

pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    Err(Error::new(
        crate::ErrorKind::Unsupported,
        "pipeline_flush_mt",
        None,
        "no broadcast context synchronization is implemented for this OS on 32-bit Arm",
    ))
}

os_call_per_range!();

/// Cross-modifying code needs the same broadcast synchronization.
#[cfg(feature = "std")]
pub(crate) fn cross_modify_flush_mt() -> Result<(), Error> {
    pipeline_flush_mt()
}

pub(crate) fn cache_info() -> CacheInfo {
    CacheInfo::without_lines(MECHANISM, PIPELINE_MECHANISM, true, true)
}
