//! The checks per API on hand-made requests: what goes on, what is answered, and how refused
//! entries come back into the answer.

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, GroupId, JoinGroupRequest,
    JoinGroupResponse, MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use prometheus::Registry;

use super::*;
use crate::modes::file::parse;
use crate::protocol::{decode_request, encode_response, peek, split_response};

const CONFIG: &str = r#"
[access]
[[access.rules]]
principal = "User:ANONYMOUS"
resource = "topic"
name = "orders-"
pattern_type = "prefixed"
operations = ["write", "read"]

[[access.rules]]
principal = "User:*"
resource = "topic"
name = "orders-audit"
operations = ["write"]
permission = "deny"

[[access.rules]]
principal = "User:ANONYMOUS"
resource = "group"
name = "team-a-*"
pattern_type = "glob"
operations = ["all"]
"#;

fn policy() -> Policy {
    parse(CONFIG).unwrap().access.expect("an [access] section")
}

struct Fixture {
    rules: Vec<Rule>,
    principal: Principal,
    denied: IntCounterVec,
    memo: Memo,
}

impl Fixture {
    fn new() -> Fixture {
        let principal = Principal::anonymous();
        Fixture {
            rules: policy().rules_for(&principal.names),
            principal,
            denied: denied_counter(&Registry::new()),
            memo: Memo::default(),
        }
    }

    fn check<T: Encodable>(&self, api: ApiKey, version: i16, body: &T) -> (Peek, Verdict) {
        let frame = encode_request(api, version, 7, Some("test"), body).unwrap();
        let peek = peek(&frame[4..]).unwrap();
        let ctx = Ctx {
            rules: &self.rules,
            principal: &self.principal,
            peek,
            denied: &self.denied,
            memo: &self.memo,
            topic_name: &|id| (id == uuid::Uuid::from_u128(1 << 100)).then(|| "billing".into()),
        };
        let verdict = match api {
            ApiKey::FindCoordinator => groups::check_answered(&ctx, &frame),
            ApiKey::JoinGroup | ApiKey::DeleteGroups | ApiKey::OffsetFetch => {
                groups::check(&ctx, &frame)
            }
            _ => data::check(&ctx, &frame),
        };
        (peek, verdict.unwrap())
    }

    fn denied(&self, api: &str, resource: &str) -> u64 {
        self.denied.with_label_values(&[api, resource]).get()
    }
}

