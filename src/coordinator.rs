//! The async shell around the group state machine: one actor task owns `group::Coordinator`, feeds it
//! requests and timer ticks with the shell's clock, and routes each reply to the response slot that
//! waits for it. A parked JoinGroup or SyncGroup holds only its own slot; the connection goes on.
//! With a store (`spawn_with_store`), the actor loads every group at startup, performs the
//! coordinator's writes and imports (`durable.rs`) and reports their outcomes back to it.

mod durable;
mod shard;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::{mpsc, oneshot};

use crate::group::{self, Call, Coordinator, Output, Request, Response};
use crate::metrics::Metrics;
use crate::protocol::{decode_request, encode_response, FrameError, LocalReply, Peek};
use crate::store::Store;
use durable::{Clock, Done, Inflight, Outage};
use shard::Shard;

type Envelope = (Call, oneshot::Sender<Response>);

/// Where consumer groups (KIP-848) get their topic metadata: the latest table (ids, names,
/// partition counts) and a way to ask for a refresh soon (a member subscribed to a topic the
/// table lacks).
#[derive(Clone)]
pub struct TopicFeed {
    pub updates: tokio::sync::watch::Receiver<Arc<group::consumer::Topics>>,
    pub refresh: Arc<dyn Fn() + Send + Sync>,
}

/// What a fenced (sharded) actor needs besides the store.
struct Fencing {
    peers: Arc<crate::peers::Peers>,
    leases: Arc<crate::lease::Leases>,
    wait: std::time::Duration,
}

/// What the coordinator serves now, on its clock (for the lag poller and `GET /groups`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The actor's clock (Unix-epoch milliseconds), to age commit timestamps against.
    pub now: group::Millis,
    pub groups: Vec<group::GroupView>,
}

/// Handle to the coordinator actor; cheap to clone.
#[derive(Clone)]
pub struct GroupService {
    tx: mpsc::UnboundedSender<Envelope>,
    next_token: Arc<AtomicU64>,
    /// Requests for a `Snapshot`, answered by the actor between calls.
    views: mpsc::UnboundedSender<oneshot::Sender<Snapshot>>,
    /// The topic metadata feed, handed to the actor once (`feed_topics`).
    feeds: mpsc::UnboundedSender<TopicFeed>,
}

impl GroupService {
    /// Starts the actor on the current runtime, offsets and groups in memory only.
    pub fn spawn(config: group::Config, metrics: Arc<Metrics>) -> Self {
        Self::spawn_with_store(config, metrics, None)
    }

    /// Starts the actor on the current runtime. With a store, every group is loaded from it
    /// first (requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS), and commits and group records
    /// are written to it before they are acknowledged.
    pub fn spawn_with_store(
        mut config: group::Config,
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn Store>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (views, views_rx) = mpsc::unbounded_channel();
        let (feeds, feeds_rx) = mpsc::unbounded_channel();
        config.durable = store.is_some();
        let coordinator = Coordinator::new(config);
        tokio::spawn(run(
            coordinator,
            (rx, views_rx, feeds_rx),
            metrics,
            store,
            None,
        ));
        GroupService {
            tx,
            next_token: Arc::new(AtomicU64::new(1)),
            views,
            feeds,
        }
    }

    /// Starts the actor for a kelp whose groups are fenced by ownership leases (`--filer`, with
    /// or without peers): it serves only the groups whose bucket lease this kelp holds, each
    /// claimed and loaded from `store` when its lease comes or on its first request, and
    /// releases them when the lease ends (`shard.rs`). A call waits at most `wait` for its
    /// groups' lease and load.
    pub fn spawn_sharded(
        mut config: group::Config,
        metrics: Arc<Metrics>,
        store: Arc<dyn Store>,
        peers: Arc<crate::peers::Peers>,
        leases: Arc<crate::lease::Leases>,
        wait: std::time::Duration,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (views, views_rx) = mpsc::unbounded_channel();
        let (feeds, feeds_rx) = mpsc::unbounded_channel();
        config.durable = true;
        let mut coordinator = Coordinator::new(config);
        coordinator.shard();
        let fencing = Some(Fencing {
            peers,
            leases,
            wait,
        });
        tokio::spawn(run(
            coordinator,
            (rx, views_rx, feeds_rx),
            metrics,
            Some(store),
            fencing,
        ));
        GroupService {
            tx,
            next_token: Arc::new(AtomicU64::new(1)),
            views,
            feeds,
        }
    }

