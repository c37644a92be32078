//! Batching: many ranges, one set of barriers, impossible to leave unfinished.
//!
//! Under plain qemu-user these pass even if the batch did no maintenance
//! (QEMU retranslates written code); under icache-check (`cargo xtask ci`
//! runs the AArch64 suite under it) a skipped clean, invalidate, barrier or
//! isb for any range is reported.

#![cfg(not(miri))]

mod common;

use common::{return_n, CodePages, PAGE};
use core::ffi::c_void;
use icache_coherence::{batch, clear_cache_ranges, Publish};
use std::io::ErrorKind;

const SLOT: usize = 32; // bytes per function: several functions share a line

#[test]
fn every_site_in_a_batch_runs_its_new_code() {
    let pages = CodePages::new(2);
    let sites = 2 * PAGE / SLOT;
    for round in 0..20u32 {
        pages.writable(0);
        pages.writable(1);
        let n = batch(Publish::ThisThread, |b| {
            for k in 0..sites {
                let code = return_n(round * 1000 + k as u32);
                let f = pages.write(k * SLOT / PAGE, (k * SLOT) % PAGE, &code);
                unsafe { b.add(f, code.len())? };
            }
            Ok::<_, std::io::Error>(b.len())
        })
        .unwrap();
        assert_eq!(n, sites);
        pages.executable(0);
        pages.executable(1);
        for k in 0..sites {
            let got = pages.call(k * SLOT / PAGE, (k * SLOT) % PAGE);
            assert_eq!(got, round * 1000 + k as u32, "round {round}, site {k}");
        }
    }
}

#[test]
fn clear_cache_ranges_covers_every_range() {
    let pages = CodePages::new(1);
    let mut ranges: Vec<(*const c_void, usize)> = Vec::new();
    for k in 0..16 {
        let code = return_n(500 + k as u32);
        ranges.push((pages.write(0, k * 40 + (k % 3) * 4, &code), code.len()));
    }
    ranges.push((core::ptr::null(), 0)); // empty ranges are skipped
    unsafe { clear_cache_ranges(&ranges) }.unwrap();
    pages.executable(0);
    for k in 0..16 {
        assert_eq!(pages.call(0, k * 40 + (k % 3) * 4), 500 + k as u32);
    }
}

#[test]
fn a_wrapping_range_refuses_the_whole_batch_and_touches_nothing() {
    // The first range is unmapped: touching it would fault on AArch64, so
    // a clean InvalidInput shows that validation came before any touch.
    let pages = CodePages::new(1);
    let gone = pages.page(0) as *const c_void;
    drop(pages);
    let ranges = [(gone, 64usize), (usize::MAX as *const c_void, 2)];
    let err = unsafe { clear_cache_ranges(&ranges) }.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let err = batch(Publish::ThisThread, |b| unsafe {
        b.add(usize::MAX as *const c_void, 2)
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn batch_completes_the_barriers_even_when_the_closure_fails() {
    let pages = CodePages::new(1);
    let code = return_n(77);
    let err = batch(Publish::AllThreads, |b| {
        let f = pages.write(0, 0, &code);
        unsafe { b.add(f, code.len())? };
        Err::<(), _>(std::io::Error::other("the JIT gave up half-way"))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "the JIT gave up half-way");
    pages.executable(0);
    // The range added before the failure was still made coherent.
    assert_eq!(pages.call(0, 0), 77);
}

#[test]
fn batch_for_all_threads_lets_other_threads_run_the_code() {
    let pages = CodePages::new(1);
    batch(Publish::AllThreads, |b| {
        for k in 0..8 {
            let code = return_n(900 + k);
            let f = pages.write(0, k as usize * SLOT, &code);
            unsafe { b.add(f, code.len())? };
        }
        Ok::<_, std::io::Error>(())
    })
    .unwrap();
    pages.executable(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let pages = &pages;
            s.spawn(move || {
                for k in 0..8 {
                    assert_eq!(pages.call(0, k * SLOT), 900 + k as u32, "thread {t}");
                }
            });
        }
    });
}

/// A closure that fails after writing code: the code it added is still made
/// coherent before the error comes back (under icache-check, calling it
/// would otherwise be reported).
#[test]
fn a_batch_whose_closure_fails_still_completes_what_it_added() {
    let pages = CodePages::new(1);
    let code = return_n(4242);
    let err = batch(Publish::ThisThread, |b| -> std::io::Result<()> {
        let f = pages.write(0, 0, &code);
        unsafe { b.add(f, code.len())? };
        Err(std::io::Error::other("the JIT gave up halfway"))
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "the JIT gave up halfway");
    pages.executable(0);
    assert_eq!(pages.call(0, 0), 4242);
}

/// A closure that panics after writing code: the completion runs while the
/// panic unwinds, so the code it added is coherent afterwards. Under plain
/// qemu this passes whatever happens; under icache-check (the mutant "batch
/// skips its completion on panic") the call below is a violation.
#[test]
fn a_batch_whose_closure_panics_still_completes_what_it_added() {
    let pages = CodePages::new(1);
    let code = return_n(4343);
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        batch(Publish::ThisThread, |b| -> std::io::Result<()> {
            let f = pages.write(0, 0, &code);
            unsafe { b.add(f, code.len())? };
            panic!("the JIT panicked halfway");
        })
    }));
    assert!(unwound.is_err(), "the panic must go on");
    pages.executable(0);
    assert_eq!(pages.call(0, 0), 4343);
}

/// `batch` returns the closure's own error type, given `From<io::Error>`:
/// a JIT's error enum comes back unchanged, and `?` on `Batch::add` inside
/// converts into it.
#[test]
fn batch_returns_the_callers_own_error_type() {
    #[derive(Debug)]
    enum JitError {
        Io(std::io::ErrorKind),
        OutOfRegisters,
    }
    impl From<std::io::Error> for JitError {
        fn from(e: std::io::Error) -> Self {
            JitError::Io(e.kind())
        }
    }
    let pages = CodePages::new(1);
    let code = return_n(31);
    let err = batch(Publish::ThisThread, |b| {
        let f = pages.write(0, 0, &code);
        unsafe { b.add(f, code.len())? };
        Err::<(), _>(JitError::OutOfRegisters)
    })
    .unwrap_err();
    assert!(matches!(err, JitError::OutOfRegisters), "{err:?}");
    pages.executable(0);
    assert_eq!(pages.call(0, 0), 31);

    let err = batch(Publish::ThisThread, |b| -> Result<(), JitError> {
        unsafe { b.add(usize::MAX as *const c_void, 2)? };
        Ok(())
    })
    .unwrap_err();
    assert!(
        matches!(err, JitError::Io(ErrorKind::InvalidInput)),
        "{err:?}"
    );
}
