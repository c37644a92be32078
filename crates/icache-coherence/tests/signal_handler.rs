//! `clear_cache_core` and, once registered, `pipeline_flush_mt` may be
//! called from a signal handler: a JIT that patches code from a SIGSEGV or
//! SIGTRAP handler (lazy compilation, inline-cache misses) needs that.
//!
//! On the success path neither allocates, locks or prints: the AArch64
//! sequence is instructions and a relaxed atomic; the syscall backends make
//! one syscall; the registered pipeline flush is one membarrier.

#![cfg(all(unix, not(miri)))]

mod common;

use common::{return_n, CodePages};
use core::ffi::c_void;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering::SeqCst};

static CODE: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());
static LEN: AtomicUsize = AtomicUsize::new(0);
/// 0: handler not run; 1: both calls succeeded; 2: clear_cache_core failed;
/// 3: pipeline_flush_mt failed.
static OUTCOME: AtomicI32 = AtomicI32::new(0);

extern "C" fn handler(_signal: libc::c_int) {
    let code = CODE.load(SeqCst);
    let len = LEN.load(SeqCst);
    let outcome = if unsafe { icache_coherence::clear_cache_core(code, len) }.is_err() {
        2
    } else if icache_coherence::pipeline_flush_mt().is_err() {
        3
    } else {
        1
    };
    OUTCOME.store(outcome, SeqCst);
}

#[test]
fn code_made_coherent_inside_a_signal_handler_runs() {
    // Register the pipeline flush outside the handler (its first call may
    // block on the one-time registration, which a handler must not do).
    icache_coherence::pipeline_flush_mt().unwrap();

    let pages = CodePages::new(1);
    let code = return_n(4242);
    let f = pages.write(0, 0, &code);
    CODE.store(f as *mut c_void, SeqCst);
    LEN.store(code.len(), SeqCst);
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        action.sa_sigaction = handler as extern "C" fn(libc::c_int) as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR2, &action, core::ptr::null_mut()),
            0
        );
        assert_eq!(libc::raise(libc::SIGUSR2), 0);
    }
    assert_eq!(OUTCOME.load(SeqCst), 1, "the handler's calls must succeed");
    pages.executable(0);
    assert_eq!(pages.call(0, 0), 4242);
}
