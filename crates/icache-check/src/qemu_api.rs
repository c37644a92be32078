//! What differs between the two QEMU plugin API versions the plugin is built
//! for, so that the four architectures' glue modules are the same code for
//! both.
//!
//! | feature | API | QEMU | what the plugin does |
//! |---|---|---|---|
//! | `qemu-api-v1` (default) | 1 | 7.2 (Debian 12's `qemu-user`) to 8.2 | reads guest registers from `CPUArchState` through TCG's env register (x86-64 hosts only) |
//! | `qemu-api-v4` | 4 | 9.2 to 10.x (10.0.2 tested) | reads guest registers with `qemu_plugin_read_register` |
//!
//! QEMU loads a plugin only if the plugin's `qemu_plugin_version` lies in
//! QEMU's [minimum, current] range (`plugins/loader.c`). QEMU 7.2 offers
//! version 1 alone; QEMU 10.0 offers 2 to 4, and version 3 changed
//! `qemu_plugin_insn_data` to copy into a caller's buffer, so one binary
//! cannot serve both. The runner carries one plugin of each version and
//! picks by `qemu-ARCH --version`.
//!
//! # Reading guest registers
//!
//! The glue reads registers only in instruction-execution callbacks that it
//! registers with `QEMU_PLUGIN_CB_R_REGS`, through a shim that
//! [`exec_cb_with_regs!`] defines around a callback taking a third argument,
//! [`Regs`]:
//!
//! * API 1 has no register access. TCG keeps the pointer to the guest
//!   `CPUArchState` in a fixed host register for the whole block
//!   (`TCG_AREG0`: `rbp` on x86-64, `tcg/i386/tcg-target.h`), and the
//!   callback is called straight from the generated code, so a naked shim
//!   passes that register on. Each architecture's glue knows where its
//!   registers lie in QEMU 7.2's `CPUArchState` ([`GuestReg::env_offset`]),
//!   and checks that against the syscall numbers QEMU reports (its
//!   self-check), so another layout cannot pass silently.
//! * API 4 reads by name (`qemu_plugin_get_registers`, the names of QEMU's
//!   GDB stub XML, e.g. `gdb-xml/aarch64-core.xml`) with
//!   `qemu_plugin_read_register`, which is valid in a callback registered
//!   with `QEMU_PLUGIN_CB_R_REGS` (`include/qemu/qemu-plugin.h`, QEMU 10.0).
//!   TCG writes every guest register back to `CPUArchState` before such a
//!   call (the helper is not `TCG_CALL_NO_RWG`), so the value is current.
//!   The handles are GDB register numbers (`plugins/api.c`), the same for
//!   every vCPU of the process; [`vcpu_init`] resolves them once.

#[cfg(feature = "qemu-api-v4")]
use std::ffi::c_void;

use qemu_plugin::sys::{qemu_plugin_insn, qemu_plugin_insn_data, qemu_plugin_insn_size};

#[cfg(all(feature = "qemu-api-v1", feature = "qemu-api-v4"))]
compile_error!(
    "features `qemu-api-v1` and `qemu-api-v4` exclude each other: build one plugin per API"
);

#[cfg(not(any(feature = "qemu-api-v1", feature = "qemu-api-v4")))]
compile_error!(
    "build with feature `qemu-api-v1` (QEMU 7.2 to 8.2) or `qemu-api-v4` (QEMU 9.2 and later)"
);

#[cfg(all(feature = "qemu-api-v1", not(target_arch = "x86_64")))]
compile_error!(
    "the plugin for QEMU's API version 1 reads guest registers through TCG's env register, \
     which it knows on x86-64 hosts only: build with `--no-default-features --features \
     qemu-api-v4` and use QEMU 9.2 or later"
);

