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
//! /// Guarantee on `Ok`: every thread of the process has passed a
//! /// context-synchronization event ordered after all `clear_cache` calls
//! /// that happened before this call. Where the platform cannot give that,
//! /// it returns an error: never `Ok` after doing nothing on an
//! /// architecture that needs it.
//! fn pipeline_flush_mt() -> Result<(), Error>;
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

/// Declares the backends as an if/else-if chain of `cfg`s: each entry's
/// module is compiled only if its predicate holds and no earlier one did.
macro_rules! choose_backend {
    ($( $(#[$doc:meta])* if cfg($pred:meta) => $module:ident; )*) => {
        choose_backend!(@chain () $( $(#[$doc])* ($pred) $module; )*);
    };
    (@chain ($($earlier:meta,)*) $(#[$doc:meta])* ($pred:meta) $module:ident; $($rest:tt)*) => {
        $(#[$doc])*
        #[cfg(all($pred, not(any($($earlier),*))))]
        mod $module;
        #[cfg(all($pred, not(any($($earlier),*))))]
        use $module as imp;
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
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "loongarch64",
        target_arch = "mips",
        target_arch = "mips64",
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
#[inline(always)]
pub(crate) unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    unsafe { imp::clear_cache(start, len) }
}

#[cfg(feature = "std")]
#[inline(always)]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    imp::pipeline_flush_mt()
}

pub(crate) fn cache_info() -> crate::CacheInfo {
    imp::cache_info()
}
