//! Decoding of the A64 instruction words that matter to the coherence model.
//!
//! Only a handful of encodings change the model's state: the data-cache clean
//! instructions, the instruction-cache invalidations, `dsb`, `isb` and `svc`.
//! Everything else is [`Insn::Other`]. Encodings are from the Arm Architecture
//! Reference Manual (DDI 0487), section C5.3 "A64 system instructions for cache
//! maintenance" and C6.2 (`DSB`, `ISB`, `SVC`, `SYS`).

/// A decoded instruction word, as far as the model cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Insn {
    /// `dc cvau`, `dc cvac` or `dc civac`: clean (and maybe invalidate) the data
    /// cache line holding the address in register `rt` (31 means `xzr`).
    DcClean {
        /// Which of the three clean operations.
        op: DcOp,
        /// The register that holds the virtual address.
        rt: u8,
    },
    /// `ic ivau`: invalidate the instruction cache line holding the address in
    /// register `rt`, in every core of the inner shareable domain.
    IcIvau {
        /// The register that holds the virtual address.
        rt: u8,
    },
    /// `ic iallu`: invalidate the whole instruction cache of this core only.
    /// Undefined at EL0 (Arm ARM C5.3.13), so a user program that runs it dies
    /// with SIGILL; it is decoded so the model stays complete.
    IcIallu,
    /// `ic ialluis`: invalidate all instruction caches in the inner shareable
    /// domain. Also undefined at EL0 (C5.3.14).
    IcIalluis,
    /// `dsb` with the given option.
    Dsb(DsbOption),
    /// `dmb` with the given option (the same `CRm` encoding as `dsb`).
    Dmb(DsbOption),
    /// `isb` (every option value behaves as `SY`, C6.2.113).
    Isb,
    /// `svc #imm`: a system call.
    Svc,
    /// A store-release (`stlr`, `stlrb`, `stlrh`, `stlxr` and its sizes and
    /// pairs): every earlier load and store of the thread is ordered before
    /// its store (Arm ARM B2.3.7, "Release semantics").
    StoreRelease,
    /// Anything else.
    Other,
}

/// The data-cache clean operations the model treats as "clean to the Point of
/// Unification". Cleaning to the Point of Coherency (`cvac`, `civac`) goes at
/// least as far as the Point of Unification for a single-OS user program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DcOp {
    /// `dc cvau`: clean to the Point of Unification.
    Cvau,
    /// `dc cvac`: clean to the Point of Coherency.
    Cvac,
    /// `dc civac`: clean and invalidate to the Point of Coherency.
    Civac,
}

/// The option field (`CRm`) of a `dsb`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DsbOption(pub u8);

impl DsbOption {
    /// Whether this `dsb` completes earlier cache maintenance for the whole
    /// inner shareable domain, as the model requires.
    ///
    /// The rule is "`dsb ish` or `dsb sy`". `dsb osh` is accepted as
    /// well: the outer shareable domain contains the inner shareable one (Arm
    /// ARM B2.7.1), so it waits for at least as much. The `LD` and `ST` forms
    /// (`CRm<1:0>` != `0b11`) wait only for some access types and `nsh` only for
    /// the local core, so the strict model does not count them.
    pub fn completes_maintenance(self) -> bool {
        let domain = self.0 >> 2;
        let types = self.0 & 0b11;
        types == 0b11 && domain != 0b01
    }

    /// Whether a `dmb` with this option orders earlier stores before later
    /// ones beyond this core: `ST` or full, any domain but `nsh`.
    pub fn orders_stores(self) -> bool {
        self.0 & 0b10 != 0 && self.0 >> 2 != 0b01
    }
}

