//! QEMU glue: turns TCG plugin callbacks (plugin API version 1 for
//! QEMU 7.2, version 4 for QEMU 9.2 and later: see [`crate::qemu_api`]) into
//! events for [`Model`].
//!
//! # What is instrumented, and why deciding it at translation time is sound
//!
//! * Every store gets a memory callback (`QEMU_PLUGIN_MEM_W`), except those
//!   addressed from the stack pointer ([`is_sp_based_memory_access`]; see the
//!   README's "Overhead" section). Loads that never write get none
//!   ([`never_stores`]): QEMU 7.2 would call a store callback on them too.
//!   QEMU emits the callback only for instructions that really access
//!   memory. The callback writes to the lock-free [`Shadow`] and takes no
//!   lock.
//! * Executions are watched only for maintenance, barrier and `svc`
//!   instructions (decided from the instruction word), for the instruction
//!   right after a `dc`/`ic` (to read its address register, see below), and
//!   for every instruction in a page the guest has stored to.
//! * In a block of plain code (no instruction of the first two kinds), the
//!   watched instructions get one callback per segment instead of one each
//!   ([`crate::blocks`]): the block's instructions up to the first one that
//!   may raise an exception, and so on. A segment whose every instruction is
//!   already coherent for the executing vCPU costs one callback and a few
//!   atomic loads per instruction: no lock, no hash, no walk down the
//!   shadow's tree.
//!
//! The last choice is made when QEMU translates a block, and an instruction
//! that is then already coherent for every vCPU (a vCPU started later starts
//! synchronized) is not watched either. That is sound because
//! in user mode QEMU write-protects every guest page it has translated code
//! from; the first store to such a page faults, and QEMU's handler
//! (`page_unprotect` -> `tb_invalidate_phys_page` in
//! `accel/tcg/translate-all.c`, QEMU 7.2) throws away every translation of that
//! page before the store completes. So code that runs after a store to its
//! page always runs from a new translation, made after our store callback
//! marked the page, and an instruction found coherent at translation is
//! checked again from its first execution after any store to its page. One
//! gap remains, documented in the README: a block translated by another
//! thread between a store and its callback.
//!
//! # Double-mapped memory
//!
//! A store through one view of a shared file mapping does not fault on
//! another view's translated page, so QEMU keeps running that view's old
//! translations, and the argument above does not hold there. Pages that
//! [`Aliases`] knows as views are therefore watched whole at every
//! translation, one callback per instruction and without the lock-free
//! shortcuts (which cache answers per guest address), and the model sees
//! their physical addresses (see `crate::aliases`).
//!
//! # Reading the address operand of `dc` / `ic`
//!
//! QEMU translates `dc cvau` and `ic ivau` as no-ops without a memory
//! access, so the callback reads the operand register `Xt` itself
//! ([`crate::qemu_api`]: through the plugin API on QEMU 9.2 and later, from
//! QEMU 7.2's `CPUARMState` through TCG's env register with API 1, where
//! `xregs[32]` follows `uint32_t regs[16]` (`target/arm/cpu.h`), so `Xn` is
//! at byte offset `64 + 8 n`).
//!
//! With API 1 the value in `CPUARMState` may be stale: the callback helper
//! is declared `TCG_CALL_NO_RWG`, so a register written earlier in the same
//! block may live only in a host register. The translation of `dc`/`ic` at
//! EL0 calls `helper_access_check_cp_reg` first (the `SCTLR_EL1.UCI`
//! check), which is a full call and stores every guest register back. The
//! plugin therefore reads `Xt` in the callback of the *next* instruction of
//! the block. When the `dc`/`ic` is the last instruction of its block, no
//! later write to `Xt` exists in that block, so TCG already stored it at its
//! last write, and the callback of the `dc`/`ic` itself reads it. Both
//! builds read at the same place: the `dc`/`ic` does not write `Xt`, so the
//! value is the same, and one placement keeps one code path.
//!
//! Self-check: every `svc` callback reads `X8`, and the following syscall
//! callback compares it with the syscall number QEMU reports. Any mismatch
//! (or no check at all) is printed as an error and makes the runner fail, so
//! a QEMU build with a different layout cannot pass silently.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};

