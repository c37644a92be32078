//! The model driven by scripted event sequences: for each rule, one sequence
//! done right and one per missing step.

use super::*;
use crate::decode::{DcOp, DsbOption};

const CODE: u64 = 0x10_0000;
/// `mov w0, #1`: not on the list of concurrently modifiable instructions.
const MOV: u32 = 0x5280_0020;
const STORE_PC: u64 = 0x4000;
const LINE: u64 = 64;
const A72: Config = Config {
    dline: LINE,
    iline: LINE,
    idc: false,
    dic: false,
    pipt_icache: true,
};

/// One scripted event; `V` is the vCPU.
#[derive(Clone, Copy)]
enum E {
    Start(u32),
    Store(u32, u64),
    Dc(u32, u64),
    Ic(u32, u64),
    IcAllu(u32),
    IcAlluIs(u32),
    Dsb(u32),
    DsbOpt(u32, u8),
    Dmb(u32, u8),
    Isb(u32),
    /// A store-release's ordering, before its own store (a `Store` next).
    Rel(u32),
    Syscall(u32, i64, [u64; 3], i64),
    Exec(u32, u64),
    /// An execution of a given instruction word.
    ExecW(u32, u64, u32),
    /// An `ic ivau` of a physical address through a guest page.
    IcVia(u32, u64, u64),
    /// An execution of a physical address through a guest page.
    ExecVia(u32, u64, u64),
}
use E::*;

fn run(cfg: Config, script: &[E]) -> Vec<Violation> {
    let mut m = Model::new(cfg);
    let mut out = Vec::new();
    for &e in script {
        match e {
            Start(v) => m.vcpu_start(v),
            Store(v, a) => m.store(v, a, 4, STORE_PC),
            Dc(v, a) => m.maintenance(
                v,
                Insn::DcClean {
                    op: DcOp::Cvau,
                    rt: 0,
                },
                a,
            ),
            Ic(v, a) => m.maintenance(v, Insn::IcIvau { rt: 0 }, a),
            IcAllu(v) => m.maintenance(v, Insn::IcIallu, 0),
            IcAlluIs(v) => m.maintenance(v, Insn::IcIalluis, 0),
            Dsb(v) => m.maintenance(v, Insn::Dsb(DsbOption(0b1011)), 0),
            DsbOpt(v, crm) => m.maintenance(v, Insn::Dsb(DsbOption(crm)), 0),
            Dmb(v, crm) => m.maintenance(v, Insn::Dmb(DsbOption(crm)), 0),
            Isb(v) => m.maintenance(v, Insn::Isb, 0),
            Rel(v) => m.maintenance(v, Insn::StoreRelease, 0),
            Syscall(v, num, args, ret) => {
                m.syscall(v, num, args);
                m.syscall_return(v, num, ret);
            }
            Exec(v, pc) => out.extend(m.execute(v, pc, MOV)),
            ExecW(v, pc, word) => out.extend(m.execute(v, pc, word)),
            IcVia(v, a, page) => m.maintenance_via(v, Insn::IcIvau { rt: 0 }, a, Some(page)),
            ExecVia(v, pc, page) => out.extend(m.execute_via(v, pc, Some(page), MOV)),
        }
    }
    let violations = out.iter().filter(|v| v.class != Class::PatchSite).count();
    assert_eq!(m.counts().violations, violations as u64);
    let reported = Class::ALL
        .map(|c| m.class_counts().get(c))
        .iter()
        .sum::<u64>();
    assert_eq!(reported, out.len() as u64);
    out
}

/// The full sequence on one line, for vCPU `v`, with `skip` left out.
fn sequence(v: u32, addr: u64, skip: &str) -> Vec<E> {
    let steps = [
        ("clean", Dc(v, addr)),
        ("dsb1", Dsb(v)),
        ("ic", Ic(v, addr)),
        ("dsb2", Dsb(v)),
        ("isb", Isb(v)),
    ];
    steps
        .into_iter()
        .filter(|(name, _)| *name != skip)
        .map(|(_, e)| e)
        .collect()
}

fn script(skip: &str) -> Vec<E> {
    let mut s = vec![Start(0), Store(0, CODE)];
    s.extend(sequence(0, CODE, skip));
    s.push(Exec(0, CODE));
    s
}

