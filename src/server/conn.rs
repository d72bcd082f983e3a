//! One client connection: reads length-delimited frames, peeks each request header, routes it, and
//! writes responses back in request order, whether they come from the backend (byte for byte, or
//! rewritten), from kelp itself, or later from the group coordinator (a parked JoinGroup/SyncGroup
//! holds only its own response slot). Bad input closes this connection only, with a log line and a
//! metric; nothing here panics on what a peer sends.
//!
//! Each turn of the loop waits for one event, then handles everything else that is already ready
//! (more requests, more backend responses) before writing: the requests go to the backend in one
//! vectored write and the responses to the client in another, without copying either.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::ApiKey;
use prometheus::Histogram;
use tokio_util::codec::{FramedRead, LengthDelimitedCodecError};

use super::outbox::Outbox;
use super::{answer, Shared};
use crate::access;
use crate::backend::rewrite;
use crate::group::Request;
use crate::metrics::{ApiHandles, Path};
use crate::passthrough::{self, Finished, Plan, Post};
use crate::peers::Link;
use crate::protocol::{frame_codec, FrameCodec, LocalReply};
use crate::protocol::{peek, produce_acks_zero, response_correlation_id, FrameError, Peek};
use crate::route::Origin;
use crate::route::{route, Route};
use crate::tls::{ReadHalf, Stream, WriteHalf};

/// Most requests in flight on one connection before kelp stops reading from it.
const MAX_IN_FLIGHT: usize = 128;

/// Most ready events handled in one turn before the turn's writes.
const MAX_DRAIN: usize = 64;

/// Request bytes queued for the backend beyond which a turn stops reading more requests.
const FLUSH_BYTES: usize = 1 << 20;

/// A coordinator reply tagged with the sequence number of its response slot.
type SlotReply = Pin<Box<dyn Future<Output = (u64, Option<Bytes>)> + Send>>;

