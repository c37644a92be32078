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

use super::Backend;
use crate::error::Error;

const FLUSH_NEEDED: bool = !cfg!(any(target_arch = "x86", target_arch = "x86_64"));

/// `FlushInstructionCache`, and `FlushProcessWriteBuffers` on Arm64.
pub(crate) struct Windows;

impl Backend for Windows {
    const MECHANISM: &'static str = "FlushInstructionCache";
    const PIPELINE_MECHANISM: &'static str = if FLUSH_NEEDED {
        "FlushProcessWriteBuffers"
    } else {
        "none needed (coherent instruction fetch)"
    };
    const CROSS_MODIFY_MECHANISM: &'static str = "FlushProcessWriteBuffers";
    const MAINTENANCE_NEEDED: bool = FLUSH_NEEDED;
    const PIPELINE_FLUSH_NEEDED: bool = FLUSH_NEEDED;

    #[inline]
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
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
    fn pipeline_flush_mt() -> Result<(), Error> {
        if FLUSH_NEEDED {
            // SAFETY: no preconditions; it cannot fail.
            unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
        }
        Ok(())
    }

    /// Cross-modifying code: `FlushProcessWriteBuffers` interrupts every
    /// processor running a thread of the process; the return from that
    /// interrupt serializes x86 cores (IRET is serializing, Intel SDM 9.1.3...
    /// "Serializing Instructions") and context-synchronizes Arm64 cores.
    fn cross_modify_flush_mt() -> Result<(), Error> {
        // SAFETY: no preconditions; it cannot fail.
        unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
        Ok(())
    }
}
