//! The wine prefix that runs `x86_64-pc-windows-gnu` test binaries.
//!
//! `.cargo/config.toml` points `WINEPREFIX` at `target/wine-prefix` (unless
//! the environment already sets one) and `cargo xtask` inherits that, so this
//! module prepares whichever prefix the runner will use.
//!
//! Rust 1.78+ `std` imports `ProcessPrng` from `bcryptprimitives.dll`, which
//! wine 8.0 (Debian 12) does not ship, so without help every Rust binary
//! fails to load (exit status 53). `tools/wine-processprng` is a stand-in DLL
//! that provides it; it is built here and placed in the prefix's system32.

use crate::cmd::{Cmd, Result};
use crate::targets::MINGW_GCC;
use crate::Workspace;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first start of a prefix (wineboot) takes 10-30 s; a hung one should
/// not hang the CI.
const WINEBOOT_LIMIT: Duration = Duration::from_secs(300);

pub fn prepare(ws: &Workspace) -> Result {
    let prefix = prefix(ws);
    if !prefix.join("system.reg").is_file() {
        eprintln!("setup:   creating wine prefix {}", prefix.display());
        boot(&prefix)?;
    }
    let system32 = prefix.join("drive_c/windows/system32");
    if !system32.is_dir() {
        return Err(format!(
            "{} is missing: the wine prefix looks broken; delete {} and rerun setup",
            system32.display(),
            prefix.display()
        ));
    }
    let dll = build_processprng(ws)?;
    install_if_changed(&dll, &system32.join("bcryptprimitives.dll"))?;
    eprintln!("setup:   wine prefix ready: {}", prefix.display());
    Ok(())
}

/// The prefix the runner will use: `WINEPREFIX` as cargo passes it to xtask
/// (from the environment or `.cargo/config.toml`), else the config's default.
fn prefix(ws: &Workspace) -> PathBuf {
    match std::env::var_os("WINEPREFIX") {
        Some(p) if !p.is_empty() => ws.root.join(p),
        _ => ws.root.join("target/wine-prefix"),
    }
}

fn wine_cmd(program: &str, prefix: &Path) -> Cmd {
    Cmd::new(program)
        .env("WINEPREFIX", prefix.display().to_string())
        .env("WINEDEBUG", "-all")
}

fn boot(prefix: &Path) -> Result {
    if let Some(parent) = prefix.parent() {
        fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    // An empty override disables the DLLs whose first use would offer to
    // download Mono and Gecko, which no test needs.
    let booted = wine_cmd("wineboot", prefix)
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .arg("--init")
        .run_with_timeout(WINEBOOT_LIMIT)
        // wineboot returns before the wineserver has written the registry;
        // wait for it to exit so the next wine start finds a finished prefix.
        .and_then(|()| {
            wine_cmd("wineserver", prefix)
                .arg("-w")
                .run_with_timeout(WINEBOOT_LIMIT)
        });
    if let Err(e) = booted {
        // Don't leave a wineserver behind, nor a half-made prefix that the
        // next run would take for a finished one.
        let _ = wine_cmd("wineserver", prefix).arg("-k").run();
        let _ = fs::remove_file(prefix.join("system.reg"));
        return Err(e);
    }
    Ok(())
}

/// Builds `bcryptprimitives.dll` into the target folder when its source is
/// newer than the last build; returns its path.
fn build_processprng(ws: &Workspace) -> Result<PathBuf> {
    let source = ws.root.join("tools/wine-processprng/processprng.c");
    let out_dir = ws.target_dir.join("wine-processprng");
    let dll = out_dir.join("bcryptprimitives.dll");
    let modified = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    let source_time =
        modified(&source).ok_or_else(|| format!("cannot read {}", source.display()))?;
    if modified(&dll).is_some_and(|built| built >= source_time) {
        return Ok(dll);
    }
    fs::create_dir_all(&out_dir).map_err(|e| format!("creating {}: {e}", out_dir.display()))?;
    Cmd::new(MINGW_GCC)
        .args(["-shared", "-O2", "-s", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(dll.display().to_string())
        .arg(source.display().to_string())
        .arg("-ladvapi32")
        .run()?;
    Ok(dll)
}

fn install_if_changed(from: &Path, to: &Path) -> Result {
    let new = fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    if fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    fs::write(to, new).map_err(|e| format!("writing {}: {e}", to.display()))
}
