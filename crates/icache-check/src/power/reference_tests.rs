//! The POWER model against a brute-force reference on random event
//! sequences: for every execution, they must agree on whether it is
//! coherent.
//!
//! The reference keeps no state. For an execution of word `a` by thread
//! `v` at time `T` it takes the last store `S` to `a` before `T` and asks,
//! from the whole history, whether there are an `icbi` `I` of `a`'s
//! instruction block (any address in snoop mode) by some thread `W`, whose
//! first heavyweight `sync` of `W` after it came before a context
//! synchronization of `v` (its `isync`, its return from a non-vDSO system
//! call, its start, or the entry of a successful membarrier SYNC_CORE by
//! anyone) that came before `T` (a restart of `W`'s index is both: the
//! exited thread's `sync`, then the new thread's start), and such that `S` was written to storage
//! when `I` was issued: a `dcbst` of `a`'s data block after `S`, by some
//! thread `X`, whose first `sync` of `X` after it came before `I`; in snoop
//! mode also a `sync` of `S`'s thread after `S` and before `I`.

use super::*;

const VCPUS: u32 = 3;
const BASE: u64 = 0x20_0000;
/// Words used: three 16-byte blocks' worth.
const WORDS: u64 = 12;

#[derive(Clone, Copy, Debug)]
enum Ev {
    Start(u32),
    Store(u32, u64),
    Op(u32, PpcInsn, u64),
    /// A system call that returns right away: number, result.
    Syscall(u32, i64, i64),
    Execute(u32, u64),
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        // xorshift64* (Vigna, "An experimental exploration of Marsaglia's
        // xorshift generators, scrambled").
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// A heavyweight `sync` by thread `w`; a restart of its index counts, as
/// the exited thread passed the kernel's context switch.
fn is_sync(ev: Ev, w: u32) -> bool {
    matches!(ev, Ev::Op(x, PpcInsn::Sync, _) | Ev::Start(x) if x == w)
}

fn first_sync_after(h: &[Ev], w: u32, t: usize) -> Option<usize> {
    (t + 1..h.len()).find(|&k| is_sync(h[k], w))
}

fn same_block(a: u64, b: u64, size: u64) -> bool {
    a & !(size - 1) == b & !(size - 1)
}

/// The context synchronizations of thread `v` before `t`.
fn context_syncs(h: &[Ev], v: u32, t: usize) -> Vec<usize> {
    (0..t)
        .filter(|&k| match h[k] {
            Ev::Start(x) | Ev::Op(x, PpcInsn::Isync, _) => x == v,
            Ev::Syscall(x, num, ret) => {
                (x == v && !sysno::VDSO.contains(&num)) || (num == sysno::MEMBARRIER && ret == 0)
            }
            _ => false,
        })
        .collect()
}

fn reference(g: Geometry, h: &[Ev], t: usize) -> bool {
    let Ev::Execute(v, a) = h[t] else {
        unreachable!()
    };
    let Some(s) = (0..t)
        .rev()
        .find(|&k| matches!(h[k], Ev::Store(_, b) if b == a))
    else {
        return true;
    };
    let Ev::Store(sv, _) = h[s] else {
        unreachable!()
    };
    let written_before = |ti: usize| {
        let by_dcbst = (s + 1..ti).any(|d| match h[d] {
            Ev::Op(x, PpcInsn::Dcbst, ea) if same_block(ea, a, g.dblock) => {
                first_sync_after(h, x, d).is_some_and(|c| c < ti)
            }
            _ => false,
        });
        let by_snoop = g.snoop && (s + 1..ti).any(|k| is_sync(h[k], sv));
        by_dcbst || by_snoop
    };
    let syncs = context_syncs(h, v, t);
    (s + 1..t).any(|i| match h[i] {
        Ev::Op(w, PpcInsn::Icbi, ea) if g.snoop || same_block(ea, a, g.iblock) => {
            written_before(i)
                && first_sync_after(h, w, i).is_some_and(|c| syncs.iter().any(|&cs| cs >= c))
        }
        _ => false,
    })
}

fn random_sequence(rng: &mut Rng, len: usize) -> Vec<Ev> {
    let mut h: Vec<Ev> = (0..VCPUS).map(Ev::Start).collect();
    for _ in 0..len {
        let v = rng.below(VCPUS as u64) as u32;
        let a = BASE + 4 * rng.below(WORDS);
        h.push(match rng.below(24) {
            0..=3 => Ev::Store(v, a),
            4..=6 => Ev::Op(v, PpcInsn::Dcbst, a),
            7..=9 => Ev::Op(v, PpcInsn::Icbi, a),
            10..=13 => Ev::Op(v, PpcInsn::Sync, 0),
            14..=15 => Ev::Op(v, PpcInsn::Isync, 0),
            16 => Ev::Syscall(v, 64, 1), // getppid
            17 => Ev::Syscall(v, sysno::CLOCK_GETTIME, 0),
            18 => Ev::Syscall(v, sysno::MEMBARRIER, [0, -22][rng.below(2) as usize]),
            19 => Ev::Start(v),
            _ => Ev::Execute(v, a),
        });
    }
    h
}

/// Runs the model over `h`; returns the executions it found coherent.
fn run_model(g: Geometry, h: &[Ev]) -> Vec<(usize, bool)> {
    let mut m = PowerModel::new(g);
    let mut out = Vec::new();
    for (t, &ev) in h.iter().enumerate() {
        match ev {
            Ev::Start(v) => m.vcpu_start(v),
            Ev::Store(v, a) => m.shadow.store(v, a, 4, 0x4000 + 4 * t as u64),
            Ev::Op(v, insn, ea) => m.execute_op(v, insn, ea),
            Ev::Syscall(v, num, ret) => {
                let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
                m.syscall(v, num, [cmd, 0, 0]);
                m.syscall_return(v, num, ret);
            }
            Ev::Execute(v, a) => {
                // Asked at "translation": coherent for every thread must
                // mean coherent for this one.
                let every = m.coherent_for_every_vcpu(a);
                let ok = m.execute(v, a).is_none();
                assert!(
                    !every || ok,
                    "coherent for every vCPU but not for {v} at {t}"
                );
                out.push((t, ok));
            }
        }
    }
    out
}

#[test]
fn the_model_agrees_with_a_brute_force_reference_on_random_sequences() {
    let mut coherent = 0;
    let mut stale = 0;
    for seed in 0..3000u64 {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x1000_0001));
        let g = Geometry {
            dblock: 8 << rng.below(2),
            iblock: 8 << rng.below(2),
            snoop: rng.below(3) == 0,
        };
        let len = 10 + rng.below(60) as usize;
        let h = random_sequence(&mut rng, len);
        for (t, ok) in run_model(g, &h) {
            let want = reference(g, &h, t);
            let shown: Vec<String> = h
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{i}: {e:?}"))
                .collect();
            let shown = shown.join("\n");
            assert_eq!(ok, want, "seed {seed}, {g:?}, execution at {t}:\n{shown}");
            if want {
                coherent += 1;
            } else {
                stale += 1;
            }
        }
    }
    // Both answers occur often enough for the comparison to mean something.
    assert!(
        coherent > 1000 && stale > 1000,
        "{coherent} coherent, {stale} stale"
    );
}
