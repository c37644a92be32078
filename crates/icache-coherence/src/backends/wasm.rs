//! WebAssembly (`wasm32-unknown-unknown`, `wasm32-wasip1`, ...): nothing to
//! do, because a WebAssembly program cannot execute bytes it wrote.
//!
//! Why. A WebAssembly module's code lives in its code section, outside the
//! linear memory that the program can store to (WebAssembly Core
//! Specification, "Modules": functions are declared by the module, and
//! memory instances hold only bytes for loads and stores). There is no
//! instruction that jumps into linear memory, so no store can ever become
//! an instruction this module executes, and no cache or pipeline can hold a
//! stale copy of one. A JIT running on a WebAssembly host produces a *new
//! module* and hands it to the host (`WebAssembly.instantiate`, or the
//! embedder's API), which compiles and publishes it with its own
//! maintenance. So `clear_cache` and the flushes return `Ok` having done
//! nothing, which is the truth here, not a silent fallback.

use super::Backend;
use crate::error::Error;

/// WebAssembly: code is never written through memory.
pub(crate) struct Wasm;

impl Backend for Wasm {
    const MECHANISM: &'static str =
        "none needed (WebAssembly cannot execute bytes it wrote: code is not in linear memory)";
    const PIPELINE_MECHANISM: &'static str = "none needed (WebAssembly)";
    const WHOLE_ADDRESS_SPACE: bool = true;
    const MAINTENANCE_NEEDED: bool = false;
    const PIPELINE_FLUSH_NEEDED: bool = false;

    #[inline(always)]
    unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
        Ok(())
    }

    #[inline(always)]
    fn pipeline_flush_mt() -> Result<(), Error> {
        Ok(())
    }
}