use qemu_plugin::install::{Args, Info};
use qemu_plugin::plugin::{HasCallbacks, Register};
use qemu_plugin::sys::{
    qemu_plugin_cb_flags, qemu_plugin_id_t, qemu_plugin_insn, qemu_plugin_insn_vaddr,
    qemu_plugin_mem_is_store, qemu_plugin_mem_rw, qemu_plugin_mem_size_shift,
    qemu_plugin_meminfo_t, qemu_plugin_register_atexit_cb, qemu_plugin_register_vcpu_init_cb,
    qemu_plugin_register_vcpu_insn_exec_cb, qemu_plugin_register_vcpu_mem_cb,
    qemu_plugin_register_vcpu_syscall_cb, qemu_plugin_register_vcpu_syscall_ret_cb,
    qemu_plugin_register_vcpu_tb_trans_cb, qemu_plugin_tb, qemu_plugin_tb_get_insn,
    qemu_plugin_tb_n_insns,
};
use qemu_plugin::{register, PluginId};

use crate::aliases::Aliases;
use crate::blocks::segment_starts;
use crate::decode::{decode, is_sp_based_memory_access, never_stores, Insn};
use crate::glue::{outs, self_check_verdict, unread_registers_verdict, Reports};
use crate::model::Model;
use crate::plugin_args::PluginArgs;
use crate::qemu_api::{exec_cb_with_regs, insn_bytes, GuestReg, Regs};
use crate::shadow::{Page, Shadow, PAGE_SIZE};

/// What the callback of one translated instruction has to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Desc {
    pc: u64,
    /// The instruction word as translated: the one that runs.
    word: u32,
    insn: Insn,
    /// The instruction is in a stored-to page: check its execution.
    check: bool,
    /// `insn` is a `dc`/`ic` that ends its block: read its register now.
    read_own_operand: bool,
    /// The previous instruction was a `dc`/`ic`: apply it now.
    prev: Option<Insn>,
    /// The instruction is in a view of double-mapped memory.
    alias: bool,
}

/// One watched instruction of a [`Segment`], with its shadow page and word.
struct SegmentInsn {
    pc: u64,
    word: u32,
    page: &'static Page,
    w: usize,
}

/// The watched instructions of one segment of plain code
/// ([`crate::blocks`]), checked by one callback.
struct Segment {
    insns: Box<[SegmentInsn]>,
    /// vCPUs (indexes below 64) for which every instruction of the segment
    /// was found coherent. Segments are interned by the store identities of
    /// their words at translation, and QEMU translates a block again after
    /// any store to its page (see the module docs), so a translation's words
    /// keep those identities while it runs, and coherence of one store's data
    /// for one vCPU never ends: the set only grows.
    coherent_vcpus: AtomicU64,
}

struct Inner {
    model: Model,
    /// Callback descriptors, interned so retranslation does not leak.
    descs: HashMap<Desc, &'static Desc>,
    /// Segment descriptors, interned by their instructions' PCs, words and
    /// store identities at translation.
    segments: HashMap<Vec<(u64, u32, u64)>, &'static Segment>,
    reports: Reports,
    /// `X8` seen by each vCPU's last `svc`, for the register self-check.
    svc_x8: Vec<Option<u64>>,
    x8_checks: u64,
    x8_mismatches: u64,
    /// Register reads the plugin API refused (an error at exit).
    unread: u64,
}

struct State {
    inner: Mutex<Inner>,
    /// Stores go here without taking `inner`'s lock.
    shadow: Arc<Shadow>,
    /// Views of double-mapped memory. Lock order: `inner` first.
    aliases: RwLock<Aliases>,
    /// `aliases` is not empty: stores must look their address up.
    any_alias: AtomicBool,
}

static STATE: OnceLock<State> = OnceLock::new();

fn lock() -> Option<MutexGuard<'static, Inner>> {
    let st = STATE.get()?;
    Some(st.inner.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The names of `X0`..`X30` in QEMU's GDB stub (`gdb-xml/aarch64-core.xml`).
const X_NAMES: [&str; 31] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
    "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
    "x28", "x29", "x30",
];

/// Reads guest register `Xn` (31 reads as zero, as `XZR` in `dc`/`ic`);
/// `None` if the API could not read it.
///
/// # Safety
/// As [`Regs::read`].
unsafe fn xreg(regs: &Regs, n: u8) -> Option<u64> {
    let Some(&name) = X_NAMES.get(n as usize) else {
        return Some(0);
    };
    let reg = GuestReg {
        name,
        env_offset: 64 + 8 * n as usize,
        size: 8,
    };
    // SAFETY: as the caller's.
    unsafe { regs.read(reg) }
}

