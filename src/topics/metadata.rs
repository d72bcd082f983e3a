//! Metadata above the gateway's versions (v8–13: authorized operations, topic ids, lookups by id),
//! answered by kelp from the gateway's highest version: the client's request is decoded, topics
//! named by id are named by the registry (an unknown id is answered UNKNOWN_TOPIC_ID for that
//! entry), the request goes to the gateway at its version with the same correlation id, and the
//! answer comes back rewritten to name kelp (`backend::rewrite`), with every topic's id from the
//! registry, encoded at the client's version. Versions the gateway serves never come here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};
use uuid::Uuid;

use super::TopicIds;
use crate::backend::rewrite::rewrite_metadata;
use crate::backend::Identity;
use crate::protocol::{decode_request, encode_request, encode_response, split_response};
use crate::protocol::{FrameError, Peek};

/// Kafka's UNKNOWN_TOPIC_ID.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
/// Kafka's value of an authorized-operations field that was not asked for.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// Kafka's AclOperation codes of the operations on a topic (READ, WRITE, CREATE, DELETE, ALTER,
/// DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS) and on the cluster (CREATE, ALTER, DESCRIBE,
/// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE).
pub const TOPIC_OPERATIONS: [u8; 8] = [3, 4, 5, 6, 7, 8, 10, 11];
pub const CLUSTER_OPERATIONS: [u8; 7] = [5, 7, 8, 9, 10, 11, 12];

/// An authorized-operations bitfield of AclOperation codes.
pub fn operations(codes: impl IntoIterator<Item = u8>) -> i32 {
    codes.into_iter().fold(0, |bits, code| bits | (1 << code))
}

/// What the answer to one translated request needs.
#[derive(Debug)]
pub struct Plan {
    /// The client's version (the answer's) and the gateway's (the request sent).
    pub client_version: i16,
    pub gateway_version: i16,
    /// Topics the client asked for by an id the registry does not know, in request order.
    pub unknown_ids: Vec<Uuid>,
    /// Whether the client asked for the topics' (v8+) and the cluster's (v8–10) authorized
    /// operations: kelp alone allows everything (`[access]` rules narrow it, `access::data`).
    pub topic_operations: bool,
    pub cluster_operations: bool,
}

/// The answer to a translated request: ready, or after the registry learned new topics.
pub enum Answer {
    Now(Bytes),
    Later(Pin<Box<dyn Future<Output = Result<Bytes, String>> + Send>>),
}

/// Whether a requested topic is named by id (v10+): the id set and the name null (or empty).
pub fn asked_by_id(topic: &MetadataRequestTopic) -> bool {
    let no_name = match &topic.name {
        None => true,
        Some(name) => name.0.is_empty(),
    };
    no_name && !topic.topic_id.is_nil()
}

/// Decodes the client's Metadata request (`frame` without its length prefix) and encodes the one
/// to send the gateway at `gateway_version` (a frame with its length prefix).
pub fn translate(
    peek: &Peek,
    frame: Bytes,
    ids: &TopicIds,
    gateway_version: i16,
) -> Result<(Bytes, Plan), FrameError> {
    let (header, request): (_, MetadataRequest) = decode_request(frame, peek)?;
    let (names, unknown_ids) = match request.topics {
        None => (None, Vec::new()),
        Some(topics) => {
            let mut names = Vec::with_capacity(topics.len());
            let mut unknown = Vec::new();
            for topic in topics {
                let by_id = asked_by_id(&topic);
                match topic.name {
                    Some(name) if !by_id => names.push(name),
                    _ => match ids.name_of(topic.topic_id) {
                        Some(name) => names.push(StrBytes::from_string(name).into()),
                        // An id nobody knows (or neither a name nor an id).
                        None => unknown.push(topic.topic_id),
                    },
                }
            }
            (Some(names), unknown)
        }
    };
    let upstream = MetadataRequest::default()
        .with_topics(names.map(|names| {
            names
                .into_iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(n)))
                .collect()
        }))
        .with_allow_auto_topic_creation(request.allow_auto_topic_creation);
    let client_id = header.client_id.as_ref().map(|c| c.to_string());
    let frame = encode_request(
        ApiKey::Metadata,
        gateway_version,
        peek.correlation_id,
        client_id.as_deref(),
        &upstream,
    )
    .map_err(|e| FrameError::Undecodable {
        api: ApiKey::Metadata,
        version: peek.api_version,
        reason: format!("cannot ask the gateway at v{gateway_version}: {e}"),
    })?;
    let plan = Plan {
        client_version: peek.api_version,
        gateway_version,
        unknown_ids,
        topic_operations: request.include_topic_authorized_operations,
        cluster_operations: request.include_cluster_authorized_operations,
    };
    Ok((frame, plan))
}

/// The client's answer from the gateway's (`frame` without its length prefix).
pub fn answer(plan: Plan, frame: Bytes, me: &Identity, ids: &TopicIds) -> Result<Answer, String> {
    let (correlation_id, mut body) =
        split_response(frame, ApiKey::Metadata, plan.gateway_version).map_err(|e| e.to_string())?;
    let mut response = MetadataResponse::decode(&mut body, plan.gateway_version)
        .map_err(|e| format!("Metadata v{} from the gateway: {e}", plan.gateway_version))?;
    rewrite_metadata(&mut response, me);
    // One snapshot of the table for the whole answer; names are copied only for new topics.
    let table = ids.table();
    let new: Vec<(String, i32)> = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| Some((t.name.as_ref()?.0.as_str(), t.partitions.len() as i32)))
        .filter(|(n, _)| table.get(n).is_none())
        .map(|(n, partitions)| (n.to_string(), partitions))
        .collect();
    if new.is_empty() {
        let known = |name: &str| table.get(name).map(|t| t.id);
        return finish(plan, correlation_id, response, known).map(Answer::Now);
    }
    // A topic created a moment ago: learn its id (this connection waits, no other).
    let ids = ids.clone();
    Ok(Answer::Later(Box::pin(async move {
        let learned: HashMap<String, Uuid> = ids.learn(new).await;
        let known = |name: &str| ids.id_of(name).or_else(|| learned.get(name).copied());
        finish(plan, correlation_id, response, known)
    })))
}

/// Fills in ids and what v8+ has that v7 has not, and encodes at the client's version.
fn finish(
    plan: Plan,
    correlation_id: i32,
    mut response: MetadataResponse,
    id_of: impl Fn(&str) -> Option<Uuid>,
) -> Result<Bytes, String> {
    let cluster = plan.cluster_operations && (8..=10).contains(&plan.client_version);
    response.cluster_authorized_operations = match cluster {
        true => operations(CLUSTER_OPERATIONS),
        false => OPERATIONS_NOT_REQUESTED,
    };
    response.error_code = 0;
    for topic in &mut response.topics {
        topic.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
        if topic.error_code == 0 {
            if let Some(name) = &topic.name {
                topic.topic_id = id_of(name.0.as_str()).unwrap_or_default();
            }
            if plan.topic_operations {
                topic.topic_authorized_operations = operations(TOPIC_OPERATIONS);
            }
        }
    }
    response.topics.extend(plan.unknown_ids.iter().map(|id| {
        MetadataResponseTopic::default()
            .with_error_code(UNKNOWN_TOPIC_ID)
            .with_name(None)
            .with_topic_id(*id)
            .with_topic_authorized_operations(OPERATIONS_NOT_REQUESTED)
    }));
    encode_response(
        ApiKey::Metadata,
        plan.client_version,
        correlation_id,
        &response,
    )
    .map_err(|e| format!("cannot encode Metadata v{}: {e}", plan.client_version))
}

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
