//! The 32-bit Arm model against a brute-force reference on random event
//! sequences: they must agree on every instruction execution.
//!
//! The reference keeps the whole history and decides each execution from
//! the rules in `src/arm32.rs` as written, without epochs or shadow state:
//! the executed word's last store must be followed by a `cacheflush` with
//! flags 0 whose range overlaps the word, and the executing thread must
//! have a context synchronization at or after that flush (its own `isb`,
//! `svc`, system call return or start, the flush's own return if it called
//! it, or a successful SYNC_CORE membarrier issued at or after it).

use super::*;

const BASE: u64 = 0x40_0000;
/// Words 0..WORDS, spread over three pages so ranges cross pages.
const WORDS: u64 = 12;
const THREADS: u32 = 3;

fn addr(word: u64) -> u64 {
    // Four words per page, two at its start and two at its end, in order.
    BASE + (word / 4) * PAGE_SIZE + [0, 4, PAGE_SIZE - 8, PAGE_SIZE - 4][(word % 4) as usize]
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Start(u32),
    Store(u32, u64),
    /// `cacheflush(addr(first), addr(last) + cut, flags)` by a thread.
    Flush(u32, u64, u64, u64, u32),
    Isb(u32),
    /// Another system call, entered and returned.
    Syscall(u32),
    /// membarrier SYNC_CORE with this result.
    Membarrier(u32, i64),
    Execute(u32, u64),
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

/// The byte range `[start, end)` a flush event asks for, and whether the
/// kernel accepts it.
fn flush_range(first: u64, last: u64, cut: u64, flags: u32) -> (u64, u64, bool) {
    let start = addr(first);
    let end = addr(last) + cut;
    (start, end, flags == 0 && end >= start)
}

fn reference(events: &[Ev], t: usize) -> Option<Missing> {
    let Ev::Execute(v, word) = events[t] else {
        return None;
    };
    let a = addr(word);
    let stored = (0..t)
        .rev()
        .find(|&i| matches!(events[i], Ev::Store(_, w) if w == word))?;
    let syncs_at_or_after = |f: usize| {
        (f..t).any(|i| match events[i] {
            Ev::Start(u) | Ev::Isb(u) | Ev::Syscall(u) => u == v,
            Ev::Flush(u, ..) => u == v,
            Ev::Membarrier(u, ret) => u == v || ret == 0,
            _ => false,
        })
    };
    let flushes: Vec<usize> = (stored + 1..t)
        .filter(|&i| match events[i] {
            Ev::Flush(_, first, last, cut, flags) => {
                let (start, end, ok) = flush_range(first, last, cut, flags);
                ok && start < a + 4 && a < end
            }
            _ => false,
        })
        .collect();
    if flushes.is_empty() {
        Some(Missing::NotFlushed)
    } else if flushes.iter().any(|&f| syncs_at_or_after(f)) {
        None
    } else {
        Some(Missing::NoContextSync)
    }
}

fn run_model(events: &[Ev]) -> Vec<Option<Missing>> {
    let mut m = Arm32Model::new();
    let mut out = Vec::new();
    for (i, &ev) in events.iter().enumerate() {
        let mut result = None;
        match ev {
            Ev::Start(v) => m.vcpu_start(v),
            Ev::Store(v, w) => m.shadow.store(v, addr(w), 4, 0x1000 + i as u64),
            Ev::Flush(v, first, last, cut, flags) => {
                let (start, end, _) = flush_range(first, last, cut, flags);
                m.svc(v, sysno::CACHEFLUSH, [start as u32, end as u32, flags]);
            }
            Ev::Isb(v) => m.isb(v),
            Ev::Syscall(v) => {
                m.svc(v, 20, [0; 3]);
                m.syscall(v, 20, [0; 3]);
                m.syscall_return(v, 20, 1);
            }
            Ev::Membarrier(v, ret) => {
                let cmd = sysno::MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE;
                m.svc(v, sysno::MEMBARRIER as u32, [cmd as u32, 0, 0]);
                m.syscall(v, sysno::MEMBARRIER, [cmd, 0, 0]);
                m.syscall_return(v, sysno::MEMBARRIER, ret);
            }
            Ev::Execute(v, w) => {
                // Half the executions are first asked about at translation,
                // as the plugin does; the answer must never hide a report.
                if i % 2 == 0 && m.coherent_for_every_vcpu(addr(w), 4) {
                    assert_eq!(
                        reference(events, i),
                        None,
                        "coherent_for_every_vcpu at event {i}"
                    );
                }
                result = m.execute(v, addr(w), 4).map(|r| r.missing);
            }
        }
        out.push(result);
    }
    out
}

fn random_sequence(rng: &mut Rng, len: usize) -> Vec<Ev> {
    let mut events: Vec<Ev> = (0..THREADS).map(Ev::Start).collect();
    while events.len() < len {
        let v = rng.below(u64::from(THREADS)) as u32;
        let w = rng.below(WORDS);
        let ev = match rng.below(16) {
            0..=3 => Ev::Store(v, w),
            4..=6 => {
                let last = (w + rng.below(6)).min(WORDS - 1);
                // The end: inside the last word, just after it, or before
                // the start (refused).
                let cut = [1, 4, 4, 4][rng.below(4) as usize];
                let (first, last) = if rng.below(12) == 0 {
                    (last, w)
                } else {
                    (w, last)
                };
                let flags = u32::from(rng.below(10) == 0);
                Ev::Flush(v, first, last, cut, flags)
            }
            7 => Ev::Isb(v),
            8 => Ev::Syscall(v),
            9 => Ev::Membarrier(v, if rng.below(3) == 0 { -1 } else { 0 }),
            10 => Ev::Start(v),
            _ => Ev::Execute(v, w),
        };
        events.push(ev);
    }
    events
}

#[test]
fn model_agrees_with_the_reference_on_random_sequences() {
    let mut executions = [0u64; 3];
    for seed in 0..3000 {
        let mut rng = Rng(0xa4c3_2000_0000_0000 + seed);
        let events = random_sequence(&mut rng, 60);
        let got = run_model(&events);
        for (i, &missing) in got.iter().enumerate() {
            let want = reference(&events, i);
            assert_eq!(
                missing, want,
                "seed {seed}, event {i}: model {missing:?}, reference {want:?}\n{events:?}"
            );
            if matches!(events[i], Ev::Execute(..)) {
                executions[match want {
                    None => 0,
                    Some(Missing::NotFlushed) => 1,
                    Some(_) => 2,
                }] += 1;
            }
        }
    }
    // Every outcome occurs often, so the comparison means something.
    assert!(executions.iter().all(|&n| n > 1000), "{executions:?}");
}
