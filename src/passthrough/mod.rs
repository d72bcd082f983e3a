//! Per-group routing of group requests and what kelp does with passthrough traffic: `plan` decodes a
//! group request once, asks `route::group_route` where it goes under the rules in effect, and
//! returns either kelp's answer (the coordinator's, for local groups) or a forward plan with a
//! `Post` step that reads the gateway's response as it passes (`observe.rs`: per-group metrics),
//! hands a group's offsets back to the gateway (`handback.rs`), or merges ListGroups (`split.rs`).
//! A request the gateway cannot take at the version this connection negotiated closes the
//! connection, so the client reconnects and negotiates again (after a reload to passthrough).

pub(crate) mod gateway;
pub mod handback;
pub mod observe;
mod split;
pub mod takeover;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponse;
use kafka_protocol::messages::ApiKey;

use crate::backend::Backend;
use crate::config::GroupMode;
use crate::coordinator;
use crate::coordinator::GroupService;
use crate::group::Request;
use crate::metrics::Metrics;
use crate::modes::Modes;
use crate::modes::Snapshot;
use crate::peers::Peers;
use crate::peers::Placement;
use crate::protocol::LocalReply;
use crate::protocol::{encode_response, error, FrameError, Peek};
use crate::route::Origin;
use crate::route::{group_ids, group_route, GroupRoute};
use crate::store::Store;

pub use handback::Handbacks;
pub use observe::{Asked, Observed, Observer};
pub use takeover::TakeOvers;

/// What routing a group request needs: kelp's coordinator, the gateway, the mode rules, the state
/// of passthrough groups and the other kelps. The server holds one and hands it to `plan`.
pub struct Routing {
    pub groups: GroupService,
    pub backend: Arc<Backend>,
    pub modes: Arc<Modes>,
    pub passthrough: Arc<Passthrough>,
    /// The other kelps (`--peers`/`--peer-dns`), if any.
    pub peers: Option<Arc<Peers>>,
}

/// kelp's state for groups moving between the coordinators: what it observes of passthrough
/// groups, what it still has to hand back to the gateway, and the take-overs from it.
pub struct Passthrough {
    pub observer: Observer,
    pub handbacks: Handbacks,
    pub takeovers: Arc<TakeOvers>,
}

impl Passthrough {
    /// `store`: where the gateway's offsets are read from (none: nothing is imported);
    /// `migrating`: kelp runs with a config file, so groups may change mode.
    pub fn new(
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn Store>>,
        migrating: bool,
    ) -> Passthrough {
        Passthrough {
            observer: Observer::new(metrics),
            handbacks: Handbacks::default(),
            takeovers: Arc::new(TakeOvers::new(store, migrating)),
        }
    }

    /// After a reload: hand back groups that left kelp's coordinator; forget what was observed of
    /// groups that left the gateway's; take over again the groups that come back from it.
    pub async fn on_reload(
        &self,
        groups: &coordinator::GroupService,
        old: &Snapshot,
        new: &Snapshot,
    ) {
        self.observer
            .retain(|g| new.mode_of(g) == GroupMode::Passthrough);
        self.takeovers
            .retain(|g| new.mode_of(g) == GroupMode::Local);
        self.handbacks.on_reload(groups, old, new).await;
    }

    /// At start, with a config file: groups kelp served when it stopped that the rules now pass
    /// through are handed back.
    pub async fn on_start(&self, groups: &coordinator::GroupService, rules: &Snapshot) {
        self.handbacks.on_start(groups, rules).await;
    }
}

/// What the connection does with one group request.
pub enum Plan {
    /// Fill the request's slot with this answer (kelp's coordinator, or kelp itself).
    Local(LocalReply),
    /// Forward the frame untouched; run the `Post` step, if any, on the gateway's response.
    Forward(Option<Box<Post>>),
    /// Close the connection: the gateway does not serve this version, and the client must
    /// negotiate versions again (see docs/MIGRATION.md).
    Renegotiate,
    /// Forward the frame untouched to the kelp that owns the group (`peers`); `request` names
    /// the group, for the next owner if that kelp does not answer.
    Peer { owner: String, request: Request },
    /// A request spanning owners: send each part to its owner and merge the answers
    /// (`peers::scatter`).
    Scatter {
        request: Request,
        client_id: String,
        parts: Vec<crate::peers::scatter::Part>,
    },
}

