//! The `one-core` feature: the program runs on one core, so the flushes
//! broadcast nothing, make no system call and never fail, and RISC-V Linux
//! makes `clear_cache` one `fence.i` instead of the syscall.
//!
//! The x86-64 test makes any membarrier call kill the process (a seccomp
//! filter in a child), so a `one-core` build that still called it fails
//! here; without the feature `cross_modify_flush_mt` does call it on Linux
//! (tests/sandbox.rs checks that side).

#![cfg(all(not(miri), feature = "one-core"))]

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod seccomp;

use icache_coherence::{cache_info, cross_modify_flush_mt, pipeline_flush_mt};

#[test]
fn flushes_are_ok_and_reported_as_not_needed() {
    pipeline_flush_mt().expect("one-core: pipeline_flush_mt never fails");
    cross_modify_flush_mt().expect("one-core: cross_modify_flush_mt never fails");
    let info = cache_info();
    assert!(!info.pipeline_flush_needed, "{info:?}");
    assert!(
        info.pipeline_flush_mechanism.contains("one-core"),
        "{info:?}"
    );
    assert!(info.cross_modify_mechanism.contains("one-core"), "{info:?}");
}

#[test]
#[cfg(all(
    target_os = "linux",
    any(target_arch = "riscv64", target_arch = "riscv32")
))]
fn riscv_linux_clear_cache_is_a_local_fence_i() {
    assert!(
        cache_info().mechanism.starts_with("fence.i"),
        "{:?}",
        cache_info()
    );
}

/// Run by `no_flush_makes_a_membarrier_call` in a fresh process.
#[test]
#[ignore = "runs in a child process started by no_flush_makes_a_membarrier_call"]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn one_core_child() {
    kill_on_membarrier().expect("installing the seccomp filter");
    for _ in 0..2 {
        pipeline_flush_mt().unwrap();
        cross_modify_flush_mt().unwrap();
    }
    println!("one-core child: alive after the flushes");
}

/// In-process seccomp works natively only (qemu-user refuses it), hence
/// x86-64, the host.
#[test]
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn no_flush_makes_a_membarrier_call() {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--ignored", "--exact", "one_core_child", "--nocapture"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("alive after the flushes"),
        "the child died or failed ({:?}): a flush called membarrier\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A seccomp filter that kills the process on membarrier.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn kill_on_membarrier() -> std::io::Result<()> {
    use seccomp::*;
    seccomp::install(&[
        op(LD_W_ABS, 0, 0, 0), // the syscall number
        op(JEQ_K, 0, 1, libc::SYS_membarrier as u32),
        op(RET_K, 0, 0, RET_KILL_PROCESS),
        op(RET_K, 0, 0, RET_ALLOW),
    ])
}
