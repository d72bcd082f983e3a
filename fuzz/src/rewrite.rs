//! Fuzz body for every backend response kelp rewrites: Metadata and DescribeCluster at every
//! version. The input chooses the API and version; the rest is the response frame as the backend
//! sent it (length prefix removed). A rewrite may refuse a frame, never panic, and what it returns
//! must be a whole frame, with the backend's correlation id, that decodes at the version and names
//! only kelp.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterResponse, MetadataResponse};
use kafka_protocol::protocol::Decodable;

use kelp::backend::rewrite::rewrite;
use kelp::protocol::split_response;

use super::frame::me;
use super::input::Input;

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let api = input.pick(&[ApiKey::Metadata, ApiKey::DescribeCluster]);
    let range = api.valid_versions();
    let span = (range.max - range.min + 1) as usize;
    let version = range.min + input.below(span) as i16;
    let frame = Bytes::copy_from_slice(input.rest());
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
