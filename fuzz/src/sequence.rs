//! Fuzz body: random request sequences from several clients into the group state machine
//! (`group::Coordinator`) on a fake clock. Well-behaved steps (join, sync with the leader's
//! assignment, heartbeat) mix with arbitrary ones (stale generations, unknown members, other
//! versions, leaves, commits, deletes, clock jumps) and raw fuzz bytes decoded as group requests.
//! Every request is encoded at its version and decoded by kelp's own decoder before the
//! coordinator sees it. `check` holds the invariants; two more are checked here, around each call:
//! a call answered with an error (and any read-only call) changed nothing — no group event, same
//! DescribeGroups and OffsetFetch — and an offset commit is accepted exactly when the fencing
//! table of GROUP_SEMANTICS.md §3.8 allows it. At the end the clock runs on until every call is
//! answered.

mod check;
mod ops;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use kelp::group::{self, Call, Coordinator, Event, Millis, Output, Request, Response, Token};
use kelp::protocol::{peek, Peek};

use super::input::Input;
use super::requests::{decode_group, header};
use check::{CallInfo, Checker};

const CLIENTS: usize = 4;
const GROUPS: [&str; 2] = ["g0", "g1"];
const TOPICS: [&str; 2] = ["t0", "t1"];
/// Most operations one input runs.
const MAX_OPS: usize = 200;
/// Most ticks and the longest clock span while waiting for the last replies.
const MAX_DRAIN_STEPS: usize = 2000;
const DRAIN_SPAN: Millis = 4 * 3600 * 1000;

/// What one client knows of its membership, as a Kafka client would.
#[derive(Clone, Default)]
struct Client {
    group: usize,
    member: String,
    generation: i32,
    instance: Option<String>,
    /// The members the last JoinGroup gave this client as leader (empty for a follower).
    leader_of: Vec<String>,
    synced: bool,
    protocol: Option<StrBytes>,
    /// A JoinGroup or SyncGroup of this client waits for its answer.
    parked: bool,
}

struct Harness {
    c: Coordinator,
    now: Millis,
    next: Token,
    check: Checker,
    clients: Vec<Client>,
    owner: HashMap<Token, usize>,
    /// The reply the last submitted call got at once, if any.
    last: Option<(Token, Response)>,
}

pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let config = group::Config {
        initial_rebalance_delay_ms: input.pick(&[0, 0, 3000]),
        max_group_size: input.pick(&[i32::MAX as usize, i32::MAX as usize, 2, 3]),
        offsets_retention_ms: 1 << 40,
        ..group::Config::default()
    };
    let mut h = Harness {
        c: Coordinator::with_seed(config, u64::from(input.u32())),
        now: 0,
        next: 1,
        check: Checker::new(),
        clients: vec![Client::default(); CLIENTS],
        owner: HashMap::new(),
        last: None,
    };
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        ops::step(&mut h, &mut input);
    }
    h.drain();
}

/// Whether an event reports a change to a group (offset-commit counts are not changes).
fn changes_group(event: &Event) -> bool {
    !matches!(event, Event::OffsetCommit { .. })
}

/// The error a reply reports when it means "nothing happened" (as Kafka defines it per API).
fn error_of(response: &Response) -> Option<i16> {
    let code = match response {
        // 79 registers a pending member; 81 removes a member over the size limit.
        Response::JoinGroup(r) if matches!(r.error_code, 79 | 81) => 0,
        Response::JoinGroup(r) => r.error_code,
        Response::SyncGroup(r) => r.error_code,
        Response::Heartbeat(r) => r.error_code,
        Response::LeaveGroup(r) if r.error_code != 0 => r.error_code,
        Response::LeaveGroup(r) => match r.members.iter().all(|m| m.error_code != 0) {
            true => r.members.first().map_or(0, |m| m.error_code),
            false => 0,
        },
        Response::OffsetCommit(r) => {
            let codes: Vec<i16> = r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect();
            // 12 (metadata too large) is per partition: the commit itself was accepted (and may
            // have created a simple group), only that partition's offset was refused.
            match codes.first() {
                Some(first) if *first != 12 && codes.iter().all(|c| c == first) => *first,
                _ => 0,
            }
        }
        Response::OffsetDelete(r) => r.error_code,
        Response::DeleteGroups(r) => match r.results.iter().all(|g| g.error_code != 0) {
            true => r.results.first().map_or(0, |g| g.error_code),
            false => 0,
        },
        _ => 0,
    };
    (code != 0).then_some(code)
}

