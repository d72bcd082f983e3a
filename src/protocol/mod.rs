//! Kafka wire helpers: the request-header peek, the one version table (what kelp advertises per API),
//! response framing and the error codes kelp uses. Every message codec comes from `kafka-protocol`;
//! this module only reads the fixed-position header fields needed to route a frame.

pub mod codec;
pub mod versions;

use std::future::Future;
use std::pin::Pin;

pub use codec::FrameCodec;

/// A response kelp produces later: the coordinator's answer, encoded as a frame, or `None` when the
/// coordinator could not answer (the connection is then closed so the client reconnects).
pub type LocalReply = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// A codec whose frames keep their 4-byte length prefix, so forwarding needs no re-encoding.
pub fn frame_codec(max_frame_bytes: u32) -> FrameCodec {
    FrameCodec::new(max_frame_bytes)
}

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub use versions::{kelp_range, Handling};

/// Kafka error codes kelp answers with itself.
pub mod error {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_REQUEST: i16 = 42;
}

/// Why a frame could not be routed. Each closes that one connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("truncated request header ({0} bytes)")]
    TruncatedHeader(usize),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    #[error("api {0:?} is not served or forwarded by kelp")]
    UnsupportedApi(ApiKey),
    #[error("{api:?} v{version} is outside what kelp supports")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("undecodable {api:?} v{version} request: {reason}")]
    Undecodable {
        api: ApiKey,
        version: i16,
        reason: String,
    },
}

impl FrameError {
    /// A short, fixed label for the `kelp_connection_errors_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            FrameError::TruncatedHeader(_) => "bad_header",
            FrameError::UnknownApiKey(_) => "unknown_api",
            FrameError::UnsupportedApi(_) => "unsupported_api",
            FrameError::UnsupportedVersion { .. } => "unsupported_version",
            FrameError::Undecodable { .. } => "bad_body",
        }
    }
}

/// The fixed-position fields every request header starts with. Peeking them costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
}

/// Reads api key, version and correlation id from a request frame (length prefix already removed)
/// and checks that the client id string fits in the frame. The body is not touched.
pub fn peek(frame: &[u8]) -> Result<Peek, FrameError> {
    if frame.len() < 10 {
        return Err(FrameError::TruncatedHeader(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_key = ApiKey::try_from(key).map_err(|_| FrameError::UnknownApiKey(key))?;
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    // client_id is a nullable int16-length string in header v1 and v2 alike.
    let client_id_len = i16::from_be_bytes([frame[8], frame[9]]);
    if client_id_len > 0 && 10 + client_id_len as usize > frame.len() {
        return Err(FrameError::TruncatedHeader(frame.len()));
    }
    Ok(Peek {
        api_key,
        api_version,
        correlation_id,
    })
}

/// Decodes the full request header and the body of a request kelp must read.
pub fn decode_request<T: Decodable>(
    mut frame: Bytes,
    peek: &Peek,
) -> Result<(RequestHeader, T), FrameError> {
    let undecodable = |e: anyhow::Error| FrameError::Undecodable {
        api: peek.api_key,
        version: peek.api_version,
        reason: e.to_string(),
    };
    let header_version = peek.api_key.request_header_version(peek.api_version);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(undecodable)?;
    let body = T::decode(&mut frame, peek.api_version).map_err(undecodable)?;
    Ok((header, body))
}

/// Encodes a request frame: the 4-byte length, the request header for this API and version (with
/// `client_id`), the body. For the requests kelp itself sends (probes, split batches).
pub fn encode_request<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: Option<&str>,
    body: &T,
) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(client_id.map(|c| StrBytes::from_string(c.to_string())));
    let mut out = BytesMut::new();
    out.put_i32(0);
    header.encode(&mut out, api_key.request_header_version(version))?;
    body.encode(&mut out, version)?;
    let written = i32::try_from(out.len() - 4)?;
    out[..4].copy_from_slice(&written.to_be_bytes());
    Ok(out.freeze())
}

/// Encodes a response frame: the 4-byte length, the response header for this API and version, the body.
pub fn encode_response<T: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let flexible_header = api_key.response_header_version(version) >= 1;
    let body_len = body.compute_size(version)?;
    let header_len = 4 + usize::from(flexible_header);
    let mut out = BytesMut::with_capacity(4 + header_len + body_len);
    out.put_i32((header_len + body_len) as i32);
    out.put_i32(correlation_id);
    if flexible_header {
        out.put_u8(0); // empty tagged-field section
    }
    body.encode(&mut out, version)?;
    // The prefix says what was written: kafka-protocol's compute_size can disagree with encode
    // (unknown tagged fields of a decoded response, found by the rewrite fuzz target), and a wrong
    // prefix would make the client read into the next response.
    let written = out.len() - 4;
    anyhow::ensure!(
        i32::try_from(written).is_ok(),
        "{api_key:?} v{version} response of {written} bytes"
    );
    out[..4].copy_from_slice(&(written as i32).to_be_bytes());
    Ok(out.freeze())
}

/// Splits a response frame (length prefix removed) into its correlation id and the body that follows
/// the response header for this API and version.
pub fn split_response(
    mut frame: Bytes,
    api_key: ApiKey,
    version: i16,
) -> anyhow::Result<(i32, Bytes)> {
    use kafka_protocol::messages::ResponseHeader;
    let header = ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
    Ok((header.correlation_id, frame))
}

