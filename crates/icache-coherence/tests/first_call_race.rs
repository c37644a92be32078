//! 16 threads make their first pipeline flush at the same instant, 1,000
//! times over in fresh processes: every call succeeds, and the process
//! registers for membarrier SYNC_CORE exactly once. The count comes from
//! the syscall layer (strace), not from the library's own state.
//!
//! On x86-64 `pipeline_flush_mt` needs no membarrier (and makes none), so
//! the child exercises the same registration through
//! `cross_modify_flush_mt`, which uses it there. For emulated targets,
//! `cargo xtask ci` runs the parent here on the host with
//! `ICACHE_RACE_EXEC` set to a qemu command line: QEMU passes the guest's
//! membarrier through to the host kernel, where strace counts it.

// Not with `one-core`: the flushes then make no membarrier call at all
// (tests/one_core.rs checks that instead).
#![cfg(all(not(miri), target_os = "linux", not(feature = "one-core")))]

use std::sync::Barrier;

const THREADS: usize = 16;

/// The flush whose first call registers on this target.
fn first_flush() -> std::io::Result<()> {
    if icache_coherence::cache_info()
        .pipeline_flush_mechanism
        .starts_with("membarrier")
    {
        icache_coherence::pipeline_flush_mt()
    } else {
        icache_coherence::cross_modify_flush_mt()
    }
}

#[test]
#[ignore = "runs in a child process started by the race test"]
fn first_call_race_child() {
    let barrier = Barrier::new(THREADS);
    let results: Vec<std::io::Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    first_flush()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in results {
        r.expect("every first call succeeds");
    }
    println!("race child: {THREADS} first calls succeeded");
}

/// Runs race process `i` (`argv`) under strace, logging to `log`, and checks
/// that its first calls succeeded with one registration.
#[cfg(target_arch = "x86_64")]
fn run_one(i: usize, argv: &[&str], log: &std::path::Path) {
    let out = std::process::Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=membarrier",
            "-e",
            "raw=membarrier",
            "-o",
        ])
        .arg(log)
        .args(argv)
        .output()
        .expect("strace must be installed (cargo xtask setup installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("first calls succeeded"),
        "process {i}: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(log).unwrap();
    let (query, register, sync) = count(&text);
    assert_eq!(register, 1, "process {i}: registrations\n{text}");
    assert_eq!(query, 1, "process {i}: queries\n{text}");
    assert_eq!(sync, THREADS, "process {i}: SYNC_CORE calls\n{text}");
}

#[cfg(target_arch = "x86_64")]
/// Counts the membarrier commands in an strace log written with
/// `-e raw=membarrier`: (QUERY, REGISTER_SYNC_CORE, SYNC_CORE).
fn count(log: &str) -> (usize, usize, usize) {
    let n = |cmd: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("membarrier({cmd},")))
            .count()
    };
    (n("0"), n("0x40"), n("0x20"))
}

#[test]
#[cfg(target_arch = "x86_64")]
fn sixteen_first_callers_register_exactly_once_per_process() {
    let processes: usize = std::env::var("ICACHE_RACE_PROCESSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let exec = std::env::var("ICACHE_RACE_EXEC").unwrap_or_else(|_| {
        format!(
            "{} --ignored --exact first_call_race_child --nocapture",
            std::env::current_exe().unwrap().display()
        )
    });
    let argv: Vec<&str> = exec.split_whitespace().collect();
    // The processes are independent, so they run one per core at a time
    // (each worker with its own strace log): under qemu the 1,000 take
    // about 290 s one after another on the 2-core project machine.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|s| {
        for w in 0..workers {
            let argv = &argv;
            s.spawn(move || {
                let log = std::env::temp_dir()
                    .join(format!("icache-race-{}-{w}.strace", std::process::id()));
                for i in (w..processes).step_by(workers) {
                    run_one(i, argv, &log);
                }
                let _ = std::fs::remove_file(&log);
            });
        }
    });
    println!("{processes} processes: 1 registration and {THREADS} SYNC_CORE calls each");
}
