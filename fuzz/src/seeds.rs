//! Seed inputs for every target, built with `kafka-protocol`: each request kelp decodes at each
//! version it accepts, each response it rewrites at each version, and request sequences. The smoke
//! test runs them on every `cargo test`; `scripts/fuzz --seed` writes them into `fuzz/corpus/`.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use kelp::protocol::{encode_response, kelp_range};

use super::requests::{header, DECODED};

/// (target, name, input)
pub type Seed = (&'static str, String, Vec<u8>);

pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    requests(&mut seeds);
    rewrites(&mut seeds);
    sequences(&mut seeds);
    seeds
}

/// A default body of `api` encoded at `version` (empty if this version cannot hold the defaults).
fn default_body(api: ApiKey, version: i16) -> Vec<u8> {
    fn enc<T: Encodable + Default>(version: i16) -> Vec<u8> {
        let mut b = BytesMut::new();
        match T::default().encode(&mut b, version) {
            Ok(()) => b.to_vec(),
            Err(_) => Vec::new(),
        }
    }
    match api {
        ApiKey::ApiVersions => enc::<ApiVersionsRequest>(version),
        ApiKey::FindCoordinator => enc::<FindCoordinatorRequest>(version),
        ApiKey::JoinGroup => enc::<JoinGroupRequest>(version),
        ApiKey::SyncGroup => enc::<SyncGroupRequest>(version),
        ApiKey::Heartbeat => enc::<HeartbeatRequest>(version),
        ApiKey::LeaveGroup => enc::<LeaveGroupRequest>(version),
        ApiKey::OffsetCommit => enc::<OffsetCommitRequest>(version),
        ApiKey::OffsetFetch => enc::<OffsetFetchRequest>(version),
        ApiKey::OffsetDelete => enc::<OffsetDeleteRequest>(version),
        ApiKey::DescribeGroups => enc::<DescribeGroupsRequest>(version),
        ApiKey::ListGroups => enc::<ListGroupsRequest>(version),
        ApiKey::DeleteGroups => enc::<DeleteGroupsRequest>(version),
        ApiKey::Produce => {
            let body = ProduceRequest::default().with_acks(0).with_timeout_ms(1000);
            let mut b = BytesMut::new();
            match body.encode(&mut b, version) {
                Ok(()) => b.to_vec(),
                Err(_) => Vec::new(),
            }
        }
        _ => Vec::new(),
    }
}

fn requests(seeds: &mut Vec<Seed>) {
    let client = Some(StrBytes::from_static_str("seed"));
    for (index, api) in DECODED.iter().enumerate() {
        let Some((_, range)) = kelp_range(*api) else {
            continue;
        };
        for version in range.min..=range.max {
            let body = default_body(*api, version);
            // `requests`: api index, version offset, correlation id, client id "seed", body.
            let mut input = vec![index as u8, (version - range.min) as u8, 0, 0, 0, 7, 2, 4];
            input.extend_from_slice(b"seed");
            input.extend_from_slice(&body);
            seeds.push(("requests", format!("{api:?}-v{version}"), input));
            // `frame`: the same request as a client sends it, length prefix and all.
            let frame = header(*api, version, 7, client.clone(), &body);
            let mut stream = (frame.len() as i32).to_be_bytes().to_vec();
            stream.extend_from_slice(&frame);
            seeds.push(("frame", format!("{api:?}-v{version}"), stream));
        }
    }
    for version in [3, 7, 9, 13] {
        let body = default_body(ApiKey::Produce, version);
        let frame = header(ApiKey::Produce, version, 9, client.clone(), &body);
        seeds.push(("frame", format!("Produce-acks0-v{version}"), frame));
    }
}

fn rewrites(seeds: &mut Vec<Seed>) {
    let broker = |id: i32| {
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_static_str("10.0.0.9"))
            .with_port(9093)
    };
    let partition = |i: i32, leader: i32| {
        MetadataResponsePartition::default()
            .with_partition_index(i)
            .with_leader_id(BrokerId(leader))
            .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
            .with_isr_nodes(vec![BrokerId(1)])
            .with_offline_replicas(vec![BrokerId(2)])
    };
    let metadata = MetadataResponse::default()
        .with_brokers(vec![broker(1), broker(2)])
        .with_controller_id(BrokerId(1))
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![partition(0, 1), partition(1, -1)])]);
    let range = ApiKey::Metadata.valid_versions();
    for version in range.min..=range.max {
        let mut m = metadata.clone();
        if version < 1 {
            m.controller_id = BrokerId(-1);
        }
        if version < 5 {
            for t in &mut m.topics {
                for p in &mut t.partitions {
                    p.offline_replicas.clear();
                }
            }
        }
        if let Ok(frame) = encode_response(ApiKey::Metadata, version, 42, &m) {
            let mut input = vec![0, (version - range.min) as u8];
            input.extend_from_slice(&frame[4..]);
            seeds.push(("rewrite", format!("Metadata-v{version}"), input));
        }
    }
    let cluster = DescribeClusterResponse::default()
        .with_controller_id(BrokerId(1))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("10.0.0.9"))
            .with_port(9093)]);
    let range = ApiKey::DescribeCluster.valid_versions();
    for version in range.min..=range.max {
        if let Ok(frame) = encode_response(ApiKey::DescribeCluster, version, 43, &cluster) {
            let mut input = vec![1, (version - range.min) as u8];
            input.extend_from_slice(&frame[4..]);
            seeds.push(("rewrite", format!("DescribeCluster-v{version}"), input));
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift), so seeds are the same on every run.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = BytesMut::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.put_u8((x >> 24) as u8);
    }
    out.to_vec()
}

fn sequences(seeds: &mut Vec<Seed>) {
    // Mostly well-behaved clients (op 16) with clock steps (op 15), then random programs.
    for clients in 1..=4u8 {
        let mut input = vec![0, 0, 0, 0, 0, clients];
        for round in 0..40u8 {
            input.extend_from_slice(&[16, round % clients, 1, 0, 0, 0, 0]);
            if round % 8 == 7 {
                input.extend_from_slice(&[15, 3]);
            }
        }
        seeds.push(("sequence", format!("members-{clients}"), input));
    }
    for n in 0..24u64 {
        seeds.push((
            "sequence",
            format!("noise-{n}"),
            noise(n + 1, 64 + 96 * n as usize),
        ));
    }
}
