//! Running things: the guest under qemu (streamed into the parser), the
//! checker for the cross-check, strace for the race, callgrind on the host.

use super::*;

// ---------------------------------------------------------------- running

pub fn build_guest(ws: &Workspace) -> Result<PathBuf> {
    // wasmtime-internal-jit-icache-coherence 50 declares rust-version 1.97
    // but compiles with 1.95; see crates/icache-bench/Cargo.toml.
    Cmd::new("cargo")
        .dir(&ws.root)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            GUEST,
            "--target",
            TARGET,
        ])
        .args(["--features", "wasmtime-newest", "--ignore-rust-version"])
        .run()?;
    Ok(ws.target_dir.join(TARGET).join("release").join(GUEST))
}

/// qemu as `.cargo/config.toml` runs the guest target, with a CPU model.
pub fn qemu(ws: &Workspace, cpu: &str) -> Result<Cmd> {
    let runner = targets::runner(ws, TARGET)?;
    let (program, args) = runner.split_first().ok_or("empty qemu runner")?;
    Ok(Cmd::new(program)
        .args(args.iter().cloned())
        .args(["-cpu", cpu])
        .env_remove("QEMU_CPU"))
}

/// qemu's logging options: one instruction per translation block, no
/// chaining, and the log items the parser reads (see [`super::log`]).
pub const TRACE_ARGS: [&str; 3] = ["-singlestep", "-d", "in_asm,exec,nochain,strace"];

/// Runs the guest under qemu with the trace log on stderr, parsing it as it
/// streams.
pub fn trace(
    ws: &Workspace,
    guest: &Path,
    cpu: &str,
    mode: &[&str],
    numbers: &[usize],
) -> Result<Run> {
    let mut running = qemu(ws, cpu)?
        .args(TRACE_ARGS)
        .arg(guest.display().to_string())
        .args(mode.iter().copied())
        .args(numbers.iter().map(|n| n.to_string()))
        .spawn(Stdio::piped(), Stdio::piped())?;
    let stdout = running.take_stdout().ok_or("no stdout")?;
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let stderr = running.take_stderr().ok_or("no stderr")?;
    let mut parser = Parser::new();
    let mut result = Ok(());
    for line in BufReader::with_capacity(1 << 20, stderr).lines() {
        let line = line.map_err(|e| format!("reading qemu log: {e}"))?;
        if let Err(e) = parser.line(&line) {
            result = Err(e);
            break;
        }
    }
    if result.is_err() {
        running.kill();
    }
    let status = running.wait(None);
    let stdout = out_thread.join().map_err(|_| "stdout reader panicked")?;
    result?;
    let status = status?;
    if !status.success() {
        return Err(format!(
            "guest {mode:?} on {cpu} failed: {status}\n{stdout}"
        ));
    }
    assemble(parser, &stdout)
}

pub fn cross_check(
    ws: &Workspace,
    guest: &Path,
    cpu: &str,
    sizes: &[usize],
    run: &Run,
) -> CrossCheck {
    let checker = (|| {
        let bin = checker::built(ws)?;
        let out = Cmd::new(&bin.display().to_string())
            .args(["--cpu", cpu, "--"])
            .arg(guest.display().to_string())
            .arg("single")
            .args(sizes.iter().map(|s| s.to_string()))
            .env("QEMU_LD_PREFIX", targets::sysroot(ws, TARGET)?)
            .output(None)?;
        let text = out.stderr + &out.stdout;
        checker::Summary::last_in(&text)
            .map(|s| s.maintenance_ops)
            .ok_or_else(|| format!("no summary line from icache-check ({:?})", out.status))
    })();
    CrossCheck {
        ours: run.total_maintenance,
        checker,
    }
}

pub fn race(ws: &Workspace, guest: &Path, threads: usize) -> Race {
    let result = (|| {
        let qemu = qemu(ws, DEFAULT_CPU)?;
        let out = Cmd::new("strace")
            .args([
                "-f",
                "-qq",
                "-e",
                "trace=membarrier",
                "-e",
                "raw=membarrier",
            ])
            .args(qemu.argv())
            .arg(guest.display().to_string())
            .args(["race".to_string(), threads.to_string()])
            .env_remove("QEMU_CPU")
            .output(None)?;
        let status = out.status.ok_or("strace was killed")?;
        if !status.success() {
            return Err(format!("strace run failed: {status}"));
        }
        let log = out.stderr;
        let count = |cmd: &str| {
            log.lines()
                .filter(|l| l.contains(&format!("membarrier({cmd},")))
                .count() as u64
        };
        // strace prints 0 as `0` and other raw values in hex.
        let raw = |cmd: u64| match cmd {
            0 => "0".to_string(),
            n => format!("{n:#x}"),
        };
        Ok((
            count(&raw(MEMBARRIER_QUERY)),
            count(&raw(MEMBARRIER_REGISTER)),
            count(&raw(MEMBARRIER_SYNC_CORE)),
        ))
    })();
    Race { threads, result }
}

/// The host figure: instructions executed inside `ours_host` (one
/// `clear_cache` and one `pipeline_flush_mt`, errors returned) and inside
/// `empty_host` (same signature, returns `Ok(())`), counted by callgrind
/// with collection switched on only inside each function.
pub fn host(ws: &Workspace) -> Host {
    let result = (|| {
        Cmd::new("cargo")
            .dir(&ws.root)
            .args(["build", "--quiet", "--release", "-p", GUEST])
            .run()?;
        let bin = ws.target_dir.join("release").join(GUEST);
        let arch = Cmd::new("uname").arg("-m").stdout()?.trim().to_string();
        let mut counts = Vec::new();
        for function in ["ours_host", "empty_host"] {
            let out = ws.target_dir.join(format!("callgrind.{function}.out"));
            Cmd::new("valgrind")
                .args(["--quiet", "--tool=callgrind"])
                .arg(format!("--callgrind-out-file={}", out.display()))
                .arg(format!("--toggle-collect={function}"))
                .arg(bin.display().to_string())
                .arg("host")
                .stdout()?;
            let text = std::fs::read_to_string(&out)
                .map_err(|e| format!("reading {}: {e}", out.display()))?;
            let total = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("totals:")
                        .or_else(|| l.strip_prefix("summary:"))
                })
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| format!("no totals in {}", out.display()))?;
            counts.push(total);
        }
        Ok(HostCounts {
            arch,
            ours: counts[0],
            empty: counts[1],
        })
    })();
    Host { result }
}

pub fn qemu_version() -> String {
    Cmd::new("qemu-aarch64")
        .arg("--version")
        .stdout()
        .ok()
        .and_then(|s| s.lines().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

pub fn commit(ws: &Workspace) -> String {
    let head = Cmd::new("git")
        .dir(&ws.root)
        .args(["rev-parse", "--short", "HEAD"])
        .stdout()
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let dirty = Cmd::new("git")
        .dir(&ws.root)
        .args(["status", "--porcelain", "--", "crates/icache-coherence"])
        .stdout()
        .map(|s| !s.trim().is_empty())
        .unwrap_or(false);
    if dirty {
        format!("{head} with uncommitted changes in crates/icache-coherence")
    } else {
        head
    }
}
