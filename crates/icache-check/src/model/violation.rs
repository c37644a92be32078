//! What the model reports: the missing step and the stale execution.

use std::fmt;

use crate::summary::Class;

/// The step a violation was missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Missing {
    /// The stored data was never cleaned to the Point of Unification, or the
    /// clean never completed (no `dsb` after it).
    NotCleaned,
    /// No completed instruction-cache invalidation covers the data: the `ic`
    /// is missing, came before the clean completed, or was not completed by a
    /// `dsb`.
    NotInvalidated,
    /// The executing vCPU passed no context synchronization event after the
    /// invalidation completed.
    NoContextSync,
    /// RISC-V: no `fence.i` of this thread (after the migration opt-in), no
    /// `riscv_flush_icache` covering this thread and no membarrier
    /// SYNC_CORE came after the store ([`crate::riscv`]).
    NotFlushed,
    /// RISC-V: only a `fence.i` of this thread without the
    /// `PR_RISCV_SET_ICACHE_FLUSH_CTX` opt-in came after the store; the
    /// kernel may have moved the thread to a hart that did not run it.
    FenceIWithoutOptIn,
}

impl Missing {
    /// The phrase used in reports; the integration tests and users match on it.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::NotCleaned => "not cleaned",
            Missing::NotInvalidated => "not invalidated",
            Missing::NoContextSync => "no context synchronization on this vCPU",
            Missing::NotFlushed => "not flushed for this thread",
            Missing::FenceIWithoutOptIn => "only a fence.i without the migration opt-in",
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution of an instruction that a real core could have fetched stale.
/// For [`Class::PatchSite`] the stale instruction is one the architecture
/// allows, so the report is not a violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The vCPU that executed it.
    pub vcpu: u32,
    /// The instruction's address.
    pub pc: u64,
    /// The first step of the sequence that is missing for it.
    pub missing: Missing,
    /// The PC of the store that last wrote the instruction's bytes.
    pub store_pc: u64,
    /// The vCPU that made that store.
    pub store_vcpu: u32,
    /// A likely cause, when the model can tell more than `missing`.
    pub hint: Option<&'static str>,
    /// The report class; [`Class::PatchSite`] is an allowed race, not a
    /// violation.
    pub class: Class,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.class {
            Class::PatchSite => "allowed patch-site race",
            Class::Maintenance | Class::Sync => "violation",
        };
        write!(
            f,
            "icache-check: {what}: vCPU {} executed {:#x}: {} (stored by pc {:#x} on vCPU {})",
            self.vcpu, self.pc, self.missing, self.store_pc, self.store_vcpu
        )?;
        if let Some(hint) = self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// The hints printed after a violation.
impl super::Model {
    pub(super) fn hint(
        &self,
        id: u64,
        pc: u64,
        missing: Missing,
        early_ic: bool,
    ) -> Option<&'static str> {
        let word = pc & !3;
        let clean_pending = || {
            self.vcpus
                .iter()
                .flat_map(|vc| vc.pending_cleans.iter().flatten())
                .any(|&(a, i)| a == word && i == id)
        };
        let inval_pending = || {
            self.vcpus
                .iter()
                .flat_map(|vc| vc.pending_invals.iter().flatten())
                .any(|&(a, i, clean)| a == word && i == id && clean)
        };
        Some(match missing {
            Missing::NotCleaned if clean_pending() => {
                "a dc clean of this line was issued but no dsb completed it"
            }
            Missing::NotCleaned => "no dc clean covered this line after the store",
            Missing::NotInvalidated if early_ic => {
                "an ic ivau ran before the clean completed (missing dsb between dc and ic?)"
            }
            Missing::NotInvalidated if inval_pending() => {
                "an ic ivau of this line was issued but no dsb completed it"
            }
            Missing::NotInvalidated => "no ic ivau covered this line after the clean",
            Missing::NoContextSync => "needs an isb here, or membarrier SYNC_CORE from the writer",
            // RISC-V's model gives its own hints.
            Missing::NotFlushed | Missing::FenceIWithoutOptIn => return None,
        })
    }
}
