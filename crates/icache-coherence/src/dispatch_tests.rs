//! `dispatch` and the `Backend` defaults, driven by fake backends that
//! record what they are asked to do: on any host, and under Miri.

use std::cell::RefCell;
use std::vec::Vec;

use crate::backends::Backend;
use crate::dispatch;
use crate::error::{Error, ErrorKind};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Fast(usize, usize),
    Full(usize, usize),
    Ranges(Vec<(usize, usize)>),
    Flush,
}

std::thread_local! {
    static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
}

fn record(call: Call) {
    CALLS.with(|c| c.borrow_mut().push(call));
}

/// The calls recorded on this thread since the last `take`.
fn take() -> Vec<Call> {
    CALLS.with(|c| core::mem::take(&mut *c.borrow_mut()))
}

/// A line-stepping backend whose fast path accepts only ranges that start
/// at or above `0x1000` (as AArch64's accepts only a known CTR_EL0), and
/// which keeps every default it can.
struct Stepping;

impl Backend for Stepping {
    const MECHANISM: &'static str = "fake stepping";
    const PIPELINE_MECHANISM: &'static str = "fake flush";

    unsafe fn clear_cache_fast(start: usize, len: usize, last: usize) -> bool {
        assert_eq!(
            Some(last),
            start.checked_add(len - 1),
            "the fast path's len and last agree"
        );
        record(Call::Fast(start, last));
        start >= 0x1000
    }

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        record(Call::Full(start, len));
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        record(Call::Flush);
        Err(Error::new(
            ErrorKind::Unsupported,
            "fake",
            None,
            "no broadcast",
        ))
    }
}

/// An OS-call-per-range backend with every default.
struct PerRange;

impl Backend for PerRange {
    const MECHANISM: &'static str = "fake per range";
    const PIPELINE_MECHANISM: &'static str = "fake flush";

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        record(Call::Full(start, len));
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        record(Call::Flush);
        Ok(())
    }
}

/// A whole-address-space backend (one barrier covers everything).
struct Whole;

impl Backend for Whole {
    const MECHANISM: &'static str = "fake barrier";
    const PIPELINE_MECHANISM: &'static str = "fake none";
    const WHOLE_ADDRESS_SPACE: bool = true;
    const MAINTENANCE_NEEDED: bool = false;
    const PIPELINE_FLUSH_NEEDED: bool = false;

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        record(Call::Full(start, len));
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Ok(())
    }
}

/// A backend whose batch records the ranges it is given.
struct Batching;

impl Backend for Batching {
    const MECHANISM: &'static str = "fake batching";
    const PIPELINE_MECHANISM: &'static str = "fake flush";

    unsafe fn clear_cache(start: usize, len: usize) -> Result<(), Error> {
        record(Call::Full(start, len));
        Ok(())
    }

    unsafe fn clear_cache_ranges(
        ranges: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), Error> {
        record(Call::Ranges(ranges.collect()));
        Ok(())
    }

    fn pipeline_flush_mt() -> Result<(), Error> {
        Ok(())
    }
}

#[test]
fn an_accepted_fast_path_finishes_the_call_without_the_slow_path() {
    take();
    assert_eq!(
        unsafe { dispatch::clear_cache::<Stepping>(0x1000, 8) },
        Ok(())
    );
    assert_eq!(take(), [Call::Fast(0x1000, 0x1007)]);
}

#[test]
fn a_declined_fast_path_runs_the_full_call_once() {
    take();
    assert_eq!(
        unsafe { dispatch::clear_cache::<Stepping>(0x800, 8) },
        Ok(())
    );
    assert_eq!(take(), [Call::Fast(0x800, 0x807), Call::Full(0x800, 8)]);
}

#[test]
fn zero_length_touches_nothing_whatever_the_pointer() {
    take();
    for start in [0, 1, 0x1000, usize::MAX] {
        assert_eq!(
            unsafe { dispatch::clear_cache::<Stepping>(start, 0) },
            Ok(())
        );
        assert_eq!(
            unsafe { dispatch::clear_cache::<PerRange>(start, 0) },
            Ok(())
        );
    }
    assert_eq!(take(), []);
}

#[test]
fn a_wrapping_range_is_refused_before_any_backend_method() {
    take();
    for (start, len) in [(usize::MAX, 2), (usize::MAX - 3, 8), (2, usize::MAX)] {
        for result in [
            unsafe { dispatch::clear_cache::<Stepping>(start, len) },
            unsafe { dispatch::clear_cache::<PerRange>(start, len) },
            unsafe { dispatch::clear_cache::<Whole>(start, len) },
        ] {
            assert_eq!(
                result.map_err(|e| e.kind()),
                Err(ErrorKind::InvalidInput),
                "{start:#x}+{len:#x}"
            );
        }
    }
    assert_eq!(take(), []);
}

