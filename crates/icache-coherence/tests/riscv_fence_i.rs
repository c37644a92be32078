//! The RISC-V opt-in to user-space `fence.i` (PR_RISCV_SET_ICACHE_FLUSH_CTX).
//!
//! qemu-user 7.2 does not know prctl 71 and answers EINVAL, as kernels before
//! 6.10 do: there the test checks the clear error and that the library stays
//! on the syscall. On a 6.10+ kernel it checks the switch to `fence.i`.
//! Either way generated code must keep running correctly.

#![cfg(all(
    not(miri),
    target_os = "linux",
    any(target_arch = "riscv64", target_arch = "riscv32")
))]

mod common;

use common::{return_n, CodePages};
use icache_coherence::{cache_info, clear_cache, pipeline_flush_mt, riscv};

#[test]
fn user_fence_i_is_enabled_or_refused_clearly_and_code_still_runs() {
    match riscv::enable_user_fence_i() {
        Ok(()) => {
            let info = cache_info();
            assert!(info.mechanism.starts_with("fence.i"), "{info:?}");
            // With `one-core` no flush of other harts is ever needed.
            assert_eq!(info.pipeline_flush_needed, !cfg!(feature = "one-core"));
        }
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
            let detail = e
                .get_ref()
                .and_then(|d| d.downcast_ref::<icache_coherence::Error>());
            let detail = detail.expect("the error names its call");
            assert_eq!(detail.call(), "prctl(PR_RISCV_SET_ICACHE_FLUSH_CTX)");
            assert_eq!(detail.raw_os_error(), Some(libc::EINVAL));
            // The library stays on the syscall, or, with `one-core`, on
            // its local fence.i.
            let expected = if cfg!(feature = "one-core") {
                "fence.i"
            } else {
                "riscv_flush_icache"
            };
            assert!(
                cache_info().mechanism.starts_with(expected),
                "{:?}",
                cache_info()
            );
        }
    }
    let pages = CodePages::new(1);
    for i in 0..50 {
        pages.writable(0);
        let code = return_n(i);
        let f = pages.write(0, 0, &code);
        unsafe { clear_cache(f, code.len()) }.unwrap();
        pages.executable(0);
        pipeline_flush_mt().unwrap();
        assert_eq!(pages.call(0, 0), i);
    }
}
