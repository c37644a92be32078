//! The argument string the runner passes to the plugin:
//! `-plugin PATH,dline=64,iline=64,idc=off,dic=off,ipipt=on`.
//!
//! [`PluginArgs`] owns both directions, so the runner's formatter and the
//! plugin's parser cannot drift apart.

use std::ffi::OsString;
use std::fmt;
use std::path::Path;

use crate::config::Config;

/// Largest line size accepted; the Arm ARM's CTR_EL0 fields allow up to
/// 2 KiB (a 4-bit log2 of words, but CWG-style sizes above this are not used).
const MAX_LINE: u64 = 2048;

/// What the runner tells the plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PluginArgs {
    /// The cache geometry and feature bits to check against.
    pub config: Config,
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
    /// key or a malformed value is an error that names it.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<PluginArgs, String> {
        let (mut dline, mut iline, mut idc, mut dic, mut ipipt) = (None, None, None, None, None);
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
        let d = PluginArgs::default().config;
        Ok(PluginArgs {
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
    pub const USAGE: &'static str = "dline=N,iline=N,idc=on|off,dic=on|off";
}

/// The runner's default model, `cortex-a72`, whose CTR_EL0 under QEMU 7.2 is
/// `0x8444_c004`: what the plugin assumes when loaded without arguments.
impl Default for PluginArgs {
    fn default() -> Self {
        PluginArgs {
            config: Config::from_ctr_el0(0x8444_c004),
        }
    }
}

/// The argument list without the path:
/// `dline=64,iline=64,idc=off,dic=off,ipipt=on`.
impl fmt::Display for PluginArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let onoff = |b: bool| if b { "on" } else { "off" };
        let c = self.config;
        write!(
            f,
            "dline={},iline={},idc={},dic={},ipipt={}",
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
                for dic in [false, true] {
                    for pipt_icache in [false, true] {
                        let args = PluginArgs {
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
    }

    #[test]
    fn the_format_is_the_documented_one() {
        let args = PluginArgs {
            config: Config::from_ctr_el0(0x8444_c004),
        };
        assert_eq!(
            args.to_string(),
            "dline=64,iline=64,idc=off,dic=off,ipipt=on"
        );
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
            ("ipipt=sometimes", "ipipt=sometimes"),
        ];
        for (text, want) in cases {
            let err = parse_str(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
