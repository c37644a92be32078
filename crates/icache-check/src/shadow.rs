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
const COUNTERS: usize = 4096;

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
    /// The instruction word last executed from here while coherent, with
    /// bit 32 set (0: none): the "old" instruction of a patch site.
    pub fetched: AtomicU64,
    /// The store identity `coherent_vcpus` is about.
    pub coherent_for: AtomicU64,
    /// vCPUs (indexes below 64) for which the data of store `coherent_for`
    /// was found coherent. Coherence of one store's data for one vCPU never
    /// ends (cleans, invalidations and synchronizations are never undone; a
    /// new store has a new identity), so [`Shadow::known_coherent`] can
    /// answer from this without the model's lock.
    pub coherent_vcpus: AtomicU64,
    /// The store identity whose executions were already counted as a code
    /// store, so that counting takes a hash only once per word and store.
    pub counted_for: AtomicU64,
}

impl MaintWord {
    /// Records `word` as the instruction last run from here while coherent.
    pub fn set_fetched(&self, word: u32) {
        let fetched = u64::from(word) | 1 << 32;
        if self.fetched.load(Relaxed) != fetched {
            self.fetched.store(fetched, Relaxed);
        }
    }

    /// Records that the data of store `id` is coherent for vCPU `v`. Only the
    /// model's locked code calls it.
    pub fn set_coherent(&self, id: u64, v: u32) {
        if v >= 64 {
            return;
        }
        if self.coherent_for.load(Relaxed) != id {
            // Clear the set before publishing the new identity, so that a
            // reader that sees `id` sees no vCPU of an older store.
            self.coherent_vcpus.store(0, Relaxed);
            self.coherent_for.store(id, Release);
        }
        self.coherent_vcpus.fetch_or(1 << v, Release);
    }
}

/// One 4 KiB page of shadow state.
pub struct Page {
    /// The guest stored to this page since the model last forgot it.
    pub live: AtomicBool,
    /// Per word: the store identity (0 = never stored, or forgotten) and the
    /// PC of that store, side by side so a store touches one cache line.
    words: [StoreWord; WORDS],
    /// Maintenance state, allocated the first time maintenance touches the page.
    maint: AtomicPtr<[MaintWord; WORDS]>,
    next: AtomicPtr<Page>,
    linked: AtomicBool,
}

#[derive(Default)]
struct StoreWord {
    id: AtomicU64,
    pc: AtomicU64,
}

impl Page {
    /// The identity of the last store to word `w` (0 if none).
    pub fn id(&self, w: usize) -> u64 {
        self.words[w].id.load(Acquire)
    }

    /// The PC of the last store to word `w`.
    pub fn pc(&self, w: usize) -> u64 {
        self.words[w].pc.load(Relaxed)
    }

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

/// Per-vCPU state of the store path, one cache line each: the store counter
/// and the last page this vCPU stored to.
#[repr(align(64))]
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    cached_pn: AtomicU64,
    cached_page: AtomicPtr<Page>,
    cached_epoch: AtomicU64,
}

/// The shadow memory. `Sync`: every field is atomic.
pub struct Shadow {
    root: Box<[AtomicPtr<Mid>; FANOUT]>,
    counters: Box<[Counter; COUNTERS]>,
    all_pages: AtomicPtr<Page>,
    /// Bumped by every `forget_range`, which invalidates the per-vCPU caches.
    epoch: AtomicU64,
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
            epoch: AtomicU64::new(0),
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
    ///
    /// QEMU gives each live guest thread its own vCPU index, and only that
    /// thread runs its store callbacks, so a plain load and store suffice for
    /// the vCPUs below `COUNTERS`: an atomic read-modify-write here would
    /// drain the host's store buffer on every guest store, which costs more
    /// than the rest of the callback. Higher indexes share one counter and pay
    /// for `fetch_add`.
    fn next_id(&self, v: u32) -> u64 {
        let count = match self.counters.get(v as usize) {
            Some(c) if (v as usize) < COUNTERS - 1 => {
                let n = c.count.load(Relaxed) + 1;
                c.count.store(n, Relaxed);
                n
            }
            _ => self.counters[COUNTERS - 1].count.fetch_add(1, Relaxed) + 1,
        };
        (count << 16) | u64::from(v & 0xffff)
    }