// SYS #op1, Cn, Cm, #op2, Xt is 1101_0101_0000_1 op1 CRn CRm op2 Rt (C6.2.317).
const SYS_MASK: u32 = 0xfff8_0000;
const SYS_BITS: u32 = 0xd508_0000;
// DSB is 1101_0101_0000_0011_0011 CRm 1_00 11111 (C6.2.86); ISB has op2 = 110.
const BARRIER_MASK: u32 = 0xffff_f0ff;
const DSB_BITS: u32 = 0xd503_309f;
const ISB_BITS: u32 = 0xd503_30df;
// DMB has op2 = 101 (C6.2.81).
const DMB_BITS: u32 = 0xd503_30bf;
// Load/store exclusive and ordered (C4.1.94): size 001000 o2 L o1 Rs o0 Rt2 Rn
// Rt. A store (L = 0) with o0 = 1 is a release: STLR* (o2 = 1, o1 = 0),
// STLXR* (o2 = 0, o1 = 0) and STLXP (o2 = 0, o1 = 1, bit 31 = 1). CAS* (o2 = 1,
// o1 = 1) and CASP* (o2 = 0, o1 = 1, bit 31 = 0) are left out: the model
// counts no compare-and-swap as a release, which can only add reports.
const EXCL_MASK: u32 = 0x3f40_8000;
const EXCL_STORE_RELEASE: u32 = 0x0800_8000;
// SVC is 1101_0100_000 imm16 000_01 (C6.2.365).
const SVC_MASK: u32 = 0xffe0_001f;
const SVC_BITS: u32 = 0xd400_0001;

/// Decodes one little-endian A64 instruction word.
pub fn decode(word: u32) -> Insn {
    if word & SYS_MASK == SYS_BITS {
        let op1 = (word >> 16) & 7;
        let crn = (word >> 12) & 0xf;
        let crm = (word >> 8) & 0xf;
        let op2 = (word >> 5) & 7;
        let rt = (word & 0x1f) as u8;
        return match (op1, crn, crm, op2) {
            (3, 7, 11, 1) => Insn::DcClean { op: DcOp::Cvau, rt },
            (3, 7, 10, 1) => Insn::DcClean { op: DcOp::Cvac, rt },
            (3, 7, 14, 1) => Insn::DcClean {
                op: DcOp::Civac,
                rt,
            },
            (3, 7, 5, 1) => Insn::IcIvau { rt },
            (0, 7, 5, 0) => Insn::IcIallu,
            (0, 7, 1, 0) => Insn::IcIalluis,
            _ => Insn::Other,
        };
    }
    if word & BARRIER_MASK == DSB_BITS {
        let crm = ((word >> 8) & 0xf) as u8;
        // CRm 0b0000 and 0b0100 with this op2 are SSBB and PSSBB, not DSB.
        return match crm {
            0b0000 | 0b0100 => Insn::Other,
            _ => Insn::Dsb(DsbOption(crm)),
        };
    }
    if word & BARRIER_MASK == ISB_BITS {
        return Insn::Isb;
    }
    if word & BARRIER_MASK == DMB_BITS {
        return Insn::Dmb(DsbOption(((word >> 8) & 0xf) as u8));
    }
    if word & SVC_MASK == SVC_BITS {
        return Insn::Svc;
    }
    if word & EXCL_MASK == EXCL_STORE_RELEASE {
        let (o2, o1, bit31) = ((word >> 23) & 1, (word >> 21) & 1, word >> 31);
        let cas = o1 == 1 && (o2 == 1 || bit31 == 0);
        if !cas {
            return Insn::StoreRelease;
        }
    }
    Insn::Other
}

/// Whether `word` is in the A64 "Loads and Stores" encoding group
/// (`op0` = x1x0, Arm ARM C4.1) with the stack pointer as its base register
/// (`Rn` = 31 in bits \[9:5\], which every form with a base register shares).
///
/// The plugin does not instrument these: they are the bulk of all stores in
/// compiled code (spills, frames, locals), and no JIT writes the code it
/// will run through the stack pointer.
pub fn is_sp_based_memory_access(word: u32) -> bool {
    let load_store_group = (word >> 25) & 0b0101 == 0b0100;
    // Literal loads (op0 = xx01_1x0..) have no base register; they are loads,
    // so excluding them costs nothing and keeps the test exact.
    let literal = (word >> 27) & 0b111 == 0b011 && (word >> 24) & 1 == 0;
    load_store_group && !literal && (word >> 5) & 0x1f == 31
}

