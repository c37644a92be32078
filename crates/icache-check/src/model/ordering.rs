//! Ordering between threads that the model takes from barriers and fetches,
//! not from the maintenance sequence itself: rule 7 (`dmb`-ordered cleans
//! and, with IDC, stores) and rule 9 (a fetch orders later fetches).

use std::sync::Arc;

use super::Model;
use crate::decode::DsbOption;
use crate::shadow::{id_count, id_vcpu};

/// Maintenance a vCPU ordered before its later stores with a `dmb` (rule 7):
/// other vCPUs that run a `dsb` or an `ic` after one of those stores
/// may have observed it, and then their maintenance is ordered after it.
pub(super) struct Publication {
    /// The publishing vCPU.
    pub(super) vcpu: u32,
    /// The publishing vCPU's store count at the `dmb`: the publication is
    /// visible once that count has grown.
    after_count: u64,
    /// The words of `dc` cleans pending at a full `dmb`.
    cleans: Vec<(u64, u64)>,
    /// With IDC: stores up to this count, ordered by a `dmb` that orders
    /// stores, count as cleaned once observed.
    idc_count: Option<u64>,
}

/// At most this many publications per vCPU are kept; older ones are dropped,
/// which can only add reports, never hide one.
const MAX_PUBLICATIONS: usize = 64;

impl Model {
    /// A `dmb` by `v`: publishes its pending cleans (full `dmb` only) and,
    /// with IDC, its stores (any `dmb` that orders stores). Rule 7.
    pub(super) fn dmb(&mut self, v: u32, opt: DsbOption) {
        let full = opt.completes_maintenance();
        let idc = self.cfg.idc && opt.orders_stores();
        if !full && !idc {
            return;
        }
        let count = self.shadow.last_count(v);
        let cleans: Vec<(u64, u64)> = if full {
            self.vcpu(v)
                .pending_cleans
                .iter()
                .flatten()
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        if cleans.is_empty() && !idc {
            return;
        }
        let mine = self.publications.iter().filter(|p| p.vcpu == v).count();
        if mine >= MAX_PUBLICATIONS {
            if let Some(i) = self.publications.iter().position(|p| p.vcpu == v) {
                self.publications.remove(i);
            }
        }
        self.publications.push(Publication {
            vcpu: v,
            after_count: count,
            cleans,
            idc_count: idc.then_some(count),
        });
    }

    /// `w` runs a `dsb` or an `ic` (or, with IDC and DIC, an `isb`) at `now`:
    /// every publication of another vCPU whose later store has happened may
    /// have been observed by `w`, so its maintenance is ordered before `w`'s.
    pub(super) fn observe(&mut self, w: u32, now: u64) {
        if self.publications.is_empty() {
            return;
        }
        let shadow = Arc::clone(&self.shadow);
        let visible = |p: &Publication| p.vcpu != w && shadow.last_count(p.vcpu) > p.after_count;
        let mut cleans = Vec::new();
        let mut idc = Vec::new();
        for p in self.publications.iter().filter(|p| visible(p)) {
            cleans.extend_from_slice(&p.cleans);
            if let Some(c) = p.idc_count {
                idc.push((p.vcpu, c));
            }
        }
        self.vcpu(w);
        for (v, c) in idc {
            let marks = &mut self.vcpu(v).idc_marks;
            // A mark already covering these stores is earlier; keep the
            // marks sorted by count and by time.
            if marks.last().is_none_or(|&(last, _)| last < c) {
                marks.push((c, now));
            }
        }
        let vc = &mut self.vcpus[w as usize];
        for a in cleans {
            if !vc.observed_cleans.contains(&a) {
                vc.observed_cleans.push(a);
            }
        }
    }
    /// Rule 9: `w` fetched the data of store `id`, so its later fetches are
    /// ordered after every invalidation completed by the storing vCPU's last
    /// `dsb` before that store.
    pub(super) fn order_later_fetches(&mut self, w: u32, id: u64) {
        let Some(vc) = self.vcpus.get(id_vcpu(id) as usize) else {
            return;
        };
        let marks = &vc.dsb_marks;
        let i = marks.partition_point(|&(count, _)| count < id_count(id));
        if let Some(&(_, at)) = i.checked_sub(1).and_then(|i| marks.get(i)) {
            let vc = self.vcpu(w);
            vc.fetch_sync = vc.fetch_sync.max(at);
        }
    }
}
