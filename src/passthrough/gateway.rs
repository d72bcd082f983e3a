//! kelp's own requests to the gateway's group coordinator (the hand-back of a group's offsets),
//! each on a fresh connection, encoded with `kafka-protocol`, bounded in time and size. Never an
//! OffsetFetch for "all topics": gateway 4.48 runs out of memory on a null topic list.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::Backend;

/// Longest one call may take, connect included.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// Sends one request to the gateway on a new connection and decodes its response.
pub async fn call<Q: Encodable, R: Decodable>(
    backend: &Backend,
    api: ApiKey,
    version: i16,
    request: &Q,
) -> Result<R, String> {
    tokio::time::timeout(CALL_TIMEOUT, exchange(backend, api, version, request))
        .await
        .map_err(|_| format!("{api:?} to the gateway timed out after {CALL_TIMEOUT:?}"))?
}

async fn exchange<Q: Encodable, R: Decodable>(
    backend: &Backend,
    api: ApiKey,
    version: i16,
    request: &Q,
) -> Result<R, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("kelp")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api.request_header_version(version))
        .and_then(|_| request.encode(&mut body, version))
        .map_err(|e| format!("cannot encode {api:?} v{version}: {e}"))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    let mut stream = backend
        .connect()
        .await
        .map_err(|e| format!("connect to {}: {e}", backend.addr))?;
    stream
        .write_all(&frame)
        .await
        .map_err(|e| format!("write {api:?}: {e}"))?;
    let len = stream
        .read_i32()
        .await
        .map_err(|e| format!("read {api:?} response: {e}"))?;
    if len < 0 || len as usize > MAX_RESPONSE_BYTES {
        return Err(format!("{api:?} response of {len} bytes"));
    }
    let mut buf = vec![0u8; len as usize];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("read {api:?} response: {e}"))?;
    let mut buf = Bytes::from(buf);
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version))
        .map_err(|e| format!("{api:?} response header: {e}"))?;
    if header.correlation_id != 1 {
        return Err(format!(
            "{api:?} response with correlation id {}",
            header.correlation_id
        ));
    }
    let response =
        R::decode(&mut buf, version).map_err(|e| format!("{api:?} v{version} response: {e}"))?;
    if buf.has_remaining() {
        tracing::debug!(api = ?api, version, extra = buf.remaining(), "trailing bytes in a gateway response");
    }
    Ok(response)
}
