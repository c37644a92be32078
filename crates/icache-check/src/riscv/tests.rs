//! The RISC-V decoder, exhaustively where the space allows, and the model
//! driven by scripted event sequences: for each rule, the sequence done
//! right and the sequences that miss a step.

use super::*;

const CODE: u64 = 0x10_0000;
const STORE_PC: u64 = 0x4000;
const OK: i64 = 0;
const EINVAL: i64 = -22;

// Encodings from `riscv64-linux-gnu-as -march=rv64gc_zifencei` (binutils
// 2.40), as `objdump -d` prints them.
const SD: u32 = 0x00a5_b023; // sd a0,0(a1)
const SW: u32 = 0x00a5_a223; // sw a0,4(a1)
const SH: u32 = 0x00a5_9123; // sh a0,2(a1)
const SB: u32 = 0x00a5_80a3; // sb a0,1(a1)
const FSD: u32 = 0x00a5_b427; // fsd fa0,8(a1)
const FSW: u32 = 0x00a5_a427; // fsw fa0,8(a1)
const SD_SP: u32 = 0x00a1_3423; // sd a0,8(sp)
const FSD_SP: u32 = 0x00a1_3827; // fsd fa0,16(sp)
const AMOSWAP_D: u32 = 0x08b6_352f; // amoswap.d a0,a1,(a2)
const SC_D: u32 = 0x18b6_352f; // sc.d a0,a1,(a2)
const LD: u32 = 0x0005_b503; // ld a0,0(a1)
const LD_SP: u32 = 0x0081_3503; // ld a0,8(sp)
const LW: u32 = 0x0005_a503; // lw a0,0(a1)
const FLW: u32 = 0x0005_a507; // flw fa0,0(a1)
const ADDI: u32 = 0x0015_0513; // addi a0,a0,1
const JAL: u32 = 0x0000_00ef; // jal ra,.
const FENCE_I: u32 = 0x0000_100f;
const FENCE: u32 = 0x0ff0_000f;
const ECALL: u32 = 0x0000_0073;
const EBREAK: u32 = 0x0010_0073;
const RDCYCLE: u32 = 0xc000_2573;
const C_SDSP: u32 = 0xe42a;
const C_SWSP: u32 = 0xc42a;
const C_FSDSP: u32 = 0xa42a;
const C_SD: u32 = 0xe588;
const C_SW: u32 = 0xc588;
const C_FSD: u32 = 0xa588;
const C_LD: u32 = 0x6588;
const C_LW: u32 = 0x4588;
const C_LDSP: u32 = 0x6522;
const C_LWSP: u32 = 0x4522;
const C_ADDI: u32 = 0x0505;
const C_NOP: u32 = 0x0001;
const C_J: u32 = 0xa001;
const C_EBREAK: u32 = 0x9002;

fn len_of(bits: u32) -> u64 {
    insn_len(bits as u16).unwrap()
}

#[test]
fn instruction_lengths_follow_the_low_bits_of_every_parcel() {
    let mut counts = [0u32; 3];
    for low in 0..=u16::MAX {
        match insn_len(low) {
            Some(2) => counts[0] += 1,
            Some(4) => counts[1] += 1,
            None => counts[2] += 1,
            other => panic!("{low:#x}: {other:?}"),
        }
    }
    // 3/4 of the parcels are compressed; of the rest, 7/8 are 32-bit.
    assert_eq!(counts, [49152, 14336, 2048]);
    for bits in [C_SDSP, C_SD, C_LD, C_ADDI, C_NOP, C_J, C_EBREAK] {
        assert_eq!(len_of(bits), 2, "{bits:#x}");
    }
    for bits in [SD, FSD, AMOSWAP_D, LD, ADDI, JAL, FENCE_I, ECALL, RDCYCLE] {
        assert_eq!(len_of(bits), 4, "{bits:#x}");
    }
    assert_eq!(insn_len(0x001f), None); // 48-bit
    assert_eq!(insn_len(0x003f), None); // 64-bit
}

