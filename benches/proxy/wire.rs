//! Raw Kafka frames for the load generator: requests encoded once with `kafka-protocol` (the
//! correlation id is patched in place per send), responses read as frames and checked cheaply.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Offset of the correlation id in a request frame (after length, api key and version).
pub const CORRELATION_AT: usize = 8;

pub fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A whole request frame (4-byte length included) with correlation id 0.
pub fn request<T: Encodable>(api: ApiKey, version: i16, body: &T) -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_client_id(Some(StrBytes::from_static_str("kelp-bench")));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, api.request_header_version(version))
        .expect("encode header");
    body.encode(&mut buf, version).expect("encode body");
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.freeze()
}

/// Appends `template` to `out` with correlation id `corr`.
pub fn put_request(out: &mut BytesMut, template: &[u8], corr: i32) {
    let at = out.len();
    out.extend_from_slice(template);
    out[at + CORRELATION_AT..at + CORRELATION_AT + 4].copy_from_slice(&corr.to_be_bytes());
}

/// One v2 record batch of `count` records with `size`-byte values.
pub fn batch(count: usize, size: usize) -> Bytes {
    let value = Bytes::from(vec![b'x'; size]);
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: 0,
            delete_horizon: false,
            key: None,
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode batch");
    buf.freeze()
}

pub fn produce(version: i16, topic: &str, partition: i32, acks: i16, records: Bytes) -> Bytes {
    let body = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])]);
    request(ApiKey::Produce, version, &body)
}

pub fn fetch(version: i16, topic: &str, partition: i32, offset: i64, max_bytes: i32) -> Bytes {
    let body = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(max_bytes)])]);
    request(ApiKey::Fetch, version, &body)
}

pub fn create_topic(topic: &str, partitions: i32) -> Bytes {
    let body = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(1)]);
    request(ApiKey::CreateTopics, 2, &body)
}

/// The correlation id and body of a response frame (length prefix removed).
pub fn split(frame: &Bytes, api: ApiKey, version: i16) -> (i32, Bytes) {
    let mut body = frame.clone();
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .expect("response header");
    (header.correlation_id, body)
}

/// The first non-zero error code of a produce response, or 0.
pub fn produce_error(frame: &Bytes, version: i16) -> i16 {
    let (_, mut body) = split(frame, ApiKey::Produce, version);
    let response = ProduceResponse::decode(&mut body, version).expect("produce response");
    response
        .responses
        .iter()
        .flat_map(|t| &t.partition_responses)
        .map(|p| p.error_code)
        .find(|&e| e != 0)
        .unwrap_or(0)
}

/// What one fetch response of one partition carried.
pub struct FetchResult {
    pub error_code: i16,
    pub high_watermark: i64,
    pub log_start: i64,
    /// Offset after the last whole batch, when there was one.
    pub next: Option<i64>,
    pub records: u64,
    pub record_bytes: u64,
}

pub fn fetch_result(frame: &Bytes, version: i16) -> FetchResult {
    let (_, mut body) = split(frame, ApiKey::Fetch, version);
    let response = FetchResponse::decode(&mut body, version).expect("fetch response");
    let p = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .expect("one partition in the fetch response");
    let mut result = FetchResult {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        log_start: p.log_start_offset,
        next: None,
        records: 0,
        record_bytes: 0,
    };
    let data = p.records.as_deref().unwrap_or_default();
    let mut pos = 0;
    while let Some((len, base, count)) = batch_header(&data[pos..]) {
        result.next = Some(base + count);
        result.records += count as u64;
        result.record_bytes += len as u64;
        pos += len;
    }
    result
}

/// Length, base offset and record count of the whole v2 batch at the start of `buf`.
fn batch_header(buf: &[u8]) -> Option<(usize, i64, i64)> {
    let base = i64::from_be_bytes(buf.get(0..8)?.try_into().ok()?);
    let batch_length = i32::from_be_bytes(buf.get(8..12)?.try_into().ok()?);
    let len = 12 + usize::try_from(batch_length).ok()?;
    if len < 61 || len > buf.len() {
        return None;
    }
    let last_delta = i32::from_be_bytes(buf[23..27].try_into().ok()?);
    Some((len, base, i64::from(last_delta) + 1))
}

/// A blocking connection for set-up calls and the latency and idle-connection workloads.
pub struct Blocking {
    pub stream: TcpStream,
    corr: i32,
}

impl Blocking {
    pub fn connect(addr: &str) -> std::io::Result<Blocking> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Blocking { stream, corr: 0 })
    }

    pub fn send(&mut self, template: &[u8]) -> std::io::Result<i32> {
        self.corr += 1;
        let mut out = BytesMut::with_capacity(template.len());
        put_request(&mut out, template, self.corr);
        self.stream.write_all(&out)?;
        Ok(self.corr)
    }

    pub fn recv(&mut self) -> std::io::Result<Bytes> {
        read_frame(&mut self.stream)
    }

    /// Sends one request and returns its response frame (length removed).
    pub fn call(&mut self, template: &[u8]) -> std::io::Result<Bytes> {
        let corr = self.send(template)?;
        let frame = self.recv()?;
        let got = i32::from_be_bytes(frame[..4].try_into().expect("4 bytes"));
        if got != corr {
            return Err(std::io::Error::other(format!(
                "correlation id {got}, expected {corr}"
            )));
        }
        Ok(frame)
    }

    /// The max version of `api` the peer advertises (ApiVersions v0).
    pub fn max_version(&mut self, api: ApiKey) -> std::io::Result<Option<i16>> {
        let frame = self.call(&request(
            ApiKey::ApiVersions,
            0,
            &ApiVersionsRequest::default(),
        ))?;
        let (_, mut body) = split(&frame, ApiKey::ApiVersions, 0);
        let response = ApiVersionsResponse::decode(&mut body, 0).map_err(std::io::Error::other)?;
        Ok(response
            .api_keys
            .iter()
            .find(|k| k.api_key == api as i16)
            .map(|k| k.max_version))
    }
}

/// Reads one length-prefixed frame; returns it without the length.
pub fn read_frame(stream: &mut TcpStream) -> std::io::Result<Bytes> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(4..=256 << 20).contains(&len) {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    stream.read_exact(&mut buf)?;
    Ok(Bytes::from(buf))
}
