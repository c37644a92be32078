//! Real JIT tests: generated code, made coherent by the library, executed.
//!
//! Under qemu-user these pass even if `clear_cache` did nothing, because
//! QEMU retranslates written code whatever the program does. They become
//! meaningful on real hardware and under `icache-check`, the project's
//! coherence checker, which `cargo xtask ci` runs them under on AArch64: it
//! reports any execution of bytes that were not cleaned, invalidated and
//! context-synchronized for the executing core.

#![cfg(not(miri))] // Miri cannot execute machine code

mod common;

use common::{return_n, CodePages, Republished};
use icache_coherence::clear_cache;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

#[test]
fn generated_function_returns_its_value() {
    let pages = CodePages::new(1);
    let code = return_n(42);
    let f = pages.write(0, 0, &code);
    unsafe { clear_cache(f, code.len()) }.unwrap();
    pages.executable(0);
    assert_eq!(pages.call(0, 0), 42);
}

#[test]
fn clear_cache_works_on_executable_memory_too() {
    let pages = CodePages::new(1);
    let code = return_n(7);
    let f = pages.write(0, 0, &code);
    pages.executable(0);
    unsafe { clear_cache(f, code.len()) }.unwrap();
    assert_eq!(pages.call(0, 0), 7);
}

#[test]
fn rewritten_code_runs_new_version() {
    // The same page rewritten 1,000 times: the case that Linux's
    // first-exec clean (PG_dcache_clean) does not cover on arm64.
    let pages = CodePages::new(1);
    for i in 0..1000u32 {
        // Move the function around inside the page so that every start
        // alignment relative to the cache lines occurs.
        let offset = (i as usize * 4) % 512;
        let code = return_n(i * 3 + 1);
        pages.writable(0);
        let f = pages.write(0, offset, &code);
        unsafe { clear_cache(f, code.len()) }.unwrap();
        pages.executable(0);
        assert_eq!(pages.call(0, offset), i * 3 + 1, "rewrite {i}");
    }
}

#[test]
fn function_spanning_a_page_boundary_runs() {
    let pages = CodePages::new(2);
    let code = return_n(99);
    let offset = common::PAGE - 4; // the first instruction on page 0, the rest on page 1
    let f = pages.write(0, offset, &code[..4]);
    pages.write(1, 0, &code[4..]);
    unsafe { clear_cache(f, code.len()) }.unwrap();
    pages.executable(0);
    pages.executable(1);
    assert_eq!(pages.call(0, offset), 99);
}

/// A range longer than the inlined fast path takes (the out-of-line path
/// with its loops unrolled 32 lines at a time, remainder first): one
/// `clear_cache` over three pages and a bit, then a function in the first
/// line, in the middle, and in the very last bytes of the range. With the
/// odd start every remainder block runs, and the last line is the one an
/// unrolled walk that lost its count would miss. It is rewritten at many
/// offsets so that every remainder occurs on both CPU models' line sizes.
#[test]
fn a_long_range_is_coherent_to_its_last_line() {
    let pages = CodePages::new(4);
    for round in 0..40u32 {
        let start = 4 + 64 * round as usize; // offset into page 0
        let end = 3 * common::PAGE + 16 + 100 * round as usize; // into page 3
        for p in 0..4 {
            pages.writable(p);
        }
        let first = return_n(round * 10 + 1);
        let middle = return_n(round * 10 + 2);
        let last = return_n(round * 10 + 3);
        let f = pages.write(0, start, &first);
        pages.write(1, 512, &middle);
        let last_at = end - last.len();
        pages.write(last_at / common::PAGE, last_at % common::PAGE, &last);
        unsafe { clear_cache(f, end - start) }.unwrap();
        for p in 0..4 {
            pages.executable(p);
        }
        assert_eq!(
            pages.call(0, start),
            round * 10 + 1,
            "round {round}: first line"
        );
        assert_eq!(pages.call(1, 512), round * 10 + 2, "round {round}: middle");
        assert_eq!(
            pages.call(last_at / common::PAGE, last_at % common::PAGE),
            round * 10 + 3,
            "round {round}: last line"
        );
    }
}

/// Four threads keep calling the latest published function while the main
/// thread republishes it 1,000 times, with `pipeline_flush_mt` after each
/// publish (W^X pages: mprotect RW, write, clear_cache, mprotect RX). The
/// protocol that keeps code from being rewritten while it runs is
/// `common::Republished`.
#[test]
fn threads_always_run_the_latest_published_function() {
    const PUBLISHES: u32 = 1000;
    let f = Republished::new(3, true);
    let done = AtomicBool::new(false);
    let stale = AtomicBool::new(false);
    let newest_run = AtomicU32::new(0);

    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut last_seen = 0;
                while !done.load(SeqCst) {
                    let (got, want) = f.call_latest();
                    if got != want || got < last_seen {
                        // Report after the scope: a panic here would leave
                        // the writer waiting for this reader forever.
                        eprintln!("returned {got}, expected {want} (last {last_seen})");
                        stale.store(true, SeqCst);
                        return;
                    }
                    last_seen = got;
                    newest_run.fetch_max(got, SeqCst);
                }
            });
        }
        for value in 2..=PUBLISHES {
            f.publish(value);
            // Every published version must be run by some reader before the
            // next one, so the readers really race with the republishing.
            while newest_run.load(SeqCst) < value && !stale.load(SeqCst) {
                std::thread::yield_now();
            }
        }
        done.store(true, SeqCst);
    });
    assert!(!stale.load(SeqCst), "a reader ran stale code");
    assert_eq!(newest_run.load(SeqCst), PUBLISHES);
}