#[test]
fn every_fence_i_encoding_and_nothing_else_in_misc_mem_is_fence_i() {
    // imm[11:0] rs1 001 rd 0001111: the reserved fields take every value.
    for imm in 0..4096u32 {
        for rs1 in 0..32u32 {
            for rd in 0..32u32 {
                let bits = imm << 20 | rs1 << 15 | 0b001 << 12 | rd << 7 | 0b000_1111;
                assert_eq!(decode(bits, 4), RvInsn::FenceI, "{bits:#x}");
            }
        }
    }
    for funct3 in (0..8u32).filter(|&f| f != 1) {
        let bits = funct3 << 12 | 0b000_1111;
        assert_eq!(decode(bits, 4), RvInsn::Other, "funct3 {funct3}");
    }
    // funct3 001 under every other 32-bit opcode is something else.
    for opcode in (0..128u32).filter(|&o| o & 3 == 3 && o & 0x1c != 0x1c && o != 0b000_1111) {
        assert_eq!(
            decode(0b001 << 12 | opcode, 4),
            RvInsn::Other,
            "{opcode:#b}"
        );
    }
    assert_eq!(decode(FENCE, 4), RvInsn::Other);
}

#[test]
fn only_the_ecall_word_is_ecall() {
    for high in 0..=u16::MAX as u32 {
        let bits = high << 16 | 0x0073;
        let want = if high == 0 {
            RvInsn::Ecall
        } else {
            RvInsn::Other
        };
        assert_eq!(decode(bits, 4), want, "{bits:#x}");
    }
    for low in 0..=u16::MAX as u32 {
        assert_eq!(decode(low, 4) == RvInsn::Ecall, low == 0x0073, "{low:#x}");
    }
    assert_eq!(decode(EBREAK, 4), RvInsn::Other);
    assert_eq!(decode(RDCYCLE, 4), RvInsn::Other);
}

#[test]
fn no_compressed_instruction_is_fence_i_or_ecall() {
    for bits in 0..=u16::MAX as u32 {
        assert_eq!(decode(bits, 2), RvInsn::Other, "{bits:#x}");
    }
}

#[test]
fn stores_need_a_store_callback_and_loads_do_not() {
    let stores = [
        SD, SW, SH, SB, FSD, FSW, SD_SP, FSD_SP, AMOSWAP_D, SC_D, C_SDSP, C_SWSP, C_FSDSP, C_SD,
        C_SW, C_FSD,
    ];
    for bits in stores {
        assert!(may_store(bits, len_of(bits)), "{bits:#x}");
    }
    let others = [
        LD, LD_SP, LW, FLW, ADDI, JAL, ECALL, EBREAK, RDCYCLE, C_LD, C_LW, C_LDSP, C_LWSP, C_ADDI,
        C_NOP, C_J, C_EBREAK,
    ];
    for bits in others {
        assert!(!may_store(bits, len_of(bits)), "{bits:#x}");
    }
}

#[test]
fn only_stores_through_sp_are_sp_based() {
    for bits in [SD_SP, FSD_SP, C_SDSP, C_SWSP, C_FSDSP] {
        assert!(is_sp_based_store(bits, len_of(bits)), "{bits:#x}");
    }
    for bits in [
        SD, SW, FSD, AMOSWAP_D, LD_SP, C_SD, C_SW, C_FSD, C_LDSP, C_LWSP, ADDI,
    ] {
        assert!(!is_sp_based_store(bits, len_of(bits)), "{bits:#x}");
    }
    // Every base store with rs1 = sp, and with any other rs1.
    for rs1 in 0..32u32 {
        let bits = (SD & !(31 << 15)) | rs1 << 15;
        assert_eq!(is_sp_based_store(bits, 4), rs1 == 2, "rs1 {rs1}");
    }
}

/// A model with threads 0 (the writer) and 1 started.
fn two_threads() -> RiscvModel {
    let mut m = RiscvModel::new(false);
    m.vcpu_start(0);
    m.vcpu_start(1);
    m
}

fn store(m: &RiscvModel, v: u32, addr: u64) {
    m.shadow().store(v, addr, 4, STORE_PC);
}

fn run(m: &mut RiscvModel, v: u32) -> Option<(Missing, Class)> {
    m.execute(v, CODE, 4).map(|r| (r.missing, r.class))
}

fn flush(m: &mut RiscvModel, v: u32, flags: u64) {
    m.ecall(v, sysno::RISCV_FLUSH_ICACHE, [CODE, CODE + 4, flags]);
}

