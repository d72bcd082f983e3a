//! The classic consumer-group coordinator: a pure state machine (no tokio, no sockets, no clock reads).
//! The shell feeds it `Call`s and the current time; it answers with `Output`s, now or later.
//! The contract is GROUP_SEMANTICS.md; where that is silent, Kafka's ClassicGroup semantics.
//!
//! Layout: `group.rs` (group and member data), `state.rs` (states, reasons, causes), `rebalance.rs`
//! (the transitions every API shares), one file per API (`join.rs`, `sync.rs`, `heartbeat.rs`,
//! `leave.rs`, `offsets.rs`, `describe.rs`), `store.rs` (committed offsets), `retention.rs`
//! (offset expiry), `timers.rs`, `ids.rs`, `view.rs` (a read-only picture for `/groups` and lag).
//!
//! For the shell:
//! - Every `Call` gets exactly one `Output::Reply` with its token: during `handle`, or during a
//!   later `handle`/`tick` when a parked JoinGroup or SyncGroup completes. Replies for other calls
//!   may come out of any `handle`; the shell orders responses per connection.
//! - Parked requests are never dropped: a JoinGroup or SyncGroup superseded by the same member's
//!   next one is answered REBALANCE_IN_PROGRESS (27); a member removed while parked gets
//!   UNKNOWN_MEMBER_ID (25); a static member replaced by a new id gets FENCED_INSTANCE_ID (82).
//! - Call `tick(now)` when `now >= next_deadline()`. `handle` also fires whatever is due, before
//!   the call (so an expired session is expired first) and after it (zero delays). A timer takes
//!   effect at its own deadline, so a late tick behaves like a punctual one.
//! - `now` must not go backwards. Member ids are seeded per process (`new`), so a restarted kelp
//!   never hands out an id an old client still holds.
//! - Durability (`Config::durable`, set when the shell has a store): offset commits, offset and
//!   group deletions and the group record at Kafka's persistence points (§3.9) come out as
//!   `Output::Persist`. The reply that depends on a write is held until the shell reports its
//!   outcome with `persisted`; writes of one group must be performed in emission order. An
//!   `Output::Import` asks for the gateway's offsets of a group kelp has none for (answer with
//!   `imported`). Without a store, writes succeed at once and neither output appears.
//! - Startup with a store: `begin_loading`, then `load` with what the store holds. In between,
//!   group APIs answer COORDINATOR_LOAD_IN_PROGRESS (14) and Heartbeat 0 (§1.2).

pub mod consumer;
mod consumer_calls;
mod convert;
mod describe;
// `group/group.rs` holds the `Group` struct.
#[allow(clippy::module_inception)]
mod group;
mod heartbeat;
mod ids;
mod import;
mod join;
mod leave;
mod load;
mod offsets;
mod persist;
mod rebalance;
mod refuse;
mod retention;
mod state;
mod store;
mod sync;
mod timers;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};

pub use consumer_calls::ConsumerProgress;
pub use persist::{GroupRecord, LoadedGroup, MemberRecord, OffsetEntry, Persist, Write, WriteId};
pub use refuse::{named_groups, refusal};
pub use state::{EvictionCause, GroupState, RebalanceReason};
pub use store::CommittedOffset;
pub use view::{GroupView, MemberView, OffsetView};

use group::Group;
use ids::IdGen;
use import::Imports;
use persist::Persistence;
use rebalance::Ctx;
use store::OffsetStore;
use timers::Timers;

