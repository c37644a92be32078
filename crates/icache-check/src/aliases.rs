//! Double-mapped memory: which guest pages are views of the same file pages.
//!
//! A JIT with W^X by two mappings writes code through a read-write view of
//! a memfd or shm file and runs it through a read-execute view of the same
//! pages. The model must then see a store through one view and an execution
//! through the other as the same memory. This module learns the views from
//! the system calls (it sees no page tables) and gives each file page one
//! *physical* address, which the plugin uses in place of the guest virtual
//! address for stores, `dc` operands and, with a PIPT instruction cache,
//! `ic` operands and executions.
//!
//! # Which caches see aliases as one line (Arm ARM DDI 0487)
//!
//! * Data and unified caches behave as PIPT on AArch64 (Arm ARM, "Data and
//!   unified caches"; Linux relies on it:
//!   `arch/arm64/include/asm/cachetype.h`, "the D-side always behaves as
//!   PIPT on AArch64"). So `dc cvau` through any view cleans the physical
//!   line: stores and cleans use the physical address.
//! * Instruction caches report their type in CTR_EL0.L1Ip: PIPT (0b11),
//!   VIPT (0b10), AIVIVT (0b01, ARMv8.0 only) or VPIPT (0b00). For a PIPT
//!   instruction cache, `ic ivau` by VA invalidates the physical line the VA
//!   maps to, whichever view it goes through. A VIPT instruction cache may
//!   alias: a line fetched through one view can sit at an index the other
//!   view's address does not select, and an `ic ivau` through that other
//!   view does not reach it. Linux treats every VIPT instruction cache as
//!   aliasing (commit 3689c75af2a3, "arm64: cpuinfo: remove I-cache VIPT
//!   aliasing detection": "assume the I-cache is always aliasing if it
//!   advertises a VIPT policy") and then invalidates the whole instruction
//!   cache when it cannot invalidate through the user's address
//!   (`sync_icache_aliases` in `arch/arm64/mm/flush.c`). Arm's Cortex-A8
//!   TRM (DDI 0344I, 7.2.6, Example 7.1) describes this very case: two
//!   virtual mappings of the same code and an invalidation by address on a
//!   VIPT instruction cache. So for every
//!   type but PIPT the model counts an `ic ivau` only for fetches through the
//!   page it was issued on ([`crate::config::Config::pipt_icache`]).
//!
//! So `clear_cache_dual`'s "clean through the writable view, invalidate
//! through the executable one" is what every AArch64 core needs; cleaning
//! through the executable view is as good; invalidating only through the
//! writable view is a bug on VIPT (QEMU's `cortex-a53`, `a64fx`, `max`) and
//! harmless on PIPT (`cortex-a57`, `a72`, `a76`, `neoverse-n1`), and the
//! checker reports it only where it is a bug.
//!
//! # How views are learnt
//!
//! A file is known by the open file it came from: `memfd_create` and
//! `openat` give a new identity to the descriptor they return; `dup`,
//! `dup3` and `fcntl(F_DUPFD[_CLOEXEC])` copy it; `close` and
//! `close_range` drop it. A `MAP_SHARED` (or `MAP_SHARED_VALIDATE`) `mmap`
//! of a descriptor with an identity makes its pages views of (identity,
//! file offset); `munmap`, `mremap` and a later `mmap` over them end that.
//! Every such view gets a physical address, even while it is the only one,
//! because a second view can come later (or the first go away) while the
//! stores already made stay in the file.
//!
//! Not learnt (each a possible miss, never a false report): descriptors
//! inherited from the parent or received over a socket, the same file
//! opened twice (two identities), `MAP_PRIVATE` views (an unwritten private
//! page still shows the file's data), and more than [`MAX_FILES`] files or
//! offsets beyond [`MAX_OFFSET`].
//!
//! Physical addresses live in `[PHYS_BASE, 2 * PHYS_BASE)`, above the 47-bit
//! user address space of the x86-64 host that QEMU's user mode maps guest
//! memory into. A guest mapping found there is reported as a checker error
//! ([`Aliases::collision`]), never silently mixed up.

use std::collections::{BTreeMap, HashMap};

