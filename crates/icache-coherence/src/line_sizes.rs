//! Cache line sizes where the OS or the CPU reports them but the library
//! does not step by them itself (Apple, Windows, x86): the decoding, pure
//! and tested on any host. The backends make the calls.

/// The CLFLUSH line size from CPUID leaf 1: EBX\[15:8\] is "CLFLUSH line
/// size (value * 8 = cache line size in bytes)", valid when EDX\[19\]
/// (CLFSH) is set (Intel SDM vol. 2A, "CPUID", table "Feature Information
/// Returned in the EBX Register"; AMD APM vol. 3, "CPUID Fn0000_0001_EBX",
/// CLFlush). x86 keeps instruction fetch coherent, so this is the data
/// line, and the line instruction fetch is tracked by, on every x86 core
/// built so far (64 bytes).
#[cfg_attr(
    not(all(
        icache_backend = "coherent",
        any(target_arch = "x86", target_arch = "x86_64")
    )),
    allow(dead_code)
)]
pub(crate) fn clflush_line(leaf1_ebx: u32, leaf1_edx: u32) -> Option<usize> {
    const CLFSH: u32 = 1 << 19;
    let eight_bytes = (leaf1_ebx >> 8) & 0xff;
    if leaf1_edx & CLFSH == 0 || eight_bytes == 0 {
        return None;
    }
    Some(eight_bytes as usize * 8)
}

/// Windows' cache descriptors (`GetLogicalProcessorInformation`,
/// `CACHE_DESCRIPTOR { Level, LineSize, Type }`): the smallest level-1
/// data line (data or unified caches) and instruction line (instruction or
/// unified caches) over every core. `Type` is `PROCESSOR_CACHE_TYPE`:
/// CacheUnified = 0, CacheInstruction = 1, CacheData = 2, CacheTrace = 3
/// (Microsoft Learn, "CACHE_DESCRIPTOR structure").
#[cfg_attr(not(all(icache_backend = "windows", icache_std)), allow(dead_code))]
pub(crate) fn l1_lines(
    caches: impl Iterator<Item = (u8, i32, u16)>,
) -> (Option<usize>, Option<usize>) {
    const UNIFIED: i32 = 0;
    const INSTRUCTION: i32 = 1;
    const DATA: i32 = 2;
    let mut data: Option<usize> = None;
    let mut instruction: Option<usize> = None;
    let fold = |slot: &mut Option<usize>, line: usize| {
        *slot = Some(slot.map_or(line, |l| l.min(line)));
    };
    for (level, kind, line) in caches {
        if level != 1 || line == 0 {
            continue;
        }
        let line = usize::from(line);
        if kind == DATA || kind == UNIFIED {
            fold(&mut data, line);
        }
        if kind == INSTRUCTION || kind == UNIFIED {
            fold(&mut instruction, line);
        }
    }
    (data, instruction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clflush_line_is_eight_times_ebx_15_8_when_clfsh_is_set() {
        let clfsh = 1 << 19;
        assert_eq!(clflush_line(0x0010_0800, clfsh), Some(64));
        for v in 1..=255u32 {
            assert_eq!(clflush_line(v << 8 | 0xff, clfsh), Some(v as usize * 8));
        }
    }

    #[test]
    fn no_clflush_or_a_zero_field_gives_no_line() {
        assert_eq!(clflush_line(0x0000_0800, 0), None);
        assert_eq!(clflush_line(0xffff_00ff, 1 << 19), None);
    }

    #[test]
    fn windows_descriptors_give_the_smallest_level_1_lines() {
        let caches = [
            (1, 2, 64), // L1d, core 0
            (1, 1, 64), // L1i, core 0
            (1, 2, 32), // a little core's L1d
            (2, 0, 16), // L2 unified: not level 1
            (1, 3, 8),  // trace cache: neither
            (1, 1, 0),  // no size reported
        ];
        assert_eq!(l1_lines(caches.into_iter()), (Some(32), Some(64)));
    }

    #[test]
    fn a_unified_level_1_cache_counts_for_both() {
        assert_eq!(l1_lines([(1, 0, 128)].into_iter()), (Some(128), Some(128)));
        assert_eq!(l1_lines(core::iter::empty()), (None, None));
    }
}
