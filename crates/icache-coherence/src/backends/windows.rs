//! Windows, every architecture: `FlushInstructionCache`, and on Arm64
//! `FlushProcessWriteBuffers` as the broadcast context synchronization.
//!
//! `FlushInstructionCache(GetCurrentProcess(), ptr, len)` returns a BOOL;
//! zero means failure, with the reason in `GetLastError` (Microsoft Learn,
//! "FlushInstructionCache function"). It is a system call, and the return to
//! user mode synchronizes the calling thread's context.
//!
//! What Microsoft documents, and what is inference. Microsoft Learn
//! documents `FlushProcessWriteBuffers` only as flushing the write queue of
//! each processor running a thread of the process, by an IPI: write
//! visibility, nothing about instruction fetch. That the other threads'
//! contexts are synchronized is our inference from the mechanism: each
//! interrupted Arm64 core returns from the IPI with an exception return,
//! which the Arm ARM makes a context synchronization event (with
//! SCTLR_EL1.EOS = 1, the architecture's default), and HotSpot on
//! Windows/AArch64 does not rely on it either (it uses a consumer-side
//! `isb`). So on Arm64 the calling thread gets an explicit `isb` after both
//! calls, which does not depend on what the kernel's return path does, and
//! readers that need a documented guarantee use `CodeEpoch`, whose
//! `sync_this_thread` is their own `isb`. On x86 and x86-64, code published
//! at fresh addresses needs nothing more, so `pipeline_flush_mt` costs
//! nothing there (what every x86 JIT does; see `coherent.rs` for the SDM's
//! guarantee).

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
        caller_isb();
        Ok(())
    }

    #[inline]
    fn pipeline_flush_mt() -> Result<(), Error> {
        if FLUSH_NEEDED {
            // SAFETY: no preconditions; it cannot fail.
            unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
            caller_isb();
        }
        Ok(())
    }

    /// The line sizes Windows reports: the smallest level-1 lines of the
    /// `GetLogicalProcessorInformation` cache descriptors
    /// ([`crate::line_sizes::l1_lines`]). The buffer is sized by a first
    /// call, so this needs `std` (an allocation); without it the sizes are
    /// `None`.
    fn line_sizes() -> (Option<usize>, Option<usize>) {
        windows_lines()
    }

    /// Cross-modifying code: `FlushProcessWriteBuffers` interrupts every
    /// processor running a thread of the process; the return from that
    /// interrupt serializes x86 cores (IRET is serializing, Intel SDM 9.1.3...
    /// "Serializing Instructions") and context-synchronizes Arm64 cores.
    fn cross_modify_flush_mt() -> Result<(), Error> {
        // SAFETY: no preconditions; it cannot fail.
        unsafe { windows_sys::Win32::System::Threading::FlushProcessWriteBuffers() };
        caller_isb();
        Ok(())
    }
}

/// `GetLogicalProcessorInformation` (Microsoft Learn): called once with no
/// buffer, it fails with `ERROR_INSUFFICIENT_BUFFER` and the length needed;
/// the second call fills one `SYSTEM_LOGICAL_PROCESSOR_INFORMATION` per
/// relationship, and those with `Relationship == RelationCache` carry a
/// `CACHE_DESCRIPTOR`.
#[cfg(icache_std)]
fn windows_lines() -> (Option<usize>, Option<usize>) {
    use windows_sys::Win32::System::SystemInformation::{
        GetLogicalProcessorInformation, RelationCache, SYSTEM_LOGICAL_PROCESSOR_INFORMATION,
    };
    const ENTRY: usize = core::mem::size_of::<SYSTEM_LOGICAL_PROCESSOR_INFORMATION>();
    let mut bytes: u32 = 0;
    // SAFETY: a null buffer with length 0 only asks for the length.
    unsafe { GetLogicalProcessorInformation(core::ptr::null_mut(), &mut bytes) };
    let mut entries = std::vec![SYSTEM_LOGICAL_PROCESSOR_INFORMATION::default(); bytes as usize / ENTRY + 1];
    let mut bytes = (entries.len() * ENTRY) as u32;
    // SAFETY: `entries` holds `bytes` bytes.
    if unsafe { GetLogicalProcessorInformation(entries.as_mut_ptr(), &mut bytes) } == 0 {
        return (None, None);
    }
    entries.truncate(bytes as usize / ENTRY);
    crate::line_sizes::l1_lines(entries.iter().filter(|e| e.Relationship == RelationCache).map(|e| {
        // SAFETY: `Cache` is the union's member for RelationCache entries.
        let c = unsafe { e.Anonymous.Cache };
        (c.Level, c.Type, c.LineSize)
    }))
}

#[cfg(not(icache_std))]
fn windows_lines() -> (Option<usize>, Option<usize>) {
    (None, None)
}

/// Arm64: the calling thread's own context synchronization, so that its
/// guarantee rests on the architecture and not on the return path of the
/// system call (see the module docs). Nothing elsewhere.
#[inline(always)]
fn caller_isb() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe {
        core::arch::asm!("isb", options(nostack, preserves_flags))
    };
}
