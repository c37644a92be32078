//! Lock-free shadow memory: for every aligned 4-byte guest word, the identity
//! and PC of the last guest store to it, plus the maintenance state the model
//! derives from it.
//!
//! Stores are by far the most frequent event, and QEMU runs the store callbacks
//! of different guest threads concurrently, so recording a store takes no lock.
//! Everything else in the model runs under the model's lock.
//!
//! A store identity is `(count << 16) | vcpu`, with `count` from a per-vCPU
//! counter, so it is unique and nonzero and needs no shared counter. The
//! maintenance state of a word records *which* store identity it applies to
//! (`cleaned_for`, `inval_for`); a later store changes the identity and so
//! invalidates that state without touching it. That is what lets stores run
//! concurrently with the locked maintenance code.
//!
//! Guest virtual addresses are masked to 48 bits (the AArch64 Linux user
//! address space), and the page table is a three-level radix tree of 4 KiB
//! shadow pages that are never freed.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};

/// Size of a shadow page.
pub const PAGE_SIZE: u64 = 4096;
/// 4-byte words per shadow page.
pub const WORDS: usize = (PAGE_SIZE / 4) as usize;
const VA_MASK: u64 = (1 << 48) - 1;
const FANOUT: usize = 4096;
const COUNTERS: usize = 256;

/// Maintenance state of one word; only the model's locked code writes it.
#[derive(Default)]
pub struct MaintWord {
    /// The store identity whose data a completed clean covered.
    pub cleaned_for: AtomicU64,
    /// When that clean completed (model time).
    pub cleaned_at: AtomicU64,
    /// The store identity whose data a completed invalidation covered.
    pub inval_for: AtomicU64,
    /// When that invalidation completed.
    pub inval_at: AtomicU64,
    /// The store identity for which an `ic` completed before its clean did.
    pub early_for: AtomicU64,
}

/// One 4 KiB page of shadow state.
pub struct Page {
    /// The guest stored to this page since the model last forgot it.
    pub live: AtomicBool,
    /// Store identity per word; 0 = never stored (or forgotten).
    pub stored: [AtomicU64; WORDS],
    /// PC of that store.
    pub pc: [AtomicU64; WORDS],
    /// Maintenance state, allocated the first time maintenance touches the page.
    maint: AtomicPtr<[MaintWord; WORDS]>,
    next: AtomicPtr<Page>,
    linked: AtomicBool,
}

impl Page {
    /// The maintenance state, if any maintenance touched the page.
    pub fn maint(&self) -> Option<&[MaintWord; WORDS]> {
        // SAFETY: once set, the pointer stays valid for the process lifetime.
        unsafe { self.maint.load(Acquire).as_ref() }
    }

    /// The maintenance state, allocated if needed. Callers hold the model lock,
    /// so no two threads allocate at once.
    pub fn maint_or_create(&self) -> &[MaintWord; WORDS] {
        if let Some(m) = self.maint() {
            return m;
        }
        let fresh: Box<[MaintWord; WORDS]> =
            Box::new(std::array::from_fn(|_| MaintWord::default()));
        let ptr = Box::into_raw(fresh);
        match self
            .maint
            .compare_exchange(std::ptr::null_mut(), ptr, AcqRel, Acquire)
        {
            // SAFETY: just published; never freed.
            Ok(_) => unsafe { &*ptr },
            Err(existing) => {
                // SAFETY: `ptr` was never shared; `existing` is valid forever.
                unsafe {
                    drop(Box::from_raw(ptr));
                    &*existing
                }
            }
        }
    }
}

type Leaf = [AtomicPtr<Page>; FANOUT];
type Mid = [AtomicPtr<Leaf>; FANOUT];

#[repr(align(64))]
#[derive(Default)]
struct Counter(AtomicU64);

/// The shadow memory. `Sync`: every field is atomic.
pub struct Shadow {
    root: Box<[AtomicPtr<Mid>; FANOUT]>,
    counters: Box<[Counter; COUNTERS]>,
    all_pages: AtomicPtr<Page>,
}

impl Default for Shadow {
    fn default() -> Self {
        Shadow::new()
    }
}

fn zeroed_box<T>() -> Box<T> {
    // SAFETY: only used for types made of atomics and arrays of them, for
    // which all-zero bytes are a valid value (null pointers, 0, false).
    unsafe { Box::<T>::new_zeroed().assume_init() }
}

