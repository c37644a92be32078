//! Batches: many ranges made coherent with one set of barriers and at most
//! one pipeline flush.

use core::ffi::c_void;

#[cfg(icache_std)]
use crate::backends::Backend;
use crate::backends::Chosen;
use crate::dispatch;
#[cfg(icache_std)]
use crate::{lines, pipeline_flush_mt};

/// Makes many ranges coherent with a single set of barriers.
///
/// Equivalent to calling [`clear_cache`](crate::clear_cache) on each range, but cheaper: on
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
/// touches nothing. Empty ranges are skipped.
///
/// It allocates nothing: the slice is read twice, once to validate every
/// range and once to stream the ranges to the backend. So it exists and
/// works without `std` (returning [`Error`](crate::Error) there), and it
/// may be called in a signal handler wherever [`clear_cache`](crate::clear_cache)
/// may: on its success path it takes no lock and allocates nothing. Its
/// error path with `std` builds an `io::Error`, which allocates; a handler
/// that must not allocate even on failure uses
/// [`clear_cache_core`](crate::clear_cache_core) per range instead. Use [`batch`] to collect
/// ranges as you patch and to end with at most one [`pipeline_flush_mt`](crate::pipeline_flush_mt).
///
/// # Safety
///
/// Every range must be mapped memory, as for [`clear_cache`](crate::clear_cache).
pub unsafe fn clear_cache_ranges(ranges: &[(*const c_void, usize)]) -> crate::ApiResult {
    let ranges = ranges.iter().map(|&(ptr, len)| (ptr as usize, len));
    // SAFETY: forwarded from the caller.
    crate::error::api(unsafe { dispatch::clear_cache_ranges::<Chosen>(ranges) })
}

/// Who will execute the code a [`batch`] makes coherent.
///
/// `#[non_exhaustive]`: later versions may add ways to publish (a
/// [`CodeEpoch`](crate::CodeEpoch) to advance, for example), so a `match`
/// on it needs a `_` arm.
#[cfg(icache_std)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub enum Publish {
    /// Only the calling thread: the batch ends without a pipeline flush.
    ThisThread,
    /// Any thread: the batch ends with one [`pipeline_flush_mt`](crate::pipeline_flush_mt).
    AllThreads,
}

/// The ranges collected by a [`batch`]. Only [`batch`] can create one, and
/// it always completes it, so the final barriers cannot be forgotten.
#[cfg(icache_std)]
#[derive(Debug)]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub struct Batch {
    /// `(write, exec, len)`, each validated and non-empty; `write == exec`
    /// for a range added with [`Batch::add`].
    ranges: Vec<(usize, usize, usize)>,
}

#[cfg(icache_std)]
impl Batch {
    /// Adds `[ptr, ptr + len)` to the batch.
    ///
    /// A range that wraps past the end of the address space is refused with
    /// `InvalidInput` and not added. An empty range is accepted and ignored.
    ///
    /// # Safety
    ///
    /// The range must stay mapped until the [`batch`] call returns, as for
    /// [`clear_cache`](crate::clear_cache).
    pub unsafe fn add(&mut self, ptr: *const c_void, len: usize) -> std::io::Result<()> {
        if lines::last_byte(ptr as usize, len)?.is_some() {
            self.ranges.push((ptr as usize, ptr as usize, len));
        }
        Ok(())
    }

