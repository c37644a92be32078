//! The calling thread's own context synchronization: what a reader runs
//! after it has read a publication, so that its next instruction fetches
//! see code that the writer made coherent before publishing.
//!
//! One instruction (or none) per architecture, no system call, no lock, no
//! allocation: safe in a signal handler. It is the default of
//! [`Backend::sync_this_thread`](crate::backends::Backend::sync_this_thread);
//! a backend whose mechanism changes the answer (RISC-V Linux) overrides it.
//!
//! Why it is enough, and only after the read: the published model of AArch64
//! instruction fetch (Simner et al., ESOP 2020; herdtools7
//! `catalogue/aarch64-ifetch`) forbids a stale fetch in
//! `MP.RF+cachesync+ctrlisb` (the writer completes `dc`/`dsb`/`ic`/`dsb`
//! before its flag store; the reader reads the flag, branches on it, then
//! runs `isb`) and allows it in `MP.RF+cachesync+isb-ctrl` (the `isb` before
//! the read).

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
use core::sync::atomic::{AtomicU8, Ordering::Relaxed};

/// What [`sync_this_thread`] executes here, for humans.
pub(crate) const MECHANISM: &str = if cfg!(miri) {
    "none (Miri)"
} else if cfg!(any(target_arch = "aarch64", icache_arm_isb)) {
    "isb"
} else if cfg!(target_arch = "arm") {
    "CP15 Flush Prefetch Buffer (mcr p15, 0, r, c7, c5, 4)"
} else if cfg!(any(target_arch = "powerpc", target_arch = "powerpc64")) {
    "isync"
} else if cfg!(any(target_arch = "riscv64", target_arch = "riscv32")) {
    "fence.i"
} else if cfg!(target_arch = "loongarch64") {
    "ibar 0"
} else if cfg!(target_arch = "s390x") {
    "bcr 15,0 (serialization)"
} else if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
    "SERIALIZE, or CPUID where SERIALIZE is missing"
} else if cfg!(any(
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "mips32r6",
    target_arch = "mips64r6"
)) {
    "jr.hb"
} else {
    "none needed"
};

/// Makes this thread's later instruction fetches see every publication it
/// has already observed. See the module docs for the contract.
#[inline(always)]
pub(crate) fn sync_this_thread() {
    imp();
}