/// Whether `word` is an A64 load that never writes memory, so the plugin
/// need not ask QEMU for a store callback on it. QEMU 7.2 calls a plugin's
/// memory callback on every access of an instrumented instruction, loads
/// included, whatever `QEMU_PLUGIN_MEM_W` says; on load-heavy code that call
/// costs more than the load itself.
///
/// Only these encoding classes are recognized (Arm ARM DDI 0487, C4.1.66,
/// "Loads and Stores"); every other word keeps its callback, so a
/// misclassification can only cost time, never hide a store:
///
/// * load register (literal), and `PRFM` (literal);
/// * load/store register, unsigned offset, unscaled, pre- and
///   post-indexed, unprivileged and register offset, when the `opc` field
///   says load: not `00` for general registers (`10`/`11` are the
///   sign-extending loads and `PRFM`), bit 22 set for SIMD&FP registers
///   (`10` there is the 128-bit store). The atomic and pointer-authenticated
///   forms of the register-offset space are excluded;
/// * load/store pair with `L` (bit 22) set;
/// * load-exclusive and load-acquire of one register (`LDXR`, `LDAXR`,
///   `LDAR`, `LDLAR`: `L` set, `o1` clear; the compare-and-swap forms have
///   `o1` set);
/// * SIMD load single or multiple structures with `L` set.
pub fn never_stores(word: u32) -> bool {
    let bit = |n: u32| (word >> n) & 1 == 1;
    let simd = bit(26);
    let opc_loads = || {
        if simd {
            bit(22)
        } else {
            (word >> 22) & 0b11 != 0
        }
    };
    if word & 0x3b00_0000 == 0x1800_0000 {
        // Load register (literal): opc 011 V 00.
        return true;
    }
    if word & 0x3b00_0000 == 0x3900_0000 {
        // Load/store register (unsigned immediate): size 111 V 01 opc.
        return opc_loads();
    }
    if word & 0x3b00_0000 == 0x3800_0000 {
        // size 111 V 00 opc: bit 21 clear is the immediate and unprivileged
        // forms; bit 21 set with bits 11:10 = 10 is register offset.
        let immediate = !bit(21);
        let register_offset = bit(21) && (word >> 10) & 0b11 == 0b10;
        return (immediate || register_offset) && opc_loads();
    }
    if word & 0x3a00_0000 == 0x2800_0000 {
        // Load/store pair (all addressing modes): opc 101 V 0xx L.
        return bit(22);
    }
    if word & 0x3f00_0000 == 0x0800_0000 {
        // Load/store exclusive and ordered: size 001000 o2 L o1.
        return bit(22) && !bit(21);
    }
    if word & 0xbe00_0000 == 0x0c00_0000 {
        // SIMD load/store multiple or single structures: 0 Q 0011 0 x x L.
        return bit(22);
    }
    false
}

/// Whether `word` is one of the instructions the Arm ARM allows one thread to
/// replace while another executes it, with the other thread running either
/// the old or the new one (DDI 0487, B2.2.5 "Concurrent modification and
/// execution of instructions"): `B`, `BL`, `NOP`, `BRK`, `SVC`, `HVC`,
/// `SMC` and `ISB`. Encodings from C6.2 (`B` 000101 imm26, `BL` 100101
/// imm26, the exception-generating group 11010100 opc imm16 000 LL, the
/// hint `NOP` and the barrier `ISB` with any option).
pub fn is_concurrently_modifiable(word: u32) -> bool {
    let branch = word & 0x7c00_0000 == 0x1400_0000; // B and BL
    let exception = word & 0xffe0_001f;
    let svc_hvc_smc = matches!(exception, 0xd400_0001..=0xd400_0003);
    let brk = exception == 0xd420_0000;
    let nop = word == 0xd503_201f;
    let isb = word & BARRIER_MASK == ISB_BITS;
    branch || svc_hvc_smc || brk || nop || isb
}

impl Insn {
    /// The register holding the address operand, for the instructions that
    /// take one.
    pub fn address_register(self) -> Option<u8> {
        match self {
            Insn::DcClean { rt, .. } | Insn::IcIvau { rt } => Some(rt),
            _ => None,
        }
    }

