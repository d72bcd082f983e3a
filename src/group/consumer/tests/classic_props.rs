//! Property test with both protocols in one group: random joins, acts (a consumer member
//! heartbeats with what it holds; a classic member heartbeats and, when told, rejoins reporting what
//! it holds — cooperatively, or eagerly with nothing — and syncs), leaves and clock advances over
//! two consumer-protocol and two classic members. After every step `H` checks that no partition is
//! held twice, by the coordinator's records or by what the clients were told; at the end, when
//! every member acts on its answers, the group becomes Stable with every partition assigned once.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::classic::{Cj, Classic};
use super::reconcile::current;
use super::*;
use crate::group::consumer::ConsumerGroupState;

const MEMBERS: usize = 4;

/// Members 0 and 2 use the consumer protocol; 1 is a cooperative classic client, 3 an eager one.
fn is_classic(m: usize) -> bool {
    m % 2 == 1
}

#[derive(Clone, Debug)]
enum Op {
    Join { m: usize },
    Act { m: usize },
    Leave { m: usize },
    Advance { ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let m = 0..MEMBERS;
    prop_oneof![
        2 => m.clone().prop_map(|m| Op::Join { m }),
        6 => m.clone().prop_map(|m| Op::Act { m }),
        1 => m.prop_map(|m| Op::Leave { m }),
        1 => prop_oneof![Just(1_000u64), Just(6_000), Just(20_000)].prop_map(|ms| Op::Advance { ms }),
    ]
}

/// Client-side knowledge: each instance's member id and, for classic ones, its generation.
struct Clients {
    ids: Vec<String>,
    generation: BTreeMap<usize, i32>,
    joins: usize,
}

fn known(h: &H, id: &str) -> bool {
    h.c.group(G).is_some_and(|g| g.members.contains_key(id))
}

fn told(h: &H, id: &str) -> Parts {
    h.told
        .get(&(G.to_string(), id.to_string()))
        .cloned()
        .unwrap_or_default()
}

/// A classic client's JoinGroup then SyncGroup, reporting what it holds (an eager one revoked
/// everything first).
fn classic_rejoin(h: &mut H, c: &mut Clients, m: usize) {
    let id = c.ids[m].clone();
    let owned: Vec<(String, Vec<i32>)> = if m == 1 {
        told(h, &id)
            .into_iter()
            .map(|(t, ps)| {
                let name = if t == FOO { "foo" } else { "bar" };
                (name.to_string(), ps.into_iter().collect())
            })
            .collect()
    } else {
        Vec::new()
    };
    let owned: Vec<(&str, &[i32])> = owned
        .iter()
        .map(|(t, ps)| (t.as_str(), ps.as_slice()))
        .collect();
    let j = h.cjoin(Cj::new(&id, &["foo", "bar"], &owned));
    if j.error_code != 0 {
        c.generation.remove(&m);
        return;
    }
    c.generation.insert(m, j.generation_id);
    h.csync(&id, j.generation_id);
}

fn apply(h: &mut H, c: &mut Clients, op: &Op) {
    match *op {
        Op::Join { m } => {
            c.joins += 1;
            c.ids[m] = format!("m{m}-{}", c.joins);
            if is_classic(m) {
                if h.c.serves_classic_join(G) {
                    classic_rejoin(h, c, m);
                }
            } else {
                h.hb(Hb::join(&c.ids[m], &["foo", "bar"]));
            }
        }
        Op::Act { m } => {
            let id = c.ids[m].clone();
            if !known(h, &id) {
                return;
            }
            if !is_classic(m) {
                let epoch = h.epoch_of(&id);
                h.hb(Hb::beat(&id, epoch, &current(h, &id)));
                return;
            }
            let Some(generation) = c.generation.get(&m).copied() else {
                // It lost its generation (an error answer): it rejoins.
                classic_rejoin(h, c, m);
                return;
            };
            match h.cbeat(&id, generation) {
                27 => classic_rejoin(h, c, m),
                0 => {}
                _ => {
                    c.generation.remove(&m);
                }
            }
        }
        Op::Leave { m } => {
            let id = c.ids[m].clone();
            if !known(h, &id) {
                return;
            }
            if is_classic(m) {
                h.cleave(&[(&id, None)]);
            } else {
                h.hb(Hb::leave(&id, -1));
            }
        }
        Op::Advance { ms } => h.advance(ms),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn classic_and_consumer_members_never_own_a_partition_twice(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = H::new();
        let mut c = Clients {
            ids: (0..MEMBERS).map(|m| format!("m{m}-0")).collect(),
            generation: BTreeMap::new(),
            joins: 0,
        };
        for op in &ops {
            apply(&mut h, &mut c, op);
            if !h.c.take_downgrades().is_empty() {
                // The group went back to the classic side: nothing more to see here.
                return Ok(());
            }
        }
        if h.c.group(G).is_none_or(|g| g.members.is_empty()) {
            return Ok(());
        }
        // Every client acts every 5 s; members whose clients went away (an instance that joined
        // again under a new id) time out within the first minute.
        for round in 0..40 {
            for m in 0..MEMBERS {
                apply(&mut h, &mut c, &Op::Act { m });
            }
            if !h.c.take_downgrades().is_empty() || h.c.group(G).is_none() {
                return Ok(());
            }
            if round < 12 {
                h.advance(5_000);
            } else if h.group().state == ConsumerGroupState::Stable {
                break;
            }
        }
        if !h.c.take_downgrades().is_empty() || h.c.group(G).is_none_or(|g| g.members.is_empty()) {
            return Ok(());
        }
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
