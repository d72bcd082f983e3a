//! Per-group series for passthrough groups, read from the gateway's responses as they pass (and
//! from a few request fields): the same `Event`s the local coordinator emits, labelled
//! `mode="passthrough"`. The gateway's state is not visible, so this is an approximation built
//! from what this kelp sees (METRICS.md): a JoinGroup from a new member or a rejoining one starts a
//! rebalance; a JoinGroup response with a new generation ends the join phase (the leader's lists
//! the members); a successful SyncGroup makes the group Stable; REBALANCE_IN_PROGRESS on a
//! Heartbeat or SyncGroup starts a rebalance whose cause kelp did not see (`reason="unknown"`); a
//! LeaveGroup starts one with `leave` (or empties the group); commits are counted by result.
//! Only group APIs of passthrough groups are decoded here, never Produce or Fetch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, OffsetCommitResponse,
    SyncGroupResponse,
};
use kafka_protocol::protocol::Decodable;

use crate::group::{Event, GroupState, RebalanceReason};
use crate::metrics::{error_name, Metrics};
use crate::protocol::split_response;

/// Passthrough groups whose state kelp follows at most; the least recently seen goes first.
const MAX_GROUPS: usize = 10_000;
const MODE: &str = "passthrough";
const REBALANCE_IN_PROGRESS: i16 = 27;
/// Topic partitions remembered per group for its lag (from the OffsetCommits that pass).
const MAX_PARTITIONS_PER_GROUP: usize = 10_000;

/// What kelp keeps of a passthrough request to read its response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    Join,
    Sync,
    Heartbeat,
    /// How many members the LeaveGroup removes (v3+ batches several).
    Leave {
        leaving: usize,
    },
    Commit,
}

/// What kelp believes of one passthrough group.
#[derive(Debug, Clone)]
struct Seen {
    generation: Option<i32>,
    state: Option<GroupState>,
    leader: Option<String>,
    members: Option<usize>,
    /// When this kelp first saw the current rebalance.
    rebalance_since: Option<Instant>,
    touched: Instant,
    /// The partitions the group commits (for its lag: the gateway's OffsetFetch needs topics);
    /// shared with the `Observed` snapshots, copied only if one is alive when it grows.
    committed: Arc<BTreeMap<String, BTreeSet<i32>>>,
    /// The last OffsetCommit the gateway accepted.
    last_commit: Option<Instant>,
}

/// What the lag poller needs of one passthrough group.
#[derive(Debug, Clone)]
pub struct Observed {
    pub group: String,
    pub state: Option<GroupState>,
    pub generation: Option<i32>,
    pub members: Option<usize>,
    pub partitions: Arc<BTreeMap<String, BTreeSet<i32>>>,
    pub last_commit: Option<Instant>,
}

/// An output of the tracker: a coordinator-style event, or a rebalance of unknown cause.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    Event(Event),
    RebalanceUnknown,
}

impl Seen {
    fn new(now: Instant) -> Seen {
        Seen {
            generation: None,
            state: None,
            leader: None,
            members: None,
            rebalance_since: None,
            touched: now,
            committed: Arc::default(),
            last_commit: None,
        }
    }

    fn start_rebalance(
        &mut self,
        group: &str,
        reason: Option<RebalanceReason>,
        now: Instant,
        out: &mut Vec<Out>,
    ) {
        if matches!(
            self.state,
            Some(GroupState::PreparingRebalance | GroupState::CompletingRebalance)
        ) {
            return; // already rebalancing: members joining the same round
        }
        out.push(match reason {
            Some(reason) => Out::Event(Event::RebalanceStarted {
                group: group.into(),
                reason,
            }),
            None => Out::RebalanceUnknown,
        });
        self.set_state(group, GroupState::PreparingRebalance, out);
        self.rebalance_since.get_or_insert(now);
    }

