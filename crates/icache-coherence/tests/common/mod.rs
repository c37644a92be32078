//! Test support: executable pages and a tiny code generator for every
//! architecture the matrix runs (`extern "C" fn() -> u32` returning N).

#![allow(dead_code)] // each test file uses a different part

use core::ffi::c_void;

pub const PAGE: usize = 4096;

/// Pages of memory that flip between RW (to write code) and RX (to run it).
pub struct CodePages {
    ptr: *mut u8,
    len: usize,
}

// The pages are plain memory; tests coordinate access explicitly.
unsafe impl Send for CodePages {}
unsafe impl Sync for CodePages {}

impl CodePages {
    /// `n` fresh RW pages. Panics (this is test code) if the OS refuses.
    pub fn new(n: usize) -> CodePages {
        let len = n * PAGE;
        let ptr = sys::alloc(len);
        assert!(!ptr.is_null(), "could not map {len} bytes");
        CodePages { ptr, len }
    }

    pub fn page(&self, i: usize) -> *mut u8 {
        assert!(i * PAGE < self.len);
        unsafe { self.ptr.add(i * PAGE) }
    }

    pub fn writable(&self, i: usize) {
        sys::protect(self.page(i), PAGE, false);
    }

    pub fn executable(&self, i: usize) {
        sys::protect(self.page(i), PAGE, true);
    }

    /// Makes page `i` writable and executable at once, as cross-modifying
    /// code needs (the W^X-free case).
    pub fn writable_and_executable(&self, i: usize) {
        sys::protect_rwx(self.page(i), PAGE);
    }

    /// Writes `code` at `offset` in page `i` (which must be writable).
    pub fn write(&self, i: usize, offset: usize, code: &[u8]) -> *const c_void {
        assert!(offset + code.len() <= PAGE);
        unsafe {
            let at = self.page(i).add(offset);
            // Volatile, byte by byte: the stores must really happen before
            // clear_cache, which is the point of these tests.
            for (k, b) in code.iter().enumerate() {
                core::ptr::write_volatile(at.add(k), *b);
            }
            at as *const c_void
        }
    }

    /// Calls the function at `offset` in page `i` (which must be executable).
    pub fn call(&self, i: usize, offset: usize) -> u32 {
        unsafe { call_at(self.page(i).add(offset) as *const c_void) }
    }
}

/// Calls generated code.
///
/// # Safety
/// `entry` must hold a coherent `extern "C" fn() -> u32` in executable memory.
pub unsafe fn call_at(entry: *const c_void) -> u32 {
    let f: extern "C" fn() -> u32 = unsafe { core::mem::transmute(entry) };
    f()
}

impl Drop for CodePages {
    fn drop(&mut self) {
        sys::free(self.ptr, self.len);
    }
}

#[cfg(unix)]
mod sys {
    pub fn alloc(len: usize) -> *mut u8 {
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            core::ptr::null_mut()
        } else {
            p as *mut u8
        }
    }
    pub fn protect(p: *mut u8, len: usize, exec: bool) {
        let prot = if exec {
            libc::PROT_READ | libc::PROT_EXEC
        } else {
            libc::PROT_READ | libc::PROT_WRITE
        };
        let r = unsafe { libc::mprotect(p as *mut _, len, prot) };
        assert_eq!(r, 0, "mprotect: {}", std::io::Error::last_os_error());
    }
    pub fn protect_rwx(p: *mut u8, len: usize) {
        let prot = libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC;
        let r = unsafe { libc::mprotect(p as *mut _, len, prot) };
        assert_eq!(r, 0, "mprotect: {}", std::io::Error::last_os_error());
    }
    pub fn free(p: *mut u8, len: usize) {
        unsafe { libc::munmap(p as *mut _, len) };
    }
}

#[cfg(windows)]
mod sys {
    use windows_sys::Win32::System::Memory::*;
    pub fn alloc(len: usize) -> *mut u8 {
        unsafe {
            VirtualAlloc(
                core::ptr::null(),
                len,
                MEM_COMMIT | MEM_RESERVE,
                PAGE_READWRITE,
            ) as *mut u8
        }
    }
    pub fn protect(p: *mut u8, len: usize, exec: bool) {
        let mut old = 0;
        let prot = if exec {
            PAGE_EXECUTE_READ
        } else {
            PAGE_READWRITE
        };
        let r = unsafe { VirtualProtect(p as *const _, len, prot, &mut old) };
        assert_ne!(r, 0, "VirtualProtect: {}", std::io::Error::last_os_error());
    }
    pub fn protect_rwx(p: *mut u8, len: usize) {
        let mut old = 0;
        let r = unsafe { VirtualProtect(p as *const _, len, PAGE_EXECUTE_READWRITE, &mut old) };
        assert_ne!(r, 0, "VirtualProtect: {}", std::io::Error::last_os_error());
    }
    pub fn free(p: *mut u8, _len: usize) {
        unsafe { VirtualFree(p as *mut _, 0, MEM_RELEASE) };
    }
}

