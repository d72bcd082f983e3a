//! Online migration between classic and consumer groups (`group.consumer.migration.policy`;
//! Kafka 4's `validateOnlineUpgrade`, `convertToConsumerGroup`, `ConsumerGroup.fromClassicGroup`,
//! `validateOnlineDowngradeWithFencedMember`, `convertToClassicGroup`,
//! `ClassicGroup.fromConsumerGroup`). The classic group lives in the classic coordinator; the two
//! sides trade plain data (`ClassicSnapshot`), so this file never touches the classic coordinator
//! and the classic coordinator never touches a consumer group.
//!
//! Upgrade: a ConsumerGroupHeartbeat joining (epoch 0) a non-empty classic group → `upgrade_from`
//! with the classic group's snapshot. Downgrade: when the last consumer-protocol member leaves or
//! is fenced and every remaining member uses the classic protocol, the group leaves this
//! coordinator and comes out of `take_downgrades` for the classic side to install.

use bytes::Bytes;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::classic::CONSUMER_PROTOCOL_TYPE;
use super::classic::{decode_assignment, decode_subscription, encode_assignment, to_assignment};
use super::group::ConsumerGroup;
use super::heartbeat::{code, fence_member, Refusal};
use super::member::{Assignment, ClassicMember, Member, MemberState};
use super::timers::Kind;
use super::{CallContext, ConsumerEvent, ConsumerGroups, FenceCause};
use crate::group::Millis;

/// Kafka's `ConsumerGroupMigrationPolicy` (`group.consumer.migration.policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Neither way.
    Disabled,
    /// Classic → consumer only.
    Upgrade,
    /// Consumer → classic only.
    Downgrade,
    /// Both ways (Kafka 4's default).
    #[default]
    Bidirectional,
}

impl MigrationPolicy {
    /// Parses Kafka's names, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        [
            MigrationPolicy::Disabled,
            MigrationPolicy::Upgrade,
            MigrationPolicy::Downgrade,
            MigrationPolicy::Bidirectional,
        ]
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }

    pub fn name(self) -> &'static str {
        match self {
            MigrationPolicy::Disabled => "disabled",
            MigrationPolicy::Upgrade => "upgrade",
            MigrationPolicy::Downgrade => "downgrade",
            MigrationPolicy::Bidirectional => "bidirectional",
        }
    }

    pub fn upgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    pub fn downgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

/// A classic group as plain data, both ways between the two coordinators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassicSnapshot {
    pub group_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    /// The selected protocol (`None`: the importer selects one).
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// In the group's member order.
    pub members: Vec<ClassicMemberSnapshot>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClassicMemberSnapshot {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// (name, metadata) in the client's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// The member's ConsumerProtocolAssignment (empty: none yet).
    pub assignment: Bytes,
}

/// A consumer group that became a classic group again: install `snapshot` on the classic side
/// (`Coordinator::import_classic`), which starts a rebalance when `rebalances()` says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downgrade {
    pub snapshot: ClassicSnapshot,
    pub reason: DowngradeReason,
}

/// How the last consumer-protocol member went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DowngradeReason {
    /// It left or was fenced: the classic group rebalances (Kafka's "for member leaving").
    Fenced(FenceCause),
    /// It was a static member replaced by a classic-protocol incarnation (a JoinGroup with its
    /// instance id): a rebalance only if the subscription changed.
    StaticMemberReplaced { subscription_changed: bool },
}

impl Downgrade {
    /// Whether the classic group must start a rebalance once installed.
    pub fn rebalances(&self) -> bool {
        match self.reason {
            DowngradeReason::Fenced(_) => true,
            DowngradeReason::StaticMemberReplaced {
                subscription_changed,
            } => subscription_changed,
        }
    }
}

