//! How the coordinator serves consumer groups (KIP-848) beside its classic groups: one group-id
//! namespace, ConsumerGroupHeartbeat and ConsumerGroupDescribe handed to `consumer::ConsumerGroups`,
//! their records written at every change before the answer that reflects it leaves (Kafka answers
//! a heartbeat only once its records are in the log), their metric events, their topic metadata,
//! and their share of load, adoption and release. The consumer state machine itself knows nothing
//! of persistence or classic groups; this file must not hold consumer-group rules of its own.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse,
};

use super::consumer::{
    CallContext, ConsumerEvent, ConsumerGroupRecord, ConsumerGroupState, FenceCause, Topics,
};
use super::group::code;
use super::persist::{Effect, Write};
use super::rebalance::sb;
use super::state::{EvictionCause, GroupState};
use super::{CallMeta, Coordinator, Event, Millis, Output, Request, Response, Token};

/// Where one consumer group's reconciliation stands, for its metric series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerProgress {
    pub state: ConsumerGroupState,
    pub group_epoch: i32,
    pub target_epoch: i32,
    pub members: usize,
    /// The lowest member epoch (the target epoch when there is no member).
    pub min_member_epoch: i32,
    /// Members not yet at the target epoch.
    pub unreconciled: usize,
    pub pending_revocation: usize,
    /// Partitions in some member's target that another member still holds or that are not yet
    /// given.
    pub unreleased: usize,
}

/// Identity of consumer-group objects for the write pipeline (as `Group::incarnation` is for
/// classic groups): a write's in-memory effect applies only to the object that issued it.
#[derive(Default)]
pub(crate) struct Incarnations {
    by_group: BTreeMap<String, u64>,
}

impl Incarnations {
    pub(crate) fn get(&self, group: &str) -> Option<u64> {
        self.by_group.get(group).copied()
    }

    fn forget(&mut self, group: &str) {
        self.by_group.remove(group);
    }
}

impl Coordinator {
    /// The consumer groups (KIP-848) this coordinator serves.
    pub fn consumer_groups(&self) -> &super::consumer::ConsumerGroups {
        &self.consumer
    }

    /// Whether `group` is a consumer group here.
    #[cfg(test)]
    pub fn is_consumer_group(&self, group: &str) -> bool {
        self.consumer.contains(group)
    }

    /// New topic metadata for consumer groups (ids, names, partition counts): groups whose
    /// subscribed topics changed get a new group epoch; their records are written.
    pub fn set_topics(&mut self, now: Millis, topics: Topics, out: &mut Vec<Output>) {
        let mut events = Vec::new();
        self.consumer.set_topics(now, topics, &mut events);
        self.consumer_settle(now, events, None, out);
    }

