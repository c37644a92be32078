//! QEMU glue for ppc64le guests (`arch=ppc64le`): turns TCG plugin callbacks
//! (API version 1 or 4: [`crate::qemu_api`]) into events for [`PowerModel`].
//!
//! * Every instruction that may store ([`may_store`]), except stores through
//!   `r1` ([`is_sp_based_store`]), gets a memory callback that records the
//!   store in the lock-free [`Shadow`].
//! * `sync` and `isync` get an execution callback, and so does every
//!   instruction in a page the guest stored to, unless the model says at
//!   translation that it is coherent for every thread, present and future
//!   ([`PowerModel::coherent_for_every_vcpu`]). Deciding this at translation
//!   is sound for the reason given in `plugin.rs`: QEMU user mode
//!   retranslates a page's code after any store to it.
//!
//! # The effective address of `dcbst` and `icbi`, without reading registers
//!
//! Both take `(RA|0) + RB`. Rather than reading guest registers (which TCG
//! may hold only in host registers within a block, see `plugin.rs`), the
//! plugin takes the address from QEMU's own memory access: QEMU 7.2
//! translates `dcbst` as a one-byte load from the effective address
//! (target/ppc/translate.c `gen_dcbst`: `gen_qemu_ld8u`), and `icbi` as a
//! call to `helper_icbi`, which loads a word from the effective address
//! rounded down to `dcache_line_size` (target/ppc/mem_helper.c: "to be
//! treated like a load (not a fetch) by the MMU"). Both loads report to the
//! plugin's memory callback of that instruction. The rounded `icbi` address
//! is in the same instruction block as the real one as long as the data
//! block is no larger than the instruction block; the plugin refuses other
//! geometries.
//!
//! Self-check: every executed `dcbst` / `icbi` is counted, and so is every
//! memory callback they produced. A difference (a QEMU build that stopped
//! reporting those loads) is printed as an error at exit and makes the
//! runner fail, so such a build cannot pass silently.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use qemu_plugin::sys::{
    qemu_plugin_cb_flags, qemu_plugin_id_t, qemu_plugin_insn_vaddr, qemu_plugin_mem_is_store,
    qemu_plugin_mem_rw, qemu_plugin_meminfo_t, qemu_plugin_register_atexit_cb,
    qemu_plugin_register_vcpu_init_cb, qemu_plugin_register_vcpu_insn_exec_cb,
    qemu_plugin_register_vcpu_mem_cb, qemu_plugin_register_vcpu_syscall_cb,
    qemu_plugin_register_vcpu_syscall_ret_cb, qemu_plugin_register_vcpu_tb_trans_cb,
    qemu_plugin_tb, qemu_plugin_tb_get_insn, qemu_plugin_tb_n_insns,
};

use crate::glue::{outs, record_store, Reports};
use crate::power::{decode, is_sp_based_store, may_store, Geometry, PowerModel, PpcInsn};
use crate::qemu_api::insn_bytes;
use crate::shadow::Shadow;

/// Userdata of the memory callback of a `dcbst` / `icbi`.
const DCBST: usize = 1;
const ICBI: usize = 2;

/// What the callback of one translated instruction has to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Desc {
    pc: u64,
    len: u64,
    insn: PpcInsn,
    /// The instruction is in a stored-to page: check its execution.
    check: bool,
}

