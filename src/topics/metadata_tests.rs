//! Metadata v8+ answered from the gateway's v7: request translation by name and by id, the
//! answer with ids, unknown ids, topics learned from the answer.

use super::*;
use crate::topics::tests::registry;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

fn me() -> Identity {
    Identity {
        node_id: 7,
        host: StrBytes::from_static_str("127.0.0.1"),
        port: 19092,
    }
}

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

/// A client's Metadata request frame body (no length prefix) and its peek.
fn client_request(version: i16, topics: Option<Vec<MetadataRequestTopic>>) -> (Peek, Bytes) {
    let request = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(version >= 8);
    let frame = encode_request(ApiKey::Metadata, version, 77, Some("rdkafka"), &request).unwrap();
    let peek = Peek {
        api_key: ApiKey::Metadata,
        api_version: version,
        correlation_id: 77,
    };
    (peek, frame.slice(4..))
}

/// What the gateway asked at `version` receives.
fn gateway_side(frame: Bytes, version: i16) -> MetadataRequest {
    let peek = Peek {
        api_key: ApiKey::Metadata,
        api_version: version,
        correlation_id: 77,
    };
    let (header, request) = decode_request(frame.slice(4..), &peek).unwrap();
    assert_eq!(header.correlation_id, 77);
    assert_eq!(header.request_api_version, version);
    assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
    request
}

/// The gateway's v7 answer listing `topics` (name, partitions, error).
fn gateway_answer(topics: &[(&str, i32, i16)]) -> Bytes {
    let response = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(9093)])
        .with_controller_id(BrokerId(1))
        .with_topics(
            topics
                .iter()
                .map(|(n, partitions, error)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(name(n)))
                        .with_error_code(*error)
                        .with_partitions(
                            (0..*partitions)
                                .map(|i| {
                                    MetadataResponsePartition::default()
                                        .with_partition_index(i)
                                        .with_leader_id(BrokerId(1))
                                        .with_leader_epoch(0)
                                })
                                .collect(),
                        )
                })
                .collect(),
        );
    encode_response(ApiKey::Metadata, 7, 77, &response)
        .unwrap()
        .slice(4..)
}

async fn client_answer(answer: Answer, version: i16) -> MetadataResponse {
    let frame = match answer {
        Answer::Now(frame) => frame,
        Answer::Later(later) => later.await.unwrap(),
    };
    let (corr, mut body) = split_response(frame.slice(4..), ApiKey::Metadata, version).unwrap();
    assert_eq!(corr, 77);
    MetadataResponse::decode(&mut body, version).unwrap()
}

#[tokio::test]
async fn topics_by_name_and_by_id_are_asked_by_name() {
    let ids = registry();
    ids.install(0, vec![("a".into(), 2)], None).await;
    let a = ids.id_of("a").unwrap();
    let unknown = Uuid::from_u128(0x1234);
    let topics = vec![
        MetadataRequestTopic::default().with_name(Some(name("x"))),
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(a),
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(unknown),
    ];
    let (peek, body) = client_request(12, Some(topics));
    let (frame, plan) = translate(&peek, body, &ids, 7).unwrap();
    let asked = gateway_side(frame, 7);
    let names: Vec<String> = asked
        .topics
        .unwrap()
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(names, vec!["x", "a"]);
    assert!(!asked.allow_auto_topic_creation);
    assert_eq!(plan.unknown_ids, vec![unknown]);
    assert_eq!(plan.client_version, 12);

    // The answer: ids filled in, kelp the only broker, the unknown id answered 100.
    let answered = answer(
        plan,
        gateway_answer(&[("a", 2, 0), ("x", 0, 3)]),
        &me(),
        &ids,
    )
    .unwrap();
    let got = client_answer(answered, 12).await;
    assert_eq!(got.brokers.len(), 1);
    assert_eq!(got.brokers[0].node_id, BrokerId(7));
    assert_eq!(got.brokers[0].port, 19092);
    let by_name = |n: &str| {
        got.topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|x| x.0.as_str() == n))
            .unwrap()
    };
    assert_eq!(by_name("a").topic_id, a);
    assert_eq!(by_name("a").partitions.len(), 2);
    assert_eq!(by_name("a").partitions[0].leader_id, BrokerId(7));
    // Asked for (client_request sets it): kelp alone allows every topic operation.
    assert_eq!(by_name("a").topic_authorized_operations, 0b1101_1111_1000);
    assert_eq!(by_name("x").topic_authorized_operations, i32::MIN);
    assert_eq!(by_name("x").error_code, 3);
    assert!(by_name("x").topic_id.is_nil(), "an unknown topic has no id");
    let missing: Vec<_> = got.topics.iter().filter(|t| t.name.is_none()).collect();
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].topic_id, unknown);
    assert_eq!(missing[0].error_code, UNKNOWN_TOPIC_ID);
}

