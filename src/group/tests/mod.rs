//! Coordinator tests: one per case of GROUP_SEMANTICS.md §6 (named after the case id), plus
//! property tests. All run on a fake clock through `Harness`, which also checks that every reply
//! is the only reply to its call and encodes at the call's version. The coordinator is durable:
//! the harness performs its writes on a `Disk` at once (or holds them, `hold_writes`) and answers
//! its imports from `gateway`.

mod admin;
mod consumer;
mod disk;
mod durable;
mod heartbeat_leave;
mod identity_join;
mod loading;
mod offsets;
mod props;
mod protocol_static;
mod rejoin_sync;
mod sharding;
mod timeouts_leader;
mod versions;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::group::Group;
use super::{
    Call, Config, Coordinator, Event, GroupState, Millis, OffsetEntry, Output, Persist, Request,
    Response, Token, Write, WriteId,
};
pub(super) use disk::Disk;

pub(super) const G: &str = "g";

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn b(v: &str) -> Bytes {
    Bytes::copy_from_slice(v.as_bytes())
}

/// Test defaults: Kafka's settings (initial delay 3000), durable.
pub(super) fn config() -> Config {
    Config {
        durable: true,
        ..Config::default()
    }
}

/// A JoinGroup under construction. Defaults: v5, group "g", new member, client "c", consumer/range,
/// session 10000, rebalance 30000.
#[derive(Clone)]
pub(super) struct Jr {
    pub version: i16,
    pub group: String,
    pub member: String,
    pub instance: Option<String>,
    pub client: String,
    pub host: String,
    pub ptype: String,
    pub protocols: Vec<(String, Bytes)>,
    pub session: i32,
    pub rebalance: i32,
}

pub(super) fn jr() -> Jr {
    Jr {
        version: 5,
        group: G.into(),
        member: String::new(),
        instance: None,
        client: "c".into(),
        host: "/127.0.0.1".into(),
        ptype: "consumer".into(),
        protocols: vec![("range".into(), b("meta"))],
        session: 10_000,
        rebalance: 30_000,
    }
}

impl Jr {
    pub fn v(mut self, v: i16) -> Self {
        self.version = v;
        self
    }
    pub fn member(mut self, m: &str) -> Self {
        self.member = m.into();
        self
    }
    pub fn instance(mut self, i: &str) -> Self {
        self.instance = Some(i.into());
        self
    }
    pub fn client(mut self, c: &str) -> Self {
        self.client = c.into();
        self
    }
    pub fn host(mut self, h: &str) -> Self {
        self.host = h.into();
        self
    }
    pub fn ptype(mut self, t: &str) -> Self {
        self.ptype = t.into();
        self
    }
    pub fn protos(mut self, ps: &[(&str, &str)]) -> Self {
        self.protocols = ps.iter().map(|(n, m)| (n.to_string(), b(m))).collect();
        self
    }
    pub fn session(mut self, ms: i32) -> Self {
        self.session = ms;
        self
    }
    pub fn rebalance(mut self, ms: i32) -> Self {
        self.rebalance = ms;
        self
    }
    pub fn group(mut self, g: &str) -> Self {
        self.group = g.into();
        self
    }
    fn request(&self) -> JoinGroupRequest {
        let mut r = JoinGroupRequest::default();
        r.group_id = s(&self.group).into();
        r.member_id = s(&self.member);
        r.group_instance_id = self.instance.as_deref().map(s);
        r.protocol_type = s(&self.ptype);
        r.session_timeout_ms = self.session;
        r.rebalance_timeout_ms = self.rebalance;
        r.protocols = self
            .protocols
            .iter()
            .map(|(n, m)| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = s(n);
                p.metadata = m.clone();
                p
            })
            .collect();
        r
    }
}

