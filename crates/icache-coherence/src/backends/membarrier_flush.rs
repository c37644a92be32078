//! `pipeline_flush_mt` through
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)`, on Linux,
//! Android and FreeBSD.
//!
//! The decisions (QUERY first, register once, which errno means what) live in
//! [`crate::membarrier`] and are tested there with an injected syscall; this
//! file is only the call itself and the process-wide cache.
//!
//! FreeBSD: membarrier(2) (sys/kern/kern_membarrier.c, syscall 584) has
//! Linux's commands, values and QUERY/EPERM/EINVAL semantics, and arm64's
//! `cpu_sync_core` relies on the exception return to synchronize. It is
//! reached through libc's `membarrier` symbol, looked up once with `dlsym`:
//! on a FreeBSD whose kernel predates it, calling syscall 584 directly would
//! raise SIGSYS, which kills the process, whereas a libc without the symbol
//! is reported as `ENOSYS` and becomes `Unsupported`.

use crate::error::Error;
#[cfg(target_os = "android")]
use crate::error::ErrorKind;
use crate::membarrier::PipelineFlush;

/// AArch64 Linux: the syscall inline (`svc #0`, number in x8, arguments in
/// x0..x2, the result or `-errno` in x0: the arm64 syscall ABI), because
/// libc's variadic `syscall` is a PLT call and a dozen instructions more on
/// every flush. No `nomem`: the call is a barrier, the compiler must not
/// move memory accesses across it.
#[cfg(all(linux_kernel, target_arch = "aarch64"))]
#[inline(always)]
fn membarrier(cmd: i32) -> Result<i32, i32> {
    let ret: i64;
    // SAFETY: membarrier(cmd, flags = 0, cpu_id = 0) reads only its integer
    // arguments; the kernel preserves every register but x0.
    unsafe {
        core::arch::asm!(
            "svc #0",
            in("x8") libc::SYS_membarrier,
            inlateout("x0") i64::from(cmd) => ret,
            in("x1") 0u64,
            in("x2") 0u64,
            options(nostack, preserves_flags),
        )
    };
    // The kernel returns -4095..=-1 for errors (include/linux/err.h).
    if (-4095..0).contains(&ret) {
        Err(-ret as i32)
    } else {
        Ok(ret as i32)
    }
}

#[cfg(all(linux_kernel, not(target_arch = "aarch64")))]
fn membarrier(cmd: i32) -> Result<i32, i32> {
    // SAFETY: membarrier takes plain integers: (cmd, flags = 0, cpu_id = 0).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            cmd,
            0 as libc::c_uint,
            0 as libc::c_int,
        )
    };
    if ret < 0 {
        Err(super::errno())
    } else {
        Ok(ret as i32)
    }
}

#[cfg(target_os = "freebsd")]
fn membarrier(cmd: i32) -> Result<i32, i32> {
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
    type Membarrier = unsafe extern "C" fn(libc::c_int, libc::c_uint, libc::c_int) -> libc::c_int;
    /// 0 = not looked up yet, 1 = libc has no `membarrier`, else its address.
    static ADDRESS: AtomicUsize = AtomicUsize::new(0);
    let mut address = ADDRESS.load(Relaxed);
    if address == 0 {
        // SAFETY: a NUL-terminated name and the default search handle.
        let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"membarrier".as_ptr()) };
        address = if p.is_null() { 1 } else { p as usize };
        ADDRESS.store(address, Relaxed);
    }
    if address == 1 {
        return Err(crate::membarrier::ENOSYS);
    }
    // SAFETY: the symbol is libc's `int membarrier(int, unsigned, int)`.
    let f: Membarrier = unsafe { core::mem::transmute(address) };
    // SAFETY: plain integers: (cmd, flags = 0, cpu_id = 0).
    let ret = unsafe { f(cmd, 0, 0) };
    if ret < 0 {
        Err(super::errno())
    } else {
        Ok(ret)
    }
}

static FLUSH: PipelineFlush = PipelineFlush::new();

/// Every thread of the process passes a context synchronization.
#[inline(always)]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    FLUSH.flush(membarrier, android_guard)
}

/// Android before API 29 (Android 10) runs apps under a seccomp policy that
/// kills the process with SIGSYS on membarrier instead of returning an error,
/// so the syscall must not even be tried there (bionic's
/// `SECCOMP_WHITELIST_APP` gained membarrier in Android 10).
#[cfg(target_os = "android")]
#[allow(clippy::unnecessary_cast)] // c_char is u8 on Arm Android, i8 on x86 Android
fn android_guard() -> Result<(), Error> {
    // It runs once, before the first registration (the gate of
    // `PipelineFlush::flush`), and its refusal is cached there.
    let mut buf = [0 as libc::c_char; 92]; // PROP_VALUE_MAX
                                           // SAFETY: the name is NUL-terminated and the buffer is PROP_VALUE_MAX long.
    let n =
        unsafe { libc::__system_property_get(c"ro.build.version.sdk".as_ptr(), buf.as_mut_ptr()) };
    let mut level = 0;
    for &c in buf.iter().take(n.max(0) as usize) {
        match (c as u8).checked_sub(b'0') {
            Some(d) if d <= 9 => level = level * 10 + i32::from(d),
            _ => break,
        }
    }
    if level < 29 {
        return Err(Error::new(
            ErrorKind::Unsupported,
            "membarrier(MEMBARRIER_CMD_QUERY)",
            None,
            "not attempted: Android before API level 29 kills apps that call membarrier (SIGSYS)",
        )
        .or_code_epoch());
    }
    Ok(())
}

#[cfg(not(target_os = "android"))]
fn android_guard() -> Result<(), Error> {
    Ok(())
}
