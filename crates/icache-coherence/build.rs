//! Chooses the backend and derives every other target condition from that
//! one choice, so that no list of targets has to be kept in step with
//! another by hand (the approach rustix takes with its `linux_kernel` alias).
//!
//! It emits, as `cfg`s the crate uses instead of raw `target_*` tests:
//!
//! | cfg | meaning |
//! |---|---|
//! | `icache_backend = "<file>"` | the backend module `src/backends/<file>.rs` |
//! | `linux_kernel` | Linux or Android: the kernel's syscall ABI |
//! | `icache_membarrier` | the `membarrier` SYNC_CORE flush is compiled in (Linux, Android, FreeBSD) |
//! | `icache_line_loops` | the backend steps through cache lines itself (`lines::Lines`) |
//! | `icache_ctr_el0` | the backend reads CTR_EL0 (`ctr_el0.rs`) |
//! | `icache_os_calls` | the backend or the flush makes OS calls that can fail with an OS code |
//! | `icache_errno` | those calls report through `errno` |
//! | `icache_std` | the `std` feature is on *and* the target has a `std` |
//! | `icache_arm_isb` | 32-bit Arm with the `isb` instruction (v7+, M profile) |
//!
//! A target with no row in [`choose`] gets no `icache_backend`, and
//! `src/backends.rs` then stops the build with `compile_error!` naming the
//! triple: there is no silent no-op fallback.
use std::env;

/// What the build script knows of the target, from cargo's `CARGO_CFG_*`.
struct Target {
    arch: String,
    os: String,
    vendor: String,
    family: String,
    /// The target triple (`TARGET`), for the Arm profile: Arm's target
    /// features (`mclass`, `v7`) are unstable, so stable cargo does not
    /// pass them in `CARGO_CFG_TARGET_FEATURE`.
    triple: String,
    /// `CARGO_CFG_TARGET_FEATURE`, where the toolchain passes them.
    features: String,
    miri: bool,
}

impl Target {
    fn from_env() -> Target {
        let var = |name: &str| env::var(name).unwrap_or_default();
        Target {
            arch: var("CARGO_CFG_TARGET_ARCH"),
            os: var("CARGO_CFG_TARGET_OS"),
            vendor: var("CARGO_CFG_TARGET_VENDOR"),
            family: var("CARGO_CFG_TARGET_FAMILY"),
            triple: var("TARGET"),
            features: var("CARGO_CFG_TARGET_FEATURE"),
            // cargo-miri sets `cfg(miri)` for the build script's view of the
            // target (it builds with `--cfg miri` and passes it as
            // CARGO_CFG_MIRI).
            miri: env::var_os("CARGO_CFG_MIRI").is_some(),
        }
    }

    fn arch_in(&self, archs: &[&str]) -> bool {
        archs.contains(&self.arch.as_str())
    }

    fn os_in(&self, oses: &[&str]) -> bool {
        oses.contains(&self.os.as_str())
    }

    fn linux_kernel(&self) -> bool {
        self.os_in(&["linux", "android"])
    }

    fn has_feature(&self, feature: &str) -> bool {
        self.features.split(',').any(|f| f == feature)
    }

    /// Armv7-M and Armv8-M Mainline: the cores whose System Control Block
    /// may hold the cache maintenance registers (Cortex-M7, M55, M85...).
    /// Armv6-M and Armv8-M Baseline have none in the architecture.
    fn m_profile_with_caches(&self) -> bool {
        ["thumbv7m-", "thumbv7em-", "thumbv8m.main-"]
            .iter()
            .any(|p| self.triple.starts_with(p))
    }

    /// Armv6-M and Armv8-M Baseline: no caches in the architecture.
    fn m_profile_without_caches(&self) -> bool {
        ["thumbv6m-", "thumbv8m.base-"]
            .iter()
            .any(|p| self.triple.starts_with(p))
    }

    /// Armv7-A, Armv7-R and Armv8-R AArch32 (not M profile): CP15 cache
    /// maintenance by address, at PL1.
    fn a_or_r_profile_v7(&self) -> bool {
        let by_triple = ["armv7a-", "armv7r-", "armebv7r-", "armv8r-"]
            .iter()
            .any(|p| self.triple.starts_with(p));
        by_triple || (self.has_feature("v7") && !self.has_feature("mclass"))
    }

    /// 32-bit Arm with the `isb` instruction (v7 and later, every M profile
    /// from v6-M): the context synchronization `sync_this_thread` runs.
    /// Stable cargo does not pass Arm's target features, hence the triple.
    fn arm_has_isb(&self) -> bool {
        let by_triple = [
            "armv7", "armebv7", "armv8", "thumbv7", "thumbv8", "thumbv6m",
        ]
        .iter()
        .any(|p| self.triple.starts_with(p));
        self.arch == "arm" && (by_triple || self.has_feature("v7") || self.has_feature("mclass"))
    }
}

/// One backend: its file under `src/backends/`, and what it needs.
struct Choice {
    file: &'static str,
    /// It steps through cache lines itself.
    line_loops: bool,
    /// It makes OS calls that can fail with an OS code.
    os_calls: bool,
    /// Those calls report through `errno`.
    errno: bool,
}

/// What a backend's OS calls are, if any.
#[derive(Clone, Copy, PartialEq)]
enum Calls {
    None,
    /// Calls that report their own OS error numbers (Win32).
    OwnCodes,
    /// Calls that report through `errno`.
    Errno,
}

const fn backend(file: &'static str, line_loops: bool, calls: Calls) -> Choice {
    Choice {
        file,
        line_loops,
        os_calls: !matches!(calls, Calls::None),
        errno: matches!(calls, Calls::Errno),
    }
}

