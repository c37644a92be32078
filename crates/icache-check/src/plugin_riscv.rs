//! QEMU glue for riscv64 guests (`arch=riscv64`): turns TCG plugin callbacks
//! (API version 1 or 4: [`crate::qemu_api`]) into events for [`RiscvModel`].
//!
//! * Every instruction that may store ([`may_store`]), except stores through
//!   `sp` ([`is_sp_based_store`]), gets a memory callback that records the
//!   store in the lock-free [`Shadow`].
//! * `fence.i` and `ecall` get an execution callback, and so does every
//!   instruction in a page the guest stored to, unless the model says at
//!   translation that it is coherent for every thread, present and future
//!   ([`RiscvModel::coherent_for_every_vcpu`]). Deciding this at translation
//!   is sound for the reason given in `plugin.rs`: QEMU user mode
//!   retranslates a page's code after any store to it.
//! * An instruction is 2 or 4 bytes at any 2-byte boundary; the check covers
//!   every shadow word its bytes touch.
//!
//! # `riscv_flush_icache` and the register reads
//!
//! QEMU 7.2 answers syscall 259 in `cpu_loop` (linux-user/riscv/cpu_loop.c:
//! "riscv_flush_icache_syscall is a no-op in QEMU") before `do_syscall`, so
//! no syscall callback sees it (QEMU 10.0 still does). The `ecall`'s own
//! execution callback therefore reads `a7` (x17) and `a0`..`a2` (x10..x12)
//! ([`crate::qemu_api`]: through the plugin API on QEMU 9.2 and later; with
//! API 1 from QEMU 7.2's `CPURISCVState`, which begins with
//! `target_ulong gpr[32]`, so `xN` is at byte offset `8 N`). The callback is
//! registered with `QEMU_PLUGIN_CB_R_REGS` so that TCG stores the guest
//! registers before the call.
//!
//! Self-check: for every `ecall` that QEMU does pass to `do_syscall`, the
//! syscall callback compares the number and the first three arguments it
//! reports with the `a7` and `a0`..`a2` read at the `ecall`. Any mismatch is
//! printed as an error at exit and makes the runner fail (exit 87), so a
//! QEMU build with another layout, or a register not yet written back to
//! the register file, cannot pass silently.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use qemu_plugin::sys::{
    qemu_plugin_cb_flags, qemu_plugin_id_t, qemu_plugin_insn_vaddr, qemu_plugin_mem_rw,
    qemu_plugin_meminfo_t, qemu_plugin_register_atexit_cb, qemu_plugin_register_vcpu_init_cb,
    qemu_plugin_register_vcpu_insn_exec_cb, qemu_plugin_register_vcpu_mem_cb,
    qemu_plugin_register_vcpu_syscall_cb, qemu_plugin_register_vcpu_syscall_ret_cb,
    qemu_plugin_register_vcpu_tb_trans_cb, qemu_plugin_tb, qemu_plugin_tb_get_insn,
    qemu_plugin_tb_n_insns,
};

use crate::glue::{outs, record_store, self_check_verdict, unread_registers_verdict, Reports};
use crate::qemu_api::{exec_cb_with_regs, insn_bytes, GuestReg, Regs};
use crate::riscv::{decode, is_sp_based_store, may_store, sysno, RiscvModel, RvInsn};
use crate::shadow::Shadow;

/// Guest registers read at an `ecall`.
const A0: usize = 10;
const A7: usize = 17;

/// What the callback of one translated instruction has to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Desc {
    pc: u64,
    len: u64,
    insn: RvInsn,
    /// The instruction is in a stored-to page: check its execution.
    check: bool,
}

struct Inner {
    model: RiscvModel,
    descs: HashMap<Desc, &'static Desc>,
    reports: Reports,
    /// `a7` and `a0`..`a2` at each vCPU's last `ecall`, for the self-check.
    ecall_regs: Vec<Option<[u64; 4]>>,
    checks: u64,
    mismatches: u64,
    /// Register reads the plugin API refused (an error at exit).
    unread: u64,
}

struct State {
    inner: Mutex<Inner>,
    shadow: Arc<Shadow>,
}

static STATE: OnceLock<State> = OnceLock::new();

