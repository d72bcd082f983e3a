//! A fast synthetic Kafka backend for kelp's benchmarks (not part of kelp): answers ApiVersions,
//! Metadata, CreateTopics, ListOffsets, Produce and Fetch from memory, every codec from
//! `kafka-protocol`. Each listener advertises an address of its own, so a client connected straight
//! to it, or through an L4 relay on another port, keeps talking to the address it reached.
//!
//! `synthetic_backend --listen 127.0.0.1:9500 --listen 127.0.0.1:9501=127.0.0.1:9600`
//! (the second listener is reached through a relay listening on 9600).

mod log;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use futures::{FutureExt, StreamExt};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use log::{begin_frame, end_frame, error, Log};

/// The versions this backend advertises and serves.
const SERVED: [(ApiKey, i16, i16); 6] = [
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
];

/// Responses buffered before they are written even when more requests are waiting.
const FLUSH_BYTES: usize = 1 << 20;

/// Requests answered before the responses are written even when more are waiting.
const MAX_BATCHED: usize = 1024;

#[derive(Parser, Debug)]
#[command(about = "A synthetic in-memory Kafka backend for benchmarks")]
struct Args {
    /// `addr` or `addr=advertised`: a listener, and the address it names in Metadata.
    #[arg(long, required = true)]
    listen: Vec<String>,
    /// Node id of the one broker.
    #[arg(long, default_value_t = 1)]
    node_id: i32,
    /// Partitions of a topic created on first use.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Bytes kept per partition (the oldest batches are dropped beyond it).
    #[arg(long, default_value_t = 256 << 20)]
    retain_bytes: usize,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Exit after this many seconds (a benchmark never needs it to outlive the run).
    #[arg(long, default_value_t = 3600)]
    max_seconds: u64,
    /// Largest request frame accepted.
    #[arg(long, default_value_t = 64 << 20)]
    max_frame_bytes: usize,
}

struct Listener {
    host: StrBytes,
    port: i32,
}

struct Server {
    log: Log,
    node_id: i32,
    max_frame_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let server = Arc::new(Server {
        log: Log::new(args.partitions, args.retain_bytes),
        node_id: args.node_id,
        max_frame_bytes: args.max_frame_bytes,
    });
    for spec in &args.listen {
        let (bind, advertised) = spec.split_once('=').unwrap_or((spec, spec));
        let (host, port) = advertised
            .rsplit_once(':')
            .with_context(|| format!("--listen {spec}: advertised address needs host:port"))?;
        let me = Arc::new(Listener {
            host: StrBytes::from_string(host.to_string()),
            port: port.parse().with_context(|| format!("--listen {spec}"))?,
        });
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("--listen {bind}"))?;
        tokio::spawn(accept(listener, server.clone(), me));
    }
    tokio::time::sleep(Duration::from_secs(args.max_seconds)).await;
    Ok(())
}

