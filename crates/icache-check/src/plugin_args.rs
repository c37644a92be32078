//! The argument string the runner passes to the plugin:
//! `-plugin PATH,arch=aarch64,dline=64,iline=64,idc=off,dic=off,ipipt=on`, or
//! `-plugin PATH,arch=riscv64` (RISC-V's rules have no cache lines), or
//! `-plugin PATH,arch=arm` (32-bit Arm takes no options), or
//! `-plugin PATH,arch=ppc64le,dline=128,iline=128,snoop=off` (POWER's
//! `AT_DCACHEBSIZE`, `AT_ICACHEBSIZE` and `PPC_FEATURE_ICACHE_SNOOP`).
//!
//! [`PluginArgs`] owns both directions, so the runner's formatter and the
//! plugin's parser cannot drift apart.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use crate::arch::Arch;
use crate::config::Config;

/// Largest line size accepted; the Arm ARM's CTR_EL0 fields allow up to
/// 2 KiB (a 4-bit log2 of words, but CWG-style sizes above this are not used).
const MAX_LINE: u64 = 2048;

/// What the runner tells the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginArgs {
    /// The guest architecture, whose model the plugin runs.
    pub arch: Arch,
    /// The cache geometry and feature bits to check against (AArch64 only).
    pub config: Config,
    /// RISC-V only: the program runs on one hart, so any `fence.i` covers
    /// every thread (`one_hart=on`).
    pub one_hart: bool,
    /// POWER only: `AT_HWCAP` has `PPC_FEATURE_ICACHE_SNOOP` (`snoop=on`);
    /// the block sizes are `config.dline` and `config.iline`.
    pub snoop: bool,
}

impl PluginArgs {
    /// The value of QEMU's `-plugin` option: the plugin's path followed by
    /// this argument list.
    pub fn plugin_option(&self, plugin: &Path) -> OsString {
        let mut s = OsString::from(plugin.as_os_str());
        s.push(format!(",{self}"));
        s
    }

    /// Parses the `key=value` strings QEMU hands the plugin (the comma
    /// separated list after the path, already split). A key left out keeps
    /// its value from [`PluginArgs::default`]; a key given twice, an unknown
    /// key, a malformed value or a cache key with `arch=riscv64` is an error
    /// that names it.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<PluginArgs, String> {
        let (mut dline, mut iline, mut idc, mut dic, mut ipipt) = (None, None, None, None, None);
        let (mut arch, mut one_hart, mut snoop) = (None, None, None);
        for arg in raw {
            let arg = arg.as_ref();
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| format!("plugin argument {arg} is not key=value"))?;
            let line = |v: &str| -> Result<u64, String> {
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("{key}={v} is not a number"))?;
                if !n.is_power_of_two() || !(4..=MAX_LINE).contains(&n) {
                    return Err(format!("{key}={n} is not a cache line size"));
                }
                Ok(n)
            };
            // QEMU's own boolean options accept these spellings.
            let flag = |v: &str| match v {
                "on" | "true" | "yes" => Ok(true),
                "off" | "false" | "no" => Ok(false),
                _ => Err(format!("{key}={v} is not on or off")),
            };
            let slot_set = match key {
                "arch" => arch
                    .replace(
                        Arch::from_name(value)
                            .ok_or_else(|| format!("arch={value} is not a known one"))?,
                    )
                    .is_some(),
                "one_hart" => one_hart.replace(flag(value)?).is_some(),
                "snoop" => snoop.replace(flag(value)?).is_some(),
                "dline" => dline.replace(line(value)?).is_some(),
                "iline" => iline.replace(line(value)?).is_some(),
                "idc" => idc.replace(flag(value)?).is_some(),
                "dic" => dic.replace(flag(value)?).is_some(),
                "ipipt" => ipipt.replace(flag(value)?).is_some(),
                _ => return Err(format!("unknown plugin argument {key}")),
            };
            if slot_set {
                return Err(format!("plugin argument {key} given twice"));
            }
        }
        let arch = arch.unwrap_or(Arch::Aarch64);
        if arch != Arch::Riscv64 && one_hart.is_some() {
            return Err(format!(
                "one_hart is RISC-V's; arch={arch} does not take it"
            ));
        }
        if arch != Arch::Ppc64le && snoop.is_some() {
            return Err(format!("snoop is POWER's; arch={arch} does not take it"));
        }
        if arch == Arch::Ppc64le && (idc, dic, ipipt) != (None, None, None) {
            return Err("idc, dic and ipipt are AArch64's; arch=ppc64le takes none".to_string());
        }
        if matches!(arch, Arch::Riscv64 | Arch::Arm)
            && (dline, iline, idc, dic, ipipt) != (None, None, None, None, None)
        {
            return Err(format!(
                "dline, iline, idc, dic and ipipt are AArch64's; arch={arch} takes none"
            ));
        }
        let d = PluginArgs::default().config;
        Ok(PluginArgs {
            arch,
            one_hart: one_hart.unwrap_or(false),
            snoop: snoop.unwrap_or(false),
            config: Config {
                dline: dline.unwrap_or(d.dline),
                iline: iline.unwrap_or(d.iline),
                idc: idc.unwrap_or(d.idc),
                dic: dic.unwrap_or(d.dic),
                pipt_icache: ipipt.unwrap_or(d.pipt_icache),
            },
        })
    }

    /// The expected form, for error messages.
    pub const USAGE: &'static str =
        "arch=aarch64,dline=N,iline=N,idc=on|off,dic=on|off,ipipt=on|off \
         or arch=riscv64[,one_hart=on] or arch=arm or arch=ppc64le,dline=N,iline=N,snoop=on|off";

    /// The arguments for a 32-bit Arm guest, which take no options.
    pub fn arm() -> PluginArgs {
        PluginArgs {
            arch: Arch::Arm,
            ..PluginArgs::default()
        }
    }

    /// The arguments for a POWER guest: the data and instruction block
    /// sizes and whether the instruction cache snoops.
    pub fn ppc64le(dblock: u64, iblock: u64, snoop: bool) -> PluginArgs {
        let d = PluginArgs::default();
        PluginArgs {
            arch: Arch::Ppc64le,
            snoop,
            config: Config {
                dline: dblock,
                iline: iblock,
                ..d.config
            },
            ..d
        }
    }

    /// The arguments for a RISC-V guest; `one_hart`: the program runs on
    /// one hart.
    pub fn riscv64(one_hart: bool) -> PluginArgs {
        PluginArgs {
            arch: Arch::Riscv64,
            one_hart,
            ..PluginArgs::default()
        }
    }
}

