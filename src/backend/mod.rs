//! The backend (the SeaweedFS Kafka gateway): connecting, discovering its ApiVersions ranges, and
//! watching that it is reachable. Byte-for-byte forwarding itself lives in the connection task.

pub mod rewrite;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::{Reloading, Stream};

use crate::protocol::versions::BackendRanges;

pub use rewrite::Identity;

/// Timeout for connecting to the backend and for a discovery round trip.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// What kelp knows about its backend, shared by every connection.
pub struct Backend {
    /// host:port of the gateway.
    pub addr: String,
    ranges: ArcSwap<BackendRanges>,
    up: AtomicBool,
    /// TLS to the backend (`--backend-tls-ca`): the client configuration and the name to verify.
    tls: Option<BackendTls>,
}

/// How kelp talks TLS to the backend.
pub struct BackendTls {
    pub config: Arc<Reloading<rustls::ClientConfig>>,
    pub server_name: rustls_pki_types::ServerName<'static>,
}

impl Backend {
    pub fn new(addr: String) -> Arc<Self> {
        Self::with_tls(addr, None)
    }

    /// A backend reached over TLS when `tls` is given.
    pub fn with_tls(addr: String, tls: Option<BackendTls>) -> Arc<Self> {
        Arc::new(Backend {
            addr,
            ranges: ArcSwap::from_pointee(BackendRanges::new()),
            up: AtomicBool::new(false),
            tls,
        })
    }

    /// TLS to the backend, when configured.
    pub fn tls(&self) -> Option<&BackendTls> {
        self.tls.as_ref()
    }

    /// The backend's advertised ranges from the last successful discovery (empty before the first).
    pub fn ranges(&self) -> arc_swap::Guard<Arc<BackendRanges>> {
        self.ranges.load()
    }

    /// The highest version the backend advertised for `api`, if it has answered ApiVersions.
    pub fn highest(&self, api: ApiKey) -> Option<i16> {
        self.ranges.load().get(&(api as i16)).map(|r| r.max)
    }

    /// Whether the last discovery round trip succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Opens a new connection to the backend (one per client connection), TLS when configured;
    /// connect and handshake are bounded together.
    pub async fn connect(&self) -> std::io::Result<Stream> {
        let open = async {
            let tcp = TcpStream::connect(&self.addr).await?;
            tcp.set_nodelay(true)?;
            let Some(tls) = &self.tls else {
                return Ok(Stream::Plain(tcp));
            };
            let connector = tokio_rustls::TlsConnector::from(tls.config.current());
            let stream = connector.connect(tls.server_name.clone(), tcp).await?;
            Ok(Stream::Client(Box::new(stream)))
        };
        tokio::time::timeout(BACKEND_TIMEOUT, open)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "backend connect timed out")
            })?
    }

    /// One discovery round: asks the backend's ApiVersions on a fresh connection and records the result.
    pub async fn refresh(&self) -> anyhow::Result<()> {
        let result = tokio::time::timeout(BACKEND_TIMEOUT, self.discover()).await;
        match result {
            Ok(Ok(ranges)) => {
                if **self.ranges.load() != ranges {
                    tracing::info!(backend = %self.addr, apis = ranges.len(), "backend api versions discovered");
                    self.ranges.store(Arc::new(ranges));
                }
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(backend = %self.addr, "backend reachable");
                }
                Ok(())
            }
            Ok(Err(e)) => {
                self.mark_down(&e.to_string());
                Err(e)
            }
            Err(_) => {
                self.mark_down("timed out");
                anyhow::bail!("backend discovery timed out")
            }
        }
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(backend = %self.addr, error = why, "backend unreachable");
        }
    }

    async fn discover(&self) -> anyhow::Result<BackendRanges> {
        let mut stream = self.connect().await?;
        let version = 0;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::ApiVersions as i16)
            .with_request_api_version(version)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("kelp")));
        let mut body = BytesMut::new();
        header.encode(
            &mut body,
            ApiKey::ApiVersions.request_header_version(version),
        )?;
        ApiVersionsRequest::default().encode(&mut body, version)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await?;

        let len = stream.read_i32().await?;
        anyhow::ensure!(
            (4..1 << 20).contains(&len),
            "backend ApiVersions response of {len} bytes"
        );
        let mut buf = vec![0u8; len as usize];
        stream.read_exact(&mut buf).await?;
        let mut buf = bytes::Bytes::from(buf);
        let _correlation_id = buf.get_i32();
        let response = ApiVersionsResponse::decode(&mut buf, version)?;
        anyhow::ensure!(
            response.error_code == 0,
            "backend ApiVersions error {}",
            response.error_code
        );
        Ok(crate::protocol::versions::ranges_of(&response))
    }

    /// Re-discovers the backend every `every` (fast while it is down), forever.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        loop {
            let wait = match self.refresh().await {
                Ok(()) => every,
                Err(_) => every.min(Duration::from_secs(1)),
            };
            tokio::time::sleep(wait).await;
        }
    }
}
