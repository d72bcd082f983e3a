//! The `range` assignor (Kafka's server-side `RangeAssignor`): per topic, its subscribers in a fixed
//! order (static members by instance id first, then the rest by member id) each take one contiguous
//! range, the first `partitions % subscribers` one partition more. Members subscribed to the same
//! topics get the same partition numbers of each (co-partitioning). Not sticky, by design.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use super::MemberSpec;
use crate::group::consumer::member::Assignment;

pub(super) fn assign(
    members: &[MemberSpec<'_>],
    partitions: &dyn Fn(Uuid) -> Option<i32>,
) -> HashMap<String, Assignment> {
    let mut order: Vec<&MemberSpec<'_>> = members.iter().collect();
    order.sort_by(|a, b| match (a.instance_id, b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.id.cmp(b.id),
    });
    // Per topic: subscribers in order.
    let mut subscribers: BTreeMap<Uuid, Vec<&str>> = BTreeMap::new();
    for m in &order {
        for t in &m.topics {
            subscribers.entry(*t).or_default().push(m.id);
        }
    }
    let mut out: HashMap<String, Assignment> = members
        .iter()
        .map(|m| (m.id.to_string(), Assignment::new()))
        .collect();
    for (topic, subs) in subscribers {
        let Some(count) = partitions(topic).filter(|c| *c > 0) else {
            continue;
        };
        let n = subs.len() as i32;
        let (quota, extra) = (count / n, count % n);
        let mut start = 0;
        for (i, id) in subs.into_iter().enumerate() {
            let len = quota + i32::from((i as i32) < extra);
            let end = (start + len).min(count);
            if start < end {
                if let Some(a) = out.get_mut(id) {
                    a.insert(topic, (start..end).collect());
                }
            }
            start = end;
        }
    }
    out
}
