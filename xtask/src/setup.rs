//! `cargo xtask setup`: install everything the CI matrix needs.
//!
//! Idempotent, and quick when everything is present: each part first asks
//! what is installed (dpkg, rustup) and installs only what is missing.

pub mod qemu;
mod wine;

use crate::cmd::{on_path, Cmd, Result};
use crate::targets;
use crate::Workspace;
use std::time::Duration;

pub fn main(ws: &Workspace, args: &[String]) -> Result {
    if let Some(arg) = args.first() {
        return Err(format!("setup takes no arguments, got `{arg}`"));
    }
    run(ws)
}

/// Runs every part, even after one failed, so that a single run reports all
/// problems; fails if any part failed.
pub fn run(ws: &Workspace) -> Result {
    let qemu_part = format!("QEMU {} with plugins", qemu::VERSION);
    let parts: [(&str, &dyn Fn() -> Result); 6] = [
        ("Debian packages", &apt_packages),
        (&qemu_part, &|| qemu::prepare(ws)),
        ("Rust targets", &rust_targets),
        ("Rust components", &rust_components),
        ("MSRV toolchain", &msrv_toolchain),
        ("wine prefix", &|| wine::prepare(ws)),
    ];
    let mut failed = Vec::new();
    for (name, part) in parts {
        eprintln!("setup: {name}");
        if let Err(e) = part() {
            eprintln!("setup: {name} FAILED: {e}");
            failed.push(name);
        }
    }
    if failed.is_empty() {
        eprintln!("setup: done");
        Ok(())
    } else {
        Err(format!("setup failed for: {}", failed.join(", ")))
    }
}

fn apt_packages() -> Result {
    let missing = missing_packages(targets::APT_PACKAGES)?;
    if missing.is_empty() {
        eprintln!("setup:   all {} present", targets::APT_PACKAGES.len());
        return Ok(());
    }
    eprintln!("setup:   missing: {}", missing.join(" "));
    if !on_path("apt-get") {
        return Err(format!(
            "no apt-get here; install these (Debian names) by hand: {}",
            missing.join(" ")
        ));
    }
    apt_get(&["-q", "update"])?;
    apt_install(&[], targets::APT_PACKAGES)?;
    let still = missing_packages(targets::APT_PACKAGES)?;
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after apt-get: {}", still.join(" ")))
    }
}

