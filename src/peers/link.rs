//! Peer connections. `Dialer` opens one (plain, or mutual TLS with `--peer-tls-*`); a `Link` is
//! the peer connection of one client connection to one owner: request frames go out unchanged, in
//! order, and each response comes back to the request it answers. Parked JoinGroup/SyncGroup
//! requests therefore stay per client connection, as they would on a broker. When the owner
//! cannot be reached or the connection breaks, every request waiting on it gets no answer (`Err`
//! on its receiver); `failover` then sends it once more, to the group's next owner.
//!
//! Why not answer NOT_COORDINATOR at once: a client's coordinator is always its own kelp, and
//! librdkafka, told NOT_COORDINATOR, closes its coordinator connection and reopens it to the same
//! kelp; requests retried meanwhile fail with transport errors, and a member whose commits keep
//! failing that way sends no heartbeat and loses its session (seen in tests/e2e_peers.rs when the
//! owner was killed). Held for the second or two until the view names the next owner, the request
//! is simply answered late.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::FramedRead;

use crate::protocol::frame_codec;
use crate::protocol::response_correlation_id;
use crate::tls::{Reloading, Stream};

/// Longest a peer connection (TCP and TLS) may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Requests written to the peer in one go, at most.
const MAX_BATCH: usize = 64;

/// Mutual TLS to the peers.
pub struct PeerTls {
    pub config: Arc<Reloading<rustls::ClientConfig>>,
    /// The name every peer's certificate carries (`--peer-tls-server-name`); `None`: the host
    /// part of the peer's address.
    pub server_name: Option<ServerName<'static>>,
}

/// Opens peer connections.
pub struct Dialer {
    pub tls: Option<PeerTls>,
}

impl Dialer {
    pub async fn connect(&self, addr: &str) -> io::Result<Stream> {
        let open = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let Some(tls) = &self.tls else {
                return Ok(Stream::Plain(tcp));
            };
            let name = match &tls.server_name {
                Some(name) => name.clone(),
                None => {
                    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
                    ServerName::try_from(host.trim_matches(['[', ']']))
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
                        .to_owned()
                }
            };
            let connector = tokio_rustls::TlsConnector::from(tls.config.current());
            Ok(Stream::Client(Box::new(
                connector.connect(name, tcp).await?,
            )))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "peer connect timed out"))?
    }
}

type Request = (Bytes, oneshot::Sender<Bytes>);

/// Sends `frame` (a request for `group` that `failed` did not answer) to the group's owner once the
/// view no longer names `failed` for it, or when `Peers::failover_window` is up, over a peer
/// connection of its own (to this kelp's own peer listener if the group is now this kelp's).
/// `None` if that owner does not answer either.
pub async fn failover(
    peers: &super::Peers,
    dialer: &Arc<Dialer>,
    max_frame_bytes: u32,
    failed: &str,
    group: &str,
    frame: Bytes,
) -> Option<Bytes> {
    let deadline = tokio::time::Instant::now() + peers.failover_window();
    let mut views = peers.subscribe();
    let owner = loop {
        let owner = match peers.owner(group) {
            super::Owner::Me => peers.me().to_string(),
            super::Owner::Peer(p) => p,
        };
        if owner != failed || tokio::time::Instant::now() >= deadline {
            break owner;
        }
        // Woken by the next view, or the deadline; `changed` fails only if the peers are gone.
        if let Ok(Err(_)) = tokio::time::timeout_at(deadline, views.changed()).await {
            return None;
        }
    };
    tracing::debug!(group, failed, owner = %owner, "sending a request again, to the group's next owner");
    Link::open(dialer.clone(), owner, max_frame_bytes, peers.subscribe())
        .send(frame)
        .await
        .ok()
}

/// One client connection's peer connection to one owner (a task; dropped with the client
/// connection, which closes it).
pub struct Link {
    owner: String,
    tx: mpsc::UnboundedSender<Request>,
}

impl Link {
    /// Starts connecting to `owner` at once; requests sent meanwhile wait for the connection.
    /// When `views` no longer lists the owner live (it stopped answering probes: killed, paused,
    /// partitioned), the link gives up on whatever waits on it.
    pub fn open(
        dialer: Arc<Dialer>,
        owner: String,
        max_frame_bytes: u32,
        views: watch::Receiver<Arc<super::View>>,
    ) -> Link {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(dialer, owner.clone(), max_frame_bytes, rx, views));
        Link { owner, tx }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the connection is gone (a new `Link` is needed).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends a request frame (length prefix included); the receiver gets the response frame, or
    /// an error if the owner does not answer it.
    pub fn send(&self, frame: Bytes) -> oneshot::Receiver<Bytes> {
        let (reply, rx) = oneshot::channel();
        let _ = self.tx.send((frame, reply));
        rx
    }
}

async fn run(
    dialer: Arc<Dialer>,
    owner: String,
    max_frame_bytes: u32,
    mut rx: mpsc::UnboundedReceiver<Request>,
    mut views: watch::Receiver<Arc<super::View>>,
) {
    let stream = match dialer.connect(&owner).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(peer = %owner, error = %e, "cannot reach the group's owner; its requests wait for the next owner");
            return; // Dropping `rx` fails every request sent so far and later.
        }
    };
    let (read, mut write) = stream.into_split();
    let mut responses = FramedRead::new(read, frame_codec(max_frame_bytes));
    let mut pending: VecDeque<(Option<i32>, oneshot::Sender<Bytes>)> = VecDeque::new();
    let outcome: Result<(), String> = async {
        loop {
            tokio::select! {
                changed = views.changed() => {
                    let gone = changed.is_err() || !views.borrow_and_update().live.contains(&owner);
                    if gone {
                        return Err("the owner is no longer live in this kelp's view".into());
                    }
                }
                request = rx.recv() => {
                    let Some(first) = request else { return Ok(()) };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let mut bufs = Vec::with_capacity(batch.len());
                    for (frame, reply) in batch {
                        // Request header: length, api key, version, then the correlation id.
                        let correlation = frame.get(8..12).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                        pending.push_back((correlation, reply));
                        bufs.push(frame);
                    }
                    for frame in &bufs {
                        write.write_all(frame).await.map_err(|e| format!("write: {e}"))?;
                    }
                }
                response = responses.next() => {
                    let frame = match response {
                        Some(Ok(frame)) => frame.freeze(),
                        Some(Err(e)) => return Err(format!("read: {e}")),
                        None => return Err("the owner closed the connection".into()),
                    };
                    let Some((correlation, reply)) = pending.pop_front() else {
                        return Err("a response with no request outstanding".into());
                    };
                    if correlation != response_correlation_id(&frame[4..]) {
                        return Err("a response with another correlation id".into());
                    }
                    let _ = reply.send(frame);
                }
            }
        }
    }
    .await;
    if let Err(e) = outcome {
        tracing::warn!(peer = %owner, error = %e, outstanding = pending.len(), "peer connection closed; waiting requests go to the group's next owner");
    }
}