/// Machine code for `extern "C" fn() -> u32 { n }` on this architecture.
pub fn return_n(n: u32) -> Vec<u8> {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        // mov eax, imm32; ret
        let mut c = vec![0xb8];
        c.extend_from_slice(&n.to_le_bytes());
        c.push(0xc3);
        c
    }
    #[cfg(target_arch = "aarch64")]
    {
        let (hi, lo) = (n >> 16, n & 0xffff);
        // movz w0, #lo; movk w0, #hi, lsl #16; ret
        words_le(&[0x5280_0000 | lo << 5, 0x72a0_0000 | hi << 5, 0xd65f_03c0])
    }
    #[cfg(target_arch = "arm")]
    {
        let (hi, lo) = (n >> 16, n & 0xffff);
        // movw r0, #lo; movt r0, #hi; bx lr (A32)
        let imm = |v: u32| (v >> 12) << 16 | (v & 0xfff);
        words_le(&[0xe300_0000 | imm(lo), 0xe340_0000 | imm(hi), 0xe12f_ff1e])
    }
    #[cfg(any(target_arch = "riscv64", target_arch = "riscv32"))]
    {
        // lui a0, %hi(n); addiw/addi a0, a0, %lo(n); ret
        assert!(n < 1 << 30);
        let lo12 = (n & 0xfff) as i32;
        let lo12 = if lo12 >= 0x800 { lo12 - 0x1000 } else { lo12 };
        let hi20 = (n as i32 - lo12) as u32 >> 12;
        let addi_op = if cfg!(target_arch = "riscv64") {
            0x1b
        } else {
            0x13
        };
        words_le(&[
            hi20 << 12 | 10 << 7 | 0x37,
            (lo12 as u32 & 0xfff) << 20 | 10 << 15 | 10 << 7 | addi_op,
            0x0000_8067,
        ])
    }
    #[cfg(target_arch = "s390x")]
    {
        // llilf %r2, n; br %r14
        let mut c = vec![0xc0, 0x2f];
        c.extend_from_slice(&n.to_be_bytes());
        c.extend_from_slice(&[0x07, 0xfe]);
        c
    }
    #[cfg(target_arch = "powerpc64")]
    {
        let (hi, lo) = (n >> 16, n & 0xffff);
        // lis r3, hi; ori r3, r3, lo; blr
        assert!(n < 1 << 31);
        let w = [0x3c60_0000 | hi, 0x6063_0000 | lo, 0x4e80_0020];
        if cfg!(target_endian = "little") {
            words_le(&w)
        } else {
            w.iter().flat_map(|x| x.to_be_bytes()).collect()
        }
    }
}