fn response<T: Decodable>(api: ApiKey, version: i16, frame: &Bytes) -> T {
    let (corr, mut body) = split_response(frame.slice(4..), api, version).unwrap();
    assert_eq!(corr, 7, "the answer keeps the correlation id");
    T::decode(&mut body, version).unwrap()
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn gid(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn produce(topics: &[&str], acks: i16) -> ProduceRequest {
    ProduceRequest::default().with_acks(acks).with_topic_data(
        topics
            .iter()
            .map(|t| {
                TopicProduceData::default()
                    .with_name(topic(t))
                    .with_partition_data(vec![PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(Bytes::from_static(b"opaque records")))])
            })
            .collect(),
    )
}

#[test]
fn the_section_parses_and_errors_name_the_line() {
    assert!(parse("").unwrap().access.is_none(), "no section: no checks");
    let empty = parse("[access]\n").unwrap().access.unwrap();
    assert!(empty.rules.is_empty(), "an empty section denies everything");
    assert_eq!(policy().rules.len(), 3);
    let e = parse("[access]\n[[access.rules]]\nprincipal = \"*\"\nresource = \"topic\"\nname = \"t\"\noperations = [\"wirte\"]\n").unwrap_err();
    assert!(
        e.starts_with("line 2: access.rules[0]") && e.contains("wirte"),
        "{e}"
    );
    let e = parse("[access]\n[[access.rules]]\nprincipal = \"*\"\nresource = \"topics\"\nname = \"t\"\noperations = [\"read\"]\n").unwrap_err();
    assert!(e.contains("topics"), "{e}");
    let e = parse("[access]\n[[access.rules]]\nprincipal = \"*\"\nresource = \"topic\"\nname = \"t\"\noperations = []\n").unwrap_err();
    assert!(e.contains("operations is empty"), "{e}");
    let e = parse("[access]\ndefault = \"allow\"\n").unwrap_err();
    assert!(e.contains("default"), "{e}");
}

#[test]
fn produce_to_allowed_topics_goes_on_unchanged() {
    let f = Fixture::new();
    let (_, v) = f.check(ApiKey::Produce, 7, &produce(&["orders-1", "orders-2"], -1));
    assert!(matches!(v, Verdict::Pass));
    assert_eq!(f.denied("Produce", "topic"), 0);
}

#[test]
fn produce_refused_whole_is_answered_29_per_partition() {
    let f = Fixture::new();
    let (_, v) = f.check(
        ApiKey::Produce,
        7,
        &produce(&["billing", "orders-audit"], -1),
    );
    let Verdict::Answer(Some(frame)) = v else {
        panic!("not answered")
    };
    let r: ProduceResponse = response(ApiKey::Produce, 7, &frame);
    let got: Vec<(&str, i16)> = r
        .responses
        .iter()
        .map(|t| (t.name.as_str(), t.partition_responses[0].error_code))
        .collect();
    assert_eq!(got, [("billing", 29), ("orders-audit", 29)]);
    assert_eq!(f.denied("Produce", "topic"), 2);
    // acks=0: no answer at all, and nothing goes on.
    let (_, v) = f.check(ApiKey::Produce, 7, &produce(&["billing"], 0));
    assert!(matches!(v, Verdict::Answer(None)));
}

#[test]
fn produce_refused_in_part_goes_on_without_the_refused_topic() {
    let f = Fixture::new();
    let (peek, v) = f.check(ApiKey::Produce, 7, &produce(&["orders-1", "billing"], -1));
    let Verdict::Rewrite {
        frame: Some(frame),
        patch: Some(patch),
    } = v
    else {
        panic!("not rewritten")
    };
    let (header, reduced) = decode_request::<ProduceRequest>(frame.slice(4..), &peek).unwrap();
    assert_eq!(header.client_id.as_deref(), Some("test"));
    assert_eq!(reduced.topic_data.len(), 1);
    assert_eq!(reduced.topic_data[0].name.as_str(), "orders-1");
    assert_eq!(
        reduced.topic_data[0].partition_data[0].records.as_deref(),
        Some(&b"opaque records"[..]),
        "records pass untouched"
    );
    // The gateway's answer for orders-1, then the refused topic put back.
    let gateway = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(topic("orders-1"))
        .with_partition_responses(vec![
            PartitionProduceResponse::default().with_base_offset(41)
        ])]);
    let answer = patch(encode_response(ApiKey::Produce, 7, 7, &gateway).unwrap()).unwrap();
    let r: ProduceResponse = response(ApiKey::Produce, 7, &answer);
    let got: Vec<(&str, i16, i64)> = r
        .responses
        .iter()
        .map(|t| {
            let p = &t.partition_responses[0];
            (t.name.as_str(), p.error_code, p.base_offset)
        })
        .collect();
    assert_eq!(got, [("orders-1", 0, 41), ("billing", 29, -1)]);
}

