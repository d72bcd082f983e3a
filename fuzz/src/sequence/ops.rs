//! The operations of the sequence target: each reads its choices from the input and sends one
//! request (or moves the clock). Requests are shaped for their version, as a real client sends them.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use kelp::group::Response;
use kelp::protocol::{kelp_range, peek};

use super::super::input::Input;
use super::super::requests::{decode_group, header, DECODED};
use super::{Harness, CLIENTS, GROUPS, TOPICS};

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn gid(group: &str) -> GroupId {
    GroupId(s(group))
}

pub fn step(h: &mut Harness, input: &mut Input) {
    match input.below(20) {
        0..=2 => join(h, input, None),
        3 | 4 => sync(h, input, None),
        5 | 6 => heartbeat(h, input, None),
        7 => leave(h, input),
        8 | 9 => commit(h, input),
        10 => fetch(h, input),
        11 => offset_delete(h, input),
        12 => {
            let version = input.below(6) as i16;
            let groups = GROUPS
                .iter()
                .take(1 + input.below(2))
                .map(|g| gid(g))
                .collect();
            let mut r = DescribeGroupsRequest::default().with_groups(groups);
            r.include_authorized_operations = version >= 3 && input.bool();
            h.send(ApiKey::DescribeGroups, version, &r, None);
        }
        13 => {
            let version = input.below(6) as i16;
            let mut r = ListGroupsRequest::default();
            if version >= 4 && input.bool() {
                r.states_filter = vec![s(input.pick(&["Stable", "Empty", "PreparingRebalance"]))];
            }
            h.send(ApiKey::ListGroups, version, &r, None);
        }
        14 => {
            let version = input.below(3) as i16;
            let r =
                DeleteGroupsRequest::default().with_groups_names(vec![gid(input.pick(&GROUPS))]);
            h.send(ApiKey::DeleteGroups, version, &r, None);
        }
        15 => {
            let ms = input.pick(&[0, 1, 100, 1000, 3000, 6000, 10_000, 30_000, 300_000]);
            h.advance(ms);
        }
        16..=18 => well_behaved(h, input),
        _ => raw(h, input),
    }
}

/// What a Kafka client would do next: join, sync, or heartbeat (or wait while parked).
fn well_behaved(h: &mut Harness, input: &mut Input) {
    let c = input.below(CLIENTS);
    let client = &h.clients[c];
    if client.parked {
        h.advance(input.pick(&[100, 1000, 3000]));
    } else if client.member.is_empty() || client.generation <= 0 {
        join(h, input, Some(c));
    } else if !client.synced {
        sync(h, input, Some(c));
    } else {
        heartbeat(h, input, Some(c));
    }
}

/// A ConsumerProtocolSubscription v0 naming some of TOPICS, or a few arbitrary bytes.
fn subscription(input: &mut Input) -> Bytes {
    if input.below(8) == 0 {
        return Bytes::copy_from_slice(input.bytes(8));
    }
    let topics: Vec<&str> = match input.below(3) {
        0 => vec![TOPICS[0]],
        1 => vec![TOPICS[1]],
        _ => TOPICS.to_vec(),
    };
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn join(h: &mut Harness, input: &mut Input, client: Option<usize>) {
    let c = client.unwrap_or_else(|| input.below(CLIENTS));
    let version = if client.is_some() {
        input.pick(&[5, 9])
    } else {
        input.below(10) as i16
    };
    if client.is_none() && input.below(4) == 0 {
        let cl = &mut h.clients[c];
        cl.group = input.below(GROUPS.len());
        cl.member.clear();
    }
    if version >= 5 && client.is_none() && input.below(8) == 0 {
        let cl = &mut h.clients[c];
        cl.instance = cl.instance.is_none().then(|| format!("i{c}"));
    }
    let fresh = client.is_none() && input.below(5) == 0;
    let cl = h.clients[c].clone();
    let protocols: &[&str] = match input.below(5) {
        0 => &["range", "roundrobin"],
        1 => &["roundrobin"],
        2 if client.is_none() => &[],
        _ => &["range"],
    };
    let metadata = subscription(input);
    let mut r = JoinGroupRequest::default()
        .with_group_id(gid(GROUPS[cl.group]))
        .with_session_timeout_ms(input.pick(&[10_000, 10_000, 6000, 30_000, 1000, 2_000_000]))
        .with_member_id(if fresh {
            StrBytes::default()
        } else {
            s(&cl.member)
        })
        .with_protocol_type(s(
            input.pick(&["consumer", "consumer", "consumer", "connect"])
        ))
        .with_protocols(
            protocols
                .iter()
                .map(|p| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(p))
                        .with_metadata(metadata.clone())
                })
                .collect(),
        );
    if version >= 1 {
        r.rebalance_timeout_ms = input.pick(&[30_000, 3000, 60_000, 0]);
    }
    if version >= 5 {
        r.group_instance_id = cl.instance.as_deref().map(s);
    }
    if version >= 8 {
        r.reason = Some(s("fuzz"));
    }
    h.clients[c].parked = true;
    h.send(ApiKey::JoinGroup, version, &r, Some(c));
}

