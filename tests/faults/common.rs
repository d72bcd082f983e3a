//! Helpers the fault-injection binaries share (tests/faults.rs, tests/faults_filer.rs): readiness,
//! committed offsets and commits through kelp, and the fault-table row.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{ApiKey, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::raw;
use super::support::Kelp;

pub fn ready(k: &Kelp) -> bool {
    k.http_get("/readyz").0 == 200
}

pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
    let mut c = raw::Raw::connect(bootstrap);
    let request = OffsetFetchRequest::default()
        .with_group_id(StrBytes::from_string(group.into()).into())
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_indexes((0..partitions).collect())]));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, 5, &request);
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect()
}

pub fn row(
    fault: &str,
    effect: &str,
    recovery: Duration,
    lost: usize,
    gateway_lost: Option<usize>,
) {
    let gateway = gateway_lost.map_or("-".to_string(), |n| n.to_string());
    eprintln!(
        "FAULT TABLE | {fault} | {effect} | {:.1} s | {lost} | {gateway} |",
        recovery.as_secs_f64()
    );
}

/// Whether this kelp keeps offsets in the filer (`--filer`, issue 5); without it they are in memory.
pub fn kelp_has_filer() -> bool {
    Command::new(env!("CARGO_BIN_EXE_kelp"))
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--filer"))
        .unwrap_or(false)
}

/// One anonymous (simple-consumer) commit of `offset` for partition 0: Ok(error code), or the
/// connection failed (then the caller reconnects; the commit is not acknowledged).
pub fn commit_once(c: &mut raw::Raw, group: &str, topic: &str, offset: i64) -> Result<i16, String> {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::OffsetCommitResponse;
    let request = kafka_protocol::messages::OffsetCommitRequest::default()
        .with_group_id(StrBytes::from_string(group.into()).into())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let sent = c.send(ApiKey::OffsetCommit, 2, &request);
    let mut frame = c.recv_frame().ok_or("connection closed")?;
    let header =
        <kafka_protocol::messages::ResponseHeader as kafka_protocol::protocol::Decodable>::decode(
            &mut frame, 0,
        )
        .map_err(|e| e.to_string())?;
    assert_eq!(header.correlation_id, sent);
    let r = <OffsetCommitResponse as kafka_protocol::protocol::Decodable>::decode(&mut frame, 2)
        .map_err(|e| e.to_string())?;
    Ok(r.topics[0].partitions[0].error_code)
}
