//! libFuzzer entry for the `requests` target; the body is `kelp_fuzz::requests::run` (see fuzz/src/requests.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| kelp_fuzz::requests::run(data));