    fn set_state(&mut self, group: &str, state: GroupState, out: &mut Vec<Out>) {
        if self.state != Some(state) {
            self.state = Some(state);
            out.push(Out::Event(Event::StateChanged {
                group: group.into(),
                state,
            }));
        }
    }

    /// A JoinGroup request: a new member (empty id) or a member rejoining a settled group.
    fn join_request(&mut self, group: &str, member_id: &str, now: Instant, out: &mut Vec<Out>) {
        let reason = if member_id.is_empty() {
            RebalanceReason::NewMember
        } else if self.state != Some(GroupState::Stable) {
            return; // a member answering the rebalance in progress (or one kelp cannot place)
        } else if self.leader.as_deref() == Some(member_id) {
            RebalanceReason::LeaderRejoin
        } else {
            RebalanceReason::MetadataChange
        };
        self.start_rebalance(group, Some(reason), now, out);
    }

    fn join_response(&mut self, group: &str, r: &JoinGroupResponse, out: &mut Vec<Out>) {
        if r.error_code != 0 || r.generation_id < 0 {
            return;
        }
        if self.generation.is_some_and(|g| g >= r.generation_id) {
            return; // another member's answer for a generation already seen
        }
        self.generation = Some(r.generation_id);
        self.leader = Some(r.leader.to_string());
        out.push(Out::Event(Event::GenerationChanged {
            group: group.into(),
            generation: r.generation_id,
        }));
        if self.state != Some(GroupState::PreparingRebalance) {
            // kelp missed the start of this round (another sidecar's member caused it).
            self.set_state(group, GroupState::PreparingRebalance, out);
        }
        self.set_state(group, GroupState::CompletingRebalance, out);
        if !r.members.is_empty() {
            self.set_members(group, r.members.len(), out);
        }
    }

    fn set_members(&mut self, group: &str, members: usize, out: &mut Vec<Out>) {
        if self.members != Some(members) {
            self.members = Some(members);
            out.push(Out::Event(Event::MembersChanged {
                group: group.into(),
                members,
            }));
        }
    }

    fn settled(&mut self, group: &str, now: Instant, out: &mut Vec<Out>) {
        if self.state == Some(GroupState::Stable) {
            return;
        }
        self.set_state(group, GroupState::Stable, out);
        if let Some(since) = self.rebalance_since.take() {
            out.push(Out::Event(Event::RebalanceCompleted {
                group: group.into(),
                duration_ms: now.saturating_duration_since(since).as_millis() as u64,
            }));
        }
    }

    fn left(&mut self, group: &str, leaving: usize, now: Instant, out: &mut Vec<Out>) {
        match self.members {
            Some(m) if m <= leaving => {
                self.set_members(group, 0, out);
                self.set_state(group, GroupState::PreparingRebalance, out);
                self.set_state(group, GroupState::Empty, out);
                self.rebalance_since = None;
            }
            members => {
                if let Some(m) = members {
                    self.set_members(group, m - leaving, out);
                }
                self.start_rebalance(group, Some(RebalanceReason::Leave), now, out);
            }
        }
    }
}

/// Adds committed partitions to a group's list, up to `MAX_PARTITIONS_PER_GROUP`.
fn remember<'a>(seen: &mut Seen, partitions: impl Iterator<Item = (&'a str, i32)>) {
    let mut count: usize = seen.committed.values().map(BTreeSet::len).sum();
    let mut partitions = partitions.peekable();
    if partitions.peek().is_none() || count >= MAX_PARTITIONS_PER_GROUP {
        return;
    }
    let committed = Arc::make_mut(&mut seen.committed);
    for (topic, partition) in partitions {
        if count >= MAX_PARTITIONS_PER_GROUP {
            return;
        }
        // A topic's name is copied only the first time it is seen.
        let set = match committed.get_mut(topic) {
            Some(set) => set,
            None => committed.entry(topic.to_string()).or_default(),
        };
        if set.insert(partition) {
            count += 1;
        }
    }
}

