//! Double-mapped code (W^X by two mappings): written through an RW view of a
//! memfd, executed through an RX view of the same memory.
//!
//! What this proves: `clear_cache_dual` accepts the two addresses, touches
//! only mapped lines of each (a stray line would fault on AArch64), and code
//! written through one view runs correctly through the other, 200 times
//! over, on every Linux architecture of the matrix.
//!
//! QEMU 7.2 user mode does not notice writes made through a second mapping
//! at all: the RX view keeps running its old translation until that view is
//! mprotected. So after each rewrite the test mprotects the RX view (a no-op
//! on real hardware, where it is *not* a substitute for the maintenance, as
//! Linux cleans a page only the first time it becomes executable).
//!
//! Under icache-check the alias choice is checked too: the checker ties the
//! two views of the memfd (its README, "Double-mapped code"), so a missing
//! clean or invalidation is reported, and on a model whose instruction cache
//! is VIPT (`a64fx`) so is an invalidation through the RW view only (the
//! mutant "clear_cache_dual invalidates the writable view" of `cargo xtask
//! mutants`). What it cannot show: a missing `isb`, since the mprotect's
//! return is itself a context synchronization event for the calling thread.

#![cfg(all(not(miri), any(target_os = "linux", target_os = "android")))]

mod common;

use common::{call_at, return_n, PAGE};
use icache_coherence::clear_cache_dual;

struct DualMap {
    rw: *mut u8,
    rx: *mut u8,
}

impl DualMap {
    fn new() -> DualMap {
        unsafe {
            let fd = libc::memfd_create(c"icache-dual".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
            assert_eq!(libc::ftruncate(fd, PAGE as libc::off_t), 0);
            let map = |prot| {
                let p = libc::mmap(core::ptr::null_mut(), PAGE, prot, libc::MAP_SHARED, fd, 0);
                assert_ne!(
                    p,
                    libc::MAP_FAILED,
                    "mmap: {}",
                    std::io::Error::last_os_error()
                );
                p as *mut u8
            };
            let rw = map(libc::PROT_READ | libc::PROT_WRITE);
            let rx = map(libc::PROT_READ | libc::PROT_EXEC);
            libc::close(fd);
            DualMap { rw, rx }
        }
    }

    /// Makes qemu 7.2 drop its translations of the RX view (see above): the
    /// view loses PROT_EXEC and gets it back. An mprotect to the same
    /// protection is not enough when the code is rewritten at an address
    /// that already ran: with it alone, `a_batch_of_double_mapped_sites_...`
    /// ran the old code under qemu-riscv64 with `one-core` (`fence.i`),
    /// although it passed with the default `riscv_flush_icache` syscall.
    fn qemu_forget_translations(&self) {
        for prot in [libc::PROT_READ, libc::PROT_READ | libc::PROT_EXEC] {
            let r = unsafe { libc::mprotect(self.rx as *mut _, PAGE, prot) };
            assert_eq!(r, 0);
        }
    }
}

impl Drop for DualMap {
    fn drop(&mut self) {
        unsafe {
            libc::munmap(self.rw as *mut _, PAGE);
            libc::munmap(self.rx as *mut _, PAGE);
        }
    }
}

#[test]
fn code_written_through_the_rw_view_runs_through_the_rx_view() {
    let m = DualMap::new();
    for i in 0..200u32 {
        let offset = (i as usize * 12) % 1024;
        let code = return_n(i + 10);
        unsafe {
            for (k, b) in code.iter().enumerate() {
                core::ptr::write_volatile(m.rw.add(offset + k), *b);
            }
            clear_cache_dual(m.rw.add(offset).cast(), m.rx.add(offset).cast(), code.len()).unwrap();
        }
        m.qemu_forget_translations();
        let got = unsafe { call_at(m.rx.add(offset).cast()) };
        assert_eq!(got, i + 10, "rewrite {i}");
    }
}

#[test]
fn dual_with_a_wrapping_range_is_invalid_input() {
    let m = DualMap::new();
    let err = unsafe { clear_cache_dual(m.rw.cast(), usize::MAX as *const _, 16) }.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    unsafe { clear_cache_dual(m.rw.cast(), m.rx.cast(), 0) }.unwrap();
}

/// `Batch::add_dual` in a batch next to plain ranges: every site written
/// through the RW view runs through the RX view. Under qemu-user this
/// shows the addresses and the completion are accepted and touch only
/// mapped lines (a stray line faults on AArch64); see the module docs for
/// what it cannot show.
#[test]
fn a_batch_of_double_mapped_sites_runs_through_the_rx_view() {
    use icache_coherence::{batch, Publish};
    let m = DualMap::new();
    for round in 0..20u32 {
        batch(Publish::AllThreads, |b| {
            for site in 0..8usize {
                let offset = site * 64;
                let code = return_n(round * 100 + site as u32);
                unsafe {
                    for (k, byte) in code.iter().enumerate() {
                        core::ptr::write_volatile(m.rw.add(offset + k), *byte);
                    }
                    b.add_dual(m.rw.add(offset).cast(), m.rx.add(offset).cast(), code.len())?;
                }
            }
            Ok::<_, std::io::Error>(())
        })
        .unwrap();
        m.qemu_forget_translations();
        for site in 0..8usize {
            let got = unsafe { call_at(m.rx.add(site * 64).cast()) };
            assert_eq!(got, round * 100 + site as u32, "round {round}, site {site}");
        }
    }
}

#[test]
fn add_dual_with_either_range_wrapping_adds_nothing() {
    use icache_coherence::{batch, Publish};
    let m = DualMap::new();
    let (err, added) = batch(Publish::ThisThread, |b| {
        let bad = usize::MAX as *const core::ffi::c_void;
        let e1 = unsafe { b.add_dual(m.rw.cast(), bad, 16) }.unwrap_err();
        let e2 = unsafe { b.add_dual(bad, m.rx.cast(), 16) }.unwrap_err();
        assert_eq!(e1.kind(), e2.kind());
        unsafe { b.add_dual(m.rw.cast(), m.rx.cast(), 0) }.unwrap();
        Ok::<_, std::io::Error>((e1, b.len()))
    })
    .unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert_eq!(added, 0);
}
