//! A raw Kafka-protocol client for wire tests: encodes requests with `kafka-protocol`, writes them as
//! frames on a plain TCP socket and reads framed responses back. Every read has a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

pub struct Raw {
    pub stream: TcpStream,
    next_correlation: i32,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            next_correlation: 1,
        }
    }

    /// Encodes header + body for `api` at `version`; returns the frame (with length) and correlation id.
    pub fn frame<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> (Vec<u8>, i32) {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("wire-test")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, api.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        let mut frame = Vec::with_capacity(buf.len() + 4);
        frame.put_i32(buf.len() as i32);
        frame.extend_from_slice(&buf);
        (frame, correlation_id)
    }

    /// Sends one request; returns its correlation id.
    pub fn send<T: Encodable>(&mut self, api: ApiKey, version: i16, body: &T) -> i32 {
        let (frame, correlation_id) = self.frame(api, version, body);
        self.stream.write_all(&frame).unwrap();
        correlation_id
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one response frame (length removed); None when the connection closed.
    pub fn recv_frame(&mut self) -> Option<Bytes> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).ok()?;
        let len = i32::from_be_bytes(len);
        assert!((0..64 << 20).contains(&len), "response length {len}");
        let mut buf = vec![0u8; len as usize];
        self.stream.read_exact(&mut buf).ok()?;
        Some(Bytes::from(buf))
    }

    /// Reads and decodes one response for `api` at `version`; returns (correlation id, body).
    pub fn recv<T: Decodable>(&mut self, api: ApiKey, version: i16) -> (i32, T) {
        let mut frame = self
            .recv_frame()
            .expect("connection closed before a response");
        let header =
            ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
        let body = T::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "{api:?} v{version}: trailing bytes");
        (header.correlation_id, body)
    }

    /// Sends and receives one request/response pair, checking the correlation id.
    pub fn call<Q: Encodable, R: Decodable>(&mut self, api: ApiKey, version: i16, body: &Q) -> R {
        let sent = self.send(api, version, body);
        let (got, response) = self.recv(api, version);
        assert_eq!(got, sent, "{api:?} v{version}: correlation id");
        response
    }

    /// True when the peer closed the connection (EOF or reset) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}
