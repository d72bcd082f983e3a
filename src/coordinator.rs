//! The async shell around the group state machine: one actor task owns `group::Coordinator`, feeds it
//! requests and timer ticks with the shell's clock, and routes each reply to the response slot that
//! waits for it. A parked JoinGroup or SyncGroup holds only its own slot; the connection goes on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::ApiKey;
use tokio::sync::{mpsc, oneshot};

use crate::group::{self, Call, Coordinator, Output, Request, Response};
use crate::metrics::Metrics;
use crate::protocol::{decode_request, encode_response, FrameError, Peek};
use crate::server::conn::LocalReply;

type Envelope = (Call, oneshot::Sender<Response>);

/// Handle to the coordinator actor; cheap to clone.
#[derive(Clone)]
pub struct GroupService {
    tx: mpsc::UnboundedSender<Envelope>,
    next_token: Arc<AtomicU64>,
}

impl GroupService {
    /// Starts the actor on the current runtime.
    pub fn spawn(config: group::Config, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(Coordinator::new(config), rx, metrics));
        GroupService {
            tx,
            next_token: Arc::new(AtomicU64::new(1)),
        }
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
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let call = Call {
            token,
            api_version: peek.api_version,
            client_id,
            client_host: client_host.to_string(),
            request,
        };
        let (reply_tx, reply_rx) = oneshot::channel();
        let _ = self.tx.send((call, reply_tx));
        let peek = *peek;
        Ok(Box::pin(async move {
            let response = reply_rx.await.ok()?;
            match encode(&peek, &response) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    tracing::error!(api = ?peek.api_key, version = peek.api_version, error = %e, "cannot encode a coordinator response");
                    None
                }
            }
        }))
    }
}

/// Decodes the header's client id and the body of a group request.
fn decode(peek: &Peek, frame: Bytes) -> Result<(String, Request), FrameError> {
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
        other => return Err(FrameError::UnsupportedApi(other)),
    };
    let client_id = header.client_id.map(|c| c.to_string()).unwrap_or_default();
    Ok((client_id, request))
}

/// Encodes a coordinator response at the request's version.
fn encode(peek: &Peek, response: &Response) -> anyhow::Result<Bytes> {
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
    }
}

/// The actor loop: requests and timers in, replies and metric events out.
async fn run(
    mut coordinator: Coordinator,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    metrics: Arc<Metrics>,
) {
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_millis() as u64;
    let mut waiting: HashMap<group::Token, oneshot::Sender<Response>> = HashMap::new();
    let mut out = Vec::new();
    loop {
        let deadline = coordinator
            .next_deadline()
            .map(|at| tokio::time::Instant::from_std(epoch + Duration::from_millis(at)));
        tokio::select! {
            envelope = rx.recv() => {
                let Some((call, reply)) = envelope else { return };
                tracing::trace!(token = call.token, version = call.api_version, request = ?call.request, "group call");
                waiting.insert(call.token, reply);
                coordinator.handle(now(), call, &mut out);
                // Take whatever else is queued before answering, to batch wake-ups.
                for _ in 0..256 {
                    let Ok((call, reply)) = rx.try_recv() else { break };
                    tracing::trace!(token = call.token, version = call.api_version, request = ?call.request, "group call");
                    waiting.insert(call.token, reply);
                    coordinator.handle(now(), call, &mut out);
                }
            }
            _ = sleep_until(deadline) => coordinator.tick(now(), &mut out),
        }
        for output in out.drain(..) {
            match output {
                Output::Reply { token, response } => {
                    tracing::trace!(token, response = ?response, "group reply");
                    let (api, error) = response_error(&response);
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
                Output::Event(event) => metrics.group_event(&event),
                Output::Persist(_) | Output::Import { .. } => {}
            }
        }
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
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