#[test]
fn a_range_ending_at_the_top_of_the_address_space_is_accepted() {
    take();
    let start = usize::MAX - 3;
    assert_eq!(
        unsafe { dispatch::clear_cache::<Stepping>(start, 4) },
        Ok(())
    );
    assert_eq!(take(), [Call::Fast(start, usize::MAX)]);
}

#[test]
fn a_whole_address_space_backend_runs_inline_without_looking_at_the_range() {
    take();
    assert_eq!(
        unsafe { dispatch::clear_cache::<Whole>(0x1234, 16) },
        Ok(())
    );
    assert_eq!(take(), [Call::Full(0, 0)]);
}

#[test]
fn per_range_backends_have_no_fast_path() {
    take();
    assert!(!unsafe { dispatch::fast_path::<PerRange>(0x1000, 8) });
    assert_eq!(take(), []);
    assert_eq!(
        unsafe { dispatch::clear_cache::<PerRange>(0x1000, 8) },
        Ok(())
    );
    assert_eq!(take(), [Call::Full(0x1000, 8)]);
}

#[test]
fn a_batch_is_validated_whole_before_anything_is_touched() {
    take();
    let ranges = [(0x1000, 8), (usize::MAX, 2), (0x2000, 8)];
    let result = unsafe { dispatch::clear_cache_ranges::<Batching>(ranges.iter().copied()) };
    assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
    let result = unsafe { dispatch::clear_cache_ranges::<PerRange>(ranges.iter().copied()) };
    assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::InvalidInput));
    assert_eq!(take(), []);
}

#[test]
fn a_batch_drops_empty_ranges_and_makes_no_call_when_none_is_left() {
    take();
    let empty = [(0x1000, 0), (0, 0)];
    assert_eq!(
        unsafe { dispatch::clear_cache_ranges::<Batching>(empty.iter().copied()) },
        Ok(())
    );
    assert_eq!(take(), []);
    let mixed = [(0x1000, 0), (0x2000, 8), (0x3000, 0), (0x4000, 4)];
    assert_eq!(
        unsafe { dispatch::clear_cache_ranges::<Batching>(mixed.iter().copied()) },
        Ok(())
    );
    assert_eq!(take(), [Call::Ranges(vec![(0x2000, 8), (0x4000, 4)])]);
}

#[test]
fn default_batches_are_one_call_per_range_or_one_call_in_all() {
    take();
    let ranges = [(0x2000, 8), (0x4000, 4)];
    assert_eq!(
        unsafe { dispatch::clear_cache_ranges::<PerRange>(ranges.iter().copied()) },
        Ok(())
    );
    assert_eq!(take(), [Call::Full(0x2000, 8), Call::Full(0x4000, 4)]);
    assert_eq!(
        unsafe { dispatch::clear_cache_ranges::<Whole>(ranges.iter().copied()) },
        Ok(())
    );
    assert_eq!(take(), [Call::Full(0, 0)]);
}

#[test]
fn default_double_mapping_flushes_the_executable_alias_after_checking_both() {
    take();
    assert_eq!(
        unsafe { dispatch::clear_cache_dual::<PerRange>(0x1000, 0x9000, 16) },
        Ok(())
    );
    assert_eq!(take(), [Call::Full(0x9000, 16)]);
    let wrapping_write = unsafe { dispatch::clear_cache_dual::<PerRange>(usize::MAX, 0x9000, 16) };
    assert_eq!(
        wrapping_write.map_err(|e| e.kind()),
        Err(ErrorKind::InvalidInput)
    );
    assert_eq!(
        unsafe { dispatch::clear_cache_dual::<PerRange>(0x1000, 0x9000, 0) },
        Ok(())
    );
    assert_eq!(take(), []);
}

#[test]
fn default_cross_modify_flush_is_the_pipeline_flush_with_its_error() {
    take();
    let e = Stepping::cross_modify_flush_mt().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_eq!(take(), [Call::Flush]);
}

#[test]
fn default_cache_info_reports_the_constants_and_no_lines() {
    let info = Whole::cache_info();
    assert_eq!(
        (
            info.mechanism,
            info.pipeline_flush_mechanism,
            info.data_line,
            info.instruction_line
        ),
        ("fake barrier", "fake none", None, None)
    );
    assert!(!info.needs_clean && !info.needs_invalidate && !info.pipeline_flush_needed);
    let info = PerRange::cache_info();
    assert!(info.needs_clean && info.needs_invalidate && info.pipeline_flush_needed);
}
