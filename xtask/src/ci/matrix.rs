//! The CI matrix: every step `cargo xtask ci` runs, in order.
//!
//! The platform lists come from [`crate::targets`]; this file decides what is
//! done with each of them.

use super::{Kind, Step};
use crate::checker::{self, Qemu, PACKAGE as CHECKER};
use crate::cmd::Cmd;
use crate::targets::{
    ARM_CPU, BUILD_STD, CHECKER_ARM_TARGET, CHECKER_PPC64LE_TARGET, CHECKER_RISCV64_TARGET,
    CHECKER_TARGET, CHECK_ONLY, DEFAULT_CPU, DEFAULT_FEATURES_BUILD, MSRV_TARGETS, MSRV_TOOLCHAIN,
    NO_STD, PPC64LE_CPU, QEMU_LINUX, RISCV64_CPU, WINE,
};
use crate::{Workspace, LIB};

const EXAMPLE: &str = "jit";

pub fn steps(ws: &Workspace) -> Vec<Step> {
    let mut steps = Vec::new();
    host(ws, &mut steps);
    qemu(ws, &mut steps);
    wine(ws, &mut steps);
    check_only(ws, &mut steps);
    build_std(ws, &mut steps);
    no_std(ws, &mut steps);
    default_features(ws, &mut steps);
    one_core(ws, &mut steps);
    msrv(ws, &mut steps);
    publish_dry_run(ws, &mut steps);
    miri(ws, &mut steps);
    checker(ws, &mut steps);
    reliability(ws, &mut steps);
    bench_smoke(ws, &mut steps);
    steps
}

fn cargo(ws: &Workspace) -> Cmd {
    Cmd::new("cargo").dir(&ws.root)
}

/// Nightly cargo with its own build folder.
fn nightly_cargo(ws: &Workspace) -> Cmd {
    cargo(ws).arg("+nightly").env(
        "CARGO_TARGET_DIR",
        ws.nightly_target_dir().display().to_string(),
    )
}

fn host(ws: &Workspace, steps: &mut Vec<Step>) {
    let host = "host";
    steps.push(Step::new(
        "fmt",
        host,
        Kind::Check,
        cargo(ws).args(["fmt", "--all", "--check"]),
    ));
    steps.push(Step::new(
        "clippy",
        host,
        Kind::Check,
        cargo(ws).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    ));
    steps.push(Step::new(
        "doc",
        host,
        Kind::Build,
        cargo(ws)
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "--no-deps"]),
    ));
    // icache-check's tests start qemu-aarch64 and the aarch64 gcc, which is
    // why setup runs before the matrix. Here on QEMU 7.2 (whatever the
    // caller's environment says); the `checker` steps run them on QEMU 10.
    steps.push(Step::new(
        "test",
        host,
        Kind::Test,
        Qemu::Debian7
            .env(cargo(ws), ws)
            .args(["test", "--workspace"]),
    ));
}

/// The library's tests and its JIT example on each qemu-user target.
fn qemu(ws: &Workspace, steps: &mut Vec<Step>) {
    for (triple, cpus) in QEMU_LINUX {
        // `None`: qemu's default model, and no stray QEMU_CPU from the caller
        // (an aarch64 model name makes qemu-arm refuse to start).
        let models: Vec<Option<&str>> = if cpus.is_empty() {
            vec![None]
        } else {
            cpus.iter().copied().map(Some).collect()
        };
        for cpu in models {
            let label = match cpu {
                Some(cpu) => format!("{triple} (qemu {cpu})"),
                None => format!("{triple} (qemu)"),
            };
            let base = match cpu {
                Some(cpu) => cargo(ws).env("QEMU_CPU", cpu),
                None => cargo(ws).env_remove("QEMU_CPU"),
            };
            steps.push(Step::new(
                "test",
                &label,
                Kind::Test,
                base.clone().args(["test", "-p", LIB, "--target", triple]),
            ));
            steps.push(Step::new(
                "example jit",
                &label,
                Kind::Test,
                base.args(["run", "-p", LIB, "--example", EXAMPLE, "--target", triple]),
            ));
        }
    }
}