impl ConsumerGroups {
    /// A ConsumerGroupHeartbeat joining (epoch 0) the non-empty classic group `classic`
    /// (Kafka's `getOrMaybeCreateConsumerGroup` with `validateOnlineUpgrade`): if the policy and
    /// the group allow it, the classic group becomes a consumer group here — its members keep
    /// their assignments at the classic generation, as classic-protocol members — and the
    /// heartbeat joins it. Returns the heartbeat's answer and whether the group was converted;
    /// only then must the shell drop the classic group (`Coordinator::export_classic`). A refusal
    /// (GROUP_ID_NOT_FOUND as Kafka words it, or any error of the heartbeat itself) changes
    /// nothing here.
    pub fn upgrade_from(
        &mut self,
        now: Millis,
        cx: &CallContext,
        classic: &ClassicSnapshot,
        req: &ConsumerGroupHeartbeatRequest,
        out: &mut Vec<ConsumerEvent>,
    ) -> (ConsumerGroupHeartbeatResponse, bool) {
        self.run_timers(now, out);
        let refused = |Refusal(code, message): Refusal| {
            let r = ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)));
            (r, false)
        };
        if let Err(r) = self.validate(cx.api_version, req) {
            return refused(r);
        }
        let group_id = classic.group_id.clone();
        // A consumer group of that id already (not expected: one namespace) is never replaced.
        if req.member_epoch != 0
            || req.group_id.as_str() != group_id
            || self.groups.contains_key(&group_id)
        {
            return refused(Refusal(
                code::GROUP_ID_NOT_FOUND,
                format!("Group {group_id} is not a consumer group."),
            ));
        }
        let group = match self.consumer_group_of(classic) {
            Ok(g) => g,
            Err(r) => return refused(r),
        };
        let mut events = Vec::new();
        self.groups.insert(group_id.clone(), group);
        let sessions: Vec<(String, i32)> = self.groups[&group_id]
            .members
            .values()
            .map(|m| {
                (
                    m.id.clone(),
                    m.classic.as_ref().map_or(0, |c| c.session_timeout_ms),
                )
            })
            .collect();
        for (member, session) in sessions {
            let at = now + session.max(0) as u64;
            self.timers.arm(&group_id, &member, Kind::Session, at);
        }
        match self.join_or_heartbeat(now, cx, req, &mut events) {
            Ok(response) => {
                if let Some(g) = self.groups.get_mut(&group_id) {
                    g.dirty = true;
                }
                self.note(&group_id);
                out.extend(events);
                (response, true)
            }
            Err(r) => {
                // Kafka applies nothing of a failed heartbeat: the group stays classic.
                self.groups.remove(&group_id);
                self.timers.cancel_group(&group_id);
                refused(r)
            }
        }
    }

    /// Kafka's `validateOnlineUpgrade` and `ConsumerGroup.fromClassicGroup`: epochs are the
    /// generation, every member is Stable at it with its classic assignment as current and target.
    fn consumer_group_of(&self, c: &ClassicSnapshot) -> Result<ConsumerGroup, Refusal> {
        let id = &c.group_id;
        let refuse = |why: &str| {
            Err(Refusal(
                code::GROUP_ID_NOT_FOUND,
                format!("Cannot upgrade classic group {id} to consumer group because {why}."),
            ))
        };
        if !self.config.migration_policy.upgrade_enabled() {
            return refuse("online upgrade is disabled");
        }
        if c.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return refuse("the group does not use the consumer embedded protocol");
        }
        if c.members.len() > self.config.max_size {
            return refuse("the group size exceeds the consumer group maximum size");
        }
        let malformed = || refuse("the embedded consumer protocol is malformed");
        let protocol = c.protocol_name.as_deref().unwrap_or("");
        let mut g = ConsumerGroup::new(id.clone());
        g.group_epoch = c.generation;
        g.assignment_epoch = c.generation;
        for m in &c.members {
            let metadata = m
                .protocols
                .iter()
                .find(|(n, _)| n == protocol)
                .or(m.protocols.first())
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            let Some((_, subscription)) = decode_subscription(&metadata) else {
                return malformed();
            };
            let Some(assignment) = decode_assignment(&m.assignment) else {
                return malformed();
            };
            let assigned = to_assignment(
                assignment
                    .assigned_partitions
                    .iter()
                    .map(|tp| (tp.topic.as_str(), tp.partitions.as_slice())),
                &self.topics,
            );
            let mut member = Member::new(m.member_id.clone());
            member.member_epoch = c.generation;
            member.previous_member_epoch = c.generation;
            member.state = MemberState::Stable;
            member.instance_id = m.group_instance_id.clone();
            member.rack_id = subscription
                .rack_id
                .as_ref()
                .filter(|r| !r.is_empty())
                .map(|r| r.to_string());
            member.rebalance_timeout_ms = m.rebalance_timeout_ms;
            member.client_id = m.client_id.clone();
            member.client_host = m.client_host.clone();
            member.subscribed_topic_names =
                subscription.topics.iter().map(|t| t.to_string()).collect();
            member.assigned = assigned.clone();
            member.classic = Some(ClassicMember {
                session_timeout_ms: m.session_timeout_ms,
                protocols: m.protocols.clone(),
            });
            g.target.insert(member.id.clone(), assigned);
            g.put_member(member);
        }
        // Two members claiming one partition cannot be reconciled safely.
        if g.check_ownership().is_err() {
            return malformed();
        }
        g.subscription_metadata = g.compute_subscription_metadata(&self.topics);
        g.update_state();
        Ok(g)
    }

    /// Removes `member_id` (Kafka's `consumerGroupFenceMember`); when it was the last member
    /// using the consumer protocol and the policy allows, the whole group goes back to the classic
    /// side instead (`take_downgrades`).
    pub(super) fn fence(
        &mut self,
        group_id: &str,
        member_id: &str,
        cause: FenceCause,
        out: &mut Vec<ConsumerEvent>,
    ) {
        let Some(g) = self.groups.get_mut(group_id) else {
            return;
        };
        if !g.members.contains_key(member_id) {
            return;
        }
        if downgrade_allowed(g, member_id, &self.config) {
            let snapshot = to_classic(g, member_id, &self.topics);
            out.push(ConsumerEvent::MemberFenced {
                group: group_id.to_string(),
                cause,
            });
            self.downgrade(group_id, snapshot, DowngradeReason::Fenced(cause));
            return;
        }
        fence_member(g, &mut self.timers, &self.topics, member_id, cause, out);
    }

    /// The groups that became classic groups since the last call, for the classic side to install
    /// (`Coordinator::import_classic`). Their consumer records are gone: `take_dirty` names them
    /// and `record` is `None` (write the tombstone).
    pub fn take_downgrades(&mut self) -> Vec<Downgrade> {
        std::mem::take(&mut self.downgrades)
    }
}

