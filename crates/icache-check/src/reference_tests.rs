//! The checker's model against a small, obviously correct reference model,
//! on random event sequences: they must agree on every instruction execution.
//!
//! The reference keeps the whole event history and answers each execution by
//! searching it, straight from the rules in `model.rs`'s documentation:
//!
//! - the word's data is the guest's last store to it; a word never stored
//!   to is coherent;
//! - it is *cleaned* at the first `dsb` by vCPU c that follows a `dc` by c,
//!   issued after that store, on a data line holding the word (with IDC
//!   also at the storing vCPU's first `dsb` after the store, if earlier);
//! - it is *invalidated* at the first `dsb` by c that follows an `ic` by c,
//!   issued after the clean completed, on an instruction line holding the
//!   word (with DIC: when it was cleaned);
//! - the executing vCPU is *synchronized* if, after the invalidation, it
//!   ran an `isb`, returned from a system call, started, or any thread
//!   completed `membarrier(PRIVATE_EXPEDITED_SYNC_CORE)`;
//! - the first of those three that fails is the missing step.
//!
//! Rule 9 (a fetch orders later fetches) needs no term here: it only
//! matters after a fetch that was not coherent, a patch-site race, which the
//! generated words never are. After a coherent fetch of store S, the fetching
//! vCPU already synchronized after every invalidation that completed before S.
//!
//! The fast model keeps per-word shadow state instead; a disagreement on any
//! sequence fails with the sequence printed, shortest failing prefix first.
//! Not generated: thread exits that reuse a vCPU index, `ic iallu(is)`
//! (undefined at EL0), and munmap (both models forget the page; tested in
//! `model.rs`).

use crate::decode::{DcOp, DsbOption, Insn};
use crate::model::{sysno, Config, Missing, Model};

const BASE: u64 = 0x4000_0000;
const WORDS: u64 = 48; // 192 bytes: several lines of every size used
const VCPUS: u32 = 3;
/// The instruction every word holds: not on the list of concurrently
/// modifiable instructions, so no execution is a patch site (rule 10 is
/// tested in `model/tests.rs`).
const MOV_W0_1: u32 = 0x5280_0020;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// vCPU `v` starts (vCPUs 0..VCPUS start at the beginning; one more
    /// may start later).
    Start(u32),
    Store {
        v: u32,
        word: u64,
    },
    Dc {
        v: u32,
        word: u64,
    },
    Ic {
        v: u32,
        word: u64,
    },
    Dsb(u32),
    Isb(u32),
    Syscall(u32),
    Membarrier(u32),
    Exec {
        v: u32,
        word: u64,
    },
}

