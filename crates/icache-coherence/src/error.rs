//! The crate's error: which call failed, why, and the OS error it returned.
//!
//! With `std`, every public function returns `std::io::Result`; the
//! [`std::io::Error`] carries an [`Error`] as its payload, so callers keep the
//! ordinary `io::ErrorKind` *and* can recover the exact OS error code:
//!
//! ```
//! # fn f() -> std::io::Result<()> { Ok(()) }
//! if let Err(e) = f() {
//!     if let Some(detail) = e.get_ref().and_then(|d| d.downcast_ref::<icache_coherence::Error>()) {
//!         let _errno: Option<i32> = detail.raw_os_error();
//!     }
//! }
//! ```

use core::fmt;

/// What the public API returns: [`std::io::Result`] where `std` exists, and
/// the crate's own [`Error`] where it does not.
#[cfg(icache_std)]
pub(crate) type ApiResult<T = ()> = std::io::Result<T>;
/// What the public API returns: [`std::io::Result`] where `std` exists, and
/// the crate's own [`Error`] where it does not.
#[cfg(not(icache_std))]
pub(crate) type ApiResult<T = ()> = core::result::Result<T, Error>;

/// The crate's result as the public API returns it (see [`ApiResult`]).
#[inline(always)]
pub(crate) fn api<T>(result: Result<T, Error>) -> ApiResult<T> {
    #[cfg(icache_std)]
    return result.map_err(std::io::Error::from);
    #[cfg(not(icache_std))]
    return result;
}

/// Inside the crate the kind keeps its short name.
pub(crate) use FailureKind as ErrorKind;

/// What kind of failure an [`Error`] is.
///
/// Named `FailureKind`, not `ErrorKind`, so that `use icache_coherence::*;`
/// next to `use std::io::*;` (or `use std::io::ErrorKind;`) never makes
/// `ErrorKind` ambiguous. [`Error`] itself has the same name as
/// `std::io::Error`: with both glob imports, name it by path
/// (`icache_coherence::Error`) or rename it on import
/// (`use icache_coherence::Error as IcacheError;`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureKind {
    /// The caller passed a range the library refuses (for example one that
    /// wraps past the end of the address space). Nothing was touched.
    InvalidInput,
    /// This kernel, architecture or OS does not offer a mechanism that gives
    /// the guarantee. Nothing was done, and the guarantee does not hold.
    Unsupported,
    /// A sandbox (seccomp, a container profile) denied the call.
    PermissionDenied,
    /// The OS call failed for another reason; see [`Error::raw_os_error`].
    Os,
}

/// A failure of one of the crate's operations.
///
/// It names the OS call (or library check) that failed, carries the OS error
/// code when there is one, and a short human explanation. It is `Copy` and
/// allocation-free, so it is also the error type of the `no_std` build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    call: &'static str,
    code: Option<i32>,
    detail: &'static str,
    /// What works instead, where something does.
    advice: Option<&'static str>,
    /// `code` is a Mach `kern_return_t`, not an OS error number.
    mach: bool,
    /// `code` is a Zircon `zx_status_t`, not an OS error number.
    zircon: bool,
}

// Mach return codes (osfmk/mach/kern_return.h) that have a kind of their own.
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_PROTECTION_FAILURE: i32 = 2;
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_NO_SPACE: i32 = 3;
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_RESOURCE_SHORTAGE: i32 = 6;
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_NO_ACCESS: i32 = 8;
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_ABORTED: i32 = 14;
#[cfg(any(test, icache_backend = "apple_aarch64"))]
const KERN_NOT_SUPPORTED: i32 = 46;

// Zircon statuses (zircon/errors.h) that have a kind of their own.
#[cfg(any(test, icache_backend = "fuchsia"))]
const ZX_ERR_NOT_SUPPORTED: i32 = -2;
#[cfg(any(test, icache_backend = "fuchsia"))]
const ZX_ERR_INVALID_ARGS: i32 = -10;
#[cfg(any(test, icache_backend = "fuchsia"))]
const ZX_ERR_ACCESS_DENIED: i32 = -30;

