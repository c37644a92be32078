//! Between the public API and a [`Backend`]: range validation and the split
//! of every `clear_cache` into an inlined fast path and one cold slow path.
//!
//! Generic over the backend, so that `dispatch_tests.rs` drives it with fake
//! backends on any host and under Miri; `lib.rs` instantiates it with
//! [`crate::backends::Chosen`].
//!
//! Why the split: the fixed cost of a call (BENCHMARKS.md). Every slow case
//! (a wrapping range, an error to box, a backend that makes a system call,
//! AArch64's first call on a core with a new CTR_EL0 value) is a call, and a
//! call needs a stack frame. Kept behind one branch to one cold function,
//! the frame is built only there, and the common case is a leaf: on AArch64
//! the maintenance instructions and a handful of others.

use crate::backends::Backend;
use crate::error::Error;
use crate::lines;

/// The part of every `clear_cache` call that is inlined into the caller:
/// the wrapping check and the backend's fast path. It either finishes the
/// call (`true`) or touches nothing (`false`), in which case [`slow_path`]
/// runs the whole call again with every check.
///
/// # Safety
///
/// `[start, start + len)` is mapped, as for `clear_cache`.
#[inline(always)]
pub(crate) unsafe fn fast_path<B: Backend>(start: usize, len: usize) -> bool {
    if B::WHOLE_ADDRESS_SPACE {
        // Nothing here looks at the range (x86, s390x: nothing to do at
        // all), so only the refusal of a wrapping range is left.
        // SAFETY: the range is not looked at.
        return !lines::wraps(start, len) && unsafe { B::clear_cache_fast(0, 0, 0) };
    }
    // An empty range takes the slow path too: it is rare, and a second early
    // return here would share its exit with the slow path's and pull the
    // slow path's stack frame into every call.
    match lines::last_byte_up_to(start, len, B::FAST_PATH_MAX_LEN) {
        // SAFETY: non-empty, not wrapping; mapped by the caller's contract.
        Some(last) => unsafe { B::clear_cache_fast(start, len, last) },
        None => false,
    }
}

/// The out-of-line rest of `clear_cache`: every check again, then the
/// backend's full `clear_cache`.
///
/// # Safety
///
/// As for [`fast_path`].
#[cold]
#[inline(never)]
pub(crate) unsafe fn slow_path<B: Backend>(start: usize, len: usize) -> Result<(), Error> {
    match lines::last_byte(start, len)? {
        None => Ok(()),
        // SAFETY: non-empty, not wrapping; mapped by the caller's contract.
        Some(_) => unsafe { B::clear_cache(start, len) },
    }
}

/// `clear_cache` as a whole: the fast path, else the slow path.
///
/// # Safety
///
/// As for [`fast_path`].
#[inline(always)]
pub(crate) unsafe fn clear_cache<B: Backend>(start: usize, len: usize) -> Result<(), Error> {
    // SAFETY: forwarded from the caller.
    if unsafe { fast_path::<B>(start, len) } {
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe { slow_path::<B>(start, len) }
}

/// A batch of `(start, len)` ranges: every range is validated before any is
/// touched (a wrapping one refuses the whole batch), empty ones are dropped,
/// and the backend sees the rest in one call, or no call if none is left.
/// It allocates nothing: the ranges are streamed twice.
///
/// # Safety
///
/// Every range is mapped, as for `clear_cache`.
pub(crate) unsafe fn clear_cache_ranges<B: Backend>(
    ranges: impl Iterator<Item = (usize, usize)> + Clone,
) -> Result<(), Error> {
    let mut any = false;
    for (start, len) in ranges.clone() {
        any |= lines::last_byte(start, len)?.is_some();
    }
    if !any {
        return Ok(());
    }
    let non_empty = ranges.filter(|&(_, len)| len != 0);
    // SAFETY: validated above; mapped by the caller's contract.
    unsafe { B::clear_cache_ranges(non_empty) }
}

/// Double-mapped code, after validating both ranges (either wrapping
/// refuses the call; an empty one is `Ok` and touches nothing).
///
/// # Safety
///
/// Both ranges are mapped, as for `clear_cache`.
pub(crate) unsafe fn clear_cache_dual<B: Backend>(
    write: usize,
    exec: usize,
    len: usize,
) -> Result<(), Error> {
    if lines::last_byte(write, len)?.is_none() || lines::last_byte(exec, len)?.is_none() {
        return Ok(());
    }
    // SAFETY: validated; mapped by the caller's contract.
    unsafe { B::clear_cache_dual(write, exec, len) }
}
