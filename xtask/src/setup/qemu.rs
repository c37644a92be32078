//! QEMU 10.0.2 with TCG plugins, built from Debian's source package into
//! `target/qemu-10.0.2/bin` (issue 12, item 1: the checker on current QEMU).
//!
//! Why a build: bookworm-backports' `qemu-user 1:10.0.2+ds-2+deb13u1~bpo12+1`
//! is a static-pie build without plugin support (its `qemu-aarch64 -h` has no
//! `-plugin`), so the checker cannot use it. Its *source* is the same
//! release, so it is built here, for the four linux-user targets the checker
//! models and nothing else (171 to 248 s of compiling on the 2-core project
//! machine, depending on its load; about 3 minutes in all).
//!
//! The source comes from the bookworm-backports deb-src index through
//! `apt-get source`. This mirror serves the upstream tarball but answers 404
//! for the `.dsc` and the `.debian.tar.xz`, so apt-get's exit status is not
//! trusted either way: the tarball is used only when its SHA-256 is the one
//! pinned in [`ORIG_SHA256`] (from the Sources index).
//!
//! One fix is applied to the source ([`SOURCE_FIXES`]): QEMU 10.0.2 answers
//! the ARM `cacheflush` syscall with the start address instead of 0, which
//! makes every flush of the armv7 suite fail. The binaries' folder holds a
//! stamp of the tarball, options and fixes they were built from; a build
//! from other inputs counts as missing and is redone.
//!
//! Build dependencies: meson >= 1.5 (QEMU 10's `pythondeps.toml`; bookworm
//! has 1.0.1, backports 1.7.0) and pycotap (configure requires it, and the
//! `+ds` tarball's `python/wheels` is empty; backports has
//! `python3-pycotap`). configure runs with Debian's `/usr/bin/python3`, so
//! that its venv sees Debian's meson and pycotap whatever `python3` is first
//! on PATH.

use super::{apt_get, apt_install, is_root, privileged};
use crate::cmd::{Cmd, Result};
use crate::Workspace;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The QEMU release built here.
pub const VERSION: &str = "10.0.2";

/// The Debian source package version that carries [`VERSION`].
const DEBIAN_VERSION: &str = "1:10.0.2+ds-2+deb13u1~bpo12+1";
/// Its upstream tarball, its size and SHA-256 as bookworm-backports'
/// `main/source/Sources` lists them (`apt-get source --print-uris
/// qemu=1:10.0.2+ds-2+deb13u1~bpo12+1`).
const ORIG_TARBALL: &str = "qemu_10.0.2+ds.orig.tar.xz";
const ORIG_SIZE: u64 = 39_449_628;
const ORIG_SHA256: &str = "0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1";
/// The folder the tarball unpacks to.
const SOURCE_DIR: &str = "qemu-10.0.2";

/// Source fixes applied after unpacking: (file, exact text, replacement,
/// why). Each must match exactly once, or the build stops: the tarball is
/// pinned, so a mismatch means this table is wrong.
const SOURCE_FIXES: &[(&str, &str, &str, &str)] = &[(
    "linux-user/arm/cpu_loop.c",
    "                    case ARM_NR_cacheflush:\n                        /* nop */\n                        break;\n",
    "                    case ARM_NR_cacheflush:\n                        /* icache-coherence: the kernel's do_cache_op (arch/arm/kernel/traps.c) */\n                        env->regs[0] = (env->regs[1] < env->regs[0] || env->regs[2] != 0)\n                                       ? -TARGET_EINVAL : 0;\n                        break;\n",
    // QEMU 10.0.2 leaves r0 (the start address) as the result of the ARM
    // `cacheflush` syscall (0x0f0002), so every successful flush looks
    // like a failure to the caller (the library reports it; Debian's 7.2
    // returns 0). Linux returns -EINVAL for end < start or flags != 0, else
    // 0 for a mapped range.
    "arm cacheflush returns the kernel's result, not its start address",
)];