/// The name of a Mach return code, for messages.
#[cfg(any(test, icache_backend = "apple_aarch64"))]
fn mach_name(kr: i32) -> &'static str {
    match kr {
        KERN_PROTECTION_FAILURE => "KERN_PROTECTION_FAILURE",
        KERN_NO_SPACE => "KERN_NO_SPACE",
        4 => "KERN_INVALID_ARGUMENT",
        5 => "KERN_FAILURE",
        KERN_RESOURCE_SHORTAGE => "KERN_RESOURCE_SHORTAGE",
        KERN_NO_ACCESS => "KERN_NO_ACCESS",
        KERN_ABORTED => "KERN_ABORTED",
        15 => "KERN_INVALID_NAME",
        16 => "KERN_INVALID_TASK",
        17 => "KERN_INVALID_RIGHT",
        37 => "KERN_TERMINATED",
        KERN_NOT_SUPPORTED => "KERN_NOT_SUPPORTED",
        0x1000_0003 => "MACH_SEND_INVALID_DEST",
        _ => "unknown kern_return_t",
    }
}

/// The advice of every error that means "other threads cannot be made to
/// synchronize from here": the reader-side protocol always works. (The two
/// backends whose flushes cannot fail never give it.)
#[cfg(any(
    test,
    not(any(
        icache_backend = "windows",
        icache_backend = "miri",
        icache_backend = "wasm"
    ))
))]
pub(crate) const USE_CODE_EPOCH: &str =
    "publish with icache_coherence::CodeEpoch instead (each reader calls sync_this_thread after reading the publication)";

impl Error {
    pub(crate) const fn new(
        kind: ErrorKind,
        call: &'static str,
        code: Option<i32>,
        detail: &'static str,
    ) -> Self {
        Error {
            kind,
            call,
            code,
            detail,
            advice: None,
            mach: false,
            zircon: false,
        }
    }

    /// An error from a Zircon call that returned `status`, with the kind
    /// its meaning has (zircon/errors.h); its code is never read as an errno.
    #[cfg(any(test, icache_backend = "fuchsia"))]
    pub(crate) const fn zircon(call: &'static str, status: i32, detail: &'static str) -> Self {
        let kind = match status {
            ZX_ERR_INVALID_ARGS => ErrorKind::InvalidInput,
            ZX_ERR_NOT_SUPPORTED => ErrorKind::Unsupported,
            ZX_ERR_ACCESS_DENIED => ErrorKind::PermissionDenied,
            _ => ErrorKind::Os,
        };
        let mut e = Error::new(kind, call, Some(status), detail);
        e.zircon = true;
        e
    }

    /// Whether [`Error::raw_os_error`] is a Zircon `zx_status_t` (Fuchsia's
    /// `zx_cache_flush`) rather than an `errno` or a Win32 error.
    pub fn is_zircon_status(&self) -> bool {
        self.zircon
    }

    /// An error from a Mach call that returned `kr`, with the kind its
    /// meaning has (`kern_return.h`); its code is never read as an errno.
    #[cfg(any(test, icache_backend = "apple_aarch64"))]
    pub(crate) const fn mach(call: &'static str, kr: i32, detail: &'static str) -> Self {
        let kind = match kr {
            KERN_PROTECTION_FAILURE | KERN_NO_ACCESS => ErrorKind::PermissionDenied,
            KERN_NOT_SUPPORTED => ErrorKind::Unsupported,
            _ => ErrorKind::Os,
        };
        let mut e = Error::new(kind, call, Some(kr), detail);
        e.mach = true;
        e
    }

    /// Whether [`Error::raw_os_error`] is a Mach `kern_return_t` (Apple's
    /// thread calls) rather than an `errno` or a Win32 error.
    pub fn is_mach_error(&self) -> bool {
        self.mach
    }

