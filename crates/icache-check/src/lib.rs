//! `icache-check`: a QEMU TCG plugin that reports every instruction execution
//! a real AArch64 core could have fetched stale.
//!
//! QEMU runs self-modifying code correctly whatever maintenance the program
//! does, so tests under `qemu-user` pass even when a JIT forgets to clean or
//! invalidate. This plugin models the architecture's rules instead
//! ([`model`]) and reports each execution of guest-written code that is not
//! yet coherent for the executing vCPU.
//!
//! * [`aliases`]: which guest pages are views of the same file pages
//!   (double-mapped code), learnt from `memfd_create`, `mmap` and friends.
//! * [`arch`]: the guest architecture, read from the program's ELF header.
//! * [`arm32`]: the 32-bit Arm (ARMv7-A Linux) rules and the encodings they
//!   need.
//! * [`blocks`]: how a block of plain code is split into segments that one
//!   callback each checks.
//! * [`config`]: the cache geometry checked against, and CTR_EL0 decoding.
//! * [`decode`]: which A64 words are cache maintenance, barriers or `svc`.
//! * [`model`]: the AArch64 rules, as pure Rust driven by events.
//! * [`riscv`]: the RISC-V (rv64 Linux) rules and the encodings they need.
//! * [`power`]: the POWER (ppc64le Linux) rules and the encodings they need.
//! * [`shadow`]: the lock-free per-word store record the model reads.
//! * [`plugin_args`]: the runner-to-plugin argument string, both directions.
//! * [`summary`]: the summary line, its formatter and its parser.
//! * [`EXIT_VIOLATIONS`], [`EXIT_CHECKER_FAILED`]: the runner's own exit
//!   statuses.
//! * `plugin` (not in the docs' public API): the QEMU glue, built only into
//!   the `cdylib`.
//!
//! The runner binary `icache-check` (`src/main.rs`) starts `qemu-aarch64`,
//! `qemu-riscv64`, `qemu-arm` or `qemu-ppc64le` ([`arch`]) with this plugin;
//! see the crate's README for usage. `plugin_riscv`, `plugin_arm32` and
//! `plugin_power` (also not in the docs) are the riscv64, 32-bit Arm and
//! ppc64le glue, and `glue` what all four glue modules share (printing,
//! de-duplicated reports, the self-check verdict, recording a store).
//!
//! Licensed GPL-2.0-or-later because it links against QEMU's plugin API
//! bindings.

#![deny(missing_docs)]

// `arch`, `config`, `exit_status`, `plugin_args` and `summary` are also compiled
// into the runner binary and the integration tests with `#[path]`: linking
// this crate's rlib into an executable would drag in the plugin's
// `#[no_mangle]` entry points and their references to symbols that only QEMU
// provides. They depend on nothing but each other and `std`.
pub mod aliases;
pub mod arch;
pub mod arm32;
pub mod blocks;
pub mod config;
pub mod decode;
mod exit_status;
pub mod model;
pub mod plugin_args;
pub mod power;
pub mod riscv;
pub mod shadow;
pub mod summary;

pub use exit_status::{EXIT_CHECKER_FAILED, EXIT_VIOLATIONS};

/// The model against a brute-force reference on random event sequences.
#[cfg(test)]
mod reference_tests;

// The glue refers to symbols that only QEMU provides when it loads the plugin,
// so unit-test executables leave it out.
#[cfg(not(test))]
mod glue;
#[cfg(not(test))]
mod plugin;
#[cfg(not(test))]
mod plugin_arm32;
#[cfg(not(test))]
mod plugin_power;
#[cfg(not(test))]
mod plugin_riscv;
#[cfg(not(test))]
mod qemu_api;
