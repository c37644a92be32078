//! Apple AArch64 (macOS, iOS, tvOS, watchOS, visionOS): libSystem's
//! `sys_icache_invalidate`, never `mrs ctr_el0` (which raises SIGILL there).
//!
//! `sys_icache_invalidate(start, len)` (libkern `<libkern/OSCacheControl.h>`)
//! cleans and invalidates the range with Apple's own errata handling. We end
//! with our own `isb` so that the calling thread's guarantee does not depend
//! on whether this libSystem version ends in one.

use core::arch::asm;
use core::ffi::c_void;

use super::Backend;
use crate::error::Error;

extern "C" {
    fn sys_icache_invalidate(start: *mut c_void, len: usize);
}

/// libSystem's `sys_icache_invalidate`, and a Mach walk for other threads.
pub(crate) struct Apple;

impl Backend for Apple {
    const MECHANISM: &'static str = "sys_icache_invalidate + isb";
    const PIPELINE_MECHANISM: &'static str =
        "thread_suspend + thread_get_state + thread_resume of every other thread (Mach)";

    // No fast path (the default): `sys_icache_invalidate` is a call into
    // libSystem, and a fast path that calls would cost every caller a stack
    // frame.

    #[inline]
    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        // SAFETY: the caller guarantees the range is mapped.
        unsafe { sys_icache_invalidate(start as *mut c_void, len) };
        // SAFETY: a barrier has no memory-safety preconditions.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
        Ok(())
    }

    /// A batch: `sys_icache_invalidate` per range (each call carries its own
    /// barriers; libSystem exposes no split clean/invalidate), one `isb`.
    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        for (start, len) in ranges {
            // SAFETY: the caller guarantees the ranges are mapped.
            unsafe { sys_icache_invalidate(start as *mut c_void, len) };
        }
        // SAFETY: a barrier has no memory-safety preconditions.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
        Ok(())
    }

    // Double-mapped (MAP_JIT or mach_vm_remap) code, the default:
    // invalidate through the executable alias; the data cache is physically
    // tagged, so cleaning through it cleans the bytes written through the
    // other alias.

    /// The line size XNU reports, `hw.cachelinesize` (sysctl(3): "the
    /// cache line size in bytes"; XNU fills it from `ml_cpu_info`'s
    /// `cache_line_size`, 128 on Apple M1). XNU reports one size, so it is
    /// given for both caches; `sys_icache_invalidate` steps by it itself.
    fn line_sizes() -> (Option<usize>, Option<usize>) {
        let line = cache_line_size();
        (line, line)
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        mach::sync_other_threads()?;
        // SAFETY: as above.
        unsafe { asm!("isb", options(nostack, preserves_flags)) };
        Ok(())
    }
}

/// `sysctlbyname("hw.cachelinesize")`: a 64-bit integer on current XNU
/// (`CTLTYPE_QUAD`), 32 bits on older ones; both are accepted.
fn cache_line_size() -> Option<usize> {
    let mut value: u64 = 0;
    let mut size = core::mem::size_of::<u64>();
    // SAFETY: the name is NUL-terminated, `value` holds `size` bytes, and
    // no new value is set.
    let r = unsafe {
        libc::sysctlbyname(
            c"hw.cachelinesize".as_ptr(),
            (&mut value as *mut u64).cast(),
            &mut size,
            core::ptr::null_mut(),
            0,
        )
    };
    let value = match (r, size) {
        (0, 8) => value,
        // A 32-bit value lands in the first four bytes of `value`.
        (0, 4) => u64::from(u32::from_ne_bytes(value.to_ne_bytes()[..4].try_into().ok()?)),
        _ => return None,
    };
    usize::try_from(value).ok().filter(|&v| v != 0)
}

/// Broadcast context synchronization on XNU.
///
/// Apple offers no membarrier. Design: every other thread of the task is
/// forced off its core once. `thread_suspend` stops it from being scheduled;
/// `thread_get_state` on a suspended thread does not return until the
/// thread has actually stopped (XNU `thread_get_state` → `thread_stop`,
/// which waits for the thread to leave its processor; the same pair is how
/// Mono and the Boehm GC stop the world); `thread_resume` lets it run again.
/// A thread only returns to user mode through an exception return (`eret`),
/// which is a context-synchronization event (Arm ARM, "Context
/// synchronization event"), so its next instruction fetch happens after
/// this call began, i.e. after the caller's `clear_cache`. Threads created
/// during the walk start with an `eret` too. Threads that exit in the
/// meantime need nothing.
///
/// What it guarantees. The argument above rests on `eret` being context
/// synchronizing, which the Arm ARM makes it only while SCTLR_EL1.EOS = 1.
/// XNU has a build option, `ERET_IS_NOT_CONTEXT_SYNCHRONIZING`
/// (osfmk/arm64/proc_reg.h), that clears EOS; on such a kernel a thread that
/// is stopped and resumed gets no `isb` from the return, and the walk is
/// best effort. Nothing visible to a process says which kernel it runs on.
///
/// Why it stays the default: it is the only broadcast XNU offers (there is
/// no membarrier), it is complete wherever `eret` synchronizes, and the
/// crate it replaces did no more. A JIT that needs the guarantee on every
/// XNU build publishes with `CodeEpoch` instead, whose readers run their
/// own `isb` (`sync_this_thread`), which depends on no kernel at all.
///
/// The cost is two Mach calls per thread and a short stop of each thread, so
/// callers should publish code in batches and flush once per batch. Only one
/// walk runs at a time (see `WALKING`), so it never deadlocks when several
/// threads flush at once; it is not allowed in a signal handler (it may wait
/// for another walker).
/// Check-only in this project's CI: no Apple hardware is available here.
mod mach {
    use core::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

