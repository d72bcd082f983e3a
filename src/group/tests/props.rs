//! Property tests (TESTING.md §1): random sequences of joins, syncs, heartbeats, leaves, commits
//! and clock advances from several dynamic members sharing client ids, with the invariants checked
//! after every step:
//! - at most one leader, and it is a member;
//! - generation never decreases and moves by exactly one per completed join phase; every
//!   successful JoinGroup carries the generation just announced; every state change is legal;
//! - in Stable every member holds exactly the bytes the leader gave it;
//! - an error response changed nothing (group and offsets compared before and after);
//! - the parked requests are exactly the unanswered calls, all held by current members, and every
//!   call is answered exactly once (after draining the clock, all of them);
//! - offsets accepted are exactly those the fencing table of §3.8 allows.
//!
//! Replies are also encoded at their call's version (in `Harness`).

use std::collections::{BTreeSet, HashMap};

use proptest::prelude::*;

use super::*;
use crate::group::GroupState;

const CLIENTS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Join {
        client: usize,
        version: i16,
        protocols: u8,
        fresh: bool,
        rebalance: i32,
    },
    Sync {
        client: usize,
        delta: i32,
        version: i16,
    },
    Heartbeat {
        client: usize,
        delta: i32,
    },
    Leave {
        clients: Vec<usize>,
        version: i16,
    },
    Commit {
        client: usize,
        delta: i32,
        anonymous: bool,
        version: i16,
        simple: bool,
    },
    Advance(Millis),
    /// What a well-behaved client would do next (join, rejoin, sync, heartbeat or wait).
    Step {
        client: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    let delta = prop_oneof![6 => Just(0), 1 => Just(-1), 1 => Just(1)];
    prop_oneof![
        4 => (client.clone(), prop::sample::select(vec![3i16, 4, 5, 7, 9]), 0u8..5, prop::bool::weighted(0.3),
              prop::sample::select(vec![0, 3000, 30_000]))
            .prop_map(|(client, version, protocols, fresh, rebalance)| Op::Join { client, version, protocols, fresh, rebalance }),
        3 => (client.clone(), delta.clone(), prop::sample::select(vec![3i16, 5]))
            .prop_map(|(client, delta, version)| Op::Sync { client, delta, version }),
        3 => (client.clone(), delta.clone()).prop_map(|(client, delta)| Op::Heartbeat { client, delta }),
        2 => (prop::collection::vec(client.clone(), 1..3), prop::sample::select(vec![1i16, 3, 5]))
            .prop_map(|(clients, version)| Op::Leave { clients, version }),
        2 => (client, delta, prop::bool::weighted(0.2), prop::sample::select(vec![7i16, 8, 9]), prop::bool::weighted(0.2))
            .prop_map(|(client, delta, anonymous, version, simple)| Op::Commit { client, delta, anonymous, version, simple }),
        3 => prop::sample::select(vec![0u64, 1, 500, 3000, 6000, 10_000, 30_000]).prop_map(Op::Advance),
        10 => (0..CLIENTS).prop_map(|client| Op::Step { client }),
    ]
}

#[derive(Default, Clone)]
struct Client {
    id: String,
    generation: i32,
    /// The member list of the last JoinGroup that made this client leader: (generation, ids).
    led: Option<(i32, Vec<String>)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Join,
    Sync,
    Other,
}

struct Model {
    h: Harness,
    clients: Vec<Client>,
    calls: HashMap<Token, (usize, Kind)>,
    seen: usize,
    generation: HashMap<String, i32>,
    state: HashMap<String, GroupState>,
    completions: HashMap<String, usize>,
    bumps: HashMap<String, usize>,
    /// What the leader's SyncGroup gave, for the current Stable period.
    given: Option<HashMap<String, Bytes>>,
}

fn snapshot(h: &Harness, group: &str) -> String {
    let g = h.c.groups.get(group).map(|g| {
        let statics: BTreeSet<_> = g.static_members.iter().collect();
        format!(
            "{:?} {:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {}",
            g.state,
            g.previous_state,
            g.generation,
            g.leader,
            g.protocol_type,
            g.protocol_name,
            g.members.values().collect::<Vec<_>>(),
            g.pending_join,
            g.pending_sync,
            statics,
            g.subscribed_topics,
            g.new_member_added
        )
    });
    let offsets: Vec<String> =
        h.c.offsets
            .all(group)
            .map(|(t, p)| format!("{t}:{p:?}"))
            .collect();
    format!("{g:?} {offsets:?}")
}