/// Windows under wine; the runner and prefix come from `.cargo/config.toml`
/// and setup.
fn wine(ws: &Workspace, steps: &mut Vec<Step>) {
    let label = format!("{WINE} (wine)");
    steps.push(Step::new(
        "test",
        &label,
        Kind::Test,
        cargo(ws).args(["test", "-p", LIB, "--target", WINE]),
    ));
    steps.push(Step::new(
        "example jit",
        &label,
        Kind::Test,
        cargo(ws).args(["run", "-p", LIB, "--example", EXAMPLE, "--target", WINE]),
    ));
}

fn check_only(ws: &Workspace, steps: &mut Vec<Step>) {
    for triple in CHECK_ONLY {
        // --all-targets includes the tests and examples, so their
        // platform-specific code is type-checked too.
        steps.push(Step::new(
            "check --all-targets",
            triple,
            Kind::Check,
            cargo(ws).env("RUSTFLAGS", "-D warnings").args([
                "check",
                "-p",
                LIB,
                "--all-targets",
                "--target",
                triple,
            ]),
        ));
    }
}

fn build_std(ws: &Workspace, steps: &mut Vec<Step>) {
    for triple in BUILD_STD {
        steps.push(Step::new(
            "check",
            &format!("{triple} (nightly build-std)"),
            Kind::Check,
            nightly_cargo(ws).env("RUSTFLAGS", "-D warnings").args([
                "check",
                "-p",
                LIB,
                "-Zbuild-std=core,std",
                "--target",
                triple,
            ]),
        ));
    }
}

fn no_std(ws: &Workspace, steps: &mut Vec<Step>) {
    for triple in NO_STD {
        steps.push(Step::new(
            "build no_std",
            triple,
            Kind::Build,
            cargo(ws).env("RUSTFLAGS", "-D warnings").args([
                "build",
                "-p",
                LIB,
                "--no-default-features",
                "--target",
                triple,
            ]),
        ));
    }
}

/// The targets of the replaced crate, with the library's default features.
fn default_features(ws: &Workspace, steps: &mut Vec<Step>) {
    for triple in DEFAULT_FEATURES_BUILD {
        steps.push(Step::new(
            "build (default features)",
            triple,
            Kind::Build,
            cargo(ws)
                .env("RUSTFLAGS", "-D warnings")
                .args(["build", "-p", LIB, "--target", triple]),
        ));
    }
}

/// The `one-core` feature: lint and test it on the host, and test it on
/// riscv64 Linux, the backend whose `clear_cache` it changes (`fence.i`
/// instead of the syscall).
fn one_core(ws: &Workspace, steps: &mut Vec<Step>) {
    let label = "host (feature one-core)";
    steps.push(Step::new(
        "clippy",
        label,
        Kind::Check,
        cargo(ws).args([
            "clippy",
            "-p",
            LIB,
            "--all-targets",
            "--features",
            "one-core",
            "--",
            "-D",
            "warnings",
        ]),
    ));
    steps.push(Step::new(
        "test",
        label,
        Kind::Test,
        cargo(ws).args(["test", "-p", LIB, "--features", "one-core"]),
    ));
    let riscv = "riscv64gc-unknown-linux-gnu";
    steps.push(Step::new(
        "test",
        &format!("{riscv} (qemu, feature one-core)"),
        Kind::Test,
        cargo(ws).env_remove("QEMU_CPU").args([
            "test",
            "-p",
            LIB,
            "--features",
            "one-core",
            "--target",
            riscv,
        ]),
    ));
}

/// `rust-version` holds: the library checked with the MSRV toolchain, in a
/// build folder of its own.
fn msrv(ws: &Workspace, steps: &mut Vec<Step>) {
    for triple in MSRV_TARGETS {
        steps.push(Step::new(
            "check",
            &format!("{triple} (MSRV {MSRV_TOOLCHAIN})"),
            Kind::Check,
            cargo(ws)
                .arg(format!("+{MSRV_TOOLCHAIN}"))
                .env(
                    "CARGO_TARGET_DIR",
                    ws.target_dir.join("msrv").display().to_string(),
                )
                .env("RUSTFLAGS", "-D warnings")
                .args(["check", "-p", LIB, "--target", triple]),
        ));
    }
}

