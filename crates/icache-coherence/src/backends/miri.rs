//! Miri: no machine code can run under the interpreter, so there is nothing
//! to make coherent. A no-op lets users run their own code under Miri; the
//! range validation in `lib.rs` still runs before this.

use super::Backend;
use crate::error::Error;

/// Miri: nothing runs, nothing to do.
pub(crate) struct Miri;

impl Backend for Miri {
    const MECHANISM: &'static str = "none (Miri interprets, no machine code runs)";
    const PIPELINE_MECHANISM: &'static str = "none (Miri)";
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
