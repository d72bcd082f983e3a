//! Offset retention (GROUP_SEMANTICS.md §3.8 "Retention") and removal of empty groups, run by a
//! periodic timer every `offsets_retention_check_interval_ms`. Kafka's `offsetExpirationCondition`:
//! an Empty group's offsets expire `retention` after it became Empty; a simple group's (no protocol
//! type) after their commit; a Stable "consumer" group's only for topics nobody subscribes to.
//! RetentionTimeMs (OffsetCommit v2–4) overrides. An Empty group left without offsets is removed.
//! Expired offsets and removed groups are deleted from the store too; a group with writes or an
//! import in flight is left for the next run, so a late write cannot bring back what expired.

use super::group::Group;
use super::persist::{Effect, Write};
use super::rebalance::delete_group;
use super::state::GroupState;
use super::store::CommittedOffset;
use super::timers::{TimerAction, TimerKey, Timers};
use super::{Config, Coordinator, Millis, Output};

/// Arms the cleanup timer if it is not armed (the coordinator learns the time at its first call).
pub(crate) fn ensure_armed(timers: &mut Timers, config: &Config, now: Millis) {
    if !timers.is_armed(&TimerKey::Cleanup) {
        let at = now.saturating_add(config.offsets_retention_check_interval_ms.max(1));
        timers.arm(TimerKey::Cleanup, at, TimerAction::Cleanup);
    }
}

pub(crate) fn cleanup(c: &mut Coordinator, now: Millis, out: &mut Vec<Output>) {
    let retention = c.config.offsets_retention_ms;
    let busy: Vec<bool> = c
        .groups
        .keys()
        .map(|id| c.persist.in_flight(id) > 0 || c.imports.is_running(id))
        .collect();
    let (groups, store, mut cx) = c.parts(now, out);
    let ids: Vec<String> = groups.keys().cloned().collect();
    for (id, busy) in ids.into_iter().zip(busy) {
        let Some(g) = groups.get(&id) else { continue };
        if busy {
            continue;
        }
        if let Some(base) = expiry_base(g) {
            let expired = store.expire(&id, |topic, offset| {
                let deadline = offset
                    .expire_timestamp
                    .unwrap_or_else(|| base.of(offset).saturating_add(retention));
                now >= deadline && !(g.state == GroupState::Stable && g.is_subscribed_to(topic))
            });
            if !expired.is_empty() {
                let write = cx.persist.durable.then_some(expired);
                cx.persist(
                    g,
                    move || Write::DeleteOffsets(write.unwrap_or_default()),
                    Effect::None,
                );
            }
        }
        let removable =
            g.state == GroupState::Empty && g.pending_join.is_empty() && !store.has_offsets(&id);
        if removable {
            delete_group(groups, store, &mut cx, &id, None);
        }
    }
    ensure_armed(cx.timers, cx.config, now);
    consumer_cleanup(c, now, out);
}

/// Consumer groups (KIP-848), as Kafka's `ConsumerGroup.offsetExpirationCondition`: an Empty
/// group's offsets expire `retention` after their commit (or at their own expiry time); an Empty
/// group left without offsets is deleted, its tombstone written.
fn consumer_cleanup(c: &mut Coordinator, now: Millis, out: &mut Vec<Output>) {
    let retention = c.config.offsets_retention_ms;
    let empty: Vec<String> = c
        .consumer
        .groups()
        .filter(|g| g.members.is_empty())
        .map(|g| g.id.clone())
        .filter(|id| c.persist.in_flight(id) == 0 && !c.imports.is_running(id))
        .collect();
    for id in empty {
        let expired = c.offsets.expire(&id, |_, offset| {
            let deadline = offset
                .expire_timestamp
                .unwrap_or_else(|| offset.commit_timestamp.saturating_add(retention));
            now >= deadline
        });
        let incarnation = c.consumer_incarnation(&id);
        if !expired.is_empty() {
            let write = c.persist.durable.then_some(expired);
            let write = move || Write::DeleteOffsets(write.unwrap_or_default());
            c.persist.issue(out, &id, incarnation, write, Effect::None);
        }
        if !c.offsets.has_offsets(&id) {
            c.consumer_expire(&id, out);
        }
    }
}

/// When an offset's retention starts counting.
enum Base {
    CommitTime,
    Since(Millis),
}

impl Base {
    fn of(&self, offset: &CommittedOffset) -> Millis {
        match self {
            Base::CommitTime => offset.commit_timestamp,
            Base::Since(at) => *at,
        }
    }
}

/// None if the group's offsets do not expire in its current state.
fn expiry_base(g: &Group) -> Option<Base> {
    match (g.protocol_type.as_deref(), g.state) {
        (None, _) => Some(Base::CommitTime),
        (Some(_), GroupState::Empty) => Some(Base::Since(g.state_since)),
        (Some("consumer"), GroupState::Stable) if g.subscribed_topics.is_some() => {
            Some(Base::CommitTime)
        }
        _ => None,
    }
}
