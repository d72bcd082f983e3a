//! libFuzzer entry for the `rewrite` target; the body is `kelp_fuzz::rewrite::run` (see fuzz/src/rewrite.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_fuzz::rewrite::run(data));
