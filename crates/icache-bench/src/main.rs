//! Guest program of `cargo xtask bench`: it calls each `clear_cache`
//! implementation once per case, between two marker functions, so that an
//! instruction trace of the run (QEMU's `-d exec` log, one line per executed
//! instruction with `-singlestep`) can be cut into one slice per case.
//!
//! Nothing here measures anything by itself: xtask runs this program under
//! `qemu-aarch64` (and strace, and icache-check), and does the counting.
//!
//! Protocol, on stdout, one fact per line (parsed by `xtask/src/bench/log.rs`):
//!
//! - `marks BEGIN END`: the addresses of [`bench_begin`] and [`bench_end`].
//! - `lines DLINE ILINE`: the line sizes the library reads (`cache_info`).
//! - `case NAME SIZE OFFSET`: one line per bracket, in execution order. The
//!   n-th `case` line names the n-th begin..end slice of the trace.
//!
//! Modes (first argument):
//!
//! - `single SIZE...`: every implementation on every size, at a line-aligned
//!   start and at a start 4 bytes past it. The first case, `empty`, calls a
//!   function that only returns; it calibrates the harness's own instructions.
//! - `patch N`: N separate 8-byte sites, once as N `clear_cache` +
//!   `pipeline_flush_mt` pairs and once as one `batch`.
//! - `flush N`: N calls of `pipeline_flush_mt` in steady state, one bracket
//!   each.
//! - `publish READERS`: one publication of a 4-byte function to READERS
//!   reader threads, measured side by side: `publish-flush` (`clear_cache`
//!   and `pipeline_flush_mt`) and `publish-epoch` (`clear_cache`,
//!   `CodeEpoch::advance` and the entry-point store), then a reader's check
//!   on the unchanged path (`reader-unchanged`) and after a publication
//!   (`reader-changed`). The readers are parked while the brackets run, so
//!   the trace holds only the measured thread; a reader's instructions do
//!   not depend on which thread runs them.
//! - `race THREADS`: THREADS threads released at once, each making its first
//!   `pipeline_flush_mt` call (for `strace -f`; no brackets).
//! - `host`: the host-side check (x86-64): one `clear_cache` +
//!   `pipeline_flush_mt` call through [`ours_host`], then [`empty_host`],
//!   for callgrind.

use core::ffi::{c_char, c_void};
use std::hint::black_box;
use std::sync::atomic::{AtomicPtr, Ordering::Release};
use std::sync::{Arc, Barrier};

/// An implementation under test: make `[ptr, ptr + len)` coherent.
type Impl = unsafe fn(*const c_void, usize);

extern "C" {
    /// libgcc's `__clear_cache` (linked by the gcc driver that links Rust
    /// binaries on Linux).
    fn __clear_cache(start: *mut c_char, end: *mut c_char);
}

/// Start of a measured slice. Its body differs from [`bench_end`]'s so that
/// the compiler cannot merge the two into one address.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_begin() {
    // SAFETY: a no-op instruction.
    unsafe { core::arch::asm!("nop", options(nomem, nostack, preserves_flags)) };
}

/// End of a measured slice.
#[no_mangle]
#[inline(never)]
pub extern "C" fn bench_end() {
    // SAFETY: no-op instructions.
    unsafe { core::arch::asm!("nop", "nop", options(nomem, nostack, preserves_flags)) };
}

/// Calibration: a call that executes one instruction (`ret`).
#[inline(never)]
unsafe fn empty(_ptr: *const c_void, _len: usize) {}

#[inline(never)]
unsafe fn ours(ptr: *const c_void, len: usize) {
    // SAFETY: the caller passes a mapped range.
    let _ = unsafe { icache_coherence::clear_cache(ptr, len) };
}

/// The same call from a caller that `.unwrap()`s the result, as
/// cranelift-jit `.expect()`s it: the panic path takes the error's address,
/// which is what makes a caller build a stack frame.
#[inline(never)]
unsafe fn ours_unwrap(ptr: *const c_void, len: usize) {
    // SAFETY: the caller passes a mapped range.
    unsafe { icache_coherence::clear_cache(ptr, len) }.unwrap();
}

