//! Handing a group back to the gateway (local → passthrough). After a reload moves a group kelp's
//! coordinator serves to passthrough, kelp removes its members (a LeaveGroup for all of them, so a
//! straggler gets UNKNOWN_MEMBER_ID and a later move back finds an Empty group) and keeps the
//! group's committed offsets. The gateway cannot take offsets from outside its own group (BACKEND.md),
//! so kelp waits until the members have re-formed the group there: on the first successful
//! SyncGroup response it commits, with that generation and member id, every offset the gateway
//! holds lower (or not at all), and only then lets the SyncGroup response through, so the members'
//! next OffsetFetch sees them. Until that commit succeeds, OffsetFetch responses of the group are
//! raised to kelp's offsets where the gateway's are lower.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, GroupId, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::gateway;
use crate::backend::Backend;
use crate::config::GroupMode;
use crate::coordinator::GroupService;
use crate::group::{Request, Response};
use crate::modes::Snapshot;
use crate::protocol::{encode_response, split_response};

/// Longest a SyncGroup response waits for the hand-back commit.
const COMMIT_LIMIT: Duration = Duration::from_secs(5);
/// Longest one call to kelp's own coordinator may take during a hand-over.
const CALL_LIMIT: Duration = Duration::from_secs(5);
/// COORDINATOR_LOAD_IN_PROGRESS, and how often ListGroups is asked while it lasts.
const LOADING: i16 = 14;
const LIST_ATTEMPTS: usize = 120;

/// One committed offset kelp hands back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: String,
}

/// A group whose offsets the gateway has not taken yet.
pub struct Handback {
    pub group: String,
    pub offsets: Vec<Offset>,
    /// Set once the gateway holds every offset (guarded so one SyncGroup does the commit).
    done: tokio::sync::Mutex<bool>,
}

/// The groups being handed back.
#[derive(Default)]
pub struct Handbacks {
    groups: Mutex<HashMap<String, Arc<Handback>>>,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

async fn ask(groups: &GroupService, version: i16, request: Request) -> Option<Response> {
    let reply = groups.send_decoded(version, "kelp".into(), "/kelp", request);
    tokio::time::timeout(CALL_LIMIT, reply).await.ok().flatten()
}

/// kelp's groups and their states, asked again while the coordinator is still loading (bounded).
async fn list(groups: &GroupService) -> Vec<(String, String)> {
    for _ in 0..LIST_ATTEMPTS {
        match ask(groups, 4, Request::ListGroups(ListGroupsRequest::default())).await {
            Some(Response::ListGroups(r)) if r.error_code == 0 => {
                return r
                    .groups
                    .into_iter()
                    .map(|g| (g.group_id.to_string(), g.group_state.to_string()))
                    .collect();
            }
            Some(Response::ListGroups(r)) if r.error_code == LOADING => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => break,
        }
    }
    tracing::error!("hand-over: kelp's coordinator did not list its groups");
    Vec::new()
}

impl Handbacks {
    pub fn get(&self, group: &str) -> Option<Arc<Handback>> {
        self.groups.lock().ok()?.get(group).cloned()
    }

