//! The summary line the plugin prints when a process exits, with its formatter
//! and its parser side by side:
//!
//! ```text
//! icache-check: 1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs
//! ```
//!
//! The runner parses it to choose its exit status; other tools (the project's
//! `xtask`) parse it to read the counts. Both go through [`Counts::parse_line`].

use std::fmt;

/// The prefix of every line the plugin prints.
pub const PREFIX: &str = "icache-check: ";

/// Counters printed in the summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Instruction executions reported as violations.
    pub violations: u64,
    /// Distinct guest stores at least one of whose words was later executed.
    pub code_stores: u64,
    /// Executed cache maintenance instructions (`dc` cleans and `ic`).
    pub maintenance_ops: u64,
    /// vCPUs (guest threads) started.
    pub vcpus: u64,
}

const FIELDS: [&str; 4] = ["violations", "code stores", "maintenance ops", "vCPUs"];

impl Counts {
    fn values(&self) -> [u64; 4] {
        [
            self.violations,
            self.code_stores,
            self.maintenance_ops,
            self.vcpus,
        ]
    }

    /// Parses one summary line, as [`Counts`]'s `Display` writes it. Any other
    /// line (a violation report, a warning, the program's own output) is
    /// `None`.
    pub fn parse_line(line: &str) -> Option<Counts> {
        let rest = line.trim_end().strip_prefix(PREFIX)?;
        let mut values = [0u64; 4];
        let mut parts = rest.split(", ");
        for (value, name) in values.iter_mut().zip(FIELDS) {
            let (n, field) = parts.next()?.split_once(' ')?;
            if field != name {
                return None;
            }
            *value = n.parse().ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        let [violations, code_stores, maintenance_ops, vcpus] = values;
        Some(Counts {
            violations,
            code_stores,
            maintenance_ops,
            vcpus,
        })
    }

    /// Every summary line in `text` (one per process that ran to its exit),
    /// in order.
    pub fn all_in(text: &str) -> impl Iterator<Item = Counts> + '_ {
        text.lines().filter_map(Counts::parse_line)
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        for (i, (value, name)) in self.values().into_iter().zip(FIELDS).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{value} {name}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_has_the_documented_form() {
        let c = Counts {
            violations: 1,
            code_stores: 4,
            maintenance_ops: 6,
            vcpus: 2,
        };
        let want = "icache-check: 1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs";
        assert_eq!(c.to_string(), want);
    }

    #[test]
    fn formatted_summary_parses_back() {
        for (i, big) in [0, 1, 7, u64::MAX].into_iter().enumerate() {
            let c = Counts {
                violations: big,
                code_stores: i as u64,
                maintenance_ops: big / 3,
                vcpus: 1 + i as u64,
            };
            assert_eq!(Counts::parse_line(&c.to_string()), Some(c));
        }
    }

    #[test]
    fn other_lines_are_not_summaries() {
        let lines = [
            "icache-check: violation: vCPU 0 executed 0x10: not cleaned (stored by pc 0x4 on vCPU 0)",
            "icache-check: error: guest register reads failed the self-check",
            "icache-check: 2 violation(s): exiting with 86 (the program's own status was 0)",
            "icache-check: 1 violations, 4 code stores, 6 maintenance ops",
            "icache-check: 1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs, 3 more",
            "icache-check: x violations, 4 code stores, 6 maintenance ops, 2 vCPUs",
            "1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs",
            "",
        ];
        for line in lines {
            assert_eq!(Counts::parse_line(line), None, "{line}");
        }
    }

    #[test]
    fn every_summary_in_a_log_is_found() {
        let log = "icache-check: violation: vCPU 0 executed 0x10: not cleaned\n\
                   icache-check: 2 violations, 4 code stores, 6 maintenance ops, 2 vCPUs\n\
                   hello\n\
                   icache-check: 1 violations, 0 code stores, 0 maintenance ops, 1 vCPUs\n";
        let v: Vec<u64> = Counts::all_in(log).map(|c| c.violations).collect();
        assert_eq!(v, [2, 1]);
    }
}