#[inline(never)]
unsafe fn libgcc(ptr: *const c_void, len: usize) {
    let start = ptr.cast_mut().cast::<c_char>();
    // SAFETY: the caller passes a mapped range, so `start + len` is in bounds
    // or one past it.
    unsafe { __clear_cache(start, start.add(len)) };
}

#[inline(never)]
unsafe fn clear_cache_crate(ptr: *const c_void, len: usize) {
    let start = ptr.cast::<u8>();
    // SAFETY: as for `libgcc`.
    let _ = unsafe { clear_cache::clear_cache(start, start.add(len)) };
}

#[cfg(feature = "wasmtime-newest")]
#[inline(never)]
unsafe fn wasmtime_newest(ptr: *const c_void, len: usize) {
    // SAFETY: the caller passes a mapped range.
    let _ = unsafe { wasmtime_internal_jit_icache_coherence::clear_cache(ptr, len) };
}

#[inline(never)]
unsafe fn wasmtime_21(ptr: *const c_void, len: usize) {
    // SAFETY: the caller passes a mapped range.
    let _ = unsafe { wasmtime_jit_icache_coherence::clear_cache(ptr, len) };
}

/// The library's two calls together, as a JIT publishes code for all
/// threads and hands errors to its caller; the host-side measurement counts
/// what this executes (callgrind) against [`empty_host`].
///
/// # Safety
///
/// `[ptr, ptr + len)` must be mapped memory, as for `clear_cache`.
#[no_mangle]
#[inline(never)]
pub unsafe fn ours_host(ptr: *const c_void, len: usize) -> std::io::Result<()> {
    // SAFETY: forwarded from the caller.
    unsafe { icache_coherence::clear_cache(ptr, len)? };
    icache_coherence::pipeline_flush_mt()
}

/// The baseline for [`ours_host`]: same signature, does nothing.
///
/// # Safety
///
/// None needed; `unsafe` only to match [`ours_host`].
#[no_mangle]
#[inline(never)]
pub unsafe fn empty_host(_ptr: *const c_void, _len: usize) -> std::io::Result<()> {
    Ok(())
}

/// Every implementation, by the name the tables use (`empty` first).
const IMPLS: &[(&str, Impl)] = &[
    ("empty", empty),
    ("icache-coherence", ours),
    ("libgcc", libgcc),
    ("clear-cache", clear_cache_crate),
    #[cfg(feature = "wasmtime-newest")]
    ("wasmtime-newest", wasmtime_newest),
    ("wasmtime-21", wasmtime_21),
    ("icache-coherence-unwrap", ours_unwrap),
];

/// One measured call: begin marker, the call through a function pointer the
/// optimizer cannot see through, end marker.
#[inline(never)]
fn measure(f: Impl, ptr: *const c_void, len: usize) {
    let f = black_box(f);
    bench_begin();
    // SAFETY: every caller passes a range inside `Buffer`.
    unsafe { f(ptr, len) };
    bench_end();
}

/// Anonymous read-write memory, populated, page-aligned.
struct Buffer {
    ptr: *mut u8,
    len: usize,
}

impl Buffer {
    fn new(len: usize) -> Buffer {
        // SAFETY: a fresh anonymous mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap of {len} bytes failed");
        Buffer {
            ptr: ptr.cast(),
            len,
        }
    }

    fn at(&self, offset: usize, len: usize) -> *const c_void {
        assert!(offset + len <= self.len);
        // SAFETY: in bounds, checked above.
        unsafe { self.ptr.add(offset) }.cast_const().cast()
    }
}

fn print_header() {
    println!(
        "marks {:#x} {:#x}",
        bench_begin as *const () as usize, bench_end as *const () as usize
    );
    let info = icache_coherence::cache_info();
    println!(
        "lines {} {}",
        info.data_line.unwrap_or(0),
        info.instruction_line.unwrap_or(0)
    );
}

