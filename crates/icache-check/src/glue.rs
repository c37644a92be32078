//! QEMU glue that every architecture's plugin module shares (`plugin.rs`
//! for AArch64, `plugin_riscv.rs`, `plugin_arm32.rs`, `plugin_power.rs`):
//! printing, the de-duplicated violation reports, the register self-check's
//! verdict, and recording a store reported by a memory callback. Each
//! module keeps its own state and callbacks; only what is the same for all
//! of them lives here, so that a change to it is made once.

use std::collections::HashSet;
use std::ffi::{c_uint, CString};

use qemu_plugin::sys::{
    qemu_plugin_mem_is_store, qemu_plugin_mem_size_shift, qemu_plugin_meminfo_t, qemu_plugin_outs,
};

use crate::model::{Missing, Violation};
use crate::shadow::Shadow;

/// Distinct violation lines printed before the rest are only counted.
const MAX_PRINTED: usize = 1000;

/// Prints one line to QEMU's plugin log (the runner shows it on stderr).
pub(crate) fn outs(text: &str) {
    if let Ok(c) = CString::new(format!("{text}\n")) {
        // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
        unsafe { qemu_plugin_outs(c.as_ptr()) };
    }
}

/// The violation lines printed so far: each distinct (vCPU, address,
/// missing step, store) once, and at most [`MAX_PRINTED`] of them. Every
/// violation is counted by the model whether or not it is printed.
#[derive(Default)]
pub(crate) struct Reports {
    printed: HashSet<(u32, u64, Missing, u64)>,
}

impl Reports {
    /// Prints `v` if it is new and the limit is not reached.
    pub(crate) fn report(&mut self, v: &Violation) {
        let key = (v.vcpu, v.pc, v.missing, v.store_pc);
        if self.printed.len() < MAX_PRINTED && self.printed.insert(key) {
            outs(&v.to_string());
            if self.printed.len() == MAX_PRINTED {
                outs("icache-check: further distinct violations are counted but not shown");
            }
        }
    }
}

/// Prints the verdict of a register self-check at exit: `checks` system
/// calls compared, `mismatches` of them wrong, on the instruction `insn`
/// (`svc`, `ecall`). A mismatch is an `error:` line, which makes the runner
/// exit with 87; no check at all is a warning.
pub(crate) fn self_check_verdict(insn: &str, checks: u64, mismatches: u64) {
    if mismatches != 0 {
        outs(&format!(
            "icache-check: error: guest register reads failed the self-check \
             ({mismatches} of {checks} {insn} checks wrong); this QEMU build is not supported"
        ));
    } else if checks == 0 {
        outs("icache-check: warning: the guest made no system call, so the register self-check did not run");
    }
}

/// Prints the error for guest register reads the plugin API refused
/// (`crate::qemu_api::Regs::read` gave `None`): the events they belonged to
/// were not modelled, so the run cannot be trusted.
pub(crate) fn unread_registers_verdict(unread: u64) {
    if unread != 0 {
        outs(&format!(
            "icache-check: error: {unread} guest register read(s) failed; this QEMU build is \
             not supported"
        ));
    }
}

/// Records in `shadow` the store a memory callback reports (`info` from
/// QEMU, the guest address `vaddr`, the storing instruction's `pc`); loads
/// are ignored.
///
/// # Safety
/// `info` must be the `qemu_plugin_meminfo_t` QEMU passed to the callback.
pub(crate) unsafe fn record_store(
    shadow: &Shadow,
    vcpu: c_uint,
    info: qemu_plugin_meminfo_t,
    vaddr: u64,
    pc: u64,
) {
    // SAFETY: `info` comes straight from QEMU (the caller's contract).
    let (store, shift) = unsafe {
        (
            qemu_plugin_mem_is_store(info),
            qemu_plugin_mem_size_shift(info),
        )
    };
    if store {
        shadow.store(vcpu, vaddr, 1 << shift, pc);
    }
}