pub(super) struct Harness {
    pub c: Coordinator,
    pub now: Millis,
    next: Token,
    versions: HashMap<Token, i16>,
    pub replies: HashMap<Token, Response>,
    pub events: Vec<Event>,
    /// Every output in emission order.
    pub stream: Vec<Output>,
    /// The store the writes went to.
    pub disk: Disk,
    /// Keep writes and imports in `held` / `held_imports` instead of performing them.
    pub hold_writes: bool,
    pub held: Vec<Persist>,
    pub held_imports: Vec<(WriteId, String)>,
    /// What an import of a group finds.
    pub gateway: HashMap<String, Vec<OffsetEntry>>,
    /// `Output::RefreshTopics` seen.
    pub refreshes: usize,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(config())
    }

    pub fn with(config: Config) -> Self {
        Harness {
            c: Coordinator::with_seed(config, 42),
            now: 0,
            next: 1,
            versions: HashMap::new(),
            replies: HashMap::new(),
            events: Vec::new(),
            stream: Vec::new(),
            disk: Disk::default(),
            hold_writes: false,
            held: Vec::new(),
            held_imports: Vec::new(),
            gateway: HashMap::new(),
            refreshes: 0,
        }
    }

    pub(super) fn absorb(&mut self, out: Vec<Output>) {
        self.stream.extend(out.iter().cloned());
        let mut follow = Vec::new();
        for o in out {
            match o {
                Output::Reply { token, response } => {
                    let version = *self
                        .versions
                        .get(&token)
                        .expect("reply to a token never issued");
                    assert_encodes(&response, version);
                    assert!(
                        self.replies.insert(token, response).is_none(),
                        "token {token} answered twice"
                    );
                }
                Output::Event(e) => self.events.push(e),
                Output::Persist(p) if self.hold_writes => self.held.push(p),
                Output::Persist(p) => {
                    self.disk.apply(&p);
                    self.c.persisted(self.now, p.id, Ok(()), &mut follow);
                }
                Output::Import { id, group } if self.hold_writes => {
                    self.held_imports.push((id, group))
                }
                Output::Import { id, group } => {
                    let found = self.gateway.get(&group).cloned().unwrap_or_default();
                    self.c.imported(self.now, id, Ok(found), &mut follow);
                }
                Output::RefreshTopics => self.refreshes += 1,
            }
        }
        if !follow.is_empty() {
            self.absorb(follow);
        }
    }

    pub fn send(&mut self, version: i16, client: &str, host: &str, request: Request) -> Token {
        let token = self.next;
        self.next += 1;
        self.versions.insert(token, version);
        let call = Call {
            token,
            api_version: version,
            client_id: client.into(),
            client_host: host.into(),
            request,
        };
        let mut out = Vec::new();
        self.c.handle(self.now, call, &mut out);
        self.absorb(out);
        token
    }

    pub fn advance(&mut self, ms: Millis) {
        self.now += ms;
        let mut out = Vec::new();
        self.c.tick(self.now, &mut out);
        self.absorb(out);
    }

    /// Advances in steps of `step` until every token is answered (at most `limit` ms).
    pub fn advance_until_answered(&mut self, tokens: &[Token], step: Millis, limit: Millis) {
        let mut waited = 0;
        while !tokens.iter().all(|t| self.answered(*t)) {
            assert!(waited < limit, "not answered within {limit} ms");
            self.advance(step);
            waited += step;
        }
    }

    pub fn answered(&self, t: Token) -> bool {
        self.replies.contains_key(&t)
    }

    pub fn all_answered(&self) -> bool {
        (1..self.next).all(|t| self.answered(t))
    }

    pub fn join(&mut self, j: Jr) -> Token {
        let (v, client, host) = (j.version, j.client.clone(), j.host.clone());
        self.send(v, &client, &host, Request::JoinGroup(j.request()))
    }

    pub fn jres(&self, t: Token) -> &JoinGroupResponse {
        match self.replies.get(&t) {
            Some(Response::JoinGroup(r)) => r,
            other => panic!("token {t}: no JoinGroup response: {other:?}"),
        }
    }

    /// A v5 dynamic member's two JoinGroups (79, then the parked one). Returns (id, parked token).
    pub fn new_member(&mut self, j: Jr) -> (String, Token) {
        let first = self.join(j.clone());
        let r = self.jres(first);
        assert_eq!(r.error_code, 79);
        let id = r.member_id.to_string();
        let t = self.join(j.member(&id));
        (id, t)
    }

    pub fn sync_v(
        &mut self,
        v: i16,
        group: &str,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> Token {
        let mut r = SyncGroupRequest::default();
        r.group_id = s(group).into();
        r.member_id = s(member);
        r.generation_id = generation;
        if v >= 5 {
            r.protocol_type = Some(s("consumer"));
            r.protocol_name = self
                .c
                .groups
                .get(group)
                .and_then(|g| g.protocol_name.as_deref().map(s));
        }
        r.assignments = assignments
            .iter()
            .map(|(m, a)| {
                let mut x = SyncGroupRequestAssignment::default();
                x.member_id = s(m);
                x.assignment = b(a);
                x
            })
            .collect();
        self.send(v, "c", "/127.0.0.1", Request::SyncGroup(r))
    }

    pub fn sync(&mut self, member: &str, generation: i32, assignments: &[(&str, &str)]) -> Token {
        self.sync_v(3, G, member, generation, assignments)
    }

    pub fn sres(&self, t: Token) -> &SyncGroupResponse {
        match self.replies.get(&t) {
            Some(Response::SyncGroup(r)) => r,
            other => panic!("token {t}: no SyncGroup response: {other:?}"),
        }
    }

    pub fn heartbeat_full(
        &mut self,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> i16 {
        let mut r = HeartbeatRequest::default();
        r.group_id = s(group).into();
        r.member_id = s(member);
        r.group_instance_id = instance.map(s);
        r.generation_id = generation;
        let t = self.send(4, "c", "/127.0.0.1", Request::Heartbeat(r));
        match self.replies.get(&t) {
            Some(Response::Heartbeat(r)) => r.error_code,
            other => panic!("heartbeat not answered at once: {other:?}"),
        }
    }

    pub fn heartbeat(&mut self, member: &str, generation: i32) -> i16 {
        self.heartbeat_full(G, member, None, generation)
    }

    /// LeaveGroup: v0–2 take the first member only.
    pub fn leave(
        &mut self,
        v: i16,
        group: &str,
        members: &[(&str, Option<&str>)],
    ) -> LeaveGroupResponse {
        let mut r = LeaveGroupRequest::default();
        r.group_id = s(group).into();
        if v >= 3 {
            r.members = members
                .iter()
                .map(|(m, i)| {
                    let mut x = MemberIdentity::default();
                    x.member_id = s(m);
                    x.group_instance_id = i.map(s);
                    x
                })
                .collect();
        } else {
            r.member_id = s(members[0].0);
        }
        let t = self.send(v, "c", "/127.0.0.1", Request::LeaveGroup(r));
        match self.replies.get(&t) {
            Some(Response::LeaveGroup(r)) => r.clone(),
            other => panic!("leave not answered: {other:?}"),
        }
    }

    /// OffsetCommit of `parts` = [(topic, partition, offset, metadata)], answered at once.
    pub fn commit_full(
        &mut self,
        v: i16,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        parts: &[(&str, i32, i64, &str)],
    ) -> OffsetCommitResponse {
        let t = self.commit_send(v, group, member, instance, generation, parts);
        self.commit_response(t)
    }

    /// Sends an OffsetCommit (it may be held); read it with `commit_response`.
    pub fn commit_send(
        &mut self,
        v: i16,
        group: &str,
        member: &str,
        instance: Option<&str>,
        generation: i32,
        parts: &[(&str, i32, i64, &str)],
    ) -> Token {
        let mut r = OffsetCommitRequest::default();
        r.group_id = s(group).into();
        r.member_id = s(member);
        r.group_instance_id = instance.map(s);
        r.generation_id_or_member_epoch = generation;
        for (topic, partition, offset, metadata) in parts {
            let mut p = OffsetCommitRequestPartition::default();
            p.partition_index = *partition;
            p.committed_offset = *offset;
            p.committed_leader_epoch = 7;
            p.committed_metadata = Some(s(metadata));
            match r.topics.iter_mut().find(|t| t.name.as_str() == *topic) {
                Some(t) => t.partitions.push(p),
                None => {
                    let mut t = OffsetCommitRequestTopic::default();
                    t.name = s(topic).into();
                    t.partitions.push(p);
                    r.topics.push(t);
                }
            }
        }
        self.send(v, "c", "/127.0.0.1", Request::OffsetCommit(r))
    }

    pub fn commit_response(&self, t: Token) -> OffsetCommitResponse {
        match self.replies.get(&t) {
            Some(Response::OffsetCommit(r)) => r.clone(),
            other => panic!("commit not answered: {other:?}"),
        }
    }

    /// Sends an OffsetFetch v`v` (< 8) of `partitions` of `topic` (None: every topic).
    pub fn fetch_send(&mut self, v: i16, group: &str, topic: Option<(&str, &[i32])>) -> Token {
        let mut r = OffsetFetchRequest::default();
        r.group_id = s(group).into();
        r.topics = topic.map(|(t, ps)| {
            let mut x = offset_fetch_request::OffsetFetchRequestTopic::default();
            x.name = s(t).into();
            x.partition_indexes = ps.to_vec();
            vec![x]
        });
        self.send(v, "c", "/127.0.0.1", Request::OffsetFetch(r))
    }

    pub fn fetch_response(&self, t: Token) -> OffsetFetchResponse {
        match self.replies.get(&t) {
            Some(Response::OffsetFetch(r)) => r.clone(),
            other => panic!("fetch not answered: {other:?}"),
        }
    }

    /// The committed offset of one partition (v7 fetch, answered at once), -1 if none.
    pub fn committed(&mut self, group: &str, topic: &str, partition: i32) -> i64 {
        let t = self.fetch_send(7, group, Some((topic, &[partition])));
        let r = self.fetch_response(t);
        assert_eq!(r.error_code, 0, "fetch error");
        r.topics[0].partitions[0].committed_offset
    }

    /// Per-partition codes of a v8 commit of offset 10 to t0 partitions 0 and 1.
    pub fn commit(&mut self, member: &str, generation: i32) -> Vec<i16> {
        let r = self.commit_full(
            8,
            G,
            member,
            None,
            generation,
            &[("t0", 0, 10, ""), ("t0", 1, 11, "")],
        );
        commit_codes(&r)
    }

    pub fn describe_v(&mut self, v: i16, group: &str) -> DescribedGroup {
        let mut r = DescribeGroupsRequest::default();
        r.groups = vec![s(group).into()];
        let t = self.send(v, "c", "/127.0.0.1", Request::DescribeGroups(r));
        match self.replies.get(&t) {
            Some(Response::DescribeGroups(r)) => r.groups[0].clone(),
            other => panic!("describe not answered: {other:?}"),
        }
    }

    pub fn describe(&mut self) -> DescribedGroup {
        self.describe_v(5, G)
    }

    pub fn group(&self) -> &Group {
        self.group_named(G)
    }

    pub fn group_named(&self, id: &str) -> &Group {
        self.c
            .groups
            .get(id)
            .unwrap_or_else(|| panic!("group {id} missing"))
    }

    pub fn state(&self) -> GroupState {
        self.group().state
    }

    pub fn gen(&self) -> i32 {
        self.group().generation
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.group().members.keys().cloned().collect()
    }

    pub fn assignment(&self, member: &str) -> Bytes {
        self.group().members[member].assignment.clone()
    }

    pub fn rebalances(&self) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::RebalanceStarted { .. }))
            .count()
    }

    /// G(n) Stable: n v5 dynamic members, M1 the leader, Mi holding "A<i>". Returns the ids.
    pub fn stable(&mut self, n: usize) -> Vec<String> {
        self.stable_with(n, jr())
    }

    pub fn stable_with(&mut self, n: usize, j: Jr) -> Vec<String> {
        let joined: Vec<(String, Token)> = (0..n).map(|_| self.new_member(j.clone())).collect();
        let tokens: Vec<Token> = joined.iter().map(|(_, t)| *t).collect();
        self.advance_until_answered(&tokens, 1000, 60_000);
        self.sync_all(
            &joined.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
            "A",
        )
    }

    /// Syncs a CompletingRebalance group: the leader gives member i "<prefix><i+1>", then the rest.
    pub fn sync_all(&mut self, ids: &[String], prefix: &str) -> Vec<String> {
        let generation = self.gen();
        let leader = self.group().leader.clone().expect("leader");
        let names: Vec<String> = (1..=ids.len()).map(|i| format!("{prefix}{i}")).collect();
        let plan: Vec<(&str, &str)> = ids
            .iter()
            .map(String::as_str)
            .zip(names.iter().map(String::as_str))
            .collect();
        let t = self.sync(&leader, generation, &plan);
        assert_eq!(self.sres(t).error_code, 0);
        for id in ids.iter().filter(|id| **id != leader) {
            let t = self.sync(id, generation, &[]);
            assert_eq!(self.sres(t).error_code, 0);
        }
        assert_eq!(self.state(), GroupState::Stable);
        ids.to_vec()
    }
}

