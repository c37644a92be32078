//! Which platforms the project builds, runs and checks, and what each needs.
//!
//! `setup` installs what these tables name, `ci` runs its matrix over them, and
//! `.cargo/config.toml` carries the linker and qemu runner of every target in
//! [`QEMU_LINUX`] and [`WINE`]. Adding a qemu target means one line here plus
//! its `[target.<triple>]` section there (and its Debian cross packages below).
//! The runners and linkers themselves are read from there ([`runner`],
//! [`linker`]), never restated here.

use crate::cmd::Result;
use crate::Workspace;

/// Linux targets whose tests run under qemu-user, through the runners in
/// `.cargo/config.toml`. The second field lists the `QEMU_CPU` models to run
/// them with; empty means qemu's default model.
pub const QEMU_LINUX: &[(&str, &[&str])] = &[
    // cortex-a72 has 64-byte cache lines, a64fx 256-byte ones: a flush that
    // assumes 64 bytes skips three of every four lines on the latter.
    ("aarch64-unknown-linux-gnu", AARCH64_CPUS),
    ("armv7-unknown-linux-gnueabihf", &[]),
    ("riscv64gc-unknown-linux-gnu", &[]),
    ("s390x-unknown-linux-gnu", &[]),
    ("powerpc64le-unknown-linux-gnu", &[]),
    ("i686-unknown-linux-gnu", &[]),
];

/// The aarch64 CPU models tests run with, both under plain qemu and under the
/// coherence checker.
pub const AARCH64_CPUS: &[&str] = &["cortex-a72", "a64fx"];

/// The model used where one run is enough (mutants, the long run, the
/// race, the sandbox): the first of [`AARCH64_CPUS`].
pub const DEFAULT_CPU: &str = AARCH64_CPUS[0];

/// The aarch64 target that the coherence checker (crates/icache-check) runs.
pub const CHECKER_TARGET: &str = "aarch64-unknown-linux-gnu";

/// The riscv64 target that the coherence checker runs (issue 12), and the
/// `qemu-riscv64` CPU model it runs it on (QEMU's default; the RISC-V model
/// has no line sizes, so one model is enough).
pub const CHECKER_RISCV64_TARGET: &str = "riscv64gc-unknown-linux-gnu";
pub const RISCV64_CPU: &str = "rv64";

/// The 32-bit Arm target that the coherence checker runs (issue 12), and
/// the `qemu-arm` CPU model it runs it on (the arm model has no line sizes,
/// so one model is enough).
pub const CHECKER_ARM_TARGET: &str = "armv7-unknown-linux-gnueabihf";
pub const ARM_CPU: &str = "cortex-a15";
/// The ppc64le target that the coherence checker runs (issue 12), and the
/// `qemu-ppc64le` CPU model it runs it on (QEMU's default; every
/// little-endian model of QEMU 7.2 reports the same 128-byte blocks, so one
/// model is enough).
pub const CHECKER_PPC64LE_TARGET: &str = "powerpc64le-unknown-linux-gnu";
pub const PPC64LE_CPU: &str = "power9";

/// Windows target whose tests run under wine (runner in `.cargo/config.toml`).
pub const WINE: &str = "x86_64-pc-windows-gnu";

/// Targets with a prebuilt std that can only be type-checked here (no linker,
/// no emulator for their OS).
pub const CHECK_ONLY: &[&str] = &[
    "aarch64-apple-darwin",
    "aarch64-apple-ios",
    "aarch64-pc-windows-msvc",
    "aarch64-linux-android",
    "armv7-linux-androideabi",
    "x86_64-unknown-freebsd",
];

/// Targets without a downloadable std here: checked with nightly's
/// `-Zbuild-std`, which needs the nightly `rust-src` component.
pub const BUILD_STD: &[&str] = &[
    "aarch64-unknown-freebsd",
    "aarch64-unknown-netbsd",
    "aarch64-unknown-openbsd",
    "loongarch64-unknown-linux-gnu",
    "mips64-unknown-linux-gnuabi64",
    "powerpc-unknown-linux-gnu",
    // riscv64 Android: the riscv_flush_icache syscall (tier 3, no rustup std)
    "riscv64-linux-android",
];

/// Bare-metal targets: the library built without its `std` feature.
pub const NO_STD: &[&str] = &["aarch64-unknown-none", "riscv64gc-unknown-none-elf"];

