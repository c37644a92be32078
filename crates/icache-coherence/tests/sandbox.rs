//! `pipeline_flush_mt` and `cross_modify_flush_mt` inside a seccomp sandbox
//! that refuses membarrier: they must return the documented error (naming
//! membarrier and the errno), never panic, never return `Ok` after doing
//! nothing where the flush is needed, and never get the process killed.
//!
//! The parent test runs the ignored `sandbox_child` test in a fresh process
//! per sandbox mode; the child installs the filter on itself
//! (`prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)`) and checks the results.
//! qemu-user refuses a guest's PR_SET_SECCOMP (it would filter QEMU's own
//! syscalls), so on emulated targets `cargo xtask ci` installs the same
//! filter on the qemu process from the host instead (ICACHE_SANDBOX_INSTALL
//! = "host"): QEMU passes membarrier through to the host kernel, where the
//! filter answers.

// Not with `one-core`: the flushes then make no membarrier call at all
// (tests/one_core.rs checks that instead).
#![cfg(all(not(miri), target_os = "linux", not(feature = "one-core")))]

mod seccomp;

use icache_coherence::{cache_info, cross_modify_flush_mt, pipeline_flush_mt, Error};
use seccomp::*;
use std::io::ErrorKind;

const QUERY: &str = "membarrier(MEMBARRIER_CMD_QUERY)";
const REGISTER: &str = "membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)";
#[cfg(target_arch = "x86_64")]
const MODES: [&str; 3] = ["enosys", "eperm", "einval-sync-core"];

/// What a membarrier refused in `mode` must produce: kind, call, errno.
fn expected(mode: &str) -> (ErrorKind, &'static str, i32) {
    match mode {
        // Every command fails with ENOSYS: an old kernel or gVisor.
        "enosys" => (ErrorKind::Unsupported, QUERY, libc::ENOSYS),
        // Every command fails with EPERM: a container profile.
        "eperm" => (ErrorKind::PermissionDenied, QUERY, libc::EPERM),
        // Only the SYNC_CORE commands fail with EINVAL: a kernel without
        // SYNC_CORE whose QUERY still reports it (the worst case).
        "einval-sync-core" => (ErrorKind::Unsupported, REGISTER, libc::EINVAL),
        other => panic!("unknown sandbox mode {other:?}"),
    }
}

/// Makes membarrier fail as `mode` says, for this process and its children.
fn install_filter(mode: &str) -> std::io::Result<()> {
    let nr = libc::SYS_membarrier as u32;
    let prog: Vec<SockFilter> = match mode {
        "enosys" | "eperm" => {
            let errno = if mode == "enosys" {
                libc::ENOSYS
            } else {
                libc::EPERM
            } as u32;
            vec![
                op(LD_W_ABS, 0, 0, 0), // the syscall number
                op(JEQ_K, 0, 1, nr),
                op(RET_K, 0, 0, RET_ERRNO | errno),
                op(RET_K, 0, 0, RET_ALLOW),
            ]
        }
        _ => vec![
            op(LD_W_ABS, 0, 0, 0),
            op(JEQ_K, 0, 4, nr),
            op(LD_W_ABS, 0, 0, ARG0_LOW), // the membarrier command
            op(JEQ_K, 1, 0, 32),          // PRIVATE_EXPEDITED_SYNC_CORE
            op(JEQ_K, 0, 1, 64),          // REGISTER_PRIVATE_EXPEDITED_SYNC_CORE
            op(RET_K, 0, 0, RET_ERRNO | libc::EINVAL as u32),
            op(RET_K, 0, 0, RET_ALLOW),
        ],
    };
    seccomp::install(&prog)
}

fn assert_documented(result: std::io::Result<()>, mode: &str, what: &str) {
    let (kind, call, errno) = expected(mode);
    let err = match result {
        Ok(()) => panic!("{what} returned Ok although membarrier was refused ({mode})"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), kind, "{what} ({mode}): {err}");
    let detail = err
        .get_ref()
        .and_then(|d| d.downcast_ref::<Error>())
        .expect("an icache_coherence::Error payload");
    assert_eq!(detail.call(), call, "{what} ({mode})");
    assert_eq!(detail.raw_os_error(), Some(errno), "{what} ({mode})");
    assert!(err.to_string().contains("membarrier"), "{err}");
}

/// Run by `sandboxed_membarrier_gets_the_documented_result` (or by
/// `cargo xtask ci` under a host-side filter) in a fresh process.
#[test]
#[ignore = "runs in a child process started by the sandbox tests"]
fn sandbox_child() {
    let mode = std::env::var("ICACHE_SANDBOX_MODE").expect("ICACHE_SANDBOX_MODE");
    if std::env::var("ICACHE_SANDBOX_INSTALL").as_deref() == Ok("self") {
        install_filter(&mode).expect("installing the seccomp filter");
    }
    // Twice: the cached refusal must be reported again, the same way.
    for _ in 0..2 {
        let uses_membarrier = cache_info()
            .pipeline_flush_mechanism
            .starts_with("membarrier");
        if uses_membarrier {
            assert_documented(pipeline_flush_mt(), &mode, "pipeline_flush_mt");
        } else {
            // x86, s390x, RISC-V: nothing is needed for code at fresh
            // addresses, so Ok is the documented result.
            assert!(!cache_info().pipeline_flush_needed);
            pipeline_flush_mt().expect("pipeline_flush_mt needs no membarrier here");
        }
        if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
            // The flush syscall already synchronized every hart.
            cross_modify_flush_mt().expect("nothing left to do on RISC-V");
        } else {
            assert_documented(cross_modify_flush_mt(), &mode, "cross_modify_flush_mt");
        }
    }
    println!("sandbox child: documented result for {mode}");
}

/// The child ran to its end: not killed, every assertion held.
#[cfg(target_arch = "x86_64")]
fn assert_child_succeeded(out: &std::process::Output, mode: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mode {mode}: child failed or was killed ({:?})\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("documented result for {mode}")),
        "{stdout}"
    );
}

/// In-process filters work natively; under qemu-user (every non-x86-64
/// target here) the host-side variant in `cargo xtask ci` covers this.
#[test]
#[cfg(target_arch = "x86_64")]
fn sandboxed_membarrier_gets_the_documented_result() {
    let exe = std::env::current_exe().unwrap();
    for mode in MODES {
        let out = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "sandbox_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ICACHE_SANDBOX_MODE", mode)
            .env("ICACHE_SANDBOX_INSTALL", "self")
            .output()
            .unwrap();
        assert_child_succeeded(&out, mode);
    }
}

/// Host side of the emulated-target variant: installs the filter on this
/// (host) process, then runs the command in `ICACHE_SANDBOX_EXEC` (qemu-user
/// running a target's `sandbox_child`), which inherits the filter. The
/// filter matches the host's membarrier number, which is what QEMU calls
/// when it passes the guest's membarrier through.
#[test]
#[ignore = "run by cargo xtask ci with a qemu command line"]
#[cfg(target_arch = "x86_64")]
fn sandbox_host_launcher() {
    let mode = std::env::var("ICACHE_SANDBOX_MODE").expect("ICACHE_SANDBOX_MODE");
    let exec = std::env::var("ICACHE_SANDBOX_EXEC").expect("ICACHE_SANDBOX_EXEC");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    install_filter(&mode).expect("installing the seccomp filter");
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .env("ICACHE_SANDBOX_INSTALL", "host")
        .output()
        .unwrap();
    assert_child_succeeded(&out, &mode);
    println!("sandbox host launcher: {mode} ok");
}