/// What the binaries are built from and how; written beside them, so that a
/// build from other inputs (an older version of this file) is rebuilt.
fn build_stamp() -> String {
    let mut stamp = format!("{ORIG_TARBALL} sha256 {ORIG_SHA256}\nconfigure");
    for option in configure_options() {
        stamp.push(' ');
        stamp.push_str(&option);
    }
    stamp.push('\n');
    for (file, _, _, why) in SOURCE_FIXES {
        stamp.push_str(&format!("fix {file}: {why}\n"));
    }
    stamp
}

/// The stamp's file name in the folder of the binaries.
const STAMP: &str = "icache-coherence-build.txt";

/// The qemu-user binaries the checker runs, one per architecture it models.
pub const BINARIES: [&str; 4] = ["qemu-aarch64", "qemu-riscv64", "qemu-arm", "qemu-ppc64le"];

/// The apt source this part adds: binaries (meson, pycotap) and sources
/// (QEMU) of bookworm-backports, signed by the Debian archive key.
const BACKPORTS_SOURCES_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_SOURCES: &str = "Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
";

/// Build dependencies from bookworm (or already on the machine).
const BUILD_PACKAGES: &[&str] = &[
    "gcc",
    "libc6-dev",
    "make",
    "ninja-build",
    "pkg-config",
    "libglib2.0-dev",
    "zlib1g-dev",
    "python3",
    "python3-venv",
    "xz-utils",
    "tar",
];
/// Build dependencies that must come from bookworm-backports.
const BACKPORTS_PACKAGES: &[&str] = &["meson", "python3-pycotap"];
/// The oldest meson QEMU 10.0 accepts (its `pythondeps.toml`).
const MESON_MIN: (u32, u32) = (1, 5);

/// A build that takes longer has hung (a normal one takes 2 to 3 minutes).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// Where the built binaries live: `<target dir>/qemu-10.0.2/bin`, the
/// directory `ICACHE_CHECK_QEMU_DIR` points the checker at.
pub fn bin_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join(format!("qemu-{VERSION}")).join("bin")
}

/// Scratch space of the build: the tarball (kept, so a rebuild does not
/// download it again) and the unpacked source (removed after a build).
fn work_dir(ws: &Workspace) -> PathBuf {
    ws.target_dir.join(format!("qemu-{VERSION}-build"))
}

/// Ok when `dir` holds all of [`BINARIES`], each saying it is [`VERSION`]
/// and offering `-plugin`; else what is wrong, naming `cargo xtask setup`.
pub fn check(dir: &Path) -> Result {
    let stamp = dir.join(STAMP);
    let problem = match fs::read_to_string(&stamp) {
        Ok(s) if s == build_stamp() => None,
        Ok(_) => Some(format!(
            "{} was built from other sources or options",
            dir.display()
        )),
        Err(_) => Some(format!("{} is missing", stamp.display())),
    };
    if let Some(problem) = problem {
        return Err(format!(
            "QEMU {VERSION} with plugins is not ready: {problem}; `cargo xtask setup` builds it"
        ));
    }
    for name in BINARIES {
        let binary = dir.join(name);
        let problem = if binary.is_file() {
            usable(&binary).err()
        } else {
            Some(format!("{} is missing", binary.display()))
        };
        if let Some(problem) = problem {
            return Err(format!(
                "QEMU {VERSION} with plugins is not ready: {problem}; `cargo xtask setup` builds it"
            ));
        }
    }
    Ok(())
}

fn usable(binary: &Path) -> Result {
    let shown = binary.display().to_string();
    let version = Cmd::new(&shown).arg("--version").stdout()?;
    match parse_version(&version) {
        Some(v) if v == VERSION => {}
        Some(v) => return Err(format!("{shown} is QEMU {v}, not {VERSION}")),
        None => return Err(format!("{shown} --version printed no version: {version:?}")),
    }
    // `-h` exits 0 and lists the options the binary was built with.
    let help = Cmd::new(&shown).arg("-h").stdout_lossy()?;
    if !offers_plugins(&help) {
        return Err(format!(
            "{shown} was built without plugin support (no -plugin in -h)"
        ));
    }
    Ok(())
}

