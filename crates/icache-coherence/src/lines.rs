//! Which cache lines overlap a byte range: pure arithmetic, tested on any host.
//!
//! The user-mode maintenance instructions (`dc cvau`, `ic ivau`, `dcbst`,
//! `icbi`) fault on unmapped addresses, so the loops must touch exactly the
//! lines that overlap the caller's range: the line holding the first byte,
//! the line holding the last byte, and those between. Nothing else, and no
//! address computation that can overflow at the top of the address space.

use crate::error::Error;

/// The last byte of `[start, start + len)`, or `None` for an empty range.
///
/// A range that wraps past the end of the address space is refused. This is
/// the only validation the library can do on a range; it runs before any
/// backend touches memory.
#[inline(always)]
pub(crate) fn last_byte(start: usize, len: usize) -> Result<Option<usize>, Error> {
    if len == 0 {
        return Ok(None);
    }
    match last_byte_up_to(start, len, usize::MAX) {
        Some(last) => Ok(Some(last)),
        None => Err(Error::wrapping_range()),
    }
}

/// The fast path's range check: the last byte of `[start, start + len)` if
/// the range is non-empty, at most `max_len` bytes long and does not wrap;
/// `None` otherwise (the slow path then sorts out which).
///
/// One subtract gives `len - 1`, which is both the size test (an empty
/// range wraps to `usize::MAX`, above any `max_len - 1`) and the addend
/// whose carry is exactly the wrap test: AArch64 `sub`, `cmp`, `b.hs`,
/// `adds`, `b.hs`, with the last byte left in a register for the loops.
#[inline(always)]
pub(crate) fn last_byte_up_to(start: usize, len: usize, max_len: usize) -> Option<usize> {
    let len_minus_1 = len.wrapping_sub(1);
    if len_minus_1 >= max_len {
        return None;
    }
    match start.overflowing_add(len_minus_1) {
        (last, false) => Some(last),
        (_, true) => None,
    }
}

/// Whether `[start, start + len)` wraps past the end of the address space,
/// for any `len` (0 never wraps): [`last_byte`]'s refusal, for backends
/// that never look at the range. The sum may carry out of the word only
/// when it lands exactly on 0 (a range ending at the top of the address
/// space).
///
/// Written so that LLVM keeps the common case to one add and one branch on
/// its carry (x86-64: `add`, `jb`; AArch64: `adds`, `b.hs`) and tests for 0
/// only after a carry; `overflowing_add(len)` with `carried && end != 0`
/// compiles to five instructions without a branch on x86-64.
#[inline(always)]
pub(crate) fn wraps(start: usize, len: usize) -> bool {
    start.checked_add(len).is_none() && start.wrapping_add(len) != 0
}

/// Calls `f` with each line that overlaps `[start, last]`, for a line mask
/// `mask = !(size - 1)`: the first line is `start & mask`, and the walk goes
/// on while the next line starts at or before `last`. One `and` to set up,
/// and `sub`, `cmp`, `b.ls` per line on AArch64, with the mask in one
/// register serving both (`addr - mask == addr + size`).
///
/// Precondition: the line holding `last` is not the top line of the address
/// space (`last & mask` != `mask`), or the next address would wrap to 0 and
/// the walk would not stop. The fast path that uses it runs in Linux user
/// space, whose mapped addresses lie far below the top (TTBR0, at most 52
/// bits, plus a tag in the top byte); everything else uses [`Lines`].
#[cfg(any(test, all(icache_ctr_el0, linux_kernel)))]
#[inline(always)]
pub(crate) fn walk_to_last_byte(start: usize, last: usize, mask: usize, mut f: impl FnMut(usize)) {
    debug_assert!(start <= last && last & mask != mask);
    let mut addr = start & mask;
    loop {
        f(addr);
        addr = addr.wrapping_sub(mask);
        if addr > last {
            break;
        }
    }
}

/// The lines of `size` bytes (a power of two) that overlap `[start, last]`.
#[cfg(any(test, icache_line_loops))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lines {
    /// Address of the first overlapping line (aligned down).
    pub(crate) first: usize,
    /// Address of the last overlapping line (aligned down).
    pub(crate) last: usize,
    /// The line size in bytes.
    pub(crate) size: usize,
}