/// The error a call's own reply reports, when that reply means "nothing happened".
fn error_of(r: &Response) -> Option<i16> {
    let code = match r {
        Response::JoinGroup(j) if j.error_code == 79 || j.error_code == 81 => 0,
        Response::JoinGroup(j) => j.error_code,
        Response::SyncGroup(s) => s.error_code,
        Response::Heartbeat(x) => x.error_code,
        Response::LeaveGroup(l) if l.error_code != 0 => l.error_code,
        Response::LeaveGroup(l) => match l.members.iter().all(|m| m.error_code != 0) {
            true => l.members.first().map_or(0, |m| m.error_code),
            false => 0,
        },
        Response::OffsetCommit(c) => {
            let codes = commit_codes(c);
            if codes.iter().all(|x| *x == codes[0] && *x != 0) {
                codes[0]
            } else {
                0
            }
        }
        _ => 0,
    };
    (code != 0).then_some(code)
}

/// §3.8 as a table, independent of the coordinator's code.
fn expected_commit(h: &Harness, group: &str, version: i16, member: &str, generation: i32) -> i16 {
    let Some(g) = h.c.groups.get(group) else {
        return if generation < 0 {
            0
        } else if version >= 9 {
            69
        } else {
            22
        };
    };
    if generation < 0 && g.state == GroupState::Empty {
        return 0;
    }
    if generation < 0 && member.is_empty() {
        return 25;
    }
    if !g.members.contains_key(member) {
        return 25;
    }
    if generation != g.generation {
        return 22;
    }
    if g.state == GroupState::CompletingRebalance {
        return 27;
    }
    0
}

impl Model {
    fn new(initial_delay_ms: i32, durable: bool) -> Self {
        Model {
            h: Harness::with(Config {
                initial_rebalance_delay_ms: initial_delay_ms,
                durable,
                ..config()
            }),
            clients: vec![Client::default(); CLIENTS],
            calls: HashMap::new(),
            seen: 0,
            generation: HashMap::new(),
            state: HashMap::new(),
            completions: HashMap::new(),
            bumps: HashMap::new(),
            given: None,
        }
    }

    /// Fires everything already due so that a snapshot is taken at rest.
    fn settle(&mut self) {
        for _ in 0..10 {
            if self.h.c.next_deadline().is_some_and(|d| d <= self.h.now) {
                self.h.advance(0);
            }
        }
    }

    fn call(
        &mut self,
        client: usize,
        kind: Kind,
        send: impl FnOnce(&mut Harness) -> Token,
    ) -> Token {
        self.settle();
        let before = snapshot(&self.h, G);
        let token = send(&mut self.h);
        self.calls.insert(token, (client, kind));
        if let Some(error) = self.h.replies.get(&token).and_then(error_of) {
            assert_eq!(
                snapshot(&self.h, G),
                before,
                "error {error} changed the group"
            );
        }
        token
    }

