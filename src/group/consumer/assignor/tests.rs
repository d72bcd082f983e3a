//! Assignor tests, named after the Kafka test cases they mirror (`UniformHomogeneousAssignmentBuilderTest`,
//! `UniformHeterogeneousAssignmentBuilderTest`, `RangeAssignorTest`).

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::{Assignor, MemberSpec};
use crate::group::consumer::member::{count, flatten, Assignment};

fn t(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

fn a(parts: &[(u128, &[i32])]) -> Assignment {
    parts
        .iter()
        .map(|(topic, ps)| (t(*topic), ps.iter().copied().collect()))
        .collect()
}

struct Case {
    members: Vec<(String, Option<String>, BTreeSet<Uuid>, Assignment)>,
    topics: HashMap<Uuid, i32>,
}

impl Case {
    fn new(topics: &[(u128, i32)]) -> Case {
        Case {
            members: Vec::new(),
            topics: topics.iter().map(|(id, c)| (t(*id), *c)).collect(),
        }
    }

    fn member(mut self, id: &str, topics: &[u128], current: Assignment) -> Case {
        let topics = topics.iter().map(|x| t(*x)).collect();
        self.members.push((id.to_string(), None, topics, current));
        self
    }

    fn static_member(mut self, id: &str, instance: &str, topics: &[u128]) -> Case {
        let topics = topics.iter().map(|x| t(*x)).collect();
        self.members.push((
            id.to_string(),
            Some(instance.to_string()),
            topics,
            Assignment::new(),
        ));
        self
    }

    fn run(&self, assignor: Assignor) -> HashMap<String, Assignment> {
        let specs: Vec<MemberSpec<'_>> = self
            .members
            .iter()
            .map(|(id, inst, topics, cur)| MemberSpec {
                id,
                instance_id: inst.as_deref(),
                topics: topics.clone(),
                current: cur,
            })
            .collect();
        let out = assignor.assign(&specs, &|id| self.topics.get(&id).copied());
        self.check_complete_and_disjoint(&out);
        out
    }

    /// Every partition of a subscribed, existing topic goes to exactly one subscriber.
    fn check_complete_and_disjoint(&self, out: &HashMap<String, Assignment>) {
        let mut seen = BTreeSet::new();
        for (id, _, topics, _) in &self.members {
            for (topic, p) in flatten(&out[id]) {
                assert!(topics.contains(&topic), "{id} got an unsubscribed topic");
                assert!(seen.insert((topic, p)), "{topic}-{p} assigned twice");
            }
        }
        for (topic, c) in &self.topics {
            if self.members.iter().any(|m| m.2.contains(topic)) {
                for p in 0..*c {
                    assert!(seen.contains(&(*topic, p)), "{topic}-{p} unassigned");
                }
            }
        }
    }
}

fn spread(out: &HashMap<String, Assignment>) -> (usize, usize) {
    let counts: Vec<usize> = out.values().map(count).collect();
    (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
    )
}

#[test]
fn test_one_member_no_topic_subscription() {
    let out = Case::new(&[(1, 3)])
        .member("A", &[], a(&[]))
        .run(Assignor::Uniform);
    assert_eq!(out["A"], a(&[]));
}

#[test]
fn test_first_assignment_two_members_two_topics_homogeneous() {
    let out = Case::new(&[(1, 3), (2, 3)])
        .member("A", &[1, 2], a(&[]))
        .member("B", &[1, 2], a(&[]))
        .run(Assignor::Uniform);
    assert_eq!(spread(&out), (3, 3));
}

#[test]
fn test_first_assignment_num_members_greater_than_total_num_partitions() {
    let out = Case::new(&[(1, 1), (2, 1)])
        .member("A", &[1, 2], a(&[]))
        .member("B", &[1, 2], a(&[]))
        .member("C", &[1, 2], a(&[]))
        .run(Assignor::Uniform);
    assert_eq!(spread(&out), (0, 1));
}

#[test]
fn test_reassignment_for_one_member_added_keeps_the_rest() {
    // 12 partitions over 6 members (2 each); a 7th joins: each keeps at least one.
    let mut case = Case::new(&[(1, 12)]);
    for i in 0..6 {
        let p = i * 2;
        case = case.member(&format!("m{i}"), &[1], a(&[(1, &[p, p + 1])]));
    }
    let out = case.member("m6", &[1], a(&[])).run(Assignor::Uniform);
    assert_eq!(spread(&out), (1, 2));
    for i in 0..6 {
        let before = a(&[(1, &[i * 2, i * 2 + 1])]);
        let kept = flatten(&out[&format!("m{i}")])
            .filter(|(topic, p)| before[topic].contains(p))
            .count();
        assert_eq!(
            kept,
            count(&out[&format!("m{i}")]),
            "m{i} only keeps its own"
        );
    }
}

#[test]
fn test_reassignment_for_one_member_removed() {
    let out = Case::new(&[(1, 6)])
        .member("A", &[1], a(&[(1, &[0, 1])]))
        .member("B", &[1], a(&[(1, &[2, 3])]))
        .run(Assignor::Uniform);
    assert!(out["A"].get(&t(1)).unwrap().is_superset(&[0, 1].into()));
    assert!(out["B"].get(&t(1)).unwrap().is_superset(&[2, 3].into()));
    assert_eq!(spread(&out), (3, 3));
}

#[test]
fn test_reassignment_when_partitions_are_added_for_two_topics() {
    let out = Case::new(&[(1, 6), (2, 4)])
        .member("A", &[1, 2], a(&[(1, &[0, 2]), (2, &[0])]))
        .member("B", &[1, 2], a(&[(1, &[1]), (2, &[1, 2])]))
        .run(Assignor::Uniform);
    assert_eq!(spread(&out), (5, 5));
    assert!(out["A"][&t(1)].is_superset(&[0, 2].into()));
}

#[test]
fn test_heterogeneous_two_members_subscribed_to_different_topics() {
    let out = Case::new(&[(1, 3), (2, 3), (3, 2)])
        .member("A", &[1, 2], a(&[]))
        .member("B", &[2, 3], a(&[]))
        .run(Assignor::Uniform);
    assert_eq!(out["A"][&t(1)].len(), 3);
    assert_eq!(out["B"][&t(3)].len(), 2);
    let (lo, hi) = spread(&out);
    assert!(hi - lo <= 1, "{lo}..{hi}");
}

#[test]
fn test_heterogeneous_reassignment_keeps_valid_partitions() {
    let out = Case::new(&[(1, 4), (2, 4)])
        .member("A", &[1, 2], a(&[(1, &[0, 1, 2, 3]), (2, &[0, 1, 2, 3])]))
        .member("B", &[2], a(&[]))
        .run(Assignor::Uniform);
    assert_eq!(out["A"][&t(1)].len(), 4);
    assert_eq!(count(&out["B"]), 4, "B takes its topic's share");
}

#[test]
fn test_range_one_consumer_one_topic() {
    let out = Case::new(&[(1, 3)])
        .member("A", &[1], a(&[]))
        .run(Assignor::Range);
    assert_eq!(out["A"], a(&[(1, &[0, 1, 2])]));
}

#[test]
fn test_range_first_assignment_two_consumers_two_topics_same_subscriptions() {
    let out = Case::new(&[(1, 3), (2, 3)])
        .member("A", &[1, 2], a(&[]))
        .member("B", &[1, 2], a(&[]))
        .run(Assignor::Range);
    assert_eq!(out["A"], a(&[(1, &[0, 1]), (2, &[0, 1])]));
    assert_eq!(out["B"], a(&[(1, &[2]), (2, &[2])]));
}

#[test]
fn test_range_first_assignment_three_consumers_three_topics_different_subscriptions() {
    let out = Case::new(&[(1, 3), (2, 3), (3, 2)])
        .member("A", &[1, 2], a(&[]))
        .member("B", &[3], a(&[]))
        .member("C", &[2, 3], a(&[]))
        .run(Assignor::Range);
    assert_eq!(out["A"], a(&[(1, &[0, 1, 2]), (2, &[0, 1])]));
    assert_eq!(out["B"], a(&[(3, &[0])]));
    assert_eq!(out["C"], a(&[(2, &[2]), (3, &[1])]));
}

#[test]
fn test_range_static_members_sort_by_instance_id_first() {
    let out = Case::new(&[(1, 3)])
        .member("a-dynamic", &[1], a(&[]))
        .static_member("z-static", "i1", &[1])
        .run(Assignor::Range);
    assert_eq!(out["z-static"], a(&[(1, &[0, 1])]));
    assert_eq!(out["a-dynamic"], a(&[(1, &[2])]));
}

#[test]
fn test_unknown_topic_is_not_assigned() {
    let out = Case::new(&[(1, 2)])
        .member("A", &[1, 9], a(&[(9, &[0])]))
        .run(Assignor::Uniform);
    assert_eq!(out["A"], a(&[(1, &[0, 1])]));
}

#[test]
fn uniform_is_balanced_and_complete_for_many_shapes() {
    // Bounded sweep: members 1..=7, partitions 0..=13, homogeneous, from scratch and from a skew.
    for n in 1..=7usize {
        for parts in 0..=13i32 {
            let mut case = Case::new(&[(1, parts)]);
            for i in 0..n {
                let current = if i == 0 && parts > 0 {
                    a(&[(1, &(0..parts).collect::<Vec<_>>())])
                } else {
                    a(&[])
                };
                case = case.member(&format!("m{i}"), &[1], current);
            }
            let out = case.run(Assignor::Uniform);
            let (lo, hi) = spread(&out);
            assert!(hi - lo <= 1, "n={n} parts={parts}: {lo}..{hi}");
        }
    }
}