/// The runner's default model, `cortex-a72`, whose CTR_EL0 under QEMU 7.2 is
/// `0x8444_c004`: what the plugin assumes when loaded without arguments.
impl Default for PluginArgs {
    fn default() -> Self {
        PluginArgs {
            arch: Arch::Aarch64,
            config: Config::from_ctr_el0(0x8444_c004),
            one_hart: false,
            snoop: false,
        }
    }
}

/// The argument list without the path:
/// `arch=aarch64,dline=64,iline=64,idc=off,dic=off,ipipt=on`, or `arch=riscv64`.
impl fmt::Display for PluginArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let onoff = |b: bool| if b { "on" } else { "off" };
        if self.arch == Arch::Ppc64le {
            let c = self.config;
            let snoop = onoff(self.snoop);
            return write!(
                f,
                "arch=ppc64le,dline={},iline={},snoop={snoop}",
                c.dline, c.iline
            );
        }
        if self.arch != Arch::Aarch64 {
            write!(f, "arch={}", self.arch)?;
            if self.one_hart {
                f.write_str(",one_hart=on")?;
            }
            return Ok(());
        }
        let c = self.config;
        write!(
            f,
            "arch=aarch64,dline={},iline={},idc={},dic={},ipipt={}",
            c.dline,
            c.iline,
            onoff(c.idc),
            onoff(c.dic),
            onoff(c.pipt_icache)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<PluginArgs, String> {
        PluginArgs::parse(&s.split(',').collect::<Vec<_>>())
    }

    #[test]
    fn formatted_arguments_parse_back_to_the_same_config() {
        for (dline, iline) in [(4, 2048), (64, 64), (256, 256), (32, 64)] {
            for idc in [false, true] {
                for (dic, pipt_icache) in
                    [(false, false), (false, true), (true, false), (true, true)]
                {
                    let args = PluginArgs {
                        arch: Arch::Aarch64,
                        one_hart: false,
                        snoop: false,
                        config: Config {
                            dline,
                            iline,
                            idc,
                            dic,
                            pipt_icache,
                        },
                    };
                    let option = args.plugin_option(Path::new("/p/libicache_check.so"));
                    let option = option.to_str().unwrap();
                    let rest = option.strip_prefix("/p/libicache_check.so,").unwrap();
                    assert_eq!(parse_str(rest), Ok(args), "{option}");
                }
            }
        }
    }

    #[test]
    fn riscv64_arguments_parse_back_to_the_same_arch() {
        for one_hart in [false, true] {
            let args = PluginArgs::riscv64(one_hart);
            let option = args.plugin_option(Path::new("/p/libicache_check.so"));
            let rest = option
                .to_str()
                .unwrap()
                .strip_prefix("/p/libicache_check.so,");
            assert_eq!(parse_str(rest.unwrap()), Ok(args));
        }
    }

    #[test]
    fn ppc64le_arguments_parse_back_to_the_same_geometry() {
        for (d, i) in [(128, 128), (32, 64), (16, 2048)] {
            for snoop in [false, true] {
                let args = PluginArgs::ppc64le(d, i, snoop);
                let option = args.plugin_option(Path::new("/p/x.so"));
                let rest = option.to_str().unwrap().strip_prefix("/p/x.so,");
                assert_eq!(parse_str(rest.unwrap()), Ok(args));
            }
        }
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let args = PluginArgs {
            arch: Arch::Aarch64,
            config: Config::from_ctr_el0(0x8444_c004),
            one_hart: false,
            snoop: false,
        };
        let want = "arch=aarch64,dline=64,iline=64,idc=off,dic=off,ipipt=on";
        assert_eq!(args.to_string(), want);
        assert_eq!(PluginArgs::riscv64(false).to_string(), "arch=riscv64");
        assert_eq!(PluginArgs::arm().to_string(), "arch=arm");
        assert_eq!(parse_str("arch=arm"), Ok(PluginArgs::arm()));
        let want = "arch=riscv64,one_hart=on";
        assert_eq!(PluginArgs::riscv64(true).to_string(), want);
        let want = "arch=ppc64le,dline=128,iline=128,snoop=off";
        assert_eq!(PluginArgs::ppc64le(128, 128, false).to_string(), want);
    }

    #[test]
    fn arguments_without_arch_are_aarch64_ones() {
        let a = parse_str("dline=256,iline=256,idc=off,dic=off").unwrap();
        assert_eq!(a.arch, Arch::Aarch64);
        assert_eq!(a.config.dline, 256);
    }

    #[test]
    fn left_out_arguments_keep_the_defaults() {
        let d = PluginArgs::default();
        assert_eq!(PluginArgs::parse::<&str>(&[]), Ok(d));
        let a = parse_str("idc=on").unwrap();
        assert_eq!(
            a.config,
            Config {
                idc: true,
                ..d.config
            }
        );
    }

    #[test]
    fn bad_plugin_arguments_are_errors_that_name_them() {
        let cases = [
            ("dline=48,iline=64,idc=off,dic=off", "dline=48"),
            ("dline=2,iline=64,idc=off,dic=off", "dline=2"),
            ("dline=64,iline=4096,idc=off,dic=off", "iline=4096"),
            ("dline=x,iline=64,idc=off,dic=off", "dline=x"),
            ("dline=64,iline=64,idc=maybe,dic=off", "idc=maybe"),
            ("dline=64,iline=64,idc=off,dic=off,frob=1", "frob"),
            ("dline=64,dline=64,iline=64,idc=off,dic=off", "twice"),
            ("dline", "not key=value"),
            ("arch=armv7", "arch=armv7"),
            ("arch=arm,dline=64", "AArch64's"),
            ("arch=arm,one_hart=on", "RISC-V's"),
            ("arch=riscv64,arch=riscv64", "twice"),
            ("arch=riscv64,dline=64", "AArch64's"),
            ("one_hart=on", "RISC-V's"),
            ("arch=riscv64,one_hart=maybe", "one_hart=maybe"),
            ("ipipt=sometimes", "ipipt=sometimes"),
            ("arch=riscv64,ipipt=on", "AArch64's"),
            ("arch=ppc64le,idc=on", "AArch64's"),
            ("arch=ppc64le,one_hart=on", "RISC-V's"),
            ("snoop=on", "POWER's"),
            ("arch=ppc64le,dline=100", "dline=100"),
        ];
        for (text, want) in cases {
            let err = parse_str(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