    /// Gives consumer groups their topic metadata: applied now and at every update.
    pub fn feed_topics(&self, feed: TopicFeed) {
        let _ = self.feeds.send(feed);
    }

    /// Every group the coordinator serves now (`None` if the actor is gone). Read-only: it never
    /// loads, adopts or imports a group.
    pub async fn snapshot(&self) -> Option<Snapshot> {
        let (tx, rx) = oneshot::channel();
        self.views.send(tx).ok()?;
        rx.await.ok()
    }

    /// Sends a decoded request and waits for its response (`None` if the actor is gone).
    pub async fn call(
        &self,
        api_version: i16,
        client_id: &str,
        client_host: &str,
        request: Request,
    ) -> Option<Response> {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            token,
            api_version,
            client_id: client_id.to_string(),
            client_host: client_host.to_string(),
            request,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx.send((call, reply_tx)).ok()?;
        reply_rx.await.ok()
    }

    /// Decodes a group request and hands it to the coordinator. The reply resolves to the encoded
    /// response frame, or `None` if the coordinator is gone (the connection is then closed).
    pub fn submit(
        &self,
        peek: &Peek,
        frame: Bytes,
        client_host: &str,
    ) -> Result<LocalReply, FrameError> {
        let (client_id, request) = decode(peek, frame)?;
        Ok(self.submit_decoded(peek, client_id, client_host, request))
    }

    /// Hands a group request the caller already decoded (with `decode`) to the coordinator; the
    /// reply resolves like `submit`'s.
    pub fn submit_decoded(
        &self,
        peek: &Peek,
        client_id: String,
        client_host: &str,
        request: Request,
    ) -> LocalReply {
        let reply = self.send_decoded(peek.api_version, client_id, client_host, request);
        let peek = *peek;
        Box::pin(async move {
            let response = reply.await?;
            match encode(&peek, &response) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    tracing::error!(api = ?peek.api_key, version = peek.api_version, error = %e, "cannot encode a coordinator response");
                    None
                }
            }
        })
    }

    /// Sends one decoded request now (so a connection's requests keep their order), answered as
    /// if it came at `api_version`; resolves to the response body (`None` if the coordinator is
    /// gone). For clients' requests and kelp's own (mode hand-overs, merged answers).
    pub fn send_decoded(
        &self,
        api_version: i16,
        client_id: String,
        client_host: &str,
        request: Request,
    ) -> impl std::future::Future<Output = Option<Response>> + Send + 'static {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            token,
            api_version,
            client_id,
            client_host: client_host.to_string(),
            request,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let _ = self.tx.send((call, reply_tx));
        async move { reply_rx.await.ok() }
    }
}

/// Decodes the header's client id and the body of a group request.
pub fn decode(peek: &Peek, frame: Bytes) -> Result<(String, Request), FrameError> {
    macro_rules! body {
        ($variant:ident) => {{
            let (header, body) = decode_request(frame, peek)?;
            (header, Request::$variant(body))
        }};
    }
    let (header, request) = match peek.api_key {
        ApiKey::JoinGroup => body!(JoinGroup),
        ApiKey::SyncGroup => body!(SyncGroup),
        ApiKey::Heartbeat => body!(Heartbeat),
        ApiKey::LeaveGroup => body!(LeaveGroup),
        ApiKey::OffsetCommit => body!(OffsetCommit),
        ApiKey::OffsetFetch => body!(OffsetFetch),
        ApiKey::OffsetDelete => body!(OffsetDelete),
        ApiKey::DescribeGroups => body!(DescribeGroups),
        ApiKey::ListGroups => body!(ListGroups),
        ApiKey::DeleteGroups => body!(DeleteGroups),
        ApiKey::ConsumerGroupHeartbeat => body!(ConsumerGroupHeartbeat),
        ApiKey::ConsumerGroupDescribe => body!(ConsumerGroupDescribe),
        other => return Err(FrameError::UnsupportedApi(other)),
    };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    Ok((client_id, request))
}

