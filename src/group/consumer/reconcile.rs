//! Incremental reconciliation of one member's current assignment towards its target (Kafka's
//! `CurrentAssignmentBuilder`). A partition leaving the member is revoked first, with the member
//! staying at its epoch until it reports the partition gone; a partition another member still
//! holds is not given out until it is released. So no partition is ever owned twice.
//! Pure: returns the next member, emits nothing.

use uuid::Uuid;

use super::member::{Assignment, Member, MemberState};

/// The partitions the member says it owns in this heartbeat (`None`: not sent).
pub type Owned<'a> = Option<&'a [(Uuid, Vec<i32>)]>;

/// The member's next state given the target, the epoch of each partition's current owner
/// (`-1`: free) and what the member reports owning.
pub fn reconcile(
    member: &Member,
    target_epoch: i32,
    target: &Assignment,
    partition_epoch: &dyn Fn(Uuid, i32) -> i32,
    owned: Owned<'_>,
) -> Member {
    match member.state {
        MemberState::Stable => {
            if member.member_epoch != target_epoch {
                next(
                    member,
                    member.member_epoch,
                    target_epoch,
                    target,
                    partition_epoch,
                    owned,
                )
            } else {
                member.clone()
            }
        }
        MemberState::UnrevokedPartitions => {
            if owns_any(owned, &member.pending_revocation) {
                member.clone()
            } else {
                // Revocation acknowledged: one epoch forward, then towards the target.
                next(
                    member,
                    member.member_epoch + 1,
                    target_epoch,
                    target,
                    partition_epoch,
                    owned,
                )
            }
        }
        MemberState::UnreleasedPartitions => next(
            member,
            member.member_epoch,
            target_epoch,
            target,
            partition_epoch,
            owned,
        ),
    }
}

/// Kafka's `ownsRevokedPartitions`: whether the member still reports any of `partitions` (an
/// absent owned list counts as owning them).
fn owns_any(owned: Owned<'_>, partitions: &Assignment) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    owned.iter().any(|(topic, ps)| {
        partitions
            .get(topic)
            .is_some_and(|pending| ps.iter().any(|p| pending.contains(p)))
    })
}

/// Kafka's `computeNextAssignment`.
fn next(
    member: &Member,
    member_epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    partition_epoch: &dyn Fn(Uuid, i32) -> i32,
    owned: Owned<'_>,
) -> Member {
    let mut unreleased = false;
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut assigning = Assignment::new();
    let empty = Default::default();
    let topics = target.keys().chain(member.assigned.keys());
    for topic in topics.collect::<std::collections::BTreeSet<_>>() {
        let want = target.get(topic).unwrap_or(&empty);
        let have = member.assigned.get(topic).unwrap_or(&empty);
        let keep: std::collections::BTreeSet<i32> = have.intersection(want).copied().collect();
        let revoke: std::collections::BTreeSet<i32> = have.difference(&keep).copied().collect();
        let mut gain: std::collections::BTreeSet<i32> = want.difference(&keep).copied().collect();
        gain.retain(|p| {
            let free = partition_epoch(*topic, *p) == -1;
            unreleased |= !free;
            free
        });
        if !keep.is_empty() {
            assigned.insert(*topic, keep);
        }
        if !revoke.is_empty() {
            revoking.insert(*topic, revoke);
        }
        if !gain.is_empty() {
            assigning.insert(*topic, gain);
        }
    }
    let mut m = member.clone();
    if !revoking.is_empty() && owns_any(owned, &revoking) {
        // Revoke first: same epoch, nothing new until the member acknowledges.
        m.state = MemberState::UnrevokedPartitions;
        m.set_epoch(member_epoch);
        m.assigned = assigned;
        m.pending_revocation = revoking;
        return m;
    }
    for (topic, ps) in assigning {
        assigned.entry(topic).or_default().extend(ps);
    }
    m.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    m.set_epoch(target_epoch);
    m.assigned = assigned;
    m.pending_revocation = Assignment::new();
    m
}