async fn accept(listener: TcpListener, server: Arc<Server>, me: Arc<Listener>) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let server = server.clone();
                let me = me.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, &server, &me).await {
                        eprintln!("synthetic_backend: connection closed: {e:#}");
                    }
                });
            }
            Err(e) => {
                eprintln!("synthetic_backend: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One connection: requests in order; responses buffered while more requests are already read.
async fn serve(socket: TcpStream, server: &Server, me: &Listener) -> anyhow::Result<()> {
    socket.set_nodelay(true)?;
    let (read, mut write) = socket.into_split();
    let codec = LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(server.max_frame_bytes)
        .new_codec();
    let mut frames = FramedRead::with_capacity(read, codec, 64 * 1024);
    let mut out = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = frames.next().await {
        server.handle(frame?.freeze(), me, &mut out).await?;
        for _ in 0..MAX_BATCHED {
            if out.len() >= FLUSH_BYTES {
                break;
            }
            match frames.next().now_or_never() {
                Some(Some(frame)) => server.handle(frame?.freeze(), me, &mut out).await?,
                Some(None) | None => break,
            }
        }
        if !out.is_empty() {
            write.write_all(&out).await?;
            out.clear();
        }
    }
    Ok(())
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> anyhow::Result<T> {
    T::decode(body, version)
}

impl Server {
    /// Answers one request frame (length prefix removed) into `out`.
    async fn handle(
        &self,
        mut frame: Bytes,
        me: &Listener,
        out: &mut BytesMut,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(frame.len() >= 8, "truncated request header");
        let key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let api = ApiKey::try_from(key).map_err(|_| anyhow::anyhow!("unknown api key {key}"))?;
        let served = SERVED
            .iter()
            .any(|&(a, min, max)| a == api && (min..=max).contains(&version));
        if api == ApiKey::ApiVersions && !served {
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let body = ApiVersionsResponse::default()
                .with_error_code(35)
                .with_api_keys(api_versions());
            return respond(out, api, 0, correlation_id, &body);
        }
        anyhow::ensure!(served, "{api:?} v{version} is not served");
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))?;
        let correlation_id = header.correlation_id;
        match api {
            ApiKey::ApiVersions => {
                let _: ApiVersionsRequest = decode(&mut frame, version)?;
                let body = ApiVersionsResponse::default().with_api_keys(api_versions());
                respond(out, api, version, correlation_id, &body)
            }
            ApiKey::Metadata => {
                let request: MetadataRequest = decode(&mut frame, version)?;
                let body = self.metadata(request, version, me);
                respond(out, api, version, correlation_id, &body)
            }
            ApiKey::CreateTopics => {
                let request: CreateTopicsRequest = decode(&mut frame, version)?;
                let body = self.create_topics(request);
                respond(out, api, version, correlation_id, &body)
            }
            ApiKey::ListOffsets => {
                let request: ListOffsetsRequest = decode(&mut frame, version)?;
                let body = self.list_offsets(request);
                respond(out, api, version, correlation_id, &body)
            }
            ApiKey::Produce => {
                let request: ProduceRequest = decode(&mut frame, version)?;
                let acks = request.acks;
                let body = self.produce(request);
                if acks == 0 {
                    return Ok(());
                }
                respond(out, api, version, correlation_id, &body)
            }
            ApiKey::Fetch => {
                let request: FetchRequest = decode(&mut frame, version)?;
                let mut body = self.fetch(&request);
                if request.max_wait_ms > 0 && body_is_empty(&body) {
                    // Nothing to return: wait a little (bounded) as a broker would, then look again.
                    let wait = request.max_wait_ms.clamp(0, 100) as u64;
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    body = self.fetch(&request);
                }
                respond(out, api, version, correlation_id, &body)
            }
            _ => anyhow::bail!("{api:?} is not served"),
        }
    }

    fn metadata(&self, request: MetadataRequest, version: i16, me: &Listener) -> MetadataResponse {
        let create = version < 4 || request.allow_auto_topic_creation;
        let names: Vec<String> = match request.topics {
            Some(topics) => topics
                .into_iter()
                .filter_map(|t| t.name.map(|n| n.0.to_string()))
                .collect(),
            None => self.log.list().into_iter().map(|(name, _)| name).collect(),
        };
        let node = BrokerId(self.node_id);
        let topics = names
            .into_iter()
            .map(|name| {
                let topic = self.log.get_or_create(&name, create);
                let partitions = topic.map_or(0, |t| t.len() as i32);
                MetadataResponseTopic::default()
                    .with_error_code(if partitions == 0 {
                        error::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        0
                    })
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_partitions(
                        (0..partitions)
                            .map(|p| {
                                MetadataResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_leader_id(node)
                                    .with_replica_nodes(vec![node])
                                    .with_isr_nodes(vec![node])
                            })
                            .collect(),
                    )
            })
            .collect();
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(me.host.clone())
                .with_port(me.port)])
            .with_cluster_id(Some(StrBytes::from_static_str("synthetic")))
            .with_controller_id(node)
            .with_topics(topics)
    }

    fn create_topics(&self, request: CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                let error_code = if request.validate_only {
                    0
                } else {
                    self.log
                        .create(&t.name.0, t.num_partitions)
                        .err()
                        .unwrap_or(0)
                };
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(error_code)
                    .with_num_partitions(t.num_partitions)
                    .with_replication_factor(1)
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let topics = request
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.log.get(&t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let r = ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1);
                        let part = topic.as_ref().and_then(|t| {
                            let i = usize::try_from(p.partition_index).ok()?;
                            Some(t.get(i)?.lock().ok()?.clone_offsets())
                        });
                        match part {
                            None => r.with_error_code(error::UNKNOWN_TOPIC_OR_PARTITION),
                            Some((start, end)) => {
                                r.with_offset(if p.timestamp == -1 { end } else { start })
                            }
                        }
                    })
                    .collect();
                ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn produce(&self, request: ProduceRequest) -> ProduceResponse {
        let responses = request
            .topic_data
            .into_iter()
            .map(|t| {
                let topic = self.log.get_or_create(&t.name.0, true);
                let partitions = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let r = PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_log_append_time_ms(-1);
                        let appended = topic
                            .as_ref()
                            .and_then(|t| t.get(usize::try_from(p.index).ok()?))
                            .ok_or(error::UNKNOWN_TOPIC_OR_PARTITION)
                            .and_then(|part| {
                                let mut part = part.lock().map_err(|_| error::CORRUPT_MESSAGE)?;
                                let records = p.records.unwrap_or_default();
                                part.append(&records, self.log.retain_bytes)
                                    .map(|base| (base, part.log_start()))
                            });
                        match appended {
                            Ok((base, start)) => {
                                r.with_base_offset(base).with_log_start_offset(start)
                            }
                            Err(code) => r.with_error_code(code).with_base_offset(-1),
                        }
                    })
                    .collect();
                TopicProduceResponse::default()
                    .with_name(t.name)
                    .with_partition_responses(partitions)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }

    fn fetch(&self, request: &FetchRequest) -> FetchResponse {
        let mut budget = usize::try_from(request.max_bytes).unwrap_or(0).max(1);
        let responses = request
            .topics
            .iter()
            .map(|t| {
                let topic = self.log.get(&t.topic.0);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let data = PartitionData::default()
                            .with_partition_index(p.partition)
                            .with_preferred_read_replica(BrokerId(-1));
                        let part = topic
                            .as_ref()
                            .and_then(|t| t.get(usize::try_from(p.partition).ok()?));
                        let Some(Ok(part)) = part.map(|p| p.lock()) else {
                            return data.with_error_code(error::UNKNOWN_TOPIC_OR_PARTITION);
                        };
                        let max = usize::try_from(p.partition_max_bytes)
                            .unwrap_or(0)
                            .min(budget);
                        let f = part.fetch(p.fetch_offset, max);
                        let len = f.records.as_ref().map_or(0, Bytes::len);
                        budget = budget.saturating_sub(len);
                        data.with_error_code(f.error_code)
                            .with_high_watermark(f.high_watermark)
                            .with_last_stable_offset(f.high_watermark)
                            .with_log_start_offset(f.log_start)
                            .with_records(f.records)
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(t.topic.clone())
                    .with_partitions(partitions)
            })
            .collect();
        FetchResponse::default().with_responses(responses)
    }
}

fn body_is_empty(body: &FetchResponse) -> bool {
    body.responses
        .iter()
        .flat_map(|t| &t.partitions)
        .all(|p| p.records.as_ref().map_or(true, Bytes::is_empty))
}

impl log::Partition {
    fn clone_offsets(&self) -> (i64, i64) {
        (self.log_start(), self.end())
    }
}

fn api_versions() -> Vec<ApiVersion> {
    SERVED
        .iter()
        .map(|&(api, min, max)| {
            ApiVersion::default()
                .with_api_key(api as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// Appends one response frame: length, response header for this API and version, body.
fn respond<T: Encodable>(
    out: &mut BytesMut,
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<()> {
    out.reserve(body.compute_size(version)? + 16);
    let at = begin_frame(out);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(out, api.response_header_version(version))?;
    body.encode(out, version)?;
    end_frame(out, at);
    Ok(())
}