/// The first error code in a response we observe, for `kelp_request_errors_total`.
fn first_error(codes: impl IntoIterator<Item = i16>) -> i16 {
    codes.into_iter().find(|c| *c != 0).unwrap_or(0)
}

/// Follows passthrough groups and feeds the per-group series.
pub struct Observer {
    groups: Mutex<HashMap<String, Seen>>,
    metrics: Arc<Metrics>,
}

impl Observer {
    pub fn new(metrics: Arc<Metrics>) -> Observer {
        Observer {
            groups: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn with_group(&self, group: &str, now: Instant, f: impl FnOnce(&mut Seen, &mut Vec<Out>)) {
        let mut out = Vec::new();
        {
            let Ok(mut groups) = self.groups.lock() else {
                return;
            };
            if !groups.contains_key(group) && groups.len() >= MAX_GROUPS {
                let oldest = groups
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(g, _)| g.clone());
                if let Some(oldest) = oldest {
                    groups.remove(&oldest);
                }
            }
            let seen = groups
                .entry(group.to_string())
                .or_insert_with(|| Seen::new(now));
            seen.touched = now;
            f(seen, &mut out);
        }
        for o in out {
            match o {
                Out::Event(e) => self.metrics.groups.apply(&e, MODE),
                Out::RebalanceUnknown => self.metrics.groups.rebalance_started_unknown(group, MODE),
            }
        }
    }

    /// A JoinGroup request on its way to the gateway.
    pub fn join_request(&self, group: &str, member_id: &str) {
        let now = Instant::now();
        self.with_group(group, now, |s, out| {
            s.join_request(group, member_id, now, out)
        });
    }

    /// An OffsetCommit request on its way to the gateway: remembers the partitions it names, so
    /// the lag poller can ask the gateway for them (never for "all topics").
    pub fn commit_request<'a>(
        &self,
        group: &str,
        partitions: impl Iterator<Item = (&'a str, i32)>,
    ) {
        self.with_group(group, Instant::now(), |s, _| remember(s, partitions));
    }

    /// Every passthrough group this kelp follows, for the lag poller and `/groups`.
    pub fn observed(&self) -> Vec<Observed> {
        let Ok(groups) = self.groups.lock() else {
            return Vec::new();
        };
        groups
            .iter()
            .map(|(g, s)| Observed {
                group: g.clone(),
                state: s.state,
                generation: s.generation,
                members: s.members,
                partitions: s.committed.clone(),
                last_commit: s.last_commit,
            })
            .collect()
    }

    /// A LeaveGroup request's members were removed (seen on its successful response).
    fn leave(&self, group: &str, leaving: usize) {
        let now = Instant::now();
        self.with_group(group, now, |s, out| s.left(group, leaving, now, out));
    }

    /// The gateway's response (length prefix removed) to a request of `group`; returns its
    /// (first) error code. Undecodable responses are passed on as they are and only logged.
    pub fn response(
        &self,
        group: &str,
        asked: &Asked,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> Option<i16> {
        match self.read(group, asked, api, version, frame) {
            Ok(error) => Some(error),
            Err(e) => {
                tracing::debug!(group, api = ?api, version, error = %e, "cannot read a passthrough response");
                None
            }
        }
    }

    fn read(
        &self,
        group: &str,
        asked: &Asked,
        api: ApiKey,
        version: i16,
        frame: Bytes,
    ) -> anyhow::Result<i16> {
        let (_, mut body) = split_response(frame, api, version)?;
        let now = Instant::now();
        let error = match asked {
            Asked::Join => {
                let r = JoinGroupResponse::decode(&mut body, version)?;
                self.with_group(group, now, |s, out| s.join_response(group, &r, out));
                r.error_code
            }
            Asked::Sync => {
                let r = SyncGroupResponse::decode(&mut body, version)?;
                self.with_group(group, now, |s, out| match r.error_code {
                    0 => s.settled(group, now, out),
                    REBALANCE_IN_PROGRESS => s.start_rebalance(group, None, now, out),
                    _ => {}
                });
                r.error_code
            }
            Asked::Heartbeat => {
                let r = HeartbeatResponse::decode(&mut body, version)?;
                self.with_group(group, now, |s, out| match r.error_code {
                    REBALANCE_IN_PROGRESS => s.start_rebalance(group, None, now, out),
                    // A member heartbeating fine in a group kelp has not seen settle yet.
                    0 if s.state.is_none() => s.set_state(group, GroupState::Stable, out),
                    _ => {}
                });
                r.error_code
            }
            Asked::Leave { leaving } => {
                let r = LeaveGroupResponse::decode(&mut body, version)?;
                let error = first_error(
                    std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code)),
                );
                if r.error_code == 0 {
                    let removed = if r.members.is_empty() {
                        *leaving
                    } else {
                        r.members.iter().filter(|m| m.error_code == 0).count()
                    };
                    if removed > 0 {
                        self.leave(group, removed);
                    }
                }
                error
            }
            Asked::Commit => {
                let r = OffsetCommitResponse::decode(&mut body, version)?;
                let error = first_error(
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                );
                self.metrics.groups.apply(
                    &Event::OffsetCommit {
                        group: group.into(),
                        error,
                    },
                    MODE,
                );
                if error == 0 {
                    self.with_group(group, now, |s, _| s.last_commit = Some(now));
                }
                error
            }
        };
        if error != 0 {
            self.metrics
                .request_errors
                .with_label_values(&[&format!("{api:?}"), &error_name(error)])
                .inc();
        }
        Ok(error)
    }

