//! One classic group and its members: the data of GROUP_SEMANTICS.md §3.1 and the pure queries on it
//! (protocol support and selection, validateMember, leader election). Nothing here emits output or
//! touches timers; the transitions that do live in `rebalance.rs`.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use indexmap::IndexMap;

use super::persist::WriteId;
use super::state::GroupState;
use super::{Millis, Token};

/// Error codes used by the coordinator (GROUP_SEMANTICS.md §1.2).
pub(crate) mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
}

/// A parked request: its response slot and the version to shape the response for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub token: Token,
    pub version: i16,
}

/// One entry of a JoinGroup's protocol list: name and opaque metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Protocol {
    pub name: String,
    pub metadata: Bytes,
}

#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// In the client's order of preference.
    pub protocols: Vec<Protocol>,
    /// Opaque bytes from the leader's SyncGroup; empty until then.
    pub assignment: Bytes,
    pub join_waiter: Option<Waiter>,
    pub sync_waiter: Option<Waiter>,
    /// Added by JoinGroup and not yet through a completed join phase.
    pub is_new: bool,
}

impl Member {
    pub(crate) fn is_awaiting_join(&self) -> bool {
        self.join_waiter.is_some()
    }

    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: a member that is not new and is waiting on the group
    /// survives a missed session.
    pub(crate) fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.join_waiter.is_some() || self.sync_waiter.is_some())
    }
}

/// Kafka's `selectProtocol`, given each member's protocol names in preference order: each member
/// votes for its first choice among the protocols every member supports; most votes wins, ties go
/// to the protocol voted for first (member order). `None` if no protocol gets a vote.
pub(crate) fn select_protocol<'a, M, P>(members: M) -> Option<String>
where
    M: IntoIterator<Item = P> + Clone,
    P: IntoIterator<Item = &'a str>,
{
    let supported_by_all = |name: &str| {
        members
            .clone()
            .into_iter()
            .all(|m| m.into_iter().any(|n| n == name))
    };
    let mut votes: IndexMap<&str, usize> = IndexMap::new();
    for member in members.clone() {
        if let Some(name) = member.into_iter().find(|n| supported_by_all(n)) {
            *votes.entry(name).or_default() += 1;
        }
    }
    let best = votes.values().copied().max()?;
    votes
        .into_iter()
        .find(|(_, n)| *n == best)
        .map(|(name, _)| name.to_string())
}

pub(crate) struct Group {
    pub id: String,
    pub state: GroupState,
    /// Kafka starts a new group with previous state Dead.
    pub previous_state: GroupState,
    pub state_since: Millis,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// In insertion order, which makes leader hand-over and tie-breaks deterministic.
    pub members: IndexMap<String, Member>,
    /// Group instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Ids handed out with MEMBER_ID_REQUIRED that have not joined yet.
    pub pending_join: BTreeSet<String>,
    /// Members that have not sent SyncGroup since the last join phase completed.
    pub pending_sync: BTreeSet<String>,
    pub new_member_added: bool,
    /// Topics the members subscribe to, when the group is a "consumer" group whose metadata parses.
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// When the current rebalance (since the group was last Stable or Empty) began.
    pub rebalance_started: Option<Millis>,
    /// Which group object this is (a deleted and re-created group gets a new one), so a write
    /// that completes late does not touch a successor (`persist.rs`).
    pub incarnation: u64,
    /// The record write of the leader's SyncGroup this round waits for.
    pub assignment_write: Option<WriteId>,
}

