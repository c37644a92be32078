//! Make machine code you just wrote the code the CPU executes, on every
//! architecture and OS Rust targets.
//!
//! A JIT writes instructions with ordinary stores, which go through the data
//! side of the memory system; the core fetches instructions through the
//! instruction side. x86, x86-64 and s390x keep the two coherent in hardware.
//! AArch64, 32-bit Arm, RISC-V, POWER, MIPS and LoongArch do not: unless the
//! data cache is cleaned, the instruction cache invalidated and every core
//! that may run the code passes a context-synchronization event, a core can
//! execute stale bytes. QEMU always sees the new code, so these bugs pass
//! every emulated test and then crash on phones and servers. This crate does
//! exactly the maintenance each architecture requires, and reports an error,
//! never a silent no-op, where it cannot.
//!
//! # Usage
//!
//! After writing code, and before any thread jumps to it:
//!
//! 1. [`clear_cache`] on the range you wrote (with RW or RX protection);
//! 2. make the memory executable if it was not;
//! 3. [`pipeline_flush_mt`] if any thread other than the writer may run it;
//! 4. publish the entry point (e.g. with a `Release` store).
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! # #[cfg(all(unix, not(miri), any(target_arch = "x86_64", target_arch = "aarch64")))] {
//! use core::ffi::c_void;
//!
//! // `mov eax, 42; ret` or `mov w0, #42; ret`
//! #[cfg(target_arch = "x86_64")]
//! let code: &[u8] = &[0xb8, 42, 0, 0, 0, 0xc3];
//! #[cfg(target_arch = "aarch64")]
//! let code: &[u8] = &[0x40, 0x05, 0x80, 0x52, 0xc0, 0x03, 0x5f, 0xd6];
//!
//! unsafe {
//!     let page = libc::mmap(core::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE,
//!                           libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
//!     assert_ne!(page, libc::MAP_FAILED);
//!     core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
//!
//!     icache_coherence::clear_cache(page as *const c_void, code.len())?;
//!     assert_eq!(libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC), 0);
//!     icache_coherence::pipeline_flush_mt()?; // other threads may call it too
//!
//!     let f: extern "C" fn() -> u32 = core::mem::transmute(page);
//!     assert_eq!(f(), 42);
//!     libc::munmap(page, 4096);
//! }
//! # }
//! # Ok(())
//! # }
//! ```
//!
//! **Single-threaded programs** (and code that only the writing thread will
//! ever execute) may skip [`pipeline_flush_mt`]: [`clear_cache`] already
//! synchronizes the calling thread. Beware that "only this thread" must
//! include the future: if the code pointer can later reach another thread
//! without a pipeline flush in between, that thread may run stale code.
//!
//! # What runs where
//!
//! | target | [`clear_cache`] | [`pipeline_flush_mt`] |
//! |---|---|---|
//! | AArch64 Linux, Android | `dc cvau`, `dsb ish`, `ic ivau`, `dsb ish`, `isb`, by CTR_EL0 line sizes (running minimum over cores), honouring IDC/DIC | `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`, registered once |
//! | AArch64 FreeBSD, NetBSD, OpenBSD | same sequence | error `Unsupported` |
//! | Apple AArch64 | `sys_icache_invalidate` + `isb` | stop each other thread once (Mach suspend/get_state/resume) |
//! | Windows (all) | `FlushInstructionCache` | Arm64: `FlushProcessWriteBuffers`; x86: nothing needed |
//! | 32-bit Arm Linux, Android | `cacheflush` syscall per 4 KiB page | membarrier SYNC_CORE |
//! | 32-bit Arm FreeBSD, NetBSD | `sysarch(ARM_SYNC_ICACHE)` | error `Unsupported` |
//! | RISC-V Linux | `riscv_flush_icache(start, end, 0)`: all harts | nothing left (the syscall covered every hart) |
//! | POWER Linux | `dcbst`/`sync`/`icbi`/`sync`/`isync` by auxv block sizes; ICACHE_SNOOP shortcut | membarrier SYNC_CORE |
//! | LoongArch Linux | `ibar 0` | membarrier SYNC_CORE (error where the kernel lacks it) |
//! | MIPS Linux | `cacheflush(addr, len, BCACHE)` | membarrier SYNC_CORE (error where the kernel lacks it) |
//! | x86, x86-64, s390x | nothing (inlined away) | nothing |
//! | Miri | nothing | nothing |
//! | anything else | fails to compile, naming the target | |
//!
//! [`cache_info`] tells a program at run time which row it is on.
//!
//! # Errors
//!
//! Every function returns [`std::io::Result`] on every OS. Failures carry an
//! [`io::ErrorKind`](std::io::ErrorKind) (`InvalidInput` for a range that
//! wraps, `Unsupported` where the platform cannot give the guarantee,
//! `PermissionDenied` where a sandbox refuses, otherwise the OS error's kind)
//! and, as payload, an [`Error`] naming the failed call and the OS error code.
//! Nothing panics and nothing prints.

#![cfg_attr(not(feature = "std"), no_std)]
// Without `std` the pipeline flush is not part of the API (it needs an OS),
// so the backends' flush functions are unused there.
#![cfg_attr(not(feature = "std"), allow(dead_code))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backends;
#[cfg(any(
    test,
    all(
        target_arch = "aarch64",
        not(miri),
        not(windows),
        not(target_vendor = "apple")
    )
))]
mod ctr_el0;
mod error;
mod lines;
#[cfg(any(
    test,
    all(
        feature = "std",
        not(miri),
        any(target_os = "linux", target_os = "android")
    )
))]
mod membarrier;

