//! Windows, every architecture: `FlushInstructionCache`, and on Arm64
//! `FlushProcessWriteBuffers` as the broadcast context synchronization.
//!
//! `FlushInstructionCache(GetCurrentProcess(), ptr, len)` returns a BOOL;
//! zero means failure, with the reason in `GetLastError` (Microsoft Learn,
//! "FlushInstructionCache function"). It is a system call, and the return to
//! user mode synchronizes the calling thread's context.
//!
//! `FlushProcessWriteBuffers` interrupts every processor running a thread of
//! the process (an IPI); the return from that interrupt is the context
//! synchronization the other threads need on Arm64 (PLATFORMS.md, Windows).
//! On x86 and x86-64, code published at fresh addresses needs nothing more,
//! so `pipeline_flush_mt` costs nothing there.

use core::ffi::c_void;

use windows_sys::Win32::Foundation::GetLastError;
use windows_sys::Win32::System::Diagnostics::Debug::FlushInstructionCache;
use windows_sys::Win32::System::Threading::GetCurrentProcess;

use crate::error::Error;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "FlushInstructionCache";

const FLUSH_NEEDED: bool = !cfg!(any(target_arch = "x86", target_arch = "x86_64"));

pub(crate) const PIPELINE_MECHANISM: &str = if FLUSH_NEEDED {
    "FlushProcessWriteBuffers"
} else {
    "none needed (coherent instruction fetch)"
};

#[inline]
pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    // SAFETY: the pseudo-handle of the current process; the caller
    // guarantees the range is mapped.
    let ok = unsafe { FlushInstructionCache(GetCurrentProcess(), start as *const c_void, len) };
    if ok == 0 {
        // SAFETY: no preconditions.
        let code = unsafe { GetLastError() } as i32;
        return Err(Error::os(
            "FlushInstructionCache",
            code,
            "the instruction cache could not be flushed",
        ));
    }
    Ok(())
}

#[inline]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    if FLUSH_NEEDED {
        // SAFETY: no preconditions; it cannot fail.
        unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
    }
    Ok(())
}

os_call_per_range!();

/// Cross-modifying code: `FlushProcessWriteBuffers` interrupts every
/// processor running a thread of the process; the return from that
/// interrupt serializes x86 cores (IRET is serializing, Intel SDM 9.1.3...
/// "Serializing Instructions") and context-synchronizes Arm64 cores.
pub(crate) fn cross_modify_flush_mt() -> Result<(), Error> {
    // SAFETY: no preconditions; it cannot fail.
    unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
    Ok(())
}

pub(crate) fn cache_info() -> CacheInfo {
    CacheInfo::without_lines(MECHANISM, PIPELINE_MECHANISM, FLUSH_NEEDED, FLUSH_NEEDED)
}
