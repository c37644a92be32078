//! The runner's own exit statuses; every other status is the program's.

/// The runner's exit status when the plugin reported at least one violation,
/// whatever the program returned. 86 is unused by common tools and far from
/// the 128 + signal range.
pub const EXIT_VIOLATIONS: u8 = 86;

/// The runner's exit status when the checker could not run or could not
/// trust its own results: bad usage, QEMU or the plugin missing, no summary
/// printed, or the register self-check failed.
pub const EXIT_CHECKER_FAILED: u8 = 87;