    /// The same error, saying that the reader-side protocol
    /// ([`crate::CodeEpoch`]) works where this call cannot.
    #[cfg(any(
        test,
        not(any(
            icache_backend = "windows",
            icache_backend = "miri",
            icache_backend = "wasm"
        ))
    ))]
    pub(crate) const fn or_code_epoch(mut self) -> Self {
        self.advice = Some(USE_CODE_EPOCH);
        self
    }

    /// What works instead, where the library knows something that does
    /// (for the pipeline flushes: [`crate::CodeEpoch`]).
    pub fn advice(&self) -> Option<&'static str> {
        self.advice
    }

    /// An error from an OS call that reported `code` (an `errno`, a Win32
    /// error, or a Mach `kern_return_t`).
    #[cfg(any(test, icache_os_calls))]
    pub(crate) const fn os(call: &'static str, code: i32, detail: &'static str) -> Self {
        Error::new(ErrorKind::Os, call, Some(code), detail)
    }

    /// The range `[ptr, ptr + len)` wraps past the end of the address space.
    pub(crate) const fn wrapping_range() -> Self {
        Error::new(
            ErrorKind::InvalidInput,
            "clear_cache",
            None,
            "the range wraps past the end of the address space; nothing was touched",
        )
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The OS call or library check that failed, e.g.
    /// `"membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)"`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The OS error code the call returned (`errno` on Unix, the value of
    /// `GetLastError` on Windows, a `kern_return_t` for Mach calls), if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.code
    }

    /// A short explanation of what the failure means for the caller.
    pub fn detail(&self) -> &'static str {
        self.detail
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.call)?;
        #[cfg(any(test, icache_backend = "apple_aarch64"))]
        if let (true, Some(kr)) = (self.mach, self.code) {
            write!(f, ": kern_return_t {kr} ({})", mach_name(kr))?;
            return self.fmt_tail(f);
        }
        #[cfg(any(test, icache_backend = "fuchsia"))]
        if let (true, Some(status)) = (self.zircon, self.code) {
            write!(f, ": zx_status_t {status}")?;
            return self.fmt_tail(f);
        }
        if let Some(code) = self.code {
            #[cfg(icache_std)]
            write!(f, ": {}", std::io::Error::from_raw_os_error(code))?;
            #[cfg(not(icache_std))]
            write!(f, ": os error {}", code)?;
        }
        self.fmt_tail(f)
    }
}

impl Error {
    fn fmt_tail(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, ": {}", self.detail)?;
        if let Some(advice) = self.advice {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

/// `core::error::Error`, so that `.expect()` and anyhow's `.context()` work
/// with and without `std`.
impl core::error::Error for Error {}

#[cfg(icache_std)]
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        use std::io::ErrorKind as K;
        let kind = match e.kind {
            ErrorKind::InvalidInput => K::InvalidInput,
            ErrorKind::Unsupported => K::Unsupported,
            ErrorKind::PermissionDenied => K::PermissionDenied,
            #[cfg(any(test, icache_backend = "apple_aarch64"))]
            ErrorKind::Os if e.mach => match e.code {
                Some(KERN_NO_SPACE | KERN_RESOURCE_SHORTAGE) => K::OutOfMemory,
                Some(KERN_ABORTED) => K::Interrupted,
                _ => K::Other,
            },
            #[cfg(any(test, icache_backend = "fuchsia"))]
            ErrorKind::Os if e.zircon => K::Other,
            ErrorKind::Os => match e.code {
                Some(code) => std::io::Error::from_raw_os_error(code).kind(),
                None => K::Other,
            },
        };
        std::io::Error::new(kind, e)
    }
}

#[cfg(all(test, icache_std))]
mod tests {
    use super::*;

