//! `cache_info` reports line sizes where the platform knows them, also
//! where the library steps by none itself: x86 (CPUID leaf 1, CLFLUSH line
//! size) and Windows (`GetLogicalProcessorInformation`). Apple's
//! `hw.cachelinesize` is type-checked only (no Apple hardware here).

#![cfg(all(
    not(miri),
    any(
        target_arch = "x86",
        target_arch = "x86_64",
        windows,
        target_vendor = "apple"
    )
))]

use icache_coherence::cache_info;

#[test]
fn the_reported_line_sizes_are_real_line_sizes() {
    let info = cache_info();
    for line in [info.data_line, info.instruction_line] {
        let line = line.unwrap_or_else(|| panic!("no line size reported: {info:?}"));
        assert!(
            line.is_power_of_two() && (16..=512).contains(&line),
            "{info:?}"
        );
    }
}