    /// ConsumerGroupHeartbeat (API 68). A group id that names a classic group with members is
    /// refused as Kafka refuses it ("not a consumer group"); an empty classic group gives way to
    /// the consumer group (its committed offsets stay).
    pub(crate) fn consumer_heartbeat(
        &mut self,
        now: Millis,
        meta: CallMeta,
        req: ConsumerGroupHeartbeatRequest,
        out: &mut Vec<Output>,
    ) {
        let id = req.group_id.as_str().to_string();
        let refuse = |code: i16, message: String| {
            Response::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default()
                    .with_error_code(code)
                    .with_error_message(Some(sb(&message))),
            )
        };
        if self.loading {
            let response = refuse(code::COORDINATOR_LOAD_IN_PROGRESS, String::new());
            return out.push(Output::Reply {
                token: meta.token,
                response,
            });
        }
        let cx = CallContext {
            api_version: meta.version,
            client_id: meta.client_id,
            client_host: meta.client_host,
        };
        if let Some(g) = self.groups.get(&id) {
            if !g.members.is_empty() || g.state != GroupState::Empty {
                if req.member_epoch != 0 {
                    let message = format!("Group {id} is not a consumer group.");
                    let response = refuse(code::GROUP_ID_NOT_FOUND, message);
                    return out.push(Output::Reply {
                        token: meta.token,
                        response,
                    });
                }
                // Online upgrade (group.consumer.migration.policy): the classic group becomes a
                // consumer group with its members, then this member joins it.
                return self.consumer_upgrade(now, meta.token, cx, req, out);
            }
            // Kafka's getOrMaybeCreateConsumerGroup: an empty classic group is replaced.
            self.groups.remove(&id);
            self.timers.cancel_group(&id);
        }
        let unknown_topic = req.subscribed_topic_regex.is_some()
            || req
                .subscribed_topic_names
                .iter()
                .flatten()
                .any(|t| self.consumer.topics().get(t.as_str()).is_none());
        if unknown_topic && req.member_epoch == 0 {
            out.push(Output::RefreshTopics);
        }
        let mut events = Vec::new();
        let response = self.consumer.heartbeat(now, &cx, &req, &mut events);
        let reply = (meta.token, Response::ConsumerGroupHeartbeat(response));
        self.consumer_settle(now, events, Some((id, reply)), out);
    }

    /// A consumer-protocol member joining a classic group with members (Kafka's online upgrade):
    /// the consumer side builds the group from the classic one; only if that succeeds does the
    /// classic side let it go (its parked calls are answered REBALANCE_IN_PROGRESS, its offsets
    /// stay with the id). The consumer record written next supersedes the classic one.
    fn consumer_upgrade(
        &mut self,
        now: Millis,
        token: Token,
        cx: CallContext,
        req: ConsumerGroupHeartbeatRequest,
        out: &mut Vec<Output>,
    ) {
        let id = req.group_id.as_str().to_string();
        let Some(snapshot) = self.classic_snapshot(&id) else {
            return;
        };
        let mut events = Vec::new();
        let (response, converted) =
            self.consumer
                .upgrade_from(now, &cx, &snapshot, &req, &mut events);
        if converted {
            self.export_classic(now, &id, out);
            self.consumer_incarnations.forget(&id);
        }
        let reply = (token, Response::ConsumerGroupHeartbeat(response));
        self.consumer_settle(now, events, Some((id, reply)), out);
    }

    /// JoinGroup, SyncGroup, Heartbeat or LeaveGroup of a classic-protocol member for a consumer
    /// group (Kafka 4 serves them there; `consumer/classic.rs`). `None` if the call is not for
    /// one: the classic coordinator takes it. A JoinGroup for an *empty* consumer group replaces
    /// it with a classic group (Kafka's `getOrMaybeCreateClassicGroup`; its offsets stay).
    pub(crate) fn classic_call_for_consumer_group(
        &mut self,
        now: Millis,
        meta: &CallMeta,
        request: &Request,
        out: &mut Vec<Output>,
    ) -> bool {
        let id = match request {
            Request::JoinGroup(r) => r.group_id.as_str(),
            Request::SyncGroup(r) => r.group_id.as_str(),
            Request::Heartbeat(r) => r.group_id.as_str(),
            Request::LeaveGroup(r) => r.group_id.as_str(),
            _ => return false,
        }
        .to_string();
        if self.loading || !self.consumer.contains(&id) {
            return false;
        }
        if let Request::JoinGroup(_) = request {
            if !self.consumer.serves_classic_join(&id) {
                let _ = self.consumer.delete(&id);
                self.consumer.clean(&id);
                self.consumer_incarnations.forget(&id);
                out.push(Output::Event(Event::GroupReleased { group: id }));
                return false;
            }
        }
        let cx = CallContext {
            api_version: meta.version,
            client_id: meta.client_id.clone(),
            client_host: meta.client_host.clone(),
        };
        let mut events = Vec::new();
        let response = match request {
            Request::JoinGroup(r) => {
                Response::JoinGroup(self.consumer.classic_join(now, &cx, r, &mut events))
            }
            Request::SyncGroup(r) => {
                Response::SyncGroup(self.consumer.classic_sync(now, &cx, r, &mut events))
            }
            Request::Heartbeat(r) => {
                Response::Heartbeat(self.consumer.classic_heartbeat(now, &cx, r, &mut events))
            }
            Request::LeaveGroup(r) => {
                Response::LeaveGroup(self.consumer.classic_leave(now, &cx, r, &mut events))
            }
            _ => return false,
        };
        self.consumer_settle(now, events, Some((id, (meta.token, response))), out);
        true
    }

    /// ConsumerGroupDescribe (API 69): answered from memory.
    pub(crate) fn consumer_describe(
        &mut self,
        meta: CallMeta,
        req: ConsumerGroupDescribeRequest,
        out: &mut Vec<Output>,
    ) {
        let mut response = self.consumer.describe(&req);
        for d in &mut response.groups {
            if self.loading {
                d.error_code = code::COORDINATOR_LOAD_IN_PROGRESS;
            } else if d.error_code == code::GROUP_ID_NOT_FOUND
                && self.groups.contains_key(d.group_id.as_str())
            {
                d.error_message = Some(sb(&format!(
                    "Group {} is not a consumer group.",
                    d.group_id.as_str()
                )));
            }
        }
        out.push(Output::Reply {
            token: meta.token,
            response: Response::ConsumerGroupDescribe(response),
        });
    }

    /// Fires due consumer-group timers (session and rebalance timeouts).
    pub(crate) fn consumer_tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        if !matches!(self.consumer.next_deadline(), Some(at) if at <= now) {
            return;
        }
        let mut events = Vec::new();
        self.consumer.tick(now, &mut events);
        self.consumer_settle(now, events, None, out);
    }

    /// Deletes an Empty consumer group and its offsets (DeleteGroups); the tombstone is written
    /// like a classic group's. `Err` with Kafka's code otherwise.
    pub(crate) fn consumer_delete(
        &mut self,
        group: &str,
        token: Token,
        index: usize,
        out: &mut Vec<Output>,
    ) -> Result<(), i16> {
        self.consumer.delete(group)?;
        self.offsets.take_group(group);
        self.imports.forget(group);
        self.consumer_tombstone(group, Some(token), index, out);
        Ok(())
    }

    /// Removes an Empty consumer group whose offsets all expired (retention); its tombstone is
    /// written.
    pub(crate) fn consumer_expire(&mut self, group: &str, out: &mut Vec<Output>) {
        if self.consumer.delete(group).is_ok() {
            self.consumer_tombstone(group, None, 0, out);
        }
    }

    /// After a consumer group was deleted: writes its tombstone (answering `token` at `index` of
    /// a DeleteGroups, if any) and reports `GroupDeleted`.
    fn consumer_tombstone(
        &mut self,
        group: &str,
        token: Option<Token>,
        index: usize,
        out: &mut Vec<Output>,
    ) {
        self.consumer.clean(group);
        let incarnation = self.consumer_incarnation(group);
        self.consumer_incarnations.forget(group);
        let effect = Effect::Tombstone {
            token,
            index,
            restore: None,
        };
        self.persist
            .issue(out, group, incarnation, || Write::DeleteGroup, effect);
        out.push(Output::Event(Event::GroupDeleted {
            group: group.to_string(),
        }));
    }

    /// Restores consumer groups from their records (startup load or adoption). A damaged
    /// record is logged by the caller's store layer and left out.
    pub(crate) fn consumer_load(
        &mut self,
        now: Millis,
        records: Vec<ConsumerGroupRecord>,
        out: &mut Vec<Output>,
    ) {
        if records.is_empty() {
            return;
        }
        let ids: Vec<String> = records.iter().map(|r| r.group_id.clone()).collect();
        let mut events = Vec::new();
        let refused = self.consumer.load(now, records, &mut events);
        for id in ids.iter().filter(|id| !refused.contains(id)) {
            self.consumer_incarnation(id);
            self.groups.remove(id);
        }
        for id in &refused {
            tracing::error!(group = %id, "a consumer group record does not restore; the group starts empty");
        }
        // Loading is not a change: nothing to write back.
        for id in &ids {
            self.consumer.clean(id);
        }
        self.consumer_events(events, out);
        for id in ids {
            self.consumer_progress_event(&id, out);
        }
    }

    /// Drops a consumer group's state (its lease went elsewhere). True if it had any.
    pub(crate) fn consumer_release(&mut self, group: &str) -> bool {
        self.consumer_incarnations.forget(group);
        self.consumer.release(group)
    }

    /// The identity of consumer group `group`'s object, given on first use.
    pub(crate) fn consumer_incarnation(&mut self, group: &str) -> u64 {
        if let Some(i) = self.consumer_incarnations.get(group) {
            return i;
        }
        let i = self.persist.next_incarnation();
        self.consumer_incarnations
            .by_group
            .insert(group.to_string(), i);
        i
    }

    /// After a consumer call or timer: writes the record of every group that changed (in the
    /// group's write order) and holds `reply` until the write of its group, or any write of its
    /// group still in flight, has settled; emits metric events.
    fn consumer_settle(
        &mut self,
        now: Millis,
        events: Vec<ConsumerEvent>,
        reply: Option<(String, (Token, Response))>,
        out: &mut Vec<Output>,
    ) {
        let mut touched: Vec<String> = events.iter().map(|e| event_group(e).to_string()).collect();
        self.consumer_events(events, out);
        // Groups that went back to the classic protocol (the last consumer-protocol member left):
        // the classic side installs them and writes their record, which supersedes the consumer
        // one (no tombstone: the offsets stay with the id).
        for downgrade in self.consumer.take_downgrades() {
            let id = downgrade.snapshot.group_id.clone();
            self.consumer_incarnations.forget(&id);
            out.push(Output::Event(Event::GroupReleased { group: id }));
            self.import_classic(now, downgrade, out);
        }
        let dirty = self.consumer.take_dirty();
        let mut reply = reply;
        for group in dirty {
            if !self.consumer.contains(&group) {
                // Downgraded (above) or deleted (DeleteGroups writes its own tombstone).
                continue;
            }
            let incarnation = self.consumer_incarnation(&group);
            let held = match &reply {
                Some((g, _)) if *g == group => reply.take().map(|(_, r)| r),
                _ => None,
            };
            let effect = Effect::ConsumerRecord { reply: held };
            if let Some(record) = self.consumer.record(&group) {
                let record = Box::new(record);
                let write = move || Write::ConsumerRecord(record);
                self.persist.issue(out, &group, incarnation, write, effect);
            }
            touched.push(group);
        }
        if let Some((group, (token, response))) = reply {
            let incarnation = self
                .consumer_incarnations
                .get(&group)
                .or_else(|| self.groups.get(&group).map(|g| g.incarnation))
                .unwrap_or(0);
            if let Some(response) = self
                .persist
                .queue_behind(&group, incarnation, token, response)
            {
                out.push(Output::Reply { token, response });
            }
            touched.push(group);
        }
        touched.sort();
        touched.dedup();
        for group in touched {
            self.consumer_progress_event(&group, out);
        }
    }

    fn consumer_events(&mut self, events: Vec<ConsumerEvent>, out: &mut Vec<Output>) {
        for e in events {
            let event = match e {
                ConsumerEvent::GroupEpochBumped { group, epoch } => Event::GenerationChanged {
                    group,
                    generation: epoch,
                },
                ConsumerEvent::TargetAssigned { group, .. } => Event::TargetAssigned { group },
                ConsumerEvent::MemberFenced { group, cause } => Event::MemberEvicted {
                    group,
                    cause: match cause {
                        FenceCause::SessionTimeout => EvictionCause::SessionExpiry,
                        FenceCause::RebalanceTimeout => EvictionCause::RebalanceTimeout,
                        FenceCause::JoinTimeout => EvictionCause::JoinTimeout,
                        FenceCause::SyncTimeout => EvictionCause::SyncTimeout,
                        FenceCause::Leave => continue,
                    },
                },
                ConsumerEvent::StateChanged { .. } | ConsumerEvent::MemberJoined { .. } => continue,
            };
            out.push(Output::Event(event));
        }
    }

    /// One `ConsumerProgress` event with where `group` stands now.
    fn consumer_progress_event(&self, group: &str, out: &mut Vec<Output>) {
        if let Some(progress) = self.consumer_progress(group) {
            out.push(Output::Event(Event::ConsumerProgress {
                group: group.to_string(),
                progress,
            }));
        }
    }

    /// Where consumer group `group`'s reconciliation stands (`None` if it is not one).
    pub fn consumer_progress(&self, group: &str) -> Option<ConsumerProgress> {
        let g = self.consumer.group(group)?;
        let r = g.reconciliation();
        let min_member_epoch = g
            .members
            .values()
            .map(|m| m.member_epoch)
            .min()
            .unwrap_or(g.assignment_epoch);
        Some(ConsumerProgress {
            state: g.state,
            group_epoch: g.group_epoch,
            target_epoch: g.assignment_epoch,
            members: r.members,
            min_member_epoch,
            unreconciled: r.members.saturating_sub(r.at_target_epoch),
            pending_revocation: r.pending_revocation,
            unreleased: r.awaiting_assignment,
        })
    }

    /// A consumer group's record write settled. On failure the record is written again at the
    /// group's next change (records are whole), and a held answer carries the error
    /// (COORDINATOR_NOT_AVAILABLE for a store outage: the client retries, and Kafka's rule for a
    /// lost answer — the previous epoch with owned ⊆ assigned — lets it go on). Otherwise the
    /// held answer goes out.
    pub(crate) fn consumer_record_settled(
        &mut self,
        group: &str,
        same_group: bool,
        reply: Option<(Token, Response)>,
        outcome: Result<(), i16>,
        out: &mut Vec<Output>,
    ) {
        if outcome.is_err() && same_group {
            self.consumer.touch(group);
        }
        let Some((token, response)) = reply else {
            return;
        };
        let response = match (outcome, response) {
            (Err(code), Response::ConsumerGroupHeartbeat(_)) => Response::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatResponse::default().with_error_code(code),
            ),
            (_, response) => response,
        };
        out.push(Output::Reply { token, response });
    }
}

fn event_group(e: &ConsumerEvent) -> &str {
    match e {
        ConsumerEvent::GroupEpochBumped { group, .. }
        | ConsumerEvent::TargetAssigned { group, .. }
        | ConsumerEvent::StateChanged { group, .. }
        | ConsumerEvent::MemberJoined { group }
        | ConsumerEvent::MemberFenced { group, .. } => group,
    }
}