/// Targets that wasmtime builds the crate this one replaces for, built here
/// with the library's *default* features (issue 13): on those without a
/// `std` the default `std` feature must be ignored, not fail the build.
/// `cargo build`, not `check`, so that the inline assembly of the code the
/// build reaches goes through the assembler.
pub const DEFAULT_FEATURES_BUILD: &[&str] = &[
    "wasm32-unknown-unknown",
    "wasm32-wasip1",
    "aarch64-unknown-uefi",
    "aarch64-unknown-fuchsia",
    "thumbv7em-none-eabihf",
    "thumbv6m-none-eabi",
    "armv7a-none-eabi",
    "x86_64-unknown-none",
    "riscv32imac-unknown-none-elf",
    "aarch64-unknown-none",
];

/// The minimum supported Rust version (`rust-version` of the library): the
/// release that stabilized PowerPC `asm!` (rust-lang/rust#147996).
pub const MSRV_TOOLCHAIN: &str = "1.95.0";

/// Targets the library is checked on with [`MSRV_TOOLCHAIN`]: one per
/// backend that has a prebuilt std for that release.
pub const MSRV_TARGETS: &[&str] = &[
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "riscv64gc-unknown-linux-gnu",
    "powerpc64le-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-gnu",
    "aarch64-unknown-fuchsia",
    "thumbv7em-none-eabihf",
    "armv7a-none-eabi",
    "riscv32imac-unknown-none-elf",
    "wasm32-unknown-unknown",
];

/// Every target `rustup target add` must install for the stable toolchain.
pub fn rustup_targets() -> Vec<&'static str> {
    QEMU_LINUX
        .iter()
        .map(|(triple, _)| *triple)
        .chain([WINE])
        .chain(CHECK_ONLY.iter().copied())
        .chain(NO_STD.iter().copied())
        .chain(
            DEFAULT_FEATURES_BUILD
                .iter()
                .copied()
                .filter(|t| !NO_STD.contains(t)),
        )
        .collect()
}

/// Debian packages: qemu-user, a cross gcc + C library per qemu target (the
/// linker and the `-L` sysroot of the runner), mingw-w64 and wine. Not
/// gcc-multilib: Debian makes it conflict with every cross compiler.
pub const APT_PACKAGES: &[&str] = &[
    "qemu-user",
    // counts membarrier calls in the first-call race (tests/first_call_race.rs)
    "strace",
    "gcc-aarch64-linux-gnu",
    "libc6-dev-arm64-cross",
    "gcc-arm-linux-gnueabihf",
    "libc6-dev-armhf-cross",
    "gcc-riscv64-linux-gnu",
    "libc6-dev-riscv64-cross",
    "gcc-s390x-linux-gnu",
    "libc6-dev-s390x-cross",
    "gcc-powerpc64le-linux-gnu",
    "libc6-dev-ppc64el-cross",
    "gcc-i686-linux-gnu",
    "libc6-dev-i386-cross",
    "gcc-mingw-w64-x86-64",
    "wine64",
    "wine",
];

/// The C compiler for Windows, also used to build the wine ProcessPrng stub.
pub const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// Stable toolchain components the CI uses (`cargo fmt`, `cargo clippy`).
pub const STABLE_COMPONENTS: &[&str] = &["rustfmt", "clippy"];

/// Nightly components: `-Zbuild-std` needs `rust-src`, and Miri.
pub const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "miri"];

/// The environment variable through which cargo takes `key` (`RUNNER`,
/// `LINKER`) for `target`: `CARGO_TARGET_<TRIPLE>_<KEY>`.
pub fn cargo_target_var(target: &str, key: &str) -> String {
    format!(
        "CARGO_TARGET_{}_{key}",
        target.to_uppercase().replace(['-', '.'], "_")
    )
}

/// The qemu runner of `target` (`qemu-aarch64 -L /usr/aarch64-linux-gnu`),
/// read from `.cargo/config.toml`, so that the qemu command line has one
/// source of truth.
pub fn runner(ws: &Workspace, target: &str) -> Result<Vec<String>> {
    let config = cargo_config(ws)?;
    parse_list(&config, target, "runner")
        .ok_or_else(|| format!("no runner for {target} in .cargo/config.toml"))
}

/// The linker of `target`, read from `.cargo/config.toml`.
pub fn linker(ws: &Workspace, target: &str) -> Result<String> {
    let config = cargo_config(ws)?;
    parse_list(&config, target, "linker")
        .and_then(|l| l.into_iter().next())
        .ok_or_else(|| format!("no linker for {target} in .cargo/config.toml"))
}

/// The cross C library's root, the `-L` argument of `target`'s runner
/// (`QEMU_LD_PREFIX` for a qemu started by other means).
pub fn sysroot(ws: &Workspace, target: &str) -> Result<String> {
    let runner = runner(ws, target)?;
    runner
        .iter()
        .skip_while(|a| *a != "-L")
        .nth(1)
        .cloned()
        .ok_or_else(|| format!("{target}'s runner has no -L <sysroot>"))
}

