#![doc = include_str!("../README.md")]
#![cfg_attr(not(icache_std), no_std)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// With `one-core` the backends' broadcasts (membarrier, the Mach walk...)
// stay compiled and type-checked but are never called.
#![cfg_attr(feature = "one-core", allow(dead_code))]

#[cfg(any(test, icache_backend = "arm_cp15", icache_backend = "arm_m_scb"))]
mod arm32_cache;
mod backends;
mod batch;
mod context_sync;
#[cfg(any(test, icache_ctr_el0))]
mod ctr_el0;
mod dispatch;
#[cfg(test)]
mod dispatch_tests;
mod error;
mod line_sizes;
mod lines;
#[cfg(any(test, icache_membarrier))]
mod membarrier;
mod publication;

pub use batch::clear_cache_ranges;
#[cfg(icache_std)]
pub use batch::{batch, Batch, Publish};
use error::ApiResult;
#[allow(unused_imports)] // the backends name it `crate::ErrorKind`
use error::ErrorKind;
pub use error::{Error, FailureKind};
pub use publication::CodeEpoch;

use backends::{Backend, Chosen};
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
/// On 32-bit Arm bare metal (A and R profiles: `armv7a-none-eabi`, ...) the
/// caller must run at PL1 or higher: the CP15 maintenance operations are
/// undefined instructions in User mode. (M profile checks its privilege
/// itself and returns `PermissionDenied`.)
///
/// # Errors
///
/// `InvalidInput` for a wrapping range; on syscall backends the OS error
/// (e.g. `EFAULT` from `cacheflush`, or `GetLastError` from
/// `FlushInstructionCache`).
#[inline]
pub unsafe fn clear_cache(ptr: *const c_void, len: usize) -> ApiResult {
    // SAFETY: forwarded from the caller.
    if unsafe { dispatch::fast_path::<Chosen>(ptr as usize, len) } {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { clear_cache_slow(ptr, len) }
}

/// The out-of-line rest of [`clear_cache`], with the error boxed into an
/// `io::Error` there, off the inlined path.
///
/// # Safety
///
/// As for [`clear_cache`].
#[cold]
#[inline(never)]
unsafe fn clear_cache_slow(ptr: *const c_void, len: usize) -> ApiResult {
    // SAFETY: forwarded from the caller.
    error::api(unsafe { dispatch::slow_path::<Chosen>(ptr as usize, len) })
}

/// [`clear_cache`] with the crate's own [`Error`], for `no_std` users.
///
/// # Safety
///
/// As for [`clear_cache`].
#[inline(always)]
pub unsafe fn clear_cache_core(ptr: *const c_void, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    unsafe { dispatch::clear_cache::<Chosen>(ptr as usize, len) }
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
/// at addresses that no thread is executing. On x86, x86-64 and s390x it
/// compiles to nothing: that is what every x86 JIT does in practice, not a
/// guarantee of the Intel SDM, whose cross-modifying-code algorithm (vol. 3,
/// 9.1.3) asks the executing processor for a serializing instruction. For
/// the SDM's guarantee use [`sync_this_thread`] on the readers (through
/// [`CodeEpoch`]) or [`cross_modify_flush_mt`] from the writer.
///
/// Where this function cannot give its guarantee (the errors below), publish
/// with [`CodeEpoch`] instead: it needs no kernel broadcast at all.
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
///
/// With the `one-core` feature (the program runs on one core) it makes no
/// system call and never fails: it runs [`sync_this_thread`] and returns
/// `Ok` (see [the feature's section](crate#feature-one-core)).
#[inline]
pub fn pipeline_flush_mt() -> ApiResult {
    #[cfg(feature = "one-core")]
    return one_core_flush();
    #[cfg(not(feature = "one-core"))]
    error::api(Chosen::pipeline_flush_mt())
}

/// The pipeline and cross-modifying flushes of a program that runs on one
/// core. Every other thread can only run on this core after a context
/// switch, i.e. after this thread's maintenance has completed and the core
/// has synchronized (the `isb` / `fence.i` at the end of `clear_cache`, and
/// the one here); the switch itself is an exception return, which is
/// context synchronizing (Arm `eret`, POWER `rfid`) or serializing (x86
/// `iret`). So nothing needs broadcasting.
#[cfg(feature = "one-core")]
#[inline(always)]
fn one_core_flush() -> ApiResult {
    Chosen::sync_this_thread();
    Ok(())
}

/// Makes the calling thread's next instruction fetches see every
/// publication of code it has already observed.
///
/// This is the reader's side of publishing code to other threads, and the
/// way to do it where [`pipeline_flush_mt`] cannot give its guarantee (see
/// [`CodeEpoch`], which calls it only when something changed). The writer
/// must have completed [`clear_cache`] before it published; the reader must
/// have **read** the publication (an entry point, a flag, an epoch), and its
/// next action must **depend on what it read**, before it calls this.
/// Called before the read it guarantees nothing (the catalogue test
/// `MP.RF+cachesync+isb-ctrl` of the published Arm model allows a stale
/// fetch there; `MP.RF+cachesync+ctrlisb` forbids it).
///
/// It makes no system call, takes no lock and allocates nothing, so it may
/// be called in a signal handler. What it executes:
///
/// | architecture | instruction |
/// |---|---|
/// | AArch64, 32-bit Arm v7+ and M profile | `isb` |
/// | 32-bit Arm v6 | CP15 Flush Prefetch Buffer (`mcr p15, 0, r, c7, c5, 4`) |
/// | POWER | `isync` |
/// | x86, x86-64 | `SERIALIZE` where CPUID reports it, else `CPUID` (Intel SDM vol. 3, 9.1.3, the executing processor's step) |
/// | RISC-V Linux | nothing after `riscv_flush_icache(flags = 0)` (every hart already ran `fence.i`); `fence.i` after `riscv::enable_user_fence_i` |
/// | RISC-V bare metal | `fence.i` |
/// | LoongArch | `ibar 0` |
/// | MIPS | `jr.hb` (clears the instruction hazard after another thread's `cacheflush`) |
/// | s390x | `bcr 15,0` (serialization) |
/// | Miri, wasm | nothing |
///
/// [`cache_info`] names it at run time (`sync_this_thread_mechanism`).
#[inline(always)]
pub fn sync_this_thread() {
    Chosen::sync_this_thread();
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
    /// The mechanism [`cross_modify_flush_mt`] uses, for humans.
    pub cross_modify_mechanism: &'static str,
    /// What [`sync_this_thread`] executes, for humans: the reader's step of
    /// [`CodeEpoch`], which works where [`pipeline_flush_mt`] cannot.
    pub sync_this_thread_mechanism: &'static str,
    /// The data-cache line size: the one the library steps by where it
    /// steps by lines itself (AArch64 and 32-bit Arm: CTR; POWER: the
    /// auxiliary vector); where the OS does the maintenance or none is
    /// needed, the one the platform reports: Apple `hw.cachelinesize`,
    /// Windows `GetLogicalProcessorInformation` (smallest level-1 data or
    /// unified line), x86 CPUID leaf 1 (CLFLUSH line size). `None` where
    /// nothing reports it (the syscall backends, RISC-V, wasm, Miri, s390x).
    pub data_line: Option<usize>,
    /// The instruction-cache line size, from the same sources (Windows:
    /// the smallest level-1 instruction or unified line; Apple and x86: the
    /// one line size they report).
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
/// On AArch64 the line sizes are what the next [`clear_cache`] will step
/// by: on Linux 4.10 and later the CTR_EL0 value read once (the kernel
/// makes every core report the same safe value), elsewhere the running
/// minimum over every CTR_EL0 value this process has read so far.
pub fn cache_info() -> CacheInfo {
    #[allow(unused_mut)] // changed only with `one-core`
    let mut info = Chosen::cache_info();
    #[cfg(feature = "one-core")]
    {
        info.pipeline_flush_mechanism = ONE_CORE_FLUSH;
        info.cross_modify_mechanism = ONE_CORE_FLUSH;
        info.pipeline_flush_needed = false;
    }
    info
}

#[cfg(feature = "one-core")]
const ONE_CORE_FLUSH: &str = "sync_this_thread only (one-core feature: no other core to reach)";

/// Makes code coherent that was written through one mapping and will be
/// executed through another mapping of the same memory (W^X by double
/// mapping, e.g. a memfd mapped RW and RX).
///
/// `len` bytes were written at `write_ptr` and will be fetched at
/// `exec_ptr`. The library cleans the data cache by the writable address and
/// invalidates the instruction cache by the executable one (AArch64, POWER);
/// the OS-routine backends (Apple, Windows, the syscalls) are given the
/// executable address. On return the calling thread fetches the new bytes
/// at `exec_ptr`; other threads need [`pipeline_flush_mt`] as usual.
///
/// ```no_run
/// # #[cfg(target_os = "linux")] unsafe {
/// # let (len, fd) = (4096, libc::memfd_create(c"jit".as_ptr(), 0));
/// # libc::ftruncate(fd, len as _);
/// let rw = libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, 0);
/// let rx = libc::mmap(core::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_EXEC, libc::MAP_SHARED, fd, 0);
/// // ... write code through `rw` ...
/// icache_coherence::clear_cache_dual(rw.cast_const(), rx.cast_const(), 64)?;
/// // ... call it through `rx` ...
/// # }
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Safety
///
/// Both ranges must be mapped, as for [`clear_cache`].
///
/// # Errors
///
/// `InvalidInput` (touching nothing) if either range wraps; otherwise as
/// for [`clear_cache`].
pub unsafe fn clear_cache_dual(
    write_ptr: *const c_void,
    exec_ptr: *const c_void,
    len: usize,
) -> ApiResult {
    let (w, x) = (write_ptr as usize, exec_ptr as usize);
    // SAFETY: forwarded from the caller.
    error::api(unsafe { dispatch::clear_cache_dual::<Chosen>(w, x, len) })
}

/// Makes every thread of the process serialize, for code that other threads
/// may be executing *while* it is modified (cross-modifying code).
///
/// [`pipeline_flush_mt`] covers publishing code at addresses that no thread
/// is executing, which needs nothing on x86. Rewriting instructions that
/// another thread may be executing right now is different: Intel SDM vol. 3,
/// 9.1.3 (8.1.3 in older editions) requires the executing processor to run a serializing instruction
/// after the modification. Call this after the patch (and after
/// [`clear_cache`]) when a thread may be inside the patched code; it does:
///
/// | platform | mechanism |
/// |---|---|
/// | Linux/Android x86, x86-64, s390x | `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)` |
/// | Windows (all) | `FlushProcessWriteBuffers` (IPI; the interrupt return serializes) |
/// | AArch64, Arm, POWER, LoongArch, MIPS | the same as [`pipeline_flush_mt`] |
/// | RISC-V Linux | nothing left: the flush syscall already made every hart `fence.i` |
/// | other x86 OSes | error `Unsupported` |
///
/// The patch itself must follow the architecture's rules for concurrent
/// modification (on x86: a single aligned store of the instruction, or the
/// `int3` protocol; on AArch64: only `B`, `BL`, `NOP`, `BRK`, `SVC`, `HVC`,
/// `SMC` and `ISB` may be swapped). This function provides the
/// serialization, not the atomicity of the patch.
///
/// ```no_run
/// # use std::sync::atomic::{AtomicU32, Ordering};
/// # fn patch(site: &AtomicU32, new_insn: u32) -> std::io::Result<()> {
/// site.store(new_insn, Ordering::Release); // one aligned store of the instruction
/// unsafe { icache_coherence::clear_cache(site.as_ptr().cast_const().cast(), 4)? };
/// icache_coherence::cross_modify_flush_mt()?; // now no thread can run the old one
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// As for [`pipeline_flush_mt`].
///
/// With the `one-core` feature: [`sync_this_thread`] and `Ok`, as for
/// [`pipeline_flush_mt`].
pub fn cross_modify_flush_mt() -> ApiResult {
    #[cfg(feature = "one-core")]
    return one_core_flush();
    #[cfg(not(feature = "one-core"))]
    error::api(Chosen::cross_modify_flush_mt())
}

/// RISC-V specific options.
#[cfg(icache_backend = "riscv_linux")]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        any(target_arch = "riscv64", target_arch = "riscv32"),
        any(target_os = "linux", target_os = "android")
    )))
)]
pub mod riscv {
    /// Opt in to user-space `fence.i` (Linux 6.10+).
    ///
    /// By default [`clear_cache`](crate::clear_cache) makes the
    /// `riscv_flush_icache` syscall, which makes every hart execute
    /// `fence.i`. With this option the library asks the kernel, through
    /// `prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX, PR_RISCV_CTX_SW_FENCEI_ON,
    /// PR_RISCV_SCOPE_PER_PROCESS)`, to keep a thread's `fence.i` valid when
    /// it migrates to another hart; `clear_cache` then becomes one `fence.i`
    /// without entering the kernel, and
    /// [`pipeline_flush_mt`](crate::pipeline_flush_mt) becomes a membarrier
    /// SYNC_CORE (registered here, so that a failure shows now).
    ///
    /// # Errors
    ///
    /// `Unsupported` naming `prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX)` and
    /// `EINVAL` on kernels before 6.10 (and under qemu-user 7.2), or the
    /// membarrier error; in every error case the library keeps using the
    /// syscall, which is always correct.
    ///
    /// ```
    /// // Try the fast path once at start-up; the syscall stays in use if the kernel says no.
    /// if let Err(e) = icache_coherence::riscv::enable_user_fence_i() {
    ///     eprintln!("staying on riscv_flush_icache: {e}");
    /// }
    /// ```
    pub fn enable_user_fence_i() -> crate::ApiResult {
        crate::error::api(crate::backends::riscv_linux::enable_user_fence_i())
    }
}