fn read_only(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::DescribeGroups | ApiKey::ListGroups | ApiKey::OffsetFetch
    )
}

impl Harness {
    /// Encodes `body` at `version` behind a request header, decodes it with kelp's decoder and
    /// submits it. Returns the token, or None when kelp refused to decode what it was sent.
    fn send<T: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        body: &T,
        client: Option<usize>,
    ) -> Token {
        let mut buf = BytesMut::new();
        body.encode(&mut buf, version)
            .unwrap_or_else(|e| panic!("harness: {api:?} v{version} does not encode: {e}"));
        let client_id = StrBytes::from_string(format!("client-{}", client.unwrap_or(9)));
        let frame = header(api, version, self.next as i32, Some(client_id), &buf);
        let p = peek(&frame).expect("harness: our header peeks");
        let (client_id, request) = decode_group(&p, Bytes::from(frame))
            .unwrap_or_else(|e| panic!("kelp cannot decode a well-formed {api:?} v{version}: {e}"));
        self.submit(p, client_id, request, client)
    }

    /// Hands one decoded call to the coordinator and checks what came out.
    fn submit(
        &mut self,
        p: Peek,
        client_id: String,
        request: Request,
        client: Option<usize>,
    ) -> Token {
        self.fire_due();
        let info = CallInfo::of(p, &request);
        let group = info.group.clone();
        let watched = GROUPS.contains(&group.as_str());
        let before = watched.then(|| self.snapshot(&group));
        let token = self.next;
        self.next += 1;
        self.check.register(token, info);
        if let Some(c) = client {
            self.owner.insert(token, c);
        }
        let mut out = Vec::new();
        let call = Call {
            token,
            api_version: p.api_version,
            client_id,
            client_host: "/127.0.0.1".into(),
            request,
        };
        self.c.handle(self.now, call, &mut out);
        let changed = out
            .iter()
            .any(|o| matches!(o, Output::Event(e) if changes_group(e)));
        let replies = self.check.outputs(&mut out);
        let own = replies
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, r)| r.clone());
        self.observe(replies);
        self.last = own.clone().map(|r| (token, r));
        if let (Some((before, _)), Some(own)) = (before, own) {
            if read_only(p.api_key) || error_of(&own).is_some() {
                let what = format!("{:?} v{} answered {own:?}", p.api_key, p.api_version);
                assert!(!changed, "{what}: but the group changed");
                assert_eq!(
                    self.snapshot(&group).0,
                    before,
                    "{what}: but the group changed"
                );
            }
        }
        token
    }

    /// DescribeGroups and OffsetFetch of one group, straight from the coordinator (checked too).
    fn snapshot(&mut self, group: &str) -> (Vec<Response>, DescribedGroup) {
        let gid = GroupId(StrBytes::from_string(group.to_string()));
        let describe = DescribeGroupsRequest::default().with_groups(vec![gid.clone()]);
        let fetch = OffsetFetchRequest::default()
            .with_group_id(gid)
            .with_topics(None);
        let d = self.probe(ApiKey::DescribeGroups, 5, Request::DescribeGroups(describe));
        let f = self.probe(ApiKey::OffsetFetch, 7, Request::OffsetFetch(fetch));
        let described = match &d {
            Response::DescribeGroups(r) => r.groups.first().cloned().unwrap_or_default(),
            _ => DescribedGroup::default(),
        };
        (vec![d, f], described)
    }

    /// A read-only call that must be answered at once and change nothing.
    fn probe(&mut self, api: ApiKey, version: i16, request: Request) -> Response {
        let token = self.next;
        self.next += 1;
        let p = Peek {
            api_key: api,
            api_version: version,
            correlation_id: token as i32,
        };
        self.check.register(token, CallInfo::of(p, &request));
        let mut out = Vec::new();
        let call = Call {
            token,
            api_version: version,
            client_id: "probe".into(),
            client_host: "/127.0.0.1".into(),
            request,
        };
        self.c.handle(self.now, call, &mut out);
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(e) if changes_group(e))),
            "a {api:?} changed a group"
        );
        let replies = self.check.outputs(&mut out);
        let own = replies
            .iter()
            .find(|(t, _)| *t == token)
            .map(|(_, r)| r.clone());
        self.observe(replies);
        own.unwrap_or_else(|| panic!("{api:?} was not answered at once"))
    }

    /// Fires the timers already due (so that a snapshot is taken at rest).
    fn fire_due(&mut self) {
        for _ in 0..4 {
            if !self.c.next_deadline().is_some_and(|at| at <= self.now) {
                return;
            }
            self.tick();
        }
    }

    fn advance(&mut self, ms: Millis) {
        self.now += ms;
        self.tick();
    }

    fn tick(&mut self) {
        let mut out = Vec::new();
        self.c.tick(self.now, &mut out);
        let replies = self.check.outputs(&mut out);
        self.observe(replies);
    }

    /// Updates the clients from the replies to their calls, as their Kafka clients would.
    fn observe(&mut self, replies: Vec<(Token, Response)>) {
        for (token, response) in replies {
            let Some(c) = self.owner.remove(&token) else {
                continue;
            };
            let client = &mut self.clients[c];
            match response {
                Response::JoinGroup(r) => {
                    client.parked = false;
                    match r.error_code {
                        0 => {
                            client.member = r.member_id.to_string();
                            client.generation = r.generation_id;
                            client.leader_of =
                                r.members.iter().map(|m| m.member_id.to_string()).collect();
                            client.synced = false;
                            client.protocol = r.protocol_name;
                        }
                        79 => client.member = r.member_id.to_string(),
                        25 => {
                            client.member.clear();
                            client.generation = -1;
                        }
                        _ => {}
                    }
                }
                Response::SyncGroup(r) => {
                    client.parked = false;
                    client.synced = r.error_code == 0;
                    match r.error_code {
                        25 => client.member.clear(),
                        22 | 27 => client.generation = -1,
                        _ => {}
                    }
                }
                Response::Heartbeat(r) => match r.error_code {
                    25 => client.member.clear(),
                    22 | 27 => client.generation = -1,
                    _ => {}
                },
                Response::LeaveGroup(r) if r.error_code == 0 => client.member.clear(),
                _ => {}
            }
        }
    }

    /// Runs the clock on (no more requests) until every call is answered; checks the offsets.
    fn drain(&mut self) {
        let start = self.now;
        for _ in 0..MAX_DRAIN_STEPS {
            if self.check.unanswered() == 0 {
                break;
            }
            let Some(at) = self.c.next_deadline() else {
                break;
            };
            if at > start + DRAIN_SPAN {
                break;
            }
            // Steps of at least 5 s: a late tick fires everything due at its own deadline, and a
            // timer re-armed every millisecond (a rebalance timeout of 0) cannot eat the budget.
            self.now = self.now.max(at).max(self.now + 5000);
            self.tick();
        }
        let left: Vec<String> = self
            .check
            .calls
            .iter()
            .map(|(t, c)| {
                format!(
                    "{t}: {:?} v{} {} {}",
                    c.peek.api_key, c.peek.api_version, c.group, c.member
                )
            })
            .collect();
        if !left.is_empty() {
            let (next, now) = (self.c.next_deadline(), self.now);
            let groups: Vec<_> = GROUPS.iter().map(|g| self.snapshot(g).1).collect();
            panic!(
                "calls never answered: {left:?}\nnow {now}, next deadline {next:?}\n{groups:#?}"
            );
        }
        for group in GROUPS {
            self.snapshot(group);
        }
    }
}
