//! One backend per mechanism, chosen at compile time.
//!
//! # The contract every backend meets
//!
//! Each backend module provides:
//!
//! ```ignore
//! /// Precondition: `[start, start + len)` is non-empty, does not wrap
//! /// (`lib.rs` checked both), and is mapped memory (the caller's `unsafe`
//! /// contract). RW or RX protection both work.
//! /// Guarantee on `Ok`: instruction fetches of the range *by the calling
//! /// thread* see every byte stored there before the call, and the
//! /// maintenance is complete for every core, so that a later
//! /// `pipeline_flush_mt` only has to synchronize the other threads' contexts.
//! /// It touches no memory outside the cache lines overlapping the range.
//! unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error>;
//!
//! /// The fast path, inlined into every caller of `clear_cache`.
//! /// Precondition: as for `clear_cache`, with `last = start + len - 1`.
//! /// Either makes the range coherent exactly as `clear_cache` would and
//! /// returns `true`, or touches nothing and returns `false`, and `lib.rs`
//! /// then calls `clear_cache` out of line. It never fails and never calls
//! /// a function (a call would cost every caller a stack frame): anything
//! /// that might, such as a system call or a first-time setup, returns
//! /// `false`. Backends that are one OS call per range always return `false`.
//! unsafe fn clear_cache_fast(start: usize, last: usize) -> bool;
//! /// True if `clear_cache_fast` never looks at its range: `lib.rs` then
//! /// skips computing it and only refuses wrapping ranges.
//! const FAST_PATH_IGNORES_RANGE: bool;
//!
//! /// Guarantee on `Ok`: every thread of the process has passed a
//! /// context-synchronization event ordered after all `clear_cache` calls
//! /// that happened before this call. Where the platform cannot give that,
//! /// it returns an error: never `Ok` after doing nothing on an
//! /// architecture that needs it.
//! fn pipeline_flush_mt() -> Result<(), Error>;
//!
//! /// A batch: the same guarantee as `clear_cache` for every range (each
//! /// non-empty, non-wrapping, mapped), with one set of barriers where the
//! /// mechanism allows it.
//! unsafe fn clear_cache_ranges(ranges: &[(usize, usize)]) -> Result<(), Error>;
//!
//! /// Double-mapped code: `len` bytes written through `write` and fetched
//! /// through `exec`, two mappings of the same memory. Cleans by the
//! /// writable address, invalidates by the executable one.
//! unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error>;
//!
//! /// Cross-modifying code: every thread of the process passes a
//! /// serializing / context-synchronizing event after the call began, even
//! /// one executing the modified code right now. Error where impossible.
//! fn cross_modify_flush_mt() -> Result<(), Error>;
//!
//! /// What the backend does and the line sizes it uses.
//! fn cache_info() -> CacheInfo;
//! const MECHANISM: &str;           // clear_cache's mechanism, for humans
//! const PIPELINE_MECHANISM: &str;  // pipeline_flush_mt's
//! ```
//!
//! None of them panics, prints, or allocates.
//!
//! # The choice
//!
//! The chain below is read top to bottom; the first matching line wins, and
//! a target that matches none fails to compile with its name in the message.
//! There is no silent no-op fallback.

use crate::error::Error;

/// For backends without a fast path (see the contract above): every call
/// goes out of line to `clear_cache`. The invocation says why.
#[allow(unused_macros)]
macro_rules! no_fast_path {
    () => {
        pub(crate) const FAST_PATH_IGNORES_RANGE: bool = false;

        /// No fast path: `lib.rs` calls `clear_cache` out of line.
        #[inline(always)]
        pub(crate) unsafe fn clear_cache_fast(_start: usize, _last: usize) -> bool {
            false
        }
    };
}

/// For Linux backends whose `pipeline_flush_mt` is membarrier SYNC_CORE and
/// whose cross-modifying code needs the same broadcast synchronization.
#[allow(unused_macros)]
macro_rules! linux_membarrier_flushes {
    () => {
        #[cfg(feature = "std")]
        pub(crate) use super::linux_membarrier::pipeline_flush_mt;
        #[cfg(feature = "std")]
        pub(crate) use super::linux_membarrier::pipeline_flush_mt as cross_modify_flush_mt;
        pub(crate) const PIPELINE_MECHANISM: &str = super::MEMBARRIER_SYNC_CORE;
    };
}