fn generation(input: &mut Input, known: i32) -> i32 {
    known.wrapping_add(input.pick(&[0, 0, 0, 0, -1, 1]))
}

fn sync(h: &mut Harness, input: &mut Input, client: Option<usize>) {
    let c = client.unwrap_or_else(|| input.below(CLIENTS));
    let version = input.below(6) as i16;
    let cl = h.clients[c].clone();
    let generation = if client.is_some() {
        cl.generation
    } else {
        generation(input, cl.generation)
    };
    let mut r = SyncGroupRequest::default()
        .with_group_id(gid(GROUPS[cl.group]))
        .with_generation_id(generation)
        .with_member_id(s(&cl.member));
    if version >= 3 {
        r.group_instance_id = cl.instance.as_deref().map(s);
    }
    if version >= 5 && input.below(4) != 0 {
        r.protocol_type = Some(s("consumer"));
        r.protocol_name = cl.protocol.clone();
    }
    for member in &cl.leader_of {
        if input.below(8) == 0 {
            continue; // the leader may give a member nothing
        }
        let bytes = format!("{member}/{generation}/{}", input.u8());
        r.assignments.push(
            SyncGroupRequestAssignment::default()
                .with_member_id(s(member))
                .with_assignment(Bytes::from(bytes)),
        );
    }
    h.clients[c].parked = true;
    h.send(ApiKey::SyncGroup, version, &r, Some(c));
}

fn heartbeat(h: &mut Harness, input: &mut Input, client: Option<usize>) {
    let c = client.unwrap_or_else(|| input.below(CLIENTS));
    let version = input.below(5) as i16;
    let cl = h.clients[c].clone();
    let generation = if client.is_some() {
        cl.generation
    } else {
        generation(input, cl.generation)
    };
    let mut r = HeartbeatRequest::default()
        .with_group_id(gid(GROUPS[cl.group]))
        .with_generation_id(generation)
        .with_member_id(s(&cl.member));
    if version >= 3 {
        r.group_instance_id = cl.instance.as_deref().map(s);
    }
    h.send(ApiKey::Heartbeat, version, &r, Some(c));
}

fn leave(h: &mut Harness, input: &mut Input) {
    let c = input.below(CLIENTS);
    let version = input.below(6) as i16;
    let cl = h.clients[c].clone();
    let mut r = LeaveGroupRequest::default().with_group_id(gid(GROUPS[cl.group]));
    if version < 3 {
        r.member_id = s(&cl.member);
    } else {
        let mut leaving = vec![c];
        let other = input.below(CLIENTS);
        if other != c && h.clients[other].group == cl.group && input.bool() {
            leaving.push(other);
        }
        for l in leaving {
            let m = &h.clients[l];
            let mut identity = MemberIdentity::default()
                .with_member_id(s(&m.member))
                .with_group_instance_id(m.instance.as_deref().map(s));
            if version >= 5 {
                identity.reason = Some(s("fuzz"));
            }
            r.members.push(identity);
        }
    }
    h.send(ApiKey::LeaveGroup, version, &r, Some(c));
}

