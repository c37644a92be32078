//! QEMU glue for 32-bit Arm guests (`arch=arm`): turns TCG plugin callbacks
//! (API version 1 or 4: [`crate::qemu_api`]) into events for [`Arm32Model`].
//!
//! * Every instruction but the plain loads and the stores addressed from
//!   `sp` ([`skips_store_callback`]) gets a memory callback that records its
//!   stores in the lock-free [`Shadow`] (QEMU 7.2 calls it on loads too;
//!   they return at once). QEMU calls it only for instructions that access
//!   memory.
//! * `isb` and `svc` get an execution callback, and so does every
//!   instruction in a page the guest stored to, unless the model says at
//!   translation that it is coherent for every thread, present and future
//!   ([`Arm32Model::coherent_for_every_vcpu`]). Deciding this at
//!   translation is sound for the reason given in `plugin.rs`: QEMU user
//!   mode retranslates a page's code after any store to it.
//! * An instruction is 2 or 4 bytes at any 2-byte boundary (QEMU reports
//!   each one's size); the check covers every shadow word its bytes touch.
//!   Whether a 4-byte instruction is A32 or T32 is taken from its block
//!   ([`block_is_thumb`]).
//!
//! # `cacheflush` and the register reads
//!
//! QEMU 7.2 answers `__ARM_NR_cacheflush` (`0x0f0002`) in `cpu_loop`
//! (linux-user/arm/cpu_loop.c: numbers above `ARM_NR_BASE` are handled
//! there, `cacheflush` as a no-op; upstream 7.2 leaves `r0` unchanged, and
//! Debian's 7.2+dfsg-7+deb12u18 returns 0, also for flags the kernel
//! refuses) before `do_syscall`, so no syscall callback sees it. The `svc`'s own execution
//! callback therefore reads `r7` and `r0`..`r2` ([`crate::qemu_api`]:
//! through the plugin API on QEMU 9.2 and later; with API 1 from QEMU 7.2's
//! `CPUARMState`, which begins with `uint32_t regs[16]` (target/arm/cpu.h),
//! so `rN` is at byte offset `4 N`). QEMU 10.0 still answers `cacheflush`
//! in `cpu_loop`. The `svc` callback is registered with
//! `QEMU_PLUGIN_CB_R_REGS`, which makes TCG store the guest registers to
//! `CPUARMState` before the call.
//!
//! Self-check: for every `svc` that QEMU passes to `do_syscall`, the
//! syscall callback compares the number and the first three arguments it
//! reports (32-bit values, which QEMU hands over sign-extended) with the
//! `r7` and `r0`..`r2` read at the `svc`. Any mismatch is printed as an
//! error at exit and makes the runner fail (exit 87), so a QEMU build with
//! another layout cannot pass silently.

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

use crate::arm32::{block_is_thumb, decode, skips_store_callback, sysno, Arm32Model, ArmInsn};
use crate::glue::{outs, record_store, self_check_verdict, unread_registers_verdict, Reports};
use crate::qemu_api::{exec_cb_with_regs, insn_bytes, GuestReg, Regs};
use crate::shadow::Shadow;

/// What the callback of one translated instruction has to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Desc {
    pc: u64,
    len: u64,
    insn: ArmInsn,
    /// The instruction is in a stored-to page: check its execution.
    check: bool,
}

struct Inner {
    model: Arm32Model,
    descs: HashMap<Desc, &'static Desc>,
    reports: Reports,
    /// `r7` and `r0`..`r2` at each vCPU's last `svc`, for the self-check.
    svc_regs: Vec<Option<[u32; 4]>>,
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

/// The names of `r0`..`r15` in QEMU's GDB stub (`gdb-xml/arm-core.xml`).
const R_NAMES: [&str; 16] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr",
    "pc",
];

/// Reads guest register `rN`; `None` if the API could not read it.
///
/// # Safety
/// As [`Regs::read`].
unsafe fn reg(regs: &Regs, n: usize) -> Option<u32> {
    let reg = GuestReg {
        name: R_NAMES.get(n)?,
        // QEMU 7.2's CPUARMState begins with `uint32_t regs[16]`.
        env_offset: 4 * n,
        size: 4,
    };
    // SAFETY: as the caller's.
    unsafe { regs.read(reg) }.map(|v| v as u32)
}

/// Sets up the 32-bit Arm model and registers its callbacks.
pub(crate) fn install(id: qemu_plugin::PluginId) {
    let model = Arm32Model::new();
    let shadow = model.shadow();
    let inner = Inner {
        model,
        descs: HashMap::new(),
        reports: Reports::default(),
        svc_regs: Vec::new(),
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
    let mut block = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < n; the handle and its data live until the callback returns.
        let insn = unsafe {
            let handle = qemu_plugin_tb_get_insn(tb, i);
            let pc = qemu_plugin_insn_vaddr(handle);
            let (len, bytes) = insn_bytes(handle);
            (handle, pc, len, u32::from_le_bytes(bytes))
        };
        block.push(insn);
    }
    let thumb = block_is_thumb(block.iter().map(|&(_, pc, len, _)| (pc, len)));
    for (handle, pc, len, bits) in block {
        // SAFETY: registering a store callback; userdata is the PC.
        unsafe {
            if !skips_store_callback(bits, len, thumb) {
                qemu_plugin_register_vcpu_mem_cb(
                    handle,
                    Some(mem_cb),
                    qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                    qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_W,
                    pc as *mut c_void,
                );
            }
        }
        let insn = decode(bits, len, thumb);
        let last = pc.wrapping_add(len.max(1) - 1);
        let stored = shadow.page_is_stored(pc) || shadow.page_is_stored(last);
        let check = stored && !g.model.coherent_for_every_vcpu(pc, len);
        if !check && insn == ArmInsn::Other {
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
        // The `svc` reads guest registers: TCG must store them first.
        let flags = if insn == ArmInsn::Svc {
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
    if d.check && d.insn == ArmInsn::Other {
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
        ArmInsn::Isb => g.model.isb(vcpu),
        ArmInsn::Svc => {
            // SAFETY: `regs` comes from `exec_shim`, registered with R_REGS.
            let read = unsafe { [reg(&regs, 7), reg(&regs, 0), reg(&regs, 1), reg(&regs, 2)] };
            let [Some(r7), Some(r0), Some(r1), Some(r2)] = read else {
                g.unread += 1;
                return;
            };
            let regs = [r7, r0, r1, r2];
            g.model.svc(vcpu, regs[0], [regs[1], regs[2], regs[3]]);
            let i = vcpu as usize;
            if g.svc_regs.len() <= i {
                g.svc_regs.resize(i + 1, None);
            }
            // QEMU passes numbers up to ARM_NR_BASE to `do_syscall`, whose
            // callback checks these reads; it answers the others itself.
            g.svc_regs[i] = (regs[0] <= sysno::ARM_NR_BASE).then_some(regs);
        }
        ArmInsn::Other => {}
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
    if let Some(regs) = g.svc_regs.get_mut(vcpu as usize).and_then(Option::take) {
        g.checks += 1;
        if regs != [num as u32, a1 as u32, a2 as u32, a3 as u32] {
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
    self_check_verdict("svc", g.checks, g.mismatches);
    unread_registers_verdict(g.unread);
    outs(&g.model.counts().to_string());
    outs(&g.model.class_counts().to_string());
}
