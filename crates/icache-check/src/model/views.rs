//! Invalidations that count for fetches through one view of double-mapped
//! memory only: an `ic ivau` through one guest page of a file page when the
//! instruction cache is not PIPT (see `crate::aliases` for why).

use std::collections::HashMap;

/// Per word (physical address): the store identity the invalidations
/// covered, and for each guest page they went through, when the first
/// completed.
#[derive(Default)]
pub(super) struct ViewInvals(HashMap<u64, (u64, Vec<(u64, u64)>)>);

impl ViewInvals {
    /// An invalidation of word `addr`'s data of store `id`, issued through
    /// guest page `page`, completed at `now`.
    pub(super) fn record(&mut self, addr: u64, id: u64, page: u64, now: u64) {
        let entry = self.0.entry(addr).or_insert((id, Vec::new()));
        if entry.0 != id {
            *entry = (id, Vec::new());
        }
        if !entry.1.iter().any(|&(p, _)| p == page) {
            entry.1.push((page, now));
        }
    }

    /// When the data of store `id` at word `addr` was first invalidated
    /// through guest page `page`, if it was.
    pub(super) fn time(&self, addr: u64, id: u64, page: u64) -> Option<u64> {
        let (for_id, pages) = self.0.get(&addr)?;
        let at = pages.iter().find(|&&(p, _)| p == page)?.1;
        (*for_id == id).then_some(at)
    }
}
