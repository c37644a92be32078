//! The guest architecture, as the program's ELF header names it.
//!
//! The runner reads the header of the program it is asked to run and picks
//! the QEMU binary, the sysroot, the CPU models and the model of the
//! architecture's rules from it, so one command line serves every
//! architecture. The plugin learns the result from the runner
//! ([`crate::plugin_args`]).
//!
//! The header fields are those of the System V ABI's ELF specification
//! ("ELF Header", `e_ident` and `e_machine`): bytes 0..4 are `\x7fELF`,
//! byte 4 (`EI_CLASS`) is 1 for 32-bit and 2 for 64-bit objects, byte 5
//! (`EI_DATA`) is 1 for little- and 2 for big-endian, and `e_machine` is the
//! 16-bit field at offset 18, in the object's own byte order. The machine
//! numbers are Linux's `include/uapi/linux/elf-em.h`.

use std::fmt;

/// `EM_PPC64`.
const EM_PPC64: u16 = 21;
/// `EM_ARM`: 32-bit Arm.
const EM_ARM: u16 = 40;
/// `EM_AARCH64`.
const EM_AARCH64: u16 = 183;
/// `EM_RISCV`: both RV32 and RV64; `EI_CLASS` tells them apart.
const EM_RISCV: u16 = 243;

/// Bytes of the header read: up to and including `e_machine`.
pub const HEADER_LEN: usize = 20;

