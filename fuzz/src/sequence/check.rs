//! The TESTING.md invariants, checked from the outside: the checker sees every call the harness
//! makes and every output the coordinator emits, and panics when one of these breaks:
//! - every call gets exactly one reply, to a call that was made, encodable at the call's version;
//! - generation never decreases and moves by exactly one per completed join phase (a new group
//!   starts at 0); every state change is one of GROUP_SEMANTICS.md §3.2;
//! - a successful JoinGroup carries the current generation; each generation has at most one
//!   leader, and the leader's member list contains it;
//! - a member's successful SyncGroup and, in Stable, DescribeGroups show exactly the bytes the
//!   leader gave it (empty when the leader gave it none);
//! - offsets: OffsetFetch returns exactly what was accepted and not deleted since;
//! - no parked request outlives its member's successful LeaveGroup.

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;

use kelp::group::{Event, GroupState, Output, Request, Response, Token};
use kelp::protocol::Peek;

use super::super::requests::check_encodes;

/// What the checker remembers of a call until its reply.
pub struct CallInfo {
    pub peek: Peek,
    pub group: String,
    pub member: String,
    /// SyncGroup: the generation it names and the assignments it carries (None for duplicates).
    pub sync: Option<(i32, Option<HashMap<String, Bytes>>)>,
    /// OffsetCommit: (topic, partition, offset) as sent.
    pub commit: Vec<(String, i32, i64)>,
    /// LeaveGroup: the member ids it removes.
    pub leaving: Vec<String>,
    /// A JoinGroup with a group instance id (a static member).
    pub is_static: bool,
    /// That group instance id.
    pub instance: Option<String>,
}

impl CallInfo {
    pub fn of(peek: Peek, request: &Request) -> CallInfo {
        let mut info = CallInfo {
            peek,
            group: String::new(),
            member: String::new(),
            sync: None,
            commit: Vec::new(),
            leaving: Vec::new(),
            is_static: false,
            instance: None,
        };
        match request {
            Request::JoinGroup(r) => {
                info.group = r.group_id.to_string();
                info.member = r.member_id.to_string();
                info.is_static = r.group_instance_id.is_some();
                info.instance = r.group_instance_id.as_ref().map(|i| i.to_string());
            }
            Request::SyncGroup(r) => {
                info.group = r.group_id.to_string();
                info.member = r.member_id.to_string();
                let mut given = HashMap::new();
                let unique = r.assignments.iter().all(|a| {
                    given
                        .insert(a.member_id.to_string(), a.assignment.clone())
                        .is_none()
                });
                info.sync = Some((r.generation_id, unique.then_some(given)));
            }
            Request::Heartbeat(r) => {
                info.group = r.group_id.to_string();
                info.member = r.member_id.to_string();
            }
            Request::LeaveGroup(r) => {
                info.group = r.group_id.to_string();
                info.leaving = if r.members.is_empty() {
                    vec![r.member_id.to_string()]
                } else {
                    r.members.iter().map(|m| m.member_id.to_string()).collect()
                };
            }
            Request::OffsetCommit(r) => {
                info.group = r.group_id.to_string();
                info.member = r.member_id.to_string();
                for t in &r.topics {
                    for p in &t.partitions {
                        info.commit.push((
                            t.name.to_string(),
                            p.partition_index,
                            p.committed_offset,
                        ));
                    }
                }
            }
            Request::OffsetFetch(r) => info.group = r.group_id.to_string(),
            Request::OffsetDelete(r) => info.group = r.group_id.to_string(),
            Request::ConsumerGroupHeartbeat(r) => {
                info.group = r.group_id.to_string();
                info.member = r.member_id.to_string();
            }
            Request::DescribeGroups(_)
            | Request::ListGroups(_)
            | Request::DeleteGroups(_)
            | Request::ConsumerGroupDescribe(_) => {}
        }
        info
    }
}

type Offsets = BTreeMap<(String, i32), i64>;

#[derive(Default)]
pub struct Checker {
    pub calls: HashMap<Token, CallInfo>,
    answered: HashSet<Token>,
    generation: HashMap<String, i32>,
    state: HashMap<String, GroupState>,
    leaders: HashMap<(String, i32), String>,
    given: HashMap<(String, i32), Option<HashMap<String, Bytes>>>,
    /// Successful syncs (group, generation, member, assignment) waiting for the leader's bytes.
    synced: Vec<(String, i32, String, Bytes)>,
    pub offsets: BTreeMap<String, Offsets>,
    /// Groups a static member joined: a replaced static member keeps the old id's assignment,
    /// so the assignment checks skip them.
    statics: HashSet<String>,
    /// Static members' instance ids by member id: a replaced static member keeps its identity
    /// (and its leadership) under a new member id within the same generation.
    instances: HashMap<String, String>,
    /// False once a request the model cannot follow (a raw one) may have changed offsets.
    pub exact_offsets: bool,
}