/// A step run on the gateway's response to a passthrough group request.
pub struct Post {
    group: String,
    api: ApiKey,
    version: i16,
    kind: Kind,
}

enum Kind {
    Observe(Asked),
    /// A SyncGroup: observed, and the group's hand-back completed if one is pending.
    Sync {
        generation: i32,
        member_id: String,
    },
    /// An OffsetFetch of a group being handed back.
    Fetch,
    /// ListGroups while both modes exist.
    List(kafka_protocol::messages::ListGroupsRequest),
}

/// The response after the `Post` step: now, or later (the slot waits).
pub enum Finished {
    Now(Bytes),
    Later(LocalReply),
}

impl Post {
    /// Runs on the gateway's response `frame` (length prefix included).
    pub fn finish(self, shared: &Arc<Routing>, frame: Bytes, client_host: &str) -> Finished {
        let pt = &shared.passthrough;
        match self.kind {
            Kind::Observe(asked) => {
                pt.observer.response(
                    &self.group,
                    &asked,
                    self.api,
                    self.version,
                    frame.slice(4..),
                );
                Finished::Now(frame)
            }
            Kind::Sync {
                generation,
                member_id,
            } => {
                let error = pt.observer.response(
                    &self.group,
                    &Asked::Sync,
                    self.api,
                    self.version,
                    frame.slice(4..),
                );
                if error != Some(0) || pt.handbacks.get(&self.group).is_none() {
                    return Finished::Now(frame);
                }
                let shared = shared.clone();
                Finished::Later(Box::pin(async move {
                    shared
                        .passthrough
                        .handbacks
                        .complete(&shared.backend, &self.group, generation, &member_id)
                        .await;
                    Some(frame)
                }))
            }
            Kind::Fetch => Finished::Now(
                pt.handbacks
                    .raise_fetch(&self.group, self.version, &frame)
                    .unwrap_or(frame),
            ),
            Kind::List(request) => Finished::Later(split::merge_list(
                &shared.groups,
                shared.modes.clone(),
                self.version,
                request,
                client_host,
                frame,
            )),
        }
    }
}

/// Whether the gateway serves `api` at `version` (unknown ranges: assume it does).
fn gateway_serves(shared: &Routing, api: ApiKey, version: i16) -> bool {
    let ranges = shared.backend.ranges();
    if ranges.is_empty() {
        return true;
    }
    ranges
        .get(&(api as i16))
        .is_some_and(|r| r.min <= version && version <= r.max)
}

/// Decides, for one group request, between kelp's coordinator and the gateway (see the module
/// docs). `body` is the frame without its length prefix.
pub fn plan(
    shared: &Arc<Routing>,
    peek: &Peek,
    body: Bytes,
    client_host: &str,
    origin: Origin,
) -> Result<Plan, FrameError> {
    let (client_id, request) = coordinator::decode(peek, body)?;
    plan_decoded(shared, peek, client_id, request, client_host, origin)
}

/// A request of Kafka's consumer group protocol (KIP-848).
fn is_consumer_protocol(request: &Request) -> bool {
    matches!(
        request,
        Request::ConsumerGroupHeartbeat(_) | Request::ConsumerGroupDescribe(_)
    )
}