/// A guest architecture the checker has a model for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// 64-bit Arm, little-endian (`aarch64`).
    Aarch64,
    /// 64-bit RISC-V, little-endian (`riscv64`).
    Riscv64,
    /// 32-bit Arm (ARMv7-A), little-endian (`arm`, as in `qemu-arm`).
    Arm,
    /// 64-bit POWER, little-endian (`ppc64le`).
    Ppc64le,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 4] = [Arch::Aarch64, Arch::Riscv64, Arch::Arm, Arch::Ppc64le];

    /// The name used on the command line, in plugin arguments and in QEMU's
    /// binary name (`qemu-NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
            Arch::Arm => "arm",
            Arch::Ppc64le => "ppc64le",
        }
    }

    /// The architecture called `name` (see [`Arch::name`]).
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Reads the architecture from the start of an ELF file. `bytes` may be
    /// the whole file or only its first [`HEADER_LEN`] bytes. An error says
    /// what is wrong, naming the architecture when it is one the checker
    /// does not model yet.
    pub fn from_elf_header(bytes: &[u8]) -> Result<Arch, String> {
        if bytes.len() < 4 || bytes[..4] != *b"\x7fELF" {
            return Err("not an ELF file (no \\x7fELF magic)".to_string());
        }
        if bytes.len() < HEADER_LEN {
            return Err(format!(
                "truncated ELF header ({} bytes, e_machine needs {HEADER_LEN})",
                bytes.len()
            ));
        }
        let class = match bytes[4] {
            1 => 32,
            2 => 64,
            c => return Err(format!("bad ELF class {c} (EI_CLASS must be 1 or 2)")),
        };
        let field = [bytes[18], bytes[19]];
        let (machine, little) = match bytes[5] {
            1 => (u16::from_le_bytes(field), true),
            2 => (u16::from_be_bytes(field), false),
            d => {
                return Err(format!(
                    "bad ELF data encoding {d} (EI_DATA must be 1 or 2)"
                ))
            }
        };
        let endian = if little { "little" } else { "big" };
        let unsupported = |what: &str| {
            Err(format!(
                "{what} ({class}-bit, {endian}-endian, e_machine {machine}) is not supported \
                 yet; the checker models aarch64, riscv64, arm (32-bit, little-endian) and ppc64le"
            ))
        };
        match (machine, class, little) {
            (EM_AARCH64, 64, true) => Ok(Arch::Aarch64),
            (EM_RISCV, 64, true) => Ok(Arch::Riscv64),
            (EM_ARM, 32, true) => Ok(Arch::Arm),
            (EM_PPC64, 64, true) => Ok(Arch::Ppc64le),
            (EM_AARCH64, _, _) => unsupported("AArch64 other than LP64 little-endian"),
            (EM_RISCV, _, _) => unsupported("RISC-V other than RV64 little-endian"),
            (EM_ARM, _, _) => unsupported("32-bit Arm other than little-endian ELF32"),
            (EM_PPC64, _, _) => unsupported("POWER other than 64-bit little-endian"),
            _ => unsupported("this machine"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first 20 bytes of a header: class, data encoding, machine.
    fn header(class: u8, data: u8, machine: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', class, data, 1, 0];
        h.extend([0; 8]);
        h.extend([2, 0]); // e_type ET_EXEC, little-endian
        let m = if data == 2 {
            machine.to_be_bytes()
        } else {
            machine.to_le_bytes()
        };
        h.extend(m);
        h
    }

    #[test]
    fn real_headers_name_their_architecture() {
        // The first 20 bytes of `aarch64-linux-gnu-gcc` and
        // `riscv64-linux-gnu-gcc` outputs (Debian 12), as `xxd` shows them.
        let aarch64 = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\xb7\x00";
        let riscv64 = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\xf3\x00";
        // `powerpc64le-linux-gnu-gcc` (Debian 12).
        let ppc64le = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x15\x00";
        assert_eq!(Arch::from_elf_header(ppc64le), Ok(Arch::Ppc64le));
        assert_eq!(Arch::from_elf_header(aarch64), Ok(Arch::Aarch64));
        assert_eq!(Arch::from_elf_header(riscv64), Ok(Arch::Riscv64));
        // `arm-linux-gnueabihf-gcc` (Debian 12): ELF32, little-endian, EM_ARM.
        let arm = b"\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x28\x00";
        assert_eq!(Arch::from_elf_header(arm), Ok(Arch::Arm));
        // A whole file's worth of bytes after the header changes nothing.
        let mut long = riscv64.to_vec();
        long.resize(4096, 0xff);
        assert_eq!(Arch::from_elf_header(&long), Ok(Arch::Riscv64));
    }

    #[test]
    fn unsupported_architectures_are_named_in_the_error() {
        let cases = [
            (header(1, 2, EM_ARM), "32-bit Arm other than little-endian"),
            (header(2, 2, EM_PPC64), "big-endian"),
            (header(1, 2, EM_PPC64), "POWER other than"),
            (header(1, 1, EM_RISCV), "RISC-V other than RV64"),
            (header(2, 2, EM_AARCH64), "AArch64 other than LP64"),
            (header(1, 1, EM_AARCH64), "32-bit"),
            (header(2, 1, 62), "e_machine 62"), // EM_X86_64
        ];
        for (bytes, want) in cases {
            let err = Arch::from_elf_header(&bytes).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
            assert!(err.contains("not supported yet"), "{err}");
        }
    }

    #[test]
    fn every_truncation_of_a_good_header_is_an_error() {
        let good = header(2, 1, EM_RISCV);
        assert_eq!(Arch::from_elf_header(&good), Ok(Arch::Riscv64));
        for n in 0..HEADER_LEN {
            let err = Arch::from_elf_header(&good[..n]).unwrap_err();
            let want = if n < 4 {
                "not an ELF file"
            } else {
                "truncated"
            };
            assert!(err.contains(want), "{n} bytes: {err}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_guess() {
        assert!(Arch::from_elf_header(b"#!/bin/sh\necho hello world\n")
            .unwrap_err()
            .contains("not an ELF file"));
        let mut bad_class = header(2, 1, EM_RISCV);
        bad_class[4] = 3;
        assert!(Arch::from_elf_header(&bad_class)
            .unwrap_err()
            .contains("EI_CLASS"));
        let mut bad_data = header(2, 1, EM_RISCV);
        bad_data[5] = 0;
        assert!(Arch::from_elf_header(&bad_data)
            .unwrap_err()
            .contains("EI_DATA"));
    }

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(Arch::from_name(a.name()), Some(a));
            assert_eq!(a.to_string(), a.name());
        }
        assert_eq!(Arch::from_name("armv7"), None);
    }
}
