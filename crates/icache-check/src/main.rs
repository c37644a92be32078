//! `icache-check`: runs an AArch64, RISC-V (rv64) or 32-bit Arm Linux program
//! under `qemu-aarch64`, `qemu-riscv64` or `qemu-arm` with the icache-check
//! plugin and exits non-zero when the plugin saw a violation. The
//! architecture comes from the program's ELF header ([`Arch::from_elf_header`]).
//!
//! ```text
//! icache-check [--cpu MODEL] [--idc] [--dic] [--one-hart] [--fail-on CLASSES] [--plugin PATH] -- PROGRAM [ARGS...]
//! ```
//!
//! It works as a cargo runner, because cargo appends the program and its
//! arguments:
//!
//! ```text
//! CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="/abs/target/release/icache-check --cpu a64fx --" \
//!     cargo test --target aarch64-unknown-linux-gnu
//! ```
//!
//! Without `--cpu`, the model is `$QEMU_CPU` if set, else the architecture's
//! default (`cortex-a72`, `rv64`).
//!
//! The plugin is built into the runner (`build.rs`), so an installed runner
//! needs no file beside it; `--plugin PATH` loads another build instead.
//!
//! Exit status: the program's own status (128 + N if signal N killed it),
//! except [`EXIT_VIOLATIONS`] when the plugin reported any violation and
//! [`EXIT_CHECKER_FAILED`] when the checker itself could not do its job.

// The checker's library files, compiled in rather than linked: the library's
// rlib carries the plugin's entry points, which need symbols only QEMU has.
// The plugin uses the parts the runner does not (`PluginArgs::parse`).
#[allow(dead_code)]
mod arch;
#[allow(dead_code)]
mod config;
#[allow(dead_code)]
mod exit_status;
#[allow(dead_code)]
mod plugin_args;
#[allow(dead_code)]
mod summary;
// The runner's own: which plugin a QEMU loads.
mod qemu_version;

use arch::Arch;
use config::Config;
use exit_status::{EXIT_CHECKER_FAILED, EXIT_VIOLATIONS};
use plugin_args::PluginArgs;
use qemu_version::{parse_version, plugin_api, PluginApi};
use summary::{Class, ClassCounts, Counts, PREFIX};

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// CTR_EL0 as QEMU 7.2's `qemu-aarch64 -cpu MODEL` reports it to the guest,
/// measured with a program that prints `mrs x0, ctr_el0` for each model in
/// `qemu-aarch64 -cpu help`. None sets IDC (bit 28) or DIC (bit 29).
///
/// The third column is what the runner passes to `-cpu`. QEMU 7.2 gives
/// plugins no memory callback for SVE and SME stores, and glibc picks an SVE
/// `memcpy` when the CPU has SVE, so code copied with `memcpy` would be
/// invisible. The runner therefore turns SVE (and, on `max`, SME) off; glibc
/// then uses its plain `memcpy`, and a program that uses SVE itself gets
/// SIGILL instead of passing unchecked. `a64fx` has no `sme` property.
const CPU_MODELS: &[(&str, u64, &str)] = &[
    ("a64fx", 0x8666_8006, "a64fx,sve=off"),
    ("cortex-a35", 0x8444_8004, "cortex-a35"),
    ("cortex-a53", 0x8444_8004, "cortex-a53"),
    ("cortex-a57", 0x8444_c004, "cortex-a57"),
    ("cortex-a72", 0x8444_c004, "cortex-a72"),
    ("cortex-a76", 0x8444_c004, "cortex-a76"),
    ("max", 0x8003_8003, "max,sve=off,sme=off"),
    ("neoverse-n1", 0x8444_c004, "neoverse-n1"),
];