    /// Whether the model needs to see every execution of this instruction.
    pub fn is_interesting(self) -> bool {
        self != Insn::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Words as assembled by aarch64-linux-gnu-as (binutils 2.40).
    #[test]
    fn cache_maintenance_words_decode_with_their_register() {
        let table = [
            (
                0xd50b_7b20,
                Insn::DcClean {
                    op: DcOp::Cvau,
                    rt: 0,
                },
            ),
            (
                0xd50b_7b2a,
                Insn::DcClean {
                    op: DcOp::Cvau,
                    rt: 10,
                },
            ),
            (
                0xd50b_7a21,
                Insn::DcClean {
                    op: DcOp::Cvac,
                    rt: 1,
                },
            ),
            (
                0xd50b_7e3e,
                Insn::DcClean {
                    op: DcOp::Civac,
                    rt: 30,
                },
            ),
            (0xd50b_7522, Insn::IcIvau { rt: 2 }),
            (0xd50b_753f, Insn::IcIvau { rt: 31 }),
            (0xd508_751f, Insn::IcIallu),
            (0xd508_711f, Insn::IcIalluis),
        ];
        for (word, want) in table {
            assert_eq!(decode(word), want, "{word:#010x}");
        }
    }

    #[test]
    fn barriers_and_svc_decode() {
        assert_eq!(decode(0xd503_3b9f), Insn::Dsb(DsbOption(0b1011))); // dsb ish
        assert_eq!(decode(0xd503_3f9f), Insn::Dsb(DsbOption(0b1111))); // dsb sy
        assert_eq!(decode(0xd503_3a9f), Insn::Dsb(DsbOption(0b1010))); // dsb ishst
        assert_eq!(decode(0xd503_3fdf), Insn::Isb);
        assert_eq!(decode(0xd503_3bbf), Insn::Dmb(DsbOption(0b1011))); // dmb ish
        assert_eq!(decode(0xd503_3abf), Insn::Dmb(DsbOption(0b1010))); // dmb ishst
        assert_eq!(decode(0xd400_0001), Insn::Svc);
        assert_eq!(decode(0xd400_1001), Insn::Svc); // svc #0x80
    }

    #[test]
    fn look_alike_words_are_other() {
        let others = [
            0xd503_309f, // ssbb
            0xd503_349f, // pssbb
            0xd503_201f, // nop
            0xd50b_7420, // dc zva, x0
            0xd508_7620, // dc ivac, x0 (invalidate only, not a clean)
            0xd53b_0020, // mrs x0, ctr_el0
            0xd400_0002, // hvc #0
            0x5280_0020, // mov w0, #1
            0xd65f_03c0, // ret
        ];
        for word in others {
            assert_eq!(decode(word), Insn::Other, "{word:#010x}");
        }
    }

    #[test]
    fn stack_pointer_based_stores_are_recognized() {
        let sp_based = [
            0xa9bf_7bfd, // stp x29, x30, [sp, #-16]!
            0xf900_0be0, // str x0, [sp, #16]
            0xb900_1fe1, // str w1, [sp, #28]
            0x3900_03e2, // strb w2, [sp]
            0x3d80_03e0, // str q0, [sp]
            0xf940_0be0, // ldr x0, [sp, #16]
        ];
        for word in sp_based {
            assert!(is_sp_based_memory_access(word), "{word:#010x}");
        }
        let other = [
            0xf900_0020, // str x0, [x1]
            0xb800_4420, // str w0, [x1], #4
            0xa900_0440, // stp x0, x1, [x2]
            0x3800_1c22, // strb w2, [x1, #1]!
            0xc89f_fc20, // stlr x0, [x1]
            0x5800_001f, // ldr xzr, <literal> (bits [9:5] happen to be 0)
            0x5800_03ff, // ldr xzr, <literal> with imm19 bits [9:5] = 31
            0x9100_03ff, // mov sp, sp (add, not a memory access)
            0xd50b_7b3f, // dc cvau, xzr
        ];
        for word in other {
            assert!(!is_sp_based_memory_access(word), "{word:#010x}");
        }
    }

    #[test]
    fn only_full_inner_or_wider_dsb_completes_maintenance() {
        let yes = [0b1011, 0b1111, 0b0011]; // ish, sy, osh
        let no = [0b1010, 0b1001, 0b0111, 0b1110, 0b0010]; // ishst, ishld, nsh, st, oshst
        for crm in yes {
            assert!(DsbOption(crm).completes_maintenance(), "{crm:#06b}");
        }
        for crm in no {
            assert!(!DsbOption(crm).completes_maintenance(), "{crm:#06b}");
        }
        for crm in [0b1011, 0b1010, 0b1111, 0b1110, 0b0011] {
            assert!(DsbOption(crm).orders_stores(), "{crm:#06b}");
        }
        for crm in [0b1001, 0b0111, 0b0110, 0b0001] {
            assert!(!DsbOption(crm).orders_stores(), "{crm:#06b}");
        }
    }

    #[test]
    fn address_register_is_given_only_for_by_address_operations() {
        assert_eq!(decode(0xd50b_7b2a).address_register(), Some(10));
        assert_eq!(decode(0xd50b_7522).address_register(), Some(2));
        assert_eq!(decode(0xd508_751f).address_register(), None);
        assert_eq!(decode(0xd503_3b9f).address_register(), None);
    }

    #[test]
    fn the_concurrently_modifiable_list_is_recognized() {
        let listed = [
            0x1400_0002, // b .+8
            0x17ff_ffff, // b .-4
            0x9400_0010, // bl
            0xd503_201f, // nop
            0xd420_0000, // brk #0
            0xd400_0001, // svc #0
            0xd400_0002, // hvc #0
            0xd400_0003, // smc #0
            0xd503_3fdf, // isb
        ];
        for word in listed {
            assert!(is_concurrently_modifiable(word), "{word:#010x}");
        }
        let others = [
            0x5280_0020, // mov w0, #1
            0x5400_0040, // b.eq .+8 (conditional: not on the list)
            0xd61f_0200, // br x16
            0xd65f_03c0, // ret
            0xd503_203f, // yield
            0xd503_3f9f, // dsb sy
            0xd400_0000, // undefined (LL = 00)
            0xd440_0000, // hlt #0
        ];
        for word in others {
            assert!(!is_concurrently_modifiable(word), "{word:#010x}");
        }
    }

    #[test]
    fn store_releases_decode_and_other_ordered_accesses_do_not() {
        // Words as assembled by aarch64-linux-gnu-as -march=armv8.1-a.
        for (word, text) in [
            (0xc89f_fc01, "stlr x1, [x0]"),
            (0x889f_fc01, "stlr w1, [x0]"),
            (0x089f_fc01, "stlrb w1, [x0]"),
            (0x489f_fc01, "stlrh w1, [x0]"),
            (0xc802_fc01, "stlxr w2, x1, [x0]"),
            (0x0802_fc01, "stlxrb w2, w1, [x0]"),
            (0xc823_8801, "stlxp w3, x1, x2, [x0]"),
        ] {
            assert_eq!(decode(word), Insn::StoreRelease, "{text}");
        }
        for (word, text) in [
            (0xc802_7c01, "stxr w2, x1, [x0]"),
            (0xc8df_fc01, "ldar x1, [x0]"),
            (0xc85f_fc01, "ldaxr x1, [x0]"),
            (0xc89f_7c01, "stllr x1, [x0]"),
            (0xc8e1_fc02, "casal x1, x2, [x0]"),
            (0xc8a1_fc02, "casl x1, x2, [x0]"),
            (0x4822_fc04, "caspl x2, x3, x4, x5, [x0]"),
            (0xf900_0001, "str x1, [x0]"),
        ] {
            assert_eq!(decode(word), Insn::Other, "{text}");
        }
    }

    /// Assembled with `aarch64-linux-gnu-as -march=armv8.5-a+lse+rcpc+memtag`.
    const LOADS: [u32; 31] = [
        0xf9400020, // ldr x0, [x1]
        0x39400c20, // ldrb w0, [x1, #3]
        0xb9800020, // ldrsw x0, [x1]
        0x39800020, // ldrsb x0, [x1]
        0x79c00020, // ldrsh w0, [x1]
        0xf85f8020, // ldur x0, [x1, #-8]
        0xf8400820, // ldtr x0, [x1]
        0xf8408c20, // ldr x0, [x1, #8]!
        0xf8408420, // ldr x0, [x1], #8
        0xf8627820, // ldr x0, [x1, x2, lsl #3]
        0x58000000, // ldr x0, 28 <.text+0x28>
        0x9c000000, // ldr q0, 2c <.text+0x2c>
        0x98000000, // ldrsw x0, 30 <.text+0x30>
        0xf9800020, // prfm pldl1keep, [x1]
        0xd8000000, // prfm pldl1keep, 38 <.text+0x38>
        0xa9400440, // ldp x0, x1, [x2]
        0x69400440, // ldpsw x0, x1, [x2]
        0xa8400440, // ldnp x0, x1, [x2]
        0xa8c10440, // ldp x0, x1, [x2], #16
        0xadc10440, // ldp q0, q1, [x2, #32]!
        0xc85f7c20, // ldxr x0, [x1]
        0x885ffc20, // ldaxr w0, [x1]
        0xc8dffc20, // ldar x0, [x1]
        0xc8df7c20, // ldlar x0, [x1]
        0x4c407000, // ld1 {v0.16b}, [x0]
        0x4cdfa000, // ld1 {v0.16b, v1.16b}, [x0], #32
        0x4d40c800, // ld1r {v0.4s}, [x0]
        0x0d409000, // ld1 {v0.s}[1], [x0]
        0x3dc00020, // ldr q0, [x1]
        0xfd400420, // ldr d0, [x1, #8]
        0x3cdf0020, // ldur q0, [x1, #-16]
    ];

    /// Everything that writes memory, plus loads the decoder leaves alone
    /// (`ldxp`, `ldapr`, `ldraa`): they keep their store callback.
    const KEEP_CALLBACK: [u32; 37] = [
        0xf9000020, // str x0, [x1]
        0x39000c20, // strb w0, [x1, #3]
        0xf81f8020, // stur x0, [x1, #-8]
        0xf8000820, // sttr x0, [x1]
        0xf8008c20, // str x0, [x1, #8]!
        0xf8008420, // str x0, [x1], #8
        0xf8227820, // str x0, [x1, x2, lsl #3]
        0xa9000440, // stp x0, x1, [x2]
        0xa8000440, // stnp x0, x1, [x2]
        0xa9bf0440, // stp x0, x1, [x2, #-16]!
        0xad000440, // stp q0, q1, [x2]
        0x3d800020, // str q0, [x1]
        0xfd000020, // str d0, [x1]
        0x3c9f0020, // stur q0, [x1, #-16]
        0xc8037c20, // stxr w3, x0, [x1]
        0xc803fc20, // stlxr w3, x0, [x1]
        0xc89ffc20, // stlr x0, [x1]
        0xc89f7c20, // stllr x0, [x1]
        0xc8230440, // stxp w3, x0, x1, [x2]
        0xc87f0440, // ldxp x0, x1, [x2]
        0x4c007000, // st1 {v0.16b}, [x0]
        0x0d009000, // st1 {v0.s}[1], [x0]
        0xf8200041, // ldadd x0, x1, [x2]
        0xb8e00041, // ldaddal w0, w1, [x2]
        0xf8201041, // ldclr x0, x1, [x2]
        0xf8208041, // swp x0, x1, [x2]
        0xf8e08041, // swpal x0, x1, [x2]
        0xf820005f, // stadd x0, [x2]
        0xc8a07c41, // cas x0, x1, [x2]
        0xc8e0fc41, // casal x0, x1, [x2]
        0xc8e07c41, // casa x0, x1, [x2]
        0x48207c82, // casp x0, x1, x2, x3, [x4]
        0x4860fc82, // caspal x0, x1, x2, x3, [x4]
        0xf8bfc020, // ldapr x0, [x1]
        0xf8200420, // ldraa x0, [x1]
        0xd50b7420, // dc zva, x0
        0x69000440, // stgp x0, x1, [x2]
    ];

    #[test]
    fn loads_need_no_store_callback() {
        for w in LOADS {
            assert!(never_stores(w), "{w:#010x}");
        }
    }

    #[test]
    fn stores_atomics_and_unrecognized_loads_keep_their_store_callback() {
        for w in KEEP_CALLBACK {
            assert!(!never_stores(w), "{w:#010x}");
        }
        // Data processing, branches and system instructions are not loads.
        for w in [0x8b00_0021, 0x1400_0002, 0xd503_201f, 0xd50b_7520, 0] {
            assert!(!never_stores(w), "{w:#010x}");
        }
    }
}