/// For backends whose mechanism is one complete OS call per range: a batch
/// is each range in turn (the OS offers no separate barrier step to share),
/// and double-mapped code is flushed through the executable address, which
/// the OS routine cleans and invalidates.
#[allow(unused_macros)]
macro_rules! os_call_per_range {
    () => {
        // The OS call is the mechanism, and it can fail.
        no_fast_path!();

        pub(crate) unsafe fn clear_cache_ranges(ranges: &[(usize, usize)]) -> Result<(), Error> {
            for &(start, len) in ranges {
                // SAFETY: forwarded from the caller.
                unsafe { clear_cache(start, len)? };
            }
            Ok(())
        }

        pub(crate) unsafe fn clear_cache_dual(
            _write: usize,
            exec: usize,
            len: usize,
        ) -> Result<(), Error> {
            // SAFETY: forwarded from the caller.
            unsafe { clear_cache(exec, len) }
        }
    };
}

/// For backends where one `clear_cache` covers every address at once (a
/// barrier instruction, or nothing at all): a batch and double-mapped code
/// need exactly one `clear_cache`.
#[allow(unused_macros)]
macro_rules! whole_address_space_per_call {
    () => {
        pub(crate) const FAST_PATH_IGNORES_RANGE: bool = true;

        /// The whole call, inline: every backend using this macro has an
        /// infallible `clear_cache` that is one instruction or nothing.
        #[inline(always)]
        pub(crate) unsafe fn clear_cache_fast(_start: usize, _last: usize) -> bool {
            // SAFETY: the range is not looked at.
            unsafe { clear_cache(0, 0) }.is_ok()
        }

        pub(crate) unsafe fn clear_cache_ranges(_ranges: &[(usize, usize)]) -> Result<(), Error> {
            // SAFETY: the range is not looked at.
            unsafe { clear_cache(0, 0) }
        }

        pub(crate) unsafe fn clear_cache_dual(
            _write: usize,
            _exec: usize,
            _len: usize,
        ) -> Result<(), Error> {
            // SAFETY: the range is not looked at.
            unsafe { clear_cache(0, 0) }
        }
    };
}

