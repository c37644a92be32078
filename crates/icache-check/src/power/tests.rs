//! The POWER decoder on real encodings, and the model driven by scripted
//! event sequences: for each rule, the sequence done right and the
//! sequences that miss a step.

use super::*;

const CODE: u64 = 0x10_0000;
const STORE_PC: u64 = 0x4000;
const OK: i64 = 0;

// Encodings from `powerpc64le-linux-gnu-as -mpower10` (binutils 2.40), as
// `objdump -d` prints them (little-endian bytes read as a word).
const DCBST: u32 = 0x7c00_186c; // dcbst 0,r3
const DCBST_RA: u32 = 0x7c04_286c; // dcbst r4,r5
const ICBI: u32 = 0x7c00_1fac; // icbi 0,r3
const ICBI_RA: u32 = 0x7c04_2fac; // icbi r4,r5
const HWSYNC: u32 = 0x7c00_04ac;
const LWSYNC: u32 = 0x7c20_04ac;
const PTESYNC: u32 = 0x7c40_04ac;
const EIEIO: u32 = 0x7c00_06ac;
const ISYNC: u32 = 0x4c00_012c;
const SC: u32 = 0x4400_0002;
const SCV: u32 = 0x4400_0001;
const STD: u32 = 0xf864_0000; // std r3,0(r4)
const STW: u32 = 0x9064_0008; // stw r3,8(r4)
const STB: u32 = 0x9864_0001; // stb r3,1(r4)
const STH: u32 = 0xb064_0002; // sth r3,2(r4)
const STDU_SP: u32 = 0xf821_ffe1; // stdu r1,-32(r1)
const STD_SP: u32 = 0xf801_0010; // std r0,16(r1)
const STW_SP: u32 = 0x9061_0008; // stw r3,8(r1)
const STDX: u32 = 0x7c64_292a; // stdx r3,r4,r5
const STWCX: u32 = 0x7c60_212d; // stwcx. r3,0,r4
const STFD: u32 = 0xd824_0008; // stfd f1,8(r4)
const STXV: u32 = 0xf444_001d; // stxv vs34,16(r4)
const LD: u32 = 0xe864_0000; // ld r3,0(r4)
const LWZ: u32 = 0x8064_0000; // lwz r3,0(r4)
const ADDI: u32 = 0x3863_0001; // addi r3,r3,1
const DCBF: u32 = 0x7c00_18ac; // dcbf 0,r3
const MR: u32 = 0x7c83_2378; // mr r3,r4
const BLR: u32 = 0x4e80_0020;

#[test]
fn the_cache_and_barrier_instructions_decode_as_such() {
    let cases = [
        (DCBST, PpcInsn::Dcbst),
        (DCBST_RA, PpcInsn::Dcbst),
        (ICBI, PpcInsn::Icbi),
        (ICBI_RA, PpcInsn::Icbi),
        (HWSYNC, PpcInsn::Sync),
        (PTESYNC, PpcInsn::Sync),
        (ISYNC, PpcInsn::Isync),
        (SC, PpcInsn::Sc),
        (SCV, PpcInsn::Sc),
    ];
    for (word, want) in cases {
        assert_eq!(decode(word), want, "{word:#010x}");
    }
}

#[test]
fn lightweight_barriers_and_other_instructions_are_not_maintenance() {
    for word in [LWSYNC, EIEIO, DCBF, STD, LD, ADDI, MR, BLR, 0] {
        assert_eq!(decode(word), PpcInsn::Other, "{word:#010x}");
    }
}

#[test]
fn every_store_gets_a_callback_and_stack_stores_do_not() {
    for word in [STD, STW, STB, STH, STDX, STWCX, STFD, STXV] {
        assert!(may_store(word), "{word:#010x}");
        assert!(!is_sp_based_store(word), "{word:#010x}");
    }
    for word in [STDU_SP, STD_SP, STW_SP] {
        assert!(is_sp_based_store(word), "{word:#010x}");
    }
    for word in [LD, LWZ, ADDI, BLR, ISYNC, SC] {
        assert!(!may_store(word), "{word:#010x}");
    }
}

fn model(snoop: bool) -> PowerModel {
    let mut m = PowerModel::new(Geometry {
        dblock: 128,
        iblock: 128,
        snoop,
    });
    m.vcpu_start(0);
    m.vcpu_start(1);
    m
}

/// vCPU `v` stores one instruction word at `addr`.
fn store(m: &PowerModel, v: u32, addr: u64) {
    m.shadow.store(v, addr, 4, STORE_PC);
}

fn op(m: &mut PowerModel, v: u32, insn: PpcInsn, ea: u64) {
    m.execute_op(v, insn, ea);
}