impl Checker {
    pub fn new() -> Self {
        Checker {
            exact_offsets: true,
            ..Checker::default()
        }
    }

    pub fn register(&mut self, token: Token, info: CallInfo) {
        if info.is_static {
            self.statics.insert(info.group.clone());
        }
        assert!(
            self.calls.insert(token, info).is_none(),
            "token {token} reused"
        );
    }

    pub fn unanswered(&self) -> usize {
        self.calls.len()
    }

    pub fn generation(&self, group: &str) -> i32 {
        self.generation.get(group).copied().unwrap_or(0)
    }

    /// Checks one batch of outputs (from one `handle` or `tick`); returns the replies in order.
    pub fn outputs(&mut self, out: &mut Vec<Output>) -> Vec<(Token, Response)> {
        let mut replies = Vec::new();
        for output in out.drain(..) {
            if let Output::Reply { token, response } = output {
                self.reply(token, &response);
                replies.push((token, response));
            } else if let Output::Event(event) = output {
                self.event(&event);
            }
        }
        self.settle_syncs();
        self.check_leaves(&replies);
        replies
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::GenerationChanged { group, generation } => {
                let before = self.generation.get(group).copied();
                if *generation == 0 {
                    assert_eq!(
                        before, None,
                        "{group}: generation 0 for a group that exists"
                    );
                } else {
                    assert_eq!(before, Some(generation - 1), "{group}: generation jumped");
                }
                self.generation.insert(group.clone(), *generation);
            }
            Event::StateChanged { group, state } => {
                let before = self.state.insert(group.clone(), *state);
                if let Some(before) = before {
                    assert!(legal(before, *state), "{group}: {before:?} -> {state:?}");
                } else {
                    assert_eq!(
                        *state,
                        GroupState::Empty,
                        "{group}: a new group starts Empty"
                    );
                }
            }
            Event::GroupDeleted { group } => {
                self.generation.remove(group);
                self.state.remove(group);
                self.leaders.retain(|(g, _), _| g != group);
                self.given.retain(|(g, _), _| g != group);
                self.offsets.remove(group);
            }
            _ => {}
        }
    }

    fn reply(&mut self, token: Token, response: &Response) {
        assert!(self.answered.insert(token), "token {token} answered twice");
        let info = self
            .calls
            .remove(&token)
            .unwrap_or_else(|| panic!("a reply to token {token}, which no call carried"));
        check_encodes(&info.peek, response);
        let group = info.group.clone();
        match response {
            Response::JoinGroup(r) if r.error_code == 0 => {
                if let Some(instance) = &info.instance {
                    self.instances
                        .insert(r.member_id.to_string(), instance.clone());
                }
                let generation = r.generation_id;
                assert_eq!(
                    generation,
                    self.generation(&group),
                    "{group}: JoinGroup generation"
                );
                let instances = &self.instances;
                let identity = |m: &str| instances.get(m).cloned().unwrap_or_else(|| m.to_string());
                let now_leader = identity(r.leader.as_str());
                let leader = self
                    .leaders
                    .entry((group.clone(), generation))
                    .or_insert_with(|| r.leader.to_string());
                assert_eq!(
                    identity(leader.as_str()),
                    now_leader,
                    "{group} gen {generation}: two leaders"
                );
                if !r.members.is_empty() {
                    assert_eq!(r.member_id, r.leader, "members sent to a follower");
                    let ids: HashSet<&str> =
                        r.members.iter().map(|m| m.member_id.as_str()).collect();
                    assert_eq!(ids.len(), r.members.len(), "duplicate members");
                    assert!(
                        ids.contains(r.leader.as_str()),
                        "the leader is not a member"
                    );
                }
            }
            Response::SyncGroup(r) if r.error_code == 0 => {
                let Some((generation, assignments)) = info.sync else {
                    panic!("a SyncGroup reply for a call that was not a SyncGroup")
                };
                let key = (group.clone(), generation);
                if self.leaders.get(&key).map(String::as_str) == Some(info.member.as_str()) {
                    self.given.entry(key).or_insert(assignments);
                }
                self.synced
                    .push((group, generation, info.member, r.assignment.clone()));
            }
            Response::OffsetCommit(r) => {
                for t in &r.topics {
                    for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                        let sent = info.commit.iter().rev().find(|(topic, partition, _)| {
                            topic.as_str() == t.name.as_str() && *partition == p.partition_index
                        });
                        if let Some((topic, partition, offset)) = sent {
                            let model = self.offsets.entry(group.clone()).or_default();
                            model.insert((topic.clone(), *partition), *offset);
                        }
                    }
                }
            }
            Response::OffsetDelete(r) if r.error_code == 0 => {
                if let Some(model) = self.offsets.get_mut(&group) {
                    for t in &r.topics {
                        for p in t.partitions.iter().filter(|p| p.error_code == 0) {
                            model.remove(&(t.name.to_string(), p.partition_index));
                        }
                    }
                }
            }
            Response::DeleteGroups(r) => {
                for g in r.results.iter().filter(|g| g.error_code == 0) {
                    self.offsets.remove(g.group_id.as_str());
                }
            }
            Response::OffsetFetch(r) if self.exact_offsets => self.check_fetch(&group, r),
            Response::DescribeGroups(r) => {
                for g in &r.groups {
                    self.check_described(g);
                }
            }
            _ => {}
        }
    }

    fn settle_syncs(&mut self) {
        let given = &self.given;
        let statics = &self.statics;
        self.synced.retain(|(group, generation, member, got)| {
            if statics.contains(group) {
                return false;
            }
            let Some(assignments) = given.get(&(group.clone(), *generation)) else {
                return true; // the leader's bytes are not known yet
            };
            if let Some(assignments) = assignments {
                let want = assignments.get(member).cloned().unwrap_or_default();
                assert_eq!(
                    *got, want,
                    "{group} gen {generation}: {member} got other bytes"
                );
            }
            false
        });
    }

    /// A member whose LeaveGroup succeeded has no parked JoinGroup or SyncGroup left.
    fn check_leaves(&self, replies: &[(Token, Response)]) {
        for (_, response) in replies {
            let Response::LeaveGroup(r) = response else {
                continue;
            };
            if r.error_code != 0 {
                continue;
            }
            for m in r
                .members
                .iter()
                .filter(|m| m.error_code == 0 && !m.member_id.is_empty())
            {
                let parked = self.calls.values().any(|c| {
                    c.member == m.member_id.as_str()
                        && matches!(c.peek.api_key, ApiKey::JoinGroup | ApiKey::SyncGroup)
                });
                assert!(
                    !parked,
                    "{} left with a request still parked",
                    m.member_id.as_str()
                );
            }
        }
    }

    fn check_fetch(&self, group: &str, r: &kafka_protocol::messages::OffsetFetchResponse) {
        let empty = Offsets::new();
        let check = |group: &str, topic: &str, partition: i32, offset: i64, error: i16| {
            if error != 0 {
                return;
            }
            let model = self.offsets.get(group).unwrap_or(&empty);
            let want = model
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or(-1);
            assert_eq!(offset, want, "{group} {topic}:{partition}: fetched offset");
        };
        for t in &r.topics {
            for p in &t.partitions {
                check(
                    group,
                    &t.name,
                    p.partition_index,
                    p.committed_offset,
                    p.error_code,
                );
            }
        }
        for g in r.groups.iter().filter(|g| g.error_code == 0) {
            for t in &g.topics {
                for p in &t.partitions {
                    check(
                        &g.group_id,
                        &t.name,
                        p.partition_index,
                        p.committed_offset,
                        p.error_code,
                    );
                }
            }
        }
    }

    fn check_described(
        &self,
        g: &kafka_protocol::messages::describe_groups_response::DescribedGroup,
    ) {
        let ids: HashSet<&str> = g.members.iter().map(|m| m.member_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            g.members.len(),
            "{}: duplicate members",
            g.group_id.as_str()
        );
        let stable = g.error_code == 0 && g.group_state.as_str() == "Stable";
        if !stable || self.statics.contains(g.group_id.as_str()) {
            return;
        }
        let key = (g.group_id.to_string(), self.generation(&g.group_id));
        let Some(Some(given)) = self.given.get(&key) else {
            return;
        };
        for m in &g.members {
            let want = given.get(m.member_id.as_str()).cloned().unwrap_or_default();
            assert_eq!(
                m.member_assignment,
                want,
                "{}: Stable member's bytes",
                m.member_id.as_str()
            );
        }
    }
}

/// GROUP_SEMANTICS.md §3.2 (a group is created Empty; a repeat of the same state is no change).
fn legal(from: GroupState, to: GroupState) -> bool {
    use GroupState::*;
    from == to
        || match to {
            PreparingRebalance => matches!(from, Stable | CompletingRebalance | Empty),
            CompletingRebalance => from == PreparingRebalance,
            Stable => from == CompletingRebalance,
            Empty => from == PreparingRebalance,
            Dead => true,
        }
}
