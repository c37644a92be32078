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
//! # Beyond the standard API
//!
//! - **Batching**: [`batch`] (or [`clear_cache_ranges`]) makes many ranges
//!   coherent with one set of barriers and at most one pipeline flush; a
//!   JIT patching 1,000 call sites pays 2 `dsb` + 1 `isb` + 1 `membarrier` on
//!   AArch64 Linux, not 1,000 of each.
//! - **Cache information**: [`cache_info`] returns the line sizes the library
//!   steps by, whether cleaning and invalidation are needed (CTR_EL0.IDC and
//!   DIC on AArch64), whether [`pipeline_flush_mt`] does anything here, and
//!   the mechanisms' names:
//!
//!   ```
//!   let info = icache_coherence::cache_info();
//!   // Keep a patchable 8-byte site inside one instruction-cache line.
//!   let line = info.instruction_line.unwrap_or(64);
//!   let site_offset = 0x1f8usize;
//!   let fits = site_offset / line == (site_offset + 7) / line;
//!   println!("{}: site fits in one line: {fits}", info.mechanism);
//!   ```
//! - **Double-mapped code** (W^X by two mappings): [`clear_cache_dual`]
//!   cleans by the writable address and invalidates by the executable one.
//! - **Cross-modifying code** (patching code another thread may be executing
//!   right now): [`cross_modify_flush_mt`] serializes every thread, which x86
//!   needs (Intel SDM 8.1.3) although [`pipeline_flush_mt`] does nothing there.
//! - **RISC-V Linux 6.10+**: `riscv::enable_user_fence_i` opts in to
//!   user-space `fence.i` instead of a syscall per flush.
//! - **`no_std`**: with `default-features = false` the crate builds for bare
//!   metal (`aarch64-unknown-none`, `riscv64gc-unknown-none-elf`, …) and
//!   offers [`clear_cache_core`] (the architecture's own sequence) with the
//!   allocation-free [`Error`]:
//!
//!   ```
//!   # let code = [0u8; 16];
//!   # let ptr = code.as_ptr().cast();
//!   // In a no_std kernel or firmware, after writing `code`:
//!   unsafe { icache_coherence::clear_cache_core(ptr, code.len()) }
//!       .map_err(|e| e.kind())
//!       .expect("a range that does not wrap is always accepted");
//!   ```
//!
//! | function | AArch64 Linux | Apple | Windows | Arm Linux | RISC-V Linux | POWER | x86 Linux |
//! |---|---|---|---|---|---|---|---|
//! | [`clear_cache_ranges`] / [`batch`] | all `dc`, `dsb`, all `ic`, `dsb`, `isb` | `sys_icache_invalidate` each, one `isb` | `FlushInstructionCache` each | `cacheflush` each | one syscall | all `dcbst`, `sync`, all `icbi`, `sync; isync` | nothing |
//! | [`clear_cache_dual`] | `dc` by RW, `ic` by RX | OS routine on RX | OS routine on RX | syscall on RX | syscall (whole cache) | `dcbst` by RW, `icbi` by RX | nothing |
//! | [`cross_modify_flush_mt`] | membarrier SYNC_CORE | Mach thread stop | `FlushProcessWriteBuffers` | membarrier SYNC_CORE | nothing left | membarrier SYNC_CORE | membarrier SYNC_CORE |
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
    if unsafe { clear_cache_fast(ptr as usize, len) } {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { clear_cache_slow(ptr, len) }
}

/// The part of every `clear_cache` call that is inlined into the caller:
/// the wrapping check and the backend's fast path. It either
/// finishes the call (`true`) or touches nothing (`false`), in which case
/// the out-of-line slow path runs the whole call again with every check.
///
/// The split exists for the fixed cost of a call (BENCHMARKS.md). Every
/// slow case (a wrapping range, an error to box, a backend that makes a
/// system call, AArch64's first call on a core with a new CTR_EL0 value)
/// is a call, and a call needs a stack frame. Kept behind one branch to one
/// cold function, the frame is built only there, and the common case is a
/// leaf: on AArch64 the maintenance instructions and a handful of others.
///
/// # Safety
///
/// As for [`clear_cache`].
#[inline(always)]
unsafe fn clear_cache_fast(start: usize, len: usize) -> bool {
    if backends::FAST_PATH_IGNORES_RANGE {
        // Nothing here looks at the range (x86, s390x: nothing to do at
        // all), so only the refusal of a wrapping range is left.
        // SAFETY: the range is not looked at.
        return !lines::wraps(start, len) && unsafe { backends::clear_cache_fast(0, 0) };
    }
    // An empty range takes the slow path too: it is rare, and a second early
    // return here would share its exit with the slow path's and pull the
    // slow path's stack frame into every call.
    if len == 0 {
        return false;
    }
    match lines::last_byte_of_nonempty(start, len) {
        // SAFETY: non-empty, not wrapping; mapped by the caller's contract.
        Some(last) => unsafe { backends::clear_cache_fast(start, last) },
        None => false,
    }
}