/// Frames read from one socket.
type Frames = FramedRead<ReadHalf, FrameCodec>;

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum Close {
    #[error("{0}")]
    Frame(FrameError),
    #[error("{0} frame over the maximum size")]
    TooLarge(&'static str),
    #[error("{0} i/o error: {1}")]
    Io(&'static str, std::io::Error),
    #[error("{0}")]
    Backend(String),
    #[error("the group coordinator did not answer")]
    Coordinator,
    #[error("{0:?} v{1} must go to the gateway, which does not serve that version: the client negotiates again")]
    Renegotiate(ApiKey, i16),
    #[error("{0:?} on the peer listener, which serves group requests only")]
    NotForPeers(ApiKey),
    #[error("access: {0}")]
    Access(String),
}

impl Close {
    fn reason(&self) -> &'static str {
        match self {
            Close::Frame(e) => e.reason(),
            Close::TooLarge(_) => "frame_too_large",
            Close::Io(..) => "io",
            Close::Backend(_) => "backend_closed",
            Close::Coordinator => "coordinator",
            Close::Renegotiate(..) => "renegotiate",
            Close::NotForPeers(_) => "not_for_peers",
            Close::Access(_) => "access",
        }
    }
}

fn read_error(side: &'static str, e: std::io::Error) -> Close {
    let too_large = e
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    if too_large {
        Close::TooLarge(side)
    } else {
        Close::Io(side, e)
    }
}

/// A request waiting for its response slot to fill.
struct Slot {
    response: Option<Bytes>,
    started: Instant,
    timer: Option<Histogram>,
    /// A JoinGroup or SyncGroup waiting for the rest of its group (not waited for when draining).
    parked: bool,
    /// Access control: runs on the response before the client gets it (`access::Patch`).
    patch: Option<access::Patch>,
}

/// Most acks=0 Produce requests remembered while waiting to see whether the backend answers them.
const MAX_SILENT: usize = 1024;

/// A forwarded request waiting for the backend's response. A `silent` one is a Produce with acks=0:
/// the client expects no response, but the SeaweedFS gateway (4.48) sends one anyway, so kelp
/// drops it if it comes and skips the entry if the next response belongs to a later request.
struct Expect {
    silent: bool,
    seq: u64,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    sent: Instant,
    backend_timer: Option<Histogram>,
    then: OnResponse,
}

/// What becomes of the backend's response to a forwarded request.
enum OnResponse {
    /// Passed to the client byte for byte.
    Pass,
    /// Broker and coordinator addresses rewritten to kelp's (`backend::rewrite`).
    Rewrite,
    /// Migration: a step run on the gateway's response to a passthrough group request.
    Post(Box<Post>),
    /// A Metadata request kelp answers at a version above the gateway's (`topics::metadata`).
    Metadata(Box<crate::topics::metadata::Plan>),
}

struct BackendLink {
    reader: Frames,
    writer: WriteHalf,
}

/// In-order response slots: `slots[0]` has sequence number `head`.
#[derive(Default)]
struct Slots {
    slots: VecDeque<Slot>,
    head: u64,
    /// The patch for the next slot pushed (set per request by the access check).
    next_patch: Option<access::Patch>,
}

impl Slots {
    fn push(&mut self, response: Option<Bytes>, timer: Option<Histogram>) -> u64 {
        self.slots.push_back(Slot {
            response,
            started: Instant::now(),
            timer,
            parked: false,
            patch: self.next_patch.take(),
        });
        self.head + self.slots.len() as u64 - 1
    }

    /// A slot for a parked JoinGroup/SyncGroup reply.
    fn push_parked(&mut self) -> u64 {
        let seq = self.push(None, None);
        if let Some(slot) = self.slots.back_mut() {
            slot.parked = true;
        }
        seq
    }

    /// Whether every response still to come is a parked one (what a draining connection waits for).
    fn only_parked_pending(&self) -> bool {
        self.slots.iter().all(|s| s.response.is_some() || s.parked)
    }

    fn fill(&mut self, seq: u64, response: Bytes) {
        if let Some(slot) = seq
            .checked_sub(self.head)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            slot.response = Some(response);
        }
    }

    /// Takes the leading run of filled slots.
    fn pop_ready(&mut self) -> Option<Result<Bytes, Close>> {
        let response = self.slots.front_mut()?.response.take()?;
        let slot = self.slots.pop_front()?;
        self.head += 1;
        if let Some(timer) = slot.timer {
            timer.observe(slot.started.elapsed().as_secs_f64());
        }
        Some(match slot.patch {
            Some(patch) => patch(response).map_err(Close::Access),
            None => Ok(response),
        })
    }

    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// Serves one client connection until it closes or misbehaves.
pub async fn serve(shared: Arc<Shared>, socket: Stream, peer: SocketAddr, origin: Origin) {
    let _ = socket.set_nodelay(true);
    let access = access::Guard::new(access::Principal::of(&socket));
    let (read, write) = socket.into_split();
    let mut conn = Conn {
        shared,
        origin,
        access,
        links: Vec::new(),
        client_host: format!("/{}", peer.ip()),
        client_out: write,
        to_client: Outbox::default(),
        backend: None,
        to_backend: Outbox::default(),
        queued: 0,
        queued_outstanding: 0,
        expect: VecDeque::new(),
        outstanding: 0,
        slots: Slots::default(),
        local: FuturesUnordered::new(),
    };
    let codec = frame_codec(conn.shared.config.max_frame_bytes);
    let mut client_in = FramedRead::new(read, codec);
    if let Err(close) = conn.run(&mut client_in).await {
        conn.shared.metrics.connection_error(close.reason());
        match &close {
            Close::Io(_, e) if is_reset(e) => {
                tracing::debug!(peer = %peer, reason = close.reason(), "connection closed")
            }
            Close::Renegotiate(..) => {
                tracing::info!(peer = %peer, reason = close.reason(), "closing connection: {close}")
            }
            _ => {
                tracing::warn!(peer = %peer, reason = close.reason(), "closing connection: {close}")
            }
        }
    }
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    )
}