/// First physical address: file `f`'s page at offset `o` is at
/// `PHYS_BASE + (f << FILE_SHIFT) + o`.
pub const PHYS_BASE: u64 = 1 << 47;
const FILE_SHIFT: u32 = 36;
/// Files given an identity; later ones are not tracked.
pub const MAX_FILES: u64 = 1 << (47 - FILE_SHIFT);
/// File offsets tracked (64 GiB).
pub const MAX_OFFSET: u64 = 1 << FILE_SHIFT;
const PAGE: u64 = 4096;

/// aarch64 Linux system call numbers (`include/uapi/asm-generic/unistd.h`).
pub mod sysno {
    /// `dup(fd)`.
    pub const DUP: i64 = 23;
    /// `dup3(old, new, flags)`.
    pub const DUP3: i64 = 24;
    /// `fcntl(fd, cmd, arg)`.
    pub const FCNTL: i64 = 25;
    /// `openat(dirfd, path, flags, mode)`.
    pub const OPENAT: i64 = 56;
    /// `close(fd)`.
    pub const CLOSE: i64 = 57;
    /// `munmap(addr, len)`.
    pub const MUNMAP: i64 = 215;
    /// `mremap(old, old_len, new_len, flags, new)`.
    pub const MREMAP: i64 = 216;
    /// `mmap(addr, len, prot, flags, fd, off)`.
    pub const MMAP: i64 = 222;
    /// `memfd_create(name, flags)`.
    pub const MEMFD_CREATE: i64 = 279;
    /// `close_range(first, last, flags)`.
    pub const CLOSE_RANGE: i64 = 436;
    /// `openat2(dirfd, path, how, size)`.
    pub const OPENAT2: i64 = 437;
}

/// `F_DUPFD` and `F_DUPFD_CLOEXEC` (`include/uapi/asm-generic/fcntl.h`,
/// `include/uapi/linux/fcntl.h`).
const F_DUPFD: u64 = 0;
const F_DUPFD_CLOEXEC: u64 = 1030;
/// `MAP_TYPE`, `MAP_SHARED`, `MAP_SHARED_VALIDATE`
/// (`include/uapi/linux/mman.h`).
const MAP_TYPE: u64 = 0x0f;
const MAP_SHARED: u64 = 0x01;
const MAP_SHARED_VALIDATE: u64 = 0x03;
/// `CLOSE_RANGE_CLOEXEC` only marks the descriptors.
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct View {
    end: u64,
    file: u64,
    offset: u64,
}

/// The views of files the guest mapped shared, and the descriptors' files.
#[derive(Default)]
pub struct Aliases {
    fds: HashMap<u64, u64>,
    files: u64,
    /// Views by start address; they never overlap.
    views: BTreeMap<u64, View>,
    /// Per vCPU: the system call in progress and its six arguments.
    pending: Vec<Option<(i64, [u64; 6])>>,
    /// A guest mapping reached into the physical address range.
    pub collision: bool,
}

fn page_end(addr: u64, len: u64) -> u64 {
    addr.saturating_add(len).div_ceil(PAGE).saturating_mul(PAGE)
}

impl Aliases {
    /// No views known.
    pub fn is_empty(&self) -> bool {
        self.views.is_empty()
    }

    /// The physical address of guest address `va`, if its page is a view
    /// of a file page.
    pub fn physical(&self, va: u64) -> Option<u64> {
        let (&start, v) = self.views.range(..=va).next_back()?;
        (va < v.end).then(|| PHYS_BASE + (v.file << FILE_SHIFT) + v.offset + (va - start))
    }

    /// vCPU `v` enters system call `num`.
    pub fn syscall(&mut self, v: u32, num: i64, args: [u64; 6]) {
        let i = v as usize;
        if self.pending.len() <= i {
            self.pending.resize(i + 1, None);
        }
        self.pending[i] = Some((num, args));
    }

