//! Fuzz body for every request kelp decodes: ApiVersions, FindCoordinator and every group API, at
//! every version kelp accepts. The input chooses the API, the version and the client id; the rest
//! is the body. A group request that decodes goes through a fresh coordinator and its reply must
//! encode at the request's version and decode back (a reply kelp cannot encode closes the client's
//! connection instead of answering it).

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use kelp::group::{self, Call, Coordinator, Output, Request, Response};
use kelp::protocol::{encode_response, kelp_range, split_response, FrameError, Peek};

use super::input::Input;

/// Every API kelp decodes a request of.
pub const DECODED: [ApiKey; 12] = [
    ApiKey::ApiVersions,
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::LeaveGroup,
    ApiKey::OffsetCommit,
    ApiKey::OffsetFetch,
    ApiKey::OffsetDelete,
    ApiKey::DescribeGroups,
    ApiKey::ListGroups,
    ApiKey::DeleteGroups,
];

/// Most ticks while waiting for a parked reply (each fires every timer due by then).
const MAX_DRAIN_TICKS: usize = 64;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&DECODED);
    let Some((_, range)) = kelp_range(api) else {
        return;
    };
    let span = (range.max - range.min + 1) as usize;
    let version = range.min + input.below(span) as i16;
    let correlation_id = input.u32() as i32;
    let client_id = match input.below(3) {
        0 => None,
        1 => Some(StrBytes::default()),
        _ => Some(StrBytes::from_string(
            String::from_utf8_lossy(input.bytes(16)).into_owned(),
        )),
    };
    let frame = header(api, version, correlation_id, client_id, input.rest());
    super::frame::run_one(&frame);
}

/// A request frame (length prefix removed): a well-formed header for `api` at `version`, then `body`.
pub fn header(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<StrBytes>,
    body: &[u8],
) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id);
    let mut buf = BytesMut::new();
    if header
        .encode(&mut buf, api.request_header_version(version))
        .is_err()
    {
        return Vec::new();
    }
    buf.extend_from_slice(body);
    buf.to_vec()
}

/// A group request decoded exactly as kelp decodes it (`coordinator::decode`).
pub fn decode_group(p: &Peek, frame: Bytes) -> Result<(String, Request), FrameError> {
    kelp::coordinator::decode(p, frame)
}

pub fn group_request(p: &Peek, frame: Bytes) {
    let Ok((client_id, request)) = decode_group(p, frame) else {
        return;
    };
    let mut coordinator = Coordinator::with_seed(config(), 1);
    let mut out = Vec::new();
    let call = Call {
        token: 1,
        api_version: p.api_version,
        client_id,
        client_host: "/127.0.0.1".into(),
        request,
    };
    let mut now = 0;
    coordinator.handle(now, call, &mut out);
    let mut replies = Vec::new();
    for _ in 0..MAX_DRAIN_TICKS {
        collect(&mut out, &mut replies);
        if !replies.is_empty() {
            break;
        }
        let Some(at) = coordinator.next_deadline() else {
            break;
        };
        now = now.max(at);
        coordinator.tick(now, &mut out);
    }
    collect(&mut out, &mut replies);
    assert_eq!(
        replies.len(),
        1,
        "{:?} v{}: one reply",
        p.api_key,
        p.api_version
    );
    check_encodes(p, &replies[0]);
}

fn collect(out: &mut Vec<Output>, replies: &mut Vec<Response>) {
    for output in out.drain(..) {
        if let Output::Reply { token, response } = output {
            assert_eq!(token, 1, "a reply to a call never made");
            replies.push(response);
        }
    }
}

/// The coordinator settings the fuzz bodies use: Kafka's defaults, no initial delay.
pub fn config() -> group::Config {
    group::Config {
        initial_rebalance_delay_ms: 0,
        ..group::Config::default()
    }
}

/// Encodes a coordinator reply as the shell does (at the request's version) and decodes it back.
pub fn check_encodes(p: &Peek, response: &Response) {
    macro_rules! roundtrip {
        ($r:expr, $t:ty) => {{
            let frame = encode_response(p.api_key, p.api_version, p.correlation_id, $r)
                .unwrap_or_else(|e| {
                    panic!(
                        "{:?} v{}: reply does not encode: {e}\n{:?}",
                        p.api_key, p.api_version, $r
                    )
                });
            let (corr, mut body) = split_response(frame.slice(4..), p.api_key, p.api_version)
                .expect("our own response header splits");
            assert_eq!(corr, p.correlation_id);
            <$t>::decode(&mut body, p.api_version).unwrap_or_else(|e| {
                panic!(
                    "{:?} v{}: reply does not decode back: {e}",
                    p.api_key, p.api_version
                )
            });
        }};
    }
    match response {
        Response::JoinGroup(r) => roundtrip!(r, JoinGroupResponse),
        Response::SyncGroup(r) => roundtrip!(r, SyncGroupResponse),
        Response::Heartbeat(r) => roundtrip!(r, HeartbeatResponse),
        Response::LeaveGroup(r) => roundtrip!(r, LeaveGroupResponse),
        Response::OffsetCommit(r) => roundtrip!(r, OffsetCommitResponse),
        Response::OffsetFetch(r) => roundtrip!(r, OffsetFetchResponse),
        Response::OffsetDelete(r) => roundtrip!(r, OffsetDeleteResponse),
        Response::DescribeGroups(r) => roundtrip!(r, DescribeGroupsResponse),
        Response::ListGroups(r) => roundtrip!(r, ListGroupsResponse),
        Response::DeleteGroups(r) => roundtrip!(r, DeleteGroupsResponse),
        Response::ConsumerGroupHeartbeat(r) => roundtrip!(r, ConsumerGroupHeartbeatResponse),
        Response::ConsumerGroupDescribe(r) => roundtrip!(r, ConsumerGroupDescribeResponse),
    }
}
