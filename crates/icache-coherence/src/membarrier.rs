//! The decisions behind `pipeline_flush_mt` on Linux and FreeBSD: pure,
//! tested with an injected syscall on any host.
//!
//! `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` makes every
//! thread of the process pass a core-serializing, context-synchronizing
//! event before the call returns (`membarrier(2)`; kernel
//! `Documentation/features/sched/membarrier-sync-core`). The command needs a
//! one-time registration, and both can be refused in four different ways that
//! the caller must be able to tell apart:
//!
//! | what the kernel says | meaning | result |
//! |---|---|---|
//! | QUERY → `ENOSYS` | kernel before 4.3, gVisor, or a filter that fakes "no such syscall" | `Unsupported` |
//! | QUERY → `EPERM` | a seccomp profile denies membarrier entirely (Docker before 2020) | `PermissionDenied` |
//! | QUERY → mask without SYNC_CORE | kernel before 4.16, or an arch without SYNC_CORE support | `Unsupported` |
//! | REGISTER → `EPERM` | the profile filters by command | `PermissionDenied` |
//! | REGISTER/SYNC_CORE → `EINVAL` | the command is not implemented after all | `Unsupported` |
//! | anything else | reported with its errno | `Os` |
//!
//! QUERY comes first so that the two `EPERM`s (sandbox vs. not registered)
//! cannot be confused. There is no fallback: the "mprotect a page to force
//! TLB-shootdown IPIs" trick is not a barrier on arm64, where TLB
//! invalidation is broadcast in hardware and sends no IPI (PLATFORMS.md), and
//! plain `PRIVATE_EXPEDITED` carries no context-synchronization promise in
//! the kernel ABI. So where the guarantee cannot be had, the caller gets an
//! error naming the membarrier command and errno, never a silent `Ok`.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use crate::error::{Error, ErrorKind};

