//! Fuchsia (AArch64, RISC-V): Zircon's `zx_cache_flush(addr, size,
//! ZX_CACHE_FLUSH_INSN)`.
//!
//! The vDSO call is declared in `<zircon/syscalls.h>` as
//! `zx_status_t zx_cache_flush(const void* addr, size_t size, uint32_t
//! options)` (zircon/vdso/cache.fidl) and exported by `libzircon.so`, which
//! every Fuchsia process links (Rust's `std` links it as `zircon` too).
//! `ZX_CACHE_FLUSH_INSN` = `1u << 0` (zircon/types.h: "Flag bits for
//! zx_cache_flush"): "synchronize instruction caches with data caches, so
//! previous writes on this CPU are visible to instruction fetches". Its
//! only documented failure is `ZX_ERR_INVALID_ARGS` for bad options; an
//! unreadable range faults like a data read (docs/reference/syscalls/
//! cache_flush.md), which the caller's contract already excludes.
//!
//! Other threads: Zircon offers no broadcast context synchronization (no
//! membarrier), so `pipeline_flush_mt` reports `Unsupported` and names
//! `CodeEpoch`, whose readers run their own `isb` / `fence.i`.

use core::ffi::c_void;

use super::Backend;
use crate::error::{Error, ErrorKind};

/// `ZX_CACHE_FLUSH_INSN` (zircon/types.h).
const ZX_CACHE_FLUSH_INSN: u32 = 1 << 0;

#[link(name = "zircon")]
extern "C" {
    fn zx_cache_flush(addr: *const c_void, size: usize, options: u32) -> i32;
}

/// `zx_cache_flush(ZX_CACHE_FLUSH_INSN)`.
pub(crate) struct Fuchsia;

impl Backend for Fuchsia {
    const MECHANISM: &'static str = "zx_cache_flush(ZX_CACHE_FLUSH_INSN)";
    const PIPELINE_MECHANISM: &'static str =
        "unsupported on Zircon (returns an error): no broadcast; publish with CodeEpoch";

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        // SAFETY: the caller guarantees the range is mapped and readable.
        let status = unsafe { zx_cache_flush(start as *const c_void, len, ZX_CACHE_FLUSH_INSN) };
        if status != 0 {
            return Err(Error::zircon(
                "zx_cache_flush(ZX_CACHE_FLUSH_INSN)",
                status,
                "Zircon refused to synchronize the instruction cache",
            ));
        }
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Err(Error::new(
            ErrorKind::Unsupported,
            "pipeline_flush_mt",
            None,
            "Zircon offers no broadcast context synchronization",
        )
        .or_code_epoch())
    }
}