struct Conn {
    shared: Arc<Shared>,
    origin: Origin,
    /// The client's principal and the `[access]` rules that apply to it.
    access: access::Guard,
    /// Peer connections to the owners of groups this connection asked about (usually one).
    links: Vec<Link>,
    client_host: String,
    client_out: WriteHalf,
    /// Responses whose turn has come, written together at the end of a turn.
    to_client: Outbox,
    backend: Option<BackendLink>,
    /// Requests for the backend, written together at the end of a turn.
    to_backend: Outbox,
    /// The last `queued` entries of `expect` are for the requests in `to_backend`…
    queued: usize,
    /// … and `queued_outstanding` of them are not silent.
    queued_outstanding: usize,
    expect: VecDeque<Expect>,
    /// Entries of `expect` that are not silent: responses the client is waiting for.
    outstanding: usize,
    slots: Slots,
    local: FuturesUnordered<SlotReply>,
}

impl Conn {
    async fn run(&mut self, client_in: &mut Frames) -> Result<(), Close> {
        // Draining (SIGTERM): read no more requests, answer what is in flight, then close so the
        // client reconnects elsewhere. Parked JoinGroup/SyncGroup replies are not waited for.
        let shutdown = self.shared.shutdown.clone();
        let draining = shutdown.draining();
        tokio::pin!(draining);
        let mut closing = false;
        loop {
            let reading = self.slots.len() < MAX_IN_FLIGHT && !closing;
            tokio::select! {
                _ = &mut draining, if !closing => closing = true,
                response = next_backend_frame(&mut self.backend) => self.on_backend(response)?,
                Some((seq, response)) = self.local.next(), if !self.local.is_empty() => {
                    self.on_local(seq, response)?;
                }
                request = client_in.next(), if reading => match request {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(read_error("client", e)),
                    Some(Ok(frame)) => self.on_request(frame.freeze())?,
                },
            }
            if !closing && !self.drain(client_in)? {
                return Ok(());
            }
            self.flush_backend().await?;
            self.write_ready().await?;
            if closing && self.slots.only_parked_pending() {
                return Ok(());
            }
        }
    }