/// The out-of-line rest of [`clear_cache`].
///
/// # Safety
///
/// As for [`clear_cache`].
#[cfg(feature = "std")]
#[cold]
#[inline(never)]
unsafe fn clear_cache_slow(ptr: *const c_void, len: usize) -> std::io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { clear_cache_core_slow(ptr, len) }.map_err(Into::into)
}

/// The out-of-line rest of [`clear_cache_core`]: every check again, then
/// the backend's full `clear_cache`.
///
/// # Safety
///
/// As for [`clear_cache`].
#[cold]
#[inline(never)]
unsafe fn clear_cache_core_slow(ptr: *const c_void, len: usize) -> Result<(), Error> {
    let start = ptr as usize;
    match lines::last_byte(start, len)? {
        None => Ok(()),
        // SAFETY: non-empty, not wrapping; mapped by the caller's contract.
        Some(_) => unsafe { backends::clear_cache(start, len) },
    }
}

/// [`clear_cache`] with the crate's own [`Error`], for `no_std` users.
///
/// # Safety
///
/// As for [`clear_cache`].
#[inline(always)]
pub unsafe fn clear_cache_core(ptr: *const c_void, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    if unsafe { clear_cache_fast(ptr as usize, len) } {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { clear_cache_core_slow(ptr, len) }
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

impl CacheInfo {
    /// For backends that step by no cache lines themselves: the OS does the
    /// maintenance, or one instruction covers every address.
    #[allow(dead_code)] // the AArch64 and POWER backends step by lines
    pub(crate) const fn without_lines(
        mechanism: &'static str,
        pipeline_flush_mechanism: &'static str,
        maintenance_needed: bool,
        pipeline_flush_needed: bool,
    ) -> CacheInfo {
        CacheInfo {
            mechanism,
            pipeline_flush_mechanism,
            data_line: None,
            instruction_line: None,
            needs_clean: maintenance_needed,
            needs_invalidate: maintenance_needed,
            pipeline_flush_needed,
        }
    }
}

/// Describes the platform's cache maintenance as this library performs it.
///
/// On AArch64 the line sizes are the running minimum over every CTR_EL0
/// value this process has read so far, i.e. what the next [`clear_cache`]
/// will step by.
pub fn cache_info() -> CacheInfo {
    backends::cache_info()
}

/// Makes many ranges coherent with a single set of barriers.
///
/// Equivalent to calling [`clear_cache`] on each range, but cheaper: on
/// AArch64 it issues every `dc cvau`, one `dsb ish`, every `ic ivau`, one
/// `dsb ish` and one `isb`, instead of that whole sequence per range. What
/// each platform does:
///
/// | platform | a batch costs |
/// |---|---|
/// | AArch64 (not Apple, not Windows) | the cleans and invalidates of every range, 2 `dsb ish`, 1 `isb` |
/// | POWER | every `dcbst`, 1 `sync`, every `icbi`, `sync; isync` (with ICACHE_SNOOP: one `sync; icbi; sync; isync`) |
/// | RISC-V Linux | one `riscv_flush_icache` syscall (the kernel flushes whole caches) |
/// | LoongArch, RISC-V bare metal | one `ibar 0` / `fence.i` |
/// | Apple AArch64 | `sys_icache_invalidate` per range, 1 `isb` |
/// | Windows, 32-bit Arm, MIPS | one OS call per range (each is complete; the OS offers no shared barrier step) |
/// | x86, x86-64, s390x, Miri | nothing |
///
/// All ranges are validated before anything is touched: if any range wraps
/// past the end of the address space the call returns `InvalidInput` and
/// touches nothing. Empty ranges are skipped. Use [`batch`] to collect
/// ranges as you patch and to end with at most one [`pipeline_flush_mt`].
///
/// # Safety
///
/// Every range must be mapped memory, as for [`clear_cache`].
#[cfg(feature = "std")]
pub unsafe fn clear_cache_ranges(ranges: &[(*const c_void, usize)]) -> std::io::Result<()> {
    let mut valid = Vec::with_capacity(ranges.len());
    for &(ptr, len) in ranges {
        if lines::last_byte(ptr as usize, len)?.is_some() {
            valid.push((ptr as usize, len));
        }
    }
    // SAFETY: validated above; mapped by the caller's contract.
    unsafe { backends::clear_cache_ranges(&valid) }.map_err(Into::into)
}

/// Who will execute the code a [`batch`] makes coherent.
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// Only the calling thread: the batch ends without a pipeline flush.
    ThisThread,
    /// Any thread: the batch ends with one [`pipeline_flush_mt`].
    AllThreads,
}

/// The ranges collected by a [`batch`]. Only [`batch`] can create one, and
/// it always completes it, so the final barriers cannot be forgotten.
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct Batch {
    ranges: Vec<(usize, usize)>,
}

#[cfg(feature = "std")]
impl Batch {
    /// Adds `[ptr, ptr + len)` to the batch.
    ///
    /// A range that wraps past the end of the address space is refused with
    /// `InvalidInput` and not added. An empty range is accepted and ignored.
    ///
    /// # Safety
    ///
    /// The range must stay mapped until the [`batch`] call returns, as for
    /// [`clear_cache`].
    pub unsafe fn add(&mut self, ptr: *const c_void, len: usize) -> std::io::Result<()> {
        if lines::last_byte(ptr as usize, len)?.is_some() {
            self.ranges.push((ptr as usize, len));
        }
        Ok(())
    }

    /// How many non-empty ranges were added.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether no non-empty range was added.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Collects ranges in `f`, then makes them all coherent with one set of
/// barriers (see [`clear_cache_ranges`] for what each platform does) and,
/// for [`Publish::AllThreads`], one [`pipeline_flush_mt`].
///
/// The completion runs whatever `f` returns, so code written before an
/// error is never left half-maintained; `f`'s error is then returned. There
/// is no other way to complete a [`Batch`], so the barriers cannot be
/// skipped by mistake.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// # let mut code = vec![0u8; 64];
/// # let sites: Vec<*const core::ffi::c_void> = (0..8).map(|i| code[i * 8..].as_ptr().cast()).collect();
/// use icache_coherence::{batch, Publish};
/// // Patch 8-byte call sites, then publish them all at once.
/// batch(Publish::AllThreads, |b| {
///     for &site in &sites {
///         // ... write the new instruction at `site` ...
///         unsafe { b.add(site, 8)? };
///     }
///     Ok(())
/// })?;
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "std")]
pub fn batch<R>(
    publish: Publish,
    f: impl FnOnce(&mut Batch) -> std::io::Result<R>,
) -> std::io::Result<R> {
    let mut b = Batch { ranges: Vec::new() };
    let result = f(&mut b);
    // SAFETY: every range was validated by `Batch::add`, whose caller
    // promised it stays mapped until now.
    unsafe { backends::clear_cache_ranges(&b.ranges) }?;
    let value = result?;
    if publish == Publish::AllThreads {
        pipeline_flush_mt()?;
    }
    Ok(value)
}

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
#[cfg(feature = "std")]
pub unsafe fn clear_cache_dual(
    write_ptr: *const c_void,
    exec_ptr: *const c_void,
    len: usize,
) -> std::io::Result<()> {
    let (w, x) = (write_ptr as usize, exec_ptr as usize);
    if lines::last_byte(w, len)?.is_none() || lines::last_byte(x, len)?.is_none() {
        return Ok(());
    }
    // SAFETY: validated; mapped by the caller's contract.
    unsafe { backends::clear_cache_dual(w, x, len) }.map_err(Into::into)
}

/// Makes every thread of the process serialize, for code that other threads
/// may be executing *while* it is modified (cross-modifying code).
///
/// [`pipeline_flush_mt`] covers publishing code at addresses that no thread
/// is executing, which needs nothing on x86. Rewriting instructions that
/// another thread may be executing right now is different: Intel SDM vol. 3,
/// 8.1.3 requires the executing processor to run a serializing instruction
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
#[cfg(feature = "std")]
pub fn cross_modify_flush_mt() -> std::io::Result<()> {
    backends::cross_modify_flush_mt().map_err(Into::into)
}

/// RISC-V specific options.
#[cfg(all(
    feature = "std",
    not(miri),
    any(target_arch = "riscv64", target_arch = "riscv32"),
    target_os = "linux"
))]
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
    pub fn enable_user_fence_i() -> std::io::Result<()> {
        crate::backends::imp::enable_user_fence_i().map_err(Into::into)
    }
}
