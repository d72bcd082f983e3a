//! libFuzzer entry for the `sequence` target; the body is `kelp_fuzz::sequence::run` (see fuzz/src/sequence.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_fuzz::sequence::run(data));