/// The riscv64 models of `qemu-riscv64 -cpu help` (QEMU 7.2) that run
/// `riscv64gc-unknown-linux-gnu` programs: `rv64` (QEMU's default for
/// linux-user, with `Zifencei`) and `sifive-u54` (RV64GC). The RISC-V model
/// has no line sizes (see `src/riscv.rs`), so the model changes nothing the
/// checker expects.
const RISCV64_CPU_MODELS: &[&str] = &["rv64", "sifive-u54"];

/// The 32-bit Arm models of `qemu-arm -cpu help` (QEMU 7.2) checked to run
/// `armv7-unknown-linux-gnueabihf` programs, all ARMv7-A with the
/// Multiprocessing Extensions that `src/arm32.rs` assumes. The model has
/// no line sizes, so the choice changes nothing the plugin checks.
const ARM_CPU_MODELS: &[&str] = &["cortex-a15", "cortex-a7", "cortex-a9"];
/// The little-endian 64-bit models of `qemu-ppc64le -cpu help` (QEMU 7.2)
/// with the data and instruction block size their guests see. Measured with
/// a guest printing `getauxval(AT_DCACHEBSIZE)`, `getauxval(AT_ICACHEBSIZE)`
/// and `getauxval(AT_HWCAP)`: every model reports 128 for both and
/// `AT_HWCAP` 0x58000580, without `PPC_FEATURE_ICACHE_SNOOP` (so the plugin
/// gets `snoop=off`). `power7` stops with SIGILL before `main` under
/// Debian 12's glibc; older models are big-endian only. `power9` is what
/// QEMU runs without `-cpu` (the same `AT_HWCAP2`).
const PPC64LE_CPU_MODELS: &[(&str, u64)] = &[
    ("power8", 128),
    ("power8e", 128),
    ("power8nvl", 128),
    ("power9", 128),
    ("power9_v2.0", 128),
    ("power10", 128),
    ("power10_v2.0", 128),
];

/// What the runner needs to know about an architecture.
struct ArchSpec {
    /// The qemu-user binary.
    qemu: &'static str,
    /// The default `-L`: Debian's cross sysroot (`libc6-dev-ARCH-cross`).
    ld_prefix: &'static str,
    default_cpu: &'static str,
}

fn spec(arch: Arch) -> ArchSpec {
    match arch {
        Arch::Aarch64 => ArchSpec {
            qemu: "qemu-aarch64",
            ld_prefix: "/usr/aarch64-linux-gnu",
            default_cpu: "cortex-a72",
        },
        Arch::Ppc64le => ArchSpec {
            qemu: "qemu-ppc64le",
            ld_prefix: "/usr/powerpc64le-linux-gnu",
            default_cpu: "power9",
        },
        Arch::Riscv64 => ArchSpec {
            qemu: "qemu-riscv64",
            ld_prefix: "/usr/riscv64-linux-gnu",
            default_cpu: "rv64",
        },
        Arch::Arm => ArchSpec {
            qemu: "qemu-arm",
            ld_prefix: "/usr/arm-linux-gnueabihf",
            default_cpu: "cortex-a15",
        },
    }
}
const USAGE: &str = "usage: icache-check [--cpu MODEL] [--idc] [--dic] [--one-hart] \
                     [--fail-on CLASSES] [--plugin PATH] -- PROGRAM [ARGS...]\n\
                     The architecture (aarch64, riscv64, arm, ppc64le) comes from PROGRAM's ELF header.\n\
                     CLASSES: comma-separated, from maintenance, sync, patch-site \
                     (default maintenance,sync)";

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// `--cpu`, if given.
    cpu: Option<String>,
    idc: bool,
    dic: bool,
    /// riscv64: the program runs on one hart.
    one_hart: bool,
    plugin: Option<PathBuf>,
    /// The report classes that make the runner exit with [`EXIT_VIOLATIONS`].
    fail_on: Vec<Class>,
    program: Vec<OsString>,
}