    fn insert(&self, handback: Handback) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.insert(handback.group.clone(), Arc::new(handback));
        }
    }

    fn remove(&self, group: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.remove(group);
        }
    }

    /// How many groups still wait for the gateway to take their offsets.
    pub fn pending(&self) -> usize {
        self.groups.lock().map(|g| g.len()).unwrap_or(0)
    }

    /// After a reload: hands back every group of kelp's coordinator that moved to passthrough, and
    /// drops pending hand-backs of groups that moved back to local.
    pub async fn on_reload(&self, groups: &GroupService, old: &Snapshot, new: &Snapshot) {
        if let Ok(mut pending) = self.groups.lock() {
            pending.retain(|g, _| new.mode_of(g) == GroupMode::Passthrough);
        }
        if !old.local_possible {
            return;
        }
        for (group, _) in list(groups).await {
            if old.mode_of(&group) == GroupMode::Local
                && new.mode_of(&group) == GroupMode::Passthrough
            {
                self.hand_back(groups, &group).await;
            }
        }
    }

    /// At start: a group kelp's store brought back with members while the rules now pass it
    /// through (the file changed while kelp was down) is handed back like after a reload.
    pub async fn on_start(&self, groups: &GroupService, rules: &Snapshot) {
        if !rules.passthrough_possible {
            return;
        }
        for (group, state) in list(groups).await {
            if state != "Empty"
                && state != "Dead"
                && rules.mode_of(&group) == GroupMode::Passthrough
            {
                self.hand_back(groups, &group).await;
            }
        }
    }

    async fn hand_back(&self, groups: &GroupService, group: &str) {
        let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
        let members: Vec<MemberIdentity> =
            match ask(groups, 4, Request::DescribeGroups(describe)).await {
                Some(Response::DescribeGroups(r)) => r
                    .groups
                    .into_iter()
                    .flat_map(|g| g.members)
                    .map(|m| {
                        MemberIdentity::default()
                            .with_member_id(m.member_id)
                            .with_group_instance_id(m.group_instance_id)
                    })
                    .collect(),
                _ => Vec::new(),
            };
        let removed = members.len();
        if !members.is_empty() {
            let leave = LeaveGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_members(members);
            if !matches!(ask(groups, 3, Request::LeaveGroup(leave)).await, Some(Response::LeaveGroup(r)) if r.error_code == 0)
            {
                tracing::warn!(group, "hand-over: kelp could not remove the group's members; they expire with their sessions");
            }
        }
        let fetch = OffsetFetchRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_topics(None);
        let offsets: Vec<Offset> = match ask(groups, 7, Request::OffsetFetch(fetch)).await {
            Some(Response::OffsetFetch(r)) => r
                .topics
                .into_iter()
                .flat_map(|t| {
                    let topic = t.name.to_string();
                    t.partitions
                        .into_iter()
                        .filter(|p| p.error_code == 0 && p.committed_offset >= 0)
                        .map(move |p| Offset {
                            topic: topic.clone(),
                            partition: p.partition_index,
                            offset: p.committed_offset,
                            metadata: p.metadata.map(|m| m.to_string()).unwrap_or_default(),
                        })
                })
                .collect(),
            _ => {
                tracing::error!(
                    group,
                    "hand-over: kelp's coordinator did not return the group's offsets"
                );
                Vec::new()
            }
        };
        tracing::info!(
            group,
            members_removed = removed,
            offsets = offsets.len(),
            "group moved to passthrough; its offsets go to the gateway once the members rejoin there"
        );
        if !offsets.is_empty() {
            self.insert(Handback {
                group: group.to_string(),
                offsets,
                done: tokio::sync::Mutex::new(false),
            });
        }
    }

    /// Raises a pending group's OffsetFetch response (length prefix included) to kelp's offsets
    /// where the gateway's are lower. `None`: nothing to change.
    pub fn raise_fetch(&self, group: &str, version: i16, frame: &Bytes) -> Option<Bytes> {
        let handback = self.get(group)?;
        let (correlation_id, mut body) =
            split_response(frame.slice(4..), ApiKey::OffsetFetch, version).ok()?;
        let mut response = OffsetFetchResponse::decode(&mut body, version).ok()?;
        let mut raised = 0;
        for topic in &mut response.topics {
            for p in &mut topic.partitions {
                let ours = handback
                    .offsets
                    .iter()
                    .find(|o| o.topic == topic.name.as_str() && o.partition == p.partition_index);
                if let Some(o) = ours.filter(|o| p.error_code == 0 && p.committed_offset < o.offset)
                {
                    p.committed_offset = o.offset;
                    p.committed_leader_epoch = -1;
                    p.metadata = Some(s(&o.metadata));
                    raised += 1;
                }
            }
        }
        if raised == 0 {
            return None;
        }
        tracing::debug!(
            group,
            raised,
            "OffsetFetch raised to kelp's hand-back offsets"
        );
        encode_response(ApiKey::OffsetFetch, version, correlation_id, &response).ok()
    }

    /// The group re-formed at the gateway (`generation`, a member's id): commit kelp's offsets
    /// there. Bounded; on failure the hand-back stays pending for the next SyncGroup.
    pub async fn complete(&self, backend: &Backend, group: &str, generation: i32, member_id: &str) {
        let Some(handback) = self.get(group) else {
            return;
        };
        let mut done = handback.done.lock().await;
        if *done {
            return;
        }
        let result = tokio::time::timeout(
            COMMIT_LIMIT,
            commit(backend, &handback, generation, member_id),
        )
        .await;
        match result {
            Ok(Ok(committed)) => {
                *done = true;
                self.remove(group);
                tracing::info!(
                    group,
                    generation,
                    committed,
                    "group handed back: the gateway holds kelp's offsets"
                );
            }
            Ok(Err(e)) => tracing::warn!(
                group,
                generation,
                "hand-back commit failed, retrying on the next SyncGroup: {e}"
            ),
            Err(_) => tracing::warn!(
                group,
                generation,
                "hand-back commit took over {COMMIT_LIMIT:?}; retrying on the next SyncGroup"
            ),
        }
    }
}