struct IcacheCheck;

impl HasCallbacks for IcacheCheck {}

impl Register for IcacheCheck {
    fn register_default(
        &mut self,
        id: PluginId,
        args: &Args,
        _info: &Info,
    ) -> qemu_plugin::Result<()> {
        let parsed = PluginArgs::parse(&args.raw).unwrap_or_else(|e| {
            eprintln!("icache-check: error: {e} (expected {})", PluginArgs::USAGE);
            std::process::exit(2);
        });
        if parsed.arch == crate::arch::Arch::Arm {
            crate::plugin_arm32::install(id);
            return Ok(());
        }
        if parsed.arch == crate::arch::Arch::Ppc64le {
            let c = parsed.config;
            let geometry = crate::power::Geometry {
                dblock: c.dline,
                iblock: c.iline,
                snoop: parsed.snoop,
            };
            crate::plugin_power::install(id, geometry);
            return Ok(());
        }
        if parsed.arch == crate::arch::Arch::Riscv64 {
            crate::plugin_riscv::install(id, parsed.one_hart);
            return Ok(());
        }
        let model = Model::new(parsed.config);
        let shadow = model.shadow();
        let inner = Inner {
            model,
            descs: HashMap::new(),
            segments: HashMap::new(),
            reports: Reports::default(),
            svc_x8: Vec::new(),
            x8_checks: 0,
            x8_mismatches: 0,
            unread: 0,
        };
        let _ = STATE.set(State {
            inner: Mutex::new(inner),
            shadow,
            aliases: RwLock::new(Aliases::default()),
            any_alias: AtomicBool::new(false),
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
        Ok(())
    }
}

register!(IcacheCheck);

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
    let mut prev = None;
    for i in 0..n {
        // SAFETY: i < n; the handle and its data live until the callback returns.
        let (handle, pc, word) = unsafe {
            let handle = qemu_plugin_tb_get_insn(tb, i);
            let pc = qemu_plugin_insn_vaddr(handle);
            let word = match insn_bytes(handle) {
                (4, bytes) => u32::from_le_bytes(bytes),
                _ => 0,
            };
            (handle, pc, word)
        };
        // SAFETY: registering a store callback; userdata is the PC as a number.
        unsafe {
            if !is_sp_based_memory_access(word) && !never_stores(word) {
                qemu_plugin_register_vcpu_mem_cb(
                    handle,
                    Some(mem_cb),
                    qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                    qemu_plugin_mem_rw::QEMU_PLUGIN_MEM_W,
                    pc as *mut c_void,
                );
            }
        }
        let insn = decode(word);
        let last = i + 1 == n;
        // An instruction already coherent for every vCPU stays so until the
        // next store to its page, and that store makes QEMU translate the
        // page again: it needs no check (see the module docs).
        let alias = physical(pc).is_some();
        let check =
            alias || shadow.page_is_stored(pc) && !g.model.coherent_for_every_vcpu(pc, word);
        let desc = Desc {
            pc,
            word,
            insn,
            check,
            read_own_operand: last && insn.address_register().is_some(),
            prev,
            alias,
        };
        prev = insn.address_register().map(|_| insn);
        block.push((handle, desc));
    }
    if !block.iter().any(|(_, d)| d.check) {
        // Only the maintenance, barrier and `svc` instructions to watch.
    } else if block.iter().all(|(_, d)| d.insn == Insn::Other && !d.alias) {
        watch_segments(&mut g, shadow, &block);
        return;
    }
    for (handle, desc) in block {
        if !(desc.check || g.model.needs_execution(desc.insn) || desc.prev.is_some()) {
            continue;
        }
        let interned: &'static Desc = g
            .descs
            .entry(desc)
            .or_insert_with(|| Box::leak(Box::new(desc)));
        // SAFETY: the descriptor is never freed, so the pointer stays valid.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(
                handle,
                Some(exec_shim),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_R_REGS,
                interned as *const Desc as *mut c_void,
            );
        }
    }
}