impl ConsumerGroups {
    /// After a classic JoinGroup replaced the static member `replaced` (which used the consumer
    /// protocol): if every member now uses the classic protocol and the policy allows, the group
    /// goes back to the classic side (Kafka's `validateOnlineDowngradeWithReplacedMember`). True if
    /// it did.
    pub(super) fn maybe_downgrade_after_replacement(
        &mut self,
        group_id: &str,
        subscription_changed: bool,
    ) -> bool {
        let Some(g) = self.groups.get(group_id) else {
            return false;
        };
        let allowed = g.members.values().all(|m| m.uses_classic_protocol())
            && self.config.migration_policy.downgrade_enabled()
            && g.members.len() <= self.config.classic_max_size;
        if !allowed {
            return false;
        }
        let snapshot = to_classic(g, "", &self.topics);
        let reason = DowngradeReason::StaticMemberReplaced {
            subscription_changed,
        };
        self.downgrade(group_id, snapshot, reason);
        true
    }

    /// Hands `group_id` to the classic side as `snapshot`: the group, its timers and its record
    /// go (`take_dirty` names it, for the tombstone); `take_downgrades` returns the snapshot.
    fn downgrade(&mut self, group_id: &str, snapshot: ClassicSnapshot, reason: DowngradeReason) {
        self.groups.remove(group_id);
        self.timers.cancel_group(group_id);
        self.dirty.insert(group_id.to_string());
        self.downgrades.push(Downgrade { snapshot, reason });
    }
}

/// Kafka's `validateOnlineDowngradeWithFencedMember`.
fn downgrade_allowed(g: &ConsumerGroup, leaving: &str, config: &super::ConsumerConfig) -> bool {
    let others = g.members.len().saturating_sub(1);
    let all_classic = g
        .members
        .values()
        .all(|m| (m.id == leaving) != m.uses_classic_protocol());
    all_classic
        && others > 0
        && config.migration_policy.downgrade_enabled()
        && others <= config.classic_max_size
}

/// Kafka's `ClassicGroup.fromConsumerGroup`: every member but `leaving`, at the group epoch as
/// generation, each with its target assignment encoded at its subscription's version.
fn to_classic(g: &ConsumerGroup, leaving: &str, topics: &super::Topics) -> ClassicSnapshot {
    let members: Vec<&Member> = g.members.values().filter(|m| m.id != leaving).collect();
    let protocol = select_protocol(&members);
    let empty = Assignment::new();
    let members = members
        .into_iter()
        .map(|m| {
            let protocols = m
                .classic
                .as_ref()
                .map(|c| c.protocols.clone())
                .unwrap_or_default();
            let metadata = protocols
                .iter()
                .find(|(n, _)| Some(n) == protocol.as_ref())
                .map(|(_, b)| b.clone())
                .unwrap_or_default();
            let target = g.target.get(&m.id).unwrap_or(&empty);
            ClassicMemberSnapshot {
                member_id: m.id.clone(),
                group_instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.classic.as_ref().map_or(0, |c| c.session_timeout_ms),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                assignment: encode_assignment(target, topics, &metadata),
                protocols,
            }
        })
        .collect::<Vec<_>>();
    ClassicSnapshot {
        group_id: g.id.clone(),
        generation: g.group_epoch,
        protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
        protocol_name: protocol,
        leader: members.first().map(|m| m.member_id.clone()),
        members,
    }
}

/// Kafka's `ClassicGroup.selectProtocol` over the members' classic protocols, in member order.
fn select_protocol(members: &[&Member]) -> Option<String> {
    crate::group::group::select_protocol(members.iter().map(|m| {
        let protocols = m.classic.as_ref().map_or(&[][..], |c| &c.protocols[..]);
        protocols.iter().map(|(n, _)| n.as_str())
    }))
}
