//! Fuzz body for the path every request takes before kelp decodes anything: the length-delimited
//! framing, `protocol::peek`, `produce_acks_zero`, `route::route`, and the answers kelp makes on the
//! spot (ApiVersions, FindCoordinator). The input is a byte stream as a client would send it;
//! the stream is also taken as one frame whose length prefix is already removed.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use tokio_util::codec::Decoder;

use kelp::backend::Identity;
use kelp::protocol::frame_codec;
use kelp::protocol::versions::BackendRanges;
use kelp::protocol::{peek, produce_acks_zero, Peek};
use kelp::route::{route, Route};
use kelp::server::answer;

/// The largest frame the fuzzed codec accepts (small, so oversize frames are reached).
const MAX_FRAME: u32 = 1024;

pub fn run(data: &[u8]) {
    framing(data);
    run_one(data);
}

/// The client's bytes through kelp's frame codec: every frame it yields is whole and within the
/// limit, and a bad length is an error, not a panic.
fn framing(data: &[u8]) {
    let mut codec = frame_codec(MAX_FRAME);
    let mut buf = BytesMut::from(data);
    for _ in 0..data.len() + 1 {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => {
                assert!(frame.len() >= 4, "a frame without its length prefix");
                let len = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                assert_eq!(
                    len as usize,
                    frame.len() - 4,
                    "length prefix and frame differ"
                );
                // The limit is on the length field (the bytes after the 4-byte prefix).
                assert!(
                    frame.len() - 4 <= MAX_FRAME as usize,
                    "a frame over the maximum"
                );
                run_one(&frame[4..]);
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// One request frame (length prefix removed), as `server::conn` handles it before any decode.
pub fn run_one(frame: &[u8]) {
    for version in -1..=14 {
        let _ = produce_acks_zero(frame, version);
    }
    let Ok(p) = peek(frame) else { return };
    assert_eq!(p.api_key as i16, i16::from_be_bytes([frame[0], frame[1]]));
    assert_eq!(p.api_version, i16::from_be_bytes([frame[2], frame[3]]));
    let _ = produce_acks_zero(frame, p.api_version);
    match route(&p) {
        Ok(Route::ApiVersions) => {
            for possible in [false, true] {
                let answer = answer::api_versions(
                    &p,
                    Bytes::copy_from_slice(frame),
                    &gateway(),
                    possible,
                    &[],
                );
                if let Ok(out) = answer {
                    check_response(&p, &out);
                }
            }
        }
        Ok(Route::FindCoordinator) => {
            let answer = answer::find_coordinator(&p, Bytes::copy_from_slice(frame), &me());
            if let Ok(out) = answer {
                check_response(&p, &out);
            }
        }
        // Group APIs are decoded, then routed per group id (`route::group_route`).
        Ok(Route::Group) => super::requests::group_request(&p, Bytes::copy_from_slice(frame)),
        Ok(Route::Forward | Route::ForwardRewrite) | Err(_) => {}
    }
}

/// A response frame kelp made: its length prefix is right and it carries the request's correlation id.
fn check_response(p: &Peek, out: &[u8]) {
    assert!(out.len() >= 8, "response shorter than its header");
    let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(
        len as usize,
        out.len() - 4,
        "response length prefix is wrong"
    );
    let corr = i32::from_be_bytes([out[4], out[5], out[6], out[7]]);
    assert_eq!(corr, p.correlation_id, "response correlation id is wrong");
}

/// kelp's identity in the fuzzed answers.
pub fn me() -> Identity {
    Identity {
        node_id: 7,
        host: kafka_protocol::protocol::StrBytes::from_static_str("127.0.0.1"),
        port: 19092,
    }
}

/// What the 4.48 gateway advertises (BACKEND.md), as a backend discovery would record it.
pub fn gateway() -> BackendRanges {
    let table: [(ApiKey, i16, i16); 19] = [
        (ApiKey::Produce, 0, 7),
        (ApiKey::Fetch, 0, 7),
        (ApiKey::ListOffsets, 0, 2),
        (ApiKey::Metadata, 0, 7),
        (ApiKey::OffsetCommit, 0, 2),
        (ApiKey::OffsetFetch, 0, 5),
        (ApiKey::FindCoordinator, 0, 3),
        (ApiKey::JoinGroup, 0, 6),
        (ApiKey::Heartbeat, 0, 4),
        (ApiKey::LeaveGroup, 0, 4),
        (ApiKey::SyncGroup, 0, 5),
        (ApiKey::DescribeGroups, 0, 5),
        (ApiKey::ListGroups, 0, 4),
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::CreateTopics, 0, 5),
        (ApiKey::DeleteTopics, 0, 4),
        (ApiKey::InitProducerId, 0, 4),
        (ApiKey::DescribeConfigs, 0, 4),
        (ApiKey::DescribeCluster, 0, 1),
    ];
    table
        .iter()
        .map(|(api, min, max)| {
            (
                *api as i16,
                VersionRange {
                    min: *min,
                    max: *max,
                },
            )
        })
        .collect()
}
