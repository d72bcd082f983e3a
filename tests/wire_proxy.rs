//! Wire tests of the data path against a running kelp in front of a real SeaweedFS gateway: raw
//! frames on a TCP socket for ApiVersions, rewrites, pipelining, acks=0 and every bad-input case.

mod raw;
mod support;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use raw::Raw;

fn kelp() -> support::Kelp {
    support::Kelp::start(&[])
}

fn host_port(kelp: &support::Kelp) -> (String, i32) {
    let (host, port) = kelp.addr().rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

fn metrics(kelp: &support::Kelp) -> String {
    let (status, body) = kelp.http_get("/metrics");
    assert_eq!(status, 200);
    body
}

fn api_versions(raw: &mut Raw, version: i16) -> ApiVersionsResponse {
    raw.call(ApiKey::ApiVersions, version, &ApiVersionsRequest::default())
}

fn range(response: &ApiVersionsResponse, api: ApiKey) -> Option<(i16, i16)> {
    response
        .api_keys
        .iter()
        .find(|k| k.api_key == api as i16)
        .map(|k| (k.min_version, k.max_version))
}

fn metadata(topic: Option<&str>) -> MetadataRequest {
    MetadataRequest::default().with_topics(topic.map(|t| {
        vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(t.into()))))]
    }))
}

#[test]
fn api_versions_advertises_the_intersection_and_kip_848_while_every_group_is_local() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    for version in [0, 3, 4] {
        let response = api_versions(&mut raw, version);
        assert_eq!(response.error_code, 0);
        // Gateway 4.48 has Produce 0–7 and Fetch 0–7; kafka-protocol knows Produce 3+, Fetch 4+.
        assert_eq!(
            range(&response, ApiKey::Produce),
            Some((3, 7)),
            "v{version}"
        );
        assert_eq!(range(&response, ApiKey::Fetch), Some((4, 7)));
        // Metadata v8–13 are answered by kelp from the gateway's v7 (topic ids).
        assert_eq!(range(&response, ApiKey::Metadata), Some((0, 13)));
        assert_eq!(range(&response, ApiKey::ApiVersions), Some((0, 4)));
        assert_eq!(range(&response, ApiKey::FindCoordinator), Some((0, 6)));
        // KIP-848's APIs: kelp's coordinator serves them (every group is local here).
        assert_eq!(
            range(&response, ApiKey::ConsumerGroupHeartbeat),
            Some((0, 1))
        );
        assert_eq!(
            range(&response, ApiKey::ConsumerGroupDescribe),
            Some((0, 1))
        );
        for key in &response.api_keys {
            assert!(key.min_version <= key.max_version);
        }
    }
}

#[test]
fn api_versions_unsupported_version_gets_35_in_a_v0_body() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    let sent = raw.send(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
    // Re-send with a version kelp does not know by patching the version field of a v4 frame.
    let (mut frame, corr) = raw.frame(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&9i16.to_be_bytes());
    raw.send_bytes(&frame).unwrap();
    let (got, ok) = raw.recv::<ApiVersionsResponse>(ApiKey::ApiVersions, 4);
    assert_eq!((got, ok.error_code), (sent, 0));
    let (got, response) = raw.recv::<ApiVersionsResponse>(ApiKey::ApiVersions, 0);
    assert_eq!(got, corr);
    assert_eq!(response.error_code, 35);
    assert_eq!(range(&response, ApiKey::ApiVersions), Some((0, 4)));
    // The connection stays usable: the client retries lower.
    assert_eq!(api_versions(&mut raw, 3).error_code, 0);
}

#[test]
fn metadata_and_find_coordinator_name_only_kelp() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    let (host, port) = host_port(&kelp);
    for version in [0, 1, 4, 7] {
        let response: MetadataResponse = raw.call(ApiKey::Metadata, version, &metadata(None));
        assert_eq!(response.brokers.len(), 1, "v{version}");
        assert_eq!(response.brokers[0].host.as_str(), host);
        assert_eq!(response.brokers[0].port, port);
        assert_eq!(response.brokers[0].node_id, BrokerId(1));
        for topic in &response.topics {
            for p in &topic.partitions {
                assert!(p.leader_id == BrokerId(1) || p.leader_id == BrokerId(-1));
            }
        }
    }
    for version in 0..=3 {
        let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g1"));
        let response: FindCoordinatorResponse =
            raw.call(ApiKey::FindCoordinator, version, &request);
        assert_eq!(response.error_code, 0);
        assert_eq!(
            (response.host.as_str(), response.port),
            (host.as_str(), port)
        );
        assert_eq!(response.node_id, BrokerId(1));
    }
    for version in 4..=6 {
        let keys = vec![
            StrBytes::from_static_str("g1"),
            StrBytes::from_static_str("g2"),
        ];
        let request = FindCoordinatorRequest::default().with_coordinator_keys(keys);
        let response: FindCoordinatorResponse =
            raw.call(ApiKey::FindCoordinator, version, &request);
        assert_eq!(response.coordinators.len(), 2);
        for c in &response.coordinators {
            assert_eq!(
                (c.host.as_str(), c.port, c.error_code),
                (host.as_str(), port, 0)
            );
        }
    }
}