/// Reads the correlation id of a response frame (length prefix removed).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    frame
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether a Produce request asks for no response (acks = 0). Reads only the fields that precede
/// `acks`: the header's client id and tags, and the body's transactional id (v3+).
pub fn produce_acks_zero(frame: &[u8], version: i16) -> bool {
    fn skip_uvarint(buf: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *buf.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    fn skip_tags(buf: &[u8], pos: &mut usize) -> Option<()> {
        let count = skip_uvarint(buf, pos)?;
        for _ in 0..count.min(1024) {
            skip_uvarint(buf, pos)?;
            let size = skip_uvarint(buf, pos)? as usize;
            *pos = pos.checked_add(size)?;
        }
        Some(())
    }
    fn read_acks(frame: &[u8], version: i16) -> Option<i16> {
        let flexible = version >= 9;
        let client_id_len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
        let mut pos = 10 + client_id_len.max(0) as usize;
        if flexible {
            skip_tags(frame, &mut pos)?;
        }
        if version >= 3 {
            if flexible {
                let len = skip_uvarint(frame, &mut pos)?;
                // A length from the wire: past the end of the frame is "not found", never an overflow.
                pos = pos.checked_add(usize::try_from(len.saturating_sub(1)).ok()?)?;
            } else {
                let len = i16::from_be_bytes([*frame.get(pos)?, *frame.get(pos + 1)?]);
                pos += 2 + len.max(0) as usize;
            }
        }
        Some(i16::from_be_bytes([*frame.get(pos)?, *frame.get(pos + 1)?]))
    }
    read_acks(frame, version) == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ProduceRequest, TransactionalId};
    use kafka_protocol::protocol::StrBytes;

    fn produce_frame(version: i16, acks: i16, txn: Option<&str>) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("client-1")));
        let body = ProduceRequest::default()
            .with_acks(acks)
            .with_timeout_ms(1000)
            .with_transactional_id(txn.map(|t| TransactionalId(StrBytes::from_string(t.into()))));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, ApiKey::Produce.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.to_vec()
    }

    #[test]
    fn peek_reads_fixed_fields() {
        let frame = produce_frame(7, 1, None);
        let p = peek(&frame).unwrap();
        assert_eq!(p.api_key, ApiKey::Produce);
        assert_eq!(p.api_version, 7);
        assert_eq!(p.correlation_id, 7);
    }

    #[test]
    fn peek_rejects_truncated_and_unknown() {
        assert_eq!(peek(&[0, 0, 0]), Err(FrameError::TruncatedHeader(3)));
        assert_eq!(
            peek(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
            Err(FrameError::UnknownApiKey(0x7f7f))
        );
        // client id length pointing past the end of the frame
        assert_eq!(
            peek(&[0, 3, 0, 1, 0, 0, 0, 1, 0, 50, b'a']),
            Err(FrameError::TruncatedHeader(11))
        );
    }

    #[test]
    fn acks_zero_is_found_at_every_produce_version() {
        for version in 3..=13 {
            for txn in [None, Some("txn-1")] {
                assert!(
                    produce_acks_zero(&produce_frame(version, 0, txn), version),
                    "v{version}"
                );
                assert!(
                    !produce_acks_zero(&produce_frame(version, 1, txn), version),
                    "v{version}"
                );
                assert!(
                    !produce_acks_zero(&produce_frame(version, -1, txn), version),
                    "v{version}"
                );
            }
        }
    }

    #[test]
    fn acks_peek_never_panics_on_garbage() {
        for len in 0..40 {
            let frame: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = produce_acks_zero(&frame, 9);
            let _ = produce_acks_zero(&frame, 3);
        }
    }

    /// A flexible Produce whose transactional id length is a huge varint (fuzz/regressions/frame):
    /// the position overflowed (a panic with overflow checks) instead of "acks not found".
    #[test]
    fn acks_peek_survives_a_huge_transactional_id_length() {
        let mut frame = vec![0, 0, 0, 9, 0, 0, 0, 8, 0, 0, 0];
        frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        frame.extend_from_slice(&[0, 0, 0, 0]);
        assert!(!produce_acks_zero(&frame, 9));
    }

    /// A request whose array count is far above its size (fuzz/regressions/requests): kafka-protocol
    /// 0.18.0 allocated for the count up front and aborted the process; the patched decoder
    /// (vendor/kafka-protocol) refuses it like any other malformed body.
    #[test]
    fn a_huge_array_count_is_a_bad_body_not_an_abort() {
        use kafka_protocol::messages::DeleteGroupsRequest;
        for (version, count) in [
            (0, &[0x7f, 0xff, 0xff, 0xff][..]),
            (2, &[0xff, 0xff, 0xff, 0xff, 0x0f][..]),
        ] {
            let mut frame = BytesMut::new();
            RequestHeader::default()
                .with_request_api_key(ApiKey::DeleteGroups as i16)
                .with_request_api_version(version)
                .with_correlation_id(7)
                .encode(
                    &mut frame,
                    ApiKey::DeleteGroups.request_header_version(version),
                )
                .unwrap();
            frame.extend_from_slice(count);
            let p = peek(&frame).unwrap();
            let decoded: Result<(_, DeleteGroupsRequest), _> = decode_request(frame.freeze(), &p);
            assert!(
                matches!(decoded, Err(FrameError::Undecodable { .. })),
                "v{version}: {decoded:?}"
            );
        }
    }
}