    /// Adds double-mapped code: `len` bytes written at `write_ptr` and to be
    /// fetched at `exec_ptr`, two mappings of the same memory, completed as
    /// [`clear_cache_dual`](crate::clear_cache_dual) completes them (clean
    /// by the writable address, invalidate by the executable one).
    ///
    /// Both ranges are validated before anything is added: if either wraps
    /// past the end of the address space it returns `InvalidInput` and adds
    /// nothing. `len == 0` is accepted and ignored.
    ///
    /// Cost: ranges added with [`Batch::add`] share one set of barriers;
    /// each double-mapped range is completed by its own `clear_cache_dual`
    /// (on AArch64: its own `dsb`/`isb`), after them.
    ///
    /// # Safety
    ///
    /// Both ranges must stay mapped until the [`batch`] call returns.
    pub unsafe fn add_dual(
        &mut self,
        write_ptr: *const c_void,
        exec_ptr: *const c_void,
        len: usize,
    ) -> std::io::Result<()> {
        let (w, x) = (write_ptr as usize, exec_ptr as usize);
        let write_last = lines::last_byte(w, len)?;
        let exec_last = lines::last_byte(x, len)?;
        if write_last.is_some() && exec_last.is_some() {
            self.ranges.push((w, x, len));
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
/// for [`Publish::AllThreads`], one [`pipeline_flush_mt`](crate::pipeline_flush_mt).
///
/// The completion runs whatever `f` does, so code written before a failure
/// is never left half-maintained:
///
/// - `f` returns `Err`: the completion (and, for [`Publish::AllThreads`],
///   the pipeline flush) runs first, then `f`'s error is returned; if the
///   completion itself failed, its error is returned instead, since it says
///   that the code already written is not coherent.
/// - `f` panics: the completion and the flush run while the panic unwinds
///   (their errors cannot be reported then), and the panic goes on.
///
/// There is no other way to complete a [`Batch`], so the barriers cannot be
/// skipped by mistake.
///
/// The closure's error type is yours: any `E` that an [`std::io::Error`]
/// converts into (`io::Error` itself, `anyhow::Error`, your JIT's error
/// enum with a `From<io::Error>`), so `?` works on [`Batch::add`] inside
/// and on the `batch` call outside. When `E` cannot be inferred from the
/// surrounding function, name it: `Ok::<_, std::io::Error>(())`.
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
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok(())
/// # }
/// ```
#[cfg(icache_std)]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub fn batch<R, E: From<std::io::Error>>(
    publish: Publish,
    f: impl FnOnce(&mut Batch) -> Result<R, E>,
) -> Result<R, E> {
    let mut pending = Pending {
        batch: Batch { ranges: Vec::new() },
        publish,
    };
    let result = f(&mut pending.batch);
    pending.complete()?;
    result
}

/// A batch that is completed exactly once: by [`Pending::complete`], or,
/// if `f` panicked, when it is dropped during the unwinding.
#[cfg(icache_std)]
struct Pending {
    batch: Batch,
    publish: Publish,
}

#[cfg(icache_std)]
impl Pending {
    fn complete(&mut self) -> std::io::Result<()> {
        let ranges = core::mem::take(&mut self.batch.ranges);
        // SAFETY: every range was validated by `Batch::add`, whose caller
        // promised it stays mapped until `batch` returns.
        unsafe { complete(&ranges) }?;
        if self.publish == Publish::AllThreads {
            pipeline_flush_mt()?;
        }
        Ok(())
    }
}

#[cfg(icache_std)]
impl Drop for Pending {
    /// Only reached with ranges left when `f` panicked: `complete` took them.
    fn drop(&mut self) {
        if !self.batch.ranges.is_empty() {
            let _ = self.complete();
        }
    }
}

/// The ranges of a batch, each validated and non-empty, with one set of
/// barriers.
///
/// # Safety
///
/// Every range is mapped.
#[cfg(icache_std)]
unsafe fn complete(ranges: &[(usize, usize, usize)]) -> Result<(), crate::Error> {
    let single = ranges
        .iter()
        .filter(|&&(write, exec, _)| write == exec)
        .map(|&(_, exec, len)| (exec, len));
    if single.clone().next().is_some() {
        // SAFETY: forwarded from the caller.
        unsafe { Chosen::clear_cache_ranges(single)? };
    }
    for &(write, exec, len) in ranges.iter().filter(|&&(write, exec, _)| write != exec) {
        // SAFETY: forwarded from the caller.
        unsafe { Chosen::clear_cache_dual(write, exec, len)? };
    }
    Ok(())
}