/// `MEMBARRIER_CMD_QUERY` (include/uapi/linux/membarrier.h).
pub(crate) const CMD_QUERY: i32 = 0;
/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
pub(crate) const CMD_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 32;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE`.
pub(crate) const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 64;

/// errno values (Linux asm-generic/errno-base.h; the same on every Linux
/// architecture this crate supports except MIPS, whose ENOSYS is 89, and on
/// FreeBSD, whose ENOSYS is 78: sys/sys/errno.h).
pub(crate) const EPERM: i32 = 1;
pub(crate) const EINVAL: i32 = 22;
#[cfg(not(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6",
    target_os = "freebsd"
)))]
pub(crate) const ENOSYS: i32 = 38;
#[cfg(all(
    any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6"
    ),
    not(target_os = "freebsd")
))]
pub(crate) const ENOSYS: i32 = 89;
#[cfg(target_os = "freebsd")]
pub(crate) const ENOSYS: i32 = 78;

const QUERY: &str = "membarrier(MEMBARRIER_CMD_QUERY)";
const REGISTER: &str = "membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)";
/// The broadcast command, as errors and `cache_info` name it.
pub(crate) const SYNC_CORE: &str = "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)";

/// Queries support and registers the process for SYNC_CORE. Run once per
/// process (the caller caches the outcome).
pub(crate) fn register(sys: impl Fn(i32) -> Result<i32, i32>) -> Result<(), Error> {
    let mask = match sys(CMD_QUERY) {
        Ok(mask) => mask,
        Err(ENOSYS) => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                QUERY,
                Some(ENOSYS),
                "this kernel (before Linux 4.3) or sandbox (gVisor, some seccomp profiles) \
                 has no membarrier, so other threads cannot be made to synchronize",
            )
            .or_code_epoch())
        }
        Err(EPERM) => {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                QUERY,
                Some(EPERM),
                "a sandbox (seccomp or container profile) denies membarrier, so other \
                 threads cannot be made to synchronize",
            )
            .or_code_epoch())
        }
        Err(errno) => {
            return Err(Error::os(
                QUERY,
                errno,
                "membarrier support could not be queried",
            ))
        }
    };
    let needed = CMD_PRIVATE_EXPEDITED_SYNC_CORE | CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE;
    if mask & needed != needed {
        return Err(Error::new(
            ErrorKind::Unsupported,
            QUERY,
            None,
            "the kernel does not offer MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE \
             (it needs Linux 4.16+ and an architecture that implements it)",
        )
        .or_code_epoch());
    }
    sys(CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)
        .map(drop)
        .map_err(|errno| refused(REGISTER, errno))
}

/// One broadcast context synchronization; the process must be registered.
/// Inlined into every flush: the command and the branch on its result. The
/// error is built out of line.
#[inline(always)]
pub(crate) fn sync_core(sys: impl Fn(i32) -> Result<i32, i32>) -> Result<(), Error> {
    match sys(CMD_PRIVATE_EXPEDITED_SYNC_CORE) {
        Ok(_) => Ok(()),
        Err(errno) => Err(refused(SYNC_CORE, errno)),
    }
}

#[cold]
#[inline(never)]
fn refused(call: &'static str, errno: i32) -> Error {
    match errno {
        EPERM => Error::new(
            ErrorKind::PermissionDenied,
            call,
            Some(EPERM),
            "a sandbox (seccomp or container profile) denies this membarrier command",
        )
        .or_code_epoch(),
        EINVAL | ENOSYS => Error::new(
            ErrorKind::Unsupported,
            call,
            Some(errno),
            "the kernel does not implement this membarrier command",
        )
        .or_code_epoch(),
        _ => Error::os(call, errno, "membarrier failed"),
    }
}

/// `register` once per process, then `sync_core` on every call.
///
/// Only permanent outcomes are cached: success, and the refusals that no
/// retry can change (`Unsupported`: ENOSYS, EINVAL, a mask without
/// SYNC_CORE; `PermissionDenied`: a sandbox). A sandbox or kernel that
/// refused once refuses forever, and retrying would turn every call into
/// three syscalls. Anything else (ENOMEM while the kernel allocates the
/// registration, say) is reported and the next call tries again.
///
/// Concurrent first calls are race-free without `std`: exactly one thread
/// registers (the `BUSY` state), the others wait for its outcome. After
/// registration a call is one atomic load and the syscall: no lock.
///
/// The syscall is a parameter of each call, not a field, so that it is
/// inlined: on AArch64 Linux a steady-state flush is one load, one compare
/// and the `svc` (BENCHMARKS.md).
pub(crate) struct PipelineFlush {
    state: AtomicU8,
    /// Written once, before `state` becomes `REFUSED` (Release), and only
    /// read after `REFUSED` was seen (Acquire).
    refusal: UnsafeCell<MaybeUninit<Error>>,
}

// SAFETY: `refusal` is written by the one thread that moved `state` from
// UNKNOWN to BUSY, before it publishes REFUSED with Release; readers read it
// only after an Acquire load saw REFUSED, and it is never written again.
unsafe impl Sync for PipelineFlush {}

const UNKNOWN: u8 = 0;
const BUSY: u8 = 1;
const READY: u8 = 2;
const REFUSED: u8 = 3;

impl PipelineFlush {
    pub(crate) const fn new() -> Self {
        PipelineFlush {
            state: AtomicU8::new(UNKNOWN),
            refusal: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Makes every thread of the process pass a context synchronization,
    /// with `sys` as the membarrier syscall. `gate` runs once, before the
    /// first registration: a refusal it returns is cached like the
    /// kernel's (Android uses it to avoid a syscall that would kill the
    /// process).
    #[inline(always)]
    pub(crate) fn flush(
        &self,
        sys: impl Fn(i32) -> Result<i32, i32> + Copy,
        gate: fn() -> Result<(), Error>,
    ) -> Result<(), Error> {
        if self.state.load(Acquire) == READY {
            return sync_core(sys);
        }
        self.first_flush(sys, gate)
    }

    #[cold]
    #[inline(never)]
    fn first_flush(
        &self,
        sys: impl Fn(i32) -> Result<i32, i32> + Copy,
        gate: fn() -> Result<(), Error>,
    ) -> Result<(), Error> {
        loop {
            match self.state.load(Acquire) {
                READY => return sync_core(sys),
                // SAFETY: see the `Sync` impl.
                REFUSED => return Err(unsafe { (*self.refusal.get()).assume_init() }),
                UNKNOWN => {
                    if self
                        .state
                        .compare_exchange(UNKNOWN, BUSY, Acquire, Relaxed)
                        .is_err()
                    {
                        continue;
                    }
                    return match gate().and_then(|()| register(sys)) {
                        Ok(()) => {
                            self.state.store(READY, Release);
                            sync_core(sys)
                        }
                        Err(e) if is_permanent(&e) => {
                            // SAFETY: only this thread (the one in BUSY)
                            // writes, and nobody reads before REFUSED.
                            unsafe { (*self.refusal.get()).write(e) };
                            self.state.store(REFUSED, Release);
                            Err(e)
                        }
                        Err(e) => {
                            self.state.store(UNKNOWN, Release);
                            Err(e)
                        }
                    };
                }
                _ => wait_a_moment(),
            }
        }
    }
}

/// Whether a registration failure is final: no later attempt can succeed.
fn is_permanent(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Unsupported | ErrorKind::PermissionDenied
    )
}

/// Another thread is registering (two syscalls): let it run.
fn wait_a_moment() {
    #[cfg(icache_std)]
    std::thread::yield_now();
    #[cfg(not(icache_std))]
    core::hint::spin_loop();
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_MASK: i32 = 0x3ff; // what a 6.x x86-64 kernel answers (PLATFORMS.md)

    /// A scripted kernel: the answer for QUERY, REGISTER and SYNC_CORE.
    fn kernel(
        query: Result<i32, i32>,
        register: Result<i32, i32>,
        sync: Result<i32, i32>,
    ) -> impl Fn(i32) -> Result<i32, i32> {
        move |cmd| match cmd {
            CMD_QUERY => query,
            CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => register,
            CMD_PRIVATE_EXPEDITED_SYNC_CORE => sync,
            other => panic!("unexpected membarrier command {other}"),
        }
    }

    fn outcome(k: impl Fn(i32) -> Result<i32, i32> + Copy) -> Result<(), Error> {
        register(k)?;
        sync_core(k)
    }

    #[test]
    fn supported_kernel_registers_then_syncs() {
        assert_eq!(outcome(&kernel(Ok(FULL_MASK), Ok(0), Ok(0))), Ok(()));
    }

    #[test]
    fn every_errno_sequence_gets_its_documented_result() {
        use ErrorKind::*;
        // (query, register, sync_core) -> (kind, call, errno)
        type Answer = Result<i32, i32>;
        type Expected = (ErrorKind, &'static str, Option<i32>);
        let table: &[(Answer, Answer, Answer, Expected)] = &[
            (
                Err(ENOSYS),
                Ok(0),
                Ok(0),
                (Unsupported, QUERY, Some(ENOSYS)),
            ),
            (
                Err(EPERM),
                Ok(0),
                Ok(0),
                (PermissionDenied, QUERY, Some(EPERM)),
            ),
            (Err(EINVAL), Ok(0), Ok(0), (Os, QUERY, Some(EINVAL))),
            (Err(14), Ok(0), Ok(0), (Os, QUERY, Some(14))),
            // Linux 4.14/4.15: private expedited (8|16) but no SYNC_CORE.
            (Ok(0x1f), Ok(0), Ok(0), (Unsupported, QUERY, None)),
            // SYNC_CORE without its REGISTER bit is not usable either.
            (Ok(0x3f), Ok(0), Ok(0), (Unsupported, QUERY, None)),
            (
                Ok(FULL_MASK),
                Err(EPERM),
                Ok(0),
                (PermissionDenied, REGISTER, Some(EPERM)),
            ),
            (
                Ok(FULL_MASK),
                Err(EINVAL),
                Ok(0),
                (Unsupported, REGISTER, Some(EINVAL)),
            ),
            (Ok(FULL_MASK), Err(12), Ok(0), (Os, REGISTER, Some(12))),
            (
                Ok(FULL_MASK),
                Ok(0),
                Err(EPERM),
                (PermissionDenied, SYNC_CORE, Some(EPERM)),
            ),
            (
                Ok(FULL_MASK),
                Ok(0),
                Err(EINVAL),
                (Unsupported, SYNC_CORE, Some(EINVAL)),
            ),
            (
                Ok(FULL_MASK),
                Ok(0),
                Err(ENOSYS),
                (Unsupported, SYNC_CORE, Some(ENOSYS)),
            ),
            (Ok(FULL_MASK), Ok(0), Err(4), (Os, SYNC_CORE, Some(4))),
        ];
        for &(q, r, s, (kind, call, errno)) in table {
            let err = outcome(&kernel(q, r, s)).expect_err("must not report success");
            assert_eq!(
                (err.kind(), err.call(), err.raw_os_error()),
                (kind, call, errno),
                "kernel answers query={q:?} register={r:?} sync={s:?}"
            );
        }
    }

    #[test]
    fn every_refusal_names_the_reader_side_protocol() {
        let refusals = [
            kernel(Err(ENOSYS), Ok(0), Ok(0)),
            kernel(Err(EPERM), Ok(0), Ok(0)),
            kernel(Ok(0x1f), Ok(0), Ok(0)),
            kernel(Ok(FULL_MASK), Err(EPERM), Ok(0)),
            kernel(Ok(FULL_MASK), Err(EINVAL), Ok(0)),
            kernel(Ok(FULL_MASK), Ok(0), Err(EPERM)),
            kernel(Ok(FULL_MASK), Ok(0), Err(EINVAL)),
        ];
        for k in refusals {
            let e = outcome(&k).unwrap_err();
            assert!(
                matches!(
                    e.kind(),
                    ErrorKind::Unsupported | ErrorKind::PermissionDenied
                ),
                "{e}"
            );
            assert!(std::format!("{e}").contains("CodeEpoch"), "{e}");
            assert_eq!(e.advice(), Some(crate::error::USE_CODE_EPOCH));
        }
        // A transient failure is no reason to change protocols.
        let e = outcome(&kernel(Ok(FULL_MASK), Err(12), Ok(0))).unwrap_err();
        assert_eq!(e.advice(), None);
    }

    #[test]
    fn denied_query_never_reaches_register() {
        let calls = std::cell::Cell::new(0);
        let k = |cmd| {
            calls.set(calls.get() + 1);
            assert_eq!(cmd, CMD_QUERY, "only QUERY may be tried after a refusal");
            Err(EPERM)
        };
        assert!(register(k).is_err());
        assert_eq!(calls.get(), 1);
    }

    mod cached {
        use super::*;

        fn open_gate() -> Result<(), Error> {
            Ok(())
        }

        static GATED_CALLS: AtomicUsize = AtomicUsize::new(0);
        fn never_called(_: i32) -> Result<i32, i32> {
            GATED_CALLS.fetch_add(1, SeqCst);
            Ok(FULL_MASK)
        }
        fn closed_gate() -> Result<(), Error> {
            Err(Error::new(ErrorKind::Unsupported, "gate", None, "closed"))
        }

        #[test]
        fn a_closed_gate_is_cached_and_no_syscall_is_ever_made() {
            let flush = PipelineFlush::new();
            for _ in 0..3 {
                let e = flush.flush(never_called, closed_gate).unwrap_err();
                assert_eq!(e.call(), "gate");
            }
            assert_eq!(GATED_CALLS.load(SeqCst), 0);
        }
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

        static REGISTERS: AtomicUsize = AtomicUsize::new(0);
        static SYNCS: AtomicUsize = AtomicUsize::new(0);
        fn counting(cmd: i32) -> Result<i32, i32> {
            match cmd {
                CMD_QUERY => Ok(FULL_MASK),
                CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => {
                    REGISTERS.fetch_add(1, SeqCst);
                    // Widen the race window: others must wait, not register.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    Ok(0)
                }
                _ => {
                    SYNCS.fetch_add(1, SeqCst);
                    Ok(0)
                }
            }
        }

        #[test]
        fn sixteen_first_callers_register_exactly_once() {
            let flush = PipelineFlush::new();
            let barrier = std::sync::Barrier::new(16);
            std::thread::scope(|s| {
                for _ in 0..16 {
                    s.spawn(|| {
                        barrier.wait();
                        flush.flush(counting, open_gate)
                    });
                }
            });
            assert_eq!(REGISTERS.load(SeqCst), 1);
            assert_eq!(SYNCS.load(SeqCst), 16);
        }

        static DENIALS: AtomicUsize = AtomicUsize::new(0);
        fn denying(_: i32) -> Result<i32, i32> {
            DENIALS.fetch_add(1, SeqCst);
            Err(EPERM)
        }

        #[test]
        fn refusal_is_cached_and_reported_on_every_call() {
            let flush = PipelineFlush::new();
            for _ in 0..3 {
                let e = flush.flush(denying, open_gate).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            }
            assert_eq!(DENIALS.load(SeqCst), 1);
        }

        static ATTEMPTS: AtomicUsize = AtomicUsize::new(0);
        /// The first registration fails with ENOMEM, the second succeeds.
        fn short_of_memory_once(cmd: i32) -> Result<i32, i32> {
            match cmd {
                CMD_QUERY => Ok(FULL_MASK),
                CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE => {
                    if ATTEMPTS.fetch_add(1, SeqCst) == 0 {
                        Err(12) // ENOMEM
                    } else {
                        Ok(0)
                    }
                }
                _ => Ok(0),
            }
        }

        #[test]
        fn a_transient_registration_failure_is_reported_and_then_retried() {
            let flush = PipelineFlush::new();
            let first = flush.flush(short_of_memory_once, open_gate).unwrap_err();
            assert_eq!(
                (first.kind(), first.raw_os_error()),
                (ErrorKind::Os, Some(12))
            );
            assert_eq!(flush.flush(short_of_memory_once, open_gate), Ok(()));
            assert_eq!(flush.flush(short_of_memory_once, open_gate), Ok(()));
            assert_eq!(
                ATTEMPTS.load(SeqCst),
                2,
                "registered again after ENOMEM, then cached"
            );
        }
    }
}