    /// Keeps only the groups `keep` accepts (after a reload, the ones still passed through): a
    /// group that comes back later starts from scratch.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut groups) = self.groups.lock() {
            groups.retain(|g, _| keep(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
    use kafka_protocol::protocol::StrBytes;
    use std::time::Duration;

    fn events(out: &[Out]) -> Vec<String> {
        out.iter()
            .map(|o| match o {
                Out::Event(Event::RebalanceStarted { reason, .. }) => {
                    format!("rebalance:{}", reason.as_str())
                }
                Out::Event(Event::StateChanged { state, .. }) => {
                    format!("state:{}", state.as_str())
                }
                Out::Event(Event::GenerationChanged { generation, .. }) => {
                    format!("gen:{generation}")
                }
                Out::Event(Event::MembersChanged { members, .. }) => format!("members:{members}"),
                Out::Event(Event::RebalanceCompleted { duration_ms, .. }) => {
                    format!("done:{duration_ms}")
                }
                Out::Event(e) => format!("{e:?}"),
                Out::RebalanceUnknown => "rebalance:unknown".into(),
            })
            .collect()
    }

    fn join_response(generation: i32, leader: &str, members: usize) -> JoinGroupResponse {
        JoinGroupResponse::default()
            .with_generation_id(generation)
            .with_leader(StrBytes::from_string(leader.into()))
            .with_members(
                (0..members)
                    .map(|i| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(format!("m{i}")))
                    })
                    .collect(),
            )
    }

    #[test]
    fn a_group_forming_and_settling() {
        let t0 = Instant::now();
        let mut s = Seen::new(t0);
        let mut out = Vec::new();
        s.join_request("g", "", t0, &mut out);
        s.join_request("g", "", t0, &mut out); // a second new member joins the same round
        s.join_response("g", &join_response(1, "m0", 2), &mut out);
        s.join_response("g", &join_response(1, "m0", 0), &mut out); // the follower's answer
        s.settled("g", t0 + Duration::from_millis(250), &mut out);
        s.settled("g", t0 + Duration::from_millis(300), &mut out);
        assert_eq!(
            events(&out),
            [
                "rebalance:new_member",
                "state:PreparingRebalance",
                "gen:1",
                "state:CompletingRebalance",
                "members:2",
                "state:Stable",
                "done:250"
            ]
        );
    }

