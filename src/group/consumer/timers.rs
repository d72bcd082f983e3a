//! The consumer coordinator's timers: per member one session timeout, at most one rebalance timeout
//! and, for a classic-protocol member, a join and a sync timeout; fired in (deadline, arming
//! order). It never reads a clock; `now` is passed in.

use std::collections::{BTreeMap, HashMap};

use crate::group::Millis;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The member missed its session (`group.consumer.session.timeout.ms`).
    Session,
    /// The member did not revoke within its rebalance timeout while at this epoch.
    Rebalance { epoch: i32 },
    /// A classic member told to rejoin did not send JoinGroup within its rebalance timeout.
    Join,
    /// A classic member did not send SyncGroup within its rebalance timeout after its JoinGroup.
    Sync,
}

impl Kind {
    fn slot(&self) -> u8 {
        match self {
            Kind::Session => 0,
            Kind::Rebalance { .. } => 1,
            Kind::Join => 2,
            Kind::Sync => 3,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    group: String,
    member: String,
    slot: u8,
}

#[derive(Default)]
pub(crate) struct Timers {
    queue: BTreeMap<(Millis, u64), Key>,
    armed: HashMap<Key, (Millis, u64, Kind)>,
    seq: u64,
}

impl Timers {
    /// Arms the timer of this kind for the member, replacing the one armed before.
    pub(crate) fn arm(&mut self, group: &str, member: &str, kind: Kind, at: Millis) {
        let key = Key {
            group: group.to_string(),
            member: member.to_string(),
            slot: kind.slot(),
        };
        if let Some((old_at, old_seq, _)) = self.armed.remove(&key) {
            self.queue.remove(&(old_at, old_seq));
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), key.clone());
        self.armed.insert(key, (at, self.seq, kind));
    }

    /// Arms the timer unless one of this kind is armed already (Kafka's `scheduleIfAbsent`).
    pub(crate) fn arm_if_absent(&mut self, group: &str, member: &str, kind: Kind, at: Millis) {
        if !self.is_armed(group, member, &kind) {
            self.arm(group, member, kind, at);
        }
    }

    pub(crate) fn is_armed(&self, group: &str, member: &str, kind: &Kind) -> bool {
        self.armed.contains_key(&Key {
            group: group.to_string(),
            member: member.to_string(),
            slot: kind.slot(),
        })
    }

    pub(crate) fn cancel_rebalance(&mut self, group: &str, member: &str) {
        self.cancel_kind(group, member, &Kind::Rebalance { epoch: 0 });
    }

    /// Cancels the member's timer of this kind (the epoch of a rebalance kind is ignored).
    pub(crate) fn cancel_kind(&mut self, group: &str, member: &str, kind: &Kind) {
        self.cancel(Key {
            group: group.to_string(),
            member: member.to_string(),
            slot: kind.slot(),
        });
    }

    /// Cancels every timer of a member (it left or was fenced).
    pub(crate) fn cancel_member(&mut self, group: &str, member: &str) {
        for slot in 0..4 {
            self.cancel(Key {
                group: group.to_string(),
                member: member.to_string(),
                slot,
            });
        }
    }

    fn cancel(&mut self, key: Key) {
        if let Some((at, seq, _)) = self.armed.remove(&key) {
            self.queue.remove(&(at, seq));
        }
    }

    /// Cancels every timer of a group.
    pub(crate) fn cancel_group(&mut self, group: &str) {
        let keys: Vec<Key> = self
            .armed
            .keys()
            .filter(|k| k.group == group)
            .cloned()
            .collect();
        for k in keys {
            self.cancel(k);
        }
    }

    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// The earliest timer due at `now`, disarmed: (deadline, group, member, kind).
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, String, String, Kind)> {
        let (&(at, seq), _) = self.queue.iter().next()?;
        if at > now {
            return None;
        }
        let key = self.queue.remove(&(at, seq))?;
        let (_, _, kind) = self.armed.remove(&key)?;
        Some((at, key.group, key.member, kind))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}
