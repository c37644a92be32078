//! Decoding of the AArch64 Cache Type Register, CTR_EL0: pure, tested on any host.
//!
//! Field layout from the Arm ARM (DDI 0487, D23.2 "CTR_EL0, Cache Type Register"):
//! IminLine = bits \[3:0\] and DminLine = bits \[19:16\], each the log2 of the
//! line size in 4-byte words; IDC = bit 28 (data clean to PoU not required for
//! instruction-to-data coherence); DIC = bit 29 (instruction invalidation to
//! PoU not required). Bit 31 is RES1, so a real value is never 0.

/// A CTR_EL0 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CtrEl0(pub(crate) u64);

const IMINLINE_SHIFT: u32 = 0;
const DMINLINE_SHIFT: u32 = 16;
const FIELD_MASK: u64 = 0xf;
const IDC_BIT: u64 = 1 << 28;
const DIC_BIT: u64 = 1 << 29;
/// RES1: a real value is never 0, so 0 can mean "not read yet".
const RES1_BIT: u64 = 1 << 31;
/// The fields the library uses, and RES1. Everything else (L1Ip, ERG, CWG,
/// TminLine) is ignored: Linux does not even sanitise L1Ip (`ftr_ctr` marks
/// it `FTR_NONSTRICT`), so a Cortex-A53 (`0x84448004`) and a Cortex-A72
/// (`0x8444c004`) in one system read different raw values with the same
/// line sizes.
const USED: u64 =
    FIELD_MASK << IMINLINE_SHIFT | FIELD_MASK << DMINLINE_SHIFT | IDC_BIT | DIC_BIT | RES1_BIT;

impl CtrEl0 {
    /// Smallest data (or unified) cache line size, in bytes.
    #[inline(always)]
    pub(crate) fn dline(self) -> usize {
        4 << ((self.0 >> DMINLINE_SHIFT) & FIELD_MASK)
    }

    /// Smallest instruction cache line size, in bytes.
    #[inline(always)]
    pub(crate) fn iline(self) -> usize {
        4 << ((self.0 >> IMINLINE_SHIFT) & FIELD_MASK)
    }

    /// IDC: cleaning the data cache is not needed for coherence with fetch.
    #[inline(always)]
    pub(crate) fn idc(self) -> bool {
        self.0 & IDC_BIT != 0
    }

    /// DIC: invalidating the instruction cache is not needed.
    #[inline(always)]
    pub(crate) fn dic(self) -> bool {
        self.0 & DIC_BIT != 0
    }

    /// Only the fields the library uses (line sizes, IDC, DIC, RES1).
    #[inline(always)]
    pub(crate) fn used(self) -> CtrEl0 {
        CtrEl0(self.0 & USED)
    }

    /// The value that is safe for both `self` and `other`, of the used
    /// fields only: the smaller line size of each kind, and IDC/DIC only
    /// when both have them. `x.merge(x) == x.used()`.
    pub(crate) fn merge(self, other: CtrEl0) -> CtrEl0 {
        let field = |v: u64, shift: u32| (v >> shift) & FIELD_MASK;
        let imin = field(self.0, IMINLINE_SHIFT).min(field(other.0, IMINLINE_SHIFT));
        let dmin = field(self.0, DMINLINE_SHIFT).min(field(other.0, DMINLINE_SHIFT));
        let both = self.0 & other.0 & (IDC_BIT | DIC_BIT);
        CtrEl0(RES1_BIT | both | imin << IMINLINE_SHIFT | dmin << DMINLINE_SHIFT)
    }
}

