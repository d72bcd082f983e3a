//! The listeners: clients on `--listen`, other kelps on `--peer-listen`; one task per connection
//! (see `conn`). A connection from the peer listener is served with `Origin::Peer`: its group
//! requests are answered here or refused, never forwarded again.

pub mod answer;
pub mod conn;
mod outbox;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};

use crate::backend::{Backend, Identity};
use crate::config::Config;
use crate::coordinator::GroupService;
use crate::metrics::Metrics;
use crate::modes::Modes;
use crate::passthrough::Routing;
use crate::shutdown::Shutdown;
use crate::tls::{Reloading, Stream};

/// What every connection task shares.
pub struct Shared {
    pub config: Config,
    pub identity: Identity,
    pub metrics: Arc<Metrics>,
    /// Drain state and the count of live client connections (`--max-connections`).
    pub shutdown: Shutdown,
    /// TLS on the client listener (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
    pub client_tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
    /// Where group requests go: kelp's coordinator, the gateway (with the mode rules and the
    /// passthrough state), the other kelps; and the backend every forwarded request goes to.
    pub routing: Arc<Routing>,
    /// The other kelps (`--peers`/`--peer-dns`): who owns which group, and how to reach them.
    pub peers: Option<PeerSide>,
    /// Topic ids for the gateway's topics (`src/topics/`): Metadata v8+ and the consumer groups.
    pub topic_ids: crate::topics::TopicIds,
}

impl Shared {
    pub fn backend(&self) -> &Arc<Backend> {
        &self.routing.backend
    }

    pub fn groups(&self) -> &GroupService {
        &self.routing.groups
    }

    pub fn modes(&self) -> &Arc<Modes> {
        &self.routing.modes
    }
}

/// What connections need of the peers.
pub struct PeerSide {
    pub peers: Arc<crate::peers::Peers>,
    pub dialer: Arc<crate::peers::link::Dialer>,
    /// Mutual TLS on the peer listener (`--peer-tls-*`).
    pub tls: Option<Arc<Reloading<rustls::ServerConfig>>>,
}

pub use crate::route::Origin;

/// Longest a client gets to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts client connections until the drain begins, one task each. A failed accept is logged and
/// retried. Beyond `--max-connections` live connections a new one is closed at once, with a log
/// line (at most one a second) and `kelp_connection_errors_total{reason="max_connections"}`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_as(listener, shared, Origin::Client).await
}

/// Accepts connections from other kelps on the peer listener, like `serve` does for clients.
pub async fn serve_peers(listener: TcpListener, shared: Arc<Shared>) {
    serve_as(listener, shared, Origin::Peer).await
}

async fn serve_as(listener: TcpListener, shared: Arc<Shared>, origin: Origin) {
    let active = shared
        .metrics
        .connections_active
        .with_label_values(&[origin.label()]);
    let total = shared
        .metrics
        .connections_total
        .with_label_values(&[origin.label()]);
    let max = usize::try_from(shared.config.limits.max_connections).unwrap_or(usize::MAX);
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.shutdown.draining() => {
                tracing::info!(listener = origin.label(), "draining: no longer accepting connections");
                return;
            }
        };
        match accepted {
            Ok((socket, peer)) => {
                if shared.shutdown.live() >= max {
                    shared.metrics.connection_error("max_connections");
                    refusals.refused(peer, max);
                    drop(socket);
                    continue;
                }
                total.inc();
                let live = shared.shutdown.track();
                let shared = shared.clone();
                let active = active.clone();
                tokio::spawn(async move {
                    active.inc();
                    if let Some(stream) = handshake(&shared, socket, peer, origin).await {
                        conn::serve(shared, stream, peer, origin).await;
                    }
                    active.dec();
                    drop(live);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                shared.metrics.connection_error("accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake when the listener has TLS (bounded); a failure closes the connection with a
/// log line and `kelp_connection_errors_total{reason="tls_handshake"}`.
async fn handshake(
    shared: &Shared,
    socket: TcpStream,
    peer: std::net::SocketAddr,
    origin: Origin,
) -> Option<Stream> {
    let _ = socket.set_nodelay(true);
    let tls = match origin {
        Origin::Client => shared.client_tls.as_ref(),
        Origin::Peer => shared.peers.as_ref().and_then(|p| p.tls.as_ref()),
    };
    let Some(tls) = tls else {
        return Some(Stream::Plain(socket));
    };
    let accept = tokio_rustls::TlsAcceptor::from(tls.current()).accept(socket);
    let error = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, accept).await {
        Ok(Ok(stream)) => return Some(Stream::Server(Box::new(stream))),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    shared.metrics.connection_error("tls_handshake");
    tracing::warn!(peer = %peer, listener = origin.label(), error = %error, "closing connection: TLS handshake failed");
    None
}

/// Logs refused connections: the first at once, then at most one line a second with the count.
#[derive(Default)]
struct Refusals {
    last_log: Option<Instant>,
    since_log: u64,
}

impl Refusals {
    fn refused(&mut self, peer: std::net::SocketAddr, max: usize) {
        self.since_log += 1;
        if self
            .last_log
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            peer = %peer,
            refused = self.since_log,
            "refusing client connections: --max-connections {max} are open"
        );
        self.last_log = Some(Instant::now());
        self.since_log = 0;
    }
}