fn prctl(m: &mut RiscvModel, v: u32, ctx: u64, scope: u64, ret: i64) {
    let args = [sysno::PR_RISCV_SET_ICACHE_FLUSH_CTX, ctx, scope];
    m.syscall(v, sysno::PRCTL, args);
    m.syscall_return(v, sysno::PRCTL, ret);
}

fn membarrier(m: &mut RiscvModel, v: u32, ret: i64) {
    let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
    m.syscall(v, sysno::MEMBARRIER, [cmd, 0, 0]);
    m.syscall_return(v, sysno::MEMBARRIER, ret);
}

const NOT_FLUSHED_ANYWHERE: Option<(Missing, Class)> =
    Some((Missing::NotFlushed, Class::Maintenance));
const NOT_FLUSHED_HERE: Option<(Missing, Class)> = Some((Missing::NotFlushed, Class::Sync));
const FENCE_I_ONLY: Option<(Missing, Class)> =
    Some((Missing::FenceIWithoutOptIn, Class::Maintenance));

#[test]
fn code_the_guest_never_stored_is_coherent() {
    let mut m = two_threads();
    assert_eq!(run(&mut m, 0), None);
    store(&m, 0, CODE + 4);
    assert_eq!(run(&mut m, 1), None);
    assert_eq!(m.counts().violations, 0);
}

#[test]
fn stored_code_without_any_flush_is_reported_on_every_thread() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
    assert_eq!(m.counts().violations, 2);
    assert_eq!(m.class_counts().get(Class::Maintenance), 2);
}

#[test]
fn flush_icache_with_flags_0_makes_every_thread_coherent() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    flush(&mut m, 0, 0);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), None);
    assert_eq!(m.counts().maintenance_ops, 1);
    assert_eq!(m.counts().code_stores, 1);
}

#[test]
fn flush_icache_with_flags_1_covers_only_the_calling_thread() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    flush(&mut m, 0, sysno::FLUSH_ICACHE_LOCAL);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_HERE);
    let r = m.execute(1, CODE, 4).unwrap();
    assert!(r.hint.unwrap().contains("flags = 0"), "{r}");
    assert_eq!((r.store_pc, r.store_vcpu), (STORE_PC, 0));
}

#[test]
fn flush_icache_with_reserved_flags_fails_and_covers_nothing() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    flush(&mut m, 0, 2);
    flush(&mut m, 0, 3);
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn other_system_calls_at_an_ecall_cover_nothing() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.ecall(0, 64, [1, 2, 0]); // write
    m.syscall(0, 64, [1, 2, 0]);
    m.syscall_return(0, 64, 0);
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn a_flush_before_the_store_does_not_cover_it() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    flush(&mut m, 0, 0);
    store(&m, 0, CODE); // the code is rewritten
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
    flush(&mut m, 1, 0); // any thread's flush covers every store before it
    assert_eq!(run(&mut m, 0), None);
}

#[test]
fn a_bare_fence_i_is_not_enough_even_on_its_own_thread() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), FENCE_I_ONLY);
    let r = m.execute(0, CODE, 4).unwrap();
    assert!(
        r.hint.unwrap().contains("PR_RISCV_SET_ICACHE_FLUSH_CTX"),
        "{r}"
    );
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn fence_i_after_the_per_thread_opt_in_covers_only_that_thread() {
    use sysno::{PR_RISCV_CTX_SW_FENCEI_ON as ON, PR_RISCV_SCOPE_PER_THREAD as THREAD};
    let mut m = two_threads();
    prctl(&mut m, 0, ON, THREAD, OK);
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_HERE);
    // Thread 1 did not opt in: its own fence.i is not durable.
    m.fence_i(1);
    assert_eq!(
        run(&mut m, 1),
        Some((Missing::FenceIWithoutOptIn, Class::Sync))
    );
}

#[test]
fn fence_i_after_the_per_process_opt_in_covers_each_thread_that_runs_it() {
    use sysno::{PR_RISCV_CTX_SW_FENCEI_ON as ON, PR_RISCV_SCOPE_PER_PROCESS as PROCESS};
    let mut m = two_threads();
    prctl(&mut m, 1, ON, PROCESS, OK);
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_HERE);
    m.fence_i(1);
    assert_eq!(run(&mut m, 1), None);
}