/// A bound on timers fired by one call; the rest fire on the next (`next_deadline` stays due).
const MAX_TIMERS_PER_PASS: usize = 100_000;

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// Coordinator settings (Kafka's `group.*` and `offsets.*` broker settings).
#[derive(Clone, Debug)]
pub struct Config {
    pub session_timeout_min_ms: i32,
    pub session_timeout_max_ms: i32,
    pub initial_rebalance_delay_ms: i32,
    pub max_group_size: usize,
    pub offset_metadata_max_bytes: usize,
    pub new_member_join_timeout_ms: i32,
    /// `offsets.retention.minutes` in ms (default 7 days).
    pub offsets_retention_ms: u64,
    /// How often expired offsets and empty groups are cleaned up (default 600000).
    pub offsets_retention_check_interval_ms: u64,
    /// A store backs the coordinator: writes come out as `Output::Persist` and the replies that
    /// depend on them wait for `persisted` (default false: everything stays in memory).
    pub durable: bool,
    /// Consumer groups (KIP-848): Kafka's `group.consumer.*` settings.
    pub consumer: consumer::ConsumerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            session_timeout_min_ms: 6000,
            session_timeout_max_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            max_group_size: i32::MAX as usize,
            offset_metadata_max_bytes: 4096,
            new_member_join_timeout_ms: 300_000,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 600_000,
            durable: false,
            consumer: consumer::ConsumerConfig::default(),
        }
    }
}

/// The shell's handle for one response slot.
pub type Token = u64;

/// One decoded group request and where its answer goes.
#[derive(Clone, Debug)]
pub struct Call {
    pub token: Token,
    pub api_version: i16,
    /// From the request header ("" if null).
    pub client_id: String,
    /// The peer address, e.g. "/127.0.0.1".
    pub client_host: String,
    pub request: Request,
}

#[derive(Clone, Debug)]
pub enum Request {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    OffsetDelete(OffsetDeleteRequest),
    DescribeGroups(DescribeGroupsRequest),
    ListGroups(ListGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
}

/// A response body, shaped for the call's `api_version`; the shell encodes it at that version.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    OffsetDelete(OffsetDeleteResponse),
    DescribeGroups(DescribeGroupsResponse),
    ListGroups(ListGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    ConsumerGroupDescribe(ConsumerGroupDescribeResponse),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// The answer to the call that carried `token`. Exactly one per call, possibly much later.
    Reply { token: Token, response: Response },
    /// A metric event.
    Event(Event),
    /// A write for the shell to make in the store; report its outcome with `persisted`.
    Persist(Persist),
    /// Read the gateway's committed offsets of `group` (read-only); answer with `imported`.
    Import { id: WriteId, group: String },
    /// A consumer group subscribed to a topic the coordinator has no metadata for: refresh the
    /// topic metadata soon (`set_topics`).
    RefreshTopics,
}

/// Metric events (METRICS.md). State and generation changes are reported at every transition.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    GenerationChanged {
        group: String,
        generation: i32,
    },
    StateChanged {
        group: String,
        state: GroupState,
    },
    MembersChanged {
        group: String,
        members: usize,
    },
    RebalanceStarted {
        group: String,
        reason: RebalanceReason,
    },
    /// From the first PreparingRebalance since the group was last Stable or Empty, to Stable.
    RebalanceCompleted {
        group: String,
        duration_ms: u64,
    },
    MemberEvicted {
        group: String,
        cause: EvictionCause,
    },
    /// One per OffsetCommit request: `error` is 0 when every partition was accepted, else the
    /// group-level error or the first partition's error.
    OffsetCommit {
        group: String,
        error: i16,
    },
    GroupDeleted {
        group: String,
    },
    /// The group moved to another kelp (`release`): its series go, nothing was deleted.
    GroupReleased {
        group: String,
    },
    /// A consumer group (KIP-848) got a new target assignment (its "rebalance").
    TargetAssigned {
        group: String,
    },
    /// Where a consumer group stands after a call or timer that touched it.
    ConsumerProgress {
        group: String,
        progress: ConsumerProgress,
    },
}

impl Event {
    /// The group the event is about.
    pub fn group(&self) -> &str {
        match self {
            Event::GenerationChanged { group, .. }
            | Event::StateChanged { group, .. }
            | Event::MembersChanged { group, .. }
            | Event::RebalanceStarted { group, .. }
            | Event::RebalanceCompleted { group, .. }
            | Event::MemberEvicted { group, .. }
            | Event::OffsetCommit { group, .. }
            | Event::GroupDeleted { group }
            | Event::GroupReleased { group }
            | Event::TargetAssigned { group }
            | Event::ConsumerProgress { group, .. } => group,
        }
    }
}