pub use error::{Error, ErrorKind};

use core::ffi::c_void;

/// Makes the instructions stored in `[ptr, ptr + len)` visible to
/// instruction fetch.
///
/// When it returns `Ok`, instruction fetches of the range *on the calling
/// thread* see every byte stored there before the call (on AArch64 this is
/// the full `dc cvau` / `dsb ish` / `ic ivau` / `dsb ish` / `isb` sequence).
/// The cache maintenance is complete for all cores; other threads that may
/// execute the code additionally need [`pipeline_flush_mt`].
///
/// A `len` of 0 returns `Ok(())` and touches nothing, whatever `ptr` is
/// (null included). A range that wraps past the end of the address space
/// returns an error of kind `InvalidInput` and touches nothing.
///
/// # Safety
///
/// `[ptr, ptr + len)` must be mapped memory of this process for the whole
/// call; it may be writable (RW) or executable (RX), either works. On
/// AArch64 and POWER the maintenance instructions fault on unmapped
/// addresses, so an unmapped range is undefined behaviour (in practice
/// SIGSEGV); the syscall backends return `EFAULT` instead. Only the cache
/// lines that overlap the range are touched.
///
/// # Errors
///
/// `InvalidInput` for a wrapping range; on syscall backends the OS error
/// (e.g. `EFAULT` from `cacheflush`, or `GetLastError` from
/// `FlushInstructionCache`).
#[cfg(feature = "std")]
#[inline]
pub unsafe fn clear_cache(ptr: *const c_void, len: usize) -> std::io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { clear_cache_core(ptr, len) }.map_err(Into::into)
}

/// [`clear_cache`] with the crate's own [`Error`], for `no_std` users.
///
/// # Safety
///
/// As for [`clear_cache`].
#[inline]
pub unsafe fn clear_cache_core(ptr: *const c_void, len: usize) -> Result<(), Error> {
    let start = ptr as usize;
    match lines::last_byte(start, len)? {
        None => Ok(()),
        // SAFETY: non-empty, not wrapping; mapped by the caller's contract.
        Some(_) => unsafe { backends::clear_cache(start, len) },
    }
}

/// Makes every thread of the process pass a context-synchronization event.
///
/// When it returns `Ok`, every thread of the process has passed a
/// context-synchronization event ordered after every [`clear_cache`] call
/// that happened before this call, so any thread may now jump to that code.
/// Call it once per batch of published code, after the `clear_cache` calls
/// and before publishing the entry points: on Linux it is one `membarrier`
/// system call that interrupts every core running the process.
///
/// Skip it only when no thread other than the one that called
/// [`clear_cache`] can ever execute the code (see the crate docs).
///
/// It has the semantics of the crate it replaces: it covers code published
/// at addresses that no thread is executing. On x86, x86-64 and s390x that
/// needs nothing, and this function compiles to nothing.
///
/// # Errors
///
/// Where the platform cannot give the guarantee the caller gets an error,
/// never a silent `Ok`. On Linux and Android (see [`Error::call`] for which
/// membarrier command failed, and [`Error::raw_os_error`] for its errno):
///
/// | situation | kind |
/// |---|---|
/// | kernel before 4.3, gVisor (`ENOSYS`) | `Unsupported` |
/// | seccomp or container profile denies membarrier (`EPERM`) | `PermissionDenied` |
/// | kernel before 4.16, or arch without SYNC_CORE (LoongArch, MIPS) | `Unsupported` |
/// | Android before API 29 (whose seccomp policy kills on membarrier): not attempted | `Unsupported` |
/// | any other errno | that errno's kind |
///
/// Registration is attempted once per process; its outcome, success or
/// failure, is cached, so later calls cost one syscall (or none, on
/// failure). On the BSDs (AArch64, Arm) it returns `Unsupported`.
#[cfg(feature = "std")]
#[inline]
pub fn pipeline_flush_mt() -> std::io::Result<()> {
    backends::pipeline_flush_mt().map_err(Into::into)
}

/// What this platform needs and what the library does about it.
///
/// JIT authors use it to keep patchable instructions within one cache line,
/// and to decide whether batching maintenance is worth it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheInfo {
    /// The mechanism [`clear_cache`] uses, for humans.
    pub mechanism: &'static str,
    /// The mechanism [`pipeline_flush_mt`] uses, for humans.
    pub pipeline_flush_mechanism: &'static str,
    /// The data-cache line size the library steps by, where it steps by one
    /// itself (`None` where the OS does the maintenance or none is needed).
    pub data_line: Option<usize>,
    /// The instruction-cache line size the library steps by, likewise.
    pub instruction_line: Option<usize>,
    /// Whether the data cache must be cleaned for fetch to see new code
    /// (false on AArch64 with CTR_EL0.IDC, on coherent architectures...).
    pub needs_clean: bool,
    /// Whether the instruction cache must be invalidated (false on AArch64
    /// with CTR_EL0.DIC, on coherent architectures...).
    pub needs_invalidate: bool,
    /// Whether [`pipeline_flush_mt`] does anything on this platform.
    pub pipeline_flush_needed: bool,
}

/// Describes the platform's cache maintenance as this library performs it.
///
/// On AArch64 the line sizes are the running minimum over every CTR_EL0
/// value this process has read so far, i.e. what the next [`clear_cache`]
/// will step by.
pub fn cache_info() -> CacheInfo {
    backends::cache_info()
}