#[test]
fn a_refused_or_withdrawn_opt_in_leaves_fence_i_not_durable() {
    use sysno::{PR_RISCV_CTX_SW_FENCEI_OFF as OFF, PR_RISCV_CTX_SW_FENCEI_ON as ON};
    use sysno::{PR_RISCV_SCOPE_PER_PROCESS as PROCESS, PR_RISCV_SCOPE_PER_THREAD as THREAD};
    // Refused, as QEMU 7.2 and kernels before 6.10 do.
    let mut m = two_threads();
    prctl(&mut m, 0, ON, PROCESS, EINVAL);
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), FENCE_I_ONLY);
    // Withdrawn, per process and per thread.
    for scope in [PROCESS, THREAD] {
        let mut m = two_threads();
        prctl(&mut m, 0, ON, scope, OK);
        prctl(&mut m, 0, OFF, scope, OK);
        store(&m, 0, CODE);
        m.fence_i(0);
        assert_eq!(run(&mut m, 0), FENCE_I_ONLY, "scope {scope}");
    }
    // Unknown context or scope values change nothing.
    let mut m = two_threads();
    prctl(&mut m, 0, 7, THREAD, OK);
    prctl(&mut m, 0, ON, 7, OK);
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), FENCE_I_ONLY);
}

#[test]
fn a_fence_i_before_the_opt_in_does_not_become_durable() {
    use sysno::{PR_RISCV_CTX_SW_FENCEI_ON as ON, PR_RISCV_SCOPE_PER_THREAD as THREAD};
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.fence_i(0);
    prctl(&mut m, 0, ON, THREAD, OK);
    assert_eq!(run(&mut m, 0), FENCE_I_ONLY);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), None);
}

#[test]
fn membarrier_sync_core_covers_every_thread_for_stores_before_it() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    membarrier(&mut m, 0, OK);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), None);
    // Failed: nothing.
    let mut m = two_threads();
    store(&m, 0, CODE);
    membarrier(&mut m, 0, EINVAL);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
    // A store made while the call is in progress is not covered.
    let mut m = two_threads();
    let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
    m.syscall(0, sysno::MEMBARRIER, [cmd, 0, 0]);
    store(&m, 1, CODE);
    m.syscall_return(0, sysno::MEMBARRIER, OK);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
    // Another membarrier command covers nothing.
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.syscall(0, sysno::MEMBARRIER, [8, 0, 0]); // PRIVATE_EXPEDITED
    m.syscall_return(0, sysno::MEMBARRIER, OK);
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn a_system_call_return_is_not_a_synchronization() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.syscall(1, 124, [0; 3]); // sched_yield
    m.syscall_return(1, 124, 0);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn a_new_thread_is_coherent_only_for_process_wide_flushes_before_it() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    flush(&mut m, 0, sysno::FLUSH_ICACHE_LOCAL);
    m.vcpu_start(2);
    assert_eq!(run(&mut m, 2), NOT_FLUSHED_HERE);
    flush(&mut m, 0, 0);
    m.vcpu_start(3);
    assert_eq!(run(&mut m, 3), None);
    assert_eq!(m.counts().vcpus, 4);
}