struct Inner {
    model: PowerModel,
    descs: HashMap<Desc, &'static Desc>,
    reports: Reports,
    /// `dcbst` / `icbi` executions, and the memory callbacks they gave.
    cache_ops: u64,
    cache_op_accesses: u64,
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

/// Sets up the POWER model and registers its callbacks.
pub(crate) fn install(id: qemu_plugin::PluginId, geometry: Geometry) {
    if geometry.dblock > geometry.iblock {
        eprintln!(
            "icache-check: error: data block {} larger than instruction block {}: QEMU 7.2 \
             reports icbi's address rounded to the data block, so the checker cannot tell \
             which instruction block it named",
            geometry.dblock, geometry.iblock
        );
        std::process::exit(2);
    }
    let model = PowerModel::new(geometry);
    let shadow = model.shadow();
    let inner = Inner {
        model,
        descs: HashMap::new(),
        reports: Reports::default(),
        cache_ops: 0,
        cache_op_accesses: 0,
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
        let (handle, pc, len, word) = unsafe {
            let handle = qemu_plugin_tb_get_insn(tb, i);
            let pc = qemu_plugin_insn_vaddr(handle);
            let (len, bytes) = insn_bytes(handle);
            (handle, pc, len, u32::from_le_bytes(bytes))
        };
        let insn = decode(word);
        let mem = match insn {
            PpcInsn::Dcbst => Some((cache_op_cb as MemCb, DCBST)),
            PpcInsn::Icbi => Some((cache_op_cb as MemCb, ICBI)),
            _ if may_store(word) && !is_sp_based_store(word) => {
                Some((mem_cb as MemCb, pc as usize))
            }
            _ => None,
        };
        if let Some((cb, data)) = mem {
            // SAFETY: registering a memory callback; userdata is a number.
            unsafe {
                qemu_plugin_register_vcpu_mem_cb(
                    handle,
                    Some(cb),
                    qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                    qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_RW,
                    data as *mut c_void,
                );
            }
        }
        // A prefixed instruction is two words; both must be coherent.
        let words = (len / 4).max(1);
        let stored = (0..words).any(|k| shadow.page_is_stored(pc + 4 * k));
        let check = stored && !(0..words).all(|k| g.model.coherent_for_every_vcpu(pc + 4 * k));
        let watched = matches!(
            insn,
            PpcInsn::Sync | PpcInsn::Isync | PpcInsn::Dcbst | PpcInsn::Icbi
        );
        if !check && !watched {
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
        // SAFETY: the descriptor is never freed, so the pointer stays valid.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(
                handle,
                Some(exec_cb),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                interned as *const Desc as *mut c_void,
            );
        }
    }
}

type MemCb = unsafe extern "C" fn(c_uint, qemu_plugin_meminfo_t, u64, *mut c_void);

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

/// The load QEMU makes for a `dcbst` or `icbi`: its effective address.
unsafe extern "C" fn cache_op_cb(
    vcpu: c_uint,
    info: qemu_plugin_meminfo_t,
    vaddr: u64,
    op: *mut c_void,
) {
    // SAFETY: `info` comes straight from QEMU.
    if unsafe { qemu_plugin_mem_is_store(info) } {
        return;
    }
    let insn = match op as usize {
        DCBST => PpcInsn::Dcbst,
        _ => PpcInsn::Icbi,
    };
    let Some(mut g) = lock() else { return };
    g.cache_op_accesses += 1;
    g.model.execute_op(vcpu, insn, vaddr);
}

unsafe extern "C" fn exec_cb(vcpu: c_uint, desc: *mut c_void) {
    // SAFETY: `desc` is an interned, leaked `Desc` (see `tb_trans`).
    let d = unsafe { &*(desc as *const Desc) };
    // The hot path: an instruction already found coherent for this vCPU
    // needs neither the lock nor the model.
    if d.check && d.insn == PpcInsn::Other {
        if let Some(st) = STATE.get() {
            let last = d.pc + 4 * ((d.len / 4).max(1) - 1);
            if st.shadow.known_coherent(vcpu, d.pc) && st.shadow.known_coherent(vcpu, last) {
                return;
            }
        }
    }
    let Some(mut g) = lock() else { return };
    if d.check {
        for k in 0..(d.len / 4).max(1) {
            g.execute(vcpu, d.pc + 4 * k);
        }
    }
    match d.insn {
        // The effect comes with QEMU's load (`cache_op_cb`).
        PpcInsn::Dcbst | PpcInsn::Icbi => g.cache_ops += 1,
        insn => g.model.execute_op(vcpu, insn, 0),
    }
}

impl Inner {
    /// Lets the model check one execution, and prints its report the first
    /// time it is seen.
    fn execute(&mut self, vcpu: c_uint, pc: u64) {
        let Some(v) = self.model.execute(vcpu, pc) else {
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
    if let Some(mut g) = lock() {
        g.model.syscall(vcpu, num, [a1, a2, a3]);
    }
}

unsafe extern "C" fn syscall_ret(_id: qemu_plugin_id_t, vcpu: c_uint, num: i64, ret: i64) {
    if let Some(mut g) = lock() {
        g.model.syscall_return(vcpu, num, ret);
    }
}

unsafe extern "C" fn at_exit(_id: qemu_plugin_id_t, _data: *mut c_void) {
    let Some(g) = lock() else { return };
    if g.cache_ops != g.cache_op_accesses {
        outs(&format!(
            "icache-check: error: {} dcbst/icbi executed but QEMU reported {} of their \
             loads, so their addresses are unknown; this QEMU build is not supported",
            g.cache_ops, g.cache_op_accesses
        ));
    }
    outs(&g.model.counts().to_string());
    outs(&g.model.class_counts().to_string());
}