pub(super) fn commit_codes(r: &OffsetCommitResponse) -> Vec<i16> {
    r.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// The shell encodes every reply at its call's version: that must never fail.
pub(super) fn assert_encodes(response: &Response, version: i16) {
    let mut buf = BytesMut::new();
    let result = match response {
        Response::JoinGroup(r) => r.encode(&mut buf, version),
        Response::SyncGroup(r) => r.encode(&mut buf, version),
        Response::Heartbeat(r) => r.encode(&mut buf, version),
        Response::LeaveGroup(r) => r.encode(&mut buf, version),
        Response::OffsetCommit(r) => r.encode(&mut buf, version),
        Response::OffsetFetch(r) => r.encode(&mut buf, version),
        Response::OffsetDelete(r) => r.encode(&mut buf, version),
        Response::DescribeGroups(r) => r.encode(&mut buf, version),
        Response::ListGroups(r) => r.encode(&mut buf, version),
        Response::DeleteGroups(r) => r.encode(&mut buf, version),
        Response::ConsumerGroupHeartbeat(r) => r.encode(&mut buf, version),
        Response::ConsumerGroupDescribe(r) => r.encode(&mut buf, version),
    };
    assert!(
        result.is_ok(),
        "v{version} {response:?} does not encode: {result:?}"
    );
}