#[test]
fn a_reused_thread_index_forgets_what_the_old_thread_was_coherent_for() {
    let mut m = two_threads();
    store(&m, 1, CODE);
    flush(&mut m, 1, sysno::FLUSH_ICACHE_LOCAL);
    assert_eq!(run(&mut m, 1), None);
    assert!(m.shadow().known_coherent(1, CODE));
    // Thread 1 exits; QEMU gives its index to the next thread.
    m.vcpu_start(1);
    assert!(!m.shadow().known_coherent(1, CODE));
    // The only thread it was flushed for is gone.
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn a_new_thread_inherits_the_per_thread_opt_in_of_its_creator() {
    use sysno::{PR_RISCV_CTX_SW_FENCEI_ON as ON, PR_RISCV_SCOPE_PER_THREAD as THREAD};
    let mut m = two_threads();
    prctl(&mut m, 0, ON, THREAD, OK);
    m.syscall(0, sysno::CLONE, [0; 3]);
    m.vcpu_start(2);
    m.syscall_return(0, sysno::CLONE, 2);
    store(&m, 2, CODE);
    m.fence_i(2);
    assert_eq!(run(&mut m, 2), None);
    // Thread 1 did not opt in, so its child does not inherit it.
    m.syscall(1, sysno::CLONE3, [0; 3]);
    m.vcpu_start(3);
    store(&m, 3, CODE);
    m.fence_i(3);
    assert_eq!(run(&mut m, 3), FENCE_I_ONLY);
}

#[test]
fn with_one_hart_any_fence_i_or_flush_covers_every_thread() {
    let mut m = RiscvModel::new(true);
    m.vcpu_start(0);
    m.vcpu_start(1);
    store(&m, 0, CODE);
    m.fence_i(0);
    assert_eq!(run(&mut m, 0), None);
    assert_eq!(run(&mut m, 1), None);
    store(&m, 0, CODE);
    flush(&mut m, 0, sysno::FLUSH_ICACHE_LOCAL);
    assert_eq!(run(&mut m, 1), None);
    store(&m, 0, CODE);
    assert_eq!(run(&mut m, 1), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn an_instruction_across_two_words_is_stale_if_either_word_is() {
    let mut m = two_threads();
    let pc = CODE + 2; // a 4-byte instruction at a 2-byte boundary
    store(&m, 0, CODE + 4); // its second half only
    assert!(m.execute(0, pc, 4).is_some());
    assert!(m.execute(0, pc, 2).is_none()); // a 2-byte one there is untouched
    flush(&mut m, 0, 0);
    assert!(m.execute(0, pc, 4).is_none());
    store(&m, 0, CODE); // now its first half
    assert!(m.execute(1, pc, 4).is_some());
    assert!(m.execute(1, CODE + 4, 4).is_none());
}

#[test]
fn only_process_wide_coverage_lets_the_plugin_skip_an_instruction() {
    let mut m = two_threads();
    assert!(m.coherent_for_every_vcpu(CODE, 4)); // never stored
    store(&m, 0, CODE);
    assert!(!m.coherent_for_every_vcpu(CODE, 4));
    flush(&mut m, 0, sysno::FLUSH_ICACHE_LOCAL);
    flush(&mut m, 1, sysno::FLUSH_ICACHE_LOCAL);
    // Both threads are coherent, but a thread started later would not be.
    assert!(!m.coherent_for_every_vcpu(CODE, 4));
    flush(&mut m, 1, 0);
    assert!(m.coherent_for_every_vcpu(CODE, 4));
    assert_eq!(m.counts().code_stores, 1);
}

#[test]
fn unmapped_and_remapped_pages_forget_their_stores() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    m.syscall(0, sysno::MUNMAP, [CODE, 4096, 0]);
    m.syscall_return(0, sysno::MUNMAP, 0);
    assert_eq!(run(&mut m, 0), None);
    store(&m, 0, CODE);
    m.syscall(0, sysno::MMAP, [0, 100, 0]);
    m.syscall_return(0, sysno::MMAP, CODE as i64);
    assert_eq!(run(&mut m, 0), None);
    // A failed munmap forgets nothing.
    store(&m, 0, CODE);
    m.syscall(0, sysno::MUNMAP, [CODE, 4096, 0]);
    m.syscall_return(0, sysno::MUNMAP, EINVAL);
    assert_eq!(run(&mut m, 0), NOT_FLUSHED_ANYWHERE);
}

#[test]
fn reports_name_the_thread_the_address_and_the_store() {
    let mut m = two_threads();
    store(&m, 0, CODE);
    let r = m.execute(1, CODE, 4).unwrap();
    let text = r.to_string();
    assert!(
        text.starts_with(
            "icache-check: violation: vCPU 1 executed 0x100000: not flushed for this thread \
             (stored by pc 0x4000 on vCPU 0)"
        ),
        "{text}"
    );
}

/// One event of a random sequence for the brute-force reference.
#[derive(Clone, Copy, Debug)]
enum Ev {
    Start(u32),
    Store(u32, u64),
    FenceI(u32),
    Flush(u32, u64),
    Prctl(u32, u64, u64),
    /// membarrier SYNC_CORE by the thread, with a store by another thread
    /// between its entry and its return when given.
    Membarrier(u32, Option<(u32, u64)>),
    Exec(u32, u64),
}

/// The reference: replays the whole history for every execution. A store
/// at index `s` is coherent for thread `v` (started at `born`) when a later
/// event covers it: a flags-0 flush or a membarrier issued after it by
/// anyone; a flags-1 flush by `v` after both; a `fence.i` by `v` after both
/// while `v` was opted in. It is "fence.i only" when `v` ran a `fence.i`
/// after both without the opt-in.
fn reference(history: &[Ev], v: u32, addr: u64) -> Option<Missing> {
    let s = history.iter().rposition(
        |e| matches!(*e, Ev::Store(_, a) | Ev::Membarrier(_, Some((_, a))) if a == addr),
    )?;
    // A store inside a membarrier happened after its issue.
    let born = history
        .iter()
        .rposition(|e| matches!(*e, Ev::Start(t) if t == v))
        .unwrap_or(0);
    let (mut process_on, mut thread_on) = (false, [false; 3]);
    let mut fenced = false;
    for (i, e) in history.iter().enumerate() {
        let after = i > s && i > born;
        match *e {
            Ev::Start(t) => thread_on[t as usize] = false,
            Ev::Prctl(t, ctx, scope) => {
                let on = match ctx {
                    0 => true,
                    1 => false,
                    _ => continue,
                };
                match scope {
                    0 => process_on = on,
                    1 => thread_on[t as usize] = on,
                    _ => {}
                }
            }
            Ev::Flush(_, 0) if i > s => return None,
            Ev::Flush(t, 1) if t == v && after => return None,
            // A store between a membarrier's entry and return is at the
            // membarrier's own index: not covered by it.
            Ev::Membarrier(..) if i > s => return None,
            Ev::FenceI(t) if t == v && after => {
                if process_on || thread_on[t as usize] {
                    return None;
                }
                fenced = true;
            }
            _ => {}
        }
    }
    Some(if fenced {
        Missing::FenceIWithoutOptIn
    } else {
        Missing::NotFlushed
    })
}

#[test]
fn the_model_agrees_with_a_brute_force_reference_on_random_sequences() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (mut executions, mut stale) = (0, 0);
    for _ in 0..3000 {
        let mut m = RiscvModel::new(false);
        let mut history = Vec::new();
        for t in 0..3 {
            m.vcpu_start(t);
            history.push(Ev::Start(t));
        }
        for _ in 0..40 {
            let v = next(3) as u32;
            let addr = CODE + 4 * next(3);
            let ev = match next(16) {
                0 => Ev::Start(v),
                1..=4 => Ev::Store(v, addr),
                5..=6 => Ev::FenceI(v),
                7 => Ev::Flush(v, next(3)),
                8 => Ev::Prctl(v, next(3), next(3)),
                9 => Ev::Membarrier(v, (next(2) == 0).then(|| ((v + 1) % 3, addr))),
                _ => Ev::Exec(v, addr),
            };
            match ev {
                Ev::Start(t) => m.vcpu_start(t),
                Ev::Store(t, a) => store(&m, t, a),
                Ev::FenceI(t) => m.fence_i(t),
                Ev::Flush(t, flags) => m.ecall(t, sysno::RISCV_FLUSH_ICACHE, [0, 0, flags]),
                Ev::Prctl(t, ctx, scope) => prctl(&mut m, t, ctx, scope, OK),
                Ev::Membarrier(t, between) => {
                    let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
                    m.syscall(t, sysno::MEMBARRIER, [cmd, 0, 0]);
                    if let Some((u, a)) = between {
                        store(&m, u, a);
                    }
                    m.syscall_return(t, sysno::MEMBARRIER, OK);
                }
                Ev::Exec(t, a) => {
                    let got = m.execute(t, a, 4).map(|r| r.missing);
                    let want = reference(&history, t, a);
                    assert_eq!(got, want, "thread {t} at {a:#x} after {history:?}");
                    executions += 1;
                    stale += got.is_some() as u32;
                }
            }
            history.push(ev);
        }
    }
    // Both answers occur often enough for the comparison to mean something.
    assert!(
        stale > executions / 10 && stale < executions * 9 / 10,
        "{stale} of {executions}"
    );
}
