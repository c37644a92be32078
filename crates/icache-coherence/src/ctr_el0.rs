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

    /// The value that is safe for both `self` and `other`: the smaller line
    /// size of each kind, and IDC/DIC only when both have them. The other
    /// fields are taken from `other`, so `x.merge(x) == x`; the fast path
    /// of the running minimum depends on that.
    pub(crate) fn merge(self, other: CtrEl0) -> CtrEl0 {
        let field = |v: u64, shift: u32| (v >> shift) & FIELD_MASK;
        let imin = field(self.0, IMINLINE_SHIFT).min(field(other.0, IMINLINE_SHIFT));
        let dmin = field(self.0, DMINLINE_SHIFT).min(field(other.0, DMINLINE_SHIFT));
        let both = self.0 & other.0 & (IDC_BIT | DIC_BIT);
        let rest = other.0
            & !(FIELD_MASK << IMINLINE_SHIFT | FIELD_MASK << DMINLINE_SHIFT | IDC_BIT | DIC_BIT);
        CtrEl0(rest | both | imin << IMINLINE_SHIFT | dmin << DMINLINE_SHIFT)
    }
}

/// A running minimum over every CTR_EL0 value seen by any core.
///
/// On big.LITTLE systems the line sizes can differ between cores (Samsung
/// Exynos 8890: 128-byte and 64-byte I-lines). Caching one core's value and
/// later flushing on another core skips lines, which caused random SIGILL in
/// Mono, Dolphin and PPSSPP. Policy (Dolphin's): read CTR_EL0 on every call
/// and combine it with the smallest value seen so far, so a core with small
/// lines lowers the step for every later call on every core. Modern Linux
/// additionally traps EL0 reads on mismatched systems and returns a safe
/// system-wide value (arm64 `ARM64_MISMATCHED_CACHE_TYPE`), which makes the
/// very first call safe too; on old vendor kernels the residual risk is the
/// first call made before a small-line core has ever run this code.
pub(crate) struct RunningMin(core::sync::atomic::AtomicU64);

impl RunningMin {
    /// An empty minimum (0 is never a real CTR_EL0 value: bit 31 is RES1).
    pub(crate) const fn new() -> Self {
        RunningMin(core::sync::atomic::AtomicU64::new(0))
    }

    /// Whether `raw` is the minimum already, so that it can be used as it
    /// is: true on every call of a homogeneous system after the first.
    #[inline(always)]
    pub(crate) fn is_current(&self, raw: u64) -> bool {
        self.0.load(core::sync::atomic::Ordering::Relaxed) == raw
    }

    /// Folds `raw` into the minimum and returns the value to use now.
    #[inline(always)]
    pub(crate) fn update(&self, raw: u64) -> CtrEl0 {
        use core::sync::atomic::Ordering::Relaxed;
        let seen = self.0.load(Relaxed);
        // Homogeneous systems (and kernels that sanitise CTR_EL0) always read
        // the same value: one load and one compare.
        if seen == raw {
            return CtrEl0(raw);
        }
        self.update_slow(raw, seen)
    }

    #[cold]
    #[inline(never)]
    fn update_slow(&self, raw: u64, mut seen: u64) -> CtrEl0 {
        use core::sync::atomic::Ordering::Relaxed;
        loop {
            let merged = if seen == 0 {
                raw
            } else {
                CtrEl0(seen).merge(CtrEl0(raw)).0
            };
            if merged == seen {
                return CtrEl0(seen);
            }
            // Relaxed is enough: the value is only ever lowered, and any
            // value a thread observes is safe for the cores seen so far.
            match self.0.compare_exchange_weak(seen, merged, Relaxed, Relaxed) {
                Ok(_) => return CtrEl0(merged),
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
    fn merging_a_value_with_itself_changes_nothing() {
        for &(_, raw, ..) in REAL_VALUES {
            assert_eq!(CtrEl0(raw).merge(CtrEl0(raw)), CtrEl0(raw));
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
