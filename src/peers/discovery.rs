//! Where the peers are: a static list (`--peers`) or the addresses a DNS name resolves to
//! (`--peer-dns`, a headless Service), behind `Resolve` so tests can drive changes.

use std::future::Future;
use std::io;
use std::pin::Pin;

/// What the resolver returns: peer addresses as "host:port", in any order.
pub type Resolved = Pin<Box<dyn Future<Output = io::Result<Vec<String>>> + Send>>;

/// A source of peer addresses, asked again every `--peer-dns-interval-ms`.
pub trait Resolve: Send + Sync {
    fn resolve(&self) -> Resolved;
}

/// `--peers`: the same list every time.
pub struct Static(pub Vec<String>);

impl Resolve for Static {
    fn resolve(&self) -> Resolved {
        let peers = self.0.clone();
        Box::pin(async move { Ok(peers) })
    }
}

/// `--peer-dns name:port`: every address the name resolves to, with the port.
pub struct Dns(pub String);

impl Resolve for Dns {
    fn resolve(&self) -> Resolved {
        let name = self.0.clone();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host(name.as_str()).await?;
            Ok(addrs.map(|a| a.to_string()).collect())
        })
    }
}
