//! The access checks of the forwarded APIs, per topic as Kafka's request handlers do: Produce
//! (Write), Fetch (Read), ListOffsets and Metadata (Describe), CreateTopics (Create on the cluster
//! or the topic), DeleteTopics (Delete), DescribeCluster (Describe on the cluster). Produce and
//! Fetch are decoded with kafka-protocol, whose record sets stay uninterpreted bytes: only topic
//! names are read. The other forwarded APIs are checked as a whole against the cluster resource,
//! and a refusal closes the connection (kelp has no per-resource answer for them yet).

use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeClusterResponse, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader,
};

use super::{
    refuse, Ctx, Operation, ResourceType, Verdict, CLUSTER_AUTHORIZATION_FAILED,
    TOPIC_AUTHORIZATION_FAILED,
};
use crate::protocol::{decode_request, FrameError};

const TOPIC: ResourceType = ResourceType::Topic;
const CLUSTER: &str = "kafka-cluster";

fn decode<T: kafka_protocol::protocol::Decodable>(
    ctx: &Ctx,
    frame: &Bytes,
) -> Result<(RequestHeader, T), FrameError> {
    decode_request(frame.slice(4..), &ctx.peek)
}

fn client_id(header: &RequestHeader) -> Option<String> {
    header.client_id.as_ref().map(|c| c.to_string())
}

/// Checks one forwarded request (see the module docs).
pub fn check(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    match ctx.peek.api_key {
        ApiKey::Produce => produce(ctx, frame),
        ApiKey::Fetch => fetch(ctx, frame),
        ApiKey::ListOffsets => list_offsets(ctx, frame),
        ApiKey::Metadata => metadata(ctx, frame),
        ApiKey::CreateTopics => create_topics(ctx, frame),
        ApiKey::DeleteTopics => delete_topics(ctx, frame),
        ApiKey::DescribeCluster => {
            if ctx.allowed(ResourceType::Cluster, CLUSTER, Operation::Describe) {
                return Ok(Verdict::Pass);
            }
            let refused =
                DescribeClusterResponse::default().with_error_code(CLUSTER_AUTHORIZATION_FAILED);
            Ok(Verdict::Answer(Some(ctx.response(&refused)?)))
        }
        api => {
            let op = match api {
                ApiKey::DeleteRecords => Operation::Delete,
                ApiKey::InitProducerId => Operation::IdempotentWrite,
                ApiKey::OffsetForLeaderEpoch => Operation::Describe,
                ApiKey::DescribeConfigs => Operation::DescribeConfigs,
                ApiKey::AlterConfigs | ApiKey::IncrementalAlterConfigs => Operation::AlterConfigs,
                _ => Operation::Alter,
            };
            if ctx.allowed(ResourceType::Cluster, CLUSTER, op) {
                Ok(Verdict::Pass)
            } else {
                Ok(Verdict::Close(format!(
                    "{api:?} refused: it needs {op:?} on the cluster"
                )))
            }
        }
    }
}

fn produce(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<ProduceRequest>(ctx, frame)?;
    let refused = refuse(&mut request.topic_data, |t| {
        ctx.allowed(TOPIC, &t.name, Operation::Write)
    });
    if refused.is_empty() {
        return Ok(Verdict::Pass);
    }
    if request.acks == 0 {
        // No answer is expected: the refused records are dropped, as Kafka does.
        return Ok(match request.topic_data.is_empty() {
            true => Verdict::Answer(None),
            false => Verdict::Rewrite {
                frame: Some(ctx.request(client_id(&header).as_deref(), &request)?),
                patch: None,
            },
        });
    }
    let fill = move |r: &mut ProduceResponse| {
        r.responses.extend(refused.into_iter().map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_base_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        }))
    };
    let empty = request.topic_data.is_empty();
    ctx.finish(client_id(&header).as_deref(), &request, empty, fill)
}

fn fetch(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<FetchRequest>(ctx, frame)?;
    let refused = refuse(&mut request.topics, |t| {
        ctx.allowed(TOPIC, &t.topic, Operation::Read)
    });
    if refused.is_empty() {
        return Ok(Verdict::Pass);
    }
    let fill = move |r: &mut FetchResponse| {
        r.responses.extend(refused.into_iter().map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        }))
    };
    let empty = request.topics.is_empty();
    ctx.finish(client_id(&header).as_deref(), &request, empty, fill)
}

fn list_offsets(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<ListOffsetsRequest>(ctx, frame)?;
    let refused = refuse(&mut request.topics, |t| {
        ctx.allowed(TOPIC, &t.name, Operation::Describe)
    });
    if refused.is_empty() {
        return Ok(Verdict::Pass);
    }
    let fill = move |r: &mut ListOffsetsResponse| {
        r.topics.extend(refused.into_iter().map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect(),
                )
        }))
    };
    let empty = request.topics.is_empty();
    ctx.finish(client_id(&header).as_deref(), &request, empty, fill)
}