/// The line sizes and flags every thread steps by where the kernel makes
/// every core read the same CTR_EL0, read once per process.
///
/// On big.LITTLE systems the line sizes can differ between cores (Samsung
/// Exynos 8890: 128-byte and 64-byte I-lines). Caching one core's value and
/// later flushing on another core skips lines, which caused random SIGILL in
/// Mono, Dolphin and PPSSPP. Linux has prevented that since 4.10: as soon as
/// any core's CTR_EL0 differs from the boot core's in a strict field, it
/// traps EL0 reads on every core and returns the safe system-wide value
/// (v4.10 arch/arm64/kernel/cpu_errata.c: `has_mismatched_cache_line_size`
/// compares `read_cpuid_cachetype() & strict_mask` with the sanitised value,
/// `cpu_enable_trap_ctr_access` clears SCTLR_EL1.UCT; later named
/// `ARM64_MISMATCHED_CACHE_TYPE`). Every field of `ftr_ctr` is strict there
/// but L1Ip, IDC and DIC included (in 4.10 as the strict RES0 bits 28-30,
/// whose safe value is 0), and a CPU brought online later that would need
/// the trap without having it is refused. So on such a kernel every read
/// returns the same used fields, and one read serves the whole process: no
/// `mrs` per call, which matters where every read traps (Neoverse-N1
/// erratum 1542419, e.g. AWS Graviton2) — see [`kernel_sanitises`].
///
/// Two words, loaded together (one `ldp`), each either the line mask
/// `!(size - 1)` (which is also `size.wrapping_neg()`, so one register both
/// aligns an address down with `and` and steps with `sub`) or [`SKIP`]
/// where CTR_EL0.IDC / DIC make that half unnecessary. The data word is 0
/// until the value is settled; the instruction word starts at the mask of
/// 4-byte lines, the smallest CTR_EL0 can describe, so that a thread that
/// sees the data word settled but not yet the instruction word still
/// steps correctly (only more finely).
#[cfg(any(test, linux_kernel))]
#[repr(C)]
pub(crate) struct Steps {
    data: core::sync::atomic::AtomicUsize,
    instruction: core::sync::atomic::AtomicUsize,
    /// The used fields of the settled value, for the out-of-line paths and
    /// `cache_info` (0 until settled; stored before either word).
    ctr: core::sync::atomic::AtomicU64,
}

/// A half of the maintenance that CTR_EL0.IDC / DIC make unnecessary. Masks
/// of real line sizes (at least 4 bytes) have their low two bits clear.
#[cfg(any(test, linux_kernel))]
pub(crate) const SKIP: usize = 1;

/// The mask of the smallest line CTR_EL0 can describe (4 bytes).
#[cfg(any(test, linux_kernel))]
const FINEST: usize = !3;

