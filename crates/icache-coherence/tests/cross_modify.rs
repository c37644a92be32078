//! Cross-modifying code: a branch that other threads are executing right now
//! is retargeted, then `cross_modify_flush_mt` makes every thread serialize.
//!
//! The patch is one aligned 32-bit store of an instruction (AArch64: a `B`,
//! one of the instructions the Arm ARM allows to be modified concurrently)
//! or of a `jmp rel32` displacement (x86). After `cross_modify_flush_mt`
//! returns, every reader must see the new target.
//!
//! Two variants:
//! - x86 (the case the function exists for, Intel SDM 8.1.3): readers keep
//!   executing the branch while it is patched. Under qemu-user this passes
//!   whatever the library does, because QEMU handles self-modifying code
//!   itself; it is meaningful on real hardware only.
//! - every architecture: readers spin (without syscalls, which would
//!   synchronize them by themselves) *outside* the patched code while it is
//!   rewritten, and resume after `cross_modify_flush_mt`. Under icache-check
//!   a missing invalidation or context synchronization of the readers' vCPUs
//!   is reported. icache-check's model does not include the Arm ARM's
//!   exception for concurrently modified `B`/`NOP`/... instructions, so the
//!   fully concurrent variant would be reported there even when correct; it
//!   is therefore not run on AArch64.

#![cfg(all(
    not(miri),
    any(target_arch = "x86_64", target_arch = "x86", target_arch = "aarch64")
))]

mod common;

use common::{return_n, CodePages};
use icache_coherence::{clear_cache, cross_modify_flush_mt};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::SeqCst};

const STUBS: usize = 12;
const STUB_AT: usize = 0x40;
const STUB_SIZE: usize = 0x40;

/// The 32-bit word at `site_word()` that sends the call to stub `k`.
fn branch_to(k: usize) -> u32 {
    let target = STUB_AT + k * STUB_SIZE;
    #[cfg(target_arch = "aarch64")]
    {
        // b <target>, at offset 0
        0x1400_0000 | (target / 4) as u32
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        // rel32 of the `jmp` at offset 3, relative to its end at offset 8
        (target - 8) as u32
    }
}

/// The offset of the patched word, and the code around it.
fn site() -> (usize, Vec<u8>) {
    #[cfg(target_arch = "aarch64")]
    {
        (0, branch_to(0).to_le_bytes().to_vec())
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        let mut c = vec![0x90, 0x90, 0x90, 0xe9]; // nop; nop; nop; jmp rel32
        c.extend_from_slice(&branch_to(0).to_le_bytes());
        (4, c)
    }
}

/// Writes the entry (branching to stub 0) and the stubs, makes them
/// coherent, and returns the word to patch; the page stays RWX.
fn patchable(pages: &CodePages) -> &AtomicU32 {
    let (word_at, entry) = site();
    let entry_ptr = pages.write(0, 0, &entry);
    for k in 0..STUBS {
        pages.write(0, STUB_AT + k * STUB_SIZE, &return_n(k as u32 + 1));
    }
    unsafe { clear_cache(entry_ptr, STUB_AT + STUBS * STUB_SIZE) }.unwrap();
    pages.writable_and_executable(0);
    cross_modify_flush_mt().unwrap();
    unsafe { &*(pages.page(0).add(word_at) as *const AtomicU32) }
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
fn threads_inside_patched_code_see_the_new_branch_after_the_flush() {
    let pages = CodePages::new(1);
    let word = patchable(&pages);

    let published = AtomicUsize::new(0); // the stub every reader must reach by now
    let stop = AtomicBool::new(false);
    let stale = AtomicBool::new(false);
    let calls = AtomicU32::new(0);

    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(SeqCst) {
                    let at_least = published.load(SeqCst) as u32 + 1;
                    let got = pages.call(0, 0);
                    if got < at_least {
                        eprintln!("ran stub {got} after stub {at_least} was published");
                        stale.store(true, SeqCst);
                    }
                    calls.fetch_add(1, SeqCst);
                }
            });
        }
        for k in 1..STUBS {
            // Let the readers run the current target for a while.
            let c = calls.load(SeqCst);
            while calls.load(SeqCst) < c + 50 && !stale.load(SeqCst) {
                std::thread::yield_now();
            }
            word.store(branch_to(k), SeqCst);
            unsafe { clear_cache(word as *const AtomicU32 as *const _, 4) }.unwrap();
            cross_modify_flush_mt().unwrap();
            published.store(k, SeqCst);
        }
        stop.store(true, SeqCst);
    });
    assert!(
        !stale.load(SeqCst),
        "a thread ran the old branch after the flush"
    );
    assert_eq!(pages.call(0, 0), STUBS as u32);
}

#[test]
fn paused_threads_see_the_new_branch_after_the_flush() {
    let pages = CodePages::new(1);
    let word = patchable(&pages);

    const READERS: usize = 3;
    let round = AtomicUsize::new(0); // readers run round k once it is published
    let done_reading = AtomicUsize::new(0);
    let stale = AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..READERS {
            s.spawn(|| {
                for k in 0..STUBS {
                    while round.load(SeqCst) < k {
                        std::hint::spin_loop(); // no syscall: no free context sync
                    }
                    for _ in 0..10 {
                        let got = pages.call(0, 0);
                        if got != k as u32 + 1 {
                            eprintln!("round {k}: ran stub {got}");
                            stale.store(true, SeqCst);
                        }
                    }
                    done_reading.fetch_add(1, SeqCst);
                }
            });
        }
        for k in 1..STUBS {
            while done_reading.load(SeqCst) < k * READERS {
                std::hint::spin_loop();
            }
            word.store(branch_to(k), SeqCst);
            unsafe { clear_cache(word as *const AtomicU32 as *const _, 4) }.unwrap();
            cross_modify_flush_mt().unwrap();
            round.store(k, SeqCst);
        }
    });
    assert!(
        !stale.load(SeqCst),
        "a thread ran the old branch after the flush"
    );
}