// Only the backends that step through lines themselves (AArch64, POWER)
// have them outside the tests: `icache_line_loops` from build.rs.
#[cfg(any(test, icache_line_loops))]
impl Lines {
    /// The lines covering the inclusive byte range `[start, last_byte]`.
    #[inline(always)]
    pub(crate) fn covering(start: usize, last_byte: usize, size: usize) -> Lines {
        debug_assert!(size.is_power_of_two());
        debug_assert!(start <= last_byte);
        let mask = !(size - 1);
        Lines {
            first: start & mask,
            last: last_byte & mask,
            size,
        }
    }

    /// Calls `f` with the address of each line, in ascending order.
    ///
    /// The loop compares against the last line's address instead of an end
    /// address, so it never computes an address past the final line and
    /// cannot overflow even when the range ends at `usize::MAX`. It is the
    /// plain loop on purpose: unrolling it by two saved 1 instruction per
    /// line but cost 21 in every call (BENCHMARKS.md), and on real cores the
    /// `dc`/`ic` themselves dwarf the loop overhead while the fixed cost is
    /// paid by every small patch.
    #[inline(always)]
    pub(crate) fn for_each(self, mut f: impl FnMut(usize)) {
        let mut addr = self.first;
        loop {
            f(addr);
            if addr == self.last {
                break;
            }
            addr += self.size;
        }
    }

    /// [`Lines::for_each`] for long ranges: 32 lines per loop iteration,
    /// and the remainder first, in straight-line blocks of 16, 8, 4, 2 and 1
    /// lines. `dc`/`ic` take a bare register (no offset, no write-back), so
    /// every line costs its instruction and one address computation; the
    /// plain loop adds a compare and a branch per line, this one per 32
    /// lines (AArch64: 2.06 instead of 4 instructions per line and kind).
    /// The remainder costs at most 31 lines' worth plus five tests, never a
    /// plain loop's 4 per line.
    #[cfg(any(test, icache_ctr_el0))]
    #[inline(always)]
    pub(crate) fn for_each_unrolled(self, mut f: impl FnMut(usize)) {
        let count = ((self.last - self.first) >> self.size.trailing_zeros()) + 1;
        let mut addr = self.first;
        // `wrapping_add`: the address after the range's last line is never
        // used, and may be 0 when that line is the top of the address space.
        let mut block = |lines: usize| {
            for _ in 0..lines {
                f(addr);
                addr = addr.wrapping_add(self.size);
            }
        };
        for bit in [1, 2, 4, 8, 16] {
            if count & bit != 0 {
                block(bit);
            }
        }
        for _ in 0..count / 32 {
            block(32);
        }
    }