/// The coordinator for every group the shell routes here.
pub struct Coordinator {
    config: Config,
    groups: BTreeMap<String, Group>,
    offsets: OffsetStore,
    timers: Timers,
    ids: IdGen,
    persist: Persistence,
    imports: Imports,
    /// Between `begin_loading` and `load`.
    loading: bool,
    /// With several kelps (`shard`): the groups this coordinator owns and may serve; a request
    /// naming any other group is answered NOT_COORDINATOR. `None`: every group.
    owned: Option<BTreeSet<String>>,
    /// Consumer groups (KIP-848), one namespace with `groups`.
    consumer: consumer::ConsumerGroups,
    consumer_incarnations: consumer_calls::Incarnations,
}

/// The parts of a `Call` besides its request.
pub(crate) struct CallMeta {
    pub token: Token,
    pub version: i16,
    pub client_id: String,
    pub client_host: String,
}

impl Coordinator {
    /// Member ids are seeded per process, so a restarted kelp never re-issues an old id.
    pub fn new(config: Config) -> Self {
        Self::with_ids(config, IdGen::from_process_entropy())
    }

    /// Like `new`, with member ids fully determined by `seed` (for reproducible tests).
    pub fn with_seed(config: Config, seed: u64) -> Self {
        Self::with_ids(config, IdGen::with_seed(seed))
    }

    fn with_ids(config: Config, ids: IdGen) -> Self {
        let consumer = consumer::ConsumerGroups::with_seed(config.consumer.clone(), ids.seed());
        Coordinator {
            consumer,
            consumer_incarnations: Default::default(),
            persist: Persistence::new(config.durable),
            config,
            groups: BTreeMap::new(),
            offsets: OffsetStore::default(),
            timers: Timers::default(),
            ids,
            imports: Imports::default(),
            loading: false,
            owned: None,
        }
    }

    /// Handles one call: fires timers already due, then answers the call now or parks it.
    /// Timers the call arms with a zero delay fire before this returns.
    pub fn handle(&mut self, now: Millis, call: Call, out: &mut Vec<Output>) {
        self.run_timers(now, out);
        retention::ensure_armed(&mut self.timers, &self.config, now);
        let Call {
            token,
            api_version,
            client_id,
            client_host,
            request,
        } = call;
        let meta = CallMeta {
            token,
            version: api_version,
            client_id,
            client_host,
        };
        self.dispatch(now, meta, request, out);
        self.settle(now, out);
    }

    /// Runs one request through its API (also used to replay calls parked on an import).
    pub(crate) fn dispatch(
        &mut self,
        now: Millis,
        meta: CallMeta,
        request: Request,
        out: &mut Vec<Output>,
    ) {
        if let Some(owned) = &self.owned {
            if named_groups(&request).iter().any(|g| !owned.contains(*g)) {
                let response = refusal(&request, meta.version, group::code::NOT_COORDINATOR);
                out.push(Output::Reply {
                    token: meta.token,
                    response,
                });
                return;
            }
        }
        if self.classic_call_for_consumer_group(now, &meta, &request, out) {
            return;
        }
        match request {
            Request::JoinGroup(r) => join::handle(self, now, meta, r, out),
            Request::SyncGroup(r) => sync::handle(self, now, meta, r, out),
            Request::Heartbeat(r) => heartbeat::handle(self, now, meta, r, out),
            Request::LeaveGroup(r) => leave::handle(self, now, meta, r, out),
            Request::OffsetCommit(r) => offsets::commit(self, now, meta, r, out),
            Request::OffsetFetch(r) => offsets::fetch(self, meta, r, out),
            Request::OffsetDelete(r) => offsets::delete(self, now, meta, r, out),
            Request::DescribeGroups(r) => describe::describe(self, meta, r, out),
            Request::ListGroups(r) => describe::list(self, meta, r, out),
            Request::DeleteGroups(r) => describe::delete(self, now, meta, r, out),
            Request::ConsumerGroupHeartbeat(r) => self.consumer_heartbeat(now, meta, r, out),
            Request::ConsumerGroupDescribe(r) => self.consumer_describe(meta, r, out),
        }
    }

