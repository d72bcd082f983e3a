//! One consumer group (KIP-848; Kafka's `ConsumerGroup`): epochs, members, the target assignment,
//! the epoch of each partition's current owner, the subscription metadata and the resolved regexes,
//! and the pure queries on them. Nothing here emits output or touches timers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::assignor::{Assignor, MemberSpec};
use super::member::{count, flatten, Assignment, Member};
use super::topics::{TopicInfo, TopicRegex, Topics};

/// Kafka's `ConsumerGroupState` (a deleted group is gone rather than Dead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsumerGroupState {
    #[default]
    Empty,
    /// The group epoch moved past the target assignment's: a new target is due.
    Assigning,
    /// Some member is not yet at the target epoch or not Stable.
    Reconciling,
    Stable,
}

impl ConsumerGroupState {
    /// As ConsumerGroupDescribe spells it.
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }

    /// Lower case (Kafka's `toLowerCaseString`). ListGroups does not use it: it answers `name`
    /// and filters states case-insensitively (`ConsumerGroups::list`).
    #[cfg(test)]
    pub fn list_name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "empty",
            ConsumerGroupState::Assigning => "assigning",
            ConsumerGroupState::Reconciling => "reconciling",
            ConsumerGroupState::Stable => "stable",
        }
    }
}

/// Where a group's reconciliation stands (`ConsumerGroup::reconciliation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    pub members: usize,
    /// Members whose epoch is the target assignment's.
    pub at_target_epoch: usize,
    /// Partitions members still hold but must give up.
    pub pending_revocation: usize,
    /// Partitions in a member's target it does not hold yet.
    pub awaiting_assignment: usize,
}

/// A regex some member subscribes with and the topics it matches now.
#[derive(Clone, Debug)]
pub struct ResolvedRegex {
    pub regex: TopicRegex,
    pub topics: BTreeSet<String>,
}

#[derive(Clone, Debug)]
pub struct ConsumerGroup {
    pub id: String,
    pub group_epoch: i32,
    /// The epoch of `target` (Kafka's target assignment epoch).
    pub assignment_epoch: i32,
    pub members: BTreeMap<String, Member>,
    /// Instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Member id → target assignment.
    pub target: HashMap<String, Assignment>,
    /// (topic, partition) → epoch of the member holding it (assigned or pending revocation).
    partition_epochs: HashMap<(Uuid, i32), i32>,
    /// Subscribed topics that exist, by name (Kafka's subscription metadata).
    pub subscription_metadata: BTreeMap<String, TopicInfo>,
    pub regexes: BTreeMap<String, ResolvedRegex>,
    pub state: ConsumerGroupState,
    /// Changed since its record was last taken (`ConsumerGroups::take_dirty`).
    pub(crate) dirty: bool,
}

impl ConsumerGroup {
    pub fn new(id: String) -> Self {
        ConsumerGroup {
            id,
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            target: HashMap::new(),
            partition_epochs: HashMap::new(),
            subscription_metadata: BTreeMap::new(),
            regexes: BTreeMap::new(),
            state: ConsumerGroupState::Empty,
            dirty: true,
        }
    }

    /// The epoch of the member holding `partition`, or -1 when it is free.
    pub fn partition_epoch(&self, topic: Uuid, partition: i32) -> i32 {
        self.partition_epochs
            .get(&(topic, partition))
            .copied()
            .unwrap_or(-1)
    }

    pub fn static_member(&self, instance_id: &str) -> Option<&Member> {
        self.static_members
            .get(instance_id)
            .and_then(|id| self.members.get(id))
    }

    /// Adds or replaces a member, moving the partition epochs from its old state to its new.
    pub fn put_member(&mut self, member: Member) {
        self.dirty = true;
        if let Some(old) = self.members.get(&member.id) {
            for tp in old.owned() {
                self.partition_epochs.remove(&tp);
            }
        }
        for tp in member.owned() {
            self.partition_epochs.insert(tp, member.member_epoch);
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member with its partitions (free now) and its target.
    pub fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let m = self.members.remove(member_id)?;
        self.dirty = true;
        for tp in m.owned() {
            self.partition_epochs.remove(&tp);
        }
        if let Some(instance) = &m.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        self.target.remove(member_id);
        Some(m)
    }

    /// A static member's new id takes over the old one's target (Kafka's `replaceMember`).
    pub fn move_target(&mut self, from: &str, to: &str) {
        if let Some(t) = self.target.remove(from) {
            self.target.insert(to.to_string(), t);
        }
    }

    /// The topics `member` subscribes to that exist: by name and through its regex.
    pub fn member_topics(&self, member: &Member, topics: &Topics) -> BTreeSet<Uuid> {
        let mut ids: BTreeSet<Uuid> = member
            .subscribed_topic_names
            .iter()
            .filter_map(|n| topics.get(n).map(|t| t.id))
            .collect();
        if let Some(r) = member
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| self.regexes.get(r))
        {
            ids.extend(r.topics.iter().filter_map(|n| topics.get(n).map(|t| t.id)));
        }
        ids
    }