#[tokio::test]
async fn every_topic_gets_an_id_including_those_created_a_moment_ago() {
    let ids = registry();
    ids.install(0, vec![("old".into(), 1)], None).await;
    let (peek, body) = client_request(12, None);
    let (frame, plan) = translate(&peek, body, &ids, 7).unwrap();
    assert_eq!(gateway_side(frame, 7).topics, None, "every topic");
    let answered = answer(
        plan,
        gateway_answer(&[("old", 1, 0), ("new", 3, 0)]),
        &me(),
        &ids,
    )
    .unwrap();
    assert!(
        matches!(answered, Answer::Later(_)),
        "`new` is learned first"
    );
    let got = client_answer(answered, 12).await;
    assert_eq!(got.topics.len(), 2);
    for topic in &got.topics {
        let n = topic.name.as_ref().unwrap().0.to_string();
        assert!(!topic.topic_id.is_nil(), "{n}");
        assert_eq!(ids.id_of(&n), Some(topic.topic_id));
    }
    // Now known: the next answer is immediate.
    let (peek, body) = client_request(12, None);
    let (_, plan) = translate(&peek, body, &ids, 7).unwrap();
    let answered = answer(
        plan,
        gateway_answer(&[("old", 1, 0), ("new", 3, 0)]),
        &me(),
        &ids,
    )
    .unwrap();
    assert!(matches!(answered, Answer::Now(_)));
}

#[tokio::test]
async fn every_version_above_the_gateways_encodes() {
    let ids = registry();
    ids.install(0, vec![("a".into(), 1)], None).await;
    for version in 8..=13 {
        let topics = vec![MetadataRequestTopic::default().with_name(Some(name("a")))];
        let (peek, body) = client_request(version, Some(topics));
        let (frame, plan) = translate(&peek, body, &ids, 7).unwrap();
        gateway_side(frame, 7);
        let answered = answer(plan, gateway_answer(&[("a", 1, 0)]), &me(), &ids).unwrap();
        let got = client_answer(answered, version).await;
        let want = if version >= 10 {
            ids.id_of("a").unwrap()
        } else {
            Uuid::nil()
        };
        assert_eq!(got.topics[0].topic_id, want, "v{version}");
        assert_eq!(
            got.topics[0].topic_authorized_operations,
            operations(TOPIC_OPERATIONS)
        );
        assert_eq!(got.controller_id, BrokerId(7));
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let ids = registry();
    let peek = Peek {
        api_key: ApiKey::Metadata,
        api_version: 12,
        correlation_id: 1,
    };
    let plan = || Plan {
        client_version: 12,
        gateway_version: 7,
        unknown_ids: Vec::new(),
        topic_operations: false,
        cluster_operations: false,
    };
    for len in 0..64 {
        let frame: Bytes = (0..len)
            .map(|i| (i * 37 % 256) as u8)
            .collect::<Vec<u8>>()
            .into();
        let _ = translate(&peek, frame.clone(), &ids, 7);
        let _ = answer(plan(), frame, &me(), &ids);
    }
}

#[tokio::test]
async fn authorized_operations_not_asked_for_are_not_requested() {
    let ids = registry();
    ids.install(0, vec![("a".into(), 1)], None).await;
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_include_cluster_authorized_operations(true);
    let frame = encode_request(ApiKey::Metadata, 10, 77, Some("rdkafka"), &request).unwrap();
    let peek = Peek {
        api_key: ApiKey::Metadata,
        api_version: 10,
        correlation_id: 77,
    };
    let (_, plan) = translate(&peek, frame.slice(4..), &ids, 7).unwrap();
    let answered = answer(plan, gateway_answer(&[("a", 1, 0)]), &me(), &ids).unwrap();
    let got = client_answer(answered, 10).await;
    assert_eq!(got.topics[0].topic_authorized_operations, i32::MIN);
    assert_eq!(
        got.cluster_authorized_operations,
        operations(CLUSTER_OPERATIONS)
    );
}
