//! The decisions behind `pipeline_flush_mt` on Linux: pure, tested with an
//! injected syscall on any host.
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

use crate::error::{Error, ErrorKind};

/// `MEMBARRIER_CMD_QUERY` (include/uapi/linux/membarrier.h).
pub(crate) const CMD_QUERY: i32 = 0;
/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
pub(crate) const CMD_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 32;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE`.
pub(crate) const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: i32 = 64;

/// Linux errno values (asm-generic/errno-base.h; the same on every Linux
/// architecture this crate supports except MIPS, whose ENOSYS is 89).
pub(crate) const EPERM: i32 = 1;
pub(crate) const EINVAL: i32 = 22;
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
pub(crate) const ENOSYS: i32 = 38;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
pub(crate) const ENOSYS: i32 = 89;

const QUERY: &str = "membarrier(MEMBARRIER_CMD_QUERY)";
const REGISTER: &str = "membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)";
const SYNC_CORE: &str = "membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)";

/// The membarrier syscall: `Ok(return value)` or `Err(errno)`.
pub(crate) type Syscall = fn(cmd: i32) -> Result<i32, i32>;

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
            ))
        }
        Err(EPERM) => {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                QUERY,
                Some(EPERM),
                "a sandbox (seccomp or container profile) denies membarrier, so other \
                 threads cannot be made to synchronize",
            ))
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
        ));
    }
    sys(CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)
        .map(drop)
        .map_err(|errno| refused(REGISTER, errno))
}

/// One broadcast context synchronization; the process must be registered.
#[inline]
pub(crate) fn sync_core(sys: impl Fn(i32) -> Result<i32, i32>) -> Result<(), Error> {
    sys(CMD_PRIVATE_EXPEDITED_SYNC_CORE)
        .map(drop)
        .map_err(|errno| refused(SYNC_CORE, errno))
}

fn refused(call: &'static str, errno: i32) -> Error {
    match errno {
        EPERM => Error::new(
            ErrorKind::PermissionDenied,
            call,
            Some(EPERM),
            "a sandbox (seccomp or container profile) denies this membarrier command",
        ),
        EINVAL | ENOSYS => Error::new(
            ErrorKind::Unsupported,
            call,
            Some(errno),
            "the kernel does not implement this membarrier command",
        ),
        _ => Error::os(call, errno, "membarrier failed"),
    }
}

/// `register` once per process, then `sync_core` on every call.
///
/// The outcome of registration, failure included, is cached: a sandbox or
/// kernel that refused once refuses forever, and retrying would turn every
/// call into three syscalls. `OnceLock` makes concurrent first calls
/// race-free: exactly one thread registers, the others wait for it.
#[cfg(feature = "std")]
pub(crate) struct PipelineFlush {
    registered: std::sync::OnceLock<Result<(), Error>>,
    sys: Syscall,
}

#[cfg(feature = "std")]
impl PipelineFlush {
    #[allow(dead_code)] // only Linux backends construct one outside the tests
    pub(crate) const fn new(sys: Syscall) -> Self {
        PipelineFlush {
            registered: std::sync::OnceLock::new(),
            sys,
        }
    }

    /// Makes every thread of the process pass a context synchronization.
    #[allow(dead_code)]
    pub(crate) fn flush(&self) -> Result<(), Error> {
        (*self.registered.get_or_init(|| register(self.sys)))?;
        sync_core(self.sys)
    }
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

    #[cfg(feature = "std")]
    mod cached {
        use super::*;
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
            let flush = PipelineFlush::new(counting);
            let barrier = std::sync::Barrier::new(16);
            std::thread::scope(|s| {
                for _ in 0..16 {
                    s.spawn(|| {
                        barrier.wait();
                        flush.flush()
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
            let flush = PipelineFlush::new(denying);
            for _ in 0..3 {
                let e = flush.flush().unwrap_err();
                assert_eq!(e.kind(), ErrorKind::PermissionDenied);
            }
            assert_eq!(DENIALS.load(SeqCst), 1);
        }
    }
}