fn get_or_alloc<T>(slot: &AtomicPtr<T>) -> &T {
    let cur = slot.load(Acquire);
    if !cur.is_null() {
        // SAFETY: published pointers stay valid for the process lifetime.
        return unsafe { &*cur };
    }
    let fresh = Box::into_raw(zeroed_box::<T>());
    match slot.compare_exchange(std::ptr::null_mut(), fresh, AcqRel, Acquire) {
        // SAFETY: as above.
        Ok(_) => unsafe { &*fresh },
        Err(existing) => {
            // SAFETY: `fresh` was never shared.
            unsafe {
                drop(Box::from_raw(fresh));
                &*existing
            }
        }
    }
}

impl Shadow {
    /// Empty shadow memory.
    pub fn new() -> Shadow {
        Shadow {
            root: zeroed_box(),
            counters: zeroed_box(),
            all_pages: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    fn indexes(addr: u64) -> (usize, usize, usize, usize) {
        let a = addr & VA_MASK;
        let pn = a / PAGE_SIZE;
        (
            (pn >> 24) as usize & (FANOUT - 1),
            (pn >> 12) as usize & (FANOUT - 1),
            pn as usize & (FANOUT - 1),
            ((a % PAGE_SIZE) / 4) as usize,
        )
    }

    /// The shadow page holding `addr` and the word index in it, if it exists.
    pub fn page(&self, addr: u64) -> Option<(&Page, usize)> {
        let (i1, i2, i3, w) = Self::indexes(addr);
        // SAFETY: published pointers stay valid for the process lifetime.
        unsafe {
            let mid = self.root[i1].load(Acquire).as_ref()?;
            let leaf = mid[i2].load(Acquire).as_ref()?;
            let page = leaf[i3].load(Acquire).as_ref()?;
            Some((page, w))
        }
    }

    fn page_or_create(&self, addr: u64) -> (&Page, usize) {
        let (i1, i2, i3, w) = Self::indexes(addr);
        let mid = get_or_alloc(&self.root[i1]);
        let leaf = get_or_alloc(&mid[i2]);
        let slot = &leaf[i3];
        let cur = slot.load(Acquire);
        if !cur.is_null() {
            // SAFETY: as above.
            return (unsafe { &*cur }, w);
        }
        let page = get_or_alloc(slot);
        // Put every page once on the list `for_each_page` walks.
        if !page.linked.swap(true, AcqRel) {
            self.link(page);
        }
        (page, w)
    }

    fn link(&self, page: &Page) {
        let p = page as *const Page as *mut Page;
        let mut head = self.all_pages.load(Acquire);
        loop {
            page.next.store(head, Relaxed);
            match self.all_pages.compare_exchange(head, p, AcqRel, Acquire) {
                Ok(_) => return,
                Err(h) => head = h,
            }
        }
    }

    /// Calls `f` on every shadow page.
    pub fn for_each_page(&self, mut f: impl FnMut(&Page)) {
        let mut p = self.all_pages.load(Acquire);
        // SAFETY: pages are never freed; `next` is set before a page is linked.
        while let Some(page) = unsafe { p.as_ref() } {
            f(page);
            p = page.next.load(Acquire);
        }
    }

    /// The next store identity for vCPU `v`.
    fn next_id(&self, v: u32) -> u64 {
        let count = self.counters[v as usize % COUNTERS].0.fetch_add(1, Relaxed) + 1;
        (count << 16) | u64::from(v & 0xffff)
    }

    /// The count part of the last identity handed out to vCPU `v`: every
    /// store of `v` with a count up to this one has been recorded.
    pub fn last_count(&self, v: u32) -> u64 {
        self.counters[v as usize % COUNTERS].0.load(Acquire)
    }

    /// Records that vCPU `v` stored `size` bytes at `addr` with the
    /// instruction at `pc`. Lock-free.
    pub fn store(&self, v: u32, addr: u64, size: u64, pc: u64) {
        let id = self.next_id(v);
        let first = addr & !3;
        let last = addr.wrapping_add(size.max(1) - 1) & !3;
        let mut a = first;
        loop {
            let (page, mut w) = self.page_or_create(a);
            if !page.live.load(Relaxed) {
                page.live.store(true, Release);
            }
            // Fill the rest of this page in one go.
            loop {
                page.pc[w].store(pc, Relaxed);
                page.stored[w].store(id, Release);
                if a == last {
                    return;
                }
                a = a.wrapping_add(4);
                w += 1;
                if w == WORDS {
                    break;
                }
            }
        }
    }

    /// Whether the guest stored to the page holding `addr` since it was last
    /// forgotten.
    pub fn page_is_stored(&self, addr: u64) -> bool {
        self.page(addr).is_some_and(|(p, _)| p.live.load(Acquire))
    }

    /// Forgets the stores to the pages in `[start, end)` (page-aligned).
    /// Walks only the populated part of the tree, so unmapping a huge
    /// reservation costs little.
    pub fn forget_range(&self, start: u64, end: u64) {
        let (start, end) = (start & VA_MASK, end.min(VA_MASK + 1));
        let mut pn = start / PAGE_SIZE;
        let end_pn = end / PAGE_SIZE;
        while pn < end_pn {
            let (i1, i2, i3) = (
                (pn >> 24) as usize & (FANOUT - 1),
                (pn >> 12) as usize & (FANOUT - 1),
                pn as usize & (FANOUT - 1),
            );
            // SAFETY: published pointers stay valid for the process lifetime.
            let Some(mid) = (unsafe { self.root[i1].load(Acquire).as_ref() }) else {
                pn = (pn | 0xff_ffff) + 1;
                continue;
            };
            // SAFETY: as above.
            let Some(leaf) = (unsafe { mid[i2].load(Acquire).as_ref() }) else {
                pn = (pn | 0xfff) + 1;
                continue;
            };
            // SAFETY: as above.
            if let Some(page) = unsafe { leaf[i3].load(Acquire).as_ref() } {
                page.live.store(false, Release);
                for s in &page.stored {
                    s.store(0, Release);
                }
            }
            pn += 1;
        }
    }
}

/// The vCPU encoded in a store identity.
pub fn id_vcpu(id: u64) -> u32 {
    (id & 0xffff) as u32
}

/// The per-vCPU count encoded in a store identity.
pub fn id_count(id: u64) -> u64 {
    id >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_identities_are_unique_and_name_their_vcpu() {
        let s = Shadow::new();
        s.store(3, 0x1000, 4, 0x40);
        let (p, w) = s.page(0x1000).unwrap();
        let a = p.stored[w].load(Relaxed);
        s.store(3, 0x1000, 4, 0x44);
        let b = p.stored[w].load(Relaxed);
        assert_ne!(a, b);
        assert_eq!((id_vcpu(a), id_vcpu(b)), (3, 3));
        assert_eq!(id_count(b), id_count(a) + 1);
        assert_eq!(p.pc[w].load(Relaxed), 0x44);
        assert_eq!(s.last_count(3), id_count(b));
    }

    #[test]
    fn every_page_is_listed_once() {
        let s = Shadow::new();
        for a in [0x1000, 0x1004, 0x2000, 0x7fff_0000_0000, 0x1008] {
            s.store(0, a, 4, 0);
        }
        let mut n = 0;
        s.for_each_page(|_| n += 1);
        assert_eq!(n, 3);
    }

    #[test]
    fn concurrent_stores_to_one_page_are_all_recorded() {
        let s = Shadow::new();
        std::thread::scope(|scope| {
            for v in 0..4u32 {
                let s = &s;
                scope.spawn(move || {
                    for i in 0..256u64 {
                        s.store(v, 0x5000 + (u64::from(v) * 256 + i) * 4, 4, 0);
                    }
                });
            }
        });
        let (p, _) = s.page(0x5000).unwrap();
        assert!(p.stored.iter().all(|w| w.load(Relaxed) != 0));
        let mut n = 0;
        s.for_each_page(|_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn forgetting_a_huge_range_skips_empty_subtrees() {
        let s = Shadow::new();
        s.store(0, 0x10_0000, 4, 0);
        s.store(0, 0x7f00_0000_0000, 4, 0);
        s.forget_range(0, 1 << 47);
        assert!(!s.page_is_stored(0x10_0000));
        assert!(!s.page_is_stored(0x7f00_0000_0000));
    }

    #[test]
    fn forgetting_clears_the_page() {
        let s = Shadow::new();
        s.store(0, 0x3000, 8, 0);
        assert!(s.page_is_stored(0x3004));
        s.forget_range(0x3000, 0x4000);
        assert!(!s.page_is_stored(0x3004));
        let (p, w) = s.page(0x3004).unwrap();
        assert_eq!(p.stored[w].load(Relaxed), 0);
    }
}