/// The gateway has no consumer group protocol (API 68/69), so a passthrough group cannot use it:
/// kelp answers UNSUPPORTED_VERSION (35) saying why, which librdkafka reports as the broker not
/// supporting `group.protocol=consumer` (such groups use the classic protocol, or move to kelp's
/// coordinator first: docs/MIGRATION.md).
fn consumer_protocol_refused(peek: Peek, request: Request) -> LocalReply {
    let mut response =
        crate::group::refusal(&request, peek.api_version, error::UNSUPPORTED_VERSION);
    let why = "the group is passed through to the SeaweedFS gateway, which has no consumer group \
               protocol (KIP-848): use group.protocol=classic or serve the group locally";
    match &mut response {
        crate::group::Response::ConsumerGroupHeartbeat(r) => {
            r.error_message = Some(kafka_protocol::protocol::StrBytes::from_static_str(why));
        }
        crate::group::Response::ConsumerGroupDescribe(r) => {
            for g in &mut r.groups {
                g.error_message = Some(kafka_protocol::protocol::StrBytes::from_static_str(why));
            }
        }
        _ => {}
    }
    Box::pin(async move { crate::coordinator::encode(&peek, &response).ok() })
}

/// `plan` for a request already decoded.
fn plan_decoded(
    shared: &Arc<Routing>,
    peek: &Peek,
    client_id: String,
    request: Request,
    client_host: &str,
    origin: Origin,
) -> Result<Plan, FrameError> {
    // Several kelps: the owner decides, and its mode rules apply (README §5).
    if let Some(peers) = &shared.peers {
        let view = peers.view();
        let placement = crate::peers::place(peers, &request);
        let list_all = matches!(request, Request::ListGroups(_)) && view.live.len() > 1;
        if origin == Origin::Client && (list_all || matches!(placement, Placement::Mixed(_))) {
            let me = peers.me();
            let owner_of = |g: &str| match view.owner(me, g) {
                crate::peers::Owner::Me => me.to_string(),
                crate::peers::Owner::Peer(p) => p,
            };
            let parts = crate::peers::scatter::split(&request, owner_of, &view.live);
            return Ok(Plan::Scatter {
                request,
                client_id,
                parts,
            });
        }
        match placement {
            Placement::Here => {}
            Placement::One(owner) if origin == Origin::Client => {
                return Ok(Plan::Peer { owner, request })
            }
            // A client's batch spanning owners was scattered above.
            Placement::One(_) | Placement::Mixed(_) => {
                return Ok(Plan::Local(until_owned(
                    shared.clone(),
                    *peek,
                    client_id,
                    request,
                    client_host.to_string(),
                )));
            }
        }
    }
    let rules = shared.modes.snapshot();
    let route = group_route(&request, &rules);
    let to_gateway = matches!(route, GroupRoute::Passthrough | GroupRoute::ListBoth);
    if to_gateway && is_consumer_protocol(&request) {
        return Ok(Plan::Local(consumer_protocol_refused(*peek, request)));
    }
    if to_gateway && !gateway_serves(shared, peek.api_key, peek.api_version) {
        return Ok(Plan::Renegotiate);
    }
    match route {
        GroupRoute::Local => {
            let ids = group_ids(&request);
            let group = (ids.len() == 1).then(|| ids[0].to_string());
            Ok(Plan::Local(shared.passthrough.takeovers.submit(
                &shared.groups,
                group.as_deref(),
                peek,
                client_id,
                client_host,
                request,
            )))
        }
        GroupRoute::Split(passthrough) => {
            let ids = group_ids(&request)
                .into_iter()
                .map(str::to_string)
                .collect();
            Ok(Plan::Local(split::answer_split(
                &shared.groups,
                peek,
                client_id,
                client_host,
                request,
                ids,
                passthrough,
            )))
        }
        GroupRoute::ListBoth => {
            let Request::ListGroups(r) = request else {
                return Ok(Plan::Forward(None));
            };
            Ok(Plan::Forward(Some(post(
                String::new(),
                peek,
                Kind::List(r),
            ))))
        }
        GroupRoute::Passthrough => passthrough_plan(shared, peek, request),
    }
}

fn post(group: String, peek: &Peek, kind: Kind) -> Box<Post> {
    Box::new(Post {
        group,
        api: peek.api_key,
        version: peek.api_version,
        kind,
    })
}