#[test]
fn pipelined_responses_come_back_in_request_order() {
    let kelp = kelp();
    let mut raw = Raw::connect(kelp.addr());
    // Backend-forwarded, rewritten and locally answered requests, all written before any read.
    let mut sent = Vec::new();
    for round in 0..20 {
        sent.push((
            ApiKey::Metadata,
            7,
            raw.send(ApiKey::Metadata, 7, &metadata(None)),
        ));
        sent.push((
            ApiKey::ApiVersions,
            3,
            raw.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        ));
        let find =
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(format!("g{round}")));
        sent.push((
            ApiKey::FindCoordinator,
            2,
            raw.send(ApiKey::FindCoordinator, 2, &find),
        ));
        let list_offsets = ListOffsetsRequest::default().with_replica_id(BrokerId(-1));
        sent.push((
            ApiKey::ListOffsets,
            1,
            raw.send(ApiKey::ListOffsets, 1, &list_offsets),
        ));
    }
    for (api, version, corr) in sent {
        let mut frame = raw.recv_frame().expect("response");
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, corr, "{api:?} out of order");
    }
}

fn records(n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 0,
            delete_horizon: false,
            key: None,
            value: Some(Bytes::from(format!("acks0-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).unwrap();
    buf.freeze()
}

fn produce(topic: &str, acks: i16, n: usize) -> ProduceRequest {
    let partition = PartitionProduceData::default()
        .with_index(0)
        .with_records(Some(records(n)));
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![partition])])
}

#[test]
fn produce_with_acks_zero_gets_no_response_and_does_not_stall() {
    let kelp = kelp();
    support::create_topic(kelp.addr(), "wire-acks0", 1);
    let mut raw = Raw::connect(kelp.addr());
    let started = Instant::now();
    for _ in 0..5 {
        raw.send(ApiKey::Produce, 7, &produce("wire-acks0", 0, 10));
    }
    let acked = raw.send(ApiKey::Produce, 7, &produce("wire-acks0", 1, 10));
    let meta = raw.send(ApiKey::Metadata, 7, &metadata(Some("wire-acks0")));
    // The first response on the wire is the acks=1 produce, then the metadata.
    let (corr, response) = raw.recv::<ProduceResponse>(ApiKey::Produce, 7);
    assert_eq!(corr, acked);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let (corr, _) = raw.recv::<MetadataResponse>(ApiKey::Metadata, 7);
    assert_eq!(corr, meta);
    assert!(started.elapsed() < Duration::from_secs(15));
}

fn connection_errors(kelp: &support::Kelp, reason: &str) -> u64 {
    let needle = format!("kelp_connection_errors_total{{reason=\"{reason}\"}} ");
    metrics(kelp)
        .lines()
        .find_map(|line| {
            line.strip_prefix(&needle)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Sends `bytes` on a fresh connection and checks kelp closes it, counts it, and keeps serving others.
fn assert_closed_and_counted(
    kelp: &support::Kelp,
    bystander: &mut Raw,
    bytes: &[u8],
    reason: &str,
) {
    let before = connection_errors(kelp, reason);
    let mut raw = Raw::connect(kelp.addr());
    let _ = raw.send_bytes(bytes);
    assert!(raw.is_closed(), "{reason}: connection still open");
    let deadline = Instant::now() + Duration::from_secs(5);
    while connection_errors(kelp, reason) != before + 1 {
        assert!(
            Instant::now() < deadline,
            "{reason}: metric not incremented"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        api_versions(bystander, 3).error_code,
        0,
        "{reason}: bystander affected"
    );
    assert_eq!(
        api_versions(&mut Raw::connect(kelp.addr()), 0).error_code,
        0
    );
}

#[test]
fn bad_input_closes_only_that_connection() {
    let mut kelp = support::Kelp::start(&["--max-frame-bytes", "65536"]);
    let mut bystander = Raw::connect(kelp.addr());
    assert_eq!(api_versions(&mut bystander, 3).error_code, 0);

    // A frame over the maximum (only its length is sent).
    assert_closed_and_counted(
        &kelp,
        &mut bystander,
        &(1i32 << 20).to_be_bytes(),
        "frame_too_large",
    );
    // A negative length.
    assert_closed_and_counted(
        &kelp,
        &mut bystander,
        &(-5i32).to_be_bytes(),
        "frame_too_large",
    );
    // A frame too short to hold a request header.
    assert_closed_and_counted(&kelp, &mut bystander, &[0, 0, 0, 3, 0, 18, 0], "bad_header");
    // A client id length that runs past the frame.
    let truncated = [0, 0, 0, 11, 0, 3, 0, 1, 0, 0, 0, 9, 0, 40, b'x'];
    assert_closed_and_counted(&kelp, &mut bystander, &truncated, "bad_header");
    // An unknown API key.
    let unknown = [0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff];
    assert_closed_and_counted(&kelp, &mut bystander, &unknown, "unknown_api");
    // A known API kelp neither serves nor forwards (ShareGroupHeartbeat, KIP-932).
    let unserved = [0, 0, 0, 11, 0, 76, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0];
    assert_closed_and_counted(&kelp, &mut bystander, &unserved, "unsupported_api");
    // A body that does not decode, for an API kelp reads (FindCoordinator v3, flexible).
    let garbage = [
        0, 0, 0, 14, 0, 10, 0, 3, 0, 0, 0, 1, 0xff, 0xff, 0, 0xff, 0xff, 0xff,
    ];
    assert_closed_and_counted(&kelp, &mut bystander, &garbage, "bad_body");
    assert!(kelp.is_running(), "kelp exited:\n{}", kelp.log());
}