fn lock() -> Option<MutexGuard<'static, Inner>> {
    let st = STATE.get()?;
    Some(st.inner.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The names of the argument registers `a0`..`a7` (`x10`..`x17`) in QEMU's
/// GDB stub (`gdb-xml/riscv-64bit-cpu.xml`), indexed from `a0`.
const A_NAMES: [&str; 8] = ["a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7"];

/// Reads guest register `xN`, one of `a0`..`a7`; `None` if the API could
/// not read it.
///
/// # Safety
/// As [`Regs::read`].
unsafe fn xreg(regs: &Regs, n: usize) -> Option<u64> {
    let reg = GuestReg {
        name: A_NAMES.get(n.checked_sub(A0)?)?,
        // QEMU 7.2's CPURISCVState begins with `target_ulong gpr[32]`.
        env_offset: 8 * n,
        size: 8,
    };
    // SAFETY: as the caller's.
    unsafe { regs.read(reg) }
}

/// Sets up the RISC-V model and registers its callbacks. `one_hart`: the
/// program runs on one hart.
pub(crate) fn install(id: qemu_plugin::PluginId, one_hart: bool) {
    let model = RiscvModel::new(one_hart);
    let shadow = model.shadow();
    let inner = Inner {
        model,
        descs: HashMap::new(),
        reports: Reports::default(),
        ecall_regs: Vec::new(),
        checks: 0,
        mismatches: 0,
        unread: 0,
    };
    let _ = STATE.set(State {
        inner: Mutex::new(inner),
        shadow,
    });
    // SAFETY: plain registrations of `extern "C"` callbacks with the
    // signatures the API headers (versions 1 and 4) declare.
    unsafe {
        qemu_plugin_register_vcpu_init_cb(id, Some(vcpu_init));
        qemu_plugin_register_vcpu_tb_trans_cb(id, Some(tb_trans));
        qemu_plugin_register_vcpu_syscall_cb(id, Some(syscall));
        qemu_plugin_register_vcpu_syscall_ret_cb(id, Some(syscall_ret));
        qemu_plugin_register_atexit_cb(id, Some(at_exit), std::ptr::null_mut());
    }
}

unsafe extern "C" fn vcpu_init(_id: qemu_plugin_id_t, vcpu: c_uint) {
    crate::qemu_api::vcpu_init();
    if let Some(mut g) = lock() {
        g.model.vcpu_start(vcpu);
    }
}

unsafe extern "C" fn tb_trans(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
    let Some(shadow) = STATE.get().map(|st| &*st.shadow) else {
        return;
    };
    let Some(mut g) = lock() else { return };
    // SAFETY: `tb` is valid for the duration of this callback.
    let n = unsafe { qemu_plugin_tb_n_insns(tb) };
    for i in 0..n {
        // SAFETY: i < n; the handle and its data live until the callback returns.
        let (handle, pc, len, bits) = unsafe {
            let handle = qemu_plugin_tb_get_insn(tb, i);
            let pc = qemu_plugin_insn_vaddr(handle);
            let (len, bytes) = insn_bytes(handle);
            (handle, pc, len, u32::from_le_bytes(bytes))
        };
        if may_store(bits, len) && !is_sp_based_store(bits, len) {
            // SAFETY: registering a store callback; userdata is the PC.
            unsafe {
                qemu_plugin_register_vcpu_mem_cb(
                    handle,
                    Some(mem_cb),
                    qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                    qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_W,
                    pc as *mut c_void,
                );
            }
        }
        let insn = decode(bits, len);
        let last = pc.wrapping_add(len.max(1) - 1);
        let stored = shadow.page_is_stored(pc) || shadow.page_is_stored(last);
        let check = stored && !g.model.coherent_for_every_vcpu(pc, len);
        if !check && insn == RvInsn::Other {
            continue;
        }
        let desc = Desc {
            pc,
            len,
            insn,
            check,
        };
        let interned: &'static Desc = g
            .descs
            .entry(desc)
            .or_insert_with(|| Box::leak(Box::new(desc)));
        // The `ecall` reads guest registers: TCG must store them first.
        let flags = if insn == RvInsn::Ecall {
            qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS
        } else {
            qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS
        };
        // SAFETY: the descriptor is never freed, so the pointer stays valid.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(
                handle,
                Some(exec_shim),
                flags,
                interned as *const Desc as *mut c_void,
            );
        }
    }
}

