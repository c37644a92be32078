//! The cache geometry and feature bits the model checks against, and the one
//! decoder of CTR_EL0 in the checker.
//!
//! # Why the checker decodes CTR_EL0 itself
//!
//! The `icache-coherence` library has its own CTR_EL0 decoder
//! (`crates/icache-coherence/src/ctr_el0.rs`). The checker deliberately does
//! not use it, nor any other code of the library: the checker exists to
//! catch the library's mistakes, and a bug in shared code (say, DminLine read
//! from the wrong bits) would make the library flush too little *and* make
//! the checker expect too little, so the bug would hide itself. Both decoders
//! are written from the Arm ARM independently, and each is tested against
//! the values QEMU reports.

/// The cache geometry and feature bits the model checks against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Smallest data cache line in bytes (CTR_EL0.DminLine).
    pub dline: u64,
    /// Smallest instruction cache line in bytes (CTR_EL0.IminLine).
    pub iline: u64,
    /// CTR_EL0.IDC: cleaning to the Point of Unification is not required.
    pub idc: bool,
    /// CTR_EL0.DIC: invalidating the instruction cache is not required.
    pub dic: bool,
    /// CTR_EL0.L1Ip is PIPT (0b11): an `ic ivau` through any virtual alias of
    /// a physical line invalidates it for fetches through every alias. For
    /// the other types (VIPT 0b10, AIVIVT 0b01, VPIPT 0b00) it counts only for
    /// fetches through the page it was issued on (see `crate::aliases`).
    pub pipt_icache: bool,
}

impl Config {
    /// Decodes a CTR_EL0 value (Arm ARM D23.2.34): IminLine is bits \[3:0\],
    /// DminLine bits \[19:16\], each a log2 of the number of 4-byte words;
    /// IDC is bit 28 and DIC bit 29; L1Ip is bits \[15:14\].
    pub fn from_ctr_el0(ctr: u64) -> Config {
        Config {
            iline: 4 << (ctr & 0xf),
            dline: 4 << ((ctr >> 16) & 0xf),
            idc: ctr & (1 << 28) != 0,
            dic: ctr & (1 << 29) != 0,
            pipt_icache: (ctr >> 14) & 0b11 == 0b11,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctr_el0_values_decode_to_line_sizes_and_flags() {
        // L1Ip: 0xc004 has bits [15:14] = 0b11 (PIPT), 0x8004 0b10 (VIPT).
        let table = [
            (0x8444_c004, 64, 64, false, false, true), // cortex-a72 under QEMU 7.2
            (0x8444_8004, 64, 64, false, false, false), // cortex-a53
            (0x8666_8006, 256, 256, false, false, false), // a64fx
            (0x8003_8003, 32, 32, false, false, false), // max
            (0xb444_c004, 64, 64, true, true, true),   // neoverse-n1 silicon
            (0x9444_8004, 64, 64, true, false, false), // cortex-a55 silicon
            (0x8444_4004, 64, 64, false, false, false), // L1Ip 0b01 (AIVIVT)
        ];
        for (ctr, dline, iline, idc, dic, pipt_icache) in table {
            let want = Config {
                dline,
                iline,
                idc,
                dic,
                pipt_icache,
            };
            assert_eq!(Config::from_ctr_el0(ctr), want, "{ctr:#x}");
        }
    }
}