/// SplitMix64: deterministic, so a failure is reproducible from its seed.
struct Rng(u64);
impl Rng {
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

fn addr(word: u64) -> u64 {
    BASE + 4 * word
}

fn store_pc(index: usize) -> u64 {
    0x1000 + 4 * index as u64
}

fn same_line(a: u64, b: u64, line: u64) -> bool {
    addr(a) / line == addr(b) / line
}

/// The reference answer for the execution at `events[t]`:
/// None if coherent, else the missing step and the index of the store.
fn reference(cfg: Config, events: &[Ev], t: usize) -> Option<(Missing, usize)> {
    let Ev::Exec { v, word } = events[t] else {
        unreachable!()
    };
    let ts = (0..t)
        .rev()
        .find(|&i| matches!(events[i], Ev::Store { word: w, .. } if w == word))?;
    let Ev::Store { v: sv, .. } = events[ts] else {
        unreachable!()
    };
    // The first dsb by `c` strictly after `after` and before `t`.
    let dsb_after = |c: u32, after: usize| (after + 1..t).find(|&i| events[i] == Ev::Dsb(c));

    let by_dc = (ts + 1..t)
        .filter_map(|i| match events[i] {
            Ev::Dc { v: c, word: w } if same_line(w, word, cfg.dline) => dsb_after(c, i),
            _ => None,
        })
        .min();
    // With IDC the storing vCPU's next dsb is enough; an explicit clean
    // still counts too.
    let by_idc = if cfg.idc { dsb_after(sv, ts) } else { None };
    let cleaned = match (by_dc, by_idc) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let Some(cleaned) = cleaned else {
        return Some((Missing::NotCleaned, ts));
    };
    let invalidated = if cfg.dic {
        Some(cleaned)
    } else {
        (cleaned + 1..t)
            .filter_map(|i| match events[i] {
                Ev::Ic { v: c, word: w } if same_line(w, word, cfg.iline) => dsb_after(c, i),
                _ => None,
            })
            .min()
    };
    let Some(invalidated) = invalidated else {
        return Some((Missing::NotInvalidated, ts));
    };
    let synced = (invalidated + 1..t).any(|i| match events[i] {
        Ev::Isb(c) | Ev::Syscall(c) | Ev::Start(c) => c == v,
        Ev::Membarrier(_) => true,
        _ => false,
    });
    if synced {
        None
    } else {
        Some((Missing::NoContextSync, ts))
    }
}

/// Executions the fast path answered, so that the test can tell it ran.
static KNOWN_COHERENT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs the fast model over `events`; returns, per execution, its answer.
fn run_model(cfg: Config, events: &[Ev]) -> Vec<(usize, Option<(Missing, u64)>)> {
    let mut m = Model::new(cfg);
    let dsb_ish = Insn::Dsb(DsbOption(0b1011));
    let mut answers = Vec::new();
    for (i, &ev) in events.iter().enumerate() {
        match ev {
            Ev::Start(v) => m.vcpu_start(v),
            Ev::Store { v, word } => m.store(v, addr(word), 4, store_pc(i)),
            Ev::Dc { v, word } => m.maintenance(
                v,
                Insn::DcClean {
                    op: DcOp::Cvau,
                    rt: 0,
                },
                addr(word),
            ),
            Ev::Ic { v, word } => m.maintenance(v, Insn::IcIvau { rt: 0 }, addr(word)),
            Ev::Dsb(v) => m.maintenance(v, dsb_ish, 0),
            Ev::Isb(v) => m.maintenance(v, Insn::Isb, 0),
            Ev::Syscall(v) => {
                m.syscall(v, 63, [0; 3]); // read
                m.syscall_return(v, 63, 0);
            }
            Ev::Membarrier(v) => {
                let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
                m.syscall(v, sysno::MEMBARRIER, [cmd, 0, 0]);
                m.syscall_return(v, sysno::MEMBARRIER, 0);
            }
            Ev::Exec { v, word } => {
                // The plugin's lock-free fast path must never skip a report.
                let known = m.known_coherent(v, addr(word));
                let got = m
                    .execute(v, addr(word), MOV_W0_1)
                    .map(|x| (x.missing, x.store_pc));
                assert!(
                    !known || got.is_none(),
                    "event {i}: known coherent but {got:?}"
                );
                KNOWN_COHERENT.fetch_add(known as usize, std::sync::atomic::Ordering::Relaxed);
                answers.push((i, got));
            }
        }
    }
    answers
}

fn random_sequence(rng: &mut Rng, len: usize) -> Vec<Ev> {
    let mut events: Vec<Ev> = (0..VCPUS).map(Ev::Start).collect();
    let late = VCPUS; // a thread that starts later, synchronized
    let mut late_started = false;
    // Few words, so that stores, maintenance and executions meet often.
    let hot = rng.below(WORDS - 8);
    for _ in 0..len {
        let mut v = rng.below(VCPUS as u64 + late_started as u64) as u32;
        let word = hot + rng.below(8);
        let ev = match rng.below(20) {
            0..=3 => Ev::Store { v, word },
            4..=6 => Ev::Dc { v, word },
            7..=9 => Ev::Ic { v, word },
            10..=12 => Ev::Dsb(v),
            13 => Ev::Isb(v),
            14 => Ev::Syscall(v),
            15 => Ev::Membarrier(v),
            16 if !late_started => {
                late_started = true;
                v = late;
                Ev::Start(v)
            }
            _ => Ev::Exec { v, word },
        };
        events.push(ev);
    }
    events
}

fn random_config(rng: &mut Rng) -> Config {
    let line = |r: &mut Rng| 16u64 << r.below(3); // 16, 32 or 64 bytes
    Config {
        dline: line(rng),
        iline: line(rng),
        idc: rng.below(4) == 0,
        dic: rng.below(4) == 0,
        pipt_icache: rng.below(2) == 0,
    }
}

/// Where the two models disagree first, if anywhere.
fn disagreement(cfg: Config, events: &[Ev]) -> Option<String> {
    for (t, got) in run_model(cfg, events) {
        let want = reference(cfg, events, t).map(|(missing, ts)| (missing, store_pc(ts)));
        if got != want {
            return Some(format!(
                "event {t} {:?}: model says {got:?}, reference says {want:?}",
                events[t]
            ));
        }
    }
    None
}

/// Drops events one at a time while the models still disagree, so that a
/// failure is reported on a sequence a human can read.
fn shrink(cfg: Config, mut events: Vec<Ev>) -> Vec<Ev> {
    let mut i = 0;
    while i < events.len() {
        let mut fewer = events.clone();
        fewer.remove(i);
        if disagreement(cfg, &fewer).is_some() {
            events = fewer;
        } else {
            i += 1;
        }
    }
    events
}

#[test]
fn model_agrees_with_the_reference_on_random_sequences() {
    let sequences = 20_000;
    let mut executions = 0usize;
    let mut violations = 0usize;
    for seed in 0..sequences {
        let mut rng = Rng(0x1cac_4ec4_0000_0000 + seed);
        let cfg = random_config(&mut rng);
        let len = 10 + rng.below(50) as usize;
        let events = random_sequence(&mut rng, len);
        if disagreement(cfg, &events).is_some() {
            let small = shrink(cfg, events);
            panic!(
                "seed {seed}, {cfg:?}: {}\nminimal failing sequence:\n{small:?}",
                disagreement(cfg, &small).unwrap_or_default()
            );
        }
        for (t, _) in run_model(cfg, &events) {
            executions += 1;
            violations += reference(cfg, &events, t).is_some() as usize;
        }
    }
    let known = KNOWN_COHERENT.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        known > 100,
        "the fast path answered only {known} executions"
    );
    // The generator must exercise both answers, or agreement means little.
    assert!(executions > 50_000, "only {executions} executions");
    assert!(
        violations > executions / 20 && violations < executions * 19 / 20,
        "{violations} of {executions} executions were violations"
    );
}