    /// vCPU `v` returns from system call `num` with `ret`.
    pub fn syscall_return(&mut self, v: u32, num: i64, ret: i64) {
        let Some((n, a)) = self.pending.get_mut(v as usize).and_then(Option::take) else {
            return;
        };
        // Linux returns -errno in [-4095, -1] (include/linux/err.h).
        if n != num || (-4095..0).contains(&ret) {
            return;
        }
        let r = ret as u64;
        match num {
            sysno::MEMFD_CREATE | sysno::OPENAT | sysno::OPENAT2 => {
                if self.files < MAX_FILES {
                    self.fds.insert(r, self.files);
                    self.files += 1;
                } else {
                    self.fds.remove(&r);
                }
            }
            sysno::DUP | sysno::DUP3 => self.copy_fd(a[0], r),
            sysno::FCNTL if a[1] == F_DUPFD || a[1] == F_DUPFD_CLOEXEC => self.copy_fd(a[0], r),
            sysno::CLOSE => {
                self.fds.remove(&a[0]);
            }
            sysno::CLOSE_RANGE if a[2] & CLOSE_RANGE_CLOEXEC == 0 => {
                self.fds.retain(|&fd, _| !(a[0]..=a[1]).contains(&fd));
            }
            sysno::MMAP => {
                let (len, flags, fd, offset) = (a[1], a[3], a[4], a[5]);
                let end = page_end(r, len);
                self.unmap(r, end);
                let shared = matches!(flags & MAP_TYPE, MAP_SHARED | MAP_SHARED_VALIDATE);
                if let (true, Some(&file)) = (shared, self.fds.get(&fd)) {
                    self.add(r, end, file, offset);
                }
            }
            sysno::MUNMAP => self.unmap(a[0], page_end(a[0], a[1])),
            sysno::MREMAP => {
                let (old, old_len, new_len) = (a[0], a[1], a[2]);
                let moved =
                    self.views.range(..=old).next_back().and_then(|(&s, v)| {
                        (old < v.end).then_some((v.file, v.offset + (old - s)))
                    });
                // An old length of 0 duplicates a shared mapping (mremap(2)).
                if old_len != 0 {
                    self.unmap(old, page_end(old, old_len));
                }
                let end = page_end(r, new_len);
                self.unmap(r, end);
                if let Some((file, offset)) = moved {
                    self.add(r, end, file, offset);
                }
            }
            _ => {}
        }
    }

    fn copy_fd(&mut self, from: u64, to: u64) {
        match self.fds.get(&from).copied() {
            Some(file) => self.fds.insert(to, file),
            None => self.fds.remove(&to),
        };
    }

    fn add(&mut self, start: u64, end: u64, file: u64, offset: u64) {
        if end > PHYS_BASE {
            self.collision = true;
        } else if offset.is_multiple_of(PAGE) && offset.saturating_add(end - start) <= MAX_OFFSET {
            self.views.insert(start, View { end, file, offset });
        }
    }

