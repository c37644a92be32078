//! A tiny JIT: compile a function for this machine, run it, patch it, and
//! run the patched code from several threads, printing which cache
//! maintenance this platform needed at each step.
//!
//! Run it with `cargo run --example jit` (add `--target <triple>` for any
//! architecture of the CI matrix; the runners in .cargo/config.toml use qemu).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{return_n, CodePages};
use icache_coherence::{cache_info, clear_cache, pipeline_flush_mt};

fn main() -> std::io::Result<()> {
    let info = cache_info();
    println!(
        "target:               {}-{}",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    println!("clear_cache does:     {}", info.mechanism);
    println!("pipeline_flush_mt:    {}", info.pipeline_flush_mechanism);
    let line = |l: Option<usize>| l.map_or("n/a".to_string(), |l| format!("{l} bytes"));
    println!(
        "lines (data / instr): {} / {}",
        line(info.data_line),
        line(info.instruction_line)
    );
    println!(
        "needs: clean {}, invalidate {}, pipeline flush {}",
        info.needs_clean, info.needs_invalidate, info.pipeline_flush_needed
    );

    // 1. Compile `fn() -> u32 { 1 }` into a fresh page and run it.
    let pages = CodePages::new(1);
    let v1 = return_n(1);
    let f = pages.write(0, 0, &v1);
    // SAFETY: `f` points at v1.len() bytes of our mapped page.
    unsafe { clear_cache(f, v1.len())? };
    pages.executable(0);
    let got = pages.call(0, 0);
    println!("step 1: compiled {} bytes, called it: {got}", v1.len());
    check(got, 1)?;

    // 2. Patch it in place: only the bytes that changed are written and
    //    made coherent, as a JIT patching an immediate would do.
    let v2 = return_n(0x2a_0001);
    let first = v1.iter().zip(&v2).position(|(a, b)| a != b).unwrap_or(0);
    let last = v1.iter().zip(&v2).rposition(|(a, b)| a != b).unwrap_or(0);
    pages.writable(0);
    let patch = pages.write(0, first, &v2[first..=last]);
    // SAFETY: the patched bytes are inside our mapped page.
    unsafe { clear_cache(patch, last + 1 - first)? };
    pages.executable(0);
    let got = pages.call(0, 0);
    println!("step 2: patched bytes {first}..={last}, called it: {got}");
    check(got, 0x2a_0001)?;

    // 3. Other threads: one pipeline flush for the batch, then they run it.
    pipeline_flush_mt()?;
    println!("step 3: pipeline_flush_mt() done; calling from 4 threads");
    let results: Vec<u32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| pages.call(0, 0))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    for (i, got) in results.iter().enumerate() {
        println!("        thread {i}: {got}");
        check(*got, 0x2a_0001)?;
    }
    println!("ok: every call ran the code that was written");
    Ok(())
}

fn check(got: u32, want: u32) -> std::io::Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "stale code ran: got {got}, want {want}"
        )))
    }
}