#[test]
fn reference_reports_each_missing_step_on_a_scripted_sequence() {
    use Ev::*;
    let cfg = Config {
        dline: 64,
        iline: 64,
        idc: false,
        dic: false,
        pipt_icache: true,
    };
    let full = [
        Start(0),
        Start(1),
        Store { v: 0, word: 1 },
        Dc { v: 0, word: 0 },
        Dsb(0),
        Ic { v: 0, word: 2 },
        Dsb(0),
        Isb(0),
        Exec { v: 0, word: 1 },
        Exec { v: 1, word: 1 },
        Membarrier(0),
        Exec { v: 1, word: 1 },
    ];
    let answers: Vec<_> = (0..full.len())
        .filter(|&t| matches!(full[t], Exec { .. }))
        .map(|t| reference(cfg, &full, t).map(|a| a.0))
        .collect();
    assert_eq!(answers, [None, Some(Missing::NoContextSync), None]);
    // Dropping the clean, the first dsb, the ic or the second dsb.
    for (drop, want) in [
        (3, Missing::NotCleaned),
        // Without the first dsb the clean completes only at the second, after
        // the ic was issued: the ic does not count.
        (4, Missing::NotInvalidated),
        (5, Missing::NotInvalidated),
        (6, Missing::NotInvalidated),
        (7, Missing::NoContextSync),
    ] {
        let mut seq = full.to_vec();
        seq.remove(drop);
        let t = seq.iter().position(|e| matches!(e, Exec { .. })).unwrap();
        assert_eq!(
            reference(cfg, &seq, t).map(|a| a.0),
            Some(want),
            "without event {drop}"
        );
        assert_eq!(disagreement(cfg, &seq), None, "without event {drop}");
    }
}