#[cfg(any(test, linux_kernel))]
impl Steps {
    /// Nothing settled yet: the fast path declines every call.
    pub(crate) const fn new() -> Self {
        Steps {
            data: core::sync::atomic::AtomicUsize::new(0),
            instruction: core::sync::atomic::AtomicUsize::new(FINEST),
            ctr: core::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The settled value, or `None` until [`Steps::settle`].
    #[inline(always)]
    pub(crate) fn ctr(&self) -> Option<CtrEl0> {
        match self.ctr.load(core::sync::atomic::Ordering::Relaxed) {
            0 => None,
            used => Some(CtrEl0(used)),
        }
    }

    /// The data and instruction words, or `None` until [`Steps::settle`].
    /// (64-bit AArch64 loads both with one `ldp` instead, in
    /// `backends/aarch64.rs`.)
    #[cfg(any(test, not(target_pointer_width = "64")))]
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<(usize, usize)> {
        use core::sync::atomic::Ordering::Relaxed;
        let (d, i) = (self.data.load(Relaxed), self.instruction.load(Relaxed));
        (d != 0).then_some((d, i))
    }

    /// Keeps `ctr`, which the kernel sanitised, for every later call. Racing
    /// first callers compute the same words; a word that already holds its
    /// value is not written again. The instruction word is stored first
    /// (see the type's docs).
    pub(crate) fn settle(&self, ctr: CtrEl0) -> CtrEl0 {
        use core::sync::atomic::Ordering::Relaxed;
        let used = ctr.used();
        if self.ctr.load(Relaxed) != used.0 {
            self.ctr.store(used.0, Relaxed);
        }
        let (d, i) = Self::words(used);
        for (word, value) in [(&self.instruction, i), (&self.data, d)] {
            if word.load(Relaxed) != value {
                word.store(value, Relaxed);
            }
        }
        used
    }

    /// The two words for `ctr`.
    pub(crate) fn words(ctr: CtrEl0) -> (usize, usize) {
        let word = |skip: bool, line: usize| if skip { SKIP } else { line.wrapping_neg() };
        (word(ctr.idc(), ctr.dline()), word(ctr.dic(), ctr.iline()))
    }
}

/// Whether a Linux kernel whose `uname` release is `release` (e.g.
/// `b"6.1.0-18-arm64"`) traps and sanitises mismatched CTR_EL0 values, so
/// that [`Steps`] may read it once: 4.10 and later (see [`Steps`]). A
/// release that does not start with `MAJOR.MINOR` is treated as an old
/// kernel: the running minimum is always safe.
#[cfg(any(test, linux_kernel))]
pub(crate) fn kernel_sanitises(release: &[u8]) -> bool {
    let mut parts = release.split(|&b| b == b'.');
    let mut number = || -> Option<u32> {
        let digits = parts.next()?;
        let digits = &digits[..digits.iter().take_while(|b| b.is_ascii_digit()).count()];
        if digits.is_empty() || digits.len() > 6 {
            return None;
        }
        Some(digits.iter().fold(0, |n, &b| n * 10 + u32::from(b - b'0')))
    };
    match (number(), number()) {
        (Some(major), Some(minor)) => (major, minor) >= (4, 10),
        _ => false,
    }
}

/// A running minimum over every CTR_EL0 value seen by any core, where the
/// kernel does not sanitise (Linux before 4.10, the BSDs, bare metal).
///
/// Dolphin's policy: read CTR_EL0 on every call and fold it into the
/// smallest value seen so far, so a core with small lines lowers the step
/// for every later call on every core. Only the used fields are folded and
/// compared, and the shared word is written only when the minimum really
/// changes: cores that differ in L1Ip alone (a Cortex-A53 and a Cortex-A72
/// read `0x84448004` and `0x8444c004`) never write it. The residual risk is
/// the first call made before a small-line core has ever run this code.
pub(crate) struct RunningMin {
    word: core::sync::atomic::AtomicU64,
    /// Successful writes of `word`, for the tests of the policy.
    #[cfg(test)]
    writes: core::sync::atomic::AtomicUsize,
}

impl RunningMin {
    /// Nothing read yet (0 is never a real CTR_EL0 value: bit 31 is RES1).
    pub(crate) const fn new() -> Self {
        RunningMin {
            word: core::sync::atomic::AtomicU64::new(0),
            #[cfg(test)]
            writes: core::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The fast path: whether `raw`'s used fields are the minimum already,
    /// so that `raw` can be stepped by as it is.
    #[inline(always)]
    #[cfg(any(test, not(linux_kernel)))]
    pub(crate) fn is_current(&self, raw: u64) -> bool {
        self.word.load(core::sync::atomic::Ordering::Relaxed) == raw & USED
    }

    /// Folds `raw` into the minimum and returns the value to use now.
    #[inline(always)]
    pub(crate) fn update(&self, raw: u64) -> CtrEl0 {
        use core::sync::atomic::Ordering::Relaxed;
        let seen = self.word.load(Relaxed);
        // Homogeneous systems always read the same used fields: one load
        // and one compare.
        if seen == raw & USED {
            return CtrEl0(seen);
        }
        self.update_slow(raw, seen)
    }

    #[cold]
    #[inline(never)]
    fn update_slow(&self, raw: u64, mut seen: u64) -> CtrEl0 {
        use core::sync::atomic::Ordering::Relaxed;
        loop {
            let merged = if seen == 0 {
                CtrEl0(raw).used().0
            } else {
                CtrEl0(seen).merge(CtrEl0(raw)).0
            };
            if merged == seen {
                return CtrEl0(seen);
            }
            // Relaxed is enough: the value is only ever lowered, and any
            // value a thread observes is safe for the cores seen so far.
            match self
                .word
                .compare_exchange_weak(seen, merged, Relaxed, Relaxed)
            {
                Ok(_) => {
                    #[cfg(test)]
                    self.writes.fetch_add(1, Relaxed);
                    return CtrEl0(merged);
                }
                Err(now) => seen = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (core, CTR_EL0, D-line, I-line, IDC, DIC), from ../shared/PLATFORMS.md.
    const REAL_VALUES: &[(&str, u64, usize, usize, bool, bool)] = &[
        ("Cortex-A72", 0x8444_c004, 64, 64, false, false),
        ("Cortex-A53", 0x8444_8004, 64, 64, false, false),
        ("A64FX", 0x8666_8006, 256, 256, false, false),
        ("QEMU -cpu max", 0x8003_8003, 32, 32, false, false),
        ("Neoverse-N1", 0xb444_c004, 64, 64, true, true),
        ("Cortex-A55", 0x9444_8004, 64, 64, true, false),
        (
            "N1 with erratum 1542419 (4K pages)",
            0x9444_c00a,
            64,
            4096,
            true,
            false,
        ),
    ];

    #[test]
    fn real_ctr_el0_values_decode_to_their_line_sizes_and_flags() {
        for &(core, raw, d, i, idc, dic) in REAL_VALUES {
            let c = CtrEl0(raw);
            assert_eq!(c.dline(), d, "{core}: DminLine");
            assert_eq!(c.iline(), i, "{core}: IminLine");
            assert_eq!(c.idc(), idc, "{core}: IDC");
            assert_eq!(c.dic(), dic, "{core}: DIC");
        }
    }

    #[test]
    fn merging_a_value_with_itself_keeps_its_used_fields() {
        for &(core, raw, d, i, idc, dic) in REAL_VALUES {
            let m = CtrEl0(raw).merge(CtrEl0(raw));
            assert_eq!(m, CtrEl0(raw).used(), "{core}");
            assert_eq!(
                (m.dline(), m.iline(), m.idc(), m.dic()),
                (d, i, idc, dic),
                "{core}"
            );
        }
    }

    #[test]
    fn alternating_cores_write_the_shared_word_once_per_distinct_value() {
        let pairs = [
            ("cortex-a53/cortex-a72", 0x8444_8004u64, 0x8444_c004u64, 1),
            ("64-byte/32-byte lines", 0x8444_c004, 0x8003_8003, 2),
        ];
        for (name, a, b, most) in pairs {
            let min = RunningMin::new();
            const CALLS: usize = 10_000;
            for k in 0..CALLS {
                min.update(if k % 2 == 0 { a } else { b });
            }
            let writes = min.writes.load(core::sync::atomic::Ordering::Relaxed);
            println!("shared-word-writes {name} {CALLS} {writes}");
            // Either core's value then takes the fast path as it is.
            assert_eq!(min.is_current(a) && min.is_current(b), most == 1, "{name}");
            assert!(writes <= most, "{name}: {writes} writes in {CALLS} calls");
        }
    }

    #[test]
    fn two_line_sizes_cost_one_write_each_then_none() {
        let (big, small) = (0x8444_c004, 0x8003_8003); // 64-byte and 32-byte lines
        let min = RunningMin::new();
        for k in 0..1000 {
            min.update(if k % 2 == 0 { big } else { small });
        }
        assert_eq!(min.writes.load(core::sync::atomic::Ordering::Relaxed), 2);
        assert_eq!(min.update(big).iline(), 32);
    }

    #[test]
    fn settled_steps_are_the_masks_of_the_line_sizes_or_skip() {
        for &(core, raw, d, i, idc, dic) in REAL_VALUES {
            let steps = Steps::new();
            assert_eq!(steps.get(), None, "{core}: nothing before the first call");
            assert_eq!(steps.ctr(), None, "{core}");
            let used = steps.settle(CtrEl0(raw));
            assert_eq!(steps.ctr(), Some(used), "{core}");
            assert_eq!(
                (used.dline(), used.iline(), used.idc(), used.dic()),
                (d, i, idc, dic)
            );
            let (dw, iw) = steps.get().expect("settled");
            assert_eq!(dw, if idc { SKIP } else { !(d - 1) }, "{core}: data word");
            assert_eq!(
                iw,
                if dic { SKIP } else { !(i - 1) },
                "{core}: instruction word"
            );
            // A mask aligns down with `and` and steps with `sub`.
            if !idc {
                assert_eq!(0x1234_5678 & dw, 0x1234_5678 / d * d, "{core}");
                assert_eq!(0x1000usize.wrapping_sub(dw), 0x1000 + d, "{core}");
            }
        }
    }

    #[test]
    fn the_instruction_word_is_safe_before_it_is_settled() {
        // A thread may see the data word settled and the instruction word
        // not yet: it must then step by lines no bigger than any real one.
        let mask = Steps::new().instruction.into_inner();
        assert_eq!(mask.wrapping_neg(), 4);
        assert_ne!(mask & SKIP, SKIP);
    }

    #[test]
    fn settling_again_from_a_core_that_differs_only_in_l1ip_keeps_the_words() {
        let steps = Steps::new();
        steps.settle(CtrEl0(0x9444_c00a));
        let first = steps.get();
        // Cores that differ only in fields the library ignores (L1Ip here)
        // settle to the same words.
        steps.settle(CtrEl0(0x9444_800a));
        assert_eq!(steps.get(), first);
        assert_eq!(steps.ctr(), Some(CtrEl0(0x9444_c00a).used()));
    }

    #[test]
    fn kernels_from_4_10_sanitise_and_older_or_unparsable_ones_do_not() {
        for (release, sanitises) in [
            (&b"6.1.0-18-arm64"[..], true),
            (b"4.10.0", true),
            (b"4.10", true),
            (b"4.19.113-perf+", true),
            (b"5.4.0-1045-aws", true),
            (b"10.0", true),
            (b"4.9.337", false),
            (b"4.4.302-android", false),
            (b"3.18.140-g1234", false),
            (b"4", false),
            (b"", false),
            (b"linux", false),
            (b".10", false),
            (b"4.x", false),
            (b"99999999.1", false),
        ] {
            assert_eq!(
                kernel_sanitises(release),
                sanitises,
                "{}",
                String::from_utf8_lossy(release)
            );
        }
    }

    #[test]
    fn merge_takes_the_smaller_line_of_each_kind_and_flags_only_if_both_have_them() {
        // Exynos-8890-like: one core with 128-byte I-lines, one with 64-byte
        // I-lines and 128-byte D-lines.
        let big = CtrEl0(0x8004_c005 | 1 << 28); // I 128, D 64, IDC
        let little = CtrEl0(0x8005_c004); // I 64, D 128
        for m in [big.merge(little), little.merge(big)] {
            assert_eq!(m.iline(), 64);
            assert_eq!(m.dline(), 64);
            assert!(!m.idc());
            assert!(!m.dic());
        }
        let n1 = CtrEl0(0xb444_c004);
        assert!(n1.merge(n1).idc() && n1.merge(n1).dic());
    }

    #[test]
    fn running_minimum_never_grows_and_remembers_small_cores() {
        let min = RunningMin::new();
        assert_eq!(min.update(0x8444_c004).iline(), 64);
        assert_eq!(min.update(0x8003_8003).iline(), 32);
        // A big-line core called later still gets the small step.
        let c = min.update(0x8666_8006);
        assert_eq!((c.iline(), c.dline()), (32, 32));
        let c = min.update(0x8444_c004);
        assert_eq!((c.iline(), c.dline()), (32, 32));
    }

    #[test]
    fn only_the_folded_minimum_itself_takes_the_fast_path() {
        let min = RunningMin::new();
        // Nothing folded yet: every value, even a real one, needs the fold.
        assert!(!min.is_current(0x8444_c004));
        min.update(0x8444_c004);
        assert!(min.is_current(0x8444_c004));
        // A core with smaller lines is not current until folded in; then
        // the big core is not current any more either (its lines are too
        // big to use as they are), so it takes the slow path, which keeps
        // the folded minimum.
        assert!(!min.is_current(0x8003_8003));
        min.update(0x8003_8003);
        assert!(min.is_current(0x8003_8003));
        assert!(!min.is_current(0x8444_c004));
        assert_eq!(min.update(0x8444_c004).iline(), 32);
    }

    #[test]
    fn running_minimum_drops_idc_and_dic_when_one_core_lacks_them() {
        let min = RunningMin::new();
        assert!(min.update(0xb444_c004).dic());
        let c = min.update(0x9444_8004); // IDC, no DIC
        assert!(c.idc());
        assert!(!c.dic());
        assert!(!min.update(0xb444_c004).dic());
    }
}