    /// Ends every view in `[start, end)`, keeping the parts outside it.
    fn unmap(&mut self, start: u64, end: u64) {
        if end > PHYS_BASE {
            self.collision = true;
        }
        let hit: Vec<u64> = self
            .views
            .range(..end)
            .rev()
            .take_while(|(_, v)| v.end > start)
            .map(|(&s, _)| s)
            .collect();
        for s in hit {
            let v = self.views.remove(&s).expect("listed above");
            if s < start {
                self.views.insert(s, View { end: start, ..v });
            }
            if v.end > end {
                let offset = v.offset + (end - s);
                self.views.insert(end, View { offset, ..v });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u64 = 0x10_0000;
    const RX: u64 = 0x20_0000;

    fn call(a: &mut Aliases, num: i64, args: &[u64], ret: i64) {
        let mut all = [0; 6];
        all[..args.len()].copy_from_slice(args);
        a.syscall(0, num, all);
        a.syscall_return(0, num, ret);
    }

    fn map(a: &mut Aliases, at: u64, len: u64, flags: u64, fd: u64, off: u64) {
        call(a, sysno::MMAP, &[0, len, 3, flags, fd, off], at as i64);
    }

    /// A memfd (descriptor 3) with an RW and an RX view of its 2 pages.
    fn dual() -> Aliases {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        map(&mut a, RW, 2 * PAGE, MAP_SHARED, 3, 0);
        map(&mut a, RX, 2 * PAGE, MAP_SHARED, 3, 0);
        a
    }

    #[test]
    fn two_shared_views_of_one_memfd_are_one_physical_page() {
        let a = dual();
        for off in [0, 4, PAGE - 4, PAGE, 2 * PAGE - 4] {
            let p = a.physical(RW + off).unwrap();
            assert_eq!(a.physical(RX + off), Some(p), "{off}");
            assert!(p >= PHYS_BASE);
        }
        assert_ne!(a.physical(RW), a.physical(RW + PAGE));
        assert_eq!(a.physical(RW + 2 * PAGE), None);
        assert_eq!(a.physical(RW - 4), None);
        assert!(!a.collision);
    }

    #[test]
    fn views_at_other_offsets_or_of_other_files_are_different_pages() {
        let mut a = dual();
        map(&mut a, 0x30_0000, PAGE, MAP_SHARED, 3, PAGE);
        assert_eq!(a.physical(0x30_0000), a.physical(RW + PAGE));
        call(&mut a, sysno::OPENAT, &[0, 0, 0], 4);
        map(&mut a, 0x40_0000, PAGE, MAP_SHARED_VALIDATE, 4, 0);
        let other = a.physical(0x40_0000).unwrap();
        assert_ne!(Some(other), a.physical(RW));
        assert_ne!(Some(other), a.physical(RW + PAGE));
    }

    #[test]
    fn private_anonymous_and_unknown_descriptors_make_no_views() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        map(&mut a, RW, PAGE, 0x02, 3, 0); // MAP_PRIVATE
        map(&mut a, RX, PAGE, 0x22, u64::MAX, 0); // MAP_PRIVATE | MAP_ANONYMOUS
        map(&mut a, 0x30_0000, PAGE, MAP_SHARED, 7, 0); // inherited fd 7
        assert!(a.is_empty());
    }

    #[test]
    fn dup_dup3_and_fcntl_copy_the_file_and_close_forgets_it() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        call(&mut a, sysno::DUP, &[3], 4);
        call(&mut a, sysno::DUP3, &[3, 9, 0], 9);
        call(&mut a, sysno::FCNTL, &[3, F_DUPFD_CLOEXEC, 10], 10);
        call(&mut a, sysno::FCNTL, &[3, 1, 0], 0); // F_GETFD: no copy
        call(&mut a, sysno::CLOSE, &[3], 0);
        map(&mut a, RW, PAGE, MAP_SHARED, 4, 0);
        for (i, fd) in [9u64, 10].into_iter().enumerate() {
            let at = RX + i as u64 * PAGE;
            map(&mut a, at, PAGE, MAP_SHARED, fd, 0);
            assert_eq!(a.physical(at), a.physical(RW), "fd {fd}");
        }
        map(&mut a, 0x30_0000, PAGE, MAP_SHARED, 3, 0);
        assert_eq!(a.physical(0x30_0000), None, "closed descriptor");
        assert_eq!(a.physical(0), None, "F_GETFD returned 0, not a copy");
    }

    #[test]
    fn a_reused_descriptor_number_is_a_new_file() {
        let mut a = dual();
        call(&mut a, sysno::CLOSE, &[3], 0);
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        map(&mut a, 0x30_0000, PAGE, MAP_SHARED, 3, 0);
        assert_ne!(a.physical(0x30_0000), a.physical(RW));
        // The old views outlive the descriptor.
        assert_eq!(a.physical(RX), a.physical(RW));
    }

    #[test]
    fn close_range_forgets_descriptors_unless_it_only_sets_cloexec() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 5);
        call(&mut a, sysno::CLOSE_RANGE, &[3, 4, CLOSE_RANGE_CLOEXEC], 0);
        call(&mut a, sysno::CLOSE_RANGE, &[4, u64::from(u32::MAX), 0], 0);
        map(&mut a, RW, PAGE, MAP_SHARED, 3, 0);
        map(&mut a, RX, PAGE, MAP_SHARED, 5, 0);
        assert!(a.physical(RW).is_some());
        assert_eq!(a.physical(RX), None);
    }

    #[test]
    fn failed_calls_change_nothing() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], -24);
        call(&mut a, sysno::OPENAT, &[0, 0, 0], 3);
        map(&mut a, RW, PAGE, MAP_SHARED, 3, 0);
        call(&mut a, sysno::MUNMAP, &[RW, PAGE], -22);
        call(&mut a, sysno::CLOSE, &[3], -9);
        map(&mut a, RX, PAGE, MAP_SHARED, 3, 0);
        assert_eq!(a.physical(RX), a.physical(RW));
        assert!(a.physical(RW).is_some());
        // A return without its entry (or another call's) is ignored.
        a.syscall_return(0, sysno::MUNMAP, 0);
        a.syscall(0, sysno::MUNMAP, [RW, PAGE, 0, 0, 0, 0]);
        a.syscall_return(0, sysno::MMAP, 0);
        assert!(a.physical(RW).is_some());
    }

    #[test]
    fn munmap_of_part_of_a_view_keeps_the_rest_at_its_offset() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        map(&mut a, RW, 4 * PAGE, MAP_SHARED, 3, 0);
        let before: Vec<_> = (0..4).map(|p| a.physical(RW + p * PAGE)).collect();
        call(&mut a, sysno::MUNMAP, &[RW + PAGE, PAGE + 1], 0);
        assert_eq!(a.physical(RW), before[0]);
        assert_eq!(a.physical(RW + PAGE), None);
        assert_eq!(a.physical(RW + 2 * PAGE + 8), None, "rounded up to pages");
        assert_eq!(a.physical(RW + 3 * PAGE), before[3]);
    }

    #[test]
    fn mmap_over_a_view_replaces_it() {
        let mut a = dual();
        map(&mut a, RX, PAGE, 0x22, u64::MAX, 0); // MAP_FIXED anonymous
        assert_eq!(a.physical(RX), None);
        assert_eq!(a.physical(RX + PAGE), a.physical(RW + PAGE));
    }

    #[test]
    fn mremap_moves_a_view_and_a_zero_old_length_duplicates_it() {
        let mut a = dual();
        let p = a.physical(RX);
        call(
            &mut a,
            sysno::MREMAP,
            &[RX, 2 * PAGE, 2 * PAGE, 1],
            0x50_0000,
        );
        assert_eq!(a.physical(RX), None);
        assert_eq!(a.physical(0x50_0000), p);
        call(&mut a, sysno::MREMAP, &[RW, 0, PAGE, 1], 0x60_0000);
        assert_eq!(a.physical(0x60_0000), p);
        assert_eq!(a.physical(RW), p);
    }

    #[test]
    fn each_vcpu_has_its_own_system_call_in_progress() {
        let mut a = Aliases::default();
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        a.syscall(1, sysno::DUP, [3, 0, 0, 0, 0, 0]);
        a.syscall(0, sysno::MMAP, [0, PAGE, 3, MAP_SHARED, 3, 0]);
        a.syscall_return(1, sysno::DUP, 4);
        a.syscall_return(0, sysno::MMAP, RW as i64);
        map(&mut a, RX, PAGE, MAP_SHARED, 4, 0);
        assert!(a.physical(RW).is_some());
        assert_eq!(a.physical(RX), a.physical(RW));
    }

    #[test]
    fn a_mapping_in_the_physical_range_is_a_collision() {
        let mut a = dual();
        assert!(!a.collision);
        call(&mut a, sysno::MUNMAP, &[PHYS_BASE - PAGE, 2 * PAGE], 0);
        assert!(a.collision);
        let mut b = Aliases::default();
        map(&mut b, PHYS_BASE, PAGE, 0x22, u64::MAX, 0);
        assert!(b.collision);
    }

    #[test]
    fn files_beyond_the_limit_are_not_tracked() {
        let mut a = Aliases::default();
        for _ in 0..MAX_FILES {
            call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        }
        map(&mut a, RW, PAGE, MAP_SHARED, 3, MAX_OFFSET - PAGE);
        assert!(a.physical(RW).is_some());
        map(&mut a, RX, 2 * PAGE, MAP_SHARED, 3, MAX_OFFSET - PAGE);
        assert_eq!(a.physical(RX), None, "beyond MAX_OFFSET");
        call(&mut a, sysno::MEMFD_CREATE, &[0, 0], 3);
        map(&mut a, RX, PAGE, MAP_SHARED, 3, 0);
        assert_eq!(a.physical(RX), None, "beyond MAX_FILES");
    }
}
