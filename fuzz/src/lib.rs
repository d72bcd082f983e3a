//! kelp's fuzz target bodies, shared by the libFuzzer entries in `fuzz_targets/` and by the stable
//! smoke test (`tests/fuzz_smoke.rs` includes this file by path, so modules refer to each other
//! with `super::`, never `crate::`). Each body panics only when kelp broke an invariant.
//!
//! - `frame`: the bytes kelp reads before routing (framing, header peek, `acks` peek, routing,
//!   the answers kelp makes on the spot).
//! - `requests`: every request kelp decodes, at every version it accepts, through the decoder,
//!   the coordinator and the response encoder.
//! - `rewrite`: every backend response kelp rewrites (Metadata, DescribeCluster), at every version.
//! - `sequence`: random request sequences into the group state machine, with the TESTING.md
//!   invariants checked after every step.

pub mod frame;
pub mod input;
pub mod requests;
pub mod rewrite;
pub mod seeds;
pub mod sequence;

/// Every target, by name (the directory names under `fuzz/corpus/`).
pub const TARGETS: [&str; 4] = ["frame", "requests", "rewrite", "sequence"];

/// Runs the body of `target` over one input.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "frame" => frame::run(data),
        "requests" => requests::run(data),
        "rewrite" => rewrite::run(data),
        "sequence" => sequence::run(data),
        other => panic!("no fuzz target {other:?}"),
    }
}