/// Commits to the gateway the offsets of `handback` it holds lower; returns how many.
async fn commit(
    backend: &Backend,
    handback: &Handback,
    generation: i32,
    member_id: &str,
) -> Result<usize, String> {
    let mut by_topic: HashMap<&str, Vec<&Offset>> = HashMap::new();
    for o in &handback.offsets {
        by_topic.entry(o.topic.as_str()).or_default().push(o);
    }
    // Explicit topics and partitions: a null list makes gateway 4.48 run out of memory.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(&handback.group)))
        .with_topics(Some(
            by_topic
                .iter()
                .map(|(t, os)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(os.iter().map(|o| o.partition).collect())
                })
                .collect(),
        ));
    let theirs: OffsetFetchResponse =
        gateway::call(backend, ApiKey::OffsetFetch, 1, &fetch).await?;
    let held = |o: &Offset| {
        theirs
            .topics
            .iter()
            .filter(|t| t.name.as_str() == o.topic)
            .flat_map(|t| &t.partitions)
            .find(|p| p.partition_index == o.partition && p.error_code == 0)
            .map_or(-1, |p| p.committed_offset)
    };
    let topics: Vec<OffsetCommitRequestTopic> = by_topic
        .iter()
        .filter_map(|(t, os)| {
            let partitions: Vec<OffsetCommitRequestPartition> = os
                .iter()
                .filter(|o| held(o) < o.offset)
                .map(|o| {
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(o.partition)
                        .with_committed_offset(o.offset)
                        .with_committed_metadata(Some(s(&o.metadata)))
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(partitions)
            })
        })
        .collect();
    let count: usize = topics.iter().map(|t| t.partitions.len()).sum();
    if count == 0 {
        return Ok(0);
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(&handback.group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member_id))
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let response: OffsetCommitResponse =
        gateway::call(backend, ApiKey::OffsetCommit, 2, &request).await?;
    let failed: Vec<String> = response
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| {
                    format!(
                        "{}/{}: error {}",
                        t.name.as_str(),
                        p.partition_index,
                        p.error_code
                    )
                })
        })
        .collect();
    if failed.is_empty() {
        Ok(count)
    } else {
        Err(failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::modes::{Glob, Rule, Rules};
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::messages::{DescribeGroupsRequest, JoinGroupRequest, SyncGroupRequest};

    fn snapshot(default_mode: GroupMode, local: &[&str]) -> Snapshot {
        Snapshot::for_rules(Rules {
            default_mode,
            rules: local
                .iter()
                .map(|p| Rule {
                    pattern: Glob::new(p).unwrap(),
                    mode: GroupMode::Local,
                })
                .collect(),
        })
    }

    async fn join(groups: &GroupService, group: &str) -> String {
        let join = JoinGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(""))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range"))
            ]);
        let member = match groups
            .send_decoded(3, "c".into(), "/h", Request::JoinGroup(join))
            .await
        {
            Some(Response::JoinGroup(r)) => r.member_id.to_string(),
            other => panic!("join: {other:?}"),
        };
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(1)
            .with_member_id(s(&member));
        let r = groups
            .send_decoded(3, "c".into(), "/h", Request::SyncGroup(sync))
            .await;
        assert!(matches!(r, Some(Response::SyncGroup(r)) if r.error_code == 0));
        member
    }

    fn commit(group: &str, member: &str, offset: i64) -> Request {
        let generation = if member.is_empty() { -1 } else { 1 };
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(generation)
                .with_member_id(s(member))
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        )
    }

    fn gateway_fetch(offset: i64) -> Bytes {
        let body =
            OffsetFetchResponse::default().with_topics(vec![OffsetFetchResponseTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(3),
                ])]);
        encode_response(ApiKey::OffsetFetch, 3, 11, &body).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_group_leaving_kelp_loses_its_members_and_keeps_its_offsets_for_the_gateway() {
        let config = crate::group::Config {
            initial_rebalance_delay_ms: 0,
            ..crate::group::Config::default()
        };
        let groups = GroupService::spawn(config, Arc::new(Metrics::new()));
        let member = join(&groups, "orders").await;
        // v3 JoinGroup: no MEMBER_ID_REQUIRED; a lone member's join completes at once (gen 1).
        assert!(!member.is_empty());
        let r = groups
            .send_decoded(5, "c".into(), "/h", commit("orders", &member, 42))
            .await;
        assert!(matches!(r, Some(Response::OffsetCommit(_))));

        let handbacks = Handbacks::default();
        let old = snapshot(GroupMode::Passthrough, &["orders"]);
        let new = snapshot(GroupMode::Passthrough, &[]);
        handbacks.on_reload(&groups, &old, &new).await;

        let describe = DescribeGroupsRequest::default().with_groups(vec![GroupId(s("orders"))]);
        let Some(Response::DescribeGroups(d)) = groups
            .send_decoded(4, "c".into(), "/h", Request::DescribeGroups(describe))
            .await
        else {
            panic!("no DescribeGroups answer")
        };
        assert!(d.groups[0].members.is_empty(), "members removed");
        assert_eq!(d.groups[0].group_state.as_str(), "Empty");
        let pending = handbacks.get("orders").expect("a pending hand-back");
        assert_eq!(pending.offsets.len(), 1);
        assert_eq!(pending.offsets[0].offset, 42);

        // The gateway's lower offset is raised to kelp's; others pass as they are.
        let raised = handbacks
            .raise_fetch("orders", 3, &gateway_fetch(17))
            .expect("raised");
        let (corr, mut body) = split_response(raised.slice(4..), ApiKey::OffsetFetch, 3).unwrap();
        assert_eq!(corr, 11);
        let r = OffsetFetchResponse::decode(&mut body, 3).unwrap();
        let got: Vec<i64> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.committed_offset)
            .collect();
        assert_eq!(got, [42, 3]);
        assert!(handbacks
            .raise_fetch("orders", 3, &gateway_fetch(50))
            .is_none());
        assert!(handbacks
            .raise_fetch("other", 3, &gateway_fetch(1))
            .is_none());

        // Moving it back to local drops the pending hand-back.
        handbacks.on_reload(&groups, &new, &old).await;
        assert_eq!(handbacks.pending(), 0);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn at_start_only_groups_with_members_at_kelp_are_handed_back() {
        let config = crate::group::Config {
            initial_rebalance_delay_ms: 0,
            ..crate::group::Config::default()
        };
        let groups = GroupService::spawn(config, Arc::new(Metrics::new()));
        let member = join(&groups, "served").await;
        let r = groups
            .send_decoded(5, "c".into(), "/h", commit("served", &member, 8))
            .await;
        assert!(matches!(r, Some(Response::OffsetCommit(_))));
        let r = groups
            .send_decoded(5, "c".into(), "/h", commit("idle", "", 3))
            .await;
        assert!(matches!(r, Some(Response::OffsetCommit(_))));
        let handbacks = Handbacks::default();
        handbacks
            .on_start(&groups, &snapshot(GroupMode::Passthrough, &[]))
            .await;
        assert!(handbacks.get("served").is_some());
        assert!(
            handbacks.get("idle").is_none(),
            "an Empty group was handed back before"
        );
        let all_local = Handbacks::default();
        all_local
            .on_start(&groups, &snapshot(GroupMode::Local, &[]))
            .await;
        assert_eq!(all_local.pending(), 0);
    }
}
