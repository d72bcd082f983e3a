//! A small deterministic timer set: one armed timer per key, fired in (deadline, arming order).
//! It never reads a clock; the coordinator passes `now` in.

use std::collections::{BTreeMap, HashMap};

use super::Millis;

/// What a timer is about. Arming a key that is already armed replaces it (Kafka's `timer.schedule`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerKey {
    /// The group's join phase: the initial delay or the rebalance timeout.
    Join(String),
    /// One member's session (or a pending member's, or a new member's join timeout).
    Heartbeat(String, String),
    /// The group's pending-sync deadline after a join phase completed.
    PendingSync(String),
    /// The periodic offset-retention and empty-group cleanup.
    Cleanup,
}

impl TimerKey {
    fn group(&self) -> Option<&str> {
        match self {
            TimerKey::Join(g) | TimerKey::Heartbeat(g, _) | TimerKey::PendingSync(g) => Some(g),
            TimerKey::Cleanup => None,
        }
    }
}

/// What to do when the timer fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimerAction {
    /// Initial rebalance delay (§3.4): extend while new members keep arriving.
    InitialJoin { delay_ms: i32, remaining_ms: i32 },
    /// Complete the join phase with whoever has joined.
    CompleteJoin,
    /// The member (or pending member) under the key's id missed its session.
    ExpireHeartbeat,
    /// Remove members that did not sync in `generation`.
    ExpirePendingSync { generation: i32 },
    /// Expire offsets and remove empty groups.
    Cleanup,
}

#[derive(Default)]
pub(crate) struct Timers {
    queue: BTreeMap<(Millis, u64), TimerKey>,
    armed: HashMap<TimerKey, (Millis, u64, TimerAction)>,
    seq: u64,
}

impl Timers {
    /// Arms `key` to fire at `at`, replacing any timer armed under the same key.
    pub(crate) fn arm(&mut self, key: TimerKey, at: Millis, action: TimerAction) {
        self.cancel(&key);
        let seq = self.seq;
        self.seq += 1;
        self.queue.insert((at, seq), key.clone());
        self.armed.insert(key, (at, seq, action));
    }

    pub(crate) fn cancel(&mut self, key: &TimerKey) {
        if let Some((at, seq, _)) = self.armed.remove(key) {
            self.queue.remove(&(at, seq));
        }
    }

    /// Cancels every timer of a group (the group is being removed).
    pub(crate) fn cancel_group(&mut self, group: &str) {
        let keys: Vec<TimerKey> = self
            .armed
            .keys()
            .filter(|k| k.group() == Some(group))
            .cloned()
            .collect();
        for key in keys {
            self.cancel(&key);
        }
    }

    pub(crate) fn is_armed(&self, key: &TimerKey) -> bool {
        self.armed.contains_key(key)
    }

    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.queue.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`, with its deadline.
    pub(crate) fn pop_due(&mut self, now: Millis) -> Option<(Millis, TimerKey, TimerAction)> {
        let (&(at, seq), _) = self.queue.iter().next().filter(|((at, _), _)| *at <= now)?;
        let key = self.queue.remove(&(at, seq))?;
        let (_, _, action) = self.armed.remove(&key)?;
        Some((at, key, action))
    }

    #[cfg(test)]
    pub(crate) fn deadline(&self, key: &TimerKey) -> Option<Millis> {
        self.armed.get(key).map(|(at, _, _)| *at)
    }
}

/// `now + delay`, with a negative delay treated as zero (Kafka accepts any rebalance timeout).
pub(crate) fn after(now: Millis, delay_ms: i32) -> Millis {
    now.saturating_add(delay_ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_then_arming_order_and_rearm_replaces() {
        let mut t = Timers::default();
        t.arm(TimerKey::Join("a".into()), 10, TimerAction::CompleteJoin);
        t.arm(
            TimerKey::PendingSync("a".into()),
            5,
            TimerAction::CompleteJoin,
        );
        t.arm(TimerKey::Join("a".into()), 7, TimerAction::CompleteJoin);
        assert_eq!(t.next_deadline(), Some(5));
        assert_eq!(
            t.pop_due(6).map(|x| (x.0, x.1)),
            Some((5, TimerKey::PendingSync("a".into())))
        );
        assert_eq!(t.pop_due(6), None);
        assert_eq!(t.pop_due(7).map(|x| x.1), Some(TimerKey::Join("a".into())));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn cancel_group_only_touches_that_group() {
        let mut t = Timers::default();
        t.arm(
            TimerKey::Heartbeat("a".into(), "m".into()),
            1,
            TimerAction::ExpireHeartbeat,
        );
        t.arm(TimerKey::Join("b".into()), 1, TimerAction::CompleteJoin);
        t.cancel_group("a");
        assert!(!t.is_armed(&TimerKey::Heartbeat("a".into(), "m".into())));
        assert!(t.is_armed(&TimerKey::Join("b".into())));
    }
}