/// The standard sequence on vCPU `v`, with the steps `skip` names left out.
fn sequence(m: &mut PowerModel, v: u32, addr: u64, skip: &str) {
    if skip != "dcbst" {
        op(m, v, PpcInsn::Dcbst, addr);
    }
    if skip != "sync1" {
        op(m, v, PpcInsn::Sync, 0);
    }
    if skip != "icbi" {
        op(m, v, PpcInsn::Icbi, addr);
    }
    if skip != "sync2" {
        op(m, v, PpcInsn::Sync, 0);
    }
    if skip != "isync" {
        op(m, v, PpcInsn::Isync, 0);
    }
}

fn missing(m: &mut PowerModel, v: u32, pc: u64) -> Option<Missing> {
    m.execute(v, pc).map(|v| v.missing)
}

#[test]
fn the_full_sequence_makes_the_writer_coherent() {
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, CODE, "");
    assert_eq!(missing(&mut m, 0, CODE), None);
    assert_eq!(m.counts().violations, 0);
    assert_eq!(m.counts().code_stores, 1);
}

#[test]
fn each_missing_step_is_reported_as_that_step() {
    let cases = [
        ("dcbst", Missing::NotCleaned),
        ("sync1", Missing::NotInvalidated),
        ("icbi", Missing::NotInvalidated),
        ("sync2", Missing::NotInvalidated),
        ("isync", Missing::NoContextSync),
    ];
    for (skip, want) in cases {
        let mut m = model(false);
        store(&m, 0, CODE);
        sequence(&mut m, 0, CODE, skip);
        assert_eq!(missing(&mut m, 0, CODE), Some(want), "without {skip}");
    }
}

#[test]
fn a_dcbst_without_any_later_sync_is_not_cleaned() {
    let mut m = model(false);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Dcbst, CODE);
    op(&mut m, 0, PpcInsn::Icbi, CODE);
    op(&mut m, 0, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NotCleaned));
}

#[test]
fn a_sync_of_another_vcpu_completes_nothing() {
    let mut m = model(false);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Dcbst, CODE);
    op(&mut m, 1, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Icbi, CODE);
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NotInvalidated));
}

#[test]
fn blocks_cover_their_whole_size_and_no_more() {
    let mut m = model(false);
    let (first, last, next) = (CODE, CODE + 124, CODE + 128);
    for a in [first, last, next] {
        store(&m, 0, a);
    }
    sequence(&mut m, 0, CODE + 60, "");
    assert_eq!(missing(&mut m, 0, first), None);
    assert_eq!(missing(&mut m, 0, last), None);
    assert_eq!(missing(&mut m, 0, next), Some(Missing::NotCleaned));
}

#[test]
fn separate_data_and_instruction_block_sizes_are_honoured() {
    // (dblock, iblock, what the word one 32-byte step away misses after
    // one sequence on CODE)
    let cases = [
        (32, 64, Missing::NotCleaned),
        (64, 32, Missing::NotInvalidated),
        (64, 64, Missing::NoContextSync),
    ];
    for (dblock, iblock, want) in cases {
        let mut m = PowerModel::new(Geometry {
            dblock,
            iblock,
            snoop: false,
        });
        m.vcpu_start(0);
        m.vcpu_start(1);
        store(&m, 0, CODE);
        store(&m, 0, CODE + 32);
        sequence(&mut m, 0, CODE, "");
        assert_eq!(missing(&mut m, 0, CODE), None);
        // vCPU 1 ran no isync: a word both blocks covered lacks only that.
        assert_eq!(
            missing(&mut m, 1, CODE + 32),
            Some(want),
            "{dblock}/{iblock}"
        );
    }
}

#[test]
fn a_store_after_the_dcbst_is_not_covered_by_it() {
    let mut m = model(false);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Dcbst, CODE);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Icbi, CODE);
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NotCleaned));
}

#[test]
fn a_reader_thread_needs_its_own_isync() {
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, CODE, "");
    assert_eq!(missing(&mut m, 1, CODE), Some(Missing::NoContextSync));
    op(&mut m, 1, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 1, CODE), None);
}

#[test]
fn an_isync_before_the_invalidation_completed_does_not_count() {
    let mut m = model(false);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Dcbst, CODE);
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Icbi, CODE);
    op(&mut m, 1, PpcInsn::Isync, 0);
    op(&mut m, 0, PpcInsn::Sync, 0);
    assert_eq!(missing(&mut m, 1, CODE), Some(Missing::NoContextSync));
}

#[test]
fn a_system_call_return_synchronizes_its_thread_but_a_vdso_call_does_not() {
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, CODE, "isync");
    m.syscall(1, sysno::CLOCK_GETTIME, [0; 3]);
    m.syscall_return(1, sysno::CLOCK_GETTIME, OK);
    assert_eq!(missing(&mut m, 1, CODE), Some(Missing::NoContextSync));
    m.syscall(1, 64, [0; 3]); // getppid
    m.syscall_return(1, 64, 1);
    assert_eq!(missing(&mut m, 1, CODE), None);
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NoContextSync));
}

