//! Property tests: random sequences of joins, heartbeats (prompt, slow or stale), subscription
//! changes, static leaves and rejoins, leaves, topic changes and clock advances over five members,
//! with the invariants checked after every step (by `H`):
//! - no partition is held by two members, neither in the coordinator's records nor in what the
//!   clients may be consuming (what they reported plus what they were given since);
//! - epochs never go backwards (group epoch, assignment epoch ≤ group epoch);
//! - when the calls stop changing things and every member acts on its answers, the group becomes
//!   Stable with every partition of a subscribed topic assigned exactly once.

use proptest::prelude::*;

use super::reconcile::{converge, current};
use super::*;
use crate::group::consumer::ConsumerGroupState;

const MEMBERS: usize = 5;

#[derive(Clone, Debug)]
enum Op {
    Join {
        m: usize,
        topics: u8,
        statik: bool,
    },
    /// A heartbeat reporting what the member was last told (it acts at once).
    Beat {
        m: usize,
    },
    /// A heartbeat that still reports the partitions it was asked to revoke.
    SlowBeat {
        m: usize,
    },
    /// A heartbeat at an older epoch.
    StaleBeat {
        m: usize,
    },
    Subscribe {
        m: usize,
        topics: u8,
    },
    Leave {
        m: usize,
    },
    StaticLeave {
        m: usize,
    },
    Topics {
        foo: i32,
        bar: i32,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MEMBERS;
    prop_oneof![
        1 => (m.clone(), 1u8..4, any::<bool>()).prop_map(|(m, topics, statik)| Op::Join { m, topics, statik }),
        4 => m.clone().prop_map(|m| Op::Beat { m }),
        1 => m.clone().prop_map(|m| Op::SlowBeat { m }),
        1 => m.clone().prop_map(|m| Op::StaleBeat { m }),
        1 => (m.clone(), 1u8..4).prop_map(|(m, topics)| Op::Subscribe { m, topics }),
        1 => m.clone().prop_map(|m| Op::Leave { m }),
        1 => m.prop_map(|m| Op::StaticLeave { m }),
        1 => (1i32..9, 1i32..5).prop_map(|(foo, bar)| Op::Topics { foo, bar }),
        1 => prop_oneof![Just(1_000u64), Just(20_000), Just(50_000)].prop_map(|ms| Op::Advance { ms }),
    ]
}

fn names(topics: u8) -> Vec<&'static str> {
    let mut v = Vec::new();
    if topics & 1 != 0 {
        v.push("foo");
    }
    if topics & 2 != 0 {
        v.push("bar");
    }
    v
}

/// The member id instance `m` uses now (static members get a new id per join).
struct Ids {
    ids: Vec<String>,
    joins: usize,
}

fn apply(h: &mut H, ids: &mut Ids, op: &Op) {
    let known = |h: &H, id: &str| h.c.group(G).is_some_and(|g| g.members.contains_key(id));
    match op {
        Op::Join { m, topics, statik } => {
            ids.joins += 1;
            ids.ids[*m] = format!("m{m}-{}", ids.joins);
            let mut hb = Hb::join(&ids.ids[*m], &names(*topics));
            if *statik {
                hb = hb.instance(&format!("i{m}"));
            }
            h.hb(hb);
        }
        Op::Beat { m } | Op::SlowBeat { m } | Op::StaleBeat { m } | Op::Subscribe { m, .. } => {
            let id = ids.ids[*m].clone();
            if !known(h, &id) {
                return;
            }
            let member = h.group().members[&id].clone();
            if member.member_epoch < 0 {
                // A static member that left for now sends nothing until it joins again.
                return;
            }
            let mut owned = current(h, &id);
            if matches!(op, Op::SlowBeat { .. }) {
                for (t, ps) in &member.pending_revocation {
                    owned.entry(t.as_u128()).or_default().extend(ps);
                }
            }
            let epoch = match op {
                Op::StaleBeat { .. } => member.previous_member_epoch,
                _ => member.member_epoch,
            };
            let mut hb = Hb::beat(&id, epoch, &owned);
            if let Some(i) = &member.instance_id {
                hb = hb.instance(i);
            }
            if let Op::Subscribe { topics, .. } = op {
                hb = hb.topics(&names(*topics));
            }
            h.hb(hb);
        }
        Op::Leave { m } | Op::StaticLeave { m } => {
            let id = ids.ids[*m].clone();
            if !known(h, &id) {
                return;
            }
            let member = h.group().members[&id].clone();
            let mut hb = Hb::leave(&id, -1);
            if let Some(i) = &member.instance_id {
                hb = hb.instance(i);
                if matches!(op, Op::StaticLeave { .. }) {
                    hb.0.member_epoch = -2;
                }
            }
            h.hb(hb);
        }
        Op::Topics { foo, bar } => h.set_topics(&[("foo", FOO, *foo), ("bar", BAR, *bar)]),
        Op::Advance { ms } => h.advance(*ms),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn partitions_are_never_owned_twice_and_groups_converge(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = H::new();
        let mut ids = Ids { ids: (0..MEMBERS).map(|m| format!("m{m}-0")).collect(), joins: 0 };
        let mut last = (0, 0);
        for op in &ops {
            apply(&mut h, &mut ids, op);
            if let Some(g) = h.c.group(G) {
                prop_assert!(g.group_epoch >= last.0 && g.assignment_epoch >= last.1);
                prop_assert!(g.assignment_epoch <= g.group_epoch);
                last = (g.group_epoch, g.assignment_epoch);
            }
        }
        // Quiesce: drop the members that left for now, then everyone acts on its answers.
        let Some(g) = h.c.group(G) else { return Ok(()) };
        let leaving: Vec<String> = g.members.values().filter(|m| m.member_epoch < 0).map(|m| m.id.clone()).collect();
        if !leaving.is_empty() {
            h.advance(45_000);
        }
        let live: Vec<String> = h.group().members.keys().cloned().collect();
        if live.is_empty() {
            return Ok(());
        }
        converge(&mut h, &live);
        let g = h.group();
        prop_assert_eq!(g.state, ConsumerGroupState::Stable);
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for (t, ps) in &m.assigned {
                for p in ps {
                    prop_assert!(seen.insert((*t, *p)));
                }
            }
        }
        let expected: usize = g.subscription_metadata.values().map(|t| t.partitions as usize).sum();
        prop_assert_eq!(seen.len(), expected);
    }
}