fn passthrough_plan(
    shared: &Arc<Routing>,
    peek: &Peek,
    request: Request,
) -> Result<Plan, FrameError> {
    let pt = &shared.passthrough;
    let plan = match request {
        Request::JoinGroup(r) => {
            let group = r.group_id.to_string();
            pt.observer.join_request(&group, r.member_id.as_str());
            Some(post(group, peek, Kind::Observe(Asked::Join)))
        }
        Request::SyncGroup(r) => Some(post(
            r.group_id.to_string(),
            peek,
            Kind::Sync {
                generation: r.generation_id,
                member_id: r.member_id.to_string(),
            },
        )),
        Request::Heartbeat(r) => Some(post(
            r.group_id.to_string(),
            peek,
            Kind::Observe(Asked::Heartbeat),
        )),
        Request::LeaveGroup(r) => {
            let leaving = r.members.len().max(1);
            Some(post(
                r.group_id.to_string(),
                peek,
                Kind::Observe(Asked::Leave { leaving }),
            ))
        }
        Request::OffsetCommit(r) => {
            let group = r.group_id.to_string();
            let named = r.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.as_str(), p.partition_index))
            });
            pt.observer.commit_request(&group, named);
            Some(post(group, peek, Kind::Observe(Asked::Commit)))
        }
        Request::OffsetFetch(r) if r.groups.is_empty() && r.topics.is_none() => {
            // Gateway 4.48 runs out of memory on an all-topics OffsetFetch: never forward one.
            return Ok(Plan::Local(refuse_all_topics_fetch(peek)));
        }
        Request::OffsetFetch(r) if r.groups.is_empty() => {
            let group = r.group_id.to_string();
            pt.handbacks
                .get(&group)
                .map(|_| post(group, peek, Kind::Fetch))
        }
        _ => None,
    };
    Ok(Plan::Forward(plan))
}

/// A request on the peer listener for groups this kelp's view gives to another kelp: the sender's
/// view says they are this kelp's, so one of the two views is behind (a peer just came or went).
/// The request waits for this kelp's view to agree, up to `Peers::failover_window`, and is then
/// served as any other; otherwise (or if the group is passed through to the gateway) it is
/// answered NOT_COORDINATOR. Never forwarded again.
fn until_owned(
    shared: Arc<Routing>,
    peek: Peek,
    client_id: String,
    request: Request,
    client_host: String,
) -> LocalReply {
    Box::pin(async move {
        let peers = shared.peers.as_ref()?;
        let deadline = tokio::time::Instant::now() + peers.failover_window();
        let mut views = peers.subscribe();
        while crate::peers::place(peers, &request) != Placement::Here {
            match tokio::time::timeout_at(deadline, views.changed()).await {
                Ok(Ok(())) => continue,
                _ => return refuse(&peek, &request, error::NOT_COORDINATOR).await,
            }
        }
        let plan = plan_decoded(
            &shared,
            &peek,
            client_id,
            request.clone(),
            &client_host,
            Origin::Peer,
        );
        match plan {
            Ok(Plan::Local(reply)) => reply.await,
            _ => refuse(&peek, &request, error::NOT_COORDINATOR).await,
        }
    })
}

/// A response refusing all of `request` with `code` (NOT_COORDINATOR for another kelp's group).
pub fn refuse(peek: &Peek, request: &Request, code: i16) -> LocalReply {
    let response = crate::group::refusal(request, peek.api_version, code);
    let frame = coordinator::encode(peek, &response).ok();
    Box::pin(std::future::ready(frame))
}

/// INVALID_REQUEST for an OffsetFetch of all topics of a passthrough group.
fn refuse_all_topics_fetch(peek: &Peek) -> LocalReply {
    let body = OffsetFetchResponse::default().with_error_code(error::INVALID_REQUEST);
    let frame = encode_response(
        ApiKey::OffsetFetch,
        peek.api_version,
        peek.correlation_id,
        &body,
    )
    .ok();
    tracing::info!(
        "refused an all-topics OffsetFetch for a passthrough group: the gateway cannot serve it (name the topics)"
    );
    Box::pin(std::future::ready(frame))
}