/// Encodes a group request frame at `peek`'s version and correlation id (kelp's own requests:
/// the parts of a batch split between peers).
pub fn encode_request(peek: &Peek, client_id: &str, request: &Request) -> anyhow::Result<Bytes> {
    use crate::protocol::encode_request as frame;
    let (api, version, corr) = (peek.api_key, peek.api_version, peek.correlation_id);
    let client = Some(client_id);
    match request {
        Request::JoinGroup(r) => frame(api, version, corr, client, r),
        Request::SyncGroup(r) => frame(api, version, corr, client, r),
        Request::Heartbeat(r) => frame(api, version, corr, client, r),
        Request::LeaveGroup(r) => frame(api, version, corr, client, r),
        Request::OffsetCommit(r) => frame(api, version, corr, client, r),
        Request::OffsetFetch(r) => frame(api, version, corr, client, r),
        Request::OffsetDelete(r) => frame(api, version, corr, client, r),
        Request::DescribeGroups(r) => frame(api, version, corr, client, r),
        Request::ListGroups(r) => frame(api, version, corr, client, r),
        Request::DeleteGroups(r) => frame(api, version, corr, client, r),
        Request::ConsumerGroupHeartbeat(r) => frame(api, version, corr, client, r),
        Request::ConsumerGroupDescribe(r) => frame(api, version, corr, client, r),
    }
}

/// Encodes a coordinator response at the request's version.
pub fn encode(peek: &Peek, response: &Response) -> anyhow::Result<Bytes> {
    let (api, version, corr) = (peek.api_key, peek.api_version, peek.correlation_id);
    match response {
        Response::JoinGroup(r) => encode_response(api, version, corr, r),
        Response::SyncGroup(r) => encode_response(api, version, corr, r),
        Response::Heartbeat(r) => encode_response(api, version, corr, r),
        Response::LeaveGroup(r) => encode_response(api, version, corr, r),
        Response::OffsetCommit(r) => encode_response(api, version, corr, r),
        Response::OffsetFetch(r) => encode_response(api, version, corr, r),
        Response::OffsetDelete(r) => encode_response(api, version, corr, r),
        Response::DescribeGroups(r) => encode_response(api, version, corr, r),
        Response::ListGroups(r) => encode_response(api, version, corr, r),
        Response::DeleteGroups(r) => encode_response(api, version, corr, r),
        Response::ConsumerGroupHeartbeat(r) => encode_response(api, version, corr, r),
        Response::ConsumerGroupDescribe(r) => encode_response(api, version, corr, r),
    }
}

