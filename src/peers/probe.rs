//! Liveness: an ApiVersions round trip on a kept-open peer connection, bounded in time. A peer
//! that answers is live; one that refuses, resets, times out or answers with an error is not.
//! What it answers is kept too: the versions it serves group APIs at under its own rules
//! (capped at the gateway's while it may pass a group through), which cap what this kelp offers
//! its clients (`protocol::versions::cap_group_apis`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Buf;
use futures::{SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Decodable;
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::link::Dialer;
use crate::protocol::encode_request;
use crate::protocol::versions::BackendRanges;
use crate::tls::Stream;

/// Whether a peer answers, and with which API versions (`None`: it did not).
pub trait Probe: Send + Sync {
    fn probe<'a>(
        &'a self,
        addr: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BackendRanges>> + Send + 'a>>;

    /// Forgets what it keeps for peers not in `addrs` (they left the DNS answer).
    fn retain(&self, _addrs: &[String]) {}
}

type Conn = Framed<Stream, LengthDelimitedCodec>;

/// Probes over the network, one connection per peer kept between probes.
pub struct NetProbe {
    dialer: Arc<Dialer>,
    timeout: Duration,
    conns: Mutex<HashMap<String, Arc<Mutex<Option<Conn>>>>>,
}

impl NetProbe {
    pub fn new(dialer: Arc<Dialer>, timeout: Duration) -> NetProbe {
        NetProbe {
            dialer,
            timeout,
            conns: Mutex::new(HashMap::new()),
        }
    }

    async fn round_trip(
        &self,
        conn: &mut Option<Conn>,
        addr: &str,
    ) -> anyhow::Result<BackendRanges> {
        if conn.is_none() {
            let stream = self.dialer.connect(addr).await?;
            let codec = LengthDelimitedCodec::builder()
                .max_frame_length(1 << 20)
                .new_codec();
            *conn = Some(Framed::new(stream, codec));
        }
        let framed = conn.as_mut().expect("connected above");
        let request = encode_request(
            ApiKey::ApiVersions,
            0,
            1,
            Some("kelp-peer-probe"),
            &ApiVersionsRequest::default(),
        )?;
        // The codec adds the length prefix itself.
        framed.send(request.slice(4..)).await?;
        let mut frame = framed
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("peer closed the connection"))??
            .freeze();
        anyhow::ensure!(frame.len() >= 4, "short ApiVersions response");
        anyhow::ensure!(
            frame.get_i32() == 1,
            "ApiVersions answered with another correlation id"
        );
        let response = ApiVersionsResponse::decode(&mut frame, 0)?;
        anyhow::ensure!(
            response.error_code == 0,
            "ApiVersions error {}",
            response.error_code
        );
        Ok(crate::protocol::versions::ranges_of(&response))
    }
}

impl Probe for NetProbe {
    fn retain(&self, addrs: &[String]) {
        if let Ok(mut conns) = self.conns.try_lock() {
            conns.retain(|a, _| addrs.contains(a));
        }
    }

    fn probe<'a>(
        &'a self,
        addr: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<BackendRanges>> + Send + 'a>> {
        Box::pin(async move {
            let slot = self
                .conns
                .lock()
                .await
                .entry(addr.to_string())
                .or_default()
                .clone();
            let mut conn = slot.lock().await;
            match tokio::time::timeout(self.timeout, self.round_trip(&mut conn, addr)).await {
                Ok(Ok(ranges)) => Some(ranges),
                Ok(Err(e)) => {
                    tracing::debug!(peer = addr, error = %e, "peer probe failed");
                    *conn = None;
                    None
                }
                Err(_) => {
                    tracing::debug!(peer = addr, "peer probe timed out");
                    *conn = None;
                    None
                }
            }
        })
    }
}
