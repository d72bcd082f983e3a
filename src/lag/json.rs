//! `GET /groups`: every group this kelp coordinates (and every passthrough group it observes and
//! owns) as JSON, what `kafka-consumer-groups --describe` shows: state, generation, protocol,
//! members with their assignments (decoded with `kafka-protocol` when the group is a "consumer"
//! group), and per topic the lag, status and commit age of the last lag round (the same numbers
//! as the `kelp_group_lag*` series). State and members are read fresh from the coordinator.
//! Builds a document; never changes a group.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use super::report::{GroupLag, Report};
use crate::coordinator::Snapshot;
use crate::group::consumer::{decode_assignment, CONSUMER_PROTOCOL_TYPE};
use crate::group::{GroupView, MemberView};
use crate::passthrough::Observed;

/// The wall clock in Unix-epoch milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The whole document.
pub fn render(
    snapshot: &Snapshot,
    observed: &[Observed],
    report: &Report,
    interval_secs: u64,
) -> Value {
    let mut groups: Vec<Value> = snapshot
        .groups
        .iter()
        .map(|g| local(g, report.groups.get(&g.group)))
        .collect();
    for o in observed {
        groups.push(passthrough(o, report.groups.get(&o.group)));
    }
    json!({
        "lag_as_of_unix_ms": report.at_unix_ms,
        "lag_interval_secs": interval_secs,
        "groups": groups,
    })
}

fn local(g: &GroupView, lag: Option<&GroupLag>) -> Value {
    let consumer = g.protocol_type == CONSUMER_PROTOCOL_TYPE;
    let mut v = json!({
        "group": g.group,
        "mode": "local",
        "state": g.state.as_str(),
        "generation": g.generation,
        "protocol_type": g.protocol_type,
        "protocol": g.protocol,
        "leader": g.leader,
        "members": g.members.iter().map(|m| member(m, consumer)).collect::<Vec<_>>(),
    });
    add_lag(&mut v, lag);
    v
}

fn passthrough(o: &Observed, lag: Option<&GroupLag>) -> Value {
    let mut v = json!({
        "group": o.group,
        "mode": "passthrough",
        "state": o.state.map(|s| s.as_str()),
        "generation": o.generation,
        "member_count": o.members,
    });
    add_lag(&mut v, lag);
    v
}

fn add_lag(v: &mut Value, lag: Option<&GroupLag>) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let Some(lag) = lag else {
        obj.insert("status".into(), Value::Null);
        obj.insert("lag".into(), Value::Null);
        obj.insert("topics".into(), json!([]));
        return;
    };
    obj.insert("status".into(), json!(lag.status.as_str()));
    obj.insert("lag".into(), json!(lag.total));
    obj.insert("commit_age_seconds".into(), json!(lag.commit_age_seconds));
    let topics: Vec<Value> = lag
        .topics
        .iter()
        .map(|t| {
            json!({
                "topic": t.topic,
                "lag": t.lag,
                "max_partition_lag": t.max_partition,
                "partitions": t.partitions.iter().map(|p| json!({
                    "partition": p.partition,
                    "committed_offset": p.committed,
                    "log_end_offset": p.log_end,
                    "lag": p.lag,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    obj.insert("topics".into(), json!(topics));
}

fn member(m: &MemberView, consumer: bool) -> Value {
    let assignment = if consumer {
        assignment(&m.assignment).map_or_else(
            || json!({ "bytes": m.assignment.len() }),
            |topics| json!(topics),
        )
    } else {
        json!({ "bytes": m.assignment.len() })
    };
    json!({
        "member_id": m.member_id,
        "group_instance_id": m.group_instance_id,
        "client_id": m.client_id,
        "client_host": m.client_host,
        "assignment": assignment,
    })
}

/// A consumer group member's assignment: topic → partitions (None if the bytes do not parse).
/// A version above the highest known is read as that one, as Kafka's consumer does.
pub fn assignment(bytes: &Bytes) -> Option<BTreeMap<String, Vec<i32>>> {
    let decoded = decode_assignment(bytes)?;
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in decoded.assigned_partitions {
        topics
            .entry(tp.topic.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
    use kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    #[test]
    fn a_consumer_assignment_decodes_and_garbage_does_not() {
        let a = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut raw = bytes::BytesMut::new();
        raw.put_i16(1);
        a.encode(&mut raw, 1).unwrap();
        let topics = assignment(&raw.freeze()).unwrap();
        assert_eq!(topics["t"], vec![0, 2]);
        assert_eq!(assignment(&Bytes::from_static(&[0, 0, 0])), None);
        assert_eq!(assignment(&Bytes::new()), Some(BTreeMap::new()));
    }
}