/// The actor loop: requests, timers and store outcomes in; replies, metric events and store
/// operations out.
async fn run(
    mut coordinator: Coordinator,
    (mut rx, mut views_rx, mut feeds_rx): (
        mpsc::UnboundedReceiver<Envelope>,
        mpsc::UnboundedReceiver<oneshot::Sender<Snapshot>>,
        mpsc::UnboundedReceiver<TopicFeed>,
    ),
    metrics: Arc<Metrics>,
    store: Option<Arc<dyn Store>>,
    fencing: Option<Fencing>,
) {
    let clock = Clock::new();
    let mut waiting: HashMap<group::Token, oneshot::Sender<Response>> = HashMap::new();
    let mut out = Vec::new();
    // Operations in flight borrow the store, which this task owns until it ends.
    let mut inflight = store.as_deref().map(Inflight::new);
    let mut outage = Outage::default();
    // Fenced, groups are served under their bucket's lease; otherwise all load at startup.
    let mut shard = match (fencing, store.as_deref()) {
        (Some(f), Some(s)) => Some(Shard::new(f.peers, f.leases, s, metrics.clone(), f.wait)),
        _ => None,
    };
    let mut lease_changes = shard.as_ref().map(|sh| sh.leases().subscribe());
    let mut load = store
        .as_deref()
        .filter(|_| shard.is_none())
        .map(|s| durable::load_after(s, std::time::Duration::ZERO));
    let mut feed: Option<TopicFeed> = None;
    let mut load_attempt = 1u32;
    let load_started = Instant::now();
    if load.is_some() {
        coordinator.begin_loading();
    }
    loop {
        let deadline = coordinator
            .next_deadline()
            .map(|at| tokio::time::Instant::from_std(clock.instant(at)));
        let shard_deadline = shard
            .as_ref()
            .and_then(|sh| sh.next_deadline(Instant::now()))
            .map(tokio::time::Instant::from_std);
        let busy = inflight.as_ref().is_some_and(|i| !i.is_empty());
        tokio::select! {
            envelope = rx.recv() => {
                let Some((call, reply)) = envelope else { return };
                tracing::trace!(token = call.token, version = call.api_version, request = ?call.request, "group call");
                waiting.insert(call.token, reply);
                accept(&mut coordinator, shard.as_mut(), &clock, call, &mut out);
                // Take whatever else is queued before answering, to batch wake-ups.
                for _ in 0..256 {
                    let Ok((call, reply)) = rx.try_recv() else { break };
                    tracing::trace!(token = call.token, version = call.api_version, request = ?call.request, "group call");
                    waiting.insert(call.token, reply);
                    accept(&mut coordinator, shard.as_mut(), &clock, call, &mut out);
                }
            }
            done = next_shard_work(&mut shard), if shard.as_ref().is_some_and(Shard::is_busy) => {
                if let Some(sh) = shard.as_mut() {
                    sh.reconcile(&mut coordinator, &clock, Instant::now(), &mut out);
                    for call in sh.finished(&mut coordinator, &clock, done, &mut out) {
                        coordinator.handle(clock.now(), call, &mut out);
                    }
                }
            }
            Some(()) = lease_change(&mut lease_changes), if lease_changes.is_some() => {
                if let Some(sh) = shard.as_mut() {
                    sh.reconcile(&mut coordinator, &clock, Instant::now(), &mut out);
                }
            }
            Some(f) = feeds_rx.recv() => {
                let topics = f.updates.borrow().as_ref().clone();
                coordinator.set_topics(clock.now(), topics, &mut out);
                feed = Some(f);
            }
            Some(topics) = topics_changed(&mut feed), if feed.is_some() => {
                coordinator.set_topics(clock.now(), topics, &mut out);
            }
            Some(asked) = views_rx.recv() => {
                let _ = asked.send(Snapshot { now: clock.now(), groups: coordinator.views() });
            }
            _ = sleep_until(shard_deadline), if shard_deadline.is_some() => {
                if let Some(sh) = shard.as_mut() {
                    sh.reconcile(&mut coordinator, &clock, Instant::now(), &mut out);
                }
            }
            _ = sleep_until(deadline) => {
                // Groups whose lease ended go before their timers could answer anything.
                if let Some(sh) = shard.as_mut() {
                    sh.reconcile(&mut coordinator, &clock, Instant::now(), &mut out);
                }
                coordinator.tick(clock.now(), &mut out);
            }
            done = next_done(&mut inflight), if busy => {
                report(&mut coordinator, shard.as_ref(), &clock, &mut outage, &metrics, done, &mut out);
                for _ in 0..256 {
                    let Some(done) = inflight.as_mut().and_then(Inflight::ready) else { break };
                    report(&mut coordinator, shard.as_ref(), &clock, &mut outage, &metrics, done, &mut out);
                }
            }
            loaded = next_load(&mut load), if load.is_some() => {
                load = None;
                match loaded {
                    Ok(l) => {
                        let groups = l.groups.len();
                        coordinator.load(clock.now(), l.groups, &mut out);
                        tracing::info!(
                            groups,
                            with_members = l.with_members,
                            offsets = l.offsets,
                            attempts = load_attempt,
                            took_ms = load_started.elapsed().as_millis() as u64,
                            "loaded the groups and offsets kept in the store"
                        );
                    }
                    Err(e) if load_attempt < durable::LOAD_ATTEMPTS => {
                        load_attempt += 1;
                        let backoff = durable::load_backoff(load_attempt);
                        tracing::warn!(error = %e, attempt = load_attempt, retry_in_ms = backoff.as_millis() as u64, "cannot load the groups from the store yet; group requests get COORDINATOR_LOAD_IN_PROGRESS");
                        load = store.as_deref().map(|s| durable::load_after(s, backoff));
                    }
                    Err(e) => tracing::error!(error = %e, attempts = load_attempt, "giving up loading the groups from the store; group requests keep getting COORDINATOR_LOAD_IN_PROGRESS until kelp restarts"),
                }
            }
        }
        for output in out.drain(..) {
            match output {
                Output::Reply { token, response } => {
                    tracing::trace!(token, response = ?response, "group reply");
                    let (api, error) = response_error(&response);
                    if let Some(sh) = shard.as_mut() {
                        let refused = matches!(
                            error,
                            durable::COORDINATOR_NOT_AVAILABLE
                                | crate::protocol::error::NOT_COORDINATOR
                        );
                        sh.replied(token, refused, Instant::now());
                    }
                    if let Response::ConsumerGroupHeartbeat(r) = &response {
                        // The common answer's label without building its name each time.
                        let name = match r.error_code {
                            0 => std::borrow::Cow::Borrowed("ok"),
                            code => crate::metrics::error_name(code).into(),
                        };
                        metrics
                            .consumer_heartbeats
                            .with_label_values(&[&name])
                            .inc();
                    }
                    if error != 0 {
                        metrics
                            .request_errors
                            .with_label_values(&[api, &crate::metrics::error_name(error)])
                            .inc();
                    }
                    if let Some(reply) = waiting.remove(&token) {
                        let _ = reply.send(response);
                    }
                }
                // A released group's late events (a write answered after the release) must not
                // bring its series back on a kelp that no longer coordinates it.
                Output::Event(event)
                    if shard.is_some()
                        && !coordinator.owns(event.group())
                        && !matches!(
                            event,
                            group::Event::GroupReleased { .. } | group::Event::GroupDeleted { .. }
                        ) => {}
                Output::Event(event) => metrics.group_event(&event),
                Output::Persist(p) => match inflight.as_mut() {
                    Some(i) => {
                        let term = shard.as_ref().map(|sh| sh.term_of(&p.group));
                        i.persist(p, term)
                    }
                    // Not emitted without a store; should it be, the write is lost, not awaited.
                    None => tracing::error!(group = %p.group, "a write without a store"),
                },
                Output::Import { id, group } => match inflight.as_mut() {
                    Some(i) => i.import(id, group),
                    None => tracing::error!(group = %group, "an import without a store"),
                },
                Output::RefreshTopics => {
                    if let Some(f) = &feed {
                        (f.refresh)();
                    }
                }
            }
        }
    }
}