fn only(v: &[Violation]) -> (Missing, u64) {
    assert_eq!(v.len(), 1, "expected exactly one violation: {v:?}");
    (v[0].missing, v[0].pc)
}

#[test]
fn correct_sequence_reports_nothing() {
    assert_eq!(run(A72, &script("")), vec![]);
}

#[test]
fn missing_clean_is_reported() {
    assert_eq!(
        only(&run(A72, &script("clean"))),
        (Missing::NotCleaned, CODE)
    );
}

#[test]
fn missing_first_dsb_is_reported_as_not_invalidated() {
    let v = run(A72, &script("dsb1"));
    assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
    assert!(v[0].hint.unwrap().contains("before the clean completed"));
}

#[test]
fn missing_invalidate_is_reported() {
    assert_eq!(
        only(&run(A72, &script("ic"))),
        (Missing::NotInvalidated, CODE)
    );
}

#[test]
fn missing_second_dsb_is_reported() {
    let v = run(A72, &script("dsb2"));
    assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
    assert!(v[0].hint.unwrap().contains("no dsb completed it"));
}

#[test]
fn missing_isb_is_reported() {
    assert_eq!(
        only(&run(A72, &script("isb"))),
        (Missing::NoContextSync, CODE)
    );
}

#[test]
fn violation_names_the_store_and_both_vcpus() {
    let v = run(A72, &[Start(0), Start(1), Store(1, CODE), Exec(0, CODE)]);
    assert_eq!(v[0].vcpu, 0);
    assert_eq!(v[0].store_vcpu, 1);
    assert_eq!(v[0].store_pc, STORE_PC);
    let text = v[0].to_string();
    assert!(
        text.contains("vCPU 0 executed 0x100000: not cleaned"),
        "{text}"
    );
    assert!(text.contains("stored by pc 0x4000 on vCPU 1"), "{text}");
}

#[test]
fn every_stale_execution_counts() {
    let v = run(
        A72,
        &[Start(0), Store(0, CODE), Exec(0, CODE), Exec(0, CODE)],
    );
    assert_eq!(v.len(), 2);
}

#[test]
fn code_never_stored_is_coherent() {
    assert_eq!(
        run(A72, &[Start(0), Store(0, CODE), Exec(0, CODE + 4)]),
        vec![]
    );
    assert_eq!(run(A72, &[Start(0), Exec(0, 0x40_0000)]), vec![]);
}