fn commit(h: &mut Harness, input: &mut Input) {
    let c = input.below(CLIENTS);
    let version = 2 + input.below(8) as i16;
    let cl = h.clients[c].clone();
    let anonymous = input.below(4) == 0;
    let group = if anonymous {
        input.pick(&GROUPS)
    } else {
        GROUPS[cl.group]
    };
    let (generation, member) = if anonymous {
        (-1, String::new())
    } else {
        (generation(input, cl.generation), cl.member.clone())
    };
    let instance = if version >= 7 && !anonymous {
        cl.instance.clone()
    } else {
        None
    };
    let metadata = "m".repeat(input.pick(&[0, 0, 1, 5000]));
    let mut topics = Vec::new();
    for topic in TOPICS.iter().take(1 + input.below(2)) {
        let first = input.below(3) as i32;
        let partitions = (first..first + 1 + input.below(2) as i32)
            .map(|p| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(p)
                    .with_committed_offset(i64::from(input.u16()))
                    .with_committed_metadata(Some(s(&metadata)))
            })
            .collect();
        topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s(topic)))
                .with_partitions(partitions),
        );
    }
    let r = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(&member))
        .with_group_instance_id(instance.as_deref().map(s))
        .with_topics(topics);

    // §3.8, from the group as DescribeGroups shows it just before the commit.
    h.fire_due();
    let (_, described) = h.snapshot(group);
    let state = described.group_state.to_string();
    let is_member = described
        .members
        .iter()
        .any(|m| m.member_id.as_str() == member);
    let dynamic = described
        .members
        .iter()
        .all(|m| m.group_instance_id.is_none())
        && instance.is_none();
    // Kafka: a negative generation commits to an Empty (or missing) group whatever the member id.
    let allowed = if generation < 0 && (state == "Empty" || state == "Dead") {
        true
    } else {
        is_member
            && generation == h.check.generation(group)
            && matches!(state.as_str(), "Stable" | "PreparingRebalance")
    };
    let token = h.send(ApiKey::OffsetCommit, version, &r, Some(c));
    let Some((answered, Response::OffsetCommit(reply))) = h.last.take() else {
        panic!("OffsetCommit was not answered at once")
    };
    assert_eq!(answered, token);
    let codes = reply
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code));
    for code in codes {
        if code == 0 {
            assert!(
                allowed,
                "commit accepted in {state} (member {member:?} gen {generation})"
            );
        } else if allowed && dynamic && metadata.len() <= 4096 {
            panic!("commit refused with {code} in {state} (member {member:?} gen {generation})");
        }
    }
}

fn fetch(h: &mut Harness, input: &mut Input) {
    let version = 1 + input.below(9) as i16;
    let group = input.pick(&GROUPS);
    let all = version >= 2 && input.bool();
    let partitions: Vec<i32> = (0..3).collect();
    let mut r = OffsetFetchRequest::default();
    if version < 8 {
        r.group_id = gid(group);
        r.topics = (!all).then(|| {
            TOPICS
                .iter()
                .map(|t| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
    } else {
        let topics = (!all).then(|| {
            TOPICS
                .iter()
                .map(|t| {
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(partitions.clone())
                })
                .collect()
        });
        r.groups = vec![OffsetFetchRequestGroup::default()
            .with_group_id(gid(group))
            .with_topics(topics)];
    }
    h.send(ApiKey::OffsetFetch, version, &r, None);
}

fn offset_delete(h: &mut Harness, input: &mut Input) {
    let topic = OffsetDeleteRequestTopic::default()
        .with_name(TopicName(s(input.pick(&TOPICS))))
        .with_partitions(vec![
            OffsetDeleteRequestPartition::default().with_partition_index(input.below(3) as i32)
        ]);
    let r = OffsetDeleteRequest::default()
        .with_group_id(gid(input.pick(&GROUPS)))
        .with_topics(vec![topic]);
    h.send(ApiKey::OffsetDelete, 0, &r, None);
}

/// Fuzz bytes as the body of a group request, decoded by kelp's decoder.
fn raw(h: &mut Harness, input: &mut Input) {
    let api = input.pick(&DECODED[2..]);
    let Some((_, range)) = kelp_range(api) else {
        return;
    };
    let version = range.min + input.below((range.max - range.min + 1) as usize) as i16;
    let body = input.bytes(96);
    let frame = header(api, version, h.next as i32, None, body);
    let Ok(p) = peek(&frame) else { return };
    let Ok((client_id, request)) = decode_group(&p, Bytes::from(frame)) else {
        return;
    };
    if matches!(
        api,
        ApiKey::OffsetCommit | ApiKey::OffsetDelete | ApiKey::DeleteGroups
    ) {
        h.check.exact_offsets = false;
    }
    h.submit(p, client_id, request, None);
}