#[test]
fn metadata_lists_only_describable_topics() {
    let f = Fixture::new();
    let all = MetadataRequest::default().with_topics(None);
    let (_, v) = f.check(ApiKey::Metadata, 9, &all);
    let Verdict::Rewrite {
        frame: None,
        patch: Some(patch),
    } = v
    else {
        panic!("an all-topics Metadata goes on unchanged, with a filter")
    };
    let listing = |names: &[&str]| {
        MetadataResponse::default().with_topics(
            names
                .iter()
                .map(|n| MetadataResponseTopic::default().with_name(Some(topic(n))))
                .collect(),
        )
    };
    let gateway = listing(&["orders-1", "billing", "orders-audit"]);
    let answer = patch(encode_response(ApiKey::Metadata, 9, 7, &gateway).unwrap()).unwrap();
    let r: MetadataResponse = response(ApiKey::Metadata, 9, &answer);
    let names: Vec<&str> = r
        .topics
        .iter()
        .map(|t| t.name.as_ref().map_or("", |n| n.as_str()))
        .collect();
    assert_eq!(
        names,
        ["orders-1", "orders-audit"],
        "Read on orders-* implies Describe; the Write deny does not deny Describe"
    );

    // A refused topic asked for by name is not asked of the gateway and comes back as 29.
    let named = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic("orders-1"))),
        MetadataRequestTopic::default().with_name(Some(topic("billing"))),
    ]));
    let (peek, v) = f.check(ApiKey::Metadata, 9, &named);
    let Verdict::Rewrite {
        frame: Some(frame),
        patch: Some(patch),
    } = v
    else {
        panic!("not rewritten")
    };
    let (_, reduced) = decode_request::<MetadataRequest>(frame.slice(4..), &peek).unwrap();
    assert_eq!(reduced.topics.unwrap().len(), 1);
    let answer =
        patch(encode_response(ApiKey::Metadata, 9, 7, &listing(&["orders-1"])).unwrap()).unwrap();
    let r: MetadataResponse = response(ApiKey::Metadata, 9, &answer);
    let got: Vec<(&str, i16)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().map_or("", |n| n.as_str()), t.error_code))
        .collect();
    assert_eq!(got, [("orders-1", 0), ("billing", 29)]);
}

#[test]
fn a_refused_group_is_answered_30_and_never_joins() {
    let f = Fixture::new();
    let join = JoinGroupRequest::default()
        .with_group_id(gid("team-b-billing"))
        .with_protocol_type(StrBytes::from_static_str("consumer"));
    let (_, v) = f.check(ApiKey::JoinGroup, 5, &join);
    let Verdict::Answer(Some(frame)) = v else {
        panic!("not answered")
    };
    let r: JoinGroupResponse = response(ApiKey::JoinGroup, 5, &frame);
    assert_eq!(r.error_code, 30);
    assert_eq!(f.denied("JoinGroup", "group"), 1);
    let ok = join.with_group_id(gid("team-a-billing"));
    assert!(matches!(
        f.check(ApiKey::JoinGroup, 5, &ok).1,
        Verdict::Pass
    ));
}

#[test]
fn delete_groups_is_answered_per_group_in_request_order() {
    let f = Fixture::new();
    let request = DeleteGroupsRequest::default().with_groups_names(vec![
        gid("team-b-1"),
        gid("team-a-1"),
        gid("team-b-2"),
    ]);
    let (peek, v) = f.check(ApiKey::DeleteGroups, 2, &request);
    let Verdict::Rewrite {
        frame: Some(frame),
        patch: Some(patch),
    } = v
    else {
        panic!("not rewritten")
    };
    let (_, reduced) = decode_request::<DeleteGroupsRequest>(frame.slice(4..), &peek).unwrap();
    assert_eq!(reduced.groups_names, vec![gid("team-a-1")]);
    let owner = DeleteGroupsResponse::default().with_results(vec![
        DeletableGroupResult::default().with_group_id(gid("team-a-1"))
    ]);
    let answer = patch(encode_response(ApiKey::DeleteGroups, 2, 7, &owner).unwrap()).unwrap();
    let r: DeleteGroupsResponse = response(ApiKey::DeleteGroups, 2, &answer);
    let got: Vec<(&str, i16)> = r
        .results
        .iter()
        .map(|g| (g.group_id.as_str(), g.error_code))
        .collect();
    assert_eq!(got, [("team-b-1", 30), ("team-a-1", 0), ("team-b-2", 30)]);
    // None allowed: answered here, nothing goes on.
    let none = DeleteGroupsRequest::default().with_groups_names(vec![gid("x")]);
    assert!(matches!(
        f.check(ApiKey::DeleteGroups, 2, &none).1,
        Verdict::Answer(Some(_))
    ));
}

#[test]
fn find_coordinator_refuses_a_group_key() {
    use kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};
    let f = Fixture::new();
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("team-b"));
    let (_, v) = f.check(ApiKey::FindCoordinator, 3, &request);
    let Verdict::Rewrite {
        frame: None,
        patch: Some(patch),
    } = v
    else {
        panic!("not patched")
    };
    let kelp = FindCoordinatorResponse::default()
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(9092);
    let answer = patch(encode_response(ApiKey::FindCoordinator, 3, 7, &kelp).unwrap()).unwrap();
    let r: FindCoordinatorResponse = response(ApiKey::FindCoordinator, 3, &answer);
    assert_eq!((r.error_code, r.port), (30, -1));
}