/// The version in `qemu-ARCH --version`'s first line, e.g. "10.0.2" from
/// `qemu-aarch64 version 10.0.2` or "7.2.19" from `qemu-aarch64 version
/// 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)`: the runner's own parser
/// (`crates/icache-check/src/qemu_version.rs`), so both read it alike.
pub fn parse_version(output: &str) -> Option<String> {
    crate::checker::qemu_version::parse_version(output).map(|v| v.to_string())
}

/// Whether `qemu-ARCH -h` lists the `-plugin` option (an option line starts
/// with it; the text of other options may mention plugins).
fn offers_plugins(help: &str) -> bool {
    help.lines()
        .any(|l| l.split_whitespace().next() == Some("-plugin"))
}

/// Setup's part: builds QEMU [`VERSION`] into [`bin_dir`] unless it is there
/// and usable.
pub fn prepare(ws: &Workspace) -> Result {
    let bin = bin_dir(ws);
    // The backports source is wanted whether or not a build happens: it is
    // where this QEMU's source and build tools come from.
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    if codename(&os) != Some("bookworm") {
        if check(&bin).is_ok() {
            eprintln!("setup:   QEMU {VERSION} present: {}", bin.display());
            return Ok(());
        }
        return Err(format!(
            "building QEMU {VERSION} is automated for Debian 12 (bookworm) only; elsewhere build \
             QEMU {VERSION} with --enable-plugins for {} and put the binaries in {}",
            target_list(),
            bin.display()
        ));
    }
    let mut updated = add_backports_source()?;
    match check(&bin) {
        Ok(()) => {
            eprintln!("setup:   QEMU {VERSION} present: {}", bin.display());
            return Ok(());
        }
        Err(why) => eprintln!("setup:   {why}"),
    }
    let t = Instant::now();
    build_packages(&mut updated)?;
    let tarball = source_tarball(ws, &mut updated)?;
    build(ws, &tarball, &bin)?;
    check(&bin)?;
    eprintln!(
        "setup:   QEMU {VERSION} built into {} in {:.0} s",
        bin.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `VERSION_CODENAME` of `/etc/os-release`.
fn codename(os_release: &str) -> Option<&str> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim().trim_matches('"'))
}

/// Writes the backports apt source unless it is there with this content;
/// returns whether apt's index has been updated since (it has, when the
/// source was added).
fn add_backports_source() -> Result<bool> {
    let path = Path::new(BACKPORTS_SOURCES_FILE);
    if fs::read_to_string(path).is_ok_and(|s| s == BACKPORTS_SOURCES) {
        eprintln!("setup:   apt source present: {BACKPORTS_SOURCES_FILE}");
        return Ok(false);
    }
    eprintln!(
        "setup:   adding apt source {BACKPORTS_SOURCES_FILE} (bookworm-backports, deb and deb-src)"
    );
    if is_root()? {
        fs::write(path, BACKPORTS_SOURCES)
            .map_err(|e| format!("writing {BACKPORTS_SOURCES_FILE}: {e}"))?;
    } else {
        let staged =
            std::env::temp_dir().join(format!("bookworm-backports-{}.sources", std::process::id()));
        fs::write(&staged, BACKPORTS_SOURCES)
            .map_err(|e| format!("writing {}: {e}", staged.display()))?;
        let copied = privileged("cp")?
            .args([
                staged.display().to_string(),
                BACKPORTS_SOURCES_FILE.to_string(),
            ])
            .run();
        let _ = fs::remove_file(&staged);
        copied?;
    }
    apt_get(&["-q", "update"])?;
    Ok(true)
}