    /// The count part of the last identity handed out to vCPU `v`: every
    /// store of `v` with a count up to this one has been recorded.
    pub fn last_count(&self, v: u32) -> u64 {
        let i = (v as usize).min(COUNTERS - 1);
        self.counters[i].count.load(Acquire)
    }

    /// Records that vCPU `v` stored `size` bytes at `addr` with the
    /// instruction at `pc`. Lock-free.
    pub fn store(&self, v: u32, addr: u64, size: u64, pc: u64) {
        let id = self.next_id(v);
        let first = addr & !3;
        let last = addr.wrapping_add(size.max(1) - 1) & !3;
        let mut a = first;
        loop {
            let (page, mut w) = self.page_for_store(v, a);
            // Fill the rest of this page in one go.
            loop {
                let sw = &page.words[w];
                sw.pc.store(pc, Relaxed);
                sw.id.store(id, Release);
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

    /// The live page for a store by `v` at `addr`, through `v`'s one-entry
    /// cache: most stores hit the page of the previous one.
    fn page_for_store(&self, v: u32, addr: u64) -> (&Page, usize) {
        let pn = (addr & VA_MASK) / PAGE_SIZE;
        let w = ((addr % PAGE_SIZE) / 4) as usize;
        let epoch = self.epoch.load(Acquire);
        let cache = self
            .counters
            .get(v as usize)
            .filter(|_| (v as usize) < COUNTERS - 1);
        if let Some(c) = cache {
            let p = c.cached_page.load(Relaxed);
            if !p.is_null()
                && c.cached_pn.load(Relaxed) == pn
                && c.cached_epoch.load(Relaxed) == epoch
            {
                // SAFETY: pages are never freed.
                return (unsafe { &*p }, w);
            }
        }
        let (page, w) = self.page_or_create(addr);
        if !page.live.load(Relaxed) {
            page.live.store(true, Release);
        }
        if let Some(c) = cache {
            c.cached_page
                .store(page as *const Page as *mut Page, Relaxed);
            c.cached_pn.store(pn, Relaxed);
            c.cached_epoch.store(epoch, Relaxed);
        }
        (page, w)
    }

    /// Whether the instruction at `addr` is known to be coherent for vCPU `v`:
    /// the model found the data of its current store coherent for `v` before.
    /// Lock-free: the plugin answers most executions in stored-to pages with
    /// it, without the model's lock.
    pub fn known_coherent(&self, v: u32, addr: u64) -> bool {
        self.page(addr)
            .is_some_and(|(page, w)| Self::known_coherent_word(page, w, v))
    }

    /// [`Shadow::known_coherent`] for word `w` of a page already looked up:
    /// the plugin keeps the page of each instruction it watches, so the hot
    /// path skips the walk down the tree.
    pub fn known_coherent_word(page: &Page, w: usize, v: u32) -> bool {
        let id = page.id(w);
        let Some(m) = page.maint().map(|m| &m[w]) else {
            return false;
        };
        v < 64
            && id != 0
            && m.coherent_for.load(Acquire) == id
            && m.coherent_vcpus.load(Acquire) & (1 << v) != 0
    }

    /// Whether the guest stored to the page holding `addr` since it was last
    /// forgotten.
    pub fn page_is_stored(&self, addr: u64) -> bool {
        self.page(addr).is_some_and(|(p, _)| p.live.load(Acquire))
    }

    /// Forgets the stores to every page that `[addr, addr + len)` touches:
    /// what the kernel replaces on `munmap`, `mmap` and `mremap` (whole
    /// pages, mm/mmap.c). Every architecture's model calls it on those
    /// system calls.
    pub fn forget_pages(&self, addr: u64, len: u64) {
        let end = addr.saturating_add(len).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        self.forget_range(addr & !(PAGE_SIZE - 1), end);
    }

    /// The stored words that an instruction of `len` bytes at `pc` covers
    /// (a 2-byte or unaligned instruction may touch one word or two), each
    /// with its page, index and store identity; never-stored words are left
    /// out.
    pub fn stored_words(&self, pc: u64, len: u64) -> Vec<(&Page, usize, u64)> {
        let first = pc & !3;
        let last = pc.wrapping_add(len.max(1) - 1) & !3;
        let mut out = Vec::with_capacity(2);
        let mut a = first;
        loop {
            if let Some((page, w)) = self.page(a) {
                let id = page.id(w);
                if id != 0 {
                    out.push((page, w, id));
                }
            }
            if a == last {
                return out;
            }
            a = a.wrapping_add(4);
        }
    }

    /// Forgets the stores to the pages in `[start, end)` (page-aligned).
    /// Walks only the populated part of the tree, so unmapping a huge
    /// reservation costs little.
    pub fn forget_range(&self, start: u64, end: u64) {
        self.epoch.fetch_add(1, AcqRel);
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
                for sw in &page.words {
                    sw.id.store(0, Release);
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
    fn forgetting_part_of_a_page_forgets_the_whole_page_and_no_other() {
        let s = Shadow::new();
        for addr in [0x1ffc, 0x2000, 0x2ffc, 0x3000] {
            s.store(0, addr, 4, 0x40);
        }
        s.forget_pages(0x2010, 0x10);
        let id = |a| s.page(a).map_or(0, |(p, w)| p.id(w));
        assert_ne!(id(0x1ffc), 0);
        assert_eq!((id(0x2000), id(0x2ffc)), (0, 0));
        assert_ne!(id(0x3000), 0);
    }

    #[test]
    fn an_instruction_covers_each_stored_word_its_bytes_touch() {
        let s = Shadow::new();
        s.store(0, 0x1000, 4, 0x40);
        s.store(0, 0x1004, 4, 0x44);
        let words = |pc, len| -> Vec<u64> {
            s.stored_words(pc, len)
                .iter()
                .map(|&(p, w, _)| p.pc(w))
                .collect()
        };
        assert_eq!(words(0x1000, 4), [0x40]);
        assert_eq!(words(0x1002, 4), [0x40, 0x44]);
        assert_eq!(words(0x1006, 2), [0x44]);
        assert!(
            words(0x1008, 4).is_empty(),
            "a never-stored word is left out"
        );
    }

    #[test]
    fn store_identities_are_unique_and_name_their_vcpu() {
        let s = Shadow::new();
        s.store(3, 0x1000, 4, 0x40);
        let (p, w) = s.page(0x1000).unwrap();
        let a = p.id(w);
        s.store(3, 0x1000, 4, 0x44);
        let b = p.id(w);
        assert_ne!(a, b);
        assert_eq!((id_vcpu(a), id_vcpu(b)), (3, 3));
        assert_eq!(id_count(b), id_count(a) + 1);
        assert_eq!(p.pc(w), 0x44);
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
        assert!((0..WORDS).all(|w| p.id(w) != 0));
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
    fn a_cached_page_is_marked_live_again_after_it_was_forgotten() {
        let s = Shadow::new();
        s.store(2, 0x3000, 4, 0);
        s.forget_range(0x3000, 0x4000);
        s.store(2, 0x3008, 4, 0);
        assert!(s.page_is_stored(0x3000));
    }

    #[test]
    fn forgetting_clears_the_page() {
        let s = Shadow::new();
        s.store(0, 0x3000, 8, 0);
        assert!(s.page_is_stored(0x3004));
        s.forget_range(0x3000, 0x4000);
        assert!(!s.page_is_stored(0x3004));
        let (p, w) = s.page(0x3004).unwrap();
        assert_eq!(p.id(w), 0);
    }
}