#[test]
fn membarrier_sync_core_synchronizes_every_thread_only_when_it_succeeds() {
    let cmd = [sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0];
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, CODE, "isync");
    m.syscall(0, sysno::MEMBARRIER, cmd);
    m.syscall_return(0, sysno::MEMBARRIER, -22);
    assert_eq!(missing(&mut m, 1, CODE), Some(Missing::NoContextSync));
    m.syscall(0, sysno::MEMBARRIER, cmd);
    m.syscall_return(0, sysno::MEMBARRIER, OK);
    assert_eq!(missing(&mut m, 1, CODE), None);
}

#[test]
fn a_new_thread_starts_synchronized() {
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, CODE, "isync");
    m.vcpu_start(2);
    assert_eq!(missing(&mut m, 2, CODE), None);
    assert!(!m.coherent_for_every_vcpu(CODE));
    op(&mut m, 0, PpcInsn::Isync, 0);
    op(&mut m, 1, PpcInsn::Isync, 0);
    assert!(m.coherent_for_every_vcpu(CODE));
}

#[test]
fn stores_the_guest_never_made_are_coherent() {
    let mut m = model(false);
    assert_eq!(missing(&mut m, 0, CODE), None);
    store(&m, 0, CODE + 4);
    assert_eq!(missing(&mut m, 0, CODE), None);
    assert_eq!(missing(&mut m, 0, CODE + 4), Some(Missing::NotCleaned));
}

#[test]
fn munmap_forgets_the_stores() {
    let mut m = model(false);
    store(&m, 0, CODE);
    m.syscall(0, sysno::MUNMAP, [CODE, 4096, 0]);
    m.syscall_return(0, sysno::MUNMAP, OK);
    assert_eq!(missing(&mut m, 0, CODE), None);
}

#[test]
fn with_icache_snoop_the_kernel_shortcut_suffices() {
    let mut m = model(true);
    store(&m, 0, CODE);
    store(&m, 0, CODE + 4096);
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Icbi, 0x7000_0000); // any address
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 0, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 0, CODE), None);
    assert_eq!(missing(&mut m, 0, CODE + 4096), None);
    assert_eq!(missing(&mut m, 1, CODE), Some(Missing::NoContextSync));
}

#[test]
fn with_icache_snoop_each_step_of_the_shortcut_is_needed() {
    let steps = [
        ("sync1", PpcInsn::Sync, Missing::NotInvalidated),
        ("icbi", PpcInsn::Icbi, Missing::NotInvalidated),
        ("sync2", PpcInsn::Sync, Missing::NotInvalidated),
        ("isync", PpcInsn::Isync, Missing::NoContextSync),
    ];
    for (skip, _, want) in steps {
        let mut m = model(true);
        store(&m, 0, CODE);
        for (step, insn, _) in steps {
            if step != skip {
                op(&mut m, 0, insn, CODE + 8192);
            }
        }
        assert_eq!(missing(&mut m, 0, CODE), Some(want), "without {skip}");
    }
}

#[test]
fn with_icache_snoop_a_store_of_another_vcpu_needs_that_vcpus_sync() {
    let mut m = model(true);
    store(&m, 1, CODE);
    sequence(&mut m, 0, 0x7000_0000, "dcbst");
    // Not written to storage: vCPU 1 ran no sync after its store.
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NotCleaned));
    op(&mut m, 1, PpcInsn::Sync, 0);
    sequence(&mut m, 0, 0x7000_0000, "dcbst");
    assert_eq!(missing(&mut m, 0, CODE), None);
}

#[test]
fn without_icache_snoop_the_shortcut_is_not_enough() {
    let mut m = model(false);
    store(&m, 0, CODE);
    sequence(&mut m, 0, 0x7000_0000, "dcbst");
    assert_eq!(missing(&mut m, 0, CODE), Some(Missing::NotCleaned));
}

#[test]
fn a_late_completion_of_an_older_clean_does_not_undo_a_newer_one() {
    let mut m = model(false);
    store(&m, 0, CODE);
    op(&mut m, 0, PpcInsn::Dcbst, CODE);
    store(&m, 1, CODE);
    op(&mut m, 1, PpcInsn::Dcbst, CODE);
    op(&mut m, 1, PpcInsn::Sync, 0);
    // vCPU 0's clean of the old data completes last.
    op(&mut m, 0, PpcInsn::Sync, 0);
    op(&mut m, 1, PpcInsn::Icbi, CODE);
    op(&mut m, 1, PpcInsn::Sync, 0);
    op(&mut m, 1, PpcInsn::Isync, 0);
    assert_eq!(missing(&mut m, 1, CODE), None);
}