fn words_le(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A function republished again and again while other threads call it.
///
/// Code lives in several slots (one page each). A reader pins the slot it
/// is about to run (Dekker-style: pin, then re-check it is still the
/// latest), and the writer only rewrites a slot that is neither the latest
/// nor pinned. So no thread ever runs bytes while they are being rewritten
/// (that would be cross-modifying code, which `pipeline_flush_mt` is not
/// for), and every call can be checked against the value its slot holds.
pub struct Republished {
    pages: CodePages,
    slots: usize,
    /// W^X (mprotect around every write) or RWX pages (no syscalls between
    /// the write and the call, so nothing synchronizes by accident).
    w_xor_x: bool,
    latest: std::sync::atomic::AtomicUsize,
    expected: Vec<std::sync::atomic::AtomicU32>,
    pins: Vec<std::sync::atomic::AtomicUsize>,
    /// Publish with the reader-side protocol instead of `pipeline_flush_mt`.
    epoch: Option<icache_coherence::CodeEpoch>,
}

impl Republished {
    /// `slots` pages, publishing `1` first.
    pub fn new(slots: usize, w_xor_x: bool) -> Republished {
        Republished::build(slots, w_xor_x, None)
    }

    /// `slots` RWX pages published with a [`icache_coherence::CodeEpoch`]:
    /// no `pipeline_flush_mt`; readers use [`Republished::call_latest_synced`].
    pub fn with_epoch(slots: usize) -> Republished {
        Republished::build(slots, false, Some(icache_coherence::CodeEpoch::new()))
    }

    fn build(
        slots: usize,
        w_xor_x: bool,
        epoch: Option<icache_coherence::CodeEpoch>,
    ) -> Republished {
        let r = Republished {
            pages: CodePages::new(slots),
            slots,
            w_xor_x,
            latest: Default::default(),
            expected: (0..slots).map(|_| Default::default()).collect(),
            pins: (0..slots).map(|_| Default::default()).collect(),
            epoch,
        };
        if !w_xor_x {
            (0..slots).for_each(|k| r.pages.writable_and_executable(k));
        }
        r.publish(1);
        r
    }

    /// Writes `return value` into a free slot, makes it coherent, flushes
    /// every thread's pipeline, then makes it the latest.
    pub fn publish(&self, value: u32) {
        use std::sync::atomic::Ordering::SeqCst;
        let slot = loop {
            let cur = self.latest.load(SeqCst);
            let free = (0..self.slots).find(|&k| k != cur && self.pins[k].load(SeqCst) == 0);
            match free {
                Some(k) => break k,
                None => std::thread::yield_now(),
            }
        };
        let code = return_n(value);
        if let Some(epoch) = &self.epoch {
            let f = self.pages.write(slot, 0, &code);
            self.expected[slot].store(value, SeqCst);
            make_coherent_then(f, code.len(), || {
                epoch.advance();
                self.latest.store(slot, SeqCst);
            });
            return;
        }
        if self.w_xor_x {
            self.pages.writable(slot);
        }
        let f = self.pages.write(slot, 0, &code);
        unsafe { icache_coherence::clear_cache(f, code.len()) }.unwrap();
        if self.w_xor_x {
            self.pages.executable(slot);
        }
        self.expected[slot].store(value, SeqCst);
        icache_coherence::pipeline_flush_mt().unwrap();
        self.latest.store(slot, SeqCst);
    }

    /// Calls the latest function: (what it returned, what it should return).
    pub fn call_latest(&self) -> (u32, u32) {
        let slot = self.pin_latest();
        self.call_pinned(slot)
    }

    /// The reader side of the epoch protocol: read the publication (pin the
    /// latest slot), then sync with the epoch, then call. `seen` is this
    /// reader's last-seen epoch.
    pub fn call_latest_synced(&self, seen: &mut usize) -> (u32, u32) {
        let epoch = self.epoch.as_ref().expect("built with_epoch");
        let slot = self.pin_latest();
        epoch.sync(seen);
        self.call_pinned(slot)
    }

    /// Reads the publication: the latest slot, pinned so that the writer
    /// cannot rewrite it while it runs.
    fn pin_latest(&self) -> usize {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let k = self.latest.load(SeqCst);
            self.pins[k].fetch_add(1, SeqCst);
            if self.latest.load(SeqCst) == k {
                break k;
            }
            self.pins[k].fetch_sub(1, SeqCst);
        }
    }

    fn call_pinned(&self, slot: usize) -> (u32, u32) {
        use std::sync::atomic::Ordering::SeqCst;
        let want = self.expected[slot].load(SeqCst);
        let got = self.pages.call(slot, 0);
        self.pins[slot].fetch_sub(1, SeqCst);
        (got, want)
    }
}

/// The writer's side of the epoch protocol: the maintenance of `[code,
/// code + len)`, then `publish`. On AArch64 the sequence is spelled out here
/// (stepping by 4 bytes, which covers every line whatever CTR_EL0 says) so
/// that a mutant can place the publication exactly between `ic ivau` and
/// the `dsb ish` that completes it; the writer itself never runs the code,
/// so it needs no `isb`.
#[cfg(target_arch = "aarch64")]
pub fn make_coherent_then(code: *const c_void, len: usize, publish: impl FnOnce()) {
    use core::arch::asm;
    let start = code as usize & !3;
    let words = (start..code as usize + len).step_by(4);
    unsafe {
        for w in words.clone() {
            asm!("dc cvau, {}", in(reg) w as u64, options(nostack, preserves_flags));
        }
        asm!("dsb ish", options(nostack, preserves_flags));
        for w in words {
            asm!("ic ivau, {}", in(reg) w as u64, options(nostack, preserves_flags));
        }
        asm!("dsb ish", options(nostack, preserves_flags)); // completes the invalidation
        publish();
    }
}

/// The writer's side of the epoch protocol: `clear_cache`, then `publish`.
#[cfg(not(target_arch = "aarch64"))]
pub fn make_coherent_then(code: *const c_void, len: usize, publish: impl FnOnce()) {
    unsafe { icache_coherence::clear_cache(code, len) }.unwrap();
    publish();
}