/// Metadata lists only the topics the principal may Describe; a topic asked for by name and
/// refused is listed with TOPIC_AUTHORIZATION_FAILED (and is not asked of the gateway, which
/// could create it). A topic asked for by id (v10+) is checked by the name the id has
/// (`topics::TopicIds`); an id no topic has goes on (kelp answers it UNKNOWN_TOPIC_ID).
fn metadata(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<MetadataRequest>(ctx, frame)?;
    let mut refused = Vec::new();
    let mut reduced = None;
    if let Some(topics) = &mut request.topics {
        refused = refuse(topics, |t| {
            let by_id = crate::topics::metadata::asked_by_id(t);
            match (&t.name, by_id) {
                (_, true) => match (ctx.topic_name)(t.topic_id) {
                    Some(name) => ctx.allowed(TOPIC, &name, Operation::Describe),
                    None => true, // An id no topic has: answered UNKNOWN_TOPIC_ID.
                },
                (Some(name), false) => ctx.allowed(TOPIC, name, Operation::Describe),
                (None, false) => false,
            }
        });
        // v0 reads an empty list as "every topic": keep the request as it was there.
        if !refused.is_empty() && ctx.peek.api_version > 0 {
            reduced = Some(ctx.request(client_id(&header).as_deref(), &request)?);
        }
    }
    // Which topics may be listed is decided now, under the rules this request was checked by.
    let rules: Vec<super::Rule> = ctx.rules.to_vec();
    let version = ctx.peek.api_version;
    let topic_ops = request.include_topic_authorized_operations && version >= 8;
    let cluster_ops = request.include_cluster_authorized_operations && (8..=10).contains(&version);
    let patch = ctx.patch(move |r: &mut MetadataResponse| {
        r.topics.retain(|t| match &t.name {
            Some(n) => super::rules::decide(rules.iter(), TOPIC, n, Operation::Describe),
            // An id no topic has: it names nothing the principal may not see.
            None => t.error_code == crate::topics::metadata::UNKNOWN_TOPIC_ID,
        });
        // Authorized operations, when asked for: what the rules allow this principal.
        if topic_ops {
            for t in r.topics.iter_mut().filter(|t| t.error_code == 0) {
                if let Some(n) = &t.name {
                    t.topic_authorized_operations = allowed_operations(&rules, TOPIC, n);
                }
            }
        }
        if cluster_ops {
            r.cluster_authorized_operations =
                allowed_operations(&rules, ResourceType::Cluster, CLUSTER);
        }
        r.topics.extend(refused.into_iter().map(|t| {
            MetadataResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        }));
    });
    Ok(Verdict::Rewrite {
        frame: reduced,
        patch: Some(patch),
    })
}

/// The authorized-operations bitfield of a topic or the cluster under `rules`.
fn allowed_operations(rules: &[super::Rule], resource: ResourceType, name: &str) -> i32 {
    use crate::topics::metadata::{operations, CLUSTER_OPERATIONS, TOPIC_OPERATIONS};
    let codes: &[u8] = match resource {
        ResourceType::Cluster => &CLUSTER_OPERATIONS,
        _ => &TOPIC_OPERATIONS,
    };
    operations(codes.iter().copied().filter(|code| {
        Operation::from_acl_code(*code)
            .is_some_and(|op| super::rules::decide(rules.iter(), resource, name, op))
    }))
}

fn create_topics(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<CreateTopicsRequest>(ctx, frame)?;
    let cluster_wide = super::rules::decide(
        ctx.rules.iter(),
        ResourceType::Cluster,
        CLUSTER,
        Operation::Create,
    );
    if cluster_wide {
        return Ok(Verdict::Pass);
    }
    let refused = refuse(&mut request.topics, |t| {
        ctx.allowed(TOPIC, &t.name, Operation::Create)
    });
    if refused.is_empty() {
        return Ok(Verdict::Pass);
    }
    let fill = move |r: &mut CreateTopicsResponse| {
        r.topics.extend(refused.into_iter().map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name)
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        }))
    };
    let empty = request.topics.is_empty();
    ctx.finish(client_id(&header).as_deref(), &request, empty, fill)
}

fn delete_topics(ctx: &Ctx, frame: &Bytes) -> Result<Verdict, FrameError> {
    let (header, mut request) = decode::<DeleteTopicsRequest>(ctx, frame)?;
    // v0–5 name topics in `topic_names`, v6+ in `topics` (by name, or by id: refused).
    let by_name = refuse(&mut request.topic_names, |t| {
        ctx.allowed(TOPIC, t, Operation::Delete)
    });
    let by_state = refuse(&mut request.topics, |t| {
        t.name
            .as_ref()
            .is_some_and(|n| ctx.allowed(TOPIC, n, Operation::Delete))
    });
    if by_name.is_empty() && by_state.is_empty() {
        return Ok(Verdict::Pass);
    }
    let fill = move |r: &mut DeleteTopicsResponse| {
        let results = by_name
            .into_iter()
            .map(|n| (Some(n), Default::default()))
            .chain(by_state.into_iter().map(|t| (t.name, t.topic_id)));
        r.responses.extend(results.map(|(name, id)| {
            DeletableTopicResult::default()
                .with_name(name)
                .with_topic_id(id)
                .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        }))
    };
    let empty = request.topic_names.is_empty() && request.topics.is_empty();
    ctx.finish(client_id(&header).as_deref(), &request, empty, fill)
}