    /// Compiles the regexes members use now (dropping unused ones) and resolves them against
    /// `topics`.
    pub fn refresh_regexes(&mut self, topics: &Topics) {
        let used: BTreeSet<&String> = self
            .members
            .values()
            .filter_map(|m| m.subscribed_topic_regex.as_ref())
            .collect();
        let mut next = BTreeMap::new();
        for pattern in used {
            let regex = match self.regexes.get(pattern) {
                Some(r) => r.regex.clone(),
                // Validated before a member could subscribe with it.
                None => match TopicRegex::compile(pattern) {
                    Ok(r) => r,
                    Err(_) => continue,
                },
            };
            let resolved = regex.resolve(topics);
            next.insert(
                pattern.clone(),
                ResolvedRegex {
                    regex,
                    topics: resolved,
                },
            );
        }
        self.regexes = next;
    }

    /// Refreshes the regexes and recomputes the subscription metadata under `topics`. True if the
    /// subscription metadata changed.
    pub fn refresh_subscriptions(&mut self, topics: &Topics) -> bool {
        self.refresh_regexes(topics);
        let metadata = self.compute_subscription_metadata(topics);
        let changed = metadata != self.subscription_metadata;
        self.subscription_metadata = metadata;
        changed
    }

    /// The subscription metadata every member's subscription gives under `topics`.
    pub fn compute_subscription_metadata(&self, topics: &Topics) -> BTreeMap<String, TopicInfo> {
        let mut out = BTreeMap::new();
        for m in self.members.values() {
            for id in self.member_topics(m, topics) {
                if let (Some(name), Some(partitions)) = (topics.name(id), topics.partitions(id)) {
                    out.insert(name.to_string(), TopicInfo { id, partitions });
                }
            }
        }
        out
    }

    /// The assignor most members ask for (ties: by name), else `default` (Kafka's
    /// `computePreferredServerAssignor`).
    pub fn preferred_assignor(&self, default: Assignor) -> Assignor {
        let mut counts: BTreeMap<Assignor, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref().and_then(Assignor::by_name) {
                *counts.entry(a).or_default() += 1;
            }
        }
        let mut best: Option<(Assignor, usize)> = None;
        for (a, n) in counts {
            if best.map_or(true, |(_, b)| n > b) {
                best = Some((a, n));
            }
        }
        best.map_or(default, |(a, _)| a)
    }

    /// Recomputes the target of every member at `epoch` (Kafka's `TargetAssignmentBuilder`): the
    /// assignor starts from the current targets, so a sticky assignor moves little.
    pub fn compute_target(&mut self, epoch: i32, assignor: Assignor, topics: &Topics) {
        let empty = Assignment::new();
        let subscriptions: Vec<(&Member, BTreeSet<Uuid>)> = self
            .members
            .values()
            .map(|m| (m, self.member_topics(m, topics)))
            .collect();
        let specs: Vec<MemberSpec<'_>> = subscriptions
            .into_iter()
            .map(|(m, topic_ids)| MemberSpec {
                id: &m.id,
                instance_id: m.instance_id.as_deref(),
                topics: topic_ids,
                current: self.target.get(&m.id).unwrap_or(&empty),
            })
            .collect();
        let next = assignor.assign(&specs, &|id| topics.partitions(id));
        self.target = next;
        self.assignment_epoch = epoch;
        self.dirty = true;
    }

    /// Kafka's `maybeUpdateGroupState`.
    pub fn update_state(&mut self) -> bool {
        let state = if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| !m.is_reconciled_to(self.assignment_epoch))
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        };
        let changed = state != self.state;
        self.state = state;
        changed
    }

    /// Where reconciliation stands, for metrics and dashboards.
    pub fn reconciliation(&self) -> Reconciliation {
        let empty = Assignment::new();
        let mut r = Reconciliation {
            members: self.members.len(),
            ..Reconciliation::default()
        };
        for m in self.members.values() {
            r.at_target_epoch += usize::from(m.member_epoch == self.assignment_epoch);
            r.pending_revocation += count(&m.pending_revocation);
            let target = self.target.get(&m.id).unwrap_or(&empty);
            r.awaiting_assignment += flatten(target)
                .filter(|(t, p)| !m.assigned.get(t).is_some_and(|ps| ps.contains(p)))
                .count();
        }
        r
    }

    /// Test and invariant helper: every partition held (assigned or pending revocation) by at most
    /// one member, and the partition-epoch index agrees with the members.
    pub fn check_ownership(&self) -> Result<(), String> {
        let mut seen: HashMap<(Uuid, i32), &str> = HashMap::new();
        for m in self.members.values() {
            for tp in m.owned() {
                if let Some(other) = seen.insert(tp, &m.id) {
                    return Err(format!("{tp:?} owned by {other} and {}", m.id));
                }
                if self.partition_epoch(tp.0, tp.1) != m.member_epoch {
                    return Err(format!("{tp:?}: partition epoch disagrees with {}", m.id));
                }
            }
        }
        if seen.len() != self.partition_epochs.len() {
            return Err("partition epochs of partitions nobody holds".into());
        }
        Ok(())
    }
}