/// AArch64 and 32-bit Arm (v7 and later, and every M profile): `isb` is the
/// context synchronization event (Arm ARM DDI 0487, "Context
/// synchronization event"; DDI 0406, "Instruction Synchronization Barrier";
/// DDI 0403, Armv7-M, "ISB"). Which 32-bit Arm targets have it comes from
/// `build.rs` (`icache_arm_isb`, from the triple): Arm's target features
/// such as `v7` and `mclass` are unstable, so `cfg(target_feature = "v7")`
/// is false on a stable compiler even for v7 targets, and M-profile cores
/// have no CP15 to fall back on. No `nomem`: the compiler must not move the caller's read of the
/// publication after it.
#[cfg(all(not(miri), any(target_arch = "aarch64", icache_arm_isb)))]
#[inline(always)]
fn imp() {
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// ARMv6 A profile (ARM11, `arm-unknown-linux-gnueabihf`) has no `isb`
/// instruction; its CP15 "Flush Prefetch Buffer" operation (c7, c5, 4) is
/// the same event and is allowed in user mode (ARM DDI 0301, ARM1176JZF-S
/// TRM, "c7, Cache operations").
#[cfg(all(not(miri), target_arch = "arm", not(icache_arm_isb)))]
#[inline(always)]
fn imp() {
    // SAFETY: the operation has no memory-safety preconditions.
    unsafe {
        core::arch::asm!("mcr p15, 0, {0}, c7, c5, 4", in(reg) 0u32, options(nostack, preserves_flags))
    };
}

/// POWER: `isync` discards prefetched instructions and makes the thread
/// refetch (Power ISA Book II, "Instruction Synchronize"), the reader's step
/// of the instruction-modification sequence.
#[cfg(all(not(miri), any(target_arch = "powerpc", target_arch = "powerpc64")))]
#[inline(always)]
fn imp() {
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe { core::arch::asm!("isync", options(nostack, preserves_flags)) };
}

/// RISC-V: `fence.i` orders this hart's fetches after the stores it has
/// observed (Unprivileged ISA, "Zifencei"). Used on bare metal; RISC-V
/// Linux decides in its backend (the syscall already covered every hart).
#[cfg(all(not(miri), any(target_arch = "riscv64", target_arch = "riscv32")))]
#[inline(always)]
fn imp() {
    // SAFETY: a fence has no memory-safety preconditions.
    unsafe { core::arch::asm!("fence.i", options(nostack, preserves_flags)) };
}

/// LoongArch: `ibar 0` (LoongArch Reference Manual vol. 1, "IBAR").
#[cfg(all(not(miri), target_arch = "loongarch64"))]
#[inline(always)]
fn imp() {
    // SAFETY: a barrier has no memory-safety preconditions.
    unsafe { core::arch::asm!("ibar 0", options(nostack, preserves_flags)) };
}

/// s390x: a serializing operation discards prefetched instructions
/// (z/Architecture Principles of Operation, "CPU Serialization": after it,
/// instruction fetches see the stores of other CPUs that it has observed).
/// `bcr 15,0` is the serializing form of the no-op branch.
#[cfg(all(not(miri), target_arch = "s390x"))]
#[inline(always)]
fn imp() {
    // SAFETY: a no-op branch has no memory-safety preconditions.
    unsafe { core::arch::asm!("bcr 15,0", options(nostack, preserves_flags)) };
}

/// x86 and x86-64: a serializing instruction, the executing processor's step
/// of the cross-modifying-code algorithm (Intel SDM vol. 3, "Handling Self-
/// and Cross-Modifying Code", 9.1.3; 8.1.3 in older editions). `SERIALIZE`
/// where CPUID.(EAX=07H,ECX=0):EDX[14] reports it, else `CPUID` itself,
/// which is serializing ("Serializing Instructions", 9.3 / 8.3). HotSpot's
/// `cross_modify_fence` makes the same choice. The probe runs once; its
/// outcome is one relaxed byte.
#[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
#[inline(always)]
fn imp() {
    if SERIALIZE.load(Relaxed) == YES {
        // SAFETY: SERIALIZE (0F 01 E8) exists: CPUID said so.
        unsafe { core::arch::asm!(".byte 0x0f, 0x01, 0xe8", options(nostack, preserves_flags)) };
    } else {
        serialize_slow();
    }
}

#[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
const YES: u8 = 2;
#[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
const NO: u8 = 1;
/// 0 = not probed yet, then `YES` or `NO`.
#[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
static SERIALIZE: AtomicU8 = AtomicU8::new(0);

/// `CPUID`, which serializes whatever it returns; the first call also
/// records whether `SERIALIZE` exists.
#[cfg(all(not(miri), any(target_arch = "x86", target_arch = "x86_64")))]
#[cold]
#[inline(never)]
fn serialize_slow() {
    #[cfg(target_arch = "x86")]
    use core::arch::x86::__cpuid_count;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::__cpuid_count;
    // Leaf 0 reports the highest basic leaf; leaf 7 only exists above it.
    let max = __cpuid_count(0, 0).eax;
    let has = max >= 7 && __cpuid_count(7, 0).edx & (1 << 14) != 0;
    SERIALIZE.store(if has { YES } else { NO }, Relaxed);
}

/// MIPS: `jr.hb` clears the instruction hazard (MIPS32/MIPS64 Release 2 and
/// later, "Instruction Hazard Barrier"), so after another thread's
/// `cacheflush` (which synchronized every cache) this thread refetches.
/// Rust has no stable `asm!` for MIPS, so the two words live in `.text` as
/// a leaf function: `jr.hb $ra` and its delay slot `nop` (Release 6 spells
/// the same barrier `jalr.hb $zero, $ra`). Only type-checked in this
/// project's CI.
#[cfg(all(
    not(miri),
    any(
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6"
    )
))]
#[inline(always)]
fn imp() {
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const JR_HB_RA: u32 = 0x03e0_0408;
    #[cfg(any(target_arch = "mips32r6", target_arch = "mips64r6"))]
    const JR_HB_RA: u32 = 0x03e0_0409;
    #[link_section = ".text.icache_coherence_jr_hb"]
    static JR_HB: [u32; 2] = [JR_HB_RA, 0];
    // SAFETY: the words are a complete leaf function in an executable
    // section: it touches no memory and returns to its caller.
    let f: extern "C" fn() = unsafe { core::mem::transmute(JR_HB.as_ptr()) };
    f();
}

/// Miri runs no machine code, and architectures that fetch coherently with
/// no pipeline state to discard (wasm cannot execute what it writes) need
/// nothing. A compiler fence keeps the ordering promise for the compiler.
#[cfg(any(
    miri,
    not(any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "riscv64",
        target_arch = "riscv32",
        target_arch = "loongarch64",
        target_arch = "s390x",
        target_arch = "x86",
        target_arch = "x86_64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "mips32r6",
        target_arch = "mips64r6"
    ))
))]
#[inline(always)]
fn imp() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}