impl Group {
    pub(crate) fn new(id: String, now: Millis) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            previous_state: GroupState::Dead,
            state_since: now,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_join: BTreeSet::new(),
            pending_sync: BTreeSet::new(),
            new_member_added: false,
            subscribed_topics: None,
            rebalance_started: None,
            incarnation: 0,
            assignment_write: None,
        }
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    pub(crate) fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.is_awaiting_join())
            .count()
    }

    /// Every member awaits its join response and no pending member is outstanding.
    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.num_awaiting_join() && self.pending_join.is_empty()
    }

    /// The group's rebalance timeout: the maximum over its members.
    pub(crate) fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    /// Kafka's `supportsProtocols`: may a member with these protocols be in this group?
    pub(crate) fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|p| self.supported_by_all(&p.name))
    }

    /// True for a group with no members (as Kafka's count 0 == numMembers 0): a non-Empty group can
    /// be left without members, e.g. when its only member leaves during the initial delay.
    pub(crate) fn supported_by_all(&self, name: &str) -> bool {
        self.members
            .values()
            .all(|m| m.protocols.iter().any(|p| p.name == name))
    }

    /// Kafka's `selectProtocol` (`select_protocol`) over the members in order.
    pub(crate) fn select_protocol(&self) -> Option<String> {
        select_protocol(
            self.members
                .values()
                .map(|m| m.protocols.iter().map(|p| p.name.as_str())),
        )
    }

    /// Kafka's `validateMember`: UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID, checked by instance id
    /// first when one is given.
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), i16> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                None => return Err(code::UNKNOWN_MEMBER_ID),
                Some(current) if current != member_id => return Err(code::FENCED_INSTANCE_ID),
                Some(_) => {}
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(code::UNKNOWN_MEMBER_ID)
        }
    }

    /// Adds a member (bookkeeping only): static mapping, protocol type of the first member,
    /// leadership if there is no leader, and it stops being pending.
    pub(crate) fn add_member(&mut self, member: Member) {
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        self.pending_join.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member (bookkeeping only) and returns it so the caller can answer its waiters.
    /// Leadership passes to the first remaining member.
    pub(crate) fn take_member(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.shift_remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_join.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Static membership (§3.7): the member under `old_id` moves to `new_id`, keeping its place,
    /// assignment, protocols, timeouts and leadership. Returns the old id's parked join and sync.
    pub(crate) fn replace_member_id(
        &mut self,
        old_id: &str,
        new_id: &str,
    ) -> Option<(Option<Waiter>, Option<Waiter>)> {
        let index = self.members.get_index_of(old_id)?;
        let (_, mut member) = self.members.shift_remove_index(index)?;
        let parked = (member.join_waiter.take(), member.sync_waiter.take());
        member.id = new_id.to_string();
        member.is_new = false;
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), new_id.to_string());
        }
        self.members.shift_insert(index, new_id.to_string(), member);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_string());
        }
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_string());
        }
        Some(parked)
    }

    /// At join completion: keep the leader if it rejoined, else hand leadership to any member that
    /// did. False when nobody has rejoined (or there is no leader at all).
    pub(crate) fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(Member::is_awaiting_join)
        {
            return true;
        }
        match self.members.values().find(|m| m.is_awaiting_join()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's `computeSubscribedTopics`: known only for "consumer" groups whose members' metadata
    /// for the selected protocol parses as a ConsumerProtocolSubscription.
    pub(crate) fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(parse_subscription_topics(&member.metadata(protocol))?);
        }
        Some(topics)
    }

    /// Is `topic` subscribed by the group (Kafka's `isSubscribedToTopic`)? Unknown subscriptions
    /// count as subscribed for "consumer" groups.
    pub(crate) fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(topics) => topics.contains(topic),
            None => self.protocol_type.as_deref() == Some("consumer"),
        }
    }
}

/// Reads the topic list of a ConsumerProtocolSubscription (version i16, then the v0 fields
/// topics: [string] and user_data: nullable bytes). None if the bytes do not parse.
pub(crate) fn parse_subscription_topics(bytes: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(bytes);
    if r.i16()? < 0 {
        return None;
    }
    let count = r.i32()?;
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = r.i16()?;
        let raw = r.take(usize::try_from(len).ok()?)?;
        topics.push(String::from_utf8(raw.to_vec()).ok()?);
    }
    let user_data = r.i32()?;
    if user_data >= 0 {
        r.take(usize::try_from(user_data).ok()?)?;
    }
    Some(topics)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_parses_topics_and_rejects_garbage() {
        let mut v = vec![0, 1, 0, 0, 0, 2, 0, 2, b't', b'1', 0, 2, b't', b'2'];
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            parse_subscription_topics(&v),
            Some(vec!["t1".into(), "t2".into()])
        );
        assert_eq!(parse_subscription_topics(&v[..9]), None);
        assert_eq!(parse_subscription_topics(&[0xff, 0xff]), None);
        assert_eq!(
            parse_subscription_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]),
            None
        );
    }
}