    fn apply(&mut self, op: &Op) {
        match op.clone() {
            Op::Join {
                client,
                version,
                protocols,
                fresh,
                rebalance,
            } => {
                let member = if fresh {
                    String::new()
                } else {
                    self.clients[client].id.clone()
                };
                let mut j = jr()
                    .v(version)
                    .member(&member)
                    .client(["a", "b"][client % 2])
                    .rebalance(rebalance);
                j = match protocols {
                    0 => j,
                    1 => j.protos(&[("range", "changed")]),
                    2 => j.protos(&[("rr", "meta")]),
                    3 => j.protos(&[("range", "meta"), ("rr", "meta")]),
                    _ => j.ptype("connect"),
                };
                self.call(client, Kind::Join, |h| h.join(j));
            }
            Op::Sync {
                client,
                delta,
                version,
            } => {
                let c = self.clients[client].clone();
                let generation = c.generation + delta;
                let plan: Vec<(String, String)> = match &c.led {
                    Some((g, ids)) if *g == generation => ids
                        .iter()
                        .map(|m| (m.clone(), format!("a{g}-{m}")))
                        .collect(),
                    _ => Vec::new(),
                };
                let was_stable =
                    self.h.c.groups.get(G).map(|g| g.state) == Some(GroupState::Stable);
                let t = self.call(client, Kind::Sync, |h| {
                    let plan: Vec<(&str, &str)> =
                        plan.iter().map(|(m, a)| (m.as_str(), a.as_str())).collect();
                    h.sync_v(version, G, &c.id, generation, &plan)
                });
                let now_stable =
                    self.h.c.groups.get(G).map(|g| g.state) == Some(GroupState::Stable);
                if !was_stable && now_stable && self.h.replies.contains_key(&t) {
                    self.given = Some(plan.into_iter().map(|(m, a)| (m, b(&a))).collect());
                }
            }
            Op::Heartbeat { client, delta } => {
                let (id, generation) = (
                    self.clients[client].id.clone(),
                    self.clients[client].generation + delta,
                );
                self.call(client, Kind::Other, |h| {
                    h.heartbeat(&id, generation);
                    h.next - 1
                });
            }
            Op::Leave { clients, version } => {
                let ids: Vec<String> = clients
                    .iter()
                    .map(|c| self.clients[*c].id.clone())
                    .collect();
                self.call(clients[0], Kind::Other, |h| {
                    let members: Vec<(&str, Option<&str>)> =
                        ids.iter().map(|m| (m.as_str(), None)).collect();
                    h.leave(version, G, &members);
                    h.next - 1
                });
            }
            Op::Commit {
                client,
                delta,
                anonymous,
                version,
                simple,
            } => {
                let group = if simple { "simple" } else { G };
                let c = self.clients[client].clone();
                let (member, generation) = if anonymous {
                    (String::new(), -1)
                } else {
                    (c.id, c.generation + delta)
                };
                self.settle();
                let expected = expected_commit(&self.h, group, version, &member, generation);
                let t = self.call(client, Kind::Other, |h| {
                    h.commit_full(
                        version,
                        group,
                        &member,
                        None,
                        generation,
                        &[("t", 0, 1, ""), ("t", 1, 2, "m")],
                    );
                    h.next - 1
                });
                let Some(Response::OffsetCommit(r)) = self.h.replies.get(&t) else {
                    panic!("commit parked")
                };
                assert_eq!(
                    commit_codes(r),
                    vec![expected; 2],
                    "fencing for member {member:?} gen {generation}"
                );
                if expected == 0 {
                    assert_eq!(
                        self.h
                            .c
                            .offsets
                            .get(group, "t", 1)
                            .map(|o| o.metadata.as_str()),
                        Some("m")
                    );
                }
            }
            Op::Advance(ms) => self.h.advance(ms),
            Op::Step { client } => {
                let next = self.next_step(client);
                return self.apply(&next);
            }
        }
        self.observe();
        self.check();
    }

    /// Chooses a well-behaved client's next request from what the client knows and the group's
    /// state (an oracle, so that random runs reach Stable often).
    fn next_step(&self, client: usize) -> Op {
        let c = &self.clients[client];
        let join = |fresh| Op::Join {
            client,
            version: 5,
            protocols: 0,
            fresh,
            rebalance: 30_000,
        };
        let Some(g) = self.h.c.groups.get(G) else {
            return join(true);
        };
        if c.id.is_empty() {
            return join(true);
        }
        if g.pending_join.contains(&c.id) {
            return join(false);
        }
        let Some(m) = g.members.get(&c.id) else {
            return join(true);
        };
        if m.join_waiter.is_some() || m.sync_waiter.is_some() {
            return Op::Advance(1000);
        }
        match g.state {
            GroupState::CompletingRebalance if c.generation == g.generation => Op::Sync {
                client,
                delta: 0,
                version: 5,
            },
            GroupState::Stable if c.generation == g.generation => {
                Op::Heartbeat { client, delta: 0 }
            }
            _ => join(false),
        }
    }

