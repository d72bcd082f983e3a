//! The `uniform` assignor (the default, like Kafka's `UniformAssignor`): every partition of a
//! subscribed topic goes to one subscriber, counts as even as the subscriptions allow, and a member
//! keeps as much of its current target as balance permits (sticky), so a rebalance moves few
//! partitions. Our own algorithm: a quota pass when every member subscribes to the same topics,
//! a keep / fill / even-out pass otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use uuid::Uuid;

use super::{is_homogeneous, MemberSpec};
use crate::group::consumer::member::{add, count, flatten, remove, Assignment};

pub(super) fn assign(
    members: &[MemberSpec<'_>],
    partitions: &dyn Fn(Uuid) -> Option<i32>,
) -> HashMap<String, Assignment> {
    if is_homogeneous(members) {
        homogeneous(members, partitions)
    } else {
        heterogeneous(members, partitions)
    }
}

/// The partitions of `member`'s current target it may keep: subscribed, existing, in range, and not
/// already kept by a member earlier in the list (`claimed`).
fn keepable(
    member: &MemberSpec<'_>,
    partitions: &dyn Fn(Uuid) -> Option<i32>,
    claimed: &mut HashSet<(Uuid, i32)>,
) -> Vec<(Uuid, i32)> {
    flatten(member.current)
        .filter(|(t, p)| member.topics.contains(t) && partitions(*t).is_some_and(|c| *p < c))
        .filter(|tp| claimed.insert(*tp))
        .collect()
}

fn homogeneous(
    members: &[MemberSpec<'_>],
    partitions: &dyn Fn(Uuid) -> Option<i32>,
) -> HashMap<String, Assignment> {
    let all: Vec<(Uuid, i32)> = members[0]
        .topics
        .iter()
        .filter_map(|t| partitions(*t).map(|c| (*t, c)))
        .flat_map(|(t, c)| (0..c.max(0)).map(move |p| (t, p)))
        .collect();
    let n = members.len();
    let (min, extra) = (all.len() / n, all.len() % n);
    let mut claimed = HashSet::new();
    let mut order: Vec<(usize, Vec<(Uuid, i32)>)> = members
        .iter()
        .enumerate()
        .map(|(i, m)| (i, keepable(m, partitions, &mut claimed)))
        .collect();
    // The members holding the most get the larger quotas: fewest partitions move.
    order.sort_by(|a, b| {
        b.1.len()
            .cmp(&a.1.len())
            .then_with(|| members[a.0].id.cmp(members[b.0].id))
    });
    let mut out: Vec<Assignment> = vec![Assignment::new(); n];
    let mut quota = vec![0usize; n];
    let mut kept: HashSet<(Uuid, i32)> = HashSet::new();
    for (rank, (i, keep)) in order.iter().enumerate() {
        quota[*i] = min + usize::from(rank < extra);
        for (t, p) in keep.iter().take(quota[*i]) {
            add(&mut out[*i], *t, *p);
            kept.insert((*t, *p));
        }
    }
    let mut free = all.into_iter().filter(|tp| !kept.contains(tp));
    let mut by_id: Vec<usize> = (0..n).collect();
    by_id.sort_by(|a, b| members[*a].id.cmp(members[*b].id));
    for i in by_id {
        while count(&out[i]) < quota[i] {
            let Some((t, p)) = free.next() else { break };
            add(&mut out[i], t, p);
        }
    }
    members
        .iter()
        .zip(out)
        .map(|(m, a)| (m.id.to_string(), a))
        .collect()
}

fn heterogeneous(
    members: &[MemberSpec<'_>],
    partitions: &dyn Fn(Uuid) -> Option<i32>,
) -> HashMap<String, Assignment> {
    let n = members.len();
    // Subscribers of each existing topic, by index.
    let mut subscribers: BTreeMap<Uuid, Vec<usize>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for t in &m.topics {
            if partitions(*t).is_some() {
                subscribers.entry(*t).or_default().push(i);
            }
        }
    }
    let mut out: Vec<Assignment> = vec![Assignment::new(); n];
    let mut claimed = HashSet::new();
    for (i, m) in members.iter().enumerate() {
        for (t, p) in keepable(m, partitions, &mut claimed) {
            add(&mut out[i], t, p);
        }
    }
    // Fill: topics with the fewest subscribers first, each partition to its least-loaded subscriber.
    let mut topics: Vec<(&Uuid, &Vec<usize>)> = subscribers.iter().collect();
    topics.sort_by_key(|(t, subs)| (subs.len(), **t));
    let least = |out: &[Assignment], subs: &[usize]| -> usize {
        let key = |i: &usize| (count(&out[*i]), members[*i].id);
        subs.iter().copied().min_by_key(key).unwrap_or(0)
    };
    for (t, subs) in &topics {
        let c = partitions(**t).unwrap_or(0);
        for p in 0..c {
            if !claimed.contains(&(**t, p)) {
                let i = least(&out, subs);
                add(&mut out[i], **t, p);
            }
        }
    }
    // Even out: move one partition at a time from a member to a subscriber with two fewer.
    let total: usize = out.iter().map(count).sum();
    for _ in 0..=total {
        let Some((from, to, t, p)) = find_move(members, &subscribers, &out, &least) else {
            break;
        };
        remove(&mut out[from], t, p);
        add(&mut out[to], t, p);
    }
    members
        .iter()
        .zip(out)
        .map(|(m, a)| (m.id.to_string(), a))
        .collect()
}

/// One move that makes the assignment more even, taking from the most loaded member first.
fn find_move(
    members: &[MemberSpec<'_>],
    subscribers: &BTreeMap<Uuid, Vec<usize>>,
    out: &[Assignment],
    least: &dyn Fn(&[Assignment], &[usize]) -> usize,
) -> Option<(usize, usize, Uuid, i32)> {
    let mut order: Vec<usize> = (0..members.len()).collect();
    order.sort_by_key(|i| (std::cmp::Reverse(count(&out[*i])), members[*i].id));
    for from in order {
        let have = count(&out[from]);
        let topics: BTreeSet<Uuid> = out[from].keys().copied().collect();
        for t in topics {
            let subs = subscribers.get(&t).map(Vec::as_slice).unwrap_or(&[]);
            let to = least(out, subs);
            if count(&out[to]) + 1 < have {
                let p = *out[from].get(&t)?.iter().next_back()?;
                return Some((from, to, t, p));
            }
        }
    }
    None
}