/// Installs what the build needs; meson and pycotap from bookworm-backports.
fn build_packages(updated: &mut bool) -> Result {
    let mut missing = super::missing_packages(BUILD_PACKAGES)?;
    let meson = installed_version("meson")?;
    let old_meson = !meson.as_deref().is_some_and(meson_new_enough);
    let missing_backports: Vec<&str> = BACKPORTS_PACKAGES
        .iter()
        .copied()
        .filter(|&p| {
            if p == "meson" {
                old_meson
            } else {
                super::missing_packages(&[p]).is_ok_and(|m| !m.is_empty())
            }
        })
        .collect();
    if missing.is_empty() && missing_backports.is_empty() {
        eprintln!("setup:   QEMU build packages present");
        return Ok(());
    }
    missing.extend(missing_backports.iter().copied());
    eprintln!(
        "setup:   installing QEMU build packages: {}",
        missing.join(" ")
    );
    if !*updated {
        apt_get(&["-q", "update"])?;
        *updated = true;
    }
    let regular: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !BACKPORTS_PACKAGES.contains(p))
        .collect();
    if !regular.is_empty() {
        apt_install(&[], &regular)?;
    }
    if !missing_backports.is_empty() {
        apt_install(&["-t", "bookworm-backports"], &missing_backports)?;
    }
    match installed_version("meson")? {
        Some(v) if meson_new_enough(&v) => Ok(()),
        v => Err(format!(
            "meson {} is installed, QEMU {VERSION} needs >= {}.{} (bookworm-backports)",
            v.unwrap_or_else(|| "(none)".to_string()),
            MESON_MIN.0,
            MESON_MIN.1
        )),
    }
}

/// The installed version of a Debian package, if it is installed.
fn installed_version(package: &str) -> Result<Option<String>> {
    let out = Cmd::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status} ${Version}\n", package])
        .stdout_lossy()?;
    Ok(out
        .lines()
        .find_map(|l| l.strip_prefix("installed "))
        .map(|v| v.trim().to_string()))
}

/// Whether a Debian version of meson ("1.7.0-1~bpo12+1") is at least
/// [`MESON_MIN`].
fn meson_new_enough(debian_version: &str) -> bool {
    let upstream = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, v)| v);
    let mut parts = upstream
        .split(['.', '-', '~', '+'])
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= MESON_MIN,
        _ => false,
    }
}

/// The verified upstream tarball in the work folder, downloaded when it is
/// not there yet.
fn source_tarball(ws: &Workspace, updated: &mut bool) -> Result<PathBuf> {
    let work = work_dir(ws);
    let tarball = work.join(ORIG_TARBALL);
    if tarball.is_file() && verify(&tarball).is_ok() {
        eprintln!("setup:   source present: {}", tarball.display());
        return Ok(tarball);
    }
    let download = work.join("download");
    let _ = fs::remove_dir_all(&download);
    fs::create_dir_all(&download).map_err(|e| format!("creating {}: {e}", download.display()))?;
    eprintln!("setup:   downloading the source of qemu {DEBIAN_VERSION} (bookworm-backports)");
    let fetch = || {
        Cmd::new("apt-get")
            .dir(&download)
            .args(["-q", "source", "--download-only"])
            .arg(format!("qemu={DEBIAN_VERSION}"))
            .output(Some(Duration::from_secs(600)))
    };
    let mut out = fetch()?;
    let mut fetched = download.join(ORIG_TARBALL);
    if !fetched.is_file() && !*updated {
        // A stale index may not list the version yet.
        apt_get(&["-q", "update"])?;
        *updated = true;
        out = fetch()?;
        fetched = download.join(ORIG_TARBALL);
    }
    // The mirror may 404 the .dsc and the Debian diff (so apt-get fails);
    // only the upstream tarball is used, and only after its hash matched.
    if !fetched.is_file() {
        return Err(format!(
            "`apt-get source --download-only qemu={DEBIAN_VERSION}` did not download {ORIG_TARBALL} \
             (is the deb-src line of {BACKPORTS_SOURCES_FILE} there?):\n{}{}",
            out.stdout, out.stderr
        ));
    }
    verify(&fetched)?;
    fs::rename(&fetched, &tarball).map_err(|e| format!("moving {}: {e}", fetched.display()))?;
    let _ = fs::remove_dir_all(&download);
    Ok(tarball)
}

