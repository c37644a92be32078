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

/// The report classes (issue 11, item 4), each with its own count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The code can run stale on every core: not cleaned, or not
    /// invalidated.
    Maintenance,
    /// The executing thread passed no context synchronization event after
    /// the maintenance. Some JITs choose this for other threads deliberately.
    Sync,
    /// A patch site the architecture allows to run old or new: another
    /// thread's store replaced one instruction of the Arm ARM's list of
    /// concurrently modifiable instructions by another (B2.2.5). Not a
    /// violation.
    PatchSite,
}

impl Class {
    /// Every class, in the order of the class line.
    pub const ALL: [Class; 3] = [Class::Maintenance, Class::Sync, Class::PatchSite];

    /// The name used in the class line and by the runner's `--fail-on`.
    pub fn name(self) -> &'static str {
        match self {
            Class::Maintenance => "maintenance",
            Class::Sync => "sync",
            Class::PatchSite => "patch-site",
        }
    }

    /// The class called `name`, if any.
    pub fn from_name(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether the runner fails on this class without `--fail-on`: on every
    /// class the architecture forbids, not on allowed patch-site races.
    pub fn fails_by_default(self) -> bool {
        self != Class::PatchSite
    }
}

/// The per-class counts, printed on the line after the summary:
///
/// ```text
/// icache-check: by class: 1 maintenance, 0 sync, 2 patch-site
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassCounts {
    counts: [u64; 3],
}

const BY_CLASS: &str = "by class: ";

impl ClassCounts {
    /// The count of `class`.
    pub fn get(&self, class: Class) -> u64 {
        self.counts[class as usize]
    }

    /// Adds `n` to the count of `class`.
    pub fn add(&mut self, class: Class, n: u64) {
        self.counts[class as usize] += n;
    }

    /// Parses one class line, as `Display` writes it; any other line is
    /// `None`.
    pub fn parse_line(line: &str) -> Option<ClassCounts> {
        let rest = line
            .trim_end()
            .strip_prefix(PREFIX)?
            .strip_prefix(BY_CLASS)?;
        let mut out = ClassCounts::default();
        let mut parts = rest.split(", ");
        for class in Class::ALL {
            let (n, name) = parts.next()?.split_once(' ')?;
            if name != class.name() {
                return None;
            }
            out.add(class, n.parse().ok()?);
        }
        parts.next().is_none().then_some(out)
    }

    /// The sum of every class line in `text` (one per process).
    pub fn sum_in(text: &str) -> ClassCounts {
        let mut sum = ClassCounts::default();
        for c in text.lines().filter_map(ClassCounts::parse_line) {
            for class in Class::ALL {
                sum.add(class, c.get(class));
            }
        }
        sum
    }
}

impl fmt::Display for ClassCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{BY_CLASS}")?;
        for (i, class) in Class::ALL.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} {}", self.get(class), class.name())?;
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

    #[test]
    fn class_line_parses_back_and_sums() {
        let mut c = ClassCounts::default();
        c.add(Class::Maintenance, 1);
        c.add(Class::PatchSite, 2);
        let line = c.to_string();
        assert_eq!(
            line,
            "icache-check: by class: 1 maintenance, 0 sync, 2 patch-site"
        );
        assert_eq!(ClassCounts::parse_line(&line), Some(c));
        let log = format!("{line}\nicache-check: 1 violations, 4 code stores, 6 maintenance ops, 2 vCPUs\n{line}\n");
        assert_eq!(ClassCounts::sum_in(&log).get(Class::PatchSite), 4);
        assert_eq!(
            ClassCounts::parse_line("icache-check: by class: 1 maintenance"),
            None
        );
        assert_eq!(Counts::parse_line(&line), None);
    }

    #[test]
    fn class_names_round_trip_and_only_patch_sites_pass_by_default() {
        for class in Class::ALL {
            assert_eq!(Class::from_name(class.name()), Some(class));
            assert_eq!(class.fails_by_default(), class != Class::PatchSite);
        }
        assert_eq!(Class::from_name("stale"), None);
    }
}