#[test]
fn unchanged_instruction_next_to_a_rewritten_one_is_not_reported() {
    let mut s = vec![Start(0), Store(0, CODE), Store(0, CODE + 4)];
    s.extend(sequence(0, CODE, ""));
    // Rewrite only the first word and skip the whole sequence.
    s.extend([Store(0, CODE), Exec(0, CODE), Exec(0, CODE + 4)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn store_after_the_clean_needs_a_new_clean() {
    let mut s = vec![Start(0), Dc(0, CODE), Store(0, CODE)];
    s.extend([Dsb(0), Ic(0, CODE), Dsb(0), Isb(0), Exec(0, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn clean_is_per_line() {
    let mut s = vec![Start(0), Store(0, CODE + LINE)];
    s.extend(sequence(0, CODE, ""));
    s.push(Exec(0, CODE + LINE));
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE + LINE));
}

#[test]
fn unaligned_range_that_misses_the_last_line_is_reported() {
    // Code straddles a line boundary; the flush loop starts at the
    // unaligned address and steps one line, so it never reaches line 2.
    let start = CODE + LINE - 4;
    let mut s = vec![Start(0), Store(0, start), Store(0, start + 4)];
    s.extend([Dc(0, start), Dsb(0), Ic(0, start), Dsb(0), Isb(0)]);
    s.extend([Exec(0, start), Exec(0, start + 4)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, start + 4));
    // Aligning the start down and covering both lines is correct.
    let mut s = vec![Start(0), Store(0, start), Store(0, start + 4)];
    s.extend([Dc(0, CODE), Dc(0, CODE + LINE), Dsb(0)]);
    s.extend([Ic(0, CODE), Ic(0, CODE + LINE), Dsb(0), Isb(0)]);
    s.extend([Exec(0, start), Exec(0, start + 4)]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn other_thread_without_pipeline_flush_is_reported() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([Exec(0, CODE), Exec(1, CODE)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NoContextSync, CODE));
    assert_eq!(v[0].vcpu, 1);
}

const SYNC_CORE: [u64; 3] = [sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE, 0, 0];

#[test]
fn membarrier_sync_core_synchronizes_every_vcpu() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([Syscall(0, sysno::MEMBARRIER, SYNC_CORE, 0), Exec(1, CODE)]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn failed_membarrier_does_not_synchronize() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([Syscall(0, sysno::MEMBARRIER, SYNC_CORE, -1), Exec(1, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
}

#[test]
fn membarrier_before_the_invalidation_completed_does_not_count() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
    s.extend([
        Ic(0, CODE),
        Syscall(0, sysno::MEMBARRIER, SYNC_CORE, 0),
        Dsb(0),
    ]);
    s.push(Exec(1, CODE));
    assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
}

#[test]
fn other_membarrier_commands_do_not_synchronize() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([Syscall(0, sysno::MEMBARRIER, [8, 0, 0], 0), Exec(1, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
}

#[test]
fn syscall_return_synchronizes_only_the_caller() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, "isb"));
    s.extend([Syscall(0, 64, [1, 0, 0], 1), Exec(0, CODE), Exec(1, CODE)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NoContextSync, CODE));
    assert_eq!(v[0].vcpu, 1);
}

#[test]
fn new_thread_starts_synchronized() {
    let mut s = vec![Start(0), Store(0, CODE)];
    s.extend(sequence(0, CODE, "isb"));
    s.extend([Start(1), Exec(1, CODE)]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn clean_by_another_vcpu_completes_at_that_vcpus_dsb() {
    // vCPU 1 cleans, but only vCPU 0 runs a dsb: the clean is not complete.
    let s = [
        Start(0),
        Start(1),
        Store(0, CODE),
        Dc(1, CODE),
        Dsb(0),
        Ic(0, CODE),
        Dsb(0),
        Isb(0),
        Exec(0, CODE),
    ];
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn store_by_another_vcpu_before_the_clean_is_covered() {
    let mut s = vec![Start(0), Start(1), Store(1, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.push(Exec(0, CODE));
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn dsb_ishst_and_nsh_do_not_complete_maintenance() {
    for crm in [0b1010, 0b0111] {
        let s = [
            Start(0),
            Store(0, CODE),
            Dc(0, CODE),
            DsbOpt(0, crm),
            Ic(0, CODE),
            Dsb(0),
            Isb(0),
            Exec(0, CODE),
        ];
        assert_eq!(
            only(&run(A72, &s)),
            (Missing::NotInvalidated, CODE),
            "{crm:#b}"
        );
    }
}

#[test]
fn dsb_sy_completes_maintenance() {
    let s = [
        Start(0),
        Store(0, CODE),
        Dc(0, CODE),
        DsbOpt(0, 0b1111),
        Ic(0, CODE),
        DsbOpt(0, 0b1111),
        Isb(0),
        Exec(0, CODE),
    ];
    assert_eq!(run(A72, &s), vec![]);
}

const IDC: Config = Config { idc: true, ..A72 };
const DIC: Config = Config { dic: true, ..A72 };

#[test]
fn with_idc_the_clean_is_not_needed() {
    assert_eq!(run(IDC, &script("clean")), vec![]);
}

#[test]
fn with_idc_a_missing_dsb_is_still_reported() {
    let s = [
        Start(0),
        Store(0, CODE),
        Ic(0, CODE),
        Dsb(0),
        Isb(0),
        Exec(0, CODE),
    ];
    assert_eq!(only(&run(IDC, &s)), (Missing::NotInvalidated, CODE));
}

#[test]
fn with_dic_the_invalidate_is_not_needed() {
    let s = [
        Start(0),
        Store(0, CODE),
        Dc(0, CODE),
        Dsb(0),
        Isb(0),
        Exec(0, CODE),
    ];
    assert_eq!(run(DIC, &s), vec![]);
}

#[test]
fn with_dic_a_missing_isb_is_still_reported() {
    let s = [Start(0), Store(0, CODE), Dc(0, CODE), Dsb(0), Exec(0, CODE)];
    assert_eq!(only(&run(DIC, &s)), (Missing::NoContextSync, CODE));
}

#[test]
fn with_dic_a_missing_clean_is_still_reported() {
    let s = [Start(0), Store(0, CODE), Dsb(0), Isb(0), Exec(0, CODE)];
    assert_eq!(only(&run(DIC, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn ic_iallu_invalidates_only_the_issuing_vcpu() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
    s.extend([IcAllu(0), Dsb(0), Isb(0), Exec(0, CODE), Exec(1, CODE)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NotInvalidated, CODE));
    assert_eq!(v[0].vcpu, 1);
}

#[test]
fn ic_iallu_still_needs_an_isb() {
    let s = [
        Start(0),
        Store(0, CODE),
        Dc(0, CODE),
        Dsb(0),
        IcAllu(0),
        Dsb(0),
        Exec(0, CODE),
    ];
    assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE));
}

#[test]
fn ic_ialluis_invalidates_every_vcpu() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE), Dsb(0)];
    s.extend([
        IcAlluIs(0),
        Dsb(0),
        Isb(0),
        Isb(1),
        Exec(0, CODE),
        Exec(1, CODE),
    ]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn munmap_and_mmap_forget_the_stores() {
    let gone = [CODE, PAGE_SIZE, 0];
    let s = [
        Start(0),
        Store(0, CODE),
        Syscall(0, sysno::MUNMAP, gone, 0),
        Exec(0, CODE),
    ];
    assert_eq!(run(A72, &s), vec![]);
    let fresh = [0, PAGE_SIZE, 7];
    let s = [
        Start(0),
        Store(0, CODE),
        Syscall(0, sysno::MMAP, fresh, CODE as i64),
        Exec(0, CODE),
    ];
    assert_eq!(run(A72, &s), vec![]);
    // A length that is not a multiple of the page size covers the last page.
    let short = [CODE, 100, 0];
    let s = [
        Start(0),
        Store(0, CODE + 200),
        Syscall(0, sysno::MUNMAP, short, 0),
        Exec(0, CODE + 200),
    ];
    assert_eq!(run(A72, &s), vec![]);
    // A failed munmap forgets nothing.
    let s = [
        Start(0),
        Store(0, CODE),
        Syscall(0, sysno::MUNMAP, gone, -22),
        Exec(0, CODE),
    ];
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn page_is_stored_tracks_stores_and_unmaps() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    assert!(!m.page_is_stored(CODE));
    m.store(0, CODE + 8, 8, STORE_PC);
    assert!(m.page_is_stored(CODE));
    m.syscall(0, sysno::MUNMAP, [CODE, PAGE_SIZE, 0]);
    m.syscall_return(0, sysno::MUNMAP, 0);
    assert!(!m.page_is_stored(CODE));
}

#[test]
fn wide_store_marks_every_word_it_covers() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.store(0, CODE + 2, 8, STORE_PC); // bytes 2..10 -> words 0, 4, 8
    for off in [0, 4, 8] {
        assert_eq!(
            m.execute(0, CODE + off, MOV).map(|v| v.missing),
            Some(Missing::NotCleaned)
        );
    }
    assert_eq!(m.execute(0, CODE + 12, MOV), None);
}

#[test]
fn store_across_a_page_boundary_marks_both_pages() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.store(0, CODE + PAGE_SIZE - 4, 8, STORE_PC);
    assert!(m.page_is_stored(CODE) && m.page_is_stored(CODE + PAGE_SIZE));
}

#[test]
fn summary_counts_code_stores_maintenance_and_vcpus() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.vcpu_start(1);
    m.store(0, CODE, 8, STORE_PC); // one store, two instructions
    m.store(0, CODE + 0x800, 4, STORE_PC); // never executed
    for e in sequence(0, CODE, "") {
        if let Dc(v, a) = e {
            m.maintenance(
                v,
                Insn::DcClean {
                    op: DcOp::Civac,
                    rt: 3,
                },
                a,
            );
        } else if let Ic(v, a) = e {
            m.maintenance(v, Insn::IcIvau { rt: 3 }, a);
        } else if let Dsb(v) = e {
            m.maintenance(v, Insn::Dsb(DsbOption(0b1011)), 0);
        } else if let Isb(v) = e {
            m.maintenance(v, Insn::Isb, 0);
        }
    }
    assert_eq!(m.execute(0, CODE, MOV), None);
    assert_eq!(m.execute(0, CODE + 4, MOV), None);
    let want = "icache-check: 0 violations, 1 code stores, 2 maintenance ops, 2 vCPUs";
    assert_eq!(m.counts().to_string(), want);
}

const FLAG: u64 = 0x20_0000;
const ISH: u8 = 0b1011;
const ISHST: u8 = 0b1010;

#[test]
fn clean_ordered_by_dmb_completes_at_the_observers_dsb() {
    // MP.RF+dc.cvau-dmb.ish+dsb.ish-ic.ivau-dsb.ish-isb (Forbidden).
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE)];
    s.extend([Dmb(0, ISH), Store(0, FLAG)]);
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn clean_ordered_by_dmb_counts_for_the_observers_ic() {
    // MP.RF+dc-dmb+addr-ic-dsb-isb (Forbidden): no dsb before the ic.
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE)];
    s.extend([Dmb(0, ISH), Store(0, FLAG)]);
    s.extend([Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(run(A72, &s), vec![]);
}

#[test]
fn clean_before_dmb_is_not_published_until_the_next_store() {
    // The observer's maintenance ran before the flag store: nothing ordered.
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE)];
    s.extend([Dmb(0, ISH), Dsb(1), Ic(1, CODE), Dsb(1), Isb(1)]);
    s.extend([Store(0, FLAG), Exec(1, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn dmb_ishst_does_not_publish_a_clean() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Dc(0, CODE)];
    s.extend([Dmb(0, ISHST), Store(0, FLAG)]);
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn dmb_without_a_clean_publishes_nothing_without_idc() {
    // MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb (Allowed).
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend([Dmb(0, ISHST), Store(0, FLAG)]);
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn with_idc_a_store_ordered_by_dmb_ishst_is_clean_for_the_observer() {
    // IDC1.MP.RF+dmb.st+dsb.ish-ic.ivau-dsb.ish-isb (Forbidden).
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend([Dmb(0, ISHST), Store(0, FLAG)]);
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(run(IDC, &s), vec![]);
    // Without the reader's ic it is still not invalidated.
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend([Dmb(0, ISHST), Store(0, FLAG), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(only(&run(IDC, &s)), (Missing::NotInvalidated, CODE));
}

#[test]
fn with_idc_a_store_ordered_by_a_store_release_is_clean_for_the_observer() {
    // Issue 11: with IDC, a store ordered before the `ic` by a store-release
    // is enough, as with `dmb ishst`. The flag store is the `stlr`'s own.
    let stlr = |v| [Rel(v), Store(v, FLAG)];
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(stlr(0));
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(run(IDC, &s), vec![]);
    // Without IDC the data is not cleaned.
    assert_eq!(only(&run(A72, &s)), (Missing::NotCleaned, CODE));
    // The observer's maintenance before the release publishes nothing.
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1)]);
    s.extend(stlr(0));
    s.push(Exec(1, CODE));
    assert_eq!(only(&run(IDC, &s)), (Missing::NotCleaned, CODE));
    // A store after the release is not ordered by it.
    let mut s = vec![Start(0), Start(1)];
    s.extend(stlr(0));
    s.extend([Store(0, CODE), Store(0, FLAG)]);
    s.extend([Dsb(1), Ic(1, CODE), Dsb(1), Isb(1), Exec(1, CODE)]);
    assert_eq!(only(&run(IDC, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn a_store_release_is_watched_only_with_idc() {
    assert!(!Model::new(A72).needs_execution(Insn::StoreRelease));
    assert!(Model::new(IDC).needs_execution(Insn::StoreRelease));
    assert!(Model::new(A72).needs_execution(Insn::Isb));
    assert!(!Model::new(IDC).needs_execution(Insn::Other));
}

#[test]
fn with_idc_and_dic_the_observers_isb_is_enough() {
    // DIC1.MP.RF+dmb.st+ctrlisb (Forbidden); IDC1.MP.RF+dmb.st+ctrlisb
    // (Allowed) without DIC.
    let both = Config { dic: true, ..IDC };
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend([Dmb(0, ISHST), Store(0, FLAG), Isb(1), Exec(1, CODE)]);
    assert_eq!(run(both, &s), vec![]);
    assert_eq!(only(&run(IDC, &s)), (Missing::NotCleaned, CODE));
}

#[test]
fn vdso_calls_do_not_synchronize() {
    for num in sysno::VDSO {
        let mut s = vec![Start(0), Store(0, CODE)];
        s.extend(sequence(0, CODE, "isb"));
        s.extend([Syscall(0, num, [1, 0, 0], 0), Exec(0, CODE)]);
        assert_eq!(only(&run(A72, &s)), (Missing::NoContextSync, CODE), "{num}");
    }
}

const B: u32 = 0x1400_0002;
const NOP: u32 = 0xd503_201f;

/// `CODE` holds a `B` that vCPUs 0 and 1 have both run coherently.
fn patch_site_setup() -> Vec<E> {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([ExecW(0, CODE, B), Isb(1), ExecW(1, CODE, B)]);
    s
}

#[test]
fn patching_a_listed_instruction_is_an_allowed_race_on_another_thread() {
    let mut s = patch_site_setup();
    s.extend([Store(0, CODE), ExecW(1, CODE, NOP)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NotCleaned, CODE));
    assert_eq!(v[0].class, Class::PatchSite);
    assert!(v[0]
        .to_string()
        .starts_with("icache-check: allowed patch-site race: vCPU 1"));
}

#[test]
fn patching_a_listed_instruction_is_a_violation_on_the_writing_thread() {
    let mut s = patch_site_setup();
    s.extend([Store(0, CODE), ExecW(0, CODE, NOP)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NotCleaned, CODE));
    assert_eq!(v[0].class, Class::Maintenance);
}

#[test]
fn patching_to_or_from_an_unlisted_instruction_is_a_violation() {
    let mut s = patch_site_setup();
    s.extend([Store(0, CODE), ExecW(1, CODE, MOV)]);
    assert_eq!(run(A72, &s)[0].class, Class::Maintenance);
    // Old MOV, new NOP.
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.extend([
        Isb(1),
        ExecW(1, CODE, MOV),
        Store(0, CODE),
        ExecW(1, CODE, NOP),
    ]);
    assert_eq!(run(A72, &s)[0].class, Class::Maintenance);
}

#[test]
fn a_word_never_run_before_has_no_patch_site_exemption() {
    let s = [Start(0), Start(1), Store(0, CODE), ExecW(1, CODE, NOP)];
    assert_eq!(run(A72, &s)[0].class, Class::Maintenance);
}

#[test]
fn missing_isb_on_another_thread_is_class_sync() {
    let mut s = vec![Start(0), Start(1), Store(0, CODE)];
    s.extend(sequence(0, CODE, ""));
    s.push(Exec(1, CODE));
    assert_eq!(run(A72, &s)[0].class, Class::Sync);
}

#[test]
fn a_fetch_of_a_later_store_orders_later_fetches_after_the_invalidation() {
    // MP-inst+dc.cvau-dsb.ish-ic.vau-dsb.ish (Forbidden): vCPU 1 runs the
    // flag instruction stored after the ic; dsb, then the target, no isb.
    let flag = CODE + 0x1000;
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Store(0, flag)];
    s.extend(sequence(0, CODE, ""));
    s.extend(sequence(0, flag, ""));
    s.extend([Isb(1), ExecW(1, flag, B), ExecW(1, CODE, B)]);
    s.extend([Store(0, CODE)]);
    s.extend(sequence(0, CODE, "isb"));
    s.extend([Store(0, flag), ExecW(1, flag, NOP), ExecW(1, CODE, NOP)]);
    let v = run(A72, &s);
    assert_eq!(only(&v), (Missing::NotCleaned, flag));
    assert_eq!(v[0].class, Class::PatchSite);
}

#[test]
fn a_fetch_of_an_earlier_store_orders_nothing() {
    // The same, but the flag was stored before the target's maintenance.
    let flag = CODE + 0x1000;
    let mut s = vec![Start(0), Start(1), Store(0, CODE), Store(0, flag)];
    s.extend(sequence(0, CODE, ""));
    s.extend(sequence(0, flag, ""));
    s.extend([Isb(1), ExecW(1, flag, B), ExecW(1, CODE, B)]);
    s.extend([Store(0, CODE), Store(0, flag)]);
    s.extend(sequence(0, CODE, "isb"));
    s.extend([ExecW(1, flag, NOP), ExecW(1, CODE, NOP)]);
    let v = run(A72, &s);
    assert_eq!(v.len(), 2, "{v:?}");
    assert_eq!((v[1].pc, v[1].missing), (CODE, Missing::NoContextSync));
}

#[test]
fn a_coherent_execution_is_known_coherent_until_the_next_store() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.vcpu_start(1);
    m.store(0, CODE, 4, STORE_PC);
    assert!(!m.known_coherent(0, CODE));
    assert!(m.execute(0, CODE, MOV).is_some());
    assert!(!m.known_coherent(0, CODE), "a violation is not coherent");
    for e in sequence(0, CODE, "") {
        match e {
            Dc(v, a) => m.maintenance(
                v,
                Insn::DcClean {
                    op: DcOp::Cvau,
                    rt: 0,
                },
                a,
            ),
            Ic(v, a) => m.maintenance(v, Insn::IcIvau { rt: 0 }, a),
            Dsb(v) => m.maintenance(v, Insn::Dsb(DsbOption(0b1011)), 0),
            Isb(v) => m.maintenance(v, Insn::Isb, 0),
            _ => unreachable!(),
        }
    }
    assert_eq!(m.execute(0, CODE, MOV), None);
    assert!(m.known_coherent(0, CODE));
    assert!(!m.known_coherent(1, CODE), "vCPU 1 has not synchronized");
    assert!(m.execute(1, CODE, MOV).is_some());
    m.maintenance(1, Insn::Isb, 0);
    assert_eq!(m.execute(1, CODE, MOV), None);
    assert!(m.known_coherent(1, CODE));
    m.store(1, CODE, 4, STORE_PC);
    assert!(!m.known_coherent(0, CODE) && !m.known_coherent(1, CODE));
    assert!(m.execute(0, CODE, MOV).is_some());
}

#[test]
fn coherent_for_every_vcpu_needs_every_started_vcpu_synchronized() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.vcpu_start(1);
    assert!(m.coherent_for_every_vcpu(CODE, MOV), "never stored");
    m.store(0, CODE, 4, STORE_PC);
    assert!(!m.coherent_for_every_vcpu(CODE, MOV));
    m.maintenance(
        0,
        Insn::DcClean {
            op: DcOp::Cvau,
            rt: 0,
        },
        CODE,
    );
    m.maintenance(0, Insn::Dsb(DsbOption(0b1011)), 0);
    m.maintenance(0, Insn::IcIvau { rt: 0 }, CODE);
    m.maintenance(0, Insn::Dsb(DsbOption(0b1011)), 0);
    m.maintenance(0, Insn::Isb, 0);
    assert!(
        !m.coherent_for_every_vcpu(CODE, MOV),
        "vCPU 1 not synchronized"
    );
    m.maintenance(1, Insn::Isb, 0);
    assert!(m.coherent_for_every_vcpu(CODE, MOV));
    // It counts as run: a code store, and the old instruction of a patch site.
    assert_eq!(m.counts().code_stores, 1);
    m.vcpu_start(2);
    assert!(
        m.coherent_for_every_vcpu(CODE, MOV),
        "a new vCPU starts synchronized"
    );
    m.store(1, CODE, 4, STORE_PC);
    assert!(!m.coherent_for_every_vcpu(CODE, MOV));
}

#[test]
fn a_vcpu_inside_a_system_call_does_not_keep_code_checked() {
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.vcpu_start(1);
    m.syscall(1, 98, [0; 3]); // futex: blocked while vCPU 0 writes code
    m.store(0, CODE, 4, STORE_PC);
    for (insn, a) in [
        (
            Insn::DcClean {
                op: DcOp::Cvau,
                rt: 0,
            },
            CODE,
        ),
        (Insn::Dsb(DsbOption(0b1011)), 0),
        (Insn::IcIvau { rt: 0 }, CODE),
        (Insn::Dsb(DsbOption(0b1011)), 0),
        (Insn::Isb, 0),
    ] {
        m.maintenance(0, insn, a);
    }
    assert!(m.coherent_for_every_vcpu(CODE, MOV));
    m.syscall_return(1, 98, 0);
    assert_eq!(m.execute(1, CODE, MOV), None);
    // Inside a vDSO call it would not be synchronized on its return.
    let mut m = Model::new(A72);
    m.vcpu_start(0);
    m.vcpu_start(1);
    m.syscall(1, sysno::CLOCK_GETTIME, [1, 0, 0]);
    m.store(0, CODE, 4, STORE_PC);
    for (insn, a) in [
        (
            Insn::DcClean {
                op: DcOp::Cvau,
                rt: 0,
            },
            CODE,
        ),
        (Insn::Dsb(DsbOption(0b1011)), 0),
        (Insn::IcIvau { rt: 0 }, CODE),
        (Insn::Dsb(DsbOption(0b1011)), 0),
        (Insn::Isb, 0),
    ] {
        m.maintenance(0, insn, a);
    }
    assert!(!m.coherent_for_every_vcpu(CODE, MOV));
}

/// Double-mapped code on an instruction cache that is not PIPT: the plugin
/// gives both views' pages one physical address, and an `ic` counts only for
/// fetches through the page it went through (`crate::aliases`).
mod views {
    use super::*;

    const VIPT: Config = Config {
        pipt_icache: false,
        ..A72
    };
    const PHYS: u64 = crate::aliases::PHYS_BASE + 0x40;
    const RW_PAGE: u64 = 0x10_0000;
    const RX_PAGE: u64 = 0x20_0000;

    fn dual(ic_page: u64, exec_page: u64) -> Vec<E> {
        vec![
            Start(0),
            Store(0, PHYS),
            Dc(0, PHYS),
            Dsb(0),
            IcVia(0, PHYS, ic_page),
            Dsb(0),
            Isb(0),
            ExecVia(0, PHYS, exec_page),
        ]
    }

    #[test]
    fn invalidating_through_the_executed_view_reports_nothing() {
        assert_eq!(run(VIPT, &dual(RX_PAGE, RX_PAGE)), vec![]);
    }

    #[test]
    fn invalidating_only_through_another_view_is_reported() {
        assert_eq!(
            only(&run(VIPT, &dual(RW_PAGE, RX_PAGE))),
            (Missing::NotInvalidated, PHYS)
        );
    }

    #[test]
    fn invalidating_through_both_views_covers_both() {
        let mut s = dual(RW_PAGE, RW_PAGE);
        s.extend([
            IcVia(0, PHYS, RX_PAGE),
            Dsb(0),
            Isb(0),
            ExecVia(0, PHYS, RX_PAGE),
        ]);
        assert_eq!(run(VIPT, &s), vec![]);
    }

    #[test]
    fn an_invalidation_through_a_view_does_not_cover_a_later_store() {
        let mut s = dual(RX_PAGE, RX_PAGE);
        s.extend([
            Store(0, PHYS),
            Dc(0, PHYS),
            Dsb(0),
            Isb(0),
            ExecVia(0, PHYS, RX_PAGE),
        ]);
        assert_eq!(only(&run(VIPT, &s)), (Missing::NotInvalidated, PHYS));
    }

    #[test]
    fn an_invalidation_of_every_line_covers_every_view() {
        let s = [
            Start(0),
            Store(0, PHYS),
            Dc(0, PHYS),
            Dsb(0),
            IcAlluIs(0),
            Dsb(0),
            Isb(0),
            ExecVia(0, PHYS, RX_PAGE),
        ];
        assert_eq!(run(VIPT, &s), vec![]);
    }

    #[test]
    fn the_clean_and_the_context_synchronization_are_still_needed() {
        let mut no_clean = dual(RX_PAGE, RX_PAGE);
        no_clean.remove(2);
        assert_eq!(only(&run(VIPT, &no_clean)).0, Missing::NotCleaned);
        let mut no_isb = dual(RX_PAGE, RX_PAGE);
        no_isb.remove(6);
        assert_eq!(only(&run(VIPT, &no_isb)).0, Missing::NoContextSync);
    }

    #[test]
    fn an_invalidation_issued_before_the_clean_completed_does_not_count() {
        let s = [
            Start(0),
            Store(0, PHYS),
            Dc(0, PHYS),
            IcVia(0, PHYS, RX_PAGE),
            Dsb(0),
            Isb(0),
            ExecVia(0, PHYS, RX_PAGE),
        ];
        assert_eq!(only(&run(VIPT, &s)).0, Missing::NotInvalidated);
    }
}