/// `cargo publish --dry-run` packages and verifies the library; the step
/// fails on any warning but the one every dry run prints. `--allow-dirty`
/// so that uncommitted work in a developer's tree does not fail it (CI's
/// checkout is clean).
fn publish_dry_run(ws: &Workspace, steps: &mut Vec<Step>) {
    let script = format!(
        "out=$(cargo publish --dry-run --allow-dirty -p {LIB} 2>&1); rc=$?; \
         printf '%s\n' \"$out\"; \
         [ $rc -eq 0 ] || exit $rc; \
         if printf '%s\n' \"$out\" | grep '^warning' | grep -v '^warning: aborting upload due to dry run$'; then \
           echo 'cargo publish --dry-run printed warnings' >&2; exit 1; fi"
    );
    steps.push(Step::new(
        "publish --dry-run",
        LIB,
        Kind::Check,
        Cmd::new("sh").dir(&ws.root).args(["-c", &script]),
    ));
}

fn miri(ws: &Workspace, steps: &mut Vec<Step>) {
    // The library's JIT tests are cfg(not(miri)); Miri runs the pure logic
    // (CTR_EL0 decoding, line arithmetic) and the API's error paths.
    steps.push(Step::new(
        "miri test",
        "host (nightly)",
        Kind::Test,
        nightly_cargo(ws).args(["miri", "test", "-p", LIB]),
    ));
}

/// Each checker run: target, CPU model, QEMU. Every QEMU the checker
/// supports runs every architecture's suite once (issue 12, item 1); the two
/// aarch64 models, whose line sizes differ (64 and 256 bytes), are split
/// between the QEMUs so both stay covered without a third aarch64 run
/// (about 70 s each). riscv64 on one model: the RISC-V rules have no line
/// sizes; armv7 likewise; ppc64le: every QEMU 7.2 model has 128-byte blocks
/// and no ICACHE_SNOOP, so one model.
const CHECKER_RUNS: &[(&str, &str, Qemu)] = &[
    (CHECKER_TARGET, "cortex-a72", Qemu::Debian7),
    (CHECKER_TARGET, "a64fx", Qemu::Built10),
    (CHECKER_RISCV64_TARGET, RISCV64_CPU, Qemu::Debian7),
    (CHECKER_RISCV64_TARGET, RISCV64_CPU, Qemu::Built10),
    (CHECKER_ARM_TARGET, ARM_CPU, Qemu::Debian7),
    (CHECKER_ARM_TARGET, ARM_CPU, Qemu::Built10),
    (CHECKER_PPC64LE_TARGET, PPC64LE_CPU, Qemu::Debian7),
    (CHECKER_PPC64LE_TARGET, PPC64LE_CPU, Qemu::Built10),
];

/// The library's suites again, run by the coherence checker instead of
/// plain qemu: it exits 86 when the code executed bytes that were not made
/// coherent. The test binaries are the plain qemu runs', so these cost only
/// the runs.
fn checker(ws: &Workspace, steps: &mut Vec<Step>) {
    let build = steps.len();
    steps.push(Step::new("build", CHECKER, Kind::Build, checker::build(ws)));
    for &(target, cpu, qemu) in CHECKER_RUNS {
        let label = format!("{target} ({CHECKER} {cpu}, {qemu})");
        let base = checker::runner_env_for(cargo(ws), ws, target, cpu, qemu);
        steps.push(
            Step::new(
                "test",
                &label,
                Kind::Test,
                base.clone().args(["test", "-p", LIB, "--target", target]),
            )
            .needs(build)
            .on(qemu),
        );
        steps.push(
            Step::new(
                "example jit",
                &label,
                Kind::Test,
                base.args(["run", "-p", LIB, "--example", EXAMPLE, "--target", target]),
            )
            .needs(build)
            .on(qemu),
        );
    }
    // The `one-core` feature makes riscv64's `clear_cache` a bare `fence.i`,
    // which is right only on one hart: checked as such (`--one-hart`). The
    // test binaries are the `one_core` step's. On QEMU 7.2 only: the
    // RISC-V model runs on QEMU 10 in the full suite above, and this run
    // adds the feature, not another QEMU.
    let runner = format!(
        "{} --cpu {RISCV64_CPU} --one-hart --",
        checker::binary(ws).display()
    );
    let qemu = Qemu::Debian7;
    steps.push(
        Step::new(
            "test",
            &format!(
                "{CHECKER_RISCV64_TARGET} ({CHECKER} {RISCV64_CPU} --one-hart, feature one-core, {qemu})"
            ),
            Kind::Test,
            qemu.env(cargo(ws), ws)
                .env_remove("QEMU_CPU")
                .env(
                    &crate::targets::cargo_target_var(CHECKER_RISCV64_TARGET, "RUNNER"),
                    runner,
                )
                .args([
                    "test",
                    "-p",
                    LIB,
                    "--features",
                    "one-core",
                    "--target",
                    CHECKER_RISCV64_TARGET,
                ]),
        )
        .needs(build),
    );
    // The checker's own integration tests (fixtures, conformance suite,
    // install) start qemu through the runner: the host `test` step runs
    // them on QEMU 7.2, this one on QEMU 10 (11 s to 57 s on the project
    // machine, depending on load and on whether the install test's build
    // is fresh). Its unit tests are pure (the model, option parsing; none
    // starts qemu) and ran in the host step already.
    let qemu = Qemu::Built10;
    steps.push(
        Step::new(
            "test",
            &format!("{CHECKER} ({qemu})"),
            Kind::Test,
            qemu.env(cargo(ws), ws)
                .args(["test", "-p", CHECKER, "--test", "*"]),
        )
        .on(qemu),
    );
}