/// Offsets of the two starts: line-aligned, and 4 bytes (one instruction)
/// past a line boundary.
const OFFSETS: [usize; 2] = [0, 4];

fn single(sizes: &[usize]) {
    let max = sizes.iter().copied().max().unwrap_or(0);
    let buf = Buffer::new(max + 2 * 4096);
    // Warm-up: any one-time work (reading CTR_EL0 into a cache, resolving a
    // PLT entry) happens here, outside the brackets.
    for &(_, f) in IMPLS {
        measure(f, buf.at(0, 4), 4);
    }
    print_header();
    // The warm-up brackets above are printed as `warmup` cases.
    for &(name, _) in IMPLS {
        println!("case warmup-{name} 4 0");
    }
    for &size in sizes {
        for offset in OFFSETS {
            for &(name, f) in IMPLS {
                measure(f, buf.at(offset, size), size);
                println!("case {name} {size} {offset}");
            }
        }
    }
}

/// Distance between two patch sites: one line on a64fx, four on cortex-a72,
/// so every site is a separate line on both.
const SITE_STRIDE: usize = 256;

fn patch(n: usize) {
    let buf = Buffer::new(n * SITE_STRIDE + 4096);
    // The first pipeline_flush_mt registers with membarrier; do it outside.
    icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
    print_header();
    let sites: Vec<*const c_void> = (0..n).map(|i| buf.at(i * SITE_STRIDE, 8)).collect();
    bench_begin();
    for &site in &sites {
        // SAFETY: inside the buffer.
        unsafe { icache_coherence::clear_cache(site, 8) }.expect("clear_cache");
        icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
    }
    bench_end();
    println!("case separate {n} 0");
    bench_begin();
    icache_coherence::batch(icache_coherence::Publish::AllThreads, |b| {
        for &site in &sites {
            // SAFETY: inside the buffer, which outlives the batch.
            unsafe { b.add(site, 8)? };
        }
        Ok::<_, std::io::Error>(())
    })
    .expect("batch");
    bench_end();
    println!("case batch {n} 0");
}

fn flush(n: usize) {
    icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
    #[cfg(feature = "wasmtime-newest")]
    wasmtime_internal_jit_icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
    print_header();
    for _ in 0..n {
        bench_begin();
        icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
        bench_end();
        println!("case pipeline_flush_mt 0 0");
    }
    // Upstream's newest, side by side in the same process (its first call,
    // above, registered with membarrier already).
    #[cfg(feature = "wasmtime-newest")]
    for _ in 0..n {
        bench_begin();
        wasmtime_internal_jit_icache_coherence::pipeline_flush_mt().expect("pipeline_flush_mt");
        bench_end();
        println!("case pipeline_flush_mt-wasmtime-newest 0 0");
    }
}

/// The writer's side with the kernel broadcast: what `publish-flush` runs.
///
/// # Safety
///
/// `[ptr, ptr + len)` must be mapped.
#[inline(never)]
unsafe fn publish_flush(ptr: *const c_void, len: usize, entry: &AtomicPtr<c_void>) {
    // SAFETY: forwarded from the caller.
    let _ = unsafe { icache_coherence::clear_cache(ptr, len) };
    let _ = icache_coherence::pipeline_flush_mt();
    entry.store(ptr.cast_mut(), Release);
}

/// The writer's side of the reader-side protocol: what `publish-epoch` runs.
///
/// # Safety
///
/// `[ptr, ptr + len)` must be mapped.
#[inline(never)]
unsafe fn publish_epoch(
    ptr: *const c_void,
    len: usize,
    entry: &AtomicPtr<c_void>,
    epoch: &icache_coherence::CodeEpoch,
) {
    // SAFETY: forwarded from the caller.
    let _ = unsafe { icache_coherence::clear_cache(ptr, len) };
    epoch.advance();
    entry.store(ptr.cast_mut(), Release);
}