    /// Applies the writes whose turn has come and fires timers that became due (zero delays).
    fn settle(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.apply_ready(now, out);
        self.run_timers(now, out);
        self.apply_ready(now, out);
    }

    /// Fires every timer due at `now`, in deadline order.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Output>) {
        self.run_timers(now, out);
        self.consumer_tick(now, out);
        self.apply_ready(now, out);
        retention::ensure_armed(&mut self.timers, &self.config, now);
    }

    /// The outcome of the write `id` (an `Output::Persist`): `Ok`, or the Kafka error code to
    /// answer with (COORDINATOR_NOT_AVAILABLE for a retriable store failure). What waited on the
    /// write happens now, in the group's write order. Unknown ids are ignored.
    pub fn persisted(
        &mut self,
        now: Millis,
        id: WriteId,
        outcome: Result<(), i16>,
        out: &mut Vec<Output>,
    ) {
        self.run_timers(now, out);
        if self.persist.settle(id, outcome) {
            self.settle(now, out);
        }
    }

    /// The gateway's committed offsets for the group of the import `id` (an `Output::Import`),
    /// or the error code to answer the calls waiting on it with.
    pub fn imported(
        &mut self,
        now: Millis,
        id: WriteId,
        result: Result<Vec<OffsetEntry>, i16>,
        out: &mut Vec<Output>,
    ) {
        self.run_timers(now, out);
        import::imported(self, now, id, result, out);
        self.settle(now, out);
    }

    /// From now until `load`, group APIs answer COORDINATOR_LOAD_IN_PROGRESS (Heartbeat 0).
    pub fn begin_loading(&mut self) {
        self.loading = true;
    }

    pub fn is_loading(&self) -> bool {
        self.loading
    }

    /// Restores what the store holds (§3.9, Kafka's `onLoaded`): a group with members comes back
    /// Stable with its generation, leader, protocol and assignments, and every member gets a
    /// session timer from `now`; a group without members comes back Empty. Ends loading.
    pub fn load(&mut self, now: Millis, groups: Vec<LoadedGroup>, out: &mut Vec<Output>) {
        load::load(self, now, groups, out);
        self.loading = false;
        self.settle(now, out);
        retention::ensure_armed(&mut self.timers, &self.config, now);
    }

    /// Several kelps share the groups: from now on this coordinator serves only the groups it
    /// `adopt`s, and answers NOT_COORDINATOR (16) for any other (README §5).
    pub fn shard(&mut self) {
        self.owned.get_or_insert_with(BTreeSet::new);
    }

    /// Whether this coordinator serves `group` (always, unless sharded).
    pub fn owns(&self, group: &str) -> bool {
        self.owned.as_ref().map_or(true, |o| o.contains(group))
    }

    /// The groups a sharded coordinator owns.
    pub fn owned(&self) -> impl Iterator<Item = &str> {
        self.owned.iter().flatten().map(String::as_str)
    }

    /// Takes ownership of `group` with what the store holds for it (`None`: nothing, a new group):
    /// restored like `load` does, so a Stable group whose members are alive does not rebalance
    /// because its coordinator moved; every member's session timer starts at `now`.
    pub fn adopt(
        &mut self,
        now: Millis,
        group: &str,
        loaded: Option<LoadedGroup>,
        out: &mut Vec<Output>,
    ) {
        self.run_timers(now, out);
        // Anything left from an earlier ownership is stale: the store is the truth now.
        self.drop_group(now, group, out);
        if let Some(owned) = self.owned.as_mut() {
            owned.insert(group.to_string());
        }
        if let Some(loaded) = loaded {
            load::load(self, now, vec![loaded], out);
        }
        self.settle(now, out);
        retention::ensure_armed(&mut self.timers, &self.config, now);
    }

    /// Gives `group` up (another kelp owns it now): parked JoinGroup/SyncGroup calls are answered
    /// NOT_COORDINATOR, its timers stop, its state leaves memory and its metric series go. Writes
    /// already issued still complete and answer their calls; nothing is written for it after this.
    pub fn release(&mut self, now: Millis, group: &str, out: &mut Vec<Output>) {
        self.run_timers(now, out);
        if let Some(owned) = self.owned.as_mut() {
            owned.remove(group);
        }
        if self.drop_group(now, group, out) {
            out.push(Output::Event(Event::GroupReleased {
                group: group.to_string(),
            }));
        }
        self.settle(now, out);
    }

    /// Removes a group's state, answering its parked calls NOT_COORDINATOR. True if it had any.
    fn drop_group(&mut self, now: Millis, group: &str, out: &mut Vec<Output>) -> bool {
        let had_offsets = !self.offsets.take_group(group).is_empty();
        let had_consumer = self.consumer_release(group);
        self.imports.forget(group);
        let (groups, _, mut cx) = self.parts(now, out);
        cx.timers.cancel_group(group);
        let Some(mut g) = groups.remove(group) else {
            return had_offsets || had_consumer;
        };
        for m in g.members.values_mut() {
            if let Some(w) = m.join_waiter.take() {
                let response = rebalance::join_error(w.version, group::code::NOT_COORDINATOR, "");
                cx.reply(w.token, Response::JoinGroup(response));
            }
            if let Some(w) = m.sync_waiter.take() {
                let response = rebalance::sync_response(
                    None,
                    group::code::NOT_COORDINATOR,
                    Default::default(),
                );
                cx.reply(w.token, Response::SyncGroup(response));
            }
        }
        true
    }

    /// Writes issued and not yet applied (for the shell's metrics and tests).
    pub fn writes_in_flight(&self) -> usize {
        self.persist.total_in_flight()
    }

    /// The earliest armed timer; call `tick` when the clock reaches it.
    pub fn next_deadline(&self) -> Option<Millis> {
        let classic = self.timers.next_deadline();
        let consumer = self.consumer.next_deadline();
        classic.into_iter().chain(consumer).min()
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// Applies settled writes in each group's issue order (bounded per call).
    fn apply_ready(&mut self, now: Millis, out: &mut Vec<Output>) {
        for _ in 0..MAX_TIMERS_PER_PASS {
            let Some(ready) = self.persist.take_ready() else {
                return;
            };
            persist::apply(self, now, ready, out);
        }
    }

    /// Fires due timers in deadline order; each takes effect at its own deadline, so a late tick
    /// behaves like an on-time one. Re-armed timers always move forward, and a pass is bounded.
    fn run_timers(&mut self, now: Millis, out: &mut Vec<Output>) {
        for _ in 0..MAX_TIMERS_PER_PASS {
            let Some((at, key, action)) = self.timers.pop_due(now) else {
                return;
            };
            if let timers::TimerAction::Cleanup = action {
                retention::cleanup(self, at, out);
            } else {
                let (groups, _, mut cx) = self.parts(at, out);
                rebalance::fire(groups, &mut cx, key, action);
            }
        }
    }

    /// Splits the coordinator into the group map, the offset store and a context for transitions.
    pub(crate) fn parts<'a>(
        &'a mut self,
        now: Millis,
        out: &'a mut Vec<Output>,
    ) -> (
        &'a mut BTreeMap<String, Group>,
        &'a mut OffsetStore,
        Ctx<'a>,
    ) {
        let cx = Ctx {
            now,
            config: &self.config,
            timers: &mut self.timers,
            ids: &mut self.ids,
            persist: &mut self.persist,
            out,
        };
        (&mut self.groups, &mut self.offsets, cx)
    }
}