/// Runs of `cargo xtask reliability` and `cargo xtask mutants` (this same
/// binary): the seccomp sandbox and the first-call race around qemu targets,
/// the long republishing run under the checker, and the mutation score.
fn reliability(ws: &Workspace, steps: &mut Vec<Step>) {
    let xtask = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "xtask".to_string());
    let me = || Cmd::new(&xtask).dir(&ws.root);
    for (triple, _) in QEMU_LINUX {
        steps.push(Step::new(
            "sandbox (host seccomp)",
            &format!("{triple} (qemu)"),
            Kind::Test,
            me().args(["reliability", "sandbox", triple]),
        ));
    }
    steps.push(Step::new(
        "first-call race x1000 (strace)",
        &format!("{CHECKER_TARGET} (qemu)"),
        Kind::Test,
        me().args(["reliability", "race", CHECKER_TARGET, "1000"]),
    ));
    let cpu = DEFAULT_CPU;
    // The long run on QEMU 10 only: its plugin (API v4, with QEMU's own
    // register reads) is the newer code, and the run that outlasts the
    // suites is where a slow leak or a lost update in it would show; the
    // API v1 plugin on QEMU 7.2 passed this run in every CI before issue 12.
    // It also puts cortex-a72 on QEMU 10, whose suite runs on a64fx.
    // `cargo xtask soak` runs the long configuration on both QEMUs.
    let qemu = Qemu::Built10;
    steps.push(
        Step::new(
            "long run 100k publishes",
            &format!("{CHECKER_TARGET} ({CHECKER} {cpu}, {qemu})"),
            Kind::Test,
            me().args(["reliability", "long-run", cpu, "100000", "--qemu", "10"]),
        )
        .on(qemu),
    );
    // Every mutant on both QEMUs; caught only when caught on both.
    steps.push(
        Step::new(
            "mutants",
            &format!(
                "{CHECKER_TARGET} ({CHECKER} {cpu}, {} and {})",
                Qemu::Debian7,
                Qemu::Built10
            ),
            Kind::Test,
            me().args(["mutants", "--qemu", "both"]),
        )
        .on(Qemu::Built10),
    );
}

/// `cargo xtask bench --smoke` (this same binary): the instruction-counting
/// harness builds, runs under qemu and parses, so it stays working; it
/// writes nothing into the repository and asserts no goal.
fn bench_smoke(ws: &Workspace, steps: &mut Vec<Step>) {
    let xtask = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "xtask".to_string());
    steps.push(Step::new(
        "bench --smoke",
        &format!("{CHECKER_TARGET} (instruction counts, qemu cortex-a72)"),
        Kind::Test,
        Cmd::new(&xtask).dir(&ws.root).args(["bench", "--smoke"]),
    ));
}
