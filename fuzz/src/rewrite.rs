//! Fuzz body for every response kelp rewrites: the backend's Metadata and DescribeCluster at every
//! version, and a peer's answers to the parts of a batch split between owners (DescribeGroups,
//! DeleteGroups, OffsetFetch v8+, ListGroups; `peers::scatter`). The input chooses the API and
//! version; the rest is the response frame as it came (length prefix removed). A rewrite may refuse
//! a frame, never panic, and what it returns must be a whole frame, with the backend's correlation
//! id, that decodes at the version and names only kelp; a merged answer must encode at the version
//! and decode back with one entry per group asked about.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;

use kelp::backend::rewrite::rewrite;
use kelp::protocol::split_response;

use super::frame::me;
use super::input::Input;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&[
        ApiKey::Metadata,
        ApiKey::DescribeCluster,
        ApiKey::DescribeGroups,
        ApiKey::DeleteGroups,
        ApiKey::OffsetFetch,
        ApiKey::ListGroups,
    ]);
    let range = api.valid_versions();
    let min = if api == ApiKey::OffsetFetch {
        8
    } else {
        range.min
    };
    let span = (range.max - min + 1) as usize;
    let version = min + input.below(span) as i16;
    let frame = Bytes::copy_from_slice(input.rest());
    if !matches!(api, ApiKey::Metadata | ApiKey::DescribeCluster) {
        return scattered(api, version, frame);
    }
    let Ok(out) = rewrite(api, version, frame.clone(), &me()) else {
        return;
    };
    assert!(out.len() >= 8, "rewritten frame shorter than a header");
    let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(
        len as usize,
        out.len() - 4,
        "rewritten length prefix is wrong"
    );
    let (corr, mut body) =
        split_response(out.slice(4..), api, version).expect("rewritten header splits");
    assert_eq!(Some(corr), first_i32(&frame), "correlation id changed");
    let node = BrokerId(me().node_id);
    match api {
        ApiKey::Metadata => {
            let m = MetadataResponse::decode(&mut body, version)
                .unwrap_or_else(|e| panic!("rewritten Metadata v{version} does not decode: {e}"));
            assert_eq!(m.brokers.len(), 1, "Metadata v{version}: only kelp");
            assert_eq!(m.brokers[0].node_id, node);
            assert_eq!(m.brokers[0].host, me().host);
            assert_eq!(m.brokers[0].port, me().port);
            if version >= 1 {
                assert_eq!(m.controller_id, node, "Metadata v{version}: controller");
            }
            for t in &m.topics {
                for p in &t.partitions {
                    assert!(p.leader_id == node || p.leader_id.0 < 0, "leader not kelp");
                    assert_eq!(p.replica_nodes, vec![node]);
                    assert_eq!(p.isr_nodes, vec![node]);
                    assert!(p.offline_replicas.is_empty());
                }
            }
        }
        _ => {
            let d = DescribeClusterResponse::decode(&mut body, version).unwrap_or_else(|e| {
                panic!("rewritten DescribeCluster v{version} does not decode: {e}")
            });
            assert_eq!(d.brokers.len(), 1, "DescribeCluster v{version}: only kelp");
            assert_eq!(d.brokers[0].broker_id, node);
            assert_eq!(d.controller_id, node);
        }
    }
}

fn first_i32(b: &[u8]) -> Option<i32> {
    b.get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// A peer's answer to one part of a split batch, merged with a part that got no answer.
fn scattered(api: ApiKey, version: i16, frame: Bytes) {
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use kelp::group::Request;
    use kelp::peers::scatter::{decode, merge, unanswered};

    let gid = |g: &str| GroupId(StrBytes::from_string(g.to_string()));
    let theirs = ["c"];
    let request = |groups: &[&str]| match api {
        ApiKey::DescribeGroups => Request::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(groups.iter().map(|g| gid(g)).collect()),
        ),
        ApiKey::DeleteGroups => Request::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(groups.iter().map(|g| gid(g)).collect()),
        ),
        ApiKey::OffsetFetch => Request::OffsetFetch(
            OffsetFetchRequest::default().with_groups(
                groups
                    .iter()
                    .map(|g| {
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(gid(g))
                    })
                    .collect(),
            ),
        ),
        _ => Request::ListGroups(ListGroupsRequest::default()),
    };
    let mut prefixed = (frame.len() as i32).to_be_bytes().to_vec();
    prefixed.extend_from_slice(&frame);
    let Ok(answer) = decode(api, version, Bytes::from(prefixed)) else {
        return;
    };
    let all = request(&["a", "c", "b"]);
    let merged = merge(&all, vec![answer, unanswered(&request(&theirs), version)]);
    let peek = kelp::protocol::Peek {
        api_key: api,
        api_version: version,
        correlation_id: 7,
    };
    // kafka-protocol may refuse to encode what it decoded (then kelp answers nothing and closes
    // the connection); what it does encode must be a whole frame that decodes back.
    let Ok(out) = kelp::coordinator::encode(&peek, &merged) else {
        return;
    };
    let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(len as usize, out.len() - 4, "merged length prefix is wrong");
    let (corr, mut body) = split_response(out.slice(4..), api, version).expect("merged header");
    assert_eq!(corr, 7);
    match api {
        ApiKey::DescribeGroups => {
            let r = DescribeGroupsResponse::decode(&mut body, version).expect("merged decodes");
            assert!(r
                .groups
                .iter()
                .any(|g| g.group_id.as_str() == "c" && g.error_code == 16));
        }
        ApiKey::DeleteGroups => {
            let r = DeleteGroupsResponse::decode(&mut body, version).expect("merged decodes");
            assert!(r
                .results
                .iter()
                .any(|g| g.group_id.as_str() == "c" && g.error_code == 16));
        }
        ApiKey::OffsetFetch => {
            let r = OffsetFetchResponse::decode(&mut body, version).expect("merged decodes");
            assert!(r
                .groups
                .iter()
                .any(|g| g.group_id.as_str() == "c" && g.error_code == 16));
        }
        _ => {
            let r = ListGroupsResponse::decode(&mut body, version).expect("merged decodes");
            assert_ne!(r.error_code, 0, "a peer that did not answer is reported");
        }
    }
}
