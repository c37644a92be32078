//! One backend per mechanism, chosen at compile time.
//!
//! # The contract every backend meets
//!
//! A backend is a type that implements [`Backend`]. The compiler demands
//! `clear_cache`, `pipeline_flush_mt` and the two mechanism names; every
//! other item has a default that is right for a backend whose `clear_cache`
//! is one complete OS call per range. A backend whose one call covers every
//! address (a barrier instruction, or nothing at all) sets
//! [`Backend::WHOLE_ADDRESS_SPACE`] and gets defaults right for that.
//!
//! None of the methods panics, prints, or allocates. `lib.rs` validates
//! every range before a backend sees it (see [`crate::dispatch`]), so a
//! backend never has to handle an empty or wrapping range.
//!
//! # The choice
//!
//! `build.rs` picks the backend from its table (`choose`) and emits
//! `cfg(icache_backend = "<file>")`; the list below turns that into
//! `mod <file>` and the type [`Chosen`]. A target without a row fails to
//! compile with its name in the message. There is no silent no-op fallback.
//! Every other target condition the crate needs (`linux_kernel`,
//! `icache_membarrier`, `icache_line_loops`, ...) is derived from the same
//! row in `build.rs`, so nothing here has to be kept in step by hand.

use crate::error::Error;
use crate::CacheInfo;

/// What every backend provides. See the module docs.
pub(crate) trait Backend {
    /// `clear_cache`'s mechanism, for humans ([`CacheInfo::mechanism`]).
    const MECHANISM: &'static str;
    /// `pipeline_flush_mt`'s mechanism, for humans.
    const PIPELINE_MECHANISM: &'static str;
    /// `cross_modify_flush_mt`'s mechanism, for humans: by default the
    /// pipeline flush's, which it is by default.
    const CROSS_MODIFY_MECHANISM: &'static str = Self::PIPELINE_MECHANISM;

    /// True if one `clear_cache` covers every address at once (a barrier
    /// instruction, or nothing): it never looks at its range, is infallible
    /// and is inlined whole into every caller. Batches and double-mapped
    /// code then need exactly one call.
    const WHOLE_ADDRESS_SPACE: bool = false;
    /// The longest range the inlined fast path takes; longer ones go to
    /// the out-of-line `clear_cache` (AArch64: its loops are unrolled,
    /// which pays only for long ranges). The default takes every length.
    const FAST_PATH_MAX_LEN: usize = usize::MAX;
    /// Whether fetch needs any maintenance at all here (for the default
    /// [`Backend::cache_info`]).
    const MAINTENANCE_NEEDED: bool = true;
    /// Whether `pipeline_flush_mt` does anything here (likewise).
    const PIPELINE_FLUSH_NEEDED: bool = true;

    /// Precondition: `[start, start + len)` is non-empty, does not wrap
    /// (`lib.rs` checked both), and is mapped memory (the caller's `unsafe`
    /// contract). RW or RX protection both work.
    ///
    /// Guarantee on `Ok`: instruction fetches of the range *by the calling
    /// thread* see every byte stored there before the call, and the
    /// maintenance is complete for every core, so that a later
    /// `pipeline_flush_mt` only has to synchronize the other threads'
    /// contexts. It touches no memory outside the cache lines overlapping
    /// the range.
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error>;

    /// The fast path, inlined into every caller of `clear_cache`.
    /// Precondition: as for `clear_cache`, with `last = start + len - 1`
    /// (when [`Backend::WHOLE_ADDRESS_SPACE`], all three may be 0).
    ///
    /// Either makes the range coherent exactly as `clear_cache` would and
    /// returns `true`, or touches nothing and returns `false`, and `lib.rs`
    /// then calls `clear_cache` out of line. It never fails and never calls
    /// a function (a call would cost every caller a stack frame): anything
    /// that might, such as a system call or a first-time setup, returns
    /// `false`. The default: the whole call where it covers every address,
    /// otherwise no fast path.
    #[inline(always)]
    unsafe fn clear_cache_fast(start: usize, len: usize, last: usize) -> bool {
        let _ = (start, len, last);
        // SAFETY: a whole-address-space `clear_cache` never looks at its
        // range.
        Self::WHOLE_ADDRESS_SPACE && unsafe { Self::clear_cache(0, 0) }.is_ok()
    }