    /// Walks the outputs since the last step: client bookkeeping and the event-stream invariants.
    fn observe(&mut self) {
        let new: Vec<Output> = self.h.stream[self.seen..].to_vec();
        self.seen = self.h.stream.len();
        for o in new {
            match o {
                Output::Event(Event::GenerationChanged { group, generation }) => {
                    let last = self.generation.insert(group.clone(), generation);
                    match last {
                        None => assert_eq!(generation, 0),
                        Some(last) => {
                            assert_eq!(generation, last + 1, "generation jumped");
                            *self.bumps.entry(group).or_default() += 1;
                        }
                    }
                }
                Output::Event(Event::StateChanged { group, state }) => {
                    let prev = self.state.insert(group.clone(), state);
                    if let Some(prev) = prev {
                        assert!(prev.can_become(state), "{prev:?} -> {state:?}");
                        let completed = prev == GroupState::PreparingRebalance
                            && matches!(state, GroupState::CompletingRebalance | GroupState::Empty);
                        if completed {
                            *self.completions.entry(group.clone()).or_default() += 1;
                        }
                    }
                    if state == GroupState::Dead {
                        self.state.remove(&group);
                        self.generation.remove(&group);
                    }
                }
                Output::Reply { token, response } => self.on_reply(token, &response),
                Output::Event(_)
                | Output::Persist(_)
                | Output::Import { .. }
                | Output::RefreshTopics => {}
            }
        }
        for group in self.generation.keys() {
            let completions = self.completions.get(group).copied().unwrap_or(0);
            assert_eq!(
                self.bumps.get(group).copied().unwrap_or(0),
                completions,
                "bumps vs completed joins"
            );
        }
    }

    fn on_reply(&mut self, token: Token, response: &Response) {
        let Some(&(client, kind)) = self.calls.get(&token) else {
            return;
        };
        let c = &mut self.clients[client];
        match (kind, response) {
            (Kind::Join, Response::JoinGroup(r)) => match r.error_code {
                0 => {
                    assert_eq!(
                        Some(&r.generation_id),
                        self.generation.get(G),
                        "join answered with a stale generation"
                    );
                    c.id = r.member_id.to_string();
                    c.generation = r.generation_id;
                    c.led = (r.leader == r.member_id && !r.members.is_empty()).then(|| {
                        (
                            r.generation_id,
                            r.members.iter().map(|m| m.member_id.to_string()).collect(),
                        )
                    });
                }
                79 => c.id = r.member_id.to_string(),
                25 => c.id.clear(),
                _ => {}
            },
            (Kind::Sync, Response::SyncGroup(r)) if r.error_code == 25 => c.id.clear(),
            _ => {}
        }
    }

    fn check(&self) {
        let parked: Vec<Token> = self
            .h
            .c
            .groups
            .values()
            .flat_map(|g| g.members.values())
            .flat_map(|m| [m.join_waiter, m.sync_waiter])
            .flatten()
            .map(|w| w.token)
            .collect();
        let unanswered: BTreeSet<Token> =
            (1..self.h.next).filter(|t| !self.h.answered(*t)).collect();
        assert_eq!(
            parked.iter().copied().collect::<BTreeSet<_>>(),
            unanswered,
            "parked = unanswered"
        );
        assert_eq!(parked.len(), unanswered.len(), "a token parked twice");

        let Some(g) = self.h.c.groups.get(G) else {
            return;
        };
        match &g.leader {
            Some(l) => assert!(g.members.contains_key(l), "leader is not a member"),
            None => assert!(g.members.is_empty(), "members but no leader"),
        }
        if g.state == GroupState::Stable {
            let given = self.given.as_ref().expect("Stable without a leader sync");
            for m in g.members.values() {
                assert_eq!(
                    m.assignment,
                    given.get(&m.id).cloned().unwrap_or_default(),
                    "assignment of {}",
                    m.id
                );
            }
        }
        if matches!(g.state, GroupState::Empty) {
            assert!(g.members.is_empty());
        }
    }

    /// With nobody talking, every member expires and every parked call is answered.
    fn drain(&mut self) {
        for _ in 0..1000 {
            if self.h.all_answered() && self.h.c.groups.values().all(|g| g.members.is_empty()) {
                break;
            }
            let Some(at) = self.h.c.next_deadline() else {
                break;
            };
            self.h.advance(at.saturating_sub(self.h.now));
            self.observe();
            self.check();
        }
        assert!(
            self.h.all_answered(),
            "calls left unanswered after draining the clock"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_operation_sequences(
        delay_zero in prop::bool::ANY,
        durable in prop::bool::ANY,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        let mut m = Model::new(if delay_zero { 0 } else { 3000 }, durable);
        for op in &ops {
            m.apply(op);
        }
        m.drain();
    }
}