    /// Handles every event that is ready without waiting (bounded), so that one write carries
    /// as many frames as possible. Returns false when the client has closed its side.
    fn drain(&mut self, client_in: &mut Frames) -> Result<bool, Close> {
        for _ in 0..MAX_DRAIN {
            let mut progressed = false;
            if let Some(response) = next_backend_frame(&mut self.backend).now_or_never() {
                self.on_backend(response)?;
                progressed = true;
            }
            if !self.local.is_empty() {
                if let Some(Some((seq, response))) = self.local.next().now_or_never() {
                    self.on_local(seq, response)?;
                    progressed = true;
                }
            }
            if self.slots.len() < MAX_IN_FLIGHT && self.to_backend.bytes() < FLUSH_BYTES {
                match client_in.next().now_or_never() {
                    None => {}
                    Some(None) => return Ok(false),
                    Some(Some(Err(e))) => return Err(read_error("client", e)),
                    Some(Some(Ok(frame))) => {
                        self.on_request(frame.freeze())?;
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(true)
    }

    fn on_local(&mut self, seq: u64, response: Option<Bytes>) -> Result<(), Close> {
        let response = response.ok_or(Close::Coordinator)?;
        self.slots.fill(seq, response);
        Ok(())
    }

    /// Writes every response whose turn has come, in one go.
    async fn write_ready(&mut self) -> Result<(), Close> {
        while let Some(response) = self.slots.pop_ready() {
            self.to_client.push(response?);
        }
        if self.to_client.is_empty() {
            return Ok(());
        }
        let written = self
            .to_client
            .write_to(&mut self.client_out)
            .await
            .map_err(|e| Close::Io("client", e))?;
        self.shared.metrics.bytes_client_out.inc_by(written as u64);
        Ok(())
    }

    fn on_request(&mut self, frame: Bytes) -> Result<(), Close> {
        let metrics = &self.shared.metrics;
        metrics.bytes_client_in.inc_by(frame.len() as u64);
        let body = frame.slice(4..);
        let peek = peek(&body).map_err(Close::Frame)?;
        let route = route(&peek).map_err(Close::Frame)?;
        // Access control (`src/access/`): before routing or forwarding.
        let verdict = self.access.check(
            self.shared.modes(),
            &self.shared.metrics,
            self.origin,
            &peek,
            &frame,
            &self.shared.topic_ids,
        );
        let (frame, body) = match verdict.map_err(Close::Frame)? {
            access::Verdict::Pass => {
                self.slots.next_patch = None;
                (frame, body)
            }
            access::Verdict::Rewrite { frame: new, patch } => {
                self.slots.next_patch = patch;
                let frame = new.unwrap_or(frame);
                let body = frame.slice(4..);
                (frame, body)
            }
            access::Verdict::Answer(response) => {
                // Refused whole: kelp answers it (counted as a local answer).
                if let Some(h) = self.shared.metrics.api(peek.api_key, Path::Local) {
                    h.requests.inc();
                }
                if let Some(response) = response {
                    self.slots.push(Some(response), None);
                }
                return Ok(());
            }
            access::Verdict::Close(why) => return Err(Close::Access(why)),
        };
        match route {
            // Other kelps only send group requests (and probes) to the peer listener.
            Route::Forward | Route::ForwardRewrite if self.origin == Origin::Peer => {
                Err(Close::NotForPeers(peek.api_key))
            }
            Route::Forward | Route::ForwardRewrite => {
                let handles = metrics.api(peek.api_key, Path::Backend);
                if let Some(h) = handles {
                    h.requests.inc();
                }
                if let Some(version) = self.metadata_translated(&peek) {
                    // Metadata above the gateway's versions: kelp answers it (topic ids).
                    let ids = &self.shared.topic_ids;
                    let (frame, plan) =
                        crate::topics::metadata::translate(&peek, body, ids, version)
                            .map_err(Close::Frame)?;
                    let then = OnResponse::Metadata(Box::new(plan));
                    self.forward(frame, &peek, then, false, handles.cloned());
                    return Ok(());
                }
                let no_response =
                    peek.api_key == ApiKey::Produce && produce_acks_zero(&body, peek.api_version);
                let then = match route {
                    Route::ForwardRewrite => OnResponse::Rewrite,
                    _ => OnResponse::Pass,
                };
                self.forward(frame, &peek, then, no_response, handles.cloned());
                Ok(())
            }
            Route::ApiVersions | Route::FindCoordinator => {
                let handles = metrics.api(peek.api_key, Path::Local);
                if let Some(h) = handles {
                    h.requests.inc();
                }
                let response = if route == Route::ApiVersions {
                    // With peers, a client's group may be served by any of them, as its owner's
                    // rules say: group APIs are offered at versions every live peer serves (a
                    // peer answers probes under its own rules only, so nothing echoes back).
                    let passthrough = self.shared.modes().passthrough_possible();
                    let peer_ranges = match (&self.shared.peers, self.origin) {
                        (Some(side), Origin::Client) => side.peers.peer_ranges(),
                        _ => Default::default(),
                    };
                    answer::api_versions(
                        &peek,
                        body,
                        &self.shared.backend().ranges(),
                        passthrough,
                        &peer_ranges,
                    )
                } else {
                    answer::find_coordinator(&peek, body, &self.shared.identity)
                }
                .map_err(Close::Frame)?;
                self.slots
                    .push(Some(response), handles.map(|h| h.duration.clone()));
                Ok(())
            }
            // Migration: the group id(s) decide between kelp's coordinator and the gateway's.
            Route::Group => {
                let plan = passthrough::plan(
                    &self.shared.routing,
                    &peek,
                    body,
                    &self.client_host,
                    self.origin,
                )
                .map_err(Close::Frame)?;
                let (path, reply) = match plan {
                    Plan::Renegotiate => {
                        return Err(Close::Renegotiate(peek.api_key, peek.api_version))
                    }
                    Plan::Forward(post) => {
                        let handles = metrics.api(peek.api_key, Path::Passthrough);
                        if let Some(h) = handles {
                            h.requests.inc();
                        }
                        let then = post.map_or(OnResponse::Pass, OnResponse::Post);
                        self.forward(frame, &peek, then, false, handles.cloned());
                        return Ok(());
                    }
                    Plan::Local(reply) => (Path::Local, reply),
                    Plan::Peer { owner, request } => {
                        (Path::Peer, self.forward_to_owner(owner, frame, &request))
                    }
                    Plan::Scatter {
                        request,
                        client_id,
                        parts,
                    } => (Path::Peer, self.scatter(&peek, &client_id, request, parts)),
                };
                let handles = self.shared.metrics.api(peek.api_key, path);
                if let Some(h) = handles {
                    h.requests.inc();
                }
                // Parked JoinGroup/SyncGroup time is rebalance time, not proxy latency (METRICS.md).
                let parks = matches!(peek.api_key, ApiKey::JoinGroup | ApiKey::SyncGroup);
                let timer = handles.filter(|_| !parks).map(|h| h.duration.clone());
                let seq = if parks {
                    self.slots.push_parked()
                } else {
                    self.slots.push(None, timer)
                };
                self.local.push(Box::pin(async move { (seq, reply.await) }));
                Ok(())
            }
        }
    }

    /// Sends a group request frame, unchanged, to the kelp that owns the group, over this
    /// connection's link to it. If that kelp does not answer (it died, or is draining), the
    /// request waits for the view to name the group's next owner and goes there once
    /// (`peers::link::failover`). If that fails too, the client connection is closed: the client
    /// reconnects and negotiates versions again, which is also what an owner that closed the
    /// link for a version its gateway does not serve (a passthrough group) needs.
    fn forward_to_owner(&mut self, owner: String, frame: Bytes, request: &Request) -> LocalReply {
        let response = self.link(owner.clone()).send(frame.clone());
        let shared = self.shared.clone();
        let group = crate::group::named_groups(request)
            .first()
            .map(|g| g.to_string());
        Box::pin(async move {
            if let Ok(frame) = response.await {
                return Some(frame);
            }
            let side = shared.peers.as_ref()?;
            crate::peers::link::failover(
                &side.peers,
                &side.dialer,
                shared.config.max_frame_bytes,
                &owner,
                group.as_deref()?,
                frame,
            )
            .await
        })
    }

    /// This connection's link to `owner`, opened if there is none (or the last one broke).
    fn link(&mut self, owner: String) -> &Link {
        self.links.retain(|l| !l.is_closed());
        match self.links.iter().position(|l| l.owner() == owner) {
            Some(i) => &self.links[i],
            None => {
                let side = self.shared.peers.as_ref().expect("a peer plan needs peers");
                let link = Link::open(
                    side.dialer.clone(),
                    owner,
                    self.shared.config.max_frame_bytes,
                    side.peers.subscribe(),
                );
                self.links.push(link);
                self.links.last().expect("pushed above")
            }
        }
    }

    /// Sends each part of a request spanning owners to its owner and merges the answers.
    fn scatter(
        &mut self,
        peek: &Peek,
        client_id: &str,
        request: Request,
        parts: Vec<crate::peers::scatter::Part>,
    ) -> LocalReply {
        use crate::peers::scatter;
        let mut waiting = Vec::with_capacity(parts.len());
        for part in parts {
            let response = match crate::coordinator::encode_request(peek, client_id, &part.request)
            {
                Ok(frame) => Some(self.link(part.owner).send(frame)),
                Err(e) => {
                    tracing::error!(api = ?peek.api_key, error = %e, "cannot encode a part of a split request");
                    None
                }
            };
            waiting.push((part.request, response));
        }
        let peek = *peek;
        Box::pin(async move {
            let mut answers = Vec::with_capacity(waiting.len());
            for (part, response) in waiting {
                let frame = match response {
                    Some(rx) => rx.await.ok(),
                    None => None,
                };
                let answer = frame
                    .and_then(|f| scatter::decode(peek.api_key, peek.api_version, f).ok())
                    .unwrap_or_else(|| scatter::unanswered(&part, peek.api_version));
                answers.push(answer);
            }
            crate::coordinator::encode(&peek, &scatter::merge(&request, answers)).ok()
        })
    }

    /// The gateway's Metadata version to ask in when `peek` is a Metadata request above the
    /// versions the gateway serves (kelp answers those itself); `None` for everything else.
    fn metadata_translated(&self, peek: &Peek) -> Option<i16> {
        if peek.api_key != ApiKey::Metadata {
            return None;
        }
        crate::topics::translated_version(self.shared.backend(), peek.api_version)
    }

    /// Queues a request frame for the backend, unchanged; `flush_backend` writes it. `then` says
    /// what becomes of the response.
    fn forward(
        &mut self,
        frame: Bytes,
        peek: &Peek,
        then: OnResponse,
        no_response: bool,
        handles: Option<ApiHandles>,
    ) {
        self.to_backend.push(frame);
        self.queued += 1;
        let seq = if no_response {
            // Only entries already written can be forgotten (MAX_DRAIN < MAX_SILENT).
            if self.expect.len() >= MAX_SILENT && self.expect.front().is_some_and(|e| e.silent) {
                self.expect.pop_front();
            }
            0
        } else {
            self.outstanding += 1;
            self.queued_outstanding += 1;
            self.slots
                .push(None, handles.as_ref().map(|h| h.duration.clone()))
        };
        self.expect.push_back(Expect {
            silent: no_response,
            seq,
            api: peek.api_key,
            version: peek.api_version,
            correlation_id: peek.correlation_id,
            sent: Instant::now(),
            backend_timer: handles.map(|h| h.backend),
            then,
        });
    }

    /// Drops the `expect` entries of requests written to a backend connection that is gone,
    /// keeping those of the requests still queued.
    fn forget_written(&mut self) {
        let written = self.expect.len() - self.queued;
        self.expect.drain(..written);
    }

    /// Writes the queued requests to the backend, connecting (or reconnecting, when the backend
    /// closed an idle connection) first if needed.
    async fn flush_backend(&mut self) -> Result<(), Close> {
        if self.to_backend.is_empty() {
            return Ok(());
        }
        if self.backend.is_none() {
            self.backend = Some(connect_backend(self.shared.clone()).await?);
        }
        let link = self.backend.as_mut().expect("connected above");
        let written = match self.to_backend.write_to(&mut link.writer).await {
            Ok(written) => written,
            Err(e) if self.outstanding > self.queued_outstanding => {
                return Err(Close::Io("backend", e))
            }
            Err(e) => {
                // Nothing in flight: the backend dropped an idle connection. Reconnect once.
                tracing::debug!(error = %e, "backend write failed on an idle connection; reconnecting");
                self.forget_written();
                let link = self
                    .backend
                    .insert(connect_backend(self.shared.clone()).await?);
                self.to_backend
                    .write_to(&mut link.writer)
                    .await
                    .map_err(|e| Close::Io("backend", e))?
            }
        };
        self.queued = 0;
        self.queued_outstanding = 0;
        self.shared.metrics.bytes_backend_out.inc_by(written as u64);
        Ok(())
    }

    /// A frame (or the end) from the backend: the response to the oldest forwarded request.
    fn on_backend(
        &mut self,
        response: Option<std::io::Result<bytes::BytesMut>>,
    ) -> Result<(), Close> {
        let frame = match response {
            Some(Ok(frame)) => frame.freeze(),
            Some(Err(e)) => return Err(read_error("backend", e)),
            None if self.outstanding == self.queued_outstanding => {
                // The gateway closes idle connections; reconnect on the next request (or for the
                // requests queued in this turn).
                self.backend = None;
                self.forget_written();
                return Ok(());
            }
            None => {
                return Err(Close::Backend(format!(
                    "backend closed with {} responses outstanding",
                    self.outstanding - self.queued_outstanding
                )))
            }
        };
        self.shared
            .metrics
            .bytes_backend_in
            .inc_by(frame.len() as u64);
        let correlation_id = response_correlation_id(&frame[4..]);
        let expect = loop {
            // Only requests already written can be answered (the queued ones are at the back).
            let expect = (self.expect.len() > self.queued)
                .then(|| self.expect.pop_front())
                .flatten()
                .ok_or_else(|| Close::Backend("response with no request outstanding".into()))?;
            if Some(expect.correlation_id) == correlation_id {
                break expect;
            }
            if !expect.silent {
                return Err(Close::Backend(format!(
                    "backend answered {:?} v{} with a different correlation id",
                    expect.api, expect.version
                )));
            }
            // An acks=0 Produce the backend did not answer: the response is for a later request.
        };
        if expect.silent {
            return Ok(()); // The client expects no response to an acks=0 Produce.
        }
        self.outstanding -= 1;
        if let Some(timer) = &expect.backend_timer {
            timer.observe(expect.sent.elapsed().as_secs_f64());
        }
        let seq = expect.seq;
        match expect.then {
            OnResponse::Pass => self.slots.fill(seq, frame),
            OnResponse::Rewrite => {
                let (api, version) = (expect.api, expect.version);
                let response =
                    rewrite::rewrite(api, version, frame.slice(4..), &self.shared.identity)
                        .map_err(|e| Close::Backend(format!("cannot rewrite {api:?}: {e}")))?;
                self.slots.fill(seq, response);
            }
            // Migration: read the gateway's answer to a passthrough group request.
            OnResponse::Post(post) => {
                match post.finish(&self.shared.routing, frame, &self.client_host) {
                    Finished::Now(response) => self.slots.fill(seq, response),
                    Finished::Later(reply) => {
                        self.local.push(Box::pin(async move { (seq, reply.await) }));
                    }
                }
            }
            OnResponse::Metadata(plan) => {
                use crate::topics::metadata::{answer, Answer};
                let (me, ids) = (&self.shared.identity, &self.shared.topic_ids);
                match answer(*plan, frame.slice(4..), me, ids)
                    .map_err(|e| Close::Backend(format!("cannot answer Metadata: {e}")))?
                {
                    Answer::Now(response) => self.slots.fill(seq, response),
                    Answer::Later(response) => {
                        self.local.push(Box::pin(async move {
                            let response = response.await;
                            if let Err(e) = &response {
                                tracing::warn!(error = %e, "cannot answer Metadata");
                            }
                            (seq, response.ok())
                        }));
                    }
                }
            }
        }
        Ok(())
    }
}

async fn connect_backend(shared: Arc<Shared>) -> Result<BackendLink, Close> {
    let stream = shared
        .backend()
        .connect()
        .await
        .map_err(|e| Close::Backend(format!("connect to {}: {e}", shared.backend().addr)))?;
    let (read, write) = stream.into_split();
    let codec = frame_codec(shared.config.max_frame_bytes);
    Ok(BackendLink {
        reader: FramedRead::new(read, codec),
        writer: write,
    })
}

/// The next frame from the backend, or pending forever when there is no backend connection.
async fn next_backend_frame(
    backend: &mut Option<BackendLink>,
) -> Option<std::io::Result<bytes::BytesMut>> {
    match backend {
        Some(link) => link.reader.next().await,
        None => std::future::pending().await,
    }
}
