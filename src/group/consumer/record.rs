//! A consumer group as a durable record and back (the content of Kafka's ConsumerGroupMetadata,
//! MemberMetadata, TargetAssignment and CurrentAssignment records, in one value per group), so a
//! group survives a restart or a move to another kelp without a new assignment: the shell writes
//! `record` for each group `take_dirty` names and gives `load` what the store holds. Serde types
//! only; no I/O here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::group::ConsumerGroup;
use super::member::{Assignment, ClassicMember, Member, MemberState};
use super::timers::Kind;
use super::topics::TopicInfo;
use super::{ConsumerEvent, ConsumerGroups};
use crate::group::Millis;

/// Topic id (hyphenated) → partitions.
pub type AssignmentRecord = BTreeMap<String, BTreeSet<i32>>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerGroupRecord {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    /// Subscribed topic name → (id, partitions) as the group last saw them, so a restart with
    /// unchanged topics does not move the group epoch.
    pub subscription_metadata: BTreeMap<String, (String, i32)>,
    pub members: Vec<ConsumerMemberRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerMemberRecord {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub subscribed_topic_names: Vec<String>,
    pub subscribed_topic_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// `stable`, `unrevoked_partitions` or `unreleased_partitions`.
    pub state: String,
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub assigned: AssignmentRecord,
    pub pending_revocation: AssignmentRecord,
    pub target: AssignmentRecord,
    /// A classic-protocol member's JoinGroup data (absent in records written before classic
    /// members were served: a consumer-protocol member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classic: Option<ClassicMemberRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassicMemberRecord {
    pub session_timeout_ms: i32,
    /// (protocol name, metadata as lowercase hex) in the client's order.
    pub protocols: Vec<(String, String)>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `None` if it is not hex.
fn unhex(s: &str) -> Option<Bytes> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

fn to_record(a: &Assignment) -> AssignmentRecord {
    a.iter()
        .map(|(t, ps)| (t.hyphenated().to_string(), ps.clone()))
        .collect()
}

/// `None` if a topic id does not parse (a damaged record).
fn from_record(a: &AssignmentRecord) -> Option<Assignment> {
    a.iter()
        .filter(|(_, ps)| !ps.is_empty())
        .map(|(t, ps)| Some((Uuid::try_parse(t).ok()?, ps.clone())))
        .collect()
}

fn state_from(name: &str) -> Option<MemberState> {
    [
        MemberState::Stable,
        MemberState::UnrevokedPartitions,
        MemberState::UnreleasedPartitions,
    ]
    .into_iter()
    .find(|s| s.name() == name)
}

impl ConsumerGroups {
    /// The record of `group` as it is now (`None`: no such group, e.g. deleted — write a
    /// tombstone).
    pub fn record(&self, group: &str) -> Option<ConsumerGroupRecord> {
        let g = self.groups.get(group)?;
        let empty = Assignment::new();
        Some(ConsumerGroupRecord {
            group_id: g.id.clone(),
            group_epoch: g.group_epoch,
            assignment_epoch: g.assignment_epoch,
            subscription_metadata: g
                .subscription_metadata
                .iter()
                .map(|(n, t)| (n.clone(), (t.id.hyphenated().to_string(), t.partitions)))
                .collect(),
            members: g
                .members
                .values()
                .map(|m| ConsumerMemberRecord {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                    subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                    server_assignor: m.server_assignor.clone(),
                    state: m.state.name().to_string(),
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    assigned: to_record(&m.assigned),
                    pending_revocation: to_record(&m.pending_revocation),
                    target: to_record(g.target.get(&m.id).unwrap_or(&empty)),
                    classic: m.classic.as_ref().map(|c| ClassicMemberRecord {
                        session_timeout_ms: c.session_timeout_ms,
                        protocols: c
                            .protocols
                            .iter()
                            .map(|(n, b)| (n.clone(), hex(b)))
                            .collect(),
                    }),
                })
                .collect(),
        })
    }

    /// Restores groups from their records (Kafka's `onLoaded`): epochs, members, current and
    /// target assignments come back as they were, every member's session timer starts at `now`
    /// and a member revoking gets a fresh rebalance timeout, so live members heartbeat on with no
    /// new assignment. A group already here is replaced. A damaged record (an unknown member
    /// state, a topic id that does not parse, one partition held twice) is skipped and named in
    /// the result.
    pub fn load(
        &mut self,
        now: Millis,
        records: Vec<ConsumerGroupRecord>,
        out: &mut Vec<ConsumerEvent>,
    ) -> Vec<String> {
        self.run_timers(now, out);
        let mut refused = Vec::new();
        for r in records {
            let id = r.group_id.clone();
            match self.restore(r) {
                Some(g) => {
                    self.timers.cancel_group(&id);
                    for m in g.members.values() {
                        let timeout = m
                            .classic
                            .as_ref()
                            .map_or(self.config.session_timeout_ms, |c| c.session_timeout_ms);
                        let session = now + timeout.max(0) as u64;
                        self.timers.arm(&id, &m.id, Kind::Session, session);
                        if m.state == MemberState::UnrevokedPartitions {
                            let at = now + m.rebalance_timeout_ms.max(0) as u64;
                            let kind = Kind::Rebalance {
                                epoch: m.member_epoch,
                            };
                            self.timers.arm(&id, &m.id, kind, at);
                        }
                    }
                    out.push(ConsumerEvent::StateChanged {
                        group: id.clone(),
                        state: g.state,
                    });
                    self.groups.insert(id, g);
                }
                None => refused.push(id),
            }
        }
        refused
    }

    fn restore(&self, r: ConsumerGroupRecord) -> Option<ConsumerGroup> {
        let mut g = ConsumerGroup::new(r.group_id);
        g.group_epoch = r.group_epoch;
        g.assignment_epoch = r.assignment_epoch;
        for m in r.members {
            let member = Member {
                id: m.member_id,
                instance_id: m.instance_id,
                rack_id: m.rack_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                subscribed_topic_names: m.subscribed_topic_names.into_iter().collect(),
                subscribed_topic_regex: m.subscribed_topic_regex,
                server_assignor: m.server_assignor,
                state: state_from(&m.state)?,
                member_epoch: m.member_epoch,
                previous_member_epoch: m.previous_member_epoch,
                assigned: from_record(&m.assigned)?,
                pending_revocation: from_record(&m.pending_revocation)?,
                classic: match &m.classic {
                    None => None,
                    Some(c) => Some(ClassicMember {
                        session_timeout_ms: c.session_timeout_ms,
                        protocols: c
                            .protocols
                            .iter()
                            .map(|(n, h)| Some((n.clone(), unhex(h)?)))
                            .collect::<Option<Vec<_>>>()?,
                    }),
                },
            };
            g.target.insert(member.id.clone(), from_record(&m.target)?);
            g.put_member(member);
        }
        g.check_ownership().ok()?;
        for (name, (id, partitions)) in r.subscription_metadata {
            let id = Uuid::try_parse(&id).ok()?;
            g.subscription_metadata
                .insert(name, TopicInfo { id, partitions });
        }
        // Compiled for the assignor; a changed match moves the epoch at the next `set_topics`.
        g.refresh_regexes(&self.topics);
        g.update_state();
        g.dirty = false;
        Some(g)
    }

    /// Gives `group` up (another kelp owns it now, or it was handed to the classic side): its
    /// state and timers go; nothing is written. True if it was here.
    pub fn release(&mut self, group: &str) -> bool {
        self.timers.cancel_group(group);
        self.groups.remove(group).is_some()
    }
}