/// Packages of `wanted` that dpkg does not report as installed.
fn missing_packages(wanted: &[&'static str]) -> Result<Vec<&'static str>> {
    if !on_path("dpkg-query") {
        return Ok(wanted.to_vec());
    }
    // One query for all; unknown packages go to stderr and are simply absent
    // from stdout, so the exit status is not looked at.
    let out = Cmd::new("dpkg-query")
        .args(["-W", "-f", "${Package} ${db:Status-Status}\n"])
        .args(wanted.iter().copied())
        .stdout_lossy()?;
    Ok(not_installed(wanted, &out))
}

/// Which of `wanted` the `dpkg-query -f '${Package} ${db:Status-Status}\n'`
/// output doesn't show as "installed". Removed packages whose configuration
/// is left show "config-files"; multi-arch ones may print one line per
/// architecture, possibly with an ":arch" suffix.
fn not_installed(wanted: &[&'static str], dpkg_query: &str) -> Vec<&'static str> {
    let installed: Vec<&str> = dpkg_query
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.trim() == "installed")
        .map(|(name, _)| name.split(':').next().unwrap_or(name))
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect()
}

/// `program` run as root: directly when we are root (CI), else through
/// `sudo -n` (which fails rather than asks for a password).
fn privileged(program: &str) -> Result<Cmd> {
    if is_root()? {
        Ok(Cmd::new(program))
    } else if on_path("sudo") {
        Ok(Cmd::new("sudo").args(["-n", "env", "DEBIAN_FRONTEND=noninteractive", program]))
    } else {
        Err("installing packages needs root (CI runs as root) or sudo".to_string())
    }
}

/// `apt-get <args>` as root, non-interactive, waiting for another apt/dpkg
/// run instead of failing on its lock.
fn apt_get(args: &[&str]) -> Result {
    privileged("apt-get")?
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-o", "DPkg::Lock::Timeout=600"])
        .args(args.iter().copied())
        .run()
}

/// `apt-get install -y <options> <packages>`.
fn apt_install(options: &[&str], packages: &[&str]) -> Result {
    let mut args = vec!["-q", "install", "-y"];
    args.extend_from_slice(options);
    args.extend_from_slice(packages);
    apt_get(&args)
}

fn is_root() -> Result<bool> {
    Ok(Cmd::new("id").arg("-u").stdout()?.trim() == "0")
}

fn rust_targets() -> Result {
    let installed = Cmd::new("rustup")
        .args(["target", "list", "--installed"])
        .stdout()?;
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    let missing: Vec<&str> = targets::rustup_targets()
        .into_iter()
        .filter(|t| !installed.contains(t))
        .collect();
    if missing.is_empty() {
        eprintln!("setup:   all {} present", targets::rustup_targets().len());
        return Ok(());
    }
    Cmd::new("rustup")
        .args(["target", "add"])
        .args(missing)
        .run()
}

fn rust_components() -> Result {
    let nightly_present = Cmd::new("rustup")
        .args(["toolchain", "list"])
        .stdout()?
        .lines()
        .any(|l| l.starts_with("nightly-"));
    if !nightly_present {
        let mut install =
            Cmd::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        for c in targets::NIGHTLY_COMPONENTS {
            install = install.args(["--component", c]);
        }
        install.run()?;
    }
    add_missing_components(None, targets::STABLE_COMPONENTS)?;
    add_missing_components(Some("nightly"), targets::NIGHTLY_COMPONENTS)?;
    // Miri builds its own sysroot on first use; doing it here keeps that
    // minute out of the timed Miri step and fails early if it cannot.
    Cmd::new("cargo")
        .args(["+nightly", "miri", "setup"])
        .run_with_timeout(Duration::from_secs(900))
}

/// The MSRV toolchain (`targets::MSRV_TOOLCHAIN`) and its targets, for the
/// CI's `rust-version` check.
fn msrv_toolchain() -> Result {
    let toolchain = targets::MSRV_TOOLCHAIN;
    let present = Cmd::new("rustup")
        .args(["toolchain", "list"])
        .stdout()?
        .lines()
        .any(|l| l.starts_with(&format!("{toolchain}-")));
    if !present {
        Cmd::new("rustup")
            .args(["toolchain", "install", toolchain, "--profile", "minimal"])
            .run()?;
    }
    let installed = Cmd::new("rustup")
        .args(["target", "list", "--installed", "--toolchain", toolchain])
        .stdout()?;
    let installed: Vec<&str> = installed.lines().map(str::trim).collect();
    let missing: Vec<&str> = targets::MSRV_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.contains(t))
        .collect();
    if missing.is_empty() {
        eprintln!(
            "setup:   {toolchain}: all {} targets present",
            targets::MSRV_TARGETS.len()
        );
        return Ok(());
    }
    Cmd::new("rustup")
        .args(["target", "add", "--toolchain", toolchain])
        .args(missing)
        .run()
}

/// `toolchain` None is the one active in the workspace (stable).
fn add_missing_components(toolchain: Option<&str>, wanted: &[&'static str]) -> Result {
    let mut list = Cmd::new("rustup").args(["component", "list", "--installed"]);
    if let Some(t) = toolchain {
        list = list.args(["--toolchain", t]);
    }
    let missing = components_missing(wanted, &list.stdout()?, &host_triple()?);
    if missing.is_empty() {
        eprintln!(
            "setup:   {} components present: {}",
            toolchain.unwrap_or("active"),
            wanted.join(" ")
        );
        return Ok(());
    }
    let mut add = Cmd::new("rustup").args(["component", "add"]).args(missing);
    if let Some(t) = toolchain {
        add = add.args(["--toolchain", t]);
    }
    add.run()
}

/// Which of `wanted` `rustup component list --installed` doesn't list.
/// Host components carry the host triple ("miri-x86_64-unknown-linux-gnu");
/// rust-src has none.
fn components_missing(wanted: &[&'static str], installed: &str, host: &str) -> Vec<&'static str> {
    wanted
        .iter()
        .copied()
        .filter(|c| {
            let with_host = format!("{c}-{host}");
            !installed
                .lines()
                .map(str::trim)
                .any(|l| l == *c || l == with_host)
        })
        .collect()
}

/// The host triple, as rustup names host components after it.
fn host_triple() -> Result<String> {
    let out = Cmd::new("rustc").arg("-vV").stdout()?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .ok_or_else(|| "`rustc -vV` printed no host line".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "x86_64-unknown-linux-gnu";

    #[test]
    fn packages_dpkg_does_not_list_as_installed_are_missing() {
        let out = "wine installed\n\
                   wine64 config-files\n\
                   qemu-user installed\n\
                   libc6-dev-i386-cross:all installed\n";
        let wanted = [
            "wine",
            "wine64",
            "qemu-user",
            "gcc-i686-linux-gnu",
            "libc6-dev-i386-cross",
        ];
        assert_eq!(
            not_installed(&wanted, out),
            ["wine64", "gcc-i686-linux-gnu"]
        );
    }

    #[test]
    fn nothing_is_missing_when_all_are_installed() {
        assert!(not_installed(&["wine"], "wine installed\n").is_empty());
    }

    #[test]
    fn components_match_with_or_without_host_suffix() {
        let installed = "cargo-x86_64-unknown-linux-gnu\n\
                         miri-x86_64-unknown-linux-gnu\n\
                         rust-std-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            components_missing(&["rust-src", "miri"], installed, HOST),
            ["rust-src"]
        );
        assert!(components_missing(&["rust-src"], "rust-src\n", HOST).is_empty());
        // "rust" is not installed just because "rust-std-..." is.
        assert_eq!(components_missing(&["rust"], installed, HOST), ["rust"]);
    }
}