/// Declares the backends as an if/else-if chain of `cfg`s: each entry's
/// module is compiled only if its predicate holds and no earlier one did.
macro_rules! choose_backend {
    ($( $(#[$doc:meta])* if cfg($pred:meta) => $module:ident; )*) => {
        choose_backend!(@chain () $( $(#[$doc])* ($pred) $module; )*);
    };
    (@chain ($($earlier:meta,)*) $(#[$doc:meta])* ($pred:meta) $module:ident; $($rest:tt)*) => {
        $(#[$doc])*
        #[cfg(all($pred, not(any($($earlier),*))))]
        pub(crate) mod $module;
        #[cfg(all($pred, not(any($($earlier),*))))]
        pub(crate) use $module as imp;
        choose_backend!(@chain ($($earlier,)* $pred,) $($rest)*);
    };
    (@chain ($($earlier:meta,)*)) => {
        #[cfg(not(any($($earlier),*)))]
        compile_error!(concat!(
            "icache-coherence has no backend for the target `",
            env!("ICACHE_COHERENCE_TARGET"),
            "`, so it cannot guarantee that written code is fetched correctly there. \
             Please open an issue naming the target's cache-maintenance mechanism."
        ));
    };
}

choose_backend! {
    /// Under Miri no machine code runs: a no-op, so users' Miri runs work.
    if cfg(miri) => miri;
    /// Windows on every architecture: FlushInstructionCache.
    if cfg(windows) => windows;
    /// macOS, iOS and the other Apple OSes on Arm: sys_icache_invalidate.
    if cfg(all(target_vendor = "apple", target_arch = "aarch64")) => apple_aarch64;
    /// Linux, Android, the BSDs and bare metal on AArch64: the user-space sequence.
    if cfg(all(
        target_arch = "aarch64",
        any(
            target_os = "linux",
            target_os = "android",
            target_os = "freebsd",
            target_os = "netbsd",
            target_os = "openbsd",
            target_os = "none",
        )
    )) => aarch64;
    /// 32-bit Arm Linux and Android: the cacheflush syscall.
    if cfg(all(target_arch = "arm", any(target_os = "linux", target_os = "android"))) => arm_linux_cacheflush;
    /// 32-bit Arm FreeBSD and NetBSD: sysarch(ARM_SYNC_ICACHE).
    if cfg(all(target_arch = "arm", any(target_os = "freebsd", target_os = "netbsd"))) => arm_bsd_sysarch;
    /// RISC-V bare metal (no_std): fence.i on the calling hart.
    if cfg(all(any(target_arch = "riscv64", target_arch = "riscv32"), target_os = "none")) => riscv_fence_i;
    /// RISC-V Linux: riscv_flush_icache with flags = 0.
    if cfg(all(any(target_arch = "riscv64", target_arch = "riscv32"), target_os = "linux")) => riscv_linux;
    /// POWER and PowerPC Linux: dcbst / sync / icbi / sync / isync.
    if cfg(all(any(target_arch = "powerpc64", target_arch = "powerpc"), target_os = "linux")) => powerpc;
    /// LoongArch Linux: ibar 0.
    if cfg(all(target_arch = "loongarch64", target_os = "linux")) => loongarch;
    /// MIPS Linux: the cacheflush syscall.
    if cfg(all(any(target_arch = "mips", target_arch = "mips64"), target_os = "linux")) => mips_linux_cacheflush;
    /// x86, x86-64, s390x: coherent in hardware, nothing to do.
    if cfg(any(target_arch = "x86", target_arch = "x86_64", target_arch = "s390x")) => coherent;
}

/// `membarrier` SYNC_CORE, shared by the Linux backends that need it.
#[cfg(all(
    feature = "std",
    not(miri),
    any(target_os = "linux", target_os = "android"),
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "s390x",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "loongarch64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "riscv64",
        target_arch = "riscv32",
    )
))]
mod linux_membarrier;

/// The pipeline-flush mechanism of the Linux backends, for `cache_info`.
#[allow(dead_code)] // only the Linux backends that need a flush use it
pub(crate) const MEMBARRIER_SYNC_CORE: &str =
    "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)";

/// The calling thread's last `errno`.
#[cfg(all(unix, not(miri)))]
#[allow(dead_code)] // not every Unix backend makes syscalls
pub(crate) fn errno() -> i32 {
    // SAFETY: libc's per-thread errno location is always valid.
    unsafe {
        #[cfg(any(target_os = "linux", target_os = "emscripten", target_os = "l4re"))]
        let p = libc::__errno_location();
        #[cfg(any(target_os = "android", target_os = "netbsd", target_os = "openbsd"))]
        let p = libc::__errno();
        #[cfg(any(
            target_vendor = "apple",
            target_os = "freebsd",
            target_os = "dragonfly"
        ))]
        let p = libc::__error();
        *p
    }
}

/// Run the backend, after `lib.rs` validated the range.
#[inline]
pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    unsafe { imp::clear_cache(start, len) }
}

pub(crate) use imp::FAST_PATH_IGNORES_RANGE;

/// The backend's fast path, after `lib.rs` validated the range.
#[inline(always)]
pub(crate) unsafe fn clear_cache_fast(start: usize, last: usize) -> bool {
    // SAFETY: forwarded from the caller.
    unsafe { imp::clear_cache_fast(start, last) }
}

/// A batch, after `lib.rs` validated and dropped empty ranges.
#[inline]
pub(crate) unsafe fn clear_cache_ranges(ranges: &[(usize, usize)]) -> Result<(), Error> {
    if ranges.is_empty() {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { imp::clear_cache_ranges(ranges) }
}

/// Double-mapped code, after `lib.rs` validated both ranges.
#[inline]
pub(crate) unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    unsafe { imp::clear_cache_dual(write, exec, len) }
}

#[cfg(feature = "std")]
#[inline(always)]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    imp::pipeline_flush_mt()
}

#[cfg(feature = "std")]
pub(crate) fn cross_modify_flush_mt() -> Result<(), Error> {
    imp::cross_modify_flush_mt()
}

pub(crate) fn cache_info() -> crate::CacheInfo {
    imp::cache_info()
}