/// Watches a block of plain code (no instruction the model acts on) with
/// one callback per segment ([`crate::blocks`]) that has a watched
/// instruction, on the segment's first instruction.
fn watch_segments(g: &mut Inner, shadow: &'static Shadow, block: &[(*mut qemu_plugin_insn, Desc)]) {
    let words: Vec<u32> = block.iter().map(|(_, d)| d.word).collect();
    let starts = segment_starts(&words);
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(block.len());
        let key: Vec<(u64, u32, u64)> = block[start..end]
            .iter()
            .filter(|(_, d)| d.check)
            .filter_map(|(_, d)| {
                let (page, w) = shadow.page(d.pc)?;
                Some((d.pc, d.word, page.id(w)))
            })
            .collect();
        if key.is_empty() {
            continue;
        }
        let segment: &'static Segment = match g.segments.get(&key) {
            Some(s) => s,
            None => {
                let insns = key
                    .iter()
                    .filter_map(|&(pc, word, _)| {
                        let (page, w) = shadow.page(pc)?;
                        Some(SegmentInsn { pc, word, page, w })
                    })
                    .collect();
                let s: &'static Segment = Box::leak(Box::new(Segment {
                    insns,
                    coherent_vcpus: AtomicU64::new(0),
                }));
                g.segments.insert(key, s);
                s
            }
        };
        // SAFETY: the segment is never freed, so the pointer stays valid.
        unsafe {
            qemu_plugin_register_vcpu_insn_exec_cb(
                block[start].0,
                Some(segment_cb),
                qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
                segment as *const Segment as *mut c_void,
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
    // SAFETY: `info` comes straight from QEMU.
    let (store, shift) = unsafe {
        (
            qemu_plugin_mem_is_store(info),
            qemu_plugin_mem_size_shift(info),
        )
    };
    if !store {
        return;
    }
    if let Some(st) = STATE.get() {
        if st.any_alias.load(Acquire) {
            store_through_views(st, vcpu, vaddr, 1 << shift, pc as u64);
        } else {
            st.shadow.store(vcpu, vaddr, 1 << shift, pc as u64);
        }
    }
}

/// Records a store at its physical addresses, one page at a time (a store
/// that crosses a page can reach two different files).
fn store_through_views(st: &State, vcpu: c_uint, vaddr: u64, size: u64, pc: u64) {
    let aliases = st.aliases.read().unwrap_or_else(|e| e.into_inner());
    let end = vaddr.saturating_add(size);
    let mut a = vaddr;
    while a < end {
        let next = end.min((a | (PAGE_SIZE - 1)) + 1);
        let target = aliases.physical(a).unwrap_or(a);
        st.shadow.store(vcpu, target, next - a, pc);
        a = next;
    }
}

/// The physical address of `va` if its page is a view of double-mapped
/// memory ([`Aliases::physical`]).
fn physical(va: u64) -> Option<u64> {
    let st = STATE.get()?;
    if !st.any_alias.load(Acquire) {
        return None;
    }
    st.aliases
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .physical(va)
}

exec_cb_with_regs!(exec_shim => exec_cb);

unsafe extern "C" fn exec_cb(vcpu: c_uint, desc: *mut c_void, regs: Regs) {
    // SAFETY: `desc` is an interned, leaked `Desc` (see `tb_trans`).
    let d = unsafe { &*(desc as *const Desc) };
    // The hot path: an ordinary instruction in a stored-to page that is
    // already coherent for this vCPU needs neither the lock nor the model.
    if d.check && d.prev.is_none() && d.insn == Insn::Other && !d.alias {
        if let Some(st) = STATE.get() {
            if st.shadow.known_coherent(vcpu, d.pc) {
                return;
            }
        }
    }
    let Some(mut g) = lock() else { return };
    if let Some(prev) = d.prev {
        let rt = prev.address_register().unwrap_or(31);
        // SAFETY: `regs` comes from `exec_shim`, registered with R_REGS.
        match unsafe { xreg(&regs, rt) } {
            Some(addr) => g.maintenance(vcpu, prev, addr),
            None => g.unread += 1,
        }
    }
    if d.check {
        g.execute(vcpu, d.pc, d.word);
    }
    match d.insn {
        Insn::DcClean { rt, .. } | Insn::IcIvau { rt } => {
            if d.read_own_operand {
                // SAFETY: as above.
                match unsafe { xreg(&regs, rt) } {
                    Some(addr) => g.maintenance(vcpu, d.insn, addr),
                    None => g.unread += 1,
                }
            }
        }
        Insn::Svc => {
            // SAFETY: as above.
            let Some(x8) = (unsafe { xreg(&regs, 8) }) else {
                g.unread += 1;
                return;
            };
            let i = vcpu as usize;
            if g.svc_x8.len() <= i {
                g.svc_x8.resize(i + 1, None);
            }
            g.svc_x8[i] = Some(x8);
        }
        Insn::Other => {}
        other => g.model.maintenance(vcpu, other, 0),
    }
}

/// The callback of one segment of plain code: every watched instruction
/// of the segment runs now (see [`crate::blocks`]). The hot path, where the
/// segment is already known coherent for this vCPU, is one atomic load: no
/// lock, no hash, no walk down the shadow's tree.
unsafe extern "C" fn segment_cb(vcpu: c_uint, segment: *mut c_void) {
    // SAFETY: `segment` is an interned, leaked `Segment` (see `tb_trans`).
    let s = unsafe { &*(segment as *const Segment) };
    let bit = 1u64.checked_shl(vcpu).unwrap_or(0);
    if s.coherent_vcpus.load(Relaxed) & bit != 0 {
        return;
    }
    let coherent = |i: &SegmentInsn| Shadow::known_coherent_word(i.page, i.w, vcpu);
    if !s.insns.iter().all(coherent) {
        let Some(mut g) = lock() else { return };
        for i in s.insns.iter().filter(|i| !coherent(i)) {
            g.execute(vcpu, i.pc, i.word);
        }
        return;
    }
    s.coherent_vcpus.fetch_or(bit, Relaxed);
}

impl Inner {
    /// The address the model knows guest address `va` by, and the guest page
    /// an `ic` through it or a fetch from it is limited to: for a view of
    /// double-mapped memory, its physical address, and its page unless the
    /// instruction cache is PIPT (`crate::aliases`).
    fn locate(&self, va: u64) -> (u64, Option<u64>) {
        match physical(va) {
            None => (va, None),
            Some(p) => {
                let pipt = self.model.config().pipt_icache;
                (p, (!pipt).then_some(va & !(PAGE_SIZE - 1)))
            }
        }
    }

    /// Applies a `dc`/`ic` with operand `addr` (a guest address).
    fn maintenance(&mut self, vcpu: c_uint, insn: Insn, addr: u64) {
        let (addr, via) = self.locate(addr);
        let via = via.filter(|_| matches!(insn, Insn::IcIvau { .. }));
        self.model.maintenance_via(vcpu, insn, addr, via);
    }

    /// Lets the model check one execution, and prints its report the first
    /// time it is seen.
    fn execute(&mut self, vcpu: c_uint, pc: u64, word: u32) {
        let (at, via) = self.locate(pc);
        let Some(mut v) = self.model.execute_via(vcpu, at, via, word) else {
            return;
        };
        v.pc = pc;
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
    a4: u64,
    a5: u64,
    a6: u64,
    _a7: u64,
    _a8: u64,
) {
    let Some(mut g) = lock() else { return };
    if let Some(x8) = g.svc_x8.get_mut(vcpu as usize).and_then(Option::take) {
        g.x8_checks += 1;
        if x8 != num as u64 {
            g.x8_mismatches += 1;
        }
    }
    g.model.syscall(vcpu, num, [a1, a2, a3]);
    if let Some(st) = STATE.get() {
        let mut aliases = st.aliases.write().unwrap_or_else(|e| e.into_inner());
        aliases.syscall(vcpu, num, [a1, a2, a3, a4, a5, a6]);
    }
}

unsafe extern "C" fn syscall_ret(_id: qemu_plugin_id_t, vcpu: c_uint, num: i64, ret: i64) {
    if let Some(mut g) = lock() {
        g.model.syscall_return(vcpu, num, ret);
        if let Some(st) = STATE.get() {
            let mut aliases = st.aliases.write().unwrap_or_else(|e| e.into_inner());
            aliases.syscall_return(vcpu, num, ret);
            st.any_alias.store(!aliases.is_empty(), Release);
        }
    }
}

unsafe extern "C" fn at_exit(_id: qemu_plugin_id_t, _data: *mut c_void) {
    let Some(g) = lock() else { return };
    self_check_verdict("svc", g.x8_checks, g.x8_mismatches);
    unread_registers_verdict(g.unread);
    if let Some(st) = STATE.get() {
        if st.aliases.read().is_ok_and(|a| a.collision) {
            outs(&format!(
                "icache-check: error: the guest mapped memory at or above {:#x}, where the \
                 checker keeps double-mapped memory",
                crate::aliases::PHYS_BASE
            ));
        }
    }
    outs(&g.model.counts().to_string());
    outs(&g.model.class_counts().to_string());
}