/// Parses `--fail-on`'s list of class names.
fn parse_classes(list: &str) -> Result<Vec<Class>, String> {
    list.split(',')
        .map(|name| {
            Class::from_name(name.trim()).ok_or_else(|| {
                let known: Vec<&str> = Class::ALL.iter().map(|c| c.name()).collect();
                format!("unknown report class {name}; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// Parses the command line.
fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Options, String> {
    let mut opts = Options {
        cpu: None,
        idc: false,
        dic: false,
        one_hart: false,
        plugin: None,
        fail_on: Class::ALL
            .into_iter()
            .filter(|c| c.fails_by_default())
            .collect(),
        program: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| -> Result<OsString, String> {
            match text.strip_prefix(&format!("{name}=")) {
                Some(v) => Ok(v.into()),
                None => args.next().ok_or(format!("{name} needs a value")),
            }
        };
        match text.as_str() {
            "--" => break,
            "--idc" => opts.idc = true,
            "--dic" => opts.dic = true,
            "--one-hart" => opts.one_hart = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            t if t == "--cpu" || t.starts_with("--cpu=") => {
                opts.cpu = Some(value("--cpu")?.to_string_lossy().into_owned());
            }
            t if t == "--fail-on" || t.starts_with("--fail-on=") => {
                opts.fail_on = parse_classes(&value("--fail-on")?.to_string_lossy())?;
            }
            t if t == "--plugin" || t.starts_with("--plugin=") => {
                opts.plugin = Some(value("--plugin")?.into());
            }
            t if t.starts_with('-') => return Err(format!("unknown option {t}\n{USAGE}")),
            _ => {
                opts.program.push(arg);
                break;
            }
        }
    }
    opts.program.extend(args);
    if opts.program.is_empty() {
        return Err(format!("no program given\n{USAGE}"));
    }
    Ok(opts)
}

/// The CPU model: `--cpu` if given, else QEMU's own `QEMU_CPU` variable if
/// set, else the architecture's default.
fn choose_cpu(arch: Arch, flag: Option<&str>, env: Option<&str>) -> String {
    flag.or(env).unwrap_or(spec(arch).default_cpu).to_string()
}

/// The plugin arguments and QEMU's `-cpu` value for a CPU model of `arch`,
/// or an error naming the known models. `--idc` / `--dic` set the bits the
/// model's CTR_EL0 leaves clear; they are AArch64's only. `one_hart` is
/// riscv64's only.
fn plugin_args(
    arch: Arch,
    cpu: &str,
    idc: bool,
    dic: bool,
    one_hart: bool,
) -> Result<(PluginArgs, &'static str), String> {
    if arch == Arch::Arm {
        if idc || dic || one_hart {
            return Err("--idc, --dic and --one-hart do not apply to 32-bit Arm programs".into());
        }
        let Some(&model) = ARM_CPU_MODELS.iter().find(|m| **m == cpu) else {
            return Err(format!(
                "unknown arm CPU model {cpu} (from --cpu or QEMU_CPU); known: {}",
                ARM_CPU_MODELS.join(", ")
            ));
        };
        return Ok((PluginArgs::arm(), model));
    }
    if arch == Arch::Ppc64le {
        if idc || dic || one_hart {
            return Err("--idc, --dic and --one-hart are not POWER options".into());
        }
        let Some(&(name, block)) = PPC64LE_CPU_MODELS.iter().find(|(n, _)| *n == cpu) else {
            let known: Vec<&str> = PPC64LE_CPU_MODELS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown ppc64le CPU model {cpu} (from --cpu or QEMU_CPU); known: {}",
                known.join(", ")
            ));
        };
        let mut args = PluginArgs {
            arch: Arch::Ppc64le,
            ..PluginArgs::default()
        };
        (args.config.dline, args.config.iline) = (block, block);
        return Ok((args, name));
    }
    if arch == Arch::Riscv64 {
        if idc || dic {
            return Err("--idc and --dic are AArch64's CTR_EL0 bits; riscv64 has none".into());
        }
        let Some(&model) = RISCV64_CPU_MODELS.iter().find(|m| **m == cpu) else {
            return Err(format!(
                "unknown riscv64 CPU model {cpu} (from --cpu or QEMU_CPU); known: {}",
                RISCV64_CPU_MODELS.join(", ")
            ));
        };
        return Ok((PluginArgs::riscv64(one_hart), model));
    }
    if one_hart {
        return Err("--one-hart is for riscv64 programs".into());
    }
    let Some(&(_, ctr, qemu_cpu)) = CPU_MODELS.iter().find(|(name, _, _)| *name == cpu) else {
        let known: Vec<&str> = CPU_MODELS.iter().map(|(n, _, _)| *n).collect();
        return Err(format!(
            "unknown aarch64 CPU model {cpu} (from --cpu or QEMU_CPU); known: {}",
            known.join(", ")
        ));
    };
    let cfg = Config::from_ctr_el0(ctr);
    let args = PluginArgs {
        arch: Arch::Aarch64,
        one_hart: false,
        snoop: false,
        config: Config {
            idc: idc || cfg.idc,
            dic: dic || cfg.dic,
            ..cfg
        },
    };
    Ok((args, qemu_cpu))
}

/// What the plugin's log says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Report {
    /// Summary lines seen (one per process that ran to its exit).
    summaries: u64,
    /// Sum of the violation counts of all summaries.
    violations: u64,
    /// Sum of the per-class counts of all class lines.
    classes: ClassCounts,
    /// The plugin printed an `icache-check: error:` line.
    error: bool,
}

fn parse_log(log: &str) -> Report {
    let mut report = Report::default();
    for line in log.lines() {
        if line.starts_with(&format!("{PREFIX}error:")) {
            report.error = true;
        }
        if let Some(c) = Counts::parse_line(line) {
            report.summaries += 1;
            report.violations += c.violations;
        }
    }
    report.classes = ClassCounts::sum_in(log);
    report
}

/// The plugins, built by `build.rs` for this runner's target and profile,
/// one per plugin API version (`src/qemu_api.rs`). Embedded because
/// `cargo install` installs the runner but not a `cdylib`. The API 1 plugin
/// exists for x86-64 hosts only.
#[cfg(target_arch = "x86_64")]
static PLUGIN_API_V1: Option<&[u8]> = Some(include_bytes!(env!("ICACHE_CHECK_PLUGIN_V1")));
#[cfg(not(target_arch = "x86_64"))]
static PLUGIN_API_V1: Option<&[u8]> = None;
static PLUGIN_API_V4: &[u8] = include_bytes!(env!("ICACHE_CHECK_PLUGIN_V4"));

/// The QEMU to run for `spec`'s architecture: `ICACHE_CHECK_QEMU` (a
/// binary), else `qemu-ARCH` in `ICACHE_CHECK_QEMU_DIR`, else `qemu-ARCH`
/// on `PATH`.
fn qemu_binary(spec: &ArchSpec, exact: Option<OsString>, dir: Option<OsString>) -> OsString {
    match (exact, dir) {
        (Some(q), _) => q,
        (None, Some(d)) => Path::new(&d).join(spec.qemu).into_os_string(),
        (None, None) => spec.qemu.into(),
    }
}

/// The embedded plugin that `qemu` loads, chosen by its `--version`.
fn plugin_for(qemu: &OsStr) -> Result<&'static [u8], String> {
    let shown = qemu.to_string_lossy();
    let out = Command::new(qemu).arg("--version").output().map_err(|e| {
        format!(
            "cannot run {shown}: {e} (install Debian's qemu-user, or point \
             ICACHE_CHECK_QEMU_DIR at a QEMU 9.2 or later built with plugins)"
        )
    })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text)
        .ok_or_else(|| format!("`{shown} --version` printed no version: {text:?}"))?;
    match plugin_api(version)? {
        PluginApi::V4 => Ok(PLUGIN_API_V4),
        PluginApi::V1 => PLUGIN_API_V1.ok_or_else(|| {
            format!(
                "{shown} is QEMU {version}, whose plugin API (version 1) icache-check \
                 supports on x86-64 hosts only; use QEMU 9.2 or later (10.0.2 tested)"
            )
        }),
    }
}

/// Writes the embedded plugin into an anonymous memory file and returns the
/// file with the path QEMU can open it by, `/proc/self/fd/N`.
///
/// A memory file rather than a file in `/tmp`: nothing is left behind when
/// the runner is killed, and it works where `/tmp` is mounted `noexec`
/// (QEMU `dlopen`s the plugin, which maps it executable). The descriptor is
/// opened without close-on-exec, so QEMU inherits it under the same number
/// and `/proc/self/fd/N` names it in QEMU too; QEMU 7.2's plugin loader
/// (`g_module_open`, that is `dlopen`) accepts that path. The checked
/// program inherits the descriptor as well, as it does QEMU's log file.
fn embedded_plugin(plugin: &[u8]) -> std::io::Result<(File, PathBuf)> {
    let name = c"icache-check-plugin";
    // MFD_EXEC: with `vm.memfd_noexec = 1` (Linux 6.3+) a memory file is
    // otherwise created non-executable, and `dlopen` would fail. Kernels
    // before 6.3 reject the flag with EINVAL and make every memory file
    // executable, so there it is left out.
    // SAFETY: `name` is a NUL-terminated string; the flags are plain bits.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_EXEC) };
    if fd < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // SAFETY: as above.
        fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    }
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and is owned by nothing
    // else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(plugin)?;
    Ok((file, PathBuf::from(format!("/proc/self/fd/{fd}"))))
}