unsafe extern "C" fn mem_cb(
    vcpu: c_uint,
    info: qemu_plugin_meminfo_t,
    vaddr: u64,
    pc: *mut c_void,
) {
    if let Some(st) = STATE.get() {
        // SAFETY: `info` comes straight from QEMU.
        unsafe { record_store(&st.shadow, vcpu, info, vaddr, pc as u64) };
    }
}

exec_cb_with_regs!(exec_shim => exec_cb);

unsafe extern "C" fn exec_cb(vcpu: c_uint, desc: *mut c_void, regs: Regs) {
    // SAFETY: `desc` is an interned, leaked `Desc` (see `tb_trans`).
    let d = unsafe { &*(desc as *const Desc) };
    // The hot path: an instruction already found coherent for this vCPU
    // needs neither the lock nor the model.
    if d.check && d.insn == RvInsn::Other {
        if let Some(st) = STATE.get() {
            let last = d.pc.wrapping_add(d.len.max(1) - 1);
            if st.shadow.known_coherent(vcpu, d.pc) && st.shadow.known_coherent(vcpu, last) {
                return;
            }
        }
    }
    let Some(mut g) = lock() else { return };
    if d.check {
        g.execute(vcpu, d.pc, d.len);
    }
    match d.insn {
        RvInsn::FenceI => g.model.fence_i(vcpu),
        RvInsn::Ecall => {
            // SAFETY: `regs` comes from `exec_shim`, registered with R_REGS.
            let read = unsafe {
                [
                    xreg(&regs, A7),
                    xreg(&regs, A0),
                    xreg(&regs, A0 + 1),
                    xreg(&regs, A0 + 2),
                ]
            };
            let [Some(a7), Some(a0), Some(a1), Some(a2)] = read else {
                g.unread += 1;
                return;
            };
            let regs = [a7, a0, a1, a2];
            g.model.ecall(vcpu, regs[0], [regs[1], regs[2], regs[3]]);
            let i = vcpu as usize;
            if g.ecall_regs.len() <= i {
                g.ecall_regs.resize(i + 1, None);
            }
            // QEMU passes every other call to `do_syscall`, whose callback
            // checks these reads.
            g.ecall_regs[i] = (regs[0] != sysno::RISCV_FLUSH_ICACHE).then_some(regs);
        }
        RvInsn::Other => {}
    }
}

impl Inner {
    /// Lets the model check one execution, and prints its report the first
    /// time it is seen.
    fn execute(&mut self, vcpu: c_uint, pc: u64, len: u64) {
        let Some(v) = self.model.execute(vcpu, pc, len) else {
            return;
        };
        self.reports.report(&v);
    }
}

#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn syscall(
    _id: qemu_plugin_id_t,
    vcpu: c_uint,
    num: i64,
    a1: u64,
    a2: u64,
    a3: u64,
    _a4: u64,
    _a5: u64,
    _a6: u64,
    _a7: u64,
    _a8: u64,
) {
    let Some(mut g) = lock() else { return };
    if let Some(regs) = g.ecall_regs.get_mut(vcpu as usize).and_then(Option::take) {
        g.checks += 1;
        if regs != [num as u64, a1, a2, a3] {
            g.mismatches += 1;
        }
    }
    g.model.syscall(vcpu, num, [a1, a2, a3]);
}

unsafe extern "C" fn syscall_ret(_id: qemu_plugin_id_t, vcpu: c_uint, num: i64, ret: i64) {
    if let Some(mut g) = lock() {
        g.model.syscall_return(vcpu, num, ret);
    }
}

unsafe extern "C" fn at_exit(_id: qemu_plugin_id_t, _data: *mut c_void) {
    let Some(g) = lock() else { return };
    self_check_verdict("ecall", g.checks, g.mismatches);
    unread_registers_verdict(g.unread);
    outs(&g.model.counts().to_string());
    outs(&g.model.class_counts().to_string());
}