    use crate::error::Error;

    type MachPort = u32;
    type KernReturn = i32;

    const KERN_SUCCESS: KernReturn = 0;
    /// Thread already gone: `KERN_INVALID_ARGUMENT`, `KERN_TERMINATED`,
    /// `MACH_SEND_INVALID_DEST`.
    const GONE: [KernReturn; 3] = [4, 37, 0x1000_0003];
    /// `ARM_THREAD_STATE64` and its count in 32-bit words (`<mach/arm/thread_status.h>`).
    const ARM_THREAD_STATE64: i32 = 6;
    const ARM_THREAD_STATE64_COUNT: u32 = 68;

    extern "C" {
        static mach_task_self_: MachPort;
        fn mach_thread_self() -> MachPort;
        fn task_threads(task: MachPort, list: *mut *mut MachPort, count: *mut u32) -> KernReturn;
        fn thread_suspend(thread: MachPort) -> KernReturn;
        fn thread_resume(thread: MachPort) -> KernReturn;
        fn thread_get_state(
            thread: MachPort,
            flavor: i32,
            state: *mut u32,
            count: *mut u32,
        ) -> KernReturn;
        fn mach_port_deallocate(task: MachPort, name: MachPort) -> KernReturn;
        fn vm_deallocate(task: MachPort, address: usize, size: usize) -> KernReturn;
        fn sched_yield() -> i32;
    }

    fn check(call: &'static str, kr: KernReturn) -> Result<(), Error> {
        if kr == KERN_SUCCESS || GONE.contains(&kr) {
            Ok(())
        } else {
            Err(Error::mach(call, kr, "a thread could not be made to synchronize").or_code_epoch())
        }
    }

    /// One walker at a time. Two threads walking at once could each suspend
    /// the other and wait in `thread_get_state` forever; with the flag, a
    /// second caller waits (yielding its core) until the first has resumed
    /// every thread, then walks itself: its own `clear_cache` calls may be
    /// newer than the first walk. A waiting caller may itself be suspended
    /// and resumed by the walker, which is harmless: it holds nothing.
    static WALKING: AtomicBool = AtomicBool::new(false);

    pub(super) fn sync_other_threads() -> Result<(), Error> {
        while WALKING
            .compare_exchange_weak(false, true, Acquire, Relaxed)
            .is_err()
        {
            // SAFETY: no preconditions.
            unsafe { sched_yield() };
        }
        let result = walk();
        WALKING.store(false, Release);
        result
    }

    fn walk() -> Result<(), Error> {
        // SAFETY: plain Mach calls on our own task; every port and the
        // thread list returned are released below on every path.
        unsafe {
            let task = mach_task_self_;
            let me = mach_thread_self();
            let mut list: *mut MachPort = core::ptr::null_mut();
            let mut count: u32 = 0;
            let kr = task_threads(task, &mut list, &mut count);
            mach_port_deallocate(task, me);
            if kr != KERN_SUCCESS {
                return Err(Error::mach("task_threads", kr, "the threads of the task could not be listed")
                    .or_code_epoch());
            }
            let threads = core::slice::from_raw_parts(list, count as usize);
            let mut result = Ok(());
            for &thread in threads {
                if thread != me && result.is_ok() {
                    result = stop_once(thread);
                }
                mach_port_deallocate(task, thread);
            }
            vm_deallocate(task, list as usize, count as usize * core::mem::size_of::<MachPort>());
            result
        }
    }

    unsafe fn stop_once(thread: MachPort) -> Result<(), Error> {
        // SAFETY: `thread` is a valid send right from task_threads.
        unsafe {
            let kr = thread_suspend(thread);
            if GONE.contains(&kr) {
                return Ok(());
            }
            check("thread_suspend", kr)?;
            let mut state = [0u32; ARM_THREAD_STATE64_COUNT as usize];
            let mut n = ARM_THREAD_STATE64_COUNT;
            let got = thread_get_state(thread, ARM_THREAD_STATE64, state.as_mut_ptr(), &mut n);
            let resumed = thread_resume(thread);
            check("thread_get_state", got)?;
            check("thread_resume", resumed)
        }
    }
}
