//! Miri: no machine code can run under the interpreter, so there is nothing
//! to make coherent. A no-op lets users run their own code under Miri; the
//! range validation in `lib.rs` still runs before this.

use crate::error::Error;
use crate::CacheInfo;

pub(crate) const MECHANISM: &str = "none (Miri interprets, no machine code runs)";
pub(crate) const PIPELINE_MECHANISM: &str = "none (Miri)";

#[inline(always)]
pub(crate) unsafe fn clear_cache(_start: usize, _len: usize) -> Result<(), Error> {
    Ok(())
}

#[inline(always)]
pub(crate) fn pipeline_flush_mt() -> Result<(), Error> {
    Ok(())
}

whole_address_space_per_call!();

#[inline(always)]
pub(crate) fn cross_modify_flush_mt() -> Result<(), Error> {
    Ok(())
}

pub(crate) fn cache_info() -> CacheInfo {
    CacheInfo::without_lines(MECHANISM, PIPELINE_MECHANISM, false, false)
}