/// Ok when `file` has the size and SHA-256 pinned above.
fn verify(file: &Path) -> Result {
    let size = fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if size != ORIG_SIZE {
        return Err(format!(
            "{} has {size} bytes, the Sources index says {ORIG_SIZE}: refusing to build it",
            file.display()
        ));
    }
    let out = Cmd::new("sha256sum")
        .arg(file.display().to_string())
        .stdout()?;
    match out.split_whitespace().next() {
        Some(hash) if hash == ORIG_SHA256 => Ok(()),
        hash => Err(format!(
            "{} has SHA-256 {}, the Sources index says {ORIG_SHA256}: refusing to build it",
            file.display(),
            hash.unwrap_or("(none)")
        )),
    }
}

/// `aarch64-linux-user,riscv64-linux-user,...`, from [`BINARIES`].
fn target_list() -> String {
    let targets: Vec<String> = BINARIES
        .iter()
        .map(|b| format!("{}-linux-user", b.trim_start_matches("qemu-")))
        .collect();
    targets.join(",")
}

/// Unpacks, configures and builds the four binaries, then copies them into
/// `bin` (each through a temporary name, so that a half-copied binary is
/// never taken for a built one).
fn build(ws: &Workspace, tarball: &Path, bin: &Path) -> Result {
    let work = work_dir(ws);
    let src_root = work.join("src");
    let _ = fs::remove_dir_all(&src_root);
    fs::create_dir_all(&src_root).map_err(|e| format!("creating {}: {e}", src_root.display()))?;
    let t = Instant::now();
    Cmd::new("tar")
        .args([
            "-xJf",
            &tarball.display().to_string(),
            "-C",
            &src_root.display().to_string(),
        ])
        .run()?;
    eprintln!("setup:   unpacked in {:.0} s", t.elapsed().as_secs_f64());
    let source = src_root.join(SOURCE_DIR);
    let build = source.join("build");
    fs::create_dir_all(&build).map_err(|e| format!("creating {}: {e}", build.display()))?;
    fix_sources(&source)?;
    let prefix = bin.parent().unwrap_or(bin);
    let t = Instant::now();
    Cmd::new("../configure")
        .dir(&build)
        .arg(format!("--prefix={}", prefix.display()))
        .args(configure_options())
        .run_with_timeout(BUILD_LIMIT)?;
    eprintln!("setup:   configured in {:.0} s", t.elapsed().as_secs_f64());
    let jobs = std::thread::available_parallelism().map_or(2, usize::from);
    let t = Instant::now();
    Cmd::new("ninja")
        .dir(&build)
        .args(["-j", &jobs.to_string()])
        .args(BINARIES)
        .run_with_timeout(BUILD_LIMIT)?;
    eprintln!("setup:   compiled in {:.0} s", t.elapsed().as_secs_f64());
    fs::create_dir_all(bin).map_err(|e| format!("creating {}: {e}", bin.display()))?;
    // No stamp until all four are in place.
    let stamp = bin.join(STAMP);
    let _ = fs::remove_file(&stamp);
    for name in BINARIES {
        let staged = bin.join(format!(".{name}.new"));
        fs::copy(build.join(name), &staged).map_err(|e| format!("copying {name}: {e}"))?;
        fs::rename(&staged, bin.join(name)).map_err(|e| format!("installing {name}: {e}"))?;
    }
    fs::write(&stamp, build_stamp()).map_err(|e| format!("writing {}: {e}", stamp.display()))?;
    // The objects, which nothing uses once the binaries are copied.
    let _ = fs::remove_dir_all(&src_root);
    Ok(())
}

