//! The long run: 8 threads keep executing the latest published function
//! while one thread republishes it, 100,000 times by default. Meant for
//! AArch64 under icache-check (`cargo xtask ci` runs it there; `cargo xtask
//! soak` runs a longer configuration): zero violations and zero wrong
//! results. The pages stay RWX so that no mprotect syscall between the
//! write and the call synchronizes the threads by accident; only the
//! library's clear_cache and pipeline_flush_mt do.
//!
//! The publishing protocol (`common::Republished`) never rewrites code
//! while a thread runs it.

#![cfg(not(miri))]

mod common;

use common::Republished;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

const READERS: usize = 8;

#[test]
#[ignore = "long; run by cargo xtask ci / soak with ICACHE_LONG_RUN_PUBLISHES"]
fn eight_readers_never_run_stale_code_while_it_is_republished() {
    let publishes: u32 = std::env::var("ICACHE_LONG_RUN_PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let f = Republished::new(4, false);
    let done = AtomicBool::new(false);
    let wrong = AtomicU64::new(0);
    let calls = AtomicU64::new(0);

    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                pin_to(Role::Reader);
                let mut last_seen = 0;
                while !done.load(SeqCst) {
                    let (got, want) = f.call_latest();
                    if got != want || got < last_seen {
                        wrong.fetch_add(1, SeqCst);
                    }
                    last_seen = got;
                    calls.fetch_add(1, SeqCst);
                }
            });
        }
        pin_to(Role::Writer);
        for value in 2..=publishes {
            f.publish(value);
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

/// The reader-side protocol (`CodeEpoch`) instead of `pipeline_flush_mt`:
/// one writer republishes into a ring of 4 RWX pages, 3 readers read the
/// publication, sync with the epoch, and call. Under plain qemu it passes
/// whatever the library does (qemu's instruction fetch is coherent); under
/// icache-check on AArch64 (CI runs the suite there on cortex-a72 and
/// a64fx) a reader that runs the code without an `isb` ordered after the
/// writer's completed maintenance is a violation. The mutants "reader skips
/// sync_this_thread", "reader syncs before reading the entry point" and
/// "writer publishes before its last dsb" must make it fail there.
#[test]
fn readers_on_the_epoch_protocol_never_run_stale_code_from_a_ring_of_pages() {
    const EPOCH_READERS: usize = 3;
    let publishes: u32 = std::env::var("ICACHE_EPOCH_PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let f = Republished::with_epoch(4);
    let done = AtomicBool::new(false);
    let wrong = AtomicU64::new(0);
    let calls = AtomicU64::new(0);
    let started = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..EPOCH_READERS {
            s.spawn(|| {
                pin_to(Role::Reader);
                let (mut seen, mut last_seen) = (0, 0);
                let mut first = true;
                while !done.load(SeqCst) {
                    let (got, want) = f.call_latest_synced(&mut seen);
                    if got != want || got < last_seen {
                        wrong.fetch_add(1, SeqCst);
                    }
                    last_seen = got;
                    calls.fetch_add(1, SeqCst);
                    if first {
                        started.fetch_add(1, SeqCst);
                        first = false;
                    }
                }
            });
        }
        pin_to(Role::Writer);
        // Every reader is running before the first publication: on a fast
        // host the writer could otherwise finish before any reader was
        // scheduled, and nothing would have been tested.
        while started.load(SeqCst) < EPOCH_READERS as u64 {
            std::thread::yield_now();
        }
        for value in 2..=publishes {
            f.publish(value);
        }
        done.store(true, SeqCst);
    });
    let (wrong, calls) = (wrong.load(SeqCst), calls.load(SeqCst));
    println!(
        "epoch run: {publishes} publishes, {calls} calls by {EPOCH_READERS} readers, {wrong} wrong"
    );
    assert_eq!(wrong, 0, "{wrong} calls ran stale code");
    assert!(
        calls >= EPOCH_READERS as u64,
        "the readers barely ran: {calls} calls"
    );
}

enum Role {
    Writer,
    Reader,
}

/// On a machine with at least two CPUs, gives the writer CPU 0 to itself and
/// puts the readers on the others. Under qemu-user every guest thread is a
/// host thread, and eight spinning readers otherwise starve the writer: a
/// rewrite of translated code stops every vCPU (QEMU's exclusive section),
/// which waits for descheduled readers, and one CI run took 25 times longer
/// than another. The affinity only changes scheduling, not what is checked;
/// the call itself (sched_setaffinity) happens before the first publish.
#[cfg(target_os = "linux")]
fn pin_to(role: Role) {
    // SAFETY: plain libc calls on a zeroed cpu_set_t of our own.
    unsafe {
        let cpus = libc::sysconf(libc::_SC_NPROCESSORS_ONLN);
        if cpus < 2 {
            return;
        }
        let mut set: libc::cpu_set_t = core::mem::zeroed();
        match role {
            Role::Writer => libc::CPU_SET(0, &mut set),
            Role::Reader => (1..cpus as usize).for_each(|c| libc::CPU_SET(c, &mut set)),
        }
        // Best effort: a refused affinity only makes the run slower.
        let _ = libc::sched_setaffinity(0, core::mem::size_of_val(&set), &set);
    }
}

#[cfg(not(target_os = "linux"))]
fn pin_to(_role: Role) {}
