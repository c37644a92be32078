//! The long run: 8 threads keep executing the latest published function
//! while one thread republishes it, 100,000 times by default. Meant for
//! AArch64 under icache-check (`cargo xtask ci` runs it there; `cargo xtask
//! soak` runs a longer configuration): zero violations and zero wrong
//! results. The pages stay RWX so that no mprotect syscall between the
//! write and the call synchronizes the threads by accident; only the
//! library's clear_cache and pipeline_flush_mt do.
//!
//! Publishing protocol as in `jit.rs`: a reader pins a slot and re-checks
//! that it is still the latest; the writer rewrites only a slot that is
//! neither the latest nor pinned, so no code is rewritten while it runs.

#![cfg(not(miri))]

mod common;

use common::{return_n, CodePages};
use icache_coherence::{clear_cache, pipeline_flush_mt};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};

const SLOTS: usize = 4;
const READERS: usize = 8;

#[test]
#[ignore = "long; run by cargo xtask ci / soak with ICACHE_LONG_RUN_PUBLISHES"]
fn eight_readers_never_run_stale_code_while_it_is_republished() {
    let publishes: u32 = std::env::var("ICACHE_LONG_RUN_PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let pages = CodePages::new(SLOTS);
    for slot in 0..SLOTS {
        pages.writable_and_executable(slot);
    }
    let latest = AtomicUsize::new(0);
    let expected: [AtomicU32; SLOTS] = Default::default();
    let pins: [AtomicUsize; SLOTS] = Default::default();
    let done = AtomicBool::new(false);
    let wrong = AtomicU64::new(0);
    let calls = AtomicU64::new(0);

    let publish = |slot: usize, value: u32| {
        let code = return_n(value);
        let f = pages.write(slot, 0, &code);
        unsafe { clear_cache(f, code.len()) }.unwrap();
        expected[slot].store(value, SeqCst);
        pipeline_flush_mt().unwrap();
        latest.store(slot, SeqCst);
    };
    publish(0, 1);

    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                let mut last_seen = 0;
                while !done.load(SeqCst) {
                    let slot = loop {
                        let k = latest.load(SeqCst);
                        pins[k].fetch_add(1, SeqCst);
                        if latest.load(SeqCst) == k {
                            break k;
                        }
                        pins[k].fetch_sub(1, SeqCst);
                    };
                    let want = expected[slot].load(SeqCst);
                    let got = pages.call(slot, 0);
                    pins[slot].fetch_sub(1, SeqCst);
                    if got != want || got < last_seen {
                        wrong.fetch_add(1, SeqCst);
                    }
                    last_seen = got;
                    calls.fetch_add(1, SeqCst);
                }
            });
        }
        for value in 2..=publishes {
            let slot = loop {
                let cur = latest.load(SeqCst);
                if let Some(free) = (0..SLOTS).find(|&k| k != cur && pins[k].load(SeqCst) == 0) {
                    break free;
                }
                std::hint::spin_loop();
            };
            publish(slot, value);
        }
        done.store(true, SeqCst);
    });
    let (wrong, calls) = (wrong.load(SeqCst), calls.load(SeqCst));
    println!("long run: {publishes} publishes, {calls} calls by {READERS} readers, {wrong} wrong");
    assert_eq!(wrong, 0, "{wrong} calls ran stale code");
    assert!(
        calls >= READERS as u64,
        "the readers barely ran: {calls} calls"
    );
}