#[test]
fn an_undecodable_answer_is_an_error_not_a_leak() {
    let f = Fixture::new();
    let (_, v) = f.check(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default().with_topics(None),
    );
    let Verdict::Rewrite {
        patch: Some(patch), ..
    } = v
    else {
        panic!()
    };
    assert!(patch(Bytes::from_static(&[0, 0, 0, 3, 1, 2, 3])).is_err());
}

/// The benchmark's 20-rule section (benches/proxy/access-20.toml) is a valid config and lets the
/// benchmark's client produce and fetch its topics.
#[test]
fn the_benchmark_rules_parse_and_allow_the_benchmark() {
    let policy = parse(include_str!("../../benches/proxy/access-20.toml"))
        .unwrap()
        .access
        .unwrap();
    assert_eq!(policy.rules.len(), 20);
    let anon = Principal::anonymous().names;
    assert_eq!(policy.rules_for(&anon).len(), 20, "every rule applies");
    for op in [Operation::Write, Operation::Read, Operation::Create] {
        assert!(policy.authorize(&anon, ResourceType::Topic, "kelp-bench-produce", op));
    }
    assert!(!policy.authorize(
        &anon,
        ResourceType::Topic,
        "kelp-bench-secret",
        Operation::Read
    ));
}

#[test]
fn offset_fetch_marks_refused_topics_and_hides_them_from_an_all_topics_answer() {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
    let f = Fixture::new();
    let committed = |names: &[&str]| {
        OffsetFetchResponse::default().with_topics(
            names
                .iter()
                .map(|n| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic(n))
                        .with_partitions(vec![
                            OffsetFetchResponsePartition::default().with_committed_offset(12)
                        ])
                })
                .collect(),
        )
    };
    let got = |r: &OffsetFetchResponse| -> Vec<(String, i16, i64)> {
        r.topics
            .iter()
            .map(|t| {
                let p = &t.partitions[0];
                (t.name.to_string(), p.error_code, p.committed_offset)
            })
            .collect()
    };
    // v5, topics named: the refused one is answered 29 with no offset.
    let named = OffsetFetchRequest::default()
        .with_group_id(gid("team-a-1"))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(topic("orders-1"))
                .with_partition_indexes(vec![0]),
            OffsetFetchRequestTopic::default()
                .with_name(topic("billing"))
                .with_partition_indexes(vec![0]),
        ]));
    let (_, v) = f.check(ApiKey::OffsetFetch, 5, &named);
    let Verdict::Rewrite {
        frame: None,
        patch: Some(patch),
    } = v
    else {
        panic!("not patched")
    };
    let answer = committed(&["orders-1", "billing"]);
    let out = patch(encode_response(ApiKey::OffsetFetch, 5, 7, &answer).unwrap()).unwrap();
    let r: OffsetFetchResponse = response(ApiKey::OffsetFetch, 5, &out);
    assert_eq!(
        got(&r),
        [("orders-1".into(), 0, 12), ("billing".into(), 29, -1)]
    );
    // v5, all topics: the refused one is left out.
    let all = OffsetFetchRequest::default()
        .with_group_id(gid("team-a-1"))
        .with_topics(None);
    let Verdict::Rewrite {
        patch: Some(patch), ..
    } = f.check(ApiKey::OffsetFetch, 5, &all).1
    else {
        panic!("not patched")
    };
    let out = patch(encode_response(ApiKey::OffsetFetch, 5, 7, &answer).unwrap()).unwrap();
    let r: OffsetFetchResponse = response(ApiKey::OffsetFetch, 5, &out);
    assert_eq!(got(&r), [("orders-1".into(), 0, 12)]);
    // A group it may not describe: 30, nothing goes on.
    let other = named.with_group_id(gid("team-b-1"));
    let Verdict::Answer(Some(frame)) = f.check(ApiKey::OffsetFetch, 5, &other).1 else {
        panic!("not answered")
    };
    let r: OffsetFetchResponse = response(ApiKey::OffsetFetch, 5, &frame);
    assert_eq!(r.error_code, 30);
}