/// Runs a call now, or (fenced) once its groups' leases and loads allow.
fn accept(
    coordinator: &mut Coordinator,
    shard: Option<&mut Shard<'_>>,
    clock: &Clock,
    call: Call,
    out: &mut Vec<Output>,
) {
    let call = match shard {
        Some(sh) => {
            let now = Instant::now();
            sh.reconcile_if_due(coordinator, clock, now, out);
            match sh.admit(coordinator, call, now) {
                Ok(call) => call,
                Err(refusal) => {
                    out.extend(refusal);
                    None
                }
            }
        }
        None => Some(call),
    };
    if let Some(call) = call {
        coordinator.handle(clock.now(), call, out);
    }
}

async fn next_shard_work(shard: &mut Option<Shard<'_>>) -> shard::Finished {
    match shard {
        Some(sh) => sh.next().await,
        None => std::future::pending().await,
    }
}

/// The next topic table (`None` once the feed is gone).
async fn topics_changed(feed: &mut Option<TopicFeed>) -> Option<group::consumer::Topics> {
    match feed {
        Some(f) => {
            f.updates.changed().await.ok()?;
            let topics = f.updates.borrow_and_update().as_ref().clone();
            Some(topics)
        }
        None => std::future::pending().await,
    }
}

/// The next lease publication (`None` once the lease task is gone).
async fn lease_change(changes: &mut Option<tokio::sync::watch::Receiver<u64>>) -> Option<()> {
    match changes {
        Some(rx) => rx.changed().await.ok(),
        None => std::future::pending().await,
    }
}

