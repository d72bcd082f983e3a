//! libFuzzer entry for the `frame` target; the body is `kelp_fuzz::frame::run` (see fuzz/src/frame.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_fuzz::frame::run(data));
