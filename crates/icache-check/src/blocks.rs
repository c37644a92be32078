//! How the plugin checks a translated block of plain code with one callback
//! per *segment* instead of one per instruction.
//!
//! A TCG translation block is straight-line code: every branch, `svc`, `brk`
//! or undefined instruction ends it (QEMU's `target/arm/translate-a64.c`
//! stops the block at each of them). So once a block starts, each of its
//! instructions runs unless an earlier instruction of the block raises a
//! synchronous exception in the middle of it: a load or store that faults,
//! or a system-register access that traps at run time. The plugin can
//! therefore check the instructions from the block's start up to and
//! including the first instruction that may raise one, all at once, when the
//! block starts; then the instructions after it up to the next such
//! instruction, when the first of them starts; and so on. Each of those runs
//! is a segment.
//!
//! Checking a segment's instructions at its start instead of one by one is
//! the same check only if nothing between them changes what the model
//! thinks of the executing vCPU. The plugin uses segments only for blocks
//! whose every instruction is [`crate::decode::Insn::Other`]: no maintenance,
//! barrier, store-release or `svc`, whose own callbacks change the model.
//! Other vCPUs may act between the segment's start and one of its
//! instructions, but the interleaving of vCPUs is not known any better than
//! that with one callback per instruction either: the guest's own
//! synchronization orders what matters.

/// Whether executing `word` can never raise a synchronous exception in
/// user mode, so the instruction after it always runs when it does
/// (branches aside, which end their block).
///
/// The set is deliberately small: the A64 data-processing groups (Arm ARM
/// DDI 0487, C4.1, "A64 instruction set encoding": `op0` = `100x`
/// immediate, `x101` register, `x111` SIMD and floating point), without the
/// register group's one-source class, which holds the pointer
/// authentication `AUT*` instructions that fault on a failed check with
/// FEAT_FPAC. Loads, stores, system instructions (hints, `mrs`, `msr`,
/// `sys`), branches and anything unallocated count as able to raise.
/// Floating-point exceptions are not trapped (QEMU implements no FP trap
/// enables), and undefined SIMD encodings are decided at translation, where
/// they end the block.
pub fn cannot_raise(word: u32) -> bool {
    let op0 = (word >> 25) & 0b1111;
    let immediate = op0 & 0b1110 == 0b1000;
    let register = op0 & 0b0111 == 0b0101;
    let simd_fp = op0 & 0b0111 == 0b0111;
    // Data-processing (1 source): sf 1 S 11010110 (C4.1.87).
    let one_source = word & 0x5fe0_0000 == 0x5ac0_0000;
    immediate || (register && !one_source) || simd_fp
}

/// The index of the first instruction of each segment of a block whose
/// instruction words are `words`: 0, and every index right after an
/// instruction that may raise ([`cannot_raise`]). Segment `k` runs from
/// `starts[k]` to just before `starts[k + 1]` (or the block's end).
pub fn segment_starts(words: &[u32]) -> Vec<usize> {
    let mut starts = Vec::new();
    if !words.is_empty() {
        starts.push(0);
    }
    for (i, &w) in words.iter().enumerate() {
        if i + 1 < words.len() && !cannot_raise(w) {
            starts.push(i + 1);
        }
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encodings from the Arm ARM, checked with aarch64-linux-gnu-as.
    const ADD_IMM: u32 = 0x9100_0421; // add x1, x1, #1
    const MOV_IMM: u32 = 0xd280_0001; // mov x1, #0
    const ADD_REG: u32 = 0x8b00_0021; // add x1, x1, x0
    const EOR_REG: u32 = 0xca01_0042; // eor x2, x2, x1
    const SUBS_IMM: u32 = 0xf100_0400; // subs x0, x0, #1
    const UDIV: u32 = 0x9ac2_0820; // udiv x0, x1, x2
    const FADD: u32 = 0x1e22_2820; // fadd s0, s1, s2
    const ADD_V: u32 = 0x4ea2_8420; // add v0.4s, v1.4s, v2.4s
    const LDR: u32 = 0xf940_0020; // ldr x0, [x1]
    const STR: u32 = 0xf900_0020; // str x0, [x1]
    const LDXR: u32 = 0xc85f_7c20; // ldxr x0, [x1]
    const LDR_LITERAL: u32 = 0x5800_0040; // ldr x0, .+8
    const LDADD: u32 = 0xf820_0022; // ldadd x0, x2, [x1]
    const AUTIA: u32 = 0xdac1_1020; // autia x0, x1
    const RBIT: u32 = 0xdac0_0020; // rbit x0, x1 (same class as autia)
    const NOP: u32 = 0xd503_201f;
    const MRS: u32 = 0xd53b_0020; // mrs x0, ctr_el0
    const B: u32 = 0x1400_0002; // b .+8
    const BNE: u32 = 0x54ff_ffa1; // b.ne .-12
    const UDF: u32 = 0x0000_0000; // udf #0

    #[test]
    fn data_processing_cannot_raise() {
        for w in [
            ADD_IMM, MOV_IMM, ADD_REG, EOR_REG, SUBS_IMM, UDIV, FADD, ADD_V,
        ] {
            assert!(cannot_raise(w), "{w:#010x}");
        }
    }

    #[test]
    fn memory_system_branch_one_source_and_undefined_words_may_raise() {
        for w in [
            LDR,
            STR,
            LDXR,
            LDR_LITERAL,
            LDADD,
            AUTIA,
            RBIT,
            NOP,
            MRS,
            B,
            BNE,
            UDF,
        ] {
            assert!(!cannot_raise(w), "{w:#010x}");
        }
    }

    #[test]
    fn a_block_without_memory_access_is_one_segment() {
        assert_eq!(segment_starts(&[ADD_REG, EOR_REG, SUBS_IMM, BNE]), [0]);
    }

    #[test]
    fn a_segment_ends_with_each_instruction_that_may_raise() {
        // add; ldr | eor; str | str | subs; b.ne
        let block = [ADD_REG, LDR, EOR_REG, STR, STR, SUBS_IMM, BNE];
        assert_eq!(segment_starts(&block), [0, 2, 4, 5]);
    }

    #[test]
    fn a_raising_last_instruction_starts_no_empty_segment() {
        assert_eq!(segment_starts(&[ADD_REG, LDR]), [0]);
        assert_eq!(segment_starts(&[LDR]), [0]);
        assert!(segment_starts(&[]).is_empty());
    }
}
