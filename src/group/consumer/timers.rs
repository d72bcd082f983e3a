//! The consumer coordinator's timers: one member session timeout and at most one rebalance timeout
//! per member, fired in (deadline, arming order). It never reads a clock; `now` is passed in.

use std::collections::{BTreeMap, HashMap};

use crate::group::Millis;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The member missed its session (`group.consumer.session.timeout.ms`).
    Session,
    /// The member did not revoke within its rebalance timeout while at this epoch.
    Rebalance { epoch: i32 },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    group: String,
    member: String,
    rebalance: bool,
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
            rebalance: matches!(kind, Kind::Rebalance { .. }),
        };
        if let Some((old_at, old_seq, _)) = self.armed.remove(&key) {
            self.queue.remove(&(old_at, old_seq));
        }
        self.seq += 1;
        self.queue.insert((at, self.seq), key.clone());
        self.armed.insert(key, (at, self.seq, kind));
    }

    pub(crate) fn cancel_rebalance(&mut self, group: &str, member: &str) {
        self.cancel(Key {
            group: group.to_string(),
            member: member.to_string(),
            rebalance: true,
        });
    }

    /// Cancels both timers of a member (it left or was fenced).
    pub(crate) fn cancel_member(&mut self, group: &str, member: &str) {
        for rebalance in [false, true] {
            self.cancel(Key {
                group: group.to_string(),
                member: member.to_string(),
                rebalance,
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

    pub(crate) fn len(&self) -> usize {
        self.armed.len()
    }
}