#[test]
fn remembered_decisions_answer_as_the_rules_do() {
    let f = Fixture::new();
    let ctx_rules = &f.rules;
    for round in 0..3 {
        for (name, op) in (0..12).flat_map(|i| {
            [
                (format!("orders-{i}"), Operation::Write),
                (format!("billing-{i}"), Operation::Read),
                ("orders-audit".to_string(), Operation::Write),
            ]
        }) {
            let remembered = f.memo.decide(ctx_rules, ResourceType::Topic, &name, op);
            let walked = rules::decide(ctx_rules.iter(), ResourceType::Topic, &name, op);
            assert_eq!(remembered, walked, "round {round}: {name} {op:?}");
        }
    }
    assert!(f.memo.0.borrow().len() <= MEMO_ENTRIES, "bounded");
}

#[test]
fn metadata_by_topic_id_is_checked_by_the_topics_name() {
    let f = Fixture::new();
    let billing = uuid::Uuid::from_u128(1 << 100); // the fixture's registry: `billing`
    let unknown = uuid::Uuid::from_u128(2);
    let by_id = |id| {
        MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id)
    };
    let request =
        MetadataRequest::default().with_topics(Some(vec![by_id(billing), by_id(unknown)]));
    let (peek, v) = f.check(ApiKey::Metadata, 12, &request);
    let Verdict::Rewrite {
        frame: Some(frame),
        patch: Some(patch),
    } = v
    else {
        panic!("not rewritten")
    };
    // `billing` may not be described: not asked; the id no topic has goes on.
    let (_, reduced) = decode_request::<MetadataRequest>(frame.slice(4..), &peek).unwrap();
    let asked: Vec<_> = reduced.topics.unwrap().iter().map(|t| t.topic_id).collect();
    assert_eq!(asked, [unknown]);
    let kelp_answer =
        MetadataResponse::default().with_topics(vec![MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(unknown)
            .with_error_code(100)]);
    let answer = patch(encode_response(ApiKey::Metadata, 12, 7, &kelp_answer).unwrap()).unwrap();
    let r: MetadataResponse = response(ApiKey::Metadata, 12, &answer);
    let got: Vec<(uuid::Uuid, i16)> = r
        .topics
        .iter()
        .map(|t| (t.topic_id, t.error_code))
        .collect();
    assert_eq!(got, [(unknown, 100), (billing, 29)]);
    assert_eq!(f.denied("Metadata", "topic"), 1);
}

#[test]
fn metadata_authorized_operations_are_what_the_rules_allow() {
    let f = Fixture::new();
    let all = MetadataRequest::default()
        .with_topics(None)
        .with_include_topic_authorized_operations(true)
        .with_include_cluster_authorized_operations(true);
    let (_, v) = f.check(ApiKey::Metadata, 10, &all);
    let Verdict::Rewrite {
        patch: Some(patch), ..
    } = v
    else {
        panic!("not patched")
    };
    let every = crate::topics::metadata::operations(crate::topics::metadata::TOPIC_OPERATIONS);
    let listing = MetadataResponse::default()
        .with_cluster_authorized_operations(-1)
        .with_topics(
            ["orders-1", "orders-audit"]
                .iter()
                .map(|n| {
                    MetadataResponseTopic::default()
                        .with_name(Some(topic(n)))
                        .with_topic_authorized_operations(every)
                })
                .collect(),
        );
    let answer = patch(encode_response(ApiKey::Metadata, 10, 7, &listing).unwrap()).unwrap();
    let r: MetadataResponse = response(ApiKey::Metadata, 10, &answer);
    let ops = |i: usize| r.topics[i].topic_authorized_operations;
    // READ (3), WRITE (4) and DESCRIBE (8, implied by READ) on orders-*; WRITE denied on the audit.
    assert_eq!(ops(0), (1 << 3) | (1 << 4) | (1 << 8));
    assert_eq!(ops(1), (1 << 3) | (1 << 8));
    assert_eq!(r.cluster_authorized_operations, 0, "nothing on the cluster");
}