    #[test]
    fn rejoins_leaves_and_unseen_causes() {
        let t0 = Instant::now();
        let mut s = Seen::new(t0);
        let mut out = Vec::new();
        s.join_response("g", &join_response(3, "leader", 3), &mut out);
        s.settled("g", t0, &mut out);
        out.clear();
        s.join_request("g", "leader", t0, &mut out);
        s.join_response("g", &join_response(4, "leader", 3), &mut out);
        s.settled("g", t0, &mut out);
        s.start_rebalance("g", None, t0, &mut out);
        s.start_rebalance("g", None, t0, &mut out); // every member's heartbeat says so
        s.join_response("g", &join_response(5, "other", 0), &mut out);
        s.settled("g", t0, &mut out);
        s.left("g", 1, t0, &mut out);
        s.left("g", 2, t0, &mut out);
        assert_eq!(
            events(&out),
            [
                "rebalance:leader_rejoin",
                "state:PreparingRebalance",
                "gen:4",
                "state:CompletingRebalance",
                "state:Stable",
                "done:0",
                "rebalance:unknown",
                "state:PreparingRebalance",
                "gen:5",
                "state:CompletingRebalance",
                "state:Stable",
                "done:0",
                "members:2",
                "rebalance:leave",
                "state:PreparingRebalance",
                "members:0",
                "state:Empty"
            ]
        );
    }

    #[test]
    fn a_follower_rejoining_is_a_metadata_change_and_stale_generations_are_ignored() {
        let t0 = Instant::now();
        let mut s = Seen::new(t0);
        let mut out = Vec::new();
        s.join_response("g", &join_response(2, "leader", 0), &mut out);
        s.settled("g", t0, &mut out);
        out.clear();
        s.join_request("g", "follower", t0, &mut out);
        s.join_response("g", &join_response(1, "leader", 0), &mut out);
        assert_eq!(
            events(&out),
            ["rebalance:metadata_change", "state:PreparingRebalance"]
        );
    }

    #[test]
    fn the_observer_feeds_the_passthrough_series() {
        let metrics = Arc::new(Metrics::new());
        let o = Observer::new(metrics.clone());
        o.join_request("pg", "");
        let body = join_response(1, "m0", 3);
        let frame = crate::protocol::encode_response(ApiKey::JoinGroup, 5, 9, &body).unwrap();
        o.response("pg", &Asked::Join, ApiKey::JoinGroup, 5, frame.slice(4..));
        let commit = OffsetCommitResponse::default();
        let frame = crate::protocol::encode_response(ApiKey::OffsetCommit, 2, 9, &commit).unwrap();
        o.response(
            "pg",
            &Asked::Commit,
            ApiKey::OffsetCommit,
            2,
            frame.slice(4..),
        );
        // Garbage is skipped, not fatal.
        o.response(
            "pg",
            &Asked::Sync,
            ApiKey::SyncGroup,
            3,
            Bytes::from_static(b"\0\0"),
        );
        let text = String::from_utf8(metrics.render()).unwrap();
        for want in [
            r#"kelp_group_generation{group="pg",mode="passthrough",protocol="classic"} 1"#,
            r#"kelp_group_members{group="pg",mode="passthrough",protocol="classic"} 3"#,
            r#"kelp_group_mode{group="pg",mode="passthrough"} 1"#,
            r#"kelp_group_state{group="pg",mode="passthrough",protocol="classic",state="CompletingRebalance"} 1"#,
            r#"kelp_group_rebalances_total{group="pg",mode="passthrough",protocol="classic",reason="new_member"} 1"#,
            r#"kelp_group_offset_commits_total{group="pg",mode="passthrough",protocol="classic",result="ok"} 1"#,
        ] {
            assert!(text.contains(want), "missing {want}");
        }
    }
}