/// Hands a finished store operation back to the coordinator.
///
/// Fenced, a write is acknowledged only if the lease it was issued under is still held: once a
/// lease ends another kelp may claim the group and never read this write, so the client must not
/// be told it is durable (it gets COORDINATOR_NOT_AVAILABLE and retries at the new owner).
fn report(
    coordinator: &mut Coordinator,
    shard: Option<&Shard<'_>>,
    clock: &Clock,
    outage: &mut Outage,
    metrics: &Metrics,
    done: Done,
    out: &mut Vec<Output>,
) {
    match done {
        Done::Persisted {
            id,
            group,
            kind,
            term,
            result,
        } => {
            let fenced = match (shard, term) {
                (Some(sh), Some(term)) => !sh.acknowledgeable(&group, term, Instant::now()),
                _ => false,
            };
            let outcome = match result {
                Ok(()) if fenced => {
                    metrics.lease.fenced_writes.inc();
                    tracing::info!(group = %group, what = kind, "a write completed after its ownership lease ended; not acknowledged (COORDINATOR_NOT_AVAILABLE)");
                    Err(durable::COORDINATOR_NOT_AVAILABLE)
                }
                Ok(()) => {
                    outage.succeeded();
                    Ok(())
                }
                Err(e) => {
                    outage.failed(kind, &group, &e);
                    Err(durable::error_code(&e))
                }
            };
            coordinator.persisted(clock.now(), id, outcome, out);
        }
        Done::Imported { id, group, result } => {
            let result = match result {
                Ok(found) => {
                    outage.succeeded();
                    if !found.is_empty() {
                        tracing::info!(group = %group, offsets = found.len(), "importing the gateway's committed offsets");
                    }
                    Ok(found)
                }
                Err(e) => {
                    outage.failed("import of the gateway's offsets", &group, &e);
                    Err(durable::error_code(&e))
                }
            };
            coordinator.imported(clock.now(), id, result, out);
        }
    }
}

async fn next_done(inflight: &mut Option<Inflight<'_>>) -> Done {
    match inflight {
        Some(i) => i.next().await,
        None => std::future::pending().await,
    }
}

async fn next_load<F: std::future::Future + Unpin>(load: &mut Option<F>) -> F::Output {
    match load {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The API name and the first error code a response carries (top level first, then per item).
fn response_error(response: &Response) -> (&'static str, i16) {
    fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
        codes.into_iter().find(|c| *c != 0).unwrap_or(0)
    }
    match response {
        Response::JoinGroup(r) => ("JoinGroup", r.error_code),
        Response::SyncGroup(r) => ("SyncGroup", r.error_code),
        Response::Heartbeat(r) => ("Heartbeat", r.error_code),
        Response::LeaveGroup(r) => (
            "LeaveGroup",
            first(std::iter::once(r.error_code).chain(r.members.iter().map(|m| m.error_code))),
        ),
        Response::OffsetCommit(r) => (
            "OffsetCommit",
            first(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            ),
        ),
        Response::OffsetFetch(r) => (
            "OffsetFetch",
            first(
                std::iter::once(r.error_code)
                    .chain(r.groups.iter().map(|g| g.error_code))
                    .chain(
                        r.topics
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                    ),
            ),
        ),
        Response::OffsetDelete(r) => (
            "OffsetDelete",
            first(
                std::iter::once(r.error_code).chain(
                    r.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                ),
            ),
        ),
        Response::DescribeGroups(r) => (
            "DescribeGroups",
            first(r.groups.iter().map(|g| g.error_code)),
        ),
        Response::ListGroups(r) => ("ListGroups", r.error_code),
        Response::DeleteGroups(r) => (
            "DeleteGroups",
            first(r.results.iter().map(|g| g.error_code)),
        ),
        Response::ConsumerGroupHeartbeat(r) => ("ConsumerGroupHeartbeat", r.error_code),
        Response::ConsumerGroupDescribe(r) => (
            "ConsumerGroupDescribe",
            first(r.groups.iter().map(|g| g.error_code)),
        ),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