/// The architecture of the program at `path`, from its ELF header.
fn program_arch(path: &OsStr) -> Result<Arch, String> {
    let shown = Path::new(path).display();
    let mut header = Vec::with_capacity(arch::HEADER_LEN);
    std::fs::File::open(path)
        .and_then(|f| f.take(arch::HEADER_LEN as u64).read_to_end(&mut header))
        .map_err(|e| format!("cannot read {shown}: {e} ({:?})", e.kind()))?;
    Arch::from_elf_header(&header).map_err(|e| format!("{shown}: {e}"))
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("icache-check: error: {msg}");
    ExitCode::from(EXIT_CHECKER_FAILED)
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args_os().skip(1)) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let arch = match program_arch(&opts.program[0]) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let spec = spec(arch);
    let env_cpu = std::env::var("QEMU_CPU").ok();
    let cpu = choose_cpu(arch, opts.cpu.as_deref(), env_cpu.as_deref());
    let (pargs, qemu_cpu) = match plugin_args(arch, &cpu, opts.idc, opts.dic, opts.one_hart) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    let qemu = qemu_binary(
        &spec,
        std::env::var_os("ICACHE_CHECK_QEMU"),
        std::env::var_os("ICACHE_CHECK_QEMU_DIR"),
    );
    // `_memfd` keeps the embedded plugin's memory file open until QEMU has
    // exited.
    let (plugin, _memfd) = match opts.plugin.clone() {
        Some(path) if path.is_file() => (path, None),
        Some(path) => return fail(&format!("plugin {} not found", path.display())),
        None => match plugin_for(&qemu).and_then(|p| {
            embedded_plugin(p).map_err(|e| {
                format!(
                    "cannot write the built-in plugin to a memory file: {e} \
                     (build it with `cargo build -p icache-check --release` \
                     and pass --plugin target/release/libicache_check.so)"
                )
            })
        }) {
            Ok((file, path)) => (path, Some(file)),
            Err(e) => return fail(&e),
        },
    };
    let ld_prefix = std::env::var_os("QEMU_LD_PREFIX").unwrap_or_else(|| spec.ld_prefix.into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let log_path =
        std::env::temp_dir().join(format!("icache-check-{}-{nanos}.log", std::process::id()));
    let plugin_arg = pargs.plugin_option(&plugin);

    let status = Command::new(&qemu)
        .arg("-cpu")
        .arg(qemu_cpu)
        .arg("-L")
        .arg(&ld_prefix)
        .arg("-plugin")
        .arg(&plugin_arg)
        .arg("-d")
        .arg("plugin")
        .arg("-D")
        .arg(&log_path)
        .args(&opts.program)
        .status();
    let status = match status {
        Ok(s) => s,
        Err(e) => {
            return fail(&format!(
                "cannot run {}: {e} (install Debian's qemu-user)",
                qemu.to_string_lossy()
            ))
        }
    };
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let _ = std::io::stderr().write_all(log.as_bytes());
    let report = parse_log(&log);

    let program_code = match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => EXIT_CHECKER_FAILED,
    };
    if report.error {
        return ExitCode::from(EXIT_CHECKER_FAILED);
    }
    let failing: u64 = opts.fail_on.iter().map(|&c| report.classes.get(c)).sum();
    // Every violation is in a class; a plugin that printed no class line
    // cannot be filtered, so its violations all count.
    let classified: u64 = Class::ALL
        .into_iter()
        .filter(|c| c.fails_by_default())
        .map(|c| report.classes.get(c))
        .sum();
    let failing = if classified == report.violations {
        failing
    } else {
        report.violations
    };
    if failing > 0 {
        let mut msg = String::new();
        let _ = write!(
            msg,
            "icache-check: {failing} violation(s): exiting with {EXIT_VIOLATIONS} (the program's own status was {program_code})",
        );
        eprintln!("{msg}");
        return ExitCode::from(EXIT_VIOLATIONS);
    }
    if report.violations > 0 {
        eprintln!(
            "icache-check: {} violation(s), none in the classes chosen by --fail-on: not failing",
            report.violations
        );
    }
    if report.summaries == 0 && program_code == 0 {
        return fail("the plugin printed no summary; did QEMU load it?");
    }
    ExitCode::from(program_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args2(a: Vec<OsString>) -> Result<Options, String> {
        parse_args(a)
    }

    #[test]
    fn qemu_cpu_from_the_environment_is_the_default_model() {
        assert_eq!(choose_cpu(Arch::Aarch64, None, Some("max")), "max");
        assert_eq!(
            choose_cpu(Arch::Aarch64, Some("a64fx"), Some("max")),
            "a64fx"
        );
        assert_eq!(choose_cpu(Arch::Aarch64, None, None), "cortex-a72");
        assert_eq!(choose_cpu(Arch::Riscv64, None, None), "rv64");
        assert_eq!(
            choose_cpu(Arch::Riscv64, None, Some("sifive-u54")),
            "sifive-u54"
        );
    }

    #[test]
    fn an_aarch64_model_for_a_riscv64_program_is_an_error_naming_the_models() {
        let e = plugin_args(Arch::Riscv64, "cortex-a72", false, false, false).unwrap_err();
        assert!(
            e.contains("riscv64") && e.contains("rv64, sifive-u54"),
            "{e}"
        );
        let e = plugin_args(Arch::Aarch64, "rv64", false, false, false).unwrap_err();
        assert!(e.contains("cortex-a72"), "{e}");
        assert!(plugin_args(Arch::Riscv64, "rv64", true, false, false).is_err());
        assert!(plugin_args(Arch::Riscv64, "rv64", false, true, false).is_err());
        assert!(plugin_args(Arch::Aarch64, "cortex-a72", false, false, true).is_err());
    }

    #[test]
    fn ppc64le_models_run_as_themselves_with_their_block_sizes() {
        assert_eq!(choose_cpu(Arch::Ppc64le, None, None), "power9");
        for &(m, block) in PPC64LE_CPU_MODELS {
            let (a, qemu_cpu) = plugin_args(Arch::Ppc64le, m, false, false, false).unwrap();
            let want = format!("arch=ppc64le,dline={block},iline={block},snoop=off");
            assert_eq!((a.to_string(), qemu_cpu), (want, m));
        }
        let e = plugin_args(Arch::Ppc64le, "cortex-a72", false, false, false).unwrap_err();
        assert!(e.contains("ppc64le") && e.contains("power9"), "{e}");
        assert!(plugin_args(Arch::Ppc64le, "power9", true, false, false).is_err());
        assert!(plugin_args(Arch::Ppc64le, "power9", false, false, true).is_err());
        assert_eq!(spec(Arch::Ppc64le).ld_prefix, "/usr/powerpc64le-linux-gnu");
    }

    #[test]
    fn riscv64_models_run_as_themselves_with_the_riscv64_plugin_arguments() {
        for &m in RISCV64_CPU_MODELS {
            let (a, qemu_cpu) = plugin_args(Arch::Riscv64, m, false, false, false).unwrap();
            assert_eq!((a.to_string().as_str(), qemu_cpu), ("arch=riscv64", m));
            let (a, _) = plugin_args(Arch::Riscv64, m, false, false, true).unwrap();
            assert_eq!(a.to_string(), "arch=riscv64,one_hart=on");
        }
        assert_eq!(spec(Arch::Riscv64).qemu, "qemu-riscv64");
        assert_eq!(spec(Arch::Riscv64).ld_prefix, "/usr/riscv64-linux-gnu");
        assert_eq!(spec(Arch::Ppc64le).qemu, "qemu-ppc64le");
    }

    #[test]
    fn arm_models_run_as_themselves_with_the_arm_plugin_arguments() {
        assert_eq!(choose_cpu(Arch::Arm, None, None), "cortex-a15");
        for m in ARM_CPU_MODELS {
            let (a, qemu_cpu) = plugin_args(Arch::Arm, m, false, false, false).unwrap();
            assert_eq!((a.to_string().as_str(), qemu_cpu), ("arch=arm", *m));
        }
        let e = plugin_args(Arch::Arm, "cortex-a72", false, false, false).unwrap_err();
        assert!(e.contains("cortex-a15, cortex-a7, cortex-a9"), "{e}");
        assert!(plugin_args(Arch::Arm, "cortex-a15", true, false, false).is_err());
        assert!(plugin_args(Arch::Arm, "cortex-a15", false, false, true).is_err());
        assert_eq!(spec(Arch::Arm).qemu, "qemu-arm");
        assert_eq!(spec(Arch::Arm).ld_prefix, "/usr/arm-linux-gnueabihf");
        assert_eq!(spec(Arch::Aarch64).qemu, "qemu-aarch64");
        assert_eq!(spec(Arch::Aarch64).ld_prefix, "/usr/aarch64-linux-gnu");
    }

    #[test]
    fn a_program_that_is_missing_or_not_elf_is_a_clear_error() {
        let e = program_arch(OsStr::new("/nonexistent/prog")).unwrap_err();
        assert!(
            e.contains("cannot read /nonexistent/prog") && e.contains("NotFound"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("icache-check-arch-{}", std::process::id()));
        std::fs::write(&dir, b"\x7fELF\x02").unwrap();
        let e = program_arch(dir.as_os_str()).unwrap_err();
        let _ = std::fs::remove_file(&dir);
        assert!(e.contains("truncated ELF header"), "{e}");
        // The test binary itself is an x86-64 ELF file: read, but refused.
        let me = std::env::current_exe().unwrap();
        let e = program_arch(me.as_os_str()).unwrap_err();
        assert!(
            e.contains("e_machine 62") && e.contains("not supported yet"),
            "{e}"
        );
    }

    fn args(s: &str) -> Vec<OsString> {
        s.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn cargo_runner_form_parses_options_then_program() {
        let o = parse_args2(args("--cpu a64fx -- /t/test --exact foo")).unwrap();
        assert_eq!(o.cpu.as_deref(), Some("a64fx"));
        assert_eq!(o.program, args("/t/test --exact foo"));
    }

    #[test]
    fn program_options_after_the_program_are_not_ours() {
        let o = parse_args2(args("--idc ./prog --dic --cpu=max")).unwrap();
        assert!(o.idc && !o.dic);
        assert_eq!(o.cpu, None);
        assert_eq!(o.program, args("./prog --dic --cpu=max"));
    }

    #[test]
    fn equals_forms_and_plugin_override_parse() {
        let o = parse_args2(args("--cpu=max --plugin=/x/p.so --dic -- a")).unwrap();
        assert_eq!((o.cpu.as_deref(), o.dic), (Some("max"), true));
        assert_eq!(o.plugin, Some(PathBuf::from("/x/p.so")));
    }

    #[test]
    fn fail_on_defaults_to_the_violation_classes_and_parses_a_list() {
        let o = parse_args2(args("-- a")).unwrap();
        assert_eq!(o.fail_on, [Class::Maintenance, Class::Sync]);
        let o = parse_args2(args("--fail-on maintenance -- a")).unwrap();
        assert_eq!(o.fail_on, [Class::Maintenance]);
        let o = parse_args2(args("--fail-on=sync,patch-site -- a")).unwrap();
        assert_eq!(o.fail_on, [Class::Sync, Class::PatchSite]);
        let e = parse_args2(args("--fail-on stale -- a")).unwrap_err();
        assert!(e.contains("maintenance, sync, patch-site"), "{e}");
    }

    #[test]
    fn missing_program_and_unknown_options_are_errors() {
        assert!(parse_args2(args("--cpu max --")).is_err());
        assert!(parse_args2(args("--frobnicate -- a")).is_err());
        assert!(parse_args2(args("--cpu")).is_err());
    }

    #[test]
    fn cpu_models_give_their_line_sizes() {
        let text = |cpu, idc, dic| {
            let a = plugin_args(Arch::Aarch64, cpu, idc, dic, false).unwrap().0;
            a.to_string()
        };
        let want = "arch=aarch64,dline=64,iline=64,idc=off,dic=off,ipipt=on";
        assert_eq!(text("cortex-a72", false, false), want);
        let want = "arch=aarch64,dline=256,iline=256,idc=off,dic=off,ipipt=off";
        assert_eq!(text("a64fx", false, false), want);
        let want = "arch=aarch64,dline=32,iline=32,idc=on,dic=on,ipipt=off";
        assert_eq!(text("max", true, true), want);
        assert!(
            plugin_args(Arch::Aarch64, "cortex-a99", false, false, false)
                .unwrap_err()
                .contains("cortex-a72")
        );
    }

    #[test]
    fn sve_and_sme_are_off_in_every_model_that_has_them() {
        // QEMU 7.2: a64fx and max have SVE, max also SME (HWCAP/HWCAP2).
        assert_eq!(
            plugin_args(Arch::Aarch64, "a64fx", false, false, false)
                .unwrap()
                .1,
            "a64fx,sve=off"
        );
        let max = plugin_args(Arch::Aarch64, "max", false, false, false)
            .unwrap()
            .1;
        assert_eq!(max, "max,sve=off,sme=off");
        assert_eq!(
            plugin_args(Arch::Aarch64, "cortex-a72", false, false, false)
                .unwrap()
                .1,
            "cortex-a72"
        );
    }

    #[test]
    fn log_summaries_are_summed_and_errors_noticed() {
        let log = "icache-check: violation: vCPU 0 executed 0x10: not cleaned\n\
                   icache-check: 2 violations, 4 code stores, 6 maintenance ops, 2 vCPUs\n\
                   icache-check: 1 violations, 0 code stores, 0 maintenance ops, 1 vCPUs\n";
        let r = parse_log(log);
        assert_eq!((r.summaries, r.violations, r.error), (2, 3, false));
        let r = parse_log("icache-check: error: self-check failed\n");
        assert!(r.error);
        assert_eq!(parse_log("hello\n"), Report::default());
    }
}
