//! Response rewrites: Metadata and DescribeCluster answers from the backend are decoded and made to
//! name kelp (its advertised host, port and node id), so clients keep talking to kelp.

use bytes::Bytes;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterResponse, MetadataResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::protocol::{encode_response, split_response};

/// The broker kelp presents itself as.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_id: i32,
    pub host: StrBytes,
    pub port: i32,
}

/// Rewrites a backend response frame (length prefix removed) for `api` at `version` and returns the
/// new frame with its length prefix.
pub fn rewrite(api: ApiKey, version: i16, frame: Bytes, me: &Identity) -> anyhow::Result<Bytes> {
    let (correlation_id, mut body) = split_response(frame, api, version)?;
    match api {
        ApiKey::Metadata => {
            let mut response = MetadataResponse::decode(&mut body, version)?;
            rewrite_metadata(&mut response, me);
            encode_response(api, version, correlation_id, &response)
        }
        ApiKey::DescribeCluster => {
            let mut response = DescribeClusterResponse::decode(&mut body, version)?;
            keep_encodable_tags(&mut response.unknown_tagged_fields);
            response.controller_id = BrokerId(me.node_id);
            response.brokers = vec![DescribeClusterBroker::default()
                .with_broker_id(BrokerId(me.node_id))
                .with_host(me.host.clone())
                .with_port(me.port)];
            encode_response(api, version, correlation_id, &response)
        }
        other => anyhow::bail!("no rewrite for {other:?}"),
    }
}

/// Drops unknown tagged fields whose tag is above i32::MAX (read as negative): kafka-protocol
/// 0.18 counts them when encoding but does not write them, which would send the client a
/// malformed response (found by the rewrite fuzz target). No real tag is that large.
fn keep_encodable_tags(tags: &mut std::collections::BTreeMap<i32, Bytes>) {
    tags.retain(|tag, _| *tag >= 0);
}

/// One broker (kelp), the controller and every partition's leader and replicas on it (also used
/// for the Metadata versions kelp answers from an older one, `topics::metadata`).
pub(crate) fn rewrite_metadata(response: &mut MetadataResponse, me: &Identity) {
    keep_encodable_tags(&mut response.unknown_tagged_fields);
    let node = BrokerId(me.node_id);
    response.brokers = vec![MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(me.host.clone())
        .with_port(me.port)];
    response.controller_id = node;
    for topic in &mut response.topics {
        keep_encodable_tags(&mut topic.unknown_tagged_fields);
        for partition in &mut topic.partitions {
            keep_encodable_tags(&mut partition.unknown_tagged_fields);
            if partition.leader_id.0 >= 0 {
                partition.leader_id = node;
            }
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition.offline_replicas.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::TopicName;

    fn me() -> Identity {
        Identity {
            node_id: 7,
            host: StrBytes::from_static_str("127.0.0.1"),
            port: 19092,
        }
    }

    fn gateway_metadata() -> MetadataResponse {
        let partition = MetadataResponsePartition::default()
            .with_partition_index(0)
            .with_leader_id(BrokerId(1))
            .with_replica_nodes(vec![BrokerId(1)])
            .with_isr_nodes(vec![BrokerId(1)]);
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(9093)])
            .with_controller_id(BrokerId(1))
            .with_topics(vec![MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_partitions(vec![partition])])
    }

    #[test]
    fn metadata_names_only_kelp_at_every_version() {
        for version in 0..=13 {
            let frame =
                encode_response(ApiKey::Metadata, version, 42, &gateway_metadata()).unwrap();
            let out = rewrite(ApiKey::Metadata, version, frame.slice(4..), &me()).unwrap();
            let (corr, mut body) =
                split_response(out.slice(4..), ApiKey::Metadata, version).unwrap();
            assert_eq!(corr, 42);
            let got = MetadataResponse::decode(&mut body, version).unwrap();
            assert_eq!(got.brokers.len(), 1, "v{version}");
            assert_eq!(got.brokers[0].port, 19092);
            assert_eq!(got.brokers[0].node_id, BrokerId(7));
            let p = &got.topics[0].partitions[0];
            assert_eq!(p.leader_id, BrokerId(7));
            assert_eq!(p.replica_nodes, vec![BrokerId(7)]);
            if version >= 1 {
                assert_eq!(got.controller_id, BrokerId(7));
            }
        }
    }

    #[test]
    fn describe_cluster_names_only_kelp() {
        for version in 0..=2 {
            let original = DescribeClusterResponse::default()
                .with_controller_id(BrokerId(1))
                .with_brokers(vec![DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(1))
                    .with_host(StrBytes::from_static_str("10.0.0.1"))
                    .with_port(9093)]);
            let frame = encode_response(ApiKey::DescribeCluster, version, 5, &original).unwrap();
            let out = rewrite(ApiKey::DescribeCluster, version, frame.slice(4..), &me()).unwrap();
            let (_, mut body) =
                split_response(out.slice(4..), ApiKey::DescribeCluster, version).unwrap();
            let got = DescribeClusterResponse::decode(&mut body, version).unwrap();
            assert_eq!(got.brokers.len(), 1);
            assert_eq!(got.brokers[0].host.as_str(), "127.0.0.1");
            assert_eq!(got.brokers[0].port, 19092);
            assert_eq!(got.controller_id, BrokerId(7));
        }
    }

    /// fuzz/regressions/rewrite: DescribeCluster v0 with an unknown tag of 0xafffffff.
    #[test]
    fn a_tag_above_i32_max_does_not_make_a_malformed_response() {
        let mut frame = vec![0, 0, 0, 5, 0]; // correlation id 5, no header tags
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // throttle, error code
        frame.extend_from_slice(&[0, 1]); // null error message, empty cluster id
        frame.extend_from_slice(&[0, 0, 0, 1, 1]); // controller 1, no brokers
        frame.extend_from_slice(&[0, 0, 0, 0]); // authorized operations
        frame.extend_from_slice(&[2, 0xff, 0xff, 0xff, 0xff, 0x0a, 0, 9, 1, b'x']); // 2 tags
        let out = rewrite(ApiKey::DescribeCluster, 0, Bytes::from(frame), &me()).unwrap();
        let len = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let (_, mut body) = split_response(out.slice(4..), ApiKey::DescribeCluster, 0).unwrap();
        let got = DescribeClusterResponse::decode(&mut body, 0).unwrap();
        assert_eq!(
            got.unknown_tagged_fields.len(),
            1,
            "the valid unknown tag is kept"
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64 {
            let frame: Vec<u8> = (0..len).map(|i| (i * 91 % 256) as u8).collect();
            let _ = rewrite(ApiKey::Metadata, 7, Bytes::from(frame.clone()), &me());
            let _ = rewrite(ApiKey::DescribeCluster, 1, Bytes::from(frame), &me());
        }
    }
}
