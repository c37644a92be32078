//! Which of the runner's two plugins a QEMU loads, from the first line of
//! `qemu-ARCH --version` (`qemu-aarch64 version 10.0.2 (Debian 1:10.0.2+ds-...)`).
//!
//! QEMU loads a plugin only if the plugin's API version lies in QEMU's
//! [minimum, current] range (`plugins/loader.c`), and version 3 changed
//! `qemu_plugin_insn_data`, so one plugin cannot serve both sides:
//!
//! | QEMU | API versions it loads | plugin |
//! |---|---|---|
//! | 7.x, 8.x | 0 to 1 | API 1 (QEMU 7.2 tested) |
//! | 9.0 | 2 | none: error |
//! | 9.1 | 2 to 3 | none: error |
//! | 9.2, 10.0 | 2 to 4 | API 4 (QEMU 10.0.2 tested) |
//! | 10.1 and later | 2 to 5 and on | API 4 |
//!
//! Part of the runner (`src/main.rs`), and compiled into xtask with
//! `#[path]` (its setup checks the QEMU it builds); depends on `std` alone.

use std::fmt;

/// A QEMU release number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    /// Major release.
    pub major: u32,
    /// Minor release.
    pub minor: u32,
    /// Patch release (0 when QEMU prints only two numbers).
    pub patch: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The plugin API version a plugin is built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginApi {
    /// API version 1: QEMU 7.x and 8.x.
    V1,
    /// API version 4: QEMU 9.2 and later.
    V4,
}

/// The version in the first line of `qemu-ARCH --version`, or `None` if it
/// has none.
pub fn parse_version(output: &str) -> Option<QemuVersion> {
    let line = output.lines().next()?;
    let rest = &line[line.find(" version ")? + " version ".len()..];
    let number = rest.split_whitespace().next()?;
    let mut parts = number.split('.');
    let mut next = |required: bool| match parts.next() {
        Some(p) => {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        }
        None if required => None,
        None => Some(0),
    };
    let major = next(true)?;
    let minor = next(true)?;
    let patch = next(false)?;
    Some(QemuVersion {
        major,
        minor,
        patch,
    })
}

/// The plugin QEMU `v` loads, or why there is none.
pub fn plugin_api(v: QemuVersion) -> Result<PluginApi, String> {
    let at = |major, minor| QemuVersion {
        major,
        minor,
        patch: 0,
    };
    if v < at(7, 0) {
        Err(format!(
            "QEMU {v} is older than any QEMU icache-check supports; use QEMU 7.2 \
             (Debian 12's qemu-user) or QEMU 9.2 or later built with plugins (10.0.2 tested)"
        ))
    } else if v < at(9, 0) {
        Ok(PluginApi::V1)
    } else if v < at(9, 2) {
        Err(format!(
            "QEMU {v} offers plugin API version {}, for which icache-check has no plugin; \
             use QEMU 7.2 (Debian 12's qemu-user) or QEMU 9.2 or later (10.0.2 tested)",
            if v.minor == 0 { "2" } else { "2 to 3" }
        ))
    } else {
        Ok(PluginApi::V4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(major: u32, minor: u32, patch: u32) -> QemuVersion {
        QemuVersion {
            major,
            minor,
            patch,
        }
    }

    #[test]
    fn debian_version_lines_parse() {
        let bookworm = "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n\
                        Copyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n";
        assert_eq!(parse_version(bookworm), Some(v(7, 2, 22)));
        let built = "qemu-riscv64 version 10.0.2\nCopyright (c) 2003-2025 Fabrice Bellard\n";
        assert_eq!(parse_version(built), Some(v(10, 0, 2)));
    }

    #[test]
    fn a_two_number_version_has_patch_zero_and_a_suffix_is_ignored() {
        assert_eq!(parse_version("qemu-arm version 9.2 (x)"), Some(v(9, 2, 0)));
        assert_eq!(
            parse_version("qemu-arm version 10.1.50-rc1"),
            Some(v(10, 1, 50))
        );
    }

    #[test]
    fn output_without_a_version_is_none() {
        for bad in [
            "",
            "qemu-aarch64: unknown option",
            "version",
            "x version y.z",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_qemu_gets_the_plugin_its_loader_accepts() {
        let cases = [
            (v(6, 2, 0), None),
            (v(7, 0, 0), Some(PluginApi::V1)),
            (v(7, 2, 19), Some(PluginApi::V1)),
            (v(8, 2, 7), Some(PluginApi::V1)),
            (v(9, 0, 0), None),
            (v(9, 1, 3), None),
            (v(9, 2, 0), Some(PluginApi::V4)),
            (v(10, 0, 2), Some(PluginApi::V4)),
            (v(10, 1, 0), Some(PluginApi::V4)),
        ];
        for (version, want) in cases {
            assert_eq!(plugin_api(version).ok(), want, "QEMU {version}");
        }
    }

    #[test]
    fn an_unsupported_qemu_is_an_error_naming_the_ones_that_work() {
        for version in [v(6, 2, 0), v(9, 1, 0)] {
            let e = plugin_api(version).unwrap_err();
            assert!(e.contains(&version.to_string()), "{e}");
            assert!(e.contains("7.2") && e.contains("9.2"), "{e}");
        }
    }
}