/// One guest register, as each API finds it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuestReg {
    /// Its name in QEMU's GDB stub (API 4).
    #[cfg_attr(feature = "qemu-api-v1", allow(dead_code))]
    pub name: &'static str,
    /// Its byte offset in QEMU 7.2's `CPUArchState` (API 1).
    #[cfg_attr(feature = "qemu-api-v4", allow(dead_code))]
    pub env_offset: usize,
    /// Its size in bytes: 4 or 8.
    #[cfg_attr(feature = "qemu-api-v4", allow(dead_code))]
    pub size: usize,
}

/// Register access inside one instruction-execution callback (see the
/// module docs). Passed in a register by the API 1 shim, so it is one
/// pointer wide in both builds.
#[repr(transparent)]
pub(crate) struct Regs(#[cfg_attr(feature = "qemu-api-v4", allow(dead_code))] *const u8);

impl Regs {
    /// The value of `reg` for the vCPU whose callback this is, or `None`
    /// where the API cannot tell (an unknown name, a failed read): the
    /// callers' self-checks then count a mismatch.
    ///
    /// # Safety
    /// `self` must be the value the shim of [`exec_cb_with_regs!`] passed to
    /// the running callback, and that callback must be registered with
    /// `QEMU_PLUGIN_CB_R_REGS`.
    pub(crate) unsafe fn read(&self, reg: GuestReg) -> Option<u64> {
        #[cfg(feature = "qemu-api-v1")]
        {
            // SAFETY: the register lies inside `CPUArchState` (see each
            // architecture's glue for the layout), which the shim captured.
            let p = unsafe { self.0.add(reg.env_offset) };
            Some(unsafe {
                match reg.size {
                    4 => u64::from(std::ptr::read_volatile(p as *const u32)),
                    _ => std::ptr::read_volatile(p as *const u64),
                }
            })
        }
        #[cfg(feature = "qemu-api-v4")]
        {
            v4::read(reg.name)
        }
    }
}

/// Defines `$shim`, an `extern "C"` instruction-execution callback to
/// register with `QEMU_PLUGIN_CB_R_REGS`, that calls `$cb(vcpu, userdata,
/// regs)` with a [`Regs`] for the current vCPU.
macro_rules! exec_cb_with_regs {
    ($shim:ident => $cb:path) => {
        /// Entered from TCG-generated code; calls the callback with a
        /// [`crate::qemu_api::Regs`] (API 1: `rbp`, TCG_AREG0, is the guest
        /// `CPUArchState`; see `crate::qemu_api`).
        #[cfg(feature = "qemu-api-v1")]
        #[unsafe(naked)]
        unsafe extern "C" fn $shim(_vcpu: ::std::ffi::c_uint, _userdata: *mut ::std::ffi::c_void) {
            core::arch::naked_asm!("mov rdx, rbp", "jmp {cb}", cb = sym $cb)
        }

        /// Entered from TCG-generated code; calls the callback with a
        /// [`crate::qemu_api::Regs`] that reads through the plugin API.
        #[cfg(feature = "qemu-api-v4")]
        unsafe extern "C" fn $shim(vcpu: ::std::ffi::c_uint, userdata: *mut ::std::ffi::c_void) {
            // SAFETY: the callback's contract is the shim's.
            unsafe { $cb(vcpu, userdata, crate::qemu_api::Regs::current()) }
        }
    };
}
pub(crate) use exec_cb_with_regs;

impl Regs {
    /// The API 4 register access: it needs no pointer.
    #[cfg(feature = "qemu-api-v4")]
    pub(crate) fn current() -> Regs {
        Regs(std::ptr::null())
    }
}

/// Call at the start of every vCPU-init callback: API 4 resolves the
/// register names there, in the vCPU's context as
/// `qemu_plugin_get_registers` requires.
pub(crate) fn vcpu_init() {
    #[cfg(feature = "qemu-api-v4")]
    v4::resolve_names();
}

/// The bytes of a translated instruction: its size, and up to its first 4
/// bytes (the rest zero).
///
/// # Safety
/// `insn` must be a handle QEMU passed to the running translation callback.
pub(crate) unsafe fn insn_bytes(insn: *mut qemu_plugin_insn) -> (u64, [u8; 4]) {
    let mut bytes = [0u8; 4];
    // SAFETY: `insn` is valid for the duration of the callback.
    let size = unsafe { qemu_plugin_insn_size(insn) };
    let n = size.min(4);
    #[cfg(feature = "qemu-api-v1")]
    // SAFETY: API 1 returns a pointer to the instruction's `size` bytes.
    unsafe {
        let data = qemu_plugin_insn_data(insn) as *const u8;
        std::ptr::copy_nonoverlapping(data, bytes.as_mut_ptr(), n);
    }
    #[cfg(feature = "qemu-api-v4")]
    // SAFETY: API 3 and later copy at most `n` bytes into the buffer.
    unsafe {
        qemu_plugin_insn_data(insn, bytes.as_mut_ptr() as *mut c_void, n);
    }
    (size as u64, bytes)
}

#[cfg(feature = "qemu-api-v4")]
mod v4 {
    use std::collections::HashMap;
    use std::ffi::CStr;
    use std::sync::OnceLock;

    use qemu_plugin::sys::{
        qemu_plugin_get_registers, qemu_plugin_read_register, qemu_plugin_reg_descriptor,
        qemu_plugin_register, GArray, GByteArray,
    };

    // GLib, which every QEMU links and whose symbols the plugin sees when
    // QEMU loads it (`qemu_plugin_get_registers` returns a `GArray` the
    // caller frees; `qemu_plugin_read_register` appends to a `GByteArray`).
    unsafe extern "C" {
        fn g_array_free(array: *mut GArray, free_segment: i32) -> *mut u8;
        fn g_byte_array_new() -> *mut GByteArray;
        fn g_byte_array_free(array: *mut GByteArray, free_segment: i32) -> *mut u8;
    }

    /// Register name to handle (a GDB register number plus one, as an
    /// opaque pointer: `plugins/api.c`).
    static HANDLES: OnceLock<HashMap<String, usize>> = OnceLock::new();

    pub(super) fn resolve_names() {
        HANDLES.get_or_init(|| {
            let mut map = HashMap::new();
            // SAFETY: called in a vCPU-init callback (vCPU context); the
            // array holds `len` descriptors whose names live as long as QEMU.
            unsafe {
                let array = qemu_plugin_get_registers();
                if array.is_null() {
                    return map;
                }
                let descs = (*array).data as *const qemu_plugin_reg_descriptor;
                for i in 0..(*array).len as usize {
                    let d = *descs.add(i);
                    if d.name.is_null() {
                        continue;
                    }
                    if let Ok(name) = CStr::from_ptr(d.name).to_str() {
                        map.entry(name.to_string()).or_insert(d.handle as usize);
                    }
                }
                g_array_free(array, 1);
            }
            map
        });
    }

    pub(super) fn read(name: &str) -> Option<u64> {
        let handle = *HANDLES.get()?.get(name)?;
        // SAFETY: a fresh GByteArray, freed below; the handle came from
        // `qemu_plugin_get_registers`, and the caller is a callback
        // registered with QEMU_PLUGIN_CB_R_REGS.
        unsafe {
            let buf = g_byte_array_new();
            let n = qemu_plugin_read_register(handle as *mut qemu_plugin_register, buf);
            let value = if n > 0 && n as usize <= 8 && (*buf).len as usize >= n as usize {
                let mut bytes = [0u8; 8];
                std::ptr::copy_nonoverlapping((*buf).data, bytes.as_mut_ptr(), n as usize);
                // Every guest the checker supports is little-endian, and
                // the value is in the target's byte order.
                Some(u64::from_le_bytes(bytes))
            } else {
                None
            };
            g_byte_array_free(buf, 1);
            value
        }
    }
}