fn cargo_config(ws: &Workspace) -> Result<String> {
    let path = ws.root.join(".cargo").join("config.toml");
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The value of `key` in `[target.<target>]`: a string, or a list of
/// strings, as a list.
fn parse_list(config: &str, target: &str, key: &str) -> Option<Vec<String>> {
    let header = format!("[target.{target}]");
    let section = config.split(&header).nth(1)?;
    let section = section.split("\n[").next()?;
    let line = section.lines().find(|l| {
        l.trim_start()
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
    })?;
    let value = line.split_once('=')?.1.trim();
    let list = match value.strip_prefix('[') {
        Some(v) => v.rsplit_once(']')?.0,
        None => value,
    };
    Some(
        list.split(',')
            .map(|s| s.trim().trim_matches('"').to_string())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_toml() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.cargo/config.toml");
        std::fs::read_to_string(path).expect("read .cargo/config.toml")
    }

    /// The `[target.<triple>]` section of config.toml, up to the next section.
    fn section<'a>(config: &'a str, triple: &str) -> Option<&'a str> {
        let header = format!("[target.{triple}]");
        let start = config.find(&header)? + header.len();
        let rest = &config[start..];
        Some(&rest[..rest.find("\n[").unwrap_or(rest.len())])
    }

    #[test]
    fn every_run_target_has_a_linker_and_runner_in_cargo_config() {
        let config = config_toml();
        let run_targets = QEMU_LINUX.iter().map(|(t, _)| *t).chain([WINE]);
        for triple in run_targets {
            let s = section(&config, triple)
                .unwrap_or_else(|| panic!("no [target.{triple}] in .cargo/config.toml"));
            assert!(s.contains("linker = "), "{triple} has no linker");
            assert!(s.contains("runner = "), "{triple} has no runner");
        }
    }

    #[test]
    fn qemu_runners_point_at_the_cross_sysroot_setup_installs() {
        let config = config_toml();
        for (triple, _) in QEMU_LINUX {
            let s = section(&config, triple).unwrap();
            let sysroot = s
                .split('"')
                .find(|part| part.starts_with("/usr/"))
                .unwrap_or_else(|| panic!("{triple}'s runner has no -L /usr/<sysroot>"));
            let linker = s
                .split('"')
                .find(|part| part.ends_with("-gcc"))
                .unwrap_or_else(|| panic!("{triple} has no *-gcc linker"));
            // aarch64-linux-gnu-gcc links against /usr/aarch64-linux-gnu.
            assert_eq!(format!("/usr/{}", linker.trim_end_matches("-gcc")), sysroot);
            let package = format!("gcc-{}", linker.trim_end_matches("-gcc"));
            assert!(
                APT_PACKAGES.contains(&package.as_str()),
                "{package} is not installed by setup"
            );
        }
    }

    #[test]
    fn runner_and_linker_are_read_from_the_target_section() {
        let config =
            "[target.a]\nlinker = \"x-gcc\"\nrunner = [\"qemu-a\", \"-L\", \"/usr/a\"]\n\n\
                      [target.b]\nrunner = [\"qemu-b\"]\n";
        assert_eq!(
            parse_list(config, "a", "runner").unwrap(),
            ["qemu-a", "-L", "/usr/a"]
        );
        assert_eq!(parse_list(config, "a", "linker").unwrap(), ["x-gcc"]);
        assert_eq!(parse_list(config, "b", "runner").unwrap(), ["qemu-b"]);
        assert_eq!(parse_list(config, "b", "linker"), None);
        assert_eq!(parse_list(config, "c", "runner"), None);
    }

    #[test]
    fn every_qemu_target_has_a_qemu_runner_in_the_real_config() {
        let config = config_toml();
        for (target, _) in QEMU_LINUX {
            let r = parse_list(&config, target, "runner").unwrap_or_else(|| panic!("{target}"));
            assert!(r[0].starts_with("qemu-"), "{target}: {r:?}");
        }
    }

    #[test]
    fn cargo_target_variables_are_spelt_as_cargo_reads_them() {
        assert_eq!(
            cargo_target_var(CHECKER_TARGET, "RUNNER"),
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"
        );
    }

    #[test]
    fn rustup_targets_are_listed_once() {
        let mut all = rustup_targets();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn build_std_targets_are_not_also_rustup_targets() {
        for t in BUILD_STD {
            assert!(!rustup_targets().contains(t), "{t} needs no build-std");
        }
    }

    #[test]
    fn gcc_multilib_is_never_installed() {
        assert!(!APT_PACKAGES.iter().any(|p| p.contains("multilib")));
    }
}
