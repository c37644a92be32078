//! Bad input gets a clear answer and touches nothing.

mod common;

use core::ffi::c_void;
use icache_coherence::clear_cache;
use std::io::ErrorKind;

#[test]
fn zero_length_with_null_is_ok() {
    unsafe { clear_cache(core::ptr::null(), 0) }.unwrap();
}

/// On AArch64 and POWER the maintenance instructions fault on unmapped
/// addresses, so reaching a backend with these pointers would crash the test.
#[test]
#[cfg(not(miri))]
fn zero_length_with_unmapped_pointer_touches_nothing() {
    let pages = common::CodePages::new(1);
    let gone = pages.page(0) as *const c_void;
    drop(pages); // unmapped now
    unsafe { clear_cache(gone, 0) }.unwrap();
    unsafe { clear_cache(usize::MAX as *const c_void, 0) }.unwrap();
    unsafe { clear_cache(core::ptr::dangling::<c_void>(), 0) }.unwrap();
}

#[test]
fn range_that_wraps_is_invalid_input_and_touches_nothing() {
    // The top of the address space is never mapped user memory: touching it
    // would fault, so a passing test also shows nothing was touched.
    for (start, len) in [
        (usize::MAX - 10, 100usize),
        (usize::MAX, 2),
        (2, usize::MAX),
    ] {
        let err = unsafe { clear_cache(start as *const c_void, len) }.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{start:#x}+{len}");
        let detail = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<icache_coherence::Error>());
        assert_eq!(detail.map(|d| d.call()), Some("clear_cache"));
        assert!(err.to_string().contains("wraps"), "{err}");
    }
}

#[test]
fn cache_info_describes_a_consistent_platform() {
    let info = icache_coherence::cache_info();
    assert!(!info.mechanism.is_empty());
    for line in [info.data_line, info.instruction_line]
        .into_iter()
        .flatten()
    {
        assert!(line.is_power_of_two() && line >= 4, "line size {line}");
    }
    let coherent = cfg!(any(
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "s390x"
    ));
    if coherent && !cfg!(windows) {
        assert!(!info.needs_clean && !info.needs_invalidate && !info.pipeline_flush_needed);
    }
    if cfg!(all(target_arch = "aarch64", not(miri))) {
        assert!(info.pipeline_flush_needed);
        // The qemu CPU model fixes the line sizes (PLATFORMS.md).
        let expect = match std::env::var("QEMU_CPU").as_deref() {
            Ok("cortex-a72") | Ok("cortex-a53") => Some(64),
            Ok("a64fx") => Some(256),
            Ok("max") => Some(32),
            _ => None,
        };
        if let Some(line) = expect {
            assert_eq!(info.data_line, Some(line));
            assert_eq!(info.instruction_line, Some(line));
        }
    }
}