    /// How many lines there are.
    #[cfg(test)]
    pub(crate) fn count(self) -> usize {
        // `size` is a power of two: shift instead of dividing.
        ((self.last - self.first) >> self.size.trailing_zeros()) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A way to visit lines: one of the walks under test.
    type Walk<'a> = dyn Fn(&mut dyn FnMut(usize)) + 'a;

    /// Visits the lines for `[start, start + len)` and checks the contract:
    /// every byte is inside a visited line, every visited line overlaps the
    /// range, lines are visited once each in ascending order.
    fn check(start: usize, len: usize, size: usize) {
        check_walks(start, len, size, true);
    }

    /// [`check`], comparing the other two walks with the plain one only if
    /// `all_walks` (the exhaustive test, 33 million cases, checks the plain
    /// walk alone: under emulation three walks cost minutes of CI).
    fn check_walks(start: usize, len: usize, size: usize, all_walks: bool) {
        let last = match last_byte(start, len) {
            Ok(Some(last)) => {
                assert_eq!(Some(last), start.checked_add(len - 1));
                last
            }
            Ok(None) => {
                assert_eq!(len, 0);
                return;
            }
            Err(_) => {
                assert!(start.checked_add(len - 1).is_none());
                return;
            }
        };
        let lines = Lines::covering(start, last, size);
        let mut visited = 0usize;
        let mut prev: Option<usize> = None;
        let mut covered_to: Option<usize> = None; // last byte covered so far
        lines.for_each(|line| {
            visited += 1;
            assert_eq!(line % size, 0, "line {line:#x} is not aligned to {size}");
            let line_last = line + (size - 1);
            assert!(
                line <= last && line_last >= start,
                "line {line:#x} of {size} lies outside [{start:#x}, {last:#x}]"
            );
            match prev {
                None => assert!(line <= start, "first line {line:#x} misses {start:#x}"),
                Some(p) => assert_eq!(line, p + size, "lines are not consecutive"),
            }
            prev = Some(line);
            covered_to = Some(line_last);
        });
        assert!(
            covered_to.unwrap() >= last,
            "last byte {last:#x} not covered"
        );
        assert_eq!(visited, lines.count());
        // The other two walks visit exactly the same lines in the same
        // order: the first line, then one line further each time. Checked
        // without collecting, and only up to a few rounds of the unrolled
        // loop (which longer ranges only repeat), so that the exhaustive
        // and random tests stay cheap under emulation and the checker.
        if !all_walks || visited > 8 * 32 {
            return;
        }
        let expect_walk = |walk: &Walk, what: &str| {
            let mut k = 0usize;
            walk(&mut |line| {
                assert_eq!(
                    line,
                    lines.first.wrapping_add(k * size),
                    "{what}: line {k} of [{start:#x}, {last:#x}] by {size}"
                );
                k += 1;
            });
            assert_eq!(k, visited, "{what}: [{start:#x}, {last:#x}] by {size}");
        };
        expect_walk(&|f| lines.for_each_unrolled(f), "unrolled walk");
        let mask = !(size - 1);
        if last & mask != mask {
            expect_walk(
                &|f| walk_to_last_byte(start, last, mask, f),
                "walk to the last byte",
            );
        }
    }

    #[test]
    fn the_unrolled_walk_visits_every_count_of_lines_once() {
        // Every remainder block (1, 2, 4, 8, 16) alone and combined, and
        // zero to three full rounds of 32.
        for size in [4usize, 64, 256] {
            for lines in 1..=4 * 32 + 31 {
                check(0x10_0000 + size / 2, (lines - 1) * size + 1, size);
            }
        }
    }

    fn line_sizes() -> impl Iterator<Item = usize> {
        // 4 bytes (CTR_EL0 field 0) up to 2048 (the largest the field can
        // encode sensibly, well above A64FX's 256).
        (2..=11).map(|log| 1usize << log)
    }

    /// Every start offset in `0..2*line` and length in `0..3*line`, at a
    /// page-aligned base and at the very top of the address space.
    #[test]
    #[cfg_attr(miri, ignore = "33 million cases; the arithmetic has no unsafe code")]
    fn every_byte_is_covered_and_no_outside_line_is_touched() {
        for size in line_sizes() {
            for base in [0x1000_0000usize, usize::MAX - 4 * size + 1] {
                for off in 0..2 * size {
                    for len in 0..3 * size {
                        check_walks(base.wrapping_add(off), len, size, false);
                    }
                }
            }
        }
    }

    /// A reduced version that Miri can afford.
    #[test]
    fn small_line_sizes_are_covered_exactly() {
        for size in [4usize, 16, 64] {
            for off in 0..2 * size {
                for len in 0..3 * size {
                    check(0x4000 + off, len, size);
                }
            }
        }
    }

    /// A small deterministic generator (SplitMix64), so the property test
    /// needs no dependency and every failure is reproducible from its seed.
    struct SplitMix(u64);
    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Property: for random starts, lengths and line sizes, including ranges
    /// at the very top of the address space, the visited lines cover every
    /// byte, nothing outside the first and last overlapping line is visited,
    /// and nothing overflows (a panic in debug builds). `check` asserts the
    /// first two; lengths up to 64 KiB keep the visits per case bounded.
    #[test]
    fn random_ranges_are_covered_exactly_and_never_overflow() {
        let cases = if cfg!(miri) { 200 } else { 200_000 };
        let mut rng = SplitMix(0x1cac_4e5e_ed00_0001);
        for case in 0..cases {
            let size = 1usize << (2 + rng.below(10)); // 4 ..= 2048
            let len = match rng.below(4) {
                0 => rng.below(4) as usize,
                1 => rng.below(3 * size as u64) as usize,
                _ => rng.below(1 << 16) as usize,
            };
            let start = match rng.below(4) {
                // near the top: the last byte may be usize::MAX, or wrap
                0 => usize::MAX - rng.below(1 << 17) as usize,
                1 => rng.below(1 << 17) as usize,
                _ => rng.next() as usize,
            };
            let outcome = std::panic::catch_unwind(|| check(start, len, size));
            assert!(
                outcome.is_ok(),
                "case {case}: start {start:#x}, len {len}, line {size}"
            );
        }
    }

    #[test]
    fn the_carry_check_agrees_with_checked_arithmetic_on_every_boundary() {
        let edges = |x: usize| {
            [0usize, 1, 2, 63, 64, 65, 4096]
                .into_iter()
                .flat_map(move |d| [x.wrapping_add(d), x.wrapping_sub(d)])
        };
        let mut cases = 0;
        for start in edges(0)
            .chain(edges(usize::MAX))
            .chain(edges(usize::MAX / 2 + 1))
        {
            assert!(!wraps(start, 0));
            for len in edges(0)
                .chain(edges(usize::MAX))
                .chain(edges(usize::MAX / 2 + 1))
                .chain(edges(start.wrapping_neg()))
            {
                if len == 0 {
                    continue;
                }
                cases += 1;
                // The reference: the last byte in checked arithmetic.
                let reference = start.checked_add(len - 1);
                assert_eq!(wraps(start, len), reference.is_none());
                assert_eq!(
                    last_byte_up_to(start, len, usize::MAX),
                    reference,
                    "start {start:#x}, len {len:#x}"
                );
                assert_eq!(last_byte(start, len).ok().flatten(), reference);
                assert_eq!(last_byte(start, len).is_err(), reference.is_none());
            }
        }
        assert!(cases > 1000, "only {cases} cases");
    }

    #[test]
    fn the_fast_range_check_agrees_with_checked_arithmetic_on_every_boundary() {
        let edges = |x: usize| {
            [0usize, 1, 2, 63, 64, 65, 4095, 4096, 4097]
                .into_iter()
                .flat_map(move |d| [x.wrapping_add(d), x.wrapping_sub(d)])
        };
        let mut cases = 0;
        for max_len in [1usize, 64, 4096, usize::MAX] {
            for start in edges(0)
                .chain(edges(usize::MAX))
                .chain(edges(usize::MAX / 2 + 1))
            {
                for len in edges(0)
                    .chain(edges(usize::MAX))
                    .chain(edges(start.wrapping_neg()))
                    .chain(edges(max_len))
                {
                    cases += 1;
                    let reference = match len {
                        0 => None,
                        _ if len > max_len => None,
                        _ => start.checked_add(len - 1),
                    };
                    assert_eq!(
                        last_byte_up_to(start, len, max_len),
                        reference,
                        "start {start:#x}, len {len:#x}, max {max_len:#x}"
                    );
                }
            }
        }
        assert!(cases > 4000, "only {cases} cases");
    }

    #[test]
    fn zero_length_touches_nothing() {
        assert_eq!(last_byte(0, 0), Ok(None));
        assert_eq!(last_byte(usize::MAX, 0), Ok(None));
    }

    #[test]
    fn range_ending_at_the_top_of_the_address_space_is_accepted() {
        assert_eq!(last_byte(usize::MAX, 1), Ok(Some(usize::MAX)));
        let lines = Lines::covering(usize::MAX - 100, usize::MAX, 64);
        assert_eq!(lines.last, usize::MAX & !63);
        assert_eq!(lines.count(), 2);
        check(usize::MAX - 100, 101, 64);
    }

    #[test]
    fn range_that_wraps_is_refused() {
        assert!(last_byte(usize::MAX, 2).is_err());
        assert!(last_byte(usize::MAX - 10, 100).is_err());
        assert!(last_byte(2, usize::MAX).is_err());
        assert_eq!(last_byte(1, usize::MAX), Ok(Some(usize::MAX)));
    }

    #[test]
    fn unaligned_range_spanning_two_lines_visits_both() {
        let lines = Lines::covering(0x1038, 0x1038 + 15, 64);
        let mut seen = [0usize; 4];
        let mut n = 0;
        lines.for_each(|a| {
            seen[n] = a;
            n += 1;
        });
        assert_eq!(&seen[..n], &[0x1000, 0x1040]);
    }
}
