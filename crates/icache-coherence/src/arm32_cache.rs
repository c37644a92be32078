//! 32-bit Arm bare metal: the decisions of the CP15 and SCB backends, pure
//! and tested on any host (`backends/arm_cp15.rs`, `backends/arm_m_scb.rs`
//! only execute them).

#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// Bit 16 of the M-profile Configuration and Control Register: the data
/// cache enable (Armv7-M ARM, DDI 0403E, B3.2.8 "CCR"; Cortex-M7 Devices
/// Generic User Guide, DUI 0646, 4.3.7: "Enables L1 data cache. This bit is
/// optional").
pub(crate) const CCR_DC: u32 = 1 << 16;
#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// Bit 17 of CCR: the instruction cache enable (same sources).
pub(crate) const CCR_IC: u32 = 1 << 17;
#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// Bit 0 of the M-profile CONTROL register: Thread mode is unprivileged
/// (Armv7-M ARM, B1.4.4 "The special-purpose CONTROL register").
pub(crate) const CONTROL_NPRIV: u32 = 1 << 0;

/// The smallest data and instruction cache line sizes, in bytes, from a
/// Cache Type Register in the Armv7 format (CTR\[31:29\] = 0b100): DminLine
/// = CTR\[19:16\] and IminLine = CTR\[3:0\], each log2 of the line in 4-byte
/// words (Arm ARM DDI 0406C, "CTR, Cache Type Register"; Armv7-M ARM
/// DDI 0403E, "Cache Type Register, CTR"; the same fields as AArch64's
/// CTR_EL0). Any other format (Armv6 and before)
/// gets 4 bytes, the smallest a line can be: stepping by less than the real
/// line is slow but never misses one.
pub(crate) fn ctr_lines(ctr: u32) -> (usize, usize) {
    if ctr >> 29 != 0b100 {
        return (4, 4);
    }
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    (dline, iline)
}

#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// What the M-profile backend does, read from the core's own registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MPlan {
    /// Clean the data cache by address to the Point of Unification (DCCMVAU).
    pub(crate) clean: bool,
    /// Invalidate the instruction cache by address (ICIMVAU) and the branch
    /// predictor (BPIALL).
    pub(crate) invalidate: bool,
}

#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// Why the M-profile backend touches nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MRefusal {
    /// The caller runs unprivileged: the SCB (and so CCR) faults there.
    Unprivileged,
}

#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// Whether the caller may read the SCB: Handler mode (IPSR != 0) is always
/// privileged, Thread mode is privileged when CONTROL.nPRIV = 0 (Armv7-M
/// ARM, B1.4.4 and B3.2.1: the System Control Space is privileged-only,
/// an unprivileged access is a BusFault). Both registers are readable with
/// `mrs` at any privilege.
pub(crate) fn m_privileged(ipsr: u32, control: u32) -> Result<(), MRefusal> {
    if ipsr & 0x1ff != 0 || control & CONTROL_NPRIV == 0 {
        Ok(())
    } else {
        Err(MRefusal::Unprivileged)
    }
}

#[cfg(any(test, icache_backend = "arm_m_scb"))]
/// What to maintain, from CCR. The cache maintenance registers
/// (0xE000EF50..0xE000EF78) are touched only when CCR says the cache is
/// there and on: a core built without caches (Cortex-M3, M4) has bits 16
/// and 17 of CCR reserved, reading as zero (Cortex-M4 Devices Generic User
/// Guide, DUI 0553, 4.3.7: CCR\[31:10\] reserved), and its System Control
/// Space does not implement the maintenance addresses, so writing them is
/// at best ignored and at worst a BusFault. A cache that is present but
/// disabled holds nothing fetch could use: software must invalidate it
/// before it enables it (the sequence of CMSIS `SCB_EnableICache`), so
/// there is nothing to do for it here either. With neither, what remains
/// is `dsb` and `isb`: the stores complete, then the pipeline refetches
/// (Armv7-M ARM, "Data Synchronization Barrier" and "Instruction
/// Synchronization Barrier").
pub(crate) fn m_plan(ccr: u32) -> MPlan {
    MPlan {
        clean: ccr & CCR_DC != 0,
        invalidate: ccr & CCR_IC != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cortex-M7's CTR (DUI 0646, 4.5.2): format 0b100, 8-word lines.
    const CORTEX_M7_CTR: u32 = 0x8303_C003;

    #[test]
    fn cortex_m7_ctr_gives_32_byte_lines() {
        assert_eq!(ctr_lines(CORTEX_M7_CTR), (32, 32));
    }

    #[test]
    fn every_v7_format_line_field_decodes_to_four_bytes_shifted() {
        for d in 0..16u32 {
            for i in 0..16u32 {
                let ctr = (0b100 << 29) | (d << 16) | i;
                assert_eq!(ctr_lines(ctr), (4 << d, 4 << i), "{ctr:#x}");
            }
        }
    }

    #[test]
    fn a_ctr_not_in_the_v7_format_steps_by_the_smallest_line() {
        for format in [0b000u32, 0b001, 0b011, 0b110, 0b111] {
            assert_eq!(ctr_lines((format << 29) | 0x000f_000f), (4, 4));
        }
    }

    #[test]
    fn a_core_without_caches_gets_no_maintenance_register_access() {
        // Cortex-M4 after reset: STKALIGN (bit 9) set, bits 16..18 zero.
        let plan = m_plan(0x0000_0200);
        assert_eq!(
            plan,
            MPlan {
                clean: false,
                invalidate: false
            }
        );
    }

    #[test]
    fn each_enabled_cache_and_only_it_is_maintained() {
        for ccr in [0, CCR_DC, CCR_IC, CCR_DC | CCR_IC] {
            let plan = m_plan(ccr | 0x0004_0200);
            assert_eq!(plan.clean, ccr & CCR_DC != 0);
            assert_eq!(plan.invalidate, ccr & CCR_IC != 0);
        }
    }

    #[test]
    fn unprivileged_thread_mode_is_refused_and_handler_mode_never() {
        assert_eq!(m_privileged(0, CONTROL_NPRIV), Err(MRefusal::Unprivileged));
        assert_eq!(m_privileged(0, 0), Ok(()));
        // Handler mode (IPSR = exception number) is privileged whatever
        // CONTROL.nPRIV says.
        for exception in [2u32, 3, 11, 15, 16, 255, 511] {
            assert_eq!(m_privileged(exception, CONTROL_NPRIV), Ok(()));
        }
        // Bits above IPSR's nine are not the exception number.
        assert_eq!(
            m_privileged(0xfe00, CONTROL_NPRIV | 2),
            Err(MRefusal::Unprivileged)
        );
    }
}