/// A reader's check, as it is inlined into a reader's loop: the epoch's
/// address and the last-seen value in registers. The `ret` is the harness's
/// (the `empty` calibration subtracts it).
#[inline(never)]
fn reader_check(epoch: &icache_coherence::CodeEpoch, seen: usize) {
    let mut seen = seen;
    epoch.sync(&mut seen);
}

fn publish(readers: usize) {
    let buf = Buffer::new(4096);
    let entry = AtomicPtr::new(core::ptr::null_mut());
    let epoch = icache_coherence::CodeEpoch::new();
    // Warm-up outside the brackets: membarrier registration, the first
    // CTR_EL0 fold, the CPUID probe of sync_this_thread.
    // SAFETY: inside the buffer.
    unsafe { publish_flush(buf.at(0, 4), 4, &entry) };
    // SAFETY: inside the buffer.
    unsafe { publish_epoch(buf.at(0, 4), 4, &entry, &epoch) };
    reader_check(&epoch, 0);
    let (park, parked) = std::sync::mpsc::channel::<()>();
    let parked = Arc::new(std::sync::Mutex::new(parked));
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let parked = Arc::clone(&parked);
            // Each reader blocks until the end: it exists (membarrier must
            // interrupt its core when it runs), but runs nothing in the
            // brackets.
            std::thread::spawn(move || {
                let _ = parked.lock().map(|rx| rx.recv());
            })
        })
        .collect();
    print_header();
    let empty_fn = black_box(empty as Impl);
    bench_begin();
    // SAFETY: calibration, touches nothing.
    unsafe { empty_fn(buf.at(0, 4), 4) };
    bench_end();
    println!("case empty {readers} 0");
    let flush_fn = black_box(publish_flush as unsafe fn(*const c_void, usize, &AtomicPtr<c_void>));
    bench_begin();
    // SAFETY: inside the buffer.
    unsafe { flush_fn(buf.at(0, 4), 4, &entry) };
    bench_end();
    println!("case publish-flush {readers} 0");
    type EpochFn =
        unsafe fn(*const c_void, usize, &AtomicPtr<c_void>, &icache_coherence::CodeEpoch);
    let epoch_fn = black_box(publish_epoch as EpochFn);
    bench_begin();
    // SAFETY: inside the buffer.
    unsafe { epoch_fn(buf.at(0, 4), 4, &entry, &epoch) };
    bench_end();
    println!("case publish-epoch {readers} 0");
    let check = black_box(reader_check as fn(&icache_coherence::CodeEpoch, usize));
    let now = epoch.current();
    bench_begin();
    check(&epoch, now);
    bench_end();
    println!("case reader-unchanged {readers} 0");
    bench_begin();
    check(&epoch, now.wrapping_sub(1));
    bench_end();
    println!("case reader-changed {readers} 0");
    drop(park);
    for t in threads {
        let _ = t.join();
    }
}

fn race(threads: usize) {
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                icache_coherence::pipeline_flush_mt()
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("pipeline_flush_mt");
    }
    println!("race {threads} ok");
}

fn host() {
    let buf = Buffer::new(4096);
    type HostFn = unsafe fn(*const c_void, usize) -> std::io::Result<()>;
    for f in [ours_host as HostFn, empty_host] {
        // SAFETY: inside the buffer.
        unsafe { black_box(f)(buf.at(0, 64), 64) }.expect("host call");
    }
    println!("host ok");
}

fn numbers(args: &[String]) -> Vec<usize> {
    args.iter()
        .map(|a| a.parse().unwrap_or_else(|_| panic!("not a number: {a}")))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        eprintln!(
            "usage: icache-bench single SIZE... | patch N | flush N | publish READERS | race THREADS | host"
        );
        std::process::exit(2);
    };
    let rest = numbers(&args[1..]);
    let first = rest.first().copied().unwrap_or(1);
    match mode.as_str() {
        "single" => single(&rest),
        "patch" => patch(first),
        "flush" => flush(first),
        "race" => race(first),
        "publish" => publish(first),
        "host" => host(),
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}