/// configure's options but the prefix: the four linux-user targets with
/// plugins, nothing else.
fn configure_options() -> Vec<String> {
    let mut options = vec![format!("--target-list={}", target_list())];
    options.extend(
        [
            "--enable-plugins",
            "--disable-system",
            "--disable-tools",
            "--disable-docs",
            "--disable-werror",
            "--disable-capstone",
            "--disable-install-blobs",
            // No -g: a sixth less compile time, and 6 MB binaries, not 33 MB.
            "--disable-debug-info",
            // Everything comes from Debian: no pip, no git subprojects.
            "--disable-download",
            // Debian's interpreter, which sees Debian's meson and pycotap.
            "--python=/usr/bin/python3",
        ]
        .map(String::from),
    );
    options
}

/// Applies [`SOURCE_FIXES`] to the unpacked source.
fn fix_sources(source: &Path) -> Result {
    for (file, from, to, why) in SOURCE_FIXES {
        let path = source.join(file);
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        fs::write(
            &path,
            fix(&text, from, to).ok_or_else(|| {
                format!(
                    "{}: the text of the fix `{why}` is not there exactly once",
                    path.display()
                )
            })?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("setup:   fixed {file}: {why}");
    }
    Ok(())
}

/// `text` with its one occurrence of `from` replaced by `to`; None unless
/// `from` occurs exactly once.
fn fix(text: &str, from: &str, to: &str) -> Option<String> {
    (text.matches(from).count() == 1).then(|| text.replacen(from, to, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_a_source_build_and_from_debian() {
        let built = "qemu-aarch64 version 10.0.2\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_version(built).as_deref(), Some("10.0.2"));
        let debian = "qemu-aarch64 version 7.2.19 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_version(debian).as_deref(), Some("7.2.19"));
    }

    #[test]
    fn output_without_a_version_has_none() {
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("qemu-aarch64: unknown option\n"), None);
        assert_eq!(parse_version("x version \n"), None);
        assert_eq!(parse_version("x version unknown\n"), None);
    }

    #[test]
    fn plugin_support_is_the_plugin_option_line_of_the_help() {
        let with = "usage: qemu-aarch64 [options] program [arguments...]\n\
                    -d item[,...]        QEMU_LOG           enable logging of specified items\n\
                    -plugin              QEMU_PLUGIN        [file=]<file>[,<argname>=<argvalue>]\n";
        assert!(offers_plugins(with));
        // The static backports build: no -plugin line, though -d mentions plugins.
        let without = "usage: qemu-aarch64 [options] program [arguments...]\n\
                       -d item[,...]        QEMU_LOG           enable logging of specified items (plugin)\n\
                       -one-insn-per-tb     QEMU_ONE_INSN_PER_TB  run with one guest instruction per emulated TB\n";
        assert!(!offers_plugins(without));
    }

    #[test]
    fn a_missing_directory_is_not_ready_and_names_setup() {
        let e = check(Path::new("/nonexistent/qemu-10.0.2/bin")).unwrap_err();
        assert!(e.contains("/nonexistent/qemu-10.0.2/bin/"), "{e}");
        assert!(e.contains("is missing"), "{e}");
        assert!(e.contains("cargo xtask setup"), "{e}");
    }

    /// Held by every test that writes scripts and runs them: a script
    /// still open for writing in one thread while another thread forks
    /// cannot be executed (ETXTBSY) until that child has exec'd.
    static SCRIPTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    /// A folder of stand-in `qemu-ARCH` scripts that print `version` for
    /// `--version` and `help` for `-h`.
    fn fake_qemus(test: &str, version: &str, help: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("xtask-qemu-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for name in BINARIES {
            let script = format!(
                "#!/bin/sh\nif [ \"$1\" = --version ]; then echo '{name} version {version}'; \
                 else echo '{help}'; fi\n"
            );
            let path = dir.join(name);
            fs::write(&path, script).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(dir.join(STAMP), build_stamp()).unwrap();
        dir
    }

    #[test]
    fn a_build_from_other_inputs_or_without_a_stamp_is_not_ready() {
        let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fake_qemus("stale", VERSION, PLUGIN_LINE);
        fs::write(dir.join(STAMP), "qemu_10.0.2+ds.orig.tar.xz sha256 0\n").unwrap();
        let e = check(&dir).unwrap_err();
        assert!(e.contains("built from other sources or options"), "{e}");
        fs::remove_file(dir.join(STAMP)).unwrap();
        let e = check(&dir).unwrap_err();
        assert!(e.contains(&format!("{STAMP} is missing")), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_stamp_names_the_tarball_every_option_and_every_fix() {
        let stamp = build_stamp();
        assert!(stamp.contains(ORIG_SHA256));
        assert!(stamp.contains(" --enable-plugins "));
        assert!(stamp.contains("--target-list=aarch64-linux-user,"));
        assert!(stamp.contains("arm cacheflush returns the kernel's result"));
    }

    #[test]
    fn a_fix_applies_only_where_its_text_occurs_exactly_once() {
        assert_eq!(fix("a nop b", "nop", "ret").as_deref(), Some("a ret b"));
        assert_eq!(fix("a b", "nop", "ret"), None);
        assert_eq!(fix("nop nop", "nop", "ret"), None);
    }

    #[test]
    fn the_cacheflush_fix_matches_qemu_10_0_2s_nop_and_returns_the_kernels_result() {
        // The case as QEMU 10.0.2's linux-user/arm/cpu_loop.c has it.
        let original = "                switch (n) {\n                    case ARM_NR_cacheflush:\n                        /* nop */\n                        break;\n                    case ARM_NR_set_tls:\n";
        let (_, from, to, _) = SOURCE_FIXES[0];
        let fixed = fix(original, from, to).unwrap();
        assert!(fixed.contains("env->regs[0] = (env->regs[1] < env->regs[0] || env->regs[2] != 0)"));
        assert!(fixed.contains("? -TARGET_EINVAL : 0;"));
        assert!(fixed.ends_with(
            "                        break;\n                    case ARM_NR_set_tls:\n"
        ));
    }

    const PLUGIN_LINE: &str = "-plugin              QEMU_PLUGIN       [file=]<file>";

    #[test]
    fn four_binaries_of_the_version_with_plugins_are_ready() {
        let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fake_qemus("ready", VERSION, PLUGIN_LINE);
        assert_eq!(check(&dir), Ok(()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn another_qemu_version_is_not_ready() {
        let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fake_qemus(
            "other",
            "7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)",
            PLUGIN_LINE,
        );
        let e = check(&dir).unwrap_err();
        assert!(e.contains("is QEMU 7.2.22, not 10.0.2"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_build_without_plugins_is_not_ready() {
        let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fake_qemus(
            "static",
            VERSION,
            "-d item[,...]   QEMU_LOG   enable logging",
        );
        let e = check(&dir).unwrap_err();
        assert!(e.contains("without plugin support"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_missing_binary_makes_the_folder_not_ready() {
        let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
        let dir = fake_qemus("partial", VERSION, PLUGIN_LINE);
        fs::remove_file(dir.join("qemu-ppc64le")).unwrap();
        let e = check(&dir).unwrap_err();
        assert!(e.contains("qemu-ppc64le is missing"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn meson_from_backports_is_new_enough_and_bookworms_is_not() {
        assert!(meson_new_enough("1.7.0-1~bpo12+1"));
        assert!(meson_new_enough("1.5.0-1"));
        assert!(meson_new_enough("2.0-1"));
        assert!(!meson_new_enough("1.0.1-5"));
        assert!(!meson_new_enough("0.63.3-1"));
        assert!(!meson_new_enough("garbage"));
        assert!(meson_new_enough("1:1.5.1-1"));
    }

    #[test]
    fn the_codename_is_read_from_os_release() {
        let bookworm = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";
        assert_eq!(codename(bookworm), Some("bookworm"));
        assert_eq!(codename("ID=alpine\n"), None);
    }

    #[test]
    fn the_target_list_names_one_linux_user_target_per_binary() {
        assert_eq!(
            target_list(),
            "aarch64-linux-user,riscv64-linux-user,arm-linux-user,ppc64le-linux-user"
        );
    }
}