    #[test]
    fn io_error_keeps_kind_call_and_errno() {
        let e: std::io::Error = Error::new(
            ErrorKind::PermissionDenied,
            "membarrier(MEMBARRIER_CMD_QUERY)",
            Some(1),
            "denied",
        )
        .into();
        assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        let inner = e.get_ref().unwrap().downcast_ref::<Error>().unwrap();
        assert_eq!(inner.raw_os_error(), Some(1));
        let text = e.to_string();
        assert!(text.contains("membarrier(MEMBARRIER_CMD_QUERY)"), "{text}");
        assert!(text.contains("os error 1"), "{text}");
    }

    #[test]
    fn os_kind_maps_through_the_errno() {
        let e: std::io::Error = Error::os("cacheflush", libc_einval(), "bad range").into();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    }

    #[test]
    fn mach_errors_get_their_own_kinds_and_names_never_errno_text() {
        use std::io::ErrorKind as K;
        let cases = [
            (
                KERN_PROTECTION_FAILURE,
                ErrorKind::PermissionDenied,
                K::PermissionDenied,
            ),
            (
                KERN_NO_ACCESS,
                ErrorKind::PermissionDenied,
                K::PermissionDenied,
            ),
            (KERN_NOT_SUPPORTED, ErrorKind::Unsupported, K::Unsupported),
            (KERN_NO_SPACE, ErrorKind::Os, K::OutOfMemory),
            (KERN_RESOURCE_SHORTAGE, ErrorKind::Os, K::OutOfMemory),
            (KERN_ABORTED, ErrorKind::Os, K::Interrupted),
            (5, ErrorKind::Os, K::Other),
        ];
        for (kr, kind, io_kind) in cases {
            let e = Error::mach("thread_suspend", kr, "a thread could not be stopped");
            assert_eq!(
                (e.kind(), e.raw_os_error(), e.is_mach_error()),
                (kind, Some(kr), true)
            );
            let text = e.to_string();
            assert!(
                text.contains(&std::format!("kern_return_t {kr} (")),
                "{text}"
            );
            assert!(
                !text.contains("os error"),
                "errno text for a Mach code: {text}"
            );
            let io: std::io::Error = e.into();
            assert_eq!(io.kind(), io_kind, "{text}");
        }
        assert!(Error::mach("task_threads", 5, "x")
            .to_string()
            .contains("KERN_FAILURE"));
    }

    #[test]
    fn zircon_statuses_get_their_kinds_and_are_never_printed_as_errno() {
        use std::io::ErrorKind as K;
        let cases = [
            (
                ZX_ERR_INVALID_ARGS,
                ErrorKind::InvalidInput,
                K::InvalidInput,
            ),
            (ZX_ERR_NOT_SUPPORTED, ErrorKind::Unsupported, K::Unsupported),
            (
                ZX_ERR_ACCESS_DENIED,
                ErrorKind::PermissionDenied,
                K::PermissionDenied,
            ),
            (-1, ErrorKind::Os, K::Other),
        ];
        for (status, kind, io_kind) in cases {
            let e = Error::zircon("zx_cache_flush(ZX_CACHE_FLUSH_INSN)", status, "refused");
            assert_eq!(
                (
                    e.kind(),
                    e.raw_os_error(),
                    e.is_zircon_status(),
                    e.is_mach_error()
                ),
                (kind, Some(status), true, false)
            );
            let text = e.to_string();
            assert!(
                text.contains(&std::format!("zx_status_t {status}")),
                "{text}"
            );
            assert!(
                !text.contains("os error"),
                "errno text for a zx_status_t: {text}"
            );
            let io: std::io::Error = e.into();
            assert_eq!(io.kind(), io_kind, "{text}");
        }
    }

    #[test]
    fn wrapping_range_is_invalid_input() {
        let e: std::io::Error = Error::wrapping_range().into();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("wraps"));
    }

    fn libc_einval() -> i32 {
        // EINVAL is 22 on Linux, the BSDs, macOS; ERROR_INVALID_PARAMETER is 87.
        if cfg!(windows) {
            87
        } else {
            22
        }
    }
}