/// The dispatch table, read top to bottom: the first matching row wins.
/// Adding a platform is one row here, one line in `src/backends.rs` and one
/// file in `src/backends/`.
fn choose(t: &Target) -> Option<Choice> {
    const RISCV: &[&str] = &["riscv64", "riscv32"];
    const POWER: &[&str] = &["powerpc64", "powerpc"];
    const MIPS: &[&str] = &["mips", "mips64", "mips32r6", "mips64r6"];
    Some(if t.miri {
        // No machine code runs under the interpreter.
        backend("miri", false, Calls::None)
    } else if t.family == "windows" || t.os == "windows" {
        backend("windows", false, Calls::OwnCodes)
    } else if t.vendor == "apple" && t.arch == "aarch64" {
        // Its Mach calls report `kern_return_t`s (`Error::mach`), not OS
        // error numbers.
        backend("apple_aarch64", false, Calls::None)
    } else if t.os == "fuchsia" && t.arch_in(&["aarch64", "riscv64"]) {
        // Zircon's `zx_cache_flush` reports a `zx_status_t` (`Error::zircon`),
        // not an OS error number.
        backend("fuchsia", false, Calls::None)
    } else if t.arch == "aarch64"
        && t.os_in(&[
            "linux", "android", "freebsd", "netbsd", "openbsd", "none", "uefi",
        ])
    {
        // UEFI runs at EL1 or EL2, where the user-space sequence is valid too.
        backend("aarch64", true, Calls::None)
    } else if t.arch == "arm" && t.linux_kernel() {
        backend("arm_linux_cacheflush", false, Calls::Errno)
    } else if t.arch == "arm" && t.os_in(&["freebsd", "netbsd"]) {
        backend("arm_bsd_sysarch", false, Calls::Errno)
    } else if t.arch == "arm" && t.os == "none" && t.m_profile_with_caches() {
        backend("arm_m_scb", true, Calls::None)
    } else if t.arch == "arm" && t.os == "none" && t.m_profile_without_caches() {
        backend("arm_m_barriers", false, Calls::None)
    } else if t.arch == "arm" && t.os == "none" && t.a_or_r_profile_v7() {
        backend("arm_cp15", true, Calls::None)
    } else if t.arch_in(RISCV) && t.os == "none" {
        backend("riscv_fence_i", false, Calls::None)
    } else if t.arch_in(RISCV) && t.linux_kernel() {
        backend("riscv_linux", false, Calls::Errno)
    } else if t.arch_in(POWER) && t.linux_kernel() {
        backend("powerpc", true, Calls::None)
    } else if t.arch == "loongarch64" && t.linux_kernel() {
        backend("loongarch", false, Calls::None)
    } else if t.arch_in(MIPS) && t.linux_kernel() {
        backend("mips_linux_cacheflush", false, Calls::Errno)
    } else if t.arch_in(&["x86", "x86_64", "s390x"]) {
        backend("coherent", false, Calls::None)
    } else if t.arch_in(&["wasm32", "wasm64"]) {
        // WebAssembly cannot execute bytes it wrote (see src/backends/wasm.rs).
        backend("wasm", false, Calls::None)
    } else {
        return None;
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for name in [
        "icache_backend",
        "linux_kernel",
        "icache_membarrier",
        "icache_line_loops",
        "icache_ctr_el0",
        "icache_os_calls",
        "icache_errno",
        "icache_std",
        "icache_arm_isb",
    ] {
        if name == "icache_backend" {
            println!("cargo:rustc-check-cfg=cfg(icache_backend, values(any()))");
        } else {
            println!("cargo:rustc-check-cfg=cfg({name})");
        }
    }
    // For the compile_error! of an unsupported target.
    let triple = env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=ICACHE_COHERENCE_TARGET={triple}");

    let t = Target::from_env();
    // The `std` feature is a default, and wasmtime depends on the crate
    // with default features on targets that have no `std` at all: there the
    // feature is ignored and the API returns the crate's own `Error`.
    if env::var_os("CARGO_FEATURE_STD").is_some() && !t.os_in(&["none", "uefi"]) {
        println!("cargo:rustc-cfg=icache_std");
    }
    if t.arm_has_isb() {
        println!("cargo:rustc-cfg=icache_arm_isb");
    }
    let linux_kernel = t.linux_kernel();
    if linux_kernel {
        println!("cargo:rustc-cfg=linux_kernel");
    }
    let Some(choice) = choose(&t) else {
        return;
    };
    println!("cargo:rustc-cfg=icache_backend=\"{}\"", choice.file);
    // Every Linux backend reaches membarrier: for pipeline_flush_mt where
    // the architecture needs a broadcast, for cross_modify_flush_mt on the
    // coherent ones. FreeBSD has membarrier(2) with Linux's commands and
    // QUERY/EPERM/EINVAL semantics (sys/kern/kern_membarrier.c); its
    // backends there are AArch64, 32-bit Arm and the coherent x86-64 one.
    // Miri has no syscalls.
    let membarrier = (linux_kernel || t.os == "freebsd") && !t.miri;
    if membarrier {
        println!("cargo:rustc-cfg=icache_membarrier");
    }
    if choice.line_loops {
        println!("cargo:rustc-cfg=icache_line_loops");
    }
    if choice.file == "aarch64" {
        println!("cargo:rustc-cfg=icache_ctr_el0");
    }
    if choice.os_calls || membarrier {
        println!("cargo:rustc-cfg=icache_os_calls");
    }
    // AArch64 Linux makes the membarrier syscall inline, which returns
    // -errno in x0 (src/backends/membarrier_flush.rs); elsewhere it goes
    // through libc and errno.
    let membarrier_errno = membarrier && !(linux_kernel && t.arch == "aarch64");
    if choice.errno || membarrier_errno {
        println!("cargo:rustc-cfg=icache_errno");
    }
}