    /// A batch: the same guarantee as `clear_cache` for every range (each
    /// non-empty, non-wrapping, mapped; there is at least one), with one set
    /// of barriers where the mechanism allows it. It must not allocate, so
    /// that it stays usable without `std` and in a signal handler wherever
    /// `clear_cache` is. The default: one call, or one call per range.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        if Self::WHOLE_ADDRESS_SPACE {
            // SAFETY: the range is not looked at.
            return unsafe { Self::clear_cache(0, 0) };
        }
        for (start, len) in ranges {
            // SAFETY: forwarded from the caller.
            unsafe { Self::clear_cache(start, len)? };
        }
        Ok(())
    }

    /// Double-mapped code: `len` bytes written through `write` and fetched
    /// through `exec`, two mappings of the same memory. Cleans by the
    /// writable address, invalidates by the executable one. The default
    /// gives the executable address to the OS routine, which cleans and
    /// invalidates it (data caches are physically tagged).
    unsafe fn clear_cache_dual(write: usize, exec: usize, len: usize) -> Result<(), Error> {
        let _ = write;
        // SAFETY: forwarded from the caller.
        unsafe { Self::clear_cache(exec, len) }
    }

    /// Guarantee on `Ok`: every thread of the process has passed a
    /// context-synchronization event ordered after all `clear_cache` calls
    /// that happened before this call. Where the platform cannot give that,
    /// it returns an error: never `Ok` after doing nothing on an
    /// architecture that needs it.
    fn pipeline_flush_mt() -> Result<(), Error>;

    /// Cross-modifying code: every thread of the process passes a
    /// serializing / context-synchronizing event after the call began, even
    /// one executing the modified code right now. Error where impossible.
    /// The default is the pipeline flush, which is exactly that on every
    /// non-coherent architecture.
    fn cross_modify_flush_mt() -> Result<(), Error> {
        Self::pipeline_flush_mt()
    }

    /// The calling thread's own context synchronization, for a reader that
    /// has read a publication and branched on it (the contract of
    /// [`crate::sync_this_thread`]). No system call, no lock, no
    /// allocation. The default is the architecture's instruction
    /// (`context_sync.rs`).
    #[inline(always)]
    fn sync_this_thread() {
        crate::context_sync::sync_this_thread();
    }

    /// What `sync_this_thread` executes, for humans.
    const SYNC_THIS_THREAD_MECHANISM: &'static str = crate::context_sync::MECHANISM;

    /// The data and instruction line sizes to report where the backend
    /// steps by no lines itself but the platform tells them (Apple's
    /// `hw.cachelinesize`, Windows' processor information, x86 CPUID). The
    /// default knows none.
    fn line_sizes() -> (Option<usize>, Option<usize>) {
        (None, None)
    }

    /// What the backend does and the line sizes it uses. The default is for
    /// backends that step by no lines themselves ([`Backend::line_sizes`]).
    fn cache_info() -> CacheInfo {
        let (data_line, instruction_line) = Self::line_sizes();
        CacheInfo {
            mechanism: Self::MECHANISM,
            pipeline_flush_mechanism: Self::PIPELINE_MECHANISM,
            cross_modify_mechanism: Self::CROSS_MODIFY_MECHANISM,
            sync_this_thread_mechanism: Self::SYNC_THIS_THREAD_MECHANISM,
            data_line,
            instruction_line,
            needs_clean: Self::MAINTENANCE_NEEDED,
            needs_invalidate: Self::MAINTENANCE_NEEDED,
            pipeline_flush_needed: Self::PIPELINE_FLUSH_NEEDED,
        }
    }
}

/// Declares the backend list: each `"file" => module::Type` is compiled
/// only where `build.rs` chose that file, and a target for which it chose
/// none stops here.
macro_rules! backends {
    ($( $(#[$doc:meta])* $file:literal => $module:ident :: $ty:ident; )*) => {
        $(
            $(#[$doc])*
            #[cfg(icache_backend = $file)]
            pub(crate) mod $module;
            #[cfg(icache_backend = $file)]
            pub(crate) type Chosen = $module::$ty;
        )*
        #[cfg(not(any($(icache_backend = $file),*)))]
        compile_error!(concat!(
            "icache-coherence has no backend for the target `",
            env!("ICACHE_COHERENCE_TARGET"),
            "`, so it cannot guarantee that written code is fetched correctly there. \
             Please open an issue naming the target's cache-maintenance mechanism."
        ));
    };
}

backends! {
    /// Under Miri no machine code runs: a no-op, so users' Miri runs work.
    "miri" => miri::Miri;
    /// Windows on every architecture: FlushInstructionCache.
    "windows" => windows::Windows;
    /// macOS, iOS and the other Apple OSes on Arm: sys_icache_invalidate.
    "apple_aarch64" => apple_aarch64::Apple;
    /// Linux, Android, the BSDs and bare metal on AArch64: the user-space sequence.
    "aarch64" => aarch64::Aarch64;
    /// 32-bit Arm Linux and Android: the cacheflush syscall.
    "arm_linux_cacheflush" => arm_linux_cacheflush::ArmCacheflush;
    /// 32-bit Arm FreeBSD and NetBSD: sysarch(ARM_SYNC_ICACHE).
    "arm_bsd_sysarch" => arm_bsd_sysarch::ArmSysarch;
    /// RISC-V bare metal: fence.i on the calling hart.
    "riscv_fence_i" => riscv_fence_i::FenceI;
    /// RISC-V Linux: riscv_flush_icache with flags = 0.
    "riscv_linux" => riscv_linux::RiscvLinux;
    /// POWER and PowerPC Linux: dcbst / sync / icbi / sync / isync.
    "powerpc" => powerpc::Power;
    /// LoongArch Linux: ibar 0.
    "loongarch" => loongarch::LoongArch;
    /// MIPS Linux: the cacheflush syscall.
    "mips_linux_cacheflush" => mips_linux_cacheflush::MipsCacheflush;
    /// x86, x86-64, s390x: coherent in hardware, nothing to do.
    "coherent" => coherent::Coherent;
    /// Fuchsia on AArch64 and RISC-V: zx_cache_flush(ZX_CACHE_FLUSH_INSN).
    "fuchsia" => fuchsia::Fuchsia;
    /// 32-bit Arm bare metal, A and R profiles: CP15 maintenance by address (PL1).
    "arm_cp15" => arm_cp15::ArmCp15;
    /// Armv7-M / Armv8-M Mainline bare metal: the SCB's cache maintenance registers.
    "arm_m_scb" => arm_m_scb::ArmMScb;
    /// Armv6-M / Armv8-M Baseline bare metal: no caches, dsb / isb.
    "arm_m_barriers" => arm_m_barriers::ArmMBarriers;
    /// WebAssembly: cannot execute bytes it wrote, nothing to do.
    "wasm" => wasm::Wasm;
}

/// `membarrier` SYNC_CORE, shared by the Linux and FreeBSD backends.
#[cfg(icache_membarrier)]
pub(crate) mod membarrier_flush;

/// The calling thread's last `errno`.
#[cfg(icache_errno)]
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
